//! The UI's JSON endpoints and recorded files, over one worker's store connections. Every
//! read goes through the `Store` interface and the query language, so both backends serve the
//! same UI.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};
use store::Store;
use store::query::{self, RunQuery};

use super::Reply;
use crate::storage::StoreSettings;

/// Runs a page shows unless asked.
const PAGE: usize = 50;
/// The most runs one page or comparison reads.
const MAX_PAGE: usize = 500;
const MAX_COMPARE: usize = 50;
/// Matching runs are counted up to this many ("1–50 of 200+"): a count of every match of a
/// common filter would test every run of a large store.
const COUNT_LIMIT: usize = 200;
/// Columns the runs page always reads (after the chosen ones): what groups and live status need.
const HIDDEN: &str = "status, sweep";
const DEFAULT_COLUMNS: &str = "experiment, status, started_at, duration, metrics.test.accuracy, metrics.test.r2";

pub(crate) struct Context {
    settings: StoreSettings,
    reader: Option<Box<dyn Store>>,
    writer: Option<Box<dyn Store>>,
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.trim().is_empty())
}

/// A query error as the page shows it: the message and the column to put the caret under.
fn query_error(what: &str, error: &store::QueryError) -> Reply {
    Reply::json(400, &json!({"error": format!("{what}: {}", error.message), "field": what, "column": error.column}))
}

fn failure(error: &anyhow::Error) -> Reply {
    if error.downcast_ref::<store::NoSuchRun>().is_some() {
        Reply::error(404, format!("{error}"))
    } else {
        tracing::warn!("host ui: {error:#}");
        Reply::error(500, format!("{error:#}"))
    }
}

impl Context {
    pub fn new(settings: &StoreSettings) -> Context {
        Context { settings: settings.clone(), reader: None, writer: None }
    }

    /// The reader, opened on first use and again after a failure.
    fn store(&mut self) -> anyhow::Result<&dyn Store> {
        if self.reader.is_none() {
            self.reader = Some(crate::storage::open_read(&self.settings)?);
        }
        Ok(&**self.reader.as_ref().expect("opened"))
    }

    pub fn get(&mut self, path: &[&str], params: &[(String, String)]) -> Reply {
        let result = match path {
            ["runs"] => self.runs(params),
            ["check"] => Ok(check(params)),
            ["runs", run_id] => self.run(run_id),
            ["runs", run_id, "verify"] => self.verify(run_id),
            ["compare"] => self.compare(params),
            ["sweeps"] => self.sweeps(),
            ["sweeps", sweep_id] => {
                self.store().and_then(|s| Ok(json!(s.sweep(sweep_id)?))).map(|v| Reply::json(200, &v))
            }
            ["sha256", prefix] => self.lookup(prefix),
            ["plugins"] => self.store().and_then(|s| Ok(json!(s.plugin_builds()?))).map(|v| Reply::json(200, &v)),
            ["keys"] => self.keys(),
            _ => return Reply::error(404, format!("no endpoint /api/{}", path.join("/"))),
        };
        result.unwrap_or_else(|error| {
            // A connection that failed is opened again by the next request.
            self.reader = None;
            failure(&error)
        })
    }
}

/// `/api/check?filter=&order_by=&columns=`: whether they parse, answered 200 either way (the
/// page asks before searching, so a typo is no failed request in the browser's console).
fn check(params: &[(String, String)]) -> Reply {
    let problem = param(params, "filter")
        .and_then(|text| query::parse_filter(text).err().map(|e| ("filter", e)))
        .or_else(|| param(params, "order_by").and_then(|text| query::parse_order(text).err().map(|e| ("order_by", e))))
        .or_else(|| param(params, "columns").and_then(|text| query::parse_columns(text).err().map(|e| ("columns", e))));
    match problem {
        None => Reply::json(200, &json!({"ok": true})),
        Some((field, error)) => Reply::json(
            200,
            &json!({"ok": false, "error": format!("{field}: {}", error.message), "field": field, "column": error.column}),
        ),
    }
}

