//! The stage cache. A stage's key is the SHA-256 of canonical JSON (sorted keys) naming
//! everything its outputs depend on: the plugin build, the stage's config, the digests of its
//! inputs, the seed and thread count. A stage whose key matches a completed stage of an earlier
//! run reuses that stage's outputs instead of recomputing them; the run records the key and the
//! run it reused from. Nothing is trusted blindly: reused files are copied into the new run's
//! folder and rehashed against the recorded SHA-256, reused splits are checksummed, and raw
//! input files are rehashed before a load is skipped. Any mismatch falls back to recomputing.
//!
//! The prepared splits are the only outputs kept outside run folders, one file per prepare key
//! in the cache folder's `splits/` (configured; by default beside a SQLite store), written in
//! the background while training runs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use plugin_sdk::TaskKind;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use record::{FileArtifact, StageName, Transform};

use crate::data::{Prepared, Split, Targets};
use crate::hashing::{chunked_sha256, sha256_bytes, sha256_file_cached};

/// Bump when what a key covers changes, so old entries stop matching.
/// 2: a class gets only the config sections it declares keys in; evaluate scores validation.
/// 3: the loaded dataset's digest is built on XXH3-128 (`data::DIGEST_SCHEME`).
const KEY_VERSION: u64 = 3;

/// The key of `stage` given the parts its outputs depend on.
pub fn stage_key(stage: StageName, parts: Value) -> String {
    let keyed = sorted(&json!({"stage": stage.as_str(), "key_version": KEY_VERSION, "parts": parts}));
    sha256_bytes(keyed.to_string().as_bytes())
}

/// `value` with every object's keys in sorted order, so equal configs give equal keys
/// whatever order their YAML listed them in.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Whether every input file (an earlier run's raw data) still has its recorded SHA-256, its
/// digest from the digest cache while the file is unchanged.
pub fn files_unchanged(files: &[FileArtifact]) -> bool {
    files.iter().all(|file| sha256_file_cached(&file.path).is_ok_and(|(sha256, _)| sha256 == file.sha256))
}

/// Copies `file` (recorded by an earlier run under `from_dir`) to the same place under
/// `to_dir` and checks the copy's SHA-256 against the record. Returns the new artifact.
pub fn copy_verified(file: &FileArtifact, from_dir: &Path, to_dir: &Path) -> anyhow::Result<FileArtifact> {
    let relative = file.path.strip_prefix(from_dir).with_context(|| {
        format!("{} is outside the earlier run's folder {}", file.path.display(), from_dir.display())
    })?;
    let target = to_dir.join(relative);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    std::fs::copy(&file.path, &target)
        .with_context(|| format!("copying {} to {}", file.path.display(), target.display()))?;
    let copy = crate::hashing::artifact(file.kind.clone(), &target)?;
    if copy.sha256 != file.sha256 {
        let _ = std::fs::remove_file(&target);
        bail!(
            "{} changed since it was recorded (SHA-256 {}, recorded {})",
            file.path.display(),
            copy.sha256,
            file.sha256
        );
    }
    Ok(copy)
}

const MAGIC: &[u8; 8] = b"HOSTSPL1";

#[derive(Serialize, Deserialize)]
struct SplitsHeader {
    sample_shape: Vec<usize>,
    task: TaskKind,
    label_names: Vec<String>,
    dataset_digest: String,
    transforms: Vec<Transform>,
    splits: Vec<SplitHeader>,
}

#[derive(Serialize, Deserialize)]
struct SplitHeader {
    name: String,
    rows: usize,
    digest: String,
    /// `None` for class indices (i64), else the number of f32 target columns.
    target_columns: Option<usize>,
    /// Checksums of the bytes that follow, checked on every read: the split's digest is
    /// derived from its inputs (see `data::derived_digest`), not from these bytes.
    features_sha256: String,
    targets_sha256: String,
    source_rows_sha256: String,
}

