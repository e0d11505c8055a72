//! The composition root: the one place that builds a running process from a validated
//! [`Config`], for each of the three process modes.
//!
//! - [`Mode::Up`]: the bot (HTTP API, chat endpoints, reaper, chat sync, Slack Socket Mode) and
//!   the SSH gateway in one process, sharing one store; a revoke through this bot wakes this
//!   gateway's session watcher at once.
//! - [`Mode::Bot`]: the bot alone (no SSH gateway).
//! - [`Mode::Gateway`]: the SSH gateway alone, trusting only the approval keys pinned in its
//!   config.
//!
//! Every task runs under one cancellation tree, cancelled by Ctrl-C or SIGTERM, with a grace
//! period for draining. The bot crate provides the parts and never links the gateway; only
//! this crate holds both.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bot::logging::BANNER;
use shared::config::{self, Config};
use shared::core::{PinnedKeys, SystemClock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::{EXIT_FAILURE, EXIT_LOCAL, EXIT_UNREACHABLE, Failure};

/// How long running tasks get to finish after a shutdown signal.
const GRACE: Duration = Duration::from_secs(10);

/// The process modes: `breakglass up`, `breakglass bot`, `breakglass gateway`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up,
    Bot,
    Gateway,
}

/// Builds the process `mode` runs from `cfg`, binds its listeners and runs it until a shutdown
/// signal.
///
/// # Errors
/// A start-up failure, with its documented exit code (4 when the database did not open or
/// answer, 5 for a local problem: a listen address, a key or secret file, the data
/// directory), or a server failure (1).
pub async fn run(mode: Mode, cfg: Config) -> Result<(), Failure> {
    // Before anything records a metric: what is recorded earlier is lost.
    bot::telemetry::install();
    match mode {
        Mode::Up => up(cfg).await,
        Mode::Bot => bot_only(cfg).await,
        Mode::Gateway => gateway(cfg).await,
    }
}

async fn up(cfg: Config) -> Result<(), Failure> {
    // Bind SSH first: with `--ssh-listen HOST:0`, the connect line shows the port we got.
    let mut cfg = cfg;
    let ssh = bind(cfg.gateway.listen, "SSH").await?;
    if cfg.gateway.public_port == 0 {
        cfg.gateway.public_port = ssh.local_addr().map(|a| a.port()).unwrap_or(0);
    }
    let listen_addr = cfg.server.listen;
    let http = bind(listen_addr, "HTTP").await?;
    let bound = http.local_addr().map_err(|e| Failure::new(EXIT_LOCAL, e.to_string()))?;
    bound_public_url(&mut cfg, bound);
    let data = cfg.server.data_dir.clone();
    let db = config::redact_url(&cfg.server.database_url);
    let (parts, source) = bot::app::build_bot(cfg)
        .await
        .map_err(|e| Failure::new(startup_exit_code(&e), format!("{e:#}")))?;
    let deps = &parts.deps;
    if let bot::app::KeySource::DataDir { path, created: true } = &source {
        tracing::info!(
            target: BANNER,
            "generated the approval key {} (key id {})",
            path.display(),
            deps.signer.key_id()
        );
    }
    let (mut gw, host_key) =
        build_gateway(deps.config.clone(), deps.store.clone(), deps.pins.clone(), {
            // One recording store for both halves (`[recordings]`): the live view reads what
            // the gateway writes, and a bucket's spool has one owner.
            Some(parts.chat.recordings.store.clone())
        })
        .map_err(|e| Failure::new(EXIT_LOCAL, format!("{e:#}")))?;
    // One process: a revoke through this bot wakes this gateway's watcher at once.
    gw.live = Arc::new(recorder::live::LiveSessions::woken_by(deps.changed.clone()));
    announce_gateway(&gw, &ssh);
    tracing::info!(target: BANNER, "HTTP API on http://{bound} (OpenAPI at /api/openapi.json)");
    tracing::info!(target: BANNER, "database {db}, data directory {}", data.display());
    let stop = stop_on_signal();
    // Other replicas on the same PostgreSQL: their revokes wake this gateway too.
    follow_change_feed(&gw, &stop)?;
    run_tasks(parts, http, Some((ssh, gw, host_key)), stop, GRACE)
        .await
        .map_err(|e| Failure::new(EXIT_FAILURE, format!("{e:#}")))
}

