//! Ctrl-C: the first asks the work to stop cleanly (a run after its current batch, a sweep's
//! trials likewise); with `exit_on_second`, a second press exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Sets `stop` on Ctrl-C, saying `message` the first time.
pub fn on_ctrl_c(stop: Arc<AtomicBool>, message: &'static str, exit_on_second: bool) {
    let result = ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            if exit_on_second {
                eprintln!("\ninterrupted again: exiting now");
                std::process::exit(130);
            }
            return;
        }
        eprintln!("\n{message}");
    });
    if let Err(error) = result {
        tracing::warn!("cannot install the Ctrl-C handler: {error}");
    }
}
