//! The PostgreSQL backend's reads (and the delete): functions over a client or transaction,
//! each answering one of the interface's questions, as `store/src/sqlite/queries.rs` does for
//! SQLite.

use std::path::PathBuf;

use anyhow::Context;
use postgres::GenericClient;
use postgres::types::ToSql;
use record::{Edge, RunOwner, RunRecord, RunStatus, StageName, TrialStatus};

use super::Call;
use crate::query::sql::{self, Bind, Dialect};
use crate::{
    Annotation, AnnotationKind, CachedStage, DeletedRun, PluginBuild, RecordedFile, RunFilter, RunPage, RunQuery,
    RunRow, RunningRun, Summary, SweepJob, SweepRow, TrialRow, Verification,
};

/// Reads a status or relation column written by this crate.
pub fn parsed<T: std::str::FromStr<Err = String>>(text: &str) -> anyhow::Result<T> {
    text.parse().map_err(anyhow::Error::msg)
}

pub fn list_runs(client: &mut impl GenericClient, filter: &RunFilter) -> Call<Vec<RunRow>> {
    // Each filter only when given (numbered as they come), so the planner uses the index.
    let status = filter.status.map(|s| s.as_str());
    let limit = filter.limit.min(i64::MAX as usize) as i64;
    let mut conditions = Vec::new();
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(experiment) = &filter.experiment {
        params.push(experiment);
        conditions.push(format!("r.experiment_id = (SELECT id FROM experiments WHERE name = ${})", params.len()));
    }
    if let Some(status) = &status {
        params.push(status);
        conditions.push(format!("r.status = ${}", params.len()));
    }
    params.push(&limit);
    let condition = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    let rows = client.query(
        &format!(
            "SELECT r.run_id, e.name, r.status, r.started_at, r.finished_at, r.config_sha256,
                    (SELECT value FROM metrics m WHERE m.run_id = r.run_id AND m.name = 'test.accuracy' AND m.step IS NULL LIMIT 1),
                    (SELECT value FROM metrics m WHERE m.run_id = r.run_id AND m.name = 'test.r2' AND m.step IS NULL LIMIT 1)
             FROM runs r JOIN experiments e ON e.id = r.experiment_id
             {condition}
             ORDER BY r.started_at DESC, r.run_id DESC LIMIT ${}",
            params.len()
        ),
        &params,
    )?;
    let mut runs = Vec::with_capacity(rows.len());
    for row in rows {
        runs.push(RunRow {
            run_id: row.get(0),
            experiment: row.get(1),
            status: parsed(row.get(2))?,
            started_at: row.get(3),
            finished_at: row.get(4),
            config_sha256: row.get(5),
            test_accuracy: row.get(6),
            test_r2: row.get(7),
        });
    }
    Ok(runs)
}

pub fn cached_stages(client: &mut impl GenericClient, stage: StageName, key: &str) -> Call<Vec<CachedStage>> {
    let rows = client.query(
        "SELECT r.run_id, r.output_dir, r.summary_json FROM stages s JOIN runs r ON r.run_id = s.run_id
         WHERE s.cache_key = $1 AND s.name = $2 AND s.status = 'completed' AND r.summary_json IS NOT NULL
         ORDER BY r.started_at DESC, r.run_id DESC LIMIT 5",
        &[&key, &stage.as_str()],
    )?;
    let mut stages = Vec::new();
    for row in rows {
        let run_id: String = row.get(0);
        match crate::read_record(row.get(2)) {
            Ok(record) => {
                stages.push(CachedStage { run_id, output_dir: PathBuf::from(row.get::<_, String>(1)), record })
            }
            // A record this host cannot read is not reused; the stage is recomputed.
            Err(error) => tracing::info!("run {run_id}'s record cannot be read for reuse: {error}"),
        }
    }
    Ok(stages)
}

/// A run's record with its status and config columns, which are the truth.
pub fn run_record(client: &mut impl GenericClient, run_id: &str) -> Call<RunRecord> {
    let row = client.query_one(
        "SELECT status, summary_json, config_json, error, finished_at FROM runs WHERE run_id = $1",
        &[&run_id],
    )?;
    let summary: Option<&str> = row.get(1);
    let summary = summary.context("the run was recorded without its record")?;
    let mut record = crate::read_record(summary).context("the stored run record")?;
    record.status = parsed(row.get(0))?;
    // A run settled after its process ended (`Store::settle_run`) has its end in the columns.
    if let Some(error) = row.get::<_, Option<String>>(3) {
        record.error = Some(error);
    }
    if let Some(finished) = row.get::<_, Option<String>>(4) {
        record.finished_at = Some(finished);
    }
    record.config = serde_json::from_str(row.get(2)).context("the stored config")?;
    Ok(record)
}

