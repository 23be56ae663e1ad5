//! Parity across groups of packs (format-spec §20): Reed-Solomon recovery shards, so that a
//! pack that is lost whole or damaged is rebuilt byte for byte from the rest of its group.
//! Remote stores lose whole objects more often than bits; a local disk loses sectors.
//!
//! `parity create` groups the packs no parity covers yet (by id, `group` packs each) and
//! writes `shards` recovery objects per group into `parity/`: each holds one recovery shard
//! computed over the group's packs (each padded with zeros to the longest), with a sealed
//! header naming the packs, their lengths and the shard's BLAKE3. Any `shards` packs of a
//! group can then be rebuilt. `parity rebuild` does it for packs that are missing, of the
//! wrong size, marked damaged by `check`, or whose bytes do not hash to their id, and
//! writes each only after its BLAKE3 equals its id. A group that lost a pack to prune can
//! no longer rebuild the others; `parity create` replaces such groups.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::backend::Dir;
use crate::error::{Error, Result};
use crate::format::{self, Kind};
use crate::id::{ObjectId, PackId};
use crate::repo::Repository;

/// Packs per group unless told otherwise.
pub const DEFAULT_GROUP: usize = 8;
/// Recovery shards per group unless told otherwise.
pub const DEFAULT_SHARDS: usize = 1;
/// Largest group and largest number of shards accepted.
pub const MAX_GROUP: usize = 64;
pub const MAX_SHARDS: usize = 16;
/// Bytes before the sealed header: the envelope and its length (u32, little endian).
const PREFIX: usize = 6 + 4;
/// A sealed header larger than this is refused before it is read.
const MAX_HEADER: usize = 64 * 1024;

/// The sealed header of a parity object (structure version 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParityHeader {
    /// The group's packs in shard order, with their lengths.
    pub packs: Vec<(PackId, u64)>,
    /// How many recovery shards the group has.
    pub recovery: u16,
    /// Which of them this object holds (0-based).
    pub index: u16,
    /// Bytes of the shard: the longest pack rounded up to a multiple of 64.
    pub shard_len: u64,
    /// BLAKE3 of the shard bytes that follow the header.
    pub shard_hash: [u8; 32],
}

/// A group as the parity objects describe it.
#[derive(Clone, Debug)]
pub struct Group {
    pub packs: Vec<(PackId, u64)>,
    pub recovery: u16,
    pub shard_len: u64,
    /// Recovery shard index → parity object.
    pub shards: BTreeMap<u16, ObjectId>,
}

/// What `parity status` and `parity create` say.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub packs: u64,
    pub pack_bytes: u64,
    /// Packs in a group whose packs are all still indexed.
    pub covered: u64,
    pub groups: u64,
    /// Groups that lost a pack (pruned): they protect nothing fully any more.
    pub broken_groups: u64,
    pub parity_objects: u64,
    pub parity_bytes: u64,
    /// Parity objects whose header could not be read.
    pub unreadable: Vec<String>,
}

/// What `parity create` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CreateReport {
    pub groups_written: u64,
    pub packs_grouped: u64,
    pub bytes_written: u64,
    /// Parity objects of broken groups deleted after their packs were grouped anew.
    pub removed: u64,
    /// Packs left out because their bytes do not hash to their id (rebuild or repair them).
    pub damaged: Vec<String>,
    pub status: Status,
}

/// What `parity rebuild` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RebuildReport {
    /// Packs written back (or, in a dry run, that would be).
    pub rebuilt: Vec<String>,
    /// Packs that needed rebuilding but whose group had too few intact shards.
    pub unrecoverable: Vec<String>,
    pub dry_run: bool,
}

fn object_path(id: &ObjectId) -> String {
    Dir::Parity.path(&id.to_hex())
}

/// Read and open the header of parity object `id` (only its first bytes are read).
fn read_header(repo: &Repository, id: &ObjectId) -> Result<ParityHeader> {
    let path = object_path(id);
    let head = repo.backend.read_range(&path, 0, PREFIX)?;
    let len = header_len(&head, id)?;
    let mut bytes = head;
    bytes.extend_from_slice(&repo.backend.read_range(&path, PREFIX as u64, len)?);
    open_header(repo.repo_id(), &repo.cipher, &repo.keys, id, &bytes)
}

