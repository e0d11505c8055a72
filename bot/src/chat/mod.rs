//! Chat, platform-neutral: what a request's card shows, what goes into its thread, the port
//! each chat platform implements ([`ChatAdapter`]), the sync loop that mirrors every
//! request's audit events into its card and thread ([`sync`]), the one slash-command and
//! button runner every platform calls ([`command`]), and the presentation every front end
//! shares ([`present`]).
//!
//! The audit log drives chat. A request made in a channel gets a `chat_threads` row in the
//! same transaction as the request; the sync loop posts the card, then for each new audit
//! event of the request (approved, granted, denied, revoked, expired, session started/ended)
//! posts a line in the thread and updates the card. The connect line goes to the requester
//! alone on `granted`; the audit summary goes to the thread on `session_ended`, exactly once
//! (a flag saved with the progress; a replica holds a lease while it works on a thread).
//! Failed posts are retried with backoff (Slack's `Retry-After` on 429); a post the platform
//! refuses for good (malformed, too long) is logged and skipped, so one bad message cannot
//! stall a thread. Every post carries a key ([`post_key`]); a pass that follows one that died
//! unsaved (its lease ran out) or failed looks each post up by it first, so a replica killed
//! mid-post makes nothing appear twice (the connect line, ephemeral, excepted).
//! Nothing here is on the path of a decision: a chat outage delays messages, it never blocks
//! access decisions.
//!
//! Rendered text is kept within each platform's limits: [`escape_within`] cuts escaped text
//! to a budget measured on its output, and [`fit_lines`] shows as many lines of a list as fit.

pub mod command;
pub mod present;
pub mod sync;

use std::time::Duration;

use async_trait::async_trait;
use shared::core::{EndReason, Request, SignerKind, Status, Timestamp};

use crate::recordings::Integrity;

/// How long a handled delivery is remembered, in seconds: the platforms accept a timestamp up
/// to 5 minutes either side of now, so 10 minutes covers every moment a copy could verify.
pub const DELIVERY_MEMORY_SECS: i64 = 600;

/// How long a taken click may stay not done before a copy of it runs (the replica handling
/// it is taken to have died: a click takes milliseconds).
pub const DELIVERY_STALE_SECS: i64 = 10;

/// What a delivery does, for [`first_delivery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A button click: idempotent (the request's state machine takes one vote per approver
    /// and one end), so a copy resent after the replica handling it died runs, once. The
    /// caller marks it done with [`delivery_done`].
    Click,
    /// Anything else (a slash command makes a request): at most once.
    Other,
}

/// Whether a verified delivery (a Slack request, a Discord interaction) is to run: the first
/// time, or (a [`Delivery::Click`]) a copy of one a dead replica took and never finished. The
/// id is stored under a unique constraint until its window has closed, so every replica and a
/// restarted bot refuse a replayed copy alike.
///
/// # Errors
/// The database not answering: the caller refuses the delivery (fail closed).
pub async fn first_delivery(
    store: &dyn shared::ports::Store,
    platform: Platform,
    id: &str,
    now: Timestamp,
    kind: Delivery,
) -> Result<bool, shared::ports::StoreError> {
    let until = Timestamp::from_unix(now.unix().saturating_add(DELIVERY_MEMORY_SECS));
    let retry = (kind == Delivery::Click)
        .then(|| Timestamp::from_unix(now.unix().saturating_sub(DELIVERY_STALE_SECS)));
    store.remember_chat_delivery(platform.as_str(), id, now, until, retry).await
}

/// Marks a click handled: later copies are replays. A failure is logged: the click ran, and a
/// copy after [`DELIVERY_STALE_SECS`] would find the request already changed.
pub async fn delivery_done(store: &dyn shared::ports::Store, platform: Platform, id: &str) {
    if let Err(e) = store.chat_delivery_done(platform.as_str(), id).await {
        tracing::warn!(error = %e, "cannot mark a chat delivery handled");
    }
}

/// The idempotency key of one post: the card (`step` `card`, `seq` 0) or the thread line of
/// audit event `seq` (`step` `line`; the summary is the line of `session_ended`). The same
/// inputs give the same key on every replica, so a replica taking a thread over can find what
/// the one before it posted. 24 hex characters of SHA-256: within Discord's 25-character
/// `nonce`.
pub fn post_key(request: shared::core::RequestId, step: &str, seq: i64) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("breakglass-post\0{request}\0{step}\0{seq}"));
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// The Slack message metadata `event_type` our posts carry their key under.
pub const POST_EVENT_TYPE: &str = "breakglass_post";

/// Which chat a request lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    Slack,
    Discord,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Discord => "discord",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "slack" => Some(Self::Slack),
            "discord" => Some(Self::Discord),
            _ => None,
        }
    }
}

