//! The provenance store (SQLite): the only module that touches SQL. Runs, their environment,
//! plugin libraries, content-addressed artifacts, stage executions, lineage edges in W3C PROV
//! terms, parameters and metrics. WAL, a busy timeout and foreign keys; append-only migrations;
//! one transaction per stage; a heartbeat so a killed run is later marked interrupted.

mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use plugin_sdk::{ConfigKey, ConfigType};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::schema::check_section;
use crate::config::{ConfigError, read_yaml};
use crate::pipeline::{RunStatus, RunSummary, now_rfc3339};

/// `config/database_config.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    pub path: PathBuf,
    pub timeout: Duration,
    pub journal_mode: String,
    pub synchronous: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            path: PathBuf::from("provenance.db"),
            timeout: Duration::from_secs(30),
            journal_mode: "wal".into(),
            synchronous: "normal".into(),
        }
    }
}

impl DatabaseConfig {
    fn keys() -> Vec<ConfigKey> {
        vec![
            ConfigKey::new("", "path", ConfigType::String)
                .default("provenance.db")
                .describe("the SQLite file, relative to the working folder"),
            ConfigKey::new("", "timeout_seconds", ConfigType::Number)
                .default(30)
                .describe("how long a writer waits for a busy store"),
            ConfigKey::new(
                "",
                "journal_mode",
                ConfigType::Choice(vec!["wal".into(), "delete".into(), "truncate".into()]),
            )
            .default("wal"),
            ConfigKey::new("", "synchronous", ConfigType::Choice(vec!["normal".into(), "full".into()]))
                .default("normal"),
        ]
    }

    /// Reads the file when it exists; otherwise the defaults.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        if !file.is_file() {
            return Ok(DatabaseConfig::default());
        }
        let value = read_yaml(file)?;
        let keys = Self::keys();
        let refs: Vec<&ConfigKey> = keys.iter().collect();
        let mut problems = Vec::new();
        let filled = check_section(Some(&value), "", &refs, "the database config", &mut problems);
        let timeout = filled.get("timeout_seconds").and_then(Value::as_f64).unwrap_or(30.0);
        if !(0.0..=3600.0).contains(&timeout) {
            problems.push(crate::config::Problem::new(
                "timeout_seconds",
                format!("must be between 0 and 3600, found {timeout}"),
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigError { file: file.to_owned(), problems });
        }
        let text = |key: &str| filled.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok(DatabaseConfig {
            path: PathBuf::from(text("path")),
            timeout: Duration::from_secs_f64(timeout),
            journal_mode: text("journal_mode"),
            synchronous: text("synchronous"),
        })
    }
}

pub struct Store {
    connection: Connection,
    path: PathBuf,
}

/// The machine a run ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub os: String,
    pub arch: String,
    pub cpu: String,
    pub cores: usize,
    pub threads: usize,
    pub rustc: String,
}

impl Environment {
    pub fn current(threads: usize) -> Self {
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let pretty =
            os_release.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|s| s.trim_matches('"').to_owned());
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        Environment {
            os: pretty.unwrap_or_else(|| std::env::consts::OS.to_owned()),
            arch: std::env::consts::ARCH.to_owned(),
            cpu,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            threads,
            rustc: env!("HOST_RUSTC_VERSION").to_owned(),
        }
    }
}

/// Sets the journal mode, retrying while another process holds the store: switching a new
/// store to WAL needs an exclusive lock, and SQLite answers "locked" there without waiting for
/// the busy timeout when two processes create the store at once.
fn set_journal_mode(connection: &Connection, mode: &str, timeout: Duration) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let result = connection.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0)).and_then(|current| {
            if current.eq_ignore_ascii_case(mode) {
                Ok(current)
            } else {
                connection.query_row(&format!("PRAGMA journal_mode = {mode}"), [], |r| r.get(0))
            }
        });
        match result {
            Err(rusqlite::Error::SqliteFailure(error, _))
                if matches!(error.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn process_alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The git commit of a repository and whether its work tree is dirty.
pub type GitState = (Option<String>, Option<bool>);

/// The git state of `dir`'s repository, when it is in one.
pub fn git_state(dir: &Path) -> GitState {
    let git = |args: &[&str]| {
        std::process::Command::new("git").args(args).current_dir(dir).output().ok().filter(|o| o.status.success())
    };
    let Some(commit) = git(&["rev-parse", "HEAD"]) else { return (None, None) };
    let commit = String::from_utf8_lossy(&commit.stdout).trim().to_owned();
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).map(|o| !o.stdout.is_empty());
    (Some(commit), dirty)
}

/// A lineage edge in W3C PROV terms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    pub relation: &'static str,
    pub subject: String,
    pub object: String,
    pub activity: Option<String>,
    pub parameters: Option<Value>,
}

