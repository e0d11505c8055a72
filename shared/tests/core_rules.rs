//! The core's rules, one test per rule, and property tests of the request state machine.
//! All of it runs without I/O: a fixed world (see `test_util::world`) and times passed in.

use proptest::prelude::*;
use shared::core::request::{self, due_for_expiry};
use shared::core::*;
use shared::testing::{T0, dur, host, key, login, name, scope_name};
use test_util::world::World;

/// Runs one action and asserts it is refused with `code`.
#[track_caller]
fn refused(w: &World, req: &Request, action: Action, now: i64, code: &str) {
    match request::apply(req, action, &w.policy, &w.pins, Timestamp::from_unix(now)) {
        Ok(t) => panic!("expected {code}, but the action passed to {:?}", t.next.status),
        Err(e) => assert_eq!(e.code(), code, "{e}"),
    }
}

/// Opens a request and asserts it is refused with `code`.
#[track_caller]
fn open_refused(w: &World, input: NewRequest, code: &str) {
    match request::open(&w.policy, input, w.fresh(), Timestamp::from_unix(T0)) {
        Ok((r, _)) => panic!("expected {code}, but request {} was opened", r.code),
        Err(e) => assert_eq!(e.code(), code, "{e}"),
    }
}

#[test]
fn a_request_takes_scope_defaults_and_binds_its_window() {
    let w = World::new();
    let r = w.open_default();
    assert_eq!(r.scope.as_str(), "prod-db");
    assert_eq!(r.login.as_str(), "postgres", "first login is the default");
    assert_eq!(r.duration.secs(), 30 * 60, "scope default duration");
    assert_eq!(r.status, Status::Pending);
    assert_eq!(r.pending_until.unix(), T0 + 15 * 60);
    assert_eq!(r.not_after.unix(), T0 + 15 * 60 + 30 * 60);
}

#[test]
fn request_input_rules() {
    let w = World::new();
    let mut i = w.ask("alice", "db-1");
    i.scope = Some(scope_name("staging"));
    open_refused(&w, i, "unknown_scope");

    open_refused(&w, w.ask("alice", "db-9"), "unknown_host");

    let mut i = w.ask("alice", "db-1");
    i.scope = Some(scope_name("vault"));
    open_refused(&w, i, "unknown_host");

    let mut i = w.ask("alice", "db-1");
    i.login = Some(login("admin"));
    open_refused(&w, i, "login_not_allowed");

    let mut i = w.ask("alice", "db-1");
    i.duration = Some(dur("61m"));
    open_refused(&w, i, "duration_too_long");

    open_refused(&w, w.ask("dave", "db-1"), "requester_not_allowed");
    open_refused(&w, w.ask("mallory", "db-1"), "unknown_principal");
    open_refused(&w, w.ask("ci-deploy", "vault-1"), "requester_not_allowed");

    let mut i = w.ask("alice", "db-1");
    i.origin = Origin::Slack { channel: "C0RANDOM".into() };
    open_refused(&w, i, "channel_not_allowed");
    let mut i = w.ask("alice", "vault-1");
    i.origin = Origin::Slack { channel: "C0INCIDENT".into() };
    open_refused(&w, i, "channel_not_allowed");

    // The allowed forms pass.
    let mut i = w.ask("alice", "db-1");
    i.origin = Origin::Slack { channel: "C0INCIDENT".into() };
    i.login = Some(login("root"));
    i.duration = Some(dur("1h"));
    assert!(request::open(&w.policy, i, w.fresh(), Timestamp::from_unix(T0)).is_ok());
    assert!(
        request::open(&w.policy, w.ask("ci-deploy", "db-2"), w.fresh(), Timestamp::from_unix(T0))
            .is_ok()
    );
}