async fn bot_only(cfg: Config) -> Result<(), Failure> {
    let mut cfg = cfg;
    let listen_addr = cfg.server.listen;
    let http = bind(listen_addr, "HTTP").await?;
    let bound = http.local_addr().map_err(|e| Failure::new(EXIT_LOCAL, e.to_string()))?;
    bound_public_url(&mut cfg, bound);
    let (parts, _) = bot::app::build_bot(cfg)
        .await
        .map_err(|e| Failure::new(startup_exit_code(&e), format!("{e:#}")))?;
    tracing::info!(
        target: BANNER,
        "HTTP API on http://{bound} (OpenAPI at /api/openapi.json); no SSH gateway in this process"
    );
    run_tasks(parts, http, None, stop_on_signal(), GRACE)
        .await
        .map_err(|e| Failure::new(EXIT_FAILURE, format!("{e:#}")))
}

async fn gateway(cfg: Config) -> Result<(), Failure> {
    let pins =
        bot::app::gateway_pins(&cfg).map_err(|e| Failure::new(EXIT_LOCAL, format!("{e:#}")))?;
    bot::app::warn_open_dirs(&cfg);
    if cfg.server.database_url.starts_with("sqlite:") {
        bot::app::create_private_dir(&cfg.server.data_dir)
            .map_err(|e| Failure::new(EXIT_LOCAL, format!("{e:#}")))?;
    }
    let store = crate::commands::open_database(&cfg).await?;
    let ssh = bind(cfg.gateway.listen, "SSH").await?;
    let health = match cfg.gateway.health_listen {
        Some(addr) => Some(bind(addr, "health checks").await?),
        None => None,
    };
    let (gw, host_key) = build_gateway(Arc::new(cfg), store.clone(), Arc::new(pins), None)
        .map_err(|e| Failure::new(EXIT_LOCAL, format!("{e:#}")))?;
    announce_gateway(&gw, &ssh);
    let stop = stop_on_signal();
    if let Some(listener) = health {
        let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(target: BANNER, "health checks and metrics on http://{bound} (/healthz, /readyz, /metrics)");
        let router = bot::telemetry::health_router(store);
        let health_stop = stop.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { health_stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the health listener stopped");
            }
        });
    }
    // The bots that decide are in other processes: their revokes reach this gateway through
    // the database's change feed (PostgreSQL), or at its next poll.
    follow_change_feed(&gw, &stop)?;
    recorder::serve(ssh, gw, host_key, stop)
        .await
        .map_err(|e| Failure::new(EXIT_FAILURE, format!("{e:#}")))
}

/// On PostgreSQL, wakes the gateway's revocation watcher at every change the database
/// announces (any replica's revoke), until `stop`; on SQLite there is no feed and nothing to
/// do. The watcher's poll stays the fallback while the feed is down.
///
/// # Errors
/// A PostgreSQL URL that does not parse (4).
fn follow_change_feed(gw: &recorder::GatewayDeps, stop: &CancellationToken) -> Result<(), Failure> {
    let feed = shared::storage::change_feed(&gw.config.server.database_url)
        .map_err(|e| Failure::new(EXIT_UNREACHABLE, e.to_string()))?;
    if let Some(feed) = feed {
        tokio::spawn(recorder::live::follow_changes(gw.live.clone(), feed, stop.child_token()));
    }
    Ok(())
}

/// The exit code of a start-up failure: 4 when the database did not open or answer, 5 for
/// every local problem (a key file, a secret file, the data directory), as README documents.
fn startup_exit_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<shared::ports::StoreError>()) {
        EXIT_UNREACHABLE
    } else {
        EXIT_LOCAL
    }
}

