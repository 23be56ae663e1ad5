//! Embeds the git commit the binary was built from, for `projectclone --version`, as the
//! compile-time variable `PROJECTCLONE_GIT_COMMIT`: `git rev-parse --short HEAD` when the
//! source is a git checkout and git is installed, else "unknown" (a source tarball, a
//! vendored copy, no git). A packager may set `PROJECTCLONE_GIT_COMMIT` to say it instead.
//! Rebuilds only when the checked-out commit changes, not on every build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PROJECTCLONE_GIT_COMMIT");
    let given = std::env::var("PROJECTCLONE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty());
    let commit = given.unwrap_or_else(|| {
        let dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_default();
        for f in watched(&dir) {
            println!("cargo:rerun-if-changed={}", f.display());
        }
        git(&dir, &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into())
    });
    println!("cargo:rustc-env=PROJECTCLONE_GIT_COMMIT={commit}");
}

/// `git ARGS` run in `dir`: its first output line, if it succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    let line = s.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}

/// The files that change when another commit is checked out or made: HEAD (and its
/// reflog) of this worktree, the branch's ref and packed-refs. Only existing ones: cargo
/// reruns the script on every build while a watched file is missing.
fn watched(dir: &Path) -> Vec<PathBuf> {
    let Some(git_dir) = git(dir, &["rev-parse", "--absolute-git-dir"]) else {
        return Vec::new();
    };
    let git_dir = PathBuf::from(git_dir);
    let common = git(dir, &["rev-parse", "--git-common-dir"])
        .map(|c| {
            let c = PathBuf::from(c);
            if c.is_absolute() { c } else { dir.join(c) }
        })
        .unwrap_or_else(|| git_dir.clone());
    let mut files = vec![
        git_dir.join("HEAD"),
        git_dir.join("logs/HEAD"),
        common.join("packed-refs"),
    ];
    if let Some(r) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        files.push(common.join(r));
    }
    files.into_iter().filter(|f| f.exists()).collect()
}
