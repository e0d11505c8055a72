//! The one typed config, loaded in layers, validated once, with redacted secrets.
//!
//! Layers, later ones winning: built-in defaults, then the TOML file, then `BREAKGLASS__*`
//! environment variables (`BREAKGLASS__SERVER__LISTEN=0.0.0.0:8080` sets `server.listen`),
//! then command-line flags. Every section refuses unknown keys, so a typo is an error that
//! names the key instead of a silently ignored setting.
//!
//! Secrets are never in the TOML: private keys come from files (`*_file` keys, mode 0600) or
//! from environment variables ([`Secret`] keeps them out of `Debug` and logs); API tokens are
//! stored as SHA-256 hashes only. `deploy/breakglass.example.toml` documents every key, and a
//! test loads it so it cannot drift from this file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::core::approval::{Validity, parse_public_key};
use crate::core::ids::{
    GrantDuration, GroupName, HostName, Login, PrincipalName, ScopeName, Timestamp,
};
use crate::core::policy::{Policy, Principal, PrincipalKind, ScopePolicy};

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "BREAKGLASS__";
/// Where operators find every key documented.
pub const EXAMPLE_PATH: &str = "deploy/breakglass.example.toml";

/// A value that must never be printed. `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(v: T) -> Self {
        Self(v)
    }
    /// The secret itself. Call sites are easy to audit with a grep for `expose`.
    pub fn expose(&self) -> &T {
        &self.0
    }
}
impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A config problem: the key, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    /// One line: the key, the problem, then one piece of advice (a near-miss suggestion,
    /// `did you mean ...?`, stands on its own; any other fix follows `fix:`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config error at `{}`: {}; ", self.key, self.problem)?;
        if self.fix.starts_with("did you mean") {
            f.write_str(&self.fix)
        } else {
            write!(f, "fix: {}", self.fix)
        }
    }
}
impl std::error::Error for ConfigError {}

fn err(key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), problem: problem.into(), fix: fix.into() }
}

// ---------------------------------------------------------------------------------------------
// The file's shape (what serde reads). Validated into `Config` by `validate`.

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub gateway: RawGateway,
    pub keys: RawKeys,
    pub slack: RawSlack,
    pub discord: RawDiscord,
    pub review: RawReview,
    pub recordings: RawRecordings,
    pub users: BTreeMap<String, RawUser>,
    pub service_accounts: BTreeMap<String, RawService>,
    pub scopes: BTreeMap<String, RawScope>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub header_timeout: String,
    pub idle_timeout: String,
    pub max_connections: u32,
    pub max_connections_per_source: u32,
    pub requests_per_second_per_source: u32,
    pub request_burst_per_source: u32,
}

impl Default for RawServer {
    fn default() -> Self {
        let d = HttpLimits::default();
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            header_timeout: humantime::format_duration(d.header_timeout).to_string(),
            idle_timeout: humantime::format_duration(d.idle_timeout).to_string(),
            max_connections: d.max_connections,
            max_connections_per_source: d.max_connections_per_source,
            requests_per_second_per_source: d.requests_per_second_per_source,
            request_burst_per_source: d.request_burst_per_source,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGateway {
    pub listen: String,
    pub public_host: String,
    pub public_port: Option<u16>,
    pub host_key_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub recordings_dir: Option<PathBuf>,
    pub connect_timeout: String,
    pub login_grace_time: String,
    pub revocation_poll: String,
    pub env_allowlist: Vec<String>,
    pub record_input: bool,
    pub max_channels_per_session: usize,
    pub max_startups: usize,
    pub max_startups_per_source: usize,
    pub health_listen: String,
}

impl Default for RawGateway {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:2222".into(),
            public_host: "127.0.0.1".into(),
            public_port: None,
            host_key_file: None,
            known_hosts_file: None,
            recordings_dir: None,
            connect_timeout: "10s".into(),
            login_grace_time: "30s".into(),
            revocation_poll: "250ms".into(),
            env_allowlist: vec!["LANG".into(), "LC_*".into(), "TZ".into()],
            record_input: true,
            max_channels_per_session: 10,
            max_startups: 100,
            max_startups_per_source: 10,
            health_listen: DEFAULT_HEALTH_LISTEN.into(),
        }
    }
}

/// Where a standalone gateway serves `/healthz`, `/readyz` and `/metrics` by default.
pub const DEFAULT_HEALTH_LISTEN: &str = "127.0.0.1:9222";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKeys {
    pub approval_signing_key_file: Option<PathBuf>,
    pub gateway_ca_key_file: Option<PathBuf>,
    pub recording_signing_key_file: Option<PathBuf>,
    pub pinned_bot_keys: Vec<RawPin>,
    pub pinned_recording_keys: Vec<RawPin>,
    pub pinned_approver_keys: BTreeMap<String, Vec<RawPin>>,
    pub retired_gateway_ca_keys: Vec<RawPin>,
}

/// One pinned public key as written in the config: the `ed25519:` line alone (valid always),
/// or a table with a validity window, as a rotation pins the key it retires:
/// `{ key = "ed25519:…", not_after = "2027-01-10T00:00:00Z" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawPin {
    Line(String),
    Window(RawPinWindow),
}

/// The table form of a [`RawPin`]. Unknown fields are refused: a misspelt `not_after` must not
/// leave a retired key valid for ever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPinWindow {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

/// A pinned public key with the window in which its signatures are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    pub key: VerifyingKey,
    pub validity: Validity,
}

