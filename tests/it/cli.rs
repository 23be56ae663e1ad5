//! The CLI contract (README, "Commands"): exit codes, stdout/stderr discipline, JSON shapes,
//! snapshot specs, ignore files, dry runs, repository resolution, restore options and a
//! rebuildable index cache.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::util::*;

/// Relative paths of the regular files below `dir`.
fn file_set(dir: &Path) -> BTreeSet<String> {
    fingerprint(dir)
        .into_iter()
        .filter(|(_, v)| v.starts_with("file "))
        .map(|(p, _)| p.to_string_lossy().into_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Lines of `ls` output as relative paths.
fn ls_paths(out: &Out) -> BTreeSet<String> {
    out.stdout
        .lines()
        .map(|l| l.trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// RFC 3339 with exactly nine fractional digits and a numeric offset (or Z).
fn is_rfc3339_ns(t: &str) -> bool {
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r.clone()).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 30
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..29);
    if !shape {
        return false;
    }
    let off = &t[29..];
    off == "Z"
        || (off.len() == 6
            && (off.starts_with('+') || off.starts_with('-'))
            && digits(30..32)
            && &off[3..4] == ":"
            && digits(33..35))
}

// ---------------------------------------------------------------- exit codes

#[test]
fn unknown_command_or_flag_is_a_usage_error() {
    let env = Env::with_repo();
    let before = fingerprint(&env.repo());
    for args in [
        vec!["frobnicate"],
        vec!["backup", "--frobnicate"],
        vec!["--frobnicate", "snapshots"],
        vec!["restore", "latest"],
        vec!["snapshots", "--no-such-flag"],
    ] {
        let out = env.run(&args).code(2);
        assert!(!out.stderr.is_empty(), "{args:?}: a usage error explains itself");
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
    assert_eq!(fingerprint(&env.repo()), before);
}

#[test]
fn missing_path_fails_and_creates_no_snapshot() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.txt"), b"a");
    let missing = env.path("does-not-exist");
    let before = fingerprint(&env.repo());
    let out = env.run(["backup".as_ref(), missing.as_os_str()]).code(1);
    assert!(
        out.stderr.contains("does-not-exist"),
        "the error names the path: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
    // One good and one missing path: still nothing.
    env.run(["backup".as_ref(), src.as_os_str(), missing.as_os_str()])
        .code(1);
    assert_eq!(fingerprint(&env.repo()), before, "nothing may be written");
    assert!(env.snapshots().is_empty());
}

#[test]
fn unreadable_source_files_give_exit_3_and_a_saved_snapshot() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("ok.txt"), b"readable\n");
    write(src.join("sub/ok2.txt"), b"also readable\n");
    write(src.join("secret.txt"), b"not readable\n");
    write(src.join("closed_dir/inner.txt"), b"in a closed directory\n");
    // The backup runs as nobody: the repository, cache and tree must be reachable.
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    world_accessible(&env.repo());
    world_accessible(&env.cache());
    world_accessible(&src);
    fs::set_permissions(src.join("secret.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(src.join("closed_dir"), fs::Permissions::from_mode(0o000)).unwrap();

    let out = run(env.cmd_as_nobody().arg("backup").arg(&src)).code(3);
    let id = out.snapshot_id();
    assert!(
        out.stderr.contains("secret.txt"),
        "the unreadable file is named: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("closed_dir"),
        "the unreadable directory is named: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("ok.txt"), "{}", out.stderr);

    let json = run(env.cmd_as_nobody().args(["--json", "backup"]).arg(&src))
        .code(3)
        .json();
    assert_eq!(json["errors"], 2, "{json}");

    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[0]["id"], id.as_str());
    let target = env.path("out");
    env.restore(&id, &target);
    assert_eq!(fs::read(target.join("ok.txt")).unwrap(), b"readable\n");
    assert_eq!(fs::read(target.join("sub/ok2.txt")).unwrap(), b"also readable\n");
    assert!(
        !target.join("secret.txt").exists(),
        "an unreadable file is not in the snapshot"
    );
    assert!(!target.join("closed_dir/inner.txt").exists());
}

// ---------------------------------------------------------------- output

#[test]
fn backup_prints_exactly_the_snapshot_id() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.txt"), b"a");
    let out = env.run(["backup".as_ref(), src.as_os_str()]).success();
    assert_id_line(&out.stdout);
    let q = env.run(["-q".as_ref(), "backup".as_ref(), src.as_os_str()]).success();
    assert_id_line(&q.stdout);
    assert!(q.stderr.is_empty(), "-q leaves stderr empty on success: {}", q.stderr);
    let q2 = env.run(["backup".as_ref(), src.as_os_str(), "-q".as_ref()]).success();
    assert_id_line(&q2.stdout);
    let ids: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>(),
        [out.stdout.trim(), q.stdout.trim(), q2.stdout.trim()]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .iter()
            .collect::<BTreeSet<_>>()
    );
}

#[test]
fn json_output_has_the_documented_fields() {
    let env = Env::with_repo();
    let src = env.path(std::ffi::OsStr::new("caf\u{e9}"));
    write(src.join("one.txt"), b"1");
    write(src.join("d/two.txt"), b"22");
    write(src.join("d/e/three.txt"), b"333");
    age_tree(&src);
    let b = run(env
        .cmd()
        .args([
            "--json",
            "backup",
            "--tag",
            "t1",
            "--tag",
            "t2",
            "--note",
            "first note",
            "--host",
            "hostA",
        ])
        .arg(&src))
    .success()
    .json();
    for k in [
        "snapshot_id",
        "files_new",
        "files_changed",
        "files_unmodified",
        "dirs",
        "data_added",
        "data_read",
        "total_duration",
        "errors",
    ] {
        assert!(b.get(k).is_some(), "backup --json lacks {k}: {b}");
    }
    let id = b["snapshot_id"].as_str().expect("snapshot_id is a string").to_string();
    assert!(is_hex(&id, 64), "{id}");
    assert_eq!(b["files_new"], 3, "{b}");
    assert_eq!(b["files_changed"], 0, "{b}");
    assert_eq!(b["files_unmodified"], 0, "{b}");
    assert_eq!(b["dirs"], 2, "d and d/e (the snapshot root is not counted): {b}");
    assert_eq!(b["data_read"], 6, "{b}");
    assert!(b["data_added"].as_u64().unwrap() > 0, "{b}");
    assert!(b["total_duration"].is_number(), "{b}");
    assert_eq!(b["errors"], 0, "{b}");

    let b2 = run(env.cmd().args(["--json", "backup", "--host", "hostA"]).arg(&src))
        .success()
        .json();
    let id2 = b2["snapshot_id"].as_str().unwrap().to_string();

    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 2);
    let canon = fs::canonicalize(&src).unwrap();
    for s in &snaps {
        for k in [
            "id", "short_id", "time", "hostname", "username", "paths", "tags", "note", "tree", "parent",
        ] {
            assert!(s.get(k).is_some(), "snapshots --json lacks {k}: {s}");
        }
        let sid = s["id"].as_str().unwrap();
        assert!(is_hex(sid, 64), "{s}");
        let short = s["short_id"].as_str().unwrap();
        assert!(short.len() >= 4 && sid.starts_with(short), "{s}");
        assert!(
            is_rfc3339_ns(s["time"].as_str().unwrap()),
            "time must be RFC 3339 with ns and offset: {s}"
        );
        assert_eq!(s["hostname"], "hostA");
        assert!(s["username"].is_string(), "{s}");
        assert_eq!(s["paths"], serde_json::json!([canon.to_str().unwrap()]), "{s}");
        assert!(is_hex(s["tree"].as_str().unwrap(), 64), "{s}");
    }
    let first = snaps.iter().find(|s| s["id"] == id.as_str()).expect("first listed");
    let second = snaps.iter().find(|s| s["id"] == id2.as_str()).expect("second listed");
    assert_eq!(first["tags"], serde_json::json!(["t1", "t2"]));
    assert_eq!(first["note"], "first note");
    assert!(first["parent"].is_null(), "{first}");
    assert_eq!(second["tags"], serde_json::json!([]));
    assert!(second["note"].is_null(), "{second}");
    assert_eq!(
        second["parent"],
        id.as_str(),
        "same host and paths: the first is the parent"
    );
    assert_eq!(second["tree"], first["tree"], "same content, same tree id");

    // The time carries the zone offset in force when the backup ran.
    let b3 = run(env.cmd().env("TZ", "XST-05:30").args(["--json", "backup"]).arg(&src))
        .success()
        .json();
    let snaps = env.snapshots();
    let third = snaps.iter().find(|s| s["id"] == b3["snapshot_id"]).unwrap();
    let t = third["time"].as_str().unwrap();
    assert!(
        is_rfc3339_ns(t) && t.ends_with("+05:30"),
        "backup under TZ=XST-05:30: {t}"
    );

    // A path that is not UTF-8 is escaped, not mangled or dropped.
    let odd = pb(env.root(), b"odd\xffdir");
    write(odd.join("f"), b"f");
    env.backup([&odd]);
    let snaps = env.snapshots();
    let paths: Vec<&str> = snaps.iter().map(|s| s["paths"][0].as_str().unwrap()).collect();
    assert!(
        paths.iter().any(|p| p.ends_with("odd\\xffdir")),
        "non-UTF-8 path should appear with its byte escaped: {paths:?}"
    );
}

