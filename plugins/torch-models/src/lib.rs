//! The libtorch models the bundled plugins export: an MLP classifier (MNISTMLP), a CNN
//! (MNISTCNN) and an MLP regressor (MLPRegressor), sharing one training loop with
//! Adam/SGD/RMSprop, weight decay, early stopping with restore-best, a best-epoch checkpoint, a
//! last-epoch checkpoint that a requeued run continues from, and cooperative cancel. The loop follows the data's task: cross-entropy, accuracy and class
//! probabilities for classification; mean squared error and raw values for regression.
//! Deterministic on CPU for a seed and thread count. Weights are saved as safetensors with the
//! model's config beside them. A library crate: each plugin crate exports the classes it wants.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Instant;

use plugin_sdk::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor as TchTensor};

/// What distinguishes one architecture from another; the training loop is shared.
pub trait Architecture: Send + 'static {
    const NAME: &'static str;
    const SUMMARY: &'static str;
    /// The task the architecture's class is for; data of the other task is refused.
    const TASK: TaskKind;
    /// A sample shape to build a throwaway network with when the class is created, so
    /// architecture mistakes surface at validation time.
    const PROBE_SHAPE: &'static [usize];
    type Section: Serialize + DeserializeOwned + Clone + Send;
    fn keys() -> Vec<ConfigKey>;
    /// Builds the network for samples of `input_shape` (without the batch dimension).
    fn build(
        section: &Self::Section,
        vs: &nn::Path,
        input_shape: &[i64],
        outputs: i64,
    ) -> Result<nn::SequentialT, PluginError>;
    /// The sample shape the network consumes, from the shape the host provides.
    fn input_shape(provided: &[usize]) -> Result<Vec<i64>, PluginError>;
}

fn activation_choice() -> ConfigType {
    ConfigType::Choice(["relu", "tanh", "sigmoid", "gelu", "leaky_relu"].map(String::from).to_vec())
}

fn int_list() -> ConfigType {
    ConfigType::List(Box::new(ConfigType::Count))
}

fn apply_activation(name: &str, xs: &TchTensor) -> TchTensor {
    match name {
        "tanh" => xs.tanh(),
        "sigmoid" => xs.sigmoid(),
        "gelu" => xs.gelu("none"),
        "leaky_relu" => xs.leaky_relu(),
        _ => xs.relu(),
    }
}

fn add_activation(seq: nn::SequentialT, name: &str) -> nn::SequentialT {
    let name = name.to_owned();
    seq.add_fn(move |xs| apply_activation(&name, xs))
}

fn add_dropout(seq: nn::SequentialT, p: f64) -> nn::SequentialT {
    if p > 0.0 { seq.add_fn_t(move |xs, train| xs.dropout(p, train)) } else { seq }
}

fn check_dropout(p: f64, key: &str) -> Result<(), PluginError> {
    if !(0.0..1.0).contains(&p) {
        return Err(PluginError::invalid_config(format!("{key}: dropout must be in [0, 1), found {p}")));
    }
    Ok(())
}

/// A multi-layer perceptron over flattened samples.
pub struct Mlp;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpSection {
    hidden_layers: Vec<i64>,
    activation: String,
    dropout: f64,
}

impl Architecture for Mlp {
    const NAME: &'static str = "MNISTMLP";
    const SUMMARY: &'static str = "libtorch multi-layer perceptron (hidden layers, activation, dropout)";
    const TASK: TaskKind = TaskKind::Classification;
    const PROBE_SHAPE: &'static [usize] = &[1, 28, 28];
    type Section = MlpSection;

    fn keys() -> Vec<ConfigKey> {
        vec![
            ConfigKey::new("model", "hidden_layers", int_list())
                .default(json!([128]))
                .describe("units per hidden layer"),
            ConfigKey::new("model", "activation", activation_choice()).default("relu"),
            ConfigKey::new("model", "dropout", ConfigType::Number).default(0.0).describe("after each hidden layer"),
        ]
    }

    fn build(
        section: &MlpSection,
        vs: &nn::Path,
        input_shape: &[i64],
        outputs: i64,
    ) -> Result<nn::SequentialT, PluginError> {
        check_dropout(section.dropout, "model.dropout")?;
        let mut width: i64 = input_shape.iter().product();
        let mut seq = nn::seq_t().add_fn(|xs| xs.flatten(1, -1));
        for (index, &units) in section.hidden_layers.iter().enumerate() {
            if units < 1 {
                return Err(PluginError::invalid_config(format!(
                    "model.hidden_layers[{index}]: must be at least 1, found {units}"
                )));
            }
            seq = seq.add(nn::linear(vs / format!("hidden{index}"), width, units, Default::default()));
            seq = add_dropout(add_activation(seq, &section.activation), section.dropout);
            width = units;
        }
        Ok(seq.add(nn::linear(vs / "output", width, outputs, Default::default())))
    }

    fn input_shape(provided: &[usize]) -> Result<Vec<i64>, PluginError> {
        Ok(vec![provided.iter().product::<usize>() as i64])
    }
}

/// A multi-layer perceptron regressor over feature rows: the MLP's layers, one linear output
/// per target column, trained on mean squared error.
pub struct MlpRegression;

impl Architecture for MlpRegression {
    const NAME: &'static str = "MLPRegressor";
    const SUMMARY: &'static str =
        "libtorch multi-layer perceptron regressor (hidden layers, activation, dropout; one output per target)";
    const TASK: TaskKind = TaskKind::Regression;
    const PROBE_SHAPE: &'static [usize] = &[8];
    type Section = MlpSection;

    fn keys() -> Vec<ConfigKey> {
        Mlp::keys()
    }

    fn build(
        section: &MlpSection,
        vs: &nn::Path,
        input_shape: &[i64],
        outputs: i64,
    ) -> Result<nn::SequentialT, PluginError> {
        Mlp::build(section, vs, input_shape, outputs)
    }

    fn input_shape(provided: &[usize]) -> Result<Vec<i64>, PluginError> {
        Mlp::input_shape(provided)
    }
}

/// A convolutional network over images.
pub struct Cnn;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnnSection {
    conv_filters: Vec<i64>,
    kernel_sizes: Vec<i64>,
    pooling: String,
    batch_norm: bool,
    dense_layers: Vec<i64>,
    activation: String,
    dropout: f64,
}

impl Architecture for Cnn {
    const NAME: &'static str = "MNISTCNN";
    const SUMMARY: &'static str =
        "libtorch convolutional network (conv filters, kernels, pooling, batch norm, dense layers)";
    const TASK: TaskKind = TaskKind::Classification;
    const PROBE_SHAPE: &'static [usize] = &[1, 28, 28];
    type Section = CnnSection;

