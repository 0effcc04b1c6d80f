//! The PostgreSQL backend: a store the nodes of a cluster and a team share. One connection per
//! process (the synchronous `postgres` crate), opened with a connect timeout; migrations in one
//! transaction holding an advisory lock, so many hosts starting at once migrate once; writes
//! batched (one statement per table, arrays unnested), so a stage's record costs a few round
//! trips. When the server goes away mid-run (a restart), every call reconnects and retries
//! with backoff for `retry_for`, then fails with one clear line; each write is a whole
//! transaction, so what was committed stays and nothing is half written.

mod connect;
mod queries;
mod schema;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;
use postgres::{Client, GenericClient};
use record::{Edge, RunRecord, RunStatus, StageName, TrialStatus, flatten};
use serde_json::Value;

use crate::locator::PostgresUrl;
use crate::migration;
use crate::{
    CachedStage, DeletedRun, Direction, Locator, OpenOptions, RecordedFile, Result, RunFilter, RunRow, RunningRun,
    StepMetric, StoreInfo, Summary, SweepDriver, SweepJob, SweepRow, SweepStart, timed_write,
};

/// The advisory lock that serialises migrations: "hoststor" in ASCII.
const MIGRATION_LOCK: i64 = 0x686f_7374_7374_6f72;

/// What a call into the server failed with: the server's or the connection's error (retried
/// when transient), a connection that could not be made (retried), or the host's own (never
/// retried).
enum Failure {
    Db(postgres::Error),
    Connect(connect::ConnectFailure),
    Other(anyhow::Error),
}

impl From<postgres::Error> for Failure {
    fn from(error: postgres::Error) -> Self {
        Failure::Db(error)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Other(error)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(error: serde_json::Error) -> Self {
        Failure::Other(error.into())
    }
}

type Call<T> = std::result::Result<T, Failure>;

pub struct PostgresStore {
    /// `None` once the connection is lost, until the next call reconnects.
    client: RefCell<Option<Client>>,
    statements: Statements,
    /// What this process wrote of the runs it is recording.
    written: RefCell<HashMap<String, Written>>,
    connector: connect::Connector,
    locator: Locator,
    retry_for: Duration,
    /// When the server stopped answering, while it has not answered since: every call's retries
    /// count from here, so a server gone for good fails each later call at once instead of
    /// making each wait `retry_for` again.
    outage: std::cell::Cell<Option<Instant>>,
}

impl PostgresStore {
    /// Connects and migrates. A server that cannot be reached, a wrong password or a missing
    /// database fail here at once, each with one line.
    pub fn open(locator: &Locator, url: &PostgresUrl, options: &OpenOptions) -> Result<Self> {
        let connector = connect::Connector::new(url, options.connect_timeout)?;
        let client = connector.connect()?;
        let store = PostgresStore {
            client: RefCell::new(Some(client)),
            statements: Statements::default(),
            written: RefCell::new(HashMap::new()),
            connector,
            locator: locator.clone(),
            retry_for: options.retry_for,
            outage: std::cell::Cell::new(None),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Runs `call` on the connection. A lost connection or a server restarting is retried with
    /// backoff (reconnecting) until `retry_for` has passed since the server stopped answering
    /// (in this call or an earlier one); then, or for any other error, one line naming the
    /// server and what was being done.
    fn run<T>(&self, what: impl Fn() -> String, mut call: impl FnMut(&mut Client) -> Call<T>) -> Result<T> {
        let mut delay = Duration::from_millis(100);
        loop {
            let outcome: Call<T> = {
                let mut slot = self.client.borrow_mut();
                let connected = match slot.take().filter(|client| !client.is_closed()) {
                    Some(client) => Ok(client),
                    None => {
                        self.statements.clear();
                        self.connector.connect_raw().map_err(Failure::Connect)
                    }
                };
                match connected {
                    Ok(mut client) => {
                        let result = call(&mut client);
                        *slot = Some(client);
                        result
                    }
                    Err(failure) => Err(failure),
                }
            };
            let error = match outcome {
                Ok(value) => {
                    self.outage.set(None);
                    return Ok(value);
                }
                Err(Failure::Db(error)) if connect::transient(&error) => self.connector.describe(&error),
                Err(Failure::Connect(failure)) => self.connector.describe_connect(&failure),
                // The server answered: whatever went wrong, it is not away.
                Err(Failure::Db(error)) => {
                    self.outage.set(None);
                    return Err(anyhow::anyhow!("{}", self.connector.describe(&error))).with_context(&what);
                }
                Err(Failure::Other(error)) => {
                    self.outage.set(None);
                    return Err(error).with_context(&what);
                }
            };
            let since = self.outage.get().unwrap_or_else(Instant::now);
            self.outage.set(Some(since));
            if since.elapsed() >= self.retry_for {
                return Err(anyhow::anyhow!(
                    "{error}; gave up after retrying for {} s (retry_seconds in config/database_config.yaml)",
                    self.retry_for.as_secs()
                ))
                .with_context(&what);
            }
            tracing::warn!("{error}; retrying in {:.1} s", delay.as_secs_f64());
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
            // Reconnect on the next turn: a connection that saw an error mid-transaction is
            // not trusted again.
            *self.client.borrow_mut() = None;
        }
    }

    fn context(&self, what: &str) -> impl Fn() -> String + '_ {
        let what = what.to_owned();
        move || format!("{what} in {}", self.locator)
    }

    fn versions(client: &mut impl GenericClient) -> Call<Option<(u32, u32)>> {
        let row = client.query_opt("SELECT version, compatible_from FROM schema_version", &[])?;
        Ok(row.map(|row| (row.get::<_, i32>(0) as u32, row.get::<_, i32>(1) as u32)))
    }

    fn migrate(&self) -> Result<()> {
        let known = migration::known(schema::MIGRATIONS);
        let store = self.locator.to_string();
        // Most opens find the schema current: check without the lock first.
        let current = self.run(self.context("reading the schema version"), |client| {
            let exists: bool = client.query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])?.get(0);
            if !exists {
                return Ok(None);
            }
            Self::versions(client)
        })?;
        if let Some((version, compatible_from)) = current
            && !migration::check(&store, version, compatible_from, schema::MIGRATIONS)?
        {
            return Ok(());
        }
        self.run(self.context("migrating the schema"), |client| {
            let mut transaction = client.transaction()?;
            transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            transaction.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_version (
                     singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
                     version INTEGER NOT NULL,
                     compatible_from INTEGER NOT NULL
                 )",
            )?;
            let (version, compatible_from) = Self::versions(&mut transaction)?.unwrap_or((0, 0));
            if !migration::check(&store, version, compatible_from, schema::MIGRATIONS)? {
                return Ok(());
            }
            for migration in schema::MIGRATIONS.iter().filter(|m| m.version > version) {
                transaction.batch_execute(migration.sql).map_err(|error| {
                    Failure::Other(anyhow::anyhow!("{store}: migration {}: {error}", migration.version))
                })?;
            }
            let compatible_from = migration::compatible_from(schema::MIGRATIONS, version, compatible_from) as i32;
            transaction.execute(
                "INSERT INTO schema_version (singleton, version, compatible_from) VALUES (TRUE, $1, $2)
                 ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, compatible_from = excluded.compatible_from",
                &[&(known as i32), &compatible_from],
            )?;
            transaction.commit()?;
            Ok(())
        })
    }

    /// Runs `body` in one transaction, timed as a store write.
    fn write(
        &self,
        what: impl Fn() -> String,
        mut body: impl FnMut(&mut postgres::Transaction<'_>) -> Call<()>,
    ) -> Result<()> {
        timed_write(|| {
            self.run(what, |client| {
                let mut transaction = client.transaction()?;
                body(&mut transaction)?;
                transaction.commit()?;
                Ok(())
            })
        })
    }

    fn require(&self, run_id: &str) -> Result<()> {
        (self as &dyn crate::Store).require_run(run_id)
    }
}

