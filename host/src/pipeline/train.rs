//! The train stage: the model plugin fits the training split (validation beside it), reporting
//! per-epoch metrics through its services; its saved files, checkpoint and history are hashed
//! into the record. With `--model-from` a saved model is loaded instead; an earlier run's
//! training with the same key is reused (its files copied and checked).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use plugin_sdk::ClassKind;
use plugin_sdk::host::ModelHandle;
use record::{ArtifactKind, StageName};
use serde_json::json;

use super::reuse;
use super::{Run, StageError, Staged, outputs};
use crate::data::Prepared;

/// The trained model: live from training or loading, or `None` when training was reused (its
/// weights are then loaded by evaluation, if evaluation is not reused too); and the SHA-256 of
/// each file its `save` wrote, sorted (empty for a model loaded with `--model-from`).
pub struct Trained {
    pub model: Option<ModelHandle>,
    pub weights: Vec<String>,
}

/// The sorted digests of the model files the run recorded so far.
fn weights(run: &Run<'_>) -> Vec<String> {
    let mut weights: Vec<String> = run.record.files_of(&[Model]).map(|a| a.sha256.clone()).collect();
    weights.sort();
    weights
}

pub fn train(run: &mut Run<'_>, prepared: &Prepared) -> Result<Staged<Trained>, StageError> {
    if let Some(source) = run.request.model_from.clone() {
        let source = if source.join("model").is_dir() { source.join("model") } else { source };
        let mut model = run.take_model()?;
        model
            .load(&source)
            .map_err(anyhow::Error::new)
            .with_context(|| format!("loading the model from {}", source.display()))?;
        return Ok(Staged::computed(Trained { model: Some(model), weights: Vec::new() }, None));
    }
    let key = reuse::model_key(
        run,
        StageName::Train,
        json!({"train": prepared.train.digest, "validation": prepared.validation.digest}),
    )?;
    use ArtifactKind::*;
    let reused = reuse::reuse_stage(run, StageName::Train, &key, &[Model, Checkpoint, History], |run, earlier| {
        run.record.fit = Some(earlier.fit.clone().context("the earlier run recorded no training summary")?);
        run.record.history = earlier.history.clone();
        Ok(())
    });
    if let Some(from) = reused {
        return Ok(Staged::reused(Trained { model: None, weights: weights(run) }, key, from));
    }
    let model = fit(run, prepared)?;
    Ok(Staged::computed(Trained { model: Some(model), weights: weights(run) }, Some(key)))
}

/// Fits a new model and records its history, summary, saved files and checkpoint.
fn fit(run: &mut Run<'_>, prepared: &Prepared) -> Result<ModelHandle, StageError> {
    let class = run.required_class(ClassKind::Model)?;
    let mut model = run.take_model()?;
    let services = run.services(class, run.dir.clone());
    let validation = (prepared.validation.rows > 0).then(|| prepared.view(&prepared.validation));
    let fit = model.fit(&prepared.view(&prepared.train), validation.as_ref(), &services);
    services.finish();
    run.record.history = services.history();
    let history = run.dir.join("history.csv");
    outputs::write_history(&history, &run.record.history)?;
    run.artifact(History, &history)?;
    if let Some(lost) = services.store_lost() {
        return Err(StageError::Failed(anyhow!("{lost}")));
    }
    if let Some((name, step, value)) = services.divergence() {
        return Err(StageError::Failed(anyhow!(
            "{}: training diverged: {name} was {value} at step {step}; lower training.learning_rate or check the data",
            class.info.name
        )));
    }
    run.record.fit = Some(fit?);
    let model_dir = run.dir.join("model");
    std::fs::create_dir_all(&model_dir).with_context(|| format!("{}: cannot create", model_dir.display()))?;
    let saved = model.save(&model_dir)?;
    refuse_unlisted(&class.info.name, &model_dir, &saved)?;
    for file in saved {
        run.artifact(Model, &file)?;
    }
    let checkpoint = run.dir.join("checkpoints/best.safetensors");
    if checkpoint.is_file() {
        run.artifact(Checkpoint, &checkpoint)?;
    }
    Ok(model)
}

/// Refuses a file that `save` wrote into the model folder but did not return: it would be
/// missing from the record, from a reused model and from `--model-from`.
fn refuse_unlisted(class: &str, model_dir: &Path, saved: &[PathBuf]) -> anyhow::Result<()> {
    let listed: HashSet<PathBuf> = saved.iter().filter_map(|path| path.canonicalize().ok()).collect();
    let mut folders = vec![model_dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).with_context(|| format!("{}: cannot list", folder.display()))? {
            let path = entry?.path();
            let kind = std::fs::symlink_metadata(&path)?.file_type();
            if kind.is_dir() {
                folders.push(path);
            } else if !listed.contains(&path.canonicalize().unwrap_or_else(|_| path.clone())) {
                let name = path.strip_prefix(model_dir).unwrap_or(&path).display();
                anyhow::bail!(
                    "{class}: save wrote {name} in the model folder but did not return it; return every file save writes, or it is lost when the model is reused"
                );
            }
        }
    }
    Ok(())
}

use ArtifactKind::{Checkpoint, History, Model};
