//! Metrics and health for operators, through the real binary: what `/metrics` says after a
//! real session through the gateway (checked against the recording on disk and the request's
//! history), and a standalone gateway's health listener and `breakglass healthcheck` following
//! the database.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::gateway::{World, WorldOptions, free_port};
use e2e::{bin, block_on, cli};

/// The samples of a Prometheus text page: `name{labels}` → value.
fn samples(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn get(url: &str) -> (u16, String, String) {
    match reqwest::blocking::Client::new().get(url).timeout(Duration::from_secs(10)).send() {
        Ok(r) => {
            let status = r.status().as_u16();
            let kind = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (status, kind, r.text().unwrap_or_default())
        }
        Err(e) => (0, String::new(), e.to_string()),
    }
}

/// The metric names of `deploy/grafana/metrics.txt`, the list dashboards are checked against.
fn listed() -> Vec<String> {
    std::fs::read_to_string(e2e::root().join("deploy/grafana/metrics.txt"))
        .expect("metrics.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn the_dashboards_metric_list_is_the_codes() {
    let mut code: Vec<String> = shared::telemetry::ALL.iter().map(|s| (*s).to_owned()).collect();
    let mut list = listed();
    code.sort();
    list.sort();
    assert_eq!(list, code, "deploy/grafana/metrics.txt and shared::telemetry::ALL differ");
}

fn value(s: &BTreeMap<String, f64>, key: &str, page: &str) -> f64 {
    *s.get(key).unwrap_or_else(|| panic!("no sample {key} in:\n{page}"))
}

#[test]
fn the_bot_exports_what_a_real_session_did() {
    let w = World::with(WorldOptions {
        scope_extra: "max_duration = \"3s\"\ndefault_duration = \"3s\"\n".into(),
        ..WorldOptions::default()
    });
    let metrics = format!("{}/metrics", w.server.url);
    let code = w.grant("db-1", Some("3s"));
    let (mut child, _out) = w.printing(&code, "metrics-marker");

    let (status, kind, page) = get(&metrics);
    assert_eq!(status, 200, "{page}");
    assert!(kind.starts_with("text/plain"), "{kind}");
    let live = samples(&page);
    assert_eq!(value(&live, "breakglass_live_sessions", &page), 1.0, "during the session");

    // The window ends: the gateway cuts the session at its deadline.
    let exited = child.wait().expect("ssh exits");
    assert!(!exited.success());
    w.wait_status(&code, "closed", 10);
    let rec = w.recording_of(&code, 10);
    let recorded = std::fs::metadata(&rec).expect("recording").len();

    let (status, _, page) = get(&metrics);
    assert_eq!(status, 200, "{page}");
    let s = samples(&page);
    assert_eq!(value(&s, r#"breakglass_requests_total{outcome="requested"}"#, &page), 1.0);
    assert_eq!(value(&s, r#"breakglass_requests_total{outcome="approved"}"#, &page), 1.0);
    assert_eq!(value(&s, "breakglass_time_to_approve_seconds_count", &page), 1.0);
    assert_eq!(value(&s, "breakglass_time_to_access_seconds_count", &page), 1.0);
    assert_eq!(value(&s, r#"breakglass_session_cuts_total{reason="expired"}"#, &page), 1.0);
    assert_eq!(value(&s, "breakglass_cut_latency_seconds_count", &page), 1.0);
    assert_eq!(value(&s, "breakglass_live_sessions", &page), 0.0, "after the session");
    // Every byte of the recording went through the counted writer, and nothing else did.
    #[allow(clippy::cast_precision_loss)]
    let recorded = recorded as f64;
    assert_eq!(value(&s, "breakglass_recorded_bytes_total", &page), recorded);
    assert_eq!(value(&s, "breakglass_reaper_lag_seconds", &page), 0.0);
    assert_eq!(value(&s, "breakglass_db_pool_max", &page), 8.0, "SQLite's pool");
    assert!(value(&s, r#"breakglass_db_pool_connections{state="idle"}"#, &page) >= 0.0);
    // Histograms have buckets, so dashboards can take quantiles across replicas.
    assert!(s.keys().any(|k| k.starts_with("breakglass_cut_latency_seconds_bucket{le=")), "{page}");
    // Every metric the binary exports is on the dashboards' list.
    let list = listed();
    for key in s.keys().filter(|k| k.starts_with("breakglass_")) {
        let name = key.split('{').next().unwrap_or_default();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|sfx| name.strip_suffix(sfx).filter(|b| list.iter().any(|l| l == b)))
            .unwrap_or(name);
        assert!(list.iter().any(|l| l == base), "{base} is not in deploy/grafana/metrics.txt");
    }
    // Help texts are there, and no label carries a host, a user or a grant code.
    assert!(page.contains("# HELP breakglass_requests_total"), "{page}");
    for secret in [code.as_str(), "db-1", "alice", "bob", "metrics-marker"] {
        assert!(!page.contains(secret), "{secret} leaks into /metrics:\n{page}");
    }
}

/// A running `breakglass gateway`, killed on drop.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_standalone_gateway_answers_health_checks_and_healthcheck_follows_its_database() {
    let pg = block_on(shared::testing::db::PgDatabase::create());
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port();
    let health = format!("127.0.0.1:{port}");
    // A standalone gateway trusts the bot's approval key it finds under its data directory.
    let key = cli(&["keygen", "--out", data.join("keys/approval").to_str().expect("utf-8")], &[]);
    assert_eq!(key.code, 0, "{}", key.all());
    let config = dir.path().join("breakglass.toml");
    std::fs::write(&config, format!("[gateway]\nhealth_listen = \"{health}\"\n")).expect("config");
    let log = dir.path().join("gateway.log");
    let gw = Gateway(
        Command::new(bin())
            .args(["gateway", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0"])
            .env("BREAKGLASS__SERVER__DATABASE_URL", &pg.url)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("breakglass gateway"),
    );
    let base = format!("http://{health}");
    let up = test_util::eventually(Duration::from_secs(60), Duration::from_millis(100), || {
        get(&format!("{base}/healthz")).0 == 200
    });
    assert!(
        up,
        "the gateway's health listener never answered:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(get(&format!("{base}/readyz")).0, 200);
    let (status, kind, page) = get(&format!("{base}/metrics"));
    assert_eq!(status, 200, "{page}");
    assert!(kind.starts_with("text/plain"), "{kind}");
    assert_eq!(value(&samples(&page), "breakglass_db_pool_max", &page), 10.0, "PostgreSQL's pool");

    let cfg = config.to_str().expect("utf-8");
    let by_config = cli(&["healthcheck", "--gateway", "--config", cfg], &[]);
    assert_eq!(by_config.code, 0, "{}", by_config.all());
    let by_url = cli(&["healthcheck", "--url", &base], &[]);
    assert_eq!(by_url.code, 0, "{}", by_url.all());

    // The database goes away: the gateway stays alive but is not ready, and the probe says so.
    let admin = shared::testing::db::Admin {
        backend: shared::testing::db::Backend::Postgres,
        url: pg.url.clone(),
    };
    block_on(admin.terminate_connections_and_block()).expect("connections ended");
    assert_eq!(get(&format!("{base}/healthz")).0, 200);
    let (status, _, body) = get(&format!("{base}/readyz"));
    assert_eq!(status, 503, "{body}");
    let down = cli(&["healthcheck", "--url", &base], &[]);
    assert_eq!(down.code, 1, "{}", down.all());
    assert!(down.stderr.contains("not ready"), "{}", down.stderr);

    drop(gw);
    let gone = cli(&["healthcheck", "--url", &base, "--timeout", "2s"], &[]);
    assert_eq!(gone.code, 4, "{}", gone.all());
    assert!(gone.stderr.contains("no answer"), "{}", gone.stderr);
    block_on(pg.remove());
}

#[test]
fn a_health_listen_that_is_not_an_address_is_refused_with_the_fix() {
    let out = cli(
        &["gateway", "--listen", "127.0.0.1:0", "--health-listen", "localhost"],
        &[("BREAKGLASS__SERVER__DATABASE_URL", "sqlite::memory:")],
    );
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(out.stderr.contains("gateway.health_listen"), "{}", out.stderr);
    assert!(out.stderr.contains("\"off\""), "{}", out.stderr);
}
