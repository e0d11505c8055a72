//! Replicas on one database, end to end: two `breakglass bot` and two `breakglass gateway`
//! processes on one PostgreSQL (harness: `e2e::cluster`). A revoke through one bot reaches
//! a session on another process's gateway at once (the change feed: LISTEN/NOTIFY), the feed
//! comes back after its connection is killed, a gateway killed mid-session recovers it at its
//! next start, and the schema is applied once however many replicas start together, and never
//! by a binary older than the database.

use std::time::{Duration, Instant};

use e2e::cluster::{Cluster, ClusterOptions, type_line};
use e2e::gateway::{World, WorldOptions};

/// How fast a revoke must reach a session on another process's gateway when only the change
/// feed can explain it (the gateways poll once an hour).
const FAST: Duration = Duration::from_secs(5);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The PIDs of the gateways' change-feed connections (`application_name` set by the feed).
fn listeners(c: &Cluster) -> Vec<i64> {
    c.numbers(&format!(
        "SELECT pid::bigint FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = '{}' ORDER BY pid",
        shared::storage::CHANGE_LISTENER_NAME
    ))
}

/// Waits until `n` change-feed connections are open; their PIDs.
fn wait_listeners(c: &Cluster, n: usize) -> Vec<i64> {
    test_util::wait_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let l = listeners(c);
            (l.len() == n).then_some(l)
        },
        || format!("never {n} change-feed connections: {:?}\n{}", listeners(c), c.logs()),
    )
}

/// Revokes `code` as bob through bot `bot` and waits (up to 30 s) for the ssh client to end:
/// how long that took.
fn revoke_and_time_the_cut(
    c: &Cluster,
    bot: usize,
    code: &str,
    child: &mut std::process::Child,
) -> Duration {
    let began = Instant::now();
    c.act(bot, code, "revoke", "bob");
    let ended = test_util::eventually(Duration::from_secs(30), Duration::from_millis(10), || {
        child.try_wait().expect("wait").is_some()
    });
    let took = began.elapsed();
    if !ended {
        let _ = child.kill();
        panic!("the session outlived the revoke by 30 s\n{}", c.logs());
    }
    took
}

#[test]
fn a_revoke_through_one_bot_cuts_a_session_on_another_gateway_at_once() {
    let c = Cluster::start(ClusterOptions {
        revocation_poll: "1h".into(),
        ..ClusterOptions::default()
    });
    wait_listeners(&c, 2);
    // Requested through bot A, approved by two approvers through bot B.
    let code = c.grant();
    let before = c.dir.path().join("typed-before-the-cut");
    let after = c.dir.path().join("typed-after-the-cut");
    let (mut child, out, mut stdin) = c.shell(0, &code);
    assert!(type_line(&mut stdin, &format!("touch {}", before.display())));
    test_util::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || before.exists().then_some(()),
        || format!("the command before the cut never ran\n{}", c.logs()),
    );
    // Revoked through bot B: gateway A (polling once an hour) hears it on the change feed.
    let took = revoke_and_time_the_cut(&c, 1, &code, &mut child);
    // bench/replicas.sh collects this line.
    eprintln!("cut-latency replicas {}", took.as_secs_f64());
    assert!(
        took <= FAST,
        "the cut took {took:?}: the change feed did not wake gateway A\n{}",
        c.logs()
    );
    // A command typed after the cut never runs on the target.
    let _ = type_line(&mut stdin, &format!("touch {}", after.display()));
    std::thread::sleep(Duration::from_secs(1));
    assert!(!after.exists(), "a command typed after the cut ran on the target");
    // The one line that says why: on the terminal, or as the disconnect message.
    let stderr = child.wait_with_output().expect("ssh's stderr").stderr;
    let seen = text(&out.lock().expect("output").clone()) + &text(&stderr);
    assert!(seen.contains(&format!("the grant {code} for db-1 was revoked by bob")), "{seen}");
    c.wait_status(&code, "revoked", 10);
}

/// The one-node number beside it (bench/replicas.sh): `breakglass up` on PostgreSQL, where the
/// revoke wakes the gateway in the same process (and the process also follows the feed).
#[test]
fn a_revoke_in_one_process_on_postgres_cuts_at_once() {
    let w = World::with(WorldOptions {
        postgres: true,
        gateway_extra: "revocation_poll = \"1h\"\n".into(),
        ..WorldOptions::default()
    });
    let code = w.grant("db-1", None);
    let (mut child, _printed) = w.printing(&code, "one-node");
    let began = Instant::now();
    let (s, v) = w.api("bob", "POST", &format!("/api/v1/requests/{code}/revoke"), None);
    assert_eq!(s, 200, "{v}");
    let ended = test_util::eventually(Duration::from_secs(30), Duration::from_millis(10), || {
        child.try_wait().expect("wait").is_some()
    });
    let took = began.elapsed();
    if !ended {
        let _ = child.kill();
        panic!("the session outlived the revoke\n{}", w.server.log());
    }
    eprintln!("cut-latency one-node {}", took.as_secs_f64());
    assert!(took <= FAST, "the cut took {took:?}\n{}", w.server.log());
    assert!(w.server.log().contains("following the database's change feed"), "{}", w.server.log());
}