// ---------------------------------------------------------------- snapshot specs

#[test]
fn snapshot_specs_latest_prefix_and_errors() {
    let env = Env::with_repo();
    let src = env.path("src");
    let mut ids = Vec::new();
    for i in 0..3 {
        write(src.join("f.txt"), format!("version {i}\n"));
        write(src.join(format!("only{i}.txt")), b"x");
        ids.push(env.backup([&src]));
    }
    let listing = |spec: &str| ls_paths(&env.run(["ls", spec]).success());
    assert!(listing("latest").contains("only2.txt"));
    assert!(!listing(&ids[0]).contains("only1.txt"));
    assert!(listing(&ids[1]).contains("only1.txt"));
    assert_eq!(listing(&ids[0][..4]), listing(&ids[0]), "a 4-digit prefix");
    assert_eq!(listing(&ids[1][..10]), listing(&ids[1]));
    assert_eq!(
        listing(&ids[2].to_uppercase()[..8]),
        listing(&ids[2]),
        "hex digits in any case"
    );

    let target = env.path("latest-restore");
    env.restore("latest", &target);
    assert_eq!(fs::read(target.join("f.txt")).unwrap(), b"version 2\n");

    let out = env.run(["ls", &ids[0][..3]]).code(1);
    assert!(
        out.stderr.contains("4"),
        "too-short prefix: say how many digits: {}",
        out.stderr
    );
    let unknown = (0..=u16::MAX)
        .map(|n| format!("{n:04x}"))
        .find(|p| !ids.iter().any(|i| i.starts_with(p.as_str())))
        .unwrap();
    for args in [
        vec!["ls", unknown.as_str()],
        vec!["restore", unknown.as_str(), "--target", "x"],
        vec!["diff", unknown.as_str(), "latest"],
    ] {
        let out = env.run(&args).code(1);
        assert!(
            out.stderr.contains(&unknown),
            "{args:?}: the error names the snapshot: {}",
            out.stderr
        );
        assert!(out.stderr.to_lowercase().contains("not found"), "{}", out.stderr);
    }
    assert!(!env.path("x").exists());
    env.run(["ls", "not-hex!"]).code(1);
}

#[test]
fn ambiguous_prefix_is_an_error() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a"), b"a");
    let first = env.backup([&src]);
    // Forge snapshots of an empty tree until two ids share their first four hex digits.
    let mut f = Forge::open(&env);
    let tree = f.tree(vec![], None);
    let mut seen: HashMap<String, String> = HashMap::new();
    seen.insert(first[..4].to_string(), first.clone());
    let mut pair = None;
    for i in 0..5000 {
        let id = f.snapshot(tree, &format!("filler {i}"));
        if let Some(other) = seen.insert(id[..4].to_string(), id.clone()) {
            pair = Some((other, id));
            break;
        }
    }
    let (a, b) = pair.expect("a 4-digit collision among 5000 ids");
    let out = env.run(["ls", &a[..4]]).code(1);
    assert!(out.stderr.to_lowercase().contains("ambiguous"), "{}", out.stderr);
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    env.run(["ls", &a[..common + 1]]).success();
    env.run(["ls", &b[..common + 1]]).success();
}

