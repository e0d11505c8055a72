//! The fuzz targets on stable: every checked-in corpus file under `fuzz/corpus/NAME/` (seeds,
//! and inputs that once crashed, kept as regressions) goes through its target's body, the same
//! function the cargo-fuzz target in `fuzz/fuzz_targets/NAME.rs` calls. This is the short
//! smoke run of the fuzzers in the default suite; `scripts/fuzz SECONDS` runs them for real.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn every_corpus_file_goes_through_its_target() {
    let mut replayed = 0;
    for (name, body) in bot::fuzzing::all_targets() {
        let seeds = files(&fuzz_dir().join("corpus").join(name));
        assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seeds");
        for path in seeds {
            let data = std::fs::read(&path).expect("corpus file");
            // A panic names the file: rerun it with `cargo +nightly fuzz run NAME FILE`.
            eprintln!("{name}: {}", path.display());
            body(&data);
            replayed += 1;
        }
    }
    assert!(replayed >= 40, "only {replayed} corpus files");
}

#[test]
fn every_fuzz_target_has_a_body_and_a_corpus() {
    let on_disk: BTreeSet<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    let bodies: BTreeSet<String> =
        bot::fuzzing::all_targets().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(on_disk, bodies, "fuzz/fuzz_targets/*.rs and the crates' fuzzing::TARGETS");
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("manifest");
    for name in &bodies {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml lacks a [[bin]] for {name}"
        );
    }
}

#[test]
fn the_approval_seeds_verify_so_the_fuzzer_starts_on_the_accepting_path() {
    for seed in ["bot.json", "personal.json", "bot.raw", "personal.raw"] {
        let data = std::fs::read(fuzz_dir().join("corpus/approval").join(seed)).expect("seed");
        assert!(shared::fuzzing::approval_verifies(&data), "{seed} does not verify");
        let mut forged = data.clone();
        let last = forged.len() - 3;
        forged[last] ^= 1;
        assert!(!shared::fuzzing::approval_verifies(&forged), "{seed} changed still verifies");
    }
}

#[test]
fn the_chat_seeds_are_what_the_handlers_accept() {
    let corpus = fuzz_dir().join("corpus");
    for path in files(&corpus.join("discord_interaction")) {
        let data = std::fs::read(&path).expect("seed");
        if let Err(e) = bot::discord::decode(&data) {
            panic!("{}: {e}", path.display());
        }
    }
    for path in files(&corpus.join("slack_command")) {
        let data = std::fs::read(&path).expect("seed");
        assert!(bot::slack::decode_command(&data).is_some(), "{}", path.display());
    }
    let mut clicks = 0;
    for path in files(&corpus.join("slack_interaction")) {
        let data = std::fs::read(&path).expect("seed");
        match bot::slack::decode_interaction(&data) {
            Some(Some(ev)) => {
                let actions = ev.actions.unwrap_or_default();
                assert!(actions.iter().all(|a| bot::slack::click_of(a).is_some()));
                clicks += actions.len();
            }
            Some(None) => {}
            None => panic!("{}: not a form", path.display()),
        }
    }
    assert!(clicks >= 3, "the click seeds decode to clicks ({clicks})");
}
