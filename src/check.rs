//! `check`: reports damage, never repairs it.
//!
//! Structure: every pack in the index exists with its size; its header agrees with the
//! index; every snapshot's trees load and authenticate; every chunk is indexed.
//! `--read-data`: every pack is read once, its name re-hashed, and every blob opened
//! (decrypted, decompressed, id re-hashed), packs in parallel.
//! Packs that nothing indexes (left by a killed backup) are reported, not damage.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::Dir;
use crate::blob::open_blob_in_place;
use crate::error::Result;
use crate::format::{Content, Node, NodeKind};
use crate::id::{BlobId, PackId, SnapshotId, TreeId};
use crate::pack;
use crate::per_thread::PerThread;
use crate::repo::Repository;

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub snapshots: u64,
    pub packs: u64,
    pub trees: u64,
    pub blobs_read: u64,
    /// Damage: each line names what is wrong and where.
    pub errors: Vec<String>,
    /// Snapshots with missing or damaged data.
    pub damaged_snapshots: Vec<String>,
    /// Packs present in the repository that no index delta lists.
    pub unreferenced_packs: Vec<String>,
    /// Indexed packs no snapshot uses (the next prune collects them).
    pub unused_packs: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Which packs `--read-data` reads: all, part N of M, or a random percentage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Subset {
    All,
    Part(u32, u32),
    Percent(f64),
}

impl std::str::FromStr for Subset {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Subset, String> {
        let bad = || format!("{s:?}: use N/M (part N of M, 1 <= N <= M) or P% (0 < P <= 100)");
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            return if p > 0.0 && p <= 100.0 {
                Ok(Subset::Percent(p))
            } else {
                Err(bad())
            };
        }
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || m == 0 || n > m {
            return Err(bad());
        }
        Ok(Subset::Part(n, m))
    }
}

impl Subset {
    /// Is the `i`-th pack (in id order) read?
    fn selects(&self, i: usize, id: &PackId) -> bool {
        match *self {
            Subset::All => true,
            Subset::Part(n, m) => i % m as usize == (n - 1) as usize,
            Subset::Percent(p) => {
                // Random per run, so repeated runs cover the repository.
                let r = u64::from_le_bytes(
                    blake3::keyed_hash(&SEED.with(|s| *s), &id.0).as_bytes()[..8]
                        .try_into()
                        .expect("8 bytes"),
                );
                (r as f64 / u64::MAX as f64) * 100.0 < p
            }
        }
    }
}

thread_local! {
    static SEED: [u8; 32] = crate::crypto::random_bytes();
}

pub fn check(repo: &Repository, read_data: bool) -> Result<CheckReport> {
    check_with(repo, if read_data { Some(Subset::All) } else { None })
}