// ---------------------------------------------------------------- ls, diff, stats, snapshots

#[test]
fn ls_lists_a_snapshot_and_a_subtree() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.txt"), b"a");
    write(src.join("d/b.txt"), b"b");
    write(src.join("d/e/c.txt"), b"c");
    write(pb(&src, b"d/odd\xffname"), b"o");
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    env.backup([&src]);

    let all = ls_paths(&env.run(["ls", "latest"]).success());
    assert_eq!(
        all,
        set(&["a.txt", "d", "d/b.txt", "d/e", "d/e/c.txt", "d/odd\\xffname", "link"]),
        "ls lists every entry once, names escaped"
    );
    let sub = ls_paths(&env.run(["ls", "latest", "d/e"]).success());
    assert!(sub.contains("d/e/c.txt"), "{sub:?}");
    assert!(!sub.contains("a.txt") && !sub.contains("d/b.txt"), "{sub:?}");
    env.run(["ls", "latest", "no/such/dir"]).code(1);

    let json = env.run(["--json", "ls", "latest"]).success().json();
    let entries = json.as_array().expect("ls --json gives an array");
    assert_eq!(entries.len(), 7, "{json}");
    env.run(["ls", "-l", "latest"]).success();
}

/// `diff` lines as (change, path) pairs.
fn diff_lines(out: &Out) -> BTreeSet<(String, String)> {
    out.stdout
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.trim_start_matches('/').to_string()))
        })
        .collect()
}

/// Small directories are stored inside their parent's tree page (format §9, "Inline
/// directories"); ls, diff, restore, check and prune read them like any other directory.
#[test]
fn small_directories_are_stored_inline_and_every_command_reads_them() {
    use projectclone::format::NodeKind;
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a/b/c/deep.txt"), b"deep\n");
    write(src.join("a/b/side.txt"), b"side\n");
    fs::create_dir_all(src.join("a/empty")).unwrap();
    for i in 0..40 {
        write(
            src.join(format!("big/a-file-with-a-rather-long-name-{i:03}.txt")),
            format!("{i}\n").as_bytes(),
        );
    }
    age_tree(&src);
    let first = env.backup([&src]);
    {
        let f = Forge::open(&env);
        let (_, snap) = f.repo.resolve_snapshot(&first).unwrap();
        let kind = |p: &[u8]| f.repo.find_node(&snap.tree, p).unwrap().expect("in the snapshot").kind;
        for small in [&b"a"[..], b"a/b", b"a/b/c", b"a/empty"] {
            assert!(
                matches!(kind(small), NodeKind::InlineDir(_)),
                "{} is not inline",
                String::from_utf8_lossy(small)
            );
        }
        assert!(
            matches!(kind(b"big"), NodeKind::Dir(_)),
            "a 40-entry directory has a tree blob of its own"
        );
        assert!(matches!(kind(b"a/b/c/deep.txt"), NodeKind::File(_)));
    }
    let listed = ls_paths(&env.run(["ls", &first, "a/b"]).success());
    let want: BTreeSet<String> = ["a/b", "a/b/c", "a/b/c/deep.txt", "a/b/side.txt"]
        .map(String::from)
        .into();
    assert_eq!(listed, want);

    write(src.join("a/b/c/deep.txt"), b"deeper and longer\n");
    write(src.join("a/b/c/new.txt"), b"new\n");
    age_tree(&src);
    let second = env.backup([&src]);
    // `age_tree` moves every mtime, so metadata-only changes (`U`) are everywhere.
    let mut d = diff_lines(&env.run(["diff", &first, &second]).success());
    d.retain(|(c, _)| c != "U");
    let want: BTreeSet<(String, String)> = [("M", "a/b/c/deep.txt"), ("+", "a/b/c/new.txt")]
        .map(|(c, p)| (c.to_string(), p.to_string()))
        .into();
    assert_eq!(d, want, "only the two changes inside the inline directories");

    for id in [&first, &second] {
        let out = env.path(format!("out-{id}"));
        env.restore(id, &out);
        if id == &second {
            assert_trees_equal(&src, &out, true);
        }
    }
    assert_eq!(
        fs::read(env.path(format!("out-{first}")).join("a/b/c/deep.txt")).unwrap(),
        b"deep\n"
    );
    env.run(["forget", &first]).success();
    env.run(["prune"]).success();
    env.run(["check", "--read-data"]).success();
    let out = env.path("after-prune");
    env.restore(&second, &out);
    assert_trees_equal(&src, &out, true);
}

#[test]
fn diff_shows_added_removed_and_modified() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("keep.txt"), b"same\n");
    write(src.join("change.txt"), b"before\n");
    write(src.join("gone.txt"), b"bye\n");
    write(src.join("dir/x.txt"), b"x\n");
    age_tree(&src);
    let a = env.backup([&src]);
    write(src.join("change.txt"), b"after, longer\n");
    fs::remove_file(src.join("gone.txt")).unwrap();
    write(src.join("new.txt"), b"hello\n");
    write(src.join("dir/y.txt"), b"y\n");
    age_tree(&src);
    let b = env.backup([&src]);

    let d = diff_lines(&env.run(["diff", &a, &b]).success());
    for (c, p) in [
        ("+", "new.txt"),
        ("-", "gone.txt"),
        ("M", "change.txt"),
        ("+", "dir/y.txt"),
    ] {
        assert!(d.contains(&(c.to_string(), p.to_string())), "diff lacks {c} {p}: {d:?}");
    }
    assert!(!d.iter().any(|(_, p)| p == "keep.txt" || p == "dir/x.txt"), "{d:?}");
    let rev = diff_lines(&env.run(["diff", &b, &a]).success());
    assert!(rev.contains(&("-".to_string(), "new.txt".to_string())), "{rev:?}");
    assert!(rev.contains(&("+".to_string(), "gone.txt".to_string())), "{rev:?}");
    let same = env.run(["diff", &a, &a]).success();
    assert!(
        same.stdout.trim().is_empty(),
        "a snapshot has no differences with itself: {}",
        same.stdout
    );
}

