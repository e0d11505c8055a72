//! The database test harness: a fresh, empty database per test, on either backend. Used by
//! the storage tests, the bot's API tests and the end-to-end tests.
//!
//! - SQLite: a new file in a temporary directory (a file, not `:memory:`, so WAL and several
//!   pooled connections are exercised as in production).
//! - PostgreSQL: a new database `bg_test_<random hex>` on the server named by
//!   `BREAKGLASS_TEST_PG_URL` (default [`DEFAULT_PG_URL`]), dropped after the test. If the server
//!   cannot be reached the test fails and says how to start it: it is never skipped.
//!
//! A test body is written once, `async fn(TestDb) -> TestResult`, and [`run`] on each backend.

use std::future::Future;
use std::sync::Arc;

use crate::ports::Store;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Connection as _};

/// What a test body returns; `?` works on store and sqlx errors alike.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Where the PostgreSQL tests go unless `BREAKGLASS_TEST_PG_URL` says otherwise.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What a test body gets: the store under test, and a side door to the same database.
#[derive(Debug)]
pub struct TestDb {
    pub store: Arc<dyn Store>,
    pub admin: Admin,
}

/// Raw SQL on the test database, with the rights of its owner: what a database administrator
/// (or an attacker holding those credentials) could do behind the adapter's back.
#[derive(Debug, Clone)]
pub struct Admin {
    pub backend: Backend,
    /// The URL the store was connected with.
    pub url: String,
}

impl Admin {
    /// Runs `sql` (one or more statements) on a connection of its own; the rows it changed.
    pub async fn exec(&self, sql: &str) -> Result<u64, sqlx::Error> {
        // Test-only SQL written by the tests themselves.
        let sql = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()));
        match self.backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(&self.url).await?;
                let done = sql.execute(&mut conn).await?;
                conn.close().await?;
                Ok(done.rows_affected())
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.url).await?;
                let done = sql.execute(&mut conn).await?;
                conn.close().await?;
                Ok(done.rows_affected())
            }
        }
    }

    /// The first column of every row `sql` returns, as integers (counts, versions, pids).
    pub async fn numbers(&self, sql: &str) -> Result<Vec<i64>, sqlx::Error> {
        // Test-only SQL written by the tests themselves.
        let sql = AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(&self.url).await?;
                let rows = sqlx::query_scalar(sql).fetch_all(&mut conn).await?;
                conn.close().await?;
                Ok(rows)
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.url).await?;
                let rows = sqlx::query_scalar(sql).fetch_all(&mut conn).await?;
                conn.close().await?;
                Ok(rows)
            }
        }
    }

    /// Simulates losing the database under a running process (PostgreSQL only): refuses new
    /// connections to the test database and ends every existing one. The store's pool is left
    /// with nothing that works, exactly as when the server goes away.
    ///
    /// # Errors
    /// SQL failures; on SQLite, always (a file cannot be taken away like that).
    pub async fn terminate_connections_and_block(&self) -> Result<u64, sqlx::Error> {
        if self.backend != Backend::Postgres {
            return Err(sqlx::Error::Protocol("only PostgreSQL can lose its server".into()));
        }
        let name = self
            .url
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let admin = with_database(&self.url, "postgres");
        let mut conn = PgConnection::connect(&admin).await?;
        // `name` is our own bg_test_<hex>; identifiers cannot be bind parameters.
        let sql = format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid();"
        );
        let done = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
        conn.close().await?;
        Ok(done.rows_affected())
    }

    /// Drops trigger `name` (one of those the migrations create), in this backend's syntax.
    pub async fn drop_trigger(&self, name: &str, table: &str) -> Result<u64, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.exec(&format!("DROP TRIGGER {name}")).await,
            Backend::Postgres => self.exec(&format!("DROP TRIGGER {name} ON {table}")).await,
        }
    }
}

