//! Ed25519 key files: PKCS#8 PEM private keys (mode 0600) and `ed25519:<hex>` public lines.
//!
//! One format for every key breakglass uses (bot approval key, personal approver keys, the
//! gateway CA), so `openssl pkey -in KEY -text` can inspect any of them.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};

use crate::core::approval::public_key_text;
use crate::core::ids::KeyId;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    // The OS error is part of the message, not a `source`: `{:#}` would print it twice.
    #[error("cannot read key file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error(
        "key file {path} is not an Ed25519 private key in PKCS#8 PEM (as `breakglass keygen` writes)"
    )]
    Format { path: PathBuf },
    #[error("key file {path} can be read by other users (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} already exists; refusing to overwrite a key (remove it first)")]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
    #[error("the key in {0} is not an Ed25519 private key in PKCS#8 PEM")]
    EnvFormat(&'static str),
}

/// Reads a private key file, refusing one that group or others can read.
///
/// # Errors
/// [`KeyError::Read`], [`KeyError::TooOpen`], [`KeyError::Format`].
///
/// # Security
/// The error never includes the file's content.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let read = |error| KeyError::Read { path: path.to_owned(), error };
    check_private(path)?;
    let text = zeroize::Zeroizing::new(fs::read_to_string(path).map_err(read)?);
    SigningKey::from_pkcs8_pem(&text).map_err(|_| KeyError::Format { path: path.to_owned() })
}

/// Refuses a private key file that group or others can read (or that cannot be read).
///
/// # Errors
/// [`KeyError::Read`], [`KeyError::TooOpen`].
pub fn check_private(path: &Path) -> Result<(), KeyError> {
    let meta =
        fs::metadata(path).map_err(|error| KeyError::Read { path: path.to_owned(), error })?;
    check_mode(path, &meta)
}

/// Parses a PEM private key held in an environment variable named `var`.
///
/// # Errors
/// [`KeyError::EnvFormat`].
pub fn parse_signing_key_pem(text: &str, var: &'static str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(text.trim()).map_err(|_| KeyError::EnvFormat(var))
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &fs::Metadata) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen { path: path.to_owned(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_: &Path, _: &fs::Metadata) -> Result<(), KeyError> {
    Ok(())
}

/// A freshly generated key pair on disk.
#[derive(Debug)]
pub struct WrittenKey {
    pub private_path: PathBuf,
    pub public_path: PathBuf,
    pub public_line: String,
    pub key_id: KeyId,
}

/// Generates a key pair from the OS RNG and writes `<base>.key` (mode 0600, created new) and
/// `<base>.pub` (`ed25519:<hex>`).
///
/// # Errors
/// [`KeyError::Exists`] when either file exists, [`KeyError::Write`] on I/O failure.
pub fn generate_to_files(base: &Path) -> Result<WrittenKey, KeyError> {
    write_key_files(base, &generate())
}

/// A new Ed25519 key from the OS RNG (in memory; [`write_key_files`] stores it).
pub fn generate() -> SigningKey {
    SigningKey::generate(&mut rand::rng())
}

/// Writes an existing key as `<base>.key` and `<base>.pub`.
///
/// # Errors
/// As [`generate_to_files`].
pub fn write_key_files(base: &Path, key: &SigningKey) -> Result<WrittenKey, KeyError> {
    let private_path = with_ext(base, "key");
    let public_path = with_ext(base, "pub");
    for p in [&private_path, &public_path] {
        if p.exists() {
            return Err(KeyError::Exists { path: p.clone() });
        }
    }
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| KeyError::Format { path: private_path.clone() })?;
    write_new(&private_path, pem.as_bytes(), 0o600)?;
    let public_line = public_key_text(&key.verifying_key());
    write_new(&public_path, format!("{public_line}\n").as_bytes(), 0o644)?;
    Ok(WrittenKey {
        private_path,
        public_path,
        public_line,
        key_id: KeyId::of(key.verifying_key().as_bytes()),
    })
}

fn with_ext(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let err = |error| KeyError::Write { path: path.to_owned(), error };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Reads a key if its file exists, otherwise generates it (used by `breakglass up` for the
/// embedded defaults). Returns the key and whether it was created.
///
/// # Errors
/// As [`read_signing_key`] and [`generate_to_files`].
pub fn load_or_generate(base: &Path) -> Result<(SigningKey, bool), KeyError> {
    let private_path = with_ext(base, "key");
    if private_path.exists() {
        return read_signing_key(&private_path).map(|k| (k, false));
    }
    if let Some(dir) = base.parent() {
        fs::create_dir_all(dir).map_err(|error| KeyError::Write { path: dir.to_owned(), error })?;
    }
    generate_to_files(base)?;
    read_signing_key(&private_path).map(|k| (k, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_keys_read_back_and_are_private() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let base = dir.path().join("approver");
        let w = generate_to_files(&base)?;
        let key = read_signing_key(&w.private_path)?;
        assert_eq!(public_key_text(&key.verifying_key()), w.public_line);
        assert_eq!(fs::read_to_string(&w.public_path)?.trim(), w.public_line);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(fs::metadata(&w.private_path)?.permissions().mode() & 0o777, 0o600);
        }
        assert!(matches!(generate_to_files(&base), Err(KeyError::Exists { .. })));
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn loose_permissions_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir()?;
        let w = generate_to_files(&dir.path().join("k"))?;
        fs::set_permissions(&w.private_path, fs::Permissions::from_mode(0o644))?;
        let e = read_signing_key(&w.private_path).expect_err("0644 must be refused");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        Ok(())
    }

    #[test]
    fn garbage_is_a_format_error_without_content() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("bad.key");
        write_new(&p, b"SECRET-LOOKING-GARBAGE", 0o600)?;
        let e = read_signing_key(&p).expect_err("garbage must be refused");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        Ok(())
    }
}
