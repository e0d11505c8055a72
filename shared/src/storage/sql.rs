//! The SQL, written once for both backends.
//!
//! Everything here runs unchanged on SQLite and PostgreSQL: `$1..$N` placeholders (sqlx binds
//! them by number on SQLite too), TEXT and BIGINT columns, `LIMIT $n`. What the dialects do not
//! share lives in the migrations and in how a transaction begins (`sqlite.rs`, `postgres.rs`).

/// The columns of `requests` that make up a [`crate::core::Request`], in the order of
/// [`super::rows::RequestRow`]. A macro so that `concat!` can splice it into constants.
macro_rules! request_cols {
    () => {
        "id, code, requester, scope, host, login, duration_secs, reason, nonce, not_before, \
         not_after, pending_until, origin, status, closed_by, updated_at, version"
    };
}

/// The columns of `approvals` read back, in the order of [`super::rows::ApprovalRow`].
macro_rules! approval_cols {
    () => {
        "request_id, approver, key_id, signed_at, signature"
    };
}

/// The columns of `audit_events`, in the order of [`super::rows::AuditRow`].
macro_rules! audit_cols {
    () => {
        "seq, at, kind, request_id, actor, data, prev_hash, hash"
    };
}

pub(super) const INSERT_REQUEST: &str = concat!(
    "INSERT INTO requests (",
    request_cols!(),
    ", created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
     $16, $17, $18)"
);

pub(super) const REQUEST_BY_ID: &str =
    concat!("SELECT ", request_cols!(), " FROM requests WHERE id = $1");

pub(super) const REQUEST_BY_CODE: &str =
    concat!("SELECT ", request_cols!(), " FROM requests WHERE code = $1");

/// The start of a listing; `list_requests` appends the filter, the order and the limit.
pub(super) const LIST_REQUESTS: &str = concat!("SELECT ", request_cols!(), " FROM requests");

/// The order of a listing: newest first, ties broken by id so pages are stable.
pub(super) const NEWEST_FIRST: &str = " ORDER BY created_at DESC, id DESC";

pub(super) const APPROVALS_OF: &str =
    concat!("SELECT ", approval_cols!(), " FROM approvals WHERE request_id = $1 ORDER BY position");

/// The approvals of the requests a listing returns; `list_requests` appends the same filter,
/// order and limit inside the sub-select, then [`APPROVALS_ORDER`].
pub(super) const APPROVALS_OF_LISTED: &str = concat!(
    "SELECT ",
    approval_cols!(),
    " FROM approvals WHERE request_id IN (SELECT id FROM requests"
);
pub(super) const APPROVALS_ORDER: &str = ") ORDER BY request_id, position";

/// Appends the approval after the ones already recorded for the request.
pub(super) const INSERT_APPROVAL: &str = "INSERT INTO approvals \
     (request_id, position, approver, key_id, signed_at, signature, recorded_at) \
     VALUES ($1, (SELECT COALESCE(MAX(position) + 1, 0) FROM approvals WHERE request_id = $1), \
     $2, $3, $4, $5, $6)";

/// The version check: only a writer that read version `$6` moves the request on.
pub(super) const UPDATE_REQUEST: &str = "UPDATE requests \
     SET status = $1, closed_by = $2, updated_at = $3, version = $4 \
     WHERE id = $5 AND version = $6";

pub(super) const REQUEST_VERSION: &str = "SELECT version FROM requests WHERE id = $1";

pub(super) const CONSUME_NONCE: &str =
    "INSERT INTO consumed_nonces (nonce, request_id, consumed_at) VALUES ($1, $2, $3)";

/// The head of the chain: the last `(seq, hash)`, none for an empty log.
pub(super) const AUDIT_HEAD: &str = "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1";

pub(super) const INSERT_AUDIT: &str = concat!(
    "INSERT INTO audit_events (",
    audit_cols!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
);

pub(super) const AUDIT_PAGE: &str =
    concat!("SELECT ", audit_cols!(), " FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2");

pub(super) const PING: &str = "SELECT 1";

/// The newest migration applied (sqlx's table; asked only once it exists).
pub(super) const NEWEST_MIGRATION: &str = "SELECT MAX(version) FROM _sqlx_migrations";

pub(super) const INSERT_SESSION_EVENT: &str = "INSERT INTO session_events \
     (request_id, seq, at, offset_ms, kind, detail, command_folded) \
     VALUES ($1, (SELECT COALESCE(MAX(seq) + 1, 0) FROM session_events WHERE request_id = $1), \
     $2, $3, $4, $5, $6)";

pub(super) const SESSION_EVENTS_OF: &str = "SELECT request_id, at, offset_ms, kind, detail \
     FROM session_events WHERE request_id = $1 ORDER BY seq";

/// The columns of `recordings`, in the order of [`super::rows::RecordingRow`].
macro_rules! recording_cols {
    () => {
        "request_id, file, sha256, signature, key_id, started_at, ended_at, end_reason, \
         exit_status, bytes_in, bytes_out, commands"
    };
}

pub(super) const INSERT_RECORDING: &str = concat!(
    "INSERT INTO recordings (",
    recording_cols!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
);

