//! A plain-Rust model plugin with no libtorch: multinomial logistic (softmax) regression trained
//! with mini-batch SGD with momentum and L2 weight decay (a classifier), and linear least
//! squares with an L2 penalty solved exactly (a regressor). They prove models swap by config
//! alone and give fast baselines. Deterministic: one thread, ChaCha-seeded shuffles.

use std::path::{Path, PathBuf};
use std::time::Instant;

use plugin_sdk::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use safetensors::{Dtype, tensor::TensorView as SafeView};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainingSection {
    epochs: usize,
    batch_size: usize,
    learning_rate: f64,
    momentum: f64,
    weight_decay: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    #[serde(default)]
    model: Map<String, Value>,
    training: TrainingSection,
}

/// Weights `[outputs, inputs]` and biases `[outputs]`.
#[derive(Debug, Clone, PartialEq)]
struct Parameters {
    inputs: usize,
    outputs: usize,
    weights: Vec<f32>,
    biases: Vec<f32>,
}

impl Parameters {
    fn zeros(inputs: usize, outputs: usize) -> Self {
        Parameters { inputs, outputs, weights: vec![0.0; inputs * outputs], biases: vec![0.0; outputs] }
    }

    /// Class probabilities of one sample, written into `out`.
    fn probabilities(&self, x: &[f32], out: &mut [f32]) {
        self.linear(x, out);
        let max = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0;
        for score in out.iter_mut() {
            *score = (*score - max).exp();
            total += *score;
        }
        for score in out.iter_mut() {
            *score /= total;
        }
    }
}

/// Softmax regression.
pub struct SoftmaxRegression {
    training: TrainingSection,
    seed: u64,
    parameters: Option<Parameters>,
}

impl PluginClass for SoftmaxRegression {
    const NAME: &'static str = "SoftmaxRegression";
    const SUMMARY: &'static str = "plain-Rust multinomial logistic regression (no libtorch)";

    fn config_keys() -> Vec<ConfigKey> {
        let s = "training";
        vec![
            ConfigKey::new(s, "epochs", ConfigType::Count).default(5),
            ConfigKey::new(s, "batch_size", ConfigType::Count).default(64),
            ConfigKey::new(s, "learning_rate", ConfigType::Number).default(0.1),
            ConfigKey::new(s, "momentum", ConfigType::Number).default(0.9),
            ConfigKey::new(s, "weight_decay", ConfigType::Number).default(0.0001),
        ]
    }

    fn new(config: ClassConfig) -> Result<Self, PluginError> {
        let sections: Sections = config.parse()?;
        if let Some(key) = sections.model.keys().next() {
            return Err(PluginError::invalid_config(format!("model.{key}: SoftmaxRegression has no model keys")));
        }
        let t = &sections.training;
        if t.epochs == 0 || t.batch_size == 0 {
            return Err(PluginError::invalid_config("training.epochs and training.batch_size must be at least 1"));
        }
        if t.learning_rate <= 0.0 || t.learning_rate.is_nan() {
            return Err(PluginError::invalid_config(format!(
                "training.learning_rate: must be more than 0, found {}",
                t.learning_rate
            )));
        }
        Ok(SoftmaxRegression { training: sections.training, seed: config.seed, parameters: None })
    }
}

fn features_of<'a>(view: &TensorView<'a>) -> Result<&'a [f32], PluginError> {
    view.as_f32().ok_or_else(|| PluginError::new(format!("features must be f32, got {}", view.elements.dtype())))
}

fn labels_of<'a>(data: &DataView<'a>) -> Result<&'a [i64], PluginError> {
    if data.task != TaskKind::Classification {
        return Err(PluginError::new("SoftmaxRegression classifies; this data set is a regression task"));
    }
    let labels = data.targets.as_i64().ok_or_else(|| PluginError::new("classification targets must be i64"))?;
    if let Some(bad) = labels.iter().find(|&&l| l < 0 || l as usize >= data.outputs) {
        return Err(PluginError::new(format!("target {bad} is outside 0..{}", data.outputs)));
    }
    Ok(labels)
}