pub fn check_with(repo: &Repository, read_data: Option<Subset>) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    let listed: HashMap<PackId, u64> = repo
        .backend
        .list(Dir::Packs)?
        .into_iter()
        .filter_map(|(n, s)| crate::repo::object_name(&n).map(|id| (PackId(id), s)))
        .collect();
    let indexed = repo.index.packs()?;
    let indexed_set: HashSet<PackId> = indexed.iter().map(|p| p.0).collect();
    for id in listed.keys() {
        if !indexed_set.contains(id) {
            r.unreferenced_packs.push(id.to_hex());
        }
    }
    r.unreferenced_packs.sort();
    r.packs = indexed.len() as u64;

    // Packs: presence, size, header agreement, and with read_data every byte.
    for d in &repo.damaged {
        r.errors.push(format!("unreadable {d}"));
    }
    for (name, _) in repo.backend.list(Dir::Keys)? {
        let res = repo
            .backend
            .read(&Dir::Keys.path(&name))
            .and_then(|b| crate::format::decode_key_file(&b));
        if let Err(e) = res {
            r.errors.push(format!("unreadable key file {name}: {e}"));
        }
    }
    let mut order: Vec<usize> = (0..indexed.len()).collect();
    order.sort_by_key(|i| indexed[*i].0);
    let mut read = vec![false; indexed.len()];
    if let Some(subset) = read_data {
        for (rank, i) in order.iter().enumerate() {
            read[*i] = subset.selects(rank, &indexed[*i].0);
        }
    }
    // Packs are verified (in parallel) while this thread walks the snapshots: on a
    // healthy repository the two never meet. Only when a pack turns out damaged is the
    // walk repeated, knowing the bad blobs, so every file that used one is named.
    let snaps = repo.snapshots()?;
    r.snapshots = snaps.len() as u64;
    let _txn = repo.index.read_txn()?;
    let walk_all = |bad: &HashSet<BlobId>, r: &mut CheckReport| -> Result<HashSet<TreeId>> {
        let mut seen_trees: HashSet<TreeId> = HashSet::new();
        // Chunks already verified live in a temporary SQLite table: memory stays bounded
        // however many chunks the repository holds.
        repo.index.live_reset()?;
        for (sid, snap) in &snaps {
            let before = r.errors.len();
            walk(repo, sid, &snap.tree, b"", bad, &mut seen_trees, r);
            if r.errors.len() > before {
                r.damaged_snapshots.push(sid.to_hex());
            }
        }
        Ok(seen_trees)
    };
    // The first walk assumes a healthy repository: it only puts every reachable chunk into
    // the live set, in batches, and one query then asks whether any is not indexed.
    let fast_walk = || -> Result<Option<HashSet<TreeId>>> {
        let mut seen_trees: HashSet<TreeId> = HashSet::new();
        repo.index.live_reset()?;
        let mut batch = Vec::new();
        for (_, snap) in &snaps {
            if !walk_fast(repo, &snap.tree, &mut seen_trees, &mut batch)? {
                return Ok(None);
            }
        }
        batch.sort_unstable();
        repo.index.live_insert(&batch)?;
        Ok(if repo.index.live_has_unindexed()? {
            None
        } else {
            Some(seen_trees)
        })
    };
    // One pack buffer and one plaintext buffer per worker, reused: no fresh pages to fault
    // in per pack.
    let packs_read = PerThread::new(Vec::new);
    let plains = PerThread::new(Vec::new);
    // The walk runs on a thread of its own, outside the pool: it mostly waits for tree
    // reads, and both pool threads keep verifying packs meanwhile.
    let (results, first_walk) = std::thread::scope(|s| {
        let walker = s.spawn(fast_walk);
        let results: Vec<PackCheck> = indexed
            .par_iter()
            .zip(read.par_iter())
            .map(|((id, size), rd)| {
                packs_read.with(|buf| check_pack(repo, id, *size, listed.get(id).copied(), *rd, buf, &plains))
            })
            .collect();
        (results, walker.join())
    });
    let first_walk = first_walk.unwrap_or_else(|p| std::panic::resume_unwind(p));
    let mut bad_blobs: HashSet<BlobId> = HashSet::new();
    for pc in &results {
        r.errors.extend(pc.errors.iter().cloned());
        bad_blobs.extend(pc.bad.iter().copied());
        r.blobs_read += pc.read;
    }
    // Damage anywhere (a bad pack, an unreadable tree, a chunk not indexed): walk again,
    // naming every file and snapshot affected.
    let seen_trees = match first_walk? {
        Some(t) if bad_blobs.is_empty() => t,
        _ => walk_all(&bad_blobs, &mut r)?,
    };
    r.trees = seen_trees.len() as u64;
    // Indexed packs none of whose blobs any snapshot uses: left by a backup killed after
    // writing its index delta but before its snapshot. Reported, not damage. (Trees join
    // the chunks in the live table so one query answers it.)
    let trees: Vec<BlobId> = seen_trees.iter().map(|t| BlobId(t.0)).collect();
    repo.index.live_insert(&trees)?;
    let missing: HashSet<PackId> = indexed
        .iter()
        .filter(|(id, _)| !listed.contains_key(id))
        .map(|p| p.0)
        .collect();
    for p in repo.index.packs_without_live()? {
        if !missing.contains(&p) {
            r.unused_packs.push(p.to_hex());
        }
    }
    r.unreferenced_packs.sort();
    Ok(r)
}

struct PackCheck {
    errors: Vec<String>,
    /// Blobs found damaged or missing.
    bad: Vec<BlobId>,
    read: u64,
}

