//! Helpers for testing a plugin's classes in-process (its crate is also an `rlib`): host
//! services that record what the plugin reports, to pass to [`crate::host::with_services`].

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::LogLevel;
use crate::host::HostServices;

/// Records log lines and metrics; `stop` asks the plugin to stop; files go to `artifact_dir`.
#[derive(Debug)]
pub struct RecordingServices {
    /// Log lines, in order.
    pub logs: Mutex<Vec<(LogLevel, String)>>,
    /// Metrics as `(name, step, value)`, in order.
    pub metrics: Mutex<Vec<(String, u64, f64)>>,
    /// What `should_stop` answers.
    pub stop: AtomicBool,
    /// What `artifact_dir` answers.
    pub artifact_dir: PathBuf,
}

impl RecordingServices {
    /// Services writing artifacts to `artifact_dir`.
    pub fn new(artifact_dir: impl Into<PathBuf>) -> Self {
        RecordingServices {
            logs: Mutex::new(Vec::new()),
            metrics: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            artifact_dir: artifact_dir.into(),
        }
    }
}

impl HostServices for RecordingServices {
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).push((level, message.to_owned()));
    }

    fn progress(&self, _done: u64, _total: u64, _message: &str) {}

    fn metric(&self, name: &str, step: u64, value: f64) {
        self.metrics.lock().unwrap_or_else(|e| e.into_inner()).push((name.to_owned(), step, value));
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn artifact_dir(&self) -> PathBuf {
        self.artifact_dir.clone()
    }
}
