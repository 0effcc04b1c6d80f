//! The IDX file format of MNIST and Fashion-MNIST (raw or gzipped): a magic number naming the
//! element type and rank, one big-endian u32 per dimension, then the elements. Declared sizes
//! are checked against the file before anything is allocated, and every fault names the file.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

/// A decoded IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// What is wrong with an IDX file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdxError {
    #[error("{file}: cannot read: {message}")]
    Io { file: String, message: String },
    #[error(
        "{file}: bad magic number 0x{magic:08x}; an IDX file starts with 0x0000 0x08 <rank> (is this the right file?)"
    )]
    BadMagic { file: String, magic: u32 },
    #[error("{file}: element type 0x{code:02x} is not supported; MNIST files hold unsigned bytes (0x08)")]
    UnsupportedType { file: String, code: u8 },
    #[error("{file}: rank {actual}, expected {expected} (images have 3 dimensions, labels 1)")]
    WrongRank { file: String, expected: usize, actual: usize },
    #[error(
        "{file}: declared dimensions {dims:?} need {declared} bytes, but the file holds only {available}; the file is truncated or corrupt"
    )]
    DeclaredTooLarge { file: String, dims: Vec<u32>, declared: u128, available: u64 },
    #[error("{file}: truncated payload: expected {expected} bytes, found {found}")]
    Truncated { file: String, expected: usize, found: usize },
    #[error("{file}: corrupt gzip data: {message}")]
    CorruptGzip { file: String, message: String },
}

fn is_gzip(path: &Path) -> Result<bool, std::io::Error> {
    let mut magic = [0u8; 2];
    let mut file = File::open(path)?;
    let read = file.read(&mut magic)?;
    Ok(read == 2 && magic == [0x1f, 0x8b])
}

/// Deflate cannot expand data by more than about 1032:1, so a gzip file of `n` bytes decodes
/// to at most this many; the trailer's size field is not trusted (anyone can write it).
const GZIP_MAX_RATIO: u64 = 1032;

/// Reads an IDX file of unsigned bytes with the expected rank.
pub fn read_idx(path: &Path, expected_rank: usize) -> Result<IdxArray, IdxError> {
    let name = path.display().to_string();
    let io = |e: std::io::Error| IdxError::Io { file: name.clone(), message: e.to_string() };
    let gzip = is_gzip(path).map_err(io)?;
    let file = File::open(path).map_err(io)?;
    // An upper bound on the decoded size, known before decoding anything.
    let file_len = file.metadata().map_err(io)?.len();
    let available = if gzip { file_len.saturating_mul(GZIP_MAX_RATIO) } else { file_len };
    let mut reader: Box<dyn Read> =
        if gzip { Box::new(MultiGzDecoder::new(BufReader::new(file))) } else { Box::new(BufReader::new(file)) };

    let gz_error = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
            IdxError::CorruptGzip { file: name.clone(), message: e.to_string() }
        }
        _ => io(e),
    };
    let mut header = [0u8; 4];
    let found = read_full(&mut reader, &mut header).map_err(gz_error)?;
    if found < 4 {
        return Err(IdxError::Truncated { file: name, expected: 4, found });
    }
    let magic = u32::from_be_bytes(header);
    if header[0] != 0 || header[1] != 0 {
        return Err(IdxError::BadMagic { file: name, magic });
    }
    if header[2] != 0x08 {
        return Err(IdxError::UnsupportedType { file: name, code: header[2] });
    }
    let rank = header[3] as usize;
    if rank != expected_rank {
        return Err(IdxError::WrongRank { file: name, expected: expected_rank, actual: rank });
    }
    let mut dim_bytes = vec![0u8; 4 * rank];
    let found = read_full(&mut reader, &mut dim_bytes).map_err(gz_error)?;
    if found < dim_bytes.len() {
        return Err(IdxError::Truncated { file: name, expected: 4 + dim_bytes.len(), found: 4 + found });
    }
    let dims: Vec<u32> = dim_bytes.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
    let header_len = 4 + 4 * rank as u64;
    let declared: u128 = dims.iter().map(|&d| d as u128).product();
    let payload_available = available.saturating_sub(header_len);
    if declared > payload_available as u128 {
        return Err(IdxError::DeclaredTooLarge { file: name, dims, declared, available: payload_available });
    }
    let declared = declared as usize;
    let data = if gzip {
        // The bound above is loose for gzip: grow with what actually decodes, never by the
        // declared size alone.
        let mut data = Vec::with_capacity(declared.min(1 << 26));
        reader.take(declared as u64).read_to_end(&mut data).map_err(gz_error)?;
        data
    } else {
        let mut data = vec![0u8; declared];
        let found = read_full(&mut reader, &mut data).map_err(gz_error)?;
        data.truncate(found);
        data
    };
    if data.len() < declared {
        return Err(IdxError::Truncated { file: name, expected: declared, found: data.len() });
    }
    Ok(IdxArray { dims: dims.into_iter().map(|d| d as usize).collect(), data })
}

