//! The CLI side of project-aware selection: the `--project`, `--path`, `--host` and
//! `--tag` flags, `--group-by`, the config's `project` and `group-by` keys, and `latest`
//! resolved from the current directory (see `projectclone::select`).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};

use projectclone::format::Snapshot;
use projectclone::id::SnapshotId;
use projectclone::repo::Repository;
use projectclone::select::{self, Filter, GroupBy, ProjectNames, Selection};

use super::{Ctx, config, output};

/// Which snapshots a command considers; `latest` means the newest of them.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct SelectArgs {
    /// Only snapshots of this project (the base name of its first path, or the name the
    /// config's `project` gives it); repeatable: any of them
    #[arg(long = "project", value_name = "NAME")]
    pub projects: Vec<String>,
    /// Only snapshots that backed up this path (every --path given); relative to the
    /// current directory
    #[arg(long = "path", value_name = "P")]
    pub paths: Vec<PathBuf>,
    /// Only snapshots of this host; repeatable: any of them
    #[arg(long = "host", value_name = "H")]
    pub hosts: Vec<String>,
    /// Only snapshots with this tag (`a,b`: both); repeatable: any of them
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// Only snapshots taken at this git commit: a revision of the current directory's work
    /// tree (`HEAD~2`, a branch, a tag) or a commit's hex prefix; repeatable: any of them
    #[arg(long = "commit", value_name = "REV")]
    pub commits: Vec<String>,
}

/// A `--commit` value as a commit (or prefix) to match: what git resolves it to in the
/// current directory's work tree, else a hex prefix of at least 4 digits.
fn commit(rev: &str) -> Result<String> {
    let here = std::env::current_dir().unwrap_or_else(|_| ".".into());
    if !rev.starts_with('-')
        && let Some(full) = projectclone::git::run(
            &here,
            &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")],
        )
    {
        return Ok(full.to_ascii_lowercase());
    }
    if rev.len() >= 4 && rev.len() <= 64 && rev.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(rev.to_ascii_lowercase());
    }
    Err(anyhow!(
        "--commit {rev}: no git work tree here knows this revision, and it is not a commit hash (4 to 64 hex \
         digits); run the command inside the project's work tree, or give the commit's hash"
    ))
}

/// A path as snapshots record it: absolute, and canonical when it exists.
fn recorded(p: &Path) -> Result<Vec<u8>> {
    let abs = std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .map_err(|e| anyhow!("{}: {e}", p.display()))?;
    Ok(abs.as_os_str().as_bytes().to_vec())
}

impl SelectArgs {
    pub fn filter(&self) -> Result<Filter> {
        Ok(Filter {
            projects: self.projects.clone(),
            paths: self.paths.iter().map(|p| recorded(p)).collect::<Result<_>>()?,
            hosts: self.hosts.clone(),
            tags: self
                .tags
                .iter()
                .map(|t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(String::from)
                        .collect()
                })
                .collect(),
            commits: self.commits.iter().map(|c| commit(c)).collect::<Result<_>>()?,
        })
    }
}

impl Ctx {
    /// The names the config files give projects: `project` names the project of the
    /// directory that holds the `.projectclone.toml` setting it; set in the user file or a
    /// profile, that of the directory the command works on (a backup's first PATH, else
    /// the current directory).
    pub(super) fn project_names(&self) -> ProjectNames {
        let mut names = ProjectNames::default();
        let Some(s) = self.files.get(|l| l.project.as_ref()) else {
            return names;
        };
        let dir = match &s.source {
            config::Source::Project { file, .. } => file.parent().map(Path::to_path_buf),
            _ => super::project_dir(&self.cli),
        };
        if let Some(d) = dir.and_then(|d| recorded(&d).ok()) {
            names.0.insert(d, s.value);
        }
        names
    }

    pub(super) fn selection(&self, args: &SelectArgs) -> Result<Selection> {
        Ok(Selection {
            filter: args.filter()?,
            names: self.project_names(),
        })
    }

    /// `--group-by`, else the config's `group-by`, else host and paths.
    pub(super) fn group_by(&self, flag: Option<GroupBy>) -> Result<GroupBy> {
        if let Some(g) = flag {
            return Ok(g);
        }
        match self.files.get(|l| l.group_by.as_ref()) {
            // Checked when the file was read.
            Some(s) => s
                .value
                .parse()
                .map_err(|e: String| anyhow!("{}: group-by {e}", s.source)),
            None => Ok(GroupBy::default()),
        }
    }

    /// A snapshot argument: an id, a unique prefix, or `latest` — the newest of the
    /// snapshots `args` selects; with no filter, inside a backed-up directory that
    /// project's newest (said on stderr), elsewhere the newest of all.
    pub(super) fn resolve(&self, repo: &Repository, spec: &str, args: &SelectArgs) -> Result<(SnapshotId, Snapshot)> {
        if spec != "latest" {
            return Ok(repo.resolve_snapshot(spec)?);
        }
        let sel = self.selection(args)?;
        let cwd = std::env::current_dir().and_then(std::fs::canonicalize).ok();
        let (id, snap, why) = select::latest(repo.snapshots()?, &sel, cwd.as_deref())?;
        if let Some(n) = why.note(&id) {
            output::note(&self.cli, &n);
        }
        Ok((id, snap))
    }
}

impl Ctx {
    /// Which snapshots `--keep-*` rules thin and how they are grouped. Filters and
    /// `--group-by` given with no rule change nothing, which is said (filters also choose
    /// `latest` among named snapshots, `named`).
    pub(super) fn prune_scope(
        &self,
        args: &SelectArgs,
        group_by: Option<GroupBy>,
        rules: &projectclone::prune::policy::KeepRules,
        named: bool,
    ) -> Result<projectclone::prune::Scope> {
        let selection = self.selection(args)?;
        if rules.is_empty() {
            let mut idle = Vec::new();
            if !selection.filter.is_empty() && !named {
                idle.push(selection.filter.describe());
            }
            if let Some(g) = group_by {
                idle.push(format!("--group-by {g}"));
            }
            if !idle.is_empty() {
                output::warn(
                    &self.cli,
                    &format!(
                        "{} choose(s) what --keep-* rules thin, and no rule was given (nor [retention] \
                         in a config file): it changes nothing",
                        idle.join(" ")
                    ),
                );
            }
        }
        Ok(projectclone::prune::Scope {
            selection,
            group_by: self.group_by(group_by)?,
        })
    }
}
