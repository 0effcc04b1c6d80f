//! MLflow's tracking model as `host export --format mlflow` writes it ([`Tracking`]), and its
//! writer for an MLflow SQLite store ([`MlflowSqlite`]). The REST writer is the host's (it
//! speaks HTTP); this one lives here because only the store crate names SQL.
//!
//! The SQLite store must be MLflow's own (`mlflow db upgrade sqlite:///PATH` creates one, as
//! does `mlflow server --backend-store-uri sqlite:///PATH`): its tables are checked for the
//! columns written, and nothing else of MLflow's schema is touched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// One value of a metric at a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: String,
    /// NaN and infinities are kept (MLflow stores them with `is_nan`).
    pub value: f64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub step: i64,
}

/// A data set a run used, as MLflow's `log_inputs` records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub name: String,
    /// At most 36 characters (MLflow's column).
    pub digest: String,
    pub source_type: String,
    /// JSON text.
    pub source: String,
    /// JSON text.
    pub profile: Option<String>,
    /// The `mlflow.data.context` input tag: `training`, `validation`, `testing`, ...
    pub context: String,
}

/// A run to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub name: String,
    /// Milliseconds since the epoch.
    pub start_time: i64,
    pub user: String,
    pub tags: Vec<(String, String)>,
}

/// An active run already in an experiment, with its tags.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingRun {
    pub run_id: String,
    pub tags: BTreeMap<String, String>,
}

/// Where an export writes: an MLflow tracking server or an MLflow SQLite store.
pub trait Tracking {
    /// Where, for messages.
    fn describe(&self) -> String;
    /// The id of the active experiment `name`, created when there is none.
    fn experiment(&mut self, name: &str) -> anyhow::Result<String>;
    /// Every active run of an experiment, with its tags.
    fn runs(&mut self, experiment_id: &str) -> anyhow::Result<Vec<ExistingRun>>;
    /// Marks a run deleted (as MLflow's own delete does).
    fn delete_run(&mut self, run_id: &str) -> anyhow::Result<()>;
    /// Creates a running run; returns its id.
    fn create_run(&mut self, experiment_id: &str, run: &NewRun) -> anyhow::Result<String>;
    /// Logs parameters, metrics and tags (tags overwrite; a parameter is written once).
    fn log(
        &mut self,
        run_id: &str,
        params: &[(String, String)],
        metrics: &[Metric],
        tags: &[(String, String)],
    ) -> anyhow::Result<()>;
    fn log_datasets(&mut self, run_id: &str, datasets: &[Dataset]) -> anyhow::Result<()>;
    /// Removes a tag.
    fn delete_tag(&mut self, run_id: &str, key: &str) -> anyhow::Result<()>;
    /// Stores `file` as the run's artifact at `path` (relative, `/`-separated).
    fn upload(&mut self, run_id: &str, path: &str, file: &Path) -> anyhow::Result<()>;
    /// Ends a run: `FINISHED`, `FAILED` or `KILLED`, at `end_time` (milliseconds).
    fn end_run(&mut self, run_id: &str, status: &str, end_time: i64) -> anyhow::Result<()>;
}

/// The columns written, per table: an MLflow schema without one of them is refused.
const WRITTEN: &[(&str, &[&str])] = &[
    (
        "experiments",
        &["experiment_id", "name", "artifact_location", "lifecycle_stage", "creation_time", "last_update_time"],
    ),
    (
        "runs",
        &[
            "run_uuid",
            "name",
            "source_type",
            "source_name",
            "user_id",
            "status",
            "start_time",
            "end_time",
            "lifecycle_stage",
            "artifact_uri",
            "experiment_id",
            "deleted_time",
        ],
    ),
    ("params", &["key", "value", "run_uuid"]),
    ("metrics", &["key", "value", "timestamp", "run_uuid", "step", "is_nan"]),
    ("latest_metrics", &["key", "value", "timestamp", "step", "is_nan", "run_uuid"]),
    ("tags", &["key", "value", "run_uuid"]),
    (
        "datasets",
        &[
            "dataset_uuid",
            "experiment_id",
            "name",
            "digest",
            "dataset_source_type",
            "dataset_source",
            "dataset_profile",
        ],
    ),
    ("inputs", &["input_uuid", "source_type", "source_id", "destination_type", "destination_id"]),
    ("input_tags", &["input_uuid", "name", "value"]),
];

/// An MLflow SQLite store, written as MLflow's SQLAlchemy store writes it.
pub struct MlflowSqlite {
    path: PathBuf,
    connection: Connection,
}

