//! `host sweep` end to end on tiny MNIST: trials in parallel workers, each a run linked to the
//! sweep; a second invocation skips completed trials; Ctrl-C cancels, and the sweep resumes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Project, files_under, library, on_every_store, spawn_host, write_tiny_mnist};

fn sweep_project(epochs: usize) -> Project {
    let project = Project::new();
    write_tiny_mnist(&project.path().join("data"), 300, 100);
    let path = library("mnist-plugin").display().to_string();
    project.mapping(&format!("Loader:\n  MNISTLoader: {path}\nModel:\n  MNISTMLP: {path}\n"));
    project.write(
        "config/sweep.yaml",
        &format!(
            "experiment_name: tiny_sweep\nplugins: {{data_loader: MNISTLoader, model: MNISTMLP}}\n\
             data_loader: {{data_dir: data}}\ndata_splitting: {{validation_fraction: 0.2}}\n\
             training: {{epochs: {epochs}, batch_size: 32}}\n\
             sweep:\n  method: grid\n  metric: validation.log_loss\n  direction: minimize\n  parameters:\n\
             \x20   training.learning_rate: [0.001, 0.01]\n    model.hidden_layers: [[32], [64]]\n"
        ),
    );
    project
}

/// Every trial's log under the project's sweep folders, for a failure's message.
fn trial_logs(project: &Project) -> String {
    let mut logs = String::new();
    for entry in files_under(project.path()) {
        if entry.extension().is_some_and(|e| e == "log") && entry.to_string_lossy().contains("/sweeps/") {
            let text = std::fs::read_to_string(&entry).unwrap_or_default();
            logs.push_str(&format!("--- {}\n{text}\n", entry.display()));
        }
    }
    logs
}

#[test]
fn a_sweep_selecting_on_the_test_set_is_warned_about() {
    let project = sweep_project(1);
    let config = std::fs::read_to_string(project.path().join("config/sweep.yaml")).unwrap();
    let config = config
        .replace("metric: validation.log_loss", "metric: test.log_loss")
        .replace("training.learning_rate: [0.001, 0.01]\n    model.hidden_layers: [[32], [64]]", "seed: [1]");
    project.write("config/sweep.yaml", &config);
    let sweep = project.host(&["sweep", "config/sweep.yaml", "--json"]);
    assert!(
        sweep.stderr.contains(
            "config/sweep.yaml: sweep.metric test.log_loss selects the best trial on the test set, so its score \
             overstates it; select on validation.log_loss and read test.log_loss as the held-out figure"
        ),
        "{}",
        sweep.stderr
    );
    let sweep = sweep.success().json();
    assert_eq!(sweep["trials"].as_array().unwrap().len(), 1);
    assert_eq!(
        sweep["held_out"],
        serde_json::Value::Null,
        "nothing is held out of a sweep that selects on the test set"
    );
}

