//! The sqlx storage adapter: [`Store`] on SQLite (the embedded default) and PostgreSQL (for
//! several replicas), chosen by the URL given to [`connect`].
//!
//! # Layout
//!
//! - `sql.rs`: every statement, written once in the subset both dialects share.
//! - `rows.rs`: rows as stored, and their parsing back into core types.
//! - `sqlite.rs`, `postgres.rs`: connection options, embedded migrations, and how each
//!   backend begins read and write transactions (the one thing the shared SQL cannot say).
//! - `error.rs`: `sqlx::Error` to [`StoreError`].
//! - [`change_feed`]: on PostgreSQL, the LISTEN side of the announcements every status change
//!   makes (a trigger), for gateways in other processes.
//!
//! The schema lives in `migrations/sqlite` and `migrations/postgres` at the workspace root and
//! is applied by [`connect`].
//!
//! # Invariants
//!
//! - Every write that changes state appends its audit events in the same transaction, linked
//!   to the head it read inside that transaction. Write transactions are serialised (SQLite
//!   `BEGIN IMMEDIATE`, a PostgreSQL advisory lock), and `seq` is the primary key, so the chain
//!   cannot fork even if that serialisation were lost.
//! - A failed write leaves nothing behind: the transaction is dropped, which rolls it back.
//! - A database whose schema is newer than this build's migrations is refused before anything
//!   is written (`the database schema is at version N, newer than this breakglass knows (M)`);
//!   migrations from replicas starting together run once (sqlx's advisory lock on PostgreSQL,
//!   SQLite's write lock).
//! - The adapter never updates or deletes `audit_events`, `approvals` or `consumed_nonces`;
//!   database triggers refuse it too.

mod error;
mod postgres;
mod rows;
mod sql;
mod sqlite;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Transaction};

use crate::core::Origin;
use crate::core::RequestId;
use crate::core::{
    AuditDraft, AuditEntry, PrincipalName, Request, RequestRef, Timestamp, Transition,
};
use crate::ports::{
    AuditLog, ChangeFeed, ChatOutbox, ChatThread, CommandSearch, LinkRefusal, PoolUse,
    RecordingRecord, RequestFilter, Requests, ReviewAccess, ReviewLink, SessionEvent, SessionLog,
    Store, StoreError,
};
use rows::{ApprovalRow, AuditRow, ChatThreadRow, RecordingRow, RequestRow, SessionEventRow};

/// Most requests one listing returns, whatever the caller asks.
pub const MAX_LIST: u32 = 1000;
/// Requests a listing returns when the caller asks for 0.
pub const DEFAULT_LIST: u32 = 100;
/// Most audit entries one page returns, whatever the caller asks.
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// Connects to the database named by `url`, applies the embedded migrations, and returns the
/// store.
///
/// - `sqlite://path/to/file.db` (created if missing; WAL, foreign keys, 5 s busy timeout) or
///   `sqlite::memory:` (one connection; gone when the store is dropped).
/// - `postgres://user@host:port/db` or `postgresql://...`.
///
/// # Errors
/// `Unavailable` for an unknown scheme, a database that cannot be reached or opened, or a
/// failed migration (e.g. a migration file changed after it was applied).
///
/// # Security
/// The URL may carry a password: it is never put into errors or `Debug` output.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let db = if url.starts_with("sqlite:") {
        Db::Sqlite(sqlite::connect(url).await?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Db::Pg(postgres::connect(url).await?)
    } else {
        // Name the scheme only when it looks like one: the text before a `:` may be anything,
        // a password included (`host=db password=...`).
        let scheme = url
            .split_once(':')
            .map(|(s, _)| s)
            .filter(|s| s.len() <= 16 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '+'));
        return Err(StoreError::Unavailable(match scheme {
            Some(s) => {
                format!("unsupported database URL scheme `{s}`: use sqlite:// or postgres://")
            }
            None => "unsupported database URL: use sqlite://PATH or postgres://USER@HOST/DB".into(),
        }));
    };
    Ok(Arc::new(SqlStore { db }))
}

