//! The SQLite backend: one file, WAL so readers work beside a writer, a busy timeout, foreign
//! keys, migrations by `PRAGMA user_version` (`schema.rs`), reads in `queries.rs`.

mod queries;
mod schema;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use anyhow::Context;
use record::{Edge, RunRecord, RunStatus, StageName, TrialStatus, flatten};
use rusqlite::OptionalExtension;
use rusqlite::{Connection, params};
use serde_json::Value;

use crate::migration;
use crate::{
    CachedStage, DeletedRun, Direction, Locator, OpenOptions, RecordedFile, Result, RunFilter, RunRow, RunningRun,
    StepMetric, StoreInfo, Summary, SweepDriver, SweepJob, SweepRow, SweepStart, timed_write,
};

pub struct SqliteStore {
    /// `RefCell` because transactions need `&mut`; a store is used by one thread at a time.
    connection: RefCell<Connection>,
    locator: Locator,
    path: PathBuf,
    /// The store file's device and inode when opened: a write checks the path still names it.
    identity: (u64, u64),
}

/// Whether `path` is a WAL store with neither a `-shm` index nor unwritten `-wal` content:
/// the one case a reader in a folder it may not write cannot open normally, and where reading
/// the file as it is (`immutable`) misses nothing.
fn wal_without_index(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 20];
    let is_wal = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header)).is_ok() && header[18] == 2;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_is_empty = std::fs::metadata(PathBuf::from(wal)).map_or(true, |m| m.len() == 0);
    is_wal && wal_is_empty && !shm_path(path).exists()
}

/// Where SQLite keeps a store's shared-memory index: the file name with `-shm` appended.
fn shm_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-shm");
    PathBuf::from(name)
}

/// A path as a SQLite URI's path: `%`, `?` and `#` escaped (the only characters it treats
/// specially there).
fn percent_encode_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    text.replace('%', "%25").replace('?', "%3f").replace('#', "%23")
}

/// A file's device and inode.
fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.dev(), metadata.ino()))
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

/// How a JSON value is typed in the parameters table.
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

