//! Schema versions, the same rule for every backend: migrations are an append-only list, each
//! bringing the schema to its `version` and saying whether it is additive (new tables, new
//! nullable columns, new indexes: an older host can go on using the store). A store records its
//! version and `compatible_from`, the newest non-additive migration it has: a host that knows
//! at least that version keeps working with a store from a newer host; an older one is refused,
//! naming the version it needs.

use anyhow::bail;

/// One step of a backend's schema.
pub struct Migration {
    pub version: u32,
    pub additive: bool,
    pub sql: &'static str,
}

/// The newest version in `migrations`.
pub fn known(migrations: &[Migration]) -> u32 {
    migrations.last().map_or(0, |m| m.version)
}

/// The `compatible_from` a store has after applying `migrations` beyond `from`.
pub fn compatible_from(migrations: &[Migration], from: u32, previous: u32) -> u32 {
    migrations.iter().filter(|m| m.version > from && !m.additive).map(|m| m.version).fold(previous, u32::max)
}

/// Refuses a store this host cannot use. `Ok(true)` when it has migrations to apply.
pub fn check(store: &str, version: u32, compatible_from: u32, migrations: &[Migration]) -> anyhow::Result<bool> {
    let known = known(migrations);
    if version > known {
        if compatible_from > known {
            bail!(
                "{store}: written by a newer host (schema {version}); it needs a host that knows schema {compatible_from} or later, this host knows {known}; upgrade the host"
            );
        }
        tracing::info!(
            "{store}: schema {version} from a newer host, compatible from {compatible_from}; this host knows {known}"
        );
        return Ok(false);
    }
    Ok(version < known)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATIONS: &[Migration] =
        &[Migration { version: 3, additive: false, sql: "" }, Migration { version: 4, additive: true, sql: "" }];

    #[test]
    fn a_newer_store_is_used_when_its_newer_migrations_are_additive() {
        assert!(check("s", 0, 0, MIGRATIONS).unwrap(), "an empty store migrates");
        assert!(!check("s", 4, 3, MIGRATIONS).unwrap(), "a current store does not");
        assert!(!check("s", 6, 4, MIGRATIONS).unwrap(), "a newer one whose breaking change this host knows is used");
        let error = check("s", 6, 5, MIGRATIONS).unwrap_err().to_string();
        assert_eq!(
            error,
            "s: written by a newer host (schema 6); it needs a host that knows schema 5 or later, this host knows 4; upgrade the host"
        );
        assert_eq!(compatible_from(MIGRATIONS, 0, 0), 3);
        assert_eq!(compatible_from(MIGRATIONS, 3, 3), 3, "an additive migration keeps it");
    }
}
