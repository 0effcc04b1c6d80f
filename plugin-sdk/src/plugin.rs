//! The plugin author's side: the traits a class implements, the services it may call, and the
//! machinery behind [`export_plugin!`](crate::export_plugin) that wraps classes into ABI-stable
//! objects. Every call from the host is guarded with `catch_unwind`, so a panic in a plugin
//! becomes an error instead of aborting the host.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use abi_stable::{
    library::RootModuleResult,
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{ROption, RResult, RStr, RString, RVec},
};
use serde::de::DeserializeOwned;

use crate::ffi::{
    FfiDataView, FfiError, FfiLoader, FfiLoader_TO, FfiLoaderBox, FfiModel, FfiModel_TO, FfiModelBox,
    FfiReportGenerator, FfiReportGenerator_TO, FfiReportGeneratorBox, FfiServicesRef, FfiTensor, FfiTensorView,
    PluginModule, PluginModule_Ref,
};
use crate::types::{
    ClassInfo, ClassKind, ConfigKey, DataView, Dataset, ErrorKind, FitSummary, LoadSummary, LogLevel, PluginError,
    RunContext, Tensor, TensorView,
};

/// What every class provides: its name, a summary, the config keys it accepts and a constructor.
pub trait PluginClass: Sized + Send + 'static {
    /// The class name used in configs and the class mapping (`MNISTLoader`).
    const NAME: &'static str;
    /// One line for `host plugins list`.
    const SUMMARY: &'static str;

    /// Every config key the class accepts. The host rejects unknown keys, checks types and fills
    /// defaults before calling [`PluginClass::new`], so the class sees a complete config.
    fn config_keys() -> Vec<ConfigKey> {
        Vec::new()
    }

    /// Builds the class from its validated config.
    fn new(config: ClassConfig) -> Result<Self, PluginError>;
}

