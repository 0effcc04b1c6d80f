//! The host's side: loading plugin libraries, checking their ABI, and calling their classes
//! through handles that speak plain Rust types. Errors are short and name the library and the
//! fix; the long abi_stable text is kept in [`LoadError::detail`] for verbose output.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use abi_stable::{
    library::{LibraryError, RootModule, lib_header_from_path},
    sabi_trait::TD_Opaque,
    sabi_types::VersionNumber,
    std_types::{RResult, RStr, RString, RVec},
};

use crate::convert::{shape_u64, task_code};
use crate::ffi::{
    FfiDataView, FfiError, FfiLoaderBox, FfiModelBox, FfiReportGeneratorBox, FfiServices, FfiServices_TO,
    FfiServicesRef, FfiTensorView, PluginModule_Ref,
};
use crate::plugin::Services;
use crate::types::{
    DataView, Dataset, ErrorKind, FitSummary, LoadSummary, LogLevel, Manifest, PluginError, RunContext, Tensor,
    TensorView,
};

/// What the host offers plugins during a call, as the plugin's [`Services`] see it. The host
/// implements it; a plugin's tests use [`RecordingServices`](super::testing::RecordingServices)
/// or implement it themselves, and pass it to [`with_services`].
pub trait HostServices {
    /// A log line from the plugin.
    fn log(&self, level: LogLevel, message: &str);
    /// Progress of the current step.
    fn progress(&self, done: u64, total: u64, message: &str);
    /// A metric value at a step.
    fn metric(&self, name: &str, step: u64, value: f64);
    /// Whether the plugin should stop at its next check.
    fn should_stop(&self) -> bool;
    /// Where the plugin may write files during this call.
    fn artifact_dir(&self) -> PathBuf;
}

struct ServicesAdapter<'a>(&'a dyn HostServices);

impl FfiServices for ServicesAdapter<'_> {
    fn log(&self, level: u8, message: RStr<'_>) {
        self.0.log(LogLevel::from_code(level), message.as_str());
    }

    fn progress(&self, done: u64, total: u64, message: RStr<'_>) {
        self.0.progress(done, total, message.as_str());
    }

    fn metric(&self, name: RStr<'_>, step: u64, value: f64) {
        self.0.metric(name.as_str(), step, value);
    }

    fn should_stop(&self) -> bool {
        self.0.should_stop()
    }

    fn artifact_dir(&self) -> RString {
        self.0.artifact_dir().to_string_lossy().into_owned().into()
    }
}

