//! The adversarial suite: a hostile SSH client (`tests/hostile/client.py`, paramiko) against
//! a running `breakglass up` and a real OpenSSH target. Each test attacks one promise the
//! product rests on (a cut never waits for the client, no byte reaches the target unrecorded,
//! bounded memory, a flood does not lock others out) and checks it on the far side: marker
//! files the target's commands would create, bytes in the recording, the client's TCP
//! connection, processes on the target, the gateway's RSS.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use e2e::gateway::{World, WorldOptions, recorder_sig};
use format::cast;
use serde_json::{Value, json};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// A name no other test (or process) uses: for marker files and `pgrep -f`.
fn unique(prefix: &str) -> String {
    let n = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}{}x{n}", std::process::id())
}

/// The hostile client, running one scenario; its JSON lines arrive on a channel.
struct Hostile {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Hostile {
    /// Starts `client.py SCENARIO --port GW --user USER --key alice ARGS` with `env`.
    fn start(w: &World, scenario: &str, user: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let script = e2e::root().join("tests/hostile/client.py");
        let key = w.dir.path().join("alice");
        let mut c = Command::new("python3");
        c.arg(&script)
            .arg(scenario)
            .args(["--port", &w.gw_port.to_string(), "--user", user, "--key"])
            .arg(&key)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("python3 runs (scripts/test installs it and paramiko)");
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"event": "raw", "line": line}));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self { child, stdin, lines, seen: Vec::new() }
    }

    /// The next line whose event is `event`, within `secs`; `None` on timeout or when the
    /// client exits first. An `error` line panics with what the client said.
    fn next(&mut self, event: &str, secs: f64) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.lines.recv_timeout(left).ok()?;
            self.seen.push(v.clone());
            if v["event"] == "error" || v["event"] == "missing" {
                panic!("the hostile client failed: {v}\nseen: {:?}", self.seen);
            }
            if v["event"] == event {
                return Some(v);
            }
        }
    }

    /// Like [`next`](Self::next), but panics (with `what`) on timeout.
    fn expect(&mut self, event: &str, secs: f64, what: &str) -> Value {
        self.next(event, secs).unwrap_or_else(|| {
            panic!(
                "{what}: no `{event}` line from the hostile client within {secs} s; seen: {:?}",
                self.seen
            )
        })
    }

    /// Tells the client to stop (stdin closes) and waits a little for it.
    fn stop(&mut self) {
        drop(self.stdin.take());
        let exited =
            test_util::eventually(Duration::from_secs(5), Duration::from_millis(20), || {
                matches!(self.child.try_wait(), Ok(Some(_)))
            });
        if exited {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every byte the recording at `path` holds, from every event: `o` and `i` data, `b`
/// annotations (`X:<base64>`), and `d` events (`<dir><channel>:<base64>`, the raw bytes of
/// transfer and binary channels). Markers (`m`) are not bytes and are left out.
fn recorded_bytes(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).expect("recording");
    let cast = cast::parse_bytes(&raw).expect("the recording parses");
    let mut out = Vec::new();
    for e in &cast.events {
        match e.code.as_str() {
            "o" | "i" => out.extend_from_slice(e.data.as_bytes()),
            "b" | "d" => {
                if let Some((_, b)) = e.data.split_once(':')
                    && let Ok(bytes) = BASE64.decode(b)
                {
                    out.extend_from_slice(&bytes);
                }
            }
            _ => {}
        }
        out.push(b'\n');
    }
    out
}

/// The marker (`m`) events of the recording at `path`.
fn markers(path: &Path) -> Vec<String> {
    let cast = cast::parse_bytes(&std::fs::read(path).expect("recording")).expect("parses");
    cast.events.into_iter().filter(|e| e.code == "m").map(|e| e.data).collect()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// `breakglass recording verify FILE` exit code and output.
fn verify(w: &World, rec: &Path) -> (i32, String) {
    let v = w.cli(&["recording", "verify", rec.to_str().expect("utf-8")]);
    (v.code, v.all())
}

/// Whether a process whose command line contains `tag` runs on the target (this machine).
fn running(tag: &str) -> bool {
    Command::new("pgrep").args(["-f", tag]).output().is_ok_and(|o| o.status.success())
}

/// Waits up to `secs` for `done`; returns whether it happened.
fn within(secs: f64, done: impl FnMut() -> bool) -> bool {
    test_util::eventually(Duration::from_secs_f64(secs), Duration::from_millis(50), done)
}

/// The times (Unix seconds) of the marker files `after-<ns>` in `dir`: the later of the time
/// in the name (the target's `date` when the command ran) and the file's mtime.
fn marker_times(dir: &Path) -> Vec<f64> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ns: f64 = name.strip_prefix("after-")?.parse().ok()?;
            let mtime = e
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            Some((ns / 1e9).max(mtime))
        })
        .collect()
}

