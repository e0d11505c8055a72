//! Presentation shared by every front end: the card's fields ([`card_of`]), status words, the
//! connect line, one request on one line, thread lines, and the pieces of the session summary.
//!
//! The sentences live here once; what differs between platforms is only how untrusted text
//! is escaped and how identifiers and emphasis are marked, which each platform gives as a
//! [`Markup`] (Slack mrkdwn, Discord markdown). The layouts that are truly the platform's own
//! (Block Kit sections, embeds, the summary's message) stay in each platform's `render.rs`.

use shared::config::GatewaySettings;
use shared::core::{EndReason, Request, SignerKind, Status, Timestamp};

use super::{CardView, Integrity, SummaryView, ThreadPost, fit_lines};
use crate::service::Deps;

/// How a platform writes text that came from users, and the few marks the shared sentences
/// use. Every method escapes what it is given: callers pass raw (untrusted) text.
pub trait Markup {
    /// Escapes `text` for the platform's markup and cuts it where the escaped text would
    /// pass `max` characters.
    fn escape(&self, text: &str, max: usize) -> String;
    /// A person's name.
    fn person(&self, name: &str) -> String;
    /// A host name.
    fn host(&self, host: &str) -> String;
    /// A Unix login.
    fn login(&self, login: &str) -> String;
    /// A request's code (`bg-7f3a2c`).
    fn code(&self, code: &str) -> String;
    /// Emphasis around text that is already safe (status words).
    fn bold(&self, text: &str) -> String;
}

/// The card of `req` as it stands now: the scope's quorum and whether it needs offline
/// signatures come from config.
pub fn card_of(deps: &Deps, req: &Request) -> CardView {
    let scope = deps.config.policy.scope(&req.scope).ok();
    CardView::of(
        req,
        scope.map_or(0, |s| s.quorum),
        scope.is_some_and(|s| s.require_offline_signature),
        deps.now(),
    )
}

/// A request's status as every chat platform shows it.
pub fn status_word(s: Status) -> &'static str {
    match s {
        Status::Pending => "⏳ pending",
        Status::Approved => "✅ approved",
        Status::Active => "🟢 session live",
        Status::Closed => "⚪ closed",
        Status::Denied => "⛔ denied",
        Status::Expired => "⌛ expired",
        Status::Revoked => "🛑 revoked",
    }
}

/// Timestamps as `03:44 UTC`, for chat.
pub fn hhmm(t: Timestamp) -> String {
    let s = t.rfc3339();
    s.get(11..16).map_or(s.clone(), |h| format!("{h} UTC"))
}

/// `ssh -p PORT CODE@HOST`, the line the requester runs once approved (the port is left out
/// when it is 22).
pub fn connect_line(gw: &GatewaySettings, req: &Request) -> String {
    if gw.public_port == 22 {
        format!("ssh {}@{}", req.code, gw.public_host)
    } else {
        format!("ssh -p {} {}@{}", gw.public_port, req.code, gw.public_host)
    }
}

/// One request on one line: what the slash command answers for `status`, `list` and a new
/// request.
pub fn request_line(m: &impl Markup, v: &CardView) -> String {
    format!(
        "{} {} → {} as {} for {}: {} ({} of {} approvals)",
        m.code(&v.code),
        m.person(&v.requester),
        m.host(&v.host),
        m.login(&v.login),
        m.escape(&v.duration, 16),
        m.bold(v.status.as_str()),
        v.approvers.len(),
        v.quorum
    )
}

/// When a card's request stops waiting: the pending deadline or the grant's end, while either
/// applies.
pub fn deadline(c: &CardView) -> Option<String> {
    match c.status {
        Status::Pending => Some(format!("Expires at {} unless approved", hhmm(c.pending_until))),
        Status::Approved | Status::Active => Some(format!("Access ends by {}", hhmm(c.not_after))),
        _ => None,
    }
}

/// The word for whoever closed a card's request (`closed_by` is set on a deny or a revoke).
pub fn closed_word(c: &CardView) -> &'static str {
    if c.status == Status::Denied { "Denied" } else { "Revoked" }
}

/// The text of a line in a card's thread, or (`Err`) the summary to lay out: its layout is
/// each platform's own, from [`summary_ended`], [`summary_integrity`] and [`summary_commands`].
///
/// # Errors
/// Not an error: the post is a summary.
pub fn thread_line<'p>(m: &impl Markup, p: &'p ThreadPost) -> Result<String, &'p SummaryView> {
    Ok(match p {
        ThreadPost::Approved { by, have, need, signer } => {
            let how =
                if *signer == SignerKind::Personal { " (signed with their own key)" } else { "" };
            format!("✅ Approved by {}{how} ({have} of {need})", m.person(by))
        }
        ThreadPost::Granted { approvers, requester } => format!(
            "🔓 Granted: quorum reached ({}). {} has the connect line.",
            m.escape(&approvers.join(", "), 1500),
            m.person(requester)
        ),
        ThreadPost::Denied { by } => format!("⛔ Denied by {}", m.person(by)),
        ThreadPost::Revoked { by, was } => {
            format!("🛑 Revoked by {} (was {})", m.person(by), was.as_str())
        }
        ThreadPost::Expired { was } => {
            if *was == Status::Pending {
                "⌛ Expired: no quorum in time".to_owned()
            } else {
                "⌛ Expired unused".to_owned()
            }
        }
        ThreadPost::SessionStarted { requester, host, login } => format!(
            "🟢 Session live: {} on {} as {}",
            m.person(requester),
            m.host(host),
            m.login(login)
        ),
        ThreadPost::Summary(s) => return Err(s),
    })
}

/// How a summarised session ended, in words.
pub fn summary_ended(m: &impl Markup, s: &SummaryView) -> String {
    match (s.end_reason, &s.revoked_by) {
        (EndReason::Revoked, Some(by)) => format!("revoked by {}", m.person(by)),
        (EndReason::Expired, _) => "cut at the end of the window".to_owned(),
        (EndReason::Closed, _) => "closed by the user".to_owned(),
        (other, _) => other.as_str().to_owned(),
    }
}

/// Whether the summarised session's recording verifies, in words.
pub fn summary_integrity(m: &impl Markup, s: &SummaryView) -> String {
    match &s.integrity {
        // A key id is 16 hex digits: escaping leaves it whole on every platform.
        Integrity::Verified { key_id } => {
            format!("✅ signature verifies (gateway key {})", m.escape(key_id, 16))
        }
        Integrity::Failed(why) => format!("❌ signature does NOT verify: {}", m.escape(why, 200)),
        Integrity::Missing => "no recording".to_owned(),
    }
}

/// The summarised session's commands within `budget`: as many as fit, each written by
/// `bullet`, then how many more there were (the reviewer page has them all); `none` when no
/// command ran.
pub fn summary_commands(s: &SummaryView, budget: usize, bullet: impl Fn(&str) -> String) -> String {
    let total = usize::try_from(s.commands_total).unwrap_or(usize::MAX).max(s.commands.len());
    if total == 0 {
        "none".to_owned()
    } else {
        fit_lines(s.commands.iter().map(|c| bullet(c)), total, budget)
    }
}
