//! Slurm's command-line tools as the host uses them (`sbatch`, `squeue`, `scontrol`, `scancel`,
//! `sacct`), each call bounded in time and its failures turned into one line that says what to
//! do; and what Slurm's job states mean for a run that could not record its own end. The
//! executor that submits sweeps is `sweep/slurm.rs`; this file knows nothing of sweeps.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use record::RunStatus;

/// How long one Slurm command may take (Slurm's own retries included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The variables a job gets from the submitting shell, when set there: what the host and its
/// plugins read. Slurm adds its own `SLURM_*`; nothing else leaks in (a submitting shell's
/// virtualenv, `OMP_NUM_THREADS` and the like would make a run depend on who submitted it).
pub const EXPORTED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "HOST_LOG",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "SSL_CERT_FILE",
];

/// Runs `program` with `args` (and `env` added), waiting at most `timeout`.
fn call(program: &str, args: &[OsString], env: &[(String, String)], timeout: Duration) -> anyhow::Result<Output> {
    let mut command = Command::new(program);
    if program == "sbatch" {
        // Submitted from inside a job, the allocation's SLURM_* would reach the new job (its
        // CPUs, its job id): only the cluster's configuration goes on.
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(|n| n.starts_with("SLURM_") && n != "SLURM_CONF") {
                command.env_remove(name);
            }
        }
    }
    let child = command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "{program} is not installed here: --executor slurm needs Slurm's client commands on PATH \
             (Debian: slurm-client; scripts/setup.sh installs it, scripts/slurm-local.sh starts a one-node cluster)"
        ),
        Err(error) => return Err(error).with_context(|| format!("cannot start {program}")),
    };
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(timeout) {
        Ok(result) => result.with_context(|| format!("waiting for {program}")),
        Err(_) => {
            // SAFETY: `kill` only sends a signal to the process id of our own child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            bail!("{program} did not answer within {} s: is slurmctld running? (scontrol ping)", timeout.as_secs())
        }
    }
}

/// The first line of a command's complaint, without Slurm's `sbatch: error: ` prefixes.
fn complaint(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(|line| {
            let mut line = line.trim();
            for prefix in
                ["sbatch: error: ", "squeue: error: ", "scontrol: error: ", "scancel: error: ", "sacct: error: "]
            {
                line = line.strip_prefix(prefix).unwrap_or(line);
            }
            line
        })
        .filter(|line| !line.is_empty())
        .collect();
    let found = lines.iter().rev().find(|l| !l.starts_with("Unable to contact")).or(lines.last());
    found.map(|l| l.to_string()).unwrap_or_else(|| format!("exit status {}", output.status))
}

/// Whether Slurm's complaint means the controller cannot be reached.
fn controller_down(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    [
        "unable to contact slurm controller",
        "connection refused",
        "socket timed out",
        "connect failure",
        "zero bytes were transmitted",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

fn down_error(program: &str, detail: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{program}: cannot reach the Slurm controller ({detail}): start slurmctld, or point SLURM_CONF at \
         the cluster's slurm.conf (`scontrol ping` checks)"
    )
}

/// Runs a Slurm command that must succeed; its output.
fn checked(program: &str, args: &[OsString], env: &[(String, String)]) -> anyhow::Result<String> {
    let output = call(program, args, env, COMMAND_TIMEOUT)?;
    if !output.status.success() {
        let detail = complaint(&output);
        if controller_down(&String::from_utf8_lossy(&output.stderr)) {
            return Err(down_error(program, &detail));
        }
        bail!("{program}: {detail}");
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Checks that the controller answers; a clear error when it does not.
pub fn ping() -> anyhow::Result<()> {
    let output = call("scontrol", &["ping".into()], &[], COMMAND_TIMEOUT)?;
    let text = String::from_utf8_lossy(&output.stdout);
    if output.status.success() && text.contains("is UP") {
        return Ok(());
    }
    let said = text.lines().next().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned);
    Err(down_error("scontrol ping", &said.unwrap_or_else(|| complaint(&output))))
}

/// Asks Slurm whether it would accept the job (`sbatch --test-only`): a bad partition,
/// account, QOS, time or gres is refused here, before any job is submitted.
pub fn test_submission(options: &[OsString], script: &std::path::Path) -> anyhow::Result<()> {
    let mut args = vec![OsString::from("--test-only")];
    args.extend(options.iter().cloned());
    args.push(script.into());
    let output = call("sbatch", &args, &[], COMMAND_TIMEOUT)?;
    if output.status.success() {
        return Ok(());
    }
    let detail = complaint(&output);
    if controller_down(&String::from_utf8_lossy(&output.stderr)) {
        return Err(down_error("sbatch", &detail));
    }
    bail!("Slurm refuses the job: {detail}")
}

/// Submits `script` with `options`; the job id (`123`, or the array job's id). `env` is added
/// to sbatch's environment (a password exported by name, never on the command line).
pub fn submit(options: &[OsString], script: &std::path::Path, env: &[(String, String)]) -> anyhow::Result<String> {
    let mut args = vec![OsString::from("--parsable")];
    args.extend(options.iter().cloned());
    args.push(script.into());
    let text = checked("sbatch", &args, env)?;
    parse_submitted(&text).with_context(|| format!("sbatch answered {text:?}, not a job id"))
}

/// `sbatch --parsable` prints `ID` or `ID;CLUSTER`.
pub fn parse_submitted(text: &str) -> Option<String> {
    let id = text.lines().rev().find(|l| !l.trim().is_empty())?.trim().split(';').next()?.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_owned())
}

/// One job (or array element) as `squeue` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// `123_4` for an array element, else `123`.
    pub job_id: String,
    pub state: String,
    /// Why it waits or how it ended (`Priority`, `BeginTime`, `None`): `None` dropped.
    pub reason: Option<String>,
}

