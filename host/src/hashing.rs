//! SHA-256 content addressing for files and in-memory buffers. Streaming, so a large file is
//! never read whole into memory. A run's inputs (raw files, plugin libraries) are looked up in
//! a digest cache first, as git's index and DVC do; `host verify` and `host replay` always
//! rehash.

use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use record::{ArtifactKind, FileArtifact};
use sha2::{Digest, Sha256};

/// Wall time the host spent hashing data and files: the hashing half of the provenance
/// overhead that `host run --json` reports and the store benchmark quotes.
static HASHING_NANOS: AtomicU64 = AtomicU64::new(0);

/// Seconds spent hashing so far in this process (wall time of the hashing calls).
pub fn hashing_seconds() -> f64 {
    HASHING_NANOS.load(Ordering::Relaxed) as f64 / 1e9
}

fn count_since(started: Instant) {
    HASHING_NANOS.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

/// Threads the host's own parallel work may use (filling splits, chunked digests): the run's
/// thread count once [`set_work_threads`] is called, 0 for every core this process may use.
static WORK_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Limits the host's own parallel work to the run's thread count, as its model's is: a run
/// given one thread (a sweep's trial beside another, a job allotted one CPU) uses one.
pub fn set_work_threads(threads: usize) {
    WORK_THREADS.store(threads, Ordering::Relaxed);
}

/// The run's threads, at most one per core this process may use (a replay of a run given more
/// threads than this machine has gains nothing from more); every core before a run sets them.
fn work_threads() -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    match WORK_THREADS.load(Ordering::Relaxed) {
        0 => cores,
        threads => threads.min(cores),
    }
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The SHA-256 of a byte slice, as hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// XXH3-128 of in-memory bytes, as hex prefixed `xxh3-128:`: what the loaded dataset's digest
/// is built on, at tens of gigabytes a second where SHA-256 does 1.5 per core. Not a
/// cryptographic hash: the dataset is a function of the raw files and the loader build, whose
/// SHA-256 the run records, so a collision would have to be made by a loader the run records.
pub fn xxh3_128(bytes: &[u8]) -> String {
    let started = Instant::now();
    let checksum = format!("xxh3-128:{:032x}", twox_hash::XxHash3_128::oneshot(bytes));
    count_since(started);
    checksum
}

/// Chunk size of [`chunked_sha256`].
const CHUNK: usize = 4 << 20;

/// A SHA-256-based digest of a large buffer computed in parallel: the buffer is cut into
/// 4 MiB chunks, each hashed with SHA-256, and the chunk digests are hashed in order. It is not
/// the plain SHA-256 of the bytes; the data manager's content digests are defined with it.
pub fn chunked_sha256(bytes: &[u8]) -> String {
    chunked_sha256_on(bytes, work_threads())
}

/// [`chunked_sha256`] on `threads` threads (the digest does not depend on how many).
fn chunked_sha256_on(bytes: &[u8], threads: usize) -> String {
    let started = Instant::now();
    let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
    let mut digests = vec![[0u8; 32]; chunks.len()];
    on_threads(threads, digests.iter_mut().collect(), |index, slot| *slot = Sha256::digest(chunks[index]).into());
    let digest = combine_chunk_digests(bytes.len(), &digests);
    count_since(started);
    digest
}

/// Fills `values` chunk by chunk (`fill(first index, chunk)`) on the run's threads (every core
/// before a run sets them).
pub fn fill_in_parallel(values: &mut [f32], fill: impl Fn(usize, &mut [f32]) + Sync) {
    fill_on(values, work_threads(), fill);
}

/// [`fill_in_parallel`] on at most `threads` threads.
fn fill_on(values: &mut [f32], threads: usize, fill: impl Fn(usize, &mut [f32]) + Sync) {
    const FLOATS: usize = CHUNK / 4;
    on_threads(threads, values.chunks_mut(FLOATS).collect(), |index, chunk| fill(index * FLOATS, chunk));
}

/// Runs `work(index, item)` for every item, the items split in order and evenly across at most
/// `threads` threads (on this one when that is one).
fn on_threads<T: Send>(threads: usize, items: Vec<T>, work: impl Fn(usize, T) + Sync) {
    let threads = threads.min(items.len()).max(1);
    if threads == 1 {
        items.into_iter().enumerate().for_each(|(index, item)| work(index, item));
        return;
    }
    let per_thread = items.len().div_ceil(threads);
    let work = &work;
    std::thread::scope(|scope| {
        let mut items = items.into_iter().enumerate().peekable();
        while items.peek().is_some() {
            let batch: Vec<(usize, T)> = items.by_ref().take(per_thread).collect();
            scope.spawn(move || batch.into_iter().for_each(|(index, item)| work(index, item)));
        }
    });
}

fn combine_chunk_digests(byte_len: usize, digests: &[[u8; 32]]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"chunked-sha256-4MiB\0");
    hasher.update((byte_len as u64).to_le_bytes());
    for digest in digests {
        hasher.update(digest);
    }
    hex(&hasher.finalize())
}

