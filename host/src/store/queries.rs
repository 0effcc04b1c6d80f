//! Read-side queries of the provenance store: run records, files to verify, comparisons,
//! lineage walks, live metrics for `host runs watch`, deletion and the summary.

use std::path::PathBuf;

use anyhow::bail;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Edge, Store, hostname, process_alive};

/// A file a run recorded, to check again.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedFile {
    /// `plugin`, or the artifact's role (`model`, `metrics`, `train-images`, ...).
    pub role: String,
    pub path: String,
    pub sha256: String,
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

/// A completed stage of an earlier run whose outputs a stage with the same key may reuse.
#[derive(Debug, Clone)]
pub struct CachedStage {
    pub run_id: String,
    pub output_dir: PathBuf,
    /// The earlier run's record (`RunSummary` as JSON).
    pub summary: Value,
}

/// One trial of a sweep, as `host sweep show` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct TrialRow {
    pub trial: usize,
    pub parameters: Value,
    pub run_id: Option<String>,
    pub status: String,
    pub metric: Option<f64>,
}

/// A sweep as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    pub sweep_id: String,
    pub name: String,
    pub metric: String,
    pub maximize: bool,
    pub created_at: String,
    pub trials: Vec<TrialRow>,
}

/// One per-step metric: step, name, value.
pub type StepMetric = (i64, String, f64);

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
    /// Regression runs: the coefficient of determination on the test split.
    pub test_r2: Option<f64>,
}

impl Store {
    /// Fails with the user-facing message unless `run_id` is in the store.
    pub fn require_run(&self, run_id: &str) -> anyhow::Result<()> {
        let known =
            self.connection.query_row("SELECT 1 FROM runs WHERE run_id = ?1", [run_id], |_| Ok(())).optional()?;
        if known.is_none() {
            bail!("no run {run_id} in {}; `host runs list` shows the runs", self.path.display());
        }
        Ok(())
    }

