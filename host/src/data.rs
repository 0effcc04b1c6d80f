//! The data manager: splits a loaded dataset into train / validation / test with the run's
//! seed, scales features to f32 (and optionally standardises them with statistics fitted on the
//! training split), and records every transform with its parameters and the content digests of
//! its inputs and outputs. Task-agnostic: it knows classification from regression only through
//! the loader's `TaskKind`.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use plugin_sdk::{DataView, Dataset, Elements, TaskKind, TensorView};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use record::{DataEntity, Transform};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::experiment::{DataSplitting, Preprocessing};
use crate::hashing::{fill_in_parallel, hex, xxh3_128};

/// Random streams derived from the run's seed, one per purpose, so adding a consumer never
/// shifts another's numbers.
const SPLIT_STREAM: u64 = 10;

/// The content digest of a tensor: SHA-256 over its dtype, shape and the digest of its bytes
/// (XXH3-128 for a loaded dataset's buffers). Hashing the bytes separately lets a reshape be
/// re-digested without rehashing.
pub fn tensor_digest(dtype: &str, shape: &[usize], bytes_digest: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"tensor\0");
    hasher.update(dtype.as_bytes());
    for dim in shape {
        hasher.update((*dim as u64).to_le_bytes());
    }
    hasher.update(bytes_digest.as_bytes());
    hex(&hasher.finalize())
}

/// The version of the host's data transforms: bump it whenever a transform's output changes
/// for the same input and parameters, so derived digests (and cached splits) change with it.
pub const TRANSFORMS_VERSION: u64 = 1;

/// The digest of a host transform's output, derived from its input's digest and the
/// transform's parameters rather than from the output's bytes. The host's transforms (row
/// selection, scaling, standardisation) are deterministic functions of exactly these, so the
/// digest names the output's content as surely as hashing it would, without hashing hundreds
/// of megabytes of f32 on every run (the data a run reads, and the dataset its loader returns,
/// are content-hashed).
pub fn derived_digest(transform: &str, input: &str, parameters: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"derived\0");
    hasher.update(TRANSFORMS_VERSION.to_le_bytes());
    hasher.update(transform.as_bytes());
    hasher.update(b"\0");
    hasher.update(input.as_bytes());
    hasher.update(b"\0");
    hasher.update(parameters);
    hex(&hasher.finalize())
}

/// The digest of a features/targets pair (a dataset or a split).
pub fn pair_digest(features: &str, targets: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"dataset\0");
    hasher.update(features.as_bytes());
    hasher.update(targets.as_bytes());
    hex(&hasher.finalize())
}

/// Targets of one split.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Class indices.
    Classes(Vec<i64>),
    /// Values, `columns` per row.
    Values { values: Vec<f32>, columns: usize },
}

impl Targets {
    fn elements(&self) -> Elements<'_> {
        match self {
            Targets::Classes(c) => Elements::I64(c),
            Targets::Values { values, .. } => Elements::F32(values),
        }
    }

    fn shape(&self, rows: usize) -> Vec<usize> {
        match self {
            Targets::Classes(_) => vec![rows],
            Targets::Values { columns, .. } => vec![rows, *columns],
        }
    }

    pub fn classes(&self) -> Option<&[i64]> {
        match self {
            Targets::Classes(c) => Some(c),
            Targets::Values { .. } => None,
        }
    }
}

/// One prepared split: f32 features and its targets.
#[derive(Debug, Clone)]
pub struct Split {
    pub name: &'static str,
    pub rows: usize,
    pub features: Vec<f32>,
    pub targets: Targets,
    /// Source row of each sample in the loaded dataset.
    pub source_rows: Vec<usize>,
    pub digest: String,
}

/// What the prepare stage hands to training and evaluation.
#[derive(Debug)]
pub struct Prepared {
    pub train: Split,
    pub validation: Split,
    pub test: Split,
    /// The shape of one sample's features.
    pub sample_shape: Vec<usize>,
    pub task: TaskKind,
    pub label_names: Vec<String>,
    pub dataset_digest: String,
    pub transforms: Vec<Transform>,
    /// Each split's content digest (by split name), known once the splits were written to
    /// or read from the stage cache.
    pub content_sha256: BTreeMap<String, String>,
}

