//! `check`: reports damage, never repairs it.
//!
//! Structure: every pack in the index exists with its size; its header agrees with the
//! index; every snapshot's trees load and authenticate; every chunk is indexed.
//! `--read-data`: every pack is read once, its name re-hashed, and every blob opened
//! (decrypted, decompressed, id re-hashed), packs in parallel.
//! Packs that nothing indexes (left by a killed backup) are reported, not damage.

use std::collections::{HashMap, HashSet};
use std::path::Path;

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
    /// A full `--read-data` that went on from where an interrupted one stopped: when that
    /// one started (Unix seconds) and how many packs it had read.
    pub resumed: Option<(i64, u64)>,
    /// What a rolling `--read-data-within` run read, and where the repository stands.
    pub rolling: Option<Rolling>,
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
    /// Chunks that snapshots use and that are missing or damaged everywhere (counted once
    /// per file that uses them).
    pub lost_chunks: u64,
    /// Chunks that snapshots use, that no index lists, but that a pack in `packs/` holds
    /// (an index delta was lost): `repair index` makes them usable again.
    pub unindexed_chunks: u64,
    /// Packs found missing, unreadable or holding damaged blobs.
    pub damaged_packs: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The error line for a snapshot gone without a tombstone that the chain still records
/// (`Repository::broken_links`).
pub fn broken_link(link: &crate::repo::BrokenLink) -> String {
    use crate::repo::Link;
    let (missing, witness) = (&link.missing, &link.witness);
    let how = match link.how {
        Link::Parent => format!("snapshot {witness} names it as its parent"),
        Link::Seen => format!("snapshot {witness} records it in its chain"),
        Link::SeenByForgotten => {
            format!("the tombstone of snapshot {witness} records it in that snapshot's chain")
        }
    };
    format!(
        "snapshot {missing} is gone without a tombstone, but {how}: it was deleted behind the \
         repository's back (or lost); `projectclone forget --vanished` acknowledges the removal"
    )
}

/// Which packs `--read-data` reads: all, part N of M, a random percentage, or the rolling
/// share that keeps every pack read within a number of days.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Subset {
    All,
    Part(u32, u32),
    Percent(f64),
    /// `--read-data-within DAYS` ([`ReadLog`]).
    Within(u32),
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
            Subset::Within(_) => false,
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

/// What a rolling run did: the packs and bytes it read, of how many, and the state after it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Rolling {
    pub within_days: u32,
    pub packs_read: u64,
    pub bytes_read: u64,
    pub packs: u64,
    /// Packs read by no run of this client yet (each is due within the days of when it was
    /// first seen).
    pub never_read: u64,
    /// When the pack read longest ago was read (Unix seconds), if any was.
    pub oldest_read: Option<i64>,
    /// Packs past due after this run: 0 unless a read failed.
    pub overdue: u64,
}