#[test]
fn a_host_in_two_usable_scopes_must_be_named() {
    let mut w = World::new();
    let mut scopes: Vec<ScopePolicy> = w.policy.scopes().cloned().collect();
    let mut twin = scopes[0].clone();
    twin.name = scope_name("prod-db-twin");
    scopes.push(twin);
    let principals: Vec<Principal> = w.policy.principals().cloned().collect();
    w.policy = Policy::new(principals, scopes);
    open_refused(&w, w.ask("alice", "db-1"), "ambiguous_host");
    let mut i = w.ask("alice", "db-1");
    i.scope = Some(scope_name("prod-db-twin"));
    assert!(request::open(&w.policy, i, w.fresh(), Timestamp::from_unix(T0)).is_ok());
}

#[test]
fn quorum_of_distinct_approvers_grants() {
    let w = World::new();
    let r = w.open_default();
    let r1 = w.must(&r, Action::Approve(w.bot_approval(&r, "bob", T0 + 10)), T0 + 10);
    assert_eq!(r1.status, Status::Pending, "one of two is not enough");
    refused(
        &w,
        &r1,
        Action::Approve(w.bot_approval(&r1, "bob", T0 + 20)),
        T0 + 20,
        "already_approved",
    );
    let t = request::apply(
        &r1,
        Action::Approve(w.bot_approval(&r1, "carol", T0 + 30)),
        &w.policy,
        &w.pins,
        Timestamp::from_unix(T0 + 30),
    )
    .expect("second approver");
    assert_eq!(t.next.status, Status::Approved);
    let kinds: Vec<AuditKind> = t.audit.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [AuditKind::Approved, AuditKind::Granted]);
    refused(
        &w,
        &t.next,
        Action::Approve(w.bot_approval(&t.next, "carol", T0 + 40)),
        T0 + 40,
        "already_approved",
    );
}

#[test]
fn who_may_approve() {
    let w = World::new();
    let r = w.open_default();
    refused(&w, &r, Action::Approve(w.bot_approval(&r, "dave", T0 + 5)), T0 + 5, "not_an_approver");
    refused(
        &w,
        &r,
        Action::Approve(w.bot_approval(&r, "ci-deploy", T0 + 5)),
        T0 + 5,
        "service_cannot_decide",
    );
    refused(
        &w,
        &r,
        Action::Approve(w.bot_approval(&r, "nobody", T0 + 5)),
        T0 + 5,
        "unknown_principal",
    );

    // bob may request (oncall) and approve (dba), but never his own request.
    let own = request::open(&w.policy, w.ask("bob", "db-1"), w.fresh(), Timestamp::from_unix(T0))
        .expect("open")
        .0;
    refused(
        &w,
        &own,
        Action::Approve(w.bot_approval(&own, "bob", T0 + 5)),
        T0 + 5,
        "self_approval",
    );
    refused(&w, &own, Action::Deny { by: name("bob") }, T0 + 5, "self_approval");
}

#[test]
fn decisions_after_the_end_are_refused() {
    let w = World::new();
    let r = w.open_default();
    let denied = w.must(&r, Action::Deny { by: name("carol") }, T0 + 5);
    assert_eq!(denied.status, Status::Denied);
    refused(&w, &denied, Action::Approve(w.bot_approval(&r, "bob", T0 + 6)), T0 + 6, "wrong_state");

    let late = T0 + 15 * 60;
    refused(&w, &r, Action::Approve(w.bot_approval(&r, "bob", late)), late, "request_expired");

    let granted = w.approved();
    refused(
        &w,
        &granted,
        Action::Approve(w.bot_approval(&granted, "dave", T0 + 90)),
        T0 + 90,
        "not_an_approver",
    );
    let mut with_third = w.policy.principals().cloned().collect::<Vec<_>>();
    with_third.push(Principal {
        name: name("frank"),
        kind: PrincipalKind::Human { groups: [GroupName::parse("dba").expect("group")].into() },
    });
    let w3 = World::with_policy(Policy::new(with_third, w.policy.scopes().cloned().collect()));
    refused(
        &w3,
        &granted,
        Action::Approve(w3.bot_approval(&granted, "frank", T0 + 90)),
        T0 + 90,
        "wrong_state",
    );
}

