//! The repair commands. Plan, then execute: `--dry-run` reports and writes nothing.
//!
//! `repair index` rebuilds the index cache and makes the repository's index honest:
//! packs that are gone leave it; packs known damaged are read, their intact blobs copied
//! to new packs and the damaged pack left out; packs no index lists (a lost delta, a killed
//! backup) are read, verified and indexed; unreadable deltas and condemned records are
//! removed once nothing they could name is left unindexed.
//!
//! `repair snapshots` rewrites snapshots whose data is partly lost, keeping everything
//! that is still readable. It first recovers unindexed packs (data that is present is
//! never taken for lost). Files with a missing or damaged chunk are dropped; a directory
//! whose listing is lost becomes empty. The new snapshot carries the tag `repaired` and a
//! note naming what was dropped; the damaged original is kept unless `--forget-originals`.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::backend::Dir;
use crate::blob::{open_blob_in_place, seal_blob};
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::format::{self, BlobKind, Content, IndexPack, Node, NodeKind};
use crate::id::{BlobId, PackId, SnapshotId, TreeId};
use crate::index::Index;
use crate::packer::PackSink;
use crate::repo::{Repository, now_unix_ns};

/// What reading a pack in full found.
#[derive(Debug)]
pub enum PackState {
    /// Its bytes hash to its name and every blob its header lists opens: usable as it is.
    Intact(IndexPack),
    /// Some blobs open, others do not (or the pack's bytes do not match its name): the
    /// intact ones were copied to new packs where no other intact copy was indexed.
    Salvaged { good: usize, bad: usize, copied: usize },
    /// Nothing can be taken from it (unreadable, no readable header).
    Unreadable(String),
}

/// The outcome of [`recover_packs`].
#[derive(Debug, Default)]
pub struct Recovered {
    /// Packs indexed as they are.
    pub indexed: Vec<PackId>,
    /// Per pack read: what was found.
    pub states: Vec<(PackId, PackState)>,
    /// Blob ids that are readable after the recovery (from intact packs or salvaged).
    pub available: HashSet<BlobId>,
}

/// Is there an indexed copy of `id`, not known damaged and not condemned, outside `packs`?
fn intact_copy_outside(index: &Index, id: &BlobId, packs: &[(PackId, u64)]) -> Result<bool> {
    Ok(index
        .copies(id)?
        .iter()
        .any(|(l, damaged, condemned)| !damaged && !condemned && !packs.iter().any(|p| p.0 == l.pack)))
}

/// Read `packs` in full and make what they hold usable: an intact pack is indexed as it
/// is (when `index_intact`), the intact blobs of a damaged one are copied into new packs
/// (unless another intact copy is indexed). With `only_needed`, only packs holding a blob of
/// the index's live set that no index lists are read (prune's re-indexing). `dry_run`
/// reads and verifies but writes nothing.
pub fn recover_packs(
    repo: &mut Repository,
    packs: &[(PackId, u64)],
    only_needed: bool,
    dry_run: bool,
) -> Result<Recovered> {
    recover(repo, packs, only_needed, dry_run, true)
}