/// Parses one pinned key at config key `at`.
fn parse_pin(raw: &RawPin, at: &str) -> Result<Pin, ConfigError> {
    let (text, nb, na) = match raw {
        RawPin::Line(t) => (t, None, None),
        RawPin::Window(w) => (&w.key, w.not_before.as_ref(), w.not_after.as_ref()),
    };
    let key = parse_public_key(text)
        .map_err(|e| err(at, e.to_string(), "paste the line `breakglass keygen` printed"))?;
    let time = |v: Option<&String>, field: &str| {
        v.map(|t| Timestamp::parse_rfc3339(t)).transpose().map_err(|e| {
            err(format!("{at}.{field}"), e.to_string(), "write it as \"2027-01-10T00:00:00Z\"")
        })
    };
    let validity =
        Validity { not_before: time(nb, "not_before")?, not_after: time(na, "not_after")? };
    if let (Some(b), Some(a)) = (validity.not_before, validity.not_after)
        && b > a
    {
        return Err(err(at, "not_before is after not_after", "swap them, or drop one"));
    }
    Ok(Pin { key, validity })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSlack {
    pub api_url: String,
    pub bot_token_file: Option<PathBuf>,
    pub signing_secret_file: Option<PathBuf>,
    pub socket_mode: bool,
    pub app_token_file: Option<PathBuf>,
}

impl Default for RawSlack {
    fn default() -> Self {
        Self {
            api_url: "https://slack.com/api".into(),
            bot_token_file: None,
            signing_secret_file: None,
            socket_mode: false,
            app_token_file: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReview {
    pub reviewer_groups: Vec<String>,
    pub link_ttl: String,
    pub session_ttl: String,
}

impl Default for RawReview {
    fn default() -> Self {
        Self { reviewer_groups: Vec::new(), link_ttl: "10m".into(), session_ttl: "8h".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDiscord {
    pub api_base: String,
    pub application_id: Option<u64>,
    pub public_key: Option<String>,
    pub bot_token_file: Option<PathBuf>,
}

impl Default for RawDiscord {
    fn default() -> Self {
        Self {
            api_base: "https://discord.com".into(),
            application_id: None,
            public_key: None,
            bot_token_file: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUser {
    pub slack_id: Option<String>,
    pub discord_id: Option<String>,
    pub ssh_keys: Vec<String>,
    pub groups: Vec<String>,
    pub api_token_sha256: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawService {
    pub token_sha256: String,
    pub scopes: Vec<String>,
    pub ssh_keys: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawScope {
    pub hosts: BTreeMap<String, String>,
    pub logins: Vec<String>,
    pub max_duration: Option<String>,
    pub default_duration: Option<String>,
    pub approval_timeout: Option<String>,
    pub requester_groups: Vec<String>,
    pub approver_groups: Vec<String>,
    pub quorum: Option<u32>,
    pub channels: Vec<String>,
    pub require_offline_signature: bool,
    pub allow_port_forwarding: bool,
    pub allow_agent_forwarding: bool,
    pub allow_x11_forwarding: bool,
}

// ---------------------------------------------------------------------------------------------
// The validated config.

#[derive(Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Base URL users reach the HTTP API and pages at (links in chat).
    pub public_url: String,
    pub data_dir: PathBuf,
    /// May hold a password: `Debug` shows it as `***` (see [`redact_url`]).
    pub database_url: String,
    /// What one client may hold of the HTTP server.
    pub http: HttpLimits,
}

/// Limits on HTTP clients (`server.*`): timeouts, connection caps and per-source request rates.
/// A source is an IPv4 address or an IPv6 /64. `0` turns a per-source limit off (behind a
/// reverse proxy every client has the proxy's address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// From connecting, or from the end of the previous response, to a complete request head.
    pub header_timeout: std::time::Duration,
    /// No byte in either direction for this long closes the connection (a stalled body, a
    /// client that does not read its response).
    pub idle_timeout: std::time::Duration,
    /// Open connections at most; more are closed at once, not queued.
    pub max_connections: u32,
    pub max_connections_per_source: u32,
    /// Sustained requests per second from one source (health checks are not counted); more
    /// are answered 429 `rate_limited`.
    pub requests_per_second_per_source: u32,
    /// Requests one source may send at once above the sustained rate.
    pub request_burst_per_source: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(60),
            max_connections: 1024,
            max_connections_per_source: 64,
            requests_per_second_per_source: 20,
            request_burst_per_source: 100,
        }
    }
}

impl fmt::Debug for ServerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSettings")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field("http", &self.http)
            .finish()
    }
}

impl fmt::Debug for RawServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawServer")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_deref().map(redact_url))
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_source", &self.max_connections_per_source)
            .field("requests_per_second_per_source", &self.requests_per_second_per_source)
            .field("request_burst_per_source", &self.request_burst_per_source)
            .finish()
    }
}

/// A database URL with every password in it shown as `***`, for messages, logs and `Debug`:
/// the one in the user info (`postgres://user:***@host/db`) and any `password`-like parameter
/// in the query (`?password=***`, `sslpassword=***`) or in a keyword string
/// (`host=db password=***`).
pub fn redact_url(url: &str) -> String {
    let mut out = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s && !url[s + 3..at].contains(['/', '?', '#']) => {
            match url[s + 3..at].split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    // Parameters: `password=...` up to the next `&`, `;`, `#` or white space.
    let mut from = 0;
    while let Some(i) = out[from..].to_ascii_lowercase().find("password=").map(|i| i + from) {
        let start = i + "password=".len();
        let end = out[start..]
            .find(|c: char| c == '&' || c == ';' || c == '#' || c.is_whitespace())
            .map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "***");
        from = start + 3;
    }
    out
}

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub listen: SocketAddr,
    /// Host name users type after the `@` in the connect line.
    pub public_host: String,
    pub public_port: u16,
    /// The gateway's SSH host key (OpenSSH format; generated on first start).
    pub host_key_file: PathBuf,
    /// Pinned host keys of the targets (OpenSSH known_hosts format). A target whose key is not
    /// there is refused.
    pub known_hosts_file: PathBuf,
    pub recordings_dir: PathBuf,
    /// How long connecting and authenticating to a target may take.
    pub connect_timeout: std::time::Duration,
    /// How long a client may take from connecting to being logged in before it is
    /// disconnected (like sshd's `LoginGraceTime`).
    pub login_grace_time: std::time::Duration,
    /// How often the gateway asks the database which live sessions' grants were revoked. A
    /// revoke made in the same process (`breakglass up`) wakes it at once.
    pub revocation_poll: std::time::Duration,
    /// Environment variables passed to the target (`*` at the end matches a prefix).
    pub env_allowlist: Vec<String>,
    /// Record the user's keystrokes (`i` events) as well as the output.
    pub record_input: bool,
    /// Channels one session may have open at once (shells, execs, forwarded connections);
    /// more are refused (like sshd's `MaxSessions`).
    pub max_channels_per_session: usize,
    /// Connections not logged in yet, in all; more are closed at once (like sshd's
    /// `MaxStartups`).
    pub max_startups: usize,
    /// Connections not logged in yet from one source address; more are closed at once.
    pub max_startups_per_source: usize,
    /// Where a standalone gateway (`breakglass gateway`) serves `/healthz`, `/readyz` and
    /// `/metrics`; `None` (`"off"`): nowhere. `breakglass up` serves them on the bot's listener.
    pub health_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct KeySettings {
    pub approval_signing_key_file: Option<PathBuf>,
    pub gateway_ca_key_file: Option<PathBuf>,
    pub recording_signing_key_file: Option<PathBuf>,
    /// The bot's approval keys, each with its validity (a retired key until its `not_after`).
    pub pinned_bot_keys: Vec<Pin>,
    /// The recording keys. Their validity is recorded in the audit; a recording is checked
    /// against every pinned key whatever its window (docs/operations.md, key rotation).
    pub pinned_recording_keys: Vec<Pin>,
    pub pinned_approver_keys: Vec<(PrincipalName, Pin)>,
    /// Former gateway CA keys the targets keep trusting until their `not_after` (a CA
    /// rotation's overlap); `breakglass ca trusted-keys` prints them with the current one.
    pub retired_gateway_ca_keys: Vec<Pin>,
}

impl KeySettings {
    /// The pinned approval keys (bot and personal) with their validity, as the verifier holds
    /// them. Callers add the defaults (the own key) when none are pinned.
    pub fn approval_pins(&self) -> crate::core::approval::PinnedKeys {
        let mut pins = crate::core::approval::PinnedKeys::new();
        for p in &self.pinned_bot_keys {
            pins.pin_bot_within(p.key, p.validity);
        }
        for (who, p) in &self.pinned_approver_keys {
            pins.pin_personal_within(who.clone(), p.key, p.validity);
        }
        pins
    }
    /// The recording keys' public halves (every pinned one, whatever its window).
    pub fn recording_keys(&self) -> Vec<VerifyingKey> {
        self.pinned_recording_keys.iter().map(|p| p.key).collect()
    }
}

/// Slack settings. Secrets are read when the bot starts (see [`SecretSource`]).
#[derive(Debug, Clone)]
pub struct SlackSettings {
    /// Web API base (tests and Slack-compatible servers point it elsewhere).
    pub api_url: String,
    pub bot_token: SecretSource,
    pub signing_secret: SecretSource,
    pub socket_mode: bool,
    pub app_token: SecretSource,
}

/// The web reviewer page.
#[derive(Debug, Clone)]
pub struct ReviewSettings {
    /// Members of these groups may see recordings (nobody when empty).
    pub reviewer_groups: BTreeSet<GroupName>,
    /// How long a sign-in link stays valid (it is single-use anyway).
    pub link_ttl: std::time::Duration,
    /// How long a signed-in browser session lasts.
    pub session_ttl: std::time::Duration,
}

/// Discord settings (HTTP interactions mode).
#[derive(Debug, Clone)]
pub struct DiscordSettings {
    /// REST base (tests point it elsewhere).
    pub api_base: String,
    pub application_id: Option<u64>,
    /// The application's public key (hex): interactions are verified with it.
    pub public_key: Option<String>,
    pub bot_token: SecretSource,
}

/// Where a secret comes from: an environment variable, else a file (mode 0600).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSource {
    pub env: &'static str,
    pub file: Option<PathBuf>,
}

impl SecretSource {
    /// The secret, if configured.
    ///
    /// # Errors
    /// A configured file that cannot be read or that others can read.
    pub fn load(&self) -> Result<Option<Secret<String>>, ConfigError> {
        if let Ok(v) = std::env::var(self.env)
            && !v.trim().is_empty()
        {
            return Ok(Some(Secret::new(v.trim().to_owned())));
        }
        let Some(path) = &self.file else { return Ok(None) };
        let key = path.display().to_string();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path)
                .map_err(|e| {
                    err(
                        &key,
                        format!("cannot read the secret file: {e}"),
                        format!("check the path, or set {}", self.env),
                    )
                })?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(err(
                    &key,
                    format!("the secret file can be read by others (mode {:o})", mode & 0o777),
                    format!("chmod 600 {key}"),
                ));
            }
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(
                &key,
                format!("cannot read the secret file: {e}"),
                format!("check the path, or set {}", self.env),
            )
        })?;
        Ok(Some(Secret::new(text.trim().to_owned())))
    }
}