/// A session attacked with the decoy: channel 1 runs `decoy` under a pty and is never read;
/// channel 2 is a shell that keeps creating marker files.
struct Decoyed {
    client: Hostile,
    markers: PathBuf,
}

fn decoyed(w: &World, code: &str, decoy: &str, max_seconds: u32) -> Decoyed {
    let markers = w.dir.path().join(format!("markers-{code}"));
    std::fs::create_dir_all(&markers).expect("marker dir");
    let m = markers.to_str().expect("utf-8").to_owned();
    let max = max_seconds.to_string();
    // The decoy goes in through the environment, so `pgrep -f TAG` finds the target's
    // process and not the client's own command line.
    let mut client = Hostile::start(
        w,
        "decoy",
        code,
        &["--marker-dir", &m, "--max-seconds", &max],
        &[("HOSTILE_DECOY", decoy)],
    );
    client.expect("ready", 20.0, "the decoy session opens");
    assert!(
        within(10.0, || !marker_times(&markers).is_empty()),
        "commands on the second channel run on the target: {:?}\n{}",
        client.seen,
        w.server.log()
    );
    // Let the decoy fill every window on the way.
    std::thread::sleep(Duration::from_millis(1000));
    Decoyed { client, markers }
}

/// What happened after a cut at `cut_at` (Unix seconds): when the client's TCP connection
/// was closed by the gateway (if it was within `secs`), and the markers created later than
/// `cut_at + 0.5 s`.
struct AfterCut {
    tcp_closed_after: Option<f64>,
    late_markers: Vec<f64>,
    closed_line: Option<Value>,
}

