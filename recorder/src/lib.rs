//! The breakglass SSH gateway: the only place access is granted.
//!
//! A user connects with their own SSH key as `bg-7f3a2c` (the grant's code) or `login@host`.
//! The gateway verifies the grant alone (its own config, its own pinned keys), mints a
//! short-lived certificate, connects to the target, consumes the grant, and bridges the
//! session while recording every byte and every command. The session is cut at the grant's
//! end or on revocation, and its recording is hashed and signed.
//!
//! # Layout
//!
//! - [`session`]: the russh handler of one connection (auth, channel requests, data).
//! - [`authz`]: identities from config, the user-name forms, and the decision.
//! - [`upstream`]: the russh client to the target, with the pinned host key.
//! - [`keys`]: host key, CA, and the per-session certificate.
//! - [`recording`]: one session's asciicast file, command and transfer trackers, events.
//! - [`seal`]: signing a closed recording and storing its end; recovering what a crash left.
//!   Where recordings live is the store port ([`format::store::RecordingStore`]).
//!   The recording format itself (asciicast, command extraction, SFTP/scp observation, the
//!   signed statement) is the pure `format` crate (package `breakglass-format`).
//! - [`to_target`]: client to target, one writer task per channel, with flow control per
//!   channel (the connection's loop never waits on the target).
//! - [`live`]: live sessions, cutting, the deadline timer and the revocation watcher;
//!   [`flush`]: the one flush timer of every recording.
//! - [`sever`]: a stream a cut can close from outside; [`limits`]: connections not logged in
//!   yet, bounded in all and per source.
//! - [`journal`]: the gateway's own journal of used grants (nonces), checked besides the
//!   database.

pub mod authz;
pub mod flush;
pub mod journal;
pub mod keys;
pub mod limits;
pub mod live;
pub mod recording;
pub mod seal;
pub mod session;
pub mod sever;
pub mod store_watch;
pub mod to_target;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

/// The gateway's SSH host key type (ssh-key's, as russh pins it).
pub use russh::keys::ssh_key::PrivateKey as HostKey;

use anyhow::Context as _;
use format::integrity::RecordingSigner;
use russh::keys::ssh_key::PrivateKey;
use shared::config::Config;
use shared::core::{Clock, PinnedKeys};
use shared::ports::GatewayStore;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::authz::Identities;
use crate::keys::Ca;
use crate::live::LiveSessions;
use crate::session::{GatewaySession, LiveSlot};

/// Most connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// After a cut asked for the client's connection to be dropped, how long russh may still take
/// to flush what it has (the goodbye) before the connection is dropped anyway.
const CUT_FLUSH: Duration = Duration::from_millis(100);

/// Everything a connection needs. Cheap to clone.
#[derive(Clone)]
pub struct GatewayDeps {
    pub config: Arc<Config>,
    /// The database, through the capabilities the gateway uses only (no chat outbox, no
    /// review sign-ins).
    pub store: Arc<dyn GatewayStore>,
    pub clock: Arc<dyn Clock>,
    /// Approval keys the gateway trusts: from its config, never from the database.
    pub pins: Arc<PinnedKeys>,
    pub identities: Arc<Identities>,
    pub ca: Arc<Ca>,
    pub recording_signer: Arc<RecordingSigner>,
    /// Where recordings live (today a local folder: [`format::store::LocalFolder`] over
    /// `gateway.recordings_dir`).
    pub recordings: Arc<dyn format::store::RecordingStore>,
    pub live: Arc<LiveSessions>,
    /// The nonces this gateway opened sessions for: a grant in it is refused even if the
    /// database forgot it was used. Load it with [`journal::NonceJournal::open`] at start.
    pub journal: Arc<journal::NonceJournal>,
}

impl std::fmt::Debug for GatewayDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayDeps")
            .field("ca", &self.ca)
            .field("live", &self.live.len())
            .finish_non_exhaustive()
    }
}

