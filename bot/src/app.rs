//! The bot's start-up parts, from a validated config: the approval key, the pinned
//! verification keys, the chat adapters, the database (migrations run at connect), private
//! files and directories, and the HTTP server; and the bot's own composition: [`Bot`] (the
//! service and each front end's parts) and [`router`], which gives each front end its state.
//!
//! The composition root (the `breakglass` package's `compose` module) puts these together with
//! the reaper, the chat sync, Slack Socket Mode and the SSH gateway under one cancellation
//! tree; this crate never links the gateway.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use shared::config::Config;
use shared::core::{ApprovalSigner, PinnedKeys, SystemClock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::chat::sync::ChatHub;
use crate::discord::{DiscordFront, DiscordState};
use crate::http::ApiFront;
use crate::recordings::Recordings;
use crate::review::ReviewFront;
use crate::service::Deps;
use crate::slack::{SlackFront, SlackState};

/// Environment variable that may hold the bot's approval key (PKCS#8 PEM) instead of a file.
pub const APPROVAL_KEY_ENV: &str = "BREAKGLASS_APPROVAL_SIGNING_KEY";

/// Where the approval key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
    /// Generated (or reused) under the data directory: the embedded default.
    DataDir {
        path: PathBuf,
        created: bool,
    },
}

/// Loads the bot's approval signing key: the environment, then `keys.approval_signing_key_file`,
/// then `<data_dir>/keys/approval.key` (generated on first start).
///
/// # Errors
/// Unreadable, malformed or world-readable key files.
pub fn load_signer(config: &Config) -> anyhow::Result<(ApprovalSigner, KeySource)> {
    if let Ok(pem) = std::env::var(APPROVAL_KEY_ENV) {
        let key = shared::keys::parse_signing_key_pem(&pem, APPROVAL_KEY_ENV)?;
        return Ok((ApprovalSigner::new(key), KeySource::Env));
    }
    if let Some(path) = &config.keys.approval_signing_key_file {
        let key = shared::keys::read_signing_key(path)
            .context("while loading keys.approval_signing_key_file")?;
        return Ok((ApprovalSigner::new(key), KeySource::File(path.clone())));
    }
    let base = config.server.data_dir.join("keys").join("approval");
    let (key, created) = shared::keys::load_or_generate(&base)
        .context("while loading the approval key from the data directory")?;
    Ok((ApprovalSigner::new(key), KeySource::DataDir { path: base.with_extension("key"), created }))
}

/// The verification keys, from config only. With no `pinned_bot_keys` (single-process
/// embedded defaults), the process trusts its own approval key.
pub fn pins(config: &Config, own: &ApprovalSigner) -> PinnedKeys {
    let mut pins = config.keys.approval_pins();
    if config.keys.pinned_bot_keys.is_empty() {
        pins.pin_bot(own.verifying_key());
    }
    pins
}

/// The keys recording signatures are checked against: `keys.pinned_recording_keys`, or the
/// public half of the data directory's recording key (generated if missing, as the gateway
/// would).
///
/// # Errors
/// A key file that cannot be read or written.
pub fn recording_pins(config: &Config) -> anyhow::Result<Vec<ed25519_dalek::VerifyingKey>> {
    recording_pins_from(config, true)
}

/// [`recording_pins`] without creating anything: with no key pinned or configured, the public
/// half of the data directory's recording key must exist (what verifying commands use).
///
/// # Errors
/// No key to verify with; unreadable key files.
pub fn recording_pins_from(
    config: &Config,
    generate: bool,
) -> anyhow::Result<Vec<ed25519_dalek::VerifyingKey>> {
    if !config.keys.pinned_recording_keys.is_empty() {
        return Ok(config.keys.recording_keys());
    }
    if let Some(p) = &config.keys.recording_signing_key_file {
        let key = shared::keys::read_signing_key(p)
            .context("while loading keys.recording_signing_key_file")?;
        return Ok(vec![key.verifying_key()]);
    }
    let base = config.server.data_dir.join("keys").join("recording");
    if generate {
        return Ok(vec![shared::keys::load_or_generate(&base)?.0.verifying_key()]);
    }
    let p = base.with_extension("pub");
    let text = std::fs::read_to_string(&p).map_err(|_| {
        anyhow::anyhow!(
            "no recording key to verify with: pin keys.pinned_recording_keys, pass --key, or run this where {} exists",
            p.display()
        )
    })?;
    Ok(vec![
        shared::core::approval::parse_public_key(&text).with_context(|| p.display().to_string())?,
    ])
}

