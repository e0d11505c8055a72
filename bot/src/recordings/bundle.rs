//! The audit bundle: one `.tar.gz` an auditor can verify offline, with `breakglass recording
//! verify` or with nothing but `openssl`.
//!
//! ```text
//! bg-7f3a2c/
//!   README.md                  how to verify, step by step
//!   bg-7f3a2c-1795403640.cast  the recording, byte for byte
//!   bg-7f3a2c-1795403640.cast.sig  the gateway's signature (JSON sidecar)
//!   recording-key.pub          the pinned key that signed it (breakglass format)
//!   recording-key.pem          the same key as SubjectPublicKeyInfo PEM (for openssl)
//!   signature.bin              the raw 64-byte Ed25519 signature
//!   statement.bin              the signed statement: the file's SHA-256 bound to the session
//!   request.json               the request, its approvals and their signature status
//!   audit.jsonl                the request's audit events, hash-chained
//!   session-events.jsonl       commands, exec requests, transfers, refused forwards
//!   SHA256SUMS                 sha256sum -c SHA256SUMS
//! ```

use std::io::Write as _;

use anyhow::{Context as _, Result};
use ed25519_dalek::pkcs8::EncodePublicKey as _;
use sha2::{Digest as _, Sha256};
use shared::core::approval::public_key_text;
use shared::core::{AuditEntry, Request};
use shared::ports::{RecordingRecord, SessionEvent};

use super::Recordings;
use crate::service::Deps;

/// Builds the bundle of a finished session (`cast` is the recording file's bytes).
pub fn build(
    deps: &Deps,
    recordings: &Recordings,
    req: &Request,
    rec: &RecordingRecord,
    cast: &[u8],
    audit: &[AuditEntry],
    events: &[SessionEvent],
) -> Result<Vec<u8>> {
    let key = format::integrity::pinned(&recordings.pins, &rec.key_id).with_context(|| {
        format!("the recording was signed by key {}, which is not pinned", rec.key_id)
    })?;
    let sidecar = format::integrity::Sidecar::of(&crate::recording_check::stored(rec), req);
    // The signed statement (docs/recording-signature.md), for openssl alone.
    let statement = sidecar.statement().context("the recording's file name is too long")?;
    let check = format::integrity::verify_bytes(
        cast,
        &sidecar,
        std::slice::from_ref(key),
        &format::integrity::Expected::session(&crate::recording_check::stored(rec), req),
    );
    let pem = key
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .context("encoding the recording key as PEM")?;
    let quorum = deps.config.policy.scope(&req.scope).map(|s| s.quorum).unwrap_or(0);
    let approvals: Vec<serde_json::Value> = req
        .approvals
        .iter()
        .map(|a| {
            let check = deps.pins.verify_signature(req, a);
            serde_json::json!({
                "approver": a.approver.as_str(),
                "key_id": a.key_id.to_hex(),
                "signed_at": a.signed_at,
                "signature": a.signature.to_hex(),
                "verified": check.is_ok(),
                "signer": check.as_ref().ok().map(|k| k.as_str()),
                "problem": check.err().map(|e| e.to_string()),
            })
        })
        .collect();
    let request = serde_json::json!({
        "id": req.id.to_string(),
        "code": req.code.to_string(),
        "requester": req.requester.as_str(),
        "scope": req.scope.as_str(),
        "host": req.host.as_str(),
        "login": req.login.as_str(),
        "duration_secs": req.duration.secs(),
        "reason": req.reason.as_str(),
        "reason_sha256": hex::encode(req.reason.sha256()),
        "nonce": req.nonce.to_hex(),
        "not_before": req.not_before,
        "not_after": req.not_after,
        "pending_until": req.pending_until,
        "origin": req.origin,
        "status": req.status.as_str(),
        "closed_by": req.closed_by.as_ref().map(|p| p.as_str()),
        "quorum": quorum,
        "approvals": approvals,
        "session": {
            "started_at": rec.started_at,
            "ended_at": rec.ended_at,
            "end_reason": rec.end_reason,
            "exit_status": rec.exit_status,
            "bytes_in": rec.bytes_in,
            "bytes_out": rec.bytes_out,
            "commands": rec.commands,
            "recording": rec.file,
            "recording_sha256": hex::encode(rec.sha256),
            "recording_verified": check.is_ok(),
            "recording_problem": check.as_ref().err().map(ToString::to_string),
        },
    });
    let mut audit_lines = Vec::new();
    for e in audit {
        serde_json::to_writer(&mut audit_lines, e)?;
        audit_lines.push(b'\n');
    }
    let mut event_lines = Vec::new();
    for e in events {
        serde_json::to_writer(
            &mut event_lines,
            &serde_json::json!({
                "request_id": e.request_id.to_string(),
                "at": e.at,
                "offset_ms": e.offset_ms,
                "kind": e.kind,
                "detail": e.detail,
            }),
        )?;
        event_lines.push(b'\n');
    }
    let files: Vec<(String, Vec<u8>)> = vec![
        ("README.md".into(), readme(req, rec).into_bytes()),
        (rec.file.clone(), cast.to_vec()),
        (format!("{}.sig", rec.file), serde_json::to_vec_pretty(&sidecar)?),
        ("recording-key.pub".into(), format!("{}\n", public_key_text(key)).into_bytes()),
        ("recording-key.pem".into(), pem.into_bytes()),
        ("signature.bin".into(), rec.signature.as_bytes().to_vec()),
        ("statement.bin".into(), statement),
        ("request.json".into(), serde_json::to_vec_pretty(&request)?),
        ("audit.jsonl".into(), audit_lines),
        ("session-events.jsonl".into(), event_lines),
    ];
    let mut sums = String::new();
    for (name, bytes) in &files {
        sums.push_str(&format!("{}  {name}\n", hex::encode(Sha256::digest(bytes))));
    }
    let dir = req.code.to_string();
    let mtime = u64::try_from(rec.ended_at.unix()).unwrap_or(0);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in
        files.iter().chain(std::iter::once(&("SHA256SUMS".to_owned(), sums.into_bytes())))
    {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, format!("{dir}/{name}"), bytes.as_slice())
            .with_context(|| format!("adding {name}"))?;
    }
    let mut gz = tar.into_inner().context("finishing the tar stream")?;
    gz.flush()?;
    Ok(gz.finish()?)
}

