//! Who is connecting, which grant they name, and whether it may be used now.
//!
//! The gateway decides alone: it identifies the caller by the SSH key in its own config, loads
//! the grant the user name points to, and has the pure core verify it
//! ([`shared::core::verify_grant`]) against the gateway's own policy and pinned keys. Every
//! refusal is one line that says why and what to do; "not yours" and "no such grant" read the
//! same, so a user cannot probe for other people's codes.

use std::collections::HashMap;

use russh::keys::ssh_key::PublicKey;
use russh::keys::ssh_key::public::KeyData;
use shared::config::{Config, GatewaySettings};
use shared::core::{
    DenyReason, GrantCode, HostName, Login, Origin, PinnedKeys, Policy, PrincipalName, Request,
    RequestRef, Status, Timestamp, VerifiedGrant, verify_grant,
};
use shared::ports::{RequestFilter, Requests, StoreError};

/// SSH public keys from config, to the principal each belongs to.
#[derive(Debug, Default)]
pub struct Identities {
    by_key: HashMap<KeyData, PrincipalName>,
}

impl Identities {
    /// Parses every `ssh_keys` entry of the config.
    ///
    /// # Errors
    /// A key line OpenSSH would not accept, naming its owner; or one key listed for two
    /// principals.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let mut by_key = HashMap::new();
        for (who, id) in &config.identities {
            for (i, line) in id.ssh_keys.iter().enumerate() {
                let key = PublicKey::from_openssh(line).map_err(|e| {
                    anyhow::anyhow!("config error at `ssh_keys[{i}]` of `{who}`: not an OpenSSH public key ({e}); fix: paste the content of the user's id_ed25519.pub")
                })?;
                if let Some(other) = by_key.insert(key.key_data().clone(), who.clone()) {
                    anyhow::bail!(
                        "config error: the same SSH key is listed for `{other}` and `{who}`; fix: give each person their own key"
                    );
                }
            }
        }
        Ok(Self { by_key })
    }

    /// The principal whose configured key this is.
    pub fn identify(&self, key: &PublicKey) -> Option<&PrincipalName> {
        self.by_key.get(key.key_data())
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// What refusals tell the user to type: this gateway's public address (from its config, as the
/// connect line in chat shows it) and the request command of the place a request came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hints {
    /// `ssh -p 2222` or, on port 22, `ssh`.
    ssh: String,
    host: String,
}

impl Hints {
    pub fn new(gateway: &GatewaySettings) -> Self {
        let ssh = match gateway.public_port {
            22 => "ssh".to_owned(),
            port => format!("ssh -p {port}"),
        };
        Self { ssh, host: gateway.public_host.clone() }
    }

    /// How to ask again, where the request was made: the slash command for a chat request,
    /// the CLI for one made through the CLI or the API.
    pub fn request_again(origin: &Origin, host: &HostName) -> String {
        match origin {
            Origin::Api => format!("request again with `breakglass request {host}`"),
            Origin::Slack { .. } | Origin::Discord { .. } => {
                format!("request again with /breakglass request {host}")
            }
        }
    }

    /// How to ask when there is no request to take the place from.
    fn request_new(host: &str, login: Option<&Login>) -> String {
        let as_login = login.map(|l| format!(" --as {l}")).unwrap_or_default();
        format!(
            "request access with /breakglass request {host}{as_login} in chat or `breakglass request {host}{as_login}`"
        )
    }
}

/// What the SSH user name asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `bg-7f3a2c`: the grant's code, as the approval message shows it.
    Code(GrantCode),
    /// `postgres@db-1`: the caller's approved grant for that login on that host.
    HostLogin { login: Login, host: HostName },
}

impl Target {
    /// Parses an SSH user name.
    ///
    /// # Errors
    /// A refusal line saying which forms are accepted.
    pub fn parse(user: &str, hints: &Hints) -> Result<Self, Refusal> {
        let usage = || Refusal::usage(user, hints);
        if user.starts_with("bg-") {
            return GrantCode::parse(user).map(Self::Code).map_err(|_| usage());
        }
        let (login, host) = user.split_once('@').ok_or_else(usage)?;
        Ok(Self::HostLogin {
            login: Login::parse(login).map_err(|_| usage())?,
            host: HostName::parse(host).map_err(|_| usage())?,
        })
    }
}