/// The chat hub (adapters for the configured platforms, over `recordings`) and the Slack and
/// Discord endpoints' state.
///
/// Slack is on with a signing secret (HTTP endpoints) or with `slack.socket_mode` (the app
/// token; no signing secret needed, and the HTTP endpoints are off).
///
/// # Errors
/// Secret files that cannot be read; a signing secret or Socket Mode without a bot token;
/// Socket Mode without an app token.
pub fn build_chat(config: &Config, recordings: Arc<Recordings>) -> anyhow::Result<ChatParts> {
    let mut hub = ChatHub::new(recordings, config.server.public_url.clone());
    let s = &config.slack;
    let no_bot_token = |why: &str| {
        anyhow::anyhow!(
            "config error at `slack.bot_token_file`: {why} but no bot token; fix: set BREAKGLASS_SLACK_BOT_TOKEN or slack.bot_token_file"
        )
    };
    let slack = if s.socket_mode {
        let app_token = s.app_token.load()?.ok_or_else(|| {
            anyhow::anyhow!(
                "config error at `slack.app_token_file`: slack.socket_mode is true but no app-level token is set; fix: set BREAKGLASS_SLACK_APP_TOKEN or slack.app_token_file (an xapp-… token with connections:write)"
            )
        })?;
        let token = s.bot_token.load()?.ok_or_else(|| no_bot_token("slack.socket_mode is true"))?;
        if s.signing_secret.load()?.is_some() {
            tracing::warn!(
                "slack.socket_mode is true: the Slack signing secret is not used and the HTTP Slack endpoints are off"
            );
        }
        let adapter = Arc::new(crate::slack::SlackAdapter::new(&s.api_url, &token)?);
        hub.add(adapter.clone());
        tracing::info!(api = %s.api_url, "Slack enabled in Socket Mode");
        Some(Arc::new(SlackState::socket_mode(app_token, adapter)))
    } else {
        match (s.signing_secret.load()?, s.bot_token.load()?) {
            (Some(secret), Some(token)) => {
                let adapter = Arc::new(crate::slack::SlackAdapter::new(&s.api_url, &token)?);
                hub.add(adapter.clone());
                tracing::info!(api = %s.api_url, "Slack enabled");
                Some(Arc::new(SlackState::new(&secret, adapter)))
            }
            (Some(_), None) => return Err(no_bot_token("a Slack signing secret is set")),
            _ => None,
        }
    };
    let d = &config.discord;
    let discord = match (&d.public_key, d.application_id) {
        (Some(key), Some(app)) => {
            let token = d.bot_token.load()?.ok_or_else(|| {
                anyhow::anyhow!("config error at `discord.bot_token_file`: discord.public_key is set but no bot token; fix: set BREAKGLASS_DISCORD_BOT_TOKEN or discord.bot_token_file")
            })?;
            let adapter = Arc::new(crate::discord::DiscordAdapter::new(&d.api_base, app, &token));
            hub.add(adapter.clone());
            tracing::info!(api = %d.api_base, "Discord enabled");
            Some(Arc::new(DiscordState::new(key, adapter)?))
        }
        _ => None,
    };
    Ok((hub, slack, discord))
}

/// The chat hub, and the Slack and Discord endpoints' state (when configured).
pub type ChatParts = (ChatHub, Option<Arc<SlackState>>, Option<Arc<DiscordState>>);

/// Everything the bot's process runs on: the application service, and what each front end
/// needs besides it. The front ends get their own parts from here ([`router`]); the service
/// never sees them.
#[derive(Debug, Clone)]
pub struct Bot {
    /// The application service.
    pub deps: Deps,
    /// Chat adapters and the sync loop's wake-up (empty when no chat is configured).
    pub chat: Arc<ChatHub>,
    /// The Slack endpoints' state, when Slack is configured.
    pub slack: Option<Arc<SlackState>>,
    /// The Discord endpoint's state, when Discord is configured.
    pub discord: Option<Arc<DiscordState>>,
}

impl Bot {
    /// The bot with no chat configured, over `deps` and `recordings`.
    pub fn new(deps: Deps, recordings: Recordings) -> Self {
        let recordings = Arc::new(recordings);
        let chat = ChatHub::new(recordings.clone(), deps.config.server.public_url.clone());
        Self { deps, chat: Arc::new(chat), slack: None, discord: None }
    }
}

/// The bot's router: each front end's routes over its own state (the API, Slack, Discord, the
/// reviewer pages), merged, with what every route shares around them.
pub fn router(bot: Bot) -> Router {
    let Bot { deps, chat, slack, discord } = bot;
    // Where recordings are and the keys that sign them: one for the API, the reviewer pages
    // and the chat summary.
    let recordings = chat.recordings.clone();
    let api = ApiFront { deps: deps.clone(), recordings: recordings.clone() };
    let slack = SlackFront { deps: deps.clone(), hub: chat.clone(), slack };
    let discord = DiscordFront { deps: deps.clone(), hub: chat, discord };
    let review = ReviewFront { deps, recordings };
    crate::http::around(
        Router::new()
            .merge(crate::http::routes().with_state(api))
            .merge(crate::slack::routes().with_state(slack))
            .merge(crate::discord::routes().with_state(discord))
            .merge(crate::review::routes().with_state(review)),
    )
}

