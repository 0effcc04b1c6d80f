//! `host run CONFIG`: validates the experiment config against the selected plugin classes, then
//! runs the pipeline and prints where the outputs are and a short results table. With
//! `--executor slurm` the validated run is submitted as a batch job instead (an ordinary
//! `host run` of the same config on a node) and its job id printed; `--wait` follows it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use record::{RunRecord, RunStatus, TrialRef};
use store::{Store, SweepJob};

use crate::config::executor::ExecutorKind;
use crate::config::experiment::ExperimentConfig;
use crate::output::{print_json, table};
use crate::pipeline::{RunRequest, execute, latest_attempt};
use crate::registry::{Registry, RegistryOptions, ResolvedClass};
use crate::storage::{StoreOptions, absolute, require_utf8};
use crate::sweep::{Executor, SlurmExecutor, TrialEvent, WorkerCommand, submit_run};

pub struct RunOptions {
    pub config: PathBuf,
    pub store: StoreOptions,
    pub registry: RegistryOptions,
    pub json: bool,
    pub output_dir: Option<PathBuf>,
    pub model_from: Option<PathBuf>,
    pub show_progress: bool,
    /// Recompute every stage instead of reusing cached outputs.
    pub force: bool,
    /// The sweep trial this run is (a sweep's worker).
    pub trial: Option<TrialRef>,
    /// `--executor`, over the config's `executor.kind`.
    pub executor: Option<ExecutorKind>,
    /// Follow a submitted run's job to its end.
    pub wait: bool,
    /// The id to record under (a submitted run's job).
    pub run_id: Option<String>,
}

/// Loads the registry and the config, resolving every selected class.
fn prepare(
    config: &Path,
    registry: RegistryOptions,
) -> anyhow::Result<(ExperimentConfig, Vec<ResolvedClass>, Registry)> {
    let registry = Registry::open(registry)?;
    let mut resolved = Vec::new();
    let experiment = ExperimentConfig::load(config, |kind, class| {
        let found = registry.resolve(kind, class)?;
        resolved.push(found.clone());
        Ok(found.info)
    })?;
    Ok((experiment, resolved, registry))
}

pub fn run(options: RunOptions) -> anyhow::Result<u8> {
    require_utf8(Path::new("."), "working folder")?;
    require_utf8(&options.config, "config file")?;
    // Asking git takes tens of milliseconds; it runs while the plugins load.
    let config_dir = options.config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
    let git = std::thread::spawn(move || crate::environment::git_state(&config_dir));
    let (experiment, classes, registry) = prepare(&options.config, options.registry.clone())?;
    let output_root = options.output_dir.clone().unwrap_or_else(|| experiment.output_dir.clone());
    require_utf8(&output_root, "output folder")?;
    let settings = options.store.settings()?;
    let store = crate::storage::open(&settings)?;
    if let Some(id) = &options.run_id
        && (id.is_empty()
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            || id.starts_with('.'))
    {
        bail!("--run-id `{id}`: use letters, digits, `-`, `_` and `.` (it names the run's folder)");
    }
    match options.executor.unwrap_or(experiment.executor.kind) {
        ExecutorKind::Slurm => return submit(&options, &experiment, &registry, &output_root, &*store),
        ExecutorKind::Local if options.wait => {
            bail!("--wait follows a submitted run: use it with --executor slurm (or executor.kind: slurm)")
        }
        ExecutorKind::Local => {}
    }
    let stop = crate::interrupt::Stop::new();
    crate::interrupt::on_signals(stop.clone(), "stopping after the current batch (Ctrl-C again to exit now)", true);
    let request = RunRequest {
        experiment: &experiment,
        classes: &classes,
        output_root,
        model_from: options.model_from.clone(),
        show_progress: options.show_progress && !options.json,
        stop,
        store: Some(&*store),
        settings: Some(&settings),
        git: git.join().unwrap_or_default(),
        reuse: !options.force,
        replay_of: None,
        trial: options.trial.clone(),
        run_id: options.run_id.clone(),
    };
    let record = execute(&request)?;
    if options.json {
        print_json(&record)?;
    } else {
        print_summary(&record);
        println!("recorded in {} (host runs show {})", store.locator(), record.run_id);
    }
    Ok(exit_code(&record, options.json))
}

