//! The Slurm executor: a sweep's pending trials go to Slurm as one job array per submission
//! (`--array=0-7%N`, each array task an ordinary `host run` of its trial's config with
//! absolute paths), followed by one `squeue` call per poll for all of them, whatever their
//! number. Jobs are requeueable and append to their logs; a job near its time limit gets
//! SIGUSR1 and stops after its batch. The worker records its own outcome in the store; what
//! Slurm says explains the deaths it could not record (`crate::slurm::explain`).

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use store::SweepJob;

use super::executor::{Executor, HELD_UNTIL_RECORDED, Submitted, TrialEnd, TrialEvent, TrialJob, WorkerCommand};
use crate::config::executor::SlurmOptions;
use crate::slurm;

/// A job followed: its id (`123_4`), what Slurm last said, and how often it was not listed.
#[derive(Debug, Clone)]
struct Followed {
    job_id: String,
    state: String,
    reason: Option<String>,
    unlisted: u32,
}

/// States a job has been started in: from one of these back to pending is a requeue.
fn started(state: &str) -> bool {
    matches!(state, "RUNNING" | "COMPLETING" | "SUSPENDED" | "STOPPED" | "SIGNALING" | "REQUEUED" | "CONFIGURING")
}

/// The array job of `123_4`, or the job `123` itself.
fn queue_id(job_id: &str) -> &str {
    job_id.split('_').next().unwrap_or(job_id)
}

/// Submits trials to Slurm and follows them.
pub struct SlurmExecutor {
    options: SlurmOptions,
    /// Where job scripts are written.
    folder: PathBuf,
    /// The job name (default: the sweep id).
    name: String,
    /// The folder jobs run in: this process's, absolute.
    chdir: PathBuf,
    followed: BTreeMap<usize, Followed>,
    events: VecDeque<TrialEvent>,
    last_poll: Option<Instant>,
    /// When a failure to ask Slurm was last said.
    warned_at: Option<Instant>,
    /// Jobs submitted held, not yet let go (`release`).
    held: Vec<String>,
}

impl SlurmExecutor {
    /// Job scripts go to `executor.log_dir`, else `folder`; jobs are named `name` unless the
    /// options name them.
    pub fn new(options: SlurmOptions, folder: &Path, name: &str) -> anyhow::Result<Self> {
        let chdir = std::env::current_dir().context("cannot read the working folder")?;
        let folder = std::path::absolute(options.log_dir.as_deref().unwrap_or(folder))?;
        std::fs::create_dir_all(&folder).with_context(|| format!("{}: cannot create", folder.display()))?;
        let name = options.job_name.clone().unwrap_or_else(|| crate::storage::safe_file_name(name));
        Ok(SlurmExecutor {
            options,
            folder,
            name,
            chdir,
            followed: BTreeMap::new(),
            events: VecDeque::new(),
            last_poll: None,
            warned_at: None,
            held: Vec::new(),
        })
    }

    /// Checks, before anything is submitted or recorded, that the controller answers and
    /// would accept jobs with these options (partition, account, QOS, time, gres).
    pub fn check(&self) -> anyhow::Result<()> {
        slurm::ping()?;
        let script = self.folder.join(".check.sh");
        std::fs::write(&script, "#!/bin/sh\ntrue\n").with_context(|| format!("{}: cannot write", script.display()))?;
        let result = slurm::test_submission(&self.sbatch_options(None, &self.folder.join("check.log"), &[]), &script);
        let _ = std::fs::remove_file(&script);
        result.map_err(|error| anyhow::anyhow!("{error:#}; check {}", self.option_hint(&format!("{error:#}"))))
    }

    /// Which `executor:` key a refusal is most likely about.
    fn option_hint(&self, error: &str) -> String {
        let error = error.to_ascii_lowercase(); // "Invalid account or account/partition combination" is about the account.
        let key = if error.contains("account") {
            "executor.account (and executor.partition)"
        } else if error.contains("partition") {
            "executor.partition (`sinfo -s` lists the partitions)"
        } else if error.contains("qos") {
            "executor.qos"
        } else if error.contains("time limit") {
            "executor.time"
        } else if error.contains("gres") || error.contains("generic resource") {
            "executor.gres"
        } else if error.contains("memory") {
            "executor.memory"
        } else if error.contains("cpu") || error.contains("node configuration") {
            "executor.cpus_per_task"
        } else {
            "the executor section or --executor"
        };
        key.to_owned()
    }

