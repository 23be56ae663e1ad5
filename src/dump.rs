//! One file of a snapshot to a writer (`cat`), or a folder of it as a tar stream (`dump`),
//! for pipes: `projectclone cat latest app.sql | psql`, `projectclone dump latest src |
//! tar -x`. Both stream chunk by chunk; nothing is buffered whole or written to disk.

use std::io::Write;

use crate::error::{Error, Result};
use crate::export::{ExportResult, plan_errors, root_meta, write_archive};
use crate::format::{BlobKind, FileData, Node, NodeKind, Snapshot};
use crate::id::BlobId;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::{self, Item, ItemMeta, Plan, Special};

/// The snapshot path as stored: components joined by `/`, no leading or trailing `/`.
fn clean(path: &str) -> Vec<u8> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
        .into_bytes()
}

fn find(repo: &Repository, snap: &Snapshot, rel: &[u8], path: &str) -> Result<Node> {
    repo.find_node(&snap.tree, rel)?
        .ok_or_else(|| Error::PathNotInSnapshot(format!("{path} (`ls SNAP` lists what it holds)")))
}

/// Write the file at `path` (relative to the snapshot root) to `out`, holes as zeros.
/// Returns its size. A directory, symlink or special file is an error.
pub fn cat(repo: &Repository, snap: &Snapshot, path: &str, out: &mut dyn Write) -> Result<u64> {
    let rel = clean(path);
    if rel.is_empty() {
        return Err(Error::Invalid(format!(
            "{path:?} is the snapshot's root directory: `cat` writes one file; `dump SNAP` writes a tar of the whole snapshot"
        )));
    }
    let node = find(repo, snap, &rel, path)?;
    let shown = crate::format_name(&rel);
    let data = match &node.kind {
        NodeKind::File(d) | NodeKind::HardLink { data: d, .. } => d,
        k if k.is_dir() => {
            return Err(Error::Invalid(format!(
                "{shown} is a directory: `cat` writes one file; `dump SNAP {shown}` writes the directory as a tar, `ls SNAP {shown}` lists it"
            )));
        }
        NodeKind::Symlink(t) => {
            return Err(Error::Invalid(format!(
                "{shown} is a symbolic link to {}: `cat` the file it points to",
                crate::format_name(t)
            )));
        }
        _ => {
            return Err(Error::Invalid(format!(
                "{shown} is a special file (a device, FIFO or socket): it has no content to write"
            )));
        }
    };
    write_file(repo, data, &shown, out)?;
    Ok(data.size)
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

fn zeros(out: &mut dyn Write, mut n: u64) -> std::io::Result<()> {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// A file's bytes in order: its chunks fill its data regions, its holes are zeros.
fn write_file(repo: &Repository, data: &FileData, shown: &str, out: &mut dyn Write) -> Result<()> {
    let io = |e| Error::io("standard output", e);
    let damaged = || Error::Corrupt(format!("{shown}: damaged entry: its chunks do not add up to its size"));
    let regions = data.data_regions();
    let mut regions = regions.iter().copied();
    let mut pos = 0u64;
    // The region being filled: (start, end).
    let mut cur: Option<(u64, u64)> = None;
    for c in repo.chunk_list(&data.content)? {
        let b = repo.read_blob(BlobKind::Data, &BlobId(c.id.0))?;
        if b.len() != c.len as usize {
            return Err(Error::Corrupt(format!(
                "{shown}: chunk {} is not as long as the file's chunk list says",
                c.id
            )));
        }
        let mut b = &b[..];
        while !b.is_empty() {
            let (start, end) = match cur {
                Some(r) if pos < r.1 => r,
                _ => {
                    let (s, l) = regions.next().ok_or_else(damaged)?;
                    cur = Some((s, s + l));
                    (s, s + l)
                }
            };
            if pos < start {
                zeros(out, start - pos).map_err(io)?;
                pos = start;
            }
            let k = ((end - pos) as usize).min(b.len());
            out.write_all(&b[..k]).map_err(io)?;
            pos += k as u64;
            b = &b[k..];
        }
    }
    if regions.next().is_some() || cur.is_some_and(|r| pos < r.1) {
        return Err(damaged());
    }
    zeros(out, data.size - pos).map_err(io)?;
    out.flush().map_err(io)
}

/// Write `path` of the snapshot (default: all of it) to `out` as a tar stream. A directory's
/// members are named `./…` relative to it (as `tar -C DIR -c .` names them), so `tar -x`
/// recreates its contents where it runs; a file, symlink or special file gives an archive
/// of that one member, under its own name.
pub fn dump(
    repo: &Repository,
    snap: &Snapshot,
    path: Option<&str>,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<ExportResult> {
    let rel = clean(path.unwrap_or(""));
    let (plan, root): (Plan, Option<ItemMeta>) = if rel.is_empty() {
        (
            restore::plan_under(repo, &NodeKind::Dir(snap.tree), b"")?,
            Some(root_meta(snap)),
        )
    } else {
        let node = find(repo, snap, &rel, path.unwrap_or_default())?;
        if node.kind.is_dir() {
            (restore::plan_under(repo, &node.kind, &rel)?, Some(node.meta.into()))
        } else {
            (single(node)?, None)
        }
    };
    let mut res = ExportResult {
        path: "-".into(),
        files: plan.files,
        dirs: plan.dirs,
        bytes: plan.bytes,
        errors: plan_errors(&plan),
        ..Default::default()
    };
    if !res.errors.is_empty() {
        // Directory listings are lost: no archive that looks complete but is not.
        return Ok(res);
    }
    let top: &[u8] = if root.is_some() { b"." } else { b"" };
    let mut counting = Counted { inner: out, n: 0 };
    write_archive(repo, root.as_ref(), &plan, top, &mut counting, None, progress, &mut res)?;
    res.bytes_written = counting.n;
    Ok(res)
}

/// A plan of one entry that is not a directory, named by its own name.
fn single(node: Node) -> Result<Plan> {
    let Node { name, kind, meta } = node;
    let meta = ItemMeta::from(meta);
    let mut plan = Plan {
        files: 1,
        ..Default::default()
    };
    let item = match kind {
        NodeKind::File(data) | NodeKind::HardLink { data, .. } => {
            plan.bytes = data.size;
            Item::File { rel: name.into(), data, meta }
        }
        NodeKind::Symlink(target) => Item::Symlink {
            rel: name.into(),
            target,
            meta,
        },
        NodeKind::Fifo => Item::Special {
            rel: name.into(),
            kind: Special::Fifo,
            meta,
        },
        NodeKind::Socket => Item::Special {
            rel: name.into(),
            kind: Special::Socket,
            meta,
        },
        NodeKind::CharDevice(d) => Item::Special {
            rel: name.into(),
            kind: Special::Char(d),
            meta,
        },
        NodeKind::BlockDevice(d) => Item::Special {
            rel: name.into(),
            kind: Special::Block(d),
            meta,
        },
        NodeKind::Dir(_) | NodeKind::InlineDir(_) => {
            return Err(Error::Invalid("a directory is dumped with its contents".into()));
        }
    };
    plan.items.push(item);
    Ok(plan)
}

/// Counts the bytes written through it.
struct Counted<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