fn readme(req: &Request, rec: &RecordingRecord) -> String {
    let file = &rec.file;
    let code = &req.code;
    format!(
        r#"# Audit bundle for breakglass session {code}

Requester {requester}, {login}@{host}, {started} to {ended} ({reason_end}).
Exported from the breakglass reviewer page.

## Files

| file | what it is |
| --- | --- |
| `{file}` | the session recording (asciicast v2), byte for byte as the gateway wrote it |
| `{file}.sig` | the gateway's signature binding the recording's SHA-256 to this session (JSON) |
| `recording-key.pub` | the pinned recording key that signed it (breakglass format) |
| `recording-key.pem` | the same public key as PEM, for openssl |
| `signature.bin` | the raw 64-byte Ed25519 signature |
| `statement.bin` | the signed statement: request id, grant code, nonce, start, end, file name, SHA-256 |
| `request.json` | the request, its approvals and whether each signature verified |
| `audit.jsonl` | the request's audit events from the hash-chained audit log |
| `session-events.jsonl` | commands, exec requests and file transfers, with their times |
| `SHA256SUMS` | checksums of everything above |

## Verify with breakglass

```sh
sha256sum -c SHA256SUMS
breakglass recording verify {file} --key recording-key.pub
```

`recording OK` means the recording is exactly what the gateway signed for session {code}
(the signature binds the file's digest to the request id, grant code, nonce, start, end and
file name; docs/recording-signature.md in the breakglass sources). Compare the key
with the one pinned in your own config (`keys.pinned_recording_keys`), not only the copy in
this bundle: `breakglass recording verify {file} --config /etc/breakglass/breakglass.toml`.

## Verify with openssl alone

The gateway signs `statement.bin`, whose last 32 bytes are the file's SHA-256 and which
names the session (the grant code is the 9 bytes at offset 46):

```sh
openssl pkeyutl -verify -pubin -inkey recording-key.pem -rawin -in statement.bin -sigfile signature.bin
test "$(tail -c 32 statement.bin | od -An -tx1 | tr -d ' \n')" = "$(openssl dgst -sha256 -r {file} | cut -c1-64)" && echo "digest matches"
dd if=statement.bin bs=1 skip=46 count=9 2>/dev/null; echo
```

`Signature Verified Successfully`, `digest matches` and `{code}` mean the same as
`recording OK`.

## Replay

```sh
breakglass replay {file} --key recording-key.pub
breakglass replay {file} --key recording-key.pub --commands
asciinema play {file}
```
"#,
        requester = req.requester,
        login = req.login,
        host = req.host,
        started = rec.started_at.rfc3339(),
        ended = rec.ended_at.rfc3339(),
        reason_end = rec.end_reason,
    )
}
