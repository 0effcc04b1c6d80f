//! `host export --format mlflow --to URI`: runs copied into MLflow, to a tracking server over its
//! REST API or into an MLflow SQLite store ([`store::mlflow::MlflowSqlite`]).
//!
//! Each run becomes an MLflow run in the experiment of its `experiment_name` (or `--experiment`):
//! parameters are the config's dotted keys, per-epoch metrics are logged at step = epoch and final
//! metrics at step 0, the data set and its splits are logged inputs carrying their SHA-256, the
//! run's files are artifacts under `files/` beside the whole record (`host/run.json`), and tags
//! name the host run, its plugin builds and its verification state. A sweep's trials are child
//! runs (`mlflow.parentRunId`) of one run standing for the sweep.
//!
//! Exporting again creates nothing twice: a run is found by its `host.run_id` tag (a sweep by
//! `host.sweep_id`), and only what may change since (verification, tags, notes) is written. A run
//! whose export was cut short (no `host.export = complete` tag) is deleted and exported anew.
//! Runs still running are skipped.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Value, json};

use plugin_sdk::ClassKind;
use record::{RunRecord, RunStatus};
use store::Store;
use store::mlflow::{Dataset, ExistingRun, Metric, MlflowSqlite, NewRun, Tracking};

use crate::output::print_json;
use crate::storage::StoreOptions;

/// MLflow's limits, in characters, on a parameter's and a tag's value (longer values are cut,
/// with a note) and on any key.
const PARAM_VALUE_LIMIT: usize = 6000;
const TAG_VALUE_LIMIT: usize = 8000;
const KEY_LIMIT: usize = 250;

/// Whether MLflow takes `key` as a metric, parameter or tag name: letters, digits, `_ - . : /`
/// and spaces, at most 250 characters, and no `..` segment or leading `/` (it names a path).
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.chars().count() <= KEY_LIMIT
        && key.chars().all(|c| c.is_alphanumeric() || "_-. :/".contains(c))
        && !key.starts_with('/')
        && !key.split('/').any(|segment| segment == "..")
}

/// `value` cut to `limit` characters, ending in `...` when cut.
fn cut(value: &str, limit: usize) -> String {
    if value.chars().count() <= limit {
        return value.to_owned();
    }
    value.chars().take(limit - 3).chain("...".chars()).collect()
}
/// The tag that says a run's export finished.
const COMPLETE: &str = "host.export";

/// What to export and where.
pub struct ExportOptions<'a> {
    pub run: Option<&'a str>,
    pub filter: Option<&'a str>,
    pub to: &'a str,
    pub experiment: Option<&'a str>,
    pub json: bool,
    pub show_progress: bool,
}

/// What happened to one run.
#[derive(Debug, Serialize)]
pub struct Exported {
    pub run_id: String,
    /// `exported`, `exported again` (an earlier export was cut short), `updated` (tags brought
    /// up to date), `unchanged` or `skipped`.
    pub outcome: &'static str,
    pub mlflow_run_id: Option<String>,
    pub experiment_id: Option<String>,
    pub parent_run_id: Option<String>,
    pub files: usize,
    /// Files not exported, and why.
    pub files_left_out: Vec<String>,
    /// Parameters and metrics left out or cut, and why.
    pub left_out: Vec<String>,
    /// Why a run was skipped.
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
struct Summary {
    target: String,
    experiments: BTreeMap<String, String>,
    sweeps: BTreeMap<String, String>,
    runs: Vec<Exported>,
    /// MLflow runs deleted as second copies of a host run (made by exports running at once).
    duplicates_removed: usize,
}

/// The MLflow target named by `--to`: `http(s)://` a tracking server, `sqlite:///PATH` (relative)
/// or `sqlite:////PATH` (absolute) an MLflow SQLite store, as MLflow itself spells them.
pub fn open_target(uri: &str) -> anyhow::Result<Box<dyn Tracking>> {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return Ok(Box::new(Rest::new(uri)));
    }
    if let Some(rest) = uri.strip_prefix("sqlite://") {
        let path = rest.strip_prefix('/').filter(|p| !p.is_empty()).with_context(|| {
            format!("--to {uri}: an MLflow SQLite store is sqlite:///relative/path.db or sqlite:////absolute/path.db")
        })?;
        return Ok(Box::new(MlflowSqlite::open(Path::new(path))?));
    }
    bail!(
        "--to {uri}: give an MLflow tracking server's URL (http://127.0.0.1:5000) or an MLflow SQLite store \
         (sqlite:///mlflow.db); MLFLOW_TRACKING_URI is used when --to is left out"
    )
}

