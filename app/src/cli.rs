//! The `breakglass` command line: every subcommand, its `--help` text and examples, the
//! documented exit codes, and the printing of the client commands' answers. `main.rs` only
//! parses and calls [`run`]; what each subcommand does is in [`crate::commands`], and the
//! process modes are built by [`crate::compose`].
//!
//! Exit codes (also in README.md):
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | done (also when the reader of the output went away: `breakglass list \| head -1`) |
//! | 1 | failure: audit verification found a break, or an unexpected error |
//! | 2 | usage error or bad input (unknown flag, missing argument, malformed code, no token) |
//! | 3 | refused by the server (policy, state, authentication); the message says why |
//! | 4 | the server or database could not be reached |
//! | 5 | local problem: config file, key file, input file |

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bot::client::{Client, ClientError};
use bot::http::views::{ListQuery, NewRequestBody, RequestView};
use clap::{Args, Parser, Subcommand, ValueEnum};
use shared::config::{self, Overrides, Secret};
use shared::core::{RequestRef, Timestamp};

use crate::commands;
use crate::compose::Mode;

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_REFUSED: u8 = 3;
pub const EXIT_UNREACHABLE: u8 = 4;
pub const EXIT_LOCAL: u8 = 5;

#[derive(Debug, Parser)]
#[command(
    name = "breakglass",
    version,
    about = "Chat-ops break-glass access: short-lived, approved, recorded SSH sessions",
    long_about = "Chat-ops break-glass access: ask for minutes of access to one host, get it \
approved by a quorum of humans, use it once through the SSH gateway, and audit everything.\n\n\
Client commands talk to a running server (--server, default http://127.0.0.1:8080) with \
the API token in BREAKGLASS_TOKEN or --token-file.",
    after_help = "Examples:\n  breakglass up\n  breakglass request db-1 --as postgres --for 30m replica lag, need to kill a query\n  breakglass approve bg-7f3a2c\n  breakglass approve bg-7f3a2c --key ~/.breakglass/erin.key\n  breakglass audit verify --config /etc/breakglass/breakglass.toml\n\nExit codes: 0 done, 1 failure (e.g. audit break), 2 usage or bad input, 3 refused by the server, 4 server unreachable, 5 local file or config problem."
)]
pub struct Cli {
    #[command(flatten)]
    pub top: TopLevel,
    #[command(subcommand)]
    pub command: Command,
}

/// The client options also accepted before the subcommand (`breakglass --json list`), for
/// scripts written that way. Hidden: each client command shows them in its own help, and a
/// command that does not use them refuses them.
#[derive(Debug, Args)]
pub struct TopLevel {
    /// URL of the breakglass server.
    #[arg(long, hide = true, value_name = "URL")]
    pub server: Option<String>,
    /// File holding your API token.
    #[arg(long, hide = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of text.
    #[arg(long, hide = true)]
    pub json: bool,
}

/// Where the server is and who you are (every command that talks to a running server).
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    /// URL of the breakglass server (default: BREAKGLASS_SERVER, else http://127.0.0.1:8080).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// File holding your API token (default: the BREAKGLASS_TOKEN environment variable).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// `--json`, on the client commands that print an API answer.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct JsonArg {
    /// Print the API's JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The log format of the commands that run a service (`up`, `bot`, `gateway`).
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct LogArg {
    /// Log format on standard error: text, or json (one JSON object per line) [env:
    /// BREAKGLASS_LOG_FORMAT].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<bot::logging::LogFormat>,
}

/// The resolved client options: flags after the subcommand, then before it, then the
/// environment, then the defaults.
#[derive(Debug, Clone)]
pub struct Global {
    pub server: String,
    pub token_file: Option<PathBuf>,
    pub json: bool,
}