/// What a request's card shows. Text fields are raw (untrusted); adapters escape them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardView {
    pub id: String,
    pub code: String,
    pub requester: String,
    pub host: String,
    pub login: String,
    pub scope: String,
    pub duration: String,
    pub reason: String,
    /// At the time of rendering (a passed deadline shows as expired).
    pub status: Status,
    pub approvers: Vec<String>,
    pub quorum: u32,
    pub closed_by: Option<String>,
    pub not_after: Timestamp,
    pub pending_until: Timestamp,
    /// Approvals must be signed offline (`breakglass approve --key`).
    pub offline_only: bool,
}

impl CardView {
    pub fn of(req: &Request, quorum: u32, offline_only: bool, now: Timestamp) -> Self {
        Self {
            id: req.id.to_string(),
            code: req.code.to_string(),
            requester: req.requester.to_string(),
            host: req.host.to_string(),
            login: req.login.to_string(),
            scope: req.scope.to_string(),
            duration: req.duration.to_string(),
            reason: req.reason.to_string(),
            status: req.status_at(now),
            approvers: req.approvals.iter().map(|a| a.approver.to_string()).collect(),
            quorum,
            closed_by: req.closed_by.as_ref().map(ToString::to_string),
            not_after: req.not_after,
            pending_until: req.pending_until,
            offline_only,
        }
    }

    /// Approve and Deny are offered while pending; Revoke while approved or live.
    pub fn buttons(&self) -> &'static [Button] {
        match self.status {
            Status::Pending => &[Button::Approve, Button::Deny],
            Status::Approved | Status::Active => &[Button::Revoke],
            _ => &[],
        }
    }
}

/// A button on a card. Its value is the request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Button {
    Approve,
    Deny,
    Revoke,
}

impl Button {
    pub fn action_id(self) -> &'static str {
        match self {
            Self::Approve => "breakglass_approve",
            Self::Deny => "breakglass_deny",
            Self::Revoke => "breakglass_revoke",
        }
    }
    pub fn from_action_id(s: &str) -> Option<Self> {
        [Self::Approve, Self::Deny, Self::Revoke].into_iter().find(|b| b.action_id() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            Self::Approve => "Approve",
            Self::Deny => "Deny",
            Self::Revoke => "Revoke",
        }
    }
}

/// A line in a request's thread. Text fields are raw; adapters escape them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadPost {
    Approved { by: String, have: u64, need: u64, signer: SignerKind },
    Granted { approvers: Vec<String>, requester: String },
    Denied { by: String },
    Revoked { by: String, was: Status },
    Expired { was: Status },
    SessionStarted { requester: String, host: String, login: String },
    Summary(Box<SummaryView>),
}

/// The audit summary of a finished session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryView {
    pub code: String,
    pub requester: String,
    pub approvers: Vec<String>,
    pub host: String,
    pub login: String,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub end_reason: EndReason,
    pub revoked_by: Option<String>,
    pub commands_total: u64,
    /// The first 20 commands, in order.
    pub commands: Vec<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub exit_status: Option<i64>,
    pub recording: Option<String>,
    pub recording_link: Option<String>,
    pub integrity: Integrity,
}

impl SummaryView {
    pub fn duration(&self) -> Option<Duration> {
        match (self.started_at, self.ended_at) {
            (Some(a), Some(b)) => u64::try_from(b.unix() - a.unix()).ok().map(Duration::from_secs),
            _ => None,
        }
    }
}

/// Why a chat call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// Retried after the platform's delay, or with backoff.
    #[error("rate limited (retry after {0:?})")]
    RateLimited(Option<Duration>),
    /// Retried with backoff.
    #[error("chat platform unavailable: {0}")]
    Transient(String),
    /// The bot may not post there (bad token, missing permission or scope, not in the
    /// channel): retried with backoff until an operator fixes it, never skipped.
    #[error("chat platform does not allow the bot: {0}")]
    NotAllowed(String),
    /// This message was refused for good (malformed, too long): retrying cannot help, so the
    /// sync loop logs it and moves on.
    #[error("chat platform refused: {0}")]
    Refused(String),
}

/// Where a card lives once posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub message_id: String,
    /// Discord starts a thread from the card; Slack threads hang off the message itself.
    pub thread_id: Option<String>,
}

/// What each chat platform implements. Every method is one platform call (or a few), no
/// retries: the sync loop retries.
#[async_trait]
pub trait ChatAdapter: Send + Sync + std::fmt::Debug {
    fn platform(&self) -> Platform;

    /// Posts a request's card in `channel`. The thread, where the platform has one, is
    /// started by [`Self::start_thread`], so a card is never posted twice when only the thread
    /// failed.
    ///
    /// `key` ([`post_key`]) goes with the post (Slack message metadata, Discord `nonce`), so
    /// [`Self::find_card`] can find it after a replica died before saving it.
    async fn post_card(
        &self,
        channel: &str,
        card: &CardView,
        key: &str,
    ) -> Result<Posted, ChatError>;

