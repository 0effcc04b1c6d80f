//! `host runs list|show|compare|delete|watch` and `host summary`: the runs in the store.

use std::path::Path;

use anyhow::{Context, bail};
use record::RunStatus;
use store::RunQuery;
use store::query::{self, Attribute, Expr, Key, Literal, Op};

use crate::output::{print_json, printable, short_hash, table};
use crate::storage::StoreOptions;

/// How `runs list` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// What `host runs list` was asked.
pub struct ListOptions<'a> {
    pub experiment: Option<&'a str>,
    pub status: Option<&'a str>,
    pub filter: Option<&'a str>,
    pub order_by: Option<&'a str>,
    pub columns: Option<&'a str>,
    pub limit: usize,
    pub offset: usize,
    pub format: Format,
}

/// The columns `runs list` shows unless told: the table folds the two test metrics into one.
const DEFAULT_COLUMNS: &str =
    "run_id, experiment, status, started_at, finished_at, config_sha256, metrics.test.accuracy, metrics.test.r2";

/// Matching runs are counted up to this many (the hint under the table says "1000+").
const COUNT_LIMIT: usize = 1000;

/// The query `runs list` runs: `--filter` and the `--experiment`/`--status` shorthands together.
fn list_query(options: &ListOptions<'_>) -> anyhow::Result<RunQuery> {
    fn parse<T>(flag: &str, text: &str, result: Result<T, store::QueryError>) -> anyhow::Result<T> {
        result.map_err(|error| anyhow::anyhow!("{flag} {text:?}: {error}"))
    }
    let mut filter = match options.filter {
        Some(text) => Some(parse("--filter", text, query::parse_filter(text))?),
        None => None,
    };
    let mut and = |key: Attribute, value: &str| {
        let condition = Expr::Compare { key: Key::Attribute(key), op: Op::Eq, value: Literal::Text(value.to_owned()) };
        filter = Some(match filter.take() {
            Some(other) => Expr::And(Box::new(other), Box::new(condition)),
            None => condition,
        });
    };
    if let Some(experiment) = options.experiment {
        and(Attribute::Experiment, experiment);
    }
    if let Some(status) = options.status {
        let status = status.parse::<RunStatus>().map_err(anyhow::Error::msg)?;
        and(Attribute::Status, status.as_str());
    }
    let order = match options.order_by {
        Some(text) => parse("--order-by", text, query::parse_order(text))?,
        None => Vec::new(),
    };
    let columns_text = options.columns.unwrap_or(DEFAULT_COLUMNS);
    let columns = parse("--columns", columns_text, query::parse_columns(columns_text))?;
    // 0 means every run, as `lineage --limit 0` does.
    Ok(RunQuery { filter, order, columns, limit: options.limit, offset: options.offset, count_limit: COUNT_LIMIT })
}

/// A value as a `runs list` cell, numbers exact.
fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A value as a CSV cell: text a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first)
/// gets a leading `'`; numbers are left as they are.
fn csv_cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) if text.starts_with(['=', '+', '-', '@', '\t', '\r']) => {
            csv_field(&format!("'{text}"))
        }
        other => csv_field(&plain(other)),
    }
}

/// One CSV field, quoted when it must be (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

