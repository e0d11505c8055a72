//! SQLite: connection options, the embedded migrations, and how transactions begin.
//!
//! One file in WAL mode serves many readers and one writer at a time. Writers begin with
//! `BEGIN IMMEDIATE`, which takes the write lock up front: a deferred transaction would read
//! the audit head under a shared lock and could then fail to upgrade (`SQLITE_BUSY`, which the
//! busy timeout cannot resolve) when another writer got there first.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::{Transactions, error};
use crate::ports::StoreError;

static MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");

/// How long a statement waits for another connection's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (creating it and its directory if missing) the database at `url` and brings its
/// schema up to date.
///
/// An in-memory database (`sqlite::memory:`) lives only as long as its connections, so it
/// gets a pool of exactly one connection that is never closed for idleness.
///
/// # Errors
/// `Unavailable` when the URL is malformed, the file cannot be opened, or a migration fails.
pub(super) async fn connect(url: &str) -> Result<SqlitePool, StoreError> {
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let options = SqliteConnectOptions::from_str(url)
        .map_err(error::db)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        // In WAL mode NORMAL is durable against application crashes; a power loss may lose
        // the last commits but never corrupts the file.
        .synchronous(SqliteSynchronous::Normal);
    if !in_memory {
        // `sqlite://./data/breakglass.db` should work on a fresh host: create `./data` too.
        if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
    }
    let pool = if in_memory {
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        SqlitePoolOptions::new().max_connections(8)
    };
    let pool = pool.connect_with(options).await.map_err(error::db)?;
    let migrated: bool =
        sqlx::query_scalar(HAS_MIGRATIONS).fetch_one(&pool).await.map_err(error::db)?;
    if migrated {
        let applied: Option<i64> = sqlx::query_scalar(super::sql::NEWEST_MIGRATION)
            .fetch_one(&pool)
            .await
            .map_err(error::db)?;
        super::refuse_newer_schema(applied, &MIGRATOR)?;
    }
    MIGRATOR.run(&pool).await.map_err(|e| error::migrate(&e, &MIGRATOR))?;
    Ok(pool)
}

/// Whether the database has a migrations table (none on a fresh one). Checked, then the
/// newest applied version read, before the migrator runs, so a binary older than the schema
/// writes nothing.
const HAS_MIGRATIONS: &str = "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')";

impl Transactions for SqlitePool {
    type Db = Sqlite;

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }

    async fn begin_read(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        // A deferred transaction reads one WAL snapshot across all its statements.
        self.begin().await
    }
}
