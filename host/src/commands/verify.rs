//! `host verify RUN`: rehashes every file a run recorded (raw data, model weights, metrics,
//! predictions, reports, and the plugin libraries it ran) and reports each one changed or missing;
//! and checks the stage cache's copy of the run's prepared splits (what a later run would reuse,
//! or this run reused) against the content digests the run recorded. The outcome is recorded
//! beside the run (not in its record) when the store can be written.

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
    let settings = store.settings()?;
    let store = crate::storage::open_read(&settings)?;
    let files = store.recorded_files(run_id)?;
    let mut checks: Vec<Check> = files
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
    checks.extend(cached_splits(&store.run_record(run_id)?, &settings.cache_dir));
    let bad = checks.iter().filter(|c| c.state != "ok").count();
    // The outcome is kept beside the run (the `verified` query key, the UI); a store this user
    // cannot write is still verified, only not recorded.
    let verification = store::Verification {
        ok: bad == 0,
        problems: bad as u64,
        checked_at: record::now_rfc3339(),
        hostname: crate::liveness::hostname(),
    };
    drop(store);
    if let Err(error) = crate::storage::open(&settings).and_then(|s| s.record_verification(run_id, &verification)) {
        tracing::warn!("the outcome is not recorded in the store: {error:#}");
    }
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

/// The run's prepared splits in the stage cache, when the cache still holds them and the run
/// recorded their content: one check per split, `changed` when the file was altered (its own
/// checksums or the recorded digests differ).
fn cached_splits(record: &record::RunRecord, cache_dir: &std::path::Path) -> Vec<Check> {
    let Some(key) =
        record.stages.iter().find(|s| s.name == record::StageName::Prepare).and_then(|s| s.cache_key.clone())
    else {
        return Vec::new();
    };
    let path = crate::cache::splits_path(cache_dir, &key);
    let recorded = &record.cached_splits;
    if recorded.is_empty() || !path.is_file() {
        return Vec::new();
    }
    let actual = crate::cache::read_splits(&path).map(|prepared| prepared.content_sha256).unwrap_or_default();
    recorded
        .iter()
        .map(|(name, digest)| {
            let now = actual.get(name.as_str()).cloned();
            Check {
                role: format!("cached {name} split"),
                path: path.display().to_string(),
                recorded: digest.clone(),
                state: if now.as_ref() == Some(digest) { "ok" } else { "changed" },
                actual: now,
            }
        })
        .collect()
}
