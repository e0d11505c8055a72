//! The `/breakglass` command line, as typed in chat, into a typed command.
//!
//! ```text
//! /breakglass request <host> [--as LOGIN] [--for DURATION] [--scope SCOPE] <reason…>
//! /breakglass status [ID]
//! /breakglass list
//! /breakglass revoke ID
//! /breakglass help
//! ```
//!
//! Values are parsed with the core's parsers, so a bad host, login or duration is refused here
//! with the same stable code the API uses.

use shared::core::{GrantDuration, HostName, InvalidValue, Login, PolicyError, Reason, ScopeName};

pub use crate::chat::command::SlashCommand;

/// The usage text, shown for `help` and after a usage error.
pub const USAGE: &str = "Usage:\n\
`/breakglass request HOST [--as LOGIN] [--for DURATION] [--scope SCOPE] REASON…`\n\
`/breakglass status [ID]` · `/breakglass list` · `/breakglass revoke ID` · `/breakglass review [ID]` · `/breakglass help`\n\
Example: `/breakglass request db-1 --as postgres --for 30m replica lag, need to kill a query`";

/// Why a command line does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Invalid(#[from] PolicyError),
}

impl ParseError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Usage(_) => "usage",
            Self::Invalid(p) => p.code(),
        }
    }
}

fn invalid(v: InvalidValue) -> ParseError {
    ParseError::Invalid(PolicyError::Invalid(v))
}

/// Parses the text after `/breakglass`.
///
/// # Errors
/// A usage error naming what is missing, or an invalid value with its stable code.
pub fn parse(text: &str) -> Result<SlashCommand, ParseError> {
    let mut words = text.split_whitespace();
    let usage = |why: &str| ParseError::Usage(format!("{why}\n{USAGE}"));
    match words.next() {
        None | Some("help") => Ok(SlashCommand::Help),
        Some("list") => Ok(SlashCommand::List),
        Some("status") => match words.next() {
            None => Ok(SlashCommand::Status(None)),
            Some(id) => Ok(SlashCommand::Status(Some(id.parse().map_err(invalid)?))),
        },
        Some("review") => match words.next() {
            None => Ok(SlashCommand::Review(None)),
            Some(id) => Ok(SlashCommand::Review(Some(id.parse().map_err(invalid)?))),
        },
        Some("revoke") => {
            let id = words.next().ok_or_else(|| {
                usage("`revoke` needs the request's code, e.g. `/breakglass revoke bg-7f3a2c`")
            })?;
            Ok(SlashCommand::Revoke(id.parse().map_err(invalid)?))
        }
        Some("request") => {
            let host = words.next().ok_or_else(|| usage("`request` needs a host"))?;
            let host = HostName::parse(host).map_err(invalid)?;
            let (mut login, mut duration, mut scope) = (None, None, None);
            let mut rest: Vec<&str> = Vec::new();
            while let Some(w) = words.next() {
                if !rest.is_empty() {
                    rest.push(w);
                    continue;
                }
                let mut value = |flag: &str| {
                    words.next().ok_or_else(|| usage(&format!("`{flag}` needs a value")))
                };
                match w {
                    "--as" => login = Some(Login::parse(value("--as")?).map_err(invalid)?),
                    "--for" => {
                        duration = Some(GrantDuration::parse(value("--for")?).map_err(invalid)?)
                    }
                    "--scope" => {
                        scope = Some(ScopeName::parse(value("--scope")?).map_err(invalid)?)
                    }
                    w if w.starts_with("--") => {
                        return Err(usage(&format!("unknown option `{}`", w.escape_debug())));
                    }
                    w => rest.push(w),
                }
            }
            if rest.is_empty() {
                return Err(usage(
                    "say why you need access after the host, e.g. `replica lag, need to kill a query`",
                ));
            }
            let reason = Reason::parse(&rest.join(" ")).map_err(invalid)?;
            Ok(SlashCommand::Request { host, login, duration, scope, reason })
        }
        Some(other) => Err(usage(&format!("unknown command `{}`", other.escape_debug()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn bad(text: &str, code: &str) {
        match parse(text) {
            Ok(c) => panic!("{text:?} should be refused, got {c:?}"),
            Err(e) => assert_eq!(e.code(), code, "{e}"),
        }
    }

    #[test]
    fn requests_parse_with_options_anywhere_before_the_reason() -> Result<(), ParseError> {
        let c = parse("request db-1 --as postgres --for 30m replica lag, need --as to kill")?;
        let SlashCommand::Request { host, login, duration, scope, reason } = c else {
            panic!("a request")
        };
        assert_eq!(host.as_str(), "db-1");
        assert_eq!(login.map(|l| l.to_string()).as_deref(), Some("postgres"));
        assert_eq!(duration.map(|d| d.secs()), Some(1800));
        assert_eq!(scope, None);
        assert_eq!(
            reason.as_str(),
            "replica lag, need --as to kill",
            "options after the reason starts are text"
        );
        assert_eq!(parse("")?, SlashCommand::Help);
        assert_eq!(parse("list")?, SlashCommand::List);
        assert!(matches!(parse("status bg-7f3a2c")?, SlashCommand::Status(Some(_))));
        Ok(())
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        bad("request", "usage");
        bad("request db-1", "usage");
        bad("request db-1 --for", "usage");
        bad("request db-1 --for soon because", "invalid_duration");
        bad("request db-1 --for 0m because", "invalid_duration");
        bad("request db;1 because", "invalid_host");
        bad("request db-1 --as Root because", "invalid_login");
        bad("request db-1 --sudo because", "usage");
        bad("revoke", "usage");
        bad("revoke drop-table", "invalid_value");
        bad("reboot everything", "usage");
    }
}