pub fn export(store: &StoreOptions, options: &ExportOptions) -> anyhow::Result<()> {
    let store = store.open_read()?;
    let run_ids: Vec<String> = match (options.run, options.filter) {
        (Some(run), None) => vec![store.run_record(run)?.run_id],
        (None, Some(filter)) => {
            let filter = store::query::parse_filter(filter).map_err(|e| anyhow::anyhow!("--filter: {e}"))?;
            let query = store::RunQuery { filter: Some(filter), ..Default::default() };
            // Oldest first, so a sweep's parent is made by its first trial.
            store.query_runs(&query)?.rows.into_iter().rev().map(|(id, _)| id).collect()
        }
        (Some(_), Some(_)) => bail!("give a run id or --filter, not both"),
        (None, None) => bail!(
            "name the runs to export: a run id, or --filter (`--filter \"experiment = 'mnist'\"`, `--filter \
             \"status = 'completed'\"` for every finished run)"
        ),
    };
    let mut target = open_target(options.to)?;
    let mut exporter = Exporter {
        store: &*store,
        target: &mut *target,
        experiment_override: options.experiment,
        experiments: HashMap::new(),
        parents: BTreeMap::new(),
        duplicates_removed: 0,
    };
    let bar =
        (options.show_progress && !options.json && std::io::stderr().is_terminal() && run_ids.len() > 1).then(|| {
            let bar = ProgressBar::new(run_ids.len() as u64);
            bar.set_style(
                ProgressStyle::with_template("{spinner} exporting runs [{bar:30}] {pos}/{len} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        });
    let mut runs = Vec::new();
    for run_id in &run_ids {
        let exported = exporter.run(run_id).with_context(|| format!("run {run_id}: cannot export it"))?;
        if let Some(bar) = &bar {
            bar.inc(1);
        }
        runs.push(exported);
    }
    exporter.end_parents()?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = Summary {
        target: exporter.target.describe(),
        experiments: exporter.experiments.iter().map(|(name, (id, _))| (name.clone(), id.clone())).collect(),
        sweeps: exporter.parents.clone(),
        runs,
        duplicates_removed: exporter.duplicates_removed,
    };
    if options.json {
        return print_json(&summary);
    }
    for run in &summary.runs {
        let mut line = format!("{}: {}", run.run_id, run.outcome);
        if let Some(id) = &run.mlflow_run_id {
            line += &format!(" as MLflow run {id}");
        }
        if let Some(note) = &run.note {
            line += &format!(" ({note})");
        }
        println!("{line}");
        for left_out in &run.files_left_out {
            println!("  file not exported: {left_out}");
        }
        for left_out in &run.left_out {
            println!("  {left_out}");
        }
    }
    if summary.duplicates_removed > 0 {
        println!("{} second copies of runs (from exports running at once) deleted", summary.duplicates_removed);
    }
    let count = |outcome: &str| summary.runs.iter().filter(|r| r.outcome == outcome).count();
    println!(
        "{} exported, {} already there ({} brought up to date), {} skipped, to {}",
        count("exported") + count("exported again"),
        count("updated") + count("unchanged"),
        count("updated"),
        count("skipped"),
        summary.target
    );
    Ok(())
}

/// Runs already in an MLflow experiment, by the host run or sweep they stand for.
#[derive(Default)]
struct Existing {
    runs: HashMap<String, ExistingRun>,
    sweeps: HashMap<String, ExistingRun>,
}

struct Exporter<'a> {
    store: &'a dyn Store,
    target: &'a mut dyn Tracking,
    experiment_override: Option<&'a str>,
    experiments: HashMap<String, (String, Existing)>,
    /// Each sweep's MLflow run.
    parents: BTreeMap<String, String>,
    /// MLflow runs deleted as second copies of one host run.
    duplicates_removed: usize,
}

fn milliseconds(time: &str) -> i64 {
    record::parse_rfc3339(time).map_or(0, |s| (s * 1000.0).round() as i64)
}

fn kind_name(kind: ClassKind) -> &'static str {
    match kind {
        ClassKind::Loader => "loader",
        ClassKind::Model => "model",
        ClassKind::ReportGenerator => "report",
    }
}

fn mlflow_status(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Completed => "FINISHED",
        RunStatus::Failed => "FAILED",
        RunStatus::Running => "RUNNING",
        RunStatus::Cancelled | RunStatus::Interrupted => "KILLED",
    }
}

/// A parameter's value as MLflow shows it: text as it is, anything else as JSON.
fn param_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

impl Exporter<'_> {
    fn experiment(&mut self, name: &str) -> anyhow::Result<String> {
        if let Some((id, _)) = self.experiments.get(name) {
            return Ok(id.clone());
        }
        let id = self.target.experiment(name)?;
        let mut existing = Existing::default();
        let complete = |run: &ExistingRun| run.tags.get(COMPLETE).is_some_and(|v| v == "complete");
        for run in self.target.runs(&id)? {
            if let Some(host_run) = run.tags.get("host.run_id").cloned() {
                // Two exports at once may both have made one: a complete one is kept, the
                // other deleted, so the experiment converges to one MLflow run per host run.
                let keep = match existing.runs.remove(&host_run) {
                    Some(other) => {
                        let (keep, extra) =
                            if complete(&other) || !complete(&run) { (other, run) } else { (run, other) };
                        self.target.delete_run(&extra.run_id)?;
                        self.duplicates_removed += 1;
                        keep
                    }
                    None => run,
                };
                existing.runs.insert(host_run, keep);
            } else if let Some(sweep) =
                run.tags.get("host.sweep_id").filter(|_| run.tags.get("host.kind").is_some_and(|k| k == "sweep"))
            {
                existing.sweeps.insert(sweep.clone(), run);
            }
        }
        self.experiments.insert(name.to_owned(), (id.clone(), existing));
        Ok(id)
    }

    /// The tags that may change after a run ended: its verification, its tags and notes.
    fn changing_tags(&self, run_id: &str) -> anyhow::Result<Vec<(String, String)>> {
        let mut tags = Vec::new();
        let verification = self.store.verifications(run_id)?.into_iter().last();
        tags.push((
            "host.verified".to_owned(),
            match &verification {
                Some(v) if v.ok => "passed".to_owned(),
                Some(_) => "failed".to_owned(),
                None => "never".to_owned(),
            },
        ));
        if let Some(v) = verification {
            tags.push(("host.verified_at".to_owned(), v.checked_at));
        }
        let annotations = self.store.annotations(run_id)?;
        for (key, value) in store::current_tags(&annotations) {
            // The user's own tags keep their names, unless they would pass for MLflow's or ours.
            let key = if key.starts_with("mlflow.") || key.starts_with("host.") { format!("user.{key}") } else { key };
            if valid_key(&key) {
                tags.push((key, cut(&value, TAG_VALUE_LIMIT)));
            }
        }
        let notes: Vec<&str> = annotations
            .iter()
            .filter(|a| a.kind == store::AnnotationKind::Note)
            .filter_map(|a| a.value.as_deref())
            .collect();
        if !notes.is_empty() {
            tags.push(("mlflow.note.content".to_owned(), cut(&notes.join("\n\n"), TAG_VALUE_LIMIT)));
        }
        Ok(tags)
    }

    fn run(&mut self, run_id: &str) -> anyhow::Result<Exported> {
        let record = self.store.run_record(run_id)?;
        let mut exported = Exported {
            run_id: record.run_id.clone(),
            outcome: "skipped",
            mlflow_run_id: None,
            experiment_id: None,
            parent_run_id: None,
            files: 0,
            files_left_out: Vec::new(),
            left_out: Vec::new(),
            note: None,
        };
        if record.status == RunStatus::Running {
            exported.note = Some("still running; export it once it ends".to_owned());
            return Ok(exported);
        }
        let name = self.experiment_override.unwrap_or(&record.experiment_name).to_owned();
        let experiment = self.experiment(&name)?;
        exported.experiment_id = Some(experiment.clone());
        let end = record.finished_at.as_deref().map_or_else(|| milliseconds(&record.started_at), milliseconds);
        if let Some(trial) = &record.trial {
            exported.parent_run_id = Some(self.parent(&trial.sweep_id, &name, &experiment)?);
        }
        let changing = self.changing_tags(run_id)?;
        let earlier = self.experiments.get_mut(&name).and_then(|(_, existing)| existing.runs.remove(run_id));
        if let Some(earlier) = earlier {
            if earlier.tags.get(COMPLETE).is_some_and(|v| v == "complete") {
                // The user's tags removed since: every tag that is neither MLflow's nor ours and
                // not current any more.
                let removed: Vec<&String> = earlier
                    .tags
                    .keys()
                    .filter(|k| !k.starts_with("mlflow.") && !k.starts_with("host."))
                    .filter(|k| !changing.iter().any(|(current, _)| current == *k))
                    .collect();
                let changed: Vec<(String, String)> =
                    changing.into_iter().filter(|(k, v)| earlier.tags.get(k) != Some(v)).collect();
                exported.outcome = if changed.is_empty() && removed.is_empty() { "unchanged" } else { "updated" };
                if !changed.is_empty() {
                    self.target.log(&earlier.run_id, &[], &[], &changed)?;
                }
                for key in removed {
                    self.target.delete_tag(&earlier.run_id, key)?;
                }
                exported.mlflow_run_id = Some(earlier.run_id);
                return Ok(exported);
            }
            self.target.delete_run(&earlier.run_id)?;
            exported.outcome = "exported again";
        } else {
            exported.outcome = "exported";
        }
        let parent = exported.parent_run_id.clone();
        let mlflow_run = self.create(&record, &experiment, parent.as_deref(), end, &mut exported)?;
        self.target.log(&mlflow_run, &[], &[], &changing)?;
        self.target.end_run(&mlflow_run, mlflow_status(record.status), end)?;
        // Last: only a run whose export got this far is complete.
        self.target.log(&mlflow_run, &[], &[], &[(COMPLETE.to_owned(), "complete".to_owned())])?;
        exported.mlflow_run_id = Some(mlflow_run);
        Ok(exported)
    }

    /// Creates the MLflow run of `record` with everything that does not change once it ended.
    fn create(
        &mut self,
        record: &RunRecord,
        experiment: &str,
        parent: Option<&str>,
        end: i64,
        exported: &mut Exported,
    ) -> anyhow::Result<String> {
        let start = milliseconds(&record.started_at);
        let mut tags = vec![
            ("mlflow.runName".to_owned(), record.run_id.clone()),
            ("mlflow.source.type".to_owned(), "LOCAL".to_owned()),
            ("mlflow.source.name".to_owned(), record.config_file.display().to_string()),
            ("host.run_id".to_owned(), record.run_id.clone()),
            ("host.status".to_owned(), record.status.as_str().to_owned()),
            ("host.config_sha256".to_owned(), record.config_sha256.clone()),
            ("host.hostname".to_owned(), record.owner.hostname.clone()),
            ("host.version".to_owned(), record.host_version.clone()),
            ("host.threads".to_owned(), record.threads.to_string()),
            ("host.output_dir".to_owned(), record.output_dir.display().to_string()),
        ];
        let mut optional = |key: &str, value: Option<String>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                tags.push((key.to_owned(), value));
            }
        };
        optional("mlflow.source.git.commit", record.git.commit.clone());
        optional("mlflow.parentRunId", parent.map(str::to_owned));
        optional("host.dataset_sha256", Some(record.data.dataset_sha256.clone()));
        optional("host.sweep_id", record.trial.as_ref().map(|t| t.sweep_id.clone()));
        optional("host.trial", record.trial.as_ref().map(|t| t.trial.to_string()));
        optional("host.replay_of", record.replay_of.clone());
        optional("host.error", record.error.clone());
        optional("host.failed_stage", record.failed_stage.map(|s| s.as_str().to_owned()));
        for plugin in &record.plugins {
            let kind = kind_name(plugin.kind);
            tags.push((format!("host.plugin.{kind}.class"), plugin.class.clone()));
            tags.push((
                format!("host.plugin.{kind}.build"),
                format!("{} {}", plugin.plugin_name, plugin.plugin_version),
            ));
            tags.push((format!("host.plugin.{kind}.sha256"), plugin.sha256.clone()));
        }
        let tags = tags.into_iter().map(|(key, value)| (key, cut(&value, TAG_VALUE_LIMIT))).collect();
        let run = NewRun { name: record.run_id.clone(), start_time: start, user: String::new(), tags };
        let mlflow_run = self.target.create_run(experiment, &run)?;

        let mut params = Vec::new();
        for (key, value) in self.store.parameters(&record.run_id)? {
            if !valid_key(&key) {
                exported.left_out.push(format!("parameter {key}: not a name MLflow takes"));
                continue;
            }
            let value = param_value(&value);
            if value.chars().count() > PARAM_VALUE_LIMIT {
                exported.left_out.push(format!("parameter {key}: cut to MLflow's {PARAM_VALUE_LIMIT} characters"));
            }
            params.push((key, cut(&value, PARAM_VALUE_LIMIT)));
        }
        // The record's history; a run that died before recording its training stage has only
        // the epochs it wrote as they happened.
        let epochs: Vec<(i64, String, f64)> = if record.history.is_empty() {
            self.store.step_metrics(&record.run_id, 0)?
        } else {
            record
                .history
                .iter()
                .flat_map(|(epoch, values)| values.iter().map(|(key, value)| (*epoch as i64, key.clone(), *value)))
                .collect()
        };
        let last_epoch = epochs.iter().map(|(epoch, _, _)| *epoch).max().unwrap_or(0).max(1);
        let mut metrics = Vec::new();
        for (epoch, key, value) in epochs {
            // Epochs spread over the run's time, so MLflow's time axis is roughly right too.
            let timestamp = start + (end - start) * epoch / last_epoch;
            metrics.push(Metric { key, value, timestamp, step: epoch });
        }
        for (key, value) in self.store.final_metrics(&record.run_id)? {
            metrics.push(Metric { key, value, timestamp: end, step: 0 });
        }
        let mut refused: Vec<String> = metrics.iter().filter(|m| !valid_key(&m.key)).map(|m| m.key.clone()).collect();
        refused.dedup();
        exported.left_out.extend(refused.iter().map(|key| format!("metric {key}: not a name MLflow takes")));
        metrics.retain(|m| valid_key(&m.key));
        self.target.log(&mlflow_run, &params, &metrics, &[])?;
        self.target.log_datasets(&mlflow_run, &datasets(record))?;
        self.upload_files(&mlflow_run, record, exported)?;
        Ok(mlflow_run)
    }

    /// The run's files (those still as recorded) under `files/`, and its whole record as
    /// `host/run.json`.
    fn upload_files(&mut self, mlflow_run: &str, record: &RunRecord, exported: &mut Exported) -> anyhow::Result<()> {
        for artifact in &record.artifacts {
            let shown = artifact.path.display();
            match crate::hashing::sha256_file(&artifact.path) {
                Ok((digest, _)) if digest == artifact.sha256 => {
                    // Its path in the run's folder, plain names only (a record from a shared store
                    // may say anything); a file outside the folder goes under `outside/`.
                    let relative = artifact
                        .path
                        .strip_prefix(&record.output_dir)
                        .ok()
                        .filter(|p| p.components().all(|c| matches!(c, std::path::Component::Normal(_))))
                        .map(Path::to_path_buf)
                        .or_else(|| artifact.path.file_name().map(|name| Path::new("outside").join(name)));
                    let Some(relative) = relative else {
                        exported.files_left_out.push(format!("{shown}: no file name"));
                        continue;
                    };
                    let name = relative.to_string_lossy();
                    self.target.upload(mlflow_run, &format!("files/{name}"), &artifact.path)?;
                    exported.files += 1;
                }
                Ok(_) => exported.files_left_out.push(format!("{shown}: changed since the run (`host verify`)")),
                Err(error) => exported.files_left_out.push(format!("{shown}: {error}")),
            }
        }
        let document = crate::commands::export::run_document(self.store, &record.run_id)?;
        let scratch = tempfile::tempdir()?;
        let path = scratch.path().join("run.json");
        std::fs::write(&path, serde_json::to_string_pretty(&document)?)?;
        self.target.upload(mlflow_run, "host/run.json", &path)?;
        Ok(())
    }

    /// The MLflow run standing for a sweep, found or created.
    fn parent(&mut self, sweep_id: &str, experiment_name: &str, experiment: &str) -> anyhow::Result<String> {
        if !self.parents.contains_key(sweep_id) {
            let earlier = self.experiments.get_mut(experiment_name).and_then(|(_, e)| e.sweeps.remove(sweep_id));
            let run_id = match earlier {
                Some(run) => run.run_id,
                None => {
                    let sweep = self.store.sweep(sweep_id)?;
                    let tags = vec![
                        ("mlflow.runName".to_owned(), format!("sweep {}", sweep.name)),
                        ("host.kind".to_owned(), "sweep".to_owned()),
                        ("host.sweep_id".to_owned(), sweep.sweep_id.clone()),
                    ];
                    let start = milliseconds(&sweep.created_at);
                    let run =
                        NewRun { name: format!("sweep {}", sweep.name), start_time: start, user: String::new(), tags };
                    let run_id = self.target.create_run(experiment, &run)?;
                    let mut params = vec![
                        ("sweep.metric".to_owned(), sweep.metric.clone()),
                        ("sweep.maximize".to_owned(), sweep.maximize.to_string()),
                    ];
                    if let Some(space) = sweep.config.get("sweep") {
                        params.push(("sweep".to_owned(), space.to_string()));
                    }
                    let params: Vec<(String, String)> =
                        params.into_iter().map(|(key, value)| (key, cut(&value, PARAM_VALUE_LIMIT))).collect();
                    self.target.log(&run_id, &params, &[], &[(COMPLETE.to_owned(), "complete".to_owned())])?;
                    run_id
                }
            };
            self.parents.insert(sweep_id.to_owned(), run_id);
        }
        Ok(self.parents[sweep_id].clone())
    }

    /// Each sweep's run ends when its last trial did (of all its trials, exported now or not),
    /// FINISHED once no trial is left to run, naming its best trial.
    fn end_parents(&mut self) -> anyhow::Result<()> {
        for (sweep_id, parent) in &self.parents {
            let sweep = self.store.sweep(sweep_id)?;
            let mut end = milliseconds(&sweep.created_at);
            for run in sweep.trials.iter().flat_map(|t| &t.attempts) {
                if let Some(finished) = self.store.run_record(run)?.finished_at {
                    end = end.max(milliseconds(&finished));
                }
            }
            let pending = sweep.trials.iter().any(|t| t.status == record::TrialStatus::Running);
            let best = sweep
                .trials
                .iter()
                .filter_map(|t| Some((t.metric?, t.run_id.clone()?)))
                .filter(|(m, _)| m.is_finite())
                .max_by(|a, b| if sweep.maximize { a.0.total_cmp(&b.0) } else { b.0.total_cmp(&a.0) });
            let mut tags = vec![("host.sweep.trials".to_owned(), sweep.trials.len().to_string())];
            if let Some((metric, run)) = best {
                tags.push(("host.sweep.best_run".to_owned(), run));
                tags.push((format!("host.sweep.best.{}", sweep.metric), metric.to_string()));
            }
            self.target.log(parent, &[], &[], &tags)?;
            self.target.end_run(parent, if pending { "RUNNING" } else { "FINISHED" }, end)?;
        }
        Ok(())
    }
}

