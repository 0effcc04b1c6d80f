//! The provenance store end to end: runs recorded with `--db`, queried back, a failed run's
//! error and stage, a killed run marked interrupted, and two runs writing at once.

use std::process::{Command, Stdio};

use crate::support::{
    Project, endless_training_project, files_under, host_binary, library, on_every_store, spawn_host,
    wait_until_running,
};

pub fn faulty_project() -> Project {
    let project = Project::new();
    let path = library("faulty-plugin").display().to_string();
    project.mapping(&format!("Loader:\n  FaultyLoader: {path}\nModel:\n  FaultyModel: {path}\n"));
    project.write(
        "config/run.yaml",
        "experiment_name: stored\nplugins: {data_loader: FaultyLoader, model: FaultyModel}\n\
         data_splitting: {use_predefined_test: false, train_ratio: 0.6, val_ratio: 0.2, test_ratio: 0.2}\n",
    );
    project
}

#[test]
fn runs_are_recorded_and_queried_from_the_store_named_by_db() {
    let project = faulty_project();
    let summary = project.host(&["run", "config/run.yaml", "--json", "--db", "stores/a.db"]).success().json();
    assert!(project.path().join("stores/a.db").is_file());
    let runs = project.host(&["runs", "list", "--json", "--db", "stores/a.db"]).success().json();
    assert_eq!(runs[0]["run_id"], summary["run_id"]);
    assert_eq!(runs[0]["status"], "completed");
    assert_eq!(runs[0]["experiment"], "stored");
    let record = project
        .host(&["runs", "show", summary["run_id"].as_str().unwrap(), "--json", "--db", "stores/a.db"])
        .success()
        .json();
    assert_eq!(record["plugins"][0]["sha256"], summary["plugins"][0]["sha256"]);
    assert_eq!(record["config"]["seed"], 42);
    let missing = project.host(&["runs", "show", "nope", "--db", "stores/a.db"]);
    assert!(missing.failure().contains("no run nope in stores/a.db"), "{}", missing.stderr);
    let summary_json = project.host(&["summary", "--json", "--db", "stores/a.db"]).success().json();
    assert_eq!(summary_json["runs_by_status"]["completed"], 1);
    assert_eq!(summary_json["experiments"][0][0], "stored");
    let shown = project
        .host(&["runs", "show", summary["run_id"].as_str().unwrap(), "--db", "stores/a.db"])
        .success()
        .stdout
        .clone();
    assert!(shown.lines().any(|l| l.starts_with("present") && l.contains("metrics.json")), "{shown}");
    // --limit 0 is every run; a filter that matches nothing says what it filtered.
    let all = project.host(&["runs", "list", "--json", "--limit", "0", "--db", "stores/a.db"]).success().json();
    assert_eq!(all.as_array().unwrap().len(), 1);
    let none = project.host(&["runs", "list", "--status", "failed", "--db", "stores/a.db"]).success().stdout.clone();
    assert!(none.starts_with("no runs with status failed in stores/a.db"), "{none}");
    let typo = project.host(&["runs", "list", "--status", "complete", "--db", "stores/a.db"]);
    assert!(typo.failure().contains("complete"), "{}", typo.stderr);
    // The default store is a separate file, not there yet: no runs, and listing creates none;
    // a command about one run says there is no store.
    let default = project.host(&["runs", "list", "--json"]).success().json();
    assert_eq!(default, serde_json::json!([]));
    let shown = project.host(&["runs", "show", "nope"]);
    assert!(shown.failure().contains("provenance.db: no provenance store here"), "{}", shown.stderr);
    assert!(!project.path().join("provenance.db").exists());
}

on_every_store! {
fn a_failed_run_records_its_error_and_stage() {
    let project = faulty_project();
    let config = std::fs::read_to_string(project.path().join("config/run.yaml")).unwrap();
    project.write("config/run.yaml", &format!("{config}model: {{fail_in: predict, mode: error}}\n"));
    project.host(&["run", "config/run.yaml"]).failure();
    let runs = project.host(&["runs", "list", "--json", "--status", "failed"]).success().json();
    let run_id = runs[0]["run_id"].as_str().unwrap().to_owned();
    let record = project.host(&["runs", "show", &run_id, "--json"]).success().json();
    assert_eq!(record["status"], "failed");
    assert_eq!(record["failed_stage"], "evaluate");
    assert!(record["error"].as_str().unwrap().contains("deliberate error in predict"), "{record:#}");
}}

