//! The `executor:` section of an experiment or sweep config: where runs and trials run. `local`
//! (child processes on this machine, the default) or `slurm` (batch jobs; sweeps as job
//! arrays), with Slurm's options. `--executor` on the command line chooses the kind too. The
//! section is not part of a run's canonical config: where a run ran is not what it computed.

use std::path::PathBuf;

use plugin_sdk::{ConfigKey, ConfigType};
use serde_json::Value;

use super::Problem;
use super::schema::check_section;

/// Which executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExecutorKind {
    /// Child processes on this machine.
    #[default]
    Local,
    /// Batch jobs on a Slurm cluster.
    Slurm,
}

/// Slurm's options for the jobs a run or sweep submits (`sbatch` options of the same names).
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// `--time`: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`.
    pub time: Option<String>,
    pub cpus_per_task: Option<u32>,
    /// `--mem`: `4000`, `4G`, ...
    pub memory: Option<String>,
    /// `--gres`: `gpu:1`, `gpu:a100:2`.
    pub gres: Option<String>,
    /// At most this many trials of a sweep at once (`--array=...%N`).
    pub array_throttle: Option<u32>,
    /// More `sbatch` arguments, as given.
    pub extra_args: Vec<String>,
    /// Where job scripts and logs go (default: the sweep's or run's folder).
    pub log_dir: Option<PathBuf>,
    pub job_name: Option<String>,
    /// How often to ask Slurm about the jobs followed.
    pub poll_seconds: f64,
    /// Seconds before the time limit that a job is warned (SIGUSR1) to stop after its batch.
    pub signal_seconds: u32,
    /// Requeue a job that its node failed or a higher priority job preempted.
    pub requeue: bool,
}

impl Default for SlurmOptions {
    /// As an `executor:` section without Slurm keys reads.
    fn default() -> Self {
        SlurmOptions {
            partition: None,
            account: None,
            qos: None,
            time: None,
            cpus_per_task: None,
            memory: None,
            gres: None,
            array_throttle: None,
            extra_args: Vec::new(),
            log_dir: None,
            job_name: None,
            poll_seconds: 2.0,
            signal_seconds: 90,
            requeue: true,
        }
    }
}

/// The validated section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecutorConfig {
    pub kind: ExecutorKind,
    pub slurm: SlurmOptions,
}

pub fn keys() -> Vec<ConfigKey> {
    use ConfigType::*;
    let s = "executor";
    vec![
        ConfigKey::new(s, "kind", Choice(vec!["local".into(), "slurm".into()])).default("local"),
        ConfigKey::new(s, "partition", String).describe("Slurm partition"),
        ConfigKey::new(s, "account", String),
        ConfigKey::new(s, "qos", String),
        ConfigKey::new(s, "time", String).describe("time limit per job: MM, HH:MM:SS or D-HH:MM:SS"),
        ConfigKey::new(s, "cpus_per_task", Integer).describe("CPUs per trial; its threads follow them"),
        ConfigKey::new(s, "memory", String).describe("memory per job: 4000 (MB) or 4G"),
        ConfigKey::new(s, "gres", String).describe("generic resources, e.g. gpu:1"),
        ConfigKey::new(s, "array_throttle", Integer).describe("at most this many trials at once"),
        ConfigKey::new(s, "extra_args", List(Box::new(String))).default(Value::Array(Vec::new())),
        ConfigKey::new(s, "log_dir", String).describe("where job scripts and logs go"),
        ConfigKey::new(s, "job_name", String),
        ConfigKey::new(s, "poll_seconds", Number).default(2.0),
        ConfigKey::new(s, "signal_seconds", Integer)
            .default(90)
            .describe("seconds before the time limit that a job is told to stop after its batch; 0: never"),
        ConfigKey::new(s, "requeue", Boolean).default(true),
    ]
}

/// Whether `text` is a Slurm time: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`, or
/// `UNLIMITED`.
fn is_slurm_time(text: &str) -> bool {
    text.eq_ignore_ascii_case("unlimited")
        || text.eq_ignore_ascii_case("infinite")
        || crate::slurm::time_seconds(text).is_some()
}