fn recover(
    repo: &mut Repository,
    packs: &[(PackId, u64)],
    only_needed: bool,
    dry_run: bool,
    index_intact: bool,
) -> Result<Recovered> {
    let mut out = Recovered::default();
    let mut intact = Vec::new();
    let mut sink = PackSink::with_parts(
        repo.backend.clone(),
        *repo.repo_id(),
        repo.cipher.clone(),
        repo.config.pack_target as usize,
        dry_run,
    );
    let (mut buf, mut plain) = (Vec::new(), Vec::new());
    for (id, size) in packs {
        let path = Dir::Packs.path(&id.to_hex());
        if only_needed {
            let Ok(entries) = crate::check::read_header(repo, &path, *size) else {
                continue;
            };
            let mut needed = false;
            for e in &entries {
                if repo.index.is_live(&e.id)? && !repo.index.exists_any(&e.id)? {
                    needed = true;
                    break;
                }
            }
            if !needed {
                continue;
            }
        }
        // An indexed pack is judged by what the index says it holds (its header may be
        // what is damaged); any other pack by its header.
        let from_index: Option<Vec<crate::format::PackEntry>> = if index_intact {
            None
        } else {
            Some(
                repo.index
                    .pack_blobs(id)?
                    .into_iter()
                    .map(|(b, l)| crate::format::PackEntry {
                        kind: l.kind,
                        id: b,
                        offset: l.offset,
                        length: l.length,
                        raw_length: l.raw_length,
                    })
                    .collect(),
            )
        };
        if let Err(e) = repo.backend.read_into(&path, &mut buf) {
            match (&from_index, e.is_damage()) {
                // Gone for good (a directory in its place, a failing disk): nothing to copy.
                (Some(entries), true) => out.states.push((
                    *id,
                    PackState::Salvaged {
                        good: 0,
                        bad: entries.len(),
                        copied: 0,
                    },
                )),
                _ => out.states.push((*id, PackState::Unreadable(e.to_string()))),
            }
            continue;
        }
        let named = blake3::hash(&buf).as_bytes() == &id.0;
        let entries = match from_index {
            Some(e) => e,
            None => match crate::pack::read_all(repo.repo_id(), &repo.cipher, &buf) {
                Ok(e) => e,
                Err(e) => {
                    out.states
                        .push((*id, PackState::Unreadable(format!("header unreadable: {e}"))));
                    continue;
                }
            },
        };
        let mut good = Vec::new();
        let mut bad = 0;
        for e in &entries {
            let Some(range) = buf.get(e.offset as usize..(e.offset + e.length as u64) as usize) else {
                bad += 1;
                continue;
            };
            let mut sealed = range.to_vec();
            match open_blob_in_place(
                repo.repo_id(),
                &repo.keys,
                &repo.cipher,
                e.kind,
                &e.id,
                &mut sealed,
                &mut plain,
            ) {
                Ok(()) => good.push(*e),
                Err(_) => bad += 1,
            }
        }
        out.available.extend(good.iter().map(|e| e.id));
        if named && bad == 0 {
            intact.push(IndexPack {
                id: *id,
                size: buf.len() as u64,
                blobs: entries,
            });
            out.indexed.push(*id);
            continue;
        }
        let mut copied = 0;
        for e in &good {
            // Copies in the packs being read do not count: a damaged pack leaves the index.
            if intact_copy_outside(&repo.index, &e.id, packs)? {
                continue;
            }
            let sealed = &buf[e.offset as usize..(e.offset + e.length as u64) as usize];
            sink.add(e.kind, e.id, e.raw_length, sealed)?;
            out.available.insert(e.id);
            copied += 1;
        }
        out.states.push((
            *id,
            PackState::Salvaged {
                good: good.len(),
                bad,
                copied,
            },
        ));
    }
    let (salvaged, _) = sink.finish()?;
    if !dry_run {
        let mut new = salvaged;
        if index_intact {
            new.extend(intact.iter().cloned());
        }
        repo.index_packs(new)?;
    }
    out.states
        .extend(intact.into_iter().map(|p| (p.id, PackState::Intact(p))));
    Ok(out)
}

/// Errors that mean the data is gone, as opposed to a failure that may pass (a timeout, a
/// refused connection, a full disk), which aborts the repair rather than drop intact data.
/// An I/O error that persisted through `Repository::read_blob`'s retry (EIO from a failing
/// disk, a pack replaced by a directory) counts as damage of that pack.
fn is_loss(e: &Error) -> bool {
    use std::io::ErrorKind::*;
    match e {
        Error::Corrupt(_) | Error::Hostile(_) | Error::Unsupported(_) => true,
        Error::Storage { .. } => e.is_not_found(),
        Error::Io { source, .. } => !matches!(
            source.kind(),
            TimedOut
                | Interrupted
                | WouldBlock
                | ConnectionRefused
                | ConnectionReset
                | ConnectionAborted
                | NotConnected
                | BrokenPipe
                | StorageFull
                | QuotaExceeded
                | OutOfMemory
                | PermissionDenied
        ),
        _ => false,
    }
}

