//! What people back up besides a tree (README "backup" and the command table): a stream
//! from stdin stored as one file, `cat` and `dump` to read a snapshot back through a pipe,
//! and the backup rules `--exclude-caches`, `--one-file-system` and `--exclude-larger-than`
//! (flags and config keys).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use crate::util::*;

const TAG: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag.\n";

fn stdin_backup(env: &Env, name: &str, input: Vec<u8>, extra: &[&str]) -> serde_json::Value {
    let mut c = env.cmd();
    c.args(["--json", "backup", "--stdin", "--stdin-name", name])
        .args(extra)
        .write_stdin(input);
    run(&mut c).success().json()
}

fn cat(env: &Env, snap: &str, path: &str) -> Out {
    run(env.cmd().args(["cat", snap, path]))
}

#[test]
fn stdin_is_stored_as_one_file_restorable_listable_and_deduplicated() {
    let env = Env::with_repo();
    let mut input = random_bytes(17, 3 * 1024 * 1024 + 12_345);
    input.extend_from_slice(&text_bytes(4, 1024 * 1024));
    let first = stdin_backup(&env, "app.sql", input.clone(), &["--tag", "db"]);
    let id = first["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(first["files_new"], 1);
    assert_eq!(first["data_read"], input.len() as u64);

    // The snapshot says what it is: the path /NAME, the tag given.
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/app.sql"]));
    assert_eq!(snaps[0]["tags"], serde_json::json!(["db"]));
    let ls = run(env.cmd().args(["--json", "ls", &id])).success().json();
    let entries = ls.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{ls}");
    assert_eq!(entries[0]["path"], "/app.sql");
    assert_eq!(entries[0]["size"], input.len() as u64);

    // Restored: the same bytes, private to the user who backed it up, mtime about now.
    let target = env.path("out");
    env.restore(&id, &target);
    let got = fs::read(target.join("app.sql")).unwrap();
    assert!(got == input, "restored bytes differ from the input");
    let md = fs::metadata(target.join("app.sql")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);
    assert_eq!(md.uid(), rustix::process::geteuid().as_raw());
    let age = now_ns() / 1_000_000_000 - md.mtime();
    assert!(
        (0..3600).contains(&age),
        "mtime {} is not the backup's time",
        md.mtime()
    );
    assert!(cat(&env, &id, "app.sql").success().raw_stdout == input);
    assert!(cat(&env, "latest", "/app.sql").success().raw_stdout == input);

    // The same dump again: its chunks are all stored already, and it follows the first.
    let second = stdin_backup(&env, "app.sql", input.clone(), &[]);
    assert_eq!(second["files_changed"], 1);
    let added = second["data_added"].as_u64().unwrap();
    assert!(
        added < 64 * 1024,
        "a second backup of the same stream added {added} bytes"
    );
    let snaps = env.snapshots();
    let newest = snaps
        .iter()
        .find(|s| s["id"] == second["snapshot_id"])
        .expect("second snapshot listed");
    assert_eq!(newest["parent"].as_str(), Some(id.as_str()));
    run(env.cmd().args(["check", "--read-data"])).success();
}

#[test]
fn empty_stdin_is_a_zero_byte_file_and_the_default_name_is_stdin() {
    let env = Env::with_repo();
    let mut c = env.cmd();
    c.args(["backup", "--stdin"]).write_stdin(Vec::new());
    let id = run(&mut c).success().snapshot_id();
    let target = env.path("out");
    env.restore(&id, &target);
    assert_eq!(fs::read(target.join("stdin")).unwrap(), b"");
    assert_eq!(rel_paths(&target), ["stdin".to_string()].into_iter().collect());
    let out = cat(&env, &id, "stdin").success();
    assert!(out.raw_stdout.is_empty());
    assert_eq!(env.snapshots()[0]["paths"], serde_json::json!(["/stdin"]));
}

#[test]
fn stdin_refuses_a_terminal_paths_and_bad_names() {
    let env = Env::with_repo();
    // A terminal on stdin: the pipe was forgotten; fail at once instead of waiting.
    let (_master, slave) = pty();
    let out = std_cmd(&env)
        .args(["backup", "--stdin"])
        .stdin(Stdio::from(slave))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("standard input is a terminal"), "{stderr}");
    assert!(stderr.contains("pipe"), "{stderr}");
    assert!(env.snapshots().is_empty());

    let src = env.path("src");
    write(src.join("f"), b"x");
    let mut c = env.cmd();
    c.args(["backup", "--stdin"]).arg(&src).write_stdin("x");
    let out = run(&mut c).code(2);
    assert!(out.stderr.contains("--stdin"), "{}", out.stderr);

    for bad in ["a/b", "..", ""] {
        let mut c = env.cmd();
        c.args(["backup", "--stdin", "--stdin-name", bad]).write_stdin("x");
        let out = run(&mut c).code(1);
        assert!(out.stderr.contains("--stdin-name"), "{bad:?}: {}", out.stderr);
    }
    assert!(env.snapshots().is_empty());
}

