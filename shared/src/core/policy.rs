//! Who may request what, and who may approve it.
//!
//! [`Policy`] is the pure view of the config's users, service accounts and scopes. Every rule
//! is a function of a policy and its inputs; the one error type, [`PolicyError`], carries a
//! stable code that the API, the CLI and the chat adapters show as is.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::ids::{
    GrantDuration, GroupName, HostName, InvalidValue, Login, PrincipalName, ScopeName,
};

/// A person or a service account that config knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: PrincipalName,
    pub kind: PrincipalKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A person: may request in scopes whose `requester_groups` they share, and approve in
    /// scopes whose `approver_groups` they share.
    Human { groups: BTreeSet<GroupName> },
    /// Automation: may request in the listed scopes only, and never approve.
    Service { scopes: BTreeSet<ScopeName> },
}

/// One scope's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePolicy {
    pub name: ScopeName,
    /// Host name -> `address:port` of its sshd, as the gateway dials it.
    pub hosts: BTreeMap<HostName, String>,
    /// Allowed logins; the first one is the default.
    pub logins: Vec<Login>,
    pub max_duration: GrantDuration,
    pub default_duration: GrantDuration,
    pub requester_groups: BTreeSet<GroupName>,
    pub approver_groups: BTreeSet<GroupName>,
    /// Distinct approvers needed, at least 1.
    pub quorum: u32,
    /// Chat channel ids (Slack `C…`, Discord snowflakes) where requests may be made. Empty means
    /// chat requests are refused for this scope (API and CLI requests are not channel-bound).
    pub channels: BTreeSet<String>,
    /// Accept only approvals signed with the approver's own pinned key (`breakglass approve --key`).
    pub require_offline_signature: bool,
    /// How long a request may wait for its quorum before it expires.
    pub approval_timeout: GrantDuration,
    /// What the gateway lets a session forward (all refused by default).
    pub forwarding: Forwarding,
}

/// Forwarding a scope allows through the gateway. Each is refused, with a message and an
/// event in the recording, unless allowed here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// Port forwarding, both ways (like OpenSSH's `permit-port-forwarding`): local
    /// (`ssh -L`/`-W`, connections the target opens for the user) and remote (`ssh -R`, a
    /// port the target listens on for the user).
    pub port: bool,
    /// Agent forwarding (`ssh -A`): programs on the target may use the user's agent.
    pub agent: bool,
    /// X11 forwarding (`ssh -X`/`-Y`).
    pub x11: bool,
}

/// Where a request came from: the API (CLI and automation) or a chat channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Origin {
    Api,
    Slack { channel: String },
    Discord { channel: String },
}

impl Origin {
    fn channel(&self) -> Option<&str> {
        match self {
            Self::Api => None,
            Self::Slack { channel } | Self::Discord { channel } => Some(channel),
        }
    }
}