    /// The card posted with `key` in `channel`, if the platform shows it (`None`: not found,
    /// post it).
    async fn find_card(&self, channel: &str, key: &str) -> Result<Option<Posted>, ChatError>;

    /// The keys of the posts in the card's thread (those the platform shows).
    async fn thread_keys(
        &self,
        channel: &str,
        posted: &Posted,
    ) -> Result<std::collections::HashSet<String>, ChatError>;

    /// Starts the card's thread and returns its id, or `None` where replies hang off the
    /// message itself (Slack). Called while `posted.thread_id` is `None`; starting a thread
    /// that already exists answers its id.
    async fn start_thread(
        &self,
        channel: &str,
        posted: &Posted,
        card: &CardView,
    ) -> Result<Option<String>, ChatError>;

    /// Updates the card in place.
    async fn update_card(
        &self,
        channel: &str,
        posted: &Posted,
        card: &CardView,
    ) -> Result<(), ChatError>;

    /// Posts in the card's thread, with `key` ([`post_key`]) as for [`Self::post_card`].
    async fn post_in_thread(
        &self,
        channel: &str,
        posted: &Posted,
        post: &ThreadPost,
        key: &str,
    ) -> Result<(), ChatError>;

    /// Shows `text` to one user only (the connect line, refusals).
    async fn ephemeral(&self, channel: &str, user: &str, text: &str) -> Result<(), ChatError>;
}

/// The length of `text` as chat platforms count it against their limits: UTF-16 code units,
/// never fewer than characters, so a text within a budget fits whichever way it is counted.
pub fn text_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Escapes `text` one character at a time with `push` and cuts it with an ellipsis where the
/// escaped output would pass `max` (see [`text_len`]): the result is at most `max + 1` long,
/// and an escape is never cut in the middle.
pub fn escape_within(text: &str, max: usize, push: impl Fn(&mut String, char)) -> String {
    let mut out = String::with_capacity(text.len().min(max.saturating_mul(4)));
    let mut used = 0;
    for c in text.chars() {
        let start = out.len();
        push(&mut out, c);
        used += text_len(&out[start..]);
        if used > max {
            out.truncate(start);
            out.push('…');
            break;
        }
    }
    out
}

/// Room kept for the `…and N more` line of [`fit_lines`].
const MORE_LINE: usize = 32;

/// As many of `lines` as fit in `budget` (see [`text_len`]), one per line, then `…and N more`
/// for the rest of `total` (which counts items beyond `lines` too). At most `budget` long
/// when `budget` leaves room for the last line.
pub fn fit_lines(lines: impl IntoIterator<Item = String>, total: usize, budget: usize) -> String {
    let (mut out, mut used, mut shown) = (String::new(), 0, 0);
    for line in lines {
        let cost = text_len(&line) + usize::from(shown > 0);
        if used + cost + MORE_LINE > budget {
            break;
        }
        if shown > 0 {
            out.push('\n');
        }
        out.push_str(&line);
        used += cost;
        shown += 1;
    }
    if total > shown {
        if shown > 0 {
            out.push('\n');
        }
        out.push_str(&format!("…and {} more", total - shown));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backslash(out: &mut String, c: char) {
        if c == '-' {
            out.push('\\');
        }
        out.push(c);
    }

    #[test]
    fn post_keys_are_the_same_everywhere_and_fit_a_discord_nonce() {
        let id: shared::core::RequestId =
            "7c1f3a52-1b8e-4d55-9a59-0b9b2a0c1d2e".parse().expect("uuid");
        let card = post_key(id, "card", 0);
        assert_eq!(card, post_key(id, "card", 0));
        assert_eq!(card.len(), 24);
        assert_ne!(card, post_key(id, "line", 0));
        assert_ne!(post_key(id, "line", 3), post_key(id, "line", 4));
    }

    #[test]
    fn escaping_is_cut_on_its_output_never_inside_an_escape() {
        assert_eq!(escape_within("db-1", 10, backslash), "db\\-1");
        assert_eq!(escape_within("db-1", 3, backslash), "db…");
        assert_eq!(escape_within(&"-".repeat(600), 1000, backslash).chars().count(), 1001);
        assert_eq!(escape_within("🛑🛑🛑", 4, |o, c| o.push(c)), "🛑🛑…");
    }

    #[test]
    fn lists_show_what_fits_and_count_the_rest() {
        let lines = (0..20).map(|i| format!("{i:0>50}"));
        let text = fit_lines(lines, 25, 400);
        assert!(text_len(&text) <= 400, "{text}");
        assert!(text.ends_with("\n…and 18 more"), "{text}");
        assert_eq!(text.lines().count(), 8, "{text}");
        assert_eq!(fit_lines(vec!["a".to_owned()], 1, 100), "a");
        assert_eq!(fit_lines(Vec::new(), 3, 100), "…and 3 more");
    }
}
