//! The `/breakglass` slash command and the card buttons, platform-neutral: one runner that
//! Slack and Discord both call once they have verified and decoded a delivery.
//!
//! A platform adapter turns its wire format into an [`Invocation`] (who clicked or typed, in
//! which channel, by the platform's user id) and a [`SlashCommand`] (or the [`BadInput`] its
//! decoding found), calls [`run`] or [`click`], and sends the answer back in its own format.
//! The answer is the text shown to the invoker alone; a refusal ends with its stable code in
//! brackets (`[not_found]`), the same code the HTTP API returns. Cards are never posted from
//! here: the request's audit event makes the chat sync loop post them, which [`run`] wakes.
//!
//! What differs between platforms is how text is written ([`Voice`]: the platform's
//! [`Markup`], its help text, how it names its config key); the decisions do not.

use shared::core::{
    GrantDuration, HostName, Login, NewRequest, Origin, PolicyError, PrincipalName, Reason,
    RequestRef, ScopeName, Status,
};
use shared::ports::RequestFilter;

use super::present::{Markup, card_of, hhmm, request_line};
use super::sync::ChatHub;
use super::{Button, Platform};
use crate::service::{Deps, ServiceError};

/// A slash command, decoded from either platform's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlashCommand {
    Request {
        host: HostName,
        login: Option<Login>,
        duration: Option<GrantDuration>,
        scope: Option<ScopeName>,
        reason: Reason,
    },
    Status(Option<RequestRef>),
    List,
    Revoke(RequestRef),
    /// A single-use sign-in link to the reviewer page (for one request, or the list).
    Review(Option<RequestRef>),
    Help,
}

/// A command that did not decode: what is wrong, and its stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInput {
    pub message: String,
    pub code: &'static str,
}

/// Who invoked a command or clicked a button, and where. The adapter has verified the
/// delivery; `user` is the platform's user id, matched against `slack_id` or `discord_id` in
/// config.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    pub platform: Platform,
    pub user: &'a str,
    pub channel: &'a str,
}

/// How a platform words the runner's answers, beyond its [`Markup`].
pub trait Voice: Markup {
    /// The answer to `help` (and to a command with nothing to do).
    const HELP: &'static str;
    /// How much of an input error's message is shown.
    const INPUT_ERROR_MAX: usize;
    /// Where the requester will get the connect line (`here`, `privately`).
    const CONNECT_LINE_GOES: &'static str;
    /// The answer to someone the config does not know by this platform's user id.
    fn not_configured(&self, user: &str) -> String;
    /// The answer to an Approve click on a scope that accepts only offline signatures.
    fn offline_signature_required(&self, code: &str) -> String;
    /// Several [`request_line`]s in one answer, within the platform's limit.
    fn lines(&self, lines: Vec<String>) -> String;
}

/// The configured person behind the invoker's platform user id.
fn principal(deps: &Deps, inv: &Invocation<'_>) -> Option<PrincipalName> {
    let (slack, discord) = match inv.platform {
        Platform::Slack => (Some(inv.user), None),
        Platform::Discord => (None, Some(inv.user)),
    };
    deps.config.principal_by_chat_id(slack, discord).cloned()
}

/// Where a request made by this invocation comes from, so its card goes to the same channel.
fn origin(inv: &Invocation<'_>) -> Origin {
    let channel = inv.channel.to_owned();
    match inv.platform {
        Platform::Slack => Origin::Slack { channel },
        Platform::Discord => Origin::Discord { channel },
    }
}

/// Whether `origin` is this invocation's channel.
fn made_here(origin: &Origin, inv: &Invocation<'_>) -> bool {
    match (origin, inv.platform) {
        (Origin::Slack { channel }, Platform::Slack)
        | (Origin::Discord { channel }, Platform::Discord) => channel == inv.channel,
        _ => false,
    }
}

/// One line for a refusal, with its stable code.
pub fn refusal<V: Voice>(v: &V, e: &ServiceError) -> String {
    match e {
        ServiceError::Policy(PolicyError::OfflineSignatureRequired { code, .. }) => {
            v.offline_signature_required(code)
        }
        ServiceError::Policy(p) => format!("{} [{}]", v.escape(&p.to_string(), 500), p.code()),
        ServiceError::NotFound(r) => format!("No request {} [not_found]", v.escape(r, 64)),
        ServiceError::Busy => {
            "The request changed while this was decided; try again [conflict]".to_owned()
        }
        ServiceError::Unavailable(_) => {
            "breakglass cannot reach its database right now; nothing was changed [unavailable]"
                .to_owned()
        }
        ServiceError::Internal(_) => "Internal error; nothing was changed [internal]".to_owned(),
    }
}

