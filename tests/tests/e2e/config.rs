//! Experiment config validation end to end: every problem at once, each with file and key path,
//! checked against the keys the selected plugin classes declare.

use crate::support::{Project, library};

#[test]
fn every_config_problem_is_reported_at_once_with_file_and_key_path() {
    let project = Project::new();
    let path = library("faulty-plugin").display().to_string();
    project.mapping(&format!("Loader:\n  FaultyLoader: {path}\nModel:\n  FaultyModel: {path}\n"));
    project.write(
        "config/bad.yaml",
        "experiment_name: bad\nseed: lots\nplugins: {data_loader: FaultyLoader, model: FaultyModel, report_generator: Missing}\n\
         data_loader: {fail_in: 3, colour: red}\nmodel: {mode: explode}\ntraining: {learning_rate: fast}\nextra: 1\n",
    );
    let run = project.host(&["run", "config/bad.yaml"]);
    let stderr = run.failure();
    let expected = [
        "config/bad.yaml: seed: expected an integer, found \"lots\"",
        "config/bad.yaml: extra: unknown key; the experiment config accepts: experiment_name,",
        "config/bad.yaml: plugins.report_generator: no ReportGenerator class Missing: not in config/class_mapping_config.yaml and no library in ./plugins provides it",
        "config/bad.yaml: data_loader.fail_in: expected a string, found 3",
        "config/bad.yaml: data_loader.colour: unknown key; the data loader class FaultyLoader, which owns `data_loader`, accepts: fail_in, mode",
        "config/bad.yaml: model.mode: expected one of panic, error, wrong, found \"explode\"",
        "config/bad.yaml: training: class FaultyModel reads no `training` keys: the model owns `model` and `training` (plugins.model chose FaultyModel); remove this section, or choose a model class that reads it",
    ];
    for line in expected {
        assert!(stderr.contains(line), "expected `{line}` in:\n{stderr}");
    }
    assert!(!project.path().join("runs").exists(), "nothing runs before the config is valid");
}

#[test]
fn swapping_the_model_names_the_sections_the_new_class_does_not_read_once() {
    // The shipped MNIST config with only plugins.model swapped to a model without libtorch.
    let project = Project::new();
    let (mnist, linear) = (library("mnist-plugin"), library("linear-plugin"));
    project.mapping(&format!(
        "Loader:\n  MNISTLoader: {}\nModel:\n  LinearRegression: {}\nReportGenerator:\n  MNISTReportGenerator: {}\n",
        mnist.display(),
        linear.display(),
        mnist.display()
    ));
    let shipped = std::fs::read_to_string(crate::support::workspace_root().join("config/mnist_config.yaml")).unwrap();
    assert!(shipped.contains("  model: MNISTMLP\n"), "{shipped}");
    project.write("config/swapped.yaml", &shipped.replace("  model: MNISTMLP\n", "  model: LinearRegression\n"));
    let run = project.host(&["run", "config/swapped.yaml"]);
    let problems: Vec<&str> = run.failure().lines().map(|l| l.trim_start_matches("error: ")).collect();
    assert_eq!(
        problems,
        [
            "config/swapped.yaml: model.hidden_layers: unknown key; the model class LinearRegression, which owns `model`, accepts: l2",
            "config/swapped.yaml: model.activation: unknown key; the model class LinearRegression, which owns `model`, accepts: l2",
            "config/swapped.yaml: model.dropout: unknown key; the model class LinearRegression, which owns `model`, accepts: l2",
            "config/swapped.yaml: training: class LinearRegression reads no `training` keys: the model owns `model` and `training` (plugins.model chose LinearRegression); remove this section, or choose a model class that reads it",
        ],
        "{}",
        run.stderr
    );
}

#[test]
fn a_negative_count_is_refused_with_the_key_before_anything_runs() {
    let project = Project::new();
    let path = library("mnist-plugin").display().to_string();
    project.mapping(&format!("Loader:\n  MNISTLoader: {path}\nModel:\n  MNISTMLP: {path}\n"));
    project.write(
        "config/negative.yaml",
        "experiment_name: negative\nplugins: {data_loader: MNISTLoader, model: MNISTMLP}\n\
         data_loader: {data_dir: data}\nmodel: {hidden_layers: [64, -8]}\ntraining: {epochs: -1}\n",
    );
    let stderr = project.host(&["run", "config/negative.yaml"]).failure().to_owned();
    for line in [
        "config/negative.yaml: training.epochs: expected a whole number, 0 or more, found -1",
        "config/negative.yaml: model.hidden_layers[1]: expected a whole number, 0 or more, found -8",
    ] {
        assert!(stderr.contains(line), "expected `{line}` in:\n{stderr}");
    }
    assert!(!stderr.contains("reading"), "refused before loading: {stderr}");
}

