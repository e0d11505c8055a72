//! Re-verification of a whole audit log: the hash chain, and every approval signature rebuilt
//! from the log's own `requested` events against the pinned keys.
//!
//! The log is self-contained: a `requested` event carries every bound field of its request, and
//! an `approved` event the approver, key id, signing time and signature. So an auditor needs
//! only the log and the pinned public keys; [`AuditChecker::requests`] also gives the requests
//! as the log says they were, to compare with the live tables, and
//! [`AuditChecker::reused_grants`] the grants the log shows opening more than one session
//! (one approval set opens one session: a second `session_started` means the database's
//! consumed nonce was removed by someone who could write to it).
//!
//! Keys leave the config after a rotation, but their old signatures must still verify. Every
//! process records the keys it pins, with their validity, in its `key_loaded` event; an
//! approval whose key the auditor's config no longer pins is checked against the keys the log
//! recorded as pinned *before* it (with the validity recorded then), and
//! [`AuditChecker::from_recorded_pins`] names those keys so the report can say so. A key the
//! log never recorded as pinned is refused as before. The trust this adds is the log's own:
//! whoever can rewrite the log and its chain could also add a `key_loaded`; the report lists
//! every key it took from the log so an auditor can compare them with the keys they retired.

use std::collections::{BTreeMap, BTreeSet};

use super::approval::{Approval, PinnedKeys, Validity, parse_public_key};
use super::audit::{AuditEntry, AuditKind, ChainBreak, ChainVerifier};
use super::event::{Approved, KeyLoaded, PinRole, Requested};
use super::ids::{GrantDuration, KeyId, PrincipalName, RequestId};
use super::policy::PolicyError;
use super::request::{Request, Status};

/// The first problem found in a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditProblem {
    #[error(transparent)]
    Chain(#[from] ChainBreak),
    #[error("audit event seq {seq}: approval of request {request} does not verify: {why}")]
    Approval { seq: i64, request: String, why: String },
    #[error("audit event seq {seq}: {why}")]
    Malformed { seq: i64, why: String },
}

/// Feeds on audit entries in order; stops at the first problem.
#[derive(Debug)]
pub struct AuditChecker<'a> {
    chain: ChainVerifier,
    pins: &'a PinnedKeys,
    /// The approval keys `key_loaded` events recorded as pinned so far.
    recorded: PinnedKeys,
    /// The recorded keys (not pinned in the config) that verified an approval.
    from_recorded: BTreeSet<KeyId>,
    requests: BTreeMap<RequestId, Request>,
    /// The seq of every `session_started`, per request.
    sessions: BTreeMap<RequestId, Vec<i64>>,
    approvals_checked: u64,
}

impl<'a> AuditChecker<'a> {
    pub fn new(pins: &'a PinnedKeys) -> Self {
        Self {
            chain: ChainVerifier::new(),
            pins,
            recorded: PinnedKeys::new(),
            from_recorded: BTreeSet::new(),
            requests: BTreeMap::new(),
            sessions: BTreeMap::new(),
            approvals_checked: 0,
        }
    }

