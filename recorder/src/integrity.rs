//! Recording integrity: the gateway signs the SHA-256 of each finished recording, and anyone
//! with the gateway's public recording key can check a file offline.
//!
//! The signature is Ed25519 over `"breakglass-recording-v1" 0x00 || sha256(file)` (32 bytes).
//! It is stored in the database, in the audit chain (`session_ended`), and next to the file as
//! `<file>.sig`, a small JSON document:
//!
//! ```text
//! {"version":1,"file":"bg-7f3a2c.cast","sha256":"…","key_id":"…","signature":"…","signed_at":1795403640}
//! ```

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use shared::core::approval::SignatureBytes;
use shared::core::{KeyId, Timestamp};

const CONTEXT: &[u8] = b"breakglass-recording-v1\0";

fn message(sha256: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + 32);
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(sha256);
    m
}

/// The signature document written next to a recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    pub version: u32,
    pub file: String,
    pub sha256: String,
    pub key_id: KeyId,
    pub signature: SignatureBytes,
    pub signed_at: Timestamp,
}

impl Sidecar {
    /// The sidecar of a stored recording (the gateway signs at the session's end).
    pub fn of(r: &shared::ports::RecordingRecord) -> Self {
        Self {
            version: 1,
            file: r.file.clone(),
            sha256: hex::encode(r.sha256),
            key_id: r.key_id,
            signature: r.signature,
            signed_at: r.ended_at,
        }
    }
}

/// The pinned key with this id, if any.
pub fn pinned<'a>(pins: &'a [VerifyingKey], id: &KeyId) -> Option<&'a VerifyingKey> {
    pins.iter().find(|k| KeyId::of(k.as_bytes()) == *id)
}

/// The sidecar path of a recording: `<file>.sig`.
pub fn sidecar_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// Signs recordings. `Debug` never prints the key.
pub struct RecordingSigner {
    key: SigningKey,
    id: KeyId,
}

impl std::fmt::Debug for RecordingSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingSigner").field("key_id", &self.id).finish_non_exhaustive()
    }
}

impl RecordingSigner {
    pub fn new(key: SigningKey) -> Self {
        let id = KeyId::of(key.verifying_key().as_bytes());
        Self { key, id }
    }
    pub fn key_id(&self) -> KeyId {
        self.id
    }
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
    /// The sidecar for a file named `file` with digest `sha256`.
    pub fn sign(&self, file: &str, sha256: &[u8; 32], at: Timestamp) -> Sidecar {
        let sig = self.key.sign(&message(sha256));
        Sidecar {
            version: 1,
            file: file.to_owned(),
            sha256: hex::encode(sha256),
            key_id: self.id,
            signature: SignatureBytes::from_bytes(sig.to_bytes()),
            signed_at: at,
        }
    }
}

/// Why a recording does not verify.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0} is not a breakglass recording signature")]
    BadSidecar(PathBuf),
    #[error("the recording was changed: its SHA-256 is {actual}, the signed one is {signed}")]
    DigestMismatch { actual: String, signed: String },
    #[error("signed by key {0}, which is not a pinned recording key")]
    UnpinnedKey(KeyId),
    #[error("the signature does not verify with key {0}")]
    BadSignature(KeyId),
}

/// What a successful check established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub sha256: [u8; 32],
    pub key_id: KeyId,
    pub signed_at: Timestamp,
}

/// Checks `file` against its sidecar and the pinned keys: the file's SHA-256 must be the
/// signed one, and the signature must verify (strictly) with a pinned key.
///
/// # Errors
/// Any [`IntegrityError`].
pub fn verify_file(file: &Path, pins: &[VerifyingKey]) -> Result<Verified, IntegrityError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| IntegrityError::Read { path: p.to_owned(), source })
    };
    let bytes = read(file)?;
    let side_path = sidecar_path(file);
    let side: Sidecar = serde_json::from_slice(&read(&side_path)?)
        .map_err(|_| IntegrityError::BadSidecar(side_path.clone()))?;
    verify_bytes(&bytes, &side, pins)
}

/// [`verify_file`] on bytes already in memory.
///
/// # Errors
/// Any [`IntegrityError`] but `Read`.
pub fn verify_bytes(
    bytes: &[u8],
    side: &Sidecar,
    pins: &[VerifyingKey],
) -> Result<Verified, IntegrityError> {
    let actual: [u8; 32] = Sha256::digest(bytes).into();
    if hex::encode(actual) != side.sha256 {
        return Err(IntegrityError::DigestMismatch {
            actual: hex::encode(actual),
            signed: side.sha256.clone(),
        });
    }
    verify_digest(&actual, side, pins)
}

/// Checks the signature over a digest without the file (the file lives elsewhere).
///
/// # Errors
/// `DigestMismatch` when `side` names another digest, `UnpinnedKey`, `BadSignature`.
pub fn verify_digest(
    sha256: &[u8; 32],
    side: &Sidecar,
    pins: &[VerifyingKey],
) -> Result<Verified, IntegrityError> {
    if hex::encode(sha256) != side.sha256 {
        return Err(IntegrityError::DigestMismatch {
            actual: hex::encode(sha256),
            signed: side.sha256.clone(),
        });
    }
    let key = pinned(pins, &side.key_id).ok_or(IntegrityError::UnpinnedKey(side.key_id))?;
    let sig = Signature::from_bytes(side.signature.as_bytes());
    key.verify_strict(&message(sha256), &sig)
        .map_err(|_| IntegrityError::BadSignature(side.key_id))?;
    Ok(Verified { sha256: *sha256, key_id: side.key_id, signed_at: side.signed_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_recording_verifies_and_any_change_is_caught()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("bg-000001.cast");
        let body = b"{\"version\":2,\"width\":80,\"height\":24}\n[0.1,\"o\",\"hi\"]\n".to_vec();
        std::fs::write(&file, &body)?;
        let signer = RecordingSigner::new(SigningKey::from_bytes(&[7; 32]));
        let side =
            signer.sign("bg-000001.cast", &Sha256::digest(&body).into(), Timestamp::from_unix(1));
        std::fs::write(sidecar_path(&file), serde_json::to_vec(&side)?)?;
        let pins = [signer.verifying_key()];
        assert_eq!(verify_file(&file, &pins)?.key_id, signer.key_id());

        // One byte changed.
        let mut changed = body.clone();
        changed[40] ^= 1;
        std::fs::write(&file, &changed)?;
        assert!(matches!(verify_file(&file, &pins), Err(IntegrityError::DigestMismatch { .. })));

        // Another key's signature over the right digest.
        std::fs::write(&file, &body)?;
        let rogue = RecordingSigner::new(SigningKey::from_bytes(&[8; 32]));
        let forged = Sidecar {
            key_id: signer.key_id(),
            ..rogue.sign("x", &Sha256::digest(&body).into(), Timestamp::from_unix(1))
        };
        std::fs::write(sidecar_path(&file), serde_json::to_vec(&forged)?)?;
        assert!(matches!(verify_file(&file, &pins), Err(IntegrityError::BadSignature(_))));
        assert!(matches!(
            verify_file(&file, &[rogue.verifying_key()]),
            Err(IntegrityError::UnpinnedKey(_))
        ));
        Ok(())
    }
}