impl ExecutorConfig {
    /// Reads the section (absent: local), pushing each problem.
    pub fn from_section(section: Option<&Value>, problems: &mut Vec<Problem>) -> Self {
        let keys = keys();
        let refs: Vec<&ConfigKey> = keys.iter().collect();
        let filled = check_section(section, "executor", &refs, "the host", problems);
        let text = |key: &str| filled.get(key).and_then(Value::as_str).map(str::to_owned);
        let count = |key: &str, problems: &mut Vec<Problem>| -> Option<u32> {
            let value = filled.get(key)?.as_i64()?;
            match u32::try_from(value) {
                Ok(value) if value > 0 => Some(value),
                _ => {
                    problems
                        .push(Problem::new(&format!("executor.{key}"), format!("must be at least 1, found {value}")));
                    None
                }
            }
        };
        let slurm = SlurmOptions {
            partition: text("partition"),
            account: text("account"),
            qos: text("qos"),
            time: text("time"),
            cpus_per_task: count("cpus_per_task", problems),
            memory: text("memory"),
            gres: text("gres"),
            array_throttle: count("array_throttle", problems),
            extra_args: filled
                .get("extra_args")
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
            log_dir: text("log_dir").map(PathBuf::from),
            job_name: text("job_name"),
            poll_seconds: filled.get("poll_seconds").and_then(Value::as_f64).unwrap_or(2.0),
            signal_seconds: filled.get("signal_seconds").and_then(Value::as_u64).unwrap_or(90) as u32,
            requeue: filled.get("requeue").and_then(Value::as_bool).unwrap_or(true),
        };
        if let Some(time) = &slurm.time
            && !is_slurm_time(time)
        {
            problems.push(Problem::new(
                "executor.time",
                format!("`{time}` is not a Slurm time; use MM, HH:MM:SS or D-HH:MM:SS (e.g. 2:00:00)"),
            ));
        }
        if let Some(memory) = &slurm.memory {
            let digits = memory.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || memory.len() - digits.len() > 1 {
                problems.push(Problem::new(
                    "executor.memory",
                    format!("`{memory}` is not a memory size; use megabytes (4000) or a unit (4G)"),
                ));
            }
        }
        if let Some(gres) = &slurm.gres
            && (gres.is_empty() || gres.contains(char::is_whitespace))
        {
            problems.push(Problem::new("executor.gres", format!("`{gres}` is not a gres list; e.g. gpu:1")));
        }
        for (index, argument) in slurm.extra_args.iter().enumerate() {
            if !argument.starts_with('-') {
                problems.push(Problem::new(
                    &format!("executor.extra_args[{index}]"),
                    format!("`{argument}` is not an sbatch option; give options like --constraint=a100"),
                ));
            }
        }
        if !(0.1..=600.0).contains(&slurm.poll_seconds) {
            problems.push(Problem::new(
                "executor.poll_seconds",
                format!("must be between 0.1 and 600, found {}", slurm.poll_seconds),
            ));
        }
        let kind = match text("kind").as_deref() {
            Some("slurm") => ExecutorKind::Slurm,
            _ => ExecutorKind::Local,
        };
        ExecutorConfig { kind, slurm }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(section: Value) -> (ExecutorConfig, Vec<String>) {
        let mut problems = Vec::new();
        let config = ExecutorConfig::from_section(Some(&section), &mut problems);
        (config, problems.into_iter().map(|p| format!("{}: {}", p.key_path, p.message)).collect())
    }

    #[test]
    fn slurm_options_are_read_and_checked() {
        let (config, problems) = read(
            json!({"kind": "slurm", "partition": "gpu", "time": "1-02:00:00", "cpus_per_task": 4,
                                             "memory": "16G", "gres": "gpu:1", "array_throttle": 8, "extra_args": ["--constraint=a100"]}),
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.kind, ExecutorKind::Slurm);
        assert_eq!(config.slurm.cpus_per_task, Some(4));
        assert_eq!(config.slurm.extra_args, ["--constraint=a100"]);
        let (_, problems) = read(json!({"kind": "slurm", "time": "2 hours", "memory": "lots", "cpus_per_task": 0,
                                        "extra_args": ["constraint"], "partiton": "gpu"}));
        assert_eq!(
            problems,
            [
                "executor.partiton: unknown key; did you mean `partition`?",
                "executor.cpus_per_task: must be at least 1, found 0",
                "executor.time: `2 hours` is not a Slurm time; use MM, HH:MM:SS or D-HH:MM:SS (e.g. 2:00:00)",
                "executor.memory: `lots` is not a memory size; use megabytes (4000) or a unit (4G)",
                "executor.extra_args[0]: `constraint` is not an sbatch option; give options like --constraint=a100",
            ]
        );
        for time in ["30", "30:00", "2:00:00", "1-0", "1-2:00", "UNLIMITED"] {
            assert!(is_slurm_time(time), "{time}");
        }
        for time in ["", "1h", "1:2:3:4", "-5"] {
            assert!(!is_slurm_time(time), "{time}");
        }
        assert_eq!(read(json!({})).0, ExecutorConfig::default());
    }
}
