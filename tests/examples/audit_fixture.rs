//! Writes the audit fixture (`tests/fixtures/audit-db/`): a data directory whose audit log
//! was written by the real product, so later versions can prove they still verify what this
//! one wrote (`tests/tests/audit_fixture.rs` runs `breakglass audit verify` on it).
//!
//! Everything in it comes from real flows through the real binary: `breakglass up` with a real
//! OpenSSH sshd as the target, the real `ssh`, `scp` and `sftp` clients, the HTTP API, the
//! CLI, signed Slack and Discord deliveries (their Web APIs faked), the reviewer pages. Every
//! audit event kind is there, every session end reason the gateway can be made to write here
//! (closed, revoked, expired, gateway_shutdown, gateway_crashed, recording_failed), and the
//! session event kinds (shell, exec, subsystem, command from a terminal and from stdin,
//! transfer over SFTP and scp, env, forward, forward_refused).
//!
//! Run it by hand (it takes a few minutes), then commit the folder:
//!
//! ```text
//! cargo build -p breakglass
//! cargo run -p breakglass-e2e --example audit_fixture -- tests/fixtures/audit-db
//! ```

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::fake_discord::{FakeDiscord, command, component};
use e2e::fake_slack::FakeSlack;
use e2e::gateway::{Agent, DISCORD_CHANNEL, World, WorldOptions, free_port};
use serde_json::{Value, json};

const ALICE_DISCORD: &str = "1010000000000000001";
const BOB_DISCORD: &str = "1010000000000000002";

/// The recording of the session that meets the file-size limit stops at this many 512-byte
/// blocks (`ulimit -f`, 256 KiB): small enough to keep in the repository, and above the
/// database (about 150 KiB then) and its WAL, which the same limit binds.
const FILE_LIMIT_BLOCKS: u32 = 512;

fn main() {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| e2e::root().join("tests/fixtures/audit-db"));
    let keys = tempfile::tempdir().expect("tempdir");
    let carol_key = keys.path().join("carol");
    let made = e2e::cli(&["keygen", "--out", carol_key.to_str().expect("utf-8")], &[]);
    assert_eq!(made.code, 0, "{}", made.all());
    let carol_pub = std::fs::read_to_string(carol_key.with_extension("pub"))
        .expect("carol.pub")
        .trim()
        .to_owned();
    let carol_key = carol_key.with_extension("key");

    let rt = e2e::background_runtime();
    let slack = rt.block_on(FakeSlack::start());
    let discord = rt.block_on(FakeDiscord::start());
    let mut w = World::with(WorldOptions {
        scope_extra: "allow_port_forwarding = true\n".into(),
        extra_toml: format!(
            r#"
[keys.pinned_approver_keys]
carol = ["{carol_pub}"]

[scopes.vault]
hosts = {{ vault-1 = "127.0.0.1:9" }}
logins = ["root"]
requester_groups = ["oncall"]
approver_groups = ["dba"]
quorum = 1
require_offline_signature = true

[scopes.flash]
hosts = {{ flash-1 = "127.0.0.1:9" }}
logins = ["root"]
max_duration = "2s"
default_duration = "2s"
approval_timeout = "2s"
requester_groups = ["oncall"]
approver_groups = ["dba"]
quorum = 1
"#
        ),
        slack_api: Some(slack.api_url.clone()),
        discord_api: Some(discord.base.clone()),
        ..WorldOptions::default()
    });

    recording_failed(&mut w);
    exec_with_refused_agent(&w);
    interactive_with_personal_approval(&w, &carol_key);
    sftp(&w);
    scp(&w);
    stdin_script(&w);
    slack_request_revoked_while_live(&w, &slack);
    discord_request_denied(&w, &discord);
    window_end_cuts(&w);
    decisions(&w, &carol_key);
    refusals(&w);
    ends_by_the_gateway(&mut w);
    review(&w);

    // All written: a graceful stop, then the folder.
    assert_eq!(w.server.terminate(), Some(0), "{}", w.server.log());
    let v = w.cli(&["audit", "verify"]);
    assert_eq!(v.code, 0, "the world's own log verifies: {}", v.all());
    write_fixture(&w, &out);
    println!("{}", v.stdout);
    println!("wrote {}", out.display());
}