/// The change feed of the database at `url` (see [`ChangeFeed`]): PostgreSQL's, or `None` on
/// SQLite, where one process wakes its own gateway. Nothing connects until it is followed.
///
/// # Errors
/// `Unavailable` for a PostgreSQL URL that does not parse.
pub fn change_feed(url: &str) -> Result<Option<Arc<dyn ChangeFeed>>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Some(Arc::new(postgres::PgChangeFeed::new(url)?)))
    } else {
        Ok(None)
    }
}

pub use postgres::{CHANNEL as CHANGE_CHANNEL, LISTENER_NAME as CHANGE_LISTENER_NAME};

/// Refuses a database whose schema is newer than this build: `applied` (the newest version
/// in it) past every migration `known` embeds. Such a binary would write rows the newer
/// schema may not expect; it must be upgraded instead.
///
/// # Errors
/// `Unavailable`, saying both versions and the fix.
fn refuse_newer_schema(
    applied: Option<i64>,
    known: &sqlx::migrate::Migrator,
) -> Result<(), StoreError> {
    let ours = known.iter().map(|m| m.version).max().unwrap_or(0);
    match applied {
        Some(v) if v > ours => Err(error::newer_schema(v, known)),
        _ => Ok(()),
    }
}

/// The pool of whichever backend the URL named.
enum Db {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

/// [`Store`] over either backend.
struct SqlStore {
    db: Db,
}

impl fmt::Debug for SqlStore {
    // Not derived: the pools' options would print the database URL, password included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Pg(_) => "postgres",
        };
        f.debug_struct("SqlStore").field("backend", &backend).finish()
    }
}

/// How a backend begins its transactions.
trait Transactions {
    type Db: sqlx::Database;

    /// A transaction that may write, serialised against every other writer.
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, sqlx::Error>> + Send;

    /// A read-only transaction that sees one snapshot across its statements.
    fn begin_read(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

/// Expands `$body` once per backend with `$pool` bound to that backend's pool. The body is
/// the same text, so the SQL is written once, and the compiler checks it against both drivers.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Pg($pool) => $body,
        }
    };
}

/// Inside a write transaction `$tx`: records approval `$a` of request `$id` after those
/// already recorded. A second approval by the same approver, or a reused signature, is a
/// `Conflict`.
macro_rules! insert_approval {
    ($tx:ident, $id:expr, $a:expr, $at:expr) => {{
        let a: &crate::core::Approval = $a;
        sqlx::query(sql::INSERT_APPROVAL)
            .bind($id)
            .bind(a.approver.as_str())
            .bind(a.key_id.to_hex())
            .bind(a.signed_at.unix())
            .bind(a.signature.to_hex())
            .bind($at.unix())
            .execute(&mut *$tx)
            .await
            .map_err(error::unique(
                "approval already recorded (the same approver, or the same signature)",
            ))?;
    }};
}

/// Inside a write transaction `$tx`: appends `$drafts` at `$at`, chained to the head read in
/// this same transaction.
macro_rules! append_chain {
    ($tx:ident, $drafts:expr, $at:expr) => {{
        let head: Option<(i64, String)> =
            sqlx::query_as(sql::AUDIT_HEAD).fetch_optional(&mut *$tx).await.map_err(error::db)?;
        let mut prev = match head {
            Some((seq, hash)) => Some((seq, rows::parse_hash(seq, "hash", &hash)?)),
            None => None,
        };
        for draft in $drafts {
            let e = AuditEntry::next(prev, $at, draft);
            sqlx::query(sql::INSERT_AUDIT)
                .bind(e.seq)
                .bind(e.at.unix())
                .bind(&e.kind)
                .bind(e.request_id.as_deref())
                .bind(&e.actor)
                .bind(&e.data)
                .bind(hex::encode(e.prev_hash))
                .bind(hex::encode(e.hash))
                .execute(&mut *$tx)
                .await
                .map_err(error::unique("the audit chain moved under this write; retry it"))?;
            prev = Some((e.seq, e.hash));
        }
    }};
}

