//! `host report RUN`: regenerates a recorded run's reports from the store, with the report
//! generator it used or another one (`--generator`), into a folder of their own, so the
//! recorded reports (and `host verify`) stay untouched.

use std::path::PathBuf;

use anyhow::bail;
use plugin_sdk::ClassKind;
use record::RunStatus;
use serde_json::json;

use crate::output::print_json;
use crate::pipeline::{RunRequest, regenerate_reports};
use crate::recorded::{enter_working_dir, recorded_classes, recorded_experiment};
use crate::registry::{Registry, RegistryOptions};
use crate::storage::StoreOptions;

pub struct ReportOptions {
    pub store: StoreOptions,
    pub run: String,
    /// Another report generator class, found through the class mapping and plugins/.
    pub generator: Option<String>,
    pub registry: RegistryOptions,
    pub output: Option<PathBuf>,
    pub json: bool,
}

pub fn report(options: ReportOptions) -> anyhow::Result<u8> {
    // The reports are made in the recorded run's folder, where the stage cache is looked up.
    let settings = options.store.settings()?.anchored_here();
    let store = crate::storage::open(&settings)?;
    let run_id = &options.run;
    let record = store.run_record(run_id)?;
    if record.status != RunStatus::Completed {
        bail!("run {run_id} is {}; only completed runs have everything a report shows", record.status);
    }
    let allow_untrusted = options.registry.allow_untrusted;
    // Another generator is found from here, before moving to the run's folder.
    let chosen = match &options.generator {
        Some(class) => Some(
            Registry::open(options.registry)?.resolve(ClassKind::ReportGenerator, class).map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let output = options.output.map(|o| std::path::absolute(&o).unwrap_or(o));
    // The recorded builds, checked against their SHA-256 (a changed one is used with a warning:
    // the data it yields is checked against the record's digests anyway).
    let mut classes = recorded_classes(&record, true, allow_untrusted)?;
    // The model's class stays for validating the recorded config; only the loader and the
    // report generator are called.
    classes.retain(|c| chosen.is_none() || c.info.kind != ClassKind::ReportGenerator);
    classes.extend(chosen.clone());
    let Some(generator) =
        classes.iter().find(|c| c.info.kind == ClassKind::ReportGenerator).map(|c| c.info.name.clone())
    else {
        bail!("run {run_id} used no report generator; name one with --generator (host plugins list shows them)");
    };
    let mut config = record.config.clone();
    if chosen.is_some() {
        // The recorded reporting keys belong to the recorded generator.
        config["plugins"]["report_generator"] = json!(generator);
        config["reporting"] = json!({"enabled": true});
    }
    enter_working_dir(&record)?;
    let experiment = recorded_experiment(&record, &config, &classes)?;
    let output = output.unwrap_or_else(|| record.output_dir.join("regenerated").join(&generator));
    let request = RunRequest {
        experiment: &experiment,
        classes: &classes,
        output_root: output.clone(),
        model_from: None,
        show_progress: false,
        stop: crate::interrupt::Stop::new(),
        store: Some(&*store),
        settings: Some(&settings),
        git: Default::default(),
        reuse: true,
        replay_of: None,
        trial: None,
        run_id: None,
    };
    let files = regenerate_reports(&request, &record, &output)?;
    if options.json {
        print_json(&json!({"run_id": run_id, "generator": generator, "output_dir": output, "files": files}))?;
    } else {
        println!("regenerated the reports of run {run_id} with {generator} in {}", output.display());
        for file in &files {
            println!("  {}", file.display());
        }
    }
    Ok(0)
}