/// The gateway's keys, loaded (or generated on first start) from its config.
#[derive(Debug)]
pub struct GatewayKeys {
    pub host: PrivateKey,
    pub ca: Ca,
    pub recording: RecordingSigner,
}

/// Loads the host key, the CA key and the recording key: from the configured files, or from
/// the data directory (generated on first start).
///
/// # Errors
/// Unreadable, malformed or world-readable key files.
pub fn load_keys(config: &Config) -> anyhow::Result<GatewayKeys> {
    let host = keys::load_or_create_host_key(&config.gateway.host_key_file)?;
    let data_keys = config.server.data_dir.join("keys");
    let ca = match &config.keys.gateway_ca_key_file {
        Some(p) => {
            shared::keys::read_signing_key(p).context("while loading keys.gateway_ca_key_file")?
        }
        None => {
            shared::keys::load_or_generate(&data_keys.join("ca"))
                .context("while loading the gateway CA key")?
                .0
        }
    };
    let rec = match &config.keys.recording_signing_key_file {
        Some(p) => shared::keys::read_signing_key(p)
            .context("while loading keys.recording_signing_key_file")?,
        None => {
            shared::keys::load_or_generate(&data_keys.join("recording"))
                .context("while loading the recording key")?
                .0
        }
    };
    Ok(GatewayKeys { host, ca: Ca::new(&ca), recording: RecordingSigner::new(rec) })
}

/// Ciphers offered to the gateway's SSH clients: AES-GCM only. In SSH the client's order
/// wins, and OpenSSH's default order puts chacha20-poly1305 and the CTR modes (with a separate
/// HMAC) before AES-GCM, so offering any of those would choose it. With AES instructions GCM
/// is the cheapest on both ends (BENCHMARKS.md, `bench/run.sh --gateway-cipher`). Every
/// maintained client speaks it (OpenSSH since 6.2, PuTTY 0.76, paramiko, Go's x/crypto, russh).
pub const CLIENT_CIPHERS: &[russh::cipher::Name] =
    &[russh::cipher::AES_128_GCM, russh::cipher::AES_256_GCM];

/// The window each client channel gets: what the client may send before the target took it.
/// With flow control per channel ([`to_target`]) it is also the most one channel holds in
/// the gateway's memory.
pub const CLIENT_WINDOW: u32 = 8 * 1024 * 1024;
/// The largest packet a client may send.
pub const CLIENT_PACKET: u32 = 32 * 1024;

