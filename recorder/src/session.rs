//! One SSH connection to the gateway: the russh [`Handler`], named after the protocol events
//! it answers.
//!
//! Life of a connection:
//!
//! 1. `auth_publickey`: the key must be one of a configured principal's; the user name names
//!    a grant (`bg-7f3a2c`, or `login@host`). The gateway verifies the grant alone
//!    ([`crate::authz::decide`]), mints the session certificate, connects to the target, and
//!    only then consumes the grant (so an unreachable target does not use it up). Any refusal
//!    still accepts the SSH login, so that the one line saying why reaches the user: the
//!    session can then do nothing but print it.
//! 2. Channel requests (pty, env, shell, exec, subsystem, window-change, signal) are forwarded
//!    to the target, and the client gets the target's answer, in order.
//! 3. Data flows through: client to target through one writer task per channel
//!    ([`crate::to_target`], which gives the client its window back as the target takes the
//!    bytes, so the client cannot outrun the target and the connection's loop never waits on
//!    it), target to client in one reader task per channel.
//! 4. The session ends when the client leaves, the target closes, the deadline passes, or the
//!    grant is revoked; [`finish`] then closes the recording and records the end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use russh::client::Msg as ClientMsg;
use russh::server::{
    Auth, ChannelOpenHandle, Handler, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure, ChannelWriteHalf, Pty, Sig};
use serde_json::json;
use shared::core::request::{self as core_request};
use shared::core::{
    Action, AuditData, AuditDraft, Forwarding, PrincipalName, Request, Timestamp, VerifiedGrant,
};
use shared::core::{SessionEventKind, event};
use shared::ports::SessionEvent;
use tokio::sync::mpsc;

use crate::GatewayDeps;
use crate::authz::{Hints, Refusal, Target, decide};
use crate::live::{Cutter, EndReason, OpenChannels};
use crate::recording::{ChannelKind, Recording};
use crate::to_target::{self, Relays, Routed, Up};
use crate::upstream::{self, Inbound, Opened, TargetSession};

/// The handler's error: russh's, as the trait requires.
pub type Error = russh::Error;

/// Every refusal takes at least this long, whichever check failed.
const REFUSAL_FLOOR: Duration = Duration::from_millis(300);

/// A session whose grant verified and whose target is connected.
pub struct Live {
    pub grant: VerifiedGrant,
    pub who: PrincipalName,
    pub upstream: Arc<TargetSession>,
    pub recording: Arc<Mutex<Recording>>,
    pub cutter: Arc<Cutter>,
    pub channels: Arc<OpenChannels>,
    pub started_at: Timestamp,
    /// Cancelled once the connection ended and the recording is being closed.
    pub finished: tokio_util::sync::CancellationToken,
    /// The forwarding the grant's scope allows.
    pub forwarding: Forwarding,
    /// The forwarding the user asked for and the target set up: only channels the target
    /// opens for these are bridged to the user.
    pub forwards: Mutex<Forwards>,
    /// The relay tasks (one per channel): [`finish`] waits for them, so whatever they still
    /// carry is recorded before the end marker.
    pub tasks: tokio_util::task::TaskTracker,
    /// Client to target, per channel: the queues, and the writer tasks that drain them
    /// ([`finish`] lets them hand the target what the client sent before it left).
    pub relays: Relays,
    pub writers: tokio_util::task::TaskTracker,
    /// The gateway's one flush timer, which this session's recording joins when it has
    /// something to write (see [`crate::flush`]).
    pub flusher: Arc<crate::flush::Flusher>,
}

/// Forwarding set up on the target for this session.
#[derive(Debug, Default)]
pub struct Forwards {
    pub agent: bool,
    pub x11: bool,
    /// `(address, port)` the target listens on for `ssh -R`.
    pub remote: Vec<(String, u32)>,
}