    fn keys() -> Vec<ConfigKey> {
        vec![
            ConfigKey::new("model", "conv_filters", int_list())
                .default(json!([32, 64]))
                .describe("filters per conv block"),
            ConfigKey::new("model", "kernel_sizes", int_list())
                .default(json!([3, 3]))
                .describe("odd kernel size per conv block"),
            ConfigKey::new("model", "pooling", ConfigType::Choice(["max", "avg", "none"].map(String::from).to_vec()))
                .default("max")
                .describe("2x2 pooling after each conv block"),
            ConfigKey::new("model", "batch_norm", ConfigType::Boolean).default(true),
            ConfigKey::new("model", "dense_layers", int_list()).default(json!([128])),
            ConfigKey::new("model", "activation", activation_choice()).default("relu"),
            ConfigKey::new("model", "dropout", ConfigType::Number).default(0.25).describe("before each dense layer"),
        ]
    }

    fn build(
        section: &CnnSection,
        vs: &nn::Path,
        input_shape: &[i64],
        outputs: i64,
    ) -> Result<nn::SequentialT, PluginError> {
        check_dropout(section.dropout, "model.dropout")?;
        if section.conv_filters.len() != section.kernel_sizes.len() {
            return Err(PluginError::invalid_config(format!(
                "model.kernel_sizes: {} kernel sizes for {} conv_filters; give one per block",
                section.kernel_sizes.len(),
                section.conv_filters.len()
            )));
        }
        let [mut channels, mut height, mut width] = <[i64; 3]>::try_from(input_shape).map_err(|_| {
            PluginError::new(format!("MNISTCNN needs samples of [channels, height, width], got {input_shape:?}"))
        })?;
        let mut seq = nn::seq_t();
        for (index, (&filters, &kernel)) in section.conv_filters.iter().zip(&section.kernel_sizes).enumerate() {
            if filters < 1 || kernel < 1 || kernel % 2 == 0 {
                return Err(PluginError::invalid_config(format!(
                    "model.conv_filters[{index}]/kernel_sizes[{index}]: need filters >= 1 and an odd kernel, found {filters} and {kernel}"
                )));
            }
            let conv = nn::ConvConfig { padding: kernel / 2, ..Default::default() };
            seq = seq.add(nn::conv2d(vs / format!("conv{index}"), channels, filters, kernel, conv));
            if section.batch_norm {
                seq = seq.add(nn::batch_norm2d(vs / format!("bn{index}"), filters, Default::default()));
            }
            seq = add_activation(seq, &section.activation);
            match section.pooling.as_str() {
                "max" => seq = seq.add_fn(|xs| xs.max_pool2d_default(2)),
                "avg" => seq = seq.add_fn(|xs| xs.avg_pool2d_default(2)),
                _ => {}
            }
            if section.pooling != "none" {
                (height, width) = (height / 2, width / 2);
            }
            if height < 1 || width < 1 {
                return Err(PluginError::invalid_config(format!(
                    "model.conv_filters: {} pooled blocks shrink {:?} to nothing; use fewer blocks or pooling: none",
                    index + 1,
                    input_shape
                )));
            }
            channels = filters;
        }
        seq = seq.add_fn(|xs| xs.flatten(1, -1));
        let mut features = channels * height * width;
        for (index, &units) in section.dense_layers.iter().enumerate() {
            seq = add_dropout(seq, section.dropout);
            seq = seq.add(nn::linear(vs / format!("dense{index}"), features, units, Default::default()));
            seq = add_activation(seq, &section.activation);
            features = units;
        }
        seq = add_dropout(seq, section.dropout);
        Ok(seq.add(nn::linear(vs / "output", features, outputs, Default::default())))
    }