    /// Runs, newest first, optionally filtered.
    pub fn list_runs(
        &self,
        experiment: Option<&str>,
        status: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<RunRow>> {
        // Each filter only when given, so SQLite can walk the matching index newest first
        // instead of scanning every run.
        let mut filters = Vec::new();
        if experiment.is_some() {
            filters.push("r.experiment_id = (SELECT id FROM experiments WHERE name = ?1)");
        }
        if status.is_some() {
            filters.push("r.status = ?2");
        }
        let filter = if filters.is_empty() { String::new() } else { format!("WHERE {}", filters.join(" AND ")) };
        let mut statement = self.connection.prepare(&format!(
            "SELECT r.run_id, e.name, r.status, r.started_at, r.finished_at, r.config_sha256,
                    (SELECT value FROM metrics m WHERE m.run_id = r.run_id AND m.name = 'test.accuracy' AND m.step IS NULL),
                    (SELECT value FROM metrics m WHERE m.run_id = r.run_id AND m.name = 'test.r2' AND m.step IS NULL)
             FROM runs r JOIN experiments e ON e.id = r.experiment_id
             {filter}
             ORDER BY r.started_at DESC, r.run_id DESC LIMIT ?3"
        ))?;
        let rows = statement.query_map(params![experiment, status, limit as i64], |r| {
            Ok(RunRow {
                run_id: r.get(0)?,
                experiment: r.get(1)?,
                status: r.get(2)?,
                started_at: r.get(3)?,
                finished_at: r.get(4)?,
                config_sha256: r.get(5)?,
                test_accuracy: r.get(6)?,
                test_r2: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Completed stages named `stage` with cache key `key`, newest first (a few are enough:
    /// each is checked before its outputs are reused).
    pub fn cached_stages(&self, stage: &str, key: &str) -> anyhow::Result<Vec<CachedStage>> {
        let mut statement = self.connection.prepare(
            "SELECT r.run_id, r.output_dir, r.summary_json FROM stages s JOIN runs r ON r.run_id = s.run_id
             WHERE s.cache_key = ?1 AND s.name = ?2 AND s.status = 'completed' AND r.summary_json IS NOT NULL
             ORDER BY r.started_at DESC, r.run_id DESC LIMIT 5",
        )?;
        let rows = statement.query_map(params![key, stage], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })?;
        let mut stages = Vec::new();
        for row in rows {
            let (run_id, output_dir, summary) = row?;
            stages.push(CachedStage {
                run_id,
                output_dir: PathBuf::from(output_dir),
                summary: serde_json::from_str(&summary)?,
            });
        }
        Ok(stages)
    }

    /// Records a sweep (once: running it again resumes it).
    pub fn begin_sweep(
        &self,
        sweep_id: &str,
        name: &str,
        config: &Value,
        metric: &str,
        maximize: bool,
    ) -> anyhow::Result<()> {
        self.connection.execute(
            "INSERT OR IGNORE INTO sweeps (sweep_id, name, config_json, metric, maximize, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![sweep_id, name, config.to_string(), metric, maximize, crate::pipeline::now_rfc3339()],
        )?;
        Ok(())
    }

    /// Records a trial's latest attempt.
    pub fn record_trial(&self, sweep_id: &str, trial: &TrialRow) -> anyhow::Result<()> {
        self.connection.execute(
            "INSERT OR REPLACE INTO sweep_trials (sweep_id, trial, parameters_json, run_id, status, metric) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![sweep_id, trial.trial as i64, trial.parameters.to_string(), trial.run_id, trial.status, trial.metric],
        )?;
        Ok(())
    }

    /// A sweep and its trials in trial order.
    pub fn sweep(&self, sweep_id: &str) -> anyhow::Result<SweepRow> {
        let found = self
            .connection
            .query_row("SELECT name, metric, maximize, created_at FROM sweeps WHERE sweep_id = ?1", [sweep_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?, r.get::<_, String>(3)?))
            })
            .optional()?;
        let Some((name, metric, maximize, created_at)) = found else {
            bail!("no sweep {sweep_id} in {}; `host sweep show` lists the sweeps", self.path.display());
        };
        let mut statement = self.connection.prepare(
            "SELECT t.trial, t.parameters_json, t.run_id,
                    CASE WHEN t.status = 'pruned' THEN 'pruned' ELSE COALESCE(r.status, t.status) END, t.metric
             FROM sweep_trials t LEFT JOIN runs r ON r.run_id = t.run_id WHERE t.sweep_id = ?1 ORDER BY t.trial",
        )?;
        let rows = statement.query_map([sweep_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
        let mut trials = Vec::new();
        for row in rows {
            let (trial, parameters, run_id, status, metric) = row?;
            trials.push(TrialRow {
                trial: trial as usize,
                parameters: serde_json::from_str(&parameters)?,
                run_id,
                status,
                metric,
            });
        }
        Ok(SweepRow { sweep_id: sweep_id.to_owned(), name, metric, maximize, created_at, trials })
    }

    /// The newest run of a config file (a sweep trial's run while it is still running).
    pub fn latest_run_of_config(&self, config_file: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .connection
            .query_row(
                "SELECT run_id FROM runs WHERE config_file = ?1 ORDER BY started_at DESC, run_id DESC LIMIT 1",
                [config_file],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// A run's values of one per-epoch metric, in epoch order.
    pub fn metric_curve(&self, run_id: &str, name: &str) -> anyhow::Result<Vec<(i64, f64)>> {
        let mut statement = self.connection.prepare(
            "SELECT step, value FROM metrics WHERE run_id = ?1 AND name = ?2 AND step IS NOT NULL AND value IS NOT NULL ORDER BY step",
        )?;
        Ok(statement.query_map(params![run_id, name], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?)
    }

    /// Every sweep id, newest first.
    pub fn sweep_ids(&self) -> anyhow::Result<Vec<String>> {
        let mut statement =
            self.connection.prepare("SELECT sweep_id FROM sweeps ORDER BY created_at DESC, sweep_id")?;
        Ok(statement.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?)
    }

    /// A run's full record as written at its last stage, with its current status.
    pub fn run_record(&self, run_id: &str) -> anyhow::Result<Value> {
        self.require_run(run_id)?;
        let row: Option<(String, Option<String>, String)> = self
            .connection
            .query_row("SELECT status, summary_json, config_json FROM runs WHERE run_id = ?1", [run_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((status, summary, config)) = row else { bail!("run {run_id} vanished from the store") };
        let mut record: Value = match summary {
            Some(text) => serde_json::from_str(&text)?,
            None => json!({"run_id": run_id}),
        };
        record["status"] = json!(status);
        record["config"] = serde_json::from_str(&config)?;
        Ok(record)
    }

    /// Every file a run used or produced (plugin libraries included), with its recorded SHA-256.
    pub fn recorded_files(&self, run_id: &str) -> anyhow::Result<Vec<RecordedFile>> {
        self.require_run(run_id)?;
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
        Ok(files)
    }

    /// A run's parameters (dotted config keys) with their JSON values.
    pub fn parameters(&self, run_id: &str) -> anyhow::Result<std::collections::BTreeMap<String, Value>> {
        self.require_run(run_id)?;
        let mut statement = self.connection.prepare("SELECT name, value_json FROM parameters WHERE run_id = ?1")?;
        let rows = statement.query_map([run_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut parameters = std::collections::BTreeMap::new();
        for row in rows {
            let (name, value) = row?;
            parameters.insert(name, serde_json::from_str(&value)?);
        }
        Ok(parameters)
    }

    /// A run's final scalar metrics (`test.accuracy`, `model.loss`, ...).
    pub fn final_metrics(&self, run_id: &str) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
        let mut statement = self
            .connection
            .prepare("SELECT name, value FROM metrics WHERE run_id = ?1 AND step IS NULL AND value IS NOT NULL")?;
        let rows = statement.query_map([run_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

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

    /// Walks `wasDerivedFrom` edges from `sha256` towards its sources (`ancestors`) or towards
    /// what was made from it, breadth first: across every run, or within one run's record.
    /// Stops after `limit` entities (0: no limit); the flag says whether it stopped early.
    pub fn lineage_walk(
        &self,
        sha256: &str,
        ancestors: bool,
        run: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<(Vec<LineageStep>, bool)> {
        let query = if ancestors {
            "SELECT DISTINCT object, activity FROM lineage_edges
             WHERE relation = 'wasDerivedFrom' AND subject = ?1 AND (?2 IS NULL OR run_id = ?2)"
        } else {
            "SELECT DISTINCT subject, activity FROM lineage_edges
             WHERE relation = 'wasDerivedFrom' AND object = ?1 AND (?2 IS NULL OR run_id = ?2)"
        };
        let mut statement = self.connection.prepare(query)?;
        let mut seen = std::collections::HashSet::from([sha256.to_owned()]);
        let mut frontier = std::collections::VecDeque::from([(sha256.to_owned(), 0usize)]);
        let mut steps = Vec::new();
        let mut truncated = false;
        'walk: while let Some((current, depth)) = frontier.pop_front() {
            let next: Vec<(String, Option<String>)> = statement
                .query_map(params![current, run], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (entity, activity) in next {
                if limit > 0 && steps.len() >= limit {
                    truncated = true;
                    break 'walk;
                }
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
                    frontier.push_back((entity, depth + 1));
                }
            }
        }
        steps.sort_by(|a, b| a.depth.cmp(&b.depth).then(a.sha256.cmp(&b.sha256)));
        Ok((steps, truncated))
    }

    /// The runs that used or produced `sha256` as data, an artifact or a plugin library (the
    /// first `limit`, 0 for all, in id order) and how many there are in all.
    pub fn runs_using(&self, sha256: &str, limit: usize) -> anyhow::Result<(Vec<String>, usize)> {
        let union = "SELECT run_id FROM run_artifacts WHERE sha256 = ?1 UNION SELECT run_id FROM run_plugins WHERE library_sha256 = ?1";
        let total: i64 =
            self.connection.query_row(&format!("SELECT COUNT(*) FROM ({union})"), [sha256], |r| r.get(0))?;
        let mut statement = self.connection.prepare(&format!("{union} ORDER BY 1 LIMIT ?2"))?;
        let limit = if limit == 0 { -1 } else { limit as i64 };
        let runs = statement.query_map(params![sha256, limit], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok((runs, total as usize))
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
        // A range on the primary keys (digests are lowercase hex, all below '~'), not LIKE,
        // which cannot use them.
        let mut statement = self.connection.prepare(
            "SELECT sha256 FROM artifacts WHERE sha256 >= ?1 AND sha256 < ?1 || '~'
             UNION SELECT sha256 FROM plugin_libraries WHERE sha256 >= ?1 AND sha256 < ?1 || '~'",
        )?;
        Ok(statement.query_map([prefix.to_ascii_lowercase()], |r| r.get(0))?.collect::<Result<_, _>>()?)
    }

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

    /// Deletes a run's rows (children cascade), then artifacts and plugin builds no run refers
    /// to any more. Returns the run's output folder and the paths of its files that other runs
    /// still record, which must be kept on disk.
    pub fn delete_run(&mut self, run_id: &str) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
        self.require_run(run_id)?;
        let transaction = self.connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (output_dir, status, pid, host): (String, String, i64, String) = transaction.query_row(
            "SELECT output_dir, status, pid, hostname FROM runs WHERE run_id = ?1",
            [run_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
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

    /// Records one per-step metric as it happens, so `host runs watch` sees epochs live.
    pub fn live_metric(&self, run_id: &str, name: &str, step: u64, value: f64) -> anyhow::Result<()> {
        super::timed_write(|| {
            self.connection.execute(
                "INSERT INTO metrics (run_id, name, step, value) VALUES (?1, ?2, ?3, ?4)",
                params![run_id, name, step as i64, value],
            )
        })?;
        Ok(())
    }

    /// A run's status and its per-step metrics after `after_step`, in step order.
    pub fn watch_state(&self, run_id: &str, after_step: i64) -> anyhow::Result<(String, Vec<StepMetric>)> {
        self.require_run(run_id)?;
        let status: String =
            self.connection.query_row("SELECT status FROM runs WHERE run_id = ?1", [run_id], |r| r.get(0))?;
        let mut statement = self.connection.prepare(
            "SELECT step, name, value FROM metrics WHERE run_id = ?1 AND step > ?2 AND value IS NOT NULL ORDER BY step, rowid",
        )?;
        let metrics = statement
            .query_map(params![run_id, after_step], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        Ok((status, metrics))
    }

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
