//! `host run CONFIG`: validates the experiment config against the selected plugin classes, then
//! runs the pipeline and prints where the outputs are and a short results table.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::config::experiment::ExperimentConfig;
use crate::output::{print_json, table};
use crate::pipeline::{RunRequest, RunStatus, RunSummary, execute};
use crate::registry::{Registry, RegistryOptions, ResolvedClass};
use crate::store::{DatabaseConfig, Store};

/// Where the provenance store is: `--db`, else `config/database_config.yaml`, else defaults.
pub struct StoreOptions {
    pub db: Option<PathBuf>,
    pub database_config: PathBuf,
}

impl StoreOptions {
    /// Opens the store and marks runs whose process died as interrupted.
    pub fn open(&self) -> anyhow::Result<Store> {
        let mut config = DatabaseConfig::load(&self.database_config)?;
        if let Some(db) = &self.db {
            config.path = db.clone();
        }
        let store = Store::open(&config)?;
        for run_id in store.mark_interrupted(std::time::Duration::from_secs(120))? {
            tracing::warn!("run {run_id} stopped without finishing; marked interrupted");
        }
        Ok(store)
    }
}

pub struct RunOptions {
    pub config: PathBuf,
    pub store: StoreOptions,
    pub registry: RegistryOptions,
    pub json: bool,
    pub output_dir: Option<PathBuf>,
    pub model_from: Option<PathBuf>,
    pub show_progress: bool,
    /// Recompute every stage instead of reusing cached outputs.
    pub force: bool,
}

/// Loads the registry and the config, resolving every selected class.
fn prepare(config: &Path, registry: RegistryOptions) -> anyhow::Result<(ExperimentConfig, Vec<ResolvedClass>)> {
    let registry = Registry::open(registry)?;
    let mut resolved = Vec::new();
    let experiment = ExperimentConfig::load(config, |kind, class| {
        let found = registry.resolve(kind, class)?;
        resolved.push(found.clone());
        Ok(found.info)
    })?;
    Ok((experiment, resolved))
}

/// Ctrl-C once asks the running plugin to stop after its current batch; twice exits at once.
fn install_interrupt_handler(stop: Arc<AtomicBool>) {
    let result = ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting now");
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current batch (Ctrl-C again to exit now)");
    });
    if let Err(error) = result {
        tracing::warn!("cannot install the Ctrl-C handler: {error}");
    }
}

/// The provenance record keeps paths as text, so a path that is not UTF-8 is refused before
/// anything is recorded rather than written down wrongly.
pub fn require_utf8(path: &Path, what: &str) -> anyhow::Result<()> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    if absolute.to_str().is_none() {
        anyhow::bail!(
            "{}: the {what} path is not valid UTF-8; the provenance record keeps paths as text, so rename it",
            absolute.display()
        );
    }
    Ok(())
}

pub fn run(options: RunOptions) -> anyhow::Result<u8> {
    require_utf8(Path::new("."), "working folder")?;
    require_utf8(&options.config, "config file")?;
    // Asking git takes tens of milliseconds; it runs while the plugins load.
    let config_dir = options.config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
    let git = std::thread::spawn(move || crate::store::git_state(&config_dir));
    let (experiment, classes) = prepare(&options.config, options.registry)?;
    let output_root = options.output_dir.clone().unwrap_or_else(|| experiment.output_dir.clone());
    require_utf8(&output_root, "output folder")?;
    let store = std::cell::RefCell::new(options.store.open()?);
    let stop = Arc::new(AtomicBool::new(false));
    install_interrupt_handler(stop.clone());
    let request = RunRequest {
        experiment: &experiment,
        classes: &classes,
        output_root,
        model_from: options.model_from.clone(),
        show_progress: options.show_progress && !options.json,
        stop,
        store: Some(&store),
        git: git.join().unwrap_or((None, None)),
        reuse: !options.force,
        replay_of: None,
    };
    let summary = execute(&request)?;
    if options.json {
        print_json(&summary)?;
    } else {
        print_summary(&summary);
        println!("recorded in {} (host runs show {})", store.borrow().path().display(), summary.run_id);
    }
    Ok(match summary.status {
        RunStatus::Completed => 0,
        RunStatus::Cancelled => 130,
        _ => {
            if !options.json {
                let stage = summary.failed_stage.map(|s| format!(" in stage {s}")).unwrap_or_default();
                eprintln!(
                    "error: run {} failed{stage}: {}",
                    summary.run_id,
                    summary.error.as_deref().unwrap_or("unknown error")
                );
            }
            1
        }
    })
}

fn metric(metrics: &Option<Value>, pointer: &str) -> Option<f64> {
    metrics.as_ref()?.pointer(pointer)?.as_f64()
}

/// The page to open first among a run's reports: `index.html`, else the first HTML page.
fn report_page(reports: &Path) -> Option<PathBuf> {
    let index = reports.join("index.html");
    if index.is_file() {
        return Some(index);
    }
    let mut pages: Vec<PathBuf> = std::fs::read_dir(reports)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "html"))
        .collect();
    pages.sort();
    pages.into_iter().next()
}

fn print_summary(summary: &RunSummary) {
    let status = match summary.status {
        RunStatus::Completed => "completed",
        RunStatus::Cancelled => "cancelled",
        RunStatus::Failed => "failed",
        RunStatus::Running => "running",
    };
    println!("run {} {status} in {:.1}s", summary.run_id, summary.seconds);
    if summary.output_dir.is_dir() {
        println!("outputs: {}", summary.output_dir.display());
    }
    if let Some(page) = report_page(&summary.output_dir.join("reports")) {
        println!("report:  {}", page.display());
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut add = |name: &str, value: Option<f64>| {
        if let Some(value) = value {
            rows.push(vec![name.to_owned(), format!("{value:.4}")]);
        }
    };
    add("test accuracy", metric(&summary.metrics, "/test/accuracy"));
    add("test macro F1", metric(&summary.metrics, "/test/macro_average/f1"));
    add("test log loss", metric(&summary.metrics, "/test/log_loss"));
    add("test top-3 accuracy", metric(&summary.metrics, "/test/top_k_accuracy/top_3"));
    add("test RMSE", metric(&summary.metrics, "/test/rmse"));
    add("test MAE", metric(&summary.metrics, "/test/mae"));
    add("test R²", metric(&summary.metrics, "/test/r2"));
    if let Some(Value::Array(targets)) = summary.metrics.as_ref().and_then(|m| m.pointer("/test/per_target"))
        && targets.len() > 1
    {
        for target in targets {
            let name = target["name"].as_str().unwrap_or("?");
            add(&format!("test RMSE {name}"), target["rmse"].as_f64());
            add(&format!("test R² {name}"), target["r2"].as_f64());
        }
    }
    if let Some((epoch, last)) = summary.history.iter().next_back() {
        add(&format!("val accuracy (epoch {epoch})"), last.get("val_accuracy").copied());
    }
    if !rows.is_empty() {
        println!("{}", table(&["METRIC", "VALUE"], &rows));
    }
    let stages: Vec<Vec<String>> = summary
        .stages
        .iter()
        .map(|s| {
            let status = match &s.reused_from {
                Some(from) => format!("reused from {from}"),
                None => format!("{:?}", s.status).to_lowercase(),
            };
            vec![s.name.to_owned(), status, format!("{:.2}s", s.seconds)]
        })
        .collect();
    println!("{}", table(&["STAGE", "STATUS", "TIME"], &stages));
}
