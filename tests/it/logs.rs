//! Logs and verbosity (README "Logs and verbosity"): `-q` is errors only for every
//! command, `-v` lists what a backup reads, skips and why, `-vv` is projectclone's debug
//! and not its dependencies', `--log-json` makes every stderr line a JSON object, no
//! colour on a redirected stderr; and the counts and words of backup, restore and export
//! agree (each unreadable file named once, racy-clean re-reads not "changed", an
//! `--include` that matches nothing warned about, the user's name recorded).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::util::*;

/// Every line of stderr as a JSON object with the envelope keys.
#[track_caller]
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {l:?}\n{stderr}"));
            for k in ["level", "id", "message"] {
                assert!(v[k].is_string(), "{k} missing in {l}");
            }
            v
        })
        .collect()
}

fn with_id<'a>(lines: &'a [Value], id: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["id"] == id).collect()
}

/// A source tree with a file nobody may read, a `*.log` file for `--exclude '*.log'` and
/// one `.projectcloneignore` rule; reachable by uid 65534.
fn unreadable_tree(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    write(src.join("ok.txt"), b"readable\n");
    write(src.join("noise.log"), b"log\n");
    write(src.join("sub/.projectcloneignore"), b"tmp/\n");
    write(src.join("sub/tmp/x"), b"x\n");
    write(src.join("secret.txt"), b"not readable\n");
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    world_accessible(&env.repo());
    world_accessible(&env.cache());
    world_accessible(&src);
    fs::set_permissions(src.join("secret.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    src
}

#[test]
fn log_json_makes_every_stderr_line_an_object() {
    let env = Env::with_repo();
    let src = unreadable_tree(&env);
    let out = run(env
        .cmd_as_nobody()
        .args(["--log-json", "-v", "backup", "--exclude", "*.log"])
        .arg(&src))
    .code(3);
    out.snapshot_id();
    let lines = json_lines(&out.stderr);
    let unreadable = with_id(&lines, "backup.unreadable");
    assert_eq!(
        unreadable.len(),
        1,
        "the unreadable file is reported once:\n{}",
        out.stderr
    );
    assert_eq!(unreadable[0]["level"], "error");
    assert!(
        unreadable[0]["path"].as_str().unwrap().ends_with("/secret.txt"),
        "{}",
        unreadable[0]
    );
    let excluded = with_id(&lines, "backup.excluded");
    let by_glob = excluded
        .iter()
        .find(|v| v["path"].as_str().unwrap().ends_with("/noise.log"))
        .unwrap_or_else(|| panic!("noise.log excluded:\n{}", out.stderr));
    assert_eq!(by_glob["rule"], "--exclude *.log");
    let by_file = excluded
        .iter()
        .find(|v| v["path"].as_str().unwrap().ends_with("/sub/tmp"))
        .unwrap_or_else(|| panic!("sub/tmp excluded:\n{}", out.stderr));
    assert!(
        by_file["rule"]
            .as_str()
            .unwrap()
            .ends_with("sub/.projectcloneignore: tmp/"),
        "{by_file}"
    );
    let read = with_id(&lines, "backup.read_new");
    assert!(
        read.iter()
            .any(|v| v["path"].as_str().unwrap().ends_with("/ok.txt") && v["bytes"] == 9),
        "ok.txt read as new:\n{}",
        out.stderr
    );
    let summary = with_id(&lines, "backup.summary");
    assert_eq!(summary.len(), 1, "{}", out.stderr);
    assert_eq!(summary[0]["level"], "info");

    // Other commands, and a failing one.
    let out = env.run(["--log-json", "check"]).success();
    json_lines(&out.stderr);
    let out = env.run(["--log-json", "-v", "prune"]).success();
    json_lines(&out.stderr);
    let target = env.path("t");
    let out = env
        .run([
            "--log-json".as_ref(),
            "restore".as_ref(),
            "ffffffff".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ])
        .code(1);
    let lines = json_lines(&out.stderr);
    let failed = with_id(&lines, "command.failed");
    assert_eq!(failed.len(), 1, "{}", out.stderr);
    assert_eq!(failed[0]["level"], "error");
    assert!(
        failed[0]["message"].as_str().unwrap().contains("ffffffff"),
        "{}",
        out.stderr
    );
    // Without a repository (exit 10), before any is opened.
    let out = run(env.cmd_at(&env.path("nothing-here")).args(["--log-json", "snapshots"])).code(10);
    assert!(!json_lines(&out.stderr).is_empty());
}

#[test]
fn verbose_lists_what_a_backup_reads_and_skips_and_names_an_unreadable_file_once() {
    let env = Env::with_repo();
    let src = unreadable_tree(&env);
    let out = run(env
        .cmd_as_nobody()
        .args(["-v", "backup", "--exclude", "*.log"])
        .arg(&src))
    .code(3);
    let err = &out.stderr;
    assert_eq!(err.matches("secret.txt").count(), 1, "named once:\n{err}");
    assert!(
        err.contains(&format!("error: {}: ", src.join("secret.txt").display())),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "excluded: {} (--exclude *.log)",
            src.join("noise.log").display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("read, new: {}", src.join("ok.txt").display())),
        "{err}"
    );
    assert!(!err.contains('\x1b'), "no colour on a redirected stderr:\n{err:?}");
    // What the store was asked, as --json reports it under `storage`.
    assert!(err.contains("repository storage: "), "{err}");
    assert!(err.contains(" requests (0 tried again), "), "{err}");
    // Without -v: the error and the summary, no listing.
    let out = run(env.cmd_as_nobody().args(["backup", "--exclude", "*.log"]).arg(&src)).code(3);
    assert_eq!(out.stderr.matches("secret.txt").count(), 1, "{}", out.stderr);
    assert!(
        !out.stderr.contains("excluded:") && !out.stderr.contains("read, new") && !out.stderr.contains("read, changed"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("does not contain"), "{}", out.stderr);
    assert!(!out.stderr.contains("repository storage"), "{}", out.stderr);

    // A changed file is listed as changed; an unmodified one is not read.
    write(src.join("ok.txt"), b"readable, and changed\n");
    fs::set_permissions(src.join("ok.txt"), fs::Permissions::from_mode(0o666)).unwrap();
    let out = run(env
        .cmd_as_nobody()
        .args(["-v", "backup", "--exclude", "*.log"])
        .arg(&src))
    .code(3);
    assert!(
        out.stderr
            .contains(&format!("read, changed: {}", src.join("ok.txt").display())),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("sub/tmp/x"), "{}", out.stderr);
}

#[test]
fn vv_is_projectclone_debug_not_dependencies() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.txt"), b"a");
    write(src.join(".projectcloneignore"), b"*.tmp\n");
    age_tree(&src);
    env.backup([&src]);
    let out = env.run(["-vv".as_ref(), "backup".as_ref(), src.as_os_str()]).success();
    assert!(
        out.stderr.contains("debug: "),
        "projectclone's debug events:\n{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(&format!("debug: unmodified: {}", src.join("a.txt").display())),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains('\x1b'),
        "no colour on a redirected stderr:\n{:?}",
        out.stderr
    );
    let out = env
        .run([
            "--log-json".as_ref(),
            "-vv".as_ref(),
            "backup".as_ref(),
            src.as_os_str(),
        ])
        .success();
    let lines = json_lines(&out.stderr);
    assert!(lines.iter().any(|v| v["level"] == "debug"), "{}", out.stderr);
    let deps: Vec<_> = lines
        .iter()
        .filter(|v| v["id"].as_str().unwrap().ends_with(".log"))
        .collect();
    assert!(deps.is_empty(), "dependencies' events at -vv: {deps:?}");
    // PROJECTCLONE_LOG still chooses: everybody's debug (globset logs when it builds a set).
    let out = run(env
        .cmd()
        .env("PROJECTCLONE_LOG", "debug")
        .args(["--log-json", "backup"])
        .arg(&src))
    .success();
    let lines = json_lines(&out.stderr);
    assert!(
        lines.iter().any(|v| v["id"].as_str().unwrap().ends_with(".log")),
        "a dependency's debug event with PROJECTCLONE_LOG=debug:\n{}",
        out.stderr
    );
}

#[test]
fn quiet_is_errors_only_for_every_command() {
    let env = Env::new();
    let src = env.path("src");
    write(src.join("a.txt"), b"a");
    let silent = |out: Out, what: &str| {
        assert_eq!(out.stderr, "", "{what} -q: stderr");
        out
    };
    silent(
        env.run(["-q", "init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"])
            .success(),
        "init",
    )
    .stdout
    .is_empty()
    .then_some(())
    .expect("init -q prints nothing on stdout");
    let id = silent(
        env.run(["-q".as_ref(), "backup".as_ref(), src.as_os_str()]).success(),
        "backup",
    )
    .snapshot_id();
    let pwfile = env.path("pw2");
    write(&pwfile, b"another password");
    for args in [
        vec![
            "key".as_ref(),
            "add".as_ref(),
            "--new-password-file".as_ref(),
            pwfile.as_os_str(),
        ],
        vec!["check".as_ref()],
        vec!["check".as_ref(), "--read-data".as_ref()],
        vec!["prune".as_ref()],
        vec!["unlock".as_ref()],
        vec![
            "restore".as_ref(),
            id.as_ref(),
            "--target".as_ref(),
            env.path("t").as_os_str(),
        ],
        vec![
            "export".as_ref(),
            id.as_ref(),
            "--clone".as_ref(),
            env.path("c").as_os_str(),
        ],
        vec!["forget".as_ref(), id.as_ref()],
        vec!["prune".as_ref()],
    ] {
        let mut c = env.cmd();
        c.arg("-q").args(&args);
        let out = run(&mut c).success();
        let what = format!("{args:?}");
        assert_eq!(out.stderr, "", "{what} -q: stderr");
        assert_eq!(out.stdout, "", "{what} -q: stdout");
    }
    // What a command is for stays: a listing is its result.
    let out = env.run(["-q", "key", "list"]).success();
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    // Errors stay.
    let out = env.run(["-q", "restore", "ffffffff", "--target", "x"]).code(1);
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
}

#[test]
fn restore_include_that_matches_nothing_warns() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.txt"), b"a");
    write(src.join("d/b.txt"), b"b");
    let id = env.backup([&src]);
    let t = env.path("t1");
    let out = env
        .run([
            "restore".as_ref(),
            id.as_ref(),
            "--include".as_ref(),
            "a.txt".as_ref(),
            "--include".as_ref(),
            "nope*".as_ref(),
            "--target".as_ref(),
            t.as_os_str(),
        ])
        .success();
    assert!(
        out.stderr.contains("warning: --include \"nope*\" matches no entry"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("a.txt\" matches"), "{}", out.stderr);
    assert_eq!(fs::read(t.join("a.txt")).unwrap(), b"a");
    // Nothing matched at all: nothing restored, a warning, exit 0 (as restic).
    let t = env.path("t2");
    let out = env
        .run([
            "--json".as_ref(),
            "restore".as_ref(),
            id.as_ref(),
            "--include".as_ref(),
            "zzz".as_ref(),
            "--target".as_ref(),
            t.as_os_str(),
        ])
        .success();
    assert!(
        out.stderr.contains("warning: no --include pattern (\"zzz\")"),
        "{}",
        out.stderr
    );
    assert_eq!(out.json()["unmatched_includes"], serde_json::json!(["zzz"]));
    assert_eq!(out.json()["files"], 0);
    // A pattern matching inside an included folder counts as matched.
    let t = env.path("t3");
    let out = env
        .run([
            "restore".as_ref(),
            id.as_ref(),
            "--include".as_ref(),
            "d".as_ref(),
            "--include".as_ref(),
            "b.txt".as_ref(),
            "--target".as_ref(),
            t.as_os_str(),
        ])
        .success();
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}

#[test]
fn username_comes_from_the_passwd_database_without_user() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.txt"), b"a");
    run(env.cmd().env_remove("USER").arg("backup").arg(&src)).success();
    run(env.cmd().env("USER", "someone").arg("backup").arg(&src)).success();
    let snaps = env.snapshots();
    let mut names: Vec<&str> = snaps.iter().map(|s| s["username"].as_str().unwrap()).collect();
    names.sort();
    // Tests run as root.
    assert_eq!(names, ["root", "someone"]);
}

