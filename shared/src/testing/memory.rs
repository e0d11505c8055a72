//! An in-memory store for unit tests: the capabilities the gateway uses ([`Requests`],
//! [`AuditLog`], [`SessionLog`], so it is a [`GatewayStore`]) with the rules the database
//! enforces, and none of the others (no chat outbox, no review sign-ins: it does not implement
//! those traits, so it cannot stand in where they are needed).
//!
//! What it keeps as the sqlx adapter does:
//!
//! - A write is all or nothing: it works on a copy of the state and keeps it only on success.
//! - `apply` moves a request on only over the version it was read at; an approver approves a
//!   request once, a signature is used once, a nonce is consumed once (all `Conflict`).
//! - The audit log is the real hash chain ([`AuditEntry::next`]), appended in the same write.
//! - One recording per request; session events and recordings need their request.
//!
//! [`MemoryStore::set_down`] makes every call fail as `Unavailable`, like a database that does
//! not answer.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use crate::core::{
    Approval, AuditDraft, AuditEntry, Request, RequestId, RequestRef, Timestamp, Transition,
};
use crate::ports::{
    AuditLog, CommandSearch, RecordingRecord, RequestFilter, Requests, SessionEvent, SessionLog,
    StoreError,
};
use crate::storage::{DEFAULT_LIST, MAX_AUDIT_PAGE, MAX_LIST};

#[cfg(doc)]
use crate::ports::GatewayStore;

/// The in-memory store (see the module docs). `Default` is empty and up.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    down: AtomicBool,
}

/// Everything stored; cloned for each write so a refused write leaves nothing behind.
#[derive(Debug, Default, Clone)]
struct State {
    /// Requests in creation order, with when each was created.
    requests: Vec<(Request, Timestamp)>,
    /// Signatures of recorded approvals (unique across requests, as in the database).
    signatures: HashSet<String>,
    /// Consumed nonces.
    nonces: HashSet<String>,
    audit: Vec<AuditEntry>,
    /// Session events in the order they were added.
    events: Vec<SessionEvent>,
    recordings: Vec<RecordingRecord>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// While `down`, every call fails with `Unavailable` and changes nothing.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Fails while the store is down.
    fn up(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the in-memory store is down".to_owned()));
        }
        Ok(())
    }

    /// Reads the state.
    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> Result<R, StoreError> {
        self.up()?;
        let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(f(&state))
    }

    /// Runs a write on a copy of the state and keeps the copy only if the write succeeded.
    fn write<R>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.up()?;
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = state.clone();
        let out = f(&mut next)?;
        *state = next;
        Ok(out)
    }
}

impl State {
    fn request_mut(&mut self, id: RequestId) -> Option<&mut Request> {
        self.requests.iter_mut().map(|(r, _)| r).find(|r| r.id == id)
    }

    fn has_request(&self, id: RequestId) -> bool {
        self.requests.iter().any(|(r, _)| r.id == id)
    }

    /// Records approval `a` of request `id` (which must exist) after those already recorded.
    fn insert_approval(&mut self, id: RequestId, a: &Approval) -> Result<(), StoreError> {
        let conflict = || {
            StoreError::Conflict(
                "approval already recorded (the same approver, or the same signature)".to_owned(),
            )
        };
        if !self.signatures.insert(a.signature.to_hex()) {
            return Err(conflict());
        }
        let req = self.request_mut(id).ok_or(StoreError::NotFound)?;
        if req.approvals.iter().any(|b| b.approver == a.approver) {
            return Err(conflict());
        }
        req.approvals.push(a.clone());
        Ok(())
    }

    /// Appends `drafts` at `at`, chained to the current head.
    fn append_chain(&mut self, drafts: &[AuditDraft], at: Timestamp) {
        for draft in drafts {
            let prev = self.audit.last().map(|e| (e.seq, e.hash));
            self.audit.push(AuditEntry::next(prev, at, draft));
        }
    }

    /// The version check, the new approval, the consumed nonce and the audit events of `t`.
    fn apply_transition(&mut self, t: &Transition, at: Timestamp) -> Result<(), StoreError> {
        let next = &t.next;
        let expected = next.version.saturating_sub(1);
        let stored = self.request_mut(next.id).ok_or(StoreError::NotFound)?;
        if stored.version != expected {
            return Err(StoreError::Conflict(format!(
                "request {} changed meanwhile (version {}, expected {expected}); reload it and \
                 try again",
                next.id, stored.version
            )));
        }
        stored.status = next.status;
        stored.closed_by.clone_from(&next.closed_by);
        stored.updated_at = next.updated_at;
        stored.version = next.version;
        if let Some(a) = &t.new_approval {
            self.insert_approval(next.id, a)?;
        }
        if let Some(nonce) = &t.consumes_nonce
            && !self.nonces.insert(nonce.to_hex())
        {
            return Err(StoreError::Conflict(
                "nonce already used: these approvals already opened a session".to_owned(),
            ));
        }
        self.append_chain(&t.audit, at);
        Ok(())
    }
}

/// Whether `r` passes every condition of `filter`.
fn matches(r: &Request, created_at: Timestamp, filter: &RequestFilter) -> bool {
    (filter.statuses.is_empty() || filter.statuses.contains(&r.status))
        && filter.requester.as_ref().is_none_or(|who| *who == r.requester)
        && (filter.ids.is_empty() || filter.ids.contains(&r.id))
        && filter.host.as_ref().is_none_or(|h| h.as_str() == r.host.as_str())
        && filter.created_until.is_none_or(|until| created_at.unix() <= until.unix())
}

