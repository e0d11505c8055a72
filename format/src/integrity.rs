//! Recording integrity: the gateway signs a statement binding each finished recording's SHA-256
//! to the session it records, and anyone with the gateway's public recording key can check a
//! file offline.
//!
//! The signature is Ed25519 over the canonical statement of docs/recording-signature.md:
//! `"breakglass-recording-v2" 0x00`, then the request id, grant code, nonce, session start and
//! end, file name and the file's SHA-256, each tagged and length-prefixed. It is stored in the
//! database, in the audit chain (`session_ended`), and next to the file as `<file>.sig`, a small
//! JSON document that carries every bound field, so a verifier learns which session the
//! signature is for without trusting the file's name or the database:
//!
//! ```text
//! {"version":2,"file":"bg-7f3a2c-1795403640.cast","sha256":"…","request_id":"…","code":"bg-7f3a2c",
//!  "nonce":"…","started_at":1795403640,"ended_at":1795405440,"key_id":"…","signature":"…","signed_at":1795405440}
//! ```
//!
//! Every check ([`verify_bytes`], [`verify_digest`], [`verify_file`]) compares the bound
//! fields with what the verifier knows ([`Expected`]: the database's row, the file's name) and
//! with the recording's own header (grant id, code, start), and names the first field that
//! differs. A version 1 signature (over the digest alone, before sessions were bound) is
//! reported as [`IntegrityError::Unbound`]: valid, but it would verify for any session's copy
//! of the file, so it never counts as verified.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use shared::core::approval::SignatureBytes;
use shared::core::{GrantCode, KeyId, Nonce, Request, RequestId, Timestamp};

/// The context of version 1: the digest alone.
const CONTEXT_V1: &[u8] = b"breakglass-recording-v1\0";
/// The context of version 2: the session statement.
const CONTEXT_V2: &[u8] = b"breakglass-recording-v2\0";
/// The statement version the gateway signs.
pub const VERSION: u32 = 2;
/// Longest file name a statement carries, in bytes (the gateway's are about 25).
pub const MAX_FILE_NAME: usize = 255;

fn message_v1(sha256: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT_V1.len() + 32);
    m.extend_from_slice(CONTEXT_V1);
    m.extend_from_slice(sha256);
    m
}

/// What the database keeps of a signed recording: the fields of a stored recording row
/// (`shared::ports::RecordingRecord`) that binding and checking read. Its own type because
/// the row's lives behind shared's `storage` feature (sqlx, tokio), which this crate must not
/// link; a caller holding a row lends its fields.
#[derive(Debug, Clone, Copy)]
pub struct StoredRecording<'a> {
    /// File name inside the recordings directory.
    pub file: &'a str,
    /// SHA-256 of the whole asciicast file.
    pub sha256: &'a [u8; 32],
    pub key_id: KeyId,
    pub signature: SignatureBytes,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
}

/// The session a recording belongs to: every field the gateway binds to the file's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionBinding {
    pub request_id: RequestId,
    pub code: GrantCode,
    pub nonce: Nonce,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    /// The file's name in the recordings directory.
    pub file: String,
}

impl SessionBinding {
    /// The binding of a stored recording and its request (what the database says).
    pub fn of(rec: &StoredRecording<'_>, req: &Request) -> Self {
        Self {
            request_id: req.id,
            code: req.code.clone(),
            nonce: req.nonce,
            started_at: rec.started_at,
            ended_at: rec.ended_at,
            file: rec.file.to_owned(),
        }
    }

    /// The exact bytes that are signed for a file with digest `sha256`
    /// (docs/recording-signature.md).
    pub fn statement(&self, sha256: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(200);
        out.extend_from_slice(CONTEXT_V2);
        field(&mut out, 0x01, self.request_id.as_bytes());
        field(&mut out, 0x02, self.code.as_str().as_bytes());
        field(&mut out, 0x03, self.nonce.as_bytes());
        field(&mut out, 0x04, &self.started_at.unix().to_be_bytes());
        field(&mut out, 0x05, &self.ended_at.unix().to_be_bytes());
        field(&mut out, 0x06, self.file.as_bytes());
        field(&mut out, 0x07, sha256);
        out
    }
}

// Values are fixed-size, a validated code, or a file name of at most MAX_FILE_NAME bytes
// (checked before a statement is built), so the shared encoder never truncates.
use shared::core::approval::field;

/// The signature document written next to a recording. Version 2 carries the bound session;
/// version 1 (older gateways) has none of those fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    pub version: u32,
    pub file: String,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<GrantCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<Nonce>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    pub key_id: KeyId,
    pub signature: SignatureBytes,
    pub signed_at: Timestamp,
}

