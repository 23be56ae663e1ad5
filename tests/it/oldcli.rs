//! The older tool's command line (README "Coming from projectclone 4.x"):
//! `projectclone NOTE [--dest DIR] [-a|--archive] [--incremental] [--manifest]
//! [--manifest-sha] [--keep N] [--exclude G]... [--symlinks] [--dry-run] [--yes]` backs the
//! current directory up and writes the view the old tool wrote; a mistyped subcommand or an
//! unknown word without old-tool flags (and no terminal) is a usage error.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use crate::util::*;

/// A project at `ENV/work/proj` with a subfolder, an executable, an empty file, a symlink,
/// a hard-link pair and names with a space, a tab and a newline.
fn project(env: &Env) -> PathBuf {
    let src = env.path("work/proj");
    write(src.join("README.md"), b"# proj\n");
    write(src.join("src/main.rs"), text_bytes(1, 20_000));
    write(src.join("data/blob.bin"), random_bytes(2, 300_000));
    write(src.join("empty"), b"");
    write(src.join("with space.txt"), b"space\n");
    write(src.join("tab\there"), b"tab\n");
    write(src.join("new\nline"), b"newline\n");
    write(src.join("run.sh"), b"#!/bin/sh\necho hi\n");
    fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("README.md", src.join("link")).unwrap();
    fs::hard_link(src.join("README.md"), src.join("src/readme-again")).unwrap();
    age_tree(&src);
    src
}

/// The binary, run in `dir`, with the older syntax's arguments.
fn old(env: &Env, dir: &Path, args: &[&str]) -> Out {
    run(env.cmd().current_dir(dir).args(args))
}

/// The entries of a destination folder, less its records folder.
fn views(dest: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".projectclone-export")
        .collect();
    v.sort();
    v
}

fn snapshot_count(env: &Env) -> usize {
    env.snapshots().len()
}

/// The regular files below `dir` (relative, raw bytes) with their sizes.
fn sizes(dir: &Path) -> BTreeMap<Vec<u8>, u64> {
    use std::os::unix::ffi::OsStrExt;
    files_under(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().as_os_str().as_bytes().to_vec();
            (rel, fs::metadata(&p).unwrap().len())
        })
        .collect()
}

#[test]
fn folder_copy_with_manifests_is_the_source_and_the_manifests_check() {
    let env = Env::with_repo();
    let src = project(&env);
    let dest = env.path("views");
    let out = old(
        &env,
        &src,
        &[
            "release-1",
            "--dest",
            dest.to_str().unwrap(),
            "--manifest",
            "--manifest-sha",
        ],
    )
    .success();
    // The backup's id on stdout, as `backup` prints it; the snapshot has the note.
    let id = out.snapshot_id();
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], id.as_str());
    assert_eq!(snaps[0]["note"], "release-1");

    let names = views(&dest);
    assert_eq!(names.len(), 1, "{names:?}");
    let name = &names[0];
    assert!(
        name.len() == 17 + "-proj-release-1".len() && name.ends_with("-proj-release-1"),
        "{name}"
    );
    let view = dest.join(name);
    // MANIFEST.txt: one `path<TAB>size` line per regular file (names escaped).
    let manifest = fs::read(view.join("MANIFEST.txt")).unwrap();
    let mut listed = BTreeMap::new();
    for line in manifest.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let tab = line.iter().rposition(|b| *b == b'\t').unwrap();
        let name = String::from_utf8(line[..tab].to_vec())
            .unwrap()
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        let size: u64 = std::str::from_utf8(&line[tab + 1..]).unwrap().parse().unwrap();
        listed.insert(name.into_bytes(), size);
    }
    assert_eq!(listed, sizes(&src));
    // MANIFEST_SHA256.txt checks with sha256sum from inside the folder.
    let check = StdCommand::new("sha256sum")
        .args(["--strict", "-c", "MANIFEST_SHA256.txt"])
        .current_dir(&view)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let sha = fs::read_to_string(view.join("MANIFEST_SHA256.txt")).unwrap();
    assert_eq!(sha.lines().count(), sizes(&src).len(), "{sha}");
    // Less the two manifests, the folder is the source (a fresh restore of it).
    fs::remove_file(view.join("MANIFEST.txt")).unwrap();
    fs::remove_file(view.join("MANIFEST_SHA256.txt")).unwrap();
    assert_trees_equal(&src, &view, false);
}