#[test]
fn signatures_are_checked_strictly() {
    let w = World::new();
    let r = w.open_default();

    let mut tampered = w.bot_approval(&r, "bob", T0 + 5);
    let mut sig = *tampered.signature.as_bytes();
    sig[10] ^= 1;
    tampered.signature = approval::SignatureBytes::from_bytes(sig);
    refused(&w, &r, Action::Approve(tampered), T0 + 5, "bad_signature");

    // A valid approval of another request, replayed here, does not verify.
    let other = w.open_default();
    let replay = w.bot_approval(&other, "bob", T0 + 5);
    refused(&w, &r, Action::Approve(replay), T0 + 5, "bad_signature");

    // Signed by a key nobody pinned.
    let rogue = ApprovalSigner::new(key(9)).sign(&r, &name("bob"), Timestamp::from_unix(T0 + 5));
    refused(&w, &r, Action::Approve(rogue), T0 + 5, "unpinned_key");

    // bob's own key cannot sign for carol.
    let borrowed = w.personal("bob").sign(&r, &name("carol"), Timestamp::from_unix(T0 + 5));
    refused(&w, &r, Action::Approve(borrowed), T0 + 5, "unpinned_key");

    // Approvals claiming a time outside the window, or in the future.
    refused(
        &w,
        &r,
        Action::Approve(w.bot_approval(&r, "bob", T0 - 3600)),
        T0 + 5,
        "signature_out_of_window",
    );
    refused(
        &w,
        &r,
        Action::Approve(w.bot_approval(&r, "bob", T0 + 600)),
        T0 + 5,
        "signature_out_of_window",
    );

    // A personal key is accepted for its owner.
    let own = w.personal("bob").sign(&r, &name("bob"), Timestamp::from_unix(T0 + 5));
    assert_eq!(w.must(&r, Action::Approve(own), T0 + 5).approvals.len(), 1);
}

/// Pins bot key 1 (the world's signer) retired at `T0 + 30` and key 7 as its successor.
fn rotated(w: &World) -> (PinnedKeys, ApprovalSigner) {
    let mut pins = PinnedKeys::new();
    let retired =
        approval::Validity { not_before: None, not_after: Some(Timestamp::from_unix(T0 + 30)) };
    pins.pin_bot_within(w.bot.verifying_key(), retired);
    let next = ApprovalSigner::new(key(7));
    pins.pin_bot(next.verifying_key());
    (pins, next)
}

#[test]
fn a_retired_key_verifies_what_it_signed_before_its_not_after_and_nothing_after() {
    let w = World::new();
    let (pins, next) = rotated(&w);
    let r = w.open_default();
    let apply = |req: &Request, a: Approval, now: i64| {
        request::apply(req, Action::Approve(a), &w.policy, &pins, Timestamp::from_unix(now))
    };

    // Signed by the old key before it retired: accepted (also at the edge, inclusive).
    for at in [T0 + 5, T0 + 30] {
        assert!(apply(&r, w.bot_approval(&r, "bob", at), at).is_ok(), "signed at T0+{}", at - T0);
    }
    // Signed by the old key after it retired: refused, naming the key's window.
    let late = apply(&r, w.bot_approval(&r, "bob", T0 + 31), T0 + 31).expect_err("retired");
    assert_eq!(late.code(), "key_not_valid_at", "{late}");
    assert!(late.to_string().contains("until 2026-11-23T03:14:30Z"), "{late}");
    // The new key signs at any time.
    let fresh = next.sign(&r, &name("bob"), Timestamp::from_unix(T0 + 31));
    assert!(apply(&r, fresh, T0 + 31).is_ok());
    // A key whose window has not started yet signs nothing either.
    let mut early = PinnedKeys::new();
    let later =
        approval::Validity { not_before: Some(Timestamp::from_unix(T0 + 100)), not_after: None };
    early.pin_bot_within(w.bot.verifying_key(), later);
    let e = request::apply(
        &r,
        Action::Approve(w.bot_approval(&r, "bob", T0 + 5)),
        &w.policy,
        &early,
        Timestamp::from_unix(T0 + 5),
    )
    .expect_err("not yet valid");
    assert_eq!(e.code(), "key_not_valid_at", "{e}");
}