/// A refusal: a stable code for logs and the audit, and one line for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    fn usage(user: &str, hints: &Hints) -> Self {
        let Hints { ssh, host } = hints;
        Self::new(
            "bad_user_name",
            format!(
                "`{}` is not a grant: connect as the code from the approval ({ssh} bg-7f3a2c@{host}) or as LOGIN@HOST ({ssh} postgres@db-1@{host})",
                user.escape_debug()
            ),
        )
    }

    /// A grant that was already used: one approval set opens one session.
    pub fn already_used(req: &Request) -> Self {
        Self::new(
            "already_used",
            format!(
                "{} was already used: one approval opens one session; {}",
                req.code,
                Hints::request_again(&req.origin, &req.host)
            ),
        )
    }

    /// The database did not answer: nothing can be verified, so nothing is granted.
    pub fn unavailable() -> Self {
        Self::new(
            "unavailable",
            "the gateway cannot verify grants right now (database unavailable); no access was granted, try again in a moment",
        )
    }
}

/// Loads the grant `target` names for `who` and verifies it at `now`.
///
/// # Errors
/// A [`Refusal`] for anything short of a verified grant, including storage failures.
pub async fn decide(
    store: &dyn Requests,
    policy: &Policy,
    pins: &PinnedKeys,
    who: &PrincipalName,
    target: &Target,
    now: Timestamp,
) -> Result<VerifiedGrant, Refusal> {
    let req = match target {
        Target::Code(code) => match store.get_request(&RequestRef::Code(code.clone())).await {
            Ok(r) if r.requester == *who => r,
            Ok(_) | Err(StoreError::NotFound) => {
                return Err(Refusal::new(
                    "no_grant",
                    format!(
                        "no grant {code} for {who}; check the code in the approval message, or {}",
                        Hints::request_new("HOST", None)
                    ),
                ));
            }
            Err(_) => return Err(Refusal::unavailable()),
        },
        Target::HostLogin { login, host } => {
            let filter = RequestFilter {
                statuses: vec![Status::Approved],
                requester: Some(who.clone()),
                limit: 100,
                ..RequestFilter::default()
            };
            let mine = store.list_requests(&filter).await.map_err(|_| Refusal::unavailable())?;
            mine.into_iter()
                .filter(|r| {
                    r.host == *host && r.login == *login && r.status_at(now) == Status::Approved
                })
                .max_by_key(|r| r.not_after)
                .ok_or_else(|| {
                    Refusal::new(
                        "no_grant",
                        format!(
                            "no approved grant for {who} on {host} as {login}; {}",
                            Hints::request_new(host.as_str(), Some(login))
                        ),
                    )
                })?
        }
    };
    verify_grant(&req, policy, pins, now).map_err(|e| explain(&req, &e))
}

/// One line for the user from the core's reason.
fn explain(req: &Request, e: &DenyReason) -> Refusal {
    let code = req.code.as_str();
    let again = Hints::request_again(&req.origin, &req.host);
    let (c, m) = match e {
        DenyReason::NotApproved("pending") => (
            "pending",
            format!(
                "{code} is still waiting for approvals ({} so far); connect once it is approved",
                req.approvals.len()
            ),
        ),
        DenyReason::NotApproved("active" | "closed") => return Refusal::already_used(req),
        DenyReason::NotApproved("denied") => ("denied", format!("{code} was denied{}", by(req))),
        DenyReason::NotApproved("revoked") => {
            ("revoked", format!("{code} was revoked{}; {again}", by(req)))
        }
        DenyReason::NotApproved(s) => ("not_approved", format!("{code} is {s}; {again}")),
        DenyReason::NotYetValid(at) => {
            ("not_yet_valid", format!("{code} is not valid before {at}"))
        }
        DenyReason::Ended(at) => ("expired", format!("{code} expired at {at}; {again}")),
        DenyReason::QuorumNotMet { have, need } => (
            "quorum_not_met",
            format!(
                "{code} does not carry enough valid approval signatures ({have} of {need}) for this gateway; it cannot be used, {again}"
            ),
        ),
        DenyReason::Policy(p) => {
            ("policy", format!("{code} does not pass this gateway's policy: {p}"))
        }
    };
    Refusal::new(c, m)
}

fn by(req: &Request) -> String {
    req.closed_by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_public_address_and_the_place_the_request_came_from() {
        let host = HostName::parse("db-1").expect("host");
        let chat = Origin::Slack { channel: "C1".into() };
        assert_eq!(
            Hints::request_again(&chat, &host),
            "request again with /breakglass request db-1"
        );
        assert_eq!(
            Hints::request_again(&Origin::Api, &host),
            "request again with `breakglass request db-1`"
        );
        let hints = Hints { ssh: "ssh".into(), host: "gw.example.com".into() };
        let usage = Target::parse("root", &hints).expect_err("not a grant");
        assert!(usage.message.contains("(ssh bg-7f3a2c@gw.example.com)"), "{}", usage.message);
        assert!(!usage.message.contains("2222"), "{}", usage.message);
    }
}