pub(super) const RECORDING_OF: &str =
    concat!("SELECT ", recording_cols!(), " FROM recordings WHERE request_id = $1");

/// Followed by `(id, id, ...)`.
pub(super) const RECORDINGS_OF: &str =
    concat!("SELECT ", recording_cols!(), " FROM recordings WHERE request_id IN ");

pub(super) const INSERT_CHAT_THREAD: &str = "INSERT INTO chat_threads \
     (request_id, platform, channel, message_id, thread_id, synced_seq, connect_sent, \
     summary_sent, done, attempts, next_attempt_at, lease_until) \
     VALUES ($1, $2, $3, NULL, NULL, 0, FALSE, FALSE, FALSE, 0, 0, 0)";

/// The columns of `chat_threads`, in the order of [`super::rows::ChatThreadRow`].
macro_rules! chat_cols {
    () => {
        "request_id, platform, channel, message_id, thread_id, synced_seq, connect_sent, \
         summary_sent, done, attempts, next_attempt_at"
    };
}

/// Threads with work: the card not posted, a failed pass to retry (a thread that could not be
/// started is one), or audit events of the request the thread has not shown yet. (Everything
/// a thread shows follows from the audit log, so a thread without new events has nothing to
/// do.)
pub(super) const DUE_CHAT_THREADS: &str = concat!(
    "SELECT ",
    chat_cols!(),
    " FROM chat_threads c WHERE done = FALSE AND next_attempt_at <= $1 AND lease_until <= $1 \
     AND (message_id IS NULL OR attempts > 0 OR EXISTS (SELECT 1 FROM \
     audit_events a WHERE a.request_id = c.request_id AND a.seq > c.synced_seq)) \
     ORDER BY next_attempt_at LIMIT $2"
);

/// Built as `LEASE_CHAT_THREADS <until> LEASE_FREE_AT <now> LEASE_OF (id, ...) RETURNING
/// request_id`.
pub(super) const LEASE_CHAT_THREADS: &str = "UPDATE chat_threads SET lease_until = ";
pub(super) const LEASE_FREE_AT: &str = " WHERE lease_until <= ";
pub(super) const LEASE_OF: &str = " AND request_id IN ";

pub(super) const SAVE_CHAT_THREAD: &str = "UPDATE chat_threads SET message_id = $1, \
     thread_id = $2, synced_seq = $3, connect_sent = $4, summary_sent = $5, done = $6, \
     attempts = $7, next_attempt_at = $8, lease_until = 0 WHERE request_id = $9";

pub(super) const AUDIT_OF_REQUEST: &str = concat!(
    "SELECT ",
    audit_cols!(),
    " FROM audit_events WHERE request_id = $1 AND seq > $2 ORDER BY seq"
);

pub(super) const INSERT_REVIEW_LINK: &str = "INSERT INTO review_links \
     (token_sha256, principal, request_code, created_at, expires_at, used_at) \
     VALUES ($1, $2, $3, $4, $5, NULL)";

/// Marks a link used, once, while it is valid.
pub(super) const USE_REVIEW_LINK: &str = "UPDATE review_links SET used_at = $2 \
     WHERE token_sha256 = $1 AND used_at IS NULL AND expires_at > $2 \
     RETURNING principal, request_code, created_at, expires_at";

pub(super) const REVIEW_LINK_STATE: &str =
    "SELECT used_at, expires_at FROM review_links WHERE token_sha256 = $1";

pub(super) const INSERT_REVIEW_SESSION: &str = "INSERT INTO review_sessions \
     (id_sha256, principal, created_at, expires_at) VALUES ($1, $2, $3, $4)";

pub(super) const REVIEW_SESSION: &str =
    "SELECT principal FROM review_sessions WHERE id_sha256 = $1 AND expires_at > $2";

pub(super) const PURGE_REVIEW_SESSIONS: &str = "DELETE FROM review_sessions WHERE expires_at <= $1";

pub(super) const PURGE_REVIEW_LINKS: &str = "DELETE FROM review_links WHERE expires_at <= $1";

/// Inserts a delivery; no row is affected when it is already there (a replay).
pub(super) const REMEMBER_CHAT_DELIVERY: &str = "INSERT INTO chat_deliveries \
     (platform, delivery_id, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (platform, delivery_id) DO NOTHING";

pub(super) const PURGE_CHAT_DELIVERIES: &str = "DELETE FROM chat_deliveries WHERE expires_at <= $1";

/// `$1` is a lower-case LIKE pattern with `\` as the escape character.
pub(super) const SEARCH_COMMANDS: &str = "SELECT e.request_id, e.at, e.offset_ms, e.kind, e.detail \
     FROM session_events e JOIN requests r ON r.id = e.request_id \
     WHERE e.command_folded LIKE $1 ESCAPE '\\' \
     AND ($2 IS NULL OR r.requester = $2) AND ($3 IS NULL OR r.host = $3) \
     AND e.at >= $4 AND e.at <= $5 \
     ORDER BY e.at DESC, e.seq DESC LIMIT $6";
