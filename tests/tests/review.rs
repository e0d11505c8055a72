//! Review end to end: a real session through the gateway, then a reviewer with a fresh link
//! finds the session where `rm -rf` ran, jumps to it in headless Chromium, downloads a bundle
//! and verifies it offline (with `breakglass` and with `openssl` alone); a live session is
//! watched while it runs.

use std::io::BufRead as _;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::gateway::{PROMPT_READY, World, WorldOptions};
use e2e::{root, wait_for};
use serde_json::{Value, json};

const REASON: &str = "<script>document.title='pwned'</script> disk full on db-1";
const RM: &str = "rm -rf /tmp/bg-review-x";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Opens a request as alice with `reason`, approved by bob and carol; returns its code.
fn granted(w: &World, reason: &str) -> String {
    let body = json!({ "host": "db-1", "login": w.login, "reason": reason });
    let (s, v) = w.api("alice", "POST", "/api/v1/requests", Some(body));
    assert_eq!(s, 201, "{v}");
    let code = v["code"].as_str().expect("code").to_owned();
    for who in ["bob", "carol"] {
        let (s, v) = w.api(who, "POST", &format!("/api/v1/requests/{code}/approve"), None);
        assert_eq!(s, 200, "{v}");
    }
    code
}

/// Opens a sign-in link without following the redirect; returns (status, Set-Cookie).
fn open_link(url: &str) -> (u16, String) {
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = http.get(url).send().expect("the bot answers");
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    (resp.status().as_u16(), cookie)
}

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output().expect("the command runs")
}

