//! Which store and stage cache a command uses: the locator from `--db` (or `HOST_DB`), else
//! `config/database_config.yaml` (`url` or `path`), else `provenance.db`; opening it; and, on
//! every open, marking runs whose process died as interrupted. The stage cache's folder is
//! configured (`cache_dir`), or defaults to the folder beside a SQLite store's file
//! (`provenance.db` -> `provenance.cache/`), or `provenance.cache/` here for PostgreSQL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use store::{Locator, OpenOptions, Store};

use crate::config::database::DatabaseConfig;

/// Where the provenance store is: `--db` (or `HOST_DB`), else `config/database_config.yaml`,
/// else defaults.
pub struct StoreOptions {
    pub db: Option<String>,
    pub database_config: PathBuf,
}

/// A store's locator, how to open it, the stage cache's folder, and when a silent run is dead.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub locator: Locator,
    pub open: OpenOptions,
    pub cache_dir: PathBuf,
    pub stale_after: Duration,
}

/// The stage cache's default folder for a store: beside a SQLite file; for a server, here.
fn default_cache_dir(locator: &Locator) -> PathBuf {
    match locator {
        Locator::Sqlite(path) => {
            let stem =
                path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "provenance".into());
            path.with_file_name(format!("{stem}.cache"))
        }
        Locator::Postgres(_) => PathBuf::from("provenance.cache"),
    }
}

impl StoreSettings {
    /// The same settings with a SQLite file's path and the stage cache's folder made absolute
    /// against this folder: for a command that then moves to a recorded run's folder (replay,
    /// report) and opens the store or the cache again from there.
    pub fn anchored_here(mut self) -> Self {
        let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        if let Locator::Sqlite(path) = &self.locator {
            self.locator = Locator::Sqlite(absolute(path));
        }
        self.cache_dir = absolute(&self.cache_dir);
        self
    }
}

impl StoreOptions {
    /// The settings the options name, with the database config's values filled in.
    pub fn settings(&self) -> anyhow::Result<StoreSettings> {
        let config = DatabaseConfig::load(&self.database_config)?;
        let locator = match &self.db {
            Some(db) => Locator::parse(db).with_context(|| "the store given by --db or HOST_DB".to_owned())?,
            None => Locator::parse(&config.url).with_context(|| format!("{}: url", self.database_config.display()))?,
        };
        let cache_dir = config.cache_dir.clone().unwrap_or_else(|| default_cache_dir(&locator));
        let open = OpenOptions {
            timeout: config.timeout,
            journal_mode: config.journal_mode,
            synchronous: config.synchronous,
            connect_timeout: config.connect_timeout,
            retry_for: config.retry,
        };
        Ok(StoreSettings { locator, open, cache_dir, stale_after: config.stale_after })
    }

    /// Opens the store and marks runs whose process died as interrupted.
    pub fn open(&self) -> anyhow::Result<Box<dyn Store>> {
        open(&self.settings()?)
    }

    /// Whether there is a store to read: a SQLite file that is there (a server is always).
    pub fn exists(&self) -> anyhow::Result<bool> {
        Ok(match self.settings()?.locator {
            Locator::Sqlite(path) => path.exists(),
            Locator::Postgres(_) => true,
        })
    }

    /// Opens the store for a command that only reads it; see [`open_read`].
    pub fn open_read(&self) -> anyhow::Result<Box<dyn Store>> {
        open_read(&self.settings()?)
    }
}

/// Opens the store of `settings` and marks runs whose process died as interrupted.
pub fn open(settings: &StoreSettings) -> anyhow::Result<Box<dyn Store>> {
    let store = store::open(&settings.locator, &settings.open)?;
    for run_id in crate::liveness::mark_dead_runs(&*store, settings.stale_after)? {
        tracing::warn!("run {run_id} stopped without finishing; marked interrupted");
    }
    Ok(store)
}

/// Opens the store of `settings` for reading (a SQLite file read-only: nothing created,
/// migrated or left behind), so a user who may only read it can query it. Runs whose process
/// died are marked interrupted, through a connection that may write, where this user may.
pub fn open_read(settings: &StoreSettings) -> anyhow::Result<Box<dyn Store>> {
    let store = store::open_read_only(&settings.locator, &settings.open)?;
    mark_dead_if_allowed(&*store, settings);
    Ok(store)
}

/// Marks runs whose process died as interrupted (found through `reader`, written through a
/// connection that may write), where the store lets this user write; said at debug level
/// where it does not.
pub fn mark_dead_if_allowed(reader: &dyn Store, settings: &StoreSettings) {
    let marked = crate::liveness::dead_runs(reader, settings.stale_after).and_then(|dead| {
        if dead.is_empty() {
            return Ok(Vec::new());
        }
        let writer = store::open(&settings.locator, &settings.open)?;
        crate::liveness::mark_interrupted(&*writer, dead)
    });
    match marked {
        Ok(marked) => {
            for run_id in marked {
                tracing::warn!("run {run_id} stopped without finishing; marked interrupted");
            }
        }
        Err(error) => tracing::debug!("dead runs not marked (a store this user may only read?): {error:#}"),
    }
}

/// A name made safe as one file or folder name (a sweep's folder, a job name): characters other
/// than ASCII letters, digits, `.`, `_` and `-` become `_`, a leading dot too, and it is cut
/// to 100 characters; so `../../x` or `/tmp/x` can never leave the folder it is joined to.
pub fn safe_file_name(name: &str) -> String {
    let mut safe: String = name
        .chars()
        .take(100)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    if safe.is_empty() || safe.starts_with('.') {
        safe.insert(0, '_');
    }
    safe
}

/// `path` made absolute against the working folder (as it is where it cannot be).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
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
    fn names_become_one_safe_file_name() {
        for (name, safe) in [
            ("mnist-cnn_v2.1", "mnist-cnn_v2.1"),
            ("../../x", "_.._.._x"),
            ("/tmp/abs", "_tmp_abs"),
            (".hidden", "_.hidden"),
            ("", "_"),
            ("<script>alert(1)</script>", "_script_alert_1___script_"),
            ("ünï cödé", "_n__c_d_"),
        ] {
            assert_eq!(safe_file_name(name), safe, "{name}");
        }
        assert_eq!(safe_file_name(&"a".repeat(300)).len(), 100);
    }

    #[test]
    fn the_locator_and_the_cache_folder_come_from_the_options_then_the_config() {
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
        std::fs::write(dir.path().join("database_config.yaml"), "url: postgres://ana@db:5433/runs\n").unwrap();
        let settings = options(None).settings().unwrap();
        assert_eq!(settings.locator.to_string(), "postgres://ana@db:5433/runs");
        assert_eq!(settings.cache_dir, PathBuf::from("provenance.cache"));
        // Anchored before a command leaves this folder: both paths absolute, a server as it was.
        let here = std::env::current_dir().unwrap();
        let anchored = options(Some("stores/a.db")).settings().unwrap().anchored_here();
        assert_eq!(anchored.locator, Locator::Sqlite(here.join("stores/a.db")));
        assert_eq!(anchored.cache_dir, here.join("stores/a.cache"));
        let anchored = settings.anchored_here();
        assert_eq!(anchored.locator.to_string(), "postgres://ana@db:5433/runs");
        assert_eq!(anchored.cache_dir, here.join("provenance.cache"));
        let error = options(Some("mysql://h/db")).settings().unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "the store given by --db or HOST_DB: unknown store URL scheme `mysql`; use postgres://user@host:port/database or a SQLite file path"
        );
    }
}
