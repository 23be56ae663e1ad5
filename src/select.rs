//! Which snapshots a command means, in a repository that holds many projects: the
//! `--project`, `--path`, `--host` and `--tag` filters, what `latest` picks (among the
//! filtered snapshots, else the project of the current directory, else all), and the
//! groups retention keeps apart (`--group-by`). Pure: no I/O.
//!
//! A *project* is the set of paths a snapshot backed up; its name is the base name of the
//! first of them (paths are stored sorted), unless the configuration names the project
//! of that directory ([`ProjectNames`]). The snapshot format has no field for a name, so
//! a configured name is applied when reading, never recorded.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::Snapshot;
use crate::format_name;
use crate::id::SnapshotId;

/// Names the configuration gives projects: a directory, as snapshots record it (absolute,
/// canonical bytes), and its name.
#[derive(Clone, Debug, Default)]
pub struct ProjectNames(pub BTreeMap<Vec<u8>, String>);

/// The project a snapshot belongs to, by name: the configured name of its first path, or
/// that path's base name (escaped as names are; `/` for the root).
pub fn project_name(s: &Snapshot, names: &ProjectNames) -> String {
    let Some(first) = s.paths.first() else {
        return String::new();
    };
    if let Some(n) = names.0.get(first) {
        return n.clone();
    }
    match Path::new(OsStr::from_bytes(first)).file_name() {
        Some(n) => format_name(n.as_bytes()),
        None => format_name(first),
    }
}

/// The snapshots a command considers. Within a kind, any value matches (`--host a --host
/// b`: either host); across kinds, all must (`--host a --tag t`: both). As restic does,
/// one `--tag a,b` asks for both tags, and every `--path` must be among the snapshot's
/// paths.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub projects: Vec<String>,
    /// Absolute paths, as snapshots record them.
    pub paths: Vec<Vec<u8>>,
    pub hosts: Vec<String>,
    /// Each entry a set of tags that must all be present.
    pub tags: Vec<Vec<String>>,
    /// Git commits (full, or lowercase hex prefixes) the snapshot's `git` state must be at:
    /// any of them.
    pub commits: Vec<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.projects.is_empty()
            && self.paths.is_empty()
            && self.hosts.is_empty()
            && self.tags.is_empty()
            && self.commits.is_empty()
    }

    pub fn matches(&self, s: &Snapshot, names: &ProjectNames) -> bool {
        (self.projects.is_empty() || self.projects.contains(&project_name(s, names)))
            && self.paths.iter().all(|p| s.paths.contains(p))
            && (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && (self.tags.is_empty() || self.tags.iter().any(|set| set.iter().all(|t| s.tags.contains(t))))
            && (self.commits.is_empty()
                || s.git
                    .as_ref()
                    .is_some_and(|g| self.commits.iter().any(|c| g.commit.starts_with(c.as_str()))))
    }

    /// The filter as the flags that give it, for messages: `--project app --host h`.
    pub fn describe(&self) -> String {
        let mut out = Vec::new();
        for p in &self.projects {
            out.push(format!("--project {p}"));
        }
        for p in &self.paths {
            out.push(format!("--path {}", format_name(p)));
        }
        for h in &self.hosts {
            out.push(format!("--host {h}"));
        }
        for t in &self.tags {
            out.push(format!("--tag {}", t.join(",")));
        }
        for c in &self.commits {
            out.push(format!("--commit {}", &c[..c.len().min(12)]));
        }
        out.join(" ")
    }
}

/// What a command selects with: the filter and the configured project names.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub filter: Filter,
    pub names: ProjectNames,
}

impl Selection {
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.filter.matches(s, &self.names)
    }
}

/// Why a snapshot was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// Named by its id or an id prefix.
    Named,
    /// `latest` among the snapshots the filter (described) selects.
    Filtered(String),
    /// `latest` with no filter, in a directory at or below `path` that this snapshot
    /// backed up: the newest snapshot of that project.
    InProject { path: Vec<u8>, paths: Vec<Vec<u8>> },
    /// `latest` with no filter, outside every backed-up directory: the newest of all.
    Newest,
}

impl Why {
    /// A line for stderr saying which snapshot `latest` chose and why (none for a snapshot
    /// named by id, or the newest of all, which is what `latest` always meant).
    pub fn note(&self, id: &SnapshotId) -> Option<String> {
        match self {
            Why::Named | Why::Newest => None,
            Why::Filtered(f) => Some(format!("latest: {}, the newest snapshot with {f}", id.short())),
            Why::InProject { paths, .. } => Some(format!(
                "latest: {}, the newest snapshot of {}",
                id.short(),
                paths.iter().map(|p| format_name(p)).collect::<Vec<_>>().join(" ")
            )),
        }
    }
}

