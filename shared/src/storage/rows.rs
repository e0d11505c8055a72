//! Rows as stored, and their conversion to and from core types.
//!
//! Reading is parsing: every stored string goes back through the same core parser that
//! checked it on the way in, so a row edited by hand (or written by a bug) comes back as
//! [`StoreError::Corrupt`] naming the row, never as a malformed core value.

use crate::core::{
    Approval, AuditEntry, EndReason, GrantCode, GrantDuration, HostName, InvalidValue, KeyId,
    Login, Nonce, Origin, PrincipalName, Reason, Request, RequestId, ScopeName, SessionEventKind,
    Status, Timestamp, approval::SignatureBytes,
};
use crate::ports::{ChatThread, RecordingRecord, SessionEvent, StoreError};

/// One `requests` row, as selected by [`super::sql`] (`request_cols!`).
#[derive(Debug, sqlx::FromRow)]
pub(super) struct RequestRow {
    pub id: String,
    code: String,
    requester: String,
    scope: String,
    host: String,
    login: String,
    duration_secs: i64,
    reason: String,
    nonce: String,
    not_before: i64,
    not_after: i64,
    pending_until: i64,
    origin: String,
    status: String,
    closed_by: Option<String>,
    updated_at: i64,
    version: i64,
}

/// One `approvals` row, as selected by [`super::sql`] (`approval_cols!`).
#[derive(Debug, sqlx::FromRow)]
pub(super) struct ApprovalRow {
    pub request_id: String,
    approver: String,
    key_id: String,
    signed_at: i64,
    signature: String,
}

/// One `audit_events` row, as selected by [`super::sql`] (`audit_cols!`).
#[derive(Debug, sqlx::FromRow)]
pub(super) struct AuditRow {
    seq: i64,
    at: i64,
    kind: String,
    request_id: Option<String>,
    actor: String,
    data: String,
    prev_hash: String,
    hash: String,
}

/// A `Corrupt` error naming the row and the field that did not parse.
fn corrupt(row: &str, field: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{row}: {field}: {why}"))
}

impl RequestRow {
    /// The core request this row stores, with `approvals` already read in recorded order.
    ///
    /// # Errors
    /// `Corrupt` naming the request id and the field when any column does not parse.
    pub(super) fn into_request(self, approvals: Vec<ApprovalRow>) -> Result<Request, StoreError> {
        let row = format!("request {}", self.id);
        let bad = |field: &'static str| {
            let row = &row;
            move |why: InvalidValue| corrupt(row, field, why)
        };
        let duration = u64::try_from(self.duration_secs)
            .map_err(|_| corrupt(&row, "duration_secs", "negative"))
            .and_then(|s| GrantDuration::from_secs(s).map_err(bad("duration_secs")))?;
        let origin: Origin = serde_json::from_str(&self.origin)
            .map_err(|e| corrupt(&row, "origin", format!("not an origin: {e}")))?;
        let approvals =
            approvals.into_iter().map(ApprovalRow::into_approval).collect::<Result<Vec<_>, _>>()?;
        Ok(Request {
            id: self.id.parse::<RequestId>().map_err(bad("id"))?,
            code: GrantCode::parse(&self.code).map_err(bad("code"))?,
            requester: PrincipalName::parse(&self.requester).map_err(bad("requester"))?,
            scope: ScopeName::parse(&self.scope).map_err(bad("scope"))?,
            host: HostName::parse(&self.host).map_err(bad("host"))?,
            login: Login::parse(&self.login).map_err(bad("login"))?,
            duration,
            reason: Reason::parse(&self.reason).map_err(bad("reason"))?,
            nonce: Nonce::from_hex(&self.nonce).map_err(bad("nonce"))?,
            not_before: Timestamp::from_unix(self.not_before),
            not_after: Timestamp::from_unix(self.not_after),
            pending_until: Timestamp::from_unix(self.pending_until),
            origin,
            status: Status::parse(&self.status).map_err(bad("status"))?,
            approvals,
            closed_by: self
                .closed_by
                .as_deref()
                .map(PrincipalName::parse)
                .transpose()
                .map_err(bad("closed_by"))?,
            updated_at: Timestamp::from_unix(self.updated_at),
            version: self.version,
        })
    }
}

impl ApprovalRow {
    /// # Errors
    /// `Corrupt` naming the request and approver when a column does not parse.
    fn into_approval(self) -> Result<Approval, StoreError> {
        let row = format!("approval of request {} by {}", self.request_id, self.approver);
        let bad = |field: &'static str| {
            let row = &row;
            move |why: InvalidValue| corrupt(row, field, why)
        };
        Ok(Approval {
            approver: PrincipalName::parse(&self.approver).map_err(bad("approver"))?,
            key_id: KeyId::from_hex(&self.key_id).map_err(bad("key_id"))?,
            signed_at: Timestamp::from_unix(self.signed_at),
            signature: SignatureBytes::from_hex(&self.signature).map_err(bad("signature"))?,
        })
    }
}