#[test]
fn stats_and_snapshots_listing() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.bin"), random_bytes(51, 200_000));
    write(src.join("b.txt"), b"b");
    let id1 = env.backup(
        ["--tag", "mytag", "--note", "my note"]
            .iter()
            .map(std::ffi::OsStr::new)
            .chain([src.as_os_str()]),
    );
    let id2 = env.backup([&src]);

    let s = env.run(["stats"]).success();
    assert!(!s.stdout.trim().is_empty());
    let sj = env.run(["--json", "stats"]).success().json();
    assert_eq!(sj["snapshots"], 2, "{sj}");
    let one = env.run(["--json", "stats", &id1]).success().json();
    assert_eq!(one["files"], 2, "{one}");
    assert!(one["total_size"].as_u64().unwrap() >= 200_001, "{one}");
    env.run(["stats", "latest"]).success();
    env.run(["stats", "ffffffffffff"]).code(1);

    let l = env.run(["snapshots"]).success();
    for id in [&id1, &id2] {
        assert!(
            l.stdout.contains(&id[..8]),
            "snapshots lists {}: {}",
            &id[..8],
            l.stdout
        );
    }
    assert!(
        l.stdout.contains("mytag") && l.stdout.contains("my note"),
        "{}",
        l.stdout
    );
}

// ---------------------------------------------------------------- what gets backed up

#[test]
fn projectcloneignore_applies_below_its_directory_and_gitignore_does_not() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("keep.txt"), b"k");
    write(src.join(".projectcloneignore"), b"*.bak\n/rootonly.txt\n");
    write(src.join("a.bak"), b"x");
    write(src.join("sub/deeper/x.bak"), b"x");
    write(src.join("rootonly.txt"), b"x");
    write(
        src.join("other/rootonly.txt"),
        b"kept: /rootonly.txt is anchored at the top",
    );
    write(src.join(".gitignore"), b"keep.txt\ngitignored.txt\n*.log\n");
    write(src.join("gitignored.txt"), b"g");
    write(src.join(".ignore"), b"dotignored.txt\n");
    write(src.join("dotignored.txt"), b"d");
    write(
        src.join("top.log"),
        b"top log: the ignore file below does not apply here",
    );
    write(
        src.join("sub/.projectcloneignore"),
        b"# comment\n*.log\n!important.log\nbuild/\n/anchored.txt\n",
    );
    write(src.join("sub/a.log"), b"x");
    write(src.join("sub/important.log"), b"x");
    write(src.join("sub/build/out.o"), b"x");
    write(src.join("sub/anchored.txt"), b"x");
    write(
        src.join("sub/deeper/anchored.txt"),
        b"kept: /anchored.txt is anchored at sub/",
    );
    write(src.join("sub/deeper/b.log"), b"x");
    write(src.join("sub/deeper/build/x"), b"x");
    write(src.join("sub/deeper/.projectcloneignore"), b"!b.log\n");
    write(src.join("sub/deeper/deepest/c.log"), b"x");
    write(src.join("other/c.log"), b"sibling: not ignored");
    write(src.join("other/scratch.tmp"), b"excluded by --exclude");
    write(src.join("node_modules/m.js"), b"excluded by --exclude");
    write(src.join("other/node_modules/n.js"), b"excluded by --exclude");
    let id = env.backup(
        ["--exclude", "*.tmp", "--exclude", "node_modules"]
            .iter()
            .map(std::ffi::OsStr::new)
            .chain([src.as_os_str()]),
    );
    let target = env.path("out");
    env.restore(&id, &target);
    assert_eq!(
        file_set(&target),
        set(&[
            ".gitignore",
            ".ignore",
            ".projectcloneignore",
            "dotignored.txt",
            "gitignored.txt",
            "keep.txt",
            "other/c.log",
            "other/rootonly.txt",
            "sub/.projectcloneignore",
            "sub/deeper/.projectcloneignore",
            "sub/deeper/anchored.txt",
            "sub/deeper/b.log",
            "sub/important.log",
            "top.log",
        ])
    );
}

#[test]
fn backup_without_path_backs_up_the_current_directory() {
    let env = Env::with_repo();
    let src = env.path("here");
    write(src.join("cwd.txt"), b"from the current directory\n");
    let id = run(env.cmd().arg("backup").current_dir(&src)).success().snapshot_id();
    let snaps = env.snapshots();
    assert_eq!(
        snaps[0]["paths"],
        serde_json::json!([fs::canonicalize(&src).unwrap().to_str().unwrap()])
    );
    let target = env.path("out");
    env.restore(&id, &target);
    assert_eq!(
        fs::read(target.join("cwd.txt")).unwrap(),
        b"from the current directory\n"
    );
}

// ---------------------------------------------------------------- dry runs and repositories

#[test]
fn backup_dry_run_writes_nothing() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.bin"), random_bytes(61, 500_000));
    write(src.join("b.txt"), b"b");
    env.backup([&src]);
    write(src.join("c.bin"), random_bytes(62, 500_000));
    let before = fingerprint(&env.repo());
    let out = env
        .run(["backup".as_ref(), "--dry-run".as_ref(), src.as_os_str()])
        .success();
    assert!(
        out.stdout.trim().is_empty() || !is_hex(out.stdout.trim(), 64),
        "{}",
        out.stdout
    );
    let j = env
        .run([
            "--json".as_ref(),
            "backup".as_ref(),
            "--dry-run".as_ref(),
            src.as_os_str(),
        ])
        .success()
        .json();
    assert!(j["snapshot_id"].is_null(), "a dry run has no snapshot: {j}");
    assert_eq!(fingerprint(&env.repo()), before, "--dry-run changed the repository");
    assert_eq!(env.snapshots().len(), 1);
}

#[test]
fn backup_dry_run_into_missing_default_repository_creates_nothing() {
    let env = Env::new();
    let src = env.path("src");
    write(src.join("a.txt"), b"a");
    let out = run(env
        .bare()
        .env("PROJECTCLONE_PASSWORD", PASSWORD)
        .args(["backup", "--dry-run"])
        .arg(&src));
    out.success();
    for d in ["xdg-data", "xdg-cache", "home", "xdg-config"] {
        assert!(
            rel_paths(&env.path(d)).is_empty(),
            "--dry-run created {:?} in {d}",
            rel_paths(&env.path(d))
        );
    }
}