    /// sbatch's options for a job (an array of `array` if given) logging to `output`.
    fn sbatch_options(&self, array: Option<String>, output: &Path, env: &[(String, String)]) -> Vec<OsString> {
        let o = &self.options;
        let mut args: Vec<String> = vec![
            format!("--job-name={}", self.name),
            format!("--chdir={}", self.chdir.display()),
            format!("--output={}", output.display()),
            "--open-mode=append".into(),
            if o.requeue { "--requeue".into() } else { "--no-requeue".into() },
        ];
        if let Some(array) = array {
            args.push(format!("--array={array}"));
        }
        let mut add = |flag: &str, value: &Option<String>| {
            if let Some(value) = value {
                args.push(format!("--{flag}={value}"));
            }
        };
        add("partition", &o.partition);
        add("account", &o.account);
        add("qos", &o.qos);
        add("time", &o.time);
        add("cpus-per-task", &o.cpus_per_task.map(|c| c.to_string()));
        add("mem", &o.memory);
        add("gres", &o.gres);
        let limit = o.time.as_deref().and_then(slurm::time_seconds);
        if o.signal_seconds > 0 && limit.is_none_or(|limit| u64::from(o.signal_seconds) < limit) {
            // `B:`: the batch shell, which `exec`s the worker, gets it.
            args.push(format!("--signal=B:USR1@{}", o.signal_seconds));
        }
        let exported: Vec<&str> = slurm::EXPORTED
            .iter()
            .copied()
            .filter(|name| std::env::var_os(name).is_some() || env.iter().any(|(n, _)| n == name))
            .collect();
        args.push(format!("--export={}", if exported.is_empty() { "NONE".to_owned() } else { exported.join(",") }));
        args.extend(o.extra_args.iter().cloned());
        args.into_iter().map(OsString::from).collect()
    }

    /// A script file name not yet used in the folder.
    fn script_path(&self, stem: &str) -> PathBuf {
        (1..)
            .map(|n| self.folder.join(format!("{stem}-{n}.sh")))
            .find(|path| !path.exists())
            .unwrap_or_else(|| self.folder.join(format!("{stem}.sh")))
    }

