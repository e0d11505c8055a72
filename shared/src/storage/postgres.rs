//! PostgreSQL: pool options, the embedded migrations, and how transactions begin.
//!
//! Several bot replicas may share one database. Every write transaction first takes one
//! transaction-scoped advisory lock, so writers run one at a time: the audit head a writer
//! reads is still the head when it appends. Reads run in a read-only REPEATABLE READ
//! transaction, so a request and its approvals come from one snapshot.
//!
//! Every change of a request's status is announced on the channel [`CHANNEL`] (a trigger,
//! migration 0006); [`PgChangeFeed`] listens to it on a connection of its own, named
//! [`LISTENER_NAME`] in `pg_stat_activity`, so gateways in other processes cut a revoked
//! session at once.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::{Transactions, error};
use crate::ports::{ChangeFeed, StoreError};

static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// Longest a statement waits for a pooled connection before the store says `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

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
    // A statement waits at most ACQUIRE_TIMEOUT for a connection: with the server gone, a
    // login is refused with its reason well within the gateway's login grace time (30 s,
    // sqlx's default wait, would let the grace time drop the client first, saying nothing).
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(error::db)?;
    migrate_checked!(&pool, HAS_MIGRATIONS, &MIGRATOR)?;
    Ok(pool)
}

/// Whether the database has a migrations table (none on a fresh one). Checked, then the
/// newest applied version read, before the migrator runs, so a binary older than the schema
/// writes nothing.
const HAS_MIGRATIONS: &str = "SELECT to_regclass('_sqlx_migrations') IS NOT NULL";

/// The channel every change of a request's status is announced on (payload: the request id).
pub const CHANNEL: &str = "breakglass_changes";

/// The `application_name` of the change feed's connection, so an operator (or a test) finds
/// it in `pg_stat_activity`.
pub const LISTENER_NAME: &str = "breakglass-listen";

/// The first wait before the change feed's connection is opened again; it doubles up to
/// [`MOST_BACKOFF`] while opening fails, and starts over once a connection has held for
/// [`STEADY`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MOST_BACKOFF: Duration = Duration::from_secs(10);
const STEADY: Duration = Duration::from_secs(30);

/// LISTEN on [`CHANNEL`] over a connection of its own (see [`ChangeFeed`]).
pub(super) struct PgChangeFeed {
    options: PgConnectOptions,
}

impl fmt::Debug for PgChangeFeed {
    // Not derived: the options carry the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgChangeFeed").field("channel", &CHANNEL).finish()
    }
}

impl PgChangeFeed {
    /// The feed of the database at `url`; nothing is connected until it is followed.
    ///
    /// # Errors
    /// `Unavailable` when the URL is malformed.
    pub(super) fn new(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(error::db)?;
        Ok(Self { options: options.application_name(LISTENER_NAME) })
    }

    /// A connection that LISTENs on [`CHANNEL`]. It does not reconnect on its own: the caller
    /// does, so it knows when to check everything again.
    async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(self.options.clone())
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.eager_reconnect(false);
        listener.ignore_pool_close_event(true);
        listener.listen(CHANNEL).await?;
        Ok(listener)
    }
}

#[async_trait]
impl ChangeFeed for PgChangeFeed {
    async fn follow(&self, wake: &tokio::sync::Notify) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.listen().await {
                Ok(mut listener) => {
                    let since = Instant::now();
                    tracing::info!(channel = CHANNEL, "following the database's change feed");
                    // Changes made while nobody listened were announced to no one.
                    wake.notify_one();
                    let why = loop {
                        match listener.try_recv().await {
                            Ok(Some(n)) => {
                                tracing::debug!(request = n.payload(), "a request changed");
                                wake.notify_one();
                            }
                            Ok(None) => break "the connection was lost".to_owned(),
                            Err(e) => break error::db(e).to_string(),
                        }
                    };
                    tracing::warn!(
                        reason = %why,
                        "the database's change feed stopped; revocations are polled until it \
                         is back"
                    );
                    if since.elapsed() >= STEADY {
                        backoff = FIRST_BACKOFF;
                    }
                }
                Err(e) => tracing::warn!(
                    error = %error::db(e),
                    retry_in = ?backoff,
                    "cannot open the database's change feed; revocations are polled until it opens"
                ),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MOST_BACKOFF);
        }
    }
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
