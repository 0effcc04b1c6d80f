//! The sweep driver: every trial config is validated first (all problems at once), then the
//! trials not done yet go to an executor (local processes, or Slurm job arrays) and are
//! followed to their end. Each trial is recorded when it is submitted, its scheduler job as
//! Slurm's state changes, and its outcome when it ends: read from its run's record in the
//! store, with Slurm's final state explaining a run that could not record its own end. The
//! sweep's id is a digest of its config, so running the same file again resumes it: completed
//! and pruned trials are skipped, queued and running jobs are followed again (never submitted
//! twice), and the others run again (reusing their data stages through the stage cache).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use record::{RunStatus, TrialStatus};
use serde_json::{Value, json};
use store::{Store, SweepJob, SweepRow, SweepStart};

use super::executor::{Executor, HELD_UNTIL_RECORDED, TrialEnd, TrialEvent, TrialJob, WorkerCommand};
use super::local::LocalExecutor;
use super::prune::{better, median_stop};
use super::slurm::SlurmExecutor;
use crate::config::executor::{ExecutorConfig, ExecutorKind};
use crate::config::experiment::ExperimentConfig;
use crate::config::sweep::{Sweep, Trial, apply, split, test_metric_warning};
use crate::config::{ConfigError, read_yaml};
use crate::hashing::sha256_bytes;
use crate::interrupt::Stop;
use crate::liveness::SweepLease;
use crate::registry::{Registry, RegistryOptions, manifest_cache_dir};
use crate::storage::{StoreOptions, absolute, require_utf8};

pub struct SweepOptions {
    pub config: PathBuf,
    /// Trials at once (local: processes; Slurm: the array throttle unless the config sets one).
    pub jobs: Option<usize>,
    pub store: StoreOptions,
    pub registry: RegistryOptions,
    pub output_dir: Option<PathBuf>,
    pub show_progress: bool,
    /// `--executor`, over the config's `executor.kind`.
    pub executor: Option<ExecutorKind>,
    /// Submit and return: the scheduler runs the trials, `host sweep watch` follows them.
    pub detach: bool,
}

/// How a sweep ended (or, detached, stands).
pub struct SweepOutcome {
    pub row: SweepRow,
    /// The best trial's held-out figure (its test metric, when the sweep selects on validation).
    pub held_out: Option<super::HeldOut>,
    /// The sweep's HTML report.
    pub report: PathBuf,
    pub cancelled: bool,
    pub detached: bool,
}

/// Every trial's config, validated against the plugins' declared keys; all problems at once.
/// `threads` is given to trials whose config leaves it at 0 (every core).
fn trial_configs(
    file: &Path,
    base: &Value,
    sweep: &Sweep,
    registry: &Registry,
    threads: Option<u64>,
) -> anyhow::Result<Vec<(Trial, Value)>> {
    let mut configs = Vec::new();
    let mut failures = Vec::new();
    for trial in sweep.trials() {
        let mut config = apply(base, &trial);
        if let Some(threads) = threads
            && config.get("threads").and_then(Value::as_u64).unwrap_or(0) == 0
        {
            config["threads"] = json!(threads);
        }
        let checked =
            ExperimentConfig::from_value(file, &config, |kind, class| registry.resolve(kind, class).map(|c| c.info));
        match checked {
            Ok(_) => configs.push((trial, config)),
            Err(error) => failures.push(format!("trial {} ({}):\n{error}", trial.number, trial.label())),
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} trial configs are invalid:\n{}",
            failures.len(),
            configs.len() + failures.len(),
            failures.join("\n")
        );
    }
    Ok(configs)
}

fn trial_parameters(trial: &Trial) -> Value {
    Value::Object(trial.values.iter().cloned().collect())
}

/// The trials whose scheduler job may still run: not done, their latest job not ended.
fn live_jobs(row: &SweepRow) -> Vec<SweepJob> {
    row.trials
        .iter()
        .filter(|t| !t.status.is_done())
        .filter_map(|t| t.job.clone())
        .filter(|job| crate::slurm::is_active(&job.state))
        .collect()
}

