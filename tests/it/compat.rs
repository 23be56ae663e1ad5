//! Compatibility: repositories written by earlier builds stay readable. Each fixture under
//! `tests/fixtures/` was written once by the build its README names and is never
//! regenerated; a change to the stored bytes that breaks reading them fails here.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as Std;

use crate::util::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Copy a directory tree (regular files and folders only: fixtures hold nothing else).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// What `find` and `sha256sum` say of a restored tree, as the fixture script recorded it.
fn listing(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let find = Std::new("sh")
        .arg("-c")
        .arg(r"find . -printf '%p\t%y\t%m\t%U:%G\t%s\t%n\t%T@\t%l\0' | LC_ALL=C sort -z")
        .current_dir(dir)
        .output()
        .unwrap();
    let sums = Std::new("sh")
        .arg("-c")
        .arg("find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(find.status.success() && sums.status.success());
    (find.stdout, sums.stdout)
}

#[test]
fn format1_fixture_reads_checks_restores_and_takes_new_backups() {
    reads_checks_restores_and_takes_new_backups("format1");
}

/// Written by the last build before config structure version 3: large files keep their
/// 1 MiB chunks there.
#[test]
fn format1_config2_fixture_reads_checks_restores_and_takes_new_backups() {
    reads_checks_restores_and_takes_new_backups("format1-config2");
}

/// Written by release 1.0.0, which froze format 1: config structure version 3, snapshots at
/// version 2. Every later build must read it as written.
#[test]
fn format1_release_1_0_fixture_reads_checks_restores_and_takes_new_backups() {
    reads_checks_restores_and_takes_new_backups("format1-release-1.0");
}

fn reads_checks_restores_and_takes_new_backups(name: &str) {
    let env = Env::new();
    let fx = fixture(name);
    copy_tree(&fx.join("repo"), &env.repo());
    let mut kept: Vec<String> = fs::read_dir(&fx)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".find").map(String::from))
        .collect();
    kept.sort();
    assert_eq!(kept.len(), 2);
    let cmd = || {
        let mut c = env.bare();
        c.env("PROJECTCLONE_PASSWORD", "fixture password")
            .arg("-r")
            .arg(env.repo())
            .arg("--cache-dir")
            .arg(env.cache());
        c
    };
    let snaps = run(cmd().args(["--json", "snapshots"])).success().json();
    let mut ids: Vec<String> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, kept);
    assert!(snaps.as_array().unwrap().iter().any(|s| s["note"] == "first backup"));
    run(cmd().args(["check", "--read-data"])).success();
    for id in &kept {
        let target = env.path(format!("restore-{id}"));
        run(cmd().args(["restore", id, "--target"]).arg(&target)).success();
        let (find, sums) = listing(&target);
        assert_eq!(
            String::from_utf8_lossy(&find),
            String::from_utf8_lossy(&fs::read(fx.join(format!("{id}.find"))).unwrap()),
            "snapshot {id}: restored entries differ from what the writing build restored"
        );
        assert_eq!(
            sums,
            fs::read(fx.join(format!("{id}.sha256"))).unwrap(),
            "snapshot {id}"
        );
        assert_eq!(
            xattr::get(target.join("src/main.rs"), "user.fixture")
                .unwrap()
                .as_deref(),
            Some(&b"xattr value"[..])
        );
    }
    // The repository keeps working: a new backup (deduplicating against the old data), a
    // prune that acts on the old condemned record, and a clean check.
    let src = env.path("src");
    write(src.join("a"), b"new data");
    let new = run(cmd().arg("backup").arg(&src)).success().stdout.trim().to_string();
    run(cmd().arg("prune")).success();
    run(cmd().args(["check", "--read-data"])).success();
    for id in &kept {
        run(cmd().args(["ls", id])).success();
    }
    // The first snapshot of structure version 3 starts the chain (format-spec §10): it
    // records the snapshots of the older versions that nothing recorded yet, so deleting
    // one of them behind the repository's back is found from then on.
    let snaps = run(cmd().args(["--json", "snapshots"])).success().json();
    let seen = snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == new.as_str())
        .unwrap()["seen"]
        .to_string();
    assert!(kept.iter().all(|k| seen.contains(k.as_str())), "{seen}");
    fs::remove_file(env.repo().join("snapshots").join(&kept[0])).unwrap();
    let out = run(cmd().env("XDG_STATE_HOME", env.path("other-client")).arg("check")).failure();
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains(&format!("snapshot {} is gone without a tombstone", kept[0])),
        "{said}"
    );
}