/// Mean cross-entropy and accuracy.
fn measure(parameters: &Parameters, data: &DataView<'_>) -> Result<(f64, f64), PluginError> {
    let x = features_of(&data.features)?;
    let labels = labels_of(data)?;
    let mut probabilities = vec![0.0; parameters.outputs];
    let (mut loss, mut correct) = (0.0f64, 0usize);
    for (row, &label) in x.chunks_exact(parameters.inputs).zip(labels) {
        parameters.probabilities(row, &mut probabilities);
        loss -= (probabilities[label as usize] as f64).max(1e-15).ln();
        let predicted = probabilities.iter().enumerate().fold(0, |b, (i, &p)| if p > probabilities[b] { i } else { b });
        correct += usize::from(predicted == label as usize);
    }
    let n = labels.len().max(1) as f64;
    Ok((loss / n, correct as f64 / n))
}

fn trained(parameters: &Option<Parameters>) -> Result<&Parameters, PluginError> {
    parameters.as_ref().ok_or_else(|| PluginError::new("the model has not been trained or loaded yet"))
}

impl SoftmaxRegression {
    fn parameters(&self) -> Result<&Parameters, PluginError> {
        trained(&self.parameters)
    }
}

impl Model for SoftmaxRegression {
    fn fit(
        &mut self,
        train: &DataView<'_>,
        validation: Option<&DataView<'_>>,
        services: &Services<'_>,
    ) -> Result<FitSummary, PluginError> {
        let t = self.training.clone();
        let x = features_of(&train.features)?;
        let labels = labels_of(train)?;
        let (inputs, outputs) = (train.features.row_len(), train.outputs);
        let mut parameters = Parameters::zeros(inputs, outputs);
        let mut velocity = Parameters::zeros(inputs, outputs);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut order: Vec<usize> = (0..labels.len()).collect();
        let mut probabilities = vec![0.0f32; outputs];
        let mut gradient = Parameters::zeros(inputs, outputs);
        let batches = labels.len().div_ceil(t.batch_size) as u64;
        for epoch in 1..=t.epochs {
            let started = Instant::now();
            order.shuffle(&mut rng);
            let (mut loss, mut correct) = (0.0f64, 0usize);
            for (batch, rows) in order.chunks(t.batch_size).enumerate() {
                if services.should_stop() {
                    return Err(PluginError::cancelled());
                }
                gradient.weights.fill(0.0);
                gradient.biases.fill(0.0);
                for &row in rows {
                    let sample = &x[row * inputs..(row + 1) * inputs];
                    let label = labels[row] as usize;
                    parameters.probabilities(sample, &mut probabilities);
                    loss -= (probabilities[label] as f64).max(1e-15).ln();
                    let predicted =
                        probabilities.iter().enumerate().fold(0, |b, (i, &p)| if p > probabilities[b] { i } else { b });
                    correct += usize::from(predicted == label);
                    for (class, &p) in probabilities.iter().enumerate() {
                        let error = p - f32::from(class == label);
                        gradient.biases[class] += error;
                        for (g, v) in gradient.weights[class * inputs..(class + 1) * inputs].iter_mut().zip(sample) {
                            *g += error * v;
                        }
                    }
                }
                let scale = 1.0 / rows.len() as f32;
                let (lr, momentum, decay) = (t.learning_rate as f32, t.momentum as f32, t.weight_decay as f32);
                for ((w, v), g) in parameters.weights.iter_mut().zip(&mut velocity.weights).zip(&gradient.weights) {
                    *v = momentum * *v + g * scale + decay * *w;
                    *w -= lr * *v;
                }
                for ((b, v), g) in parameters.biases.iter_mut().zip(&mut velocity.biases).zip(&gradient.biases) {
                    *v = momentum * *v + g * scale;
                    *b -= lr * *v;
                }
                services.progress(
                    batch as u64 + 1,
                    batches,
                    &format!("epoch {epoch}/{} loss {:.4}", t.epochs, loss / order.len() as f64),
                );
            }
            let n = labels.len() as f64;
            if !loss.is_finite() {
                return Err(PluginError::new(format!(
                    "loss became {loss} at epoch {epoch}; lower training.learning_rate"
                )));
            }
            services.metric("loss", epoch as u64, loss / n);
            services.metric("accuracy", epoch as u64, correct as f64 / n);
            services.metric("learning_rate", epoch as u64, t.learning_rate);
            if let Some(validation) = validation.filter(|v| v.features.rows() > 0) {
                let (val_loss, val_accuracy) = measure(&parameters, validation)?;
                services.metric("val_loss", epoch as u64, val_loss);
                services.metric("val_accuracy", epoch as u64, val_accuracy);
            }
            services.metric("epoch_seconds", epoch as u64, started.elapsed().as_secs_f64());
        }
        self.parameters = Some(parameters);
        Ok(FitSummary { epochs_completed: t.epochs, device: "cpu".into(), ..FitSummary::default() })
    }