    fn input_shape(provided: &[usize]) -> Result<Vec<i64>, PluginError> {
        let shape: Vec<i64> = provided.iter().map(|&d| d as i64).collect();
        match shape.as_slice() {
            [c, h, w] => Ok(vec![*c, *h, *w]),
            [h, w] => Ok(vec![1, *h, *w]),
            [n] => {
                // Flattened square single-channel images (784 -> 1x28x28).
                let side = (*n as f64).sqrt().round() as i64;
                if side * side == *n {
                    Ok(vec![1, side, side])
                } else {
                    Err(PluginError::new(format!(
                        "MNISTCNN cannot treat {n} flat features as a square image; set preprocessing.flatten: false"
                    )))
                }
            }
            other => Err(PluginError::new(format!("MNISTCNN cannot use samples of shape {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSection {
    epochs: usize,
    batch_size: usize,
    learning_rate: f64,
    optimizer: String,
    momentum: f64,
    weight_decay: f64,
    early_stopping: bool,
    patience: usize,
    monitor: String,
    restore_best: bool,
    checkpoint: bool,
    device: String,
    eval_batch_size: usize,
}

fn training_keys() -> Vec<ConfigKey> {
    let s = "training";
    vec![
        ConfigKey::new(s, "epochs", ConfigType::Count).default(5),
        ConfigKey::new(s, "batch_size", ConfigType::Count).default(128),
        ConfigKey::new(s, "learning_rate", ConfigType::Number).default(0.001),
        ConfigKey::new(s, "optimizer", ConfigType::Choice(["adam", "sgd", "rmsprop"].map(String::from).to_vec()))
            .default("adam"),
        ConfigKey::new(s, "momentum", ConfigType::Number).default(0.9).describe("for sgd and rmsprop"),
        ConfigKey::new(s, "weight_decay", ConfigType::Number).default(0.0),
        ConfigKey::new(s, "early_stopping", ConfigType::Boolean).default(false),
        ConfigKey::new(s, "patience", ConfigType::Count)
            .default(3)
            .describe("epochs without improvement before stopping"),
        ConfigKey::new(s, "monitor", ConfigType::Choice(["val_loss", "val_accuracy"].map(String::from).to_vec()))
            .default("val_loss")
            .describe(
                "the validation metric early stopping and the best checkpoint follow (val_accuracy: classifiers)",
            ),
        ConfigKey::new(s, "restore_best", ConfigType::Boolean)
            .default(true)
            .describe("end with the best epoch's weights"),
        ConfigKey::new(s, "checkpoint", ConfigType::Boolean).default(true).describe(
            "write the best and the last epoch's weights to checkpoints/ (a requeued run continues from the last)",
        ),
        ConfigKey::new(s, "device", ConfigType::Choice(["cpu", "cuda", "auto"].map(String::from).to_vec()))
            .default("cpu"),
        ConfigKey::new(s, "eval_batch_size", ConfigType::Count).default(1024),
    ]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections<S> {
    model: S,
    training: TrainingSection,
}

/// What `save` writes beside the weights, so `load` can rebuild the network.
#[derive(Debug, Serialize, Deserialize)]
struct SavedModel<S> {
    class: String,
    model: S,
    input_shape: Vec<i64>,
    outputs: i64,
}

struct Trained {
    vs: nn::VarStore,
    net: nn::SequentialT,
    input_shape: Vec<i64>,
    outputs: i64,
}

/// The loss of a batch of network outputs: cross-entropy over class logits, or mean squared error.
fn loss_of(task: TaskKind, outputs: &TchTensor, targets: &TchTensor) -> TchTensor {
    match task {
        TaskKind::Classification => outputs.cross_entropy_for_logits(targets),
        TaskKind::Regression => outputs.mse_loss(targets, tch::Reduction::Mean),
    }
}

/// How many of a batch's outputs name the right class (classification only).
fn correct_of(task: TaskKind, outputs: &TchTensor, targets: &TchTensor) -> Result<i64, PluginError> {
    if task != TaskKind::Classification {
        return Ok(0);
    }
    Ok(outputs.f_argmax(-1, false)?.f_eq_tensor(targets)?.f_sum(Kind::Int64)?.f_int64_value(&[])?)
}

/// A libtorch classifier of architecture `A`.
pub struct TorchModel<A: Architecture> {
    sections: Sections<A::Section>,
    seed: u64,
    threads: usize,
    /// An earlier attempt's folder, whose last-epoch checkpoint training continues from.
    resume_from: Option<PathBuf>,
    trained: Option<Trained>,
    _architecture: PhantomData<A>,
}

/// The MLP class.
pub type MnistMlp = TorchModel<Mlp>;
/// The CNN class.
pub type MnistCnn = TorchModel<Cnn>;
/// The MLP regressor class.
pub type MlpRegressor = TorchModel<MlpRegression>;

impl<A: Architecture> PluginClass for TorchModel<A> {
    const NAME: &'static str = A::NAME;
    const SUMMARY: &'static str = A::SUMMARY;

    fn config_keys() -> Vec<ConfigKey> {
        let mut keys = A::keys();
        keys.extend(training_keys());
        keys
    }

    fn new(config: ClassConfig) -> Result<Self, PluginError> {
        let sections: Sections<A::Section> = config.parse()?;
        let training = &sections.training;
        for (key, value) in [
            ("epochs", training.epochs),
            ("batch_size", training.batch_size),
            ("eval_batch_size", training.eval_batch_size),
        ] {
            if value == 0 {
                return Err(PluginError::invalid_config(format!("training.{key}: must be at least 1")));
            }
        }
        if training.learning_rate <= 0.0 || training.learning_rate.is_nan() {
            return Err(PluginError::invalid_config(format!(
                "training.learning_rate: must be more than 0, found {}",
                training.learning_rate
            )));
        }
        // Builds a throwaway network now, so architecture mistakes surface at validation time.
        let probe = nn::VarStore::new(Device::Cpu);
        A::build(&sections.model, &probe.root(), &A::input_shape(A::PROBE_SHAPE)?, 10)?;
        if A::TASK == TaskKind::Regression && training.monitor == "val_accuracy" {
            return Err(PluginError::invalid_config(format!(
                "training.monitor: {} is a regressor, it has no val_accuracy; use val_loss",
                A::NAME
            )));
        }
        Ok(TorchModel {
            sections,
            seed: config.seed,
            threads: config.threads.max(1),
            resume_from: config.resume_from,
            trained: None,
            _architecture: PhantomData,
        })
    }
}

/// libtorch's CUDA backend (`libtorch_cuda.so` and the CUDA libraries it needs), loaded the
/// first time a config asks for `cuda` or `auto`. It must be loaded before the process's first
/// libtorch call that asks about CUDA (`manual_seed` does): libtorch decides once whether CUDA
/// exists (`apply_run_context` loads it first). The plugins link only `libtorch_cpu`, so a
/// run on the CPU never maps the CUDA libraries (about 1.2 s and 270 MiB of a short run here);
/// loading the backend runs its static initialisers, which register CUDA with libtorch as
/// linking it would.
pub fn load_cuda_backend() -> Result<(), String> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let Some(dir) = option_env!("TORCH_MODELS_LIBTORCH_LIB") else {
                return Err("this plugin was built without knowing where libtorch is".to_owned());
            };
            let library = Path::new(dir).join("libtorch_cuda.so");
            if !library.exists() {
                return Err(format!(
                    "the libtorch this plugin was built with has no CUDA backend ({} is missing); install a CUDA \
                     build of torch",
                    library.display()
                ));
            }
            let name = std::ffi::CString::new(library.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
            // SAFETY: a C string naming a library; RTLD_GLOBAL so libtorch finds the backend's
            // symbols, RTLD_NOW so a missing dependency fails here, not at a first call.
            let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if handle.is_null() {
                // SAFETY: dlerror returns a C string valid until the next dl* call, or null.
                let reason = unsafe { libc::dlerror() };
                let reason = if reason.is_null() {
                    "unknown reason".to_owned()
                } else {
                    unsafe { std::ffi::CStr::from_ptr(reason) }.to_string_lossy().into_owned()
                };
                return Err(format!("cannot load libtorch's CUDA backend {}: {reason}", library.display()));
            }
            Ok(())
        })
        .clone()
}

/// The device a config names: `cpu`, `cuda` (an error without one) or `auto`.
pub fn resolve_device(name: &str) -> Result<Device, PluginError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            Ok(if load_cuda_backend().is_ok() && tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu })
        }
        _ => {
            load_cuda_backend()
                .map_err(|e| PluginError::invalid_config(format!("training.device is cuda, but {e}; use cpu")))?;
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err(PluginError::invalid_config(
                    "training.device is cuda, but no CUDA device is available; use cpu or auto",
                ))
            }
        }
    }
}

fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(index) => format!("cuda:{index}"),
        _ => "cpu".into(),
    }
}

/// A torch tensor over features the host holds, without a copy on the CPU: it borrows them, so
/// it cannot outlive the view they came in (the data set is the largest thing a run holds;
/// copying it would double the run's memory).
struct Features<'a> {
    tensor: TchTensor,
    _borrowed: PhantomData<&'a [f32]>,
}

impl std::ops::Deref for Features<'_> {
    type Target = TchTensor;

    fn deref(&self) -> &TchTensor {
        &self.tensor
    }
}

