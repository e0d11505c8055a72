//! Slack rendering: escaping untrusted text for mrkdwn, and the Block Kit of cards, thread
//! posts and summaries.
//!
//! Every piece of text that came from a user (reasons, names, commands, paths) goes through
//! [`escape`]: `&`, `<` and `>` become entities, so `<!channel>`, `<@U…>` and
//! `<http://evil|innocent>` cannot be formed; control and bidirectional characters become
//! U+FFFD; long text is cut with an ellipsis, on a budget measured on the escaped output (an
//! entity is never cut). Every section text fits Slack's 3000 characters (a field's, 2000),
//! or Slack refuses the message with `invalid_blocks`. Text objects are also marked
//! `verbatim`, so Slack does not turn bare URLs, `@here` or `#channel` into links or mentions.

use slack_morphism::prelude::*;

use crate::chat::sync::hhmm;
use crate::chat::{
    Button, CardView, Integrity, SummaryView, ThreadPost, escape_within, fit_lines, text_len,
};
use shared::core::Status;

/// Slack's limit on a section block's text.
pub const SECTION_MAX: usize = 3000;

/// Escapes untrusted text for Slack mrkdwn and cuts it where the escaped text would pass `max`
/// characters (it ends with `…` then, so it is at most `max + 1` long).
pub fn escape(text: &str, max: usize) -> String {
    escape_within(text, max, |out, c| match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c if c.is_control() || shared::core::ids::is_bidi_control(c) => out.push('\u{FFFD}'),
        c => out.push(c),
    })
}

/// Escaped text inside inline code (backticks in it are replaced, so it cannot break out).
pub fn code(text: &str, max: usize) -> String {
    format!("`{}`", escape(text, max).replace('`', "ˋ"))
}

fn md(text: String) -> SlackBlockText {
    SlackBlockText::MarkDown(SlackBlockMarkDownText::new(text).with_verbatim(true))
}

fn section(text: String) -> SlackBlock {
    SlackSectionBlock::new().with_text(md(text)).into()
}

fn context(text: String) -> SlackBlock {
    SlackContextBlock::new(vec![SlackContextBlockElement::MarkDown(
        SlackBlockMarkDownText::new(text).with_verbatim(true),
    )])
    .into()
}
/// The request card.
pub fn card(c: &CardView) -> SlackMessageContent {
    let mut blocks = vec![
        section(format!(
            "*Break-glass request* {} · *{}* ({} of {} approvals)",
            code(&c.code, 16),
            crate::chat::status_word(c.status),
            c.approvers.len(),
            c.quorum
        )),
        SlackSectionBlock::new()
            .with_fields(vec![
                md(format!("*Requester*\n{}", escape(&c.requester, 64))),
                md(format!("*Host*\n{} as {}", code(&c.host, 64), code(&c.login, 32))),
                md(format!("*Duration*\n{}", escape(&c.duration, 16))),
                md(format!("*Scope*\n{}", escape(&c.scope, 64))),
            ])
            .into(),
        section(format!("*Reason*\n{}", escape(&c.reason, 1000))),
    ];
    let mut ctx = Vec::new();
    if !c.approvers.is_empty() {
        ctx.push(format!("Approved by {}", escape(&c.approvers.join(", "), 1500)));
    }
    if let Some(by) = &c.closed_by {
        ctx.push(format!(
            "{} by {}",
            if c.status == Status::Denied { "Denied" } else { "Revoked" },
            escape(by, 64)
        ));
    }
    match c.status {
        Status::Pending => {
            ctx.push(format!("Expires at {} unless approved", hhmm(c.pending_until)))
        }
        Status::Approved | Status::Active => {
            ctx.push(format!("Access ends by {}", hhmm(c.not_after)))
        }
        _ => {}
    }
    if c.offline_only && c.status == Status::Pending {
        ctx.push(format!(
            "This scope needs offline signatures: `breakglass approve --key YOUR_KEY {}`",
            escape(&c.code, 16)
        ));
    }
    if !ctx.is_empty() {
        blocks.push(context(ctx.join(" · ")));
    }
    let buttons: Vec<SlackActionBlockElement> = c
        .buttons()
        .iter()
        .map(|b| {
            let mut e = SlackBlockButtonElement::new(SlackBlockPlainTextOnly::from(b.label()))
                .with_action_id(b.action_id().into())
                .with_value(c.id.clone());
            match b {
                Button::Approve => e = e.with_style(SlackBlockButtonStyle::Primary),
                Button::Deny | Button::Revoke => e = e.with_style(SlackBlockButtonStyle::Danger),
            }
            SlackActionBlockElement::Button(e)
        })
        .collect();
    if !buttons.is_empty() {
        blocks.push(SlackActionsBlock::new(buttons).into());
    }
    SlackMessageContent::new()
        .with_text(format!(
            "Break-glass request {} for {}: {}",
            escape(&c.code, 16),
            escape(&c.host, 64),
            crate::chat::status_word(c.status)
        ))
        .with_blocks(blocks)
}

