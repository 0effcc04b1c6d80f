//! `bench store`: the provenance store's figures.
//!
//! - SHA-256 throughput: sha2 on one core, the host's chunked digest on every core, the host's
//!   file hashing, and `openssl dgst -sha256` on the same file as this CPU's reference.
//! - Provenance overhead: the wall time `host run --force config/reference_mlp.yaml` spends
//!   hashing and writing the store, as the host measures it, against the run's wall time.
//! - Queries on a store of 100,000 runs: `host runs list`, `host runs show`, `host lineage RUN`
//!   and `host lineage SHA256`, each a whole process, median of N. SQLite: generated once into
//!   target/, then reused; PostgreSQL: generated into a throwaway cluster each time.
//! - Writers: 32 processes recording runs into one store at once (a run's writes: its start,
//!   five stage records, its end), runs per second, on each backend.
//!
//! `--backend sqlite|postgres` picks one backend for `provenance`, `queries` and `writers`;
//! without it they measure both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use plugin_sdk::{ClassKind, FitSummary, TaskKind};
use record::RunOwner;
use record::{
    ArtifactKind, DataEntity, DataRecord, Environment, FileArtifact, GitState, PluginUse, RunRecord, RunStatus,
    SplitRecord, StageName, StageRecord, StageStatus, Transform,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::{Locator, OpenOptions};

use store::testing::{Cluster, ClusterOptions};

use crate::{median, sibling, timed};

/// Which store backends a benchmark measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backends {
    Sqlite,
    Postgres,
    Both,
}

impl Backends {
    pub fn parse(text: Option<&str>) -> anyhow::Result<Self> {
        match text {
            None | Some("both") => Ok(Backends::Both),
            Some("sqlite") => Ok(Backends::Sqlite),
            Some("postgres") => Ok(Backends::Postgres),
            Some(other) => bail!("unknown backend {other}; use sqlite, postgres or both"),
        }
    }

    fn sqlite(self) -> bool {
        self != Backends::Postgres
    }

    fn postgres(self) -> bool {
        self != Backends::Sqlite
    }
}

/// A throwaway PostgreSQL cluster for one benchmark.
fn cluster() -> anyhow::Result<Cluster> {
    Cluster::start(ClusterOptions { max_connections: 300, ..ClusterOptions::default() })
}

pub const STORE_RUNS: usize = 100_000;
/// Runs per experiment; they share raw files, dataset and splits, as a sweep's trials do.
const RUNS_PER_GROUP: usize = 100;

fn gb_per_second(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e9
}

pub fn sha256(runs: usize) -> anyhow::Result<()> {
    const SIZE: usize = 512 << 20;
    let data: Vec<u8> = (0..SIZE).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let time = |work: &dyn Fn()| -> f64 {
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let started = Instant::now();
                work();
                started.elapsed().as_secs_f64()
            })
            .collect();
        median(&mut times)
    };
    let one_core = time(&|| {
        std::hint::black_box(Sha256::digest(&data));
    });
    let every_core = time(&|| {
        std::hint::black_box(host::hashing::chunked_sha256(&data));
    });
    let file = std::env::temp_dir().join(format!("bench-sha256-{}", std::process::id()));
    std::fs::write(&file, &data)?;
    let from_file = time(&|| {
        std::hint::black_box(host::hashing::sha256_file(&file).expect("hash the file"));
    });
    let openssl = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    let reference = openssl.then(|| {
        time(&|| {
            let status = Command::new("openssl").args(["dgst", "-sha256"]).arg(&file).output().expect("openssl");
            assert!(status.status.success());
        })
    });
    let _ = std::fs::remove_file(&file);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let sha_ni = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default().contains(" sha_ni");
    println!("SHA-256 over 512 MiB, median of {runs} (CPU SHA extensions: {}):", if sha_ni { "yes" } else { "no" });
    println!("  {:<44} {:.2} GB/s", "sha2, one core", gb_per_second(SIZE, one_core));
    println!("  {:<44} {:.2} GB/s", format!("host chunked digest, {cores} cores"), gb_per_second(SIZE, every_core));
    println!("  {:<44} {:.2} GB/s", "host file hashing (page cache), one core", gb_per_second(SIZE, from_file));
    match reference {
        Some(seconds) => println!(
            "  {:<44} {:.2} GB/s  (this CPU's reference; process start included)",
            "openssl dgst -sha256, same file",
            gb_per_second(SIZE, seconds)
        ),
        None => println!("  openssl not installed: no reference figure"),
    }
    Ok(())
}