/// The jobs and array elements of `ids` (job ids or array job ids) that Slurm still knows, in
/// one call; finished jobs stay listed for `MinJobAge` seconds.
pub fn queue(ids: &[String]) -> anyhow::Result<Vec<QueuedJob>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let args: Vec<OsString> = ["-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j"]
        .iter()
        .map(OsString::from)
        .chain([OsString::from(ids.join(","))])
        .collect();
    let output = call("squeue", &args, &[], COMMAND_TIMEOUT)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Every id unknown (all ended long ago): nothing to list.
        if stderr.contains("Invalid job id") {
            return Ok(Vec::new());
        }
        if controller_down(&stderr) {
            return Err(down_error("squeue", &complaint(&output)));
        }
        bail!("squeue: {}", complaint(&output));
    }
    Ok(parse_queue(&String::from_utf8_lossy(&output.stdout)))
}

pub fn parse_queue(text: &str) -> Vec<QueuedJob> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().splitn(3, '|');
            let (job_id, state, reason) = (fields.next()?, fields.next()?, fields.next().unwrap_or(""));
            let reason = reason.trim();
            Some(QueuedJob {
                job_id: job_id.trim().to_owned(),
                state: state.trim().to_owned(),
                reason: (!reason.is_empty() && reason != "None").then(|| reason.to_owned()),
            })
        })
        .filter(|job| !job.job_id.is_empty() && !job.state.is_empty())
        .collect()
}

/// `scontrol show job -o ID`'s fields (`JobState`, `ExitCode`, `Restarts`, `TimeLimit`,
/// `RunTime`, `NodeList`, ...); `None` when Slurm no longer knows the job.
pub fn show_job(job_id: &str) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    let args: Vec<OsString> = ["show", "job", "-o", job_id].iter().map(OsString::from).collect();
    let output = call("scontrol", &args, &[], COMMAND_TIMEOUT)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("Invalid job id") {
            return Ok(None);
        }
        if controller_down(&stderr) {
            return Err(down_error("scontrol", &complaint(&output)));
        }
        bail!("scontrol show job {job_id}: {}", complaint(&output));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text.lines().find(|l| !l.trim().is_empty()).map(parse_fields))
}

/// `Key=value Key=value ...` (a value may hold spaces: it runs to the next ` Key=`).
pub fn parse_fields(line: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for token in line.split(' ') {
        let key = token
            .split_once('=')
            .map(|(k, _)| k)
            .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'/'));
        match (key, token.split_once('=')) {
            (Some(_), Some((key, value))) => {
                if let Some((k, v)) = current.take() {
                    fields.insert(k, v);
                }
                current = Some((key.to_owned(), value.to_owned()));
            }
            _ => {
                if let Some((_, value)) = current.as_mut() {
                    value.push(' ');
                    value.push_str(token);
                }
            }
        }
    }
    if let Some((k, v)) = current {
        fields.insert(k, v);
    }
    fields
}