/// A data loader: reads raw files and turns them into features and targets.
pub trait DataLoader: PluginClass {
    /// Reads (or downloads) the raw data and reports every file read.
    fn load_data(&mut self, services: &Services<'_>) -> Result<LoadSummary, PluginError>;
    /// Returns the features and targets of the data read by [`DataLoader::load_data`].
    fn extract_features_and_targets(&mut self, services: &Services<'_>) -> Result<Dataset, PluginError>;
}

/// A model: trains, predicts, evaluates, saves and loads.
pub trait Model: PluginClass {
    /// Trains on `train`, reporting each epoch through `services.metric` and checking
    /// `services.should_stop()` between batches.
    fn fit(
        &mut self,
        train: &DataView<'_>,
        validation: Option<&DataView<'_>>,
        services: &Services<'_>,
    ) -> Result<FitSummary, PluginError>;

    /// Returns one row per sample: class probabilities `[n, classes]` or values `[n, outputs]`.
    fn predict(&mut self, features: &TensorView<'_>, services: &Services<'_>) -> Result<Tensor, PluginError>;

    /// The model's own view of its quality on `data` (loss, accuracy, ...), as a JSON object.
    fn evaluate(
        &mut self,
        data: &DataView<'_>,
        services: &Services<'_>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, PluginError>;

    /// Extra metrics beyond the host's standard ones, computed from targets and predictions.
    fn custom_metrics(
        &mut self,
        y_true: &TensorView<'_>,
        y_pred: &TensorView<'_>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, PluginError> {
        let _ = (y_true, y_pred);
        Ok(serde_json::Map::new())
    }

    /// Writes the trained model into `dir` and returns the files written.
    fn save(&mut self, dir: &Path) -> Result<Vec<PathBuf>, PluginError>;

    /// Restores a model written by [`Model::save`] from `dir`.
    fn load(&mut self, dir: &Path) -> Result<(), PluginError>;
}

/// A report generator: writes files (usually HTML) into `services.artifact_dir()`.
///
/// Each method receives the run's facts as JSON (see the host's report input documentation)
/// and returns the files it wrote.
pub trait ReportGenerator: PluginClass {
    /// Describes the data: sizes, class balance, samples.
    fn generate_data_report(
        &mut self,
        input: &serde_json::Value,
        services: &Services<'_>,
    ) -> Result<Vec<PathBuf>, PluginError>;
    /// Describes training: curves per epoch.
    fn generate_training_report(
        &mut self,
        input: &serde_json::Value,
        services: &Services<'_>,
    ) -> Result<Vec<PathBuf>, PluginError>;
    /// Describes evaluation: metrics, confusion, errors.
    fn generate_evaluation_report(
        &mut self,
        input: &serde_json::Value,
        services: &Services<'_>,
    ) -> Result<Vec<PathBuf>, PluginError>;
    /// The page that links the others, with provenance.
    fn generate_summary_report(
        &mut self,
        input: &serde_json::Value,
        services: &Services<'_>,
    ) -> Result<Vec<PathBuf>, PluginError>;
}

/// A class's validated config: its sections as one JSON object (`{"model": {..}, "training": {..}}`)
/// with defaults filled in, and the run's context (seed, threads, an earlier attempt's folder).
#[derive(Debug, Clone, Default)]
pub struct ClassConfig {
    /// The sections this class owns, keyed by section name.
    pub sections: serde_json::Value,
    /// The run's seed; a class derives every random stream from it.
    pub seed: u64,
    /// The number of compute threads the host grants this run; a class must not use more.
    pub threads: usize,
    /// The folder of an earlier, unfinished attempt of this run (a requeued sweep trial): a
    /// model that writes per-epoch checkpoints there may continue from its last one.
    pub resume_from: Option<PathBuf>,
    /// The keys the class declares (its `config_keys()`, filled in by the SDK when the host
    /// creates the class): [`parse`](Self::parse) and [`section`](Self::section) refuse a type
    /// that reads a key not among them. Empty (in a test, say): not checked.
    pub declared: Vec<ConfigKey>,
}

impl ClassConfig {
    /// Deserialises every section at once into `T` (a struct with one field per section).
    /// Use `#[serde(deny_unknown_fields)]` on `T` and its fields to catch keys the host let through.
    /// A section field of `T` that is not a declared key is an error: the host passes only
    /// declared keys, so the user's value would never reach it.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        let sections: Vec<(String, &[&str])> = crate::shape::struct_fields::<T>()
            .into_iter()
            .filter(|(path, _)| !path.is_empty() && !path.contains('.'))
            .collect();
        for (section, keys) in sections {
            self.check_declared(&section, keys)?;
        }
        serde_json::from_value(self.sections.clone()).map_err(|e| PluginError::invalid_config(e.to_string()))
    }

    /// Deserialises one section into `T`; an absent section deserialises from `{}`. A field of
    /// `T` that is not a declared key of the section is an error, as in [`parse`](Self::parse).
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<T, PluginError> {
        if let Some((_, keys)) = crate::shape::struct_fields::<T>().into_iter().find(|(path, _)| path.is_empty()) {
            self.check_declared(name, keys)?;
        }
        let value = self.sections.get(name).cloned().unwrap_or_else(|| serde_json::json!({}));
        serde_json::from_value(value).map_err(|e| PluginError::invalid_config(format!("{name}: {e}")))
    }

    fn check_declared(&self, section: &str, keys: &[&str]) -> Result<(), PluginError> {
        if self.declared.is_empty() {
            return Ok(());
        }
        let undeclared: Vec<String> = keys
            .iter()
            .filter(|key| !self.declared.iter().any(|k| k.section == section && k.name == **key))
            .map(|key| format!("{section}.{key}"))
            .collect();
        if undeclared.is_empty() {
            return Ok(());
        }
        Err(PluginError::new(format!(
            "the class reads {}, which its config_keys() do not declare: the host passes only declared keys, \
             so a user's value would be ignored; declare each with ConfigKey::new",
            undeclared.join(", ")
        )))
    }
}

/// The host's services, available during every plugin call.
pub struct Services<'a> {
    inner: FfiServicesRef<'a>,
}

impl<'a> Services<'a> {
    pub(crate) fn new(inner: FfiServicesRef<'a>) -> Self {
        Services { inner }
    }