impl Sidecar {
    /// The sidecar of a stored recording, rebuilt from the database's row and its request.
    /// A row signed by an older gateway (version 1) then fails as [`IntegrityError::Unbound`].
    pub fn of(rec: &StoredRecording<'_>, req: &Request) -> Self {
        Self::bound(&SessionBinding::of(rec, req), rec.sha256, rec.key_id, rec.signature)
    }

    /// A version 2 sidecar binding `s` to `sha256`, with a signature made elsewhere.
    pub fn bound(
        s: &SessionBinding,
        sha256: &[u8; 32],
        key_id: KeyId,
        signature: SignatureBytes,
    ) -> Self {
        Self {
            version: VERSION,
            file: s.file.clone(),
            sha256: hex::encode(sha256),
            request_id: Some(s.request_id),
            code: Some(s.code.clone()),
            nonce: Some(s.nonce),
            started_at: Some(s.started_at),
            ended_at: Some(s.ended_at),
            key_id,
            signature,
            signed_at: s.ended_at,
        }
    }

    /// A version 1 sidecar (the digest alone), as gateways before version 2 wrote them.
    pub fn digest_only(
        file: &str,
        sha256: &[u8; 32],
        key_id: KeyId,
        signature: SignatureBytes,
        signed_at: Timestamp,
    ) -> Self {
        Self {
            version: 1,
            file: file.to_owned(),
            sha256: hex::encode(sha256),
            request_id: None,
            code: None,
            nonce: None,
            started_at: None,
            ended_at: None,
            key_id,
            signature,
            signed_at,
        }
    }

    /// The bound session (version 2 with every field), if any.
    pub fn binding(&self) -> Option<SessionBinding> {
        if self.version != VERSION {
            return None;
        }
        Some(SessionBinding {
            request_id: self.request_id?,
            code: self.code.clone()?,
            nonce: self.nonce?,
            started_at: self.started_at?,
            ended_at: self.ended_at?,
            file: self.file.clone(),
        })
    }

    /// The exact signed bytes (the statement), for a version 2 sidecar.
    pub fn statement(&self) -> Option<Vec<u8>> {
        let mut sha = [0u8; 32];
        hex::decode_to_slice(&self.sha256, &mut sha).ok()?;
        (self.file.len() <= MAX_FILE_NAME).then(|| self.binding().map(|b| b.statement(&sha)))?
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
    /// The sidecar binding a file with digest `sha256` to `session` (signed at its end).
    pub fn sign(&self, session: &SessionBinding, sha256: &[u8; 32]) -> Sidecar {
        debug_assert!(session.file.len() <= MAX_FILE_NAME, "the gateway names its files");
        let sig = self.key.sign(&session.statement(sha256));
        Sidecar::bound(session, sha256, self.id, SignatureBytes::from_bytes(sig.to_bytes()))
    }
    /// A version 1 sidecar (the digest alone), as gateways before version 2 wrote them. Only
    /// for tests that check such a signature is reported as not bound.
    pub fn sign_v1(&self, file: &str, sha256: &[u8; 32], at: Timestamp) -> Sidecar {
        let sig = self.key.sign(&message_v1(sha256));
        Sidecar::digest_only(file, sha256, self.id, SignatureBytes::from_bytes(sig.to_bytes()), at)
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
    #[error(
        "signature valid but not bound to a session (v1): it would verify for any session's copy of this file"
    )]
    Unbound,
    /// `signed` and `expected` are shown escaped and cut (see `shown`): both can come from a
    /// tampered file.
    #[error(
        "not this session's recording: the signature binds {field} {signed}, {by} says {expected}"
    )]
    WrongSession { field: &'static str, signed: String, expected: String, by: &'static str },
}

impl IntegrityError {
    /// A stable code for the error, for JSON and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Read { .. } => "recording_unreadable",
            Self::BadSidecar(_) => "bad_sidecar",
            Self::DigestMismatch { .. } => "recording_changed",
            Self::UnpinnedKey(_) => "unpinned_key",
            Self::BadSignature(_) => "bad_signature",
            Self::Unbound => "signature_not_bound",
            Self::WrongSession { .. } => "wrong_session",
        }
    }
}

/// Untrusted text for a message: controls and invisible characters escaped, at most 80
/// characters.
fn shown(s: &str) -> String {
    let escaped = crate::replay::printable(s);
    let mut out: String = escaped.chars().take(80).collect();
    if escaped.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// What a successful check established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub sha256: [u8; 32],
    pub key_id: KeyId,
    pub signed_at: Timestamp,
    /// The session the signature binds the file to.
    pub session: SessionBinding,
}

