//! `copy`: snapshots of one repository into another, deduplicating at the destination.
//!
//! Two repositories have different keys, so every id changes on the way: each chunk is
//! read from the source, named by the destination's keyed hash, and stored there unless it
//! is already; trees are rebuilt bottom-up with the new ids (unchanged subtrees are
//! translated once per run); the snapshot keeps its metadata and records where it came
//! from ([`Origin`]), so copying it again finds it and does nothing. Chunk boundaries stay
//! the source's: later backups into the destination cut with its own keys, so they share
//! only what is byte-identical between the two.
//!
//! Write order at the destination is a backup's: packs, their delta, then the snapshots.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::blob::seal_blob;
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::format::{
    self, BlobKind, CHUNK_LIST_INLINE_MAX, ChunkPage, ChunkRef, Content, DirEncoding, FileData, Node, NodeKind, Origin,
    Snapshot,
};
use crate::id::{BlobId, ChunkId, SnapshotId, TreeId};
use crate::packer::PackSink;
use crate::progress::Progress;
use crate::repo::Repository;

/// What `copy` did (or would do, in a dry run).
#[derive(Debug, Default, Serialize)]
pub struct CopyReport {
    /// (source snapshot, its copy at the destination).
    pub copied: Vec<(SnapshotId, Option<SnapshotId>)>,
    /// Source snapshots the destination already holds.
    pub skipped: Vec<SnapshotId>,
    /// Bytes of new packs at the destination.
    pub data_added: u64,
    pub dry_run: bool,
}

struct Translator<'a> {
    src: &'a Repository,
    dst: &'a Repository,
    sink: PackSink,
    /// Source chunk id → destination chunk id, for this run.
    chunks: HashMap<ChunkId, ChunkId>,
    /// Source directory → its translation, for this run.
    trees: HashMap<TreeId, NodeKind>,
    /// Destination blobs queued in this run.
    queued: HashSet<BlobId>,
    scratch: (Vec<u8>, Vec<u8>),
    progress: &'a dyn Progress,
}

impl Translator<'_> {
    /// Store a blob at the destination unless it is there or queued already.
    fn store(&mut self, kind: BlobKind, id: BlobId, raw: &[u8]) -> Result<()> {
        if !self.queued.insert(id) || self.dst.index.has_blob(&id)? {
            return Ok(());
        }
        let (scratch, sealed) = &mut self.scratch;
        sealed.clear();
        seal_blob(
            self.dst.repo_id(),
            &self.dst.cipher,
            kind,
            &id,
            raw,
            Compression::default(),
            scratch,
            sealed,
        );
        self.sink.add(kind, id, raw.len() as u32, sealed)
    }

    fn chunk(&mut self, c: &ChunkRef) -> Result<ChunkRef> {
        if let Some(d) = self.chunks.get(&c.id) {
            return Ok(ChunkRef { id: *d, len: c.len });
        }
        let raw = self.src.read_blob(BlobKind::Data, &BlobId(c.id.0))?;
        if raw.len() != c.len as usize {
            return Err(Error::corrupt(format!(
                "chunk {}: {} bytes where its file says {}",
                c.id,
                raw.len(),
                c.len
            )));
        }
        let id = ChunkId(self.dst.keys.chunk_id(&raw));
        self.store(BlobKind::Data, BlobId(id.0), &raw)?;
        self.chunks.insert(c.id, id);
        Ok(ChunkRef { id, len: c.len })
    }

    fn file(&mut self, d: &FileData) -> Result<FileData> {
        // Files are found as the trees are walked: the total grows with the walk.
        self.progress.add_total(1, d.size);
        let mut chunks = Vec::new();
        for c in self.src.chunk_list(&d.content)? {
            chunks.push(self.chunk(&c)?);
            self.progress.add_bytes(c.len as u64);
        }
        self.progress.add_bytes(d.holes.iter().map(|h| h.1).sum());
        self.progress.file_done();
        let content = if chunks.len() > CHUNK_LIST_INLINE_MAX {
            let mut pages = Vec::new();
            for page in format::chunk_list_pages(&chunks) {
                let raw = format::encode_versioned(1, &ChunkPage { chunks: page.to_vec() });
                let id = TreeId(self.dst.keys.meta_id(&raw));
                self.store(BlobKind::Tree, BlobId(id.0), &raw)?;
                pages.push(id);
            }
            Content::Pages(pages)
        } else {
            Content::Chunks(chunks)
        };
        Ok(FileData {
            size: d.size,
            holes: d.holes.clone(),
            content,
        })
    }

    fn nodes(&mut self, nodes: Vec<Node>) -> Result<Vec<Node>> {
        let mut out = Vec::with_capacity(nodes.len());
        for n in nodes {
            let kind = match &n.kind {
                NodeKind::Dir(t) => self.dir(t)?,
                NodeKind::InlineDir(b) => {
                    let sub = self.nodes(format::decode_inline_dir(b)?)?;
                    self.store_dir(sub, true)?
                }
                NodeKind::File(d) => NodeKind::File(self.file(d)?),
                NodeKind::HardLink { target, data } => NodeKind::HardLink {
                    target: target.clone(),
                    data: self.file(data)?,
                },
                k => k.clone(),
            };
            out.push(Node {
                name: n.name,
                kind,
                meta: n.meta,
            });
        }
        Ok(out)
    }

    fn dir(&mut self, t: &TreeId) -> Result<NodeKind> {
        if let Some(k) = self.trees.get(t) {
            return Ok(k.clone());
        }
        let nodes = self.src.load_tree(t)?;
        let out = self.nodes(nodes)?;
        let k = self.store_dir(out, true)?;
        self.trees.insert(*t, k.clone());
        Ok(k)
    }

    /// Encode a translated directory the way a backup does and store its pages.
    fn store_dir(&mut self, nodes: Vec<Node>, may_inline: bool) -> Result<NodeKind> {
        let keys = &self.dst.keys;
        match format::encode_dir(nodes, may_inline, |raw| TreeId(keys.meta_id(raw)))? {
            DirEncoding::Inline(b) => Ok(NodeKind::InlineDir(b)),
            DirEncoding::Pages(pages) => {
                let root = pages.last().map(|p| p.0).expect("at least one page");
                for (id, raw) in pages {
                    self.store(BlobKind::Tree, BlobId(id.0), &raw)?;
                }
                Ok(NodeKind::Dir(root))
            }
        }
    }

    /// A snapshot's root, always tree pages of its own.
    fn root(&mut self, t: &TreeId) -> Result<TreeId> {
        let nodes = self.src.load_tree(t)?;
        let out = self.nodes(nodes)?;
        match self.store_dir(out, false)? {
            NodeKind::Dir(id) => Ok(id),
            _ => Err(Error::Invalid(
                "internal error: a snapshot root was stored inline".into(),
            )),
        }
    }
}

