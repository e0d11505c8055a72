//! Tidy test: the allowed module edges of the bot crate, as a table.
//!
//! Every path into the crate (`use` declarations, `use` groups in braces, paths written in
//! code or docs) in every file under `src/<module>` is read, and each must name a module the
//! table allows for `<module>`. An entry is a top-level module (`service`) or one of its
//! submodules (`chat::present`, which allows that submodule only).
//!
//! The shape it holds (ARCHITECTURE.md, "Front ends never import each other"): the service
//! names no front end; the front ends (the API, Slack, Discord, the reviewer pages) sit on the
//! service and on shared modules (chat's neutral parts, the recordings read side), never on each
//! other; only `app`, the bot's composition, names them all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The front ends: none may use another.
const FRONT_ENDS: &[&str] = &["http", "slack", "discord", "review"];

/// Each top-level module and the modules of this crate it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    // The application service: nothing of the bot.
    ("service", &[]),
    // The read side of recordings, shared by the reviewer pages, the API and the chat summary.
    ("recordings", &["service", "recording_check"]),
    // Platform-neutral chat: the card, the sync loop, the command runner, the presentation.
    ("chat", &["service", "recordings"]),
    ("slack", &["service", "chat"]),
    ("discord", &["service", "chat"]),
    // The API shows the connect line as chat does (one presentation).
    ("http", &["service", "recordings", "recording_check", "chat::present", "telemetry"]),
    ("review", &["service", "recordings"]),
    ("reaper", &["service"]),
    // The CLI's HTTP client reads the API's JSON shapes and error body.
    ("client", &["http::views", "http::error"]),
    ("recording_check", &[]),
    ("audit_check", &["recording_check"]),
    // The fuzz targets' bodies call the chat platforms' decoders.
    ("fuzzing", &["slack", "discord"]),
    ("logging", &[]),
    // Metrics and health checks: over the storage port only.
    ("telemetry", &[]),
    // The bot's composition: the one place that names every front end.
    ("app", &["service", "recordings", "chat", "slack", "discord", "http", "review", "telemetry"]),
];

/// This module: its tests quote paths, so it is not read (and has no row).
const THIS: &str = "edges";

/// The crate's `src` folder.
fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules: the files and folders under `src` (but `lib.rs`).
fn modules() -> BTreeSet<String> {
    std::fs::read_dir(src())
        .expect("src folder")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs").filter(|m| *m != "lib").map(str::to_owned)
            }
        })
        .filter(|m| m != THIS)
        .collect()
}

/// The Rust files of top-level module `module` (its file, or every file under its folder).
fn files_of(module: &str) -> Vec<PathBuf> {
    let file = src().join(format!("{module}.rs"));
    if file.is_file() {
        return vec![file];
    }
    let mut found = Vec::new();
    let mut dirs = vec![src().join(module)];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).expect("module folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found
}

/// Reads a `use` tree at the start of `text` (what follows `crate::`): every path it names,
/// each as its segments. `a::b`, `a::{b, c::d}` and `{a, b::{c, d}}` are all read.
fn use_tree(text: &str) -> Vec<Vec<String>> {
    fn ident(t: &[char], i: &mut usize) -> Option<String> {
        let start = *i;
        while *i < t.len() && (t[*i].is_ascii_alphanumeric() || t[*i] == '_') {
            *i += 1;
        }
        (*i > start).then(|| t[start..*i].iter().collect())
    }
    fn skip_space(t: &[char], i: &mut usize) {
        while *i < t.len() && t[*i].is_whitespace() {
            *i += 1;
        }
    }
    fn tree(t: &[char], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        if t.get(*i) == Some(&'{') {
            *i += 1;
            loop {
                skip_space(t, i);
                match t.get(*i) {
                    None => return,
                    Some('}') => {
                        *i += 1;
                        return;
                    }
                    Some(',') => *i += 1,
                    Some(_) => {
                        let before = *i;
                        tree(t, i, prefix, out);
                        skip_space(t, i);
                        if t.get(*i..*i + 3) == Some(&['a', 's', ' ']) {
                            *i += 3; // `path as name`: the name is no path
                            skip_space(t, i);
                            ident(t, i);
                        } else if *i == before {
                            *i += 1; // `*` or anything else: not a path segment
                        }
                    }
                }
            }
        }
        let mut path = prefix.to_vec();
        while let Some(seg) = ident(t, i) {
            if seg == "self" {
                break; // `a::{self, …}` names `a` itself
            }
            path.push(seg);
            if t.get(*i..*i + 2) == Some(&[':', ':']) {
                *i += 2;
                if t.get(*i) == Some(&'{') {
                    tree(t, i, &path, out);
                    return;
                }
            } else {
                break;
            }
        }
        if !path.is_empty() {
            out.push(path);
        }
    }
    let t: Vec<char> = text.chars().take(4096).collect();
    let mut out = Vec::new();
    tree(&t, &mut 0, &[], &mut out);
    out
}

