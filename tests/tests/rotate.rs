//! Key rotation with overlap through the real binary (docs/operations.md, "Key rotation"): a
//! grant approved and recorded with the old keys; `breakglass keys rotate approval` and
//! `recording`; both keys pinned (the old one until `not_after`) while the old key still
//! signs; the signers switched: a new approval carries the new key id and the gateway lets it
//! in; the old key, once past its `not_after`, has its new signatures refused; `audit verify`
//! still passes with the old approval key gone from the config (from the key the audit
//! recorded as pinned, and it says so), and the old recording still verifies. (That a key the
//! audit never recorded is still refused is `core_rules`'
//! `audit_verify_checks_a_dropped_key_against_the_pin_the_log_recorded_and_says_so`.)

use std::path::{Path, PathBuf};

use e2e::gateway::World;

/// The new key's files and public line, read off `keys rotate`'s output.
struct Rotated {
    new_key: PathBuf,
    new_public: String,
    old_public: String,
    stdout: String,
}

fn rotate(w: &World, kind: &str) -> Rotated {
    let out = w.cli(&["keys", "rotate", kind, "--overlap", "7d"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let new_key = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("new:"))
        .and_then(|l| l.split_whitespace().next())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no `new:` line: {}", out.all()));
    let public = |p: &Path| std::fs::read_to_string(p).expect("public key file").trim().to_owned();
    let old_base = w.data_dir().join("keys").join(kind);
    Rotated {
        new_public: public(&new_key.with_extension("pub")),
        old_public: public(&old_base.with_extension("pub")),
        new_key,
        stdout: out.stdout,
    }
}

/// Rewrites the world's config with `keys` as its `[keys]` table.
fn set_keys(w: &World, base: &str, keys: &str) {
    std::fs::write(&w.config, format!("{base}\n[keys]\n{keys}\n")).expect("config");
}

fn key_id_of(public_line: &str) -> String {
    let vk = shared::core::approval::parse_public_key(public_line).expect("a public key");
    shared::core::KeyId::of(vk.as_bytes()).to_hex()
}

#[test]
fn a_rotated_key_signs_new_grants_while_old_approvals_and_recordings_still_verify() {
    let mut w = World::start();
    let base = std::fs::read_to_string(&w.config).expect("config");

    // Before: a session approved with the old approval key and recorded with the old
    // recording key.
    let old_code = w.grant("db-1", None);
    let out = w.ssh(&old_code, &["echo", "before-rotation"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let old_recording = w.recording_of(&old_code, 10);
    w.wait_status(&old_code, "closed", 10);

    let approval = rotate(&w, "approval");
    let recording = rotate(&w, "recording");
    // What it prints: both keys to pin, the old one with its not_after, then the switch.
    assert!(
        approval.stdout.contains(&format!("\"{}\",", approval.new_public)),
        "{}",
        approval.stdout
    );
    assert!(
        approval.stdout.contains(&format!("{{ key = \"{}\", not_after = \"", approval.old_public)),
        "{}",
        approval.stdout
    );
    let step1 = approval.stdout.find("step 1").expect("step 1");
    let step2 = approval.stdout.find("step 2").expect("step 2");
    assert!(step1 < step2 && approval.stdout[step2..].contains("approval_signing_key_file"));
    assert!(w.data_dir().join("keys/approval.key").exists(), "the old key is kept");
    let not_after = |r: &Rotated| {
        let at = r.stdout.find("not_after = \"").expect("not_after") + "not_after = \"".len();
        r.stdout[at..at + 20].to_owned()
    };
    let pins = |old_until: &str| {
        format!(
            "pinned_bot_keys = [\"{}\", {{ key = \"{}\", not_after = \"{old_until}\" }}]\n\
             pinned_recording_keys = [\"{}\", {{ key = \"{}\", not_after = \"{}\" }}]",
            approval.new_public,
            approval.old_public,
            recording.new_public,
            recording.old_public,
            not_after(&recording),
        )
    };

    // Step 1: both pinned, the old key still signing: still accepted.
    set_keys(&w, &base, &pins(&not_after(&approval)));
    w.restart();
    let pinned_both = w.grant("db-1", None);
    let approvals = w.status(&pinned_both)["approvals"].clone();
    assert_eq!(approvals[0]["key_id"], key_id_of(&approval.old_public), "{approvals}");

    // Step 2: the signers switched. New approvals carry the new key id; the gateway accepts
    // them; the session is recorded with the new recording key.
    let switch = format!(
        "approval_signing_key_file = \"{}\"\nrecording_signing_key_file = \"{}\"\n",
        approval.new_key.display(),
        recording.new_key.display()
    );
    set_keys(&w, &base, &format!("{switch}{}", pins(&not_after(&approval))));
    w.restart();
    let new_code = w.grant("db-1", None);
    let approvals = w.status(&new_code)["approvals"].clone();
    for a in approvals.as_array().expect("approvals") {
        assert_eq!(a["key_id"], key_id_of(&approval.new_public), "{approvals}");
        assert_eq!(a["signer"], "bot", "{approvals}");
    }
    let out = w.ssh(&new_code, &["echo", "after-rotation"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let new_recording = w.recording_of(&new_code, 10);
    w.wait_status(&new_code, "closed", 10);
    let v = w.cli(&["recording", "verify", new_recording.to_str().expect("utf-8")]);
    assert!(v.stdout.contains(&format!("key {}", key_id_of(&recording.new_public))), "{}", v.all());

    // Past the old key's not_after, a signature it makes now is refused (here the bot is
    // pointed back at the old key, as a stale replica or a stolen key would be).
    let past = "2026-01-01T00:00:00Z";
    let stale = format!(
        "approval_signing_key_file = \"{}\"\n",
        w.data_dir().join("keys/approval.key").display()
    );
    set_keys(&w, &base, &format!("{stale}{}", pins(past)));
    w.restart();
    let body =
        serde_json::json!({ "host": "db-1", "login": w.login, "reason": "after retirement" });
    let (s, v) = w.api("alice", "POST", "/api/v1/requests", Some(body));
    assert_eq!(s, 201, "{v}");
    let late = v["code"].as_str().expect("code").to_owned();
    let (s, v) = w.api("bob", "POST", &format!("/api/v1/requests/{late}/approve"), None);
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "key_not_valid_at", "{v}");
    assert_eq!(w.status(&late)["approvals"].as_array().map(Vec::len), Some(0));

    // The old approval key dropped from the config entirely: audit verify still passes, from
    // the key the audit recorded as pinned, and says so; both recordings verify.
    let dropped = format!(
        "{switch}pinned_bot_keys = [\"{}\"]\npinned_recording_keys = [\"{}\", {{ key = \"{}\", not_after = \"{past}\" }}]",
        approval.new_public, recording.new_public, recording.old_public
    );
    set_keys(&w, &base, &dropped);
    let audit = w.cli(&["audit", "verify"]);
    assert_eq!(audit.code, 0, "{}", audit.all());
    assert!(
        audit.stdout.contains(&format!(
            "key {} is no longer pinned in the config: its approvals were verified with the public key and validity the audit log recorded",
            key_id_of(&approval.old_public)
        )),
        "{}",
        audit.all()
    );
    assert!(audit.stdout.contains("recordings OK: 2 signature(s) bound"), "{}", audit.all());
    let v = w.cli(&["recording", "verify", old_recording.to_str().expect("utf-8")]);
    assert_eq!(v.code, 0, "{}", v.all());
    assert!(v.stdout.contains(&format!("key {}", key_id_of(&recording.old_public))), "{}", v.all());
}

/// `breakglass ARGS` with no config file of the caller's environment.
fn run(dir: &Path, args: &[&str]) -> e2e::Output {
    let out = std::process::Command::new(e2e::bin())
        .args(args)
        .current_dir(dir)
        .env_remove("BREAKGLASS_CONFIG")
        .output()
        .expect("breakglass runs");
    e2e::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_ca_rotation_prints_both_trusted_keys_during_the_overlap_and_one_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let data = d.join("data");
    let data = data.to_str().expect("utf-8");
    let old = run(d, &["ca", "public-key", "--data-dir", data]);
    assert_eq!(old.code, 0, "{}", old.all());
    let old_line = old.stdout.trim().to_owned();
    let rotated = run(d, &["keys", "rotate", "ca", "--overlap", "14d", "--data-dir", data]);
    assert_eq!(rotated.code, 0, "{}", rotated.all());
    // Step 1 as printed, pasted into the config.
    let at = rotated.stdout.find("  [keys]\n").expect("the [keys] lines");
    let end = rotated.stdout[at..].find("\n  ]\n").expect("the end of the list") + at + 4;
    let keys_toml: String =
        rotated.stdout[at..end].lines().map(|l| format!("{}\n", l.trim_start())).collect();
    let config = d.join("breakglass.toml");
    std::fs::write(&config, &keys_toml).expect("config");
    let cfg = config.to_str().expect("utf-8");
    let trusted = run(d, &["ca", "trusted-keys", "--config", cfg, "--data-dir", data]);
    assert_eq!(trusted.code, 0, "{}", trusted.all());
    let lines: Vec<&str> = trusted.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", trusted.all());
    let blob = |l: &str| l.split_whitespace().nth(1).unwrap_or_default().to_owned();
    assert_ne!(blob(lines[0]), blob(&old_line), "the new CA comes first");
    assert_eq!(blob(lines[1]), blob(&old_line), "the retired CA is still trusted");
    assert!(lines[1].contains("breakglass-ca-retired-until-"), "{}", trusted.all());
    // What the gateway now mints with is the first line.
    let now = run(d, &["ca", "public-key", "--config", cfg, "--data-dir", data]);
    assert_eq!(blob(now.stdout.trim()), blob(lines[0]), "{}", now.all());
    // After not_after: only the new CA.
    let after = keys_toml.replace(
        &keys_toml[keys_toml.find("not_after = \"").expect("not_after")..][..34],
        "not_after = \"2026-01-01T00:00:00Z\"",
    );
    std::fs::write(&config, after).expect("config");
    let trusted = run(d, &["ca", "trusted-keys", "--config", cfg, "--data-dir", data]);
    assert_eq!(trusted.stdout.lines().count(), 1, "{}", trusted.all());
    assert_eq!(blob(trusted.stdout.trim()), blob(lines[0]));
    assert!(d.join("data/keys/ca.key").exists(), "the old CA key is kept");
}