    /// Sends a log line to the host, which prints it with the plugin's name.
    pub fn log(&self, level: LogLevel, message: &str) {
        self.inner.log(level.code(), message.into());
    }

    /// Logs at debug level.
    pub fn debug(&self, message: &str) {
        self.log(LogLevel::Debug, message);
    }

    /// Logs at info level.
    pub fn info(&self, message: &str) {
        self.log(LogLevel::Info, message);
    }

    /// Logs at warning level.
    pub fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message);
    }

    /// Reports progress of the current step: `done` of `total` units, with a short message
    /// (`loss 0.31`). The host draws a bar on a terminal and log lines elsewhere.
    pub fn progress(&self, done: u64, total: u64, message: &str) {
        self.inner.progress(done, total, message.into());
    }

    /// Records a metric value at a step (the epoch, for per-epoch metrics).
    pub fn metric(&self, name: &str, step: u64, value: f64) {
        self.inner.metric(name.into(), step, value);
    }

    /// Whether the user asked to stop (Ctrl-C). Check it between batches and return
    /// [`PluginError::cancelled`] when it is true.
    pub fn should_stop(&self) -> bool {
        self.inner.should_stop()
    }

    /// The directory where this call may write files.
    pub fn artifact_dir(&self) -> PathBuf {
        PathBuf::from(self.inner.artifact_dir().as_str())
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}

pub(crate) fn to_ffi_error(error: PluginError) -> FfiError {
    FfiError { kind: error.kind.code(), message: error.message.into() }
}

thread_local! {
    /// Where the last panic on this thread happened, recorded by the plugin's panic hook.
    static PANIC_LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Replaces this plugin's panic hook (each cdylib has its own copy of std, so this affects
/// panics inside the plugin only): instead of printing to stderr, it records the location,
/// which the error returned to the host then names.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
        PANIC_LOCATION.with(|cell| *cell.borrow_mut() = location);
    }));
}