pub fn overhead(runs: usize, backends: Backends) -> anyhow::Result<()> {
    if backends.sqlite() {
        let scratch = std::env::temp_dir().join(format!("bench-provenance-{}", std::process::id()));
        let db = scratch.join("provenance.db").display().to_string();
        overhead_on(runs, "SQLite", &db, &scratch)?;
    }
    if backends.postgres() {
        let cluster = cluster()?;
        let scratch = std::env::temp_dir().join(format!("bench-provenance-pg-{}", std::process::id()));
        overhead_on(runs, "PostgreSQL (local throwaway cluster)", &cluster.create_database()?, &scratch)?;
    }
    Ok(())
}

fn overhead_on(runs: usize, backend: &str, db: &str, scratch: &Path) -> anyhow::Result<()> {
    let (mut walls, mut hashing, mut waited, mut writes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut shares, mut shares_all_writes) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        // The whole process's wall time: the plugin libraries are hashed before the run starts.
        let (wall, stdout) = timed(
            Command::new(sibling("host")?)
                .args(["-q", "run", "config/reference_mlp.yaml", "--json", "--force", "--output-dir"])
                .arg(scratch)
                .arg("--db")
                .arg(db),
        )?;
        let summary: Value = serde_json::from_str(&stdout)?;
        let provenance = &summary["provenance"];
        let hash = provenance["hashing_seconds"].as_f64().context("no hashing time")?;
        let wait = provenance["store_seconds"].as_f64().context("no store time")?;
        let write = provenance["store_write_seconds"].as_f64().context("no store write time")?;
        eprintln!(
            "run {run}/{runs}: {wall:.2}s, hashing {hash:.3}s, waited for the store {wait:.3}s, store writes {write:.3}s"
        );
        shares.push((hash + wait) / wall);
        shares_all_writes.push((hash + write) / wall);
        walls.push(wall);
        hashing.push(hash);
        waited.push(wait);
        writes.push(write);
    }
    let _ = std::fs::remove_dir_all(scratch);
    println!(
        "provenance overhead on {backend}, reference workload (host run --force config/reference_mlp.yaml), medians of {runs}:"
    );
    let walls_median = median(&mut walls);
    println!("  {:<32} {:.3} s", "process wall time", walls_median);
    println!(
        "  {:<32} {:.3} s  (raw files and plugin libraries from the digest cache once hashed)",
        "hashing (wall time)",
        median(&mut hashing)
    );
    println!(
        "  {:<32} {:.3} s  (the run's own thread; the writer thread makes the writes meanwhile)",
        "waiting for the store",
        median(&mut waited)
    );
    println!("  {:<32} {:.3} s  (every write's wall time, on whatever thread)", "store writes", median(&mut writes));
    println!(
        "  {:<32} {:.2} %  (hashing and waiting; target at most 1 %)",
        "share of the wall time",
        median(&mut shares) * 100.0
    );
    println!(
        "  {:<32} {:.2} %  (hashing and every write, as if the run waited for each)",
        "share, counting every write",
        median(&mut shares_all_writes) * 100.0
    );
    Ok(())
}

fn digest(text: &str) -> String {
    host::hashing::sha256_bytes(text.as_bytes())
}

