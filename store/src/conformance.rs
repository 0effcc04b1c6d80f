//! The store interface's conformance suite: what every backend must do, tested through
//! [`Store`] alone. A backend runs it with [`conformance_suite!`], which makes one `#[test]`
//! per case from a function that opens a fresh, empty store of that backend.

use std::path::PathBuf;

use plugin_sdk::{ClassKind, TaskKind};
use record::{
    ArtifactKind, DataEntity, DataRecord, FileArtifact, PluginUse, RunRecord, RunStatus, SplitRecord, StageName,
    StageRecord, StageStatus, Transform, TrialRef, TrialStatus,
};
use serde_json::json;

use record::RunOwner;

use crate::query::{RunQuery, parse_columns, parse_filter, parse_order};
use crate::{Annotation, AnnotationKind, Direction, NoSuchRun, RunFilter, Store, SweepStart, Verification};

/// Makes one test per conformance case for the backend that `$open` (an expression giving a
/// fresh `(Box<dyn Store>, guard)`, the guard kept alive for the test) opens.
#[cfg(test)]
macro_rules! conformance_suite {
    ($open:expr) => {
        $crate::conformance::conformance_suite!(@cases $open;
            a_begun_run_reads_back_as_running_with_its_config,
            a_recorded_run_reads_back_typed_and_whole,
            runs_list_newest_first_and_filter,
            metrics_are_flattened_and_followed_live,
            the_stage_cache_finds_completed_stages_by_key_newest_first,
            lineage_is_derived_walked_and_searched,
            sweeps_resume_and_trials_follow_their_runs,
            running_runs_are_listed_and_marked_interrupted_once,
            deleting_a_run_keeps_what_other_runs_recorded,
            unknown_runs_are_a_typed_error,
            imported_runs_are_whole_and_summarised,
            a_diverged_history_reads_back_with_its_nan,
            a_reference_to_a_run_not_in_the_store_is_kept_in_the_record_only,
            a_run_is_finished_in_its_row_only_once_it_ends,
            records_written_stage_by_stage_end_as_one_whole_write,
            a_trials_attempts_and_scheduler_jobs_are_kept,
            one_process_at_a_time_drives_a_sweep,
            the_query_language_filters_orders_and_pages,
            annotations_and_verifications_are_appended_beside_the_record,
            the_read_views_keep_their_columns_and_show_the_record,
        );
    };
    (@cases $open:expr; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                let (store, _guard) = $open;
                $crate::conformance::$case(&*store);
            }
        )+
    };
}
#[cfg(test)]
pub(crate) use conformance_suite;

fn owner() -> RunOwner {
    RunOwner { hostname: "node-1".into(), pid: 4242, boot_id: "boot-1".into(), pid_namespace: "pid:[1]".into() }
}

/// A sweep of id `sweep_id`, maximising test accuracy.
fn sweep_start(sweep_id: &str) -> SweepStart {
    SweepStart {
        sweep_id: sweep_id.into(),
        name: "s".into(),
        config: json!({"sweep": {}}),
        metric: "test.accuracy".into(),
        maximize: true,
    }
}

fn sha(tag: &str) -> String {
    format!("{tag:0<64}")
}

/// A run at its start, as the pipeline begins one.
pub fn started(run_id: &str, experiment: &str, started_at: &str) -> RunRecord {
    RunRecord {
        record_version: record::RECORD_VERSION,
        run_id: run_id.into(),
        experiment_name: experiment.into(),
        status: RunStatus::Running,
        config_file: PathBuf::from("/w/config/x.yaml"),
        config_sha256: sha("c0"),
        config: json!({"experiment_name": experiment, "seed": 7, "training": {"learning_rate": 0.01, "layers": [8, 4]}}),
        working_dir: PathBuf::from("/w"),
        model_from: None,
        replay_of: None,
        trial: None,
        scheduler: None,
        previous_attempt: None,
        seed: 7,
        threads: 2,
        output_dir: PathBuf::from(format!("/w/runs/{run_id}")),
        started_at: started_at.into(),
        finished_at: None,
        seconds: 0.0,
        environment: record::Environment { os: "Debian".into(), cores: 2, threads: 2, ..Default::default() },
        git: record::GitState { commit: Some("abc".into()), dirty: Some(false) },
        owner: owner(),
        host_version: "0.1.0".into(),
        plugins: vec![PluginUse {
            kind: ClassKind::Model,
            class: "MLP".into(),
            plugin_name: "p".into(),
            plugin_version: "1.0.0".into(),
            sdk_version: "0.1.0".into(),
            library: PathBuf::from("/w/plugins/libp.so"),
            sha256: sha("11"),
            size: 10,
        }],
        stages: Vec::new(),
        source_files: Vec::new(),
        data: DataRecord::default(),
        cached_splits: Default::default(),
        fit: None,
        history: Default::default(),
        metrics: None,
        artifacts: Vec::new(),
        failed_stage: None,
        error: None,
        provenance: None,
    }
}

