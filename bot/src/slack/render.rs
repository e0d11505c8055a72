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

use crate::chat::command::Voice;
use crate::chat::present::{self, Markup, status_word};
use crate::chat::{Button, CardView, SummaryView, ThreadPost, escape_within, text_len};
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

/// Slack mrkdwn as the shared sentences need it: names escaped, hosts, logins and codes in
/// inline code, emphasis with `*`.
#[derive(Debug, Clone, Copy)]
pub struct Mrkdwn;

impl Markup for Mrkdwn {
    fn escape(&self, text: &str, max: usize) -> String {
        escape(text, max)
    }
    fn person(&self, name: &str) -> String {
        escape(name, 64)
    }
    fn host(&self, host: &str) -> String {
        code(host, 64)
    }
    fn login(&self, login: &str) -> String {
        code(login, 32)
    }
    fn code(&self, c: &str) -> String {
        code(c, 16)
    }
    fn bold(&self, text: &str) -> String {
        format!("*{text}*")
    }
}

impl Voice for Mrkdwn {
    const HELP: &'static str = super::parse::USAGE;
    const INPUT_ERROR_MAX: usize = 1500;
    const CONNECT_LINE_GOES: &'static str = "here";

    fn not_configured(&self, user: &str) -> String {
        format!(
            "You are not a breakglass user yet: ask an operator to add `slack_id = \"{}\"` to your entry under [users] in the breakglass config.",
            escape(user, 32)
        )
    }

    fn offline_signature_required(&self, c: &str) -> String {
        format!(
            "This scope accepts only approvals signed with your own key. Run `breakglass approve --key YOUR_KEY {}` [offline_signature_required]",
            escape(c, 16)
        )
    }

    /// One per line: a slash command's answer has room for the few a status or list shows.
    fn lines(&self, lines: Vec<String>) -> String {
        lines.join("\n")
    }
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
            status_word(c.status),
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
        ctx.push(format!("{} by {}", present::closed_word(c), escape(by, 64)));
    }
    ctx.extend(present::deadline(c));
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
            status_word(c.status)
        ))
        .with_blocks(blocks)
}

/// A line in the card's thread.
pub fn thread_post(p: &ThreadPost) -> SlackMessageContent {
    match present::thread_line(&Mrkdwn, p) {
        Ok(text) => {
            SlackMessageContent::new().with_text(text.clone()).with_blocks(vec![section(text)])
        }
        Err(s) => summary(s),
    }
}

/// The audit summary of a session.
pub fn summary(s: &SummaryView) -> SlackMessageContent {
    let ended = present::summary_ended(&Mrkdwn, s);
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
    let integrity = present::summary_integrity(&Mrkdwn, s);
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
    let budget = SECTION_MAX.saturating_sub(text_len(&text("")));
    let commands = present::summary_commands(s, budget, |c| format!("• {}", code(c, 150)));
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
