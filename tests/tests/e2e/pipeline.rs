//! `host run` end to end with the MNIST plugin on a tiny generated IDX data set: outputs in the
//! run folder, determinism, evaluate-only from a saved model, the CNN, and Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{Project, Run, library, on_every_store, write_tiny_mnist};

pub fn mnist_project(model: &str, extra: &str) -> Project {
    let project = Project::new();
    write_tiny_mnist(&project.path().join("data"), 300, 100);
    let path = library("mnist-plugin").display().to_string();
    let linear = library("linear-plugin").display().to_string();
    project.mapping(&format!(
        "Loader:\n  MNISTLoader: {path}\nModel:\n  MNISTMLP: {path}\n  MNISTCNN: {path}\n  SoftmaxRegression: {linear}\n\
         ReportGenerator:\n  MNISTReportGenerator: {path}\n"
    ));
    project.write(
        "config/tiny.yaml",
        &format!(
            "experiment_name: tiny\noutput_dir: runs\nseed: 7\nthreads: 1\nplugins: {{data_loader: MNISTLoader, model: {model}}}\n\
             data_loader: {{data_dir: data}}\ndata_splitting: {{validation_fraction: 0.2}}\n{extra}"
        ),
    );
    project
}

/// The libraries the dynamic loader opened for `host ARGS` (its `LD_DEBUG=files` lines).
fn libraries_loaded(project: &Project, args: &[&str]) -> (Run, Vec<String>) {
    let output = project.command(args).env("LD_DEBUG", "files").output().unwrap();
    let run = Run::from(output);
    let loaded = run
        .stderr
        .lines()
        .filter_map(|line| line.split_once("file=")?.1.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    (run, loaded)
}

#[test]
fn a_cpu_run_never_loads_the_cuda_backend_and_asking_for_cuda_loads_it() {
    let project = mnist_project("MNISTMLP", "training: {epochs: 1, device: cpu}\n");
    let (run, loaded) = libraries_loaded(&project, &["run", "config/tiny.yaml", "--json"]);
    assert_eq!(
        run.code,
        Some(0),
        "{}",
        run.stderr.lines().filter(|l| !l.contains("file=")).collect::<Vec<_>>().join("\n")
    );
    assert!(loaded.iter().any(|l| l.contains("libtorch_cpu.so")), "the model ran on libtorch: {loaded:?}");
    // libtorch_cpu itself needs the small CUDA runtime and profiler libraries; the backend and
    // its libraries (hundreds of MiB) stay out.
    let backend = ["libtorch.so", "libtorch_cuda", "libc10_cuda", "libcublas", "libcudnn", "libnccl", "libcusparse"];
    let cuda: Vec<&String> = loaded.iter().filter(|l| backend.iter().any(|b| l.contains(b))).collect();
    assert!(cuda.is_empty(), "a CPU run loaded {cuda:?}");

    // Asking for a GPU loads the backend, then says what is missing: on this machine the
    // device (with a GPU, the run trains on it).
    project.write(
        "config/gpu.yaml",
        &std::fs::read_to_string(project.path().join("config/tiny.yaml"))
            .unwrap()
            .replace("device: cpu", "device: cuda"),
    );
    let (run, loaded) = libraries_loaded(&project, &["run", "config/gpu.yaml", "--json"]);
    assert!(loaded.iter().any(|l| l.contains("libtorch_cuda.so")), "{loaded:?}");
    let said = format!("{}{}", run.stdout, run.stderr);
    if std::path::Path::new("/dev/nvidiactl").exists() {
        assert_eq!(run.code, Some(0), "a GPU machine trains on it: {said}");
    } else {
        assert!(said.contains("training.device is cuda, but no CUDA device is available; use cpu or auto"), "{said}");
    }
}

pub fn run_dir(project: &Project, summary: &serde_json::Value) -> PathBuf {
    project.path().join(summary["output_dir"].as_str().unwrap())
}

fn file_sha(summary: &serde_json::Value, suffix: &str) -> String {
    summary["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"].as_str().unwrap().ends_with(suffix))
        .unwrap_or_else(|| panic!("no artifact {suffix}"))["sha256"]
        .as_str()
        .unwrap()
        .to_owned()
}