/// A file the run wrote, hashed; its path recorded absolute, so `host verify` works from
/// anywhere.
pub fn artifact(kind: ArtifactKind, path: &Path) -> anyhow::Result<FileArtifact> {
    hashed_artifact(kind, path, sha256_file)
}

/// A file the run read (a raw data file), its digest from the digest cache when the file is
/// unchanged since it was last hashed.
pub fn input_artifact(kind: ArtifactKind, path: &Path) -> anyhow::Result<FileArtifact> {
    hashed_artifact(kind, path, sha256_file_cached)
}

fn hashed_artifact(
    kind: ArtifactKind,
    path: &Path,
    hash: fn(&Path) -> io::Result<(String, u64)>,
) -> anyhow::Result<FileArtifact> {
    let (sha256, size) = hash(path).map_err(|e| anyhow::anyhow!("{}: cannot hash: {e}", path.display()))?;
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    Ok(FileArtifact { kind, path, sha256, size })
}

/// `$XDG_CACHE_HOME/host/NAME` or `~/.cache/host/NAME`; `None` when neither is set.
pub fn user_cache_dir(name: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|home| PathBuf::from(home).join(".cache"))
    })?;
    Some(base.join("host").join(name))
}

/// What says a file is the one that was hashed: its device, inode, size, and modification and
/// change times to the nanosecond. Rewriting a file changes its times (the change time cannot
/// be set back), replacing it by a rename changes its inode.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stamp {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Stamp {
        Stamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    /// Changed within the last two seconds (or in the future, by a clock that differs): a write
    /// in the same clock tick could leave the times as they are, so such a file is hashed but
    /// not cached (git's "racily clean" entries).
    fn is_recent(&self) -> bool {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let nanos = |(seconds, nanos): (i64, i64)| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        let latest = nanos(self.modified).max(nanos(self.changed));
        now.as_nanos() as i128 - latest < 2_000_000_000
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedDigest {
    stamp: Stamp,
    sha256: String,
}

/// The SHA-256 of a file's contents and its size, from the digest cache when its [`Stamp`] is
/// the one it had when hashed; otherwise hashed (and cached, best effort). For a run's inputs
/// only: `host verify` and `host replay` use [`sha256_file`].
pub fn sha256_file_cached(path: &Path) -> io::Result<(String, u64)> {
    // Looked up (and the folder checked) once per process.
    static CACHE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    match CACHE.get_or_init(|| user_cache_dir("digests").filter(|cache| private_folder(cache))) {
        Some(cache) => sha256_file_cached_in(cache, path),
        None => sha256_file(path),
    }
}

/// Whether `folder` is this user's alone (created so when missing): a digest cache anyone else
/// could write would let them choose the digests a run records. Otherwise the cache is not used.
fn private_folder(folder: &Path) -> bool {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(folder);
    // SAFETY: geteuid has no preconditions and cannot fail.
    let user = unsafe { libc::geteuid() };
    std::fs::symlink_metadata(folder)
        .is_ok_and(|m| m.is_dir() && m.uid() == user && m.permissions().mode() & 0o022 == 0)
}

fn sha256_file_cached_in(cache: &Path, path: &Path) -> io::Result<(String, u64)> {
    let started = Instant::now();
    // The stamp comes from the open handle: the open revalidates a network file system's
    // cached attributes, and the bytes hashed below are this file's.
    let (mut file, metadata) = open_regular(path)?;
    let stamp = Stamp::of(&metadata);
    use std::os::unix::ffi::OsStrExt;
    let canonical = path.canonicalize()?;
    let entry = cache.join(format!("{}.json", hex(&Sha256::digest(canonical.as_os_str().as_bytes()))));
    let cached = std::fs::read(&entry).ok().and_then(|bytes| serde_json::from_slice::<CachedDigest>(&bytes).ok());
    if let Some(cached) = cached.filter(|c| c.stamp == stamp) {
        count_since(started);
        return Ok((cached.sha256, stamp.size));
    }
    let (sha256, size) = sha256_open(&mut file)?;
    // Cached only when the file did not change while it was read and its times can tell a later
    // change apart.
    let unchanged = file.metadata().is_ok_and(|after| Stamp::of(&after) == stamp) && size == stamp.size;
    if unchanged && !stamp.is_recent() {
        let text = serde_json::to_vec(&CachedDigest { stamp, sha256: sha256.clone() }).unwrap_or_default();
        let written = tempfile::NamedTempFile::new_in(cache).and_then(|mut staging| {
            use std::io::Write;
            staging.write_all(&text)?;
            staging.persist(&entry).map(drop).map_err(|e| e.error)
        });
        if let Err(error) = written {
            tracing::debug!("{}: digest not cached: {error}", entry.display());
        }
    }
    Ok((sha256, size))
}

/// The SHA-256 of a file's contents, as hex, and its size in bytes. Only a regular file is
/// read: a FIFO (which would block until written) or a device is an error at once.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let (mut file, _) = open_regular(path)?;
    sha256_open(&mut file)
}

