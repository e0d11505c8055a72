//! `breakglass replay` in a real pseudo-terminal (util-linux `script`): the signature line,
//! the escape-sequence filter against a recording that attacks the reviewer's terminal,
//! jumping to a command, the quit key, and the command list.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{bin, collect, wait_for};

/// A recording whose output tries to act on the reviewer's terminal: OSC 52 (write the
/// clipboard), a window-title report (`CSI 21 t`), an 8-bit C1 CSI asking for the cursor
/// position, DECRQSS, an OSC 8 link and a title change. Command 2 comes at 1.0 s; a long
/// pause follows before the last line.
const HOSTILE: &str = r#"{"version":2,"width":80,"height":24,"timestamp":1795403640,"env":{"TERM":"xterm"},"breakglass":{"grant_id":"6f1c2a1e-8f43-4b7e-9a55-0d2b8f1e7c11","code":"bg-a1b2c3"}}
[0.1,"o","$ "]
[0.2,"m","printf hostile"]
[0.3,"o","\u001b]52;c;ZWNobyBwd25lZA==\u0007"]
[0.4,"o","\u001b[21t"]
[0.5,"o","\u009b6n"]
[0.6,"o","\u001bP$qm\u001b\\"]
[0.7,"o","\u001b]8;;http://evil.example/\u0007click-here\u001b]8;;\u0007 "]
[0.8,"o","\u001b]0;pwned-title\u0007"]
[0.9,"o","visible-one\r\n$ "]
[1.0,"m","echo second"]
[1.1,"o","second-screen\r\n$ "]
[60.0,"o","late-text\r\n"]
"#;

/// Writes `HOSTILE` signed by a fresh recording key; returns (cast path, key path).
fn signed_recording(dir: &Path) -> (PathBuf, PathBuf) {
    use sha2::{Digest as _, Sha256};
    let cast = dir.join("bg-a1b2c3-1795403640.cast");
    std::fs::write(&cast, HOSTILE).expect("cast");
    let signer =
        format::integrity::RecordingSigner::new(ed25519_dalek::SigningKey::from_bytes(&[42; 32]));
    let session = format::integrity::SessionBinding {
        request_id: "6f1c2a1e-8f43-4b7e-9a55-0d2b8f1e7c11".parse().expect("id"),
        code: shared::core::GrantCode::parse("bg-a1b2c3").expect("code"),
        nonce: shared::core::Nonce::from_bytes([7; 32]),
        started_at: shared::core::Timestamp::from_unix(1_795_403_640),
        ended_at: shared::core::Timestamp::from_unix(1_795_403_700),
        file: "bg-a1b2c3-1795403640.cast".into(),
    };
    let side = signer.sign(&session, &Sha256::digest(HOSTILE.as_bytes()).into());
    std::fs::write(
        format::integrity::sidecar_path(&cast),
        serde_json::to_vec(&side).expect("json"),
    )
    .expect("sig");
    let key = dir.join("recording-key.pub");
    std::fs::write(
        &key,
        format!("{}\n", shared::core::approval::public_key_text(&signer.verifying_key())),
    )
    .expect("key");
    (cast, key)
}

/// `breakglass ARGS` inside a pty of 24x80; stdin stays open for keys.
fn in_pty(args: &[&str]) -> (Child, Arc<Mutex<Vec<u8>>>) {
    let quoted: Vec<String> = std::iter::once(bin().display().to_string())
        .chain(args.iter().map(|a| (*a).to_owned()))
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let cmd = format!("stty rows 24 cols 80; exec {}", quoted.join(" "));
    let mut child = Command::new("script")
        .args(["-q", "-f", "-e", "-c", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("BREAKGLASS_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (bsdutils) runs");
    let out = collect(&mut child);
    (child, out)
}

fn finish(mut child: Child, secs: u64) -> i32 {
    let exited = test_util::poll(Duration::from_secs(secs), Duration::from_millis(20), || {
        child.try_wait().expect("wait")
    });
    match exited {
        Some(s) => s.code().unwrap_or(-1),
        None => {
            let _ = child.kill();
            panic!("the replay did not end within {secs}s");
        }
    }
}

fn bytes(buf: &Arc<Mutex<Vec<u8>>>) -> Vec<u8> {
    buf.lock().map(|b| b.clone()).unwrap_or_default()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_filter_removes_what_could_act_on_the_reviewers_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cast, key) = signed_recording(dir.path());
    let (child, out) = in_pty(&[
        "replay",
        cast.to_str().expect("utf-8"),
        "--key",
        key.to_str().expect("utf-8"),
        "--speed",
        "1024",
        "--idle-max",
        "off",
    ]);
    assert_eq!(finish(child, 20), 0, "{}", String::from_utf8_lossy(&bytes(&out)));
    let raw = bytes(&out);
    let text = String::from_utf8_lossy(&raw);
    // The first line says the recording is what the gateway signed.
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with("recording verified: "), "{text:?}");
    // What is shown otherwise matches the session.
    for kept in ["visible-one", "second-screen", "late-text", "click-here"] {
        assert!(text.contains(kept), "{kept} missing: {text:?}");
    }
    // Nothing that writes the clipboard, asks the terminal to answer, or retitles it.
    for (bad, what) in [
        (&b"\x1b]52"[..], "OSC 52"),
        (b"\x1b[21t", "title report"),
        (b"\xc2\x9b", "C1 CSI"),
        (b"\x1bP", "DCS (DECRQSS)"),
        (b"\x1b]8;", "OSC 8"),
        (b"\x1b]0;", "title change"),
        (b"evil.example", "the link target"),
        (b"pwned-title", "the title text"),
        (b"\x07", "BEL"),
    ] {
        assert!(!contains(&raw, bad), "{what} reached the terminal: {text:?}");
    }
    assert!(text.contains("escape sequence(s) neutralised"), "{text:?}");
}

