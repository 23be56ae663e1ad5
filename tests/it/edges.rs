//! Edge cases found by hostile testing (issue 14), one test per finding, each named after
//! the bug it pins down.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use crate::util::*;

/// A bind mount of `src` at `dst`, read-only if asked, unmounted on drop. Mounting needs
/// root with CAP_SYS_ADMIN, which these tests and CI have: without it the test fails
/// loudly, it is never skipped.
struct BindMount(PathBuf);

impl BindMount {
    #[track_caller]
    fn new(src: &Path, dst: &Path, read_only: bool) -> BindMount {
        fs::create_dir_all(dst).expect("mount point");
        let mount = |args: &[&OsStr]| {
            let out = StdCommand::new("mount").args(args).output().expect("mount runs");
            assert!(
                out.status.success(),
                "mount {args:?} failed (these tests need root with CAP_SYS_ADMIN): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        mount(&["--bind".as_ref(), src.as_os_str(), dst.as_os_str()]);
        let guard = BindMount(dst.to_path_buf());
        if read_only {
            mount(&["-o".as_ref(), "remount,bind,ro".as_ref(), dst.as_os_str()]);
            // Read-only for root too, which file modes are not.
            let e = fs::write(dst.join("write-probe"), b"x").expect_err("a read-only mount refuses writes");
            assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
        }
        guard
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let ok = StdCommand::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = StdCommand::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// `args` run through `script`, so the binary has a terminal and its prompts read `input`.
fn typed(env: &Env, input: &str, args: &[&OsStr]) -> Out {
    let quote = |a: &OsStr| format!("'{}'", a.to_str().expect("UTF-8 argument").replace('\'', "'\\''"));
    let mut line = quote(bin_path().as_os_str());
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut c = assert_cmd::Command::new("script");
    for v in [
        "PROJECTCLONE_REPO",
        "PROJECTCLONE_PASSWORD",
        "PROJECTCLONE_PASSWORD_FILE",
        "PROJECTCLONE_CACHE_DIR",
        "PROJECTCLONE_NEW_PASSWORD",
    ] {
        c.env_remove(v);
    }
    c.env("HOME", env.path("home"))
        .env("XDG_DATA_HOME", env.path("xdg-data"))
        .env("XDG_CACHE_HOME", env.path("xdg-cache"))
        .env("XDG_CONFIG_HOME", env.path("xdg-config"))
        .current_dir(env.root())
        .args(["-qec", &line, "/dev/null"])
        .write_stdin(input.to_string())
        .timeout(std::time::Duration::from_secs(120));
    run(&mut c)
}

fn os(s: &str) -> &OsStr {
    s.as_ref()
}

/// Finding 15: `init` accepted a directory that was not empty, even one holding an old
/// repository's keys and packs.
#[test]
fn init_refuses_a_directory_that_is_not_empty_or_a_file() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("f"), b"old data\n");
    env.backup([&src]);
    let refused = |dir: &Path, what: &str| {
        let before = fingerprint(dir);
        let file_before = fs::read(dir).ok();
        let out = run(env
            .cmd_at(dir)
            .args(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"]))
        .code(1);
        assert!(
            out.stderr.contains(&dir.display().to_string()) && out.stderr.contains(what),
            "{}: {}",
            dir.display(),
            out.stderr
        );
        assert_eq!(fingerprint(dir), before, "init wrote into {}", dir.display());
        assert_eq!(fs::read(dir).ok(), file_before);
    };
    // An old repository whose config was deleted.
    fs::remove_file(env.repo().join("config")).unwrap();
    refused(&env.repo(), "not empty");
    // Any other files.
    write(env.path("other/notes.txt"), b"mine\n");
    refused(&env.path("other"), "not empty");
    fs::create_dir_all(env.path("hidden/.git")).unwrap();
    refused(&env.path("hidden"), "not empty");
    // Not a directory.
    write(env.path("a-file"), b"a file\n");
    refused(&env.path("a-file"), "not a directory");
    // The default repository, created by the first backup, likewise.
    let default = env.path("xdg-data/projectclone/repo");
    write(default.join("packs/leftover"), b"old pack\n");
    let out = run(env
        .bare()
        .env("PROJECTCLONE_PASSWORD", PASSWORD)
        .arg("--cache-dir")
        .arg(env.cache())
        .arg("backup")
        .arg(&src))
    .code(1);
    assert!(out.stderr.contains("not empty"), "{}", out.stderr);
    assert_eq!(
        rel_paths(&default),
        ["packs", "packs/leftover"].map(String::from).into()
    );
    // An empty directory is fine.
    fs::create_dir(env.path("empty")).unwrap();
    run(env
        .cmd_at(&env.path("empty"))
        .args(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"]))
    .success();
    run(env.cmd_at(&env.path("empty")).arg("snapshots")).success();
}

/// Finding 6: `--keep-last 0` removed every snapshot.
#[test]
fn keep_rules_of_zero_count_as_not_given() {
    let env = Env::with_repo();
    let src = env.path("src");
    for i in 0..3 {
        write(src.join("f.txt"), format!("version {i}\n"));
        env.backup([&src]);
    }
    let warned = |out: &Out, given: &str| {
        assert!(
            out.stderr.contains(&format!("warning: {given} counts as not given")),
            "{given}: warn that it counts as not given: {}",
            out.stderr
        );
    };
    let mut voids: Vec<Vec<&str>> = [
        "--keep-last",
        "--keep-hourly",
        "--keep-daily",
        "--keep-weekly",
        "--keep-monthly",
        "--keep-yearly",
    ]
    .iter()
    .map(|f| vec![*f, "0"])
    .collect();
    for w in ["0d", "0h", "0y0m", "0w"] {
        voids.push(vec!["--keep-within", w]);
    }
    voids.push(vec!["--keep-tag", ""]);
    for void in &voids {
        let given = if void[1].is_empty() {
            format!("{} \"\"", void[0])
        } else {
            void.join(" ")
        };
        // prune with only a void rule only collects garbage.
        for dry in [&[][..], &["--dry-run"]] {
            let out = env.run(["prune"].iter().chain(dry).chain(void)).success();
            assert_eq!(env.snapshots().len(), 3, "prune {given} {dry:?} forgot snapshots");
            warned(&out, &given);
        }
        // forget with only a void rule has no rule at all.
        let out = env.run(["forget"].iter().chain(void)).code(1);
        warned(&out, &given);
        assert!(
            out.stderr
                .contains("forget needs snapshot ids, --keep-* rules, or [retention] in a config file"),
            "{given}: {}",
            out.stderr
        );
        let out = env.run(["forget", "--prune"].iter().chain(void)).code(1);
        warned(&out, &given);
        assert_eq!(env.snapshots().len(), 3, "forget {given} forgot snapshots");
    }
    // Beside a real rule, a void one changes nothing.
    let out = env.run(["forget", "--keep-last", "2", "--keep-daily", "0"]).success();
    warned(&out, "--keep-daily 0");
    assert_eq!(env.snapshots().len(), 2);
    // Not a duration at all is still an error.
    env.run(["forget", "--keep-within", "0"]).code(1);
    env.run(["check"]).success();
}

/// Finding 12: `init`, the first backup into the default repository, `key add` and
/// `key passwd` accepted an empty password.
#[test]
fn empty_password_is_refused_for_new_repositories_and_keys() {
    let env = Env::new();
    let empty = |out: &Out, what: &str| {
        assert!(out.stderr.contains("is empty"), "{what}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    };
    let init = || {
        let mut c = env.bare();
        c.arg("-r").arg(env.repo()).arg("--cache-dir").arg(env.cache()).args([
            "init",
            "--kdf-memory",
            "1024",
            "--kdf-time",
            "1",
            "--weak-kdf",
        ]);
        c
    };
    // From the environment, a password file, and the prompt.
    empty(&run(init().env("PROJECTCLONE_PASSWORD", "")).code(1), "environment");
    for (i, content) in ["", "\n", "\r\n"].iter().enumerate() {
        let f = env.path(format!("pw{i}"));
        fs::write(&f, content).unwrap();
        empty(&run(init().arg("--password-file").arg(&f)).code(1), "password file");
        empty(
            &run(init().env("PROJECTCLONE_PASSWORD_FILE", &f)).code(1),
            "password file variable",
        );
    }
    let repo = env.repo();
    let cache = env.cache();
    let good = env.path("pw-good");
    fs::write(&good, PASSWORD).unwrap();
    let init_args = [
        os("-r"),
        repo.as_os_str(),
        os("--cache-dir"),
        cache.as_os_str(),
        os("init"),
        os("--kdf-memory"),
        os("1024"),
        os("--kdf-time"),
        os("1"),
        os("--weak-kdf"),
    ];
    let out = typed(&env, "\n\n", &init_args).code(1);
    assert!(out.stdout.contains("is empty"), "prompt: {}", out.stdout);
    assert!(
        !env.repo().exists(),
        "an empty password created {}",
        env.repo().display()
    );

    // The first backup, which creates the default repository.
    let src = env.path("src");
    write(src.join("f"), b"f");
    let out = run(env.bare().env("PROJECTCLONE_PASSWORD", "").arg("backup").arg(&src)).code(1);
    empty(&out, "first backup");
    assert!(!env.path("xdg-data/projectclone/repo").exists());

    // Without a password only on request; with a typed one as before.
    run(env
        .bare()
        .arg("-r")
        .arg(env.path("insecure"))
        .arg("--cache-dir")
        .arg(env.cache())
        .args(["init", "--insecure-no-password"]))
    .success();
    typed(&env, &format!("{PASSWORD}\n{PASSWORD}\n"), &init_args).success();

    // New passwords of key add and key passwd.
    let keys = || files_under(&env.repo().join("keys"));
    let one = keys();
    assert_eq!(one.len(), 1);
    let f = env.path("pw0");
    for sub in ["add", "passwd"] {
        empty(
            &run(env.cmd().env("PROJECTCLONE_NEW_PASSWORD", "").args(["key", sub])).code(1),
            "new password variable",
        );
        empty(
            &run(env.cmd().args(["key", sub, "--new-password-file"]).arg(&f)).code(1),
            "new password file",
        );
        let out = typed(
            &env,
            "\n\n",
            &[
                os("-r"),
                repo.as_os_str(),
                os("--cache-dir"),
                cache.as_os_str(),
                os("--password-file"),
                good.as_os_str(),
                os("key"),
                os(sub),
            ],
        );
        assert!(out.stdout.contains("is empty"), "key {sub} prompt: {}", out.stdout);
        assert_ne!(out.code, 0);
    }
    assert_eq!(keys(), one, "a key was added or replaced");
    env.run(["snapshots"]).success();
}

/// Finding 5: `restore latest --target $REPO` replaced the repository's `config`.
#[test]
fn restore_or_export_into_the_repository_or_cache_is_refused() {
    let env = Env::with_repo();
    let src = env.path("src");
    // Names a repository holds: restored into one, they would replace its objects.
    write(src.join("config"), b"not a config\n");
    write(src.join("keys/k"), b"not a key\n");
    let id = env.backup([&src]);
    fs::create_dir_all(env.path("links")).unwrap();
    std::os::unix::fs::symlink(env.repo(), env.path("links/repo")).unwrap();
    std::os::unix::fs::symlink(env.cache(), env.path("links/cache")).unwrap();
    // The repository, and the folder holding it, at other paths.
    let _alias = BindMount::new(&env.repo(), &env.path("alias"), false);
    let _up = BindMount::new(env.root(), &env.path("up"), false);
    let repo_before = fingerprint(&env.repo());
    let cache_before = fingerprint(&env.cache());

    let refused = |args: &[&OsStr], target: &Path| {
        // (relative targets are relative to the binary's directory, the environment's root)
        let target = env.root().join(target);
        let existed = fs::symlink_metadata(&target).is_ok();
        let out = run(env.cmd().args(args)).code(1);
        assert!(
            out.stderr.contains("the repository") || out.stderr.contains("the cache directory"),
            "{args:?}: name what the target would overwrite: {}",
            out.stderr
        );
        assert!(out.stderr.contains("nothing was written"), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        assert_eq!(fingerprint(&env.repo()), repo_before, "{args:?} changed the repository");
        assert_eq!(fingerprint(&env.cache()), cache_before, "{args:?} changed the cache");
        if !existed {
            assert!(
                fs::symlink_metadata(&target).is_err(),
                "{args:?} created {}",
                target.display()
            );
        }
    };
    let restore = |target: PathBuf| {
        refused(
            &[os("restore"), os("latest"), os("--target"), target.as_os_str()],
            &target,
        );
        refused(
            &[
                os("restore"),
                os(&id),
                os("--dry-run"),
                os("--target"),
                target.as_os_str(),
            ],
            &target,
        );
    };
    // Is, lies inside (also where nothing exists yet), contains.
    restore(env.repo());
    restore(PathBuf::from("repo/../repo"));
    restore(env.repo().join("packs"));
    restore(env.repo().join("new/deeper"));
    restore(env.cache());
    restore(env.cache().join("new"));
    restore(env.root().to_path_buf());
    // Through symlinks and bind mounts.
    restore(env.path("links/repo"));
    restore(env.path("links/repo/new"));
    restore(env.path("links/cache/new"));
    restore(env.path("alias"));
    restore(env.path("alias/keys"));
    restore(env.path("alias/new"));
    restore(env.path("up"));
    restore(env.path("up/repo/new"));

    let export = |view: &str, target: PathBuf| {
        refused(&[os("export"), os("latest"), os(view), target.as_os_str()], &target);
    };
    export("--clone", env.repo());
    export("--clone", env.repo().join("clone"));
    export("--clone", env.path("alias/clone"));
    export("--clone", env.cache().join("clone"));
    export("--clone", env.root().to_path_buf());
    export("--incremental", env.repo());
    export("--incremental", env.path("links/repo/inc"));
    export("--incremental", env.cache());
    export("--incremental", env.path("up"));
    export("--archive", env.repo().join("a.tar"));
    export("--archive", env.path("alias/a.tar.gz"));
    export("--archive", env.path("links/cache/a.tar.zst"));
    export("--archive", env.repo().join("new/a.tar"));

    // Beside them is fine, and the repository is whole.
    let out = env.path("out");
    env.restore(&id, &out);
    assert_eq!(fs::read(out.join("config")).unwrap(), b"not a config\n");
    run(env.cmd().args(["export", "latest", "--archive"]).arg(env.path("a.tar"))).success();
    env.run(["check", "--read-data"]).success();
}

/// Finding 10: a read-only repository could not be restored, checked or exported, because
/// no lock could be written there.
#[test]
fn read_only_repository_is_read_without_a_lock_and_never_written() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.txt"), b"first\n");
    write(src.join("sub/b.bin"), random_bytes(3, 300_000));
    let first = env.backup([&src]);
    write(src.join("a.txt"), b"second\n");
    let second = env.backup([&src]);
    // Readable by the other user below (a repository is private to its owner by default).
    world_readable(&env.repo());
    let ro = env.path("ro-repo");
    let _ro = BindMount::new(&env.repo(), &ro, true);
    let before = fingerprint(&env.repo());
    let cmd = || env.cmd_at(&ro);
    let warned = |out: &Out| {
        assert!(
            out.stderr.contains("no lock was taken because the repository") && out.stderr.contains("is read-only"),
            "warn that no lock was taken: {}",
            out.stderr
        );
        assert!(out.stderr.contains("Read-only file system"), "say why: {}", out.stderr);
    };

    // Commands that only read: a warning where they would lock, and the work done.
    let target = env.path("restored");
    warned(&run(cmd().args(["restore", "latest", "--target"]).arg(&target)).success());
    assert_trees_equal(&src, &target, false);
    warned(&run(cmd().args(["check", "--read-data"])).success());
    let clone = env.path("clone");
    warned(&run(cmd().args(["export", &first, "--clone"]).arg(&clone)).success());
    assert_eq!(fs::read(clone.join("a.txt")).unwrap(), b"first\n");
    warned(&run(cmd().args(["export", "latest", "--archive"]).arg(env.path("x.tar.gz"))).success());
    warned(&run(cmd().args(["export", "latest", "--incremental"]).arg(env.path("inc"))).success());
    warned(&run(cmd().args(["key", "list"])).success());
    for args in [
        vec!["snapshots"],
        vec!["ls", "latest", "-l"],
        vec!["diff", &first, &second],
        vec!["stats"],
        vec!["stats", "latest"],
        vec!["restore", "latest", "--dry-run", "--target", "dry"],
        vec!["forget", &first, "--dry-run"],
        vec!["prune", "--keep-last", "1", "--dry-run"],
        vec!["repair", "snapshots", "--dry-run"],
        vec!["backup", "--dry-run", "src"],
    ] {
        run(cmd().args(&args)).success();
    }

    // Commands that write: an error saying the lock could not be written, and why.
    let refused = |args: &[&str]| {
        let out = run(cmd().env("PROJECTCLONE_NEW_PASSWORD", "another").args(args)).code(1);
        assert!(
            out.stderr.contains("could not write a lock") && out.stderr.contains("Read-only file system"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    };
    refused(&["backup", "src"]);
    refused(&["forget", &first]);
    refused(&["prune"]);
    refused(&["key", "add"]);
    refused(&["key", "passwd"]);
    refused(&["repair", "index"]);
    refused(&["repair", "snapshots"]);
    assert_eq!(fingerprint(&env.repo()), before, "the repository changed");

    // Another user's repository (readable, not writable: EACCES) is read the same way.
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    world_accessible(&env.cache());
    let mine = env.path("nobody-out");
    fs::create_dir(&mine).unwrap();
    fs::set_permissions(&mine, fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(env
        .cmd_as_nobody()
        .args(["restore", "latest", "--target"])
        .arg(mine.join("out")))
    .success();
    assert!(out.stderr.contains("no lock was taken"), "{}", out.stderr);
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    assert_eq!(fs::read(mine.join("out/a.txt")).unwrap(), b"second\n");
    let out = run(env.cmd_as_nobody().args(["forget", &first])).code(1);
    assert!(out.stderr.contains("could not write a lock"), "{}", out.stderr);
    assert_eq!(fingerprint(&env.repo()), before, "the repository changed");
}

/// Finding 14: an unusable cache directory made every command fail with a bare OS error.
#[test]
fn unusable_cache_directory_is_named_and_read_only_commands_use_a_temporary_one() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.txt"), b"cached or not\n");
    env.backup([&src]);
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    // Readable by nobody below (a repository is private to its owner by default).
    world_readable(&env.repo());
    let tmp = env.path("tmp");
    fs::create_dir(&tmp).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).unwrap();
    let a_file = env.path("a-file");
    write(&a_file, b"not a directory\n");

    // The binary for a repository, with the bad cache: as root with the cache in
    // PROJECTCLONE_CACHE_DIR, or as nobody with --cache-dir.
    type Runner<'a> = Box<dyn Fn(&Path) -> assert_cmd::Command + 'a>;
    let env = &env;
    let with_cache = |dir: PathBuf| -> Runner {
        Box::new(move |repo| {
            let mut c = env.bare();
            c.env("PROJECTCLONE_PASSWORD", PASSWORD)
                .env("PROJECTCLONE_CACHE_DIR", &dir)
                .arg("-r")
                .arg(repo);
            c
        })
    };
    let as_nobody: Runner = Box::new(|repo| {
        let mut c = assert_cmd::Command::new("setpriv");
        for v in [
            "PROJECTCLONE_REPO",
            "PROJECTCLONE_PASSWORD_FILE",
            "PROJECTCLONE_CACHE_DIR",
        ] {
            c.env_remove(v);
        }
        c.env("HOME", env.path("home"))
            .env("XDG_CONFIG_HOME", env.path("xdg-config"))
            .env("PROJECTCLONE_PASSWORD", PASSWORD)
            .current_dir(env.root())
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin_path())
            .arg("-r")
            .arg(repo)
            .arg("--cache-dir")
            .arg(env.cache());
        c
    });
    let snapshots = || files_under(&env.repo().join("snapshots")).len();
    let check_case = |name: &str, runner: &Runner, cache: &Path, why: &str| {
        let cmd = |repo: &Path| {
            let mut c = runner(repo);
            c.env("TMPDIR", &tmp);
            c
        };
        let out_dir = env.path(format!("out-{name}"));
        fs::create_dir(&out_dir).unwrap();
        fs::set_permissions(&out_dir, fs::Permissions::from_mode(0o777)).unwrap();
        for args in [
            vec![os("snapshots")],
            vec![os("ls"), os("latest")],
            vec![os("check")],
            vec![
                os("restore"),
                os("latest"),
                os("--target"),
                out_dir.join("out").as_os_str(),
            ],
        ] {
            let out = run(cmd(&env.repo()).args(&args)).success();
            assert!(
                out.stderr.contains(&format!("cache directory {}", cache.display()))
                    && out.stderr.contains("temporary cache")
                    && out.stderr.contains(why),
                "{name} {args:?}: warn, naming the cache directory and why: {}",
                out.stderr
            );
            assert!(
                fs::read_dir(&tmp).unwrap().next().is_none(),
                "{name} {args:?}: the temporary cache is left behind"
            );
        }
        assert_eq!(fs::read(out_dir.join("out/a.txt")).unwrap(), b"cached or not\n");
        let snaps = snapshots();
        let out = run(cmd(&env.repo()).arg("backup").arg(&src)).code(1);
        for needed in [
            format!("cache directory {}", cache.display()),
            why.to_string(),
            "--cache-dir".into(),
            "PROJECTCLONE_CACHE_DIR".into(),
        ] {
            assert!(
                out.stderr.contains(&needed),
                "{name} backup: say {needed:?}: {}",
                out.stderr
            );
        }
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        assert_eq!(snapshots(), snaps);
        // init fails before it creates anything.
        let fresh = env.path(format!("fresh-{name}"));
        let out = run(cmd(&fresh).arg("init")).code(1);
        assert!(out.stderr.contains("--cache-dir"), "{name} init: {}", out.stderr);
        assert!(!fresh.exists(), "{name}: init created {}", fresh.display());
    };
    // The cache directory is a file; its parent is a file; not writable; parent not creatable.
    check_case("file", &with_cache(a_file.clone()), &a_file, "not a directory");
    let under = a_file.join("sub/cache");
    check_case("under-a-file", &with_cache(under.clone()), &under, "cannot be created");
    check_case("not-writable", &as_nobody, &env.cache(), "Permission denied");
    fs::remove_dir_all(env.cache()).unwrap();
    check_case("not-creatable", &as_nobody, &env.cache(), "cannot be created");
}
