//! Exit codes scripts can act on (README "Exit codes", DESIGN §1): 10 no repository, 11
//! locked by another process, 12 wrong password, from every command that opens a
//! repository; 2 for usage errors; and with `--json`, one `exit_error` object on stdout
//! when a command fails, with the human message still on stderr.

use std::ffi::OsString;

use projectclone::lock::{self, LockMode};

use crate::util::*;

/// Commands that open the repository at `-r`, each with the arguments it needs; `latest`
/// names a snapshot the repository holds.
fn opening_commands(env: &Env) -> Vec<Vec<OsString>> {
    let p = |s: &str| OsString::from(s);
    let at = |rel: &str| env.path(rel).into_os_string();
    vec![
        vec![p("backup"), at("src")],
        vec![p("snapshots")],
        vec![p("ls"), p("latest")],
        vec![p("cat"), p("latest"), p("a.txt")],
        vec![p("dump"), p("latest")],
        vec![p("diff"), p("latest"), p("latest")],
        vec![p("restore"), p("latest"), p("--target"), at("restored")],
        vec![p("export"), p("latest"), p("--clone"), at("clone")],
        vec![p("export"), p("latest"), p("--archive"), at("a.tar.gz")],
        vec![p("check")],
        vec![p("check"), p("--read-data")],
        vec![p("stats")],
        vec![p("stats"), p("latest")],
        vec![p("forget"), p("--keep-last"), p("1")],
        vec![p("prune")],
        vec![p("repair"), p("index")],
        vec![p("repair"), p("snapshots")],
        vec![p("key"), p("list")],
        vec![p("key"), p("add"), p("--new-password-file"), at("new.pw")],
        vec![p("unlock")],
        vec![p("status")],
        vec![p("trust")],
        vec![p("copy"), p("--to"), at("other")],
    ]
}

/// `cat` and `dump` write the snapshot's data on stdout, so they refuse `--json` (with
/// an `exit_error` object: see `other_failures_are_1_with_one_json_error`).
fn writes_data(args: &[OsString]) -> bool {
    args[0] == "cat" || args[0] == "dump"
}

/// The command failed with `code`, said so on stderr ("error: …" containing `needle`),
/// and printed exactly one `exit_error` object on stdout with that code and message.
#[track_caller]
fn assert_json_failure(out: &Out, code: i32, needle: &str, what: &str) {
    assert_eq!(
        out.code, code,
        "{what}: exit code\nstdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(
        out.stderr.contains("error: ") && out.stderr.contains(needle),
        "{what}: stderr should carry the error ({needle:?}): {}",
        out.stderr
    );
    let v = out.json();
    let obj = v.as_object().unwrap_or_else(|| panic!("{what}: not an object: {v}"));
    assert_eq!(obj.len(), 3, "{what}: exactly message_type, code, message: {v}");
    assert_eq!(v["message_type"], "exit_error", "{what}: {v}");
    assert_eq!(v["code"], code, "{what}: {v}");
    let msg = v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: message is a string: {v}"));
    assert!(msg.contains(needle), "{what}: the message says why ({needle:?}): {msg}");
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "{what}: one line on stdout: {:?}",
        out.stdout
    );
}

