//! MNISTLoader: reads MNIST or Fashion-MNIST IDX files (raw or gzipped) from `data_dir`,
//! optionally downloading missing files from mirrors with SHA-256 verification, and optionally
//! subsampling with the run's seed. It never normalises: scaling is the host's recorded transform.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use plugin_sdk::prelude::*;
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::idx::{IdxArray, read_idx};

const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
const FASHION_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// The four files of an MNIST-format data set: (role, file stem, rank).
const FILES: [(&str, &str, usize); 4] = [
    ("train-images", "train-images-idx3-ubyte", 3),
    ("train-labels", "train-labels-idx1-ubyte", 1),
    ("t10k-images", "t10k-images-idx3-ubyte", 3),
    ("t10k-labels", "t10k-labels-idx1-ubyte", 1),
];

/// SHA-256 of the published Fashion-MNIST files (as Debian's dataset-fashion-mnist ships them).
const FASHION_SHA256: [(&str, &str); 4] = [
    ("train-images-idx3-ubyte.gz", "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
    ("train-labels-idx1-ubyte.gz", "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
    ("t10k-images-idx3-ubyte.gz", "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
    ("t10k-labels-idx1-ubyte.gz", "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoaderConfig {
    data_loader: LoaderSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoaderSection {
    data_dir: String,
    dataset: String,
    n_samples: Option<usize>,
    n_test_samples: Option<usize>,
    download: bool,
    mirrors: Vec<String>,
    #[serde(default)]
    sha256: serde_json::Map<String, serde_json::Value>,
    download_timeout_seconds: u64,
}

/// Reads MNIST-format IDX files.
pub struct MnistLoader {
    config: LoaderSection,
    seed: u64,
    loaded: Option<Loaded>,
}

struct Loaded {
    train_images: IdxArray,
    train_labels: IdxArray,
    test_images: IdxArray,
    test_labels: IdxArray,
}

impl PluginClass for MnistLoader {
    const NAME: &'static str = "MNISTLoader";
    const SUMMARY: &'static str =
        "MNIST / Fashion-MNIST IDX files (raw or .gz), optional download and seeded subsampling";

    fn config_keys() -> Vec<ConfigKey> {
        let section = "data_loader";
        vec![
            ConfigKey::new(section, "data_dir", ConfigType::String)
                .default("data/mnist")
                .describe("folder with train-/t10k- images and labels (.gz or raw)"),
            ConfigKey::new(section, "dataset", ConfigType::Choice(vec!["mnist".into(), "fashion-mnist".into()]))
                .default("mnist")
                .describe("decides the class names"),
            ConfigKey::new(section, "n_samples", ConfigType::Count)
                .describe("keep this many training samples, chosen with the seed (default: all)"),
            ConfigKey::new(section, "n_test_samples", ConfigType::Count)
                .describe("keep this many test samples, chosen with the seed (default: all)"),
            ConfigKey::new(section, "download", ConfigType::Boolean)
                .default(false)
                .describe("download missing files from the mirrors"),
            ConfigKey::new(section, "mirrors", ConfigType::List(Box::new(ConfigType::String)))
                .default(serde_json::json!([]))
                .describe("base URLs tried in order (default: the data set's usual mirrors)"),
            ConfigKey::new(section, "sha256", ConfigType::Any)
                .describe("file name -> SHA-256 that downloads must match (Fashion-MNIST's are built in)"),
            ConfigKey::new(section, "download_timeout_seconds", ConfigType::Count).default(120),
        ]
    }

    fn new(config: ClassConfig) -> Result<Self, PluginError> {
        let parsed: LoaderConfig = config.parse()?;
        let section = parsed.data_loader;
        if section.n_samples == Some(0) || section.n_test_samples == Some(0) {
            return Err(PluginError::invalid_config("data_loader.n_samples and n_test_samples must be at least 1"));
        }
        for (name, value) in &section.sha256 {
            if !value.as_str().is_some_and(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())) {
                return Err(PluginError::invalid_config(format!("data_loader.sha256.{name}: expected 64 hex digits")));
            }
        }
        Ok(MnistLoader { config: section, seed: config.seed, loaded: None })
    }
}

impl MnistLoader {
    fn class_names(&self) -> &'static [&'static str] {
        if self.config.dataset == "fashion-mnist" { &FASHION_CLASSES } else { &MNIST_CLASSES }
    }

    fn mirrors(&self) -> Vec<String> {
        if !self.config.mirrors.is_empty() {
            return self.config.mirrors.clone();
        }
        let defaults: &[&str] = if self.config.dataset == "fashion-mnist" {
            &["https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
        } else {
            &["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"]
        };
        defaults.iter().map(|s| s.to_string()).collect()
    }

    fn expected_sha256(&self, file_name: &str) -> Option<String> {
        if let Some(value) = self.config.sha256.get(file_name).and_then(|v| v.as_str()) {
            return Some(value.to_ascii_lowercase());
        }
        if self.config.dataset == "fashion-mnist" {
            return FASHION_SHA256.iter().find(|(name, _)| *name == file_name).map(|(_, h)| h.to_string());
        }
        None
    }

    /// Finds `stem.gz` or `stem` in the data folder, downloading `stem.gz` when allowed.
    fn locate(&self, stem: &str, services: &Services<'_>) -> Result<PathBuf, PluginError> {
        let dir = Path::new(&self.config.data_dir);
        for candidate in [dir.join(format!("{stem}.gz")), dir.join(stem)] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        if !self.config.download {
            return Err(PluginError::new(format!(
                "{}: neither {stem}.gz nor {stem} is there; run the set-up, point data_loader.data_dir at the files, or set data_loader.download: true",
                dir.display()
            )));
        }
        self.download(dir, &format!("{stem}.gz"), services)
    }

    fn download(&self, dir: &Path, file_name: &str, services: &Services<'_>) -> Result<PathBuf, PluginError> {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the data folder", dir.display()))?;
        let target = dir.join(file_name);
        let expected = self.expected_sha256(file_name);
        if expected.is_none() {
            services.warn(&format!(
                "no SHA-256 is known for {file_name}; the download cannot be verified (set data_loader.sha256)"
            ));
        }
        let mut failures = Vec::new();
        for mirror in self.mirrors() {
            let url = format!("{}/{file_name}", mirror.trim_end_matches('/'));
            services.info(&format!("downloading {url}"));
            match fetch(&url, &target, expected.as_deref(), self.config.download_timeout_seconds) {
                Ok(()) => return Ok(target),
                Err(error) => failures.push(format!("{url}: {error}")),
            }
        }
        Err(PluginError::new(format!("could not download {file_name}: {}", failures.join("; "))))
    }

    fn subsample(&self, images: IdxArray, labels: IdxArray, keep: Option<usize>, stream: u64) -> (IdxArray, IdxArray) {
        let count = labels.dims[0];
        let Some(keep) = keep.filter(|&k| k < count) else { return (images, labels) };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(stream);
        let mut rows = sample(&mut rng, count, keep).into_vec();
        rows.sort_unstable();
        let pixels: usize = images.dims[1..].iter().product();
        let mut image_data = Vec::with_capacity(keep * pixels);
        let mut label_data = Vec::with_capacity(keep);
        for &row in &rows {
            image_data.extend_from_slice(&images.data[row * pixels..(row + 1) * pixels]);
            label_data.push(labels.data[row]);
        }
        let mut image_dims = images.dims.clone();
        image_dims[0] = keep;
        (IdxArray { dims: image_dims, data: image_data }, IdxArray { dims: vec![keep], data: label_data })
    }
}

/// Downloads `url` into `target` through a temporary file, verifying the SHA-256 before the
/// atomic rename, so a failed or forged download never leaves a file that looks complete.
pub fn fetch(url: &str, target: &Path, expected_sha256: Option<&str>, timeout_seconds: u64) -> Result<(), PluginError> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(timeout_seconds))).build(),
    );
    let mut response = agent.get(url).call()?;
    let mut reader = response.body_mut().as_reader();
    let partial = target.with_extension("part");
    let mut file = std::fs::File::create(&partial).with_context(|| partial.display())?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        file.write_all(&buffer[..read]).with_context(|| partial.display())?;
    }
    file.sync_all()?;
    let actual: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if let Some(expected) = expected_sha256
        && expected != actual
    {
        let _ = std::fs::remove_file(&partial);
        return Err(PluginError::new(format!("SHA-256 mismatch: expected {expected}, got {actual}")));
    }
    std::fs::rename(&partial, target).with_context(|| target.display())?;
    Ok(())
}

