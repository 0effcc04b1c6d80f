//! `host run CONFIG`: validates the experiment config against the selected plugin classes, then
//! runs the pipeline and prints where the outputs are and a short results table.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use record::{RunRecord, RunStatus, TrialRef};

use crate::config::experiment::ExperimentConfig;
use crate::output::{print_json, table};
use crate::pipeline::{RunRequest, execute};
use crate::registry::{Registry, RegistryOptions, ResolvedClass};
use crate::storage::{StoreOptions, require_utf8};

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
    /// The sweep trial this run is (a sweep's worker).
    pub trial: Option<TrialRef>,
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

pub fn run(options: RunOptions) -> anyhow::Result<u8> {
    require_utf8(Path::new("."), "working folder")?;
    require_utf8(&options.config, "config file")?;
    // Asking git takes tens of milliseconds; it runs while the plugins load.
    let config_dir = options.config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
    let git = std::thread::spawn(move || crate::environment::git_state(&config_dir));
    let (experiment, classes) = prepare(&options.config, options.registry)?;
    let output_root = options.output_dir.clone().unwrap_or_else(|| experiment.output_dir.clone());
    require_utf8(&output_root, "output folder")?;
    let settings = options.store.settings()?;
    let store = crate::storage::open(&settings)?;
    let stop = Arc::new(AtomicBool::new(false));
    crate::interrupt::on_ctrl_c(stop.clone(), "stopping after the current batch (Ctrl-C again to exit now)", true);
    let request = RunRequest {
        experiment: &experiment,
        classes: &classes,
        output_root,
        model_from: options.model_from.clone(),
        show_progress: options.show_progress && !options.json,
        stop,
        store: Some(&*store),
        settings: Some(&settings),
        git: git.join().unwrap_or_default(),
        reuse: !options.force,
        replay_of: None,
        trial: options.trial.clone(),
    };
    let record = execute(&request)?;
    if options.json {
        print_json(&record)?;
    } else {
        print_summary(&record);
        println!("recorded in {} (host runs show {})", store.locator(), record.run_id);
    }
    Ok(match record.status {
        RunStatus::Completed => 0,
        RunStatus::Cancelled => 130,
        _ => {
            if !options.json {
                let stage = record.failed_stage.map(|s| format!(" in stage {s}")).unwrap_or_default();
                eprintln!(
                    "error: run {} failed{stage}: {}",
                    record.run_id,
                    record.error.as_deref().unwrap_or("unknown error")
                );
            }
            1
        }
    })
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

fn print_summary(summary: &RunRecord) {
    println!("run {} {} in {:.1}s", summary.run_id, summary.status, summary.seconds);
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
    add("test accuracy", summary.metric("test.accuracy"));
    add("test macro F1", summary.metric("test.macro_average.f1"));
    add("test log loss", summary.metric("test.log_loss"));
    add("test top-3 accuracy", summary.metric("test.top_k_accuracy.top_3"));
    add("test RMSE", summary.metric("test.rmse"));
    add("test MAE", summary.metric("test.mae"));
    add("test R²", summary.metric("test.r2"));
    if let Some(serde_json::Value::Array(targets)) =
        summary.metrics.as_ref().and_then(|m| m.pointer("/test/per_target"))
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
                None => s.status.to_string(),
            };
            vec![s.name.to_string(), status, format!("{:.2}s", s.seconds)]
        })
        .collect();
    println!("{}", table(&["STAGE", "STATUS", "TIME"], &stages));
}