    fn predict(&mut self, features: &TensorView<'_>, _: &Services<'_>) -> Result<Tensor, PluginError> {
        self.parameters()?.apply(features, Parameters::probabilities)
    }

    fn evaluate(&mut self, data: &DataView<'_>, _: &Services<'_>) -> Result<Map<String, Value>, PluginError> {
        let (loss, accuracy) = measure(self.parameters()?, data)?;
        let mut metrics = Map::new();
        metrics.insert("loss".into(), json!(loss));
        metrics.insert("accuracy".into(), json!(accuracy));
        Ok(metrics)
    }

    fn custom_metrics(&mut self, _: &TensorView<'_>, _: &TensorView<'_>) -> Result<Map<String, Value>, PluginError> {
        let parameters = self.parameters()?;
        let norm: f64 = parameters.weights.iter().map(|w| (*w as f64).powi(2)).sum::<f64>().sqrt();
        let mut metrics = Map::new();
        metrics.insert("weight_l2_norm".into(), json!(norm));
        Ok(metrics)
    }

    fn save(&mut self, dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
        self.parameters()?.save(dir)
    }

    fn load(&mut self, dir: &Path) -> Result<(), PluginError> {
        self.parameters = Some(Parameters::load(dir)?);
        Ok(())
    }
}

impl Parameters {
    /// Writes `model.safetensors` (weights `[outputs, inputs]`, biases `[outputs]`) into `dir`.
    fn save(&self, dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
        let bytes = |values: &[f32]| values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        let (weights, biases) = (bytes(&self.weights), bytes(&self.biases));
        let tensors = [
            (
                "biases",
                SafeView::new(Dtype::F32, vec![self.outputs], &biases).map_err(|e| PluginError::new(e.to_string()))?,
            ),
            (
                "weights",
                SafeView::new(Dtype::F32, vec![self.outputs, self.inputs], &weights)
                    .map_err(|e| PluginError::new(e.to_string()))?,
            ),
        ];
        let encoded = safetensors::serialize(tensors, None).map_err(|e| PluginError::new(e.to_string()))?;
        let path = dir.join("model.safetensors");
        std::fs::write(&path, encoded).with_context(|| path.display())?;
        Ok(vec![path])
    }

