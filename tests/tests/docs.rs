//! The docs as a newcomer follows them, run for real: README's "Try it" blocks pasted into
//! bash as they are (the demo's target sshd, `breakglass up`, the walk, a request approved by
//! hand and alice's `ssh` through the gateway to the target), the example config copied to
//! `./breakglass.toml` starting, the documented exit code of a key-file error, and every
//! `breakglass` command README names existing in the binary's `--help`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::gateway::{free_port, login};
use e2e::{Server, bin, cli, root};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn readme() -> String {
    fs::read_to_string(root().join("README.md")).expect("README.md reads")
}

/// The text of README's section `## TITLE`, up to the next `## ` heading.
fn section(readme: &str, title: &str) -> String {
    let head = format!("\n## {title}\n");
    let start = readme.find(&head).unwrap_or_else(|| panic!("README has no `## {title}`"));
    let rest = &readme[start + head.len()..];
    rest.find("\n## ").map_or(rest, |end| &rest[..end]).to_owned()
}

/// The bodies of the ```sh blocks in `text`, in order.
fn sh_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Stops the demo whatever the test did (its processes are not children of the test).
struct DemoGuard(PathBuf);

impl Drop for DemoGuard {
    fn drop(&mut self) {
        let _ = Command::new(root().join("deploy/demo/stop.sh"))
            .env("BREAKGLASS_DEMO", &self.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// README's "Try it", pasted block by block into one bash in the clone. `cargo install`
/// is the one line not run for real (a release build of the workspace): a stand-in `cargo`
/// records it, and this build's binary is the `breakglass` on PATH it would have put there.
/// Ports and the demo directory are the test's own (the demo honours the config's
/// environment layer), so the run does not meet a demo someone is running on this machine.
#[test]
fn the_readme_try_it_blocks_work_as_pasted() -> TestResult {
    let blocks = sh_blocks(&section(&readme(), "Try it"));
    assert!(blocks.len() >= 2, "Try it has the demo block and the by-hand block: {blocks:?}");
    let script = blocks.join("\n");
    assert!(script.contains("deploy/demo/start.sh") && script.contains("ssh "), "{script}");

    let t = tempfile::tempdir()?;
    let stubs = t.path().join("bin");
    fs::create_dir(&stubs)?;
    std::os::unix::fs::symlink(bin(), stubs.join("breakglass"))?;
    let cargo_log = t.path().join("cargo.log");
    let stub = format!("#!/bin/sh\necho \"$*\" >> '{}'\n", cargo_log.display());
    fs::write(stubs.join("cargo"), stub)?;
    fs::set_permissions(stubs.join("cargo"), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let demo = t.path().join("demo");
    let _guard = DemoGuard(demo.clone());
    let path = format!("{}:{}", stubs.display(), std::env::var("PATH").unwrap_or_default());
    let out_path = t.path().join("out.txt");
    let out_file = fs::File::create(&out_path)?;

    let mut bash = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &script])
        .current_dir(root())
        .env("PATH", path)
        .env("BREAKGLASS_DEMO", &demo)
        .env("BREAKGLASS_DEMO_SSHD_PORT", free_port().to_string())
        .env("BREAKGLASS__SERVER__LISTEN", "127.0.0.1:0")
        .env("BREAKGLASS__GATEWAY__LISTEN", "127.0.0.1:0")
        .env_remove("BREAKGLASS_SERVER")
        .env_remove("BREAKGLASS_TOKEN")
        .env_remove("BREAKGLASS_CONFIG")
        .env_remove("BREAKGLASS_BIN")
        .stdin(Stdio::null())
        .stdout(out_file.try_clone()?)
        .stderr(out_file)
        .spawn()?;
    let status = match test_util::poll(Duration::from_secs(240), Duration::from_millis(100), || {
        bash.try_wait().transpose()
    }) {
        Some(exited) => Some(exited?),
        None => {
            let _ = bash.kill();
            None
        }
    };
    let out = fs::read_to_string(&out_path)?;
    let server_log = fs::read_to_string(demo.join("breakglass.log")).unwrap_or_default();
    let context = format!("{out}\n--- breakglass.log:\n{server_log}");
    assert!(
        status.is_some_and(|s| s.success()),
        "the Try it blocks failed ({status:?}):\n{context}"
    );

    assert_eq!(fs::read_to_string(&cargo_log)?.trim(), "install --locked --path app");
    for line in [
        "demo: breakglass up is ready",
        "walk: second approval (carol): approved",
        "walk: done",
        "audit log OK",
        "each grant used once",
        "recordings OK",
        "demo: stopped breakglass",
        "demo: stopped sshd",
    ] {
        assert!(out.contains(line), "the output lacks `{line}`:\n{context}");
    }
    // The code `request` printed, captured and echoed; approved; alice's ssh reached db-1.
    let code = out
        .lines()
        .find(|l| l.len() == 9 && l.starts_with("bg-"))
        .ok_or_else(|| format!("no code echoed:\n{context}"))?;
    assert!(out.contains(&format!("{code} is approved")), "{context}");
    assert!(out.contains("@127.0.0.1") && out.contains("connect with:"), "{context}");
    assert!(out.contains(&format!("on db-1 as {}", login())), "ssh reached db-1:\n{context}");
    // stop.sh stopped the server gracefully: the session's recording is finished and signed.
    let recording = fs::read_dir(demo.join("data/recordings"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(code))
                && p.extension().is_some_and(|x| x == "cast")
        })
        .ok_or_else(|| format!("no recording of {code}:\n{context}"))?;
    assert!(e2e::gateway::recorder_sig(&recording).exists(), "{}", recording.display());
    assert!(!demo.join("breakglass.pid").exists() && !demo.join("sshd.pid").exists());
    Ok(())
}

/// README and the start-up banner: copy the example to `./breakglass.toml` and run
/// `breakglass up`. It starts as it is, with its keys generated under `./data`.
#[test]
fn the_example_config_copied_to_breakglass_toml_starts() -> TestResult {
    let dir = tempfile::tempdir()?;
    fs::copy(root().join("deploy/breakglass.example.toml"), dir.path().join("breakglass.toml"))?;
    let server = Server::start(dir.path(), &[], &[]);
    let ready = reqwest::blocking::get(format!("{}/readyz", server.url))?;
    assert_eq!(ready.status().as_u16(), 200, "{}", server.log());
    let log = server.log();
    assert!(!log.contains("no config file") && !log.contains("ERROR"), "{log}");
    for key in ["approval.key", "ca.key", "recording.key", "gateway_host_ed25519"] {
        assert!(dir.path().join("data/keys").join(key).exists(), "{key} under ./data:\n{log}");
    }
    assert!(dir.path().join("data/breakglass.db").exists());
    assert_eq!(server.stop(), Some(0));
    Ok(())
}

/// A key file the config names but that cannot be used stops `breakglass up` with exit code
/// 5 (a local problem, README's table), naming the key and the file, the OS error said once.
/// A database that cannot be reached is still 4.
#[test]
fn a_key_file_error_exits_5_with_the_os_error_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let data = d.join("data");
    let data_s = data.to_str().ok_or("utf-8")?;
    let up = |cfg: &Path, env: &[(&str, &str)]| {
        let cfg = cfg.to_str().expect("utf-8");
        let args = ["up", "--config", cfg, "--data-dir", data_s, "--listen", "127.0.0.1:0"];
        cli(&[&args[..], &["--ssh-listen", "127.0.0.1:0"]].concat(), env)
    };
    let missing = d.join("missing.key");
    for key in ["approval_signing_key_file", "gateway_ca_key_file", "recording_signing_key_file"] {
        let cfg = d.join(format!("{key}.toml"));
        fs::write(&cfg, format!("[keys]\n{key} = \"{}\"\n", missing.display()))?;
        let out = up(&cfg, &[]);
        assert_eq!(out.code, 5, "{key}: {}", out.all());
        assert!(out.stderr.contains(&format!("keys.{key}")), "names the key: {}", out.stderr);
        assert!(out.stderr.contains(&missing.display().to_string()), "{}", out.stderr);
        assert_eq!(
            out.stderr.matches("No such file or directory").count(),
            1,
            "the OS error once: {}",
            out.stderr
        );
    }

