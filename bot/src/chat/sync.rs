//! The chat sync loop: a thin shell that claims chat threads with work due, mirrors each
//! request's new audit events into its card and thread, and saves the progress.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use shared::core::event::SessionEnded;
use shared::core::{AuditData, AuditEntry, AuditKind, EndReason, Request, RequestRef, Status};
use shared::ports::ChatThread;
use shared::telemetry;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::present::{card_of, connect_line};
use super::{
    ChatAdapter, ChatError, Integrity, Platform, Posted, SummaryView, ThreadPost, post_key,
};
use crate::recordings::Recordings;
use crate::service::Deps;

/// How long a replica holds a thread while it works on it.
const LEASE_SECS: i64 = 60;
/// Longest backoff between attempts.
const MAX_BACKOFF_SECS: i64 = 300;

/// The chat side of the bot: its adapters and what the summary needs.
#[derive(Debug, Default)]
pub struct ChatHub {
    adapters: HashMap<Platform, Arc<dyn ChatAdapter>>,
    /// Wakes the loop early (a click was just handled).
    pub wake: Notify,
    /// Where recordings are and the keys their signatures are checked against (the summary).
    pub recordings: Arc<Recordings>,
    /// Base URL for links (the bot's public URL).
    pub public_url: String,
}

impl ChatHub {
    pub fn new(recordings: Arc<Recordings>, public_url: String) -> Self {
        Self { adapters: HashMap::new(), wake: Notify::new(), recordings, public_url }
    }
    pub fn add(&mut self, adapter: Arc<dyn ChatAdapter>) {
        self.adapters.insert(adapter.platform(), adapter);
    }
    pub fn adapter(&self, p: Platform) -> Option<&Arc<dyn ChatAdapter>> {
        self.adapters.get(&p)
    }
    pub fn is_empty(&self) -> bool {
        self.adapters.is_empty()
    }
}

/// Runs until `stop`: every `every`, or at once when woken, syncs the due threads.
pub async fn run(deps: Deps, hub: Arc<ChatHub>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
            () = hub.wake.notified() => {}
        }
        if let Err(e) = sync_due(&deps, &hub).await {
            tracing::warn!(error = %e, "chat sync could not read its work");
        }
    }
}

/// Syncs every thread with work due now; returns how many were handled.
///
/// # Errors
/// Storage errors while claiming (per-thread failures are saved as backoff).
pub async fn sync_due(deps: &Deps, hub: &ChatHub) -> Result<usize, shared::ports::StoreError> {
    let now = deps.now();
    let threads = deps.store.claim_chat_threads(now, LEASE_SECS, 50).await?;
    let n = threads.len();
    for t in threads {
        let saved = match Platform::parse(&t.platform).and_then(|p| hub.adapter(p).cloned()) {
            Some(adapter) => match sync_thread(deps, hub, adapter.as_ref(), t.clone()).await {
                Ok(done) => done,
                Err((mut partial, e)) => {
                    let platform = adapter.platform().as_str();
                    metrics::counter!(telemetry::CHAT_ERRORS, "platform" => platform).increment(1);
                    metrics::counter!(telemetry::CHAT_RETRIES, "platform" => platform).increment(1);
                    partial.attempts += 1;
                    let backoff = match &e {
                        ChatError::RateLimited(Some(d)) => {
                            i64::try_from(d.as_secs()).unwrap_or(1).max(1)
                        }
                        _ => (1_i64 << partial.attempts.clamp(0, 8)).min(MAX_BACKOFF_SECS),
                    };
                    partial.next_attempt_at = deps.now().plus_secs(backoff);
                    tracing::warn!(request = %partial.request_id, error = %e, retry_in_secs = backoff, "chat post failed; will retry");
                    partial
                }
            },
            // No adapter for this platform in this process: try again later (another replica
            // or a restart with the platform configured will pick it up).
            None => ChatThread { next_attempt_at: now.plus_secs(MAX_BACKOFF_SECS), ..t },
        };
        if let Err(e) = deps.store.save_chat_thread(&saved).await {
            tracing::warn!(request = %saved.request_id, error = %e, "cannot save chat progress");
        }
    }
    Ok(n)
}