on_every_store! {
fn a_run_trains_evaluates_and_writes_its_outputs() {
    let project = mnist_project("MNISTMLP", "training: {epochs: 3, batch_size: 32}\n");
    let run = project.host(&["run", "config/tiny.yaml"]);
    run.success();
    assert!(run.stdout.contains("completed in") && run.stdout.contains("test accuracy"), "{}", run.stdout);
    assert!(run.stderr.contains("epoch 3: loss"), "{}", run.stderr);

    let summary = project.host(&["run", "config/tiny.yaml", "--json"]).success().json();
    assert_eq!(summary["status"], "completed");
    let dir = run_dir(&project, &summary);
    for file in [
        "run.json",
        "config.json",
        "lineage.json",
        "history.csv",
        "metrics.json",
        "predictions.csv",
        "model/model.safetensors",
        "model/model.json",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing in {}", dir.display());
    }
    assert!(summary["metrics"]["test"]["accuracy"].as_f64().unwrap() > 0.9, "{:#}", summary["metrics"]);
    assert_eq!(summary["metrics"]["test"]["confusion_matrix"].as_array().unwrap().len(), 10);
    assert!(summary["metrics"]["custom"]["expected_calibration_error"].is_number());
    assert_eq!(summary["data"]["splits"]["train"]["rows"], 240);
    assert_eq!(summary["data"]["splits"]["validation"]["rows"], 60);
    assert_eq!(summary["data"]["splits"]["test"]["rows"], 100);
    let transforms: Vec<&str> =
        summary["data"]["transforms"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(transforms, ["split", "scale"]);
    assert_eq!(summary["source_files"].as_array().unwrap().len(), 4);
    assert_eq!(summary["history"].as_object().unwrap().len(), 3);
    let predictions = std::fs::read_to_string(dir.join("predictions.csv")).unwrap();
    assert_eq!(predictions.lines().count(), 101);
    assert!(predictions.starts_with("row,true,predicted,confidence,p_0,"), "{predictions}");
}}

on_every_store! {
fn the_same_seed_and_threads_give_bit_identical_weights() {
    let project = mnist_project("MNISTMLP", "model: {dropout: 0.2}\ntraining: {epochs: 2}\n");
    let first = project.host(&["run", "config/tiny.yaml", "--json"]).success().json();
    // --force: train again rather than reuse the first run's stages.
    let second = project.host(&["run", "config/tiny.yaml", "--json", "--force"]).success().json();
    assert!(second["stages"].as_array().unwrap().iter().all(|s| s["reused_from"].is_null()), "{:#}", second["stages"]);
    assert_eq!(file_sha(&first, "model.safetensors"), file_sha(&second, "model.safetensors"));
    assert_eq!(first["data"]["splits"], second["data"]["splits"]);
    assert_eq!(first["metrics"], second["metrics"]);
    assert_ne!(first["run_id"], second["run_id"]);
}}

on_every_store! {
fn a_saved_model_is_evaluated_without_retraining() {
    let project = mnist_project("MNISTMLP", "training: {epochs: 2}\n");
    let trained = project.host(&["run", "config/tiny.yaml", "--json"]).success().json();
    let source = run_dir(&project, &trained);
    let evaluated =
        project.host(&["run", "config/tiny.yaml", "--json", "--model-from", source.to_str().unwrap()]).success().json();
    assert!(evaluated["fit"].is_null(), "no training happened");
    assert_eq!(evaluated["metrics"]["test"], trained["metrics"]["test"]);
    let missing = project.host(&["run", "config/tiny.yaml", "--model-from", "runs/nowhere"]);
    assert!(missing.failure().contains("loading the model from runs/nowhere"), "{}", missing.stderr);
}}

#[test]
fn the_cnn_trains_on_images() {
    let project = mnist_project(
        "MNISTCNN",
        "preprocessing: {flatten: false}\nmodel: {conv_filters: [8], kernel_sizes: [3], dense_layers: [32], dropout: 0.0}\ntraining: {epochs: 8, learning_rate: 0.005}\n",
    );
    let summary = project.host(&["run", "config/tiny.yaml", "--json"]).success().json();
    assert_eq!(summary["data"]["sample_shape"], serde_json::json!([1, 28, 28]));
    assert!(summary["metrics"]["test"]["accuracy"].as_f64().unwrap() > 0.5, "{:#}", summary["metrics"]["test"]);
    let bad = mnist_project("MNISTCNN", "model: {conv_filters: [4, 8], kernel_sizes: [3]}\n");
    let stderr = bad.host(&["run", "config/tiny.yaml"]).failure().to_owned();
    assert!(stderr.contains("model.kernel_sizes: 1 kernel sizes for 2 conv_filters; give one per block"), "{stderr}");
}

#[test]
fn reports_are_self_contained_and_escape_what_they_show() {
    let project = mnist_project("MNISTMLP", "training: {epochs: 2}\n");
    let config = std::fs::read_to_string(project.path().join("config/tiny.yaml")).unwrap();
    let config = config
        .replace("experiment_name: tiny", "experiment_name: \"<script>alert('x')</script>\"")
        .replace("model: MNISTMLP}", "model: MNISTMLP, report_generator: MNISTReportGenerator}");
    project.write("config/tiny.yaml", &config);
    let summary = project.host(&["run", "config/tiny.yaml", "--json"]).success().json();
    let reports = run_dir(&project, &summary).join("reports");
    for page in ["index.html", "data.html", "training.html", "evaluation.html"] {
        let html = std::fs::read_to_string(reports.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(!html.contains("<script>"), "{page} holds a live script tag");
        assert!(html.contains("&lt;script&gt;"), "{page} does not show the name as text");
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http"), "{page} fetches something");
        assert!(html.contains("<svg"), "{page} has no chart");
    }
    let index = std::fs::read_to_string(reports.join("index.html")).unwrap();
    assert!(index.contains(summary["config_sha256"].as_str().unwrap()), "the provenance panel shows the config hash");
    let reported: Vec<&str> = summary["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "report")
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(reported.len(), 4, "{reported:?}");
}

on_every_store! {
fn models_swap_by_config_alone() {
    let torch = mnist_project("MNISTMLP", "training: {epochs: 2}\n");
    let torch_run = torch.host(&["run", "config/tiny.yaml", "--json"]).success().json();
    let plain = mnist_project("SoftmaxRegression", "training: {epochs: 5, learning_rate: 0.05}\n");
    let plain_run = plain.host(&["run", "config/tiny.yaml", "--json"]).success().json();
    assert_eq!(plain_run["plugins"][1]["plugin_name"], "linear-plugin");
    assert_eq!(torch_run["plugins"][1]["plugin_name"], "mnist-plugin");
    assert_eq!(plain_run["data"]["splits"], torch_run["data"]["splits"], "the same data either way");
    assert!(plain_run["metrics"]["test"]["accuracy"].as_f64().unwrap() > 0.9, "{:#}", plain_run["metrics"]["test"]);
    // The plain model's library links no libtorch (its dynamic section names none), where the
    // torch model's does: swapping needed no libtorch for the model.
    let needed = |library: &str| {
        let output = std::process::Command::new("readelf").args(["-d", library]).output().unwrap();
        assert!(output.status.success(), "readelf {library}");
        String::from_utf8_lossy(&output.stdout).lines().filter(|l| l.contains("(NEEDED)")).collect::<Vec<_>>().join("\n")
    };
    let plain_model = needed(plain_run["plugins"][1]["library"].as_str().unwrap());
    let torch_model = needed(torch_run["plugins"][1]["library"].as_str().unwrap());
    assert!(torch_model.contains("libtorch"), "{torch_model}");
    assert!(!plain_model.is_empty() && !plain_model.contains("libtorch"), "{plain_model}");
}}

on_every_store! {
fn ctrl_c_stops_after_the_current_batch_and_the_run_is_cancelled() {
    // SIGTERM and SIGHUP (a closed terminal, a plain kill) are taken as Ctrl-C is.
    for signal in ["INT", "TERM", "HUP"] {
        let summary = stop_a_run_with(&[signal], None);
        if signal != "INT" {
            assert!(summary["error"].as_str().unwrap().contains(&format!("SIG{signal}")), "{summary:#}");
        }
    }
    // A local sweep's trial (the environment names its driver) is told its driver died with
    // SIGURG, which the kernel may send more than once (once for each of the dying driver's
    // threads it is handed to): it stops after its batch all the same, never at once.
    let driver = std::process::id().to_string();
    let summary = stop_a_run_with(&["URG", "URG", "URG"], Some(&driver));
    assert!(summary["error"].as_str().unwrap().contains("the sweep that started it has ended"), "{summary:#}");
    // Anything else ignores a stray SIGURG.
    let summary = stop_a_run_with(&["URG", "TERM"], None);
    assert!(summary["error"].as_str().unwrap().contains("SIGTERM"), "{summary:#}");
}}

/// Starts `host run` of a training that lasts (a sweep trial of `driver` when given), and
/// returns it once training has begun.
fn start_training(project: &Project, driver: Option<&str>) -> std::process::Child {
    let mut command = project.command(&["run", "config/tiny.yaml", "--json"]);
    if let Some(driver) = driver {
        command.env("HOST_SWEEP_DRIVER_PID", driver);
    }
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Wait until training has started (the run folder holds lineage.json).
    let runs = project.path().join("runs");
    let started = std::time::Instant::now();
    while !has_lineage(&runs) {
        assert!(started.elapsed().as_secs() < 60, "training never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child
}

fn kill(signal: &str, child: &std::process::Child) {
    let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Sends `signals` to a training run (a trial of `driver` when given), 100 ms apart; returns its
/// summary, once it has checked that the run stopped in training, cancelled (exit status 130).
fn stop_a_run_with(signals: &[&str], driver: Option<&str>) -> serde_json::Value {
    let project = mnist_project("MNISTMLP", "training: {epochs: 1000, batch_size: 8}\n");
    let child = start_training(&project, driver);
    for signal in signals {
        kill(signal, &child);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{signals:?}: {stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["status"], "cancelled", "{signals:?}");
    assert_eq!(summary["stages"].as_array().unwrap().last().unwrap()["name"], "train");
    summary
}

#[test]
fn a_second_ctrl_c_exits_at_once_with_130_and_the_run_reads_interrupted() {
    // Batches long enough that the second Ctrl-C comes while the first waits for its batch.
    let project =
        mnist_project("MNISTMLP", "training: {epochs: 1000, batch_size: 240}\nmodel: {hidden_layers: [4096, 4096]}\n");
    let mut child = start_training(&project, None);
    kill("INT", &child);
    // The second once the first is taken (its message on stderr), while the batch still runs.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("stopping after the current batch") {
        assert!(std::io::BufRead::read_line(&mut stderr, &mut seen).unwrap() > 0, "{seen}");
    }
    kill("INT", &child);
    std::io::Read::read_to_string(&mut stderr, &mut seen).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = seen;
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("SIGINT again: exiting now"), "{stderr}");
    // Exiting skips libtorch's exit-time destructors, which its working threads would meet with
    // an exception Rust aborts on.
    assert!(!stderr.contains("fatal runtime error"), "{stderr}");
    let runs = project.host(&["runs", "list", "--json"]).success().json();
    assert_eq!(runs[0]["status"], "interrupted", "{runs:#}");
}

fn has_lineage(runs: &Path) -> bool {
    std::fs::read_dir(runs)
        .map(|mut entries| entries.any(|e| e.is_ok_and(|e| e.path().join("lineage.json").is_file())))
        .unwrap_or(false)
}
