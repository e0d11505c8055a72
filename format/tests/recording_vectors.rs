//! Checked-in test vectors for the recording signature statement
//! (`tests/vectors/recording-v2.json`, docs/recording-signature.md): a fixed key, session and
//! file digest must give exactly the stored statement bytes and signature, and the stored
//! signature must verify, so another implementation can be checked against ours and ours
//! cannot drift unnoticed.
//!
//! Regenerate only on a deliberate format change (and bump the version):
//! `BREAKGLASS_BLESS=1 cargo test -p breakglass-format --test recording_vectors`.

use ed25519_dalek::SigningKey;
use format::integrity::{Expected, RecordingSigner, SessionBinding, Sidecar, verify_digest};
use serde_json::{Value, json};
use shared::core::approval::public_key_text;
use shared::core::{GrantCode, Nonce, Timestamp};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/recording-v2.json");

fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("vector field {k} must be a string"))
}

fn session(v: &Value) -> (SessionBinding, [u8; 32]) {
    let s = &v["session"];
    let b = SessionBinding {
        request_id: text(s, "request_id").parse().expect("request id"),
        code: GrantCode::parse(text(s, "code")).expect("code"),
        nonce: Nonce::from_hex(text(s, "nonce")).expect("nonce"),
        started_at: Timestamp::from_unix(s["started_at"].as_i64().expect("started_at")),
        ended_at: Timestamp::from_unix(s["ended_at"].as_i64().expect("ended_at")),
        file: text(s, "file").to_owned(),
    };
    let mut sha = [0u8; 32];
    hex::decode_to_slice(text(v, "file_sha256"), &mut sha).expect("file_sha256");
    (b, sha)
}

fn compute(v: &Value) -> Value {
    let seed: [u8; 32] =
        hex::decode(text(v, "private_key_seed")).expect("hex").try_into().expect("32 bytes");
    let signer = RecordingSigner::new(SigningKey::from_bytes(&seed));
    let (b, sha) = session(v);
    let side = signer.sign(&b, &sha);
    json!({
        "public_key": public_key_text(&signer.verifying_key()),
        "key_id": side.key_id.to_hex(),
        "statement": hex::encode(b.statement(&sha)),
        "signature": side.signature.to_hex(),
    })
}

#[test]
fn recording_vectors_match() {
    let text_ = std::fs::read_to_string(PATH).expect("vectors file");
    let mut vectors: Vec<Value> = serde_json::from_str(&text_).expect("vectors JSON");
    assert!(vectors.len() >= 2, "at least two vectors");
    let bless = std::env::var_os("BREAKGLASS_BLESS").is_some();
    for v in &mut vectors {
        let got = compute(v);
        if bless {
            v["expect"] = got;
            continue;
        }
        assert_eq!(v["expect"], got, "vector {}", v["name"]);
        // The verifier accepts the stored signature, the sidecar rebuilt from the fields alone.
        let (b, sha) = session(v);
        let e = &v["expect"];
        let key = shared::core::approval::parse_public_key(text(e, "public_key")).expect("key");
        let side = Sidecar {
            signature: shared::core::approval::SignatureBytes::from_hex(text(e, "signature"))
                .expect("signature"),
            ..RecordingSigner::new(SigningKey::from_bytes(&[0; 32])).sign(&b, &sha)
        };
        let side = Sidecar { key_id: shared::core::KeyId::of(key.as_bytes()), ..side };
        assert_eq!(side.statement().map(hex::encode).as_deref(), Some(text(e, "statement")));
        let ok = verify_digest(&sha, &side, &[key], &Expected::default()).expect("verifies");
        assert_eq!(ok.session, b);
        // One field off and it does not.
        let other = Sidecar { ended_at: Some(b.ended_at.plus_secs(1)), ..side };
        assert!(verify_digest(&sha, &other, &[key], &Expected::default()).is_err());
    }
    if bless {
        let out = serde_json::to_string_pretty(&vectors).expect("json") + "\n";
        std::fs::write(PATH, out).expect("write vectors");
    }
}
