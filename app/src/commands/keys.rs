//! `breakglass keygen`, `token`, `ca public-key`, `ca trusted-keys` and `keys rotate`: keys
//! and tokens, written or printed here.
//!
//! A rotation never edits the config or deletes a key: it writes the new key next to the
//! current one and prints what the operator pins and in which order, because the order is
//! what keeps access working (every verifier must trust the new key before anyone signs with
//! it, and every target must trust a new CA before the gateway mints with it).

use std::path::{Path, PathBuf};

use shared::config::{Config, Overrides};
use shared::core::approval::public_key_text;
use shared::core::{Clock as _, KeyId, SystemClock, Timestamp};

use crate::cli::{EXIT_LOCAL, Failure, RotateKind};

/// `breakglass ca public-key`: the line for the targets' TrustedUserCAKeys file (the CA key is
/// generated under the data directory if missing, as the gateway would).
pub fn ca_public_key(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> Result<(), Failure> {
    let cfg = super::load_config(config, &Overrides { data_dir, ..Overrides::default() })?;
    let keys = recorder::load_keys(&cfg).map_err(|e| Failure::new(EXIT_LOCAL, format!("{e:#}")))?;
    outln!("{}", keys.ca.public_line());
    Ok(())
}

/// `breakglass ca trusted-keys`: the targets' whole TrustedUserCAKeys file: the current CA,
/// then each retired CA key whose `not_after` has not passed.
pub fn ca_trusted_keys(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> Result<(), Failure> {
    let cfg = super::load_config(config, &Overrides { data_dir, ..Overrides::default() })?;
    let keys = recorder::load_keys(&cfg).map_err(|e| Failure::new(EXIT_LOCAL, format!("{e:#}")))?;
    let now = SystemClock.now();
    outln!("{}", keys.ca.public_line());
    for p in &cfg.keys.retired_gateway_ca_keys {
        if p.validity.not_after.is_some_and(|t| t < now) {
            continue;
        }
        let until = p.validity.not_after.map_or_else(|| "ever".to_owned(), Timestamp::rfc3339);
        outln!(
            "{}",
            recorder::keys::openssh_line(&p.key, &format!("breakglass-ca-retired-until-{until}"))
        );
    }
    Ok(())
}

/// The current key file of `kind`: the configured one, else the data directory's.
fn current_key_file(cfg: &Config, kind: RotateKind) -> (PathBuf, &'static str) {
    let keys = cfg.server.data_dir.join("keys");
    match kind {
        RotateKind::Approval => (
            cfg.keys.approval_signing_key_file.clone().unwrap_or_else(|| keys.join("approval.key")),
            "approval",
        ),
        RotateKind::Recording => (
            cfg.keys
                .recording_signing_key_file
                .clone()
                .unwrap_or_else(|| keys.join("recording.key")),
            "recording",
        ),
        RotateKind::Ca => {
            (cfg.keys.gateway_ca_key_file.clone().unwrap_or_else(|| keys.join("ca.key")), "ca")
        }
    }
}

/// `breakglass keys rotate KIND`: writes the new key next to the current one and prints the
/// pins and the steps.
pub fn rotate(
    kind: RotateKind,
    overlap: std::time::Duration,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<(), Failure> {
    let cfg = super::load_config(config, &Overrides { data_dir, ..Overrides::default() })?;
    let (current_path, stem) = current_key_file(&cfg, kind);
    let current = shared::keys::read_signing_key(&current_path).map_err(|e| {
        Failure::new(
            EXIT_LOCAL,
            format!(
                "{e}; fix: run this where the current {stem} key is (with the same --config and --data-dir as the process that uses it)"
            ),
        )
    })?;
    let next = shared::keys::generate();
    let next_id = KeyId::of(next.verifying_key().as_bytes());
    // Absolute, so the printed config lines work wherever the config file lives.
    let dir = current_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let written = shared::keys::write_key_files(&dir.join(format!("{stem}-{next_id}")), &next)
        .map_err(|e| Failure::new(EXIT_LOCAL, e.to_string()))?;
    let secs = i64::try_from(overlap.as_secs()).unwrap_or(i64::MAX);
    let not_after = SystemClock.now().plus_secs(secs).rfc3339();
    let old_line = public_key_text(&current.verifying_key());
    let old_id = KeyId::of(current.verifying_key().as_bytes());
    outln!("rotating the {stem} key");
    outln!(
        "  current: {} (key id {old_id}): kept on disk, retired, never deleted",
        current_path.display()
    );
    outln!(
        "  new:     {} (key id {next_id}, private, mode 0600) and {}",
        written.private_path.display(),
        written.public_path.display()
    );
    let new_file = written.private_path.display();
    match kind {
        RotateKind::Approval | RotateKind::Recording => {
            let (pins, file_key, who) = match kind {
                RotateKind::Approval => {
                    ("pinned_bot_keys", "approval_signing_key_file", "the bot (or `breakglass up`)")
                }
                _ => ("pinned_recording_keys", "recording_signing_key_file", "the gateway"),
            };
            outln!(
                "\nstep 1, on every gateway and bot (every process that verifies), pin both keys and restart it:\n  [keys]\n  {pins} = [\n    \"{}\",\n    {{ key = \"{old_line}\", not_after = \"{not_after}\" }},\n  ]\n  (keep any other keys you pin there)",
                written.public_line
            );
            outln!(
                "\nstep 2, once every verifier pins both: sign with the new key, on {who}, and restart it:\n  [keys]\n  {file_key} = \"{new_file}\""
            );
            if matches!(kind, RotateKind::Approval) {
                outln!(
                    "\nstep 3, after {not_after}: the old key signs nothing more (signatures it makes later are refused); drop its line when you like: the audit log keeps it, and `breakglass audit verify` checks its old approvals against the key the log recorded as pinned"
                );
            } else {
                outln!(
                    "\nstep 3: keep the old key's line pinned: recordings it signed verify only against pinned keys (its window is kept in the audit log)"
                );
            }
        }
        RotateKind::Ca => {
            outln!(
                "\nstep 1, in the gateway's config (do not restart it yet):\n  [keys]\n  gateway_ca_key_file = \"{new_file}\"\n  retired_gateway_ca_keys = [\n    {{ key = \"{old_line}\", not_after = \"{not_after}\" }},\n  ]"
            );
            outln!(
                "\nstep 2, on every target: trust both CAs; with the new config, `breakglass ca trusted-keys` prints this file:"
            );
            outln!("  {}", recorder::keys::Ca::new(&next).public_line());
            outln!(
                "  {}",
                recorder::keys::openssh_line(
                    &current.verifying_key(),
                    &format!("breakglass-ca-retired-until-{not_after}")
                )
            );
            outln!(
                "  install it as the file sshd_config's TrustedUserCAKeys names (e.g. /etc/ssh/breakglass_ca.pub); sshd rereads it at each login"
            );
            outln!(
                "\nstep 3, when every target trusts both: restart the gateway; it mints with the new CA"
            );
            outln!(
                "\nstep 4, after {not_after}: run `breakglass ca trusted-keys` again (it leaves the old CA out), install that on every target, and remove the retired entry"
            );
        }
    }
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
