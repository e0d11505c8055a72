//! Ports: the small traits adapters implement. The core never calls them; the bot and the
//! gateway do, around calls into the core.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::core::approval::SignatureBytes;
use crate::core::{
    AuditDraft, AuditEntry, EndReason, KeyId, PrincipalName, Request, RequestId, RequestRef,
    SessionEventKind, Status, Timestamp, Transition,
};

/// Storage failures, with `sqlx::Error` kept out of everything above the adapter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint or version check refused the write (a concurrent change, a replayed
    /// approval, a used nonce). Nothing was written.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database did not answer or failed. Nothing may be assumed written.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A stored row does not parse into core types (edited by hand, or a bug).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// How long an expired review sign-in link is remembered (see
/// [`ReviewAccess::purge_review_access`]): a day, in seconds.
pub const REVIEW_LINK_MEMORY: i64 = 24 * 3600;

/// Which requests to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Only these statuses (as stored); empty means all.
    pub statuses: Vec<Status>,
    pub requester: Option<PrincipalName>,
    /// Only these requests; empty means all.
    pub ids: Vec<RequestId>,
    /// Only requests for this host.
    pub host: Option<String>,
    /// Only requests created at or before this time.
    pub created_until: Option<Timestamp>,
    /// At most this many (the adapter caps it at 1000).
    pub limit: u32,
}

/// Something that happened inside a session: a command, an exec request, a file transfer, a
/// refused forward. Written as it happens, off the data path.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEvent {
    pub request_id: RequestId,
    pub at: Timestamp,
    /// Milliseconds since the session started (the recording's clock).
    pub offset_ms: i64,
    pub kind: SessionEventKind,
    pub detail: serde_json::Value,
}

/// A finished session's recording, its integrity data and totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRecord {
    pub request_id: RequestId,
    /// File name inside the recordings directory.
    pub file: String,
    /// SHA-256 of the whole asciicast file.
    pub sha256: [u8; 32],
    /// The gateway's Ed25519 signature over the statement binding `sha256` to this session
    /// (request id, grant code, nonce, start, end, file; docs/recording-signature.md).
    pub signature: SignatureBytes,
    pub key_id: KeyId,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    pub end_reason: EndReason,
    pub exit_status: Option<i64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub commands: u64,
}

/// A chat-made request's card and how far the chat mirrors its audit events. Created with
/// the request (in the same transaction) when the request comes from a chat channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatThread {
    pub request_id: RequestId,
    /// `slack` or `discord`.
    pub platform: String,
    pub channel: String,
    /// The card's message id (Slack `ts`, Discord message id), once posted.
    pub message_id: Option<String>,
    /// Discord's thread started from the card, once started.
    pub thread_id: Option<String>,
    /// The last audit event (seq) mirrored into the card and thread.
    pub synced_seq: i64,
    /// The requester got the connect line.
    pub connect_sent: bool,
    /// The session summary was posted (exactly once), or refused for good by the platform.
    pub summary_sent: bool,
    /// Nothing more will happen to this request.
    pub done: bool,
    /// Failed attempts in a row (for backoff).
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
}

/// A single-use sign-in link to the reviewer page (stored by the SHA-256 of its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewLink {
    pub token_sha256: [u8; 32],
    pub principal: PrincipalName,
    /// The request the link opens, or none for the list.
    pub request_code: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Which commands to find: the text contains `needle` (case-insensitive), in sessions of
/// `requester` on `host` (when given), at a time within `from..=to`.
#[derive(Debug, Clone)]
pub struct CommandSearch {
    pub needle: String,
    pub requester: Option<PrincipalName>,
    pub host: Option<String>,
    pub from: Timestamp,
    pub to: Timestamp,
    /// At most this many (the adapter caps it at 1000).
    pub limit: u32,
}

/// Why a sign-in link does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    Unknown,
    Used,
    Expired,
}

// The storage ports, one per capability. Each component is handed only the ones it uses
// (lldap's split backend handlers): the gateway gets [`GatewayStore`], never chat threads or
// review sign-ins. Method names say the capability, so a caller needs only the trait in scope.
//
// Every write that changes a request appends its audit events in the same database
// transaction, chained to the current head, so the log and the state never disagree. That is
// why a request write (`Requests::apply`, `SessionLog::end_session`) takes audit drafts: the
// capabilities split who may call what, not the transaction.

/// Requests, their approvals and consumed nonces.
#[async_trait]
pub trait Requests: Send + Sync + Debug {
    /// Inserts a new request and its `requested` event.
    ///
    /// # Errors
    /// `Conflict` when the id or the code is already taken (the caller draws new ones).
    async fn create_request(
        &self,
        req: &Request,
        audit: &AuditDraft,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// One request with its approvals, by id or code.
    async fn get_request(&self, r: &RequestRef) -> Result<Request, StoreError>;

    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError>;

    /// Applies a transition atomically: updates the request only if its stored version is
    /// still `t.next.version - 1`, inserts the new approval (unique per approver and per
    /// signature), consumes the nonce (unique), appends the audit events.
    ///
    /// # Errors
    /// `Conflict` when any of those checks refuses; nothing is written then.
    async fn apply(&self, t: &Transition, at: Timestamp) -> Result<(), StoreError>;

    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;

    /// How this process uses its database connections now (`None`: no pool, as in the
    /// in-memory fake).
    fn pool_use(&self) -> Option<PoolUse> {
        None
    }
}

/// A connection pool's use at one moment, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// Connections open now.
    pub open: u32,
    /// Of those, the ones waiting for work.
    pub idle: u32,
    /// Most connections the pool opens.
    pub max: u32,
}

