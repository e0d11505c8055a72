//! The `breakglass` binary's library: the command line and the composition root.
//!
//! This is the only crate that links both the bot (`bot`) and the SSH gateway (`recorder`):
//! `cargo tree -p breakglass-bot` shows no russh.
//!
//! # Layout
//!
//! - [`cli`]: the clap definitions (every subcommand, its `--help` text and examples), the
//!   documented exit codes, option resolution, dispatch, and the printing of client answers.
//! - [`commands`]: what each subcommand does, one module per group.
//! - [`compose`]: the composition root: one entry, [`compose::run`], builds the process of a
//!   mode (`up`, `bot`, `gateway`) from a validated config and runs it under one
//!   cancellation tree.
//! - [`review_cli`]: `breakglass review`, `search`, `replay` (verify, then play through
//!   `format::replay`) and `recording bundle`.

/// `println!` for command output that never panics: a closed pipe (`breakglass list | head -1`)
/// ends the process quietly (see [`cli::stdout_line`]).
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::stdout_line(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics (standard error may be a closed pipe too).
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod cli;
pub mod commands;
pub mod compose;
pub mod review_cli;
