//! The provenance store: one interface ([`Store`]) for recording runs and querying them, with
//! one backend per database. This crate is the only one that names SQL or a database driver;
//! callers see run records ([`record::RunRecord`]) and the plain rows below.
//!
//! # Design notes
//! - **Interface.** Every method takes `&self`: a backend keeps its connection behind interior
//!   mutability, so the pipeline, its plugin services and the commands can share one store by
//!   reference. A store is `Send` (one per process, never shared between threads at once).
//! - **Writes.** A run is written when it begins ([`Store::begin_run`]) and after every stage
//!   ([`Store::record`]), each in one transaction, so a run killed later keeps its completed
//!   stages. Per-epoch metrics are written as they happen (for `host runs watch`); the stage's
//!   record replaces them with the same values.
//! - **Liveness is not decided here.** The store lists running runs with their owner and
//!   heartbeat ([`Store::running_runs`]); the host decides which are dead and marks them.
//! - **Errors** carry one context line per public method naming the store, so both backends'
//!   errors read alike; "no such run" is a typed [`NoSuchRun`] callers can match.
//! - **Compatibility.** Schema changes are append-only migrations; a store written by a newer
//!   host is refused with the version it needs.

mod copy;
pub mod failpoint;
mod locator;
mod migration;
pub mod mlflow;
mod postgres;
pub mod query;
mod sqlite;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// The conformance suite every backend runs, and its fixtures (the query fixture is written by
/// the `store-fixture` binary for the Python reader's tests).
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod conformance;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use record::{Edge, RunOwner, RunRecord, RunStatus, StageName, TrialStatus};
use serde::Serialize;
use serde_json::Value;

pub use copy::{Copied, copy};
pub use locator::{Locator, LocatorError, PostgresUrl};
pub use query::{QueryError, RunPage, RunQuery};

/// The result of a store call.
pub type Result<T> = anyhow::Result<T>;

/// How to open a store. Backends ignore what does not apply to them.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenOptions {
    /// How long a writer waits for a busy store (SQLite).
    pub timeout: Duration,
    /// SQLite: `wal`, `delete` or `truncate`.
    pub journal_mode: String,
    /// SQLite: `normal` or `full`.
    pub synchronous: String,
    /// PostgreSQL: how long to wait for the server to answer a new connection.
    pub connect_timeout: Duration,
    /// PostgreSQL: how long to keep retrying (reconnecting, with backoff) when the server goes
    /// away in the middle of the work, before failing.
    pub retry_for: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            timeout: Duration::from_secs(30),
            journal_mode: "wal".into(),
            synchronous: "normal".into(),
            connect_timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(60),
        }
    }
}

/// Opens (creating and migrating if needed) the store at `locator`.
pub fn open(locator: &Locator, options: &OpenOptions) -> Result<Box<dyn Store>> {
    match locator {
        Locator::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open(path, options)?)),
        Locator::Postgres(url) => Ok(Box::new(postgres::PostgresStore::open(locator, url, options)?)),
    }
}

/// Opens the store at `locator` for reading: a SQLite file read-only (see
/// `SqliteStore::open_read_only`); a PostgreSQL store as [`open`] does (its reads need no write
/// permission once the schema is current).
pub fn open_read_only(locator: &Locator, options: &OpenOptions) -> Result<Box<dyn Store>> {
    match locator {
        Locator::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open_read_only(path, options)?)),
        Locator::Postgres(_) => open(locator, options),
    }
}

/// What `host store info` shows: the backend, its schema and what it holds.
#[derive(Debug, Clone, Serialize)]
pub struct StoreInfo {
    pub backend: &'static str,
    pub locator: String,
    /// The schema version the store is at, and the oldest schema a host must know to use it.
    pub schema_version: u32,
    pub compatible_from: u32,
    /// The newest schema this host knows.
    pub host_schema_version: u32,
    pub sweeps: i64,
    #[serde(flatten)]
    pub summary: Summary,
}