#[test]
fn a_reviewer_finds_the_rm_rf_jumps_to_it_in_the_browser_and_verifies_the_bundle_offline() {
    let w = World::start();
    let code = granted(&w, REASON);
    let (mut child, out, mut send) = w.typing(&code, &[]);
    send("export PS1='bg-review# '\r");
    wait_for(&out, &format!("{PROMPT_READY}bg-review# "), 1, "the new prompt");
    send("mkdir -p /tmp/bg-review-x && ls -d /tmp/bg-review-x\r");
    wait_for(&out, "/tmp/bg-review-x\r\n", 1, "mkdir ran");
    std::thread::sleep(Duration::from_millis(1200));
    send(&format!("{RM}\r"));
    send("echo after-the-rm\r");
    wait_for(&out, "after-the-rm\r\n", 1, "the last command ran");
    send("exit\r");
    assert!(child.wait().expect("ssh exits").success());
    w.wait_status(&code, "closed", 10);
    let rec = w.recording_of(&code, 10);
    assert!(w.commands(&code).iter().any(|c| c == RM), "{:?}", w.commands(&code));

    // Only reviewers get links, find commands, or fetch recordings.
    for (args, what) in [(vec!["review", &code], "review"), (vec!["search", "rm"], "search")] {
        let refused = w.cli_as("alice", &args);
        assert_eq!(refused.code, 3, "{what}: {}", refused.all());
        assert!(refused.stderr.contains("[not_a_reviewer]"), "{}", refused.all());
    }

    // The reviewer searches, and the hit links to that moment.
    let found = w.cli_as("erin", &["search", "rm -rf"]);
    assert_eq!(found.code, 0, "{}", found.all());
    assert!(found.stdout.contains(&code) && found.stdout.contains(RM), "{}", found.all());
    assert!(found.stdout.contains(&format!("/review/s/{code}#t=")), "{}", found.all());
    assert!(found.stdout.contains("1 hit(s)"), "{}", found.all());

    // Links: a fresh one for the browser, a used one, and one held by a non-reviewer.
    let link = w.cli_as("erin", &["review"]);
    assert_eq!(link.code, 0, "{}", link.all());
    let link = link.stdout.trim().to_owned();
    assert!(link.starts_with(&format!("{}/review/login?t=bgr_", w.server.url)), "{link}");
    let used = w.cli_as("erin", &["review", &code]).stdout.trim().to_owned();
    let (status, cookie) = open_link(&used);
    assert_eq!(status, 303, "a link for one session opens it");
    assert!(cookie.starts_with("bg_review="));
    let bob_token = "bgr_e2e_link_held_by_bob";
    let hash = {
        use sha2::{Digest as _, Sha256};
        hex::encode(Sha256::digest(bob_token.as_bytes()))
    };
    w.sql(&format!(
        "INSERT INTO review_links (token_sha256, principal, request_code, created_at, expires_at, used_at) \
         VALUES ('{hash}', 'bob', NULL, 0, 4102444800, NULL)"
    ))
    .expect("insert");

    // The browser: sign in, list, search, play, seek, the reason as text, refusals.
    let screenshots = std::env::var("BREAKGLASS_SCREENSHOTS").ok();
    let args = json!({
        "base": w.server.url,
        "link": link,
        "usedLink": used,
        "nonReviewerLink": format!("{}/review/login?t={bob_token}", w.server.url),
        "code": code,
        "command": RM,
        "query": "rm -rf",
        "scriptReason": true,
        "screenshots": screenshots,
    });
    let browser = run(Command::new("node")
        .arg(root().join("tests/browser/review.mjs"))
        .arg(args.to_string())
        .current_dir(root()));
    let report = text(&browser.stdout);
    assert_eq!(
        browser.status.code(),
        Some(0),
        "browser checks failed (exit 3: run `npm ci --prefix tests/browser` and install chromium):\n{report}{}\n{}",
        text(&browser.stderr),
        w.server.log()
    );
    for check in
        ["signin", "search", "player", "seek", "reason", "fragment", "usedLink", "nonReviewer"]
    {
        assert!(
            report.contains(&format!("{{\"check\":\"{check}\",\"ok\":true")),
            "{check}: {report}"
        );
    }

    // The bundle, through the CLI, verified offline three ways.
    let dir = tempfile::tempdir().expect("tempdir");
    let tgz = dir.path().join("bundle.tar.gz");
    let got = w.cli_as("erin", &["recording", "bundle", &code, "-o", tgz.to_str().expect("utf-8")]);
    assert_eq!(got.code, 0, "{}", got.all());
    let x = run(Command::new("tar").arg("xzf").arg(&tgz).current_dir(dir.path()));
    assert!(x.status.success(), "{}", text(&x.stderr));
    let b = dir.path().join(&code);
    let file = rec.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
    assert_eq!(
        std::fs::read(b.join(&file)).expect("cast in the bundle"),
        std::fs::read(&rec).expect("cast")
    );
    let sums = run(Command::new("sha256sum").args(["-c", "SHA256SUMS"]).current_dir(&b));
    assert!(sums.status.success(), "{}", text(&sums.stdout));
    let verify = |dir: &Path| {
        let o = run(Command::new(e2e::bin())
            .args(["recording", "verify", &file, "--key", "recording-key.pub"])
            .current_dir(dir));
        (o.status.code(), text(&o.stdout))
    };
    let (status, said) = verify(&b);
    assert_eq!(status, Some(0), "{said}");
    assert!(said.starts_with("recording OK"), "{said}");
    let openssl = |dir: &Path| {
        let script = format!(
            "openssl pkeyutl -verify -pubin -inkey recording-key.pem -rawin -in statement.bin -sigfile signature.bin && \
             test \"$(tail -c 32 statement.bin | od -An -tx1 | tr -d ' \\n')\" = \"$(openssl dgst -sha256 -r {file} | cut -c1-64)\" && \
             dd if=statement.bin bs=1 skip=46 count=9 2>/dev/null"
        );
        let o = run(Command::new("sh").args(["-c", &script]).current_dir(dir));
        (o.status.success(), text(&o.stdout) + &text(&o.stderr))
    };
    let (ok, said) = openssl(&b);
    assert!(ok && said.contains("Signature Verified Successfully"), "{said}");
    assert!(said.contains(&code), "the statement names the session: {said}");
    let readme = std::fs::read_to_string(b.join("README.md")).expect("README");
    assert!(readme.contains("openssl pkeyutl -verify"), "the README shows the same steps");
    // One changed byte and both say no.
    let mut bytes = std::fs::read(b.join(&file)).expect("cast");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(b.join(&file), bytes).expect("tamper");
    assert_eq!(verify(&b).0, Some(1));
    assert!(!openssl(&b).0, "openssl must refuse a changed recording");

    // Replay from the server: verified first, then the command list.
    let replay = w.cli_as("erin", &["replay", &code, "--commands"]);
    assert_eq!(replay.code, 0, "{}", replay.all());
    assert!(replay.stderr.starts_with("recording verified: "), "{}", replay.all());
    assert!(replay.stdout.contains(RM), "{}", replay.all());

    // The audit trail: every view by erin, and the export has the sessions and commands.
    let export = w.cli(&["audit", "export"]);
    assert_eq!(export.code, 0, "{}", export.all());
    let lines: Vec<Value> =
        export.stdout.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let views: Vec<String> = lines
        .iter()
        .filter(|l| l["kind"] == "recording_viewed" && l["actor"] == "erin")
        .filter_map(|l| serde_json::from_str::<Value>(l["data"].as_str()?).ok())
        .filter_map(|d| d["view"].as_str().map(str::to_owned))
        .collect();
    for v in ["search", "list", "page", "cast", "api_bundle", "api_cast"] {
        assert!(views.iter().any(|x| x == v), "no `{v}` view audited: {views:?}");
    }
    assert!(lines.iter().any(|l| l["record"] == "session" && l["file"] == file.as_str()));
    assert!(
        lines.iter().any(|l| l["record"] == "command" && l["command"] == RM),
        "{}",
        export.stdout
    );
    let verified = w.cli(&["audit", "verify"]);
    assert_eq!(verified.code, 0, "views keep the chain intact: {}", verified.all());
}