/// The same run once every stage completed: raw file -> dataset -> splits -> model -> metrics.
pub fn completed(mut record: RunRecord, accuracy: f64) -> RunRecord {
    let dir = record.output_dir.clone();
    let file = |kind: ArtifactKind, name: &str, digest: &str| FileArtifact {
        kind,
        path: dir.join(name),
        sha256: sha(digest),
        size: 3,
    };
    record.source_files = vec![FileArtifact {
        kind: ArtifactKind::Source("train-images".into()),
        path: "/d/raw".into(),
        sha256: sha("aa"),
        size: 9,
    }];
    record.data = DataRecord {
        description: "tiny".into(),
        dataset_sha256: sha("da"),
        digest_scheme: "xxh3-128".into(),
        task: Some(TaskKind::Classification),
        label_names: vec!["a".into(), "b".into()],
        sample_shape: vec![4],
        splits: [("train", "51"), ("test", "53")]
            .into_iter()
            .map(|(n, d)| (n.to_owned(), SplitRecord { rows: 5, sha256: sha(d) }))
            .collect(),
        transforms: vec![Transform {
            name: "split".into(),
            parameters: json!({"seed": 7}),
            inputs: vec![DataEntity { label: "dataset".into(), sha256: sha("da") }],
            outputs: vec![
                DataEntity { label: "train".into(), sha256: sha("51") },
                DataEntity { label: "test".into(), sha256: sha("53") },
            ],
            seconds: 0.0,
        }],
        metadata: json!({}),
    };
    for (name, key) in
        [(StageName::Load, "kl"), (StageName::Prepare, "kp"), (StageName::Train, "kt"), (StageName::Evaluate, "ke")]
    {
        record.stages.push(StageRecord {
            name,
            status: StageStatus::Completed,
            seconds: 0.5,
            parameters: json!({}),
            cache_key: Some(key.into()),
            reused_from: None,
        });
    }
    record.artifacts = vec![
        file(ArtifactKind::Model, "model/m.safetensors", "m0"),
        file(ArtifactKind::Metrics, "metrics.json", &format!("{accuracy}")),
    ];
    record.history = [(1u64, [("loss".to_owned(), 0.5)].into()), (2, [("loss".to_owned(), 0.25)].into())].into();
    record.metrics = Some(json!({"test": {"accuracy": accuracy, "confusion": [[1, 0], [0, 1]]}, "model": {}}));
    record.status = RunStatus::Completed;
    record.finished_at = Some(record.started_at.clone());
    record.seconds = 2.0;
    record
}

fn begin(store: &dyn Store, record: &RunRecord) {
    store.begin_run(record).unwrap();
}

pub fn a_begun_run_reads_back_as_running_with_its_config(store: &dyn Store) {
    let record = started("r1", "e", "2026-01-01T00:00:00Z");
    begin(store, &record);
    assert!(store.run_exists("r1").unwrap());
    let read = store.run_record("r1").unwrap();
    assert_eq!(read, record);
    assert_eq!(store.run_status("r1").unwrap(), RunStatus::Running);
    let parameters = store.parameters("r1").unwrap();
    assert_eq!(parameters["training.learning_rate"], json!(0.01));
    assert_eq!(parameters["training.layers"], json!([8, 4]));
}

pub fn a_recorded_run_reads_back_typed_and_whole(store: &dyn Store) {
    let record = started("r1", "e", "2026-01-01T00:00:00Z");
    begin(store, &record);
    let done = completed(record, 0.75);
    store.record(&done).unwrap();
    assert_eq!(store.run_record("r1").unwrap(), done);
    let files: Vec<(String, String)> =
        store.recorded_files("r1").unwrap().into_iter().map(|f| (f.role, f.sha256)).collect();
    assert!(files.contains(&("plugin Model".into(), sha("11"))), "{files:?}");
    assert!(files.contains(&("model".into(), sha("m0"))), "{files:?}");
    assert!(files.contains(&("train-images".into(), sha("aa"))), "{files:?}");
    // Recording again (the next stage) replaces, never duplicates.
    store.record(&done).unwrap();
    assert_eq!(store.recorded_files("r1").unwrap().len(), files.len());
    assert_eq!(store.step_metrics("r1", 0).unwrap().len(), 2);
}

pub fn runs_list_newest_first_and_filter(store: &dyn Store) {
    for (id, experiment, at) in [
        ("a", "one", "2026-01-01T00:00:01Z"),
        ("b", "two", "2026-01-01T00:00:03Z"),
        ("c", "one", "2026-01-01T00:00:02Z"),
    ] {
        begin(store, &started(id, experiment, at));
    }
    store.record(&completed(store.run_record("c").unwrap(), 0.5)).unwrap();
    let ids = |filter: RunFilter| -> Vec<String> {
        store.list_runs(&filter).unwrap().into_iter().map(|r| r.run_id).collect()
    };
    assert_eq!(ids(RunFilter { limit: 10, ..Default::default() }), ["b", "c", "a"]);
    assert_eq!(ids(RunFilter { limit: 2, ..Default::default() }), ["b", "c"]);
    assert_eq!(ids(RunFilter { experiment: Some("one".into()), limit: 10, ..Default::default() }), ["c", "a"]);
    assert_eq!(ids(RunFilter { status: Some(RunStatus::Completed), limit: 10, ..Default::default() }), ["c"]);
    let rows = store.list_runs(&RunFilter { limit: 10, ..Default::default() }).unwrap();
    assert_eq!(rows[1].test_accuracy, Some(0.5));
    assert_eq!(rows[1].status, RunStatus::Completed);
    assert_eq!(rows[0].test_accuracy, None);
}