impl Live {
    /// Runs `f` on the recording. When the recording cannot be written (a write failed, or
    /// its lock was poisoned by a panic) the session is cut and `None` comes back: callers
    /// relay nothing that was not recorded.
    pub fn record<R>(&self, f: impl FnOnce(&mut Recording) -> R) -> Option<R> {
        let (done, schedule) = match self.recording.lock() {
            Ok(mut r) => {
                let out = f(&mut r);
                let schedule = r.wants_ticks();
                (r.failure().is_none().then_some(out), schedule)
            }
            Err(_) => (None, false),
        };
        if schedule {
            self.flusher.schedule(&self.recording, &self.cutter);
        }
        if done.is_none() && self.cutter.reason().is_none() {
            // Relaying stops now; the goodbye goes on its own task.
            self.cutter.cut_in_background(
                EndReason::RecordingFailed,
                "breakglass: the session recording failed; session closed".to_owned(),
            );
        }
        done
    }
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("code", &self.grant.request().code)
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

/// Where the accept loop finds the live session after the connection ends.
pub type LiveSlot = Arc<Mutex<Option<Arc<Live>>>>;

#[derive(Debug)]
enum State {
    Connected,
    Denied { refusal: Refusal },
    Live(Arc<Live>),
}

/// One upstream channel as the client's channel sees it.
struct Chan {
    /// For requests that want the target's answer; data, EOF, close, window changes and
    /// signals go in order through the channel's queue ([`Live::relays`]).
    up: Arc<ChannelWriteHalf<ClientMsg>>,
    /// The target's answers to our want-reply requests, in order.
    replies: mpsc::UnboundedReceiver<bool>,
}

/// The handler of one connection.
pub struct GatewaySession {
    deps: GatewayDeps,
    peer: Option<SocketAddr>,
    state: State,
    slot: LiveSlot,
    chans: HashMap<ChannelId, Chan>,
    /// Who authenticated, with which user name, since when: decided in `auth_succeeded`.
    pending: Option<(PrincipalName, String, Instant)>,
    /// Cancelled once the login is decided (live or refused): the accept loop then stops
    /// counting the connection as not logged in.
    logged_in: Option<tokio_util::sync::CancellationToken>,
    /// Fingerprints of keys offered that no configured user has (a few at most), and the user
    /// name they came with: if the connection ends without a login, an operator hears why.
    unknown_keys: Vec<String>,
    offered_as: Option<String>,
}

/// How many unknown key fingerprints one connection reports.
const UNKNOWN_KEYS_KEPT: usize = 3;

/// One warning about refused unknown keys per period, whatever a scanner sends.
static UNKNOWN_KEY_LOG: crate::limits::Throttle =
    crate::limits::Throttle::new(Duration::from_secs(10));

impl Drop for GatewaySession {
    fn drop(&mut self) {
        let logged_in = self.pending.is_some() || !matches!(self.state, State::Connected);
        if logged_in || self.unknown_keys.is_empty() || !UNKNOWN_KEY_LOG.allow() {
            return;
        }
        // The user name is the client's: bounded when kept, escaped (`?`) when written.
        tracing::warn!(
            peer = ?self.peer,
            user = ?self.offered_as.as_deref().unwrap_or_default(),
            keys = %self.unknown_keys.join(", "),
            "refused an SSH login: no configured user has the key(s) offered; if this is a user, add their public key under users.NAME.ssh_keys (at most one such line per 10 s)"
        );
    }
}

impl std::fmt::Debug for GatewaySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySession")
            .field("peer", &self.peer)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl GatewaySession {
    pub fn new(deps: GatewayDeps, peer: Option<SocketAddr>, slot: LiveSlot) -> Self {
        Self {
            deps,
            peer,
            state: State::Connected,
            slot,
            chans: HashMap::new(),
            pending: None,
            logged_in: None,
            unknown_keys: Vec::new(),
            offered_as: None,
        }
    }

    /// Cancels `token` once the login is decided.
    #[must_use]
    pub fn on_login(mut self, token: tokio_util::sync::CancellationToken) -> Self {
        self.logged_in = Some(token);
        self
    }

    /// Whether `ch` may open: the session has fewer than `max_channels_per_session` open.
    /// Records a refusal.
    fn room_for_a_channel(&self, what: &str) -> bool {
        let Some(live) = self.live() else { return true };
        let max = self.deps.config.gateway.max_channels_per_session;
        if live.channels.len() < max {
            return true;
        }
        live.record(|r| {
            r.note(
                SessionEventKind::ChannelRefused,
                &format!("channel refused: {what}, {max} channels already open"),
                json!({ "what": what, "max": max }),
            );
        });
        false
    }

    fn live(&self) -> Option<Arc<Live>> {
        match &self.state {
            State::Live(l) => Some(l.clone()),
            _ => None,
        }
    }

    /// Decides on the grant and, if it holds, connects the target and consumes the grant.
    async fn open(
        &mut self,
        who: PrincipalName,
        user: &str,
        handle: russh::server::Handle,
    ) -> Result<Arc<Live>, Refusal> {
        let d = &self.deps;
        let target = Target::parse(user, &Hints::new(&d.config.gateway))?;
        let now = d.clock.now();
        let grant = decide(d.store.as_ref(), &d.config.policy, &d.pins, &who, &target, now).await?;
        let req = grant.request().clone();
        // The gateway's own journal remembers every grant it opened, whatever the database says.
        if d.journal.contains(&req.nonce) {
            return Err(reused_per_journal(&req));
        }
        let scope = d
            .config
            .policy
            .scope(&req.scope)
            .map_err(|e| Refusal { code: "policy", message: e.to_string() })?;
        let cred = d.ca.mint(&grant, scope.forwarding, now).map_err(|e| {
            tracing::error!(error = %e, "cannot mint the session certificate");
            Refusal {
                code: "internal",
                message: "the gateway could not mint a session certificate; no access was granted"
                    .into(),
            }
        })?;
        let (upstream, inbound, sever) = upstream::connect(
            req.host.as_str(),
            grant.host_addr(),
            d.config.gateway.known_hosts_file.clone(),
            &cred,
            req.login.as_str(),
            d.config.gateway.connect_timeout,
        )
        .await
        .map_err(|e| Refusal {
            code: e.code(),
            message: format!(
                "{e}; the grant {} was not used, try again once the target is reachable",
                req.code
            ),
        })?;
        let upstream = Arc::new(upstream);

        // The recording file exists before the grant is used: a gateway that cannot record
        // opens nothing.
        let started_at = d.clock.now();
        let approvers: Vec<event::SessionApprover> = grant
            .approvers()
            .iter()
            .map(|(a, k)| event::SessionApprover { approver: a.clone(), signer: *k })
            .collect();
        let (events_tx, events_rx) = mpsc::channel(crate::recording::EVENT_QUEUE);
        // Unique per session (the certificate serial is drawn per session): a reuse of the
        // grant in the same second gets a file of its own.
        let file = format::store::recording_name(req.code.as_str(), started_at, cred.serial);
        let meta = format::cast::RecordingMeta {
            grant_id: req.id,
            code: req.code.clone(),
            requester: req.requester.clone(),
            scope: req.scope.clone(),
            host: req.host.clone(),
            login: req.login.clone(),
            reason: req.reason.clone(),
            approvers: approvers.clone(),
            approval_signature_sha256: req
                .approvals
                .iter()
                .map(|a| {
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(a.signature.as_bytes()))
                })
                .collect(),
            not_after: req.not_after,
            session_deadline: grant.session_deadline(),
            cert_serial: cred.serial.to_string(),
            gateway_recording_key: d.recording_signer.key_id(),
        }
        .to_json();
        let recording = d.recordings.create(&file).map(|writer| {
            Recording::new(
                req.id,
                file.clone(),
                Box::new(crate::recording::Counted::new(writer)),
                meta,
                started_at,
                events_tx,
                d.config.gateway.record_input,
            )
        });
        let recording = recording.map_err(|e| {
            tracing::error!(recording = %file, error = %e, "cannot create the recording");
            Refusal {
                code: "recording_unavailable",
                message: format!(
                    "the gateway cannot write the session recording; the grant {} was not used",
                    req.code
                ),
            }
        });
        let recording = match recording {
            Ok(r) => r,
            Err(refusal) => {
                let _ = upstream.disconnect(russh::Disconnect::ByApplication, "", "en").await;
                sever.cancel();
                return Err(refusal);
            }
        };

        // The one session of this approval set: consume the nonce, in the gateway's journal
        // (on disk before anything else, so no crash can let it open twice), then in the
        // database.
        let details = Box::new(event::SessionStarted {
            approvers,
            cert_serial: cred.serial.to_string(),
            cert_valid_before: grant.session_deadline(),
            peer: self.peer.map(|p| p.to_string()),
        });
        let planned = core_request::apply(
            &req,
            Action::SessionStarted(details),
            &d.config.policy,
            &d.pins,
            started_at,
        )
        .map_err(|e| Refusal { code: e.code(), message: format!("{}: {e}", req.code) });
        let planned = match planned {
            Ok(t) => journal_consume(d, &req, started_at).await.map(|()| t),
            Err(refusal) => Err(refusal),
        };
        let consumed = match planned {
            Err(refusal) => Err(refusal),
            Ok(t) => d.store.apply(&t, started_at).await.map_err(|e| match e {
                shared::ports::StoreError::Conflict(_) => Refusal::already_used(&req),
                _ => Refusal::unavailable(),
            }),
        };
        if let Err(refusal) = consumed {
            let _ = upstream.disconnect(russh::Disconnect::ByApplication, "", "en").await;
            sever.cancel();
            drop(recording);
            let _ = d.recordings.remove(&file);
            return Err(refusal);
        }
        tokio::spawn(write_events(self.deps.store.clone(), events_rx));

        let channels = Arc::new(OpenChannels::default());
        let cutter = Arc::new(Cutter::new(handle.clone(), channels.clone(), sever));
        let live = Arc::new(Live {
            grant,
            who,
            upstream,
            recording: Arc::new(Mutex::new(recording)),
            cutter: cutter.clone(),
            channels,
            started_at,
            finished: tokio_util::sync::CancellationToken::new(),
            forwarding: scope.forwarding,
            forwards: Mutex::new(Forwards::default()),
            tasks: tokio_util::task::TaskTracker::new(),
            relays: Relays::new(crate::CLIENT_WINDOW as usize + crate::CLIENT_PACKET as usize),
            writers: tokio_util::task::TaskTracker::new(),
            flusher: d.live.flusher().clone(),
        });
        d.live.insert(req.id, req.host.to_string(), cutter);
        if let Some(quorum_at) = req.approvals.iter().map(|a| a.signed_at).max() {
            metrics::histogram!(shared::telemetry::TIME_TO_ACCESS)
                .record(shared::telemetry::seconds_since(quorum_at));
        }
        live.tasks.spawn(bridge_inbound(
            live.clone(),
            handle,
            inbound,
            d.config.gateway.max_channels_per_session,
        ));
        tokio::spawn(enforce_deadline(live.clone(), self.deps.clock.clone()));
        tracing::info!(code = %req.code, who = %live.who, host = %req.host, login = %req.login, "session started");
        Ok(live)
    }

