//! The breakglass recording format: everything that writes, reads, indexes and verifies a
//! session recording, and nothing that runs a session. Pure: no russh, no tokio, no network;
//! the writer goes to any `impl Write` with the time passed in, the trackers take bytes and
//! return what they saw. The gateway (`recorder`) records through it; the bot and the CLI
//! (replay, audit verify, review pages) read and verify through it without linking the
//! gateway's SSH stack. A tidy test holds it so
//! (`tests/tests/tidy.rs` `the_format_crate_links_no_ssh_or_async_runtime`).
//!
//! The library is named `format` (package `breakglass-format`): it is the recording format,
//! and `recording` would read like the gateway's own `recorder::recording` (one live
//! session's file) in the crate that uses both. `format` names no module of any workspace
//! crate, and the `format!` macro lives in another namespace, so `format::cast` is unambiguous.
//!
//! # Layout
//!
//! - [`cast`]: asciicast v2 writer and reader, with breakglass's header and annotations.
//! - [`commands`]: command extraction from a terminal emulation of the session.
//! - [`transfer`]: SFTP and scp transfer observers.
//! - [`replay`]: the replay sanitizer and player (what reaches the reviewer's terminal).
//! - [`integrity`]: the signed recording statement, signing and verifying.
//! - [`store`]: where recordings live (the port both sides go through, and the local folder).
//! - [`fuzzing`]: the bodies of the fuzz targets for the parsers above (`fuzz/`).

// The transfer trackers' test helpers are one file shared with the integration tests, which
// name the crate `format`: inside the crate's own tests that name is the crate itself.
#[cfg(test)]
extern crate self as format;

pub mod cast;
pub mod commands;
pub mod fuzzing;
pub mod integrity;
pub mod replay;
pub mod store;
pub mod transfer;
