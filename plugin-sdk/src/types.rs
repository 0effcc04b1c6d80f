//! Plain Rust types shared by plugins and the host: tensors, datasets, manifests, config keys,
//! errors. None of them exposes an abi_stable type; bulk buffers are moved across the boundary,
//! never copied.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ffi::FfiBuffer;

/// The element type of a [`Tensor`]: `f32` for model inputs and outputs, `i64` for class
/// indices, `u8` for raw pixels, `f64` for values that need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// 64-bit signed integer (class labels).
    I64,
    /// Unsigned byte (raw pixels).
    U8,
}

impl DType {
    /// The size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::U8 => 1,
        }
    }

    /// The lowercase name used in messages and JSON (`f32`, `i64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I64 => "i64",
            DType::U8 => "u8",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dense, row-major, owned n-dimensional array: a loader's features and targets (in a
/// [`Dataset`]) and a model's predictions ([`Model::predict`](crate::Model::predict)).
///
/// Its buffer is stored in an ABI-stable vector, so handing a `Tensor` to the other side of the
/// plugin boundary moves the allocation instead of copying it. Make one with
/// [`from_f32`](Self::from_f32), [`from_f64`](Self::from_f64), [`from_i64`](Self::from_i64) or
/// [`from_u8`](Self::from_u8); read it through [`view`](Self::view) or
/// [`elements`](Self::elements).
///
/// ```
/// use plugin_sdk::{DType, Tensor};
///
/// // Two grey 2×3 images, each row after row.
/// let images = Tensor::from_u8(vec![2, 2, 3], vec![0, 255, 0, 255, 0, 255, 10, 20, 30, 40, 50, 60])?;
/// assert_eq!(images.dtype(), DType::U8);
/// assert_eq!(images.shape(), [2, 2, 3]);
/// assert_eq!(images.rows(), 2);
/// assert_eq!(images.view().row_len(), 6);
/// # Ok::<(), plugin_sdk::ShapeError>(())
/// ```
pub struct Tensor {
    pub(crate) shape: Vec<usize>,
    pub(crate) buffer: FfiBuffer,
}

