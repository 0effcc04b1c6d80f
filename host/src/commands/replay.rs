//! `host replay RUN`: re-executes a recorded run — its recorded config, seed and thread count,
//! in its working folder, with the exact plugin library files it recorded — recomputing every
//! stage (no stage cache), then reports stage by stage whether the outputs are bit-identical.
//! A library whose SHA-256 changed since the run is refused before it is loaded, unless forced.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};
use plugin_sdk::ClassKind;
use serde::Serialize;
use serde_json::{Value, json};

use super::run::StoreOptions;
use crate::config::experiment::ExperimentConfig;
use crate::hashing::sha256_file;
use crate::output::{print_json, table};
use crate::pipeline::{RunRequest, RunStatus, execute};
use crate::registry::{ResolvedClass, resolve_recorded};

/// One stage's verdict.
#[derive(Debug, Serialize)]
pub struct StageComparison {
    pub stage: &'static str,
    /// `Some(true)` when every compared output is bit-identical; `None` when not compared.
    pub identical: Option<bool>,
    /// What was compared.
    pub compared: String,
    pub differences: Vec<String>,
}

/// The recorded plugin libraries, each checked against its recorded SHA-256 before loading.
pub fn recorded_classes(record: &Value, run_id: &str, force: bool) -> anyhow::Result<Vec<ResolvedClass>> {
    let plugins = record["plugins"].as_array().cloned().unwrap_or_default();
    let mut changed = Vec::new();
    for plugin in &plugins {
        let path = Path::new(plugin["library"].as_str().unwrap_or_default());
        let recorded = plugin["sha256"].as_str().unwrap_or_default();
        let class = plugin["class"].as_str().unwrap_or_default();
        match sha256_file(path) {
            Ok((sha256, _)) if sha256 == recorded => {}
            Ok((sha256, _)) => {
                changed.push(format!("{class}: {} has SHA-256 {sha256}, the run recorded {recorded}", path.display()))
            }
            Err(error) => changed.push(format!("{class}: {}: {error}", path.display())),
        }
    }
    if !changed.is_empty() {
        changed.dedup();
        if !force {
            bail!(
                "cannot replay run {run_id}: its plugin libraries are not the builds it used:\n  {}\n\
                 restore those builds, or pass --force to replay with the files as they are now (outputs may then differ)",
                changed.join("\n  ")
            );
        }
        for line in &changed {
            tracing::warn!("replaying with a different library: {line}");
        }
    }
    let mut classes = Vec::new();
    for plugin in &plugins {
        let kind = ClassKind::ALL
            .into_iter()
            .find(|k| plugin["kind"].as_str() == Some(k.name()))
            .with_context(|| format!("run {run_id} recorded an unknown plugin kind {}", plugin["kind"]))?;
        let path = Path::new(plugin["library"].as_str().unwrap_or_default());
        let class = plugin["class"].as_str().unwrap_or_default();
        classes.push(resolve_recorded(path, kind, class).map_err(anyhow::Error::msg)?);
    }
    Ok(classes)
}

/// Moves into the folder a recorded run ran in: its config's relative paths resolve there.
pub fn enter_working_dir(record: &Value, run_id: &str) -> anyhow::Result<PathBuf> {
    let working_dir = PathBuf::from(record["working_dir"].as_str().unwrap_or("."));
    std::env::set_current_dir(&working_dir).with_context(|| {
        format!(
            "{}: cannot enter the folder run {run_id} ran in (its config's relative paths need it)",
            working_dir.display()
        )
    })?;
    Ok(working_dir)
}

/// A recorded run's experiment from `config` (its recorded config, possibly edited), checked
/// against `classes`, with the thread count the run resolved (0 means every core, which differs
/// between machines).
pub fn recorded_experiment(
    record: &Value,
    config: &Value,
    classes: &[ResolvedClass],
) -> anyhow::Result<ExperimentConfig> {
    let run_id = record["run_id"].as_str().unwrap_or_default();
    let config_file = PathBuf::from(record["config_file"].as_str().unwrap_or_default());
    let mut experiment = ExperimentConfig::from_value(&config_file, config, |kind, class| {
        classes
            .iter()
            .find(|c| c.info.kind == kind && c.info.name == class)
            .map(|c| c.info.clone())
            .ok_or_else(|| format!("run {run_id} recorded no library for {kind} {class}"))
    })
    .with_context(|| format!("the config recorded by run {run_id}"))?;
    if let Some(threads) = record["threads"].as_u64() {
        experiment.threads = threads as usize;
    }
    Ok(experiment)
}