/// Prepared statements of this connection, by their text: each written statement is parsed
/// once per connection, so a write costs one round trip instead of two. Emptied when the
/// connection is replaced.
#[derive(Default)]
struct Statements(RefCell<HashMap<&'static str, postgres::Statement>>);

impl Statements {
    fn get(&self, client: &mut impl GenericClient, sql: &'static str) -> Call<postgres::Statement> {
        if let Some(statement) = self.0.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql)?;
        self.0.borrow_mut().insert(sql, statement.clone());
        Ok(statement)
    }

    fn clear(&self) {
        self.0.borrow_mut().clear();
    }
}

/// What this process last wrote of each run it records, so that a stage's write sends only what
/// is new: files not sent yet, and lineage edges and metrics appended when what was written is
/// a prefix of them (else they are replaced). Live metrics written since force a replacement.
#[derive(Default)]
struct Written {
    /// Whether the rest is known; a run this process did not begin or write is replaced whole.
    known: bool,
    files: std::collections::HashSet<(String, String, String)>,
    edges: Vec<u64>,
    metrics: Vec<u64>,
    live_metrics: bool,
}

impl Written {
    /// Nothing known of what is written: every part is replaced.
    fn fresh() -> Self {
        Written::default()
    }

    /// A run just begun: nothing written yet.
    fn begun() -> Self {
        Written { known: true, ..Written::default() }
    }
}

fn hashed<T: std::hash::Hash>(value: &T) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(value)
}

/// What of a list of rows to send: all of them after deleting the old ones, or only those
/// after the `skip` already written.
fn delta(written: &[u64], now: &[u64]) -> (bool, usize) {
    if written.len() <= now.len() && written == &now[..written.len()] { (false, written.len()) } else { (true, 0) }
}

/// Inserts a run at its start, in one statement: its experiment, run row, environment, plugin
/// builds, parameters and owner; links it to its sweep trial. (The experiment is upserted with
/// `DO UPDATE` so that its id is returned even when another run inserts it at the same moment.)
fn insert_run(transaction: &mut impl GenericClient, statements: &Statements, record: &RunRecord) -> Call<()> {
    let owner = &record.owner;
    let environment = &record.environment;
    // Each build once, in digest order, so concurrent runs take their row locks in one order.
    let mut builds: Vec<_> = record.plugins.iter().collect();
    builds.sort_by(|a, b| a.sha256.cmp(&b.sha256));
    builds.dedup_by(|a, b| a.sha256 == b.sha256);
    let (mut names, mut types, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for (name, value) in flatten(&record.config) {
        types.push(json_type(&value));
        values.push(value.to_string());
        names.push(name);
    }
    let insert = statements.get(
        transaction,
        "WITH experiment AS (
             INSERT INTO experiments (name, created_at) VALUES ($2, $12)
             ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id
         ),
         run AS (
             INSERT INTO runs (run_id, experiment_id, status, config_file, config_json, config_sha256, seed, threads,
                               host_version, git_commit, git_dirty, output_dir, started_at, heartbeat_at, pid, hostname,
                               replay_of, summary_json, boot_id, pid_namespace, sweep_id, trial)
             SELECT $1, experiment.id, 'running', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14,
                    (SELECT run_id FROM runs WHERE run_id = $15), $16, $17, $18, $37, $38
             FROM experiment
         ),
         environment AS (
             INSERT INTO environments (run_id, os, arch, cpu, cores, threads, rustc) VALUES ($1, $19, $20, $21, $22, $23, $24)
         ),
         builds AS (
             INSERT INTO plugin_libraries (sha256, path, plugin_name, plugin_version, sdk_version, size)
             SELECT * FROM UNNEST($28::text[], $29::text[], $30::text[], $31::text[], $32::text[], $33::int8[])
             ON CONFLICT (sha256) DO UPDATE SET path = excluded.path
         ),
         plugins AS (
             INSERT INTO run_plugins (run_id, kind, class, library_sha256) SELECT $1, * FROM UNNEST($25::text[], $26::text[], $27::text[])
         ),
         parameters AS (
             INSERT INTO parameters (run_id, name, type, value_json) SELECT $1, * FROM UNNEST($34::text[], $35::text[], $36::text[])
         )
         UPDATE sweep_trials SET run_id = $1 WHERE sweep_id = $37 AND trial = $38",
    )?;
    let trial = record.trial.as_ref();
    transaction.execute(
        &insert,
        &[
            &record.run_id,
            &record.experiment_name,
            &record.config_file.display().to_string(),
            &serde_json::to_string(&record.config)?,
            &record.config_sha256,
            &(record.seed as i64),
            &(record.threads as i64),
            &record.host_version(),
            &record.git.commit,
            &record.git.dirty,
            &record.output_dir.display().to_string(),
            &record.started_at,
            &i64::from(owner.pid),
            &owner.hostname,
            &record.replay_of,
            &serde_json::to_string(record)?,
            &owner.boot_id,
            &owner.pid_namespace,
            &environment.os,
            &environment.arch,
            &environment.cpu,
            &(environment.cores as i64),
            &(environment.threads as i64),
            &environment.rustc,
            &record.plugins.iter().map(|p| p.kind.name()).collect::<Vec<_>>(),
            &record.plugins.iter().map(|p| p.class.as_str()).collect::<Vec<_>>(),
            &record.plugins.iter().map(|p| p.sha256.as_str()).collect::<Vec<_>>(),
            &builds.iter().map(|p| p.sha256.as_str()).collect::<Vec<_>>(),
            &builds.iter().map(|p| p.library.display().to_string()).collect::<Vec<_>>(),
            &builds.iter().map(|p| p.plugin_name.as_str()).collect::<Vec<_>>(),
            &builds.iter().map(|p| p.plugin_version.as_str()).collect::<Vec<_>>(),
            &builds.iter().map(|p| p.sdk_version.as_str()).collect::<Vec<_>>(),
            &builds.iter().map(|p| p.size as i64).collect::<Vec<_>>(),
            &names,
            &types,
            &values,
            &trial.map(|t| t.sweep_id.as_str()),
            &trial.map(|t| t.trial as i64),
        ],
    )?;
    Ok(())
}

