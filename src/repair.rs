//! `repair snapshots`: rewrite snapshots whose data is partly lost, keeping everything
//! that is still readable. Files with a missing or damaged chunk are dropped; a directory
//! whose listing is lost becomes empty. The new snapshot carries the tag `repaired` and a
//! note naming what was dropped; the damaged original is then forgotten (unless asked not
//! to), so `check` is clean again. Plan, then execute: `--dry-run` reports and writes nothing.

use std::collections::HashMap;

use serde::Serialize;

use crate::backend::Dir;
use crate::blob::seal_blob;
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::format::{self, BlobKind, Content, IndexDelta, IndexPack, Node, NodeKind};
use crate::id::{BlobId, SnapshotId, TreeId};
use crate::pack::PackWriter;
use crate::repo::Repository;

/// Errors that mean the data is gone (as opposed to a passing I/O failure).
fn is_loss(e: &Error) -> bool {
    match e {
        Error::Corrupt(_) | Error::Hostile(_) | Error::Unsupported(_) => true,
        Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    /// Snapshots found damaged, with the paths dropped from each.
    pub repaired: Vec<RepairedSnapshot>,
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
pub struct RepairedSnapshot {
    pub old: String,
    pub new: Option<String>,
    pub dropped: Vec<String>,
}

struct Rewriter<'a> {
    repo: &'a Repository,
    /// Verified blob availability, so each blob is checked once.
    ok: HashMap<BlobId, bool>,
    dropped: Vec<String>,
    packer: PackWriter,
    dry_run: bool,
    /// Rewritten trees, by old id and whether it is a snapshot root: the new node kind and
    /// the paths (relative to that tree) dropped from it, so a
    /// subtree shared by several snapshots reports its losses for each of them.
    memo: HashMap<(TreeId, bool), (NodeKind, Vec<String>)>,
    written: std::collections::HashSet<TreeId>,
}

impl Rewriter<'_> {
    /// Can the blob be read? Loss (missing, damaged) is `Ok(false)`; an I/O error that may
    /// pass (a timeout, a full disk) aborts the repair rather than drop intact data.
    fn readable(&mut self, kind: BlobKind, id: BlobId) -> Result<bool> {
        if let Some(v) = self.ok.get(&id) {
            return Ok(*v);
        }
        // Reading it is the only honest test: present in the index is not enough.
        let v = match self.repo.read_blob(kind, &id) {
            Ok(_) => true,
            Err(e) if is_loss(&e) => false,
            Err(e) => return Err(e),
        };
        self.ok.insert(id, v);
        Ok(v)
    }

    /// Rewrite a directory stored in tree pages; returns its new node kind (`Dir` of the
    /// old id when nothing was lost). A snapshot's `root` stays in tree pages; any other
    /// directory is re-encoded like a backup encodes it, so it may become inline.
    fn tree(&mut self, id: &TreeId, rel: &[u8], root: bool) -> Result<NodeKind> {
        if let Some((k, lost)) = self.memo.get(&(*id, root)).cloned() {
            let prefix = crate::format_name(rel);
            for l in lost {
                self.dropped.push(format!("{prefix}{l}"));
            }
            return Ok(k);
        }
        let mark = self.dropped.len();
        let (nodes, lost_listing) = match self.repo.load_tree(id) {
            Ok(n) => (n, false),
            Err(e) if is_loss(&e) => {
                self.dropped
                    .push(format!("{}/ (directory listing lost)", crate::format_name(rel)));
                (Vec::new(), true)
            }
            Err(e) => return Err(e),
        };
        let (out, changed) = self.nodes(nodes, rel)?;
        // A hard link whose first name was dropped keeps its own copy of the content, so
        // it still restores (restore turns it into a regular file).
        let new = if changed || lost_listing {
            self.store_dir(out, !root)?
        } else {
            NodeKind::Dir(*id)
        };
        let prefix_len = crate::format_name(rel).len();
        let lost: Vec<String> = self.dropped[mark..]
            .iter()
            .map(|d| d[prefix_len..].to_string())
            .collect();
        self.memo.insert((*id, root), (new.clone(), lost));
        Ok(new)
    }

    /// Rewrite the nodes of one directory; `true` when anything in them was lost.
    fn nodes(&mut self, nodes: Vec<Node>, rel: &[u8]) -> Result<(Vec<Node>, bool)> {
        let mut changed = false;
        let mut out = Vec::with_capacity(nodes.len());
        for n in nodes {
            let mut p = rel.to_vec();
            p.push(b'/');
            p.extend_from_slice(&n.name);
            let Node { name, kind, meta } = n;
            let kind = match kind {
                NodeKind::Dir(t) => {
                    let nk = self.tree(&t, &p, false)?;
                    changed |= nk != NodeKind::Dir(t);
                    nk
                }
                NodeKind::InlineDir(b) => {
                    let (sub, lost_listing) = match format::decode_inline_dir(&b) {
                        Ok(n) => (n, false),
                        Err(e) if is_loss(&e) => {
                            self.dropped
                                .push(format!("{}/ (directory listing lost)", crate::format_name(&p)));
                            (Vec::new(), true)
                        }
                        Err(e) => return Err(e),
                    };
                    let (sub, c) = self.nodes(sub, &p)?;
                    if c || lost_listing {
                        changed = true;
                        self.store_dir(sub, true)?
                    } else {
                        NodeKind::InlineDir(b)
                    }
                }
                NodeKind::File(ref d) | NodeKind::HardLink { data: ref d, .. } => {
                    let mut intact = true;
                    if let Content::Pages(pages) = &d.content {
                        for p in pages {
                            intact &= self.readable(BlobKind::Tree, BlobId(p.0))?;
                        }
                    }
                    let chunks = if intact {
                        match self.repo.chunk_list(&d.content) {
                            Ok(c) => c,
                            Err(e) if is_loss(&e) => {
                                intact = false;
                                Vec::new()
                            }
                            Err(e) => return Err(e),
                        }
                    } else {
                        Vec::new()
                    };
                    if intact {
                        for c in chunks {
                            if !self.readable(BlobKind::Data, BlobId(c.id.0))? {
                                intact = false;
                                break;
                            }
                        }
                    }
                    if !intact {
                        self.dropped.push(crate::format_name(&p));
                        changed = true;
                        continue;
                    }
                    kind
                }
                k => k,
            };
            out.push(Node { name, kind, meta });
        }
        Ok((out, changed))
    }

    /// Store a rewritten directory the way a backup would (`format::encode_dir`).
    fn store_dir(&mut self, nodes: Vec<Node>, may_inline: bool) -> Result<NodeKind> {
        let keys = &self.repo.keys;
        match format::encode_dir(nodes, may_inline, |raw| TreeId(keys.meta_id(raw)))? {
            format::DirEncoding::Inline(b) => Ok(NodeKind::InlineDir(b)),
            format::DirEncoding::Pages(pages) => {
                let root = pages
                    .last()
                    .map(|p| p.0)
                    .expect("encode_tree_pages returns at least one page");
                for (id, raw) in pages {
                    self.store_page(id, raw)?;
                }
                Ok(NodeKind::Dir(root))
            }
        }
    }

    fn store_page(&mut self, id: TreeId, raw: Vec<u8>) -> Result<()> {
        if !self.dry_run && self.written.insert(id) && !self.repo.index.has_blob(&BlobId(id.0))? {
            let (mut scratch, mut sealed) = (Vec::new(), Vec::new());
            seal_blob(
                self.repo.repo_id(),
                &self.repo.cipher,
                BlobKind::Tree,
                &BlobId(id.0),
                &raw,
                Compression::default(),
                &mut scratch,
                &mut sealed,
            );
            self.packer.add(BlobKind::Tree, BlobId(id.0), raw.len() as u32, &sealed);
        }
        Ok(())
    }
}

