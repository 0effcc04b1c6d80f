//! Reproduction end to end: the stage cache (a second run reuses what it can, and only that)
//! and `host replay` (bit-identical on CPU, refusing plugin builds that changed).

use serde_json::Value;

use crate::pipeline::{mnist_project, run_dir};
use crate::support::{library, on_every_store};

/// Each stage's name and the run it reused, if any.
fn reuse(summary: &Value) -> Vec<(String, Option<String>)> {
    summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s["reused_from"].as_str().map(str::to_owned)))
        .collect()
}

fn reused(summary: &Value) -> Vec<String> {
    reuse(summary).into_iter().filter(|(_, from)| from.is_some()).map(|(name, _)| name).collect()
}

on_every_store! {
fn a_rerun_reuses_its_stages_and_a_new_learning_rate_reuses_only_the_data() {
    let project = mnist_project("MNISTMLP", "training: {epochs: 2, learning_rate: 0.001}\n");
    let first = project.host(&["run", "config/tiny.yaml", "--json"]).success().json();
    assert!(reused(&first).is_empty(), "{:?}", reuse(&first));
    let first_id = first["run_id"].as_str().unwrap();
    // Each stage records the config it ran with and its cache key.
    let train = &first["stages"][2];
    assert_eq!(
        (train["name"].as_str(), train["parameters"]["training"]["learning_rate"].as_f64()),
        (Some("train"), Some(0.001))
    );
    assert_eq!(train["cache_key"].as_str().map(str::len), Some(64));

    // The same config again: every cacheable stage is reused; the report is always made anew.
    let again = project.host(&["run", "config/tiny.yaml", "--json"]);
    let again_json = again.success().json();
    assert_eq!(reused(&again_json), ["load", "prepare", "train", "evaluate"]);
    assert!(reuse(&again_json).iter().all(|(_, from)| from.as_deref().is_none_or(|f| f == first_id)));
    assert!(!again.stderr.contains("epoch 1:"), "no training happened: {}", again.stderr);
    assert_eq!(again_json["metrics"], first["metrics"]);
    assert_eq!(again_json["history"], first["history"]);
    assert_eq!(again_json["data"]["splits"], first["data"]["splits"]);
    // The reused outputs are this run's own files, recorded and verifiable.
    let again_id = again_json["run_id"].as_str().unwrap();
    assert!(run_dir(&project, &again_json).join("model/model.safetensors").is_file());
    project.host(&["verify", again_id]).success();
    let shown = project.host(&["runs", "show", again_id]).success().stdout.clone();
    assert!(shown.lines().any(|l| l.starts_with("train") && l.contains(&format!("reused from {first_id}"))), "{shown}");

    // A new learning rate: the data is neither reloaded nor re-split; training runs.
    let config = std::fs::read_to_string(project.path().join("config/tiny.yaml")).unwrap();
    project.write("config/tiny.yaml", &config.replace("learning_rate: 0.001", "learning_rate: 0.01"));
    let tuned = project.host(&["run", "config/tiny.yaml", "--json"]);
    let tuned_json = tuned.success().json();
    assert_eq!(reused(&tuned_json), ["load", "prepare"]);
    assert!(!tuned.stderr.contains("reading"), "the loader did not run: {}", tuned.stderr);
    assert_eq!(tuned_json["data"]["splits"], first["data"]["splits"]);
    assert_ne!(tuned_json["metrics"]["model"], first["metrics"]["model"]);

    // --force recomputes everything.
    let forced = project.host(&["run", "config/tiny.yaml", "--json", "--force"]).success().json();
    assert!(reused(&forced).is_empty(), "{:?}", reuse(&forced));
    assert_eq!(forced["data"]["splits"], first["data"]["splits"]);
}}