/// The server URL when neither `--server` nor `BREAKGLASS_SERVER` gives one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Config file (default: BREAKGLASS_CONFIG, else ./breakglass.toml if present).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole system in one process: the HTTP API, the chat endpoints, the SSH gateway
    /// and the reaper (on embedded defaults when there is no config file).
    #[command(
        after_help = "Examples:\n  breakglass up\n  breakglass up --config deploy/breakglass.example.toml --data-dir /var/lib/breakglass\n  breakglass up --listen 0.0.0.0:8080 --ssh-listen 0.0.0.0:2222 --log-format json\n\nWith no config file it still starts, says what to configure, and refuses every request."
    )]
    Up {
        #[command(flatten)]
        config: ConfigArg,
        /// Data directory: the SQLite database, generated keys and recordings (overrides
        /// server.data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// HTTP listen address (overrides server.listen).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// SSH gateway listen address (overrides gateway.listen).
        #[arg(long, value_name = "ADDR")]
        ssh_listen: Option<String>,
        #[command(flatten)]
        log: LogArg,
    },
    /// Run the bot alone: HTTP API, Slack and Discord endpoints, the reaper and the chat sync
    /// (no SSH gateway; run `breakglass gateway` where the hosts are).
    #[command(
        after_help = "Examples:\n  breakglass bot --config /etc/breakglass/breakglass.toml\n  breakglass bot --listen 0.0.0.0:8080"
    )]
    Bot {
        #[command(flatten)]
        config: ConfigArg,
        /// Data directory: the SQLite database and generated keys (overrides server.data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// HTTP listen address (overrides server.listen).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        #[command(flatten)]
        log: LogArg,
    },
    /// Run the SSH gateway alone (in the network zone of the hosts, apart from the bot).
    #[command(
        after_help = "Examples:\n  breakglass gateway --config /etc/breakglass/gateway.toml\n  breakglass gateway --listen 0.0.0.0:2222\n\nThe gateway trusts only the approval keys pinned in its own config (keys.pinned_bot_keys)."
    )]
    Gateway {
        #[command(flatten)]
        config: ConfigArg,
        /// Data directory: the host and CA keys and the recordings (overrides
        /// server.data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// SSH listen address (overrides gateway.listen).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Where /healthz, /readyz and /metrics are served, or `off` (overrides
        /// gateway.health_listen; default 127.0.0.1:9222).
        #[arg(long, value_name = "ADDR")]
        health_listen: Option<String>,
        #[command(flatten)]
        log: LogArg,
    },
    /// The gateway's SSH certificate authority.
    #[command(
        subcommand,
        after_help = "Example:\n  breakglass ca public-key > /etc/ssh/breakglass_ca.pub"
    )]
    Ca(CaCommand),
    /// Session recordings: check one against its signature, or download an audit bundle.
    #[command(
        subcommand,
        after_help = "Examples:\n  breakglass recording verify data/recordings/bg-7f3a2c-1795403640.cast\n  breakglass recording bundle bg-7f3a2c -o bg-7f3a2c.tar.gz"
    )]
    Recording(RecordingCommand),
    /// Discord setup.
    #[command(
        subcommand,
        after_help = "Example:\n  BREAKGLASS_DISCORD_BOT_TOKEN=… breakglass discord register --guild 1180000000000000000"
    )]
    Discord(DiscordCommand),
    /// Ask a running bot, or a standalone gateway's health listener, whether it is ready
    /// (exit 0), for container and orchestrator probes.
    #[command(
        after_help = "Exit status: 0 ready; 1 it answered, not ready (e.g. the database is down); 4 no answer.\n\nExamples:\n  breakglass healthcheck                       # the bot of ./breakglass.toml (server.listen)\n  breakglass healthcheck --gateway             # the gateway's gateway.health_listen\n  breakglass healthcheck --url http://10.0.0.7:9222"
    )]
    Healthcheck {
        #[command(flatten)]
        config: ConfigArg,
        /// Probe the standalone gateway's health listener (gateway.health_listen) instead of
        /// the bot (server.listen).
        #[arg(long, conflicts_with = "url")]
        gateway: bool,
        /// Probe this URL instead (`http://HOST:PORT` probes /readyz).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// How long to wait for the answer.
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Rotate a key with an overlap: the approval key, the recording key or the gateway CA.
    #[command(
        subcommand,
        after_help = "Examples:\n  breakglass keys rotate approval --overlap 7d\n  breakglass keys rotate recording --config /etc/breakglass/breakglass.toml\n  breakglass keys rotate ca --overlap 14d"
    )]
    Keys(KeysCommand),
    /// Write a new Ed25519 key pair: BASE.key (private, mode 0600) and BASE.pub.
    #[command(
        after_help = "Examples:\n  breakglass keygen --out ~/.breakglass/erin\n  breakglass keygen --out /etc/breakglass/approval\n\nPaste the printed public line into [keys] of the config."
    )]
    Keygen {
        /// Where to write: the path without extension (a missing folder is created, private).
        #[arg(long, value_name = "BASE", default_value = "breakglass")]
        out: PathBuf,
    },
    /// Generate an API token; prints it once and the hash to put in config.
    #[command(after_help = "Example:\n  breakglass token --for ci-deploy")]
    Token {
        /// Whose token it is (only used in the printed config line).
        #[arg(long = "for", value_name = "NAME", default_value = "NAME")]
        for_: String,
    },
    /// Ask for break-glass access to one host.
    #[command(
        after_help = "Examples:\n  breakglass request db-1 replica lag, need to kill a query\n  breakglass request db-1 --as postgres --for 30m replica lag\n  breakglass request vault-1 --scope vault --for 15m unseal after restart"
    )]
    Request {
        /// Host name as configured in a scope.
        host: String,
        /// Login on the host (default: the scope's first login).
        #[arg(long = "as", value_name = "LOGIN")]
        login: Option<String>,
        /// How long, e.g. 30m or 1h (default: the scope's default).
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// Scope, when the host is in several you may use.
        #[arg(long)]
        scope: Option<String>,
        /// Why you need access (the rest of the line).
        #[arg(required = true, num_args = 1.., trailing_var_arg = true)]
        reason: Vec<String>,
        #[command(flatten)]
        remote: ServerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Approve a request (the bot signs for you, or --key signs here with your own key).
    #[command(
        after_help = "Examples:\n  breakglass approve bg-7f3a2c\n  breakglass approve bg-7f3a2c --key ~/.breakglass/erin.key\n\nWith --key the request's bound fields are fetched, shown, and signed locally; only the\nsignature is sent. Scopes with require_offline_signature accept only this form."
    )]
    Approve {
        /// Request code (`bg-` and six hex digits, like bg-7f3a2c) or id.
        #[arg(value_parser = request_ref)]
        id: String,
        /// Your personal private key (from `breakglass keygen`).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Sign without asking for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        remote: ServerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Deny a pending request.
    #[command(after_help = "Example:\n  breakglass deny bg-7f3a2c")]
    Deny {
        /// Request code (`bg-` and six hex digits, like bg-7f3a2c) or id.
        #[arg(value_parser = request_ref)]
        id: String,
        #[command(flatten)]
        remote: ServerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Withdraw a pending request, or end an approved or live grant.
    #[command(after_help = "Example:\n  breakglass revoke bg-7f3a2c")]
    Revoke {
        /// Request code (`bg-` and six hex digits, like bg-7f3a2c) or id.
        #[arg(value_parser = request_ref)]
        id: String,
        #[command(flatten)]
        remote: ServerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// List requests, newest first.
    #[command(
        after_help = "Examples:\n  breakglass list\n  breakglass list --status pending,approved --mine"
    )]
    List {
        /// Comma-separated statuses: pending, approved, active, closed, denied, expired, revoked.
        #[arg(long, value_name = "STATUSES", value_parser = statuses)]
        status: Option<String>,
        /// Only your own requests.
        #[arg(long)]
        mine: bool,
        /// At most this many requests.
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        remote: ServerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Show one request.
    #[command(after_help = "Example:\n  breakglass status bg-7f3a2c")]
    Status {
        /// Request code (`bg-` and six hex digits, like bg-7f3a2c) or id.
        #[arg(value_parser = request_ref)]
        id: String,
        #[command(flatten)]
        remote: ServerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Show who your token belongs to.
    #[command(
        after_help = "Examples:\n  breakglass whoami\n  breakglass whoami --token-file ~/.breakglass/token --server https://breakglass.example.com"
    )]
    Whoami {
        #[command(flatten)]
        remote: ServerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// A single-use sign-in link to the reviewer page (reviewers only).
    #[command(
        after_help = "Examples:\n  breakglass review bg-7f3a2c\n  breakglass review            # the session list\n\nOpen the printed link in your browser within review.link_ttl (10 minutes by default); it\nworks once and signs you in for review.session_ttl."
    )]
    Review {
        /// Request code or id whose session to open (default: the session list).
        #[arg(value_parser = request_ref)]
        id: Option<String>,
        #[command(flatten)]
        remote: ServerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Search the commands of every recorded session (reviewers only).
    #[command(
        after_help = "Examples:\n  breakglass search 'kubectl delete'\n  breakglass search 'rm -rf' --host db-1 --from 2026-11-01\n\nEach hit links to that moment of the recording on the reviewer page."
    )]
    Search {
        /// Text the command contains (case-insensitive; the words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        query: Vec<String>,
        /// Only sessions of this requester.
        #[arg(long)]
        who: Option<String>,
        /// Only sessions on this host.
        #[arg(long)]
        host: Option<String>,
        /// Only sessions on or after this day (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DAY", value_parser = day)]
        from: Option<String>,
        /// Only sessions on or before this day (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DAY", value_parser = day)]
        to: Option<String>,
        #[command(flatten)]
        remote: ServerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Replay a session in this terminal, after checking its signature.
    #[command(
        after_help = "Examples:\n  breakglass replay bg-7f3a2c                 # from the server (reviewers only)\n  breakglass replay bg-7f3a2c --commands      # list the commands with their times\n  breakglass replay bg-7f3a2c --at 3          # jump to the 3rd command\n  breakglass replay data/recordings/bg-7f3a2c-1795403640.cast --from 1:30 --speed 2\n  breakglass replay bundle/bg-7f3a2c-1795403640.cast --key bundle/recording-key.pub\n\nKeys: space pause/resume, . step while paused, + faster, - slower, q quit.\nThe first line says whether the recording verifies. Escape sequences that could act on\nyour terminal (clipboard, links, title reports, queries, C1 controls) are removed."
    )]
    Replay {
        /// A request code or id (fetched from the server), or a .cast file (checked against
        /// FILE.sig).
        target: String,
        /// Recording public key to verify with (a .pub from `breakglass keygen` or a bundle's
        /// recording-key.pub); default: the config's pinned keys.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
        /// Data directory whose recording key verifies a local file when no key is pinned
        /// (overrides server.data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Playback speed, 1/64 to 1024.
        #[arg(long, default_value = "1", value_parser = crate::review_cli::parse_speed)]
        speed: f64,
        /// Longest pause kept, e.g. 2s; `off` keeps every pause.
        #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = crate::review_cli::parse_idle)]
        idle_max: crate::review_cli::IdleMax,
        /// Start at this command (1 = the first; see --commands).
        #[arg(long, value_name = "N", conflicts_with = "from")]
        at: Option<usize>,
        /// Start at this time into the session: 90, 1:30 or 1:02:03.
        #[arg(long, value_name = "TIME", value_parser = crate::review_cli::parse_time)]
        from: Option<Duration>,
        /// List the commands with their times instead of playing.
        #[arg(long)]
        commands: bool,
        #[command(flatten)]
        remote: ServerArgs,
    },
    /// Verify or export the audit log (reads the database named in the config directly).
    #[command(
        subcommand,
        after_help = "Examples:\n  breakglass audit verify --config /etc/breakglass/breakglass.toml\n  breakglass audit export -o audit.jsonl"
    )]
    Audit(AuditCommand),
    /// Check a config file and print a summary.
    #[command(
        subcommand,
        after_help = "Example:\n  breakglass config check --config /etc/breakglass/breakglass.toml"
    )]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain, re-verify every approval signature against the pinned keys,
    /// compare the request tables with the log, flag a grant that opened two sessions, and
    /// flag a recording in the recordings directory the database does not know. Exits 1 on a
    /// break, naming each problem.
    #[command(
        after_help = "Example:\n  breakglass audit verify --config /etc/breakglass/breakglass.toml"
    )]
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// Database URL (overrides server.database_url).
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        /// Data directory (overrides server.data_dir; the default database lives there).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Write every audit event, then every session and what happened in it, one JSON object
    /// per line. `"record"` says which: `audit` (an audit event), `session` (a finished
    /// session's recording), or a session event: `shell`, `exec`, `subsystem`, `command`,
    /// `transfer`, `forward`, `forward_refused`, `forward_failed`, `env`, `signal`.
    #[command(
        after_help = "Examples:\n  breakglass audit export --format jsonl --output audit.jsonl\n  breakglass audit export | jq 'select(.record == \"command\") | .command'"
    )]
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// Database URL (overrides server.database_url).
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        /// Data directory (overrides server.data_dir; the default database lives there).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Output format (one JSON object per line).
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// File to write (default: standard output).
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new key next to the current one (the current file is kept, retired, never
    /// deleted) and print what to pin: both keys, the current one with `not_after = now +
    /// overlap`, and the steps in order. Nothing changes until the processes restart with the
    /// new config: pin both on every gateway first, then switch the signer.
    #[command(
        after_help = "Examples:\n  breakglass keys rotate approval                 # 7 days of overlap\n  breakglass keys rotate recording --overlap 30d\n  breakglass keys rotate ca --overlap 14d --config /etc/breakglass/breakglass.toml\n\nThe order (docs/operations.md, \"Key rotation\"):\n  approval, recording: 1. pin both keys on every gateway and bot, restart them;\n                       2. point the signing key file at the new key, restart the signer;\n                       3. after not_after, drop the old key's line (the audit keeps it).\n  ca:                  1. set the new CA file and retire the old one in the config;\n                       2. `breakglass ca trusted-keys` onto every target (both lines);\n                       3. restart the gateway; 4. after not_after, install the one line left."
    )]
    Rotate {
        /// Which key: `approval` (the bot's approval key), `recording` (the gateway's
        /// recording key) or `ca` (the gateway's SSH certificate authority).
        kind: RotateKind,
        /// How long the current key stays trusted after now.
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
        overlap: std::time::Duration,
        #[command(flatten)]
        config: ConfigArg,
        /// Data directory holding the keys (overrides server.data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// The keys `breakglass keys rotate` rotates.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RotateKind {
    Approval,
    Recording,
    Ca,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the CA's public key: the line for the targets' TrustedUserCAKeys file.
    #[command(
        after_help = "Example (on each target host):\n  breakglass ca public-key > /etc/ssh/breakglass_ca.pub\n  # /etc/ssh/sshd_config:  TrustedUserCAKeys /etc/ssh/breakglass_ca.pub"
    )]
    PublicKey {
        #[command(flatten)]
        config: ConfigArg,
        /// Data directory holding the CA key (overrides server.data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Print the targets' whole TrustedUserCAKeys file: the current CA and, during a
    /// rotation's overlap, every `keys.retired_gateway_ca_keys` entry not yet past its
    /// `not_after`.
    #[command(
        after_help = "Example (on each target host, after each step of a CA rotation):\n  breakglass ca trusted-keys > /etc/ssh/breakglass_ca.pub\n  # /etc/ssh/sshd_config:  TrustedUserCAKeys /etc/ssh/breakglass_ca.pub"
    )]
    TrustedKeys {
        #[command(flatten)]
        config: ConfigArg,
        /// Data directory holding the CA key (overrides server.data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DiscordCommand {
    /// Register (or update) the /breakglass slash command in a guild. Safe to re-run: it
    /// overwrites the guild's commands, so it never duplicates.
    #[command(
        after_help = "Example:\n  BREAKGLASS_DISCORD_BOT_TOKEN=… breakglass discord register --guild 1180000000000000000 --config /etc/breakglass/breakglass.toml"
    )]
    Register {
        /// The guild (server) id.
        #[arg(long)]
        guild: u64,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum RecordingCommand {
    /// Check a recording against its signature (FILE.sig) and the pinned recording keys.
    #[command(
        after_help = "Examples:\n  breakglass recording verify data/recordings/bg-7f3a2c-1795403640.cast\n  breakglass recording verify bundle/bg-7f3a2c-1795403640.cast --key bundle/recording-key.pub\n\nExits 0 when the file is exactly what the gateway signed, 1 when it is not (or has no\nsignature), 5 when the file cannot be read."
    )]
    Verify {
        /// The .cast file.
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
        /// Data directory whose recording key verifies when no key is pinned (overrides
        /// server.data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Verify with this public key (e.g. a bundle's recording-key.pub) instead of the
        /// config's pinned keys.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Download a finished session's audit bundle: the recording, its signature, the
    /// approvals, the audit events and a README on verifying it offline (reviewers only).
    #[command(
        after_help = "Example:\n  breakglass recording bundle bg-7f3a2c -o bg-7f3a2c.tar.gz\n  tar xzf bg-7f3a2c.tar.gz && cat bg-7f3a2c/README.md"
    )]
    Bundle {
        /// Request code (`bg-` and six hex digits, like bg-7f3a2c) or id.
        #[arg(value_parser = request_ref)]
        id: String,
        /// Where to write it (default: ID-bundle.tar.gz).
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        remote: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate the config; exit 5 with the key and the fix on any error.
    #[command(
        after_help = "Example:\n  breakglass config check --config deploy/breakglass.example.toml"
    )]
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// A failure with its exit code; the message is one clear line.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// A failed write of the command's output: quiet with 0 when the reader went away
    /// (`breakglass audit export | head`), else a local problem.
    pub fn output(e: &std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Self::new(0, "")
        } else {
            Self::new(EXIT_LOCAL, format!("cannot write the output: {e}"))
        }
    }
}

