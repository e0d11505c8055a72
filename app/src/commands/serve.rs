//! `breakglass up`, `bot` and `gateway`: the config loaded (and, for `up`, what it lacks said
//! on the banner), then the process built and run by the composition root.

use std::path::{Path, PathBuf};

use bot::logging::BANNER;
use shared::config::{self, Overrides};

use crate::cli::Failure;
use crate::compose::{self, Mode};

/// Loads the config for `mode` and runs that process until a shutdown signal.
///
/// # Errors
/// A config that does not load (5); whatever [`compose::run`] reports.
pub async fn serve(
    mode: Mode,
    config_flag: Option<PathBuf>,
    overrides: Overrides,
) -> Result<(), Failure> {
    let path = bot::app::config_path(config_flag.as_deref());
    let cfg = config::load(path.as_deref(), &overrides)?;
    if mode == Mode::Up {
        warn_if_unconfigured(path.as_deref(), &cfg);
    }
    compose::run(mode, cfg).await
}

/// `breakglass up` starts on embedded defaults, or on a config with no users or no scopes,
/// and says on the banner that every request will be refused and what to configure.
fn warn_if_unconfigured(path: Option<&Path>, cfg: &config::Config) {
    match path {
        None => {
            tracing::warn!(
                target: BANNER,
                "no config file (looked for --config, BREAKGLASS_CONFIG and ./breakglass.toml): \
                 running on embedded defaults with no users and no scopes: every request will be refused"
            );
            tracing::warn!(
                target: BANNER,
                "to configure: copy {} to ./breakglass.toml, set [users], [scopes] and [keys], and restart",
                config::EXAMPLE_PATH
            );
        }
        Some(p) if cfg.is_empty() => tracing::warn!(
            target: BANNER,
            "{} defines no users or no scopes: every request will be refused; see {}",
            p.display(),
            config::EXAMPLE_PATH
        ),
        Some(_) => {}
    }
}
