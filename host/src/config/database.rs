//! `config/database_config.yaml`: which store a command uses when `--db` and `HOST_DB` are not
//! given, how long writers wait, and where the stage cache keeps prepared splits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plugin_sdk::{ConfigKey, ConfigType};
use serde_json::Value;

use super::schema::check_section;
use super::{ConfigError, Problem, read_yaml};

/// The database config, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    /// The store's locator (a SQLite file, relative to the working folder).
    pub path: String,
    pub timeout: Duration,
    pub journal_mode: String,
    pub synchronous: String,
    /// The stage cache's folder; `None`: beside a SQLite store's file.
    pub cache_dir: Option<PathBuf>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            path: "provenance.db".into(),
            timeout: Duration::from_secs(30),
            journal_mode: "wal".into(),
            synchronous: "normal".into(),
            cache_dir: None,
        }
    }
}

impl DatabaseConfig {
    fn keys() -> Vec<ConfigKey> {
        vec![
            ConfigKey::new("", "path", ConfigType::String)
                .default("provenance.db")
                .describe("the SQLite file, relative to the working folder"),
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
        let timeout = filled.get("timeout_seconds").and_then(Value::as_f64).unwrap_or(30.0);
        if !(0.0..=3600.0).contains(&timeout) {
            problems.push(Problem::new("timeout_seconds", format!("must be between 0 and 3600, found {timeout}")));
        }
        if !problems.is_empty() {
            return Err(ConfigError { file: file.to_owned(), problems });
        }
        let text = |key: &str| filled.get(key).and_then(Value::as_str).map(str::to_owned);
        Ok(DatabaseConfig {
            path: text("path").unwrap_or_default(),
            timeout: Duration::from_secs_f64(timeout),
            journal_mode: text("journal_mode").unwrap_or_default(),
            synchronous: text("synchronous").unwrap_or_default(),
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
        std::fs::write(&file, "path: x.db\ntimeout_seconds: 2\ncache_dir: /c\n").unwrap();
        let config = DatabaseConfig::load(&file).unwrap();
        assert_eq!((config.path.as_str(), config.timeout), ("x.db", Duration::from_secs(2)));
        assert_eq!(config.cache_dir, Some(PathBuf::from("/c")));
        assert_eq!(DatabaseConfig::load(&dir.path().join("absent.yaml")).unwrap(), DatabaseConfig::default());
    }
}