/// The data set and each split, as MLflow inputs carrying their SHA-256 (MLflow's digest column
/// holds 36 characters: the digest is the SHA-256's first 32 hex digits, the whole one is in
/// the source and the profile).
fn datasets(record: &RunRecord) -> Vec<Dataset> {
    let data = &record.data;
    if data.dataset_sha256.is_empty() {
        return Vec::new();
    }
    let name = if data.description.is_empty() { record.experiment_name.clone() } else { data.description.clone() };
    let loader = record.plugins.iter().find(|p| p.kind == ClassKind::Loader);
    let entry = |name: String, sha256: &str, rows: Option<usize>, context: &str| Dataset {
        name,
        digest: sha256.chars().take(32).collect(),
        source_type: "host".to_owned(),
        source: json!({
            "sha256": sha256,
            "dataset_sha256": data.dataset_sha256,
            "loader": loader.map(|l| l.class.clone()),
            "loader_sha256": loader.map(|l| l.sha256.clone()),
        })
        .to_string(),
        profile: Some(json!({"sha256": sha256, "rows": rows}).to_string()),
        context: context.to_owned(),
    };
    let mut datasets = vec![entry(name.clone(), &data.dataset_sha256, None, "dataset")];
    for (split, recorded) in &data.splits {
        datasets.push(entry(format!("{name} ({split})"), &recorded.sha256, Some(recorded.rows), split));
    }
    datasets
}

