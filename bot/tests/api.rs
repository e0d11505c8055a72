//! The HTTP API end to end through the real router and a real store, on SQLite and PostgreSQL:
//! the approval flow, every bad input the foundation issue lists (each with its stable code
//! and no partial state), offline signatures, the reaper's expiry and the service endpoints.

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::{App, TestResult, assert_error};
use serde_json::{Value, json};
use shared::core::PrincipalName;
use shared::testing::db::{Backend, run};
use shared::testing::{T0, key};

fn db1(reason: &str) -> Value {
    json!({ "host": "db-1", "reason": reason })
}

test_util::both_backends!(quorum_flow_grants_then_revoke_ends_it);
async fn quorum_flow_grants_then_revoke_ends_it(db: shared::testing::db::TestDb) -> TestResult {
    let app = App::new(&db);
    let code = app.open("alice", json!({"host": "db-1", "login": "postgres", "duration": "30m", "reason": "replica lag"})).await;

    let (s, v) = app.act(&code, "approve", "bob").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "pending", "one of two approvals is not enough");
    assert_eq!(v["approvals"][0]["approver"], "bob");
    assert_eq!(v["approvals"][0]["signer"], "bot");

    let (s, v) = app.act(&code, "approve", "carol").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "approved");
    assert!(v["connect"].is_null(), "only the requester sees the connect line: {v}");

    let (_, mine) = app.get(&format!("/api/v1/requests/{code}"), "alice").await;
    assert_eq!(mine["connect"], format!("ssh -p 2222 {code}@gw.example"));

    // The stored approvals verify against the pinned keys, rebuilt from the stored request.
    let req = app.deps.get(&code.parse()?).await?;
    let scope = app.deps.config.policy.scope(&req.scope)?;
    for a in &req.approvals {
        app.deps.pins.verify(&req, a, scope)?;
    }

    let (s, v) = app.act(&code, "revoke", "bob").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((v["status"].as_str(), v["closed_by"].as_str()), (Some("revoked"), Some("bob")));

    let kinds: Vec<String> =
        db.store.audit_page(0, 100).await?.into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["requested", "approved", "approved", "granted", "revoked"]);
    Ok(())
}

test_util::both_backends!(bad_request_input_is_refused_with_codes_and_nothing_written);
async fn bad_request_input_is_refused_with_codes_and_nothing_written(
    db: shared::testing::db::TestDb,
) -> TestResult {
    let app = App::new(&db);
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "alice",
            json!({"host": "db-1", "scope": "nope", "reason": "x"}),
            StatusCode::BAD_REQUEST,
            "unknown_scope",
        ),
        ("alice", json!({"host": "db-99", "reason": "x"}), StatusCode::BAD_REQUEST, "unknown_host"),
        (
            "alice",
            json!({"host": "db-1", "login": "admin", "reason": "x"}),
            StatusCode::BAD_REQUEST,
            "login_not_allowed",
        ),
        (
            "alice",
            json!({"host": "db-1", "login": "Admin!", "reason": "x"}),
            StatusCode::BAD_REQUEST,
            "invalid_login",
        ),
        (
            "alice",
            json!({"host": "db-1", "duration": "a while", "reason": "x"}),
            StatusCode::BAD_REQUEST,
            "invalid_duration",
        ),
        (
            "alice",
            json!({"host": "db-1", "duration": "0m", "reason": "x"}),
            StatusCode::BAD_REQUEST,
            "invalid_duration",
        ),
        (
            "alice",
            json!({"host": "db-1", "duration": "2h", "reason": "x"}),
            StatusCode::BAD_REQUEST,
            "duration_too_long",
        ),
        (
            "dave",
            json!({"host": "db-1", "reason": "x"}),
            StatusCode::FORBIDDEN,
            "requester_not_allowed",
        ),
        (
            "ci-deploy",
            json!({"host": "vault-1", "reason": "x"}),
            StatusCode::FORBIDDEN,
            "requester_not_allowed",
        ),
        (
            "alice",
            json!({"host": "db-1", "reason": "x".repeat(1001)}),
            StatusCode::BAD_REQUEST,
            "invalid_reason",
        ),
        (
            "alice",
            json!({"host": "db-1", "reason": "ok\u{1b}[31m red"}),
            StatusCode::BAD_REQUEST,
            "invalid_reason",
        ),
        (
            "alice",
            json!({"host": "db-1", "reason": "   "}),
            StatusCode::BAD_REQUEST,
            "invalid_reason",
        ),
        (
            "alice",
            json!({"host": "db-1", "reason": "x", "approve": true}),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        ("alice", json!({"reason": "x"}), StatusCode::BAD_REQUEST, "malformed_json"),
    ];
    for (who, body, status, code) in cases {
        let got = app.post("/api/v1/requests", who, body.clone()).await;
        assert_error(&got, status, code);
        assert_eq!(app.request_count().await, 0, "{code}: no request stored for {body}");
        assert_eq!(app.audit_len().await, 0, "{code}: no audit event for {body}");
    }
    let got = app
        .raw(
            Method::POST,
            "/api/v1/requests",
            Some(format!("Bearer {}", common::token("alice"))),
            Body::from("{\"host\": \"db-1\", "),
            true,
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "malformed_json");
    assert_eq!(app.request_count().await, 0);
    Ok(())
}

