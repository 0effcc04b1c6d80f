//! Whether a run recorded as running still has a live process, and the heartbeat that says so.
//! A process id means something only on the machine (boot) and in the PID namespace it was
//! taken in: there, a run whose process is gone is dead at once. Anywhere else (another node,
//! another container sharing the hostname) only the heartbeat counts: a run is dead when its
//! heartbeat is older than `stale_after`. The store only lists running runs; this decides.

use std::sync::mpsc;
use std::time::Duration;

use record::RunOwner;
use store::{Locator, OpenOptions, RunningRun, Store};

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|text| text.trim().to_owned()).unwrap_or_default()
}

/// This machine's name.
pub fn hostname() -> String {
    let name = read_trimmed("/proc/sys/kernel/hostname");
    if name.is_empty() { "unknown".into() } else { name }
}

/// This process, as the store records a run's owner.
pub fn this_process() -> RunOwner {
    RunOwner {
        hostname: hostname(),
        pid: std::process::id(),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        pid_namespace: std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default(),
    }
}

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `owner`'s process id can be looked up (and signalled) from here: the same machine,
/// boot and PID namespace. Runs recorded before boot and namespace were kept count by hostname
/// alone.
pub fn is_local(owner: &RunOwner, here: &RunOwner) -> bool {
    owner.hostname == here.hostname
        && (owner.boot_id.is_empty() || owner.boot_id == here.boot_id)
        && (owner.pid_namespace.is_empty() || owner.pid_namespace == here.pid_namespace)
}

/// Whether `run`'s process is gone, judged from `here`.
pub fn is_dead(run: &RunningRun, here: &RunOwner, stale_after: Duration) -> bool {
    let stale = run.heartbeat_at < record::rfc3339_seconds_ago(stale_after);
    if is_local(&run.owner, here) {
        // This process's own id belongs to an earlier process that died (or to this one,
        // which is not running that run).
        !process_alive(run.owner.pid) || run.owner.pid == here.pid || stale
    } else {
        stale
    }
}

/// The runs recorded as running whose process is gone, each with why it is taken for dead.
pub fn dead_runs(store: &dyn Store, stale_after: Duration) -> anyhow::Result<Vec<(String, String)>> {
    let here = this_process();
    let mut dead = Vec::new();
    for run in store.running_runs()? {
        if !is_dead(&run, &here, stale_after) {
            continue;
        }
        let reason = if is_local(&run.owner, &here) {
            format!("its process ({} on {}) ended without recording an end", run.owner.pid, run.owner.hostname)
        } else {
            format!(
                "no heartbeat from its process ({} on {}) since {}",
                run.owner.pid, run.owner.hostname, run.heartbeat_at
            )
        };
        dead.push((run.run_id, reason));
    }
    Ok(dead)
}

/// Marks `dead` runs (from [`dead_runs`]) interrupted; returns the ids it marked.
pub fn mark_interrupted(store: &dyn Store, dead: Vec<(String, String)>) -> anyhow::Result<Vec<String>> {
    let mut marked = Vec::new();
    for (run_id, reason) in dead {
        if store.mark_interrupted(&run_id, &reason)? {
            marked.push(run_id);
        }
    }
    Ok(marked)
}

/// Marks every running run whose process is gone as interrupted; returns their ids.
pub fn mark_dead_runs(store: &dyn Store, stale_after: Duration) -> anyhow::Result<Vec<String>> {
    mark_interrupted(store, dead_runs(store, stale_after)?)
}