/// A view's features as a torch tensor of `[n, ...input_shape]` on `device`: borrowed on the
/// CPU, copied to any other device.
fn features_tensor<'a>(
    view: &TensorView<'a>,
    input_shape: &[i64],
    device: Device,
) -> Result<Features<'a>, PluginError> {
    let data = view
        .as_f32()
        .ok_or_else(|| PluginError::new(format!("features must be f32, got {}", view.elements.dtype())))?;
    let per_sample: i64 = input_shape.iter().try_fold(1i64, |n, &d| n.checked_mul(d)).unwrap_or(-1);
    if view.row_len() as i64 != per_sample {
        return Err(PluginError::new(format!(
            "features have {} values per sample, but the model expects {per_sample} ({input_shape:?})",
            view.row_len()
        )));
    }
    // The borrow below reads exactly `rows * per_sample` values: check the slice holds them, in
    // a shape of non-negative dimensions (a saved model's input shape is read from a file).
    let expected = usize::try_from(per_sample).ok().and_then(|n| n.checked_mul(view.rows()));
    if input_shape.iter().any(|&d| d < 0) || expected != Some(data.len()) {
        return Err(PluginError::new(format!(
            "features hold {} values, not {} rows of {input_shape:?}",
            data.len(),
            view.rows()
        )));
    }
    let mut shape = vec![view.rows() as i64];
    shape.extend_from_slice(input_shape);
    // Row-major and contiguous, as the host lays features out.
    let mut strides = vec![1i64; shape.len()];
    for axis in (0..shape.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * shape[axis + 1];
    }
    // SAFETY: `data` holds exactly `rows * per_sample` f32 values (checked above) in this layout
    // and stays borrowed, unchanged, for 'a, which `Features` cannot outlive. Nothing writes
    // into the input tensor: batches are taken with `index_select` and `narrow`, read only.
    let borrowed = unsafe { TchTensor::f_from_blob(data.as_ptr().cast(), &shape, &strides, Kind::Float, Device::Cpu)? };
    let tensor = if device == Device::Cpu { borrowed } else { borrowed.f_to_device(device)? };
    Ok(Features { tensor, _borrowed: PhantomData })
}

fn targets_tensor<A: Architecture>(view: &DataView<'_>, device: Device) -> Result<TchTensor, PluginError> {
    if view.task != A::TASK {
        let fits = match A::TASK {
            TaskKind::Classification => "classifies",
            TaskKind::Regression => "fits regression targets",
        };
        return Err(PluginError::new(format!(
            "{} {fits}; this data set is a {} task: choose a model class for it",
            A::NAME,
            match view.task {
                TaskKind::Classification => "classification",
                TaskKind::Regression => "regression",
            }
        )));
    }
    if view.task == TaskKind::Regression {
        let values = view.targets.as_f32().ok_or_else(|| PluginError::new("regression targets must be f32"))?;
        if view.targets.rows() * view.outputs != values.len() {
            return Err(PluginError::new(format!(
                "{} target values for {} rows of {} columns",
                values.len(),
                view.targets.rows(),
                view.outputs
            )));
        }
        return Ok(TchTensor::f_from_slice(values)?
            .f_view([view.targets.rows() as i64, view.outputs as i64])?
            .f_to_device(device)?);
    }
    let labels =
        view.targets.as_i64().ok_or_else(|| PluginError::new("classification targets must be i64 class indices"))?;
    if let Some(bad) = labels.iter().find(|&&l| l < 0 || l as usize >= view.outputs) {
        return Err(PluginError::new(format!("target {bad} is outside 0..{}", view.outputs)));
    }
    Ok(TchTensor::f_from_slice(labels)?.f_to_device(device)?)
}

/// Mean loss and accuracy (NaN for regression) of `net` over `(x, y)` in evaluation mode, in
/// batches.
fn measure(
    task: TaskKind,
    net: &nn::SequentialT,
    x: &TchTensor,
    y: &TchTensor,
    batch_size: usize,
) -> Result<(f64, f64), PluginError> {
    let n = x.size()[0];
    if n == 0 {
        return Ok((f64::NAN, f64::NAN));
    }
    let (mut loss_sum, mut correct) = (0.0, 0i64);
    tch::no_grad(|| -> Result<(), PluginError> {
        for start in (0..n).step_by(batch_size) {
            let len = (n - start).min(batch_size as i64);
            let logits = net.forward_t(&x.f_narrow(0, start, len)?, false);
            let labels = y.f_narrow(0, start, len)?;
            loss_sum += loss_of(task, &logits, &labels).f_double_value(&[])? * len as f64;
            correct += correct_of(task, &logits, &labels)?;
        }
        Ok(())
    })?;
    let accuracy = if task == TaskKind::Classification { correct as f64 / n as f64 } else { f64::NAN };
    Ok((loss_sum / n as f64, accuracy))
}

fn snapshot(vs: &nn::VarStore) -> HashMap<String, TchTensor> {
    tch::no_grad(|| vs.variables().into_iter().map(|(name, t)| (name, t.copy())).collect())
}

fn restore(vs: &nn::VarStore, saved: &HashMap<String, TchTensor>) -> Result<(), PluginError> {
    tch::no_grad(|| {
        for (name, mut variable) in vs.variables() {
            if let Some(value) = saved.get(&name) {
                variable.f_copy_(value)?;
            }
        }
        Ok(())
    })
}

impl<A: Architecture> TorchModel<A> {
    /// Applies the run's seed and thread count to libtorch, whose settings are process-global.
    /// Called on every path into the model (fit, load, predict, evaluate): libtorch's default
    /// thread count follows the machine's core topology, and a path that forgot this would
    /// compute with another reduction order than the run recorded.
    fn apply_run_context(&self) {
        // A GPU run's backend first, so the seed reaches its generators too.
        if self.sections.training.device != "cpu" {
            let _ = load_cuda_backend();
        }
        tch::manual_seed(self.seed as i64);
        tch::set_num_threads(self.threads as i32);
    }

    fn trained(&mut self) -> Result<&mut Trained, PluginError> {
        self.trained.as_mut().ok_or_else(|| PluginError::new("the model has not been trained or loaded yet"))
    }

    fn build(&self, input_shape: Vec<i64>, outputs: i64, device: Device) -> Result<Trained, PluginError> {
        let vs = nn::VarStore::new(device);
        let net = A::build(&self.sections.model, &vs.root(), &input_shape, outputs)?;
        Ok(Trained { vs, net, input_shape, outputs })
    }

    fn optimizer(&self, vs: &nn::VarStore) -> Result<nn::Optimizer, PluginError> {
        let t = &self.sections.training;
        let optimizer = match t.optimizer.as_str() {
            "sgd" => {
                nn::Sgd { momentum: t.momentum, wd: t.weight_decay, ..Default::default() }.build(vs, t.learning_rate)?
            }
            "rmsprop" => nn::RmsProp { momentum: t.momentum, wd: t.weight_decay, ..Default::default() }
                .build(vs, t.learning_rate)?,
            _ => nn::Adam { wd: t.weight_decay, ..Default::default() }.build(vs, t.learning_rate)?,
        };
        Ok(optimizer)
    }
}