/// Writes one line of command output. The reader closing the pipe (`breakglass list | head -1`)
/// ends the process at once, quietly, with 0: there is nobody left to tell. Any other write
/// error (a full disk) ends it with 5 and says so.
pub fn stdout_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    if let Err(e) = written {
        drop(out);
        let f = Failure::output(&e);
        if !f.message.is_empty() {
            bot::logging::failure(&f.message);
        }
        std::process::exit(i32::from(f.code));
    }
}

/// Clap value parser for a request named by its code or id: bad input is a usage error (2).
///
/// # Errors
/// Anything but `bg-` and six lowercase hex digits, or a UUID.
pub fn request_ref(s: &str) -> Result<String, String> {
    s.parse::<RequestRef>().map(|_| s.trim().to_owned()).map_err(|_| {
        "a request is named by its code, `bg-` and six lowercase hex digits (like bg-7f3a2c), or by its id (a UUID)".to_owned()
    })
}

/// Clap value parser for `list --status`: comma-separated known statuses.
///
/// # Errors
/// A name that is not a status.
pub fn statuses(s: &str) -> Result<String, String> {
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        shared::core::Status::parse(part).map_err(|_| {
            format!(
                "`{part}` is not a status; use pending, approved, active, closed, denied, expired or revoked"
            )
        })?;
    }
    Ok(s.to_owned())
}