pub fn list(store: &StoreOptions, options: &ListOptions<'_>) -> anyhow::Result<()> {
    let query = list_query(options)?;
    // No store yet is no runs yet; listing creates none.
    if !store.exists()? {
        match options.format {
            Format::Json => return print_json(&serde_json::json!([])),
            Format::Csv => {
                println!("{}", query.columns.iter().map(|c| csv_field(&c.label)).collect::<Vec<_>>().join(","));
                return Ok(());
            }
            Format::Table => {}
        }
        println!("no runs yet: {} is created by the first `host run`", store.settings()?.locator);
        return Ok(());
    }
    let store = store.open_read()?;
    let page = store.query_runs(&query)?;
    let labels: Vec<&str> = query.columns.iter().map(|c| c.label.as_str()).collect();
    match options.format {
        Format::Json => {
            let rows: Vec<serde_json::Map<String, serde_json::Value>> = page
                .rows
                .iter()
                .map(|(run_id, values)| {
                    let mut object = serde_json::Map::new();
                    object.insert("run_id".into(), run_id.clone().into());
                    object.extend(labels.iter().map(|l| l.to_string()).zip(values.iter().cloned()));
                    object
                })
                .collect();
            return print_json(&rows);
        }
        Format::Csv => {
            println!("{}", labels.iter().map(|l| csv_field(l)).collect::<Vec<_>>().join(","));
            for (_, values) in &page.rows {
                println!("{}", values.iter().map(csv_cell).collect::<Vec<_>>().join(","));
            }
            return Ok(());
        }
        Format::Table => {}
    }
    if page.rows.is_empty() && page.total > 0 {
        let more = if page.exact { "" } else { "+" };
        println!("{}{more} runs match; --offset {} is past the last of them", page.total, options.offset);
        return Ok(());
    }
    if page.rows.is_empty() {
        let mut only = Vec::new();
        if let Some(experiment) = options.experiment {
            only.push(format!("of experiment {}", printable(experiment)));
        }
        if let Some(status) = options.status {
            only.push(format!("with status {status}"));
        }
        if let Some(filter) = options.filter {
            only.push(format!("matching {}", printable(filter)));
        }
        match only.is_empty() {
            true => println!("no runs in {}", store.locator()),
            false => println!("no runs {} in {} (`host runs list` shows them all)", only.join(" "), store.locator()),
        }
        return Ok(());
    }
    let shown = page.rows.len();
    if options.columns.is_some() {
        let headers: Vec<String> = labels.iter().map(|l| l.to_uppercase()).collect();
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let rows: Vec<Vec<String>> = page.rows.iter().map(|(_, values)| values.iter().map(plain).collect()).collect();
        println!("{}", table(&headers, &rows));
    } else {
        let rows: Vec<Vec<String>> = page
            .rows
            .iter()
            .map(|(_, v)| {
                vec![
                    plain(&v[0]),
                    plain(&v[1]),
                    plain(&v[2]),
                    plain(&v[3]),
                    match (v[6].as_f64(), v[7].as_f64()) {
                        (Some(accuracy), _) => format!("acc {accuracy:.4}"),
                        (None, Some(r2)) => format!("R² {r2:.4}"),
                        (None, None) => String::new(),
                    },
                    short_hash(v[5].as_str().unwrap_or_default()).to_owned(),
                ]
            })
            .collect();
        println!("{}", table(&["RUN", "EXPERIMENT", "STATUS", "STARTED", "TEST", "CONFIG"], &rows));
    }
    if (page.total as usize) > shown + options.offset {
        let more = if page.exact { "" } else { "+" };
        eprintln!("{shown} of {}{more} matching runs shown (--limit, --offset for more)", page.total);
    }
    Ok(())
}

/// `host runs tag RUN key=value...`: sets (or with `key=`, removes) tags.
pub fn tag(store: &StoreOptions, run_id: &str, assignments: &[String]) -> anyhow::Result<()> {
    let annotations = assignments.iter().map(|a| crate::annotations::tag(a)).collect::<anyhow::Result<Vec<_>>>()?;
    let store = store.open()?;
    for annotation in &annotations {
        store.annotate(run_id, annotation)?;
    }
    let tags = store::current_tags(&store.annotations(run_id)?);
    let shown: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={}", printable(v))).collect();
    println!("run {run_id} tags: {}", if shown.is_empty() { "none".to_owned() } else { shown.join(", ") });
    Ok(())
}

/// `host runs note RUN TEXT`: adds a note.
pub fn note(store: &StoreOptions, run_id: &str, text: &str) -> anyhow::Result<()> {
    let annotation = crate::annotations::note(text)?;
    let store = store.open()?;
    store.annotate(run_id, &annotation)?;
    println!("run {run_id}: note added by {}", annotation.author);
    Ok(())
}

