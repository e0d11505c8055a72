//! The SSH gateway end to end: a real OpenSSH sshd as the target, the real `ssh`, `scp` and
//! `sftp` clients, and a running `breakglass up`. Each test builds its own world.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::gateway::{Agent, PROMPT_READY, World, WorldOptions, free_port, recorder_sig};
use e2e::{collect, wait_for};
use format::cast;
use shared::core::SessionEventKind;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn exec_runs_on_the_target_with_its_exit_status_and_is_recorded() {
    let w = World::start();
    let code = w.grant("db-1", None);
    let out = w.ssh(&code, &["echo", "hello from $(hostname); exit 3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}\n{}",
        text(&out.stdout),
        text(&out.stderr),
        w.server.log()
    );
    assert!(text(&out.stdout).starts_with("hello from "), "{}", text(&out.stdout));
    assert!(
        w.sshd.log().contains(&format!("breakglass:{code}")),
        "sshd logged the certificate's key id:\n{}",
        w.sshd.log()
    );

    let rec = w.recording_of(&code, 10);
    let v = w.cli(&["recording", "verify", rec.to_str().expect("utf-8")]);
    assert_eq!(v.code, 0, "{}", v.all());
    w.wait_status(&code, "closed", 10);
    let events = w.session_events(&code);
    assert_eq!(events[0].kind, SessionEventKind::Exec);
    assert_eq!(events[0].detail["command"], "echo hello from $(hostname); exit 3");

    let cast = cast::parse(&std::fs::read_to_string(&rec).expect("recording")).expect("parses");
    assert_eq!(cast.header_json["breakglass"]["code"], code.as_str());
    assert_eq!(cast.header_json["breakglass"]["requester"], "alice");
    assert_eq!(cast.header_json["breakglass"]["approvers"].as_array().map(Vec::len), Some(2));
    assert!(cast.output_text().contains("hello from"), "{}", cast.output_text());
    assert!(cast.events.iter().any(|e| e.code == "m" && e.data == "exit 3"));

    // One byte changed in the recording: verification fails.
    let mut bytes = std::fs::read(&rec).expect("read");
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&rec, &bytes).expect("write");
    let v = w.cli(&["recording", "verify", rec.to_str().expect("utf-8")]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(v.stdout.contains("NOT VERIFIED") && v.stdout.contains("was changed"), "{}", v.all());
}

#[test]
fn an_expired_grant_is_refused() {
    let w = World::with(WorldOptions {
        scope_extra:
            "max_duration = \"1s\"\ndefault_duration = \"1s\"\napproval_timeout = \"2s\"\n".into(),
        ..WorldOptions::default()
    });
    // Timestamps are whole seconds: a 1 s approval window could close between the request and
    // its second approval on a loaded machine (seen in CI). With 2 s it cannot, and the grant
    // ends at most 3 s after the request.
    let code = w.grant("db-1", Some("1s"));
    std::thread::sleep(Duration::from_millis(3500));
    let out = w.ssh(&code, &["true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("{code} expired at ")), "{}", text(&out.stderr));
}

#[test]
fn only_allowed_environment_variables_reach_the_target() {
    let w = World::start();
    let code = w.grant("db-1", None);
    let out = w.ssh(
        &code,
        &["-o", "SetEnv=LANG=C.UTF-8 SECRET=leaked", "echo", "lang=$LANG secret=$SECRET"],
    );
    assert_eq!(text(&out.stdout).trim(), "lang=C.UTF-8 secret=", "{}", text(&out.stderr));
}

#[test]
fn users_log_in_with_ed25519_rsa_and_ecdsa_keys() {
    let w = World::start();
    for key in ["alice-rsa", "alice-ecdsa"] {
        let code = w.grant("db-1", None);
        let out = w.ssh_cmd(key, &code, &["echo", key]).stdin(Stdio::null()).output().expect("ssh");
        assert_eq!(text(&out.stdout).trim(), key, "{}\n{}", text(&out.stderr), w.server.log());
    }
}

#[test]
fn binary_exec_output_arrives_intact_and_is_kept_byte_for_byte() {
    let w = World::start();
    let code = w.grant("db-1", None);
    let local = std::fs::read("/bin/true").expect("/bin/true");
    let out = w.ssh(&code, &["cat", "/bin/true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout, local, "the client got the file byte for byte");
    let rec = w.recording_of(&code, 10);
    let cast = cast::parse_bytes(&std::fs::read(&rec).expect("recording")).expect("parses");
    assert_eq!(
        cast.raw_stream(cast::Stream::Output).expect("raw output"),
        local,
        "the recording keeps every byte"
    );
    // And the audit chain holds the SHA-256 of that file, which covers the raw output (the
    // gateway hashes once: the file, not each stream again).
    w.wait_status(&code, "closed", 10);
    let digest = {
        use sha2::{Digest as _, Sha256};
        hex::encode(Sha256::digest(std::fs::read(&rec).expect("recording")))
    };
    let ended = w
        .cli(&["audit", "export"])
        .stdout
        .lines()
        .find(|l| l.contains("\"session_ended\""))
        .map(str::to_owned)
        .unwrap_or_default();
    let event: serde_json::Value = serde_json::from_str(&ended).expect("a session_ended event");
    let data: serde_json::Value =
        serde_json::from_str(event["data"].as_str().unwrap_or("{}")).expect("data");
    assert_eq!(data["recording_sha256"], digest.as_str(), "{data}");
}

/// `ssh -tt gw bash -i` is an interactive shell started by exec: its typed commands are in
/// the command index and the recording like a login shell's (issue 18's first case).
#[test]
fn a_shell_started_by_exec_with_a_terminal_has_its_commands_indexed() {
    let w = World::start();
    let code = w.grant("db-1", None);
    let (mut child, out, mut send) = w.typing(&code, &["bash --norc -i"]);
    send("export PS1='bg-exec# '\r");
    wait_for(&out, &format!("{PROMPT_READY}bg-exec# "), 1, "the new prompt");
    send("echo exec-$((6*7))\r");
    wait_for(&out, "exec-42", 1, "the command ran");
    send("exit\r");
    let status = child.wait().expect("ssh exits");
    assert!(status.success(), "{:?}", out.lock().map(|b| text(&b)));
    w.wait_status(&code, "closed", 10);
    let rec = w.recording_of(&code, 10);
    let cmds = w.commands(&code);
    // (`exit` itself may race the end of the channel: its echo and the Enter can cross.)
    for typed in ["export PS1='bg-exec# '", "echo exec-$((6*7))"] {
        assert!(
            cmds.iter().any(|c| c == typed),
            "{typed} is indexed: {cmds:?}\n{}",
            std::fs::read_to_string(&rec).unwrap_or_default()
        );
    }
    let cast = cast::parse(&std::fs::read_to_string(&rec).expect("recording")).expect("parses");
    assert!(cast.events.iter().any(|e| e.code == "m" && e.data == "echo exec-$((6*7))"));
}

/// `ssh gw bash < script.sh`: the lines the shell reads on stdin are indexed as commands
/// (marked as from stdin), in the database and as markers in the recording.
#[test]
fn commands_fed_to_a_shell_on_stdin_are_indexed() {
    let w = World::start();
    let code = w.grant("db-1", None);
    let script = w.dir.path().join("script.sh");
    std::fs::write(&script, "echo fed-$((6*7))\nuname -s\n").expect("script");
    let out = w
        .ssh_cmd("alice", &code, &["bash"])
        .stdin(std::fs::File::open(&script).expect("script"))
        .output()
        .expect("ssh runs");
    assert!(text(&out.stdout).contains("fed-42"), "{}", text(&out.stderr));
    w.wait_status(&code, "closed", 10);
    let cmds = w.commands(&code);
    for fed in ["echo fed-$((6*7))", "uname -s"] {
        assert!(cmds.iter().any(|c| c == fed), "{fed} is indexed: {cmds:?}");
    }
    let sources: Vec<serde_json::Value> = w
        .session_events(&code)
        .into_iter()
        .filter(|e| e.kind == SessionEventKind::Command)
        .map(|e| e.detail)
        .collect();
    assert!(sources.iter().all(|d| d["source"] == "stdin"), "{sources:?}");
    let rec = w.recording_of(&code, 10);
    let cast = cast::parse(&std::fs::read_to_string(&rec).expect("recording")).expect("parses");
    assert!(cast.events.iter().any(|e| e.code == "m" && e.data == "uname -s"));
}

#[test]
fn an_interactive_shell_records_commands_as_the_user_saw_them() {
    let w = World::start();
    let code = w.grant("db-1", None);
    let (mut child, out, mut send) = w.typing(&code, &[]);
    // Wait for each prompt as a person does (see `World::typing`): the echo of the `export`
    // line alone is not the new prompt.
    send("export PS1='bg-test# '\r");
    wait_for(&out, &format!("{PROMPT_READY}bg-test# "), 1, "the new prompt");
    // Tab completion: `ech` + TAB becomes `echo ` on the screen.
    send("ech");
    send("\t");
    send("tab-$((6*7))\r");
    wait_for(&out, "tab-42", 1, "the completed command ran");
    // History recall: Up arrow brings the last command back.
    send("\x1b[A");
    send("\r");
    wait_for(&out, "tab-42", 2, "the recalled command ran");
    send("exit\r");
    let status = child.wait().expect("ssh exits");
    assert!(status.success(), "{:?}", out.lock().map(|b| text(&b)));

    w.wait_status(&code, "closed", 10);
    let rec = w.recording_of(&code, 10);
    let cmds = w.commands(&code);
    assert_eq!(
        cmds,
        ["export PS1='bg-test# '", "echo tab-$((6*7))", "echo tab-$((6*7))", "exit"],
        "{cmds:?}\n{}",
        std::fs::read_to_string(&rec).unwrap_or_default()
    );
    let cast = cast::parse(&std::fs::read_to_string(&rec).expect("recording")).expect("parses");
    assert!(cast.events.iter().any(|e| e.code == "i"), "keystrokes are recorded");
    // The unmodified asciinema player reads it.
    let played = std::process::Command::new("asciinema")
        .arg("cat")
        .arg(&rec)
        .output()
        .expect("asciinema (scripts/test installs it)");
    assert!(played.status.success(), "{}", text(&played.stderr));
    assert!(text(&played.stdout).contains("tab-42"), "{}", text(&played.stdout));
    assert!(cast.events.iter().any(|e| e.code == "m" && e.data == "echo tab-$((6*7))"));
    assert_eq!(cast.header.term.as_deref(), Some("xterm"));
}

#[test]
fn refusals_say_why_in_one_line() {
    let w = World::start();
    // An unknown key is refused by SSH itself.
    let code = w.grant("db-1", None);
    let out = w.ssh_cmd("mallory", &code, &["true"]).stdin(Stdio::null()).output().expect("ssh");
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("Permission denied (publickey)"), "{}", text(&out.stderr));
    // ...and the operator sees why, with the key's fingerprint and the (escaped) user name.
    let mallory = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(w.dir.path().join("mallory.pub"))
        .output()
        .expect("ssh-keygen -l");
    let fingerprint = text(&mallory.stdout).split_whitespace().nth(1).unwrap_or("?").to_owned();
    eventually(10, "the unknown key is logged", || {
        let log = w.server.log();
        log.contains("no configured user has the key") && log.contains(&fingerprint)
    });

    // No such grant, and a malformed user name: the hints name this gateway's public address
    // (from config, not a hard-coded port) and how to request.
    let out = w.ssh("bg-000000", &["true"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "breakglass: no grant bg-000000 for alice; check the code in the approval message, or request access with /breakglass request HOST in chat or `breakglass request HOST`"
    );
    let out = w.ssh("root", &["true"]);
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!(
            "breakglass: `root` is not a grant: connect as the code from the approval (ssh -p {port} bg-7f3a2c@127.0.0.1) or as LOGIN@HOST (ssh -p {port} postgres@db-1@127.0.0.1)",
            port = w.gw_port
        )
    );

    // A pending grant.
    let (s, v) = w.api(
        "alice",
        "POST",
        "/api/v1/requests",
        Some(serde_json::json!({"host": "db-1", "login": w.login, "reason": "x"})),
    );
    assert_eq!(s, 201, "{v}");
    let pending = v["code"].as_str().expect("code").to_owned();
    let out = w.ssh(&pending, &["true"]);
    assert!(
        text(&out.stderr).contains(&format!("{pending} is still waiting for approvals")),
        "{}",
        text(&out.stderr)
    );

    // The login@host form picks alice's approved grant; then the grant is used up.
    let out = w.ssh(&format!("{}@db-1", w.login), &["echo", "via-host-form"]);
    assert_eq!(text(&out.stdout).trim(), "via-host-form", "{}", text(&out.stderr));
    let out = w.ssh(&code, &["true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("{code} was already used")),
        "{}",
        text(&out.stderr)
    );
    let out = w.ssh(&format!("{}@db-1", w.login), &["true"]);
    assert!(
        text(&out.stderr).contains("no approved grant for alice on db-1"),
        "{}",
        text(&out.stderr)
    );

    // Someone else's grant reads exactly like no grant at all.
    let alices = w.grant("db-1", None);
    let out = w.ssh_cmd("dave", &alices, &["true"]).stdin(Stdio::null()).output().expect("ssh");
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!(
            "breakglass: no grant {alices} for dave; check the code in the approval message, or request access with /breakglass request HOST in chat or `breakglass request HOST`"
        )
    );

    // Revoked before use.
    let (s, _) = w.api("bob", "POST", &format!("/api/v1/requests/{alices}/revoke"), None);
    assert_eq!(s, 200);
    let out = w.ssh(&alices, &["true"]);
    assert!(
        text(&out.stderr).contains(&format!(
            "{alices} was revoked by bob; request again with `breakglass request db-1`"
        )),
        "{}",
        text(&out.stderr)
    );
    // Edited back to `approved` in the database, its signatures still open nothing.
    assert_eq!(
        w.sql(&format!("UPDATE requests SET status = 'approved' WHERE code = '{alices}'")),
        Ok(1)
    );
    let out = w.ssh(&alices, &["true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("{alices} was already used")),
        "{}",
        text(&out.stderr)
    );

    // Refusals are audited, each with its code (mallory's key was refused by SSH itself).
    let export = w.cli(&["audit", "export"]);
    let codes: Vec<String> = export
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "session_refused")
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e["data"].as_str()?).ok())
        .filter_map(|d| d["code"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(codes, REFUSALS, "{}", export.stdout);
}

/// The refusal codes `refusals_say_why_in_one_line` meets, in order.
const REFUSALS: [&str; 8] = [
    "no_grant",
    "bad_user_name",
    "pending",
    "already_used",
    "no_grant",
    "no_grant",
    "revoked",
    "already_used",
];

#[test]
fn forged_or_tampered_grants_grant_nothing() {
    let w = World::start();
    // A request approved properly, then one field changed in the database.
    let code = w.grant("db-1", None);
    assert_eq!(
        w.sql(&format!("UPDATE requests SET login = 'nobody' WHERE code = '{code}'")),
        Ok(1)
    );
    let out = w.ssh(&code, &["true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("does not carry enough valid approval signatures (0 of 2)"),
        "{}",
        text(&out.stderr)
    );

    // A row written straight into the database as `approved`, with no signatures at all.
    let pending = w
        .api(
            "alice",
            "POST",
            "/api/v1/requests",
            Some(serde_json::json!({"host": "db-1", "login": w.login, "reason": "x"})),
        )
        .1;
    let forged = pending["code"].as_str().expect("code").to_owned();
    assert_eq!(
        w.sql(&format!("UPDATE requests SET status = 'approved' WHERE code = '{forged}'")),
        Ok(1)
    );
    let out = w.ssh(&forged, &["true"]);
    assert!(text(&out.stderr).contains("(0 of 2)"), "{}", text(&out.stderr));
    // sshd logs the key id of every certificate it accepts (see the exec test).
    for c in [&code, &forged] {
        assert!(
            !w.sshd.log().contains(&format!("breakglass:{c}")),
            "the target was never reached with {c}:\n{}",
            w.sshd.log()
        );
    }
}

#[test]
fn an_unreachable_target_or_a_wrong_host_key_does_not_use_the_grant() {
    let w = World::start();
    let code = w.grant("dead-1", None);
    let started = Instant::now();
    let out = w.ssh(&code, &["true"]);
    assert!(started.elapsed() < Duration::from_secs(10), "a clear error within 10 s");
    assert!(
        text(&out.stderr).contains("cannot connect to dead-1")
            && text(&out.stderr).contains("was not used"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(w.status(&code)["status"], "approved", "the grant is still usable");

    let w = World::with(WorldOptions { wrong_host_key: true, ..WorldOptions::default() });
    let code = w.grant("db-1", None);
    let out = w.ssh(&code, &["true"]);
    assert!(text(&out.stderr).contains("does not match the key pinned"), "{}", text(&out.stderr));
    assert_eq!(w.status(&code)["status"], "approved");
}

#[test]
fn forwarding_is_refused_and_recorded() {
    let w = World::start();
    // Local (-W), remote (-R) and agent (-A) forwarding, none of which the scope allows.
    let code = w.grant("db-1", None);
    let target = format!("127.0.0.1:{}", w.sshd.port);
    let out = w.ssh(&code, &["-W", &target]);
    assert_ne!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(
        err.contains("administratively prohibited") || err.contains("stdio forwarding failed"),
        "{err}"
    );
    let kinds = |code: &str| -> Vec<String> {
        w.session_events(code)
            .iter()
            .filter(|e| e.kind == SessionEventKind::ForwardRefused)
            .map(|e| e.detail["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    eventually(10, "the refused local forward is a session event", || {
        kinds(&code).contains(&"local".to_owned())
    });

    let agent = Agent::start(w.dir.path());
    let code = w.grant("db-1", None);
    let out = w
        .ssh_cmd("alice", &code, &["-A", "ssh-add -L; echo agent-exit=$?"])
        .env("SSH_AUTH_SOCK", &agent.sock)
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs");
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(!all.contains(&agent.public), "the agent must not be reachable: {all}");
    assert!(all.contains("agent-exit=2"), "ssh-add finds no agent on the target: {all}");
    assert!(
        text(&out.stderr).contains(
            "breakglass: agent forwarding (ssh -A) is not allowed for scope prod (allow_agent_forwarding)"
        ),
        "{all}"
    );
    eventually(10, "the refused agent forward is a session event", || {
        kinds(&code).contains(&"agent".to_owned())
    });
    assert!(!w.session_events(&code).iter().any(|e| e.kind == SessionEventKind::Forward));

    let code = w.grant("db-1", None);
    let remote = format!("{}:127.0.0.1:{}", free_port(), w.sshd.port);
    let out = w.ssh(&code, &["-o", "ExitOnForwardFailure=yes", "-R", &remote, "echo ran"]);
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(all.contains("remote port forwarding failed") && !all.contains("ran"), "{all}");
    eventually(10, "the refused remote forward is a session event", || {
        kinds(&code).contains(&"remote".to_owned())
    });

    let code = w.grant("db-1", None);
    let socket = format!("{}:127.0.0.1:{}", w.dir.path().join("fwd.sock").display(), w.sshd.port);
    let out = w.ssh(&code, &["-o", "ExitOnForwardFailure=yes", "-R", &socket, "echo ran"]);
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(all.contains("remote port forwarding failed") && !all.contains("ran"), "{all}");
    eventually(10, "the refused socket forward is a session event", || {
        kinds(&code).contains(&"streamlocal".to_owned())
    });
    assert!(!w.session_events(&code).iter().any(|e| e.kind == SessionEventKind::Forward));
}

#[test]
fn port_forwarding_works_when_the_scope_allows_it_and_is_recorded() {
    let w = World::with(WorldOptions {
        scope_extra: "allow_port_forwarding = true\n".into(),
        ..WorldOptions::default()
    });
    let code = w.grant("db-1", None);
    // `ssh -W` to the target's own sshd, through the gateway and the target: its banner comes
    // back, then it hangs up on our nonsense.
    let target = format!("127.0.0.1:{}", w.sshd.port);
    let mut child = w
        .ssh_cmd("alice", &code, &["-W", &target])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh starts");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(b"not-ssh\r\n").expect("write");
    let out = child.wait_with_output().expect("ssh exits");
    drop(input);
    assert!(
        text(&out.stdout).starts_with("SSH-2.0-OpenSSH"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let forwards = forward_events(&w, &code, 1);
    assert_eq!(forwards[0]["port"], w.sshd.port, "{forwards:?}");
    let events = w.session_events(&code);
    assert!(!events.iter().any(|e| e.kind == SessionEventKind::ForwardRefused), "{events:?}");
    // The tunnelled bytes are not in the recording.
    w.wait_status(&code, "closed", 10);
    let rec = w.recording_of(&code, 10);
    let cast = std::fs::read_to_string(&rec).expect("recording");
    assert!(!cast.contains("not-ssh") && !cast.contains("SSH-2.0-OpenSSH"), "{cast}");
}

/// Waits up to `secs` for `done`, or panics saying `what` did not happen.
fn eventually(secs: u64, what: &str, done: impl FnMut() -> bool) {
    assert!(
        test_util::eventually(Duration::from_secs(secs), Duration::from_millis(50), done),
        "{what}"
    );
}

/// The details of `code`'s session events that `keep` keeps, once at least `n` are there.
fn events_of(
    w: &World,
    code: &str,
    n: usize,
    keep: impl Fn(&shared::ports::SessionEvent) -> bool,
) -> Vec<serde_json::Value> {
    let found = || -> Vec<serde_json::Value> {
        w.session_events(code).into_iter().filter(&keep).map(|e| e.detail).collect()
    };
    test_util::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || Some(found()).filter(|f| f.len() >= n),
        || format!("{n} session events expected, got {:?}", found()),
    )
}

/// The `forward` session events of `code`, once at least `n` are there.
fn forward_events(w: &World, code: &str, n: usize) -> Vec<serde_json::Value> {
    events_of(w, code, n, |e| e.kind == SessionEventKind::Forward)
}

#[test]
fn remote_forwarding_and_agent_forwarding_work_when_the_scope_allows_them_and_are_recorded() {
    let w = World::with(WorldOptions {
        scope_extra: "allow_port_forwarding = true\nallow_agent_forwarding = true\n".into(),
        ..WorldOptions::default()
    });
    let agent = Agent::start(w.dir.path());
    // `ssh -R`: the target listens on `remote_port`; a connection to it comes back through
    // the gateway to a listener on the user's side, which greets it.
    let user_side = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let user_port = user_side.local_addr().expect("addr").port();
    let greeter = std::thread::spawn(move || {
        let (mut conn, _) = user_side.accept().expect("a forwarded connection arrives");
        let mut first = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&conn), &mut first)
            .expect("the target speaks first");
        conn.write_all(b"greetings-from-the-user-side\n").expect("greet");
        first
    });
    let remote_port = free_port();
    let code = w.grant("db-1", None);
    let command = format!(
        "ssh-add -L; bash -c 'exec 3<>/dev/tcp/127.0.0.1/{remote_port}; echo hello-from-the-target >&3; cat <&3'; echo done=$?"
    );
    let forward = format!("{remote_port}:127.0.0.1:{user_port}");
    let out = w
        .ssh_cmd(
            "alice",
            &code,
            &["-A", "-o", "ExitOnForwardFailure=yes", "-R", &forward, &command],
        )
        .env("SSH_AUTH_SOCK", &agent.sock)
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs");
    let stdout = text(&out.stdout);
    let all = stdout.clone() + &text(&out.stderr);
    assert!(stdout.contains(&agent.public), "the target reaches the user's agent: {all}");
    assert!(stdout.contains("greetings-from-the-user-side"), "{all}");
    assert!(stdout.contains("done=0"), "{all}");
    assert_eq!(greeter.join().expect("greeter"), "hello-from-the-target\n");

    // Set up (agent, remote port) and used (the agent once, one connection): four events.
    let events = forward_events(&w, &code, 4);
    let has = |kind: &str, set_up: bool| {
        events.iter().any(|e| e["kind"] == kind && e["set_up"].as_bool().unwrap_or(false) == set_up)
    };
    assert!(has("agent", true) && has("agent", false), "{events:?}");
    assert!(has("remote", true) && has("remote", false), "{events:?}");
    assert!(events.iter().any(|e| e["kind"] == "remote" && e["port"] == remote_port), "{events:?}");
    w.wait_status(&code, "closed", 10);
    let rec = w.recording_of(&code, 10);
    let cast = cast::parse(&std::fs::read_to_string(&rec).expect("recording")).expect("parses");
    let markers: Vec<&str> =
        cast.events.iter().filter(|e| e.code == "m").map(|e| e.data.as_str()).collect();
    assert!(markers.contains(&"agent forwarding used on the target"), "{markers:?}");
    // None of the forwarding markers passes for a command (`breakglass replay --commands`).
    assert!(markers.iter().all(|m| !format::replay::is_command(m)), "{markers:?}");
    assert!(
        markers.iter().any(|m| m.starts_with("remote forwarding: connection to")),
        "{markers:?}"
    );
    // The forwarded connection's bytes are in the recording both ways, as raw `d` events.
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let from_target = cast.binary(false).expect("d events");
    let to_target = cast.binary(true).expect("d events");
    assert!(contains(&from_target, b"hello-from-the-target\n"), "target's bytes recorded");
    assert!(contains(&to_target, b"greetings-from-the-user-side\n"), "user's bytes recorded");
}

/// An X11 client for the target: reads the session's cookie with xauth, connects to
/// `$DISPLAY` with an X11 connection setup, and prints the first line the X server sends.
const X11_CLIENT: &str = r#"
import os, socket, struct, subprocess
entry = subprocess.check_output(["xauth", "list"]).split()
name, cookie = entry[1], bytes.fromhex(entry[2].decode())
display = int(os.environ["DISPLAY"].split(":")[1].split(".")[0])
pad = lambda b: b + b"\0" * (-len(b) % 4)
s = socket.create_connection(("127.0.0.1", 6000 + display))
s.sendall(b"l\0" + struct.pack("<HHHH", 11, 0, len(name), len(cookie)) + b"\0\0" + pad(name) + pad(cookie))
print(s.makefile().readline().strip())
"#;

#[test]
fn x11_forwarding_works_when_the_scope_allows_it_and_is_recorded() {
    let w = World::with(WorldOptions {
        scope_extra: "allow_x11_forwarding = true\n".into(),
        ..WorldOptions::default()
    });
    // The user's X server: a listener on display :N that checks the connection setup the
    // user's ssh passes on (byte order, protocol 11) and greets the client.
    let (x_server, display) = (6300..6900)
        .find_map(|n| std::net::TcpListener::bind(("127.0.0.1", 6000 + n)).ok().map(|l| (l, n)))
        .expect("a free X display port");
    let server = std::thread::spawn(move || {
        use std::io::Read as _;
        let (mut conn, _) = x_server.accept().expect("an X11 connection arrives");
        let mut setup = [0u8; 12];
        conn.read_exact(&mut setup).expect("setup");
        assert_eq!((setup[0], u16::from_le_bytes([setup[2], setup[3]])), (b'l', 11));
        conn.write_all(b"hello-from-the-x-server\n").expect("greet");
    });
    let script = w.dir.path().join("x11_client.py");
    std::fs::write(&script, X11_CLIENT).expect("script");
    let code = w.grant("db-1", None);
    let command =
        format!("XAUTHORITY={}/Xauthority python3 {}", w.sshd.dir.display(), script.display());
    let out = w
        .ssh_cmd("alice", &code, &["-Y", &command])
        .env("DISPLAY", format!("127.0.0.1:{display}"))
        .env("XAUTHORITY", w.dir.path().join("client.Xauthority"))
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs");
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(text(&out.stdout).contains("hello-from-the-x-server"), "{all}\n{}", w.sshd.log());
    server.join().expect("the X server saw a valid setup");
    let events = forward_events(&w, &code, 2);
    assert!(events.iter().any(|e| e["kind"] == "x11" && e["set_up"] == true), "{events:?}");
    assert!(events.iter().any(|e| e["kind"] == "x11" && e["originator"].is_string()), "{events:?}");
    w.wait_status(&code, "closed", 10);
    let rec = w.recording_of(&code, 10);
    let cast = cast::parse(&std::fs::read_to_string(&rec).expect("recording")).expect("parses");
    let markers: Vec<&str> =
        cast.events.iter().filter(|e| e.code == "m").map(|e| e.data.as_str()).collect();
    assert!(
        markers.iter().any(|m| m.starts_with("X11 forwarding: connection from")),
        "{markers:?}"
    );
    assert!(markers.iter().all(|m| !format::replay::is_command(m)), "{markers:?}");
    // The X11 connection's own bytes (its setup, with the cookie) stay out of the recording.
    let raw = std::fs::read_to_string(&rec).expect("recording");
    assert!(!raw.contains("MIT-MAGIC-COOKIE-1"), "{raw}");
    // Refused where the scope does not allow it (the default scope of a fresh world).
    let w2 = World::start();
    let code = w2.grant("db-1", None);
    let out = w2
        .ssh_cmd("alice", &code, &["-Y", "echo DISPLAY=[$DISPLAY]"])
        .env("DISPLAY", format!("127.0.0.1:{display}"))
        .env("XAUTHORITY", w.dir.path().join("client.Xauthority"))
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs");
    assert!(text(&out.stdout).contains("DISPLAY=[]"), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("X11 forwarding is not allowed for scope"),
        "{}",
        text(&out.stderr)
    );
    eventually(10, "the refused X11 request is a session event", || {
        w2.session_events(&code)
            .iter()
            .any(|e| e.kind == SessionEventKind::ForwardRefused && e.detail["kind"] == "x11")
    });
}

#[test]
fn the_window_end_cuts_a_live_session_with_a_message() {
    let w = World::with(WorldOptions {
        scope_extra: "max_duration = \"3s\"\ndefault_duration = \"3s\"\n".into(),
        ..WorldOptions::default()
    });
    let code = w.grant("db-1", Some("3s"));
    let started = Instant::now();
    let out = w.ssh(&code, &["-tt", "sleep 30"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "cut long before the 30 s sleep: {took:?}");
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(
        all.contains("breakglass: break-glass window for db-1 ended at ")
            && all.contains(" UTC; session closed"),
        "{all}"
    );
    w.wait_status(&code, "closed", 10);
    let rec = w.recording_of(&code, 10);
    let cast = cast::parse(&std::fs::read_to_string(&rec).expect("recording")).expect("parses");
    assert!(cast.events.iter().any(|e| e.data == "session ended: expired"), "{:?}", cast.events);
}

#[test]
fn a_revoke_cuts_the_live_session() {
    let w = World::start();
    let code = w.grant("db-1", None);
    // Both sessions printed their first line: they are up, not just logged in, so the revoke
    // message has a channel to go to.
    let (child, printed) = w.printing(&code, "revoke-me");
    // Another live session, whose grant stays: the revoke must not touch it.
    let other = w.grant("db-1", None);
    let (mut bystander, _) = w.printing(&other, "bystander");
    let (s, v) = w.api("bob", "POST", &format!("/api/v1/requests/{code}/revoke"), None);
    assert_eq!(s, 200, "{v}");
    let revoked = Instant::now();
    let out = child.wait_with_output().expect("ssh exits");
    let took = revoked.elapsed();
    eprintln!("revoke to disconnect: {took:?}");
    assert!(took < Duration::from_secs(3), "cut promptly after the revoke: {took:?}");
    let all = text(&printed.lock().expect("output").clone()) + &text(&out.stderr);
    assert!(
        all.contains(&format!("the grant {code} for db-1 was revoked by bob; session closed")),
        "{all}"
    );
    let rec = w.recording_of(&code, 10);
    assert_eq!(w.cli(&["recording", "verify", rec.to_str().expect("utf-8")]).code, 0);
    let events = w.cli(&["audit", "export"]).stdout;
    let ended = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["kind"] == "session_ended")
        .and_then(|e| serde_json::from_str::<serde_json::Value>(e["data"].as_str()?).ok())
        .expect("a session_ended event");
    assert_eq!(ended["end_reason"], "revoked", "{ended}");
    assert_eq!(ended["revoked_by"], "bob", "{ended}");
    assert_eq!(w.status(&code)["status"], "revoked");
    assert!(bystander.try_wait().expect("wait").is_none(), "the other session lives on");
    assert_eq!(w.status(&other)["status"], "active");
    let _ = bystander.kill();
    let _ = bystander.wait();
}

/// In `breakglass up` the bot and the gateway share a process: a revoke wakes the gateway's
/// revocation watcher at once. With the database poll set to an hour, only that wake can cut.
#[test]
fn a_revoke_in_the_same_process_cuts_without_waiting_for_the_poll() {
    let w = World::with(WorldOptions {
        gateway_extra: "revocation_poll = \"1h\"\n".into(),
        ..WorldOptions::default()
    });
    let code = w.grant("db-1", None);
    let (mut child, printed) = w.printing(&code, "wake-me");
    let (s, v) = w.api("bob", "POST", &format!("/api/v1/requests/{code}/revoke"), None);
    assert_eq!(s, 200, "{v}");
    let ended = test_util::eventually(Duration::from_secs(30), Duration::from_millis(20), || {
        child.try_wait().expect("wait").is_some()
    });
    if !ended {
        let _ = child.kill();
        panic!("the session outlived the revoke: the watcher was not woken\n{}", w.server.log());
    }
    let out = child.wait_with_output().expect("ssh output");
    let all = text(&printed.lock().expect("output").clone()) + &text(&out.stderr);
    assert!(
        all.contains(&format!("the grant {code} for db-1 was revoked by bob; session closed")),
        "{all}"
    );
}

#[test]
fn a_recording_cut_by_a_crash_still_parses() {
    let mut w = World::start();
    let code = w.grant("db-1", None);
    let mut child = w
        .ssh_cmd(
            "alice",
            &code,
            &["-tt", "for i in $(seq 1 200); do echo line-$i; sleep 0.01; done; sleep 30"],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh");
    let out = collect(&mut child);
    wait_for(&out, "line-200", 1, "output streamed");
    std::thread::sleep(Duration::from_millis(300));
    w.server.kill9();
    let _ = child.kill();
    let rec = w
        .recordings()
        .into_iter()
        .find(|p| p.to_string_lossy().contains(&code))
        .expect("a recording file");
    assert!(!recorder_sig(&rec).exists(), "no signature: the gateway died before the end");
    let bytes = std::fs::read(&rec).expect("recording");
    let cast = cast::parse_bytes(&bytes).expect("parses up to the last complete line");
    let shown = cast.output_text();
    assert!(
        shown.contains("line-200"),
        "output written as it happened (flushed within 100 ms): {shown:?}"
    );

    // The gateway comes back: it closes and signs the cut recording and ends the session.
    w.restart();
    w.wait_status(&code, "closed", 15);
    let v = w.cli(&["recording", "verify", rec.to_str().expect("utf-8")]);
    assert_eq!(v.code, 0, "{}", v.all());
    let played =
        std::process::Command::new("asciinema").arg("cat").arg(&rec).output().expect("asciinema");
    assert!(played.status.success(), "the recovered recording plays: {}", text(&played.stderr));
    assert!(std::fs::read_to_string(&rec).expect("read").contains("gateway_crashed (recovered)"));
}

#[test]
fn on_postgres_a_lost_database_refuses_new_sessions() {
    let w = World::with(WorldOptions { postgres: true, ..WorldOptions::default() });
    let code = w.grant("db-1", None);
    let out = w.ssh(&code, &["echo", "on-postgres"]);
    assert_eq!(text(&out.stdout).trim(), "on-postgres", "{}", text(&out.stderr));
    w.wait_status(&code, "closed", 10);

    let second = w.grant("db-1", None);
    w.lose_database();
    let out = w.ssh(&second, &["echo", "should-not-run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stdout).contains("should-not-run"));
    assert!(
        text(&out.stderr).contains(
            "cannot verify grants right now (database unavailable); no access was granted"
        ),
        "{}",
        text(&out.stderr)
    );
}

fn sha256_file(p: &std::path::Path) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(Sha256::digest(std::fs::read(p).expect("file")))
}

/// Waits for the transfer events of grant `code` and returns their details.
fn transfers(w: &World, code: &str, files: usize) -> Vec<serde_json::Value> {
    events_of(w, code, files, |e| {
        e.kind == SessionEventKind::Transfer && e.detail["direction"].is_string()
    })
}

#[test]
fn sftp_and_scp_pass_through_and_are_recorded_as_transfers() {
    let w = World::start();
    let d = w.dir.path();
    let local = d.join("upload.bin");
    let payload = test_util::Rng::new(test_util::Rng::SEED).bytes(300_000);
    std::fs::write(&local, &payload).expect("payload");
    let digest = sha256_file(&local);
    let remote = d.join("remote-copy.bin");
    let back = d.join("downloaded.bin");

    // sftp: upload then download, in one session.
    let code = w.grant("db-1", None);
    let batch = d.join("batch");
    std::fs::write(
        &batch,
        format!(
            "put {} {}\nget {} {}\n",
            local.display(),
            remote.display(),
            remote.display(),
            back.display()
        ),
    )
    .expect("batch");
    let out = w.sftp(&code, &batch);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(
        std::fs::read(&back).expect("downloaded"),
        payload,
        "sftp carried the bytes unchanged"
    );
    let t = transfers(&w, &code, 2);
    // Summarising is on top of recording: the file's bytes are in the recording both ways
    // (a stretch from inside the first SFTP write and the first read answer).
    w.wait_status(&code, "closed", 10);
    let cast = cast::parse(&std::fs::read_to_string(w.recording_of(&code, 10)).expect("recording"))
        .expect("parses");
    let stretch = &payload[100..612];
    let contains = |hay: &[u8]| hay.windows(stretch.len()).any(|w| w == stretch);
    assert!(contains(&cast.binary(true).expect("d events")), "uploaded bytes recorded");
    assert!(contains(&cast.binary(false).expect("d events")), "downloaded bytes recorded");
    let up = t.iter().find(|e| e["direction"] == "upload").expect("upload event");
    let down = t.iter().find(|e| e["direction"] == "download").expect("download event");
    for e in [up, down] {
        assert_eq!(e["path"], remote.display().to_string());
        assert_eq!(e["bytes"], 300_000);
        assert_eq!(e["sha256"], digest.as_str());
        assert_eq!(e["complete"], true);
    }

    // scp (SFTP protocol, the default since OpenSSH 9.0) and legacy scp (-O).
    for (flag, name) in [("-s", "scp-sftp.bin"), ("-O", "scp-legacy.bin")] {
        let code = w.grant("db-1", None);
        let target = d.join(name);
        let out = Command::new("scp")
            .args(w.ssh_opts("alice"))
            .args(["-P", &w.gw_port.to_string(), flag])
            .arg(&local)
            .arg(format!("{code}@127.0.0.1:{}", target.display()))
            .output()
            .expect("scp runs");
        assert!(out.status.success(), "scp {flag}: {}", text(&out.stderr));
        assert_eq!(sha256_file(&target), digest);
        let t = transfers(&w, &code, 1);
        assert_eq!(t[0]["direction"], "upload", "{t:?}");
        assert_eq!(t[0]["sha256"], digest.as_str(), "scp {flag}: {t:?}");
        assert_eq!(t[0]["bytes"], 300_000);
    }
}

#[test]
fn the_deadline_holds_and_the_recording_is_signed_with_the_database_gone() {
    let w = World::with(WorldOptions {
        postgres: true,
        scope_extra: "max_duration = \"3s\"\ndefault_duration = \"3s\"\n".into(),
        ..WorldOptions::default()
    });
    let code = w.grant("db-1", Some("3s"));
    let child = w
        .ssh_cmd("alice", &code, &["-tt", "sleep 30"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    w.wait_status(&code, "active", 10);
    w.lose_database();
    let out = child.wait_with_output().expect("ssh exits");
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(all.contains("break-glass window for db-1 ended at"), "{all}");
    let rec = w.recording_of(&code, 10);
    let v = w.cli(&["recording", "verify", rec.to_str().expect("utf-8")]);
    assert_eq!(v.code, 0, "{}", v.all());
    assert!(std::fs::read_to_string(&rec).expect("read").contains("session ended: expired"));
}

#[test]
fn a_client_that_never_logs_in_is_disconnected() {
    let w = World::with(WorldOptions {
        env: vec![("BREAKGLASS__GATEWAY__LOGIN_GRACE_TIME".into(), "1s".into())],
        ..WorldOptions::default()
    });
    use std::io::Read as _;
    // A TCP connection that sends nothing, not even the SSH banner.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", w.gw_port)).expect("connects");
    idle.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    loop {
        match idle.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("still open after {:?}: {e}", started.elapsed()),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(text(&got).starts_with("SSH-2.0-"), "the server spoke first: {:?}", text(&got));
    // A real login within the grace time still works, and its session outlives the grace.
    let code = w.grant("db-1", None);
    let out = w.ssh(&code, &["sleep 2; echo still-here"]);
    assert_eq!(text(&out.stdout).trim(), "still-here", "{}", text(&out.stderr));
}

#[test]
fn a_gateway_that_cannot_record_opens_nothing_and_keeps_the_grant() {
    let w = World::start();
    let code = w.grant("db-1", None);
    // The recordings directory replaced by a file: no recording can be created (even as root).
    let dir = w.data_dir().join("recordings");
    std::fs::remove_dir_all(&dir).expect("remove");
    std::fs::write(&dir, b"not a directory").expect("file");
    let out = w.ssh(&code, &["echo", "unrecorded"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(!text(&out.stdout).contains("unrecorded"));
    assert!(
        text(&out.stderr).contains(&format!(
            "the gateway cannot write the session recording; the grant {code} was not used"
        )),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(w.status(&code)["status"], "approved");
    // Once it can record again, the same grant opens its one session.
    std::fs::remove_file(&dir).expect("remove the file");
    std::fs::create_dir(&dir).expect("dir");
    let out = w.ssh(&code, &["echo", "recorded"]);
    assert_eq!(text(&out.stdout).trim(), "recorded", "{}", text(&out.stderr));
}

/// A recording that can no longer be written mid-session (here: the gateway reaches its limit
/// on the size of a file) cuts the session at once, with one line saying why, and the end is
/// stored as `recording_failed`: nothing goes on being relayed unrecorded.
#[test]
fn a_recording_that_fails_mid_session_cuts_the_session() {
    let mut w = World::start();
    // The same gateway again, under a 4 MiB limit on the size of any file it writes (the
    // database stays far below it) and with SIGXFSZ ignored: a write past the limit fails
    // (EFBIG) instead of killing the process.
    w.restart_under(&["sh", "-c", "trap '' XFSZ; ulimit -f 8192; exec \"$0\" \"$@\""]);
    let code = w.grant("db-1", None);
    // About 11 MB of output: the recording passes 4 MiB on the way.
    let started = Instant::now();
    let out = w.ssh(&code, &["head -c 8000000 /dev/zero | base64"]);
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("breakglass: the session recording failed; session closed"),
        "stderr: {stderr}\n{}",
        w.server.log()
    );
    assert!(
        out.stdout.len() < 8_000_000,
        "the output stopped at the cut: {} bytes",
        out.stdout.len()
    );
    w.wait_status(&code, "closed", 10);
    let events = w.cli(&["audit", "export"]).stdout;
    let ended = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["kind"] == "session_ended")
        .and_then(|e| serde_json::from_str::<serde_json::Value>(e["data"].as_str()?).ok())
        .expect("a session_ended event");
    assert_eq!(ended["end_reason"], "recording_failed", "{ended}");
}
