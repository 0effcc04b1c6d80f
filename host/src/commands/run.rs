//! `host run CONFIG`: validates the experiment config against the selected plugin classes and
//! instantiates each class, so every config or plugin problem surfaces before any work starts.

use std::path::PathBuf;

use anyhow::Context;
use plugin_sdk::{ClassKind, RunContext};
use serde::Serialize;

use crate::config::experiment::ExperimentConfig;
use crate::output::{print_json, short_hash, table};
use crate::registry::{Registry, RegistryOptions, ResolvedClass};

pub struct RunOptions {
    pub config: PathBuf,
    pub registry: RegistryOptions,
    pub json: bool,
}

#[derive(Serialize)]
struct SelectedClass {
    kind: ClassKind,
    class: String,
    plugin: String,
    library: PathBuf,
    sha256: String,
}

#[derive(Serialize)]
struct Validation {
    config: PathBuf,
    experiment_name: String,
    status: &'static str,
    classes: Vec<SelectedClass>,
}

/// Loads the registry and the config, resolving every selected class.
pub fn prepare(
    config: &std::path::Path,
    registry: RegistryOptions,
) -> anyhow::Result<(Registry, ExperimentConfig, Vec<ResolvedClass>)> {
    let registry = Registry::open(registry)?;
    let mut resolved = Vec::new();
    let experiment = ExperimentConfig::load(config, |kind, class| {
        let found = registry.resolve(kind, class)?;
        resolved.push(found.clone());
        Ok(found.info)
    })?;
    Ok((registry, experiment, resolved))
}

pub fn run(options: RunOptions) -> anyhow::Result<()> {
    let (_registry, experiment, classes) = prepare(&options.config, options.registry)?;
    let context = RunContext { seed: experiment.seed, threads: experiment.threads };
    // Instantiating each class lets the plugin apply its own checks to its config.
    for class in &classes {
        let sections = experiment.class_sections(class.info.kind);
        let library = &class.library.library;
        let created = match class.info.kind {
            ClassKind::Loader => library.create_loader(&class.info.name, &sections, &context).map(drop),
            ClassKind::Model => library.create_model(&class.info.name, &sections, &context).map(drop),
            ClassKind::ReportGenerator => {
                library.create_report_generator(&class.info.name, &sections, &context).map(drop)
            }
        };
        created.with_context(|| {
            format!("{}: plugins: {} {}", options.config.display(), class.info.kind, class.info.name)
        })?;
    }
    let validation = Validation {
        config: options.config.clone(),
        experiment_name: experiment.experiment_name.clone(),
        status: "valid",
        classes: classes
            .iter()
            .map(|c| SelectedClass {
                kind: c.info.kind,
                class: c.info.name.clone(),
                plugin: c.library.plugin_label(),
                library: c.library.path.clone(),
                sha256: c.library.sha256.clone(),
            })
            .collect(),
    };
    if options.json {
        return print_json(&validation);
    }
    println!("{}: config and plugins are valid (experiment {})", options.config.display(), experiment.experiment_name);
    let rows: Vec<Vec<String>> = validation
        .classes
        .iter()
        .map(|c| vec![c.kind.to_string(), c.class.clone(), c.plugin.clone(), short_hash(&c.sha256).to_owned()])
        .collect();
    println!("{}", table(&["KIND", "CLASS", "PLUGIN", "SHA256"], &rows));
    Ok(())
}