fn after_cut(d: &mut Decoyed, cut_at: f64, secs: f64) -> AfterCut {
    // The client reports once paramiko stopped and then (within 5 s more) when TCP closed.
    let closed_line = d.client.next("closed", secs + 5.0);
    let tcp_closed_after =
        closed_line.as_ref().and_then(|v| v["tcp_at"].as_f64()).map(|t| t - cut_at);
    // Markers the commands still in flight could create.
    std::thread::sleep(Duration::from_millis(700));
    let mut late_markers: Vec<f64> = marker_times(&d.markers)
        .into_iter()
        .filter(|t| *t > cut_at + 0.5)
        .map(|t| t - cut_at)
        .collect();
    late_markers.sort_by(f64::total_cmp);
    AfterCut { tcp_closed_after, late_markers, closed_line }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn assert_cut(what: &str, a: &AfterCut, w: &World) {
    let facts = format!(
        "{what}: TCP closed by the gateway {:?} s after the cut; {} markers created more than \
         0.5 s after it (at +{:?} s); client said {:?}\n{}",
        a.tcp_closed_after,
        a.late_markers.len(),
        a.late_markers.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>(),
        a.closed_line,
        last_lines(&w.server.log(), 30)
    );
    eprintln!("{facts}");
    assert!(a.tcp_closed_after.is_some_and(|t| t < 3.0), "{facts}");
    assert!(a.late_markers.is_empty(), "{facts}");
}

#[test]
fn a_revoke_cuts_a_client_that_never_reads_its_decoy_channel() {
    let w = World::start();
    let mut failures = Vec::new();
    // Two decoys: a burst of output larger than every window on the way, and endless output.
    // Each command line carries a tag, for `pgrep -f` on the target.
    for decoy in ["head -c 300000 /dev/zero; sleep 60; : {tag}", "yes {tag}"] {
        let code = w.grant("db-1", None);
        let tag = unique("hostiledecoy");
        let command = decoy.replace("{tag}", &tag);
        let mut d = decoyed(&w, &code, &command, 30);
        assert!(running(&tag), "the decoy runs on the target: {command}");
        w.wait_status(&code, "active", 5);
        let (s, v) = w.api("bob", "POST", &format!("/api/v1/requests/{code}/revoke"), None);
        assert_eq!(s, 200, "{v}");
        let revoked = now_secs();
        let a = after_cut(&mut d, revoked, 3.0);
        // Read by bench/cut.sh.
        eprintln!("cut-latency revoke {:?}", a.tcp_closed_after);
        let mut facts = Vec::new();
        if !a.tcp_closed_after.is_some_and(|t| t < 3.0) {
            facts.push(format!(
                "the client's TCP connection was closed {:?} s after the revoke (limit 3 s)",
                a.tcp_closed_after
            ));
        }
        if !a.late_markers.is_empty() {
            facts.push(format!(
                "{} commands ran on the target more than 0.5 s after the revoke (at +{:.1?} s)",
                a.late_markers.len(),
                a.late_markers
            ));
        }
        let status = w.status(&code)["status"].clone();
        if status != "revoked" {
            facts.push(format!("the request is {status}, not revoked"));
        }
        if !within(5.0, || !running(&tag)) {
            facts.push("the decoy still runs on the target 5 s later".to_owned());
        }
        let sealed = within(5.0, || {
            w.recordings()
                .iter()
                .any(|p| p.to_string_lossy().contains(&code) && recorder_sig(p).exists())
        });
        if sealed {
            let rec = w.recording_of(&code, 1);
            let (code_v, out) = verify(&w, &rec);
            if code_v != 0 {
                facts.push(format!("the recording does not verify: {out}"));
            }
        } else {
            facts.push("the recording was not sealed (no .sig) 5 s later".to_owned());
        }
        if !facts.is_empty() {
            failures.push(format!("decoy `{command}`: {}", facts.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}\n{}", last_lines(&w.server.log(), 30));
}

#[test]
fn the_deadline_cuts_a_client_that_never_reads_its_decoy_channel() {
    let w = World::with(WorldOptions {
        scope_extra: "max_duration = \"4s\"\ndefault_duration = \"4s\"\n".into(),
        ..WorldOptions::default()
    });
    let code = w.grant("db-1", Some("4s"));
    let mut d = decoyed(&w, &code, "head -c 300000 /dev/zero; sleep 60", 30);
    // The signed deadline, from the recording's header (Unix seconds).
    let rec = w
        .recordings()
        .into_iter()
        .find(|p| p.to_string_lossy().contains(&code))
        .expect("the live recording");
    let header = std::fs::read_to_string(&rec).expect("recording");
    let first: Value =
        serde_json::from_str(header.lines().next().unwrap_or("{}")).expect("header line");
    let deadline =
        first["breakglass"]["session_deadline"].as_f64().expect("session_deadline in the header");
    let a = after_cut(&mut d, deadline, (deadline - now_secs()).max(0.0) + 3.0);
    // Read by bench/cut.sh.
    eprintln!("cut-latency deadline {:?}", a.tcp_closed_after);
    assert_cut("deadline", &a, &w);
    let rec = w.recording_of(&code, 10);
    let (code_v, out) = verify(&w, &rec);
    assert_eq!(code_v, 0, "{out}");
    assert!(markers(&rec).iter().any(|m| m == "session ended: expired"), "{:?}", markers(&rec));
}

#[test]
fn a_stuck_session_does_not_delay_the_cut_of_another() {
    let w = World::start();
    let stuck = w.grant("db-1", None);
    let tag = unique("hostilestuck");
    let mut d = decoyed(&w, &stuck, &format!("yes {tag}"), 30);
    let healthy = w.grant("db-1", None);
    let mut plain = w
        .ssh_cmd("alice", &healthy, &["-tt", "sleep 60"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh");
    w.wait_status(&healthy, "active", 10);
    // The stuck one first: a watcher that waits on its cut never reaches the other.
    let (s, _) = w.api("bob", "POST", &format!("/api/v1/requests/{stuck}/revoke"), None);
    assert_eq!(s, 200);
    std::thread::sleep(Duration::from_millis(300));
    let (s, _) = w.api("bob", "POST", &format!("/api/v1/requests/{healthy}/revoke"), None);
    assert_eq!(s, 200);
    let revoked = now_secs();
    let healthy_cut = within(3.0, || plain.try_wait().is_ok_and(|s| s.is_some()));
    let a = after_cut(&mut d, revoked, 3.0);
    let _ = plain.kill();
    let _ = plain.wait();
    assert!(
        healthy_cut,
        "the healthy session was not cut within 3 s of its revoke (stuck session: TCP closed \
         after {:?} s)\n{}",
        a.tcp_closed_after,
        w.server.log()
    );
    assert_cut("the stuck session", &a, &w);
}

/// Runs `ssh ARGS` as alice to grant `code`, killed after `secs`: its output
/// (`None` if it was killed) and how long it took.
fn ssh_within(
    w: &World,
    code: &str,
    args: &[&str],
    secs: u64,
) -> (Option<std::process::Output>, Duration) {
    let started = Instant::now();
    let mut child = w
        .ssh_cmd("alice", code, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh runs");
    let done = within(secs as f64, || child.try_wait().is_ok_and(|s| s.is_some()));
    let took = started.elapsed();
    if !done {
        let _ = child.kill();
        let _ = child.wait();
        return (None, took);
    }
    (child.wait_with_output().ok(), took)
}

fn stdout_text(out: &Option<std::process::Output>) -> String {
    out.as_ref().map(|o| text(&o.stdout)).unwrap_or_else(|| "(killed: no answer in time)".into())
}

fn stderr_text(out: &Option<std::process::Output>) -> String {
    out.as_ref().map(|o| text(&o.stderr)).unwrap_or_default()
}

/// Runs the `steps` scenario as `code` and returns its `done` line.
fn steps(w: &World, code: &str, spec: &Value) -> Value {
    let spec = spec.to_string();
    let mut c = Hostile::start(w, "steps", code, &["--spec", &spec, "--max-seconds", "30"], &[]);
    c.expect("done", 40.0, "the scripted session ends")
}

fn stdout_of(done: &Value) -> Vec<u8> {
    BASE64.decode(done["stdout"].as_str().unwrap_or_default()).unwrap_or_default()
}

#[test]
fn a_program_named_scp_or_sftp_server_is_still_recorded() {
    let w = World::start();
    // Wrappers named like transfer programs that are really interactive shells.
    let bin = w.dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    for name in ["scp", "sftp-server"] {
        let p = bin.join(name);
        std::fs::write(&p, "#!/bin/sh\nexec sh -i\n").expect("wrapper");
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
    }
    let mut cases = vec![
        (format!("{}/scp -t .", bin.display()), "scpmark"),
        (format!("{}/sftp-server", bin.display()), "sftpwrapmark"),
    ];
    let mut missing = Vec::new();
    for (command, mark) in cases.drain(..) {
        let code = w.grant("db-1", None);
        let typed = format!("echo {mark}-$((6*7)); id\n");
        let done = steps(
            &w,
            &code,
            &json!([
                {"exec": command},
                {"sleep": 0.3},
                {"send": typed},
                {"expect": format!("{mark}-42"), "timeout": 10},
                {"expect": "uid=", "timeout": 10},
                {"send": "exit\n"},
                {"wait_close": 5},
            ]),
        );
        assert!(contains(&stdout_of(&done), &format!("{mark}-42")), "the shell ran: {done}");
        w.wait_status(&code, "closed", 10);
        let rec = w.recording_of(&code, 10);
        let bytes = recorded_bytes(&rec);
        for needle in [format!("{mark}-$((6*7))"), format!("{mark}-42"), "uid=".to_owned()] {
            if !contains(&bytes, &needle) {
                missing.push(format!("`{command}`: {needle:?}"));
            }
        }
    }

    // The real sftp-server (where the target has one) and the sftp subsystem, fed garbage
    // carrying a mark: the bytes sent are recorded, whatever the server makes of them.
    let garbage = "\0\0\0\x09\x01GARBAGE-sftpmark-garbage\n";
    let real = [
        "/usr/lib/openssh/sftp-server",
        "/usr/libexec/openssh/sftp-server",
        "/usr/lib/ssh/sftp-server",
        "/usr/libexec/sftp-server",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    let mut feeds = vec![json!({"subsystem": "sftp"})];
    match real {
        Some(p) => feeds.push(json!({"exec": p})),
        None => eprintln!(
            "no sftp-server binary on this machine: only the sftp subsystem is fed garbage"
        ),
    }
    for start in feeds {
        let code = w.grant("db-1", None);
        steps(
            &w,
            &code,
            &json!([start, {"sleep": 0.3}, {"send": garbage}, {"sleep": 0.3}, {"eof": true}, {"wait_close": 3}]),
        );
        w.wait_status(&code, "closed", 10);
        let rec = w.recording_of(&code, 10);
        if !contains(&recorded_bytes(&rec), "GARBAGE-sftpmark-garbage") {
            missing.push(format!("{start}: the garbage sent"));
        }
    }
    assert!(missing.is_empty(), "bytes that reached the target unrecorded: {missing:#?}");
}

#[test]
fn extended_data_env_and_signal_requests_from_the_client_are_recorded() {
    let w = World::start();
    let code = w.grant("db-1", None);
    let done = steps(
        &w,
        &code,
        &json!([
            {"env": ["LANG", "C.UTF-8"]},
            {"env": ["FOO", "bar"]},
            {"exec": "cat"},
            {"sleep": 0.3},
            {"send": "catmark-in\n"},
            {"expect": "catmark-in", "timeout": 10},
            {"stderr": "stderrmark-from-the-client\n"},
            {"sleep": 0.3},
            {"signal": "TERM"},
            {"wait_close": 5},
        ]),
    );
    assert!(contains(&stdout_of(&done), "catmark-in"), "{done}");
    w.wait_status(&code, "closed", 10);
    let rec = w.recording_of(&code, 10);
    let bytes = recorded_bytes(&rec);
    let marks = markers(&rec);
    let mut missing = Vec::new();
    if !contains(&bytes, "stderrmark-from-the-client") {
        missing.push("the extended data the client sent");
    }
    for (name, what) in [
        ("LANG", "the allowed env request"),
        ("FOO", "the refused env request"),
        ("TERM", "the signal request"),
    ] {
        if !marks.iter().any(|m| m.contains(name)) {
            missing.push(what);
        }
    }
    assert!(missing.is_empty(), "not in the recording: {missing:?}\nmarkers: {marks:?}");
}

/// The gateway's resident memory and its peak, in MiB (VmRSS, VmHWM of /proc/PID/status).
fn rss_mib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb / 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Caps the gateway's address space, so a test that makes today's gateway allocate tens of
/// gigabytes kills that gateway instead of the machine.
fn cap_address_space(pid: u32) {
    let ok = Command::new("prlimit")
        .args([format!("--pid={pid}"), "--as=6442450944".to_owned()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "prlimit (util-linux) caps the gateway's address space");
}

const MAX_RSS_MIB: u64 = 256;

#[test]
fn a_huge_pty_on_every_allowed_channel_keeps_the_gateway_small() {
    let w = World::start();
    let pid = w.server.pid();
    cap_address_space(pid);
    let code = w.grant("db-1", None);
    let other = w.grant("db-1", None);
    // A screenful, the alternate screen, and more.
    let script = "seq 1 3000; printf '\\033[?1049h'; seq 1 3000; echo screens-done";
    let mut c = Hostile::start(
        &w,
        "channels",
        &code,
        &[
            "--count",
            "10",
            "--cols",
            "10000",
            "--rows",
            "10000",
            "--script",
            script,
            "--max-seconds",
            "40",
        ],
        &[],
    );
    let mut peak = 0;
    let mut channels = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    let opened = loop {
        if let Some((rss, hwm)) = rss_mib(pid) {
            peak = peak.max(rss).max(hwm);
        } else {
            panic!("the gateway died (peak RSS {peak} MiB):\n{}", w.server.log());
        }
        assert!(peak < MAX_RSS_MIB, "gateway RSS {peak} MiB with {} huge ptys", channels.len());
        match c.lines.recv_timeout(Duration::from_millis(20)) {
            Ok(v) if v["event"] == "channel" => channels.push(v),
            Ok(v) if v["event"] == "opened" => break v,
            Ok(v) if v["event"] == "error" => panic!("the client failed: {v}\n{}", w.server.log()),
            _ => {}
        }
        assert!(Instant::now() < deadline, "the channels never opened: {channels:?}");
    };
    // Let the shells print their screens.
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle {
        let (rss, hwm) =
            rss_mib(pid).unwrap_or_else(|| panic!("the gateway died:\n{}", w.server.log()));
        peak = peak.max(rss).max(hwm);
        assert!(peak < MAX_RSS_MIB, "gateway RSS {peak} MiB with {} huge ptys", channels.len());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Meanwhile another grant's session works.
    let (out, took) = ssh_within(&w, &other, &["echo", "still-served"], 10);
    c.stop();
    eprintln!("peak gateway RSS {peak} MiB; other session {took:?}; channels {channels:?}");
    assert_eq!(stdout_text(&out).trim(), "still-served", "{}", stderr_text(&out));
    assert!(took < Duration::from_secs(5), "{took:?}");
    let ok: Vec<bool> = channels.iter().map(|v| v["ok"] == true).collect();
    assert!(
        ok.len() == 11 && ok[..10].iter().all(|o| *o),
        "ten channels with a huge pty open: {channels:?} {opened}"
    );
    assert!(
        !ok[10],
        "the 11th channel was opened: no per-session channel limit (gateway.max_channels_per_session)"
    );
}

#[test]
fn a_flood_of_channel_requests_keeps_the_gateway_responsive() {
    let w = World::start();
    let pid = w.server.pid();
    cap_address_space(pid);
    let code = w.grant("db-1", None);
    let other = w.grant("db-1", None);
    let spec = json!([
        {"pty": [80, 24]},
        {"shell": true},
        {"resize_flood": 2000, "huge": true},
        {"env_flood": 2000},
        {"send": "echo flood-$((6*7))\n"},
        {"expect": "flood-42", "timeout": 20},
        {"send": "exit\n"},
        {"wait_close": 5},
    ])
    .to_string();
    let mut c = Hostile::start(&w, "steps", &code, &["--spec", &spec], &[]);
    c.expect("flooded", 20.0, "the window-change flood was sent");
    let (out, took) = ssh_within(&w, &other, &["echo", "served"], 10);
    assert_eq!(
        stdout_text(&out).trim(),
        "served",
        "another user's ssh during the flood ({took:?}): {}; gateway RSS and peak (MiB): {:?}\n{}",
        stderr_text(&out),
        rss_mib(pid),
        last_lines(&w.server.log(), 20)
    );
    c.expect("done", 30.0, "the flooded channel still works");
    let (_, hwm) = rss_mib(pid).unwrap_or_else(|| panic!("the gateway died:\n{}", w.server.log()));
    eprintln!("other session during the flood: {took:?}; peak RSS {hwm} MiB");
    assert!(took < Duration::from_secs(5), "another user's ssh took {took:?} during the flood");
    assert!(hwm < MAX_RSS_MIB, "peak RSS {hwm} MiB");
}

#[test]
fn an_ssh_connection_flood_from_one_source_does_not_lock_others_out() {
    let w = World::start();
    let code = w.grant("db-1", None);
    let mut flood = Hostile::start(
        &w,
        "flood",
        "",
        &["--source", "127.0.0.2", "--count", "1100", "--max-seconds", "30"],
        &[],
    );
    let flooded = flood.expect("flooded", 30.0, "the flood connects");
    let opened = flooded["opened"].as_u64().unwrap_or(0);
    assert!(opened >= 1000, "the flood opened {opened} connections: {flooded}");
    let (out, took) = ssh_within(&w, &code, &["-b", "127.0.0.1", "echo", "got-in"], 10);
    eprintln!("a legitimate login during a flood of {opened} connections: {took:?}");
    // Most of the flood is closed by the gateway at once.
    let mut closed = 0;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        match flood.next("status", 1.0) {
            Some(v) => closed = v["closed_by_server"].as_u64().unwrap_or(0),
            None => break,
        }
        if closed * 10 >= opened * 9 {
            break;
        }
    }
    flood.stop();
    eprintln!("flood connections closed by the gateway: {closed} of {opened}");
    assert_eq!(
        stdout_text(&out).trim(),
        "got-in",
        "a legitimate user is locked out by the flood ({took:?}): {}",
        stderr_text(&out)
    );
    assert!(took < Duration::from_secs(2), "the login took {took:?}");
    assert!(closed * 10 >= opened * 9, "only {closed} of {opened} flood connections were closed");
}

#[test]
fn a_client_killed_mid_transfer_ends_the_session_with_a_sealed_recording() {
    let w = World::start();
    let d = w.dir.path();
    let local = d.join("big.bin");
    let payload = test_util::Rng::new(test_util::Rng::SEED).bytes(20_000_000);
    std::fs::write(&local, &payload).expect("payload");
    let remote = d.join("partial.bin");
    let code = w.grant("db-1", None);
    // Bandwidth-limited (2000 Kbit/s): the upload takes over a minute unless cut.
    let mut scp = Command::new("scp")
        .args(w.ssh_opts("alice"))
        .args(["-P", &w.gw_port.to_string(), "-l", "2000"])
        .arg(&local)
        .arg(format!("{code}@127.0.0.1:{}", remote.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("scp runs");
    let started = within(15.0, || std::fs::metadata(&remote).is_ok_and(|m| m.len() > 100_000));
    let _ = scp.kill();
    let _ = scp.wait();
    assert!(started, "the upload started:\n{}", w.server.log());
    w.wait_status(&code, "closed", 10);
    let rec = w.recording_of(&code, 10);
    assert!(recorder_sig(&rec).exists());
    let (code_v, out) = verify(&w, &rec);
    assert_eq!(code_v, 0, "{out}");
    let len = std::fs::metadata(&remote).map(|m| m.len()).unwrap_or(0);
    assert!(len < payload.len() as u64, "the upload was cut mid-way ({len} bytes)");
}

#[test]
fn a_huge_user_name_cannot_bloat_the_audit_log() {
    let w = World::start();
    // A configured key with no grant, and a user name of 20,000 characters: the refusal is
    // audited, with the name bounded.
    let user = "x".repeat(20_000);
    let out = w.ssh_cmd("alice", &user, &["true"]).stdin(Stdio::null()).output().expect("ssh runs");
    assert_ne!(out.status.code(), Some(0), "refused: {}", text(&out.stderr));
    let export = w.cli(&["audit", "export"]);
    assert_eq!(export.code, 0, "{}", export.all());
    let refused: Vec<Value> = export
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "session_refused")
        .collect();
    assert!(!refused.is_empty(), "the refusal is audited: {}", export.stdout);
    for e in &refused {
        let line = e.to_string();
        assert!(line.len() < 4_000, "an audit event stays small: {} bytes", line.len());
    }
    // The client did send the whole name (the bound is the gateway's, not ssh's): it was cut
    // to 256 characters and marked.
    assert!(
        refused.iter().any(|e| e.to_string().contains(&format!("{}…", "x".repeat(256)))),
        "{refused:?}"
    );
}

/// A client that ignores SSH flow control (sends past its window, to a program that never
/// reads) would make the gateway queue whatever it sends: the gateway cuts it once one
/// channel holds more than its window, and its memory stays small. Far side: the gateway's
/// RSS, the client's TCP connection, the target's process.
#[test]
fn a_client_that_ignores_its_window_is_cut_and_the_gateway_stays_small() {
    let w = World::start();
    let pid = w.server.pid();
    cap_address_space(pid);
    let code = w.grant("db-1", None);
    let tag = unique("never-reads-");
    // Never reads its input; prints now and then, so it ends once its session is gone.
    let script = format!("while sleep 0.2; do echo tick; done; : {tag}");
    let before = rss_mib(pid).expect("gateway RSS").0;
    let mut c = Hostile::start(
        &w,
        "overrun",
        &code,
        &["--script", &script, "--count", "96", "--max-seconds", "20"],
        &[],
    );
    let end = c.expect("closed", 90.0, "the gateway ends a connection that ignores its window");
    let (rss, peak) = rss_mib(pid).expect("gateway RSS");
    let mib = end["mib"].as_f64().unwrap_or_default();
    assert!(mib < 96.0, "the client sent everything ({mib} MiB) before the gateway cut it: {end}");
    assert!(
        peak < before + 48,
        "the gateway grew from {before} MiB to a peak of {peak} MiB (now {rss}) while a client ignored its window"
    );
    assert!(end["tcp_closed"] == true, "the gateway closed the client's TCP connection: {end}");
    assert!(
        within(10.0, || !running(&tag)),
        "the session's program still runs on the target after the cut"
    );
    let rec = w.recording_of(&code, 20);
    let text = std::fs::read_to_string(&rec).expect("recording");
    let tail: Vec<&str> = text.lines().rev().take(6).collect();
    assert!(
        text.contains("more than its window"),
        "the recording says why; it ends with {tail:#?}"
    );
}
