//! Running a sweep's trials. Each trial is an ordinary `host run` of its own config in a
//! worker process (one libtorch per process, threads divided among the jobs), so every trial
//! is a run in the store like any other. Workers are started through an [`Executor`]: the
//! local one runs them as child processes; a cluster executor would submit jobs instead,
//! without touching the sweep logic in `commands/sweep.rs`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::config::sweep::Trial;

/// A trial ready to run: its config file, and where its output and log go.
#[derive(Debug, Clone)]
pub struct TrialJob {
    pub trial: Trial,
    pub config_file: PathBuf,
    /// `host run --json` output: the run summary.
    pub summary_file: PathBuf,
    pub log_file: PathBuf,
}

/// How a trial ended.
#[derive(Debug)]
pub struct TrialOutcome {
    pub job: TrialJob,
    /// The run summary the worker printed, when it got that far.
    pub summary: Option<Value>,
    pub exit_code: Option<i32>,
}

/// Starts trials and reports them as they end.
pub trait Executor {
    /// Starts a trial; returns at once.
    fn submit(&mut self, job: TrialJob) -> anyhow::Result<()>;
    /// Waits up to `timeout` for a submitted trial to end; `None` when none ended in time.
    fn wait_any(&mut self, timeout: Duration) -> anyhow::Result<Option<TrialOutcome>>;
    /// The trials running now.
    fn running(&self) -> Vec<&TrialJob>;
    /// Asks a running trial (or, with `None`, every one) to stop: it finishes its batch and
    /// records a cancelled run.
    fn cancel(&mut self, trial: Option<usize>);
}

/// Runs trials as child processes of this host binary on this machine.
pub struct LocalExecutor {
    host: PathBuf,
    /// Arguments every worker gets after `run CONFIG` (store, class mapping, plugins, output).
    common_args: Vec<OsString>,
    running: Vec<(TrialJob, Child)>,
}

impl LocalExecutor {
    pub fn new(common_args: Vec<OsString>) -> anyhow::Result<Self> {
        let host = std::env::current_exe().context("cannot find the host binary to start workers")?;
        Ok(LocalExecutor { host, common_args, running: Vec::new() })
    }
}

impl Executor for LocalExecutor {
    fn submit(&mut self, job: TrialJob) -> anyhow::Result<()> {
        let stdout = std::fs::File::create(&job.summary_file)
            .with_context(|| format!("{}: cannot create", job.summary_file.display()))?;
        let stderr = std::fs::File::create(&job.log_file)
            .with_context(|| format!("{}: cannot create", job.log_file.display()))?;
        let child = Command::new(&self.host)
            .arg("-q")
            .arg("run")
            .arg(&job.config_file)
            .arg("--json")
            .args(&self.common_args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting trial {}", job.trial.number))?;
        self.running.push((job, child));
        Ok(())
    }

    fn wait_any(&mut self, timeout: Duration) -> anyhow::Result<Option<TrialOutcome>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.running.is_empty() || std::time::Instant::now() >= deadline {
                return Ok(None);
            }
            for index in 0..self.running.len() {
                if let Some(status) = self.running[index].1.try_wait()? {
                    let (job, _) = self.running.swap_remove(index);
                    let summary = std::fs::read_to_string(&job.summary_file)
                        .ok()
                        .and_then(|text| serde_json::from_str(&text).ok());
                    return Ok(Some(TrialOutcome { job, summary, exit_code: status.code() }));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn running(&self) -> Vec<&TrialJob> {
        self.running.iter().map(|(job, _)| job).collect()
    }

    fn cancel(&mut self, trial: Option<usize>) {
        for (_, child) in self.running.iter().filter(|(job, _)| trial.is_none_or(|t| job.trial.number == t)) {
            // SAFETY: `kill` only sends a signal to the worker's process id.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGINT);
            }
        }
    }
}