/// Where a snapshot of `repo` was first taken.
fn origin_of(repo: &Repository, id: SnapshotId, s: &Snapshot) -> Origin {
    s.origin.unwrap_or(Origin {
        repo: *repo.repo_id(),
        snapshot: id,
    })
}

/// Copy `snaps` of `src` into `dst` (both synced, `dst` under `guard`, the lock its caller
/// holds: it is re-checked before the index delta and snapshots are written, as a backup
/// does, since blobs the destination already held were reused on the strength of it).
pub fn copy(
    src: &Repository,
    dst: &mut Repository,
    snaps: &[(SnapshotId, Snapshot)],
    dry_run: bool,
    guard: Option<&crate::lock::LockGuard>,
) -> Result<CopyReport> {
    copy_with_progress(src, dst, snaps, dry_run, guard, &crate::progress::NoProgress)
}

/// [`copy`], reporting to `progress` the files of the snapshots as they are translated
/// (the total grows as their trees are walked) and their bytes chunk by chunk.
pub fn copy_with_progress(
    src: &Repository,
    dst: &mut Repository,
    snaps: &[(SnapshotId, Snapshot)],
    dry_run: bool,
    guard: Option<&crate::lock::LockGuard>,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let mut report = CopyReport {
        dry_run,
        ..Default::default()
    };
    // What the destination holds, by where it was first taken.
    let mut present: HashMap<Origin, SnapshotId> = dst
        .snapshots()?
        .into_iter()
        .map(|(id, s)| (origin_of(dst, id, &s), id))
        .collect();
    let mut todo = Vec::new();
    for (id, s) in snaps {
        if present.contains_key(&origin_of(src, *id, s)) {
            report.skipped.push(*id);
        } else {
            todo.push((*id, s));
        }
    }
    if todo.is_empty() {
        return Ok(report);
    }
    let mut t = Translator {
        src,
        dst,
        sink: PackSink::with_parts(
            dst.backend.clone(),
            *dst.repo_id(),
            dst.cipher.clone(),
            dst.config.pack_target as usize,
            dry_run,
        ),
        chunks: HashMap::new(),
        trees: HashMap::new(),
        queued: HashSet::new(),
        scratch: (Vec::new(), Vec::new()),
        progress,
    };
    progress.scanning(true);
    // Oldest first, so a parent copied in this run is known when its child is.
    todo.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    let mut made = Vec::new();
    // The destination's chain (format-spec §10): each copy sees the heads there, which
    // after it are the copy alone.
    let mut heads = t.dst.heads()?;
    for (id, s) in todo {
        let tree = t
            .root(&s.tree)
            .map_err(|e| Error::Invalid(format!("snapshot {}: {e}", id.short())))?;
        let mut ns = s.clone();
        ns.tree = tree;
        let origin = origin_of(src, id, s);
        ns.origin = Some(origin);
        // The parent's copy, when the destination holds one (copied before or just now).
        ns.parent = s
            .parent
            .and_then(|p| src.index.snapshot_body(&p).ok().flatten().map(|b| (p, b)))
            .and_then(|(p, b)| {
                format::decode_snapshot(&b, "parent")
                    .ok()
                    .map(|ps| origin_of(src, p, &ps))
            })
            .and_then(|o| present.get(&o).copied());
        ns.seen = std::mem::take(&mut heads);
        // Its id at the destination is known before it is written (the keyed hash of it).
        let new = SnapshotId(t.dst.keys.meta_id(&format::encode_snapshot(&ns)));
        heads = vec![new];
        present.insert(origin, new);
        made.push((id, ns));
    }
    progress.scanning(false);
    let Translator { sink, .. } = t;
    let (packs, written) = sink.finish()?;
    report.data_added = written;
    if dry_run {
        report.copied = made.into_iter().map(|(id, _)| (id, None)).collect();
        return Ok(report);
    }
    if guard.is_some_and(|g| !g.still_valid()) {
        return Err(Error::Invalid(format!(
            "this copy's lock on {} went stale (suspended for 30 minutes?): a prune there may have removed \
             data it reuses, so no snapshot was written; run the copy again",
            dst.backend.location()
        )));
    }
    dst.index_packs(packs)?;
    for (id, ns) in made {
        let new = dst.write_snapshot(&ns)?;
        report.copied.push((id, Some(new)));
    }
    Ok(report)
}
