//! Issue 20 item 2: the Python package. `pip install ./python` builds it from the checkout
//! (maturin from PyPI, the bindings in `python/src/lib.rs`) into a virtual environment of
//! its own, and its pytest suite (`python/tests/`) runs there against real repositories.

use std::path::Path;
use std::process::Command;

/// Run `c`; its standard output when it succeeds.
fn run(what: &str, c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_python_package_installs_from_the_checkout_and_passes_its_pytest_suite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let venv = work.path().join("venv");
    run(
        "python3 -m venv",
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
    );
    let python = venv.join("bin/python");
    // The extension is built unoptimized (the tests use small repositories): a third of
    // the release build's time. Its cargo output stays in python/target between runs.
    run(
        "pip install ./python[test]",
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("{}[test]", root.join("python").display()))
            .env("MATURIN_PEP517_ARGS", "--profile dev")
            .env("CARGO_TARGET_DIR", root.join("python/target"))
            .env_remove("CARGO")
            .env_remove("RUSTFLAGS"),
    );
    let report = run(
        "pytest python/tests",
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .arg(root.join("python/tests"))
            .current_dir(work.path())
            .env("HOME", work.path())
            .env("XDG_CACHE_HOME", work.path().join("xdg-cache"))
            .env("XDG_STATE_HOME", work.path().join("xdg-state")),
    );
    // Every test of the suite ran and passed: none skipped, none collected away.
    let defined = std::fs::read_to_string(root.join("python/tests/test_projectclone.py"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("def test_"))
        .count();
    assert!(
        report.contains(&format!("{defined} passed")) && !report.contains("skipped"),
        "expected {defined} passed:\n{report}"
    );
}