/// Clap value parser for a day: `YYYY-MM-DD`.
///
/// # Errors
/// Anything else.
pub fn day(s: &str) -> Result<String, String> {
    let t = s.trim();
    let shaped = t.len() == 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-';
    if shaped && humantime::parse_rfc3339(&format!("{t}T00:00:00Z")).is_ok() {
        Ok(t.to_owned())
    } else {
        Err("a day is written YYYY-MM-DD, like 2026-11-01".to_owned())
    }
}

impl Command {
    /// Whether the command runs a service (its logs and failure go through [`bot::logging`]).
    pub fn is_service(&self) -> bool {
        matches!(self, Self::Up { .. } | Self::Bot { .. } | Self::Gateway { .. })
    }

    /// `--log-format`, on the commands that run a service.
    pub fn log_format(&self) -> Option<bot::logging::LogFormat> {
        match self {
            Self::Up { log, .. } | Self::Bot { log, .. } | Self::Gateway { log, .. } => {
                log.log_format
            }
            _ => None,
        }
    }

    /// The client options this command takes: its server flags, and `--json` when it has it.
    fn client_options(&self) -> Option<(&ServerArgs, Option<bool>)> {
        match self {
            Self::Request { remote, out, .. }
            | Self::Approve { remote, out, .. }
            | Self::Deny { remote, out, .. }
            | Self::Revoke { remote, out, .. }
            | Self::List { remote, out, .. }
            | Self::Status { remote, out, .. }
            | Self::Whoami { remote, out }
            | Self::Review { remote, out, .. }
            | Self::Search { remote, out, .. } => Some((remote, Some(out.json))),
            Self::Replay { remote, .. }
            | Self::Recording(RecordingCommand::Bundle { remote, .. }) => Some((remote, None)),
            _ => None,
        }
    }
}

