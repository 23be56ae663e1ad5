//! Edge cases found by hostile testing (issue 14), one test per finding, each named after
//! the bug it pins down.

use std::fs;
use std::path::Path;

use crate::util::*;

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
