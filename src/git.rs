//! Where a git work tree stands: the commit, branch and dirtiness a backup records in its
//! snapshot (format-spec §10, `GitState`), and the lookups `snapshots --commit`, `restore
//! --commit` and `log` make.
//!
//! The `git` program answers when it is on `PATH`. Without it (or when it refuses, as it
//! does for a work tree owned by another user), the commit and branch are read from the
//! `.git` folder's own files (`HEAD`, loose refs, `packed-refs`) and dirtiness is unknown.
//! A tree in no work tree records nothing, and no program is run for it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::format::GitState;

/// The work tree that holds `path` (a directory, or a file whose folder is looked at): the
/// nearest folder at or above it with a `.git` entry.
pub fn work_tree_of(path: &Path) -> Option<PathBuf> {
    let start = if path.is_dir() { path } else { path.parent()? };
    start
        .ancestors()
        .find(|d| d.join(".git").symlink_metadata().is_ok())
        .map(Path::to_path_buf)
}

/// The state of the one work tree that holds every path, or `None` when the paths lie in no
/// work tree, in different ones, or HEAD names no commit yet.
pub fn state_of(paths: &[PathBuf]) -> Option<GitState> {
    let mut trees = paths.iter().map(|p| work_tree_of(p));
    let first = trees.next()??;
    if !trees.all(|t| t.as_deref() == Some(first.as_path())) {
        return None;
    }
    from_program(&first).or_else(|| from_files(&first))
}

/// A `git` command in `dir`, with the variables a hook runs with cleared (`GIT_DIR` and its
/// kin would point it elsewhere) and no optional locks (a status must not take the index
/// lock a concurrent git command needs).
fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("--no-optional-locks")
        .arg("-C")
        .arg(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_PREFIX")
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Run `git ARGS` in `dir`; its output without the trailing newline, or `None` when it could
/// not run or failed.
pub fn run(dir: &Path, args: &[&str]) -> Option<String> {
    let out = git(dir).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

fn from_program(tree: &Path) -> Option<GitState> {
    let commit = run(tree, &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])?;
    let branch = run(tree, &["symbolic-ref", "--quiet", "--short", "HEAD"]).filter(|b| !b.is_empty());
    let out = git(tree)
        .args(["status", "--porcelain", "-z", "--untracked-files=normal"])
        .output()
        .ok()?;
    let dirty = out.status.success().then_some(!out.stdout.is_empty());
    Some(GitState { commit, branch, dirty })
}

/// The folder holding `HEAD`: `.git` itself, or the folder a `.git` file points to
/// (`gitdir: …`, in linked work trees and submodules).
fn git_dir(tree: &Path) -> Option<PathBuf> {
    let dot = tree.join(".git");
    if dot.is_dir() {
        return Some(dot);
    }
    let text = std::fs::read_to_string(&dot).ok()?;
    let target = text.strip_prefix("gitdir:")?.trim();
    Some(tree.join(target))
}

fn is_hex_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Commit and branch from the files, without the program: `HEAD` holds a commit or `ref:
/// REF`, which a loose ref file or a `packed-refs` line resolves. Refs live in the common
/// folder of a linked work tree (its `commondir` file).
fn from_files(tree: &Path) -> Option<GitState> {
    let dir = git_dir(tree)?;
    let common = match std::fs::read_to_string(dir.join("commondir")) {
        Ok(c) => dir.join(c.trim()),
        Err(_) => dir.clone(),
    };
    let head = std::fs::read_to_string(dir.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:").map(str::trim) else {
        return is_hex_commit(head).then(|| GitState {
            commit: head.to_ascii_lowercase(),
            branch: None,
            dirty: None,
        });
    };
    if reference.split('/').any(|c| c == ".." || c.is_empty()) {
        return None;
    }
    let loose = std::fs::read_to_string(common.join(reference))
        .ok()
        .map(|s| s.trim().to_string());
    let commit = loose.filter(|c| is_hex_commit(c)).or_else(|| {
        let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
        packed.lines().find_map(|l| {
            let (hash, name) = l.split_once(' ')?;
            (name == reference && is_hex_commit(hash)).then(|| hash.to_string())
        })
    })?;
    Some(GitState {
        commit: commit.to_ascii_lowercase(),
        branch: Some(reference.strip_prefix("refs/heads/").unwrap_or(reference).to_string()),
        dirty: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_alone_give_commit_and_branch() {
        let d = tempfile::tempdir().unwrap();
        let git = d.path().join(".git");
        std::fs::create_dir_all(git.join("refs/heads")).unwrap();
        let c = "0123456789abcdef0123456789abcdef01234567";
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(git.join("refs/heads/main"), format!("{c}\n")).unwrap();
        let s = from_files(d.path()).unwrap();
        assert_eq!(
            (s.commit.as_str(), s.branch.as_deref(), s.dirty),
            (c, Some("main"), None)
        );

        // Packed, and detached.
        std::fs::remove_file(git.join("refs/heads/main")).unwrap();
        std::fs::write(git.join("packed-refs"), format!("# pack-refs\n{c} refs/heads/main\n")).unwrap();
        assert_eq!(from_files(d.path()).unwrap().commit, c);
        std::fs::write(git.join("HEAD"), format!("{}\n", c.to_uppercase())).unwrap();
        let s = from_files(d.path()).unwrap();
        assert_eq!((s.commit.as_str(), s.branch), (c, None));

        // An unborn branch, and a ref that climbs out, record nothing.
        std::fs::write(git.join("HEAD"), "ref: refs/heads/none\n").unwrap();
        assert_eq!(from_files(d.path()), None);
        std::fs::write(git.join("HEAD"), "ref: ../../etc/passwd\n").unwrap();
        assert_eq!(from_files(d.path()), None);
    }

    #[test]
    fn paths_in_no_work_tree_or_in_two_record_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        for t in [&a, &b] {
            std::fs::create_dir_all(t.join(".git")).unwrap();
        }
        assert_eq!(work_tree_of(&a.join("x")).as_deref(), Some(a.as_path()));
        assert_eq!(state_of(&[a.clone(), b.clone()]), None);
        assert_eq!(work_tree_of(Path::new("/proc/self")), None);
    }
}
