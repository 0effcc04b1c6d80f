//! Checking a run's recorded files again (`host verify`, the UI's verify button): every file it
//! recorded (raw data, model weights, metrics, predictions, reports, the plugin libraries it
//! ran) rehashed, and the stage cache's copy of its prepared splits checked against the content
//! digests the run recorded.

use serde::Serialize;

use crate::hashing::sha256_file;

#[derive(Serialize)]
pub struct Check {
    pub role: String,
    pub path: String,
    pub recorded: String,
    /// `ok`, `changed` or `missing`.
    pub state: &'static str,
    pub actual: Option<String>,
}

/// Every check of a run's files, in the store's order, the cached splits last.
pub fn check_run(store: &dyn store::Store, run_id: &str, cache_dir: &std::path::Path) -> anyhow::Result<Vec<Check>> {
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
    checks.extend(cached_splits(&store.run_record(run_id)?, cache_dir));
    Ok(checks)
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