/// A borrowed, typed slice of elements: a [`TensorView`]'s data, row-major. Match on it to
/// accept several dtypes, or use [`TensorView::as_f32`] and [`TensorView::as_i64`] for one.
///
/// ```
/// use plugin_sdk::{DType, Elements};
///
/// let labels = [2i64, 0, 1];
/// let elements = Elements::I64(&labels);
/// assert_eq!((elements.dtype(), elements.len()), (DType::I64, 3));
/// let total: f64 = match elements {
///     Elements::F32(s) => s.iter().map(|&v| f64::from(v)).sum(),
///     Elements::F64(s) => s.iter().sum(),
///     Elements::I64(s) => s.iter().map(|&v| v as f64).sum(),
///     Elements::U8(s) => s.iter().map(|&v| f64::from(v)).sum(),
/// };
/// assert_eq!(total, 3.0);
/// ```
#[derive(Debug, Clone, Copy)]
pub enum Elements<'a> {
    /// 32-bit floats.
    F32(&'a [f32]),
    /// 64-bit floats.
    F64(&'a [f64]),
    /// 64-bit signed integers.
    I64(&'a [i64]),
    /// Bytes.
    U8(&'a [u8]),
}

impl<'a> Elements<'a> {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Elements::F32(_) => DType::F32,
            Elements::F64(_) => DType::F64,
            Elements::I64(_) => DType::I64,
            Elements::U8(_) => DType::U8,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Elements::F32(s) => s.len(),
            Elements::F64(s) => s.len(),
            Elements::I64(s) => s.len(),
            Elements::U8(s) => s.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as little-endian bytes, without copying on little-endian machines.
    /// Used for content hashing.
    pub fn as_bytes(&self) -> &'a [u8] {
        fn bytes<T>(slice: &[T]) -> &[u8] {
            // SAFETY: every element type here is plain old data with no padding, and
            // u8 has alignment 1, so viewing the same memory as bytes is sound.
            unsafe { std::slice::from_raw_parts(slice.as_ptr().cast::<u8>(), std::mem::size_of_val(slice)) }
        }
        match self {
            Elements::F32(s) => bytes(s),
            Elements::F64(s) => bytes(s),
            Elements::I64(s) => bytes(s),
            Elements::U8(s) => s,
        }
    }
}

/// Why a tensor could not be made: its shape needs another number of elements than it was
/// given. Converts into a [`PluginError`] with `?`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("tensor shape {shape:?} needs {expected} elements but the buffer holds {actual}")]
pub struct ShapeError {
    /// The requested shape.
    pub shape: Vec<usize>,
    /// The element count the shape implies.
    pub expected: usize,
    /// The element count of the buffer.
    pub actual: usize,
}

pub(crate) fn check_shape(shape: &[usize], actual: usize) -> Result<(), ShapeError> {
    let expected = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match expected {
        Some(expected) if expected == actual => Ok(()),
        expected => Err(ShapeError { shape: shape.to_vec(), expected: expected.unwrap_or(usize::MAX), actual }),
    }
}

impl Tensor {
    /// A tensor of 32-bit floats: what a model's `predict` returns, and what features usually
    /// are. `data` is row-major; a scalar has shape `[]` and one element. Fails when the product
    /// of `shape` is not `data.len()`.
    ///
    /// ```
    /// use plugin_sdk::{PluginError, Tensor};
    ///
    /// // Class probabilities for two samples of three classes.
    /// let probabilities = Tensor::from_f32(vec![2, 3], vec![0.7, 0.2, 0.1, 0.1, 0.1, 0.8])?;
    /// assert_eq!(probabilities.rows(), 2);
    /// let error = Tensor::from_f32(vec![2, 3], vec![0.0; 5]).unwrap_err();
    /// assert_eq!(error.to_string(), "tensor shape [2, 3] needs 6 elements but the buffer holds 5");
    /// # Ok::<(), PluginError>(())
    /// ```
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, ShapeError> {
        check_shape(&shape, data.len())?;
        Ok(Tensor { shape, buffer: FfiBuffer::F32(data.into()) })
    }

    /// A tensor of 64-bit floats. Fails when the product of `shape` is not `data.len()`.
    ///
    /// ```
    /// # use plugin_sdk::Tensor;
    /// let readings = Tensor::from_f64(vec![3, 1], vec![0.125, 0.25, 0.5])?;
    /// assert_eq!(readings.shape(), [3, 1]);
    /// # Ok::<(), plugin_sdk::ShapeError>(())
    /// ```
    pub fn from_f64(shape: Vec<usize>, data: Vec<f64>) -> Result<Self, ShapeError> {
        check_shape(&shape, data.len())?;
        Ok(Tensor { shape, buffer: FfiBuffer::F64(data.into()) })
    }

    /// A tensor of 64-bit signed integers: class indices as a classification loader's targets,
    /// `[samples]`. Fails when the product of `shape` is not `data.len()`.
    ///
    /// ```
    /// # use plugin_sdk::Tensor;
    /// let labels = Tensor::from_i64(vec![4], vec![0, 2, 1, 0])?;
    /// assert_eq!(labels.view().as_i64(), Some(&[0, 2, 1, 0][..]));
    /// # Ok::<(), plugin_sdk::ShapeError>(())
    /// ```
    pub fn from_i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Self, ShapeError> {
        check_shape(&shape, data.len())?;
        Ok(Tensor { shape, buffer: FfiBuffer::I64(data.into()) })
    }

    /// A tensor of bytes: raw pixels as a loader's features (the host scales `u8` features by
    /// 1/255 unless `preprocessing.normalize` is `none`). Fails when the product of `shape` is
    /// not `data.len()`.
    ///
    /// ```
    /// # use plugin_sdk::Tensor;
    /// let image = Tensor::from_u8(vec![1, 2, 2], vec![0, 64, 128, 255])?;
    /// assert_eq!(image.elements().as_bytes(), [0, 64, 128, 255]);
    /// # Ok::<(), plugin_sdk::ShapeError>(())
    /// ```
    pub fn from_u8(shape: Vec<usize>, data: Vec<u8>) -> Result<Self, ShapeError> {
        check_shape(&shape, data.len())?;
        Ok(Tensor { shape, buffer: FfiBuffer::U8(data.into()) })
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.elements().dtype()
    }

    /// The number of rows (the first dimension), 0 for a scalar.
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// The elements, row-major.
    pub fn elements(&self) -> Elements<'_> {
        match &self.buffer {
            FfiBuffer::F32(v) => Elements::F32(v.as_slice()),
            FfiBuffer::F64(v) => Elements::F64(v.as_slice()),
            FfiBuffer::I64(v) => Elements::I64(v.as_slice()),
            FfiBuffer::U8(v) => Elements::U8(v.as_slice()),
        }
    }

    /// A borrowed view of the whole tensor, with the [`TensorView`] helpers.
    pub fn view(&self) -> TensorView<'_> {
        TensorView { shape: self.shape.clone(), elements: self.elements() }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor").field("dtype", &self.dtype()).field("shape", &self.shape).finish()
    }
}