pub fn show(store: &StoreOptions, run_id: &str, json: bool) -> anyhow::Result<()> {
    let store = store.open_read()?;
    let record = store.run_record(run_id)?;
    let annotations = store.annotations(run_id)?;
    let verifications = store.verifications(run_id)?;
    if json {
        // The record, and beside it what was added to the run since (not part of the record).
        let mut shown = serde_json::to_value(&record)?;
        shown["tags"] = serde_json::to_value(store::current_tags(&annotations))?;
        shown["annotations"] = serde_json::to_value(&annotations)?;
        shown["verifications"] = serde_json::to_value(&verifications)?;
        return print_json(&shown);
    }
    println!("run         {}", record.run_id);
    println!("experiment  {}", record.experiment_name);
    println!("status      {}", record.status);
    println!("started     {}", record.started_at);
    println!("config      {} (SHA-256 {})", record.config_file.display(), record.config_sha256);
    println!("outputs     {}", record.output_dir.display());
    println!("ran on      {} (process {})", record.owner.hostname, record.owner.pid);
    if let Some(scheduler) = &record.scheduler {
        println!("scheduler   {}", scheduler.describe());
    }
    if let Some(trial) = &record.trial {
        println!("trial       {} of sweep {}", trial.trial, trial.sweep_id);
    }
    if let Some(previous) = &record.previous_attempt {
        println!("continues   {previous} (an earlier attempt of the same run)");
    }
    if let Some(error) = &record.error {
        let stage = record.failed_stage.map(|s| s.to_string()).unwrap_or_default();
        println!("error       {error} (stage {stage})");
    }
    let tags = store::current_tags(&annotations);
    if !tags.is_empty() {
        let shown: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={}", printable(v))).collect();
        println!("tags        {}", shown.join(", "));
    }
    if let Some(last) = verifications.last() {
        let outcome = if last.ok {
            "all files matched".to_owned()
        } else {
            format!("{} files changed or missing", last.problems)
        };
        println!("verified    {} on {}: {outcome}", last.checked_at, printable(&last.hostname));
    }
    for note in annotations.iter().filter(|a| a.kind == store::AnnotationKind::Note) {
        println!(
            "note        {} ({}, {})",
            printable(note.value.as_deref().unwrap_or_default()),
            note.author,
            note.created_at
        );
    }
    let plugins: Vec<Vec<String>> = record
        .plugins
        .iter()
        .map(|p| {
            vec![
                p.kind.to_string(),
                p.class.clone(),
                format!("{} {}", p.plugin_name, p.plugin_version),
                p.sha256.clone(),
            ]
        })
        .collect();
    println!("\n{}", table(&["KIND", "CLASS", "PLUGIN", "SHA256"], &plugins));
    let stages: Vec<Vec<String>> = record
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
    println!("\n{}", table(&["STAGE", "STATUS", "TIME"], &stages));
    let artifacts: Vec<Vec<String>> = store
        .recorded_files(run_id)?
        .into_iter()
        .map(|file| {
            let state = match crate::hashing::sha256_file(Path::new(&file.path)) {
                Ok((sha, _)) if sha == file.sha256 => "present",
                Ok(_) => "changed",
                Err(_) => "missing",
            };
            vec![state.to_owned(), file.role, file.path, short_hash(&file.sha256).to_owned()]
        })
        .collect();
    println!("\n{}", table(&["STATE", "ROLE", "PATH", "SHA256"], &artifacts));
    let rows: Vec<Vec<String>> = ["accuracy", "log_loss", "rmse", "mae", "r2"]
        .iter()
        .filter_map(|name| {
            record.metric(&format!("test.{name}")).map(|v| vec![format!("test {name}"), format!("{v:.4}")])
        })
        .collect();
    if !rows.is_empty() {
        println!("\n{}", table(&["METRIC", "VALUE"], &rows));
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Compared {
    name: String,
    values: Vec<serde_json::Value>,
    differs: bool,
}

impl Compared {
    /// One row: a name and each run's value, marked when any two differ.
    fn new(name: String, values: Vec<serde_json::Value>) -> Compared {
        let differs = values.windows(2).any(|pair| pair[0] != pair[1]);
        Compared { name, values, differs }
    }
}

fn compared(
    names: std::collections::BTreeSet<String>,
    value: impl Fn(usize, &str) -> serde_json::Value,
    runs: usize,
) -> Vec<Compared> {
    names
        .into_iter()
        .map(|name| {
            let values = (0..runs).map(|i| value(i, &name)).collect();
            Compared::new(name, values)
        })
        .collect()
}

/// Each run's plugin builds as rows `plugin.KIND.class`, `.build` (plugin name and version) and
/// `.sha256`: two runs can differ only in the library that trained them.
fn plugin_rows(records: &[record::RunRecord]) -> Vec<Compared> {
    let mut rows = Vec::new();
    for kind in plugin_sdk::ClassKind::ALL {
        let uses: Vec<Option<&record::PluginUse>> =
            records.iter().map(|r| r.plugins.iter().find(|p| p.kind == kind)).collect();
        if uses.iter().all(Option::is_none) {
            continue;
        }
        // As the query language names them (`plugin.model = MNISTMLP`).
        let key = query::kind_name(kind.name());
        type Field = fn(&record::PluginUse) -> String;
        let fields: [(&str, Field); 3] = [
            ("class", |p| p.class.clone()),
            ("build", |p| format!("{} {}", p.plugin_name, p.plugin_version)),
            ("sha256", |p| p.sha256.clone()),
        ];
        for (field, value) in fields {
            let values = uses.iter().map(|p| p.map_or(serde_json::Value::Null, |p| value(p).into())).collect();
            rows.push(Compared::new(format!("plugin.{key}.{field}"), values));
        }
    }
    rows
}

/// `host runs compare`: plugin builds, parameters and final metrics side by side, differences
/// marked.
pub fn compare(store: &StoreOptions, run_ids: &[String], json: bool, html: Option<&Path>) -> anyhow::Result<()> {
    if run_ids.len() < 2 {
        bail!("compare needs at least two runs; `host runs list` shows them");
    }
    let store = store.open_read()?;
    let mut parameters = Vec::new();
    let mut metrics = Vec::new();
    let mut records = Vec::new();
    for run_id in run_ids {
        records.push(store.run_record(run_id)?);
        parameters.push(store.parameters(run_id)?);
        metrics.push(store.final_metrics(run_id)?);
    }
    let parameter_rows = compared(
        parameters.iter().flat_map(|p| p.keys().cloned()).collect(),
        |i, name| parameters[i].get(name).cloned().unwrap_or(serde_json::Value::Null),
        run_ids.len(),
    );
    let metric_rows = compared(
        metrics.iter().flat_map(|m| m.keys().cloned()).collect(),
        |i, name| metrics[i].get(name).map(|v| serde_json::json!(v)).unwrap_or(serde_json::Value::Null),
        run_ids.len(),
    );
    let plugin_rows = plugin_rows(&records);
    if let Some(path) = html {
        let mut curves = Vec::new();
        for run_id in run_ids {
            curves.push(store.step_metrics(run_id, 0)?);
        }
        let page = comparison_page(run_ids, &plugin_rows, &parameter_rows, &metric_rows, &curves);
        std::fs::write(path, page).with_context(|| format!("{}: cannot write", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if json {
        return print_json(&serde_json::json!({
            "runs": run_ids, "plugins": plugin_rows, "parameters": parameter_rows, "metrics": metric_rows,
        }));
    }
    let render = |rows: &[Compared], only_differences: bool| -> Vec<Vec<String>> {
        rows.iter()
            .filter(|row| row.differs || !only_differences)
            .map(|row| {
                let mut cells = vec![if row.differs { "*".to_owned() } else { String::new() }, row.name.clone()];
                // A SHA-256 in a table: its first 12 digits (--json has it whole).
                let short = |value: &serde_json::Value| match value.as_str() {
                    Some(text) if row.name.ends_with(".sha256") => short_hash(text).to_owned(),
                    _ => cell(value),
                };
                cells.extend(row.values.iter().map(short));
                cells
            })
            .collect()
    };
    let mut headers = vec!["", "NAME"];
    headers.extend(run_ids.iter().map(String::as_str));
    println!("plugin builds (* marks a difference):");
    println!("{}", table(&headers, &render(&plugin_rows, false)));
    println!("\nparameters that differ (--json has them all):");
    println!("{}", table(&headers, &render(&parameter_rows, true)));
    println!("\nmetrics:");
    println!("{}", table(&headers, &render(&metric_rows, false)));
    Ok(())
}

fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => format!("{:.4}", n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A self-contained HTML page: each per-epoch metric's curves of every run overlaid, then the
/// parameters that differ and the final metrics side by side. Every text is escaped.
fn comparison_page(
    run_ids: &[String],
    plugins: &[Compared],
    parameters: &[Compared],
    metrics: &[Compared],
    curves: &[Vec<store::StepMetric>],
) -> String {
    use charts::escape;
    use std::fmt::Write;
    // Each run's legend names it by what differs: "<id> (training.learning_rate=0.01)".
    let differing: Vec<&Compared> = parameters.iter().filter(|p| p.differs).collect();
    let legend: Vec<String> = run_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let what: Vec<String> =
                differing.iter().take(3).map(|p| format!("{}={}", p.name, cell(&p.values[i]))).collect();
            if what.is_empty() { id.clone() } else { format!("{id} ({})", what.join(", ")) }
        })
        .collect();
    let mut names: Vec<&str> = curves.iter().flatten().map(|(_, name, _)| name.as_str()).collect();
    names.sort();
    names.dedup();
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Run comparison</title><style>\n\
         body { font-family: system-ui, sans-serif; margin: 24px; color: #1d2733; background: #f6f7f9; }\n\
         section { background: #fff; border: 1px solid #e2e5ea; border-radius: 8px; padding: 16px 20px; margin-bottom: 18px; }\n\
         table { border-collapse: collapse; font-size: 14px; } td, th { padding: 4px 10px; border-bottom: 1px solid #e2e5ea; text-align: left; overflow-wrap: anywhere; }\n\
         tr.differs td { background: #fff7ed; } .chart text { font-size: 11px; fill: #475569; }\n\
         </style></head><body>\n<h1>Run comparison</h1>\n",
    );
    let _ = writeln!(page, "<section><h2>Per-epoch metrics</h2>");
    for name in &names {
        let series: Vec<(String, Vec<(f64, f64)>)> = curves
            .iter()
            .zip(&legend)
            .map(|(points, label)| {
                let points =
                    points.iter().filter(|(_, n, _)| n == name).map(|(step, _, v)| (*step as f64, *v)).collect();
                (label.clone(), points)
            })
            .collect();
        let _ = writeln!(page, "<h3>{}</h3>{}", escape(name), charts::line_chart(&series, "epoch", name, None));
    }
    if names.is_empty() {
        page.push_str("<p>No run recorded per-epoch metrics.</p>");
    }
    page.push_str("</section>\n");
    for (title, rows, only_differences) in [
        ("Plugin builds", plugins, false),
        ("Parameters that differ", parameters, true),
        ("Final metrics", metrics, false),
    ] {
        let _ = write!(page, "<section><h2>{title}</h2><table><tr><th>name</th>");
        for id in run_ids {
            let _ = write!(page, "<th>{}</th>", escape(id));
        }
        page.push_str("</tr>");
        for row in rows.iter().filter(|r| r.differs || !only_differences) {
            let _ = write!(
                page,
                "<tr{}><td>{}</td>",
                if row.differs { " class=\"differs\"" } else { "" },
                escape(&row.name)
            );
            for value in &row.values {
                let _ = write!(page, "<td>{}</td>", escape(&cell(value)));
            }
            page.push_str("</tr>");
        }
        page.push_str("</table></section>\n");
    }
    page.push_str("</body></html>\n");
    page
}

/// `host summary`: what the store holds.
pub fn summary(store: &StoreOptions, json: bool) -> anyhow::Result<()> {
    let store = store.open_read()?;
    let summary = store.summary()?;
    if json {
        return print_json(&summary);
    }
    println!("store {}", store.locator());
    let statuses: Vec<String> = summary.runs_by_status.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let total: i64 = summary.runs_by_status.values().sum();
    println!("runs: {total} ({})", if statuses.is_empty() { "none".into() } else { statuses.join(", ") });
    println!(
        "plugin builds: {}, artifacts: {} ({:.1} MB in files), lineage edges: {}",
        summary.plugin_builds,
        summary.artifacts,
        summary.artifact_bytes as f64 / 1e6,
        summary.lineage_edges
    );
    let rows: Vec<Vec<String>> = summary
        .experiments
        .iter()
        .map(|(name, runs, best)| {
            vec![name.clone(), runs.to_string(), best.map(|b| format!("{b:.4}")).unwrap_or_default()]
        })
        .collect();
    if !rows.is_empty() {
        println!("\n{}", table(&["EXPERIMENT", "RUNS", "BEST TEST ACC"], &rows));
    }
    Ok(())
}

/// `host runs delete`: the run's rows, then its own folder, file by file: never through a
/// symbolic link (a link is removed, not followed), never outside the folder, never a file
/// other runs still record; then the folders left empty.
pub fn delete(store: &StoreOptions, run_id: &str) -> anyhow::Result<()> {
    let store = store.open()?;
    if let Some(live) = store.running_runs()?.into_iter().find(|r| r.run_id == run_id) {
        bail!(
            "run {run_id} is still running (process {} on {}, heartbeat {}); stop it first",
            live.owner.pid,
            live.owner.hostname,
            live.heartbeat_at
        );
    }
    let deleted = store.delete_run(run_id)?;
    println!("deleted run {run_id} from {}", store.locator());
    let folder = deleted.output_dir.display();
    let removal = remove_run_folder(run_id, &deleted).with_context(|| format!("run {run_id}'s folder {folder}"))?;
    match (removal.folder_gone, removal.removed) {
        (true, 0) => println!("its folder {folder} was already gone"),
        (true, removed) => println!("removed {folder} ({removed} files)"),
        (false, removed) => {
            println!("removed {removed} files from {folder}; kept {} still used by other runs", removal.kept)
        }
    }
    Ok(())
}

/// What `runs delete` did in a run's folder.
#[derive(Debug, Default, PartialEq)]
struct Removal {
    removed: usize,
    /// Files other runs record too.
    kept: usize,
    folder_gone: bool,
}

/// Empties the run's folder, except the files other runs record, and removes it. The recorded
/// folder must be the run's own: absolute, named by the run's id, a real folder (not a link),
/// and its `run.json`, where there is one, names the run. A row edited or left stale cannot
/// point the delete at another tree.
fn remove_run_folder(run_id: &str, deleted: &store::DeletedRun) -> anyhow::Result<Removal> {
    let dir = &deleted.output_dir;
    if !dir.is_absolute()
        || dir.file_name() != Some(std::ffi::OsStr::new(run_id))
        || dir.components().any(|c| c == std::path::Component::ParentDir)
    {
        bail!("not this run's own folder (an absolute OUTPUT/{run_id}); nothing was removed from it");
    }
    let mut removal = Removal::default();
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            removal.folder_gone = true;
            return Ok(removal);
        }
        Err(e) => return Err(e.into()),
        Ok(meta) if !meta.is_dir() => bail!("not a folder but a symbolic link or a file; nothing was removed"),
        Ok(_) => {}
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("run.json"))
        && let Ok(record) = serde_json::from_str::<serde_json::Value>(&text)
        && record["run_id"].as_str().is_some_and(|id| id != run_id)
    {
        bail!("its run.json names run {}; nothing was removed", record["run_id"]);
    }
    empty_folder(dir, &deleted.shared, &mut removal)?;
    removal.folder_gone = std::fs::remove_dir(dir).is_ok();
    Ok(removal)
}

/// Removes what is under `dir` except `keep`, without following links: a link is an entry like
/// a file. Folders left empty go too.
fn empty_folder(dir: &std::path::Path, keep: &[std::path::PathBuf], removal: &mut Removal) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            empty_folder(&path, keep, removal)?;
            let _ = std::fs::remove_dir(&path);
        } else if keep.contains(&path) {
            removal.kept += 1;
        } else {
            std::fs::remove_file(&path).with_context(|| format!("{}: cannot remove", path.display()))?;
            removal.removed += 1;
        }
    }
    Ok(())
}

/// `host runs watch`: prints a run's epochs as they are recorded, until it ends.
pub fn watch(store: &StoreOptions, run_id: &str) -> anyhow::Result<()> {
    let settings = store.settings()?;
    let store = crate::storage::open_read(&settings)?;
    let mut printed = 0i64;
    let mut polls = 0u64;
    loop {
        polls += 1;
        // A run that dies while watched never records its end: look for it every few seconds.
        if polls.is_multiple_of(4) {
            crate::storage::mark_dead_if_allowed(&*store, &settings);
        }
        let status = store.run_status(run_id)?;
        let metrics = store.step_metrics(run_id, printed)?;
        let running = status == RunStatus::Running;
        // A run writes each step's metrics at once, so every step seen is whole.
        let through = metrics.last().map(|(step, _, _)| *step).unwrap_or(printed);
        let mut line = (0, String::new());
        for (step, name, value) in metrics.iter().filter(|(step, _, _)| *step <= through) {
            if line.0 != *step && !line.1.is_empty() {
                println!("epoch {}: {}", line.0, line.1.trim_end());
                line.1.clear();
            }
            line.0 = *step;
            line.1.push_str(&format!("{name} {value:.4}  "));
        }
        if !line.1.is_empty() {
            println!("epoch {}: {}", line.0, line.1.trim_end());
        }
        printed = printed.max(through);
        if !running {
            println!("run {run_id} {status}");
            return Ok(());
        }
        std::io::Write::flush(&mut std::io::stdout())?;
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
