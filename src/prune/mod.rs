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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::backend::Dir;
use crate::blob::open_blob;
use crate::error::{Error, Result};
use crate::format::{self, Condemned, Content, Node, NodeKind};
use crate::id::{BlobId, ObjectId, PackId, SnapshotId, TreeId};
use crate::index::CondemnedRecord;
use crate::lock;
use crate::packer::PackSink;
use crate::progress::Progress;
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
    /// Which snapshots the rules consider, and how they are grouped (default: all, by
    /// host and paths).
    pub scope: Scope,
}

/// The snapshots `--keep-*` rules apply to (the others are left alone) and the groups
/// each thinned on its own.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub selection: crate::select::Selection,
    pub group_by: crate::select::GroupBy,
}

#[derive(Debug, Default, Serialize)]
pub struct PrunePlan {
    pub snapshots: Vec<SnapshotDecision>,
    /// With `--keep-*` rules: how the snapshots were grouped (`group_by`, as given) and
    /// the groups, each thinned on its own; a decision's `group` indexes `groups`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<PlanGroup>,
    pub forgotten: u64,
    pub live_blobs: u64,
    /// Phase two: condemned packs deleted now, and the bytes that frees.
    pub deleted_packs: Vec<String>,
    pub deleted_bytes: u64,
    /// Condemned packs that a snapshot turned out to need again.
    pub uncondemned_packs: Vec<String>,
    /// Condemned packs still waiting for other clients' locks to go away.
    pub waiting_packs: Vec<String>,
    /// The live locks that those packs wait for, described.
    pub waiting_for: Vec<String>,
    /// Phase one: packs condemned now (deleted at once when no other client holds a lock,
    /// else by a later prune).
    pub condemned_packs: Vec<String>,
    pub condemned_bytes: u64,
    /// Partly used packs whose live blobs were copied to new packs (and are condemned).
    pub repacked_packs: Vec<String>,
    pub repacked_bytes: u64,
    /// Packs that no index listed although snapshots use their blobs (a lost index
    /// delta): indexed again before anything was decided.
    pub reindexed_packs: Vec<String>,
    /// Packs this client knows to be missing or damaged: neither repacked nor condemned
    /// (`repair index` salvages them).
    pub damaged_packs_kept: Vec<String>,
    /// Unused packs that only a young checkpoint delta lists: a killed backup's work, kept
    /// for the backup that resumes it (`RESUME_GRACE`).
    pub kept_for_resume: Vec<String>,
    /// Snapshot objects a tombstone forgets that were still stored (an interrupted forget):
    /// deleted.
    pub leftover_snapshots: Vec<String>,
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
pub struct SnapshotDecision {
    pub id: String,
    pub keep: bool,
    pub reasons: Vec<String>,
    /// Index into [`PrunePlan::groups`] (rule-based decisions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<usize>,
}

/// One retention group: its key and how many of its snapshots are kept and removed.
#[derive(Debug, Serialize)]
pub struct PlanGroup {
    pub key: crate::select::GroupKey,
    pub keep: u64,
    pub remove: u64,
}

/// Stop unless our lock is still valid: asked before every write or delete, so a prune
/// that was suspended long enough for others to judge its lock stale (and perhaps start
/// a prune of their own) stops instead of acting on an old view.
fn ensure_valid(guard: Option<&lock::LockGuard>) -> Result<()> {
    if guard.is_some_and(|g| !g.still_valid()) {
        return Err(Error::Invalid(
            "this prune's repository lock went stale or was removed (process suspended?); it stopped before \
             its next change, and what it did so far is complete; run prune again"
                .into(),
        ));
    }
    Ok(())
}

/// The refusal for objects a sync could not read, naming the command that deals with each.
fn unreadable_error(repo: &Repository) -> Error {
    let first = &repo.damaged[0];
    let fix = if first.what == "snapshot" {
        "`projectclone repair snapshots --forget-unreadable --dry-run` shows what removing the unreadable snapshot objects would do"
    } else {
        "`projectclone repair index --dry-run` shows how it would re-index their packs and remove the unreadable objects"
    };
    Error::corrupt(format!(
        "{} repository object(s) could not be read ({first}); prune and rule-based forget refuse to run \
         until `projectclone check` is clean: {fix}",
        repo.damaged.len(),
    ))
}

/// `guard` is the prune's own shared lock: re-checked before every change.
pub fn run(repo: &mut Repository, opts: &PruneOptions, guard: Option<&lock::LockGuard>) -> Result<PrunePlan> {
    run_with_progress(repo, opts, guard, &crate::progress::NoProgress)
}

/// [`run`], reporting to `progress`: the packs rewritten (their bytes as their blobs are
/// copied) and the packs deleted, one entry each.
pub fn run_with_progress(
    repo: &mut Repository,
    opts: &PruneOptions,
    guard: Option<&lock::LockGuard>,
    progress: &dyn Progress,
) -> Result<PrunePlan> {
    let mut plan = PrunePlan {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    if !repo.damaged.is_empty() && (opts.gc || !opts.rules.is_empty()) {
        // An unreadable snapshot or delta would make us misjudge what is in use.
        return Err(unreadable_error(repo));
    }
    let snaps = repo.snapshots()?;
    let mut forget: BTreeSet<SnapshotId> = opts.forget.iter().copied().collect();
    if !opts.rules.is_empty() {
        let scope = &opts.scope;
        let considered: Vec<(SnapshotId, format::Snapshot)> = snaps
            .iter()
            .filter(|(_, s)| scope.selection.matches(s))
            .cloned()
            .collect();
        let groups = policy::apply_by(&considered, &opts.rules, &opts.tz, |s| {
            scope.group_by.key(s, &scope.selection.names)
        });
        plan.group_by = Some(scope.group_by.to_string());
        for (g, (key, decisions)) in groups.into_iter().enumerate() {
            let kept = decisions.iter().filter(|d| d.keep).count() as u64;
            plan.groups.push(PlanGroup {
                key,
                keep: kept,
                remove: decisions.len() as u64 - kept,
            });
            for Decision { id, keep, reasons } in decisions {
                if !keep {
                    forget.insert(id);
                }
                plan.snapshots.push(SnapshotDecision {
                    id: id.to_hex(),
                    keep,
                    reasons,
                    group: Some(g),
                });
            }
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
                group: None,
            });
        }
    }
    plan.forgotten = forget.len() as u64;
    // One listing of `packs/` for the whole run (prune is the command that may cost one).
    let listing: HashMap<PackId, u64> = if opts.gc {
        repo.backend
            .list(Dir::Packs)?
            .into_iter()
            .filter_map(|(n, s)| crate::repo::object_name(&n).map(|id| (PackId(id), s)))
            .collect()
    } else {
        HashMap::new()
    };
    if opts.gc {
        // A copy in a lost pack must not count as "a copy elsewhere": refuse until the index
        // is honest again (`repair index` drops lost packs, `repair snapshots` what they held).
        if let Some((lost, _)) = repo.index.packs()?.into_iter().find(|p| !listing.contains_key(&p.0)) {
            return Err(Error::corrupt(format!(
                "indexed pack {lost} is missing from the repository; prune refuses to run until \
                 `projectclone check` is clean (see `repair index` and `repair snapshots`)"
            )));
        }
    }
    if !opts.dry_run && !forget.is_empty() {
        ensure_valid(guard)?;
        let removed: Vec<(SnapshotId, Option<&format::Snapshot>)> = snaps
            .iter()
            .filter(|(id, _)| forget.contains(id))
            .map(|(id, s)| (*id, Some(s)))
            .collect();
        repo.forget_snapshots(&removed, if opts.gc { "prune" } else { "forget" })?;
    }
    if !opts.gc {
        return Ok(plan);
    }
    if !opts.dry_run {
        repo.remove_stale_temp_files();
    }
    for s in repo.forgotten_leftovers()? {
        if !opts.dry_run {
            ensure_valid(guard)?;
            repo.backend.delete(&Dir::Snapshots.path(&s.to_hex()))?;
        }
        plan.leftover_snapshots.push(s.to_hex());
    }