/// Inside a write transaction `$tx`: applies transition `$t` (the version check, the new
/// approval, the consumed nonce, the audit events). Returns early with the error, leaving the
/// transaction to roll back, on any refusal.
macro_rules! apply_transition {
    ($tx:ident, $t:expr, $at:expr) => {{
        let t: &Transition = $t;
        let next = &t.next;
        let id = next.id.to_string();
        let expected = next.version.saturating_sub(1);
        let updated = sqlx::query(sql::UPDATE_REQUEST)
            .bind(next.status.as_str())
            .bind(next.closed_by.as_ref().map(PrincipalName::as_str))
            .bind(next.updated_at.unix())
            .bind(next.version)
            .bind(&id)
            .bind(expected)
            .execute(&mut *$tx)
            .await
            .map_err(error::db)?;
        if updated.rows_affected() != 1 {
            let stored: Option<i64> = sqlx::query_scalar(sql::REQUEST_VERSION)
                .bind(&id)
                .fetch_optional(&mut *$tx)
                .await
                .map_err(error::db)?;
            return Err(match stored {
                None => StoreError::NotFound,
                Some(v) => StoreError::Conflict(format!(
                    "request {id} changed meanwhile (version {v}, expected {expected}); \
                     reload it and try again"
                )),
            });
        }
        if let Some(a) = &t.new_approval {
            insert_approval!($tx, &id, a, $at);
        }
        if let Some(nonce) = &t.consumes_nonce {
            sqlx::query(sql::CONSUME_NONCE)
                .bind(nonce.to_hex())
                .bind(&id)
                .bind($at.unix())
                .execute(&mut *$tx)
                .await
                .map_err(error::unique(
                    "nonce already used: these approvals already opened a session",
                ))?;
        }
        append_chain!($tx, &t.audit, $at);
    }};
}

#[async_trait]
impl Requests for SqlStore {
    /// Any approvals `req` already carries are stored too, so [`Requests::get_request`] returns
    /// exactly what was created.
    async fn create_request(
        &self,
        req: &Request,
        audit: &AuditDraft,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let id = req.id.to_string();
        let origin = rows::origin_json(req)?;
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(error::db)?;
            sqlx::query(sql::INSERT_REQUEST)
                .bind(&id)
                .bind(req.code.as_str())
                .bind(req.requester.as_str())
                .bind(req.scope.as_str())
                .bind(req.host.as_str())
                .bind(req.login.as_str())
                .bind(rows::duration_secs(req))
                .bind(req.reason.as_str())
                .bind(req.nonce.to_hex())
                .bind(req.not_before.unix())
                .bind(req.not_after.unix())
                .bind(req.pending_until.unix())
                .bind(&origin)
                .bind(req.status.as_str())
                .bind(req.closed_by.as_ref().map(PrincipalName::as_str))
                .bind(req.updated_at.unix())
                .bind(req.version)
                .bind(at.unix())
                .execute(&mut *tx)
                .await
                .map_err(error::unique("request id or code already taken"))?;
            for a in &req.approvals {
                insert_approval!(tx, &id, a, at);
            }
            // A request made in a chat channel gets its card there: the thread row is created
            // with the request, so no request can miss its card.
            let chat = match &req.origin {
                Origin::Api => None,
                Origin::Slack { channel } => Some(("slack", channel)),
                Origin::Discord { channel } => Some(("discord", channel)),
            };
            if let Some((platform, channel)) = chat {
                sqlx::query(sql::INSERT_CHAT_THREAD)
                    .bind(&id)
                    .bind(platform)
                    .bind(channel)
                    .execute(&mut *tx)
                    .await
                    .map_err(error::db)?;
            }
            append_chain!(tx, std::slice::from_ref(audit), at);
            tx.commit().await.map_err(error::db)
        })
    }

    async fn get_request(&self, r: &RequestRef) -> Result<Request, StoreError> {
        let (by, key) = match r {
            RequestRef::Id(id) => (sql::REQUEST_BY_ID, id.to_string()),
            RequestRef::Code(code) => (sql::REQUEST_BY_CODE, code.as_str().to_owned()),
        };
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin_read().await.map_err(error::db)?;
            let row: RequestRow = sqlx::query_as(by)
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(error::db)?
                .ok_or(StoreError::NotFound)?;
            let approvals: Vec<ApprovalRow> = sqlx::query_as(sql::APPROVALS_OF)
                .bind(&row.id)
                .fetch_all(&mut *tx)
                .await
                .map_err(error::db)?;
            tx.commit().await.map_err(error::db)?;
            row.into_request(approvals)
        })
    }

    /// Newest first (by creation time, then id); a `limit` of 0 means [`DEFAULT_LIST`], and
    /// no more than [`MAX_LIST`] are returned.
    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        let limit = i64::from(match filter.limit {
            0 => DEFAULT_LIST,
            n => n.min(MAX_LIST),
        });
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin_read().await.map_err(error::db)?;
            let mut q = QueryBuilder::new(sql::LIST_REQUESTS);
            push_filter(&mut q, filter, limit);
            let requests: Vec<RequestRow> =
                q.build_query_as().fetch_all(&mut *tx).await.map_err(error::db)?;
            // The approvals of exactly those requests: the same filter in a sub-select, read in
            // the same snapshot.
            let mut q = QueryBuilder::new(sql::APPROVALS_OF_LISTED);
            push_filter(&mut q, filter, limit);
            q.push(sql::APPROVALS_ORDER);
            let approvals: Vec<ApprovalRow> =
                q.build_query_as().fetch_all(&mut *tx).await.map_err(error::db)?;
            tx.commit().await.map_err(error::db)?;
            assemble(requests, approvals)
        })
    }

    async fn apply(&self, t: &Transition, at: Timestamp) -> Result<(), StoreError> {
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(error::db)?;
            apply_transition!(tx, t, at);
            tx.commit().await.map_err(error::db)
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(&self.db, pool => {
            sqlx::query(sql::PING).execute(pool).await.map(drop).map_err(error::db)
        })
    }

    fn pool_use(&self) -> Option<PoolUse> {
        on_pool!(&self.db, pool => Some(PoolUse {
            open: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        }))
    }
}

