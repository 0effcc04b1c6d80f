//! The host services one stage's plugin calls see: logging through the host's subscriber,
//! progress, per-epoch metrics (kept for the record and written live to the store for
//! `host runs watch`), cooperative cancel, and the artifact folder. (The run's heartbeat has a
//! thread of its own: `liveness::Heartbeat`.)

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use plugin_sdk::LogLevel;
use plugin_sdk::host::HostServices;

use super::progress::Progress;
use super::recorder::Recorder;

/// A non-finite loss a plugin reported: (name, step, value).
pub type Divergence = (String, u64, f64);

pub struct StageServices<'a> {
    plugin: String,
    /// Where live metrics go, and the run's id.
    recorder: Option<(Recorder<'a>, String)>,
    artifact_dir: PathBuf,
    stop: &'a AtomicBool,
    pub progress: Progress,
    metrics: RefCell<Vec<(String, u64, f64)>>,
    /// Metrics not written to the store yet: a step's are written together, when the next
    /// step begins (or progress starts a new round, or the stage ends).
    unwritten: RefCell<Vec<(String, u64, f64)>>,
    /// The first non-finite loss: training is asked to stop, and the stage fails.
    diverged: RefCell<Option<Divergence>>,
    /// Why the store stopped taking this run's metrics (it gave up retrying): training is
    /// asked to stop, and the stage fails with it, instead of training on unrecorded.
    store_lost: RefCell<Option<String>>,
}

impl<'a> StageServices<'a> {
    pub fn new(
        plugin: String,
        artifact_dir: PathBuf,
        recorder: Option<(Recorder<'a>, String)>,
        stop: &'a AtomicBool,
        show_progress: bool,
    ) -> Self {
        StageServices {
            plugin,
            recorder,
            artifact_dir,
            stop,
            progress: Progress::new(show_progress),
            metrics: RefCell::new(Vec::new()),
            unwritten: RefCell::new(Vec::new()),
            diverged: RefCell::new(None),
            store_lost: RefCell::new(None),
        }
    }

    fn last_step(&self) -> u64 {
        self.metrics.borrow().iter().map(|m| m.1).max().unwrap_or(0)
    }

    /// Prints every epoch whose metrics are in, and removes the bar.
    pub fn finish(&self) {
        self.progress.clear();
        self.progress.print_epochs(&self.metrics.borrow(), self.last_step());
    }

    /// The metrics reported so far: epoch -> name -> value.
    pub fn history(&self) -> BTreeMap<u64, BTreeMap<String, f64>> {
        let mut history: BTreeMap<u64, BTreeMap<String, f64>> = BTreeMap::new();
        for (name, step, value) in self.metrics.borrow().iter() {
            history.entry(*step).or_default().insert(name.clone(), *value);
        }
        history
    }

    /// Writes the metrics reported since the last write, in one store write.
    fn write_metrics(&self) {
        let metrics = std::mem::take(&mut *self.unwritten.borrow_mut());
        if let Some((recorder, run_id)) = &self.recorder
            && !metrics.is_empty()
            && let Err(error) = recorder.live_metrics(run_id, &metrics)
        {
            let mut lost = self.store_lost.borrow_mut();
            if lost.is_none() {
                *lost = Some(format!("the store could not record the run (at step {}): {error:#}", metrics[0].1));
            }
        }
    }

    /// Why the store stopped taking the run's metrics, if it did.
    pub fn store_lost(&self) -> Option<String> {
        self.store_lost.borrow().clone()
    }

    /// The first non-finite loss reported, if any.
    pub fn divergence(&self) -> Option<Divergence> {
        self.diverged.borrow().clone()
    }
}

impl Drop for StageServices<'_> {
    fn drop(&mut self) {
        self.write_metrics();
    }
}

impl HostServices for StageServices<'_> {
    fn log(&self, level: LogLevel, message: &str) {
        let plugin = &self.plugin;
        match level {
            LogLevel::Debug => tracing::debug!("[{plugin}] {message}"),
            LogLevel::Info => tracing::info!("[{plugin}] {message}"),
            LogLevel::Warn => tracing::warn!("[{plugin}] {message}"),
            LogLevel::Error => tracing::error!("[{plugin}] {message}"),
        }
    }

    fn progress(&self, done: u64, total: u64, message: &str) {
        if done <= 1 {
            // A new round of progress: the previous epoch's metrics are complete.
            self.write_metrics();
            self.progress.print_epochs(&self.metrics.borrow(), self.last_step());
        }
        self.progress.update(done, total, message);
    }

    fn metric(&self, name: &str, step: u64, value: f64) {
        if !value.is_finite() && name.contains("loss") && self.diverged.borrow().is_none() {
            *self.diverged.borrow_mut() = Some((name.to_owned(), step, value));
        }
        self.metrics.borrow_mut().push((name.to_owned(), step, value));
        if self.unwritten.borrow().last().is_some_and(|m| m.1 != step) {
            self.write_metrics();
        }
        self.unwritten.borrow_mut().push((name.to_owned(), step, value));
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.diverged.borrow().is_some() || self.store_lost.borrow().is_some()
    }

    fn artifact_dir(&self) -> PathBuf {
        self.artifact_dir.clone()
    }
}