pub fn recorded_files(client: &mut impl GenericClient, run_id: &str) -> Call<Vec<RecordedFile>> {
    let rows = client.query(
        "SELECT role, path, sha256 FROM (
             SELECT 'plugin ' || rp.kind AS role, l.path AS path, l.sha256 AS sha256
             FROM run_plugins rp JOIN plugin_libraries l ON l.sha256 = rp.library_sha256 WHERE rp.run_id = $1
             UNION ALL
             SELECT role, path, sha256 FROM run_artifacts WHERE run_id = $1 AND path <> ''
         ) AS files ORDER BY role COLLATE \"C\", path COLLATE \"C\"",
        &[&run_id],
    )?;
    Ok(rows.iter().map(|row| RecordedFile { role: row.get(0), path: row.get(1), sha256: row.get(2) }).collect())
}

pub fn lineage_edges(client: &mut impl GenericClient, run_id: &str) -> Call<Vec<Edge>> {
    let rows = client.query(
        "SELECT relation, subject, object, activity, parameters_json FROM lineage_edges WHERE run_id = $1 ORDER BY id",
        &[&run_id],
    )?;
    let mut edges = Vec::with_capacity(rows.len());
    for row in rows {
        let parameters: Option<&str> = row.get(4);
        edges.push(Edge {
            relation: parsed(row.get(0))?,
            subject: row.get(1),
            object: row.get(2),
            activity: row.get(3),
            parameters: parameters.map(serde_json::from_str).transpose()?,
        });
    }
    Ok(edges)
}

pub fn summary(client: &mut impl GenericClient) -> Call<Summary> {
    let runs_by_status = client
        .query("SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status", &[])?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let experiments = client
        .query(
            "SELECT e.name, COUNT(r.run_id),
                    (SELECT MAX(m.value) FROM metrics m JOIN runs r2 ON r2.run_id = m.run_id
                     WHERE r2.experiment_id = e.id AND m.name = 'test.accuracy' AND m.step IS NULL)
             FROM experiments e LEFT JOIN runs r ON r.experiment_id = e.id GROUP BY e.id ORDER BY e.name",
            &[],
        )?
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let mut count = |sql: &str| -> Call<i64> { Ok(client.query_one(sql, &[])?.get(0)) };
    Ok(Summary {
        runs_by_status,
        experiments,
        plugin_builds: count("SELECT COUNT(*) FROM plugin_libraries")?,
        artifacts: count("SELECT COUNT(*) FROM artifacts")?,
        artifact_bytes: count("SELECT COALESCE(SUM(size), 0)::BIGINT FROM artifacts")?,
        lineage_edges: count("SELECT COUNT(*) FROM lineage_edges")?,
    })
}

pub fn sweep(client: &mut impl GenericClient, sweep_id: &str) -> Call<Option<SweepRow>> {
    let Some(row) = client.query_opt(
        "SELECT name, metric, maximize, created_at, config_json FROM sweeps WHERE sweep_id = $1",
        &[&sweep_id],
    )?
    else {
        return Ok(None);
    };
    let rows = client.query(
        "SELECT t.trial, t.parameters_json, t.run_id,
                CASE WHEN t.status = 'pruned' THEN 'pruned' ELSE COALESCE(r.status, t.status) END,
                COALESCE(t.metric, (SELECT m.value FROM metrics m WHERE m.run_id = t.run_id AND m.step IS NULL
                                    AND m.name = (SELECT metric FROM sweeps WHERE sweep_id = t.sweep_id))),
                ARRAY(SELECT a.run_id FROM runs a WHERE a.sweep_id = t.sweep_id AND a.trial = t.trial ORDER BY a.started_at, a.run_id)
         FROM sweep_trials t LEFT JOIN runs r ON r.run_id = t.run_id WHERE t.sweep_id = $1 ORDER BY t.trial",
        &[&sweep_id],
    )?;
    let mut jobs: Vec<SweepJob> = client
        .query(
            "SELECT trial, scheduler, job_id, submitted_at, state, reason, updated_at FROM sweep_jobs WHERE sweep_id = $1
             ORDER BY trial, submitted_at, length(job_id), job_id",
            &[&sweep_id],
        )?
        .iter()
        .map(|row| SweepJob {
            trial: row.get::<_, i64>(0) as usize,
            scheduler: row.get(1),
            job_id: row.get(2),
            submitted_at: row.get(3),
            state: row.get(4),
            reason: row.get(5),
            updated_at: row.get(6),
        })
        .collect();
    let mut trials = Vec::with_capacity(rows.len());
    for trial in rows {
        let status: &str = trial.get(3);
        // The run's status where the trial has a run, else the trial's own.
        let status = match parsed::<RunStatus>(status) {
            Ok(run) => TrialStatus::from(run),
            Err(_) => parsed::<TrialStatus>(status)?,
        };
        let number = trial.get::<_, i64>(0) as usize;
        // The trial's latest job.
        let job = jobs.iter().rposition(|j| j.trial == number).map(|at| jobs.remove(at));
        trials.push(TrialRow {
            trial: number,
            parameters: serde_json::from_str(trial.get(1))?,
            run_id: trial.get(2),
            status,
            metric: trial.get(4),
            attempts: trial.get(5),
            job,
        });
    }
    Ok(Some(SweepRow {
        sweep_id: sweep_id.to_owned(),
        name: row.get(0),
        config: serde_json::from_str(row.get(4))?,
        metric: row.get(1),
        maximize: row.get(2),
        created_at: row.get(3),
        trials,
    }))
}

