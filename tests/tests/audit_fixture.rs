//! An audit database written by an earlier version verifies with this one.
//!
//! `tests/fixtures/audit-db/` is a data directory that `breakglass` wrote through real flows
//! (its README names the commit; `tests/examples/audit_fixture.rs` wrote it). The audit chain
//! hashes each event's JSON exactly as stored, so a change to how events are serialised, to
//! the migrations, or to what `audit verify` expects of old events shows here as a failure:
//! this build's `breakglass audit verify` must pass on a copy, with the same counts and head
//! hash, and a byte changed in one stored event must fail it at that event. The fixture must
//! also keep holding every kind of event, so that the check covers all of them.

use std::collections::BTreeSet;
use std::path::Path;

use e2e::{Output, cli, root};
use serde_json::Value;

const FIXTURE: &str = "tests/fixtures/audit-db";

/// A private copy of the fixture (verification migrates and writes the database), with the
/// modes the product gives its data (git keeps none).
fn copy_fixture() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("dir");
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).expect("chmod dir");
        for e in std::fs::read_dir(from).expect("the fixture is there").flatten() {
            let dest = to.join(e.file_name());
            if e.path().is_dir() {
                copy(&e.path(), &dest);
            } else {
                std::fs::copy(e.path(), &dest).expect("copy");
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod file");
            }
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    copy(&root().join(FIXTURE), dir.path());
    dir
}

/// `breakglass audit ARGS` on the copy in `dir`.
fn audit(dir: &Path, args: &[&str]) -> Output {
    let config = dir.join("breakglass.toml");
    let data = dir.join("data");
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    all.extend(["--config", config.to_str().expect("utf-8"), "--data-dir"]);
    all.push(data.to_str().expect("utf-8"));
    cli(&all, &[])
}