    /// Reads what [`Parameters::save`] wrote.
    fn load(dir: &Path) -> Result<Self, PluginError> {
        let path = dir.join("model.safetensors");
        let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read the saved model", path.display()))?;
        let file = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| PluginError::new(format!("{}: {e}", path.display())))?;
        let read = |name: &str| -> Result<(Vec<usize>, Vec<f32>), PluginError> {
            let view = file.tensor(name).map_err(|e| PluginError::new(format!("{}: {name}: {e}", path.display())))?;
            if view.dtype() != Dtype::F32 {
                return Err(PluginError::new(format!("{}: {name} is not f32", path.display())));
            }
            let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Ok((view.shape().to_vec(), values))
        };
        let (weight_shape, weights) = read("weights")?;
        let (_, biases) = read("biases")?;
        let [outputs, inputs] = <[usize; 2]>::try_from(weight_shape).map_err(|shape| {
            PluginError::new(format!("{}: weights have shape {shape:?}, expected [outputs, features]", path.display()))
        })?;
        if biases.len() != outputs {
            return Err(PluginError::new(format!("{}: {} biases for {outputs} outputs", path.display(), biases.len())));
        }
        Ok(Parameters { inputs, outputs, weights, biases })
    }

    /// One row of `[rows, outputs]` per sample, each computed by `row`.
    fn apply(&self, features: &TensorView<'_>, row: fn(&Self, &[f32], &mut [f32])) -> Result<Tensor, PluginError> {
        let x = features_of(features)?;
        if features.row_len() != self.inputs {
            return Err(PluginError::new(format!(
                "features have {} values per sample; the model takes {}",
                features.row_len(),
                self.inputs
            )));
        }
        let mut out = vec![0.0f32; features.rows() * self.outputs];
        for (sample, values) in x.chunks_exact(self.inputs).zip(out.chunks_exact_mut(self.outputs)) {
            row(self, sample, values);
        }
        Ok(Tensor::from_f32(vec![features.rows(), self.outputs], out)?)
    }

    /// `x · w + b` for each output, written into `out`.
    fn linear(&self, x: &[f32], out: &mut [f32]) {
        for (output, value) in out.iter_mut().enumerate() {
            let row = &self.weights[output * self.inputs..(output + 1) * self.inputs];
            *value = self.biases[output] + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>();
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegressionSections {
    model: RegressionSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegressionSection {
    l2: f64,
}

/// Linear least squares with an L2 penalty (ridge), solved exactly: no epochs, no randomness.
pub struct LinearRegression {
    l2: f64,
    parameters: Option<Parameters>,
}

impl PluginClass for LinearRegression {
    const NAME: &'static str = "LinearRegression";
    const SUMMARY: &'static str = "plain-Rust linear least squares with an L2 penalty, solved exactly (no libtorch)";

    fn config_keys() -> Vec<ConfigKey> {
        vec![
            ConfigKey::new("model", "l2", ConfigType::Number)
                .default(1e-6)
                .describe("penalty on the weights (not the biases), per training row"),
        ]
    }

    fn new(config: ClassConfig) -> Result<Self, PluginError> {
        // It declares no `training` keys, so the host refuses a `training` section before this.
        let sections: RegressionSections = config.parse()?;
        let l2 = sections.model.l2;
        if l2.is_nan() || l2 < 0.0 {
            return Err(PluginError::invalid_config(format!("model.l2: must be 0 or more, found {l2}")));
        }
        Ok(LinearRegression { l2, parameters: None })
    }
}

fn values_of<'a>(data: &DataView<'a>) -> Result<&'a [f32], PluginError> {
    if data.task != TaskKind::Regression {
        return Err(PluginError::new(
            "LinearRegression fits regression targets; this data set is a classification task: choose a model class for it",
        ));
    }
    data.targets.as_f32().ok_or_else(|| PluginError::new("regression targets must be f32"))
}

/// Solves `a x = b` for every column of `b` (`n x n` and `n x m`, row-major) by Gaussian
/// elimination with partial pivoting; `None` when `a` is singular.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize, m: usize) -> Option<Vec<f64>> {
    for column in 0..n {
        let pivot = (column..n).max_by(|&i, &j| a[i * n + column].abs().total_cmp(&a[j * n + column].abs()))?;
        if a[pivot * n + column].abs() < 1e-12 {
            return None;
        }
        for k in 0..n {
            a.swap(column * n + k, pivot * n + k);
        }
        for k in 0..m {
            b.swap(column * m + k, pivot * m + k);
        }
        for row in column + 1..n {
            let factor = a[row * n + column] / a[column * n + column];
            if factor == 0.0 {
                continue;
            }
            for k in column..n {
                a[row * n + k] -= factor * a[column * n + k];
            }
            for k in 0..m {
                b[row * m + k] -= factor * b[column * m + k];
            }
        }
    }
    let mut x = vec![0.0; n * m];
    for row in (0..n).rev() {
        for k in 0..m {
            let known: f64 = (row + 1..n).map(|j| a[row * n + j] * x[j * m + k]).sum();
            x[row * m + k] = (b[row * m + k] - known) / a[row * n + row];
        }
    }
    Some(x)
}

impl LinearRegression {
    /// Mean squared error over every target value.
    fn mse(&self, data: &DataView<'_>) -> Result<f64, PluginError> {
        let parameters = trained(&self.parameters)?;
        let (x, y) = (features_of(&data.features)?, values_of(data)?);
        let mut predicted = vec![0.0; parameters.outputs];
        let mut sum = 0.0;
        for (row, targets) in x.chunks_exact(parameters.inputs).zip(y.chunks_exact(parameters.outputs)) {
            parameters.linear(row, &mut predicted);
            sum += predicted.iter().zip(targets).map(|(p, t)| f64::from(p - t).powi(2)).sum::<f64>();
        }
        Ok(sum / y.len().max(1) as f64)
    }
}

