//! The registry and loader: listing, discovery, mapping precedence, every load failure's
//! message, swapping a plugin under one host binary, and the host not linking libtorch.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::support::{Project, build_fixture, host_binary, library, workspace_root};

fn sha256(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

fn faulty_mapping(project: &Project, body: &str) {
    project.mapping(&body.replace("FAULTY", &library("faulty-plugin").display().to_string()));
}

#[test]
fn the_repository_mapping_lists_the_mnist_classes_with_their_sha256() {
    let output =
        Command::new(host_binary()).args(["plugins", "list", "--json"]).current_dir(workspace_root()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let listing: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let entries = listing["entries"].as_array().unwrap();
    for (class, kind) in [("MNISTLoader", "Loader"), ("MNISTMLP", "Model"), ("MNISTCNN", "Model")] {
        let entry =
            entries.iter().find(|e| e["class"] == class).unwrap_or_else(|| panic!("{class} missing: {listing:#}"));
        assert_eq!(entry["kind"], kind);
        assert_eq!(entry["source"], "mapped");
        assert_eq!(entry["plugin_name"], "mnist-plugin");
        let library = workspace_root().join(entry["library"].as_str().unwrap());
        assert_eq!(entry["sha256"], sha256(&library), "{class}");
    }
    let text = Command::new(host_binary()).args(["plugins", "list"]).current_dir(workspace_root()).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.starts_with("CLASS"), "{text}");
    assert!(text.contains("MNISTLoader") && text.contains("mnist-plugin 0.1.0"), "{text}");
}

#[test]
fn libraries_in_plugins_are_discovered_and_a_mapping_entry_wins() {
    let project = Project::new();
    let dropped = project.drop_plugin(&library("faulty-plugin"), "libfaulty_plugin.so");
    let listing = project.host(&["plugins", "list", "--json"]).success().json();
    let classes: Vec<&str> =
        listing["entries"].as_array().unwrap().iter().map(|e| e["class"].as_str().unwrap()).collect();
    assert_eq!(classes, ["FaultyLoader", "FaultyModel", "FaultyReport"]);
    assert!(
        listing["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["source"] == "discovered" && e["sha256"] == sha256(&dropped))
    );

    // A second copy offers the same classes: ambiguous without a mapping entry.
    project.drop_plugin(&library("faulty-plugin"), "libfaulty_copy.so");
    project.write("config/run.yaml", "experiment_name: e\nplugins: {data_loader: FaultyLoader, model: FaultyModel}\n");
    let stderr = project.host(&["run", "config/run.yaml"]).failure().to_owned();
    assert!(
        stderr.contains("class FaultyLoader is provided by both ./plugins/libfaulty_copy.so and ./plugins/libfaulty_plugin.so; map it in the class mapping to choose one"),
        "{stderr}"
    );
    faulty_mapping(&project, "Loader:\n  FaultyLoader: FAULTY\nModel:\n  FaultyModel: FAULTY\n");
    let run = project.host(&["run", "config/run.yaml", "--json"]);
    run.success();
    assert_eq!(run.json()["plugins"][0]["library"], library("faulty-plugin").display().to_string());
}

#[test]
fn a_user_mapping_adds_to_the_project_mapping_and_discovery_and_its_entries_win() {
    let project = Project::new();
    project.drop_plugin(&library("linear-plugin"), "liblinear_plugin.so");
    faulty_mapping(&project, "Loader:\n  FaultyLoader: FAULTY\nModel:\n  FaultyModel: FAULTY\n");
    // The user's own mapping, beside their config in another folder: only the model, another build.
    let copy = project.path().join("mine/libfaulty_mine.so");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(library("faulty-plugin"), &copy).unwrap();
    project.write("mine/class_mapping_config.yaml", "Model:\n  FaultyModel: libfaulty_mine.so\n");
    project.write("mine/run.yaml", "experiment_name: e\nplugins: {data_loader: FaultyLoader, model: FaultyModel}\n");

    let listing = project.host(&["plugins", "list", "--json", "--class-mapping", "mine/class_mapping_config.yaml"]);
    let listing = listing.success().json();
    let entry = |class: &str| {
        let entries = listing["entries"].as_array().unwrap();
        let found: Vec<_> = entries.iter().filter(|e| e["class"] == class).collect();
        assert_eq!(found.len(), 1, "{class}: {listing:#}");
        (found[0]["source"].as_str().unwrap().to_owned(), found[0]["library"].as_str().unwrap().to_owned())
    };
    let project_library = library("faulty-plugin").display().to_string();
    assert_eq!(entry("FaultyModel"), ("mapped".into(), "mine/libfaulty_mine.so".into()));
    assert_eq!(entry("FaultyLoader"), ("mapped".into(), project_library.clone()));
    assert_eq!(entry("SoftmaxRegression"), ("discovered".into(), "./plugins/liblinear_plugin.so".into()));

    // A run of the config beside the user's mapping takes the model from it, the loader from
    // the project's.
    let run = project.host(&["run", "mine/run.yaml", "--json"]);
    let summary = run.success().json();
    let library_of = |kind: &str| {
        let plugins = summary["plugins"].as_array().unwrap();
        plugins.iter().find(|p| p["kind"] == kind).unwrap_or_else(|| panic!("{kind}: {summary:#}"))["library"].clone()
    };
    assert_eq!(library_of("Loader"), project_library);
    assert!(library_of("Model").as_str().unwrap().ends_with("mine/libfaulty_mine.so"), "{summary:#}");
}

/// Runs `host plugins inspect` and `host run` against a mapping that points FaultyLoader at
/// `library`; both must fail with `expected` in a short message.
fn assert_load_error(project: &Project, library: &Path, expected: &str) {
    let inspect = project.host(&["plugins", "inspect", library.to_str().unwrap()]);
    let stderr = inspect.failure();
    assert!(stderr.contains(expected), "inspect: expected `{expected}` in:\n{stderr}");
    assert!(stderr.lines().count() <= 2, "inspect: not short:\n{stderr}");

    project.mapping(&format!("Loader:\n  FaultyLoader: {}\n", library.display()));
    project.write("config/run.yaml", "experiment_name: e\nplugins: {data_loader: FaultyLoader, model: FaultyModel}\n");
    let stderr = project.host(&["run", "config/run.yaml"]).failure().to_owned();
    assert!(stderr.contains("config/run.yaml: plugins.data_loader: "), "{stderr}");
    assert!(stderr.contains(expected), "run: expected `{expected}` in:\n{stderr}");
}

#[test]
fn a_missing_library_names_where_it_was_looked_for_and_how_to_build_it() {
    let project = Project::new();
    project.mapping("Loader:\n  FaultyLoader: nope_plugin\n");
    project.write("config/run.yaml", "experiment_name: e\nplugins: {data_loader: FaultyLoader, model: FaultyModel}\n");
    let stderr = project.host(&["run", "config/run.yaml"]).failure().to_owned();
    assert!(
        stderr.contains("library `nope_plugin` (libnope_plugin.so) is not in ./plugins, ./target/release, ./target/debug; build it with `cargo build -p nope-plugin` or fix config/class_mapping_config.yaml"),
        "{stderr}"
    );
    assert_load_error(
        &project,
        &project.path().join("plugins/libgone.so"),
        "libgone.so: no such file; build the plugin",
    );
}

#[test]
fn files_that_are_not_plugins_are_refused_with_the_reason() {
    let project = Project::new();
    let text = project.write("plugins/libtext.so", "not a library\n");
    assert_load_error(&project, &text, "libtext.so: not a loadable dynamic library");
    assert_load_error(&project, project.path().join("plugins").as_path(), "is a directory, not a plugin library");

    // A real shared library without a plugin root module.
    let source = project.write("empty.c", "int answer(void) { return 42; }\n");
    let empty = project.path().join("libempty.so");
    let status = Command::new("cc").arg("-shared").arg("-fPIC").arg("-o").arg(&empty).arg(&source).status().unwrap();
    assert!(status.success());
    assert_load_error(
        &project,
        &empty,
        "a dynamic library but not a plugin (no plugin root module); build it with plugin_sdk::export_plugin!",
    );
}

#[test]
fn plugins_built_against_another_sdk_are_refused_in_one_line() {
    let project = Project::new();
    let host_sdk = plugin_sdk::SDK_VERSION;
    let newer =
        build_fixture("foreign-plugin", &[("FIXTURE_SDK_VERSION", "0.99.0")], &[], &project.path().join("libnewer.so"));
    assert_load_error(
        &project,
        &newer,
        &format!("built against plugin SDK 0.99.0, but this host speaks SDK {host_sdk}; rebuild the plugin"),
    );
    let older =
        build_fixture("foreign-plugin", &[("FIXTURE_SDK_VERSION", "0.0.1")], &[], &project.path().join("libolder.so"));
    assert_load_error(&project, &older, "built against plugin SDK 0.0.1");

    let layout = build_fixture(
        "foreign-plugin",
        &[("FIXTURE_SDK_VERSION", host_sdk)],
        &["layout-mismatch"],
        &project.path().join("liblayout.so"),
    );
    assert_load_error(&project, &layout, "plugin interface layout differs from this host's");
    // The long abi_stable report is there for -v, not by default.
    let verbose = project.host(&["-v", "plugins", "inspect", layout.to_str().unwrap()]);
    verbose.failure();
    assert!(verbose.stderr.lines().count() > 10, "{}", verbose.stderr);
}

#[test]
fn a_class_missing_from_its_library_or_of_the_wrong_kind_is_named() {
    let project = Project::new();
    project.write("config/run.yaml", "experiment_name: e\nplugins: {data_loader: Nope, model: FaultyLoader}\n");
    faulty_mapping(&project, "Loader:\n  Nope: FAULTY\nModel:\n  FaultyLoader: FAULTY\n");
    let stderr = project.host(&["run", "config/run.yaml"]).failure().to_owned();
    assert!(
        stderr.contains("plugins.data_loader: ") && stderr.contains("(plugin faulty-plugin 0.1.0) has no class Nope; it provides FaultyLoader (Loader), FaultyModel (Model), FaultyReport (ReportGenerator)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("plugins.model: class FaultyLoader in ")
            && stderr.contains("is a Loader, not a Model; choose a Model class such as FaultyModel"),
        "{stderr}"
    );
}

#[test]
fn a_plugin_whose_libtorch_is_missing_says_so_and_how_to_fix_it() {
    let project = Project::new();
    let copy = project.path().join("libmnist_no_rpath.so");
    std::fs::copy(library("mnist-plugin"), &copy).unwrap();
    let status = Command::new("patchelf").arg("--remove-rpath").arg(&copy).status();
    let status = status.expect("patchelf is missing: the set-up (scripts/setup.sh) installs it");
    assert!(status.success());
    let run = project.host(&["plugins", "inspect", copy.to_str().unwrap()]);
    let stderr = run.failure();
    assert!(
        stderr.contains(
            "libmnist_no_rpath.so: needs libtorch (libtorch_cpu.so), which could not be found; run the set-up"
        ),
        "{stderr}"
    );
}

#[test]
fn a_malformed_class_mapping_names_the_file_and_every_problem() {
    let project = Project::new();
    project.write("config/run.yaml", "experiment_name: e\nplugins: {data_loader: A, model: B}\n");
    project.mapping("Loader:\n  A: [unclosed\n");
    let stderr = project.host(&["run", "config/run.yaml"]).failure().to_owned();
    assert!(stderr.contains("config/class_mapping_config.yaml: malformed YAML: "), "{stderr}");
    project.mapping("Loaders:\n  A: a\nModel:\n  B: 3\n");
    let stderr = project.host(&["plugins", "list"]).failure().to_owned();
    assert!(stderr.contains("class_mapping_config.yaml: Loaders: unknown section; did you mean `Loader`?"), "{stderr}");
    assert!(
        stderr.contains("class_mapping_config.yaml: Model.B: expected a library name or path, found 3"),
        "{stderr}"
    );
}

#[test]
fn a_rebuilt_plugin_is_seen_by_the_same_host_binary() {
    let project = Project::new();
    let host_before = sha256(&host_binary());
    let scratch = tempfile::tempdir().unwrap();
    let v1 = build_fixture("swap-plugin", &[("SWAP_PLUGIN_VERSION", "1.0.0")], &[], &scratch.path().join("v1.so"));
    let v2 = build_fixture("swap-plugin", &[("SWAP_PLUGIN_VERSION", "2.0.0")], &[], &scratch.path().join("v2.so"));

    project.drop_plugin(&v1, "libswap_plugin.so");
    let first = project.host(&["plugins", "list", "--json"]).success().json();
    assert_eq!(first["entries"][0]["plugin_version"], "1.0.0");
    assert_eq!(first["entries"][0]["sha256"], sha256(&v1));

    // Replace by rename, never by writing over the loaded file.
    project.drop_plugin(&v2, "libswap_plugin.so");
    let second = project.host(&["plugins", "list", "--json"]).success().json();
    assert_eq!(second["entries"][0]["plugin_version"], "2.0.0");
    assert_eq!(second["entries"][0]["sha256"], sha256(&v2));
    assert_ne!(sha256(&v1), sha256(&v2));
    assert_eq!(sha256(&host_binary()), host_before, "the host was not rebuilt");
}

#[test]
fn a_plugin_whose_manifest_has_no_proper_version_is_refused() {
    let project = Project::new();
    let scratch = tempfile::tempdir().unwrap();
    let banana =
        build_fixture("swap-plugin", &[("SWAP_PLUGIN_VERSION", "banana")], &[], &scratch.path().join("banana.so"));
    let inspect = project.host(&["plugins", "inspect", banana.to_str().unwrap()]);
    assert!(inspect.failure().contains("the plugin version \"banana\" is not MAJOR.MINOR.PATCH"), "{}", inspect.stderr);
}

#[test]
fn the_host_binary_does_not_link_libtorch() {
    let output = Command::new("readelf").arg("-d").arg(host_binary()).output().expect("readelf (binutils)");
    assert!(output.status.success());
    let dynamic = String::from_utf8_lossy(&output.stdout);
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert!(!needed.is_empty(), "no NEEDED entries parsed from:\n{dynamic}");
    for line in &needed {
        assert!(!line.contains("torch") && !line.contains("c10"), "the host links {line}");
    }
    // The MNIST plugin, by contrast, does, with its rpath pointing at libtorch.
    let plugin = Command::new("readelf").arg("-d").arg(library("mnist-plugin")).output().unwrap();
    let plugin = String::from_utf8_lossy(&plugin.stdout);
    assert!(plugin.contains("libtorch_cpu.so") && plugin.contains("RUNPATH"), "{plugin}");
}

#[test]
fn inspect_shows_the_manifest_and_config_keys() {
    let project = Project::new();
    let run = project.host(&["plugins", "inspect", library("mnist-plugin").to_str().unwrap(), "--json"]);
    let manifest = run.success().json();
    assert_eq!(manifest["plugin_name"], "mnist-plugin");
    assert_eq!(manifest["sdk_version"], plugin_sdk::SDK_VERSION);
    assert_eq!(manifest["sha256"], sha256(&library("mnist-plugin")));
    let mlp = manifest["classes"].as_array().unwrap().iter().find(|c| c["name"] == "MNISTMLP").unwrap();
    let learning_rate = mlp["config_keys"].as_array().unwrap().iter().find(|k| k["name"] == "learning_rate").unwrap();
    assert_eq!(learning_rate["section"], "training");
    assert_eq!(learning_rate["type"], "number");
    assert_eq!(learning_rate["default"], 0.001);
    let text = project.host(&["plugins", "inspect", library("mnist-plugin").to_str().unwrap()]);
    let line = text.success().stdout.lines().find(|l| l.contains("training.learning_rate")).unwrap_or_default();
    assert!(line.contains("number") && line.contains("0.001"), "{}", text.stdout);
}

#[test]
fn plugins_anyone_could_replace_or_another_user_owns_are_flagged() {
    use std::os::unix::fs::PermissionsExt;
    let project = Project::new();
    let dropped = project.drop_plugin(&library("linear-plugin"), "liblinear_plugin.so");
    let listed = project.host(&["plugins", "list", "--json"]).success().json();
    assert_eq!(listed["entries"][0]["trust_warnings"], serde_json::json!([]), "a private folder is trusted");

    let plugins = project.path().join("plugins");
    std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = project.host(&["plugins", "list"]);
    let warning =
        format!("the library's folder {} is writable by every user: anyone could change it", plugins.display());
    assert!(run.success().stderr.contains(&warning), "{}", run.stderr);
    std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Ownership by another user needs root to arrange (CI runs as root): not skipped elsewhere.
    std::os::unix::fs::chown(&dropped, Some(65534), None).expect("this test runs as root, as CI does");
    let listed = project.host(&["plugins", "list", "--json"]).success().json();
    let warnings = listed["entries"][0]["trust_warnings"].to_string();
    assert!(warnings.contains("is owned by another user (uid 65534)"), "{warnings}");
}

/// A shared library whose constructor leaves `constructor-ran` in the working folder: proof
/// that loading it ran its code.
fn library_with_a_constructor(project: &Project) -> std::path::PathBuf {
    let source = project.write(
        "ctor.c",
        "#include <stdio.h>\n__attribute__((constructor)) static void ran(void) {\n\
         FILE *f = fopen(\"constructor-ran\", \"w\"); if (f) fclose(f); }\n",
    );
    let built = project.path().join("libctor.so");
    let status = Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&built).arg(&source).status().unwrap();
    assert!(status.success());
    built
}

#[test]
fn a_pin_is_checked_before_loading_and_unused_libraries_are_not_loaded() {
    let project = Project::new();
    let ctor = library_with_a_constructor(&project);
    let ran = project.path().join("constructor-ran");
    let pinned = "0".repeat(64);
    project.write(
        "config/run.yaml",
        "experiment_name: pinned\nplugins: {data_loader: FaultyLoader, model: FaultyModel}\n\
         data_splitting: {use_predefined_test: false, train_ratio: 0.6, val_ratio: 0.2, test_ratio: 0.2}\n",
    );
    faulty_mapping(
        &project,
        &format!(
            "Loader:\n  FaultyLoader:\n    library: {}\n    sha256: {pinned}\nModel:\n  FaultyModel: FAULTY\n",
            ctor.display()
        ),
    );
    let stderr = project.host(&["run", "config/run.yaml"]).failure().to_owned();
    assert!(
        stderr.contains(&format!("SHA-256 is {}, but ", sha256(&ctor))) && stderr.contains(&format!("to {pinned}")),
        "the pin, not the load error, is named: {stderr}"
    );
    assert!(!ran.exists(), "a library whose pin does not match must not be loaded");

    // Pinned and in plugins/, where a class looked up among the discovered libraries reaches
    // it: hashed against its pin there too before anything loads it.
    let in_plugins = project.path().join("plugins/libctor.so");
    std::fs::copy(&ctor, &in_plugins).unwrap();
    project.drop_plugin(&library("faulty-plugin"), "libfaulty_plugin.so");
    project
        .mapping(&format!("Loader:\n  FaultyLoader:\n    library: {}\n    sha256: {pinned}\n", in_plugins.display()));
    let stderr = project.host(&["run", "config/run.yaml"]).failure().to_owned();
    assert!(stderr.contains(&format!("to {pinned}")), "{stderr}");
    assert!(!ran.exists(), "discovery must not load a library whose pin does not match");
    std::fs::remove_file(project.path().join("plugins/libfaulty_plugin.so")).unwrap();

    // In plugins/ but not needed (every class is mapped): never loaded.
    faulty_mapping(&project, "Loader:\n  FaultyLoader: FAULTY\nModel:\n  FaultyModel: FAULTY\n");
    project.host(&["run", "config/run.yaml"]).success();
    assert!(!ran.exists(), "an unused library in plugins/ must not be loaded");
    // Listing reads every library, so it runs them: the guide says so.
    project.host(&["plugins", "list"]);
    assert!(ran.exists(), "listing loads the libraries in plugins/");
}

#[test]
fn fifos_named_like_libraries_or_artifacts_never_block() {
    let project = Project::new();
    let fifo = project.path().join("plugins/libfifo.so");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    project.drop_plugin(&library("faulty-plugin"), "libfaulty_plugin.so");
    project.write(
        "config/run.yaml",
        "experiment_name: fifo\nplugins: {data_loader: FaultyLoader, model: FaultyModel}\n\
         data_splitting: {use_predefined_test: false, train_ratio: 0.6, val_ratio: 0.2, test_ratio: 0.2}\n",
    );
    let listed = project.host(&["plugins", "list", "--json"]).success().json();
    assert!(listed["problems"].to_string().contains("not a regular file"), "{listed}");
    let inspect = project.host(&["plugins", "inspect", fifo.to_str().unwrap()]);
    assert!(inspect.failure().contains("not a regular file (a FIFO, socket or device)"), "{}", inspect.stderr);
    // Discovery skips past it to the class it needs.
    let run = project.host(&["run", "config/run.yaml", "--json"]).success().json();
    // An artifact replaced by a FIFO is reported, not waited on.
    let dir = project.path().join(run["output_dir"].as_str().unwrap());
    std::fs::remove_file(dir.join("metrics.json")).unwrap();
    let c_path = std::ffi::CString::new(dir.join("metrics.json").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    let verify = project.host(&["verify", run["run_id"].as_str().unwrap()]);
    assert_eq!(verify.code, Some(1), "{}{}", verify.stdout, verify.stderr);
    assert!(verify.stdout.contains("metrics.json"), "{}", verify.stdout);
    project.host(&["runs", "show", run["run_id"].as_str().unwrap()]).success();
}

#[test]
fn libraries_and_mappings_another_user_could_change_are_refused_unless_allowed() {
    use std::os::unix::fs::PermissionsExt;
    let project = Project::new();
    let dropped = project.drop_plugin(&library("faulty-plugin"), "libfaulty_plugin.so");
    project.write(
        "config/run.yaml",
        "experiment_name: trust\nplugins: {data_loader: FaultyLoader, model: FaultyModel}\n\
         data_splitting: {use_predefined_test: false, train_ratio: 0.6, val_ratio: 0.2, test_ratio: 0.2}\n",
    );
    project.mapping("{}\n");
    let plugins = project.path().join("plugins");
    let mode = |path: &Path, mode: u32| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();

    mode(&plugins, 0o777);
    let stderr = project.host(&["run", "config/run.yaml"]).failure().to_owned();
    assert!(
        stderr.contains(&format!("the library's folder {} is writable by every user", plugins.display()))
            && stderr.contains("refused, as loading a library runs its code")
            && stderr.contains("--allow-untrusted"),
        "{stderr}"
    );
    project.host(&["run", "config/run.yaml", "--allow-untrusted"]).success();
    mode(&plugins, 0o755);

    // A class mapping in a folder anyone may write (a shared folder beside the config).
    let config = project.path().join("config");
    mode(&config, 0o777);
    let stderr = project.host(&["run", "config/run.yaml"]).failure().to_owned();
    assert!(
        stderr.contains(&format!("the class mapping's folder {} is writable by every user", config.display())),
        "{stderr}"
    );
    mode(&config, 0o755);

    // Owned by another user (arranged as root, as CI runs).
    std::os::unix::fs::chown(&dropped, Some(65534), None).expect("this test runs as root, as CI does");
    let stderr = project.host(&["run", "config/run.yaml"]).failure().to_owned();
    assert!(stderr.contains("is owned by another user (uid 65534)"), "{stderr}");
    let run = project.command(&["run", "config/run.yaml", "--json"]).env("HOST_ALLOW_UNTRUSTED", "1").output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    // Replaying that run loads the recorded library: refused the same way unless allowed.
    let run_id =
        serde_json::from_slice::<serde_json::Value>(&run.stdout).unwrap()["run_id"].as_str().unwrap().to_owned();
    let stderr = project.host(&["replay", &run_id]).failure().to_owned();
    assert!(stderr.contains("is owned by another user (uid 65534)"), "{stderr}");
    project.host(&["replay", &run_id, "--allow-untrusted"]).success();
}

#[test]
fn a_pinned_library_with_another_sha256_is_refused_with_both_digests() {
    let project = Project::new();
    let linear = library("linear-plugin");
    let actual = sha256(&linear);
    let pinned = "0".repeat(64);
    project
        .mapping(&format!("Model:\n  SoftmaxRegression:\n    library: {}\n    sha256: {pinned}\n", linear.display()));
    project.write(
        "config/run.yaml",
        "experiment_name: pinned\nplugins: {data_loader: MNISTLoader, model: SoftmaxRegression}\n",
    );
    let stderr = project.host(&["run", "config/run.yaml"]).failure().to_owned();
    assert!(stderr.contains(&format!("SHA-256 is {actual}")) && stderr.contains(&format!("to {pinned}")), "{stderr}");
    assert!(stderr.contains("restore the pinned build or update the pin"), "{stderr}");
    // The right pin is accepted.
    project
        .mapping(&format!("Model:\n  SoftmaxRegression:\n    library: {}\n    sha256: {actual}\n", linear.display()));
    let listed = project.host(&["plugins", "list", "--json"]).success().json();
    assert_eq!(listed["entries"][0]["sha256"], actual);
}

/// Copies a crate's sources (not its build outputs).
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "target" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_folder(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn plugins_scaffolded_by_plugins_new_build_by_themselves_load_and_run_together() {
    let project = Project::new();
    let crates = tempfile::tempdir().unwrap();
    let dir = crates.path().to_str().unwrap();
    // The SDK three ways: a copy of its folder outside this workspace (the loader), the one the
    // host was built from (the model, with a class name of its own), a registry version (the
    // report, built with the registry's plugin-sdk patched to this folder: no network).
    let sdk_copy = crates.path().join("sdk-copy");
    copy_folder(&crate::support::workspace_root().join("plugin-sdk"), &sdk_copy);
    let sdk_path = sdk_copy.to_str().unwrap();
    let patch = format!("patch.crates-io.plugin-sdk.path={:?}", crate::support::workspace_root().join("plugin-sdk"));
    for (kind, options, build_args) in [
        ("loader", &["--sdk", sdk_path][..], &["--offline"][..]),
        ("model", &["--class", "BaselineModel"][..], &["--offline"][..]),
        ("report", &["--sdk-version", "0.1"][..], &["--offline", "--config", patch.as_str()][..]),
    ] {
        let name = format!("scaffolded-{kind}");
        let mut args = vec!["plugins", "new", &name, "--kind", kind, "--dir", dir];
        args.extend_from_slice(options);
        let created = project.host(&args).success().stdout.clone();
        assert!(created.contains(&format!("libscaffolded_{kind}.so")), "{created}");
        let root = crates.path().join(&name);
        // The workspace's lock file: the same dependency versions, resolved without a network.
        std::fs::copy(crate::support::workspace_root().join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
        let built = crate::support::build_crate_with(&root.join("Cargo.toml"), &[], build_args);
        // Its own tests pass as scaffolded.
        let tested = crate::support::test_crate(&root.join("Cargo.toml"), build_args);
        let ran = |l: &str| l.starts_with("test result: ok.") && !l.starts_with("test result: ok. 0 passed");
        assert!(tested.lines().any(ran), "{tested}");
        project.drop_plugin(&built.join(format!("libscaffolded_{kind}.so")), &format!("libscaffolded_{kind}.so"));
    }
    let manifest = std::fs::read_to_string(crates.path().join("scaffolded-loader/Cargo.toml")).unwrap();
    assert!(manifest.contains(&format!("plugin-sdk = {{ path = {:?} }}", sdk_copy.canonicalize().unwrap())));
    let again = project.host(&["plugins", "new", "scaffolded-model", "--kind", "model", "--dir", dir]);
    assert!(again.failure().contains("already exists"), "{}", again.stderr);
    let bad = project.host(&["plugins", "new", "Bad Name", "--kind", "model"]);
    assert!(bad.failure().contains("a plugin name is lower case letters"), "{}", bad.stderr);

    // Dropped into plugins/, each is discovered with its class and declared keys.
    let listed = project.host(&["plugins", "list", "--json"]).success().json();
    let classes: Vec<(&str, &str, &str)> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["class"].as_str().unwrap(), e["kind"].as_str().unwrap(), e["source"].as_str().unwrap()))
        .collect();
    for expected in [
        ("ScaffoldedLoader", "Loader", "discovered"),
        ("BaselineModel", "Model", "discovered"),
        ("ScaffoldedReport", "ReportGenerator", "discovered"),
    ] {
        assert!(classes.contains(&expected), "{expected:?} not in {classes:?}");
    }
    assert!(listed["problems"].as_array().unwrap().is_empty(), "{listed:#}");

    // And they run an experiment together as they are.
    project.write(
        "config/run.yaml",
        "experiment_name: scaffolded\n\
         plugins: {data_loader: ScaffoldedLoader, model: BaselineModel, report_generator: ScaffoldedReport}\n\
         data_loader: {rows: 120}\n\
         data_splitting: {use_predefined_test: false, train_ratio: 0.6, val_ratio: 0.2, test_ratio: 0.2}\n",
    );
    let summary = project.host(&["run", "config/run.yaml", "--json"]).success().json();
    assert_eq!(summary["metrics"]["test"]["kind"], "regression");
    assert_eq!(summary["metrics"]["test"]["samples"], 24);
    let report = std::path::Path::new(summary["output_dir"].as_str().unwrap()).join("reports/summary.md");
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.starts_with("# scaffolded") && text.contains("| rmse |"), "{text}");
}

#[test]
fn export_plugin_called_twice_says_so_in_words() {
    let fixture = workspace_root().join("tests/fixtures/export-twice");
    // The workspace's lock file: the same dependency versions, resolved without a network.
    std::fs::copy(workspace_root().join("Cargo.lock"), fixture.join("Cargo.lock")).unwrap();
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--offline", "--quiet", "--manifest-path"])
        .arg(fixture.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(crate::support::target_dir().join("fixtures"))
        .output()
        .expect("run cargo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a crate calling export_plugin! twice built:\n{stderr}");
    assert!(
        stderr.contains("the name `export_plugin_may_be_called_only_once_per_crate` is defined multiple times"),
        "{stderr}"
    );
    assert!(!stderr.contains("_1as_0lib"), "the error names the ABI's internal symbol:\n{stderr}");
}