/// What SQLite's own consistency check says of the store file at `path`: `ok`, or what it
/// found. For fault tests and repair: a killed writer must leave a consistent file.
pub fn sqlite_integrity_check(path: &std::path::Path) -> Result<String> {
    sqlite::integrity_check(path)
}

/// The process driving a sweep (holding its lease) and when it last renewed it (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepDriver {
    pub owner: RunOwner,
    pub heartbeat_at: String,
}

/// A run recorded as running, its owner and its latest heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningRun {
    pub run_id: String,
    pub owner: RunOwner,
    /// RFC 3339.
    pub heartbeat_at: String,
}

/// A completed stage of an earlier run whose outputs a stage with the same key may reuse.
#[derive(Debug, Clone)]
pub struct CachedStage {
    pub run_id: String,
    pub output_dir: PathBuf,
    pub record: RunRecord,
}

/// Which runs `list_runs` returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub experiment: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: usize,
}

/// One line of `host runs list`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub experiment: String,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub config_sha256: String,
    pub test_accuracy: Option<f64>,
    /// Regression runs: the coefficient of determination on the test split.
    pub test_r2: Option<f64>,
}

/// What an annotation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnotationKind {
    /// A key and value (`owner=ana`); a newer tag of the same key replaces it, one without a
    /// value removes it.
    Tag,
    /// Free text.
    Note,
}

impl AnnotationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AnnotationKind::Tag => "tag",
            AnnotationKind::Note => "note",
        }
    }

    fn parse(text: &str) -> Result<AnnotationKind> {
        match text {
            "tag" => Ok(AnnotationKind::Tag),
            "note" => Ok(AnnotationKind::Note),
            other => anyhow::bail!("unknown annotation kind {other:?}"),
        }
    }
}

/// A tag or note on a run, kept outside its hashed record (verify and replay never see it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Annotation {
    pub kind: AnnotationKind,
    /// The tag's key; none for a note.
    pub name: Option<String>,
    /// The tag's value (none: the tag was removed) or the note's text.
    pub value: Option<String>,
    /// Who added it (the user name and machine).
    pub author: String,
    /// RFC 3339.
    pub created_at: String,
}

/// The outcome of checking a run's recorded files again (`host verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Verification {
    pub ok: bool,
    /// How many files did not match.
    pub problems: u64,
    /// RFC 3339.
    pub checked_at: String,
    pub hostname: String,
}

/// The current tags of a run from its annotations: the newest value of each key, removed keys
/// left out.
pub fn current_tags(annotations: &[Annotation]) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    for annotation in annotations.iter().filter(|a| a.kind == AnnotationKind::Tag) {
        let Some(name) = &annotation.name else { continue };
        match &annotation.value {
            Some(value) => tags.insert(name.clone(), value.clone()),
            None => tags.remove(name),
        };
    }
    tags
}

/// A plugin library build the store has seen, and how many runs used it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginBuild {
    pub sha256: String,
    pub plugin_name: String,
    pub plugin_version: String,
    pub sdk_version: String,
    /// Where it was when a run first recorded it.
    pub path: String,
    pub size: i64,
    pub runs: i64,
}

/// A file a run recorded, to check again.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedFile {
    /// `plugin <kind>`, or the artifact's kind (`model`, `metrics`, `train-images`, ...).
    pub role: String,
    pub path: String,
    pub sha256: String,
}

/// An entity in the lineage graph and how it was reached.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
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

/// Which way a lineage walk goes from an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Towards what it was derived from.
    Ancestors,
    /// Towards what was derived from it.
    Descendants,
}

/// One per-step metric: step, name, value.
pub type StepMetric = (i64, String, f64);

/// Counts for `host summary`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub runs_by_status: BTreeMap<String, i64>,
    /// Experiment name, its runs, its best test accuracy.
    pub experiments: Vec<(String, i64, Option<f64>)>,
    pub plugin_builds: i64,
    pub artifacts: i64,
    pub artifact_bytes: i64,
    pub lineage_edges: i64,
}

