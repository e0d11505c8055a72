//! Recordings in S3-compatible object storage, end to end: the real `breakglass up` with
//! `[recordings] store = "s3"` against a real moto server of the test's own, a real sshd and
//! the OpenSSH client. A session's recording is sealed in the bucket and verifies; a gateway
//! killed mid-session leaves its uploaded part readable and the next start seals it as
//! interrupted; a bucket that goes away cuts the session with a message, and nothing typed
//! after reaches the target.

use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::gateway::{World, WorldOptions};
use e2e::s3::{MOTO_KEY, Moto};
use e2e::{collect, wait_for};

/// A world whose recordings go to `moto`'s bucket under `recordings/`, uploaded every 500 ms
/// and failing closed after 3 s without an upload.
fn world(moto: &Moto) -> World {
    World::with(WorldOptions {
        extra_toml: format!(
            "[recordings]\nstore = \"s3\"\nbucket = \"{}\"\nendpoint = \"{}\"\nallow_http = true\n\
             upload_every = \"500ms\"\nupload_timeout = \"3s\"\n",
            moto.bucket,
            moto.endpoint()
        ),
        env: vec![
            ("AWS_ACCESS_KEY_ID".into(), MOTO_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), MOTO_KEY.into()),
        ],
        ..WorldOptions::default()
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The recording of `code` in the bucket (`recordings/CODE-….cast`), once `what` holds for
/// the bucket's keys.
fn key_of(moto: &Moto, code: &str, secs: u64, what: impl Fn(&[String], &str) -> bool) -> String {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let keys = moto.keys();
        let name = keys
            .iter()
            .filter_map(|k| k.strip_prefix("recordings/"))
            .find(|k| k.starts_with(&format!("{code}-")))
            .map(|k| k.split(".cast").next().unwrap_or_default().to_owned() + ".cast");
        if let Some(name) = name
            && what(&keys, &name)
        {
            return name;
        }
        assert!(Instant::now() < end, "the bucket never had what was waited for: {keys:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sealed(keys: &[String], name: &str) -> bool {
    keys.contains(&format!("recordings/{name}")) && keys.contains(&format!("recordings/{name}.sig"))
}

#[test]
fn a_sessions_recording_is_sealed_in_the_bucket_and_verifies_and_the_reviewer_reads_it() {
    let moto = Moto::start("bg-recordings");
    let w = world(&moto);
    let code = w.grant("db-1", None);
    let out = w.ssh(&code, &["echo", "kept-in-the-bucket"]);
    assert_eq!(text(&out.stdout).trim(), "kept-in-the-bucket", "{}", text(&out.stderr));
    w.wait_status(&code, "closed", 15);
    let name = key_of(&moto, &code, 15, sealed);
    let keys = moto.keys();
    assert!(!keys.iter().any(|k| k.contains(".parts/")), "parts deleted once sealed: {keys:?}");
    assert!(w.recordings().is_empty(), "nothing in the local recordings folder");
    let cast = moto.object(&format!("recordings/{name}")).expect("the recording");
    assert!(text(&cast).contains("kept-in-the-bucket"));

    let audit = w.cli(&["audit", "verify"]);
    assert_eq!(audit.code, 0, "{}", audit.all());
    assert!(audit.stdout.contains("recordings OK"), "{}", audit.all());

    // Downloaded with its signature, it verifies offline.
    let local = w.dir.path().join(&name);
    std::fs::write(&local, &cast).expect("write");
    std::fs::write(
        w.dir.path().join(format!("{name}.sig")),
        moto.object(&format!("recordings/{name}.sig")).expect("the signature"),
    )
    .expect("write");
    let v = w.cli(&["recording", "verify", local.to_str().expect("utf-8")]);
    assert_eq!(v.code, 0, "{}", v.all());

    // The reviewer's API (what the review page and replay read) serves it from the bucket.
    let (status, body) = w.api("erin", "GET", &format!("/api/v1/requests/{code}/recording"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cast"].as_str().map(str::as_bytes), Some(cast.as_slice()));
}

#[test]
fn a_gateway_killed_mid_session_leaves_its_upload_readable_and_the_next_start_seals_it() {
    let moto = Moto::start("bg-recordings");
    let mut w = world(&moto);
    let code = w.grant("db-1", None);
    let mut child = w
        .ssh_cmd("alice", &code, &["-tt", "echo uploaded-before-the-crash; sleep 30"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh");
    let out = collect(&mut child);
    wait_for(&out, "uploaded-before-the-crash", 1, "the session's output");
    let part = |name: &str| moto.object(&format!("recordings/{name}.parts/00000001"));
    let name = key_of(&moto, &code, 10, |_, n| {
        part(n).is_some_and(|p| text(&p).contains("uploaded-before-the-crash"))
    });
    w.server.kill9();
    let _ = child.kill();
    assert!(
        text(&part(&name).expect("the part")).starts_with("{\"version\":2"),
        "the part read from the bucket starts the recording"
    );
    assert!(!moto.keys().contains(&format!("recordings/{name}.sig")), "not sealed");

    w.restart();
    w.wait_status(&code, "closed", 20);
    let name = key_of(&moto, &code, 15, sealed);
    let cast = text(&moto.object(&format!("recordings/{name}")).expect("sealed recording"));
    assert!(cast.contains("uploaded-before-the-crash"), "{cast}");
    assert!(cast.contains("gateway_crashed (recovered)"), "marked interrupted: {cast}");
    let audit = w.cli(&["audit", "verify"]);
    assert_eq!(audit.code, 0, "{}", audit.all());
}

#[test]
fn a_bucket_that_goes_away_cuts_the_session_with_a_message_and_nothing_typed_after_runs() {
    let mut moto = Moto::start("bg-recordings");
    let w = world(&moto);
    let code = w.grant("db-1", None);
    let mut child = w
        .ssh_cmd("alice", &code, &["-tt"])
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh starts");
    let out = collect(&mut child);
    // The gateway's goodbye may come on either stream: collect stderr too.
    let err = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    if let Some(mut e) = child.stderr.take() {
        let sink = err.clone();
        std::thread::spawn(move || {
            use std::io::Read as _;
            let mut chunk = [0u8; 4096];
            while let Ok(n) = e.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("stderr").extend_from_slice(&chunk[..n]);
            }
        });
    }
    let mut stdin = child.stdin.take().expect("stdin");
    let mut send = move |s: &str| {
        use std::io::Write as _;
        // The client may be gone already: its stdin then refuses the keys.
        let _ = stdin.write_all(s.as_bytes()).and_then(|()| stdin.flush());
        std::thread::sleep(Duration::from_millis(250));
    };
    wait_for(&out, e2e::gateway::PROMPT_READY, 1, "the shell's first prompt");
    send("echo still-recorded\n");
    wait_for(&out, "still-recorded", 2, "the echo and its output");
    moto.kill();
    let killed = Instant::now();
    let end = killed + Duration::from_secs(15);
    let seen = || text(&out.lock().expect("stdout")) + &text(&err.lock().expect("stderr"));
    while !seen().contains("the session recording failed; session closed") {
        assert!(
            Instant::now() < end,
            "the session was not cut after the bucket went away:\n{}\n{}",
            seen(),
            w.server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let cut_after = killed.elapsed();
    assert!(cut_after < Duration::from_secs(8), "cut {cut_after:?} after the bucket went away");
    // Typed after the cut: it must never reach the target.
    let marker = w.dir.path().join("typed-after-the-cut");
    send(&format!("touch {}\n", marker.display()));
    let status = child.wait().expect("ssh ends");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!marker.exists(), "a command typed after the cut ran on the target");
    assert!(!status.success(), "the client saw the session end badly: {status:?}");
}