fn check_pack(
    repo: &Repository,
    id: &PackId,
    size: u64,
    listed: Option<u64>,
    read_data: bool,
    buf: &mut Vec<u8>,
    plains: &PerThread<Vec<u8>>,
) -> PackCheck {
    let mut errs = Vec::new();
    let mut bad = Vec::new();
    let mut n = 0;
    let indexed = match repo.index.pack_blobs(id) {
        Ok(b) => b,
        Err(e) => {
            return PackCheck {
                errors: vec![format!("pack {id}: index: {e}")],
                bad,
                read: 0,
            };
        }
    };
    let all_bad = |bad: &mut Vec<BlobId>| bad.extend(indexed.iter().map(|(b, _)| *b));
    match listed {
        None => {
            errs.push(format!(
                "pack {id}: missing from the repository ({} blobs lost)",
                indexed.len()
            ));
            all_bad(&mut bad);
            return PackCheck {
                errors: errs,
                bad,
                read: 0,
            };
        }
        Some(s) if s != size => {
            errs.push(format!("pack {id}: size {s}, index says {size}"));
        }
        _ => {}
    }
    let path = Dir::Packs.path(&id.to_hex());
    let header = if read_data {
        match repo.backend.read_into(&path, buf) {
            Ok(()) => {
                let bytes = &mut *buf;
                if blake3::hash(bytes).as_bytes() != &id.0 {
                    errs.push(format!(
                        "pack {id}: content does not match its name (damaged or swapped)"
                    ));
                }
                let entries = pack::read_all(repo.repo_id(), &repo.cipher, bytes);
                if let Ok(entries) = &entries {
                    // Each blob is decrypted where it lies in the pack buffer (the pack id was
                    // hashed above): the header lists them ascending and disjoint.
                    let mut parts: Vec<(&crate::format::PackEntry, &mut [u8])> = Vec::with_capacity(entries.len());
                    let mut rest: &mut [u8] = bytes;
                    let mut pos = 0usize;
                    for e in entries {
                        let (_, tail) = std::mem::take(&mut rest).split_at_mut(e.offset as usize - pos);
                        let (blob, tail) = tail.split_at_mut(e.length as usize);
                        parts.push((e, blob));
                        rest = tail;
                        pos = e.offset as usize + e.length as usize;
                    }
                    // Blobs in parallel too, so the last large pack does not leave a core idle.
                    let failed: Vec<(String, BlobId)> = parts
                        .par_chunks_mut(64)
                        .map(|part| {
                            plains.with(|plain| {
                                let mut out = Vec::new();
                                for (e, blob) in part {
                                    if let Err(err) = open_blob_in_place(
                                        repo.repo_id(),
                                        &repo.keys,
                                        &repo.cipher,
                                        e.kind,
                                        &e.id,
                                        blob,
                                        plain,
                                    ) {
                                        out.push((format!("pack {id}: {err}"), e.id));
                                    }
                                }
                                out
                            })
                        })
                        .flatten()
                        .collect();
                    n += entries.len() as u64;
                    for (msg, b) in failed {
                        errs.push(msg);
                        bad.push(b);
                    }
                }
                entries
            }
            Err(e) => Err(e),
        }
    } else {
        read_header(repo, &path, size)
    };
    match header {
        Ok(entries) => {
            let in_pack: HashMap<BlobId, (u64, u32)> = entries.iter().map(|e| (e.id, (e.offset, e.length))).collect();
            for (b, loc) in &indexed {
                if in_pack.get(b) != Some(&(loc.offset, loc.length)) {
                    errs.push(format!(
                        "pack {id}: index lists blob {b} that its header does not hold there"
                    ));
                    bad.push(*b);
                }
            }
        }
        Err(e) => {
            errs.push(format!("pack {id}: header unreadable: {e}"));
            all_bad(&mut bad);
        }
    }
    PackCheck {
        errors: errs,
        bad,
        read: n,
    }
}

/// Read and decode a pack header from the pack's tail.
pub fn read_header(repo: &Repository, path: &str, size: u64) -> Result<Vec<crate::format::PackEntry>> {
    if size < (pack::LEADER_LEN + pack::TRAILER_LEN) as u64 {
        return Err(crate::Error::corrupt("pack too short"));
    }
    let trailer = repo
        .backend
        .read_range(path, size - pack::TRAILER_LEN as u64, pack::TRAILER_LEN)?;
    let (off, len) = pack::parse_trailer(&trailer, size)?;
    let sealed = repo.backend.read_range(path, off, len)?;
    pack::decode_header(repo.repo_id(), &repo.cipher, &sealed, off)
}

/// Put every chunk and chunk-list page reachable from `tree` into the live set (through
/// `batch`); `false` when a tree or chunk list cannot be read.
fn walk_fast(
    repo: &Repository,
    tree: &TreeId,
    seen_trees: &mut HashSet<TreeId>,
    batch: &mut Vec<BlobId>,
) -> Result<bool> {
    if !seen_trees.insert(*tree) {
        return Ok(true);
    }
    let Ok((nodes, pages)) = repo.load_tree_pages(tree) else {
        return Ok(false);
    };
    seen_trees.extend(pages);
    walk_fast_nodes(repo, nodes, seen_trees, batch)
}