/// Opens a regular file for reading, with its metadata from the open handle (which, on a
/// network file system, is revalidated by the open). A FIFO, socket or device is an error at
/// once: opening is non-blocking, so a FIFO does not wait for a writer.
fn open_regular(path: &Path) -> io::Result<(std::fs::File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file (a FIFO, socket or device)"));
    }
    Ok((file, metadata))
}

/// The SHA-256 and size of what is left to read of an open file.
fn sha256_open(file: &mut std::fs::File) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    let started = Instant::now();
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        size += read as u64;
        hasher.update(&buffer[..read]);
    }
    count_since(started);
    Ok((hex(&hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_digests_depend_on_every_byte_and_not_on_the_thread_count() {
        let data: Vec<u8> = (0..(CHUNK * 3 + 17)).map(|i| (i % 251) as u8).collect();
        let digest = chunked_sha256(&data);
        let mut changed = data.clone();
        changed[CHUNK * 2 + 5] ^= 1;
        assert_ne!(chunked_sha256(&changed), digest);
        assert_ne!(chunked_sha256(&data[..data.len() - 1]), digest);
        // The definition, computed by hand on one thread.
        let mut hasher = Sha256::new();
        hasher.update(b"chunked-sha256-4MiB\0");
        hasher.update((data.len() as u64).to_le_bytes());
        for chunk in data.chunks(CHUNK) {
            hasher.update(Sha256::digest(chunk));
        }
        assert_eq!(digest, hex(&hasher.finalize()));
        assert_eq!(chunked_sha256(b""), chunked_sha256(&[]));
        // One thread, two, more threads than chunks: the same digest.
        for threads in [1, 2, 3, 8] {
            assert_eq!(chunked_sha256_on(&data, threads), digest, "{threads} threads");
        }
    }

    #[test]
    fn filling_in_parallel_fills_every_chunk_at_its_offset_on_the_run_s_threads() {
        // How many threads filled, for a thread count.
        let filled_on = |threads: usize| {
            let mut values = vec![0f32; CHUNK / 4 * 4 + 1000];
            let seen = std::sync::Mutex::new(std::collections::HashSet::new());
            fill_on(&mut values, threads, |first, chunk| {
                seen.lock().unwrap().insert(std::thread::current().id());
                for (offset, value) in chunk.iter_mut().enumerate() {
                    *value = ((first + offset) % 997) as f32;
                }
            });
            assert!(values.iter().enumerate().all(|(i, &v)| v == (i % 997) as f32), "{threads} threads");
            seen.into_inner().unwrap().len()
        };
        assert_eq!(filled_on(1), 1);
        assert_eq!(filled_on(3), 3);
        // More threads than chunks: one per chunk.
        assert_eq!(filled_on(16), 5);
        // A run's thread count is what the host's parallel work then takes, at most a thread
        // per core; before any run sets one, every core. (No other test sets it: runs set it,
        // each in its own process.)
        let cores = std::thread::available_parallelism().unwrap().get();
        set_work_threads(1);
        assert_eq!(work_threads(), 1);
        set_work_threads(cores + 1);
        assert_eq!(work_threads(), cores);
        set_work_threads(0);
        assert_eq!(work_threads(), cores);
    }

    #[test]
    fn cached_digests_are_used_only_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        assert!(private_folder(&cache), "a new cache folder is the user's alone");
        // One anyone may write is not used.
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        assert!(!private_folder(&shared));
        let path = dir.path().join("data.bin");
        let entries = || std::fs::read_dir(&cache).map_or(0, |e| e.count());
        // A file written just now is hashed but not cached: its times could miss a change.
        std::fs::write(&path, b"first").unwrap();
        let first = sha256_file_cached_in(&cache, &path).unwrap();
        assert_eq!(first, sha256_file(&path).unwrap());
        assert_eq!(entries(), 0);
        // Older, it is cached, and the cache answers for it: a planted digest comes back.
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(hour_ago).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_eq!(sha256_file_cached_in(&cache, &path).unwrap(), first);
        assert_eq!(entries(), 1);
        let entry = std::fs::read_dir(&cache).unwrap().next().unwrap().unwrap().path();
        let mut planted: serde_json::Value = serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
        planted["sha256"] = "planted".into();
        std::fs::write(&entry, planted.to_string()).unwrap();
        assert_eq!(sha256_file_cached_in(&cache, &path).unwrap().0, "planted");
        // Rewritten with the same size and its old modification time set back, it is hashed
        // again: the change time moved.
        std::fs::write(&path, b"secnd").unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(hour_ago).unwrap();
        assert_eq!(sha256_file_cached_in(&cache, &path).unwrap(), sha256_file(&path).unwrap());
        assert_ne!(sha256_file(&path).unwrap(), first);
        // Replaced by a rename (another inode), it is hashed again too.
        let other = dir.path().join("other.bin");
        std::fs::write(&other, b"third").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(sha256_file_cached_in(&cache, &path).unwrap().0, sha256_bytes(b"third"));
    }

    #[test]
    fn known_digests() {
        assert_eq!(sha256_bytes(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_owned(), 3)
        );
    }
}