impl SqliteStore {
    /// Opens (creating if needed) and migrates the store.
    pub fn open(path: &Path, options: &OpenOptions) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create the store's folder", parent.display()))?;
        }
        let connection =
            Connection::open(path).with_context(|| format!("{}: cannot open the provenance store", path.display()))?;
        connection.busy_timeout(options.timeout)?;
        let mode = set_journal_mode(&connection, &options.journal_mode, options.timeout)
            .with_context(|| format!("{}: cannot set the journal mode", path.display()))?;
        if !mode.eq_ignore_ascii_case(&options.journal_mode) {
            tracing::warn!("{}: journal mode is {mode}, not {}", path.display(), options.journal_mode);
        }
        connection
            .execute_batch(&format!("PRAGMA foreign_keys = ON; PRAGMA synchronous = {};", options.synchronous))
            .with_context(|| format!("{}: cannot configure the provenance store", path.display()))?;
        let identity =
            identity(path).with_context(|| format!("{}: the provenance store was not created", path.display()))?;
        let store = SqliteStore {
            connection: RefCell::new(connection),
            locator: Locator::Sqlite(path.to_owned()),
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
            identity,
        };
        store.migrate().with_context(|| format!("{}: cannot create or upgrade the store's tables", path.display()))?;
        Ok(store)
    }

    /// Opens an existing store for reading only: nothing is created, migrated or written, so
    /// a user who may only read the file (or its folder) can query it, and leaves no `-wal`
    /// or `-shm` file of theirs behind. A store older than this host is opened as [`open`]
    /// does, since reading it needs its migrations.
    pub fn open_read_only(path: &Path, options: &OpenOptions) -> Result<Self> {
        if !path.exists() {
            anyhow::bail!(
                "{}: no provenance store here; `host run` creates it, or give the store with --db or HOST_DB",
                path.display()
            );
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let open = |flags| -> Result<(Connection, (u32, u32))> {
            let connection = Connection::open_with_flags(path, flags)?;
            connection.busy_timeout(options.timeout)?;
            let versions = Self::versions(&connection)?;
            Ok((connection, versions))
        };
        let (connection, (version, compatible_from)) = match open(flags) {
            Ok(opened) => opened,
            // A WAL store needs its `-shm` file, which a reader cannot create in a folder it may
            // not write: read the file as it is (SQLite's `immutable`), as nobody can be writing
            // where this user cannot.
            Err(_) if wal_without_index(path) => {
                tracing::debug!("{}: read as an immutable snapshot (no -shm file, a read-only folder)", path.display());
                let uri = format!("file:{}?immutable=1", percent_encode_path(path));
                let connection = Connection::open_with_flags(&uri, flags | rusqlite::OpenFlags::SQLITE_OPEN_URI)
                    .with_context(|| format!("{}: cannot open the provenance store", path.display()))?;
                let versions = Self::versions(&connection)
                    .with_context(|| format!("{}: cannot read the provenance store", path.display()))?;
                (connection, versions)
            }
            Err(error) => return Err(error.context(format!("{}: cannot read the provenance store", path.display()))),
        };
        let name = path.display().to_string();
        if migration::check(&name, version, compatible_from, schema::MIGRATIONS)? {
            drop(connection);
            return Self::open(path, options);
        }
        let identity = identity(path)?;
        Ok(SqliteStore {
            connection: RefCell::new(connection),
            locator: Locator::Sqlite(path.to_owned()),
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
            identity,
        })
    }

    /// The schema version (`PRAGMA user_version`) and the oldest schema a host must know.
    fn versions(connection: &Connection) -> Result<(u32, u32)> {
        let version = connection.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?;
        // No host writes a negative version: the file is damaged or not a store, and reading
        // it as version 0 would run the first migration over its tables.
        let version = u32::try_from(version).map_err(|_| {
            anyhow::anyhow!("schema version {version} is not one any host writes; the file is damaged or not a store")
        })?;
        let has_info: bool = connection.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_info')",
            [],
            |r| r.get(0),
        )?;
        let compatible_from = if has_info {
            connection
                .query_row("SELECT value FROM schema_info WHERE name = 'compatible_from'", [], |r| r.get::<_, i64>(0))
                .optional()?
                .map(|v| u32::try_from(v).map_err(|_| anyhow::anyhow!("compatible_from {v} is not a schema version")))
                .transpose()?
        } else {
            None
        };
        // A store from before `schema_info` needs a host that knows its whole schema.
        Ok((version, compatible_from.unwrap_or(version)))
    }

    fn migrate(&self) -> Result<()> {
        let path = self.locator.to_string();
        let mut connection = self.connection.borrow_mut();
        let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (version, compatible_from) = Self::versions(&transaction)?;
        if !migration::check(&path, version, compatible_from, schema::MIGRATIONS)? {
            return Ok(());
        }
        for migration in schema::MIGRATIONS.iter().filter(|m| m.version > version) {
            transaction
                .execute_batch(migration.sql)
                .with_context(|| format!("{path}: migration {}", migration.version))?;
            transaction.pragma_update(None, "user_version", i64::from(migration.version))?;
        }
        let compatible_from = migration::compatible_from(schema::MIGRATIONS, version, compatible_from);
        transaction.execute(
            "INSERT INTO schema_info (name, value) VALUES ('compatible_from', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [i64::from(compatible_from)],
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// Runs `body` in one immediate transaction, timed as a store write.
    fn write<T>(&self, body: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        timed_write(|| {
            let mut connection = self.connection.borrow_mut();
            let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let value = body(&transaction)?;
            transaction.commit()?;
            self.still_there()?;
            Ok(value)
        })
    }

    /// SQLite goes on writing to a store file that was deleted or replaced, and what it writes
    /// is lost with it: after each write, the path must still name the file that was opened.
    fn still_there(&self) -> Result<()> {
        match identity(&self.path) {
            Ok(now) if now == self.identity => Ok(()),
            Ok(_) => anyhow::bail!(
                "{}: the store file was replaced while this command was writing to it; what it wrote is not in the new file",
                self.path.display()
            ),
            Err(e) => anyhow::bail!(
                "{}: the store file was deleted while this command was writing to it ({e}); what it wrote is lost",
                self.path.display()
            ),
        }
    }

    /// Adds the store's name to an error, so every backend's errors say which store failed.
    fn context(&self, what: &str) -> String {
        format!("{what} in {}", self.locator)
    }
}

fn insert_job(transaction: &Connection, sweep_id: &str, job: &SweepJob) -> Result<()> {
    transaction.execute(
        "INSERT INTO sweep_jobs (sweep_id, trial, scheduler, job_id, submitted_at, state, reason, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (sweep_id, trial, job_id) DO UPDATE SET state = excluded.state, reason = excluded.reason,
             updated_at = excluded.updated_at
         WHERE excluded.updated_at >= sweep_jobs.updated_at",
        params![
            sweep_id,
            job.trial as i64,
            job.scheduler,
            job.job_id,
            job.submitted_at,
            job.state,
            job.reason,
            job.updated_at
        ],
    )?;
    Ok(())
}

/// `PRAGMA integrity_check` of the file at `path`, opened read-only.
pub fn integrity_check(path: &Path) -> Result<String> {
    let connection = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    Ok(connection.query_row("PRAGMA integrity_check", [], |row| row.get(0))?)
}

/// Inserts a run at its start: its experiment, run row, environment, plugins and parameters;
/// links it to its sweep trial.
fn insert_run(transaction: &Connection, record: &RunRecord) -> Result<()> {
    let owner = &record.owner;
    transaction.execute(
        "INSERT OR IGNORE INTO experiments (name, created_at) VALUES (?1, ?2)",
        params![record.experiment_name, record.started_at],
    )?;
    let experiment_id: i64 =
        transaction.query_row("SELECT id FROM experiments WHERE name = ?1", [&record.experiment_name], |r| r.get(0))?;
    transaction.execute(
        "INSERT INTO runs (run_id, experiment_id, status, config_file, config_json, config_sha256, seed, threads, host_version,
                           git_commit, git_dirty, output_dir, started_at, heartbeat_at, pid, hostname, replay_of, summary_json,
                           boot_id, pid_namespace, sweep_id, trial)
         VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14,
                 (SELECT run_id FROM runs WHERE run_id = ?15), ?16, ?17, ?18, ?19, ?20)",
        params![
            record.run_id,
            experiment_id,
            record.config_file.display().to_string(),
            serde_json::to_string(&record.config)?,
            record.config_sha256,
            record.seed as i64,
            record.threads as i64,
            record.host_version(),
            record.git.commit,
            record.git.dirty,
            record.output_dir.display().to_string(),
            record.started_at,
            i64::from(owner.pid),
            owner.hostname,
            record.replay_of,
            serde_json::to_string(record)?,
            owner.boot_id,
            owner.pid_namespace,
            record.trial.as_ref().map(|t| t.sweep_id.as_str()),
            record.trial.as_ref().map(|t| t.trial as i64),
        ],
    )?;
    let environment = &record.environment;
    transaction.execute(
        "INSERT INTO environments (run_id, os, arch, cpu, cores, threads, rustc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            record.run_id,
            environment.os,
            environment.arch,
            environment.cpu,
            environment.cores as i64,
            environment.threads as i64,
            environment.rustc
        ],
    )?;
    for plugin in &record.plugins {
        transaction.execute(
            "INSERT INTO plugin_libraries (sha256, path, plugin_name, plugin_version, sdk_version, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (sha256) DO UPDATE SET path = excluded.path",
            params![plugin.sha256, plugin.library.display().to_string(), plugin.plugin_name, plugin.plugin_version, plugin.sdk_version, plugin.size as i64],
        )?;
        transaction.execute(
            "INSERT INTO run_plugins (run_id, kind, class, library_sha256) VALUES (?1, ?2, ?3, ?4)",
            params![record.run_id, plugin.kind.name(), plugin.class, plugin.sha256],
        )?;
    }
    for (name, value) in flatten(&record.config) {
        transaction.execute(
            "INSERT INTO parameters (run_id, name, type, value_json) VALUES (?1, ?2, ?3, ?4)",
            params![record.run_id, name, json_type(&value), value.to_string()],
        )?;
    }
    if let Some(trial) = &record.trial {
        transaction.execute(
            "UPDATE sweep_trials SET run_id = ?3 WHERE sweep_id = ?1 AND trial = ?2",
            params![trial.sweep_id, trial.trial as i64, record.run_id],
        )?;
    }
    Ok(())
}

