//! Exported views (README "export"; exact round trip, containment): `export --clone`, `--archive` and
//! `--incremental` reproduce the snapshot exactly, never leave a half-made view under the
//! final name, clean up after killed exports, and `--dry-run` writes nothing.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Duration;

use projectclone::format::{NodeKind, Time};

use crate::util::*;

fn export(env: &Env, args: &[&std::ffi::OsStr]) -> Out {
    let mut c = env.cmd();
    c.arg("export").args(args);
    run(&mut c)
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// Differences other than the socket (a tar archive cannot hold one: left out with a
/// warning, as GNU tar does).
fn without_socket(diffs: Vec<String>) -> Vec<String> {
    diffs
        .into_iter()
        .filter(|d| !d.starts_with("\"special/socket\" only in the source"))
        .collect()
}

#[track_caller]
fn assert_no_diffs(diffs: &[String], what: &str) {
    assert!(
        diffs.is_empty(),
        "{what}: {} difference(s):\n{}",
        diffs.len(),
        diffs.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// A nasty tree and its snapshot; `src` is named `proj`, the archive's top folder.
fn nasty_env() -> (Env, PathBuf, String) {
    let env = Env::with_repo();
    let src = env.path("proj");
    build_nasty(&src);
    let id = env.backup([&src]);
    (env, src, id)
}

#[test]
fn clone_is_an_exact_copy_and_refuses_a_non_empty_dir() {
    let (env, src, id) = nasty_env();
    let dir = env.path("views/clone");
    let out = export(&env, &[os("--json"), os(&id), os("--clone"), dir.as_os_str()]).success();
    let v = out.json();
    assert_eq!(v["dry_run"], false);
    assert_eq!(v["path"], dir.display().to_string());
    assert_trees_equal(&src, &dir, true);
    // Nothing else beside it: the staging folder was renamed into place.
    let beside: Vec<_> = fs::read_dir(env.path("views"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, ["clone"]);

    // A non-empty DIR is an error and stays untouched; an empty one is replaced.
    write(env.path("busy/keep.txt"), b"mine\n");
    let before = fingerprint(&env.path("busy"));
    let out = export(&env, &[os(&id), os("--clone"), env.path("busy").as_os_str()]).failure();
    assert!(out.stderr.contains("not an empty directory"), "{}", out.stderr);
    assert_eq!(fingerprint(&env.path("busy")), before);
    fs::create_dir_all(env.path("empty")).unwrap();
    export(&env, &[os("latest"), os("--clone"), env.path("empty").as_os_str()]).success();
    assert_trees_equal(&src, &env.path("empty"), true);
}

#[test]
fn archive_extracts_exactly_with_gnu_tar_and_the_manifest_checks() {
    let (env, src, id) = nasty_env();
    let file = env.path("out/proj.tar.gz");
    let out = export(&env, &[os(&id), os("--archive"), file.as_os_str(), os("--manifest")]).success();
    assert!(out.stderr.contains("special/socket left out"), "{}", out.stderr);
    let beside: Vec<String> = fs::read_dir(env.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(beside.len(), 2, "only the archive and its manifest: {beside:?}");

    // `tar -tvf` lists the members under one top folder, long and odd names included.
    let list = StdCommand::new("tar").arg("-tvf").arg(&file).output().unwrap();
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(
        listing.lines().all(|l| l.contains(" proj/") || l.ends_with(" proj/")),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("proj/{}", "L".repeat(255))),
        "long name missing"
    );
    assert!(listing.contains("proj/hl/sub/two link to proj/hl/one") || listing.contains("link to proj/"));

    // GNU tar restores everything tar can hold, to the nanosecond.
    let x = env.path("x");
    fs::create_dir_all(&x).unwrap();
    let ex = StdCommand::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&file)
        .current_dir(&x)
        .output()
        .unwrap();
    assert!(ex.status.success(), "{}", String::from_utf8_lossy(&ex.stderr));
    let names: Vec<_> = fs::read_dir(&x).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["proj"]);
    assert_no_diffs(
        &without_socket(compare_trees(&src, &x.join("proj"), true)),
        "GNU tar extraction",
    );

    // The manifest names every regular file by member name: `sha256sum -c` from the
    // extraction directory checks them all.
    let manifest = env.path("out/proj.tar.gz.sha256");
    let lines = fs::read(&manifest)
        .unwrap()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let regular = files_under(&src).len();
    assert_eq!(lines, regular, "one line per regular file (hard links included)");
    let check = StdCommand::new("sha256sum")
        .arg("-c")
        .arg("--quiet")
        .arg(&manifest)
        .current_dir(&x)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "sha256sum -c: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // An existing FILE is not overwritten.
    let out = export(&env, &[os(&id), os("--archive"), file.as_os_str()]).failure();
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
}

fn have(tool: &str) -> bool {
    StdCommand::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn zstd_plain_and_stdout_archives_read_back_with_bsdtar_and_gnu_tar() {
    let env = Env::with_repo();
    let src = env.path("app");
    write(src.join("src/main.rs"), b"fn main() {}\n");
    write(pb(&src, b"odd\xffname\nwith newline"), b"odd\n");
    write(
        src.join(format!("deep/{}/{}", "d".repeat(120), "f".repeat(200))),
        random_bytes(2, 3_000_000),
    );
    fs::hard_link(src.join("src/main.rs"), src.join("main-link.rs")).unwrap();
    std::os::unix::fs::symlink(std::ffi::OsStr::new("src/main.rs"), src.join("link")).unwrap();
    xattr::set(src.join("src/main.rs"), "user.bin", b"\x00\xff=\n").unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(src.join("sparse.img")).unwrap();
        f.write_all_at(b"data in the middle", 8 << 20).unwrap();
        f.set_len(16 << 20).unwrap();
    }
    age_tree(&src);
    let id = env.backup([&src]);

    let zst = env.path("a.tar.zst");
    let plain = env.path("b.tar");
    export(&env, &[os(&id), os("--archive"), zst.as_os_str()]).success();
    export(&env, &[os(&id), os("--archive"), plain.as_os_str()]).success();
    assert_eq!(&fs::read(&zst).unwrap()[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
    assert_eq!(&fs::read(&plain).unwrap()[257..262], b"ustar");

    // `-` writes the archive to stdout (gzip unless --format says otherwise).
    let out = export(&env, &[os(&id), os("--archive"), os("-"), os("--format"), os("tar")]).success();
    assert_eq!(
        out.raw_stdout,
        fs::read(&plain).unwrap(),
        "stdout archive = file archive"
    );
    let out = export(&env, &[os(&id), os("--archive"), os("-")]).success();
    assert_eq!(&out.raw_stdout[..2], &[0x1f, 0x8b], "gzip magic");

    for (tool, file) in [("tar", &zst), ("tar", &plain), ("bsdtar", &zst), ("bsdtar", &plain)] {
        if !have(tool) {
            eprintln!("{tool} not installed: skipped");
            continue;
        }
        let x = env.path(format!("x-{tool}-{}", file.file_name().unwrap().to_string_lossy()));
        fs::create_dir_all(&x).unwrap();
        let mut c = StdCommand::new(tool);
        if tool == "tar" {
            c.args(["--xattrs", "--xattrs-include=*"]);
        }
        let ex = c
            .arg("-xpf")
            .arg(file)
            .current_dir(&x)
            .env("LANG", "C.UTF-8")
            .output()
            .unwrap();
        assert!(ex.status.success(), "{tool}: {}", String::from_utf8_lossy(&ex.stderr));
        assert_no_diffs(
            &compare_trees(&src, &x.join("app"), true),
            &format!("{tool} {}", file.display()),
        );
    }
}

/// The export folders of `dir` (not the hidden records and staging folders), sorted.
fn export_folders(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

#[test]
fn incremental_links_unchanged_files_and_rotates_with_keep() {
    let env = Env::with_repo();
    let src = env.path("myproj");
    write(src.join("big.bin"), random_bytes(1, 2_000_000));
    write(src.join("src/lib.rs"), b"pub fn a() {}\n");
    write(src.join("src/changing.rs"), b"version 1\n");
    write(src.join("notes/empty"), b"");
    xattr::set(src.join("big.bin"), "user.tag", b"x").unwrap();
    fs::hard_link(src.join("src/lib.rs"), src.join("lib-again.rs")).unwrap();
    std::os::unix::fs::symlink("src/lib.rs", src.join("link")).unwrap();
    age_tree(&src);
    let s1 = env.backup(
        [os("--note"), os("first: try/1")]
            .iter()
            .copied()
            .chain([src.as_os_str()]),
    );
    let base = env.path("project_backups");
    let out = export(&env, &[os("--json"), os(&s1), os("--incremental"), base.as_os_str()]).success();
    let v = out.json();
    assert_eq!(v["linked"], 0);
    let f1 = PathBuf::from(v["path"].as_str().unwrap());
    let name1 = f1.file_name().unwrap().to_str().unwrap().to_string();
    // YYYY-MM-DD_HHMMSS-<project>-<note made safe>; TZ=UTC in tests.
    assert_eq!(
        name1.len(),
        "2026-01-01_000000".len() + "-myproj-first_try_1".len(),
        "{name1}"
    );
    assert!(name1.ends_with("-myproj-first_try_1"), "{name1}");
    assert_eq!(&name1[4..5], "-");
    assert_eq!(&name1[10..11], "_");
    assert_trees_equal(&src, &f1, true);

    // Change one file; the next export links everything else to the first folder.
    std::thread::sleep(Duration::from_millis(1100)); // a new folder name (seconds)
    write(src.join("src/changing.rs"), b"version 2, longer\n");
    set_mtime(&src.join("src/changing.rs"), 1_700_000_000, 5);
    set_mtime(&src.join("src"), 1_700_000_001, 6);
    let s2 = env.backup([&src]);
    let out = export(&env, &[os("--json"), os(&s2), os("--incremental"), base.as_os_str()]).success();
    let v = out.json();
    let f2 = PathBuf::from(v["path"].as_str().unwrap());
    assert_eq!(v["previous"], f1.display().to_string());
    assert_trees_equal(&src, &f2, true);
    let ino = |p: PathBuf| fs::symlink_metadata(p).unwrap().ino();
    for same in ["big.bin", "src/lib.rs", "lib-again.rs", "notes/empty"] {
        assert_eq!(ino(f1.join(same)), ino(f2.join(same)), "{same} should be a hard link");
    }
    assert_ne!(ino(f1.join("src/changing.rs")), ino(f2.join("src/changing.rs")));
    // big.bin: two folders; lib.rs and lib-again.rs: one inode, four names.
    assert_eq!(fs::metadata(f2.join("big.bin")).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(f2.join("src/lib.rs")).unwrap().nlink(), 4);
    // Linked: big.bin, notes/empty and lib-again.rs (src/lib.rs is its second name in
    // the snapshot, so the restore links it to the new folder's copy).
    assert_eq!(v["linked"], 3, "{v}");
    assert_eq!(
        fs::read(f1.join("src/changing.rs")).unwrap(),
        b"version 1\n",
        "first folder untouched"
    );

    // An unchanged third export links everything, then --keep 2 removes the oldest.
    // Folders that are not this project's exports, and symlinks, are never touched.
    fs::create_dir_all(base.join("2020-01-01_000000-other")).unwrap();
    std::os::unix::fs::symlink(&f1, base.join("2019-01-01_000000-myproj")).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let s3 = env.backup([&src]);
    let out = export(
        &env,
        &[
            os("--json"),
            os(&s3),
            os("--incremental"),
            base.as_os_str(),
            os("--keep"),
            os("2"),
        ],
    )
    .success();
    let v = out.json();
    let f3 = PathBuf::from(v["path"].as_str().unwrap());
    assert_eq!(v["removed"], serde_json::json!([f1.display().to_string()]));
    assert!(!f1.exists());
    assert_trees_equal(&src, &f3, true);
    assert_trees_equal(&src, &f2, true);
    assert_eq!(
        export_folders(&base),
        [
            "2019-01-01_000000-myproj".to_string(),
            "2020-01-01_000000-other".into(),
            f2.file_name().unwrap().to_string_lossy().into(),
            f3.file_name().unwrap().to_string_lossy().into(),
        ]
    );
    assert_eq!(ino(f2.join("big.bin")), ino(f3.join("big.bin")));
    assert_eq!(ino(f2.join("src/changing.rs")), ino(f3.join("src/changing.rs")));

    // The same snapshot twice is refused, not overwritten.
    let out = export(&env, &[os(&s3), os("--incremental"), base.as_os_str()]).failure();
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
}

/// Issue 14 finding 21: two snapshots of one second got the same folder name and the
/// second export failed ("already exists"). Now `-1`, `-2` are appended, as the old tool
/// did, and rotation and hard-link reuse go by the records, suffixed names included.
#[test]
fn incremental_exports_of_snapshots_in_one_second_get_numbered_folders() {
    let env = Env::with_repo();
    let mut f = Forge::open(&env);
    let same = f.data(b"unchanged\n");
    let mut snaps = Vec::new();
    for i in 0..3u32 {
        let changing = f.data(format!("version {i}\n").as_bytes());
        let tree = f.tree(
            vec![
                node(b"a.txt", NodeKind::File(same.clone())),
                node(b"b.txt", NodeKind::File(changing)),
            ],
            None,
        );
        let t = Time {
            secs: 1_700_000_000,
            nanos: 10 + i,
        };
        snaps.push(f.snapshot_at(tree, "", t));
    }
    drop(f);
    let base = env.path("project_backups");
    let mut folders: Vec<PathBuf> = Vec::new();
    for (i, s) in snaps.iter().enumerate() {
        let args = [
            os("--json"),
            os(s),
            os("--incremental"),
            base.as_os_str(),
            os("--keep"),
            os("2"),
        ];
        let v = export(&env, &args).success().json();
        let p = PathBuf::from(v["path"].as_str().unwrap());
        if i > 0 {
            assert_eq!(v["previous"], folders[i - 1].display().to_string(), "{v}");
            assert_eq!(v["linked"], 1, "a.txt is linked from the previous folder: {v}");
            let ino = |p: &Path| fs::metadata(p.join("a.txt")).unwrap().ino();
            assert_eq!(ino(&p), ino(&folders[i - 1]));
        }
        assert_eq!(fs::read(p.join("b.txt")).unwrap(), format!("version {i}\n").as_bytes());
        folders.push(p);
    }
    let names: Vec<String> = folders
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "2023-11-14_221320-forged",
            "2023-11-14_221320-forged-1",
            "2023-11-14_221320-forged-2"
        ]
    );
    // --keep 2 removed the oldest, whatever the suffixes.
    assert_eq!(export_folders(&base), names[1..]);
    let records: Vec<String> = fs::read_dir(base.join(".projectclone-export"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        records,
        names[1..].iter().map(|n| format!("{n}.json")).collect::<Vec<_>>()
    );
    // The same snapshot again is still refused, naming the folder it went to.
    let out = export(&env, &[os(&snaps[2]), os("--incremental"), base.as_os_str()]).failure();
    assert!(
        out.stderr.contains("already exists") && out.stderr.contains(&names[2]),
        "{}",
        out.stderr
    );
}

#[test]
fn incremental_copies_a_file_changed_in_the_previous_folder() {
    let env = Env::with_repo();
    let src = env.path("p");
    write(src.join("a.txt"), b"aaa\n");
    write(src.join("b.txt"), b"bbb\n");
    age_tree(&src);
    let s1 = env.backup([&src]);
    let base = env.path("inc");
    let v = export(&env, &[os("--json"), os(&s1), os("--incremental"), base.as_os_str()])
        .success()
        .json();
    let f1 = PathBuf::from(v["path"].as_str().unwrap());
    // Someone edits the old export in place: it no longer matches, so it is not linked.
    write(f1.join("a.txt"), b"edited\n");
    std::thread::sleep(Duration::from_millis(1100));
    write(src.join("c.txt"), b"new\n");
    let s2 = env.backup([&src]);
    let v = export(&env, &[os("--json"), os(&s2), os("--incremental"), base.as_os_str()])
        .success()
        .json();
    assert_eq!(v["linked"], 1, "only b.txt: {v}");
    let f2 = PathBuf::from(v["path"].as_str().unwrap());
    assert_trees_equal(&src, &f2, true);
}

#[test]
fn dry_run_writes_nothing_in_every_mode() {
    let env = Env::with_repo();
    let src = env.path("proj");
    write(src.join("a/b.txt"), b"b\n");
    write(src.join("c.txt"), b"c\n");
    let id = env.backup([&src]);
    let base = env.path("inc");
    // An earlier incremental export, so the dry run has something to link against.
    export(&env, &[os(&id), os("--incremental"), base.as_os_str()]).success();
    std::thread::sleep(Duration::from_millis(1100));
    let id2 = env.backup([&src]);
    let before = fingerprint(env.root());
    let out = export(
        &env,
        &[os(&id2), os("--dry-run"), os("--clone"), env.path("c").as_os_str()],
    )
    .success();
    assert!(out.stdout.contains("file     a/b.txt"), "{}", out.stdout);
    let out = export(
        &env,
        &[
            os(&id2),
            os("--dry-run"),
            os("--archive"),
            env.path("a.tar.gz").as_os_str(),
            os("--manifest"),
        ],
    )
    .success();
    assert!(out.stdout.contains("file     proj/a/b.txt"), "{}", out.stdout);
    let out = export(
        &env,
        &[
            os(&id2),
            os("--dry-run"),
            os("--incremental"),
            base.as_os_str(),
            os("--keep"),
            os("1"),
        ],
    )
    .success();
    assert!(out.stdout.contains("link     a/b.txt"), "{}", out.stdout);
    assert!(out.stderr.contains("would remove"), "{}", out.stderr);
    let v = export(
        &env,
        &[os("--json"), os(&id2), os("--dry-run"), os("--archive"), os("-")],
    )
    .success()
    .json();
    assert_eq!(v["dry_run"], true);
    let mut after = fingerprint(env.root());
    let mut before = before;
    for m in [&mut before, &mut after] {
        m.retain(|p, _| !p.starts_with("cache"));
    }
    assert_eq!(before, after, "a dry run changed files");
}

/// Spawn `export ARGS`, SIGKILL it as soon as a staging folder appears in `parent`.
/// Returns whether it was killed before it finished.
fn kill_when_staging_appears(env: &Env, parent: &Path, args: &[&std::ffi::OsStr]) -> bool {
    kill_when_appears(env, parent, ".projectclone-staging-", args)
}

/// Spawn `export ARGS`, SIGKILL it as soon as a name containing `pattern` appears in
/// `parent`. Returns whether it was killed before it finished.
fn kill_when_appears(env: &Env, parent: &Path, pattern: &str, args: &[&std::ffi::OsStr]) -> bool {
    let mut child = std::process::Command::new(bin_path())
        .env("PROJECTCLONE_PASSWORD", PASSWORD)
        .env("HOME", env.path("home"))
        .env("TZ", "UTC")
        .arg("-r")
        .arg(env.repo())
        .arg("--cache-dir")
        .arg(env.cache())
        .arg("export")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let staging =
        || fs::read_dir(parent).is_ok_and(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().contains(pattern)));
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() && !staging() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_micros(200));
    }
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    killed
}

#[test]
fn killed_exports_leave_no_folder_and_the_next_one_cleans_up() {
    let env = Env::with_repo();
    let src = env.path("proj");
    for i in 0..6 {
        write(src.join(format!("data/{i}.bin")), random_bytes(i, 8_000_000));
    }
    let id = env.backup([&src]);
    let views = env.path("views");
    fs::create_dir_all(&views).unwrap();

    let dir = views.join("clone");
    assert!(
        kill_when_staging_appears(&env, &views, &[os(&id), os("--clone"), dir.as_os_str()]),
        "the export finished before it could be killed"
    );
    assert!(!dir.exists(), "a killed export left a folder at DIR");
    let v = export(&env, &[os("--json"), os(&id), os("--clone"), dir.as_os_str()])
        .success()
        .json();
    assert_eq!(v["cleaned"].as_array().unwrap().len(), 1, "{v}");
    assert_trees_equal(&src, &dir, true);

    let inc = views.join("inc");
    fs::create_dir_all(&inc).unwrap();
    assert!(kill_when_staging_appears(
        &env,
        &inc,
        &[os(&id), os("--incremental"), inc.as_os_str()]
    ));
    assert!(export_folders(&inc).is_empty(), "{:?}", export_folders(&inc));
    let v = export(&env, &[os("--json"), os(&id), os("--incremental"), inc.as_os_str()])
        .success()
        .json();
    assert_eq!(v["cleaned"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(export_folders(&inc).len(), 1);
    let hidden: Vec<_> = fs::read_dir(&inc)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert_eq!(hidden, [".projectclone-export"], "only the records folder stays hidden");

    // An archive: no FILE, and the next export removes the temp file.
    let file = views.join("a.tar");
    assert!(kill_when_appears(
        &env,
        &views,
        ".projectclone-tmp-",
        &[os(&id), os("--archive"), file.as_os_str()]
    ));
    assert!(!file.exists());
    let v = export(&env, &[os("--json"), os(&id), os("--archive"), file.as_os_str()])
        .success()
        .json();
    assert_eq!(v["cleaned"].as_array().unwrap().len(), 1, "{v}");
    let left: Vec<_> = fs::read_dir(&views)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("projectclone"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn hostile_snapshot_exports_nothing() {
    let env = Env::with_repo();
    let mut forge = Forge::open(&env);
    let data = forge.data(b"evil\n");
    let tree = forge.tree(vec![node(b"..", NodeKind::File(data))], None);
    let snap = forge.snapshot(tree, "hostile");
    for args in [
        vec![os("--clone"), env.path("v/c").as_os_str()],
        vec![os("--archive"), env.path("v/a.tar").as_os_str()],
    ] {
        let mut a = vec![os(&snap)];
        a.extend(args);
        let out = export(&env, &a);
        assert_ne!(out.code, 0, "{}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    assert!(!env.path("v/c").exists() && !env.path("v/a.tar").exists());
    assert!(!env.path("evil").exists() && !env.root().parent().unwrap().join("..").join("evil").exists());
}

// ---------------------------------------------------------------- import

use std::os::unix::ffi::OsStrExt;

#[test]
fn import_brings_old_folders_and_archives_in_with_their_time_and_note() {
    let env = Env::with_repo();
    let old = env.path("project_backups");
    // A plain folder, an incremental folder hard-linked to it, and an archive.
    let first = old.join("2024-03-05_140102-my-app-first_copy");
    write(first.join("src/main.py"), b"print('v1')\n");
    write(first.join("big.bin"), random_bytes(4, 1_000_000));
    xattr::set(first.join("big.bin"), "user.x", b"1").unwrap();
    age_tree(&first);
    let second = old.join("2024-03-06_090000-my-app");
    fs::create_dir_all(second.join("src")).unwrap();
    fs::hard_link(first.join("big.bin"), second.join("big.bin")).unwrap();
    write(second.join("src/main.py"), b"print('v2')\n");
    age_tree(&second);
    let third_src = env.path("staging/my-app");
    write(third_src.join("src/main.py"), b"print('v3')\n");
    let archive = old.join("2024-03-07_100000-my-app-release.tar.gz");
    let st = StdCommand::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(env.path("staging"))
        .arg("my-app")
        .status()
        .unwrap();
    assert!(st.success());

    // "my-app-first_copy": project or note? The name cannot say.
    let out = env.run([os("import"), first.as_os_str()]).failure();
    assert!(out.stderr.contains("--project"), "{}", out.stderr);

    let before = fingerprint(&old);
    let mut c = env.cmd();
    c.args(["--json", "import", "--project", "my-app"])
        .arg(&archive)
        .arg(&second)
        .arg(&first);
    let v = run(&mut c).success().json();
    assert_eq!(fingerprint(&old), before, "import changed its sources");
    let v = v.as_array().unwrap();
    assert_eq!(v.len(), 3);
    // Oldest first, with the names' time (TZ=UTC), project and note.
    assert_eq!(v[0]["time"], "2024-03-05T14:01:02.000000000+00:00");
    assert_eq!(v[0]["note"], "first_copy");
    assert_eq!(v[1]["note"], serde_json::Value::Null);
    assert_eq!(v[2]["note"], "release");
    // The incremental folder's linked file is the parent's: not read again.
    assert_eq!(v[1]["files_unmodified"], 1, "{}", v[1]);

    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 3);
    for s in &snaps {
        assert_eq!(s["paths"], serde_json::json!(["/my-app"]));
        assert!(s["tags"].as_array().unwrap().contains(&serde_json::json!("imported")));
    }
    for (i, src) in [&first, &second].into_iter().enumerate() {
        let t = env.path(format!("r{i}"));
        env.restore(v[i]["snapshot_id"].as_str().unwrap(), &t);
        assert_trees_equal(src, &t, true);
    }
    let t = env.path("r2");
    env.restore(v[2]["snapshot_id"].as_str().unwrap(), &t);
    assert_eq!(fs::read(t.join("src/main.py")).unwrap(), b"print('v3')\n");
    // No temporary folder left beside the archive.
    assert_eq!(fs::read_dir(&old).unwrap().count(), 3);

    // Our own archives import back exactly (PAX nanosecond mtimes and xattrs included).
    let ours = env.path("again/2024-03-08_000000-my-app-round_trip.tar.gz");
    export(
        &env,
        &[
            os(v[0]["snapshot_id"].as_str().unwrap()),
            os("--archive"),
            ours.as_os_str(),
        ],
    )
    .success();
    let w = env
        .run([
            os("--json"),
            os("import"),
            os("--project"),
            os("my-app"),
            ours.as_os_str(),
        ])
        .success()
        .json();
    let t = env.path("r3");
    env.restore(w[0]["snapshot_id"].as_str().unwrap(), &t);
    assert_trees_equal(&first, &t, true);
}

#[test]
fn import_of_a_hostile_archive_writes_nothing_outside() {
    let env = Env::with_repo();
    let archive = env.path("in/2024-01-01_000000-app.tar.gz");
    fs::create_dir_all(env.path("in")).unwrap();
    raw_tar_gz(
        &archive,
        &[
            (b"app/ok.txt", tar::EntryType::Regular, b"", b"ok\n"),
            (b"../escape.txt", tar::EntryType::Regular, b"", b"evil\n"),
            (b"app/../../escape2.txt", tar::EntryType::Regular, b"", b"evil\n"),
            (
                b"app/up",
                tar::EntryType::Symlink,
                env.root().as_os_str().as_bytes(),
                b"",
            ),
            (b"app/up/escape3.txt", tar::EntryType::Regular, b"", b"evil\n"),
            (b"app/hl", tar::EntryType::Link, b"../../etc/passwd", b""),
        ],
    );
    let before = rel_paths(env.root());
    let out = env.run([os("import"), archive.as_os_str()]);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let mut after = rel_paths(env.root());
    after.retain(|p| !p.starts_with("repo") && !p.starts_with("cache"));
    let mut before = before;
    before.retain(|p| !p.starts_with("repo") && !p.starts_with("cache"));
    assert_eq!(before, after, "the import wrote outside its folder\n{}", out.stderr);
    for p in ["escape.txt", "escape2.txt", "escape3.txt"] {
        assert!(!env.path(p).exists() && !env.path("in").join(p).exists(), "{p}");
    }
}

#[test]
fn several_paths_export_each_under_its_name() {
    let env = Env::with_repo();
    let src = env.path("ws");
    write(src.join("alpha/one.txt"), b"one\n");
    write(src.join("beta/two.txt"), b"two\n");
    age_tree(&src);
    let id = env.backup([src.join("alpha"), src.join("beta")]);
    let dir = env.path("c");
    export(&env, &[os(&id), os("--clone"), dir.as_os_str()]).success();
    assert_trees_equal(&src.join("alpha"), &dir.join("alpha"), true);
    assert_trees_equal(&src.join("beta"), &dir.join("beta"), true);
    // No snapshot root: the folder gets a new directory's mode, not the staging 0700.
    fs::create_dir(env.path("fresh")).unwrap();
    assert_eq!(
        fs::metadata(&dir).unwrap().mode(),
        fs::metadata(env.path("fresh")).unwrap().mode()
    );
    // The archive's top folder is the paths' common parent.
    let out = export(&env, &[os(&id), os("--dry-run"), os("--archive"), os("x.tar")]).success();
    assert!(out.stdout.contains("dir      ws/alpha\n"), "{}", out.stdout);
}

#[test]
fn first_incremental_export_links_to_the_old_tools_latest_folder_by_content() {
    let env = Env::with_repo();
    let src = env.path("webapp");
    write(src.join("a.bin"), random_bytes(8, 1_500_000));
    write(src.join("b.txt"), b"same size\n");
    write(src.join("c.txt"), b"changed\n");
    age_tree(&src);
    let base = env.path("project_backups");
    // The old tool's folders: an older one and the latest, a `cp -a` copy in which
    // b.txt was altered keeping its size and mtime (only its content tells).
    fs::create_dir_all(&base).unwrap();
    for name in ["2023-01-01_000000-webapp", "2024-02-02_101010-webapp-last_one"] {
        let st = StdCommand::new("cp").arg("-a").arg(&src).arg(base.join(name)).status();
        assert!(st.unwrap().success());
    }
    let last = base.join("2024-02-02_101010-webapp-last_one");
    let md = fs::metadata(last.join("b.txt")).unwrap();
    write(last.join("b.txt"), b"SAME SIZE\n");
    set_mtime(&last.join("b.txt"), md.mtime(), md.mtime_nsec() as u32);
    write(src.join("c.txt"), b"changed!\n");
    let id = env.backup([&src]);
    let v = export(&env, &[os("--json"), os(&id), os("--incremental"), base.as_os_str()])
        .success()
        .json();
    assert_eq!(v["previous"], last.display().to_string());
    assert_eq!(v["linked"], 1, "only a.bin: {v}");
    let f = PathBuf::from(v["path"].as_str().unwrap());
    assert_trees_equal(&src, &f, true);
    assert_eq!(
        fs::metadata(f.join("a.bin")).unwrap().ino(),
        fs::metadata(last.join("a.bin")).unwrap().ino()
    );
    assert_eq!(fs::read(last.join("b.txt")).unwrap(), b"SAME SIZE\n");
}

#[test]
fn import_refuses_sparse_members_it_cannot_unpack() {
    let env = Env::with_repo();
    let src = env.path("sp");
    fs::create_dir_all(&src).unwrap();
    fs::File::create(src.join("holes.img"))
        .and_then(|f| f.set_len(1 << 20))
        .unwrap();
    let id = env.backup([&src]);
    let a = env.path("in/2024-01-01_000000-sp.tar");
    export(&env, &[os(&id), os("--archive"), a.as_os_str()]).success();
    let out = env.run([os("import"), a.as_os_str()]).failure();
    assert!(out.stderr.contains("sparse"), "{}", out.stderr);
    assert_eq!(env.snapshots().len(), 1, "nothing imported");
    assert_eq!(
        fs::read_dir(env.path("in")).unwrap().count(),
        1,
        "no temporary folder left"
    );
}