/// A pseudo-terminal: (master, slave), the slave to hand to a child as its stdin.
pub(crate) fn pty() -> (fs::File, fs::File) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain libc calls on a descriptor this function owns; ptsname's buffer is
    // copied before any other call.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master = fs::File::from_raw_fd(m);
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let name = std::ffi::CStr::from_ptr(libc::ptsname(m)).to_str().unwrap().to_string();
        let slave = fs::OpenOptions::new().read(true).write(true).open(name).unwrap();
        (master, slave)
    }
}

#[test]
fn cat_writes_the_exact_bytes_and_refuses_directories_and_missing_paths() {
    let env = Env::with_repo();
    let src = env.path("src");
    let big = random_bytes(3, 5 * 1024 * 1024 + 7);
    write(src.join("d/big.bin"), &big);
    write(src.join("small.txt"), b"hello\n");
    // A sparse file: holes come out as zeros.
    let f = fs::File::create(src.join("sparse")).unwrap();
    f.set_len(3 * 1024 * 1024).unwrap();
    {
        use std::os::unix::fs::FileExt;
        f.write_at(b"middle", 1024 * 1024).unwrap();
    }
    drop(f);
    std::os::unix::fs::symlink("small.txt", src.join("link")).unwrap();
    let id = env.backup([&src]);
    assert!(cat(&env, &id, "d/big.bin").success().raw_stdout == big);
    assert_eq!(cat(&env, &id, "/small.txt").success().raw_stdout, b"hello\n");
    assert!(cat(&env, &id, "sparse").success().raw_stdout == fs::read(src.join("sparse")).unwrap());

    let out = cat(&env, &id, "d").code(1);
    assert!(out.stderr.contains("is a directory"), "{}", out.stderr);
    assert!(out.stderr.contains("dump"), "{}", out.stderr);
    assert!(out.raw_stdout.is_empty());
    let out = cat(&env, &id, "nope.txt").code(1);
    assert!(
        out.stderr.contains("not found") && out.stderr.contains("nope.txt"),
        "{}",
        out.stderr
    );
    let out = cat(&env, &id, "link").code(1);
    assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
    let out = cat(&env, &id, "/").code(1);
    assert!(out.stderr.contains("root"), "{}", out.stderr);
}