fn with_ffi_services<R>(host: &dyn HostServices, body: impl FnOnce(FfiServicesRef<'_>) -> R) -> R {
    let adapter = ServicesAdapter(host);
    body(FfiServices_TO::from_ptr(&adapter, TD_Opaque))
}

/// Runs `body` with plugin-side [`Services`] backed by `host`: how a plugin's own tests call its
/// classes in-process, exactly as the host would. Returns what `body` returns.
///
/// ```
/// use plugin_sdk::host::with_services;
/// use plugin_sdk::testing::RecordingServices;
///
/// let host = RecordingServices::new(std::env::temp_dir());
/// let stop = with_services(&host, |services| {
///     services.metric("accuracy", 1, 0.9);
///     services.should_stop()
/// });
/// assert!(!stop);
/// assert_eq!(host.metrics.lock().unwrap()[0].0, "accuracy");
/// ```
pub fn with_services<R>(host: &dyn HostServices, body: impl FnOnce(&Services<'_>) -> R) -> R {
    with_ffi_services(host, |ffi| body(&Services::new(ffi)))
}

/// Why a plugin library could not be loaded. `Display` is one line with the fix.
#[derive(Debug, Clone)]
pub enum LoadError {
    /// No file at the path.
    NotFound {
        /// The path tried.
        path: PathBuf,
    },
    /// The path is a directory.
    IsADirectory {
        /// The path tried.
        path: PathBuf,
    },
    /// The path is a FIFO, socket or device: opening it could block, and it is no library.
    NotAFile {
        /// The path tried.
        path: PathBuf,
    },
    /// The file is not a dynamic library the system loader accepts.
    NotALibrary {
        /// The file.
        path: PathBuf,
        /// The system loader's message.
        detail: String,
    },
    /// A library the plugin links against could not be found.
    MissingDependency {
        /// The plugin.
        path: PathBuf,
        /// The library that is missing (`libtorch_cpu.so`).
        dependency: String,
        /// The system loader's message.
        detail: String,
    },
    /// A dynamic library that does not export a plugin root module.
    NotAPlugin {
        /// The file.
        path: PathBuf,
    },
    /// The plugin was built against an SDK whose version is incompatible with the host's.
    IncompatibleSdk {
        /// The plugin.
        path: PathBuf,
        /// The SDK version the plugin was built against.
        plugin_sdk: String,
        /// The SDK version of the host.
        host_sdk: String,
    },
    /// The plugin's interface layout differs from the host's (same version, different types).
    AbiMismatch {
        /// The plugin.
        path: PathBuf,
        /// abi_stable's full (long) report.
        detail: String,
    },
    /// Any other failure while initialising the plugin.
    Invalid {
        /// The plugin.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

impl LoadError {
    /// The full diagnostic, which may run to hundreds of lines for a layout mismatch.
    pub fn detail(&self) -> Option<&str> {
        match self {
            LoadError::NotALibrary { detail, .. }
            | LoadError::MissingDependency { detail, .. }
            | LoadError::AbiMismatch { detail, .. }
            | LoadError::Invalid { detail, .. } => Some(detail),
            _ => None,
        }
    }

    /// The library the error is about.
    pub fn path(&self) -> &Path {
        match self {
            LoadError::NotFound { path }
            | LoadError::IsADirectory { path }
            | LoadError::NotAFile { path }
            | LoadError::NotALibrary { path, .. }
            | LoadError::MissingDependency { path, .. }
            | LoadError::NotAPlugin { path }
            | LoadError::IncompatibleSdk { path, .. }
            | LoadError::AbiMismatch { path, .. }
            | LoadError::Invalid { path, .. } => path,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotFound { path } => {
                write!(f, "{}: no such file; build the plugin (cargo build -p <crate>) or fix the path", path.display())
            }
            LoadError::IsADirectory { path } => {
                write!(f, "{}: is a directory, not a plugin library; name the .so/.dylib/.dll file", path.display())
            }
            LoadError::NotAFile { path } => write!(
                f,
                "{}: not a regular file (a FIFO, socket or device), so not a plugin library; remove it",
                path.display()
            ),
            LoadError::NotALibrary { path, detail } => write!(
                f,
                "{}: not a loadable dynamic library ({}); point the class mapping at a plugin built as a cdylib",
                path.display(),
                detail.rsplit(": ").next().unwrap_or(detail)
            ),
            LoadError::MissingDependency { path, dependency, .. }
                if dependency.contains("torch") || dependency.contains("c10") =>
            {
                write!(
                    f,
                    "{}: needs libtorch ({dependency}), which could not be found; run the set-up (scripts/setup.sh) to install torch==2.13.0 and rebuild the plugin",
                    path.display()
                )
            }
            LoadError::MissingDependency { path, dependency, .. } => write!(
                f,
                "{}: needs {dependency}, which could not be found; install it or add its directory to LD_LIBRARY_PATH",
                path.display()
            ),
            LoadError::NotAPlugin { path } => write!(
                f,
                "{}: a dynamic library but not a plugin (no plugin root module); build it with plugin_sdk::export_plugin!",
                path.display()
            ),
            LoadError::IncompatibleSdk { path, plugin_sdk, host_sdk } => write!(
                f,
                "{}: built against plugin SDK {plugin_sdk}, but this host speaks SDK {host_sdk}; rebuild the plugin against plugin-sdk {host_sdk}",
                path.display()
            ),
            LoadError::AbiMismatch { path, .. } => write!(
                f,
                "{}: its plugin interface layout differs from this host's (same SDK version, different types); rebuild the plugin against this host's plugin-sdk (details with -v)",
                path.display()
            ),
            LoadError::Invalid { path, detail } => {
                write!(
                    f,
                    "{}: could not initialise the plugin: {}",
                    path.display(),
                    detail.lines().next().unwrap_or("")
                )
            }
        }
    }
}

impl std::error::Error for LoadError {}

fn classify_open_error(path: &Path, detail: String) -> LoadError {
    // dlerror says "<file>: cannot open shared object file: ..." naming the file it could not
    // open; when that file is not the plugin itself, a dependency is missing.
    const MARKER: &str = ": cannot open shared object file";
    if let Some(index) = detail.find(MARKER) {
        let named = &detail[..index];
        let named_file = Path::new(named).file_name();
        if named_file.is_some() && named_file != path.file_name() {
            return LoadError::MissingDependency { path: path.to_owned(), dependency: named.to_owned(), detail };
        }
    }
    LoadError::NotALibrary { path: path.to_owned(), detail }
}

fn classify_library_error(path: &Path, error: LibraryError) -> LoadError {
    match error {
        LibraryError::OpenError { err, .. } => classify_open_error(path, err.to_string()),
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin { path: path.to_owned() },
        LibraryError::IncompatibleVersionNumber { expected_version, actual_version, .. } => {
            LoadError::IncompatibleSdk {
                path: path.to_owned(),
                plugin_sdk: actual_version.to_string(),
                host_sdk: expected_version.to_string(),
            }
        }
        LibraryError::AbiInstability(detail) => {
            LoadError::AbiMismatch { path: path.to_owned(), detail: detail.to_string() }
        }
        LibraryError::Many(errors) if !errors.is_empty() => {
            let mut errors = errors.into_vec();
            classify_library_error(path, errors.swap_remove(0))
        }
        other => LoadError::Invalid { path: path.to_owned(), detail: other.to_string() },
    }
}

/// A loaded plugin library. Libraries are never unloaded: swapping a plugin needs a new process.
pub struct Library {
    path: PathBuf,
    module: PluginModule_Ref,
    manifest: Manifest,
}

impl fmt::Debug for Library {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Library").field("path", &self.path).field("manifest", &self.manifest).finish()
    }
}

type LibraryCache = Mutex<HashMap<PathBuf, Arc<Library>>>;

fn library_cache() -> &'static LibraryCache {
    static CACHE: OnceLock<LibraryCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Loads the plugin library at `path` (once per process; later calls return the same library),
/// checks its SDK version and interface layout, and reads its manifest.
pub fn load_library(path: &Path) -> Result<Arc<Library>, LoadError> {
    let metadata = std::fs::metadata(path).map_err(|_| LoadError::NotFound { path: path.to_owned() })?;
    if metadata.is_dir() {
        return Err(LoadError::IsADirectory { path: path.to_owned() });
    }
    if !metadata.is_file() {
        return Err(LoadError::NotAFile { path: path.to_owned() });
    }
    let canonical = path.canonicalize().map_err(|_| LoadError::NotFound { path: path.to_owned() })?;
    let mut cache = library_cache().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(library) = cache.get(&canonical) {
        return Ok(library.clone());
    }
    // Each header initialises its own root module; `RootModule::load_from_file` would instead
    // cache one module per type and hand every later plugin the first one (abi_stable issue 92).
    let header = lib_header_from_path(&canonical).map_err(|e| classify_library_error(path, e))?;
    // abi_stable only refuses plugins of an older 0.x minor; a newer minor is refused here too,
    // so the one-line message names both versions instead of a long layout report.
    let (plugin_sdk, host_sdk) = (header.version_strings(), PluginModule_Ref::VERSION_STRINGS);
    if let (Ok(plugin), Ok(host)) = (VersionNumber::new(plugin_sdk), VersionNumber::new(host_sdk))
        && !host.is_loosely_compatible(plugin)
    {
        return Err(LoadError::IncompatibleSdk {
            path: path.to_owned(),
            plugin_sdk: plugin.to_string(),
            host_sdk: host.to_string(),
        });
    }
    let module = header.init_root_module::<PluginModule_Ref>().map_err(|e| classify_library_error(path, e))?;
    let manifest = Manifest::from_ffi((module.manifest())())
        .map_err(|e| LoadError::Invalid { path: path.to_owned(), detail: e.message })?;
    let library = Arc::new(Library { path: path.to_owned(), module, manifest });
    cache.insert(canonical, library.clone());
    Ok(library)
}

/// The SDK version this host was built with, as plugins must match it.
pub fn host_sdk_version() -> &'static str {
    PluginModule_Ref::VERSION_STRINGS.version.as_str()
}

/// A failed call into a plugin, naming the plugin, the class and the call.
#[derive(Debug, Clone)]
pub struct CallError {
    /// `name version` of the plugin.
    pub plugin: String,
    /// The class called.
    pub class: String,
    /// The operation (`fit`, `load_data`, ...).
    pub call: &'static str,
    /// Why it failed.
    pub kind: ErrorKind,
    /// The plugin's message.
    pub message: String,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::Failed => "failed",
            ErrorKind::InvalidConfig => "rejected its config",
            ErrorKind::Cancelled => "was cancelled",
            ErrorKind::Panicked => "panicked",
        };
        write!(f, "{} (plugin {}) {what} in {}: {}", self.class, self.plugin, self.call, self.message)
    }
}

