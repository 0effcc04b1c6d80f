//! What a run records about where it ran: the machine (CPU model, core topology, the vector
//! instruction sets numeric kernels choose by, OS, compiler) and the git state of the
//! experiment's repository. Read from `/proc` and `git`; nothing here writes.

use std::path::Path;

use record::{Environment, GitState, SchedulerContext};

/// The instruction-set extensions worth recording: those BLAS, oneDNN and libtorch pick kernels
/// by (x86 SSE/AVX/FMA/AMX, Arm NEON/SVE). Other CPU flags say nothing about a run's numbers.
const ISA_PREFIXES: [&str; 8] = ["sse", "ssse3", "avx", "fma", "f16c", "amx", "asimd", "sve"];

/// The machine this process runs on, with the run's thread count.
pub fn capture(threads: usize) -> Environment {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let os = os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|s| s.trim_matches('"').to_owned())
        .unwrap_or_else(|| std::env::consts::OS.to_owned());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpu_facts(&cpuinfo);
    Environment {
        os,
        arch: std::env::consts::ARCH.to_owned(),
        cpu: cpu.model,
        cpu_id: cpu.id,
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        threads,
        rustc: env!("HOST_RUSTC_VERSION").to_owned(),
        sockets: cpu.sockets,
        cores_per_socket: cpu.cores_per_socket,
        threads_per_core: cpu.threads_per_core,
        cpu_flags: cpu.flags,
    }
}

struct CpuFacts {
    model: String,
    id: String,
    sockets: usize,
    cores_per_socket: usize,
    threads_per_core: usize,
    flags: Vec<String>,
}

/// The model name, family and model numbers, topology and ISA flags in `/proc/cpuinfo` text
/// (x86 or Arm).
fn cpu_facts(cpuinfo: &str) -> CpuFacts {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
    };
    let number = |name: &str| field(name).and_then(|v| v.parse::<usize>().ok());
    let mut sockets: Vec<&str> = cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == "physical id").map(|(_, v)| v.trim()))
        .collect();
    sockets.sort_unstable();
    sockets.dedup();
    let logical: usize = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let cores_per_socket = number("cpu cores").unwrap_or(0);
    let siblings = number("siblings").unwrap_or(0);
    let threads_per_core =
        if cores_per_socket > 0 && siblings >= cores_per_socket { siblings / cores_per_socket } else { 0 };
    let mut flags: Vec<String> = field("flags")
        .or_else(|| field("Features"))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|flag| ISA_PREFIXES.iter().any(|prefix| flag.starts_with(prefix)))
        .map(str::to_owned)
        .collect();
    flags.sort();
    flags.dedup();
    // x86 names its CPU by family and model, Arm by implementer and part: what tells two
    // generations apart. (Steppings and revisions of one model run the same kernels.)
    let id_fields: [(&str, &str); 4] =
        [("cpu family", "family"), ("model", "model"), ("CPU implementer", "implementer"), ("CPU part", "part")];
    let id: Vec<String> =
        id_fields.iter().filter_map(|(key, name)| field(key).map(|value| format!("{name} {value}"))).collect();
    CpuFacts {
        model: field("model name").or_else(|| field("Model")).unwrap_or_else(|| "unknown".into()),
        id: id.join(" "),
        sockets: if sockets.is_empty() && logical > 0 { 1 } else { sockets.len() },
        cores_per_socket,
        threads_per_core,
        flags,
    }
}

/// The CPU as a run records it: its model name and, where known, which one (`AMD EPYC
/// (family 26 model 2)`).
pub fn cpu_name(environment: &Environment) -> String {
    match environment.cpu_id.as_str() {
        "" => environment.cpu.clone(),
        id => format!("{} ({id})", environment.cpu),
    }
}