impl Model for LinearRegression {
    fn fit(
        &mut self,
        train: &DataView<'_>,
        validation: Option<&DataView<'_>>,
        services: &Services<'_>,
    ) -> Result<FitSummary, PluginError> {
        let started = Instant::now();
        let (x, y) = (features_of(&train.features)?, values_of(train)?);
        let (inputs, outputs, rows) = (train.features.row_len(), train.outputs, train.features.rows());
        // Normal equations over [x, 1]: (XᵀX + l2·rows·I) w = Xᵀy, the bias unpenalised.
        let n = inputs + 1;
        let (mut a, mut b) = (vec![0f64; n * n], vec![0f64; n * outputs]);
        for (index, (row, targets)) in x.chunks_exact(inputs).zip(y.chunks_exact(outputs)).enumerate() {
            if index % 1024 == 0 && services.should_stop() {
                return Err(PluginError::cancelled());
            }
            let extended: Vec<f64> = row.iter().map(|&v| f64::from(v)).chain([1.0]).collect();
            for i in 0..n {
                for j in i..n {
                    a[i * n + j] += extended[i] * extended[j];
                }
                for (k, &t) in targets.iter().enumerate() {
                    b[i * outputs + k] += extended[i] * f64::from(t);
                }
            }
        }
        for i in 0..n {
            for j in 0..i {
                a[i * n + j] = a[j * n + i];
            }
        }
        for i in 0..inputs {
            a[i * n + i] += self.l2 * rows as f64;
        }
        let solution = solve(a, b, n, outputs).ok_or_else(|| {
            PluginError::new("the features are collinear (a singular system); raise model.l2 or drop duplicate columns")
        })?;
        let mut parameters = Parameters::zeros(inputs, outputs);
        for output in 0..outputs {
            for input in 0..inputs {
                parameters.weights[output * inputs + input] = solution[input * outputs + output] as f32;
            }
            parameters.biases[output] = solution[inputs * outputs + output] as f32;
        }
        self.parameters = Some(parameters);
        services.progress(1, 1, "solved");
        services.metric("loss", 1, self.mse(train)?);
        if let Some(validation) = validation.filter(|v| v.features.rows() > 0) {
            services.metric("val_loss", 1, self.mse(validation)?);
        }
        services.metric("epoch_seconds", 1, started.elapsed().as_secs_f64());
        Ok(FitSummary { epochs_completed: 1, device: "cpu".into(), ..FitSummary::default() })
    }

    fn predict(&mut self, features: &TensorView<'_>, _: &Services<'_>) -> Result<Tensor, PluginError> {
        trained(&self.parameters)?.apply(features, Parameters::linear)
    }

    fn evaluate(&mut self, data: &DataView<'_>, _: &Services<'_>) -> Result<Map<String, Value>, PluginError> {
        let mut metrics = Map::new();
        metrics.insert("loss".into(), json!(self.mse(data)?));
        Ok(metrics)
    }

    fn save(&mut self, dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
        trained(&self.parameters)?.save(dir)
    }

    fn load(&mut self, dir: &Path) -> Result<(), PluginError> {
        self.parameters = Some(Parameters::load(dir)?);
        Ok(())
    }
}

