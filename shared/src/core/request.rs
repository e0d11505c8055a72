//! The request state machine.
//!
//! ```text
//!            approve (quorum)         session start        session end
//! pending ───────────────────▶ approved ───────────▶ active ───────────▶ closed
//!   │  │                          │  │                  │
//!   │  └── deny ──▶ denied        │  └── time ──▶ expired (unused)
//!   └── time ──▶ expired          │                     │
//!   pending/approved/active ── revoke ──▶ revoked ◀─────┘
//! ```
//!
//! `denied`, `expired`, `revoked` and `closed` are terminal: no action leaves them. Every
//! function here is pure: the time, the request's random parts and the policy are inputs.

use serde::{Deserialize, Serialize};

use super::approval::{Approval, PinnedKeys};
use super::audit::AuditDraft;
use super::event::{self, AuditData};
use super::ids::{
    GrantCode, GrantDuration, HostName, Login, Nonce, PrincipalName, Reason, RequestId, ScopeName,
    Timestamp,
};
use super::policy::{Origin, Policy, PolicyError, PrincipalKind, ScopePolicy, join};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Active,
    Closed,
    Denied,
    Expired,
    Revoked,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Self::Pending,
        Self::Approved,
        Self::Active,
        Self::Closed,
        Self::Denied,
        Self::Expired,
        Self::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Active => "active",
            Self::Closed => "closed",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    /// # Errors
    /// An unknown status name.
    pub fn parse(s: &str) -> Result<Self, super::ids::InvalidValue> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| super::ids::InvalidValue {
            what: "status",
            why: format!(
                "`{}` is not a status (one of: {})",
                s.escape_debug(),
                join(Self::ALL.iter().map(|s| s.as_str()))
            ),
        })
    }

    /// No action leaves a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Closed | Self::Denied | Self::Expired | Self::Revoked)
    }
}

/// A break-glass request and everything decided about it so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    pub code: GrantCode,
    pub requester: PrincipalName,
    pub scope: ScopeName,
    pub host: HostName,
    pub login: Login,
    /// Longest the one session may last.
    pub duration: GrantDuration,
    pub reason: Reason,
    pub nonce: Nonce,
    /// When the request was made; no approval or session before it.
    pub not_before: Timestamp,
    /// Hard end of the grant: `not_before + approval_timeout + duration`.
    pub not_after: Timestamp,
    /// The request expires if its quorum is not reached by then.
    pub pending_until: Timestamp,
    pub origin: Origin,
    pub status: Status,
    pub approvals: Vec<Approval>,
    /// Who denied or revoked it, once someone did.
    pub closed_by: Option<PrincipalName>,
    pub updated_at: Timestamp,
    /// Optimistic-concurrency counter: storage applies a transition only over this version.
    pub version: i64,
}

impl Request {
    /// The status the request has at `now`, counting deadlines that passed since it was stored.
    pub fn status_at(&self, now: Timestamp) -> Status {
        match self.status {
            Status::Pending if now >= self.pending_until => Status::Expired,
            Status::Approved if now >= self.not_after => Status::Expired,
            s => s,
        }
    }
}

/// What someone asked for, already parsed into core types at the adapter's edge.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub requester: PrincipalName,
    pub host: HostName,
    pub scope: Option<ScopeName>,
    pub login: Option<Login>,
    pub duration: Option<GrantDuration>,
    pub reason: Reason,
    pub origin: Origin,
}

/// The random parts of a new request, drawn by the adapter (the core does no I/O).
#[derive(Debug, Clone)]
pub struct Fresh {
    pub id: RequestId,
    pub code: GrantCode,
    pub nonce: Nonce,
}

/// The new state of a request plus what must be stored with it, atomically.
#[derive(Debug, Clone)]
pub struct Transition {
    pub next: Request,
    /// The approval to insert, for an `Approve`.
    pub new_approval: Option<Approval>,
    /// The nonce to consume (a session start): storage inserts it under a unique constraint in
    /// the same transaction, so one approval set opens at most one session.
    pub consumes_nonce: Option<Nonce>,
    pub audit: Vec<AuditDraft>,
}