fn check_pair(images: &IdxArray, labels: &IdxArray, images_path: &Path, labels_path: &Path) -> Result<(), PluginError> {
    if images.dims[0] != labels.dims[0] {
        return Err(PluginError::new(format!(
            "{} holds {} images but {} holds {} labels; the files do not belong together",
            images_path.display(),
            images.dims[0],
            labels_path.display(),
            labels.dims[0]
        )));
    }
    Ok(())
}

fn check_labels(labels: &IdxArray, path: &Path, classes: usize) -> Result<(), PluginError> {
    if let Some((row, &label)) = labels.data.iter().enumerate().find(|(_, l)| **l as usize >= classes) {
        return Err(PluginError::new(format!(
            "{}: label {label} at row {row} is out of range 0..{classes}",
            path.display()
        )));
    }
    Ok(())
}

impl DataLoader for MnistLoader {
    fn load_data(&mut self, services: &Services<'_>) -> Result<LoadSummary, PluginError> {
        let mut paths = Vec::new();
        let mut arrays = Vec::new();
        for (index, (_, stem, rank)) in FILES.iter().enumerate() {
            let path = self.locate(stem, services)?;
            services.progress(index as u64, FILES.len() as u64, &format!("reading {}", path.display()));
            arrays.push(read_idx(&path, *rank).map_err(|e| PluginError::new(e.to_string()))?);
            paths.push(path);
        }
        services.progress(FILES.len() as u64, FILES.len() as u64, "read");
        let Ok([train_images, train_labels, test_images, test_labels]) = <[IdxArray; 4]>::try_from(arrays) else {
            unreachable!("FILES names four files")
        };
        check_pair(&train_images, &train_labels, &paths[0], &paths[1])?;
        check_pair(&test_images, &test_labels, &paths[2], &paths[3])?;
        if train_images.dims[1..] != test_images.dims[1..] {
            return Err(PluginError::new(format!(
                "{} has images of {:?} but {} of {:?}",
                paths[0].display(),
                &train_images.dims[1..],
                paths[2].display(),
                &test_images.dims[1..]
            )));
        }
        let classes = self.class_names().len();
        check_labels(&train_labels, &paths[1], classes)?;
        check_labels(&test_labels, &paths[3], classes)?;
        let (train_images, train_labels) = self.subsample(train_images, train_labels, self.config.n_samples, 1);
        let (test_images, test_labels) = self.subsample(test_images, test_labels, self.config.n_test_samples, 2);
        let samples = train_labels.dims[0] + test_labels.dims[0];
        let description = format!(
            "{} from {}: {} training and {} test images of {:?}",
            self.config.dataset,
            self.config.data_dir,
            train_labels.dims[0],
            test_labels.dims[0],
            &train_images.dims[1..]
        );
        self.loaded = Some(Loaded { train_images, train_labels, test_images, test_labels });
        Ok(LoadSummary {
            source_files: FILES
                .iter()
                .zip(&paths)
                .map(|((role, _, _), path)| SourceFile { path: path.display().to_string(), role: role.to_string() })
                .collect(),
            samples,
            description,
        })
    }