pub fn metrics_are_flattened_and_followed_live(store: &dyn Store) {
    let record = started("r1", "e", "2026-01-01T00:00:00Z");
    begin(store, &record);
    store.live_metrics("r1", &[("loss".into(), 1, 0.9), ("accuracy".into(), 1, 0.4)]).unwrap();
    store.live_metrics("r1", &[("loss".into(), 2, 0.8)]).unwrap();
    assert_eq!(
        store.step_metrics("r1", 1).unwrap(),
        vec![(2, "loss".to_owned(), 0.8)],
        "only steps after the one asked for"
    );
    assert_eq!(store.metric_curve("r1", "loss").unwrap(), vec![(1, 0.9), (2, 0.8)]);
    store.record(&completed(record, 0.75)).unwrap();
    let metrics = store.final_metrics("r1").unwrap();
    assert_eq!(metrics["test.accuracy"], 0.75);
    assert!(!metrics.contains_key("test.confusion"), "structured values are not scalars: {metrics:?}");
    // The record's history replaced the live rows.
    assert_eq!(store.metric_curve("r1", "loss").unwrap(), vec![(1, 0.5), (2, 0.25)]);
    assert_eq!(store.metric_curve("r1", "accuracy").unwrap(), vec![]);
}

pub fn the_stage_cache_finds_completed_stages_by_key_newest_first(store: &dyn Store) {
    for (id, at) in [("old", "2026-01-01T00:00:01Z"), ("new", "2026-01-01T00:00:02Z")] {
        let record = started(id, "e", at);
        begin(store, &record);
        store.record(&completed(record, 0.5)).unwrap();
    }
    let mut failed = completed(started("failed", "e", "2026-01-01T00:00:03Z"), 0.5);
    begin(store, &started("failed", "e", "2026-01-01T00:00:03Z"));
    failed.stages[2].status = StageStatus::Failed;
    store.record(&failed).unwrap();
    let hits: Vec<String> =
        store.cached_stages(StageName::Train, "kt").unwrap().into_iter().map(|c| c.run_id).collect();
    assert_eq!(hits, ["new", "old"], "completed stages only, newest first");
    // The failed run's load stage completed, so it is found for load.
    assert_eq!(store.cached_stages(StageName::Load, "kl").unwrap()[0].run_id, "failed");
    let hit = &store.cached_stages(StageName::Train, "kt").unwrap()[0];
    assert_eq!(hit.output_dir, PathBuf::from("/w/runs/new"));
    assert_eq!(hit.record.data.dataset_sha256, sha("da"));
    assert!(store.cached_stages(StageName::Evaluate, "kt").unwrap().is_empty(), "the key is per stage");
    assert!(store.cached_stages(StageName::Train, "other").unwrap().is_empty());
}

pub fn lineage_is_derived_walked_and_searched(store: &dyn Store) {
    let record = started("r1", "e", "2026-01-01T00:00:00Z");
    begin(store, &record);
    let done = completed(record, 0.75);
    store.record(&done).unwrap();
    assert_eq!(store.lineage_edges("r1").unwrap(), record::lineage(&done));
    let (descendants, truncated) = store.lineage_walk(&sha("aa"), Direction::Descendants, None, 0).unwrap();
    let reached: Vec<&str> = descendants.iter().map(|s| s.sha256.as_str()).collect();
    assert!(!truncated);
    assert!(reached.contains(&sha("da").as_str()) && reached.contains(&sha("m0").as_str()), "{reached:?}");
    assert_eq!(descendants[0].depth, 1);
    let (ancestors, _) = store.lineage_walk(&sha("m0"), Direction::Ancestors, Some("r1"), 0).unwrap();
    assert!(ancestors.iter().any(|s| s.sha256 == sha("aa") && s.kind == "raw"), "{ancestors:?}");
    let (capped, truncated) = store.lineage_walk(&sha("aa"), Direction::Descendants, None, 1).unwrap();
    assert_eq!((capped.len(), truncated), (1, true));
    assert_eq!(store.runs_using(&sha("11"), 0).unwrap(), (vec!["r1".to_owned()], 1), "a plugin build");
    assert_eq!(store.runs_using(&sha("51"), 0).unwrap().1, 1, "a split");
    assert_eq!(store.expand_sha256(&sha("m0")[..20]).unwrap(), vec![sha("m0")]);
    assert_eq!(store.expand_sha256(&sha("11")[..60]).unwrap(), vec![sha("11")]);
    assert_eq!(store.entity_description(&sha("aa")).unwrap(), ("raw".into(), "train-images /d/raw".into()));
    assert!(store.run_entities("r1").unwrap().contains(&("dataset".into(), sha("da"))));
}

pub fn one_process_at_a_time_drives_a_sweep(store: &dyn Store) {
    let sweep = sweep_start("s-1");
    store.begin_sweep(&sweep).unwrap();
    let first = owner();
    let second = RunOwner { pid: 4343, ..owner() };
    assert_eq!(store.lease_sweep("s-1", &first, None).unwrap(), None, "granted when nobody holds it");
    assert_eq!(store.lease_sweep("s-1", &first, None).unwrap(), None, "renewed by its holder");
    let holder = store.lease_sweep("s-1", &second, None).unwrap().expect("refused while held");
    assert_eq!(holder.owner, first);
    // Taking over names the renewal it found expired: after the holder renewed, it fails.
    let stale = holder.heartbeat_at.clone();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(store.lease_sweep("s-1", &first, None).unwrap(), None);
    assert!(store.lease_sweep("s-1", &second, Some(&stale)).unwrap().is_some(), "the holder renewed since");
    let renewed = store.lease_sweep("s-1", &second, None).unwrap().unwrap().heartbeat_at;
    assert_eq!(store.lease_sweep("s-1", &second, Some(&renewed)).unwrap(), None, "taken over");
    assert!(store.lease_sweep("s-1", &first, None).unwrap().is_some(), "the old holder is refused now");
    // Released only by its holder.
    store.release_sweep("s-1", &first).unwrap();
    assert!(store.lease_sweep("s-1", &first, None).unwrap().is_some());
    store.release_sweep("s-1", &second).unwrap();
    assert_eq!(store.lease_sweep("s-1", &first, None).unwrap(), None);
    assert!(store.lease_sweep("nope", &first, None).is_err(), "no such sweep");
}

