//! Signed approvals: the canonical bytes, Ed25519 signing, and strict verification against
//! pinned keys.
//!
//! # Canonical encoding, version 1
//!
//! An approval signs exactly these bytes (all integers big-endian):
//!
//! | bytes | content |
//! | --- | --- |
//! | 23 | the context `breakglass-approval-v1` followed by one NUL byte |
//! | then 12 fields, in this order, each as `tag: u8`, `len: u16`, `value: [u8; len]` | |
//! | tag 0x01 | request id: the 16 bytes of the UUID |
//! | tag 0x02 | requester name, UTF-8 |
//! | tag 0x03 | scope name, UTF-8 |
//! | tag 0x04 | host name, UTF-8 |
//! | tag 0x05 | login, UTF-8 |
//! | tag 0x06 | duration in seconds, u64 (8 bytes) |
//! | tag 0x07 | not-before, Unix seconds, i64 (8 bytes) |
//! | tag 0x08 | not-after, Unix seconds, i64 (8 bytes) |
//! | tag 0x09 | nonce, 32 bytes |
//! | tag 0x0A | SHA-256 of the reason's UTF-8 bytes, 32 bytes |
//! | tag 0x0B | approver name, UTF-8 |
//! | tag 0x0C | signed-at, Unix seconds, i64 (8 bytes) |
//!
//! The signature is plain Ed25519 (RFC 8032) over those bytes, checked with `verify_strict`.
//! The verifier always rebuilds the bytes from its own copy of the request; a digest or byte
//! string supplied by a client is never trusted. `docs/approval-format.md` has a worked example
//! and `shared/tests/vectors/approval-v1.json` the test vectors.

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::ids::{InvalidValue, KeyId, PrincipalName, Timestamp};
use super::policy::{PolicyError, ScopePolicy};
use super::request::Request;

/// The domain-separation prefix of version 1.
pub const CONTEXT_V1: &[u8] = b"breakglass-approval-v1\0";

/// How far (seconds) a signer's clock may run ahead of ours.
pub const CLOCK_SKEW_SECS: i64 = 60;

/// The fields an approval binds, borrowed from a request plus the approver and signing time.
#[derive(Debug, Clone, Copy)]
pub struct BoundFields<'a> {
    pub request: &'a Request,
    pub approver: &'a PrincipalName,
    pub signed_at: Timestamp,
}

impl BoundFields<'_> {
    /// The exact bytes that are signed (see the module docs).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let r = self.request;
        let mut out = Vec::with_capacity(320);
        out.extend_from_slice(CONTEXT_V1);
        field(&mut out, 0x01, r.id.as_bytes());
        field(&mut out, 0x02, r.requester.as_str().as_bytes());
        field(&mut out, 0x03, r.scope.as_str().as_bytes());
        field(&mut out, 0x04, r.host.as_str().as_bytes());
        field(&mut out, 0x05, r.login.as_str().as_bytes());
        field(&mut out, 0x06, &r.duration.secs().to_be_bytes());
        field(&mut out, 0x07, &r.not_before.unix().to_be_bytes());
        field(&mut out, 0x08, &r.not_after.unix().to_be_bytes());
        field(&mut out, 0x09, r.nonce.as_bytes());
        field(&mut out, 0x0A, &r.reason.sha256());
        field(&mut out, 0x0B, self.approver.as_str().as_bytes());
        field(&mut out, 0x0C, &self.signed_at.unix().to_be_bytes());
        out
    }
}

/// Appends one field of the canonical encoding: tag byte, big-endian `u16` length, value.
/// Shared by approvals and by the gateway's recording statements. Callers pass values of at
/// most `u16::MAX` bytes (validated names, fixed-size values, bounded file names), so this
/// never truncates.
pub fn field(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.push(tag);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&value[..usize::from(len)]);
}

/// A 64-byte Ed25519 signature, hex in JSON and in the database.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SignatureBytes([u8; 64]);

impl SignatureBytes {
    pub const fn from_bytes(b: [u8; 64]) -> Self {
        Self(b)
    }
    pub const fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// # Errors
    /// Not 128 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, InvalidValue> {
        let mut b = [0u8; 64];
        hex::decode_to_slice(s.trim(), &mut b).map_err(|_| InvalidValue {
            what: "signature",
            why: "must be 128 hex digits".into(),
        })?;
        Ok(Self(b))
    }
}

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sig({}…)", &self.to_hex()[..16])
    }
}
impl TryFrom<String> for SignatureBytes {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::from_hex(&s)
    }
}
impl From<SignatureBytes> for String {
    fn from(v: SignatureBytes) -> Self {
        v.to_hex()
    }
}