/// The client options in force: the subcommand's flags, then those before it, then
/// `BREAKGLASS_SERVER`, then the default. A flag before the subcommand that the subcommand
/// does not use is a usage error.
fn resolve(top: &TopLevel, command: &Command) -> Result<Global, Failure> {
    let own = command.client_options();
    let refuse = |flag: &str| {
        Failure::new(EXIT_USAGE, format!("{flag} does not apply to this command (see its --help)"))
    };
    let Some((remote, json)) = own else {
        if top.server.is_some() {
            return Err(refuse("--server"));
        }
        if top.token_file.is_some() {
            return Err(refuse("--token-file"));
        }
        if top.json {
            return Err(refuse("--json"));
        }
        return Ok(Global { server: DEFAULT_SERVER.to_owned(), token_file: None, json: false });
    };
    if top.json && json.is_none() {
        return Err(refuse("--json"));
    }
    let server = remote
        .server
        .clone()
        .or_else(|| top.server.clone())
        .or_else(|| std::env::var("BREAKGLASS_SERVER").ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    Ok(Global {
        server,
        token_file: remote.token_file.clone().or_else(|| top.token_file.clone()),
        json: json.unwrap_or(false) || top.json,
    })
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match &e {
            ClientError::Api { status, .. } if *status >= 500 => {
                Self::new(EXIT_UNREACHABLE, e.to_string())
            }
            ClientError::Api { .. } => Self::new(EXIT_REFUSED, e.to_string()),
            ClientError::Unreachable { .. } => {
                Self::new(EXIT_UNREACHABLE, format!("{e}; is `breakglass up` running?"))
            }
            ClientError::Protocol(_) => Self::new(EXIT_FAILURE, e.to_string()),
        }
    }
}