impl Context {
    /// `/api/runs?filter=&order_by=&columns=&limit=&offset=`: a page of runs.
    fn runs(&mut self, params: &[(String, String)]) -> anyhow::Result<Reply> {
        let filter = match param(params, "filter").map(query::parse_filter).transpose() {
            Ok(filter) => filter,
            Err(error) => return Ok(query_error("filter", &error)),
        };
        let order = match param(params, "order_by").map(query::parse_order).transpose() {
            Ok(order) => order.unwrap_or_default(),
            Err(error) => return Ok(query_error("order_by", &error)),
        };
        let shown = param(params, "columns").unwrap_or(DEFAULT_COLUMNS);
        let mut columns = match query::parse_columns(shown) {
            Ok(columns) => columns,
            Err(error) => return Ok(query_error("columns", &error)),
        };
        let visible = columns.len();
        columns.extend(query::parse_columns(HIDDEN).expect("the hidden columns parse"));
        let number = |name: &str, default: usize| param(params, name).and_then(|v| v.parse().ok()).unwrap_or(default);
        let limit = number("limit", PAGE).clamp(1, MAX_PAGE);
        let query = RunQuery { filter, order, columns, limit, offset: number("offset", 0), count_limit: COUNT_LIMIT };
        let started = std::time::Instant::now();
        let page = self.store()?.query_runs(&query)?;
        let rows: Vec<Value> = page
            .rows
            .into_iter()
            .map(|(run_id, mut values)| {
                let hidden = values.split_off(visible);
                json!({"run_id": run_id, "values": values, "status": hidden[0], "sweep": hidden[1]})
            })
            .collect();
        let labels: Vec<&str> = query.columns[..visible].iter().map(|c| c.label.as_str()).collect();
        Ok(Reply::json(
            200,
            &json!({
                "total": page.total,
                "exact": page.exact,
                "offset": query.offset,
                "limit": limit,
                "columns": labels,
                "rows": rows,
                "server_ms": started.elapsed().as_secs_f64() * 1000.0,
            }),
        ))
    }

    /// Parameter and metric names of recent runs, for the column picker.
    fn keys(&mut self) -> anyhow::Result<Reply> {
        let store = self.store()?;
        let recent = store.query_runs(&RunQuery { limit: 20, ..Default::default() })?;
        let (mut params, mut metrics) = (BTreeSet::new(), BTreeSet::new());
        for (run_id, _) in &recent.rows {
            params.extend(store.parameters(run_id)?.into_keys().map(|k| format!("params.{k}")));
            metrics.extend(store.final_metrics(run_id)?.into_keys().map(|k| format!("metrics.{k}")));
            metrics.extend(
                store.step_metrics(run_id, i64::MIN)?.into_iter().map(|(_, name, _)| format!("metrics.{name}.last")),
            );
        }
        let attributes = [
            "run_id",
            "experiment",
            "status",
            "started_at",
            "finished_at",
            "duration",
            "seed",
            "threads",
            "hostname",
            "git_commit",
            "sweep",
            "trial",
            "plugin.model",
            "plugin.loader",
            "verified",
        ];
        Ok(Reply::json(200, &json!({"attributes": attributes, "params": params, "metrics": metrics})))
    }

    /// One run: its record, what was added beside it, its curves, files and lineage.
    fn run(&mut self, run_id: &str) -> anyhow::Result<Reply> {
        let store = self.store()?;
        let record = store.run_record(run_id)?;
        let annotations = store.annotations(run_id)?;
        let verifications = store.verifications(run_id)?;
        let mut curves: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
        for (step, name, value) in store.step_metrics(run_id, i64::MIN)? {
            curves.entry(name).or_default().push((step, value));
        }
        let output = record.output_dir.clone();
        let files: Vec<Value> = store
            .recorded_files(run_id)?
            .into_iter()
            .enumerate()
            .map(|(index, file)| {
                let relative = Path::new(&file.path).strip_prefix(&output).ok().map(|p| p.display().to_string());
                let link = match &relative {
                    Some(relative) => format!("/files/{run_id}/{relative}"),
                    None => format!("/files/{run_id}/~{index}"),
                };
                json!({"role": file.role, "path": file.path, "sha256": file.sha256, "link": link,
                       "report": relative.as_deref().is_some_and(|r| r.ends_with(".html"))})
            })
            .collect();
        let lineage = self.lineage(run_id)?;
        Ok(Reply::json(
            200,
            &json!({
                "record": record,
                "tags": store::current_tags(&annotations),
                "annotations": annotations,
                "verifications": verifications,
                "curves": curves,
                "files": files,
                "lineage": lineage,
            }),
        ))
    }

