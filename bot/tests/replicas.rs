//! Work claimed once across replicas: two bot replicas (two services over two connection
//! pools to one database, as two processes have) run their reapers at the same moment over
//! the same due requests. Each request is expired once, with one `expired` audit event, and
//! the chain stays one chain. What makes it so is in the store, not in the reaper: write
//! transactions are serialised (PostgreSQL advisory lock, SQLite `BEGIN IMMEDIATE`) and every
//! transition is applied only over the version it was computed from.

mod common;

use std::sync::Arc;

use common::{App, TestResult};
use serde_json::json;
use shared::core::Status;
use shared::ports::RequestFilter;

/// Due requests, and how many rounds both reapers run at once.
const REQUESTS: usize = 12;
const ROUNDS: usize = 4;

test_util::both_backends!(two_reapers_at_once_expire_each_request_once_with_one_audit_event);
async fn two_reapers_at_once_expire_each_request_once_with_one_audit_event(
    db: shared::testing::db::TestDb,
) -> TestResult {
    let a = App::new(&db);
    // Replica B: the same config, keys and clock, its own pool to the same database.
    let mut b = a.deps.clone();
    b.store = shared::storage::connect(&db.admin.url).await?;
    assert!(!Arc::ptr_eq(&a.deps.store, &b.store), "two pools, as two processes have");
    let mut codes = Vec::new();
    for i in 0..REQUESTS {
        let body = json!({"host": "db-1", "login": "postgres", "duration": "30m", "reason": format!("reap {i}")});
        let code = a.open("alice", body).await;
        if i % 2 == 0 {
            // Half of them approved (one of two): the deadline is the same, the state differs.
            let (s, v) = a.act(&code, "approve", "bob").await;
            assert_eq!(s, axum::http::StatusCode::OK, "{v}");
        }
        codes.push(code);
    }
    let before = a.audit_len().await;
    // Past every approval deadline (15 minutes).
    a.clock.advance(16 * 60);
    let mut expired = 0;
    for _ in 0..ROUNDS {
        let (x, y) = tokio::join!(a.deps.expire_due(), b.expire_due());
        expired += x? + y?;
    }
    assert_eq!(expired, REQUESTS, "each request expired by exactly one of the two reapers");
    let listed = a
        .deps
        .store
        .list_requests(&RequestFilter { limit: 1000, ..RequestFilter::default() })
        .await?;
    assert_eq!(listed.len(), REQUESTS);
    assert!(listed.iter().all(|r| r.status == Status::Expired), "{listed:?}");
    let log = a.deps.store.audit_page(0, 1000).await?;
    let new = &log[before..];
    assert_eq!(new.len(), REQUESTS, "one audit event per request, none doubled: {new:?}");
    for r in &listed {
        let events = new
            .iter()
            .filter(|e| e.request_id.as_deref() == Some(r.id.to_string().as_str()))
            .map(|e| e.kind.as_str())
            .collect::<Vec<_>>();
        assert_eq!(events, ["expired"], "request {}", r.code);
    }
    // The chain is one chain: each event links to the one before it.
    for pair in log.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].prev_hash, pair[0].hash, "the chain forked at {}", pair[1].seq);
    }
    Ok(())
}
