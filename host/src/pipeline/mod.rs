//! The pipeline: one run of an experiment, as a sequence of stages (`load` -> `prepare` ->
//! `train` -> `evaluate` -> `report`), one file each. A stage returns its outputs and what it
//! reused ([`Staged`]); this file times each, records it, and writes the run's record to the
//! store after every stage. Plugins see the host only through `services.rs`; `reuse.rs` is the
//! stage cache's side; `outputs.rs` owns the run folder's file formats. Nothing here knows MNIST
//! or any other data set.

mod evaluate;
mod load;
mod outputs;
mod prepare;
mod progress;
pub(crate) mod recorder;
mod report;
mod reuse;
mod services;
mod train;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use plugin_sdk::host::{LoaderHandle, ModelHandle, ReportGeneratorHandle};
use plugin_sdk::{ClassKind, ErrorKind, RunContext};
use record::{
    ArtifactKind, DataRecord, GitState, PluginUse, ProvenanceTime, RunRecord, RunStatus, StageName, StageRecord,
    StageStatus, TrialRef,
};
use serde_json::{Value, json};
use store::Store;

use crate::config::experiment::ExperimentConfig;
use crate::hashing::sha256_bytes;
use crate::interrupt::{Stop, StopReason};
use crate::registry::ResolvedClass;
use crate::storage::StoreSettings;

pub use outputs::Predictions;

/// What to run and how.
pub struct RunRequest<'a> {
    pub experiment: &'a ExperimentConfig,
    pub classes: &'a [ResolvedClass],
    /// The folder that receives `<run id>/`.
    pub output_root: PathBuf,
    /// Evaluate a saved model (a run folder or its `model/` folder) instead of training.
    pub model_from: Option<PathBuf>,
    pub show_progress: bool,
    /// Set by signals: the run stops after the current batch.
    pub stop: Arc<Stop>,
    /// Where the run is recorded; `None` records only the run folder.
    pub store: Option<&'a dyn Store>,
    /// The store's settings: the stage cache's folder, and the heartbeat's own connection.
    pub settings: Option<&'a StoreSettings>,
    /// The git commit and dirty flag of the experiment's repository.
    pub git: GitState,
    /// Reuse the outputs of earlier stages with the same cache key (`host run --force` and
    /// `host replay` recompute).
    pub reuse: bool,
    /// The run this one replays.
    pub replay_of: Option<String>,
    /// The sweep trial this run is.
    pub trial: Option<TrialRef>,
    /// The id to record the run under (a run submitted to a scheduler, whose submitter names
    /// it); a requeued job's later attempts get `attempt_id`s of it. `None`: a new id.
    pub run_id: Option<String>,
}

/// The id of attempt `restart` (0: the first) of a run submitted as `base`.
pub fn attempt_id(base: &str, restart: u32) -> String {
    if restart == 0 { base.to_owned() } else { format!("{base}-restart{restart}") }
}

