//! Checked-in test vectors for the approval encoding (`tests/vectors/approval-v1.json`):
//! a fixed key and fixed fields must give exactly the stored bytes and signature, so another
//! implementation can be checked against ours and ours cannot drift unnoticed.
//!
//! Regenerate only on a deliberate format change (and bump the version):
//! `BREAKGLASS_BLESS=1 cargo test -p breakglass-shared --test approval_vectors`.

use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use shared::core::approval::{ApprovalSigner, BoundFields, PinnedKeys, public_key_text};
use shared::core::*;
use test_util::world::World;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/approval-v1.json");

fn field<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("vector field {k} must be a string"))
}

fn request_from(v: &Value) -> Request {
    let r = &v["request"];
    let w = World::new();
    let mut req = w.open_default();
    req.id = field(r, "id").parse().expect("id");
    req.requester = PrincipalName::parse(field(r, "requester")).expect("requester");
    req.scope = ScopeName::parse(field(r, "scope")).expect("scope");
    req.host = HostName::parse(field(r, "host")).expect("host");
    req.login = Login::parse(field(r, "login")).expect("login");
    req.duration =
        GrantDuration::from_secs(r["duration_secs"].as_u64().expect("duration")).expect("duration");
    req.not_before = Timestamp::from_unix(r["not_before"].as_i64().expect("not_before"));
    req.not_after = Timestamp::from_unix(r["not_after"].as_i64().expect("not_after"));
    req.nonce = Nonce::from_hex(field(r, "nonce")).expect("nonce");
    req.reason = Reason::parse(field(r, "reason")).expect("reason");
    req
}

fn compute(v: &Value) -> Value {
    let seed: [u8; 32] =
        hex::decode(field(v, "private_key_seed")).expect("hex").try_into().expect("32 bytes");
    let signer = ApprovalSigner::new(SigningKey::from_bytes(&seed));
    let req = request_from(v);
    let approver = PrincipalName::parse(field(v, "approver")).expect("approver");
    let at = Timestamp::from_unix(v["signed_at"].as_i64().expect("signed_at"));
    let bytes = BoundFields { request: &req, approver: &approver, signed_at: at }.canonical_bytes();
    let a = signer.sign(&req, &approver, at);
    json!({
        "public_key": public_key_text(&signer.verifying_key()),
        "key_id": a.key_id.to_hex(),
        "reason_sha256": hex::encode(req.reason.sha256()),
        "canonical_bytes": hex::encode(&bytes),
        "signature": a.signature.to_hex(),
    })
}

#[test]
fn vectors_match() {
    let text = std::fs::read_to_string(PATH).expect("vectors file");
    let mut vectors: Vec<Value> = serde_json::from_str(&text).expect("vectors JSON");
    assert!(vectors.len() >= 2, "at least two vectors");
    let bless = std::env::var_os("BREAKGLASS_BLESS").is_some();
    for v in &mut vectors {
        let got = compute(v);
        if bless {
            v["expect"] = got;
            continue;
        }
        assert_eq!(v["expect"], got, "vector {}", v["name"]);
        // And the verifier accepts the stored signature, rebuilt from the fields alone.
        let req = request_from(v);
        let mut pins = PinnedKeys::new();
        pins.pin_bot(approval::parse_public_key(field(&v["expect"], "public_key")).expect("key"));
        let a = Approval {
            approver: PrincipalName::parse(field(v, "approver")).expect("approver"),
            key_id: KeyId::from_hex(field(&v["expect"], "key_id")).expect("kid"),
            signed_at: Timestamp::from_unix(v["signed_at"].as_i64().expect("signed_at")),
            signature: approval::SignatureBytes::from_hex(field(&v["expect"], "signature"))
                .expect("sig"),
        };
        let mut scope = World::new().policy.scope(&req.scope).expect("scope").clone();
        scope.require_offline_signature = false;
        assert_eq!(pins.verify(&req, &a, &scope), Ok(SignerKind::Bot));
    }
    if bless {
        let out = serde_json::to_string_pretty(&vectors).expect("json") + "\n";
        std::fs::write(PATH, out).expect("write vectors");
    }
}