fn insert_job(transaction: &mut impl GenericClient, sweep_id: &str, job: &SweepJob) -> Call<()> {
    transaction.execute(
        "INSERT INTO sweep_jobs (sweep_id, trial, scheduler, job_id, submitted_at, state, reason, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (sweep_id, trial, job_id) DO UPDATE SET state = excluded.state, reason = excluded.reason,
             updated_at = excluded.updated_at
         WHERE excluded.updated_at >= sweep_jobs.updated_at",
        &[
            &sweep_id,
            &(job.trial as i64),
            &job.scheduler,
            &job.job_id,
            &job.submitted_at,
            &job.state,
            &job.reason,
            &job.updated_at,
        ],
    )?;
    Ok(())
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

/// The rows a record's files and data entities make: (sha256, kind, size, role, path), in
/// digest order so that concurrent runs lock them in one order.
fn file_rows(record: &RunRecord) -> Vec<(String, String, Option<i64>, String, String)> {
    let mut files = Vec::new();
    for file in &record.source_files {
        let path = file.path.display().to_string();
        files.push((file.sha256.clone(), "raw".into(), Some(file.size as i64), file.kind.to_string(), path));
    }
    if !record.data.dataset_sha256.is_empty() {
        files.push((record.data.dataset_sha256.clone(), "dataset".into(), None, "dataset".into(), String::new()));
    }
    for transform in &record.data.transforms {
        for output in &transform.outputs {
            files.push((output.sha256.clone(), "split".into(), None, output.label.clone(), String::new()));
        }
    }
    for file in &record.artifacts {
        let kind = file.kind.to_string();
        files.push((file.sha256.clone(), kind.clone(), Some(file.size as i64), kind, file.path.display().to_string()));
    }
    files.sort();
    files
}

/// The metric rows a record makes: per-epoch values, then the final metrics flattened
/// (scalars as numbers, structured values kept whole as JSON).
type MetricRows = (Vec<String>, Vec<Option<i64>>, Vec<Option<f64>>, Vec<Option<String>>);

fn metric_rows(record: &RunRecord) -> MetricRows {
    let (mut names, mut steps, mut values, mut json) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (epoch, epoch_values) in &record.history {
        for (name, value) in epoch_values {
            names.push(name.clone());
            steps.push(Some(*epoch as i64));
            values.push(crate::queryable(*value));
            json.push(None);
        }
    }
    if let Some(metrics) = &record.metrics {
        for (name, value) in flatten(metrics) {
            names.push(name);
            steps.push(None);
            values.push(value.as_f64().and_then(crate::queryable));
            json.push(if value.is_number() { None } else { Some(value.to_string()) });
        }
    }
    (names, steps, values, json)
}

/// Writes what a run has produced so far (status, stages, files, lineage, metrics) in one
/// statement: each part its own data-modifying query over unnested arrays, the replaced parts
/// (lineage, metrics) deleted and written again in the same statement.
fn write_record(
    transaction: &mut impl GenericClient,
    statements: &Statements,
    record: &RunRecord,
    before: &Written,
) -> Call<Written> {
    let run = &record.run_id;
    let finished = record.status != RunStatus::Running;
    let stages = &record.stages;
    let mut written = Written {
        known: true,
        files: before.files.clone(),
        edges: Vec::new(),
        metrics: Vec::new(),
        live_metrics: false,
    };
    let files: Vec<_> = file_rows(record)
        .into_iter()
        .filter(|f| written.files.insert((f.0.clone(), f.3.clone(), f.4.clone())))
        .collect();
    let mut digests: Vec<&(String, String, Option<i64>, String, String)> = files.iter().collect();
    digests.dedup_by(|a, b| a.0 == b.0);
    let edges = record::lineage(record);
    written.edges = edges.iter().map(|e| hashed(&(e.relation.as_str(), &e.subject, &e.object, &e.activity))).collect();
    let (replace_edges, old_edges) = if before.known { delta(&before.edges, &written.edges) } else { (true, 0) };
    let edges = &edges[old_edges..];
    let (mut names, mut steps, mut values, mut json) = metric_rows(record);
    written.metrics =
        (0..names.len()).map(|i| hashed(&(&names[i], steps[i], values[i].map(f64::to_bits), &json[i]))).collect();
    let (replace_metrics, old_metrics) =
        if !before.known || before.live_metrics { (true, 0) } else { delta(&before.metrics, &written.metrics) };
    names.drain(..old_metrics);
    steps.drain(..old_metrics);
    values.drain(..old_metrics);
    json.drain(..old_metrics);
    let write = statements.get(
        transaction,
        "WITH run AS (
             UPDATE runs SET status = $2, finished_at = $3, heartbeat_at = $4, error = $5, failed_stage = $6, summary_json = $7
             WHERE run_id = $1
         ),
         stages AS (
             INSERT INTO stages (run_id, name, status, seconds, parameters_json, cache_hit, cache_key, reused_from)
             SELECT $1, name, status, seconds, parameters, hit, key, (SELECT run_id FROM runs WHERE run_id = reused)
             FROM UNNEST($8::text[], $9::text[], $10::float8[], $11::text[], $12::bool[], $13::text[], $14::text[])
                  AS stage (name, status, seconds, parameters, hit, key, reused)
             ON CONFLICT (run_id, name) DO UPDATE SET status = excluded.status, seconds = excluded.seconds,
                 parameters_json = excluded.parameters_json, cache_hit = excluded.cache_hit, cache_key = excluded.cache_key,
                 reused_from = excluded.reused_from
         ),
         digests AS (
             INSERT INTO artifacts (sha256, kind, size) SELECT * FROM UNNEST($15::text[], $16::text[], $17::int8[])
             ON CONFLICT (sha256) DO NOTHING
         ),
         files AS (
             INSERT INTO run_artifacts (run_id, sha256, role, path) SELECT $1, * FROM UNNEST($18::text[], $19::text[], $20::text[])
             ON CONFLICT (run_id, role, path, sha256) DO NOTHING
         ),
         old_edges AS (DELETE FROM lineage_edges WHERE run_id = $1 AND $30),
         edges AS (
             INSERT INTO lineage_edges (run_id, relation, subject, object, activity, parameters_json)
             SELECT $1, relation, subject, object, activity, parameters
             FROM UNNEST($21::text[], $22::text[], $23::text[], $24::text[], $25::text[])
                  WITH ORDINALITY AS edge (relation, subject, object, activity, parameters, position)
             ORDER BY position
         ),
         old_metrics AS (DELETE FROM metrics WHERE run_id = $1 AND $31)
         INSERT INTO metrics (run_id, name, step, value, value_json)
         SELECT $1, name, step, value, value_json
         FROM UNNEST($26::text[], $27::int8[], $28::float8[], $29::text[]) WITH ORDINALITY AS m (name, step, value, value_json, position)
         ORDER BY position",
    )?;
    transaction.execute(
        &write,
        &[
            run,
            &record.status.as_str(),
            &if finished { record.finished_at.clone() } else { None },
            &record::now_rfc3339(),
            &record.error,
            &record.failed_stage.map(|s| s.as_str()),
            &serde_json::to_string(record)?,
            &stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            &stages.iter().map(|s| s.status.as_str()).collect::<Vec<_>>(),
            &stages.iter().map(|s| s.seconds).collect::<Vec<_>>(),
            &stages.iter().map(|s| s.parameters.to_string()).collect::<Vec<_>>(),
            &stages.iter().map(|s| s.reused_from.is_some()).collect::<Vec<_>>(),
            &stages.iter().map(|s| s.cache_key.clone()).collect::<Vec<_>>(),
            &stages.iter().map(|s| s.reused_from.clone()).collect::<Vec<_>>(),
            &digests.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
            &digests.iter().map(|f| f.1.as_str()).collect::<Vec<_>>(),
            &digests.iter().map(|f| f.2).collect::<Vec<_>>(),
            &files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
            &files.iter().map(|f| f.3.as_str()).collect::<Vec<_>>(),
            &files.iter().map(|f| f.4.as_str()).collect::<Vec<_>>(),
            &edges.iter().map(|e| e.relation.as_str()).collect::<Vec<_>>(),
            &edges.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(),
            &edges.iter().map(|e| e.object.as_str()).collect::<Vec<_>>(),
            &edges.iter().map(|e| e.activity.as_deref()).collect::<Vec<_>>(),
            &edges.iter().map(|e| e.parameters.as_ref().map(Value::to_string)).collect::<Vec<_>>(),
            &names,
            &steps,
            &values,
            &json,
            &replace_edges,
            &replace_metrics,
        ],
    )?;
    Ok(written)
}

