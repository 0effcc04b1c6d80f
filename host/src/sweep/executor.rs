//! The `Executor` interface: how sweep trials are started, followed and stopped. The driver
//! only talks to this, so a cluster executor is a new implementation, not a change to the
//! driver. An executor reports what happens to a trial's process or job; what the trial
//! achieved comes from its run's record in the store, which the run links to its trial itself.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use store::SweepJob;

use crate::config::sweep::Trial;

/// A trial ready to run: its config file (an ordinary experiment config), its log, and the
/// worker command that runs it (`host run` of that config, linked to its trial). Every
/// executor runs the same command, wherever it runs it.
#[derive(Debug, Clone)]
pub struct TrialJob {
    pub trial: Trial,
    pub config_file: PathBuf,
    pub log_file: PathBuf,
    pub command: WorkerCommand,
}

/// A program, its arguments and the environment variables it needs beyond the caller's (the
/// store's password, which never goes on a command line).
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
}

/// A trial whose process or job ended, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialEnd {
    pub trial: usize,
    /// The process's exit status, where the executor saw it.
    pub exit_code: Option<String>,
    /// The scheduler's job and its final state (`COMPLETED`, `TIMEOUT`, `VANISHED`, ...).
    pub job: Option<(String, String)>,
    /// The job's time limit, as the scheduler shows it.
    pub time_limit: Option<String>,
}

/// What an executor reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrialEvent {
    /// The scheduler says something new of a trial's job: its state, and why.
    State { trial: usize, job_id: String, state: String, reason: Option<String> },
    /// The trial's process or job ended.
    Ended(TrialEnd),
}

/// A trial accepted by the executor; `job_id` where a scheduler names it, `held` while it
/// waits for `Executor::release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub trial: usize,
    pub job_id: Option<String>,
    pub held: bool,
}

/// What a job is recorded with while it is held for the driver to record it: a job still held
/// with this reason was submitted by a driver that died before letting it go, and whoever
/// follows it next lets it go.
pub const HELD_UNTIL_RECORDED: &str = "held until recorded";

/// Starts trials and reports them as they change and end.
pub trait Executor {
    /// `local` or `slurm`.
    fn name(&self) -> &'static str;
    /// At most this many trials at once (`None`: any number; the scheduler queues them).
    fn limit(&self) -> Option<usize>;
    /// Whether submitted trials go on without this process (a scheduler runs them), so the
    /// driver may exit and another process follow them.
    fn detachable(&self) -> bool;
    /// Starts trials; returns at once. A scheduler's jobs may wait (held) until `release`, so
    /// that none runs before the driver has recorded it.
    fn submit(&mut self, jobs: Vec<TrialJob>) -> anyhow::Result<Vec<Submitted>>;
    /// Lets the trials just submitted go, now that they are recorded. Trials submitted and
    /// never released are withdrawn when the executor is dropped.
    fn release(&mut self) -> anyhow::Result<()>;
    /// Follows jobs an earlier driver submitted: reports each as it stands now (a `State` for
    /// those still queued or running, which it follows from here; an `Ended` for the others).
    fn adopt(&mut self, jobs: &[SweepJob]) -> anyhow::Result<Vec<TrialEvent>>;
    /// Waits up to `timeout` for something to report; `None` when nothing happened in time.
    fn next_event(&mut self, timeout: Duration) -> anyhow::Result<Option<TrialEvent>>;
    /// The trials submitted and not yet ended (queued or running).
    fn running(&self) -> Vec<usize>;
    /// Asks a trial (or, with `None`, every one) to stop: it finishes its batch and records a
    /// cancelled run. With `hard`, kills it at once.
    fn cancel(&mut self, trial: Option<usize>, hard: bool) -> anyhow::Result<()>;
}
