//! Discord rendering: escaping untrusted text for Discord markdown, and the embeds and buttons
//! of cards, thread posts and summaries.
//!
//! [`escape`] backslash-escapes every markdown character (`\ * _ ~ | > # - [ ] ( ) <` and
//! backticks), breaks `@everyone`/`@here` and mention syntax with a zero-width space, turns
//! control and bidirectional characters into U+FFFD, and cuts long text with an ellipsis, on a
//! budget measured on the escaped output. Every text fits Discord's limits (message content
//! 2000, embed title 256, field value 1024, footer 2048, thread name 100), or Discord refuses
//! the message. Every message also sets `allowed_mentions` to parse nothing, so even a missed
//! case cannot ping anyone.

use serenity::all::{
    ButtonStyle, CreateActionRow, CreateAllowedMentions, CreateButton, CreateEmbed,
};

use crate::chat::command::Voice;
use crate::chat::present::{self, Markup, status_word};
use crate::chat::{Button, CardView, SummaryView, ThreadPost, escape_within, fit_lines, text_len};
use shared::core::Status;

/// Discord's limit on a message's content.
pub const CONTENT_MAX: usize = 2000;
/// Discord's limit on an embed field's value.
pub const FIELD_MAX: usize = 1024;
/// Discord's limit on a thread's name.
pub const THREAD_NAME_MAX: usize = 100;
/// Budget for a name (person, host, scope, login): at most 64 ASCII characters, each escaped
/// to two at most, so a valid name is never cut.
pub const NAME: usize = 128;

/// Escapes untrusted text for Discord markdown and cuts it where the escaped text would pass
/// `max` characters (it ends with `…` then, so it is at most `max + 1` long).
pub fn escape(text: &str, max: usize) -> String {
    escape_within(text, max, |out, c| match c {
        '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '-' | '[' | ']' | '(' | ')' | '<'
        | ':' => {
            out.push('\\');
            out.push(c);
        }
        '@' => out.push_str("@\u{200B}"),
        c if c.is_control() || shared::core::ids::is_bidi_control(c) => out.push('\u{FFFD}'),
        c => out.push(c),
    })
}

/// Discord markdown as the shared sentences need it: names, hosts and logins escaped within
/// [`NAME`], codes as they are (`bg-` and hex digits), emphasis with `**`.
#[derive(Debug, Clone, Copy)]
pub struct DiscordMarkdown;

impl Markup for DiscordMarkdown {
    fn escape(&self, text: &str, max: usize) -> String {
        escape(text, max)
    }
    fn person(&self, name: &str) -> String {
        escape(name, NAME)
    }
    fn host(&self, host: &str) -> String {
        escape(host, NAME)
    }
    fn login(&self, login: &str) -> String {
        escape(login, NAME)
    }
    fn code(&self, code: &str) -> String {
        code.to_owned()
    }
    fn bold(&self, text: &str) -> String {
        format!("**{text}**")
    }
}

/// The answer to `/breakglass help`.
pub const HELP: &str = "**/breakglass request** host reason \\[login\\] \\[duration\\]: ask for access; the card is posted here for approvers.\n\
**/breakglass status** \\[id\\] · **/breakglass list** · **/breakglass revoke** id · **/breakglass review** \\[id\\] · **/breakglass help**";

impl Voice for DiscordMarkdown {
    const HELP: &'static str = HELP;
    const INPUT_ERROR_MAX: usize = 300;
    const CONNECT_LINE_GOES: &'static str = "privately";

    /// A Discord user id is a number: nothing in it needs escaping.
    fn not_configured(&self, user: &str) -> String {
        format!(
            "You are not a breakglass user yet: ask an operator to add discord\\_id = \"{user}\" to your entry under \\[users\\] in the breakglass config."
        )
    }

    fn offline_signature_required(&self, code: &str) -> String {
        format!(
            "This scope accepts only approvals signed with your own key: run breakglass approve \\-\\-key YOUR_KEY {code} [offline_signature_required]"
        )
    }

    /// As many as fit in a message, then how many more.
    fn lines(&self, lines: Vec<String>) -> String {
        let n = lines.len();
        fit_lines(lines, n, CONTENT_MAX)
    }
}

/// The name of the thread started from a card (plain text, not markdown).
pub fn thread_name(c: &CardView) -> String {
    let name = format!("{} {} on {}", c.code, c.requester, c.host);
    match name.char_indices().nth(THREAD_NAME_MAX - 1) {
        Some((at, _)) => format!("{}…", &name[..at]),
        None => name,
    }
}

