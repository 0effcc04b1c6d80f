//! Signals that stop work cleanly. Ctrl-C (SIGINT), SIGTERM (`kill`, a scheduler's cancel) and
//! SIGHUP (a closed terminal) ask the work to stop after its current batch: a run is then
//! recorded `cancelled`, naming the signal. SIGUSR1 is a batch scheduler's warning that the
//! job's time limit is near: the run stops the same way and is recorded `interrupted`, so a
//! requeued attempt can resume it. [`PARENT_GONE`] says the sweep that started a trial has died:
//! the run stops the same way and is recorded `cancelled`. A second SIGINT, SIGTERM or SIGHUP
//! exits at once; SIGUSR1 and [`PARENT_GONE`] may come more than once and never do.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGURG, SIGUSR1};

/// The signal a local sweep's trial processes get when their driver dies (`PR_SET_PDEATHSIG`).
/// Not SIGTERM: the kernel sends the parent-death signal again each time the worker is handed
/// to another thread of the dying driver, and a second SIGTERM means "exit now". SIGURG, which
/// nothing else sends to a process without sockets set to receive it, and which is ignored
/// until a handler is installed (a trial that misses it runs to its end rather than dying).
pub const PARENT_GONE: libc::c_int = SIGURG;

/// The environment variable naming a local sweep's driver to its trial processes: only they
/// take [`PARENT_GONE`], and one whose driver died before it could ask for the signal sees
/// it is not its parent's child any more.
pub const SWEEP_DRIVER_PID: &str = "HOST_SWEEP_DRIVER_PID";

/// Whether this process is a trial of a local sweep whose driver is `pid`.
fn sweep_driver() -> Option<libc::pid_t> {
    std::env::var(SWEEP_DRIVER_PID).ok()?.parse().ok()
}

/// Whether, and why, the work was asked to stop.
#[derive(Debug, Default)]
pub struct Stop {
    requested: AtomicBool,
    signal: AtomicI32,
    presses: AtomicUsize,
}

/// Why the work stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Ctrl-C, SIGTERM or SIGHUP (or a request without a signal): the user or scheduler
    /// cancelled it.
    Cancelled(Option<&'static str>),
    /// SIGUSR1: the scheduler's time limit is near.
    TimeLimit,
    /// [`PARENT_GONE`]: the sweep that started this trial died.
    ParentGone,
}

fn signal_name(signal: i32) -> Option<&'static str> {
    match signal {
        SIGINT => Some("SIGINT"),
        SIGTERM => Some("SIGTERM"),
        SIGHUP => Some("SIGHUP"),
        SIGUSR1 => Some("SIGUSR1"),
        SIGURG => Some("SIGURG"),
        _ => None,
    }
}

impl Stop {
    pub fn new() -> Arc<Self> {
        Arc::new(Stop::default())
    }

    /// Asks the work to stop (as Ctrl-C does).
    #[cfg(test)]
    fn request(&self) {
        self.presses.fetch_add(1, Ordering::SeqCst);
        self.requested.store(true, Ordering::SeqCst);
    }

    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    /// How many times it was asked (a second Ctrl-C asks for more haste than the first).
    pub fn presses(&self) -> usize {
        self.presses.load(Ordering::SeqCst)
    }

    /// Why it stopped, once it was asked to.
    pub fn reason(&self) -> Option<StopReason> {
        if !self.requested() {
            return None;
        }
        Some(match self.signal.load(Ordering::SeqCst) {
            SIGUSR1 => StopReason::TimeLimit,
            PARENT_GONE => StopReason::ParentGone,
            signal => StopReason::Cancelled(signal_name(signal)),
        })
    }

    /// The flag plugins poll.
    pub fn flag(&self) -> &AtomicBool {
        &self.requested
    }
}

/// The first SIGUSR1 or [`PARENT_GONE`] that came before any work installed its handlers (0:
/// none), taken by the first handlers installed: a batch scheduler may send its time-limit
/// warning early, even while the host starts, and a sweep may die while its trial starts.
static EARLY_SIGNAL: AtomicUsize = AtomicUsize::new(0);

