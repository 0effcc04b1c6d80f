//! The report stage, and what a report generator receives: the run's record (metrics, history,
//! provenance) and what the host derives for it from the data and the predictions (class
//! counts, sample and misclassified images, training-split statistics). A generator never reads
//! the run folder, so `host report` can feed any generator a past run. Reports describe their
//! own run (its id, timings, provenance), so they are never reused.

use std::path::{Path, PathBuf};

use plugin_sdk::ClassKind;
use plugin_sdk::host::{ReportGeneratorHandle, ReportKind};
use record::{ArtifactKind, RunRecord};
use serde_json::{Value, json};

use super::outputs::Predictions;
use super::{Run, StageError, Staged};
use crate::data::{Prepared, Split};

pub fn report(
    run: &mut Run<'_>,
    prepared: &Prepared,
    predictions: Option<&Predictions>,
) -> Result<Staged<()>, StageError> {
    let reports = run.dir.join("reports");
    let mut generator = run.take_report_generator()?;
    for file in generate(run, &mut generator, &run.record, prepared, predictions, &reports)? {
        run.artifact(ArtifactKind::Report, &file)?;
    }
    Ok(Staged::computed((), None))
}

/// Runs the report generator on `record` and the prepared data, writing into `reports_dir`.
pub fn generate(
    run: &Run<'_>,
    generator: &mut ReportGeneratorHandle,
    record: &RunRecord,
    prepared: &Prepared,
    predictions: Option<&Predictions>,
    reports_dir: &Path,
) -> Result<Vec<PathBuf>, StageError> {
    let class = run.required_class(ClassKind::ReportGenerator)?;
    std::fs::create_dir_all(reports_dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", reports_dir.display()))?;
    let services = run.services(class, reports_dir.to_owned());
    let input = report_input(record, prepared, predictions).map_err(anyhow::Error::from)?;
    let mut files = Vec::new();
    for kind in [ReportKind::Data, ReportKind::Training, ReportKind::Evaluation, ReportKind::Summary] {
        files.extend(generator.generate(kind, &input, &services)?);
        store::failpoint::pause("report.write");
    }
    Ok(files)
}

/// Minimum, maximum, mean and standard deviation of the training features, and the mean sample.
fn feature_statistics(split: &Split, row_len: usize) -> Value {
    if split.features.is_empty() || row_len == 0 {
        return Value::Null;
    }
    let (mut min, mut max, mut sum, mut sum_sq) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0);
    let mut mean_sample = vec![0f64; row_len];
    for row in split.features.chunks_exact(row_len) {
        for (acc, &value) in mean_sample.iter_mut().zip(row) {
            let value = f64::from(value);
            *acc += value;
            min = min.min(value);
            max = max.max(value);
            sum += value;
            sum_sq += value * value;
        }
    }
    let count = split.features.len() as f64;
    let mean = sum / count;
    for value in &mut mean_sample {
        *value /= split.rows as f64;
    }
    json!({
        "min": min,
        "max": max,
        "mean": mean,
        "std": (sum_sq / count - mean * mean).max(0.0).sqrt(),
        "mean_sample": mean_sample,
    })
}

/// What the report generator gets: the run record, its environment, and what the host derives
/// from the data and predictions (class counts per split, sample and misclassified test rows,
/// feature statistics, regression values per target).
fn report_input(
    record: &RunRecord,
    prepared: &Prepared,
    predictions: Option<&Predictions>,
) -> serde_json::Result<Value> {
    // Per class, for classification; regression targets have no classes to count.
    let class_counts = |split: &Split| -> Option<Vec<usize>> {
        let mut counts = vec![0; prepared.label_names.len()];
        for &label in split.targets.classes()? {
            counts[label as usize] += 1;
        }
        Some(counts)
    };
    let regression = match predictions {
        Some(predictions @ Predictions::Values { .. }) => {
            let (actual, predicted) = predictions.by_target();
            json!({"targets": prepared.label_names, "actual": actual, "predicted": predicted})
        }
        _ => Value::Null,
    };
    let row_len: usize = prepared.sample_shape.iter().product();
    let samples: Vec<Value> = prepared
        .test
        .features
        .chunks_exact(row_len.max(1))
        .zip(prepared.test.targets.classes().unwrap_or(&[]))
        .take(24)
        .map(|(values, &label)| json!({"label": label, "values": values}))
        .collect();
    // The most confident mistakes first.
    let mut mistakes: Vec<_> = predictions
        .map(Predictions::classified)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, label, predicted, _)| *label as usize != *predicted)
        .collect();
    mistakes.sort_by(|a, b| b.3.total_cmp(&a.3));
    let misclassified: Vec<Value> = mistakes
        .iter()
        .take(48)
        .filter_map(|&(index, label, predicted, confidence)| {
            let values = prepared.test.features.get(index * row_len..(index + 1) * row_len)?;
            Some(json!({"label": label, "predicted": predicted, "confidence": confidence, "values": values}))
        })
        .collect();
    Ok(json!({
        "run": serde_json::to_value(record)?,
        "environment": record.environment,
        "data": {
            "label_names": prepared.label_names,
            "sample_shape": prepared.sample_shape,
            "class_counts": {
                "train": class_counts(&prepared.train),
                "validation": class_counts(&prepared.validation),
                "test": class_counts(&prepared.test),
            },
            "test_samples": samples,
            "train_statistics": feature_statistics(&prepared.train, row_len),
        },
        "evaluation": {
            "misclassified": misclassified,
            "misclassified_total": mistakes.len(),
            "regression": regression,
        },
    }))
}