/// One approver's signed approval of one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub approver: PrincipalName,
    pub key_id: KeyId,
    pub signed_at: Timestamp,
    pub signature: SignatureBytes,
}

/// Which kind of pinned key made a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignerKind {
    /// The bot's approval key, attesting a click or API call it authenticated.
    Bot,
    /// The approver's own key (`breakglass approve --key`).
    Personal,
}

impl SignerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bot => "bot",
            Self::Personal => "personal",
        }
    }
}

/// An Ed25519 signing key with its key id. `Debug` never prints the secret.
pub struct ApprovalSigner {
    key: SigningKey,
    id: KeyId,
}

impl fmt::Debug for ApprovalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApprovalSigner").field("key_id", &self.id).finish_non_exhaustive()
    }
}

impl ApprovalSigner {
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

    /// Signs `request` for `approver` at `signed_at`.
    pub fn sign(
        &self,
        request: &Request,
        approver: &PrincipalName,
        signed_at: Timestamp,
    ) -> Approval {
        let bytes = BoundFields { request, approver, signed_at }.canonical_bytes();
        let sig = self.key.sign(&bytes);
        Approval {
            approver: approver.clone(),
            key_id: self.id,
            signed_at,
            signature: SignatureBytes(sig.to_bytes()),
        }
    }
}

/// Renders a public key the way config pins it: `ed25519:` and 64 hex digits.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("ed25519:{}", hex::encode(key.as_bytes()))
}

/// Parses `ed25519:<64 hex>`.
///
/// # Errors
/// Wrong prefix, wrong length, or bytes that are not a valid Ed25519 point.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, InvalidValue> {
    let bad = |why: &str| InvalidValue { what: "public key", why: why.into() };
    let hex_part = text
        .trim()
        .strip_prefix("ed25519:")
        .ok_or_else(|| bad("must start with `ed25519:` (as `breakglass keygen` prints it)"))?;
    let mut b = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut b)
        .map_err(|_| bad("must be `ed25519:` and 64 hex digits"))?;
    VerifyingKey::from_bytes(&b).map_err(|_| bad("is not a valid Ed25519 public key"))
}

/// When a pinned key may sign: approvals whose `signed_at` lies in `[not_before, not_after]`
/// (either end open when `None`). A rotated-out key keeps its old signatures valid and gets a
/// `not_after`; anything it signs later is refused.
///
/// The signing time is the signer's claim, but it is bound: an approval's `signed_at` must also
/// lie in its request's window, so a retired key cannot sign a request made after its
/// `not_after` (less the 60 s of clock skew) by backdating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Timestamp>,
}

impl Validity {
    /// Valid forever (a key pinned without a window).
    pub const ALWAYS: Self = Self { not_before: None, not_after: None };

    /// Whether a signature made at `at` is inside the window (both ends inclusive).
    pub fn contains(&self, at: Timestamp) -> bool {
        self.not_before.is_none_or(|nb| at >= nb) && self.not_after.is_none_or(|na| at <= na)
    }

    /// `from … until …` as a person reads it (`always` with no window).
    pub fn describe(&self) -> String {
        match (self.not_before, self.not_after) {
            (None, None) => "always".to_owned(),
            (Some(b), None) => format!("from {}", b.rfc3339()),
            (None, Some(a)) => format!("until {}", a.rfc3339()),
            (Some(b), Some(a)) => format!("from {} until {}", b.rfc3339(), a.rfc3339()),
        }
    }
}

/// The public keys the verifier trusts, from its own config (never from the database), each
/// with its [`Validity`].
#[derive(Debug, Clone, Default)]
pub struct PinnedKeys {
    bot: BTreeMap<KeyId, (VerifyingKey, Validity)>,
    personal: BTreeMap<KeyId, (PrincipalName, VerifyingKey, Validity)>,
}

/// One pinned key as [`PinnedKeys::all`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedKey {
    pub key_id: KeyId,
    pub key: VerifyingKey,
    /// `None` for the bot's key, the approver for a personal key.
    pub approver: Option<PrincipalName>,
    pub validity: Validity,
}