    fn extract_features_and_targets(&mut self, _services: &Services<'_>) -> Result<Dataset, PluginError> {
        let loaded = self
            .loaded
            .take()
            .ok_or_else(|| PluginError::new("extract_features_and_targets called before load_data"))?;
        let train = loaded.train_labels.dims[0];
        let test = loaded.test_labels.dims[0];
        let (rows, cols) = (loaded.train_images.dims[1], loaded.train_images.dims[2]);
        let mut pixels = loaded.train_images.data;
        pixels.extend_from_slice(&loaded.test_images.data);
        let targets: Vec<i64> =
            loaded.train_labels.data.iter().chain(&loaded.test_labels.data).map(|&l| l as i64).collect();
        Ok(Dataset {
            features: Tensor::from_u8(vec![train + test, 1, rows, cols], pixels)?,
            targets: Tensor::from_i64(vec![train + test], targets)?,
            task: TaskKind::Classification,
            label_names: self.class_names().iter().map(|s| s.to_string()).collect(),
            test_start: Some(train),
            metadata: serde_json::json!({
                "dataset": self.config.dataset,
                "image_shape": [1, rows, cols],
                "value_range": [0, 255],
                "train_samples": train,
                "test_samples": test,
                "kind": "image",
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use plugin_sdk::host::with_services;
    use plugin_sdk::testing::RecordingServices;
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::idx::encode_idx;
    use crate::idx::tests::gzip;

    /// The four gzipped files of a 12-image training and 4-image test set.
    fn files() -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        for (prefix, count) in [("train", 12usize), ("t10k", 4)] {
            let images: Vec<u8> = (0..count * 784).map(|i| (i % 251) as u8).collect();
            let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
            files.push((format!("{prefix}-images-idx3-ubyte.gz"), gzip(&encode_idx(&[count, 28, 28], &images))));
            files.push((format!("{prefix}-labels-idx1-ubyte.gz"), gzip(&encode_idx(&[count], &labels))));
        }
        files
    }

    /// Serves `/good/<file>` from `files` and 404 for anything else, on 127.0.0.1, recording
    /// every path requested. Stops after `connections` requests.
    fn serve(files: Vec<(String, Vec<u8>)>, connections: usize) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let requested = Arc::new(Mutex::new(Vec::new()));
        let log = requested.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(connections) {
                let Ok(mut stream) = stream else { continue };
                let mut line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                reader.read_line(&mut line).unwrap();
                while reader.read_line(&mut String::new()).map(|n| n > 2).unwrap_or(false) {}
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                log.lock().unwrap().push(path.clone());
                let body = path
                    .strip_prefix("/good/")
                    .and_then(|name| files.iter().find(|(n, _)| n == name))
                    .map(|(_, b)| b.clone());
                let response = match body {
                    Some(body) => {
                        let mut head =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                                .into_bytes();
                        head.extend(body);
                        head
                    }
                    None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                };
                let _ = stream.write_all(&response);
            }
        });
        (address, requested)
    }

    fn loader(data_dir: &Path, mirrors: Vec<String>, sha256: serde_json::Value) -> MnistLoader {
        let sections = serde_json::json!({"data_loader": {
            "data_dir": data_dir, "dataset": "mnist", "n_samples": null, "n_test_samples": null,
            "download": true, "mirrors": mirrors, "sha256": sha256, "download_timeout_seconds": 10,
        }});
        MnistLoader::new(ClassConfig {
            sections,
            seed: 1,
            threads: 1,
            resume_from: None,
            declared: MnistLoader::config_keys(),
        })
        .unwrap()
    }

    fn hashes(files: &[(String, Vec<u8>)]) -> serde_json::Value {
        files
            .iter()
            .map(|(name, bytes)| (name.clone(), serde_json::json!(format!("{:x}", Sha256::digest(bytes)))))
            .collect()
    }

    #[test]
    fn missing_files_are_downloaded_verified_and_cached() {
        let files = files();
        let (address, requested) = serve(files.clone(), 8);
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("mnist");
        let mirrors = vec![format!("{address}/missing/"), format!("{address}/good/")];
        let mut first = loader(&data_dir, mirrors.clone(), hashes(&files));
        let recorder = RecordingServices::new(std::env::temp_dir());
        let summary = with_services(&recorder, |s| first.load_data(s)).unwrap();
        assert_eq!(summary.samples, 16);
        assert_eq!(summary.source_files.len(), 4);
        // Each file: the first mirror 404s, the second serves it.
        assert_eq!(requested.lock().unwrap().len(), 8);
        for (name, bytes) in &files {
            assert_eq!(&std::fs::read(data_dir.join(name)).unwrap(), bytes);
        }
        let dataset = with_services(&recorder, |s| first.extract_features_and_targets(s)).unwrap();
        assert_eq!(dataset.features.shape(), [16, 1, 28, 28]);
        assert_eq!(dataset.test_start, Some(12));

        // Cached: a second loader reads the files without any server.
        let mut second = loader(&data_dir, vec!["http://127.0.0.1:9/".into()], hashes(&files));
        assert_eq!(with_services(&recorder, |s| second.load_data(s)).unwrap().samples, 16);
    }

    #[test]
    fn a_download_with_the_wrong_sha256_is_refused_and_not_kept() {
        let files = files();
        let (address, _) = serve(files.clone(), 4);
        let dir = tempfile::tempdir().unwrap();
        let mut wrong = hashes(&files);
        wrong["train-images-idx3-ubyte.gz"] = serde_json::json!("0".repeat(64));
        let mut loader = loader(dir.path(), vec![format!("{address}/good/")], wrong);
        let error = with_services(&RecordingServices::new(std::env::temp_dir()), |s| loader.load_data(s)).unwrap_err();
        assert!(error.message.contains("could not download train-images-idx3-ubyte.gz"), "{}", error.message);
        assert!(error.message.contains(&format!("SHA-256 mismatch: expected {}", "0".repeat(64))), "{}", error.message);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "nothing is kept: {left:?}");
    }