/// 32 random hex digits: MLflow's run ids (and, dashed, its dataset and input ids).
fn random_hex() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn uuid() -> anyhow::Result<String> {
    let hex = random_hex()?;
    Ok(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// `path` when it is relative and only names (no `..`, no root): an artifact's place in its
/// run's folder.
pub fn plain_relative(path: &str) -> anyhow::Result<&Path> {
    let relative = Path::new(path);
    if path.is_empty() || !relative.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
        bail!("{path}: not a plain relative artifact path");
    }
    Ok(relative)
}

/// A local folder of a `file:` URI or a plain path; `None` for another scheme.
pub fn local_folder(uri: &str) -> Option<PathBuf> {
    if let Some(rest) = uri.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    if let Some(rest) = uri.strip_prefix("file:") {
        return Some(PathBuf::from(rest));
    }
    (!uri.contains("://") && !uri.contains(":/")).then(|| PathBuf::from(uri))
}

impl MlflowSqlite {
    /// Opens an existing MLflow SQLite store for writing.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let create = format!("create it with `mlflow db upgrade sqlite:///{}`", path.display());
        if !path.is_file() {
            bail!("{}: no MLflow store here; {create} (or give an MLflow server's http:// URL)", path.display());
        }
        let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .with_context(|| format!("{}: cannot open the MLflow store", path.display()))?;
        connection.busy_timeout(Duration::from_secs(30))?;
        let is_mlflow: bool = connection
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n == 1)
            .with_context(|| format!("{}: not a SQLite database", path.display()))?;
        if !is_mlflow {
            let is_host_store: bool = connection
                .query_row("SELECT count(*) FROM sqlite_master WHERE name IN ('schema_info', 'runs_v1')", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n > 0)
                .unwrap_or(false);
            if is_host_store {
                bail!(
                    "{}: this is a host provenance store, not an MLflow store; give an MLflow store (`mlflow db upgrade \
                     sqlite:///NEW.db` makes one) or an MLflow server's http:// URL",
                    path.display()
                );
            }
            bail!("{}: not an MLflow store (no alembic_version table); {create}", path.display());
        }
        for (table, columns) in WRITTEN {
            let mut statement = connection.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
            let present: Vec<String> = statement.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            if let Some(missing) = columns.iter().find(|c| !present.iter().any(|p| p == *c)) {
                bail!(
                    "{}: this MLflow store's table `{table}` has no column `{missing}`: its schema is not one host \
                     writes; upgrade it with `mlflow db upgrade sqlite:///{}`",
                    path.display(),
                    path.display()
                );
            }
        }
        Ok(MlflowSqlite { path: path.to_owned(), connection })
    }

    /// Where the files of experiments this writer makes go: `STORE.artifacts/` beside the store
    /// file (`mlflow.db.artifacts/1/RUN/artifacts/...`).
    fn artifact_root(&self) -> anyhow::Result<PathBuf> {
        let mut name = self.path.file_name().context("the MLflow store has no file name")?.to_owned();
        name.push(".artifacts");
        Ok(std::path::absolute(&self.path)?.with_file_name(name))
    }

    fn artifact_folder(&self, run_id: &str) -> anyhow::Result<PathBuf> {
        let uri: String =
            self.connection.query_row("SELECT artifact_uri FROM runs WHERE run_uuid = ?1", [run_id], |r| r.get(0))?;
        local_folder(&uri).with_context(|| {
            format!(
                "run {run_id}'s artifact location {uri} is not a local folder, so files cannot be copied there; \
                 export to the MLflow server that owns it (http://...) instead"
            )
        })
    }
}

impl Tracking for MlflowSqlite {
    fn describe(&self) -> String {
        format!("the MLflow store {}", self.path.display())
    }

    fn experiment(&mut self, name: &str) -> anyhow::Result<String> {
        let found: Option<(i64, Option<String>, Option<String>)> = self
            .connection
            .query_row(
                "SELECT experiment_id, lifecycle_stage, artifact_location FROM experiments WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        match found {
            Some((_, Some(stage), _)) if stage == "deleted" => bail!(
                "MLflow experiment `{name}` is deleted; restore it (`mlflow experiments restore`) or export with \
                 --experiment OTHER"
            ),
            Some((id, _, location)) => {
                if let Some(location) = location.filter(|l| local_folder(l).is_none()) {
                    bail!(
                        "MLflow experiment `{name}` keeps its files at {location}, which is no local folder: export to \
                         the MLflow server that owns it (http://...) instead, or choose another experiment with \
                         --experiment"
                    );
                }
                Ok(id.to_string())
            }
            None => {
                let now = now_ms();
                let root = self.artifact_root()?;
                let transaction = self.connection.transaction()?;
                transaction.execute(
                    "INSERT INTO experiments (name, lifecycle_stage, creation_time, last_update_time) \
                     VALUES (?1, 'active', ?2, ?2)",
                    params![name, now],
                )?;
                let id = transaction.last_insert_rowid();
                // Beside the store, named after it (two stores in one folder never share it), one
                // folder per experiment.
                let folder = root.join(id.to_string());
                transaction.execute(
                    "UPDATE experiments SET artifact_location = ?1 WHERE experiment_id = ?2",
                    params![folder.display().to_string(), id],
                )?;
                transaction.commit()?;
                Ok(id.to_string())
            }
        }
    }

