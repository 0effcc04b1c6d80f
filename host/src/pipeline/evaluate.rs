//! The evaluate stage: the model predicts the test split; the host computes the standard
//! metrics (classification, or regression in the targets' own units) and the model adds its
//! own. Writes `metrics.json` and `predictions.csv`; the predictions stay in memory for the
//! report. Reused when an earlier run evaluated bit-identical weights on the same test split.

use anyhow::{Context, anyhow};
use plugin_sdk::ClassKind;
use record::{ArtifactKind, StageName};
use serde_json::{Value, json};

use super::outputs::{self, Predictions};
use super::reuse;
use super::train::{Trained, create_model};
use super::{Run, StageError, Staged};
use crate::data::Prepared;
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
    let key = if run.request.model_from.is_none() {
        let mut weights: Vec<&str> = run.record.files_of(&[ArtifactKind::Model]).map(|a| a.sha256.as_str()).collect();
        weights.sort();
        let key = reuse::model_key(
            run,
            "evaluate",
            json!({"model": weights, "test": prepared.test.digest, "label_names": prepared.label_names}),
        )?;
        let kinds = [ArtifactKind::Metrics, ArtifactKind::Predictions];
        let reused = reuse::reuse_stage(run, StageName::Evaluate, &key, &kinds, |run, earlier| {
            earlier.metrics.as_ref().and_then(Value::as_object).context("the earlier run recorded no metrics")?;
            run.record.metrics = earlier.metrics.clone();
            Ok(())
        });
        if let Some(from) = reused {
            let predictions = match run.record.files_of(&[ArtifactKind::Predictions]).next() {
                Some(file) => Some(Predictions::read(&file.path)?),
                None => None,
            };
            return Ok(Staged::reused(predictions, key, from));
        }
        Some(key)
    } else {
        None
    };
    let mut model = match trained.model {
        Some(model) => model,
        None => {
            // Training was reused: load its weights, copied into this run's folder.
            let mut model = create_model(run)?;
            let model_dir = run.dir.join("model");
            model
                .load(&model_dir)
                .map_err(anyhow::Error::new)
                .with_context(|| format!("loading the reused model from {}", model_dir.display()))?;
            model
        }
    };
    let class = run.required_class(ClassKind::Model)?;
    let services = run.services(class, run.dir.clone());
    let test = &prepared.test;
    let view = prepared.view(test);
    let output = model.predict(&view.features, &services)?;
    let values = output
        .view()
        .as_f32()
        .ok_or_else(|| anyhow!("{}: predict returned {} values; expected f32", class.info.name, output.dtype()))?;
    if output.rows() != test.rows {
        return Err(StageError::Failed(anyhow!(
            "{}: predict returned {} rows for {} samples",
            class.info.name,
            output.rows(),
            test.rows
        )));
    }
    let context = || format!("evaluating the predictions of {}", class.info.name);
    let mut all = serde_json::Map::new();
    let predictions = if let Some(labels) = test.targets.classes() {
        let standard = metrics::classification(labels, values, &prepared.label_names).with_context(context)?;
        all.insert("test".into(), serde_json::to_value(standard).map_err(anyhow::Error::from)?);
        Some(Predictions::Classes {
            rows: test.source_rows.clone(),
            labels: labels.to_vec(),
            probabilities: values.to_vec(),
            classes: prepared.label_names.len(),
        })
    } else if let Some(actual) = prepared.original_values(test) {
        // Metrics in the targets' own units: undo the host's standardisation first.
        let predicted = prepared.target_scaling().map(|s| s.undo(values)).unwrap_or_else(|| values.to_vec());
        let standard = metrics::regression(&actual, &predicted, &prepared.label_names).with_context(context)?;
        all.insert("test".into(), serde_json::to_value(standard).map_err(anyhow::Error::from)?);
        Some(Predictions::Values { rows: test.source_rows.clone(), actual, predicted, targets: prepared.outputs() })
    } else {
        None
    };
    all.insert("model".into(), Value::Object(model.evaluate(&view, &services)?));
    all.insert("custom".into(), Value::Object(model.custom_metrics(&view.targets, &output.view())?));
    let metrics = Value::Object(all);
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
