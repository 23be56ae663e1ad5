//! Snapshots and git: a backup of a folder in a git work tree records HEAD's commit, its
//! branch and whether the tree had uncommitted changes; `snapshots --commit`, `restore
//! --commit` and `log` find snapshots by commit; `git-hook install` takes a snapshot after
//! each commit. Real `git` (installed by `.ci/install-servers`), real work trees.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as Std;

use crate::util::*;

/// Run git in `dir` with a fixed identity; its trimmed stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Std::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.invalid"])
        .args(["-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("git runs (installed by .ci/install-servers)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A work tree at ENV/app with one commit; returns it and the commit.
fn work_tree(env: &Env) -> (PathBuf, String) {
    let app = env.path("app");
    write(app.join("src/main.rs"), b"fn main() {}\n");
    git(&app, &["init", "-q"]);
    git(&app, &["add", "."]);
    git(&app, &["commit", "-qm", "first"]);
    let head = git(&app, &["rev-parse", "HEAD"]);
    (app, head)
}

fn git_of(env: &Env, id: &str) -> serde_json::Value {
    let snaps = env.run(["--json", "snapshots"]).success().json();
    snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("{id} in {snaps}"))["git"]
        .clone()
}

#[test]
fn a_backup_records_commit_branch_and_uncommitted_changes() {
    let env = Env::with_repo();
    let (app, head) = work_tree(&env);

    let clean = env.backup([&app]);
    assert_eq!(
        git_of(&env, &clean),
        serde_json::json!({"commit": head, "branch": "main", "dirty": false})
    );
    // A subfolder of the work tree records the same commit.
    let sub = env.backup([app.join("src")]);
    assert_eq!(git_of(&env, &sub)["commit"], head.as_str());

    write(app.join("src/main.rs"), b"fn main() { todo!() }\n");
    let dirty = env.backup([&app]);
    assert_eq!(git_of(&env, &dirty)["dirty"], true);
    let listing = env.run(["snapshots"]).success().stdout;
    assert!(
        listing.contains(&format!("[git {} on main, dirty]", &head[..8])),
        "{listing}"
    );

    // Detached HEAD: no branch.
    git(&app, &["checkout", "-q", "--detach"]);
    let detached = env.backup([&app]);
    assert_eq!(git_of(&env, &detached)["branch"], serde_json::Value::Null);

    // Without the git program the files still give commit and branch; dirtiness is unknown.
    git(&app, &["checkout", "-q", "main"]);
    git(&app, &["pack-refs", "--all"]);
    let empty_path = env.path("no-programs");
    fs::create_dir_all(&empty_path).unwrap();
    let out = run(env.cmd().env("PATH", &empty_path).arg("backup").arg(&app)).success();
    let no_git = out.snapshot_id();
    assert_eq!(
        git_of(&env, &no_git),
        serde_json::json!({"commit": head, "branch": "main", "dirty": null})
    );

    // A folder in no work tree records nothing.
    let plain = env.path("plain");
    write(plain.join("f"), b"f");
    let none = env.backup([&plain]);
    assert_eq!(git_of(&env, &none), serde_json::Value::Null);
}

#[test]
fn snapshots_restore_and_log_find_snapshots_by_commit() {
    let env = Env::with_repo();
    let (app, first) = work_tree(&env);
    let s1 = env.backup([&app]);
    write(app.join("src/lib.rs"), b"pub fn two() {}\n");
    git(&app, &["add", "."]);
    git(&app, &["commit", "-qm", "second"]);
    let second = git(&app, &["rev-parse", "HEAD"]);
    let s2 = env.backup([&app]);

    // Inside the work tree git resolves the revision.
    let ids = |out: Out| -> Vec<String> {
        out.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let picked = ids(run(env
        .cmd()
        .current_dir(&app)
        .args(["--json", "snapshots", "--commit", "HEAD~1"]))
    .success());
    assert_eq!(picked, vec![s1.clone()]);
    let picked = ids(run(env
        .cmd()
        .current_dir(&app)
        .args(["--json", "snapshots", "--commit", "main"]))
    .success());
    assert_eq!(picked, vec![s2.clone()]);
    // Elsewhere, a hash prefix.
    let picked = ids(env.run(["--json", "snapshots", "--commit", &first[..7]]).success());
    assert_eq!(picked, vec![s1.clone()]);

    // `restore --commit` restores the snapshot taken at that commit.
    let target = env.path("at-first");
    run(env
        .cmd()
        .current_dir(&app)
        .args(["restore", "--commit", "HEAD~1", "--target"])
        .arg(&target))
    .success();
    assert!(target.join("src/main.rs").exists());
    assert!(!target.join("src/lib.rs").exists(), "the first commit had no lib.rs");

    // A revision nobody knows, outside any work tree: a clear error.
    let out = env
        .run(["restore", "--commit", "no-such-branch", "--target", "x"])
        .code(1);
    assert!(out.stderr.contains("--commit no-such-branch"), "{}", out.stderr);
    let out = env.run(["snapshots", "--commit", "abcdef12"]).success();
    assert!(out.stdout.contains("0 snapshot(s)"), "{}", out.stdout);

    // `log`: newest commit first, each with its snapshots.
    let log = run(env.cmd().current_dir(&app).args(["--json", "log"]))
        .success()
        .json();
    assert_eq!(log[0]["commit"], second.as_str(), "{log}");
    assert_eq!(log[0]["subject"], "second");
    assert_eq!(log[0]["snapshots"][0]["id"], s2.as_str());
    assert_eq!(log[1]["commit"], first.as_str());
    assert_eq!(log[1]["snapshots"][0]["id"], s1.as_str());
    let human = run(env.cmd().arg("log").arg(&app)).success().stdout;
    assert!(human.contains("2 commit(s), 2 snapshot(s)"), "{human}");
    let out = env.run(["log", "-n", "1"]).code(1);
    assert!(out.stderr.contains("not inside a git work tree"), "{}", out.stderr);
}

/// `git commit -qm MSG` in `app` as a user would run it: the environment of ENV (home, XDG
/// folders), with the password in it or not.
fn commit(env: &Env, app: &Path, msg: &str, password: bool) -> std::process::Output {
    let mut c = Std::new("git");
    c.args([
        "-c",
        "user.name=T",
        "-c",
        "user.email=t@example.invalid",
        "commit",
        "-qm",
        msg,
    ])
    .current_dir(app)
    .env_remove("PROJECTCLONE_PASSWORD")
    .env_remove("PROJECTCLONE_REPO");
    for (var, dir) in [
        ("HOME", "home"),
        ("XDG_DATA_HOME", "xdg-data"),
        ("XDG_CACHE_HOME", "xdg-cache"),
        ("XDG_CONFIG_HOME", "xdg-config"),
        ("XDG_STATE_HOME", "xdg-state"),
    ] {
        c.env(var, env.path(dir));
    }
    if password {
        c.env("PROJECTCLONE_PASSWORD", PASSWORD);
    }
    c.output().unwrap()
}

#[test]
fn git_hook_takes_a_snapshot_after_each_commit() {
    let env = Env::with_repo();
    let (app, _) = work_tree(&env);
    let out = run(env.cmd().current_dir(&app).args(["git-hook", "install"])).success();
    assert!(out.stdout.contains("installed"), "{}", out.stdout);
    let hook = app.join(".git/hooks/post-commit");
    assert!(fs::read_to_string(&hook).unwrap().contains("--quiet backup"));

    // git runs the hook with its own environment: the password comes from it.
    write(app.join("README"), b"hello\n");
    git(&app, &["add", "."]);
    let done = commit(&env, &app, "readme", true);
    assert!(done.status.success());
    assert_eq!(String::from_utf8_lossy(&done.stdout), "", "the hook is quiet");
    assert_eq!(String::from_utf8_lossy(&done.stderr), "");
    let head = git(&app, &["rev-parse", "HEAD"]);
    let snaps = env.run(["--json", "snapshots"]).success().json();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    assert_eq!(
        snaps[0]["git"],
        serde_json::json!({"commit": head, "branch": "main", "dirty": false})
    );

    // A commit whose backup fails still commits, and says why on stderr.
    write(app.join("b"), b"b");
    git(&app, &["add", "."]);
    let failed = commit(&env, &app, "no password", false);
    assert!(failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("the snapshot after this commit failed"),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );

    // Removed, and a hook that is not ours is never touched.
    run(env.cmd().current_dir(&app).args(["git-hook", "remove"])).success();
    assert!(!hook.exists());
    fs::write(&hook, "#!/bin/sh\necho mine\n").unwrap();
    let out = run(env.cmd().current_dir(&app).args(["git-hook", "install"])).code(1);
    assert!(
        out.stderr.contains("not projectclone's hook") && out.stderr.contains("--quiet backup"),
        "{}",
        out.stderr
    );
    run(env.cmd().current_dir(&app).args(["git-hook", "remove"])).code(1);
    assert_eq!(fs::read_to_string(&hook).unwrap(), "#!/bin/sh\necho mine\n");
}