/// This client's record of the packs it read in full and found intact
/// (`CACHE/<repository id>/read-data.json`, format-spec §13 "read-data.json"): when each
/// was last read, when unread ones were first seen, when a full read started that has not
/// finished, and when the last rolling run was.
pub struct ReadLog {
    path: Option<std::path::PathBuf>,
    state: std::sync::Mutex<(ReadState, std::time::Instant)>,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct ReadState {
    /// Pack id → when it was last read in full and found intact (Unix seconds).
    read: std::collections::BTreeMap<String, i64>,
    /// Pack id → when a rolling run first saw it unread.
    seen: std::collections::BTreeMap<String, i64>,
    /// When a full `--read-data` started that has not finished.
    full_run: Option<i64>,
    /// When the last rolling run ended.
    last_rolling: Option<i64>,
}

/// A full read interrupted longer ago than this starts over.
const RESUME_WITHIN_SECS: i64 = 7 * 86_400;

/// How often the record is written while packs are read, so a kill loses little.
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl ReadLog {
    fn load(repo: &Repository, indexed: &[(PackId, u64)]) -> ReadLog {
        let path = repo.index.path().parent().map(|d| d.join("read-data.json"));
        let mut state: ReadState = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| {
                serde_json::from_slice(&b)
                    .map_err(|e| tracing::warn!("read-data.json: unreadable ({e}); starting a new record"))
                    .ok()
            })
            .unwrap_or_default();
        // Packs pruned since are forgotten.
        let live: HashSet<String> = indexed.iter().map(|p| p.0.to_hex()).collect();
        state.read.retain(|k, _| live.contains(k));
        state.seen.retain(|k, _| live.contains(k));
        ReadLog {
            path,
            state: std::sync::Mutex::new((state, std::time::Instant::now())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (ReadState, std::time::Instant)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, state: &ReadState) {
        let Some(path) = &self.path else { return };
        let res = serde_json::to_vec(state).map_err(std::io::Error::other).and_then(|b| {
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, b)?;
            std::fs::rename(&tmp, path)
        });
        if let Err(e) = res {
            tracing::warn!(
                "{}: could not be written ({e}): the next check cannot resume",
                path.display()
            );
        }
    }

    /// A full read: go on from an interrupted one (its packs already read are skipped), or
    /// start one. Returns (when the interrupted one started, packs it had read).
    fn start_full(&self, indexed: &[(PackId, u64)], read: &mut [bool], now: i64) -> Option<(i64, u64)> {
        let mut g = self.lock();
        let resumed = match g.0.full_run {
            Some(started) if now - started < RESUME_WITHIN_SECS => {
                let mut skipped = 0;
                for (i, (id, _)) in indexed.iter().enumerate() {
                    if g.0.read.get(&id.to_hex()).is_some_and(|t| *t >= started) {
                        read[i] = false;
                        skipped += 1;
                    }
                }
                Some((started, skipped))
            }
            _ => {
                g.0.full_run = Some(now);
                None
            }
        };
        let state = g.0.clone();
        self.save(&state);
        resumed
    }

    /// A rolling run: every pack past due, then the packs read longest ago (unread ones
    /// first, by when they were first seen) until the share of the repository's bytes that
    /// the time since the last run is of `days` is read.
    fn choose_rolling(&self, indexed: &[(PackId, u64)], read: &mut [bool], days: u32, now: i64) {
        let mut g = self.lock();
        let period = i64::from(days.max(1)) * 86_400;
        for (id, _) in indexed {
            let h = id.to_hex();
            if !g.0.read.contains_key(&h) {
                g.0.seen.entry(h).or_insert(now);
            }
        }
        let since =
            g.0.last_rolling
                .map(|t| (now - t).clamp(0, period))
                .unwrap_or(86_400.min(period));
        let total: u64 = indexed.iter().map(|p| p.1).sum();
        let budget = (u128::from(total) * since as u128 / period as u128) as u64;
        let key = |h: &str| -> (bool, i64) {
            match g.0.read.get(h) {
                Some(t) => (true, *t),
                None => (false, g.0.seen.get(h).copied().unwrap_or(now)),
            }
        };
        let mut order: Vec<usize> = (0..indexed.len()).collect();
        order.sort_by_key(|i| (key(&indexed[*i].0.to_hex()), indexed[*i].0));
        let mut taken = 0u64;
        for i in order {
            let (_, t) = key(&indexed[i].0.to_hex());
            if taken < budget || t <= now - period {
                read[i] = true;
                taken += indexed[i].1;
            }
        }
    }

    /// A pack read in full and found intact just now.
    fn note(&self, id: &PackId) {
        let now = crate::repo::now_unix_ns() / 1_000_000_000;
        let mut g = self.lock();
        let h = id.to_hex();
        g.0.seen.remove(&h);
        g.0.read.insert(h, now);
        if g.1.elapsed() >= SAVE_EVERY {
            g.1 = std::time::Instant::now();
            let state = g.0.clone();
            self.save(&state);
        }
    }

    /// The run ended: a full read is no longer unfinished; a rolling one is reported.
    fn finish(&self, subset: Subset, indexed: &[(PackId, u64)], read: &[bool], now: i64) -> Option<Rolling> {
        let mut g = self.lock();
        let out = match subset {
            Subset::All => {
                g.0.full_run = None;
                None
            }
            Subset::Within(days) => {
                g.0.last_rolling = Some(now);
                let period = i64::from(days.max(1)) * 86_400;
                let mut r = Rolling {
                    within_days: days,
                    packs: indexed.len() as u64,
                    ..Rolling::default()
                };
                for ((id, size), rd) in indexed.iter().zip(read) {
                    if *rd {
                        r.packs_read += 1;
                        r.bytes_read += size;
                    }
                    let h = id.to_hex();
                    match (g.0.read.get(&h), g.0.seen.get(&h)) {
                        (Some(t), _) => {
                            r.oldest_read = Some(r.oldest_read.map_or(*t, |o: i64| o.min(*t)));
                            if *t <= now - period {
                                r.overdue += 1;
                            }
                        }
                        (None, seen) => {
                            r.never_read += 1;
                            if seen.is_some_and(|t| *t <= now - period) {
                                r.overdue += 1;
                            }
                        }
                    }
                }
                Some(r)
            }
            _ => None,
        };
        let state = g.0.clone();
        self.save(&state);
        out
    }
}

thread_local! {
    static SEED: [u8; 32] = crate::crypto::random_bytes();
}

pub fn check(repo: &Repository, read_data: bool) -> Result<CheckReport> {
    check_with(repo, if read_data { Some(Subset::All) } else { None })
}

pub fn check_with(repo: &Repository, read_data: Option<Subset>) -> Result<CheckReport> {
    check_with_progress(repo, read_data, &crate::progress::NoProgress)
}

/// [`check_with`], reporting to `progress`: one entry per pack, and the bytes of the
/// packs read in full.
pub fn check_with_progress(
    repo: &Repository,
    read_data: Option<Subset>,
    progress: &dyn crate::progress::Progress,
) -> Result<CheckReport> {
    check_inner(repo, read_data, LIVE_IN_MEMORY, progress)
}

/// Distinct chunk and tree ids the first walk keeps in memory before it moves them to the
/// index's temporary table: 16 MiB of ids. Between deduplications the vector holds up to
/// twice as many, so its allocation can reach 64 MiB just before the move.
const LIVE_IN_MEMORY: usize = 1 << 19;

/// Packs read at once from a remote store.
const REMOTE_READERS: usize = 4;

/// [`check_with`], keeping at most `live_cap` live ids in memory.
fn check_inner(
    repo: &Repository,
    read_data: Option<Subset>,
    live_cap: usize,
    progress: &dyn crate::progress::Progress,
) -> Result<CheckReport> {
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
    // The cache holds snapshots, records and deltas as they read when it loaded them: the
    // stored objects are read and authenticated again, so damage to them is found too
    // (snapshots and records always, being small; deltas with --read-data).
    let known_bad: HashSet<crate::id::ObjectId> = repo.damaged.iter().map(|d| d.id).collect();
    // An object a prune removed since the sync (it runs beside checks) is not damage.
    let removed = |e: &crate::Error| e.is_not_found();
    for (id, _) in repo.snapshots()? {
        match repo.read_snapshot_object(&id) {
            Err(e) if !removed(&e) => r.errors.push(format!("unreadable snapshot {id}: {e}")),
            _ => {}
        }
    }
    for (id, _, _) in repo.index.tombstones()? {
        match repo.read_snapshots_entry(&id) {
            Err(e) if !removed(&e) => r.errors.push(format!("unreadable tombstone {id}: {e}")),
            _ => {}
        }
    }
    // Snapshots deleted or put back behind this client's back (`trust`).
    for a in &repo.alerts {
        r.errors.push(a.to_string());
    }
    // Snapshots deleted behind every client's back: gone without a tombstone, although the
    // chain records them (oldest break first).
    for link in repo.broken_links()? {
        r.errors.push(broken_link(&link));
    }
    for rec in repo.index.condemned()? {
        if !known_bad.contains(&rec.id)
            && let Err(e) = repo.read_condemned(&rec.id)
            && !removed(&e)
        {
            r.errors.push(format!("unreadable condemned record {}: {e}", rec.id));
        }
    }
    if read_data.is_some() {
        for id in repo.index.known_deltas()? {
            if !known_bad.contains(&id)
                && let Err(e) = repo.read_delta(&id)
                && !removed(&e)
            {
                r.errors.push(format!("unreadable index delta {id}: {e}"));
            }
        }
    }
    for (name, _) in repo.backend.list(Dir::Keys)? {
        let res = repo
            .backend
            .read_object(&Dir::Keys.path(&name), crate::format::MAX_SMALL_OBJECT)
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
    // What this client read before (`read-data.json` beside the cache): a full read goes on
    // from an interrupted one, a rolling one reads the share that is due.
    let log = read_data.map(|_| ReadLog::load(repo, &indexed));
    let now_secs = crate::repo::now_unix_ns() / 1_000_000_000;
    match (read_data, &log) {
        (Some(Subset::All), Some(log)) => r.resumed = log.start_full(&indexed, &mut read, now_secs),
        (Some(Subset::Within(days)), Some(log)) => log.choose_rolling(&indexed, &mut read, days, now_secs),
        _ => {}
    }
    // Packs are verified (in parallel) while this thread walks the snapshots: on a
    // healthy repository the two never meet. Only when a pack turns out damaged is the
    // walk repeated, knowing the bad blobs, so every file that used one is named.
    let snaps = repo.snapshots()?;
    r.snapshots = snaps.len() as u64;
    let _txn = repo.index.read_txn()?;
    let walk_all = |bad: &HashSet<BlobId>, r: &mut CheckReport| -> Result<HashSet<TreeId>> {
        // Chunks no index lists may still be stored in a pack no index lists (its delta
        // was lost): that is recoverable by `repair index`, not lost.
        let mut unindexed = HashSet::new();
        let marks = repo.index.damage()?;
        for p in &r.unreferenced_packs {
            // A pack known damaged (one `repair index` salvaged) holds nothing to recover
            // beyond what it already copied.
            if marks.iter().any(|(m, b, _)| m.to_hex() == *p && b.is_none()) {
                continue;
            }
            let size = p
                .parse::<PackId>()
                .ok()
                .and_then(|id| listed.get(&id).copied())
                .unwrap_or(0);
            match read_header(repo, &Dir::Packs.path(p), size) {
                Ok(entries) => unindexed.extend(
                    entries
                        .into_iter()
                        .map(|e| e.id)
                        .filter(|id| !marks.iter().any(|(m, b, _)| m.to_hex() == *p && b.as_ref() == Some(id))),
                ),
                Err(e) => tracing::warn!("pack {p} (no index lists it): header unreadable: {e}"),
            }
        }
        // Chunks already verified live in a temporary SQLite table: memory stays bounded
        // however many chunks the repository holds.
        repo.index.live_reset()?;
        let mut w = DamageWalk {
            repo,
            bad,
            unindexed: &unindexed,
            memo: HashMap::new(),
            seen_trees: HashSet::new(),
            lost: 0,
            recoverable: 0,
        };
        for (sid, snap) in &snaps {
            let found = w.tree(&snap.tree);
            if !found.is_empty() {
                r.damaged_snapshots.push(sid.to_hex());
            }
            r.errors.extend(found.iter().map(|f| f.render(sid)));
        }
        r.lost_chunks = w.lost;
        r.unindexed_chunks = w.recoverable;
        Ok(w.seen_trees)
    };
    // The first walk assumes a healthy repository: it only collects every reachable chunk
    // and tree into the live set, then one pass over the index asks whether any is not
    // indexed and which packs hold none. It also runs beside the pack workers.
    let fast_walk = || -> Result<Option<(HashSet<TreeId>, Vec<PackId>)>> {
        let mut seen_trees: HashSet<TreeId> = HashSet::new();
        let mut live = FastLive::new(repo, live_cap)?;
        for (_, snap) in &snaps {
            if !walk_fast(repo, &snap.tree, &mut seen_trees, &mut live)? {
                return Ok(None);
            }
        }
        Ok(live.finish(&seen_trees)?.map(|unused| (seen_trees, unused)))
    };
    // One pack buffer and one plaintext buffer per worker, reused: no fresh pages to fault
    // in per pack.
    let packs_read = PerThread::new(Vec::new);
    let plains = PerThread::new(Vec::new);
    // The walk runs on a thread of its own, outside the pool: it mostly waits for tree
    // reads, and both pool threads keep verifying packs meanwhile.
    let (results, first_walk) = std::thread::scope(|s| {
        // Without a thread (the system refused one), the walk runs after the packs.
        let walker = std::thread::Builder::new()
            .name("check-walk".into())
            .spawn_scoped(s, fast_walk)
            .map_err(|e| tracing::debug!("check: no walk thread ({e}); walking after the packs"));
        progress.add_total(
            indexed.len() as u64,
            indexed
                .iter()
                .zip(&read)
                .filter(|(_, rd)| **rd)
                .map(|((_, size), _)| size)
                .sum(),
        );
        let verify = || -> Vec<PackCheck> {
            indexed
                .par_iter()
                .zip(read.par_iter())
                .map(|((id, size), rd)| {
                    progress.current(Path::new(&id.to_hex()));
                    let pc = packs_read
                        .with(|buf| check_pack(repo, id, *size, listed.get(id).copied(), *rd, buf, &plains, progress));
                    if *rd {
                        // What the blobs did not cover (the header, a pack that failed):
                        // the bytes done reach the pack's size.
                        progress.add_bytes(size.saturating_sub(pc.progressed));
                        if pc.errors.is_empty()
                            && let Some(log) = &log
                        {
                            log.note(id);
                        }
                    }
                    if !pc.errors.is_empty() {
                        progress.error();
                    }
                    progress.file_done();
                    pc
                })
                .collect()
        };
        // On a remote store each pack read waits on the network: more readers than cores
        // keep both cores verifying while the next packs arrive (each holds one pack's
        // buffers, so a few, not many).
        let results = match crate::restore::remote_pool(repo, REMOTE_READERS) {
            Some(pool) => pool.install(verify),
            None => verify(),
        };
        let walked = match walker {
            Ok(w) => w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(()) => fast_walk(),
        };
        (results, walked)
    });
    let mut bad_blobs: HashSet<BlobId> = HashSet::new();
    let now = crate::repo::now_unix_ns();
    for ((pack, _), (pc, rd)) in indexed.iter().zip(results.iter().zip(&read)) {
        r.errors.extend(pc.errors.iter().cloned());
        bad_blobs.extend(pc.bad.iter().copied());
        r.blobs_read += pc.read;
        // What this check learnt is remembered in the cache: reads, dedup and prune stop
        // relying on damaged copies (`Index::note_damage`). A pack read in full and found
        // intact loses its marks; a structural check can only disprove "missing" and "wrong
        // size" (damage inside a pack is found only by reading it).
        if let Some(why) = &pc.whole {
            repo.index.note_damage(pack, None, why, now)?;
        } else if !pc.bad.is_empty() {
            let why = if *rd {
                "failed to authenticate when read in full"
            } else {
                "the index lists it where the pack's header does not"
            };
            for b in &pc.bad {
                repo.index.note_damage(pack, Some(b), why, now)?;
            }
        } else if pc.errors.is_empty() {
            if *rd {
                repo.index.clear_damage(pack)?;
            } else {
                repo.index.clear_structural_damage(pack)?;
            }
        }
        if pc.whole.is_some() || !pc.bad.is_empty() {
            r.damaged_packs.push(pack.to_hex());
        }
    }
    // Damage anywhere (a bad pack, an unreadable tree, a chunk not indexed): walk again,
    // naming every file and snapshot affected.
    let (seen_trees, unused) = match first_walk? {
        Some(w) if bad_blobs.is_empty() => w,
        _ => {
            let seen_trees = walk_all(&bad_blobs, &mut r)?;
            let unused = unused_packs_from_table(repo, &seen_trees)?;
            (seen_trees, unused)
        }
    };
    r.trees = seen_trees.len() as u64;
    if let (Some(subset), Some(log)) = (read_data, &log) {
        r.rolling = log.finish(subset, &indexed, &read, now_secs);
    }
    // Unused packs are left by a backup killed after writing its index delta but before its
    // snapshot. Reported, not damage.
    let missing: HashSet<PackId> = indexed
        .iter()
        .filter(|(id, _)| !listed.contains_key(id))
        .map(|p| p.0)
        .collect();
    for p in unused {
        if !missing.contains(&p) {
            r.unused_packs.push(p.to_hex());
        }
    }
    r.unreferenced_packs.sort();
    // Nothing lost any more (a clean check after repairs): backups may reuse their
    // parents' contents without looking each chunk up again. Marks of packs that left the
    // index (salvaged ones awaiting prune) do not count.
    if r.ok() && !repo.index.damage()?.iter().any(|(p, _, _)| indexed_set.contains(p)) {
        repo.index.set_verify_before(None)?;
    }
    Ok(r)
}

struct PackCheck {
    errors: Vec<String>,
    /// Blobs found damaged or missing.
    bad: Vec<BlobId>,
    read: u64,
    /// Bytes of the pack reported to the progress as its blobs were verified.
    progressed: u64,
    /// Why the pack as a whole cannot be trusted (missing, wrong size, header unreadable,
    /// content not matching its name), if so.
    whole: Option<String>,
}

/// Check one pack: its size, its header against the index and, with `read_data`, its
/// contents, reporting the bytes of each group of blobs to `progress` once verified.
#[allow(clippy::too_many_arguments)]
fn check_pack(
    repo: &Repository,
    id: &PackId,
    size: u64,
    listed: Option<u64>,
    read_data: bool,
    buf: &mut Vec<u8>,
    plains: &PerThread<Vec<u8>>,
    progress: &dyn crate::progress::Progress,
) -> PackCheck {
    let progressed = std::sync::atomic::AtomicU64::new(0);
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
                progressed: 0,
                whole: None,
            };
        }
    };
    let all_bad = |bad: &mut Vec<BlobId>| bad.extend(indexed.iter().map(|(b, _)| *b));
    let mut whole = None;
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
                progressed: 0,
                whole: Some("missing from the repository".into()),
            };
        }
        Some(s) if s != size => {
            errs.push(format!("pack {id}: size {s}, index says {size}"));
            whole = Some(format!("size {s}, index says {size}"));
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
                    whole = Some("content does not match its name (damaged or swapped)".into());
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
                                    // Within a pack too: a large pack moves the count as it goes.
                                    progressed.fetch_add(e.length as u64, std::sync::atomic::Ordering::Relaxed);
                                    progress.add_bytes(e.length as u64);
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
            // A failure that may pass (a timeout) says nothing about the blobs.
            if e.is_damage() {
                whole = Some(format!("header unreadable: {e}"));
                all_bad(&mut bad);
            }
        }
    }
    PackCheck {
        errors: errs,
        bad,
        read: n,
        progressed: progressed.into_inner(),
        whole,
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

/// Put every chunk reachable from `tree` into `live`, and every tree and chunk-list page
/// into `seen_trees`; `false` when a tree or chunk list cannot be read.
fn walk_fast(repo: &Repository, tree: &TreeId, seen_trees: &mut HashSet<TreeId>, live: &mut FastLive) -> Result<bool> {
    if !seen_trees.insert(*tree) {
        return Ok(true);
    }
    let Ok((nodes, pages)) = repo.load_tree_pages(tree) else {
        return Ok(false);
    };
    seen_trees.extend(pages);
    walk_fast_nodes(repo, nodes, seen_trees, live)
}

/// `walk_fast` for the nodes of one directory, however it is stored.
fn walk_fast_nodes(
    repo: &Repository,
    nodes: Vec<Node>,
    seen_trees: &mut HashSet<TreeId>,
    live: &mut FastLive,
) -> Result<bool> {
    for n in nodes {
        match &n.kind {
            NodeKind::Dir(t) if !walk_fast(repo, t, seen_trees, live)? => return Ok(false),
            NodeKind::InlineDir(b) => {
                let Ok(sub) = crate::format::decode_inline_dir(b) else {
                    return Ok(false);
                };
                if !walk_fast_nodes(repo, sub, seen_trees, live)? {
                    return Ok(false);
                }
            }
            NodeKind::File(d) | NodeKind::HardLink { data: d, .. } => match &d.content {
                Content::Chunks(c) => live.add(c.iter().map(|c| BlobId(c.id.0)))?,
                c => {
                    if let Content::Pages(p) = c {
                        seen_trees.extend(p.iter().copied());
                    }
                    let Ok(chunks) = repo.chunk_list(c) else {
                        return Ok(false);
                    };
                    live.add(chunks.iter().map(|c| BlobId(c.id.0)))?;
                }
            },
            _ => {}
        }
    }
    Ok(true)
}

/// Indexed packs holding no blob of the live table nor any of `trees`: the trees join the
/// chunks in the table so one query answers it.
fn unused_packs_from_table(repo: &Repository, trees: &HashSet<TreeId>) -> Result<Vec<PackId>> {
    let trees: Vec<BlobId> = trees.iter().map(|t| BlobId(t.0)).collect();
    repo.index.live_insert(&trees)?;
    repo.index.packs_without_live()
}

/// Ids sent to the temporary table at a time, once it is used.
const LIVE_BATCH: usize = 16384;

/// The first walk's live set: in memory, sorted and deduplicated as it grows, while it
/// holds at most `cap` distinct ids; past that in the index's temporary table, so memory
/// stays bounded however many chunks the repository holds.
struct FastLive<'r> {
    repo: &'r Repository,
    cap: usize,
    ids: Vec<BlobId>,
    /// `ids` is compacted (or sent to the table) when it reaches this length.
    compact_at: usize,
    in_table: bool,
}