impl std::error::Error for CallError {}

#[derive(Debug, Clone)]
struct Origin {
    plugin: String,
    class: String,
}

impl Origin {
    fn error(&self, call: &'static str, kind: ErrorKind, message: String) -> CallError {
        CallError { plugin: self.plugin.clone(), class: self.class.clone(), call, kind, message }
    }

    fn check<T>(&self, call: &'static str, result: RResult<T, FfiError>) -> Result<T, CallError> {
        result.into_result().map_err(|e| self.error(call, ErrorKind::from_code(e.kind), e.message.into()))
    }

    /// Converts what a plugin returned; a malformed value is the plugin's fault.
    fn decode<T>(&self, call: &'static str, value: Result<T, impl Into<PluginError>>) -> Result<T, CallError> {
        value.map_err(|e| self.error(call, ErrorKind::Failed, format!("returned malformed data: {}", e.into())))
    }
}

fn context_json(context: &RunContext) -> String {
    serde_json::to_string(context).expect("a run context always serialises")
}

impl Library {
    /// The path the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the plugin says about itself.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn origin(&self, class: &str) -> Origin {
        Origin {
            plugin: format!("{} {}", self.manifest.plugin_name, self.manifest.plugin_version),
            class: class.to_owned(),
        }
    }

    /// Creates a data loader. `sections` holds the class's config sections, validated.
    pub fn create_loader(
        &self,
        class: &str,
        sections: &serde_json::Value,
        context: &RunContext,
    ) -> Result<LoaderHandle, CallError> {
        let origin = self.origin(class);
        let (config, context) = (sections.to_string(), context_json(context));
        let inner = origin.check(
            "new",
            (self.module.create_loader())(class.into(), config.as_str().into(), context.as_str().into()),
        )?;
        Ok(LoaderHandle { inner, origin })
    }

    /// Creates a model.
    pub fn create_model(
        &self,
        class: &str,
        sections: &serde_json::Value,
        context: &RunContext,
    ) -> Result<ModelHandle, CallError> {
        let origin = self.origin(class);
        let (config, context) = (sections.to_string(), context_json(context));
        let inner = origin.check(
            "new",
            (self.module.create_model())(class.into(), config.as_str().into(), context.as_str().into()),
        )?;
        Ok(ModelHandle { inner, origin })
    }

    /// Creates a report generator.
    pub fn create_report_generator(
        &self,
        class: &str,
        sections: &serde_json::Value,
        context: &RunContext,
    ) -> Result<ReportGeneratorHandle, CallError> {
        let origin = self.origin(class);
        let (config, context) = (sections.to_string(), context_json(context));
        let inner = origin.check(
            "new",
            (self.module.create_report_generator())(class.into(), config.as_str().into(), context.as_str().into()),
        )?;
        Ok(ReportGeneratorHandle { inner, origin })
    }
}