/// Repair every damaged snapshot. `forget_old`: remove the damaged originals afterwards.
pub fn repair_snapshots(repo: &mut Repository, dry_run: bool, forget_old: bool) -> Result<RepairReport> {
    let mut report = RepairReport {
        dry_run,
        ..Default::default()
    };
    // What other clients did before our lock was taken must be visible now.
    repo.sync_index()?;
    let snaps = repo.snapshots()?;
    let mut rw = Rewriter {
        repo,
        ok: HashMap::new(),
        dropped: Vec::new(),
        packer: PackWriter::new(),
        dry_run,
        memo: HashMap::new(),
        written: Default::default(),
    };
    let mut rewritten: Vec<(SnapshotId, format::Snapshot, Vec<String>)> = Vec::new();
    for (id, s) in &snaps {
        rw.dropped.clear();
        let tree = match rw.tree(&s.tree, b"", true)? {
            NodeKind::Dir(t) => t,
            _ => {
                return Err(Error::Invalid(
                    "internal error: a snapshot root was stored inline".into(),
                ));
            }
        };
        if tree == s.tree && rw.dropped.is_empty() {
            continue;
        }
        let mut ns = s.clone();
        ns.tree = tree;
        if !ns.tags.iter().any(|t| t == "repaired") {
            ns.tags.push("repaired".into());
        }
        let what = format!("repaired from {}: {} path(s) lost", id.short(), rw.dropped.len());
        ns.note = Some(match &s.note {
            Some(n) => format!("{n} ({what})"),
            None => what,
        });
        rewritten.push((*id, ns, rw.dropped.clone()));
    }
    let packer = std::mem::take(&mut rw.packer);
    drop(rw);
    if dry_run {
        report.repaired = rewritten
            .into_iter()
            .map(|(old, _, dropped)| RepairedSnapshot {
                old: old.to_hex(),
                new: None,
                dropped,
            })
            .collect();
        return Ok(report);
    }
    // Write order: the pack of new trees, its index delta, then the snapshots, then forget.
    if !packer.is_empty() {
        let (pid, bytes, blobs) = packer.finish(repo.repo_id(), &repo.cipher);
        repo.backend.write_new(&Dir::Packs.path(&pid.to_hex()), &bytes)?;
        let delta = IndexDelta {
            packs: vec![IndexPack {
                id: pid,
                size: bytes.len() as u64,
                blobs,
            }],
            supersedes: vec![],
        };
        let did = repo.write_delta(&delta)?;
        repo.index.add_deltas(&[(did, delta)])?;
    }
    // Packs that are gone for good no longer belong in the index.
    repo.forget_missing_packs()?;
    for (old, ns, dropped) in rewritten {
        let new = repo.write_snapshot(&ns)?;
        if forget_old && new != old {
            repo.backend.delete(&Dir::Snapshots.path(&old.to_hex()))?;
            repo.index.remove_snapshots(&[old])?;
        }
        report.repaired.push(RepairedSnapshot {
            old: old.to_hex(),
            new: Some(new.to_hex()),
            dropped,
        });
    }
    Ok(report)
}
