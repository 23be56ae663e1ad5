//! Guarantee 1: restore reproduces bytes, types, modes, mtimes (ns), owners, xattrs, sparse
//! holes, hard-link groups and raw name bytes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::util::*;

#[test]
fn nasty_tree_round_trips_exactly() {
    let env = Env::with_repo();
    let src = env.path("src");
    build_nasty(&src);

    let id = env.backup([&src]);
    let target = env.path("restored");
    env.restore(&id, &target);
    assert_trees_equal(&src, &target, true);

    // A second snapshot of the unchanged tree takes the "unmodified" path for every file
    // (metadata from the parent snapshot): it must restore just as exactly, also with --verify.
    let id2 = env.backup([&src]);
    assert_ne!(id, id2);
    let target2 = env.path("restored2");
    env.run([
        "restore".as_ref(),
        id2.as_ref(),
        "--verify".as_ref(),
        "--target".as_ref(),
        target2.as_os_str(),
    ])
    .success();
    assert_trees_equal(&src, &target2, true);
}

#[test]
fn several_paths_restore_under_their_basenames() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("alpha/one.txt"), b"one\n");
    write(src.join("alpha/deep/two.txt"), b"two\n");
    xattr::set(src.join("alpha"), "user.a", b"1").unwrap();
    write(src.join("beta/three.bin"), random_bytes(5, 300_000));
    fs::create_dir_all(src.join("beta/empty")).unwrap();
    write(src.join("gamma.txt"), b"single file among the paths\n");
    fs::set_permissions(src.join("gamma.txt"), fs::Permissions::from_mode(0o604)).unwrap();
    fs::set_permissions(src.join("beta"), fs::Permissions::from_mode(0o750)).unwrap();
    age_tree(&src);

    let id = env.backup([src.join("alpha"), src.join("beta"), src.join("gamma.txt")]);
    let target = env.path("out");
    env.restore(&id, &target);

    let mut names: Vec<_> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["alpha", "beta", "gamma.txt"]);
    assert_trees_equal(&src.join("alpha"), &target.join("alpha"), true);
    assert_trees_equal(&src.join("beta"), &target.join("beta"), true);
    assert_entries_equal(&src.join("gamma.txt"), &target.join("gamma.txt"));
}

#[test]
fn single_file_path_round_trips() {
    let env = Env::with_repo();
    let src = env.path("src");
    let f = src.join("only.bin");
    write(&f, random_bytes(9, 1_500_000));
    std::os::unix::fs::lchown(&f, Some(1234), Some(5678)).unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o4750)).unwrap();
    xattr::set(&f, "user.single", b"yes").unwrap();
    set_mtime(&f, 1_600_000_000, 987_654_321);

    let id = env.backup([&f]);
    let target = env.path("out");
    env.restore(&id, &target);
    let names: Vec<_> = fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(
        names,
        ["only.bin"],
        "a single-file snapshot restores that file under its name"
    );
    assert_entries_equal(&f, &target.join("only.bin"));
}