    // The live set: everything the remaining snapshots reach.
    if let Err(e) = mark_all(repo, &snaps, &forget) {
        // A tree the index does not list may be in a pack whose delta was lost: index such
        // packs again (as `repair index` does) and try once more.
        let indexed: HashSet<PackId> = repo.index.packs()?.into_iter().map(|p| p.0).collect();
        let mut unindexed: Vec<(PackId, u64)> = listing
            .iter()
            .filter(|(p, _)| !indexed.contains(p))
            .map(|(p, s)| (*p, *s))
            .collect();
        if opts.dry_run || unindexed.is_empty() {
            return Err(e);
        }
        unindexed.sort();
        ensure_valid(guard)?;
        let recovered = crate::repair::recover_packs(repo, &unindexed, false, false)?;
        plan.reindexed_packs = recovered.indexed.iter().map(|p| p.to_hex()).collect();
        mark_all(repo, &snaps, &forget)?;
    }
    ensure_live_indexed(repo, opts, &mut plan, guard, &listing)?;

    phase_two(repo, opts, &mut plan, guard, &listing, progress)?;
    if phase_one(repo, opts, &mut plan, guard, &listing, progress)? {
        // No other client held a lock once the new record was visible: nothing can be
        // using its packs without knowing, so they go now rather than in a later run.
        phase_two(repo, opts, &mut plan, guard, &listing, progress)?;
    }
    Ok(plan)
}