#[async_trait]
impl AuditLog for SqlStore {
    async fn append_audit(&self, drafts: &[AuditDraft], at: Timestamp) -> Result<(), StoreError> {
        if drafts.is_empty() {
            return Ok(());
        }
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(error::db)?;
            append_chain!(tx, drafts, at);
            tx.commit().await.map_err(error::db)
        })
    }

    /// At most [`MAX_AUDIT_PAGE`] entries, whatever `limit` asks.
    async fn audit_page(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::from(limit.min(MAX_AUDIT_PAGE));
        on_pool!(&self.db, pool => {
            let rows: Vec<AuditRow> = sqlx::query_as(sql::AUDIT_PAGE)
                .bind(after_seq)
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(error::db)?;
            rows.into_iter().map(AuditRow::into_entry).collect()
        })
    }

    async fn audit_of_request(
        &self,
        id: RequestId,
        after_seq: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let id = id.to_string();
        on_pool!(&self.db, pool => {
            let rows: Vec<AuditRow> = sqlx::query_as(sql::AUDIT_OF_REQUEST)
                .bind(&id)
                .bind(after_seq)
                .fetch_all(pool)
                .await
                .map_err(error::db)?;
            rows.into_iter().map(AuditRow::into_entry).collect()
        })
    }
}

#[async_trait]
impl SessionLog for SqlStore {
    async fn add_session_event(&self, e: &SessionEvent) -> Result<(), StoreError> {
        let id = e.request_id.to_string();
        let detail = e.detail.to_string();
        let folded = e
            .kind
            .is_command()
            .then(|| e.detail["command"].as_str().map(str::to_lowercase))
            .flatten();
        on_pool!(&self.db, pool => {
            sqlx::query(sql::INSERT_SESSION_EVENT)
                .bind(&id)
                .bind(e.at.unix())
                .bind(e.offset_ms)
                .bind(e.kind.as_str())
                .bind(&detail)
                .bind(&folded)
                .execute(pool)
                .await
                .map(drop)
                .map_err(error::db)
        })
    }

