//! Helpers: where the built binaries are, temporary projects on either store backend, running
//! the host, building the stand-alone fixture plugins, and tiny generated IDX data sets.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The store backend a test's projects record into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `provenance.db` in the project folder.
    Sqlite,
    /// A fresh database of the throwaway PostgreSQL cluster the tests share.
    Postgres,
}

thread_local! {
    static BACKEND: Cell<Backend> = const { Cell::new(Backend::Sqlite) };
}

/// Runs `body` with every project it makes recording into `backend` (each test runs on a
/// thread of its own).
pub fn on_backend(backend: Backend, body: impl FnOnce()) {
    BACKEND.with(|b| b.set(backend));
    body();
}

/// The backend of the running test.
pub fn backend() -> Backend {
    BACKEND.with(Cell::get)
}

/// Makes a test run on every store backend, as ripgrep's `rgtest!` runs a test under several
/// settings: `<name>::sqlite` and `<name>::postgres`.
macro_rules! on_every_store {
    ($(#[doc = $doc:literal])* fn $name:ident() $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body() $body

            #[test]
            fn sqlite() {
                crate::support::on_backend(crate::support::Backend::Sqlite, body)
            }

            #[test]
            fn postgres() {
                crate::support::on_backend(crate::support::Backend::Postgres, body)
            }
        }
    };
}
pub(crate) use on_every_store;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the workspace").to_owned()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

fn newest_source(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let modified = if path.is_dir() {
            newest_source(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).unwrap_or(newest)
        };
        newest = newest.max(modified);
    }
    newest
}

/// A built artifact of the workspace; refuses one older than the sources it comes from, so a
/// forgotten `cargo build --workspace` fails loudly instead of testing yesterday's binary.
fn built(name: &str, sources: &[&str]) -> PathBuf {
    let path = target_dir().join("debug").join(name);
    assert!(path.is_file(), "{} is missing: run `cargo build --workspace` (scripts/test.sh does)", path.display());
    let built_at = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap();
    for sources in sources.iter().chain(&["plugin-sdk/src"]) {
        assert!(
            newest_source(&workspace_root().join(sources)) <= built_at,
            "{} is older than {sources}: run `cargo build --workspace` (scripts/test.sh does)",
            path.display()
        );
    }
    path
}

/// Every file under `dir`, at any depth (none when it cannot be read).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            files.extend(files_under(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}

pub fn host_binary() -> PathBuf {
    built("host", &["host/src"])
}

/// A plugin library built from the workspace crate `crate_name`.
pub fn library(crate_name: &str) -> PathBuf {
    let source = ["plugins", "tests/fixtures"]
        .iter()
        .map(|dir| format!("{dir}/{crate_name}/src"))
        .find(|dir| workspace_root().join(dir).is_dir())
        .unwrap_or_else(|| panic!("no crate {crate_name} in plugins/ or tests/fixtures/"));
    built(&format!("lib{}.so", crate_name.replace('-', "_")), &[&source])
}

/// A temporary project: `config/`, `plugins/`, a place for runs, and its store on the test's
/// backend.
pub struct Project {
    pub dir: tempfile::TempDir,
    /// The store's URL, when it is not the project's `provenance.db`.
    store: Option<String>,
}