/// Every chunk and tree the kept snapshots use must be indexed before anything is judged
/// unused: a chunk whose delta was lost lives in a pack that would otherwise look
/// unindexed and be condemned with the data in it. Such packs are read, verified and
/// indexed again (as `repair index` does); if a live chunk is still in no indexed pack,
/// the prune refuses.
fn ensure_live_indexed(
    repo: &mut Repository,
    opts: &PruneOptions,
    plan: &mut PrunePlan,
    guard: Option<&lock::LockGuard>,
    listing: &HashMap<PackId, u64>,
) -> Result<()> {
    if !repo.index.live_has_unindexed()? {
        return Ok(());
    }
    let indexed: HashSet<PackId> = repo.index.packs()?.into_iter().map(|p| p.0).collect();
    let mut candidates: Vec<(PackId, u64)> = listing
        .iter()
        .filter(|(p, _)| !indexed.contains(p))
        .map(|(p, s)| (*p, *s))
        .collect();
    candidates.sort();
    let refuse = |n: usize| {
        Error::corrupt(format!(
            "the kept snapshots use chunks that no index lists{}; prune refuses to run, as it would delete \
             data: run `projectclone check`, then `projectclone repair index`",
            if n > 0 {
                format!(" ({n} pack(s) that no index lists may hold them)")
            } else {
                String::new()
            }
        ))
    };
    if opts.dry_run {
        return Err(refuse(candidates.len()));
    }
    ensure_valid(guard)?;
    let recovered = crate::repair::recover_packs(repo, &candidates, true, false)?;
    plan.reindexed_packs
        .extend(recovered.indexed.iter().map(|p| p.to_hex()));
    if repo.index.live_has_unindexed()? {
        return Err(refuse(0));
    }
    Ok(())
}

