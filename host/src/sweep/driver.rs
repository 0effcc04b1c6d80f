//! The sweep driver: every trial config is validated first (all problems at once), then the
//! trials not done yet run, at most `jobs` at once, through an executor. Each trial is recorded
//! when it starts and when its process ends; its outcome (status, metric) is read from its
//! run's record in the store. The sweep's id is a digest of its config, so running the same
//! file again resumes it: completed and pruned trials are skipped, the others run again (and
//! reuse their data stages through the stage cache).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use record::{RunStatus, TrialStatus};
use serde_json::{Value, json};
use store::{Store, SweepRow, SweepStart};

use super::executor::{Executor, TrialEnd, TrialJob, WorkerCommand};
use super::local::LocalExecutor;
use super::prune::{better, median_stop};
use crate::config::experiment::ExperimentConfig;
use crate::config::read_yaml;
use crate::config::sweep::{Sweep, Trial, apply, split};
use crate::hashing::sha256_bytes;
use crate::registry::{Registry, RegistryOptions, manifest_cache_dir};
use crate::storage::{StoreOptions, require_utf8};

pub struct SweepOptions {
    pub config: PathBuf,
    pub jobs: usize,
    pub store: StoreOptions,
    pub registry: RegistryOptions,
    pub output_dir: Option<PathBuf>,
    pub show_progress: bool,
}

/// How a sweep ended.
pub struct SweepOutcome {
    pub row: SweepRow,
    /// The sweep's HTML report.
    pub report: PathBuf,
    pub cancelled: bool,
}