fn exit_code(record: &RunRecord, json: bool) -> u8 {
    match record.status {
        RunStatus::Completed => 0,
        RunStatus::Cancelled | RunStatus::Interrupted => 130,
        _ => {
            if !json {
                let stage = record.failed_stage.map(|s| format!(" in stage {s}")).unwrap_or_default();
                eprintln!(
                    "error: run {} failed{stage}: {}",
                    record.run_id,
                    record.error.as_deref().unwrap_or("unknown error")
                );
            }
            1
        }
    }
}

/// `host run --executor slurm`: submits the validated run as a batch job (the same config,
/// run by `host run` on a node, recorded under an id chosen here), prints its job id, and with
/// `--wait` follows the job to its end.
fn submit(
    options: &RunOptions,
    experiment: &ExperimentConfig,
    registry: &Registry,
    output_root: &Path,
    store: &dyn Store,
) -> anyhow::Result<u8> {
    if options.trial.is_some() {
        bail!("a sweep's trial runs where its sweep put it: --trial goes with --executor local");
    }
    let run_id = options.run_id.clone().unwrap_or_else(record::new_run_id);
    let folder = absolute(&output_root.join("slurm"));
    let log = folder.join(format!("{run_id}.log"));
    let mut args: Vec<OsString> = vec!["-q".into(), "run".into(), absolute(&options.config).into()];
    args.extend(["--executor".into(), "local".into(), "--run-id".into(), run_id.clone().into()]);
    args.extend(["--db".into(), store.locator().to_argument().into()]);
    for mapping in registry.mapping_files() {
        args.extend(["--class-mapping".into(), absolute(mapping).into()]);
    }
    args.extend(["--plugins-dir".into(), absolute(registry.plugins_dir()).into()]);
    args.extend(["--output-dir".into(), absolute(output_root).into()]);
    if options.force {
        args.push("--force".into());
    }
    if let Some(model) = &options.model_from {
        args.extend(["--model-from".into(), absolute(model).into()]);
    }
    let env = store.locator().worker_env();
    let program = std::env::current_exe().context("cannot find the host binary to submit")?;
    let command = WorkerCommand { program, args, env };
    let mut executor = SlurmExecutor::new(experiment.executor.slurm.clone(), &folder, &experiment.experiment_name)?;
    executor.check().with_context(|| options.config.display().to_string())?;
    let job_id = submit_run(&executor, &command, &log)?;
    if options.json && !options.wait {
        print_json(&serde_json::json!({"run_id": run_id, "job_id": job_id, "log": log}))?;
        return Ok(0);
    }
    if !options.json {
        println!("run {run_id} submitted as Slurm job {job_id} (log {})", log.display());
    }
    if !options.wait {
        if !options.json {
            println!("follow it with `host runs watch {run_id}` once it starts, or `host run ... --wait`");
        }
        return Ok(0);
    }
    wait(options, &mut executor, store, &run_id, &job_id, &log)
}

