//! A second task through the same host: tabular regression from a CSV file with the tabular
//! plugin (TableLoader, MLPRegressor, RegressionReport). The host learns the task from the loader;
//! these tests check the run end to end: standardised targets recorded as lineage, metrics in
//! the targets' own units, per-target metrics, predictions, the report in a browser.

use crate::support::{Project, library, on_every_store};

/// `rows` rows of features a, b, c and targets y = 3a - 2b + 10 and z = a + b + 100 (exact),
/// with row 5's `b` missing.
fn write_table(project: &Project, rows: usize) {
    let mut text = String::from("a,b,c,y,z\n");
    let mut state = 7u64;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) % 2000) as f64 / 100.0 - 10.0
    };
    for row in 0..rows {
        let (a, b, c) = (next(), next(), next());
        let b_cell = if row == 5 { String::new() } else { b.to_string() };
        text.push_str(&format!("{a},{b_cell},{c},{},{}\n", 3.0 * a - 2.0 * b + 10.0, a + b + 100.0));
    }
    project.write("data/table.csv", &text);
}

fn regression_project() -> Project {
    let project = Project::new();
    write_table(&project, 400);
    let tabular = library("tabular-plugin").display().to_string();
    let mnist = library("mnist-plugin").display().to_string();
    let linear = library("linear-plugin").display().to_string();
    project.mapping(&format!(
        "Loader:\n  TableLoader: {tabular}\nModel:\n  MLPRegressor: {tabular}\n  MNISTMLP: {mnist}\n  LinearRegression: {linear}\n\
         ReportGenerator:\n  RegressionReport: {tabular}\n"
    ));
    project.write(
        "config/regression.yaml",
        "experiment_name: table\nthreads: 1\n\
         plugins: {data_loader: TableLoader, model: MLPRegressor, report_generator: RegressionReport}\n\
         data_loader: {path: data/table.csv, target_columns: [y, z], missing: drop}\n\
         data_splitting: {use_predefined_test: false, train_ratio: 0.7, val_ratio: 0.15, test_ratio: 0.15}\n\
         preprocessing: {normalize: standardize}\n\
         model: {hidden_layers: [32]}\n\
         training: {epochs: 150, batch_size: 32, learning_rate: 0.01}\n",
    );
    project
}

on_every_store! {
fn a_csv_regression_trains_evaluates_reports_and_records_its_provenance() {
    let project = regression_project();
    let summary = project.host(&["run", "config/regression.yaml", "--json"]).success().json();
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["data"]["task"], "regression");
    assert_eq!(summary["data"]["label_names"], serde_json::json!(["y", "z"]));
    assert_eq!(summary["data"]["metadata"]["rows_dropped"], 1, "{:#}", summary["data"]);
    assert_eq!(summary["data"]["metadata"]["feature_names"], serde_json::json!(["a", "b", "c"]));

    // Targets standardised with the training split's statistics, recorded as a transform.
    let transforms = summary["data"]["transforms"].as_array().unwrap();
    let names: Vec<&str> = transforms.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["split", "scale", "standardize", "standardize_targets"]);
    let scaling = &transforms[3]["parameters"];
    assert_eq!(scaling["fitted_on"], "train");
    let z_mean = scaling["mean"][1].as_f64().unwrap();
    assert!((z_mean - 100.0).abs() < 2.0, "z is about 100 on average: {scaling}");

    // Metrics in the targets' own units, overall and per target: both targets are exact
    // functions of the features, so a small MLP fits them closely.
    let test = &summary["metrics"]["test"];
    assert_eq!(test["kind"], "regression");
    assert_eq!(test["samples"], 60);
    let per_target = test["per_target"].as_array().unwrap();
    assert_eq!(per_target.len(), 2);
    for target in per_target {
        assert!(target["r2"].as_f64().unwrap() > 0.95, "{test:#}");
        let mse = target["mse"].as_f64().unwrap();
        assert!((target["rmse"].as_f64().unwrap() - mse.sqrt()).abs() < 1e-9);
    }
    let average = (per_target[0]["mae"].as_f64().unwrap() + per_target[1]["mae"].as_f64().unwrap()) / 2.0;
    assert!((test["mae"].as_f64().unwrap() - average).abs() < 1e-9);

    // predictions.csv holds the test rows in the targets' units, not standardised.
    let dir = std::path::PathBuf::from(summary["output_dir"].as_str().unwrap());
    let predictions = std::fs::read_to_string(dir.join("predictions.csv")).unwrap();
    let mut lines = predictions.lines();
    assert_eq!(lines.next(), Some("row,actual_y,predicted_y,actual_z,predicted_z"));
    let z: Vec<f64> = lines.map(|l| l.split(',').nth(3).unwrap().parse().unwrap()).collect();
    assert_eq!(z.len(), 60);
    assert!((z.iter().sum::<f64>() / 60.0 - 100.0).abs() < 3.0, "actual z in its own units");

    // The store has the run with its metrics, its files verify, and it lists with its R².
    let run_id = summary["run_id"].as_str().unwrap();
    let record = project.host(&["runs", "show", run_id, "--json"]).success().json();
    assert_eq!(record["metrics"]["test"]["r2"], test["r2"]);
    project.host(&["verify", run_id]).success();
    let replayed = project.host(&["replay", run_id]).success().stdout.clone();
    assert!(replayed.contains("every compared output is bit-identical"), "{replayed}");
    let listed = project.host(&["runs", "list"]).success().stdout.clone();
    assert!(listed.contains("R² 0."), "{listed}");
    let shown = project.host(&["runs", "show", run_id]).success().stdout.clone();
    assert!(shown.contains("test r2"), "{shown}");

    // The report: a page with the metrics, a parity chart per target with its y = x line, the
    // residual charts, and no console messages in Chromium.
    let page = dir.join("reports/regression.html");
    let profile = tempfile::tempdir().unwrap();
    let (dom, console) = crate::browser::load(profile.path(), &page);
    assert!(console.is_empty(), "{console:?}");
    assert_eq!(dom.matches("class=\"identity\"").count(), 2, "one y = x line per target");
    assert_eq!(dom.matches("<figure class=\"residuals\">").count(), 2);
    assert_eq!(dom.matches("<figure class=\"residual-histogram\">").count(), 2);
    assert!(dom.contains("<td>all targets</td>") && dom.contains("<td>z</td>"), "metrics table");
    assert!(dom.contains("Features: a, b, c"));
    crate::browser::assert_layout(&[(&format!("regression-{}", crate::browser::backend_name()), &page)]);
}}