    /// Sends `req` upstream (built by `send`) and answers the client with the target's reply.
    async fn forward_request(
        &mut self,
        ch: ChannelId,
        session: &mut Session,
        sent: Result<(), russh::Error>,
    ) -> Result<(), Error> {
        if self.target_agreed(ch, sent).await {
            session.channel_success(ch)
        } else {
            session.channel_failure(ch)
        }
    }

    /// Whether the target said yes to a want-reply request sent (`sent`) on `ch`.
    async fn target_agreed(&mut self, ch: ChannelId, sent: Result<(), russh::Error>) -> bool {
        match (sent, self.chans.get_mut(&ch)) {
            (Ok(()), Some(c)) => matches!(
                tokio::time::timeout(Duration::from_secs(30), c.replies.recv()).await,
                Ok(Some(true))
            ),
            _ => false,
        }
    }

    /// Tells the user, on `ch`'s stderr, that the grant's scope does not allow `what`.
    fn tell_not_allowed(
        &self,
        ch: ChannelId,
        session: &mut Session,
        what: &str,
        key: &str,
    ) -> Result<(), Error> {
        let Some(live) = self.live() else { return Ok(()) };
        let scope = &live.grant.request().scope;
        let line = format!(
            "breakglass: {what} is not allowed for scope {scope} ({key}); the session goes on without it\r\n"
        );
        session.extended_data(ch, 1, Bytes::from(line))
    }

    /// Prints the refusal on `ch` and closes it.
    fn refuse_on(&self, ch: ChannelId, session: &mut Session) -> Result<(), Error> {
        if let State::Denied { refusal, .. } = &self.state {
            session.channel_success(ch)?;
            session.extended_data(
                ch,
                1,
                Bytes::from(format!("breakglass: {}\r\n", refusal.message)),
            )?;
            session.exit_status_request(ch, 1)?;
            session.eof(ch)?;
            session.close(ch)?;
        } else {
            session.channel_failure(ch)?;
        }
        Ok(())
    }

    fn note(&self, kind: SessionEventKind, label: &str, detail: serde_json::Value) {
        if let Some(live) = self.live() {
            live.record(|r| r.note(kind, label, detail));
        }
    }
}

/// Writes `req`'s nonce to the gateway's journal (off the async runtime: it waits for the
/// disk). A nonce already there is refused as used; a journal that cannot be written opens
/// nothing.
async fn journal_consume(d: &GatewayDeps, req: &Request, at: Timestamp) -> Result<(), Refusal> {
    let (journal, nonce, id) = (d.journal.clone(), req.nonce, req.id);
    let written = tokio::task::spawn_blocking(move || journal.record(&nonce, id, at)).await;
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(crate::journal::JournalError::AlreadyUsed)) => Err(reused_per_journal(req)),
        Ok(Err(e)) => {
            tracing::error!(code = %req.code, error = %e, "cannot write the used-grant journal");
            Err(Refusal {
                code: e.code(),
                message: format!(
                    "the gateway cannot record that {} is used; no access was granted",
                    req.code
                ),
            })
        }
        Err(e) => {
            tracing::error!(code = %req.code, error = %e, "the journal write did not finish");
            Err(Refusal::unavailable())
        }
    }
}