/// What `audit export` gives: every line, each with its `record` (`audit` for an audit event,
/// whose `data` is the stored JSON text; `session` for a finished session; otherwise a session
/// event of that kind with its detail's fields).
fn exported(dir: &Path) -> Vec<Value> {
    let out = audit(dir, &["export"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// The audit events among the exported lines.
fn audit_events(lines: &[Value]) -> Vec<Value> {
    lines.iter().filter(|l| l["record"] == "audit").cloned().collect()
}

fn data(e: &Value) -> Value {
    serde_json::from_str(e["data"].as_str().expect("data is the stored text")).expect("JSON")
}

/// The values of `field` in the data of the events of `kind`.
fn values(events: &[Value], kind: &str, field: &str) -> BTreeSet<String> {
    events
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| match &data(e)[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn an_audit_database_written_by_an_earlier_version_verifies() {
    let dir = copy_fixture();
    let v = audit(dir.path(), &["verify"]);
    assert_eq!(v.code, 0, "{}", v.all());
    for line in [
        "audit log OK: 105 events, hash chain intact, head 51ce1473c8dc808a155f418a4b4f9a51ff6dd862e5b0129401a00ce3065dc21b",
        "approvals OK: 26 signatures re-verified against 2 pinned key(s)",
        "requests OK: 18 match the audit log, each grant used once",
        "recordings OK: 11 signature(s) bound to their sessions re-verified against 1 pinned recording key(s), 11 file(s) on this machine re-hashed",
        "recordings OK: 11 file(s) in ",
    ] {
        assert!(v.stdout.contains(line), "`{line}` missing:\n{}", v.all());
    }
}

#[test]
fn the_fixture_holds_every_kind_of_event() {
    let dir = copy_fixture();
    let lines = exported(dir.path());
    let events = audit_events(&lines);
    let kinds: BTreeSet<String> =
        events.iter().map(|e| e["kind"].as_str().expect("kind").to_owned()).collect();
    assert_eq!(
        kinds,
        set(&[
            "requested",
            "approved",
            "denied",
            "granted",
            "revoked",
            "expired",
            "session_started",
            "session_ended",
            "session_refused",
            "key_loaded",
            "config_loaded",
            "review_link_issued",
            "recording_viewed",
        ])
    );
    let origins: BTreeSet<String> = events
        .iter()
        .filter(|e| e["kind"] == "requested")
        .map(|e| data(e)["origin"]["via"].as_str().expect("via").to_owned())
        .collect();
    assert_eq!(origins, set(&["api", "slack", "discord"]));
    assert_eq!(values(&events, "approved", "signer"), set(&["bot", "personal"]));
    assert_eq!(values(&events, "revoked", "was"), set(&["pending", "approved", "active"]));
    assert_eq!(values(&events, "expired", "was"), set(&["pending", "approved"]));
    assert_eq!(
        values(&events, "session_ended", "end_reason"),
        set(&[
            "closed",
            "revoked",
            "expired",
            "gateway_shutdown",
            "gateway_crashed",
            "recording_failed"
        ])
    );
    assert_eq!(values(&events, "session_refused", "code"), set(&["already_used", "no_grant"]));
    assert_eq!(
        values(&events, "recording_viewed", "view"),
        set(&["list", "page", "cast", "search", "api_bundle"])
    );

    // What happened inside the sessions (not hashed, but read by review and search).
    let session_events: Vec<&Value> =
        lines.iter().filter(|l| l["record"] != "audit" && l["record"] != "session").collect();
    assert_eq!(lines.iter().filter(|l| l["record"] == "session").count(), 11);
    let kinds: BTreeSet<String> =
        session_events.iter().map(|e| e["record"].as_str().expect("record").to_owned()).collect();
    assert_eq!(
        kinds,
        set(&[
            "shell",
            "exec",
            "subsystem",
            "command",
            "transfer",
            "env",
            "forward",
            "forward_refused"
        ])
    );
    assert!(
        session_events.iter().any(|e| e["record"] == "command" && e["source"] == "stdin"),
        "a command read on stdin: {session_events:?}"
    );
    let transfers: BTreeSet<String> = session_events
        .iter()
        .filter(|e| e["record"] == "transfer")
        .map(|e| e["op"].as_str().or(e["direction"].as_str()).unwrap_or("?").to_owned())
        .collect();
    assert!(transfers.is_superset(&set(&["sftp_init", "upload", "download"])), "{transfers:?}");
}

/// Every stored event of the earlier version reads as this version's typed data for its kind,
/// and writes back byte for byte, and so does every recording header's metadata (the chain hashes the stored text, so a type that dropped,
/// renamed or reordered a field would show here); every session event kind and every end
/// reason in the database is one this version knows.
#[test]
fn every_stored_payload_reads_as_its_type_and_writes_back_byte_for_byte() {
    use shared::core::{AuditData, AuditKind, EndReason, SessionEventKind};
    let dir = copy_fixture();
    let lines = exported(dir.path());
    let events = audit_events(&lines);
    assert!(events.len() > 100, "the fixture's events are read: {}", events.len());
    for e in &events {
        let kind = AuditKind::parse(e["kind"].as_str().expect("kind")).expect("a known kind");
        let stored = e["data"].as_str().expect("the stored text");
        let typed = AuditData::parse(kind, stored)
            .unwrap_or_else(|err| panic!("seq {}: {err}\n{stored}", e["seq"]));
        assert_eq!(typed.kind(), kind);
        assert_eq!(typed.to_json().to_string(), stored, "seq {} written back differs", e["seq"]);
    }
    // The header each recording carries under "breakglass", the same way.
    let mut headers = 0;
    for e in std::fs::read_dir(dir.path().join("data/recordings")).expect("recordings").flatten() {
        if e.path().extension().is_none_or(|x| x != "cast") {
            continue;
        }
        let bytes = std::fs::read(e.path()).expect("a recording");
        let first = bytes.split(|b| *b == b'\n').next().expect("a header line");
        let header: Value = serde_json::from_slice(first).expect("the header is JSON");
        let stored = &header["breakglass"];
        let typed: format::cast::RecordingMeta = serde_json::from_value(stored.clone())
            .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
        assert_eq!(typed.to_json().to_string(), stored.to_string(), "{}", e.path().display());
        headers += 1;
    }
    assert!(headers >= 10, "the fixture's recordings are read: {headers}");
    for l in lines.iter().filter(|l| l["record"] != "audit") {
        let record = l["record"].as_str().expect("record");
        if record == "session" {
            let reason = l["end_reason"].as_str().expect("end_reason");
            assert!(EndReason::parse(reason).is_ok(), "end reason `{reason}`");
        } else {
            assert!(SessionEventKind::parse(record).is_ok(), "session event kind `{record}`");
        }
    }
}

/// The check above is not vacuous: one byte of one stored event's JSON, changed in the
/// database file itself, fails verification at that event.
#[test]
fn a_byte_changed_in_a_stored_event_fails_verification_at_that_event() {
    let dir = copy_fixture();
    let lines = exported(dir.path());
    let events = audit_events(&lines);
    let requested = events.iter().rev().find(|e| e["kind"] == "requested").expect("a request");
    let seq = requested["seq"].as_i64().expect("seq");
    let digest = data(requested)["reason_sha256"].as_str().expect("reason_sha256").to_owned();

    // A fresh copy: the one above was opened (and so migrated and checkpointed) by export.
    let dir = copy_fixture();
    let db = dir.path().join("data/breakglass.db");
    let mut bytes = std::fs::read(&db).expect("the database file");
    let needle = format!("\"reason_sha256\":\"{digest}\"");
    let at: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_bytes())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the event's JSON is stored once, in its row");
    // The first hex digit of the digest, changed to another hex digit: still valid JSON.
    let i = at[0] + "\"reason_sha256\":\"".len();
    bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
    std::fs::write(&db, bytes).expect("write");

    let v = audit(dir.path(), &["verify"]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(
        v.stdout.contains(&format!("audit log BROKEN: audit chain broken at seq {seq}")),
        "{}",
        v.all()
    );
    assert!(v.stderr.contains(&format!("audit verification failed at seq {seq}")), "{}", v.all());
}
