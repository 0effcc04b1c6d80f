//! Where a store is. A locator is what `--db`, `HOST_DB` and `database_config.yaml`'s `url` or
//! `path` give and what sweep workers are handed: `postgres://` (or `postgresql://`) URLs name
//! a PostgreSQL database; any other text without a scheme is a SQLite file. A password in the
//! URL is kept apart: never displayed, never handed on as an argument.

use std::fmt;
use std::path::PathBuf;

/// A store's address.
#[derive(Clone, PartialEq, Eq)]
pub enum Locator {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(PostgresUrl),
}

/// A PostgreSQL URL without its password, and the password the URL carried.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    /// `postgres://user@host:port/database?options`, password removed.
    pub url: String,
    /// The password written in the URL (percent-decoded), if any.
    pub password: Option<String>,
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresUrl")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl fmt::Debug for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Locator::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Locator::Postgres(url) => f.debug_tuple("Postgres").field(url).finish(),
        }
    }
}

/// Why a locator cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocatorError {
    #[error("unknown store URL scheme `{0}`; use postgres://user@host:port/database or a SQLite file path")]
    UnknownScheme(String),
    #[error("malformed PostgreSQL URL `{0}`: {1}")]
    Malformed(String, &'static str),
}

/// Decodes `%XX` escapes.
fn percent_decode(text: &str) -> Result<String, &'static str> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3).ok_or("a % escape is cut short")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "a % escape is not hexadecimal")?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "an escape is not UTF-8")
}

impl Locator {
    /// Reads a locator as the user wrote it.
    pub fn parse(text: &str) -> Result<Self, LocatorError> {
        let Some((scheme, rest)) = text.split_once("://") else { return Ok(Locator::Sqlite(PathBuf::from(text))) };
        if !(scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")) {
            return Err(LocatorError::UnknownScheme(scheme.to_owned()));
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let redacted = |user: &str| format!("postgres://{user}@{hosts}{tail}");
        let url = match userinfo {
            Some(userinfo) => match userinfo.split_once(':') {
                Some((user, password)) => {
                    let password =
                        percent_decode(password).map_err(|why| LocatorError::Malformed(redacted(user), why))?;
                    return Ok(Locator::Postgres(PostgresUrl { url: redacted(user), password: Some(password) }));
                }
                None => redacted(userinfo),
            },
            None => format!("postgres://{hosts}{tail}"),
        };
        Ok(Locator::Postgres(PostgresUrl { url, password: None }))
    }

    /// The text that gives this locator back through [`Locator::parse`], without a password:
    /// what workers get on their command line (the password reaches them through the
    /// environment, see [`Locator::password`]).
    pub fn to_argument(&self) -> String {
        match self {
            Locator::Sqlite(path) => path.display().to_string(),
            Locator::Postgres(url) => url.url.clone(),
        }
    }

    /// The password the locator's URL carried.
    pub fn password(&self) -> Option<&str> {
        match self {
            Locator::Sqlite(_) => None,
            Locator::Postgres(url) => url.password.as_deref(),
        }
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        match self {
            Locator::Sqlite(_) => "sqlite",
            Locator::Postgres(_) => "postgres",
        }
    }
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Locator::Sqlite(path) => write!(f, "{}", path.display()),
            Locator::Postgres(url) => f.write_str(&url.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_sqlite_and_urls_postgres_with_the_password_kept_apart() {
        assert_eq!(Locator::parse("stores/a.db"), Ok(Locator::Sqlite("stores/a.db".into())));
        let located = Locator::parse("postgresql://ana:s%40cr%3At@db.example:5433/runs?sslmode=require").unwrap();
        assert_eq!(located.to_string(), "postgres://ana@db.example:5433/runs?sslmode=require");
        assert_eq!(located.to_argument(), "postgres://ana@db.example:5433/runs?sslmode=require");
        assert_eq!(located.password(), Some("s@cr:t"));
        assert!(!format!("{located:?}").contains("s@cr:t"), "{located:?}");
        let plain = Locator::parse("postgres://127.0.0.1:5432/db").unwrap();
        assert_eq!((plain.to_string().as_str(), plain.password()), ("postgres://127.0.0.1:5432/db", None));
        assert_eq!(Locator::parse("postgres://ana@h/db").unwrap().to_string(), "postgres://ana@h/db");
        assert_eq!(
            Locator::parse("mysql://h/db").unwrap_err().to_string(),
            "unknown store URL scheme `mysql`; use postgres://user@host:port/database or a SQLite file path"
        );
        assert!(matches!(Locator::parse("postgres://a:%zz@h/db"), Err(LocatorError::Malformed(..))));
    }
}