/// The sealed header's length from the first [`PREFIX`] bytes of a parity object.
fn header_len(head: &[u8], id: &ObjectId) -> Result<usize> {
    let what = format!("parity object {id}");
    format::strip_envelope(Kind::Parity, head, &what)?;
    let len = head
        .get(6..PREFIX)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| Error::corrupt(format!("{what}: shorter than its prefix")))?;
    if len > MAX_HEADER {
        return Err(Error::corrupt(format!("{what}: header of {len} bytes")));
    }
    Ok(len)
}

/// Open a parity object's header from its first bytes (the prefix and the sealed header;
/// more bytes after it are ignored): authenticated, named by its id, and consistent.
pub fn open_header(
    repo_id: &[u8; 32],
    cipher: &crate::crypto::Cipher,
    keys: &crate::crypto::Keys,
    id: &ObjectId,
    bytes: &[u8],
) -> Result<ParityHeader> {
    let what = format!("parity object {id}");
    let len = header_len(bytes, id)?;
    let sealed = bytes
        .get(PREFIX..PREFIX + len)
        .ok_or_else(|| Error::corrupt(format!("{what}: shorter than its header")))?;
    let mut framed = format::envelope(Kind::Parity).to_vec();
    framed.extend_from_slice(sealed);
    let plain = format::open_sealed(repo_id, cipher, Kind::Parity, &id.0, &framed, &what)?;
    if keys.meta_id(&plain) != id.0 {
        return Err(Error::corrupt(format!("{what}: content does not match its name")));
    }
    let h: ParityHeader = format::decode_versioned(1, &plain, &what)?;
    if h.packs.is_empty()
        || h.packs.len() > MAX_GROUP
        || h.recovery == 0
        || usize::from(h.recovery) > MAX_SHARDS
        || h.index >= h.recovery
        || h.shard_len == 0
        || !h.shard_len.is_multiple_of(64)
        || h.packs.iter().any(|p| p.1 > h.shard_len)
    {
        return Err(Error::corrupt(format!("{what}: inconsistent header")));
    }
    Ok(h)
}

/// A parity object: the prefix, the sealed header, then the shard (format-spec §20).
pub fn seal(
    repo_id: &[u8; 32],
    cipher: &crate::crypto::Cipher,
    keys: &crate::crypto::Keys,
    h: &ParityHeader,
    shard: &[u8],
) -> (ObjectId, Vec<u8>) {
    let plain = format::encode_versioned(1, h);
    let id = ObjectId(keys.meta_id(&plain));
    let sealed = format::seal_object(repo_id, cipher, Kind::Parity, &id.0, &plain);
    let mut bytes = Vec::with_capacity(PREFIX + sealed.len() + shard.len());
    bytes.extend_from_slice(&sealed[..6]);
    bytes.extend_from_slice(&((sealed.len() - 6) as u32).to_le_bytes());
    bytes.extend_from_slice(&sealed[6..]);
    bytes.extend_from_slice(shard);
    (id, bytes)
}

/// The shard bytes of parity object `id`, checked against its header.
fn read_shard(repo: &Repository, id: &ObjectId, h: &ParityHeader) -> Result<Vec<u8>> {
    let path = object_path(id);
    let head = repo.backend.read_range(&path, 0, PREFIX)?;
    let len = u32::from_le_bytes(head[6..10].try_into().expect("4 bytes")) as u64;
    let shard = repo
        .backend
        .read_range(&path, PREFIX as u64 + len, h.shard_len as usize)?;
    if blake3::hash(&shard).as_bytes() != &h.shard_hash {
        return Err(Error::corrupt(format!(
            "parity object {id}: its shard does not match its hash"
        )));
    }
    Ok(shard)
}

