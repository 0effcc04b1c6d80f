//! `bench`: prints benchmark figures (never asserts timings). Run it through
//! `scripts/bench.sh`, which builds everything in release first.
//!
//! - `overhead`: `host run config/reference_mlp.yaml` against `bare-mlp` (the same job in plain
//!   tch) and `pytorch_mlp.py` (the same job in plain PyTorch), interleaved whole processes with
//!   the same thread count: medians of wall time, CPU time and peak memory (GNU time), the
//!   median of the host/bare pairs' time ratios, and the other ratios.
//! - `decode`: decoding Fashion-MNIST's 60,000 training images from IDX gz, median of N.
//! - `accuracy`: test accuracy of config/fashion_mnist_config.yaml (MLP) and
//!   config/fashion_cnn_config.yaml (CNN) on Fashion-MNIST's test set.
//! - `store`: the provenance store (`sha256`, `provenance`, `queries`; see `store.rs`).
//! - `ui`: `host ui` on the generated 100,000-run stores: server time per page and query, memory
//!   (see `ui.rs`).
//! - `sweep`: `host sweep config/mnist_hyperparam.yaml` (8 short trials) with `--jobs 1` and
//!   `--jobs 2`, interleaved, each on a fresh store; medians and their ratio.
//! - `slurm`: 200 short trials through Slurm and through the local executor, and a minute of
//!   following 1,000 queued trials (see `slurm.rs`).

mod slurm;
mod store;
mod ui;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) { (values[mid - 1] + values[mid]) / 2.0 } else { values[mid] }
}

/// This machine's CPU, as the figures name it.
fn cpu_model() -> String {
    host::environment::cpu_name(&host::environment::capture(1))
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::current_exe()?.parent().map(Path::to_owned).context("no executable folder")?;
    let path = dir.join(name);
    if !path.is_file() {
        bail!("{} is missing: build with `cargo build --release --workspace` (scripts/bench.sh does)", path.display());
    }
    Ok(path)
}

/// Runs a command, returning its wall time and stdout.
fn timed(command: &mut Command) -> anyhow::Result<(f64, String)> {
    let started = Instant::now();
    let output = command.output()?;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok((seconds, String::from_utf8_lossy(&output.stdout).into_owned()))
}

fn host_run(config: &str, output_dir: &Path) -> anyhow::Result<(f64, serde_json::Value)> {
    let (seconds, stdout) =
        // --force: every run computes every stage (no stage cache), as a first run does.
        timed(
            Command::new(sibling("host")?).args(["-q", "run", config, "--json", "--force", "--output-dir"]).arg(output_dir),
        )?;
    Ok((seconds, serde_json::from_str(&stdout)?))
}

/// One whole process as GNU time saw it (`/usr/bin/time`, the `time` package).
struct Measured {
    wall: f64,
    /// User plus system CPU time, every thread.
    cpu: f64,
    kib: u64,
    stdout: String,
}

/// Runs a program under GNU time: its wall time, CPU time, peak resident memory and stdout.
fn timed_with_memory(program: &Path, args: &[&std::ffi::OsStr]) -> anyhow::Result<Measured> {
    const MARK: &str = "bench-measured=";
    let started = Instant::now();
    let output = Command::new("/usr/bin/time")
        .arg("-f")
        .arg(format!("{MARK}%M %U %S"))
        .arg(program)
        .args(args)
        .output()
        .context("/usr/bin/time (Debian's `time` package; scripts/setup.sh installs it)")?;
    let wall = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("{} failed: {stderr}", program.display());
    }
    // GNU time writes its line after whatever the program wrote, which may not end in a newline.
    let line = stderr.rfind(MARK).map(|at| &stderr[at + MARK.len()..]).unwrap_or_default();
    let fields: Vec<&str> = line.lines().next().unwrap_or_default().split(' ').collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.trim().parse::<f64>().ok());
    let (Some(kib), Some(user), Some(system)) = (number(0), number(1), number(2)) else {
        bail!("no memory and CPU figures from /usr/bin/time in: {stderr}");
    };
    Ok(Measured {
        wall,
        cpu: user + system,
        kib: kib as u64,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    })
}