/// Runs `body`, turning both its error and any panic into an `FfiError`.
fn guard<T>(body: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, FfiError> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(error)) => RResult::RErr(to_ffi_error(error)),
        Err(payload) => {
            let mut message = panic_message(payload.as_ref());
            if let Some(location) = PANIC_LOCATION.with(|cell| cell.borrow_mut().take()) {
                message = format!("{message} (at {location})");
            }
            RResult::RErr(FfiError { kind: ErrorKind::Panicked.code(), message: message.into() })
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<RString, PluginError> {
    Ok(serde_json::to_string(value)?.into())
}

fn paths_to_ffi(paths: Vec<PathBuf>) -> RVec<RString> {
    paths.into_iter().map(|p| RString::from(p.to_string_lossy().into_owned())).collect()
}

struct LoaderAdapter<T>(T);

impl<T: DataLoader> FfiLoader for LoaderAdapter<T> {
    fn load_data(&mut self, services: FfiServicesRef<'_>) -> RResult<RString, FfiError> {
        guard(|| to_json(&self.0.load_data(&Services::new(services))?))
    }

    fn extract_features_and_targets(
        &mut self,
        services: FfiServicesRef<'_>,
    ) -> RResult<crate::ffi::FfiDataset, FfiError> {
        guard(|| Ok(self.0.extract_features_and_targets(&Services::new(services))?.into_ffi()))
    }
}

struct ModelAdapter<T>(T);

impl<T: Model> FfiModel for ModelAdapter<T> {
    fn fit(
        &mut self,
        train: FfiDataView<'_>,
        validation: ROption<FfiDataView<'_>>,
        services: FfiServicesRef<'_>,
    ) -> RResult<RString, FfiError> {
        guard(|| {
            let train = DataView::from_ffi(train)?;
            let validation = validation.into_option().map(DataView::from_ffi).transpose()?;
            to_json(&self.0.fit(&train, validation.as_ref(), &Services::new(services))?)
        })
    }

    fn predict(&mut self, features: FfiTensorView<'_>, services: FfiServicesRef<'_>) -> RResult<FfiTensor, FfiError> {
        guard(|| {
            let features = TensorView::from_ffi(features)?;
            Ok(self.0.predict(&features, &Services::new(services))?.into_ffi())
        })
    }

    fn evaluate(&mut self, data: FfiDataView<'_>, services: FfiServicesRef<'_>) -> RResult<RString, FfiError> {
        guard(|| to_json(&self.0.evaluate(&DataView::from_ffi(data)?, &Services::new(services))?))
    }

    fn custom_metrics(&mut self, y_true: FfiTensorView<'_>, y_pred: FfiTensorView<'_>) -> RResult<RString, FfiError> {
        guard(|| {
            let (y_true, y_pred) = (TensorView::from_ffi(y_true)?, TensorView::from_ffi(y_pred)?);
            to_json(&self.0.custom_metrics(&y_true, &y_pred)?)
        })
    }

    fn save(&mut self, dir: RStr<'_>) -> RResult<RVec<RString>, FfiError> {
        guard(|| Ok(paths_to_ffi(self.0.save(Path::new(dir.as_str()))?)))
    }

    fn load(&mut self, dir: RStr<'_>) -> RResult<(), FfiError> {
        guard(|| self.0.load(Path::new(dir.as_str())))
    }
}

struct ReportAdapter<T>(T);

type ReportCall<T> = fn(&mut T, &serde_json::Value, &Services<'_>) -> Result<Vec<PathBuf>, PluginError>;

impl<T: ReportGenerator> ReportAdapter<T> {
    fn call(
        &mut self,
        call: ReportCall<T>,
        input: RStr<'_>,
        services: FfiServicesRef<'_>,
    ) -> RResult<RVec<RString>, FfiError> {
        guard(|| {
            let input: serde_json::Value = serde_json::from_str(input.as_str())?;
            Ok(paths_to_ffi(call(&mut self.0, &input, &Services::new(services))?))
        })
    }
}

impl<T: ReportGenerator> FfiReportGenerator for ReportAdapter<T> {
    fn generate_data_report(
        &mut self,
        input: RStr<'_>,
        services: FfiServicesRef<'_>,
    ) -> RResult<RVec<RString>, FfiError> {
        self.call(T::generate_data_report, input, services)
    }

    fn generate_training_report(
        &mut self,
        input: RStr<'_>,
        services: FfiServicesRef<'_>,
    ) -> RResult<RVec<RString>, FfiError> {
        self.call(T::generate_training_report, input, services)
    }

    fn generate_evaluation_report(
        &mut self,
        input: RStr<'_>,
        services: FfiServicesRef<'_>,
    ) -> RResult<RVec<RString>, FfiError> {
        self.call(T::generate_evaluation_report, input, services)
    }

    fn generate_summary_report(
        &mut self,
        input: RStr<'_>,
        services: FfiServicesRef<'_>,
    ) -> RResult<RVec<RString>, FfiError> {
        self.call(T::generate_summary_report, input, services)
    }
}

enum Constructor {
    Loader(fn(ClassConfig) -> Result<FfiLoaderBox, PluginError>),
    Model(fn(ClassConfig) -> Result<FfiModelBox, PluginError>),
    ReportGenerator(fn(ClassConfig) -> Result<FfiReportGeneratorBox, PluginError>),
}

struct RegisteredClass {
    info: ClassInfo,
    constructor: Constructor,
}

/// The classes of one plugin library; built by [`export_plugin!`](crate::export_plugin).
#[doc(hidden)]
pub struct Registry {
    plugin_name: String,
    plugin_version: String,
    classes: Vec<RegisteredClass>,
}

fn class_info<T: PluginClass>(kind: ClassKind) -> ClassInfo {
    ClassInfo { kind, name: T::NAME.to_owned(), summary: T::SUMMARY.to_owned(), config_keys: T::config_keys() }
}

impl Registry {
    #[doc(hidden)]
    pub fn new(plugin_name: &str, plugin_version: &str) -> Self {
        Registry { plugin_name: plugin_name.into(), plugin_version: plugin_version.into(), classes: Vec::new() }
    }

    #[doc(hidden)]
    pub fn add_loader<T: DataLoader>(&mut self) {
        self.classes.push(RegisteredClass {
            info: class_info::<T>(ClassKind::Loader),
            constructor: Constructor::Loader(|config| {
                Ok(FfiLoader_TO::from_value(LoaderAdapter(T::new(config)?), TD_Opaque))
            }),
        });
    }

    #[doc(hidden)]
    pub fn add_model<T: Model>(&mut self) {
        self.classes.push(RegisteredClass {
            info: class_info::<T>(ClassKind::Model),
            constructor: Constructor::Model(|config| {
                Ok(FfiModel_TO::from_value(ModelAdapter(T::new(config)?), TD_Opaque))
            }),
        });
    }

    #[doc(hidden)]
    pub fn add_report_generator<T: ReportGenerator>(&mut self) {
        self.classes.push(RegisteredClass {
            info: class_info::<T>(ClassKind::ReportGenerator),
            constructor: Constructor::ReportGenerator(|config| {
                Ok(FfiReportGenerator_TO::from_value(ReportAdapter(T::new(config)?), TD_Opaque))
            }),
        });
    }

    fn find(&self, name: &str) -> Result<&RegisteredClass, PluginError> {
        self.classes
            .iter()
            .find(|c| c.info.name == name)
            .ok_or_else(|| PluginError::new(format!("plugin {} has no class {name}", self.plugin_name)))
    }
}

/// Each plugin library holds its own copy of this crate, so this is per-plugin state.
static REGISTRY: OnceLock<Registry> = OnceLock::new();
static BUILD_REGISTRY: OnceLock<fn() -> Registry> = OnceLock::new();

fn registry() -> &'static Registry {
    REGISTRY.get_or_init(|| (BUILD_REGISTRY.get().expect("export_plugin! sets the registry builder"))())
}

fn parse_class_config(
    class: &RegisteredClass,
    config_json: RStr<'_>,
    context_json: RStr<'_>,
) -> Result<ClassConfig, PluginError> {
    let sections = serde_json::from_str(config_json.as_str())
        .map_err(|e| PluginError::invalid_config(format!("config is not valid JSON: {e}")))?;
    let context: RunContext = serde_json::from_str(context_json.as_str())
        .map_err(|e| PluginError::invalid_config(format!("run context is not valid: {e}")))?;
    Ok(ClassConfig {
        sections,
        seed: context.seed,
        threads: context.threads,
        resume_from: context.resume_from,
        declared: class.info.config_keys.clone(),
    })
}

fn wrong_kind(name: &str, actual: ClassKind, wanted: ClassKind) -> PluginError {
    PluginError::new(format!("class {name} is a {actual}, not a {wanted}"))
}

extern "C" fn ffi_manifest() -> crate::ffi::FfiManifest {
    // Building the manifest only clones strings; a panic here would be a bug in this crate,
    // and `abort` is the only thing an extern "C" fn can do with it.
    let registry = registry();
    crate::types::Manifest {
        plugin_name: registry.plugin_name.clone(),
        plugin_version: registry.plugin_version.clone(),
        sdk_version: crate::SDK_VERSION.to_owned(),
        classes: registry.classes.iter().map(|c| c.info.clone()).collect(),
    }
    .into_ffi()
}

extern "C" fn ffi_create_loader(
    class: RStr<'_>,
    config: RStr<'_>,
    context: RStr<'_>,
) -> RResult<FfiLoaderBox, FfiError> {
    guard(|| {
        let found = registry().find(class.as_str())?;
        match &found.constructor {
            Constructor::Loader(make) => make(parse_class_config(found, config, context)?),
            Constructor::Model(_) => Err(wrong_kind(class.as_str(), ClassKind::Model, ClassKind::Loader)),
            Constructor::ReportGenerator(_) => {
                Err(wrong_kind(class.as_str(), ClassKind::ReportGenerator, ClassKind::Loader))
            }
        }
    })
}

extern "C" fn ffi_create_model(class: RStr<'_>, config: RStr<'_>, context: RStr<'_>) -> RResult<FfiModelBox, FfiError> {
    guard(|| {
        let found = registry().find(class.as_str())?;
        match &found.constructor {
            Constructor::Model(make) => make(parse_class_config(found, config, context)?),
            Constructor::Loader(_) => Err(wrong_kind(class.as_str(), ClassKind::Loader, ClassKind::Model)),
            Constructor::ReportGenerator(_) => {
                Err(wrong_kind(class.as_str(), ClassKind::ReportGenerator, ClassKind::Model))
            }
        }
    })
}

extern "C" fn ffi_create_report_generator(
    class: RStr<'_>,
    config: RStr<'_>,
    context: RStr<'_>,
) -> RResult<FfiReportGeneratorBox, FfiError> {
    guard(|| {
        let found = registry().find(class.as_str())?;
        match &found.constructor {
            Constructor::ReportGenerator(make) => make(parse_class_config(found, config, context)?),
            Constructor::Loader(_) => Err(wrong_kind(class.as_str(), ClassKind::Loader, ClassKind::ReportGenerator)),
            Constructor::Model(_) => Err(wrong_kind(class.as_str(), ClassKind::Model, ClassKind::ReportGenerator)),
        }
    })
}

fn root_module() -> PluginModule_Ref {
    PluginModule {
        manifest: ffi_manifest,
        create_loader: ffi_create_loader,
        create_model: ffi_create_model,
        create_report_generator: ffi_create_report_generator,
    }
    .leak_into_prefix()
}

/// Called by the library header that [`export_plugin!`](crate::export_plugin) emits.
#[doc(hidden)]
pub fn load_root_module(build: fn() -> Registry) -> RootModuleResult {
    if BUILD_REGISTRY.set(build).is_ok() {
        install_panic_hook();
    }
    abi_stable::library::__call_root_module_loader(root_module)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::types::ConfigType;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Training {
        epochs: usize,
        #[serde(default)]
        warmup: usize,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Sections {
        training: Training,
    }

    #[test]
    fn a_key_read_but_not_declared_is_an_error_not_a_silent_default() {
        let config = ClassConfig {
            sections: serde_json::json!({"training": {"epochs": 3}}),
            declared: vec![ConfigKey::new("training", "epochs", ConfigType::Count)],
            ..ClassConfig::default()
        };
        let message = |e: PluginError| e.message;
        assert_eq!(
            config.parse::<Sections>().err().map(message).unwrap(),
            "the class reads training.warmup, which its config_keys() do not declare: the host passes only declared keys, \
             so a user's value would be ignored; declare each with ConfigKey::new"
        );
        assert!(config.section::<Training>("training").err().map(message).unwrap().contains("training.warmup"));
        // Declared, it reads; with nothing declared (a unit test's config), nothing is checked.
        let declared = ClassConfig {
            declared: vec![
                ConfigKey::new("training", "epochs", ConfigType::Count),
                ConfigKey::new("training", "warmup", ConfigType::Count),
            ],
            ..config.clone()
        };
        assert_eq!(declared.parse::<Sections>().unwrap().training.epochs, 3);
        assert!(ClassConfig { declared: Vec::new(), ..config }.parse::<Sections>().is_ok());
    }
}