    /// The run's lineage as a graph: entities (with the other runs that share each) and edges.
    fn lineage(&mut self, run_id: &str) -> anyhow::Result<Value> {
        let store = self.store()?;
        let edges = store.lineage_edges(run_id)?;
        let entities: Vec<(String, String)> = store.run_entities(run_id)?;
        // Described in one query, as the lineage walk does.
        let digests: Vec<String> = entities.iter().map(|(_, sha256)| sha256.clone()).collect();
        let mut described = store.describe_entities(&digests)?;
        let mut nodes = Vec::new();
        let mut seen = BTreeSet::new();
        for (kind, sha256) in &entities {
            if !seen.insert(sha256.clone()) {
                continue;
            }
            let (kind, label) = described.remove(sha256).unwrap_or_else(|| (kind.clone(), String::new()));
            let (runs, total) = store.runs_using(sha256, 6)?;
            let others: Vec<&String> = runs.iter().filter(|r| *r != run_id).take(5).collect();
            nodes.push(json!({"id": sha256, "kind": kind, "label": label, "other_runs": others, "runs": total}));
        }
        let edges: Vec<Value> = edges
            .iter()
            .filter(|e| e.relation == record::Relation::WasDerivedFrom)
            .map(|e| json!({"from": e.object, "to": e.subject, "activity": e.activity}))
            .collect();
        Ok(json!({"nodes": nodes, "edges": edges}))
    }

    fn verify(&mut self, run_id: &str) -> anyhow::Result<Reply> {
        let cache_dir = self.settings.cache_dir.clone();
        let checks = crate::verification::check_run(self.store()?, run_id, &cache_dir)?;
        let bad = checks.iter().filter(|c| c.state != "ok").count();
        Ok(Reply::json(200, &json!({"run_id": run_id, "verified": bad == 0, "files": checks})))
    }

    /// `/api/compare?runs=a,b`: parameters, final metrics and curves of each.
    fn compare(&mut self, params: &[(String, String)]) -> anyhow::Result<Reply> {
        let ids: Vec<&str> = param(params, "runs").unwrap_or_default().split(',').filter(|s| !s.is_empty()).collect();
        if ids.is_empty() || ids.len() > MAX_COMPARE {
            return Ok(Reply::error(400, format!("compare 1 to {MAX_COMPARE} runs: /compare?runs=A,B")));
        }
        let store = self.store()?;
        let mut runs = Vec::new();
        for run_id in ids {
            let record = store.run_record(run_id)?;
            let mut curves: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
            for (step, name, value) in store.step_metrics(run_id, i64::MIN)? {
                curves.entry(name).or_default().push((step, value));
            }
            let metrics: BTreeMap<String, f64> =
                store.final_metrics(run_id)?.into_iter().filter(|(_, v)| v.is_finite()).collect();
            runs.push(json!({
                "run_id": run_id,
                "experiment": record.experiment_name,
                "status": record.status,
                "plugins": record.plugins.iter().map(|p| json!({"kind": p.kind.to_string(), "class": p.class, "sha256": p.sha256})).collect::<Vec<_>>(),
                "params": store.parameters(run_id)?,
                "metrics": metrics,
                "curves": curves,
            }));
        }
        Ok(Reply::json(200, &json!({"runs": runs})))
    }

    fn sweeps(&mut self) -> anyhow::Result<Reply> {
        let store = self.store()?;
        let mut sweeps = Vec::new();
        for sweep_id in store.sweep_ids()?.into_iter().take(MAX_PAGE) {
            let sweep = store.sweep(&sweep_id)?;
            let done = sweep.trials.iter().filter(|t| t.metric.is_some()).count();
            let best = sweep
                .trials
                .iter()
                .filter_map(|t| t.metric.map(|m| (t.trial, m)))
                .max_by(|a, b| if sweep.maximize { a.1.total_cmp(&b.1) } else { b.1.total_cmp(&a.1) });
            sweeps.push(json!({
                "sweep_id": sweep.sweep_id, "name": sweep.name, "metric": sweep.metric, "maximize": sweep.maximize,
                "created_at": sweep.created_at, "trials": sweep.trials.len(), "done": done,
                "best": best.map(|(trial, metric)| json!({"trial": trial, "metric": metric})),
            }));
        }
        Ok(Reply::json(200, &json!(sweeps)))
    }

