//! Snapshots beside git: `log` (each commit with the snapshots taken at it) and `git-hook
//! install|remove` (a snapshot after every commit). Backups record the git state themselves
//! (`projectclone::git`); `--commit REV` selects by it (`select.rs`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use projectclone::git;

use super::{Ctx, output};

/// The line that marks a post-commit hook as projectclone's own.
const MARK: &str = "# projectclone post-commit hook";

/// The work tree holding `path` (default: the current directory), or a clear error.
fn work_tree(path: Option<&Path>, what: &str) -> Result<PathBuf> {
    let dir = match path {
        Some(p) => std::fs::canonicalize(p).with_context(|| format!("{}", p.display()))?,
        None => std::env::current_dir().context("the current directory")?,
    };
    git::work_tree_of(&dir).ok_or_else(|| {
        anyhow!(
            "{}: not inside a git work tree (no .git folder here or above); {what}",
            dir.display()
        )
    })
}

/// `log [PATH] [-n N]`: the work tree's last N commits, newest first, each with the
/// snapshots recorded at it (`GitState::commit`), oldest first.
pub fn log(ctx: &Ctx, path: Option<&Path>, max: usize) -> Result<u8> {
    let tree = work_tree(path, "`log` lists snapshots beside the commits of a work tree")?;
    let text = git::run(&tree, &["log", "-n", &max.to_string(), "--format=%H%x09%cI%x09%s"]).ok_or_else(|| {
        anyhow!(
            "`git log` failed in {}: `log` needs the git program on PATH and a work tree with a commit \
             (`projectclone snapshots --commit REV` needs neither)",
            tree.display()
        )
    })?;
    let repo = ctx.open()?;
    let snaps = repo.snapshots()?;
    let mut commits = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(3, '\t');
        let (Some(commit), Some(date), subject) = (f.next(), f.next(), f.next().unwrap_or("")) else {
            continue;
        };
        let commit = commit.to_ascii_lowercase();
        let at: Vec<_> = snaps
            .iter()
            .filter(|(_, s)| s.git.as_ref().is_some_and(|g| g.commit == commit))
            .collect();
        commits.push(output::LogCommit {
            commit,
            date: date.to_string(),
            subject: subject.to_string(),
            snapshots: at.into_iter().map(|(id, s)| (*id, s.clone())).collect(),
        });
    }
    output::git_log(ctx.cli.json, &commits);
    Ok(0)
}

/// Quote a word for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Where git runs the work tree's post-commit hook (`core.hooksPath` honoured).
fn hook_path(tree: &Path) -> Result<PathBuf> {
    let rel = git::run(tree, &["rev-parse", "--git-path", "hooks/post-commit"]).ok_or_else(|| {
        anyhow!(
            "`git rev-parse` failed in {}: installing a hook needs the git program on PATH",
            tree.display()
        )
    })?;
    Ok(tree.join(rel))
}

/// The hook's text: a quiet backup of the work tree with this command's repository options,
/// which never fails the commit (a post-commit hook cannot) but says on stderr when the
/// backup failed.
fn hook_text(ctx: &Ctx, tree: &Path) -> Result<String> {
    let exe = std::env::current_exe().context("this program's path")?;
    let mut cmd = vec![sh_quote(&exe.to_string_lossy())];
    let cli = &ctx.cli;
    if let Some(r) = &cli.repo {
        cmd.push(format!("-r {}", sh_quote(r)));
    }
    if let Some(p) = &cli.password_file {
        let p = std::path::absolute(p).unwrap_or_else(|_| p.clone());
        cmd.push(format!("--password-file {}", sh_quote(&p.to_string_lossy())));
    }
    if let Some(c) = &cli.cache_dir {
        let c = std::path::absolute(c).unwrap_or_else(|_| c.clone());
        cmd.push(format!("--cache-dir {}", sh_quote(&c.to_string_lossy())));
    }
    if let Some(p) = &cli.profile {
        cmd.push(format!("-P {}", sh_quote(p)));
    }
    if cli.insecure_no_password {
        cmd.push("--insecure-no-password".into());
    }
    cmd.push(format!("--quiet backup {}", sh_quote(&tree.to_string_lossy())));
    Ok(format!(
        "#!/bin/sh\n\
         {MARK}: a snapshot after each commit.\n\
         # Written by `projectclone git-hook install`; `projectclone git-hook remove` removes it.\n\
         {} </dev/null >/dev/null || echo \"projectclone: the snapshot after this commit failed (exit $?)\" >&2\n\
         exit 0\n",
        cmd.join(" ")
    ))
}

/// `git-hook install|remove [PATH]`.
pub fn hook(ctx: &Ctx, install: bool, path: Option<&Path>) -> Result<u8> {
    let tree = work_tree(path, "a git hook belongs to a work tree")?;
    let hook = hook_path(&tree)?;
    let existing = match std::fs::read_to_string(&hook) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("{}", hook.display())),
    };
    let ours = existing
        .as_deref()
        .is_some_and(|t| t.lines().nth(1).is_some_and(|l| l.starts_with(MARK)));
    let shown = hook.display();
    if !install {
        match (&existing, ours) {
            (None, _) => output::git_hook(ctx.cli.json, "absent", &hook, &tree),
            (Some(_), false) => bail!("{shown} is not projectclone's hook: left as it is"),
            (Some(_), true) => {
                std::fs::remove_file(&hook).with_context(|| format!("{shown}"))?;
                output::git_hook(ctx.cli.json, "removed", &hook, &tree);
            }
        }
        return Ok(0);
    }
    let text = hook_text(ctx, &tree)?;
    if existing.is_some() && !ours {
        let line = text.lines().nth(3).unwrap_or_default();
        bail!(
            "{shown} exists and is not projectclone's hook: it was left as it is; to take snapshots after \
             each commit, add this line to it:\n  {line}"
        );
    }
    if let Some(dir) = hook.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    super::write_file_atomically(&hook, text.as_bytes())?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).with_context(|| format!("{shown}"))?;
    output::git_hook(ctx.cli.json, "installed", &hook, &tree);
    Ok(0)
}