    async fn session_events(&self, id: RequestId) -> Result<Vec<SessionEvent>, StoreError> {
        let id = id.to_string();
        on_pool!(&self.db, pool => {
            let rows: Vec<SessionEventRow> = sqlx::query_as(sql::SESSION_EVENTS_OF)
                .bind(&id)
                .fetch_all(pool)
                .await
                .map_err(error::db)?;
            rows.into_iter().map(SessionEventRow::into_event).collect()
        })
    }

    async fn end_session(
        &self,
        rec: &RecordingRecord,
        transition: Option<&Transition>,
        audit: &[AuditDraft],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let id = rec.request_id.to_string();
        let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(error::db)?;
            sqlx::query(sql::INSERT_RECORDING)
                .bind(&id)
                .bind(&rec.file)
                .bind(hex::encode(rec.sha256))
                .bind(rec.signature.to_hex())
                .bind(rec.key_id.to_hex())
                .bind(rec.started_at.unix())
                .bind(rec.ended_at.unix())
                .bind(rec.end_reason.as_str())
                .bind(rec.exit_status)
                .bind(signed(rec.bytes_in))
                .bind(signed(rec.bytes_out))
                .bind(signed(rec.commands))
                .execute(&mut *tx)
                .await
                .map_err(error::unique("this session's recording is already stored"))?;
            if let Some(t) = transition {
                apply_transition!(tx, t, at);
            }
            append_chain!(tx, audit, at);
            tx.commit().await.map_err(error::db)
        })
    }

    async fn recording(&self, id: RequestId) -> Result<Option<RecordingRecord>, StoreError> {
        let id = id.to_string();
        on_pool!(&self.db, pool => {
            let row: Option<RecordingRow> = sqlx::query_as(sql::RECORDING_OF)
                .bind(&id)
                .fetch_optional(pool)
                .await
                .map_err(error::db)?;
            row.map(RecordingRow::into_record).transpose()
        })
    }

    async fn recordings(&self, ids: &[RequestId]) -> Result<Vec<RecordingRecord>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_LIST as usize) {
            let rows: Vec<RecordingRow> = on_pool!(&self.db, pool => {
                let mut q = QueryBuilder::new(sql::RECORDINGS_OF);
                push_list(&mut q, chunk.iter().map(ToString::to_string));
                q.build_query_as().fetch_all(pool).await.map_err(error::db)
            })?;
            for row in rows {
                out.push(row.into_record()?);
            }
        }
        Ok(out)
    }

    async fn search_commands(&self, q: &CommandSearch) -> Result<Vec<SessionEvent>, StoreError> {
        // Folded the same way as `command_folded`; LIKE's wildcards are literal.
        let mut pattern = String::from("%");
        for c in q.needle.to_lowercase().chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        let limit = i64::from(q.limit.clamp(1, MAX_LIST));
        let requester = q.requester.as_ref().map(ToString::to_string);
        on_pool!(&self.db, pool => {
            let rows: Vec<SessionEventRow> = sqlx::query_as(sql::SEARCH_COMMANDS)
                .bind(&pattern)
                .bind(&requester)
                .bind(&q.host)
                .bind(q.from.unix())
                .bind(q.to.unix())
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(error::db)?;
            rows.into_iter().map(SessionEventRow::into_event).collect()
        })
    }
}

