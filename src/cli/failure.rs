//! How a failed run ends: the error on stderr and its exit code (README "Exit codes"),
//! and with `--json` restic's `exit_error` object as the one document on stdout (usage
//! errors too, as far as the command line could be read).

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{exit_code, output, print_error};

/// Set once the command printed its result: a failure after it (a post hook) must not
/// add a second JSON document to stdout.
static PRINTED: AtomicBool = AtomicBool::new(false);

/// The command's result has been printed.
pub fn printed() {
    PRINTED.store(true, Ordering::SeqCst);
}

/// Report `e` (stderr; stdout too with `--json`) and return the exit code.
pub fn failed(json: bool, e: &anyhow::Error) -> u8 {
    let code = exit_code(e);
    print_error(e);
    if json && !PRINTED.load(Ordering::SeqCst) {
        output::exit_error(code, &format!("{e:#}"));
    }
    code
}

/// A signal ends the run (exit `code`): with `--json`, its `exit_error` object, unless the
/// command printed its result already.
pub fn signalled(json: bool, code: u8, message: &str) {
    if json && !PRINTED.swap(true, Ordering::SeqCst) {
        output::exit_error(code, message);
    }
}

/// Whether `--json` is on a command line that clap could not parse (before any `--`).
fn wants_json(argv: &[OsString]) -> bool {
    argv.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json" || a == "--json-status")
}

/// End the process for a command line clap refused: its message on stderr, and with
/// `--json` an `exit_error` object on stdout (not for `--help` and `--version`, whose
/// text is the requested output).
pub fn usage_error(e: clap::Error, argv: &[OsString]) -> ! {
    if e.use_stderr() && wants_json(argv) {
        let rendered = e.render().to_string();
        let message: Vec<&str> = rendered
            .trim()
            .split("\n\n")
            .take_while(|p| !p.starts_with("Usage:") && !p.starts_with("For more information"))
            .collect();
        let message = message.join("\n");
        output::exit_error(
            u8::try_from(e.exit_code()).unwrap_or(2),
            message.strip_prefix("error: ").unwrap_or(&message),
        );
    }
    e.exit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_asked_for_only_before_a_double_dash() {
        let v = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(wants_json(&v(&["projectclone", "--json", "frob"])));
        assert!(wants_json(&v(&["projectclone", "backup", "--json", "--frob"])));
        assert!(!wants_json(&v(&["projectclone", "backup", "--", "--json"])));
        assert!(!wants_json(&v(&["projectclone", "backup", "--frob"])));
    }
}
