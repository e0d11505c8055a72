//! Ports: the small traits adapters implement. The core never calls them; the bot and the
//! gateway do, around calls into the core.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::core::{
    AuditDraft, AuditEntry, PrincipalName, Request, RequestRef, Status, Timestamp, Transition,
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

/// Which requests to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Only these statuses (as stored); empty means all.
    pub statuses: Vec<Status>,
    pub requester: Option<PrincipalName>,
    /// At most this many (the adapter caps it at 1000).
    pub limit: u32,
}

/// Requests, approvals, consumed nonces and the audit chain.
///
/// Every write that changes a request appends its audit events in the same database
/// transaction, chained to the current head, so the log and the state never disagree.
#[async_trait]
pub trait Store: Send + Sync + Debug {
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

    /// Appends events that belong to no request change (key loaded, config loaded).
    async fn append_audit(&self, drafts: &[AuditDraft], at: Timestamp) -> Result<(), StoreError>;

    /// Up to `limit` audit entries with `seq > after_seq`, in order.
    async fn audit_page(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;

    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
}
