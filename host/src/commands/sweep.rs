//! `host sweep CONFIG [--jobs N]` runs a hyperparameter sweep: every trial config is validated
//! first, then the trials run in parallel workers, each recorded as a run linked to the sweep.
//! The sweep's id is a digest of its config, so running the same file again resumes it:
//! completed trials are skipped, interrupted, failed and cancelled ones run again (and reuse
//! their data stages through the stage cache). `host sweep show [SWEEP]` lists the trials.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::run::StoreOptions;
use crate::config::experiment::ExperimentConfig;
use crate::config::read_yaml;
use crate::config::sweep::{Prune, Sweep, Trial, apply, plain, split};
use crate::hashing::sha256_bytes;
use crate::output::{print_json, table};
use crate::registry::{Registry, RegistryOptions, manifest_cache_dir};
use crate::store::{Store, SweepRow, TrialRow};
use crate::sweep::{Executor, LocalExecutor, TrialJob, TrialOutcome};

pub struct SweepOptions {
    pub config: PathBuf,
    pub jobs: usize,
    pub store: StoreOptions,
    pub registry: RegistryOptions,
    pub output_dir: Option<PathBuf>,
    pub json: bool,
    pub show_progress: bool,
}

/// The metric's value in a run summary (`test.accuracy` -> metrics.test.accuracy).
fn metric_of(summary: &Value, metric: &str) -> Option<f64> {
    summary["metrics"].pointer(&format!("/{}", metric.replace('.', "/")))?.as_f64()
}

fn better(sweep_maximize: bool, a: f64, b: f64) -> bool {
    if sweep_maximize { a > b } else { a < b }
}

/// Every trial's config, validated against the plugins' declared keys; all problems at once.
fn trial_configs(
    file: &Path,
    base: &Value,
    sweep: &Sweep,
    registry: &Registry,
    threads: u64,
) -> anyhow::Result<Vec<(Trial, Value)>> {
    let mut configs = Vec::new();
    let mut failures = Vec::new();
    for trial in sweep.trials() {
        let mut config = apply(base, &trial);
        if config.get("threads").and_then(Value::as_u64).unwrap_or(0) == 0 {
            config["threads"] = json!(threads);
        }
        let checked =
            ExperimentConfig::from_value(file, &config, |kind, class| registry.resolve(kind, class).map(|c| c.info));
        match checked {
            Ok(_) => configs.push((trial, config)),
            Err(error) => failures.push(format!("trial {} ({}):\n{error}", trial.number, trial.label())),
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} trial configs are invalid:\n{}",
            failures.len(),
            configs.len() + failures.len(),
            failures.join("\n")
        );
    }
    Ok(configs)
}