/// Why the core refused something. Each variant has a stable [`code`](Self::code) that clients
/// may match on; the message is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(InvalidValue),
    #[error("`{0}` is not a configured user or service account")]
    UnknownPrincipal(String),
    #[error("scope `{0}` does not exist")]
    UnknownScope(String),
    #[error("host `{0}` is not in any scope you may request; ask an operator to add it")]
    UnknownHost(String),
    #[error("host `{host}` is in several scopes ({scopes}); name one with --scope")]
    AmbiguousHost { host: String, scopes: String },
    #[error("login `{login}` is not allowed in scope `{scope}` (allowed: {allowed})")]
    LoginNotAllowed { login: String, scope: String, allowed: String },
    #[error("{asked} is longer than the {max} scope `{scope}` allows")]
    DurationTooLong { asked: String, max: String, scope: String },
    #[error("{who} may not request access in scope `{scope}`")]
    RequesterNotAllowed { who: String, scope: String },
    #[error("requests for scope `{scope}` are not allowed from this channel")]
    ChannelNotAllowed { scope: String },
    #[error("you cannot approve your own request")]
    SelfApproval,
    #[error("{who} is not an approver for scope `{scope}`")]
    NotAnApprover { who: String, scope: String },
    #[error("service accounts cannot approve or deny; a human decides")]
    ServiceCannotDecide,
    #[error("{who} has already approved this request")]
    AlreadyApproved { who: String },
    #[error("the request is {status}; it can no longer be {action}")]
    WrongState { status: &'static str, action: &'static str },
    #[error("the request expired at {at} before reaching its quorum; make a new request")]
    Expired { at: String },
    #[error(
        "scope `{scope}` requires an offline signature: run `breakglass approve --key YOUR_KEY {code}`"
    )]
    OfflineSignatureRequired { scope: String, code: String },
    #[error("the approval signature is not valid for this request")]
    BadSignature,
    #[error("the approval is signed by key {0}, which is not pinned for this approver")]
    UnpinnedKey(String),
    #[error(
        "the approval was signed at {at} by key {key}, which is pinned only {validity} (a retired key); sign again with the current key"
    )]
    KeyNotValidAt { key: String, at: String, validity: String },
    #[error(
        "the signature is {signed_for}'s, but the caller is {caller}: approvers send their own"
    )]
    ApproverMismatch { signed_for: String, caller: String },
    #[error("the approval was signed at {at}, outside the request's window")]
    SignatureOutOfWindow { at: String },
    #[error("only the requester or an approver of scope `{scope}` may revoke this request")]
    NotAllowedToRevoke { scope: String },
    #[error("{0} is not a reviewer: only members of review.reviewer_groups may see recordings")]
    NotAReviewer(String),
}

impl PolicyError {
    /// The stable, machine-readable code for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(v) => match v.what {
                "duration" => "invalid_duration",
                "reason" => "invalid_reason",
                "login" => "invalid_login",
                "host" => "invalid_host",
                "scope" => "invalid_scope",
                _ => "invalid_value",
            },
            Self::UnknownPrincipal(_) => "unknown_principal",
            Self::UnknownScope(_) => "unknown_scope",
            Self::UnknownHost(_) => "unknown_host",
            Self::AmbiguousHost { .. } => "ambiguous_host",
            Self::LoginNotAllowed { .. } => "login_not_allowed",
            Self::DurationTooLong { .. } => "duration_too_long",
            Self::RequesterNotAllowed { .. } => "requester_not_allowed",
            Self::ChannelNotAllowed { .. } => "channel_not_allowed",
            Self::SelfApproval => "self_approval",
            Self::NotAnApprover { .. } => "not_an_approver",
            Self::ServiceCannotDecide => "service_cannot_decide",
            Self::AlreadyApproved { .. } => "already_approved",
            Self::WrongState { .. } => "wrong_state",
            Self::Expired { .. } => "request_expired",
            Self::OfflineSignatureRequired { .. } => "offline_signature_required",
            Self::BadSignature => "bad_signature",
            Self::UnpinnedKey(_) => "unpinned_key",
            Self::KeyNotValidAt { .. } => "key_not_valid_at",
            Self::ApproverMismatch { .. } => "approver_mismatch",
            Self::SignatureOutOfWindow { .. } => "signature_out_of_window",
            Self::NotAllowedToRevoke { .. } => "not_allowed_to_revoke",
            Self::NotAReviewer(_) => "not_a_reviewer",
        }
    }
}

impl From<InvalidValue> for PolicyError {
    fn from(v: InvalidValue) -> Self {
        Self::Invalid(v)
    }
}

/// The whole access policy: principals and scopes, as loaded from config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    principals: BTreeMap<PrincipalName, Principal>,
    scopes: BTreeMap<ScopeName, ScopePolicy>,
}