/// A configured person's chat identities and SSH keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub slack_id: Option<String>,
    pub discord_id: Option<String>,
    pub ssh_keys: Vec<String>,
}

/// Validated configuration. Build with [`load`] (or [`from_toml_str`] in tests).
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub gateway: GatewaySettings,
    pub keys: KeySettings,
    pub slack: SlackSettings,
    pub discord: DiscordSettings,
    pub review: ReviewSettings,
    /// Where recordings are kept (`[recordings]`).
    pub recordings: RecordingsSettings,
    pub policy: Policy,
    pub identities: BTreeMap<PrincipalName, Identity>,
    /// SHA-256 of an API token -> whose token it is.
    pub tokens: Vec<([u8; 32], PrincipalName)>,
    /// The file it came from, and the SHA-256 of its bytes (for the `config_loaded` event).
    pub source: Option<(PathBuf, [u8; 32])>,
}

/// Flags that override config keys (the last layer).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub gateway_listen: Option<String>,
    pub health_listen: Option<String>,
}

/// Loads the config: defaults, then `file` (if any), then `BREAKGLASS__*` env, then `flags`.
///
/// # Errors
/// A [`ConfigError`] naming the key, the problem and the fix.
pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<Config, ConfigError> {
    let mut fig = Figment::from(Serialized::defaults(RawConfig::default()));
    let mut source = None;
    if let Some(path) = file {
        let bytes = std::fs::read(path).map_err(|e| {
            err(
                path.display().to_string(),
                format!("cannot read the config file: {e}"),
                format!("check the path, or copy {EXAMPLE_PATH} there"),
            )
        })?;
        source = Some((path.to_owned(), Sha256::digest(&bytes).into()));
        fig = fig.merge(Toml::file_exact(path));
    }
    fig = fig.merge(Env::prefixed(ENV_PREFIX).split("__"));
    fig = merge_flags(fig, flags);
    let raw: RawConfig = fig.extract().map_err(|e| figment_error(&e, file))?;
    let mut cfg = validate(&raw)?;
    cfg.source = source;
    Ok(cfg)
}

/// Parses and validates TOML text with no environment or flags (tests, `config check`).
///
/// # Errors
/// As [`load`].
pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = Figment::from(Serialized::defaults(RawConfig::default()))
        .merge(Toml::string(text))
        .extract()
        .map_err(|e| figment_error(&e, None))?;
    let mut cfg = validate(&raw)?;
    cfg.source = Some((PathBuf::from("(inline)"), Sha256::digest(text.as_bytes()).into()));
    Ok(cfg)
}

fn merge_flags(mut fig: Figment, flags: &Overrides) -> Figment {
    if let Some(v) = &flags.listen {
        fig = fig.merge(Serialized::default("server.listen", v));
    }
    if let Some(v) = &flags.data_dir {
        fig = fig.merge(Serialized::default("server.data_dir", v));
    }
    if let Some(v) = &flags.database_url {
        fig = fig.merge(Serialized::default("server.database_url", v));
    }
    if let Some(v) = &flags.gateway_listen {
        fig = fig.merge(Serialized::default("gateway.listen", v));
    }
    if let Some(v) = &flags.health_listen {
        fig = fig.merge(Serialized::default("gateway.health_listen", v));
    }
    fig
}

/// A figment error as a [`ConfigError`]: where the value came from (the config file by the
/// path as given, or the environment variable), what is wrong with no nested quoting, and one
/// piece of advice (for an unknown key, the nearest valid one when it is a near miss).
fn figment_error(e: &figment::Error, file: Option<&Path>) -> ConfigError {
    use figment::error::Kind;
    let key = if e.path.is_empty() { "(top level)".to_owned() } else { e.path.join(".") };
    let source = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
        Some(figment::Source::File(p)) => {
            format!(" in {}", file.map_or_else(|| p.display(), Path::display))
        }
        _ if e.metadata.as_ref().is_some_and(|m| m.name.contains("environment")) => {
            format!(" in the environment variable {ENV_PREFIX}{}", e.path.join("__").to_uppercase())
        }
        // Defaults, flags, inline text: the key says it all.
        _ => String::new(),
    };
    let listed = |names: &[&str]| names.join(", ");
    let (problem, fix) = match &e.kind {
        Kind::UnknownField(found, expected) => (
            "unknown key".to_owned(),
            match near_miss(found, expected) {
                Some(m) => format!("did you mean `{m}`?"),
                None if expected.is_empty() => {
                    format!("remove it ({EXAMPLE_PATH} lists every valid key)")
                }
                None => format!("remove it; valid keys here: {}", listed(expected)),
            },
        ),
        Kind::UnknownVariant(found, expected) => (
            format!("unknown value {found:?}"),
            match near_miss(found, expected) {
                Some(m) => format!("did you mean `{m}`?"),
                None => format!("use one of: {}", listed(expected)),
            },
        ),
        other => (other.to_string(), format!("see {EXAMPLE_PATH} for the expected form")),
    };
    err(key, format!("{problem}{source}"), fix)
}

/// The valid name `found` is most likely a typo of: within two edits (one for short names),
/// closest first.
fn near_miss<'a>(found: &str, valid: &[&'a str]) -> Option<&'a str> {
    let allowed = if found.chars().count() <= 4 { 1 } else { 2 };
    valid
        .iter()
        .map(|v| (strsim::damerau_levenshtein(&found.to_lowercase(), v), *v))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

fn http_limits(r: &RawServer) -> Result<HttpLimits, ConfigError> {
    let positive = |key: &str, v: &str| {
        humantime::parse_duration(v).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
            err(
                format!("server.{key}"),
                format!("`{v}` is not a positive duration"),
                "write it like \"10s\"",
            )
        })
    };
    if r.max_connections == 0 {
        return Err(err(
            "server.max_connections",
            "0 would refuse every connection",
            "set a positive number (default 1024)",
        ));
    }
    if r.requests_per_second_per_source > 0 && r.request_burst_per_source == 0 {
        return Err(err(
            "server.request_burst_per_source",
            "0 with a rate set would refuse every request",
            "set a positive burst (default 100), or requests_per_second_per_source = 0 for no limit",
        ));
    }
    Ok(HttpLimits {
        header_timeout: positive("header_timeout", &r.header_timeout)?,
        idle_timeout: positive("idle_timeout", &r.idle_timeout)?,
        max_connections: r.max_connections,
        max_connections_per_source: r.max_connections_per_source,
        requests_per_second_per_source: r.requests_per_second_per_source,
        request_burst_per_source: r.request_burst_per_source,
    })
}