    // A key file others can read: refused with the fix, also 5.
    let k = cli(&["keygen", "--out", d.join("open").to_str().ok_or("utf-8")?], &[]);
    assert_eq!(k.code, 0, "{}", k.all());
    let open = d.join("open.key");
    fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    let cfg = d.join("open.toml");
    fs::write(&cfg, format!("[keys]\napproval_signing_key_file = \"{}\"\n", open.display()))?;
    let out = up(&cfg, &[]);
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(out.stderr.contains(&format!("chmod 600 {}", open.display())), "{}", out.stderr);

    // The database, not a local file: 4.
    fs::write(&cfg, "")?;
    let db = [("BREAKGLASS__SERVER__DATABASE_URL", "postgres://bg@db.breakglass.invalid/bg")];
    let out = up(&cfg, &db);
    assert_eq!(out.code, 4, "{}", out.all());
    Ok(())
}

/// The subcommands `breakglass ARGS --help` lists.
fn subcommands(args: &[&str]) -> BTreeSet<String> {
    let out = cli(&[args, &["--help"]].concat(), &[]);
    assert_eq!(out.code, 0, "{args:?} --help: {}", out.all());
    out.stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A wrapped description continues further in.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn is_word(w: &str) -> bool {
    w.starts_with(|c: char| c.is_ascii_lowercase())
        && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The code in README: fenced blocks whole, and inline `spans` elsewhere.
fn readme_code(readme: &str) -> Vec<String> {
    let mut code = Vec::new();
    let mut fenced = false;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            code.push(line.to_owned());
        } else {
            code.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    code
}

/// Every `breakglass COMMAND [SUBCOMMAND]` in README's code, and every command in its CLI
/// table, is one the binary has; and every command the binary has is in that table.
#[test]
fn every_command_readme_names_exists_in_help() {
    let top = subcommands(&[]);
    assert!(top.contains("up") && top.contains("audit"), "{top:?}");
    let check = |words: &[&str], whence: &str| -> Option<String> {
        let first = words.first().copied().filter(|w| is_word(w))?;
        assert!(
            top.contains(first),
            "README names `breakglass {first}` ({whence}), which `breakglass --help` does not list: {top:?}"
        );
        let subs = subcommands(&[first]);
        if !subs.is_empty() {
            let second = words.get(1).copied().unwrap_or_default();
            assert!(
                subs.contains(second),
                "README names `breakglass {first} {second}` ({whence}), but `breakglass {first} --help` lists {subs:?}"
            );
        }
        Some(first.to_owned())
    };
    let text = readme();
    let mut named = 0;
    for code in readme_code(&text) {
        let mut rest = code.as_str();
        while let Some(at) = rest.find("breakglass ") {
            let before = rest[..at].chars().last();
            let after = &rest[at + "breakglass ".len()..];
            rest = after;
            // `/breakglass request` is the chat command; `@breakglass` the bot; paths.
            if before.is_some_and(|c| c.is_alphanumeric() || "/@-_.".contains(c)) {
                continue;
            }
            let words: Vec<&str> = after
                .split_whitespace()
                .map(|w| w.trim_end_matches([';', ',', ')', ':']))
                .take(2)
                .collect();
            named += usize::from(check(&words, code.trim()).is_some());
        }
    }
    assert!(named > 20, "README's code names commands: {named}");

    // The CLI table: `| `cmd ARGS`, `cmd2 ARGS` | what it does |`.
    let table = section(&text, "CLI");
    let mut in_table = BTreeSet::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let cell = row.split(" | ").next().unwrap_or_default();
        for span in cell.split('`').skip(1).step_by(2) {
            let words: Vec<&str> = span.split_whitespace().take(2).collect();
            in_table.extend(check(&words, row));
        }
    }
    let missing: Vec<&String> =
        top.iter().filter(|c| *c != "help" && !in_table.contains(*c)).collect();
    assert!(missing.is_empty(), "commands missing from README's CLI table: {missing:?}");
}