#[test]
fn the_gateway_refuses_a_grant_carrying_a_signature_made_after_its_key_retired() {
    let w = World::new();
    let (pins, next) = rotated(&w);
    let r = w.open_default();
    // Approved with the world's pins (key 1 unrestricted), one signature made after T0 + 30.
    let r = w.must(&r, Action::Approve(w.bot_approval(&r, "bob", T0 + 10)), T0 + 10);
    let g = w.must(&r, Action::Approve(w.bot_approval(&r, "carol", T0 + 40)), T0 + 40);
    // The late signature does not count (the gateway skips approvals that do not verify).
    match verify_grant(&g, &w.policy, &pins, Timestamp::from_unix(T0 + 50)) {
        Err(DenyReason::QuorumNotMet { have: 1, need: 2 }) => {}
        other => panic!("expected quorum_not_met (1 of 2), got {other:?}"),
    }
    // The same grant with carol's approval by the new key is accepted by the same gateway.
    let r = w.open_default();
    let r = w.must(&r, Action::Approve(w.bot_approval(&r, "bob", T0 + 10)), T0 + 10);
    let carol = next.sign(&r, &name("carol"), Timestamp::from_unix(T0 + 40));
    let g =
        request::apply(&r, Action::Approve(carol), &w.policy, &pins, Timestamp::from_unix(T0 + 40))
            .expect("the new key signs")
            .next;
    assert!(verify_grant(&g, &w.policy, &pins, Timestamp::from_unix(T0 + 50)).is_ok());
}

#[test]
fn validity_windows_are_inclusive_and_open_ended_when_unset() {
    let at = Timestamp::from_unix;
    let v = approval::Validity { not_before: Some(at(10)), not_after: Some(at(20)) };
    assert!(!v.contains(at(9)) && v.contains(at(10)) && v.contains(at(20)) && !v.contains(at(21)));
    assert!(approval::Validity::ALWAYS.contains(at(i64::MIN)));
    assert!(approval::Validity::ALWAYS.contains(at(i64::MAX)));
    assert_eq!(approval::Validity::ALWAYS.describe(), "always");
    assert_eq!(
        Timestamp::parse_rfc3339("2027-01-10T00:00:00Z").map(Timestamp::unix),
        Ok(1_799_539_200)
    );
    assert!(Timestamp::parse_rfc3339("next tuesday").is_err());
}

#[test]
fn offline_scopes_accept_only_personal_keys() {
    let w = World::new();
    let r =
        request::open(&w.policy, w.ask("alice", "vault-1"), w.fresh(), Timestamp::from_unix(T0))
            .expect("open")
            .0;
    refused(
        &w,
        &r,
        Action::Approve(w.bot_approval(&r, "erin", T0 + 5)),
        T0 + 5,
        "offline_signature_required",
    );
    let signed = w.personal("erin").sign(&r, &name("erin"), Timestamp::from_unix(T0 + 5));
    assert_eq!(w.must(&r, Action::Approve(signed), T0 + 5).status, Status::Approved);
}