test_util::both_backends!(tokens_are_required_and_checked);
async fn tokens_are_required_and_checked(db: shared::testing::db::TestDb) -> TestResult {
    let app = App::new(&db);
    let no_token = app
        .raw(Method::POST, "/api/v1/requests", None, Body::from(db1("x").to_string()), true)
        .await;
    assert_error(&no_token, StatusCode::UNAUTHORIZED, "missing_token");
    let wrong = app
        .raw(
            Method::POST,
            "/api/v1/requests",
            Some("Bearer bgt_guess".into()),
            Body::from(db1("x").to_string()),
            true,
        )
        .await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_token");
    let basic = app
        .raw(
            Method::GET,
            "/api/v1/requests",
            Some("Basic YWxpY2U6eA==".into()),
            Body::empty(),
            false,
        )
        .await;
    assert_error(&basic, StatusCode::UNAUTHORIZED, "missing_token");
    assert_error(&app.get("/api/v1/whoami", "").await, StatusCode::UNAUTHORIZED, "missing_token");
    assert_eq!(app.request_count().await, 0);

    let (s, me) = app.get("/api/v1/whoami", "ci-deploy").await;
    assert_eq!(
        (s, me["name"].as_str(), me["kind"].as_str()),
        (StatusCode::OK, Some("ci-deploy"), Some("service"))
    );
    Ok(())
}

test_util::both_backends!(who_may_decide);
async fn who_may_decide(db: shared::testing::db::TestDb) -> TestResult {
    let app = App::new(&db);
    let code = app.open("bob", db1("disk full")).await;
    assert_error(&app.act(&code, "approve", "bob").await, StatusCode::FORBIDDEN, "self_approval");
    assert_error(
        &app.act(&code, "approve", "dave").await,
        StatusCode::FORBIDDEN,
        "not_an_approver",
    );
    assert_error(
        &app.act(&code, "approve", "ci-deploy").await,
        StatusCode::FORBIDDEN,
        "service_cannot_decide",
    );
    assert_error(&app.act(&code, "deny", "dave").await, StatusCode::FORBIDDEN, "not_an_approver");
    assert_error(
        &app.act(&code, "revoke", "dave").await,
        StatusCode::FORBIDDEN,
        "not_allowed_to_revoke",
    );
    assert_eq!(app.audit_len().await, 1, "only the `requested` event");

    let (s, _) = app.act(&code, "approve", "carol").await;
    assert_eq!(s, StatusCode::OK);
    assert_error(
        &app.act(&code, "approve", "carol").await,
        StatusCode::CONFLICT,
        "already_approved",
    );
    let req = app.deps.get(&code.parse()?).await?;
    assert_eq!(req.approvals.len(), 1, "the second click recorded nothing");
    assert_eq!(app.audit_len().await, 2);
    Ok(())
}

