//! `host plugins list` and `host plugins inspect`.

use std::path::Path;

use plugin_sdk::Manifest;
use serde::Serialize;

use crate::output::{print_json, short_hash, table};
use crate::registry::{Registry, RegistryOptions, Source, load_and_hash};

pub fn list(options: RegistryOptions, json: bool) -> anyhow::Result<()> {
    // Listing shows what is untrusted (each class's trust warnings) rather than refusing it.
    let registry = Registry::open(RegistryOptions { allow_untrusted: true, ..options })?;
    let listing = registry.listing();
    if json {
        return print_json(&listing);
    }
    let rows: Vec<Vec<String>> = listing
        .entries
        .iter()
        .map(|e| {
            vec![
                e.class.clone(),
                e.kind.to_string(),
                format!("{} {}", e.plugin_name, e.plugin_version),
                match e.source {
                    Source::Mapped => "mapped".into(),
                    Source::Discovered => "discovered".into(),
                    Source::Recorded => "recorded".into(),
                },
                short_hash(&e.sha256).to_owned(),
                e.library.display().to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!(
            "no plugin classes found: nothing in {}{}",
            registry.plugins_dir().display(),
            registry.mapping_names().map(|f| format!(" and no usable entry in {f}")).unwrap_or_default()
        );
    } else {
        println!("{}", table(&["CLASS", "KIND", "PLUGIN", "SOURCE", "SHA256", "LIBRARY"], &rows));
    }
    let mut warned = std::collections::BTreeSet::new();
    for entry in &listing.entries {
        for warning in &entry.trust_warnings {
            if warned.insert(warning.clone()) {
                eprintln!("warning: {warning}");
            }
        }
    }
    for problem in &listing.problems {
        tracing::warn!("{}", problem.error);
    }
    Ok(())
}

#[derive(Serialize)]
struct Inspection<'a> {
    path: &'a Path,
    sha256: String,
    size: u64,
    host_sdk_version: &'static str,
    #[serde(flatten)]
    manifest: &'a Manifest,
}

pub fn inspect(path: &Path, json: bool) -> anyhow::Result<()> {
    let loaded = load_and_hash(path).map_err(|message| anyhow::anyhow!(message))?;
    let manifest = loaded.manifest();
    let inspection = Inspection {
        path,
        sha256: loaded.sha256.clone(),
        size: loaded.size,
        host_sdk_version: plugin_sdk::host::host_sdk_version(),
        manifest,
    };
    if json {
        return print_json(&inspection);
    }
    println!("plugin      {} {}", manifest.plugin_name, manifest.plugin_version);
    println!("library     {}", path.display());
    println!("sha256      {}", inspection.sha256);
    println!("size        {} bytes", inspection.size);
    println!("sdk (abi)   {} (host {})", manifest.sdk_version, inspection.host_sdk_version);
    for class in &manifest.classes {
        println!("\n{} {}: {}", class.kind, class.name, class.summary);
        if class.config_keys.is_empty() {
            println!("  (no config keys)");
            continue;
        }
        let rows: Vec<Vec<String>> = class
            .config_keys
            .iter()
            .map(|k| {
                vec![
                    format!("{}.{}", k.section, k.name),
                    k.ty.to_string(),
                    match (&k.default, k.required) {
                        (_, true) => "required".into(),
                        (Some(default), _) => default.to_string(),
                        (None, false) => "optional".into(),
                    },
                    k.description.clone(),
                ]
            })
            .collect();
        for line in table(&["KEY", "TYPE", "DEFAULT", "DESCRIPTION"], &rows).lines() {
            println!("  {line}");
        }
    }
    Ok(())
}