pub fn sweeps_resume_and_trials_follow_their_runs(store: &dyn Store) {
    let sweep = sweep_start("s-1");
    store.begin_sweep(&sweep).unwrap();
    store.begin_sweep(&sweep).unwrap();
    assert_eq!(store.sweep_ids().unwrap(), ["s-1"]);
    for trial in 0..3 {
        store.trial_started("s-1", trial, &json!({"training.learning_rate": trial})).unwrap();
    }
    // Trial 0's run links itself and completes; trial 1's run begins and fails; trial 2 is pruned.
    let mut run = started("t0", "s", "2026-01-01T00:00:00Z");
    run.trial = Some(TrialRef { sweep_id: "s-1".into(), trial: 0 });
    begin(store, &run);
    assert_eq!(store.sweep("s-1").unwrap().trials[0].run_id.as_deref(), Some("t0"));
    assert_eq!(store.sweep("s-1").unwrap().trials[0].status, TrialStatus::Running);
    store.record(&completed(run, 0.5)).unwrap();
    store.trial_ended("s-1", 0, TrialStatus::Completed, Some(0.5)).unwrap();
    let mut failing = started("t1", "s", "2026-01-01T00:00:01Z");
    failing.trial = Some(TrialRef { sweep_id: "s-1".into(), trial: 1 });
    begin(store, &failing);
    failing.status = RunStatus::Failed;
    store.record(&failing).unwrap();
    store.trial_ended("s-1", 1, TrialStatus::Failed, None).unwrap();
    store.trial_ended("s-1", 2, TrialStatus::Pruned, None).unwrap();
    let row = store.sweep("s-1").unwrap();
    let states: Vec<(usize, TrialStatus, Option<f64>)> =
        row.trials.iter().map(|t| (t.trial, t.status, t.metric)).collect();
    assert_eq!(
        states,
        [(0, TrialStatus::Completed, Some(0.5)), (1, TrialStatus::Failed, None), (2, TrialStatus::Pruned, None)]
    );
    assert_eq!(row.trials[1].parameters, json!({"training.learning_rate": 1}));
    assert!((row.metric.as_str(), row.maximize) == ("test.accuracy", true));
    // A trial's status is its run's: a run marked interrupted later shows so.
    store.trial_started("s-1", 1, &json!({})).unwrap();
    let mut retry = started("t1b", "s", "2026-01-01T00:00:02Z");
    retry.trial = Some(TrialRef { sweep_id: "s-1".into(), trial: 1 });
    begin(store, &retry);
    store.mark_interrupted("t1b", "killed").unwrap();
    assert_eq!(store.sweep("s-1").unwrap().trials[1].status, TrialStatus::Interrupted);
    assert!(store.sweep("nope").unwrap_err().to_string().contains("no sweep nope"));
}

pub fn running_runs_are_listed_and_marked_interrupted_once(store: &dyn Store) {
    begin(store, &started("live", "e", "2026-01-01T00:00:00Z"));
    let done = started("done", "e", "2026-01-01T00:00:00Z");
    begin(store, &done);
    store.record(&completed(done, 0.5)).unwrap();
    let running = store.running_runs().unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!((running[0].run_id.as_str(), &running[0].owner), ("live", &owner()));
    let before = running[0].heartbeat_at.clone();
    store.heartbeat("live").unwrap();
    assert!(store.running_runs().unwrap()[0].heartbeat_at > before, "the heartbeat moved");
    assert!(store.mark_interrupted("live", "its process is gone").unwrap());
    assert!(!store.mark_interrupted("live", "again").unwrap(), "only once");
    assert!(!store.mark_interrupted("done", "never").unwrap(), "never an ended run");
    assert_eq!(store.run_status("live").unwrap(), RunStatus::Interrupted);
    assert_eq!(store.run_status("done").unwrap(), RunStatus::Completed);
    assert!(store.running_runs().unwrap().is_empty());
    let settled = store.run_record("live").unwrap();
    assert_eq!(settled.error.as_deref(), Some("its process is gone"), "the reason is the record's error");
    assert!(settled.finished_at.is_some());
    // A scheduler explains a cancel the run recorded: a time limit's SIGTERM.
    assert!(store.settle_run("live", RunStatus::Interrupted, "Slurm: TIMEOUT", &[RunStatus::Interrupted]).unwrap());
    assert_eq!(store.run_record("live").unwrap().error.as_deref(), Some("Slurm: TIMEOUT"));
    assert!(!store.settle_run("done", RunStatus::Failed, "no", &[RunStatus::Running, RunStatus::Cancelled]).unwrap());
    assert_eq!(store.run_record("done").unwrap().status, RunStatus::Completed);
}

pub fn deleting_a_run_keeps_what_other_runs_recorded(store: &dyn Store) {
    let live = started("live", "e", "2026-01-01T00:00:00Z");
    begin(store, &live);
    let error = store.delete_run("live").unwrap_err();
    assert!(format!("{error:#}").contains("still running"), "{error:#}");
    let a = started("a", "e", "2026-01-01T00:00:01Z");
    begin(store, &a);
    let a = completed(a, 0.5);
    store.record(&a).unwrap();
    let mut b = completed(started("b", "other", "2026-01-01T00:00:02Z"), 0.6);
    begin(store, &started("b", "other", "2026-01-01T00:00:02Z"));
    // b records a's model file too (a reused stage that pointed at it).
    b.artifacts.push(a.artifacts[0].clone());
    store.record(&b).unwrap();
    let deleted = store.delete_run("b").unwrap();
    assert_eq!(deleted.output_dir, PathBuf::from("/w/runs/b"));
    let mut shared = deleted.shared.clone();
    shared.sort();
    assert_eq!(shared, [PathBuf::from("/d/raw"), a.artifacts[0].path.clone()], "the raw file and a's model");
    assert!(!store.run_exists("b").unwrap());
    let summary = store.summary().unwrap();
    assert_eq!(summary.experiments.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["e"], "empty experiments go");
    // The digest only b recorded is gone; what a recorded stays.
    assert!(store.expand_sha256(&sha("0.6")).unwrap().is_empty());
    assert_eq!(store.expand_sha256(&sha("m0")).unwrap().len(), 1);
    assert_eq!(store.run_record("a").unwrap(), a);
}

