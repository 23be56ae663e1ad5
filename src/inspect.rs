//! Read-only views of snapshots: `ls`, `diff`, `stats`.

use std::collections::HashSet;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::{Content, FileData, Meta, Node, NodeKind, Snapshot};
use crate::id::BlobId;
use crate::repo::Repository;

#[derive(Debug, Clone, Serialize)]
pub struct LsEntry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

pub fn kind_name(k: &NodeKind) -> &'static str {
    match k {
        NodeKind::File(_) => "file",
        NodeKind::Dir(_) | NodeKind::InlineDir(_) => "dir",
        NodeKind::Symlink(_) => "symlink",
        NodeKind::HardLink { .. } => "hardlink",
        NodeKind::Fifo => "fifo",
        NodeKind::Socket => "socket",
        NodeKind::CharDevice(_) => "chardev",
        NodeKind::BlockDevice(_) => "blockdev",
    }
}

fn file_data(k: &NodeKind) -> Option<&FileData> {
    match k {
        NodeKind::File(d) | NodeKind::HardLink { data: d, .. } => Some(d),
        _ => None,
    }
}

fn entry(path: &[u8], n: &Node) -> LsEntry {
    LsEntry {
        path: crate::format_name(path),
        kind: kind_name(&n.kind),
        size: file_data(&n.kind).map(|d| d.size).unwrap_or(0),
        mode: n.meta.mode,
        uid: n.meta.uid,
        gid: n.meta.gid,
        mtime: crate::format_time(&n.meta.mtime, 0),
        link_target: match &n.kind {
            NodeKind::Symlink(t) | NodeKind::HardLink { target: t, .. } => Some(crate::format_name(t)),
            _ => None,
        },
    }
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut r = rel.to_vec();
    r.push(b'/');
    r.extend_from_slice(name);
    r
}

/// Every entry at or below `path` (`/`-separated, relative to the snapshot root).
pub fn ls(repo: &Repository, snap: &Snapshot, path: Option<&str>) -> Result<Vec<LsEntry>> {
    let mut out = Vec::new();
    ls_each(repo, snap, path, &mut |e| out.push(e))?;
    Ok(out)
}

/// [`ls`], each entry handed to `f` as it is found (depth first, in name order), so a
/// listing of millions of entries is never held in memory.
pub fn ls_each(repo: &Repository, snap: &Snapshot, path: Option<&str>, f: &mut dyn FnMut(LsEntry)) -> Result<()> {
    let prefix: Vec<u8> = path
        .map(|p| p.trim_matches('/').as_bytes().to_vec())
        .unwrap_or_default();
    let start = if prefix.is_empty() {
        NodeKind::Dir(snap.tree)
    } else {
        let node = repo
            .find_node(&snap.tree, &prefix)?
            .ok_or_else(|| Error::PathNotInSnapshot(String::from_utf8_lossy(&prefix).into_owned()))?;
        let full = join(b"", &prefix);
        f(entry(&full, &node));
        if !node.kind.is_dir() {
            return Ok(());
        }
        node.kind
    };
    let base = if prefix.is_empty() {
        Vec::new()
    } else {
        join(b"", &prefix)
    };
    walk(repo, &start, &base, &mut |p, n| f(entry(p, n)))
}