/// A borrowed tensor: shape and elements. A model receives its features and targets as views
/// (in a [`DataView`], and in [`Model::predict`](crate::Model::predict)); [`Tensor::view`] makes
/// one of a tensor.
///
/// ```
/// use plugin_sdk::{Elements, TensorView};
///
/// let features = [0.0f32, 0.5, 1.0, 0.25, 0.75, 0.5];
/// let view = TensorView::new(vec![2, 3], Elements::F32(&features))?;
/// assert_eq!((view.rows(), view.row_len()), (2, 3));
/// let values = view.as_f32().expect("f32 features");
/// let rows: Vec<&[f32]> = values.chunks_exact(view.row_len()).collect();
/// assert_eq!(rows[1], [0.25, 0.75, 0.5]);
/// assert_eq!(view.as_i64(), None); // not i64
/// assert!(TensorView::new(vec![4], Elements::F32(&features)).is_err());
/// # Ok::<(), plugin_sdk::ShapeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TensorView<'a> {
    /// The dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub elements: Elements<'a>,
}

impl<'a> TensorView<'a> {
    /// A view over `elements` with `shape`. Fails when they disagree.
    pub fn new(shape: Vec<usize>, elements: Elements<'a>) -> Result<Self, ShapeError> {
        check_shape(&shape, elements.len())?;
        Ok(TensorView { shape, elements })
    }

    /// The number of rows (the first dimension), 0 for a scalar.
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// The number of elements in one row (the product of every dimension after the first):
    /// slice a row with `chunks_exact(view.row_len())`.
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// The elements as `f32`, or `None` for another dtype.
    pub fn as_f32(&self) -> Option<&'a [f32]> {
        match self.elements {
            Elements::F32(s) => Some(s),
            _ => None,
        }
    }

    /// The elements as `i64`, or `None` for another dtype.
    pub fn as_i64(&self) -> Option<&'a [i64]> {
        match self.elements {
            Elements::I64(s) => Some(s),
            _ => None,
        }
    }
}

/// What a dataset's targets mean, and so how the host treats them: with `Regression` it
/// standardises targets (unless `preprocessing.standardize_targets: false`) and computes MSE,
/// RMSE, MAE and R² per target; with `Classification` it computes accuracy, F1, ROC and the
/// confusion matrix from predicted probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Targets are `i64` class indices into `label_names`.
    Classification,
    /// Targets are `f32` values, `[samples, outputs]` (or `[samples]` for one), one column per
    /// name in `label_names`.
    Regression,
}

/// Features and targets as a loader produces them, returned by
/// [`DataLoader::extract_features_and_targets`](crate::DataLoader::extract_features_and_targets).
///
/// The host checks it (as many target rows as feature rows, at least one row, class indices
/// within `label_names`), records its content digest, then splits, scales and (for regression)
/// standardises it itself, recording each step: a loader never does any of that.
///
/// ```
/// use plugin_sdk::{Dataset, TaskKind, Tensor};
///
/// // Four samples of two features in two classes; the last row is the source's own test set.
/// let dataset = Dataset {
///     features: Tensor::from_f32(vec![4, 2], vec![0.0, 1.0, 1.0, 0.0, 0.5, 0.5, 1.0, 1.0])?,
///     targets: Tensor::from_i64(vec![4], vec![0, 1, 0, 1])?,
///     task: TaskKind::Classification,
///     label_names: vec!["cat".into(), "dog".into()],
///     test_start: Some(3),
///     metadata: serde_json::json!({"source": "a doc example"}),
/// };
/// assert_eq!(dataset.features.rows(), dataset.targets.rows());
/// # Ok::<(), plugin_sdk::PluginError>(())
/// ```
#[derive(Debug)]
pub struct Dataset {
    /// Features, `[samples, ...sample_shape]`, as `u8`, `f32` or `f64`; models receive them as
    /// `f32`, scaled by the host.
    pub features: Tensor,
    /// Targets, `[samples]` class indices (`i64`) or `[samples, outputs]` values (`f32`), as
    /// [`task`](Self::task) says.
    pub targets: Tensor,
    /// Classification or regression.
    pub task: TaskKind,
    /// Class names (classification: required, index `i` names class `i`) or target column
    /// names (regression). Its length is the `outputs` a model is given.
    pub label_names: Vec<String>,
    /// When the source ships a fixed test set, the row where it starts (rows before it are
    /// the training pool). `None` when the host should split every row itself.
    pub test_start: Option<usize>,
    /// Free-form facts about the data (source, dataset name, units, column names), as JSON;
    /// recorded in the run as `data.metadata`.
    pub metadata: serde_json::Value,
}