pub fn running_runs(client: &mut impl GenericClient) -> Call<Vec<RunningRun>> {
    let rows = client.query(
        "SELECT run_id, pid, hostname, heartbeat_at, boot_id, pid_namespace FROM runs WHERE status = 'running'",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|row| RunningRun {
            run_id: row.get(0),
            owner: RunOwner {
                pid: row.get::<_, i64>(1) as u32,
                hostname: row.get(2),
                boot_id: row.get::<_, Option<String>>(4).unwrap_or_default(),
                pid_namespace: row.get::<_, Option<String>>(5).unwrap_or_default(),
            },
            heartbeat_at: row.get(3),
        })
        .collect())
}

pub fn delete_run(transaction: &mut postgres::Transaction<'_>, run_id: &str) -> Call<DeletedRun> {
    let row = transaction.query_one("SELECT output_dir, status FROM runs WHERE run_id = $1 FOR UPDATE", &[&run_id])?;
    if row.get::<_, &str>(1) == RunStatus::Running.as_str() {
        return Err(anyhow::anyhow!("run {run_id} is still running; stop it first").into());
    }
    let output_dir = PathBuf::from(row.get::<_, String>(0));
    let shared = transaction
        .query(
            "SELECT DISTINCT mine.path FROM run_artifacts mine JOIN run_artifacts other
             ON other.path = mine.path AND other.run_id <> mine.run_id WHERE mine.run_id = $1 AND mine.path <> ''",
            &[&run_id],
        )?
        .iter()
        .map(|row| PathBuf::from(row.get::<_, String>(0)))
        .collect();
    transaction.execute("DELETE FROM runs WHERE run_id = $1", &[&run_id])?;
    transaction.execute(
        "DELETE FROM artifacts a WHERE NOT EXISTS (SELECT 1 FROM run_artifacts ra WHERE ra.sha256 = a.sha256)",
        &[],
    )?;
    transaction.execute(
        "DELETE FROM plugin_libraries l WHERE NOT EXISTS (SELECT 1 FROM run_plugins rp WHERE rp.library_sha256 = l.sha256)",
        &[],
    )?;
    transaction.execute(
        "DELETE FROM experiments e WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.experiment_id = e.id)",
        &[],
    )?;
    Ok(DeletedRun { output_dir, shared })
}

fn bound(binds: &[Bind]) -> Vec<Box<dyn ToSql + Sync>> {
    binds
        .iter()
        .map(|bind| -> Box<dyn ToSql + Sync> {
            match bind {
                Bind::Text(text) => Box::new(text.clone()),
                Bind::Real(number) => Box::new(*number),
                Bind::Int(number) => Box::new(*number),
            }
        })
        .collect()
}

pub fn query_runs(client: &mut impl GenericClient, query: &RunQuery) -> Call<RunPage> {
    let mut selective = Vec::new();
    for (probe, binds) in sql::probes(query, Dialect::Postgres) {
        let binds = bound(&binds);
        let refs: Vec<&(dyn ToSql + Sync)> = binds.iter().map(|b| b.as_ref()).collect();
        let rows: i64 = client.query_one(&probe, &refs)?.get(0);
        selective.push(rows <= sql::SELECTIVE);
    }
    let compiled = sql::compile(query, Dialect::Postgres, &selective).map_err(anyhow::Error::msg)?;
    let count_binds = bound(&compiled.count_binds);
    let count_refs: Vec<&(dyn ToSql + Sync)> = count_binds.iter().map(|b| b.as_ref()).collect();
    let total: i64 = client.query_one(&compiled.count, &count_refs)?.get(0);
    let page_binds = bound(&compiled.page_binds);
    let page_refs: Vec<&(dyn ToSql + Sync)> = page_binds.iter().map(|b| b.as_ref()).collect();
    let rows = client.query(&compiled.page, &page_refs)?;
    let mut page = Vec::with_capacity(rows.len());
    for row in rows {
        let run_id: String = row.get(0);
        let values =
            compiled.shapes.iter().enumerate().map(|(i, shape)| sql::parse_text(*shape, row.get(i + 1))).collect();
        page.push((run_id, values));
    }
    let exact = query.count_limit == 0 || (total as usize) <= query.count_limit;
    let total = if exact { total as u64 } else { query.count_limit as u64 };
    Ok(RunPage { total, exact, rows: page })
}

