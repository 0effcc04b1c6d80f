//! `config/database_config.yaml`: which store a command uses when `--db` and `HOST_DB` are not
//! given (`url`: a PostgreSQL URL or a SQLite file; `path`: a SQLite file), how long writers
//! wait and retry, when a silent run counts as dead, and where the stage cache keeps prepared
//! splits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plugin_sdk::{ConfigKey, ConfigType};
use serde_json::Value;

use super::schema::check_section;
use super::{ConfigError, Problem, read_yaml};

/// The database config, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    /// The store's locator: a PostgreSQL URL or a SQLite file (relative to the working folder).
    pub url: String,
    pub timeout: Duration,
    pub journal_mode: String,
    pub synchronous: String,
    pub connect_timeout: Duration,
    pub retry: Duration,
    /// A run recorded as running whose heartbeat is older than this is taken for dead (when
    /// its process cannot be looked up from here).
    pub stale_after: Duration,
    /// The stage cache's folder; `None`: beside a SQLite store's file, `provenance.cache` in the
    /// working folder for PostgreSQL.
    pub cache_dir: Option<PathBuf>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "provenance.db".into(),
            timeout: Duration::from_secs(30),
            journal_mode: "wal".into(),
            synchronous: "normal".into(),
            connect_timeout: Duration::from_secs(10),
            retry: Duration::from_secs(60),
            stale_after: Duration::from_secs(120),
            cache_dir: None,
        }
    }
}

impl DatabaseConfig {
    fn keys() -> Vec<ConfigKey> {
        vec![
            ConfigKey::new("", "url", ConfigType::String)
                .describe("the store: postgres://user@host:port/database, or a SQLite file"),
            ConfigKey::new("", "path", ConfigType::String)
                .describe("the SQLite file, relative to the working folder (default provenance.db)"),
            ConfigKey::new("", "timeout_seconds", ConfigType::Number)
                .default(30)
                .describe("how long a writer waits for a busy store"),
            ConfigKey::new(
                "",
                "journal_mode",
                ConfigType::Choice(vec!["wal".into(), "delete".into(), "truncate".into()]),
            )
            .default("wal"),
            ConfigKey::new("", "synchronous", ConfigType::Choice(vec!["normal".into(), "full".into()]))
                .default("normal"),
            ConfigKey::new("", "connect_timeout_seconds", ConfigType::Number)
                .default(10)
                .describe("PostgreSQL: how long to wait for the server to answer"),
            ConfigKey::new("", "retry_seconds", ConfigType::Number)
                .default(60)
                .describe("PostgreSQL: how long a run retries its writes while the server is away"),
            ConfigKey::new("", "stale_after_seconds", ConfigType::Number)
                .default(120)
                .describe("a running run silent this long (no heartbeat) is taken for dead"),
            ConfigKey::new("", "cache_dir", ConfigType::String)
                .describe("the stage cache's folder (prepared splits); default: beside the SQLite file"),
        ]
    }

    /// Reads the file when it exists; otherwise the defaults.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        if !file.is_file() {
            return Ok(DatabaseConfig::default());
        }
        let value = read_yaml(file)?;
        let keys = Self::keys();
        let refs: Vec<&ConfigKey> = keys.iter().collect();
        let mut problems = Vec::new();
        let filled = check_section(Some(&value), "", &refs, "the database config", &mut problems);
        let mut seconds = |key: &str, default: f64, range: std::ops::RangeInclusive<f64>| {
            let value = filled.get(key).and_then(Value::as_f64).unwrap_or(default);
            if !range.contains(&value) {
                problems.push(Problem::new(
                    key,
                    format!("must be between {} and {}, found {value}", range.start(), range.end()),
                ));
            }
            Duration::from_secs_f64(value.clamp(*range.start(), *range.end()))
        };
        let timeout = seconds("timeout_seconds", 30.0, 0.0..=3600.0);
        let connect_timeout = seconds("connect_timeout_seconds", 10.0, 0.1..=600.0);
        let retry = seconds("retry_seconds", 60.0, 0.0..=86_400.0);
        let stale_after = seconds("stale_after_seconds", 120.0, 5.0..=86_400.0);
        let text = |key: &str| filled.get(key).and_then(Value::as_str).map(str::to_owned);
        if text("url").is_some() && text("path").is_some() {
            problems.push(Problem::new("url", "give `url` or `path`, not both (`url` takes a SQLite file too)"));
        }
        if !problems.is_empty() {
            return Err(ConfigError { file: file.to_owned(), problems });
        }
        Ok(DatabaseConfig {
            url: text("url").or_else(|| text("path")).unwrap_or_else(|| "provenance.db".into()),
            timeout,
            journal_mode: text("journal_mode").unwrap_or_default(),
            synchronous: text("synchronous").unwrap_or_default(),
            connect_timeout,
            retry,
            stale_after,
            cache_dir: text("cache_dir").map(PathBuf::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_config_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("database_config.yaml");
        std::fs::write(&file, "path: x.db\ntimeout_seconds: 2\njournal_mode: wall\n").unwrap();
        let error = DatabaseConfig::load(&file).unwrap_err().to_string();
        assert!(
            error
                .ends_with("database_config.yaml: journal_mode: expected one of wal, delete, truncate, found \"wall\""),
            "{error}"
        );
        std::fs::write(&file, "path: x.db\ntimeout_seconds: 2\ncache_dir: /c\nstale_after_seconds: 30\n").unwrap();
        let config = DatabaseConfig::load(&file).unwrap();
        assert_eq!((config.url.as_str(), config.timeout), ("x.db", Duration::from_secs(2)));
        assert_eq!((config.cache_dir, config.stale_after), (Some(PathBuf::from("/c")), Duration::from_secs(30)));
        std::fs::write(&file, "url: postgres://h/db\npath: x.db\nretry_seconds: -1\n").unwrap();
        let error = DatabaseConfig::load(&file).unwrap_err().to_string();
        assert!(error.contains("retry_seconds: must be between 0 and 86400, found -1"), "{error}");
        assert!(error.contains("url: give `url` or `path`, not both"), "{error}");
        assert_eq!(DatabaseConfig::load(&dir.path().join("absent.yaml")).unwrap(), DatabaseConfig::default());
    }
}