/// A data loader living in a plugin.
pub struct LoaderHandle {
    inner: FfiLoaderBox,
    origin: Origin,
}

impl LoaderHandle {
    /// Calls `load_data`.
    pub fn load_data(&mut self, services: &dyn HostServices) -> Result<LoadSummary, CallError> {
        let json = with_ffi_services(services, |s| self.inner.load_data(s));
        let json = self.origin.check("load_data", json)?;
        self.origin.decode("load_data", serde_json::from_str(json.as_str()))
    }

    /// Calls `extract_features_and_targets`; the buffers are moved, not copied.
    pub fn extract_features_and_targets(&mut self, services: &dyn HostServices) -> Result<Dataset, CallError> {
        let call = "extract_features_and_targets";
        let dataset = with_ffi_services(services, |s| self.inner.extract_features_and_targets(s));
        let dataset = self.origin.check(call, dataset)?;
        self.origin.decode(call, Dataset::from_ffi(dataset))
    }
}

/// Borrows a [`DataView`] as its FFI mirror for the duration of `body`.
fn with_ffi_data_view<R>(view: &DataView<'_>, body: impl FnOnce(FfiDataView<'_>) -> R) -> R {
    let feature_shape = shape_u64(&view.features.shape);
    let target_shape = shape_u64(&view.targets.shape);
    body(FfiDataView {
        features: FfiTensorView::new(&feature_shape, view.features.elements),
        targets: FfiTensorView::new(&target_shape, view.targets.elements),
        task: task_code(view.task),
        outputs: view.outputs as u64,
    })
}

