//! `host sweep CONFIG [--jobs N]` runs (or resumes) a hyperparameter sweep and prints its
//! trials; `host sweep show [SWEEP]` lists one sweep's trials (and writes its report) or every
//! sweep. The sweep itself is `crate::sweep`.

use std::path::{Path, PathBuf};

use record::TrialStatus;
use store::SweepRow;

use crate::config::sweep::plain;
use crate::output::{print_json, table};
use crate::registry::RegistryOptions;
use crate::storage::StoreOptions;
use crate::sweep::{SweepOptions, best_trial, varied_keys, write_sweep_page};

pub struct SweepCommand {
    pub config: PathBuf,
    pub jobs: usize,
    pub store: StoreOptions,
    pub registry: RegistryOptions,
    pub output_dir: Option<PathBuf>,
    pub json: bool,
    pub show_progress: bool,
}

pub fn sweep(command: SweepCommand) -> anyhow::Result<u8> {
    let outcome = crate::sweep::sweep(SweepOptions {
        config: command.config,
        jobs: command.jobs,
        store: command.store,
        registry: command.registry,
        output_dir: command.output_dir,
        show_progress: command.show_progress && !command.json,
    })?;
    if command.json {
        print_json(&outcome.row)?;
    } else {
        print_sweep(&outcome.row);
        println!("report: {}", outcome.report.display());
    }
    Ok(if outcome.cancelled {
        130
    } else if outcome.row.trials.iter().all(|t| t.status.is_done()) {
        0
    } else {
        1
    })
}

fn print_sweep(row: &SweepRow) {
    let best = best_trial(row).map(|t| (t.metric.unwrap_or(f64::NAN), t.trial));
    let keys = varied_keys(row);
    let mut headers = vec!["", "TRIAL", "STATUS", "RUN"];
    headers.extend(keys.iter().map(String::as_str));
    headers.push(&row.metric);
    let rows: Vec<Vec<String>> = row
        .trials
        .iter()
        .map(|t| {
            let mark = if best.is_some_and(|(_, b)| b == t.trial) { "*" } else { "" };
            let mut cells =
                vec![mark.to_owned(), t.trial.to_string(), t.status.to_string(), t.run_id.clone().unwrap_or_default()];
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
}

/// `host sweep show [SWEEP]`: one sweep's trials, or every sweep.
pub fn show(store: &StoreOptions, sweep_id: Option<&str>, json: bool, html: Option<&Path>) -> anyhow::Result<()> {
    let store = store.open()?;
    match sweep_id {
        Some(id) => {
            let row = store.sweep(id)?;
            if let Some(path) = html {
                write_sweep_page(&*store, &row, path)?;
                eprintln!("wrote {}", path.display());
            }
            if json {
                print_json(&row)
            } else {
                print_sweep(&row);
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
