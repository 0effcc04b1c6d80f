//! The load stage: the loader plugin reads the raw files and returns the dataset, whose content
//! digest the run records with every raw file's. Skipped when an earlier run loaded the same
//! files with the same loader and config and its prepared splits are cached.

use std::path::Path;

use plugin_sdk::{ClassKind, Dataset};

use super::reuse::{self, ReusedData};
use super::{Run, StageError, Staged};
use crate::data::{self, Prepared};

/// What the load stage hands on: the loader's dataset, or the prepared splits of an earlier run
/// with the same load and prepare keys (and that prepare stage's key and run).
#[allow(clippy::large_enum_variant, reason = "made once per run and moved once")]
pub enum Loaded {
    /// The dataset and its content digest.
    Dataset {
        dataset: Dataset,
        digest: String,
    },
    Cached {
        prepared: Prepared,
        prepare_key: String,
        prepared_by: String,
    },
}

pub fn load(run: &mut Run<'_>) -> Result<Staged<Loaded>, StageError> {
    let class = run.required_class(ClassKind::Loader)?;
    let key = reuse::load_key(run, class);
    if let Some(ReusedData { loaded_by, prepared, prepare_key, prepared_by }) = reuse::reuse_data(run, &key) {
        return Ok(Staged::reused(Loaded::Cached { prepared, prepare_key, prepared_by }, key, loaded_by));
    }
    let mut loader = run.take_loader()?;
    let services = run.services(class, run.dir.clone());
    let summary = loader.load_data(&services)?;
    services.progress.clear();
    for file in &summary.source_files {
        let kind = record::ArtifactKind::Source(file.role.clone());
        // A replay is a check: it rehashes every raw file rather than trust the digest cache.
        let path = Path::new(&file.path);
        let hashed = match run.request.replay_of {
            Some(_) => crate::hashing::artifact(kind, path)?,
            None => crate::hashing::input_artifact(kind, path)?,
        };
        run.record.source_files.push(hashed);
    }
    run.record.data.description = summary.description;
    let dataset = loader.extract_features_and_targets(&services)?;
    let digest = data::dataset_digest(&dataset);
    run.record.data.dataset_sha256 = digest.clone();
    run.record.data.digest_scheme = data::DIGEST_SCHEME.into();
    run.record.data.metadata = dataset.metadata.clone();
    Ok(Staged::computed(Loaded::Dataset { dataset, digest }, Some(key)))
}