/// One program of the overhead benchmark: its wall and CPU times, peak memory and last accuracy.
#[derive(Default)]
struct Series {
    seconds: Vec<f64>,
    cpu: Vec<f64>,
    kib: Vec<f64>,
    /// The training alone, as the program timed it (the host's train stage).
    train: Vec<f64>,
    accuracy: f64,
}

impl Series {
    fn push(&mut self, measured: &Measured, accuracy: Option<f64>, train: Option<f64>) {
        self.seconds.push(measured.wall);
        self.cpu.push(measured.cpu);
        self.kib.push(measured.kib as f64);
        self.train.push(train.unwrap_or(f64::NAN));
        self.accuracy = accuracy.unwrap_or(f64::NAN);
    }
}

fn overhead(runs: usize) -> anyhow::Result<()> {
    let scratch = std::env::temp_dir().join(format!("bench-overhead-{}", std::process::id()));
    // Every program gets the threads the host takes by default: one per core.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("pytorch_mlp.py");
    let (mut host, mut bare, mut pytorch) = (Series::default(), Series::default(), Series::default());
    // Both the torch plugin and the bare program link only libtorch_cpu (the plugin loads the
    // CUDA backend only for a GPU config): the same libraries in both processes.
    let field = |stdout: &str, name: &str| serde_json::from_str::<serde_json::Value>(stdout).ok()?[name].as_f64();
    let host_args: Vec<&std::ffi::OsStr> =
        ["-q", "run", "config/reference_mlp.yaml", "--json", "--force", "--output-dir"]
            .iter()
            .map(std::ffi::OsStr::new)
            .chain([scratch.as_os_str()])
            .collect();
    let bare_args = [FASHION.as_ref(), threads.as_ref()];
    let run_host = |series: &mut Series| -> anyhow::Result<()> {
        let measured = timed_with_memory(&sibling("host")?, &host_args)?;
        let summary: serde_json::Value = serde_json::from_str(&measured.stdout)?;
        let stages = summary["stages"].as_array().context("no stages in the host's summary")?;
        let train = stages.iter().find(|s| s["name"] == "train").and_then(|s| s["seconds"].as_f64());
        series.push(&measured, summary["metrics"]["test"]["accuracy"].as_f64(), train);
        Ok(())
    };
    let run_bare = |series: &mut Series| -> anyhow::Result<()> {
        let measured = timed_with_memory(&sibling("bare-mlp")?, &bare_args)?;
        series.push(&measured, field(&measured.stdout, "accuracy"), field(&measured.stdout, "train_seconds"));
        Ok(())
    };
    // Host and bare program run back to back, in turns first, so neither always follows the
    // PyTorch program (or always precedes it); each pair's ratio is taken while the machine is
    // in one state, and the median of those ratios is the figure.
    let (mut ratios, mut train_ratios) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        if run % 2 == 1 {
            run_host(&mut host)?;
            run_bare(&mut bare)?;
        } else {
            run_bare(&mut bare)?;
            run_host(&mut host)?;
        }
        let measured =
            timed_with_memory(Path::new("python3"), &[script.as_os_str(), FASHION.as_ref(), threads.as_ref()])?;
        pytorch.push(&measured, field(&measured.stdout, "accuracy"), None);
        let last = |series: &Series| series.seconds[run - 1];
        ratios.push(last(&host) / last(&bare));
        train_ratios.push(host.train[run - 1] / bare.train[run - 1]);
        eprintln!(
            "run {run}/{runs}: host {:.2}s, bare {:.2}s (ratio {:.3}), pytorch {:.2}s",
            last(&host),
            last(&bare),
            ratios[run - 1],
            last(&pytorch)
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let time = |series: &mut Series| median(&mut series.seconds);
    let cpu = |series: &mut Series| median(&mut series.cpu);
    let memory = |series: &mut Series| median(&mut series.kib) / 1024.0;
    let (host_s, bare_s, pytorch_s) = (time(&mut host), time(&mut bare), time(&mut pytorch));
    let (host_c, bare_c, pytorch_c) = (cpu(&mut host), cpu(&mut bare), cpu(&mut pytorch));
    let (host_m, bare_m, pytorch_m) = (memory(&mut host), memory(&mut bare), memory(&mut pytorch));
    println!(
        "host overhead, reference workload (MLP 784-128-10, 5 epochs, Fashion-MNIST, {threads} threads each), \
         whole processes, host and bare in pairs, medians of {runs}:"
    );
    let train = |series: &mut Series| match median(&mut series.train) {
        seconds if seconds.is_nan() => "-".to_owned(),
        seconds => format!("{seconds:.3}s"),
    };
    println!("  {:<38} {:>8} {:>8} {:>8} {:>10} {:>10}", "", "wall", "CPU", "training", "peak RSS", "accuracy");
    for (name, seconds, cpu, training, mib, accuracy) in [
        ("host run config/reference_mlp.yaml", host_s, host_c, train(&mut host), host_m, host.accuracy),
        ("bare tch program (bare-mlp)", bare_s, bare_c, train(&mut bare), bare_m, bare.accuracy),
        (
            "plain PyTorch (bench/pytorch_mlp.py)",
            pytorch_s,
            pytorch_c,
            train(&mut pytorch),
            pytorch_m,
            pytorch.accuracy,
        ),
    ] {
        println!("  {name:<38} {seconds:>7.3}s {cpu:>7.3}s {training:>8} {mib:>6.0} MiB {accuracy:>10.4}");
    }
    // The median of the pairs' ratios, and their range.
    let paired = |ratios: &mut Vec<f64>| {
        let middle = median(ratios);
        format!(
            "{middle:.3}  (median of the {runs} pairs' ratios, which range {:.3} to {:.3}",
            ratios[0],
            ratios[runs - 1]
        )
    };
    println!("  ratio host / bare, time      {}; target at most 1.03)", paired(&mut ratios));
    println!("  ratio host / bare, training  {}: host train stage / bare training loop)", paired(&mut train_ratios));
    println!("  ratio of the medians, time   {:.3}", host_s / bare_s);
    println!("  ratio host / bare, CPU time  {:.3}  (user and system, every thread)", host_c / bare_c);
    println!("  ratio host / bare, memory    {:.3}  (target at most 1.15)", host_m / bare_m);
    println!("  ratio host / PyTorch, time   {:.3}", host_s / pytorch_s);
    Ok(())
}

/// When and on what a figure was measured: the date, the CPU model, its topology and the
/// instruction-set extensions numbers depend on.
pub fn machine_line() -> String {
    let environment = host::environment::capture(1);
    format!(
        "measured {} on {} ({} socket(s) x {} core(s) x {} thread(s); {})",
        record::now_rfc3339(),
        host::environment::cpu_name(&environment),
        environment.sockets,
        environment.cores_per_socket,
        environment.threads_per_core,
        environment.cpu_flags.join(" ")
    )
}

fn sweep(runs: usize) -> anyhow::Result<()> {
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        for (jobs, times) in [("1", &mut one), ("2", &mut two)] {
            let scratch = std::env::temp_dir().join(format!("bench-sweep-{}-{jobs}-{run}", std::process::id()));
            let (seconds, _) = timed(
                Command::new(sibling("host")?)
                    .args(["-q", "sweep", "config/mnist_hyperparam.yaml", "--json", "--jobs", jobs, "--output-dir"])
                    .arg(&scratch)
                    .arg("--db")
                    .arg(scratch.join("provenance.db")),
            )?;
            let _ = std::fs::remove_dir_all(&scratch);
            times.push(seconds);
        }
        eprintln!("run {run}/{runs}: --jobs 1 {:.2}s, --jobs 2 {:.2}s", one[run - 1], two[run - 1]);
    }
    let (one, two) = (median(&mut one), median(&mut two));
    println!(
        "host sweep config/mnist_hyperparam.yaml (8 trials, 3 epochs each on 8,000 MNIST digits), medians of {runs}:"
    );
    println!("  --jobs 1  {one:.2} s");
    println!("  --jobs 2  {two:.2} s");
    println!("  ratio     {:.2}  (target at most 0.6)", two / one);
    thread_scaling(runs)
}