/// The gateway's dependencies over an open store: its keys (generated under the data
/// directory on first start), its identities, the approval keys it trusts, and the recording
/// store (`recordings`, shared with the bot in `up`; else opened from `[recordings]`).
///
/// # Errors
/// Key files, SSH keys in the config that do not parse, a recording store that does not open.
fn build_gateway(
    config: Arc<Config>,
    store: Arc<dyn shared::ports::Store>,
    pins: Arc<PinnedKeys>,
    recordings: Option<Arc<dyn format::store::RecordingStore>>,
) -> anyhow::Result<(recorder::GatewayDeps, recorder::HostKey)> {
    let recordings = match recordings {
        Some(r) => r,
        None => s3::open_store(&config).context("while opening the recording store")?,
    };
    let keys = recorder::load_keys(&config)?;
    let identities = recorder::authz::Identities::from_config(&config)?;
    // Fail closed: without its journal the gateway could not tell a reused grant.
    let journal = recorder::journal::NonceJournal::open(&config.gateway.recordings_dir)?;
    tracing::info!(path = %journal.path().display(), used = journal.len(), "used-grant journal loaded");
    let deps = recorder::GatewayDeps {
        recordings,
        config,
        store,
        clock: Arc::new(SystemClock),
        pins,
        identities: Arc::new(identities),
        ca: Arc::new(keys.ca),
        recording_signer: Arc::new(keys.recording),
        live: Arc::new(recorder::live::LiveSessions::default()),
        journal: Arc::new(journal),
    };
    Ok((deps, keys.host))
}

/// Everything the bot runs (and the gateway, when given), on listeners the caller bound,
/// under one cancellation tree.
///
/// # Errors
/// Startup failures (audit write) and server failures.
async fn run_tasks(
    parts: bot::Bot,
    http: TcpListener,
    gateway: Option<(TcpListener, recorder::GatewayDeps, recorder::HostKey)>,
    stop: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let deps = parts.deps.clone();
    deps.record_startup("bot").await.context("while writing the startup audit events")?;
    let tracker = TaskTracker::new();
    tracker.spawn(bot::reaper::run(deps.clone(), Duration::from_secs(5), stop.child_token()));
    if !parts.chat.is_empty() {
        tracker.spawn(bot::chat::sync::run(
            deps.clone(),
            parts.chat.clone(),
            Duration::from_secs(1),
            stop.child_token(),
        ));
    }
    if let Some(slack) = parts.slack.clone()
        && let Some(token) = slack.app_token.clone()
    {
        let hub = parts.chat.clone();
        tracker.spawn(bot::slack::socket::run(deps.clone(), hub, slack, token, stop.child_token()));
    }
    if let Some((ssh, gw, host_key)) = gateway {
        let gw_stop = stop.child_token();
        tracker.spawn(async move {
            if let Err(e) = recorder::serve(ssh, gw, host_key, gw_stop).await {
                tracing::error!(error = %format!("{e:#}"), "the SSH gateway stopped");
            }
        });
    }
    let server = tracker.spawn(bot::serve(http, parts, stop.child_token()));
    tracker.close();
    stop.cancelled().await;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("forced exit after the {grace:?} grace period");
    }
    match server.await {
        Ok(r) => r,
        Err(e) => Err(anyhow::anyhow!("HTTP server task failed: {e}")),
    }
}

/// A cancellation token cancelled by Ctrl-C or SIGTERM.
fn stop_on_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!(target: BANNER, "shutdown requested");
        signal_stop.cancel();
    });
    stop
}

/// Resolves when the process gets Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

/// Raises the soft open-file limit to the hard limit (so a flood of connections meets the
/// connection caps before it meets `EMFILE`) and says what it is.
pub fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(open_files = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::new(EXIT_LOCAL, format!("cannot listen on {addr} for {what}: {e}")))
}

/// Says where the gateway listens and what targets must trust.
fn announce_gateway(gw: &recorder::GatewayDeps, ssh: &TcpListener) {
    let bound = ssh.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(
        target: BANNER,
        "SSH gateway on {bound}; targets must trust the CA (breakglass ca public-key): {}",
        gw.ca.public_line()
    );
    tracing::info!(
        target: BANNER,
        "target host keys are pinned in {}, recordings go to {:?}",
        gw.config.gateway.known_hosts_file.display(),
        gw.recordings
    );
    if gw.identities.is_empty() {
        tracing::warn!(
            target: BANNER,
            "no SSH keys configured for any user: nobody can log in to the gateway"
        );
    }
}

/// With `--listen HOST:0` and no `server.public_url`, links (reviewer sign-in, chat summaries)
/// use the port actually bound.
fn bound_public_url(cfg: &mut Config, bound: std::net::SocketAddr) {
    let listen = cfg.server.listen;
    if listen.port() == 0 && cfg.server.public_url == format!("http://{listen}") {
        cfg.server.public_url = format!("http://{bound}");
    }
}
