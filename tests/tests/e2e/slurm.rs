//! `--executor slurm` on a real Slurm: the one-node cluster scripts/slurm-local.sh starts (the
//! packages scripts/setup.sh installs). Sweeps as job arrays linked to their runs on both
//! stores; detach, follow and resubmit without duplicates; scancel, scontrol requeue (the
//! trial continues from its checkpoint and completes once), a time limit (TIMEOUT with the
//! stage reached), the time-limit warning, Ctrl-C, a bad partition, a controller that does not
//! answer, and a job Slurm forgot.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Project, library, on_every_store, slurm, slurm_cluster, write_tiny_mnist};

/// A project whose `config/sweep.yaml` sweeps `parameters` (YAML lines under
/// `sweep.parameters`) over `model` on tiny MNIST, run by Slurm with `executor` (YAML flow
/// mapping entries).
fn slurm_project(model: &str, training: &str, executor: &str, parameters: &str) -> Project {
    slurm_cluster();
    let project = Project::new();
    write_tiny_mnist(&project.path().join("data"), 200, 40);
    let (mnist, linear) =
        (library("mnist-plugin").display().to_string(), library("linear-plugin").display().to_string());
    project.mapping(&format!(
        "Loader:\n  MNISTLoader: {mnist}\nModel:\n  MNISTMLP: {mnist}\n  SoftmaxRegression: {linear}\n"
    ));
    project.write(
        "config/sweep.yaml",
        &format!(
            "experiment_name: on_slurm\nplugins: {{data_loader: MNISTLoader, model: {model}}}\n\
             data_loader: {{data_dir: data}}\ntraining: {{{training}}}\nreporting: {{enabled: false}}\n\
             executor: {{kind: slurm, cpus_per_task: 1, {executor}}}\n\
             sweep:\n  method: grid\n  metric: validation.accuracy\n  direction: maximize\n  parameters:\n{parameters}"
        ),
    );
    project
}

fn trials(sweep: &Value) -> &Vec<Value> {
    sweep["trials"].as_array().expect("trials")
}