/// An MLflow tracking server, over its REST API (`/api/2.0/mlflow/...`; files through the
/// server's artifact proxy, `/api/2.0/mlflow-artifacts/...`). Authenticates with
/// `MLFLOW_TRACKING_TOKEN` (bearer) or `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`
/// (basic), as MLflow's own client does.
struct Rest {
    base: String,
    agent: ureq::Agent,
    authorization: Option<String>,
    /// Each created run's artifact location.
    artifact_uris: HashMap<String, String>,
}

/// What a request sends: nothing (GET), JSON (POST), or a file, streamed (PUT).
enum Body {
    None,
    Json(Vec<u8>),
    File(std::fs::File),
}

/// The most of an answer read (a page of runs, an error): 256 MiB.
const ANSWER_LIMIT: u64 = 256 << 20;

/// Standard base64, for basic authentication.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A URL without its `user:password@` part, and that part.
fn split_credentials(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else { return (url.to_owned(), None) };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((credentials, host)) => {
            (format!("{scheme}://{host}{}", &rest[authority_end..]), Some(credentials.to_owned()))
        }
        None => (url.to_owned(), None),
    }
}

/// A path's segments percent-encoded for a URL (unreserved characters kept).
fn encode_path(path: &str) -> String {
    let mut out = String::new();
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out += &format!("%{byte:02X}");
        }
    }
    out
}