/// A tree tar can hold exactly: modes, nanosecond mtimes, symlinks, a hard link, a sparse
/// file, an empty directory, a FIFO.
fn tar_tree(src: &Path) {
    write(src.join("a.txt"), b"alpha\n");
    write(src.join("sub/deep/b.bin"), random_bytes(9, 2 * 1024 * 1024));
    write(src.join("sub/exec.sh"), b"#!/bin/sh\necho hi\n");
    fs::set_permissions(src.join("sub/exec.sh"), fs::Permissions::from_mode(0o751)).unwrap();
    fs::set_permissions(src.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    std::os::unix::fs::symlink("../a.txt", src.join("sub/to-a")).unwrap();
    std::os::unix::fs::symlink("nowhere", src.join("dangling")).unwrap();
    fs::hard_link(src.join("a.txt"), src.join("sub/a-again")).unwrap();
    let f = fs::File::create(src.join("sub/sparse")).unwrap();
    f.set_len(4 * 1024 * 1024).unwrap();
    {
        use std::os::unix::fs::FileExt;
        f.write_at(&random_bytes(1, 70_000), 2 * 1024 * 1024).unwrap();
    }
    drop(f);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    age_tree(src);
}

/// The binary as `env.cmd()` sets it up, as a `std::process::Command` (for pipes and a
/// terminal on stdin).
pub(crate) fn std_cmd(env: &Env) -> std::process::Command {
    let mut c = std::process::Command::new(bin_path());
    for v in [
        "PROJECTCLONE_REPO",
        "PROJECTCLONE_PASSWORD_FILE",
        "PROJECTCLONE_PROFILE",
        "PROJECTCLONE_LOG",
    ] {
        c.env_remove(v);
    }
    c.env("PROJECTCLONE_PASSWORD", PASSWORD)
        .env("HOME", env.path("home"))
        .env("XDG_DATA_HOME", env.path("xdg-data"))
        .env("XDG_CACHE_HOME", env.path("xdg-cache"))
        .env("XDG_CONFIG_HOME", env.path("xdg-config"))
        .env("XDG_STATE_HOME", env.path("xdg-state"))
        .current_dir(env.root())
        .arg("-r")
        .arg(env.repo())
        .arg("--cache-dir")
        .arg(env.cache());
    c
}

/// `dump ARGS | tar -x -C dir`.
fn dump_into(env: &Env, args: &[&str], dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let mut child = std_cmd(env)
        .arg("dump")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tar = std::process::Command::new("tar")
        .args(["-x", "--numeric-owner", "-f", "-", "-C"])
        .arg(dir)
        .stdin(child.stdout.take().unwrap())
        .output()
        .unwrap();
    let dump = child.wait_with_output().unwrap();
    assert!(
        dump.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(
        tar.status.success(),
        "tar -x failed: {}",
        String::from_utf8_lossy(&tar.stderr)
    );
}

#[test]
fn dump_piped_into_tar_recreates_the_tree_a_folder_or_one_file() {
    let env = Env::with_repo();
    let src = env.path("src");
    tar_tree(&src);
    let id = env.backup([&src]);

    let all = env.path("all");
    dump_into(&env, &[&id], &all);
    assert_trees_equal(&src, &all, true);

    // A folder: its contents (hard links to outside it carry their bytes).
    let sub = env.path("sub");
    dump_into(&env, &["latest", "sub"], &sub);
    let diffs = compare_trees(&src.join("sub"), &sub, true);
    // sub/a-again's other name is outside the folder: one name of it, same bytes and meta.
    assert!(diffs.iter().all(|d| d.contains("hard-link groups")), "{diffs:#?}");
    assert_eq!(fs::read(sub.join("a-again")).unwrap(), b"alpha\n");

    // One file: an archive of that one member, under its own name.
    let one = env.path("one");
    dump_into(&env, &[&id, "sub/deep/b.bin"], &one);
    assert_eq!(rel_paths(&one), ["b.bin".to_string()].into_iter().collect());
    assert!(fs::read(one.join("b.bin")).unwrap() == fs::read(src.join("sub/deep/b.bin")).unwrap());
    assert_eq!(
        fs::metadata(one.join("b.bin")).unwrap().mtime(),
        fs::metadata(src.join("sub/deep/b.bin")).unwrap().mtime()
    );

    let out = run(env.cmd().args(["dump", &id, "missing"])).code(1);
    assert!(out.stderr.contains("missing"), "{}", out.stderr);
    assert!(out.raw_stdout.is_empty());
    let out = run(env.cmd().args(["--json", "dump", &id])).code(1);
    assert!(out.stderr.contains("--json"), "{}", out.stderr);
}

#[test]
fn dump_of_a_stdin_backup_holds_the_stream() {
    let env = Env::with_repo();
    let input = random_bytes(77, 1_500_000);
    let id = stdin_backup(&env, "db.dump", input.clone(), &[])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = env.path("x");
    dump_into(&env, &[&id], &out);
    assert!(fs::read(out.join("db.dump")).unwrap() == input);
}

fn skipped(v: &serde_json::Value) -> Vec<(String, String)> {
    v["skipped"]
        .as_array()
        .expect("skipped is a list")
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn cache_tree(src: &Path) {
    write(src.join("keep.txt"), b"keep");
    write(src.join("cache/CACHEDIR.TAG"), TAG);
    write(src.join("cache/junk.bin"), random_bytes(5, 100_000));
    write(src.join("cache/sub/more"), b"more");
    // Wrong signature (one digit short): not a cache directory.
    write(
        src.join("fake/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc5\n",
    );
    write(src.join("fake/data"), b"data");
    // A tag as a symlink does not count either.
    write(src.join("tagfile"), TAG);
    fs::create_dir_all(src.join("linked")).unwrap();
    std::os::unix::fs::symlink("../tagfile", src.join("linked/CACHEDIR.TAG")).unwrap();
    write(src.join("linked/data"), b"data");
}

#[test]
fn exclude_caches_keeps_only_the_tag_of_tagged_directories() {
    let env = Env::with_repo();
    let src = env.path("src");
    cache_tree(&src);
    let v = env.backup_json(["--exclude-caches".as_ref(), src.as_os_str()]);
    let sk = skipped(&v);
    assert_eq!(sk.len(), 1, "{sk:?}");
    assert!(
        sk[0].0.ends_with("src/cache") && sk[0].1.contains("CACHEDIR.TAG"),
        "{sk:?}"
    );
    let out = env.path("out");
    env.restore(v["snapshot_id"].as_str().unwrap(), &out);
    let want: std::collections::BTreeSet<String> = [
        "keep.txt",
        "cache",
        "cache/CACHEDIR.TAG",
        "fake",
        "fake/CACHEDIR.TAG",
        "fake/data",
        "tagfile",
        "linked",
        "linked/CACHEDIR.TAG",
        "linked/data",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(rel_paths(&out), want);
    assert_eq!(fs::read(out.join("cache/CACHEDIR.TAG")).unwrap(), TAG);

    // Without the option, everything is backed up and nothing is reported.
    let v = env.backup_json([&src]);
    assert!(skipped(&v).is_empty());
    let all = env.path("all");
    env.restore(v["snapshot_id"].as_str().unwrap(), &all);
    assert!(all.join("cache/sub/more").is_file());

    // -v names what was left out; without it, a count.
    let out = run(env.cmd().args(["-v", "backup", "--exclude-caches"]).arg(&src)).success();
    assert!(
        out.stderr.contains("skipped: ") && out.stderr.contains("src/cache"),
        "{}",
        out.stderr
    );
    let out = run(env.cmd().args(["backup", "--exclude-caches"]).arg(&src)).success();
    assert!(out.stderr.contains("1 entry left out"), "{}", out.stderr);
}

#[test]
fn one_file_system_keeps_mount_points_empty() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("here.txt"), b"here");
    let mnt = src.join("mnt");
    let _fs = Mount::tmpfs(&mnt, "4m");
    write(mnt.join("there.txt"), b"there");
    write(mnt.join("deeper/x"), b"x");

    let v = env.backup_json(["--one-file-system".as_ref(), src.as_os_str()]);
    let sk = skipped(&v);
    assert_eq!(sk.len(), 1, "{sk:?}");
    assert!(
        sk[0].0.ends_with("src/mnt") && sk[0].1.contains("another file system"),
        "{sk:?}"
    );
    let out = env.path("out");
    env.restore(v["snapshot_id"].as_str().unwrap(), &out);
    let want: std::collections::BTreeSet<String> = ["here.txt", "mnt"].into_iter().map(String::from).collect();
    assert_eq!(rel_paths(&out), want);
    assert!(out.join("mnt").is_dir());

    // Without it, the other file system is backed up too.
    let v = env.backup_json([&src]);
    assert!(skipped(&v).is_empty());
    let all = env.path("all");
    env.restore(v["snapshot_id"].as_str().unwrap(), &all);
    assert_eq!(fs::read(all.join("mnt/deeper/x")).unwrap(), b"x");
}

#[test]
fn exclude_larger_than_leaves_out_big_files_and_checks_its_size() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("big.bin"), random_bytes(1, 2 * 1024 * 1024));
    write(src.join("edge.bin"), random_bytes(2, 1024 * 1024));
    write(src.join("small.txt"), b"small");
    let v = env.backup_json(
        ["--exclude-larger-than", "1M"]
            .map(std::ffi::OsStr::new)
            .iter()
            .chain([src.as_os_str()].iter()),
    );
    let sk = skipped(&v);
    assert_eq!(sk.len(), 1, "{sk:?}");
    assert!(
        sk[0].0.ends_with("big.bin") && sk[0].1.contains("larger than 1.0 MiB"),
        "{sk:?}"
    );
    let out = env.path("out");
    env.restore(v["snapshot_id"].as_str().unwrap(), &out);
    let want: std::collections::BTreeSet<String> = ["edge.bin", "small.txt"].into_iter().map(String::from).collect();
    assert_eq!(rel_paths(&out), want, "a file of exactly the limit is kept");

    let out = run(env.cmd().args(["backup", "--exclude-larger-than", "10X"]).arg(&src)).code(2);
    assert!(
        out.stderr.contains("10X") && out.stderr.contains("10M"),
        "{}",
        out.stderr
    );
    let out = run(env.cmd().args(["backup", "--exclude-larger-than", "1.5G"]).arg(&src)).success();
    assert!(!out.stderr.contains("left out"), "{}", out.stderr);
}

#[test]
fn the_rules_as_config_keys_of_an_untrusted_project_file_with_flags_first() {
    let env = Env::with_repo();
    let src = env.path("src");
    cache_tree(&src);
    write(src.join("big.bin"), random_bytes(1, 2 * 1024 * 1024));
    let mnt = src.join("mnt");
    let _fs = Mount::tmpfs(&mnt, "4m");
    write(mnt.join("there.txt"), b"there");
    // A project file nobody trusted: these keys are safe to take from it.
    write(
        src.join(".projectclone.toml"),
        "exclude-caches = true\none-file-system = true\nexclude-larger-than = \"1M\"\n",
    );
    let v = env.backup_json([&src]);
    let mut reasons: Vec<String> = skipped(&v).into_iter().map(|(p, r)| format!("{p}: {r}")).collect();
    reasons.sort();
    assert_eq!(reasons.len(), 3, "{reasons:#?}");
    assert!(
        reasons[0].contains("big.bin") && reasons[0].contains("(exclude-larger-than)"),
        "{reasons:#?}"
    );
    assert!(
        reasons[1].contains("src/cache:") && reasons[1].contains("(exclude-caches)"),
        "{reasons:#?}"
    );
    assert!(
        reasons[2].contains("src/mnt:") && reasons[2].contains("(one-file-system)"),
        "{reasons:#?}"
    );

    // `config` shows them and where they come from.
    let cfg = run(env.cmd().current_dir(&src).args(["--json", "config"]))
        .success()
        .json();
    let text = cfg.to_string();
    for key in ["exclude-caches", "one-file-system", "exclude-larger-than"] {
        assert!(text.contains(key), "{key} missing from {cfg:#}");
    }
    assert!(text.contains("\"1M\""), "{cfg:#}");

    // The flag beats the file.
    let v = env.backup_json(["--exclude-larger-than".as_ref(), "10M".as_ref(), src.as_os_str()]);
    assert!(!skipped(&v).iter().any(|(p, _)| p.ends_with("big.bin")), "{v:#}");

    // A bad value in the file is an error naming the file, line and key.
    write(
        src.join(".projectclone.toml"),
        "exclude-caches = true\nexclude-larger-than = \"huge\"\n",
    );
    let out = run(env.cmd().arg("backup").arg(&src)).code(1);
    assert!(
        out.stderr.contains(".projectclone.toml:2") && out.stderr.contains("exclude-larger-than"),
        "{}",
        out.stderr
    );
}