/// The latest attempt of a run submitted as `base` that began, among restarts `0..up_to` (an
/// attempt killed before its run began leaves a gap).
pub fn latest_attempt(store: &dyn Store, base: &str, up_to: u32) -> anyhow::Result<Option<String>> {
    for restart in (0..up_to).rev() {
        let id = attempt_id(base, restart);
        if store.run_exists(&id)? {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Why a stage stopped the run.
pub(crate) enum StageError {
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

impl StageError {
    fn into_error(self) -> anyhow::Error {
        match self {
            StageError::Failed(error) => error,
            StageError::Cancelled => anyhow!("cancelled"),
        }
    }
}

/// What a stage returns: its output, its stage-cache key, and the earlier run whose outputs it
/// reused instead of computing them.
pub(crate) struct Staged<T> {
    pub output: T,
    pub key: Option<String>,
    pub reused_from: Option<String>,
}

impl<T> Staged<T> {
    fn computed(output: T, key: Option<String>) -> Self {
        Staged { output, key, reused_from: None }
    }

    fn reused(output: T, key: String, from: String) -> Self {
        Staged { output, key: Some(key), reused_from: Some(from) }
    }
}

/// One run in progress: its request, folder and record so far.
pub(crate) struct Run<'a> {
    request: &'a RunRequest<'a>,
    dir: PathBuf,
    record: RunRecord,
    context: RunContext,
    /// Writes freshly prepared splits into the cache while training runs; joined at the end.
    splits_writer: Option<std::thread::JoinHandle<anyhow::Result<BTreeMap<String, String>>>>,
    /// Where the run's record and live metrics are written (none without a store, and when
    /// regenerating a past run's reports, which must leave that run's record alone).
    recorder: Option<recorder::Recorder<'a>>,
    /// The classes' instances, created before the first stage.
    instances: Instances,
}

/// Instances of a run's classes, created (and so configured) before the first stage, as the
/// plugin guide promises: a constructor that rejects its config stops the run before anything
/// is loaded or recorded. A stage takes its instance; a later use creates another.
#[derive(Default)]
struct Instances {
    loader: Option<LoaderHandle>,
    model: Option<ModelHandle>,
    report_generator: Option<ReportGeneratorHandle>,
}

impl<'a> Run<'a> {
    /// A run about to start: its record holds the config, seed, plugins and environment.
    fn new(
        request: &'a RunRequest<'a>,
        run_id: String,
        dir: PathBuf,
        previous: Option<&RunRecord>,
    ) -> anyhow::Result<Self> {
        let experiment = request.experiment;
        // The host's own parallel work (filling splits, digests) keeps to the run's threads.
        crate::hashing::set_work_threads(experiment.threads);
        let canonical_text = serde_json::to_string(&experiment.canonical)?;
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let record = RunRecord {
            record_version: record::RECORD_VERSION,
            run_id,
            experiment_name: experiment.experiment_name.clone(),
            status: RunStatus::Running,
            config_file: experiment.file.clone(),
            config_sha256: sha256_bytes(canonical_text.as_bytes()),
            config: experiment.canonical.clone(),
            working_dir: std::env::current_dir().unwrap_or_default(),
            model_from: request.model_from.as_deref().map(absolute),
            replay_of: request.replay_of.clone(),
            trial: request.trial.clone(),
            scheduler: crate::environment::scheduler(),
            previous_attempt: previous.map(|p| p.run_id.clone()),
            seed: experiment.seed,
            threads: experiment.threads,
            output_dir: dir.clone(),
            started_at: record::now_rfc3339(),
            finished_at: None,
            seconds: 0.0,
            environment: crate::environment::capture(experiment.threads),
            git: request.git.clone(),
            owner: crate::liveness::this_process(),
            host_version: env!("CARGO_PKG_VERSION").to_owned(),
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
                        library: absolute(&c.library.path),
                        sha256: c.library.sha256.clone(),
                        size: c.library.size,
                    }
                })
                .collect(),
            stages: Vec::new(),
            source_files: Vec::new(),
            data: DataRecord::default(),
            cached_splits: BTreeMap::new(),
            fit: None,
            history: BTreeMap::new(),
            metrics: None,
            artifacts: Vec::new(),
            failed_stage: None,
            error: None,
            provenance: None,
        };
        Ok(Run {
            request,
            dir,
            record,
            context: RunContext {
                seed: experiment.seed,
                threads: experiment.threads,
                resume_from: previous.map(|p| p.output_dir.clone()),
            },
            splits_writer: None,
            recorder: None,
            instances: Instances::default(),
        })
    }

    /// Creates an instance of every class the run will call (the report generator only when
    /// reports are on), so every constructor has accepted its config before the first stage.
    fn create_instances(&mut self) -> anyhow::Result<()> {
        if self.class(ClassKind::Loader).is_some() {
            self.instances.loader = Some(self.new_loader()?);
        }
        if self.class(ClassKind::Model).is_some() {
            self.instances.model = Some(self.new_model()?);
        }
        if self.request.experiment.reporting_enabled && self.class(ClassKind::ReportGenerator).is_some() {
            self.instances.report_generator = Some(self.new_report_generator()?);
        }
        Ok(())
    }

    fn new_loader(&self) -> anyhow::Result<LoaderHandle> {
        let class = self.required_class(ClassKind::Loader)?;
        let sections = self.request.experiment.class_sections(ClassKind::Loader);
        Ok(class.library.library()?.create_loader(&class.info.name, &sections, &self.context)?)
    }

    fn new_model(&self) -> anyhow::Result<ModelHandle> {
        let class = self.required_class(ClassKind::Model)?;
        let sections = self.request.experiment.class_sections(ClassKind::Model);
        Ok(class.library.library()?.create_model(&class.info.name, &sections, &self.context)?)
    }

    fn new_report_generator(&self) -> anyhow::Result<ReportGeneratorHandle> {
        let class = self.required_class(ClassKind::ReportGenerator)?;
        let sections = self.request.experiment.class_sections(ClassKind::ReportGenerator);
        Ok(class.library.library()?.create_report_generator(&class.info.name, &sections, &self.context)?)
    }

    /// The loader created before the first stage, or a new one.
    fn take_loader(&mut self) -> anyhow::Result<LoaderHandle> {
        self.instances.loader.take().map_or_else(|| self.new_loader(), Ok)
    }

    /// The model created before the first stage, or a new one.
    fn take_model(&mut self) -> anyhow::Result<ModelHandle> {
        self.instances.model.take().map_or_else(|| self.new_model(), Ok)
    }

    /// The report generator created before the first stage, or a new one.
    fn take_report_generator(&mut self) -> anyhow::Result<ReportGeneratorHandle> {
        self.instances.report_generator.take().map_or_else(|| self.new_report_generator(), Ok)
    }

    fn class(&self, kind: ClassKind) -> Option<&'a ResolvedClass> {
        self.request.classes.iter().find(|c| c.info.kind == kind)
    }

    fn required_class(&self, kind: ClassKind) -> anyhow::Result<&'a ResolvedClass> {
        self.class(kind).ok_or_else(|| anyhow!("no {kind} class selected"))
    }

    /// The services a class's calls get, writing into `artifact_dir`.
    fn services(&self, class: &ResolvedClass, artifact_dir: PathBuf) -> services::StageServices<'a> {
        services::StageServices::new(
            format!("{} {}", class.info.name, class.library.plugin_label()),
            artifact_dir,
            self.recorder.clone().map(|recorder| (recorder, self.record.run_id.clone())),
            self.request.stop.flag(),
            self.request.show_progress,
        )
    }

    /// Hashes a file the run wrote and adds it to the record.
    fn artifact(&mut self, kind: ArtifactKind, path: &Path) -> anyhow::Result<()> {
        self.record.artifacts.push(crate::hashing::artifact(kind, path)?);
        Ok(())
    }

    /// The stages, in order; the first to fail or be cancelled ends the run.
    fn stages(&mut self) -> Result<(), StageError> {
        // Inside the run, so a read-only or full output folder leaves a failed run record.
        std::fs::create_dir_all(&self.dir).with_context(|| {
            format!("{}: cannot create the run folder; check output_dir or --output-dir", self.dir.display())
        })?;
        outputs::write_json(&self.dir.join("config.json"), &self.request.experiment.canonical)?;
        let loaded = self.stage(StageName::Load, load::load)?;
        let prepared = self.stage(StageName::Prepare, |run| prepare::prepare(run, loaded))?;
        let trained = self.stage(StageName::Train, |run| train::train(run, &prepared))?;
        let predictions = self.stage(StageName::Evaluate, |run| evaluate::evaluate(run, trained, &prepared))?;
        if self.request.experiment.reporting_enabled && self.class(ClassKind::ReportGenerator).is_some() {
            self.stage(StageName::Report, |run| report::report(run, &prepared, predictions.as_ref()))?;
        }
        Ok(())
    }

    /// Runs one stage: times it, records how it ended (and what it reused) in the run's record
    /// and writes the record to the store.
    fn stage<T>(
        &mut self,
        name: StageName,
        body: impl FnOnce(&mut Self) -> Result<Staged<T>, StageError>,
    ) -> Result<T, StageError> {
        if self.request.stop.requested() {
            return Err(StageError::Cancelled);
        }
        tracing::info!("stage {name}");
        let started = Instant::now();
        let (result, status, key, reused_from) = match body(self) {
            Ok(staged) => (Ok(staged.output), StageStatus::Completed, staged.key, staged.reused_from),
            Err(StageError::Cancelled) => (Err(StageError::Cancelled), StageStatus::Cancelled, None, None),
            Err(error) => (Err(error), StageStatus::Failed, None, None),
        };
        if let Some(from) = &reused_from {
            tracing::info!("stage {name} reused the outputs of run {from}");
            if self.request.show_progress {
                eprintln!("{name}: reused the outputs of run {from} (host run --force recomputes)");
            }
        }
        self.record.stages.push(StageRecord {
            name,
            status,
            seconds: started.elapsed().as_secs_f64(),
            parameters: self.stage_parameters(name),
            cache_key: key,
            reused_from,
        });
        if status == StageStatus::Failed {
            self.record.failed_stage = Some(name);
        }
        self.write_record().map_err(StageError::Failed)?;
        result
    }

    /// The config a stage ran with: its class's sections; for prepare the host's data keys.
    fn stage_parameters(&self, stage: StageName) -> Value {
        let experiment = self.request.experiment;
        match stage {
            StageName::Load => experiment.class_sections(ClassKind::Loader),
            StageName::Prepare => json!({
                "data_splitting": experiment.canonical["data_splitting"],
                "preprocessing": experiment.canonical["preprocessing"],
                "seed": experiment.seed,
            }),
            StageName::Train | StageName::Evaluate => experiment.class_sections(ClassKind::Model),
            StageName::Report => experiment.class_sections(ClassKind::ReportGenerator),
        }
    }

    /// Writes the run's record so far to the store, one transaction (queued for the store
    /// writer; an earlier write that failed is the error).
    fn write_record(&self) -> anyhow::Result<()> {
        match &self.recorder {
            Some(recorder) => recorder.record(&self.record),
            None => Ok(()),
        }
    }

    /// Waits for the cached splits to be written (they are kept only when complete) and
    /// records their content digests, which a later run's reuse is checked against.
    fn join_splits_writer(&mut self) {
        if let Some(writer) = self.splits_writer.take() {
            match writer.join() {
                Ok(Ok(digests)) => self.record.cached_splits = digests,
                Ok(Err(error)) => tracing::warn!("the stage cache keeps no splits of this run: {error:#}"),
                Err(_) => tracing::warn!("the stage cache keeps no splits of this run: its writer panicked"),
            }
        }
    }
}