/// Follows a submitted run's job to its end; prints the run as `host run` does.
fn wait(
    options: &RunOptions,
    executor: &mut SlurmExecutor,
    store: &dyn Store,
    run_id: &str,
    job_id: &str,
    log: &Path,
) -> anyhow::Result<u8> {
    let stop = crate::interrupt::Stop::new();
    crate::interrupt::on_signals(stop.clone(), "stopped following; the job goes on (scancel stops it)", true);
    let now = record::now_rfc3339();
    let job = SweepJob {
        trial: 0,
        scheduler: "slurm".into(),
        job_id: job_id.to_owned(),
        submitted_at: now.clone(),
        state: "PENDING".into(),
        reason: None,
        updated_at: now,
    };
    let mut events: std::collections::VecDeque<TrialEvent> = executor.adopt(&[job])?.into();
    let end = loop {
        let event = match events.pop_front() {
            Some(event) => Some(event),
            None if stop.requested() => return Ok(130),
            None => executor.next_event(Duration::from_millis(500))?,
        };
        match event {
            Some(TrialEvent::State { state, reason, .. }) if options.show_progress && !options.json => {
                eprintln!("job {job_id} {state}{}", reason.map(|r| format!(" ({r})")).unwrap_or_default());
            }
            Some(TrialEvent::Ended(end)) => break end,
            _ => {}
        }
    };
    let state = end.job.as_ref().map(|(_, state)| state.clone()).unwrap_or_default();
    // The latest attempt that began (a requeued job's later attempts have their own ids).
    let restarts = crate::slurm::show_job(job_id)
        .ok()
        .flatten()
        .and_then(|fields| fields.get("Restarts")?.parse::<u32>().ok())
        .unwrap_or(63);
    let Some(latest) = latest_attempt(store, run_id, restarts + 1)? else {
        eprintln!("error: job {job_id} ended {state} before its run began; see {}", log.display());
        return Ok(1);
    };
    let explanation = crate::slurm::explain(job_id, &state, end.exit_code.as_deref(), end.time_limit.as_deref());
    if explanation.replaces.contains(&store.run_status(&latest)?) {
        store.settle_run(&latest, explanation.status, &explanation.reason, &explanation.replaces)?;
    }
    let record = store.run_record(&latest)?;
    if options.json {
        print_json(&record)?;
    } else {
        print_summary(&record);
        println!("recorded in {} (host runs show {}; job {job_id} {state})", store.locator(), record.run_id);
    }
    Ok(exit_code(&record, options.json))
}

/// The page to open first among a run's reports: `index.html`, else the first HTML page.
fn report_page(reports: &Path) -> Option<PathBuf> {
    let index = reports.join("index.html");
    if index.is_file() {
        return Some(index);
    }
    let mut pages: Vec<PathBuf> = std::fs::read_dir(reports)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "html"))
        .collect();
    pages.sort();
    pages.into_iter().next()
}

fn print_summary(summary: &RunRecord) {
    println!("run {} {} in {:.1}s", summary.run_id, summary.status, summary.seconds);
    if summary.output_dir.is_dir() {
        println!("outputs: {}", summary.output_dir.display());
    }
    if let Some(page) = report_page(&summary.output_dir.join("reports")) {
        println!("report:  {}", page.display());
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut add = |name: &str, value: Option<f64>| {
        if let Some(value) = value {
            rows.push(vec![name.to_owned(), format!("{value:.4}")]);
        }
    };
    add("test accuracy", summary.metric("test.accuracy"));
    add("test macro F1", summary.metric("test.macro_average.f1"));
    add("test log loss", summary.metric("test.log_loss"));
    add("test top-3 accuracy", summary.metric("test.top_k_accuracy.top_3"));
    add("test RMSE", summary.metric("test.rmse"));
    add("test MAE", summary.metric("test.mae"));
    add("test R²", summary.metric("test.r2"));
    if let Some(serde_json::Value::Array(targets)) =
        summary.metrics.as_ref().and_then(|m| m.pointer("/test/per_target"))
        && targets.len() > 1
    {
        for target in targets {
            let name = target["name"].as_str().unwrap_or("?");
            add(&format!("test RMSE {name}"), target["rmse"].as_f64());
            add(&format!("test R² {name}"), target["r2"].as_f64());
        }
    }
    if let Some((epoch, last)) = summary.history.iter().next_back() {
        add(&format!("val accuracy (epoch {epoch})"), last.get("val_accuracy").copied());
    }
    if !rows.is_empty() {
        println!("{}", table(&["METRIC", "VALUE"], &rows));
    }
    let stages: Vec<Vec<String>> = summary
        .stages
        .iter()
        .map(|s| {
            let status = match &s.reused_from {
                Some(from) => format!("reused from {from}"),
                None => s.status.to_string(),
            };
            vec![s.name.to_string(), status, format!("{:.2}s", s.seconds)]
        })
        .collect();
    println!("{}", table(&["STAGE", "STATUS", "TIME"], &stages));
}
