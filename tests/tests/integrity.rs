//! Recording signatures are bound to their session (docs/recording-signature.md), checked with
//! two real sessions through a real gateway: session X's recording and signature copied over
//! session Y's names, then also onto Y's database row, are refused by every checker
//! (`recording verify`, `replay` of the file and from the server, the audit bundle and
//! `audit verify`), each naming what differs; untouched, both verify.

use std::path::Path;
use std::process::Command;

use e2e::gateway::World;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The bundle of `code` as `erin` (a reviewer) sees it: its `request.json`.
fn bundle_request(w: &World, code: &str, dir: &Path) -> serde_json::Value {
    let tgz = dir.join(format!("{code}.tar.gz"));
    let got = w.cli_as("erin", &["recording", "bundle", code, "-o", tgz.to_str().expect("utf-8")]);
    assert_eq!(got.code, 0, "{}", got.all());
    let x = Command::new("tar").arg("xzf").arg(&tgz).current_dir(dir).output().expect("tar");
    assert!(x.status.success(), "{}", text(&x.stderr));
    let json = std::fs::read(dir.join(code).join("request.json")).expect("request.json");
    serde_json::from_slice(&json).expect("JSON")
}

/// `breakglass replay FILE --commands` with the world's config and pinned recording key.
fn replay_file(w: &World, file: &Path) -> e2e::Output {
    let out = Command::new(e2e::bin())
        .args(["replay", file.to_str().expect("utf-8"), "--commands", "--config"])
        .arg(&w.config)
        .env("BREAKGLASS__SERVER__DATA_DIR", w.data_dir())
        .env_remove("BREAKGLASS_CONFIG")
        .output()
        .expect("breakglass runs");
    e2e::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
    }
}

#[test]
fn another_sessions_recording_is_refused_by_every_checker() {
    let w = World::start();
    let mut sessions = Vec::new();
    for what in ["session-x", "session-y"] {
        let code = w.grant("db-1", None);
        let out = w.ssh(&code, &["echo", what]);
        assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
        let rec = w.recording_of(&code, 10);
        w.wait_status(&code, "closed", 10);
        let id = w.status(&code)["id"].as_str().expect("id").to_owned();
        sessions.push((code, rec, id));
    }
    let [(x, xf, xid), (y, yf, yid)] = <[_; 2]>::try_from(sessions).expect("two sessions");
    let path = |p: &Path| p.to_str().expect("utf-8").to_owned();
    let dir = tempfile::tempdir().expect("tempdir");

    // Untouched: each verifies, bound to its own session.
    for (code, file) in [(&x, &xf), (&y, &yf)] {
        let v = w.cli(&["recording", "verify", &path(file)]);
        assert_eq!(v.code, 0, "{}", v.all());
        assert!(v.stdout.contains(&format!("for session {code}")), "{}", v.all());
        let r = w.cli_as("erin", &["replay", code, "--commands"]);
        assert!(r.stderr.starts_with("recording verified: "), "{}", r.all());
        let r = replay_file(&w, file);
        assert!(r.stderr.starts_with("recording verified: "), "{}", r.all());
    }
    assert_eq!(bundle_request(&w, &y, dir.path())["session"]["recording_verified"], true);
    let audit = w.cli(&["audit", "verify"]);
    assert_eq!(audit.code, 0, "{}", audit.all());
    assert!(audit.stdout.contains("recordings OK: 2 signature(s) bound"), "{}", audit.all());
    assert!(audit.stdout.contains("2 file(s) on this machine re-hashed"), "{}", audit.all());

    // X's recording and signature copied over Y's.
    let y_cast = std::fs::read(&yf).expect("y");
    let y_sig = std::fs::read(e2e::gateway::recorder_sig(&yf)).expect("y.sig");
    std::fs::copy(&xf, &yf).expect("copy cast");
    std::fs::copy(e2e::gateway::recorder_sig(&xf), e2e::gateway::recorder_sig(&yf))
        .expect("copy sig");
    let x_name = xf.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
    let y_name = yf.file_name().and_then(|n| n.to_str()).expect("name").to_owned();

    let v = w.cli(&["recording", "verify", &path(&yf)]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(
        v.stdout.contains(&format!(
            "not this session's recording: the signature binds file name {x_name}, the file's name says {y_name}"
        )),
        "{}",
        v.all()
    );
    let local = replay_file(&w, &yf);
    assert!(local.stderr.contains("WARNING: recording NOT VERIFIED"), "{}", local.all());
    assert!(local.stderr.contains(&format!("binds file name {x_name}")), "{}", local.all());
    let header_says_x = format!("the recording's header says {x}");
    let remote = w.cli_as("erin", &["replay", &y, "--commands"]);
    assert!(remote.stderr.contains("WARNING: recording NOT VERIFIED"), "{}", remote.all());
    assert!(remote.stderr.contains(&header_says_x), "{}", remote.all());
    let bundled = bundle_request(&w, &y, dir.path());
    assert_eq!(bundled["session"]["recording_verified"], false, "{bundled}");
    let problem = bundled["session"]["recording_problem"].as_str().unwrap_or_default();
    assert!(problem.contains(&header_says_x), "{problem}");
    let audit = w.cli(&["audit", "verify"]);
    assert_eq!(audit.code, 1, "{}", audit.all());
    assert!(
        audit.stdout.contains(&format!("recording NOT VERIFIED: recording of {y}")),
        "{}",
        audit.all()
    );
    assert!(audit.stdout.contains(&header_says_x), "{}", audit.all());

    // And Y's row pointed at X's digest and signature, as a database writer could (after
    // dropping the append-only trigger).
    assert_eq!(w.sql("DROP TRIGGER recordings_no_update"), Ok(0));
    let copied = w.sql(&format!(
        "UPDATE recordings SET sha256 = (SELECT sha256 FROM recordings WHERE request_id = '{xid}'), \
         signature = (SELECT signature FROM recordings WHERE request_id = '{xid}') \
         WHERE request_id = '{yid}'"
    ));
    assert_eq!(copied, Ok(1));
    let remote = w.cli_as("erin", &["replay", &y, "--commands"]);
    assert!(remote.stderr.contains(&header_says_x), "{}", remote.all());
    let bundled = bundle_request(&w, &y, dir.path());
    assert_eq!(bundled["session"]["recording_verified"], false, "{bundled}");
    let audit = w.cli(&["audit", "verify"]);
    assert_eq!(audit.code, 1, "{}", audit.all());
    assert!(
        audit.stdout.contains("the recordings table disagrees with the audit log: field `sha256`"),
        "{}",
        audit.all()
    );

    // Y's own files back: the files verify again; the row still disagrees with the log.
    std::fs::write(&yf, y_cast).expect("restore cast");
    std::fs::write(e2e::gateway::recorder_sig(&yf), y_sig).expect("restore sig");
    let v = w.cli(&["recording", "verify", &path(&yf)]);
    assert_eq!(v.code, 0, "{}", v.all());
    assert_eq!(w.cli(&["audit", "verify"]).code, 1);
}
