//! The `Executor` interface: how sweep trials are started, followed and stopped. The driver
//! only talks to this, so a cluster executor is a new implementation, not a change to the
//! driver. An executor reports only that a trial's process ended; what the trial achieved comes
//! from its run's record in the store, which the run links to its trial itself.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

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

/// A trial whose process ended, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialEnd {
    pub trial: usize,
    pub exit_code: Option<i32>,
}

/// Starts trials and reports them as they end.
pub trait Executor {
    /// Starts a trial; returns at once.
    fn submit(&mut self, job: TrialJob) -> anyhow::Result<()>;
    /// Waits up to `timeout` for a submitted trial to end; `None` when none ended in time.
    fn wait_any(&mut self, timeout: Duration) -> anyhow::Result<Option<TrialEnd>>;
    /// The numbers of the trials running now.
    fn running(&self) -> Vec<usize>;
    /// Asks a running trial (or, with `None`, every one) to stop: it finishes its batch and
    /// records a cancelled run.
    fn cancel(&mut self, trial: Option<usize>);
}