    fn runs(&mut self, experiment_id: &str) -> anyhow::Result<Vec<ExistingRun>> {
        let mut statement = self.connection.prepare(
            "SELECT r.run_uuid, t.key, t.value FROM runs r LEFT JOIN tags t ON t.run_uuid = r.run_uuid \
             WHERE r.experiment_id = ?1 AND r.lifecycle_stage = 'active' ORDER BY r.run_uuid",
        )?;
        let mut runs: Vec<ExistingRun> = Vec::new();
        let rows = statement.query_map([experiment_id.parse::<i64>()?], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, Option<String>>(2)?))
        })?;
        for row in rows {
            let (run_id, key, value) = row?;
            if runs.last().is_none_or(|r| r.run_id != run_id) {
                runs.push(ExistingRun { run_id, tags: BTreeMap::new() });
            }
            if let (Some(key), Some(run)) = (key, runs.last_mut()) {
                run.tags.insert(key, value.unwrap_or_default());
            }
        }
        Ok(runs)
    }

    fn delete_run(&mut self, run_id: &str) -> anyhow::Result<()> {
        self.connection.execute(
            "UPDATE runs SET lifecycle_stage = 'deleted', deleted_time = ?2 WHERE run_uuid = ?1",
            params![run_id, now_ms()],
        )?;
        Ok(())
    }

    fn create_run(&mut self, experiment_id: &str, run: &NewRun) -> anyhow::Result<String> {
        let run_id = random_hex()?;
        let location: Option<String> = self.connection.query_row(
            "SELECT artifact_location FROM experiments WHERE experiment_id = ?1",
            [experiment_id.parse::<i64>()?],
            |r| r.get(0),
        )?;
        let location = match location {
            Some(location) => location,
            None => self.artifact_root()?.join(experiment_id).display().to_string(),
        };
        let artifact_uri = format!("{}/{run_id}/artifacts", location.trim_end_matches('/'));
        let transaction = self.connection.transaction()?;
        transaction.execute(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, \
             start_time, source_version, lifecycle_stage, artifact_uri, experiment_id) \
             VALUES (?1, ?2, 'LOCAL', '', '', ?3, 'RUNNING', ?4, '', 'active', ?5, ?6)",
            params![run_id, run.name, run.user, run.start_time, artifact_uri, experiment_id.parse::<i64>()?],
        )?;
        for (key, value) in &run.tags {
            transaction.execute(
                "INSERT OR REPLACE INTO tags (key, value, run_uuid) VALUES (?1, ?2, ?3)",
                params![key, value, run_id],
            )?;
        }
        transaction.commit()?;
        Ok(run_id)
    }

    fn log(
        &mut self,
        run_id: &str,
        params: &[(String, String)],
        metrics: &[Metric],
        tags: &[(String, String)],
    ) -> anyhow::Result<()> {
        let transaction = self.connection.transaction()?;
        for (key, value) in params {
            let existing: Option<String> = transaction
                .query_row("SELECT value FROM params WHERE run_uuid = ?1 AND key = ?2", [run_id, key], |r| r.get(0))
                .optional()?;
            match existing {
                None => {
                    transaction.execute(
                        "INSERT INTO params (key, value, run_uuid) VALUES (?1, ?2, ?3)",
                        params![key, value, run_id],
                    )?;
                }
                Some(old) if old == *value => {}
                Some(old) => bail!("MLflow run {run_id} already has parameter {key} = {old}, not {value}"),
            }
        }
        for metric in metrics {
            let is_nan = metric.value.is_nan();
            // MLflow keeps a NaN as 0 with is_nan, and infinities as the largest finite values.
            let value = if is_nan { 0.0 } else { metric.value.clamp(f64::MIN, f64::MAX) };
            transaction.execute(
                "INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![metric.key, value, metric.timestamp, run_id, metric.step, is_nan],
            )?;
            // The latest value: the highest step, then the latest time, then the largest value.
            transaction.execute(
                "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value, timestamp = excluded.timestamp, \
                 step = excluded.step, is_nan = excluded.is_nan \
                 WHERE (excluded.step, excluded.timestamp, excluded.value) > \
                       (latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)",
                params![metric.key, value, metric.timestamp, metric.step, is_nan, run_id],
            )?;
        }
        for (key, value) in tags {
            transaction.execute(
                "INSERT OR REPLACE INTO tags (key, value, run_uuid) VALUES (?1, ?2, ?3)",
                params![key, value, run_id],
            )?;
        }
        transaction.commit()?;
        Ok(())
    }

    fn log_datasets(&mut self, run_id: &str, datasets: &[Dataset]) -> anyhow::Result<()> {
        let transaction = self.connection.transaction()?;
        let experiment: i64 =
            transaction.query_row("SELECT experiment_id FROM runs WHERE run_uuid = ?1", [run_id], |r| r.get(0))?;
        for dataset in datasets {
            let existing: Option<String> = transaction
                .query_row(
                    "SELECT dataset_uuid FROM datasets WHERE experiment_id = ?1 AND name = ?2 AND digest = ?3",
                    params![experiment, dataset.name, dataset.digest],
                    |r| r.get(0),
                )
                .optional()?;
            let dataset_uuid = match existing {
                Some(id) => id,
                None => {
                    let id = uuid()?;
                    transaction.execute(
                        "INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, dataset_source_type, \
                         dataset_source, dataset_profile) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            id,
                            experiment,
                            dataset.name,
                            dataset.digest,
                            dataset.source_type,
                            dataset.source,
                            dataset.profile
                        ],
                    )?;
                    id
                }
            };
            let input: Option<String> = transaction
                .query_row(
                    "SELECT input_uuid FROM inputs WHERE source_type = 'DATASET' AND source_id = ?1 \
                     AND destination_type = 'RUN' AND destination_id = ?2",
                    [&dataset_uuid, run_id],
                    |r| r.get(0),
                )
                .optional()?;
            if input.is_none() {
                let input = uuid()?;
                transaction.execute(
                    "INSERT INTO inputs (input_uuid, source_type, source_id, destination_type, destination_id) \
                     VALUES (?1, 'DATASET', ?2, 'RUN', ?3)",
                    params![input, dataset_uuid, run_id],
                )?;
                transaction.execute(
                    "INSERT INTO input_tags (input_uuid, name, value) VALUES (?1, 'mlflow.data.context', ?2)",
                    params![input, dataset.context],
                )?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    fn delete_tag(&mut self, run_id: &str, key: &str) -> anyhow::Result<()> {
        self.connection.execute("DELETE FROM tags WHERE run_uuid = ?1 AND key = ?2", [run_id, key])?;
        Ok(())
    }

    fn upload(&mut self, run_id: &str, path: &str, file: &Path) -> anyhow::Result<()> {
        let target = self.artifact_folder(run_id)?.join(plain_relative(path)?);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
        }
        std::fs::copy(file, &target)
            .with_context(|| format!("cannot copy {} to {}", file.display(), target.display()))?;
        Ok(())
    }

    fn end_run(&mut self, run_id: &str, status: &str, end_time: i64) -> anyhow::Result<()> {
        self.connection.execute(
            "UPDATE runs SET status = ?2, end_time = ?3 WHERE run_uuid = ?1",
            params![run_id, status, end_time],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_paths_are_plain_relative_names() {
        assert_eq!(plain_relative("files/model/m.safetensors").unwrap(), Path::new("files/model/m.safetensors"));
        for bad in ["", "/etc/passwd", "files/../../x", "./x", "a/../b"] {
            assert!(plain_relative(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_uris_and_plain_paths_are_local_folders_and_other_schemes_are_not() {
        assert_eq!(local_folder("file:///a/b"), Some(PathBuf::from("/a/b")));
        assert_eq!(local_folder("/a/b"), Some(PathBuf::from("/a/b")));
        assert_eq!(local_folder("mlflow-artifacts:/1/x/artifacts"), None);
        assert_eq!(local_folder("s3://bucket/x"), None);
    }

    #[test]
    fn a_file_that_is_not_an_mlflow_store_is_refused_with_the_command_that_makes_one() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("mlflow.db");
        let error = MlflowSqlite::open(&missing).err().unwrap().to_string();
        assert!(error.contains("no MLflow store here") && error.contains("mlflow db upgrade sqlite:///"), "{error}");
        Connection::open(&missing).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
        let error = MlflowSqlite::open(&missing).err().unwrap().to_string();
        assert!(error.contains("not an MLflow store"), "{error}");
        Connection::open(&missing)
            .unwrap()
            .execute_batch("CREATE TABLE alembic_version (version_num); CREATE TABLE experiments (experiment_id)")
            .unwrap();
        let error = MlflowSqlite::open(&missing).err().unwrap().to_string();
        assert!(error.contains("table `experiments` has no column `name`"), "{error}");
    }
}