impl Project {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
        let store = match backend() {
            Backend::Sqlite => None,
            Backend::Postgres => Some(store::testing::Cluster::shared().create_database().expect("a test database")),
        };
        Project { dir, store }
    }

    /// The project's store, as `--db` takes it.
    pub fn store_locator(&self) -> String {
        self.store.clone().unwrap_or_else(|| self.path().join("provenance.db").display().to_string())
    }

    /// Checks the store is intact: SQLite's own integrity check of the file, or for a server
    /// (whose transactions cannot leave it torn) that it answers with its counts.
    pub fn assert_store_intact(&self) {
        match &self.store {
            None => assert_eq!(store::sqlite_integrity_check(&self.path().join("provenance.db")).unwrap(), "ok"),
            Some(_) => {
                let info = self.host(&["store", "info", "--json"]).success().json();
                assert_eq!(info["backend"], "postgres", "{info}");
            }
        }
    }

    /// `host ARGS` in the project folder on the project's store, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(host_binary());
        command
            .args(args)
            .current_dir(self.path())
            .env_remove("HOST_LOG")
            .env_remove("HOST_CLASS_MAPPING")
            .env_remove("HOST_PLUGINS_DIR")
            // Digests and manifests are cached in the build folder, not the user's own cache.
            .env("XDG_CACHE_HOME", target_dir().join("test-cache"))
            .env("RUST_BACKTRACE", "0");
        match &self.store {
            Some(url) => command.env("HOST_DB", url),
            None => command.env_remove("HOST_DB"),
        };
        // Slurm's commands reach the tests' cluster once a test started it.
        match SLURM.get().and_then(|started| started.as_ref().ok()) {
            Some(dir) => command.env("SLURM_CONF", dir.join("slurm.conf")),
            None => command.env_remove("SLURM_CONF"),
        };
        command
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn mapping(&self, text: &str) -> PathBuf {
        self.write("config/class_mapping_config.yaml", text)
    }

    /// Copies `library` into plugins/ under `name`, by write-then-rename as users should.
    pub fn drop_plugin(&self, library: &Path, name: &str) -> PathBuf {
        let target = self.path().join("plugins").join(name);
        let staging = self.path().join("plugins").join(format!(".{name}.tmp"));
        std::fs::copy(library, &staging).unwrap();
        std::fs::rename(&staging, &target).unwrap();
        target
    }

    /// Runs the host in the project folder.
    pub fn host(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run host"))
    }
}

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "host failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// Asserts a clean failure (exit 1, no panic, no abort) and returns stderr.
    #[track_caller]
    pub fn failure(&self) -> &str {
        assert_eq!(self.code, Some(1), "expected exit 1\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        for forbidden in ["panicked at", "RUST_BACKTRACE", "Attempted to panic", "abort"] {
            assert!(!self.stderr.contains(forbidden), "stderr shows `{forbidden}`:\n{}", self.stderr);
        }
        &self.stderr
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

/// Builds a stand-alone fixture crate under tests/fixtures with the given environment and
/// features, and copies the library out.
pub fn build_fixture(crate_dir: &str, env: &[(&str, &str)], features: &[&str], copy_to: &Path) -> PathBuf {
    let manifest = workspace_root().join("tests/fixtures").join(crate_dir).join("Cargo.toml");
    let built = build_crate(&manifest, env, features).join(format!("lib{}.so", crate_dir.replace('-', "_")));
    std::fs::copy(&built, copy_to).unwrap();
    copy_to.to_owned()
}

/// Builds a crate outside the workspace in target/fixtures (builds share that folder, so they
/// run one at a time) and returns the folder its debug libraries are in.
pub fn build_crate(manifest: &Path, env: &[(&str, &str)], features: &[&str]) -> PathBuf {
    let features = features.join(",");
    let args: &[&str] = if features.is_empty() { &[] } else { &["--features", &features] };
    build_crate_with(manifest, env, args)
}

/// [`build_crate`] with other arguments to `cargo build`.
pub fn build_crate_with(manifest: &Path, env: &[(&str, &str)], args: &[&str]) -> PathBuf {
    static BUILD: OnceLock<Mutex<()>> = OnceLock::new();
    let _guard = BUILD.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let fixture_target = target_dir().join("fixtures");
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(["build", "--quiet", "--manifest-path"]).arg(manifest).arg("--target-dir").arg(&fixture_target);
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run cargo");
    assert!(
        output.status.success(),
        "building {} failed:\n{}",
        manifest.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    fixture_target.join("debug")
}

/// Runs `cargo test` on a crate outside the workspace in target/fixtures; returns its output.
pub fn test_crate(manifest: &Path, args: &[&str]) -> String {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--quiet", "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir().join("fixtures"))
        .args(args)
        .output()
        .expect("run cargo");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "cargo test of {} failed:\n{stdout}\n{}",
        manifest.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Writes a tiny MNIST-format data set (raw IDX) whose classes are learnable: each class
/// lights up its own band of rows, plus seeded noise.
pub fn write_tiny_mnist(dir: &Path, train: usize, test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 60) as u8
    };
    let mut write_split = |prefix: &str, count: usize| {
        let mut images = Vec::with_capacity(count * 784);
        let mut labels = Vec::with_capacity(count);
        for i in 0..count {
            let label = (i % 10) as u8;
            for row in 0..28 {
                for _ in 0..28 {
                    let lit = row / 3 == label as usize;
                    images.push(if lit { 200 + noise() / 2 } else { noise() });
                }
            }
            labels.push(label);
        }
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), idx(&[count, 28, 28], &images)).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), idx(&[count], &labels)).unwrap();
    };
    write_split("train", train);
    write_split("t10k", test);
}

