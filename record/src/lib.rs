//! The run record: what one run used and produced, as typed data. It is written in four places
//! (the run folder's `run.json`, the store, `host run --json`, exports) and read back from each,
//! so it is a format with a version ([`RECORD_VERSION`]): fields are only ever added, with
//! defaults, so a newer host reads every older record.
//!
//! This crate is a leaf: it does no I/O and imports nothing of the pipeline, the store or the
//! commands. Statuses, stage names and lineage relations are enums here, spelled once.

mod lineage;
mod status;
mod time;

use std::collections::BTreeMap;
use std::path::PathBuf;

use plugin_sdk::{ClassKind, FitSummary, TaskKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use lineage::{Edge, Relation, lineage};
pub use status::{ArtifactKind, RunStatus, StageName, StageStatus, TrialStatus};
pub use time::{new_run_id, now_rfc3339, parse_rfc3339, rfc3339, rfc3339_seconds_ago};

/// The version of the record's format. Bump it when a field's meaning changes (adding a field
/// with a default does not need it).
pub const RECORD_VERSION: u32 = 1;

fn record_version() -> u32 {
    RECORD_VERSION
}

/// A plugin class a run used, and the exact library build that provided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginUse {
    pub kind: ClassKind,
    pub class: String,
    pub plugin_name: String,
    pub plugin_version: String,
    pub sdk_version: String,
    pub library: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// One stage of a run, once it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub name: StageName,
    pub status: StageStatus,
    pub seconds: f64,
    /// The config the stage ran with (its class's sections; for prepare the host's data keys).
    #[serde(default)]
    pub parameters: Value,
    /// The stage-cache key: what the stage's outputs depend on (`None` for stages never reused).
    #[serde(default)]
    pub cache_key: Option<String>,
    /// The earlier run whose outputs this stage reused instead of recomputing.
    #[serde(default)]
    pub reused_from: Option<String>,
}

/// Wall time a run spent on provenance: hashing data and files, and store writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceTime {
    /// Wall time of every hash the process computed, on whatever thread.
    pub hashing_seconds: f64,
    /// Time the run's own thread waited for the store: its writes, or, where a writer thread
    /// makes them while the run goes on, the wait for the last of them.
    pub store_seconds: f64,
    /// Wall time of every store write the process made, on whatever thread (the writer's and
    /// the heartbeat's included).
    #[serde(default)]
    pub store_write_seconds: f64,
}

/// A file the run read or wrote, content-addressed. Paths are absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileArtifact {
    pub kind: ArtifactKind,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// A content-addressed data entity (a dataset or a split at some step of its preparation).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DataEntity {
    pub label: String,
    pub sha256: String,
}

/// One transform of the data: its parameters, the entities it used and those it generated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transform {
    pub name: String,
    pub parameters: Value,
    pub inputs: Vec<DataEntity>,
    pub outputs: Vec<DataEntity>,
    pub seconds: f64,
}

/// A split's size and content digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRecord {
    pub rows: usize,
    pub sha256: String,
}

/// What the run's data was and how it was prepared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct DataRecord {
    pub description: String,
    /// The loaded dataset's content digest, made as [`DataRecord::digest_scheme`] says.
    pub dataset_sha256: String,
    /// How `dataset_sha256` (and the split digests derived from it) were made: `xxh3-128`
    /// (SHA-256 over each tensor's dtype, shape and the XXH3-128 of its bytes); empty in records
    /// of earlier hosts, which hashed the bytes with SHA-256 (so the same data has another digest).
    pub digest_scheme: String,
    pub task: Option<TaskKind>,
    pub label_names: Vec<String>,
    pub sample_shape: Vec<usize>,
    pub splits: BTreeMap<String, SplitRecord>,
    pub transforms: Vec<Transform>,
    /// What the loader said about the data (its `Dataset::metadata`: names, source, counts).
    pub metadata: Value,
}