#[test]
fn archive_is_named_like_its_top_folder_and_its_sha256_checks_from_dest() {
    let env = Env::with_repo();
    let src = project(&env);
    // Default destination: ~/project_backups.
    let dest = env.path("home/project_backups");
    old(&env, &src, &["rc2", "-a", "--manifest-sha"]).success();
    let names = views(&dest);
    assert_eq!(names.len(), 2, "{names:?}");
    let (archive, sum) = (&names[0], &names[1]);
    assert!(archive.ends_with("-proj-rc2.tar.gz"), "{archive}");
    assert_eq!(*sum, format!("{archive}.sha256"));
    let line = fs::read_to_string(dest.join(sum)).unwrap();
    assert_eq!(line.len(), 64 + 2 + archive.len() + 1, "{line:?}");
    assert!(line.ends_with(&format!("  {archive}\n")), "{line:?}");
    let check = StdCommand::new("sha256sum")
        .args(["--strict", "-c", sum])
        .current_dir(&dest)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    // One top folder, the archive's name without .tar.gz; extracted, it is the source.
    let top = archive.strip_suffix(".tar.gz").unwrap();
    let list = StdCommand::new("tar")
        .arg("-tzf")
        .arg(dest.join(archive))
        .output()
        .unwrap();
    assert!(list.status.success());
    for member in String::from_utf8_lossy(&list.stdout).lines() {
        assert!(
            member == format!("{top}/") || member.starts_with(&format!("{top}/")),
            "{member}"
        );
    }
    let x = env.path("x");
    fs::create_dir(&x).unwrap();
    let ex = StdCommand::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-xzf"])
        .arg(dest.join(archive))
        .arg("-C")
        .arg(&x)
        .output()
        .unwrap();
    assert!(ex.status.success(), "{}", String::from_utf8_lossy(&ex.stderr));
    assert_eq!(views(&x), [top]);
    assert_trees_equal(&src, &x.join(top), false);
    // A flipped byte in the archive fails the check.
    let mut bytes = fs::read(dest.join(archive)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(dest.join(archive), bytes).unwrap();
    let check = StdCommand::new("sha256sum")
        .args(["-c", sum])
        .current_dir(&dest)
        .output()
        .unwrap();
    assert!(!check.status.success());
}

#[test]
fn incremental_links_unchanged_files_and_keep_counts_every_kind_of_view() {
    let env = Env::with_repo();
    let src = project(&env);
    let dest = env.path("views");
    let d = dest.to_str().unwrap();
    // Left alone: another project's folder, and one of this project without a record (the
    // old tool's own).
    fs::create_dir_all(dest.join("2020-01-01_000000-other-x")).unwrap();
    fs::create_dir_all(dest.join("2020-01-01_000000-proj-old")).unwrap();
    old(&env, &src, &["one", "--dest", d]).success();
    let first = views(&dest).into_iter().find(|n| n.ends_with("-proj-one")).unwrap();

    write(src.join("src/main.rs"), b"fn main() { changed() }\n");
    old(&env, &src, &["two", "--dest", d, "--incremental"]).success();
    let second = views(&dest).into_iter().find(|n| n.ends_with("-proj-two")).unwrap();
    let ino = |v: &str, f: &str| fs::symlink_metadata(dest.join(v).join(f)).unwrap().ino();
    // Unchanged files are hard links to the folder copy; the changed one is new.
    assert_eq!(ino(&first, "data/blob.bin"), ino(&second, "data/blob.bin"));
    assert_ne!(ino(&first, "src/main.rs"), ino(&second, "src/main.rs"));
    assert_eq!(
        fs::read(dest.join(&second).join("src/main.rs")).unwrap(),
        b"fn main() { changed() }\n"
    );
    assert_trees_equal(&src, &dest.join(&second), false);

    // An archive with --keep 2: the folder copy goes, the incremental folder stays.
    old(&env, &src, &["three", "--dest", d, "-a", "--manifest", "--keep", "2"]).success();
    let third = views(&dest)
        .into_iter()
        .find(|n| n.ends_with("-proj-three.tar.gz"))
        .unwrap();
    let mut want = vec![
        "2020-01-01_000000-other-x".to_string(),
        "2020-01-01_000000-proj-old".to_string(),
        second.clone(),
        third.clone(),
        format!("{third}.sha256"),
    ];
    want.sort();
    assert_eq!(views(&dest), want);
    // --keep 1: the archive and its .sha256 go together.
    old(&env, &src, &["four", "--dest", d, "--incremental", "--keep", "1"]).success();
    let fourth = views(&dest).into_iter().find(|n| n.ends_with("-proj-four")).unwrap();
    assert_eq!(
        views(&dest),
        [
            "2020-01-01_000000-other-x".to_string(),
            "2020-01-01_000000-proj-old".to_string(),
            fourth.clone(),
        ]
    );
    assert_trees_equal(&src, &dest.join(&fourth), false);
    // The views' --keep never thins the repository.
    assert_eq!(snapshot_count(&env), 4);
}

/// Names `YYYY-MM-DD_HHMMSS-<rest>` for the `n` seconds from the stamp of `name` on.
fn names_after(name: &str, rest: &str, n: i64) -> Vec<String> {
    let t = jiff::civil::DateTime::strptime("%Y-%m-%d_%H%M%S", &name[..17]).unwrap();
    (0..n)
        .map(|k| {
            let s = t.checked_add(jiff::Span::new().seconds(k)).unwrap();
            format!("{}-{rest}", s.strftime("%Y-%m-%d_%H%M%S"))
        })
        .collect()
}

#[test]
fn a_view_whose_name_is_taken_gets_a_numbered_name_as_in_one_second() {
    let env = Env::with_repo();
    let src = project(&env);
    let dest = env.path("views");
    let d = dest.to_str().unwrap();
    old(&env, &src, &["same", "--dest", d, "-a"]).success();
    let first = views(&dest).remove(0);
    // Occupy the names of the next ten minutes, as a view made within the same second
    // occupies this one: the next views get `-1`, then `-2`.
    let taken = names_after(&first, "proj-same", 600);
    for n in &taken {
        if !dest.join(n).exists() {
            fs::create_dir(dest.join(n)).unwrap();
        }
        let a = format!("{n}.tar.gz");
        if !dest.join(&a).exists() {
            write(dest.join(a), b"placeholder");
        }
    }
    let before = views(&dest).len();
    old(&env, &src, &["same", "--dest", d, "-a", "--manifest"]).success();
    old(&env, &src, &["same", "--dest", d]).success();
    let after = views(&dest);
    assert_eq!(after.len(), before + 3, "{after:?}");
    let new: Vec<&String> = after
        .iter()
        .filter(|n| n.ends_with("-1") || n.ends_with("-1.tar.gz") || n.ends_with("-1.tar.gz.sha256"))
        .collect();
    assert_eq!(new.len(), 3, "{after:?}");
    let archive = new.iter().find(|n| n.ends_with("-1.tar.gz")).unwrap();
    assert!(taken.contains(&archive.strip_suffix("-1.tar.gz").unwrap().to_string()));
    // The checksum names the numbered archive.
    let check = StdCommand::new("sha256sum")
        .args(["--strict", "-c"])
        .arg(format!("{archive}.sha256"))
        .current_dir(&dest)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let folder = new.iter().find(|n| n.ends_with("-1") && !n.contains(".tar")).unwrap();
    assert_trees_equal(&src, &dest.join(folder), false);
    // The placeholders are untouched.
    assert_eq!(
        fs::read(dest.join(format!("{}.tar.gz", taken[599]))).unwrap(),
        b"placeholder"
    );
}

#[test]
fn dry_run_writes_nothing() {
    let env = Env::with_repo();
    let src = project(&env);
    let dest = env.path("views");
    let d = dest.to_str().unwrap();
    old(&env, &src, &["baseline", "--dest", d]).success();
    let before = fingerprint(&dest);
    let repo_before = fingerprint(&env.repo());
    for mode in [&[][..], &["-a", "--manifest"][..], &["--incremental"][..]] {
        let mut args = vec!["trial", "--dest", d, "--keep", "1", "--dry-run"];
        args.extend_from_slice(mode);
        let out = old(&env, &src, &args).success();
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        assert!(
            out.stderr.contains("would write") && out.stderr.contains("-proj-trial"),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("would remove") && out.stderr.contains("-proj-baseline"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(fingerprint(&dest), before);
    assert_eq!(fingerprint(&env.repo()), repo_before);
    assert_eq!(snapshot_count(&env), 1);
    // Into a destination that does not exist: it is not created.
    old(
        &env,
        &src,
        &["trial", "--dest", env.path("nowhere").to_str().unwrap(), "--dry-run"],
    )
    .success();
    assert!(!env.path("nowhere").exists());
}

#[test]
fn a_mistyped_subcommand_is_a_usage_error_with_a_suggestion() {
    let env = Env::with_repo();
    let src = project(&env);
    for (word, similar) in [("bakup", "backup"), ("snapshot", "snapshots"), ("restor", "restore")] {
        // Even with an old-tool flag: within two edits of a command, it is a typo.
        let out = old(&env, &src, &[word, "--yes"]).code(2);
        assert!(
            out.stderr.contains(&format!("similar subcommand exists: '{similar}'")),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains(&format!("backup --note {word}")), "{}", out.stderr);
    }
    assert_eq!(snapshot_count(&env), 0);
    assert!(!env.path("home/project_backups").exists());
}

#[test]
fn an_unknown_word_without_old_flags_and_without_a_terminal_points_to_both_syntaxes() {
    let env = Env::with_repo();
    let src = project(&env);
    let out = old(&env, &src, &["nightly"]).code(2);
    assert!(
        out.stderr.contains("unrecognized subcommand 'nightly'"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("projectclone --help"), "{}", out.stderr);
    assert!(
        out.stderr.contains("projectclone NOTE [--dest DIR] [-a|--archive]"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("projectclone nightly --yes"), "{}", out.stderr);
    // --json has no meaning there.
    let out = old(&env, &src, &["nightly", "--yes", "--json"]).code(2);
    assert!(out.stderr.contains("--json"), "{}", out.stderr);
    assert_eq!(snapshot_count(&env), 0);
    // A two-letter note is not a typo of `ls`; global options before it are kept.
    let dest = env.path("views");
    let mut c = env.bare();
    c.current_dir(&src)
        .env("PROJECTCLONE_PASSWORD", PASSWORD)
        .arg("--cache-dir")
        .arg(env.cache())
        .args([
            "-r",
            env.repo().to_str().unwrap(),
            "-q",
            "v2",
            "--dest",
            dest.to_str().unwrap(),
        ]);
    run(&mut c).success();
    assert!(views(&dest)[0].ends_with("-proj-v2"), "{:?}", views(&dest));
}

#[test]
fn old_flags_on_new_subcommands_get_a_hint() {
    let env = Env::with_repo();
    let src = project(&env);
    let out = old(&env, &src, &["backup", "--keep", "3"]).code(2);
    assert!(out.stderr.contains("unexpected argument '--keep'"), "{}", out.stderr);
    assert!(out.stderr.contains("projectclone NOTE --keep N"), "{}", out.stderr);
    assert!(out.stderr.contains("prune --keep-last N"), "{}", out.stderr);
    let out = old(&env, &src, &["backup", "--archive"]).code(2);
    assert!(
        out.stderr.contains("export latest --archive FILE.tar.gz"),
        "{}",
        out.stderr
    );
    let out = old(&env, &src, &["backup", "-a"]).code(2);
    assert!(out.stderr.contains("projectclone NOTE --archive"), "{}", out.stderr);
    assert_eq!(snapshot_count(&env), 0);
}

#[test]
fn a_cron_line_works_with_the_user_config_and_export_defaults() {
    let env = Env::with_repo();
    let src = project(&env);
    write(env.path("pw"), format!("{PASSWORD}\n"));
    write(
        env.path("xdg-config/projectclone/config.toml"),
        format!(
            "repo = \"{}\"\ncache-dir = \"{}\"\npassword-file = \"{}\"\n[export]\ndest = \"~/views\"\nkeep = 1\n",
            env.repo().display(),
            env.cache().display(),
            env.path("pw").display()
        ),
    );
    for note in ["nightly", "nightly"] {
        run(env.bare().current_dir(&src).args([note, "--yes", "-a"])).success();
    }
    // [export] keep = 1: one archive (and no checksum without --manifest).
    let v = views(&env.path("home/views"));
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].ends_with("-proj-nightly.tar.gz") || v[0].ends_with("-proj-nightly-1.tar.gz"),
        "{v:?}"
    );
    assert_eq!(snapshot_count(&env), 2);
    // --keep 0 keeps all, as with the old tool.
    run(env.bare().current_dir(&src).args(["nightly", "--keep", "0"])).success();
    assert_eq!(views(&env.path("home/views")).len(), 2);
    // An untrusted project file may not choose where views go.
    write(src.join(".projectclone.toml"), "[export]\ndest = \"/tmp/elsewhere\"\n");
    let out = run(env.bare().current_dir(&src).args(["nightly", "--yes"])).code(1);
    assert!(
        out.stderr.contains("`export`") && out.stderr.contains("config trust"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_top_level_manifest_of_the_project_is_never_overwritten() {
    let env = Env::with_repo();
    let src = project(&env);
    write(src.join("MANIFEST.txt"), b"the project's own\n");
    let dest = env.path("views");
    let out = old(&env, &src, &["m", "--dest", dest.to_str().unwrap(), "--manifest"]).code(1);
    assert!(out.stderr.contains("MANIFEST.txt"), "{}", out.stderr);
    assert!(out.stderr.contains("was saved"), "{}", out.stderr);
    assert!(views(&dest).is_empty(), "{:?}", views(&dest));
    assert_eq!(fs::read(src.join("MANIFEST.txt")).unwrap(), b"the project's own\n");
}

#[test]
fn a_destination_inside_the_project_is_refused_before_the_backup() {
    let env = Env::with_repo();
    let src = project(&env);
    for dest in ["backups", "./new/../backups", "."] {
        let out = old(&env, &src, &["x1", "--dest", dest]).code(1);
        assert!(
            out.stderr.contains("inside the directory being backed up"),
            "{}",
            out.stderr
        );
    }
    assert!(!src.join("backups").exists());
    assert_eq!(snapshot_count(&env), 0);
}