fn newer(a: &(SnapshotId, Snapshot), b: &(SnapshotId, Snapshot)) -> std::cmp::Ordering {
    a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0))
}

/// What `latest` means among `all`: the newest (ties by id) of the snapshots the filter
/// selects; with no filter, inside a directory that a snapshot backed up (`cwd`, absolute
/// and canonical, at or below one of its paths), the newest snapshot holding the deepest
/// such path; anywhere else the newest of all.
pub fn latest(
    all: Vec<(SnapshotId, Snapshot)>,
    sel: &Selection,
    cwd: Option<&Path>,
) -> Result<(SnapshotId, Snapshot, Why)> {
    if !sel.filter.is_empty() {
        let f = sel.filter.describe();
        return all
            .into_iter()
            .filter(|(_, s)| sel.matches(s))
            .max_by(newer)
            .map(|(id, s)| (id, s, Why::Filtered(f.clone())))
            .ok_or_else(|| Error::SnapshotNotFound(format!("latest: no snapshot matches {f}")));
    }
    if let Some(cwd) = cwd {
        // The deepest backed-up path holding `cwd`.
        let inside = |p: &[u8]| cwd.starts_with(Path::new(OsStr::from_bytes(p)));
        let deepest = all
            .iter()
            .flat_map(|(_, s)| s.paths.iter())
            .filter(|p| inside(p))
            .max_by_key(|p| Path::new(OsStr::from_bytes(p)).components().count())
            .cloned();
        if let Some(path) = deepest {
            let (id, s) = all
                .into_iter()
                .filter(|(_, s)| s.paths.contains(&path))
                .max_by(newer)
                .expect("a snapshot holds the path found in one");
            let paths = s.paths.clone();
            return Ok((id, s, Why::InProject { path, paths }));
        }
    }
    all.into_iter()
        .max_by(newer)
        .map(|(id, s)| (id, s, Why::Newest))
        .ok_or_else(|| Error::SnapshotNotFound("latest (the repository has no snapshots)".into()))
}

/// How retention groups snapshots: each group is thinned on its own. The default, host
/// and paths, is restic's: two machines' copies of a project, or two projects with one
/// base name, never thin each other's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub project: bool,
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> GroupBy {
        GroupBy {
            host: true,
            paths: true,
            project: false,
            tags: false,
        }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = String;

    /// `none`, or a comma list of `host`, `paths`, `project` and `tags`.
    fn from_str(s: &str) -> std::result::Result<GroupBy, String> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            project: false,
            tags: false,
        };
        if s.trim() == "none" {
            return Ok(g);
        }
        for part in s.split(',').map(str::trim) {
            match part {
                "host" => g.host = true,
                "paths" | "path" => g.paths = true,
                "project" => g.project = true,
                "tags" | "tag" => g.tags = true,
                _ => {
                    return Err(format!(
                        "{s:?}: give `none` or a comma list of host, paths, project and tags (e.g. host,paths)"
                    ));
                }
            }
        }
        Ok(g)
    }
}

impl std::fmt::Display for GroupBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<&str> = [
            (self.host, "host"),
            (self.paths, "paths"),
            (self.project, "project"),
            (self.tags, "tags"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
        if parts.is_empty() {
            write!(f, "none")
        } else {
            write!(f, "{}", parts.join(","))
        }
    }
}