/// `walk_fast` for the nodes of one directory, however it is stored.
fn walk_fast_nodes(
    repo: &Repository,
    nodes: Vec<Node>,
    seen_trees: &mut HashSet<TreeId>,
    batch: &mut Vec<BlobId>,
) -> Result<bool> {
    for n in nodes {
        match &n.kind {
            NodeKind::Dir(t) if !walk_fast(repo, t, seen_trees, batch)? => return Ok(false),
            NodeKind::InlineDir(b) => {
                let Ok(sub) = crate::format::decode_inline_dir(b) else {
                    return Ok(false);
                };
                if !walk_fast_nodes(repo, sub, seen_trees, batch)? {
                    return Ok(false);
                }
            }
            NodeKind::File(d) | NodeKind::HardLink { data: d, .. } => match &d.content {
                Content::Chunks(c) => batch.extend(c.iter().map(|c| BlobId(c.id.0))),
                c => {
                    if let Content::Pages(p) = c {
                        seen_trees.extend(p.iter().copied());
                    }
                    let Ok(chunks) = repo.chunk_list(c) else {
                        return Ok(false);
                    };
                    batch.extend(chunks.iter().map(|c| BlobId(c.id.0)));
                }
            },
            _ => {}
        }
        if batch.len() >= 16384 {
            // In key order the B-tree inserts touch neighbouring pages.
            batch.sort_unstable();
            repo.index.live_insert(batch)?;
            batch.clear();
        }
    }
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
fn walk(
    repo: &Repository,
    sid: &SnapshotId,
    tree: &TreeId,
    rel: &[u8],
    bad: &HashSet<BlobId>,
    seen_trees: &mut HashSet<TreeId>,
    r: &mut CheckReport,
) {
    if !seen_trees.insert(*tree) && !bad.contains(&BlobId(tree.0)) {
        return;
    }
    match repo.load_tree_pages(tree) {
        Ok((nodes, pages)) => {
            // Continuation pages are used too (for the unused-pack report).
            seen_trees.extend(pages);
            walk_nodes(repo, sid, nodes, rel, bad, seen_trees, r);
        }
        Err(e) => r
            .errors
            .push(format!("snapshot {}: directory {}: {e}", sid.short(), shown(rel))),
    }
}

fn shown(p: &[u8]) -> String {
    if p.is_empty() {
        "/".to_string()
    } else {
        crate::format_name(p)
    }
}

/// `walk` for the nodes of one directory, however it is stored.
#[allow(clippy::too_many_arguments)]
fn walk_nodes(
    repo: &Repository,
    sid: &SnapshotId,
    nodes: Vec<Node>,
    rel: &[u8],
    bad: &HashSet<BlobId>,
    seen_trees: &mut HashSet<TreeId>,
    r: &mut CheckReport,
) {
    for n in nodes {
        let mut p = rel.to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(&n.name);
        match &n.kind {
            NodeKind::Dir(t) => walk(repo, sid, t, &p, bad, seen_trees, r),
            NodeKind::InlineDir(b) => match crate::format::decode_inline_dir(b) {
                Ok(sub) => walk_nodes(repo, sid, sub, &p, bad, seen_trees, r),
                Err(e) => r
                    .errors
                    .push(format!("snapshot {}: directory {}: {e}", sid.short(), shown(&p))),
            },
            NodeKind::File(d) | NodeKind::HardLink { data: d, .. } => {
                if let Content::Pages(pages) = &d.content {
                    seen_trees.extend(pages.iter().copied());
                }
                let chunks = match &d.content {
                    Content::Chunks(c) => c.clone(),
                    c => match repo.chunk_list(c) {
                        Ok(c) => c,
                        Err(e) => {
                            r.errors
                                .push(format!("snapshot {}: file {}: chunk list: {e}", sid.short(), shown(&p)));
                            continue;
                        }
                    },
                };
                let mut missing = 0;
                let ids: Vec<BlobId> = chunks.iter().map(|c| BlobId(c.id.0)).collect();
                let new = repo.index.live_insert(&ids).unwrap_or_else(|_| vec![true; ids.len()]);
                for (b, new) in ids.iter().zip(new) {
                    if bad.contains(b) {
                        missing += 1;
                    } else if new && !repo.index.exists_any(b).unwrap_or(false) {
                        // Any copy counts, also in a condemned pack: it still exists. A missing
                        // chunk leaves the live set so every file using it is named.
                        let _ = repo.index.live_remove(b);
                        missing += 1;
                    }
                }
                if missing > 0 {
                    r.errors.push(format!(
                        "snapshot {}: file {}: {missing} chunk(s) missing or damaged",
                        sid.short(),
                        shown(&p)
                    ));
                }
            }
            _ => {}
        }
    }
}