/// The data a model receives, borrowed from the host: one split (training, validation or test)
/// in [`Model::fit`](crate::Model::fit) and [`Model::evaluate`](crate::Model::evaluate).
///
/// ```
/// use plugin_sdk::{DataView, Elements, TaskKind, TensorView};
///
/// let (features, labels) = ([0.0f32, 1.0, 1.0, 0.0], [0i64, 1]);
/// let data = DataView {
///     features: TensorView::new(vec![2, 2], Elements::F32(&features))?,
///     targets: TensorView::new(vec![2], Elements::I64(&labels))?,
///     task: TaskKind::Classification,
///     outputs: 2,
/// };
/// assert_eq!(data.targets.as_i64(), Some(&[0, 1][..]));
/// # Ok::<(), plugin_sdk::ShapeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct DataView<'a> {
    /// Features, `[samples, ...sample_shape]`, always `f32` (scaled by the host;
    /// `[samples, row_len]` with `preprocessing.flatten`).
    pub features: TensorView<'a>,
    /// Targets, as in [`Dataset::targets`]: `i64` class indices, or `f32` values (standardised
    /// by the host unless `preprocessing.standardize_targets: false`).
    pub targets: TensorView<'a>,
    /// Classification or regression.
    pub task: TaskKind,
    /// Number of classes (classification) or target columns (regression): the loader's
    /// `label_names` count, and the width of the rows `predict` returns.
    pub outputs: usize,
}

/// A file that a loader read, listed in its [`LoadSummary`]. The host hashes it into the run's
/// provenance as a raw-data entity, and rehashes it before reusing a cached load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// The file's path as the loader opened it (relative paths are relative to the folder the
    /// host runs in).
    pub path: String,
    /// What the file holds (`train-images`, `t10k-labels`, ...).
    pub role: String,
}

/// What [`DataLoader::load_data`](crate::DataLoader::load_data) reports: the files read and a
/// short description.
///
/// ```
/// use plugin_sdk::{LoadSummary, SourceFile};
///
/// let summary = LoadSummary {
///     source_files: vec![
///         SourceFile { path: "data/train.csv".into(), role: "train".into() },
///         SourceFile { path: "data/test.csv".into(), role: "test".into() },
///     ],
///     samples: 1200,
///     description: "1200 rows of 8 columns from data/".into(),
/// };
/// assert_eq!(summary.source_files[1].role, "test");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadSummary {
    /// Every file the loader read, in a stable order. A file read but not listed is missing
    /// from the run's provenance, and a cached load would not notice it change.
    pub source_files: Vec<SourceFile>,
    /// Number of samples loaded.
    pub samples: usize,
    /// One line for humans; recorded as the run's data description.
    pub description: String,
}

/// What [`Model::fit`](crate::Model::fit) reports when training ends; recorded in the run.
/// Per-epoch values go through [`Services::metric`](crate::Services::metric) instead.
///
/// ```
/// use plugin_sdk::FitSummary;
///
/// let summary = FitSummary {
///     epochs_completed: 12,
///     best_epoch: Some(9),
///     stopped_early: true,
///     device: "cpu".into(),
///     details: serde_json::json!({"parameters": 101_770}),
/// };
/// // Or only what applies:
/// let simple = FitSummary { epochs_completed: 1, device: "cpu".into(), ..FitSummary::default() };
/// assert_eq!(simple.best_epoch, None);
/// # let _ = summary;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FitSummary {
    /// Epochs fully completed.
    pub epochs_completed: usize,
    /// The epoch whose weights the model kept (1-based), when it restores the best epoch.
    pub best_epoch: Option<usize>,
    /// Whether early stopping ended training before the configured epoch count.
    pub stopped_early: bool,
    /// The device trained on (`cpu`, `cuda:0`).
    pub device: String,
    /// Anything else worth recording, as a JSON object.
    #[serde(default)]
    pub details: serde_json::Value,
}

