//! The `projectclone` binary: parses arguments, sets up logging and the SIGINT/SIGTERM
//! clean-up, calls the library and maps errors to exit codes (0 ok, 1 error, 2 usage, 3
//! backup saved with unreadable files, 10 no repository, 11 locked, 12 wrong password;
//! 130 and 143 after SIGINT and SIGTERM); with `--json`, a failure's `exit_error` object.

mod cli;
mod signals;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    // First of all: a core dump would write the password and the keys to disk.
    let no_core = disable_core_dumps();
    // The older tool's `projectclone NOTE [--archive] …` is routed to a hidden subcommand.
    let argv = cli::old_syntax::route(std::env::args_os().collect());
    // No arguments on a terminal: the guided first backup.
    let argv = cli::interactive::no_arguments(argv);
    let matches = cli::Cli::command()
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| cli::failure::usage_error(cli::old_syntax::explain(e, &argv), &argv));
    let mut args = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| cli::failure::usage_error(e, &argv));
    // `--json-status` is JSON output with status lines before the result.
    args.json |= args.json_status;
    let json = args.json;
    // Backups (and imports) allocate and free a buffer per chunk: below 2 MiB those stay
    // on the heap (each mmap'd one costs page faults; 256 KiB cost 9% more CPU). Other
    // commands reuse their large buffers, so any large block may go back to the system.
    tune_malloc(if args.chunks_files() { 2 << 20 } else { 256 << 10 });
    cli::init_logging(&args);
    if let Err(e) = no_core {
        tracing::warn!(
            "could not disable core dumps (setrlimit RLIMIT_CORE 0: {e}); a crash could write the password and keys to disk"
        );
    }
    signals::install(json);
    match cli::run(args, &matches) {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(cli::failure::failed(json, &e)),
    }
}

/// Set the core-file size limit, soft and hard, to 0: the process's memory holds the
/// password and the repository keys, and a crash must not write them to a core file.
fn disable_core_dumps() -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let none = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    setrlimit(Resource::Core, none).map_err(std::io::Error::from)
}

/// glibc's malloc raises its mmap threshold to the size of any large block freed (up to
/// 32 MiB); from then on chunk-sized buffers come from the heap and stay resident after
/// they are freed. A fixed threshold hands blocks of at least `bytes` back to the system:
/// a 130k-file restore peaked at 70 MB instead of 80, a backup of it at 90 MB instead of
/// 105-117.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc(bytes: i32) {
    // SAFETY: mallopt only sets a tuning parameter of the allocator, and no other thread
    // exists yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc(_bytes: i32) {}
