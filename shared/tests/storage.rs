//! The storage adapter against real databases: every test body runs on SQLite (a fresh file)
//! and on PostgreSQL (a fresh database), through the `Store` port only, plus a side door for
//! what an administrator could do behind the adapter's back.
//!
//! The requests come from the shared test world (`test_util::world`): alice asks for `db-1` in
//! `prod-db`, bob and carol approve (quorum 2).

// The adapter exists only with the `storage` feature (on by default).
#![cfg(feature = "storage")]

use std::sync::Arc;

use serde_json::json;
use shared::core::audit::{ChainBreak, ChainVerifier};
use shared::core::request::{self, Fresh};
use shared::core::{
    Action, AuditDraft, AuditEntry, AuditKind, GrantCode, Login, Origin, Request, RequestId,
    RequestRef, Status, Timestamp, Transition,
};
use shared::ports::{
    CommandSearch, LinkRefusal, RecordingRecord, RequestFilter, ReviewLink, SessionEvent, Store,
    StoreError,
};
use shared::testing::db::{Backend, TestDb, TestResult};
use shared::testing::{T0, dur, name};
use test_util::world::World;

test_util::both_backends!(
    create_then_get_round_trips_every_field,
    duplicate_id_or_code_conflicts_and_writes_nothing,
    quorum_of_approvals_is_read_back_in_order,
    stale_version_conflicts_and_writes_nothing,
    same_approver_twice_conflicts,
    same_signature_on_a_second_request_conflicts,
    a_nonce_opens_one_session_only,
    a_grant_reused_after_its_nonce_was_deleted_shows_in_the_audit_check,
    audit_chain_verifies_across_many_writes,
    concurrent_writers_keep_one_chain,
    append_only_tables_refuse_update_and_delete,
    hand_edited_audit_row_is_reported_at_its_seq,
    list_filters_by_status_and_requester,
    invalid_stored_login_reads_back_as_corrupt,
    session_events_and_the_recording_are_stored_with_the_end,
    a_session_ending_after_a_revoke_keeps_the_revoke,
    review_links_open_once_and_expire,
    commands_are_searchable,
    chat_deliveries_are_remembered_once_until_they_expire,
    a_click_a_dead_replica_never_finished_is_taken_over_once,
);

// --- helpers ---------------------------------------------------------------------------------

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_unix(secs)
}

/// A new request by `who` for `host`, as the core builds it at `T0`, with its audit draft.
fn open(w: &World, who: &str, host: &str) -> (Request, AuditDraft) {
    open_with(w, who, host, w.fresh())
}

fn open_with(w: &World, who: &str, host: &str, fresh: Fresh) -> (Request, AuditDraft) {
    request::open(&w.policy, w.ask(who, host), fresh, ts(T0)).expect("the policy allows it")
}

/// The core's transition for `action` on `req` at `at`.
/// An audit event of `kind` with any data: the chain and the tables take what they are given
/// (the product writes typed data only, [`AuditDraft::of`]).
fn draft(kind: AuditKind, request_id: Option<RequestId>, data: serde_json::Value) -> AuditDraft {
    AuditDraft { kind, request_id, actor: "breakglass".into(), data }
}

fn step(w: &World, req: &Request, action: Action, at: i64) -> Transition {
    request::apply(req, action, &w.policy, &w.pins, ts(at)).expect("the core allows it")
}

/// A bot-signed approval transition by `who` at `at`.
fn approve(w: &World, req: &Request, who: &str, at: i64) -> Transition {
    step(w, req, Action::Approve(w.bot_approval(req, who, at)), at)
}

/// Applies `t` through the store and returns the new state.
async fn apply(store: &dyn Store, t: Transition, at: i64) -> Result<Request, StoreError> {
    store.apply(&t, ts(at)).await?;
    Ok(t.next)
}

