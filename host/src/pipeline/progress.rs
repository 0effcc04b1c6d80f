//! What a stage shows while it runs: a progress bar on a terminal (plain lines every few
//! seconds otherwise) and one line per completed epoch.

use std::cell::{Cell, RefCell};
use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// A stage's progress display. Silent when `show` is false.
pub struct Progress {
    show: bool,
    bar: RefCell<Option<ProgressBar>>,
    printed_epochs: Cell<u64>,
    last_plain: Cell<Option<Instant>>,
}

impl Progress {
    pub fn new(show: bool) -> Self {
        Progress { show, bar: RefCell::new(None), printed_epochs: Cell::new(0), last_plain: Cell::new(None) }
    }

    /// Shows `done` of `total` with a message.
    pub fn update(&self, done: u64, total: u64, message: &str) {
        if !self.show {
            return;
        }
        if std::io::stderr().is_terminal() {
            let mut bar = self.bar.borrow_mut();
            let bar = bar.get_or_insert_with(|| {
                let bar = ProgressBar::new(total);
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} batches {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar
            });
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(message.to_owned());
            if done >= total {
                bar.finish_and_clear();
            }
        } else {
            // Plain lines at most every 5 seconds, so logs of long steps show life without flooding.
            let due = self.last_plain.get().is_none_or(|t| t.elapsed().as_secs() >= 5);
            if due && done < total {
                self.last_plain.set(Some(Instant::now()));
                eprintln!("  {message} ({done}/{total})");
            }
        }
    }

    /// Removes the bar, so a line printed next starts clean.
    pub fn clear(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }

    /// Prints one line per epoch not printed yet up to `through`, from `(name, step, value)`
    /// metrics.
    pub fn print_epochs(&self, metrics: &[(String, u64, f64)], through: u64) {
        if !self.show {
            return;
        }
        for epoch in self.printed_epochs.get() + 1..=through {
            let values: Vec<String> = metrics
                .iter()
                .filter(|m| m.1 == epoch)
                .map(|(name, _, value)| {
                    if name.ends_with("seconds") { format!("{name} {value:.2}s") } else { format!("{name} {value:.4}") }
                })
                .collect();
            if !values.is_empty() {
                self.clear();
                eprintln!("epoch {epoch}: {}", values.join("  "));
            }
            self.printed_epochs.set(epoch);
        }
    }
}
