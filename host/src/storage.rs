//! Which store and stage cache a command uses: the locator from `--db`, `HOST_DB` or
//! `config/database_config.yaml`; opening it; and, on every open, marking runs whose process
//! died as interrupted. The stage cache's folder is configured, or for a SQLite store defaults
//! to the folder beside its file (`provenance.db` -> `provenance.cache/`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use store::{Locator, OpenOptions, Store};

use crate::config::database::DatabaseConfig;

/// How long a run on another machine may go without a heartbeat before it counts as dead.
const STALE_AFTER: Duration = Duration::from_secs(120);

/// Where the provenance store is: `--db` (or `HOST_DB`), else `config/database_config.yaml`,
/// else defaults.
pub struct StoreOptions {
    pub db: Option<String>,
    pub database_config: PathBuf,
}

/// A store's locator, how to open it, and the stage cache's folder.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub locator: Locator,
    pub open: OpenOptions,
    pub cache_dir: PathBuf,
}

/// The stage cache's default folder for a store: beside a SQLite file.
fn default_cache_dir(locator: &Locator) -> PathBuf {
    match locator {
        Locator::Sqlite(path) => {
            let stem =
                path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "provenance".into());
            path.with_file_name(format!("{stem}.cache"))
        }
    }
}

impl StoreOptions {
    /// The settings the options name, with the database config's values filled in.
    pub fn settings(&self) -> anyhow::Result<StoreSettings> {
        let config = DatabaseConfig::load(&self.database_config)?;
        let locator = Locator::parse(self.db.as_deref().unwrap_or(&config.path));
        let cache_dir = config.cache_dir.clone().unwrap_or_else(|| default_cache_dir(&locator));
        let open =
            OpenOptions { timeout: config.timeout, journal_mode: config.journal_mode, synchronous: config.synchronous };
        Ok(StoreSettings { locator, open, cache_dir })
    }

    /// Opens the store and marks runs whose process died as interrupted.
    pub fn open(&self) -> anyhow::Result<Box<dyn Store>> {
        open(&self.settings()?)
    }
}

/// Opens the store of `settings` and marks runs whose process died as interrupted.
pub fn open(settings: &StoreSettings) -> anyhow::Result<Box<dyn Store>> {
    let store = store::open(&settings.locator, &settings.open)?;
    for run_id in crate::liveness::mark_dead_runs(&*store, STALE_AFTER)? {
        tracing::warn!("run {run_id} stopped without finishing; marked interrupted");
    }
    Ok(store)
}

/// The provenance record keeps paths as text, so a path that is not UTF-8 is refused before
/// anything is recorded rather than written down wrongly.
pub fn require_utf8(path: &Path, what: &str) -> anyhow::Result<()> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    if absolute.to_str().is_none() {
        anyhow::bail!(
            "{}: the {what} path is not valid UTF-8; the provenance record keeps paths as text, so rename it",
            absolute.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_folder_is_configured_or_beside_a_sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        let options = |db: Option<&str>| StoreOptions {
            db: db.map(str::to_owned),
            database_config: dir.path().join("database_config.yaml"),
        };
        let settings = options(Some("stores/a.db")).settings().unwrap();
        assert_eq!(settings.locator, Locator::Sqlite("stores/a.db".into()));
        assert_eq!(settings.cache_dir, PathBuf::from("stores/a.cache"));
        assert_eq!(options(None).settings().unwrap().cache_dir, PathBuf::from("provenance.cache"));
        std::fs::write(dir.path().join("database_config.yaml"), "path: b.db\ncache_dir: /shared/cache\n").unwrap();
        let settings = options(None).settings().unwrap();
        assert_eq!((settings.locator, settings.cache_dir), (Locator::Sqlite("b.db".into()), "/shared/cache".into()));
    }
}
