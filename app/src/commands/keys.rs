//! `breakglass keygen`, `token` and `ca public-key`: keys and tokens, written or printed here.

use std::path::PathBuf;

use shared::config::Overrides;

use crate::cli::{EXIT_LOCAL, Failure};

/// `breakglass ca public-key`: the line for the targets' TrustedUserCAKeys file (the CA key is
/// generated under the data directory if missing, as the gateway would).
pub fn ca_public_key(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> Result<(), Failure> {
    let cfg = super::load_config(config, &Overrides { data_dir, ..Overrides::default() })?;
    let keys = recorder::load_keys(&cfg).map_err(|e| Failure::new(EXIT_LOCAL, format!("{e:#}")))?;
    outln!("{}", keys.ca.public_line());
    Ok(())
}

/// `breakglass keygen`: a new Ed25519 key pair, BASE.key (mode 0600) and BASE.pub.
pub fn keygen(out: &std::path::Path) -> Result<(), Failure> {
    // A missing folder is created (private: the umask is 077), and said so.
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            Failure::new(EXIT_LOCAL, format!("cannot create the folder {}: {e}", dir.display()))
        })?;
        outln!("created the folder {} (mode 0700)", dir.display());
    }
    let w = shared::keys::generate_to_files(out)
        .map_err(|e| Failure::new(EXIT_LOCAL, e.to_string()))?;
    outln!(
        "wrote {} (private, mode 0600) and {}",
        w.private_path.display(),
        w.public_path.display()
    );
    outln!("key id:     {}", w.key_id);
    outln!("public key: {}", w.public_line);
    outln!(
        "pin it in the config, e.g.\n  [keys.pinned_approver_keys]\n  yourname = [\"{}\"]",
        w.public_line
    );
    Ok(())
}

/// `breakglass token`: a new API token, printed once, and the hash for the config.
pub fn token(who: &str) {
    let token = bot::service::random_token("bgt_");
    let hash = hex::encode(bot::service::sha256(&token));
    outln!("token (shown once; give it to {who} and keep it secret):\n  {token}");
    outln!(
        "config line (users.{who}.api_token_sha256 or service_accounts.{who}.token_sha256):\n  \"{hash}\""
    );
}