on_every_store! {
fn a_run_killed_with_sigkill_is_marked_interrupted_by_the_next_command() {
    let project = endless_training_project(4);
    let mut child = spawn_host(&project, &["-q", "run", "config/long.yaml"], Stdio::null());
    wait_until_running(&project);
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let runs = project.host(&["runs", "list", "--json"]).success().json();
    assert_eq!(runs[0]["status"], "interrupted", "{runs:#}");
    let interrupted = runs[0]["run_id"].clone();
    // The store is intact, what the run recorded before training still verifies, and the
    // store takes new runs.
    project.assert_store_intact();
    project.host(&["verify", runs[0]["run_id"].as_str().unwrap()]).success();
    project.write(
        "config/long.yaml",
        &std::fs::read_to_string(project.path().join("config/long.yaml")).unwrap().replace("100000", "1"),
    );
    let second = project.host(&["run", "config/long.yaml", "--json"]).success().json();
    // Both runs may have started within one second, so neither's place in the list is fixed.
    let runs = project.host(&["runs", "list", "--json"]).success().json();
    let status = |id: &serde_json::Value| {
        let run = runs.as_array().unwrap().iter().find(|r| r["run_id"] == *id);
        run.unwrap_or_else(|| panic!("no run {id} in {runs:#}"))["status"].clone()
    };
    assert_eq!(status(&second["run_id"]), "completed", "{runs:#}");
    assert_eq!(status(&interrupted), "interrupted", "{runs:#}");
    assert_eq!(runs.as_array().unwrap().len(), 2);
}}