/// Keeps a run's heartbeat fresh from a thread of its own, with its own connection, while the
/// run lasts (whatever the stage is doing). Stops when dropped.
pub struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    /// Beats every `stale_after / 8` (between 1 and 15 s), into the store at `locator`.
    pub fn start(locator: &Locator, options: &OpenOptions, stale_after: Duration, run_id: &str) -> Heartbeat {
        let run = run_id.to_owned();
        Heartbeat::every(locator, options, stale_after, format!("run {run_id}"), move |store| store.heartbeat(&run))
    }

    /// Calls `beat` every `stale_after / 8` (between 1 and 15 s) with a connection of its own to
    /// the store at `locator`; a failure is said once (as the heartbeat of `what`).
    fn every(
        locator: &Locator,
        options: &OpenOptions,
        stale_after: Duration,
        what: String,
        beat: impl Fn(&dyn Store) -> anyhow::Result<()> + Send + 'static,
    ) -> Heartbeat {
        let every = (stale_after / 8).clamp(Duration::from_secs(1), Duration::from_secs(15));
        let (stop, stopped) = mpsc::channel::<()>();
        let (locator, options) = (locator.clone(), options.clone());
        let thread = std::thread::spawn(move || {
            let mut store = None;
            let mut warned = false;
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let beat_once = |store: &mut Option<Box<dyn Store>>| -> anyhow::Result<()> {
                    let open = match store.take() {
                        Some(open) => open,
                        None => store::open(&locator, &options)?,
                    };
                    beat(&*open)?;
                    *store = Some(open);
                    Ok(())
                };
                if let Err(error) = beat_once(&mut store) {
                    store = None;
                    if !warned {
                        tracing::warn!("cannot record the heartbeat of {what}: {error:#}");
                        warned = true;
                    }
                }
            }
        });
        Heartbeat { stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The lease on driving a sweep: one process at a time starts its trials (two would run each
/// twice). Renewed from a thread of its own while held; given up when dropped. A holder that is
/// dead (its process gone here, or its renewal older than `stale_after`) is taken over.
pub struct SweepLease {
    heartbeat: Option<Heartbeat>,
    sweep_id: String,
    owner: RunOwner,
    locator: Locator,
    options: OpenOptions,
}

impl SweepLease {
    pub fn take(
        store: &dyn Store,
        locator: &Locator,
        options: &OpenOptions,
        stale_after: Duration,
        sweep_id: &str,
        on_lost: std::sync::Arc<crate::interrupt::Stop>,
    ) -> anyhow::Result<SweepLease> {
        let me = this_process();
        if let Some(holder) = store.lease_sweep(sweep_id, &me, None)? {
            let as_run = RunningRun {
                run_id: sweep_id.into(),
                owner: holder.owner.clone(),
                heartbeat_at: holder.heartbeat_at.clone(),
            };
            let alive = !is_dead(&as_run, &me, stale_after);
            let taken =
                if alive { Some(holder) } else { store.lease_sweep(sweep_id, &me, Some(&holder.heartbeat_at))? };
            if let Some(holder) = taken {
                anyhow::bail!(
                    "sweep {sweep_id} is being run by process {} on {} (lease renewed {}): two drivers would run its trials twice; \
                     wait for it (`host sweep show {sweep_id}` shows its trials) or stop it there",
                    holder.owner.pid,
                    holder.owner.hostname,
                    holder.heartbeat_at
                );
            }
            tracing::info!("took over sweep {sweep_id} from process {} on {}", as_run.owner.pid, as_run.owner.hostname);
        }
        let (id, owner) = (sweep_id.to_owned(), me.clone());
        let heartbeat = Heartbeat::every(locator, options, stale_after, format!("sweep {sweep_id}"), move |store| {
            match store.lease_sweep(&id, &owner, None)? {
                None => Ok(()),
                Some(holder) => {
                    // Two drivers would start the same trials: this one stops.
                    on_lost.flag().store(true, std::sync::atomic::Ordering::Relaxed);
                    anyhow::bail!(
                        "process {} on {} took the sweep over (this one could not renew its lease); stopping",
                        holder.owner.pid,
                        holder.owner.hostname
                    )
                }
            }
        });
        Ok(SweepLease {
            heartbeat: Some(heartbeat),
            sweep_id: sweep_id.to_owned(),
            owner: me,
            locator: locator.clone(),
            options: options.clone(),
        })
    }
}

impl Drop for SweepLease {
    fn drop(&mut self) {
        drop(self.heartbeat.take());
        let released = store::open(&self.locator, &self.options)
            .and_then(|store| store.release_sweep(&self.sweep_id, &self.owner));
        if let Err(error) = released {
            tracing::debug!("the lease on sweep {} stays until it is stale: {error:#}", self.sweep_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(owner: RunOwner, heartbeat_seconds_ago: u64) -> RunningRun {
        RunningRun {
            run_id: "r".into(),
            owner,
            heartbeat_at: record::rfc3339_seconds_ago(Duration::from_secs(heartbeat_seconds_ago)),
        }
    }

    #[test]
    fn a_process_id_is_looked_up_only_in_its_own_machine_boot_and_namespace() {
        let here = this_process();
        let stale = Duration::from_secs(120);
        // A live process here with a fresh heartbeat: alive. Gone: dead at once.
        let parent = RunOwner { pid: std::os::unix::process::parent_id(), ..here.clone() };
        assert!(!is_dead(&running(parent.clone(), 1), &here, stale));
        let gone = RunOwner { pid: u32::MAX - 1, ..here.clone() };
        assert!(is_dead(&running(gone.clone(), 1), &here, stale));
        // The same pid in another namespace or after a reboot says nothing: only the heartbeat.
        for elsewhere in [
            RunOwner { pid_namespace: "pid:[1]".into(), ..gone.clone() },
            RunOwner { boot_id: "another-boot".into(), ..gone.clone() },
            RunOwner { hostname: "node-2".into(), ..gone.clone() },
        ] {
            assert!(!is_dead(&running(elsewhere.clone(), 1), &here, stale), "{elsewhere:?} with a fresh heartbeat");
            assert!(is_dead(&running(elsewhere, 300), &here, stale), "a stale heartbeat");
        }
        // A live pid here whose run's heartbeat stopped long ago: its pid was reused.
        assert!(is_dead(&running(parent, 300), &here, stale));
    }
}