pub fn sweep(options: SweepOptions) -> anyhow::Result<u8> {
    let file = &options.config;
    crate::commands::run::require_utf8(Path::new("."), "working folder")?;
    crate::commands::run::require_utf8(file, "config file")?;
    let value = read_yaml(file)?;
    let (base, sweep) = split(file, &value)?;
    let name = base["experiment_name"].as_str().unwrap_or("sweep").to_owned();
    // Validation only reads manifests: cached ones spare loading libtorch before any trial.
    let registry = Registry::open(RegistryOptions { manifest_cache: manifest_cache_dir(), ..options.registry })?;
    let jobs = options.jobs.max(1);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = (cores / jobs).max(1) as u64;
    let configs = trial_configs(file, &base, &sweep, &registry, threads)?;
    let canonical = json!({"base": base, "sweep": value["sweep"]});
    let sweep_id = format!("{name}-{}", &sha256_bytes(canonical.to_string().as_bytes())[..12]);

    let output_root =
        options.output_dir.clone().unwrap_or_else(|| PathBuf::from(base["output_dir"].as_str().unwrap_or("runs")));
    crate::commands::run::require_utf8(&output_root, "output folder")?;
    let store = options.store.open()?;
    store.begin_sweep(&sweep_id, &name, &canonical, &sweep.metric, sweep.maximize)?;
    // Completed and pruned trials are done; the others (interrupted, failed, cancelled) run again.
    let done: Vec<usize> = store
        .sweep(&sweep_id)?
        .trials
        .iter()
        .filter(|t| t.status == "completed" || t.status == "pruned")
        .map(|t| t.trial)
        .collect();
    let folder = output_root.join("sweeps").join(&sweep_id);
    std::fs::create_dir_all(&folder).with_context(|| format!("{}: cannot create", folder.display()))?;
    let mut pending = Vec::new();
    for (trial, config) in configs.iter().filter(|(t, _)| !done.contains(&t.number)) {
        let stem = folder.join(format!("trial-{:03}", trial.number));
        let config_file = stem.with_extension("yaml");
        // JSON is YAML: the trial's config, readable and runnable on its own.
        std::fs::write(&config_file, serde_json::to_string_pretty(config)?)
            .with_context(|| format!("{}: cannot write", config_file.display()))?;
        pending.push(TrialJob {
            trial: trial.clone(),
            config_file,
            summary_file: stem.with_extension("json"),
            log_file: stem.with_extension("log"),
        });
    }
    if !options.json {
        eprintln!(
            "sweep {sweep_id}: {} trials, {} done, {} to run with {jobs} jobs of {threads} threads (trial configs and logs in {})",
            configs.len(),
            configs.len() - pending.len(),
            pending.len(),
            folder.display()
        );
    }
    let mut common: Vec<OsString> = vec!["--db".into(), store.path().into()];
    if let Some(mapping) = registry.mapping_file() {
        common.extend(["--class-mapping".into(), mapping.into()]);
    }
    common.extend(["--plugins-dir".into(), registry.plugins_dir().into()]);
    common.extend(["--output-dir".into(), output_root.clone().into()]);
    drop(store);
    let mut executor = LocalExecutor::new(common)?;
    let show = options.show_progress && !options.json;
    let cancelled = run_trials(&mut executor, pending, &options.store, show, &sweep, &sweep_id, jobs)?;

    let store = options.store.open()?;
    let row = store.sweep(&sweep_id)?;
    let report = folder.join("index.html");
    write_sweep_page(&store, &row, &report)?;
    if options.json {
        print_json(&row)?;
    } else {
        print_sweep(&row);
        println!("report: {}", report.display());
    }
    Ok(if cancelled {
        130
    } else if row.trials.iter().all(|t| t.status == "completed" || t.status == "pruned") {
        0
    } else {
        1
    })
}

