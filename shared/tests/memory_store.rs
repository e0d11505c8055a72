//! The in-memory store (`shared::testing::memory::MemoryStore`) against the sqlx adapter: one
//! script of gateway-side calls (requests, approvals, refused writes, a session with its events
//! and its end, the audit log) runs on both, and everything the calls return must be the same,
//! audit hashes included. So the fake the gateway's unit tests use keeps the database's rules.
//!
//! The adapter side runs on SQLite and on PostgreSQL.

#![cfg(feature = "storage")]

use serde_json::json;
use shared::core::request::{self, Fresh};
use shared::core::{
    Action, AuditDraft, AuditKind, Request, RequestId, RequestRef, SessionEventKind, Status,
    Timestamp, Transition,
};
use shared::ports::{
    AuditLog as _, CommandSearch, GatewayStore, RecordingRecord, RequestFilter, Requests as _,
    SessionEvent, StoreError,
};
use shared::testing::db::{TestDb, TestResult};
use shared::testing::memory::MemoryStore;
use shared::testing::{T0, name};
use test_util::world::World;

test_util::both_backends!(the_fake_returns_what_the_database_returns);

async fn the_fake_returns_what_the_database_returns(db: TestDb) -> TestResult {
    let real = script(db.store.as_ref()).await;
    let fake = script(&MemoryStore::new()).await;
    assert!(real.len() > 30, "the script ran: {real:#?}");
    for (r, f) in real.iter().zip(&fake) {
        assert_eq!(f, r, "the fake differs from the database");
    }
    assert_eq!(fake.len(), real.len());
    Ok(())
}

#[tokio::test]
async fn a_store_that_is_down_refuses_everything_and_changes_nothing() {
    let store = MemoryStore::new();
    let w = World::new();
    let (req, draft) = open(&w, "alice", "db-1", w.fresh(), T0);
    store.set_down(true);
    let down = store.create_request(&req, &draft, ts(T0)).await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
    store.set_down(false);
    assert_eq!(store.get_request(&RequestRef::Id(req.id)).await, Err(StoreError::NotFound));
    assert_eq!(store.audit_page(0, 10).await, Ok(Vec::new()));
    assert_eq!(store.ping().await, Ok(()));
}

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_unix(secs)
}

fn open(w: &World, who: &str, host: &str, fresh: Fresh, at: i64) -> (Request, AuditDraft) {
    request::open(&w.policy, w.ask(who, host), fresh, ts(at)).expect("the policy allows it")
}

/// An audit event of `kind` with any data (the stores take what they are given).
fn draft(kind: AuditKind, request_id: Option<RequestId>, data: serde_json::Value) -> AuditDraft {
    AuditDraft { kind, request_id, actor: "gateway".into(), data }
}

fn step(w: &World, req: &Request, action: Action, at: i64) -> Transition {
    request::apply(req, action, &w.policy, &w.pins, ts(at)).expect("the core allows it")
}

fn approve(w: &World, req: &Request, who: &str, at: i64) -> Transition {
    step(w, req, Action::Approve(w.bot_approval(req, who, at)), at)
}

/// What a call returned, for the transcript: a conflict's wording is the database's own, so
/// only its kind is compared.
fn shown<T: std::fmt::Debug>(what: &str, r: &Result<T, StoreError>) -> String {
    match r {
        Err(StoreError::Conflict(_)) => format!("{what}: Conflict"),
        r => format!("{what}: {r:?}"),
    }
}

fn event(req: &Request, at: i64, kind: SessionEventKind, command: &str) -> SessionEvent {
    SessionEvent {
        request_id: req.id,
        at: ts(at),
        offset_ms: (at - T0) * 1000,
        kind,
        detail: json!({ "command": command }),
    }
}