/// Writes what a run has produced so far (status, stages, artifacts, lineage, metrics).
fn write_record(transaction: &Connection, record: &RunRecord) -> Result<()> {
    let run = &record.run_id;
    let finished = record.status != RunStatus::Running;
    transaction.execute(
        "UPDATE runs SET status = ?2, finished_at = ?3, heartbeat_at = ?4, error = ?5, failed_stage = ?6, summary_json = ?7 WHERE run_id = ?1",
        params![
            run,
            record.status.as_str(),
            if finished { record.finished_at.clone() } else { None },
            record::now_rfc3339(),
            record.error,
            record.failed_stage.map(|s| s.as_str()),
            serde_json::to_string(record)?
        ],
    )?;
    for stage in &record.stages {
        transaction.execute(
            "INSERT OR REPLACE INTO stages (run_id, name, status, seconds, parameters_json, cache_hit, cache_key, reused_from)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, (SELECT run_id FROM runs WHERE run_id = ?8))",
            params![
                run,
                stage.name.as_str(),
                stage.status.as_str(),
                stage.seconds,
                stage.parameters.to_string(),
                stage.reused_from.is_some(),
                stage.cache_key,
                stage.reused_from
            ],
        )?;
    }
    write_files(transaction, record)?;
    write_lineage_and_metrics(transaction, record)
}

