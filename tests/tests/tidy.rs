//! Tidy checks on the source tree itself (after rust-analyzer's tidy tests): rules that keep the
//! code readable and the architecture honest, enforced rather than hoped for.

use std::path::{Path, PathBuf};

use e2e::root;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if name == "target" || name == "node_modules" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for crate_dir in
        ["shared", "format", "s3", "recorder", "bot", "app", "tests", "test-util", "fuzz"]
    {
        rust_files(&root().join(crate_dir), &mut v);
    }
    assert!(v.len() > 20, "found the sources ({} files)", v.len());
    v
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let missing: Vec<String> = all_rust_files()
        .into_iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` doc at the top:\n{}", missing.join("\n"));
}

/// The core does no I/O: no database, network, async runtime, files or clock reads.
#[test]
fn the_core_does_no_io() {
    let mut files = Vec::new();
    rust_files(&root().join("shared/src/core"), &mut files);
    assert!(!files.is_empty());
    let forbidden = [
        "sqlx",
        "reqwest",
        "russh",
        "axum",
        "tokio",
        "std::fs",
        "std::net",
        "std::process",
        "SystemTime::now",
        "Instant::now",
        "rand::",
        "getrandom",
    ];
    let mut hits = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in forbidden {
                // clock.rs holds the one real clock adapter, behind the Clock port.
                let allowed = f.ends_with("clock.rs") && word == "SystemTime::now";
                if code.contains(word) && !allowed {
                    hits.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(hits.is_empty(), "I/O in the pure core:\n{}", hits.join("\n"));
}

/// What `package` links (normal dependencies), asked of Cargo itself, per package, so a feature
/// turned on elsewhere in the workspace (`shared`'s `storage`) cannot hide here: fails unless
/// each of `expected` is in the tree (it was read) and none of `forbidden` (a name, or a prefix
/// ending in `*`) is.
fn links_none_of(package: &str, expected: &[&str], forbidden: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["tree", "--locked", "-p", package, "-e", "normal", "--prefix", "none"])
        .current_dir(root())
        .output()
        .expect("running cargo tree");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "cargo tree failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let crates: std::collections::BTreeSet<&str> =
        stdout.lines().filter_map(|l| l.split_whitespace().next()).collect();
    for name in expected {
        assert!(crates.contains(name), "{name} missing from the tree:\n{stdout}");
    }
    let matches = |c: &str, f: &str| match f.strip_suffix('*') {
        Some(prefix) => c.starts_with(prefix),
        None => c == f,
    };
    let found: Vec<&&str> =
        crates.iter().filter(|c| forbidden.iter().any(|f| matches(c, f))).collect();
    assert!(
        found.is_empty(),
        "{package} links {found:?} (`cargo tree -p {package} -e normal -i NAME` shows why)"
    );
}

/// The recording format (`format/`) is pure: what reads and verifies a recording links no SSH
/// stack, no async runtime and no database driver.
#[test]
fn the_format_crate_links_no_ssh_or_async_runtime() {
    links_none_of(
        "breakglass-format",
        &["breakglass-format", "breakglass-shared", "ed25519-dalek", "vt100"],
        &["russh*", "tokio*", "sqlx*", "mio*"],
    );
}

/// The bot links no SSH stack: only the composition root (`app/`, package `breakglass`) holds
/// both the bot and the gateway.
#[test]
fn the_bot_links_no_ssh() {
    links_none_of(
        "breakglass-bot",
        &["breakglass-bot", "breakglass-format", "breakglass-shared", "axum"],
        &["russh*", "breakglass-recorder"],
    );
}

/// Every "Architecture invariant:" in ARCHITECTURE.md names a test that exists.
#[test]
fn architecture_invariants_point_to_real_tests() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let sources: String =
        all_rust_files().iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect();
    // One bullet may wrap over several lines: join each bullet first.
    let mut bullets: Vec<String> = Vec::new();
    for l in arch.lines() {
        if l.starts_with("- ") {
            bullets.push(l.to_owned());
        } else if l.starts_with("  ") && !l.trim().is_empty() {
            if let Some(b) = bullets.last_mut() {
                b.push(' ');
                b.push_str(l.trim());
            }
        } else {
            bullets.push(String::new());
        }
    }
    let mut count = 0;
    for line in bullets.iter().filter(|l| l.contains("Architecture invariant:")) {
        count += 1;
        let tests: Vec<&str> =
            line.split("test: `").skip(1).filter_map(|s| s.split('`').next()).collect();
        assert!(!tests.is_empty(), "invariant without a guarding test: {line}");
        for t in tests {
            let name = t.rsplit("::").next().unwrap_or(t);
            assert!(
                sources.contains(&format!("fn {name}(")),
                "ARCHITECTURE.md names `{t}`, which does not exist"
            );
        }
    }
    assert!(count >= 8, "ARCHITECTURE.md lists the invariants ({count} found)");
}

