//! The orchestrator: runs the stages load, prepare, train, evaluate and report for one
//! experiment, timing each, writing every output into the run's folder and hashing it. Plugins
//! see the host only through `StageServices`; nothing here knows MNIST or any other data set.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use plugin_sdk::host::{HostServices, ReportKind};
use plugin_sdk::{ClassKind, ErrorKind, FitSummary, LogLevel, RunContext, TaskKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::experiment::ExperimentConfig;
use crate::data::{self, Prepared, Split, Transform};
use crate::hashing::{sha256_bytes, sha256_file};
use crate::metrics;
use crate::registry::ResolvedClass;
use crate::store::{Environment, GitState, Store};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Serialize)]
pub struct PluginUse {
    pub kind: ClassKind,
    pub class: String,
    pub plugin_name: String,
    pub plugin_version: String,
    pub sdk_version: String,
    pub library: PathBuf,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageRecord {
    pub name: &'static str,
    pub status: RunStatus,
    pub seconds: f64,
    /// The config the stage ran with (its class's sections; for prepare the host's data keys).
    pub parameters: Value,
    /// The stage-cache key: what the stage's outputs depend on (`None` for stages never reused).
    pub cache_key: Option<String>,
    /// The earlier run whose outputs this stage reused instead of recomputing.
    pub reused_from: Option<String>,
}

/// Wall time a run spent on provenance: hashing data and files, and store writes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProvenanceTime {
    pub hashing_seconds: f64,
    pub store_seconds: f64,
}

/// A file the run read or wrote, content-addressed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileArtifact {
    pub kind: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

impl FileArtifact {
    /// Hashes the file; the path is recorded absolute, so `host verify` works from anywhere.
    pub fn of(kind: &str, path: &Path) -> anyhow::Result<Self> {
        let (sha256, size) = sha256_file(path).with_context(|| format!("{}: cannot hash", path.display()))?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        Ok(FileArtifact { kind: kind.into(), path, sha256, size })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitRecord {
    pub rows: usize,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct DataRecord {
    pub description: String,
    pub dataset_sha256: String,
    pub task: Option<TaskKind>,
    pub label_names: Vec<String>,
    pub sample_shape: Vec<usize>,
    pub splits: BTreeMap<String, SplitRecord>,
    pub transforms: Vec<Transform>,
    /// What the loader said about the data (its `Dataset::metadata`: names, source, counts).
    pub metadata: Value,
}

/// Everything about one run: what `host run --json` prints and `run.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub experiment_name: String,
    pub status: RunStatus,
    pub config_file: PathBuf,
    pub config_sha256: String,
    /// The folder the run ran in: relative paths in its config resolve against it.
    pub working_dir: PathBuf,
    /// The saved model evaluated instead of training (`host run --model-from`).
    pub model_from: Option<PathBuf>,
    /// The run this one replayed (`host replay`).
    pub replay_of: Option<String>,
    pub seed: u64,
    pub threads: usize,
    pub output_dir: PathBuf,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub seconds: f64,
    pub plugins: Vec<PluginUse>,
    pub stages: Vec<StageRecord>,
    pub source_files: Vec<FileArtifact>,
    pub data: DataRecord,
    pub fit: Option<FitSummary>,
    /// Per-epoch metrics: epoch -> name -> value.
    pub history: BTreeMap<u64, BTreeMap<String, f64>>,
    pub metrics: Option<Value>,
    pub artifacts: Vec<FileArtifact>,
    pub failed_stage: Option<&'static str>,
    pub error: Option<String>,
    /// Measured when the run ends (after its last store write), so only `run.json` and
    /// `host run --json` carry it.
    pub provenance: Option<ProvenanceTime>,
}

/// What to run and how.
pub struct RunRequest<'a> {
    pub experiment: &'a ExperimentConfig,
    pub classes: &'a [ResolvedClass],
    /// The folder that receives `<run id>/`.
    pub output_root: PathBuf,
    /// Evaluate a saved model (a run folder or its `model/` folder) instead of training.
    pub model_from: Option<PathBuf>,
    pub show_progress: bool,
    pub stop: Arc<AtomicBool>,
    /// Where the run is recorded; `None` records only the run folder.
    pub store: Option<&'a RefCell<Store>>,
    /// The git commit and dirty flag of the experiment's repository.
    pub git: GitState,
    /// Reuse the outputs of earlier stages with the same cache key (`host run --force` and
    /// `host replay` recompute).
    pub reuse: bool,
    /// The run this one replays.
    pub replay_of: Option<String>,
}

/// The current UTC time as RFC 3339 (`2026-11-26T07:15:30Z`).
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// A time as RFC 3339 in UTC, to the second.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    let seconds = time.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// A new run id: UTC time plus random digits, sortable and unique across machines.
pub fn new_run_id() -> String {
    let now = now_rfc3339();
    let compact: String = now.chars().filter(|c| c.is_ascii_digit()).collect();
    format!("{}-{}-{:06x}", &compact[..8], &compact[8..14], rand::random::<u32>() & 0xff_ffff)
}

struct MetricPoint {
    name: String,
    step: u64,
    value: f64,
}

/// The services one stage's plugin calls see.
struct StageServices<'a> {
    plugin: String,
    /// The store and run id that heartbeats and live metrics go to.
    recorder: Option<(&'a RefCell<Store>, String)>,
    last_heartbeat: Cell<Option<Instant>>,
    artifact_dir: PathBuf,
    stop: &'a AtomicBool,
    show_progress: bool,
    bar: RefCell<Option<ProgressBar>>,
    metrics: RefCell<Vec<MetricPoint>>,
    printed_epochs: Cell<u64>,
    last_plain_progress: Cell<Option<Instant>>,
    /// The first non-finite loss the plugin reported: (name, step, value). Training is asked
    /// to stop, and the stage fails.
    diverged: RefCell<Option<(String, u64, f64)>>,
}

impl<'a> StageServices<'a> {
    fn new(plugin: String, artifact_dir: PathBuf, request: &'a RunRequest<'_>, run_id: &str) -> Self {
        StageServices {
            plugin,
            recorder: request.store.map(|store| (store, run_id.to_owned())),
            last_heartbeat: Cell::new(Some(Instant::now())),
            artifact_dir,
            stop: &request.stop,
            show_progress: request.show_progress,
            bar: RefCell::new(None),
            metrics: RefCell::new(Vec::new()),
            printed_epochs: Cell::new(0),
            last_plain_progress: Cell::new(None),
            diverged: RefCell::new(None),
        }
    }

