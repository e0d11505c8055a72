//! Live sessions: what each one needs to be cut, and the watcher that cuts them when their
//! grant is revoked.
//!
//! Every live session has a [`Cutter`]: cutting writes one line to the user's terminal, closes
//! the channels, and disconnects both sides; the session's task then finishes the recording.
//! The deadline is enforced by a timer in the session itself (from the signed grant, so it
//! holds even when the database is down); revocations come from the database, polled here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::server::Handle;
use russh::{ChannelId, Disconnect};
use shared::core::{RequestId, Status};
use shared::ports::{RequestFilter, Store};
use tokio_util::sync::CancellationToken;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The user (or the target) closed it.
    Closed,
    /// The grant's window ended.
    Expired,
    /// Someone revoked the grant.
    Revoked { by: Option<String> },
    /// The gateway is stopping.
    Shutdown,
    /// The recording could not be written: nothing may be relayed unrecorded.
    RecordingFailed,
}

impl EndReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Expired => "expired",
            Self::Revoked { .. } => "revoked",
            Self::Shutdown => "gateway_shutdown",
            Self::RecordingFailed => "recording_failed",
        }
    }
}

/// What a cut does to an open channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// A session channel without a PTY: the message goes to stderr.
    Plain,
    /// A session channel with a PTY: the message goes to the terminal.
    Pty,
    /// A forwarded connection (port, agent, X11): its bytes are someone else's protocol, so
    /// it is closed without a message.
    Tunnel,
}

/// The channels of a session the client has open, and what each carries.
#[derive(Debug, Default)]
pub struct OpenChannels(Mutex<HashMap<ChannelId, Open>>);

impl OpenChannels {
    pub fn open(&self, ch: ChannelId) {
        self.insert(ch, Open::Plain);
    }
    pub fn open_tunnel(&self, ch: ChannelId) {
        self.insert(ch, Open::Tunnel);
    }
    fn insert(&self, ch: ChannelId, what: Open) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(ch, what);
        }
    }
    pub fn set_pty(&self, ch: ChannelId) {
        if let Ok(mut m) = self.0.lock()
            && let Some(p) = m.get_mut(&ch)
            && *p == Open::Plain
        {
            *p = Open::Pty;
        }
    }
    pub fn close(&self, ch: ChannelId) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&ch);
        }
    }
    fn snapshot(&self) -> Vec<(ChannelId, Open)> {
        self.0.lock().map(|m| m.iter().map(|(c, p)| (*c, *p)).collect()).unwrap_or_default()
    }
}

/// Cuts one session, once.
#[derive(Debug)]
pub struct Cutter {
    handle: Handle,
    channels: Arc<OpenChannels>,
    reason: Mutex<Option<EndReason>>,
    done: CancellationToken,
}

impl Cutter {
    pub fn new(handle: Handle, channels: Arc<OpenChannels>) -> Self {
        Self { handle, channels, reason: Mutex::new(None), done: CancellationToken::new() }
    }

    /// Why it was cut, if it was.
    pub fn reason(&self) -> Option<EndReason> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }

    /// Resolves once the session was cut.
    pub fn cut_token(&self) -> CancellationToken {
        self.done.clone()
    }

    /// Tells the user why in one line, closes every channel and disconnects. Only the first
    /// call does anything.
    pub async fn cut(&self, reason: EndReason, message: &str) {
        {
            let Ok(mut r) = self.reason.lock() else { return };
            if r.is_some() {
                return;
            }
            *r = Some(reason);
        }
        self.done.cancel();
        for (ch, what) in self.channels.snapshot() {
            match what {
                Open::Pty => {
                    let line = format!("\r\n{message}\r\n");
                    let _ = self.handle.data(ch, line.into_bytes()).await;
                }
                Open::Plain => {
                    let line = format!("{message}\n");
                    let _ = self.handle.extended_data(ch, 1, line.into_bytes()).await;
                }
                Open::Tunnel => {}
            }
            if what != Open::Tunnel {
                let _ = self.handle.exit_status_request(ch, 255).await;
            }
            let _ = self.handle.eof(ch).await;
            let _ = self.handle.close(ch).await;
        }
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, message.to_owned(), "en".to_owned())
            .await;
    }
}

/// Every live session of this gateway, by grant.
#[derive(Debug, Default)]
pub struct LiveSessions {
    map: Mutex<HashMap<RequestId, (String, Arc<Cutter>)>>,
}

impl LiveSessions {
    pub fn insert(&self, id: RequestId, host: String, cutter: Arc<Cutter>) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(id, (host, cutter));
        }
    }
    pub fn remove(&self, id: RequestId) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&id);
        }
    }
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn all(&self) -> Vec<(RequestId, String, Arc<Cutter>)> {
        self.map
            .lock()
            .map(|m| m.iter().map(|(id, (h, c))| (*id, h.clone(), c.clone())).collect())
            .unwrap_or_default()
    }

    /// Cuts every live session (the gateway is stopping).
    pub async fn cut_all(&self, message: &str) {
        for (_, _, c) in self.all() {
            c.cut(EndReason::Shutdown, message).await;
        }
    }
}

/// Live sessions checked per query (the list adapter returns at most 1000 rows).
const REVOCATION_BATCH: usize = 500;

/// Polls the database every `every` for revocations of live grants, and cuts those sessions.
/// A database that does not answer cuts nothing (the signed deadline still holds).
pub async fn watch_revocations(
    live: Arc<LiveSessions>,
    store: Arc<dyn Store>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let all = live.all();
        // One query per tick for every live session (not one per session): which of them are
        // revoked now.
        for chunk in all.chunks(REVOCATION_BATCH) {
            let filter = RequestFilter {
                statuses: vec![Status::Revoked],
                ids: chunk.iter().map(|(id, _, _)| *id).collect(),
                limit: u32::try_from(chunk.len()).unwrap_or(u32::MAX),
                ..RequestFilter::default()
            };
            let revoked = match store.list_requests(&filter).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check the live sessions' grants for revocation");
                    continue;
                }
            };
            for r in revoked {
                let Some((_, host, cutter)) = chunk.iter().find(|(id, _, _)| *id == r.id) else {
                    continue;
                };
                let by = r.closed_by.map(|b| b.to_string());
                let who = by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default();
                let msg = format!(
                    "breakglass: the grant {} for {host} was revoked{who}; session closed",
                    r.code
                );
                tracing::info!(code = %r.code, "revoked: cutting the live session");
                cutter.cut(EndReason::Revoked { by }, &msg).await;
            }
        }
    }
}
