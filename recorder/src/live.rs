//! Live sessions: what each one needs to be cut, and the watcher that cuts them when their
//! grant is revoked.
//!
//! Every live session has a [`Cutter`]: cutting severs the target's connection, tries one line
//! to the user's terminal (bounded in time), and drops the client's connection whatever the
//! client does; the session's task then finishes the recording.
//! The deadline is enforced by a timer in the session itself (from the signed grant, so it
//! holds even when the database is down; [`until_deadline`] makes it fire at the deadline
//! itself, not in whole seconds); revocations come from the database, polled here, or at once
//! when this process decided them or another process announced a change on the database's
//! change feed ([`follow_changes`]; PostgreSQL).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::server::Handle;
use russh::{ChannelId, Disconnect};
use shared::core::{Clock, RequestId, Status, Timestamp};
use shared::ports::{ChangeFeed, RequestFilter, Requests};
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
    /// The client broke the protocol in a way that would cost the gateway unbounded memory
    /// (it sent past its window).
    ProtocolViolation,
}

impl EndReason {
    /// The reason as stored (who revoked goes to the audit event's `revoked_by`).
    pub fn core(&self) -> shared::core::EndReason {
        use shared::core::EndReason as Stored;
        match self {
            Self::Closed => Stored::Closed,
            Self::Expired => Stored::Expired,
            Self::Revoked { .. } => Stored::Revoked,
            Self::Shutdown => Stored::GatewayShutdown,
            Self::RecordingFailed => Stored::RecordingFailed,
            Self::ProtocolViolation => Stored::ProtocolViolation,
        }
    }

    pub fn as_str(&self) -> &'static str {
        self.core().as_str()
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
    /// How many channels are open.
    pub fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(usize::MAX)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn snapshot(&self) -> Vec<(ChannelId, Open)> {
        self.0.lock().map(|m| m.iter().map(|(c, p)| (*c, *p)).collect()).unwrap_or_default()
    }
}

/// How long a cut tries to tell the user why (one line, exit status, close, disconnect)
/// before it drops the connection anyway: a client that stops reading never holds a cut up.
pub const GOODBYE_TIMEOUT: Duration = Duration::from_millis(250);

/// Cuts one session, once.
///
/// A cut never waits for the client: it stops relaying (the session's data paths check
/// [`Cutter::is_cut`]), severs the connection to the target first (so nothing more reaches
/// it, and the target's sshd ends the session's processes), then tries the one-line message
/// for at most [`GOODBYE_TIMEOUT`], then tells the accept loop to drop the client's TCP
/// connection, whatever state russh's loop is in.
#[derive(Debug)]
pub struct Cutter {
    handle: Handle,
    channels: Arc<OpenChannels>,
    reason: Mutex<Option<EndReason>>,
    done: CancellationToken,
    upstream: CancellationToken,
    client: CancellationToken,
}

impl Cutter {
    /// `upstream` severs the connection to the target.
    pub fn new(handle: Handle, channels: Arc<OpenChannels>, upstream: CancellationToken) -> Self {
        Self {
            handle,
            channels,
            reason: Mutex::new(None),
            done: CancellationToken::new(),
            upstream,
            client: CancellationToken::new(),
        }
    }

    /// Why it was cut, if it was.
    pub fn reason(&self) -> Option<EndReason> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }

    /// Whether the session was cut: nothing more is relayed, either way.
    pub fn is_cut(&self) -> bool {
        self.done.is_cancelled()
    }

    /// Resolves once the session was cut.
    pub fn cut_token(&self) -> CancellationToken {
        self.done.clone()
    }

    /// Cancelled when the client's connection must be dropped (the goodbye was tried).
    pub fn drop_client_token(&self) -> CancellationToken {
        self.client.clone()
    }

    /// Severs the connection to the target (idempotent).
    pub fn sever_upstream(&self) {
        self.upstream.cancel();
    }

    /// Stops relaying, severs the target, tells the user why in one line (bounded in time),
    /// closes every channel, disconnects, and has the client's connection dropped. Only the
    /// first call does anything.
    pub async fn cut(&self, reason: EndReason, message: &str) {
        if let Some(open) = self.begin(reason) {
            self.goodbye(open, message).await;
        }
    }

    /// Cuts on its own task: the caller never waits on this session. Relaying stops and the
    /// target is severed before this returns (so a relay task that goes on cannot close a
    /// channel before its goodbye); only the goodbye runs on the task.
    pub fn cut_in_background(self: &Arc<Self>, reason: EndReason, message: String) {
        if let Some(open) = self.begin(reason) {
            let me = self.clone();
            tokio::spawn(async move { me.goodbye(open, &message).await });
        }
    }

    /// The part of a cut that does not wait: records the reason (the first cut only), stops
    /// relaying and severs the target. The channels to say goodbye on, or `None` if the
    /// session was cut already.
    fn begin(&self, reason: EndReason) -> Option<Vec<(ChannelId, Open)>> {
        {
            let mut r = self.reason.lock().ok()?;
            if r.is_some() {
                return None;
            }
            metrics::counter!(shared::telemetry::SESSION_CUTS, "reason" => reason.as_str())
                .increment(1);
            *r = Some(reason);
        }
        // The channels to say goodbye on are taken before anything stops, so a relay task
        // that ends at the cut cannot take its channel off the list first.
        let open = self.channels.snapshot();
        self.done.cancel();
        self.upstream.cancel();
        Some(open)
    }

    /// One line to the user on each channel, exit status, close, disconnect: for at most
    /// [`GOODBYE_TIMEOUT`]; then the client's connection is dropped.
    async fn goodbye(&self, open: Vec<(ChannelId, Open)>, message: &str) {
        let goodbye = async {
            for (ch, what) in open {
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
        };
        if tokio::time::timeout(GOODBYE_TIMEOUT, goodbye).await.is_err() {
            tracing::info!("the client did not take the goodbye in time; dropping its connection");
        }
        self.client.cancel();
    }
}