    /// Asks Slurm about every job followed and queues what changed; a failure to ask is said
    /// (at most once a minute) and retried at the next poll.
    fn poll(&mut self) {
        self.last_poll = Some(Instant::now());
        match self.ask() {
            Ok(()) => self.warned_at = None,
            Err(error) => {
                if self.warned_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!("cannot ask Slurm about the jobs followed (retrying every poll): {error:#}");
                    self.warned_at = Some(Instant::now());
                }
            }
        }
    }

    fn ask(&mut self) -> anyhow::Result<()> {
        let mut ids: Vec<String> = self.followed.values().map(|f| queue_id(&f.job_id).to_owned()).collect();
        ids.sort();
        ids.dedup();
        let listed: BTreeMap<String, slurm::QueuedJob> =
            slurm::queue(&ids)?.into_iter().map(|job| (job.job_id.clone(), job)).collect();
        let mut ended = Vec::new();
        for (&trial, followed) in self.followed.iter_mut() {
            let now = match listed.get(&followed.job_id) {
                Some(job) => {
                    followed.unlisted = 0;
                    Some((job.state.clone(), job.reason.clone()))
                }
                None => {
                    // Not listed: ended long ago, or a moment between states; asked twice first.
                    followed.unlisted += 1;
                    if followed.unlisted < 2 {
                        continue;
                    }
                    let shown = slurm::show_job(&followed.job_id)?;
                    match shown {
                        Some(fields) => fields.get("JobState").map(|s| (s.clone(), fields.get("Reason").cloned())),
                        None => {
                            Some((slurm::accounted_state(&followed.job_id).unwrap_or_else(|| "VANISHED".into()), None))
                        }
                    }
                }
            };
            let Some((state, reason)) = now else { continue };
            let reason = reason.filter(|r| r != "None");
            if state != followed.state || reason != followed.reason {
                let requeued = started(&followed.state)
                    && matches!(state.as_str(), "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED");
                let shown_reason = match (requeued, &reason) {
                    (true, Some(reason)) => Some(format!("requeued; {reason}")),
                    (true, None) => Some("requeued".to_owned()),
                    (false, reason) => reason.clone(),
                };
                followed.state = state.clone();
                followed.reason = reason;
                self.events.push_back(TrialEvent::State {
                    trial,
                    job_id: followed.job_id.clone(),
                    state: state.clone(),
                    reason: shown_reason,
                });
            }
            if !slurm::is_active(&state) {
                ended.push(trial);
            }
        }
        for trial in ended {
            let Some(job_id) = self.followed.get(&trial).map(|f| f.job_id.clone()) else { continue };
            let vanished = self.followed.get(&trial).is_some_and(|f| f.state == "VANISHED");
            // Asked before the job is let go: a failure here asks again at the next poll.
            let fields = if vanished { None } else { slurm::show_job(&job_id)? };
            let Some(followed) = self.followed.remove(&trial) else { continue };
            let field = |name: &str| fields.as_ref().and_then(|f| f.get(name)).cloned();
            self.events.push_back(TrialEvent::Ended(TrialEnd {
                trial,
                exit_code: field("ExitCode"),
                job: Some((followed.job_id, followed.state)),
                time_limit: field("TimeLimit"),
            }));
        }
        Ok(())
    }

    fn poll_every(&self) -> Duration {
        Duration::from_secs_f64(self.options.poll_seconds)
    }
}

impl Executor for SlurmExecutor {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn limit(&self) -> Option<usize> {
        None
    }

    fn detachable(&self) -> bool {
        true
    }

    fn submit(&mut self, jobs: Vec<TrialJob>) -> anyhow::Result<Vec<Submitted>> {
        let Some(first) = jobs.first() else { return Ok(Vec::new()) };
        let log_folder = first.log_file.parent().unwrap_or(&self.folder).to_owned();
        for job in &jobs {
            // One `--output` pattern serves the array: each log is where the driver expects.
            let expected = log_folder.join(format!("trial-{:03}.log", job.trial.number));
            if job.log_file != expected {
                bail!(
                    "internal: trial {} logs to {}, not {}",
                    job.trial.number,
                    job.log_file.display(),
                    expected.display()
                );
            }
        }
        let env = first.command.env.clone();
        let numbers: Vec<usize> = jobs.iter().map(|j| j.trial.number).collect();
        let mut script = String::from("#!/bin/sh\n");
        script.push_str(&format!(
            "# Written by `host sweep` for {}: one array task per trial, each an ordinary `host run`\n\
             # of its trial's config, linked to its trial in the store.\n\
             case \"${{SLURM_ARRAY_TASK_ID:-}}\" in\n",
            self.name
        ));
        for job in &jobs {
            script.push_str(&format!("    {}) exec {} ;;\n", job.trial.number, command_line(&job.command)));
        }
        script
            .push_str("    *) echo \"host: no trial for array task ${SLURM_ARRAY_TASK_ID:-?}\" >&2; exit 2 ;;\nesac\n");
        let path = self.script_path("trials");
        std::fs::write(&path, script).with_context(|| format!("{}: cannot write", path.display()))?;
        let array = slurm::array_spec(&numbers, self.options.array_throttle);
        let mut options = self.sbatch_options(Some(array), &log_folder.join("trial-%3a.log"), &env);
        // Held until the driver has recorded the jobs: a job never runs unrecorded (and so is
        // never submitted again by a driver that did not know of it). A hold the user asked
        // for is theirs to release.
        let ours = !self.user_holds();
        if ours {
            options.push("--hold".into());
        }
        let array_id =
            slurm::submit(&options, &path, &env).with_context(|| format!("submitting {}", path.display()))?;
        if ours {
            self.held.push(array_id.clone());
        }
        let mut submitted = Vec::with_capacity(numbers.len());
        for trial in numbers {
            let job_id = format!("{array_id}_{trial}");
            let reason = ours.then(|| HELD_UNTIL_RECORDED.to_owned());
            self.followed
                .insert(trial, Followed { job_id: job_id.clone(), state: "PENDING".into(), reason, unlisted: 0 });
            submitted.push(Submitted { trial, job_id: Some(job_id), held: ours });
        }
        Ok(submitted)
    }