fn source_rows(split: &Split) -> Vec<u64> {
    split.source_rows.iter().map(|&r| r as u64).collect()
}

fn targets_bytes(targets: &Targets) -> &[u8] {
    match targets {
        Targets::Classes(classes) => plain_bytes(classes),
        Targets::Values { values, .. } => plain_bytes(values),
    }
}

/// The path of the splits of prepare key `key`.
pub fn splits_path(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir.join("splits").join(format!("{key}.bin"))
}

/// A split's content digest: of its checksums, so the bytes are hashed once.
fn content_digest(split: &SplitHeader) -> String {
    sha256_bytes(format!("{}:{}:{}", split.features_sha256, split.targets_sha256, split.source_rows_sha256).as_bytes())
}

fn content_digests(header: &SplitsHeader) -> BTreeMap<String, String> {
    header.splits.iter().map(|split| (split.name.clone(), content_digest(split))).collect()
}

/// Writes the prepared splits (atomically: a partial file is never visible under its name);
/// returns each split's content digest, for the run's record.
pub fn write_splits(path: &Path, prepared: &Prepared) -> anyhow::Result<BTreeMap<String, String>> {
    let dir = path.parent().context("the splits file has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let header = SplitsHeader {
        sample_shape: prepared.sample_shape.clone(),
        task: prepared.task,
        label_names: prepared.label_names.clone(),
        dataset_digest: prepared.dataset_digest.clone(),
        transforms: prepared.transforms.clone(),
        splits: prepared
            .splits()
            .iter()
            .map(|s| SplitHeader {
                name: s.name.into(),
                rows: s.rows,
                digest: s.digest.clone(),
                target_columns: match &s.targets {
                    Targets::Classes(_) => None,
                    Targets::Values { columns, .. } => Some(*columns),
                },
                features_sha256: chunked_sha256(plain_bytes(&s.features)),
                targets_sha256: chunked_sha256(targets_bytes(&s.targets)),
                source_rows_sha256: sha256_bytes(plain_bytes(&source_rows(s))),
            })
            .collect(),
    };
    let digests = content_digests(&header);
    let header = serde_json::to_vec(&header)?;
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&temporary)?);
        out.write_all(MAGIC)?;
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(&header)?;
        for split in prepared.splits() {
            out.write_all(plain_bytes(&split.features))?;
            out.write_all(targets_bytes(&split.targets))?;
            out.write_all(plain_bytes(&source_rows(split)))?;
        }
        // No fsync: a file cut short by a crash fails its checksums and is recomputed.
        out.into_inner().map_err(|e| e.into_error())?;
        Ok(())
    };
    if let Err(error) = write().and_then(|()| std::fs::rename(&temporary, path)) {
        let _ = std::fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("{}: cannot write the cached splits", path.display()));
    }
    Ok(digests)
}