    /// Prints one line per epoch whose metrics are complete (`through` and earlier).
    fn print_epochs(&self, through: u64) {
        if !self.show_progress {
            return;
        }
        let metrics = self.metrics.borrow();
        for epoch in self.printed_epochs.get() + 1..=through {
            let values: Vec<String> = metrics
                .iter()
                .filter(|m| m.step == epoch)
                .map(|m| {
                    if m.name.ends_with("seconds") {
                        format!("{} {:.2}s", m.name, m.value)
                    } else {
                        format!("{} {:.4}", m.name, m.value)
                    }
                })
                .collect();
            if !values.is_empty() {
                self.clear_bar();
                eprintln!("epoch {epoch}: {}", values.join("  "));
            }
            self.printed_epochs.set(epoch);
        }
    }

    fn last_step(&self) -> u64 {
        self.metrics.borrow().iter().map(|m| m.step).max().unwrap_or(0)
    }

    fn clear_bar(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }

    fn history(&self) -> BTreeMap<u64, BTreeMap<String, f64>> {
        let mut history: BTreeMap<u64, BTreeMap<String, f64>> = BTreeMap::new();
        for m in self.metrics.borrow().iter() {
            history.entry(m.step).or_default().insert(m.name.clone(), m.value);
        }
        history
    }
}

impl HostServices for StageServices<'_> {
    fn log(&self, level: LogLevel, message: &str) {
        let plugin = &self.plugin;
        match level {
            LogLevel::Debug => tracing::debug!("[{plugin}] {message}"),
            LogLevel::Info => tracing::info!("[{plugin}] {message}"),
            LogLevel::Warn => tracing::warn!("[{plugin}] {message}"),
            LogLevel::Error => tracing::error!("[{plugin}] {message}"),
        }
    }

    fn progress(&self, done: u64, total: u64, message: &str) {
        // Progress is the sign of life a long call gives: keep the run's heartbeat fresh.
        if let Some((store, run_id)) = &self.recorder
            && self.last_heartbeat.get().is_none_or(|t| t.elapsed().as_secs() >= 5)
        {
            self.last_heartbeat.set(Some(Instant::now()));
            if let Err(error) = store.borrow().heartbeat(run_id) {
                tracing::warn!("cannot record the heartbeat: {error:#}");
            }
        }
        if done <= 1 {
            // A new round of progress: the previous epoch's metrics are complete.
            self.print_epochs(self.last_step());
        }
        if !self.show_progress {
            return;
        }
        if std::io::stderr().is_terminal() {
            let mut bar = self.bar.borrow_mut();
            let bar = bar.get_or_insert_with(|| {
                let bar = ProgressBar::new(total);
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} batches {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar
            });
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(message.to_owned());
            if done >= total {
                bar.finish_and_clear();
            }
        } else {
            // Plain lines at most every 5 seconds, so logs of long steps show life without flooding.
            let due = self.last_plain_progress.get().is_none_or(|t| t.elapsed().as_secs() >= 5);
            if due && done < total {
                self.last_plain_progress.set(Some(Instant::now()));
                eprintln!("  {message} ({done}/{total})");
            }
        }
    }

