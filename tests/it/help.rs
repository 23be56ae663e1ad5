//! Help and version (issue 18 item 4): global options under their own heading, examples
//! in each command's long help, the SNAP syntax explained once and pointed to, and
//! `--version` with the git commit (build.rs) and the repository format version.
//! (src/cli/completions.rs checks the clap tree itself: every argument has a help text.)

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// The lines of `text` under the line `heading`, up to the next heading (a line that is
/// not indented).
fn section<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| l.trim_end() != heading)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect()
}

/// `s` with each run of white space made one space (help text is wrapped to the width).
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn global_options_are_listed_under_their_own_heading() {
    let env = Env::new();
    for args in [
        vec!["--help"],
        vec!["backup", "--help"],
        vec!["restore", "-h"],
        vec!["help", "snapshots"],
    ] {
        let out = env.run(&args).success();
        let globals = section(&out.stdout, "Global options:");
        let own = section(&out.stdout, "Options:");
        let has = |lines: &[&str], flag: &str| lines.iter().any(|l| l.trim_start().contains(flag));
        for flag in [
            "--repo",
            "--password-file",
            "--cache-dir",
            "--json",
            "--quiet",
            "--verbose",
        ] {
            assert!(
                has(&globals, flag),
                "{args:?}: {flag} under Global options:\n{}",
                out.stdout
            );
            assert!(
                !has(&own, flag),
                "{args:?}: {flag} not among the command's options:\n{}",
                out.stdout
            );
        }
        if args[0] == "backup" {
            for flag in ["--tag", "--note", "--exclude", "--dry-run"] {
                assert!(has(&own, flag), "backup's {flag} under Options:\n{}", out.stdout);
            }
        }
    }
}

#[test]
fn long_help_has_examples_and_explains_snap_once() {
    let env = Env::new();
    let top = env.run(["--help"]).success().stdout;
    for needle in [
        "SNAP",
        "latest",
        "at least 4 hex digits",
        "Exit codes:",
        "exit_error",
        "Examples:",
    ] {
        assert!(top.contains(needle), "top-level --help lacks {needle:?}:\n{top}");
    }
    // -h is the short form: no examples.
    let short = env.run(["-h"]).success().stdout;
    assert!(!short.contains("Examples:"), "{short}");
    for cmd in [
        "backup",
        "restore",
        "export",
        "snapshots",
        "prune",
        "check",
        "ls",
        "completions",
        "man",
    ] {
        let long = env.run([cmd, "--help"]).success().stdout;
        let examples = section(&long, "Examples:").join("\n");
        let examples = if examples.is_empty() {
            long.clone() // completions: "Install …" lines instead
        } else {
            examples
        };
        assert!(
            examples.contains(&format!("projectclone {cmd}")) || examples.contains(&format!("| projectclone {cmd}")),
            "{cmd} --help has no example of itself:\n{long}"
        );
        let short = env.run([cmd, "-h"]).success().stdout;
        assert!(!short.contains("Examples:"), "{cmd} -h is the short help:\n{short}");
    }
    for cmd in ["restore", "ls", "export", "diff", "forget"] {
        let long = env.run([cmd, "--help"]).success().stdout;
        assert!(
            flat(&long).contains("see SNAP in `projectclone --help`"),
            "{cmd}:\n{long}"
        );
    }
}

/// The short commit of the checkout this test runs in, or None outside a git checkout.
fn head_commit(dir: &Path) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_shows_package_commit_and_format() {
    let env = Env::new();
    let v = env.run(["--version"]).success().stdout;
    let commit = head_commit(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|| "unknown".into());
    let want = format!(
        "projectclone {} (commit {commit}, repository format {})\n",
        env!("CARGO_PKG_VERSION"),
        projectclone::format::FORMAT_VERSION
    );
    assert_eq!(v, want);
    assert_eq!(env.run(["-V"]).success().stdout, want);
}

/// build.rs on its own: in a git checkout it embeds `git rev-parse --short HEAD`, without
/// one (a source tarball, no .git) "unknown", and a packager's PROJECTCLONE_GIT_COMMIT wins.
#[test]
fn build_script_embeds_the_commit_or_unknown() {
    let env = Env::new();
    let script = env.path("build-script");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .args(["--edition", "2024", "-O", "-o"])
        .arg(&script)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("build.rs"))
        .output()
        .expect("rustc runs");
    assert!(
        out.status.success(),
        "build.rs compiles: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let embedded = |dir: &PathBuf, given: Option<&str>| -> String {
        let mut c = Command::new(&script);
        c.env("CARGO_MANIFEST_DIR", dir).env_remove("PROJECTCLONE_GIT_COMMIT");
        if let Some(g) = given {
            c.env("PROJECTCLONE_GIT_COMMIT", g);
        }
        let out = c.output().expect("build script runs");
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("cargo:rustc-env=PROJECTCLONE_GIT_COMMIT="))
            .unwrap_or_else(|| panic!("no PROJECTCLONE_GIT_COMMIT line: {stdout}"))
            .to_string()
    };
    let plain = env.path("tarball");
    std::fs::create_dir_all(&plain).unwrap();
    assert_eq!(embedded(&plain, None), "unknown", "no .git: unknown");
    assert_eq!(embedded(&plain, Some("1234abc")), "1234abc");

    let checkout = env.path("checkout");
    std::fs::create_dir_all(&checkout).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&checkout)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .output()
            .expect("git is installed");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    write(checkout.join("f"), b"x");
    git(&["add", "f"]);
    git(&["commit", "-q", "-m", "one"]);
    let head = head_commit(&checkout).expect("a commit");
    assert_eq!(embedded(&checkout, None), head);
}