/// Waits for trials an earlier driver started whose runs still live (a worker that outlived a
/// killed driver, finishing its batch): they are followed to their end, never started twice.
fn wait_for_live_trials(store: &dyn Store, sweep_id: &str, stale_after: Duration, show: bool) -> anyhow::Result<()> {
    let here = crate::liveness::this_process();
    let mut said = false;
    loop {
        let running: BTreeMap<String, store::RunningRun> =
            store.running_runs()?.into_iter().map(|run| (run.run_id.clone(), run)).collect();
        let live: Vec<String> = store
            .sweep(sweep_id)?
            .trials
            .iter()
            .filter(|t| t.status == TrialStatus::Running)
            .filter(|t| {
                let run = t.run_id.as_ref().and_then(|id| running.get(id));
                run.is_some_and(|run| !crate::liveness::is_dead(run, &here, stale_after))
            })
            .map(|t| t.trial.to_string())
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        if show && !said {
            eprintln!(
                "sweep {sweep_id}: waiting for trials {} still running from an earlier host sweep",
                live.join(", ")
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(500));
        crate::liveness::mark_dead_runs(store, stale_after)?;
    }
}

/// The sweep section of a recorded sweep, as its config file had it.
fn recorded_sweep(row: &SweepRow) -> anyhow::Result<Sweep> {
    let mut value = row.config["base"].clone();
    value["sweep"] = row.config["sweep"].clone();
    let (_, sweep) = split(Path::new(&format!("sweep {}", row.sweep_id)), &value)?;
    Ok(sweep)
}

/// Runs (or resumes) the sweep of `options.config` and writes its report.
pub fn sweep(options: SweepOptions) -> anyhow::Result<SweepOutcome> {
    let file = &options.config;
    require_utf8(Path::new("."), "working folder")?;
    require_utf8(file, "config file")?;
    let value = read_yaml(file)?;
    let (mut base, sweep) = split(file, &value)?;
    if let Some(warning) = test_metric_warning(&sweep.metric) {
        tracing::warn!("{}: {warning}", file.display());
    }
    // Where the trials run is not what they compute: not part of the sweep's id or configs.
    let section = base.as_object_mut().and_then(|root| root.remove("executor"));
    let mut problems = Vec::new();
    let mut executor_config = ExecutorConfig::from_section(section.as_ref(), &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError { file: file.to_owned(), problems }.into());
    }
    let kind = options.executor.unwrap_or(executor_config.kind);
    if options.detach && kind == ExecutorKind::Local {
        bail!("--detach needs --executor slurm (or executor.kind: slurm): local trials are children of this process");
    }
    // The name becomes the sweep's folder and job name: one safe file name, whatever it holds.
    let name = crate::storage::safe_file_name(base["experiment_name"].as_str().unwrap_or("sweep"));
    // Validation only reads manifests: cached ones spare loading libtorch before any trial.
    let registry = Registry::open(RegistryOptions { manifest_cache: manifest_cache_dir(), ..options.registry })?;
    let (threads, jobs) = match kind {
        ExecutorKind::Local => {
            let jobs = options.jobs.unwrap_or(1).max(1);
            let cores = crate::environment::available_threads();
            (Some((cores / jobs).max(1) as u64), jobs)
        }
        // A trial's threads follow its allocation (SLURM_CPUS_PER_TASK) on its node.
        ExecutorKind::Slurm => {
            if executor_config.slurm.array_throttle.is_none() {
                executor_config.slurm.array_throttle = options.jobs.map(|j| j.max(1) as u32);
            }
            (executor_config.slurm.cpus_per_task.map(u64::from), 0)
        }
    };
    let configs = trial_configs(file, &base, &sweep, &registry, threads)?;
    let canonical = json!({"base": base, "sweep": value["sweep"]});
    let sweep_id = format!("{name}-{}", &sha256_bytes(canonical.to_string().as_bytes())[..12]);

    let output_root =
        options.output_dir.clone().unwrap_or_else(|| PathBuf::from(base["output_dir"].as_str().unwrap_or("runs")));
    require_utf8(&output_root, "output folder")?;
    let folder = absolute(&output_root.join("sweeps").join(&sweep_id));
    std::fs::create_dir_all(&folder).with_context(|| format!("{}: cannot create", folder.display()))?;
    let mut executor: Box<dyn Executor> = match kind {
        ExecutorKind::Local => Box::new(LocalExecutor::new(jobs)),
        ExecutorKind::Slurm => {
            let slurm = SlurmExecutor::new(executor_config.slurm.clone(), &folder, &sweep_id)?;
            // A bad partition or an unreachable controller is said before anything is recorded.
            slurm.check().with_context(|| file.display().to_string())?;
            Box::new(slurm)
        }
    };
    let settings = options.store.settings()?;
    let store = crate::storage::open(&settings)?;
    store.begin_sweep(&SweepStart {
        sweep_id: sweep_id.clone(),
        name: name.clone(),
        config: canonical.clone(),
        metric: sweep.metric.clone(),
        maximize: sweep.maximize,
    })?;
    // One driver at a time: a second `host sweep` of the file is refused while this one lives.
    // Losing the lease (another driver took a sweep this one could not renew) stops this one.
    let stop = Stop::new();
    let _lease =
        SweepLease::take(&*store, &settings.locator, &settings.open, settings.stale_after, &sweep_id, stop.clone())?;
    wait_for_live_trials(&*store, &sweep_id, settings.stale_after, options.show_progress)?;
    let mut trials = TrialLoop::new(&*store, &sweep, &sweep_id, options.show_progress);
    // Jobs an earlier driver submitted that may still run are followed, never submitted again.
    let live = live_jobs(&store.sweep(&sweep_id)?);
    if !live.is_empty() && !executor.detachable() {
        let numbers: Vec<String> = live.iter().map(|j| format!("{} ({})", j.trial, j.job_id)).collect();
        bail!(
            "trials {} of sweep {sweep_id} are queued or running as {} jobs: follow them with --executor slurm \
             (or `host sweep watch {sweep_id}`), or stop them with `host sweep cancel {sweep_id}`",
            numbers.join(", "),
            live[0].scheduler
        );
    }
    for event in executor.adopt(&live)? {
        trials.event(event)?;
    }
    let followed = executor.running();
    let done: Vec<usize> =
        store.sweep(&sweep_id)?.trials.iter().filter(|t| t.status.is_done()).map(|t| t.trial).collect();

    // What every worker gets after `run CONFIG --trial SWEEP/N`: the store (its password in
    // the environment, never on a command line), the class mapping, plugins and output folders,
    // and the local executor (a worker is where the run runs).
    let mut common: Vec<OsString> = vec!["--executor".into(), "local".into()];
    common.extend(["--db".into(), store.locator().to_argument().into()]);
    for mapping in registry.mapping_files() {
        common.extend(["--class-mapping".into(), absolute(mapping).into()]);
    }
    common.extend(["--plugins-dir".into(), absolute(registry.plugins_dir()).into()]);
    common.extend(["--output-dir".into(), absolute(&output_root).into()]);
    let env = store.locator().worker_env();
    let program = std::env::current_exe().context("cannot find the host binary to start workers")?;
    let log_folder = match (kind, &executor_config.slurm.log_dir) {
        (ExecutorKind::Slurm, Some(dir)) => absolute(dir),
        _ => folder.clone(),
    };
    std::fs::create_dir_all(&log_folder).with_context(|| format!("{}: cannot create", log_folder.display()))?;
    let mut pending = Vec::new();
    for (trial, config) in configs.iter().filter(|(t, _)| !done.contains(&t.number) && !followed.contains(&t.number)) {
        let config_file = folder.join(format!("trial-{:03}.yaml", trial.number));
        // JSON is YAML: the trial's config, readable and runnable on its own.
        std::fs::write(&config_file, serde_json::to_string_pretty(config)?)
            .with_context(|| format!("{}: cannot write", config_file.display()))?;
        let mut args: Vec<OsString> = vec!["-q".into(), "run".into(), config_file.clone().into()];
        args.extend(["--trial".into(), format!("{sweep_id}/{}", trial.number).into()]);
        args.extend(common.iter().cloned());
        pending.push(TrialJob {
            trial: trial.clone(),
            config_file,
            log_file: log_folder.join(format!("trial-{:03}.log", trial.number)),
            command: WorkerCommand { program: program.clone(), args, env: env.clone() },
        });
    }
    if options.show_progress {
        let how = match kind {
            ExecutorKind::Local => format!("{jobs} jobs of {} threads", threads.unwrap_or(1)),
            ExecutorKind::Slurm => match executor_config.slurm.array_throttle {
                Some(throttle) => format!("Slurm, at most {throttle} at once"),
                None => "Slurm".to_owned(),
            },
        };
        let following = if followed.is_empty() { String::new() } else { format!(", {} followed", followed.len()) };
        eprintln!(
            "sweep {sweep_id}: {} trials, {} done{following}, {} to run on {how} (trial configs and logs in {})",
            configs.len(),
            done.len(),
            pending.len(),
            log_folder.display()
        );
    }
    let report = folder.join("index.html");
    if options.detach {
        trials.submit(&mut *executor, pending)?;
        let row = store.sweep(&sweep_id)?;
        let held_out = super::held_out(&*store, &row)?;
        super::write_sweep_page(&*store, &row, held_out.as_ref(), &report)?;
        return Ok(SweepOutcome { row, held_out, report, cancelled: false, detached: true });
    }
    // Ctrl-C from here on stops the trials (before, during validation, it ends the host).
    crate::interrupt::on_signals(
        stop.clone(),
        "stopping: trials finish their batch and are recorded cancelled (again to stop them at once)",
        false,
    );
    let limit = executor.limit();
    trials.run(&mut *executor, pending, &stop, limit)?;
    let row = store.sweep(&sweep_id)?;
    let held_out = super::held_out(&*store, &row)?;
    super::write_sweep_page(&*store, &row, held_out.as_ref(), &report)?;
    Ok(SweepOutcome { row, held_out, report, cancelled: stop.requested(), detached: false })
}