#[test]
fn revoke_rules() {
    let w = World::new();
    let r = w.open_default();
    refused(&w, &r, Action::Revoke { by: name("dave") }, T0 + 5, "not_allowed_to_revoke");
    let withdrawn = w.must(&r, Action::Revoke { by: name("alice") }, T0 + 5);
    assert_eq!(
        (withdrawn.status, withdrawn.closed_by.clone()),
        (Status::Revoked, Some(name("alice")))
    );
    refused(&w, &withdrawn, Action::Revoke { by: name("bob") }, T0 + 6, "wrong_state");

    // Revoking an approved grant uses up its nonce: its valid signatures can never open a
    // session, even if the row is edited back to `approved`.
    let approved = w.approved();
    let t = request::apply(
        &approved,
        Action::Revoke { by: name("bob") },
        &w.policy,
        &w.pins,
        Timestamp::from_unix(T0 + 100),
    )
    .expect("revoke");
    assert_eq!(t.consumes_nonce, Some(approved.nonce));
    let t = request::apply(
        &r,
        Action::Revoke { by: name("alice") },
        &w.policy,
        &w.pins,
        Timestamp::from_unix(T0 + 5),
    )
    .expect("withdraw");
    assert_eq!(t.consumes_nonce, None, "a pending request has no grant to use up");

    let live =
        w.must(&w.approved(), Action::SessionStarted(shared::testing::session_started()), T0 + 120);
    assert_eq!(live.status, Status::Active);
    assert_eq!(w.must(&live, Action::Revoke { by: name("bob") }, T0 + 130).status, Status::Revoked);
}

#[test]
fn session_start_consumes_the_nonce_once() {
    let w = World::new();
    let g = w.approved();
    let t = request::apply(
        &g,
        Action::SessionStarted(shared::testing::session_started()),
        &w.policy,
        &w.pins,
        Timestamp::from_unix(T0 + 120),
    )
    .expect("start");
    assert_eq!(t.consumes_nonce, Some(g.nonce));
    refused(
        &w,
        &t.next,
        Action::SessionStarted(shared::testing::session_started()),
        T0 + 121,
        "wrong_state",
    );
    let closed = w.must(&t.next, Action::SessionEnded(shared::testing::session_ended()), T0 + 300);
    assert_eq!(closed.status, Status::Closed);
}

#[test]
fn deadlines_expire_requests() {
    let w = World::new();
    let pending = w.open_default();
    let granted = w.approved();
    let live =
        w.must(&w.approved(), Action::SessionStarted(shared::testing::session_started()), T0 + 120);
    let all = [pending.clone(), granted.clone(), live];
    assert!(due_for_expiry(&all, Timestamp::from_unix(T0 + 60)).is_empty());
    assert_eq!(due_for_expiry(&all, Timestamp::from_unix(T0 + 15 * 60)), vec![pending.id]);
    assert_eq!(due_for_expiry(&all, granted.not_after), vec![pending.id, granted.id]);
    assert_eq!(w.must(&pending, Action::Expire, T0 + 15 * 60).status, Status::Expired);
    refused(&w, &pending, Action::Expire, T0 + 60, "wrong_state");
}

// --- The gateway's decision -------------------------------------------------------------------

#[track_caller]
fn grant_refused(w: &World, r: &Request, now: i64, code: &str) {
    match verify_grant(r, &w.policy, &w.pins, Timestamp::from_unix(now)) {
        Ok(_) => panic!("expected {code}, the grant verified"),
        Err(e) => assert_eq!(e.code(), code, "{e}"),
    }
}

#[test]
fn a_properly_approved_grant_verifies() {
    let w = World::new();
    let g = w.approved();
    let v = verify_grant(&g, &w.policy, &w.pins, Timestamp::from_unix(T0 + 120)).expect("verifies");
    assert_eq!(v.approvers().len(), 2);
    assert_eq!(v.session_deadline().unix(), T0 + 120 + 1800, "start + duration");
    assert_eq!(v.host_addr(), "127.0.0.1:10022");
    let near_end = g.not_after.unix() - 60;
    let v = verify_grant(&g, &w.policy, &w.pins, Timestamp::from_unix(near_end)).expect("verifies");
    assert_eq!(v.session_deadline(), g.not_after, "never past not_after");
}

#[test]
fn a_grant_row_that_was_not_signed_grants_nothing() {
    let w = World::new();
    // A row written straight into the database: status approved, no approvals.
    let mut forged = w.open_default();
    forged.status = Status::Approved;
    grant_refused(&w, &forged, T0 + 60, "quorum_not_met");

    // Approvals signed by an unpinned key.
    let rogue = ApprovalSigner::new(key(9));
    forged.approvals = vec![
        rogue.sign(&forged, &name("bob"), Timestamp::from_unix(T0 + 5)),
        rogue.sign(&forged, &name("carol"), Timestamp::from_unix(T0 + 5)),
    ];
    grant_refused(&w, &forged, T0 + 60, "quorum_not_met");

    // The same valid approval twice counts once.
    let mut dup = w.approved();
    dup.approvals[1] = dup.approvals[0].clone();
    grant_refused(&w, &dup, T0 + 120, "quorum_not_met");
}

