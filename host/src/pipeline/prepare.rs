//! The prepare stage: the host's data manager splits, scales and standardises the dataset with
//! the run's seed (`data.rs`), recording each transform as lineage. Reuses an earlier run's
//! cached splits for the same dataset and config; freshly prepared splits are written to the
//! cache in the background while training runs.

use std::sync::Arc;

use record::{ArtifactKind, SplitRecord};

use super::load::Loaded;
use super::reuse;
use super::{Run, StageError, Staged, outputs};
use crate::data::{self, Prepared};

pub fn prepare(run: &mut Run<'_>, loaded: Loaded) -> Result<Staged<Arc<Prepared>>, StageError> {
    let staged = match loaded {
        Loaded::Cached { prepared, prepare_key, prepared_by } => {
            Staged::reused(Arc::new(prepared), prepare_key, prepared_by)
        }
        Loaded::Dataset { dataset, digest } => {
            let key = reuse::prepare_key(run, &digest);
            match reuse::reuse_splits(run, &key) {
                Some((prepared, from)) => Staged::reused(Arc::new(prepared), key, from),
                None => {
                    let experiment = run.request.experiment;
                    let prepared = Arc::new(data::prepare(
                        &dataset,
                        &digest,
                        &experiment.data_splitting,
                        &experiment.preprocessing,
                        experiment.seed,
                    )?);
                    if let Some(path) = reuse::splits_path(run, &key).filter(|path| !path.is_file()) {
                        let splits = prepared.clone();
                        run.splits_writer =
                            Some(std::thread::spawn(move || crate::cache::write_splits(&path, &splits)));
                    }
                    Staged::computed(prepared, Some(key))
                }
            }
        }
    };
    let prepared = &staged.output;
    let data = &mut run.record.data;
    data.dataset_sha256 = prepared.dataset_digest.clone();
    data.task = Some(prepared.task);
    data.label_names = prepared.label_names.clone();
    data.sample_shape = prepared.sample_shape.clone();
    data.transforms = prepared.transforms.clone();
    for split in prepared.splits() {
        data.splits.insert(split.name.into(), SplitRecord { rows: split.rows, sha256: split.digest.clone() });
    }
    // Known here when the splits came from the cache; written splits add theirs at the end.
    run.record.cached_splits = prepared.content_sha256.clone();
    let lineage = run.dir.join("lineage.json");
    outputs::write_json(&lineage, &prepared.transforms)?;
    run.artifact(ArtifactKind::Lineage, &lineage)?;
    Ok(staged)
}
