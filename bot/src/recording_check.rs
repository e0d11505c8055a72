//! Recordings in `breakglass audit verify`: each `session_ended` event's signature is
//! re-verified over the statement rebuilt from the audit log alone (the request's code and
//! nonce from its `requested` event; start, end, file, digest from `session_ended`; see
//! docs/recording-signature.md), then the `recordings` row and, when it is on this machine,
//! the file and its `FILE.sig` must agree with the log. Each problem names the session and the
//! first field that differs.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use format::integrity::{self, Expected, SessionBinding, Sidecar, StoredRecording};
use format::store::RecordingStore;
use shared::core::approval::SignatureBytes;
use shared::core::{AuditEntry, AuditKind, KeyId, Request, RequestId, Timestamp};
use shared::ports::{RecordingRecord, Store};

/// A stored recording row, lent as the fields the format crate binds and checks (its
/// `StoredRecording`: the format links no storage, so it cannot name the row's type).
pub fn stored(rec: &RecordingRecord) -> StoredRecording<'_> {
    StoredRecording {
        file: &rec.file,
        sha256: &rec.sha256,
        key_id: rec.key_id,
        signature: rec.signature,
        started_at: rec.started_at,
        ended_at: rec.ended_at,
    }
}

/// What the recordings check found.
#[derive(Debug, Default)]
pub struct RecordingsReport {
    /// Signatures checked against the log.
    pub checked: u64,
    /// Files found on this machine and re-hashed.
    pub files: u64,
    /// One line per recording that does not verify, bound, where the log says it should.
    pub problems: Vec<String>,
}

/// A `session_ended` event with a recording, if `e` is one.
pub fn is_recording_end(e: &AuditEntry) -> bool {
    e.kind == AuditKind::SessionEnded.as_str() && e.data.contains("\"recording_sha256\"")
}

/// The sidecar the log describes for `req`'s session (version 2 when the event carries the
/// bound fields, else the digest-only version 1), and the digest.
///
/// # Errors
/// A field is missing or malformed.
fn logged_sidecar(req: &Request, e: &AuditEntry) -> Result<(Sidecar, [u8; 32]), String> {
    let d: serde_json::Value =
        serde_json::from_str(&e.data).map_err(|err| format!("its data is not JSON: {err}"))?;
    let text = |k: &str| d[k].as_str().ok_or_else(|| format!("no `{k}`"));
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(text("recording_sha256")?, &mut sha256)
        .map_err(|_| "`recording_sha256` is not 32 bytes of hex".to_owned())?;
    let signature = SignatureBytes::from_hex(text("recording_signature")?)
        .map_err(|_| "`recording_signature` is not a signature".to_owned())?;
    let key_id = KeyId::from_hex(text("recording_key_id")?)
        .map_err(|_| "`recording_key_id` is not a key id".to_owned())?;
    let file = text("recording")?.to_owned();
    let time = |k: &str| d[k].as_i64().map(Timestamp::from_unix);
    let side =
        match (d["recording_signature_version"].as_u64(), time("started_at"), time("ended_at")) {
            (Some(2), Some(started_at), Some(ended_at)) => {
                let b = SessionBinding {
                    request_id: req.id,
                    code: req.code.clone(),
                    nonce: req.nonce,
                    started_at,
                    ended_at,
                    file,
                };
                Sidecar::bound(&b, &sha256, key_id, signature)
            }
            _ => Sidecar::digest_only(&file, &sha256, key_id, signature, e.at),
        };
    Ok((side, sha256))
}

/// What the log says, as what a checker of the row or the file expects.
fn expected_from(side: &Sidecar) -> Expected {
    Expected {
        request_id: side.request_id,
        code: side.code.clone(),
        nonce: side.nonce,
        started_at: side.started_at,
        ended_at: side.ended_at,
        file: Some(side.file.clone()),
        by: "the audit log",
    }
}

/// Checks every recording the log's `ended` events describe (see the module docs).
pub async fn check(
    store: &dyn Store,
    recordings: &dyn RecordingStore,
    pins: &[VerifyingKey],
    ended: &[AuditEntry],
    requests: &BTreeMap<RequestId, Request>,
) -> RecordingsReport {
    let mut report = RecordingsReport::default();
    for e in ended {
        let id = e.request_id.as_deref().and_then(|r| r.parse::<RequestId>().ok());
        let Some(req) = id.and_then(|id| requests.get(&id)) else {
            report.problems.push(format!(
                "audit event seq {}: a session end for a request the log never created",
                e.seq
            ));
            continue;
        };
        report.checked += 1;
        if let Err(why) = check_one(store, recordings, pins, req, e, &mut report.files).await {
            report.problems.push(format!("recording of {} (seq {}): {why}", req.code, e.seq));
        }
    }
    report
}