/// CI runs the very test command README.md gives.
#[test]
fn ci_runs_the_readme_test_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    assert!(readme.contains("scripts/test"), "README gives scripts/test as the test command");
    assert!(ci.lines().any(|l| l.trim() == "scripts/test"), ".ci/run calls scripts/test");
}

/// scripts/mutants.toml (the guard-to-test map that `scripts/mutants` runs) matches the code:
/// each guard's `find` occurs exactly once in its file, its `replace` differs, and every test
/// it names exists, in the package and test target it names.
#[test]
fn the_guard_to_test_map_matches_the_code() {
    let text = std::fs::read_to_string(root().join("scripts/mutants.toml")).expect("the map");
    let map: toml::Table = text.parse().expect("scripts/mutants.toml is TOML");
    let guards = map["guard"].as_array().expect("[[guard]] entries");
    assert!(guards.len() >= 30, "the map lists the guards ({} found)", guards.len());
    let crate_dirs = [
        ("breakglass-shared", "shared"),
        ("breakglass-format", "format"),
        ("breakglass-s3", "s3"),
        ("breakglass-recorder", "recorder"),
        ("breakglass-bot", "bot"),
        ("breakglass", "app"),
        ("breakglass-e2e", "tests"),
    ];
    let mut names = std::collections::HashSet::new();
    let mut problems = Vec::new();
    for g in guards {
        let field = |k: &str| g.get(k).and_then(toml::Value::as_str).unwrap_or_default();
        let name = field("name");
        if !names.insert(name.to_owned()) || name.is_empty() {
            problems.push(format!("guard `{name}`: a name must be given, and only once"));
        }
        if field("why").is_empty() {
            problems.push(format!("guard `{name}`: no `why`"));
        }
        let (find, replace) = (field("find"), field("replace"));
        if find.is_empty() || find == replace {
            problems.push(format!("guard `{name}`: `replace` must change a non-empty `find`"));
        }
        match std::fs::read_to_string(root().join(field("file"))) {
            Ok(code) => {
                let n = code.matches(find).count();
                if n != 1 {
                    problems.push(format!(
                        "guard `{name}`: `find` occurs {n} times in {} (must be exactly once)",
                        field("file")
                    ));
                }
            }
            Err(e) => problems.push(format!("guard `{name}`: {}: {e}", field("file"))),
        }
        let tests = g.get("tests").and_then(toml::Value::as_array).cloned().unwrap_or_default();
        if tests.is_empty() {
            problems.push(format!("guard `{name}`: no test catches it"));
        }
        for t in tests.iter().filter_map(toml::Value::as_str) {
            let words: Vec<&str> = t.split_whitespace().collect();
            let after = |flag: &str| words.iter().position(|w| *w == flag).map(|i| words[i + 1]);
            let Some(dir) = after("-p").and_then(|p| crate_dirs.iter().find(|(n, _)| *n == p))
            else {
                problems.push(format!("guard `{name}`: `{t}` names no package of the workspace"));
                continue;
            };
            // Where the test lives: its integration test file, or the crate's sources.
            let mut files = Vec::new();
            match after("--test") {
                Some(file) => {
                    files.push(root().join(dir.1).join("tests").join(format!("{file}.rs")))
                }
                None if words.contains(&"--lib") => {
                    rust_files(&root().join(dir.1).join("src"), &mut files)
                }
                None => {}
            }
            let sources: String =
                files.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect();
            // The test's own name: the last path segment that is not a backend module.
            let filter = words.last().copied().unwrap_or_default();
            let test = filter
                .rsplit("::")
                .find(|s| !matches!(*s, "sqlite" | "postgres"))
                .unwrap_or(filter);
            if sources.is_empty() || !sources.contains(&format!("fn {test}(")) {
                problems.push(format!("guard `{name}`: test `{t}` does not exist"));
            }
        }
    }
    assert!(problems.is_empty(), "scripts/mutants.toml is out of date:\n{}", problems.join("\n"));
}