/// What the verifier knows of the session, independently of the sidecar: each field given is
/// compared with the signed one.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub request_id: Option<RequestId>,
    pub code: Option<GrantCode>,
    pub nonce: Option<Nonce>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub file: Option<String>,
    /// Where these come from, for the message (`the database`, `the file's name`).
    pub by: &'static str,
}

impl Expected {
    /// Everything, from the database's row and its request.
    pub fn session(rec: &StoredRecording<'_>, req: &Request) -> Self {
        let b = SessionBinding::of(rec, req);
        Self {
            request_id: Some(b.request_id),
            code: Some(b.code),
            nonce: Some(b.nonce),
            started_at: Some(b.started_at),
            ended_at: Some(b.ended_at),
            file: Some(b.file),
            by: "the database",
        }
    }

    /// The name the file is found under.
    pub fn file_name(path: &Path) -> Self {
        Self {
            file: path.file_name().map(|n| n.to_string_lossy().into_owned()),
            by: "the file's name",
            ..Self::default()
        }
    }

    fn check(&self, b: &SessionBinding) -> Result<(), IntegrityError> {
        let differs = |field, signed: String, expected: Option<String>| match expected {
            Some(e) if e != signed => Err(IntegrityError::WrongSession {
                field,
                signed: shown(&signed),
                expected: shown(&e),
                by: self.by,
            }),
            _ => Ok(()),
        };
        differs("grant", b.code.to_string(), self.code.as_ref().map(ToString::to_string))?;
        differs("request id", b.request_id.to_string(), self.request_id.map(|r| r.to_string()))?;
        differs("nonce", b.nonce.to_hex(), self.nonce.map(|n| n.to_hex()))?;
        differs("session start", b.started_at.rfc3339(), self.started_at.map(Timestamp::rfc3339))?;
        differs("session end", b.ended_at.rfc3339(), self.ended_at.map(Timestamp::rfc3339))?;
        differs("file name", b.file.clone(), self.file.clone())
    }
}

/// The recording's own header (its first line), checked against the binding: the grant code
/// and id under `"breakglass"`, and the start time, each where the header has it. (The header
/// is covered by the digest; this names the session a swapped file belongs to.)
fn check_header(bytes: &[u8], b: &SessionBinding) -> Result<(), IntegrityError> {
    let line = bytes.split(|c| *c == b'\n').next().unwrap_or_default();
    let Ok(header) = serde_json::from_slice::<serde_json::Value>(line) else { return Ok(()) };
    let meta = &header["breakglass"];
    let wrong = |field, signed: String, expected: String| IntegrityError::WrongSession {
        field,
        signed: shown(&signed),
        expected: shown(&expected),
        by: "the recording's header",
    };
    if let Some(code) = meta["code"].as_str()
        && code != b.code.as_str()
    {
        return Err(wrong("grant", b.code.to_string(), code.to_owned()));
    }
    if let Some(id) = meta["grant_id"].as_str()
        && id != b.request_id.to_string()
    {
        return Err(wrong("request id", b.request_id.to_string(), id.to_owned()));
    }
    if let Some(t) = header["timestamp"].as_i64()
        && t != b.started_at.unix()
    {
        return Err(wrong(
            "session start",
            b.started_at.rfc3339(),
            Timestamp::from_unix(t).rfc3339(),
        ));
    }
    Ok(())
}

/// Checks `file` against its sidecar and the pinned keys: the sidecar must be for a file of
/// this name, the file's SHA-256 must be the signed one, its header must name the bound
/// session, and the signature must verify (strictly) with a pinned key.
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
    verify_bytes(&bytes, &side, pins, &Expected::file_name(file))
}

/// [`verify_file`] on bytes already in memory, against what the caller knows of the session.
///
/// # Errors
/// Any [`IntegrityError`] but `Read`.
pub fn verify_bytes(
    bytes: &[u8],
    side: &Sidecar,
    pins: &[VerifyingKey],
    expected: &Expected,
) -> Result<Verified, IntegrityError> {
    if let Some(b) = side.binding() {
        expected.check(&b)?;
        check_header(bytes, &b)?;
    }
    let actual: [u8; 32] = Sha256::digest(bytes).into();
    verify_digest(&actual, side, pins, expected)
}