/// Facts about the run that every class receives when it is created (a plugin reads them from
/// [`ClassConfig`](crate::ClassConfig)). Sent as JSON, so fields can be added without an ABI
/// change; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunContext {
    /// The run's seed.
    pub seed: u64,
    /// Compute threads granted to the run.
    pub threads: usize,
    /// The folder of an earlier, unfinished attempt of this run (a requeued or re-run sweep
    /// trial), where a model that writes per-epoch checkpoints may find its last one and go on
    /// from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<std::path::PathBuf>,
}

/// The three kinds of plugin class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ClassKind {
    /// Loads raw data and extracts features and targets.
    Loader,
    /// Trains, predicts, evaluates, saves and loads.
    Model,
    /// Writes HTML (or other) reports.
    ReportGenerator,
}

impl ClassKind {
    /// Every kind, in the order of the class mapping file.
    pub const ALL: [ClassKind; 3] = [ClassKind::Loader, ClassKind::Model, ClassKind::ReportGenerator];

    /// The name used in `class_mapping_config.yaml` (`Loader`, `Model`, `ReportGenerator`).
    pub fn name(self) -> &'static str {
        match self {
            ClassKind::Loader => "Loader",
            ClassKind::Model => "Model",
            ClassKind::ReportGenerator => "ReportGenerator",
        }
    }

    /// The experiment config sections this kind of class owns.
    pub fn sections(self) -> &'static [&'static str] {
        match self {
            ClassKind::Loader => &["data_loader"],
            ClassKind::Model => &["model", "training"],
            ClassKind::ReportGenerator => &["reporting"],
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            ClassKind::Loader => 0,
            ClassKind::Model => 1,
            ClassKind::ReportGenerator => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }
}

impl fmt::Display for ClassKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type of a config value, checked by the host before a plugin sees its config: a value of
/// another type is reported to the user with the file and key, and the class is never created.
///
/// ```
/// use plugin_sdk::ConfigType;
///
/// let layers = ConfigType::List(Box::new(ConfigType::Count));
/// assert_eq!(layers.spelling(), "list[count]");
/// let optimizer = ConfigType::Choice(vec!["adam".into(), "sgd".into()]);
/// assert_eq!(optimizer.to_string(), "one of adam|sgd");
/// assert_eq!(ConfigType::parse("one of adam|sgd"), optimizer);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigType {
    /// A whole number (`3`, `-1`).
    Integer,
    /// A whole number, 0 or more (epochs, sizes, counts).
    Count,
    /// Any number (`0.001`, `3`).
    Number,
    /// A string.
    String,
    /// `true` or `false`.
    Boolean,
    /// One of the listed strings, exactly.
    Choice(Vec<String>),
    /// A list whose items all have the inner type.
    List(Box<ConfigType>),
    /// Anything (a nested mapping, say); the plugin checks it.
    Any,
}

impl ConfigType {
    /// The type as the manifest spells it: `integer`, `list[number]`, `one of adam|sgd`.
    pub fn spelling(&self) -> String {
        match self {
            ConfigType::Integer => "integer".into(),
            ConfigType::Count => "count".into(),
            ConfigType::Number => "number".into(),
            ConfigType::String => "string".into(),
            ConfigType::Boolean => "boolean".into(),
            ConfigType::Any => "any".into(),
            ConfigType::List(inner) => format!("list[{}]", inner.spelling()),
            ConfigType::Choice(choices) => format!("one of {}", choices.join("|")),
        }
    }

    /// Parses [`ConfigType::spelling`]'s output; unknown spellings become [`ConfigType::Any`],
    /// so a host never rejects a plugin that uses a type from a newer SDK.
    pub fn parse(spelling: &str) -> Self {
        match spelling {
            "integer" => ConfigType::Integer,
            "count" => ConfigType::Count,
            "number" => ConfigType::Number,
            "string" => ConfigType::String,
            "boolean" => ConfigType::Boolean,
            s if s.starts_with("list[") && s.ends_with(']') => {
                ConfigType::List(Box::new(ConfigType::parse(&s[5..s.len() - 1])))
            }
            s if s.starts_with("one of ") => ConfigType::Choice(s[7..].split('|').map(str::to_owned).collect()),
            _ => ConfigType::Any,
        }
    }
}