fn validate(raw: &RawConfig) -> Result<Config, ConfigError> {
    let server = ServerSettings {
        listen: parse_addr("server.listen", &raw.server.listen)?,
        public_url: raw
            .server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", raw.server.listen))
            .trim_end_matches('/')
            .to_owned(),
        database_url: raw.server.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}", raw.server.data_dir.join("breakglass.db").display())
        }),
        data_dir: raw.server.data_dir.clone(),
        http: http_limits(&raw.server)?,
    };
    let gw_listen = parse_addr("gateway.listen", &raw.gateway.listen)?;
    let data = &raw.server.data_dir;
    let g = &raw.gateway;
    let connect_timeout = humantime::parse_duration(&g.connect_timeout).map_err(|_| {
        err(
            "gateway.connect_timeout",
            format!("`{}` is not a duration", g.connect_timeout),
            "write it like \"10s\"",
        )
    })?;
    let login_grace_time =
        positive_duration("gateway.login_grace_time", &g.login_grace_time, "30s")?;
    let revocation_poll =
        positive_duration("gateway.revocation_poll", &g.revocation_poll, "250ms")?;
    let health_listen = match g.health_listen.trim() {
        "off" => None,
        v => Some(parse_addr("gateway.health_listen", v).map_err(|mut e| {
            e.fix = format!("{} (or \"off\")", e.fix);
            e
        })?),
    };
    for (i, v) in g.env_allowlist.iter().enumerate() {
        let name = v.strip_suffix('*').unwrap_or(v);
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err(
                format!("gateway.env_allowlist[{i}]"),
                format!("`{v}` is not a variable name or prefix*"),
                "write names like LANG or LC_*",
            ));
        }
    }
    for (key, v) in [
        ("gateway.max_channels_per_session", g.max_channels_per_session),
        ("gateway.max_startups", g.max_startups),
        ("gateway.max_startups_per_source", g.max_startups_per_source),
    ] {
        if v == 0 || v > 100_000 {
            return Err(err(
                key,
                format!("`{v}` is out of range"),
                "use a number from 1 to 100000",
            ));
        }
    }
    let gateway = GatewaySettings {
        listen: gw_listen,
        public_host: g.public_host.clone(),
        public_port: g.public_port.unwrap_or(gw_listen.port()),
        host_key_file: g
            .host_key_file
            .clone()
            .unwrap_or_else(|| data.join("keys").join("gateway_host_ed25519")),
        known_hosts_file: g.known_hosts_file.clone().unwrap_or_else(|| data.join("known_hosts")),
        recordings_dir: g.recordings_dir.clone().unwrap_or_else(|| data.join("recordings")),
        connect_timeout,
        login_grace_time,
        revocation_poll,
        env_allowlist: g.env_allowlist.clone(),
        record_input: g.record_input,
        max_channels_per_session: g.max_channels_per_session,
        max_startups: g.max_startups,
        max_startups_per_source: g.max_startups_per_source,
        health_listen,
    };

    // Principals.
    let mut principals = Vec::new();
    let mut identities = BTreeMap::new();
    let mut tokens = Vec::new();
    let mut chat_ids: BTreeMap<String, String> = BTreeMap::new();
    let mut all_groups: BTreeMap<GroupName, usize> = BTreeMap::new();
    for (n, u) in &raw.users {
        let key = format!("users.{n}");
        let name =
            PrincipalName::parse(n).map_err(|e| err(&key, e.to_string(), "rename the user"))?;
        let mut groups = BTreeSet::new();
        for g in &u.groups {
            let g = GroupName::parse(g)
                .map_err(|e| err(format!("{key}.groups"), e.to_string(), "fix the group name"))?;
            *all_groups.entry(g.clone()).or_default() += 1;
            groups.insert(g);
        }
        for (platform, id) in [("slack_id", &u.slack_id), ("discord_id", &u.discord_id)] {
            if let Some(id) = id {
                let k = format!("{platform}:{id}");
                if let Some(other) = chat_ids.insert(k, n.clone()) {
                    return Err(err(
                        format!("{key}.{platform}"),
                        format!("`{id}` is also the {platform} of user `{other}`"),
                        "each chat identity maps to exactly one user",
                    ));
                }
            }
        }
        check_ssh_keys(&format!("{key}.ssh_keys"), &u.ssh_keys)?;
        if let Some(h) = &u.api_token_sha256 {
            tokens.push((parse_sha256(&format!("{key}.api_token_sha256"), h)?, name.clone()));
        }
        identities.insert(
            name.clone(),
            Identity {
                slack_id: u.slack_id.clone(),
                discord_id: u.discord_id.clone(),
                ssh_keys: u.ssh_keys.clone(),
            },
        );
        principals.push(Principal { name, kind: PrincipalKind::Human { groups } });
    }

    // Scopes.
    let mut scopes = Vec::new();
    for (n, s) in &raw.scopes {
        scopes.push(validate_scope(n, s, &all_groups)?);
    }
    let scope_names: BTreeSet<&ScopeName> = scopes.iter().map(|s: &ScopePolicy| &s.name).collect();

    for (n, s) in &raw.service_accounts {
        let key = format!("service_accounts.{n}");
        let name = PrincipalName::parse(n).map_err(|e| err(&key, e.to_string(), "rename it"))?;
        if raw.users.contains_key(n) {
            return Err(err(
                &key,
                format!("`{n}` is also a user"),
                "names are unique across users and service accounts",
            ));
        }
        let mut allowed = BTreeSet::new();
        for sc in &s.scopes {
            let sc = ScopeName::parse(sc)
                .map_err(|e| err(format!("{key}.scopes"), e.to_string(), "fix the scope name"))?;
            if !scope_names.contains(&sc) {
                return Err(err(
                    format!("{key}.scopes"),
                    format!("scope `{sc}` does not exist"),
                    "name a scope from [scopes]",
                ));
            }
            allowed.insert(sc);
        }
        check_ssh_keys(&format!("{key}.ssh_keys"), &s.ssh_keys)?;
        tokens.push((parse_sha256(&format!("{key}.token_sha256"), &s.token_sha256)?, name.clone()));
        identities.insert(
            name.clone(),
            Identity { slack_id: None, discord_id: None, ssh_keys: s.ssh_keys.clone() },
        );
        principals.push(Principal { name, kind: PrincipalKind::Service { scopes: allowed } });
    }
    let mut seen_tokens = BTreeSet::new();
    for (h, who) in &tokens {
        if !seen_tokens.insert(*h) {
            return Err(err(
                format!("token of `{who}`"),
                "the same token hash is configured twice",
                "give every principal its own token (`breakglass token`)",
            ));
        }
    }

    // Keys.
    let mut pinned_bot_keys = Vec::new();
    for (i, k) in raw.keys.pinned_bot_keys.iter().enumerate() {
        pinned_bot_keys.push(parse_pin(k, &format!("keys.pinned_bot_keys[{i}]"))?);
    }
    let mut pinned_recording_keys = Vec::new();
    for (i, k) in raw.keys.pinned_recording_keys.iter().enumerate() {
        pinned_recording_keys.push(parse_pin(k, &format!("keys.pinned_recording_keys[{i}]"))?);
    }
    let mut retired_gateway_ca_keys = Vec::new();
    for (i, k) in raw.keys.retired_gateway_ca_keys.iter().enumerate() {
        retired_gateway_ca_keys.push(parse_pin(k, &format!("keys.retired_gateway_ca_keys[{i}]"))?);
    }
    let mut pinned_approver_keys = Vec::new();
    for (who, ks) in &raw.keys.pinned_approver_keys {
        let key = format!("keys.pinned_approver_keys.{who}");
        let name =
            PrincipalName::parse(who).map_err(|e| err(&key, e.to_string(), "use a user's name"))?;
        if !raw.users.contains_key(who) {
            return Err(err(
                &key,
                format!("`{who}` is not a user"),
                "pin keys for users listed under [users]",
            ));
        }
        for k in ks {
            pinned_approver_keys.push((name.clone(), parse_pin(k, &key)?));
        }
    }

    let policy = Policy::new(principals, scopes);
    // Offline-signature scopes need enough approvers with pinned keys to ever reach quorum.
    for s in policy.scopes().filter(|s| s.require_offline_signature) {
        let with_keys: BTreeSet<&PrincipalName> = pinned_approver_keys
            .iter()
            .map(|(who, _)| who)
            .filter(|who| policy.is_approver(who, s))
            .collect();
        if with_keys.len() < usize::try_from(s.quorum).unwrap_or(usize::MAX) {
            return Err(err(
                format!("scopes.{}.require_offline_signature", s.name),
                format!(
                    "quorum {} needs that many approvers with a pinned personal key, and {} have one",
                    s.quorum,
                    with_keys.len()
                ),
                "pin approvers' keys under [keys.pinned_approver_keys] or lower the quorum",
            ));
        }
    }
    for s in policy.scopes() {
        let eligible = policy.principals().filter(|p| policy.is_approver(&p.name, s)).count();
        if eligible < usize::try_from(s.quorum).unwrap_or(usize::MAX) {
            return Err(err(
                format!("scopes.{}.quorum", s.name),
                format!("quorum {} but only {eligible} users are in its approver groups", s.quorum),
                "add approvers to those groups or lower the quorum",
            ));
        }
    }

    if !raw.slack.api_url.starts_with("http://") && !raw.slack.api_url.starts_with("https://") {
        return Err(err(
            "slack.api_url",
            format!("`{}` is not an http(s) URL", raw.slack.api_url),
            "leave it unset for Slack itself",
        ));
    }
    let slack = SlackSettings {
        api_url: raw.slack.api_url.trim_end_matches('/').to_owned(),
        bot_token: SecretSource {
            env: "BREAKGLASS_SLACK_BOT_TOKEN",
            file: raw.slack.bot_token_file.clone(),
        },
        signing_secret: SecretSource {
            env: "BREAKGLASS_SLACK_SIGNING_SECRET",
            file: raw.slack.signing_secret_file.clone(),
        },
        socket_mode: raw.slack.socket_mode,
        app_token: SecretSource {
            env: "BREAKGLASS_SLACK_APP_TOKEN",
            file: raw.slack.app_token_file.clone(),
        },
    };

    let d = &raw.discord;
    if let Some(k) = &d.public_key
        && (k.len() != 64 || !k.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(err(
            "discord.public_key",
            "not 64 hex digits",
            "paste the application's public key from the Discord developer portal",
        ));
    }
    if d.public_key.is_some() && d.application_id.is_none() {
        return Err(err(
            "discord.application_id",
            "missing while discord.public_key is set",
            "paste the application id from the Discord developer portal",
        ));
    }
    let discord = DiscordSettings {
        api_base: d.api_base.trim_end_matches('/').to_owned(),
        application_id: d.application_id,
        public_key: d.public_key.clone(),
        bot_token: SecretSource {
            env: "BREAKGLASS_DISCORD_BOT_TOKEN",
            file: d.bot_token_file.clone(),
        },
    };

    let r = &raw.review;
    let ttl = |key: &str, v: &str| {
        humantime::parse_duration(v).map_err(|_| {
            err(
                format!("review.{key}"),
                format!("`{v}` is not a duration"),
                "write it like \"10m\" or \"8h\"",
            )
        })
    };
    let mut reviewer_groups = BTreeSet::new();
    for g in &r.reviewer_groups {
        let g = GroupName::parse(g)
            .map_err(|e| err("review.reviewer_groups", e.to_string(), "fix the group name"))?;
        if !all_groups.contains_key(&g) {
            return Err(err(
                "review.reviewer_groups",
                format!("group `{g}` has no members"),
                "add the group to some user's groups, or fix its spelling",
            ));
        }
        reviewer_groups.insert(g);
    }
    let review = ReviewSettings {
        reviewer_groups,
        link_ttl: ttl("link_ttl", &r.link_ttl)?,
        session_ttl: ttl("session_ttl", &r.session_ttl)?,
    };

    let recordings = validate_recordings(&raw.recordings, data)?;
    Ok(Config {
        server,
        gateway,
        recordings,
        slack,
        discord,
        review,
        keys: KeySettings {
            approval_signing_key_file: raw.keys.approval_signing_key_file.clone(),
            gateway_ca_key_file: raw.keys.gateway_ca_key_file.clone(),
            recording_signing_key_file: raw.keys.recording_signing_key_file.clone(),
            pinned_bot_keys,
            pinned_recording_keys,
            pinned_approver_keys,
            retired_gateway_ca_keys,
        },
        policy,
        identities,
        tokens,
        source: None,
    })
}