/// Every path into the crate named in `text`, each as its first two segments
/// (`chat::present`, or `service` alone).
fn uses_in(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        for path in use_tree(&text[i + 7..]) {
            match path.as_slice() {
                [] => {}
                [m] => found.push(m.clone()),
                [m, sub, ..] => found.push(format!("{m}::{sub}")),
            }
        }
    }
    found
}

/// Whether `used` (`m` or `m::sub`) is allowed by `allowed`, for a file of module `module`.
fn allows(module: &str, allowed: &[&str], used: &str) -> bool {
    let top = used.split("::").next().unwrap_or(used);
    top == module || allowed.iter().any(|a| *a == top || *a == used)
}

/// The edges found that the table does not allow: `(file, used)`.
fn forbidden() -> Vec<(String, String)> {
    let mut bad = Vec::new();
    for (module, allowed) in ALLOWED {
        for file in files_of(module) {
            let text = std::fs::read_to_string(&file).expect("source file");
            for used in uses_in(&text) {
                if !allows(module, allowed, &used) {
                    bad.push((file.display().to_string(), used));
                }
            }
        }
    }
    bad
}

#[test]
fn every_module_uses_only_the_modules_the_table_allows() {
    let bad = forbidden();
    assert!(bad.is_empty(), "edges not in the table (src/edges.rs):\n{bad:#?}");
}

#[test]
fn the_table_has_every_module_and_no_other() {
    let table: BTreeSet<String> = ALLOWED.iter().map(|(m, _)| (*m).to_owned()).collect();
    assert_eq!(table, modules(), "one row per top-level module of src/");
    for (module, allowed) in ALLOWED {
        for a in *allowed {
            let top = a.split("::").next().unwrap_or(a);
            assert!(table.contains(top), "{module} allows {a}, which is no module");
        }
    }
}

#[test]
fn the_table_lets_no_front_end_use_another_and_the_service_use_none() {
    for (module, allowed) in ALLOWED {
        let top = |a: &&str| a.split("::").next().unwrap_or(a).to_owned();
        if FRONT_ENDS.contains(module) || *module == "service" || *module == "chat" {
            let fronts: Vec<String> =
                allowed.iter().map(top).filter(|a| FRONT_ENDS.contains(&a.as_str())).collect();
            assert!(fronts.is_empty(), "{module} may use the front ends {fronts:?}");
        }
    }
    let service = ALLOWED.iter().find(|(m, _)| *m == "service").map(|(_, a)| *a);
    assert_eq!(service, Some(&[][..]), "the service uses nothing of the bot");
}

#[test]
fn paths_are_read_from_plain_paths_and_use_groups() {
    let read = |t: &str| uses_in(t);
    assert_eq!(read("use crate::service::Deps;"), ["service::Deps"]);
    assert_eq!(read("crate::http::router(deps)"), ["http::router"]);
    assert_eq!(read("use crate::{discord, slack};"), ["discord", "slack"]);
    assert_eq!(
        read("use crate::{chat::{present, sync::ChatHub}, review};"),
        ["chat::present", "chat::sync", "review"]
    );
    assert_eq!(read("use crate::chat::{self, Platform};"), ["chat", "chat::Platform"]);
    assert_eq!(read("use crate::{chat::sync::ChatHub as Hub, slack};"), ["chat::sync", "slack"]);
    assert_eq!(read("text with crate:: and nothing"), Vec::<String>::new());
    assert!(allows("http", &["chat::present"], "chat::present"));
    assert!(!allows("http", &["chat::present"], "chat::sync"));
    assert!(allows("chat", &[], "chat::sync"), "a module uses its own parts");
}
