//! The CLI's manners, through the real binary: quiet on a closed pipe, help that shows each
//! option where it applies, messages that say what to do, the documented exit codes, and one
//! log format on standard error (text, or JSON lines with `--log-format json`).

use std::process::{Command, Stdio};

use e2e::{Server, bin, cli};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Runs `breakglass ARGS` with standard output a pipe nobody reads any more (as after
/// `| head -1` has taken its line).
fn into_closed_pipe(args: &[&str], env: &[(&str, &str)]) -> std::io::Result<e2e::Output> {
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let mut c = Command::new(bin());
    c.args(args).current_dir(e2e::root()).env_remove("BREAKGLASS_TOKEN");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.stdout(writer).stderr(Stdio::piped()).env("RUST_BACKTRACE", "1").output()?;
    Ok(e2e::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn config_with_alice(dir: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    // The config holds the token's SHA-256, taken with an independent tool.
    let out =
        Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().and_then(
            |mut child| {
                use std::io::Write as _;
                if let Some(mut i) = child.stdin.take() {
                    i.write_all(b"tok-alice")?;
                }
                child.wait_with_output()
            },
        )?;
    let token_hash = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .ok_or("sha256sum")?
        .to_owned();
    let cfg = dir.join("breakglass.toml");
    std::fs::write(
        &cfg,
        format!(
            "[users.alice]\ngroups = [\"oncall\"]\napi_token_sha256 = \"{token_hash}\"\n\
             [users.bob]\ngroups = [\"dba\"]\n\
             [scopes.prod]\nhosts = {{ db-1 = \"127.0.0.1:22\" }}\nlogins = [\"postgres\"]\n\
             requester_groups = [\"oncall\"]\napprover_groups = [\"dba\"]\n"
        ),
    )?;
    Ok(cfg.to_str().ok_or("utf-8")?.to_owned())
}

/// `breakglass status … | head -1` and friends: no panic, no backtrace, exit 0.
#[test]
fn a_closed_pipe_ends_every_command_quietly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = config_with_alice(dir.path())?;
    let data = dir.path().join("data");
    let server = Server::start(
        dir.path(),
        &["--config", &cfg, "--data-dir", data.to_str().ok_or("utf-8")?],
        &[],
    );
    let alice = [("BREAKGLASS_TOKEN", "tok-alice"), ("BREAKGLASS_SERVER", server.url.as_str())];
    let made = cli(&["request", "db-1", "--json", "replica", "lag"], &alice);
    assert_eq!(made.code, 0, "{}", made.all());
    let code =
        serde_json::from_str::<Value>(&made.stdout)?["code"].as_str().ok_or("code")?.to_owned();
    for args in [
        &["status", code.as_str()][..],
        &["status", code.as_str(), "--json"],
        &["list"],
        &["whoami"],
        &["token", "--for", "ci"],
        &["config", "check", "--config", "deploy/breakglass.example.toml"],
        &["--help"],
        &["status", "--help"],
    ] {
        let out = into_closed_pipe(args, &alice)?;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert!(out.stderr.is_empty(), "{args:?} said on stderr: {}", out.stderr);
    }
    // The same through a shell, as people type it.
    let line = format!("{} status {code} | head -1", bin().display());
    let out = Command::new("sh")
        .args(["-c", &line])
        .envs(alice)
        .env("RUST_BACKTRACE", "1")
        .current_dir(e2e::root())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(&format!("{code} is pending")), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(server.stop(), Some(0));
    Ok(())
}

/// `--server`, `--token-file` and `--json` show where they do something; elsewhere they are
/// absent from the help, and refused when given before the subcommand.
#[test]
fn client_options_show_only_on_client_commands() {
    for sub in [
        "up",
        "bot",
        "gateway",
        "keygen",
        "token",
        "ca public-key",
        "recording verify",
        "discord register",
        "audit verify",
        "audit export",
        "config check",
    ] {
        let mut args: Vec<&str> = sub.split(' ').collect();
        args.push("--help");
        let out = cli(&args, &[]);
        assert_eq!(out.code, 0, "{sub}: {}", out.all());
        for flag in ["--server", "--token-file", "--json"] {
            assert!(!out.stdout.contains(flag), "`{sub} --help` shows {flag}:\n{}", out.stdout);
        }
    }
    for sub in
        ["request", "approve", "deny", "revoke", "list", "status", "whoami", "review", "search"]
    {
        let out = cli(&[sub, "--help"], &[]);
        for flag in ["--server", "--token-file", "--json"] {
            assert!(out.stdout.contains(flag), "`{sub} --help` lacks {flag}:\n{}", out.stdout);
        }
    }
    for sub in ["replay", "recording bundle"] {
        let mut args: Vec<&str> = sub.split(' ').collect();
        args.push("--help");
        let out = cli(&args, &[]);
        assert!(out.stdout.contains("--server") && out.stdout.contains("--token-file"), "{sub}");
        assert!(!out.stdout.contains("--json"), "`{sub}` prints no JSON:\n{}", out.stdout);
    }
    let top = cli(&["--help"], &[]);
    assert!(
        !top.stdout.contains("--server <URL>") && !top.stdout.contains("--json"),
        "{}",
        top.stdout
    );
    let misplaced = cli(&["--json", "keygen", "--out", "/nonexistent/x"], &[]);
    assert_eq!(misplaced.code, 2, "{}", misplaced.all());
    assert!(misplaced.stderr.contains("--json does not apply"), "{}", misplaced.stderr);
}

#[test]
fn help_texts_say_what_the_commands_do() {
    let up = cli(&["up", "--help"], &[]).stdout;
    assert!(up.contains("SSH gateway") && up.contains("--log-format"), "{up}");
    for sub in ["whoami", "ca", "recording", "discord", "audit", "config"] {
        let out = cli(&[sub, "--help"], &[]);
        assert!(out.stdout.contains("Example"), "`{sub} --help` has examples:\n{}", out.stdout);
    }
    let export = cli(&["audit", "export", "--help"], &[]).stdout;
    // Every record kind the README's command table names, and the rest.
    for kind in [
        "`audit`",
        "`session`",
        "`command`",
        "`exec`",
        "`transfer`",
        "`shell`",
        "`subsystem`",
        "`forward`",
        "`env`",
        "`signal`",
    ] {
        assert!(export.contains(kind), "audit export --help lacks {kind}:\n{export}");
    }
}

#[test]
fn no_token_says_how_to_give_one() -> TestResult {
    let out = cli(&["--server", "http://127.0.0.1:9", "status", "bg-7f3a2c"], &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("BREAKGLASS_TOKEN") && out.stderr.contains("--token-file"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("Authorization"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);

    let dir = tempfile::tempdir()?;
    let empty = dir.path().join("token");
    std::fs::write(&empty, "\n")?;
    let e = empty.to_str().ok_or("utf-8")?;
    let out = cli(&["whoami", "--token-file", e], &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains(&format!("{e} is empty")), "{}", out.stderr);
    Ok(())
}

#[test]
fn bad_input_exits_2_with_the_expected_form() {
    for args in [
        &["status", "bg-xyz"][..],
        &["approve", "BG-7F3A2C"],
        &["deny", "7f3a2c"],
        &["recording", "bundle", "bg-12345"],
    ] {
        let out = cli(args, &[("BREAKGLASS_TOKEN", "x")]);
        assert_eq!(out.code, 2, "{args:?}: {}", out.all());
        assert!(
            out.stderr.contains("`bg-` and six lowercase hex digits (like bg-7f3a2c)"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let out = cli(&["list", "--status", "pending,aproved"], &[("BREAKGLASS_TOKEN", "x")]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("`aproved` is not a status"), "{}", out.stderr);
    let out = cli(&["search", "rm", "--from", "01/11/2026"], &[("BREAKGLASS_TOKEN", "x")]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("YYYY-MM-DD"), "{}", out.stderr);
    let out = cli(&["up", "--log-format", "xml"], &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    let out = cli(&["token"], &[("BREAKGLASS_LOG_FORMAT", "xml")]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("BREAKGLASS_LOG_FORMAT"), "{}", out.stderr);
}

#[test]
fn local_files_follow_the_exit_code_table() -> TestResult {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("bg-7f3a2c-1795403640.cast");
    let m = missing.to_str().ok_or("utf-8")?;
    let key = dir.path().join("k");
    let made = cli(&["keygen", "--out", key.to_str().ok_or("utf-8")?], &[]);
    assert_eq!(made.code, 0, "{}", made.all());
    let out = cli(&["recording", "verify", m, "--key", &format!("{}.pub", key.display())], &[]);
    assert_eq!(out.code, 5, "a missing input file is a local problem: {}", out.all());
    assert!(out.stderr.contains(&format!("cannot read {m}")), "{}", out.stderr);

    // keygen into a folder that does not exist yet creates it, private, and says so.
    let nested = dir.path().join("new/keys/erin");
    let out = cli(&["keygen", "--out", nested.to_str().ok_or("utf-8")?], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    let folder = dir.path().join("new/keys");
    assert!(
        out.stdout.contains(&format!("created the folder {}", folder.display())),
        "{}",
        out.stdout
    );
    assert!(folder.join("erin.key").exists() && folder.join("erin.pub").exists());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&folder)?.permissions().mode() & 0o077, 0);
    Ok(())
}

/// `replay FILE --data-dir DIR` verifies with that data directory's recording key, like
/// `recording verify` and the other local commands.
#[test]
fn replay_takes_a_data_dir() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("elsewhere");
    let made = cli(&["keygen", "--out", data.join("keys/recording").to_str().ok_or("utf-8")?], &[]);
    assert_eq!(made.code, 0, "{}", made.all());
    let cast = dir.path().join("bg-7f3a2c-1795403640.cast");
    std::fs::write(
        &cast,
        "{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.5, \"o\", \"hi\"]\n",
    )?;
    let c = cast.to_str().ok_or("utf-8")?;
    let run = |extra: &[&str]| -> std::io::Result<String> {
        let out = Command::new(bin())
            .args(["replay", c, "--commands"])
            .args(extra)
            .current_dir(dir.path())
            .env_remove("BREAKGLASS_CONFIG")
            .output()?;
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let without = run(&[])?;
    assert!(without.contains("no recording key to check it against"), "{without}");
    let with = run(&["--data-dir", data.to_str().ok_or("utf-8")?])?;
    assert!(with.contains("WARNING: recording NOT VERIFIED"), "{with}");
    assert!(
        !with.contains("no recording key") && with.contains(".cast.sig"),
        "checked with the data directory's key, which finds no signature: {with}"
    );
    Ok(())
}

/// The server's log once `needle` is in it (the harness hands out the URL before it stores
/// the line that held it).
fn logged(server: &Server, needle: &str) -> String {
    let every = std::time::Duration::from_millis(20);
    test_util::poll(std::time::Duration::from_secs(10), every, || {
        Some(server.log()).filter(|log| log.contains(needle))
    })
    .unwrap_or_else(|| server.log())
}

fn assert_json_lines(log: &str, what: &str) {
    assert!(!log.trim().is_empty(), "{what}: nothing logged");
    for line in log.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{what}: not a JSON line ({e}): {line}\n{log}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{what}: {line}");
    }
}

/// `up --log-format json`: every line on stderr, the banner included, is one JSON object.
#[test]
fn json_logs_from_start_to_stop() -> TestResult {
    for (args, env) in [
        (&["--log-format", "json"][..], &[][..]),
        (&[][..], &[("BREAKGLASS_LOG_FORMAT", "json")][..]),
    ] {
        let dir = tempfile::tempdir()?;
        let server = Server::start(dir.path(), args, env);
        let ready = reqwest::blocking::get(format!("{}/readyz", server.url))?;
        assert_eq!(ready.status().as_u16(), 200);
        let log = logged(&server, "database ");
        assert!(log.contains("\"HTTP API on http://"), "{log}");
        assert!(log.contains("no config file"), "{log}");
        let stopped = Server::stop(server);
        assert_eq!(stopped, Some(0));
        assert_json_lines(&log, &format!("up {args:?} {env:?}"));
    }
    // A service's failure is a JSON line too; so is a client command's with the variable set.
    let out = cli(
        &[
            "up",
            "--log-format",
            "json",
            "--listen",
            "not-an-address",
            "--ssh-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(out.code, 5, "{}", out.all());
    assert_json_lines(&out.stderr, "up with a bad address");
    assert!(out.stderr.contains("\"level\":\"ERROR\""), "{}", out.stderr);
    let out = cli(&["status", "bg-7f3a2c"], &[("BREAKGLASS_LOG_FORMAT", "json")]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert_json_lines(&out.stderr, "status with no token");
    Ok(())
}

/// Text mode: the banner and the other log lines share one format (no bare `breakglass:`
/// line between tracing lines).
#[test]
fn text_logs_share_one_format() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[], &[]);
    let log = logged(&server, "HTTP API on");
    assert_eq!(server.stop(), Some(0));
    for line in log.lines() {
        assert!(
            line.contains(" INFO ") || line.contains(" WARN ") || line.contains(" ERROR "),
            "a line outside the log format: {line}\n{log}"
        );
    }
    assert!(log.contains(" INFO breakglass: HTTP API on http://"), "{log}");
    Ok(())
}
