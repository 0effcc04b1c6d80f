//! `host replay RUN`: re-executes a recorded run — its recorded config, seed and thread count,
//! in its working folder, with the exact plugin library files it recorded — recomputing every
//! stage (no stage cache), then reports stage by stage whether the outputs are bit-identical.
//! A library whose SHA-256 changed since the run is refused before it is loaded, unless forced.
//! Where the machine differs from the recorded one in what numbers depend on (CPU, topology,
//! instruction sets), it says so before comparing.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::bail;
use record::{ArtifactKind, RunRecord, RunStatus, StageName};
use serde::Serialize;
use serde_json::{Value, json};

use crate::output::{print_json, table};
use crate::pipeline::{RunRequest, execute};
use crate::recorded::{enter_working_dir, recorded_classes, recorded_experiment};
use crate::storage::StoreOptions;

/// One stage's verdict.
#[derive(Debug, Serialize)]
pub struct StageComparison {
    pub stage: StageName,
    /// `Some(true)` when every compared output is bit-identical; `None` when not compared.
    pub identical: Option<bool>,
    /// What was compared.
    pub compared: String,
    pub differences: Vec<String>,
}

/// Outputs by a name stable across runs: artifacts by their path inside the run folder.
fn artifacts(record: &RunRecord, kinds: &[ArtifactKind]) -> Value {
    record
        .files_of(kinds)
        .map(|a| {
            let name = a.path.strip_prefix(&record.output_dir).unwrap_or(&a.path).display().to_string();
            (name, json!(a.sha256))
        })
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

/// Per-epoch metrics without timings (`*seconds`), which no two runs share.
fn history_without_timings(record: &RunRecord) -> Value {
    let history: BTreeMap<String, BTreeMap<&String, f64>> = record
        .history
        .iter()
        .map(|(epoch, values)| {
            (
                epoch.to_string(),
                values.iter().filter(|(name, _)| !name.ends_with("seconds")).map(|(n, v)| (n, *v)).collect(),
            )
        })
        .collect();
    json!(history)
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

/// Compares the outputs of two records of one config, stage by stage.
pub fn compare(original: &RunRecord, replay: &RunRecord) -> Vec<StageComparison> {
    let mut stages = Vec::new();
    let mut push = |stage: StageName, compared: String, differences: Vec<String>| {
        let ran = original.stage_completed(stage) || replay.stage_completed(stage);
        stages.push(StageComparison { stage, identical: ran.then_some(differences.is_empty()), compared, differences });
    };

    let sources = |r: &RunRecord| -> Value {
        r.source_files.iter().map(|f| (f.kind.to_string(), json!(f.sha256))).collect::<serde_json::Map<_, _>>().into()
    };
    // A record of an earlier host digested the loaded bytes another way: its dataset digest and
    // the split digests derived from it name the same data differently.
    let digests_comparable = original.data.digest_scheme == replay.data.digest_scheme;
    let mut found = Vec::new();
    differences("raw files", &sources(original), &sources(replay), &mut found);
    let compared = if digests_comparable {
        differences(
            "dataset digest",
            &json!(original.data.dataset_sha256),
            &json!(replay.data.dataset_sha256),
            &mut found,
        );
        format!("{} raw files and the dataset digest", original.source_files.len())
    } else {
        format!("{} raw files (the dataset digest was made by an earlier host's scheme)", original.source_files.len())
    };
    push(StageName::Load, compared, found);

    let mut found = Vec::new();
    if digests_comparable {
        differences("splits", &json!(original.data.splits), &json!(replay.data.splits), &mut found);
        let outputs =
            |r: &RunRecord| -> Value { json!(r.data.transforms.iter().map(|t| &t.outputs).collect::<Vec<_>>()) };
        differences("transform outputs", &outputs(original), &outputs(replay), &mut found);
        push(
            StageName::Prepare,
            format!("{} split digests and every transform's outputs", original.data.splits.len()),
            found,
        );
    } else {
        let rows = |r: &RunRecord| -> Value {
            r.data.splits.iter().map(|(name, split)| (name.clone(), json!(split.rows))).collect()
        };
        differences("split rows", &rows(original), &rows(replay), &mut found);
        push(
            StageName::Prepare,
            format!("{} split sizes (its split digests derive from the earlier scheme's)", original.data.splits.len()),
            found,
        );
    }

    let mut found = Vec::new();
    let weights = [ArtifactKind::Model, ArtifactKind::Checkpoint];
    differences("weights", &artifacts(original, &weights), &artifacts(replay, &weights), &mut found);
    differences("per-epoch metrics", &history_without_timings(original), &history_without_timings(replay), &mut found);
    let fit = |r: &RunRecord| match &r.fit {
        Some(fit) => json!([fit.epochs_completed, fit.best_epoch, fit.stopped_early]),
        None => json!([null, null, null]),
    };
    differences("epochs, best epoch, early stop", &fit(original), &fit(replay), &mut found);
    push(
        StageName::Train,
        format!(
            "{} weight files, per-epoch metrics (timings excluded), the early-stopping point",
            original.files_of(&weights).count()
        ),
        found,
    );

    let mut found = Vec::new();
    let outputs = [ArtifactKind::Metrics, ArtifactKind::Predictions];
    differences("files", &artifacts(original, &outputs), &artifacts(replay, &outputs), &mut found);
    let files: Vec<String> =
        artifacts(original, &outputs).as_object().into_iter().flatten().map(|(k, _)| k.clone()).collect();
    push(StageName::Evaluate, files.join(", "), found);

    if original.stage_completed(StageName::Report) || replay.stage_completed(StageName::Report) {
        stages.push(StageComparison {
            stage: StageName::Report,
            identical: None,
            compared: "not compared: reports name their run, its times and durations".into(),
            differences: Vec::new(),
        });
    }
    stages
}

/// The comparison for people: a row per stage, the differences (ten per stage), the verdict.
fn print_comparison(
    run_id: &str,
    replayed: &RunRecord,
    stages: &[StageComparison],
    identical: bool,
    machine: &[String],
) {
    println!("replayed run {run_id} as run {} ({})", replayed.run_id, replayed.output_dir.display());
    let rows: Vec<Vec<String>> = stages
        .iter()
        .map(|s| {
            let verdict = match s.identical {
                Some(true) => "identical",
                Some(false) => "DIFFERS",
                None => "-",
            };
            vec![s.stage.to_string(), verdict.into(), s.compared.clone()]
        })
        .collect();
    println!("{}", table(&["STAGE", "OUTPUTS", "COMPARED"], &rows));
    for stage in stages {
        for difference in stage.differences.iter().take(10) {
            println!("{}: {difference}", stage.stage);
        }
        if stage.differences.len() > 10 {
            println!("{}: ... {} more differences (--json lists all)", stage.stage, stage.differences.len() - 10);
        }
    }
    match (replayed.status, identical) {
        (RunStatus::Completed, true) => println!("every compared output is bit-identical"),
        (RunStatus::Completed, false) if !machine.is_empty() => println!(
            "the replay's outputs differ from the recorded ones; this machine's {} differ(s) from the recorded one's (above)",
            machine.iter().map(|m| m.split(':').next().unwrap_or_default()).collect::<Vec<_>>().join(", ")
        ),
        (RunStatus::Completed, false) => println!("the replay's outputs differ from the recorded ones"),
        (status, _) => println!("the replay ended {status}: {}", replayed.error.as_deref().unwrap_or("")),
    }
}

pub struct ReplayOptions {
    pub store: StoreOptions,
    pub run: String,
    pub force: bool,
    pub allow_untrusted: bool,
    pub json: bool,
    pub show_progress: bool,
}

pub fn replay(options: ReplayOptions) -> anyhow::Result<u8> {
    // The replay runs in the recorded run's folder, where its writer and heartbeat open the store.
    let settings = options.store.settings()?.anchored_here();
    let store = crate::storage::open(&settings)?;
    let run_id = &options.run;
    let original = store.run_record(run_id)?;
    if original.stages.is_empty() {
        bail!("run {run_id} recorded no stages; there is nothing to replay");
    }
    let classes = recorded_classes(&original, options.force, options.allow_untrusted)?;
    let working_dir = enter_working_dir(&original)?;
    let experiment = recorded_experiment(&original, &original.config, &classes)?;
    // Said before the outputs are compared: what may explain a difference.
    let machine =
        crate::environment::differences(&original.environment, &crate::environment::capture(original.threads));
    if !machine.is_empty() && !options.json {
        eprintln!(
            "this machine differs from the one run {run_id} ran on; numeric kernels may differ with these, so outputs may too:"
        );
        for line in &machine {
            eprintln!("  {line}");
        }
    }
    let request = RunRequest {
        experiment: &experiment,
        classes: &classes,
        output_root: original.output_dir.parent().map(Path::to_owned).unwrap_or_else(|| experiment.output_dir.clone()),
        model_from: original.model_from.clone(),
        show_progress: options.show_progress && !options.json,
        stop: crate::interrupt::Stop::new(),
        store: Some(&*store),
        settings: Some(&settings),
        git: crate::environment::git_state(&working_dir),
        reuse: false,
        replay_of: Some(run_id.clone()),
        trial: None,
        run_id: None,
    };
    let replayed = execute(&request)?;
    let stages = compare(&original, &replayed);
    let identical = replayed.status == RunStatus::Completed && stages.iter().all(|s| s.identical != Some(false));
    if options.json {
        print_json(&json!({
            "original": run_id,
            "replay": replayed.run_id,
            "status": replayed.status,
            "error": replayed.error,
            "identical": identical,
            "machine_differences": machine,
            "stages": stages,
        }))?;
    } else {
        print_comparison(run_id, &replayed, &stages, identical, &machine);
    }
    Ok(if identical { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn record(weights: &str, loss: f64) -> RunRecord {
        serde_json::from_value(json!({
            "run_id": "a", "experiment_name": "e", "status": "completed", "config_file": "c.yaml",
            "config_sha256": "cc", "seed": 1, "threads": 1, "started_at": "2026-01-01T00:00:00Z",
            "output_dir": "/runs/a",
            "source_files": [{"kind": "train-images", "path": "/d/a", "sha256": "aa", "size": 1}],
            "data": {"dataset_sha256": "dd", "splits": {"train": {"rows": 5, "sha256": "ss"}}, "transforms": []},
            "stages": [{"name": "load", "status": "completed", "seconds": 0.0},
                       {"name": "train", "status": "completed", "seconds": 0.0},
                       {"name": "evaluate", "status": "completed", "seconds": 0.0},
                       {"name": "report", "status": "completed", "seconds": 0.0}],
            "artifacts": [{"kind": "model", "path": "/runs/a/model/w.safetensors", "sha256": weights, "size": 1},
                          {"kind": "metrics", "path": "/runs/a/metrics.json", "sha256": "mm", "size": 1}],
            "history": {"1": {"loss": loss, "epoch_seconds": 1.5}},
            "fit": {"epochs_completed": 1, "best_epoch": null, "stopped_early": false, "device": "cpu"},
        }))
        .unwrap()
    }

    #[test]
    fn identical_outputs_compare_identical_whatever_the_timings_and_folders() {
        let original = record("ww", 0.5);
        let mut replay = record("ww", 0.5);
        replay.output_dir = PathBuf::from("/runs/b");
        replay.artifacts[0].path = PathBuf::from("/runs/b/model/w.safetensors");
        replay.artifacts[1].path = PathBuf::from("/runs/b/metrics.json");
        replay.history.get_mut(&1).unwrap().insert("epoch_seconds".into(), 9.0);
        let stages = compare(&original, &replay);
        let verdicts: Vec<(StageName, Option<bool>)> = stages.iter().map(|s| (s.stage, s.identical)).collect();
        assert_eq!(
            verdicts,
            [
                (StageName::Load, Some(true)),
                (StageName::Prepare, None),
                (StageName::Train, Some(true)),
                (StageName::Evaluate, Some(true)),
                (StageName::Report, None)
            ]
        );
    }

    #[test]
    fn a_changed_weight_or_metric_is_named() {
        let stages = compare(&record("ww", 0.5), &record("xx", 0.25));
        let train = stages.iter().find(|s| s.stage == StageName::Train).unwrap();
        assert_eq!(train.identical, Some(false));
        assert_eq!(
            train.differences,
            [
                "weights.model/w.safetensors: recorded \"ww\", replay \"xx\"",
                "per-epoch metrics.1.loss: recorded 0.5, replay 0.25"
            ]
        );
    }

    #[test]
    fn a_record_of_an_earlier_digest_scheme_compares_its_raw_files_and_split_sizes_instead() {
        let original = record("ww", 0.5);
        let mut replay = record("ww", 0.5);
        replay.data.digest_scheme = "xxh3-128".into();
        replay.data.dataset_sha256 = "other".into();
        replay.data.splits.get_mut("train").unwrap().sha256 = "other".into();
        let stages = compare(&original, &replay);
        assert!(stages.iter().all(|s| s.identical != Some(false)), "{stages:?}");
        assert!(stages[0].compared.contains("earlier host's scheme"), "{stages:?}");
        replay.data.splits.get_mut("train").unwrap().rows = 6;
        let prepare = compare(&original, &replay).into_iter().find(|s| s.stage == StageName::Prepare).unwrap();
        assert_eq!(prepare.differences, ["split rows.train: recorded 5, replay 6"]);
    }
}
