//! Helpers for testing a plugin's classes in-process, without the host: build the plugin crate
//! as an `rlib` too (`crate-type = ["cdylib", "rlib"]`), create a class with a
//! [`ClassConfig`](crate::ClassConfig) made by hand, and call it through
//! [`host::with_services`](crate::host::with_services) with a [`RecordingServices`], which
//! records what the class reports. The calls then go through the same [`Services`](crate::Services)
//! as in the host.
//!
//! ```
//! use plugin_sdk::host::with_services;
//! use plugin_sdk::testing::RecordingServices;
//! use plugin_sdk::{LogLevel, PluginError, Services};
//!
//! // Stands for a class's call (`fit`, `load_data`, ...).
//! fn call(services: &Services<'_>) -> Result<(), PluginError> {
//!     services.warn("3 rows skipped");
//!     services.metric("loss", 1, 0.5);
//!     let file = services.artifact_dir().join("out.txt");
//!     std::fs::write(&file, "ok").map_err(PluginError::from)
//! }
//!
//! let dir = std::env::temp_dir().join(format!("testing-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let host = RecordingServices::new(&dir);
//! with_services(&host, call)?;
//! assert_eq!(*host.logs.lock().unwrap(), [(LogLevel::Warn, "3 rows skipped".to_string())]);
//! assert_eq!(*host.metrics.lock().unwrap(), [("loss".to_string(), 1, 0.5)]);
//! assert!(dir.join("out.txt").is_file());
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), PluginError>(())
//! ```

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::LogLevel;
use crate::host::HostServices;

/// Host services for tests: records log lines and metrics in order, answers `should_stop` with
/// `stop` and `artifact_dir` with `artifact_dir`. Progress reports are accepted and dropped.
///
/// Its fields are public, so a test reads what was reported (`host.metrics.lock().unwrap()`)
/// and sets `stop` at any time, even during a call (`host.stop.store(true, Ordering::Relaxed)`).
/// To stop at a given point (after an epoch, say), wrap it in a type of your own that
/// implements [`HostServices`] and delegates to it.
#[derive(Debug)]
pub struct RecordingServices {
    /// Log lines, in order.
    pub logs: Mutex<Vec<(LogLevel, String)>>,
    /// Metrics as `(name, step, value)`, in order.
    pub metrics: Mutex<Vec<(String, u64, f64)>>,
    /// What `should_stop` answers; `false` at first.
    pub stop: AtomicBool,
    /// What `artifact_dir` answers. Nothing creates it: the test does.
    pub artifact_dir: PathBuf,
}

impl RecordingServices {
    /// Services with nothing recorded, not asking to stop, whose artifact folder is
    /// `artifact_dir` (which must exist before a class writes into it).
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