/// The training data as tensors on the training device.
struct TrainingData<'a> {
    x: Features<'a>,
    y: TchTensor,
    validation: Option<(Features<'a>, TchTensor)>,
}

impl<'a> TrainingData<'a> {
    fn new<A: Architecture>(
        train: &DataView<'a>,
        validation: Option<&DataView<'a>>,
        input_shape: &[i64],
        device: Device,
    ) -> Result<Self, PluginError> {
        let validation = match validation {
            Some(v) if v.features.rows() > 0 => {
                Some((features_tensor(&v.features, input_shape, device)?, targets_tensor::<A>(v, device)?))
            }
            _ => None,
        };
        Ok(TrainingData {
            x: features_tensor(&train.features, input_shape, device)?,
            y: targets_tensor::<A>(train, device)?,
            validation,
        })
    }
}

/// How often a training loop reports progress: often enough for a live bar, rarely enough to
/// cost nothing.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// One epoch over the training data in a seeded random order: mean loss and accuracy (NaN for
/// regression). Sums stay on the device and are read once, at the end of the epoch, so the
/// loop waits for the device no more than a hand-written one would.
fn train_epoch<A: Architecture>(
    trained: &Trained,
    optimizer: &mut nn::Optimizer,
    data: &TrainingData<'_>,
    t: &TrainingSection,
    epoch: usize,
    services: &Services<'_>,
) -> Result<(f64, f64), PluginError> {
    let started = Instant::now();
    let device = trained.vs.device();
    let n = data.x.size()[0];
    let batches = (n as usize).div_ceil(t.batch_size) as u64;
    let order = TchTensor::f_randperm(n, (Kind::Int64, Device::Cpu))?.f_to_device(device)?;
    let mut loss_sum = TchTensor::f_zeros([0i64; 0], (Kind::Double, device))?;
    let mut correct = TchTensor::f_zeros([0i64; 0], (Kind::Int64, device))?;
    let mut last_progress: Option<Instant> = None;
    for (batch, start) in (0..n).step_by(t.batch_size).enumerate() {
        if services.should_stop() {
            return Err(PluginError::cancelled());
        }
        let len = (n - start).min(t.batch_size as i64);
        let index = order.f_narrow(0, start, len)?;
        let (xb, yb) = (data.x.f_index_select(0, &index)?, data.y.f_index_select(0, &index)?);
        let outputs = trained.net.forward_t(&xb, true);
        let loss = loss_of(A::TASK, &outputs, &yb);
        optimizer.backward_step(&loss);
        tch::no_grad(|| -> Result<(), PluginError> {
            loss_sum = loss_sum.f_add(&loss.f_to_kind(Kind::Double)?.f_mul_scalar(len)?)?;
            if A::TASK == TaskKind::Classification {
                correct = correct.f_add(&outputs.f_argmax(-1, false)?.f_eq_tensor(&yb)?.f_sum(Kind::Int64)?)?;
            }
            Ok(())
        })?;
        let last = batch as u64 + 1 == batches;
        if batch == 0 || last || last_progress.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
            last_progress = Some(Instant::now());
            let elapsed = started.elapsed().as_secs_f64().max(1e-9);
            let seen = start + len;
            services.progress(
                batch as u64 + 1,
                batches,
                &format!("epoch {epoch}/{} {:.0} samples/s", t.epochs, seen as f64 / elapsed),
            );
        }
    }
    let loss = loss_sum.f_double_value(&[])? / n as f64;
    if !loss.is_finite() {
        return Err(PluginError::new(format!("loss became {loss} in epoch {epoch}; lower training.learning_rate")));
    }
    let accuracy = correct.f_int64_value(&[])? as f64 / n as f64;
    Ok((loss, accuracy))
}

/// The best epoch by the monitored validation metric: its weights kept in memory (to restore)
/// and, when asked, written as a checkpoint.
struct BestEpoch {
    maximise: bool,
    checkpoint: Option<PathBuf>,
    restore_best: bool,
    monitor: String,
    best: Option<(usize, f64, HashMap<String, TchTensor>)>,
    epochs_without_improvement: usize,
}

impl BestEpoch {
    fn new(t: &TrainingSection, checkpoint_dir: PathBuf) -> Self {
        BestEpoch {
            maximise: t.monitor == "val_accuracy",
            checkpoint: t.checkpoint.then_some(checkpoint_dir),
            restore_best: t.restore_best,
            monitor: t.monitor.clone(),
            best: None,
            epochs_without_improvement: 0,
        }
    }

    /// Takes the epoch's score; a better one is kept (and checkpointed).
    fn observe(&mut self, epoch: usize, score: f64, vs: &nn::VarStore) -> Result<(), PluginError> {
        let improved = self.best.as_ref().is_none_or(|(_, b, _)| if self.maximise { score > *b } else { score < *b });
        if !improved {
            self.epochs_without_improvement += 1;
            return Ok(());
        }
        self.epochs_without_improvement = 0;
        if let Some(dir) = &self.checkpoint {
            std::fs::create_dir_all(dir).with_context(|| dir.display())?;
            save_atomically(vs, &dir.join("best.safetensors"))?;
        }
        self.best = Some((epoch, score, snapshot(vs)));
        Ok(())
    }

    /// Where the best epoch's weights go, when checkpoints are written.
    fn best_file(&self) -> Option<PathBuf> {
        self.checkpoint.as_ref().map(|dir| dir.join("best.safetensors"))
    }

    /// Restores the best epoch's weights when asked, and says which it was.
    fn finish(self, vs: &nn::VarStore, summary: &mut FitSummary) -> Result<(), PluginError> {
        if let Some((epoch, score, weights)) = &self.best {
            summary.best_epoch = Some(*epoch);
            if self.restore_best {
                restore(vs, weights)?;
            }
            summary.details =
                json!({ "monitor": self.monitor, "best_score": score, "restored_best": self.restore_best });
        }
        Ok(())
    }
}

/// Saves `vs` to `path` by write-then-rename, so a job killed mid-write leaves the previous
/// file whole.
fn save_atomically(vs: &nn::VarStore, path: &Path) -> Result<(), PluginError> {
    // tch picks the format by the extension: the staging file keeps `.safetensors`.
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let staging = path.with_file_name(format!(".partial-{name}"));
    vs.save(&staging).with_context(|| staging.display())?;
    std::fs::rename(&staging, path).with_context(|| path.display())?;
    Ok(())
}

