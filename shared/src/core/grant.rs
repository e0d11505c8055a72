//! The gateway's decision: may this approved request be used for one session now?
//!
//! [`verify_grant`] is the only way to build a [`VerifiedGrant`], and the gateway can only open
//! an upstream connection with one. It re-derives everything from the verifier's own view: the
//! scope, host, login and duration against its own config, and every approval signature
//! against the keys pinned in its own config. A row in the database that claims `approved`
//! proves nothing on its own.

use super::approval::{PinnedKeys, SignerKind};
use super::ids::{PrincipalName, Timestamp};
use super::policy::{Policy, PolicyError};
use super::request::{Request, Status, quorum};

/// Why a grant may not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DenyReason {
    #[error("the request is {0}, not approved")]
    NotApproved(&'static str),
    #[error("the grant is not valid before {0}")]
    NotYetValid(String),
    #[error("the grant ended at {0}")]
    Ended(String),
    #[error("{have} valid approvals of the {need} needed")]
    QuorumNotMet { have: usize, need: usize },
    #[error("{0}")]
    Policy(PolicyError),
}

impl DenyReason {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotApproved(_) => "not_approved",
            Self::NotYetValid(_) => "not_yet_valid",
            Self::Ended(_) => "grant_ended",
            Self::QuorumNotMet { .. } => "quorum_not_met",
            Self::Policy(p) => p.code(),
        }
    }
}

impl From<PolicyError> for DenyReason {
    fn from(e: PolicyError) -> Self {
        Self::Policy(e)
    }
}

/// A grant whose every signature and bound field has been checked. Only [`verify_grant`]
/// builds one.
#[derive(Debug, Clone)]
pub struct VerifiedGrant {
    request: Request,
    approvers: Vec<(PrincipalName, SignerKind)>,
    session_deadline: Timestamp,
    host_addr: String,
}

impl VerifiedGrant {
    pub fn request(&self) -> &Request {
        &self.request
    }
    /// The approvers whose signatures counted, with the kind of key each used.
    pub fn approvers(&self) -> &[(PrincipalName, SignerKind)] {
        &self.approvers
    }
    /// When the session must end: the earlier of start + duration and the grant's not-after.
    pub fn session_deadline(&self) -> Timestamp {
        self.session_deadline
    }
    /// The target's `address:port`, from the verifier's config.
    pub fn host_addr(&self) -> &str {
        &self.host_addr
    }
}

/// Verifies that `req` may start its one session at `now`.
///
/// # Errors
/// Any [`DenyReason`]. Every error means no access.
///
/// # Security
/// Signatures are checked against `pins` only, and the bytes are rebuilt from `req` as the
/// verifier's config sees it; approvals that do not count (unknown key, bad signature, signer
/// no longer an approver, the requester, a duplicate) are ignored, never trusted.
pub fn verify_grant(
    req: &Request,
    policy: &Policy,
    pins: &PinnedKeys,
    now: Timestamp,
) -> Result<VerifiedGrant, DenyReason> {
    if req.status != Status::Approved {
        return Err(DenyReason::NotApproved(req.status.as_str()));
    }
    if now < req.not_before {
        return Err(DenyReason::NotYetValid(req.not_before.rfc3339()));
    }
    if now >= req.not_after {
        return Err(DenyReason::Ended(req.not_after.rfc3339()));
    }
    let scope = policy.scope(&req.scope)?;
    let requester = policy.principal(&req.requester)?;
    if !policy.may_request(requester, scope) {
        return Err(PolicyError::RequesterNotAllowed {
            who: req.requester.to_string(),
            scope: scope.name.to_string(),
        }
        .into());
    }
    let host_addr = scope
        .hosts
        .get(&req.host)
        .ok_or_else(|| PolicyError::UnknownHost(req.host.to_string()))?
        .clone();
    if !scope.logins.contains(&req.login) {
        return Err(PolicyError::LoginNotAllowed {
            login: req.login.to_string(),
            scope: scope.name.to_string(),
            allowed: scope.logins.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", "),
        }
        .into());
    }
    if req.duration > scope.max_duration {
        return Err(PolicyError::DurationTooLong {
            asked: req.duration.to_string(),
            max: scope.max_duration.to_string(),
            scope: scope.name.to_string(),
        }
        .into());
    }
    let mut approvers: Vec<(PrincipalName, SignerKind)> = Vec::new();
    for a in &req.approvals {
        let counts = a.approver != req.requester
            && policy.is_approver(&a.approver, scope)
            && !approvers.iter().any(|(who, _)| *who == a.approver);
        if !counts {
            continue;
        }
        if let Ok(kind) = pins.verify(req, a, scope) {
            approvers.push((a.approver.clone(), kind));
        }
    }
    let need = quorum(scope);
    if approvers.len() < need {
        return Err(DenyReason::QuorumNotMet { have: approvers.len(), need });
    }
    let session_deadline = now.plus(req.duration).min(req.not_after);
    Ok(VerifiedGrant { request: req.clone(), approvers, session_deadline, host_addr })
}
