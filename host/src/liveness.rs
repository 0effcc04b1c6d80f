//! Whether a run recorded as running still has a live process: a run owned by this machine is
//! dead when its process is gone; one owned by another machine when its heartbeat is stale.
//! The store only lists running runs; this decides, and marks the dead ones interrupted.

use std::path::Path;
use std::time::Duration;

use store::{RunOwner, RunningRun, Store};

/// This machine's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The process running a run, as the store records it.
pub fn this_process() -> RunOwner {
    RunOwner { hostname: hostname(), pid: std::process::id() }
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `run`'s process is gone: on this machine, by its process id (this process's own id
/// means an earlier process that died); elsewhere, by a heartbeat older than `stale_after`.
pub fn is_dead(run: &RunningRun, stale_after: Duration) -> bool {
    if run.owner.hostname == hostname() {
        !process_alive(run.owner.pid) || run.owner.pid == std::process::id()
    } else {
        run.heartbeat_at < record::rfc3339_seconds_ago(stale_after)
    }
}

/// Marks every running run whose process is gone as interrupted; returns their ids.
pub fn mark_dead_runs(store: &dyn Store, stale_after: Duration) -> anyhow::Result<Vec<String>> {
    let mut marked = Vec::new();
    for run in store.running_runs()? {
        if is_dead(&run, stale_after) && store.mark_interrupted(&run.run_id)? {
            marked.push(run.run_id);
        }
    }
    Ok(marked)
}