/// Outputs by a name stable across runs: artifacts by their path inside the run folder.
fn artifacts(record: &Value, kinds: &[&str]) -> Value {
    let dir = PathBuf::from(record["output_dir"].as_str().unwrap_or_default());
    record["artifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| kinds.contains(&a["kind"].as_str().unwrap_or_default()))
        .map(|a| {
            let path = PathBuf::from(a["path"].as_str().unwrap_or_default());
            let name = path.strip_prefix(&dir).unwrap_or(&path).display().to_string();
            (name, a["sha256"].clone())
        })
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

/// Per-epoch metrics without timings (`*seconds`), which no two runs share.
fn history_without_timings(record: &Value) -> Value {
    let mut history = record["history"].clone();
    if let Some(epochs) = history.as_object_mut() {
        for values in epochs.values_mut() {
            if let Some(values) = values.as_object_mut() {
                values.retain(|name, _| !name.ends_with("seconds"));
            }
        }
    }
    history
}

/// Lists where two values differ, as `what.path: recorded X, replay Y`, leaf by leaf.
fn differences(what: &str, original: &Value, replay: &Value, out: &mut Vec<String>) {
    match (original, replay) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let (x, y) = (a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null));
                differences(&format!("{what}.{key}"), x, y, out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{what}[{index}]"), x, y, out);
            }
        }
        (a, b) if a != b => out.push(format!("{what}: recorded {a}, replay {b}")),
        _ => {}
    }
}

fn stage_ran(record: &Value, stage: &str) -> bool {
    record["stages"].as_array().into_iter().flatten().any(|s| s["name"] == stage && s["status"] == "completed")
}

/// Compares the outputs of two records of one config, stage by stage.
pub fn compare(original: &Value, replay: &Value) -> Vec<StageComparison> {
    let mut stages = Vec::new();
    let mut push = |stage: &'static str, compared: String, differences: Vec<String>| {
        let ran = stage_ran(original, stage) || stage_ran(replay, stage);
        stages.push(StageComparison { stage, identical: ran.then_some(differences.is_empty()), compared, differences });
    };

    let sources = |r: &Value| -> Value {
        r["source_files"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| (f["kind"].as_str().unwrap_or_default().to_owned(), f["sha256"].clone()))
            .collect()
    };
    let mut found = Vec::new();
    differences("raw files", &sources(original), &sources(replay), &mut found);
    differences("dataset digest", &original["data"]["dataset_sha256"], &replay["data"]["dataset_sha256"], &mut found);
    let raw_files = sources(original).as_object().map_or(0, |s| s.len());
    push("load", format!("{raw_files} raw files and the dataset digest"), found);

    let mut found = Vec::new();
    differences("splits", &original["data"]["splits"], &replay["data"]["splits"], &mut found);
    let outputs = |r: &Value| -> Value {
        r["data"]["transforms"].as_array().into_iter().flatten().map(|t| t["outputs"].clone()).collect()
    };
    differences("transform outputs", &outputs(original), &outputs(replay), &mut found);
    let splits = original["data"]["splits"].as_object().map_or(0, |s| s.len());
    push("prepare", format!("{splits} split digests and every transform's outputs"), found);

    let mut found = Vec::new();
    let weights = ["model", "checkpoint"];
    differences("weights", &artifacts(original, &weights), &artifacts(replay, &weights), &mut found);
    differences("per-epoch metrics", &history_without_timings(original), &history_without_timings(replay), &mut found);
    let fit = |r: &Value| json!([r["fit"]["epochs_completed"], r["fit"]["best_epoch"], r["fit"]["stopped_early"]]);
    differences("epochs, best epoch, early stop", &fit(original), &fit(replay), &mut found);
    push(
        "train",
        format!(
            "{} weight files, per-epoch metrics (timings excluded), the early-stopping point",
            artifacts(original, &weights).as_object().map_or(0, |a| a.len())
        ),
        found,
    );

    let mut found = Vec::new();
    let outputs = ["metrics", "predictions"];
    differences("files", &artifacts(original, &outputs), &artifacts(replay, &outputs), &mut found);
    let files: Vec<String> =
        artifacts(original, &outputs).as_object().into_iter().flatten().map(|(k, _)| k.clone()).collect();
    push("evaluate", files.join(", "), found);

    if stage_ran(original, "report") || stage_ran(replay, "report") {
        stages.push(StageComparison {
            stage: "report",
            identical: None,
            compared: "not compared: reports name their run, its times and durations".into(),
            differences: Vec::new(),
        });
    }
    stages
}

pub struct ReplayOptions {
    pub store: StoreOptions,
    pub run: String,
    pub force: bool,
    pub json: bool,
    pub show_progress: bool,
}

