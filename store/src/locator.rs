//! Where a store is. A locator is what `--db` and `HOST_DB` take and what sweep workers are
//! given; any text that names no other backend is a SQLite file.

use std::fmt;
use std::path::PathBuf;

/// A store's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    /// A SQLite file.
    Sqlite(PathBuf),
}

impl Locator {
    /// Reads a locator as the user wrote it.
    pub fn parse(text: &str) -> Self {
        Locator::Sqlite(PathBuf::from(text))
    }

    /// The text that gives this locator back through [`Locator::parse`] (for workers).
    pub fn to_argument(&self) -> String {
        match self {
            Locator::Sqlite(path) => path.display().to_string(),
        }
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        match self {
            Locator::Sqlite(_) => "sqlite",
        }
    }
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Locator::Sqlite(path) => write!(f, "{}", path.display()),
        }
    }
}
