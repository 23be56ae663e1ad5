//! `import` (README "import"): the older Python tool's folders and archives brought in as
//! snapshots; what it refuses and what it skips.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command as StdCommand;

use crate::util::*;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Issue 14 finding 17: members with `..` were silently dropped and absolute members were
/// re-rooted, while README says they are refused. Such an archive is refused whole, the
/// error names the member, and the other archives of the same run are still imported.
#[test]
fn import_refuses_archives_with_dotdot_or_absolute_members() {
    let env = Env::with_repo();
    let dir = env.path("project_backups");
    fs::create_dir_all(&dir).unwrap();
    let good = dir.join("2024-01-01_000000-app.tar.gz");
    raw_tar_gz(&good, &[(b"app/ok.txt", tar::EntryType::Regular, b"", b"ok\n")]);
    let cases: [(&str, &[u8], tar::EntryType, &[u8]); 3] = [
        (
            "2024-01-02_000000-app.tar.gz",
            b"app/../../up.txt",
            tar::EntryType::Regular,
            b"",
        ),
        (
            "2024-01-03_000000-app.tar.gz",
            b"/abs.txt",
            tar::EntryType::Regular,
            b"",
        ),
        (
            "2024-01-04_000000-app.tar.gz",
            b"app/hl",
            tar::EntryType::Link,
            b"../../etc/passwd",
        ),
    ];
    for (name, member, kind, link) in cases {
        let a = dir.join(name);
        raw_tar_gz(
            &a,
            &[
                (b"app/first.txt", tar::EntryType::Regular, b"", b"first\n"),
                (member, kind, link, b"evil\n"),
            ],
        );
        let out = env.run([os("import"), a.as_os_str()]).code(1);
        let shown = String::from_utf8_lossy(member).into_owned();
        assert!(
            out.stderr.contains(&shown) && out.stderr.contains("refused"),
            "the error names {shown}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        assert!(env.snapshots().is_empty(), "nothing of {name} imported");
    }
    // With a good archive in the same run: the good one is imported, the bad one named.
    let bad = dir.join(cases[0].0);
    let out = env
        .run([os("--json"), os("import"), good.as_os_str(), bad.as_os_str()])
        .code(1);
    assert!(out.stderr.contains("app/../../up.txt"), "{}", out.stderr);
    assert_eq!(out.json().as_array().unwrap().len(), 1);
    assert_eq!(env.snapshots().len(), 1);
    // No temporary folder left beside the archives, nothing written outside.
    let left: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!env.path("up.txt").exists() && !env.root().join("../up.txt").exists());
}

/// Issue 14 finding 17: one `.sha256` manifest (or any other file that is no backup)
/// among `import ~/project_backups/*` aborted the whole import. It is skipped with a note.
#[test]
fn import_skips_files_that_are_not_backups_with_a_note() {
    let env = Env::with_repo();
    let dir = env.path("project_backups");
    let folder = dir.join("2024-01-01_000000-app");
    write(folder.join("a.txt"), b"a\n");
    let archive = dir.join("2024-01-02_000000-app.tar.gz");
    raw_tar_gz(&archive, &[(b"app/b.txt", tar::EntryType::Regular, b"", b"b\n")]);
    let sum = dir.join("2024-01-02_000000-app.tar.gz.sha256");
    write(&sum, b"0000  app/b.txt\n");
    let readme = dir.join("README");
    write(&readme, b"my backups\n");
    let out = env
        .run([
            os("--json"),
            os("import"),
            folder.as_os_str(),
            sum.as_os_str(),
            archive.as_os_str(),
            readme.as_os_str(),
        ])
        .success();
    assert_eq!(out.json().as_array().unwrap().len(), 2, "{}", out.stdout);
    for skipped in [&sum, &readme] {
        let line = format!("note: {}: skipped", skipped.display());
        assert!(out.stderr.contains(&line), "{line:?} in {}", out.stderr);
    }
    assert_eq!(env.snapshots().len(), 2);
}

/// Set every entry's mtime to whole seconds, as GNU and ustar headers hold them.
fn whole_second_times(root: &Path) {
    for (i, p) in files_under(root).iter().chain([&root.to_path_buf()]).enumerate() {
        set_mtime(p, 1_600_000_000 + i as i64 * 1000, 0);
    }
}

/// Issue 14 finding 17: archives without PAX records (GNU tar's default format, ustar,
/// Python's tarfile in either) lost their directories' mtimes: the tar crate sets times
/// on files only, and import applied PAX times alone. The header's time is kept now.
#[test]
fn import_keeps_directory_mtimes_of_gnu_and_ustar_archives() {
    let env = Env::with_repo();
    let src = env.path("staging/app");
    write(src.join("top.txt"), b"top\n");
    write(src.join("sub/deep/f.txt"), b"deep\n");
    fs::create_dir_all(src.join("empty")).unwrap();
    whole_second_times(&src);
    let dirs = ["", "sub", "sub/deep", "empty"];
    let mtime = |p: &Path| fs::symlink_metadata(p).unwrap().mtime();
    let py = "import sys, tarfile\n\
              fmt = getattr(tarfile, sys.argv[3])\n\
              with tarfile.open(sys.argv[1], 'w', format=fmt) as t:\n    t.add(sys.argv[2], arcname='app')\n";
    let makers: [(&str, Vec<&str>); 4] = [
        ("gnu-tar-gnu", vec!["tar", "--format=gnu"]),
        ("gnu-tar-ustar", vec!["tar", "--format=ustar"]),
        ("python-gnu", vec!["python3", "GNU_FORMAT"]),
        ("python-ustar", vec!["python3", "USTAR_FORMAT"]),
    ];
    fs::create_dir_all(env.path("in")).unwrap();
    for (day, (what, how)) in makers.iter().enumerate() {
        let a = env.path(format!("in/2024-01-0{}_000000-app.tar", day + 1));
        let st = if how[0] == "tar" {
            StdCommand::new("tar")
                .arg(how[1])
                .arg("-cf")
                .arg(&a)
                .arg("-C")
                .arg(env.path("staging"))
                .arg("app")
                .status()
        } else {
            StdCommand::new("python3")
                .args(["-c", py])
                .arg(&a)
                .arg(&src)
                .arg(how[1])
                .status()
        };
        assert!(st.expect("archiver runs").success(), "{what}");
        let v = env.run([os("--json"), os("import"), a.as_os_str()]).success().json();
        let id = v[0]["snapshot_id"].as_str().unwrap().to_string();
        let t = env.path(format!("out-{what}"));
        env.restore(&id, &t);
        for d in dirs {
            assert_eq!(mtime(&t.join(d)), mtime(&src.join(d)), "{what}: mtime of {d:?}");
        }
        assert_eq!(
            mtime(&t.join("sub/deep/f.txt")),
            mtime(&src.join("sub/deep/f.txt")),
            "{what}"
        );
    }
}