/// The name of the transform that standardises regression targets.
pub const STANDARDIZE_TARGETS: &str = "standardize_targets";

/// Per-column target statistics fitted on the training split.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TargetScaling {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl TargetScaling {
    /// Maps standardised values (`columns` per row) back to the targets' own units.
    pub fn undo(&self, values: &[f32]) -> Vec<f32> {
        let columns = self.mean.len().max(1);
        values
            .chunks(columns)
            .flat_map(|row| row.iter().zip(&self.mean).zip(&self.std).map(|((v, m), s)| v * s + m))
            .collect()
    }
}

impl Prepared {
    pub fn outputs(&self) -> usize {
        self.label_names.len()
    }

    /// The regression targets' scaling, read back from the recorded transform (so prepared
    /// data restored from the stage cache has it too); `None` when targets are as loaded.
    pub fn target_scaling(&self) -> Option<TargetScaling> {
        let transform = self.transforms.iter().find(|t| t.name == STANDARDIZE_TARGETS)?;
        serde_json::from_value(transform.parameters.clone()).ok()
    }

    /// A split's targets in their own units: class indices, or values with any standardisation
    /// undone.
    pub fn original_values(&self, split: &Split) -> Option<Vec<f32>> {
        match &split.targets {
            Targets::Classes(_) => None,
            Targets::Values { values, .. } => {
                Some(self.target_scaling().map(|scaling| scaling.undo(values)).unwrap_or_else(|| values.clone()))
            }
        }
    }

    /// Borrows a split as the model sees it.
    pub fn view<'a>(&self, split: &'a Split) -> DataView<'a> {
        let mut shape = vec![split.rows];
        shape.extend_from_slice(&self.sample_shape);
        DataView {
            features: TensorView { shape, elements: Elements::F32(&split.features) },
            targets: TensorView { shape: split.targets.shape(split.rows), elements: split.targets.elements() },
            task: self.task,
            outputs: self.outputs(),
        }
    }

    pub fn splits(&self) -> [&Split; 3] {
        [&self.train, &self.validation, &self.test]
    }
}

/// How [`dataset_digest`] is made, as the record says (`data.digest_scheme`).
pub const DIGEST_SCHEME: &str = "xxh3-128";

/// The digest of a loaded dataset, as the loader returned it: SHA-256 over each tensor's dtype,
/// shape and the XXH3-128 of its bytes ([`crate::hashing::xxh3_128`]; MNIST's 55 MB in 3 ms
/// where SHA-256 took 17 ms on two cores, 0.7 % of a run).
pub fn dataset_digest(dataset: &Dataset) -> String {
    let features = dataset.features.elements();
    let targets = dataset.targets.elements();
    let feature_digest =
        tensor_digest(features.dtype().name(), dataset.features.shape(), &xxh3_128(features.as_bytes()));
    let target_digest = tensor_digest(targets.dtype().name(), dataset.targets.shape(), &xxh3_128(targets.as_bytes()));
    pair_digest(&feature_digest, &target_digest)
}