/// Mark everything the snapshots not in `forget` reach (a fresh live set), and what
/// snapshots that vanished without a tombstone referenced (kept until the user
/// acknowledges their removal; best effort, since their trees may be gone too).
fn mark_all(repo: &Repository, snaps: &[(SnapshotId, format::Snapshot)], forget: &BTreeSet<SnapshotId>) -> Result<()> {
    repo.index.live_reset()?;
    if let Some(trust) = &repo.trust {
        for (id, tree, _) in trust.vanished()? {
            if let Err(e) = mark_tree(repo, &tree) {
                tracing::warn!(
                    "snapshot {} (vanished): what it referenced cannot all be kept: {e}",
                    id.short()
                );
            }
        }
    }
    for (id, s) in snaps {
        if !forget.contains(id) {
            mark_tree(repo, &s.tree).map_err(|e| {
                Error::corrupt(format!(
                    "snapshot {}: {e}; prune stops rather than guess what is in use (run `projectclone check`, \
                     then `projectclone repair index`)",
                    id.short()
                ))
            })?;
        }
    }
    Ok(())
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

/// Records written by builds before lock identities (and crash leftovers of the first
/// record object): a lock is treated as older than a mark unless it was created this much
/// after it, since clocks of different machines disagree.
const CLOCK_SKEW_NS: i64 = 10 * 60 * 1_000_000_000;

/// Is the record still waiting for a live lock of another client?
fn waits(r: &CondemnedRecord, live: &[lock::Surveyed]) -> bool {
    match &r.waits_for {
        Some(ids) => live.iter().any(|l| ids.contains(&l.lock.identity())),
        None => live
            .iter()
            .any(|l| l.lock.created_unix_ns < r.marked.saturating_add(CLOCK_SKEW_NS)),
    }
}

fn phase_two(
    repo: &mut Repository,
    opts: &PruneOptions,
    plan: &mut PrunePlan,
    guard: Option<&lock::LockGuard>,
    listing: &HashMap<PackId, u64>,
    progress: &dyn Progress,
) -> Result<()> {
    let records = repo.index.condemned()?;
    let superseded = repo.index.superseded_deltas()?;
    if records.is_empty() && superseded.is_empty() {
        return Ok(());
    }
    // Other clients' live locks. Ages are measured on the store's clock (our lock is
    // refreshed first so its object dates "now"), so no two machines' clocks are compared.
    let own = guard.map(|g| g.object_id()).or(opts.own_lock);
    let live: Vec<lock::Surveyed> = lock::survey(repo, guard)?
        .into_iter()
        .filter(|s| Some(s.id) != own && !s.stale)
        .collect();
    let mut eligible: Vec<&CondemnedRecord> = Vec::new();
    let mut waiting: HashSet<PackId> = HashSet::new();
    plan.waiting_packs.clear();
    plan.waiting_for.clear();
    for r in &records {
        if waits(r, &live) {
            waiting.extend(r.packs.iter().copied());
            plan.waiting_packs.extend(r.packs.iter().map(|p| p.to_hex()));
        } else {
            eligible.push(r);
        }
    }
    if !waiting.is_empty() {
        plan.waiting_for = live
            .iter()
            .filter(|l| records.iter().any(|r| waits(r, std::slice::from_ref(l))))
            .map(lock::describe)
            .collect();
    }
    // A backup older than a mark may have finished between our first look at the
    // snapshots and the lock listing above: its snapshot is visible now. Mark it live.
    let before: HashSet<SnapshotId> = repo.snapshots()?.into_iter().map(|s| s.0).collect();
    repo.sync_index()?;
    if !repo.damaged.is_empty() {
        return Err(unreadable_error(repo));
    }
    for (id, s) in repo.snapshots()? {
        if !before.contains(&id) {
            mark_tree(repo, &s.tree)?;
        }
    }
    let mut gone: HashSet<PackId> = eligible
        .iter()
        .flat_map(|r| r.packs.iter().copied())
        .filter(|p| !waiting.contains(p))
        .collect();
    // Un-condemn packs holding a live blob that has no intact copy outside the packs to
    // delete.
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
    for p in &gone_list {
        plan.deleted_bytes += listing.get(p).copied().unwrap_or(0);
        plan.deleted_packs.push(p.to_hex());
    }
    if opts.dry_run || (gone_list.is_empty() && superseded.is_empty() && eligible.is_empty()) {
        return Ok(());
    }
    ensure_valid(guard)?;
    // 1. A delta replacing every delta that lists a pack to delete, minus those packs,
    //    then 2. the replaced deltas (see `Repository::drop_packs_from_index`), 3. the packs.
    if !gone.is_empty() || !superseded.is_empty() {
        repo.drop_packs_from_index(&gone)?;
        if !repo.damaged.is_empty() {
            // Phase one would take the packs of an unreadable delta for unindexed ones.
            return Err(unreadable_error(repo));
        }
    }
    progress.add_total(gone_list.len() as u64, 0);
    for p in &gone_list {
        ensure_valid(guard)?;
        progress.current(Path::new(&p.to_hex()));
        repo.backend.delete(&Dir::Packs.path(&p.to_hex()))?;
        repo.index.clear_damage(p)?;
        progress.file_done();
    }
    // 4. The records: what is left of each eligible record is written anew.
    let uncondemned: HashSet<String> = plan.uncondemned_packs.iter().cloned().collect();
    for r in eligible {
        let rest: Vec<PackId> = r
            .packs
            .iter()
            .filter(|p| !gone.contains(p) && !uncondemned.contains(&p.to_hex()))
            .copied()
            .collect();
        if rest.len() == r.packs.len() {
            continue; // unchanged: the record stays as it is
        }
        ensure_valid(guard)?;
        if !rest.is_empty() {
            repo.write_condemned(&Condemned {
                packs: rest,
                marked_unix_ns: r.marked,
                hostname: opts.hostname.clone(),
                waits_for: r.waits_for.clone(),
            })?;
        }
        repo.delete_condemned(&r.id)?;
    }
    repo.sync_index()?;
    Ok(())
}

/// Condemn what is unused now. Returns `true` when it wrote a record and no other client
/// held a live lock once the record was visible (its packs may go at once).
fn phase_one(
    repo: &mut Repository,
    opts: &PruneOptions,
    plan: &mut PrunePlan,
    guard: Option<&lock::LockGuard>,
    listing: &HashMap<PackId, u64>,
    progress: &dyn Progress,
) -> Result<bool> {
    let already = repo.index.condemned_packs()?;
    let damaged: HashSet<PackId> = repo.index.damage()?.into_iter().map(|d| d.0).collect();
    let young = young_checkpoint_packs(repo, guard)?;
    let mut condemn = Vec::new();
    let mut repack = Vec::new();
    for u in repo.index.pack_usage()? {
        if already.contains(&u.id) {
            continue;
        }
        if damaged.contains(&u.id) {
            // Repacking would fail on the damaged blobs and condemning could drop the only
            // copy of the intact ones: `repair index` salvages such packs.
            plan.damaged_packs_kept.push(u.id.to_hex());
            continue;
        }
        if u.live_blobs == 0 && young.contains(&u.id) {
            plan.kept_for_resume.push(u.id.to_hex());
            continue;
        }
        if u.live_blobs == 0 {
            plan.condemned_bytes += u.size;
            plan.condemned_packs.push(u.id.to_hex());
            condemn.push(u.id);
        } else if u.bytes > 0 && (u.bytes - u.live_bytes) as f64 > opts.repack_threshold * u.bytes as f64 {
            let mut without: HashSet<PackId> = already.iter().chain(&condemn).copied().collect();
            without.insert(u.id);
            if repo.index.live_only_in(&u.id, &without)? == 0 && other_copies_intact(repo, &u.id, &without)? {
                // Every live blob already has an intact copy elsewhere (an earlier repack
                // that was interrupted, or two backups storing the same blob): no copy needed.
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
    // Condemned like unused packs; a backup still running holds a lock the record waits
    // for, and once its delta lists them they are live and get un-condemned.
    let indexed: HashSet<PackId> = repo.index.packs()?.into_iter().map(|p| p.0).collect();
    let mut unindexed: Vec<(&PackId, &u64)> = listing
        .iter()
        .filter(|(id, _)| !indexed.contains(id) && !already.contains(id))
        .collect();
    unindexed.sort();
    for (id, size) in unindexed {
        plan.condemned_bytes += size;
        plan.condemned_packs.push(id.to_hex());
        condemn.push(*id);
    }
    plan.live_blobs = repo.index.totals()?.0;
    if opts.dry_run || (condemn.is_empty() && repack.is_empty()) {
        return Ok(false);
    }
    ensure_valid(guard)?;
    if !repack.is_empty() {
        repack_packs(repo, &repack, progress)?;
        condemn.extend(repack);
    }
    // The record first, then the locks: a client whose lock is not live now took it after
    // the record was visible, synced after taking it, and so knows the packs are condemned.
    // The record is written again naming the clients that were live, and phase two waits
    // for exactly those.
    ensure_valid(guard)?;
    let mut record = Condemned {
        packs: condemn,
        marked_unix_ns: now_unix_ns(),
        hostname: opts.hostname.clone(),
        waits_for: None,
    };
    let first = repo.write_condemned(&record)?;
    let own = guard.map(|g| g.object_id()).or(opts.own_lock);
    let live: Vec<lock::Surveyed> = lock::survey(repo, guard)?
        .into_iter()
        .filter(|s| Some(s.id) != own && !s.stale)
        .collect();
    record.waits_for = Some(live.iter().map(|l| l.lock.identity()).collect());
    plan.waiting_for = live.iter().map(lock::describe).collect();
    ensure_valid(guard)?;
    repo.write_condemned(&record)?;
    repo.delete_condemned(&first)?;
    Ok(live.is_empty())
}

/// A backup that was killed leaves the packs it stored listed by its checkpoint deltas
/// only; the next backup of the same files deduplicates against them. So that a prune in
/// between does not take them away, packs that only checkpoint deltas list are kept while
/// every such delta is younger than this, measured on the store's clock.
pub const RESUME_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Packs that only checkpoint deltas younger than [`RESUME_GRACE`] list.
fn young_checkpoint_packs(repo: &Repository, guard: Option<&lock::LockGuard>) -> Result<HashSet<PackId>> {
    let only = repo.index.checkpoint_only_packs()?;
    if only.is_empty() {
        return Ok(HashSet::new());
    }
    let written: HashMap<String, Option<i64>> = repo
        .backend
        .list_info(Dir::Index)?
        .into_iter()
        .map(|o| (o.name, o.modified_ns))
        .collect();
    // "Now" on the store's clock when the store dates objects; this client's otherwise.
    let now = lock::store_now(repo, guard)?.unwrap_or_else(now_unix_ns);
    let grace = RESUME_GRACE.as_nanos() as i64;
    Ok(only
        .into_iter()
        .filter(|(_, deltas)| {
            deltas.iter().all(|d| {
                written
                    .get(&d.to_hex())
                    .copied()
                    .flatten()
                    .is_none_or(|t| now.saturating_sub(t) < grace)
            })
        })
        .map(|(p, _)| p)
        .collect())
}

/// Does every live blob of `pack` have a copy outside `without` that reads back intact?
/// Read, not assumed: a copy nobody checked may be damaged, and condemning `pack` would
/// then leave the damaged copy as the only one.
fn other_copies_intact(repo: &Repository, pack: &PackId, without: &HashSet<PackId>) -> Result<bool> {
    for (id, loc) in repo.index.pack_blobs(pack)? {
        if !repo.index.is_live(&id)? {
            continue;
        }
        let mut ok = false;
        for (c, damaged, _) in repo.index.copies(&id)? {
            if damaged || without.contains(&c.pack) {
                continue;
            }
            let read = repo
                .backend
                .read_range(&Dir::Packs.path(&c.pack.to_hex()), c.offset, c.length as usize)
                .and_then(|sealed| open_blob(repo.repo_id(), &repo.keys, &repo.cipher, loc.kind, &id, &sealed));
            match read {
                Ok(_) => {
                    ok = true;
                    break;
                }
                Err(e) if e.is_damage() => repo.note_damage(&c.pack, Some(&id), &e),
                Err(e) => return Err(e),
            }
        }
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copy the live blobs of `packs` into new packs (verifying each), then index them.
fn repack_packs(repo: &mut Repository, packs: &[PackId], progress: &dyn Progress) -> Result<()> {
    let mut sink = PackSink::new(repo);
    let mut copied: HashSet<BlobId> = HashSet::new();
    let mut sizes = Vec::with_capacity(packs.len());
    for p in packs {
        sizes.push(repo.index.pack_size(p)?.unwrap_or(0));
    }
    progress.add_total(packs.len() as u64, sizes.iter().sum());
    for (p, size) in packs.iter().zip(sizes) {
        progress.current(Path::new(&p.to_hex()));
        let mut reported = 0u64;
        // No larger than the index says it is: a store must not make a prune allocate at will.
        let max = repo
            .index
            .pack_size(p)?
            .filter(|s| *s > 0)
            .map_or(usize::MAX, |s| s as usize);
        let bytes = repo.backend.read_object(&Dir::Packs.path(&p.to_hex()), max)?;
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
            sink.add(loc.kind, id, loc.raw_length, sealed)?;
            progress.add_bytes(loc.length as u64);
            reported += loc.length as u64;
        }
        // The rest of the pack (its header, blobs no longer used) was read too.
        progress.add_bytes(size.saturating_sub(reported));
        progress.file_done();
    }
    let (new_packs, _) = sink.finish()?;
    repo.index_packs(new_packs)?;
    Ok(())
}