/// A job that `squeue` no longer lists, from accounting (`sacct`) where the cluster keeps it:
/// its final state; `None` without accounting or when it does not know the job either.
pub fn accounted_state(job_id: &str) -> Option<String> {
    let args: Vec<OsString> =
        ["-n", "-P", "-X", "-o", "JobID,State", "-j", job_id].iter().map(OsString::from).collect();
    let output = call("sacct", &args, &[], COMMAND_TIMEOUT).ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines().find_map(|line| {
        let (id, state) = line.split_once('|')?;
        // `CANCELLED by 0`: the state is the first word.
        (id.trim() == job_id).then(|| state.split_whitespace().next().unwrap_or("").to_owned())
    })
}

/// Cancels jobs: `scancel` (SIGTERM, then SIGKILL after the cluster's KillWait, and the jobs
/// end CANCELLED), or with `hard`, at once: SIGUSR2, which the host does not catch, to every
/// process of the jobs (Slurm turns a SIGKILL request into its SIGTERM-first cancel), then the
/// cancel for what is left (queued jobs). A killed job ends FAILED.
pub fn cancel(job_ids: &[String], hard: bool) -> anyhow::Result<()> {
    if job_ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<OsString> = job_ids.iter().map(OsString::from).collect();
    let mut args: Vec<OsString> = Vec::new();
    if hard {
        // Queued ones first, so that none starts in a place a killed one frees.
        let mut pending: Vec<OsString> = vec!["--state=PENDING".into()];
        pending.extend(ids.iter().cloned());
        call("scancel", &pending, &[], COMMAND_TIMEOUT)?;
        args.extend(["--signal=USR2".into(), "--full".into()]);
    }
    args.extend(ids.iter().cloned());
    let output = call("scancel", &args, &[], COMMAND_TIMEOUT)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Jobs that ended meanwhile are no error; nor, for the signal, jobs still queued (they
    // are cancelled below).
    let harmless = |line: &str| {
        line.contains("already completing or completed")
            || line.contains("Invalid job id")
            || (hard && (line.contains("can not be altered now") || line.contains("pending")))
            || line.trim().is_empty()
    };
    if !output.status.success() && !stderr.lines().all(harmless) {
        if controller_down(&stderr) {
            return Err(down_error("scancel", &complaint(&output)));
        }
        bail!("scancel: {}", complaint(&output));
    }
    if hard {
        // The signal ends the jobs' processes; a job still there after that (queued, or slow
        // to die) is cancelled, once its runs can no longer see a SIGTERM.
        let arrays: Vec<String> = job_ids.iter().map(|id| id.split('_').next().unwrap_or(id).to_owned()).collect();
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(10)
            && queue(&arrays)?.iter().any(|job| job_ids.contains(&job.job_id) && job.state == "RUNNING")
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = call("scancel", &ids, &[], COMMAND_TIMEOUT);
    }
    Ok(())
}

/// Lets held jobs go (`scontrol release`).
pub fn release(job_ids: &[String]) -> anyhow::Result<()> {
    if job_ids.is_empty() {
        return Ok(());
    }
    let mut args: Vec<OsString> = vec!["release".into()];
    args.push(job_ids.join(",").into());
    checked("scontrol", &args, &[]).map(|_| ())
}

/// Why this process's job is being ended, asked when its SIGTERM arrives: a time limit or a
/// preemption (Slurm sets the job's reason before signalling), as `explain` says it; `None`
/// for a plain cancel or outside a job.
pub fn ending_reason(job_id: &str) -> Option<Explanation> {
    let fields = show_job(job_id).ok().flatten()?;
    let reason = fields.get("Reason")?;
    let state = match reason.as_str() {
        "TimeLimit" => "TIMEOUT",
        "NodeDown" => "NODE_FAIL",
        reason if reason.contains("Preempt") => "PREEMPTED",
        _ => return None,
    };
    Some(explain(job_id, state, None, fields.get("TimeLimit").map(String::as_str)))
}

/// States in which a job may still run (or run again).
pub fn is_active(state: &str) -> bool {
    matches!(
        state,
        "PENDING"
            | "CONFIGURING"
            | "RUNNING"
            | "COMPLETING"
            | "SUSPENDED"
            | "STOPPED"
            | "REQUEUED"
            | "REQUEUE_HOLD"
            | "REQUEUE_FED"
            | "RESIZING"
            | "SIGNALING"
            | "STAGE_OUT"
            | "RESV_DEL_HOLD"
            | "SPECIAL_EXIT"
            | "POWER_UP_NODE"
            | "UPDATE_DB"
    )
}

/// What Slurm's final state says of a run whose process could not record its end (killed), or
/// recorded a cancel that was really the scheduler's (a time limit's or a requeue's SIGTERM).
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The run's status.
    pub status: RunStatus,
    /// The run's error: what happened, in Slurm's words too.
    pub reason: String,
    /// The recorded statuses this replaces (never `completed`, never a recorded failure).
    pub replaces: Vec<RunStatus>,
}