/// Rows for train, validation and test, chosen with the seed.
fn split_rows(
    rows: usize,
    test_start: Option<usize>,
    splitting: &DataSplitting,
    seed: u64,
) -> ([Vec<usize>; 3], Value) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(SPLIT_STREAM);
    match test_start.filter(|_| splitting.use_predefined_test) {
        Some(test_start) => {
            let mut pool: Vec<usize> = (0..test_start).collect();
            if splitting.shuffle {
                pool.shuffle(&mut rng);
            }
            let validation_rows = (test_start as f64 * splitting.validation_fraction).round() as usize;
            let train = pool.split_off(validation_rows);
            let parameters = json!({
                "strategy": "predefined_test",
                "validation_fraction": splitting.validation_fraction,
                "shuffle": splitting.shuffle,
                "seed": seed,
            });
            ([train, pool, (test_start..rows).collect()], parameters)
        }
        None => {
            let mut all: Vec<usize> = (0..rows).collect();
            if splitting.shuffle {
                all.shuffle(&mut rng);
            }
            let test_rows = (rows as f64 * splitting.test_ratio).round() as usize;
            let validation_rows = (rows as f64 * splitting.val_ratio).round() as usize;
            let test = all.split_off(rows - test_rows.min(rows));
            let validation = all.split_off(all.len() - validation_rows.min(all.len()));
            let parameters = json!({
                "strategy": "ratios",
                "train_ratio": splitting.train_ratio,
                "val_ratio": splitting.val_ratio,
                "test_ratio": splitting.test_ratio,
                "shuffle": splitting.shuffle,
                "seed": seed,
            });
            ([all, validation, test], parameters)
        }
    }
}

/// How raw features become f32: `value * scale + shift`, per element.
#[derive(Debug, Clone, Copy)]
struct Affine {
    scale: f32,
    shift: f32,
}

/// The chosen rows as f32, `value * scale + shift`, filled chunk by chunk on the run's threads.
fn gather_features(features: &Elements<'_>, row_len: usize, rows: &[usize], affine: Affine) -> Vec<f32> {
    fn fill<T: Copy>(
        source: &[T],
        row_len: usize,
        rows: &[usize],
        first: usize,
        out: &mut [f32],
        affine: Affine,
        as_f32: impl Fn(T) -> f32,
    ) {
        // Walk row by row from the chunk's first element: one division per chunk, not per value.
        let (mut row, mut column) = (first / row_len, first % row_len);
        let mut out = out;
        while !out.is_empty() {
            let take = (row_len - column).min(out.len());
            let start = rows[row] * row_len + column;
            let (head, rest) = out.split_at_mut(take);
            for (value, &raw) in head.iter_mut().zip(&source[start..start + take]) {
                *value = as_f32(raw) * affine.scale + affine.shift;
            }
            out = rest;
            (row, column) = (row + 1, 0);
        }
    }
    let mut out = vec![0f32; rows.len() * row_len];
    let features = *features;
    fill_in_parallel(&mut out, |first, chunk| match features {
        Elements::U8(s) => fill(s, row_len, rows, first, chunk, affine, f32::from),
        Elements::F32(s) => fill(s, row_len, rows, first, chunk, affine, |v| v),
        Elements::F64(s) => fill(s, row_len, rows, first, chunk, affine, |v| v as f32),
        Elements::I64(s) => fill(s, row_len, rows, first, chunk, affine, |v| v as f32),
    });
    out
}

/// The SHA-256 of row indices, as little-endian u64s.
fn rows_digest(rows: &[usize]) -> String {
    let bytes: Vec<u8> = rows.iter().flat_map(|&r| (r as u64).to_le_bytes()).collect();
    hex(&Sha256::digest(&bytes))
}

fn gather_targets(dataset: &Dataset, rows: &[usize]) -> anyhow::Result<Targets> {
    let columns: usize = dataset.targets.shape().iter().skip(1).product();
    Ok(match (dataset.task, dataset.targets.elements()) {
        (TaskKind::Classification, Elements::I64(labels)) => {
            let classes = dataset.label_names.len() as i64;
            let picked: Vec<i64> = rows.iter().map(|&r| labels[r]).collect();
            if let Some(bad) = picked.iter().find(|&&l| l < 0 || l >= classes) {
                bail!("the loader returned class index {bad}, outside its {classes} class names");
            }
            Targets::Classes(picked)
        }
        (TaskKind::Regression, Elements::F32(values)) => Targets::Values {
            values: rows.iter().flat_map(|&r| values[r * columns..(r + 1) * columns].iter().copied()).collect(),
            columns,
        },
        (task, elements) => bail!("the loader returned {} targets for a {task:?} task", elements.dtype()),
    })
}