/// `host sweep watch SWEEP`: follows the sweep's queued and running Slurm jobs from any
/// machine with the store (pruning as the sweep says) to their end, then writes its report
/// into `folder`. With `once`, asks Slurm once and records what changed (`host sweep show`).
pub fn follow(
    store: &dyn Store,
    sweep_id: &str,
    folder: Option<&Path>,
    once: bool,
    show: bool,
) -> anyhow::Result<SweepOutcome> {
    let row = store.sweep(sweep_id)?;
    let sweep = recorded_sweep(&row)?;
    let live = live_jobs(&row);
    let mut cancelled = false;
    if !live.is_empty() {
        let scripts = folder.map(Path::to_owned).unwrap_or_else(std::env::temp_dir);
        let mut executor = SlurmExecutor::new(ExecutorConfig::default().slurm, &scripts, sweep_id)?;
        let mut trials = TrialLoop::new(store, &sweep, sweep_id, show && !once);
        for event in executor.adopt(&live)? {
            trials.event(event)?;
        }
        if !once {
            if show {
                eprintln!(
                    "following {} queued or running trials of sweep {sweep_id} (Ctrl-C stops following; the jobs go on)",
                    executor.running().len()
                );
            }
            let stop = Stop::new();
            crate::interrupt::on_signals(
                stop.clone(),
                "stopped following; the jobs go on (host sweep cancel stops them)",
                true,
            );
            trials.follow(&mut executor, &stop)?;
            cancelled = stop.requested();
        }
    } else if show && !once {
        eprintln!("sweep {sweep_id} has no queued or running jobs to follow");
    }
    let row = store.sweep(sweep_id)?;
    let report = folder.map(|f| f.join("index.html")).unwrap_or_default();
    let held_out = super::held_out(store, &row)?;
    if let Some(folder) = folder.filter(|_| !once) {
        std::fs::create_dir_all(folder).with_context(|| format!("{}: cannot create", folder.display()))?;
        super::write_sweep_page(store, &row, held_out.as_ref(), &report)?;
    }
    Ok(SweepOutcome { row, held_out, report, cancelled, detached: false })
}

