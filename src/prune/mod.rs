//! `forget` and `prune`: plan, then execute, never losing data.
//!
//! Garbage collection is two-phase and never needs an exclusive lock:
//! 1. *Condemn*: packs that no remaining snapshot uses are recorded in `condemned/`
//!    with the time of marking; partly used packs above the threshold are first repacked
//!    (live blobs copied to new packs, new index delta written), then condemned too.
//! 2. *Delete*, in a later run: a condemned pack is deleted only when every lock older
//!    than its mark is gone (so no backup that started before the mark is still running)
//!    and no current snapshot needs a blob that lives only in condemned packs; otherwise it
//!    is un-condemned. Deletion writes a new index delta replacing the ones that listed the
//!    packs, then deletes those deltas, then the packs, then updates the records.
//!
//! Backups never dedup into a condemned pack (see `Index::has_blob`). The set of live
//! blobs is kept in a temporary SQLite table, so memory does not grow with the index.

pub mod policy;

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;

use crate::backend::Dir;
use crate::blob::open_blob;
use crate::error::{Error, Result};
use crate::format::{BlobKind, Condemned, Content, IndexDelta, IndexPack, Node, NodeKind};
use crate::id::{BlobId, ObjectId, PackId, SnapshotId, TreeId};
use crate::lock;
use crate::pack::PackWriter;
use crate::repo::{Repository, now_unix_ns};
use policy::{Decision, KeepRules};

#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub rules: KeepRules,
    /// Snapshots named on the command line.
    pub forget: Vec<SnapshotId>,
    /// Collect garbage after forgetting (`prune`, or `forget --prune`).
    pub gc: bool,
    pub dry_run: bool,
    /// A partly used pack is repacked when more than this fraction of its bytes is unused.
    pub repack_threshold: f64,
    pub tz: jiff::tz::TimeZone,
    pub hostname: String,
    /// Our own lock object, ignored when looking for older locks.
    pub own_lock: Option<ObjectId>,
}