pub fn unknown_runs_are_a_typed_error(store: &dyn Store) {
    for error in [
        store.run_record("nope").unwrap_err(),
        store.recorded_files("nope").unwrap_err(),
        store.parameters("nope").unwrap_err(),
        store.delete_run("nope").unwrap_err(),
        store.require_run("nope").unwrap_err(),
    ] {
        let no_run = error.downcast_ref::<NoSuchRun>().unwrap_or_else(|| panic!("not NoSuchRun: {error:#}"));
        assert_eq!(no_run.run_id, "nope");
        assert!(error.to_string().starts_with("no run nope in "), "{error}");
    }
    assert!(!store.run_exists("nope").unwrap());
}

pub fn imported_runs_are_whole_and_summarised(store: &dyn Store) {
    let runs: Vec<RunRecord> = (0..5)
        .map(|i| {
            let record = started(&format!("i{i}"), if i % 2 == 0 { "even" } else { "odd" }, "2026-01-01T00:00:00Z");
            let mut record = completed(record, f64::from(i) / 10.0);
            if i == 4 {
                record.status = RunStatus::Failed;
            }
            record
        })
        .collect();
    store.import_runs(&runs).unwrap();
    for record in &runs {
        assert_eq!(&store.run_record(&record.run_id).unwrap(), record);
    }
    let summary = store.summary().unwrap();
    assert_eq!(summary.runs_by_status.get("completed"), Some(&4));
    assert_eq!(summary.runs_by_status.get("failed"), Some(&1));
    assert_eq!(summary.experiments, vec![("even".into(), 3, Some(0.4)), ("odd".into(), 2, Some(0.3))]);
    assert_eq!(summary.plugin_builds, 1);
    assert!(summary.lineage_edges > 0 && summary.artifacts > 0);
}

pub fn a_diverged_history_reads_back_with_its_nan(store: &dyn Store) {
    let mut record = started("r1", "e", "2026-01-01T00:00:00Z");
    begin(store, &record);
    record.history.insert(1, [("loss".to_owned(), f64::NAN), ("accuracy".to_owned(), 0.25)].into());
    record.status = RunStatus::Failed;
    store.record(&record).unwrap();
    let read = store.run_record("r1").unwrap();
    assert!(read.history[&1]["loss"].is_nan());
    assert_eq!(read.history[&1]["accuracy"], 0.25);
    // And it is still found by the stage cache.
    let mut done = completed(started("r2", "e", "2026-01-01T00:00:01Z"), 0.5);
    begin(store, &started("r2", "e", "2026-01-01T00:00:01Z"));
    done.history.insert(3, [("val_r2".to_owned(), f64::NAN)].into());
    store.record(&done).unwrap();
    assert_eq!(store.cached_stages(StageName::Train, "kt").unwrap().len(), 1);
}

/// A run can name runs that are not in the store (deleted, or in the store it was copied
/// from): its record keeps the names, the store's references are empty.
pub fn a_reference_to_a_run_not_in_the_store_is_kept_in_the_record_only(store: &dyn Store) {
    let mut record = started("r1", "e", "2026-01-01T00:00:00Z");
    record.replay_of = Some("gone".into());
    begin(store, &record);
    let mut done = completed(record, 0.5);
    done.stages[0].reused_from = Some("also-gone".into());
    store.record(&done).unwrap();
    let read = store.run_record("r1").unwrap();
    assert_eq!((read.replay_of.as_deref(), read.stages[0].reused_from.as_deref()), (Some("gone"), Some("also-gone")));
}

pub fn a_run_is_finished_in_its_row_only_once_it_ends(store: &dyn Store) {
    let mut record = started("r1", "e", "2026-01-01T00:00:00Z");
    begin(store, &record);
    record.finished_at = Some("2026-01-01T00:00:05Z".into());
    store.record(&record).unwrap();
    let row = &store.list_runs(&RunFilter { limit: 1, ..Default::default() }).unwrap()[0];
    assert_eq!((row.status, row.finished_at.as_deref()), (RunStatus::Running, None));
    record.status = RunStatus::Completed;
    store.record(&record).unwrap();
    let row = &store.list_runs(&RunFilter { limit: 1, ..Default::default() }).unwrap()[0];
    assert_eq!(row.finished_at.as_deref(), Some("2026-01-01T00:00:05Z"));
    // A trial started again forgets its earlier run.
    store
        .begin_sweep(&SweepStart {
            sweep_id: "s".into(),
            name: "s".into(),
            config: json!({}),
            metric: "m".into(),
            maximize: true,
        })
        .unwrap();
    store.trial_started("s", 0, &json!({})).unwrap();
    let mut trial_run = started("t", "s", "2026-01-01T00:00:01Z");
    trial_run.trial = Some(TrialRef { sweep_id: "s".into(), trial: 0 });
    begin(store, &trial_run);
    store.trial_started("s", 0, &json!({})).unwrap();
    assert_eq!(store.sweep("s").unwrap().trials[0].run_id, None);
}