/// The explanation of `state` (`VANISHED`: Slurm no longer knows the job) for job `job_id`;
/// `time_limit` as Slurm shows it (`00:01:00`). Every final state Slurm has is mapped.
pub fn explain(job_id: &str, state: &str, exit_code: Option<&str>, time_limit: Option<&str>) -> Explanation {
    use RunStatus::*;
    let killed = vec![Running, Cancelled];
    let (status, reason, replaces) = match state {
        "TIMEOUT" => (
            Interrupted,
            format!(
                "Slurm ended job {job_id} at its time limit{} (TIMEOUT)",
                time_limit.map(|t| format!(" of {t}")).unwrap_or_default()
            ),
            killed,
        ),
        "PREEMPTED" => {
            (Interrupted, format!("Slurm preempted job {job_id} for a higher-priority job (PREEMPTED)"), killed)
        }
        "NODE_FAIL" => (Interrupted, format!("the node of job {job_id} failed (NODE_FAIL)"), killed),
        "BOOT_FAIL" => (Interrupted, format!("the node of job {job_id} failed to boot (BOOT_FAIL)"), killed),
        "DEADLINE" => (Interrupted, format!("job {job_id} reached its deadline (DEADLINE)"), killed),
        "OUT_OF_MEMORY" => (
            Failed,
            format!("Slurm killed job {job_id} for using more than its memory (OUT_OF_MEMORY); raise executor.memory"),
            killed,
        ),
        "CANCELLED" => (Cancelled, format!("job {job_id} was cancelled through Slurm (CANCELLED)"), vec![Running]),
        "REVOKED" => (Cancelled, format!("job {job_id} was revoked by its federation (REVOKED)"), vec![Running]),
        "FAILED" => (
            Failed,
            format!(
                "job {job_id} failed{} before its run recorded an end (FAILED)",
                exit_code.map(|c| format!(" with exit code {c}")).unwrap_or_default()
            ),
            vec![Running],
        ),
        "COMPLETED" => {
            (Interrupted, format!("job {job_id} ended before its run recorded an end (COMPLETED)"), vec![Running])
        }
        "VANISHED" => (
            Interrupted,
            format!("Slurm no longer knows job {job_id} (it ended over MinJobAge ago, or slurmctld lost its state)"),
            vec![Running],
        ),
        other => (Interrupted, format!("job {job_id} ended {other}"), vec![Running]),
    };
    Explanation { status, reason, replaces }
}

/// Seconds in a Slurm time (`MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`);
/// `None` for `UNLIMITED` or what is not a time.
pub fn time_seconds(text: &str) -> Option<u64> {
    let (days, rest) = match text.split_once('-') {
        Some((days, rest)) => (days.parse::<u64>().ok()?, rest),
        None => (0, text),
    };
    let parts: Vec<u64> = rest.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let seconds = match (text.contains('-'), parts.as_slice()) {
        (false, [m]) => m * 60,
        (false, [m, s]) => m * 60 + s,
        (_, [h, m, s]) => h * 3600 + m * 60 + s,
        (true, [h]) => h * 3600,
        (true, [h, m]) => h * 3600 + m * 60,
        _ => return None,
    };
    Some(days * 86_400 + seconds)
}

/// `--array`'s index list for `indices`: runs of consecutive numbers as ranges (`0-3,7,9-10`),
/// with `%throttle`.
pub fn array_spec(indices: &[usize], throttle: Option<u32>) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut index = 0;
    while index < sorted.len() {
        let start = sorted[index];
        let mut end = start;
        while index + 1 < sorted.len() && sorted[index + 1] == end + 1 {
            index += 1;
            end += 1;
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        index += 1;
    }
    let mut spec = parts.join(",");
    if let Some(throttle) = throttle {
        spec.push_str(&format!("%{throttle}"));
    }
    spec
}