/// Names joined with commas, escaped and cut to `max`.
fn names(list: &[String], max: usize) -> String {
    escape(&list.join(", "), max)
}

/// Mentions nobody, whatever the text says.
pub fn no_mentions() -> CreateAllowedMentions {
    CreateAllowedMentions::new().empty_users().empty_roles().everyone(false)
}
/// The card: an embed and its buttons (custom id `action:request-id`).
pub fn card(c: &CardView) -> (CreateEmbed, Vec<CreateActionRow>) {
    let mut footer: Vec<String> = present::deadline(c).into_iter().collect();
    if let Some(by) = &c.closed_by {
        footer.push(format!("{} by {by}", present::closed_word(c)));
    }
    if c.offline_only && c.status == Status::Pending {
        footer
            .push(format!("Offline signatures only: breakglass approve --key YOUR_KEY {}", c.code));
    }
    let approvers =
        if c.approvers.is_empty() { "none yet".to_owned() } else { names(&c.approvers, 900) };
    let mut embed = CreateEmbed::new()
        .title(format!("Break-glass request {} · {}", c.code, status_word(c.status)))
        .field("Requester", escape(&c.requester, NAME), true)
        .field("Host", format!("{} as {}", escape(&c.host, NAME), escape(&c.login, NAME)), true)
        .field("Duration", escape(&c.duration, 16), true)
        .field("Scope", escape(&c.scope, NAME), true)
        .field("Approvals", format!("{} of {}: {approvers}", c.approvers.len(), c.quorum), true)
        .field("Reason", escape(&c.reason, FIELD_MAX - 1), false);
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
    present::thread_line(&DiscordMarkdown, p).unwrap_or_else(summary)
}

/// The audit summary of a session, within Discord's message limit: the commands that fit
/// (each cut), then how many more there were (the reviewer page has them all).
pub fn summary(s: &SummaryView) -> String {
    let ended = present::summary_ended(&DiscordMarkdown, s);
    let when = match (s.started_at, s.ended_at) {
        (Some(a), Some(b)) => {
            format!("{} → {} ({} s)", a.rfc3339(), b.rfc3339(), b.unix() - a.unix())
        }
        _ => "-".into(),
    };
    let integrity = present::summary_integrity(&DiscordMarkdown, s);
    let text = |commands: &str| {
        format!(
            "**Session summary** {}: {} on {} as {}\n**Approvers:** {}\n**When:** {when}\n**Ended:** {ended}; exit status {}\n\
             **Commands:** {} run\n{commands}\n**Bytes:** {} in, {} out\n**Recording:** {} · {integrity}",
            s.code,
            escape(&s.requester, NAME),
            escape(&s.host, NAME),
            escape(&s.login, NAME),
            names(&s.approvers, 400),
            s.exit_status.map_or_else(|| "-".to_owned(), |e| e.to_string()),
            s.commands_total,
            s.bytes_in,
            s.bytes_out,
            s.recording.as_deref().map_or_else(|| "-".to_owned(), |f| escape(f, 100)),
        )
    };
    let budget = CONTENT_MAX.saturating_sub(text_len(&text("")));
    let commands = present::summary_commands(s, budget, |c| format!("• {}", escape(c, 120)));
    text(&commands)
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

    #[test]
    fn escaping_never_pushes_text_past_discord_limits() {
        let e = escape(&"db-1 ".repeat(200), FIELD_MAX - 1);
        assert!(e.chars().count() <= FIELD_MAX && e.ends_with('…'), "{}", e.len());
        assert!(!e.trim_end_matches('…').ends_with('\\'), "never inside an escape: {e}");
        let long = "x".repeat(64);
        let card = CardView {
            id: "id".into(),
            code: "bg-000001".into(),
            requester: long.clone(),
            host: long.clone(),
            login: "postgres".into(),
            scope: "db".into(),
            duration: "30m".into(),
            reason: "r".into(),
            status: Status::Pending,
            approvers: vec![],
            quorum: 2,
            closed_by: None,
            not_after: shared::core::Timestamp::from_unix(0),
            pending_until: shared::core::Timestamp::from_unix(0),
            offline_only: false,
        };
        assert_eq!(thread_name(&card).chars().count(), THREAD_NAME_MAX);
    }
}