/// `host sweep cancel SWEEP`: cancels the sweep's queued and running Slurm jobs (their runs
/// stop after their batch and record `cancelled`; with `hard`, at once) and asks this
/// machine's local trial processes to stop; then follows the cancelled jobs to their end.
/// Returns what was asked to stop, and local trials it cannot reach from here.
pub fn cancel(store: &dyn Store, sweep_id: &str, hard: bool) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let row = store.sweep(sweep_id)?;
    let live = live_jobs(&row);
    let mut stopped: Vec<String> = live.iter().map(|j| format!("trial {} (job {})", j.trial, j.job_id)).collect();
    let mut elsewhere = Vec::new();
    // Trials that run as local processes: signalled where this machine can see them.
    let here = crate::liveness::this_process();
    let running: BTreeMap<String, store::RunningRun> =
        store.running_runs()?.into_iter().map(|r| (r.run_id.clone(), r)).collect();
    for trial in
        row.trials.iter().filter(|t| t.status == TrialStatus::Running && !live.iter().any(|j| j.trial == t.trial))
    {
        let Some(run) = trial.run_id.as_ref().and_then(|id| running.get(id)) else { continue };
        if crate::liveness::is_local(&run.owner, &here) {
            let signal = if hard { libc::SIGKILL } else { libc::SIGTERM };
            // SAFETY: `kill` only sends a signal to the run's recorded process id, which
            // `is_local` checked belongs to this machine, boot and PID namespace.
            unsafe {
                libc::kill(run.owner.pid as libc::pid_t, signal);
            }
            if hard {
                store.settle_run(
                    &run.run_id,
                    RunStatus::Cancelled,
                    "cancelled hard (host sweep cancel --hard)",
                    &[RunStatus::Running],
                )?;
            }
            stopped.push(format!("trial {} (process {})", trial.trial, run.owner.pid));
        } else {
            elsewhere.push(format!(
                "trial {} runs as process {} on {}: stop it there, or Ctrl-C its `host sweep`",
                trial.trial, run.owner.pid, run.owner.hostname
            ));
        }
    }
    if !live.is_empty() {
        let ids: Vec<String> = live.iter().map(|j| j.job_id.clone()).collect();
        crate::slurm::cancel(&ids, hard)?;
        let sweep = recorded_sweep(&row)?;
        let mut executor = SlurmExecutor::new(ExecutorConfig::default().slurm, &std::env::temp_dir(), sweep_id)?;
        let mut trials = TrialLoop::new(store, &sweep, sweep_id, false);
        trials.hard_cancelled = hard;
        for event in executor.adopt(&live)? {
            trials.event(event)?;
        }
        let stop = Stop::new();
        crate::interrupt::on_signals(stop.clone(), "stopped waiting; the jobs are cancelled", true);
        trials.follow(&mut executor, &stop)?;
    }
    Ok((stopped, elsewhere))
}

