//! `export` flags that belong to one view only are usage errors with another view (clap's
//! `requires = "archive"` let them pass, since `--archive` is in the required view group).

use std::fs;

use crate::util::*;

#[test]
fn a_flag_of_another_view_is_a_usage_error() {
    let env = Env::with_repo();
    let src = env.path("proj");
    write(src.join("a.txt"), b"a\n");
    let id = env.backup([&src]);
    let out_dir = env.path("out");
    fs::create_dir_all(&out_dir).unwrap();
    let o = |n: &str| out_dir.join(n).display().to_string();
    let cases: [(&[&str], &str, &str); 6] = [
        (&["--manifest", "--clone", &o("c")], "--manifest", "--archive FILE only"),
        (
            &["--manifest", "--incremental", &o("i")],
            "--manifest",
            "--archive FILE only",
        ),
        (
            &["--format", "tar", "--clone", &o("c")],
            "--format",
            "--archive FILE only",
        ),
        (
            &["--format", "tar", "--incremental", &o("i")],
            "--format",
            "--archive FILE only",
        ),
        (&["--keep", "2", "--clone", &o("c")], "--keep", "--incremental DIR only"),
        (
            &["--keep", "2", "--archive", &o("a.tar")],
            "--keep",
            "--incremental DIR only",
        ),
    ];
    for (args, flag, tip) in cases {
        let out = run(env.cmd().args(["export", &id]).args(args)).code(2);
        assert!(
            out.stderr.contains(&format!("the argument '{flag}")) && out.stderr.contains("cannot be used with"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(tip), "{args:?}: {}", out.stderr);
    }
    assert_eq!(fs::read_dir(&out_dir).unwrap().count(), 0, "nothing written");
    // Each with its own view still works.
    run(env
        .cmd()
        .args(["export", &id, "--manifest", "--format", "tar", "--archive", &o("a")]))
    .success();
    assert!(out_dir.join("a").is_file() && out_dir.join("a.sha256").is_file());
    run(env.cmd().args(["export", &id, "--keep", "1", "--incremental", &o("i")])).success();
    assert_eq!(
        fs::read_dir(out_dir.join("i"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != ".projectclone-export")
            .count(),
        1
    );
}