/// Polls `host sweep show SWEEP --json` until `done` holds for it.
#[track_caller]
fn wait_for_sweep(project: &Project, sweep_id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let sweep = project.host(&["sweep", "show", sweep_id, "--json"]).success().json();
        if done(&sweep) {
            return sweep;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "{what} never happened: {sweep:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn job_id(trial: &Value) -> String {
    trial["job"]["job_id"].as_str().expect("a job").to_owned()
}

on_every_store! {
/// Eight trials go to Slurm as one job array and run as ordinary runs, each linked to its job
/// and its job to its run; submitting the same sweep again while it is queued submits nothing;
/// `sweep watch` follows it to the end from "another machine".
fn a_sweep_runs_on_slurm_as_one_job_array_linked_to_its_runs() {
    // Submitted held (the user's own --hold), so they are surely queued when submitted again.
    let project = slurm_project(
        "SoftmaxRegression",
        "epochs: 2, batch_size: 32",
        "time: \"10:00\", extra_args: [--hold]",
        "    training.learning_rate: [0.05, 0.1, 0.2, 0.4]\n    training.batch_size: [16, 32]\n",
    );
    let submitted = project.host(&["sweep", "config/sweep.yaml", "--detach", "--json"]);
    let first = submitted.success().json();
    assert_eq!(trials(&first).len(), 8);
    let jobs: Vec<String> = trials(&first).iter().map(job_id).collect();
    let array = jobs[0].split('_').next().unwrap().to_owned();
    for (trial, job) in trials(&first).iter().zip(&jobs) {
        assert_eq!(job, &format!("{array}_{}", trial["trial"]), "one array, one task per trial");
    }
    let sweep_id = first["sweep_id"].as_str().unwrap().to_owned();
    let folder = project.path().join(format!("runs/sweeps/{sweep_id}"));

    // Again while queued or running: every trial is followed, none submitted twice.
    let again = project.host(&["sweep", "config/sweep.yaml", "--detach"]);
    assert!(again.success().stderr.contains("0 to run"), "{}", again.stderr);
    let second = project.host(&["sweep", "show", &sweep_id, "--json"]).success().json();
    for (trial, job) in trials(&second).iter().zip(&jobs) {
        assert_eq!(&job_id(trial), job, "{second:#}");
        assert_eq!((trial["job"]["state"].as_str(), trial["job"]["reason"].as_str()), (Some("PENDING"), Some("JobHeldUser")));
    }
    slurm("scontrol", &["release", &array]);
    let scripts: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sh"))
        .collect();
    assert_eq!(scripts.len(), 1, "one submission: {scripts:?}");

    let watched = project.host(&["sweep", "watch", &sweep_id, "--json"]).success().json();
    assert!(
        trials(&watched).iter().all(|t| t["status"] == "completed" && t["metric"].is_number()
            && t["job"]["state"] == "COMPLETED"),
        "{watched:#}"
    );
    for trial in trials(&watched) {
        let run_id = trial["run_id"].as_str().unwrap();
        let record = project.host(&["runs", "show", run_id, "--json"]).success().json();
        let scheduler = &record["scheduler"];
        assert_eq!(scheduler["job_id"], trial["job"]["job_id"], "the run names its job");
        assert_eq!((&scheduler["array_job_id"], &scheduler["array_task_id"]), (&Value::from(array.clone()), &trial["trial"]));
        assert_eq!((scheduler["scheduler"].as_str(), scheduler["cluster"].as_str()), (Some("slurm"), Some("local")));
        assert_eq!((scheduler["cpus"].as_u64(), scheduler["time_limit"].as_str()), (Some(1), Some("00:10:00")));
        assert!(scheduler["submit_time"].is_string() && scheduler["node"] == "localhost", "{scheduler}");
        assert_eq!(record["threads"], 1, "threads follow the allocation, not the node's cores");
        assert_eq!(record["trial"]["trial"], trial["trial"]);
        let log = folder.join(format!("trial-{:03}.log", trial["trial"].as_u64().unwrap()));
        assert!(std::fs::read_to_string(&log).unwrap().contains(run_id), "{}", log.display());
    }
    let run_id = trials(&watched)[0]["run_id"].as_str().unwrap();
    let shown = project.host(&["runs", "show", run_id]).success().stdout.clone();
    assert!(shown.contains(&format!("scheduler   slurm job {array}_1 on localhost of cluster local")), "{shown}");
    let prov = project.host(&["export", run_id]).success().json();
    assert_eq!(prov["activity"][format!("run:{run_id}")]["host:job_id"], format!("{array}_1"));
    let table = project.host(&["sweep", "show", &sweep_id]).success().stdout.clone();
    assert!(table.contains("JOB") && table.contains(&format!("{array}_8 COMPLETED")), "{table}");
    assert!(folder.join("index.html").is_file(), "watch writes the report");
}
}

/// `scancel` of one trial's job: that trial is recorded cancelled (its run stopped after its
/// batch), and the sweep goes on with the others.
#[test]
fn scancel_of_one_trial_cancels_it_and_the_sweep_goes_on() {
    let project =
        slurm_project("MNISTMLP", "batch_size: 16", "time: \"10:00\"", "    training.epochs: [1, 100000, 1]\n");
    let (sweep, sweep_id) = start_sweep(&project);
    let running = wait_for_sweep(&project, &sweep_id, "trial 2 running", |s| {
        trials(s).get(1).is_some_and(|t| t["status"] == "running" && t["run_id"].is_string())
    });
    slurm("scancel", &[&job_id(&trials(&running)[1])]);
    let output = sweep.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "not every trial completed");
    let ended: Value = serde_json::from_slice(&output.stdout).unwrap();
    let statuses: Vec<&str> = trials(&ended).iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["completed", "cancelled", "completed"], "{ended:#}");
    assert_eq!(trials(&ended)[1]["job"]["state"], "CANCELLED");
    let record =
        project.host(&["runs", "show", trials(&ended)[1]["run_id"].as_str().unwrap(), "--json"]).success().json();
    assert_eq!(record["status"], "cancelled");
    assert!(record["error"].as_str().unwrap().contains("SIGTERM"), "{}", record["error"]);
}

