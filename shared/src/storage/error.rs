//! Mapping `sqlx` errors to [`StoreError`], so nothing above the adapter sees a driver type.
//!
//! | sqlx | store |
//! | --- | --- |
//! | unique or foreign-key violation | `Conflict` (a concurrent or replayed write) |
//! | `RowNotFound` | `NotFound` |
//! | a column that does not decode | `Corrupt` |
//! | anything else (I/O, pool, protocol, other database errors) | `Unavailable` |

use crate::ports::StoreError;

/// The default mapping (see the module docs).
pub(super) fn db(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(d) if d.is_unique_violation() || d.is_foreign_key_violation() => {
            StoreError::Conflict(d.message().to_owned())
        }
        e @ (sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }) => StoreError::Corrupt(e.to_string()),
        e => StoreError::Unavailable(e.to_string()),
    }
}

/// Like [`db`], but a unique violation becomes `Conflict(what)`: a message for the caller
/// rather than the database's wording.
pub(super) fn unique(what: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(what.to_owned())
        }
        e => db(e),
    }
}

/// A migration that failed or no longer matches what this build embeds. A migration applied
/// to the database that this build does not know (a newer replica migrated it meanwhile) is
/// said as [`newer_schema`] says it.
pub(super) fn migrate(
    e: &sqlx::migrate::MigrateError,
    known: &sqlx::migrate::Migrator,
) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::VersionMissing(v) => newer_schema(*v, known),
        e => StoreError::Unavailable(format!("database migrations failed: {e}")),
    }
}

/// The schema is at `applied`, newer than the newest migration this build knows.
pub(super) fn newer_schema(applied: i64, known: &sqlx::migrate::Migrator) -> StoreError {
    let ours = known.iter().map(|m| m.version).max().unwrap_or(0);
    StoreError::Unavailable(format!(
        "the database schema is at version {applied}, newer than this breakglass knows \
         ({ours}): upgrade this replica"
    ))
}
