//! Chat, platform-neutral: what a request's card shows, what goes into its thread, the port
//! each chat platform implements ([`ChatAdapter`]), and the sync loop that mirrors every
//! request's audit events into its card and thread.
//!
//! The audit log drives chat. A request made in a channel gets a `chat_threads` row in the
//! same transaction as the request; the sync loop posts the card, then for each new audit
//! event of the request (approved, granted, denied, revoked, expired, session started/ended)
//! posts a line in the thread and updates the card. The connect line goes to the requester
//! alone on `granted`; the audit summary goes to the thread on `session_ended`, exactly once
//! (a flag saved with the progress; a replica holds a lease while it works on a thread).
//! Failed posts are retried with backoff (Slack's `Retry-After` on 429), and nothing here is
//! on the path of a decision: a chat outage delays messages, it never blocks access decisions.

pub mod sync;

use std::time::Duration;

use async_trait::async_trait;
use shared::core::{Request, Status, Timestamp};

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
    Approved { by: String, have: u64, need: u64, signer: String },
    Granted { approvers: Vec<String>, requester: String },
    Denied { by: String },
    Revoked { by: String, was: String },
    Expired { was: String },
    SessionStarted { requester: String, host: String, login: String },
    Summary(Box<SummaryView>),
}

/// Whether a recording's signature checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// The gateway's signature verifies with a pinned key (and the file, when reachable,
    /// hashes to the signed digest).
    Verified {
        key_id: String,
    },
    Failed(String),
    /// No recording (the session never started one).
    Missing,
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
    /// `closed`, `expired`, `revoked`, `gateway_shutdown`, `gateway_crashed`.
    pub end_reason: String,
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
    #[error("rate limited (retry after {0:?})")]
    RateLimited(Option<Duration>),
    #[error("chat platform unavailable: {0}")]
    Transient(String),
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

    /// Posts a request's card in `channel`.
    async fn post_card(&self, channel: &str, card: &CardView) -> Result<Posted, ChatError>;

    /// Updates the card in place.
    async fn update_card(
        &self,
        channel: &str,
        posted: &Posted,
        card: &CardView,
    ) -> Result<(), ChatError>;

    /// Posts in the card's thread.
    async fn post_in_thread(
        &self,
        channel: &str,
        posted: &Posted,
        post: &ThreadPost,
    ) -> Result<(), ChatError>;

    /// Shows `text` to one user only (the connect line, refusals).
    async fn ephemeral(&self, channel: &str, user: &str, text: &str) -> Result<(), ChatError>;
}