/// Visit every entry below the directory entry `dir` (`Dir` or `InlineDir`), depth first.
fn walk(repo: &Repository, dir: &NodeKind, rel: &[u8], f: &mut dyn FnMut(&[u8], &Node)) -> Result<()> {
    for n in repo.dir_nodes(dir)? {
        let p = join(rel, &n.name);
        f(&p, &n);
        if n.kind.is_dir() {
            walk(repo, &n.kind, &p, f)?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    /// `+` added, `-` removed, `M` content changed, `U` metadata only, `T` type changed.
    pub change: &'static str,
}

fn same_meta(a: &Meta, b: &Meta) -> bool {
    a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.mtime == b.mtime && a.xattrs == b.xattrs
}

pub fn diff(repo: &Repository, a: &Snapshot, b: &Snapshot) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    diff_trees(
        repo,
        Some(&NodeKind::Dir(a.tree)),
        Some(&NodeKind::Dir(b.tree)),
        b"",
        &mut out,
    )?;
    Ok(out)
}

fn diff_trees(
    repo: &Repository,
    a: Option<&NodeKind>,
    b: Option<&NodeKind>,
    rel: &[u8],
    out: &mut Vec<Change>,
) -> Result<()> {
    if a.is_some() && a == b {
        return Ok(());
    }
    let an = match a {
        Some(k) => repo.dir_nodes(k)?,
        None => Vec::new(),
    };
    let bn = match b {
        Some(k) => repo.dir_nodes(k)?,
        None => Vec::new(),
    };
    let (mut i, mut j) = (0, 0);
    while i < an.len() || j < bn.len() {
        let ord = match (an.get(i), bn.get(j)) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                let n = &an[i];
                let p = join(rel, &n.name);
                out.push(Change {
                    path: crate::format_name(&p),
                    change: "-",
                });
                if n.kind.is_dir() {
                    diff_trees(repo, Some(&n.kind), None, &p, out)?;
                }
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let n = &bn[j];
                let p = join(rel, &n.name);
                out.push(Change {
                    path: crate::format_name(&p),
                    change: "+",
                });
                if n.kind.is_dir() {
                    diff_trees(repo, None, Some(&n.kind), &p, out)?;
                }
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (&an[i], &bn[j]);
                let p = join(rel, &x.name);
                match (&x.kind, &y.kind) {
                    (s, t) if s.is_dir() && t.is_dir() => {
                        if !same_meta(&x.meta, &y.meta) {
                            out.push(Change {
                                path: crate::format_name(&p),
                                change: "U",
                            });
                        }
                        diff_trees(repo, Some(s), Some(t), &p, out)?;
                    }
                    (k1, k2) if kind_name(k1) != kind_name(k2) => out.push(Change {
                        path: crate::format_name(&p),
                        change: "T",
                    }),
                    (k1, k2) => {
                        let content_same = match (file_data(k1), file_data(k2)) {
                            (Some(d1), Some(d2)) => d1 == d2,
                            _ => k1 == k2,
                        };
                        if !content_same {
                            out.push(Change {
                                path: crate::format_name(&p),
                                change: "M",
                            });
                        } else if !same_meta(&x.meta, &y.meta) {
                            out.push(Change {
                                path: crate::format_name(&p),
                                change: "U",
                            });
                        }
                    }
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

#[derive(Debug, Default, Serialize)]
pub struct SnapshotStats {
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    /// Bytes a restore writes.
    pub total_size: u64,
    /// Distinct chunks and their plaintext / stored bytes.
    pub unique_chunks: u64,
    pub unique_raw_bytes: u64,
    pub unique_stored_bytes: u64,
}

pub fn snapshot_stats(repo: &Repository, snap: &Snapshot) -> Result<SnapshotStats> {
    let mut s = SnapshotStats::default();
    let mut seen: HashSet<BlobId> = HashSet::new();
    let mut err = None;
    walk(repo, &NodeKind::Dir(snap.tree), b"", &mut |_, n| match &n.kind {
        k if k.is_dir() => s.dirs += 1,
        k => {
            if let Some(d) = file_data(k) {
                s.files += 1;
                s.total_size += d.size;
                let chunks = match &d.content {
                    Content::Chunks(c) => c.clone(),
                    c => match repo.chunk_list(c) {
                        Ok(c) => c,
                        Err(e) => {
                            err = Some(e);
                            return;
                        }
                    },
                };
                for c in chunks {
                    if seen.insert(BlobId(c.id.0)) {
                        s.unique_chunks += 1;
                        s.unique_raw_bytes += c.len as u64;
                        if let Ok(l) = repo.locate(&BlobId(c.id.0)) {
                            s.unique_stored_bytes += l.length as u64;
                        }
                    }
                }
            } else {
                s.other += 1;
            }
        }
    })?;
    if let Some(e) = err {
        return Err(e);
    }
    Ok(s)
}

#[derive(Debug, Default, Serialize)]
pub struct RepoStats {
    pub snapshots: u64,
    pub packs: u64,
    pub pack_bytes: u64,
    pub blobs: u64,
    pub raw_bytes: u64,
    pub stored_blob_bytes: u64,
}

pub fn repo_stats(repo: &Repository) -> Result<RepoStats> {
    let packs = repo.index.packs()?;
    let (blobs, stored, raw) = repo.index.totals()?;
    Ok(RepoStats {
        snapshots: repo.snapshots()?.len() as u64,
        packs: packs.len() as u64,
        pack_bytes: packs.iter().map(|p| p.1).sum(),
        blobs,
        raw_bytes: raw,
        stored_blob_bytes: stored,
    })
}
