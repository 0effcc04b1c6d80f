//! The local executor: each trial is a child process of this host binary (`host run` of the
//! trial's config), on this machine; one libtorch per process.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use super::executor::{Executor, TrialEnd, TrialJob};

/// Runs trials as child processes of this host binary.
pub struct LocalExecutor {
    host: PathBuf,
    /// Arguments every worker gets after `run CONFIG` (store, class mapping, plugins, output).
    common_args: Vec<OsString>,
    /// The sweep the workers' runs link themselves to.
    sweep_id: String,
    running: Vec<(usize, Child)>,
}

impl LocalExecutor {
    pub fn new(sweep_id: &str, common_args: Vec<OsString>) -> anyhow::Result<Self> {
        let host = std::env::current_exe().context("cannot find the host binary to start workers")?;
        Ok(LocalExecutor { host, common_args, sweep_id: sweep_id.to_owned(), running: Vec::new() })
    }
}

impl Executor for LocalExecutor {
    fn submit(&mut self, job: TrialJob) -> anyhow::Result<()> {
        let log = std::fs::File::create(&job.log_file)
            .with_context(|| format!("{}: cannot create", job.log_file.display()))?;
        let child = Command::new(&self.host)
            .arg("-q")
            .arg("run")
            .arg(&job.config_file)
            .arg("--trial")
            .arg(format!("{}/{}", self.sweep_id, job.trial.number))
            .args(&self.common_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().with_context(|| format!("{}: cannot share", job.log_file.display()))?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting trial {}", job.trial.number))?;
        self.running.push((job.trial.number, child));
        Ok(())
    }

    fn wait_any(&mut self, timeout: Duration) -> anyhow::Result<Option<TrialEnd>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.running.is_empty() || std::time::Instant::now() >= deadline {
                return Ok(None);
            }
            for index in 0..self.running.len() {
                if let Some(status) = self.running[index].1.try_wait()? {
                    let (trial, _) = self.running.swap_remove(index);
                    return Ok(Some(TrialEnd { trial, exit_code: status.code() }));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn running(&self) -> Vec<usize> {
        self.running.iter().map(|(trial, _)| *trial).collect()
    }

    fn cancel(&mut self, trial: Option<usize>) {
        for (_, child) in self.running.iter().filter(|(number, _)| trial.is_none_or(|t| *number == t)) {
            // SAFETY: `kill` only sends a signal to the worker's process id.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGINT);
            }
        }
    }
}