/// Runs the pending trials, at most `jobs` at once, recording each as it ends. Returns whether
/// Ctrl-C cancelled the sweep.
fn run_trials(
    executor: &mut dyn Executor,
    mut pending: Vec<TrialJob>,
    store_options: &StoreOptions,
    show: bool,
    sweep: &Sweep,
    sweep_id: &str,
    jobs: usize,
) -> anyhow::Result<bool> {
    let stop = Arc::new(AtomicBool::new(false));
    let handler_stop = stop.clone();
    if let Err(error) = ctrlc::set_handler(move || {
        if !handler_stop.swap(true, Ordering::SeqCst) {
            eprintln!("\nstopping: running trials finish their batch and are recorded cancelled");
        }
    }) {
        tracing::warn!("cannot install the Ctrl-C handler: {error}");
    }
    pending.reverse();
    let total = pending.len() as u64;
    let bar = (show && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{spinner} trials [{bar:30}] {pos}/{len} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    });
    let say = |line: String| match &bar {
        Some(bar) => bar.println(line),
        None if show => eprintln!("{line}"),
        None => {}
    };
    let store = store_options.open()?;
    let mut best: Option<(f64, usize)> = None;
    let mut cancelled_sent = false;
    let mut pruned: Vec<usize> = Vec::new();
    loop {
        if stop.load(Ordering::SeqCst) && !cancelled_sent {
            executor.cancel(None);
            cancelled_sent = true;
        }
        while !stop.load(Ordering::SeqCst) && executor.running().len() < jobs {
            let Some(job) = pending.pop() else { break };
            store.record_trial(
                sweep_id,
                &TrialRow {
                    trial: job.trial.number,
                    parameters: trial_parameters(&job.trial),
                    run_id: None,
                    status: "running".into(),
                    metric: None,
                },
            )?;
            say(format!("trial {} started: {}", job.trial.number, job.trial.label()));
            executor.submit(job)?;
        }
        if executor.running().is_empty() {
            break;
        }
        let Some(outcome) = executor.wait_any(std::time::Duration::from_millis(500))? else {
            if let Some(prune) = &sweep.prune
                && !stop.load(Ordering::SeqCst)
            {
                for (trial, reason) in prune_candidates(executor, &store, sweep_id, prune, &pruned)? {
                    say(format!("trial {trial} pruned: {reason}"));
                    executor.cancel(Some(trial));
                    pruned.push(trial);
                }
            }
            continue;
        };
        let mut row = trial_row(&outcome, &sweep.metric);
        if pruned.contains(&row.trial) && row.status == "cancelled" {
            row.status = "pruned".into();
        }
        store.record_trial(sweep_id, &row)?;
        if let Some(value) = row.metric.filter(|_| row.status == "completed")
            && best.is_none_or(|(b, _)| better(sweep.maximize, value, b))
        {
            best = Some((value, row.trial));
        }
        let shown = row.metric.map(|m| format!(" {} {m:.4}", sweep.metric)).unwrap_or_default();
        say(format!(
            "trial {} {}{shown} (run {}; log {})",
            row.trial,
            row.status,
            row.run_id.as_deref().unwrap_or("-"),
            outcome.job.log_file.display()
        ));
        if let Some(bar) = &bar {
            bar.inc(1);
            if let Some((value, trial)) = best {
                bar.set_message(format!("best {} {value:.4} (trial {trial})", sweep.metric));
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(stop.load(Ordering::SeqCst))
}

/// Running trials that the median stopping rule stops: at their latest epoch (from
/// `after_epochs` on), a value worse than the median of the completed trials at that epoch.
fn prune_candidates(
    executor: &dyn Executor,
    store: &Store,
    sweep_id: &str,
    prune: &Prune,
    already: &[usize],
) -> anyhow::Result<Vec<(usize, String)>> {
    let completed: Vec<String> = store
        .sweep(sweep_id)?
        .trials
        .into_iter()
        .filter(|t| t.status == "completed")
        .filter_map(|t| t.run_id)
        .collect();
    if completed.len() < prune.min_trials {
        return Ok(Vec::new());
    }
    let mut curves = Vec::new();
    for run_id in &completed {
        curves.push(store.metric_curve(run_id, &prune.metric)?);
    }
    let mut stopping = Vec::new();
    for job in executor.running().into_iter().filter(|j| !already.contains(&j.trial.number)) {
        let Some(run_id) = store.latest_run_of_config(&job.config_file.display().to_string())? else { continue };
        let Some(&(epoch, value)) = store.metric_curve(&run_id, &prune.metric)?.last() else { continue };
        if (epoch as u64) < prune.after_epochs {
            continue;
        }
        let mut others: Vec<f64> =
            curves.iter().filter_map(|c| c.iter().find(|(e, _)| *e == epoch).map(|(_, v)| *v)).collect();
        if others.len() < prune.min_trials {
            continue;
        }
        others.sort_by(f64::total_cmp);
        let mid = others.len() / 2;
        let median = if others.len() % 2 == 0 { (others[mid - 1] + others[mid]) / 2.0 } else { others[mid] };
        if !value.is_finite() || better(prune.maximize, median, value) {
            let reason =
                format!("{} {value:.4} at epoch {epoch}, median of completed trials {median:.4}", prune.metric);
            stopping.push((job.trial.number, reason));
        }
    }
    Ok(stopping)
}

fn trial_parameters(trial: &Trial) -> Value {
    Value::Object(trial.values.iter().cloned().collect())
}

fn trial_row(outcome: &TrialOutcome, metric: &str) -> TrialRow {
    let summary = outcome.summary.as_ref();
    let status = match (summary.and_then(|s| s["status"].as_str()), outcome.exit_code) {
        (Some(status), _) => status.to_owned(),
        (None, Some(130)) => "cancelled".into(),
        (None, _) => "failed".into(),
    };
    TrialRow {
        trial: outcome.job.trial.number,
        parameters: trial_parameters(&outcome.job.trial),
        run_id: summary.and_then(|s| s["run_id"].as_str()).map(str::to_owned),
        status,
        metric: summary.and_then(|s| metric_of(s, metric)),
    }
}

/// The keys the sweep varies, in file order.
fn varied_keys(row: &SweepRow) -> Vec<String> {
    row.trials.first().and_then(|t| t.parameters.as_object()).map(|p| p.keys().cloned().collect()).unwrap_or_default()
}

/// The completed trial with the best metric.
fn best_trial(row: &SweepRow) -> Option<&TrialRow> {
    row.trials.iter().filter(|t| t.status == "completed" && t.metric.is_some()).reduce(|a, b| {
        if better(row.maximize, b.metric.unwrap_or(f64::NAN), a.metric.unwrap_or(f64::NAN)) { b } else { a }
    })
}

fn print_sweep(row: &SweepRow) {
    let best = best_trial(row).map(|t| (t.metric.unwrap_or(f64::NAN), t.trial));
    let keys = varied_keys(row);
    let mut headers = vec!["", "TRIAL", "STATUS", "RUN"];
    headers.extend(keys.iter().map(String::as_str));
    headers.push(&row.metric);
    let rows: Vec<Vec<String>> = row
        .trials
        .iter()
        .map(|t| {
            let mark = if best.is_some_and(|(_, b)| b == t.trial) { "*" } else { "" };
            let mut cells =
                vec![mark.to_owned(), t.trial.to_string(), t.status.clone(), t.run_id.clone().unwrap_or_default()];
            cells.extend(keys.iter().map(|k| plain(&t.parameters[k])));
            cells.push(t.metric.map(|m| format!("{m:.4}")).unwrap_or_default());
            cells
        })
        .collect();
    println!(
        "sweep {} ({}; {} {})",
        row.sweep_id,
        row.name,
        if row.maximize { "maximize" } else { "minimize" },
        row.metric
    );
    println!("{}", table(&headers, &rows));
    if let Some((value, trial)) = best {
        let run = row.trials.iter().find(|t| t.trial == trial).and_then(|t| t.run_id.clone()).unwrap_or_default();
        println!("best: trial {trial} ({} {value:.4}), run {run} (host runs show {run})", row.metric);
    }
}

const SORT_SCRIPT: &str = r#"<script>
// Click a column's heading to sort by it (again to reverse); #sort=N sorts by column N on load.
document.querySelectorAll("th[data-sort]").forEach(function (th, column) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var ascending = th.dataset.order !== "asc";
    th.dataset.order = ascending ? "asc" : "desc";
    Array.from(body.rows).sort(function (a, b) {
      var x = a.cells[column].dataset.value, y = b.cells[column].dataset.value;
      var nx = parseFloat(x), ny = parseFloat(y);
      var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
      return ascending ? order : -order;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
var wanted = /^#sort=(\d+)$/.exec(location.hash);
if (wanted) { var th = document.querySelectorAll("th[data-sort]")[Number(wanted[1])]; if (th) { th.click(); } }
</script>"#;

/// The sweep report: a sortable table of trials, the best trial with a link to its run's
/// report, and the metric plotted against each varied key. Self-contained; every text escaped.
fn sweep_page(row: &SweepRow, run_dirs: &std::collections::BTreeMap<String, PathBuf>) -> String {
    use charts::escape;
    use std::fmt::Write;
    let keys = varied_keys(row);
    let completed: Vec<&TrialRow> =
        row.trials.iter().filter(|t| t.status == "completed" && t.metric.is_some()).collect();
    let best = best_trial(row);
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sweep {}</title><style>\n\
         body {{ font-family: system-ui, sans-serif; margin: 24px; color: #1d2733; background: #f6f7f9; }}\n\
         section {{ background: #fff; border: 1px solid #e2e5ea; border-radius: 8px; padding: 16px 20px; margin-bottom: 18px; }}\n\
         table {{ border-collapse: collapse; font-size: 14px; }} td, th {{ padding: 4px 10px; border-bottom: 1px solid #e2e5ea; text-align: left; }}\n\
         th[data-sort] {{ cursor: pointer; color: #2563eb; }} tr.best td {{ background: #ecfdf5; font-weight: 600; }}\n\
         .plots {{ display: flex; flex-wrap: wrap; gap: 18px; }} .chart text {{ font-size: 11px; fill: #475569; }}\n\
         </style></head><body>\n<h1>Sweep {}</h1>\n<p>{} &middot; {} {} &middot; {} of {} trials completed</p>\n",
        escape(&row.sweep_id),
        escape(&row.sweep_id),
        escape(&row.name),
        if row.maximize { "maximize" } else { "minimize" },
        escape(&row.metric),
        completed.len(),
        row.trials.len()
    );
    page.push_str("<section><h2>Best trial</h2>");
    match best {
        Some(best) => {
            let run = best.run_id.clone().unwrap_or_default();
            let _ = write!(
                page,
                "<p>Trial {}: {} {:.4} &middot; {}</p><p>run <code>{}</code>",
                best.trial,
                escape(&row.metric),
                best.metric.unwrap_or(f64::NAN),
                escape(
                    &keys.iter().map(|k| format!("{k}={}", plain(&best.parameters[k]))).collect::<Vec<_>>().join(", ")
                ),
                escape(&run)
            );
            if let Some(report) = run_dirs.get(&run).map(|d| d.join("reports/index.html")).filter(|p| p.is_file()) {
                let _ = write!(page, " &middot; <a href=\"{}\">its report</a>", escape(&report.display().to_string()));
            }
            page.push_str("</p>");
        }
        None => page.push_str("<p>No trial has completed yet.</p>"),
    }
    page.push_str("</section>\n<section><h2>Metric against each varied key</h2><div class=\"plots\">");
    for key in &keys {
        let values: Vec<&Value> = completed.iter().map(|t| &t.parameters[key]).collect();
        let numeric = values.iter().all(|v| v.is_number());
        let (points, categories): (Vec<(f64, f64)>, Option<Vec<String>>) = if numeric {
            (
                completed
                    .iter()
                    .map(|t| (t.parameters[key].as_f64().unwrap_or(f64::NAN), t.metric.unwrap_or(f64::NAN)))
                    .collect(),
                None,
            )
        } else {
            let mut names: Vec<String> = Vec::new();
            for value in &values {
                if !names.contains(&plain(value)) {
                    names.push(plain(value));
                }
            }
            let points = completed
                .iter()
                .map(|t| {
                    let index = names.iter().position(|n| *n == plain(&t.parameters[key])).unwrap_or(0);
                    (index as f64, t.metric.unwrap_or(f64::NAN))
                })
                .collect();
            (points, Some(names))
        };
        let xs: Vec<f64> = points.iter().map(|p| p.0).collect();
        let log_x = numeric && xs.iter().all(|&x| x > 0.0) && {
            let (lo, hi) = xs.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            hi / lo >= 10.0
        };
        let _ = write!(
            page,
            "<div><h3>{}</h3>{}</div>",
            escape(key),
            charts::scatter(&points, categories.as_deref(), log_x, key, &row.metric)
        );
    }
    page.push_str("</div></section>\n<section><h2>Trials</h2><table><thead><tr>");
    let mut headers = vec!["trial".to_owned(), "status".to_owned(), "run".to_owned()];
    headers.extend(keys.iter().cloned());
    headers.push(row.metric.clone());
    for header in &headers {
        let _ = write!(page, "<th data-sort>{}</th>", escape(header));
    }
    page.push_str("</tr></thead><tbody>");
    for trial in &row.trials {
        let is_best = best.is_some_and(|b| b.trial == trial.trial);
        let mut cells = vec![trial.trial.to_string(), trial.status.clone(), trial.run_id.clone().unwrap_or_default()];
        cells.extend(keys.iter().map(|k| plain(&trial.parameters[k])));
        cells.push(trial.metric.map(|m| format!("{m:.6}")).unwrap_or_default());
        let _ = write!(page, "<tr{}>", if is_best { " class=\"best\"" } else { "" });
        for cell in cells {
            let _ = write!(page, "<td data-value=\"{0}\">{0}</td>", escape(&cell));
        }
        page.push_str("</tr>");
    }
    page.push_str("</tbody></table></section>\n");
    page.push_str(SORT_SCRIPT);
    page.push_str("\n</body></html>\n");
    page
}

/// Writes the sweep report to `path`.
fn write_sweep_page(store: &Store, row: &SweepRow, path: &Path) -> anyhow::Result<()> {
    let mut run_dirs = std::collections::BTreeMap::new();
    for run_id in row.trials.iter().filter_map(|t| t.run_id.as_ref()) {
        if let Ok(record) = store.run_record(run_id) {
            run_dirs.insert(run_id.clone(), PathBuf::from(record["output_dir"].as_str().unwrap_or_default()));
        }
    }
    std::fs::write(path, sweep_page(row, &run_dirs)).with_context(|| format!("{}: cannot write", path.display()))
}

/// `host sweep show [SWEEP]`: one sweep's trials, or every sweep.
pub fn show(store: &StoreOptions, sweep_id: Option<&str>, json: bool, html: Option<&Path>) -> anyhow::Result<()> {
    let store: Store = store.open()?;
    match sweep_id {
        Some(id) => {
            let row = store.sweep(id)?;
            if let Some(path) = html {
                write_sweep_page(&store, &row, path)?;
                eprintln!("wrote {}", path.display());
            }
            if json {
                print_json(&row)
            } else {
                print_sweep(&row);
                Ok(())
            }
        }
        None => {
            let rows: Vec<SweepRow> = store.sweep_ids()?.iter().map(|id| store.sweep(id)).collect::<Result<_, _>>()?;
            if json {
                return print_json(&rows);
            }
            let lines: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let completed = r.trials.iter().filter(|t| t.status == "completed").count();
                    vec![
                        r.sweep_id.clone(),
                        r.created_at.clone(),
                        format!("{completed}/{}", r.trials.len()),
                        r.metric.clone(),
                    ]
                })
                .collect();
            println!("{}", table(&["SWEEP", "CREATED", "COMPLETED", "METRIC"], &lines));
            Ok(())
        }
    }
}