/// The refusal of a grant the journal has seen. The operators hear about it too: the database
/// still showed the grant unused (two connections raced, or the database was edited).
fn reused_per_journal(req: &Request) -> Refusal {
    tracing::error!(
        code = %req.code, request = %req.id,
        "refused a grant this gateway already opened a session for, which the database still showed unused: unless two connections raced, the database was edited; check consumed_nonces and run breakglass audit verify"
    );
    Refusal::already_used(req)
}

impl Handler for GatewaySession {
    type Error = Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Error> {
        if self.deps.identities.identify(offer.public_key).is_some() {
            return Ok(Auth::Accept);
        }
        if self.unknown_keys.len() < UNKNOWN_KEYS_KEPT {
            let sha256 = offer.public_key.fingerprint(russh::keys::HashAlg::Sha256);
            self.unknown_keys.push(sha256.to_string());
            self.offered_as = Some(bounded(user, MAX_USER_NAME));
        }
        Ok(Auth::reject())
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Error> {
        let Some(who) = self.deps.identities.identify(key.public_key).cloned() else {
            return Ok(Auth::reject());
        };
        // The key is a configured principal's: the SSH login succeeds, and the grant is
        // decided in `auth_succeeded`, where the session (needed to cut it later) is at hand.
        // The user name is the client's text: bounded before it is parsed, logged or stored.
        self.pending = Some((who, bounded(user, MAX_USER_NAME), Instant::now()));
        Ok(Auth::Accept)
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Error> {
        if let Some((who, user, began)) = self.pending.take() {
            self.authorize(who, &user, began, session.handle()).await;
        }
        if let Some(t) = &self.logged_in {
            t.cancel();
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Error> {
        let id = channel.id();
        // Events reach us through the callbacks; the channel object would only buffer them.
        drop(channel);
        let Some(live) = self.live() else {
            reply.accept().await;
            return Ok(());
        };
        if live.cutter.is_cut() || !self.room_for_a_channel("session") {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        match live.upstream.channel_open_session().await {
            Ok(up) => {
                let (read, write) = up.split();
                let (tx, rx) = mpsc::unbounded_channel();
                let up = start_writer(&live, id, write, session.handle());
                self.chans.insert(id, Chan { up, replies: rx });
                live.channels.open(id);
                live.tasks.spawn(pump_target(read, session.handle(), id, live.clone(), tx));
                reply.accept().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "target refused a channel");
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        ch: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        pw: u32,
        ph: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Error> {
        let Some(live) = self.live() else { return session.channel_success(ch) };
        live.channels.set_pty(ch);
        live.record(|r| r.pty(ch, term, cols, rows));
        let sent = match self.chans.get(&ch) {
            Some(c) => c.up.request_pty(true, term, cols, rows, pw, ph, modes).await,
            None => Err(russh::Error::WrongChannel),
        };
        self.forward_request(ch, session, sent).await
    }

    async fn env_request(
        &mut self,
        ch: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Error> {
        let allowed =
            self.deps.config.gateway.env_allowlist.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => p == name,
            });
        let passed = allowed && self.chans.contains_key(&ch);
        // Recorded either way; what reaches the target is recorded whole.
        if let Some(live) = self.live() {
            let name = bounded(name, 256);
            let (label, detail) = if passed {
                (
                    format!("env request: {name}={value} (passed to the target)"),
                    json!({ "name": name, "passed": true }),
                )
            } else {
                (format!("env request: {name} (refused)"), json!({ "name": name, "passed": false }))
            };
            if live.record(|r| r.note(SessionEventKind::Env, &label, detail)).is_none() {
                return session.channel_failure(ch);
            }
        }
        if passed && let Some(c) = self.chans.get(&ch) {
            let _ = c.up.set_env(false, name, value).await;
            return session.channel_success(ch);
        }
        session.channel_failure(ch)
    }

    async fn shell_request(&mut self, ch: ChannelId, session: &mut Session) -> Result<(), Error> {
        let Some(live) = self.live() else { return self.refuse_on(ch, session) };
        if live.record(|r| r.start(ch, ChannelKind::Shell)).is_none() {
            return session.channel_failure(ch);
        }
        let sent = match self.chans.get(&ch) {
            Some(c) => c.up.request_shell(true).await,
            None => Err(russh::Error::WrongChannel),
        };
        self.forward_request(ch, session, sent).await
    }

    async fn exec_request(
        &mut self,
        ch: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Error> {
        let Some(live) = self.live() else { return self.refuse_on(ch, session) };
        let command = String::from_utf8_lossy(data).into_owned();
        if live.record(|r| r.start(ch, ChannelKind::Exec(command))).is_none() {
            return session.channel_failure(ch);
        }
        let sent = match self.chans.get(&ch) {
            Some(c) => c.up.exec(true, data.to_vec()).await,
            None => Err(russh::Error::WrongChannel),
        };
        self.forward_request(ch, session, sent).await
    }

    async fn subsystem_request(
        &mut self,
        ch: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Error> {
        let Some(live) = self.live() else { return self.refuse_on(ch, session) };
        if live.record(|r| r.start(ch, ChannelKind::Subsystem(name.to_owned()))).is_none() {
            return session.channel_failure(ch);
        }
        let sent = match self.chans.get(&ch) {
            Some(c) => c.up.request_subsystem(true, name).await,
            None => Err(russh::Error::WrongChannel),
        };
        self.forward_request(ch, session, sent).await
    }

    async fn window_change_request(
        &mut self,
        ch: ChannelId,
        cols: u32,
        rows: u32,
        pw: u32,
        ph: u32,
        _session: &mut Session,
    ) -> Result<(), Error> {
        if let Some(live) = self.live() {
            live.record(|r| r.resize(ch, cols, rows));
            let change = Up::WindowChange { cols, rows, pix_width: pw, pix_height: ph };
            live.relays.route(ch, change, |_| true);
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        ch: ChannelId,
        sig: Sig,
        _session: &mut Session,
    ) -> Result<(), Error> {
        if let Some(live) = self.live() {
            let name = signal_name(&sig);
            let label = format!("signal request: {name}");
            if live
                .record(|r| r.note(SessionEventKind::Signal, &label, json!({ "signal": name })))
                .is_none()
            {
                return Ok(());
            }
            live.relays.route(ch, Up::Signal(sig), |_| true);
        }
        Ok(())
    }

    async fn data(
        &mut self,
        ch: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Error> {
        let Some(live) = self.live() else { return session.window_consumed(ch, len32(data)) };
        // Nothing at all once the session is cut.
        if live.cutter.is_cut() {
            return Ok(());
        }
        // Queued for the channel's writer, never awaited here (see `to_target`); nothing
        // reaches the queue unrecorded.
        let routed = live.relays.route(ch, Up::Data(Bytes::copy_from_slice(data)), |_| {
            live.record(|r| r.input(ch, data)).is_some()
        });
        after_route(&live, ch, data, routed, session)
    }

    async fn extended_data(
        &mut self,
        ch: ChannelId,
        code: u32,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Error> {
        let Some(live) = self.live() else { return session.window_consumed(ch, len32(data)) };
        if live.cutter.is_cut() {
            return Ok(());
        }
        let routed =
            live.relays.route(ch, Up::Extended(code, Bytes::copy_from_slice(data)), |_| {
                live.record(|r| r.input_extended(ch, code, data)).is_some()
            });
        after_route(&live, ch, data, routed, session)
    }

    async fn channel_eof(&mut self, ch: ChannelId, _session: &mut Session) -> Result<(), Error> {
        if let Some(live) = self.live() {
            live.relays.route(ch, Up::Eof, |_| true);
        }
        Ok(())
    }

    async fn channel_close(&mut self, ch: ChannelId, _session: &mut Session) -> Result<(), Error> {
        self.chans.remove(&ch);
        if let Some(l) = self.live() {
            // After whatever the client sent before it.
            l.relays.route(ch, Up::Close, |_| true);
            l.relays.forget(ch);
            l.channels.close(ch);
        }
        Ok(())
    }

    async fn agent_request(&mut self, ch: ChannelId, session: &mut Session) -> Result<bool, Error> {
        let Some(live) = self.live().filter(|l| l.forwarding.agent) else {
            self.note(
                SessionEventKind::ForwardRefused,
                "agent forwarding refused",
                json!({ "kind": "agent", "channel": ch.to_string() }),
            );
            // OpenSSH says nothing when agent forwarding is refused: the gateway does.
            self.tell_not_allowed(
                ch,
                session,
                "agent forwarding (ssh -A)",
                "allow_agent_forwarding",
            )?;
            return Ok(false);
        };
        // The target's sshd decides too (the certificate's permit-agent-forwarding); its
        // programs then reach the agent through channels `bridge_inbound` relays.
        let sent = match self.chans.get(&ch) {
            Some(c) => c.up.agent_forward(true).await,
            None => Err(russh::Error::WrongChannel),
        };
        let ok = self.target_agreed(ch, sent).await;
        if ok {
            if let Ok(mut f) = live.forwards.lock() {
                f.agent = true;
            }
            self.note(
                SessionEventKind::Forward,
                "agent forwarding on",
                json!({ "kind": "agent", "set_up": true }),
            );
        } else {
            self.note(
                SessionEventKind::ForwardFailed,
                "agent forwarding failed on the target",
                json!({ "kind": "agent" }),
            );
        }
        Ok(ok)
    }

    async fn x11_request(
        &mut self,
        ch: ChannelId,
        single: bool,
        proto: &str,
        cookie: &str,
        screen: u32,
        session: &mut Session,
    ) -> Result<(), Error> {
        if self.live().is_none_or(|l| !l.forwarding.x11) {
            self.note(
                SessionEventKind::ForwardRefused,
                "X11 forwarding refused",
                json!({ "kind": "x11" }),
            );
            self.tell_not_allowed(ch, session, "X11 forwarding", "allow_x11_forwarding")?;
            return session.channel_failure(ch);
        }
        // The cookie is the client's fake one (the client swaps in the real one), and it is
        // still never recorded.
        let sent = match self.chans.get(&ch) {
            Some(c) => c.up.request_x11(true, single, proto, cookie, screen).await,
            None => Err(russh::Error::WrongChannel),
        };
        let ok = self.target_agreed(ch, sent).await;
        if ok {
            if let Some(live) = self.live()
                && let Ok(mut f) = live.forwards.lock()
            {
                f.x11 = true;
            }
            self.note(
                SessionEventKind::Forward,
                "X11 forwarding on",
                json!({ "kind": "x11", "set_up": true, "screen": screen }),
            );
            session.channel_success(ch)
        } else {
            self.note(
                SessionEventKind::ForwardFailed,
                "X11 forwarding failed on the target",
                json!({ "kind": "x11" }),
            );
            session.channel_failure(ch)
        }
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Error> {
        let Some(live) = self.live().filter(|l| l.forwarding.port) else {
            self.note(
                SessionEventKind::ForwardRefused,
                &format!("remote forwarding of {address}:{port} refused"),
                json!({ "kind": "remote", "address": address, "port": *port }),
            );
            return Ok(false);
        };
        // The target listens (its sshd decides too, from permit-port-forwarding); connections
        // to it come back as forwarded-tcpip channels that `bridge_inbound` relays.
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            live.upstream.tcpip_forward(address, *port),
        )
        .await
        .unwrap_or_else(|_| Err(russh::Error::ConnectionTimeout));
        match answer {
            Ok(bound) => {
                if *port == 0 {
                    *port = bound;
                }
                if let Ok(mut f) = live.forwards.lock() {
                    f.remote.push((address.to_owned(), *port));
                }
                self.note(
                    SessionEventKind::Forward,
                    &format!("remote forwarding of {address}:{port} on the target"),
                    json!({ "kind": "remote", "address": address, "port": *port, "set_up": true }),
                );
                Ok(true)
            }
            Err(e) => {
                self.note(
                    SessionEventKind::ForwardFailed,
                    &format!("remote forwarding of {address}:{port} failed on the target"),
                    json!({ "kind": "remote", "address": address, "port": *port, "error": e.to_string() }),
                );
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Error> {
        let Some(live) = self.live() else { return Ok(false) };
        let known = live.forwards.lock().is_ok_and(|mut f| {
            let before = f.remote.len();
            f.remote.retain(|(a, p)| !(a == address && *p == port));
            f.remote.len() != before
        });
        if !known {
            return Ok(false);
        }
        Ok(live.upstream.cancel_tcpip_forward(address, port).await.is_ok())
    }

    #[allow(clippy::too_many_arguments)]
    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        oa: &str,
        op: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Error> {
        let id = channel.id();
        drop(channel);
        let Some(live) = self.live().filter(|l| l.forwarding.port) else {
            self.note(
                SessionEventKind::ForwardRefused,
                &format!("port forwarding to {host}:{port} refused"),
                json!({ "kind": "local", "host": host, "port": port }),
            );
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        if live.cutter.is_cut() || !self.room_for_a_channel("port forwarding") {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        // The scope allows it: the target opens the connection (its own sshd decides too,
        // from the certificate's permit-port-forwarding), and the gateway relays and records
        // that it happened.
        match live.upstream.channel_open_direct_tcpip(host, port, oa, op).await {
            Ok(up) => {
                let label = format!("port forwarding to {host}:{port}");
                let detail = json!({ "kind": "local", "host": host, "port": port });
                if live.record(|r| r.forward(id, &label, detail)).is_none() {
                    reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
                    return Ok(());
                }
                let (read, write) = up.split();
                let (tx, rx) = mpsc::unbounded_channel();
                let up = start_writer(&live, id, write, session.handle());
                self.chans.insert(id, Chan { up, replies: rx });
                live.channels.open_tunnel(id);
                live.tasks.spawn(pump_target(read, session.handle(), id, live.clone(), tx));
                reply.accept().await;
            }
            Err(e) => {
                tracing::info!(error = %e, %host, port, "the target refused a forwarded connection");
                self.note(
                    SessionEventKind::ForwardFailed,
                    &format!("port forwarding to {host}:{port} failed"),
                    json!({ "kind": "local", "host": host, "port": port, "error": e.to_string() }),
                );
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
            }
        }
        Ok(())
    }

    async fn streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Error> {
        self.note(
            SessionEventKind::ForwardRefused,
            &format!("remote socket forwarding of {socket_path} refused"),
            json!({ "kind": "streamlocal", "path": socket_path }),
        );
        Ok(false)
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        channel: Channel<Msg>,
        path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Error> {
        drop(channel);
        self.note(
            SessionEventKind::ForwardRefused,
            &format!("socket forwarding to {path} refused"),
            json!({ "kind": "streamlocal", "path": path }),
        );
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }
}

impl GatewaySession {
    /// The refusal-or-live decision, with refusals padded to a constant floor.
    async fn authorize(
        &mut self,
        who: PrincipalName,
        user: &str,
        began: Instant,
        handle: russh::server::Handle,
    ) {
        match self.open(who.clone(), user, handle).await {
            Ok(live) => {
                if let Ok(mut s) = self.slot.lock() {
                    *s = Some(live.clone());
                }
                self.state = State::Live(live);
            }
            Err(refusal) => {
                tracing::info!(%who, user = %user.escape_debug(), code = refusal.code, "refused");
                let audit = AuditDraft::of(
                    None,
                    who.as_str(),
                    &AuditData::SessionRefused(event::SessionRefused {
                        code: refusal.code.to_owned(),
                        message: refusal.message.clone(),
                        peer: self.peer.map(|p| p.to_string()),
                        user: user.to_owned(),
                    }),
                );
                let _ = self.deps.store.append_audit(&[audit], self.deps.clock.now()).await;
                if let Some(rest) = REFUSAL_FLOOR.checked_sub(began.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
                self.state = State::Denied { refusal };
            }
        }
    }
}

/// Starts channel `ch`'s writer (client to target, [`to_target::write`]) on `up`; returns `up`
/// for the requests that want the target's answer.
fn start_writer(
    live: &Arc<Live>,
    ch: ChannelId,
    up: ChannelWriteHalf<ClientMsg>,
    client: russh::server::Handle,
) -> Arc<ChannelWriteHalf<ClientMsg>> {
    let up = Arc::new(up);
    let queue = live.relays.open(ch, |_| true);
    live.writers.spawn(to_target::write(queue, ch, up.clone(), client, live.cutter.cut_token()));
    up
}

/// What follows routing a chunk from the client: a chunk the target side no longer takes
/// gives the client its window back at once; a client past its window is cut.
fn after_route(
    live: &Arc<Live>,
    ch: ChannelId,
    data: &[u8],
    routed: Routed,
    session: &mut Session,
) -> Result<(), Error> {
    match routed {
        Routed::Queued | Routed::Unrecorded => Ok(()),
        Routed::Gone => session.window_consumed(ch, len32(data)),
        Routed::Overrun => {
            let limit = live.relays.limit();
            live.record(|r| {
                r.note(
                    SessionEventKind::FlowControl,
                    &format!("the client sent more than its window ({limit} bytes) on one channel"),
                    json!({ "channel": u32::from(ch), "limit": limit }),
                );
            });
            live.cutter.cut_in_background(
                EndReason::ProtocolViolation,
                "breakglass: the client ignored SSH flow control; session closed".to_owned(),
            );
            Ok(())
        }
    }
}

fn len32(data: &[u8]) -> u32 {
    u32::try_from(data.len()).unwrap_or(u32::MAX)
}

/// Target to client for one channel: records, then forwards, in order; the target's answers
/// to want-reply requests go to the handler waiting for them.
async fn pump_target(
    mut read: russh::ChannelReadHalf,
    handle: russh::server::Handle,
    ch: ChannelId,
    live: Arc<Live>,
    replies: mpsc::UnboundedSender<bool>,
) {
    let cut = live.cutter.cut_token();
    loop {
        let msg = tokio::select! {
            biased;
            () = cut.cancelled() => break,
            m = read.wait() => match m { Some(m) => m, None => break },
        };
        if live.cutter.is_cut() {
            break;
        }
        let sent = match msg {
            // Nothing reaches the client unrecorded.
            ChannelMsg::Data { data } => {
                live.record(|r| r.output(ch, &data)).is_some()
                    && handle.data(ch, data).await.is_ok()
            }
            ChannelMsg::ExtendedData { data, ext } => {
                live.record(|r| r.stderr(ch, &data)).is_some()
                    && handle.extended_data(ch, ext, data).await.is_ok()
            }
            ChannelMsg::Success => replies.send(true).is_ok(),
            ChannelMsg::Failure => replies.send(false).is_ok(),
            ChannelMsg::ExitStatus { exit_status } => {
                live.record(|r| r.exit_status(exit_status));
                handle.exit_status_request(ch, exit_status).await.is_ok()
            }
            ChannelMsg::ExitSignal { signal_name, core_dumped, error_message, lang_tag } => {
                live.record(|r| {
                    r.note(
                        SessionEventKind::ExitSignal,
                        &format!("killed by {signal_name:?}"),
                        json!({ "signal": format!("{signal_name:?}") }),
                    );
                });
                handle
                    .exit_signal_request(ch, signal_name, core_dumped, error_message, lang_tag)
                    .await
                    .is_ok()
            }
            ChannelMsg::Eof => handle.eof(ch).await.is_ok(),
            ChannelMsg::Close => break,
            _ => true,
        };
        if !sent {
            break;
        }
    }
    live.record(|r| r.channel_done(ch));
    // At a cut the cutter closes the channel, after its goodbye line.
    if !live.cutter.is_cut() {
        let _ = handle.close(ch).await;
    }
    live.channels.close(ch);
}

/// Channels the target opens towards the user (connections to an `ssh -R` port, programs
/// using the forwarded agent, X11 clients): each is bridged to a channel the gateway opens on
/// the user's connection, and recorded, if the user set that forwarding up through this
/// session (which needed the scope to allow it); anything else is refused.
async fn bridge_inbound(
    live: Arc<Live>,
    handle: russh::server::Handle,
    mut inbound: mpsc::UnboundedReceiver<Inbound>,
    max_channels: usize,
) {
    loop {
        let next = tokio::select! {
            n = inbound.recv() => n,
            () = live.finished.cancelled() => None,
        };
        let Some(Inbound { what, channel, reply }) = next else { break };
        let set_up = live.forwards.lock().is_ok_and(|f| match &what {
            Opened::Agent => f.agent,
            Opened::X11 { .. } => f.x11,
            Opened::ForwardedTcpip { connected_port, .. } => {
                f.remote.iter().any(|(_, p)| p == connected_port)
            }
        });
        let (label, detail) = match &what {
            Opened::Agent => {
                ("agent forwarding used on the target".to_owned(), json!({ "kind": "agent" }))
            }
            Opened::X11 { originator_address, originator_port } => (
                format!("X11 forwarding: connection from {originator_address}:{originator_port}"),
                json!({ "kind": "x11", "originator": format!("{originator_address}:{originator_port}") }),
            ),
            Opened::ForwardedTcpip {
                connected_address,
                connected_port,
                originator_address,
                originator_port,
            } => (
                format!("remote forwarding: connection to {connected_address}:{connected_port}"),
                json!({
                    "kind": "remote", "address": connected_address, "port": connected_port,
                    "originator": format!("{originator_address}:{originator_port}"),
                }),
            ),
        };
        if set_up && live.channels.len() >= max_channels {
            live.record(|r| {
                r.note(
                    SessionEventKind::ChannelRefused,
                    &format!("channel refused: {label}, {max_channels} channels already open"),
                    json!({ "what": label, "max": max_channels }),
                );
            });
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            continue;
        }
        if !set_up {
            tracing::warn!(?what, "the target opened a channel nobody asked for: refused");
            live.record(|r| {
                r.note(SessionEventKind::ForwardRefused, &format!("{label} refused"), detail)
            });
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            continue;
        }
        let opened = match &what {
            Opened::Agent => handle.channel_open_agent().await,
            Opened::X11 { originator_address, originator_port } => {
                handle.channel_open_x11(originator_address.clone(), *originator_port).await
            }
            Opened::ForwardedTcpip {
                connected_address,
                connected_port,
                originator_address,
                originator_port,
            } => {
                handle
                    .channel_open_forwarded_tcpip(
                        connected_address.clone(),
                        *connected_port,
                        originator_address.clone(),
                        *originator_port,
                    )
                    .await
            }
        };
        match opened {
            Ok(user) => {
                let id = user.id();
                if live.record(|r| r.forward(id, &label, detail)).is_none() {
                    let _ = user.close().await;
                    reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
                    continue;
                }
                live.channels.open_tunnel(id);
                // What the user sent before this point waited in the channel's queue: it is
                // recorded now, after the forward event, and goes first.
                let queue = live.relays.open(id, |op| match op {
                    Up::Data(data) => live.record(|r| r.input(id, data)).is_some(),
                    _ => true,
                });
                reply.accept().await;
                live.tasks.spawn(relay_tunnel(live.clone(), user, channel, queue, handle.clone()));
            }
            Err(e) => {
                let mut detail = detail;
                detail["error"] = json!(e.to_string());
                live.record(|r| {
                    r.note(SessionEventKind::ForwardFailed, &format!("{label} failed"), detail)
                });
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
            }
        }
    }
}

/// Relays one forwarded connection the target opened (`user` is the gateway's channel to the
/// user, `target` the target's), both ways, until both sides closed. Its bytes pass through
/// the recording, which keeps them out of the terminal recording. The user's side arrives
/// through the handler, like every channel's ([`to_target`]): the channel object's own
/// reader is dropped, so it never holds up the connection.
async fn relay_tunnel(
    live: Arc<Live>,
    user: Channel<Msg>,
    target: Channel<ClientMsg>,
    queue: to_target::Queue,
    client: russh::server::Handle,
) {
    let id = user.id();
    let (from_user, to_user) = user.split();
    drop(from_user);
    let (from_target, to_target) = target.split();
    let cut = live.cutter.cut_token();
    let relay = async {
        tokio::join!(
            to_target::write(queue, id, Arc::new(to_target), client, cut.clone()),
            pipe(from_target, to_user, |data| {
                !live.cutter.is_cut() && live.record(|r| r.output(id, data)).is_some()
            }),
        )
    };
    tokio::select! {
        _ = relay => {}
        () = cut.cancelled() => {}
    }
    live.record(|r| r.channel_done(id));
    live.channels.close(id);
}

/// One direction of a forwarded connection: data (once `record` took it), EOF, then close.
async fn pipe<S>(
    mut from: russh::ChannelReadHalf,
    to: ChannelWriteHalf<S>,
    record: impl Fn(&[u8]) -> bool,
) where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    while let Some(msg) = from.wait().await {
        let go_on = match msg {
            ChannelMsg::Data { data } => record(&data) && to.data_bytes(data).await.is_ok(),
            ChannelMsg::Eof => to.eof().await.is_ok(),
            ChannelMsg::Close => false,
            _ => true,
        };
        if !go_on {
            break;
        }
    }
    let _ = to.close().await;
}

/// Writes session events to the database, off the data path, retrying a little.
async fn write_events(
    store: Arc<dyn shared::ports::SessionLog>,
    mut rx: mpsc::Receiver<SessionEvent>,
) {
    while let Some(e) = rx.recv().await {
        let mut wait = Duration::from_millis(100);
        for attempt in 0..5 {
            match store.add_session_event(&e).await {
                Ok(()) => break,
                Err(err) if attempt == 4 => {
                    tracing::error!(error = %err, kind = %e.kind, "session event lost from the database (it is in the recording)")
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
}

/// Cuts the session at the grant's end, from the signed deadline (no database needed), at the
/// deadline itself ([`crate::live::until_deadline`]: counted below the second, never late by
/// either clock). The cut runs on this session's own task, so it waits on no other session.
async fn enforce_deadline(live: Arc<Live>, clock: Arc<dyn shared::core::Clock>) {
    let deadline = live.grant.session_deadline();
    let cut = live.cutter.cut_token();
    tokio::select! {
        () = crate::live::until_deadline(clock.as_ref(), deadline) => {}
        () = live.finished.cancelled() => return,
        () = cut.cancelled() => return,
    }
    let req = live.grant.request();
    let at = deadline.rfc3339();
    let hhmm = at.get(11..16).unwrap_or(&at);
    let msg = format!(
        "breakglass: break-glass window for {} ended at {hhmm} UTC; session closed",
        req.host
    );
    tracing::info!(code = %req.code, "grant window ended: cutting the session");
    metrics::histogram!(shared::telemetry::CUT_LATENCY)
        .record(shared::telemetry::seconds_since(deadline));
    live.cutter.cut(EndReason::Expired, &msg).await;
}

/// A client-supplied string bounded to `max` characters (with `…` when cut), so it can be
/// parsed, logged and stored without letting the client decide how big it is.
pub fn bounded(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// The longest SSH user name the gateway keeps (a grant code or `login@host` is far shorter).
pub const MAX_USER_NAME: usize = 256;

/// The name of a signal as SSH spells it (`TERM`, `INT`, …).
fn signal_name(sig: &Sig) -> String {
    let name = match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(c) => return bounded(c, 32),
    };
    name.to_owned()
}

/// After the connection ended: closes the recording, signs it, disconnects the target, and
/// records the end (retrying while the database is away; the recording already holds it).
/// Sealing and storing the end is [`crate::seal::seal`].
pub async fn finish(deps: &GatewayDeps, live: Arc<Live>) {
    live.finished.cancel();
    let req = live.grant.request().clone();
    let reason = live.cutter.reason().unwrap_or(EndReason::Closed);
    let ended_at = deps.clock.now();
    // What the client sent before it left goes to the target first (it is recorded already).
    live.relays.close_all();
    live.writers.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), live.writers.wait()).await;
    // The target's side closes (politely first, then severed, so the target's sshd ends the
    // session's processes whatever its state), then the relay tasks record what they still
    // carry: every command found is written before the end marker.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        live.upstream.disconnect(russh::Disconnect::ByApplication, "session ended", "en"),
    )
    .await;
    live.cutter.sever_upstream();
    live.tasks.close();
    if tokio::time::timeout(Duration::from_secs(2), live.tasks.wait()).await.is_err() {
        tracing::warn!(code = %req.code, "relay tasks still running at the end of the session");
    }
    deps.live.remove(req.id);
    let (file, finished, failure) = match live.recording.lock() {
        Ok(mut r) => {
            let finished = r.finish(&format!("session ended: {}", reason.as_str()));
            (r.name().to_owned(), finished, r.failure().map(str::to_owned))
        }
        Err(e) => {
            let r = e.into_inner();
            (r.name().to_owned(), None, Some("the recording lock was poisoned".to_owned()))
        }
    };
    let ended = crate::seal::Ended {
        req,
        file,
        reason,
        started_at: live.started_at,
        ended_at,
        finished,
        failure,
    };
    crate::seal::seal(&crate::seal::Sealer::of(deps), ended).await;
}
