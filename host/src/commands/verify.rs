//! `host verify RUN`: rehashes every file a run recorded (raw data, model weights, metrics,
//! predictions, reports, and the plugin libraries it ran) and reports each one changed or missing.

use serde::Serialize;

use crate::hashing::sha256_file;
use crate::output::{print_json, short_hash, table};
use crate::storage::StoreOptions;

#[derive(Serialize)]
struct Check {
    role: String,
    path: String,
    recorded: String,
    /// `ok`, `changed` or `missing`.
    state: &'static str,
    actual: Option<String>,
}

pub fn verify(store: &StoreOptions, run_id: &str, json: bool) -> anyhow::Result<u8> {
    let store = store.open()?;
    let files = store.recorded_files(run_id)?;
    let checks: Vec<Check> = files
        .into_iter()
        .map(|file| {
            let actual = sha256_file(std::path::Path::new(&file.path)).ok().map(|(sha, _)| sha);
            let state = match &actual {
                None => "missing",
                Some(sha) if *sha == file.sha256 => "ok",
                Some(_) => "changed",
            };
            Check { role: file.role, path: file.path, recorded: file.sha256, state, actual }
        })
        .collect();
    let bad = checks.iter().filter(|c| c.state != "ok").count();
    if json {
        print_json(&serde_json::json!({"run_id": run_id, "verified": bad == 0, "files": checks}))?;
    } else {
        let rows: Vec<Vec<String>> = checks
            .iter()
            .map(|c| {
                let detail = match (&c.state, &c.actual) {
                    (&"changed", Some(actual)) => {
                        format!("recorded {}, now {}", short_hash(&c.recorded), short_hash(actual))
                    }
                    _ => short_hash(&c.recorded).to_owned(),
                };
                vec![c.state.to_owned(), c.role.clone(), c.path.clone(), detail]
            })
            .collect();
        println!("{}", table(&["STATE", "ROLE", "PATH", "SHA256"], &rows));
        if bad == 0 {
            println!("run {run_id}: all {} files verified", checks.len());
        } else {
            eprintln!("run {run_id}: {bad} of {} files changed or missing", checks.len());
        }
    }
    Ok(if bad == 0 { 0 } else { 1 })
}