async fn check_one(
    store: &dyn Store,
    recordings: &dyn RecordingStore,
    pins: &[VerifyingKey],
    req: &Request,
    e: &AuditEntry,
    files: &mut u64,
) -> Result<(), String> {
    let (side, sha256) = logged_sidecar(req, e)?;
    // The signature over what the log says.
    integrity::verify_digest(&sha256, &side, pins, &Expected::default())
        .map_err(|err| err.to_string())?;
    // The row must say the same.
    let row = store
        .recording(req.id)
        .await
        .map_err(|err| format!("cannot read its row: {err}"))?
        .ok_or("the recordings table has no row for it")?;
    let differs = [
        ("file", row.file != side.file),
        ("sha256", hex::encode(row.sha256) != side.sha256),
        ("signature", row.signature != side.signature),
        ("key_id", row.key_id != side.key_id),
        ("started_at", side.started_at.is_some_and(|t| t != row.started_at)),
        ("ended_at", side.ended_at.is_some_and(|t| t != row.ended_at)),
    ];
    if let Some((field, _)) = differs.iter().find(|(_, d)| *d) {
        return Err(format!("the recordings table disagrees with the audit log: field `{field}`"));
    }
    // The file and its sidecar, when they are on this machine.
    if !recordings.exists(&side.file) {
        return Ok(());
    }
    *files += 1;
    let expected = expected_from(&side);
    let bytes = recordings
        .read(&side.file)
        .map_err(|err| format!("cannot read {}: {err}", recordings.locate(&side.file)))?;
    integrity::verify_bytes(&bytes, &side, pins, &expected)
        .map_err(|err| format!("{}: {err}", side.file))?;
    if let Ok(text) = recordings.sidecar(&side.file) {
        let on_disk: Sidecar = serde_json::from_slice(&text)
            .map_err(|_| format!("{}.sig is not a recording signature", side.file))?;
        integrity::verify_bytes(&bytes, &on_disk, pins, &expected)
            .map_err(|err| format!("{}.sig: {err}", side.file))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use format::integrity::{IntegrityError, RecordingSigner};

    fn entry(req: &Request, data: serde_json::Value) -> AuditEntry {
        AuditEntry {
            seq: 7,
            at: Timestamp::from_unix(1_795_405_500),
            kind: AuditKind::SessionEnded.as_str().to_owned(),
            request_id: Some(req.id.to_string()),
            actor: "alice".into(),
            data: data.to_string(),
            prev_hash: [0; 32],
            hash: [0; 32],
        }
    }

    /// The log's `session_ended` gives the whole statement (v2); an event from an older
    /// gateway (no version, no start) holds a digest-only signature, which is not bound.
    #[test]
    fn the_log_rebuilds_the_statement_and_v1_is_not_bound() {
        let req = test_util::world::World::new().open_default();
        let signer = RecordingSigner::new(shared::testing::key(7));
        let pins = [signer.verifying_key()];
        let sha = [3u8; 32];
        let b = SessionBinding {
            request_id: req.id,
            code: req.code.clone(),
            nonce: req.nonce,
            started_at: Timestamp::from_unix(1_795_403_700),
            ended_at: Timestamp::from_unix(1_795_405_500),
            file: format!("{}-1795403700.cast", req.code),
        };
        let side = signer.sign(&b, &sha);
        let v2 = serde_json::json!({
            "recording": b.file, "recording_sha256": hex::encode(sha),
            "recording_signature": side.signature, "recording_key_id": side.key_id,
            "recording_signature_version": 2, "started_at": 1_795_403_700, "ended_at": 1_795_405_500,
        });
        let e = entry(&req, v2.clone());
        assert!(is_recording_end(&e));
        let (logged, digest) = logged_sidecar(&req, &e).expect("parses");
        let ok = integrity::verify_digest(&digest, &logged, &pins, &Expected::default());
        assert_eq!(ok.expect("verifies").session, b);
        // The log says another end than the one signed: the signature does not verify.
        let mut moved = v2.clone();
        moved["ended_at"] = 1_795_405_501.into();
        let (logged, digest) = logged_sidecar(&req, &entry(&req, moved)).expect("parses");
        assert!(matches!(
            integrity::verify_digest(&digest, &logged, &pins, &Expected::default()),
            Err(IntegrityError::BadSignature(_))
        ));
        // A version 1 event and signature.
        let old = signer.sign_v1(&b.file, &sha, b.ended_at);
        let v1 = serde_json::json!({
            "recording": b.file, "recording_sha256": hex::encode(sha),
            "recording_signature": old.signature, "recording_key_id": old.key_id,
        });
        let (logged, digest) = logged_sidecar(&req, &entry(&req, v1)).expect("parses");
        assert!(matches!(
            integrity::verify_digest(&digest, &logged, &pins, &Expected::default()),
            Err(IntegrityError::Unbound)
        ));
    }
}