#[async_trait]
impl ChatOutbox for SqlStore {
    async fn claim_chat_threads(
        &self,
        now: Timestamp,
        lease_secs: i64,
        limit: u32,
    ) -> Result<Vec<ChatThread>, StoreError> {
        let limit = i64::from(limit.min(MAX_LIST));
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(error::db)?;
            let rows: Vec<ChatThreadRow> = sqlx::query_as(sql::DUE_CHAT_THREADS)
                .bind(now.unix())
                .bind(limit)
                .fetch_all(&mut *tx)
                .await
                .map_err(error::db)?;
            let threads = rows.into_iter().map(ChatThreadRow::into_thread).collect::<Result<Vec<_>, _>>()?;
            if threads.is_empty() {
                tx.commit().await.map_err(error::db)?;
                return Ok(threads);
            }
            // One lease for all of them; a thread another replica leased meanwhile is not
            // returned (the write transaction makes that rare, the condition makes it safe).
            let mut q = QueryBuilder::new(sql::LEASE_CHAT_THREADS);
            q.push_bind(now.unix() + lease_secs).push(sql::LEASE_FREE_AT).push_bind(now.unix());
            q.push(sql::LEASE_OF);
            push_list(&mut q, threads.iter().map(|t| t.request_id.to_string()));
            q.push(" RETURNING request_id");
            let leased: Vec<String> =
                q.build_query_scalar().fetch_all(&mut *tx).await.map_err(error::db)?;
            tx.commit().await.map_err(error::db)?;
            Ok(threads.into_iter().filter(|t| leased.contains(&t.request_id.to_string())).collect())
        })
    }

    async fn save_chat_thread(&self, t: &ChatThread) -> Result<(), StoreError> {
        on_pool!(&self.db, pool => {
            sqlx::query(sql::SAVE_CHAT_THREAD)
                .bind(t.message_id.as_deref())
                .bind(t.thread_id.as_deref())
                .bind(t.synced_seq)
                .bind(t.connect_sent)
                .bind(t.summary_sent)
                .bind(t.done)
                .bind(t.attempts)
                .bind(t.next_attempt_at.unix())
                .bind(t.request_id.to_string())
                .execute(pool)
                .await
                .map(drop)
                .map_err(error::db)
        })
    }

    async fn remember_chat_delivery(
        &self,
        platform: &str,
        id: &str,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        on_pool!(&self.db, pool => {
            let inserted = sqlx::query(sql::REMEMBER_CHAT_DELIVERY)
                .bind(platform)
                .bind(id)
                .bind(expires_at.unix())
                .execute(pool)
                .await
                .map_err(error::db)?
                .rows_affected();
            Ok(inserted == 1)
        })
    }

    async fn purge_chat_deliveries(&self, now: Timestamp) -> Result<u64, StoreError> {
        on_pool!(&self.db, pool => {
            sqlx::query(sql::PURGE_CHAT_DELIVERIES)
                .bind(now.unix())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
                .map_err(error::db)
        })
    }
}

#[async_trait]
impl ReviewAccess for SqlStore {
    async fn create_review_link(&self, link: &ReviewLink) -> Result<(), StoreError> {
        on_pool!(&self.db, pool => {
            sqlx::query(sql::INSERT_REVIEW_LINK)
                .bind(hex::encode(link.token_sha256))
                .bind(link.principal.as_str())
                .bind(link.request_code.as_deref())
                .bind(link.created_at.unix())
                .bind(link.expires_at.unix())
                .execute(pool)
                .await
                .map(drop)
                .map_err(error::db)
        })
    }