#[derive(Debug, Default, Serialize)]
pub struct PrunePlan {
    pub snapshots: Vec<SnapshotDecision>,
    pub forgotten: u64,
    pub live_blobs: u64,
    /// Phase two: condemned packs deleted now, and the bytes that frees.
    pub deleted_packs: Vec<String>,
    pub deleted_bytes: u64,
    /// Condemned packs that a snapshot turned out to need again.
    pub uncondemned_packs: Vec<String>,
    /// Condemned packs still waiting for older locks to go away.
    pub waiting_packs: Vec<String>,
    /// Phase one: packs condemned now (deleted by a later prune).
    pub condemned_packs: Vec<String>,
    pub condemned_bytes: u64,
    /// Partly used packs whose live blobs were copied to new packs (and are condemned).
    pub repacked_packs: Vec<String>,
    pub repacked_bytes: u64,
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
pub struct SnapshotDecision {
    pub id: String,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// `guard` is the prune's own shared lock: re-checked before anything is deleted.
pub fn run(repo: &mut Repository, opts: &PruneOptions, guard: Option<&lock::LockGuard>) -> Result<PrunePlan> {
    let mut plan = PrunePlan {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    if !repo.damaged.is_empty() && (opts.gc || !opts.rules.is_empty()) {
        // An unreadable snapshot or delta would make us misjudge what is in use.
        return Err(Error::corrupt(format!(
            "{} repository object(s) could not be read ({}); prune and rule-based forget refuse to run \
             until `projectclone check` is clean",
            repo.damaged.len(),
            repo.damaged[0]
        )));
    }
    let snaps = repo.snapshots()?;
    let mut forget: BTreeSet<SnapshotId> = opts.forget.iter().copied().collect();
    if !opts.rules.is_empty() {
        for Decision { id, keep, reasons } in policy::apply(&snaps, &opts.rules, &opts.tz) {
            if !keep {
                forget.insert(id);
            }
            plan.snapshots.push(SnapshotDecision {
                id: id.to_hex(),
                keep,
                reasons,
            });
        }
    } else if !forget.is_empty() {
        for (id, _) in &snaps {
            let keep = !forget.contains(id);
            let reasons = if keep {
                vec!["not named".into()]
            } else {
                vec!["named".into()]
            };
            plan.snapshots.push(SnapshotDecision {
                id: id.to_hex(),
                keep,
                reasons,
            });
        }
    }
    plan.forgotten = forget.len() as u64;
    if opts.gc {
        // A copy in a lost pack must not count as "a copy elsewhere": refuse until the index
        // is honest again (`repair index` drops lost packs, `repair snapshots` what they held).
        let listed: HashSet<PackId> = repo
            .backend
            .list(Dir::Packs)?
            .into_iter()
            .filter_map(|(n, _)| crate::repo::object_name(&n).map(PackId))
            .collect();
        if let Some((lost, _)) = repo.index.packs()?.into_iter().find(|p| !listed.contains(&p.0)) {
            return Err(Error::corrupt(format!(
                "indexed pack {lost} is missing from the repository; prune refuses to run until \
                 `projectclone check` is clean (see `repair index` and `repair snapshots`)"
            )));
        }
    }
    if !opts.dry_run && !forget.is_empty() {
        for id in &forget {
            repo.backend.delete(&Dir::Snapshots.path(&id.to_hex()))?;
        }
        repo.index
            .remove_snapshots(&forget.iter().copied().collect::<Vec<_>>())?;
    }
    if !opts.gc {
        return Ok(plan);
    }
    if !opts.dry_run {
        repo.remove_stale_temp_files();
    }

    // The live set: everything the remaining snapshots reach.
    repo.index.live_reset()?;
    for (id, s) in &snaps {
        if !forget.contains(id) {
            mark_tree(repo, &s.tree).map_err(|e| {
                Error::corrupt(format!(
                    "snapshot {}: {e}; prune stops rather than guess what is in use (run `projectclone check`)",
                    id.short()
                ))
            })?;
        }
    }

    phase_two(repo, opts, &mut plan, guard)?;
    phase_one(repo, opts, &mut plan)?;
    Ok(plan)
}

fn mark_tree(repo: &Repository, tree: &TreeId) -> Result<()> {
    let mut page = Some(*tree);
    let mut first = true;
    while let Some(p) = page {
        let new = repo.index.live_insert(&[BlobId(p.0)])?[0];
        if !new && first {
            return Ok(()); // this whole directory was marked through another snapshot
        }
        first = false;
        let t = repo.load_tree_page(&p)?;
        mark_nodes(repo, &t.nodes)?;
        page = t.next;
    }
    Ok(())
}

/// Mark what the nodes of one directory level use, inline subdirectories included.
fn mark_nodes(repo: &Repository, nodes: &[Node]) -> Result<()> {
    for n in nodes {
        match &n.kind {
            NodeKind::Dir(sub) => mark_tree(repo, sub)?,
            NodeKind::InlineDir(b) => mark_nodes(repo, &crate::format::decode_inline_dir(b)?)?,
            NodeKind::File(d) | NodeKind::HardLink { data: d, .. } => {
                if let Content::Pages(pages) = &d.content {
                    let ids: Vec<BlobId> = pages.iter().map(|p| BlobId(p.0)).collect();
                    repo.index.live_insert(&ids)?;
                }
                let chunks = repo.chunk_list(&d.content)?;
                let ids: Vec<BlobId> = chunks.iter().map(|c| BlobId(c.id.0)).collect();
                repo.index.live_insert(&ids)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Clocks of different machines disagree: a lock is treated as older than a mark unless
/// it was created this much after it.
const CLOCK_SKEW_NS: i64 = 10 * 60 * 1_000_000_000;

fn phase_two(
    repo: &mut Repository,
    opts: &PruneOptions,
    plan: &mut PrunePlan,
    guard: Option<&lock::LockGuard>,
) -> Result<()> {
    let records = repo.index.condemned()?;
    let superseded = repo.index.superseded_deltas()?;
    if records.is_empty() && superseded.is_empty() {
        return Ok(());
    }
    let host = lock::hostname();
    let boot = lock::boot_id();
    let now = now_unix_ns();
    // Our lock's object changes name when refreshed: ask the guard for the current one.
    let own = guard.map(|g| g.object_id()).or(opts.own_lock);
    let locks: Vec<_> = lock::list_locks(repo)?
        .into_iter()
        .filter(|(id, l)| Some(*id) != own && !l.is_stale(now, &host, &boot))
        .collect();
    let mut eligible: Vec<&(ObjectId, i64, Vec<PackId>)> = Vec::new();
    let mut waiting: HashSet<PackId> = HashSet::new();
    for r in &records {
        if locks
            .iter()
            .any(|(_, l)| l.created_unix_ns < r.1.saturating_add(CLOCK_SKEW_NS))
        {
            waiting.extend(r.2.iter().copied());
            plan.waiting_packs.extend(r.2.iter().map(|p| p.to_hex()));
        } else {
            eligible.push(r);
        }
    }
    // A backup older than a mark may have finished between our first look at the
    // snapshots and the lock listing above: its snapshot is visible now. Mark it live.
    let before: HashSet<SnapshotId> = repo.snapshots()?.into_iter().map(|s| s.0).collect();
    repo.sync_index()?;
    if !repo.damaged.is_empty() {
        return Err(Error::corrupt(format!(
            "repository object unreadable: {}",
            repo.damaged[0]
        )));
    }
    for (id, s) in repo.snapshots()? {
        if !before.contains(&id) {
            mark_tree(repo, &s.tree)?;
        }
    }
    let mut gone: HashSet<PackId> = eligible
        .iter()
        .flat_map(|r| r.2.iter().copied())
        .filter(|p| !waiting.contains(p))
        .collect();
    // Un-condemn packs holding a live blob that has no copy outside the packs to delete.
    loop {
        let mut keep = Vec::new();
        for p in &gone {
            if repo.index.live_only_in(p, &gone)? > 0 {
                keep.push(*p);
            }
        }
        if keep.is_empty() {
            break;
        }
        for p in keep {
            gone.remove(&p);
            plan.uncondemned_packs.push(p.to_hex());
        }
    }
    let mut gone_list: Vec<PackId> = gone.iter().copied().collect();
    gone_list.sort();
    let sizes: std::collections::HashMap<PackId, u64> = repo
        .backend
        .list(Dir::Packs)?
        .into_iter()
        .filter_map(|(n, s)| crate::repo::object_name(&n).map(|id| (PackId(id), s)))
        .collect();
    for p in &gone_list {
        plan.deleted_bytes += sizes.get(p).copied().unwrap_or(0);
        plan.deleted_packs.push(p.to_hex());
    }
    if opts.dry_run || (gone_list.is_empty() && superseded.is_empty() && eligible.is_empty()) {
        return Ok(());
    }
    if guard.is_some_and(|g| !g.still_valid()) {
        return Err(Error::Invalid(
            "this prune's lock went stale; nothing was deleted; run prune again".into(),
        ));
    }
    // 1. A delta replacing every delta that lists a pack to delete, minus those packs,
    //    then 2. the replaced deltas (see `Repository::drop_packs_from_index`), 3. the packs.
    if !gone.is_empty() || !superseded.is_empty() {
        repo.drop_packs_from_index(&gone)?;
        if let Some(d) = repo.damaged.first() {
            // Phase one would take the packs of an unreadable delta for unindexed ones.
            return Err(Error::corrupt(format!(
                "repository object unreadable after replacing deltas: {d}"
            )));
        }
    }
    for p in &gone_list {
        repo.backend.delete(&Dir::Packs.path(&p.to_hex()))?;
    }
    // 4. The records: what is left of each eligible record is written anew.
    let uncondemned: HashSet<String> = plan.uncondemned_packs.iter().cloned().collect();
    for (rid, marked, packs) in eligible {
        let rest: Vec<PackId> = packs
            .iter()
            .filter(|p| !gone.contains(p) && !uncondemned.contains(&p.to_hex()))
            .copied()
            .collect();
        if rest.len() == packs.len() {
            continue; // unchanged: the record stays as it is
        }
        if !rest.is_empty() {
            repo.write_condemned(&Condemned {
                packs: rest,
                marked_unix_ns: *marked,
                hostname: opts.hostname.clone(),
            })?;
        }
        repo.delete_condemned(rid)?;
    }
    repo.sync_index()?;
    Ok(())
}

fn phase_one(repo: &mut Repository, opts: &PruneOptions, plan: &mut PrunePlan) -> Result<()> {
    let already: HashSet<PackId> = repo.index.condemned()?.into_iter().flat_map(|r| r.2).collect();
    let mut condemn = Vec::new();
    let mut repack = Vec::new();
    for u in repo.index.pack_usage()? {
        if already.contains(&u.id) {
            continue;
        }
        if u.live_blobs == 0 {
            plan.condemned_bytes += u.size;
            plan.condemned_packs.push(u.id.to_hex());
            condemn.push(u.id);
        } else if u.bytes > 0 && (u.bytes - u.live_bytes) as f64 > opts.repack_threshold * u.bytes as f64 {
            let mut without: HashSet<PackId> = already.iter().chain(&condemn).copied().collect();
            without.insert(u.id);
            if repo.index.live_only_in(&u.id, &without)? == 0 {
                // Every live blob already has a copy elsewhere (an earlier repack that was
                // interrupted, or two backups storing the same blob): no copy needed.
                plan.condemned_bytes += u.size;
                plan.condemned_packs.push(u.id.to_hex());
                condemn.push(u.id);
                continue;
            }
            plan.repacked_bytes += u.live_bytes;
            plan.repacked_packs.push(u.id.to_hex());
            repack.push(u.id);
        }
    }
    // Packs that no index delta lists: left by a backup or repack killed before its delta.
    // Condemned like unused packs; a backup still running holds a lock older than the mark,
    // and once its delta lists them they are live and get un-condemned.
    let indexed: HashSet<PackId> = repo.index.packs()?.into_iter().map(|p| p.0).collect();
    for (name, size) in repo.backend.list(Dir::Packs)? {
        if let Some(id) = crate::repo::object_name(&name).map(PackId)
            && !indexed.contains(&id)
            && !already.contains(&id)
        {
            plan.condemned_bytes += size;
            plan.condemned_packs.push(id.to_hex());
            condemn.push(id);
        }
    }
    plan.live_blobs = repo.index.totals()?.0;
    if opts.dry_run || (condemn.is_empty() && repack.is_empty()) {
        return Ok(());
    }
    if !repack.is_empty() {
        repack_packs(repo, &repack)?;
        condemn.extend(repack);
    }
    repo.write_condemned(&Condemned {
        packs: condemn,
        marked_unix_ns: now_unix_ns(),
        hostname: opts.hostname.clone(),
    })?;
    Ok(())
}

/// Copy the live blobs of `packs` into new packs (verifying each), then index them.
fn repack_packs(repo: &mut Repository, packs: &[PackId]) -> Result<()> {
    let target = repo.config.pack_target as usize;
    let mut writers = [PackWriter::new(), PackWriter::new()];
    let mut new_packs = Vec::new();
    let mut copied: HashSet<BlobId> = HashSet::new();
    let flush = |repo: &Repository, w: PackWriter, out: &mut Vec<IndexPack>| -> Result<()> {
        if w.is_empty() {
            return Ok(());
        }
        let (id, bytes, entries) = w.finish(repo.repo_id(), &repo.cipher);
        repo.backend.write_new(&Dir::Packs.path(&id.to_hex()), &bytes)?;
        out.push(IndexPack {
            id,
            size: bytes.len() as u64,
            blobs: entries,
        });
        Ok(())
    };
    for p in packs {
        let bytes = repo.backend.read(&Dir::Packs.path(&p.to_hex()))?;
        for (id, loc) in repo.index.pack_blobs(p)? {
            let live = repo.index.is_live(&id)?;
            if !live || !copied.insert(id) {
                continue;
            }
            let s = loc.offset as usize;
            let sealed = bytes
                .get(s..s + loc.length as usize)
                .ok_or_else(|| Error::corrupt(format!("pack {p}: blob {id} outside the pack")))?;
            // Verify before copying: repacking must not spread damage.
            open_blob(repo.repo_id(), &repo.keys, &repo.cipher, loc.kind, &id, sealed)
                .map_err(|e| Error::corrupt(format!("pack {p}: {e}; run `projectclone check --read-data`")))?;
            let w = &mut writers[if loc.kind == BlobKind::Data { 0 } else { 1 }];
            w.add(loc.kind, id, loc.raw_length, sealed);
            if w.len() >= target {
                let full = std::mem::take(w);
                flush(repo, full, &mut new_packs)?;
            }
        }
    }
    for w in writers {
        flush(repo, w, &mut new_packs)?;
    }
    if !new_packs.is_empty() {
        let delta = IndexDelta {
            packs: new_packs,
            supersedes: Vec::new(),
        };
        let id = repo.write_delta(&delta)?;
        repo.index.add_deltas(&[(id, delta)])?;
    }
    Ok(())
}