    fn metric(&self, name: &str, step: u64, value: f64) {
        if !value.is_finite() && name.contains("loss") && self.diverged.borrow().is_none() {
            *self.diverged.borrow_mut() = Some((name.to_owned(), step, value));
        }
        self.metrics.borrow_mut().push(MetricPoint { name: name.to_owned(), step, value });
        if let Some((store, run_id)) = &self.recorder
            && let Err(error) = store.borrow().live_metric(run_id, name, step, value)
        {
            tracing::warn!("cannot record metric {name}: {error:#}");
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.diverged.borrow().is_some()
    }

    fn artifact_dir(&self) -> PathBuf {
        self.artifact_dir.clone()
    }
}

/// Why a stage stopped the run.
enum StageError {
    Failed(anyhow::Error),
    Cancelled,
}

impl From<anyhow::Error> for StageError {
    fn from(error: anyhow::Error) -> Self {
        let cancelled = error.chain().any(|cause| {
            cause.downcast_ref::<plugin_sdk::host::CallError>().is_some_and(|e| e.kind == ErrorKind::Cancelled)
        });
        if cancelled { StageError::Cancelled } else { StageError::Failed(error) }
    }
}

impl From<plugin_sdk::host::CallError> for StageError {
    fn from(error: plugin_sdk::host::CallError) -> Self {
        StageError::from(anyhow::Error::new(error))
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
}

struct Run<'a> {
    request: &'a RunRequest<'a>,
    dir: PathBuf,
    summary: RunSummary,
    context: RunContext,
    /// The running stage's cache key and the run it reused from, set by the stage's body.
    cache: Option<(String, Option<String>)>,
    /// The prepare stage's key and source run when the load stage already found its splits.
    splits_hit: Option<(String, String)>,
    /// Writes freshly prepared splits into the cache while training runs.
    splits_writer: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

/// What the load stage hands on: the loader's dataset (its digest is in the run record), or
/// the prepared splits of an earlier run with the same load and prepare keys.
#[allow(clippy::large_enum_variant, reason = "made once per run and moved once")]
enum Loaded {
    Dataset(plugin_sdk::Dataset),
    Cached(Prepared),
}

/// The trained model: live from training, or to be loaded from the run's `model/` folder
/// when training was reused (and only if evaluation is not reused too).
struct Trained {
    handle: Option<plugin_sdk::host::ModelHandle>,
}

impl<'a> Run<'a> {
    fn class(&self, kind: ClassKind) -> Option<&'a ResolvedClass> {
        self.request.classes.iter().find(|c| c.info.kind == kind)
    }

    fn required_class(&self, kind: ClassKind) -> anyhow::Result<&'a ResolvedClass> {
        self.class(kind).ok_or_else(|| anyhow!("no {kind} class selected"))
    }