impl AuditRow {
    /// The stored entry, exactly as stored: checking the chain is the reader's job
    /// ([`crate::core::audit::ChainVerifier`]).
    ///
    /// # Errors
    /// `Corrupt` naming the seq when a hash is not 64 hex digits.
    pub(super) fn into_entry(self) -> Result<AuditEntry, StoreError> {
        Ok(AuditEntry {
            prev_hash: parse_hash(self.seq, "prev_hash", &self.prev_hash)?,
            hash: parse_hash(self.seq, "hash", &self.hash)?,
            seq: self.seq,
            at: Timestamp::from_unix(self.at),
            kind: self.kind,
            request_id: self.request_id,
            actor: self.actor,
            data: self.data,
        })
    }
}

/// A stored SHA-256 hash, 64 hex digits.
///
/// # Errors
/// `Corrupt` naming the audit seq and the column.
pub(super) fn parse_hash(seq: i64, field: &str, hex_text: &str) -> Result<[u8; 32], StoreError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out)
        .map_err(|_| corrupt(&format!("audit seq {seq}"), field, "must be 64 hex digits"))?;
    Ok(out)
}

/// `req.duration` as the BIGINT it is stored as (at most 7 days, so it always fits).
pub(super) fn duration_secs(req: &Request) -> i64 {
    i64::try_from(req.duration.secs()).unwrap_or(i64::MAX)
}

/// `req.origin` as stored: its serde JSON.
///
/// # Errors
/// `Corrupt` if it does not serialise (it always does: plain strings and a tag).
pub(super) fn origin_json(req: &Request) -> Result<String, StoreError> {
    serde_json::to_string(&req.origin)
        .map_err(|e| corrupt(&format!("request {}", req.id), "origin", e))
}

/// One `session_events` row.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct SessionEventRow {
    request_id: String,
    at: i64,
    offset_ms: i64,
    kind: String,
    detail: String,
}

impl SessionEventRow {
    pub(super) fn into_event(self) -> Result<SessionEvent, StoreError> {
        let row = format!("session event of {}", self.request_id);
        Ok(SessionEvent {
            request_id: self.request_id.parse().map_err(|e| corrupt(&row, "request_id", e))?,
            at: Timestamp::from_unix(self.at),
            offset_ms: self.offset_ms,
            kind: SessionEventKind::parse(&self.kind).map_err(|e| corrupt(&row, "kind", e))?,
            detail: serde_json::from_str(&self.detail).map_err(|e| corrupt(&row, "detail", e))?,
        })
    }
}

/// One `recordings` row, as selected by `recording_cols!`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct RecordingRow {
    request_id: String,
    file: String,
    sha256: String,
    signature: String,
    key_id: String,
    started_at: i64,
    ended_at: i64,
    end_reason: String,
    exit_status: Option<i64>,
    bytes_in: i64,
    bytes_out: i64,
    commands: i64,
}

impl RecordingRow {
    pub(super) fn into_record(self) -> Result<RecordingRecord, StoreError> {
        let row = format!("recording of {}", self.request_id);
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(&self.sha256, &mut sha256).map_err(|e| corrupt(&row, "sha256", e))?;
        let count = |field: &str, v: i64| u64::try_from(v).map_err(|e| corrupt(&row, field, e));
        Ok(RecordingRecord {
            request_id: self.request_id.parse().map_err(|e| corrupt(&row, "request_id", e))?,
            sha256,
            signature: SignatureBytes::from_hex(&self.signature)
                .map_err(|e| corrupt(&row, "signature", e))?,
            key_id: KeyId::from_hex(&self.key_id).map_err(|e| corrupt(&row, "key_id", e))?,
            started_at: Timestamp::from_unix(self.started_at),
            ended_at: Timestamp::from_unix(self.ended_at),
            exit_status: self.exit_status,
            bytes_in: count("bytes_in", self.bytes_in)?,
            bytes_out: count("bytes_out", self.bytes_out)?,
            commands: count("commands", self.commands)?,
            file: self.file,
            end_reason: EndReason::parse(&self.end_reason)
                .map_err(|e| corrupt(&row, "end_reason", e))?,
        })
    }
}

/// One `chat_threads` row, as selected by `chat_cols!`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct ChatThreadRow {
    request_id: String,
    platform: String,
    channel: String,
    message_id: Option<String>,
    thread_id: Option<String>,
    synced_seq: i64,
    connect_sent: bool,
    summary_sent: bool,
    done: bool,
    attempts: i64,
    next_attempt_at: i64,
    /// 0 once a pass saved its progress; a past time here means a lease ran out unsaved.
    lease_until: i64,
}

impl ChatThreadRow {
    pub(super) fn into_thread(self) -> Result<ChatThread, StoreError> {
        let row = format!("chat thread of {}", self.request_id);
        Ok(ChatThread {
            request_id: self.request_id.parse().map_err(|e| corrupt(&row, "request_id", e))?,
            platform: self.platform,
            channel: self.channel,
            message_id: self.message_id,
            thread_id: self.thread_id,
            synced_seq: self.synced_seq,
            connect_sent: self.connect_sent,
            summary_sent: self.summary_sent,
            done: self.done,
            attempts: self.attempts,
            next_attempt_at: Timestamp::from_unix(self.next_attempt_at),
            taken_over: self.lease_until > 0,
        })
    }
}