/// Reads a Server-Sent Events stream on a thread into a shared buffer.
fn sse(url: &str, cookie: &str) -> Arc<Mutex<Vec<u8>>> {
    let resp = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .expect("client")
        .get(url)
        .header("cookie", cookie)
        .send()
        .expect("the stream opens");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"))
    );
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = buf.clone();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(resp);
        let mut line = String::new();
        while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Ok(mut b) = sink.lock() {
                b.extend_from_slice(line.as_bytes());
            }
            line.clear();
        }
    });
    buf
}

#[test]
fn a_live_session_is_watched_while_it_runs() {
    // Request logging on: sign-in tokens must still never reach the log.
    let w = World::with(WorldOptions {
        env: vec![("BREAKGLASS_LOG".into(), "info,tower_http=debug".into())],
        ..WorldOptions::default()
    });
    let code = granted(&w, "watch me");
    let (mut child, out, mut send) = w.typing(&code, &[]);
    send("export PS1='live# '\r");
    wait_for(&out, &format!("{PROMPT_READY}live# "), 1, "the new prompt");
    w.wait_status(&code, "active", 10);

    let link = w.cli_as("erin", &["review", &code]).stdout.trim().to_owned();
    let (status, cookie) = open_link(&link);
    assert_eq!(status, 303);
    let token = link.split("t=").nth(1).expect("a token");
    let log = w.server.log();
    assert!(log.contains("/review/login"), "requests are logged: {log}");
    assert!(!log.contains(token), "the sign-in token reached the log: {log}");
    let page = reqwest::blocking::Client::new()
        .get(format!("{}/review/s/{code}", w.server.url))
        .header("cookie", &cookie)
        .send()
        .and_then(|r| r.text())
        .expect("page");
    let live_url = format!("/review/s/{code}/live");
    assert!(page.contains(&format!("data-live-url=\"{live_url}\"")), "{page}");

    let stream = sse(&format!("{}{live_url}", w.server.url), &cookie);
    // The reset first: the size and the screen so far.
    wait_for(&stream, "\"cols\":", 1, "the reset message");
    let first = text(&stream.lock().map(|b| b.clone()).unwrap_or_default());
    assert!(first.contains("live# "), "the screen so far is in the reset: {first}");
    // Then what happens, as it happens (the output, never the keystrokes).
    send("echo live-$((40+2))\r");
    wait_for(&stream, "live-42", 1, "the live output");
    send("exit\r");
    assert!(child.wait().expect("ssh exits").success());
    wait_for(&stream, "event: done", 1, "the end of the stream");
    let all = text(&stream.lock().map(|b| b.clone()).unwrap_or_default());
    assert!(!all.contains("\"i\""), "keystrokes never go to viewers: {all}");

    // A finished session has no live stream: the page loads the recording instead.
    w.wait_status(&code, "closed", 10);
    let page = reqwest::blocking::Client::new()
        .get(format!("{}/review/s/{code}", w.server.url))
        .header("cookie", &cookie)
        .send()
        .and_then(|r| r.text())
        .expect("page");
    assert!(!page.contains("data-live-url"), "{page}");
    let started = Instant::now();
    let ended = sse(&format!("{}{live_url}", w.server.url), &cookie);
    wait_for(&ended, "event: done", 1, "an ended session's stream says so at once");
    assert!(started.elapsed() < Duration::from_secs(5));
}