    fn release(&mut self) -> anyhow::Result<()> {
        slurm::release(&self.held)?;
        self.held.clear();
        Ok(())
    }

    fn adopt(&mut self, jobs: &[SweepJob]) -> anyhow::Result<Vec<TrialEvent>> {
        for job in jobs.iter().filter(|j| j.scheduler == "slurm") {
            self.followed.insert(
                job.trial,
                Followed {
                    job_id: job.job_id.clone(),
                    state: job.state.clone(),
                    reason: job.reason.clone(),
                    unlisted: 1,
                },
            );
        }
        if self.followed.is_empty() {
            return Ok(Vec::new());
        }
        // Jobs whose driver recorded them and died before letting them go: let go now.
        let stranded: Vec<String> = jobs
            .iter()
            .filter(|j| j.scheduler == "slurm" && j.reason.as_deref() == Some(HELD_UNTIL_RECORDED))
            .map(|j| j.job_id.clone())
            .collect();
        if !stranded.is_empty() {
            let arrays: Vec<String> = stranded.iter().map(|j| queue_id(j).to_owned()).collect();
            let held: Vec<String> = slurm::queue(&arrays)?
                .into_iter()
                .filter(|q| stranded.contains(&q.job_id) && q.reason.as_deref() == Some("JobHeldUser"))
                .map(|q| q.job_id)
                .collect();
            slurm::release(&held)?;
        }
        // Whether Slurm can be asked at all is an error here, not a warning.
        self.ask()?;
        self.last_poll = Some(Instant::now());
        Ok(self.events.drain(..).collect())
    }

    fn next_event(&mut self, timeout: Duration) -> anyhow::Result<Option<TrialEvent>> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Some(event));
        }
        if self.followed.is_empty() {
            return Ok(None);
        }
        let due = self.last_poll.map_or(Duration::ZERO, |at| self.poll_every().saturating_sub(at.elapsed()));
        if due > timeout {
            std::thread::sleep(timeout);
            return Ok(None);
        }
        std::thread::sleep(due);
        self.poll();
        Ok(self.events.pop_front())
    }

    fn running(&self) -> Vec<usize> {
        // A trial whose end is not reported yet still counts.
        let reported = self.events.iter().filter_map(|e| match e {
            TrialEvent::Ended(end) => Some(end.trial),
            TrialEvent::State { .. } => None,
        });
        let mut trials: Vec<usize> = self.followed.keys().copied().chain(reported).collect();
        trials.sort_unstable();
        trials.dedup();
        trials
    }

    fn cancel(&mut self, trial: Option<usize>, hard: bool) -> anyhow::Result<()> {
        let ids: Vec<String> = self
            .followed
            .iter()
            .filter(|(number, _)| trial.is_none_or(|t| **number == t))
            .map(|(_, f)| f.job_id.clone())
            .collect();
        slurm::cancel(&ids, hard)
    }
}

impl SlurmExecutor {
    /// Whether the user's own sbatch arguments hold the jobs.
    fn user_holds(&self) -> bool {
        self.options.extra_args.iter().any(|a| a == "--hold" || a == "-H")
    }
}