/// Runs one verified slash command as the invoker; returns the answer only they see.
pub async fn run<V: Voice>(
    deps: &Deps,
    hub: &ChatHub,
    v: &V,
    inv: &Invocation<'_>,
    cmd: Result<SlashCommand, BadInput>,
) -> String {
    // Someone the config does not know learns that first, whatever they typed.
    let Some(who) = principal(deps, inv) else { return v.not_configured(inv.user) };
    let cmd = match cmd {
        Ok(c) => c,
        Err(e) => return format!("{} [{}]", v.escape(&e.message, V::INPUT_ERROR_MAX), e.code),
    };
    let describe = |r| request_line(v, &card_of(deps, r));
    match cmd {
        SlashCommand::Help => V::HELP.to_owned(),
        SlashCommand::Request { host, login, duration, scope, reason } => {
            let input = NewRequest {
                requester: who,
                host,
                scope,
                login,
                duration,
                reason,
                origin: origin(inv),
            };
            match deps.create_request(input).await {
                Ok(r) => {
                    hub.wake.notify_one();
                    format!(
                        "Requested {}. The card is posted in this channel for approvers; you will get the connect line {} once it is approved.",
                        describe(&r),
                        V::CONNECT_LINE_GOES
                    )
                }
                Err(e) => refusal(v, &e),
            }
        }
        SlashCommand::Status(Some(r)) => match deps.get(&r).await {
            Ok(req) => describe(&req),
            Err(e) => refusal(v, &e),
        },
        SlashCommand::Status(None) => {
            let filter =
                RequestFilter { requester: Some(who), limit: 5, ..RequestFilter::default() };
            match deps.list(&filter).await {
                Ok(rs) if rs.is_empty() => "You have no requests.".to_owned(),
                Ok(rs) => v.lines(rs.iter().map(describe).collect()),
                Err(e) => refusal(v, &e),
            }
        }
        SlashCommand::List => {
            let filter = RequestFilter {
                statuses: vec![Status::Pending, Status::Approved, Status::Active],
                requester: None,
                limit: 1000,
                ..RequestFilter::default()
            };
            match deps.list(&filter).await {
                Ok(rs) => {
                    let here: Vec<String> = rs
                        .iter()
                        .filter(|r| made_here(&r.origin, inv))
                        .filter(|r| !r.status_at(deps.now()).is_terminal())
                        .map(describe)
                        .collect();
                    if here.is_empty() {
                        "No open requests or live sessions in this channel.".to_owned()
                    } else {
                        v.lines(here)
                    }
                }
                Err(e) => refusal(v, &e),
            }
        }
        SlashCommand::Review(r) => match deps.issue_review_link(&who, r.as_ref()).await {
            Ok(link) => format!(
                "Your sign-in link to the reviewer page (opens once, until {}; do not share it): {}",
                hhmm(link.expires_at),
                link.url
            ),
            Err(e) => refusal(v, &e),
        },
        SlashCommand::Revoke(r) => match deps.revoke(&r, &who).await {
            Ok(req) => {
                hub.wake.notify_one();
                format!("Revoked {}.", v.code(req.code.as_str()))
            }
            Err(e) => refusal(v, &e),
        },
    }
}

/// Runs one verified click on a card's button as the clicker. `Ok` when the decision was
/// taken (the sync loop, woken here, updates the card for everyone); otherwise the answer
/// only the clicker sees.
///
/// # Errors
/// The refusal's text, with its stable code.
pub async fn click<V: Voice>(
    deps: &Deps,
    hub: &ChatHub,
    v: &V,
    inv: &Invocation<'_>,
    button: Button,
    r: &RequestRef,
) -> Result<(), String> {
    let Some(who) = principal(deps, inv) else { return Err(v.not_configured(inv.user)) };
    let result = match button {
        Button::Approve => deps.approve(r, &who, None).await,
        Button::Deny => deps.deny(r, &who).await,
        Button::Revoke => deps.revoke(r, &who).await,
    };
    match result {
        Ok(_) => {
            hub.wake.notify_one();
            Ok(())
        }
        Err(e) => Err(refusal(v, &e)),
    }
}