/// The machine a run ran on: what its numbers depend on beyond the code and the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Environment {
    pub os: String,
    pub arch: String,
    /// The CPU's model name.
    pub cpu: String,
    /// Which CPU beyond its model name, which virtual machines often shorten (two generations
    /// both say `AMD EPYC`): `family 26 model 2` on x86, `implementer 0x41 part 0xd0c` on Arm.
    /// Empty when unknown or recorded by an earlier host.
    pub cpu_id: String,
    /// Logical CPUs this process may use.
    pub cores: usize,
    /// Compute threads the run was granted.
    pub threads: usize,
    pub rustc: String,
    /// Core topology: sockets, cores per socket, hardware threads per core (0 when unknown).
    pub sockets: usize,
    pub cores_per_socket: usize,
    pub threads_per_core: usize,
    /// The vector and math instruction-set extensions the CPU reports (`avx2`, `avx512f`,
    /// `fma`, ...): libraries pick kernels by them, so results may differ between machines
    /// whose sets differ.
    pub cpu_flags: Vec<String>,
}

/// The git commit of the experiment's repository and whether its work tree was dirty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct GitState {
    pub commit: Option<String>,
    pub dirty: Option<bool>,
}

/// The process that ran a run: where its liveness can be judged. A process id means something
/// only on the machine (boot) and in the PID namespace it was taken in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunOwner {
    pub hostname: String,
    pub pid: u32,
    /// `/proc/sys/kernel/random/boot_id`: changes at every boot of the machine.
    pub boot_id: String,
    /// The PID namespace (`pid:[4026531836]`): containers sharing a hostname differ here.
    pub pid_namespace: String,
}

/// Where a batch scheduler ran a run: what a scientist asks of a run that died on a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SchedulerContext {
    /// `slurm`.
    pub scheduler: String,
    pub cluster: String,
    /// The job as its scheduler names it (`123_4` for task 4 of array job 123).
    pub job_id: String,
    pub array_job_id: Option<String>,
    pub array_task_id: Option<u64>,
    /// How many times the job was requeued before this attempt.
    pub restart_count: u32,
    pub submit_time: Option<String>,
    pub start_time: Option<String>,
    pub node: String,
    pub partition: String,
    /// CPUs allocated to the task.
    pub cpus: Option<usize>,
    /// GPUs allocated (the scheduler's list, as CUDA sees them).
    pub gpus: Option<String>,
    pub time_limit: Option<String>,
    pub submit_host: Option<String>,
}

impl SchedulerContext {
    /// One line: `slurm job 12_3 (restart 1) on node-1 of cluster c, partition gpu, 4 CPUs,
    /// GPUs 0,1, time limit 02:00:00, submitted 2026-12-01T10:00:00 from login-1`.
    pub fn describe(&self) -> String {
        let mut text = format!("{} job {}", self.scheduler, self.job_id);
        if self.restart_count > 0 {
            text.push_str(&format!(" (restart {})", self.restart_count));
        }
        text.push_str(&format!(" on {}", self.node));
        if !self.cluster.is_empty() {
            text.push_str(&format!(" of cluster {}", self.cluster));
        }
        if !self.partition.is_empty() {
            text.push_str(&format!(", partition {}", self.partition));
        }
        if let Some(cpus) = self.cpus {
            text.push_str(&format!(", {cpus} CPUs"));
        }
        if let Some(gpus) = &self.gpus {
            text.push_str(&format!(", GPUs {gpus}"));
        }
        if let Some(limit) = &self.time_limit {
            text.push_str(&format!(", time limit {limit}"));
        }
        if let Some(submitted) = &self.submit_time {
            text.push_str(&format!(", submitted {submitted}"));
        }
        if let Some(host) = &self.submit_host {
            text.push_str(&format!(" from {host}"));
        }
        text
    }
}

/// A run that is one trial of a sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialRef {
    pub sweep_id: String,
    pub trial: usize,
}

