//! `breakglass discord register`: the /breakglass slash command, registered in a guild.

use std::path::PathBuf;

use shared::config::Overrides;

use crate::cli::{EXIT_LOCAL, EXIT_REFUSED, Failure};

/// Registers (or overwrites) the guild's commands with /breakglass, its logins from the
/// config's scopes.
///
/// # Errors
/// No application id or bot token in the config (5); Discord refusing (3).
pub async fn register(guild: u64, config_flag: Option<PathBuf>) -> Result<(), Failure> {
    let cfg = super::load_config(config_flag, &Overrides::default())?;
    let d = &cfg.discord;
    let app = d.application_id.ok_or_else(|| {
        Failure::new(
            EXIT_LOCAL,
            "config error at `discord.application_id`: not set; fix: paste the application id",
        )
    })?;
    let token = d.bot_token.load()?.ok_or_else(|| {
        Failure::new(
            EXIT_LOCAL,
            "no Discord bot token: set BREAKGLASS_DISCORD_BOT_TOKEN or discord.bot_token_file",
        )
    })?;
    let adapter = bot::discord::DiscordAdapter::new(&d.api_base, app, &token);
    let mut logins: Vec<String> =
        cfg.policy.scopes().flat_map(|s| s.logins.iter().map(ToString::to_string)).collect();
    logins.sort();
    logins.dedup();
    let n = bot::discord::register(&adapter, guild, &logins).await.map_err(|e| {
        Failure::new(EXIT_REFUSED, format!("Discord refused the registration: {e}"))
    })?;
    outln!("registered /breakglass in guild {guild} ({n} command(s) now in the guild)");
    Ok(())
}