/// The comparison used above must notice each kind of difference it claims to check,
/// or the round-trip tests prove nothing. `cp -a` makes a faithful copy to mutate.
#[test]
fn tree_comparison_notices_every_kind_of_difference() {
    let env = Env::new();
    let src = env.path("src");
    build_nasty(&src);
    let copy = env.path("copy");
    let st = std::process::Command::new("cp")
        .args(["-a", "--sparse=always"])
        .arg(&src)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    assert_trees_equal(&src, &copy, true);

    let expect_diff = |what: &str, needle: &str| {
        let d = compare_trees(&src, &copy, true);
        assert!(
            d.iter().any(|l| l.contains(needle)),
            "{what}: not detected (looked for {needle:?} in {d:?})"
        );
    };

    let hello = copy.join("hello.txt");
    set_mtime(&hello, 1_700_000_000, 123_456_790);
    expect_diff("mtime nanoseconds", "hello.txt");
    set_mtime(&hello, 1_700_000_000, 123_456_789);

    fs::set_permissions(copy.join("modes/zero"), fs::Permissions::from_mode(0o001)).unwrap();
    expect_diff("mode bits", "zero");
    fs::set_permissions(copy.join("modes/zero"), fs::Permissions::from_mode(0o000)).unwrap();

    xattr::set(&hello, "user.comment", b"another comment").unwrap();
    expect_diff("xattr value", "hello.txt");
    xattr::set(&hello, "user.comment", b"a comment").unwrap();
    set_mtime(&hello, 1_700_000_000, 123_456_789);

    std::os::unix::fs::lchown(copy.join("owned/file"), Some(1235), None).unwrap();
    expect_diff("owner", "owned/file");
    std::os::unix::fs::lchown(copy.join("owned/file"), Some(1234), None).unwrap();

    let link = copy.join("links/dangling");
    let t = fs::symlink_metadata(&link).unwrap();
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("does/not/exiss", &link).unwrap();
    {
        use std::os::unix::fs::MetadataExt;
        set_mtime(&link, t.mtime(), t.mtime_nsec() as u32);
        let d = fs::metadata(src.join("links")).unwrap();
        set_mtime(&copy.join("links"), d.mtime(), d.mtime_nsec() as u32);
    }
    expect_diff("symlink target", "dangling");

    {
        use std::os::unix::fs::{FileExt, MetadataExt};
        let p = copy.join("big/random.bin");
        let md = fs::metadata(&p).unwrap();
        let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&[random_bytes(1, NASTY_BIG)[10_000_000] ^ 1], 10_000_000)
            .unwrap();
        set_mtime(&p, md.mtime(), md.mtime_nsec() as u32);
    }
    expect_diff("one flipped byte", "contents differ");

    // Replace a file by an independent copy with identical metadata (the directory's
    // mtime is put back too), so only the hard-link group or the holes differ.
    let replace_with_copy = |rel: &str, sparse: &str| {
        use std::os::unix::fs::MetadataExt;
        let p = copy.join(rel);
        let tmp = env.path("tmp-copy");
        let st = std::process::Command::new("cp")
            .args(["--preserve=all", sparse])
            .arg(&p)
            .arg(&tmp)
            .status()
            .unwrap();
        assert!(st.success());
        fs::rename(&tmp, &p).unwrap();
        let parent = p.parent().unwrap();
        let d = fs::metadata(src.join(parent.strip_prefix(&copy).unwrap())).unwrap();
        set_mtime(parent, d.mtime(), d.mtime_nsec() as u32);
    };
    replace_with_copy("other/three", "--sparse=auto");
    expect_diff("broken hard-link group", "hard-link groups differ");
    replace_with_copy("sparse.img", "--sparse=never");
    expect_diff("filled holes", "not sparse");

    fs::rename(pb(&copy, b"bad\xff\xfename"), pb(&copy, b"bad\xff\xfdname")).unwrap();
    expect_diff("name bytes", "only in");
}

#[test]
fn hard_links_across_several_paths_stay_linked() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("one/a.txt"), b"shared by two paths\n");
    fs::create_dir_all(src.join("two/deeper")).unwrap();
    fs::hard_link(src.join("one/a.txt"), src.join("two/deeper/b.txt")).unwrap();
    let id = env.backup([src.join("one"), src.join("two")]);
    let target = env.path("out");
    env.restore(&id, &target);
    let (a, b) = (
        fs::metadata(target.join("one/a.txt")).unwrap(),
        fs::metadata(target.join("two/deeper/b.txt")).unwrap(),
    );
    assert_eq!(
        a.ino(),
        b.ino(),
        "the hard link across the two paths was not restored as one"
    );
    assert_eq!(
        fs::read(target.join("two/deeper/b.txt")).unwrap(),
        b"shared by two paths\n"
    );
}

#[test]
fn empty_directory_round_trips() {
    let env = Env::with_repo();
    let src = env.path("empty-src");
    fs::create_dir(&src).unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o710)).unwrap();
    xattr::set(&src, "user.e", b"empty").unwrap();
    set_mtime(&src, 1_500_000_000, 5);
    let id = env.backup([&src]);
    let target = env.path("out");
    env.restore(&id, &target);
    assert_trees_equal(&src, &target, true);
}

/// A directory whose entries do not fit one tree blob is split into pages; it must list,
/// diff and restore whole. Symlinks with 4000-byte targets make big entries cheaply.
#[test]
fn huge_directory_is_paged_and_round_trips() {
    let env = Env::with_repo();
    let src = env.path("src");
    let dir = src.join("huge");
    fs::create_dir_all(&dir).unwrap();
    const N: usize = 1200;
    let name = |i: usize| format!("{i:05}-{}", "n".repeat(190));
    for i in 0..N {
        // About 4.4 kB per entry: some 5 MB of entries, over the 4 MB page size.
        let target = format!("{i}/{}", "t".repeat(3990));
        std::os::unix::fs::symlink(target, dir.join(name(i))).unwrap();
    }
    write(dir.join("zzz-last.txt"), b"the last entry\n");
    write(dir.join("000-first.txt"), b"the first entry\n");
    age_tree(&src);
    let id = env.backup([&src]);
    {
        let f = Forge::open(&env);
        let (_, snap) = f.repo.resolve_snapshot(&id).unwrap();
        let node = f.repo.find_node(&snap.tree, b"huge").unwrap().unwrap();
        let projectclone::format::NodeKind::Dir(t) = node.kind else {
            panic!("huge is a directory")
        };
        assert!(
            f.repo.load_tree_page(&t).unwrap().next.is_some(),
            "the test needs a paged directory"
        );
    }
    let ls = env.run(["ls", &id]).success();
    assert_eq!(
        ls.stdout.lines().count(),
        N + 3,
        "ls lists every entry of a paged directory once"
    );
    let target = env.path("out");
    env.restore(&id, &target);
    assert_trees_equal(&src, &target, true);

    fs::remove_file(dir.join(name(777))).unwrap();
    let id2 = env.backup([&src]);
    let d = env.run(["diff", &id, &id2]).success();
    let lines: Vec<&str> = d.stdout.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with('-') && l.contains("00777-")),
        "diff across pages shows the removed entry: {lines:?}"
    );
    assert!(
        lines.len() <= 2,
        "only the removed entry (and the directory's metadata) differ: {lines:?}"
    );
}