impl From<config::ConfigError> for Failure {
    fn from(e: config::ConfigError) -> Self {
        Self::new(EXIT_LOCAL, e.to_string())
    }
}

/// Runs the parsed command line; prints the error line itself and returns the exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                bot::logging::failure(&f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let g = &resolve(&cli.top, &cli.command)?;
    if cli.command.is_service() {
        crate::compose::raise_open_file_limit();
    }
    match cli.command {
        Command::Up { config, data_dir, listen, ssh_listen, log: _ } => {
            let o =
                Overrides { listen, data_dir, gateway_listen: ssh_listen, ..Overrides::default() };
            commands::serve::serve(Mode::Up, config.config, o).await
        }
        Command::Bot { config, data_dir, listen, log: _ } => {
            let o = Overrides { listen, data_dir, ..Overrides::default() };
            commands::serve::serve(Mode::Bot, config.config, o).await
        }
        Command::Gateway { config, data_dir, listen, health_listen, log: _ } => {
            let o = Overrides {
                data_dir,
                gateway_listen: listen,
                health_listen,
                ..Overrides::default()
            };
            commands::serve::serve(Mode::Gateway, config.config, o).await
        }
        Command::Ca(CaCommand::PublicKey { config, data_dir }) => {
            commands::keys::ca_public_key(config.config, data_dir)
        }
        Command::Ca(CaCommand::TrustedKeys { config, data_dir }) => {
            commands::keys::ca_trusted_keys(config.config, data_dir)
        }
        Command::Keys(KeysCommand::Rotate { kind, overlap, config, data_dir }) => {
            commands::keys::rotate(kind, overlap, config.config, data_dir)
        }
        Command::Discord(DiscordCommand::Register { guild, config }) => {
            commands::discord::register(guild, config.config).await
        }
        Command::Recording(RecordingCommand::Verify { file, config, data_dir, key }) => {
            let pins = match key {
                Some(k) => vec![commands::read_public_key(&k)?],
                None => {
                    let o = Overrides { data_dir, ..Overrides::default() };
                    commands::recording_pins(&commands::load_config(config.config, &o)?)?
                }
            };
            commands::recording::verify(&file, &pins)
        }
        Command::Recording(RecordingCommand::Bundle { id, output, remote: _ }) => {
            crate::review_cli::bundle(&client(g)?, &id, output.as_deref()).await
        }
        Command::Review { id, .. } => {
            crate::review_cli::review(&client(g)?, id.as_deref(), g.json).await
        }
        Command::Search { query, who, host, from, to, .. } => {
            let q = bot::http::views::SearchQuery { q: query.join(" "), who, host, from, to };
            crate::review_cli::search(&client(g)?, &q, g.json).await
        }
        Command::Replay {
            target,
            key,
            config,
            data_dir,
            speed,
            idle_max,
            at,
            from,
            commands,
            ..
        } => {
            let args = crate::review_cli::ReplayArgs {
                speed,
                idle_max: idle_max.0,
                at,
                from,
                list_commands: commands,
            };
            let o = Overrides { data_dir, ..Overrides::default() };
            commands::recording::replay(g, &target, key.as_deref(), config.config, &o, &args).await
        }
        Command::Healthcheck { config, gateway, url, timeout } => {
            let probe =
                commands::healthcheck::Probe { url, gateway, config: config.config, timeout };
            commands::healthcheck::run(probe).await
        }
        Command::Keygen { out } => commands::keys::keygen(&out),
        Command::Token { for_ } => {
            commands::keys::token(&for_);
            Ok(())
        }
        Command::Request { host, login, duration, scope, reason, .. } => {
            let body = NewRequestBody { host, scope, login, duration, reason: reason.join(" ") };
            let v = client(g)?.create(&body).await?;
            print_view(g, &v, "requested");
            Ok(())
        }
        Command::Approve { id, key: None, .. } => {
            let v = client(g)?.approve(&id, None).await?;
            print_view(g, &v, "approved");
            Ok(())
        }
        Command::Approve { id, key: Some(key), yes, .. } => {
            commands::approve::approve_offline(g, &id, &key, yes).await
        }
        Command::Deny { id, .. } => {
            let v = client(g)?.deny(&id).await?;
            print_view(g, &v, "denied");
            Ok(())
        }
        Command::Revoke { id, .. } => {
            let v = client(g)?.revoke(&id).await?;
            print_view(g, &v, "revoked");
            Ok(())
        }
        Command::List { status, mine, limit, .. } => {
            let list = client(g)?
                .list(&ListQuery { status, mine: Some(mine), limit: Some(limit) })
                .await?;
            if g.json {
                outln!("{}", to_json(&list));
            } else if list.requests.is_empty() {
                outln!("no requests");
            } else {
                outln!(
                    "CODE       STATUS    REQUESTER    HOST           LOGIN      FOR    APPROVALS"
                );
                for r in &list.requests {
                    outln!(
                        "{:<10} {:<9} {:<12} {:<14} {:<10} {:<6} {}/{}",
                        r.code,
                        r.status,
                        r.requester,
                        r.host,
                        r.login,
                        r.duration,
                        r.approvals.len(),
                        r.quorum
                    );
                }
            }
            Ok(())
        }
        Command::Status { id, .. } => {
            let v = client(g)?.get(&id).await?;
            print_view(g, &v, "status");
            Ok(())
        }
        Command::Whoami { .. } => {
            let w = client(g)?.whoami().await?;
            if g.json {
                outln!("{}", to_json(&w));
            } else {
                outln!("{} ({})", w.name, w.kind);
            }
            Ok(())
        }
        Command::Audit(AuditCommand::Verify { config, database_url, data_dir }) => {
            let o = Overrides { database_url, data_dir, ..Overrides::default() };
            commands::audit::verify(config.config, o).await
        }
        Command::Audit(AuditCommand::Export {
            config,
            database_url,
            data_dir,
            format: ExportFormat::Jsonl,
            output,
        }) => {
            let o = Overrides { database_url, data_dir, ..Overrides::default() };
            commands::audit::export(config.config, o, output).await
        }
        Command::Config(ConfigCommand::Check { config }) => {
            commands::config_check::check(config.config)
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The API client for the resolved options, with the token from `--token-file` or
/// `BREAKGLASS_TOKEN`.
pub(crate) fn client(g: &Global) -> Result<Client, Failure> {
    let token = match &g.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| {
                    Failure::new(EXIT_LOCAL, format!("cannot read token file {}: {e}", p.display()))
                })?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("BREAKGLASS_TOKEN").ok(),
    };
    let Some(token) = token.filter(|t| !t.trim().is_empty()) else {
        let empty = g.token_file.as_ref().map(|p| format!(" ({} is empty)", p.display()));
        return Err(Failure::new(
            EXIT_USAGE,
            format!(
                "no API token{}: set BREAKGLASS_TOKEN, or pass --token-file FILE (`breakglass token` makes one)",
                empty.unwrap_or_default()
            ),
        ));
    };
    Ok(Client::new(&g.server, Some(Secret::new(token.trim().to_owned())))?)
}