/// The differences between two environments that can change a run's numbers: the CPU (its
/// model name, and family and model where both say), its core topology and its instruction
/// sets. Empty when none differ.
pub fn differences(recorded: &Environment, now: &Environment) -> Vec<String> {
    let mut found = Vec::new();
    if recorded.cpu.is_empty() {
        return found;
    }
    // A record of an earlier host has no CPU id: its model name is all there is to compare.
    let both_identified = !recorded.cpu_id.is_empty() && !now.cpu_id.is_empty();
    if recorded.cpu != now.cpu || (both_identified && recorded.cpu_id != now.cpu_id) {
        found.push(format!("CPU: recorded {}, here {}", cpu_name(recorded), cpu_name(now)));
    }
    let topology = |e: &Environment| {
        format!("{} socket(s) x {} core(s) x {} thread(s)", e.sockets, e.cores_per_socket, e.threads_per_core)
    };
    if topology(recorded) != topology(now) {
        found.push(format!("core topology: recorded {}, here {}", topology(recorded), topology(now)));
    }
    let missing: Vec<&str> =
        recorded.cpu_flags.iter().filter(|f| !now.cpu_flags.contains(f)).map(String::as_str).collect();
    let extra: Vec<&str> =
        now.cpu_flags.iter().filter(|f| !recorded.cpu_flags.contains(f)).map(String::as_str).collect();
    if !missing.is_empty() || !extra.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing here: {}", missing.join(" ")));
        }
        if !extra.is_empty() {
            parts.push(format!("only here: {}", extra.join(" ")));
        }
        found.push(format!("instruction sets: {}", parts.join("; ")));
    }
    found
}