/// One synthetic but complete run record: plugins, raw files, transforms, stages, artifacts,
/// per-epoch and final metrics, as `host run` writes them.
pub fn synthetic_run(index: usize) -> RunRecord {
    let group = index / RUNS_PER_GROUP;
    let run_id = format!("20260101-{:06}-{:06x}", index / 60 % 1_000_000, index);
    let started = format!(
        "2026-01-{:02}T{:02}:{:02}:{:02}Z",
        1 + index / 86_400 % 28,
        index / 3600 % 24,
        index / 60 % 60,
        index % 60
    );
    let output_dir = PathBuf::from(format!("/bench/runs/{run_id}"));
    let plugin = |kind: ClassKind, class: &str| PluginUse {
        kind,
        class: class.into(),
        plugin_name: "mnist-plugin".into(),
        plugin_version: "0.1.0".into(),
        sdk_version: "0.1.0".into(),
        library: PathBuf::from("/bench/plugins/libmnist_plugin.so"),
        sha256: digest(&format!("plugin-build-{}", group % 10)),
        size: 50_000_000,
    };
    let file = |kind: &str, path: String, seed: &str| FileArtifact {
        kind: ArtifactKind::parse(kind),
        path: PathBuf::from(path),
        sha256: digest(seed),
        size: 1000,
    };
    let raw = ["train-images", "train-labels", "t10k-images", "t10k-labels"];
    let source_files =
        raw.iter().map(|r| file(r, format!("/bench/data/{group}/{r}.gz"), &format!("raw-{group}-{r}"))).collect();
    let dataset = digest(&format!("dataset-{group}"));
    let entity = |label: &str, seed: String| DataEntity { label: label.into(), sha256: digest(&seed) };
    let names = ["train", "validation", "test"];
    let raw_splits: Vec<DataEntity> =
        names.iter().map(|n| entity(&format!("{n} (raw)"), format!("raw-{group}-{n}"))).collect();
    let scaled: Vec<DataEntity> =
        names.iter().map(|n| entity(&format!("{n} (scaled)"), format!("scaled-{group}-{n}"))).collect();
    let transforms = vec![
        Transform {
            name: "split".into(),
            parameters: json!({"strategy": "predefined_test", "validation_fraction": 0.1, "seed": 42}),
            inputs: vec![DataEntity { label: "dataset".into(), sha256: dataset.clone() }],
            outputs: raw_splits.clone(),
            seconds: 0.01,
        },
        Transform {
            name: "scale".into(),
            parameters: json!({"scale": 1.0 / 255.0}),
            inputs: raw_splits,
            outputs: scaled.clone(),
            seconds: 0.02,
        },
    ];
    let splits = names
        .iter()
        .zip(&scaled)
        .map(|(n, s)| (n.to_string(), SplitRecord { rows: 1000, sha256: s.sha256.clone() }))
        .collect();
    let own = |name: &str| format!("run-{index}-{name}");
    let artifacts = [
        ("model", "model/model.safetensors"),
        ("model", "model/model.json"),
        ("checkpoint", "checkpoints/best.safetensors"),
        ("history", "history.csv"),
        ("lineage", "lineage.json"),
        ("metrics", "metrics.json"),
        ("predictions", "predictions.csv"),
        ("report", "reports/index.html"),
        ("report", "reports/data.html"),
        ("report", "reports/training.html"),
        ("report", "reports/evaluation.html"),
    ]
    .iter()
    .map(|(kind, name)| file(kind, output_dir.join(name).display().to_string(), &own(name)))
    .collect();
    let accuracy = 0.85 + (index % 1000) as f64 / 10_000.0;
    let history: BTreeMap<u64, BTreeMap<String, f64>> = (1..=5)
        .map(|epoch| {
            let values = [
                ("loss", 1.0 / epoch as f64),
                ("accuracy", accuracy - 0.01 * (5 - epoch) as f64),
                ("val_loss", 1.1 / epoch as f64),
                ("val_accuracy", accuracy),
            ];
            (epoch, values.iter().map(|(k, v)| (k.to_string(), *v)).collect())
        })
        .collect();
    let confusion: Vec<Vec<u64>> = (0..10).map(|r| (0..10).map(|c| if r == c { 90 } else { 1 }).collect()).collect();
    let learning_rate = [0.1, 0.01, 0.001, 0.0001][index % 4];
    let config = json!({
        "experiment_name": format!("sweep-{group}"),
        "seed": 42,
        "threads": 2,
        "plugins": {"data_loader": "MNISTLoader", "model": "MNISTMLP", "report_generator": "MNISTReportGenerator"},
        "data_loader": {"data_dir": format!("/bench/data/{group}"), "dataset": "mnist"},
        "model": {"hidden_layers": [128 << (index % 3)], "activation": "relu", "dropout": 0.1},
        "training": {"epochs": 5, "batch_size": 64, "learning_rate": learning_rate, "optimizer": "adam"},
    });
    let stage = |name: StageName| StageRecord {
        name,
        status: StageStatus::Completed,
        seconds: 0.5,
        parameters: json!({}),
        cache_key: Some(digest(&format!("{name}-{index}"))),
        reused_from: None,
    };
    RunRecord {
        record_version: record::RECORD_VERSION,
        run_id: run_id.clone(),
        experiment_name: format!("sweep-{group}"),
        status: RunStatus::Completed,
        config_file: PathBuf::from("config/sweep.yaml"),
        config_sha256: digest(&config.to_string()),
        config,
        working_dir: PathBuf::from("/bench"),
        model_from: None,
        replay_of: None,
        trial: None,
        scheduler: None,
        previous_attempt: None,
        seed: 42,
        threads: 2,
        output_dir,
        started_at: started.clone(),
        finished_at: Some(started),
        seconds: 3.0,
        environment: Environment {
            os: "Debian".into(),
            arch: "x86_64".into(),
            cpu: "bench".into(),
            cores: 2,
            threads: 2,
            rustc: "rustc".into(),
            ..Environment::default()
        },
        git: GitState { commit: Some(digest(&format!("commit-{group}"))), dirty: Some(false) },
        owner: RunOwner { hostname: "bench".into(), pid: 1, ..RunOwner::default() },
        host_version: "0.1.0".into(),
        plugins: vec![
            plugin(ClassKind::Loader, "MNISTLoader"),
            plugin(ClassKind::Model, "MNISTMLP"),
            plugin(ClassKind::ReportGenerator, "MNISTReportGenerator"),
        ],
        stages: StageName::ALL.iter().copied().map(stage).collect(),
        source_files,
        cached_splits: BTreeMap::new(),
        data: DataRecord {
            description: "synthetic".into(),
            dataset_sha256: dataset,
            digest_scheme: "xxh3-128".into(),
            task: Some(TaskKind::Classification),
            label_names: (0..10).map(|d| d.to_string()).collect(),
            sample_shape: vec![784],
            splits,
            transforms,
            metadata: serde_json::Value::Null,
        },
        fit: Some(FitSummary {
            epochs_completed: 5,
            best_epoch: Some(5),
            stopped_early: false,
            device: "cpu".into(),
            details: json!({}),
        }),
        history,
        metrics: Some(
            json!({"test": {"accuracy": accuracy, "log_loss": 0.3, "macro_average": {"precision": accuracy, "recall": accuracy, "f1": accuracy}, "confusion_matrix": confusion}}),
        ),
        artifacts,
        failed_stage: None,
        error: None,
        provenance: None,
    }
}