/// Reads until `buffer` is full or the input ends; returns how many bytes were read.
fn read_full(reader: &mut dyn Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Encodes an IDX file of unsigned bytes: used by the tests and by the set-up that converts
/// MNIST digits shipped as JSON into IDX.
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Gzips bytes, for tests that need .gz fixtures.
    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn raw_and_gzipped_files_decode_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        let idx = encode_idx(&[2, 3, 4], &data);
        let raw = read_idx(&write(dir.path(), "raw", &idx), 3).unwrap();
        let gz = read_idx(&write(dir.path(), "raw.gz", &gzip(&idx)), 3).unwrap();
        assert_eq!(raw, IdxArray { dims: vec![2, 3, 4], data });
        assert_eq!(raw, gz);
    }

    #[test]
    fn every_fault_names_the_file_and_the_fault() {
        let dir = tempfile::tempdir().unwrap();
        let good = encode_idx(&[4], &[1, 2, 3, 4]);
        let cases: Vec<(&str, Vec<u8>, usize, &str)> = vec![
            ("magic", b"\x89PNG\r\n\x1a\n".to_vec(), 1, "bad magic number 0x89504e47"),
            ("type", vec![0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0], 1, "element type 0x0d is not supported"),
            ("rank", good.clone(), 3, "rank 1, expected 3"),
            ("short-header", vec![0, 0, 8], 1, "truncated payload: expected 4 bytes, found 3"),
            (
                "absurd",
                encode_idx(&[u32::MAX as usize, u32::MAX as usize, u32::MAX as usize], &[]),
                3,
                "need 79228162458924105385300197375 bytes, but the file holds only 0",
            ),
            ("short", good[..good.len() - 1].to_vec(), 1, "need 4 bytes, but the file holds only 3"),
        ];
        for (name, bytes, rank, expected) in cases {
            let path = write(dir.path(), name, &bytes);
            let error = read_idx(&path, rank).unwrap_err().to_string();
            assert!(error.starts_with(&path.display().to_string()), "{name}: {error}");
            assert!(error.contains(expected), "{name}: {error}");
        }
    }

    #[test]
    fn a_gzip_file_declaring_gigabytes_is_refused_without_allocating_them() {
        // Found by scripts/fuzz.sh (target idx): 35 bytes of gzip with a zero size trailer whose
        // IDX header declares 3.8 GB; the reader used to allocate that before decoding.
        let input = [
            0x1f, 0x8b, 0x08, 0x00, 0xdb, 0x29, 0x08, 0x6b, 0x82, 0xff, 0x63, 0x60, 0xe0, 0x60, 0x66, 0x60, 0x60, 0x00,
            0x61, 0x26, 0x35, 0x66, 0x64, 0x62, 0x66, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "oom.gz", &input);
        let error = read_idx(&path, 3).unwrap_err();
        assert!(matches!(error, IdxError::DeclaredTooLarge { .. }), "{error}");
        assert!(error.to_string().contains("oom.gz"), "{error}");
        // A small gzip file whose header declares more than deflate could ever expand it to.
        let bomb = gzip(&encode_idx(&[1 << 31], &[]));
        let error = read_idx(&write(dir.path(), "bomb.gz", &bomb), 1).unwrap_err();
        assert!(matches!(error, IdxError::DeclaredTooLarge { .. }), "{error}");
    }

    #[test]
    fn truncated_and_corrupt_gzip_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let idx = encode_idx(&[1000], &[7; 1000]);
        let gz = gzip(&idx);
        // Cut inside the deflate stream: the trailer is gone, so the payload comes up short.
        let cut = write(dir.path(), "cut.gz", &gz[..gz.len() / 2]);
        let error = read_idx(&cut, 1).unwrap_err().to_string();
        assert!(error.contains("cut.gz"), "{error}");
        assert!(
            error.contains("truncated") || error.contains("corrupt gzip") || error.contains("holds only"),
            "{error}"
        );

        let mut corrupt = gz.clone();
        for byte in &mut corrupt[12..20] {
            *byte ^= 0xa5;
        }
        let error = read_idx(&write(dir.path(), "corrupt.gz", &corrupt), 1).unwrap_err();
        assert!(matches!(error, IdxError::CorruptGzip { .. }), "{error:?}");
        assert!(
            error.to_string().starts_with(&format!("{}: corrupt gzip data: ", dir.path().join("corrupt.gz").display())),
            "{error}"
        );
    }
}