#[test]
fn first_backup_creates_the_default_repository() {
    let env = Env::new();
    let src = env.path("src");
    write(src.join("a.txt"), b"a\n");
    let default = || {
        let mut c = env.bare();
        c.env("PROJECTCLONE_PASSWORD", PASSWORD);
        c
    };
    let id = run(default().arg("backup").arg(&src)).success().snapshot_id();
    let repo = env.path("xdg-data/projectclone/repo");
    assert!(
        repo.join("config").is_file(),
        "the default repository is $XDG_DATA_HOME/projectclone/repo"
    );
    let snaps = run(default().args(["--json", "snapshots"])).success().json();
    assert_eq!(snaps[0]["id"], id.as_str());
    let id2 = run(default().arg("backup").arg(&src)).success().snapshot_id();
    assert_ne!(id, id2);
    // The same repository through -r.
    let listed = run(env.cmd_at(&repo).args(["--json", "snapshots"])).success().json();
    assert_eq!(listed.as_array().unwrap().len(), 2);
}

#[test]
fn repository_resolution_order() {
    let env = Env::new();
    let (a, b, c) = (env.path("repo-a"), env.path("repo-b"), env.path("repo-c"));
    let src = env.path("src");
    write(src.join("f"), b"f");
    let mut ids = HashMap::new();
    for r in [&a, &b, &c] {
        run(env
            .cmd_at(r)
            .args(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"]))
        .success();
        let id = run(env.cmd_at(r).arg("backup").arg(&src)).success().snapshot_id();
        ids.insert(r.clone(), id);
    }
    write(
        env.path("xdg-config/projectclone/config.toml"),
        format!("repo = {:?}\n", c.to_str().unwrap()),
    );
    let listed = |cmd: &mut assert_cmd::Command| -> String {
        let v = run(cmd
            .env("PROJECTCLONE_PASSWORD", PASSWORD)
            .args(["--cache-dir"])
            .arg(env.cache())
            .args(["--json", "snapshots"]))
        .success()
        .json();
        v[0]["id"].as_str().unwrap().to_string()
    };
    assert_eq!(
        listed(env.bare().arg("-r").arg(&a).env("PROJECTCLONE_REPO", &b)),
        ids[&a],
        "--repo first"
    );
    assert_eq!(
        listed(env.bare().env("PROJECTCLONE_REPO", &b)),
        ids[&b],
        "then PROJECTCLONE_REPO"
    );
    assert_eq!(listed(&mut env.bare()), ids[&c], "then the config file");
}

#[test]
fn a_path_that_is_not_a_repository_is_an_error_and_stays_untouched() {
    let env = Env::new();
    let src = env.path("src");
    write(src.join("a.txt"), b"a");
    let empty = env.path("empty");
    fs::create_dir(&empty).unwrap();
    let other = env.path("other");
    write(other.join("unrelated.txt"), b"not a repository\n");
    let missing = env.path("missing/deeper");
    for r in [&empty, &other, &missing] {
        let before = fingerprint(r);
        for args in [
            vec!["backup".into(), src.clone().into_os_string()],
            vec!["snapshots".into()],
            vec!["check".into()],
        ] {
            let out = run(env.cmd_at(r).args(&args)).code(10);
            assert!(
                out.stderr.contains(r.file_name().unwrap().to_str().unwrap()),
                "the error names the path: {}",
                out.stderr
            );
            assert!(out.stderr.to_lowercase().contains("repository"), "{}", out.stderr);
        }
        assert_eq!(fingerprint(r), before, "{} was changed", r.display());
    }
    assert!(
        !env.path("missing").exists(),
        "nothing is created for a missing repository"
    );

    // init refuses an existing repository and changes nothing.
    env.init();
    let before = fingerprint(&env.repo());
    env.run(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"])
        .code(1);
    assert_eq!(fingerprint(&env.repo()), before);
}

// ---------------------------------------------------------------- restore options

fn include_tree(env: &Env) -> String {
    let src = env.path("src");
    for p in [
        "target.txt",
        "a/target.txt",
        "a/b/target.txt",
        "a/other.txt",
        "sub/f.txt",
        "deep/sub/f.txt",
        "dirmatch/x/y.txt",
        "dirmatch/z.txt",
        "unrelated.txt",
    ] {
        write(src.join(p), p.as_bytes());
    }
    env.backup([&src])
}

#[test]
fn restore_include_patterns() {
    let env = Env::with_repo();
    let id = include_tree(&env);
    let restore = |name: &str, includes: &[&str]| -> BTreeSet<String> {
        let target = env.path(name);
        let mut c = env.cmd();
        c.args(["restore", &id, "--target"]).arg(&target);
        for i in includes {
            c.args(["--include", i]);
        }
        run(&mut c).success();
        let files = file_set(&target);
        for f in &files {
            assert_eq!(fs::read(target.join(f)).unwrap(), f.as_bytes(), "{f}");
        }
        files
    };
    assert_eq!(
        restore("t1", &["target.txt"]),
        set(&["target.txt", "a/target.txt", "a/b/target.txt"]),
        "a name without a slash matches at any depth"
    );
    assert_eq!(
        restore("t2", &["sub/f.txt"]),
        set(&["sub/f.txt"]),
        "a pattern with a slash is anchored"
    );
    assert_eq!(
        restore("t3", &["dirmatch"]),
        set(&["dirmatch/x/y.txt", "dirmatch/z.txt"]),
        "a directory match includes its subtree"
    );
    assert_eq!(restore("t4", &["a/b"]), set(&["a/b/target.txt"]));
    assert_eq!(
        restore("t5", &["z.txt", "f.txt"]),
        set(&["dirmatch/z.txt", "sub/f.txt", "deep/sub/f.txt"]),
        "several patterns: their union"
    );
    assert_eq!(restore("t6", &["*.txt"]).len(), 9);
    assert_eq!(restore("t7", &["nothing-matches"]), set(&[]));
    assert_eq!(
        restore("t8", &["b/target.txt"]),
        set(&[]),
        "anchored at the root, not at any depth"
    );
}

#[test]
fn restore_dry_run_writes_nothing() {
    let env = Env::with_repo();
    let id = include_tree(&env);
    let fresh = env.path("fresh");
    env.run([
        "restore".as_ref(),
        id.as_ref(),
        "--dry-run".as_ref(),
        "--target".as_ref(),
        fresh.as_os_str(),
    ])
    .success();
    assert!(!fresh.exists(), "restore --dry-run created its target");
    let existing = env.path("existing");
    write(existing.join("target.txt"), b"mine\n");
    write(existing.join("keep"), b"keep\n");
    let before = fingerprint(&existing);
    env.run([
        "restore".as_ref(),
        id.as_ref(),
        "--dry-run".as_ref(),
        "--target".as_ref(),
        existing.as_os_str(),
    ])
    .success();
    assert_eq!(fingerprint(&existing), before);
}

#[test]
fn restore_verify_passes_on_a_good_restore() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("big.bin"), random_bytes(71, 3_000_000));
    write(src.join("d/small.txt"), b"small\n");
    {
        let f = fs::File::create(src.join("sparse")).unwrap();
        f.set_len(8 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"data in the middle", 4 << 20).unwrap();
    }
    let id = env.backup([&src]);
    let target = env.path("out");
    env.run([
        "restore".as_ref(),
        id.as_ref(),
        "--verify".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ])
    .success();
    assert_trees_equal(&src, &target, true);
}

#[test]
fn restore_replaces_same_names_and_leaves_other_entries() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.txt"), b"from the snapshot\n");
    write(src.join("d/inner.txt"), b"inner\n");
    write(src.join("x"), b"x is a file in the snapshot\n");
    write(src.join("sub/s.txt"), b"s\n");
    std::os::unix::fs::symlink("a.txt", src.join("l")).unwrap();
    let id = env.backup([&src]);

    let target = env.path("target");
    write(
        target.join("a.txt"),
        b"older, longer content that must go away entirely\n",
    );
    fs::set_permissions(target.join("a.txt"), fs::Permissions::from_mode(0o400)).unwrap();
    write(target.join("extra.txt"), b"not in the snapshot\n");
    write(target.join("d"), b"d is a file in the target\n");
    write(target.join("x/deep/file"), b"x is a directory in the target\n");
    write(target.join("sub/keep-me.txt"), b"mine\n");
    write(target.join("l"), b"l is a file in the target\n");
    env.restore(&id, &target);

    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"from the snapshot\n");
    assert_eq!(fs::read(target.join("d/inner.txt")).unwrap(), b"inner\n");
    assert_eq!(fs::read(target.join("x")).unwrap(), b"x is a file in the snapshot\n");
    assert_eq!(fs::read(target.join("sub/s.txt")).unwrap(), b"s\n");
    assert_eq!(fs::read_link(target.join("l")).unwrap(), Path::new("a.txt"));
    assert_eq!(fs::read(target.join("extra.txt")).unwrap(), b"not in the snapshot\n");
    assert_eq!(fs::read(target.join("sub/keep-me.txt")).unwrap(), b"mine\n");
    assert_entries_equal(&src.join("a.txt"), &target.join("a.txt"));
}