/// Writes the 100,000 synthetic runs into `store`, a thousand per transaction.
fn generate(store: &dyn store::Store, name: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    const BATCH: usize = 1000;
    for batch in 0..STORE_RUNS / BATCH {
        let runs: Vec<_> = (batch * BATCH..(batch + 1) * BATCH).map(synthetic_run).collect();
        store.import_runs(&runs)?;
        if batch % 10 == 9 {
            eprintln!(
                "{name}: generated {} of {STORE_RUNS} runs in {:.0} s",
                (batch + 1) * BATCH,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// The 100,000-run SQLite store in target/, generated on first use.
fn generated_store() -> anyhow::Result<PathBuf> {
    let dir = sibling("host")?.parent().and_then(Path::parent).map(Path::to_owned).context("no target folder")?;
    let path = dir.join(format!("bench-store-{STORE_RUNS}.db"));
    let done = dir.join(format!("bench-store-{STORE_RUNS}.done"));
    if path.is_file() && done.is_file() {
        return Ok(path);
    }
    for stale in [path.clone(), path.with_extension("db-wal"), path.with_extension("db-shm")] {
        let _ = std::fs::remove_file(stale);
    }
    let started = Instant::now();
    generate(&*store::open(&Locator::Sqlite(path.clone()), &OpenOptions::default())?, "SQLite")?;
    std::fs::write(&done, "")?;
    let size = std::fs::metadata(&path)?.len() as f64 / 1e9;
    eprintln!("generated {} ({size:.1} GB) in {:.0} s", path.display(), started.elapsed().as_secs_f64());
    Ok(path)
}

/// The generated 100,000-run stores, each as (backend, locator), and the PostgreSQL server
/// that serves one (stopped when this is dropped).
pub struct Generated {
    pub stores: Vec<(&'static str, String)>,
    _cluster: Option<Cluster>,
}

/// The generated 100,000-run stores of `backends`: SQLite's in target/, PostgreSQL's in a
/// cluster kept in target/, each generated on first use.
pub fn generated_stores(backends: Backends) -> anyhow::Result<Generated> {
    let mut stores = Vec::new();
    let mut kept = None;
    if backends.sqlite() {
        stores.push(("sqlite", generated_store()?.display().to_string()));
    }
    if backends.postgres() {
        // A cluster kept in target/ with the store generated once, as the SQLite one is.
        let dir = sibling("host")?.parent().and_then(Path::parent).map(Path::to_owned).context("no target folder")?;
        let cluster = Cluster::kept_in(&dir.join("bench-postgres"), ClusterOptions::default())?;
        let name = format!("bench_{STORE_RUNS}");
        let (url, created) = cluster.database(&name)?;
        let done = dir.join(format!("bench-postgres-{STORE_RUNS}.done"));
        if created || !done.is_file() {
            if !created {
                cluster.execute("postgres", &format!("DROP DATABASE {name}"))?;
                cluster.database(&name)?;
            }
            let started = Instant::now();
            generate(&*store::open(&Locator::parse(&url)?, &OpenOptions::default())?, "PostgreSQL")?;
            eprintln!("generated {STORE_RUNS} runs into PostgreSQL in {:.0} s", started.elapsed().as_secs_f64());
            // The planner's statistics, as autovacuum would gather them on a long-lived server.
            cluster.execute(&name, "ANALYZE")?;
            std::fs::write(&done, "")?;
        }
        stores.push(("postgres", url));
        kept = Some(cluster);
    }
    Ok(Generated { stores, _cluster: kept })
}

pub fn queries(runs: usize, backends: Backends) -> anyhow::Result<()> {
    let generated = generated_stores(backends)?;
    for (backend, db) in &generated.stores {
        queries_on(runs, db, if *backend == "sqlite" { "target ms 100" } else { "target ms 50" })?;
    }
    Ok(())
}

fn queries_on(runs: usize, db: &str, target: &str) -> anyhow::Result<()> {
    let host = sibling("host")?;
    let middle = synthetic_run(STORE_RUNS / 2);
    let run_id = middle.run_id.clone();
    let raw_file = middle.source_files[0].sha256.clone();
    let model = middle.artifacts[0].sha256.clone();
    let experiment = middle.experiment_name.clone();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("runs list", vec!["runs".into(), "list".into()]),
        ("runs list --experiment", vec!["runs".into(), "list".into(), "--experiment".into(), experiment]),
        ("runs show RUN", vec!["runs".into(), "show".into(), run_id.clone(), "--json".into()]),
        ("lineage RUN", vec!["lineage".into(), run_id]),
        ("lineage MODEL_SHA256", vec!["lineage".into(), model]),
        ("lineage RAW_FILE_SHA256 (100 runs)", vec!["lineage".into(), raw_file]),
    ];
    println!("queries on a store of {STORE_RUNS} runs ({db}), whole `host` processes, medians of {runs}:");
    for (name, args) in cases {
        let mut times = Vec::new();
        let mut lines = 0;
        for _ in 0..runs {
            let (seconds, stdout) = timed(Command::new(&host).args(&args).arg("--db").arg(db))?;
            lines = stdout.lines().count();
            times.push(seconds);
        }
        if lines == 0 {
            bail!("host {} printed nothing", args.join(" "));
        }
        let target = target.trim_start_matches("target ms ");
        println!(
            "  host {name:<36} {:>6.1} ms  ({lines} lines; target under {target} ms)",
            median(&mut times) * 1000.0
        );
    }
    Ok(())
}

/// Writers per store in the writers benchmark, and runs each writes.
const WRITERS: usize = 32;
const RUNS_PER_WRITER: usize = 20;

/// `bench writer LOCATOR FIRST COUNT` (run by `writers`): records runs FIRST.. as a run records
/// itself: its start, a record after each of five stages, its end.
pub fn writer(locator: &str, first: usize, count: usize) -> anyhow::Result<()> {
    let store = store::open(&Locator::parse(locator)?, &OpenOptions::default())?;
    for index in first..first + count {
        let done = synthetic_run(index);
        let mut record = RunRecord {
            status: RunStatus::Running,
            stages: Vec::new(),
            artifacts: Vec::new(),
            history: BTreeMap::new(),
            metrics: None,
            finished_at: None,
            ..done.clone()
        };
        store.begin_run(&record)?;
        for stage in &done.stages {
            record.stages.push(stage.clone());
            store.record(&record)?;
        }
        store.record(&done)?;
    }
    Ok(())
}

pub fn writers(backends: Backends) -> anyhow::Result<()> {
    let bench = std::env::current_exe()?;
    let measure = |name: &str, locator: &str| -> anyhow::Result<()> {
        let started = Instant::now();
        let children: Vec<_> = (0..WRITERS)
            .map(|w| {
                Command::new(&bench)
                    .args(["writer", locator, &(w * RUNS_PER_WRITER).to_string(), &RUNS_PER_WRITER.to_string()])
                    .stderr(std::process::Stdio::piped())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        for child in children {
            let output = child.wait_with_output()?;
            if !output.status.success() {
                bail!("a writer failed: {}", String::from_utf8_lossy(&output.stderr));
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let runs = WRITERS * RUNS_PER_WRITER;
        let recorded = store::open(&Locator::parse(locator)?, &OpenOptions::default())?.summary()?;
        let completed = recorded.runs_by_status.get("completed").copied().unwrap_or(0);
        if completed != runs as i64 {
            bail!("{name}: {completed} of {runs} runs recorded");
        }
        println!(
            "  {name:<36} {runs} runs in {seconds:.1} s: {:.0} runs/s ({:.1} ms a run, 7 writes each)",
            runs as f64 / seconds,
            seconds * 1000.0 / runs as f64 * WRITERS as f64
        );
        Ok(())
    };
    println!("{WRITERS} processes recording {RUNS_PER_WRITER} runs each into one new store at once:");
    if backends.sqlite() {
        let scratch = std::env::temp_dir().join(format!("bench-writers-{}", std::process::id()));
        std::fs::create_dir_all(&scratch)?;
        let result = measure("SQLite (WAL)", &scratch.join("store.db").display().to_string());
        let _ = std::fs::remove_dir_all(&scratch);
        result?;
    }
    if backends.postgres() {
        let cluster = cluster()?;
        measure("PostgreSQL (local throwaway cluster)", &cluster.create_database()?)?;
    }
    Ok(())
}