/// The whole audit log, read in small pages to exercise paging.
async fn audit_log(store: &dyn Store) -> Result<Vec<AuditEntry>, StoreError> {
    let mut all: Vec<AuditEntry> = Vec::new();
    loop {
        let after = all.last().map_or(0, |e| e.seq);
        let page = store.audit_page(after, 7).await?;
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}

/// Checks the chain from seq 1; the number of entries, or the first break.
fn verify(entries: &[AuditEntry]) -> Result<u64, ChainBreak> {
    let mut v = ChainVerifier::new();
    for e in entries {
        v.check(e)?;
    }
    Ok(v.checked())
}

fn kinds(entries: &[AuditEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.kind.as_str()).collect()
}

#[track_caller]
fn assert_conflict(r: Result<(), StoreError>, what: &str) {
    match r {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

async fn get(store: &dyn Store, req: &Request) -> Result<Request, StoreError> {
    store.get_request(&RequestRef::Id(req.id)).await
}

// --- tests -----------------------------------------------------------------------------------

async fn create_then_get_round_trips_every_field(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    store.ping().await?;
    let w = World::new();
    // Non-default values wherever the request has a choice, and a chat origin.
    let mut ask = w.ask("alice", "db-2");
    ask.login = Some(Login::parse("root")?);
    ask.duration = Some(dur("45m"));
    ask.origin = Origin::Slack { channel: "C0INCIDENT".into() };
    let (req, draft) = request::open(&w.policy, ask, w.fresh(), ts(T0))?;
    store.create_request(&req, &draft, ts(T0)).await?;

    assert_eq!(get(store, &req).await?, req, "by id");
    assert_eq!(store.get_request(&RequestRef::Code(req.code.clone())).await?, req, "by code");

    // The rest of the fields: approvals, closed_by, a later version and update time.
    let one = apply(store, approve(&w, &req, "bob", T0 + 60), T0 + 60).await?;
    let denied = step(&w, &one, Action::Deny { by: name("carol") }, T0 + 90);
    let denied = apply(store, denied, T0 + 90).await?;
    assert_eq!(denied.status, Status::Denied);
    assert_eq!(denied.closed_by, Some(name("carol")));
    assert_eq!(get(store, &req).await?, denied);
    assert_eq!(store.get_request(&RequestRef::Code(req.code.clone())).await?, denied);

    // Unknown ids and codes are NotFound.
    let unknown = RequestRef::Id(RequestId::from_uuid(uuid::Uuid::from_bytes([0xee; 16])));
    assert_eq!(store.get_request(&unknown).await, Err(StoreError::NotFound));
    let unknown = RequestRef::Code(GrantCode::parse("bg-eeeeee")?);
    assert_eq!(store.get_request(&unknown).await, Err(StoreError::NotFound));

    // The audit log holds what the core drafted, in order, tied to the request.
    let log = audit_log(store).await?;
    assert_eq!(kinds(&log), ["requested", "approved", "denied"]);
    assert!(log.iter().all(|e| e.request_id == Some(req.id.to_string())));
    assert_eq!(log[0].at, ts(T0));
    assert_eq!(log[0].data, draft.data.to_string(), "the JSON text is stored as hashed");

    // Reopening the same database re-runs the migrations harmlessly and finds the data.
    let again = shared::storage::connect(&db.admin.url).await?;
    assert_eq!(get(again.as_ref(), &req).await?, denied);
    Ok(())
}

async fn duplicate_id_or_code_conflicts_and_writes_nothing(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let w = World::new();
    let (a, draft) = open(&w, "alice", "db-1");
    store.create_request(&a, &draft, ts(T0)).await?;

    let (mut same_code, draft_b) = open(&w, "bob", "db-2");
    same_code.code = a.code.clone();
    assert_conflict(store.create_request(&same_code, &draft_b, ts(T0)).await, "same code");

    let (mut same_id, draft_c) = open(&w, "carol", "db-2");
    same_id.id = a.id;
    assert_conflict(store.create_request(&same_id, &draft_c, ts(T0)).await, "same id");

    assert_eq!(get(store, &same_code).await, Err(StoreError::NotFound));
    assert_eq!(get(store, &a).await?, a, "the first request is untouched");
    let all = store.list_requests(&RequestFilter::default()).await?;
    assert_eq!(all, [a]);
    assert_eq!(kinds(&audit_log(store).await?), ["requested"], "no audit for refused writes");
    Ok(())
}

async fn quorum_of_approvals_is_read_back_in_order(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let w = World::new();
    let (r0, draft) = open(&w, "alice", "db-1");
    store.create_request(&r0, &draft, ts(T0)).await?;

    // carol before bob: the order read back must be the order recorded, not alphabetical.
    let r1 = apply(store, approve(&w, &r0, "carol", T0 + 30), T0 + 30).await?;
    assert_eq!(get(store, &r0).await?.status, Status::Pending);
    let r2 = apply(store, approve(&w, &r1, "bob", T0 + 60), T0 + 60).await?;

    let got = get(store, &r0).await?;
    assert_eq!(got.status, Status::Approved);
    assert_eq!(got.version, 2);
    let approvers: Vec<&str> = got.approvals.iter().map(|a| a.approver.as_str()).collect();
    assert_eq!(approvers, ["carol", "bob"]);
    assert_eq!(got, r2, "signatures, key ids and times read back unchanged");
    // The stored approvals still verify against the pinned keys.
    let scope = w.policy.scope(&got.scope)?;
    for a in &got.approvals {
        w.pins.verify(&got, a, scope)?;
    }
    assert_eq!(kinds(&audit_log(store).await?), ["requested", "approved", "approved", "granted"]);
    Ok(())
}

async fn stale_version_conflicts_and_writes_nothing(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let w = World::new();
    let (r0, draft) = open(&w, "alice", "db-1");
    store.create_request(&r0, &draft, ts(T0)).await?;

    // Two deciders load version 0; bob's approval lands first.
    let by_bob = approve(&w, &r0, "bob", T0 + 60);
    let by_carol = approve(&w, &r0, "carol", T0 + 61);
    let r1 = apply(store, by_bob, T0 + 60).await?;
    let before = audit_log(store).await?;

    assert_conflict(store.apply(&by_carol, ts(T0 + 61)).await, "carol's approval of version 0");
    let now = get(store, &r0).await?;
    assert_eq!(now, r1, "still bob's version: no approval by carol, no status change");
    assert_eq!(audit_log(store).await?, before, "no audit rows added");

    // A transition for a request that was never stored is NotFound, not a Conflict.
    let (ghost, _) = open(&w, "alice", "db-2");
    let t = approve(&w, &ghost, "bob", T0 + 60);
    assert_eq!(store.apply(&t, ts(T0 + 60)).await, Err(StoreError::NotFound));
    assert_eq!(audit_log(store).await?, before);
    Ok(())
}

async fn same_approver_twice_conflicts(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let w = World::new();
    let (r0, draft) = open(&w, "alice", "db-1");
    store.create_request(&r0, &draft, ts(T0)).await?;
    let r1 = apply(store, approve(&w, &r0, "bob", T0 + 60), T0 + 60).await?;
    let before = audit_log(store).await?;

    // The core refuses a second approval by bob, so forge one: a valid next version (carol's
    // transition) carrying a fresh bob signature instead, as a buggy or hostile caller might.
    let mut forged = approve(&w, &r1, "carol", T0 + 90);
    forged.new_approval = Some(w.bot_approval(&r1, "bob", T0 + 90));
    assert_conflict(store.apply(&forged, ts(T0 + 90)).await, "bob approving twice");

    assert_eq!(get(store, &r0).await?, r1, "the version update was rolled back");
    assert_eq!(audit_log(store).await?, before);
    Ok(())
}

async fn same_signature_on_a_second_request_conflicts(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let w = World::new();
    let (a0, draft_a) = open(&w, "alice", "db-1");
    let (b0, draft_b) = open(&w, "alice", "db-2");
    store.create_request(&a0, &draft_a, ts(T0)).await?;
    store.create_request(&b0, &draft_b, ts(T0)).await?;
    let t = approve(&w, &a0, "bob", T0 + 60);
    let replayed = t.new_approval.clone().expect("an approval transition carries one");
    apply(store, t, T0 + 60).await?;
    let before = audit_log(store).await?;

    // Bob's signature over request A replayed as an approval of request B.
    let mut forged = approve(&w, &b0, "bob", T0 + 60);
    forged.new_approval = Some(replayed);
    assert_conflict(store.apply(&forged, ts(T0 + 60)).await, "a signature reused on B");

    assert_eq!(get(store, &b0).await?, b0, "B is unchanged");
    assert_eq!(audit_log(store).await?, before);
    Ok(())
}

async fn a_nonce_opens_one_session_only(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let w = World::new();

    /// Creates `req` and takes it through bob's and carol's approvals to `approved`.
    async fn approved(
        w: &World,
        store: &dyn Store,
        req: Request,
        draft: AuditDraft,
    ) -> Result<Request, StoreError> {
        store.create_request(&req, &draft, ts(T0)).await?;
        let r = apply(store, approve(w, &req, "bob", T0 + 60), T0 + 60).await?;
        apply(store, approve(w, &r, "carol", T0 + 60), T0 + 60).await
    }

    let (a0, draft_a) = open(&w, "alice", "db-1");
    let a = approved(&w, store, a0, draft_a).await?;
    let started =
        step(&w, &a, Action::SessionStarted(shared::testing::session_started()), T0 + 120);
    assert_eq!(started.consumes_nonce, Some(a.nonce));
    let active = apply(store, started, T0 + 120).await?;
    assert_eq!(get(store, &a).await?.status, Status::Active);

    // A second request value sharing A's nonce (as a bug or a forged row would give): its own
    // approvals are genuine, but the nonce is spent.
    let fresh = Fresh { nonce: a.nonce, ..w.fresh() };
    let (b0, draft_b) = open_with(&w, "alice", "db-2", fresh);
    let b = approved(&w, store, b0, draft_b).await?;
    let before = audit_log(store).await?;
    let second = step(&w, &b, Action::SessionStarted(shared::testing::session_started()), T0 + 130);
    assert_eq!(second.consumes_nonce, Some(a.nonce));
    match store.apply(&second, ts(T0 + 130)).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("nonce"), "{m}"),
        other => panic!("expected a nonce Conflict, got {other:?}"),
    }
    assert_eq!(get(store, &b).await?, b, "B stays approved, version unchanged");
    assert_eq!(audit_log(store).await?, before, "no session_started event for B");
    assert_eq!(get(store, &a).await?, active);
    Ok(())
}

async fn a_grant_reused_after_its_nonce_was_deleted_shows_in_the_audit_check(
    db: TestDb,
) -> TestResult {
    use shared::core::audit_verify::AuditChecker;
    let store = db.store.as_ref();
    let w = World::new();
    let (r0, draft) = open(&w, "alice", "db-1");
    store.create_request(&r0, &draft, ts(T0)).await?;
    let r = apply(store, approve(&w, &r0, "bob", T0 + 60), T0 + 60).await?;
    let r = apply(store, approve(&w, &r, "carol", T0 + 60), T0 + 60).await?;
    let r = apply(
        store,
        step(&w, &r, Action::SessionStarted(shared::testing::session_started()), T0 + 90),
        T0 + 90,
    )
    .await?;
    apply(
        store,
        step(&w, &r, Action::SessionEnded(shared::testing::session_ended()), T0 + 95),
        T0 + 95,
    )
    .await?;
    let check = |log: &[AuditEntry]| -> Vec<(RequestId, Vec<i64>)> {
        let mut c = AuditChecker::new(&w.pins);
        for e in log {
            c.check(e).expect("a whole chain");
        }
        c.reused_grants().map(|(r, seqs)| (r.id, seqs.to_vec())).collect()
    };
    assert_eq!(check(&audit_log(store).await?), []);

    // A writer of the database drops the guard, forgets the nonce and re-approves the grant:
    // the store lets the same approvals open a second session.
    db.admin.drop_trigger("consumed_nonces_no_delete", "consumed_nonces").await?;
    assert_eq!(db.admin.exec("DELETE FROM consumed_nonces").await?, 1);
    db.admin.exec("UPDATE requests SET status = 'approved'").await?;
    let again = get(store, &r).await?;
    apply(
        store,
        step(&w, &again, Action::SessionStarted(shared::testing::session_started()), T0 + 200),
        T0 + 200,
    )
    .await?;

    // The chain is intact, but the log shows two sessions for one grant.
    let log = audit_log(store).await?;
    assert_eq!(verify(&log), Ok(7));
    let started: Vec<i64> =
        log.iter().filter(|e| e.kind == "session_started").map(|e| e.seq).collect();
    assert_eq!(check(&log), [(r.id, started)]);
    Ok(())
}

async fn audit_chain_verifies_across_many_writes(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let w = World::new();
    let key_loaded = draft(AuditKind::KeyLoaded, None, json!({"key": 1}));
    let config_loaded = draft(AuditKind::ConfigLoaded, None, json!({"scopes": 2}));
    store.append_audit(&[key_loaded, config_loaded], ts(T0 - 10)).await?;
    store.append_audit(&[], ts(T0)).await?;

    let mut at = T0;
    for i in 0..6 {
        let (r, draft) = open(&w, "alice", if i % 2 == 0 { "db-1" } else { "db-2" });
        store.create_request(&r, &draft, ts(at)).await?;
        at += 1;
        let r = apply(store, approve(&w, &r, "bob", at), at).await?;
        at += 1;
        if i % 3 == 0 {
            apply(store, step(&w, &r, Action::Deny { by: name("carol") }, at), at).await?;
        } else {
            let r = apply(store, approve(&w, &r, "carol", at), at).await?;
            let r = apply(
                store,
                step(&w, &r, Action::SessionStarted(shared::testing::session_started()), at),
                at,
            )
            .await?;
            apply(
                store,
                step(&w, &r, Action::SessionEnded(shared::testing::session_ended()), at + 5),
                at + 5,
            )
            .await?;
        }
        at += 10;
    }

    let log = audit_log(store).await?;
    // 2 loaded + 6 × (requested, approved) + 2 × denied + 4 × (approved, granted, started, ended)
    assert_eq!(log.len(), 2 + 12 + 2 + 16);
    assert_eq!(verify(&log), Ok(32));
    let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=32).collect::<Vec<i64>>());
    assert_eq!(log[0].kind, "key_loaded");
    assert_eq!(log[0].request_id, None);
    assert_eq!(log[0].at, ts(T0 - 10));

    // Paging: after the head there is nothing; a page is capped by its limit.
    assert!(store.audit_page(32, 100).await?.is_empty());
    assert_eq!(
        store.audit_page(10, 5).await?.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [11, 12, 13, 14, 15]
    );
    assert!(store.audit_page(0, 0).await?.is_empty());
    Ok(())
}

