//! `find PATTERN…`: the entries of snapshots whose name (or, for a pattern with a slash, whose
//! path from the snapshot root) matches, without restoring anything. A directory shared by
//! several snapshots (the same tree id) is searched once when every pattern is a name
//! pattern, so searching a long history costs about one walk of what changed.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{Glob, GlobMatcher};

use crate::error::{Error, Result};
use crate::format::{Node, NodeKind, Snapshot};
use crate::id::TreeId;
use crate::repo::Repository;

/// The patterns: without a slash a name at any depth; with one, a path anchored at the
/// snapshot root (as `restore --include` reads them).
pub struct Patterns {
    globs: Vec<(bool, GlobMatcher)>,
}

/// A matching entry: its path from the snapshot root (no leading `/`) and its node.
#[derive(Clone, Debug)]
pub struct Found {
    pub path: Vec<u8>,
    pub node: Node,
}

/// Matches below a directory, by tree id (paths relative to it).
pub type Memo = HashMap<TreeId, Vec<Found>>;

impl Patterns {
    pub fn new(patterns: &[String]) -> Result<Patterns> {
        if patterns.is_empty() {
            return Err(Error::Invalid("find needs at least one pattern".into()));
        }
        let mut globs = Vec::new();
        for p in patterns {
            let anchored = p.contains('/');
            let pat = p.trim_start_matches('/').trim_end_matches('/');
            let g = Glob::new(pat).map_err(|e| Error::Invalid(format!("pattern {p:?}: {e}")))?;
            globs.push((anchored, g.compile_matcher()));
        }
        Ok(Patterns { globs })
    }

    fn matches(&self, path: &[u8], name: &[u8]) -> bool {
        self.globs.iter().any(|(anchored, g)| {
            let s = if *anchored { path } else { name };
            g.is_match(Path::new(OsStr::from_bytes(s)))
        })
    }

    /// Whether a match below a directory depends only on the directory's content.
    fn by_name_only(&self) -> bool {
        self.globs.iter().all(|(anchored, _)| !anchored)
    }
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        name.to_vec()
    } else {
        [prefix, b"/", name].concat()
    }
}

/// Every entry of `snap` that `patterns` match, in tree order (depth first, names sorted).
pub fn find(repo: &Repository, snap: &Snapshot, patterns: &Patterns, memo: &mut Memo) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    walk(repo, &NodeKind::Dir(snap.tree), b"", patterns, memo, &mut out)?;
    Ok(out)
}

fn walk(
    repo: &Repository,
    dir: &NodeKind,
    prefix: &[u8],
    patterns: &Patterns,
    memo: &mut Memo,
    out: &mut Vec<Found>,
) -> Result<()> {
    let memo_key = match dir {
        NodeKind::Dir(id) if patterns.by_name_only() => Some(*id),
        _ => None,
    };
    if let Some(found) = memo_key.and_then(|k| memo.get(&k)) {
        out.extend(found.iter().map(|f| Found {
            path: join(prefix, &f.path),
            node: f.node.clone(),
        }));
        return Ok(());
    }
    // Found below this directory, relative to it (memoized) or to the root.
    let mut here = Vec::new();
    let rel_prefix: &[u8] = if memo_key.is_some() { b"" } else { prefix };
    for node in repo.dir_nodes(dir)? {
        let path = join(rel_prefix, &node.name);
        let full = join(prefix, &node.name);
        if patterns.matches(&full, &node.name) {
            here.push(Found {
                path: path.clone(),
                node: node.clone(),
            });
        }
        if node.kind.is_dir() {
            let mut below = Vec::new();
            walk(repo, &node.kind, &full, patterns, memo, &mut below)?;
            // `below` holds paths from the root; keep them relative when memoizing.
            for f in below {
                let path = if memo_key.is_some() {
                    f.path[prefix.len() + usize::from(!prefix.is_empty())..].to_vec()
                } else {
                    f.path
                };
                here.push(Found { path, node: f.node });
            }
        }
    }
    if let Some(k) = memo_key {
        out.extend(here.iter().map(|f| Found {
            path: join(prefix, &f.path),
            node: f.node.clone(),
        }));
        memo.insert(k, here);
    } else {
        out.extend(here);
    }
    Ok(())
}