/// Sets the live-sessions gauge. Every gateway of a process shares the one gauge (tests run
/// several; a process in production has one).
#[allow(clippy::cast_precision_loss)]
fn live_gauge(n: usize) {
    metrics::gauge!(shared::telemetry::LIVE_SESSIONS).set(n as f64);
}

/// Waits longer than this are cut short and measured again against the clock (see
/// [`until_deadline`]).
const RECHECK_OVER: Duration = Duration::from_secs(1);

/// Resolves at `deadline` by `clock` (wall time, as the signed deadline is), to the
/// millisecond of tokio's timer, and never later than the monotonic timer says the deadline
/// is from when it started.
///
/// The wait is slept on the monotonic timer, which an NTP correction does not move but whose
/// rate the wall clock may drift from (slewing, up to 0.05%: 1.8 s over an hour). So a long
/// wait wakes a little early (1/512 of what is left) and measures again; a one-hour wait
/// wakes three or four times in all. Of the two clocks the earlier one wins: a cut may come
/// early by the drift, never late.
///
/// # Security
/// A wall clock set back does not extend a session: the monotonic bound still holds.
pub async fn until_deadline(clock: &dyn Clock, deadline: Timestamp) {
    let started = tokio::time::Instant::now();
    let by_monotonic = started.checked_add(clock.until(deadline));
    loop {
        let now = tokio::time::Instant::now();
        let mono_left = by_monotonic.map_or(Duration::MAX, |at| at.saturating_duration_since(now));
        let left = clock.until(deadline).min(mono_left);
        if left.is_zero() {
            return;
        }
        let nap = if left > RECHECK_OVER { left - left / 512 } else { left };
        match now.checked_add(nap) {
            Some(at) => tokio::time::sleep_until(at).await,
            // Centuries away: sleep a year at a time.
            None => tokio::time::sleep(Duration::from_secs(365 * 86_400)).await,
        }
    }
}

/// Every live session of this gateway, by grant.
#[derive(Debug, Default)]
pub struct LiveSessions {
    map: Mutex<HashMap<RequestId, (String, Arc<Cutter>)>>,
    /// Wakes the revocation watcher before its next poll (a request changed in this process).
    wake: Arc<tokio::sync::Notify>,
    /// The one flush timer of every live session's recording.
    flusher: Arc<crate::flush::Flusher>,
}

impl LiveSessions {
    /// Live sessions whose revocation watcher also wakes when `wake` is notified: in
    /// `breakglass up`, the service notifies it on every decision, so a revoke cuts at once
    /// instead of at the next poll.
    pub fn woken_by(wake: Arc<tokio::sync::Notify>) -> Self {
        Self { map: Mutex::default(), wake, flusher: Arc::default() }
    }

    /// The flusher shared by the recordings of these sessions ([`crate::flush::run`] ticks
    /// it).
    pub fn flusher(&self) -> &Arc<crate::flush::Flusher> {
        &self.flusher
    }