impl Rest {
    fn new(base: &str) -> Self {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                // No limit on a whole call (a large file's upload); one on each step of it.
                .timeout_connect(Some(Duration::from_secs(30)))
                .timeout_per_read(Some(Duration::from_secs(300)))
                .timeout_per_write(Some(Duration::from_secs(300)))
                .http_status_as_error(false)
                .build(),
        );
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        // As MLflow's client: basic authentication when both user and password are set, else
        // the token.
        let authorization = match (env("MLFLOW_TRACKING_USERNAME"), env("MLFLOW_TRACKING_PASSWORD")) {
            (Some(user), Some(password)) => Some(format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))),
            _ => env("MLFLOW_TRACKING_TOKEN").map(|token| format!("Bearer {token}")),
        };
        // `https://user:password@host`: the credentials authenticate and are never shown.
        let (base, from_url) = split_credentials(base.trim_end_matches('/'));
        let authorization = authorization
            .or_else(|| from_url.map(|user_password| format!("Basic {}", base64(user_password.as_bytes()))));
        Rest { base, agent, authorization, artifact_uris: HashMap::new() }
    }

    /// Sends a request (GET, POST or PUT by its body); returns the status and the JSON answer,
    /// or an error naming the server.
    fn send(&self, url: &str, body: Body) -> anyhow::Result<(u16, Value)> {
        let unreachable = |e: ureq::Error| {
            anyhow::anyhow!("cannot reach the MLflow server at {}: {e}; is it running there?", self.base)
        };
        let mut response = match body {
            Body::None => {
                let mut request = self.agent.get(url);
                if let Some(auth) = &self.authorization {
                    request = request.header("Authorization", auth);
                }
                request.call().map_err(unreachable)?
            }
            Body::Json(bytes) => {
                let mut request = self.agent.post(url);
                if let Some(auth) = &self.authorization {
                    request = request.header("Authorization", auth);
                }
                request.content_type("application/json").send(bytes).map_err(unreachable)?
            }
            Body::File(file) => {
                let mut request = self.agent.put(url);
                if let Some(auth) = &self.authorization {
                    request = request.header("Authorization", auth);
                }
                request.content_type("application/octet-stream").send(file).map_err(unreachable)?
            }
        };
        let status = response.status().as_u16();
        // A page of 200 runs with their tags and metrics stays far below this; an answer cut
        // short must be an error, never "no runs" (which would export every run again).
        let text = response
            .body_mut()
            .with_config()
            .limit(ANSWER_LIMIT)
            .read_to_string()
            .map_err(|e| anyhow::anyhow!("the MLflow server at {} answered {url} unreadably: {e}", self.base))?;
        let value = match serde_json::from_str(&text) {
            _ if text.trim().is_empty() => json!({}),
            Ok(value) => value,
            Err(_) if !(200..300).contains(&status) => json!({"message": text.chars().take(500).collect::<String>()}),
            Err(error) => bail!(
                "the MLflow server at {} answered {url} with something other than JSON ({error}): is this an MLflow \
                 tracking server?",
                self.base
            ),
        };
        Ok((status, value))
    }

    /// The id of the active experiment `name`, made when there is none; `retry`: look it up
    /// again when another export made it meanwhile.
    fn experiment_found_or_made(&mut self, name: &str, retry: bool) -> anyhow::Result<String> {
        let url = format!(
            "{}/api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
            self.base,
            encode_path(name).replace('/', "%2F")
        );
        let (status, answer) = self.send(&url, Body::None)?;
        match status {
            200 => {
                let experiment = &answer["experiment"];
                if experiment["lifecycle_stage"] == "deleted" {
                    bail!(
                        "MLflow experiment `{name}` is deleted; restore it (`mlflow experiments restore`) or export \
                         with --experiment OTHER"
                    );
                }
                experiment["experiment_id"].as_str().map(str::to_owned).context("no experiment_id in MLflow's answer")
            }
            404 if answer["error_code"] == "RESOURCE_DOES_NOT_EXIST" => {
                let url = format!("{}/api/2.0/mlflow/experiments/create", self.base);
                let (status, created) = self.send(&url, Body::Json(json!({"name": name}).to_string().into_bytes()))?;
                match status {
                    200..300 => created["experiment_id"]
                        .as_str()
                        .map(str::to_owned)
                        .context("no experiment_id in MLflow's answer"),
                    // Another export made it meanwhile: look it up once more.
                    _ if created["error_code"] == "RESOURCE_ALREADY_EXISTS" && retry => {
                        self.experiment_found_or_made(name, false)
                    }
                    _ => bail!("{}", api_error(&self.base, "experiments/create", status, &created)),
                }
            }
            _ => bail!("{}", api_error(&self.base, "experiments/get-by-name", status, &answer)),
        }
    }

    fn call(&self, endpoint: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let (status, answer) = self.send(&url, Body::Json(body.to_string().into_bytes()))?;
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        bail!("{}", api_error(&self.base, endpoint, status, &answer))
    }
}

