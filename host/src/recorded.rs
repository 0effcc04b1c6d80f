//! Running a recorded run's code again (`host replay`, `host report`): its exact plugin library
//! files, checked against their recorded SHA-256 before they are loaded; its working folder;
//! its config, checked against those classes, with the thread count it resolved.

use std::path::PathBuf;

use anyhow::{Context, bail};
use record::RunRecord;
use serde_json::Value;

use crate::config::experiment::ExperimentConfig;
use crate::hashing::sha256_file;
use crate::registry::{ResolvedClass, resolve_recorded};

/// The recorded plugin libraries, each checked against its recorded SHA-256 before loading.
/// A changed one is refused unless `force`, then used with a warning; one that another user
/// owns or anyone may write is refused unless `allow_untrusted`.
pub fn recorded_classes(record: &RunRecord, force: bool, allow_untrusted: bool) -> anyhow::Result<Vec<ResolvedClass>> {
    let run_id = &record.run_id;
    let mut changed = Vec::new();
    for plugin in &record.plugins {
        match sha256_file(&plugin.library) {
            Ok((sha256, _)) if sha256 == plugin.sha256 => {}
            Ok((sha256, _)) => changed.push(format!(
                "{}: {} has SHA-256 {sha256}, the run recorded {}",
                plugin.class,
                plugin.library.display(),
                plugin.sha256
            )),
            Err(error) => changed.push(format!("{}: {}: {error}", plugin.class, plugin.library.display())),
        }
    }
    if !changed.is_empty() {
        changed.dedup();
        if !force {
            bail!(
                "cannot replay run {run_id}: its plugin libraries are not the builds it used:\n  {}\n\
                 restore those builds, or pass --force to replay with the files as they are now (outputs may then differ)",
                changed.join("\n  ")
            );
        }
        for line in &changed {
            tracing::warn!("replaying with a different library: {line}");
        }
    }
    record
        .plugins
        .iter()
        .map(|plugin| {
            resolve_recorded(&plugin.library, plugin.kind, &plugin.class, allow_untrusted).map_err(anyhow::Error::msg)
        })
        .collect()
}

/// Moves into the folder a recorded run ran in: its config's relative paths resolve there.
pub fn enter_working_dir(record: &RunRecord) -> anyhow::Result<PathBuf> {
    let working_dir =
        if record.working_dir.as_os_str().is_empty() { PathBuf::from(".") } else { record.working_dir.clone() };
    std::env::set_current_dir(&working_dir).with_context(|| {
        format!(
            "{}: cannot enter the folder run {} ran in (its config's relative paths need it)",
            working_dir.display(),
            record.run_id
        )
    })?;
    Ok(working_dir)
}

/// A recorded run's experiment from `config` (its recorded config, possibly edited), checked
/// against `classes`, with the thread count the run resolved (0 means every core, which differs
/// between machines).
pub fn recorded_experiment(
    record: &RunRecord,
    config: &Value,
    classes: &[ResolvedClass],
) -> anyhow::Result<ExperimentConfig> {
    let run_id = &record.run_id;
    let mut experiment = ExperimentConfig::from_value(&record.config_file, config, |kind, class| {
        classes
            .iter()
            .find(|c| c.info.kind == kind && c.info.name == class)
            .map(|c| c.info.clone())
            .ok_or_else(|| format!("run {run_id} recorded no library for {kind} {class}"))
    })
    .with_context(|| format!("the config recorded by run {run_id}"))?;
    experiment.threads = record.threads;
    Ok(experiment)
}
