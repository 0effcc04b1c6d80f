//! Writes a run's record and live metrics to the store. With the store's settings at hand,
//! from a thread of its own with a connection of its own, in the order they were made, while
//! the run goes on: a stage's record is written while the next stage computes, instead of the
//! run (and libtorch's threads) idling through the store's round trips. At most one write is in
//! flight: the next waits for it, so a kill loses at most that write, as it did when the run
//! waited for each. The run's start is recorded on the caller's connection, before anything
//! else, so a run the store refuses (an id taken) stops there. A write that fails is reported
//! at the run's next write (a stage's end or an epoch's metrics), which then fails, and at the
//! end; metrics are not written after a failure, a record still is (a failed run's last record
//! says why it failed).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use record::RunRecord;
use store::Store;

use crate::storage::StoreSettings;

enum Write {
    Record(Box<RunRecord>),
    Live(String, Vec<(String, u64, f64)>),
}

/// What the writer thread and the run share.
#[derive(Default)]
struct State {
    /// Whether a write was sent and not yet made.
    in_flight: bool,
    /// The first write that failed, as its message.
    failed: Option<String>,
}

pub(crate) struct Background {
    sender: Mutex<Option<mpsc::Sender<Write>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    state: Arc<(Mutex<State>, Condvar)>,
}

