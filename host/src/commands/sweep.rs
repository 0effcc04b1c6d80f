//! `host sweep CONFIG [--jobs N] [--executor local|slurm] [--detach]` runs (or resumes) a
//! hyperparameter sweep and prints its trials; `host sweep show [SWEEP]` lists one sweep's
//! trials (asking Slurm about its queued and running jobs first, and writing its report) or
//! every sweep; `host sweep watch SWEEP` follows a sweep's jobs to their end; `host sweep
//! cancel SWEEP` stops them. The sweep itself is `crate::sweep`.

use std::path::{Path, PathBuf};

use record::TrialStatus;
use store::SweepRow;

use crate::config::executor::ExecutorKind;
use crate::config::sweep::plain;
use crate::output::{print_json, table};
use crate::registry::RegistryOptions;
use crate::storage::StoreOptions;
use crate::sweep::{HeldOut, SweepOptions, SweepOutcome, best_trial, held_out, varied_keys, write_sweep_page};

pub struct SweepCommand {
    pub config: PathBuf,
    pub jobs: Option<usize>,
    pub store: StoreOptions,
    pub registry: RegistryOptions,
    pub output_dir: Option<PathBuf>,
    pub json: bool,
    pub show_progress: bool,
    pub executor: Option<ExecutorKind>,
    pub detach: bool,
}

pub fn sweep(command: SweepCommand) -> anyhow::Result<u8> {
    let outcome = crate::sweep::sweep(SweepOptions {
        config: command.config,
        jobs: command.jobs,
        store: command.store,
        registry: command.registry,
        output_dir: command.output_dir,
        show_progress: command.show_progress && !command.json,
        executor: command.executor,
        detach: command.detach,
    })?;
    if command.json {
        print_json(&outcome_json(&outcome.row, outcome.held_out.as_ref())?)?;
    } else {
        print_sweep(&outcome.row, outcome.held_out.as_ref());
        if outcome.detached {
            let id = &outcome.row.sweep_id;
            println!(
                "submitted; follow it with `host sweep watch {id}` or `host sweep show {id}`, stop it with `host sweep cancel {id}`"
            );
        } else {
            println!("report: {}", outcome.report.display());
        }
    }
    Ok(exit_code(&outcome))
}

fn exit_code(outcome: &SweepOutcome) -> u8 {
    if outcome.detached {
        0
    } else if outcome.cancelled {
        130
    } else if outcome.row.trials.iter().all(|t| t.status.is_done()) {
        0
    } else {
        1
    }
}

/// A sweep as `--json` prints it: the store's row and the best trial's held-out figure.
fn outcome_json(row: &SweepRow, held_out: Option<&HeldOut>) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(row)?;
    if let Some(object) = value.as_object_mut() {
        object.insert("held_out".into(), serde_json::to_value(held_out)?);
    }
    Ok(value)
}

fn print_sweep(row: &SweepRow, held_out: Option<&HeldOut>) {
    let best = best_trial(row).map(|t| (t.metric.unwrap_or(f64::NAN), t.trial));
    let keys = varied_keys(row);
    let jobs = row.trials.iter().any(|t| t.job.is_some());
    let mut headers = vec!["", "TRIAL", "STATUS", "RUN"];
    if jobs {
        headers.push("JOB");
    }
    headers.extend(keys.iter().map(String::as_str));
    headers.push(&row.metric);
    let rows: Vec<Vec<String>> = row
        .trials
        .iter()
        .map(|t| {
            let mark = if best.is_some_and(|(_, b)| b == t.trial) { "*" } else { "" };
            // A trial waiting in the scheduler's queue shows so.
            let status = match &t.job {
                Some(job) if t.status == TrialStatus::Running && t.run_id.is_none() => {
                    format!("queued ({})", job.state)
                }
                _ => t.status.to_string(),
            };
            let attempts =
                if t.attempts.len() > 1 { format!(" (attempt {})", t.attempts.len()) } else { String::new() };
            let mut cells = vec![
                mark.to_owned(),
                t.trial.to_string(),
                status,
                format!("{}{attempts}", t.run_id.clone().unwrap_or_default()),
            ];
            if jobs {
                cells.push(t.job.as_ref().map(|j| format!("{} {}", j.job_id, j.state)).unwrap_or_default());
            }
            cells.extend(keys.iter().map(|k| plain(&t.parameters[k])));
            cells.push(t.metric.map(|m| format!("{m:.4}")).unwrap_or_default());
            cells
        })
        .collect();
    println!(
        "sweep {} ({}; {} {})",
        row.sweep_id,
        row.name,
        if row.maximize { "maximize" } else { "minimize" },
        row.metric
    );
    println!("{}", table(&headers, &rows));
    if let Some((value, trial)) = best {
        let run = row.trials.iter().find(|t| t.trial == trial).and_then(|t| t.run_id.clone()).unwrap_or_default();
        println!("best: trial {trial} ({} {value:.4}), run {run} (host runs show {run})", row.metric);
    }
    if let Some(held_out) = held_out {
        println!(
            "held out: {} {:.4} (the best trial on the test set, which chose nothing: the figure to report)",
            held_out.metric, held_out.value
        );
    }
}

