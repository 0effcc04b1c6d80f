//! `host runs list` and `host runs show`: queries of the provenance store.

use anyhow::bail;

use crate::commands::run::StoreOptions;
use crate::output::{print_json, short_hash, table};

pub fn list(
    store: &StoreOptions,
    experiment: Option<&str>,
    status: Option<&str>,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let store = store.open()?;
    let runs = store.list_runs(experiment, status, limit)?;
    if json {
        return print_json(&runs);
    }
    if runs.is_empty() {
        println!("no runs in {}", store.path().display());
        return Ok(());
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.run_id.clone(),
                r.experiment.clone(),
                r.status.clone(),
                r.started_at.clone(),
                r.test_accuracy.map(|a| format!("{a:.4}")).unwrap_or_default(),
                short_hash(&r.config_sha256).to_owned(),
            ]
        })
        .collect();
    println!("{}", table(&["RUN", "EXPERIMENT", "STATUS", "STARTED", "TEST ACC", "CONFIG"], &rows));
    Ok(())
}

pub fn show(store: &StoreOptions, run_id: &str, json: bool) -> anyhow::Result<()> {
    let store = store.open()?;
    let Some(record) = store.run_record(run_id)? else {
        bail!("no run {run_id} in {}; `host runs list` shows the runs", store.path().display());
    };
    if json {
        return print_json(&record);
    }
    let text = |pointer: &str| record.pointer(pointer).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    println!("run         {}", text("/run_id"));
    println!("experiment  {}", text("/experiment_name"));
    println!("status      {}", text("/status"));
    println!("started     {}", text("/started_at"));
    println!("config      {} (SHA-256 {})", text("/config_file"), text("/config_sha256"));
    println!("outputs     {}", text("/output_dir"));
    if let Some(error) = record["error"].as_str() {
        println!("error       {error} (stage {})", text("/failed_stage"));
    }
    let plugins: Vec<Vec<String>> = record["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                p["kind"].as_str().unwrap_or("").into(),
                p["class"].as_str().unwrap_or("").into(),
                format!("{} {}", p["plugin_name"].as_str().unwrap_or(""), p["plugin_version"].as_str().unwrap_or("")),
                p["sha256"].as_str().unwrap_or("").into(),
            ]
        })
        .collect();
    println!("\n{}", table(&["KIND", "CLASS", "PLUGIN", "SHA256"], &plugins));
    let stages: Vec<Vec<String>> = record["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                s["name"].as_str().unwrap_or("").into(),
                s["status"].as_str().unwrap_or("").into(),
                format!("{:.2}s", s["seconds"].as_f64().unwrap_or(0.0)),
            ]
        })
        .collect();
    println!("\n{}", table(&["STAGE", "STATUS", "TIME"], &stages));
    if let Some(test) = record["metrics"]["test"].as_object() {
        let rows: Vec<Vec<String>> = ["accuracy", "log_loss"]
            .iter()
            .filter_map(|name| {
                test.get(*name).and_then(|v| v.as_f64()).map(|v| vec![format!("test {name}"), format!("{v:.4}")])
            })
            .collect();
        println!("\n{}", table(&["METRIC", "VALUE"], &rows));
    }
    Ok(())
}
