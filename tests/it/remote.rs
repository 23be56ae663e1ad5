//! Issue 16 end to end through the binary: a string that only looks like a repository
//! location is a usage error that creates nothing.

use std::ffi::OsStr;
use std::path::Path;

use crate::util::*;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A string that looks like a location of another tool, or names a scheme this build does
/// not know, is a usage error (exit 2) that says what to write, whether given with `-r`,
/// `PROJECTCLONE_REPO` or `copy --to`; nothing is created, least of all a local folder of
/// that name.
#[test]
fn strings_that_only_look_like_locations_are_usage_errors_and_create_nothing() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("f.txt"), b"x\n");
    env.backup([&src]);
    let before = rel_paths(env.root());
    for loc in [
        "gdrive:backups",
        "user@host:/srv/x",
        "nas:backups/app",
        "ftp://x",
        "ftp://host/backups",
        "http://example.com/repo",
        "s3:ftp://host/bucket",
        "rclone:no-second-colon",
    ] {
        let commands: [&[&OsStr]; 3] = [&[os("init")], &[os("backup"), src.as_os_str()], &[os("snapshots")]];
        for args in commands {
            let out = run(env
                .bare()
                .env("PROJECTCLONE_PASSWORD", PASSWORD)
                .arg("--cache-dir")
                .arg(env.path("new-cache"))
                .arg("-r")
                .arg(loc)
                .args(args))
            .code(2);
            assert!(
                out.stderr.contains(loc) && out.stderr.contains("location"),
                "{loc} {args:?}: {}",
                out.stderr
            );
            let out = run(env
                .bare()
                .env("PROJECTCLONE_PASSWORD", PASSWORD)
                .env("PROJECTCLONE_REPO", loc)
                .arg("--cache-dir")
                .arg(env.path("new-cache"))
                .args(args))
            .code(2);
            assert!(out.stderr.contains(loc), "{loc} {args:?}: {}", out.stderr);
        }
        let out = env.run(["copy", "--to", loc]).code(2);
        assert!(out.stderr.contains(loc), "copy --to {loc}: {}", out.stderr);
    }
    assert!(!Path::new("gdrive:backups").exists());
    assert_eq!(rel_paths(env.root()), before, "something was created");
    assert!(!env.path("new-cache").exists());
}