impl<'r> FastLive<'r> {
    fn new(repo: &'r Repository, cap: usize) -> Result<Self> {
        repo.index.live_reset()?;
        Ok(FastLive {
            repo,
            cap,
            ids: Vec::new(),
            compact_at: LIVE_BATCH,
            in_table: false,
        })
    }

    fn add(&mut self, ids: impl Iterator<Item = BlobId>) -> Result<()> {
        self.ids.extend(ids);
        if self.ids.len() >= self.compact_at {
            self.compact()?;
        }
        Ok(())
    }

    fn compact(&mut self) -> Result<()> {
        // Sorted, the table's B-tree inserts touch neighbouring pages.
        self.ids.sort_unstable();
        self.ids.dedup();
        if self.in_table || self.ids.len() > self.cap {
            self.repo.index.live_insert(&self.ids)?;
            self.ids.clear();
            if !self.in_table {
                // From now on it holds one batch at a time.
                self.ids.shrink_to(2 * LIVE_BATCH);
            }
            self.in_table = true;
            self.compact_at = LIVE_BATCH;
        } else {
            self.compact_at = (2 * self.ids.len()).max(LIVE_BATCH);
        }
        Ok(())
    }

    /// Add the trees; `None` when a live id is not indexed, else the indexed packs that
    /// hold no live id.
    fn finish(mut self, trees: &HashSet<TreeId>) -> Result<Option<Vec<PackId>>> {
        self.compact()?;
        if self.in_table {
            if self.repo.index.live_has_unindexed()? {
                return Ok(None);
            }
            return Ok(Some(unused_packs_from_table(self.repo, trees)?));
        }
        self.ids.extend(trees.iter().map(|t| BlobId(t.0)));
        self.ids.sort_unstable();
        self.ids.dedup();
        self.repo.index.packs_without_sorted(&self.ids)
    }
}