fn api_error(base: &str, endpoint: &str, status: u16, answer: &Value) -> String {
    let code = answer["error_code"].as_str().unwrap_or("");
    let message = answer["message"].as_str().map_or_else(|| answer.to_string(), str::to_owned);
    let hint = match status {
        401 | 403 => "; set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
        404 if code.is_empty() => "; is this an MLflow tracking server?",
        _ => "",
    };
    format!("the MLflow server at {base} refused {endpoint} (HTTP {status} {code}): {message}{hint}")
}

fn tag_list(tags: &[(String, String)]) -> Value {
    tags.iter().map(|(key, value)| json!({"key": key, "value": value})).collect()
}

/// A metric's value in MLflow's JSON: NaN and infinities as the strings protobuf reads.
fn metric_json(metric: &Metric) -> Value {
    let value = match metric.value {
        v if v.is_nan() => json!("NaN"),
        v if v == f64::INFINITY => json!("Infinity"),
        v if v == f64::NEG_INFINITY => json!("-Infinity"),
        v => json!(v),
    };
    json!({"key": metric.key, "value": value, "timestamp": metric.timestamp, "step": metric.step})
}

impl Tracking for Rest {
    fn describe(&self) -> String {
        format!("the MLflow server at {}", self.base)
    }

    fn experiment(&mut self, name: &str) -> anyhow::Result<String> {
        self.experiment_found_or_made(name, true)
    }