/// The run's files and data entities, content-addressed.
fn write_files(transaction: &Connection, record: &RunRecord) -> Result<()> {
    let run = &record.run_id;
    let add_artifact = |sha256: &str, kind: &str, size: Option<u64>, role: &str, path: &str| -> rusqlite::Result<()> {
        transaction.execute(
            "INSERT OR IGNORE INTO artifacts (sha256, kind, size) VALUES (?1, ?2, ?3)",
            params![sha256, kind, size.map(|s| s as i64)],
        )?;
        transaction.execute(
            "INSERT OR IGNORE INTO run_artifacts (run_id, sha256, role, path) VALUES (?1, ?2, ?3, ?4)",
            params![run, sha256, role, path],
        )?;
        Ok(())
    };
    for file in &record.source_files {
        add_artifact(&file.sha256, "raw", Some(file.size), file.kind.as_str(), &file.path.display().to_string())?;
    }
    if !record.data.dataset_sha256.is_empty() {
        add_artifact(&record.data.dataset_sha256, "dataset", None, "dataset", "")?;
    }
    for transform in &record.data.transforms {
        for output in &transform.outputs {
            add_artifact(&output.sha256, "split", None, &output.label, "")?;
        }
    }
    for file in &record.artifacts {
        let kind = file.kind.as_str();
        add_artifact(&file.sha256, kind, Some(file.size), kind, &file.path.display().to_string())?;
    }
    Ok(())
}

/// The run's lineage edges and metrics, replacing what was written before (live metrics too).
fn write_lineage_and_metrics(transaction: &Connection, record: &RunRecord) -> Result<()> {
    let run = &record.run_id;
    transaction.execute("DELETE FROM lineage_edges WHERE run_id = ?1", [run])?;
    for edge in record::lineage(record) {
        transaction.execute(
            "INSERT INTO lineage_edges (run_id, relation, subject, object, activity, parameters_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                run,
                edge.relation.as_str(),
                edge.subject,
                edge.object,
                edge.activity,
                edge.parameters.map(|p| p.to_string())
            ],
        )?;
    }
    transaction.execute("DELETE FROM metrics WHERE run_id = ?1", [run])?;
    for (epoch, values) in &record.history {
        for (name, value) in values {
            transaction.execute(
                "INSERT INTO metrics (run_id, name, step, value) VALUES (?1, ?2, ?3, ?4)",
                params![run, name, *epoch as i64, crate::queryable(*value)],
            )?;
        }
    }
    if let Some(metrics) = &record.metrics {
        for (name, value) in flatten(metrics) {
            // Scalars are queryable as numbers; structured values (the confusion matrix,
            // per-class rows) are kept whole as JSON.
            transaction.execute(
                "INSERT INTO metrics (run_id, name, step, value, value_json) VALUES (?1, ?2, NULL, ?3, ?4)",
                params![
                    run,
                    name,
                    value.as_f64().and_then(crate::queryable),
                    if value.is_number() { None } else { Some(value.to_string()) }
                ],
            )?;
        }
    }
    Ok(())
}

impl crate::Store for SqliteStore {
    fn locator(&self) -> &Locator {
        &self.locator
    }

    fn begin_run(&self, record: &RunRecord) -> Result<()> {
        self.write(|transaction| insert_run(transaction, record))
            .with_context(|| self.context(&format!("recording the start of run {}", record.run_id)))
    }

    fn record(&self, record: &RunRecord) -> Result<()> {
        self.write(|transaction| {
            write_record(transaction, record)?;
            crate::failpoint::pause("store.record");
            Ok(())
        })
        .with_context(|| self.context(&format!("recording run {}", record.run_id)))
    }

    fn heartbeat(&self, run_id: &str) -> Result<()> {
        timed_write(|| {
            self.connection
                .borrow()
                .execute("UPDATE runs SET heartbeat_at = ?2 WHERE run_id = ?1", params![run_id, record::now_rfc3339()])
        })
        .with_context(|| self.context(&format!("recording the heartbeat of run {run_id}")))?;
        Ok(())
    }

    fn live_metrics(&self, run_id: &str, metrics: &[(String, u64, f64)]) -> Result<()> {
        self.write(|transaction| {
            let mut insert = transaction
                .prepare_cached("INSERT INTO metrics (run_id, name, step, value) VALUES (?1, ?2, ?3, ?4)")?;
            for (name, step, value) in metrics {
                insert.execute(params![run_id, name, *step as i64, crate::queryable(*value)])?;
            }
            Ok(())
        })
        .with_context(|| self.context(&format!("recording the live metrics of run {run_id}")))
    }