/// Files, dirs, symlinks, a hard-link pair, an empty dir and a FIFO.
fn mixed_tree(root: &Path) {
    write(root.join("f1"), b"one");
    write(root.join("d/f2"), b"two two");
    write(root.join("d/e/f3"), b"three");
    fs::create_dir_all(root.join("empty")).unwrap();
    std::os::unix::fs::symlink("f1", root.join("link")).unwrap();
    std::os::unix::fs::symlink("missing", root.join("d/dangling")).unwrap();
    fs::hard_link(root.join("f1"), root.join("d/hard")).unwrap();
    let fifo = std::ffi::CString::new(root.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
}

#[test]
fn backup_restore_and_export_count_the_same_entries() {
    let env = Env::with_repo();
    let src = env.path("src");
    mixed_tree(&src);
    let b = env.backup_json([&src]);
    let id = b["snapshot_id"].as_str().unwrap().to_string();
    let t = env.path("t");
    let r = env
        .run([
            "--json".as_ref(),
            "restore".as_ref(),
            id.as_ref(),
            "--target".as_ref(),
            t.as_os_str(),
        ])
        .success()
        .json();
    let c = env.path("c");
    let e = env
        .run([
            "--json".as_ref(),
            "export".as_ref(),
            id.as_ref(),
            "--clone".as_ref(),
            c.as_os_str(),
        ])
        .success()
        .json();
    let backup_files = b["files_new"].as_u64().unwrap()
        + b["files_changed"].as_u64().unwrap()
        + b["files_unmodified"].as_u64().unwrap();
    let counts = |v: &Value, files: u64| (files, v["dirs"].as_u64().unwrap(), v["other"].as_u64().unwrap());
    // Regular files f1, f2, f3 and the hard link d/hard; directories d, d/e and empty (not
    // the snapshot root); symlinks link and d/dangling and the FIFO.
    let want = (4, 3, 3);
    assert_eq!(counts(&b, backup_files), want, "backup: {b}");
    assert_eq!(counts(&r, r["files"].as_u64().unwrap()), want, "restore: {r}");
    assert_eq!(counts(&e, e["files"].as_u64().unwrap()), want, "export: {e}");
    let st = env.run(["--json", "stats", &id]).success().json();
    assert_eq!(counts(&st, st["files"].as_u64().unwrap()), want, "stats: {st}");
    assert_eq!(r["bytes"], e["bytes"]);
    // A second backup: all unmodified, the same totals.
    let b2 = env.backup_json([&src]);
    assert_eq!(counts(&b2, b2["files_unmodified"].as_u64().unwrap()), want, "{b2}");
    assert_eq!(b2["files_new"], 0, "{b2}");
    assert_eq!(b2["files_changed"], 0, "{b2}");
    // The human lines say the same numbers.
    let out = env.run(["backup".as_ref(), src.as_os_str()]).success();
    assert!(
        out.stderr
            .contains("files: 0 new, 0 changed, 4 unmodified; 3 dirs, 3 other;"),
        "{}",
        out.stderr
    );
    let out = env
        .run([
            "restore".as_ref(),
            id.as_ref(),
            "--target".as_ref(),
            env.path("t2").as_os_str(),
        ])
        .success();
    assert!(out.stderr.contains(": 4 files, 3 dirs, 3 other,"), "{}", out.stderr);
    let out = env
        .run([
            "export".as_ref(),
            id.as_ref(),
            "--clone".as_ref(),
            env.path("c2").as_os_str(),
        ])
        .success();
    assert!(out.stderr.contains(": 4 files, 3 dirs, 3 other,"), "{}", out.stderr);
}

#[test]
fn racy_clean_reread_of_an_unchanged_file_is_not_changed() {
    let env = Env::with_repo();
    let src = env.path("src");
    // Modified "after" the first backup started (an mtime an hour ahead): the racy-clean
    // rule makes the next backup read it again, as it does for a file modified within a
    // second of the last backup's start.
    write(src.join("fresh.txt"), b"same bytes");
    set_mtime(&src.join("fresh.txt"), now_ns() / 1_000_000_000 + 3600, 0);
    env.backup([&src]);
    let b = env.backup_json([&src]);
    assert_eq!(b["files_changed"], 0, "a re-read that found the same content: {b}");
    assert_eq!(b["files_unmodified"], 1, "{b}");
    assert!(b["data_read"].as_u64().unwrap() > 0, "it was read again: {b}");
    // Same size and mtime, other bytes (the case the rule exists for): changed.
    let md = fs::metadata(src.join("fresh.txt")).unwrap();
    write(src.join("fresh.txt"), b"SAME BYTES");
    let mt = md.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap();
    set_mtime(&src.join("fresh.txt"), mt.as_secs() as i64, mt.subsec_nanos());
    let b = env.backup_json([&src]);
    assert_eq!(b["files_changed"], 1, "{b}");
}
