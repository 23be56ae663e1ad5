//! Append-only use (`--append-only`, `append-only = true`): backups and reads work, nothing
//! but lock files is ever deleted, and the commands that delete refuse before they change
//! anything. Then the server-side half: an SFTP server that refuses every deletion
//! (OpenSSH's `internal-sftp -P remove,rmdir`) takes append-only backups.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use crate::servers::{Sshd, test_path};
use crate::util::*;

/// Every file of the repository but the lock files, by path.
fn objects(repo: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(repo, repo, &mut out);
    out.retain(|p| !p.starts_with("locks/"));
    out
}

#[test]
fn append_only_backs_up_and_reads_and_every_deleting_command_refuses() {
    let env = Env::with_small_packs();
    let src = env.path("src");
    for i in 0..12u8 {
        write(src.join(format!("f{i}")), random_bytes(i.into(), 1 << 20));
    }
    let first = env.backup([&src]);
    write(src.join("f0"), b"changed");
    let before = objects(&env.repo());
    let out = run(env.cmd().args(["--append-only", "--json", "backup"]).arg(&src)).success();
    let second = out.json()["snapshot_id"].as_str().unwrap().to_string();
    let after = objects(&env.repo());
    assert!(
        before.is_subset(&after),
        "an append-only backup deleted {:?}",
        before.difference(&after)
    );

    // A backup of many packs writes checkpoint deltas; a normal run deletes them at the end,
    // an append-only one keeps them (they only list its packs twice).
    for i in 12..24u8 {
        write(src.join(format!("f{i}")), random_bytes(i.into(), 1 << 20));
    }
    run(env.cmd().args(["--append-only", "backup"]).arg(&src)).success();
    let deltas = fs::read_dir(env.repo().join("index")).unwrap().count();
    assert!(deltas >= 3, "{deltas} index deltas: the checkpoints should stay");

    let refuses = |args: &[&str]| {
        let before = objects(&env.repo());
        let out = run(env.cmd().arg("--append-only").args(args)).code(1);
        assert!(
            out.stderr.contains("append-only (--append-only)") && out.stderr.contains("nothing was changed"),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(objects(&env.repo()), before, "{args:?} changed the repository");
    };
    refuses(&["forget", &first]);
    refuses(&["forget", "--keep-last", "1"]);
    refuses(&["prune"]);
    refuses(&["prune", "--keep-last", "1"]);
    refuses(&["repair", "index"]);
    refuses(&["repair", "snapshots"]);
    refuses(&["key", "remove", "0000"]);
    refuses(&["key", "passwd"]);

    // What deletes nothing still runs: dry runs, reads, restores.
    run(env
        .cmd()
        .args(["--append-only", "prune", "--dry-run", "--keep-last", "1"]))
    .success();
    run(env.cmd().args(["--append-only", "check", "--read-data"])).success();
    let target = env.path("restored");
    run(env
        .cmd()
        .args(["--append-only", "restore", &second, "--target"])
        .arg(&target))
    .success();
    assert_eq!(fs::read(target.join("f0")).unwrap(), b"changed");
    assert_eq!(
        env.run(["--json", "snapshots"])
            .success()
            .json()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // The same from the user's config file, which names itself in the refusal.
    let config = env.path("xdg-config/projectclone/config.toml");
    write(&config, b"append-only = true\n");
    let out = env.run(["prune"]).code(1);
    assert!(
        out.stderr.contains("append-only in") && out.stderr.contains("config.toml"),
        "{}",
        out.stderr
    );
    let shown = env.run(["--json", "config"]).success().json();
    assert!(shown.to_string().contains("append-only"), "{shown}");
    write(&config, b"append-only = false\n");
    env.run(["forget", &first]).success();
}

/// The server-side half: an SFTP account whose server refuses every deletion. Append-only
/// backups and reads work there (the lock file a backup cannot delete just goes stale), and
/// a forget without `--append-only` is refused by the server itself.
#[test]
fn an_sftp_server_that_refuses_deletions_takes_append_only_backups() {
    let env = Env::new();
    let sshd = Sshd::start_with(&env, "internal-sftp -P remove,rmdir");
    let url = sshd.url("vault");
    let cmd = || {
        let mut c = env.cmd_at(Path::new(&url));
        c.env("PATH", test_path(&env));
        c
    };
    run(cmd().args(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"])).success();
    let src = env.path("src");
    write(src.join("a"), random_bytes(1, 300_000));
    write(src.join("b"), b"b");
    let first = run(cmd().args(["--append-only", "backup"]).arg(&src))
        .success()
        .snapshot_id();
    write(src.join("b"), b"b, changed");
    let second = run(cmd().args(["--append-only", "backup"]).arg(&src))
        .success()
        .snapshot_id();
    let snaps = run(cmd().args(["--json", "snapshots"])).success().json();
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");
    run(cmd().args(["--append-only", "check", "--read-data"])).success();
    let target = env.path("restored");
    run(cmd().args(["restore", &second, "--target"]).arg(&target)).success();
    assert_eq!(fs::read(target.join("b")).unwrap(), b"b, changed");
    assert_eq!(fs::read(target.join("a")).unwrap(), random_bytes(1, 300_000));

    // Without the flag the server is what refuses: the snapshot stays.
    let out = run(cmd().args(["forget", &first])).failure();
    assert!(
        out.stderr.to_lowercase().contains("permission denied"),
        "{}",
        out.stderr
    );
    assert!(sshd.root_dir().join("vault/snapshots").join(&first).exists());
}
