//! Fuzzing entry points for the parsers of outside input that live in `shared`: approvals as
//! they arrive (JSON from the API and the audit log, or raw signature bytes) checked against
//! pinned keys, and the config loader from TOML text.
//!
//! Each function takes arbitrary bytes and must never panic; where a property holds for every
//! input it is asserted. The cargo-fuzz targets in `fuzz/` call these, and
//! `bot/tests/fuzz_corpus.rs` replays every checked-in corpus file through them on stable.

use std::sync::OnceLock;

use ed25519_dalek::SigningKey;

use crate::core::approval::{ApprovalSigner, PinnedKeys, SignatureBytes, parse_public_key};
use crate::core::{
    Approval, GrantCode, GrantDuration, HostName, KeyId, Login, Nonce, Origin, PrincipalName,
    Reason, Request, RequestId, ScopeName, Status, Timestamp,
};

/// A fuzz target: the name of `fuzz/fuzz_targets/NAME.rs` and its body.
pub type Target = (&'static str, fn(&[u8]));

/// The targets this crate owns.
pub const TARGETS: &[Target] = &[("approval", approval), ("config", config)];

struct Fixture {
    request: Request,
    pins: PinnedKeys,
    /// The only approvals that may verify: the bot's for bob, carol's own.
    valid: [Approval; 2],
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let name = |s: &str| PrincipalName::parse(s).unwrap_or_else(|_| unreachable!());
        let request = Request {
            id: RequestId::from_uuid(uuid::Uuid::from_bytes([7; 16])),
            code: GrantCode::from_random([0x7f, 0x3a, 0x2c]),
            requester: name("alice"),
            scope: ScopeName::parse("prod-db").unwrap_or_else(|_| unreachable!()),
            host: HostName::parse("db-1").unwrap_or_else(|_| unreachable!()),
            login: Login::parse("root").unwrap_or_else(|_| unreachable!()),
            duration: GrantDuration::from_secs(1800).unwrap_or_else(|_| unreachable!()),
            reason: Reason::parse("disk full on db-1").unwrap_or_else(|_| unreachable!()),
            nonce: Nonce::from_bytes([9; 32]),
            not_before: Timestamp::from_unix(1_700_000_000),
            not_after: Timestamp::from_unix(1_700_003_600),
            pending_until: Timestamp::from_unix(1_700_001_800),
            origin: Origin::Api,
            status: Status::Pending,
            approvals: Vec::new(),
            closed_by: None,
            updated_at: Timestamp::from_unix(1_700_000_000),
            version: 0,
        };
        let bot = ApprovalSigner::new(SigningKey::from_bytes(&[1; 32]));
        let carol = ApprovalSigner::new(SigningKey::from_bytes(&[2; 32]));
        let mut pins = PinnedKeys::new();
        pins.pin_bot(bot.verifying_key());
        pins.pin_personal(name("carol"), carol.verifying_key());
        let at = Timestamp::from_unix(1_700_000_060);
        let valid =
            [bot.sign(&request, &name("bob"), at), carol.sign(&request, &name("carol"), at)];
        Fixture { request, pins, valid }
    })
}

/// Fuzz target `approval`: an approval from outside, checked strictly against pinned keys.
///
/// Input starting with `{` is an approval in its JSON form (the API's and the audit log's);
/// anything else is raw: 64 signature bytes, 8 bytes of signed-at (big-endian), 1 byte picking
/// the key id (bot, carol, or the next 8 bytes), then the approver's name. The text of the input
/// also goes through the hex and `ed25519:` decoders.
///
/// # Panics
/// If an approval other than the two really signed ones verifies.
pub fn approval(data: &[u8]) {
    let _ = approval_verifies(data);
}

/// The body of [`approval`]: whether the approval in `data` verified (it must be one of the
/// two really signed ones). The corpus test checks that the seeds do, so that the fuzzer
/// starts from the accepting path.
///
/// # Panics
/// As [`approval`].
pub fn approval_verifies(data: &[u8]) -> bool {
    let f = fixture();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = SignatureBytes::from_hex(text);
        let _ = parse_public_key(text);
        let _ = KeyId::from_hex(text);
    }
    let candidate = if data.first() == Some(&b'{') {
        serde_json::from_slice::<Approval>(data).ok()
    } else {
        raw_approval(data, f)
    };
    let Some(a) = candidate else { return false };
    let ok = f.pins.verify_signature(&f.request, &a).is_ok();
    assert!(!ok || f.valid.contains(&a), "a forged approval verified: {a:?}");
    ok
}

fn raw_approval(data: &[u8], f: &Fixture) -> Option<Approval> {
    let sig: [u8; 64] = data.get(..64)?.try_into().ok()?;
    let at: [u8; 8] = data.get(64..72)?.try_into().ok()?;
    let rest = data.get(72..)?;
    let (key_id, name) = match rest.split_first()? {
        (0, name) => (f.valid[0].key_id, name),
        (1, name) => (f.valid[1].key_id, name),
        (_, rest) => {
            let id = rest.get(..8)?;
            (KeyId::from_hex(&hex::encode(id)).ok()?, rest.get(8..)?)
        }
    };
    Some(Approval {
        approver: PrincipalName::parse(std::str::from_utf8(name).ok()?).ok()?,
        key_id,
        signed_at: Timestamp::from_unix(i64::from_be_bytes(at)),
        signature: SignatureBytes::from_bytes(sig),
    })
}

/// Fuzz target `config`: TOML text through the whole loader (figment, then validation).
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::from_toml_str(text);
    }
}