/// The SSH server configuration: public keys only, constant-time refusals, large windows,
/// flow control per channel (the client's window is given back as the target takes its bytes:
/// [`to_target`], russh patched in `vendor/russh`), AES-GCM ([`CLIENT_CIPHERS`]).
pub fn server_config(host: PrivateKey) -> Arc<russh::server::Config> {
    Arc::new(russh::server::Config {
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(CLIENT_CIPHERS),
            ..russh::Preferred::DEFAULT
        },
        keys: vec![host],
        methods: russh::MethodSet::from(&[russh::MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        window_size: CLIENT_WINDOW,
        maximum_packet_size: CLIENT_PACKET,
        manual_window_adjust: true,
        // Room for the relay to run ahead of the session loop without a hand-off per chunk.
        event_buffer_size: 256,
        channel_buffer_size: 256,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        inactivity_timeout: None,
        nodelay: true,
        ..russh::server::Config::default()
    })
}

/// Serves SSH on `listener` until `stop` is cancelled; then cuts every live session (each
/// finishes its recording) and returns once they are done.
///
/// # Errors
/// The listener failing.
pub async fn serve(
    listener: TcpListener,
    deps: GatewayDeps,
    host_key: PrivateKey,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&deps.config.gateway.recordings_dir).with_context(|| {
        format!(
            "while creating the recordings directory {}",
            deps.config.gateway.recordings_dir.display()
        )
    })?;
    let config = server_config(host_key);
    let tracker = TaskTracker::new();
    let refusal_log = limits::Throttle::new(Duration::from_secs(1));
    // Listed before the first connection is accepted; finished in the background, given up
    // at shutdown (what is left is tried again at the next start).
    let crashed = seal::unfinished(deps.recordings.as_ref());
    if !crashed.is_empty() {
        let (sealer, stop) = (seal::Sealer::of(&deps), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = seal::recover_crashed(sealer, crashed) => {}
                () = stop.cancelled() => {}
            }
        });
    }
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let startups = limits::Startups::new(
        deps.config.gateway.max_startups,
        deps.config.gateway.max_startups_per_source,
    );
    tracker.spawn(flush::run(deps.live.flusher().clone(), stop.child_token()));
    tracker.spawn(store_watch::run(deps.live.clone(), deps.recordings.clone(), stop.child_token()));
    tracker.spawn(live::watch_revocations(
        deps.live.clone(),
        deps.store.clone(),
        deps.config.gateway.revocation_poll,
        stop.child_token(),
    ));
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // At a limit, new connections are closed at once rather than queued: in all, and for
        // connections not logged in yet, in all and per source address.
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many connections; closed");
            drop(stream);
            continue;
        };
        let startup = match startups.try_start(peer.ip()) {
            Ok(s) => s,
            Err(full) => {
                // Logged at most once a second: a flood must not flood the log too.
                if refusal_log.allow() {
                    tracing::warn!(%peer, ?full, "too many connections not logged in yet; closed");
                }
                drop(stream);
                continue;
            }
        };
        let (deps, config) = (deps.clone(), config.clone());
        let grace = deps.config.gateway.login_grace_time;
        tracker.spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            // russh runs the connection on a task of its own: the gateway keeps the means to
            // close it (a cut, the grace time) whatever that task is waiting for.
            let sever = CancellationToken::new();
            let stream = match sever::tcp(stream, sever.clone()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "cannot take the connection; closed");
                    return;
                }
            };
            let slot = LiveSlot::default();
            let logged_in = CancellationToken::new();
            let handler = GatewaySession::new(deps.clone(), Some(peer), slot.clone())
                .on_login(logged_in.clone());
            let mut session = Box::pin(async {
                match russh::server::run_stream(config, stream, handler).await {
                    Ok(running) => {
                        if let Err(e) = running.await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    }
                    Err(e) => tracing::debug!(%peer, error = %e, "handshake failed"),
                }
            });
            // A client that has not logged in within the grace time is dropped, whatever
            // stage it stalls at; until then it holds a startup place.
            let deadline = tokio::time::Instant::now() + grace;
            let ended = tokio::select! {
                () = &mut session => true,
                () = logged_in.cancelled() => false,
                () = tokio::time::sleep_until(deadline) => {
                    tracing::info!(%peer, "not logged in within the grace time; disconnected");
                    true
                }
            };
            drop(startup);
            let live = slot.lock().ok().and_then(|s| s.clone());
            if !ended {
                match &live {
                    // A live session runs until it ends, or until a cut asks for the client's
                    // connection to be dropped: then it gets a moment to flush the goodbye,
                    // and is dropped (closing the TCP connection) whatever russh is doing.
                    Some(live) => {
                        let drop_client = live.cutter.drop_client_token();
                        tokio::select! {
                            () = &mut session => {}
                            () = drop_client.cancelled() => {
                                let _ = tokio::time::timeout(CUT_FLUSH, &mut session).await;
                            }
                        }
                    }
                    // A refused login prints its line and ends; it may not linger past the
                    // grace time.
                    None => {
                        let _ = tokio::time::timeout_at(deadline, &mut session).await;
                    }
                }
            }
            // The client's TCP connection is closed, whatever russh was waiting for.
            sever.cancel();
            drop(session);
            let live = slot.lock().ok().and_then(|mut s| s.take());
            if let Some(live) = live {
                session::finish(&deps, live).await;
            }
        });
    }
    deps.live.cut_all("breakglass: the gateway is shutting down; session closed").await;
    tracker.close();
    tracker.wait().await;
    Ok(())
}