/// A line in the card's thread.
pub fn thread_post(p: &ThreadPost) -> SlackMessageContent {
    let text = match p {
        ThreadPost::Approved { by, have, need, signer } => {
            let how = if signer == "personal" { " (signed with their own key)" } else { "" };
            format!("✅ Approved by {}{how} ({have} of {need})", escape(by, 64))
        }
        ThreadPost::Granted { approvers, requester } => format!(
            "🔓 Granted: quorum reached ({}). {} has the connect line.",
            escape(&approvers.join(", "), 1500),
            escape(requester, 64)
        ),
        ThreadPost::Denied { by } => format!("⛔ Denied by {}", escape(by, 64)),
        ThreadPost::Revoked { by, was } => {
            format!("🛑 Revoked by {} (was {})", escape(by, 64), escape(was, 16))
        }
        ThreadPost::Expired { was } => {
            if was == "pending" {
                "⌛ Expired: no quorum in time".to_owned()
            } else {
                "⌛ Expired unused".to_owned()
            }
        }
        ThreadPost::SessionStarted { requester, host, login } => {
            format!(
                "🟢 Session live: {} on {} as {}",
                escape(requester, 64),
                code(host, 64),
                code(login, 32)
            )
        }
        ThreadPost::Summary(s) => return summary(s),
    };
    SlackMessageContent::new().with_text(text.clone()).with_blocks(vec![section(text)])
}

/// The audit summary of a session.
pub fn summary(s: &SummaryView) -> SlackMessageContent {
    let ended = match (s.end_reason.as_str(), &s.revoked_by) {
        ("revoked", Some(by)) => format!("revoked by {}", escape(by, 64)),
        ("expired", _) => "cut at the end of the window".to_owned(),
        ("closed", _) => "closed by the user".to_owned(),
        (other, _) => escape(other, 32),
    };
    let duration = s
        .duration()
        .map(|d| {
            shared::core::GrantDuration::from_secs(d.as_secs().max(1))
                .map(|g| g.to_string())
                .unwrap_or_default()
        })
        .unwrap_or_else(|| "-".into());
    let when = match (s.started_at, s.ended_at) {
        (Some(a), Some(b)) => format!("{} → {} ({duration})", a.rfc3339(), b.rfc3339()),
        _ => "-".into(),
    };
    let integrity = match &s.integrity {
        Integrity::Verified { key_id } => {
            format!("✅ signature verifies (gateway key {})", escape(key_id, 16))
        }
        Integrity::Failed(why) => format!("❌ signature does NOT verify: {}", escape(why, 200)),
        Integrity::Missing => "no recording".to_owned(),
    };
    let recording = match (&s.recording, &s.recording_link) {
        (Some(f), Some(link)) => format!("<{}|{}>", escape(link, 300), escape(f, 100)),
        (Some(f), None) => code(f, 100),
        _ => "-".into(),
    };
    let text = |commands: &str| {
        format!(
            "*Session summary* {}: {} on {} as {}\n\
             *Approvers:* {}\n*When:* {when}\n*Ended:* {ended}; exit status {}\n\
             *Commands:* {} run\n{commands}\n*Bytes:* {} in, {} out\n*Recording:* {recording} · {integrity}",
            code(&s.code, 16),
            escape(&s.requester, 64),
            code(&s.host, 64),
            code(&s.login, 32),
            escape(&s.approvers.join(", "), 600),
            s.exit_status.map_or_else(|| "-".to_owned(), |e| e.to_string()),
            s.commands_total,
            s.bytes_in,
            s.bytes_out,
        )
    };
    // Within the section's limit: the commands that fit (each cut), then how many more there
    // were (the reviewer page has them all).
    let total = usize::try_from(s.commands_total).unwrap_or(usize::MAX).max(s.commands.len());
    let commands = if total == 0 {
        "none".to_owned()
    } else {
        let budget = SECTION_MAX.saturating_sub(text_len(&text("")));
        fit_lines(s.commands.iter().map(|c| format!("• {}", code(c, 150))), total, budget)
    };
    SlackMessageContent::new()
        .with_text(format!("Session summary {}", escape(&s.code, 16)))
        .with_blocks(vec![section(text(&commands))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_links_and_controls_cannot_get_through() {
        let evil =
            "<!channel> <@U024BE7LH> <http://evil.example|click me> & \u{202E}txt.exe\u{7} bold";
        let e = escape(evil, 1000);
        assert!(!e.contains('<') && !e.contains('>'), "{e}");
        assert!(e.contains("&lt;!channel&gt;") && e.contains("&amp;"), "{e}");
        assert!(!e.contains('\u{202E}') && !e.contains('\u{7}'), "{e}");
        assert_eq!(escape(&"x".repeat(50), 10), format!("{}…", "x".repeat(10)));
        assert_eq!(code("a`b", 10), "`aˋb`");
    }
}