impl crate::Store for PostgresStore {
    fn locator(&self) -> &Locator {
        &self.locator
    }

    fn begin_run(&self, record: &RunRecord) -> Result<()> {
        // One statement: atomic by itself, no transaction round trips.
        timed_write(|| {
            self.run(self.context(&format!("recording the start of run {}", record.run_id)), |client| {
                insert_run(client, &self.statements, record)
            })
        })?;
        self.written.borrow_mut().insert(record.run_id.clone(), Written::begun());
        Ok(())
    }

    fn record(&self, record: &RunRecord) -> Result<()> {
        let what = self.context(&format!("recording run {}", record.run_id));
        let fresh = Written::fresh();
        let before = self.written.borrow_mut().remove(&record.run_id).unwrap_or_else(Written::fresh);
        // A retried write (its first try may have committed before the connection went)
        // replaces everything rather than appending again.
        let tries = std::cell::Cell::new(0);
        let basis = || {
            tries.set(tries.get() + 1);
            if tries.get() == 1 { &before } else { &fresh }
        };
        let written = if crate::failpoint::armed_at("store.record") {
            // The fault tests stop inside the write: it is then a transaction to stop in.
            let mut written = None;
            self.write(what, |transaction| {
                written = Some(write_record(transaction, &self.statements, record, basis())?);
                crate::failpoint::pause("store.record");
                Ok(())
            })?;
            written.unwrap_or_default()
        } else {
            // One statement: atomic by itself, no transaction round trips.
            timed_write(|| self.run(what, |client| write_record(client, &self.statements, record, basis())))?
        };
        if record.status == RunStatus::Running {
            self.written.borrow_mut().insert(record.run_id.clone(), written);
        }
        Ok(())
    }

    fn heartbeat(&self, run_id: &str) -> Result<()> {
        timed_write(|| {
            self.run(self.context(&format!("recording the heartbeat of run {run_id}")), |client| {
                let update = self.statements.get(client, "UPDATE runs SET heartbeat_at = $2 WHERE run_id = $1")?;
                client.execute(&update, &[&run_id, &record::now_rfc3339()])?;
                Ok(())
            })
        })
    }

    fn live_metrics(&self, run_id: &str, metrics: &[(String, u64, f64)]) -> Result<()> {
        if let Some(written) = self.written.borrow_mut().get_mut(run_id) {
            written.live_metrics = true;
        }
        timed_write(|| {
            self.run(self.context(&format!("recording the live metrics of run {run_id}")), |client| {
                let insert = self.statements.get(
                    client,
                    "INSERT INTO metrics (run_id, name, step, value)
                     SELECT $1, name, step, value FROM UNNEST($2::text[], $3::int8[], $4::float8[])
                          WITH ORDINALITY AS m (name, step, value, position)
                     ORDER BY position",
                )?;
                client.execute(
                    &insert,
                    &[
                        &run_id,
                        &metrics.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
                        &metrics.iter().map(|m| m.1 as i64).collect::<Vec<_>>(),
                        &metrics.iter().map(|m| crate::queryable(m.2)).collect::<Vec<_>>(),
                    ],
                )?;
                Ok(())
            })
        })
    }