test_util::both_backends!(decisions_after_the_end_are_refused);
async fn decisions_after_the_end_are_refused(db: shared::testing::db::TestDb) -> TestResult {
    let app = App::new(&db);
    // After deny.
    let denied = app.open("alice", db1("one")).await;
    let (s, v) = app.act(&denied, "deny", "carol").await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("denied")));
    assert_error(&app.act(&denied, "approve", "bob").await, StatusCode::CONFLICT, "wrong_state");

    // After the grant.
    let granted = app.open("alice", db1("two")).await;
    app.act(&granted, "approve", "bob").await;
    app.act(&granted, "approve", "carol").await;
    let mut more = (*app.deps.config).clone();
    more.policy = shared::core::Policy::new(
        more.policy
            .principals()
            .cloned()
            .chain([shared::core::Principal {
                name: PrincipalName::parse("frank")?,
                kind: shared::core::PrincipalKind::Human {
                    groups: [shared::core::GroupName::parse("dba")?].into(),
                },
            }])
            .collect(),
        more.policy.scopes().cloned().collect(),
    );
    let late = bot::service::Deps { config: std::sync::Arc::new(more), ..app.deps.clone() };
    let err = late
        .approve(&granted.parse()?, &PrincipalName::parse("frank")?, None)
        .await
        .expect_err("refused");
    assert_eq!(bot::http::error::ApiError::from(err).code(), "wrong_state");

    // After expiry (15 minutes without quorum).
    let expiring = app.open("alice", db1("three")).await;
    app.act(&expiring, "approve", "bob").await;
    app.clock.advance(15 * 60);
    let before = app.audit_len().await;
    assert_error(
        &app.act(&expiring, "approve", "carol").await,
        StatusCode::CONFLICT,
        "request_expired",
    );
    assert_eq!(app.audit_len().await, before);
    let (_, v) = app.get(&format!("/api/v1/requests/{expiring}"), "alice").await;
    assert_eq!(v["status"], "expired", "shown as expired before the reaper runs");

    // The reaper stores it.
    assert_eq!(app.deps.expire_due().await?, 1);
    let stored = app.deps.get(&expiring.parse()?).await?;
    assert_eq!(stored.status, shared::core::Status::Expired);
    assert_eq!(app.deps.expire_due().await?, 0, "expired once");
    Ok(())
}

/// An offline approval body signed with `seed`'s key for `approver` over the request `code`.
async fn offline(app: &App, code: &str, approver: &str, seed: u8, at: i64) -> Value {
    let req = app.deps.get(&code.parse().expect("code")).await.expect("request");
    let a = shared::core::ApprovalSigner::new(key(seed)).sign(
        &req,
        &PrincipalName::parse(approver).expect("name"),
        shared::core::Timestamp::from_unix(at),
    );
    json!({ "approver": approver, "key_id": a.key_id.to_hex(), "signed_at": at, "signature": a.signature.to_hex() })
}

test_util::both_backends!(signatures_are_verified_strictly);
async fn signatures_are_verified_strictly(db: shared::testing::db::TestDb) -> TestResult {
    let app = App::new(&db);
    let vault = app.open("alice", json!({"host": "vault-1", "reason": "unseal"})).await;
    let path = format!("/api/v1/requests/{vault}/approve");

    // A bot signature is not enough where the scope wants the approver's own key.
    assert_error(
        &app.act(&vault, "approve", "erin").await,
        StatusCode::FORBIDDEN,
        "offline_signature_required",
    );

    // Tampered.
    let mut body = offline(&app, &vault, "erin", 5, T0 + 5).await;
    let mut sig = body["signature"].as_str().unwrap_or_default().to_owned();
    sig.replace_range(0..2, if sig.starts_with("00") { "01" } else { "00" });
    body["signature"] = json!(sig);
    assert_error(&app.post(&path, "erin", body).await, StatusCode::BAD_REQUEST, "bad_signature");

    // Signed by a key nobody pinned.
    assert_error(
        &app.post(&path, "erin", offline(&app, &vault, "erin", 9, T0 + 5).await).await,
        StatusCode::FORBIDDEN,
        "unpinned_key",
    );

    // A valid signature sent with someone else's token.
    assert_error(
        &app.post(&path, "alice", offline(&app, &vault, "erin", 5, T0 + 5).await).await,
        StatusCode::FORBIDDEN,
        "approver_mismatch",
    );

    // Replayed from another request.
    let other = app.open("alice", json!({"host": "vault-1", "reason": "another"})).await;
    let replay = offline(&app, &other, "erin", 5, T0 + 5).await;
    assert_error(&app.post(&path, "erin", replay).await, StatusCode::BAD_REQUEST, "bad_signature");
    assert_eq!(app.deps.get(&vault.parse()?).await?.approvals.len(), 0, "nothing recorded so far");

    // The real one passes; replaying it is refused.
    let good = offline(&app, &vault, "erin", 5, T0 + 5).await;
    let (s, v) = app.post(&path, "erin", good.clone()).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("approved")), "{v}");
    assert_eq!(v["approvals"][0]["signer"], "personal");
    assert_error(&app.post(&path, "erin", good).await, StatusCode::CONFLICT, "already_approved");

    // Malformed signature fields.
    let other_path = format!("/api/v1/requests/{other}/approve");
    let got = app
        .post(
            &other_path,
            "erin",
            json!({"approver": "erin", "key_id": "zz", "signed_at": T0, "signature": "00"}),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_value");
    let got = app
        .raw(
            Method::POST,
            &other_path,
            Some(format!("Bearer {}", common::token("erin"))),
            Body::from("not json"),
            true,
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "malformed_json");
    Ok(())
}

