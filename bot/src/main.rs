//! The `breakglass` binary: parse the command line, set up tracing, run the command.
//!
//! Every file it creates is private: the umask is 077 from the first line (recordings hold
//! keystrokes, the database holds the audit log).

use std::process::ExitCode;

use std::io::IsTerminal as _;

use clap::Parser as _;

fn main() -> ExitCode {
    bot::app::private_umask();
    let cli = bot::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BREAKGLASS_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("breakglass: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(bot::cli::run(cli))
}
