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
/// Implement it and the trait of the class's kind ([`DataLoader`], [`Model`] or
/// [`ReportGenerator`]), then list the type in [`export_plugin!`](crate::export_plugin).
///
/// `host run` creates one instance of each class it uses, before the first stage, so that every
/// constructor has accepted its config before any work is done. An instance is only ever called
/// by one thread at a time, but may move between threads (hence `Send`).
///
/// ```
/// use plugin_sdk::prelude::*;
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Sections {
///     data_loader: Section,
/// }
///
/// #[derive(Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Section {
///     path: String,
///     limit: Option<usize>,
/// }
///
/// pub struct CsvLoader {
///     path: String,
///     limit: Option<usize>,
/// }
///
/// impl PluginClass for CsvLoader {
///     const NAME: &'static str = "CsvLoader";
///     const SUMMARY: &'static str = "reads a table from a CSV file";
///
///     fn config_keys() -> Vec<ConfigKey> {
///         vec![
///             ConfigKey::new("data_loader", "path", ConfigType::String).required().describe("the CSV file"),
///             ConfigKey::new("data_loader", "limit", ConfigType::Count).describe("read at most this many rows"),
///         ]
///     }
///
///     fn new(config: ClassConfig) -> Result<Self, PluginError> {
///         let Section { path, limit } = config.parse::<Sections>()?.data_loader;
///         if limit == Some(0) {
///             return Err(PluginError::invalid_config("data_loader.limit: must be 1 or more, or absent"));
///         }
///         Ok(CsvLoader { path, limit })
///     }
/// }
///
/// // What the host passes: the declared keys, checked, defaults filled.
/// let config = ClassConfig {
///     sections: serde_json::json!({"data_loader": {"path": "data/table.csv"}}),
///     declared: CsvLoader::config_keys(),
///     ..ClassConfig::default()
/// };
/// let loader = CsvLoader::new(config)?;
/// assert_eq!((loader.path.as_str(), loader.limit), ("data/table.csv", None));
/// # Ok::<(), PluginError>(())
/// ```
pub trait PluginClass: Sized + Send + 'static {
    /// The class name used in experiment configs (`plugins: {data_loader: MNISTLoader}`) and the
    /// class mapping. Unique within the library; the host refuses a library that repeats one.
    const NAME: &'static str;
    /// One line for `host plugins list`.
    const SUMMARY: &'static str;

    /// Every config key the class accepts (none by default). Called once, when the host first
    /// loads the library: the keys are part of its manifest. The host rejects unknown keys,
    /// checks types and fills defaults before calling [`PluginClass::new`], so the class sees a
    /// complete config; [`ClassConfig::parse`] refuses a field that is not declared here.
    fn config_keys() -> Vec<ConfigKey> {
        Vec::new()
    }

    /// Builds the class from its validated config (its sections, the run's seed and threads).
    /// Parse the sections with [`ClassConfig::parse`] or [`ClassConfig::section`], and refuse a
    /// value of the right type that is still wrong with [`PluginError::invalid_config`], naming
    /// the key and the fix: the run then stops before its first stage, reporting that the class
    /// rejected its config. Keep it cheap: read data in the calls that follow.
    fn new(config: ClassConfig) -> Result<Self, PluginError>;
}