#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    /// Snapshots found damaged, with the paths dropped from each.
    pub repaired: Vec<RepairedSnapshot>,
    /// Packs no index listed, indexed (or, in a dry run, found readable) first.
    pub reindexed_packs: Vec<String>,
    /// Snapshot objects that cannot be read at all.
    pub unreadable: Vec<String>,
    /// Of those, the ones removed (`--forget-unreadable`).
    pub removed_unreadable: Vec<String>,
    /// The damaged originals stay beside their repaired copies.
    pub originals_kept: bool,
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
    sink: PackSink,
    /// Blobs that a pack no index lists holds intact (a dry run cannot index them first).
    recoverable: HashSet<BlobId>,
    dry_run: bool,
    /// Rewritten trees, by old id and whether it is a snapshot root: the new node kind and
    /// the paths (relative to that tree) dropped from it, so a
    /// subtree shared by several snapshots reports its losses for each of them.
    memo: HashMap<(TreeId, bool), (NodeKind, Vec<String>)>,
    written: std::collections::HashSet<TreeId>,
}

impl<'a> Rewriter<'a> {
    /// Can the blob be read? Loss (missing, damaged) is `Ok(false)`; an I/O error that may
    /// pass (a timeout, a full disk) aborts the repair rather than drop intact data.
    fn readable(&mut self, kind: BlobKind, id: BlobId) -> Result<bool> {
        if let Some(v) = self.ok.get(&id) {
            return Ok(*v);
        }
        // Reading it is the only honest test: present in the index is not enough.
        let v = match self.repo.read_blob(kind, &id) {
            Ok(_) => true,
            Err(_) if self.recoverable.contains(&id) => true,
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
            self.sink.add(BlobKind::Tree, BlobId(id.0), raw.len() as u32, &sealed)?;
        }
        Ok(())
    }
}

/// What `repair snapshots` is asked to do.
#[derive(Clone, Copy, Debug, Default)]
pub struct RepairSnapshotsOptions {
    pub dry_run: bool,
    /// Remove the damaged originals once their repaired copies are written.
    pub forget_originals: bool,
    /// Remove snapshot objects that cannot be read at all (they fail to authenticate or
    /// decode; nothing in them can be restored).
    pub forget_unreadable: bool,
}