#[test]
fn the_gateway_does_not_count_the_requesters_own_approval() {
    let w = World::new();
    // bob may request (oncall) and approve (dba). A row written past the bot: his own request,
    // approved by himself (a genuine, pinned signature, his personal key or the bot's) and
    // by carol. Only carol's counts, so a quorum of 2 is not met.
    let own = request::open(&w.policy, w.ask("bob", "db-1"), w.fresh(), Timestamp::from_unix(T0))
        .expect("open")
        .0;
    for self_signed in [
        w.bot_approval(&own, "bob", T0 + 5),
        w.personal("bob").sign(&own, &name("bob"), Timestamp::from_unix(T0 + 5)),
    ] {
        let mut row = own.clone();
        row.status = Status::Approved;
        row.approvals = vec![self_signed, w.bot_approval(&own, "carol", T0 + 6)];
        match verify_grant(&row, &w.policy, &w.pins, Timestamp::from_unix(T0 + 60)) {
            Ok(_) => panic!("the requester's own approval counted towards the quorum"),
            Err(e) => assert_eq!(e, DenyReason::QuorumNotMet { have: 1, need: 2 }, "{e}"),
        }
    }
}

#[test]
fn any_field_changed_after_signing_voids_the_grant() {
    let w = World::new();
    type Edit = (&'static str, fn(&mut Request));
    let edits: Vec<Edit> = vec![
        ("host", |r| r.host = host("db-2")),
        ("login", |r| r.login = login("root")),
        ("duration", |r| r.duration = dur("59m")),
        ("requester", |r| r.requester = name("carol")),
        ("reason", |r| {
            r.reason = Reason::parse("something else").expect("reason");
        }),
        ("nonce", |r| r.nonce = Nonce::from_bytes([0xee; 32])),
        ("not_after", |r| r.not_after = r.not_after.plus_secs(3600)),
        ("not_before", |r| r.not_before = r.not_before.plus_secs(-1)),
        ("id", |r| {
            r.id = RequestId::from_uuid(uuid::Uuid::from_bytes([0xaa; 16]));
        }),
    ];
    for (field, edit) in edits {
        let mut g = w.approved();
        edit(&mut g);
        match verify_grant(&g, &w.policy, &w.pins, Timestamp::from_unix(T0 + 120)) {
            Ok(_) => panic!("changing {field} after signing must void the grant"),
            Err(e) => {
                assert!(matches!(e.code(), "quorum_not_met" | "self_approval"), "{field}: {e}");
            }
        }
    }
}

#[test]
fn the_gateway_uses_its_own_view_of_policy() {
    let w = World::new();
    let g = w.approved();
    grant_refused(&w, &g, T0 - 1, "not_yet_valid");
    grant_refused(&w, &g, g.not_after.unix(), "grant_ended");
    let mut used = g.clone();
    used.status = Status::Active;
    grant_refused(&w, &used, T0 + 120, "not_approved");

    // carol was removed from the approver group in the gateway's config: one approval left.
    let principals = w
        .policy
        .principals()
        .map(|p| {
            let mut p = p.clone();
            if p.name.as_str() == "carol" {
                p.kind = PrincipalKind::Human {
                    groups: [GroupName::parse("oncall").expect("group")].into(),
                };
            }
            p
        })
        .collect();
    let shrunk = World::with_policy(Policy::new(principals, w.policy.scopes().cloned().collect()));
    grant_refused(&shrunk, &g, T0 + 120, "quorum_not_met");

    // The gateway's config dropped the host.
    let scopes = w
        .policy
        .scopes()
        .map(|s| {
            let mut s = s.clone();
            s.hosts.remove(&host("db-1"));
            s
        })
        .collect();
    let no_host = World::with_policy(Policy::new(w.policy.principals().cloned().collect(), scopes));
    grant_refused(&no_host, &g, T0 + 120, "unknown_host");
}

// --- Properties of the state machine -----------------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    Approve { who: usize, signer: usize, tamper: bool },
    Deny { who: usize },
    Revoke { who: usize },
    Expire,
    Start,
    End,
    Wait(i64),
}