impl PinnedKeys {
    pub fn new() -> Self {
        Self::default()
    }
    /// Trusts `key` as the bot's approval key (several may be pinned during a rotation).
    pub fn pin_bot(&mut self, key: VerifyingKey) -> KeyId {
        self.pin_bot_within(key, Validity::ALWAYS)
    }
    /// Trusts `key` as the bot's approval key for signatures made inside `validity`.
    pub fn pin_bot_within(&mut self, key: VerifyingKey, validity: Validity) -> KeyId {
        let id = KeyId::of(key.as_bytes());
        self.bot.insert(id, (key, validity));
        id
    }
    /// Trusts `key` as `approver`'s personal key.
    pub fn pin_personal(&mut self, approver: PrincipalName, key: VerifyingKey) -> KeyId {
        self.pin_personal_within(approver, key, Validity::ALWAYS)
    }
    /// Trusts `key` as `approver`'s personal key for signatures made inside `validity`.
    pub fn pin_personal_within(
        &mut self,
        approver: PrincipalName,
        key: VerifyingKey,
        validity: Validity,
    ) -> KeyId {
        let id = KeyId::of(key.as_bytes());
        self.personal.insert(id, (approver, key, validity));
        id
    }
    pub fn bot_key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.bot.keys()
    }
    pub fn personal_keys(&self) -> impl Iterator<Item = (&KeyId, &PrincipalName)> {
        self.personal.iter().map(|(id, (who, _, _))| (id, who))
    }
    /// Whether `id` is pinned at all (as the bot's or someone's personal key).
    pub fn contains(&self, id: &KeyId) -> bool {
        self.bot.contains_key(id) || self.personal.contains_key(id)
    }
    /// Every pinned key with its validity: the bot's first, then the personal ones.
    pub fn all(&self) -> Vec<PinnedKey> {
        let bot = self.bot.iter().map(|(id, (key, validity))| PinnedKey {
            key_id: *id,
            key: *key,
            approver: None,
            validity: *validity,
        });
        let personal = self.personal.iter().map(|(id, (who, key, validity))| PinnedKey {
            key_id: *id,
            key: *key,
            approver: Some(who.clone()),
            validity: *validity,
        });
        bot.chain(personal).collect()
    }

    /// Checks one approval of `request` strictly: the key must be pinned (as the bot key, or as
    /// this approver's own key), the signing time inside the key's validity and the request's
    /// window, and the Ed25519 signature valid over the bytes rebuilt from `request`.
    ///
    /// # Errors
    /// `UnpinnedKey`, `OfflineSignatureRequired` (bot key on a scope that needs the
    /// approver's own), `KeyNotValidAt` (signed outside the key's pinned validity: a retired
    /// key), `SignatureOutOfWindow`, `BadSignature`.
    pub fn verify(
        &self,
        request: &Request,
        approval: &Approval,
        scope: &ScopePolicy,
    ) -> Result<SignerKind, PolicyError> {
        if scope.require_offline_signature && self.bot.contains_key(&approval.key_id) {
            return Err(PolicyError::OfflineSignatureRequired {
                scope: scope.name.to_string(),
                code: request.code.to_string(),
            });
        }
        self.verify_signature(request, approval)
    }

    /// [`Self::verify`] without the scope's offline-signature rule: the key is pinned for this
    /// approver (or is the bot's), the time is inside the window, the signature is valid. The
    /// audit verifier uses it, since a scope's rules may have changed since the approval.
    ///
    /// # Errors
    /// `UnpinnedKey`, `KeyNotValidAt`, `SignatureOutOfWindow`, `BadSignature`.
    pub fn verify_signature(
        &self,
        request: &Request,
        approval: &Approval,
    ) -> Result<SignerKind, PolicyError> {
        let (kind, key, validity) = if let Some((k, v)) = self.bot.get(&approval.key_id) {
            (SignerKind::Bot, k, v)
        } else {
            match self.personal.get(&approval.key_id) {
                Some((who, k, v)) if *who == approval.approver => (SignerKind::Personal, k, v),
                _ => return Err(PolicyError::UnpinnedKey(approval.key_id.to_hex())),
            }
        };
        let at = approval.signed_at;
        if !validity.contains(at) {
            return Err(PolicyError::KeyNotValidAt {
                key: approval.key_id.to_hex(),
                at: at.rfc3339(),
                validity: validity.describe(),
            });
        }
        if at < request.not_before.plus_secs(-CLOCK_SKEW_SECS) || at > request.not_after {
            return Err(PolicyError::SignatureOutOfWindow { at: at.rfc3339() });
        }
        let bytes =
            BoundFields { request, approver: &approval.approver, signed_at: at }.canonical_bytes();
        let sig = Signature::from_bytes(approval.signature.as_bytes());
        key.verify_strict(&bytes, &sig).map_err(|_| PolicyError::BadSignature)?;
        Ok(kind)
    }
}
