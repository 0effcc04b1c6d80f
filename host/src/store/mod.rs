//! The provenance store (SQLite): the only module that touches SQL. Runs, their environment,
//! plugin libraries, content-addressed artifacts, stage executions, lineage edges in W3C PROV
//! terms, parameters and metrics. WAL, a busy timeout and foreign keys; append-only migrations;
//! one transaction per stage; a heartbeat so a killed run is later marked interrupted.

mod queries;
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use plugin_sdk::{ConfigKey, ConfigType};
use rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::Value;

use crate::config::schema::check_section;
use crate::config::{ConfigError, read_yaml};
use crate::pipeline::{RunStatus, RunSummary, now_rfc3339};

pub use queries::{CachedStage, LineageStep, StepMetric, SweepRow, TrialRow};

/// Time this process spent writing run records: the store half of the provenance overhead.
static WRITE_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Seconds spent in the store's run-record writes so far in this process.
pub fn write_seconds() -> f64 {
    WRITE_NANOS.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9
}

/// Runs one write, timed into [`write_seconds`].
fn timed_write<T>(write: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let result = write();
    WRITE_NANOS.fetch_add(started.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
    result
}

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
        timed_write(|| {
            let transaction = self.connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            insert_run(&transaction, summary, config, environment, git)?;
            transaction.commit()?;
            Ok(())
        })
    }

    /// Records finished runs in one transaction: for importing many at once (the store
    /// benchmark builds its 100,000-run store with it).
    pub fn import_runs(&mut self, runs: &[(RunSummary, Value, Environment, GitState)]) -> anyhow::Result<()> {
        let transaction = self.connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (summary, config, environment, git) in runs {
            insert_run(&transaction, summary, config, environment, git)?;
            write_record(&transaction, summary)?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Keeps the run's heartbeat fresh.
    pub fn heartbeat(&self, run_id: &str) -> anyhow::Result<()> {
        timed_write(|| {
            self.connection
                .execute("UPDATE runs SET heartbeat_at = ?2 WHERE run_id = ?1", params![run_id, now_rfc3339()])
        })?;
        Ok(())
    }

    /// Records everything the run has produced so far, in one transaction: called after each
    /// stage and at the end, so a run killed later keeps the records of its completed stages.
    pub fn record(&mut self, summary: &RunSummary) -> anyhow::Result<()> {
        timed_write(|| {
            let transaction = self.connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            write_record(&transaction, summary)?;
            crate::failpoint::pause("store.record");
            transaction.commit()?;
            Ok(())
        })
    }
}

/// Writes what a run has produced so far (status, stages, artifacts, lineage, metrics).
fn write_record(transaction: &Connection, summary: &RunSummary) -> anyhow::Result<()> {
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
            "INSERT OR REPLACE INTO stages (run_id, name, status, seconds, parameters_json, cache_hit, cache_key, reused_from)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                run,
                stage.name,
                status_name(stage.status),
                stage.seconds,
                stage.parameters.to_string(),
                stage.reused_from.is_some(),
                stage.cache_key,
                stage.reused_from
            ],
        )?;
    }
    let add_artifact = |tx: &Connection,
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
        add_artifact(transaction, &file.sha256, "raw", Some(file.size), &file.kind, &file.path.display().to_string())?;
    }
    if !summary.data.dataset_sha256.is_empty() {
        add_artifact(transaction, &summary.data.dataset_sha256, "dataset", None, "dataset", "")?;
    }
    for transform in &summary.data.transforms {
        for output in &transform.outputs {
            add_artifact(transaction, &output.sha256, "split", None, &output.label, "")?;
        }
    }
    for file in &summary.artifacts {
        add_artifact(
            transaction,
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
    Ok(())
}

/// Inserts a run at its start: its experiment, run row, environment, plugins and parameters.
fn insert_run(
    transaction: &Connection,
    summary: &RunSummary,
    config: &Value,
    environment: &Environment,
    git: &GitState,
) -> anyhow::Result<()> {
    let (commit, dirty) = git.clone();
    transaction.execute(
        "INSERT OR IGNORE INTO experiments (name, created_at) VALUES (?1, ?2)",
        params![summary.experiment_name, summary.started_at],
    )?;
    let experiment_id: i64 =
        transaction
            .query_row("SELECT id FROM experiments WHERE name = ?1", [&summary.experiment_name], |r| r.get(0))?;
    transaction.execute(
        "INSERT INTO runs (run_id, experiment_id, status, config_file, config_json, config_sha256, seed, threads, host_version,
                           git_commit, git_dirty, output_dir, started_at, heartbeat_at, pid, hostname, replay_of)
         VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14, ?15)",
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
            summary.replay_of,
        ],
    )?;
    transaction.execute(
        "INSERT INTO environments (run_id, os, arch, cpu, cores, threads, rustc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            summary.run_id,
            environment.os,
            environment.arch,
            environment.cpu,
            environment.cores as i64,
            environment.threads as i64,
            environment.rustc
        ],
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
    Ok(())
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