fn validate_scope(
    n: &str,
    s: &RawScope,
    groups: &BTreeMap<GroupName, usize>,
) -> Result<ScopePolicy, ConfigError> {
    let key = format!("scopes.{n}");
    let name = ScopeName::parse(n).map_err(|e| err(&key, e.to_string(), "rename the scope"))?;
    if s.hosts.is_empty() {
        return Err(err(
            format!("{key}.hosts"),
            "a scope needs at least one host",
            "add hosts = { db-1 = \"10.0.0.11:22\" }",
        ));
    }
    let mut hosts = BTreeMap::new();
    for (h, addr) in &s.hosts {
        let hk = format!("{key}.hosts.{h}");
        let host = HostName::parse(h).map_err(|e| err(&hk, e.to_string(), "rename the host"))?;
        check_host_port(&hk, addr)?;
        hosts.insert(host, addr.clone());
    }
    if s.logins.is_empty() {
        return Err(err(
            format!("{key}.logins"),
            "a scope needs at least one login",
            "add logins = [\"root\"]",
        ));
    }
    let logins = s
        .logins
        .iter()
        .map(|l| {
            Login::parse(l)
                .map_err(|e| err(format!("{key}.logins"), e.to_string(), "fix the login"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let duration = |field: &str, v: &Option<String>, default: &str| {
        GrantDuration::parse(v.as_deref().unwrap_or(default)).map_err(|e| {
            err(format!("{key}.{field}"), e.to_string(), "write it like \"30m\" or \"1h\"")
        })
    };
    let max_duration = duration("max_duration", &s.max_duration, "1h")?;
    let default_duration = match &s.default_duration {
        Some(_) => duration("default_duration", &s.default_duration, "30m")?,
        None => {
            max_duration.min(GrantDuration::parse("30m").map_err(|e| err(&key, e.to_string(), ""))?)
        }
    };
    if default_duration > max_duration {
        return Err(err(
            format!("{key}.default_duration"),
            format!("{default_duration} is longer than max_duration {max_duration}"),
            "lower default_duration or raise max_duration",
        ));
    }
    let approval_timeout = duration("approval_timeout", &s.approval_timeout, "15m")?;
    let group_set = |field: &str, list: &[String]| -> Result<BTreeSet<GroupName>, ConfigError> {
        let mut out = BTreeSet::new();
        for g in list {
            let g = GroupName::parse(g)
                .map_err(|e| err(format!("{key}.{field}"), e.to_string(), "fix the group name"))?;
            if !groups.contains_key(&g) {
                return Err(err(
                    format!("{key}.{field}"),
                    format!("group `{g}` has no members"),
                    "add the group to some user's groups, or fix its spelling",
                ));
            }
            out.insert(g);
        }
        Ok(out)
    };
    let requester_groups = group_set("requester_groups", &s.requester_groups)?;
    let approver_groups = group_set("approver_groups", &s.approver_groups)?;
    if approver_groups.is_empty() {
        return Err(err(
            format!("{key}.approver_groups"),
            "a scope needs at least one approver group",
            "add approver_groups = [\"sre-leads\"]",
        ));
    }
    let quorum = s.quorum.unwrap_or(1);
    if quorum == 0 {
        return Err(err(
            format!("{key}.quorum"),
            "quorum 0 would grant access with no approval",
            "set quorum = 1 or more",
        ));
    }
    Ok(ScopePolicy {
        name,
        hosts,
        logins,
        max_duration,
        default_duration,
        requester_groups,
        approver_groups,
        quorum,
        channels: s.channels.iter().cloned().collect(),
        require_offline_signature: s.require_offline_signature,
        approval_timeout,
        forwarding: crate::core::Forwarding {
            port: s.allow_port_forwarding,
            agent: s.allow_agent_forwarding,
            x11: s.allow_x11_forwarding,
        },
    })
}

fn parse_addr(key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse().map_err(|_| {
        err(key, format!("`{v}` is not an address:port"), "write it like 127.0.0.1:8080")
    })
}

fn check_host_port(key: &str, v: &str) -> Result<(), ConfigError> {
    let bad = || {
        err(
            key,
            format!("`{v}` is not host:port"),
            "write it like 10.0.0.11:22 or db-1.internal:22",
        )
    };
    let (h, p) = v.rsplit_once(':').ok_or_else(bad)?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    if h.is_empty() || p.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    if !h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':')) {
        return Err(bad());
    }
    Ok(())
}

fn check_ssh_keys(key: &str, keys: &[String]) -> Result<(), ConfigError> {
    for (i, k) in keys.iter().enumerate() {
        let mut parts = k.split_whitespace();
        let ok = matches!((parts.next(), parts.next()), (Some(t), Some(b))
            if (t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-"))
                && ssh_key_blob_is_plausible(t, b));
        if !ok {
            return Err(err(
                format!("{key}[{i}]"),
                "not an OpenSSH public key line",
                "paste the content of ~/.ssh/id_ed25519.pub",
            ));
        }
    }
    Ok(())
}

/// Whether `b64` decodes to an OpenSSH public key blob of type `kind`: the blob starts with
/// its own type name, and an Ed25519 key has exactly 32 bytes of key. The gateway parses the
/// key fully at start; this keeps `config check` from passing a line `up` would refuse
/// (a made-up or cut base64 body) without a dependency on the SSH stack in the core.
fn ssh_key_blob_is_plausible(kind: &str, b64: &str) -> bool {
    use base64::Engine as _;
    let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(b64) else { return false };
    let field = |at: usize| -> Option<(&[u8], usize)> {
        let len = u32::from_be_bytes(blob.get(at..at + 4)?.try_into().ok()?) as usize;
        let end = at.checked_add(4)?.checked_add(len)?;
        Some((blob.get(at + 4..end)?, end))
    };
    let Some((name, next)) = field(0) else { return false };
    if name != kind.as_bytes() {
        return false;
    }
    match kind {
        "ssh-ed25519" => field(next).is_some_and(|(key, end)| key.len() == 32 && end == blob.len()),
        _ => field(next).is_some(),
    }
}

/// A duration above zero (`30s`, `250ms`), or an error at `key` showing `example`.
fn positive_duration(
    key: &str,
    v: &str,
    example: &str,
) -> Result<std::time::Duration, ConfigError> {
    humantime::parse_duration(v).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
        err(
            key,
            format!("`{v}` is not a positive duration"),
            format!("write it like \"{example}\""),
        )
    })
}

fn parse_sha256(key: &str, v: &str) -> Result<[u8; 32], ConfigError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(v.trim(), &mut out).map_err(|_| {
        err(
            key,
            "not a SHA-256 hex digest (64 hex digits)",
            "paste the hash `breakglass token` printed",
        )
    })?;
    Ok(out)
}