/// Checks the signature over a digest without the file (the file lives elsewhere).
///
/// # Errors
/// `WrongSession` when the binding differs from `expected`, `DigestMismatch` when `side`
/// names another digest, `UnpinnedKey`, `BadSignature`, `Unbound` for a version 1 signature.
pub fn verify_digest(
    sha256: &[u8; 32],
    side: &Sidecar,
    pins: &[VerifyingKey],
    expected: &Expected,
) -> Result<Verified, IntegrityError> {
    let binding = side.binding();
    if let Some(b) = &binding {
        expected.check(b)?;
    }
    if hex::encode(sha256) != side.sha256 {
        return Err(IntegrityError::DigestMismatch {
            actual: hex::encode(sha256),
            signed: side.sha256.clone(),
        });
    }
    let key = pinned(pins, &side.key_id).ok_or(IntegrityError::UnpinnedKey(side.key_id))?;
    let sig = Signature::from_bytes(side.signature.as_bytes());
    let bound = binding
        .as_ref()
        .filter(|b| b.file.len() <= MAX_FILE_NAME)
        .is_some_and(|b| key.verify_strict(&b.statement(sha256), &sig).is_ok());
    match binding {
        Some(session) if bound => Ok(Verified {
            sha256: *sha256,
            key_id: side.key_id,
            signed_at: side.signed_at,
            session,
        }),
        // A version 1 signature, in a version 1 sidecar or behind a row rebuilt as version 2.
        _ if key.verify_strict(&message_v1(sha256), &sig).is_ok() => Err(IntegrityError::Unbound),
        _ => Err(IntegrityError::BadSignature(side.key_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(code: &str, id: u8, started: i64, file: &str) -> SessionBinding {
        SessionBinding {
            request_id: format!("6f1c2a1e-8f43-4b7e-9a55-{id:012x}").parse().expect("id"),
            code: GrantCode::parse(code).expect("code"),
            nonce: Nonce::from_bytes([id; 32]),
            started_at: Timestamp::from_unix(started),
            ended_at: Timestamp::from_unix(started + 60),
            file: file.to_owned(),
        }
    }

    fn cast(b: &SessionBinding) -> Vec<u8> {
        format!(
            "{{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":{},\"breakglass\":{{\"grant_id\":\"{}\",\"code\":\"{}\"}}}}\n[0.1,\"o\",\"hi\"]\n",
            b.started_at.unix(),
            b.request_id,
            b.code
        )
        .into_bytes()
    }

    /// Writes `b`'s recording and sidecar into `dir` under `b.file`.
    fn write(dir: &Path, signer: &RecordingSigner, b: &SessionBinding) -> (PathBuf, Vec<u8>) {
        let body = cast(b);
        let path = dir.join(&b.file);
        std::fs::write(&path, &body).expect("cast");
        let side = signer.sign(b, &Sha256::digest(&body).into());
        std::fs::write(sidecar_path(&path), serde_json::to_vec(&side).expect("json")).expect("sig");
        (path, body)
    }

    #[test]
    fn a_signed_recording_verifies_and_any_change_is_caught()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let signer = RecordingSigner::new(SigningKey::from_bytes(&[7; 32]));
        let b = binding("bg-000001", 1, 1_795_403_640, "bg-000001-1795403640.cast");
        let (file, body) = write(dir.path(), &signer, &b);
        let pins = [signer.verifying_key()];
        let v = verify_file(&file, &pins)?;
        assert_eq!((v.key_id, &v.session), (signer.key_id(), &b));

        // One byte changed.
        let mut changed = body.clone();
        let at = changed.len() - 4;
        changed[at] ^= 1;
        std::fs::write(&file, &changed)?;
        assert!(matches!(verify_file(&file, &pins), Err(IntegrityError::DigestMismatch { .. })));

        // Another key's signature over the right statement.
        std::fs::write(&file, &body)?;
        let rogue = RecordingSigner::new(SigningKey::from_bytes(&[8; 32]));
        let forged =
            Sidecar { key_id: signer.key_id(), ..rogue.sign(&b, &Sha256::digest(&body).into()) };
        std::fs::write(sidecar_path(&file), serde_json::to_vec(&forged)?)?;
        assert!(matches!(verify_file(&file, &pins), Err(IntegrityError::BadSignature(_))));
        assert!(matches!(
            verify_file(&file, &[rogue.verifying_key()]),
            Err(IntegrityError::UnpinnedKey(_))
        ));

        // A bound field changed in the sidecar (the signature no longer covers it).
        let mut moved = signer.sign(&b, &Sha256::digest(&body).into());
        moved.ended_at = Some(Timestamp::from_unix(1_795_409_999));
        std::fs::write(sidecar_path(&file), serde_json::to_vec(&moved)?)?;
        assert!(matches!(verify_file(&file, &pins), Err(IntegrityError::BadSignature(_))));
        Ok(())
    }

    /// Session X's recording and signature copied over session Y's: refused by name, by the
    /// database's row and by the header, each naming what differs.
    #[test]
    fn another_sessions_recording_is_refused_naming_the_mismatch()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let signer = RecordingSigner::new(SigningKey::from_bytes(&[7; 32]));
        let pins = [signer.verifying_key()];
        let x = binding("bg-00000a", 10, 1_795_403_640, "bg-00000a-1795403640.cast");
        let y = binding("bg-00000b", 11, 1_795_403_700, "bg-00000b-1795403700.cast");
        let (xf, xbody) = write(dir.path(), &signer, &x);
        let (yf, _) = write(dir.path(), &signer, &y);
        assert!(verify_file(&xf, &pins).is_ok() && verify_file(&yf, &pins).is_ok());
        std::fs::copy(&xf, &yf)?;
        std::fs::copy(sidecar_path(&xf), sidecar_path(&yf))?;
        let e = verify_file(&yf, &pins).expect_err("a copy under Y's name");
        assert_eq!(
            e.to_string(),
            "not this session's recording: the signature binds file name bg-00000a-1795403640.cast, the file's name says bg-00000b-1795403700.cast"
        );
        // Against Y's database row (what the review page, chat and the API know).
        let side: Sidecar = serde_json::from_slice(&std::fs::read(sidecar_path(&yf))?)?;
        let db_y = Expected {
            request_id: Some(y.request_id),
            code: Some(y.code.clone()),
            nonce: Some(y.nonce),
            started_at: Some(y.started_at),
            ended_at: Some(y.ended_at),
            file: Some(y.file.clone()),
            by: "the database",
        };
        let e = verify_bytes(&xbody, &side, &pins, &db_y).expect_err("X's sidecar for Y");
        assert!(
            e.to_string().contains("binds grant bg-00000a, the database says bg-00000b"),
            "{e}"
        );
        // Y's row pointed at X's digest and signature (a database writer): the header says X.
        let ysig = signer.sign(&y, &Sha256::digest(&xbody).into());
        let row_y = Sidecar { signature: side.signature, ..ysig };
        let e = verify_bytes(&xbody, &row_y, &pins, &db_y).expect_err("X's signature on Y's row");
        assert!(
            e.to_string().contains("binds grant bg-00000b, the recording's header says bg-00000a"),
            "{e}"
        );
        // A header's text is shown escaped and cut.
        let evil = String::from_utf8(xbody.clone())?.replace("bg-00000a", "\\u001b]52;c;x\\u0007");
        let e = verify_bytes(evil.as_bytes(), &side, &pins, &Expected::default())
            .expect_err("a header naming another grant");
        assert!(matches!(e, IntegrityError::WrongSession { .. }), "{e}");
        assert!(!e.to_string().contains('\u{1b}'), "{e}");
        let long = String::from_utf8(xbody.clone())?.replace("bg-00000a", &"x".repeat(5000));
        let e = verify_bytes(long.as_bytes(), &side, &pins, &Expected::default())
            .expect_err("a header naming another grant");
        assert!(matches!(e, IntegrityError::WrongSession { .. }), "{e}");
        assert!(e.to_string().len() < 400, "{e}");
        // Without the file (digest only), the signature itself refuses Y's statement.
        let e = verify_digest(&Sha256::digest(&xbody).into(), &row_y, &pins, &db_y)
            .expect_err("X's signature over Y's statement");
        assert!(matches!(e, IntegrityError::BadSignature(_)), "{e}");
        Ok(())
    }

    #[test]
    fn a_version_1_signature_is_valid_but_not_bound() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let signer = RecordingSigner::new(SigningKey::from_bytes(&[7; 32]));
        let pins = [signer.verifying_key()];
        let b = binding("bg-00000c", 12, 1_795_403_640, "bg-00000c-1795403640.cast");
        let (file, body) = write(dir.path(), &signer, &b);
        let sha: [u8; 32] = Sha256::digest(&body).into();
        let v1 = signer.sign_v1(&b.file, &sha, b.ended_at);
        std::fs::write(sidecar_path(&file), serde_json::to_vec(&v1)?)?;
        let e = verify_file(&file, &pins).expect_err("v1");
        assert_eq!(e.code(), "signature_not_bound");
        assert!(e.to_string().starts_with("signature valid but not bound to a session (v1)"));
        // The same signature behind a row the database rebuilds as version 2.
        let row = Sidecar { signature: v1.signature, ..signer.sign(&b, &sha) };
        assert!(matches!(
            verify_bytes(&body, &row, &pins, &Expected::default()),
            Err(IntegrityError::Unbound)
        ));
        Ok(())
    }
}