// ---------------------------------------------------------------- the index cache

#[test]
fn deleting_or_damaging_the_index_cache_loses_nothing() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.bin"), random_bytes(81, 1_000_000));
    write(src.join("b/c.txt"), b"c\n");
    age_tree(&src);
    let id1 = env.backup([&src]);
    write(src.join("b/d.txt"), b"d\n");
    age_tree(&src);
    let id2 = env.backup([&src]);

    for damage in ["delete", "garbage"] {
        let dbs: Vec<_> = files_under(&env.cache())
            .into_iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("index.db"))
            .collect();
        assert!(
            !dbs.is_empty(),
            "the cache holds index.db: {:?}",
            files_under(&env.cache())
        );
        for db in &dbs {
            if damage == "delete" {
                fs::remove_file(db).unwrap();
            } else {
                fs::write(db, b"this is not an SQLite database at all, not even close").unwrap();
            }
        }
        let ids: BTreeSet<String> = env
            .snapshots()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, [id1.clone(), id2.clone()].into_iter().collect(), "after {damage}");
        let target = env.path(format!("out-{damage}"));
        env.restore(&id2, &target);
        assert_trees_equal(&src, &target, true);
        env.run(["check", "--read-data"]).success();
    }
    // The rebuilt cache still deduplicates against what is stored.
    let j = env.backup_json([&src]);
    assert_eq!(j["data_added"], 0, "{j}");
}

#[test]
fn hard_link_to_an_excluded_first_name_still_restores() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a/first"), b"linked content\n");
    fs::create_dir_all(src.join("b")).unwrap();
    fs::hard_link(src.join("a/first"), src.join("b/second")).unwrap();
    let id = env.backup([&src]);
    let target = env.path("out");
    env.run([
        "restore".as_ref(),
        id.as_ref(),
        "--include".as_ref(),
        "b".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ])
    .success();
    assert_eq!(file_set(&target), set(&["b/second"]));
    assert_eq!(fs::read(target.join("b/second")).unwrap(), b"linked content\n");
}

// ---------------------------------------------------------------- more of the contract

#[test]
fn every_contract_subcommand_exists() {
    let env = Env::new();
    let mut missing = Vec::new();
    for cmd in [
        vec!["init"],
        vec!["backup"],
        vec!["snapshots"],
        vec!["ls"],
        vec!["diff"],
        vec!["restore"],
        vec!["export"],
        vec!["forget"],
        vec!["prune"],
        vec!["check"],
        vec!["repair", "index"],
        vec!["stats"],
        vec!["key", "passwd"],
    ] {
        let out = run(env.bare().args(&cmd).arg("--help"));
        if out.code != 0 {
            missing.push(cmd.join(" "));
        }
    }
    assert!(
        missing.is_empty(),
        "documented subcommands missing from the CLI: {missing:?}"
    );
}

#[test]
fn json_flag_gives_one_document_for_every_command() {
    let env = Env::new();
    let out = env
        .run([
            "--json",
            "init",
            "--kdf-memory",
            "1024",
            "--kdf-time",
            "1",
            "--weak-kdf",
        ])
        .success();
    out.json();
    let src = env.path("src");
    write(src.join("a.txt"), b"a");
    let a = env.backup([&src]);
    write(src.join("b.txt"), b"b");
    let b = env.backup([&src]);
    let target = env.path("out");
    let t = target.to_str().unwrap();
    for args in [
        vec!["snapshots"],
        vec!["ls", "latest"],
        vec!["diff", a.as_str(), b.as_str()],
        vec!["restore", "latest", "--target", t],
        vec!["restore", "latest", "--dry-run", "--target", t],
        vec!["check"],
        vec!["check", "--read-data"],
        vec!["stats"],
        vec!["stats", "latest"],
    ] {
        let mut full = vec!["--json"];
        full.extend(&args);
        let out = env.run(&full);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        let _ = serde_json::from_str::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON document ({e}):\n{}", out.stdout));
    }
}