    pub fn insert(&self, id: RequestId, host: String, cutter: Arc<Cutter>) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(id, (host, cutter));
            live_gauge(m.len());
        }
    }
    pub fn remove(&self, id: RequestId) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&id);
            live_gauge(m.len());
        }
    }
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub(crate) fn all(&self) -> Vec<(RequestId, String, Arc<Cutter>)> {
        self.map
            .lock()
            .map(|m| m.iter().map(|(id, (h, c))| (*id, h.clone(), c.clone())).collect())
            .unwrap_or_default()
    }

    /// Cuts every live session at once (the gateway is stopping).
    pub async fn cut_all(&self, message: &str) {
        let mut cuts = tokio::task::JoinSet::new();
        for (_, _, c) in self.all() {
            let message = message.to_owned();
            cuts.spawn(async move { c.cut(EndReason::Shutdown, &message).await });
        }
        while cuts.join_next().await.is_some() {}
    }
}

/// Wakes the revocation watcher of `live` at every change announced on `feed` (another
/// replica revoked a grant), and once each time the feed (re)connects, until `stop`. The feed
/// only hastens the watcher: its poll goes on, so a feed that is down delays a cut by one
/// poll at most.
pub async fn follow_changes(
    live: Arc<LiveSessions>,
    feed: Arc<dyn ChangeFeed>,
    stop: CancellationToken,
) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = feed.follow(&live.wake) => {}
    }
}

/// Live sessions checked per query (the list adapter returns at most 1000 rows).
const REVOCATION_BATCH: usize = 500;