/// The latest attempt of this run's trial, when it did not complete: the attempt this run
/// continues. Unreadable, it is left alone (the run starts afresh).
fn previous_attempt(request: &RunRequest<'_>) -> Option<RunRecord> {
    let store = request.store?;
    let found = || -> anyhow::Result<Option<String>> {
        if let Some(trial) = &request.trial {
            let sweep = store.sweep(&trial.sweep_id)?;
            return Ok(sweep.trials.iter().find(|t| t.trial == trial.trial).and_then(|t| t.attempts.last().cloned()));
        }
        // A submitted run's earlier attempts: the latest that began.
        let Some(base) = &request.run_id else { return Ok(None) };
        latest_attempt(store, base, crate::environment::restart_count())
    };
    let record = found().and_then(|latest| latest.map(|id| store.run_record(&id)).transpose());
    match record {
        Ok(record) => record.filter(|r| r.status != RunStatus::Completed),
        Err(error) => {
            tracing::warn!("the run's earlier attempts cannot be read (it starts afresh): {error:#}");
            None
        }
    }
}

/// A requeued job's new attempt says what became of the one before it: Slurm's requeue ended
/// that one with a SIGTERM (recorded as a cancel) or a SIGKILL (not recorded at all).
fn settle_requeued(store: &dyn Store, previous: &RunRecord, run: &RunRecord) -> anyhow::Result<()> {
    let (Some(now), Some(before)) = (&run.scheduler, &previous.scheduler) else { return Ok(()) };
    if now.job_id == before.job_id && now.cluster == before.cluster && now.restart_count > before.restart_count {
        let reason = format!(
            "requeued by {} (job {}, restart {}); run {} continues it",
            now.scheduler, now.job_id, now.restart_count, run.run_id
        );
        store.settle_run(
            &previous.run_id,
            RunStatus::Interrupted,
            &reason,
            &[RunStatus::Running, RunStatus::Cancelled],
        )?;
    }
    Ok(())
}