/// The same calls, in the same order, with the same inputs; every result in order.
#[allow(clippy::too_many_lines)] // one script, read top to bottom
async fn script(store: &dyn GatewayStore) -> Vec<String> {
    let w = World::new();
    let mut out = Vec::new();
    let (a0, draft_a) = open(&w, "alice", "db-1", w.fresh(), T0);
    let (b0, draft_b) = open(&w, "alice", "db-2", w.fresh(), T0 + 1);
    // A request sharing a's nonce (as a bug or a forged row would give).
    let (c0, draft_c) = open(&w, "alice", "db-2", Fresh { nonce: a0.nonce, ..w.fresh() }, T0 + 2);
    out.push(shown("create a", &store.create_request(&a0, &draft_a, ts(T0)).await));
    out.push(shown("create b", &store.create_request(&b0, &draft_b, ts(T0 + 1)).await));
    out.push(shown("create c", &store.create_request(&c0, &draft_c, ts(T0 + 2)).await));
    out.push(shown("create a again", &store.create_request(&a0, &draft_a, ts(T0)).await));

    // Approvals: bob's lands, carol's over the old version is refused, bob's signature
    // replayed on b is refused, then carol approves the current version.
    let by_bob = approve(&w, &a0, "bob", T0 + 60);
    let replayed = by_bob.new_approval.clone();
    let a1 = by_bob.next.clone();
    out.push(shown("bob approves a", &store.apply(&by_bob, ts(T0 + 60)).await));
    let stale = approve(&w, &a0, "carol", T0 + 61);
    out.push(shown("carol approves a stale", &store.apply(&stale, ts(T0 + 61)).await));
    let mut forged = approve(&w, &b0, "bob", T0 + 62);
    forged.new_approval = replayed;
    out.push(shown("bob's signature on b", &store.apply(&forged, ts(T0 + 62)).await));
    let by_carol = approve(&w, &a1, "carol", T0 + 63);
    let a2 = by_carol.next.clone();
    out.push(shown("carol approves a", &store.apply(&by_carol, ts(T0 + 63)).await));
    let ghost = approve(&w, &open(&w, "alice", "db-1", w.fresh(), T0).0, "bob", T0 + 64);
    out.push(shown("approve a request never stored", &store.apply(&ghost, ts(T0 + 64)).await));

    // a's session starts; c, approved too, cannot start on the same nonce.
    let start = step(&w, &a2, Action::SessionStarted(shared::testing::session_started()), T0 + 120);
    let a3 = start.next.clone();
    out.push(shown("a starts", &store.apply(&start, ts(T0 + 120)).await));
    let c1 = approve(&w, &c0, "bob", T0 + 70);
    let c2 = approve(&w, &c1.next, "carol", T0 + 71);
    out.push(shown("bob approves c", &store.apply(&c1, ts(T0 + 70)).await));
    out.push(shown("carol approves c", &store.apply(&c2, ts(T0 + 71)).await));
    let c_start =
        step(&w, &c2.next, Action::SessionStarted(shared::testing::session_started()), T0 + 130);
    out.push(shown("c starts on a's nonce", &store.apply(&c_start, ts(T0 + 130)).await));

    // What happened in a's session, and its end.
    for e in [
        event(&a3, T0 + 125, SessionEventKind::Command, "Systemctl status"),
        event(&a3, T0 + 126, SessionEventKind::Exec, "uptime"),
        event(&a3, T0 + 127, SessionEventKind::Shell, "ignored"),
        event(&a3, T0 + 128, SessionEventKind::Command, "journalctl -u nginx"),
    ] {
        out.push(shown("session event", &store.add_session_event(&e).await));
    }
    let detail = shared::testing::session_ended();
    let end = step(&w, &a3, Action::SessionEnded(detail.clone()), T0 + 180);
    let rec = RecordingRecord {
        request_id: a3.id,
        file: detail.recording.clone(),
        sha256: [7; 32],
        signature: detail.recording_signature,
        key_id: detail.recording_key_id,
        started_at: detail.started_at,
        ended_at: detail.ended_at,
        end_reason: detail.end_reason,
        exit_status: Some(0),
        bytes_in: 3,
        bytes_out: 40,
        commands: 2,
    };
    out.push(shown("a ends", &store.end_session(&rec, Some(&end), &[], ts(T0 + 180)).await));
    let again = draft(AuditKind::SessionEnded, Some(a3.id), json!({}));
    out.push(shown("a ends again", &store.end_session(&rec, None, &[again], ts(T0 + 181)).await));
    let loaded = draft(AuditKind::KeyLoaded, None, json!({ "key": "k" }));
    out.push(shown("key loaded", &store.append_audit(&[loaded], ts(T0 + 200)).await));
    out.push(shown("nothing appended", &store.append_audit(&[], ts(T0 + 201)).await));

    // Everything read back.
    for (label, r) in [("a", &a0), ("b", &b0), ("c", &c0)] {
        let by_id = store.get_request(&RequestRef::Id(r.id)).await;
        out.push(shown(&format!("get {label} by id"), &by_id));
        let by_code = store.get_request(&RequestRef::Code(r.code.clone())).await;
        out.push(shown(&format!("get {label} by code"), &by_code));
    }
    let filters = [
        RequestFilter::default(),
        RequestFilter { statuses: vec![Status::Approved, Status::Closed], ..Default::default() },
        RequestFilter { requester: Some(name("bob")), ..Default::default() },
        RequestFilter { ids: vec![a0.id, b0.id], ..Default::default() },
        RequestFilter { host: Some("db-2".to_owned()), ..Default::default() },
        RequestFilter { created_until: Some(ts(T0 + 1)), ..Default::default() },
        RequestFilter { limit: 1, ..Default::default() },
    ];
    for f in &filters {
        out.push(shown(&format!("list {f:?}"), &store.list_requests(f).await));
    }
    out.push(shown("audit", &store.audit_page(0, 1000).await));
    out.push(shown("audit page", &store.audit_page(3, 2).await));
    out.push(shown("audit of a", &store.audit_of_request(a0.id, 0).await));
    out.push(shown("audit of c after 4", &store.audit_of_request(c0.id, 4).await));
    out.push(shown("events of a", &store.session_events(a0.id).await));
    out.push(shown("events of b", &store.session_events(b0.id).await));
    out.push(shown("recording of a", &store.recording(a0.id).await));
    out.push(shown("recording of b", &store.recording(b0.id).await));
    out.push(shown("recordings", &store.recordings(&[a0.id, b0.id, c0.id]).await));
    for (needle, requester, host) in [
        ("SYSTEMCTL", None, None),
        ("u", None, None),
        ("status", Some(name("bob")), None),
        ("status", Some(name("alice")), Some("db-1")),
        ("uptime", None, None),
        ("ignored", None, None),
    ] {
        let q = CommandSearch {
            needle: needle.to_owned(),
            requester,
            host: host.map(str::to_owned),
            from: ts(T0),
            to: ts(T0 + 3600),
            limit: 10,
        };
        out.push(shown(&format!("search {q:?}"), &store.search_commands(&q).await));
    }
    out.push(shown("ping", &store.ping().await));
    out
}