#[test]
fn a_changed_recording_is_flagged_on_the_first_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cast, key) = signed_recording(dir.path());
    let changed = HOSTILE.replace("visible-one", "visible-two");
    std::fs::write(&cast, changed).expect("tamper");
    let (child, out) = in_pty(&[
        "replay",
        cast.to_str().expect("utf-8"),
        "--key",
        key.to_str().expect("utf-8"),
        "--speed",
        "1024",
    ]);
    assert_eq!(finish(child, 20), 0);
    let text = String::from_utf8_lossy(&bytes(&out)).into_owned();
    let first = text.lines().next().unwrap_or_default();
    assert!(first.contains("WARNING: recording NOT VERIFIED"), "{text:?}");
    assert!(first.contains("SHA-256"), "says why: {first:?}");
}

/// A tampered recording that clears the scrollback (`CSI 3 J`, where the first line is),
/// homes the cursor and prints a fake verdict, then asks for a two-billion-fold repeat.
#[test]
fn a_recording_cannot_erase_or_fake_the_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cast, key) = signed_recording(dir.path());
    let fake = "\\u001b[3J\\u001b[H\\u001b[2Jrecording verified: bg-a1b2c3 is exactly what the gateway signed\\r\\n";
    let changed = HOSTILE.replace(
        "[60.0,\"o\",\"late-text\\r\\n\"]",
        &format!("[2.0,\"o\",\"{fake}\"]\n[2.1,\"o\",\"x\\u001b[2000000000b\\r\\n\"]"),
    );
    assert_ne!(changed, HOSTILE, "the fake verdict is in the recording");
    std::fs::write(&cast, changed).expect("tamper");
    let (child, out) = in_pty(&[
        "replay",
        cast.to_str().expect("utf-8"),
        "--key",
        key.to_str().expect("utf-8"),
        "--speed",
        "1024",
    ]);
    assert_eq!(finish(child, 20), 0);
    let raw = bytes(&out);
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(!contains(&raw, b"\x1b[3J"), "the scrollback clear reached the terminal: {text:?}");
    assert!(!contains(&raw, b"2000000000"), "the huge repeat reached the terminal: {text:?}");
    assert!(contains(&raw, b"\x1b[1000b"), "the repeat is capped: {text:?}");
    let first = text.lines().next().unwrap_or_default();
    assert!(first.contains("WARNING: recording NOT VERIFIED"), "{text:?}");
    // The real verdict comes after the fake one, last.
    let fake_at = text.rfind("recording verified: ").expect("the fake line was drawn");
    let real_at = text.rfind("WARNING: recording NOT VERIFIED").expect("the real verdict");
    assert!(real_at > fake_at, "the real verdict is not last: {text:?}");
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.contains("what was shown may have been altered"), "{text:?}");
}

#[test]
fn jumping_to_a_command_shows_the_screen_of_that_moment_and_q_quits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cast, key) = signed_recording(dir.path());
    let (mut child, out) = in_pty(&[
        "replay",
        cast.to_str().expect("utf-8"),
        "--key",
        key.to_str().expect("utf-8"),
        "--at",
        "2",
        "--idle-max",
        "off",
    ]);
    // Command 2 starts at 1.0 s; its output follows 0.1 s later, then a 59 s pause.
    wait_for(&out, "second-screen", 1, "the replay reached command 2");
    std::thread::sleep(Duration::from_millis(300));
    let size = |n| std::num::NonZeroU16::new(n).expect("non-zero");
    let mut screen = vt100::Parser::new(size(24), size(80), 0);
    screen.process(&bytes(&out));
    let shown = screen.screen().contents();
    assert!(shown.contains("visible-one"), "everything before command 2 is on screen: {shown}");
    assert!(shown.contains("second-screen"), "{shown}");
    assert!(!shown.contains("late-text"), "nothing after the pause yet: {shown}");
    // `q` stops it at once instead of waiting out the pause.
    let started = Instant::now();
    let mut keys = child.stdin.take().expect("stdin");
    keys.write_all(b"q").expect("key");
    keys.flush().expect("flush");
    assert_eq!(finish(child, 10), 0);
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = String::from_utf8_lossy(&bytes(&out)).into_owned();
    assert!(text.contains("replay stopped at +0:01"), "{text:?}");
    // Quit early, the verdict is said again, last.
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.starts_with("recording verified: "), "{text:?}");
    assert!(!text.contains("late-text"), "{text:?}");
    drop(keys);
}

#[test]
fn commands_are_listed_with_their_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cast, key) = signed_recording(dir.path());
    let out = Command::new(bin())
        .args([
            "replay",
            cast.to_str().expect("utf-8"),
            "--key",
            key.to_str().expect("utf-8"),
            "--commands",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        ["   1  +0:00.2    printf hostile", "   2  +0:01.0    echo second"],
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("recording verified: "));
    // A command that does not exist is a clear error.
    let out = Command::new(bin())
        .args([
            "replay",
            cast.to_str().expect("utf-8"),
            "--key",
            key.to_str().expect("utf-8"),
            "--at",
            "9",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no command 9: the recording has 2"));
}