    fn import_runs(&self, runs: &[RunRecord]) -> Result<()> {
        self.write(|transaction| {
            for record in runs {
                insert_run(transaction, record)?;
                write_record(transaction, record)?;
            }
            Ok(())
        })
        .with_context(|| self.context(&format!("importing {} runs", runs.len())))
    }

    fn cached_stages(&self, stage: StageName, key: &str) -> Result<Vec<CachedStage>> {
        queries::cached_stages(&self.connection.borrow(), stage, key)
            .with_context(|| self.context(&format!("looking up the stage cache for {stage}")))
    }

    fn run_exists(&self, run_id: &str) -> Result<bool> {
        queries::run_exists(&self.connection.borrow(), run_id)
            .with_context(|| self.context(&format!("looking up run {run_id}")))
    }

    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>> {
        queries::list_runs(&self.connection.borrow(), filter).with_context(|| self.context("listing runs"))
    }

    fn plugin_builds(&self) -> Result<Vec<crate::PluginBuild>> {
        queries::plugin_builds(&self.connection.borrow()).with_context(|| self.context("listing plugin builds"))
    }

    fn read_view(&self, view: &str, run_id: &str) -> Result<crate::ViewRows> {
        queries::read_view(&self.connection.borrow(), view, run_id)
            .with_context(|| self.context(&format!("reading {view}")))
    }

    fn query_runs(&self, query: &crate::RunQuery) -> Result<crate::RunPage> {
        queries::query_runs(&self.connection.borrow(), query).with_context(|| self.context("querying runs"))
    }

    fn annotate(&self, run_id: &str, annotation: &crate::Annotation) -> Result<()> {
        self.require(run_id)?;
        self.write(|transaction| queries::annotate(transaction, run_id, annotation))
            .with_context(|| self.context(&format!("annotating run {run_id}")))
    }

    fn annotations(&self, run_id: &str) -> Result<Vec<crate::Annotation>> {
        queries::annotations(&self.connection.borrow(), run_id)
            .with_context(|| self.context(&format!("reading the annotations of run {run_id}")))
    }

    fn record_verification(&self, run_id: &str, verification: &crate::Verification) -> Result<()> {
        self.require(run_id)?;
        self.write(|transaction| queries::record_verification(transaction, run_id, verification))
            .with_context(|| self.context(&format!("recording the verification of run {run_id}")))
    }

    fn verifications(&self, run_id: &str) -> Result<Vec<crate::Verification>> {
        queries::verifications(&self.connection.borrow(), run_id)
            .with_context(|| self.context(&format!("reading the verifications of run {run_id}")))
    }

    fn run_record(&self, run_id: &str) -> Result<RunRecord> {
        self.require(run_id)?;
        queries::run_record(&self.connection.borrow(), run_id)
            .with_context(|| self.context(&format!("reading the record of run {run_id}")))
    }

    fn run_status(&self, run_id: &str) -> Result<RunStatus> {
        self.require(run_id)?;
        queries::run_status(&self.connection.borrow(), run_id)
            .with_context(|| self.context(&format!("reading the status of run {run_id}")))
    }

    fn recorded_files(&self, run_id: &str) -> Result<Vec<RecordedFile>> {
        self.require(run_id)?;
        queries::recorded_files(&self.connection.borrow(), run_id)
            .with_context(|| self.context(&format!("reading the files of run {run_id}")))
    }

    fn parameters(&self, run_id: &str) -> Result<BTreeMap<String, Value>> {
        self.require(run_id)?;
        queries::parameters(&self.connection.borrow(), run_id)
            .with_context(|| self.context(&format!("reading the parameters of run {run_id}")))
    }

    fn final_metrics(&self, run_id: &str) -> Result<BTreeMap<String, f64>> {
        queries::final_metrics(&self.connection.borrow(), run_id)
            .with_context(|| self.context(&format!("reading the metrics of run {run_id}")))
    }

    fn step_metrics(&self, run_id: &str, after_step: i64) -> Result<Vec<StepMetric>> {
        queries::step_metrics(&self.connection.borrow(), run_id, after_step)
            .with_context(|| self.context(&format!("reading the per-epoch metrics of run {run_id}")))
    }

    fn metric_curve(&self, run_id: &str, name: &str) -> Result<Vec<(i64, f64)>> {
        queries::metric_curve(&self.connection.borrow(), run_id, name)
            .with_context(|| self.context(&format!("reading metric {name} of run {run_id}")))
    }

    fn lineage_edges(&self, run_id: &str) -> Result<Vec<Edge>> {
        queries::lineage_edges(&self.connection.borrow(), run_id)
            .with_context(|| self.context(&format!("reading the lineage of run {run_id}")))
    }