on_every_store! {
fn the_cache_checks_what_it_reuses_and_recomputes_on_any_change() {
    let project = mnist_project("MNISTMLP", "training: {epochs: 1}\n");
    let first = project.host(&["run", "config/tiny.yaml", "--json"]).success().json();

    // The earlier run's weights were altered: training is not reused from them.
    let weights = run_dir(&project, &first).join("model/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&weights, &bytes).unwrap();
    let second = project.host(&["run", "config/tiny.yaml", "--json"]).success().json();
    // Training again gives the original weights (bit-identical on CPU), so evaluating those
    // weights, keyed by their digest, is reused from the first run.
    assert_eq!(reused(&second), ["load", "prepare", "evaluate"]);

    // A raw data file changed: it is loaded again.
    let labels = project.path().join("data/train-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&labels).unwrap();
    let last = bytes.len() - 1;
    bytes[last] = (bytes[last] + 1) % 10;
    std::fs::write(&labels, &bytes).unwrap();
    let third = project.host(&["run", "config/tiny.yaml", "--json"]).success().json();
    assert!(reused(&third).is_empty(), "{:?}", reuse(&third));
    assert_ne!(third["data"]["dataset_sha256"], first["data"]["dataset_sha256"]);

    // The cached splits were corrupted: they are prepared again (and the bad file replaced).
    let cache = project.path().join("provenance.cache/splits");
    for entry in std::fs::read_dir(&cache).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
    }
    let fourth = project.host(&["run", "config/tiny.yaml", "--json"]).success().json();
    assert!(!reused(&fourth).contains(&"prepare".to_owned()), "{:?}", reuse(&fourth));
    let fifth = project.host(&["run", "config/tiny.yaml", "--json"]).success().json();
    assert_eq!(reused(&fifth), ["load", "prepare", "train", "evaluate"]);
    let fifth_id = fifth["run_id"].as_str().unwrap();
    project.host(&["verify", fifth_id]).success();

    // Poisoned: every training label set to 0 and the file's own checksum recomputed. Its
    // content is not what the store recorded, so verify says so and nothing reuses it.
    for entry in std::fs::read_dir(&cache).unwrap() {
        poison_train_labels(&entry.unwrap().path());
    }
    let verify = project.host(&["verify", fifth_id]);
    assert_eq!(verify.code, Some(1), "{}", verify.stdout);
    assert!(verify.stdout.lines().any(|l| l.starts_with("changed") && l.contains("cached train split")), "{}", verify.stdout);
    let sixth = project.host(&["run", "config/tiny.yaml", "--json"]);
    assert!(sixth.stderr.contains("the train split is not what run"), "{}", sixth.stderr);
    let sixth = sixth.success().json();
    assert!(!reused(&sixth).contains(&"prepare".to_owned()), "{:?}", reuse(&sixth));
    assert_eq!(sixth["data"]["splits"], fifth["data"]["splits"], "the same clean splits, prepared again");
}}

/// The chunked SHA-256 the host's split checksums use (4 MiB chunks, digests hashed in order).
fn chunked_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"chunked-sha256-4MiB\0");
    hasher.update((bytes.len() as u64).to_le_bytes());
    for chunk in bytes.chunks(4 << 20) {
        hasher.update(Sha256::digest(chunk));
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Rewrites a cached splits file as a forger would: the train split's labels all 0, its
/// targets checksum recomputed so the file is internally consistent.
fn poison_train_labels(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let length = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[16..16 + length]).unwrap();
    let row_len: usize =
        header["sample_shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).product();
    let train = &mut header["splits"][0];
    assert_eq!(train["name"], "train");
    let rows = train["rows"].as_u64().unwrap() as usize;
    let targets = 16 + length + rows * row_len * 4;
    bytes[targets..targets + rows * 8].fill(0);
    train["targets_sha256"] = Value::from(chunked_sha256(&bytes[targets..targets + rows * 8]));
    let new_header = serde_json::to_vec(&header).unwrap();
    assert_eq!(new_header.len(), length, "same-length digests keep the layout");
    bytes[16..16 + length].copy_from_slice(&new_header);
    std::fs::write(path, bytes).unwrap();
}

on_every_store! {
fn replay_reproduces_a_run_bit_for_bit_and_refuses_changed_plugin_builds() {
    let project = mnist_project("MNISTMLP", "model: {dropout: 0.1}\ntraining: {epochs: 2}\n");
    // The run uses its own copy of the plugin, which the test then alters.
    let plugin = project.drop_plugin(&library("mnist-plugin"), "libmnist_copy.so").display().to_string();
    project.mapping(&format!("Loader:\n  MNISTLoader: {plugin}\nModel:\n  MNISTMLP: {plugin}\n"));
    let original = project.host(&["run", "config/tiny.yaml", "--json"]).success().json();
    let run_id = original["run_id"].as_str().unwrap();

    let replay = project.host(&["replay", run_id]);
    replay.success();
    assert!(replay.stdout.contains("every compared output is bit-identical"), "{}", replay.stdout);
    for stage in ["load", "prepare", "train", "evaluate"] {
        assert!(
            replay.stdout.lines().any(|l| l.starts_with(stage) && l.contains("identical")),
            "{stage}: {}",
            replay.stdout
        );
    }
    // On the machine the run ran on, a replay says nothing about the machine; on another CPU
    // (here one that shares this one's model name, as two generations of a virtual machine's
    // CPU can), it names both before it compares. (The test machines are x86 or Arm, whose
    // /proc/cpuinfo names a family and model, or an implementer and part.)
    assert!(!replay.stderr.contains("this machine differs"), "{}", replay.stderr);
    store::testing::rewrite_recorded_cpu_id(&project.store_locator(), run_id, "family 1 model 1").unwrap();
    let elsewhere = project.host(&["replay", run_id]);
    elsewhere.success();
    let said = elsewhere.stderr.find(&format!("this machine differs from the one run {run_id} ran on")).expect(&elsewhere.stderr);
    let line = elsewhere.stderr[said..].lines().find(|l| l.trim_start().starts_with("CPU: ")).expect(&elsewhere.stderr);
    assert!(line.contains("(family 1 model 1), here ") && line.ends_with(')'), "{line}");
    assert!(elsewhere.stdout.contains("bit-identical"), "{}", elsewhere.stdout);
    // A replay recomputes (no stage cache), is recorded as one, and works from any folder.
    let json = crate::support::Project::new();
    let db = project.store_locator();
    let replayed = json.host(&["replay", run_id, "--json", "--db", &db]).success().json();
    assert_eq!(replayed["identical"], true, "{replayed:#}");
    let stages = replayed["stages"].as_array().unwrap();
    assert!(stages.iter().filter(|s| s["stage"] != "report").all(|s| s["identical"] == true), "{stages:?}");
    let record = project.host(&["runs", "show", replayed["replay"].as_str().unwrap(), "--json"]).success().json();
    assert_eq!(record["replay_of"], run_id);
    assert!(record["stages"].as_array().unwrap().iter().all(|s| s["reused_from"].is_null()));

    // The plugin build changed since the run: refused with both hashes, unless forced.
    let mut bytes = std::fs::read(&plugin).unwrap();
    bytes.extend_from_slice(b"rebuilt");
    std::fs::write(&plugin, &bytes).unwrap();
    let refused = project.host(&["replay", run_id]);
    let message = refused.failure();
    let recorded = original["plugins"][0]["sha256"].as_str().unwrap();
    assert!(message.contains(&format!("the run recorded {recorded}")), "{message}");
    assert!(message.contains("has SHA-256 ") && message.contains("--force"), "{message}");
    assert_eq!(project.host(&["runs", "list", "--json"]).success().json().as_array().unwrap().len(), 4);
    let forced = project.host(&["replay", run_id, "--force"]);
    forced.success();
    assert!(forced.stdout.contains("bit-identical"), "{}", forced.stdout);

    let unknown = project.host(&["replay", "nope"]);
    assert!(unknown.failure().contains("no run nope"), "{}", unknown.stderr);
}}

#[test]
fn a_run_takes_raw_file_digests_from_the_digest_cache_and_a_replay_rehashes_them() {
    use sha2::Digest;
    let project = mnist_project("MNISTMLP", "training: {epochs: 1}\n");
    let cache = project.path().join("cache");
    let host = |args: &[&str]| {
        let output = project.command(args).env("XDG_CACHE_HOME", &cache).output().unwrap();
        crate::support::Run::from(output)
    };
    // Files changed in the last two seconds are hashed but not cached: age the data first.
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for entry in std::fs::read_dir(project.path().join("data")).unwrap() {
        std::fs::File::options().write(true).open(entry.unwrap().path()).unwrap().set_modified(hour_ago).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let first = host(&["run", "config/tiny.yaml", "--json"]).success().json();
    let images = first["source_files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("train-images-idx3-ubyte"));
    let images = images.unwrap_or_else(|| panic!("{first:#}"));
    let path = std::path::Path::new(images["path"].as_str().unwrap()).canonicalize().unwrap();
    let name = sha2::Sha256::digest(path.as_os_str().as_encoded_bytes());
    let entry = cache
        .join("host/digests")
        .join(format!("{}.json", name.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    let mut cached: serde_json::Value = serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    assert_eq!(cached["sha256"], images["sha256"]);

    // A digest planted in the cache is what the next run records: the cache answers for the file.
    let planted = "0".repeat(64);
    cached["sha256"] = planted.clone().into();
    std::fs::write(&entry, cached.to_string()).unwrap();
    let second = host(&["run", "config/tiny.yaml", "--json", "--force"]).success().json();
    let recorded = second["source_files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("train-images-idx3-ubyte"));
    assert_eq!(recorded.unwrap()["sha256"], planted.as_str());

    // A replay rehashes every raw file: it finds the bytes are not what the run recorded.
    let replay = host(&["replay", second["run_id"].as_str().unwrap(), "--json"]);
    let replayed = replay.json();
    assert_eq!(replayed["identical"], false, "{replayed:#}");
    let load = replayed["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "load").unwrap();
    assert_eq!(load["identical"], false, "{replayed:#}");
}