const PEOPLE: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "ci-deploy"];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..PEOPLE.len(), 0..4usize, proptest::bool::weighted(0.2))
            .prop_map(|(who, signer, tamper)| Step::Approve { who, signer, tamper }),
        1 => (0..PEOPLE.len()).prop_map(|who| Step::Deny { who }),
        1 => (0..PEOPLE.len()).prop_map(|who| Step::Revoke { who }),
        1 => Just(Step::Expire),
        1 => Just(Step::Start),
        1 => Just(Step::End),
        2 => (1..1200i64).prop_map(Step::Wait),
    ]
}

fn to_action(w: &World, r: &Request, s: &Step, now: i64) -> Option<Action> {
    Some(match s {
        Step::Approve { who, signer, tamper } => {
            let who_name = name(PEOPLE[*who]);
            let signer = match signer {
                0 => &w.bot,
                1 => w.personal("bob"),
                2 => w.personal("carol"),
                _ => w.personal("erin"),
            };
            let mut a = signer.sign(r, &who_name, Timestamp::from_unix(now));
            if *tamper {
                let mut b = *a.signature.as_bytes();
                b[0] ^= 0x80;
                a.signature = approval::SignatureBytes::from_bytes(b);
            }
            Action::Approve(a)
        }
        Step::Deny { who } => Action::Deny { by: name(PEOPLE[*who]) },
        Step::Revoke { who } => Action::Revoke { by: name(PEOPLE[*who]) },
        Step::Expire => Action::Expire,
        Step::Start => Action::SessionStarted(shared::testing::session_started()),
        Step::End => Action::SessionEnded(shared::testing::session_ended()),
        Step::Wait(_) => return None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// No sequence of events reaches `approved` without a quorum of distinct, valid, non-self
    /// approvals, and no event leaves a terminal state.
    #[test]
    fn no_grant_without_quorum_and_terminal_states_stay(
        steps in proptest::collection::vec(step(), 1..40),
        vault in any::<bool>(),
    ) {
        let w = World::new();
        let host_name = if vault { "vault-1" } else { "db-1" };
        let (mut r, _) = request::open(&w.policy, w.ask("alice", host_name), w.fresh(), Timestamp::from_unix(T0)).expect("open");
        let scope = w.policy.scope(&r.scope).expect("scope").clone();
        let mut now = T0;
        for s in &steps {
            if let Step::Wait(d) = s { now += d; continue; }
            let action = to_action(&w, &r, s, now).expect("non-wait step");
            let before = r.clone();
            match request::apply(&r, action, &w.policy, &w.pins, Timestamp::from_unix(now)) {
                Ok(t) => {
                    prop_assert!(!before.status.is_terminal(), "left terminal state {:?}", before.status);
                    prop_assert_eq!(t.next.version, before.version + 1);
                    r = t.next;
                }
                Err(_) => prop_assert_eq!(&r, &before),
            }
            if matches!(r.status, Status::Approved | Status::Active | Status::Closed)
                || (r.status == Status::Revoked && r.approvals.len() >= request::quorum(&scope))
            {
                let mut distinct: Vec<&PrincipalName> = Vec::new();
                for a in &r.approvals {
                    prop_assert!(a.approver != r.requester);
                    prop_assert!(w.policy.is_approver(&a.approver, &scope));
                    prop_assert!(w.pins.verify(&r, a, &scope).is_ok());
                    if !distinct.contains(&&a.approver) { distinct.push(&a.approver); }
                }
                prop_assert!(distinct.len() >= request::quorum(&scope), "{:?} with {} approvals", r.status, distinct.len());
            }
            if r.status == Status::Approved {
                let mut g = r.clone();
                g.status = Status::Approved;
                if now < g.not_after.unix() {
                    prop_assert!(verify_grant(&g, &w.policy, &w.pins, Timestamp::from_unix(now)).is_ok());
                }
            }
        }
    }
}

/// A log as storage would chain it: `key_loaded` pinning `recorded` (none: the event written
/// before rotation existed), then a request approved by bob through the world's bot key (1).
fn log_with_pins(w: &World, recorded: Vec<event::PinnedKeyRecord>) -> Vec<AuditEntry> {
    let loaded = AuditDraft::of(
        None,
        "bot",
        &AuditData::KeyLoaded(event::KeyLoaded {
            purpose: "approval_signing".into(),
            key_id: w.bot.key_id(),
            pinned_bot_keys: vec![w.bot.key_id()],
            pinned_personal_keys: Vec::new(),
            pinned_keys: recorded,
        }),
    );
    let (r, requested) =
        request::open(&w.policy, w.ask("alice", "db-1"), w.fresh(), Timestamp::from_unix(T0))
            .expect("open");
    let a = w.bot_approval(&r, "bob", T0 + 10);
    let t =
        request::apply(&r, Action::Approve(a), &w.policy, &w.pins, Timestamp::from_unix(T0 + 10))
            .expect("approve");
    let mut out: Vec<AuditEntry> = Vec::new();
    for d in [loaded, requested].into_iter().chain(t.audit) {
        let prev = out.last().map(|e| (e.seq, e.hash));
        out.push(AuditEntry::next(prev, Timestamp::from_unix(T0 + 10), &d));
    }
    out
}

/// What `audit verify` says of `log` with only key 7 pinned in the auditor's config.
fn audit_with_only_the_new_key(log: &[AuditEntry]) -> Result<Vec<KeyId>, String> {
    let mut pins = PinnedKeys::new();
    pins.pin_bot(ApprovalSigner::new(key(7)).verifying_key());
    let mut c = audit_verify::AuditChecker::new(&pins);
    for e in log {
        c.check(e).map_err(|p| p.to_string())?;
    }
    Ok(c.from_recorded_pins().copied().collect())
}

#[test]
fn audit_verify_checks_a_dropped_key_against_the_pin_the_log_recorded_and_says_so() {
    let w = World::new();
    let record = |not_after: Option<i64>| event::PinnedKeyRecord {
        role: event::PinRole::Bot,
        key_id: w.bot.key_id(),
        public_key: approval::public_key_text(&w.bot.verifying_key()),
        approver: None,
        not_before: None,
        not_after: not_after.map(Timestamp::from_unix),
    };
    // Recorded as pinned: the approval verifies, and the report names the key.
    let log = log_with_pins(&w, vec![record(None)]);
    assert_eq!(audit_with_only_the_new_key(&log), Ok(vec![w.bot.key_id()]));
    // Recorded as pinned only until before the approval was signed: refused.
    let log = log_with_pins(&w, vec![record(Some(T0 + 5))]);
    let e = audit_with_only_the_new_key(&log).expect_err("signed after its recorded not_after");
    assert!(e.contains("pinned only until"), "{e}");
    // Never recorded (an old log, or a key nobody pinned): refused as unpinned.
    let log = log_with_pins(&w, Vec::new());
    let e = audit_with_only_the_new_key(&log).expect_err("never pinned");
    assert!(e.contains("not pinned"), "{e}");
    // A record whose key id is not its key's is malformed, not trusted.
    let mut lying = record(None);
    lying.public_key = approval::public_key_text(&ApprovalSigner::new(key(9)).verifying_key());
    let e = audit_with_only_the_new_key(&log_with_pins(&w, vec![lying])).expect_err("lying");
    assert!(e.contains("for another key"), "{e}");
}