plugin_sdk::export_plugin! {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    loaders: [],
    models: [SoftmaxRegression, LinearRegression],
    report_generators: [],
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::Elements;
    use plugin_sdk::host::with_services;
    use plugin_sdk::testing::RecordingServices;

    fn model() -> SoftmaxRegression {
        let sections = json!({"training": {"epochs": 30, "batch_size": 8, "learning_rate": 0.5, "momentum": 0.9, "weight_decay": 0.0}});
        SoftmaxRegression::new(ClassConfig {
            sections,
            seed: 3,
            threads: 1,
            resume_from: None,
            declared: SoftmaxRegression::config_keys(),
        })
        .unwrap()
    }

    #[test]
    fn it_learns_a_separable_problem_and_round_trips_through_safetensors() {
        // Class = which of three features is hot.
        let (features, labels): (Vec<f32>, Vec<i64>) = (0..90)
            .map(|i| {
                let class = i % 3;
                let mut row = [0.1f32; 3];
                row[class] = 1.0;
                (row, class as i64)
            })
            .fold((Vec::new(), Vec::new()), |(mut f, mut l), (row, label)| {
                f.extend_from_slice(&row);
                l.push(label);
                (f, l)
            });
        let view = DataView {
            features: TensorView::new(vec![90, 3], Elements::F32(&features)).unwrap(),
            targets: TensorView::new(vec![90], Elements::I64(&labels)).unwrap(),
            task: TaskKind::Classification,
            outputs: 3,
        };
        let mut trained = model();
        let services = RecordingServices::new(std::env::temp_dir());
        with_services(&services, |s| trained.fit(&view, None, s)).unwrap();
        assert_eq!(services.metrics.lock().unwrap().iter().filter(|(name, _, _)| name == "loss").count(), 30);
        let (_, accuracy) = measure(trained.parameters().unwrap(), &view).unwrap();
        assert_eq!(accuracy, 1.0);

        let dir = tempfile::tempdir().unwrap();
        trained.save(dir.path()).unwrap();
        let mut loaded = model();
        loaded.load(dir.path()).unwrap();
        assert_eq!(loaded.parameters, trained.parameters);
        let mut again = model();
        with_services(&services, |s| again.fit(&view, None, s)).unwrap();
        assert_eq!(again.parameters, trained.parameters, "the same seed gives the same weights");
    }

    fn regressor(l2: f64) -> LinearRegression {
        LinearRegression::new(ClassConfig {
            sections: json!({"model": {"l2": l2}}),
            seed: 0,
            threads: 1,
            resume_from: None,
            declared: LinearRegression::config_keys(),
        })
        .unwrap()
    }

    #[test]
    fn linear_regression_recovers_exact_coefficients_per_target_and_round_trips() {
        // y = 2a - b + 3 and z = a + 10, on a small grid.
        let (mut features, mut targets) = (Vec::new(), Vec::new());
        for a in 0..6 {
            for b in 0..5 {
                let (a, b) = (a as f32, b as f32 * 0.5);
                features.extend([a, b]);
                targets.extend([2.0 * a - b + 3.0, a + 10.0]);
            }
        }
        let view = DataView {
            features: TensorView::new(vec![30, 2], Elements::F32(&features)).unwrap(),
            targets: TensorView::new(vec![30, 2], Elements::F32(&targets)).unwrap(),
            task: TaskKind::Regression,
            outputs: 2,
        };
        let mut model = regressor(0.0);
        let services = RecordingServices::new(std::env::temp_dir());
        with_services(&services, |s| model.fit(&view, Some(&view), s)).unwrap();
        let p = model.parameters.clone().unwrap();
        let close = |a: f32, b: f32| (a - b).abs() < 1e-3;
        assert!(close(p.weights[0], 2.0) && close(p.weights[1], -1.0) && close(p.biases[0], 3.0), "{p:?}");
        assert!(close(p.weights[2], 1.0) && close(p.weights[3], 0.0) && close(p.biases[1], 10.0), "{p:?}");
        assert!(model.mse(&view).unwrap() < 1e-6);
        let predicted = with_services(&services, |s| model.predict(&view.features, s)).unwrap();
        assert!(close(predicted.view().as_f32().unwrap()[1], 10.0));

        let dir = tempfile::tempdir().unwrap();
        model.save(dir.path()).unwrap();
        let mut loaded = regressor(0.0);
        loaded.load(dir.path()).unwrap();
        assert_eq!(loaded.parameters, model.parameters);

        // A penalty shrinks the weights; duplicate columns without one are refused by name.
        let mut ridge = regressor(10.0);
        with_services(&services, |s| ridge.fit(&view, None, s)).unwrap();
        assert!(ridge.parameters.unwrap().weights[0].abs() < 1.9);
        let doubled: Vec<f32> = features.chunks(2).flat_map(|r| [r[0], r[0]]).collect();
        let collinear =
            DataView { features: TensorView::new(vec![30, 2], Elements::F32(&doubled)).unwrap(), ..view.clone() };
        let error = with_services(&services, |s| regressor(0.0).fit(&collinear, None, s)).err().unwrap();
        assert!(error.message.contains("collinear"), "{}", error.message);
        let labels = [0i64; 30];
        let classes = DataView {
            targets: TensorView::new(vec![30], Elements::I64(&labels)).unwrap(),
            task: TaskKind::Classification,
            ..view.clone()
        };
        let error = with_services(&services, |s| regressor(0.0).fit(&classes, None, s)).err().unwrap();
        assert!(error.message.contains("classification task"), "{}", error.message);
        assert!(
            LinearRegression::new(ClassConfig {
                sections: json!({"model": {"l2": -1.0}}),
                seed: 0,
                threads: 1,
                resume_from: None,
                declared: LinearRegression::config_keys(),
            })
            .is_err()
        );
    }

    #[test]
    fn model_keys_are_refused() {
        let sections = json!({"model": {"hidden_layers": [3]}, "training": {"epochs": 1, "batch_size": 1, "learning_rate": 0.1, "momentum": 0.0, "weight_decay": 0.0}});
        let error = SoftmaxRegression::new(ClassConfig {
            sections,
            seed: 0,
            threads: 1,
            resume_from: None,
            declared: SoftmaxRegression::config_keys(),
        })
        .err()
        .unwrap();
        assert_eq!(error.message, "model.hidden_layers: SoftmaxRegression has no model keys");
    }
}
