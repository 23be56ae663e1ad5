//! The `projectclone` binary: parses arguments, sets up logging, calls the library and
//! maps errors to exit codes (0 ok, 1 error, 2 usage, 3 backup saved with unreadable files).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(&args);
    match cli::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