/// The hash-chained audit log: appending events that change no request, and reading it.
#[async_trait]
pub trait AuditLog: Send + Sync + Debug {
    /// Appends events that belong to no request change (key loaded, config loaded).
    async fn append_audit(&self, drafts: &[AuditDraft], at: Timestamp) -> Result<(), StoreError>;

    /// Up to `limit` audit entries with `seq > after_seq`, in order.
    async fn audit_page(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;

    /// The audit events of one request with `seq > after_seq`, in order.
    async fn audit_of_request(
        &self,
        id: RequestId,
        after_seq: i64,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}

/// What happened in sessions, how they ended, and their recordings.
#[async_trait]
pub trait SessionLog: Send + Sync + Debug {
    /// Appends one session event (numbered after the request's previous ones).
    async fn add_session_event(&self, e: &SessionEvent) -> Result<(), StoreError>;

    /// A request's session events, in order.
    async fn session_events(&self, id: RequestId) -> Result<Vec<SessionEvent>, StoreError>;

    /// Records the end of a session atomically: the recording row, the transition to
    /// `closed` when the request is still `active` (none when it was revoked or expired
    /// meanwhile), and the audit events.
    ///
    /// # Errors
    /// `Conflict` if a recording for the request exists or the transition lost a race.
    async fn end_session(
        &self,
        rec: &RecordingRecord,
        transition: Option<&Transition>,
        audit: &[AuditDraft],
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// A request's recording, if its session ended.
    async fn recording(&self, id: RequestId) -> Result<Option<RecordingRecord>, StoreError>;

    /// The recordings of those of `ids` whose session ended, in one query (any order).
    async fn recordings(&self, ids: &[RequestId]) -> Result<Vec<RecordingRecord>, StoreError>;

    /// Commands and exec requests matching `q`, newest first.
    async fn search_commands(&self, q: &CommandSearch) -> Result<Vec<SessionEvent>, StoreError>;
}

/// The chat mirror's outbox: which request cards and threads have work due, and which signed
/// chat deliveries were already handled.
#[async_trait]
pub trait ChatOutbox: Send + Sync + Debug {
    /// Chat threads with work due at `now` (card not posted, a retry due, or audit events of
    /// the request not shown yet) and not leased by another replica; each returned one is
    /// leased to the caller for `lease_secs`, all in one update.
    async fn claim_chat_threads(
        &self,
        now: Timestamp,
        lease_secs: i64,
        limit: u32,
    ) -> Result<Vec<ChatThread>, StoreError>;

    /// Saves a thread's progress and releases its lease.
    async fn save_chat_thread(&self, t: &ChatThread) -> Result<(), StoreError>;

    /// Records that a chat delivery was handled, under a unique constraint: `Ok(true)` the
    /// first time, `Ok(false)` when `(platform, id)` is already there (a replay). Kept until
    /// `expires_at`, when the signed request's window has closed. `id` is short and made by
    /// the caller (a hex digest, a numeric platform id), never raw client text.
    async fn remember_chat_delivery(
        &self,
        platform: &str,
        id: &str,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Deletes chat deliveries whose window closed at or before `now`; returns how many.
    async fn purge_chat_deliveries(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// The reviewer page's sign-in: single-use links and browser sessions.
#[async_trait]
pub trait ReviewAccess: Send + Sync + Debug {
    async fn create_review_link(&self, link: &ReviewLink) -> Result<(), StoreError>;

    /// Uses a sign-in link once: marks it used if it is unused and not expired at `now`.
    ///
    /// # Errors
    /// `Ok(Err(refusal))` when it is unknown, used or expired; storage errors.
    async fn use_review_link(
        &self,
        token_sha256: &[u8; 32],
        now: Timestamp,
    ) -> Result<Result<ReviewLink, LinkRefusal>, StoreError>;

    async fn create_review_session(
        &self,
        id_sha256: &[u8; 32],
        principal: &PrincipalName,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Whose browser session this is, if it exists and has not expired at `now`.
    async fn review_session(
        &self,
        id_sha256: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<PrincipalName>, StoreError>;

    /// Deletes review sessions that expired, and sign-in links that expired more than
    /// [`REVIEW_LINK_MEMORY`] ago (until then a late click is told the link expired, not that
    /// it is unknown). Returns how many rows went.
    async fn purge_review_access(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// News that requests changed in another process (a replica sharing the database), so a
/// watcher checks at once instead of at its next poll. Only a hint: the watcher still reads
/// the database to decide, and keeps polling, so a lost notice delays a cut by one poll at
/// most and never grants anything.
///
/// Implemented by `shared::storage::change_feed` on PostgreSQL (LISTEN on the channel every
/// status change is announced on); SQLite has none (one process wakes its own gateway).
#[async_trait]
pub trait ChangeFeed: Send + Sync + Debug {
    /// Follows the feed until the future is dropped: notifies `wake` once per announced change,
    /// and once after each (re)connection, since a change made while nobody listened was
    /// announced to no one. A lost connection is logged and reopened with backoff; this never
    /// returns on its own.
    async fn follow(&self, wake: &tokio::sync::Notify);
}

/// What the gateway may do with the database: check grants and move requests on, append to
/// the audit log, and log sessions and their ends. No chat outbox, no review sign-ins: those
/// methods are not in its type.
///
/// Implemented for everything that has the three capabilities; an `Arc<dyn Store>` becomes an
/// `Arc<dyn GatewayStore>` by upcasting.
pub trait GatewayStore: Requests + AuditLog + SessionLog {}

impl<T: Requests + AuditLog + SessionLog> GatewayStore for T {}

/// Every capability at once: what the bot's service (which serves every front end) and the
/// composition root hold, and what the sqlx adapter implements.
pub trait Store: GatewayStore + ChatOutbox + ReviewAccess {}

impl<T: GatewayStore + ChatOutbox + ReviewAccess> Store for T {}