impl Config {
    /// Which principal a chat user id belongs to.
    pub fn principal_by_chat_id(
        &self,
        slack: Option<&str>,
        discord: Option<&str>,
    ) -> Option<&PrincipalName> {
        self.identities.iter().find_map(|(name, id)| {
            let hit = (slack.is_some() && id.slack_id.as_deref() == slack)
                || (discord.is_some() && id.discord_id.as_deref() == discord);
            hit.then_some(name)
        })
    }

    /// True when `who` is a person in one of the reviewer groups.
    pub fn is_reviewer(&self, who: &PrincipalName) -> bool {
        matches!(self.policy.principal(who), Ok(Principal { kind: PrincipalKind::Human { groups }, .. })
            if !groups.is_disjoint(&self.review.reviewer_groups))
    }

    /// True when the config has nothing to grant (no scopes or no users): `breakglass up`
    /// says so loudly at start.
    pub fn is_empty(&self) -> bool {
        self.policy.scopes().next().is_none() || self.identities.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// `[recordings]`: where recordings are kept (a local folder, or an S3-compatible bucket).

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRecordings {
    pub store: String,
    pub bucket: Option<String>,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub allow_http: bool,
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key_file: Option<PathBuf>,
    pub session_token_file: Option<PathBuf>,
    pub spool_dir: Option<PathBuf>,
    pub spool_max: String,
    pub upload_every: String,
    pub upload_timeout: String,
}

impl Default for RawRecordings {
    fn default() -> Self {
        Self {
            store: "local".into(),
            bucket: None,
            prefix: "recordings".into(),
            endpoint: None,
            region: "us-east-1".into(),
            allow_http: false,
            access_key_id_file: None,
            secret_access_key_file: None,
            session_token_file: None,
            spool_dir: None,
            spool_max: "256MiB".into(),
            upload_every: "2s".into(),
            upload_timeout: "10s".into(),
        }
    }
}

/// Where recordings are kept.
#[derive(Debug, Clone)]
pub struct RecordingsSettings {
    pub store: RecordingStoreKind,
}

/// Which recording store (`recordings.store`).
#[derive(Debug, Clone)]
pub enum RecordingStoreKind {
    /// Files in `gateway.recordings_dir`.
    Local,
    /// Objects in an S3-compatible bucket, spooled locally while written.
    S3(Box<S3Settings>),
}

/// An S3-compatible bucket for recordings. Credentials are read when the store opens, from
/// the `AWS_*` environment variables or the named files (see [`SecretSource`]).
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub allow_http: bool,
    pub access_key_id: SecretSource,
    pub secret_access_key: SecretSource,
    pub session_token: SecretSource,
    pub spool_dir: PathBuf,
    pub spool_max: u64,
    pub upload_every: std::time::Duration,
    pub upload_timeout: std::time::Duration,
}

fn validate_recordings(r: &RawRecordings, data: &Path) -> Result<RecordingsSettings, ConfigError> {
    let store = match r.store.as_str() {
        "local" => RecordingStoreKind::Local,
        "s3" => RecordingStoreKind::S3(Box::new(validate_s3(r, data)?)),
        other => {
            return Err(err(
                "recordings.store",
                format!("`{other}` is not a recording store"),
                "write \"local\" (the recordings folder) or \"s3\" (an S3-compatible bucket)",
            ));
        }
    };
    Ok(RecordingsSettings { store })
}

fn validate_s3(r: &RawRecordings, data: &Path) -> Result<S3Settings, ConfigError> {
    let bucket = r.bucket.clone().unwrap_or_default();
    if bucket.is_empty()
        || !bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err(err(
            "recordings.bucket",
            format!("`{bucket}` is not a bucket name"),
            "name the bucket (lowercase letters, digits, `-` and `.`), e.g. bucket = \"breakglass-recordings\"",
        ));
    }
    if let Some(e) = &r.endpoint {
        let http = e.starts_with("http://");
        if !http && !e.starts_with("https://") {
            return Err(err(
                "recordings.endpoint",
                format!("`{e}` is not an http(s) URL"),
                "write it like \"https://s3.eu-west-1.amazonaws.com\"",
            ));
        }
        if http && !r.allow_http {
            return Err(err(
                "recordings.endpoint",
                "a plain http:// endpoint sends recordings unencrypted",
                "use https://, or set recordings.allow_http = true for a local test server",
            ));
        }
    }
    let upload_every = positive_duration("recordings.upload_every", &r.upload_every, "2s")?;
    let upload_timeout = positive_duration("recordings.upload_timeout", &r.upload_timeout, "10s")?;
    if upload_timeout <= upload_every {
        return Err(err(
            "recordings.upload_timeout",
            format!(
                "`{}` is not longer than recordings.upload_every (`{}`): every upload would time out",
                r.upload_timeout, r.upload_every
            ),
            "make it several times upload_every, e.g. 10s for 2s",
        ));
    }
    let spool_max = parse_size(&r.spool_max).filter(|n| *n >= 1024 * 1024).ok_or_else(|| {
        err(
            "recordings.spool_max",
            format!("`{}` is not a size of at least 1MiB", r.spool_max),
            "write it like \"256MiB\" or \"1GiB\"",
        )
    })?;
    let file = |f: &Option<PathBuf>| f.clone();
    Ok(S3Settings {
        bucket,
        prefix: r.prefix.trim_matches('/').to_owned(),
        endpoint: r.endpoint.clone(),
        region: r.region.clone(),
        allow_http: r.allow_http,
        access_key_id: SecretSource { env: "AWS_ACCESS_KEY_ID", file: file(&r.access_key_id_file) },
        secret_access_key: SecretSource {
            env: "AWS_SECRET_ACCESS_KEY",
            file: file(&r.secret_access_key_file),
        },
        session_token: SecretSource { env: "AWS_SESSION_TOKEN", file: file(&r.session_token_file) },
        spool_dir: r.spool_dir.clone().unwrap_or_else(|| data.join("recording-spool")),
        spool_max,
        upload_every,
        upload_timeout,
    })
}