/// The compute threads this process may use: the CPUs its batch scheduler allocated to the
/// task (`SLURM_CPUS_PER_TASK`), else every core it can run on.
pub fn available_threads() -> usize {
    std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|cpus| cpus.parse().ok())
        .filter(|&cpus: &usize| cpus > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// How many times the batch scheduler requeued the job this process runs in (0 outside one).
pub fn restart_count() -> u32 {
    std::env::var("SLURM_RESTART_COUNT").ok().and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The Slurm job this process runs in (from the variables Slurm sets in a job, and the job's
/// submit time, start time and time limit as `squeue` reports them); `None` outside a job.
pub fn scheduler() -> Option<SchedulerContext> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let job = var("SLURM_JOB_ID")?;
    let (array_job_id, array_task_id) = (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID"));
    let job_id = match (&array_job_id, &array_task_id) {
        (Some(array), Some(task)) => format!("{array}_{task}"),
        _ => job.clone(),
    };
    // Not in the job's environment: asked once (Slurm's answer is bounded in time; without
    // one the context is recorded without them).
    let fields = crate::slurm::show_job(&job_id).ok().flatten().unwrap_or_default();
    let field = |name: &str| fields.get(name).filter(|v| !v.is_empty() && *v != "Unknown" && *v != "None").cloned();
    let (submit_time, start_time, time_limit) = (field("SubmitTime"), field("StartTime"), field("TimeLimit"));
    Some(SchedulerContext {
        scheduler: "slurm".into(),
        cluster: var("SLURM_CLUSTER_NAME").unwrap_or_default(),
        job_id,
        array_job_id,
        array_task_id: array_task_id.and_then(|t| t.parse().ok()),
        restart_count: restart_count(),
        submit_time,
        start_time,
        node: var("SLURMD_NODENAME").unwrap_or_default(),
        partition: var("SLURM_JOB_PARTITION").unwrap_or_default(),
        cpus: var("SLURM_CPUS_PER_TASK").or_else(|| var("SLURM_CPUS_ON_NODE")).and_then(|c| c.parse().ok()),
        gpus: var("SLURM_JOB_GPUS").or_else(|| var("CUDA_VISIBLE_DEVICES")),
        time_limit,
        submit_host: var("SLURM_SUBMIT_HOST"),
    })
}

/// The git commit of `dir`'s repository and whether its work tree is dirty, when it is in one.
pub fn git_state(dir: &Path) -> GitState {
    let git = |args: &[&str]| {
        std::process::Command::new("git").args(args).current_dir(dir).output().ok().filter(|o| o.status.success())
    };
    let Some(commit) = git(&["rev-parse", "HEAD"]) else { return GitState::default() };
    let commit = String::from_utf8_lossy(&commit.stdout).trim().to_owned();
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).map(|o| !o.stdout.is_empty());
    GitState { commit: Some(commit), dirty }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_CORES: &str = "processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: 26\nmodel\t\t: 2\nstepping\t: 0\n\
        physical id\t: 0\nsiblings\t: 2\ncpu cores\t: 2\n\
        flags\t\t: fpu sse sse2 ssse3 sse4_1 avx avx2 fma avx512f avx512bw aes\n\n\
        processor\t: 1\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\nstepping\t: 0\n\
        physical id\t: 0\nsiblings\t: 2\ncpu cores\t: 2\n\
        flags\t\t: fpu sse sse2 ssse3 sse4_1 avx avx2 fma avx512f avx512bw aes\n";

    /// An Arm server's cpuinfo: no model name, the part numbers instead.
    const ARM: &str = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd evtstrm aes sve\n\
        CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n";

    #[test]
    fn topology_and_instruction_sets_are_read_from_cpuinfo() {
        let facts = cpu_facts(TWO_CORES);
        assert_eq!(facts.model, "AMD EPYC");
        assert_eq!(facts.id, "family 26 model 2");
        assert_eq!((facts.sockets, facts.cores_per_socket, facts.threads_per_core), (1, 2, 1));
        assert_eq!(facts.flags, ["avx", "avx2", "avx512bw", "avx512f", "fma", "sse", "sse2", "sse4_1", "ssse3"]);
        // One core with two hardware threads.
        let hyperthreaded = TWO_CORES.replace("cpu cores\t: 2", "cpu cores\t: 1");
        let facts = cpu_facts(&hyperthreaded);
        assert_eq!((facts.cores_per_socket, facts.threads_per_core), (1, 2));
        let arm = cpu_facts(ARM);
        assert_eq!(arm.id, "implementer 0x41 part 0xd0c");
        assert_eq!(arm.flags, ["asimd", "sve"]);
    }

    #[test]
    fn differences_name_what_changes_numbers() {
        let here = Environment {
            cpu: "AMD EPYC".into(),
            cpu_id: "family 26 model 2".into(),
            sockets: 1,
            cores_per_socket: 2,
            threads_per_core: 1,
            cpu_flags: vec!["avx2".into(), "avx512f".into()],
            ..Environment::default()
        };
        assert!(differences(&here, &here).is_empty());
        let older = Environment {
            cpu: "Intel Xeon".into(),
            cpu_id: "family 6 model 143".into(),
            cores_per_socket: 1,
            threads_per_core: 2,
            cpu_flags: vec!["avx2".into()],
            ..here.clone()
        };
        assert_eq!(
            differences(&older, &here),
            [
                "CPU: recorded Intel Xeon (family 6 model 143), here AMD EPYC (family 26 model 2)",
                "core topology: recorded 1 socket(s) x 1 core(s) x 2 thread(s), here 1 socket(s) x 2 core(s) x 1 thread(s)",
                "instruction sets: only here: avx512f",
            ]
        );
        // One model name, two generations: the family and model tell them apart.
        let zen4 = Environment { cpu_id: "family 25 model 17".into(), ..here.clone() };
        assert_eq!(
            differences(&zen4, &here),
            ["CPU: recorded AMD EPYC (family 25 model 17), here AMD EPYC (family 26 model 2)"]
        );
        // An earlier host recorded the model name only: that is what is compared.
        let unidentified = Environment { cpu_id: String::new(), ..here.clone() };
        assert!(differences(&unidentified, &here).is_empty());
        // A record from before environments were kept says nothing.
        assert!(differences(&Environment::default(), &here).is_empty());
    }
}