    #[test]
    fn without_download_a_missing_file_says_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let sections = serde_json::json!({"data_loader": {
            "data_dir": dir.path(), "dataset": "fashion-mnist", "n_samples": null, "n_test_samples": null,
            "download": false, "mirrors": [], "download_timeout_seconds": 10,
        }});
        let mut loader = MnistLoader::new(ClassConfig {
            sections,
            seed: 1,
            threads: 1,
            resume_from: None,
            declared: MnistLoader::config_keys(),
        })
        .unwrap();
        let error = with_services(&RecordingServices::new(std::env::temp_dir()), |s| loader.load_data(s)).unwrap_err();
        assert!(
            error.message.contains("neither train-images-idx3-ubyte.gz nor train-images-idx3-ubyte is there"),
            "{}",
            error.message
        );
        assert!(error.message.contains("set data_loader.download: true"), "{}", error.message);
    }

    #[test]
    fn subsampling_is_seeded_and_mismatched_counts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files() {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let make = |seed| {
            let sections = serde_json::json!({"data_loader": {
                "data_dir": dir.path(), "dataset": "mnist", "n_samples": 5, "n_test_samples": 2,
                "download": false, "mirrors": [], "download_timeout_seconds": 10,
            }});
            MnistLoader::new(ClassConfig {
                sections,
                seed,
                threads: 1,
                resume_from: None,
                declared: MnistLoader::config_keys(),
            })
            .unwrap()
        };
        let recorder = RecordingServices::new(std::env::temp_dir());
        let load = |mut loader: MnistLoader| {
            with_services(&recorder, |s| {
                loader.load_data(s).unwrap();
                loader.extract_features_and_targets(s).unwrap()
            })
        };
        let (a, b, c) = (load(make(1)), load(make(1)), load(make(2)));
        assert_eq!(a.features.shape(), [7, 1, 28, 28]);
        assert_eq!(a.test_start, Some(5));
        assert_eq!(a.targets.view().as_i64(), b.targets.view().as_i64());
        assert_ne!(a.features.elements().as_bytes(), c.features.elements().as_bytes());

        let labels = gzip(&encode_idx(&[11], &[0; 11]));
        std::fs::write(dir.path().join("train-labels-idx1-ubyte.gz"), labels).unwrap();
        let mut loader = make(1);
        let error = with_services(&recorder, |s| loader.load_data(s)).unwrap_err();
        assert!(
            error.message.contains("holds 12 images but") && error.message.contains("holds 11 labels"),
            "{}",
            error.message
        );
    }
}
