//! PostgreSQL: pool options, the embedded migrations, and how transactions begin.
//!
//! Several bot replicas may share one database. Every write transaction first takes one
//! transaction-scoped advisory lock, so writers run one at a time: the audit head a writer
//! reads is still the head when it appends. Reads run in a read-only REPEATABLE READ
//! transaction, so a request and its approvals come from one snapshot.

use std::str::FromStr;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::{Transactions, error};
use crate::ports::StoreError;

static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// The advisory lock key all breakglass writers share: "brkglass" in ASCII.
const WRITE_LOCK: i64 = 0x6272_6b67_6c61_7373;

/// Connects to the database at `url` and brings its schema up to date (the migrator takes its
/// own advisory lock, so replicas starting together are safe).
///
/// # Errors
/// `Unavailable` when the URL is malformed, the server cannot be reached or refuses us, or a
/// migration fails.
pub(super) async fn connect(url: &str) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url).map_err(error::db)?;
    let pool =
        PgPoolOptions::new().max_connections(10).connect_with(options).await.map_err(error::db)?;
    MIGRATOR.run(&pool).await.map_err(|e| error::migrate(&e))?;
    Ok(pool)
}

impl Transactions for PgPool {
    type Db = Postgres;

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITE_LOCK).execute(&mut *tx).await?;
        Ok(tx)
    }

    async fn begin_read(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await
    }
}