    fn runs(&mut self, experiment_id: &str) -> anyhow::Result<Vec<ExistingRun>> {
        let mut runs = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut request =
                json!({"experiment_ids": [experiment_id], "max_results": 200, "run_view_type": "ACTIVE_ONLY"});
            if let Some(token) = &page_token {
                request["page_token"] = json!(token);
            }
            let answer = self.call("runs/search", &request)?;
            for run in answer["runs"].as_array().into_iter().flatten() {
                let tags = run["data"]["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| Some((t["key"].as_str()?.to_owned(), t["value"].as_str().unwrap_or("").to_owned())))
                    .collect();
                let run_id = run["info"]["run_id"].as_str().context("a run without run_id in MLflow's answer")?;
                runs.push(ExistingRun { run_id: run_id.to_owned(), tags });
            }
            match answer["next_page_token"].as_str().filter(|t| !t.is_empty()) {
                Some(token) => page_token = Some(token.to_owned()),
                None => return Ok(runs),
            }
        }
    }

    fn delete_run(&mut self, run_id: &str) -> anyhow::Result<()> {
        self.call("runs/delete", &json!({"run_id": run_id})).map(drop)
    }

    fn create_run(&mut self, experiment_id: &str, run: &NewRun) -> anyhow::Result<String> {
        let answer = self.call(
            "runs/create",
            &json!({
                "experiment_id": experiment_id,
                "user_id": run.user,
                "start_time": run.start_time,
                "run_name": run.name,
                "tags": tag_list(&run.tags),
            }),
        )?;
        let info = &answer["run"]["info"];
        let run_id = info["run_id"].as_str().context("no run_id in MLflow's answer")?.to_owned();
        if let Some(uri) = info["artifact_uri"].as_str() {
            self.artifact_uris.insert(run_id.clone(), uri.to_owned());
        }
        Ok(run_id)
    }

    fn log(
        &mut self,
        run_id: &str,
        params: &[(String, String)],
        metrics: &[Metric],
        tags: &[(String, String)],
    ) -> anyhow::Result<()> {
        // MLflow takes at most 100 parameters, 100 tags and 1000 metrics per batch.
        for chunk in params.chunks(100) {
            self.call("runs/log-batch", &json!({"run_id": run_id, "params": tag_list(chunk)}))?;
        }
        for chunk in tags.chunks(100) {
            self.call("runs/log-batch", &json!({"run_id": run_id, "tags": tag_list(chunk)}))?;
        }
        for chunk in metrics.chunks(1000) {
            let metrics: Vec<Value> = chunk.iter().map(metric_json).collect();
            self.call("runs/log-batch", &json!({"run_id": run_id, "metrics": metrics}))?;
        }
        Ok(())
    }

    fn log_datasets(&mut self, run_id: &str, datasets: &[Dataset]) -> anyhow::Result<()> {
        if datasets.is_empty() {
            return Ok(());
        }
        let datasets: Vec<Value> = datasets
            .iter()
            .map(|d| {
                json!({
                    "tags": [{"key": "mlflow.data.context", "value": d.context}],
                    "dataset": {
                        "name": d.name,
                        "digest": d.digest,
                        "source_type": d.source_type,
                        "source": d.source,
                        "profile": d.profile,
                    },
                })
            })
            .collect();
        self.call("runs/log-inputs", &json!({"run_id": run_id, "datasets": datasets})).map(drop)
    }