fn edge(relation: &'static str, subject: &str, object: &str) -> Edge {
    Edge { relation, subject: subject.to_owned(), object: object.to_owned(), activity: None, parameters: None }
}

/// The lineage of a run, derived from its record: entities are SHA-256 digests, activities are
/// `<run id>/<stage or transform>`, agents are `plugin:<library sha256>` and `host:<version>`.
pub fn lineage(summary: &RunSummary) -> Vec<Edge> {
    let run = &summary.run_id;
    let host = format!("host:{}", env!("CARGO_PKG_VERSION"));
    let plugin = |kind: plugin_sdk::ClassKind| {
        summary.plugins.iter().find(|p| p.kind == kind).map(|p| format!("plugin:{}", p.sha256))
    };
    let mut edges = Vec::new();
    let stage_done = |name: &str| summary.stages.iter().any(|s| s.name == name && s.status == RunStatus::Completed);
    let files_of = |kinds: &[&str]| -> Vec<String> {
        summary.artifacts.iter().filter(|a| kinds.contains(&a.kind.as_str())).map(|a| a.sha256.clone()).collect()
    };

    let load = format!("{run}/load");
    if !summary.data.dataset_sha256.is_empty() {
        let dataset = &summary.data.dataset_sha256;
        for file in &summary.source_files {
            edges.push(edge("used", &load, &file.sha256));
            edges.push(Edge { activity: Some(load.clone()), ..edge("wasDerivedFrom", dataset, &file.sha256) });
        }
        edges.push(edge("wasGeneratedBy", dataset, &load));
        if let Some(agent) = plugin(plugin_sdk::ClassKind::Loader) {
            edges.push(edge("wasAssociatedWith", &load, &agent));
        }
    }
    for transform in &summary.data.transforms {
        let activity = format!("{run}/prepare/{}", transform.name);
        edges.push(edge("wasAssociatedWith", &activity, &host));
        for input in &transform.inputs {
            edges.push(edge("used", &activity, &input.sha256));
        }
        for (index, output) in transform.outputs.iter().enumerate() {
            edges.push(edge("wasGeneratedBy", &output.sha256, &activity));
            // Split-wise transforms pair input i with output i; a split derives every output from its one input.
            let sources: Vec<&str> = if transform.inputs.len() == transform.outputs.len() {
                vec![transform.inputs[index].sha256.as_str()]
            } else {
                transform.inputs.iter().map(|i| i.sha256.as_str()).collect()
            };
            for source in sources {
                edges.push(Edge {
                    activity: Some(activity.clone()),
                    parameters: Some(transform.parameters.clone()),
                    ..edge("wasDerivedFrom", &output.sha256, source)
                });
            }
        }
    }
    let splits = summary.data.transforms.last().map(|t| t.outputs.clone()).unwrap_or_default();
    let split = |name: &str| splits.iter().find(|s| s.label.starts_with(name)).map(|s| s.sha256.clone());
    let mut derive_stage = |stage: &str, inputs: Vec<String>, outputs: Vec<String>, agent: Option<String>| {
        if !stage_done(stage) && outputs.is_empty() {
            return;
        }
        let activity = format!("{run}/{stage}");
        for input in &inputs {
            edges.push(edge("used", &activity, input));
        }
        for output in &outputs {
            edges.push(edge("wasGeneratedBy", output, &activity));
            for input in &inputs {
                edges.push(Edge { activity: Some(activity.clone()), ..edge("wasDerivedFrom", output, input) });
            }
        }
        if let Some(agent) = agent {
            edges.push(edge("wasAssociatedWith", &activity, &agent));
        }
    };
    let model_files = files_of(&["model"]);
    let train_inputs: Vec<String> = ["train", "validation"].iter().filter_map(|s| split(s)).collect();
    derive_stage(
        "train",
        train_inputs,
        files_of(&["model", "checkpoint", "history"]),
        plugin(plugin_sdk::ClassKind::Model),
    );
    let mut evaluate_inputs = model_files.clone();
    evaluate_inputs.extend(split("test"));
    derive_stage(
        "evaluate",
        evaluate_inputs,
        files_of(&["metrics", "predictions"]),
        plugin(plugin_sdk::ClassKind::Model),
    );
    derive_stage(
        "report",
        files_of(&["metrics", "predictions", "history"]),
        files_of(&["report"]),
        plugin(plugin_sdk::ClassKind::ReportGenerator),
    );
    edges
}