    fn derived(
        &self,
        entities: &[String],
        direction: Direction,
        run: Option<&str>,
    ) -> Result<Vec<(String, String, Option<String>)>> {
        queries::derived(&self.connection.borrow(), entities, direction, run)
            .with_context(|| self.context(&format!("walking the lineage of {} entities", entities.len())))
    }

    fn describe_entities(&self, sha256s: &[String]) -> Result<BTreeMap<String, (String, String)>> {
        queries::describe_entities(&self.connection.borrow(), sha256s)
            .with_context(|| self.context(&format!("describing {} entities", sha256s.len())))
    }

    fn runs_using(&self, sha256: &str, limit: usize) -> Result<(Vec<String>, usize)> {
        queries::runs_using(&self.connection.borrow(), sha256, limit)
            .with_context(|| self.context(&format!("finding the runs that used {sha256}")))
    }

    fn run_entities(&self, run_id: &str) -> Result<Vec<(String, String)>> {
        queries::run_entities(&self.connection.borrow(), run_id)
            .with_context(|| self.context(&format!("reading the entities of run {run_id}")))
    }

    fn expand_sha256(&self, prefix: &str) -> Result<Vec<String>> {
        queries::expand_sha256(&self.connection.borrow(), prefix)
            .with_context(|| self.context(&format!("looking up SHA-256 {prefix}")))
    }

    fn summary(&self) -> Result<Summary> {
        queries::summary(&self.connection.borrow()).with_context(|| self.context("summarising"))
    }

    fn begin_sweep(&self, sweep: &SweepStart) -> Result<()> {
        self.write(|transaction| {
            transaction.execute(
                "INSERT OR IGNORE INTO sweeps (sweep_id, name, config_json, metric, maximize, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![sweep.sweep_id, sweep.name, sweep.config.to_string(), sweep.metric, sweep.maximize, record::now_rfc3339()],
            )?;
            Ok(())
        })
        .with_context(|| self.context(&format!("recording sweep {}", sweep.sweep_id)))
    }

    fn trial_started(&self, sweep_id: &str, trial: usize, parameters: &Value) -> Result<()> {
        self.write(|transaction| {
            transaction.execute(
                "INSERT OR REPLACE INTO sweep_trials (sweep_id, trial, parameters_json, run_id, status, metric)
                 VALUES (?1, ?2, ?3, NULL, 'running', NULL)",
                params![sweep_id, trial as i64, parameters.to_string()],
            )?;
            Ok(())
        })
        .with_context(|| self.context(&format!("recording the start of trial {trial} of sweep {sweep_id}")))
    }

    fn trial_ended(&self, sweep_id: &str, trial: usize, status: TrialStatus, metric: Option<f64>) -> Result<()> {
        self.write(|transaction| {
            transaction.execute(
                "UPDATE sweep_trials SET status = ?3, metric = ?4 WHERE sweep_id = ?1 AND trial = ?2",
                params![sweep_id, trial as i64, status.as_str(), metric],
            )?;
            Ok(())
        })
        .with_context(|| self.context(&format!("recording the end of trial {trial} of sweep {sweep_id}")))
    }

    fn sweep(&self, sweep_id: &str) -> Result<SweepRow> {
        queries::sweep(&self.connection.borrow(), sweep_id)
            .with_context(|| self.context(&format!("reading sweep {sweep_id}")))?
            .ok_or_else(|| {
                anyhow::anyhow!("no sweep {sweep_id} in {}; `host sweep show` lists the sweeps", self.locator)
            })
    }

    fn sweep_ids(&self) -> Result<Vec<String>> {
        queries::sweep_ids(&self.connection.borrow()).with_context(|| self.context("listing sweeps"))
    }

    fn import_sweep(&self, sweep: &SweepRow) -> Result<()> {
        self.write(|transaction| {
            transaction.execute(
                "INSERT OR IGNORE INTO sweeps (sweep_id, name, config_json, metric, maximize, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![sweep.sweep_id, sweep.name, sweep.config.to_string(), sweep.metric, sweep.maximize, sweep.created_at],
            )?;
            for trial in &sweep.trials {
                transaction.execute(
                    "INSERT INTO sweep_trials (sweep_id, trial, parameters_json, run_id, status, metric)
                     VALUES (?1, ?2, ?3, (SELECT run_id FROM runs WHERE run_id = ?4), ?5, ?6)
                     ON CONFLICT (sweep_id, trial) DO UPDATE SET parameters_json = excluded.parameters_json,
                         run_id = excluded.run_id, status = excluded.status, metric = excluded.metric
                     WHERE excluded.status IN ('completed', 'pruned') AND sweep_trials.status <> 'pruned'
                         AND COALESCE((SELECT r.status FROM runs r WHERE r.run_id = sweep_trials.run_id), sweep_trials.status)
                             <> 'completed'",
                    params![
                        sweep.sweep_id,
                        trial.trial as i64,
                        trial.parameters.to_string(),
                        trial.run_id,
                        trial.status.as_str(),
                        trial.metric
                    ],
                )?;
                if let Some(job) = &trial.job {
                    insert_job(transaction, &sweep.sweep_id, job)?;
                }
            }
            Ok(())
        })
        .with_context(|| self.context(&format!("importing sweep {}", sweep.sweep_id)))
    }