/// Brings one thread up to date. On failure, returns the progress made so far (saved, so
/// nothing is posted twice) with the error. Each step is recorded as soon as it is done: the
/// card's message id before its thread is started, `synced_seq` as soon as an event's thread
/// line is out (before the connect line it may owe), `connect_sent` and `summary_sent`.
/// A post the platform refuses for good ([`ChatError::Refused`]) is logged and skipped.
///
/// Progress reaches the database when the pass ends. When the previous pass may have posted
/// without saving (its lease ran out unsaved: the replica died mid-post; or it failed, maybe
/// after the platform took the post), every post is first looked up by its key
/// ([`post_key`]) and not sent again when found: nothing doubled, nothing lost.
async fn sync_thread(
    deps: &Deps,
    hub: &ChatHub,
    adapter: &dyn ChatAdapter,
    mut t: ChatThread,
) -> Result<ChatThread, (ChatThread, ChatError)> {
    let req = match deps.store.get_request(&RequestRef::Id(t.request_id)).await {
        Ok(r) => r,
        Err(e) => return Err((t, ChatError::Transient(format!("database: {e}")))),
    };
    let card = card_of(deps, &req);
    let mut check = Recheck { on: t.taken_over || t.attempts > 0, seen: None };
    let mut posted = match &t.message_id {
        Some(m) => Posted { message_id: m.clone(), thread_id: t.thread_id.clone() },
        None => match post_card_once(adapter, &t, &card, check.on).await {
            Ok(p) => {
                t.message_id = Some(p.message_id.clone());
                t.thread_id = p.thread_id.clone();
                p
            }
            Err(e) => return Err((t, e)),
        },
    };
    if posted.thread_id.is_none() {
        match adapter.start_thread(&t.channel, &posted, &card).await {
            Ok(thread) => posted.thread_id = thread,
            Err(ChatError::Refused(why)) => {
                refused(adapter);
                tracing::error!(request = %t.request_id, %why, "chat refused to start the card's thread; posting in the channel instead");
                posted.thread_id = Some(t.channel.clone());
            }
            Err(e) => return Err((t, e)),
        }
        t.thread_id = posted.thread_id.clone();
    }
    // While the connect line may be owed, read from the start to see whether the grant is
    // already in the thread (its line went out, the connect line did not).
    let after = if t.connect_sent { t.synced_seq } else { 0 };
    let (mirrored, events): (Vec<AuditEntry>, Vec<AuditEntry>) =
        match deps.store.audit_of_request(t.request_id, after).await {
            Ok(e) => e.into_iter().partition(|e| e.seq <= t.synced_seq),
            Err(e) => return Err((t, ChatError::Transient(format!("database: {e}")))),
        };
    if !t.connect_sent && mirrored.iter().any(|e| e.kind == AuditKind::Granted.as_str()) {
        if req.status_at(deps.now()).is_terminal() {
            // Too late to be of use: the access is over.
            t.connect_sent = true;
        } else if let Err(e) = connect(deps, adapter, &req, &mut t).await {
            return Err((t, e));
        }
    }
    // A failed pass may have stopped before updating the card.
    let changed = !events.is_empty() || t.attempts > 0;
    for e in &events {
        if let Err(err) = mirror(deps, hub, adapter, &req, &mut t, &posted, e, &mut check).await {
            return Err((t, err));
        }
    }
    if changed {
        match adapter.update_card(&t.channel, &posted, &card).await {
            Ok(()) => {}
            Err(ChatError::Refused(why)) => {
                refused(adapter);
                tracing::error!(request = %t.request_id, %why, "chat refused the card update for good");
            }
            Err(e) => return Err((t, e)),
        }
    }
    t.attempts = 0;
    t.next_attempt_at = deps.now();
    t.done = finished(deps, &req, &t).await;
    Ok(t)
}

/// Whether this pass looks posts up before sending them, and the keys found in the thread
/// (read once, on the first thread post of the pass).
struct Recheck {
    on: bool,
    seen: Option<HashSet<String>>,
}