async fn concurrent_writers_keep_one_chain(db: TestDb) -> TestResult {
    let w = World::new();
    let requests: Vec<(Request, AuditDraft)> =
        (0..20).map(|i| open(&w, "alice", if i % 2 == 0 { "db-1" } else { "db-2" })).collect();

    let mut tasks = Vec::new();
    for (i, (req, draft)) in requests.iter().cloned().enumerate() {
        let store = Arc::clone(&db.store);
        tasks.push(tokio::spawn(async move {
            store.create_request(&req, &draft, ts(T0 + i64::try_from(i).unwrap_or(0))).await
        }));
    }
    for i in 0..5 {
        let store = Arc::clone(&db.store);
        let d = draft(AuditKind::ConfigLoaded, None, json!({ "i": i }));
        tasks.push(tokio::spawn(async move { store.append_audit(&[d.clone(), d], ts(T0)).await }));
    }
    for t in tasks {
        t.await??;
    }

    // Two deciders racing on the same version: exactly one wins.
    let target = requests[0].0.clone();
    let races: Vec<Transition> =
        ["bob", "carol"].iter().map(|who| approve(&w, &target, who, T0 + 60)).collect();
    let mut racing = Vec::new();
    for t in races {
        let store = Arc::clone(&db.store);
        racing.push(tokio::spawn(async move { store.apply(&t, ts(T0 + 60)).await }));
    }
    let mut outcomes = Vec::new();
    for r in racing {
        outcomes.push(r.await?);
    }
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().any(|o| matches!(o, Err(StoreError::Conflict(_)))), "{outcomes:?}");

    let store = db.store.as_ref();
    let log = audit_log(store).await?;
    assert_eq!(log.len(), 20 + 10 + 1, "every write appended, none lost");
    assert_eq!(verify(&log), Ok(31), "one unforked chain");
    let listed = store.list_requests(&RequestFilter::default()).await?;
    assert_eq!(listed.len(), 20);
    Ok(())
}

