//! The evaluate stage: the model predicts the test split; the host computes the standard
//! metrics (classification, or regression in the targets' own units) and the model adds its
//! own. The trained model's validation split is scored the same way (`validation.*`): what a
//! sweep selects on, so the test metrics stay a held-out figure. Writes `metrics.json` and
//! `predictions.csv` (the test split's); the predictions stay in memory for the report. Reused
//! when an earlier run evaluated bit-identical weights on the same splits.

use anyhow::{Context, anyhow};
use plugin_sdk::ClassKind;
use plugin_sdk::host::ModelHandle;
use record::{ArtifactKind, StageName};
use serde_json::{Map, Value, json};

use super::outputs::{self, Predictions};
use super::reuse;
use super::train::Trained;
use super::{Run, StageError, Staged};
use crate::data::{Prepared, Split};
use crate::metrics;

/// Evaluates the model on the test split. The metrics go into the record; the predictions
/// (none for a model whose task gives none) are returned for the report.
pub fn evaluate(
    run: &mut Run<'_>,
    trained: Trained,
    prepared: &Prepared,
) -> Result<Staged<Option<Predictions>>, StageError> {
    if prepared.test.rows == 0 {
        return Err(StageError::Failed(anyhow!(
            "the test split is empty; raise data_splitting.test_ratio or keep the predefined test set"
        )));
    }
    // A model loaded with --model-from has no key: its weights were not made by this run.
    let key = match run.request.model_from {
        Some(_) => None,
        None => {
            let key = reuse::model_key(
                run,
                StageName::Evaluate,
                json!({
                    "model": trained.weights,
                    "test": prepared.test.digest,
                    "validation": prepared.validation.digest,
                    "label_names": prepared.label_names,
                }),
            )?;
            if let Some((predictions, from)) = reuse_evaluation(run, &key) {
                return Ok(Staged::reused(predictions, key, from));
            }
            Some(key)
        }
    };
    let mut model = match trained.model {
        Some(model) => model,
        None => {
            // Training was reused: load its weights, copied into this run's folder.
            let mut model = run.take_model()?;
            let model_dir = run.dir.join("model");
            model
                .load(&model_dir)
                .map_err(anyhow::Error::new)
                .with_context(|| format!("loading the reused model from {}", model_dir.display()))?;
            model
        }
    };
    let (metrics, predictions) = score(run, &mut model, prepared)?;
    let metrics_file = run.dir.join("metrics.json");
    outputs::write_json(&metrics_file, &metrics)?;
    run.artifact(ArtifactKind::Metrics, &metrics_file)?;
    if let Some(predictions) = &predictions {
        let file = run.dir.join("predictions.csv");
        predictions.write(&file, &prepared.label_names)?;
        run.artifact(ArtifactKind::Predictions, &file)?;
    }
    run.record.metrics = Some(metrics);
    Ok(Staged::computed(predictions, key))
}

/// An earlier run's evaluation of the same weights on the same test split: its metrics and
/// files, and its predictions read back from the copy (a copy that cannot be read is not
/// reused).
fn reuse_evaluation(run: &mut Run<'_>, key: &str) -> Option<(Option<Predictions>, String)> {
    let mut predictions = None;
    let kinds = [ArtifactKind::Metrics, ArtifactKind::Predictions];
    let from = reuse::reuse_stage(run, StageName::Evaluate, key, &kinds, |run, earlier| {
        earlier.metrics.as_ref().and_then(Value::as_object).context("the earlier run recorded no metrics")?;
        predictions = match run.record.files_of(&[ArtifactKind::Predictions]).next() {
            Some(file) => Some(Predictions::read(&file.path)?),
            None => None,
        };
        run.record.metrics = earlier.metrics.clone();
        Ok(())
    })?;
    Some((predictions, from))
}

/// The model's predictions on the test split and every metric of them: the host's standard
/// ones (`test`), and the model's own (`model`, `custom`); and the standard metrics of its
/// predictions on the validation split (`validation`), when there is one.
fn score(
    run: &Run<'_>,
    model: &mut ModelHandle,
    prepared: &Prepared,
) -> Result<(Value, Option<Predictions>), StageError> {
    let class = run.required_class(ClassKind::Model)?;
    let services = run.services(class, run.dir.clone());
    let mut all = Map::new();
    let test = &prepared.test;
    let name = &class.info.name;
    let (view, output) = predict(model, prepared, test, &services, name)?;
    let values = output.view().as_f32().unwrap_or_default();
    let (standard, predictions) = standard_metrics(prepared, test, values, true)
        .with_context(|| format!("evaluating the predictions of {name}"))?;
    if let Some(standard) = standard {
        all.insert("test".into(), standard);
    }
    if prepared.validation.rows > 0 {
        let (_, validation) = predict(model, prepared, &prepared.validation, &services, name)?;
        let values = validation.view().as_f32().unwrap_or_default();
        let (standard, _) = standard_metrics(prepared, &prepared.validation, values, false)
            .with_context(|| format!("evaluating the validation predictions of {name}"))?;
        if let Some(standard) = standard {
            all.insert("validation".into(), standard);
        }
    }
    all.insert("model".into(), Value::Object(model.evaluate(&view, &services)?));
    all.insert("custom".into(), Value::Object(model.custom_metrics(&view.targets, &output.view())?));
    Ok((Value::Object(all), predictions))
}

/// The model's predictions for `split` (checked: f32, one row per sample) and its view.
fn predict<'a>(
    model: &mut ModelHandle,
    prepared: &Prepared,
    split: &'a Split,
    services: &dyn plugin_sdk::host::HostServices,
    class: &str,
) -> Result<(plugin_sdk::DataView<'a>, plugin_sdk::Tensor), StageError> {
    let view = prepared.view(split);
    let output = model.predict(&view.features, services)?;
    if output.view().as_f32().is_none() {
        return Err(StageError::Failed(anyhow!("{class}: predict returned {} values; expected f32", output.dtype())));
    }
    if output.rows() != split.rows {
        let (rows, samples) = (output.rows(), split.rows);
        return Err(StageError::Failed(anyhow!("{class}: predict returned {rows} rows for {samples} samples")));
    }
    Ok((view, output))
}

/// The host's metrics of `values` predicted for `split`: classification metrics from class
/// probabilities, or regression metrics in the targets' own units (the host's standardisation
/// undone first); and the predictions as written and reported, when kept.
fn standard_metrics(
    prepared: &Prepared,
    split: &Split,
    values: &[f32],
    keep_predictions: bool,
) -> anyhow::Result<(Option<Value>, Option<Predictions>)> {
    if let Some(labels) = split.targets.classes() {
        let standard = metrics::classification(labels, values, &prepared.label_names)?;
        let predictions = keep_predictions.then(|| {
            Predictions::classes(
                split.source_rows.clone(),
                labels.to_vec(),
                values.to_vec(),
                prepared.label_names.len(),
            )
        });
        return Ok((Some(serde_json::to_value(standard)?), predictions));
    }
    let Some(actual) = prepared.original_values(split) else { return Ok((None, None)) };
    let predicted = prepared.target_scaling().map(|s| s.undo(values)).unwrap_or_else(|| values.to_vec());
    let standard = metrics::regression(&actual, &predicted, &prepared.label_names)?;
    let predictions = keep_predictions.then(|| Predictions::Values {
        rows: split.source_rows.clone(),
        actual,
        predicted,
        targets: prepared.outputs(),
    });
    Ok((Some(serde_json::to_value(standard)?), predictions))
}
