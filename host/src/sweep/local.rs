//! The local executor: each trial is a child process of this host binary (`host run` of the
//! trial's config), on this machine; one libtorch per process.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use super::executor::{Executor, TrialEnd, TrialJob};

/// Runs trials as child processes on this machine.
#[derive(Default)]
pub struct LocalExecutor {
    running: Vec<(usize, Child)>,
}

impl Executor for LocalExecutor {
    fn submit(&mut self, job: TrialJob) -> anyhow::Result<()> {
        let log = std::fs::File::create(&job.log_file)
            .with_context(|| format!("{}: cannot create", job.log_file.display()))?;
        let child = Command::new(&job.command.program)
            .args(&job.command.args)
            .envs(job.command.env.iter().map(|(k, v)| (k, v)))
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