/// `host sweep show [SWEEP]`: one sweep's trials (its queued and running Slurm jobs asked
/// about first, where Slurm answers), or every sweep.
pub fn show(store: &StoreOptions, sweep_id: Option<&str>, json: bool, html: Option<&Path>) -> anyhow::Result<()> {
    let store = store.open()?;
    match sweep_id {
        Some(id) => {
            let row = match crate::sweep::follow(&*store, id, None, true, false) {
                Ok(outcome) => outcome.row,
                Err(error) => {
                    let row = store.sweep(id)?;
                    eprintln!("warning: showing the recorded state of its jobs: {error:#}");
                    row
                }
            };
            let held_out = held_out(&*store, &row)?;
            if let Some(path) = html {
                write_sweep_page(&*store, &row, held_out.as_ref(), path)?;
                eprintln!("wrote {}", path.display());
            }
            if json {
                print_json(&outcome_json(&row, held_out.as_ref())?)
            } else {
                print_sweep(&row, held_out.as_ref());
                Ok(())
            }
        }
        None => {
            let rows: Vec<SweepRow> = store.sweep_ids()?.iter().map(|id| store.sweep(id)).collect::<Result<_, _>>()?;
            if json {
                return print_json(&rows);
            }
            let lines: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let completed = r.trials.iter().filter(|t| t.status == TrialStatus::Completed).count();
                    vec![
                        r.sweep_id.clone(),
                        r.created_at.clone(),
                        format!("{completed}/{}", r.trials.len()),
                        r.metric.clone(),
                    ]
                })
                .collect();
            println!("{}", table(&["SWEEP", "CREATED", "COMPLETED", "METRIC"], &lines));
            Ok(())
        }
    }
}

/// `host sweep watch SWEEP`: follows the sweep's queued and running jobs to their end from
/// any machine with the store, then prints the sweep and writes its report.
pub fn watch(
    store: &StoreOptions,
    sweep_id: &str,
    output_dir: Option<&Path>,
    json: bool,
    show_progress: bool,
) -> anyhow::Result<u8> {
    let store = store.open()?;
    // The report goes where the sweep's own run wrote it, unless told otherwise.
    let recorded = store.sweep(sweep_id)?.config["base"]["output_dir"].as_str().map(PathBuf::from);
    let root = output_dir.map(Path::to_owned).or(recorded).unwrap_or_else(|| PathBuf::from("runs"));
    let folder = std::path::absolute(root.join("sweeps").join(sweep_id))?;
    let outcome = crate::sweep::follow(&*store, sweep_id, Some(&folder), false, show_progress && !json)?;
    if json {
        print_json(&outcome_json(&outcome.row, outcome.held_out.as_ref())?)?;
    } else {
        print_sweep(&outcome.row, outcome.held_out.as_ref());
        println!("report: {}", outcome.report.display());
    }
    Ok(exit_code(&outcome))
}

/// `host sweep cancel SWEEP [--hard]`: stops the sweep's queued and running trials.
pub fn cancel(store: &StoreOptions, sweep_id: &str, hard: bool, json: bool) -> anyhow::Result<u8> {
    let store = store.open()?;
    let (stopped, elsewhere) = crate::sweep::cancel(&*store, sweep_id, hard)?;
    let row = store.sweep(sweep_id)?;
    if json {
        print_json(&serde_json::json!({"stopped": stopped, "not_reached": elsewhere, "sweep": row}))?;
    } else {
        if stopped.is_empty() {
            println!("sweep {sweep_id} has no queued or running trials");
        } else {
            println!("cancelled {}: {}", stopped.len(), stopped.join(", "));
        }
        for line in &elsewhere {
            eprintln!("warning: {line}");
        }
        print_sweep(&row, None);
    }
    Ok(if elsewhere.is_empty() { 0 } else { 1 })
}
