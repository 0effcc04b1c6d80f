//! The SQLite backend's reads (and the delete): plain functions over a connection, each
//! answering one of the interface's questions.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use record::{Edge, RunRecord, RunStatus, StageName, TrialStatus};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use record::RunOwner;

use crate::query::sql::{self, Bind, Dialect, Shape};
use crate::{
    Annotation, AnnotationKind, CachedStage, DeletedRun, Direction, PluginBuild, RecordedFile, Result, RunFilter,
    RunPage, RunQuery, RunRow, RunningRun, StepMetric, Summary, SweepJob, SweepRow, TrialRow, Verification,
};

/// Reads a status column written by this crate.
fn parsed<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T> {
    text.parse().map_err(anyhow::Error::msg)
}

pub fn run_exists(connection: &Connection, run_id: &str) -> Result<bool> {
    Ok(connection.query_row("SELECT 1 FROM runs WHERE run_id = ?1", [run_id], |_| Ok(())).optional()?.is_some())
}

pub fn list_runs(connection: &Connection, filter: &RunFilter) -> Result<Vec<RunRow>> {
    // Each filter only when given, so SQLite can walk the matching index newest first
    // instead of scanning every run.
    let mut filters = Vec::new();
    if filter.experiment.is_some() {
        filters.push("r.experiment_id = (SELECT id FROM experiments WHERE name = ?1)");
    }
    if filter.status.is_some() {
        filters.push("r.status = ?2");
    }
    let condition = if filters.is_empty() { String::new() } else { format!("WHERE {}", filters.join(" AND ")) };
    let mut statement = connection.prepare(&format!(
        "SELECT r.run_id, e.name, r.status, r.started_at, r.finished_at, r.config_sha256,
                (SELECT value FROM metrics m WHERE m.run_id = r.run_id AND m.name = 'test.accuracy' AND m.step IS NULL),
                (SELECT value FROM metrics m WHERE m.run_id = r.run_id AND m.name = 'test.r2' AND m.step IS NULL)
         FROM runs r JOIN experiments e ON e.id = r.experiment_id
         {condition}
         ORDER BY r.started_at DESC, r.run_id DESC LIMIT ?3"
    ))?;
    let status = filter.status.map(|s| s.as_str());
    let rows = statement.query_map(params![filter.experiment, status, filter.limit as i64], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
        ))
    })?;
    let mut runs = Vec::new();
    for row in rows {
        let (run_id, experiment, status, started_at, finished_at, config_sha256, test_accuracy, test_r2) = row?;
        runs.push(RunRow {
            run_id,
            experiment,
            status: parsed(&status)?,
            started_at,
            finished_at,
            config_sha256,
            test_accuracy,
            test_r2,
        });
    }
    Ok(runs)
}

pub fn cached_stages(connection: &Connection, stage: StageName, key: &str) -> Result<Vec<CachedStage>> {
    let mut statement = connection.prepare(
        "SELECT r.run_id, r.output_dir, r.summary_json FROM stages s JOIN runs r ON r.run_id = s.run_id
         WHERE s.cache_key = ?1 AND s.name = ?2 AND s.status = 'completed' AND r.summary_json IS NOT NULL
         ORDER BY r.started_at DESC, r.run_id DESC LIMIT 5",
    )?;
    let rows = statement.query_map(params![key, stage.as_str()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
    })?;
    let mut stages = Vec::new();
    for row in rows {
        let (run_id, output_dir, summary) = row?;
        match crate::read_record(&summary) {
            Ok(record) => stages.push(CachedStage { run_id, output_dir: PathBuf::from(output_dir), record }),
            // A record this host cannot read is not reused; the stage is recomputed.
            Err(error) => tracing::info!("run {run_id}'s record cannot be read for reuse: {error}"),
        }
    }
    Ok(stages)
}