/// A backend may write only what is new at each stage; the end must be as if the whole record
/// had been written at once, whatever changed on the way (a history value rewritten, live
/// metrics in between, a file dropped from the record).
pub fn records_written_stage_by_stage_end_as_one_whole_write(store: &dyn Store) {
    let start = started("r1", "e", "2026-01-01T00:00:00Z");
    begin(store, &start);
    let done = completed(start.clone(), 0.5);
    let mut partial = start.clone();
    partial.source_files = done.source_files.clone();
    partial.data = done.data.clone();
    partial.stages = done.stages[..2].to_vec();
    store.record(&partial).unwrap();
    store.live_metrics("r1", &[("loss".into(), 1, 0.75)]).unwrap();
    partial.history = [(1u64, [("loss".to_owned(), 0.75)].into())].into();
    partial.stages = done.stages[..3].to_vec();
    store.record(&partial).unwrap();
    // The next write changes epoch 1's value (not an append) and adds the rest.
    store.record(&done).unwrap();
    assert_eq!(store.lineage_edges("r1").unwrap(), record::lineage(&done));
    assert_eq!(store.metric_curve("r1", "loss").unwrap(), vec![(1, 0.5), (2, 0.25)]);
    assert_eq!(store.final_metrics("r1").unwrap()["test.accuracy"], 0.5);
    assert_eq!(store.run_record("r1").unwrap(), done);
    // The same record again, and a last one with a metric dropped: nothing doubled, nothing stale.
    store.record(&done).unwrap();
    assert_eq!(store.step_metrics("r1", 0).unwrap().len(), 2);
    let mut last = done.clone();
    last.history.remove(&2);
    store.record(&last).unwrap();
    assert_eq!(store.metric_curve("r1", "loss").unwrap(), vec![(1, 0.5)]);
    assert_eq!(store.lineage_edges("r1").unwrap(), record::lineage(&last));
}

/// A trial requeued by its scheduler is two runs (two attempts); its jobs are kept with the
/// scheduler's last word on each.
pub fn a_trials_attempts_and_scheduler_jobs_are_kept(store: &dyn Store) {
    let sweep = SweepStart {
        sweep_id: "s".into(),
        name: "s".into(),
        config: json!({}),
        metric: "test.accuracy".into(),
        maximize: true,
    };
    store.begin_sweep(&sweep).unwrap();
    store.trial_started("s", 3, &json!({"lr": 1})).unwrap();
    let job = crate::SweepJob {
        trial: 3,
        scheduler: "slurm".into(),
        job_id: "41_3".into(),
        submitted_at: "2026-01-01T00:00:00Z".into(),
        state: "PENDING".into(),
        reason: None,
        updated_at: "2026-01-01T00:00:00Z".into(),
    };
    store.job_submitted("s", &job).unwrap();
    for (run_id, at) in [("first", "2026-01-01T00:00:01Z"), ("second", "2026-01-01T00:00:09Z")] {
        let mut record = started(run_id, "s", at);
        record.trial = Some(TrialRef { sweep_id: "s".into(), trial: 3 });
        begin(store, &record);
    }
    store.job_state("s", 3, "41_3", "RUNNING", Some("requeued once")).unwrap();
    // No driver recorded the trial's end: its metric is its latest run's final value.
    let mut second = started("second", "s", "2026-01-01T00:00:09Z");
    second.trial = Some(TrialRef { sweep_id: "s".into(), trial: 3 });
    store.record(&completed(second, 0.5)).unwrap();
    let row = store.sweep("s").unwrap();
    let trial = &row.trials[0];
    assert_eq!(trial.status, TrialStatus::Completed);
    assert_eq!(trial.metric, Some(0.5));
    assert_eq!(trial.attempts, ["first", "second"]);
    assert_eq!(trial.run_id.as_deref(), Some("second"), "the latest attempt");
    let kept = trial.job.as_ref().unwrap();
    assert_eq!(
        (kept.job_id.as_str(), kept.state.as_str(), kept.reason.as_deref()),
        ("41_3", "RUNNING", Some("requeued once"))
    );
    // Resubmitted as another job: the latest is the trial's.
    store
        .job_submitted(
            "s",
            &crate::SweepJob { job_id: "57_3".into(), submitted_at: "2026-01-01T00:01:00Z".into(), ..job },
        )
        .unwrap();
    assert_eq!(store.sweep("s").unwrap().trials[0].job.as_ref().unwrap().job_id, "57_3");
}

fn tag(name: &str, value: Option<&str>, at: &str) -> Annotation {
    Annotation {
        kind: AnnotationKind::Tag,
        name: Some(name.into()),
        value: value.map(str::to_owned),
        author: "ana@node-1".into(),
        created_at: at.into(),
    }
}

fn verification(ok: bool) -> Verification {
    Verification { ok, problems: u64::from(!ok), checked_at: "2026-01-02T00:00:00Z".into(), hostname: "node-1".into() }
}