    fn job_submitted(&self, sweep_id: &str, job: &SweepJob) -> Result<()> {
        self.write(|transaction| insert_job(transaction, sweep_id, job))
            .with_context(|| self.context(&format!("recording job {} of sweep {sweep_id}", job.job_id)))
    }

    fn lease_sweep(
        &self,
        sweep_id: &str,
        owner: &record::RunOwner,
        expired: Option<&str>,
    ) -> Result<Option<SweepDriver>> {
        let me = serde_json::to_string(owner)?;
        self.write(|transaction| {
            let granted = transaction.execute(
                "UPDATE sweeps SET driver_json = ?2, driver_heartbeat = ?3
                 WHERE sweep_id = ?1 AND (driver_json IS NULL OR driver_json = ?2 OR driver_heartbeat = ?4)",
                params![sweep_id, me, record::now_rfc3339(), expired],
            )?;
            if granted == 1 {
                return Ok(None);
            }
            let holder: Option<(Option<String>, Option<String>)> = transaction
                .query_row("SELECT driver_json, driver_heartbeat FROM sweeps WHERE sweep_id = ?1", [sweep_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            match holder {
                Some((Some(owner), Some(heartbeat_at))) => {
                    Ok(Some(SweepDriver { owner: serde_json::from_str(&owner)?, heartbeat_at }))
                }
                _ => anyhow::bail!("no sweep {sweep_id} to lease"),
            }
        })
        .with_context(|| self.context(&format!("leasing sweep {sweep_id}")))
    }

    fn release_sweep(&self, sweep_id: &str, owner: &record::RunOwner) -> Result<()> {
        let me = serde_json::to_string(owner)?;
        self.write(|transaction| {
            transaction.execute(
                "UPDATE sweeps SET driver_json = NULL, driver_heartbeat = NULL WHERE sweep_id = ?1 AND driver_json = ?2",
                params![sweep_id, me],
            )?;
            Ok(())
        })
        .with_context(|| self.context(&format!("releasing sweep {sweep_id}")))
    }

    fn job_state(&self, sweep_id: &str, trial: usize, job_id: &str, state: &str, reason: Option<&str>) -> Result<()> {
        self.write(|transaction| {
            transaction.execute(
                "UPDATE sweep_jobs SET state = ?4, reason = ?5, updated_at = ?6 WHERE sweep_id = ?1 AND trial = ?2 AND job_id = ?3",
                params![sweep_id, trial as i64, job_id, state, reason, record::now_rfc3339()],
            )?;
            Ok(())
        })
        .with_context(|| self.context(&format!("recording the state of job {job_id} of sweep {sweep_id}")))
    }

    fn info(&self) -> Result<StoreInfo> {
        let connection = self.connection.borrow();
        let (schema_version, compatible_from) = Self::versions(&connection)?;
        let sweeps: i64 = connection.query_row("SELECT COUNT(*) FROM sweeps", [], |r| r.get(0))?;
        Ok(StoreInfo {
            backend: "sqlite",
            locator: self.locator.to_string(),
            schema_version,
            compatible_from,
            host_schema_version: migration::known(schema::MIGRATIONS),
            sweeps,
            summary: queries::summary(&connection)?,
        })
    }

    fn running_runs(&self) -> Result<Vec<RunningRun>> {
        queries::running_runs(&self.connection.borrow()).with_context(|| self.context("listing running runs"))
    }

    fn settle_run(&self, run_id: &str, status: RunStatus, reason: &str, from: &[RunStatus]) -> Result<bool> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let changed = self
            .write(|transaction| {
                Ok(transaction.execute(
                    "UPDATE runs SET status = ?2, error = ?3, finished_at = COALESCE(finished_at, ?4)
                     WHERE run_id = ?1 AND status IN (SELECT value FROM json_each(?5))",
                    params![run_id, status.as_str(), reason, record::now_rfc3339(), serde_json::to_string(&from)?],
                )?)
            })
            .with_context(|| self.context(&format!("recording how run {run_id} ended")))?;
        Ok(changed > 0)
    }

    fn delete_run(&self, run_id: &str) -> Result<DeletedRun> {
        self.require(run_id)?;
        self.write(|transaction| queries::delete_run(transaction, run_id))
            .with_context(|| self.context(&format!("deleting run {run_id}")))
    }
}

impl SqliteStore {
    fn require(&self, run_id: &str) -> Result<()> {
        (self as &dyn crate::Store).require_run(run_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn open(dir: &Path) -> SqliteStore {
        SqliteStore::open(&dir.join("store.db"), &OpenOptions::default()).unwrap()
    }

    #[test]
    fn migrations_apply_once_and_set_the_user_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let versions = SqliteStore::versions(&store.connection.borrow()).unwrap();
        assert_eq!(versions, (migration::known(schema::MIGRATIONS), 3));
        drop(store);
        // Reopening applies nothing twice.
        let store = open(dir.path());
        let connection = store.connection.borrow();
        let mode: String = connection.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let foreign_keys: i64 = connection.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(foreign_keys, 1);
    }

    #[test]
    fn every_migration_applies_in_memory() {
        let mut connection = Connection::open_in_memory().unwrap();
        let transaction = connection.transaction().unwrap();
        for migration in schema::MIGRATIONS {
            transaction.execute_batch(migration.sql).unwrap();
        }
        transaction.commit().unwrap();
    }

    #[test]
    fn a_store_from_a_newer_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let error = SqliteStore::open(&path, &OpenOptions::default()).err().unwrap();
        assert!(
            format!("{error:#}").contains("written by a newer host (schema 99); it needs a host that knows schema 99"),
            "{error:#}"
        );
    }

