//! The `breakglass` executable itself. Cargo builds a package's binaries for its integration
//! tests, so this test is also what leaves `target/<profile>/breakglass` behind for the
//! end-to-end suite (`breakglass-e2e`) when `cargo nextest run --workspace` runs.

#[test]
fn the_binary_starts_and_says_its_version() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_breakglass"))
        .arg("--version")
        .output()
        .expect("running breakglass --version");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("breakglass {}", env!("CARGO_PKG_VERSION"))
    );
}
