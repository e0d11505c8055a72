//! What each subcommand does, one module per group; `cli.rs` holds the clap definitions,
//! resolves the options and prints the answers of the client commands.
//!
//! Every body returns a [`Failure`] with its documented exit code; it prints its own output
//! through `outln!` (a closed pipe ends the process quietly).

use std::path::PathBuf;

use shared::config::{self, Overrides};

use crate::cli::{EXIT_LOCAL, Failure};

pub mod approve;
pub mod audit;
pub mod config_check;
pub mod discord;
pub mod healthcheck;
pub mod keys;
pub mod recording;
pub mod serve;

/// The config: the flag, else `BREAKGLASS_CONFIG`, else `./breakglass.toml` if it exists, else
/// the embedded defaults; with the command line's overrides.
pub(crate) fn load_config(
    flag: Option<PathBuf>,
    overrides: &Overrides,
) -> Result<config::Config, Failure> {
    let path = bot::app::config_path(flag.as_deref());
    Ok(config::load(path.as_deref(), overrides)?)
}

/// The keys recordings are verified against (never creates one).
pub(crate) fn recording_pins(
    cfg: &config::Config,
) -> Result<Vec<ed25519_dalek::VerifyingKey>, Failure> {
    bot::app::recording_pins_from(cfg, false)
        .map_err(|e| Failure::new(EXIT_LOCAL, format!("{e:#}")))
}

/// A public key from a file (`breakglass keygen`'s .pub, or a bundle's recording-key.pub).
pub(crate) fn read_public_key(
    path: &std::path::Path,
) -> Result<ed25519_dalek::VerifyingKey, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::new(EXIT_LOCAL, format!("cannot read {}: {e}", path.display())))?;
    shared::core::approval::parse_public_key(text.trim())
        .map_err(|e| Failure::new(EXIT_LOCAL, format!("{}: {e}", path.display())))
}

/// The configured database, opened (and migrated); exit code `EXIT_UNREACHABLE` when it cannot
/// be.
///
/// # Errors
/// The database does not open.
pub(crate) async fn open_database(
    cfg: &shared::config::Config,
) -> Result<std::sync::Arc<dyn shared::ports::Store>, Failure> {
    shared::storage::connect(&cfg.server.database_url).await.map_err(|e| {
        Failure::new(
            crate::cli::EXIT_UNREACHABLE,
            format!(
                "cannot open the database {}: {e}",
                shared::config::redact_url(&cfg.server.database_url)
            ),
        )
    })
}
