//! Hyperparameter sweeps. Every trial is an ordinary `host run` of its own config (one
//! libtorch per process), linked to its trial in the store by the run itself. The driver
//! (`driver.rs`: validation, resume, the submission loop, trial and job records, following
//! and cancelling from any machine) starts trials only through an [`Executor`] (`executor.rs`;
//! `local.rs` runs child processes, `slurm.rs` submits job arrays), learns every outcome from
//! the store, and stops trials by the median rule (`prune.rs`). `page.rs` writes the sweep's
//! HTML report.

mod driver;
mod executor;
mod local;
mod page;
mod prune;
mod slurm;

use record::TrialStatus;
use store::{Store, SweepRow, TrialRow};

pub use driver::{SweepOptions, SweepOutcome, cancel, follow, sweep};
pub use executor::{Executor, Submitted, TrialEnd, TrialEvent, TrialJob, WorkerCommand};
pub use local::LocalExecutor;
pub use page::write_sweep_page;
pub use prune::better;
pub use slurm::{SlurmExecutor, submit_run};

/// The keys the sweep varies, in file order.
pub fn varied_keys(row: &SweepRow) -> Vec<String> {
    row.trials.first().and_then(|t| t.parameters.as_object()).map(|p| p.keys().cloned().collect()).unwrap_or_default()
}

/// The completed trial with the best metric.
pub fn best_trial(row: &SweepRow) -> Option<&TrialRow> {
    row.trials.iter().filter(|t| t.status == TrialStatus::Completed && t.metric.is_some()).reduce(|a, b| {
        if better(row.maximize, b.metric.unwrap_or(f64::NAN), a.metric.unwrap_or(f64::NAN)) { b } else { a }
    })
}

/// The best trial's held-out figure: its run's test metric, as its own number.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HeldOut {
    pub metric: String,
    pub value: f64,
    pub trial: usize,
}

/// The best trial's held-out figure, once the best trial's run recorded it.
pub fn held_out(store: &dyn Store, row: &SweepRow) -> anyhow::Result<Option<HeldOut>> {
    let Some(metric) = crate::config::sweep::held_out_metric(&row.metric) else { return Ok(None) };
    let Some(best) = best_trial(row) else { return Ok(None) };
    let Some(run_id) = &best.run_id else { return Ok(None) };
    let value = store.final_metrics(run_id)?.get(&metric).copied();
    Ok(value.map(|value| HeldOut { metric, value, trial: best.trial }))
}