async fn append_only_tables_refuse_update_and_delete(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let w = World::new();
    let (r0, draft) = open(&w, "alice", "db-1");
    store.create_request(&r0, &draft, ts(T0)).await?;
    let r = apply(store, approve(&w, &r0, "bob", T0 + 60), T0 + 60).await?;
    let r = apply(store, approve(&w, &r, "carol", T0 + 60), T0 + 60).await?;
    let r = apply(
        store,
        step(&w, &r, Action::SessionStarted(shared::testing::session_started()), T0 + 90),
        T0 + 90,
    )
    .await?;
    let before = audit_log(store).await?;

    let mut attempts = vec![
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2",
        "UPDATE audit_events SET data = '{}'",
        "DELETE FROM audit_events WHERE seq = 4",
        "DELETE FROM audit_events",
        "UPDATE approvals SET approver = 'dave'",
        "DELETE FROM approvals",
        "UPDATE consumed_nonces SET consumed_at = 0",
        "DELETE FROM consumed_nonces",
    ];
    if db.admin.backend == Backend::Postgres {
        attempts.extend([
            "TRUNCATE audit_events",
            "TRUNCATE approvals",
            "TRUNCATE consumed_nonces",
        ]);
    }
    for sql in attempts {
        match db.admin.exec(sql).await {
            Err(sqlx::Error::Database(e)) => {
                assert!(e.message().contains("append-only"), "{sql}: {}", e.message());
            }
            other => panic!("{sql}: the database must refuse it, got {other:?}"),
        }
    }

    assert_eq!(audit_log(store).await?, before);
    assert_eq!(verify(&before), Ok(5));
    assert_eq!(get(store, &r0).await?, r, "approvals intact");
    // The consumed nonce is still there: the session cannot start twice.
    let mut replay = step(&w, &r, Action::SessionEnded(shared::testing::session_ended()), T0 + 95);
    replay.consumes_nonce = Some(r.nonce);
    assert_conflict(store.apply(&replay, ts(T0 + 95)).await, "the nonce row survived");
    Ok(())
}