/// Reads splits written by [`write_splits`], checksumming every split: a file whose content no
/// longer matches its checksums is an error, never data. The checksums live in the same file,
/// so the caller also compares [`Prepared::content_sha256`] with what the store recorded.
pub fn read_splits(path: &Path) -> anyhow::Result<Prepared> {
    let context = || format!("{}: cannot read the cached splits", path.display());
    let mut input = BufReader::with_capacity(1 << 20, File::open(path).with_context(context)?);
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic).with_context(context)?;
    if &magic != MAGIC {
        bail!("{}: not a cached splits file", path.display());
    }
    let mut length = [0u8; 8];
    input.read_exact(&mut length).with_context(context)?;
    let length = u64::from_le_bytes(length);
    let file_size = std::fs::metadata(path).with_context(context)?.len();
    if length > file_size {
        bail!("{}: header length {length} beyond the file's {file_size} bytes", path.display());
    }
    let mut header = vec![0u8; length as usize];
    input.read_exact(&mut header).with_context(context)?;
    let header: SplitsHeader = serde_json::from_slice(&header).with_context(context)?;
    let row_len: usize = header.sample_shape.iter().product();
    let expected: u64 = 16
        + length
        + header
            .splits
            .iter()
            .map(|s| (s.rows * (row_len * 4 + 8 + s.target_columns.map_or(8, |c| c * 4))) as u64)
            .sum::<u64>();
    if expected != file_size {
        bail!("{}: {file_size} bytes, its header describes {expected}", path.display());
    }
    let names = ["train", "validation", "test"];
    if header.splits.len() != 3 || header.splits.iter().zip(names).any(|(s, n)| s.name != n) {
        bail!("{}: expected the splits train, validation and test", path.display());
    }
    let mut splits = Vec::with_capacity(3);
    for (split, name) in header.splits.iter().zip(names) {
        let features: Vec<f32> = read_plain(&mut input, split.rows * row_len).with_context(context)?;
        let targets = match split.target_columns {
            None => Targets::Classes(read_plain(&mut input, split.rows).with_context(context)?),
            Some(columns) => {
                Targets::Values { values: read_plain(&mut input, split.rows * columns).with_context(context)?, columns }
            }
        };
        let source_rows: Vec<u64> = read_plain(&mut input, split.rows).with_context(context)?;
        let checks = [
            ("features", chunked_sha256(plain_bytes(&features)), &split.features_sha256),
            ("targets", chunked_sha256(targets_bytes(&targets)), &split.targets_sha256),
            ("source rows", sha256_bytes(plain_bytes(&source_rows)), &split.source_rows_sha256),
        ];
        if let Some((what, _, _)) = checks.iter().find(|(_, actual, recorded)| actual != *recorded) {
            bail!("{}: the {name} split's {what} no longer match their checksum", path.display());
        }
        splits.push(Split {
            name,
            rows: split.rows,
            features,
            targets,
            source_rows: source_rows.into_iter().map(|r| r as usize).collect(),
            digest: split.digest.clone(),
        });
    }
    let [train, validation, test] = <[Split; 3]>::try_from(splits).map_err(|_| anyhow::anyhow!("three splits"))?;
    let content_sha256 = content_digests(&header);
    Ok(Prepared {
        content_sha256,
        train,
        validation,
        test,
        sample_shape: header.sample_shape,
        task: header.task,
        label_names: header.label_names,
        dataset_digest: header.dataset_digest,
        transforms: header.transforms,
    })
}

/// Number types whose every bit pattern is a value and that have no padding.
trait Plain: Copy + Default {}
impl Plain for f32 {}
impl Plain for i64 {}
impl Plain for u64 {}