#[test]
fn the_change_feed_comes_back_after_its_connection_is_killed_and_still_cuts() {
    let c = Cluster::start(ClusterOptions {
        revocation_poll: "1h".into(),
        ..ClusterOptions::default()
    });
    let old = wait_listeners(&c, 2);
    let code = c.grant();
    let (mut child, _out, _stdin) = c.shell(0, &code);
    // Kill the LISTEN connections, as a database restart or a network cut would.
    c.numbers(&format!(
        "SELECT pg_terminate_backend(pid)::int::bigint FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = '{}'",
        shared::storage::CHANGE_LISTENER_NAME
    ));
    test_util::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || c.gateways[0].log().contains("change feed stopped").then_some(()),
        || format!("gateway A never noticed its feed was gone\n{}", c.logs()),
    );
    // Revoked at once: either the reconnected feed's check of every live session or the
    // notice on the new connection cuts it; the hourly poll cannot.
    let took = revoke_and_time_the_cut(&c, 1, &code, &mut child);
    assert!(took <= FAST, "the cut took {took:?} after the feed was killed\n{}", c.logs());
    let new = wait_listeners(&c, 2);
    assert!(new.iter().all(|p| !old.contains(p)), "new connections: {old:?} then {new:?}");
    // And the new connection carries the next revoke too.
    let code = c.grant();
    let (mut child, _out, _stdin) = c.shell(0, &code);
    let took = revoke_and_time_the_cut(&c, 0, &code, &mut child);
    assert!(took <= FAST, "the cut took {took:?} on the reconnected feed\n{}", c.logs());
}

#[test]
fn a_gateway_killed_mid_session_recovers_it_at_its_next_start_and_the_audit_verifies() {
    let mut c = Cluster::start(ClusterOptions::default());
    let code = c.grant();
    let (mut child, _out, mut stdin) = c.shell(0, &code);
    assert!(type_line(&mut stdin, "echo still-here"));
    std::thread::sleep(Duration::from_millis(500));
    c.gateways[0].kill9();
    assert!(
        test_util::eventually(Duration::from_secs(10), Duration::from_millis(20), || {
            child.try_wait().expect("wait").is_some()
        }),
        "the client outlived its gateway"
    );
    assert_eq!(c.status(&code)["status"], "active", "nothing ended the session yet");
    c.restart_gateway(0);
    c.wait_status(&code, "closed", 20);
    let recordings = c.gateways[0].data_dir.join("recordings");
    let cast = std::fs::read_dir(&recordings)
        .expect("recordings")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "cast"))
        .expect("the session's recording");
    let recorded = std::fs::read_to_string(&cast).expect("read");
    assert!(recorded.contains("still-here"), "{recorded}");
    assert!(recorded.contains("gateway_crashed (recovered)"), "{recorded}");
    let verify = c.cli(&c.gateways[0].data_dir, &["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.all(), c.logs());
}

/// The newest migration this build embeds for `backend` (its files' highest number).
fn newest_migration(backend: &str) -> i64 {
    std::fs::read_dir(e2e::root().join("migrations").join(backend))
        .expect("migrations")
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().split('_').next()?.parse::<i64>().ok())
        .max()
        .expect("a migration")
}

#[test]
fn four_bots_starting_at_once_on_a_fresh_database_apply_the_schema_once() {
    let c = Cluster::start(ClusterOptions { bots: 4, gateways: 0, ..ClusterOptions::default() });
    let versions = c.numbers("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version");
    let newest = newest_migration("postgres");
    assert_eq!(versions, (1..=newest).collect::<Vec<_>>(), "each migration applied once");
    // Every one of them serves, on the one schema.
    for bot in 0..4 {
        let code = c.request(bot);
        assert_eq!(c.status(&code)["status"], "pending");
    }
    // Each wrote its two start-up events on the one chain.
    let started = c.numbers("SELECT COUNT(*) FROM audit_events WHERE kind = 'key_loaded'");
    assert_eq!(started, [4]);
}

/// A binary older than the database's schema refuses to start, says why, and writes nothing.
fn an_older_replica_refuses(sqlite: bool) {
    let mut c = Cluster::start(ClusterOptions {
        bots: 1,
        gateways: 0,
        sqlite,
        ..ClusterOptions::default()
    });
    c.bots.clear();
    let newest = newest_migration(if sqlite { "sqlite" } else { "postgres" });
    let future = newest + 1000;
    let checksum = if sqlite { "X'00'" } else { "'\\x00'::bytea" };
    block_on_exec(
        &c,
        &format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ({future}, 'from a newer breakglass', TRUE, {checksum}, 0)"
        ),
    );
    let audit = c.numbers("SELECT COUNT(*) FROM audit_events");
    for mode in ["bot", "gateway"] {
        let data = c.dir.path().join(format!("{mode}-older"));
        let out = c.cli(&data, &[mode, "--listen", "127.0.0.1:0"]);
        assert_eq!(out.code, 4, "{}", out.all());
        assert!(
            out.all().contains(&format!(
                "the database schema is at version {future}, newer than this breakglass knows \
                 ({newest}): upgrade this replica"
            )),
            "{}",
            out.all()
        );
    }
    assert_eq!(c.numbers("SELECT COUNT(*) FROM audit_events"), audit, "nothing was written");
    assert_eq!(c.numbers("SELECT MAX(version) FROM _sqlx_migrations"), [future]);
}

fn block_on_exec(c: &Cluster, sql: &str) {
    e2e::block_on(c.admin().exec(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[test]
fn a_replica_older_than_the_schema_refuses_to_start_on_postgres() {
    an_older_replica_refuses(false);
}

#[test]
fn a_replica_older_than_the_schema_refuses_to_start_on_sqlite() {
    an_older_replica_refuses(true);
}