/// Where a run's writes go: the caller's store, on the caller's thread, or a writer thread
/// (the caller's store then records only the run's start).
#[derive(Clone)]
pub(crate) enum Recorder<'a> {
    Direct(&'a dyn Store),
    Background(&'a dyn Store, Arc<Background>),
}

/// Time the runs of this process spent waiting for the store on their own thread.
static WAITED_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn waited(started: Instant) {
    WAITED_NANOS.fetch_add(started.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
}

/// Seconds this process's runs waited for their store writes so far.
pub fn waited_seconds() -> f64 {
    Duration::from_nanos(WAITED_NANOS.load(std::sync::atomic::Ordering::Relaxed)).as_secs_f64()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<'a> Recorder<'a> {
    /// A writer thread with its own connection to the store `settings` name (`store` is the
    /// caller's connection to it, written directly when there are no settings).
    pub fn new(store: &'a dyn Store, settings: Option<&StoreSettings>) -> Recorder<'a> {
        let Some(settings) = settings else { return Recorder::Direct(store) };
        let (sender, writes) = mpsc::channel::<Write>();
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let (locator, options, shared) = (settings.locator.clone(), settings.open.clone(), state.clone());
        let thread = std::thread::Builder::new().name("store writer".into()).spawn(move || {
            // A panic in a write must not leave the run waiting for it.
            let _unstuck = Unstuck(shared.clone());
            let mut store: Option<Box<dyn Store>> = None;
            for write in writes {
                let failed_before = lock(&shared.0).failed.is_some();
                let written = match &write {
                    // Superseded by the next record, which carries every metric.
                    Write::Live(..) if failed_before => Ok(()),
                    _ => (|| -> anyhow::Result<()> {
                        let open = match store.take() {
                            Some(open) => open,
                            None => store::open(&locator, &options)?,
                        };
                        let result = match &write {
                            Write::Record(record) => open.record(record),
                            Write::Live(run_id, metrics) => open.live_metrics(run_id, metrics),
                        };
                        store = Some(open);
                        result
                    })(),
                };
                let mut state = lock(&shared.0);
                if let Err(error) = written {
                    state.failed.get_or_insert_with(|| format!("{error:#}"));
                }
                state.in_flight = false;
                shared.1.notify_all();
            }
        });
        match thread {
            Ok(thread) => Recorder::Background(
                store,
                Arc::new(Background { sender: Mutex::new(Some(sender)), thread: Mutex::new(Some(thread)), state }),
            ),
            Err(error) => {
                tracing::warn!("the run's store writes wait for the store (no writer thread: {error})");
                Recorder::Direct(store)
            }
        }
    }

    /// Waits for the write in flight, then queues `write`; fails if an earlier write failed
    /// (`write` is queued all the same).
    fn send(background: &Background, write: Write) -> anyhow::Result<()> {
        let started = Instant::now();
        let (mutex, condvar) = &*background.state;
        let mut state = lock(mutex);
        while state.in_flight {
            state = condvar.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        waited(started);
        let sent = lock(&background.sender).as_ref().is_some_and(|sender| sender.send(write).is_ok());
        state.in_flight = sent;
        if let Some(failed) = &state.failed {
            anyhow::bail!("{failed}");
        }
        if !sent {
            anyhow::bail!("the run's store writer has stopped");
        }
        Ok(())
    }

    /// Records the run's start, on the caller's connection.
    pub fn begin(&self, record: &RunRecord) -> anyhow::Result<()> {
        let (Recorder::Direct(store) | Recorder::Background(store, _)) = self;
        timed(|| store.begin_run(record))
    }

    /// Records everything the run has produced so far.
    pub fn record(&self, record: &RunRecord) -> anyhow::Result<()> {
        match self {
            Recorder::Direct(store) => timed(|| store.record(record)),
            Recorder::Background(_, background) => Self::send(background, Write::Record(Box::new(record.clone()))),
        }
    }

    /// Records per-step metrics as they happen.
    pub fn live_metrics(&self, run_id: &str, metrics: &[(String, u64, f64)]) -> anyhow::Result<()> {
        match self {
            Recorder::Direct(store) => timed(|| store.live_metrics(run_id, metrics)),
            Recorder::Background(_, background) => {
                Self::send(background, Write::Live(run_id.to_owned(), metrics.to_vec()))
            }
        }
    }

    /// Waits for every write made so far; the first that failed is the error.
    pub fn finish(&self) -> anyhow::Result<()> {
        let Recorder::Background(_, background) = self else { return Ok(()) };
        let started = Instant::now();
        let stopped = background.stop();
        waited(started);
        stopped?;
        match &lock(&background.state.0).failed {
            Some(failed) => anyhow::bail!("{failed}"),
            None => Ok(()),
        }
    }
}

impl Background {
    /// Closes the queue and waits for the writer to make what is in it.
    fn stop(&self) -> anyhow::Result<()> {
        drop(lock(&self.sender).take());
        match lock(&self.thread).take().map(|thread| thread.join()) {
            Some(Err(_)) => anyhow::bail!("the run's store writer panicked"),
            _ => Ok(()),
        }
    }
}

/// Ends the writer's part however it ends: nothing is in flight any more, and a writer that
/// ended without being closed (a panic) is the failure.
struct Unstuck(Arc<(Mutex<State>, Condvar)>);

impl Drop for Unstuck {
    fn drop(&mut self) {
        let mut state = lock(&self.0.0);
        if std::thread::panicking() {
            state.failed.get_or_insert_with(|| "the run's store writer panicked".into());
        }
        state.in_flight = false;
        self.0.1.notify_all();
    }
}

impl Drop for Background {
    /// A run that stopped before its end (an error on the way) still gets its writes made.
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn timed<T>(write: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = write();
    waited(started);
    result
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use record::RunStatus;
    use store::{Locator, OpenOptions};

    use super::*;

    fn started(run_id: &str, experiment: &str, started_at: &str) -> RunRecord {
        serde_json::from_value(serde_json::json!({
            "run_id": run_id, "experiment_name": experiment, "status": "running", "config_file": "c.yaml",
            "config_sha256": "cc", "seed": 1, "threads": 1, "started_at": started_at, "output_dir": "/runs/a",
        }))
        .unwrap()
    }

    fn completed(mut record: RunRecord, accuracy: f64) -> RunRecord {
        record.status = RunStatus::Completed;
        record.finished_at = Some("2026-01-01T00:01:00Z".into());
        record.metrics = Some(serde_json::json!({"test": {"accuracy": accuracy}}));
        record
    }

    fn settings(path: &Path) -> StoreSettings {
        StoreSettings {
            locator: Locator::Sqlite(path.to_owned()),
            open: OpenOptions::default(),
            cache_dir: std::env::temp_dir(),
            stale_after: Duration::from_secs(120),
        }
    }

    #[test]
    fn the_writer_makes_the_writes_in_order_and_finish_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provenance.db");
        let store = store::open(&Locator::Sqlite(path.clone()), &OpenOptions::default()).unwrap();
        let recorder = Recorder::new(&*store, Some(&settings(&path)));
        assert!(matches!(recorder, Recorder::Background(..)));
        let run = started("r1", "e", "2026-01-01T00:00:00Z");
        recorder.begin(&run).unwrap();
        recorder.live_metrics("r1", &[("loss".into(), 1, 0.5)]).unwrap();
        recorder.record(&completed(run.clone(), 0.75)).unwrap();
        recorder.finish().unwrap();
        assert_eq!(store.run_status("r1").unwrap(), RunStatus::Completed);
        assert_eq!(store.final_metrics("r1").unwrap()["test.accuracy"], 0.75);
        let error = recorder.record(&run).unwrap_err().to_string();
        assert_eq!(error, "the run's store writer has stopped");
        // Without settings to open a connection of its own with, the caller's store is written.
        let direct = Recorder::new(&*store, None);
        assert!(matches!(direct, Recorder::Direct(_)));
        direct.begin(&started("r2", "e", "2026-01-01T00:00:01Z")).unwrap();
        assert_eq!(store.run_status("r2").unwrap(), RunStatus::Running);
    }

    #[test]
    fn a_failed_write_fails_the_next_write_and_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provenance.db");
        let store = store::open(&Locator::Sqlite(path), &OpenOptions::default()).unwrap();
        // The writer's store is a file under a file: it cannot be opened.
        std::fs::write(dir.path().join("file"), "").unwrap();
        let recorder = Recorder::new(&*store, Some(&settings(&dir.path().join("file/provenance.db"))));
        let run = started("r1", "e", "2026-01-01T00:00:00Z");
        recorder.begin(&run).unwrap();
        let started = Instant::now();
        let error = loop {
            match recorder.live_metrics("r1", &[("loss".into(), 1, 0.5)]) {
                Err(error) => break error.to_string(),
                Ok(()) => assert!(started.elapsed() < Duration::from_secs(30), "the failure was never reported"),
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(error.contains("file: cannot create the store's folder"), "{error}");
        assert_eq!(recorder.finish().unwrap_err().to_string(), error);
    }
}
