//! `breakglass config check`: load and validate a config file, print a summary.

use std::path::PathBuf;

use shared::config::{self, Overrides};

use crate::cli::{EXIT_LOCAL, Failure};

/// Loads and validates the config named by the flag (or `BREAKGLASS_CONFIG`, or
/// `./breakglass.toml`); prints what it defines.
///
/// # Errors
/// No config file, or one that does not load (exit 5, with the key and the fix).
pub fn check(flag: Option<PathBuf>) -> Result<(), Failure> {
    let path = bot::app::config_path(flag.as_deref())
        .ok_or_else(|| Failure::new(EXIT_LOCAL, "no config file: pass --config FILE"))?;
    let c = config::load(Some(&path), &Overrides::default())?;
    outln!("{}: ok", path.display());
    outln!(
        "  {} scope(s), {} principal(s), {} API token(s)",
        c.policy.scopes().count(),
        c.policy.principals().count(),
        c.tokens.len()
    );
    for s in c.policy.scopes() {
        outln!(
            "  scope {}: {} host(s), quorum {}, max {}{}",
            s.name,
            s.hosts.len(),
            s.quorum,
            s.max_duration,
            if s.require_offline_signature { ", offline signatures only" } else { "" }
        );
    }
    Ok(())
}