#[test]
fn bad_cells_and_mismatched_models_fail_with_the_file_line_column_or_task() {
    let project = regression_project();
    let config = std::fs::read_to_string(project.path().join("config/regression.yaml")).unwrap();
    // The default `missing: error` names the empty cell.
    project.write("config/strict.yaml", &config.replace(", missing: drop", ""));
    let run = project.host(&["run", "config/strict.yaml"]);
    assert!(
        run.failure()
            .contains("data/table.csv: line 7, column b: missing value; set data_loader.missing to drop or mean"),
        "{}",
        run.stderr
    );
    // A cell that is not a number.
    let table = std::fs::read_to_string(project.path().join("data/table.csv")).unwrap();
    let mut lines: Vec<&str> = table.lines().collect();
    lines[3] = "1,2,oops,4,5";
    project.write("data/table.csv", &(lines.join("\n") + "\n"));
    let run = project.host(&["run", "config/regression.yaml"]);
    assert!(run.failure().contains("data/table.csv: line 4, column c: \"oops\" is not a number"), "{}", run.stderr);
    let failed = project.host(&["runs", "list", "--json", "--status", "failed"]).success().json();
    assert_eq!(failed.as_array().unwrap().len(), 2, "each failure is a failed run record");
    // A classifier on regression data says which task the data is.
    write_table(&project, 100);
    project.write(
        "config/classifier.yaml",
        &config.replace("model: MLPRegressor, report_generator: RegressionReport", "model: MNISTMLP"),
    );
    let run = project.host(&["run", "config/classifier.yaml"]);
    assert!(
        run.failure().contains("MNISTMLP classifies; this data set is a regression task: choose a model class for it"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_plain_rust_linear_regressor_swaps_in_by_config_and_fits_linear_targets_exactly() {
    let project = regression_project();
    project.write(
        "config/linear.yaml",
        "experiment_name: table_linear\n\
         plugins: {data_loader: TableLoader, model: LinearRegression, report_generator: RegressionReport}\n\
         data_loader: {path: data/table.csv, target_columns: [y, z], missing: drop}\n\
         data_splitting: {use_predefined_test: false, train_ratio: 0.7, val_ratio: 0.15, test_ratio: 0.15}\n\
         preprocessing: {normalize: standardize}\nmodel: {l2: 0.0}\n",
    );
    let summary = project.host(&["run", "config/linear.yaml", "--json"]).success().json();
    assert_eq!(summary["plugins"][1]["class"], "LinearRegression");
    // Both targets are linear in the features: the exact solution leaves only f32 rounding.
    for target in summary["metrics"]["test"]["per_target"].as_array().unwrap() {
        assert!(target["r2"].as_f64().unwrap() > 0.9999, "{target}");
    }
    let shown = project.host(&["runs", "show", summary["run_id"].as_str().unwrap()]).success().stdout.clone();
    assert!(shown.contains("test r2"), "{shown}");
    // The run's summary points at its report page and lists the regression metrics.
    let printed = project.host(&["run", "config/linear.yaml"]).success().stdout.clone();
    assert!(printed.lines().any(|l| l.starts_with("report:") && l.ends_with("reports/regression.html")), "{printed}");
    assert!(printed.contains("test RMSE y") && printed.contains("test R² z"), "{printed}");
}
