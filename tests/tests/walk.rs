//! The foundation's "done when", end to end with the real binary: a running `breakglass up`,
//! the scripted walk (`deploy/demo/walk.sh`: request, first approval, still pending, second
//! approval, granted, revoke, through the CLI and through the HTTP API), a graceful stop,
//! `audit verify` passing, then failing and naming the place after a row is edited by hand.
//! On SQLite and on PostgreSQL.

use std::path::Path;
use std::process::Command;

use e2e::{Server, bin, cli, root};
use shared::testing::db::{Admin, Backend, TestResult, run};

const DEMO: &str = "deploy/demo/breakglass.toml";

async fn walk_and_tamper(data: &Path, env: &[(&str, &str)], admin: &Admin) -> TestResult {
    let data_s = data.to_str().ok_or("utf-8 temp path")?;
    let server = Server::start(&root(), &["--config", DEMO, "--data-dir", data_s], env);
    let walk = Command::new(root().join("deploy/demo/walk.sh"))
        .env("BREAKGLASS_BIN", bin())
        .env("BREAKGLASS_SERVER", &server.url)
        .output()?;
    let out =
        String::from_utf8_lossy(&walk.stdout).into_owned() + &String::from_utf8_lossy(&walk.stderr);
    assert!(walk.status.success(), "walk failed:\n{out}\nserver log:\n{}", server.log());
    for step in [
        "first approval (bob): pending",
        "still pending: pending",
        "second approval (carol): approved",
        "revoked by bob: revoked",
        "second approval (bob): approved",
        "walk: done",
    ] {
        assert!(out.contains(step), "walk output lacks `{step}`:\n{out}");
    }
    assert_eq!(server.stop(), Some(0), "SIGTERM is a clean shutdown");

    let verify = || cli(&["audit", "verify", "--config", DEMO, "--data-dir", data_s], env);
    let v = verify();
    assert_eq!(v.code, 0, "{}", v.all());
    // up: key_loaded + config_loaded; each walk: requested, approved twice, granted, revoked.
    assert!(v.stdout.contains("audit log OK: 12 events"), "{}", v.all());
    assert!(v.stdout.contains("approvals OK: 4 signatures"), "{}", v.all());

    let export =
        cli(&["audit", "export", "--config", DEMO, "--data-dir", data_s, "--format", "jsonl"], env);
    assert_eq!(export.code, 0, "{}", export.all());
    let lines: Vec<serde_json::Value> =
        export.stdout.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 12);
    assert_eq!(lines[2]["kind"], "requested");
    assert_eq!(lines[11]["seq"], 12);

    // A request row edited behind the service's back: its approvals no longer match.
    let changed =
        admin.exec("UPDATE requests SET host = 'db-2' WHERE duration_secs = 1800").await?;
    assert_eq!(changed, 1);
    let v = verify();
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(v.stdout.contains("field `host`"), "{}", v.all());
    admin.exec("UPDATE requests SET host = 'db-1' WHERE duration_secs = 1800").await?;
    assert_eq!(verify().code, 0);

    // A revoked grant edited back to `approved`: the log says otherwise.
    let changed = admin
        .exec("UPDATE requests SET status = 'approved' WHERE status = 'revoked' AND duration_secs = 1800")
        .await?;
    assert_eq!(changed, 1);
    let v = verify();
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(v.stdout.contains("field `status`"), "{}", v.all());
    admin.exec("UPDATE requests SET status = 'revoked' WHERE duration_secs = 1800").await?;
    assert_eq!(verify().code, 0);

    // One field of one audit row edited by hand (the append-only trigger dropped first, as a
    // database administrator could): verification names that row.
    let refused = admin.exec("UPDATE audit_events SET actor = 'mallory' WHERE seq = 5").await;
    assert!(refused.is_err(), "the database refuses updates to the audit log");
    admin.drop_trigger("audit_events_no_update", "audit_events").await?;
    assert_eq!(admin.exec("UPDATE audit_events SET actor = 'mallory' WHERE seq = 5").await?, 1);
    let v = verify();
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(v.stdout.contains("audit log BROKEN: audit chain broken at seq 5"), "{}", v.all());
    assert!(v.stderr.contains("audit verification failed at seq 5"), "{}", v.all());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walk_audit_and_tamper_on_sqlite() -> TestResult {
    let dir = tempfile::tempdir()?;
    let admin = Admin {
        backend: Backend::Sqlite,
        url: format!("sqlite://{}", dir.path().join("breakglass.db").display()),
    };
    walk_and_tamper(dir.path(), &[], &admin).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walk_audit_and_tamper_on_postgres() {
    run(Backend::Postgres, |db| async move {
        let dir = tempfile::tempdir()?;
        // The database comes from the environment layer of the config.
        let env = [("BREAKGLASS__SERVER__DATABASE_URL", db.admin.url.as_str())];
        walk_and_tamper(dir.path(), &env, &db.admin).await
    })
    .await;
}