    fn services(&self, class: &ResolvedClass, artifact_dir: PathBuf) -> StageServices<'a> {
        StageServices::new(
            format!("{} {}", class.info.name, class.library.plugin_label()),
            artifact_dir,
            self.request,
            &self.summary.run_id,
        )
    }

    fn stage<T>(
        &mut self,
        name: &'static str,
        body: impl FnOnce(&mut Self) -> Result<T, StageError>,
    ) -> Result<T, StageError> {
        if self.request.stop.load(Ordering::Relaxed) {
            return Err(StageError::Cancelled);
        }
        tracing::info!("stage {name}");
        let started = Instant::now();
        self.cache = None;
        let result = body(self);
        let status = match &result {
            Ok(_) => RunStatus::Completed,
            Err(StageError::Cancelled) => RunStatus::Cancelled,
            Err(StageError::Failed(_)) => RunStatus::Failed,
        };
        let (cache_key, reused_from) = self.cache.take().unzip();
        let reused_from = reused_from.flatten();
        if let Some(from) = &reused_from {
            tracing::info!("stage {name} reused the outputs of run {from}");
            if self.request.show_progress {
                eprintln!("{name}: reused the outputs of run {from} (host run --force recomputes)");
            }
        }
        self.summary.stages.push(StageRecord {
            name,
            status,
            seconds: started.elapsed().as_secs_f64(),
            parameters: self.stage_parameters(name),
            cache_key,
            reused_from,
        });
        if status == RunStatus::Failed {
            self.summary.failed_stage = Some(name);
        }
        if let Err(error) = self.record() {
            return Err(StageError::Failed(error));
        }
        result
    }

    fn stage_parameters(&self, stage: &str) -> Value {
        let experiment = self.request.experiment;
        match stage {
            "load" => experiment.class_sections(ClassKind::Loader),
            "prepare" => json!({
                "data_splitting": experiment.canonical["data_splitting"],
                "preprocessing": experiment.canonical["preprocessing"],
                "seed": experiment.seed,
            }),
            "train" | "evaluate" => experiment.class_sections(ClassKind::Model),
            "report" => experiment.class_sections(ClassKind::ReportGenerator),
            _ => Value::Null,
        }
    }

    /// Writes the run's record so far to the store, one transaction per stage.
    fn record(&self) -> anyhow::Result<()> {
        match self.request.store {
            Some(store) => {
                store.borrow_mut().record(&self.summary).context("recording the run in the provenance store")
            }
            None => Ok(()),
        }
    }

    fn artifact(&mut self, kind: &str, path: &Path) -> anyhow::Result<()> {
        self.summary.artifacts.push(FileArtifact::of(kind, path)?);
        Ok(())
    }

    /// Earlier completed stages with this key whose outputs may be reused, newest first.
    fn candidates(&self, stage: &str, key: &str) -> Vec<crate::store::CachedStage> {
        let Some(store) = self.request.store.filter(|_| self.request.reuse) else { return Vec::new() };
        store.borrow().cached_stages(stage, key).unwrap_or_else(|error| {
            tracing::warn!("cannot look up the stage cache: {error:#}");
            Vec::new()
        })
    }

    fn cache_dir(&self) -> Option<PathBuf> {
        self.request.store.map(|store| crate::cache::cache_dir(store.borrow().path()))
    }

    fn prepare_key(&self, dataset_digest: &str) -> String {
        let canonical = &self.request.experiment.canonical;
        crate::cache::stage_key(
            "prepare",
            json!({
                "dataset": dataset_digest,
                "transforms": data::TRANSFORMS_VERSION,
                "data_splitting": canonical["data_splitting"],
                "preprocessing": canonical["preprocessing"],
                "seed": self.request.experiment.seed,
            }),
        )
    }

    /// The cached splits of a completed prepare stage with this key, their checksums verified.
    fn reuse_splits(&self, key: &str) -> Option<(Prepared, String)> {
        let cache_dir = self.cache_dir()?;
        let from = self.candidates("prepare", key).into_iter().next()?;
        let path = crate::cache::splits_path(&cache_dir, key);
        if !path.is_file() {
            return None;
        }
        match crate::cache::read_splits(&path) {
            Ok(prepared) => Some((prepared, from.run_id)),
            Err(error) => {
                tracing::warn!("{error:#}; preparing the data again");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Skips loading when an earlier run loaded the same files with the same loader and config
    /// (its raw files rehashed unchanged) and its prepared splits are cached.
    fn reuse_data(&mut self, load_key: &str) -> Option<Prepared> {
        for candidate in self.candidates("load", load_key) {
            let record = &candidate.summary;
            let Ok(sources) = serde_json::from_value::<Vec<FileArtifact>>(record["source_files"].clone()) else {
                continue;
            };
            let Some(digest) = record["data"]["dataset_sha256"].as_str().filter(|d| !d.is_empty()) else { continue };
            if !crate::cache::files_unchanged(&sources) {
                tracing::info!("the raw files of run {} changed; loading again", candidate.run_id);
                continue;
            }
            let prepare_key = self.prepare_key(digest);
            if let Some((prepared, prepared_by)) = self.reuse_splits(&prepare_key) {
                self.summary.source_files = sources;
                self.summary.data.description = record["data"]["description"].as_str().unwrap_or_default().into();
                self.summary.data.metadata = record["data"]["metadata"].clone();
                self.summary.data.dataset_sha256 = digest.to_owned();
                self.cache = Some((load_key.to_owned(), Some(candidate.run_id)));
                self.splits_hit = Some((prepare_key, prepared_by));
                return Some(prepared);
            }
        }
        None
    }

    fn load(&mut self) -> Result<Loaded, StageError> {
        let class = self.required_class(ClassKind::Loader)?;
        let experiment = self.request.experiment;
        let key = crate::cache::stage_key(
            "load",
            json!({
                "plugin": class.library.sha256,
                "class": class.info.name,
                "config": experiment.class_sections(ClassKind::Loader),
                "seed": experiment.seed,
                // Relative data paths in the config resolve against it.
                "working_dir": std::env::current_dir().ok(),
            }),
        );
        if let Some(prepared) = self.reuse_data(&key) {
            return Ok(Loaded::Cached(prepared));
        }
        self.cache = Some((key, None));
        let mut loader = class.library.library()?.create_loader(
            &class.info.name,
            &experiment.class_sections(ClassKind::Loader),
            &self.context,
        )?;
        let services = self.services(class, self.dir.clone());
        let summary = loader.load_data(&services)?;
        services.clear_bar();
        for file in &summary.source_files {
            self.summary.source_files.push(FileArtifact::of(&file.role, Path::new(&file.path))?);
        }
        self.summary.data.description = summary.description;
        let dataset = loader.extract_features_and_targets(&services)?;
        self.summary.data.dataset_sha256 = data::dataset_digest(&dataset);
        self.summary.data.metadata = dataset.metadata.clone();
        Ok(Loaded::Dataset(dataset))
    }

    fn prepare(&mut self, loaded: Loaded) -> Result<Arc<Prepared>, StageError> {
        let experiment = self.request.experiment;
        let prepared = match loaded {
            Loaded::Cached(prepared) => {
                self.cache = self.splits_hit.take().map(|(key, from)| (key, Some(from)));
                Arc::new(prepared)
            }
            Loaded::Dataset(dataset) => {
                let digest = self.summary.data.dataset_sha256.clone();
                let key = self.prepare_key(&digest);
                if let Some((prepared, from)) = self.reuse_splits(&key) {
                    self.cache = Some((key, Some(from)));
                    Arc::new(prepared)
                } else {
                    let prepared = Arc::new(data::prepare(
                        &dataset,
                        &digest,
                        &experiment.data_splitting,
                        &experiment.preprocessing,
                        experiment.seed,
                    )?);
                    if let Some(path) = self.cache_dir().map(|dir| crate::cache::splits_path(&dir, &key))
                        && !path.is_file()
                    {
                        let splits = prepared.clone();
                        self.splits_writer =
                            Some(std::thread::spawn(move || crate::cache::write_splits(&path, &splits)));
                    }
                    self.cache = Some((key, None));
                    prepared
                }
            }
        };
        let record = &mut self.summary.data;
        record.dataset_sha256 = prepared.dataset_digest.clone();
        record.task = Some(prepared.task);
        record.label_names = prepared.label_names.clone();
        record.sample_shape = prepared.sample_shape.clone();
        record.transforms = prepared.transforms.clone();
        for split in prepared.splits() {
            record.splits.insert(split.name.into(), SplitRecord { rows: split.rows, sha256: split.digest.clone() });
        }
        write_json(&self.dir.join("lineage.json"), &prepared.transforms)?;
        self.artifact("lineage", &self.dir.join("lineage.json"))?;
        Ok(prepared)
    }

    /// Copies the files of `kinds` that an earlier run recorded into this run's folder,
    /// checking each against its recorded SHA-256.
    fn reuse_files(&mut self, candidate: &crate::store::CachedStage, kinds: &[&str]) -> anyhow::Result<()> {
        let files: Vec<FileArtifact> = serde_json::from_value(candidate.summary["artifacts"].clone())?;
        let mut copies = Vec::new();
        for file in files.iter().filter(|f| kinds.contains(&f.kind.as_str())) {
            copies.push(crate::cache::copy_verified(file, &candidate.output_dir, &self.dir)?);
        }
        self.summary.artifacts.extend(copies);
        Ok(())
    }

    /// Reuses the outputs of an earlier stage with this key: the files of `kinds` and, through
    /// `adopt`, what the stage put in the run record. Returns the run reused from.
    fn reuse_stage(
        &mut self,
        stage: &str,
        key: &str,
        kinds: &[&str],
        adopt: impl Fn(&mut Self, &Value) -> anyhow::Result<()>,
    ) -> Option<String> {
        for candidate in self.candidates(stage, key) {
            let artifacts_before = self.summary.artifacts.len();
            match self.reuse_files(&candidate, kinds).and_then(|()| adopt(self, &candidate.summary)) {
                Ok(()) => return Some(candidate.run_id),
                Err(error) => {
                    self.summary.artifacts.truncate(artifacts_before);
                    tracing::info!("cannot reuse the {stage} outputs of run {}: {error:#}", candidate.run_id);
                }
            }
        }
        None
    }

    fn model_key(&self, stage: &str, inputs: Value) -> anyhow::Result<String> {
        let class = self.required_class(ClassKind::Model)?;
        let experiment = self.request.experiment;
        Ok(crate::cache::stage_key(
            stage,
            json!({
                "plugin": class.library.sha256,
                "class": class.info.name,
                "config": experiment.class_sections(ClassKind::Model),
                "inputs": inputs,
                "seed": experiment.seed,
                "threads": experiment.threads,
            }),
        ))
    }

    fn train(&mut self, prepared: &Prepared) -> Result<Trained, StageError> {
        let class = self.required_class(ClassKind::Model)?;
        let experiment = self.request.experiment;
        if self.request.model_from.is_none() {
            let key = self.model_key(
                "train",
                json!({"train": prepared.train.digest, "validation": prepared.validation.digest}),
            )?;
            let reused = self.reuse_stage("train", &key, &["model", "checkpoint", "history"], |run, record| {
                run.summary.fit = Some(serde_json::from_value(record["fit"].clone())?);
                run.summary.history = serde_json::from_value(record["history"].clone())?;
                Ok(())
            });
            let done = reused.is_some();
            self.cache = Some((key, reused));
            if done {
                return Ok(Trained { handle: None });
            }
        }
        let mut model = class.library.library()?.create_model(
            &class.info.name,
            &experiment.class_sections(ClassKind::Model),
            &self.context,
        )?;
        let model_dir = self.dir.join("model");
        if let Some(source) = &self.request.model_from {
            let source = if source.join("model").is_dir() { source.join("model") } else { source.clone() };
            model
                .load(&source)
                .map_err(anyhow::Error::new)
                .with_context(|| format!("loading the model from {}", source.display()))?;
            return Ok(Trained { handle: Some(model) });
        }
        let services = self.services(class, self.dir.clone());
        let validation = (prepared.validation.rows > 0).then(|| prepared.view(&prepared.validation));
        let fit = model.fit(&prepared.view(&prepared.train), validation.as_ref(), &services);
        services.clear_bar();
        services.print_epochs(services.last_step());
        self.summary.history = services.history();
        write_history(&self.dir.join("history.csv"), &self.summary.history)?;
        self.artifact("history", &self.dir.join("history.csv"))?;
        if let Some((name, step, value)) = services.diverged.take() {
            return Err(StageError::Failed(anyhow!(
                "{}: training diverged: {name} was {value} at step {step}; lower training.learning_rate or check the data",
                class.info.name
            )));
        }
        self.summary.fit = Some(fit?);
        std::fs::create_dir_all(&model_dir).with_context(|| format!("{}: cannot create", model_dir.display()))?;
        for file in model.save(&model_dir)? {
            self.artifact("model", &file)?;
        }
        let checkpoint = self.dir.join("checkpoints/best.safetensors");
        if checkpoint.is_file() {
            self.artifact("checkpoint", &checkpoint)?;
        }
        Ok(Trained { handle: Some(model) })
    }

    fn evaluate(&mut self, trained: &mut Trained, prepared: &Prepared) -> Result<Value, StageError> {
        let class = self.required_class(ClassKind::Model)?;
        let test = &prepared.test;
        if test.rows == 0 {
            return Err(StageError::Failed(anyhow!(
                "the test split is empty; raise data_splitting.test_ratio or keep the predefined test set"
            )));
        }
        if self.request.model_from.is_none() {
            let mut weights: Vec<&str> =
                self.summary.artifacts.iter().filter(|a| a.kind == "model").map(|a| a.sha256.as_str()).collect();
            weights.sort();
            let key = self.model_key(
                "evaluate",
                json!({"model": weights, "test": test.digest, "label_names": prepared.label_names}),
            )?;
            let reused = self.reuse_stage("evaluate", &key, &["metrics", "predictions"], |run, record| {
                record["metrics"].as_object().context("the earlier run recorded no metrics")?;
                run.summary.metrics = Some(record["metrics"].clone());
                Ok(())
            });
            let done = reused.is_some();
            self.cache = Some((key, reused));
            if done {
                return Ok(self.summary.metrics.clone().unwrap_or_default());
            }
        }
        let model = match &mut trained.handle {
            Some(model) => model,
            None => {
                // Training was reused: load its weights, copied into this run's folder.
                let mut model = class.library.library()?.create_model(
                    &class.info.name,
                    &self.request.experiment.class_sections(ClassKind::Model),
                    &self.context,
                )?;
                let model_dir = self.dir.join("model");
                model
                    .load(&model_dir)
                    .map_err(anyhow::Error::new)
                    .with_context(|| format!("loading the reused model from {}", model_dir.display()))?;
                trained.handle.insert(model)
            }
        };
        let services = self.services(class, self.dir.clone());
        let view = prepared.view(test);
        let predictions = model.predict(&view.features, &services)?;
        let values = predictions.view().as_f32().ok_or_else(|| {
            anyhow!("{}: predict returned {} values; expected f32", class.info.name, predictions.dtype())
        })?;
        if predictions.rows() != test.rows {
            return Err(StageError::Failed(anyhow!(
                "{}: predict returned {} rows for {} samples",
                class.info.name,
                predictions.rows(),
                test.rows
            )));
        }
        let mut metrics = serde_json::Map::new();
        let context = || format!("evaluating the predictions of {}", class.info.name);
        let path = self.dir.join("predictions.csv");
        if let Some(labels) = test.targets.classes() {
            let standard = metrics::classification(labels, values, &prepared.label_names).with_context(context)?;
            write_predictions(&path, test, labels, values, &prepared.label_names)?;
            metrics.insert("test".into(), serde_json::to_value(standard).map_err(anyhow::Error::from)?);
        } else if let Some(actual) = prepared.original_values(test) {
            // Metrics in the targets' own units: undo the host's standardisation first.
            let predicted = prepared.target_scaling().map(|s| s.undo(values)).unwrap_or_else(|| values.to_vec());
            let standard = metrics::regression(&actual, &predicted, &prepared.label_names).with_context(context)?;
            write_regression_predictions(&path, test, &actual, &predicted, &prepared.label_names)?;
            metrics.insert("test".into(), serde_json::to_value(standard).map_err(anyhow::Error::from)?);
        }
        metrics.insert("model".into(), Value::Object(model.evaluate(&view, &services)?));
        metrics.insert("custom".into(), Value::Object(model.custom_metrics(&view.targets, &predictions.view())?));
        let metrics = Value::Object(metrics);
        write_json(&self.dir.join("metrics.json"), &metrics)?;
        self.artifact("metrics", &self.dir.join("metrics.json"))?;
        if self.dir.join("predictions.csv").is_file() {
            self.artifact("predictions", &self.dir.join("predictions.csv"))?;
        }
        Ok(metrics)
    }

    fn report(&mut self, prepared: &Prepared) -> Result<(), StageError> {
        // Reports describe their run (its id, timings, provenance): never reused.
        let record = serde_json::to_value(&self.summary).map_err(anyhow::Error::from)?;
        for file in self.generate_reports(&record, prepared, &self.dir.join("reports"))? {
            self.artifact("report", &file)?;
        }
        Ok(())
    }

    /// Runs the report generator on `record` (a run's record as JSON) and the prepared data,
    /// writing into `reports_dir`.
    fn generate_reports(
        &self,
        record: &Value,
        prepared: &Prepared,
        reports_dir: &Path,
    ) -> Result<Vec<PathBuf>, StageError> {
        let class = self.required_class(ClassKind::ReportGenerator)?;
        std::fs::create_dir_all(reports_dir).with_context(|| format!("{}: cannot create", reports_dir.display()))?;
        let mut generator = class.library.library()?.create_report_generator(
            &class.info.name,
            &self.request.experiment.class_sections(ClassKind::ReportGenerator),
            &self.context,
        )?;
        let services = self.services(class, reports_dir.to_owned());
        let input = report_input(record, prepared);
        let mut files = Vec::new();
        for kind in [ReportKind::Data, ReportKind::Training, ReportKind::Evaluation, ReportKind::Summary] {
            files.extend(generator.generate(kind, &input, &services)?);
            crate::failpoint::pause("report.write");
        }
        Ok(files)
    }
}

fn write_history(path: &Path, history: &BTreeMap<u64, BTreeMap<String, f64>>) -> anyhow::Result<()> {
    let mut names: Vec<&String> = history.values().flat_map(|m| m.keys()).collect();
    names.sort();
    names.dedup();
    let mut text = String::from("epoch");
    for name in &names {
        text.push(',');
        text.push_str(name);
    }
    text.push('\n');
    for (epoch, values) in history {
        text.push_str(&epoch.to_string());
        for name in &names {
            text.push(',');
            if let Some(value) = values.get(*name) {
                text.push_str(&value.to_string());
            }
        }
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
}

fn write_predictions(
    path: &Path,
    split: &Split,
    labels: &[i64],
    probabilities: &[f32],
    names: &[String],
) -> anyhow::Result<()> {
    use std::fmt::Write;
    let classes = names.len();
    let mut text = String::from("row,true,predicted,confidence");
    for name in names {
        let _ = write!(text, ",p_{}", csv_name(name));
    }
    text.push('\n');
    for ((row, &label), probs) in split.source_rows.iter().zip(labels).zip(probabilities.chunks_exact(classes)) {
        let predicted = metrics::argmax(probs);
        let _ = write!(text, "{row},{label},{predicted},{:.6}", probs[predicted]);
        for p in probs {
            let _ = write!(text, ",{p:.6}");
        }
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
}

/// A CSV header field from a name.
fn csv_name(name: &str) -> String {
    name.replace([',', '"', '\n'], "_")
}

/// `row,actual_<target>,predicted_<target>,...`: the test rows' values in the targets' units.
fn write_regression_predictions(
    path: &Path,
    split: &Split,
    actual: &[f32],
    predicted: &[f32],
    names: &[String],
) -> anyhow::Result<()> {
    use std::fmt::Write;
    let mut text = String::from("row");
    for name in names {
        let _ = write!(text, ",actual_{0},predicted_{0}", csv_name(name));
    }
    text.push('\n');
    let columns = names.len();
    for ((row, actual), predicted) in
        split.source_rows.iter().zip(actual.chunks_exact(columns)).zip(predicted.chunks_exact(columns))
    {
        let _ = write!(text, "{row}");
        for (a, p) in actual.iter().zip(predicted) {
            let _ = write!(text, ",{a},{p}");
        }
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
}

/// Regression predictions as the host wrote them: per target, the actual and predicted values.
fn read_regression_predictions(path: &Path, targets: usize) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let (mut actual, mut predicted) = (vec![Vec::new(); targets], vec![Vec::new(); targets]);
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines().skip(1) {
        let values: Vec<f64> = line.split(',').skip(1).filter_map(|v| v.parse().ok()).collect();
        if values.len() != 2 * targets {
            continue;
        }
        for (target, pair) in values.chunks_exact(2).enumerate() {
            actual[target].push(pair[0]);
            predicted[target].push(pair[1]);
        }
    }
    (actual, predicted)
}

/// The test predictions the host wrote: (test index, true label, predicted, confidence).
fn read_predictions(path: &Path) -> Vec<(usize, i64, usize, f64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .skip(1)
        .enumerate()
        .filter_map(|(index, line)| {
            let mut fields = line.split(',').skip(1);
            let label = fields.next()?.parse().ok()?;
            let predicted = fields.next()?.parse().ok()?;
            let confidence = fields.next()?.parse().ok()?;
            Some((index, label, predicted, confidence))
        })
        .collect()
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

/// Class counts per split, sample and misclassified test rows, feature statistics: what the
/// report generator draws, beside the run record.
fn report_input(summary: &Value, prepared: &Prepared) -> Value {
    // Per class, for classification; regression targets have no classes to count.
    let class_counts = |split: &Split| -> Option<Vec<usize>> {
        let mut counts = vec![0; prepared.label_names.len()];
        for &label in split.targets.classes()? {
            counts[label as usize] += 1;
        }
        Some(counts)
    };
    let predictions = Path::new(summary["output_dir"].as_str().unwrap_or_default()).join("predictions.csv");
    // Regression: each target's test values and predictions, in the targets' units.
    let regression = if prepared.task == TaskKind::Regression {
        let (actual, predicted) = read_regression_predictions(&predictions, prepared.outputs());
        json!({"targets": prepared.label_names, "actual": actual, "predicted": predicted})
    } else {
        Value::Null
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
    let classified =
        if prepared.task == TaskKind::Classification { read_predictions(&predictions) } else { Vec::new() };
    let mut mistakes: Vec<(usize, i64, usize, f64)> =
        classified.into_iter().filter(|(_, label, predicted, _)| *label as usize != *predicted).collect();
    mistakes.sort_by(|a, b| b.3.total_cmp(&a.3));
    let misclassified: Vec<Value> = mistakes
        .iter()
        .take(48)
        .filter_map(|&(index, label, predicted, confidence)| {
            let values = prepared.test.features.get(index * row_len..(index + 1) * row_len)?;
            Some(json!({"label": label, "predicted": predicted, "confidence": confidence, "values": values}))
        })
        .collect();
    json!({
        "run": summary,
        "environment": Environment::current(summary["threads"].as_u64().unwrap_or(1) as usize),
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
    })
}

impl<'a> Run<'a> {
    /// A run about to start: its record holds the config, seed and plugins, nothing else yet.
    fn new(request: &'a RunRequest<'a>, run_id: String, dir: PathBuf) -> anyhow::Result<Self> {
        let experiment = request.experiment;
        let canonical_text = serde_json::to_string(&experiment.canonical)?;
        Ok(Run {
            request,
            dir: dir.clone(),
            context: RunContext { seed: experiment.seed, threads: experiment.threads },
            cache: None,
            splits_hit: None,
            splits_writer: None,
            summary: RunSummary {
                run_id,
                experiment_name: experiment.experiment_name.clone(),
                status: RunStatus::Running,
                config_file: experiment.file.clone(),
                config_sha256: sha256_bytes(canonical_text.as_bytes()),
                working_dir: std::env::current_dir().unwrap_or_default(),
                model_from: request.model_from.as_ref().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
                replay_of: request.replay_of.clone(),
                seed: experiment.seed,
                threads: experiment.threads,
                output_dir: dir.clone(),
                started_at: now_rfc3339(),
                finished_at: None,
                seconds: 0.0,
                plugins: request
                    .classes
                    .iter()
                    .map(|c| {
                        let manifest = c.library.manifest();
                        PluginUse {
                            kind: c.info.kind,
                            class: c.info.name.clone(),
                            plugin_name: manifest.plugin_name.clone(),
                            plugin_version: manifest.plugin_version.clone(),
                            sdk_version: manifest.sdk_version.clone(),
                            library: std::path::absolute(&c.library.path).unwrap_or_else(|_| c.library.path.clone()),
                            sha256: c.library.sha256.clone(),
                            size: c.library.size,
                        }
                    })
                    .collect(),
                stages: Vec::new(),
                source_files: Vec::new(),
                data: DataRecord::default(),
                fit: None,
                history: BTreeMap::new(),
                metrics: None,
                artifacts: Vec::new(),
                failed_stage: None,
                error: None,
                provenance: None,
            },
        })
    }
}

impl StageError {
    fn into_error(self) -> anyhow::Error {
        match self {
            StageError::Failed(error) => error,
            StageError::Cancelled => anyhow!("cancelled"),
        }
    }
}

/// Regenerates a recorded run's reports with the request's report generator. Metrics,
/// history and provenance come from `record`; the data (for class counts, sample and
/// misclassified images) from the stage cache, or is loaded and prepared again with the
/// request's loader, and must then match the digests the run recorded. Writes into `output`.
pub fn regenerate_reports(request: &RunRequest<'_>, record: &Value, output: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let run_id = record["run_id"].as_str().unwrap_or_default();
    std::fs::create_dir_all(output).with_context(|| format!("{}: cannot create", output.display()))?;
    let mut run = Run::new(request, run_id.to_owned(), output.to_owned())?;
    let loaded = run.load().map_err(StageError::into_error)?;
    let prepared = run.prepare(loaded).map_err(StageError::into_error)?;
    if let Some(writer) = run.splits_writer.take() {
        let _ = writer.join();
    }
    for split in prepared.splits() {
        let recorded = record["data"]["splits"][split.name]["sha256"].as_str().unwrap_or_default();
        if recorded != split.digest {
            bail!(
                "the data changed since run {run_id}: its {} split is now {}, the run recorded {recorded}",
                split.name,
                split.digest
            );
        }
    }
    run.generate_reports(record, &prepared, output).map_err(StageError::into_error)
}

/// Runs the experiment. Always returns a summary (also for failed and cancelled runs, whose
/// `run.json` is written too where the folder allows); `Err` only when the store cannot record
/// the run or a completed run's `run.json` cannot be written.
pub fn execute(request: &RunRequest<'_>) -> anyhow::Result<RunSummary> {
    let experiment = request.experiment;
    let run_id = new_run_id();
    let dir = request.output_root.join(&run_id);
    // Absolute, so the record (and the stage cache, which copies from it) works from anywhere.
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let started = Instant::now();
    let provenance_before = (crate::hashing::hashing_seconds(), crate::store::write_seconds());
    let mut run = Run::new(request, run_id, dir.clone())?;
    if let Some(store) = request.store {
        let environment = Environment::current(experiment.threads);
        store
            .borrow_mut()
            .begin_run(&run.summary, &experiment.canonical, &environment, &request.git)
            .context("recording the run in the provenance store")?;
    }
    let outcome = (|| -> Result<(), StageError> {
        // Inside the run, so a read-only or full output folder leaves a failed run record.
        std::fs::create_dir_all(&dir).with_context(|| {
            format!("{}: cannot create the run folder; check output_dir or --output-dir", dir.display())
        })?;
        write_json(&dir.join("config.json"), &experiment.canonical)?;
        let loaded = run.stage("load", |run| run.load())?;
        let prepared = run.stage("prepare", |run| run.prepare(loaded))?;
        let mut model = run.stage("train", |run| run.train(&prepared))?;
        let metrics = run.stage("evaluate", |run| run.evaluate(&mut model, &prepared))?;
        run.summary.metrics = Some(metrics);
        if experiment.reporting_enabled && run.class(ClassKind::ReportGenerator).is_some() {
            run.stage("report", |run| run.report(&prepared))?;
        }
        Ok(())
    })();
    run.summary.status = match outcome {
        Ok(()) => RunStatus::Completed,
        Err(StageError::Cancelled) => RunStatus::Cancelled,
        Err(StageError::Failed(error)) => {
            run.summary.error = Some(format!("{error:#}"));
            RunStatus::Failed
        }
    };
    if let Some(writer) = run.splits_writer.take() {
        match writer.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!("the stage cache keeps no splits of this run: {error:#}"),
            Err(_) => tracing::warn!("the stage cache keeps no splits of this run: its writer panicked"),
        }
    }
    run.summary.finished_at = Some(now_rfc3339());
    run.summary.seconds = started.elapsed().as_secs_f64();
    let recorded = run.record();
    run.summary.provenance = Some(ProvenanceTime {
        hashing_seconds: crate::hashing::hashing_seconds() - provenance_before.0,
        store_seconds: crate::store::write_seconds() - provenance_before.1,
    });
    if let Err(error) = write_json(&dir.join("run.json"), &run.summary) {
        // A run that failed already says why (a full or read-only folder, most likely).
        if run.summary.status == RunStatus::Completed {
            return Err(error);
        }
        if dir.is_dir() {
            tracing::warn!("{error:#}");
        }
    }
    recorded?;
    Ok(run.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_run_ids_have_their_formats() {
        let now = now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z'), "{now}");
        let id = new_run_id();
        assert_eq!(id.len(), 22, "{id}");
        assert_ne!(new_run_id(), new_run_id());
    }
}