impl fmt::Display for ConfigType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spelling())
    }
}

/// One key a class accepts in its config section(s), returned by
/// [`PluginClass::config_keys`](crate::PluginClass::config_keys). The host rejects keys no class
/// declares, checks each value's type, fills defaults and passes the class only the keys it
/// declares; `host plugins inspect` shows them to users.
///
/// ```
/// use plugin_sdk::{ConfigKey, ConfigType};
///
/// let keys = vec![
///     ConfigKey::new("data_loader", "path", ConfigType::String).required().describe("the CSV file"),
///     ConfigKey::new("training", "epochs", ConfigType::Count).default(10).describe("passes over the data"),
///     ConfigKey::new("model", "hidden", ConfigType::List(Box::new(ConfigType::Count)))
///         .default(serde_json::json!([128, 64])),
///     ConfigKey::new("model", "dropout", ConfigType::Number), // optional: absent or null
/// ];
/// assert!(keys[0].required && keys[0].default.is_none());
/// assert_eq!(keys[1].default, Some(serde_json::json!(10)));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigKey {
    /// The section the key lives in: a loader's is `data_loader`, a model's `model` or
    /// `training`, a report generator's `reporting` ([`ClassKind::sections`]).
    pub section: String,
    /// The key within the section.
    pub name: String,
    /// The value's type.
    #[serde(rename = "type")]
    pub ty: ConfigType,
    /// The default, filled in by the host when the key is absent. `None` with
    /// `required: false` means the key is optional and may be absent or null (read it into an
    /// `Option` field).
    pub default: Option<serde_json::Value>,
    /// Whether the user must give the key.
    pub required: bool,
    /// One line for `host plugins inspect`.
    pub description: String,
}

impl ConfigKey {
    /// An optional key with no default, in `section`, of type `ty`. Chain
    /// [`default`](Self::default), [`required`](Self::required) and
    /// [`describe`](Self::describe).
    pub fn new(section: &str, name: &str, ty: ConfigType) -> Self {
        ConfigKey {
            section: section.into(),
            name: name.into(),
            ty,
            default: None,
            required: false,
            description: String::new(),
        }
    }

    /// Sets the default value, filled in by the host when the user gives none: anything that
    /// converts into JSON (`10`, `0.001`, `"adam"`, `true`, `serde_json::json!([..])`). It must
    /// have the key's type.
    pub fn default(mut self, value: impl Into<serde_json::Value>) -> Self {
        self.default = Some(value.into());
        self
    }

    /// Marks the key as required: a config without it is refused before the class is created.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Sets the one-line description shown by `host plugins inspect`.
    pub fn describe(mut self, description: &str) -> Self {
        self.description = description.into();
        self
    }
}

/// A class a plugin library provides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassInfo {
    /// Loader, model or report generator.
    pub kind: ClassKind,
    /// The class name used in configs (`MNISTLoader`).
    pub name: String,
    /// One line for humans.
    pub summary: String,
    /// Every config key the class accepts.
    pub config_keys: Vec<ConfigKey>,
}

/// What a plugin library says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The plugin's name (usually its crate name).
    pub plugin_name: String,
    /// The plugin's own version.
    pub plugin_version: String,
    /// The SDK (ABI) version the plugin was built against.
    pub sdk_version: String,
    /// The classes the library provides.
    pub classes: Vec<ClassInfo>,
}

impl Manifest {
    /// Checks what the host relies on: a plugin name (one word), a version of the form
    /// `MAJOR.MINOR.PATCH` (an optional `-pre` or `+build` after it), and each class declared
    /// once with a name. Runs record the name and version, and classes are found by name.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.plugin_name;
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("the plugin name {name:?} must be one word (export_plugin!'s name: field)"));
        }
        let core = self.plugin_version.split(['-', '+']).next().unwrap_or_default();
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
            return Err(format!(
                "the plugin version {:?} is not MAJOR.MINOR.PATCH (export_plugin!'s version: field, usually env!(\"CARGO_PKG_VERSION\"))",
                self.plugin_version
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for class in &self.classes {
            if class.name.is_empty() {
                return Err(format!("a {} class has an empty NAME", class.kind));
            }
            if !seen.insert(class.name.as_str()) {
                return Err(format!(
                    "class {} is declared twice; each class name may appear once in export_plugin!",
                    class.name
                ));
            }
        }
        Ok(())
    }
}