pub fn annotate(transaction: &mut impl GenericClient, run_id: &str, annotation: &Annotation) -> Call<()> {
    transaction.execute(
        "INSERT INTO annotations (run_id, kind, name, value, author, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &run_id,
            &annotation.kind.as_str(),
            &annotation.name,
            &annotation.value,
            &annotation.author,
            &annotation.created_at,
        ],
    )?;
    Ok(())
}

pub fn annotations(client: &mut impl GenericClient, run_id: &str) -> Call<Vec<Annotation>> {
    let rows = client.query(
        "SELECT kind, name, value, author, created_at FROM annotations WHERE run_id = $1 ORDER BY id",
        &[&run_id],
    )?;
    let mut annotations = Vec::with_capacity(rows.len());
    for row in rows {
        annotations.push(Annotation {
            kind: AnnotationKind::parse(row.get(0))?,
            name: row.get(1),
            value: row.get(2),
            author: row.get(3),
            created_at: row.get(4),
        });
    }
    Ok(annotations)
}

pub fn record_verification(
    transaction: &mut impl GenericClient,
    run_id: &str,
    verification: &Verification,
) -> Call<()> {
    transaction.execute(
        "INSERT INTO verifications (run_id, ok, problems, checked_at, hostname) VALUES ($1, $2, $3, $4, $5)",
        &[
            &run_id,
            &i32::from(verification.ok),
            &(verification.problems as i32),
            &verification.checked_at,
            &verification.hostname,
        ],
    )?;
    Ok(())
}

pub fn verifications(client: &mut impl GenericClient, run_id: &str) -> Call<Vec<Verification>> {
    let rows = client.query(
        "SELECT ok, problems, checked_at, hostname FROM verifications WHERE run_id = $1 ORDER BY id",
        &[&run_id],
    )?;
    Ok(rows
        .into_iter()
        .map(|row| Verification {
            ok: row.get::<_, i32>(0) != 0,
            problems: row.get::<_, i32>(1) as u64,
            checked_at: row.get(2),
            hostname: row.get(3),
        })
        .collect())
}

pub fn plugin_builds(client: &mut impl GenericClient) -> Call<Vec<PluginBuild>> {
    let rows = client.query(
        "SELECT l.sha256, l.plugin_name, l.plugin_version, l.sdk_version, l.path, l.size, COUNT(DISTINCT rp.run_id)
         FROM plugin_libraries l LEFT JOIN run_plugins rp ON rp.library_sha256 = l.sha256
         GROUP BY l.sha256, l.plugin_name, l.plugin_version, l.sdk_version, l.path, l.size
         ORDER BY l.plugin_name, l.plugin_version, l.sha256",
        &[],
    )?;
    Ok(rows
        .into_iter()
        .map(|row| PluginBuild {
            sha256: row.get(0),
            plugin_name: row.get(1),
            plugin_version: row.get(2),
            sdk_version: row.get(3),
            path: row.get(4),
            size: row.get(5),
            runs: row.get(6),
        })
        .collect())
}

/// One run's rows of a read view, each value as JSON by its column's type.
pub fn read_view(client: &mut impl GenericClient, sql: &str, run_id: &str) -> Call<crate::ViewRows> {
    use postgres::types::Type;
    use serde_json::Value;
    let statement = client.prepare(sql)?;
    let columns: Vec<String> = statement.columns().iter().map(|c| c.name().to_owned()).collect();
    let mut rows = Vec::new();
    for row in client.query(&statement, &[&run_id])? {
        let mut values = Vec::with_capacity(columns.len());
        for (index, column) in statement.columns().iter().enumerate() {
            let value = match *column.type_() {
                Type::INT2 => row.get::<_, Option<i16>>(index).map(Value::from),
                Type::INT4 => row.get::<_, Option<i32>>(index).map(Value::from),
                Type::INT8 => row.get::<_, Option<i64>>(index).map(Value::from),
                Type::FLOAT4 => row.get::<_, Option<f32>>(index).map(|x| Value::from(f64::from(x))),
                Type::FLOAT8 => row.get::<_, Option<f64>>(index).map(Value::from),
                Type::BOOL => row.get::<_, Option<bool>>(index).map(|b| Value::from(i64::from(b))),
                _ => row.get::<_, Option<String>>(index).map(Value::from),
            };
            values.push(value.unwrap_or(Value::Null));
        }
        rows.push(values);
    }
    Ok(crate::ViewRows { columns, rows })
}
