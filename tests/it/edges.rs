//! Edge cases found by hostile testing (issue 14), one test per finding, each named after
//! the bug it pins down.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use crate::util::*;

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
            .args(["init", "--kdf-memory", "1024", "--kdf-time", "1"]))
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
        .args(["init", "--kdf-memory", "1024", "--kdf-time", "1"]))
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
            out.stderr.contains("forget needs snapshot ids or --keep-* rules"),
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
