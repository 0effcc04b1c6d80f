//! A plugin that panics or returns an error in any call gives a clean failure naming the
//! plugin, the class and the call, never an abort of the host.

use crate::support::{Project, library, on_every_store};

fn project() -> Project {
    let project = Project::new();
    let path = library("faulty-plugin").display().to_string();
    project.mapping(&format!(
        "Loader:\n  FaultyLoader: {path}\nModel:\n  FaultyModel: {path}\nReportGenerator:\n  FaultyReport: {path}\n"
    ));
    project
}

fn config(section: &str, call: &str, mode: &str) -> String {
    format!(
        "experiment_name: faults\noutput_dir: runs\nplugins: {{data_loader: FaultyLoader, model: FaultyModel, report_generator: FaultyReport}}\n\
         data_splitting: {{use_predefined_test: false, train_ratio: 0.6, val_ratio: 0.2, test_ratio: 0.2}}\n\
         {section}: {{fail_in: {call}, mode: {mode}}}\n"
    )
}

#[test]
fn every_call_that_panics_or_fails_is_reported_by_plugin_class_and_call() {
    let project = project();
    let calls = [
        ("data_loader", "FaultyLoader", "load_data"),
        ("data_loader", "FaultyLoader", "extract_features_and_targets"),
        ("model", "FaultyModel", "fit"),
        ("model", "FaultyModel", "save"),
        ("model", "FaultyModel", "predict"),
        ("model", "FaultyModel", "evaluate"),
        ("model", "FaultyModel", "custom_metrics"),
        ("reporting", "FaultyReport", "generate_data_report"),
        ("reporting", "FaultyReport", "generate_training_report"),
        ("reporting", "FaultyReport", "generate_evaluation_report"),
        ("reporting", "FaultyReport", "generate_summary_report"),
    ];
    for (section, class, call) in calls {
        for (mode, verb) in [("panic", "panicked"), ("error", "failed")] {
            project.write("config/run.yaml", &config(section, call, mode));
            let run = project.host(&["run", "config/run.yaml"]);
            let stderr = run.failure();
            let expected =
                format!("{class} (plugin faulty-plugin 0.1.0) {verb} in {call}: deliberate {mode} in {call}");
            assert!(stderr.contains(&expected), "{call}/{mode}: expected `{expected}` in:\n{stderr}");
            if mode == "panic" {
                assert!(stderr.contains("(at tests/fixtures/faulty-plugin/src/lib.rs:"), "{stderr}");
            }
            let json = project.host(&["run", "config/run.yaml", "--json"]).json();
            assert_eq!(json["status"], "failed", "{call}/{mode}");
            assert!(json["error"].as_str().unwrap().contains(&expected), "{json:#}");
        }
    }
}

#[test]
fn a_constructor_that_panics_or_fails_stops_the_run_before_it_starts() {
    let project = project();
    for (section, class) in [("data_loader", "FaultyLoader"), ("model", "FaultyModel"), ("reporting", "FaultyReport")] {
        for (mode, verb) in [("panic", "panicked"), ("error", "failed")] {
            project.write("config/run.yaml", &config(section, "new", mode));
            let stderr = project.host(&["run", "config/run.yaml"]).failure().to_owned();
            assert!(
                stderr
                    .contains(&format!("{class} (plugin faulty-plugin 0.1.0) {verb} in new: deliberate {mode} in new")),
                "{stderr}"
            );
            // Every class is created before the first stage: nothing was loaded or recorded.
            assert!(!stderr.contains("reading") && !stderr.contains("stage"), "{stderr}");
            let runs = project.host(&["runs", "list", "--json"]).success().json();
            assert_eq!(runs, serde_json::json!([]), "{section}/{mode}");
            assert!(!project.path().join("runs").exists(), "no run folder");
        }
    }
}

on_every_store! {
fn loading_a_saved_model_that_fails_is_reported() {
    let project = project();
    project.write("config/run.yaml", &config("model", "none", "panic"));
    let first = project.host(&["run", "config/run.yaml", "--json"]).success().json();
    let run_dir = project.path().join(first["output_dir"].as_str().unwrap());
    project.write("config/run.yaml", &config("model", "load", "error"));
    let stderr =
        project.host(&["run", "config/run.yaml", "--model-from", run_dir.to_str().unwrap()]).failure().to_owned();
    assert!(
        stderr.contains("FaultyModel (plugin faulty-plugin 0.1.0) failed in load: deliberate error in load"),
        "{stderr}"
    );
}}

on_every_store! {
fn wrong_results_from_plugins_fail_the_run_with_what_was_wrong() {
    let project = project();
    for (section, call, expected, stage) in [
        (
            "model",
            "fit",
            "FaultyModel: training diverged: loss was NaN at step 1; lower training.learning_rate",
            "train",
        ),
        ("model", "predict", "FaultyModel: predict returned 3 rows for 4 samples", "evaluate"),
        ("model", "predict_scores", "the model predicted 2 in row 0; predictions must be probabilities", "evaluate"),
        (
            "model",
            "save",
            "FaultyModel: save wrote unlisted.bin in the model folder but did not return it",
            "train",
        ),
        (
            "data_loader",
            "extract_features_and_targets",
            "the loader returned 20 feature rows but 19 target rows",
            "prepare",
        ),
    ] {
        project.write("config/run.yaml", &config(section, call, "wrong"));
        let json = project.host(&["run", "config/run.yaml", "--json"]).json();
        assert_eq!(
            (json["status"].as_str(), json["failed_stage"].as_str()),
            (Some("failed"), Some(stage)),
            "{call}: {json:#}"
        );
        assert!(json["error"].as_str().unwrap().contains(expected), "{call}: {}", json["error"]);
        let stderr = project.host(&["run", "config/run.yaml"]).failure().to_owned();
        assert!(stderr.contains(expected), "{call}: {stderr}");
    }
}}
