//! `host lineage RUN|SHA256`: where an entity came from and what was made from it, across runs,
//! and every run that used it (impact: which results a bad data file or plugin build touched).

use anyhow::bail;
use serde_json::json;

use store::{Direction, LineageStep, Store};

use crate::output::{print_json, short_hash, table};
use crate::storage::StoreOptions;

fn steps_table(steps: &[LineageStep]) -> String {
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            vec![
                s.depth.to_string(),
                short_hash(&s.sha256).to_owned(),
                s.kind.clone(),
                s.label.clone(),
                format!("via {}", short_hash(&s.via)),
                s.activity.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["DEPTH", "SHA256", "KIND", "WHAT", "LINK", "ACTIVITY"], &rows)
}

/// One entity across every run: ancestors, descendants and the runs that used it, each
/// capped at `limit` (0: all).
fn entity_report(store: &dyn Store, sha256: &str, limit: usize) -> anyhow::Result<serde_json::Value> {
    let (ancestors, ancestors_truncated) = store.lineage_walk(sha256, Direction::Ancestors, None, limit)?;
    let (descendants, descendants_truncated) = store.lineage_walk(sha256, Direction::Descendants, None, limit)?;
    let (runs, runs_total) = store.runs_using(sha256, limit)?;
    Ok(json!({
        "sha256": sha256,
        "ancestors": ancestors,
        "descendants": descendants,
        "runs": runs,
        "runs_total": runs_total,
        "truncated": ancestors_truncated || descendants_truncated || runs.len() < runs_total,
    }))
}

pub fn lineage(store: &StoreOptions, target: &str, limit: usize, json: bool) -> anyhow::Result<()> {
    let store = store.open_read()?;
    let report = if store.run_exists(target)? {
        // A run: its own chain from each raw file it read to its reports (a SHA-256 query
        // shows what other runs made from the same files).
        let entities = store.run_entities(target)?;
        let mut roots: Vec<String> =
            entities.iter().filter(|(kind, _)| kind == "raw").map(|(_, sha)| sha.clone()).collect();
        roots.sort();
        let mut descendants = Vec::new();
        let mut truncated = false;
        for root in &roots {
            let (steps, cut) = store.lineage_walk(root, Direction::Descendants, Some(target), limit)?;
            descendants.extend(steps);
            truncated |= cut;
        }
        descendants.sort_by(|a, b| a.depth.cmp(&b.depth).then(a.sha256.cmp(&b.sha256)));
        descendants.dedup_by(|a, b| a.sha256 == b.sha256);
        json!({"run_id": target, "raw_files": roots, "descendants": descendants, "truncated": truncated})
    } else {
        let is_hex = target.len() >= 8 && target.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex {
            bail!("{target} is neither a run id nor a SHA-256 (8 or more hex digits) in {}", store.locator());
        }
        let matches = store.expand_sha256(target)?;
        match matches.as_slice() {
            [] => bail!("no entity or plugin with SHA-256 {target} in {}", store.locator()),
            [sha256] => entity_report(&*store, sha256, limit)?,
            many => bail!("{target} matches {} digests; give more digits", many.len()),
        }
    };
    if json {
        return print_json(&report);
    }
    let steps = |key: &str| -> Vec<LineageStep> { serde_json::from_value(report[key].clone()).unwrap_or_default() };
    for key in ["ancestors", "descendants"] {
        if report.get(key).is_some() {
            let list = steps(key);
            println!("{key} ({}):", list.len());
            if !list.is_empty() {
                println!("{}", steps_table(&list));
            }
        }
    }
    if let Some(runs) = report["runs"].as_array() {
        let runs: Vec<&str> = runs.iter().filter_map(|r| r.as_str()).collect();
        println!("runs that used it ({}): {}", report["runs_total"], runs.join(", "));
    }
    if report["truncated"] == true {
        println!("(each list stops at {limit} entries; --limit 0 shows everything)");
    }
    Ok(())
}