/// Every trial's config, validated against the plugins' declared keys; all problems at once.
fn trial_configs(
    file: &Path,
    base: &Value,
    sweep: &Sweep,
    registry: &Registry,
    threads: u64,
) -> anyhow::Result<Vec<(Trial, Value)>> {
    let mut configs = Vec::new();
    let mut failures = Vec::new();
    for trial in sweep.trials() {
        let mut config = apply(base, &trial);
        if config.get("threads").and_then(Value::as_u64).unwrap_or(0) == 0 {
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

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

fn trial_parameters(trial: &Trial) -> Value {
    Value::Object(trial.values.iter().cloned().collect())
}

/// Runs (or resumes) the sweep of `options.config` and writes its report.
pub fn sweep(options: SweepOptions) -> anyhow::Result<SweepOutcome> {
    let file = &options.config;
    require_utf8(Path::new("."), "working folder")?;
    require_utf8(file, "config file")?;
    let value = read_yaml(file)?;
    let (base, sweep) = split(file, &value)?;
    let name = base["experiment_name"].as_str().unwrap_or("sweep").to_owned();
    // Validation only reads manifests: cached ones spare loading libtorch before any trial.
    let registry = Registry::open(RegistryOptions { manifest_cache: manifest_cache_dir(), ..options.registry })?;
    let jobs = options.jobs.max(1);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = (cores / jobs).max(1) as u64;
    let configs = trial_configs(file, &base, &sweep, &registry, threads)?;
    let canonical = json!({"base": base, "sweep": value["sweep"]});
    let sweep_id = format!("{name}-{}", &sha256_bytes(canonical.to_string().as_bytes())[..12]);

    let output_root =
        options.output_dir.clone().unwrap_or_else(|| PathBuf::from(base["output_dir"].as_str().unwrap_or("runs")));
    require_utf8(&output_root, "output folder")?;
    let store = options.store.open()?;
    store.begin_sweep(&SweepStart {
        sweep_id: sweep_id.clone(),
        name: name.clone(),
        config: canonical.clone(),
        metric: sweep.metric.clone(),
        maximize: sweep.maximize,
    })?;
    let done: Vec<usize> =
        store.sweep(&sweep_id)?.trials.iter().filter(|t| t.status.is_done()).map(|t| t.trial).collect();
    let folder = output_root.join("sweeps").join(&sweep_id);
    std::fs::create_dir_all(&folder).with_context(|| format!("{}: cannot create", folder.display()))?;
    // What every worker gets after `run CONFIG --trial SWEEP/N`: the store (its password in
    // the environment, never on a command line), the class mapping, plugins and output folders.
    let mut common: Vec<OsString> = vec!["--db".into(), store.locator().to_argument().into()];
    if let Some(mapping) = registry.mapping_file() {
        common.extend(["--class-mapping".into(), absolute(mapping).into()]);
    }
    common.extend(["--plugins-dir".into(), absolute(registry.plugins_dir()).into()]);
    common.extend(["--output-dir".into(), absolute(&output_root).into()]);
    let env: Vec<(String, String)> =
        store.locator().password().map(|p| ("PGPASSWORD".to_owned(), p.to_owned())).into_iter().collect();
    let program = std::env::current_exe().context("cannot find the host binary to start workers")?;
    let mut pending = Vec::new();
    for (trial, config) in configs.iter().filter(|(t, _)| !done.contains(&t.number)) {
        let stem = absolute(&folder.join(format!("trial-{:03}", trial.number)));
        let config_file = stem.with_extension("yaml");
        // JSON is YAML: the trial's config, readable and runnable on its own.
        std::fs::write(&config_file, serde_json::to_string_pretty(config)?)
            .with_context(|| format!("{}: cannot write", config_file.display()))?;
        let mut args: Vec<OsString> = vec!["-q".into(), "run".into(), config_file.clone().into()];
        args.extend(["--trial".into(), format!("{sweep_id}/{}", trial.number).into()]);
        args.extend(common.iter().cloned());
        pending.push(TrialJob {
            trial: trial.clone(),
            config_file,
            log_file: stem.with_extension("log"),
            command: WorkerCommand { program: program.clone(), args, env: env.clone() },
        });
    }
    if options.show_progress {
        eprintln!(
            "sweep {sweep_id}: {} trials, {} done, {} to run with {jobs} jobs of {threads} threads (trial configs and logs in {})",
            configs.len(),
            configs.len() - pending.len(),
            pending.len(),
            folder.display()
        );
    }
    let mut executor = LocalExecutor::default();
    // Ctrl-C from here on stops the trials (before, during validation, it ends the host).
    let stop = Arc::new(AtomicBool::new(false));
    crate::interrupt::on_ctrl_c(
        stop.clone(),
        "stopping: running trials finish their batch and are recorded cancelled",
        false,
    );
    let mut trials = TrialLoop::new(&*store, &sweep, &sweep_id, jobs, options.show_progress);
    trials.run(&mut executor, pending, &stop)?;

    let row = store.sweep(&sweep_id)?;
    let report = folder.join("index.html");
    super::write_sweep_page(&*store, &row, &report)?;
    Ok(SweepOutcome { row, report, cancelled: stop.load(Ordering::SeqCst) })
}

/// Submits trials, follows them to their end and records each, pruning as it goes.
struct TrialLoop<'a> {
    store: &'a dyn Store,
    sweep: &'a Sweep,
    sweep_id: &'a str,
    jobs: usize,
    show: bool,
    bar: Option<ProgressBar>,
    /// Trials the pruning rule stopped: their cancelled runs are recorded as pruned.
    pruned: Vec<usize>,
    best: Option<(f64, usize)>,
    /// Each submitted trial's log.
    logs: std::collections::BTreeMap<usize, PathBuf>,
}

impl<'a> TrialLoop<'a> {
    fn new(store: &'a dyn Store, sweep: &'a Sweep, sweep_id: &'a str, jobs: usize, show: bool) -> Self {
        TrialLoop {
            store,
            sweep,
            sweep_id,
            jobs,
            show,
            bar: None,
            pruned: Vec::new(),
            best: None,
            logs: Default::default(),
        }
    }

    fn say(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None if self.show => eprintln!("{line}"),
            None => {}
        }
    }

    /// Runs the pending trials, at most `jobs` at once; on `stop`, cancels the running ones
    /// and waits for them.
    fn run(
        &mut self,
        executor: &mut dyn Executor,
        mut pending: Vec<TrialJob>,
        stop: &AtomicBool,
    ) -> anyhow::Result<()> {
        pending.reverse();
        self.bar = (self.show && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(pending.len() as u64);
            bar.set_style(
                ProgressStyle::with_template("{spinner} trials [{bar:30}] {pos}/{len} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let mut cancel_sent = false;
        loop {
            if stop.load(Ordering::SeqCst) && !cancel_sent {
                executor.cancel(None);
                cancel_sent = true;
            }
            while !stop.load(Ordering::SeqCst) && executor.running().len() < self.jobs {
                let Some(job) = pending.pop() else { break };
                self.store.trial_started(self.sweep_id, job.trial.number, &trial_parameters(&job.trial))?;
                self.say(format!("trial {} started: {}", job.trial.number, job.trial.label()));
                self.logs.insert(job.trial.number, job.log_file.clone());
                executor.submit(job)?;
            }
            if executor.running().is_empty() {
                break;
            }
            match executor.wait_any(Duration::from_millis(500))? {
                Some(end) => self.ended(&end)?,
                None if !stop.load(Ordering::SeqCst) => self.prune(executor)?,
                None => {}
            }
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        Ok(())
    }

    /// Records how a trial ended, from its run's record: its run's status (a run still
    /// recorded running after its process ended was killed: interrupted) and metric; without a
    /// run, failed (or cancelled, by its exit status).
    fn ended(&mut self, end: &TrialEnd) -> anyhow::Result<()> {
        let row = self.store.sweep(self.sweep_id)?;
        let run_id = row.trials.iter().find(|t| t.trial == end.trial).and_then(|t| t.run_id.clone());
        let (mut status, metric) = match &run_id {
            Some(run_id) => {
                // A run still recorded running after its process ended was killed: interrupted
                // (by this, or already by another process that opened the store).
                if self.store.run_status(run_id)? == RunStatus::Running {
                    self.store.mark_interrupted(run_id)?;
                }
                let status = self.store.run_status(run_id)?;
                let metric = self.store.final_metrics(run_id)?.get(&self.sweep.metric).copied();
                (TrialStatus::from(status), metric)
            }
            None if end.exit_code == Some(130) => (TrialStatus::Cancelled, None),
            None => (TrialStatus::Failed, None),
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
        let log = self.logs.get(&end.trial).map(|p| p.display().to_string()).unwrap_or_default();
        self.say(format!("trial {} {status}{shown} (run {}; log {log})", end.trial, run_id.as_deref().unwrap_or("-")));
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
                executor.cancel(Some(trial));
                self.pruned.push(trial);
            }
        }
        Ok(())
    }
}