/// Flattens a JSON value into dotted keys (`training.learning_rate`), lists kept whole.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, inner, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "mapping",
    }
}

fn status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the store.
    pub fn open(config: &DatabaseConfig) -> anyhow::Result<Self> {
        let path = config.path.clone();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create the store's folder", parent.display()))?;
        }
        let connection =
            Connection::open(&path).with_context(|| format!("{}: cannot open the provenance store", path.display()))?;
        connection.busy_timeout(config.timeout)?;
        let mode = set_journal_mode(&connection, &config.journal_mode, config.timeout)
            .with_context(|| format!("{}: cannot set the journal mode", path.display()))?;
        if !mode.eq_ignore_ascii_case(&config.journal_mode) {
            tracing::warn!("{}: journal mode is {mode}, not {}", path.display(), config.journal_mode);
        }
        connection.execute_batch(&format!("PRAGMA foreign_keys = ON; PRAGMA synchronous = {};", config.synchronous))?;
        let mut store = Store { connection, path };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> anyhow::Result<()> {
        let path = self.path.display().to_string();
        let transaction = self.connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: usize = transaction.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
        if version > schema::MIGRATIONS.len() {
            bail!(
                "{path}: written by a newer host (schema {version}, this host knows {}); upgrade the host",
                schema::MIGRATIONS.len()
            );
        }
        for (index, migration) in schema::MIGRATIONS.iter().enumerate().skip(version) {
            transaction.execute_batch(migration).with_context(|| format!("{path}: migration {}", index + 1))?;
            transaction.pragma_update(None, "user_version", index as i64 + 1)?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Marks runs left `running` by a process that no longer exists (on this machine) or whose
    /// heartbeat stopped (anywhere) as interrupted. Returns their ids.
    pub fn mark_interrupted(&self, stale_after: Duration) -> anyhow::Result<Vec<String>> {
        let this_host = hostname();
        let mut statement =
            self.connection.prepare("SELECT run_id, pid, hostname, heartbeat_at FROM runs WHERE status = 'running'")?;
        let running: Vec<(String, i64, String, String)> =
            statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<_, _>>()?;
        let stale_before = rfc3339_seconds_ago(stale_after);
        let mut interrupted = Vec::new();
        for (run_id, pid, host, heartbeat) in running {
            let dead = if host == this_host {
                !process_alive(pid) || pid == std::process::id() as i64
            } else {
                heartbeat < stale_before
            };
            if dead {
                self.connection.execute(
                    "UPDATE runs SET status = 'interrupted', finished_at = ?2 WHERE run_id = ?1 AND status = 'running'",
                    params![run_id, now_rfc3339()],
                )?;
                interrupted.push(run_id);
            }
        }
        Ok(interrupted)
    }

    /// Records a run at its start.
    pub fn begin_run(
        &mut self,
        summary: &RunSummary,
        config: &Value,
        environment: &Environment,
        git: &GitState,
    ) -> anyhow::Result<()> {
        let (commit, dirty) = git.clone();
        let transaction = self.connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        transaction.execute(
            "INSERT OR IGNORE INTO experiments (name, created_at) VALUES (?1, ?2)",
            params![summary.experiment_name, summary.started_at],
        )?;
        let experiment_id: i64 =
            transaction
                .query_row("SELECT id FROM experiments WHERE name = ?1", [&summary.experiment_name], |r| r.get(0))?;
        transaction.execute(
            "INSERT INTO runs (run_id, experiment_id, status, config_file, config_json, config_sha256, seed, threads, host_version,
                               git_commit, git_dirty, output_dir, started_at, heartbeat_at, pid, hostname)
             VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14)",
            params![
                summary.run_id,
                experiment_id,
                summary.config_file.display().to_string(),
                serde_json::to_string(config)?,
                summary.config_sha256,
                summary.seed as i64,
                summary.threads as i64,
                env!("CARGO_PKG_VERSION"),
                commit,
                dirty,
                summary.output_dir.display().to_string(),
                summary.started_at,
                std::process::id() as i64,
                hostname(),
            ],
        )?;
        transaction.execute(
            "INSERT INTO environments (run_id, os, arch, cpu, cores, threads, rustc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![summary.run_id, environment.os, environment.arch, environment.cpu, environment.cores as i64, environment.threads as i64, environment.rustc],
        )?;
        for plugin in &summary.plugins {
            transaction.execute(
                "INSERT INTO plugin_libraries (sha256, path, plugin_name, plugin_version, sdk_version, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (sha256) DO UPDATE SET path = excluded.path",
                params![plugin.sha256, plugin.library.display().to_string(), plugin.plugin_name, plugin.plugin_version, plugin.sdk_version, plugin.size as i64],
            )?;
            transaction.execute(
                "INSERT INTO run_plugins (run_id, kind, class, library_sha256) VALUES (?1, ?2, ?3, ?4)",
                params![summary.run_id, plugin.kind.name(), plugin.class, plugin.sha256],
            )?;
        }
        let mut parameters = Vec::new();
        flatten("", config, &mut parameters);
        for (name, value) in parameters {
            transaction.execute(
                "INSERT INTO parameters (run_id, name, type, value_json) VALUES (?1, ?2, ?3, ?4)",
                params![summary.run_id, name, json_type(&value), value.to_string()],
            )?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Keeps the run's heartbeat fresh.
    pub fn heartbeat(&self, run_id: &str) -> anyhow::Result<()> {
        self.connection
            .execute("UPDATE runs SET heartbeat_at = ?2 WHERE run_id = ?1", params![run_id, now_rfc3339()])?;
        Ok(())
    }

    /// Records everything the run has produced so far, in one transaction: called after each
    /// stage and at the end, so a run killed later keeps the records of its completed stages.
    pub fn record(&mut self, summary: &RunSummary) -> anyhow::Result<()> {
        let transaction = self.connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let run = &summary.run_id;
        let finished = summary.status != RunStatus::Running;
        transaction.execute(
            "UPDATE runs SET status = ?2, finished_at = ?3, heartbeat_at = ?4, error = ?5, failed_stage = ?6, summary_json = ?7 WHERE run_id = ?1",
            params![
                run,
                status_name(summary.status),
                if finished { summary.finished_at.clone() } else { None },
                now_rfc3339(),
                summary.error,
                summary.failed_stage,
                serde_json::to_string(summary)?
            ],
        )?;
        for stage in &summary.stages {
            transaction.execute(
                "INSERT OR REPLACE INTO stages (run_id, name, status, seconds, cache_hit) VALUES (?1, ?2, ?3, ?4, 0)",
                params![run, stage.name, status_name(stage.status), stage.seconds],
            )?;
        }
        let add_artifact = |tx: &Transaction<'_>,
                            sha256: &str,
                            kind: &str,
                            size: Option<u64>,
                            role: &str,
                            path: &str|
         -> rusqlite::Result<()> {
            tx.execute(
                "INSERT OR IGNORE INTO artifacts (sha256, kind, size) VALUES (?1, ?2, ?3)",
                params![sha256, kind, size.map(|s| s as i64)],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO run_artifacts (run_id, sha256, role, path) VALUES (?1, ?2, ?3, ?4)",
                params![run, sha256, role, path],
            )?;
            Ok(())
        };
        for file in &summary.source_files {
            add_artifact(
                &transaction,
                &file.sha256,
                "raw",
                Some(file.size),
                &file.kind,
                &file.path.display().to_string(),
            )?;
        }
        if !summary.data.dataset_sha256.is_empty() {
            add_artifact(&transaction, &summary.data.dataset_sha256, "dataset", None, "dataset", "")?;
        }
        for transform in &summary.data.transforms {
            for output in &transform.outputs {
                add_artifact(&transaction, &output.sha256, "split", None, &output.label, "")?;
            }
        }
        for file in &summary.artifacts {
            add_artifact(
                &transaction,
                &file.sha256,
                &file.kind,
                Some(file.size),
                &file.kind,
                &file.path.display().to_string(),
            )?;
        }
        transaction.execute("DELETE FROM lineage_edges WHERE run_id = ?1", [run])?;
        for edge in lineage(summary) {
            transaction.execute(
                "INSERT INTO lineage_edges (run_id, relation, subject, object, activity, parameters_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run, edge.relation, edge.subject, edge.object, edge.activity, edge.parameters.map(|p| p.to_string())],
            )?;
        }
        transaction.execute("DELETE FROM metrics WHERE run_id = ?1", [run])?;
        for (epoch, values) in &summary.history {
            for (name, value) in values {
                transaction.execute(
                    "INSERT INTO metrics (run_id, name, step, value) VALUES (?1, ?2, ?3, ?4)",
                    params![run, name, *epoch as i64, value],
                )?;
            }
        }
        if let Some(metrics) = &summary.metrics {
            let mut flat = Vec::new();
            flatten("", metrics, &mut flat);
            for (name, value) in flat {
                // Scalars are queryable as numbers; structured values (the confusion matrix,
                // per-class rows) are kept whole as JSON.
                transaction.execute(
                    "INSERT INTO metrics (run_id, name, step, value, value_json) VALUES (?1, ?2, NULL, ?3, ?4)",
                    params![run, name, value.as_f64(), if value.is_number() { None } else { Some(value.to_string()) }],
                )?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    /// Runs, newest first, optionally filtered.
    pub fn list_runs(
        &self,
        experiment: Option<&str>,
        status: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<RunRow>> {
        let mut statement = self.connection.prepare(
            "SELECT r.run_id, e.name, r.status, r.started_at, r.finished_at, r.config_sha256,
                    (SELECT value FROM metrics m WHERE m.run_id = r.run_id AND m.name = 'test.accuracy' AND m.step IS NULL)
             FROM runs r JOIN experiments e ON e.id = r.experiment_id
             WHERE (?1 IS NULL OR e.name = ?1) AND (?2 IS NULL OR r.status = ?2)
             ORDER BY r.started_at DESC, r.run_id DESC LIMIT ?3",
        )?;
        let rows = statement.query_map(params![experiment, status, limit as i64], |r| {
            Ok(RunRow {
                run_id: r.get(0)?,
                experiment: r.get(1)?,
                status: r.get(2)?,
                started_at: r.get(3)?,
                finished_at: r.get(4)?,
                config_sha256: r.get(5)?,
                test_accuracy: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A run's full record as written at its last stage, with its current status.
    pub fn run_record(&self, run_id: &str) -> anyhow::Result<Option<Value>> {
        let row: Option<(String, Option<String>, String)> = self
            .connection
            .query_row("SELECT status, summary_json, config_json FROM runs WHERE run_id = ?1", [run_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((status, summary, config)) = row else { return Ok(None) };
        let mut record: Value = match summary {
            Some(text) => serde_json::from_str(&text)?,
            None => json!({"run_id": run_id}),
        };
        record["status"] = json!(status);
        record["config"] = serde_json::from_str(&config)?;
        Ok(Some(record))
    }
}

/// A file a run recorded, to check again.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedFile {
    /// `plugin`, or the artifact's role (`model`, `metrics`, `train-images`, ...).
    pub role: String,
    pub path: String,
    pub sha256: String,
}

impl Store {
    /// Every file a run used or produced (plugin libraries included), with its recorded SHA-256.
    /// `None` when the run is unknown.
    pub fn recorded_files(&self, run_id: &str) -> anyhow::Result<Option<Vec<RecordedFile>>> {
        let known: Option<String> = self
            .connection
            .query_row("SELECT run_id FROM runs WHERE run_id = ?1", [run_id], |r| r.get(0))
            .optional()?;
        if known.is_none() {
            return Ok(None);
        }
        let mut statement = self.connection.prepare(
            "SELECT 'plugin ' || rp.kind, l.path, l.sha256 FROM run_plugins rp JOIN plugin_libraries l ON l.sha256 = rp.library_sha256
             WHERE rp.run_id = ?1
             UNION ALL
             SELECT role, path, sha256 FROM run_artifacts WHERE run_id = ?1 AND path <> ''
             ORDER BY 1, 2",
        )?;
        let files = statement
            .query_map([run_id], |r| Ok(RecordedFile { role: r.get(0)?, path: r.get(1)?, sha256: r.get(2)? }))?
            .collect::<Result<_, _>>()?;
        Ok(Some(files))
    }
}

impl Store {
    /// A run's parameters (dotted config keys) with their JSON values, or `None` for an unknown run.
    pub fn parameters(&self, run_id: &str) -> anyhow::Result<Option<std::collections::BTreeMap<String, Value>>> {
        let known: Option<String> = self
            .connection
            .query_row("SELECT run_id FROM runs WHERE run_id = ?1", [run_id], |r| r.get(0))
            .optional()?;
        if known.is_none() {
            return Ok(None);
        }
        let mut statement = self.connection.prepare("SELECT name, value_json FROM parameters WHERE run_id = ?1")?;
        let rows = statement.query_map([run_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut parameters = std::collections::BTreeMap::new();
        for row in rows {
            let (name, value) = row?;
            parameters.insert(name, serde_json::from_str(&value)?);
        }
        Ok(Some(parameters))
    }

    /// A run's final scalar metrics (`test.accuracy`, `model.loss`, ...).
    pub fn final_metrics(&self, run_id: &str) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
        let mut statement = self
            .connection
            .prepare("SELECT name, value FROM metrics WHERE run_id = ?1 AND step IS NULL AND value IS NOT NULL")?;
        let rows = statement.query_map([run_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// An entity in the lineage graph and how it was reached.
#[derive(Debug, Clone, Serialize)]
pub struct LineageStep {
    pub sha256: String,
    /// What the entity is (`raw`, `dataset`, `split`, `model`, ...) and its role or path.
    pub kind: String,
    pub label: String,
    /// The entity it was derived from (ancestors) or that was derived from it (descendants).
    pub via: String,
    pub activity: Option<String>,
    pub depth: usize,
}

impl Store {
    fn describe_entity(&self, sha256: &str) -> anyhow::Result<(String, String)> {
        let found: Option<(String, String, String)> = self
            .connection
            .query_row(
                "SELECT a.kind, ra.role, ra.path FROM artifacts a LEFT JOIN run_artifacts ra ON ra.sha256 = a.sha256
                 WHERE a.sha256 = ?1 LIMIT 1",
                [sha256],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    ))
                },
            )
            .optional()?;
        Ok(match found {
            Some((kind, role, path)) if !path.is_empty() => (kind, format!("{role} {path}")),
            Some((kind, role, _)) => (kind, role),
            None => ("unknown".into(), String::new()),
        })
    }

    /// Walks `wasDerivedFrom` edges from `sha256` across every run: towards its sources
    /// (`ancestors`) or towards what was made from it.
    pub fn lineage_walk(&self, sha256: &str, ancestors: bool) -> anyhow::Result<Vec<LineageStep>> {
        let query = if ancestors {
            "SELECT DISTINCT object, activity FROM lineage_edges WHERE relation = 'wasDerivedFrom' AND subject = ?1"
        } else {
            "SELECT DISTINCT subject, activity FROM lineage_edges WHERE relation = 'wasDerivedFrom' AND object = ?1"
        };
        let mut statement = self.connection.prepare(query)?;
        let mut seen = std::collections::HashSet::from([sha256.to_owned()]);
        let mut frontier = vec![(sha256.to_owned(), 0usize)];
        let mut steps = Vec::new();
        while let Some((current, depth)) = frontier.pop() {
            let next: Vec<(String, Option<String>)> =
                statement.query_map([&current], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
            for (entity, activity) in next {
                if seen.insert(entity.clone()) {
                    let (kind, label) = self.describe_entity(&entity)?;
                    steps.push(LineageStep {
                        sha256: entity.clone(),
                        kind,
                        label,
                        via: current.clone(),
                        activity,
                        depth: depth + 1,
                    });
                    frontier.push((entity, depth + 1));
                }
            }
        }
        steps.sort_by(|a, b| a.depth.cmp(&b.depth).then(a.sha256.cmp(&b.sha256)));
        Ok(steps)
    }

    /// Every run that used or produced `sha256` as data, an artifact or a plugin library.
    pub fn runs_using(&self, sha256: &str) -> anyhow::Result<Vec<String>> {
        let mut statement = self.connection.prepare(
            "SELECT run_id FROM run_artifacts WHERE sha256 = ?1 UNION SELECT run_id FROM run_plugins WHERE library_sha256 = ?1 ORDER BY 1",
        )?;
        Ok(statement.query_map([sha256], |r| r.get(0))?.collect::<Result<_, _>>()?)
    }

    /// The digests a run recorded, by kind, for `host lineage RUN`.
    pub fn run_entities(&self, run_id: &str) -> anyhow::Result<Vec<(String, String)>> {
        let mut statement = self.connection.prepare(
            "SELECT DISTINCT a.kind, ra.sha256 FROM run_artifacts ra JOIN artifacts a ON a.sha256 = ra.sha256 WHERE ra.run_id = ?1",
        )?;
        Ok(statement.query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?)
    }

    /// Full SHA-256 digests starting with `prefix` (at least 8 hex digits).
    pub fn expand_sha256(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut statement = self.connection.prepare(
            "SELECT sha256 FROM artifacts WHERE sha256 LIKE ?1 || '%' UNION SELECT sha256 FROM plugin_libraries WHERE sha256 LIKE ?1 || '%'",
        )?;
        Ok(statement.query_map([prefix.to_ascii_lowercase()], |r| r.get(0))?.collect::<Result<_, _>>()?)
    }

    pub fn run_exists(&self, run_id: &str) -> anyhow::Result<bool> {
        Ok(self
            .connection
            .query_row("SELECT 1 FROM runs WHERE run_id = ?1", [run_id], |_| Ok(()))
            .optional()?
            .is_some())
    }
}

impl Store {
    /// The lineage edges recorded for a run.
    pub fn lineage_edges(&self, run_id: &str) -> anyhow::Result<Vec<Edge>> {
        let mut statement = self.connection.prepare(
            "SELECT relation, subject, object, activity, parameters_json FROM lineage_edges WHERE run_id = ?1 ORDER BY id",
        )?;
        let rows = statement.query_map([run_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, Option<String>>(4)?))
        })?;
        let mut edges = Vec::new();
        for row in rows {
            let (relation, subject, object, activity, parameters) = row?;
            let relation = match relation.as_str() {
                "used" => "used",
                "wasGeneratedBy" => "wasGeneratedBy",
                "wasDerivedFrom" => "wasDerivedFrom",
                _ => "wasAssociatedWith",
            };
            let parameters = parameters.map(|p| serde_json::from_str(&p)).transpose()?;
            edges.push(Edge { relation, subject, object, activity, parameters });
        }
        Ok(edges)
    }

    /// What an entity is, for exports: its kind and its role or path.
    pub fn entity_description(&self, sha256: &str) -> anyhow::Result<(String, String)> {
        self.describe_entity(sha256)
    }
}

impl Store {
    /// Deletes a run's rows (children cascade), then artifacts and plugin builds no run refers
    /// to any more. Returns the run's output folder and the paths of its files that other runs
    /// still record, which must be kept on disk.
    pub fn delete_run(&mut self, run_id: &str) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
        let transaction = self.connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let row: Option<(String, String, i64, String)> = transaction
            .query_row("SELECT output_dir, status, pid, hostname FROM runs WHERE run_id = ?1", [run_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((output_dir, status, pid, host)) = row else {
            bail!("no run {run_id} in {}; `host runs list` shows the runs", self.path.display());
        };
        if status == "running" && (host != hostname() || process_alive(pid)) {
            bail!("run {run_id} is still running (process {pid} on {host}); stop it first");
        }
        let shared: Vec<PathBuf> = {
            let mut statement = transaction.prepare(
                "SELECT DISTINCT mine.path FROM run_artifacts mine JOIN run_artifacts other
                 ON other.path = mine.path AND other.run_id <> mine.run_id WHERE mine.run_id = ?1 AND mine.path <> ''",
            )?;
            statement
                .query_map([run_id], |r| r.get::<_, String>(0))?
                .map(|p| p.map(PathBuf::from))
                .collect::<Result<_, _>>()?
        };
        transaction.execute("DELETE FROM runs WHERE run_id = ?1", [run_id])?;
        transaction.execute("DELETE FROM artifacts WHERE sha256 NOT IN (SELECT sha256 FROM run_artifacts)", [])?;
        transaction
            .execute("DELETE FROM plugin_libraries WHERE sha256 NOT IN (SELECT library_sha256 FROM run_plugins)", [])?;
        transaction.execute("DELETE FROM experiments WHERE id NOT IN (SELECT experiment_id FROM runs)", [])?;
        transaction.commit()?;
        Ok((PathBuf::from(output_dir), shared))
    }
}

/// One per-step metric: step, name, value.
pub type StepMetric = (i64, String, f64);

impl Store {
    /// Records one per-step metric as it happens, so `host runs watch` sees epochs live.
    pub fn live_metric(&self, run_id: &str, name: &str, step: u64, value: f64) -> anyhow::Result<()> {
        self.connection.execute(
            "INSERT INTO metrics (run_id, name, step, value) VALUES (?1, ?2, ?3, ?4)",
            params![run_id, name, step as i64, value],
        )?;
        Ok(())
    }

    /// A run's status and its per-step metrics after `after_step`, in step order.
    pub fn watch_state(&self, run_id: &str, after_step: i64) -> anyhow::Result<Option<(String, Vec<StepMetric>)>> {
        let status: Option<String> = self
            .connection
            .query_row("SELECT status FROM runs WHERE run_id = ?1", [run_id], |r| r.get(0))
            .optional()?;
        let Some(status) = status else { return Ok(None) };
        let mut statement = self.connection.prepare(
            "SELECT step, name, value FROM metrics WHERE run_id = ?1 AND step > ?2 AND value IS NOT NULL ORDER BY step, rowid",
        )?;
        let metrics = statement
            .query_map(params![run_id, after_step], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        Ok(Some((status, metrics)))
    }
}

/// Counts for `host summary`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub runs_by_status: std::collections::BTreeMap<String, i64>,
    pub experiments: Vec<(String, i64, Option<f64>)>,
    pub plugin_builds: i64,
    pub artifacts: i64,
    pub artifact_bytes: i64,
    pub lineage_edges: i64,
}

impl Store {
    /// Runs by status, runs and best test accuracy per experiment, and store totals.
    pub fn summary(&self) -> anyhow::Result<Summary> {
        let mut statement =
            self.connection.prepare("SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status")?;
        let runs_by_status = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        let mut statement = self.connection.prepare(
            "SELECT e.name, COUNT(r.run_id),
                    (SELECT MAX(m.value) FROM metrics m JOIN runs r2 ON r2.run_id = m.run_id
                     WHERE r2.experiment_id = e.id AND m.name = 'test.accuracy' AND m.step IS NULL)
             FROM experiments e LEFT JOIN runs r ON r.experiment_id = e.id GROUP BY e.id ORDER BY e.name",
        )?;
        let experiments =
            statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        let count = |sql: &str| -> rusqlite::Result<i64> { self.connection.query_row(sql, [], |r| r.get(0)) };
        Ok(Summary {
            runs_by_status,
            experiments,
            plugin_builds: count("SELECT COUNT(*) FROM plugin_libraries")?,
            artifacts: count("SELECT COUNT(*) FROM artifacts")?,
            artifact_bytes: count("SELECT COALESCE(SUM(size), 0) FROM artifacts")?,
            lineage_edges: count("SELECT COUNT(*) FROM lineage_edges")?,
        })
    }
}

/// One line of `host runs list`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub experiment: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub config_sha256: String,
    pub test_accuracy: Option<f64>,
}

fn rfc3339_seconds_ago(ago: Duration) -> String {
    let now = std::time::SystemTime::now() - ago;
    crate::pipeline::rfc3339(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_config(dir: &Path) -> DatabaseConfig {
        DatabaseConfig { path: dir.join("store.db"), ..DatabaseConfig::default() }
    }

    #[test]
    fn migrations_apply_once_and_set_the_user_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&memory_config(dir.path())).unwrap();
        let version: i64 = store.connection.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version as usize, schema::MIGRATIONS.len());
        drop(store);
        // Reopening applies nothing twice.
        let store = Store::open(&memory_config(dir.path())).unwrap();
        let mode: String = store.connection.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let foreign_keys: i64 = store.connection.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(foreign_keys, 1);
    }

    #[test]
    fn every_migration_applies_in_memory() {
        let mut connection = Connection::open_in_memory().unwrap();
        let transaction = connection.transaction().unwrap();
        for migration in schema::MIGRATIONS {
            transaction.execute_batch(migration).unwrap();
        }
        transaction.commit().unwrap();
    }

    #[test]
    fn a_store_from_a_newer_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = memory_config(dir.path());
        Connection::open(&config.path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let error = Store::open(&config).err().unwrap();
        assert!(format!("{error:#}").contains("written by a newer host (schema 99"), "{error:#}");
    }

    #[test]
    fn the_database_config_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("database_config.yaml");
        std::fs::write(&file, "path: x.db\ntimeout_seconds: 2\njournal_mode: wall\n").unwrap();
        let error = DatabaseConfig::load(&file).unwrap_err().to_string();
        assert!(
            error
                .ends_with("database_config.yaml: journal_mode: expected one of wal, delete, truncate, found \"wall\""),
            "{error}"
        );
        std::fs::write(&file, "path: x.db\ntimeout_seconds: 2\n").unwrap();
        let config = DatabaseConfig::load(&file).unwrap();
        assert_eq!((config.path, config.timeout), (PathBuf::from("x.db"), Duration::from_secs(2)));
        assert_eq!(DatabaseConfig::load(&dir.path().join("absent.yaml")).unwrap(), DatabaseConfig::default());
    }
}