    fn delete_tag(&mut self, run_id: &str, key: &str) -> anyhow::Result<()> {
        self.call("runs/delete-tag", &json!({"run_id": run_id, "key": key})).map(drop)
    }

    fn upload(&mut self, run_id: &str, path: &str, file: &Path) -> anyhow::Result<()> {
        let path = store::mlflow::plain_relative(path)?.to_string_lossy().into_owned();
        let uri = match self.artifact_uris.get(run_id) {
            Some(uri) => uri.clone(),
            None => {
                let answer = self.call("runs/get", &json!({"run_id": run_id}))?;
                answer["run"]["info"]["artifact_uri"].as_str().unwrap_or_default().to_owned()
            }
        };
        if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
            // `mlflow-artifacts:/PATH`, or with an authority: `mlflow-artifacts://HOST/PATH`.
            let location = match rest.strip_prefix("//") {
                Some(with_host) => with_host.split_once('/').map_or("", |(_, p)| p),
                None => rest.trim_start_matches('/'),
            };
            let url = format!(
                "{}/api/2.0/mlflow-artifacts/artifacts/{}/{}",
                self.base,
                encode_path(location),
                encode_path(&path)
            );
            let file = std::fs::File::open(file).with_context(|| format!("{}: cannot read", file.display()))?;
            let (status, answer) = self.send(&url, Body::File(file))?;
            if !(200..300).contains(&status) {
                bail!("{}", api_error(&self.base, "mlflow-artifacts", status, &answer));
            }
            return Ok(());
        }
        // ROOT/EXPERIMENT/RUN/artifacts, with ROOT on this machine.
        let local = store::mlflow::local_folder(&uri).filter(|f| f.ancestors().nth(3).is_some_and(Path::exists));
        match local {
            // A server on this machine whose artifacts are a local folder (`--no-serve-artifacts`).
            Some(folder) => {
                let target: PathBuf = folder.join(&path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
                }
                std::fs::copy(file, &target)
                    .with_context(|| format!("cannot copy {} to {}", file.display(), target.display()))?;
                Ok(())
            }
            None => bail!(
                "the MLflow server stores run {run_id}'s files at {uri}, which host cannot write; start the server \
                 with its artifact proxy (`mlflow server` serves artifacts by default)"
            ),
        }
    }

    fn end_run(&mut self, run_id: &str, status: &str, end_time: i64) -> anyhow::Result<()> {
        self.call("runs/update", &json!({"run_id": run_id, "status": status, "end_time": end_time})).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_are_taken_out_of_it() {
        assert_eq!(
            split_credentials("https://ana:s3cret@mlflow.internal:5000/base"),
            ("https://mlflow.internal:5000/base".to_owned(), Some("ana:s3cret".to_owned()))
        );
        assert_eq!(split_credentials("http://127.0.0.1:5000"), ("http://127.0.0.1:5000".to_owned(), None));
        assert_eq!(split_credentials("http://h/p@q"), ("http://h/p@q".to_owned(), None), "an @ in the path is no user");
    }

    #[test]
    fn mlflow_takes_plain_names_and_long_values_are_cut_by_characters() {
        for good in ["loss", "test.accuracy", "model.hidden_layers", "a b:c/d-e", "größe"] {
            assert!(valid_key(good), "{good}");
        }
        for bad in ["", "a\nb", "x=y", "/abs", "a/../b", "quote'", &"k".repeat(251)] {
            assert!(!valid_key(bad), "{bad:?}");
        }
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("ééééééé", 5), "éé...");
        assert_eq!(cut(&"x".repeat(9000), TAG_VALUE_LIMIT).chars().count(), TAG_VALUE_LIMIT);
    }

    #[test]
    fn basic_authentication_is_standard_base64() {
        assert_eq!(base64(b"ana:secret"), "YW5hOnNlY3JldA==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn artifact_paths_keep_their_slashes_and_escape_the_rest() {
        assert_eq!(encode_path("files/model/m.safetensors"), "files/model/m.safetensors");
        assert_eq!(encode_path("a b/ü?"), "a%20b/%C3%BC%3F");
    }

    #[test]
    fn non_finite_metrics_are_written_as_protobuf_reads_them() {
        let metric = |value| metric_json(&Metric { key: "loss".into(), value, timestamp: 1, step: 2 })["value"].clone();
        assert_eq!(metric(f64::NAN), json!("NaN"));
        assert_eq!(metric(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(metric(0.5), json!(0.5));
    }

    #[test]
    fn a_target_is_a_server_url_or_an_mlflow_sqlite_uri() {
        let error = open_target("mlruns").err().unwrap().to_string();
        assert!(error.contains("http://127.0.0.1:5000") && error.contains("sqlite:///mlflow.db"), "{error}");
        let error = open_target("sqlite://").err().unwrap().to_string();
        assert!(error.contains("sqlite:////absolute/path.db"), "{error}");
        let error = open_target("sqlite:////nonexistent/mlflow.db").err().unwrap().to_string();
        assert!(error.contains("mlflow db upgrade sqlite:////nonexistent/mlflow.db"), "{error}");
    }
}
