//! `bench slurm`: sweeps through Slurm against the local executor, on a one-node cluster that
//! scripts/slurm-local.sh starts in `target/bench-slurm` (this machine's CPUs; needs root and
//! the packages scripts/setup.sh installs) and stops at the end.
//!
//! - 200 short trials (SoftmaxRegression, the plain-Rust model, one epoch on the 8,000 MNIST
//!   digits) through each executor, two at a time: trials per minute, and the overhead per
//!   trial (wall time times the slots, divided by the trials, less the mean run time).
//! - 1,000 trials submitted held (`--hold`, so they stay queued), followed by `host sweep
//!   watch` for a minute: its resident memory and CPU time, sampled every 5 s.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::{median, sibling};

/// The cluster, stopped when dropped.
struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    fn start() -> anyhow::Result<Self> {
        let dir = std::path::absolute("target/bench-slurm")?;
        let output = Command::new("scripts/slurm-local.sh").arg("start").arg(&dir).output()?;
        if !output.status.success() {
            bail!("scripts/slurm-local.sh start failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(Cluster { dir })
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("scripts/slurm-local.sh").arg("stop").arg(&self.dir).output();
    }
}

/// A scratch project sweeping `trials` random learning rates; `executor` is its executor section.
fn project(name: &str, trials: usize, executor: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("bench-slurm-{name}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("config"))?;
    let release = sibling("host")?.parent().context("release folder")?.to_owned();
    let data = std::path::absolute("data/mnist")?;
    std::fs::write(
        dir.join("config/class_mapping_config.yaml"),
        format!(
            "Loader:\n  MNISTLoader: {}\nModel:\n  SoftmaxRegression: {}\n",
            release.join("libmnist_plugin.so").display(),
            release.join("liblinear_plugin.so").display()
        ),
    )?;
    std::fs::write(
        dir.join("config/sweep.yaml"),
        format!(
            "experiment_name: bench_{name}\nplugins: {{data_loader: MNISTLoader, model: SoftmaxRegression}}\n\
             data_loader: {{data_dir: {}, dataset: mnist}}\ntraining: {{epochs: 1, batch_size: 64}}\n\
             reporting: {{enabled: false}}\n{executor}\
             sweep:\n  method: random\n  trials: {trials}\n  seed: 1\n  metric: validation.accuracy\n  direction: maximize\n\
             \x20 parameters:\n    training.learning_rate: {{min: 0.01, max: 0.5, log: true}}\n",
            data.display()
        ),
    )?;
    Ok(dir)
}

fn host(dir: &Path, conf: &Path, args: &[&str]) -> anyhow::Result<Command> {
    let mut command = Command::new(sibling("host")?);
    command.args(args).current_dir(dir).env("SLURM_CONF", conf).env_remove("HOST_DB");
    Ok(command)
}

/// Runs the 200-trial sweep; (wall seconds, mean run seconds, completed trials).
fn sweep_200(dir: &Path, conf: &Path, args: &[&str]) -> anyhow::Result<(f64, f64, usize)> {
    let mut all = vec!["-q", "sweep", "config/sweep.yaml", "--json"];
    all.extend(args);
    let started = Instant::now();
    let output = host(dir, conf, &all)?.output()?;
    let wall = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!("host sweep {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let row: Value = serde_json::from_slice(&output.stdout)?;
    let store =
        store::open(&store::Locator::parse(&dir.join("provenance.db").display().to_string())?, &Default::default())?;
    let mut seconds = Vec::new();
    for trial in row["trials"].as_array().into_iter().flatten().filter(|t| t["status"] == "completed") {
        seconds.push(store.run_record(trial["run_id"].as_str().unwrap_or_default())?.seconds);
    }
    let mean = seconds.iter().sum::<f64>() / seconds.len().max(1) as f64;
    Ok((wall, mean, seconds.len()))
}

/// Resident memory (KiB) and CPU seconds of process `pid`.
fn usage(pid: u32) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((rss, ticks / per_second))
}

pub fn slurm(runs: usize) -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let conf = cluster.conf();
    let cpu = crate::cpu_model();
    let (mut local, mut on_slurm) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let dir = project("local", 200, "")?;
        let measured = sweep_200(&dir, &conf, &["--jobs", "2"])?;
        let _ = std::fs::remove_dir_all(&dir);
        local.push(measured);
        let dir = project("slurm", 200, "executor: {kind: slurm, cpus_per_task: 1, poll_seconds: 1}\n")?;
        let measured = sweep_200(&dir, &conf, &[])?;
        let _ = std::fs::remove_dir_all(&dir);
        on_slurm.push(measured);
        eprintln!("run {run}/{runs}: local {:.1} s, slurm {:.1} s", local[run - 1].0, on_slurm[run - 1].0);
    }
    println!(
        "200 short trials (SoftmaxRegression, 1 epoch on 8,000 digits), 2 at a time, on {cpu}, medians of {runs}:"
    );
    for (name, measured) in [("local executor", &local), ("Slurm executor", &on_slurm)] {
        let mut walls: Vec<f64> = measured.iter().map(|m| m.0).collect();
        let mut means: Vec<f64> = measured.iter().map(|m| m.1).collect();
        let (wall, mean) = (median(&mut walls), median(&mut means));
        let completed = measured.iter().map(|m| m.2).min().unwrap_or(0);
        println!(
            "  {name}  {wall:6.1} s  {:5.1} trials/min  overhead per trial {:.2} s (run itself {mean:.2} s; {completed} completed)",
            200.0 * 60.0 / wall,
            wall * 2.0 / 200.0 - mean
        );
    }

    // 1,000 trials held in the queue, followed by `sweep watch`.
    let dir = project("queued", 1000, "executor: {kind: slurm, extra_args: [--hold], poll_seconds: 2}\n")?;
    let submitted = host(&dir, &conf, &["-q", "sweep", "config/sweep.yaml", "--detach", "--json"])?.output()?;
    if !submitted.status.success() {
        bail!("submitting 1,000 held trials failed: {}", String::from_utf8_lossy(&submitted.stderr));
    }
    let row: Value = serde_json::from_slice(&submitted.stdout)?;
    let sweep_id = row["sweep_id"].as_str().context("sweep id")?.to_owned();
    let array =
        row["trials"][0]["job"]["job_id"].as_str().and_then(|j| j.split('_').next()).context("job id")?.to_owned();
    let mut watch =
        host(&dir, &conf, &["-q", "sweep", "watch", &sweep_id])?.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(5));
        if let Some(sample) = usage(watch.id()) {
            samples.push((started.elapsed().as_secs_f64(), sample));
        }
    }
    let _ = Command::new("scancel").arg(&array).env("SLURM_CONF", &conf).output();
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = std::fs::remove_dir_all(&dir);
    println!("host sweep watch following 1,000 queued trials (held), polling every 2 s, on {cpu}:");
    println!("  {:>5}  {:>9}  {:>8}", "t (s)", "RSS (MiB)", "CPU (s)");
    for (t, (rss, cpu_seconds)) in &samples {
        println!("  {t:5.0}  {:9.1}  {cpu_seconds:8.2}", *rss as f64 / 1024.0);
    }
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        let minutes = (last.0 - first.0) / 60.0;
        println!(
            "  RSS {:.1} -> {:.1} MiB; CPU {:.1} % of one core between the first and last sample",
            first.1.0 as f64 / 1024.0,
            last.1.0 as f64 / 1024.0,
            (last.1.1 - first.1.1) / (minutes * 60.0) * 100.0
        );
    }
    drop(cluster);
    Ok(())
}