/// `256MiB`, `1GiB`, `500KiB`, `1000000` (bytes).
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [users.alice]
        groups = ["oncall"]
        api_token_sha256 = "0000000000000000000000000000000000000000000000000000000000000001"
        [users.bob]
        groups = ["dba"]
        [scopes.prod-db]
        hosts = { db-1 = "10.0.0.11:22" }
        logins = ["postgres"]
        requester_groups = ["oncall"]
        approver_groups = ["dba"]
    "#;

    #[test]
    fn the_database_password_never_prints() -> Result<(), ConfigError> {
        let text = format!(
            "[server]\ndatabase_url = \"postgres://bg:s3cret-pw@db.internal/bg\"\n{MINIMAL}"
        );
        let c = from_toml_str(&text)?;
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("postgres://bg:***@db.internal/bg"), "{shown}");
        let raw = RawServer {
            database_url: Some("postgres://bg:s3cret-pw@db.internal/bg".into()),
            ..RawServer::default()
        };
        assert!(!format!("{raw:?}").contains("s3cret-pw"));
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        for (url, shown) in [
            ("postgres://bg:p@ss:w@db/bg", "postgres://bg:***@db/bg"),
            (
                "postgresql://bg@db/bg?password=s3cret&sslmode=require",
                "postgresql://bg@db/bg?password=***&sslmode=require",
            ),
            ("postgres://db/bg?user=bg&PassWord=s3cret", "postgres://db/bg?user=bg&PassWord=***"),
            ("postgres://db/bg?sslpassword=s3cret", "postgres://db/bg?sslpassword=***"),
            ("host=db user=bg password=s3cret dbname=bg", "host=db user=bg password=*** dbname=bg"),
            ("postgres://db/bg?x=a@b", "postgres://db/bg?x=a@b"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        Ok(())
    }

    #[track_caller]
    fn refused(text: &str, key: &str, problem: &str) {
        match from_toml_str(text) {
            Ok(_) => panic!("config should be refused at {key}"),
            Err(e) => {
                assert_eq!(e.key, key, "{e}");
                assert!(e.problem.contains(problem), "{e}");
                assert!(!e.fix.is_empty(), "every error says how to fix it: {e}");
            }
        }
    }

    #[test]
    fn forwarding_is_off_unless_the_scope_allows_it() -> Result<(), ConfigError> {
        let off = from_toml_str(MINIMAL)?;
        let name = ScopeName::parse("prod-db").map_err(|e| err("scope", e.to_string(), ""))?;
        let scope = off.policy.scope(&name).map_err(|e| err("scope", e.to_string(), ""))?;
        assert_eq!(scope.forwarding, crate::core::Forwarding::default());
        let on = from_toml_str(&format!(
            "{MINIMAL}\nallow_port_forwarding = true\nallow_agent_forwarding = true\nallow_x11_forwarding = true"
        ))?;
        let scope = on.policy.scope(&name).map_err(|e| err("scope", e.to_string(), ""))?;
        assert_eq!(
            scope.forwarding,
            crate::core::Forwarding { port: true, agent: true, x11: true }
        );
        Ok(())
    }

    #[test]
    fn minimal_config_loads_with_defaults() -> Result<(), ConfigError> {
        let c = from_toml_str(MINIMAL)?;
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.gateway.public_port, 2222);
        assert_eq!(c.server.database_url, "sqlite://./data/breakglass.db");
        let s = c.policy.scopes().next().expect("one scope");
        assert_eq!((s.quorum, s.max_duration.secs(), s.default_duration.secs()), (1, 3600, 1800));
        assert_eq!(c.tokens.len(), 1);
        Ok(())
    }

    #[test]
    fn recordings_are_local_by_default_and_an_s3_store_is_checked_key_by_key()
    -> Result<(), ConfigError> {
        let c = from_toml_str(MINIMAL)?;
        assert!(matches!(c.recordings.store, RecordingStoreKind::Local));
        let s3 = |extra: &str| format!("{MINIMAL}\n[recordings]\nstore = \"s3\"\n{extra}");
        let c = from_toml_str(&s3("bucket = \"bg-rec\"\nprefix = \"/a/b/\""))?;
        let RecordingStoreKind::S3(b) = &c.recordings.store else { panic!("an s3 store") };
        assert_eq!(
            (b.bucket.as_str(), b.prefix.as_str(), b.spool_max),
            ("bg-rec", "a/b", 256 << 20)
        );
        assert_eq!((b.upload_every.as_secs(), b.upload_timeout.as_secs()), (2, 10));
        assert_eq!(b.access_key_id.env, "AWS_ACCESS_KEY_ID");
        assert_eq!(b.spool_dir, PathBuf::from("./data/recording-spool"));
        refused(
            &format!("{MINIMAL}\n[recordings]\nstore = \"ftp\""),
            "recordings.store",
            "not a recording store",
        );
        refused(&s3(""), "recordings.bucket", "not a bucket name");
        refused(&s3("bucket = \"Bad_Name\""), "recordings.bucket", "not a bucket name");
        refused(
            &s3("bucket = \"b\"\nendpoint = \"http://127.0.0.1:9000\""),
            "recordings.endpoint",
            "unencrypted",
        );
        refused(&s3("bucket = \"b\"\nendpoint = \"minio:9000\""), "recordings.endpoint", "http(s)");
        refused(
            &s3("bucket = \"b\"\nupload_every = \"10s\"\nupload_timeout = \"5s\""),
            "recordings.upload_timeout",
            "not longer",
        );
        refused(
            &s3("bucket = \"b\"\nspool_max = \"10KiB\""),
            "recordings.spool_max",
            "at least 1MiB",
        );
        refused(
            &s3("bucket = \"b\"\nupload_every = \"0s\""),
            "recordings.upload_every",
            "positive",
        );
        Ok(())
    }

    #[test]
    fn unknown_keys_are_named() {
        refused(&format!("{MINIMAL}\n[server]\nlisen = \"x\""), "server.lisen", "unknown key");
        refused(
            &MINIMAL.replace("logins =", "quorm = 2\nlogins ="),
            "scopes.prod-db.quorm",
            "unknown key",
        );
        refused("secret_token = \"abc\"", "secret_token", "unknown key");
    }

    /// `config check` refuses an SSH key line the gateway would refuse at start.
    #[test]
    fn ssh_key_lines_are_checked_as_up_would_check_them() {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let blob = |name: &str, key: &[u8]| {
            let mut v = Vec::new();
            for part in [name.as_bytes(), key] {
                v.extend_from_slice(&u32::try_from(part.len()).expect("short").to_be_bytes());
                v.extend_from_slice(part);
            }
            v
        };
        let good = blob("ssh-ed25519", &[7; 32]);
        assert!(ssh_key_blob_is_plausible("ssh-ed25519", &b64(&good)));
        // Made-up or cut bodies, and a type that disagrees with the blob, are refused.
        assert!(!ssh_key_blob_is_plausible(
            "ssh-ed25519",
            "AAAAC3NzaC1lZDI1NTE5AAAAIFAKEKEYFAKEKEY"
        ));
        assert!(!ssh_key_blob_is_plausible("ssh-ed25519", &b64(&good[..40])));
        assert!(!ssh_key_blob_is_plausible("ssh-rsa", &b64(&good)));
        assert!(!ssh_key_blob_is_plausible("ssh-ed25519", &b64(&blob("ssh-ed25519", &[7; 31]))));
        assert!(!ssh_key_blob_is_plausible("ssh-ed25519", "not base64!"));
        let line = format!("ssh-ed25519 {} alice@laptop", b64(&good));
        assert!(check_ssh_keys("users.alice.ssh_keys", &[line]).is_ok());
        let fake =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAliceAliceAliceAliceAliceAliceAliceAlice alice"
                .to_owned();
        assert!(check_ssh_keys("users.alice.ssh_keys", &[fake]).is_err());
    }

    /// A near miss names the key meant; anything else names the valid keys; never nested
    /// backticks, and one piece of advice.
    #[test]
    fn unknown_keys_suggest_the_near_miss() {
        let near = from_toml_str(&MINIMAL.replace("logins =", "quorom = 2\nlogins ="))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(near.ends_with("unknown key; did you mean `quorum`?"), "{near}");
        let far = from_toml_str(&format!("{MINIMAL}\n[server]\nsomething_else = 1"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(far.contains("fix: remove it; valid keys here: listen, "), "{far}");
        for text in [&near, &far] {
            assert_eq!(text.matches("fix:").count() + text.matches("did you mean").count(), 1);
            assert!(!text.contains("``") && !text.contains("`one of"), "{text}");
        }
        assert_eq!(near_miss("lisen", &["listen", "public_url"]), Some("listen"));
        assert_eq!(near_miss("lst", &["listen"]), None);
        assert_eq!(near_miss("Quorum", &["quorum"]), Some("quorum"));
    }

    #[test]
    fn bad_values_name_their_key() {
        refused(
            &MINIMAL.replace("10.0.0.11:22", "10.0.0.11"),
            "scopes.prod-db.hosts.db-1",
            "host:port",
        );
        refused(
            &MINIMAL.replace("[\"postgres\"]", "[\"Post gres\"]"),
            "scopes.prod-db.logins",
            "login",
        );
        refused(
            &MINIMAL.replace("approver_groups = [\"dba\"]", "approver_groups = [\"dbas\"]"),
            "scopes.prod-db.approver_groups",
            "no members",
        );
        refused(
            &MINIMAL.replace("logins = [\"postgres\"]", "logins = [\"postgres\"]\nquorum = 0"),
            "scopes.prod-db.quorum",
            "quorum 0",
        );
        refused(
            &MINIMAL.replace("logins = [\"postgres\"]", "logins = [\"postgres\"]\nquorum = 2"),
            "scopes.prod-db.quorum",
            "only 1 users",
        );
        refused(
            &MINIMAL.replace(
                "logins = [\"postgres\"]",
                "logins = [\"postgres\"]\nmax_duration = \"soon\"",
            ),
            "scopes.prod-db.max_duration",
            "not a duration",
        );
        refused(
            &MINIMAL.replace(
                "logins = [\"postgres\"]",
                "logins = [\"postgres\"]\nrequire_offline_signature = true",
            ),
            "scopes.prod-db.require_offline_signature",
            "pinned personal key",
        );
        refused(
            &format!("{MINIMAL}\n[keys]\npinned_bot_keys = [\"ssh-ed25519 AAAA\"]"),
            "keys.pinned_bot_keys[0]",
            "ed25519:",
        );
        refused(
            &MINIMAL.replace(
                "0000000000000000000000000000000000000000000000000000000000000001",
                "letmein",
            ),
            "users.alice.api_token_sha256",
            "SHA-256",
        );
    }

    const EXAMPLE: &str = include_str!("../../deploy/breakglass.example.toml");

    #[test]
    fn a_pinned_key_may_carry_a_window_and_a_misspelt_window_is_refused() -> Result<(), ConfigError>
    {
        const OLD: &str =
            "ed25519:4cea64eb67d3da18b87f87049c0d40b2d918b34c8d17d8a3eea7bd59d0629ea0";
        const NEW: &str =
            "ed25519:a9e6aad02db1393447552fcfa97bf85c24909ab3a5192f2fb4ae71a37d5efffe";
        let c = from_toml_str(&format!(
            "{MINIMAL}\n[keys]\npinned_bot_keys = [\"{NEW}\", {{ key = \"{OLD}\", not_after = \"2027-01-10T00:00:00Z\" }}]"
        ))?;
        let windows: Vec<Validity> = c.keys.pinned_bot_keys.iter().map(|p| p.validity).collect();
        let until = Timestamp::parse_rfc3339("2027-01-10T00:00:00Z").ok();
        assert_eq!(windows, [Validity::ALWAYS, Validity { not_before: None, not_after: until }]);
        let misspelt = format!(
            "{MINIMAL}\n[keys]\npinned_bot_keys = [{{ key = \"{OLD}\", not_afer = \"2027-01-10T00:00:00Z\" }}]"
        );
        assert!(from_toml_str(&misspelt).is_err(), "a misspelt not_after must not pin for ever");
        refused(
            &format!(
                "{MINIMAL}\n[keys]\npinned_bot_keys = [{{ key = \"{OLD}\", not_after = \"next week\" }}]"
            ),
            "keys.pinned_bot_keys[0].not_after",
            "RFC 3339",
        );
        Ok(())
    }

    #[test]
    fn the_example_config_loads() -> Result<(), ConfigError> {
        let c = from_toml_str(EXAMPLE)?;
        assert_eq!(c.policy.scopes().count(), 2);
        assert_eq!(c.keys.pinned_approver_keys.len(), 2);
        Ok(())
    }

    /// Every key the config accepts is documented in the example (as `key =` or `[section]`).
    #[test]
    fn the_example_documents_every_key() -> Result<(), serde_json::Error> {
        let sections = [
            ("server", serde_json::to_value(RawServer::default())?),
            ("gateway", serde_json::to_value(RawGateway::default())?),
            ("keys", serde_json::to_value(RawKeys::default())?),
            ("slack", serde_json::to_value(RawSlack::default())?),
            ("discord", serde_json::to_value(RawDiscord::default())?),
            ("review", serde_json::to_value(RawReview::default())?),
            ("users.*", serde_json::to_value(RawUser::default())?),
            ("service_accounts.*", serde_json::to_value(RawService::default())?),
            ("scopes.*", serde_json::to_value(RawScope::default())?),
        ];
        for (section, v) in sections {
            for key in
                v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default()
            {
                let documented = EXAMPLE.lines().any(|l| {
                    let l = l.trim_start_matches(['#', ' ']);
                    l.starts_with(&format!("{key} =")) || l.starts_with(&format!("[keys.{key}]"))
                });
                assert!(documented, "{section}.{key} is not documented in {EXAMPLE_PATH}");
            }
        }
        Ok(())
    }

    #[test]
    fn secrets_do_not_debug() {
        let s = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{s:?} {s}"), "*** ***");
    }
}