/// Severity of a log line a plugin sends to the host with [`Services::log`](crate::Services::log)
/// (or its shorthands [`debug`](crate::Services::debug), [`info`](crate::Services::info),
/// [`warn`](crate::Services::warn)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LogLevel {
    /// Fine detail, shown with `-vv`.
    Debug,
    /// Normal progress, shown with `-v`.
    Info,
    /// Something the user should see.
    Warn,
    /// A failure about to be reported.
    Error,
}

impl LogLevel {
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_code(code: u8) -> Self {
        match code {
            0 => LogLevel::Debug,
            1 => LogLevel::Info,
            2 => LogLevel::Warn,
            _ => LogLevel::Error,
        }
    }
}

/// Why a plugin call failed. The host reports it in the error's first words ("failed",
/// "rejected its config", "was cancelled", "panicked"), after the class, plugin and call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The operation failed (bad input, I/O, a numerical fault): [`PluginError::new`], and any
    /// error converted with `?`.
    Failed,
    /// The class's config was rejected: [`PluginError::invalid_config`].
    InvalidConfig,
    /// The host asked to stop and the plugin stopped: [`PluginError::cancelled`]. The run is
    /// recorded as cancelled, not failed.
    Cancelled,
    /// The plugin panicked; the panic was caught at the boundary.
    Panicked,
}

impl ErrorKind {
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_code(code: u8) -> Self {
        match code {
            1 => ErrorKind::InvalidConfig,
            2 => ErrorKind::Cancelled,
            3 => ErrorKind::Panicked,
            _ => ErrorKind::Failed,
        }
    }
}

/// The error every plugin operation returns. The host prefixes the class, plugin, version and
/// call, records the run as failed in the stage that failed, and exits 1.
///
/// Any `std::error::Error` converts into it with `?`, keeping its chain of causes in the message;
/// [`ResultExt`] adds context on the way. Return it rather than panic: a panic is caught at the
/// boundary too, but says less.
///
/// ```
/// use plugin_sdk::{ErrorKind, PluginError};
///
/// fn batch_size(value: usize) -> Result<usize, PluginError> {
///     if value == 0 {
///         return Err(PluginError::invalid_config("training.batch_size: must be 1 or more, found 0"));
///     }
///     Ok(value)
/// }
/// assert_eq!(batch_size(0).unwrap_err().kind, ErrorKind::InvalidConfig);
///
/// // Any std error converts with `?`.
/// fn rows(text: &str) -> Result<usize, PluginError> {
///     Ok(text.trim().parse::<usize>()?)
/// }
/// assert_eq!(rows("many").unwrap_err().message, "invalid digit found in string");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// Why it failed.
    pub kind: ErrorKind,
    /// A lowercase message that names the file, key or value at fault and, where possible, the fix.
    pub message: String,
}

impl PluginError {
    /// A failed operation ([`ErrorKind::Failed`]). The message names what failed, where (the
    /// file, the line, the key) and, where possible, the fix.
    pub fn new(message: impl Into<String>) -> Self {
        PluginError { kind: ErrorKind::Failed, message: message.into() }
    }

    /// A rejected config ([`ErrorKind::InvalidConfig`]), for a value of the right type that is
    /// still wrong: name the key and the fix (`"model.dropout: must be in [0, 1), found 1.5"`).
    /// Return it from [`PluginClass::new`](crate::PluginClass::new), so the run stops before any
    /// work is done.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        PluginError { kind: ErrorKind::InvalidConfig, message: message.into() }
    }

    /// The host asked to stop ([`ErrorKind::Cancelled`]): return it when
    /// [`Services::should_stop`](crate::Services::should_stop) is true.
    pub fn cancelled() -> Self {
        PluginError { kind: ErrorKind::Cancelled, message: "cancelled by the host".into() }
    }

    /// Prefixes the message with context: `context: message`. The kind is kept.
    ///
    /// ```
    /// # use plugin_sdk::PluginError;
    /// let error = PluginError::new("line 3: not a number").context("data/train.csv");
    /// assert_eq!(error.to_string(), "data/train.csv: line 3: not a number");
    /// ```
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for PluginError {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        PluginError::new(message)
    }
}

