//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds the files of
//! `migrations/sqlite` and `migrations/postgres` at compile time, and Cargo does not see them
//! on its own.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
