//! The stage cache, seen from the pipeline: each stage's key, the earlier stages with the same
//! key, and reusing their outputs. Nothing reused is trusted: raw files are rehashed, copied
//! files checked against their recorded SHA-256, cached splits against their checksums; any
//! mismatch means the stage is computed again.

use std::path::PathBuf;

use plugin_sdk::ClassKind;
use record::{ArtifactKind, FileArtifact, RunRecord, StageName};
use serde_json::{Value, json};
use store::CachedStage;

use super::Run;
use crate::cache;
use crate::data::{self, Prepared};
use crate::registry::ResolvedClass;

/// Earlier completed stages with this key whose outputs may be reused, newest first.
pub fn candidates(run: &Run<'_>, stage: StageName, key: &str) -> Vec<CachedStage> {
    let Some(store) = run.request.store.filter(|_| run.request.reuse) else { return Vec::new() };
    store.cached_stages(stage, key).unwrap_or_else(|error| {
        tracing::warn!("cannot look up the stage cache: {error:#}");
        Vec::new()
    })
}

/// The load stage's key: the loader build, its config, the seed and the working folder
/// (relative data paths in the config resolve against it).
pub fn load_key(run: &Run<'_>, class: &ResolvedClass) -> String {
    let experiment = run.request.experiment;
    cache::stage_key(
        StageName::Load,
        json!({
            "plugin": class.library.sha256,
            "class": class.info.name,
            "config": experiment.class_sections(ClassKind::Loader),
            "seed": experiment.seed,
            "working_dir": std::env::current_dir().ok(),
        }),
    )
}

/// The prepare stage's key: the dataset's digest, the host's transforms and their config.
pub fn prepare_key(run: &Run<'_>, dataset_digest: &str) -> String {
    let canonical = &run.request.experiment.canonical;
    cache::stage_key(
        StageName::Prepare,
        json!({
            "dataset": dataset_digest,
            "transforms": data::TRANSFORMS_VERSION,
            "data_splitting": canonical["data_splitting"],
            "preprocessing": canonical["preprocessing"],
            "seed": run.request.experiment.seed,
        }),
    )
}

/// A model stage's key: the model build, its config, its inputs' digests, seed and threads.
pub fn model_key(run: &Run<'_>, stage: StageName, inputs: Value) -> anyhow::Result<String> {
    let class = run.required_class(ClassKind::Model)?;
    let experiment = run.request.experiment;
    Ok(cache::stage_key(
        stage,
        json!({
            "plugin": class.library.sha256,
            "class": class.info.name,
            "config": experiment.class_sections(ClassKind::Model),
            "inputs": inputs,
            "seed": experiment.seed,
            "threads": experiment.threads,
        }),
    ))
}

/// Where the splits of prepare key `key` are cached, when the run keeps a cache.
pub fn splits_path(run: &Run<'_>, key: &str) -> Option<PathBuf> {
    run.request.settings.map(|settings| cache::splits_path(&settings.cache_dir, key))
}

/// The cached splits of a completed prepare stage with this key, their checksums verified,
/// and the run that prepared them.
pub fn reuse_splits(run: &Run<'_>, key: &str) -> Option<(Prepared, String)> {
    let path = splits_path(run, key)?;
    // The newest run that wrote (or read) the cached file and recorded its content.
    let from = candidates(run, StageName::Prepare, key).into_iter().find(|c| !c.record.cached_splits.is_empty())?;
    if !path.is_file() {
        return None;
    }
    // The file's own checksums prove it whole, not that nobody rewrote it with them: its
    // content must be what the run that prepared it recorded in the store.
    let recorded = &from.record.cached_splits;
    let checked = cache::read_splits(&path).and_then(|prepared| {
        let differs = |name: &String, digest: &String| recorded.get(name) != Some(digest);
        match prepared.content_sha256.iter().find(|(name, digest)| differs(name, digest)) {
            Some((name, _)) => {
                Err(anyhow::anyhow!("{}: the {name} split is not what run {} recorded", path.display(), from.run_id))
            }
            None => Ok(prepared),
        }
    });
    match checked {
        Ok(prepared) => Some((prepared, from.run_id)),
        Err(error) => {
            tracing::warn!("{error:#}; preparing the data again");
            let _ = std::fs::remove_file(&path);
            None
        }
    }
}

/// Data an earlier run loaded and prepared with the same loader, config and raw files.
pub struct ReusedData {
    pub loaded_by: String,
    pub prepared: Prepared,
    pub prepare_key: String,
    pub prepared_by: String,
}

/// Skips loading when an earlier run loaded the same files with the same loader and config
/// (its raw files rehashed unchanged) and its prepared splits are cached. Fills in what the
/// load stage records.
pub fn reuse_data(run: &mut Run<'_>, load_key: &str) -> Option<ReusedData> {
    for candidate in candidates(run, StageName::Load, load_key) {
        let earlier = &candidate.record;
        let digest = &earlier.data.dataset_sha256;
        if digest.is_empty() {
            continue;
        }
        if !cache::files_unchanged(&earlier.source_files) {
            tracing::info!("the raw files of run {} changed; loading again", candidate.run_id);
            continue;
        }
        let prepare_key = prepare_key(run, digest);
        if let Some((prepared, prepared_by)) = reuse_splits(run, &prepare_key) {
            run.record.source_files = earlier.source_files.clone();
            run.record.data.description = earlier.data.description.clone();
            run.record.data.metadata = earlier.data.metadata.clone();
            run.record.data.dataset_sha256 = digest.clone();
            run.record.data.digest_scheme = earlier.data.digest_scheme.clone();
            return Some(ReusedData { loaded_by: candidate.run_id, prepared, prepare_key, prepared_by });
        }
    }
    None
}

/// Copies the files of `kinds` that an earlier run recorded into this run's folder, checking
/// each against its recorded SHA-256.
fn reuse_files(run: &mut Run<'_>, candidate: &CachedStage, kinds: &[ArtifactKind]) -> anyhow::Result<()> {
    let mut copies: Vec<FileArtifact> = Vec::new();
    for file in candidate.record.files_of(kinds) {
        copies.push(cache::copy_verified(file, &candidate.output_dir, &run.dir)?);
    }
    run.record.artifacts.extend(copies);
    Ok(())
}

/// Reuses the outputs of an earlier stage with this key: the files of `kinds` and, through
/// `adopt`, what the stage put in the run record. Returns the run reused from.
pub fn reuse_stage(
    run: &mut Run<'_>,
    stage: StageName,
    key: &str,
    kinds: &[ArtifactKind],
    mut adopt: impl FnMut(&mut Run<'_>, &RunRecord) -> anyhow::Result<()>,
) -> Option<String> {
    for candidate in candidates(run, stage, key) {
        let artifacts_before = run.record.artifacts.len();
        match reuse_files(run, &candidate, kinds).and_then(|()| adopt(run, &candidate.record)) {
            Ok(()) => return Some(candidate.run_id),
            Err(error) => {
                run.record.artifacts.truncate(artifacts_before);
                tracing::info!("cannot reuse the {stage} outputs of run {}: {error:#}", candidate.run_id);
            }
        }
    }
    None
}