/// Adds context to any result whose error converts into [`PluginError`] (a `std::error::Error`, or
/// a `PluginError` itself), turning it into a `Result<T, PluginError>`.
///
/// ```
/// use plugin_sdk::{PluginError, ResultExt};
///
/// fn read_rows(path: &str) -> Result<String, PluginError> {
///     let text = std::fs::read_to_string(path).context(path)?;
///     Ok(text)
/// }
/// let error = read_rows("no/such/file.csv").unwrap_err();
/// assert!(error.message.starts_with("no/such/file.csv: "), "{error}");
///
/// let line = 18;
/// let value: Result<f64, PluginError> = "n/a".parse::<f64>().with_context(|| format!("line {line}"));
/// assert_eq!(value.unwrap_err().message, "line 18: invalid float literal");
/// ```
pub trait ResultExt<T> {
    /// Prefixes the error message with `context` (`context: message`).
    fn context(self, context: impl fmt::Display) -> Result<T, PluginError>;
    /// Prefixes the error message with a context built only when there is an error.
    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T, PluginError>;
}

impl<T, E: Into<PluginError>> ResultExt<T> for Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T, PluginError> {
        self.map_err(|e| e.into().context(context))
    }

    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T, PluginError> {
        self.map_err(|e| e.into().context(context()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_needs_a_name_a_version_and_each_class_once() {
        let class = |name: &str| ClassInfo {
            kind: ClassKind::Model,
            name: name.into(),
            summary: String::new(),
            config_keys: Vec::new(),
        };
        let manifest = |name: &str, version: &str, classes: Vec<ClassInfo>| Manifest {
            plugin_name: name.into(),
            plugin_version: version.into(),
            sdk_version: "0.1.0".into(),
            classes,
        };
        assert_eq!(manifest("knn", "1.2.3-beta.1+b5", vec![class("Knn")]).validate(), Ok(()));
        let refused = |m: Manifest| m.validate().unwrap_err();
        assert!(refused(manifest("", "1.0.0", vec![])).contains("the plugin name \"\" must be one word"));
        assert!(refused(manifest("my plugin", "1.0.0", vec![])).contains("must be one word"));
        for version in ["banana", "1.0", "1..0", "1.0.0.0", ""] {
            assert!(refused(manifest("p", version, vec![])).contains("is not MAJOR.MINOR.PATCH"), "{version}");
        }
        assert_eq!(
            refused(manifest("p", "1.0.0", vec![class("Knn"), class("Knn")])),
            "class Knn is declared twice; each class name may appear once in export_plugin!"
        );
        assert!(refused(manifest("p", "1.0.0", vec![class("")])).contains("class has an empty NAME"));
    }

    #[test]
    fn config_type_spelling_round_trips() {
        let types = [
            ConfigType::Integer,
            ConfigType::Count,
            ConfigType::Number,
            ConfigType::String,
            ConfigType::Boolean,
            ConfigType::Any,
            ConfigType::List(Box::new(ConfigType::Integer)),
            ConfigType::Choice(vec!["adam".into(), "sgd".into()]),
            ConfigType::List(Box::new(ConfigType::Choice(vec!["relu".into(), "tanh".into()]))),
        ];
        for ty in types {
            assert_eq!(ConfigType::parse(&ty.spelling()), ty, "{}", ty.spelling());
        }
        assert_eq!(ConfigType::parse("tensor<f16>"), ConfigType::Any);
    }

    #[test]
    fn tensor_rejects_a_shape_that_disagrees_with_its_buffer() {
        let error = Tensor::from_f32(vec![2, 3], vec![0.0; 5]).unwrap_err();
        assert_eq!(error.to_string(), "tensor shape [2, 3] needs 6 elements but the buffer holds 5");
        assert!(Tensor::from_f32(vec![usize::MAX, 2], vec![]).is_err());
        let tensor = Tensor::from_i64(vec![3], vec![1, 2, 3]).unwrap();
        assert_eq!(tensor.view().as_i64(), Some(&[1i64, 2, 3][..]));
        assert_eq!(tensor.elements().as_bytes().len(), 24);
    }

    #[test]
    fn errors_convert_with_their_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error: PluginError = Err::<(), _>(io).context("data/train.idx").unwrap_err();
        assert_eq!(error.message, "data/train.idx: no such file");
        assert_eq!(error.kind, ErrorKind::Failed);
    }
}
