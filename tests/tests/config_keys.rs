//! Every key documented in `deploy/breakglass.example.toml` is read by the product, not only
//! parsed: a key that the config accepts and nothing acts on (as `slack.socket_mode` once was)
//! is a promise the product breaks. For each documented key (commented-out optional keys too),
//! the field it is validated into must be read somewhere in the product's sources outside
//! `shared/src/config.rs` (where keys are parsed and validated) and outside test code.
//!
//! The check is textual, after rust-analyzer's tidy tests: a key `name` is read when
//! `.name` appears (as a whole field name) in a product source file; keys validated into a
//! field of another name list what their value becomes in [`READ_AS`].

use std::path::{Path, PathBuf};

use e2e::root;

/// Keys the config validates into something of another name, and the text that reads it.
const READ_AS: &[(&str, &str, &str)] = &[
    ("users.*.groups", "Human { groups }", "the principal's groups, read by the policy"),
    ("users.*.api_token_sha256", "config.tokens", "the API token table"),
    ("service_accounts.*.token_sha256", "config.tokens", "the API token table"),
    ("service_accounts.*.scopes", "Service { scopes }", "the service principal's scopes"),
    ("slack.bot_token_file", "bot_token.load()", "the bot token's source (env or file)"),
    ("slack.signing_secret_file", "signing_secret.load()", "the signing secret's source"),
    ("slack.app_token_file", "app_token.load()", "the app token's source"),
    ("discord.bot_token_file", "bot_token.load()", "the bot token's source (env or file)"),
    ("scopes.*.allow_port_forwarding", "forwarding.port", "the scope's forwarding"),
    ("scopes.*.allow_agent_forwarding", "forwarding.agent", "the scope's forwarding"),
    ("scopes.*.allow_x11_forwarding", "forwarding.x11", "the scope's forwarding"),
    ("recordings.store", "RecordingStoreKind::S3", "the recording store's kind"),
    ("recordings.access_key_id_file", "access_key_id)?", "the access key's source (env or file)"),
    ("recordings.secret_access_key_file", "secret_access_key)?", "the secret key's source"),
    ("recordings.session_token_file", "session_token)?", "the session token's source"),
];

/// Tables whose names are the user's (a user, a scope): their keys are documented once.
const NAMED_TABLES: &[&str] = &["users", "service_accounts", "scopes"];

/// Tables that are maps from a name to a value: the table itself is the key.
const MAP_TABLES: &[&str] = &["keys.pinned_approver_keys"];

/// `name` if `line` (comment marks removed) starts with `name =`.
fn key_of(line: &str) -> Option<&str> {
    let l = line.trim_start_matches(['#', ' ']);
    let end = l.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))?;
    let (name, rest) = l.split_at(end);
    (!name.is_empty() && rest.trim_start().starts_with('=') && !rest.trim_start().starts_with("=="))
        .then_some(name)
}

/// Every documented key as a dotted path (`server.listen`, `scopes.*.quorum`).
fn documented_keys() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("deploy/breakglass.example.toml"))
        .expect("the example config");
    let mut keys = Vec::new();
    let mut section = String::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            let mut parts: Vec<&str> = name.split('.').collect();
            if NAMED_TABLES.contains(&parts[0]) && parts.len() > 1 {
                parts[1] = "*";
            }
            section = parts.join(".");
            if MAP_TABLES.contains(&section.as_str()) {
                keys.push(section.clone());
            }
            continue;
        }
        if section.is_empty() || MAP_TABLES.contains(&section.as_str()) {
            continue;
        }
        if let Some(name) = key_of(t) {
            keys.push(format!("{section}.{name}"));
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The product's sources, without `shared/src/config.rs`, the test helpers, and any
/// `#[cfg(test)]` module (which ends each file that has one).
fn product_sources() -> String {
    let mut files = Vec::new();
    for dir in ["app/src", "bot/src", "format/src", "recorder/src", "s3/src", "shared/src"] {
        rust_files(&root().join(dir), &mut files);
    }
    let skip = [root().join("shared/src/config.rs"), root().join("shared/src/testing")];
    let mut all = String::new();
    for f in files.iter().filter(|f| !skip.iter().any(|s| f.starts_with(s))) {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let product = text.split("\n#[cfg(test)]").next().unwrap_or_default();
        all.push_str(product);
        all.push('\n');
    }
    assert!(all.len() > 100_000, "found the product sources ({} bytes)", all.len());
    all
}

/// `.name` as a whole field name somewhere in `src`.
fn reads_field(src: &str, name: &str) -> bool {
    let needle = format!(".{name}");
    src.match_indices(&needle).any(|(i, _)| {
        src[i + needle.len()..].chars().next().is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

#[test]
fn every_documented_config_key_is_read_by_the_product() {
    let keys = documented_keys();
    assert!(keys.len() > 60, "found the documented keys: {keys:?}");
    for must in
        ["server.database_url", "slack.socket_mode", "slack.app_token_file", "scopes.*.quorum"]
    {
        assert!(keys.iter().any(|k| k == must), "{must} is among the keys: {keys:?}");
    }
    let src = product_sources();
    let unread: Vec<String> = keys
        .iter()
        .filter(|k| match READ_AS.iter().find(|(key, _, _)| key == k) {
            Some((_, text, _)) => !src.contains(text),
            None => !reads_field(&src, k.rsplit('.').next().unwrap_or_default()),
        })
        .cloned()
        .collect();
    assert!(
        unread.is_empty(),
        "documented in deploy/breakglass.example.toml but read by nothing outside shared/src/config.rs: {unread:?}"
    );
}

#[test]
fn every_renamed_key_is_documented() {
    let keys = documented_keys();
    for (key, _, why) in READ_AS {
        assert!(
            keys.iter().any(|k| k == key),
            "READ_AS lists {key} ({why}), which is not documented"
        );
    }
}

#[test]
fn the_key_reader_sees_commented_keys_and_skips_prose() {
    assert_eq!(key_of("# database_url = \"sqlite:///x\""), Some("database_url"));
    assert_eq!(key_of("quorum = 2"), Some("quorum"));
    assert_eq!(key_of("# Load order (later wins): built-in defaults"), None);
    assert_eq!(key_of("# BREAKGLASS__SERVER__LISTEN=0.0.0.0:8080"), None);
    assert!(reads_field("x.socket_mode)", "socket_mode"));
    assert!(!reads_field("x.socket_mode_enabled", "socket_mode"));
}