/// Everything about one run: what `host run --json` prints, `run.json` holds, the store keeps
/// and exports carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    #[serde(default = "record_version")]
    pub record_version: u32,
    pub run_id: String,
    pub experiment_name: String,
    pub status: RunStatus,
    pub config_file: PathBuf,
    pub config_sha256: String,
    /// The whole config with every default filled in.
    #[serde(default)]
    pub config: Value,
    /// The folder the run ran in: relative paths in its config resolve against it.
    #[serde(default)]
    pub working_dir: PathBuf,
    /// The saved model evaluated instead of training (`host run --model-from`).
    #[serde(default)]
    pub model_from: Option<PathBuf>,
    /// The run this one replayed (`host replay`).
    #[serde(default)]
    pub replay_of: Option<String>,
    /// The sweep trial this run is (`host sweep`).
    #[serde(default)]
    pub trial: Option<TrialRef>,
    /// The batch scheduler's job this run ran in.
    #[serde(default)]
    pub scheduler: Option<SchedulerContext>,
    /// The earlier, unfinished attempt of the same trial that this run continues (a requeued
    /// or re-run trial): its completed stages come from the stage cache, and its model's last
    /// checkpoint is offered to the model.
    #[serde(default)]
    pub previous_attempt: Option<String>,
    pub seed: u64,
    pub threads: usize,
    pub output_dir: PathBuf,
    pub started_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub environment: Environment,
    #[serde(default)]
    pub git: GitState,
    /// The process that ran it.
    #[serde(default)]
    pub owner: RunOwner,
    /// The host's version (its `host:` agent in the lineage).
    #[serde(default)]
    pub host_version: String,
    #[serde(default)]
    pub plugins: Vec<PluginUse>,
    #[serde(default)]
    pub stages: Vec<StageRecord>,
    #[serde(default)]
    pub source_files: Vec<FileArtifact>,
    #[serde(default)]
    pub data: DataRecord,
    /// The content digest of each prepared split (by name) as this run wrote it to, or read it
    /// from, the stage cache: a cached file that does not match is never reused, and `verify`
    /// checks the cache against it. Empty when the run used no cache.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cached_splits: BTreeMap<String, String>,
    #[serde(default)]
    pub fit: Option<FitSummary>,
    /// Per-epoch metrics: epoch -> name -> value. A non-finite value (a diverged loss) is
    /// written as `null` and read back as NaN.
    #[serde(default, deserialize_with = "history_with_nan")]
    pub history: BTreeMap<u64, BTreeMap<String, f64>>,
    /// The final metrics: `test` (the host's), `model` and `custom` (the model's own).
    #[serde(default)]
    pub metrics: Option<Value>,
    #[serde(default)]
    pub artifacts: Vec<FileArtifact>,
    #[serde(default)]
    pub failed_stage: Option<StageName>,
    #[serde(default)]
    pub error: Option<String>,
    /// Measured when the run ends (after its last store write), so only `run.json` and
    /// `host run --json` carry it.
    #[serde(default)]
    pub provenance: Option<ProvenanceTime>,
}

/// Reads per-epoch metrics in which JSON `null` stands for a value that was not finite.
fn history_with_nan<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<u64, BTreeMap<String, f64>>, D::Error> {
    let history: BTreeMap<u64, BTreeMap<String, Option<f64>>> = Deserialize::deserialize(deserializer)?;
    Ok(history
        .into_iter()
        .map(|(epoch, values)| (epoch, values.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect()))
        .collect())
}

impl RunRecord {
    /// The version of the host that recorded the run (records from before it was kept were
    /// written by hosts of this workspace's version).
    pub fn host_version(&self) -> &str {
        if self.host_version.is_empty() { env!("CARGO_PKG_VERSION") } else { &self.host_version }
    }

    /// A final metric by its dotted name (`test.accuracy`, `test.top_k_accuracy.top_3`).
    pub fn metric(&self, dotted: &str) -> Option<f64> {
        self.metrics.as_ref()?.pointer(&format!("/{}", dotted.replace('.', "/")))?.as_f64()
    }

    /// The stage named `name`, if it ended.
    pub fn stage(&self, name: StageName) -> Option<&StageRecord> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Whether the stage `name` completed.
    pub fn stage_completed(&self, name: StageName) -> bool {
        self.stage(name).is_some_and(|s| s.status == StageStatus::Completed)
    }

    /// The plugin of `kind` the run used.
    pub fn plugin(&self, kind: ClassKind) -> Option<&PluginUse> {
        self.plugins.iter().find(|p| p.kind == kind)
    }