    /// Checks the next entry.
    ///
    /// # Errors
    /// The chain breaks, an event's data does not parse, or an approval does not verify.
    pub fn check(&mut self, e: &AuditEntry) -> Result<(), AuditProblem> {
        self.chain.check(e)?;
        let malformed = |why: String| AuditProblem::Malformed { seq: e.seq, why };
        let kind = AuditKind::parse(&e.kind).map_err(|v| malformed(v.to_string()))?;
        let request_id = || -> Result<RequestId, AuditProblem> {
            e.request_id
                .as_deref()
                .ok_or_else(|| malformed(format!("a `{kind}` event without a request id")))?
                .parse()
                .map_err(|v: super::ids::InvalidValue| malformed(v.to_string()))
        };
        match kind {
            AuditKind::Requested => {
                let id = request_id()?;
                let d: Requested = serde_json::from_str(&e.data)
                    .map_err(|err| malformed(format!("requested event data: {err}")))?;
                let requester =
                    PrincipalName::parse(&e.actor).map_err(|v| malformed(v.to_string()))?;
                let duration = GrantDuration::from_secs(d.duration_secs)
                    .map_err(|v| malformed(v.to_string()))?;
                self.requests.insert(
                    id,
                    Request {
                        id,
                        code: d.code,
                        requester,
                        scope: d.scope,
                        host: d.host,
                        login: d.login,
                        duration,
                        reason: d.reason,
                        nonce: d.nonce,
                        not_before: d.not_before,
                        not_after: d.not_after,
                        pending_until: d.pending_until,
                        origin: d.origin,
                        status: Status::Pending,
                        approvals: Vec::new(),
                        closed_by: None,
                        updated_at: e.at,
                        version: 0,
                    },
                );
            }
            AuditKind::Approved => {
                let id = request_id()?;
                let d: Approved = serde_json::from_str(&e.data)
                    .map_err(|err| malformed(format!("approved event data: {err}")))?;
                let approver =
                    PrincipalName::parse(&e.actor).map_err(|v| malformed(v.to_string()))?;
                let req = self.requests.get_mut(&id).ok_or_else(|| {
                    malformed(format!("approval of request {id}, which was never requested"))
                })?;
                let a = Approval {
                    approver,
                    key_id: d.key_id,
                    signed_at: d.signed_at,
                    signature: d.signature,
                };
                let verified = match self.pins.verify_signature(req, &a) {
                    Err(PolicyError::UnpinnedKey(_)) if self.recorded.contains(&a.key_id) => {
                        let v = self.recorded.verify_signature(req, &a);
                        if v.is_ok() {
                            self.from_recorded.insert(a.key_id);
                        }
                        v
                    }
                    v => v,
                };
                verified.map_err(|why| AuditProblem::Approval {
                    seq: e.seq,
                    request: req.code.to_string(),
                    why: why.to_string(),
                })?;
                req.approvals.push(a);
                self.approvals_checked += 1;
            }
            // The status each event leaves the request in (a session ending after a revoke
            // or an expiry leaves it as it was).
            AuditKind::Granted
            | AuditKind::SessionStarted
            | AuditKind::SessionEnded
            | AuditKind::Denied
            | AuditKind::Revoked
            | AuditKind::Expired => {
                let id = request_id()?;
                let req = self.requests.get_mut(&id).ok_or_else(|| {
                    malformed(format!("`{kind}` of request {id}, which was never requested"))
                })?;
                if kind == AuditKind::SessionStarted {
                    self.sessions.entry(id).or_default().push(e.seq);
                }
                req.status = match kind {
                    AuditKind::Granted => Status::Approved,
                    AuditKind::SessionStarted => Status::Active,
                    AuditKind::SessionEnded if req.status == Status::Active => Status::Closed,
                    AuditKind::SessionEnded => req.status,
                    AuditKind::Denied => Status::Denied,
                    AuditKind::Revoked => Status::Revoked,
                    _ => Status::Expired,
                };
            }
            AuditKind::KeyLoaded => {
                let d: KeyLoaded = serde_json::from_str(&e.data)
                    .map_err(|err| malformed(format!("key_loaded event data: {err}")))?;
                for p in d.pinned_keys {
                    let key = parse_public_key(&p.public_key)
                        .map_err(|v| malformed(format!("key_loaded pinned key: {v}")))?;
                    if KeyId::of(key.as_bytes()) != p.key_id {
                        return Err(malformed(format!(
                            "key_loaded pins key id {} for another key",
                            p.key_id
                        )));
                    }
                    let validity = Validity { not_before: p.not_before, not_after: p.not_after };
                    match (p.role, p.approver) {
                        (PinRole::Bot, _) => {
                            self.recorded.pin_bot_within(key, validity);
                        }
                        (PinRole::Personal, Some(who)) => {
                            self.recorded.pin_personal_within(who, key, validity);
                        }
                        (PinRole::Personal, None) => {
                            return Err(malformed(
                                "key_loaded pins a personal key without its approver".to_owned(),
                            ));
                        }
                        (PinRole::Recording, _) => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The keys the config does not pin that verified approvals because the log recorded them
    /// as pinned at the time (a rotated-out key, after it left the config).
    pub fn from_recorded_pins(&self) -> impl Iterator<Item = &KeyId> {
        self.from_recorded.iter()
    }

    pub fn events(&self) -> u64 {
        self.chain.checked()
    }
    pub fn approvals_checked(&self) -> u64 {
        self.approvals_checked
    }
    pub fn head(&self) -> Option<[u8; 32]> {
        self.chain.head()
    }
    /// The requests as the log records them (bound fields and verified approvals).
    pub fn requests(&self) -> impl Iterator<Item = &Request> {
        self.requests.values()
    }
    /// The requests whose grant opened more than one session, with the seq of each
    /// `session_started`. One approval set opens one session, so each is a grant used again
    /// after its consumed nonce was removed from the database.
    pub fn reused_grants(&self) -> impl Iterator<Item = (&Request, &[i64])> {
        self.sessions
            .iter()
            .filter(|(_, seqs)| seqs.len() > 1)
            .filter_map(|(id, seqs)| Some((self.requests.get(id)?, seqs.as_slice())))
    }
}

/// Compares a request from the live tables with the log's record of it; returns the first
/// field that differs.
pub fn first_difference(table: &Request, log: &Request) -> Option<&'static str> {
    let checks: [(&'static str, bool); 13] = [
        ("code", table.code == log.code),
        ("requester", table.requester == log.requester),
        ("scope", table.scope == log.scope),
        ("host", table.host == log.host),
        ("login", table.login == log.login),
        ("duration", table.duration == log.duration),
        ("reason", table.reason == log.reason),
        ("nonce", table.nonce == log.nonce),
        ("not_before", table.not_before == log.not_before),
        ("not_after", table.not_after == log.not_after),
        ("pending_until", table.pending_until == log.pending_until),
        ("approvals", table.approvals == log.approvals),
        ("status", table.status == log.status),
    ];
    checks.into_iter().find(|(_, same)| !same).map(|(name, _)| name)
}