/// Prints a request: the API's JSON with `--json`, else a summary headed by what happened.
pub(crate) fn print_view(g: &Global, v: &RequestView, verb: &str) {
    if g.json {
        outln!("{}", to_json(v));
        return;
    }
    let ts = |s: i64| Timestamp::from_unix(s).rfc3339();
    let head = match (verb, v.status.as_str()) {
        ("requested", _) => format!("requested {}: waiting for {} approval(s)", v.code, v.quorum),
        ("approved", "approved") => {
            format!("{} is approved: the requester can connect now", v.code)
        }
        ("approved", _) => {
            format!("approval recorded for {} ({}/{})", v.code, v.approvals.len(), v.quorum)
        }
        (_, status) => format!("{} is {status}", v.code),
    };
    outln!("{head}");
    outln!("  id         {}", v.id);
    outln!("  status     {}", v.status);
    outln!("  requester  {}", v.requester);
    outln!("  target     {}@{} (scope {})", v.login, v.host, v.scope);
    outln!("  duration   {}", v.duration);
    outln!("  reason     {}", v.reason.escape_debug());
    outln!(
        "  window     {} -> {} (approve by {})",
        ts(v.not_before),
        ts(v.not_after),
        ts(v.pending_until)
    );
    let approvers: Vec<String> = v
        .approvals
        .iter()
        .map(|a| format!("{} ({})", a.approver, a.signer.as_deref().unwrap_or("unpinned key")))
        .collect();
    outln!("  approvals  {}/{} {}", v.approvals.len(), v.quorum, approvers.join(", "));
    if let Some(by) = &v.closed_by {
        outln!("  closed by  {by}");
    }
    if let Some(c) = &v.connect {
        outln!("connect with:\n  {c}");
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    /// Every command and subcommand, with its path (`breakglass audit export`).
    fn walk(c: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        out.push((path.to_owned(), c.clone()));
        for sub in c.get_subcommands().filter(|s| s.get_name() != "help") {
            walk(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    fn commands() -> Vec<(String, clap::Command)> {
        let mut all = Vec::new();
        let mut root = Cli::command();
        root.build();
        walk(&root, "breakglass", &mut all);
        all
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_option_and_argument_has_a_description() {
        let mut missing = Vec::new();
        for (path, c) in commands() {
            for a in c.get_arguments().filter(|a| !a.is_hide_set()) {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if a.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                    missing.push(format!("{path}: {id}"));
                }
            }
        }
        assert!(missing.is_empty(), "options without a description: {missing:#?}");
    }

    #[test]
    fn every_command_has_examples() {
        let missing: Vec<String> = commands()
            .into_iter()
            .filter(|(_, c)| !c.get_after_help().is_some_and(|h| h.to_string().contains("Example")))
            .map(|(p, _)| p)
            .collect();
        assert!(missing.is_empty(), "commands without examples: {missing:#?}");
    }

    /// `--server`, `--token-file` and `--json` show only where they do something.
    #[test]
    fn client_options_appear_only_on_client_commands() {
        let remote = [
            "request", "approve", "deny", "revoke", "list", "status", "whoami", "review", "search",
            "replay", "bundle",
        ];
        let json = [
            "request", "approve", "deny", "revoke", "list", "status", "whoami", "review", "search",
        ];
        for (path, c) in commands() {
            let name = c.get_name().to_owned();
            let shown = |flag: &str| {
                c.get_arguments().any(|a| !a.is_hide_set() && a.get_long() == Some(flag))
            };
            let leaf = c.get_subcommands().next().is_none();
            assert_eq!(
                shown("server") && shown("token-file"),
                leaf && remote.contains(&name.as_str()),
                "{path}"
            );
            assert_eq!(shown("json"), leaf && json.contains(&name.as_str()), "{path}");
            assert_eq!(
                shown("log-format"),
                ["up", "bot", "gateway"].contains(&name.as_str()),
                "{path}"
            );
        }
    }

    #[test]
    fn request_codes_days_and_statuses_are_checked_before_any_request() {
        assert!(super::request_ref("bg-7f3a2c").is_ok());
        assert!(super::request_ref("6f1c1e0e-3c57-4d53-9f0b-8b1a2a3c4d5e").is_ok());
        for bad in ["bg-7F3A2C", "bg-7f3a2", "bg-xyz", "7f3a2c", ""] {
            let e = super::request_ref(bad).err().unwrap_or_default();
            assert!(e.contains("`bg-` and six lowercase hex digits"), "{bad}: {e}");
        }
        assert!(super::day("2026-11-01").is_ok());
        assert!(super::day("2026-13-01").is_err() && super::day("01/11/2026").is_err());
        assert!(super::statuses("pending,approved").is_ok());
        assert!(super::statuses("pending,aproved").is_err());
    }
}
