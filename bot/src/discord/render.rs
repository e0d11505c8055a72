//! Discord rendering: escaping untrusted text for Discord markdown, and the embeds and buttons
//! of cards, thread posts and summaries.
//!
//! [`escape`] backslash-escapes every markdown character (`\ * _ ~ | > # - [ ] ( ) <` and
//! backticks), breaks `@everyone`/`@here` and mention syntax with a zero-width space, turns
//! control and bidirectional characters into U+FFFD, and cuts long text with an ellipsis.
//! Every message also sets `allowed_mentions` to parse nothing, so even a missed case cannot
//! ping anyone.

use serenity::all::{
    ButtonStyle, CreateActionRow, CreateAllowedMentions, CreateButton, CreateEmbed,
};

use crate::chat::sync::hhmm;
use crate::chat::{Button, CardView, Integrity, SummaryView, ThreadPost};
use shared::core::Status;

/// Escapes untrusted text for Discord markdown and cuts it to `max` characters.
pub fn escape(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 2));
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        match c {
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '-' | '[' | ']' | '(' | ')' | '<'
            | ':' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@\u{200B}"),
            c if c.is_control() || shared::core::ids::is_bidi_control(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Mentions nobody, whatever the text says.
pub fn no_mentions() -> CreateAllowedMentions {
    CreateAllowedMentions::new().empty_users().empty_roles().everyone(false)
}

fn status_word(s: Status) -> &'static str {
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

/// The card: an embed and its buttons (custom id `action:request-id`).
pub fn card(c: &CardView) -> (CreateEmbed, Vec<CreateActionRow>) {
    let mut footer = Vec::new();
    match c.status {
        Status::Pending => {
            footer.push(format!("Expires at {} unless approved", hhmm(c.pending_until)))
        }
        Status::Approved | Status::Active => {
            footer.push(format!("Access ends by {}", hhmm(c.not_after)))
        }
        _ => {}
    }
    if let Some(by) = &c.closed_by {
        footer.push(format!(
            "{} by {by}",
            if c.status == Status::Denied { "Denied" } else { "Revoked" }
        ));
    }
    if c.offline_only && c.status == Status::Pending {
        footer
            .push(format!("Offline signatures only: breakglass approve --key YOUR_KEY {}", c.code));
    }
    let approvers = if c.approvers.is_empty() {
        "none yet".to_owned()
    } else {
        c.approvers.iter().map(|a| escape(a, 64)).collect::<Vec<_>>().join(", ")
    };
    let mut embed = CreateEmbed::new()
        .title(format!("Break-glass request {} · {}", c.code, status_word(c.status)))
        .field("Requester", escape(&c.requester, 64), true)
        .field("Host", format!("{} as {}", escape(&c.host, 64), escape(&c.login, 32)), true)
        .field("Duration", escape(&c.duration, 16), true)
        .field("Scope", escape(&c.scope, 64), true)
        .field("Approvals", format!("{} of {}: {approvers}", c.approvers.len(), c.quorum), true)
        .field("Reason", escape(&c.reason, 1000), false);
    if !footer.is_empty() {
        embed = embed.footer(serenity::all::CreateEmbedFooter::new(footer.join(" · ")));
    }
    let buttons: Vec<CreateButton> = c
        .buttons()
        .iter()
        .map(|b| {
            let style = match b {
                Button::Approve => ButtonStyle::Success,
                Button::Deny | Button::Revoke => ButtonStyle::Danger,
            };
            CreateButton::new(format!("{}:{}", b.action_id(), c.id)).label(b.label()).style(style)
        })
        .collect();
    let rows =
        if buttons.is_empty() { Vec::new() } else { vec![CreateActionRow::Buttons(buttons)] };
    (embed, rows)
}

/// A thread post's text.
pub fn thread_post(p: &ThreadPost) -> String {
    match p {
        ThreadPost::Approved { by, have, need, signer } => {
            let how = if signer == "personal" { " (signed with their own key)" } else { "" };
            format!("✅ Approved by {}{how} ({have} of {need})", escape(by, 64))
        }
        ThreadPost::Granted { approvers, requester } => format!(
            "🔓 Granted: quorum reached ({}). {} has the connect line.",
            approvers.iter().map(|a| escape(a, 64)).collect::<Vec<_>>().join(", "),
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
                escape(host, 64),
                escape(login, 32)
            )
        }
        ThreadPost::Summary(s) => summary(s),
    }
}

/// The audit summary of a session.
pub fn summary(s: &SummaryView) -> String {
    let ended = match (s.end_reason.as_str(), &s.revoked_by) {
        ("revoked", Some(by)) => format!("revoked by {}", escape(by, 64)),
        ("expired", _) => "cut at the end of the window".to_owned(),
        ("closed", _) => "closed by the user".to_owned(),
        (other, _) => escape(other, 32),
    };
    let when = match (s.started_at, s.ended_at) {
        (Some(a), Some(b)) => {
            format!("{} → {} ({} s)", a.rfc3339(), b.rfc3339(), b.unix() - a.unix())
        }
        _ => "-".into(),
    };
    let integrity = match &s.integrity {
        Integrity::Verified { key_id } => format!("✅ signature verifies (gateway key {key_id})"),
        Integrity::Failed(why) => format!("❌ signature does NOT verify: {}", escape(why, 200)),
        Integrity::Missing => "no recording".to_owned(),
    };
    let mut commands: Vec<String> =
        s.commands.iter().map(|c| format!("• {}", escape(c, 200))).collect();
    let shown = u64::try_from(s.commands.len()).unwrap_or(0);
    if s.commands_total > shown {
        commands.push(format!("…and {} more", s.commands_total - shown));
    }
    format!(
        "**Session summary** {}: {} on {} as {}\n**Approvers:** {}\n**When:** {when}\n**Ended:** {ended}; exit status {}\n\
         **Commands:** {} run\n{}\n**Bytes:** {} in, {} out\n**Recording:** {} · {integrity}",
        s.code,
        escape(&s.requester, 64),
        escape(&s.host, 64),
        escape(&s.login, 32),
        s.approvers.iter().map(|a| escape(a, 64)).collect::<Vec<_>>().join(", "),
        s.exit_status.map_or_else(|| "-".to_owned(), |e| e.to_string()),
        s.commands_total,
        if commands.is_empty() { "none".to_owned() } else { commands.join("\n") },
        s.bytes_in,
        s.bytes_out,
        s.recording.as_deref().map_or_else(|| "-".to_owned(), |f| escape(f, 100)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_links_fences_and_controls_are_neutralised() {
        let e = escape(
            "@everyone @here <@123> <@&9> [click](https://evil) ```x``` \u{202E}a\u{1b}",
            1000,
        );
        assert!(!e.contains("@everyone") && !e.contains("@here"), "{e}");
        assert!(e.contains("\\<@\u{200B}123\\>") && e.contains("\\[click\\]\\(https\\:"), "{e}");
        assert!(e.contains("\\`\\`\\`"), "{e}");
        assert!(!e.contains('\u{202E}') && !e.contains('\u{1b}'), "{e}");
        assert_eq!(escape(&"y".repeat(30), 5), "yyyyy…");
    }
}