#[test]
fn human_output_has_no_progress_without_a_terminal() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.bin"), random_bytes(3, 2_000_000));
    let out = env.run(["backup".as_ref(), src.as_os_str()]).success();
    let target = env.path("out");
    let r = env
        .run([
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ])
        .success();
    for (what, err) in [("backup", &out.stderr), ("restore", &r.stderr)] {
        assert!(
            !err.contains('\r') && !err.contains("\x1b["),
            "{what}: progress drawn without a terminal: {err:?}"
        );
    }
}

#[test]
fn repository_and_cache_inside_the_source_are_not_backed_up() {
    let env = Env::new();
    let src = env.path("src");
    write(src.join("code.txt"), b"code\n");
    let (repo, cache) = (src.join("repo"), src.join(".cache"));
    let cmd = || {
        let mut c = env.bare();
        c.env("PROJECTCLONE_PASSWORD", PASSWORD)
            .arg("-r")
            .arg(&repo)
            .arg("--cache-dir")
            .arg(&cache);
        c
    };
    run(cmd().args(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"])).success();
    run(cmd().arg("backup").arg(&src)).success();
    let listed = ls_paths(&run(cmd().args(["ls", "latest"])).success());
    assert_eq!(
        listed,
        set(&["code.txt"]),
        "the repository and its cache must not back up themselves"
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_no_panic() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.txt"), b"a\n");
    let no_panic = |out: &Out, what: &str| {
        assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
        assert!(
            out.code == 0 || !out.stderr.trim().is_empty(),
            "{what}: failed without a message"
        );
    };

    let out = env.run(["ls", "latest"]).code(1);
    no_panic(&out, "latest of an empty repository");
    assert!(out.stderr.contains("snapshot"), "{}", out.stderr);
    env.backup([&src]);

    // A target that is a regular file.
    let file_target = env.path("a-file");
    write(&file_target, b"i am a file\n");
    let out = env.run([
        "restore".as_ref(),
        "latest".as_ref(),
        "--target".as_ref(),
        file_target.as_os_str(),
    ]);
    assert_ne!(out.code, 0, "restore into a regular file succeeded");
    no_panic(&out, "restore into a file");
    assert!(out.stderr.contains("a-file"), "{}", out.stderr);
    assert_eq!(fs::read(&file_target).unwrap(), b"i am a file\n");

    // A password file that is a directory; a repository path that is a file.
    let out = run(env.cmd().arg("--password-file").arg(env.path("src")).arg("snapshots")).code(1);
    no_panic(&out, "password file is a directory");
    assert!(out.stderr.contains("src"), "{}", out.stderr);
    let out = run(env.cmd_at(&file_target).arg("snapshots")).code(1);
    no_panic(&out, "repository is a file");

    // A cache directory that cannot be created.
    let out = run(env
        .cmd()
        .arg("--cache-dir")
        .arg(file_target.join("sub"))
        .arg("snapshots"));
    no_panic(&out, "cache under a file");

    // Invalid patterns.
    let out = env.run(["restore", "latest", "--include", "a[", "--target", "x"]);
    no_panic(&out, "invalid --include");
    let out = env.run(["backup".as_ref(), "--exclude".as_ref(), "a[".as_ref(), src.as_os_str()]);
    no_panic(&out, "invalid --exclude");

    // A damaged or missing config and key.
    for (what, rel, content) in [
        ("empty config", "config", &b""[..]),
        ("garbage config", "config", &b"PCLN\x01\x01garbage"[..]),
        ("truncated config", "config", &b"PCLN"[..]),
    ] {
        let copy = env.path(format!("copy-{}", what.replace(' ', "-")));
        assert!(
            std::process::Command::new("cp")
                .arg("-a")
                .arg(env.repo())
                .arg(&copy)
                .status()
                .unwrap()
                .success()
        );
        fs::write(copy.join(rel), content).unwrap();
        let out = run(env.cmd_at(&copy).arg("snapshots")).code(1);
        no_panic(&out, what);
        assert!(out.stderr.contains("config"), "{what}: name the config: {}", out.stderr);
    }
    let copy = env.path("copy-no-keys");
    assert!(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(env.repo())
            .arg(&copy)
            .status()
            .unwrap()
            .success()
    );
    for k in files_under(&copy.join("keys")) {
        fs::write(&k, &fs::read(&k).unwrap()[..20]).unwrap();
    }
    let out = run(env.cmd_at(&copy).arg("snapshots")).code(12);
    no_panic(&out, "truncated key file");

    // A junk snapshot object: listed or skipped, but check calls it damage.
    let copy = env.path("copy-junk-snapshot");
    assert!(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(env.repo())
            .arg(&copy)
            .status()
            .unwrap()
            .success()
    );
    write(
        copy.join("snapshots").join("ab".repeat(32)),
        b"PCLN\x05\x01 not a snapshot",
    );
    let cache2 = env.path("cache2");
    let mut c = env.bare();
    c.env("PROJECTCLONE_PASSWORD", PASSWORD)
        .env("PROJECTCLONE_CACHE_DIR", &cache2)
        .arg("-r")
        .arg(&copy);
    let out = run(c.arg("check"));
    assert_ne!(out.code, 0, "check accepted a junk snapshot object: {}", out.stdout);
    no_panic(&out, "junk snapshot");
}

#[test]
fn closed_stdout_is_not_a_panic() {
    let env = Env::with_repo();
    let src = env.path("src");
    for i in 0..3000 {
        write(src.join(format!("d{}/file-with-a-longish-name-{i}.txt", i % 30)), b"x");
    }
    env.backup([&src]);
    let mut child = std::process::Command::new(bin_path())
        .env("PROJECTCLONE_PASSWORD", PASSWORD)
        .env("HOME", env.path("home"))
        .env("XDG_CONFIG_HOME", env.path("xdg-config"))
        .arg("-r")
        .arg(env.repo())
        .arg("--cache-dir")
        .arg(env.cache())
        .args(["ls", "latest"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "closed stdout: {err}");
}

/// A tmpfs of `size` mounted at `path`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_is_a_clear_error_and_loses_nothing() {
    let env = Env::new();
    let Some(_fs) = Tmpfs::mount(&env.repo(), "3m") else {
        eprintln!("note: cannot mount a tmpfs here (not root or no CAP_SYS_ADMIN); full-disk test not run");
        return;
    };
    env.init();
    let src = env.path("src");
    write(src.join("small.bin"), random_bytes(5, 500_000));
    let first = env.backup([&src]);
    write(src.join("big.bin"), random_bytes(6, 6_000_000));
    let out = env.run(["backup".as_ref(), src.as_os_str()]);
    assert_eq!(
        out.code, 1,
        "backup onto a full disk: stdout {} stderr {}",
        out.stdout, out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        out.stderr.to_lowercase().contains("space"),
        "say the disk is full: {}",
        out.stderr
    );
    assert!(
        out.stdout.trim().is_empty(),
        "no snapshot id for a failed backup: {}",
        out.stdout
    );
    assert_eq!(env.snapshots().len(), 1);
    env.run(["check", "--read-data"]).success();
    let target = env.path("out");
    env.restore(&first, &target);
    assert_eq!(fs::read(target.join("small.bin")).unwrap(), random_bytes(5, 500_000));

    // The space of the failed backup is free again: a smaller backup succeeds.
    fs::remove_file(src.join("big.bin")).unwrap();
    write(src.join("two.bin"), random_bytes(7, 1_200_000));
    write(src.join("tiny.txt"), b"tiny\n");
    let second = env.backup([&src]);

    // Restoring onto a full disk fails loudly, naming the file.
    let small_target = env.path("small-target");
    let Some(_t) = Tmpfs::mount(&small_target, "1m") else {
        return;
    };
    let out = env.run([
        "restore".as_ref(),
        second.as_ref(),
        "--target".as_ref(),
        small_target.as_os_str(),
    ]);
    assert_ne!(out.code, 0, "restore onto a full disk succeeded");
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        out.stderr.contains("two.bin"),
        "name the file that could not be written: {}",
        out.stderr
    );
    // Nor is it left behind half written.
    assert!(
        !small_target.join("two.bin").exists(),
        "a file that did not fit was left in the target"
    );
    assert_eq!(fs::read(small_target.join("tiny.txt")).unwrap(), b"tiny\n");
}

#[test]
fn latest_is_the_newest_time_with_ties_broken_by_id() {
    use projectclone::format::{NodeKind, Time};
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("real.txt"), b"r");
    env.backup([&src]);
    let mut f = Forge::open(&env);
    let mut tree_with = |name: &[u8]| {
        let d = f.data(name);
        let n = node(name, NodeKind::File(d));
        f.tree(vec![n], None)
    };
    let (t_old, t_a, t_b) = (tree_with(b"old"), tree_with(b"tie-a"), tree_with(b"tie-b"));
    // Written last but dated long ago: not the latest.
    f.snapshot_at(
        t_old,
        "old",
        Time {
            secs: 1_000_000_000,
            nanos: 0,
        },
    );
    let future = Time {
        secs: 4_000_000_000,
        nanos: 7,
    };
    let a = f.snapshot_at(t_a, "a", future);
    let b = f.snapshot_at(t_b, "b", future);
    drop(f);
    let expected = if a > b { "tie-a" } else { "tie-b" };
    assert_eq!(ls_paths(&env.run(["ls", "latest"]).success()), set(&[expected]));
}

/// `--exclude` takes gitignore-syntax globs. A pattern with a slash is anchored like one
/// in a `.projectcloneignore` at the top of the backed-up PATH (the globs are
/// `ignore` overrides, matched relative to the walk root) — not at the file-system root,
/// where it would silently exclude nothing.
#[test]
fn exclude_patterns_with_a_slash_match_below_the_backed_up_path() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("sub/build/out.o"), b"x");
    write(src.join("sub/keep.c"), b"kept");
    write(src.join("other/f.log"), b"x");
    write(src.join("other/f.txt"), b"kept");
    let out = env.run([
        "backup".as_ref(),
        "--exclude".as_ref(),
        "sub/build".as_ref(),
        "--exclude".as_ref(),
        "/other/*.log".as_ref(),
        src.as_os_str(),
    ]);
    let id = out.success().snapshot_id();
    let listed = ls_paths(&env.run(["ls", &id]).success());
    assert_eq!(
        listed,
        set(&["other", "other/f.txt", "sub", "sub/keep.c"]),
        "--exclude sub/build and --exclude /other/*.log must leave those paths out"
    );
}