/// Where training stood after an epoch: written after every epoch (with `training.checkpoint`)
/// beside that epoch's weights, so that a requeued or re-run attempt continues from it. The
/// optimizer's state (Adam's moments) is not kept: a continued run restarts it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct LastEpoch {
    model: String,
    /// The model and training sections the weights were trained with.
    sections: Value,
    epoch: usize,
    /// The epoch's weights, beside this file.
    weights: String,
    best: Option<(usize, f64)>,
    epochs_without_improvement: usize,
}

const LAST_EPOCH: &str = "last.json";

impl LastEpoch {
    /// Writes the epoch's weights, then this file naming them (the file is the commit: a
    /// job killed between the two continues from the epoch before), then removes the weights
    /// it replaced.
    fn write(&self, dir: &Path, vs: &nn::VarStore) -> Result<(), PluginError> {
        std::fs::create_dir_all(dir).with_context(|| dir.display())?;
        save_atomically(vs, &dir.join(&self.weights))?;
        let replaced = LastEpoch::read(dir).ok().map(|last| last.weights).filter(|w| *w != self.weights);
        let staging = dir.join("last.json.partial");
        std::fs::write(&staging, serde_json::to_vec_pretty(self)?).with_context(|| staging.display())?;
        std::fs::rename(&staging, dir.join(LAST_EPOCH)).with_context(|| dir.display())?;
        if let Some(old) = replaced {
            let _ = std::fs::remove_file(dir.join(old));
        }
        Ok(())
    }

    fn read(dir: &Path) -> Result<LastEpoch, PluginError> {
        let path = dir.join(LAST_EPOCH);
        let text = std::fs::read(&path).with_context(|| path.display())?;
        serde_json::from_slice(&text).with_context(|| path.display())
    }
}

impl<A: Architecture> TorchModel<A> {
    fn sections_json(&self) -> Value {
        json!({"model": self.sections.model, "training": self.sections.training})
    }

    /// Continues from the earlier attempt's last epoch, when it left one for this very model
    /// and config: loads its weights (and the best epoch's, for restore-best) and returns the
    /// epoch reached. Anything amiss is said and training starts afresh.
    fn resume(
        &self,
        trained: &mut Trained,
        best: &mut BestEpoch,
        checkpoints: &Path,
        services: &Services<'_>,
    ) -> Result<Option<usize>, PluginError> {
        let Some(dir) = self.resume_from.as_ref().map(|d| d.join("checkpoints")) else { return Ok(None) };
        let last = match LastEpoch::read(&dir) {
            Ok(last) => last,
            Err(_) => {
                services.info(&format!("no last-epoch checkpoint in {}: training from the start", dir.display()));
                return Ok(None);
            }
        };
        if last.model != A::NAME || last.sections != self.sections_json() {
            services.warn(&format!(
                "the checkpoint in {} is of another model or config: training from the start",
                dir.display()
            ));
            return Ok(None);
        }
        if let Some((epoch, score)) = last.best {
            let file = dir.join("best.safetensors");
            if epoch == last.epoch || !file.is_file() {
                trained.vs.load(dir.join(&last.weights)).with_context(|| last.weights.clone())?;
            } else {
                trained.vs.load(&file).with_context(|| file.display())?;
            }
            if let Some(own) = best.best_file() {
                std::fs::create_dir_all(own.parent().unwrap_or(&own)).with_context(|| own.display())?;
                save_atomically(&trained.vs, &own)?;
            }
            best.best = Some((epoch, score, snapshot(&trained.vs)));
        }
        best.epochs_without_improvement = last.epochs_without_improvement;
        let weights = dir.join(&last.weights);
        trained.vs.load(&weights).with_context(|| weights.display())?;
        // Kept in this run's folder at once: an attempt killed before its first epoch ends
        // still leaves the next one a checkpoint to continue from.
        if self.sections.training.checkpoint {
            last.write(checkpoints, &trained.vs)?;
        }
        services.info(&format!("continuing from epoch {} of the earlier attempt in {}", last.epoch, dir.display()));
        Ok(Some(last.epoch))
    }
}

impl<A: Architecture> Model for TorchModel<A> {
    fn fit(
        &mut self,
        train: &DataView<'_>,
        validation: Option<&DataView<'_>>,
        services: &Services<'_>,
    ) -> Result<FitSummary, PluginError> {
        // The host owns seeds and thread counts; libtorch's are process-global.
        self.apply_run_context();
        let t = self.sections.training.clone();
        let device = resolve_device(&t.device)?;
        let input_shape = A::input_shape(&train.features.shape[1..])?;
        let data = TrainingData::new::<A>(train, validation, &input_shape, device)?;
        if t.early_stopping && data.validation.is_none() {
            services.warn("early stopping needs validation data; training all epochs");
        }
        let mut trained = self.build(input_shape, train.outputs as i64, device)?;
        let checkpoints = services.artifact_dir().join("checkpoints");
        let mut best = BestEpoch::new(&t, checkpoints.clone());
        let resumed = self.resume(&mut trained, &mut best, &checkpoints, services)?;
        let mut optimizer = self.optimizer(&trained.vs)?;
        let mut summary = FitSummary { device: device_name(device), ..FitSummary::default() };
        summary.epochs_completed = resumed.unwrap_or(0);
        for epoch in resumed.unwrap_or(0) + 1..=t.epochs {
            let started = Instant::now();
            // Each epoch's random stream (order, dropout) follows from the seed and the epoch
            // alone, so a continued run draws what an uninterrupted one would have.
            tch::manual_seed(self.seed.wrapping_add(epoch as u64) as i64);
            let (loss, accuracy) = train_epoch::<A>(&trained, &mut optimizer, &data, &t, epoch, services)?;
            services.metric("loss", epoch as u64, loss);
            if A::TASK == TaskKind::Classification {
                services.metric("accuracy", epoch as u64, accuracy);
            }
            services.metric("learning_rate", epoch as u64, t.learning_rate);
            if let Some((x_val, y_val)) = &data.validation {
                let (val_loss, val_accuracy) = measure(A::TASK, &trained.net, x_val, y_val, t.eval_batch_size)?;
                services.metric("val_loss", epoch as u64, val_loss);
                if A::TASK == TaskKind::Classification {
                    services.metric("val_accuracy", epoch as u64, val_accuracy);
                }
                best.observe(epoch, if best.maximise { val_accuracy } else { val_loss }, &trained.vs)?;
            }
            services.metric("epoch_seconds", epoch as u64, started.elapsed().as_secs_f64());
            summary.epochs_completed = epoch;
            if t.checkpoint {
                let last = LastEpoch {
                    model: A::NAME.to_owned(),
                    sections: self.sections_json(),
                    epoch,
                    weights: format!("epoch-{epoch}.safetensors"),
                    best: best.best.as_ref().map(|(epoch, score, _)| (*epoch, *score)),
                    epochs_without_improvement: best.epochs_without_improvement,
                };
                last.write(&checkpoints, &trained.vs)?;
            }
            if t.early_stopping && data.validation.is_some() && best.epochs_without_improvement >= t.patience {
                summary.stopped_early = epoch < t.epochs;
                services.info(&format!(
                    "early stopping after epoch {epoch}: {} did not improve for {} epochs",
                    t.monitor, t.patience
                ));
                break;
            }
        }
        best.finish(&trained.vs, &mut summary)?;
        if let (Some(epoch), Some(details)) = (resumed, summary.details.as_object_mut()) {
            details.insert("resumed_after_epoch".into(), json!(epoch));
        } else if let Some(epoch) = resumed {
            summary.details = json!({ "resumed_after_epoch": epoch });
        }
        self.trained = Some(trained);
        Ok(summary)
    }

