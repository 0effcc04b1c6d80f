//! Liveness across machines and namespaces: a run whose process id cannot be looked up from
//! here (another hostname, another PID namespace) is judged by its heartbeat alone, never by a
//! local process that happens to have its id: alive while it beats, interrupted once silent.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{endless_training_project, host_binary, on_every_store, wait_until_running};

fn status(project: &crate::support::Project, run_id: &str) -> String {
    project.host(&["runs", "show", run_id, "--json"]).success().json()["status"].as_str().unwrap().to_owned()
}

on_every_store! {
/// Regression (trust-boundaries issue, item 4): a host in another PID namespace recorded pid 1
/// or 2, which is alive out here, so its killed run stayed `running` for ever; and a live run
/// in a container sharing the hostname was taken for dead.
fn a_run_in_another_pid_namespace_is_judged_by_its_heartbeat() {
    let project = endless_training_project(4);
    project.write("config/database_config.yaml", "stale_after_seconds: 5\n");
    let host = project.command(&[]);
    let mut command = Command::new("unshare");
    command
        .args(["-r", "-p", "-f", "--mount-proc"])
        .arg(host_binary())
        .args(["-q", "run", "config/long.yaml"])
        .current_dir(project.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    for (key, value) in host.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let mut child = command.spawn().expect("unshare is part of util-linux");
    let run_id = wait_until_running(&project);
    // Same hostname, another PID namespace: its recorded pid means nothing out here (pid 1
    // here is init, alive).
    let record = project.host(&["runs", "show", &run_id, "--json"]).success().json();
    assert_eq!(record["owner"]["pid"], 1, "{}", record["owner"]);
    assert_ne!(
        record["owner"]["pid_namespace"].as_str().unwrap(),
        std::fs::read_link("/proc/self/ns/pid").unwrap().display().to_string()
    );
    // Alive and beating for longer than the stale time: never taken for dead from out here.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(status(&project, &run_id), "running");
    // Killed: still `running` while its last heartbeat is fresh, then interrupted.
    // SAFETY: a signal to the process group the test started.
    unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
    child.wait().unwrap();
    let started = Instant::now();
    while status(&project, &run_id) == "running" {
        assert!(started.elapsed() < Duration::from_secs(30), "never marked interrupted");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(started.elapsed() >= Duration::from_secs(2), "marked before its heartbeat went stale");
    assert_eq!(status(&project, &run_id), "interrupted");
}
}