/// README "Exit codes": 10 no repository, 11 locked by another process, 12 wrong password.
#[test]
fn exit_codes_for_missing_repository_lock_and_wrong_password() {
    let env = Env::new();
    let out = env.run(["snapshots"]).code(10);
    assert!(out.stderr.contains("not a projectclone repository"), "{}", out.stderr);
    env.init();
    let out = run(env
        .cmd()
        .env("PROJECTCLONE_PASSWORD", "not the password")
        .arg("snapshots"))
    .code(12);
    assert!(out.stderr.contains("wrong password"), "{}", out.stderr);
    let now = now_ns();
    forge_lock_at(&env, "another-host", 4242, now, now, now);
    let out = env.run(["repair", "index"]).code(11);
    assert!(out.stderr.contains("locked by"), "{}", out.stderr);
    // Any other failure stays 1.
    env.run(["restore", "nosuchsnapshot", "--target", "x"]).code(1);
}

/// `init --kdf-memory 8` (below Argon2's 8 KiB per lane for the default 4 lanes) said
/// "corrupt repository data: key file: …", as if a repository were damaged: it is a choice
/// out of range, said so, with the least memory that works, and nothing is created.
#[test]
fn init_with_kdf_settings_out_of_range_says_what_works_not_corrupt() {
    let env = Env::new();
    let out = env.run(["init", "--kdf-memory", "8", "--kdf-time", "1", "--weak-kdf"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!out.stderr.contains("corrupt"), "{}", out.stderr);
    assert!(out.stderr.contains("4 lanes need at least 32 KiB"), "{}", out.stderr);
    assert!(out.stderr.contains("nothing was created"), "{}", out.stderr);
    assert!(!env.repo().exists());
    env.run(["init", "--kdf-memory", "32", "--kdf-time", "1", "--weak-kdf"])
        .success();
}