/// A sweep as it is begun.
#[derive(Debug, Clone)]
pub struct SweepStart {
    pub sweep_id: String,
    pub name: String,
    pub config: Value,
    pub metric: String,
    pub maximize: bool,
}

/// One trial of a sweep, as `host sweep show` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct TrialRow {
    pub trial: usize,
    pub parameters: Value,
    /// The trial's latest run.
    pub run_id: Option<String>,
    /// The trial's own status while its run is unknown; else its run's (pruned stays pruned).
    pub status: TrialStatus,
    /// The sweep's metric: as recorded at the trial's end, else its latest run's final value
    /// (a trial no driver followed to its end).
    pub metric: Option<f64>,
    /// Every run of the trial, oldest first: one per attempt (a requeued or resumed trial has
    /// several).
    pub attempts: Vec<String>,
    /// The scheduler job the trial was last submitted as, when a scheduler ran it.
    pub job: Option<SweepJob>,
}

/// A scheduler job a sweep submitted for one of its trials, and what the scheduler last said
/// of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SweepJob {
    pub trial: usize,
    /// `slurm`.
    pub scheduler: String,
    /// The job as the scheduler names it (`123_4`).
    pub job_id: String,
    pub submitted_at: String,
    /// The scheduler's state (`PENDING`, `RUNNING`, `COMPLETED`, `TIMEOUT`, ...), or
    /// `VANISHED` when it no longer knows the job.
    pub state: String,
    pub reason: Option<String>,
    pub updated_at: String,
}

/// A sweep as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    pub sweep_id: String,
    pub name: String,
    /// The sweep's canonical config (base and sweep section).
    pub config: Value,
    pub metric: String,
    pub maximize: bool,
    pub created_at: String,
    pub trials: Vec<TrialRow>,
}

/// What deleting a run left for the caller to remove from disk.
#[derive(Debug, Clone)]
pub struct DeletedRun {
    pub output_dir: PathBuf,
    /// Paths of the run's files that other runs still record: keep them.
    pub shared: Vec<PathBuf>,
}

/// The run asked for is not in the store.
#[derive(Debug, thiserror::Error)]
#[error("no run {run_id} in {store}; `host runs list` shows the runs")]
pub struct NoSuchRun {
    pub run_id: String,
    pub store: String,
}

/// Reads a stored run record. A record written by a newer host reads too (fields are only
/// ever added), but what this host does not know of it is left out: say so once per read.
fn read_record(text: &str) -> Result<RunRecord> {
    let record: RunRecord = serde_json::from_str(text)?;
    if record.record_version > record::RECORD_VERSION {
        tracing::warn!(
            "run {} was recorded by a newer host (record version {}, this host reads {}); fields this host does not know are left out",
            record.run_id,
            record.record_version,
            record::RECORD_VERSION
        );
    }
    Ok(record)
}

/// Time this process spent writing run records: the store half of the provenance overhead.
static WRITE_NANOS: AtomicU64 = AtomicU64::new(0);

/// Seconds spent in the store's run-record writes so far in this process.
pub fn write_seconds() -> f64 {
    WRITE_NANOS.load(Ordering::Relaxed) as f64 / 1e9
}

/// Runs one write, timed into [`write_seconds`].
fn timed_write<T>(write: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let result = write();
    WRITE_NANOS.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    result
}