impl Recheck {
    /// Whether the post with `key` is already in the thread.
    async fn already_posted(
        &mut self,
        adapter: &dyn ChatAdapter,
        channel: &str,
        posted: &Posted,
        key: &str,
    ) -> Result<bool, ChatError> {
        if !self.on {
            return Ok(false);
        }
        if self.seen.is_none() {
            self.seen = Some(adapter.thread_keys(channel, posted).await?);
        }
        Ok(self.seen.as_ref().is_some_and(|s| s.contains(key)))
    }
}

/// The card: found by its key when `recheck` (a replica may have posted it and died before
/// saving), else posted with its key.
async fn post_card_once(
    adapter: &dyn ChatAdapter,
    t: &ChatThread,
    card: &super::CardView,
    recheck: bool,
) -> Result<Posted, ChatError> {
    let key = post_key(t.request_id, "card", 0);
    if recheck && let Some(found) = adapter.find_card(&t.channel, &key).await? {
        tracing::info!(request = %t.request_id, "the card was posted before a takeover; not posting it again");
        return Ok(found);
    }
    adapter.post_card(&t.channel, card, &key).await
}

/// One audit event into the thread (and the connect line to the requester on `granted`).
/// Advances `synced_seq` once the thread line is out (or found there already).
#[allow(clippy::too_many_arguments)]
async fn mirror(
    deps: &Deps,
    hub: &ChatHub,
    adapter: &dyn ChatAdapter,
    req: &Request,
    t: &mut ChatThread,
    posted: &Posted,
    e: &AuditEntry,
    check: &mut Recheck,
) -> Result<(), ChatError> {
    let data = AuditKind::parse(&e.kind).and_then(|kind| AuditData::parse(kind, &e.data));
    let post = match data {
        Ok(AuditData::Approved(d)) => Some(ThreadPost::Approved {
            by: e.actor.clone(),
            have: d.approvals,
            need: u64::from(d.quorum),
            signer: d.signer,
        }),
        Ok(AuditData::Granted(d)) => Some(ThreadPost::Granted {
            approvers: d.approvers.iter().map(ToString::to_string).collect(),
            requester: req.requester.to_string(),
        }),
        Ok(AuditData::Denied) => Some(ThreadPost::Denied { by: e.actor.clone() }),
        Ok(AuditData::Revoked(d)) => Some(ThreadPost::Revoked { by: e.actor.clone(), was: d.was }),
        Ok(AuditData::Expired(d)) => Some(ThreadPost::Expired { was: d.was }),
        Ok(AuditData::SessionStarted(_)) => Some(ThreadPost::SessionStarted {
            requester: req.requester.to_string(),
            host: req.host.to_string(),
            login: req.login.to_string(),
        }),
        Ok(AuditData::SessionEnded(d)) if !t.summary_sent => {
            Some(ThreadPost::Summary(Box::new(summary(deps, hub, req, Some(&d)).await)))
        }
        Err(err) => {
            tracing::error!(request = %t.request_id, seq = e.seq, kind = %e.kind, %err, "an audit event's data does not parse; not mirrored");
            None
        }
        _ => None,
    };
    let key = post_key(t.request_id, "line", e.seq);
    if post.is_some() && check.already_posted(adapter, &t.channel, posted, &key).await? {
        tracing::info!(request = %t.request_id, seq = e.seq, "a thread line was posted before a takeover; not posting it again");
    } else if let Some(p) = &post {
        match adapter.post_in_thread(&t.channel, posted, p, &key).await {
            Ok(()) => {}
            Err(ChatError::Refused(why)) => {
                refused(adapter);
                tracing::error!(request = %t.request_id, seq = e.seq, kind = %e.kind, %why, "chat refused a thread post for good; skipping it");
            }
            Err(err) => return Err(err),
        }
    }
    t.synced_seq = e.seq;
    // Posted, or refused for good: either way it is never tried again.
    if matches!(post, Some(ThreadPost::Summary(_))) {
        t.summary_sent = true;
    }
    if matches!(post, Some(ThreadPost::Granted { .. })) && !t.connect_sent {
        connect(deps, adapter, req, t).await?;
    }
    Ok(())
}