fn plain_bytes<T: Plain>(values: &[T]) -> &[u8] {
    // SAFETY: `T: Plain` has no padding, so its memory is `size_of_val` initialised bytes.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

fn read_plain<T: Plain>(input: &mut impl Read, count: usize) -> std::io::Result<Vec<T>> {
    let mut values = vec![T::default(); count];
    // SAFETY: any bytes are a valid `T: Plain`; the slice covers exactly the vector's elements.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(values.as_slice()))
    };
    input.read_exact(bytes)?;
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::experiment::{DataSplitting, Preprocessing};
    use crate::data;
    use plugin_sdk::{Dataset, Tensor};

    fn prepared(normalize: &str) -> Prepared {
        let rows = 50;
        let dataset = Dataset {
            features: Tensor::from_u8(vec![rows, 2, 3], (0..rows * 6).map(|i| (i * 7 % 256) as u8).collect()).unwrap(),
            targets: Tensor::from_i64(vec![rows], (0..rows).map(|i| (i % 4) as i64).collect()).unwrap(),
            task: TaskKind::Classification,
            label_names: ["a", "b", "c", "d"].map(String::from).to_vec(),
            test_start: Some(40),
            metadata: json!({}),
        };
        let splitting = DataSplitting {
            train_ratio: 0.8,
            val_ratio: 0.1,
            test_ratio: 0.1,
            use_predefined_test: true,
            validation_fraction: 0.2,
            shuffle: true,
        };
        let preprocessing = Preprocessing { normalize: normalize.into(), flatten: false, standardize_targets: true };
        data::prepare(&dataset, &data::dataset_digest(&dataset), &splitting, &preprocessing, 7).unwrap()
    }

    #[test]
    fn keys_ignore_key_order_and_change_with_any_part() {
        let train = StageName::Train;
        let a = stage_key(train, json!({"model": {"lr": 0.1, "layers": [128]}, "seed": 1}));
        let b = stage_key(train, json!({"seed": 1, "model": {"layers": [128], "lr": 0.1}}));
        assert_eq!(a, b);
        assert_ne!(a, stage_key(train, json!({"seed": 1, "model": {"layers": [128], "lr": 0.2}})));
        assert_ne!(a, stage_key(StageName::Evaluate, json!({"seed": 1, "model": {"layers": [128], "lr": 0.1}})));
        assert_ne!(a, stage_key(train, json!({"seed": 1, "model": {"layers": [64], "lr": 0.1}})));
        // Keys name the stage as records spell it (the spelling from before StageName).
        assert_eq!(
            stage_key(train, json!({})),
            crate::hashing::sha256_bytes(br#"{"key_version":3,"parts":{},"stage":"train"}"#)
        );
    }

    #[test]
    fn splits_round_trip_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        for normalize in ["unit", "standardize"] {
            let original = prepared(normalize);
            let path = splits_path(dir.path(), normalize);
            write_splits(&path, &original).unwrap();
            let read = read_splits(&path).unwrap();
            for (a, b) in original.splits().iter().zip(read.splits()) {
                assert_eq!((a.name, a.rows, &a.digest, &a.source_rows), (b.name, b.rows, &b.digest, &b.source_rows));
                assert_eq!(plain_bytes(&a.features), plain_bytes(&b.features));
                assert_eq!(a.targets.classes(), b.targets.classes());
            }
            assert_eq!(read.dataset_digest, original.dataset_digest);
            assert_eq!(read.transforms.len(), original.transforms.len());
            assert_eq!(read.sample_shape, original.sample_shape);
        }
    }

    #[test]
    fn altered_or_truncated_splits_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = splits_path(dir.path(), "k");
        write_splits(&path, &prepared("unit")).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // The last bytes are the test split's source rows; before them, its targets.
        for (offset, message) in [(4, "source rows no longer match"), (8 * 10 + 4, "targets no longer match")] {
            let mut altered = bytes.clone();
            let at = altered.len() - offset;
            altered[at] ^= 1;
            std::fs::write(&path, &altered).unwrap();
            let error = read_splits(&path).unwrap_err().to_string();
            assert!(error.contains(message), "{error}");
        }
        std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
        let error = read_splits(&path).unwrap_err().to_string();
        assert!(error.contains("its header describes"), "{error}");
        std::fs::write(&path, b"something else entirely").unwrap();
        assert!(read_splits(&path).unwrap_err().to_string().contains("not a cached splits file"));
    }

    #[test]
    fn reused_files_are_copied_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(from.join("model")).unwrap();
        std::fs::write(from.join("model/w.bin"), b"weights").unwrap();
        let recorded = crate::hashing::artifact(record::ArtifactKind::Model, &from.join("model/w.bin")).unwrap();
        let copy = copy_verified(&recorded, &from, &to).unwrap();
        assert_eq!((copy.path.clone(), copy.sha256.clone()), (to.join("model/w.bin"), recorded.sha256.clone()));
        std::fs::write(from.join("model/w.bin"), b"tampered").unwrap();
        let error = copy_verified(&recorded, &from, &to).unwrap_err().to_string();
        assert!(error.contains("changed since it was recorded"), "{error}");
        assert!(!to.join("model/w.bin").exists());
    }
}