/// Every group the parity objects describe, and the objects that could not be read.
pub fn groups(repo: &Repository) -> Result<(Vec<Group>, Vec<(ObjectId, u64)>, Vec<String>)> {
    let mut by_packs: HashMap<Vec<(PackId, u64)>, Group> = HashMap::new();
    let mut objects = Vec::new();
    let mut unreadable = Vec::new();
    for (name, size) in repo.backend.list(Dir::Parity)? {
        let Some(id) = crate::repo::object_name(&name).map(ObjectId) else {
            continue;
        };
        objects.push((id, size));
        match read_header(repo, &id) {
            Ok(h) => {
                let g = by_packs.entry(h.packs.clone()).or_insert_with(|| Group {
                    packs: h.packs.clone(),
                    recovery: h.recovery,
                    shard_len: h.shard_len,
                    shards: BTreeMap::new(),
                });
                g.shards.insert(h.index, id);
            }
            Err(e) => unreadable.push(format!("{id}: {e}")),
        }
    }
    let mut groups: Vec<Group> = by_packs.into_values().collect();
    groups.sort_by(|a, b| a.packs.cmp(&b.packs));
    Ok((groups, objects, unreadable))
}

/// Coverage now.
pub fn status(repo: &Repository) -> Result<Status> {
    let indexed: HashMap<PackId, u64> = repo.index.packs()?.into_iter().collect();
    let (groups, objects, unreadable) = groups(repo)?;
    let mut s = Status {
        packs: indexed.len() as u64,
        pack_bytes: indexed.values().sum(),
        parity_objects: objects.len() as u64,
        parity_bytes: objects.iter().map(|o| o.1).sum(),
        unreadable,
        ..Status::default()
    };
    let mut covered = HashSet::new();
    for g in &groups {
        s.groups += 1;
        if g.packs.iter().all(|p| indexed.contains_key(&p.0)) && g.shards.len() == usize::from(g.recovery) {
            covered.extend(g.packs.iter().map(|p| p.0));
        } else {
            s.broken_groups += 1;
        }
    }
    s.covered = covered.len() as u64;
    Ok(s)
}

/// Cover every indexed pack that no whole group covers: groups of `group` packs by id,
/// `shards` recovery objects each; then delete the objects of broken groups (unless the
/// store is append-only).
pub fn create(repo: &Repository, group: usize, shards: usize) -> Result<CreateReport> {
    if !(1..=MAX_GROUP).contains(&group) || !(1..=MAX_SHARDS).contains(&shards) {
        return Err(Error::Invalid(format!(
            "a group holds 1 to {MAX_GROUP} packs and 1 to {MAX_SHARDS} parity shards (given {group} and {shards})"
        )));
    }
    let indexed: HashMap<PackId, u64> = repo.index.packs()?.into_iter().collect();
    let (groups, _, _) = groups(repo)?;
    let mut covered = HashSet::new();
    let mut broken = Vec::new();
    for g in &groups {
        if g.packs.iter().all(|p| indexed.contains_key(&p.0)) && g.shards.len() == usize::from(g.recovery) {
            covered.extend(g.packs.iter().map(|p| p.0));
        } else {
            broken.extend(g.shards.values().copied());
        }
    }
    let mut todo: Vec<PackId> = indexed.keys().filter(|p| !covered.contains(p)).copied().collect();
    todo.sort();
    let mut report = CreateReport::default();
    for chunk in todo.chunks(group) {
        let mut packs = Vec::new();
        let mut data = Vec::new();
        for p in chunk {
            let bytes = repo.backend.read(&Dir::Packs.path(&p.to_hex()))?;
            if blake3::hash(&bytes).as_bytes() != &p.0 {
                report.damaged.push(p.to_hex());
                continue;
            }
            packs.push((*p, bytes.len() as u64));
            data.push(bytes);
        }
        if data.is_empty() {
            continue;
        }
        let shard_len = data.iter().map(Vec::len).max().unwrap_or(0).max(1).next_multiple_of(64);
        for d in &mut data {
            d.resize(shard_len, 0);
        }
        let recovery =
            reed_solomon_simd::encode(data.len(), shards, &data).map_err(|e| Error::Invalid(format!("parity: {e}")))?;
        drop(data);
        for (i, shard) in recovery.iter().enumerate() {
            let h = ParityHeader {
                packs: packs.clone(),
                recovery: shards as u16,
                index: i as u16,
                shard_len: shard_len as u64,
                shard_hash: *blake3::hash(shard).as_bytes(),
            };
            let (id, bytes) = seal(repo.repo_id(), &repo.cipher, &repo.keys, &h, shard);
            repo.backend.write_new(&object_path(&id), &bytes)?;
            report.bytes_written += bytes.len() as u64;
        }
        report.groups_written += 1;
        report.packs_grouped += packs.len() as u64;
    }
    if !repo.backend.append_only() {
        for id in broken {
            repo.backend.delete(&object_path(&id))?;
            report.removed += 1;
        }
    }
    report.status = status(repo)?;
    Ok(report)
}