#[test]
fn yaml_bombs_and_non_mappings_are_refused_cleanly() {
    let project = Project::new();
    project.mapping("{}\n");
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n\
                d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
                g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    project.write("config/bomb.yaml", bomb);
    let stderr = project.host(&["run", "config/bomb.yaml"]).failure().to_owned();
    assert!(stderr.contains("config/bomb.yaml: malformed YAML: "), "{stderr}");
    project.write("config/list.yaml", "- 1\n- 2\n");
    let stderr = project.host(&["run", "config/list.yaml"]).failure().to_owned();
    assert!(
        stderr.contains(
            "config/list.yaml: expected a mapping with experiment_name, plugins, ... at the top, found a list"
        ),
        "{stderr}"
    );
    let stderr = project.host(&["run", "config/absent.yaml"]).failure().to_owned();
    assert!(
        stderr.contains(
            "config/absent.yaml: cannot read the file: No such file or directory (os error 2); check the path"
        ),
        "{stderr}"
    );
}

#[test]
fn paths_that_are_not_utf8_are_refused_before_anything_is_recorded() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let project = Project::new();
    let path = library("faulty-plugin").display().to_string();
    project.mapping(&format!("Loader:\n  FaultyLoader: {path}\nModel:\n  FaultyModel: {path}\n"));
    let config = "experiment_name: bytes\nplugins: {data_loader: FaultyLoader, model: FaultyModel}\n\
                  data_splitting: {use_predefined_test: false, train_ratio: 0.6, val_ratio: 0.2, test_ratio: 0.2}\n";
    project.write("config/run.yaml", config);
    let odd_config = project.path().join("config").join(OsStr::from_bytes(b"r\xffn.yaml"));
    std::fs::write(&odd_config, config).unwrap();
    let odd_folder = project.path().join(OsStr::from_bytes(b"o\xfeut"));
    let host = |args: &[&OsStr], dir: &std::path::Path| {
        crate::support::Run::from(
            std::process::Command::new(crate::support::host_binary()).args(args).current_dir(dir).output().unwrap(),
        )
    };
    let cases = [
        (host(&["run".as_ref(), odd_config.as_os_str()], project.path()), "the config file path is not valid UTF-8"),
        (
            host(
                &["run".as_ref(), "config/run.yaml".as_ref(), "--output-dir".as_ref(), odd_folder.as_os_str()],
                project.path(),
            ),
            "the output folder path is not valid UTF-8",
        ),
        (host(&["sweep".as_ref(), odd_config.as_os_str()], project.path()), "the config file path is not valid UTF-8"),
    ];
    for (run, expected) in &cases {
        let stderr = run.failure();
        assert!(stderr.contains(expected) && stderr.contains("rename it"), "{stderr}");
    }
    // Run from a working folder whose own name is not UTF-8.
    std::fs::create_dir_all(&odd_folder).unwrap();
    let run = host(
        &[
            "run".as_ref(),
            project.path().join("config/run.yaml").as_os_str(),
            "--db".as_ref(),
            project.path().join("provenance.db").as_os_str(),
        ],
        &odd_folder,
    );
    assert!(run.failure().contains("the working folder path is not valid UTF-8"), "{}", run.stderr);
    assert!(std::fs::read_dir(&odd_folder).unwrap().next().is_none(), "nothing written there");
    // No rows anywhere.
    let runs = project.host(&["runs", "list", "--json"]).success().json();
    assert_eq!(runs.as_array().unwrap().len(), 0, "{runs}");
    // A library whose file name is not UTF-8 is listed as a problem; the mapped classes still load.
    std::fs::copy(&path, project.path().join("plugins").join(OsStr::from_bytes(b"f\xfb.so"))).unwrap();
    let listed = project.host(&["plugins", "list", "--json"]).success().json();
    let problems = listed["problems"].to_string();
    assert!(problems.contains("the library's path is not valid UTF-8"), "{listed:#}");
    project.host(&["run", "config/run.yaml"]).success();
}