on_every_store! {
fn eight_runs_writing_to_one_new_store_at_once_all_complete_with_every_row() {
    let project = faulty_project();
    let children: Vec<_> = (0..8)
        .map(|_| {
            project
                .command(&["-q", "run", "config/run.yaml", "--json", "--force"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut summaries = Vec::new();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        summaries.push(serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap());
    }
    let runs = project.host(&["runs", "list", "--json", "--status", "completed"]).success().json();
    assert_eq!(runs.as_array().unwrap().len(), 8);
    // Every run's whole record is there: its stages, files and lineage, and it verifies.
    for summary in &summaries {
        let run_id = summary["run_id"].as_str().unwrap();
        let record = project.host(&["runs", "show", run_id, "--json"]).success().json();
        assert_eq!(record["stages"].as_array().unwrap().len(), summary["stages"].as_array().unwrap().len());
        assert_eq!(record["artifacts"], summary["artifacts"]);
        project.host(&["verify", run_id]).success();
        // Its lineage edges are all there: each transform's outputs generated by it.
        let export = project.host(&["export", run_id, "--format", "json"]).success().json();
        let edges = export["lineage"].as_array().unwrap();
        for transform in summary["data"]["transforms"].as_array().unwrap() {
            for output in transform["outputs"].as_array().unwrap() {
                assert!(
                    edges.iter().any(|e| e["relation"] == "wasGeneratedBy" && e["subject"] == output["sha256"]),
                    "{run_id}: no edge generating {output}"
                );
            }
        }
        assert!(!summary["data"]["transforms"].as_array().unwrap().is_empty());
    }
}}

on_every_store! {
fn verify_passes_until_an_artifact_is_altered_or_removed() {
    let project = faulty_project();
    let summary = project.host(&["run", "config/run.yaml", "--json"]).success().json();
    let run_id = summary["run_id"].as_str().unwrap();
    let verified = project.host(&["verify", run_id]);
    assert!(verified.success().stdout.contains("all "), "{}", verified.stdout);
    let json = project.host(&["verify", run_id, "--json"]).success().json();
    let roles: Vec<&str> = json["files"].as_array().unwrap().iter().map(|f| f["role"].as_str().unwrap()).collect();
    assert!(roles.contains(&"plugin Loader") && roles.contains(&"model") && roles.contains(&"metrics"), "{roles:?}");

    let dir = project.path().join(summary["output_dir"].as_str().unwrap());
    std::fs::write(dir.join("metrics.json"), "{}").unwrap();
    std::fs::remove_file(dir.join("predictions.csv")).unwrap();
    let failed = project.host(&["verify", run_id]);
    assert_eq!(failed.code, Some(1), "{}", failed.stdout);
    assert!(failed.stdout.lines().any(|l| l.starts_with("changed") && l.contains("metrics.json")), "{}", failed.stdout);
    assert!(
        failed.stdout.lines().any(|l| l.starts_with("missing") && l.contains("predictions.csv")),
        "{}",
        failed.stdout
    );
    assert!(failed.stderr.contains("2 of"), "{}", failed.stderr);
}}

on_every_store! {
fn compare_marks_the_plugin_builds_parameters_and_metrics_that_differ() {
    let project = faulty_project();
    let first = project.host(&["run", "config/run.yaml", "--json"]).success().json();
    let config = std::fs::read_to_string(project.path().join("config/run.yaml")).unwrap();
    let config = config.replace("train_ratio: 0.6, val_ratio: 0.2, test_ratio: 0.2", "train_ratio: 0.5, val_ratio: 0.2, test_ratio: 0.3");
    project.write("config/run.yaml", &format!("{config}seed: 7\n"));
    let second = project.host(&["run", "config/run.yaml", "--json"]).success().json();
    // A third run differing from the second only in the model's library: another build.
    let rebuilt = project.path().join("plugins/libfaulty_rebuilt.so");
    let mut bytes = std::fs::read(library("faulty-plugin")).unwrap();
    bytes.extend_from_slice(b"another build");
    std::fs::write(&rebuilt, bytes).unwrap();
    let path = library("faulty-plugin").display().to_string();
    project.mapping(&format!("Loader:\n  FaultyLoader: {path}\nModel:\n  FaultyModel: {}\n", rebuilt.display()));
    let third = project.host(&["run", "config/run.yaml", "--json"]).success().json();
    let (a, b, c) =
        (first["run_id"].as_str().unwrap(), second["run_id"].as_str().unwrap(), third["run_id"].as_str().unwrap());

    let compared = project.host(&["runs", "compare", a, b, "--json"]).success().json();
    let row = |compared: &serde_json::Value, section: &str, name: &str| {
        let rows = compared[section].as_array().unwrap();
        rows.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{section} {name}: {compared:#}")).clone()
    };
    let seed = row(&compared, "parameters", "seed");
    assert_eq!(seed["values"], serde_json::json!([42, 7]));
    assert_eq!(seed["differs"], true);
    assert_eq!(row(&compared, "parameters", "experiment_name")["differs"], false);
    let samples = row(&compared, "metrics", "test.samples");
    assert_eq!((samples["values"].clone(), samples["differs"].clone()), (serde_json::json!([4.0, 6.0]), true.into()));
    for field in ["class", "build", "sha256"] {
        assert_eq!(row(&compared, "plugins", &format!("plugin.model.{field}"))["differs"], false, "{field}");
    }
    let text = project.host(&["runs", "compare", a, b]).success().stdout.clone();
    assert!(text.lines().any(|l| l.starts_with('*') && l.contains("seed")), "{text}");
    assert!(text.lines().any(|l| l.starts_with('*') && l.contains("test.samples")), "{text}");

    // Runs that differ only in the model's build: the SHA-256 row says so, nothing else differs.
    let compared = project.host(&["runs", "compare", b, c, "--json"]).success().json();
    let sha256 = row(&compared, "plugins", "plugin.model.sha256");
    assert_eq!(sha256["differs"], true);
    assert_eq!(sha256["values"][1], third["plugins"].as_array().unwrap().iter().find(|p| p["kind"] == "Model").unwrap()["sha256"]);
    assert_eq!(row(&compared, "plugins", "plugin.model.class")["values"], serde_json::json!(["FaultyModel", "FaultyModel"]));
    assert_eq!(row(&compared, "plugins", "plugin.loader.sha256")["differs"], false);
    assert!(compared["parameters"].as_array().unwrap().iter().all(|p| p["differs"] == false), "{compared:#}");
    let text = project.host(&["runs", "compare", b, c]).success().stdout.clone();
    let marked: Vec<&str> = text.lines().filter(|l| l.starts_with('*')).collect();
    assert!(marked.len() == 1 && marked[0].contains("plugin.model.sha256"), "{text}");
    let stderr = project.host(&["runs", "compare", a, "nope"]).failure().to_owned();
    assert!(stderr.contains("no run nope"), "{stderr}");
}}

on_every_store! {
fn lineage_runs_from_raw_files_to_reports_and_finds_every_run_that_used_an_entity() {
    let project = Project::new();
    crate::support::write_tiny_mnist(&project.path().join("data"), 100, 30);
    let path = library("mnist-plugin").display().to_string();
    project.mapping(&format!(
        "Loader:\n  MNISTLoader: {path}\nModel:\n  MNISTMLP: {path}\nReportGenerator:\n  MNISTReportGenerator: {path}\n"
    ));
    let config = "experiment_name: lineage\nthreads: 1\nplugins: {data_loader: MNISTLoader, model: MNISTMLP, report_generator: MNISTReportGenerator}\n\
                  data_loader: {data_dir: data}\ntraining: {epochs: 1}\n";
    project.write("config/a.yaml", config);
    project.write("config/b.yaml", &config.replace("epochs: 1", "epochs: 1, learning_rate: 0.01"));
    let first = project.host(&["run", "config/a.yaml", "--json"]).success().json();
    let second = project.host(&["run", "config/b.yaml", "--json"]).success().json();

    let raw = first["source_files"][0]["sha256"].as_str().unwrap();
    let report = project.host(&["lineage", &raw[..16], "--json"]).success().json();
    let kinds: Vec<&str> =
        report["descendants"].as_array().unwrap().iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for kind in ["dataset", "split", "model", "metrics", "report"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let runs: Vec<&str> = report["runs"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    // In id order; two runs started in the same second order by their random suffix.
    let mut expected = [first["run_id"].as_str().unwrap(), second["run_id"].as_str().unwrap()];
    expected.sort();
    assert_eq!(runs, expected);
    assert_eq!(report["truncated"], false);
    // Lists are capped (a raw file may feed thousands of runs), and say so.
    let capped = project.host(&["lineage", &raw[..16], "--limit", "1", "--json"]).success().json();
    assert_eq!(capped["descendants"].as_array().unwrap().len(), 1);
    assert_eq!((capped["runs"].as_array().unwrap().len(), &capped["runs_total"]), (1, &serde_json::json!(2)));
    assert_eq!(capped["truncated"], true);
    let text = project.host(&["lineage", &raw[..16], "--limit", "1"]).success().stdout.clone();
    assert!(text.contains("runs that used it (2)") && text.contains("--limit 0 shows everything"), "{text}");

    // Ancestors of a model go back to the raw files; a plugin build's impact lists both runs.
    let model = first["artifacts"].as_array().unwrap().iter().find(|a| a["kind"] == "model").unwrap()["sha256"]
        .as_str()
        .unwrap();
    let ancestors = project.host(&["lineage", model, "--json"]).success().json();
    assert!(ancestors["ancestors"].as_array().unwrap().iter().any(|a| a["sha256"] == raw), "{ancestors:#}");
    let plugin = first["plugins"][0]["sha256"].as_str().unwrap();
    let impact = project.host(&["lineage", plugin, "--json"]).success().json();
    assert_eq!(impact["runs"].as_array().unwrap().len(), 2);

    let by_run = project.host(&["lineage", first["run_id"].as_str().unwrap()]).success().stdout.clone();
    assert!(by_run.contains("descendants") && by_run.contains("report"), "{by_run}");
    let stderr = project.host(&["lineage", "not-a-run"]).failure().to_owned();
    assert!(stderr.contains("neither a run id nor a SHA-256"), "{stderr}");
}}

on_every_store! {
fn a_run_exports_as_prov_json_that_an_independent_prov_library_reads() {
    let project = faulty_project();
    let summary = project.host(&["run", "config/run.yaml", "--json"]).success().json();
    let run_id = summary["run_id"].as_str().unwrap();
    project.host(&["export", run_id, "--format", "prov-json", "-o", "run.prov.json"]).success();
    let document: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.path().join("run.prov.json")).unwrap()).unwrap();
    let model = summary["artifacts"].as_array().unwrap().iter().find(|a| a["kind"] == "model").unwrap()["sha256"]
        .as_str()
        .unwrap();
    assert!(document["entity"].get(format!("sha256:{model}")).is_some(), "{document:#}");
    assert!(document["agent"].get(format!("plugin:{}", summary["plugins"][1]["sha256"].as_str().unwrap())).is_some());

    // The Python `prov` package (installed by the set-up) parses it and finds the same graph.
    let script = "import sys\nfrom collections import Counter\nfrom prov.model import ProvDocument\n\
                  d = ProvDocument.deserialize(sys.argv[1], format='json')\n\
                  print(dict(Counter(type(r).__name__ for r in d.get_records())))\n";
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(project.path().join("run.prov.json"))
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "the prov library (scripts/setup.sh installs it) failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let counts = String::from_utf8_lossy(&output.stdout);
    for record in
        ["ProvEntity", "ProvActivity", "ProvAgent", "ProvUsage", "ProvGeneration", "ProvDerivation", "ProvAssociation"]
    {
        assert!(counts.contains(record), "{record} missing: {counts}");
    }

    let whole = project.host(&["export", run_id, "--format", "json"]).success().json();
    assert_eq!(whole["run_id"], run_id);
    assert!(!whole["lineage"].as_array().unwrap().is_empty());
}}

on_every_store! {
fn deleting_a_run_removes_its_rows_and_folder_and_leaves_other_runs_intact() {
    let project = faulty_project();
    let first = project.host(&["run", "config/run.yaml", "--json"]).success().json();
    let second = project.host(&["run", "config/run.yaml", "--json"]).success().json();
    let (a, b) = (first["run_id"].as_str().unwrap(), second["run_id"].as_str().unwrap());
    let folder = project.path().join(first["output_dir"].as_str().unwrap());
    assert!(folder.is_dir());
    let deleted = project.host(&["runs", "delete", a]);
    assert!(deleted.success().stdout.contains(&format!("deleted run {a}")), "{}", deleted.stdout);
    assert!(!folder.exists());
    assert!(project.host(&["runs", "show", a]).failure().contains(&format!("no run {a}")));
    let runs = project.host(&["runs", "list", "--json"]).success().json();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    project.host(&["verify", b]).success();
    // The shared plugin build is still recorded for the remaining run.
    let impact =
        project.host(&["lineage", second["plugins"][0]["sha256"].as_str().unwrap(), "--json"]).success().json();
    assert_eq!(impact["runs"], serde_json::json!([b]));
    assert!(project.host(&["runs", "delete", a]).failure().contains("no run"));
}}

on_every_store! {
fn deleting_a_run_never_follows_a_link_or_leaves_its_own_folder() {
    let project = faulty_project();
    let outside = project.path().join("shared-data");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep.txt"), "not the run's").unwrap();
    let run = project.host(&["run", "config/run.yaml", "--json"]).success().json();
    let (id, folder) = (run["run_id"].as_str().unwrap(), project.path().join(run["output_dir"].as_str().unwrap()));
    // Runs that share data link to it from their folder; so does a file link.
    std::os::unix::fs::symlink(&outside, folder.join("data")).unwrap();
    std::os::unix::fs::symlink(outside.join("keep.txt"), folder.join("keep-link.txt")).unwrap();
    let deleted = project.host(&["runs", "delete", id]).success().stdout.clone();
    assert!(deleted.contains(&format!("removed {}", folder.display())), "{deleted}");
    assert!(!folder.exists(), "the links are removed with the folder");
    assert_eq!(std::fs::read_to_string(outside.join("keep.txt")).unwrap(), "not the run's");

    // A row edited (or left stale) to name another tree: the rows go, that tree stays.
    let victim = project.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("thesis.tex"), "years of work").unwrap();
    let run = project.host(&["run", "config/run.yaml", "--json"]).success().json();
    let id = run["run_id"].as_str().unwrap();
    store::testing::rewrite_output_dir(&project.store_locator(), id, victim.to_str().unwrap()).unwrap();
    let stderr = project.host(&["runs", "delete", id]).failure().to_owned();
    assert!(
        stderr.contains(&format!(
            "run {id}'s folder {}: not this run's own folder (an absolute OUTPUT/{id}); nothing was removed from it",
            victim.display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(victim.join("thesis.tex")).unwrap(), "years of work");
    // A folder named like the run but whose run.json names another run is left alone too.
    let run = project.host(&["run", "config/run.yaml", "--json"]).success().json();
    let (id, folder) = (run["run_id"].as_str().unwrap(), project.path().join(run["output_dir"].as_str().unwrap()));
    std::fs::write(folder.join("run.json"), r#"{"run_id": "someone-else"}"#).unwrap();
    let stderr = project.host(&["runs", "delete", id]).failure().to_owned();
    assert!(stderr.contains("its run.json names run \"someone-else\"; nothing was removed"), "{stderr}");
    assert!(folder.join("run.json").exists());
}}

on_every_store! {
fn watch_follows_a_live_run_until_it_ends() {
    use std::io::{BufRead, BufReader};
    let project = endless_training_project(50);
    let run = spawn_host(&project, &["-q", "run", "config/long.yaml"], Stdio::null());
    let run_id = wait_until_running(&project);
    let mut watch = spawn_host(&project, &["runs", "watch", &run_id], Stdio::piped());
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut epochs = Vec::new();
    while epochs.len() < 2 {
        let line = lines.next().expect("watch ended early").unwrap();
        assert!(line.starts_with("epoch "), "{line}");
        epochs.push(line);
    }
    assert!(epochs[0].starts_with("epoch 1: ") && epochs[0].contains("loss"), "{epochs:?}");
    assert!(epochs[1].starts_with("epoch 2: "), "{epochs:?}");
    Command::new("kill").args(["-INT", &run.id().to_string()]).status().unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(watch.wait().unwrap().success());
    assert_eq!(rest.last().map(String::as_str), Some(format!("run {run_id} cancelled").as_str()), "{rest:?}");
    let mut run = run;
    run.wait().unwrap();
}}

on_every_store! {
fn watch_ends_when_the_watched_run_dies() {
    use std::io::{BufRead, BufReader};
    let project = endless_training_project(50);
    let mut run = spawn_host(&project, &["-q", "run", "config/long.yaml"], Stdio::null());
    let run_id = wait_until_running(&project);
    let mut watch = spawn_host(&project, &["runs", "watch", &run_id], Stdio::piped());
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = lines.next().expect("watch ended early").unwrap();
    assert!(first.starts_with("epoch 1: "), "{first}");
    run.kill().unwrap();
    run.wait().unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(watch.wait().unwrap().success());
    assert_eq!(rest.last().map(String::as_str), Some(format!("run {run_id} interrupted").as_str()), "{rest:?}");
}}

#[test]
fn a_store_deleted_during_a_run_or_kept_in_memory_fails_the_run() {
    let project = endless_training_project(50);
    let run =
        project.command(&["run", "config/long.yaml"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_until_running(&project);
    std::fs::remove_file(project.path().join("provenance.db")).unwrap();
    let output = run.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("provenance.db: the store file was deleted while this command was writing to it"),
        "{stderr}"
    );
    assert!(!stdout.contains("recorded in"), "{stdout}");

    for memory in [":memory:", "file::memory:"] {
        let stderr = project.host(&["run", "config/long.yaml", "--db", memory]).failure().to_owned();
        assert!(stderr.contains("is a SQLite in-memory or URI name: a store must outlive the command"), "{stderr}");
    }
}

/// Starts `host run` armed with the failpoint, waits until the run stops there and kills it
/// with SIGKILL. Returns the killed run's id.
/// Runs `host run CONFIG` until it reaches `failpoint` and the store has recorded the stage
/// `recorded` (the run's writer thread records a stage while the next one runs), then kills
/// it; returns the run's id, checked `interrupted`.
fn kill_at_failpoint(project: &Project, config: &str, failpoint: &str, recorded: Option<&str>) -> String {
    use std::io::BufRead;
    let mut child = project
        .command(&["run", config])
        .env("HOST_FAILPOINT", failpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let reached = lines.by_ref().map_while(Result::ok).any(|line| {
        seen.push_str(&line);
        seen.push('\n');
        line.starts_with("failpoint ")
    });
    assert!(reached, "the run ended without reaching {failpoint}:\n{seen}");
    if let Some(stage) = recorded {
        let started = std::time::Instant::now();
        loop {
            // The writer may not even have recorded the run's start yet.
            let runs = project.host(&["runs", "list", "--json"]).success().json();
            let record = match runs[0]["run_id"].as_str() {
                Some(run_id) => project.host(&["runs", "show", run_id, "--json"]).success().json(),
                None => serde_json::Value::Null,
            };
            if record["stages"].as_array().is_some_and(|s| s.iter().any(|s| s["name"] == stage)) {
                break;
            }
            assert!(started.elapsed().as_secs() < 60, "the {stage} stage was never recorded: {record:#}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let runs = project.host(&["runs", "list", "--json"]).success().json();
    assert_eq!(runs[0]["status"], "interrupted", "{runs:#}");
    runs[0]["run_id"].as_str().unwrap().to_owned()
}

/// After a kill: the store is sound, the killed run's recorded files verify, a new run succeeds.
fn survives_kill(project: &Project, config: &str, killed: &str) -> serde_json::Value {
    project.assert_store_intact();
    let record = project.host(&["runs", "show", killed, "--json"]).success().json();
    project.host(&["verify", killed]).success();
    let next = project.host(&["run", config, "--json"]).success().json();
    assert_eq!(next["status"], "completed");
    project.assert_store_intact();
    record
}

on_every_store! {
fn a_run_killed_inside_a_store_transaction_loses_only_that_transaction() {
    let project = faulty_project();
    // The third record is the one after training: load and prepare are committed by then.
    let killed = kill_at_failpoint(&project, "config/run.yaml", "store.record@3", None);
    let record = survives_kill(&project, "config/run.yaml", &killed);
    let stages: Vec<&str> = record["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(stages, ["load", "prepare"], "{record:#}");
    assert!(record["metrics"].is_null() || record["metrics"].as_object().is_some_and(|m| m.is_empty()), "{record:#}");
}}

on_every_store! {
fn a_run_killed_while_writing_its_reports_keeps_its_model_and_metrics() {
    let project = faulty_project();
    let path = library("faulty-plugin").display().to_string();
    project.mapping(&format!(
        "Loader:\n  FaultyLoader: {path}\nModel:\n  FaultyModel: {path}\nReportGenerator:\n  FaultyReport: {path}\n"
    ));
    let config = std::fs::read_to_string(project.path().join("config/run.yaml")).unwrap();
    project.write(
        "config/run.yaml",
        &config.replace("model: FaultyModel}", "model: FaultyModel, report_generator: FaultyReport}"),
    );
    // Killed after the first of the four reports is written (and the evaluate stage recorded).
    let killed = kill_at_failpoint(&project, "config/run.yaml", "report.write", Some("evaluate"));
    let folder = project.path().join("runs");
    let written: Vec<_> = files_under(&folder).into_iter().filter(|p| p.to_string_lossy().contains("/reports/")).collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let record = survives_kill(&project, "config/run.yaml", &killed);
    let kinds: Vec<&str> =
        record["artifacts"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"model") && kinds.contains(&"metrics"), "{kinds:?}");
    assert!(!kinds.contains(&"report"), "{kinds:?}");
}}

/// Runs `host run config/run.yaml` with `runs/` replaced, in a private mount namespace, by what
/// `mount` sets up there (a user namespace makes this work without root too).
fn run_with_runs_folder(project: &Project, mount: &str) -> crate::support::Run {
    std::fs::create_dir_all(project.path().join("runs")).unwrap();
    host_in_namespace(project, mount, &["run", "config/run.yaml"])
}

/// `host ARGS` in the project, in a private mount namespace where `mount` ran first.
fn host_in_namespace(project: &Project, mount: &str, args: &[&str]) -> crate::support::Run {
    let host = project.command(&[]);
    let mut command = Command::new("unshare");
    command
        .args(["-rm", "sh", "-c", &format!("{mount} && exec \"$0\" \"$@\"")])
        .arg(host_binary())
        .args(args)
        .current_dir(project.path());
    for (key, value) in host.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let output = command.output().expect("unshare is part of util-linux");
    crate::support::Run::from(output)
}

on_every_store! {
fn a_full_or_read_only_output_folder_fails_the_run_with_the_reason_and_a_record() {
    let project = faulty_project();
    for (mount, reason) in [
        // One page: the run's first file fills it.
        ("mount -t tmpfs -o size=4k tmpfs runs", "No space left on device"),
        ("mount --bind runs runs && mount -o remount,ro,bind runs", "Read-only file system"),
    ] {
        let run = run_with_runs_folder(&project, mount);
        let stderr = run.failure();
        assert!(stderr.contains(reason) && stderr.contains("/runs/"), "{stderr}");
        // "run ID failed in ..."
        let run_id = run.stdout.split_whitespace().nth(1).unwrap();
        let record = project.host(&["runs", "show", run_id, "--json"]).success().json();
        assert_eq!(record["status"], "failed", "{record:#}");
        assert!(record["error"].as_str().unwrap().contains(reason), "{record:#}");
    }
    project.assert_store_intact();
    project.host(&["run", "config/run.yaml"]).success();
}}

#[test]
fn a_store_the_user_may_only_read_answers_every_read_command() {
    let project = faulty_project();
    let run = project.host(&["run", "config/run.yaml", "--json"]).success().json();
    let run_id = run["run_id"].as_str().unwrap();
    let files = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };
    let before = files(project.path());
    // The whole project read-only, as a store shared with read permission only.
    let read_only = "mount --bind . . && mount -o remount,ro,bind .";
    for args in [
        vec!["runs", "list"],
        vec!["runs", "show", run_id],
        vec!["verify", run_id],
        vec!["lineage", run_id],
        vec!["store", "info"],
        vec!["summary"],
        vec!["export", run_id, "--format", "prov-json", "-o", "/dev/null"],
    ] {
        let shown = host_in_namespace(&project, read_only, &args);
        assert_eq!(shown.code, Some(0), "{args:?}: {}{}", shown.stdout, shown.stderr);
    }
    assert_eq!(files(project.path()), before, "a reader leaves no -wal or -shm file behind");
    // Reading a store that is not there creates none.
    let stderr = project.host(&["verify", run_id, "--db", "elsewhere.db"]).failure().to_owned();
    assert!(stderr.contains("elsewhere.db: no provenance store here"), "{stderr}");
    assert!(!project.path().join("elsewhere.db").exists());
}

#[test]
fn a_store_on_a_full_disk_is_named_in_the_error() {
    let project = faulty_project();
    std::fs::create_dir_all(project.path().join("full")).unwrap();
    // One page of room: the store file is created, its tables are not.
    let run = host_in_namespace(
        &project,
        "mount -t tmpfs -o size=4k tmpfs full",
        &["run", "config/run.yaml", "--db", "full/provenance.db"],
    );
    let stderr = run.failure();
    assert!(
        stderr.contains("full/provenance.db: cannot create or upgrade the store's tables: database or disk is full"),
        "{stderr}"
    );
}