/// Makes every file and directory this process creates private to its user (umask 077):
/// recordings hold keystrokes (passwords typed at `read -s` too), the database the audit log.
pub fn private_umask() {
    use nix::sys::stat::{Mode, umask};
    umask(Mode::from_bits_truncate(0o077));
}

/// Creates `dir` (and its parents) mode 0700 if it is missing.
///
/// # Errors
/// The directory cannot be created.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("while creating the directory {}", dir.display()))
}

/// The warning for an existing `dir` other users can enter or read, if it is one.
pub fn open_dir_warning(dir: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} is open to other users (mode {mode:o}); it holds recordings or the database; fix: chmod 700 {}",
            dir.display(),
            dir.display()
        )
    })
}

/// At start: warns (one line each) about a data or recordings directory wider than 0700.
pub fn warn_open_dirs(config: &Config) {
    let mut dirs = vec![config.server.data_dir.as_path(), config.gateway.recordings_dir.as_path()];
    dirs.dedup();
    for line in dirs.into_iter().filter_map(open_dir_warning) {
        tracing::warn!("{line}");
    }
}

/// Opens the database and builds the service and the front ends' parts.
///
/// # Errors
/// Key or database failures, each with what was being done.
pub async fn build_bot(config: Config) -> anyhow::Result<(Bot, KeySource)> {
    warn_open_dirs(&config);
    if config.server.database_url.starts_with("sqlite:") {
        create_private_dir(&config.server.data_dir).context("while creating the data directory")?;
    }
    let (signer, source) = load_signer(&config)?;
    if !config.keys.pinned_bot_keys.is_empty()
        && !config.keys.pinned_bot_keys.iter().any(|p| p.key == signer.verifying_key())
    {
        tracing::warn!(key_id = %signer.key_id(), "the approval key is not among keys.pinned_bot_keys: approvals this bot signs will not verify");
    }
    let pins = pins(&config, &signer);
    // The recordings folder or the bucket `[recordings]` names; in `up` the gateway records
    // through this same store (`Bot::recordings`).
    let store = s3::open_store(&config).context("while opening the recording store")?;
    let recordings = Arc::new(Recordings::in_store(recording_pins(&config)?, store));
    let (chat, slack, discord) = build_chat(&config, recordings)?;
    let store = shared::storage::connect(&config.server.database_url).await.with_context(|| {
        format!(
            "while opening the database {}",
            shared::config::redact_url(&config.server.database_url)
        )
    })?;
    let deps = Deps {
        config: Arc::new(config),
        store,
        clock: Arc::new(SystemClock),
        signer: Arc::new(signer),
        pins: Arc::new(pins),
        changed: Arc::default(),
    };
    Ok((Bot { deps, chat: Arc::new(chat), slack, discord }, source))
}

/// The approval keys a gateway running on its own trusts: `keys.pinned_bot_keys`, or, when
/// none are pinned, the public half of the data directory's approval key (same machine).
///
/// # Errors
/// Nothing pinned and no approval key on this machine.
pub fn gateway_pins(config: &Config) -> anyhow::Result<PinnedKeys> {
    pins_from(config, true)
}

/// The approval keys from config; with none pinned, the public half of the data directory's
/// approval key, which must exist when `require_bot_key` (the gateway) and may be missing
/// otherwise (an auditor on a database with no approvals yet).
///
/// # Errors
/// A missing required key, an unparsable key file.
pub fn pins_from(config: &Config, require_bot_key: bool) -> anyhow::Result<PinnedKeys> {
    let mut pins = config.keys.approval_pins();
    if config.keys.pinned_bot_keys.is_empty() {
        let p = config.server.data_dir.join("keys").join("approval.pub");
        match std::fs::read_to_string(&p) {
            Ok(text) => {
                pins.pin_bot(
                    shared::core::approval::parse_public_key(&text)
                        .with_context(|| p.display().to_string())?,
                );
            }
            Err(_) if !require_bot_key => {}
            Err(_) => anyhow::bail!(
                "config error at `keys.pinned_bot_keys`: empty, and there is no {} to trust; fix: pin the bot's approval public key (breakglass keygen prints it)",
                p.display()
            ),
        }
    }
    Ok(pins)
}

/// Serves the HTTP API on `listener` until `stop` is cancelled, then drains in-flight requests.
///
/// # Errors
/// The server failing to accept.
pub async fn serve(listener: TcpListener, bot: Bot, stop: CancellationToken) -> anyhow::Result<()> {
    let limits = bot.deps.config.server.http.clone();
    crate::http::server::serve(listener, router(bot), limits, stop)
        .await
        .context("while serving HTTP")
}

/// The config file to use: the flag, else `BREAKGLASS_CONFIG`, else `./breakglass.toml` if it
/// exists, else none (embedded defaults).
pub fn config_path(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_owned());
    }
    if let Some(p) = std::env::var_os("BREAKGLASS_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let default = PathBuf::from("breakglass.toml");
    default.exists().then_some(default)
}