#[async_trait]
impl Requests for MemoryStore {
    async fn create_request(
        &self,
        req: &Request,
        audit: &AuditDraft,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(|s| {
            if s.requests.iter().any(|(r, _)| r.id == req.id || r.code == req.code) {
                return Err(StoreError::Conflict("request id or code already taken".to_owned()));
            }
            let mut stored = req.clone();
            stored.approvals.clear();
            s.requests.push((stored, at));
            for a in &req.approvals {
                s.insert_approval(req.id, a)?;
            }
            s.append_chain(std::slice::from_ref(audit), at);
            Ok(())
        })
    }

    async fn get_request(&self, r: &RequestRef) -> Result<Request, StoreError> {
        self.read(|s| {
            s.requests
                .iter()
                .map(|(req, _)| req)
                .find(|req| match r {
                    RequestRef::Id(id) => req.id == *id,
                    RequestRef::Code(code) => req.code == *code,
                })
                .cloned()
                .ok_or(StoreError::NotFound)
        })?
    }

    /// Newest first (by creation time, then id), capped as the sqlx adapter caps it.
    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        let limit = match filter.limit {
            0 => DEFAULT_LIST,
            n => n.min(MAX_LIST),
        };
        self.read(|s| {
            let mut found: Vec<_> =
                s.requests.iter().filter(|(r, at)| matches(r, *at, filter)).collect();
            found.sort_by(|(a, a_at), (b, b_at)| {
                (b_at.unix(), b.id.to_string()).cmp(&(a_at.unix(), a.id.to_string()))
            });
            found.into_iter().take(limit as usize).map(|(r, _)| r.clone()).collect()
        })
    }

    async fn apply(&self, t: &Transition, at: Timestamp) -> Result<(), StoreError> {
        self.write(|s| s.apply_transition(t, at))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.up()
    }
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn append_audit(&self, drafts: &[AuditDraft], at: Timestamp) -> Result<(), StoreError> {
        self.write(|s| {
            s.append_chain(drafts, at);
            Ok(())
        })
    }

    async fn audit_page(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = limit.min(MAX_AUDIT_PAGE) as usize;
        self.read(|s| s.audit.iter().filter(|e| e.seq > after_seq).take(limit).cloned().collect())
    }

    async fn audit_of_request(
        &self,
        id: RequestId,
        after_seq: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let id = id.to_string();
        self.read(|s| {
            s.audit
                .iter()
                .filter(|e| e.seq > after_seq && e.request_id.as_deref() == Some(id.as_str()))
                .cloned()
                .collect()
        })
    }
}

#[async_trait]
impl SessionLog for MemoryStore {
    async fn add_session_event(&self, e: &SessionEvent) -> Result<(), StoreError> {
        self.write(|s| {
            if !s.has_request(e.request_id) {
                return Err(StoreError::Conflict("no such request".to_owned()));
            }
            s.events.push(e.clone());
            Ok(())
        })
    }

    async fn session_events(&self, id: RequestId) -> Result<Vec<SessionEvent>, StoreError> {
        self.read(|s| s.events.iter().filter(|e| e.request_id == id).cloned().collect())
    }

    async fn end_session(
        &self,
        rec: &RecordingRecord,
        transition: Option<&Transition>,
        audit: &[AuditDraft],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(|s| {
            if !s.has_request(rec.request_id) {
                return Err(StoreError::Conflict("no such request".to_owned()));
            }
            if s.recordings.iter().any(|r| r.request_id == rec.request_id) {
                return Err(StoreError::Conflict(
                    "this session's recording is already stored".to_owned(),
                ));
            }
            s.recordings.push(rec.clone());
            if let Some(t) = transition {
                s.apply_transition(t, at)?;
            }
            s.append_chain(audit, at);
            Ok(())
        })
    }

    async fn recording(&self, id: RequestId) -> Result<Option<RecordingRecord>, StoreError> {
        self.read(|s| s.recordings.iter().find(|r| r.request_id == id).cloned())
    }

    async fn recordings(&self, ids: &[RequestId]) -> Result<Vec<RecordingRecord>, StoreError> {
        self.read(|s| {
            s.recordings.iter().filter(|r| ids.contains(&r.request_id)).cloned().collect()
        })
    }

    /// Newest first; the needle is matched case-insensitively in the command text of command
    /// events, as the sqlx adapter matches its folded column.
    async fn search_commands(&self, q: &CommandSearch) -> Result<Vec<SessionEvent>, StoreError> {
        let needle = q.needle.to_lowercase();
        let limit = q.limit.clamp(1, MAX_LIST) as usize;
        self.read(|s| {
            let of = |id: RequestId| s.requests.iter().map(|(r, _)| r).find(|r| r.id == id);
            let mut found: Vec<(usize, &SessionEvent)> = s
                .events
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    let folded = e
                        .kind
                        .is_command()
                        .then(|| e.detail["command"].as_str().map(str::to_lowercase))
                        .flatten();
                    folded.is_some_and(|c| c.contains(&needle))
                        && (q.from.unix()..=q.to.unix()).contains(&e.at.unix())
                        && of(e.request_id).is_some_and(|r| {
                            q.requester.as_ref().is_none_or(|who| *who == r.requester)
                                && q.host.as_ref().is_none_or(|h| h.as_str() == r.host.as_str())
                        })
                })
                .collect();
            found.sort_by(|(i, a), (j, b)| (b.at.unix(), j).cmp(&(a.at.unix(), i)));
            found.into_iter().take(limit).map(|(_, e)| e.clone()).collect()
        })
    }
}
