//! PostgreSQL stopped under a running deployment: one `breakglass bot`, one `breakglass
//! gateway` and sshd on a PostgreSQL cluster of the test's own, stopped with `pg_ctl stop -m
//! immediate` while a session is live. No new access is opened anywhere while it is down, the
//! live session is still cut at its deadline, and once PostgreSQL is back the session's end is
//! stored, the request is closed and the audit chain verifies.

use std::time::{Duration, Instant};

use e2e::cluster::{Cluster, ClusterOptions, type_line};
use e2e::throwaway_pg::ThrowawayPg;
use serde_json::json;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// alice's request for db-1 for `duration`, approved by bob and carol: its code and id.
fn grant(c: &Cluster, duration: &str) -> (String, String) {
    let body =
        json!({ "host": "db-1", "login": c.login, "reason": "pg down", "duration": duration });
    let (s, v) = c.api(0, "alice", "POST", "/api/v1/requests", Some(body));
    assert_eq!(s, 201, "{v}");
    let code = v["code"].as_str().expect("code").to_owned();
    c.act(0, &code, "approve", "bob");
    c.act(0, &code, "approve", "carol");
    let id = c.status(&code)["id"].as_str().expect("id").to_owned();
    (code, id)
}

#[test]
fn with_postgres_stopped_nothing_new_opens_the_deadline_holds_and_nothing_is_lost() {
    let pg = ThrowawayPg::start();
    let c = Cluster::start(ClusterOptions {
        bots: 1,
        gateways: 1,
        database_url: Some(pg.url.clone()),
        scope_extra: "max_duration = \"10m\"\ndefault_duration = \"10m\"\n".into(),
        ..ClusterOptions::default()
    });
    let (live, live_id) = grant(&c, "60s");
    let (other, _) = grant(&c, "10m");
    let before = c.dir.path().join("typed-with-the-database-down");
    let after = c.dir.path().join("typed-after-the-deadline");
    let refused = c.dir.path().join("ran-on-a-new-grant");
    let (mut child, out, mut stdin) = c.shell(0, &live);
    // The session's deadline is its start plus the grant's 60 s; it started just before.
    let deadline = e2e::unix_now() + 60;

    pg.stop();

    // The live session goes on, recorded.
    assert!(type_line(&mut stdin, &format!("touch {}", before.display())));
    test_util::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || before.exists().then_some(()),
        || format!("the live session stopped with the database\n{}", c.logs()),
    );

    // No new access: a login with another approved grant is refused, and runs nothing.
    let began = Instant::now();
    let o = c
        .ssh_cmd(0, &other, &["touch", refused.to_str().expect("utf-8")])
        .output()
        .expect("ssh runs");
    let took = began.elapsed();
    eprintln!("the refused login took {took:?}: {}", text(&o.stderr));
    assert!(took < Duration::from_secs(45), "a login with the database down hung for {took:?}");
    assert!(!o.status.success(), "a new session opened with the database down");
    assert!(!refused.exists(), "a command ran on a new grant with the database down");
    // The user is told why, before the login grace time drops the connection.
    assert!(
        text(&o.stderr).contains("database unavailable"),
        "the refusal names its reason: {}",
        text(&o.stderr)
    );

    // The live session is cut at its deadline all the same.
    let ended = test_util::eventually(Duration::from_secs(60), Duration::from_millis(50), || {
        child.try_wait().expect("wait").is_some()
    });
    let at = e2e::unix_now();
    if !ended {
        let _ = child.kill();
        panic!("the session outlived its deadline by a minute\n{}", c.logs());
    }
    assert!(at >= deadline - 5, "cut at {at}, before its deadline {deadline}");
    assert!(at <= deadline + 10, "cut at {at}, long after its deadline {deadline}");
    let _ = type_line(&mut stdin, &format!("touch {}", after.display()));
    std::thread::sleep(Duration::from_secs(1));
    assert!(!after.exists(), "a command typed after the deadline ran on the target");
    let stderr = child.wait_with_output().expect("ssh's stderr").stderr;
    let seen = text(&out.lock().expect("output").clone()) + &text(&stderr);
    assert!(seen.contains("break-glass window for db-1 ended at"), "{seen}");

    // PostgreSQL back: the end is stored, the request closed, the chain intact.
    pg.start_again();
    let began = Instant::now();
    let ended_sql = format!(
        "SELECT count(*)::bigint FROM audit_events WHERE kind = 'session_ended' \
         AND request_id = '{live_id}'"
    );
    test_util::wait_until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || (c.numbers(&ended_sql) == [1]).then_some(()),
        || format!("the session's end never reached the database\n{}", c.logs()),
    );
    eprintln!("the session's end was stored {:?} after PostgreSQL came back", began.elapsed());
    c.wait_status(&live, "closed", 30);
    assert_eq!(c.status(&other)["status"], "approved", "the refused grant was never used");
    let verify = c.cli(&c.bots[0].data_dir, &["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}