/// Sets up a fresh database on `backend`, runs `body` against it, cleans up (even when the
/// body failed), then reports the body's outcome.
pub async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = TestResult> + 'static,
{
    let (db, cleanup) = match backend {
        Backend::Sqlite => open_sqlite().await,
        Backend::Postgres => open_postgres().await,
    };
    // A local task, so a panicking assertion is caught and the cleanup below still runs.
    let test = body(db);
    let outcome = tokio::task::LocalSet::new()
        .run_until(async move { tokio::task::spawn_local(test).await })
        .await;
    cleanup.run().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("test failed on {backend:?}: {e}"),
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// What to remove once a test is over.
enum Cleanup {
    /// The temporary directory holding the SQLite file; removed on drop.
    Dir(tempfile::TempDir),
    /// The test database and the admin URL to drop it from.
    PgDatabase { admin_url: String, name: String },
}

impl Cleanup {
    async fn run(self) {
        match self {
            Self::Dir(dir) => drop(dir),
            Self::PgDatabase { admin_url, name } => {
                // Best effort: a leftover bg_test_* database is only clutter. FORCE ends the
                // store's pooled connections, which are still open.
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let drop_db = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(AssertSqlSafe(drop_db)).execute(&mut conn).await;
                    let _ = conn.close().await;
                }
            }
        }
    }
}

async fn open_sqlite() -> (TestDb, Cleanup) {
    let dir = tempfile::tempdir().expect("a temporary directory for the SQLite file");
    // In a directory that does not exist yet: `connect` creates it.
    let url = format!("sqlite://{}", dir.path().join("data/breakglass.db").display());
    let store = crate::storage::connect(&url).await.expect("the SQLite store opens");
    (TestDb { store, admin: Admin { backend: Backend::Sqlite, url } }, Cleanup::Dir(dir))
}

async fn open_postgres() -> (TestDb, Cleanup) {
    let admin_url =
        std::env::var("BREAKGLASS_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
    let mut conn = match PgConnection::connect(&admin_url).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {admin_url}: {e}\n\
             The storage tests run against PostgreSQL as well as SQLite. Start it, e.g.\n  \
             sudo pg_ctlcluster 15 main start\n\
             or\n  \
             docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15\n\
             and `createdb -h 127.0.0.1 -U postgres test`, or set BREAKGLASS_TEST_PG_URL to a \
             server where this user may CREATE DATABASE."
        ),
    };
    let name = format!("bg_test_{}", uuid::Uuid::new_v4().simple());
    // `name` is our own hex; identifiers cannot be bind parameters.
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {admin_url}: {e}"));
    let _ = conn.close().await;
    let url = with_database(&admin_url, &name);
    let cleanup = Cleanup::PgDatabase { admin_url, name };
    let store = match crate::storage::connect(&url).await {
        Ok(s) => s,
        Err(e) => {
            cleanup.run().await;
            panic!("the PostgreSQL store does not open on the fresh test database: {e}");
        }
    };
    (TestDb { store, admin: Admin { backend: Backend::Postgres, url } }, cleanup)
}

/// A fresh PostgreSQL database for a test that hands its URL to another process (the
/// end-to-end tests run the real binary). Drop it with [`PgDatabase::remove`].
#[derive(Debug, Clone)]
pub struct PgDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgDatabase {
    /// Creates `bg_test_<random>` on the server named by `BREAKGLASS_TEST_PG_URL`.
    ///
    /// # Panics
    /// When PostgreSQL cannot be reached (the message says how to start it).
    pub async fn create() -> Self {
        let admin_url =
            std::env::var("BREAKGLASS_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
        let mut conn = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable at {admin_url}: {e}; run the tests with scripts/test, which starts one")
        });
        let name = format!("bg_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
        Self { url: with_database(&admin_url, &name), admin_url, name }
    }

    /// Drops the database (best effort).
    pub async fn remove(self) {
        Cleanup::PgDatabase { admin_url: self.admin_url, name: self.name }.run().await;
    }
}

/// `url` with its database (the path) replaced by `name`, keeping any `?query`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    format!("{server}/{name}{query}")
}