/// What bounds the sweep ratio: one trial's training with the threads `--jobs 2` gives each
/// trial (1) against those `--jobs 1` gives it (2), and a whole run's time beside it.
fn thread_scaling(runs: usize) -> anyhow::Result<()> {
    let text = std::fs::read_to_string("config/mnist_hyperparam.yaml")?;
    let base = text.split("\nsweep:").next().context("config/mnist_hyperparam.yaml")?;
    let scratch = std::env::temp_dir().join(format!("bench-threads-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let (mut train, mut whole) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for _ in 0..runs {
        for threads in [1, 2] {
            let config = scratch.join(format!("threads-{threads}.yaml"));
            std::fs::write(&config, format!("{base}\nthreads: {threads}\n"))?;
            let (seconds, summary) = host_run(config.to_str().context("temp path")?, &scratch)?;
            let stage = summary["stages"].as_array().and_then(|s| s.iter().find(|s| s["name"] == "train"));
            train[threads - 1].push(stage.and_then(|s| s["seconds"].as_f64()).unwrap_or(f64::NAN));
            whole[threads - 1].push(seconds);
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let [train_1, train_2] = train.map(|mut t| median(&mut t));
    let [whole_1, whole_2] = whole.map(|mut t| median(&mut t));
    println!("one trial (the base config), medians of {runs}:");
    println!("  1 thread   train {train_1:.2} s, whole run {whole_1:.2} s");
    println!("  2 threads  train {train_2:.2} s, whole run {whole_2:.2} s");
    println!(
        "  bound      {:.2}: --jobs 2 runs two 1-thread trials where --jobs 1 runs one 2-thread trial",
        whole_1 / (2.0 * whole_2)
    );
    Ok(())
}

fn decode(runs: usize) -> anyhow::Result<()> {
    let path = Path::new(FASHION).join("train-images-idx3-ubyte.gz");
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let array = mnist_plugin::idx::read_idx(&path, 3)?;
        times.push(started.elapsed().as_secs_f64());
        assert_eq!(array.dims, [60_000, 28, 28]);
    }
    println!(
        "decode {} (60,000 images), median of {runs}: {:.3} s  (target under 0.5 s)",
        path.display(),
        median(&mut times)
    );
    Ok(())
}

fn accuracy() -> anyhow::Result<()> {
    let scratch = std::env::temp_dir().join(format!("bench-accuracy-{}", std::process::id()));
    for (config, target) in [("config/fashion_mnist_config.yaml", 0.87), ("config/fashion_cnn_config.yaml", 0.90)] {
        let (seconds, summary) = host_run(config, &scratch)?;
        let accuracy = summary["metrics"]["test"]["accuracy"].as_f64().unwrap_or(f64::NAN);
        println!("{config}: test accuracy {accuracy:.4} (target at least {target}) in {seconds:.0} s");
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(5);
    if runs == 0 {
        bail!("--runs 0: every figure is a median of at least one run");
    }
    let which = args.first().map(String::as_str).unwrap_or("all");
    let backends = store::Backends::parse(
        args.iter().position(|a| a == "--backend").and_then(|i| args.get(i + 1)).map(String::as_str),
    )?;
    // Every benchmark's figures say when and on what they were measured.
    if which != "writer" {
        println!("{}", machine_line());
    }
    match which {
        "writer" => {
            let arg = |index: usize| args.get(index).context("usage: bench writer LOCATOR FIRST COUNT");
            store::writer(arg(1)?, arg(2)?.parse()?, arg(3)?.parse()?)
        }
        "overhead" => overhead(runs),
        "decode" => decode(runs),
        "accuracy" => accuracy(),
        "sha256" => store::sha256(runs),
        "provenance" => store::overhead(runs, backends),
        "queries" => store::queries(runs, backends),
        "ui" => ui::ui(runs, backends),
        "writers" => store::writers(backends),
        "sweep" => sweep(runs),
        "slurm" => slurm::slurm(if args.iter().any(|a| a == "--runs") { runs } else { 1 }),
        "store" => store::sha256(runs)
            .and_then(|()| store::overhead(runs, backends))
            .and_then(|()| store::queries(runs, backends))
            .and_then(|()| store::writers(backends)),
        "all" => decode(runs)
            .and_then(|()| overhead(runs))
            .and_then(|()| store::sha256(runs))
            .and_then(|()| store::overhead(runs, backends))
            .and_then(|()| store::queries(runs, backends))
            .and_then(|()| store::writers(backends))
            .and_then(|()| ui::ui(runs, backends))
            .and_then(|()| sweep(runs))
            .and_then(|()| accuracy())
            .and_then(|()| slurm::slurm(1)),
        other => bail!(
            "unknown benchmark {other}; use overhead, decode, accuracy, sha256, provenance, queries, writers, ui, store, sweep, slurm or all"
        ),
    }
}