/// Runs the experiment. Always returns the record (also for failed and cancelled runs, whose
/// `run.json` is written too where the folder allows); `Err` only when the store cannot record
/// the run or a completed run's `run.json` cannot be written.
pub fn execute(request: &RunRequest<'_>) -> anyhow::Result<RunRecord> {
    let run_id = match &request.run_id {
        Some(base) => attempt_id(base, crate::environment::restart_count()),
        None => record::new_run_id(),
    };
    let dir = request.output_root.join(&run_id);
    // Absolute, so the record (and the stage cache, which copies from it) works from anywhere.
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let started = Instant::now();
    let (store_writes_before, store_waited_before) = (store::write_seconds(), recorder::waited_seconds());
    let previous = previous_attempt(request);
    let mut run = Run::new(request, run_id, dir.clone(), previous.as_ref())?;
    run.create_instances()?;
    run.recorder = request.store.map(|store| recorder::Recorder::new(store, request.settings));
    let heartbeat = match (request.store, &run.recorder) {
        (Some(store), Some(recorder)) => {
            recorder.begin(&run.record)?;
            if let Some(previous) = &previous {
                settle_requeued(store, previous, &run.record)?;
            }
            let settings = request.settings;
            settings.map(|s| crate::liveness::Heartbeat::start(&s.locator, &s.open, s.stale_after, &run.record.run_id))
        }
        _ => None,
    };
    let outcome = run.stages();
    run.record.status = match outcome {
        Ok(()) => RunStatus::Completed,
        Err(StageError::Cancelled) => match request.stop.reason() {
            Some(StopReason::TimeLimit) => {
                run.record.error =
                    Some("stopped after its batch: the scheduler's time limit was near (SIGUSR1)".into());
                RunStatus::Interrupted
            }
            Some(StopReason::ParentGone) => {
                run.record.error = Some("cancelled after its batch: the sweep that started it has ended".into());
                RunStatus::Cancelled
            }
            Some(StopReason::Cancelled(Some(signal))) => {
                // A batch job's SIGTERM may be its scheduler ending it (a time limit, a
                // preemption), which the scheduler says when asked now.
                let scheduled = run.record.scheduler.as_ref().filter(|_| signal == "SIGTERM");
                match scheduled.and_then(|s| crate::slurm::ending_reason(&s.job_id)) {
                    Some(ending) => {
                        run.record.error = Some(format!("{}; stopped after its batch", ending.reason));
                        ending.status
                    }
                    None => {
                        run.record.error = Some(format!("cancelled by {signal} after its batch"));
                        RunStatus::Cancelled
                    }
                }
            }
            _ => RunStatus::Cancelled,
        },
        Err(StageError::Failed(error)) => {
            run.record.error = Some(format!("{error:#}"));
            RunStatus::Failed
        }
    };
    run.join_splits_writer();
    run.record.finished_at = Some(record::now_rfc3339());
    run.record.seconds = started.elapsed().as_secs_f64();
    let recorded = run.write_record().and(run.recorder.as_ref().map_or(Ok(()), |r| r.finish()));
    drop(heartbeat);
    run.record.provenance = Some(ProvenanceTime {
        // Everything this process hashed, the plugin libraries looked up before the run started
        // included (one run per process: a sweep's trials and a replay are processes of their own).
        hashing_seconds: crate::hashing::hashing_seconds(),
        store_seconds: recorder::waited_seconds() - store_waited_before,
        store_write_seconds: store::write_seconds() - store_writes_before,
    });
    if let Err(error) = outputs::write_json(&dir.join("run.json"), &run.record) {
        // A run that failed already says why (a full or read-only folder, most likely).
        if run.record.status == RunStatus::Completed {
            return Err(error);
        }
        if dir.is_dir() {
            tracing::warn!("{error:#}");
        }
    }
    recorded?;
    Ok(run.record)
}

