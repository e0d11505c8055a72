//! `breakglass recording verify` and `breakglass replay`: a recording checked against its
//! signature, and played in this terminal once checked.

use std::path::PathBuf;

use shared::config::Overrides;

use super::{load_config, read_public_key, recording_pins};
use crate::cli::{EXIT_FAILURE, EXIT_LOCAL, Failure, Global, client};

/// `breakglass replay`: a local file, or a session fetched from the server.
pub async fn replay(
    g: &Global,
    target: &str,
    key: Option<&std::path::Path>,
    config_flag: Option<PathBuf>,
    overrides: &Overrides,
    args: &crate::review_cli::ReplayArgs,
) -> Result<(), Failure> {
    let path = std::path::Path::new(target);
    let is_file = path.is_file();
    // Pins: --key, else the config's (when there is one), else none.
    let (pins, source) = match key {
        Some(k) => (vec![read_public_key(k)?], format!("the key in {}", k.display())),
        None => {
            let has_config = bot::app::config_path(config_flag.as_deref()).is_some();
            if has_config || is_file {
                let cfg = load_config(config_flag, overrides)?;
                match recording_pins(&cfg) {
                    Ok(p) => (p, "the config's pinned recording key".to_owned()),
                    Err(_) => (Vec::new(), String::new()),
                }
            } else {
                (Vec::new(), String::new())
            }
        }
    };
    let loaded = if is_file {
        crate::review_cli::load_file(path, &pins, &source)?
    } else if target.ends_with(".cast") {
        return Err(Failure::new(EXIT_LOCAL, format!("no such file: {target}")));
    } else {
        let mut l = crate::review_cli::load_remote(&client(g)?, target, &pins).await?;
        if !pins.is_empty() {
            l.key_source = source;
        }
        l
    };
    // The terminal work blocks; keep it off the async workers.
    let args = *args;
    tokio::task::spawn_blocking(move || crate::review_cli::play(&loaded, &args))
        .await
        .map_err(|e| Failure::new(EXIT_FAILURE, e.to_string()))?
}

/// `breakglass recording verify`: says whether `file` is exactly what the gateway signed.
///
/// # Errors
/// An unreadable file (5); a recording that does not verify (1).
pub fn verify(file: &std::path::Path, pins: &[ed25519_dalek::VerifyingKey]) -> Result<(), Failure> {
    match format::integrity::verify_file(file, pins) {
        Ok(v) => {
            outln!(
                "recording OK: {} is exactly what the gateway signed for session {} (request {}, nonce {}, {} to {}; sha256 {}, key {})",
                file.display(),
                v.session.code,
                v.session.request_id,
                v.session.nonce.to_hex(),
                v.session.started_at,
                v.session.ended_at,
                hex::encode(v.sha256),
                v.key_id,
            );
            Ok(())
        }
        // The file itself missing or unreadable is a local input problem (5), not a verdict.
        Err(format::integrity::IntegrityError::Read { path, source }) if path == file => {
            Err(Failure::new(EXIT_LOCAL, format!("cannot read {}: {source}", path.display())))
        }
        Err(e) => {
            outln!("recording NOT VERIFIED: {}: {e}", file.display());
            Err(Failure::new(
                EXIT_FAILURE,
                format!("{} does not verify ({})", file.display(), e.code()),
            ))
        }
    }
}
