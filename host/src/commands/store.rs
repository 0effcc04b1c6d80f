//! `host store info` (backend, schema version, what the store holds) and `host store copy
//! --from SRC --to DST` (every run and sweep of one store into another, with a progress bar;
//! copying twice adds nothing).

use std::io::IsTerminal;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use crate::output::{print_json, table};
use crate::storage::StoreOptions;

pub fn info(store: &StoreOptions, json: bool) -> anyhow::Result<()> {
    let store = store.open_read()?;
    let info = store.info()?;
    if json {
        return print_json(&info);
    }
    let statuses: Vec<String> = info.summary.runs_by_status.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let runs: i64 = info.summary.runs_by_status.values().sum();
    let rows = vec![
        vec!["store".to_owned(), info.locator.clone()],
        vec!["backend".to_owned(), info.backend.to_owned()],
        vec![
            "schema".to_owned(),
            format!(
                "version {} (usable by hosts that know {} or later; this host knows {})",
                info.schema_version, info.compatible_from, info.host_schema_version
            ),
        ],
        vec![
            "runs".to_owned(),
            format!("{runs} ({})", if statuses.is_empty() { "none".into() } else { statuses.join(", ") }),
        ],
        vec!["experiments".to_owned(), info.summary.experiments.len().to_string()],
        vec!["sweeps".to_owned(), info.sweeps.to_string()],
        vec!["plugin builds".to_owned(), info.summary.plugin_builds.to_string()],
        vec![
            "artifacts".to_owned(),
            format!("{} ({:.1} MB in files)", info.summary.artifacts, info.summary.artifact_bytes as f64 / 1e6),
        ],
        vec!["lineage edges".to_owned(), info.summary.lineage_edges.to_string()],
    ];
    println!("{}", table(&["", ""], &rows).trim_start());
    Ok(())
}

pub fn copy(from: &str, to: &str, database_config: PathBuf, json: bool, show_progress: bool) -> anyhow::Result<()> {
    let open =
        |locator: &str| StoreOptions { db: Some(locator.to_owned()), database_config: database_config.clone() }.open();
    // Opening a SQLite file that is not there would create an empty one and copy nothing.
    if let store::Locator::Sqlite(path) = store::Locator::parse(from)?
        && !path.is_file()
    {
        anyhow::bail!("--from {}: no such store file; check the path", path.display());
    }
    let (source, target) = (open(from)?, open(to)?);
    let bar = (show_progress && !json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} copying runs [{bar:30}] {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    });
    let mut last_line = std::time::Instant::now();
    let copied = store::copy(&*source, &*target, &mut |done, total| match &bar {
        Some(bar) => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
        None if show_progress && !json && (last_line.elapsed().as_secs() >= 5 || done == total) => {
            last_line = std::time::Instant::now();
            eprintln!("copied {done} of {total} runs");
        }
        None => {}
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if json {
        return print_json(&copied);
    }
    println!(
        "copied {} runs and {} new sweeps (the trials of others merged) from {} to {} ({} runs there already{})",
        copied.runs,
        copied.sweeps,
        source.locator(),
        target.locator(),
        copied.skipped,
        if copied.updated > 0 { format!(", {} brought up to date", copied.updated) } else { String::new() }
    );
    Ok(())
}