impl Drop for SlurmExecutor {
    /// Jobs submitted and never recorded (the driver failed in between) are withdrawn: nobody
    /// would follow them, and the next run of the sweep would submit them again.
    fn drop(&mut self) {
        if !self.held.is_empty()
            && let Err(error) = slurm::cancel(&self.held, false)
        {
            tracing::warn!("cannot withdraw the unrecorded jobs {}: {error:#}", self.held.join(", "));
        }
    }
}

/// A worker command as one line of POSIX shell.
fn command_line(command: &WorkerCommand) -> String {
    std::iter::once(command.program.as_os_str())
        .chain(command.args.iter().map(OsString::as_os_str))
        .map(|word| slurm::shell_quote(&word.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Submits one run (`host run --executor slurm`): its worker command as a batch job logging
/// to `log`; the job id.
pub fn submit_run(executor: &SlurmExecutor, command: &WorkerCommand, log: &Path) -> anyhow::Result<String> {
    let script = format!(
        "#!/bin/sh\n# Written by `host run --executor slurm`: the run, as an ordinary `host run`.\nexec {}\n",
        command_line(command)
    );
    let path = executor.script_path("run");
    std::fs::write(&path, script).with_context(|| format!("{}: cannot write", path.display()))?;
    let options = executor.sbatch_options(None, log, &command.env);
    slurm::submit(&options, &path, &command.env).with_context(|| format!("submitting {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slurm_executor(options: SlurmOptions) -> (SlurmExecutor, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (SlurmExecutor::new(options, dir.path(), "sweep-abc").unwrap(), dir)
    }

    fn words(args: &[OsString]) -> Vec<String> {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn options_become_sbatch_arguments() {
        let options = SlurmOptions {
            partition: Some("gpu".into()),
            time: Some("2:00:00".into()),
            cpus_per_task: Some(4),
            memory: Some("16G".into()),
            gres: Some("gpu:1".into()),
            extra_args: vec!["--constraint=a100".into()],
            signal_seconds: 90,
            requeue: true,
            poll_seconds: 2.0,
            ..SlurmOptions::default()
        };
        let (executor, _dir) = slurm_executor(options);
        let args = words(&executor.sbatch_options(Some("0-3%2".into()), Path::new("/logs/trial-%3a.log"), &[]));
        for expected in [
            "--job-name=sweep-abc",
            "--output=/logs/trial-%3a.log",
            "--open-mode=append",
            "--requeue",
            "--array=0-3%2",
            "--partition=gpu",
            "--time=2:00:00",
            "--cpus-per-task=4",
            "--mem=16G",
            "--gres=gpu:1",
            "--signal=B:USR1@90",
            "--constraint=a100",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} missing from {args:?}");
        }
        assert!(args.iter().any(|a| a.starts_with("--chdir=/")), "an absolute --chdir: {args:?}");
        let export = args.iter().find(|a| a.starts_with("--export=")).unwrap();
        assert!(export.contains("PATH") && !export.contains("ALL"), "{export}");
        // A warning longer than the time limit is never sent.
        let (short, _dir) =
            slurm_executor(SlurmOptions { time: Some("1".into()), signal_seconds: 90, ..SlurmOptions::default() });
        assert!(!words(&short.sbatch_options(None, Path::new("/l"), &[])).iter().any(|a| a.starts_with("--signal")));
        let password = [("PGPASSWORD".to_owned(), "secret".to_owned())];
        let args = words(&short.sbatch_options(None, Path::new("/l"), &password));
        assert!(args.iter().any(|a| a.starts_with("--export=") && a.contains("PGPASSWORD")), "{args:?}");
        assert!(!args.iter().any(|a| a.contains("secret")), "the password itself never goes on a command line");
    }

    #[test]
    fn command_lines_survive_the_shell() {
        let command = WorkerCommand {
            program: "/opt/my host/host".into(),
            args: vec!["run".into(), "/w/trial-000.yaml".into(), "--trial".into(), "s-1/0".into()],
            env: Vec::new(),
        };
        assert_eq!(command_line(&command), "'/opt/my host/host' run /w/trial-000.yaml --trial s-1/0");
        assert_eq!(queue_id("12_3"), "12");
        assert_eq!(queue_id("12"), "12");
    }
}