/// A data loader: reads raw files and turns them into features and targets. Its config section
/// is `data_loader`.
///
/// In a run's load stage the host calls [`load_data`](Self::load_data), then
/// [`extract_features_and_targets`](Self::extract_features_and_targets), once each and on the
/// same instance, with [`Services::artifact_dir`] the run's folder. The stage is skipped when an
/// earlier run loaded the same files with the same loader and config. A loader never scales,
/// standardises or splits: the host does, seeded, and records each step. An error from either
/// call fails the run in its load stage ([`PluginError::cancelled`] records it as cancelled).
///
/// ```
/// use plugin_sdk::prelude::*;
///
/// /// A synthetic table: `rows` samples of one feature, the target twice the feature.
/// pub struct Doubling {
///     rows: usize,
///     loaded: Vec<f32>,
/// }
///
/// impl PluginClass for Doubling {
///     const NAME: &'static str = "Doubling";
///     const SUMMARY: &'static str = "y = 2x, made up";
///
///     fn config_keys() -> Vec<ConfigKey> {
///         vec![ConfigKey::new("data_loader", "rows", ConfigType::Count).default(100)]
///     }
///
///     fn new(config: ClassConfig) -> Result<Self, PluginError> {
///         let section: serde_json::Value = config.section("data_loader")?;
///         let rows = section["rows"].as_u64().unwrap_or(100) as usize;
///         Ok(Doubling { rows, loaded: Vec::new() })
///     }
/// }
///
/// impl DataLoader for Doubling {
///     fn load_data(&mut self, services: &Services<'_>) -> Result<LoadSummary, PluginError> {
///         self.loaded = (0..self.rows).map(|i| i as f32).collect();
///         services.progress(self.rows as u64, self.rows as u64, "made up");
///         // A loader that reads files lists each one in `source_files`.
///         Ok(LoadSummary { source_files: vec![], samples: self.rows, description: "y = 2x".into() })
///     }
///
///     fn extract_features_and_targets(&mut self, _: &Services<'_>) -> Result<Dataset, PluginError> {
///         let x = std::mem::take(&mut self.loaded);
///         let y: Vec<f32> = x.iter().map(|v| 2.0 * v).collect();
///         Ok(Dataset {
///             features: Tensor::from_f32(vec![x.len(), 1], x)?,
///             targets: Tensor::from_f32(vec![y.len(), 1], y)?,
///             task: TaskKind::Regression,
///             label_names: vec!["y".into()],
///             test_start: None,
///             metadata: serde_json::json!({"formula": "y = 2x"}),
///         })
///     }
/// }
///
/// // In a test, as the host calls it:
/// use plugin_sdk::{host::with_services, testing::RecordingServices};
/// let config = ClassConfig { sections: serde_json::json!({"data_loader": {"rows": 3}}), ..ClassConfig::default() };
/// let mut loader = Doubling::new(config)?;
/// let dataset = with_services(&RecordingServices::new(std::env::temp_dir()), |services| {
///     loader.load_data(services)?;
///     loader.extract_features_and_targets(services)
/// })?;
/// assert_eq!(dataset.targets.view().as_f32(), Some(&[0.0, 2.0, 4.0][..]));
/// # Ok::<(), PluginError>(())
/// ```
pub trait DataLoader: PluginClass {
    /// Reads (or downloads) the raw data, keeping what the next call needs, and reports every
    /// file read in a [`LoadSummary`]. The host hashes each listed file into the run's provenance; relative
    /// paths are relative to the folder the host runs in. Call [`Services::progress`] on long
    /// loads and check [`Services::should_stop`] between files.
    fn load_data(&mut self, services: &Services<'_>) -> Result<LoadSummary, PluginError>;
    /// Returns the features and targets of the data read by [`DataLoader::load_data`], as a
    /// [`Dataset`] whose buffers move to the host without copying. The host refuses a dataset
    /// with no rows, with fewer or more target rows than feature rows, or (classification) a
    /// class index outside `label_names`.
    fn extract_features_and_targets(&mut self, services: &Services<'_>) -> Result<Dataset, PluginError>;
}

/// A model: trains, predicts, evaluates, saves and loads. Its config sections are `model` and
/// `training`.
///
/// In a run the host calls [`fit`](Self::fit) then [`save`](Self::save) (train stage), then
/// [`predict`](Self::predict), [`evaluate`](Self::evaluate) and
/// [`custom_metrics`](Self::custom_metrics) on the test split (evaluate stage). When training is
/// reused from an earlier run, or given with `host run --model-from RUN`, a fresh instance gets
/// [`load`](Self::load) instead of `fit`. Features always arrive as `f32`, scaled by the host;
/// regression targets arrive standardised (unless `preprocessing.standardize_targets: false`),
/// and the host undoes that on what `predict` returns. An error fails the run in the stage that
/// made the call ([`PluginError::cancelled`] records it as cancelled).
///
/// ```
/// use std::path::{Path, PathBuf};
///
/// use plugin_sdk::prelude::*;
/// use serde_json::{Map, Value};
///
/// /// Predicts each target's training mean.
/// pub struct Mean {
///     means: Vec<f32>,
/// }
///
/// impl PluginClass for Mean {
///     const NAME: &'static str = "Mean";
///     const SUMMARY: &'static str = "predicts the training mean";
///
///     fn new(_: ClassConfig) -> Result<Self, PluginError> {
///         Ok(Mean { means: Vec::new() })
///     }
/// }
///
/// impl Model for Mean {
///     fn fit(&mut self, train: &DataView<'_>, _: Option<&DataView<'_>>, services: &Services<'_>)
///         -> Result<FitSummary, PluginError> {
///         if train.task != TaskKind::Regression {
///             return Err(PluginError::new("Mean predicts values; it cannot classify"));
///         }
///         if services.should_stop() {
///             return Err(PluginError::cancelled());
///         }
///         let y = train.targets.as_f32().ok_or_else(|| PluginError::new("regression targets are f32"))?;
///         let rows = train.targets.rows().max(1) as f32;
///         self.means = (0..train.outputs)
///             .map(|column| y.iter().skip(column).step_by(train.outputs).sum::<f32>() / rows)
///             .collect();
///         services.progress(1, 1, "averaged");
///         services.metric("loss", 1, 0.0);
///         Ok(FitSummary { epochs_completed: 1, device: "cpu".into(), ..FitSummary::default() })
///     }
///
///     fn predict(&mut self, features: &TensorView<'_>, _: &Services<'_>) -> Result<Tensor, PluginError> {
///         let rows = features.rows();
///         let values = (0..rows).flat_map(|_| self.means.iter().copied()).collect();
///         Ok(Tensor::from_f32(vec![rows, self.means.len()], values)?)
///     }
///
///     fn evaluate(&mut self, _: &DataView<'_>, _: &Services<'_>) -> Result<Map<String, Value>, PluginError> {
///         Ok(Map::new())
///     }
///
///     fn save(&mut self, dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
///         let file = dir.join("means.json");
///         std::fs::write(&file, serde_json::to_string(&self.means)?).context(file.display())?;
///         Ok(vec![file])
///     }
///
///     fn load(&mut self, dir: &Path) -> Result<(), PluginError> {
///         let file = dir.join("means.json");
///         let text = std::fs::read_to_string(&file).context(file.display())?;
///         self.means = serde_json::from_str(&text).context(file.display())?;
///         Ok(())
///     }
/// }
///
/// // In a test, as the host calls it:
/// use plugin_sdk::{host::with_services, testing::RecordingServices};
/// let (x, y) = ([1.0f32, 2.0, 3.0], [2.0f32, 4.0, 6.0]);
/// let train = DataView {
///     features: TensorView::new(vec![3, 1], Elements::F32(&x))?,
///     targets: TensorView::new(vec![3, 1], Elements::F32(&y))?,
///     task: TaskKind::Regression,
///     outputs: 1,
/// };
/// let host = RecordingServices::new(std::env::temp_dir());
/// let mut model = Mean::new(ClassConfig::default())?;
/// let predicted = with_services(&host, |services| {
///     model.fit(&train, None, services)?;
///     model.predict(&train.features, services)
/// })?;
/// assert_eq!(predicted.view().as_f32(), Some(&[4.0, 4.0, 4.0][..]));
/// assert_eq!(*host.metrics.lock().unwrap(), [("loss".to_string(), 1, 0.0)]);
/// # use plugin_sdk::Elements;
/// # Ok::<(), PluginError>(())
/// ```
pub trait Model: PluginClass {
    /// Trains on `train`; `validation` is the validation split, `None` when it has no rows.
    /// Report each epoch with [`Services::metric`] (`loss`, `val_loss`, ... at step = the epoch,
    /// from 1): the values become the run's history, and a non-finite `loss` stops the run as
    /// diverged. Call [`Services::progress`] every batch, check [`Services::should_stop`]
    /// between batches and return [`PluginError::cancelled`] when it is true. Take randomness
    /// only from [`ClassConfig::seed`] and use at most [`ClassConfig::threads`] threads. The
    /// [`FitSummary`] returned is recorded in the run.
    fn fit(
        &mut self,
        train: &DataView<'_>,
        validation: Option<&DataView<'_>>,
        services: &Services<'_>,
    ) -> Result<FitSummary, PluginError>;

    /// Returns one row per sample of `features` (`[n, ...sample_shape]`, `f32`), as an `f32`
    /// tensor: class probabilities `[n, classes]` (each row in [0, 1], summing to 1) or values
    /// `[n, outputs]` in the units the model was trained on. The host refuses another dtype,
    /// another row count or rows that are not probabilities, and computes its standard metrics
    /// from the rest.
    fn predict(&mut self, features: &TensorView<'_>, services: &Services<'_>) -> Result<Tensor, PluginError>;

    /// The model's own view of its quality on `data` (the test split): loss, accuracy, ... as a
    /// JSON object, recorded under `model` in the run's `metrics.json`. Return an empty object
    /// when there is nothing to add to the host's metrics.
    fn evaluate(
        &mut self,
        data: &DataView<'_>,
        services: &Services<'_>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, PluginError>;

    /// Extra metrics beyond the host's standard ones, computed from the test split's targets
    /// `y_true` and what [`predict`](Self::predict) returned for it, `y_pred`; recorded under
    /// `custom` in `metrics.json`. None by default.
    fn custom_metrics(
        &mut self,
        y_true: &TensorView<'_>,
        y_pred: &TensorView<'_>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, PluginError> {
        let _ = (y_true, y_pred);
        Ok(serde_json::Map::new())
    }

    /// Writes everything [`load`](Self::load) needs into `dir` (the run's `model` folder, which
    /// exists) and returns every file written. The host hashes each into the run's record and
    /// refuses a file written into `dir` but not returned: it would be lost when the model is
    /// reused.
    fn save(&mut self, dir: &Path) -> Result<Vec<PathBuf>, PluginError>;

    /// Restores a model written by [`Model::save`] from `dir`, on an instance that was never
    /// fitted: [`predict`](Self::predict) and [`evaluate`](Self::evaluate) follow.
    fn load(&mut self, dir: &Path) -> Result<(), PluginError>;
}

/// A report generator: writes files (usually HTML or Markdown) into
/// [`Services::artifact_dir`] (the run's `reports` folder). Its config section is `reporting`.
///
/// After evaluation (when reporting is on), and for a past run with `host report`, the host
/// calls the four methods in order (data, training, evaluation, summary), each with the same
/// `input`: the run's facts as JSON. `input["run"]` is the run record (config, plugins with
/// their SHA-256, data lineage, `history` of per-epoch metrics, `metrics`); `input["data"]`
/// and `input["evaluation"]` hold what the host prepared for drawing (class counts, samples,
/// misclassified rows; for regression each target's actual and predicted test values). Each
/// method returns the files it wrote, which the host hashes into the run; one with nothing to
/// draw returns none. Escape every string from a config, a class or the data in HTML. An error
/// fails the run in its report stage.
///
/// ```
/// use std::path::PathBuf;
///
/// use plugin_sdk::prelude::*;
///
/// /// Writes only a summary page.
/// pub struct Summary;
///
/// impl PluginClass for Summary {
///     const NAME: &'static str = "Summary";
///     const SUMMARY: &'static str = "one Markdown page";
///
///     fn new(_: ClassConfig) -> Result<Self, PluginError> {
///         Ok(Summary)
///     }
/// }
///
/// impl ReportGenerator for Summary {
///     fn generate_data_report(&mut self, _: &serde_json::Value, _: &Services<'_>) -> Result<Vec<PathBuf>, PluginError> {
///         Ok(vec![])
///     }
///     fn generate_training_report(&mut self, _: &serde_json::Value, _: &Services<'_>) -> Result<Vec<PathBuf>, PluginError> {
///         Ok(vec![])
///     }
///     fn generate_evaluation_report(&mut self, _: &serde_json::Value, _: &Services<'_>) -> Result<Vec<PathBuf>, PluginError> {
///         Ok(vec![])
///     }
///     fn generate_summary_report(
///         &mut self,
///         input: &serde_json::Value,
///         services: &Services<'_>,
///     ) -> Result<Vec<PathBuf>, PluginError> {
///         let name = input["run"]["experiment_name"].as_str().unwrap_or("a run");
///         let file = services.artifact_dir().join("summary.md");
///         std::fs::write(&file, format!("# {name}\n")).context(file.display())?;
///         Ok(vec![file])
///     }
/// }
///
/// // In a test, as the host calls it:
/// use plugin_sdk::{host::with_services, testing::RecordingServices};
/// let reports = std::env::temp_dir().join(format!("summary-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&reports)?;
/// let input = serde_json::json!({"run": {"experiment_name": "demo"}});
/// let written = with_services(&RecordingServices::new(&reports), |services| {
///     Summary.generate_summary_report(&input, services)
/// })?;
/// assert_eq!(std::fs::read_to_string(&written[0])?, "# demo\n");
/// # std::fs::remove_dir_all(&reports)?;
/// # Ok::<(), PluginError>(())
/// ```
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
/// [`PluginClass::new`] receives it.
///
/// In a test, build one by hand; `ClassConfig::default()` has no sections, seed 0 and
/// threads 0, and checks no declared keys.
///
/// ```
/// use plugin_sdk::{ClassConfig, ConfigKey, ConfigType};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Training {
///     epochs: usize,
///     learning_rate: f64,
/// }
///
/// let config = ClassConfig {
///     sections: serde_json::json!({"training": {"epochs": 5, "learning_rate": 0.01}}),
///     seed: 42,
///     threads: 2,
///     declared: vec![
///         ConfigKey::new("training", "epochs", ConfigType::Count).default(10),
///         ConfigKey::new("training", "learning_rate", ConfigType::Number).default(0.001),
///     ],
///     ..ClassConfig::default()
/// };
/// let training: Training = config.section("training")?;
/// assert_eq!((training.epochs, training.learning_rate), (5, 0.01));
/// # Ok::<(), plugin_sdk::PluginError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClassConfig {
    /// The sections this class owns, keyed by section name.
    pub sections: serde_json::Value,
    /// The run's seed; a class derives every random stream from it (several by mixing in a
    /// constant), never from the clock or a global generator, so that `host replay` reproduces
    /// the run.
    pub seed: u64,
    /// The number of compute threads the host grants this run; a class must not use more (the
    /// host divides cores among sweep trials, and results may depend on the count).
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
    ///
    /// ```
    /// use plugin_sdk::{ClassConfig, ConfigKey, ConfigType};
    /// use serde::Deserialize;
    ///
    /// #[derive(Deserialize)]
    /// struct Sections {
    ///     model: Model,
    ///     training: Training,
    /// }
    /// #[derive(Deserialize)]
    /// struct Model {
    ///     hidden: Vec<usize>,
    /// }
    /// #[derive(Deserialize)]
    /// struct Training {
    ///     epochs: usize,
    ///     #[serde(default)]
    ///     warmup: usize,
    /// }
    ///
    /// let mut config = ClassConfig {
    ///     sections: serde_json::json!({"model": {"hidden": [64]}, "training": {"epochs": 3}}),
    ///     declared: vec![
    ///         ConfigKey::new("model", "hidden", ConfigType::List(Box::new(ConfigType::Count))),
    ///         ConfigKey::new("training", "epochs", ConfigType::Count),
    ///     ],
    ///     ..ClassConfig::default()
    /// };
    /// // `training.warmup` is read but not declared: a user could never set it.
    /// let error = config.parse::<Sections>().err().unwrap();
    /// assert!(error.message.starts_with("the class reads training.warmup, which its config_keys() do not declare"));
    ///
    /// config.declared.push(ConfigKey::new("training", "warmup", ConfigType::Count).default(0));
    /// let sections: Sections = config.parse()?;
    /// assert_eq!((sections.model.hidden, sections.training.epochs), (vec![64], 3));
    /// # Ok::<(), plugin_sdk::PluginError>(())
    /// ```
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

/// The host's services, available during every plugin call: logging, progress, per-epoch
/// metrics, the stop request and the folder to write into.
///
/// In a plugin's own tests, [`host::with_services`](super::host::with_services) makes one backed
/// by [`RecordingServices`](super::testing::RecordingServices), which keeps what was reported.
///
/// ```
/// use plugin_sdk::host::with_services;
/// use plugin_sdk::testing::RecordingServices;
/// use plugin_sdk::{PluginError, Services};
///
/// // A training loop's use of its services.
/// fn train(epochs: u64, services: &Services<'_>) -> Result<(), PluginError> {
///     for epoch in 1..=epochs {
///         if services.should_stop() {
///             return Err(PluginError::cancelled());
///         }
///         services.progress(epoch, epochs, &format!("epoch {epoch}"));
///         services.metric("loss", epoch, 1.0 / epoch as f64);
///     }
///     services.info("trained");
///     Ok(())
/// }
///
/// let host = RecordingServices::new(std::env::temp_dir());
/// with_services(&host, |services| train(3, services))?;
/// assert_eq!(host.metrics.lock().unwrap().len(), 3);
///
/// host.stop.store(true, std::sync::atomic::Ordering::Relaxed);
/// let stopped = with_services(&host, |services| train(3, services)).unwrap_err();
/// assert_eq!(stopped, PluginError::cancelled());
/// # Ok::<(), PluginError>(())
/// ```
pub struct Services<'a> {
    inner: FfiServicesRef<'a>,
}

impl<'a> Services<'a> {
    pub(crate) fn new(inner: FfiServicesRef<'a>) -> Self {
        Services { inner }
    }

    /// Sends a log line to the host, which logs it with the class and plugin's names (info
    /// shown with `-v`, debug with `-vv`, or as `HOST_LOG` says). Never print to stdout or
    /// stderr yourself.
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
    /// (`loss 0.31`). The host draws a bar on a terminal and log lines elsewhere. Call it every
    /// batch (a loader: every few thousand rows); `done` back at 0 or 1 starts a new round (the
    /// next epoch).
    pub fn progress(&self, done: u64, total: u64, message: &str) {
        self.inner.progress(done, total, message.into());
    }

    /// Records a metric value at a step (the epoch, from 1, for per-epoch metrics such as
    /// `loss`, `val_loss`, `epoch_seconds`). It goes into the run's history, the store (live,
    /// for `host runs watch`), the curves of `host runs compare --html` and `host ui`, and
    /// reports. A non-finite value of a metric
    /// whose name contains `loss` makes [`should_stop`](Self::should_stop) true and fails the
    /// run as diverged.
    pub fn metric(&self, name: &str, step: u64, value: f64) {
        self.inner.metric(name.into(), step, value);
    }

    /// Whether the host asks the plugin to stop: the user pressed Ctrl-C, a sweep pruned the
    /// trial, a loss diverged, or the store stopped taking the run's metrics. Check it between
    /// batches (and between files in a long load) and return [`PluginError::cancelled`] when it
    /// is true.
    pub fn should_stop(&self) -> bool {
        self.inner.should_stop()
    }

    /// The directory where this call may write files: the run's folder for a loader or a model
    /// (a model's weights go to [`Model::save`]'s folder instead), the run's `reports` folder for
    /// a report generator.
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