/// The three splits' names, in order.
const SPLIT_NAMES: [&str; 3] = ["train", "validation", "test"];

/// Splits, scales and (optionally) standardises; every step is recorded as a transform.
/// `dataset_digest` is the dataset's [`dataset_digest`], computed once by the caller.
pub fn prepare(
    dataset: &Dataset,
    dataset_digest: &str,
    splitting: &DataSplitting,
    preprocessing: &Preprocessing,
    seed: u64,
) -> anyhow::Result<Prepared> {
    check_dataset(dataset)?;
    let (rows, targets, split) = split_step(dataset, dataset_digest, splitting, seed)?;
    let (mut splits, sample_shape, scale) = scale_step(dataset, preprocessing, rows, targets, &split.outputs);
    let mut transforms = vec![split, scale];
    if preprocessing.normalize == "standardize" {
        transforms.push(standardize_step(&mut splits));
    }
    if dataset.task == TaskKind::Regression && preprocessing.standardize_targets {
        transforms.push(standardize_targets_step(&mut splits, &dataset.label_names));
    }
    let [train, validation, test] = <[Split; 3]>::try_from(splits).map_err(|_| anyhow::anyhow!("three splits"))?;
    Ok(Prepared {
        train,
        validation,
        test,
        sample_shape,
        task: dataset.task,
        label_names: dataset.label_names.clone(),
        dataset_digest: dataset_digest.to_owned(),
        transforms,
        content_sha256: BTreeMap::new(),
    })
}

/// What the loader returned must be consistent before anything is split.
fn check_dataset(dataset: &Dataset) -> anyhow::Result<()> {
    let rows = dataset.features.rows();
    if rows == 0 {
        bail!("the loader returned no samples");
    }
    if dataset.targets.rows() != rows {
        bail!("the loader returned {rows} feature rows but {} target rows", dataset.targets.rows());
    }
    if dataset.task == TaskKind::Classification && dataset.label_names.is_empty() {
        bail!("the loader returned a classification data set without class names");
    }
    Ok(())
}