fn setup() -> Env {
    let env = Env::with_repo();
    write(env.path("src/a.txt"), b"alpha\n");
    write(env.path("new.pw"), b"another password\n");
    env.backup([env.path("src")]);
    // The destination of `copy`.
    let other = env.path("other");
    run(env
        .cmd_at(&other)
        .args(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"]))
    .success();
    env
}

#[test]
fn no_repository_is_10_for_every_command_that_opens_one() {
    let env = setup();
    let missing = env.path("no-such-repo");
    let not_repo = env.path("src");
    for args in opening_commands(&env) {
        for (repo, json) in [(&missing, false), (&missing, true), (&not_repo, true)] {
            if json && writes_data(&args) {
                continue;
            }
            let mut c = env.cmd_at(repo);
            if json {
                c.arg("--json");
            }
            let out = run(c.args(&args));
            let what = format!("{args:?} at {} (json: {json})", repo.display());
            if json {
                assert_json_failure(&out, 10, "not a projectclone repository", &what);
            } else {
                assert_eq!(out.code, 10, "{what}: {}", out.stderr);
                assert_eq!(out.stdout, "", "{what}: nothing on stdout");
                assert!(
                    out.stderr.contains("not a projectclone repository"),
                    "{what}: {}",
                    out.stderr
                );
            }
        }
    }
    assert!(!missing.exists(), "nothing was created at the missing location");
}

#[test]
fn wrong_password_is_12_for_every_command_that_opens_the_repository() {
    let env = setup();
    let before = fingerprint(&env.repo());
    for args in opening_commands(&env) {
        for json in [false, true] {
            if json && writes_data(&args) {
                continue;
            }
            let mut c = env.cmd();
            c.env("PROJECTCLONE_PASSWORD", "not the password");
            if json {
                c.arg("--json");
            }
            let out = run(c.args(&args));
            let what = format!("{args:?} (json: {json})");
            if json {
                assert_json_failure(&out, 12, "wrong password", &what);
            } else {
                assert_eq!(out.code, 12, "{what}: {}", out.stderr);
                assert_eq!(out.stdout, "", "{what}: nothing on stdout");
                assert!(out.stderr.contains("wrong password"), "{what}: {}", out.stderr);
            }
        }
    }
    assert_eq!(
        fingerprint(&env.repo()),
        before,
        "a refused command changed the repository"
    );
}

/// While another process holds an exclusive lock (a `repair` or `key` command), every
/// command that locks the repository is refused with 11 and names the holder.
#[test]
fn locked_by_another_process_is_11() {
    let env = setup();
    let f = Forge::open(&env);
    let _held = lock::acquire(&f.repo, LockMode::Exclusive, "repair").expect("lock");
    let before = fingerprint(&env.repo().join("snapshots"));
    let pid = format!("pid {}", std::process::id());
    let mut refused = Vec::new();
    let mut ran = std::collections::BTreeSet::new();
    for args in opening_commands(&env) {
        let out = env.run(&args);
        if out.code == 0 {
            ran.insert(args[0].to_string_lossy().into_owned());
            continue;
        }
        let what = format!("{args:?}");
        assert_eq!(out.code, 11, "{what}: only the lock may stop it: {}", out.stderr);
        assert!(
            out.stderr.contains("lock") && out.stderr.contains(&pid),
            "{what}: {}",
            out.stderr
        );
        if !writes_data(&args) {
            let mut c = env.cmd();
            let out = run(c.arg("--json").args(&args));
            assert_json_failure(&out, 11, &pid, &format!("{what} --json"));
        }
        refused.push(args[0].to_string_lossy().into_owned());
    }
    // Those that change the repository or read its data wait for the lock; those that
    // read only the snapshot list and metadata (and `unlock`, which leaves a live lock) run
    // (README "Exit codes").
    let expect_ran = ["diff", "ls", "snapshots", "stats", "status", "trust", "unlock"];
    assert_eq!(
        ran,
        expect_ran.iter().map(|s| s.to_string()).collect(),
        "refused: {refused:?}"
    );
    for cmd in [
        "backup", "cat", "dump", "restore", "export", "check", "forget", "prune", "repair", "key", "copy",
    ] {
        assert!(
            refused.iter().any(|c| c == cmd),
            "{cmd} ran despite the lock: {refused:?}"
        );
    }
    assert_eq!(fingerprint(&env.repo().join("snapshots")), before);
}

/// Any other failure is 1, with the same JSON shape.
#[test]
fn other_failures_are_1_with_one_json_error() {
    let env = setup();
    let target = env.path("t");
    for (args, needle) in [
        (
            vec!["restore", "0123456789", "--target", target.to_str().unwrap()],
            "0123456789",
        ),
        (vec!["ls", "zz"], "4 of its hex digits"),
        (vec!["stats", "0123456789"], "0123456789"),
    ] {
        let out = env.run(&args).code(1);
        assert_eq!(out.stdout, "", "{args:?}");
        let out = run(env.cmd().arg("--json").args(&args));
        assert_json_failure(&out, 1, needle, &format!("{args:?}"));
    }
    // cat and dump cannot share stdout with JSON: a plain error, and the object.
    for args in [["cat", "latest", "a.txt"], ["dump", "latest", "src"]] {
        let out = run(env.cmd().arg("--json").args(args));
        assert_json_failure(&out, 1, "--json", &format!("{args:?}"));
    }
    // A backup of a path that does not exist.
    let out = run(env.cmd().args(["--json", "backup"]).arg(env.path("gone")));
    assert_json_failure(&out, 1, "gone", "backup of a missing path");
    // Control characters in the message stay exact in JSON (escaped by JSON itself).
    let odd = env.path("bad\nname");
    let out = run(env.cmd().args(["--json", "backup"]).arg(&odd));
    assert_json_failure(&out, 1, "bad\nname", "backup of a missing path with a newline");
}

/// Usage errors: exit 2, the clap message on stderr, and with `--json` an `exit_error`
/// object on stdout (wherever --json stands on the line).
#[test]
fn usage_errors_are_2_and_json_when_asked() {
    let env = Env::with_repo();
    for (args, needle) in [
        (vec!["--json", "backup", "--frobnicate"], "--frobnicate"),
        (vec!["snapshots", "--json", "--no-such-flag"], "--no-such-flag"),
        (vec!["--json", "restore", "latest"], "--target"),
        (vec!["--json", "completions", "tcsh"], "tcsh"),
        (vec!["--json", "init", "--pack-size", "0"], "--pack-size"),
    ] {
        let out = env.run(&args);
        assert_json_failure(&out, 2, needle, &format!("{args:?}"));
        let msg = out.json()["message"].as_str().unwrap().to_string();
        assert!(
            !msg.starts_with("error:") && !msg.contains("Usage:"),
            "just the message: {msg:?}"
        );
        let plain: Vec<&str> = args.iter().copied().filter(|a| *a != "--json").collect();
        let out = env.run(&plain).code(2);
        assert_eq!(out.stdout, "", "{plain:?}: nothing on stdout without --json");
        assert!(out.stderr.contains(needle), "{plain:?}: {}", out.stderr);
    }
    // A bad repository location is a usage error too.
    let out = run(env.bare().args(["--json", "-r", "s3:", "snapshots"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.json()["code"], 2);
    // --help and --version print their text, not an error object, and succeed.
    for args in [["--json", "--help"], ["--json", "--version"]] {
        let out = env.run(args).success();
        assert!(
            serde_json::from_str::<serde_json::Value>(&out.stdout).is_err(),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains("projectclone"), "{}", out.stdout);
    }
}

/// A command that printed its result and then failed (a post hook) adds no second
/// document: stdout stays one JSON document.
#[test]
fn a_failure_after_the_result_keeps_stdout_one_document() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.txt"), b"a");
    write(src.join(".projectclone.toml"), b"[hooks]\npost-backup = \"exit 7\"\n");
    // Hooks of a project file need trust.
    run(env.cmd().current_dir(&src).args(["config", "trust"])).success();
    let out = run(env.cmd().current_dir(&src).args(["--json", "backup"]).arg(&src));
    assert_eq!(out.code, 1, "the post hook's failure fails the run: {}", out.stderr);
    let v = out.json();
    assert!(v["snapshot_id"].is_string(), "the backup's own document: {v}");
    assert!(out.stderr.contains("error: "), "{}", out.stderr);
}
