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
    #[error("`{0}...` is not a PostgreSQL URL: write postgres://user@host:port/database (two slashes)")]
    MissingSlashes(String),
    #[error(
        "no store given (an empty --db, HOST_DB or url): give a SQLite file path or postgres://user@host:port/database"
    )]
    Empty,
    #[error(
        "`{0}` is a SQLite in-memory or URI name: a store must outlive the command, so give a file path (or postgres://...)"
    )]
    NotAFile(String),
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

/// Removes a `password=` option from a URL's path-and-query tail; the option's value.
fn take_password_option(tail: &str) -> (String, Option<&str>) {
    let Some((path, query)) = tail.split_once('?') else { return (tail.to_owned(), None) };
    let mut password = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|option| match option.strip_prefix("password=") {
            Some(value) => {
                password = Some(value);
                false
            }
            None => true,
        })
        .collect();
    if kept.iter().all(|o| o.is_empty()) {
        (path.to_owned(), password)
    } else {
        (format!("{path}?{}", kept.join("&")), password)
    }
}

impl Locator {
    /// Reads a locator as the user wrote it.
    pub fn parse(text: &str) -> Result<Self, LocatorError> {
        if text.trim().is_empty() {
            return Err(LocatorError::Empty);
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            // `postgres:/ana@h/db` would otherwise be a SQLite file in a folder `postgres:`.
            let lower = text.to_ascii_lowercase();
            if let Some(scheme) = ["postgresql:", "postgres:"].into_iter().find(|s| lower.starts_with(s)) {
                return Err(LocatorError::MissingSlashes(text[..scheme.len()].to_owned()));
            }
            // SQLite reads `:memory:` and `file:` URIs (`mode=memory`) as stores that vanish
            // when the command ends: a run would say "recorded" and keep nothing.
            if text == ":memory:" || lower.starts_with("file:") {
                return Err(LocatorError::NotAFile(text.to_owned()));
            }
            return Ok(Locator::Sqlite(PathBuf::from(text)));
        };
        if !(scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")) {
            return Err(LocatorError::UnknownScheme(scheme.to_owned()));
        }
        // The user and password end at the last `@`: a password may hold `/`, `?`, `:` or `#`
        // unencoded, and a host never holds `@`.
        let (userinfo, rest) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (hosts, tail) = rest.split_at(authority_end);
        let (tail, query_password) = take_password_option(tail);
        let user = userinfo.map(|u| u.split_once(':').map_or(u, |(user, _)| user));
        let url = match user {
            Some(user) => format!("postgres://{user}@{hosts}{tail}"),
            None => format!("postgres://{hosts}{tail}"),
        };
        let written = userinfo.and_then(|u| u.split_once(':')).map(|(_, password)| password);
        let password = match (written, query_password) {
            (Some(password), _) | (None, Some(password)) => {
                Some(percent_decode(password).map_err(|why| LocatorError::Malformed(url.clone(), why))?)
            }
            (None, None) => None,
        };
        Ok(Locator::Postgres(PostgresUrl { url, password }))
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

    /// What a worker process needs in its environment to open this store as
    /// [`Locator::to_argument`] names it: the URL's password as `PGPASSWORD`.
    pub fn worker_env(&self) -> Vec<(String, String)> {
        self.password().map(|p| ("PGPASSWORD".to_owned(), p.to_owned())).into_iter().collect()
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

    /// A password with `/`, `?`, `@`, `:` or `#` written as it is, or given as `?password=`,
    /// is kept apart all the same: never in what is shown or handed on.
    #[test]
    fn a_password_is_never_shown_however_it_is_written() {
        for (text, password, shown) in [
            ("postgres://dan:top/secret@127.0.0.1:5432/runs", "top/secret", "postgres://dan@127.0.0.1:5432/runs"),
            ("postgres://ana:p@ss:w/rd%23#x@h:1/db", "p@ss:w/rd##x", "postgres://ana@h:1/db"),
            ("postgres://eve:a?b@h/db?sslmode=require", "a?b", "postgres://eve@h/db?sslmode=require"),
            ("postgres://bob@h:5/db?password=SECRETQ", "SECRETQ", "postgres://bob@h:5/db"),
            (
                "postgres://bob@h/db?sslmode=require&password=S%26Q&x=1",
                "S&Q",
                "postgres://bob@h/db?sslmode=require&x=1",
            ),
        ] {
            let located = Locator::parse(text).unwrap();
            assert_eq!((located.to_string().as_str(), located.password()), (shown, Some(password)), "{text}");
            assert_eq!(located.to_argument(), shown);
        }
        let error = Locator::parse("postgres://ana:p%zzsecret@h/db").unwrap_err().to_string();
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn a_mistyped_or_empty_locator_is_refused_not_taken_for_a_file() {
        assert_eq!(
            Locator::parse("postgres:/ana@127.0.0.1:5432/runs"),
            Err(LocatorError::MissingSlashes("postgres:".into()))
        );
        assert_eq!(Locator::parse("PostgreSQL:ana@h/db"), Err(LocatorError::MissingSlashes("PostgreSQL:".into())));
        assert_eq!(Locator::parse(""), Err(LocatorError::Empty));
        assert_eq!(Locator::parse("  "), Err(LocatorError::Empty));
        assert_eq!(Locator::parse("postgres.db"), Ok(Locator::Sqlite("postgres.db".into())));
        for memory in [":memory:", "file::memory:", "file:runs.db?mode=memory&cache=shared", "FILE:x.db"] {
            assert_eq!(Locator::parse(memory), Err(LocatorError::NotAFile(memory.into())), "{memory}");
        }
        assert_eq!(Locator::parse("./:memory:"), Ok(Locator::Sqlite("./:memory:".into())));
    }
}