/// Checks a new request against the policy and builds it.
///
/// # Errors
/// `UnknownPrincipal`, `UnknownScope`, `UnknownHost`, `AmbiguousHost`, `RequesterNotAllowed`,
/// `ChannelNotAllowed`, `LoginNotAllowed`, `DurationTooLong`.
pub fn open(
    policy: &Policy,
    input: NewRequest,
    fresh: Fresh,
    now: Timestamp,
) -> Result<(Request, AuditDraft), PolicyError> {
    let who = policy.principal(&input.requester)?;
    let scope = policy.resolve_scope(who, &input.host, input.scope.as_ref(), &input.origin)?;
    let login = match input.login {
        Some(l) if scope.logins.contains(&l) => l,
        Some(l) => {
            return Err(PolicyError::LoginNotAllowed {
                login: l.to_string(),
                scope: scope.name.to_string(),
                allowed: join(scope.logins.iter().map(Login::as_str)),
            });
        }
        None => scope.logins.first().cloned().ok_or_else(|| PolicyError::LoginNotAllowed {
            login: "(default)".into(),
            scope: scope.name.to_string(),
            allowed: "none".into(),
        })?,
    };
    let duration = input.duration.unwrap_or(scope.default_duration);
    if duration > scope.max_duration {
        return Err(PolicyError::DurationTooLong {
            asked: duration.to_string(),
            max: scope.max_duration.to_string(),
            scope: scope.name.to_string(),
        });
    }
    let pending_until = now.plus(scope.approval_timeout);
    let req = Request {
        id: fresh.id,
        code: fresh.code,
        requester: input.requester,
        scope: scope.name.clone(),
        host: input.host,
        login,
        duration,
        reason: input.reason,
        nonce: fresh.nonce,
        not_before: now,
        not_after: pending_until.plus(duration),
        pending_until,
        origin: input.origin,
        status: Status::Pending,
        approvals: Vec::new(),
        closed_by: None,
        updated_at: now,
        version: 0,
    };
    let audit = AuditDraft::of(
        Some(req.id),
        req.requester.as_str(),
        &AuditData::Requested(Box::new(event::Requested {
            code: req.code.clone(),
            scope: req.scope.clone(),
            host: req.host.clone(),
            login: req.login.clone(),
            duration_secs: req.duration.secs(),
            reason: req.reason.clone(),
            reason_sha256: hex::encode(req.reason.sha256()),
            nonce: req.nonce,
            not_before: req.not_before,
            not_after: req.not_after,
            pending_until: req.pending_until,
            origin: req.origin.clone(),
        })),
    );
    Ok((req, audit))
}

/// Something that happens to a request.
#[derive(Debug, Clone)]
pub enum Action {
    /// A signed approval (by the bot's key for a verified click, or the approver's own key).
    Approve(Approval),
    Deny {
        by: PrincipalName,
    },
    /// Withdraws a pending request, or ends an approved or live grant.
    Revoke {
        by: PrincipalName,
    },
    /// A deadline passed (`pending_until` or `not_after`).
    Expire,
    /// The gateway started the one session of an approved grant (its details go to the audit
    /// event).
    SessionStarted(Box<event::SessionStarted>),
    /// That session ended (its recording's integrity data and totals go to the audit event).
    SessionEnded(Box<event::SessionEnded>),
}

impl Action {
    fn verb(&self) -> &'static str {
        match self {
            Self::Approve(_) => "approved",
            Self::Deny { .. } => "denied",
            Self::Revoke { .. } => "revoked",
            Self::Expire => "expired",
            Self::SessionStarted(_) => "used",
            Self::SessionEnded(_) => "ended",
        }
    }
}