/// One finding of the damage walk, relative to the directory it was found under: the
/// entry's path below that directory (empty for the directory itself) and what is wrong.
#[derive(Clone)]
struct Finding {
    rel: Vec<u8>,
    what: FindingKind,
}

#[derive(Clone)]
enum FindingKind {
    /// The directory's listing cannot be read.
    Dir(String),
    /// A file's chunk list cannot be read.
    ChunkList(String),
    /// Chunks of a file that no index lists and no pack holds, or whose copies are damaged.
    Lost(usize),
    /// Chunks of a file that no index lists but a pack in the repository still holds.
    Unindexed(usize),
    /// A directory listing (or a file's chunk list) that no index lists but a pack in the
    /// repository still holds.
    UnindexedTree,
}

impl Finding {
    fn under(mut self, name: &[u8]) -> Finding {
        let mut rel = name.to_vec();
        if !self.rel.is_empty() {
            rel.push(b'/');
            rel.extend_from_slice(&self.rel);
        }
        self.rel = rel;
        self
    }

    fn render(&self, sid: &SnapshotId) -> String {
        let p = shown(&self.rel);
        match &self.what {
            FindingKind::Dir(e) => format!("snapshot {}: directory {p}: {e}", sid.short()),
            FindingKind::ChunkList(e) => format!("snapshot {}: file {p}: chunk list: {e}", sid.short()),
            FindingKind::Lost(n) => format!("snapshot {}: file {p}: {n} chunk(s) missing or damaged", sid.short()),
            FindingKind::Unindexed(n) => format!(
                "snapshot {}: file {p}: {n} chunk(s) not in the index but still stored in a pack no index lists",
                sid.short()
            ),
            FindingKind::UnindexedTree => format!(
                "snapshot {}: {p}: listing not in the index but still stored in a pack no index lists",
                sid.short()
            ),
        }
    }
}