/// A word for a POSIX shell, single-quoted.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b)) {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_and_scontrol_answers_are_read() {
        let queued = parse_queue("12_0|RUNNING|None\n12_3|PENDING|JobArrayTaskLimit\n13|COMPLETED|None\n\n");
        assert_eq!(queued.len(), 3);
        assert_eq!(
            queued[1],
            QueuedJob { job_id: "12_3".into(), state: "PENDING".into(), reason: Some("JobArrayTaskLimit".into()) }
        );
        assert_eq!(queued[0].reason, None);
        let fields = parse_fields(
            "JobId=12 ArrayJobId=12 ArrayTaskId=3 JobName=my sweep JobState=TIMEOUT Reason=TimeLimit Restarts=1 ExitCode=0:15 TimeLimit=00:01:00",
        );
        assert_eq!(fields["JobName"], "my sweep");
        assert_eq!((fields["JobState"].as_str(), fields["Restarts"].as_str()), ("TIMEOUT", "1"));
        assert_eq!(fields["ExitCode"], "0:15");
        assert_eq!(parse_submitted("4711\n").as_deref(), Some("4711"));
        assert_eq!(parse_submitted("4711;cluster\n").as_deref(), Some("4711"));
        assert_eq!(parse_submitted("Submitted batch job 4711"), None);
    }

    #[test]
    fn every_final_state_explains_a_run_without_an_end() {
        use RunStatus::*;
        let cases = [
            ("TIMEOUT", Interrupted, "time limit of 00:01:00"),
            ("PREEMPTED", Interrupted, "preempted"),
            ("NODE_FAIL", Interrupted, "node"),
            ("BOOT_FAIL", Interrupted, "boot"),
            ("DEADLINE", Interrupted, "deadline"),
            ("OUT_OF_MEMORY", Failed, "executor.memory"),
            ("CANCELLED", Cancelled, "cancelled"),
            ("REVOKED", Cancelled, "revoked"),
            ("FAILED", Failed, "exit code 1:0"),
            ("COMPLETED", Interrupted, "before its run recorded an end"),
            ("VANISHED", Interrupted, "no longer knows"),
        ];
        for (state, status, words) in cases {
            let explained = explain("7_1", state, Some("1:0"), Some("00:01:00"));
            assert_eq!(explained.status, status, "{state}");
            assert!(
                explained.reason.contains(words) && explained.reason.contains("7_1"),
                "{state}: {}",
                explained.reason
            );
            assert!(!explained.replaces.contains(&Completed) && !explained.replaces.contains(&Failed), "{state}");
            assert!(!is_active(state), "{state} is final");
        }
        // A time limit's or a preemption's SIGTERM looked like a cancel to the run; a cancel is one.
        assert!(explain("7", "TIMEOUT", None, None).replaces.contains(&Cancelled));
        assert!(!explain("7", "CANCELLED", None, None).replaces.contains(&Cancelled));
        for state in ["PENDING", "RUNNING", "REQUEUED", "COMPLETING", "SUSPENDED"] {
            assert!(is_active(state), "{state}");
        }
    }

    #[test]
    fn times_arrays_and_words_are_written_as_slurm_and_sh_read_them() {
        assert_eq!(time_seconds("30"), Some(1800));
        assert_eq!(time_seconds("1:30"), Some(90));
        assert_eq!(time_seconds("2:00:00"), Some(7200));
        assert_eq!(time_seconds("1-0"), Some(86_400));
        assert_eq!(time_seconds("1-2:30"), Some(95_400));
        assert_eq!(time_seconds("UNLIMITED"), None);
        assert_eq!(array_spec(&[3, 0, 1, 2, 7, 9, 10], Some(2)), "0-3,7,9-10%2");
        assert_eq!(array_spec(&[5], None), "5");
        assert_eq!(shell_quote("/opt/host"), "/opt/host");
        assert_eq!(shell_quote("it's here"), r"'it'\''s here'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn a_missing_slurm_is_a_clear_error() {
        let error = call("slurm-command-that-is-not-there", &[], &[], COMMAND_TIMEOUT).unwrap_err().to_string();
        assert!(error.contains("is not installed") && error.contains("scripts/setup.sh"), "{error}");
        let error = call("sleep", &["5".into()], &[], Duration::from_millis(200)).unwrap_err().to_string();
        assert!(error.contains("did not answer within"), "{error}");
        assert!(controller_down(
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)"
        ));
    }
}
