//! Config files in two phases: YAML text -> JSON value -> validated, typed config. Every
//! problem is collected and reported at once, each naming the file and the key path.

pub mod class_mapping;
pub mod database;
pub mod executor;
pub mod experiment;
pub mod schema;
pub mod sweep;

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One problem in a config file, at a key path (`model.learning_rate`, `Loader.MNISTLoader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the file; empty for the whole file.
    pub key_path: String,
    /// What is wrong and, where possible, the fix.
    pub message: String,
}

impl Problem {
    pub fn new(key_path: &str, message: impl Into<String>) -> Self {
        Problem { key_path: key_path.to_owned(), message: message.into() }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            if problem.key_path.is_empty() {
                write!(f, "{}: {}", self.file.display(), problem.message)?;
            } else {
                write!(f, "{}: {}: {}", self.file.display(), problem.key_path, problem.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn single(file: &Path, key_path: &str, message: impl Into<String>) -> Self {
        ConfigError { file: file.to_owned(), problems: vec![Problem::new(key_path, message)] }
    }
}

/// Reads a YAML file into a JSON value. YAML aliases are expanded with serde_norway's limits,
/// so a recursive or exponential alias bomb is an error, not a hang.
pub fn read_yaml(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read(path).map_err(|e| {
        let fix = if e.kind() == std::io::ErrorKind::NotFound { "; check the path" } else { "" };
        ConfigError::single(path, "", format!("cannot read the file: {e}{fix}"))
    })?;
    let text = String::from_utf8(text).map_err(|e| {
        ConfigError::single(path, "", format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
    })?;
    parse_yaml(path, &text)
}

/// Parses YAML text (named `path` in errors) into a JSON value.
pub fn parse_yaml(path: &Path, text: &str) -> Result<Value, ConfigError> {
    serde_norway::from_str::<Value>(text).map_err(|e| ConfigError::single(path, "", format!("malformed YAML: {e}")))
}