impl Policy {
    /// Builds a policy. Config validation has already refused duplicates and dangling
    /// references; this only indexes.
    pub fn new(principals: Vec<Principal>, scopes: Vec<ScopePolicy>) -> Self {
        Self {
            principals: principals.into_iter().map(|p| (p.name.clone(), p)).collect(),
            scopes: scopes.into_iter().map(|s| (s.name.clone(), s)).collect(),
        }
    }

    pub fn principal(&self, name: &PrincipalName) -> Result<&Principal, PolicyError> {
        self.principals.get(name).ok_or_else(|| PolicyError::UnknownPrincipal(name.to_string()))
    }

    pub fn scope(&self, name: &ScopeName) -> Result<&ScopePolicy, PolicyError> {
        self.scopes.get(name).ok_or_else(|| PolicyError::UnknownScope(name.to_string()))
    }

    pub fn scopes(&self) -> impl Iterator<Item = &ScopePolicy> {
        self.scopes.values()
    }

    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.principals.values()
    }

    /// True when `who` may ask for access in `scope`.
    pub fn may_request(&self, who: &Principal, scope: &ScopePolicy) -> bool {
        match &who.kind {
            PrincipalKind::Human { groups } => !groups.is_disjoint(&scope.requester_groups),
            PrincipalKind::Service { scopes } => scopes.contains(&scope.name),
        }
    }

    /// True when `who` is a human in one of the scope's approver groups.
    pub fn is_approver(&self, who: &PrincipalName, scope: &ScopePolicy) -> bool {
        matches!(self.principals.get(who),
            Some(Principal { kind: PrincipalKind::Human { groups }, .. })
                if !groups.is_disjoint(&scope.approver_groups))
    }

    /// Finds the scope a request for `host` belongs to, among the scopes `who` may request
    /// (and, for chat requests, that allow the channel).
    ///
    /// # Errors
    /// `UnknownScope` when `scope` names none; `UnknownHost` when no scope the requester may
    /// use has the host; `AmbiguousHost` when several do and none was named;
    /// `RequesterNotAllowed`, `ChannelNotAllowed` when the only matching scope refuses.
    pub fn resolve_scope(
        &self,
        who: &Principal,
        host: &HostName,
        scope: Option<&ScopeName>,
        origin: &Origin,
    ) -> Result<&ScopePolicy, PolicyError> {
        if let Some(name) = scope {
            let s = self.scope(name)?;
            if !s.hosts.contains_key(host) {
                return Err(PolicyError::UnknownHost(host.to_string()));
            }
            return self.check_requester(who, s, origin).map(|()| s);
        }
        let with_host: Vec<&ScopePolicy> =
            self.scopes.values().filter(|s| s.hosts.contains_key(host)).collect();
        let usable: Vec<&ScopePolicy> = with_host
            .iter()
            .copied()
            .filter(|s| self.check_requester(who, s, origin).is_ok())
            .collect();
        match (usable.as_slice(), with_host.as_slice()) {
            ([one], _) => Ok(one),
            ([], []) => Err(PolicyError::UnknownHost(host.to_string())),
            ([], [only]) => self.check_requester(who, only, origin).map(|()| *only),
            ([], _) => Err(PolicyError::RequesterNotAllowed {
                who: who.name.to_string(),
                scope: join(with_host.iter().map(|s| s.name.as_str())),
            }),
            (many, _) => Err(PolicyError::AmbiguousHost {
                host: host.to_string(),
                scopes: join(many.iter().map(|s| s.name.as_str())),
            }),
        }
    }

    fn check_requester(
        &self,
        who: &Principal,
        scope: &ScopePolicy,
        origin: &Origin,
    ) -> Result<(), PolicyError> {
        if !self.may_request(who, scope) {
            return Err(PolicyError::RequesterNotAllowed {
                who: who.name.to_string(),
                scope: scope.name.to_string(),
            });
        }
        if let Some(ch) = origin.channel()
            && !scope.channels.contains(ch)
        {
            return Err(PolicyError::ChannelNotAllowed { scope: scope.name.to_string() });
        }
        Ok(())
    }
}

pub(crate) fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}