/// Rebuild the packs of every group that are missing, of the wrong size, marked damaged,
/// or that do not hash to their id, when the group has enough intact shards.
pub fn rebuild(repo: &Repository, dry_run: bool) -> Result<RebuildReport> {
    let listed: HashMap<String, u64> = repo.backend.list(Dir::Packs)?.into_iter().collect();
    let marked: HashSet<PackId> = repo.index.damage()?.into_iter().map(|d| d.0).collect();
    let (groups, _, _) = groups(repo)?;
    let mut report = RebuildReport {
        dry_run,
        ..RebuildReport::default()
    };
    for g in groups {
        let suspect = |p: &(PackId, u64)| listed.get(&p.0.to_hex()) != Some(&p.1) || marked.contains(&p.0);
        if !g.packs.iter().any(suspect) {
            continue;
        }
        // Read every pack of the group: the intact ones are the original shards.
        let mut originals = Vec::new();
        let mut lost = Vec::new();
        for (i, p) in g.packs.iter().enumerate() {
            let bytes = if listed.get(&p.0.to_hex()) == Some(&p.1) {
                repo.backend.read(&Dir::Packs.path(&p.0.to_hex())).ok()
            } else {
                None
            };
            match bytes {
                Some(mut b) if blake3::hash(&b).as_bytes() == &p.0.0 => {
                    b.resize(g.shard_len as usize, 0);
                    originals.push((i, b));
                }
                _ => lost.push(i),
            }
        }
        if lost.is_empty() {
            // Marked damaged, but every byte is intact: the marks are stale.
            for p in &g.packs {
                if marked.contains(&p.0) && !dry_run {
                    repo.index.clear_damage(&p.0)?;
                }
            }
            continue;
        }
        let mut recovery = Vec::new();
        for (idx, id) in &g.shards {
            if let Ok(h) = read_header(repo, id)
                && h.packs == g.packs
                && let Ok(shard) = read_shard(repo, id, &h)
            {
                recovery.push((usize::from(*idx), shard));
            }
        }
        let names = |v: &[usize]| -> Vec<String> { v.iter().map(|i| g.packs[*i].0.to_hex()).collect() };
        if recovery.len() < lost.len() {
            report.unrecoverable.extend(names(&lost));
            continue;
        }
        let restored = reed_solomon_simd::decode(
            g.packs.len(),
            usize::from(g.recovery),
            originals.iter().map(|(i, b)| (*i, b)),
            recovery.iter().map(|(i, b)| (*i, b)),
        )
        .map_err(|e| Error::corrupt(format!("parity: {e}")))?;
        for i in lost {
            let (id, len) = g.packs[i];
            let Some(bytes) = restored.get(&i).map(|b| &b[..len as usize]) else {
                report.unrecoverable.push(id.to_hex());
                continue;
            };
            if blake3::hash(bytes).as_bytes() != &id.0 {
                report.unrecoverable.push(id.to_hex());
                continue;
            }
            if !dry_run {
                let path = Dir::Packs.path(&id.to_hex());
                if listed.contains_key(&id.to_hex()) {
                    repo.backend.delete(&path)?;
                }
                repo.backend.write_new(&path, bytes)?;
                repo.index.clear_damage(&id)?;
            }
            report.rebuilt.push(id.to_hex());
        }
    }
    Ok(report)
}
