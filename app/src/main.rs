//! The `breakglass` binary: parse the command line, set up logging, run the command.
//!
//! Every file it creates is private: the umask is 077 from the first line (recordings hold
//! keystrokes, the database holds the audit log).

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    bot::app::private_umask();
    let cli = app::cli::Cli::parse();
    let format = match bot::logging::resolve(cli.command.log_format()) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            return ExitCode::from(app::cli::EXIT_USAGE);
        }
    };
    bot::logging::init(format, cli.command.is_service());
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            bot::logging::failure(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(app::cli::run(cli))
}
