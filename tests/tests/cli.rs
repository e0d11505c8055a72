//! The `breakglass` CLI as users meet it: help with examples, exit codes, the embedded-defaults
//! start, config errors, key generation, and offline approval with a personal key.

use std::os::unix::fs::PermissionsExt as _;

use e2e::{Server, cli};
use serde_json::Value;

#[test]
fn every_subcommand_has_help_with_examples() {
    for sub in [
        "up",
        "bot",
        "gateway",
        "ca public-key",
        "recording verify",
        "discord register",
        "keygen",
        "token",
        "request",
        "approve",
        "deny",
        "revoke",
        "list",
        "status",
        "audit verify",
        "audit export",
        "config check",
    ] {
        let mut args: Vec<&str> = sub.split(' ').collect();
        args.push("--help");
        let out = cli(&args, &[]);
        assert_eq!(out.code, 0, "{sub}: {}", out.all());
        assert!(
            out.stdout.contains("Example"),
            "`breakglass {sub} --help` shows examples:\n{}",
            out.stdout
        );
    }
    let top = cli(&["--help"], &[]);
    assert!(top.stdout.contains("Exit codes"), "{}", top.stdout);
}

#[test]
fn usage_errors_exit_2_and_unreachable_servers_exit_4() {
    let out = cli(&["request"], &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    let out = cli(
        &["--server", "http://127.0.0.1:9", "status", "bg-000000"],
        &[("BREAKGLASS_TOKEN", "x")],
    );
    assert_eq!(out.code, 4, "{}", out.all());
    assert!(
        out.stderr.contains("cannot reach the breakglass server at http://127.0.0.1:9"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "one clear line: {}", out.stderr);
}

#[test]
fn a_config_with_an_unknown_key_names_it_and_exits_5() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[scopes.prod]\nhosts = { db-1 = \"10.0.0.1:22\" }\nlogins = [\"root\"]\napprover_groups = [\"x\"]\nquorom = 2\n",
    )?;
    let p = path.to_str().ok_or("utf-8")?;
    let out = cli(&["config", "check", "--config", p], &[]);
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(
        out.stderr.contains("`scopes.prod.quorom`") && out.stderr.contains("unknown key"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("in {p}; did you mean `quorum`?")),
        "names the file as given and the key meant: {}",
        out.stderr
    );

    // `up` refuses to start on it too, with the same message.
    let out = cli(&["up", "--config", p, "--listen", "127.0.0.1:0"], &[]);
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(out.stderr.contains("scopes.prod.quorom"), "{}", out.stderr);

    // An environment override with an unknown key is an error as well.
    let out = cli(
        &["config", "check", "--config", "deploy/breakglass.example.toml"],
        &[("BREAKGLASS__SERVER__LISEN", "x")],
    );
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(out.stderr.contains("server.lisen"), "{}", out.stderr);

    let ok = cli(&["config", "check", "--config", "deploy/breakglass.example.toml"], &[]);
    assert_eq!(ok.code, 0, "{}", ok.all());
    assert!(ok.stdout.contains("2 scope(s)"), "{}", ok.stdout);
    Ok(())
}

#[test]
fn up_without_config_starts_and_says_what_to_configure() -> Result<(), Box<dyn std::error::Error>> {
    let cwd = tempfile::tempdir()?;
    let server = Server::start(cwd.path(), &[], &[]);
    let log = server.log();
    assert!(log.contains("no config file"), "{log}");
    assert!(log.contains("deploy/breakglass.example.toml"), "{log}");
    assert!(log.contains("every request will be refused"), "{log}");
    assert!(
        cwd.path().join("data/breakglass.db").exists(),
        "embedded default database under ./data"
    );
    let key = cwd.path().join("data/keys/approval.key");
    assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
    let health =
        cli(&["--server", &server.url, "status", "bg-000000"], &[("BREAKGLASS_TOKEN", "nobody")]);
    assert_eq!(
        health.code,
        3,
        "the server answers, and refuses an unknown token: {}",
        health.all()
    );
    assert!(health.stderr.contains("[invalid_token]"), "{}", health.stderr);
    assert_eq!(server.stop(), Some(0));
    Ok(())
}

#[test]
fn keygen_writes_a_private_key_once() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let base = dir.path().join("erin");
    let b = base.to_str().ok_or("utf-8")?;
    let out = cli(&["keygen", "--out", b], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    let public = std::fs::read_to_string(dir.path().join("erin.pub"))?;
    assert!(public.starts_with("ed25519:") && out.stdout.contains(public.trim()), "{}", out.stdout);
    assert_eq!(std::fs::metadata(dir.path().join("erin.key"))?.permissions().mode() & 0o777, 0o600);
    let again = cli(&["keygen", "--out", b], &[]);
    assert_eq!(again.code, 5, "{}", again.all());
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    Ok(())
}

/// A scope that accepts only personal signatures: the CLI fetches the request, shows the bound
/// fields, signs locally with `--key`, and only the signature travels.
#[test]
fn offline_approval_with_a_personal_key() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let key_base = d.join("erin");
    let out = cli(&["keygen", "--out", key_base.to_str().ok_or("utf-8")?], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    let erin_pub = std::fs::read_to_string(d.join("erin.pub"))?;
    let rogue = cli(&["keygen", "--out", d.join("rogue").to_str().ok_or("utf-8")?], &[]);
    assert_eq!(rogue.code, 0);

    let hash = |t: &str| {
        use sha2_hex::hex_sha256;
        hex_sha256(t)
    };
    let config = format!(
        r#"
[keys.pinned_approver_keys]
erin = ["{erin}"]
[users.alice]
groups = ["oncall"]
api_token_sha256 = "{a}"
[users.erin]
groups = ["security"]
api_token_sha256 = "{e}"
[scopes.vault]
hosts = {{ vault-1 = "127.0.0.1:22" }}
logins = ["root"]
requester_groups = ["oncall"]
approver_groups = ["security"]
require_offline_signature = true
"#,
        erin = erin_pub.trim(),
        a = hash("tok-alice"),
        e = hash("tok-erin"),
    );
    let cfg = d.join("breakglass.toml");
    std::fs::write(&cfg, config)?;
    let data = d.join("data");
    let server = Server::start(
        d,
        &["--config", cfg.to_str().ok_or("utf-8")?, "--data-dir", data.to_str().ok_or("utf-8")?],
        &[],
    );
    let alice = [("BREAKGLASS_TOKEN", "tok-alice"), ("BREAKGLASS_SERVER", server.url.as_str())];
    let erin = [("BREAKGLASS_TOKEN", "tok-erin"), ("BREAKGLASS_SERVER", server.url.as_str())];

    let req = cli(
        &["--json", "request", "vault-1", "--for", "15m", "unseal", "after", "restart"],
        &alice,
    );
    assert_eq!(req.code, 0, "{}", req.all());
    let v: Value = serde_json::from_str(&req.stdout)?;
    let code = v["code"].as_str().ok_or("code")?.to_owned();

    let bot = cli(&["approve", &code], &erin);
    assert_eq!(bot.code, 3, "{}", bot.all());
    assert!(
        bot.stderr.contains("[offline_signature_required]")
            && bot.stderr.contains("breakglass approve --key"),
        "{}",
        bot.stderr
    );

    let wrong_key = cli(
        &["approve", &code, "--yes", "--key", d.join("rogue.key").to_str().ok_or("utf-8")?],
        &erin,
    );
    assert_eq!(wrong_key.code, 3, "{}", wrong_key.all());
    assert!(wrong_key.stderr.contains("[unpinned_key]"), "{}", wrong_key.stderr);

    let key = d.join("erin.key");
    let key_s = key.to_str().ok_or("utf-8")?;
    let declined = cli_with_stdin(&["approve", &code, "--key", key_s], &erin, "n\n");
    assert_ne!(declined.code, 0);
    assert!(
        declined.stderr.contains("vault-1") && declined.stderr.contains("unseal after restart"),
        "shows the bound fields: {}",
        declined.stderr
    );

    let signed = cli(&["--json", "approve", &code, "--yes", "--key", key_s], &erin);
    assert_eq!(signed.code, 0, "{}", signed.all());
    let v: Value = serde_json::from_str(&signed.stdout)?;
    assert_eq!(
        (v["status"].as_str(), v["approvals"][0]["signer"].as_str()),
        (Some("approved"), Some("personal"))
    );
    assert!(server.stop().is_some());
    Ok(())
}

fn cli_with_stdin(args: &[&str], env: &[(&str, &str)], input: &str) -> e2e::Output {
    use std::io::Write as _;
    let mut c = std::process::Command::new(e2e::bin());
    c.args(args).current_dir(e2e::root());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("breakglass runs");
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().expect("breakglass finishes");
    e2e::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

mod sha2_hex {
    /// SHA-256 hex of a token, as the config stores it (via `sha256sum`, an independent tool).
    pub fn hex_sha256(t: &str) -> String {
        use std::io::Write as _;
        let mut child = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sha256sum runs");
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(t.as_bytes());
        }
        let out = child.wait_with_output().expect("sha256sum finishes");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

#[test]
fn a_database_password_never_prints() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_str().ok_or("utf-8")?;
    // `.invalid` never resolves (RFC 6761): the start fails at once, naming the database.
    for url in [
        "postgres://bg:Hunter2-userinfo@db.breakglass.invalid/bg",
        "postgres://bg@db.breakglass.invalid/bg?sslmode=disable&password=Hunter2-query",
        "host=db.breakglass.invalid password=Hunter2-keyword",
    ] {
        let env = [("BREAKGLASS__SERVER__DATABASE_URL", url), ("BREAKGLASS_LOG", "debug")];
        for args in [
            &["up", "--data-dir", data, "--listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0"][..],
            &["bot", "--data-dir", data, "--listen", "127.0.0.1:0"],
            &["gateway", "--data-dir", data, "--listen", "127.0.0.1:0"],
            &["audit", "verify", "--data-dir", data],
            &["config", "check"],
        ] {
            let out = cli(args, &env);
            assert!(!out.all().contains("Hunter2"), "{args:?} with {url}:\n{}", out.all());
            if args[0] != "config" {
                assert_ne!(out.code, 0, "{args:?} with {url}: {}", out.all());
                assert!(
                    out.stderr.contains("database"),
                    "{args:?} says what failed: {}",
                    out.stderr
                );
            }
        }
    }
    Ok(())
}