/// Starts `host sweep config/sweep.yaml --json` in the background; the process and, once it is
/// recorded, the sweep's id.
fn start_sweep(project: &Project) -> (std::process::Child, String) {
    let sweep = project
        .command(&["sweep", "config/sweep.yaml", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (sweep, wait_for_any_sweep(project))
}

/// The sweep id of the only sweep in the project, once it is recorded.
fn wait_for_any_sweep(project: &Project) -> String {
    let started = Instant::now();
    loop {
        let sweeps = project.host(&["sweep", "show", "--json"]).success().json();
        if let Some(id) = sweeps.as_array().and_then(|s| s.first()).and_then(|s| s["sweep_id"].as_str()) {
            return id.to_owned();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no sweep was recorded");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every log file under a sweep's folder, for a failing test's message.
fn job_logs(folder: &Path) -> String {
    let mut logs = String::new();
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            logs.push_str(&job_logs(&path));
        } else if path.extension().is_some_and(|e| e == "log" || e == "out") {
            logs.push_str(&format!("== {}\n{}\n", path.display(), std::fs::read_to_string(&path).unwrap_or_default()));
        }
    }
    logs
}

/// The lines of the tests' cluster's daemon logs that name `job` (its array task or its own id).
fn cluster_logs(job: &str) -> String {
    let log = slurm_cluster().join("log");
    let mut lines = String::new();
    for daemon in ["slurmctld.log", "slurmd.log"] {
        lines.push_str(&format!("== {daemon}\n"));
        let text = std::fs::read_to_string(log.join(daemon)).unwrap_or_default();
        let job_id = job.split('_').next().unwrap_or(job);
        for line in text.lines().filter(|l| l.contains(job_id) || l.contains("error")) {
            lines.push_str(line);
            lines.push('\n');
        }
    }
    lines
}

/// The epoch a run's last-epoch checkpoint is at.
fn checkpoint_epoch(run_dir: &Path) -> u64 {
    std::fs::read_to_string(run_dir.join("checkpoints/last.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|last| last["epoch"].as_u64())
        .unwrap_or(0)
}

/// `scontrol requeue` of a running trial: its first attempt is recorded interrupted (requeued),
/// the second reuses the data stages, continues from the first's last epoch checkpoint and
/// completes; the trial completes once, with both attempts recorded and one log.
#[test]
fn a_requeued_trial_continues_from_its_checkpoint_and_completes_once() {
    let project = slurm_project(
        "MNISTMLP",
        "epochs: 40, batch_size: 1",
        "time: \"10:00\"",
        "    training.learning_rate: [0.001]\n",
    );
    let first = project.host(&["sweep", "config/sweep.yaml", "--detach", "--json"]).success().json();
    let sweep_id = first["sweep_id"].as_str().unwrap().to_owned();
    let job = job_id(&trials(&first)[0]);
    let running = wait_for_sweep(&project, &sweep_id, "the trial's run", |s| trials(s)[0]["run_id"].is_string());
    let attempt = trials(&running)[0]["run_id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    while checkpoint_epoch(&project.path().join("runs").join(&attempt)) < 2 {
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint of epoch 2");
        std::thread::sleep(Duration::from_millis(100));
    }
    slurm("scontrol", &["requeue", &job]);
    // A requeued job waits about two minutes to start again; the cluster's operator (this
    // test) lets it start in three seconds. Not at once: slurmd refuses to launch a job whose
    // credential is from the second it revoked the job's last one ("Job N already killed, do
    // not launch batch job"), and the job fails.
    let started = Instant::now();
    loop {
        let state = slurm("squeue", &["-h", "-j", &job, "-o", "%T"]);
        if state.trim() == "PENDING" {
            slurm("scontrol", &["update", &format!("JobId={job}"), "StartTime=now+3"]);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never requeued: {state}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let watched = project.host(&["sweep", "watch", &sweep_id, "--json"]);
    let mut logs = job_logs(&project.path().join("runs/sweeps").join(&sweep_id));
    logs.push_str(&cluster_logs(&job));
    assert_eq!(watched.code, Some(0), "{}\n{}\njob logs:\n{logs}", watched.stdout, watched.stderr);
    let ended = watched.json();
    let trial = &trials(&ended)[0];
    assert_eq!(trial["status"], "completed", "{ended:#}\njob logs:\n{logs}");
    let attempts: Vec<&str> = trial["attempts"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(attempts.len(), 2, "{ended:#}");
    assert_eq!((attempts[0], Some(attempts[1])), (attempt.as_str(), trial["run_id"].as_str()));
    let before = project.host(&["runs", "show", attempts[0], "--json"]).success().json();
    assert_eq!(before["status"], "interrupted");
    assert!(
        before["error"].as_str().unwrap().contains(&format!("requeued by slurm (job {job}, restart 1)")),
        "{}",
        before["error"]
    );
    let after = project.host(&["runs", "show", attempts[1], "--json"]).success().json();
    assert_eq!(after["status"], "completed");
    assert_eq!(after["previous_attempt"], attempts[0]);
    assert_eq!(after["scheduler"]["restart_count"], 1);
    let resumed = after["fit"]["details"]["resumed_after_epoch"].as_u64().expect("resumed from a checkpoint");
    assert!(resumed >= 2, "{}", after["fit"]);
    assert_eq!(after["fit"]["epochs_completed"], 40);
    let stages: Vec<(&str, bool)> = after["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["reused_from"].is_string()))
        .collect();
    assert_eq!(&stages[..3], [("load", true), ("prepare", true), ("train", false)], "{stages:?}");
    let completed = attempts
        .iter()
        .filter(|id| project.host(&["runs", "show", id, "--json"]).success().json()["status"] == "completed")
        .count();
    assert_eq!(completed, 1, "completes once");
    let log = std::fs::read_to_string(project.path().join(format!("runs/sweeps/{sweep_id}/trial-001.log"))).unwrap();
    assert!(log.contains(attempts[1]), "the second attempt appended to the trial's log:\n{log}");
}

/// A one-minute time limit: Slurm ends the job TIMEOUT; the trial is recorded interrupted, its
/// run naming the time limit and showing the stage it reached.
#[test]
fn a_time_limit_ends_a_trial_as_timeout_with_the_stage_it_reached() {
    let project = slurm_project(
        "MNISTMLP",
        "epochs: 100000, batch_size: 16",
        "time: \"1\", signal_seconds: 0",
        "    training.learning_rate: [0.001]\n",
    );
    let ended = project.host(&["sweep", "config/sweep.yaml", "--json"]);
    assert_eq!(ended.code, Some(1), "{}", ended.stderr);
    let ended = ended.json();
    let trial = &trials(&ended)[0];
    assert_eq!(
        (trial["status"].as_str(), trial["job"]["state"].as_str()),
        (Some("interrupted"), Some("TIMEOUT")),
        "{ended:#}"
    );
    let record = project.host(&["runs", "show", trial["run_id"].as_str().unwrap(), "--json"]).success().json();
    assert_eq!(record["status"], "interrupted");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("time limit of 00:01:00 (TIMEOUT)"), "{error}");
    let last = record["stages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["name"], "train", "the stage it reached: {}", record["stages"]);
    assert_ne!(last["status"], "completed");
}

/// `host run --executor slurm --wait`: the job is warned (SIGUSR1) before its time limit, and
/// the run stops after its batch, recorded interrupted with the reason.
#[test]
fn a_submitted_run_warned_of_its_time_limit_stops_after_its_batch() {
    let project = slurm_project(
        "MNISTMLP",
        "epochs: 100000, batch_size: 16",
        "time: \"3\", signal_seconds: 90",
        "    training.learning_rate: [0.001]\n",
    );
    let text = std::fs::read_to_string(project.path().join("config/sweep.yaml")).unwrap();
    project.write("config/run.yaml", text.split("sweep:").next().unwrap());
    let waited = project.host(&["run", "config/run.yaml", "--wait", "--json"]);
    assert_eq!(waited.code, Some(130), "{}", waited.stderr);
    let record = waited.json();
    assert_eq!(record["status"], "interrupted");
    assert!(record["error"].as_str().unwrap().contains("time limit was near (SIGUSR1)"), "{}", record["error"]);
    assert_eq!(record["scheduler"]["time_limit"], "00:03:00");
    let submitted = project.host(&["run", "config/run.yaml", "--executor", "slurm", "--json"]).success().json();
    assert!(submitted["job_id"].is_string() && submitted["run_id"].is_string(), "{submitted}");
    slurm("scancel", &[submitted["job_id"].as_str().unwrap()]);
}

/// Ctrl-C on `host sweep --executor slurm` cancels its jobs: running trials stop after their
/// batch and record `cancelled`, queued ones are cancelled, and nothing is left in the queue.
#[test]
fn ctrl_c_on_a_slurm_sweep_cancels_its_jobs() {
    let project = slurm_project(
        "MNISTMLP",
        "epochs: 100000, batch_size: 16",
        "time: \"10:00\", array_throttle: 1",
        "    training.learning_rate: [0.001, 0.002]\n",
    );
    let (sweep, sweep_id) = start_sweep(&project);
    wait_for_sweep(&project, &sweep_id, "trial 1 running", |s| {
        trials(s).first().is_some_and(|t| t["run_id"].is_string())
    });
    // SAFETY: signals the host process this test started.
    unsafe { libc::kill(sweep.id() as libc::pid_t, libc::SIGINT) };
    let output = sweep.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", String::from_utf8_lossy(&output.stderr));
    let ended: Value = serde_json::from_slice(&output.stdout).unwrap();
    let states: Vec<(&str, &str)> =
        trials(&ended).iter().map(|t| (t["status"].as_str().unwrap(), t["job"]["state"].as_str().unwrap())).collect();
    assert_eq!(states, [("cancelled", "CANCELLED"), ("cancelled", "CANCELLED")], "{ended:#}");
    let array = job_id(&trials(&ended)[0]).split('_').next().unwrap().to_owned();
    let left = slurm("squeue", &["-h", "-j", &array, "-t", "PENDING,RUNNING", "-o", "%i"]);
    assert!(left.trim().is_empty(), "still queued: {left}");
}

/// `host sweep cancel` from another process: the running trial's run stops after its batch
/// and records `cancelled`, the queued one is cancelled without a run; with `--hard` the run is
/// killed at once and recorded cancelled all the same.
#[test]
fn sweep_cancel_stops_queued_and_running_trials_gently_or_at_once() {
    let project = slurm_project(
        "MNISTMLP",
        "epochs: 100000, batch_size: 16",
        "time: \"10:00\", array_throttle: 1",
        "    training.learning_rate: [0.001, 0.002]\n",
    );
    for hard in [false, true] {
        if hard {
            // Another sweep (another id) for the second round.
            let text = std::fs::read_to_string(project.path().join("config/sweep.yaml")).unwrap();
            project.write("config/sweep.yaml", &text.replace("[0.001, 0.002]", "[0.001, 0.003]"));
        }
        let first = project.host(&["sweep", "config/sweep.yaml", "--detach", "--json"]).success().json();
        let sweep_id = first["sweep_id"].as_str().unwrap().to_owned();
        wait_for_sweep(&project, &sweep_id, "trial 1 running", |s| trials(s)[0]["run_id"].is_string());
        let mut args = vec!["sweep", "cancel", sweep_id.as_str(), "--json"];
        if hard {
            args.push("--hard");
        }
        let cancelled = project.host(&args).success().json();
        assert_eq!(cancelled["stopped"].as_array().unwrap().len(), 2, "{cancelled:#}");
        let ended = cancelled["sweep"].clone();
        let states: Vec<&str> = trials(&ended).iter().map(|t| t["status"].as_str().unwrap()).collect();
        assert_eq!(states, ["cancelled", "cancelled"], "{ended:#}");
        // Killed, a job ends FAILED (by a signal) rather than CANCELLED; queued, it is cancelled.
        let killed = trials(&ended)[0]["job"]["state"].as_str().unwrap();
        assert!(killed == if hard { "FAILED" } else { "CANCELLED" }, "{ended:#}");
        assert_eq!(trials(&ended)[1]["job"]["state"], "CANCELLED");
        assert!(trials(&ended)[1]["run_id"].is_null(), "the queued trial never ran");
        let record =
            project.host(&["runs", "show", trials(&ended)[0]["run_id"].as_str().unwrap(), "--json"]).success().json();
        let error = record["error"].as_str().unwrap();
        let expected = if hard { "cancelled at once" } else { "cancelled by SIGTERM after its batch" };
        assert!(error.contains(expected), "{error}");
    }
}

/// Errors before any trial runs: a partition the cluster does not have (naming the key), and
/// a controller that does not answer.
#[test]
fn a_bad_partition_or_an_unreachable_controller_is_a_clear_error_before_any_trial() {
    let project =
        slurm_project("SoftmaxRegression", "epochs: 1", "partition: nope", "    training.learning_rate: [0.1]\n");
    let refused = project.host(&["sweep", "config/sweep.yaml"]);
    let error = refused.failure();
    assert!(
        error.contains("config/sweep.yaml")
            && error.contains("Invalid partition")
            && error.contains("executor.partition"),
        "{error}"
    );
    let sweeps = project.host(&["sweep", "show", "--json"]).success().json();
    assert_eq!(sweeps, Value::Array(Vec::new()), "nothing was recorded");
    let text = std::fs::read_to_string(project.path().join("config/sweep.yaml")).unwrap();
    project.write("config/run.yaml", text.split("sweep:").next().unwrap());
    let error = project.host(&["run", "config/run.yaml"]).failure().to_owned();
    assert!(error.contains("Invalid partition") && error.contains("executor.partition"), "{error}");

    // A slurm.conf whose controller port nobody listens on.
    let conf = std::fs::read_to_string(slurm_cluster().join("slurm.conf")).unwrap();
    let dead: String = conf
        .lines()
        .map(|l| if l.starts_with("SlurmctldPort=") { "SlurmctldPort=1".to_owned() } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join("\n");
    let dead_conf = project.write("dead-slurm.conf", &dead);
    let text = text.replace("partition: nope", "time: \"1\"");
    project.write("config/sweep.yaml", &text);
    let output = project.command(&["sweep", "config/sweep.yaml"]).env("SLURM_CONF", &dead_conf).output().unwrap();
    let run = crate::support::Run::from(output);
    let error = run.failure();
    assert!(error.contains("cannot reach the Slurm controller") && error.contains("slurmctld"), "{error}");
}

/// A job Slurm no longer knows (its state lost, or ended long before anyone looked): `sweep
/// show` records it VANISHED and the trial, without a run, interrupted.
#[test]
fn a_job_that_vanished_is_recorded_so() {
    let project = slurm_project("SoftmaxRegression", "epochs: 1", "time: \"1\"", "    training.learning_rate: [0.1]\n");
    let store =
        store::open(&store::Locator::parse(&project.store_locator()).unwrap(), &store::OpenOptions::default()).unwrap();
    let sweep = store::SweepStart {
        sweep_id: "lost".into(),
        name: "lost".into(),
        config: serde_json::json!({"base": {"experiment_name": "lost"}, "sweep": {"metric": "test.accuracy", "parameters": {"seed": [1]}}}),
        metric: "test.accuracy".into(),
        maximize: true,
    };
    store.begin_sweep(&sweep).unwrap();
    store.trial_started("lost", 1, &serde_json::json!({"seed": 1})).unwrap();
    let job = store::SweepJob {
        trial: 1,
        scheduler: "slurm".into(),
        job_id: "987654_1".into(),
        submitted_at: "2026-01-01T00:00:00Z".into(),
        state: "RUNNING".into(),
        reason: None,
        updated_at: "2026-01-01T00:00:00Z".into(),
    };
    store.job_submitted("lost", &job).unwrap();
    drop(store);
    let shown = project.host(&["sweep", "show", "lost", "--json"]).success().json();
    let trial = &trials(&shown)[0];
    assert_eq!(
        (trial["status"].as_str(), trial["job"]["state"].as_str()),
        (Some("interrupted"), Some("VANISHED")),
        "{shown:#}"
    );
}