/// In a fresh target most entries are created with their recorded mode and get no chmod
/// afterwards; whatever the restoring process's umask, and in a setgid target, every
/// mode must still come out exact.
#[test]
fn modes_are_exact_under_any_umask_and_in_a_setgid_target() {
    let env = Env::with_repo();
    let src = env.path("src");
    let files: [(&str, u32); 11] = [
        ("f644", 0o644),
        ("f755", 0o755),
        ("f600", 0o600),
        ("f444", 0o444),
        ("f666", 0o666),
        ("f777", 0o777),
        ("f640", 0o640),
        ("f4755", 0o4755),
        ("f2755", 0o2755),
        ("f000", 0o000),
        ("f200", 0o200),
    ];
    let dirs: [(&str, u32); 7] = [
        ("d755", 0o755),
        ("d700", 0o700),
        ("d775", 0o775),
        ("d777", 0o777),
        ("d1777", 0o1777),
        ("d555", 0o555),
        ("d2755", 0o2755),
    ];
    for (d, _) in dirs {
        for (f, _) in files {
            write(src.join(d).join(f), f.as_bytes());
        }
    }
    let chmod = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    for (d, dm) in dirs {
        for (f, fm) in files {
            chmod(&src.join(d).join(f), fm);
        }
        chmod(&src.join(d), dm);
    }
    age_tree(&src);
    let id = env.backup([&src]);

    let restore = |umask: &str, target: &Path| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(bin_path())
            .env_remove("PROJECTCLONE_REPO")
            .env_remove("PROJECTCLONE_PASSWORD_FILE")
            .env("PROJECTCLONE_PASSWORD", PASSWORD)
            .arg("-r")
            .arg(env.repo())
            .arg("--cache-dir")
            .arg(env.cache())
            .args(["restore", &id, "--target"])
            .arg(target)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    for umask in ["022", "077", "000", "777"] {
        let target = env.path(format!("out-{umask}"));
        restore(umask, &target);
        assert_trees_equal(&src, &target, true);
    }
    // A setgid target passes its bit to new directories: they must still end up exact.
    let target = env.path("out-setgid");
    fs::create_dir(&target).unwrap();
    chmod(&target, 0o2755);
    restore("022", &target);
    assert_trees_equal(&src, &target, true);

    // A default ACL (user rwx, group r-x, other none) replaces the umask for new entries.
    // The restored entries inherit ACLs (so xattrs differ), but every mode must be exact.
    let target = env.path("out-acl");
    fs::create_dir(&target).unwrap();
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm) in [(0x01u16, 7u16), (0x04, 5), (0x20, 0)] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    xattr::set(&target, "system.posix_acl_default", &acl).expect("default ACL (ext4 and tmpfs support them)");
    restore("022", &target);
    let mut n = 0;
    for (d, _) in dirs {
        for (f, _) in files {
            let rel = Path::new(d).join(f);
            let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode(&target.join(&rel)), mode(&src.join(&rel)), "{}", rel.display());
            n += 1;
        }
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&target.join(d)), mode(&src.join(d)), "{d}");
    }
    assert_eq!(n, files.len() * dirs.len());
}

/// A restore of more chunks than `Index::locate_sorted`'s threshold (4,096, and a quarter of
/// the index) finds them by one ordered scan of the index cache, and writes into more
/// directories than a worker keeps descriptors for (eight): the tree still comes back exact.
#[test]
fn a_restore_of_thousands_of_chunks_in_many_directories_round_trips() {
    let env = Env::with_repo();
    let src = env.path("src");
    for i in 0..5000u64 {
        let len = 20 + (i as usize * 7) % 200;
        write(
            src.join(format!("d{:02}/s{}/f{i}", i % 40, i % 3)),
            random_bytes(i, len),
        );
    }
    age_tree(&src);
    let id = env.backup([&src]);
    let target = env.path("restored");
    env.restore(&id, &target);
    assert_trees_equal(&src, &target, true);
}