/// Polls the database every `every` (and whenever the wake of [`LiveSessions::woken_by`] is
/// notified; a notice while it queries is kept, so none is lost) for
/// revocations of live grants, and cuts those sessions. A database that does not answer cuts
/// nothing (the signed deadline still holds).
pub async fn watch_revocations(
    live: Arc<LiveSessions>,
    store: Arc<dyn Requests>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
            () = live.wake.notified() => {}
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
                // Each cut on its own task: a session that hangs never delays another's cut.
                cutter.cut_in_background(EndReason::Revoked { by }, msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use russh::keys::PublicKeyOrCertificate;
    use russh::keys::ssh_key::{Algorithm, PrivateKey};
    use russh::server::{Auth, Session};
    use russh::{MethodKind, MethodSet};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// The gateway's side: accepts anyone, and hands out the session's handle at login.
    struct Server(Option<tokio::sync::oneshot::Sender<Handle>>);

    impl russh::server::Handler for Server {
        type Error = russh::Error;
        async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
            Ok(Auth::Accept)
        }
        async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(session.handle());
            }
            Ok(())
        }
    }

    struct Client;

    impl russh::client::Handler for Client {
        type Error = russh::Error;
        async fn check_server_key(
            &mut self,
            _key: &PublicKeyOrCertificate,
        ) -> Result<bool, Self::Error> {
            Ok(true)
        }
    }

    /// A logged-in russh session over memory pipes, and a token that, once cancelled, makes
    /// the client stop reading anything the gateway sends (the connection stays open).
    async fn logged_in() -> (Handle, russh::client::Handle<Client>, CancellationToken) {
        let (server_io, relay_s) = tokio::io::duplex(256);
        let (client_io, relay_c) = tokio::io::duplex(256);
        let (mut from_server, mut to_server) = tokio::io::split(relay_s);
        let (mut from_client, mut to_client) = tokio::io::split(relay_c);
        tokio::spawn(async move { tokio::io::copy(&mut from_client, &mut to_server).await });
        let deaf = CancellationToken::new();
        let stop = deaf.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    n = from_server.read(&mut buf) => match n {
                        Ok(0) | Err(_) => return,
                        Ok(n) => if to_client.write_all(&buf[..n]).await.is_err() { return },
                    },
                }
            }
            // The client reads nothing more, and does not close either.
            std::future::pending::<()>().await;
            drop((from_server, to_client));
        });
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("host key");
        let config = Arc::new(russh::server::Config {
            keys: vec![key],
            methods: MethodSet::from(&[MethodKind::None][..]),
            ..russh::server::Config::default()
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if let Ok(running) =
                russh::server::run_stream(config, server_io, Server(Some(tx))).await
            {
                let _ = running.await;
            }
        });
        let config = Arc::new(russh::client::Config::default());
        let mut client =
            russh::client::connect_stream(config, client_io, Client).await.expect("handshake");
        let auth = client.authenticate_none("alice").await.expect("auth");
        assert!(auth.success(), "logged in");
        let handle = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("login within 5 s")
            .expect("the server's handle");
        (handle, client, deaf)
    }

    /// A wall clock over tokio's (paused) timer: `rate` wall seconds per timer second, from
    /// `origin` at the timer's start.
    #[derive(Debug)]
    struct Drifting {
        start: tokio::time::Instant,
        origin: f64,
        rate: f64,
    }

    impl Drifting {
        fn wall(&self) -> f64 {
            self.origin + self.start.elapsed().as_secs_f64() * self.rate
        }
    }

    impl Clock for Drifting {
        fn now(&self) -> Timestamp {
            #[allow(clippy::cast_possible_truncation)]
            Timestamp::from_unix(self.wall().floor() as i64)
        }
        fn until(&self, deadline: Timestamp) -> Duration {
            #[allow(clippy::cast_precision_loss)]
            let left = deadline.unix() as f64 - self.wall();
            Duration::try_from_secs_f64(left.max(0.0)).unwrap_or(Duration::MAX)
        }
    }

    /// How long, on the timer, [`until_deadline`] took with `clock`.
    async fn fired_after(clock: &Drifting, deadline: i64) -> Duration {
        let began = tokio::time::Instant::now();
        until_deadline(clock, Timestamp::from_unix(deadline)).await;
        began.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_fires_at_the_deadline_to_the_millisecond() {
        // 0.4 s into a second: a timer counting whole seconds would fire 0.4 s late.
        let start = tokio::time::Instant::now();
        let clock = Drifting { start, origin: 1000.4, rate: 1.0 };
        let took = fired_after(&clock, 1003).await;
        assert!(took.abs_diff(Duration::from_millis(2600)) <= Duration::from_millis(1), "{took:?}");
        // A deadline that passed fires at once.
        assert_eq!(fired_after(&clock, 900).await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wall_clock_running_fast_or_slow_never_makes_the_cut_late() {
        let start = tokio::time::Instant::now();
        // The wall clock runs 0.05% fast (NTP slewing it forward): over an hour it gains
        // 1.8 s, and the cut follows it, on the wall clock's deadline within a millisecond.
        let fast = Drifting { start, origin: 0.0, rate: 1.0005 };
        let took = fired_after(&fast, 3600).await;
        let wall = Duration::from_secs_f64(3600.0 / 1.0005);
        assert!(took.abs_diff(wall) <= Duration::from_millis(1), "{took:?} vs {wall:?}");
        // The wall clock runs slow or is set back: the monotonic bound from the start holds.
        let start = tokio::time::Instant::now();
        let slow = Drifting { start, origin: 0.0, rate: 0.5 };
        let took = fired_after(&slow, 3600).await;
        assert!(took.abs_diff(Duration::from_secs(3600)) <= Duration::from_millis(1), "{took:?}");
    }

    #[tokio::test]
    async fn a_cut_severs_the_target_and_drops_a_client_that_never_reads() {
        let (handle, _client, deaf) = logged_in().await;
        let upstream = CancellationToken::new();
        let channels = Arc::new(OpenChannels::default());
        let cutter = Cutter::new(handle, channels, upstream.clone());
        assert!(!cutter.is_cut() && !upstream.is_cancelled());
        deaf.cancel();
        let began = std::time::Instant::now();
        tokio::time::timeout(
            Duration::from_secs(5),
            cutter.cut(EndReason::Revoked { by: Some("bob".into()) }, "breakglass: revoked"),
        )
        .await
        .expect("a cut never waits on the client");
        assert!(
            began.elapsed() <= GOODBYE_TIMEOUT + Duration::from_secs(1),
            "{:?}",
            began.elapsed()
        );
        assert!(cutter.is_cut(), "nothing more is relayed");
        assert!(upstream.is_cancelled(), "the cut severs the connection to the target");
        assert!(
            cutter.drop_client_token().is_cancelled(),
            "the cut has the client's connection dropped"
        );
        assert_eq!(cutter.reason(), Some(EndReason::Revoked { by: Some("bob".into()) }));
        // Only the first cut counts.
        cutter.cut(EndReason::Expired, "later").await;
        assert_eq!(cutter.reason(), Some(EndReason::Revoked { by: Some("bob".into()) }));
    }

    #[tokio::test]
    async fn a_cut_in_the_background_returns_at_once_and_cuts() {
        let (handle, _client, deaf) = logged_in().await;
        deaf.cancel();
        let upstream = CancellationToken::new();
        let cutter =
            Arc::new(Cutter::new(handle, Arc::new(OpenChannels::default()), upstream.clone()));
        let dropped = cutter.drop_client_token();
        cutter.cut_in_background(EndReason::Expired, "breakglass: window ended".into());
        // Relaying stopped and the target is severed before it returned.
        assert!(cutter.is_cut() && upstream.is_cancelled());
        tokio::time::timeout(Duration::from_secs(5), dropped.cancelled())
            .await
            .expect("the background cut said goodbye and dropped the client");
        assert_eq!(cutter.reason(), Some(EndReason::Expired));
    }
}