/// The query language's fixture: three completed runs and a running one (`a` to `d`, oldest
/// first), with different metrics, parameters, tags, plugins, data and verifications. The
/// shared cases in `query-conformance.json` are written against it; `store-fixture query-runs`
/// writes it for the Python reader's tests.
pub fn query_fixture(store: &dyn Store) {
    for (id, accuracy, rate, at) in [
        ("a", 0.90, 0.001, "2026-01-01T00:00:01Z"),
        ("b", 0.95, 0.01, "2026-01-01T00:00:02Z"),
        ("c", 0.80, 0.1, "2026-01-01T00:00:03Z"),
    ] {
        let mut record = started(id, if id == "c" { "other" } else { "mnist" }, at);
        record.config["training"]["learning_rate"] = json!(rate);
        record.config["training"]["optimizer"] = json!(if id == "a" { "adam" } else { "sgd" });
        if id == "b" {
            record.plugins[0].class = "CNN".into();
        }
        begin(store, &record);
        let mut done = completed(record, accuracy);
        match id {
            "a" => {
                done.history.get_mut(&1).unwrap().insert("grad_norm".to_owned(), f64::NAN);
            }
            "b" => {
                done.data.dataset_sha256 = sha("db");
                done.history.insert(3, [("loss".to_owned(), 0.125)].into());
                done.finished_at = Some("2026-01-01T00:00:03Z".into());
            }
            _ => {
                done.history.get_mut(&1).unwrap().insert("grad_norm".to_owned(), 1.0);
                done.history.get_mut(&2).unwrap().insert("grad_norm".to_owned(), f64::INFINITY);
            }
        }
        store.record(&done).unwrap();
    }
    begin(store, &started("d", "mnist", "2026-01-01T00:00:04Z"));
    store.annotate("a", &tag("owner", Some("ana"), "2026-01-02T00:00:00Z")).unwrap();
    store.annotate("b", &tag("owner", Some("ben"), "2026-01-02T00:00:00Z")).unwrap();
    store.annotate("b", &tag("owner", Some("ana"), "2026-01-02T00:00:01Z")).unwrap();
    store.annotate("c", &tag("owner", Some("cy"), "2026-01-02T00:00:00Z")).unwrap();
    store.annotate("c", &tag("owner", None, "2026-01-02T00:00:01Z")).unwrap();
    store.record_verification("a", &verification(true)).unwrap();
    store.record_verification("b", &verification(true)).unwrap();
    store.record_verification("b", &verification(false)).unwrap();
}

/// The filter cases shared with the Python reader: (expression, matching run ids newest
/// first, why).
fn shared_filter_cases() -> Vec<(String, Vec<String>, String)> {
    let file: serde_json::Value = serde_json::from_str(include_str!("../query-conformance.json")).unwrap();
    let text = |value: &serde_json::Value| value.as_str().unwrap().to_owned();
    file["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let runs = case["runs"].as_array().unwrap().iter().map(text).collect();
            (text(&case["filter"]), runs, case.get("why").map(text).unwrap_or_default())
        })
        .collect()
}

/// The query fixture's runs; every shared filter case's run ids in order, then orders, columns
/// and pages.
pub fn the_query_language_filters_orders_and_pages(store: &dyn Store) {
    query_fixture(store);
    let ids = |filter: &str| -> Vec<String> {
        let query = RunQuery { filter: Some(parse_filter(filter).unwrap()), ..Default::default() };
        store.query_runs(&query).unwrap().rows.into_iter().map(|(id, _)| id).collect()
    };
    let cases = shared_filter_cases();
    assert!(cases.len() >= 30, "the shared cases were read");
    for (filter, expected, why) in cases {
        assert_eq!(ids(&filter), expected, "{filter}: {why}");
    }

    let query = RunQuery {
        filter: Some(parse_filter("status = 'completed'").unwrap()),
        order: parse_order("metrics.test.accuracy desc").unwrap(),
        columns: parse_columns("metrics.test.accuracy, params.training.learning_rate, params.training.optimizer, tags.owner, plugin.model, verified, seed, duration, status")
            .unwrap(),
        limit: 2,
        offset: 1,
        count_limit: 0,
    };
    let page = store.query_runs(&query).unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(page.rows.len(), 2);
    assert_eq!(page.rows[0].0, "a");
    assert_eq!(
        page.rows[0].1,
        [
            json!(0.9),
            json!(0.001),
            json!("adam"),
            json!("ana"),
            json!("MLP"),
            json!(true),
            json!(7),
            json!(0.0),
            json!("completed")
        ]
    );
    assert_eq!(page.rows[1].0, "c");
    assert_eq!(page.rows[1].1[3], json!(null));
    assert_eq!(page.rows[1].1[5], json!(null), "never verified");
    let order = |text: &str| -> Vec<String> {
        let query = RunQuery { order: parse_order(text).unwrap(), ..Default::default() };
        store.query_runs(&query).unwrap().rows.into_iter().map(|(id, _)| id).collect()
    };
    assert_eq!(order("params.training.learning_rate"), ["a", "d", "b", "c"], "by number, ties newest first");
    assert_eq!(order("params.training.learning_rate desc"), ["c", "d", "b", "a"]);
    assert_eq!(order("params.training.optimizer desc"), ["c", "b", "a", "d"], "text; none last");
    assert_eq!(order("tags.owner, run_id desc"), ["b", "a", "d", "c"]);
    let builds = store.plugin_builds().unwrap();
    assert_eq!(builds.len(), 1);
    assert_eq!(
        (builds[0].sha256.as_str(), builds[0].plugin_name.as_str(), builds[0].runs),
        (sha("11").as_str(), "p", 4)
    );
    let all = store.query_runs(&RunQuery::default()).unwrap();
    assert_eq!((all.total, all.exact, all.rows.len()), (4, true, 4), "limit 0 is every run");
    let capped = store.query_runs(&RunQuery { count_limit: 2, limit: 1, ..Default::default() }).unwrap();
    assert_eq!((capped.total, capped.exact, capped.rows.len()), (2, false, 1), "at least 2 match");
    let enough = store.query_runs(&RunQuery { count_limit: 4, ..Default::default() }).unwrap();
    assert_eq!((enough.total, enough.exact), (4, true));
}