/// Repair every damaged snapshot.
pub fn repair_snapshots(repo: &mut Repository, opts: RepairSnapshotsOptions) -> Result<RepairReport> {
    let dry_run = opts.dry_run;
    let mut report = RepairReport {
        dry_run,
        originals_kept: !opts.forget_originals,
        ..Default::default()
    };
    // What other clients did before our lock was taken must be visible now.
    repo.sync_index()?;
    // Data that is present is never taken for lost: packs no index lists (a lost delta)
    // are read and indexed first, or, in a dry run, their intact blobs count as readable.
    let indexed: HashSet<PackId> = repo.index.packs()?.into_iter().map(|p| p.0).collect();
    let mut unindexed: Vec<(PackId, u64)> = repo
        .backend
        .list(Dir::Packs)?
        .into_iter()
        .filter_map(|(n, size)| crate::repo::object_name(&n).map(|id| (PackId(id), size)))
        .filter(|(id, _)| !indexed.contains(id))
        .collect();
    unindexed.sort();
    let recovered = recover_packs(repo, &unindexed, false, dry_run)?;
    report.reindexed_packs = recovered.indexed.iter().map(|p| p.to_hex()).collect();
    for d in repo.damaged.iter().filter(|d| d.what == "snapshot") {
        report.unreadable.push(d.to_string());
    }
    // A dry run judges against a copy of the cache that also indexes the packs it would
    // index, so their trees and chunks count as present, as they will after a real run.
    let mut real_index = None;
    let tmp = tempfile::tempdir().map_err(|e| Error::io("temporary directory", e))?;
    if dry_run {
        let intact: Vec<IndexPack> = recovered
            .states
            .iter()
            .filter_map(|(_, s)| match s {
                PackState::Intact(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        if !intact.is_empty() {
            let copy = repo.index.copy_to(&tmp.path().join("index.db"))?;
            copy.add_deltas(&[(
                crate::id::ObjectId([0; 32]),
                crate::format::IndexDelta {
                    packs: intact,
                    supersedes: Vec::new(),
                    checkpoint: false,
                },
            )])?;
            real_index = Some(std::mem::replace(&mut repo.index, copy));
        }
    }
    let res = rewrite_snapshots(repo, opts, &mut report, recovered.available);
    if let Some(i) = real_index {
        repo.index = i;
    }
    res?;
    Ok(report)
}

fn rewrite_snapshots(
    repo: &mut Repository,
    opts: RepairSnapshotsOptions,
    report: &mut RepairReport,
    available: HashSet<BlobId>,
) -> Result<()> {
    let dry_run = opts.dry_run;
    let snaps = repo.snapshots()?;
    let mut rw = Rewriter {
        repo,
        ok: HashMap::new(),
        dropped: Vec::new(),
        sink: PackSink::with_parts(
            repo.backend.clone(),
            *repo.repo_id(),
            repo.cipher.clone(),
            repo.config.pack_target as usize,
            dry_run,
        ),
        recoverable: if dry_run { available } else { HashSet::new() },
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
    let sink = rw.sink;
    let (tree_packs, _) = sink.finish()?;
    if dry_run {
        report.repaired = rewritten
            .into_iter()
            .map(|(old, _, dropped)| RepairedSnapshot {
                old: old.to_hex(),
                new: None,
                dropped,
            })
            .collect();
        return Ok(());
    }
    // Write order: the packs of new trees (durable already), their index delta, then the
    // snapshots, then what is forgotten.
    repo.index_packs(tree_packs)?;
    // Packs that are gone for good no longer belong in the index.
    repo.forget_missing_packs()?;
    let originals: std::collections::HashMap<SnapshotId, format::Snapshot> = snaps.into_iter().collect();
    for (old, ns, dropped) in rewritten {
        let new = repo.write_snapshot(&ns)?;
        if opts.forget_originals && new != old {
            repo.forget_snapshots(&[(old, originals.get(&old))], "repair")?;
        }
        report.repaired.push(RepairedSnapshot {
            old: old.to_hex(),
            new: Some(new.to_hex()),
            dropped,
        });
    }
    if opts.forget_unreadable {
        for d in repo.damaged.clone().iter().filter(|d| d.what == "snapshot") {
            if d.corrupt {
                repo.forget_snapshots(&[(SnapshotId(d.id.0), None)], "unreadable")?;
                report.removed_unreadable.push(d.id.to_hex());
            }
        }
    }
    Ok(())
}

/// What `repair index` found and did (or would do, in a dry run).
#[derive(Debug, Default, Serialize)]
pub struct RepairIndexReport {
    /// Indexed packs missing from the repository: dropped from the index.
    pub missing_packs: Vec<String>,
    /// Packs known damaged: their intact blobs copied to new packs, the pack dropped from
    /// the index. `"pack: N intact, M damaged, K copied"`.
    pub salvaged_packs: Vec<String>,
    /// Packs known damaged that read back intact: kept, their marks cleared.
    pub intact_packs: Vec<String>,
    /// Packs no index listed, indexed from their verified contents.
    pub reindexed_packs: Vec<String>,
    /// Packs that could not be read at all (left alone).
    pub unreadable_packs: Vec<String>,
    /// Unreadable index deltas and condemned records removed (their packs are indexed by
    /// the delta this repair wrote).
    pub removed_objects: Vec<String>,
    /// Objects left alone: unreadable for a reason removal would not fix (a newer format,
    /// a read that failed), and unreadable snapshots (`repair snapshots`).
    pub kept_unreadable: Vec<String>,
    /// Packs and blobs in the index afterwards.
    pub packs: u64,
    pub blobs: u64,
    pub dry_run: bool,
}

/// `repair index`: see the module documentation.
pub fn repair_index(repo: &mut Repository, dry_run: bool) -> Result<RepairIndexReport> {
    let mut report = RepairIndexReport {
        dry_run,
        ..Default::default()
    };
    // What this cache knows to be damaged survives the rebuild: nothing else remembers it.
    let marks = repo.index.damage()?;
    let verify_before = repo.index.verify_before()?;
    repo.rebuild_index()?;
    let now = now_unix_ns();
    for (p, b, why) in &marks {
        repo.index.note_damage(p, b.as_ref(), why, now)?;
    }
    repo.index
        .set_verify_before(verify_before.or(if marks.is_empty() { None } else { Some(now) }))?;
    let listing: HashMap<PackId, u64> = repo
        .backend
        .list(Dir::Packs)?
        .into_iter()
        .filter_map(|(n, s)| crate::repo::object_name(&n).map(|id| (PackId(id), s)))
        .collect();
    let indexed: Vec<(PackId, u64)> = repo.index.packs()?;
    let missing: HashSet<PackId> = indexed
        .iter()
        .map(|p| p.0)
        .filter(|p| !listing.contains_key(p))
        .collect();
    let mut missing_sorted: Vec<PackId> = missing.iter().copied().collect();
    missing_sorted.sort();
    report.missing_packs = missing_sorted.iter().map(|p| p.to_hex()).collect();
    let marked: HashSet<PackId> = marks.iter().map(|m| m.0).collect();
    let mut damaged: Vec<(PackId, u64)> = indexed
        .iter()
        .filter(|(p, _)| marked.contains(p) && listing.contains_key(p))
        .copied()
        .collect();
    damaged.sort();
    let indexed_set: HashSet<PackId> = indexed.iter().map(|p| p.0).collect();
    let mut unindexed: Vec<(PackId, u64)> = listing
        .iter()
        .filter(|(p, _)| !indexed_set.contains(p))
        .map(|(p, s)| (*p, *s))
        .collect();
    unindexed.sort();

    // 1. Lost packs leave the index, and so do damaged packs once their intact blobs are
    //    copied (one replacing delta for both).
    let salvage = recover(repo, &damaged, false, dry_run, false)?;
    let mut drop: HashSet<PackId> = missing.clone();
    for (p, state) in &salvage.states {
        match state {
            PackState::Intact(_) => {
                report.intact_packs.push(p.to_hex());
                if !dry_run {
                    repo.index.clear_damage(p)?;
                }
            }
            PackState::Salvaged { good, bad, copied } => {
                report
                    .salvaged_packs
                    .push(format!("{p}: {good} intact, {bad} damaged, {copied} copied"));
                drop.insert(*p);
            }
            PackState::Unreadable(e) => report.unreadable_packs.push(format!("{p}: {e}")),
        }
    }
    if !dry_run && !drop.is_empty() {
        // Their marks stay: the salvaged packs are still in `packs/` (prune removes them as
        // unindexed), and `check` must not take what they hold for recoverable data.
        repo.drop_packs_from_index(&drop)?;
        // Snapshots may reference what left the index: backups check parents' contents
        // until a clean `check` (and store what is missing again).
        repo.index.set_verify_before(Some(now_unix_ns()))?;
    }
    // 2. Packs no index lists: indexed when intact, salvaged otherwise.
    let recovered = recover(repo, &unindexed, false, dry_run, true)?;
    for (p, state) in &recovered.states {
        match state {
            PackState::Intact(_) => report.reindexed_packs.push(p.to_hex()),
            PackState::Salvaged { good, bad, copied } => report
                .salvaged_packs
                .push(format!("{p}: {good} intact, {bad} damaged, {copied} copied")),
            PackState::Unreadable(e) => report.unreadable_packs.push(format!("{p}: {e}")),
        }
    }
    // 3. Unreadable deltas and condemned records: every present pack is indexed now, so a
    //    corrupt delta names nothing that is not indexed elsewhere, and a corrupt record
    //    only condemns (its packs become ordinary; a later prune judges them again).
    for d in repo.damaged.clone() {
        let dir = match d.what {
            "index delta" => Dir::Index,
            "condemned record" => Dir::Condemned,
            _ => {
                report.kept_unreadable.push(d.to_string());
                continue;
            }
        };
        if !d.corrupt || !report.unreadable_packs.is_empty() {
            report.kept_unreadable.push(d.to_string());
            continue;
        }
        if !dry_run {
            repo.backend.delete(&dir.path(&d.id.to_hex()))?;
        }
        report.removed_objects.push(d.to_string());
    }
    if !dry_run && !report.removed_objects.is_empty() {
        repo.sync_index()?;
    }
    report.packs = repo.index.packs()?.len() as u64;
    report.blobs = repo.index.totals()?.0;
    Ok(report)
}
