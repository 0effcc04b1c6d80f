//! docs/writing-a-plugin.md is a working plugin: its `// file:` and `# file:` blocks, written
//! out as a crate outside the repository, build against the SDK, pass the crate's own tests,
//! load into the host and run, verify and replay an experiment; its quoted messages are the
//! host's. A change to the SDK or the host that breaks the guide fails here.

use std::path::{Path, PathBuf};

use crate::support::{Project, build_crate_with, workspace_root};

fn guide() -> String {
    std::fs::read_to_string(workspace_root().join("docs/writing-a-plugin.md")).unwrap()
}

/// Every fenced block of the guide whose first line names a file: (path, text without that line).
fn guide_files(guide: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with("```") {
            continue;
        }
        // The block up to its closing fence (consumed with it).
        let block: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
        let Some(first) = block.first() else { continue };
        if let Some(path) = first.strip_prefix("// file: ").or_else(|| first.strip_prefix("# file: ")) {
            files.push((path.trim().to_owned(), block[1..].join("\n") + "\n"));
        }
    }
    files
}

/// Labelled 4x4 images in the guide's CSV format: three classes, each lighting its own band of
/// pixels, with seeded noise.
fn write_images(path: &Path) {
    let mut state: u64 = 7;
    let mut noise = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 59) as u32 * 3
    };
    let mut text = format!("label,{}\n", (0..16).map(|i| format!("p{i}")).collect::<Vec<_>>().join(","));
    for row in 0..180 {
        let class = row % 3;
        let pixels: Vec<String> = (0..16)
            .map(|pixel| {
                let lit = pixel / 5 == class;
                ((if lit { 180 } else { 20 }) + noise()).min(255).to_string()
            })
            .collect();
        text.push_str(&format!("{},{}\n", ["zero", "one", "two"][class], pixels.join(",")));
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_plugin_guide_builds_passes_its_tests_and_runs_verifies_and_replays_in_the_host() {
    let guide = guide();
    let files = guide_files(&guide);
    let names: Vec<&str> = files.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(
        names,
        [
            "Cargo.toml",
            "src/csv_images.rs",
            "src/knn.rs",
            "src/summary.rs",
            "src/lib.rs",
            "src/tests.rs",
            "config/digits.yaml"
        ]
    );

    // The crate, outside the repository, against this SDK (the guide's `../plugin-sdk`).
    let crates = tempfile::tempdir().unwrap();
    let root = crates.path().join("digits");
    let project = Project::new();
    let sdk = format!("path = {:?}", workspace_root().join("plugin-sdk"));
    for (path, text) in &files {
        let (base, text): (&Path, String) = match path.strip_prefix("config/") {
            Some(_) => (project.path(), text.clone()),
            None => (&root, text.replace("path = \"../plugin-sdk\"", &sdk)),
        };
        let target: PathBuf = base.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, text).unwrap();
    }
    assert!(std::fs::read_to_string(root.join("Cargo.toml")).unwrap().contains(&sdk), "the SDK path was not replaced");
    // The workspace's lock file: the same dependency versions, resolved without a network.
    std::fs::copy(workspace_root().join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
    let tested = crate::support::test_crate(&root.join("Cargo.toml"), &["--offline"]);
    assert!(tested.contains("test result: ok. 1 passed"), "{tested}");
    let built = build_crate_with(&root.join("Cargo.toml"), &[], &["--offline"]);
    project.drop_plugin(&built.join("libdigits.so"), "libdigits.so");
    write_images(&project.path().join("data/digits.csv"));

    // Discovered, with the declared key.
    let listed = project.host(&["plugins", "list", "--json"]).success().json();
    let classes: Vec<(&str, &str)> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["class"].as_str().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(classes, [("CsvImages", "Loader"), ("Knn", "Model"), ("RunSummary", "ReportGenerator")]);
    let inspect = project.host(&["plugins", "inspect", "plugins/libdigits.so"]).success().stdout.clone();
    assert!(inspect.contains("how many neighbours vote"), "{inspect}");

    // The guide's experiment: it learns the bands, records both splits' metrics and the report.
    let summary = project.host(&["run", "config/digits.yaml", "--json"]).success().json();
    let run_id = summary["run_id"].as_str().unwrap();
    assert_eq!(summary["metrics"]["test"]["samples"], 27, "{summary:#}");
    assert!(summary["metrics"]["test"]["accuracy"].as_f64().unwrap() > 0.9, "{summary:#}");
    assert!(summary["metrics"]["validation"]["accuracy"].as_f64().unwrap() > 0.9, "{summary:#}");
    assert_eq!(summary["metrics"]["model"]["k"], 3);
    let report = Path::new(summary["output_dir"].as_str().unwrap()).join("reports/summary.md");
    let report = std::fs::read_to_string(&report).unwrap();
    assert!(report.starts_with("# digits_knn") && report.contains("- Knn from digits 0.1.0, sha256 `"), "{report}");
    let shown = project.host(&["runs", "show", run_id, "--json"]).success().json();
    let source = shown["source_files"][0]["path"].as_str().unwrap();
    assert!(source.ends_with("/data/digits.csv") && shown["source_files"][0]["sha256"].is_string(), "{shown:#}");

    project.host(&["verify", run_id]).success();
    let replay = project.host(&["replay", run_id]);
    assert!(replay.success().stdout.contains("every compared output is bit-identical"), "{}", replay.stdout);

    // The message the guide quotes for a section the model does not read is the host's.
    let quoted = guide
        .lines()
        .find(|l| l.starts_with("config/digits.yaml: training: "))
        .expect("the guide quotes the section-ownership message");
    let config = std::fs::read_to_string(project.path().join("config/digits.yaml")).unwrap();
    project.write("config/digits.yaml", &format!("{config}training:\n  epochs: 8\n  batch_size: 64\n"));
    let refused = project.host(&["run", "config/digits.yaml"]);
    assert!(refused.failure().contains(quoted), "expected `{quoted}` in:\n{}", refused.stderr);
}