/// The provenance store's interface. See the crate's design notes.
/// The stable read interface: views whose columns stay as listed while the tables behind them
/// change (a new version of a view gets a new name). Every view has a `run_id` column.
/// docs/reading-the-store.md documents them column by column.
pub const READ_VIEWS: [(&str, &[&str]); 6] = [
    (
        "runs_v1",
        &[
            "run_id",
            "experiment",
            "status",
            "started_at",
            "finished_at",
            "hostname",
            "config_file",
            "config_sha256",
            "dataset_sha256",
            "seed",
            "threads",
            "host_version",
            "git_commit",
            "git_dirty",
            "output_dir",
            "error",
            "failed_stage",
            "replay_of",
            "sweep_id",
            "trial",
            "loader_class",
            "loader_sha256",
            "model_class",
            "model_sha256",
            "report_class",
            "report_sha256",
            "verified",
        ],
    ),
    ("parameters_v1", &["run_id", "name", "type", "value_json"]),
    ("metrics_v1", &["run_id", "name", "step", "value", "value_json"]),
    ("files_v1", &["run_id", "role", "path", "sha256", "kind", "size"]),
    ("lineage_v1", &["run_id", "relation", "subject", "object", "activity", "parameters_json"]),
    ("annotations_v1", &["run_id", "kind", "name", "value", "author", "created_at", "seq"]),
];