/// A run's record: the record written at its last stage with the status and config columns,
/// which are the truth (a run marked interrupted changes only its status). What a record from
/// an older host lacks (its environment, git state, owner; the whole record when the host wrote
/// none at the run's start) is filled in from the run's rows.
pub fn run_record(connection: &Connection, run_id: &str) -> Result<RunRecord> {
    let mut statement = connection.prepare(
        "SELECT r.status, r.summary_json, r.config_json, e.name, r.config_file, r.config_sha256, r.seed, r.threads,
                r.output_dir, r.started_at, r.finished_at, r.git_commit, r.git_dirty, r.pid, r.hostname, r.boot_id,
                r.pid_namespace, r.error
         FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.run_id = ?1",
    )?;
    let mut rows = statement.query([run_id])?;
    let row = rows.next()?.context("the run vanished from the store")?;
    let status: String = row.get(0)?;
    let summary: Option<String> = row.get(1)?;
    let config: String = row.get(2)?;
    let mut record: RunRecord = match summary {
        Some(text) => crate::read_record(&text).context("the stored run record")?,
        None => serde_json::from_value(serde_json::json!({
            "run_id": run_id,
            "experiment_name": row.get::<_, String>(3)?,
            "status": status,
            "config_file": row.get::<_, String>(4)?,
            "config_sha256": row.get::<_, String>(5)?,
            "seed": row.get::<_, i64>(6)? as u64,
            "threads": row.get::<_, i64>(7)? as usize,
            "output_dir": row.get::<_, String>(8)?,
            "started_at": row.get::<_, String>(9)?,
            "finished_at": row.get::<_, Option<String>>(10)?,
        }))?,
    };
    record.status = parsed(&status)?;
    // A run settled after its process ended (`Store::settle_run`) has its end in the columns.
    if let Some(error) = row.get::<_, Option<String>>(17)? {
        record.error = Some(error);
    }
    if let Some(finished) = row.get::<_, Option<String>>(10)? {
        record.finished_at = Some(finished);
    }
    record.config = serde_json::from_str(&config).context("the stored config")?;
    if record.git == record::GitState::default() {
        record.git = record::GitState { commit: row.get(11)?, dirty: row.get(12)? };
    }
    if record.owner == RunOwner::default() {
        record.owner = RunOwner {
            pid: row.get::<_, i64>(13)? as u32,
            hostname: row.get(14)?,
            boot_id: row.get::<_, Option<String>>(15)?.unwrap_or_default(),
            pid_namespace: row.get::<_, Option<String>>(16)?.unwrap_or_default(),
        };
    }
    if record.environment == record::Environment::default() {
        let environment = connection
            .query_row(
                "SELECT os, arch, cpu, cores, threads, rustc FROM environments WHERE run_id = ?1",
                [run_id],
                |r| {
                    Ok(record::Environment {
                        os: r.get(0)?,
                        arch: r.get(1)?,
                        cpu: r.get(2)?,
                        cores: r.get::<_, i64>(3)? as usize,
                        threads: r.get::<_, i64>(4)? as usize,
                        rustc: r.get(5)?,
                        ..record::Environment::default()
                    })
                },
            )
            .optional()?;
        record.environment = environment.unwrap_or_default();
    }
    Ok(record)
}

pub fn run_status(connection: &Connection, run_id: &str) -> Result<RunStatus> {
    let status: String = connection.query_row("SELECT status FROM runs WHERE run_id = ?1", [run_id], |r| r.get(0))?;
    parsed(&status)
}

pub fn recorded_files(connection: &Connection, run_id: &str) -> Result<Vec<RecordedFile>> {
    let mut statement = connection.prepare(
        "SELECT 'plugin ' || rp.kind, l.path, l.sha256 FROM run_plugins rp JOIN plugin_libraries l ON l.sha256 = rp.library_sha256
         WHERE rp.run_id = ?1
         UNION ALL
         SELECT role, path, sha256 FROM run_artifacts WHERE run_id = ?1 AND path <> ''
         ORDER BY 1, 2",
    )?;
    let files = statement
        .query_map([run_id], |r| Ok(RecordedFile { role: r.get(0)?, path: r.get(1)?, sha256: r.get(2)? }))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(files)
}