/// Step 1: the rows of each split (chosen with the seed), their targets, and the transform
/// recording it (each split's digest derived from the dataset's and its row indices).
fn split_step(
    dataset: &Dataset,
    dataset_digest: &str,
    splitting: &DataSplitting,
    seed: u64,
) -> anyhow::Result<([Vec<usize>; 3], Vec<Targets>, Transform)> {
    let started = std::time::Instant::now();
    let (rows, mut parameters) = split_rows(dataset.features.rows(), dataset.test_start, splitting, seed);
    if rows[0].is_empty() {
        bail!("the split leaves no training samples; lower data_splitting.val_ratio/test_ratio or validation_fraction");
    }
    let mut targets = Vec::with_capacity(3);
    let mut outputs = Vec::with_capacity(3);
    for (name, split) in SPLIT_NAMES.iter().zip(&rows) {
        targets.push(gather_targets(dataset, split).context("prepare")?);
        // These rows of that dataset, features and targets alike.
        let digest = derived_digest("rows", dataset_digest, rows_digest(split).as_bytes());
        outputs.push(DataEntity { label: format!("{name} (raw)"), sha256: digest });
    }
    parameters["sizes"] = json!({"train": rows[0].len(), "validation": rows[1].len(), "test": rows[2].len()});
    let transform = Transform {
        name: "split".into(),
        parameters,
        inputs: vec![DataEntity { label: "dataset".into(), sha256: dataset_digest.to_owned() }],
        outputs,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((rows, targets, transform))
}

/// Step 2: each split's features as f32, scaled (bytes to [0, 1], other types min-max with the
/// training split's range, or as they are), flattened when asked (which changes only the
/// recorded shape). Returns the splits, the sample shape the model sees, and the transform.
fn scale_step(
    dataset: &Dataset,
    preprocessing: &Preprocessing,
    rows: [Vec<usize>; 3],
    targets: Vec<Targets>,
    raw: &[DataEntity],
) -> (Vec<Split>, Vec<usize>, Transform) {
    let started = std::time::Instant::now();
    let features = dataset.features.elements();
    let raw_sample_shape = dataset.features.shape()[1..].to_vec();
    let row_len: usize = raw_sample_shape.iter().product();
    let affine = match (preprocessing.normalize.as_str(), features.dtype()) {
        ("none", _) => Affine { scale: 1.0, shift: 0.0 },
        (_, plugin_sdk::DType::U8) => Affine { scale: 1.0 / 255.0, shift: 0.0 },
        _ => {
            // Min-max to [0, 1] with the training split's range.
            let train = gather_features(&features, row_len, &rows[0], Affine { scale: 1.0, shift: 0.0 });
            let (min, max) =
                train.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let range = if max > min { max - min } else { 1.0 };
            Affine { scale: 1.0 / range, shift: -min / range }
        }
    };
    let sample_shape = if preprocessing.flatten { vec![row_len] } else { raw_sample_shape };
    let scaling = json!({
        "scale": affine.scale.to_bits(),
        "shift": affine.shift.to_bits(),
        "dtype": "f32",
        "sample_shape": sample_shape,
    })
    .to_string();
    let splits: Vec<Split> = SPLIT_NAMES
        .iter()
        .zip(rows)
        .zip(targets)
        .zip(raw)
        .map(|(((name, rows), targets), raw)| Split {
            name,
            rows: rows.len(),
            features: gather_features(&features, row_len, &rows, affine),
            targets,
            source_rows: rows,
            digest: derived_digest("scale", &raw.sha256, scaling.as_bytes()),
        })
        .collect();
    let transform = Transform {
        name: "scale".into(),
        parameters: json!({
            "normalize": if preprocessing.normalize == "none" { "none" } else { "unit" },
            "scale": affine.scale,
            "shift": affine.shift,
            "dtype": "f32",
            "flatten": preprocessing.flatten,
            "sample_shape": sample_shape,
        }),
        inputs: raw.to_vec(),
        outputs: entities(&splits, "scaled"),
        seconds: started.elapsed().as_secs_f64(),
    };
    (splits, sample_shape, transform)
}

/// The splits as data entities, labelled `<split> (<what>)`.
fn entities(splits: &[Split], what: &str) -> Vec<DataEntity> {
    splits.iter().map(|s| DataEntity { label: format!("{} ({what})", s.name), sha256: s.digest.clone() }).collect()
}

/// Step 3 (optional): standardises every split's features with the training split's
/// per-feature mean and standard deviation.
fn standardize_step(splits: &mut [Split]) -> Transform {
    let started = std::time::Instant::now();
    let inputs = entities(splits, "scaled");
    let row_len = splits[0].features.len() / splits[0].rows.max(1);
    let (mean, std) = feature_statistics(&splits[0].features, row_len);
    let statistics = statistics_bytes(&mean, &std);
    for split in splits.iter_mut() {
        standardize_rows(&mut split.features, row_len, &mean, &std);
        split.digest = derived_digest("standardize", &split.digest, &statistics);
    }
    Transform {
        name: "standardize".into(),
        parameters: json!({ "fitted_on": "train", "mean": mean, "std": std }),
        inputs,
        outputs: entities(splits, "standardized"),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Step 4 (regression, optional): standardises each target column with the training split's
/// statistics, recorded so predictions can be mapped back ([`Prepared::target_scaling`]).
fn standardize_targets_step(splits: &mut [Split], columns: &[String]) -> Transform {
    let started = std::time::Instant::now();
    let inputs: Vec<DataEntity> =
        splits.iter().map(|s| DataEntity { label: s.name.to_string(), sha256: s.digest.clone() }).collect();
    let (mean, std) = match &splits[0].targets {
        Targets::Values { values, columns } => feature_statistics(values, *columns),
        Targets::Classes(_) => unreachable!("regression targets are values"),
    };
    let statistics = statistics_bytes(&mean, &std);
    for split in splits.iter_mut() {
        if let Targets::Values { values, columns } = &mut split.targets {
            standardize_rows(values, *columns, &mean, &std);
        }
        split.digest = derived_digest("standardize_targets", &split.digest, &statistics);
    }
    Transform {
        name: STANDARDIZE_TARGETS.into(),
        parameters: json!({ "fitted_on": "train", "columns": columns, "mean": mean, "std": std }),
        inputs,
        outputs: entities(splits, "targets standardized"),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Centres and scales each column of `values` (`width` per row) in place.
fn standardize_rows(values: &mut [f32], width: usize, mean: &[f32], std: &[f32]) {
    for row in values.chunks_exact_mut(width) {
        for ((value, m), s) in row.iter_mut().zip(mean).zip(std) {
            *value = (*value - m) / s;
        }
    }
}

/// Fitted statistics as the exact bytes a derived digest covers.
fn statistics_bytes(mean: &[f32], std: &[f32]) -> Vec<u8> {
    mean.iter().chain(std).flat_map(|value| value.to_le_bytes()).collect()
}

/// Per-feature mean and standard deviation (a zero deviation becomes 1, leaving constant
/// features centred rather than dividing by zero).
fn feature_statistics(values: &[f32], row_len: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = (values.len() / row_len.max(1)).max(1) as f64;
    let mut sum = vec![0f64; row_len];
    let mut sum_sq = vec![0f64; row_len];
    for row in values.chunks_exact(row_len) {
        for ((s, q), &v) in sum.iter_mut().zip(&mut sum_sq).zip(row) {
            *s += v as f64;
            *q += (v as f64) * (v as f64);
        }
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / rows) as f32).collect();
    let std = sum_sq
        .iter()
        .zip(&sum)
        .map(|(q, s)| {
            let variance = (q / rows - (s / rows).powi(2)).max(0.0);
            if variance > 1e-12 { variance.sqrt() as f32 } else { 1.0 }
        })
        .collect();
    (mean, std)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::Tensor;

    fn prepare(
        dataset: &Dataset,
        splitting: &DataSplitting,
        preprocessing: &Preprocessing,
        seed: u64,
    ) -> anyhow::Result<Prepared> {
        super::prepare(dataset, &dataset_digest(dataset), splitting, preprocessing, seed)
    }

    fn dataset(rows: usize, test_start: Option<usize>) -> Dataset {
        Dataset {
            features: Tensor::from_u8(vec![rows, 2, 2], (0..rows * 4).map(|i| (i % 256) as u8).collect()).unwrap(),
            targets: Tensor::from_i64(vec![rows], (0..rows).map(|i| (i % 3) as i64).collect()).unwrap(),
            task: TaskKind::Classification,
            label_names: vec!["a".into(), "b".into(), "c".into()],
            test_start,
            metadata: json!({}),
        }
    }

    fn splitting() -> DataSplitting {
        DataSplitting {
            train_ratio: 0.8,
            val_ratio: 0.1,
            test_ratio: 0.1,
            use_predefined_test: true,
            validation_fraction: 0.25,
            shuffle: true,
        }
    }

    fn unit(flatten: bool) -> Preprocessing {
        Preprocessing { normalize: "unit".into(), flatten, standardize_targets: true }
    }

    #[test]
    fn predefined_test_set_is_kept_and_the_pool_split_with_the_seed() {
        let prepared = prepare(&dataset(100, Some(80)), &splitting(), &unit(true), 7).unwrap();
        assert_eq!((prepared.train.rows, prepared.validation.rows, prepared.test.rows), (60, 20, 20));
        assert_eq!(prepared.test.source_rows, (80..100).collect::<Vec<_>>());
        assert_eq!(prepared.sample_shape, vec![4]);
        let mut pool: Vec<usize> =
            prepared.train.source_rows.iter().chain(&prepared.validation.source_rows).copied().collect();
        pool.sort_unstable();
        assert_eq!(pool, (0..80).collect::<Vec<_>>());
        let row = prepared.train.source_rows[0];
        let expected: Vec<f32> = (0..4).map(|j| ((row * 4 + j) % 256) as f32 / 255.0).collect();
        assert_eq!(prepared.train.features[..4], expected[..]);
        assert_eq!(prepared.transforms.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["split", "scale"]);
    }

    #[test]
    fn a_datasets_digest_follows_its_bytes_dtypes_and_shapes() {
        let digest = dataset_digest(&dataset(100, None));
        assert_eq!(dataset_digest(&dataset(100, None)), digest);
        let mut other_bytes = dataset(100, None);
        other_bytes.targets = Tensor::from_i64(vec![100], (0..100).map(|i| (i % 2) as i64).collect()).unwrap();
        let mut other_shape = dataset(100, None);
        other_shape.features = Tensor::from_u8(vec![100, 4], (0..400).map(|i| (i % 256) as u8).collect()).unwrap();
        let mut other_dtype = dataset(100, None);
        other_dtype.features = Tensor::from_f32(vec![100, 2, 2], (0..400).map(|i| (i % 256) as f32).collect()).unwrap();
        for other in [other_bytes, other_shape, other_dtype, dataset(99, None)] {
            assert_ne!(dataset_digest(&other), digest);
        }
        assert!(xxh3_128(b"").starts_with("xxh3-128:"));
    }

    #[test]
    fn the_same_seed_gives_the_same_digests_and_another_seed_does_not() {
        let a = prepare(&dataset(100, None), &splitting(), &unit(false), 1).unwrap();
        let b = prepare(&dataset(100, None), &splitting(), &unit(false), 1).unwrap();
        let c = prepare(&dataset(100, None), &splitting(), &unit(false), 2).unwrap();
        assert_eq!(a.train.digest, b.train.digest);
        assert_ne!(a.train.digest, c.train.digest);
        assert_eq!((a.train.rows, a.validation.rows, a.test.rows), (80, 10, 10));
        assert_eq!(a.sample_shape, vec![2, 2]);
        // Flattening changes only the shape, and so the digest.
        let flat = prepare(&dataset(100, None), &splitting(), &unit(true), 1).unwrap();
        assert_eq!(flat.train.features, a.train.features);
        assert_ne!(flat.train.digest, a.train.digest);
        // Split digests derive from the dataset's content digest: other data, other digests.
        let mut other = dataset(100, None);
        other.targets = plugin_sdk::Tensor::from_i64(vec![100], (0..100).map(|i| (i % 2) as i64).collect()).unwrap();
        let d = prepare(&other, &splitting(), &unit(false), 1).unwrap();
        assert_eq!(d.train.source_rows, a.train.source_rows);
        assert_ne!(d.train.digest, a.train.digest);
        assert_ne!(d.transforms[0].outputs, a.transforms[0].outputs);
    }

    #[test]
    fn standardisation_is_fitted_on_the_training_split_and_recorded() {
        let preprocessing = Preprocessing { normalize: "standardize".into(), flatten: true, standardize_targets: true };
        let prepared = prepare(&dataset(200, Some(150)), &splitting(), &preprocessing, 3).unwrap();
        let step = prepared.transforms.last().unwrap();
        assert_eq!(step.name, "standardize");
        assert_eq!(step.parameters["mean"].as_array().unwrap().len(), 4);
        let (mean, _) = feature_statistics(&prepared.train.features, 4);
        assert!(mean.iter().all(|m| m.abs() < 1e-4), "{mean:?}");
        assert_eq!(step.inputs[0].sha256, prepared.transforms[1].outputs[0].sha256);
    }

    #[test]
    fn out_of_range_labels_are_refused() {
        let mut data = dataset(10, None);
        data.label_names.truncate(2);
        let error = prepare(&data, &splitting(), &unit(true), 1).unwrap_err();
        assert!(format!("{error:#}").contains("class index 2, outside its 2 class names"), "{error:#}");
    }
}
