//! What the process writes on standard error, in one format: the `tracing` subscriber (text,
//! or JSON lines with `--log-format json` / `BREAKGLASS_LOG_FORMAT=json`), the service banner
//! (`target: "breakglass"` events), and the last line of a failed command.
//!
//! A client command in text mode ends a failure with the plain `breakglass: MESSAGE` line
//! people read; a service (`up`, `bot`, `gateway`) ends it with a log line in its log format,
//! so a log collector sees one format from start to exit.

use std::io::{IsTerminal as _, Write as _};
use std::sync::OnceLock;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// The environment variable that picks the log format (the `--log-format` flag wins).
pub const FORMAT_ENV: &str = "BREAKGLASS_LOG_FORMAT";

/// The environment variable with the log filter (`tracing` directives).
pub const FILTER_ENV: &str = "BREAKGLASS_LOG";

/// The `tracing` target of the service banner (where it listens, what to configure).
pub const BANNER: &str = "breakglass";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines: time, level, target, message, fields.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, message and fields.
    Json,
}

static ACTIVE: OnceLock<(LogFormat, bool)> = OnceLock::new();

/// The format: the flag, else [`FORMAT_ENV`], else text.
///
/// # Errors
/// [`FORMAT_ENV`] set to something else than `text` or `json` (a usage error).
pub fn resolve(flag: Option<LogFormat>) -> Result<LogFormat, String> {
    if let Some(f) = flag {
        return Ok(f);
    }
    match std::env::var(FORMAT_ENV) {
        Ok(v) if v.trim().is_empty() => Ok(LogFormat::Text),
        Ok(v) => LogFormat::from_str(v.trim(), true)
            .map_err(|_| format!("{FORMAT_ENV}={v:?} is not a log format; use text or json")),
        Err(_) => Ok(LogFormat::Text),
    }
}

/// The filter: [`FILTER_ENV`], else `info` with the chatty crates at `warn`. The banner stays
/// at `info` unless the filter names its target.
fn filter() -> EnvFilter {
    let spec = std::env::var(FILTER_ENV).ok().filter(|s| !s.trim().is_empty());
    let mut f = spec
        .as_deref()
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    if !spec.is_some_and(|s| s.contains(BANNER))
        && let Ok(d) = format!("{BANNER}=info").parse()
    {
        f = f.add_directive(d);
    }
    f
}

/// Installs the subscriber for the whole process. `service` says whether this process runs a
/// service (its failure line is then a log line too).
pub fn init(format: LogFormat, service: bool) {
    let _ = ACTIVE.set((format, service));
    let builder = tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            builder.with_ansi(std::io::stderr().is_terminal()).init();
        }
        LogFormat::Json => {
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_ansi(false)
                .init();
        }
    }
}

/// The format in use ([`LogFormat::Text`] before [`init`]).
pub fn format() -> LogFormat {
    ACTIVE.get().map_or(LogFormat::Text, |a| a.0)
}

/// The last line of a failed command: a log line for a service or in JSON, else the plain
/// `breakglass: MESSAGE` line. Never panics (standard error may be a closed pipe).
pub fn failure(message: &str) {
    match ACTIVE.get() {
        Some((LogFormat::Json, _) | (LogFormat::Text, true)) => {
            tracing::error!(target: BANNER, "{message}");
        }
        _ => {
            let _ = writeln!(std::io::stderr(), "breakglass: {message}");
        }
    }
}