on_every_store! {
fn a_sweep_runs_every_trial_as_a_run_and_a_second_run_skips_them() {
    let project = sweep_project(2);
    let first = project.host(&["sweep", "config/sweep.yaml", "--jobs", "2", "--json"]);
    assert!(!first.stderr.contains("selects the best trial on the test set"), "{}", first.stderr);
    let first = first.success().json();
    let trials = first["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4);
    assert!(trials.iter().all(|t| t["status"] == "completed" && t["metric"].is_number()), "{first:#}");
    assert_eq!(
        trials[3]["parameters"],
        serde_json::json!({"training.learning_rate": 0.01, "model.hidden_layers": [64]})
    );
    let runs = project.host(&["runs", "list", "--json"]).success().json();
    let listed: Vec<&str> = runs.as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    for trial in trials {
        assert!(listed.contains(&trial["run_id"].as_str().unwrap()), "trial run missing from runs list");
        let record = project.host(&["runs", "show", trial["run_id"].as_str().unwrap(), "--json"]).success().json();
        // Two jobs on this machine's cores: each trial got its share of threads.
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(record["threads"], (cores / 2).max(1));
        assert_eq!(record["config"]["training"]["learning_rate"], trial["parameters"]["training.learning_rate"]);
    }
    let sweep_id = first["sweep_id"].as_str().unwrap();
    let shown = project.host(&["sweep", "show", sweep_id]).success().stdout.clone();
    let best =
        trials.iter().min_by(|a, b| a["metric"].as_f64().unwrap().total_cmp(&b["metric"].as_f64().unwrap())).unwrap();
    assert!(shown.contains(&format!("best: trial {} (validation.log_loss ", best["trial"])), "{shown}");
    // The best trial's test metric is reported as its own, held-out figure.
    let best_run = project.host(&["runs", "show", best["run_id"].as_str().unwrap(), "--json"]).success().json();
    let test_log_loss = best_run["metrics"]["test"]["log_loss"].as_f64().unwrap();
    assert_eq!(best_run["metrics"]["validation"]["log_loss"].as_f64(), best["metric"].as_f64());
    assert_ne!(test_log_loss, best["metric"].as_f64().unwrap());
    assert_eq!(first["held_out"], serde_json::json!({"metric": "test.log_loss", "value": test_log_loss, "trial": best["trial"]}));
    assert!(shown.contains(&format!("held out: test.log_loss {test_log_loss:.4} (the best trial on the test set")), "{shown}");
    assert!(shown.lines().any(|l| l.starts_with('*') && l.contains(best["run_id"].as_str().unwrap())), "{shown}");
    let listing = project.host(&["sweep", "show"]).success().stdout.clone();
    assert!(listing.contains(sweep_id) && listing.contains("4/4"), "{listing}");

    // The sweep report renders, and sorts its table by a column named in the URL.
    let report = project.path().join(format!("runs/sweeps/{sweep_id}/index.html"));
    let profile = project.path().join("chromium-profile");
    let (dom, console) = crate::browser::load(&profile, &report);
    assert!(console.is_empty(), "{console:?}");
    assert!(dom.contains("Best trial") && dom.contains("<h3>training.learning_rate</h3>") && dom.contains("<circle"));
    crate::browser::assert_layout(&[(&format!("sweep-{}", crate::browser::backend_name()), &report)]);
    // Column `column` of each trial row, in the order the page shows them.
    let cells = |dom: &str, column: usize| -> Vec<String> {
        dom.split("<tr")
            .skip(2)
            .filter_map(|row| Some(row.split("data-value=\"").nth(column + 1)?.split('"').next()?.to_owned()))
            .collect()
    };
    let sorted_by = |column: usize| {
        let (dom, console) = crate::browser::load_url(&profile, &format!("file://{}#sort={column}", report.display()));
        assert!(console.is_empty(), "{console:?}");
        dom
    };
    assert_eq!(cells(&dom, 0), ["1", "2", "3", "4"], "unsorted, the trials are in order");
    // By hidden layers ("[32]" before "[64]", ties kept in order): not the file's order, so
    // only the page's script can have produced it.
    assert_eq!(cells(&sorted_by(4), 0), ["1", "3", "2", "4"]);
    let metrics: Vec<f64> = cells(&sorted_by(5), 5).iter().map(|m| m.parse().unwrap()).collect();
    assert_eq!(metrics.len(), 4);
    assert!(metrics.windows(2).all(|w| w[0] <= w[1]), "not sorted by the metric: {metrics:?}");

    // The same sweep again: nothing to run, no new runs.
    let again = project.host(&["sweep", "config/sweep.yaml", "--jobs", "2"]);
    assert!(again.success().stderr.contains("4 trials, 4 done, 0 to run"), "{}", again.stderr);
    assert_eq!(project.host(&["runs", "list", "--json"]).success().json().as_array().unwrap().len(), 4);

    // Invalid trial configs are all reported before anything runs.
    let config = std::fs::read_to_string(project.path().join("config/sweep.yaml")).unwrap();
    project.write(
        "config/bad.yaml",
        &config.replace("model.hidden_layers: [[32], [64]]", "model.activation: [relu, swish]"),
    );
    let bad = project.host(&["sweep", "config/bad.yaml"]);
    assert!(bad.failure().contains("2 of 4 trial configs are invalid"), "{}", bad.stderr);
    assert!(bad.stderr.contains("model.activation"), "{}", bad.stderr);
}}

#[test]
fn a_sweep_named_like_a_path_stays_in_its_output_folder() {
    let project = sweep_project(1);
    let config = std::fs::read_to_string(project.path().join("config/sweep.yaml")).unwrap();
    let absolute = project.path().join("escaped");
    for name in ["../../escaped", absolute.to_str().unwrap()] {
        let text = config
            .replace("experiment_name: tiny_sweep", &format!("experiment_name: {name:?}"))
            .replace("[0.001, 0.01]", "[0.01]")
            .replace("[[32], [64]]", "[[8]]");
        project.write("config/named.yaml", &text);
        let out = project.path().join("out");
        let sweep = project.host(&["sweep", "config/named.yaml", "--output-dir", out.to_str().unwrap(), "--json"]);
        let sweep_id = sweep.success().json()["sweep_id"].as_str().unwrap().to_owned();
        assert!(!sweep_id.contains('/'), "{sweep_id}");
        assert!(out.join("sweeps").join(&sweep_id).join("index.html").is_file(), "{sweep_id}");
    }
    for folder in [project.path(), project.path().parent().unwrap()] {
        let names: Vec<String> =
            std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(!names.iter().any(|n| n.starts_with("escaped")), "{} holds {names:?}", folder.display());
    }
}

on_every_store! {
fn ctrl_c_cancels_a_sweep_and_running_it_again_resumes() {
    // Two trials side by side: a short one that completes, a long one still training.
    let project = sweep_project(1);
    let config = std::fs::read_to_string(project.path().join("config/sweep.yaml")).unwrap();
    let config = config.replace(
        "training.learning_rate: [0.001, 0.01]\n    model.hidden_layers: [[32], [64]]",
        "training.epochs: [1, 200]",
    );
    project.write("config/sweep.yaml", &config);
    let mut child = spawn_host(&project, &["sweep", "config/sweep.yaml", "--jobs", "2"], Stdio::null());
    // Wait until the short trial completed while the long one trains (its run recorded as
    // running, not still starting), then interrupt the sweep.
    let started = Instant::now();
    let completed = loop {
        let shown = project.host(&["sweep", "show", "--json"]).json();
        let trials = shown[0]["trials"].as_array().cloned().unwrap_or_default();
        let done: Vec<serde_json::Value> = trials.iter().filter(|t| t["status"] == "completed").cloned().collect();
        let running = project.host(&["runs", "list", "--json", "--status", "running"]).json();
        if let [short] = done.as_slice()
            && running.as_array().is_some_and(|runs| runs.len() == 1)
        {
            break short.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the short trial did not complete: {shown:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(completed["trial"], 1, "{completed:#}");
    let signal = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(signal.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let cancelled = project.host(&["runs", "list", "--json", "--status", "cancelled"]).success().json();
    assert_eq!(cancelled.as_array().unwrap().len(), 1, "the long trial was recorded cancelled: {cancelled:#}");
    let shown = project.host(&["sweep", "show", "--json"]).success().json();
    let statuses: Vec<&str> = shown[0]["trials"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["completed", "cancelled"]);

    // The same file resumes the sweep: the completed trial is skipped (its run kept, no new run),
    // the cancelled one runs again to the end.
    let resumed = project.host(&["sweep", "config/sweep.yaml", "--jobs", "2", "--json"]).success().json();
    let trials = resumed["trials"].as_array().unwrap();
    assert!(trials.iter().all(|t| t["status"] == "completed"), "{resumed:#}");
    assert_eq!(trials[0]["run_id"], completed["run_id"], "the completed trial was run again");
    let runs = project.host(&["runs", "list", "--json"]).success().json();
    assert_eq!(runs.as_array().unwrap().len(), 3, "one run for the short trial, two for the long one: {runs:#}");
    assert_eq!(resumed["sweep_id"], shown[0]["sweep_id"]);
}}

on_every_store! {
fn median_stopping_prunes_a_trial_that_falls_behind() {
    let project = sweep_project(300);
    let config = std::fs::read_to_string(project.path().join("config/sweep.yaml")).unwrap();
    // Trial 1 learns and stops early; trial 2 (a tiny learning rate) lags at every epoch, also
    // past trial 1's last, where trial 1's last value is the median to beat.
    let config = config
        .replace("batch_size: 32}", "batch_size: 32, early_stopping: true, patience: 2}")
        .replace("training.learning_rate: [0.001, 0.01]", "training.learning_rate: [0.01, 0.00001]")
        .replace("    model.hidden_layers: [[32], [64]]\n", "")
        .replace(
            "  direction: minimize\n",
            "  direction: minimize\n  prune: {metric: val_loss, direction: minimize, after_epochs: 1, min_trials: 1}\n",
        );
    project.write("config/sweep.yaml", &config);
    let swept = project.host(&["sweep", "config/sweep.yaml", "--jobs", "1", "--json"]);
    let json = swept.success().json();
    let trials = json["trials"].as_array().unwrap();
    let lagging = project.host(&["runs", "show", trials[1]["run_id"].as_str().unwrap(), "--json"]).json();
    assert_eq!(
        (trials[0]["status"].as_str(), trials[1]["status"].as_str()),
        (Some("completed"), Some("pruned")),
        "{json:#}\ntrial 2 ran {} epochs: {}\n{}",
        lagging["history"].as_object().map_or(0, |h| h.len()),
        lagging["fit"],
        swept.stderr
    );
    let run = project.host(&["runs", "show", trials[1]["run_id"].as_str().unwrap(), "--json"]).success().json();
    assert_eq!(run["status"], "cancelled");
    let epochs = run["history"].as_object().unwrap().len();
    assert!(epochs < 300, "the pruned trial ran all {epochs} epochs");
    // Pruned trials count as done: running the sweep again has nothing to do.
    let again = project.host(&["sweep", "config/sweep.yaml"]);
    assert!(again.success().stderr.contains("2 trials, 2 done, 0 to run"), "{}", again.stderr);
}}

#[test]
fn sweep_validation_reads_cached_manifests_by_sha256_and_ignores_other_sdk_versions() {
    let project = Project::new();
    let path = library("faulty-plugin");
    project.mapping(&format!("Loader:\n  FaultyLoader: {0}\nModel:\n  FaultyModel: {0}\n", path.display()));
    project.write(
        "config/sweep.yaml",
        "experiment_name: cached\nplugins: {data_loader: FaultyLoader, model: FaultyModel}\n\
         data_splitting: {use_predefined_test: false, train_ratio: 0.6, val_ratio: 0.2, test_ratio: 0.2}\n\
         model: {mode: error}\n\
         sweep:\n  method: grid\n  parameters:\n    seed: [1, 2]\n",
    );
    let cache = tempfile::tempdir().unwrap();
    let sweep = |json: bool| {
        let mut command = std::process::Command::new(crate::support::host_binary());
        command.args(["sweep", "config/sweep.yaml", "--jobs", "2"]).current_dir(project.path());
        if json {
            command.arg("--json");
        }
        crate::support::Run::from(command.env("XDG_CACHE_HOME", cache.path()).output().unwrap())
    };
    sweep(true).success();
    let sha256 = project.host(&["plugins", "list", "--json"]).success().json()["entries"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let entry = cache.path().join(format!("host/manifests/{sha256}.json"));
    let cached: serde_json::Value = serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    assert_eq!(cached["manifest"]["plugin_name"], "faulty-plugin");

    // The cached manifest is what validation reads: without FaultyModel's keys there, the
    // sweep's `model.mode` is refused, so the library itself was not asked.
    let mut edited = cached.clone();
    for class in edited["manifest"]["classes"].as_array_mut().unwrap() {
        if class["name"] == "FaultyModel" {
            class["config_keys"] = serde_json::json!([]);
        }
    }
    std::fs::write(&entry, edited.to_string()).unwrap();
    let refused = sweep(false);
    assert!(refused.failure().contains("model: class FaultyModel reads no `model` keys"), "{}", refused.stderr);

    // A manifest cached by a host of another SDK version is not used, and is replaced.
    edited["sdk_version"] = serde_json::json!("0.0.0-other");
    std::fs::write(&entry, edited.to_string()).unwrap();
    sweep(false).success();
    let replaced: serde_json::Value = serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    assert_eq!(replaced, cached);
}

#[test]
fn one_driver_at_a_time_and_a_killed_driver_leaves_no_trial_training() {
    let project = sweep_project(200);
    let mut driver = spawn_host(&project, &["sweep", "config/sweep.yaml", "--jobs", "2"], Stdio::null());
    let started = Instant::now();
    loop {
        let runs = project.host(&["runs", "list", "--json", "--status", "running"]).json();
        if runs.as_array().is_some_and(|r| r.len() == 2) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no trials started");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A second driver of the same file would start every trial again: refused.
    let second = project.host(&["sweep", "config/sweep.yaml", "--jobs", "2"]);
    assert!(second.failure().contains(&format!("is being run by process {} on", driver.id())), "{}", second.stderr);
    // The driver killed outright: its workers get SIGTERM, stop after their batch and say so.
    driver.kill().unwrap();
    driver.wait().unwrap();
    let started = Instant::now();
    loop {
        let running = project.host(&["runs", "list", "--json", "--status", "running"]).json();
        if running.as_array().is_some_and(|r| r.is_empty()) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "workers outlived their sweep: {running}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Each worker stopped after its batch and said so (one may have finished its trial in the
    // moment before the kill: runs are fast).
    let runs = project.host(&["runs", "list", "--json"]).success().json();
    let statuses: Vec<&str> = runs.as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    let logs = trial_logs(&project);
    assert_eq!(statuses.len(), 2, "{runs:#}\n{logs}");
    assert!(statuses.contains(&"cancelled"), "{runs:#}\n{logs}");
    assert!(statuses.iter().all(|s| ["cancelled", "completed"].contains(s)), "{runs:#}\n{logs}");
    for run in runs.as_array().unwrap().iter().filter(|r| r["status"] == "cancelled") {
        let shown = project.host(&["runs", "show", run["run_id"].as_str().unwrap(), "--json"]).success().json();
        assert_eq!(shown["error"], "cancelled after its batch: the sweep that started it has ended", "{logs}");
    }
    // Resumed (the dead driver's lease taken over), every trial completes exactly once.
    let resumed = project.host(&["sweep", "config/sweep.yaml", "--jobs", "2", "--json"]).success().json();
    let trials = resumed["trials"].as_array().unwrap();
    assert!(trials.iter().all(|t| t["status"] == "completed"), "{resumed:#}");
    let completed = project.host(&["runs", "list", "--json", "--status", "completed"]).success().json();
    assert_eq!(completed.as_array().unwrap().len(), trials.len(), "no trial ran twice");
}

#[test]
fn a_driver_whose_lease_is_taken_over_stops() {
    let project = sweep_project(200);
    // Renewals every second (stale_after / 8, at least 1 s).
    project.write("config/database_config.yaml", "stale_after_seconds: 8\n");
    let driver = project
        .command(&["sweep", "config/sweep.yaml", "--jobs", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let sweep_id = loop {
        let shown = project.host(&["sweep", "show", "--json"]).json();
        let running = project.host(&["runs", "list", "--json", "--status", "running"]).json();
        if let Some(id) = shown[0]["sweep_id"].as_str()
            && running.as_array().is_some_and(|r| !r.is_empty())
        {
            break id.to_owned();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no trial started");
        std::thread::sleep(Duration::from_millis(100));
    };
    store::testing::steal_sweep_lease(&project.store_locator(), &sweep_id).unwrap();
    let output = driver.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("process 1 on elsewhere took the sweep over"), "{stderr}");
}

#[test]
fn trials_get_the_users_mapping_layered_over_the_projects() {
    let project = Project::new();
    let faulty = library("faulty-plugin");
    project.mapping(&format!("Loader:\n  FaultyLoader: {0}\nModel:\n  FaultyModel: {0}\n", faulty.display()));
    // The user's mapping beside their sweep config maps only the model, to their own build.
    let mine = project.path().join("mine/libfaulty_mine.so");
    std::fs::create_dir_all(mine.parent().unwrap()).unwrap();
    std::fs::copy(&faulty, &mine).unwrap();
    project.write("mine/class_mapping_config.yaml", "Model:\n  FaultyModel: libfaulty_mine.so\n");
    project.write(
        "mine/sweep.yaml",
        "experiment_name: layered\nplugins: {data_loader: FaultyLoader, model: FaultyModel}\n\
         data_splitting: {use_predefined_test: false, train_ratio: 0.6, val_ratio: 0.2, test_ratio: 0.2}\n\
         sweep:\n  method: grid\n  metric: test.samples\n  parameters:\n    seed: [1, 2]\n",
    );
    let sweep = project.host(&["sweep", "mine/sweep.yaml", "--jobs", "2", "--json"]).success().json();
    let trials = sweep["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2);
    for trial in trials {
        let run = project.host(&["runs", "show", trial["run_id"].as_str().unwrap(), "--json"]).success().json();
        let library_of = |kind: &str| {
            let plugins = run["plugins"].as_array().unwrap();
            plugins.iter().find(|p| p["kind"] == kind).unwrap()["library"].as_str().unwrap().to_owned()
        };
        assert!(library_of("Model").ends_with("mine/libfaulty_mine.so"), "{run:#}");
        assert_eq!(library_of("Loader"), faulty.display().to_string());
    }
}