/// The damage walk: every snapshot's trees, every file's chunks. Findings are kept per
/// directory, so a subtree shared by several snapshots is walked once and its findings are
/// reported for each snapshot that reaches it, under that snapshot's path.
struct DamageWalk<'a> {
    repo: &'a Repository,
    /// Blobs found damaged or missing in some pack.
    bad: &'a HashSet<BlobId>,
    /// Blob ids held by packs that no index lists (read from their headers).
    unindexed: &'a HashSet<BlobId>,
    memo: HashMap<TreeId, Vec<Finding>>,
    seen_trees: HashSet<TreeId>,
    lost: u64,
    recoverable: u64,
}

impl DamageWalk<'_> {
    fn tree(&mut self, tree: &TreeId) -> Vec<Finding> {
        if let Some(f) = self.memo.get(tree) {
            return f.clone();
        }
        self.seen_trees.insert(*tree);
        let found = match self.repo.load_tree_pages(tree) {
            Ok((nodes, pages)) => {
                // Continuation pages are used too (for the unused-pack report).
                self.seen_trees.extend(pages);
                self.nodes(nodes)
            }
            Err(_) if self.unindexed.contains(&BlobId(tree.0)) => {
                self.recoverable += 1;
                vec![Finding {
                    rel: Vec::new(),
                    what: FindingKind::UnindexedTree,
                }]
            }
            Err(e) => {
                self.lost += 1;
                vec![Finding {
                    rel: Vec::new(),
                    what: FindingKind::Dir(e.to_string()),
                }]
            }
        };
        self.memo.insert(*tree, found.clone());
        found
    }

    /// The findings of one directory's nodes, however the directory is stored.
    fn nodes(&mut self, nodes: Vec<Node>) -> Vec<Finding> {
        let mut out = Vec::new();
        for n in nodes {
            match &n.kind {
                NodeKind::Dir(t) => out.extend(self.tree(t).into_iter().map(|f| f.under(&n.name))),
                NodeKind::InlineDir(b) => match crate::format::decode_inline_dir(b) {
                    Ok(sub) => out.extend(self.nodes(sub).into_iter().map(|f| f.under(&n.name))),
                    Err(e) => out.push(Finding {
                        rel: n.name.clone(),
                        what: FindingKind::Dir(e.to_string()),
                    }),
                },
                NodeKind::File(d) | NodeKind::HardLink { data: d, .. } => {
                    if let Content::Pages(pages) = &d.content {
                        self.seen_trees.extend(pages.iter().copied());
                    }
                    let chunks = match &d.content {
                        Content::Chunks(c) => c.clone(),
                        c => match self.repo.chunk_list(c) {
                            Ok(c) => c,
                            Err(e) => {
                                let recoverable = matches!(c, Content::Pages(p) if p.iter().any(|p| self.unindexed.contains(&BlobId(p.0))));
                                let what = if recoverable {
                                    self.recoverable += 1;
                                    FindingKind::UnindexedTree
                                } else {
                                    self.lost += 1;
                                    FindingKind::ChunkList(e.to_string())
                                };
                                out.push(Finding {
                                    rel: n.name.clone(),
                                    what,
                                });
                                continue;
                            }
                        },
                    };
                    let (mut lost, mut recoverable) = (0, 0);
                    let ids: Vec<BlobId> = chunks.iter().map(|c| BlobId(c.id.0)).collect();
                    let new = self
                        .repo
                        .index
                        .live_insert(&ids)
                        .unwrap_or_else(|_| vec![true; ids.len()]);
                    for (b, new) in ids.iter().zip(new) {
                        if self.bad.contains(b) {
                            lost += 1;
                        } else if new && !self.repo.index.exists_any(b).unwrap_or(false) {
                            // Any copy counts, also in a condemned pack: it still exists. A
                            // missing chunk leaves the live set so every file using it is named.
                            let _ = self.repo.index.live_remove(b);
                            if self.unindexed.contains(b) {
                                recoverable += 1;
                            } else {
                                lost += 1;
                            }
                        }
                    }
                    self.lost += lost as u64;
                    self.recoverable += recoverable as u64;
                    for (k, count) in [
                        (FindingKind::Lost(lost), lost),
                        (FindingKind::Unindexed(recoverable), recoverable),
                    ] {
                        if count > 0 {
                            out.push(Finding {
                                rel: n.name.clone(),
                                what: k,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }
}

fn shown(p: &[u8]) -> String {
    if p.is_empty() {
        "/".to_string()
    } else {
        crate::format_name(p)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::Backend;
    use crate::backend::local::LocalBackend;
    use crate::backup::{BackupOptions, backup};
    use crate::progress::NoProgress;
    use crate::repo::test_init_options;

    /// The first walk's live set answers the same whether it stays in memory or moves to
    /// the temporary table: packs no snapshot uses, trees counted, no damage.
    #[test]
    fn the_live_set_in_memory_and_in_the_table_agree() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("d")).unwrap();
        let write = |name: &str, seed: u32, len: usize| {
            let mut data = vec![0u8; len];
            blake3::Hasher::new()
                .update(&seed.to_le_bytes())
                .finalize_xof()
                .fill(&mut data);
            std::fs::write(src.join(name), data).unwrap();
        };
        for i in 0..40u32 {
            write(&format!("d/f{i}"), i, 20_000 + 997 * i as usize);
        }
        let backend = Arc::new(LocalBackend::new(t.path().join("repo")));
        let cache = t.path().join("cache");
        let mut repo = Repository::init(backend.clone(), None, &test_init_options(), &cache).unwrap();
        let opts = BackupOptions {
            paths: vec![src.clone()],
            hostname: "h".into(),
            ..Default::default()
        };
        backup(&mut repo, &opts, &NoProgress, None).unwrap();
        // A second backup whose snapshot is then lost (killed before writing it): its packs
        // are used by no snapshot.
        write("orphan", 99, 600_000);
        let lost = backup(&mut repo, &opts, &NoProgress, None)
            .unwrap()
            .snapshot_id
            .unwrap();
        backend.delete(&Dir::Snapshots.path(&lost.to_hex())).unwrap();
        let repo = Repository::open(backend, None, &cache).unwrap();
        let in_memory = check_inner(&repo, Some(Subset::All), LIVE_IN_MEMORY, &NoProgress).unwrap();
        let in_table = check_inner(&repo, Some(Subset::All), 0, &NoProgress).unwrap();
        assert!(in_memory.ok(), "{:?}", in_memory.errors);
        assert!(!in_memory.unused_packs.is_empty());
        assert!(in_memory.trees > 1);
        for (a, b) in [
            (&in_memory.unused_packs, &in_table.unused_packs),
            (&in_memory.errors, &in_table.errors),
            (&in_memory.damaged_snapshots, &in_table.damaged_snapshots),
        ] {
            assert_eq!(a, b);
        }
        assert_eq!(
            (in_memory.trees, in_memory.blobs_read, in_memory.snapshots),
            (in_table.trees, in_table.blobs_read, in_table.snapshots)
        );
    }
}