/// A model living in a plugin. Models are `Send`, not `Sync`: one thread calls it at a time.
pub struct ModelHandle {
    inner: FfiModelBox,
    origin: Origin,
}

type JsonObject = serde_json::Map<String, serde_json::Value>;

impl ModelHandle {
    /// Calls `fit`.
    pub fn fit(
        &mut self,
        train: &DataView<'_>,
        validation: Option<&DataView<'_>>,
        services: &dyn HostServices,
    ) -> Result<FitSummary, CallError> {
        let json = with_ffi_data_view(train, |train| match validation {
            Some(validation) => with_ffi_data_view(validation, |validation| {
                with_ffi_services(services, |s| self.inner.fit(train, Some(validation).into(), s))
            }),
            None => with_ffi_services(services, |s| self.inner.fit(train, None.into(), s)),
        });
        let json = self.origin.check("fit", json)?;
        self.origin.decode("fit", serde_json::from_str(json.as_str()))
    }

    /// Calls `predict`.
    pub fn predict(&mut self, features: &TensorView<'_>, services: &dyn HostServices) -> Result<Tensor, CallError> {
        let shape = shape_u64(&features.shape);
        let view = FfiTensorView::new(&shape, features.elements);
        let tensor = with_ffi_services(services, |s| self.inner.predict(view, s));
        let tensor = self.origin.check("predict", tensor)?;
        self.origin.decode("predict", Tensor::from_ffi(tensor))
    }

    /// Calls `evaluate`.
    pub fn evaluate(&mut self, data: &DataView<'_>, services: &dyn HostServices) -> Result<JsonObject, CallError> {
        let json = with_ffi_data_view(data, |data| with_ffi_services(services, |s| self.inner.evaluate(data, s)));
        let json = self.origin.check("evaluate", json)?;
        self.origin.decode("evaluate", serde_json::from_str(json.as_str()))
    }