/// Tags, notes and verifications are appended and read back in order; the record is untouched.
pub fn annotations_and_verifications_are_appended_beside_the_record(store: &dyn Store) {
    let record = completed(started("r1", "e", "2026-01-01T00:00:00Z"), 0.5);
    begin(store, &record);
    store.record(&record).unwrap();
    let note = Annotation {
        kind: AnnotationKind::Note,
        name: None,
        value: Some("lr too high; see 'r2' <b>".into()),
        author: "ana@node-1".into(),
        created_at: "2026-01-02T00:00:02Z".into(),
    };
    store.annotate("r1", &tag("owner", Some("ana"), "2026-01-02T00:00:00Z")).unwrap();
    store.annotate("r1", &tag("stage", Some("draft"), "2026-01-02T00:00:01Z")).unwrap();
    store.annotate("r1", &note).unwrap();
    store.annotate("r1", &tag("stage", None, "2026-01-02T00:00:03Z")).unwrap();
    let annotations = store.annotations("r1").unwrap();
    assert_eq!(annotations.len(), 4);
    assert_eq!(annotations[2], note);
    assert_eq!(crate::current_tags(&annotations), [("owner".to_owned(), "ana".to_owned())].into());
    store.record_verification("r1", &verification(false)).unwrap();
    store.record_verification("r1", &verification(true)).unwrap();
    assert_eq!(store.verifications("r1").unwrap(), [verification(false), verification(true)]);
    assert_eq!(store.run_record("r1").unwrap(), record, "annotations are not part of the record");
    let missing = store.annotate("nope", &note).unwrap_err();
    assert!(missing.downcast_ref::<NoSuchRun>().is_some(), "{missing:#}");
    store.delete_run("r1").unwrap();
    assert!(store.annotations("r1").unwrap().is_empty(), "deleted with their run");
}

pub fn the_read_views_keep_their_columns_and_show_the_record(store: &dyn Store) {
    let record = completed(started("r1", "e", "2026-01-01T00:00:00Z"), 0.5);
    begin(store, &record);
    store.record(&record).unwrap();
    begin(store, &completed(started("r2", "e", "2026-01-01T00:00:01Z"), 0.7));
    store.annotate("r1", &tag("owner", Some("ana"), "2026-01-02T00:00:00Z")).unwrap();
    store.record_verification("r1", &verification(false)).unwrap();
    store.record_verification("r1", &verification(true)).unwrap();
    // Every view has exactly its pinned columns, in order, and only the asked run's rows.
    let mut views = std::collections::BTreeMap::new();
    for (view, columns) in crate::READ_VIEWS {
        let rows = store.read_view(view, "r1").unwrap();
        assert_eq!(rows.columns, columns, "{view}");
        assert!(rows.rows.iter().all(|row| row[0] == "r1"), "{view}: {rows:?}");
        views.insert(view, rows);
    }
    let value = |view: &str, row: usize, column: &str| {
        let rows = &views[view];
        let index = rows.columns.iter().position(|c| c == column).unwrap();
        rows.rows[row][index].clone()
    };
    // runs_v1: the run's row, its plugin builds and its last verification.
    assert_eq!(views["runs_v1"].rows.len(), 1);
    for (column, expected) in [
        ("experiment", json!("e")),
        ("status", json!("completed")),
        ("seed", json!(7)),
        ("threads", json!(2)),
        ("git_commit", json!("abc")),
        ("git_dirty", json!(0)),
        ("config_sha256", json!(sha("c0"))),
        ("dataset_sha256", json!(sha("da"))),
        ("model_class", json!("MLP")),
        ("model_sha256", json!(sha("11"))),
        ("loader_class", serde_json::Value::Null),
        ("trial", serde_json::Value::Null),
        ("verified", json!(1)),
    ] {
        assert_eq!(value("runs_v1", 0, column), expected, "runs_v1.{column}");
    }
    // The other views hold what the store's own reads return.
    assert_eq!(views["parameters_v1"].rows.len(), store.parameters("r1").unwrap().len());
    let finals = store.final_metrics("r1").unwrap();
    let metric_rows = &views["metrics_v1"].rows;
    let accuracy = metric_rows.iter().find(|row| row[1] == "test.accuracy" && row[2].is_null()).unwrap();
    assert_eq!(accuracy[3], json!(finals["test.accuracy"]));
    // files_v1: every file the run recorded (and the data entities: raw files, dataset, splits).
    let files = &views["files_v1"].rows;
    // (plugin libraries are runs_v1's columns)
    for recorded in store.recorded_files("r1").unwrap().into_iter().filter(|f| !f.role.starts_with("plugin")) {
        assert!(files.iter().any(|row| row[3] == json!(recorded.sha256)), "{recorded:?} not in {files:?}");
    }
    assert!(files.iter().any(|row| row[3] == json!(sha("da")) && row[4] == "dataset"), "{files:?}");
    assert!(files.iter().any(|row| row[3] == json!(sha("aa")) && row[4] == "raw"), "{files:?}");
    assert!(!views["lineage_v1"].rows.is_empty());
    assert_eq!(views["annotations_v1"].rows.len(), 1);
    assert!(value("annotations_v1", 0, "seq").is_i64(), "the order annotations were written in");
    assert_eq!(value("annotations_v1", 0, "value"), json!("ana"));
    let error = store.read_view("runs; DROP TABLE runs", "r1").unwrap_err();
    assert!(format!("{error:#}").contains("not a read view"), "{error:#}");
}
