//! SIGINT and SIGTERM: remove this process's lock objects and the temporary files of its
//! repository writes in progress (`projectclone::backend::cleanup`), then exit with 128 +
//! the signal number (130, 143), as a shell reports a process killed by it; with `--json`
//! an `exit_error` object on stdout first.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Start the thread that waits for SIGINT and SIGTERM. Without it (the signals cannot be
/// caught, or no thread can be started) they keep their default action: the process ends
/// at once, as after a kill, which the repository is built to survive.
pub fn install(json: bool) {
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot catch SIGINT and SIGTERM ({e}); stopping leaves a lock behind");
            return;
        }
    };
    let started = std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            // A prompt may have turned echo off or hidden the cursor.
            crate::cli::interactive::restore_terminal();
            // A progress line may be on screen: start on a fresh line (not in JSON logs).
            if !crate::cli::report::json() {
                eprintln!();
            }
            for e in projectclone::backend::cleanup::interrupted() {
                crate::cli::report::error("signal.cleanup_failed", &e.to_string(), &[]);
            }
            let message = format!("stopped by {name}: nothing unfinished was kept; run the command again to finish");
            crate::cli::report::error("signal.stopped", &message, &[("signal", name.into())]);
            // With --json, a stop is a failure like others: one exit_error object on stdout.
            crate::cli::failure::signalled(json, 128 + sig as u8, &message);
            std::process::exit(128 + sig);
        }
    });
    if let Err(e) = started {
        tracing::warn!("cannot start the signal thread ({e}); stopping leaves a lock behind");
    }
}