/// Opens a request as alice over the API; returns its code.
fn request(w: &World, host: &str, reason: &str, duration: Option<&str>) -> String {
    let login = if host == "db-1" { w.login.as_str() } else { "root" };
    let mut body = json!({ "host": host, "login": login, "reason": reason });
    if let Some(d) = duration {
        body["duration"] = json!(d);
    }
    let (s, v) = w.api("alice", "POST", "/api/v1/requests", Some(body));
    assert_eq!(s, 201, "{v}");
    v["code"].as_str().expect("code").to_owned()
}

fn act(w: &World, who: &str, code: &str, verb: &str) {
    let (s, v) = w.api(who, "POST", &format!("/api/v1/requests/{code}/{verb}"), None);
    assert_eq!(s, 200, "{who} {verb} {code}: {v}");
}

/// A request for db-1 approved by bob and carol through the bot.
fn granted(w: &World, reason: &str, duration: Option<&str>) -> String {
    let code = request(w, "db-1", reason, duration);
    act(w, "bob", &code, "approve");
    act(w, "carol", &code, "approve");
    code
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The stored audit events, as `audit export` gives them.
fn events(w: &World) -> Vec<Value> {
    let out = w.cli(&["audit", "export"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// Waits until the log holds `n` events of `kind` (the reaper stores expiries within 5 s).
fn wait_events(w: &World, kind: &str, n: usize) {
    let have = || events(w).iter().filter(|e| e["kind"] == kind).count();
    test_util::wait_until(
        Duration::from_secs(30),
        Duration::from_millis(500),
        || (have() >= n).then_some(()),
        || format!("{} `{kind}` events, not {n}", have()),
    );
}

/// A session whose recording meets the gateway's limit on the size of a file it writes: it is
/// cut, and its end is stored as `recording_failed`. First, while the database is small.
fn recording_failed(w: &mut World) {
    let limit = format!("trap '' XFSZ; ulimit -f {FILE_LIMIT_BLOCKS}; exec \"$0\" \"$@\"");
    // The WAL the migrations left is already larger than the limit: into the database first.
    w.server.kill9();
    e2e::block_on(admin(w).exec("PRAGMA wal_checkpoint(TRUNCATE)")).expect("checkpoint");
    w.restart_under(&["sh", "-c", &limit]);
    let code = granted(w, "disk filling up, need to look at the logs", None);
    let out = w.ssh(&code, &["head -c 2000000 /dev/zero | base64"]);
    assert!(
        text(&out.stderr).contains("the session recording failed"),
        "{}\n{}",
        text(&out.stderr),
        w.server.log()
    );
    w.wait_status(&code, "closed", 15);
    w.restart();
}

/// A command run with `ssh CODE 'cmd'`, asking for agent forwarding the scope does not allow.
fn exec_with_refused_agent(w: &World) {
    let agent = Agent::start(w.dir.path());
    let code = granted(w, "replica lag, need to kill a query", None);
    let out = w
        .ssh_cmd("alice", &code, &["-A", "echo fixture-exec; uptime"])
        .env("SSH_AUTH_SOCK", &agent.sock)
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs");
    assert!(text(&out.stdout).contains("fixture-exec"), "{}", text(&out.stderr));
    w.wait_status(&code, "closed", 15);
}

/// A login shell under a terminal, with an environment variable sent and a local port
/// forwarded and used; approved by bob through the bot and by carol with her own key.
fn interactive_with_personal_approval(w: &World, carol_key: &Path) {
    let code = request(w, "db-1", "payments down, checking the db", Some("15m"));
    act(w, "bob", &code, "approve");
    let signed = w
        .cli_as("carol", &["approve", &code, "--yes", "--key", carol_key.to_str().expect("utf-8")]);
    assert_eq!(signed.code, 0, "{}", signed.all());
    let port = free_port();
    let forward = format!("{port}:127.0.0.1:{}", w.sshd.port);
    let (mut child, out, mut send) =
        w.typing(&code, &["-o", "SetEnv=LANG=C.UTF-8", "-L", &forward]);
    send("export PS1='fixture# '\r");
    e2e::wait_for(&out, "fixture# ", 1, "the prompt");
    send("echo fixture-interactive\r");
    send("ls / | head -3\r");
    e2e::wait_for(&out, "fixture# ", 4, "the commands ran");
    // The forwarded port reaches the target's sshd, whose banner comes back.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the forwarded port");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut banner = [0u8; 8];
    s.read_exact(&mut banner).expect("the banner");
    assert_eq!(&banner, b"SSH-2.0-");
    drop(s);
    send("exit\r");
    assert!(child.wait().expect("ssh exits").success());
    w.wait_status(&code, "closed", 15);
}

fn sftp(w: &World) {
    let code = granted(w, "copy the crash dump off the host", None);
    let d = w.dir.path();
    std::fs::write(d.join("notes.txt"), "incident notes\n").expect("notes");
    let remote = format!("/tmp/bg-fixture-{}", std::process::id());
    let batch = d.join("sftp-batch");
    std::fs::write(
        &batch,
        format!(
            "mkdir {remote}\nput {notes} {remote}/notes.txt\nls {remote}\nrename {remote}/notes.txt {remote}/kept.txt\nget {remote}/kept.txt {back}\nrm {remote}/kept.txt\nrmdir {remote}\n",
            notes = d.join("notes.txt").display(),
            back = d.join("notes-back.txt").display(),
        ),
    )
    .expect("batch");
    let out = w.sftp(&code, &batch);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    w.wait_status(&code, "closed", 15);
}

/// An upload over the legacy scp protocol (`scp -O`).
fn scp(w: &World) {
    let code = granted(w, "push the fixed config", None);
    let local = w.dir.path().join("fixed.conf");
    std::fs::write(&local, "max_connections = 200\n").expect("local file");
    let target = format!("/tmp/bg-fixture-{}.conf", std::process::id());
    let out = Command::new("scp")
        .args(w.ssh_opts("alice"))
        .args(["-P", &w.gw_port.to_string(), "-O"])
        .arg(&local)
        .arg(format!("{code}@127.0.0.1:{target}"))
        .output()
        .expect("scp runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let _ = std::fs::remove_file(&target);
    w.wait_status(&code, "closed", 15);
}

/// A shell reading its commands on stdin, with no terminal (`ssh CODE bash < script`).
fn stdin_script(w: &World) {
    let code = granted(w, "run the cleanup script", None);
    let mut child = w
        .ssh_cmd("alice", &code, &["bash"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"echo cleaning\nuname -s\nexit 0\n")
        .expect("the script");
    let out = child.wait_with_output().expect("ssh exits");
    assert!(text(&out.stdout).contains("cleaning"), "{}", text(&out.stderr));
    w.wait_status(&code, "closed", 15);
}

/// `/breakglass request` in Slack, two approvals clicked on the card, a session, and bob's
/// revoke clicked while it runs; the summary goes to the card's thread.
fn slack_request_revoked_while_live(w: &World, slack: &FakeSlack) {
    let card = w.slack_request(
        slack,
        &format!("request db-1 --as {} --for 30m checkout errors, need the db", w.login),
    );
    for who in ["U0BOB", "U0CAROL"] {
        assert_eq!(w.slack_click(who, &card, "breakglass_approve"), 200);
    }
    let (child, _) = w.printing(&card.code, "slack-session");
    assert_eq!(w.slack_click("U0BOB", &card, "breakglass_revoke"), 200);
    let ts = card.ts;
    let _ = child.wait_with_output().expect("ssh ends");
    slack.wait_call("the summary", |c| {
        c.body["thread_ts"] == ts.as_str() && c.text().contains("Session summary")
    });
}

/// `/breakglass request` in Discord, denied by bob's click on the card.
fn discord_request_denied(w: &World, discord: &FakeDiscord) {
    let (s, v) = w.discord_post(&command(
        1_600_000_000_000_000_001,
        ALICE_DISCORD,
        DISCORD_CHANNEL,
        "request",
        &[("host", "db-1"), ("reason", "cache stampede"), ("login", &w.login), ("duration", "20m")],
    ));
    assert_eq!(s, 200, "{v}");
    let answer = v["data"]["content"].as_str().unwrap_or_default().to_owned();
    let code = answer.split_whitespace().nth(1).expect("code").to_owned();
    let id = w.status(&code)["id"].as_str().expect("id").to_owned();
    let cards = format!("channels/{DISCORD_CHANNEL}/messages");
    let card = test_util::wait_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || discord.calls().into_iter().find(|c| c.method == "POST" && c.path == cards),
        || format!("no card; calls: {:#?}", discord.calls()),
    );
    let message = card.answer_id.expect("card id");
    let (s, v) = w.discord_post(&component(
        1_600_000_000_000_000_002,
        BOB_DISCORD,
        DISCORD_CHANNEL,
        &message,
        &format!("breakglass_deny:{id}"),
    ));
    assert_eq!(s, 200, "{v}");
    w.wait_status(&code, "denied", 10);
}

/// A session still running when its grant's window ends.
fn window_end_cuts(w: &World) {
    let code = granted(w, "watch the migration", Some("3s"));
    let out = w.ssh(&code, &["-tt", "sleep 30"]);
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(all.contains("window for db-1 ended"), "{all}");
    w.wait_status(&code, "closed", 15);
}

/// Decisions without a session: a denial, revokes of a pending and of an approved request, a
/// personal-key approval in a scope that takes nothing else, and both expiries.
fn decisions(w: &World, carol_key: &Path) {
    let code = request(w, "db-1", "check the replication slots", None);
    act(w, "carol", &code, "deny");

    let code = request(w, "db-1", "opened by mistake", None);
    act(w, "alice", &code, "revoke");

    let code = request(w, "vault-1", "unseal after restart", Some("10m"));
    let signed = w
        .cli_as("carol", &["approve", &code, "--yes", "--key", carol_key.to_str().expect("utf-8")]);
    assert_eq!(signed.code, 0, "{}", signed.all());
    act(w, "bob", &code, "revoke");

    let before = events(w).iter().filter(|e| e["kind"] == "expired").count();
    // Never decided: expires when its approval window closes.
    request(w, "flash-1", "nobody answered", None);
    // Approved, never used: expires when its grant window closes.
    let code = request(w, "flash-1", "approved but not needed", None);
    act(w, "bob", &code, "approve");
    wait_events(w, "expired", before + 2);
}

/// Connections the gateway refuses: a used grant, someone else's grant, a code that does not
/// exist.
fn refusals(w: &World) {
    let code = granted(w, "one session only", None);
    let out = w.ssh(&code, &["true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    w.wait_status(&code, "closed", 15);
    let before = events(w).iter().filter(|e| e["kind"] == "session_refused").count();
    assert_ne!(w.ssh(&code, &["true"]).status.code(), Some(0));
    let other = granted(w, "not for dave", None);
    let out = w.ssh_cmd("dave", &other, &["true"]).stdin(Stdio::null()).output().expect("ssh");
    assert_ne!(out.status.code(), Some(0));
    assert_ne!(w.ssh("bg-000000", &["true"]).status.code(), Some(0));
    wait_events(w, "session_refused", before + 3);
    act(w, "alice", &other, "revoke");
}

/// Sessions ended by the gateway: a graceful stop, then a crash (the restarted gateway
/// closes and signs the cut recording).
fn ends_by_the_gateway(w: &mut World) {
    let code = granted(w, "long running vacuum", None);
    let (child, _) = w.printing(&code, "shutdown-session");
    assert_eq!(w.server.terminate(), Some(0), "{}", w.server.log());
    let _ = child.wait_with_output();
    w.restart();
    w.wait_status(&code, "closed", 15);

    let code = granted(w, "reindex the big table", None);
    let (mut child, _) = w.printing(&code, "crash-session");
    w.restart();
    let _ = child.kill();
    let _ = child.wait();
    w.wait_status(&code, "closed", 20);
}

/// erin reviews: a sign-in link, the list, a session page, the `.cast` download, a search and
/// an audit bundle.
fn review(w: &World) {
    let code = events(w)
        .iter()
        .find(|e| e["kind"] == "session_ended")
        .and_then(|e| e["request_id"].as_str().map(str::to_owned))
        .and_then(|id| w.status(&id)["code"].as_str().map(str::to_owned))
        .expect("a finished session");
    let link = w.cli_as("erin", &["review", &code]);
    assert_eq!(link.code, 0, "{}", link.all());
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let signed_in = http.get(link.stdout.trim()).send().expect("the link opens");
    assert_eq!(signed_in.status().as_u16(), 303);
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .expect("a session cookie");
    for path in
        ["/review".to_owned(), format!("/review/s/{code}"), format!("/review/s/{code}/cast")]
    {
        let r = http
            .get(format!("{}{path}", w.server.url))
            .header("cookie", &cookie)
            .send()
            .expect("the page");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let found = w.cli_as("erin", &["search", "echo"]);
    assert_eq!(found.code, 0, "{}", found.all());
    let bundle = w.dir.path().join("bundle.tar.gz");
    let b =
        w.cli_as("erin", &["recording", "bundle", &code, "-o", bundle.to_str().expect("utf-8")]);
    assert_eq!(b.code, 0, "{}", b.all());
}

/// The data directory as the fixture keeps it: the database (compacted into one file), the
/// recordings with their signatures, the public halves of the approval and recording keys,
/// and the config (without paths of this machine).
fn write_fixture(w: &World, out: &Path) {
    let _ = std::fs::remove_dir_all(out);
    let data = out.join("data");
    std::fs::create_dir_all(data.join("keys")).expect("keys dir");
    std::fs::create_dir_all(data.join("recordings")).expect("recordings dir");
    let db = data.join("breakglass.db");
    let into = format!("VACUUM INTO '{}'", db.display());
    e2e::block_on(admin(w).exec(&into)).expect("the database copies");
    let src = w.data_dir();
    for name in ["approval.pub", "recording.pub"] {
        std::fs::copy(src.join("keys").join(name), data.join("keys").join(name)).expect("key");
    }
    for e in std::fs::read_dir(src.join("recordings")).expect("recordings").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".cast") || name.ends_with(".cast.sig") {
            std::fs::copy(e.path(), data.join("recordings").join(&name)).expect("recording");
        }
    }
    let config = std::fs::read_to_string(&w.config).expect("config");
    let config: String = config
        .lines()
        .filter(|l| !l.starts_with("known_hosts_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(out.join("breakglass.toml"), config).expect("config");
    let git = |args: &[&str]| {
        let o = Command::new("git").args(args).current_dir(e2e::root()).output().expect("git");
        text(&o.stdout).trim().to_owned()
    };
    let commit = git(&["rev-parse", "HEAD"]);
    let product = ["bot", "shared", "format", "recorder", "migrations"];
    let mut log_args = vec!["log", "-1", "--format=%H", "--"];
    log_args.extend(product);
    let product_commit = git(&log_args);
    let mut status_args = vec!["status", "--porcelain", "--"];
    status_args.extend(product);
    let dirty = !git(&status_args).is_empty();
    let readme = format!(
        "# Audit fixture\n\n\
         A data directory written by `breakglass` built at commit {commit} (product code as of \
         commit {product_commit}{dirty}), through real flows \
         (tests/examples/audit_fixture.rs says which). `tests/tests/audit_fixture.rs` runs \
         `breakglass audit verify` on a copy and checks which events it holds, so a later \
         version that can no longer verify what this one wrote fails there.\n\n\
         Regenerate (only when a new event kind or field needs a fixture of its own: add a \
         folder, keep this one):\n\n\
         ```\ncargo build -p breakglass\n\
         cargo run -p breakglass-e2e --example audit_fixture -- tests/fixtures/audit-db\n```\n\n\
         `data/breakglass.db` is the SQLite database (`VACUUM INTO`, one file); `data/keys` \
         holds the public halves of the approval and recording keys only; \
         `breakglass.toml` is the config it ran with, less the machine's known-hosts path.\n",
        dirty = if dirty { ", with uncommitted changes" } else { "" },
    );
    std::fs::write(out.join("README.md"), readme).expect("README");
}

/// The world's SQLite database, as its administrator.
fn admin(w: &World) -> shared::testing::db::Admin {
    shared::testing::db::Admin {
        backend: shared::testing::db::Backend::Sqlite,
        url: w.database_url.clone(),
    }
}