/// The connect line, to the requester alone (the API shows it to them too). A refusal for
/// good is logged and not retried.
async fn connect(
    deps: &Deps,
    adapter: &dyn ChatAdapter,
    req: &Request,
    t: &mut ChatThread,
) -> Result<(), ChatError> {
    if let Some(user) = chat_id(deps, adapter.platform(), req) {
        let line = connect_line(&deps.config.gateway, req);
        let text = format!(
            "Your break-glass access {} to {} as {} is approved. Connect with:\n{line}",
            req.code, req.host, req.login
        );
        match adapter.ephemeral(&t.channel, &user, &text).await {
            Ok(()) => {}
            Err(ChatError::Refused(why)) => {
                refused(adapter);
                tracing::error!(request = %t.request_id, %why, "chat refused the connect line for good; not retrying it");
            }
            Err(e) => return Err(e),
        }
    }
    t.connect_sent = true;
    Ok(())
}

/// The requester's user id on `platform`, from config.
fn chat_id(deps: &Deps, platform: Platform, req: &Request) -> Option<String> {
    let id = deps.config.identities.get(&req.requester)?;
    match platform {
        Platform::Slack => id.slack_id.clone(),
        Platform::Discord => id.discord_id.clone(),
    }
}

/// Nothing more will happen: the request is over, and if it had a session, its summary is
/// out.
async fn finished(deps: &Deps, req: &Request, t: &ChatThread) -> bool {
    let status = req.status_at(deps.now());
    if !status.is_terminal()
        || !matches!(
            req.status,
            Status::Closed | Status::Denied | Status::Expired | Status::Revoked
        )
    {
        return false;
    }
    if t.summary_sent {
        return true;
    }
    // Terminal without a summary: done only if no session ever started.
    match deps.store.audit_of_request(req.id, 0).await {
        Ok(all) => !all.iter().any(|e| e.kind == AuditKind::SessionStarted.as_str()),
        Err(_) => false,
    }
}

/// The audit summary of a finished session, from the database and the recording.
async fn summary(
    deps: &Deps,
    hub: &ChatHub,
    req: &Request,
    ended: Option<&SessionEnded>,
) -> SummaryView {
    let rec = deps.store.recording(req.id).await.ok().flatten();
    let events = deps.store.session_events(req.id).await.unwrap_or_default();
    let commands: Vec<String> = events
        .iter()
        .filter(|e| e.kind.is_command())
        .filter_map(|e| e.detail["command"].as_str().map(str::to_owned))
        .collect();
    let integrity = match &rec {
        Some(r) => hub.recordings.integrity(req, r, true),
        None => Integrity::Missing,
    };
    SummaryView {
        code: req.code.to_string(),
        requester: req.requester.to_string(),
        approvers: req.approvals.iter().map(|a| a.approver.to_string()).collect(),
        host: req.host.to_string(),
        login: req.login.to_string(),
        started_at: rec.as_ref().map(|r| r.started_at),
        ended_at: rec.as_ref().map(|r| r.ended_at),
        end_reason: rec
            .as_ref()
            .map(|r| r.end_reason)
            .or(ended.map(|e| e.end_reason))
            .unwrap_or(EndReason::Closed),
        revoked_by: req
            .closed_by
            .as_ref()
            .filter(|_| req.status == Status::Revoked)
            .map(ToString::to_string),
        commands_total: u64::try_from(commands.len()).unwrap_or(0),
        commands: commands.into_iter().take(20).collect(),
        bytes_in: rec.as_ref().map_or(0, |r| r.bytes_in),
        bytes_out: rec.as_ref().map_or(0, |r| r.bytes_out),
        exit_status: rec.as_ref().and_then(|r| r.exit_status),
        recording: rec.as_ref().map(|r| r.file.clone()),
        recording_link: rec.as_ref().map(|_| format!("{}/review/s/{}", hub.public_url, req.code)),
        integrity,
    }
}

/// Counts a post the platform refused for good (logged and skipped, never retried).
fn refused(adapter: &dyn ChatAdapter) {
    metrics::counter!(telemetry::CHAT_ERRORS, "platform" => adapter.platform().as_str())
        .increment(1);
}
