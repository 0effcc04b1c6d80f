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
        "config/bad.yaml: data_loader.colour: unknown key; class FaultyLoader accepts: fail_in, mode",
        "config/bad.yaml: model.mode: expected one of panic, error, wrong, found \"explode\"",
        "config/bad.yaml: training.learning_rate: unknown key; class FaultyModel takes no keys here",
    ];
    for line in expected {
        assert!(stderr.contains(line), "expected `{line}` in:\n{stderr}");
    }
    assert!(!project.path().join("runs").exists(), "nothing runs before the config is valid");
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