pub fn idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// A project whose `config/long.yaml` trains MNISTMLP on a tiny set for practically ever, for
/// tests that interrupt, kill or watch a live run.
pub fn endless_training_project(batch_size: usize) -> Project {
    let project = Project::new();
    write_tiny_mnist(&project.path().join("data"), 200, 20);
    let path = library("mnist-plugin").display().to_string();
    project.mapping(&format!("Loader:\n  MNISTLoader: {path}\nModel:\n  MNISTMLP: {path}\n"));
    project.write(
        "config/long.yaml",
        &format!(
            "experiment_name: long\nthreads: 1\nplugins: {{data_loader: MNISTLoader, model: MNISTMLP}}\n\
             data_loader: {{data_dir: data}}\ntraining: {{epochs: 100000, batch_size: {batch_size}}}\n"
        ),
    );
    project
}

/// Starts the host in the project without waiting for it.
pub fn spawn_host(project: &Project, args: &[&str], stdout: std::process::Stdio) -> std::process::Child {
    project.command(args).stdout(stdout).stderr(std::process::Stdio::null()).spawn().expect("start host")
}

/// Waits until the newest run in the project's store is running and returns its id.
pub fn wait_until_running(project: &Project) -> String {
    let started = std::time::Instant::now();
    loop {
        let runs = project.host(&["runs", "list", "--json"]).success().json();
        if runs[0]["status"] == "running" {
            return runs[0]["run_id"].as_str().unwrap().to_owned();
        }
        assert!(started.elapsed().as_secs() < 60, "the run never started: {runs}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

static SLURM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
static SLURM_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

extern "C" fn stop_slurm() {
    if let Some(dir) = SLURM_DIR.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = Command::new(workspace_root().join("scripts/slurm-local.sh")).arg("stop").arg(&dir).output();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The one-node Slurm cluster the tests share, started on first use by the project's own
/// script (scripts/slurm-local.sh, eight CPUs so short jobs run side by side) in a fresh
/// folder, and stopped and removed at exit. Returns the folder (its `slurm.conf`); every
/// `Project::command` after this points Slurm's commands at it.
pub fn slurm_cluster() -> PathBuf {
    let started = SLURM.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("host-slurm-{}", std::process::id()));
        let output = Command::new(workspace_root().join("scripts/slurm-local.sh"))
            .arg("start")
            .arg(&dir)
            .env("SLURM_LOCAL_CPUS", "8")
            .output()
            .map_err(|e| format!("cannot run scripts/slurm-local.sh: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "scripts/slurm-local.sh start failed (scripts/setup.sh installs Slurm):\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        *SLURM_DIR.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir.clone());
        // SAFETY: registers a plain function to run at exit.
        unsafe { libc::atexit(stop_slurm) };
        Ok(dir)
    });
    match started {
        Ok(dir) => dir.clone(),
        Err(error) => panic!("cannot start the test Slurm cluster: {error}"),
    }
}

/// A Slurm command (`squeue`, `scontrol`, `scancel`) against the tests' cluster; its stdout.
#[track_caller]
pub fn slurm(program: &str, args: &[&str]) -> String {
    let conf = slurm_cluster().join("slurm.conf");
    let output = Command::new(program).args(args).env("SLURM_CONF", conf).output().expect("run a Slurm command");
    assert!(output.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}