async fn hand_edited_audit_row_is_reported_at_its_seq(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let w = World::new();
    for _ in 0..3 {
        let (r, draft) = open(&w, "alice", "db-1");
        store.create_request(&r, &draft, ts(T0)).await?;
        apply(store, approve(&w, &r, "bob", T0 + 60), T0 + 60).await?;
    }
    assert_eq!(verify(&audit_log(store).await?), Ok(6));

    // An administrator drops the guard, then rewrites who approved event 3.
    db.admin.drop_trigger("audit_events_no_update", "audit_events").await?;
    let changed = db.admin.exec("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3").await?;
    assert_eq!(changed, 1);

    let log = audit_log(store).await?;
    assert_eq!(log[2].actor, "mallory", "the store returns rows as stored");
    let brk = verify(&log).expect_err("the edit must break the chain");
    assert_eq!(brk.seq, 3, "{brk}");
    Ok(())
}

async fn list_filters_by_status_and_requester(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let w = World::new();
    // Created a minute apart, oldest first: alice db-1, bob db-1, alice db-2, carol db-2.
    let mut created = Vec::new();
    for (i, (who, host)) in
        [("alice", "db-1"), ("bob", "db-1"), ("alice", "db-2"), ("carol", "db-2")]
            .iter()
            .enumerate()
    {
        let (r, draft) = open(&w, who, host);
        store.create_request(&r, &draft, ts(T0 + 60 * i64::try_from(i)?)).await?;
        created.push(r);
    }
    // alice's first is approved, bob's is denied; the others stay pending.
    let a1 = apply(store, approve(&w, &created[0], "bob", T0 + 300), T0 + 300).await?;
    let a1 = apply(store, approve(&w, &a1, "carol", T0 + 300), T0 + 300).await?;
    let b1 =
        apply(store, step(&w, &created[1], Action::Deny { by: name("carol") }, T0 + 300), T0 + 300)
            .await?;
    let (a2, c1) = (created[2].clone(), created[3].clone());

    /// The ids a listing returns, in order.
    async fn listed(
        store: &dyn Store,
        statuses: &[Status],
        requester: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RequestId>, StoreError> {
        let filter = RequestFilter {
            statuses: statuses.to_vec(),
            requester: requester.map(name),
            limit,
            ..RequestFilter::default()
        };
        Ok(store.list_requests(&filter).await?.iter().map(|r| r.id).collect())
    }
    let pending = [Status::Pending];
    assert_eq!(listed(store, &pending, None, 0).await?, [c1.id, a2.id]);
    let decided = [Status::Denied, Status::Approved];
    assert_eq!(listed(store, &decided, None, 0).await?, [b1.id, a1.id]);
    assert_eq!(listed(store, &[], Some("alice"), 0).await?, [a2.id, a1.id]);
    assert_eq!(listed(store, &pending, Some("alice"), 0).await?, [a2.id]);
    assert_eq!(listed(store, &[Status::Active], None, 0).await?, []);
    assert_eq!(listed(store, &[], Some("dave"), 0).await?, []);
    assert_eq!(listed(store, &[], None, 2).await?, [c1.id, a2.id], "limit keeps the newest");
    assert_eq!(listed(store, &[], None, 1_000_000).await?.len(), 4, "a huge limit is capped");
    // Only the requests asked for, still filtered by status.
    let some = RequestFilter { ids: vec![a1.id, b1.id, c1.id], ..RequestFilter::default() };
    let got: Vec<RequestId> = store.list_requests(&some).await?.iter().map(|r| r.id).collect();
    assert_eq!(got, [c1.id, b1.id, a1.id]);
    let denied = RequestFilter { statuses: vec![Status::Denied], ..some };
    let got: Vec<RequestId> = store.list_requests(&denied).await?.iter().map(|r| r.id).collect();
    assert_eq!(got, [b1.id]);
    // By host, and made at or before a moment.
    let ids_of = |rs: Vec<shared::core::Request>| rs.iter().map(|r| r.id).collect::<Vec<_>>();
    let db2 = RequestFilter { host: Some("db-2".into()), ..RequestFilter::default() };
    assert_eq!(ids_of(store.list_requests(&db2).await?), [c1.id, a2.id]);
    let early = RequestFilter { created_until: Some(ts(T0 + 60)), ..RequestFilter::default() };
    assert_eq!(ids_of(store.list_requests(&early).await?), [b1.id, a1.id]);
    let both = RequestFilter { created_until: Some(ts(T0 + 120)), ..db2 };
    assert_eq!(ids_of(store.list_requests(&both).await?), [a2.id]);
    // Whole requests, approvals included, newest first.
    assert_eq!(store.list_requests(&RequestFilter::default()).await?, [c1, a2, b1, a1]);
    Ok(())
}

async fn invalid_stored_login_reads_back_as_corrupt(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let w = World::new();
    let (good, draft) = open(&w, "alice", "db-1");
    let (bad, draft_bad) = open(&w, "alice", "db-2");
    store.create_request(&good, &draft, ts(T0)).await?;
    store.create_request(&bad, &draft_bad, ts(T0)).await?;

    let sql = format!("UPDATE requests SET login = 'Root; DROP' WHERE id = '{}'", bad.id);
    assert_eq!(db.admin.exec(&sql).await?, 1);

    match get(store, &bad).await {
        Err(StoreError::Corrupt(m)) => {
            assert!(m.contains(&bad.id.to_string()) && m.contains("login"), "{m}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(get(store, &good).await?, good, "other rows still read");
    assert!(matches!(
        store.list_requests(&RequestFilter::default()).await,
        Err(StoreError::Corrupt(_))
    ));
    Ok(())
}

// --- connect, independent of a test database -------------------------------------------------

#[tokio::test]
async fn unknown_url_scheme_is_refused() {
    match shared::storage::connect("mysql://root:hunter2@db/breakglass").await {
        Err(StoreError::Unavailable(m)) => {
            assert!(m.contains("mysql") && !m.contains("hunter2"), "{m}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn sqlite_memory_keeps_its_data_for_the_store_lifetime() -> TestResult {
    let store = shared::storage::connect("sqlite::memory:").await?;
    let w = World::new();
    let (r, draft) = open(&w, "alice", "db-1");
    store.create_request(&r, &draft, ts(T0)).await?;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(get(store.as_ref(), &r).await?, r);
    assert_eq!(verify(&audit_log(store.as_ref()).await?), Ok(1));
    Ok(())
}

/// A live session's events, then its end: the recording row, `closed`, and the audit event,
/// in one transaction; a second end is refused and changes nothing.
async fn session_events_and_the_recording_are_stored_with_the_end(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let w = World::new();
    let (req, draft) = open(&w, "alice", "db-1");
    store.create_request(&req, &draft, ts(T0)).await?;
    let r = apply(store, approve(&w, &req, "bob", T0 + 60), T0 + 60).await?;
    let r = apply(store, approve(&w, &r, "carol", T0 + 60), T0 + 60).await?;
    let mut details = shared::testing::session_started();
    details.peer = Some("127.0.0.1:50000".to_owned());
    let started = step(&w, &r, Action::SessionStarted(details), T0 + 120);
    let live = apply(store, started, T0 + 120).await?;

    for (i, cmd) in ["uptime", "systemctl status"].iter().enumerate() {
        let e = SessionEvent {
            request_id: live.id,
            at: ts(T0 + 130 + i as i64),
            offset_ms: 1000 * (i as i64 + 1),
            kind: shared::core::SessionEventKind::Command,
            detail: serde_json::json!({ "command": cmd }),
        };
        store.add_session_event(&e).await?;
    }
    let events = store.session_events(live.id).await?;
    let cmds: Vec<&str> = events.iter().filter_map(|e| e.detail["command"].as_str()).collect();
    assert_eq!(cmds, ["uptime", "systemctl status"]);
    assert_eq!(events[1].offset_ms, 2000);

    let rec = RecordingRecord {
        request_id: live.id,
        file: format!("{}.cast", live.code),
        sha256: [7; 32],
        signature: shared::core::approval::SignatureBytes::from_bytes([9; 64]),
        key_id: shared::core::KeyId::of(&[1; 32]),
        started_at: ts(T0 + 120),
        ended_at: ts(T0 + 300),
        end_reason: shared::core::EndReason::Closed,
        exit_status: Some(0),
        bytes_in: 12,
        bytes_out: 3400,
        commands: 2,
    };
    let end = step(&w, &live, Action::SessionEnded(shared::testing::session_ended()), T0 + 300);
    store.end_session(&rec, Some(&end), &[], ts(T0 + 300)).await?;
    assert_eq!(get(store, &live).await?.status, Status::Closed);
    assert_eq!(store.recording(live.id).await?, Some(rec.clone()));
    // In a batch: only the requests with a recording come back.
    assert_eq!(
        store.recordings(&[RequestId::from_uuid(uuid::Uuid::from_u128(42)), live.id]).await?,
        std::slice::from_ref(&rec)
    );
    assert_eq!(store.recordings(&[]).await?, []);
    let log = audit_log(store).await?;
    assert_eq!(kinds(&log).last(), Some(&"session_ended"));
    let started_event = log.iter().find(|e| e.kind == "session_started").ok_or("started")?;
    assert!(started_event.data.contains("127.0.0.1:50000"), "{}", started_event.data);
    verify(&log)?;

    let before = audit_log(store).await?;
    assert_conflict(store.end_session(&rec, None, &[], ts(T0 + 301)).await, "recording");
    assert_eq!(audit_log(store).await?, before);
    for sql in ["DELETE FROM session_events", "UPDATE recordings SET sha256 = 'x'"] {
        let refused = db.admin.exec(sql).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("append-only"), "{sql}: {refused}");
    }
    Ok(())
}

/// A revoke during the session wins: the end stores the recording and an audit event, and
/// the request stays `revoked`.
async fn a_session_ending_after_a_revoke_keeps_the_revoke(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let w = World::new();
    let (req, draft) = open(&w, "alice", "db-1");
    store.create_request(&req, &draft, ts(T0)).await?;
    let r = apply(store, approve(&w, &req, "bob", T0 + 60), T0 + 60).await?;
    let r = apply(store, approve(&w, &r, "carol", T0 + 60), T0 + 60).await?;
    let live = apply(
        store,
        step(&w, &r, Action::SessionStarted(shared::testing::session_started()), T0 + 120),
        T0 + 120,
    )
    .await?;
    let revoked =
        apply(store, step(&w, &live, Action::Revoke { by: name("bob") }, T0 + 150), T0 + 150)
            .await?;
    let rec = RecordingRecord {
        request_id: live.id,
        file: "x.cast".into(),
        sha256: [1; 32],
        signature: shared::core::approval::SignatureBytes::from_bytes([2; 64]),
        key_id: shared::core::KeyId::of(&[3; 32]),
        started_at: ts(T0 + 120),
        ended_at: ts(T0 + 151),
        end_reason: shared::core::EndReason::Revoked,
        exit_status: None,
        bytes_in: 0,
        bytes_out: 0,
        commands: 0,
    };
    let ended = AuditDraft::of(
        Some(live.id),
        "alice",
        &shared::core::AuditData::SessionEnded(shared::testing::session_ended()),
    );
    store.end_session(&rec, None, &[ended], ts(T0 + 151)).await?;
    assert_eq!(get(store, &live).await?, revoked);
    assert_eq!(
        store.recording(live.id).await?.map(|r| r.end_reason),
        Some(shared::core::EndReason::Revoked)
    );
    assert_eq!(kinds(&audit_log(store).await?).last(), Some(&"session_ended"));
    Ok(())
}

/// A sign-in link works once, before it expires; browser sessions expire too.
async fn review_links_open_once_and_expire(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let link = |n: u8, ttl: i64| ReviewLink {
        token_sha256: [n; 32],
        principal: name("erin"),
        request_code: Some("bg-000001".into()),
        created_at: ts(T0),
        expires_at: ts(T0 + ttl),
    };
    store.create_review_link(&link(1, 600)).await?;
    store.create_review_link(&link(2, 60)).await?;
    let opened = store.use_review_link(&[1; 32], ts(T0 + 10)).await?;
    assert_eq!(opened, Ok(link(1, 600)));
    assert_eq!(store.use_review_link(&[1; 32], ts(T0 + 11)).await?, Err(LinkRefusal::Used));
    assert_eq!(store.use_review_link(&[2; 32], ts(T0 + 61)).await?, Err(LinkRefusal::Expired));
    assert_eq!(store.use_review_link(&[3; 32], ts(T0)).await?, Err(LinkRefusal::Unknown));
    // The last second counts as expired.
    store.create_review_link(&link(4, 60)).await?;
    assert_eq!(store.use_review_link(&[4; 32], ts(T0 + 60)).await?, Err(LinkRefusal::Expired));
    // Sixteen browsers opening the same link at once: exactly one gets in.
    store.create_review_link(&link(5, 600)).await?;
    let tries = (0..16).map(|_| {
        let store = db.store.clone();
        tokio::spawn(async move { store.use_review_link(&[5; 32], ts(T0 + 1)).await })
    });
    let mut opened = 0;
    for t in tries {
        match t.await?? {
            Ok(_) => opened += 1,
            Err(refusal) => assert_eq!(refusal, LinkRefusal::Used),
        }
    }
    assert_eq!(opened, 1);

    store.create_review_session(&[9; 32], &name("erin"), ts(T0), ts(T0 + 3600)).await?;
    assert_eq!(store.review_session(&[9; 32], ts(T0 + 10)).await?, Some(name("erin")));
    assert_eq!(store.review_session(&[9; 32], ts(T0 + 3600)).await?, None, "expired");
    assert_eq!(store.review_session(&[8; 32], ts(T0)).await?, None);

    // Purging: expired sessions go at once; expired links are remembered for a day (a late
    // click is still told "expired"), then go; what is still valid stays.
    store.create_review_session(&[7; 32], &name("erin"), ts(T0), ts(T0 + 7200)).await?;
    assert_eq!(store.purge_review_access(ts(T0 + 3600)).await?, 1, "session 9 expired");
    assert_eq!(store.review_session(&[7; 32], ts(T0 + 3601)).await?, Some(name("erin")));
    let day = shared::ports::REVIEW_LINK_MEMORY;
    assert_eq!(store.purge_review_access(ts(T0 + 61 + day - 2)).await?, 1, "session 7");
    assert_eq!(store.use_review_link(&[2; 32], ts(T0 + 70)).await?, Err(LinkRefusal::Expired));
    // Links 2 and 4 expired at T0 + 60, 1 and 5 at T0 + 600.
    assert_eq!(store.purge_review_access(ts(T0 + 60 + day)).await?, 2);
    assert_eq!(store.use_review_link(&[2; 32], ts(T0 + 70)).await?, Err(LinkRefusal::Unknown));
    assert_eq!(store.use_review_link(&[1; 32], ts(T0 + 70)).await?, Err(LinkRefusal::Used));
    assert_eq!(store.purge_review_access(ts(T0 + 600 + day)).await?, 2);
    assert_eq!(store.purge_review_access(ts(T0 + 600 + day)).await?, 0);
    Ok(())
}

/// Commands and exec requests are found by any part of their text, case-insensitively (the
/// same on both backends, beyond ASCII too), with LIKE's wildcards taken literally, quotes and
/// backslashes as typed, and the filters applied before the limit.
async fn commands_are_searchable(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let w = World::new();
    let (req, draft) = open(&w, "alice", "db-1");
    store.create_request(&req, &draft, ts(T0)).await?;
    let (other, draft) = open(&w, "bob", "db-2");
    store.create_request(&other, &draft, ts(T0)).await?;
    let events = [
        (req.id, "command", "kubectl delete pod web-1"),
        (req.id, "exec", "rm -rf /tmp/x_1"),
        (req.id, "command", "rm -rf /tmp/xa1"),
        (req.id, "command", "echo x%y"),
        (req.id, "command", "echo xzy"),
        (req.id, "command", r#"echo "hi" > C:\dir"#),
        (req.id, "command", "grep ÉTÉ notes"),
        (req.id, "command", "ls"),
        (req.id, "transfer", "kubectl"),
        (other.id, "command", "ls -la"),
    ];
    for (i, (id, kind, cmd)) in events.iter().enumerate() {
        let e = SessionEvent {
            request_id: *id,
            at: ts(T0 + i as i64),
            offset_ms: i as i64 * 1000,
            kind: shared::core::SessionEventKind::parse(kind)?,
            detail: json!({ "command": cmd }),
        };
        store.add_session_event(&e).await?;
    }
    let q = |needle: &str| CommandSearch {
        needle: needle.into(),
        requester: None,
        host: None,
        from: ts(i64::MIN),
        to: ts(i64::MAX),
        limit: 10,
    };
    let found = |v: Vec<SessionEvent>| {
        v.into_iter()
            .map(|e| e.detail["command"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        found(store.search_commands(&q("KUBECTL DELETE")).await?),
        ["kubectl delete pod web-1"]
    );
    assert_eq!(found(store.search_commands(&q("x_1")).await?), ["rm -rf /tmp/x_1"], "_ is literal");
    assert_eq!(found(store.search_commands(&q("x%y")).await?), ["echo x%y"], "% is literal");
    assert_eq!(found(store.search_commands(&q("\"hi\"")).await?), [r#"echo "hi" > C:\dir"#]);
    assert_eq!(found(store.search_commands(&q(r"C:\dir")).await?), [r#"echo "hi" > C:\dir"#]);
    assert_eq!(found(store.search_commands(&q("été")).await?), ["grep ÉTÉ notes"]);
    assert_eq!(
        found(store.search_commands(&q("command")).await?),
        Vec::<String>::new(),
        "the JSON key is not text"
    );
    assert_eq!(
        found(store.search_commands(&q("ls")).await?),
        ["ls -la", "ls"],
        "newest first, not the transfer"
    );
    // Filters narrow before the limit: the one match of alice's is found with a limit of 1.
    let mut mine = q("ls");
    mine.requester = Some(name("alice"));
    mine.limit = 1;
    assert_eq!(found(store.search_commands(&mine).await?), ["ls"]);
    let mut on = q("ls");
    on.host = Some("db-2".into());
    assert_eq!(found(store.search_commands(&on).await?), ["ls -la"]);
    let mut early = q("rm");
    early.to = ts(T0 + 1);
    assert_eq!(found(store.search_commands(&early).await?), ["rm -rf /tmp/x_1"]);
    let mut late = q("rm");
    late.from = ts(T0 + 2);
    assert_eq!(found(store.search_commands(&late).await?), ["rm -rf /tmp/xa1"]);
    Ok(())
}

/// A chat delivery is remembered once under a unique constraint (the second time is a replay),
/// per platform, and forgotten only after its window closed.
async fn chat_deliveries_are_remembered_once_until_they_expire(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    assert!(
        store.remember_chat_delivery("slack", "ab12", ts(T0), ts(T0 + 600), None).await?,
        "first time"
    );
    assert!(
        !store.remember_chat_delivery("slack", "ab12", ts(T0), ts(T0 + 900), None).await?,
        "a replay"
    );
    assert!(
        store.remember_chat_delivery("discord", "ab12", ts(T0), ts(T0 + 600), None).await?,
        "per platform"
    );
    assert!(store.remember_chat_delivery("slack", "cd34", ts(T0), ts(T0 + 1200), None).await?);
    assert_eq!(store.purge_chat_deliveries(ts(T0 + 599)).await?, 0, "not yet expired");
    assert!(
        !store.remember_chat_delivery("slack", "ab12", ts(T0), ts(T0 + 600), None).await?,
        "still a replay"
    );
    assert_eq!(store.purge_chat_deliveries(ts(T0 + 600)).await?, 2);
    assert!(
        !store.remember_chat_delivery("slack", "cd34", ts(T0), ts(T0 + 1200), None).await?,
        "kept"
    );
    assert!(
        store.remember_chat_delivery("slack", "ab12", ts(T0), ts(T0 + 1800), None).await?,
        "forgotten"
    );
    Ok(())
}

/// A click is taken before it runs: a copy while it runs, or once it is done, is a replay; a
/// copy of one taken long ago and never done (its replica died) is taken over, once.
async fn a_click_a_dead_replica_never_finished_is_taken_over_once(db: TestDb) -> TestResult {
    let store = db.store.as_ref();
    let (until, stale) = (ts(T0 + 600), |now: i64| Some(ts(now - 10)));
    assert!(store.remember_chat_delivery("slack", "c1", ts(T0), until, stale(T0)).await?);
    let copy = |now: i64| store.remember_chat_delivery("slack", "c1", ts(now), until, stale(now));
    assert!(!copy(T0 + 5).await?, "still running: a replay");
    assert!(copy(T0 + 10).await?, "never done: taken over");
    assert!(!copy(T0 + 11).await?, "taken over once");
    assert!(copy(T0 + 20).await?, "and again when that replica died too");
    store.chat_delivery_done("slack", "c1").await?;
    assert!(!copy(T0 + 100).await?, "done: every copy is a replay");
    // What is done at once (a slash command) is never taken over.
    assert!(store.remember_chat_delivery("slack", "s1", ts(T0), until, None).await?);
    assert!(!copy(T0 + 100).await?);
    assert!(
        !store.remember_chat_delivery("slack", "s1", ts(T0 + 100), until, stale(T0 + 100)).await?
    );
    Ok(())
}