    /// The run's files of the given kinds.
    pub fn files_of<'a>(&'a self, kinds: &'a [ArtifactKind]) -> impl Iterator<Item = &'a FileArtifact> + 'a {
        self.artifacts.iter().filter(move |a| kinds.contains(&a.kind))
    }
}

/// Flattens a JSON value into dotted keys (`training.learning_rate`), lists kept whole: a run's
/// parameters as the store indexes them, and its metrics likewise.
pub fn flatten(value: &Value) -> Vec<(String, Value)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    walk(&path, inner, out);
                }
            }
            other => out.push((prefix.to_owned(), other.clone())),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattening_gives_dotted_keys_and_keeps_lists_whole() {
        let flat = flatten(&json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"}));
        assert_eq!(flat, vec![("a.b".into(), json!(1)), ("a.c".into(), json!([1, 2])), ("d".into(), json!("x"))]);
    }

    /// Records written before a field existed still read: every added field has a default.
    #[test]
    fn an_older_record_without_the_newer_fields_reads_back() {
        let old = json!({
            "run_id": "20261126-072214-5d782b", "experiment_name": "e", "status": "completed",
            "config_file": "config/x.yaml", "config_sha256": "ab", "working_dir": "/w", "model_from": null,
            "replay_of": null, "seed": 42, "threads": 2, "output_dir": "/w/runs/x", "started_at": "2026-11-26T07:22:14Z",
            "finished_at": "2026-11-26T07:22:18Z", "seconds": 3.2, "plugins": [], "stages": [
                {"name": "load", "status": "completed", "seconds": 0.1, "parameters": {}, "cache_key": "k", "reused_from": null}
            ],
            "source_files": [{"kind": "train-images", "path": "/d/a", "sha256": "aa", "size": 3}],
            "data": {"description": "", "dataset_sha256": "dd", "task": "classification", "label_names": [],
                     "sample_shape": [], "splits": {}, "transforms": [], "metadata": null},
            "fit": null, "history": {"1": {"loss": 0.5}}, "metrics": {"test": {"accuracy": 0.9}},
            "artifacts": [{"kind": "model", "path": "/w/runs/x/model/m", "sha256": "mm", "size": 1}],
            "failed_stage": null, "error": null, "provenance": null
        });
        let record: RunRecord = serde_json::from_value(old).unwrap();
        assert_eq!(record.record_version, RECORD_VERSION);
        assert_eq!(record.stages[0].name, StageName::Load);
        assert_eq!(record.source_files[0].kind, ArtifactKind::Source("train-images".into()));
        assert_eq!(record.artifacts[0].kind, ArtifactKind::Model);
        assert_eq!(record.history[&1]["loss"], 0.5);
        assert_eq!(record.metric("test.accuracy"), Some(0.9));
        assert_eq!(record.environment, Environment::default());
        // And writes back the same spellings.
        let again = serde_json::to_value(&record).unwrap();
        assert_eq!(again["stages"][0]["name"], "load");
        assert_eq!(again["source_files"][0]["kind"], "train-images");
        assert_eq!(again["history"]["1"]["loss"], 0.5);
    }

    /// Regression (review of the redesign): a diverged run's history holds NaN, which JSON
    /// writes as null; the record must still read back.
    #[test]
    fn a_history_with_a_non_finite_value_reads_back_as_nan() {
        let mut record: RunRecord = serde_json::from_value(json!({
            "run_id": "r", "experiment_name": "e", "status": "failed", "config_file": "c", "config_sha256": "s",
            "seed": 1, "threads": 1, "output_dir": "/o", "started_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        record.history.insert(1, [("loss".to_owned(), f64::NAN), ("accuracy".to_owned(), 0.5)].into());
        let text = serde_json::to_string(&record).unwrap();
        assert!(text.contains(r#""loss":null"#), "{text}");
        let read: RunRecord = serde_json::from_str(&text).unwrap();
        assert!(read.history[&1]["loss"].is_nan());
        assert_eq!(read.history[&1]["accuracy"], 0.5);
    }
}