pub fn parameters(connection: &Connection, run_id: &str) -> Result<BTreeMap<String, Value>> {
    let mut statement = connection.prepare("SELECT name, value_json FROM parameters WHERE run_id = ?1")?;
    let rows = statement.query_map([run_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut parameters = BTreeMap::new();
    for row in rows {
        let (name, value) = row?;
        parameters.insert(name, serde_json::from_str(&value)?);
    }
    Ok(parameters)
}

pub fn final_metrics(connection: &Connection, run_id: &str) -> Result<BTreeMap<String, f64>> {
    let mut statement = connection
        .prepare("SELECT name, value FROM metrics WHERE run_id = ?1 AND step IS NULL AND value IS NOT NULL")?;
    let rows = statement.query_map([run_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn step_metrics(connection: &Connection, run_id: &str, after_step: i64) -> Result<Vec<StepMetric>> {
    let mut statement = connection.prepare(
        "SELECT step, name, value FROM metrics WHERE run_id = ?1 AND step > ?2 AND value IS NOT NULL ORDER BY step, rowid",
    )?;
    let metrics = statement
        .query_map(params![run_id, after_step], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(metrics)
}

pub fn metric_curve(connection: &Connection, run_id: &str, name: &str) -> Result<Vec<(i64, f64)>> {
    let mut statement = connection.prepare(
        "SELECT step, value FROM metrics WHERE run_id = ?1 AND name = ?2 AND step IS NOT NULL AND value IS NOT NULL ORDER BY step",
    )?;
    Ok(statement.query_map(params![run_id, name], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?)
}

pub fn lineage_edges(connection: &Connection, run_id: &str) -> Result<Vec<Edge>> {
    let mut statement = connection.prepare(
        "SELECT relation, subject, object, activity, parameters_json FROM lineage_edges WHERE run_id = ?1 ORDER BY id",
    )?;
    let rows = statement.query_map([run_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, Option<String>>(4)?))
    })?;
    let mut edges = Vec::new();
    for row in rows {
        let (relation, subject, object, activity, parameters) = row?;
        let parameters = parameters.map(|p| serde_json::from_str(&p)).transpose()?;
        edges.push(Edge { relation: parsed(&relation)?, subject, object, activity, parameters });
    }
    Ok(edges)
}

pub fn derived(
    connection: &Connection,
    entities: &[String],
    direction: Direction,
    run: Option<&str>,
) -> Result<Vec<(String, String, Option<String>)>> {
    // The entities travel as one JSON array, unpacked by `json_each`: one query per level.
    let query = match direction {
        Direction::Ancestors => {
            "SELECT DISTINCT subject, object, activity FROM lineage_edges
             WHERE relation = 'wasDerivedFrom' AND subject IN (SELECT value FROM json_each(?1))
               AND (?2 IS NULL OR run_id = ?2)
             ORDER BY object, subject, activity"
        }
        Direction::Descendants => {
            "SELECT DISTINCT object, subject, activity FROM lineage_edges
             WHERE relation = 'wasDerivedFrom' AND object IN (SELECT value FROM json_each(?1))
               AND (?2 IS NULL OR run_id = ?2)
             ORDER BY subject, object, activity"
        }
    };
    let mut statement = connection.prepare_cached(query)?;
    let entities = serde_json::to_string(entities)?;
    Ok(statement
        .query_map(params![entities, run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?)
}

pub fn describe_entities(connection: &Connection, sha256s: &[String]) -> Result<BTreeMap<String, (String, String)>> {
    // One row per digest: its kind, and the first run's role and path for it.
    let mut statement = connection.prepare_cached(
        "SELECT a.sha256, a.kind,
                (SELECT ra.role FROM run_artifacts ra WHERE ra.sha256 = a.sha256 LIMIT 1),
                (SELECT ra.path FROM run_artifacts ra WHERE ra.sha256 = a.sha256 LIMIT 1)
         FROM artifacts a WHERE a.sha256 IN (SELECT value FROM json_each(?1))",
    )?;
    let rows = statement.query_map([serde_json::to_string(sha256s)?], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?.unwrap_or_default(),
            r.get::<_, Option<String>>(3)?.unwrap_or_default(),
        ))
    })?;
    let mut described = BTreeMap::new();
    for row in rows {
        let (sha256, kind, role, path) = row?;
        let label = if path.is_empty() { role } else { format!("{role} {path}") };
        described.insert(sha256, (kind, label));
    }
    Ok(described)
}

pub fn runs_using(connection: &Connection, sha256: &str, limit: usize) -> Result<(Vec<String>, usize)> {
    let union = "SELECT run_id FROM run_artifacts WHERE sha256 = ?1 UNION SELECT run_id FROM run_plugins WHERE library_sha256 = ?1";
    let total: i64 = connection.query_row(&format!("SELECT COUNT(*) FROM ({union})"), [sha256], |r| r.get(0))?;
    let mut statement = connection.prepare(&format!("{union} ORDER BY 1 LIMIT ?2"))?;
    let limit = if limit == 0 { -1 } else { limit as i64 };
    let runs = statement.query_map(params![sha256, limit], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok((runs, total as usize))
}

pub fn run_entities(connection: &Connection, run_id: &str) -> Result<Vec<(String, String)>> {
    let mut statement = connection.prepare(
        "SELECT DISTINCT a.kind, ra.sha256 FROM run_artifacts ra JOIN artifacts a ON a.sha256 = ra.sha256 WHERE ra.run_id = ?1",
    )?;
    Ok(statement.query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?)
}

pub fn expand_sha256(connection: &Connection, prefix: &str) -> Result<Vec<String>> {
    // A range on the primary keys (digests are lowercase hex, all below '~'), not LIKE,
    // which cannot use them.
    let mut statement = connection.prepare(
        "SELECT sha256 FROM artifacts WHERE sha256 >= ?1 AND sha256 < ?1 || '~'
         UNION SELECT sha256 FROM plugin_libraries WHERE sha256 >= ?1 AND sha256 < ?1 || '~'",
    )?;
    Ok(statement.query_map([prefix.to_ascii_lowercase()], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
}

pub fn summary(connection: &Connection) -> Result<Summary> {
    let mut statement = connection.prepare("SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status")?;
    let runs_by_status = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    let mut statement = connection.prepare(
        "SELECT e.name, COUNT(r.run_id),
                (SELECT MAX(m.value) FROM metrics m JOIN runs r2 ON r2.run_id = m.run_id
                 WHERE r2.experiment_id = e.id AND m.name = 'test.accuracy' AND m.step IS NULL)
         FROM experiments e LEFT JOIN runs r ON r.experiment_id = e.id GROUP BY e.id ORDER BY e.name",
    )?;
    let experiments =
        statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
    let count = |sql: &str| -> rusqlite::Result<i64> { connection.query_row(sql, [], |r| r.get(0)) };
    Ok(Summary {
        runs_by_status,
        experiments,
        plugin_builds: count("SELECT COUNT(*) FROM plugin_libraries")?,
        artifacts: count("SELECT COUNT(*) FROM artifacts")?,
        artifact_bytes: count("SELECT COALESCE(SUM(size), 0) FROM artifacts")?,
        lineage_edges: count("SELECT COUNT(*) FROM lineage_edges")?,
    })
}

pub fn sweep(connection: &Connection, sweep_id: &str) -> Result<Option<SweepRow>> {
    let found = connection
        .query_row(
            "SELECT name, metric, maximize, created_at, config_json FROM sweeps WHERE sweep_id = ?1",
            [sweep_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((name, metric, maximize, created_at, config)) = found else { return Ok(None) };
    let mut statement = connection.prepare(
        "SELECT t.trial, t.parameters_json, t.run_id,
                CASE WHEN t.status = 'pruned' THEN 'pruned' ELSE COALESCE(r.status, t.status) END,
                COALESCE(t.metric, (SELECT m.value FROM metrics m WHERE m.run_id = t.run_id AND m.step IS NULL
                                    AND m.name = (SELECT metric FROM sweeps WHERE sweep_id = t.sweep_id))),
                (SELECT json_group_array(run_id) FROM
                    (SELECT run_id FROM runs a WHERE a.sweep_id = t.sweep_id AND a.trial = t.trial ORDER BY started_at, run_id))
         FROM sweep_trials t LEFT JOIN runs r ON r.run_id = t.run_id WHERE t.sweep_id = ?1 ORDER BY t.trial",
    )?;
    let rows = statement.query_map([sweep_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get::<_, String>(5)?))
    })?;
    let mut jobs = sweep_jobs(connection, sweep_id)?;
    let mut trials = Vec::new();
    for row in rows {
        let (trial, parameters, run_id, status, metric, attempts): (
            i64,
            String,
            Option<String>,
            String,
            Option<f64>,
            String,
        ) = row?;
        // The run's status where the trial has a run, else the trial's own (pruned, or running
        // while its run has not begun).
        let status = match parsed::<RunStatus>(&status) {
            Ok(run) => TrialStatus::from(run),
            Err(_) => parsed::<TrialStatus>(&status)?,
        };
        // The trial's latest job.
        let job = jobs.iter().rposition(|j| j.trial == trial as usize).map(|at| jobs.remove(at));
        trials.push(TrialRow {
            trial: trial as usize,
            parameters: serde_json::from_str(&parameters)?,
            run_id,
            status,
            metric,
            attempts: serde_json::from_str(&attempts)?,
            job,
        });
    }
    let config = serde_json::from_str(&config)?;
    Ok(Some(SweepRow { sweep_id: sweep_id.to_owned(), name, config, metric, maximize, created_at, trials }))
}

/// A sweep's scheduler jobs, by trial and then in submission order.
fn sweep_jobs(connection: &Connection, sweep_id: &str) -> Result<Vec<SweepJob>> {
    let mut statement = connection.prepare(
        "SELECT trial, scheduler, job_id, submitted_at, state, reason, updated_at FROM sweep_jobs WHERE sweep_id = ?1
         ORDER BY trial, submitted_at, length(job_id), job_id",
    )?;
    let rows = statement.query_map([sweep_id], |r| {
        Ok(SweepJob {
            trial: r.get::<_, i64>(0)? as usize,
            scheduler: r.get(1)?,
            job_id: r.get(2)?,
            submitted_at: r.get(3)?,
            state: r.get(4)?,
            reason: r.get(5)?,
            updated_at: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn sweep_ids(connection: &Connection) -> Result<Vec<String>> {
    let mut statement = connection.prepare("SELECT sweep_id FROM sweeps ORDER BY created_at DESC, sweep_id")?;
    Ok(statement.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
}

pub fn running_runs(connection: &Connection) -> Result<Vec<RunningRun>> {
    let mut statement = connection.prepare(
        "SELECT run_id, pid, hostname, heartbeat_at, boot_id, pid_namespace FROM runs WHERE status = 'running'",
    )?;
    let rows = statement.query_map([], |r| {
        Ok(RunningRun {
            run_id: r.get(0)?,
            owner: RunOwner {
                pid: r.get::<_, i64>(1)? as u32,
                hostname: r.get(2)?,
                boot_id: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                pid_namespace: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
            },
            heartbeat_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn delete_run(transaction: &Connection, run_id: &str) -> Result<DeletedRun> {
    let (output_dir, status): (String, String) =
        transaction.query_row("SELECT output_dir, status FROM runs WHERE run_id = ?1", [run_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if status == RunStatus::Running.as_str() {
        anyhow::bail!("run {run_id} is still running; stop it first");
    }
    let shared: Vec<PathBuf> = {
        let mut statement = transaction.prepare(
            "SELECT DISTINCT mine.path FROM run_artifacts mine JOIN run_artifacts other
             ON other.path = mine.path AND other.run_id <> mine.run_id WHERE mine.run_id = ?1 AND mine.path <> ''",
        )?;
        statement
            .query_map([run_id], |r| r.get::<_, String>(0))?
            .map(|p| p.map(PathBuf::from))
            .collect::<rusqlite::Result<_>>()?
    };
    transaction.execute("DELETE FROM runs WHERE run_id = ?1", [run_id])?;
    transaction.execute("DELETE FROM artifacts WHERE sha256 NOT IN (SELECT sha256 FROM run_artifacts)", [])?;
    transaction
        .execute("DELETE FROM plugin_libraries WHERE sha256 NOT IN (SELECT library_sha256 FROM run_plugins)", [])?;
    transaction.execute("DELETE FROM experiments WHERE id NOT IN (SELECT experiment_id FROM runs)", [])?;
    Ok(DeletedRun { output_dir: PathBuf::from(output_dir), shared })
}

fn bound(binds: &[Bind]) -> Vec<rusqlite::types::Value> {
    binds
        .iter()
        .map(|bind| match bind {
            Bind::Text(text) => rusqlite::types::Value::Text(text.clone()),
            Bind::Real(number) => rusqlite::types::Value::Real(*number),
            Bind::Int(number) => rusqlite::types::Value::Integer(*number),
        })
        .collect()
}

pub fn query_runs(connection: &Connection, query: &RunQuery) -> Result<RunPage> {
    let mut selective = Vec::new();
    for (probe, binds) in sql::probes(query, Dialect::Sqlite) {
        let rows: i64 = connection.query_row(&probe, rusqlite::params_from_iter(bound(&binds)), |r| r.get(0))?;
        selective.push(rows <= sql::SELECTIVE);
    }
    let compiled = sql::compile(query, Dialect::Sqlite, &selective).map_err(anyhow::Error::msg)?;
    let total: i64 =
        connection
            .query_row(&compiled.count, rusqlite::params_from_iter(bound(&compiled.count_binds)), |r| r.get(0))?;
    let mut statement = connection.prepare(&compiled.page)?;
    let mut rows = statement.query(rusqlite::params_from_iter(bound(&compiled.page_binds)))?;
    let mut page = Vec::new();
    while let Some(row) = rows.next()? {
        let run_id: String = row.get(0)?;
        let mut values = Vec::with_capacity(compiled.shapes.len());
        for (i, shape) in compiled.shapes.iter().enumerate() {
            use rusqlite::types::ValueRef;
            values.push(match row.get_ref(i + 1)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) if *shape == Shape::Flag => Value::Bool(n != 0),
                ValueRef::Integer(n) if *shape == Shape::Real => Value::from(n as f64),
                ValueRef::Integer(n) => Value::from(n),
                ValueRef::Real(n) => serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
                ValueRef::Text(text) => sql::parse_text(*shape, Some(String::from_utf8_lossy(text).into_owned())),
                ValueRef::Blob(_) => Value::Null,
            });
        }
        page.push((run_id, values));
    }
    let exact = query.count_limit == 0 || (total as usize) <= query.count_limit;
    let total = if exact { total as u64 } else { query.count_limit as u64 };
    Ok(RunPage { total, exact, rows: page })
}

pub fn annotate(transaction: &Connection, run_id: &str, annotation: &Annotation) -> Result<()> {
    transaction.execute(
        "INSERT INTO annotations (run_id, kind, name, value, author, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            run_id,
            annotation.kind.as_str(),
            annotation.name,
            annotation.value,
            annotation.author,
            annotation.created_at
        ],
    )?;
    Ok(())
}

pub fn annotations(connection: &Connection, run_id: &str) -> Result<Vec<Annotation>> {
    let mut statement = connection
        .prepare("SELECT kind, name, value, author, created_at FROM annotations WHERE run_id = ?1 ORDER BY id")?;
    let rows =
        statement.query_map([run_id], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
    let mut annotations = Vec::new();
    for row in rows {
        let (kind, name, value, author, created_at) = row?;
        annotations.push(Annotation { kind: AnnotationKind::parse(&kind)?, name, value, author, created_at });
    }
    Ok(annotations)
}

pub fn record_verification(transaction: &Connection, run_id: &str, verification: &Verification) -> Result<()> {
    transaction.execute(
        "INSERT INTO verifications (run_id, ok, problems, checked_at, hostname) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            run_id,
            i64::from(verification.ok),
            verification.problems as i64,
            verification.checked_at,
            verification.hostname
        ],
    )?;
    Ok(())
}

pub fn verifications(connection: &Connection, run_id: &str) -> Result<Vec<Verification>> {
    let mut statement = connection
        .prepare("SELECT ok, problems, checked_at, hostname FROM verifications WHERE run_id = ?1 ORDER BY id")?;
    let rows = statement.query_map([run_id], |r| {
        Ok(Verification {
            ok: r.get::<_, i64>(0)? != 0,
            problems: r.get::<_, i64>(1)? as u64,
            checked_at: r.get(2)?,
            hostname: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn plugin_builds(connection: &Connection) -> Result<Vec<PluginBuild>> {
    let mut statement = connection.prepare(
        "SELECT l.sha256, l.plugin_name, l.plugin_version, l.sdk_version, l.path, l.size, COUNT(DISTINCT rp.run_id)
         FROM plugin_libraries l LEFT JOIN run_plugins rp ON rp.library_sha256 = l.sha256
         GROUP BY l.sha256, l.plugin_name, l.plugin_version, l.sdk_version, l.path, l.size
         ORDER BY l.plugin_name, l.plugin_version, l.sha256",
    )?;
    let rows = statement.query_map([], |r| {
        Ok(PluginBuild {
            sha256: r.get(0)?,
            plugin_name: r.get(1)?,
            plugin_version: r.get(2)?,
            sdk_version: r.get(3)?,
            path: r.get(4)?,
            size: r.get(5)?,
            runs: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn read_view(connection: &Connection, view: &str, run_id: &str) -> Result<crate::ViewRows> {
    let mut statement = connection.prepare(&crate::read_view_sql(view, "?1")?)?;
    let columns: Vec<String> = statement.column_names().into_iter().map(str::to_owned).collect();
    let width = columns.len();
    let rows = statement.query_map([run_id], |row| {
        (0..width)
            .map(|index| {
                use rusqlite::types::ValueRef;
                Ok(match row.get_ref(index)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::from(n),
                    ValueRef::Real(x) => Value::from(x),
                    ValueRef::Text(text) => Value::from(String::from_utf8_lossy(text).into_owned()),
                    ValueRef::Blob(bytes) => Value::from(bytes.to_vec()),
                })
            })
            .collect::<rusqlite::Result<Vec<Value>>>()
    })?;
    Ok(crate::ViewRows { columns, rows: rows.collect::<rusqlite::Result<_>>()? })
}