    #[test]
    fn a_negative_schema_version_is_refused_not_read_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        drop(open(dir.path()));
        Connection::open(&path).unwrap().pragma_update(None, "user_version", -1).unwrap();
        for error in [
            SqliteStore::open(&path, &OpenOptions::default()).err().unwrap(),
            SqliteStore::open_read_only(&path, &OpenOptions::default()).err().unwrap(),
        ] {
            assert!(
                format!("{error:#}").contains("schema version -1 is not one any host writes; the file is damaged"),
                "{error:#}"
            );
        }
    }

    #[test]
    fn a_read_only_open_writes_nothing_and_needs_an_existing_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let error = SqliteStore::open_read_only(&path, &OpenOptions::default()).err().unwrap();
        assert!(format!("{error:#}").contains("no provenance store here"), "{error:#}");
        assert!(!path.exists(), "reading creates no store");
        let store = open(dir.path());
        store.begin_run(&crate::conformance::started("r1", "e", "2026-01-01T00:00:00Z")).unwrap();
        drop(store);
        let reader = SqliteStore::open_read_only(&path, &OpenOptions::default()).unwrap();
        assert_eq!(reader.run_status("r1").unwrap(), record::RunStatus::Running);
        assert!(reader.settle_run("r1", record::RunStatus::Interrupted, "x", &[record::RunStatus::Running]).is_err());
    }

    /// A store a newer host migrated further, additively, is still used; one whose newer
    /// migration breaks what this host knows is refused with the version it needs.
    #[test]
    fn a_newer_store_with_only_additive_changes_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        drop(open(dir.path()));
        let known = migration::known(schema::MIGRATIONS);
        let newer = Connection::open(&path).unwrap();
        newer.execute_batch("CREATE TABLE from_the_future (x INTEGER)").unwrap();
        newer.pragma_update(None, "user_version", i64::from(known) + 1).unwrap();
        drop(newer);
        let store = SqliteStore::open(&path, &OpenOptions::default()).unwrap();
        assert_eq!(crate::Store::info(&store).unwrap().schema_version, known + 1);
        drop(store);
        let newer = Connection::open(&path).unwrap();
        newer
            .execute("UPDATE schema_info SET value = ?1 WHERE name = 'compatible_from'", [i64::from(known) + 1])
            .unwrap();
        drop(newer);
        let error = SqliteStore::open(&path, &OpenOptions::default()).err().unwrap();
        assert!(format!("{error:#}").contains(&format!("needs a host that knows schema {}", known + 1)), "{error:#}");
    }
}

#[cfg(test)]
mod conformance {
    use crate::conformance::conformance_suite;

    fn open() -> (Box<dyn crate::Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::open(&crate::Locator::Sqlite(dir.path().join("store.db")), &crate::OpenOptions::default());
        (store.unwrap(), dir)
    }

    conformance_suite!(open());
}