/// Applies `action` to `req` at `now` under `policy`, verifying signatures against `pins`.
///
/// # Errors
/// Any [`PolicyError`]: the request is left as it was.
pub fn apply(
    req: &Request,
    action: Action,
    policy: &Policy,
    pins: &PinnedKeys,
    now: Timestamp,
) -> Result<Transition, PolicyError> {
    let scope = policy.scope(&req.scope)?;
    let status = req.status_at(now);
    let verb = action.verb();
    let wrong_state = || -> PolicyError {
        if status == Status::Expired && req.status == Status::Pending {
            PolicyError::Expired { at: req.pending_until.rfc3339() }
        } else {
            PolicyError::WrongState { status: status.as_str(), action: verb }
        }
    };
    let mut next = req.clone();
    next.updated_at = now;
    next.version = req.version + 1;
    let mut audit = Vec::new();
    let mut new_approval = None;
    let mut consumes_nonce = None;

    match action {
        Action::Approve(approval) => {
            let who = &approval.approver.clone();
            check_decider(policy, scope, req, who)?;
            // Before the state check, so a click replayed after the grant says what happened.
            if req.approvals.iter().any(|a| a.approver == *who) {
                return Err(PolicyError::AlreadyApproved { who: who.to_string() });
            }
            if status != Status::Pending {
                return Err(wrong_state());
            }
            if approval.signed_at > now.plus_secs(super::approval::CLOCK_SKEW_SECS) {
                return Err(PolicyError::SignatureOutOfWindow { at: approval.signed_at.rfc3339() });
            }
            let kind = pins.verify(req, &approval, scope)?;
            next.approvals.push(approval.clone());
            new_approval = Some(approval.clone());
            let have = next.approvals.len();
            audit.push(AuditDraft::of(
                Some(req.id),
                who.as_str(),
                &AuditData::Approved(event::Approved {
                    key_id: approval.key_id,
                    signer: kind,
                    signed_at: approval.signed_at,
                    signature: approval.signature,
                    approvals: u64::try_from(have).unwrap_or(u64::MAX),
                    quorum: scope.quorum,
                }),
            ));
            if have >= quorum(scope) {
                next.status = Status::Approved;
                audit.push(AuditDraft::of(
                    Some(req.id),
                    "breakglass",
                    &AuditData::Granted(event::Granted {
                        approvers: next.approvals.iter().map(|a| a.approver.clone()).collect(),
                        not_after: req.not_after,
                    }),
                ));
            }
        }
        Action::Deny { by } => {
            check_decider(policy, scope, req, &by)?;
            if status != Status::Pending {
                return Err(wrong_state());
            }
            next.status = Status::Denied;
            next.closed_by = Some(by.clone());
            audit.push(AuditDraft::of(Some(req.id), by.as_str(), &AuditData::Denied));
        }
        Action::Revoke { by } => {
            policy.principal(&by)?;
            if by != req.requester && !policy.is_approver(&by, scope) {
                return Err(PolicyError::NotAllowedToRevoke { scope: scope.name.to_string() });
            }
            if !matches!(status, Status::Pending | Status::Approved | Status::Active) {
                return Err(wrong_state());
            }
            next.status = Status::Revoked;
            next.closed_by = Some(by.clone());
            // An approved grant keeps valid signatures: consuming its nonce now means no edit of
            // the row back to `approved` can ever open a session with them.
            if status == Status::Approved {
                consumes_nonce = Some(req.nonce);
            }
            audit.push(AuditDraft::of(
                Some(req.id),
                by.as_str(),
                &AuditData::Revoked(event::Revoked { was: req.status }),
            ));
        }
        Action::Expire => {
            if status != Status::Expired || req.status.is_terminal() {
                return Err(wrong_state());
            }
            next.status = Status::Expired;
            audit.push(AuditDraft::of(
                Some(req.id),
                "breakglass",
                &AuditData::Expired(event::Expired {
                    was: req.status,
                    approvals: u64::try_from(req.approvals.len()).unwrap_or(u64::MAX),
                }),
            ));
        }
        Action::SessionStarted(started) => {
            if status != Status::Approved {
                return Err(wrong_state());
            }
            next.status = Status::Active;
            consumes_nonce = Some(req.nonce);
            audit.push(AuditDraft::of(
                Some(req.id),
                req.requester.as_str(),
                &AuditData::SessionStarted(*started),
            ));
        }
        Action::SessionEnded(ended) => {
            if req.status != Status::Active {
                return Err(wrong_state());
            }
            next.status = Status::Closed;
            audit.push(AuditDraft::of(
                Some(req.id),
                req.requester.as_str(),
                &AuditData::SessionEnded(ended),
            ));
        }
    }
    Ok(Transition { next, new_approval, consumes_nonce, audit })
}

/// The number of distinct approvals a scope needs (a quorum of 0 in a hand-built policy still
/// needs one: nothing is ever granted without an approval).
pub fn quorum(scope: &ScopePolicy) -> usize {
    usize::try_from(scope.quorum.max(1)).unwrap_or(usize::MAX)
}

/// Rules shared by approve and deny: a configured human, not the requester, in an approver
/// group of the scope.
fn check_decider(
    policy: &Policy,
    scope: &ScopePolicy,
    req: &Request,
    who: &PrincipalName,
) -> Result<(), PolicyError> {
    let p = policy.principal(who)?;
    if matches!(p.kind, PrincipalKind::Service { .. }) {
        return Err(PolicyError::ServiceCannotDecide);
    }
    if *who == req.requester {
        return Err(PolicyError::SelfApproval);
    }
    if !policy.is_approver(who, scope) {
        return Err(PolicyError::NotAnApprover {
            who: who.to_string(),
            scope: scope.name.to_string(),
        });
    }
    Ok(())
}

/// The requests among `open` whose deadline has passed at `now` and that must be expired.
pub fn due_for_expiry(open: &[Request], now: Timestamp) -> Vec<RequestId> {
    open.iter()
        .filter(|r| !r.status.is_terminal() && r.status_at(now) == Status::Expired)
        .map(|r| r.id)
        .collect()
}