    fn predict(&mut self, features: &TensorView<'_>, _services: &Services<'_>) -> Result<Tensor, PluginError> {
        self.apply_run_context();
        let batch_size = self.sections.training.eval_batch_size as i64;
        let trained = self.trained()?;
        let device = trained.vs.device();
        let x = features_tensor(features, &trained.input_shape, device)?;
        let n = x.size()[0];
        let mut probabilities: Vec<f32> = Vec::with_capacity(n as usize * trained.outputs as usize);
        tch::no_grad(|| -> Result<(), PluginError> {
            for start in (0..n).step_by(batch_size as usize) {
                let len = (n - start).min(batch_size);
                let outputs = trained.net.forward_t(&x.f_narrow(0, start, len)?, false);
                // Class probabilities, or the regression values as they are.
                let batch = match A::TASK {
                    TaskKind::Classification => outputs.f_softmax(-1, Kind::Float)?,
                    TaskKind::Regression => outputs,
                };
                let batch = batch.f_to_device(Device::Cpu)?.f_contiguous()?.f_view(-1)?;
                probabilities.extend(Vec::<f32>::try_from(&batch)?);
            }
            Ok(())
        })?;
        Ok(Tensor::from_f32(vec![n as usize, trained.outputs as usize], probabilities)?)
    }

    fn evaluate(&mut self, data: &DataView<'_>, _services: &Services<'_>) -> Result<Map<String, Value>, PluginError> {
        self.apply_run_context();
        let batch_size = self.sections.training.eval_batch_size;
        let trained = self.trained()?;
        let device = trained.vs.device();
        let x = features_tensor(&data.features, &trained.input_shape, device)?;
        let y = targets_tensor::<A>(data, device)?;
        let (loss, accuracy) = measure(A::TASK, &trained.net, &x, &y, batch_size)?;
        let mut metrics = Map::new();
        metrics.insert("loss".into(), json!(loss));
        if A::TASK == TaskKind::Classification {
            metrics.insert("accuracy".into(), json!(accuracy));
        }
        Ok(metrics)
    }

    fn custom_metrics(
        &mut self,
        y_true: &TensorView<'_>,
        y_pred: &TensorView<'_>,
    ) -> Result<Map<String, Value>, PluginError> {
        if A::TASK == TaskKind::Regression {
            // The host computes the regression metrics; nothing model-specific to add.
            return Ok(Map::new());
        }
        let labels = y_true.as_i64().ok_or_else(|| PluginError::new("y_true must be i64 class indices"))?;
        let probabilities = y_pred.as_f32().ok_or_else(|| PluginError::new("y_pred must be f32 probabilities"))?;
        let classes = y_pred.row_len();
        if classes == 0 || probabilities.len() != labels.len() * classes {
            return Err(PluginError::new(format!(
                "y_pred holds {} values for {} samples",
                probabilities.len(),
                labels.len()
            )));
        }
        // Expected calibration error over 15 equal-width confidence bins.
        const BINS: usize = 15;
        let mut bins = [(0usize, 0.0f64, 0usize); BINS];
        let mut confidence_sum = 0.0;
        for (row, &label) in probabilities.chunks_exact(classes).zip(labels) {
            let (predicted, confidence) =
                row.iter().enumerate().fold((0, f32::MIN), |best, (i, &p)| if p > best.1 { (i, p) } else { best });
            let bin = ((confidence as f64 * BINS as f64) as usize).min(BINS - 1);
            bins[bin].0 += 1;
            bins[bin].1 += confidence as f64;
            bins[bin].2 += usize::from(predicted as i64 == label);
            confidence_sum += confidence as f64;
        }
        let n = labels.len().max(1) as f64;
        let ece: f64 = bins
            .iter()
            .filter(|(count, _, _)| *count > 0)
            .map(|(count, confidence, correct)| {
                (*count as f64 / n) * (confidence / *count as f64 - *correct as f64 / *count as f64).abs()
            })
            .sum();
        let mut metrics = Map::new();
        metrics.insert("mean_confidence".into(), json!(confidence_sum / n));
        metrics.insert("expected_calibration_error".into(), json!(ece));
        Ok(metrics)
    }

    fn save(&mut self, dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
        let model_config = self.sections.model.clone();
        let trained = self.trained()?;
        std::fs::create_dir_all(dir).with_context(|| dir.display())?;
        let weights = dir.join("model.safetensors");
        trained.vs.save(&weights).with_context(|| weights.display())?;
        let saved = SavedModel {
            class: A::NAME.to_owned(),
            model: model_config,
            input_shape: trained.input_shape.clone(),
            outputs: trained.outputs,
        };
        let config = dir.join("model.json");
        std::fs::write(&config, serde_json::to_string_pretty(&saved)?).with_context(|| config.display())?;
        Ok(vec![weights, config])
    }

    fn load(&mut self, dir: &Path) -> Result<(), PluginError> {
        self.apply_run_context();
        let config_path = dir.join("model.json");
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("{}: cannot read the saved model config", config_path.display()))?;
        let saved: SavedModel<A::Section> = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a saved {} model", config_path.display(), A::NAME))?;
        if saved.class != A::NAME {
            return Err(PluginError::new(format!(
                "{}: saved by {}, not {}",
                config_path.display(),
                saved.class,
                A::NAME
            )));
        }
        self.sections.model = saved.model;
        let device = resolve_device(&self.sections.training.device)?;
        let mut trained = self.build(saved.input_shape, saved.outputs, device)?;
        let weights = dir.join("model.safetensors");
        trained.vs.load(&weights).with_context(|| weights.display())?;
        self.trained = Some(trained);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::Elements;
    use plugin_sdk::host::with_services;
    use plugin_sdk::testing::RecordingServices;