/// Submits trials, follows them to their end and records each, pruning as it goes.
struct TrialLoop<'a> {
    store: &'a dyn Store,
    sweep: &'a Sweep,
    sweep_id: &'a str,
    show: bool,
    bar: Option<ProgressBar>,
    /// Trials the pruning rule stopped: their cancelled runs are recorded as pruned.
    pruned: Vec<usize>,
    best: Option<(f64, usize)>,
    /// Trials (or all) killed at once on request: runs without an end were cancelled.
    hard_cancelled: bool,
}

impl<'a> TrialLoop<'a> {
    fn new(store: &'a dyn Store, sweep: &'a Sweep, sweep_id: &'a str, show: bool) -> Self {
        TrialLoop { store, sweep, sweep_id, show, bar: None, pruned: Vec::new(), best: None, hard_cancelled: false }
    }

    fn say(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None if self.show => eprintln!("{line}"),
            None => {}
        }
    }

    /// Records trials as submitted, hands them to the executor and records their jobs.
    fn submit(&mut self, executor: &mut dyn Executor, jobs: Vec<TrialJob>) -> anyhow::Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let numbers: Vec<usize> = jobs.iter().map(|j| j.trial.number).collect();
        for job in &jobs {
            self.store.trial_started(self.sweep_id, job.trial.number, &trial_parameters(&job.trial))?;
            if executor.limit().is_some() {
                self.say(format!("trial {} started: {}", job.trial.number, job.trial.label()));
            }
        }
        let submitted = match executor.submit(jobs) {
            Ok(submitted) => submitted,
            Err(error) => {
                for trial in numbers {
                    self.store.trial_ended(self.sweep_id, trial, TrialStatus::Failed, None)?;
                }
                return Err(error);
            }
        };
        let now = record::now_rfc3339();
        let mut ids = Vec::new();
        for submitted in submitted {
            let Some(job_id) = submitted.job_id else { continue };
            self.store.job_submitted(
                self.sweep_id,
                &SweepJob {
                    trial: submitted.trial,
                    scheduler: executor.name().to_owned(),
                    job_id: job_id.clone(),
                    submitted_at: now.clone(),
                    state: "PENDING".into(),
                    reason: submitted.held.then(|| HELD_UNTIL_RECORDED.to_owned()),
                    updated_at: now.clone(),
                },
            )?;
            ids.push(job_id);
        }
        // Recorded: now they may run (a failure before this withdraws them).
        executor.release()?;
        if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
            let range = if first == last { first.clone() } else { format!("{first} .. {last}") };
            self.say(format!("submitted {} trials as {} jobs {range}", ids.len(), executor.name()));
        }
        Ok(())
    }

    /// Runs the pending trials (at most `limit` at once) and follows every trial to its end;
    /// on `stop`, cancels them (a second `stop`, at once) and waits for them.
    fn run(
        &mut self,
        executor: &mut dyn Executor,
        mut pending: Vec<TrialJob>,
        stop: &Stop,
        limit: Option<usize>,
    ) -> anyhow::Result<()> {
        self.bar = (self.show && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new((pending.len() + executor.running().len()) as u64);
            bar.set_style(
                ProgressStyle::with_template("{spinner} trials [{bar:30}] {pos}/{len} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let mut cancels_sent = 0;
        loop {
            let presses = stop.presses();
            if presses > cancels_sent {
                let hard = presses > 1;
                self.hard_cancelled |= hard;
                executor.cancel(None, hard)?;
                cancels_sent = presses;
            }
            if !stop.requested() && !pending.is_empty() {
                let room = limit.map_or(pending.len(), |l| l.saturating_sub(executor.running().len()));
                let batch: Vec<TrialJob> = pending.drain(..room.min(pending.len())).collect();
                self.submit(executor, batch)?;
            }
            if executor.running().is_empty() && (pending.is_empty() || stop.requested()) {
                break;
            }
            match executor.next_event(Duration::from_millis(500))? {
                Some(event) => self.event(event)?,
                None if !stop.requested() => self.prune(executor)?,
                None => {}
            }
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        Ok(())
    }

    /// Follows the trials already submitted to their end (no new ones).
    fn follow(&mut self, executor: &mut dyn Executor, stop: &Stop) -> anyhow::Result<()> {
        while !executor.running().is_empty() && !stop.requested() {
            match executor.next_event(Duration::from_millis(500))? {
                Some(event) => self.event(event)?,
                None => self.prune(executor)?,
            }
        }
        Ok(())
    }

    fn event(&mut self, event: TrialEvent) -> anyhow::Result<()> {
        match event {
            TrialEvent::State { trial, job_id, state, reason } => {
                self.store.job_state(self.sweep_id, trial, &job_id, &state, reason.as_deref())?;
                // What a user would want to know: a start, a requeue, and any reason a job
                // waits other than its turn (held, a constraint no node meets, a node down).
                const WAITING_ITS_TURN: [&str; 6] =
                    ["Priority", "Resources", "JobArrayTaskLimit", "BeginTime", "Dependency", HELD_UNTIL_RECORDED];
                let worth_saying = state == "RUNNING"
                    || (crate::slurm::is_active(&state)
                        && reason
                            .as_deref()
                            .is_some_and(|r| r.starts_with("requeued") || !WAITING_ITS_TURN.contains(&r)));
                if worth_saying {
                    let why = reason.map(|r| format!(" ({r})")).unwrap_or_default();
                    self.say(format!("trial {trial} job {job_id} {state}{why}"));
                }
                Ok(())
            }
            TrialEvent::Ended(end) => self.ended(&end),
        }
    }

    /// Records how a trial ended, from its run's record: its run's status and metric, a run
    /// that could not record its end settled by what the executor saw (Slurm's final state,
    /// or a process that died); without a run, failed, cancelled or interrupted by the same.
    fn ended(&mut self, end: &TrialEnd) -> anyhow::Result<()> {
        let row = self.store.sweep(self.sweep_id)?;
        let trial = row.trials.iter().find(|t| t.trial == end.trial);
        let run_id = trial.and_then(|t| t.run_id.clone());
        if let Some((job_id, state)) = &end.job {
            self.store.job_state(self.sweep_id, end.trial, job_id, state, None)?;
        }
        let explanation = match &end.job {
            Some((job_id, state)) => {
                crate::slurm::explain(job_id, state, end.exit_code.as_deref(), end.time_limit.as_deref())
            }
            None => crate::slurm::Explanation {
                status: RunStatus::Interrupted,
                reason: format!(
                    "its process ended (exit status {}) without recording an end",
                    end.exit_code.as_deref().unwrap_or("unknown")
                ),
                replaces: vec![RunStatus::Running],
            },
        };
        let explanation = if self.hard_cancelled {
            crate::slurm::Explanation {
                status: RunStatus::Cancelled,
                reason: "cancelled at once (a second Ctrl-C, or host sweep cancel --hard)".into(),
                // Killed, the run may already be marked interrupted by a host that saw its
                // process gone; the cancel is the better account.
                replaces: vec![RunStatus::Running, RunStatus::Interrupted],
            }
        } else {
            explanation
        };
        let (mut status, metric) = match &run_id {
            Some(run_id) => {
                let recorded = self.store.run_status(run_id)?;
                if explanation.replaces.contains(&recorded) {
                    self.store.settle_run(run_id, explanation.status, &explanation.reason, &explanation.replaces)?;
                }
                let status = self.store.run_status(run_id)?;
                let metric = self.store.final_metrics(run_id)?.get(&self.sweep.metric).copied();
                (TrialStatus::from(status), metric)
            }
            None => (
                match (end.job.as_ref().map(|(_, s)| s.as_str()), end.exit_code.as_deref()) {
                    (None, Some("130")) => TrialStatus::Cancelled,
                    (Some(_), _) => TrialStatus::from(explanation.status),
                    _ => TrialStatus::Failed,
                },
                None,
            ),
        };
        if self.pruned.contains(&end.trial) && status == TrialStatus::Cancelled {
            status = TrialStatus::Pruned;
        }
        self.store.trial_ended(self.sweep_id, end.trial, status, metric)?;
        if let Some(value) = metric
            && self.best.is_none_or(|(best, _)| better(self.sweep.maximize, value, best))
        {
            self.best = Some((value, end.trial));
        }
        let shown = metric.map(|m| format!(" {} {m:.4}", self.sweep.metric)).unwrap_or_default();
        let job = end.job.as_ref().map(|(id, state)| format!("; job {id} {state}")).unwrap_or_default();
        let why = match (&run_id, status) {
            (None, _) => format!(": {}", explanation.reason),
            _ => String::new(),
        };
        self.say(format!("trial {} {status}{shown} (run {}{job}){why}", end.trial, run_id.as_deref().unwrap_or("-")));
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if let Some((value, trial)) = self.best {
                bar.set_message(format!("best {} {value:.4} (trial {trial})", self.sweep.metric));
            }
        }
        Ok(())
    }

    /// Stops running trials that the median rule stops.
    fn prune(&mut self, executor: &mut dyn Executor) -> anyhow::Result<()> {
        let Some(prune) = &self.sweep.prune else { return Ok(()) };
        let row = self.store.sweep(self.sweep_id)?;
        let completed: Vec<&str> = row
            .trials
            .iter()
            .filter(|t| t.status == TrialStatus::Completed)
            .filter_map(|t| t.run_id.as_deref())
            .collect();
        if completed.len() < prune.min_trials {
            return Ok(());
        }
        let curves: Vec<Vec<(i64, f64)>> =
            completed.iter().map(|run_id| self.store.metric_curve(run_id, &prune.metric)).collect::<Result<_, _>>()?;
        let running = executor.running();
        let watched: Vec<(usize, &str)> = row
            .trials
            .iter()
            .filter(|t| running.contains(&t.trial) && !self.pruned.contains(&t.trial))
            .filter_map(|t| Some((t.trial, t.run_id.as_deref()?)))
            .collect();
        for (trial, run_id) in watched {
            let Some(&(epoch, value)) = self.store.metric_curve(run_id, &prune.metric)?.last() else { continue };
            if let Some(median) = median_stop(prune, epoch, value, &curves) {
                self.say(format!(
                    "trial {trial} pruned: {} {value:.4} at epoch {epoch}, median of completed trials {median:.4}",
                    prune.metric
                ));
                executor.cancel(Some(trial), false)?;
                self.pruned.push(trial);
            }
        }
        Ok(())
    }
}