/// The group a snapshot falls in: the fields `--group-by` names, the others `None`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Sorted, escaped as names are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Sorted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl GroupBy {
    pub fn key(&self, s: &Snapshot, names: &ProjectNames) -> GroupKey {
        GroupKey {
            host: self.host.then(|| s.hostname.clone()),
            paths: self.paths.then(|| {
                let mut p = s.paths.clone();
                p.sort();
                p.iter().map(|p| format_name(p)).collect()
            }),
            project: self.project.then(|| project_name(s, names)),
            tags: self.tags.then(|| {
                let mut t = s.tags.clone();
                t.sort();
                t.dedup();
                t
            }),
        }
    }
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if let Some(p) = &self.paths {
            parts.push(format!("paths {}", p.join(" ")));
        }
        if let Some(p) = &self.project {
            parts.push(format!("project {p}"));
        }
        if let Some(t) = &self.tags {
            parts.push(if t.is_empty() {
                "no tags".to_string()
            } else {
                format!("tags {}", t.join(","))
            });
        }
        if parts.is_empty() {
            write!(f, "all snapshots")
        } else {
            write!(f, "{}", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Summary, Time};
    use crate::id::TreeId;

    fn snap(i: u8, secs: i64, host: &str, paths: &[&str], tags: &[&str]) -> (SnapshotId, Snapshot) {
        (
            SnapshotId([i; 32]),
            Snapshot {
                time: Time { secs, nanos: 0 },
                utc_offset: 0,
                hostname: host.into(),
                username: "u".into(),
                paths: paths.iter().map(|p| p.as_bytes().to_vec()).collect(),
                tags: tags.iter().map(|s| s.to_string()).collect(),
                note: None,
                tree: TreeId([0; 32]),
                root: None,
                parent: None,
                summary: Summary::default(),
                program_version: String::new(),
                origin: None,
                seen: Vec::new(),
                git: None,
            },
        )
    }

    fn all() -> Vec<(SnapshotId, Snapshot)> {
        vec![
            snap(1, 10, "a", &["/home/u/app"], &["x"]),
            snap(2, 20, "b", &["/home/u/app"], &["x", "y"]),
            snap(3, 30, "a", &["/srv/app"], &[]),
            snap(4, 40, "a", &["/home/u/lib"], &["y"]),
            snap(5, 15, "a", &["/home/u/app/sub"], &[]),
        ]
    }

    fn ids(sel: &Selection) -> Vec<u8> {
        all()
            .iter()
            .filter(|(_, s)| sel.matches(s))
            .map(|(i, _)| i.0[0])
            .collect()
    }

    #[test]
    fn filters_combine_any_within_all_across() {
        let mut sel = Selection::default();
        assert_eq!(ids(&sel), vec![1, 2, 3, 4, 5]);
        sel.filter.projects = vec!["app".into()];
        assert_eq!(ids(&sel), vec![1, 2, 3]);
        sel.filter.hosts = vec!["a".into()];
        assert_eq!(ids(&sel), vec![1, 3]);
        sel.filter.paths = vec![b"/srv/app".to_vec()];
        assert_eq!(ids(&sel), vec![3]);
        let mut sel = Selection::default();
        sel.filter.tags = vec![vec!["x".into(), "y".into()]];
        assert_eq!(ids(&sel), vec![2]);
        sel.filter.tags.push(vec!["y".into()]);
        assert_eq!(ids(&sel), vec![2, 4]);
        // A configured name replaces the base name.
        let mut sel = Selection::default();
        sel.names.0.insert(b"/srv/app".to_vec(), "server".into());
        sel.filter.projects = vec!["server".into()];
        assert_eq!(ids(&sel), vec![3]);
        sel.filter.projects = vec!["app".into()];
        assert_eq!(ids(&sel), vec![1, 2]);
    }

    #[test]
    fn latest_inside_a_project_outside_and_filtered() {
        let sel = Selection::default();
        let pick = |cwd: Option<&str>| latest(all(), &sel, cwd.map(Path::new)).unwrap();
        let (id, _, why) = pick(Some("/home/u/app/src"));
        assert_eq!(id.0[0], 2);
        assert!(matches!(why, Why::InProject { ref path, .. } if path == b"/home/u/app"));
        assert_eq!(
            why.note(&id).unwrap(),
            format!("latest: {}, the newest snapshot of /home/u/app", id.short())
        );
        // The deepest backed-up directory wins.
        assert_eq!(pick(Some("/home/u/app/sub/x")).0.0[0], 5);
        // A sibling whose name only starts the same is outside.
        assert_eq!(pick(Some("/home/u/application")).0.0[0], 4);
        assert_eq!(pick(Some("/tmp")).2, Why::Newest);
        assert_eq!(pick(None).0.0[0], 4);
        let mut sel = Selection::default();
        sel.filter.hosts = vec!["a".into()];
        sel.filter.projects = vec!["app".into()];
        let (id, _, why) = latest(all(), &sel, Some(Path::new("/home/u/lib"))).unwrap();
        assert_eq!(id.0[0], 3);
        assert_eq!(why, Why::Filtered("--project app --host a".into()));
        sel.filter.hosts = vec!["c".into()];
        let e = latest(all(), &sel, None).unwrap_err().to_string();
        assert!(e.contains("no snapshot matches --project app --host c"), "{e}");
    }

    #[test]
    fn group_by_parses_and_keys() {
        assert_eq!("host,paths".parse::<GroupBy>().unwrap(), GroupBy::default());
        assert_eq!(GroupBy::default().to_string(), "host,paths");
        let none: GroupBy = "none".parse().unwrap();
        assert_eq!(none.to_string(), "none");
        assert!("host,color".parse::<GroupBy>().is_err());
        assert!("".parse::<GroupBy>().is_err());
        let names = ProjectNames::default();
        let s = all();
        let by_project: GroupBy = "project".parse().unwrap();
        assert_eq!(by_project.key(&s[0].1, &names), by_project.key(&s[2].1, &names));
        assert_ne!(
            GroupBy::default().key(&s[0].1, &names),
            GroupBy::default().key(&s[1].1, &names)
        );
        assert_eq!(none.key(&s[0].1, &names).to_string(), "all snapshots");
        assert_eq!(
            GroupBy::default().key(&s[0].1, &names).to_string(),
            "host a, paths /home/u/app"
        );
    }
}