    /// libtorch's thread count is one per process: tests that set it, or whose results depend
    /// on it, take turns (cargo runs tests of one binary on parallel threads).
    fn libtorch_alone() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sections() -> Value {
        json!({
            "model": {"hidden_layers": [8], "activation": "relu", "dropout": 0.0},
            "training": {"epochs": 1, "batch_size": 16, "learning_rate": 0.01, "optimizer": "adam",
                         "momentum": 0.9, "weight_decay": 0.0, "early_stopping": false, "patience": 3,
                         "monitor": "val_loss", "restore_best": true, "checkpoint": false, "device": "cpu",
                         "eval_batch_size": 64},
        })
    }

    fn model(threads: usize) -> MnistMlp {
        MnistMlp::new(ClassConfig {
            sections: sections(),
            seed: 5,
            threads,
            resume_from: None,
            declared: MnistMlp::config_keys(),
        })
        .unwrap()
    }

    fn view<'a>(features: &'a [f32], labels: &'a [i64]) -> DataView<'a> {
        DataView {
            features: TensorView::new(vec![labels.len(), 4], Elements::F32(features)).unwrap(),
            targets: TensorView::new(vec![labels.len()], Elements::I64(labels)).unwrap(),
            task: TaskKind::Classification,
            outputs: 3,
        }
    }

    /// Services that ask training to stop once an epoch has ended, as a requeue's SIGTERM does.
    struct StopAfterEpoch(RecordingServices, u64);

    impl plugin_sdk::host::HostServices for StopAfterEpoch {
        fn log(&self, level: plugin_sdk::LogLevel, message: &str) {
            self.0.log(level, message)
        }
        fn progress(&self, done: u64, total: u64, message: &str) {
            self.0.progress(done, total, message)
        }
        fn metric(&self, name: &str, step: u64, value: f64) {
            if name == "epoch_seconds" && step == self.1 {
                self.0.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            self.0.metric(name, step, value)
        }
        fn should_stop(&self) -> bool {
            self.0.should_stop()
        }
        fn artifact_dir(&self) -> PathBuf {
            self.0.artifact_dir()
        }
    }

    /// A requeued trial continues from its previous attempt's last epoch and ends where an
    /// uninterrupted run ends (plain SGD keeps no optimizer state, so exactly there).
    #[test]
    fn a_continued_run_ends_where_an_uninterrupted_one_does() {
        let _alone = libtorch_alone();
        let features: Vec<f32> = (0..64 * 4).map(|i| ((i * 13) % 11) as f32 / 11.0).collect();
        let labels: Vec<i64> = (0..64).map(|i| i % 3).collect();
        let data = view(&features, &labels);
        let mut config = sections();
        config["training"]["epochs"] = json!(3);
        config["training"]["optimizer"] = json!("sgd");
        config["training"]["momentum"] = json!(0.0);
        config["training"]["checkpoint"] = json!(true);
        let create = |config: &Value, resume_from: Option<PathBuf>| {
            MnistMlp::new(ClassConfig {
                sections: config.clone(),
                seed: 5,
                threads: 1,
                resume_from,
                declared: MnistMlp::config_keys(),
            })
            .unwrap()
        };
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();

        let mut whole = create(&config, None);
        let services = RecordingServices::new(dirs[0].path());
        with_services(&services, |s| whole.fit(&data, None, s)).unwrap();
        let expected = with_services(&services, |s| whole.predict(&data.features, s)).unwrap();

        let mut first = create(&config, None);
        let stopping = StopAfterEpoch(RecordingServices::new(dirs[1].path()), 2);
        let error = with_services(&stopping, |s| first.fit(&data, None, s)).unwrap_err();
        assert_eq!(error.kind, plugin_sdk::ErrorKind::Cancelled);
        let last = LastEpoch::read(&dirs[1].path().join("checkpoints")).unwrap();
        assert_eq!((last.epoch, last.weights.as_str()), (2, "epoch-2.safetensors"));
        assert!(!dirs[1].path().join("checkpoints/epoch-1.safetensors").exists(), "replaced weights are removed");

        let mut second = create(&config, Some(dirs[1].path().to_owned()));
        let services = RecordingServices::new(dirs[2].path());
        let summary = with_services(&services, |s| second.fit(&data, None, s)).unwrap();
        assert_eq!((summary.epochs_completed, &summary.details["resumed_after_epoch"]), (3, &json!(2)));
        let trained_epochs: Vec<u64> =
            services.metrics.lock().unwrap().iter().filter(|(n, ..)| n == "loss").map(|(_, e, _)| *e).collect();
        assert_eq!(trained_epochs, [3], "only the epoch the first attempt did not finish");
        let continued = with_services(&services, |s| second.predict(&data.features, s)).unwrap();
        assert_eq!(continued.view().as_f32(), expected.view().as_f32());

        // Another config's checkpoint is not continued from.
        config["training"]["learning_rate"] = json!(0.5);
        let mut other = create(&config, Some(dirs[1].path().to_owned()));
        let services = RecordingServices::new(dirs[2].path());
        let summary = with_services(&services, |s| other.fit(&data, None, s)).unwrap();
        assert!(summary.details.get("resumed_after_epoch").is_none());
    }

    /// Regression (issue 20): `--model-from` evaluated with libtorch's default thread count,
    /// which follows the machine's core topology, because only `fit` applied the run's. Every
    /// path into the model must apply it: here the global is reset to another count before
    /// each call, and each call must put the run's back.
    #[test]
    fn every_path_into_the_model_applies_the_runs_thread_count() {
        let _alone = libtorch_alone();
        let features: Vec<f32> = (0..64 * 4).map(|i| (i % 7) as f32 / 7.0).collect();
        let labels: Vec<i64> = (0..64).map(|i| i % 3).collect();
        let view = view(&features, &labels);
        let (run_threads, other) = (3, 1);
        let dir = tempfile::tempdir().unwrap();
        let services = RecordingServices::new(dir.path());
        let check = |what: &str| assert_eq!(tch::get_num_threads(), run_threads as i32, "{what} left the default");

        let mut trained = model(run_threads);
        tch::set_num_threads(other);
        with_services(&services, |s| trained.fit(&view, None, s)).unwrap();
        check("fit");
        trained.save(dir.path()).unwrap();

        let mut loaded = model(run_threads);
        tch::set_num_threads(other);
        loaded.load(dir.path()).unwrap();
        check("load");
        tch::set_num_threads(other);
        let predictions = with_services(&services, |s| loaded.predict(&view.features, s)).unwrap();
        check("predict");
        tch::set_num_threads(other);
        with_services(&services, |s| loaded.evaluate(&view, s)).unwrap();
        check("evaluate");
        let again = with_services(&services, |s| trained.predict(&view.features, s)).unwrap();
        assert_eq!(predictions.view().as_f32(), again.view().as_f32(), "the loaded model predicts as the trained one");
    }
}
