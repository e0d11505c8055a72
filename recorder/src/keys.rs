//! The gateway's keys and the per-session certificate.
//!
//! - Host key: the gateway's own SSH host key (OpenSSH format), generated on first start and
//!   kept, so clients can pin it.
//! - CA: the Ed25519 key (PKCS#8, like every breakglass key) that signs one short-lived user
//!   certificate per session. Targets trust it with `TrustedUserCAKeys`.
//! - Session key: an ephemeral Ed25519 key minted per session; it lives in this process's
//!   memory only and dies with the session.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use ed25519_dalek::SigningKey;
use rand::RngExt as _;
use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{Algorithm, Certificate, LineEnding, PrivateKey};
use shared::core::{Forwarding, Timestamp, VerifiedGrant};

/// How far back a certificate's validity starts, for clocks that run a little behind ours.
pub const CERT_SKEW: Duration = Duration::from_secs(30);

/// Loads the gateway's host key, generating and saving it (mode 0600) on first start.
///
/// # Errors
/// An unreadable or malformed key file, one that group or others can read, or a directory
/// that cannot be written.
pub fn load_or_create_host_key(path: &Path) -> anyhow::Result<PrivateKey> {
    if path.exists() {
        shared::keys::check_private(path)?;
        return PrivateKey::read_openssh_file(path)
            .with_context(|| format!("while reading the gateway host key {}", path.display()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("while creating {}", dir.display()))?;
    }
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .context("while generating the gateway host key")?;
    key.write_openssh_file(path, LineEnding::LF)
        .with_context(|| format!("while writing the gateway host key {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated the gateway host key");
    Ok(key)
}

/// An Ed25519 public key as an OpenSSH line with `comment`, the form `TrustedUserCAKeys`
/// reads.
pub fn openssh_line(key: &ed25519_dalek::VerifyingKey, comment: &str) -> String {
    let data = russh::keys::ssh_key::public::KeyData::Ed25519(
        russh::keys::ssh_key::public::Ed25519PublicKey(*key.as_bytes()),
    );
    russh::keys::ssh_key::PublicKey::new(data, comment).to_openssh().unwrap_or_default()
}

/// The CA that signs session certificates.
pub struct Ca {
    key: PrivateKey,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("public", &self.public_line()).finish_non_exhaustive()
    }
}

impl Ca {
    /// Wraps an Ed25519 key (as read by `shared::keys`) as an SSH CA.
    pub fn new(key: &SigningKey) -> Self {
        let mut key = PrivateKey::from(Ed25519Keypair::from(key));
        key.set_comment("breakglass-ca");
        Self { key }
    }

    /// The line for a target's `TrustedUserCAKeys` file.
    pub fn public_line(&self) -> String {
        self.key.public_key().to_openssh().unwrap_or_default()
    }

    /// The CA's public half, to pin or to retire in the config (`ed25519:` line).
    pub fn verifying_key(&self) -> Option<ed25519_dalek::VerifyingKey> {
        let b = self.key.public_key().key_data().ed25519()?.0;
        ed25519_dalek::VerifyingKey::from_bytes(&b).ok()
    }

    /// Mints the one certificate of a session: principal = the approved login, valid from a
    /// little before now until `until`, key id naming the grant and the requester, and only
    /// the extensions the scope allows (`permit-pty` always).
    ///
    /// # Errors
    /// A signing failure (then there is no session).
    pub fn mint(
        &self,
        grant: &VerifiedGrant,
        forwarding: Forwarding,
        now: Timestamp,
    ) -> anyhow::Result<SessionCredential> {
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .context("while generating the session key")?;
        let req = grant.request();
        let now_s = u64::try_from(now.unix()).unwrap_or(0);
        let after = UNIX_EPOCH + Duration::from_secs(now_s) - CERT_SKEW;
        let until = u64::try_from(grant.session_deadline().unix()).unwrap_or(0);
        let before = UNIX_EPOCH + Duration::from_secs(until);
        let mut b = Builder::new_with_validity_times(
            rand::rng().random::<[u8; 32]>().to_vec(),
            key.public_key().key_data().clone(),
            after.max(UNIX_EPOCH),
            before.max(SystemTime::UNIX_EPOCH),
        )
        .context("while building the session certificate")?;
        let serial: u64 = rand::rng().random();
        b.serial(serial)?;
        b.key_id(format!("breakglass:{}:{}:{}", req.code, req.id, req.requester))?;
        b.cert_type(CertType::User)?;
        b.valid_principal(req.login.as_str())?;
        b.extension("permit-pty", "")?;
        if forwarding.port {
            b.extension("permit-port-forwarding", "")?;
        }
        if forwarding.agent {
            b.extension("permit-agent-forwarding", "")?;
        }
        if forwarding.x11 {
            b.extension("permit-X11-forwarding", "")?;
        }
        b.comment(format!("breakglass session {}", req.code))?;
        let cert = b.sign(&self.key).context("while signing the session certificate")?;
        Ok(SessionCredential { key: std::sync::Arc::new(key), cert, serial })
    }
}

/// A session's ephemeral key and certificate. Memory only; `Debug` shows the serial alone.
pub struct SessionCredential {
    pub key: std::sync::Arc<PrivateKey>,
    pub cert: Certificate,
    pub serial: u64,
}

impl std::fmt::Debug for SessionCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCredential").field("serial", &self.serial).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_key_others_can_read_is_refused() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("host_key");
        let made = load_or_create_host_key(&path)?;
        assert_eq!(load_or_create_host_key(&path)?.public_key(), made.public_key(), "kept");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        let err = load_or_create_host_key(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("mode 644") && err.contains("chmod 600"), "refused: {err}");
        Ok(())
    }
}