    async fn use_review_link(
        &self,
        token_sha256: &[u8; 32],
        now: Timestamp,
    ) -> Result<Result<ReviewLink, LinkRefusal>, StoreError> {
        let key = hex::encode(token_sha256);
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(error::db)?;
            let used: Option<(String, Option<String>, i64, i64)> = sqlx::query_as(sql::USE_REVIEW_LINK)
                .bind(&key)
                .bind(now.unix())
                .fetch_optional(&mut *tx)
                .await
                .map_err(error::db)?;
            let outcome = match used {
                Some((principal, request_code, created_at, expires_at)) => Ok(ReviewLink {
                    token_sha256: *token_sha256,
                    principal: PrincipalName::parse(&principal)
                        .map_err(|e| StoreError::Corrupt(format!("review link principal: {e}")))?,
                    request_code,
                    created_at: Timestamp::from_unix(created_at),
                    expires_at: Timestamp::from_unix(expires_at),
                }),
                None => {
                    let state: Option<(Option<i64>, i64)> = sqlx::query_as(sql::REVIEW_LINK_STATE)
                        .bind(&key)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(error::db)?;
                    Err(match state {
                        None => LinkRefusal::Unknown,
                        Some((Some(_), _)) => LinkRefusal::Used,
                        Some((None, _)) => LinkRefusal::Expired,
                    })
                }
            };
            tx.commit().await.map_err(error::db)?;
            Ok(outcome)
        })
    }

    async fn create_review_session(
        &self,
        id_sha256: &[u8; 32],
        principal: &PrincipalName,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        on_pool!(&self.db, pool => {
            sqlx::query(sql::INSERT_REVIEW_SESSION)
                .bind(hex::encode(id_sha256))
                .bind(principal.as_str())
                .bind(created_at.unix())
                .bind(expires_at.unix())
                .execute(pool)
                .await
                .map(drop)
                .map_err(error::db)
        })
    }

    async fn review_session(
        &self,
        id_sha256: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<PrincipalName>, StoreError> {
        on_pool!(&self.db, pool => {
            let who: Option<String> = sqlx::query_scalar(sql::REVIEW_SESSION)
                .bind(hex::encode(id_sha256))
                .bind(now.unix())
                .fetch_optional(pool)
                .await
                .map_err(error::db)?;
            who.map(|w| PrincipalName::parse(&w).map_err(|e| StoreError::Corrupt(format!("review session principal: {e}"))))
                .transpose()
        })
    }

    async fn purge_review_access(&self, now: Timestamp) -> Result<u64, StoreError> {
        let links_before = now.unix() - crate::ports::REVIEW_LINK_MEMORY;
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(error::db)?;
            let sessions = sqlx::query(sql::PURGE_REVIEW_SESSIONS)
                .bind(now.unix())
                .execute(&mut *tx)
                .await
                .map_err(error::db)?
                .rows_affected();
            let links = sqlx::query(sql::PURGE_REVIEW_LINKS)
                .bind(links_before)
                .execute(&mut *tx)
                .await
                .map_err(error::db)?
                .rows_affected();
            tx.commit().await.map_err(error::db)?;
            Ok(sessions + links)
        })
    }
}

/// Appends `(?, ?, ...)`, one bind parameter per item (callers never pass an empty list).
fn push_list<DB: sqlx::Database>(q: &mut QueryBuilder<DB>, items: impl IntoIterator<Item = String>)
where
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    q.push("(");
    let mut list = q.separated(", ");
    for item in items {
        list.push_bind(item);
    }
    q.push(")");
}

/// Appends ` WHERE ... ORDER BY ... LIMIT n` for `filter` to a query over `requests`. Only
/// constant SQL is pushed; every value is a bind parameter.
fn push_filter<DB: sqlx::Database>(q: &mut QueryBuilder<DB>, filter: &RequestFilter, limit: i64)
where
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let mut word = " WHERE ";
    if !filter.statuses.is_empty() {
        q.push(word).push("status IN ");
        push_list(q, filter.statuses.iter().map(|s| s.as_str().to_owned()));
        word = " AND ";
    }
    if let Some(who) = &filter.requester {
        q.push(word).push("requester = ").push_bind(who.as_str().to_owned());
        word = " AND ";
    }
    if !filter.ids.is_empty() {
        q.push(word).push("id IN ");
        push_list(q, filter.ids.iter().map(ToString::to_string));
        word = " AND ";
    }
    if let Some(host) = &filter.host {
        q.push(word).push("host = ").push_bind(host.clone());
        word = " AND ";
    }
    if let Some(until) = filter.created_until {
        q.push(word).push("created_at <= ").push_bind(until.unix());
    }
    q.push(sql::NEWEST_FIRST).push(" LIMIT ").push_bind(limit);
}

/// Pairs listed requests with their approvals (which arrive grouped by request, in order).
fn assemble(
    requests: Vec<RequestRow>,
    approvals: Vec<ApprovalRow>,
) -> Result<Vec<Request>, StoreError> {
    let mut by_request: HashMap<String, Vec<ApprovalRow>> = HashMap::new();
    for a in approvals {
        by_request.entry(a.request_id.clone()).or_default().push(a);
    }
    requests
        .into_iter()
        .map(|r| {
            let approvals = by_request.remove(&r.id).unwrap_or_default();
            r.into_request(approvals)
        })
        .collect()
}