    fn import_runs(&self, runs: &[RunRecord]) -> Result<()> {
        self.write(self.context(&format!("importing {} runs", runs.len())), |transaction| {
            for record in runs {
                insert_run(transaction, &self.statements, record)?;
                write_record(transaction, &self.statements, record, &Written::fresh())?;
            }
            Ok(())
        })
    }

    fn cached_stages(&self, stage: StageName, key: &str) -> Result<Vec<CachedStage>> {
        self.run(self.context(&format!("looking up the stage cache for {stage}")), |client| {
            queries::cached_stages(client, stage, key)
        })
    }

    fn run_exists(&self, run_id: &str) -> Result<bool> {
        self.run(self.context(&format!("looking up run {run_id}")), |client| {
            Ok(client.query_opt("SELECT 1 FROM runs WHERE run_id = $1", &[&run_id])?.is_some())
        })
    }

    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>> {
        self.run(self.context("listing runs"), |client| queries::list_runs(client, filter))
    }

    fn plugin_builds(&self) -> Result<Vec<crate::PluginBuild>> {
        self.run(self.context("listing plugin builds"), queries::plugin_builds)
    }

    fn read_view(&self, view: &str, run_id: &str) -> Result<crate::ViewRows> {
        let sql = crate::read_view_sql(view, "$1")?;
        self.run(self.context(&format!("reading {view}")), |client| queries::read_view(client, &sql, run_id))
    }

    fn query_runs(&self, query: &crate::RunQuery) -> Result<crate::RunPage> {
        self.run(self.context("querying runs"), |client| queries::query_runs(client, query))
    }

    fn annotate(&self, run_id: &str, annotation: &crate::Annotation) -> Result<()> {
        self.require(run_id)?;
        self.write(self.context(&format!("annotating run {run_id}")), |transaction| {
            queries::annotate(transaction, run_id, annotation)
        })
    }

    fn annotations(&self, run_id: &str) -> Result<Vec<crate::Annotation>> {
        self.run(self.context(&format!("reading the annotations of run {run_id}")), |client| {
            queries::annotations(client, run_id)
        })
    }

    fn record_verification(&self, run_id: &str, verification: &crate::Verification) -> Result<()> {
        self.require(run_id)?;
        self.write(self.context(&format!("recording the verification of run {run_id}")), |transaction| {
            queries::record_verification(transaction, run_id, verification)
        })
    }

    fn verifications(&self, run_id: &str) -> Result<Vec<crate::Verification>> {
        self.run(self.context(&format!("reading the verifications of run {run_id}")), |client| {
            queries::verifications(client, run_id)
        })
    }

    fn run_record(&self, run_id: &str) -> Result<RunRecord> {
        self.require(run_id)?;
        self.run(self.context(&format!("reading the record of run {run_id}")), |client| {
            queries::run_record(client, run_id)
        })
    }

    fn run_status(&self, run_id: &str) -> Result<RunStatus> {
        self.require(run_id)?;
        self.run(self.context(&format!("reading the status of run {run_id}")), |client| {
            let status: String = client.query_one("SELECT status FROM runs WHERE run_id = $1", &[&run_id])?.get(0);
            Ok(queries::parsed(&status)?)
        })
    }

    fn recorded_files(&self, run_id: &str) -> Result<Vec<RecordedFile>> {
        self.require(run_id)?;
        self.run(self.context(&format!("reading the files of run {run_id}")), |client| {
            queries::recorded_files(client, run_id)
        })
    }

    fn parameters(&self, run_id: &str) -> Result<BTreeMap<String, Value>> {
        self.require(run_id)?;
        self.run(self.context(&format!("reading the parameters of run {run_id}")), |client| {
            let mut parameters = BTreeMap::new();
            for row in client.query("SELECT name, value_json FROM parameters WHERE run_id = $1", &[&run_id])? {
                parameters.insert(row.get::<_, String>(0), serde_json::from_str(row.get::<_, &str>(1))?);
            }
            Ok(parameters)
        })
    }