    /// Calls `custom_metrics`.
    pub fn custom_metrics(
        &mut self,
        y_true: &TensorView<'_>,
        y_pred: &TensorView<'_>,
    ) -> Result<JsonObject, CallError> {
        let (true_shape, pred_shape) = (shape_u64(&y_true.shape), shape_u64(&y_pred.shape));
        let json = self.inner.custom_metrics(
            FfiTensorView::new(&true_shape, y_true.elements),
            FfiTensorView::new(&pred_shape, y_pred.elements),
        );
        let json = self.origin.check("custom_metrics", json)?;
        self.origin.decode("custom_metrics", serde_json::from_str(json.as_str()))
    }

    /// Calls `save`; returns the files written.
    pub fn save(&mut self, dir: &Path) -> Result<Vec<PathBuf>, CallError> {
        let dir = dir.to_string_lossy();
        let files = self.origin.check("save", self.inner.save(dir.as_ref().into()))?;
        Ok(paths_from_ffi(files))
    }

    /// Calls `load`.
    pub fn load(&mut self, dir: &Path) -> Result<(), CallError> {
        let dir = dir.to_string_lossy();
        self.origin.check("load", self.inner.load(dir.as_ref().into()))
    }
}

fn paths_from_ffi(paths: RVec<RString>) -> Vec<PathBuf> {
    paths.into_iter().map(|p| PathBuf::from(p.as_str())).collect()
}

/// The four reports a report generator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// `generate_data_report`.
    Data,
    /// `generate_training_report`.
    Training,
    /// `generate_evaluation_report`.
    Evaluation,
    /// `generate_summary_report`.
    Summary,
}

impl ReportKind {
    /// The plugin call's name.
    pub fn call(self) -> &'static str {
        match self {
            ReportKind::Data => "generate_data_report",
            ReportKind::Training => "generate_training_report",
            ReportKind::Evaluation => "generate_evaluation_report",
            ReportKind::Summary => "generate_summary_report",
        }
    }
}

/// A report generator living in a plugin.
pub struct ReportGeneratorHandle {
    inner: FfiReportGeneratorBox,
    origin: Origin,
}

impl ReportGeneratorHandle {
    /// Writes one report from `input` (the run's facts as JSON); returns the files written.
    pub fn generate(
        &mut self,
        kind: ReportKind,
        input: &serde_json::Value,
        services: &dyn HostServices,
    ) -> Result<Vec<PathBuf>, CallError> {
        let input = input.to_string();
        let input: RStr<'_> = input.as_str().into();
        let files = with_ffi_services(services, |s| match kind {
            ReportKind::Data => self.inner.generate_data_report(input, s),
            ReportKind::Training => self.inner.generate_training_report(input, s),
            ReportKind::Evaluation => self.inner.generate_evaluation_report(input, s),
            ReportKind::Summary => self.inner.generate_summary_report(input, s),
        });
        Ok(paths_from_ffi(self.origin.check(kind.call(), files)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_dependency_is_told_apart_from_a_bad_file() {
        let plugin = Path::new("/p/libmnist_plugin.so");
        let missing = classify_open_error(
            plugin,
            "libtorch_cpu.so: cannot open shared object file: No such file or directory".into(),
        );
        assert!(matches!(&missing, LoadError::MissingDependency { dependency, .. } if dependency == "libtorch_cpu.so"));
        assert!(missing.to_string().contains("needs libtorch (libtorch_cpu.so)"), "{missing}");

        let bad = classify_open_error(plugin, "/p/libmnist_plugin.so: invalid ELF header".into());
        assert!(matches!(bad, LoadError::NotALibrary { .. }));
        assert_eq!(
            bad.to_string(),
            "/p/libmnist_plugin.so: not a loadable dynamic library (invalid ELF header); point the class mapping at a plugin built as a cdylib"
        );
    }

    #[test]
    fn host_sdk_version_is_this_crates_version() {
        assert_eq!(host_sdk_version(), crate::SDK_VERSION);
    }
}