/// Catches SIGUSR1 (whose default action ends the process) and [`PARENT_GONE`] from the
/// process's first moment; the work's own handlers see them once installed. A sweep's trial
/// whose driver died before the trial could ask for the signal counts as told. Call first
/// thing in `main`.
pub fn catch_early_signals() {
    for signal in [SIGUSR1, PARENT_GONE] {
        // SAFETY: the action only stores into an atomic, and only while nothing was stored yet.
        let registered = unsafe {
            signal_hook::low_level::register(signal, move || {
                let _ = EARLY_SIGNAL.compare_exchange(0, signal as usize, Ordering::SeqCst, Ordering::SeqCst);
            })
        };
        if let Err(error) = registered {
            tracing::warn!("cannot catch {}: {error}", signal_name(signal).unwrap_or("a signal"));
        }
    }
    // SAFETY: getppid cannot fail.
    if sweep_driver().is_some_and(|driver| driver != unsafe { libc::getppid() }) {
        let _ = EARLY_SIGNAL.compare_exchange(0, PARENT_GONE as usize, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// Stops `stop` on SIGINT, SIGTERM, SIGHUP, SIGUSR1 and [`PARENT_GONE`], saying `message` the
/// first time; with `exit_on_second`, a second SIGINT, SIGTERM or SIGHUP exits at once (130 and
/// the like).
pub fn on_signals(stop: Arc<Stop>, message: &'static str, exit_on_second: bool) {
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, PARENT_GONE]) {
        Ok(signals) => signals,
        Err(error) => {
            tracing::warn!("cannot install the signal handlers: {error}");
            return;
        }
    };
    let trial = sweep_driver().is_some();
    std::thread::spawn(move || {
        let early = match EARLY_SIGNAL.swap(0, Ordering::SeqCst) {
            0 => None,
            signal => Some(signal as i32),
        };
        for signal in early.into_iter().chain(signals.forever()) {
            // Nothing but a sweep's death means it here (a stray `kill -URG` of a plain run).
            if signal == PARENT_GONE && !trial {
                continue;
            }
            // A scheduler's warning and a parent's death may be told more than once: only the
            // first counts.
            let repeatable = signal == SIGUSR1 || signal == PARENT_GONE;
            if repeatable && stop.requested() {
                continue;
            }
            stop.presses.fetch_add(1, Ordering::SeqCst);
            if stop.requested.swap(true, Ordering::SeqCst) {
                if exit_on_second && !repeatable {
                    eprintln!("\n{} again: exiting now", signal_name(signal).unwrap_or("signal"));
                    // SAFETY: `_exit` ends the process without running exit-time destructors,
                    // which libtorch's threads, still working, would meet with an exception
                    // Rust aborts on.
                    unsafe { libc::_exit(128 + signal) };
                }
                continue;
            }
            stop.signal.store(signal, Ordering::SeqCst);
            let why = match signal {
                SIGUSR1 => " (the scheduler's time limit is near)".to_owned(),
                PARENT_GONE => " (the sweep that started this trial has ended)".to_owned(),
                SIGINT => String::new(),
                other => format!(" ({})", signal_name(other).unwrap_or("signal")),
            };
            eprintln!("\n{message}{why}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_follows_the_first_signal() {
        let stop = Stop::new();
        assert_eq!(stop.reason(), None);
        stop.signal.store(SIGUSR1, Ordering::SeqCst);
        stop.request();
        assert_eq!(stop.reason(), Some(StopReason::TimeLimit));
        stop.signal.store(SIGTERM, Ordering::SeqCst);
        assert_eq!(stop.reason(), Some(StopReason::Cancelled(Some("SIGTERM"))));
        stop.signal.store(PARENT_GONE, Ordering::SeqCst);
        assert_eq!(stop.reason(), Some(StopReason::ParentGone));
        let plain = Stop::new();
        plain.request();
        assert_eq!(plain.reason(), Some(StopReason::Cancelled(None)));
    }
}