/// A metric value as the `metrics` table holds it for queries: a finite number, else NULL (a
/// diverged loss), on both backends alike; the record keeps the value itself.
pub(crate) fn queryable(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// Migration 10 on SQLite: non-finite metric values become NULL as [`queryable`] now writes
/// them (SQLite kept infinities, PostgreSQL NaN too, so a NaN loss compared above every number
/// on one backend only); `annotations_v1` gains `seq`, the order tags and notes were written in
/// (`created_at` has one-second resolution).
pub(crate) const MIGRATION_10_SQLITE: &str = r#"
    UPDATE metrics SET value = NULL
    WHERE NOT (value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308);
    DROP VIEW annotations_v1;
    CREATE VIEW annotations_v1 AS SELECT run_id, kind, name, value, author, created_at, id AS seq FROM annotations;
"#;

/// Migration 10 on PostgreSQL, as on SQLite; the view is replaced in place (a column added at
/// its end), so views readers built on it and the grants on it stay.
pub(crate) const MIGRATION_10_POSTGRES: &str = r#"
    UPDATE metrics SET value = NULL
    WHERE NOT (value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308);
    CREATE OR REPLACE VIEW annotations_v1 AS
    SELECT run_id, kind, name, value, author, created_at, id AS seq FROM annotations;
"#;

/// The read views, as SQL both backends run (migration 9; `annotations_v1` as migration 10
/// redefines it).
pub(crate) const READ_VIEWS_SQL: &str = r#"
    CREATE VIEW runs_v1 AS
    SELECT r.run_id, e.name AS experiment, r.status, r.started_at, r.finished_at, r.hostname,
        r.config_file, r.config_sha256,
        (SELECT ra.sha256 FROM run_artifacts ra JOIN artifacts a ON a.sha256 = ra.sha256
         WHERE ra.run_id = r.run_id AND a.kind = 'dataset' LIMIT 1) AS dataset_sha256,
        r.seed, r.threads, r.host_version, r.git_commit,
        CASE WHEN r.git_dirty THEN 1 WHEN NOT r.git_dirty THEN 0 END AS git_dirty,
        r.output_dir, r.error, r.failed_stage, r.replay_of, r.sweep_id, r.trial,
        (SELECT p.class FROM run_plugins p WHERE p.run_id = r.run_id AND p.kind = 'Loader') AS loader_class,
        (SELECT p.library_sha256 FROM run_plugins p WHERE p.run_id = r.run_id AND p.kind = 'Loader') AS loader_sha256,
        (SELECT p.class FROM run_plugins p WHERE p.run_id = r.run_id AND p.kind = 'Model') AS model_class,
        (SELECT p.library_sha256 FROM run_plugins p WHERE p.run_id = r.run_id AND p.kind = 'Model') AS model_sha256,
        (SELECT p.class FROM run_plugins p WHERE p.run_id = r.run_id AND p.kind = 'ReportGenerator') AS report_class,
        (SELECT p.library_sha256 FROM run_plugins p WHERE p.run_id = r.run_id AND p.kind = 'ReportGenerator')
            AS report_sha256,
        (SELECT v.ok FROM verifications v WHERE v.run_id = r.run_id ORDER BY v.id DESC LIMIT 1) AS verified
    FROM runs r JOIN experiments e ON e.id = r.experiment_id;
    CREATE VIEW parameters_v1 AS SELECT run_id, name, type, value_json FROM parameters;
    CREATE VIEW metrics_v1 AS SELECT run_id, name, step, value, value_json FROM metrics;
    CREATE VIEW files_v1 AS
    SELECT ra.run_id, ra.role, ra.path, ra.sha256, a.kind, a.size
    FROM run_artifacts ra JOIN artifacts a ON a.sha256 = ra.sha256;
    CREATE VIEW lineage_v1 AS SELECT run_id, relation, subject, object, activity, parameters_json FROM lineage_edges;
    CREATE VIEW annotations_v1 AS SELECT run_id, kind, name, value, author, created_at FROM annotations;
"#;

/// One run's rows of a read view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViewRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// The SQL reading one run's rows of `view`, when it is one of [`READ_VIEWS`].
pub(crate) fn read_view_sql(view: &str, placeholder: &str) -> Result<String> {
    if !READ_VIEWS.iter().any(|(name, _)| *name == view) {
        let names: Vec<&str> = READ_VIEWS.iter().map(|(name, _)| *name).collect();
        anyhow::bail!("{view}: not a read view; the views are {}", names.join(", "));
    }
    Ok(format!("SELECT * FROM {view} WHERE run_id = {placeholder}"))
}

pub trait Store: Send {
    /// Where the store is: what workers are given, and what messages name.
    fn locator(&self) -> &Locator;

    // Recording a run.

    /// Records a run at its start: its experiment, config, parameters, environment, plugins and
    /// owner; links it to its sweep trial when it is one.
    fn begin_run(&self, record: &RunRecord) -> Result<()>;
    /// Records everything the run has produced so far, in one transaction.
    fn record(&self, record: &RunRecord) -> Result<()>;
    /// Keeps the run's heartbeat fresh.
    fn heartbeat(&self, run_id: &str) -> Result<()>;
    /// Records per-step metrics `(name, step, value)` as they happen (a step's at once), in
    /// one write, for `host runs watch`.
    fn live_metrics(&self, run_id: &str, metrics: &[(String, u64, f64)]) -> Result<()>;
    /// Records whole runs in one transaction (copies between stores, benchmarks).
    fn import_runs(&self, runs: &[RunRecord]) -> Result<()>;

    // The stage cache's index.

    /// Completed stages named `stage` with cache key `key`, newest first (a few: each is
    /// checked before its outputs are reused).
    fn cached_stages(&self, stage: StageName, key: &str) -> Result<Vec<CachedStage>>;

    // Runs.

    fn run_exists(&self, run_id: &str) -> Result<bool>;
    /// Runs, newest first.
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>>;
    /// The runs a query selects (its filter, order, columns and page) and how many match.
    fn query_runs(&self, query: &RunQuery) -> Result<RunPage>;
    /// A run's record as written at its last stage, with its current status and its config.
    fn run_record(&self, run_id: &str) -> Result<RunRecord>;
    fn run_status(&self, run_id: &str) -> Result<RunStatus>;
    /// Every file a run used or produced (plugin libraries included), with its recorded SHA-256.
    fn recorded_files(&self, run_id: &str) -> Result<Vec<RecordedFile>>;
    /// A run's parameters (dotted config keys) with their values.
    fn parameters(&self, run_id: &str) -> Result<BTreeMap<String, Value>>;
    /// A run's final scalar metrics (`test.accuracy`, `model.loss`, ...).
    fn final_metrics(&self, run_id: &str) -> Result<BTreeMap<String, f64>>;
    /// A run's per-step metrics after `after_step`, in step order.
    fn step_metrics(&self, run_id: &str, after_step: i64) -> Result<Vec<StepMetric>>;
    /// A run's values of one per-step metric, in step order.
    fn metric_curve(&self, run_id: &str, name: &str) -> Result<Vec<(i64, f64)>>;

    // Annotations and verifications: appended beside the record, never part of it.

    /// Appends a tag or note to a run.
    fn annotate(&self, run_id: &str, annotation: &Annotation) -> Result<()>;
    /// A run's annotations, oldest first.
    fn annotations(&self, run_id: &str) -> Result<Vec<Annotation>>;
    /// Appends the outcome of verifying a run.
    fn record_verification(&self, run_id: &str, verification: &Verification) -> Result<()>;
    /// A run's verifications, oldest first.
    fn verifications(&self, run_id: &str) -> Result<Vec<Verification>>;

    // Lineage.

    fn lineage_edges(&self, run_id: &str) -> Result<Vec<Edge>>;
    /// The `wasDerivedFrom` steps from any of `entities`, in one run or across every run:
    /// `(from, reached, activity)`, ordered by `reached`, then `from`, then activity.
    fn derived(
        &self,
        entities: &[String],
        direction: Direction,
        run: Option<&str>,
    ) -> Result<Vec<(String, String, Option<String>)>>;
    /// What entities are: kind and role or path, by digest (unknown digests left out).
    fn describe_entities(&self, sha256s: &[String]) -> Result<BTreeMap<String, (String, String)>>;
    /// The runs that used or produced `sha256` (the first `limit`, 0 for all, in id order) and
    /// how many there are in all.
    fn runs_using(&self, sha256: &str, limit: usize) -> Result<(Vec<String>, usize)>;
    /// The digests a run recorded, as (kind, sha256).
    fn run_entities(&self, run_id: &str) -> Result<Vec<(String, String)>>;
    /// Full SHA-256 digests of entities and plugin builds starting with `prefix`.
    fn expand_sha256(&self, prefix: &str) -> Result<Vec<String>>;
    fn summary(&self) -> Result<Summary>;
    /// Every plugin build recorded, by plugin name and version, with its runs counted.
    fn plugin_builds(&self) -> Result<Vec<PluginBuild>>;
    /// One run's rows of a read view ([`READ_VIEWS`]), as other readers (Python, `sqlite3`,
    /// `psql`) see them: the view's columns in order, and each row's values as JSON.
    fn read_view(&self, view: &str, run_id: &str) -> Result<ViewRows>;

    // Sweeps.

    /// Records a sweep (once: running it again resumes it).
    fn begin_sweep(&self, sweep: &SweepStart) -> Result<()>;
    /// A trial was submitted: running, no run yet, no metric.
    fn trial_started(&self, sweep_id: &str, trial: usize, parameters: &Value) -> Result<()>;
    /// A trial ended with this status and metric (its run was linked by the run itself).
    fn trial_ended(&self, sweep_id: &str, trial: usize, status: TrialStatus, metric: Option<f64>) -> Result<()>;
    /// A sweep and its trials in trial order.
    fn sweep(&self, sweep_id: &str) -> Result<SweepRow>;
    /// Every sweep id, newest first.
    fn sweep_ids(&self) -> Result<Vec<String>>;
    /// Records a sweep and its trials (and their scheduler jobs) as another store holds them
    /// (trials whose run is not in this store keep no run). A trial this store has already is
    /// replaced only by one that is done (completed or pruned) where this store's is not: two
    /// machines' runs of one sweep file merge, and a copy never undoes a result. Idempotent.
    fn import_sweep(&self, sweep: &SweepRow) -> Result<()>;
    /// Records a scheduler job submitted for a trial (again: its state is updated).
    fn job_submitted(&self, sweep_id: &str, job: &SweepJob) -> Result<()>;
    /// Takes (or renews) the lease on driving a recorded sweep for `owner`: granted when nobody
    /// holds it, `owner` does, or the holder's renewal is still `expired` (the time read before,
    /// so two processes taking over a dead holder cannot both win). Returns the holder when not
    /// granted.
    fn lease_sweep(&self, sweep_id: &str, owner: &RunOwner, expired: Option<&str>) -> Result<Option<SweepDriver>>;
    /// Gives the lease up, if `owner` holds it.
    fn release_sweep(&self, sweep_id: &str, owner: &RunOwner) -> Result<()>;
    /// Records what the scheduler says of a job now.
    fn job_state(&self, sweep_id: &str, trial: usize, job_id: &str, state: &str, reason: Option<&str>) -> Result<()>;

    // Maintenance.

    /// Runs recorded as running, with their owners and heartbeats.
    fn running_runs(&self) -> Result<Vec<RunningRun>>;
    /// Records how a run ended when its own process could not say (it was killed), or said
    /// less than its scheduler knows (a time limit's SIGTERM looks like a cancel to the run):
    /// `status` and `reason` replace its status and error, and its end time is set if unset,
    /// only while its status is one of `from`. Returns whether it changed.
    fn settle_run(&self, run_id: &str, status: RunStatus, reason: &str, from: &[RunStatus]) -> Result<bool>;
    /// Deletes a run that is not running: its rows, then artifacts and plugin builds no run
    /// refers to any more.
    fn delete_run(&self, run_id: &str) -> Result<DeletedRun>;
    /// The backend, schema version and counts.
    fn info(&self) -> Result<StoreInfo>;
}

impl dyn Store + '_ {
    /// Marks a run that is still recorded as running interrupted, saying why; false when it
    /// had ended.
    pub fn mark_interrupted(&self, run_id: &str, reason: &str) -> Result<bool> {
        self.settle_run(run_id, RunStatus::Interrupted, reason, &[RunStatus::Running])
    }

    /// Fails with [`NoSuchRun`] unless `run_id` is in the store.
    pub fn require_run(&self, run_id: &str) -> Result<()> {
        if self.run_exists(run_id)? {
            Ok(())
        } else {
            Err(NoSuchRun { run_id: run_id.to_owned(), store: self.locator().to_string() }.into())
        }
    }

    /// What an entity is: its kind and its role or path (`unknown` when the store has none).
    pub fn entity_description(&self, sha256: &str) -> Result<(String, String)> {
        Ok(self
            .describe_entities(&[sha256.to_owned()])?
            .remove(sha256)
            .unwrap_or_else(|| ("unknown".into(), String::new())))
    }

    /// Walks `wasDerivedFrom` edges from `sha256` breadth first, a level per query (so a walk
    /// over hundreds of entities costs a few round trips on a server), across every run or
    /// within one run's record. Stops after `limit` entities (0: no limit); the flag says
    /// whether it stopped early.
    pub fn lineage_walk(
        &self,
        sha256: &str,
        direction: Direction,
        run: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<LineageStep>, bool)> {
        let mut seen = std::collections::HashSet::from([sha256.to_owned()]);
        let mut frontier = vec![sha256.to_owned()];
        let mut steps = Vec::new();
        let mut truncated = false;
        let mut depth = 0;
        while !frontier.is_empty() && !truncated {
            depth += 1;
            let mut reached: Vec<(String, String, Option<String>)> = Vec::new();
            for (from, entity, activity) in self.derived(&frontier, direction, run)? {
                if !seen.insert(entity.clone()) {
                    continue;
                }
                if limit > 0 && steps.len() + reached.len() >= limit {
                    truncated = true;
                    break;
                }
                reached.push((entity, from, activity));
            }
            frontier = reached.iter().map(|(entity, _, _)| entity.clone()).collect();
            let mut described = self.describe_entities(&frontier)?;
            for (entity, via, activity) in reached {
                let (kind, label) = described.remove(&entity).unwrap_or_else(|| ("unknown".into(), String::new()));
                steps.push(LineageStep { sha256: entity, kind, label, via, activity, depth });
            }
        }
        steps.sort_by(|a, b| a.depth.cmp(&b.depth).then(a.sha256.cmp(&b.sha256)));
        Ok((steps, truncated))
    }
}