test_util::both_backends!(lists_and_lookups);
async fn lists_and_lookups(db: shared::testing::db::TestDb) -> TestResult {
    let app = App::new(&db);
    let a = app.open("alice", db1("first")).await;
    let b = app.open("carol", db1("second")).await;
    app.act(&b, "deny", "bob").await;

    let (_, all) = app.get("/api/v1/requests", "bob").await;
    let codes: Vec<&str> = all["requests"]
        .as_array()
        .map(|v| v.iter().filter_map(|r| r["code"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(codes.len(), 2);
    let (_, pending) = app.get("/api/v1/requests?status=pending", "bob").await;
    assert_eq!(pending["requests"][0]["code"], a.as_str());
    assert_eq!(pending["requests"].as_array().map(Vec::len), Some(1));
    let (_, mine) = app.get("/api/v1/requests?mine=true", "carol").await;
    assert_eq!(mine["requests"].as_array().map(Vec::len), Some(1));
    assert_error(
        &app.get("/api/v1/requests?status=bogus", "bob").await,
        StatusCode::BAD_REQUEST,
        "invalid_value",
    );

    let id = app.deps.get(&a.parse()?).await?.id.to_string();
    let (s, by_id) = app.get(&format!("/api/v1/requests/{id}"), "bob").await;
    assert_eq!((s, by_id["code"].as_str()), (StatusCode::OK, Some(a.as_str())));
    assert_error(
        &app.get("/api/v1/requests/bg-000000", "bob").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &app.get("/api/v1/requests/drop-table", "bob").await,
        StatusCode::BAD_REQUEST,
        "invalid_value",
    );
    Ok(())
}

test_util::both_backends!(service_endpoints);
async fn service_endpoints(db: shared::testing::db::TestDb) -> TestResult {
    let app = App::new(&db);
    let (s, body) = app.get("/healthz", "").await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, Some("ok")));
    let (s, _) = app.get("/readyz", "").await;
    assert_eq!(s, StatusCode::OK);
    let (s, doc) = app.get("/api/openapi.json", "").await;
    assert_eq!(s, StatusCode::OK);
    for p in [
        "/api/v1/requests",
        "/api/v1/requests/{id}",
        "/api/v1/requests/{id}/approve",
        "/api/v1/requests/{id}/deny",
        "/api/v1/requests/{id}/revoke",
        "/api/v1/whoami",
        "/api/v1/review-links",
        "/api/v1/search",
        "/api/v1/requests/{id}/recording",
        "/api/v1/requests/{id}/bundle",
        "/healthz",
        "/readyz",
    ] {
        assert!(doc["paths"][p].is_object(), "OpenAPI documents {p}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert_error(&app.get("/nope", "").await, StatusCode::NOT_FOUND, "not_found");
    Ok(())
}

/// PostgreSQL goes away under a running bot: readiness fails and writes fail closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_fails_closed() {
    run(Backend::Postgres, |db| async move {
        let app = App::new(&db);
        let code = app.open("alice", db1("before the outage")).await;
        db.admin.terminate_connections_and_block().await?;
        let (s, _) = app.get("/readyz", "").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_error(
            &app.post("/api/v1/requests", "alice", db1("x")).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        );
        assert_error(
            &app.act(&code, "approve", "bob").await,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        );
        Ok(())
    })
    .await;
}
