//! `host verify RUN`: rehashes every file a run recorded (raw data, model weights, metrics,
//! predictions, reports, and the plugin libraries it ran) and reports each one changed or missing;
//! and checks the stage cache's copy of the run's prepared splits (what a later run would reuse,
//! or this run reused) against the content digests the run recorded. The outcome is recorded
//! beside the run (not in its record) when the store can be written.

use crate::output::{print_json, short_hash, table};
use crate::storage::StoreOptions;

pub fn verify(store: &StoreOptions, run_id: &str, json: bool) -> anyhow::Result<u8> {
    let settings = store.settings()?;
    let store = crate::storage::open_read(&settings)?;
    let checks = crate::verification::check_run(&*store, run_id, &settings.cache_dir)?;
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
