//! Signals that stop work cleanly. Ctrl-C (SIGINT), SIGTERM (`kill`, a scheduler's cancel) and
//! SIGHUP (a closed terminal) ask the work to stop after its current batch: a run is then
//! recorded `cancelled`, naming the signal. SIGUSR1 is a batch scheduler's warning that the
//! job's time limit is near: the run stops the same way and is recorded `interrupted`, so a
//! requeued attempt can resume it. A second SIGINT, SIGTERM or SIGHUP exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

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
}

fn signal_name(signal: i32) -> Option<&'static str> {
    match signal {
        SIGINT => Some("SIGINT"),
        SIGTERM => Some("SIGTERM"),
        SIGHUP => Some("SIGHUP"),
        SIGUSR1 => Some("SIGUSR1"),
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
            signal => StopReason::Cancelled(signal_name(signal)),
        })
    }

    /// The flag plugins poll.
    pub fn flag(&self) -> &AtomicBool {
        &self.requested
    }
}

/// Set by a SIGUSR1 that came before any work installed its handlers: a batch scheduler may
/// send its time-limit warning early, even while the host starts.
fn early_time_limit() -> &'static Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(Default::default)
}

/// Catches SIGUSR1 from the process's first moment (its default action ends the process); the
/// work's own handlers see it once installed. Call first thing in `main`.
pub fn catch_early_time_limit() {
    if let Err(error) = signal_hook::flag::register(SIGUSR1, early_time_limit().clone()) {
        tracing::warn!("cannot catch SIGUSR1: {error}");
    }
}

/// Stops `stop` on SIGINT, SIGTERM, SIGHUP and SIGUSR1, saying `message` the first time; with
/// `exit_on_second`, a second SIGINT, SIGTERM or SIGHUP exits at once (130 and the like).
pub fn on_signals(stop: Arc<Stop>, message: &'static str, exit_on_second: bool) {
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1]) {
        Ok(signals) => signals,
        Err(error) => {
            tracing::warn!("cannot install the signal handlers: {error}");
            return;
        }
    };
    std::thread::spawn(move || {
        let early = early_time_limit().load(Ordering::SeqCst).then_some(SIGUSR1);
        for signal in early.into_iter().chain(signals.forever()) {
            stop.presses.fetch_add(1, Ordering::SeqCst);
            if stop.requested.swap(true, Ordering::SeqCst) {
                if exit_on_second && signal != SIGUSR1 {
                    eprintln!("\n{} again: exiting now", signal_name(signal).unwrap_or("signal"));
                    std::process::exit(128 + signal);
                }
                continue;
            }
            stop.signal.store(signal, Ordering::SeqCst);
            let why = match signal {
                SIGUSR1 => " (the scheduler's time limit is near)".to_owned(),
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
        let plain = Stop::new();
        plain.request();
        assert_eq!(plain.reason(), Some(StopReason::Cancelled(None)));
    }
}
