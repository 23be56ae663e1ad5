//! SIGINT and SIGTERM: remove this process's lock objects and the temporary files of its
//! repository writes in progress (`projectclone::backend::cleanup`), then exit with 128 +
//! the signal number (130, 143), as a shell reports a process killed by it; with `--json`
//! an `exit_error` object on stdout first.

use std::path::PathBuf;
use std::sync::Mutex;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The folder `mount` serves, while it does: a stop detaches it and ends the command as
/// done (exit 0), since Ctrl-C is how a mount is meant to end.
static MOUNT: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Say which folder this process has mounted (`None` once unmounted).
pub fn set_mount(dir: Option<PathBuf>) {
    *MOUNT.lock().unwrap_or_else(|p| p.into_inner()) = dir;
}

/// While `watch` waits for changes: a stop then ends it as done (exit 0) with this message,
/// since nothing is unfinished.
static IDLE: Mutex<Option<String>> = Mutex::new(None);

/// Say that this process is idle (`Some(message)`) or busy again (`None`).
pub fn set_idle(message: Option<String>) {
    *IDLE.lock().unwrap_or_else(|p| p.into_inner()) = message;
}

/// Detach the mount at `dir` (lazily: a process still inside it keeps it until it leaves).
fn detach(dir: &std::path::Path) -> std::io::Result<()> {
    rustix::mount::unmount(dir, rustix::mount::UnmountFlags::DETACH).map_err(std::io::Error::from)
}

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
            let idle = IDLE.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(message) = idle {
                for e in projectclone::backend::cleanup::interrupted() {
                    crate::cli::report::error("signal.cleanup_failed", &e.to_string(), &[]);
                }
                if !crate::cli::report::json() {
                    eprintln!("\n{message} ({name})");
                }
                std::process::exit(0);
            }
            let mounted = MOUNT.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(dir) = mounted {
                if let Err(e) = detach(&dir) {
                    crate::cli::report::error(
                        "mount.unmount_failed",
                        &format!(
                            "{}: could not unmount ({e}); `umount {}` does",
                            dir.display(),
                            dir.display()
                        ),
                        &[],
                    );
                }
                for e in projectclone::backend::cleanup::interrupted() {
                    crate::cli::report::error("signal.cleanup_failed", &e.to_string(), &[]);
                }
                if !crate::cli::report::json() {
                    eprintln!("\nunmounted {} ({name})", dir.display());
                }
                std::process::exit(0);
            }
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