pub fn replay(options: ReplayOptions) -> anyhow::Result<u8> {
    let store = RefCell::new(options.store.open()?);
    let run_id = &options.run;
    let original = store.borrow().run_record(run_id)?;
    if original["stages"].as_array().is_none_or(|s| s.is_empty()) {
        bail!("run {run_id} recorded no stages; there is nothing to replay");
    }
    let classes = recorded_classes(&original, run_id, options.force)?;
    let working_dir = enter_working_dir(&original, run_id)?;
    let experiment = recorded_experiment(&original, &original["config"], &classes)?;
    let output_dir = PathBuf::from(original["output_dir"].as_str().unwrap_or_default());
    let request = RunRequest {
        experiment: &experiment,
        classes: &classes,
        output_root: output_dir.parent().map(Path::to_owned).unwrap_or_else(|| experiment.output_dir.clone()),
        model_from: original["model_from"].as_str().map(PathBuf::from),
        show_progress: options.show_progress && !options.json,
        stop: Arc::new(AtomicBool::new(false)),
        store: Some(&store),
        git: crate::store::git_state(&working_dir),
        reuse: false,
        replay_of: Some(run_id.clone()),
    };
    let summary = execute(&request)?;
    let replayed = serde_json::to_value(&summary)?;
    let stages = compare(&original, &replayed);
    let identical = summary.status == RunStatus::Completed && stages.iter().all(|s| s.identical != Some(false));
    if options.json {
        print_json(&json!({
            "original": run_id,
            "replay": summary.run_id,
            "status": summary.status,
            "error": summary.error,
            "identical": identical,
            "stages": stages,
        }))?;
    } else {
        println!("replayed run {run_id} as run {} ({})", summary.run_id, summary.output_dir.display());
        let rows: Vec<Vec<String>> = stages
            .iter()
            .map(|s| {
                let verdict = match s.identical {
                    Some(true) => "identical",
                    Some(false) => "DIFFERS",
                    None => "-",
                };
                vec![s.stage.into(), verdict.into(), s.compared.clone()]
            })
            .collect();
        println!("{}", table(&["STAGE", "OUTPUTS", "COMPARED"], &rows));
        for stage in &stages {
            for difference in stage.differences.iter().take(10) {
                println!("{}: {difference}", stage.stage);
            }
            if stage.differences.len() > 10 {
                println!("{}: ... {} more differences (--json lists all)", stage.stage, stage.differences.len() - 10);
            }
        }
        match (&summary.status, identical) {
            (RunStatus::Completed, true) => println!("every compared output is bit-identical"),
            (RunStatus::Completed, false) => println!("the replay's outputs differ from the recorded ones"),
            (status, _) => println!(
                "the replay ended {}: {}",
                format!("{status:?}").to_lowercase(),
                summary.error.as_deref().unwrap_or("")
            ),
        }
    }
    Ok(if identical { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(weights: &str, loss: f64) -> Value {
        json!({
            "output_dir": "/runs/a",
            "source_files": [{"kind": "train-images", "sha256": "aa"}],
            "data": {"dataset_sha256": "dd", "splits": {"train": {"rows": 5, "sha256": "ss"}}, "transforms": []},
            "stages": [{"name": "load", "status": "completed"}, {"name": "train", "status": "completed"},
                       {"name": "evaluate", "status": "completed"}, {"name": "report", "status": "completed"}],
            "artifacts": [{"kind": "model", "path": "/runs/a/model/w.safetensors", "sha256": weights},
                          {"kind": "metrics", "path": "/runs/a/metrics.json", "sha256": "mm"}],
            "history": {"1": {"loss": loss, "epoch_seconds": 1.5}},
            "fit": {"epochs_completed": 1, "best_epoch": null, "stopped_early": false},
        })
    }

    #[test]
    fn identical_outputs_compare_identical_whatever_the_timings_and_folders() {
        let original = record("ww", 0.5);
        let mut replay = record("ww", 0.5);
        replay["output_dir"] = json!("/runs/b");
        replay["artifacts"][0]["path"] = json!("/runs/b/model/w.safetensors");
        replay["artifacts"][1]["path"] = json!("/runs/b/metrics.json");
        replay["history"]["1"]["epoch_seconds"] = json!(9.0);
        let stages = compare(&original, &replay);
        let verdicts: Vec<(&str, Option<bool>)> = stages.iter().map(|s| (s.stage, s.identical)).collect();
        assert_eq!(
            verdicts,
            [
                ("load", Some(true)),
                ("prepare", None),
                ("train", Some(true)),
                ("evaluate", Some(true)),
                ("report", None)
            ]
        );
    }

    #[test]
    fn a_changed_weight_or_metric_is_named() {
        let stages = compare(&record("ww", 0.5), &record("xx", 0.25));
        let train = stages.iter().find(|s| s.stage == "train").unwrap();
        assert_eq!(train.identical, Some(false));
        assert_eq!(
            train.differences,
            [
                "weights.model/w.safetensors: recorded \"ww\", replay \"xx\"",
                "per-epoch metrics.1.loss: recorded 0.5, replay 0.25"
            ]
        );
    }
}
