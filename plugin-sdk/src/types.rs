//! Plain Rust types shared by plugins and the host: tensors, datasets, manifests, config keys,
//! errors. None of them exposes an abi_stable type; bulk buffers are moved across the boundary,
//! never copied.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ffi::FfiBuffer;

/// The element type of a [`Tensor`].
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

/// A dense, row-major, owned n-dimensional array.
///
/// Its buffer is stored in an ABI-stable vector, so handing a `Tensor` to the other side of the
/// plugin boundary moves the allocation instead of copying it.
pub struct Tensor {
    pub(crate) shape: Vec<usize>,
    pub(crate) buffer: FfiBuffer,
}

/// A borrowed, typed slice of elements.
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

/// Errors constructing a tensor.
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
    /// A tensor of 32-bit floats. Fails when `shape` does not match the buffer length.
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, ShapeError> {
        check_shape(&shape, data.len())?;
        Ok(Tensor { shape, buffer: FfiBuffer::F32(data.into()) })
    }

    /// A tensor of 64-bit floats.
    pub fn from_f64(shape: Vec<usize>, data: Vec<f64>) -> Result<Self, ShapeError> {
        check_shape(&shape, data.len())?;
        Ok(Tensor { shape, buffer: FfiBuffer::F64(data.into()) })
    }

    /// A tensor of 64-bit signed integers.
    pub fn from_i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Self, ShapeError> {
        check_shape(&shape, data.len())?;
        Ok(Tensor { shape, buffer: FfiBuffer::I64(data.into()) })
    }

    /// A tensor of bytes.
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

    /// The elements.
    pub fn elements(&self) -> Elements<'_> {
        match &self.buffer {
            FfiBuffer::F32(v) => Elements::F32(v.as_slice()),
            FfiBuffer::F64(v) => Elements::F64(v.as_slice()),
            FfiBuffer::I64(v) => Elements::I64(v.as_slice()),
            FfiBuffer::U8(v) => Elements::U8(v.as_slice()),
        }
    }

    /// A borrowed view of the whole tensor.
    pub fn view(&self) -> TensorView<'_> {
        TensorView { shape: self.shape.clone(), elements: self.elements() }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor").field("dtype", &self.dtype()).field("shape", &self.shape).finish()
    }
}

/// A borrowed tensor: shape and elements.
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

    /// The number of rows (the first dimension).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// The number of elements in one row.
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

/// What a dataset's targets mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Targets are `i64` class indices into `label_names`.
    Classification,
    /// Targets are `f32` values, one column per name in `label_names`.
    Regression,
}

/// Features and targets as a loader produces them.
#[derive(Debug)]
pub struct Dataset {
    /// Features, `[samples, ...sample_shape]`.
    pub features: Tensor,
    /// Targets, `[samples]` class indices (`i64`) or `[samples, outputs]` values (`f32`).
    pub targets: Tensor,
    /// Classification or regression.
    pub task: TaskKind,
    /// Class names (classification) or target column names (regression).
    pub label_names: Vec<String>,
    /// When the source ships a fixed test set, the row where it starts (rows before it are
    /// the training pool). `None` when the host should split every row itself.
    pub test_start: Option<usize>,
    /// Free-form facts about the data (source, dataset name, value range), as JSON.
    pub metadata: serde_json::Value,
}

/// The training or validation data a model receives, borrowed from the host.
#[derive(Debug, Clone)]
pub struct DataView<'a> {
    /// Features, `[samples, ...sample_shape]`, `f32`.
    pub features: TensorView<'a>,
    /// Targets, as in [`Dataset::targets`].
    pub targets: TensorView<'a>,
    /// Classification or regression.
    pub task: TaskKind,
    /// Number of classes (classification) or target columns (regression).
    pub outputs: usize,
}

/// A file that a loader read, recorded as a raw-data entity by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// The file's path as the loader opened it.
    pub path: String,
    /// What the file holds (`train-images`, `t10k-labels`, ...).
    pub role: String,
}

/// What `load_data` reports: the files read and a short description.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadSummary {
    /// Every file the loader read, in a stable order.
    pub source_files: Vec<SourceFile>,
    /// Number of samples loaded.
    pub samples: usize,
    /// One line for humans.
    pub description: String,
}

/// What a model's `fit` reports when training ends.
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

/// Facts about the run that every class receives when it is created. Sent as JSON, so fields
/// can be added without an ABI change; unknown fields are ignored.
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

/// The type of a config value, checked by the host before a plugin sees its config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigType {
    /// A whole number.
    Integer,
    /// A whole number, 0 or more (epochs, sizes, counts).
    Count,
    /// Any number.
    Number,
    /// A string.
    String,
    /// `true` or `false`.
    Boolean,
    /// One of the listed strings.
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

/// One key a class accepts in its config section(s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigKey {
    /// The section the key lives in (`data_loader`, `model`, `training`, `reporting`).
    pub section: String,
    /// The key within the section.
    pub name: String,
    /// The value's type.
    #[serde(rename = "type")]
    pub ty: ConfigType,
    /// The default, filled in by the host when the key is absent. `None` with
    /// `required: false` means the key is optional and may be absent or null.
    pub default: Option<serde_json::Value>,
    /// Whether the user must give the key.
    pub required: bool,
    /// One line for `host plugins inspect`.
    pub description: String,
}

impl ConfigKey {
    /// An optional key with no default. Chain [`ConfigKey::default`], [`ConfigKey::required`]
    /// and [`ConfigKey::describe`].
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

    /// Sets the default value.
    pub fn default(mut self, value: impl Into<serde_json::Value>) -> Self {
        self.default = Some(value.into());
        self
    }

    /// Marks the key as required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Sets the one-line description.
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

/// Severity of a log line a plugin sends to the host.
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

/// Why a plugin call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The operation failed (bad input, I/O, a numerical fault).
    Failed,
    /// The class's config was rejected.
    InvalidConfig,
    /// The host asked to stop and the plugin stopped.
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

/// The error every plugin operation returns.
///
/// Any `std::error::Error` converts into it with `?`, keeping its chain of causes in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// Why it failed.
    pub kind: ErrorKind,
    /// A lowercase message that names the file, key or value at fault and, where possible, the fix.
    pub message: String,
}

impl PluginError {
    /// A failed operation.
    pub fn new(message: impl Into<String>) -> Self {
        PluginError { kind: ErrorKind::Failed, message: message.into() }
    }

    /// A rejected config.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        PluginError { kind: ErrorKind::InvalidConfig, message: message.into() }
    }

    /// The host asked to stop.
    pub fn cancelled() -> Self {
        PluginError { kind: ErrorKind::Cancelled, message: "cancelled by the host".into() }
    }

    /// Prefixes the message with context: `context: message`.
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

/// Adds context to any result whose error converts into [`PluginError`].
pub trait ResultExt<T> {
    /// Prefixes the error message with `context`.
    fn context(self, context: impl fmt::Display) -> Result<T, PluginError>;
    /// Prefixes the error message with a lazily built context.
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