    /// What a SHA-256 (or a prefix of one) is, and the runs that used or produced it.
    fn lookup(&mut self, prefix: &str) -> anyhow::Result<Reply> {
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.len() < 4 || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Reply::error(400, "a SHA-256 or a prefix of it: 4 to 64 hex digits"));
        }
        let store = self.store()?;
        let mut found = Vec::new();
        let builds = store.plugin_builds()?;
        for sha256 in store.expand_sha256(&prefix)?.into_iter().take(20) {
            let (mut kind, mut label) = store.entity_description(&sha256)?;
            if let Some(build) = builds.iter().find(|b| b.sha256 == sha256) {
                (kind, label) =
                    ("plugin build".into(), format!("{} {} ({})", build.plugin_name, build.plugin_version, build.path));
            }
            let (runs, total) = store.runs_using(&sha256, 100)?;
            found.push(json!({"sha256": sha256, "kind": kind, "label": label, "runs": runs, "total": total}));
        }
        Ok(Reply::json(200, &json!({"prefix": prefix, "found": found})))
    }

    /// `POST /api/runs/RUN/tags {"key": "owner", "value": "ana"}` or `.../notes {"text": "..."}`.
    pub fn annotate(&mut self, run_id: &str, what: &str, body: &[u8]) -> Reply {
        let body: Value = match serde_json::from_slice(body) {
            Ok(body) => body,
            Err(error) => return Reply::error(400, format!("the body is not JSON: {error}")),
        };
        let annotation = match (what, &body["key"], &body["value"], &body["text"]) {
            ("tags", Value::String(key), Value::String(value), _) => crate::annotations::tag_pair(key, value),
            ("tags", ..) => {
                return Reply::error(400, r#"a tag is {"key": "owner", "value": "ana"} (an empty value removes it)"#);
            }
            ("notes", _, _, Value::String(text)) => crate::annotations::note(text),
            _ => return Reply::error(400, r#"a note is {"text": "..."}"#),
        };
        let annotation = match annotation {
            Ok(annotation) => annotation,
            Err(error) => return Reply::error(400, format!("{error:#}")),
        };
        let written = (|| -> anyhow::Result<Value> {
            if self.writer.is_none() {
                self.writer = Some(crate::storage::open(&self.settings)?);
            }
            let writer = self.writer.as_ref().expect("opened");
            writer.annotate(run_id, &annotation)?;
            let annotations = writer.annotations(run_id)?;
            Ok(json!({"tags": store::current_tags(&annotations), "annotations": annotations}))
        })();
        match written {
            Ok(value) => Reply::json(200, &value),
            Err(error) => {
                self.writer = None;
                failure(&error)
            }
        }
    }

    /// A file the run recorded, by its path under the run's folder or `~INDEX` among its files,
    /// served only while its content has the recorded SHA-256 and it is no link.
    pub fn file(&mut self, run_id: &str, which: &str) -> Reply {
        let found = (|| -> anyhow::Result<Option<(String, String)>> {
            let store = self.store()?;
            let files = store.recorded_files(run_id)?;
            if let Some(index) = which.strip_prefix('~') {
                return Ok(index
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| files.into_iter().nth(i))
                    .map(|f| (f.path, f.sha256)));
            }
            let output = store.run_record(run_id)?.output_dir;
            let wanted = output.join(which);
            Ok(files.into_iter().find(|f| Path::new(&f.path) == wanted).map(|f| (f.path, f.sha256)))
        })();
        let (path, sha256) = match found {
            Ok(Some(found)) => found,
            Ok(None) => return Reply::error(404, format!("run {run_id} recorded no file {which}")),
            Err(error) => return failure(&error),
        };
        let path = Path::new(&path);
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_file() => {}
            Ok(_) => return Reply::error(403, format!("{} is not a regular file now; not served", path.display())),
            Err(error) => return Reply::error(404, format!("{}: {error}", path.display())),
        }
        let body = match std::fs::read(path) {
            Ok(body) => body,
            Err(error) => return Reply::error(404, format!("{}: {error}", path.display())),
        };
        if crate::hashing::sha256_bytes(&body) != sha256 {
            return Reply::error(
                409,
                format!("{} changed since the run recorded it (`host verify {run_id}`); not served", path.display()),
            );
        }
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
        let (content_type, inline) = match extension.as_str() {
            "html" | "htm" => ("text/html; charset=utf-8", true),
            "svg" => ("image/svg+xml", true),
            "png" => ("image/png", true),
            "json" | "csv" | "txt" | "md" | "yaml" | "yml" | "log" => ("text/plain; charset=utf-8", true),
            _ => ("application/octet-stream", false),
        };
        let mut headers = vec![(
            "Content-Security-Policy",
            // A report is shown, never trusted: no script, nothing fetched, its own origin.
            "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:".to_owned(),
        )];
        if !inline {
            let name = path.file_name().map(|n| n.to_string_lossy().replace(['"', '\\'], "_")).unwrap_or_default();
            headers.push(("Content-Disposition", format!("attachment; filename=\"{name}\"")));
        }
        Reply { status: 200, content_type, body, headers }
    }
}
