//! The local executor: each trial is a child process of this host binary (`host run` of the
//! trial's config), on this machine; one libtorch per process.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use store::SweepJob;

use super::executor::{Executor, Submitted, TrialEnd, TrialEvent, TrialJob};

/// Runs trials as child processes on this machine, at most `jobs` at once.
pub struct LocalExecutor {
    jobs: usize,
    running: Vec<(usize, Child)>,
}

impl LocalExecutor {
    pub fn new(jobs: usize) -> Self {
        LocalExecutor { jobs: jobs.max(1), running: Vec::new() }
    }

    fn start(&mut self, job: TrialJob) -> anyhow::Result<()> {
        let log = std::fs::File::create(&job.log_file)
            .with_context(|| format!("{}: cannot create", job.log_file.display()))?;
        let mut command = Command::new(&job.command.program);
        // A worker stops with this process (it stops after its batch and records `cancelled`),
        // so a killed sweep leaves no trial training on unseen.
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: between fork and exec only async-signal-safe calls: prctl and getppid.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, crate::interrupt::PARENT_GONE) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the call: then no signal would come.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the sweep that started this trial is gone"));
                }
                Ok(())
            });
        }
        let child = command
            // Its own process group: a terminal's Ctrl-C reaches the driver alone, which asks
            // each trial once (a second SIGINT would make a trial exit at once).
            .process_group(0)
            .env(crate::interrupt::SWEEP_DRIVER_PID, parent.to_string())
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
}

impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    fn limit(&self) -> Option<usize> {
        Some(self.jobs)
    }

    fn detachable(&self) -> bool {
        false
    }

    fn submit(&mut self, jobs: Vec<TrialJob>) -> anyhow::Result<Vec<Submitted>> {
        let mut submitted = Vec::with_capacity(jobs.len());
        for job in jobs {
            let trial = job.trial.number;
            self.start(job)?;
            submitted.push(Submitted { trial, job_id: None, held: false });
        }
        Ok(submitted)
    }

    fn release(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    fn adopt(&mut self, _jobs: &[SweepJob]) -> anyhow::Result<Vec<TrialEvent>> {
        // Another process's children cannot be followed; the driver refuses before this.
        Ok(Vec::new())
    }

    fn next_event(&mut self, timeout: Duration) -> anyhow::Result<Option<TrialEvent>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.running.is_empty() || std::time::Instant::now() >= deadline {
                return Ok(None);
            }
            for index in 0..self.running.len() {
                if let Some(status) = self.running[index].1.try_wait()? {
                    let (trial, _) = self.running.swap_remove(index);
                    let exit_code = status.code().map(|c| c.to_string());
                    return Ok(Some(TrialEvent::Ended(TrialEnd { trial, exit_code, job: None, time_limit: None })));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn running(&self) -> Vec<usize> {
        self.running.iter().map(|(trial, _)| *trial).collect()
    }

    fn cancel(&mut self, trial: Option<usize>, hard: bool) -> anyhow::Result<()> {
        let signal = if hard { libc::SIGKILL } else { libc::SIGINT };
        for (_, child) in self.running.iter().filter(|(number, _)| trial.is_none_or(|t| *number == t)) {
            // SAFETY: `kill` only sends a signal to the worker's process id.
            unsafe {
                libc::kill(child.id() as libc::pid_t, signal);
            }
        }
        Ok(())
    }
}