/// Regenerates a recorded run's reports with the request's report generator. Metrics,
/// history and provenance come from `recorded`; the data (for class counts, sample and
/// misclassified images) from the stage cache, or is loaded and prepared again with the
/// request's loader, and must then match the digests the run recorded; the predictions from
/// the run's `predictions.csv`, checked against its recorded SHA-256. Writes into `output`.
pub fn regenerate_reports(
    request: &RunRequest<'_>,
    recorded: &RunRecord,
    output: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(output).with_context(|| format!("{}: cannot create", output.display()))?;
    let mut run = Run::new(request, recorded.run_id.clone(), output.to_owned(), None)?;
    let loaded = load::load(&mut run).map_err(StageError::into_error)?.output;
    let prepared = prepare::prepare(&mut run, loaded).map_err(StageError::into_error)?.output;
    run.join_splits_writer();
    if recorded.data.digest_scheme == run.record.data.digest_scheme {
        for split in prepared.splits() {
            let recorded_digest = recorded.data.splits.get(split.name).map(|s| s.sha256.as_str()).unwrap_or_default();
            if recorded_digest != split.digest {
                bail!(
                    "the data changed since run {}: its {} split is now {}, the run recorded {recorded_digest}",
                    recorded.run_id,
                    split.name,
                    split.digest
                );
            }
        }
    } else {
        // An earlier host's digests name the same data differently: the raw files say whether
        // the data is what the run read.
        let digests = |r: &RunRecord| r.source_files.iter().map(|f| f.sha256.clone()).collect::<Vec<_>>();
        if digests(&run.record) != digests(recorded) {
            bail!("the data changed since run {}: its raw files are not the ones it recorded", recorded.run_id);
        }
    }
    let predictions = recorded.files_of(&[ArtifactKind::Predictions]).next().and_then(|file| {
        // Drawn without them (no misclassified rows, no regression plots) when they are gone
        // or changed: what is drawn must be what the run recorded.
        let readable = crate::hashing::sha256_file(&file.path).map_err(anyhow::Error::from).and_then(|(sha256, _)| {
            if sha256 == file.sha256 {
                Predictions::read(&file.path)
            } else {
                bail!("changed since the run recorded it (SHA-256 {sha256}, recorded {})", file.sha256)
            }
        });
        readable
            .map_err(|error| {
                tracing::warn!("{}: {error:#}; the reports show no predictions", file.path.display());
            })
            .ok()
    });
    let mut generator = run.take_report_generator()?;
    report::generate(&run, &mut generator, recorded, &prepared, predictions.as_ref(), output)
        .map_err(StageError::into_error)
}