    fn final_metrics(&self, run_id: &str) -> Result<BTreeMap<String, f64>> {
        self.run(self.context(&format!("reading the metrics of run {run_id}")), |client| {
            let rows = client.query(
                "SELECT name, value FROM metrics WHERE run_id = $1 AND step IS NULL AND value IS NOT NULL",
                &[&run_id],
            )?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
    }

    fn step_metrics(&self, run_id: &str, after_step: i64) -> Result<Vec<StepMetric>> {
        self.run(self.context(&format!("reading the per-epoch metrics of run {run_id}")), |client| {
            let rows = client.query(
                "SELECT step, name, value FROM metrics WHERE run_id = $1 AND step > $2 AND value IS NOT NULL ORDER BY step, id",
                &[&run_id, &after_step],
            )?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))).collect())
        })
    }

    fn metric_curve(&self, run_id: &str, name: &str) -> Result<Vec<(i64, f64)>> {
        self.run(self.context(&format!("reading metric {name} of run {run_id}")), |client| {
            let rows = client.query(
                "SELECT step, value FROM metrics WHERE run_id = $1 AND name = $2 AND step IS NOT NULL AND value IS NOT NULL ORDER BY step",
                &[&run_id, &name],
            )?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
    }

    fn lineage_edges(&self, run_id: &str) -> Result<Vec<Edge>> {
        self.run(self.context(&format!("reading the lineage of run {run_id}")), |client| {
            queries::lineage_edges(client, run_id)
        })
    }

    fn derived(
        &self,
        entities: &[String],
        direction: Direction,
        run: Option<&str>,
    ) -> Result<Vec<(String, String, Option<String>)>> {
        self.run(self.context(&format!("walking the lineage of {} entities", entities.len())), |client| {
            let query = match direction {
                Direction::Ancestors => {
                    "SELECT DISTINCT subject, object, activity FROM lineage_edges
                     WHERE relation = 'wasDerivedFrom' AND subject = ANY($1) AND ($2::text IS NULL OR run_id = $2)
                     ORDER BY object, subject, activity"
                }
                Direction::Descendants => {
                    "SELECT DISTINCT object, subject, activity FROM lineage_edges
                     WHERE relation = 'wasDerivedFrom' AND object = ANY($1) AND ($2::text IS NULL OR run_id = $2)
                     ORDER BY subject, object, activity"
                }
            };
            let statement = self.statements.get(client, query)?;
            Ok(client
                .query(&statement, &[&entities, &run])?
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect())
        })
    }

    fn describe_entities(&self, sha256s: &[String]) -> Result<BTreeMap<String, (String, String)>> {
        self.run(self.context(&format!("describing {} entities", sha256s.len())), |client| {
            let statement = self.statements.get(
                client,
                "SELECT a.sha256, a.kind, first.role, first.path FROM artifacts a
                 LEFT JOIN LATERAL (SELECT role, path FROM run_artifacts ra WHERE ra.sha256 = a.sha256 LIMIT 1) first ON TRUE
                 WHERE a.sha256 = ANY($1)",
            )?;
            let mut described = BTreeMap::new();
            for row in client.query(&statement, &[&sha256s])? {
                let (role, path): (Option<String>, Option<String>) = (row.get(2), row.get(3));
                let (role, path) = (role.unwrap_or_default(), path.unwrap_or_default());
                let label = if path.is_empty() { role } else { format!("{role} {path}") };
                described.insert(row.get(0), (row.get(1), label));
            }
            Ok(described)
        })
    }

    fn runs_using(&self, sha256: &str, limit: usize) -> Result<(Vec<String>, usize)> {
        self.run(self.context(&format!("finding the runs that used {sha256}")), |client| {
            let union = "SELECT run_id FROM run_artifacts WHERE sha256 = $1 UNION SELECT run_id FROM run_plugins WHERE library_sha256 = $1";
            let total: i64 = client.query_one(&format!("SELECT COUNT(*) FROM ({union}) AS used"), &[&sha256])?.get(0);
            let limit = if limit == 0 { i64::MAX } else { limit as i64 };
            let runs = client.query(&format!("{union} ORDER BY 1 LIMIT $2"), &[&sha256, &limit])?;
            Ok((runs.iter().map(|row| row.get(0)).collect(), total as usize))
        })
    }

    fn run_entities(&self, run_id: &str) -> Result<Vec<(String, String)>> {
        self.run(self.context(&format!("reading the entities of run {run_id}")), |client| {
            let rows = client.query(
                "SELECT DISTINCT a.kind, ra.sha256 FROM run_artifacts ra JOIN artifacts a ON a.sha256 = ra.sha256 WHERE ra.run_id = $1",
                &[&run_id],
            )?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
    }

    fn expand_sha256(&self, prefix: &str) -> Result<Vec<String>> {
        self.run(self.context(&format!("looking up SHA-256 {prefix}")), |client| {
            // A range on the primary keys (C collation: digests are lowercase hex, all below
            // '~'), not LIKE.
            let rows = client.query(
                "SELECT sha256 FROM artifacts WHERE sha256 >= $1 AND sha256 < $1 || '~'
                 UNION SELECT sha256 FROM plugin_libraries WHERE sha256 >= $1 AND sha256 < $1 || '~'",
                &[&prefix.to_ascii_lowercase()],
            )?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
    }

    fn summary(&self) -> Result<Summary> {
        self.run(self.context("summarising"), queries::summary)
    }

    fn begin_sweep(&self, sweep: &SweepStart) -> Result<()> {
        self.write(self.context(&format!("recording sweep {}", sweep.sweep_id)), |transaction| {
            transaction.execute(
                "INSERT INTO sweeps (sweep_id, name, config_json, metric, maximize, created_at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (sweep_id) DO NOTHING",
                &[&sweep.sweep_id, &sweep.name, &sweep.config.to_string(), &sweep.metric, &sweep.maximize, &record::now_rfc3339()],
            )?;
            Ok(())
        })
    }

    fn trial_started(&self, sweep_id: &str, trial: usize, parameters: &Value) -> Result<()> {
        self.write(self.context(&format!("recording the start of trial {trial} of sweep {sweep_id}")), |transaction| {
            transaction.execute(
                "INSERT INTO sweep_trials (sweep_id, trial, parameters_json, run_id, status, metric)
                 VALUES ($1, $2, $3, NULL, 'running', NULL)
                 ON CONFLICT (sweep_id, trial) DO UPDATE SET parameters_json = excluded.parameters_json, run_id = NULL,
                     status = 'running', metric = NULL",
                &[&sweep_id, &(trial as i64), &parameters.to_string()],
            )?;
            Ok(())
        })
    }

    fn trial_ended(&self, sweep_id: &str, trial: usize, status: TrialStatus, metric: Option<f64>) -> Result<()> {
        self.write(self.context(&format!("recording the end of trial {trial} of sweep {sweep_id}")), |transaction| {
            transaction.execute(
                "UPDATE sweep_trials SET status = $3, metric = $4 WHERE sweep_id = $1 AND trial = $2",
                &[&sweep_id, &(trial as i64), &status.as_str(), &metric],
            )?;
            Ok(())
        })
    }

    fn sweep(&self, sweep_id: &str) -> Result<SweepRow> {
        self.run(self.context(&format!("reading sweep {sweep_id}")), |client| queries::sweep(client, sweep_id))?
            .ok_or_else(|| {
                anyhow::anyhow!("no sweep {sweep_id} in {}; `host sweep show` lists the sweeps", self.locator)
            })
    }

    fn sweep_ids(&self) -> Result<Vec<String>> {
        self.run(self.context("listing sweeps"), |client| {
            let rows = client.query("SELECT sweep_id FROM sweeps ORDER BY created_at DESC, sweep_id", &[])?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
    }

    fn import_sweep(&self, sweep: &SweepRow) -> Result<()> {
        self.write(self.context(&format!("importing sweep {}", sweep.sweep_id)), |transaction| {
            transaction.execute(
                "INSERT INTO sweeps (sweep_id, name, config_json, metric, maximize, created_at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (sweep_id) DO NOTHING",
                &[&sweep.sweep_id, &sweep.name, &sweep.config.to_string(), &sweep.metric, &sweep.maximize, &sweep.created_at],
            )?;
            for trial in &sweep.trials {
                transaction.execute(
                    "INSERT INTO sweep_trials (sweep_id, trial, parameters_json, run_id, status, metric)
                     VALUES ($1, $2, $3, (SELECT run_id FROM runs WHERE run_id = $4), $5, $6)
                     ON CONFLICT (sweep_id, trial) DO UPDATE SET parameters_json = excluded.parameters_json,
                         run_id = excluded.run_id, status = excluded.status, metric = excluded.metric
                     WHERE excluded.status IN ('completed', 'pruned') AND sweep_trials.status <> 'pruned'
                         AND COALESCE((SELECT r.status FROM runs r WHERE r.run_id = sweep_trials.run_id), sweep_trials.status)
                             <> 'completed'",
                    &[
                        &sweep.sweep_id,
                        &(trial.trial as i64),
                        &trial.parameters.to_string(),
                        &trial.run_id,
                        &trial.status.as_str(),
                        &trial.metric,
                    ],
                )?;
                if let Some(job) = &trial.job {
                    insert_job(transaction, &sweep.sweep_id, job)?;
                }
            }
            Ok(())
        })
    }

    fn running_runs(&self) -> Result<Vec<RunningRun>> {
        self.run(self.context("listing running runs"), queries::running_runs)
    }

    fn settle_run(&self, run_id: &str, status: RunStatus, reason: &str, from: &[RunStatus]) -> Result<bool> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let mut changed = 0;
        self.write(self.context(&format!("recording how run {run_id} ended")), |transaction| {
            changed = transaction.execute(
                "UPDATE runs SET status = $2, error = $3, finished_at = COALESCE(finished_at, $4)
                 WHERE run_id = $1 AND status = ANY($5)",
                &[&run_id, &status.as_str(), &reason, &record::now_rfc3339(), &from],
            )?;
            Ok(())
        })?;
        Ok(changed > 0)
    }

    fn delete_run(&self, run_id: &str) -> Result<DeletedRun> {
        self.require(run_id)?;
        let mut deleted = None;
        self.write(self.context(&format!("deleting run {run_id}")), |transaction| {
            deleted = Some(queries::delete_run(transaction, run_id)?);
            Ok(())
        })?;
        deleted.context("the delete returned nothing")
    }

    fn job_submitted(&self, sweep_id: &str, job: &SweepJob) -> Result<()> {
        self.write(self.context(&format!("recording job {} of sweep {sweep_id}", job.job_id)), |transaction| {
            insert_job(transaction, sweep_id, job)
        })
    }

    fn lease_sweep(
        &self,
        sweep_id: &str,
        owner: &record::RunOwner,
        expired: Option<&str>,
    ) -> Result<Option<SweepDriver>> {
        let me = serde_json::to_string(owner)?;
        let mut holder = None;
        self.write(self.context(&format!("leasing sweep {sweep_id}")), |transaction| {
            let granted = transaction.execute(
                "UPDATE sweeps SET driver_json = $2, driver_heartbeat = $3
                 WHERE sweep_id = $1 AND (driver_json IS NULL OR driver_json = $2 OR driver_heartbeat = $4)",
                &[&sweep_id, &me, &record::now_rfc3339(), &expired],
            )?;
            holder = None;
            if granted == 0 {
                let row = transaction
                    .query_opt("SELECT driver_json, driver_heartbeat FROM sweeps WHERE sweep_id = $1", &[&sweep_id])?;
                match row.map(|r| (r.get::<_, Option<String>>(0), r.get::<_, Option<String>>(1))) {
                    Some((Some(owner), Some(heartbeat_at))) => {
                        let owner = serde_json::from_str(&owner).map_err(anyhow::Error::from)?;
                        holder = Some(SweepDriver { owner, heartbeat_at });
                    }
                    _ => return Err(anyhow::anyhow!("no sweep {sweep_id} to lease").into()),
                }
            }
            Ok(())
        })?;
        Ok(holder)
    }

    fn release_sweep(&self, sweep_id: &str, owner: &record::RunOwner) -> Result<()> {
        let me = serde_json::to_string(owner)?;
        self.write(self.context(&format!("releasing sweep {sweep_id}")), |transaction| {
            transaction.execute(
                "UPDATE sweeps SET driver_json = NULL, driver_heartbeat = NULL WHERE sweep_id = $1 AND driver_json = $2",
                &[&sweep_id, &me],
            )?;
            Ok(())
        })
    }

    fn job_state(&self, sweep_id: &str, trial: usize, job_id: &str, state: &str, reason: Option<&str>) -> Result<()> {
        self.write(self.context(&format!("recording the state of job {job_id} of sweep {sweep_id}")), |transaction| {
            transaction.execute(
                "UPDATE sweep_jobs SET state = $4, reason = $5, updated_at = $6 WHERE sweep_id = $1 AND trial = $2 AND job_id = $3",
                &[&sweep_id, &(trial as i64), &job_id, &state, &reason, &record::now_rfc3339()],
            )?;
            Ok(())
        })
    }

    fn info(&self) -> Result<StoreInfo> {
        self.run(self.context("reading the store's schema and counts"), |client| {
            let (schema_version, compatible_from) = Self::versions(client)?.unwrap_or((0, 0));
            let sweeps: i64 = client.query_one("SELECT COUNT(*) FROM sweeps", &[])?.get(0);
            Ok(StoreInfo {
                backend: "postgres",
                locator: self.locator.to_string(),
                schema_version,
                compatible_from,
                host_schema_version: migration::known(schema::MIGRATIONS),
                sweeps,
                summary: queries::summary(client)?,
            })
        })
    }
}

#[cfg(test)]
mod conformance {
    use crate::conformance::conformance_suite;
    use crate::testing::Cluster;

    fn open() -> (Box<dyn crate::Store>, ()) {
        let url = Cluster::shared().create_database().unwrap();
        let locator = crate::Locator::parse(&url).unwrap();
        (crate::open(&locator, &crate::OpenOptions::default()).unwrap(), ())
    }

    conformance_suite!(open());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::testing::{Cluster, ClusterOptions};
    use crate::{Locator, OpenOptions};

    fn open(url: &str, options: &OpenOptions) -> anyhow::Result<Box<dyn crate::Store>> {
        crate::open(&Locator::parse(url)?, options)
    }

    fn error(url: &str) -> String {
        let options = OpenOptions { connect_timeout: Duration::from_secs(2), ..OpenOptions::default() };
        format!("{:#}", open(url, &options).err().expect("the open should fail"))
    }

    #[test]
    fn an_unreachable_server_a_missing_database_and_an_unknown_scheme_are_one_clear_line() {
        let cluster = Cluster::shared();
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let refused = error(&format!("postgres://postgres@127.0.0.1:{free}/x"));
        assert_eq!(
            refused,
            format!(
                "cannot reach PostgreSQL at 127.0.0.1:{free}: connection refused; is the server running and listening there?"
            )
        );
        // A port that accepts connections and never answers: given up after the timeout.
        let silent_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent_port.local_addr().unwrap().port();
        let started = std::time::Instant::now();
        let silent = error(&format!("postgres://postgres@127.0.0.1:{port}/x"));
        assert!(silent.contains(&format!("127.0.0.1:{port}")) && silent.contains("within 2 s"), "{silent}");
        assert!(started.elapsed() < Duration::from_secs(10), "gave up after the connect timeout");
        let missing = error(&cluster.url("no_such_database"));
        assert!(
            missing.starts_with(&format!(
                "database no_such_database does not exist on PostgreSQL at 127.0.0.1:{}; create it",
                cluster.port()
            )),
            "{missing}"
        );
        assert!(error("mysql://h/db").starts_with("unknown store URL scheme `mysql`"));
    }

    #[test]
    fn a_password_is_required_checked_and_never_shown() {
        let cluster =
            Cluster::start(ClusterOptions { password: Some("s3cret".into()), ..ClusterOptions::default() }).unwrap();
        let url = cluster.url("postgres");
        let wrong = error(&url.replace("postgres@", "postgres:wrong@"));
        assert!(wrong.contains("refused user postgres") && wrong.contains("check the password"), "{wrong}");
        assert!(!wrong.contains("wrong"), "the password is not shown: {wrong}");
        let store = open(&url.replace("postgres@", "postgres:s3cret@"), &OpenOptions::default()).unwrap();
        assert!(!store.locator().to_string().contains("s3cret"));
        assert_eq!(store.locator().password(), Some("s3cret"));
        assert!(!format!("{:?}", store.locator()).contains("s3cret"));
    }

    #[test]
    fn tls_is_used_where_the_server_asks_for_it() {
        let cluster = Cluster::start(ClusterOptions { ssl: true, ..ClusterOptions::default() }).unwrap();
        let url = cluster.url("postgres");
        assert!(url.ends_with("?sslmode=require"));
        let store = open(&url, &OpenOptions::default()).unwrap();
        assert_eq!(store.info().unwrap().backend, "postgres");
        let plain = error(&url.replace("?sslmode=require", "?sslmode=disable"));
        assert!(plain.contains("add ?sslmode=require to the URL"), "{plain}");
    }

    #[test]
    fn many_hosts_opening_a_new_store_at_once_migrate_it_once() {
        let url = Cluster::shared().create_database().unwrap();
        let opened: Vec<_> = (0..12)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || {
                    open(&url, &OpenOptions::default()).map(|s| s.info().unwrap().schema_version)
                })
            })
            .collect();
        for handle in opened {
            assert_eq!(handle.join().unwrap().unwrap(), crate::migration::known(super::schema::MIGRATIONS));
        }
    }

    #[test]
    fn a_newer_schema_is_used_when_additive_and_refused_otherwise() {
        let cluster = Cluster::shared();
        let url = cluster.create_database().unwrap();
        drop(open(&url, &OpenOptions::default()).unwrap());
        let database = url.rsplit('/').next().unwrap();
        let known = crate::migration::known(super::schema::MIGRATIONS);
        cluster.execute(database, &format!("UPDATE schema_version SET version = {}", known + 2)).unwrap();
        assert_eq!(open(&url, &OpenOptions::default()).unwrap().info().unwrap().schema_version, known + 2);
        cluster.execute(database, &format!("UPDATE schema_version SET compatible_from = {}", known + 1)).unwrap();
        let refused = error(&url);
        assert!(refused.contains(&format!("needs a host that knows schema {} or later", known + 1)), "{refused}");
    }

    #[test]
    fn all_connections_taken_is_one_clear_line() {
        let cluster = Cluster::start(ClusterOptions { max_connections: 4, ..ClusterOptions::default() }).unwrap();
        let url = cluster.url("postgres");
        // Three superuser slots are reserved; take what is left.
        let mut held = Vec::new();
        let message = loop {
            match open(&url, &OpenOptions::default()) {
                Ok(store) => held.push(store),
                Err(error) => break format!("{error:#}"),
            }
            assert!(held.len() < 10, "max_connections never ran out");
        };
        assert!(
            message.contains("has no free connection") || message.contains("remaining connection slots"),
            "{message}"
        );
    }

    /// The server restarts in the middle of a run's writes: the writes wait and go through once
    /// it is back, and nothing committed before is lost.
    #[test]
    fn writes_retry_through_a_server_restart() {
        let mut cluster = Cluster::start(ClusterOptions::default()).unwrap();
        let url = cluster.create_database().unwrap();
        let store = open(&url, &OpenOptions { retry_for: Duration::from_secs(30), ..OpenOptions::default() }).unwrap();
        let record = crate::conformance::started("r1", "e", "2026-01-01T00:00:00Z");
        store.begin_run(&record).unwrap();
        cluster.stop_server();
        let done = crate::conformance::completed(record.clone(), 0.5);
        let expected = done.clone();
        // The server is started again from this thread (it dies with the thread that starts it).
        let writer = std::thread::spawn(move || store.record(&done).map(|()| store));
        std::thread::sleep(Duration::from_millis(1500));
        cluster.start_server().unwrap();
        let store = writer.join().unwrap().unwrap();
        assert_eq!(store.run_record("r1").unwrap(), expected);
        // And with the server gone for longer than the retry time, one clear line.
        let done = expected;
        let store = open(&url, &OpenOptions { retry_for: Duration::from_secs(1), ..OpenOptions::default() }).unwrap();
        cluster.stop_server();
        let error = format!("{:#}", store.record(&done).unwrap_err());
        assert!(error.contains("gave up after retrying for 1 s") && error.contains("recording run r1"), "{error}");
        // The outage goes on: later calls fail at once instead of waiting out the retry time
        // again (a run writing every epoch would otherwise crawl).
        let started = std::time::Instant::now();
        assert!(store.heartbeat("r1").is_err());
        assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
    }
}
