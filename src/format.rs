//! On-disk types and their pure encode/decode functions. Mirrors `format-spec/`
//! section by section; every byte layout here is a promise to old repositories.
//!
//! Every repository file starts with a 6-byte envelope: `"PCLN"`, a kind byte and a
//! format version byte. Every postcard-encoded structure inside a sealed object starts
//! with its own version byte, so one structure can evolve without touching the rest.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::crypto::{Cipher, KdfParams};
use crate::error::{Error, Result};
use crate::id::*;

pub const MAGIC: &[u8; 4] = b"PCLN";
/// Repository format version written by this build.
pub const FORMAT_VERSION: u8 = 1;
/// Trailer magic at the very end of each pack.
pub const PACK_TRAILER_MAGIC: &[u8; 8] = b"PCLNPAK1";
/// Largest plaintext of any blob; a blob declaring more is refused before allocating.
pub const MAX_BLOB_RAW: usize = 16 * 1024 * 1024;
/// Largest sealed pack header accepted.
pub const MAX_PACK_HEADER: usize = 64 * 1024 * 1024;
/// Largest encrypted metadata object (snapshot, index delta, lock, condemned record).
pub const MAX_OBJECT: usize = 256 * 1024 * 1024;
/// The largest `config` and key file read: theirs are a few hundred bytes.
pub const MAX_SMALL_OBJECT: usize = 4096;
/// Tree pages are split when their encoding would exceed this.
pub const TREE_PAGE_TARGET: usize = 4 * 1024 * 1024;
/// Chunk lists longer than this are stored in separate chunk-list pages.
pub const CHUNK_LIST_INLINE_MAX: usize = 128;
/// A chunk-list page ends after a chunk whose id's last byte has its low 7 bits clear
/// (one chunk in 128), once the page holds at least [`CHUNK_LIST_PAGE_MIN`] chunks, or
/// when it reaches [`CHUNK_LIST_PAGE_MAX`]. See [`chunk_list_pages`].
pub const CHUNK_LIST_PAGE_MASK: u8 = 0x7f;
pub const CHUNK_LIST_PAGE_MIN: usize = 16;
pub const CHUNK_LIST_PAGE_MAX: usize = 1024;
/// A directory whose node list encodes to at most this many bytes is stored inside its
/// parent's tree page (`NodeKind::InlineDir`) rather than as a tree blob of its own.
pub const INLINE_DIR_MAX: usize = 512;

/// The kind byte of the file envelope, also part of every AEAD associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Config = 1,
    Key = 2,
    PackHeader = 3,
    Index = 4,
    Snapshot = 5,
    Condemned = 6,
    Lock = 7,
    DataBlob = 8,
    TreeBlob = 9,
    /// Master key wrapped inside a key file.
    MasterKey = 10,
    /// A pack file.
    Pack = 11,
    /// A tombstone: a snapshot was removed on purpose (in `snapshots/`).
    Tombstone = 12,
    /// A recovery shard over a group of packs (in `parity/`, format-spec §20).
    Parity = 13,
}

/// Associated data: `repo_id(32) || kind(1) || id(32)`.
pub fn aad(repo_id: &[u8; 32], kind: Kind, id: &[u8; 32]) -> [u8; 65] {
    let mut a = [0u8; 65];
    a[..32].copy_from_slice(repo_id);
    a[32] = kind as u8;
    a[33..].copy_from_slice(id);
    a
}

pub fn envelope(kind: Kind) -> [u8; 6] {
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], kind as u8, FORMAT_VERSION]
}

/// Check and strip the 6-byte envelope.
pub fn strip_envelope<'a>(kind: Kind, bytes: &'a [u8], what: &str) -> Result<&'a [u8]> {
    if bytes.len() < 6 || &bytes[..4] != MAGIC {
        return Err(Error::corrupt(format!("{what}: not a projectclone object (bad magic)")));
    }
    if bytes[4] != kind as u8 {
        return Err(Error::corrupt(format!(
            "{what}: object kind {} where {} ({kind:?}) was expected",
            bytes[4], kind as u8
        )));
    }
    if bytes[5] != FORMAT_VERSION {
        return Err(Error::Unsupported(format!(
            "{what}: format version {} (this build reads version {FORMAT_VERSION}); upgrade projectclone",
            bytes[5]
        )));
    }
    Ok(&bytes[6..])
}

/// `version byte || postcard(value)`.
pub fn encode_versioned<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let out = vec![version];
    // Serialising into a Vec only fails for types serde cannot represent; ours are plain data.
    postcard::to_extend(value, out).expect("postcard serialisation of plain data")
}

pub fn decode_versioned<T: DeserializeOwned>(version: u8, bytes: &[u8], what: &str) -> Result<T> {
    match bytes.first() {
        Some(v) if *v == version => {
            postcard::from_bytes(&bytes[1..]).map_err(|e| Error::corrupt(format!("{what}: undecodable ({e})")))
        }
        Some(v) => Err(Error::Unsupported(format!(
            "{what}: structure version {v}, this build reads {version}"
        ))),
        None => Err(Error::corrupt(format!("{what}: empty"))),
    }
}

// ---------------------------------------------------------------- config

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub repo_id: [u8; 32],
    pub chunker: ChunkerParams,
    /// Packs are closed once their blobs reach this many bytes.
    pub pack_target: u32,
    pub created_unix_ns: i64,
}

/// The `Config` structure version this build writes. Version 2 added `ChunkerParams::run`,
/// version 3 `ChunkerParams::large` (format-spec §5). Versions 1 and 2 are still read: as a
/// repository whose chunker has no run rule, and one that cuts large files like the rest.
pub const CONFIG_VERSION: u8 = 3;

/// `Config` as written at structure version 2: `ChunkerParams` without `large`.
#[derive(Deserialize)]
struct ConfigV2 {
    repo_id: [u8; 32],
    chunker: ChunkerParamsV2,
    pack_target: u32,
    created_unix_ns: i64,
}

#[derive(Deserialize)]
struct ChunkerParamsV2 {
    min: u32,
    avg: u32,
    max: u32,
    normalization: u8,
    run: u32,
}

impl From<ConfigV2> for Config {
    fn from(c: ConfigV2) -> Config {
        let ChunkerParamsV2 {
            min,
            avg,
            max,
            normalization,
            run,
        } = c.chunker;
        Config {
            repo_id: c.repo_id,
            chunker: ChunkerParams {
                min,
                avg,
                max,
                normalization,
                run,
                large: None,
            },
            pack_target: c.pack_target,
            created_unix_ns: c.created_unix_ns,
        }
    }
}

/// `Config` as written at structure version 1: `ChunkerParams` without `run`.
#[derive(Deserialize)]
struct ConfigV1 {
    repo_id: [u8; 32],
    chunker: ChunkerParamsV1,
    pack_target: u32,
    created_unix_ns: i64,
}

#[derive(Deserialize)]
struct ChunkerParamsV1 {
    min: u32,
    avg: u32,
    max: u32,
    normalization: u8,
}

impl From<ConfigV1> for Config {
    /// As version 2 with the run rule off.
    fn from(c: ConfigV1) -> Config {
        let ChunkerParamsV1 {
            min,
            avg,
            max,
            normalization,
        } = c.chunker;
        ConfigV2 {
            repo_id: c.repo_id,
            chunker: ChunkerParamsV2 {
                min,
                avg,
                max,
                normalization,
                run: 0,
            },
            pack_target: c.pack_target,
            created_unix_ns: c.created_unix_ns,
        }
        .into()
    }
}

/// `envelope || repo_id(32) || sealed(2 || postcard(Config))`.
pub fn encode_config(c: &Config, cipher: &Cipher) -> Vec<u8> {
    let mut out = envelope(Kind::Config).to_vec();
    out.extend_from_slice(&c.repo_id);
    let aad = aad(&c.repo_id, Kind::Config, &[0; 32]);
    cipher.seal_into(&aad, &encode_versioned(CONFIG_VERSION, c), &mut out);
    out
}

/// The clear repo id at the start of a config file.
pub fn config_repo_id(bytes: &[u8]) -> Result<[u8; 32]> {
    let body = strip_envelope(Kind::Config, bytes, "config")?;
    body.get(..32)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::corrupt("config: truncated"))
}

/// The pack target sizes a config may hold (1 MiB to 1 GiB).
pub const PACK_TARGET_RANGE: std::ops::RangeInclusive<u32> = 1024 * 1024..=1024 * 1024 * 1024;

pub fn decode_config(bytes: &[u8], cipher: &Cipher) -> Result<Config> {
    let repo_id = config_repo_id(bytes)?;
    let sealed = &strip_envelope(Kind::Config, bytes, "config")?[32..];
    let plain = cipher.open(&aad(&repo_id, Kind::Config, &[0; 32]), sealed, "config")?;
    let c: Config = match plain.first() {
        Some(1) => decode_versioned::<ConfigV1>(1, &plain, "config")?.into(),
        Some(2) => decode_versioned::<ConfigV2>(2, &plain, "config")?.into(),
        _ => decode_versioned(CONFIG_VERSION, &plain, "config")?,
    };
    if c.repo_id != repo_id {
        return Err(Error::corrupt("config: repository id mismatch"));
    }
    c.chunker.validate()?;
    if !PACK_TARGET_RANGE.contains(&c.pack_target) {
        return Err(Error::corrupt("config: pack target size out of range"));
    }
    Ok(c)
}

// ---------------------------------------------------------------- key files

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// `None`: created with `--insecure-no-password`; the wrapping key is derived from
    /// the repo id alone, so the master key is effectively stored in clear.
    pub kdf: Option<KdfParams>,
    pub salt: [u8; 32],
    pub created_unix_ns: i64,
    /// `sealed(master key)` with the wrapping key, AAD = aad(repo_id, MasterKey, salt).
    pub wrapped: Vec<u8>,
}

pub fn encode_key_file(k: &KeyFile) -> Vec<u8> {
    let mut out = envelope(Kind::Key).to_vec();
    out.extend_from_slice(&encode_versioned(1, k));
    out
}

pub fn decode_key_file(bytes: &[u8]) -> Result<KeyFile> {
    let k: KeyFile = decode_versioned(1, strip_envelope(Kind::Key, bytes, "key file")?, "key file")?;
    if let Some(p) = &k.kdf {
        p.validate()?;
    }
    Ok(k)
}

// ---------------------------------------------------------------- blobs

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlobKind {
    Data,
    Tree,
}

impl BlobKind {
    pub fn kind(self) -> Kind {
        match self {
            BlobKind::Data => Kind::DataBlob,
            BlobKind::Tree => Kind::TreeBlob,
        }
    }
    pub fn as_i64(self) -> i64 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        }
    }
    pub fn from_i64(v: i64) -> Option<Self> {
        match v {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

/// Where one blob lives inside a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    pub kind: BlobKind,
    pub id: BlobId,
    pub offset: u64,
    /// Sealed length in the pack.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackHeader {
    pub entries: Vec<PackEntry>,
}

// ---------------------------------------------------------------- index deltas

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    pub id: PackId,
    pub size: u64,
    pub blobs: Vec<PackEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IndexDelta {
    pub packs: Vec<IndexPack>,
    /// Index deltas whose content this one replaces (written by prune; readers drop them).
    pub supersedes: Vec<ObjectId>,
    /// Structure version 2: written by a backup still running, for the packs it had stored
    /// so far (a killed backup's successor deduplicates against them; prune leaves packs
    /// that only such deltas list alone while they are young).
    pub checkpoint: bool,
}

/// Structure version of [`IndexDelta`] written by this build (version 1 is read too).
pub const INDEX_DELTA_VERSION: u8 = 2;

/// `IndexDelta` as structure version 1 wrote it.
#[derive(Deserialize)]
struct IndexDeltaV1 {
    packs: Vec<IndexPack>,
    supersedes: Vec<ObjectId>,
}

pub fn encode_index_delta(d: &IndexDelta) -> Vec<u8> {
    encode_versioned(INDEX_DELTA_VERSION, d)
}

/// Decode an index delta's plaintext, version 1 or 2.
pub fn decode_index_delta(plain: &[u8], what: &str) -> Result<IndexDelta> {
    match plain.first() {
        Some(1) => {
            let v: IndexDeltaV1 = decode_versioned(1, plain, what)?;
            Ok(IndexDelta {
                packs: v.packs,
                supersedes: v.supersedes,
                checkpoint: false,
            })
        }
        _ => decode_versioned(INDEX_DELTA_VERSION, plain, what),
    }
}

// ---------------------------------------------------------------- snapshots

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Default)]
pub struct Time {
    pub secs: i64,
    pub nanos: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs: u64,
    pub data_added: u64,
    pub data_read: u64,
    pub duration_ns: u64,
    pub errors: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub time: Time,
    /// UTC offset of the local zone at backup time, in seconds.
    pub utc_offset: i32,
    pub hostname: String,
    pub username: String,
    /// Absolute source paths as raw bytes.
    pub paths: Vec<Vec<u8>>,
    pub tags: Vec<String>,
    pub note: Option<String>,
    pub tree: TreeId,
    /// Metadata of the source directory itself when one directory was backed up.
    pub root: Option<Meta>,
    pub parent: Option<SnapshotId>,
    pub summary: Summary,
    pub program_version: String,
    /// Structure version 2: the snapshot this one is a copy of (`copy`), in the repository
    /// it was first taken in; `None` for a snapshot taken here.
    pub origin: Option<Origin>,
    /// Structure version 3: the repository's snapshot heads when this one was written
    /// (the chain, format-spec §10 "The chain"), sorted by id.
    pub seen: Vec<SnapshotId>,
    /// Structure version 3: the git commit the backed-up tree was at, when it lies in a git
    /// work tree.
    pub git: Option<GitState>,
}

/// Where a git work tree stood when a snapshot was taken of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitState {
    /// The commit HEAD named, in hex (40 digits, or 64 in a SHA-256 repository).
    pub commit: String,
    /// The branch HEAD was on (`main`, not `refs/heads/main`); `None` when detached.
    pub branch: Option<String>,
    /// Whether the work tree differed from that commit (changes to tracked files, or
    /// untracked files that are not ignored); `None` when it could not be told (no `git`
    /// program to ask).
    pub dirty: Option<bool>,
}

/// Where a copied snapshot came from: the repository it was taken in and its id there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    pub repo: [u8; 32],
    pub snapshot: SnapshotId,
}

/// Structure version of [`Snapshot`] written by this build (versions 1 and 2 are read too).
pub const SNAPSHOT_VERSION: u8 = 3;

/// `Snapshot` as structure version 1 wrote it.
#[derive(Deserialize)]
struct SnapshotV1 {
    time: Time,
    utc_offset: i32,
    hostname: String,
    username: String,
    paths: Vec<Vec<u8>>,
    tags: Vec<String>,
    note: Option<String>,
    tree: TreeId,
    root: Option<Meta>,
    parent: Option<SnapshotId>,
    summary: Summary,
    program_version: String,
}

/// `Snapshot` as structure version 2 wrote it: version 1 and `origin`.
#[derive(Deserialize)]
struct SnapshotV2 {
    time: Time,
    utc_offset: i32,
    hostname: String,
    username: String,
    paths: Vec<Vec<u8>>,
    tags: Vec<String>,
    note: Option<String>,
    tree: TreeId,
    root: Option<Meta>,
    parent: Option<SnapshotId>,
    summary: Summary,
    program_version: String,
    origin: Option<Origin>,
}

impl From<SnapshotV2> for Snapshot {
    fn from(v: SnapshotV2) -> Snapshot {
        Snapshot {
            time: v.time,
            utc_offset: v.utc_offset,
            hostname: v.hostname,
            username: v.username,
            paths: v.paths,
            tags: v.tags,
            note: v.note,
            tree: v.tree,
            root: v.root,
            parent: v.parent,
            summary: v.summary,
            program_version: v.program_version,
            origin: v.origin,
            seen: Vec::new(),
            git: None,
        }
    }
}

impl From<SnapshotV1> for SnapshotV2 {
    fn from(v: SnapshotV1) -> SnapshotV2 {
        SnapshotV2 {
            time: v.time,
            utc_offset: v.utc_offset,
            hostname: v.hostname,
            username: v.username,
            paths: v.paths,
            tags: v.tags,
            note: v.note,
            tree: v.tree,
            root: v.root,
            parent: v.parent,
            summary: v.summary,
            program_version: v.program_version,
            origin: None,
        }
    }
}

pub fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    encode_versioned(SNAPSHOT_VERSION, s)
}

/// Decode a snapshot's plaintext, version 1, 2 or 3.
pub fn decode_snapshot(plain: &[u8], what: &str) -> Result<Snapshot> {
    match plain.first() {
        Some(1) => Ok(SnapshotV2::from(decode_versioned::<SnapshotV1>(1, plain, what)?).into()),
        Some(2) => Ok(decode_versioned::<SnapshotV2>(2, plain, what)?.into()),
        _ => decode_versioned(SNAPSHOT_VERSION, plain, what),
    }
}

/// A tombstone (`snapshots/<id>`, kind 12): the record that a snapshot was removed on
/// purpose, by `forget`, `prune` or a repair. A snapshot named by a tombstone is forgotten
/// whether or not its object is still there; a snapshot that disappears without one was
/// removed behind the clients' backs (format-spec §10).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub snapshot: SnapshotId,
    /// What the snapshot was, so listings can say what was removed without it (zeros and
    /// empty for a snapshot that could not be read).
    pub time: Time,
    pub hostname: String,
    pub paths: Vec<Vec<u8>>,
    pub tree: TreeId,
    pub removed_unix_ns: i64,
    /// Host of the command that removed it.
    pub removed_by: String,
    /// Why: `forget`, `prune`, `repair`, `unreadable`, `vanished` (acknowledged).
    pub reason: String,
    /// Structure version 2: the removed snapshot's `seen`, so that the chain runs on
    /// through it (format-spec §10 "The chain"); empty when unknown.
    pub seen: Vec<SnapshotId>,
}

/// Structure version of [`Tombstone`] written by this build (version 1 is read too).
pub const TOMBSTONE_VERSION: u8 = 2;

/// `Tombstone` as structure version 1 wrote it: everything but `seen`.
#[derive(Deserialize)]
struct TombstoneV1 {
    snapshot: SnapshotId,
    time: Time,
    hostname: String,
    paths: Vec<Vec<u8>>,
    tree: TreeId,
    removed_unix_ns: i64,
    removed_by: String,
    reason: String,
}

pub fn encode_tombstone(t: &Tombstone) -> Vec<u8> {
    encode_versioned(TOMBSTONE_VERSION, t)
}

/// Decode a tombstone's plaintext, version 1 or 2.
pub fn decode_tombstone(plain: &[u8], what: &str) -> Result<Tombstone> {
    match plain.first() {
        Some(1) => {
            let v: TombstoneV1 = decode_versioned(1, plain, what)?;
            Ok(Tombstone {
                snapshot: v.snapshot,
                time: v.time,
                hostname: v.hostname,
                paths: v.paths,
                tree: v.tree,
                removed_unix_ns: v.removed_unix_ns,
                removed_by: v.removed_by,
                reason: v.reason,
                seen: Vec::new(),
            })
        }
        _ => decode_versioned(TOMBSTONE_VERSION, plain, what),
    }
}

impl Tombstone {
    /// A zeroed tombstone: nothing is known of the snapshot but its id (format-spec §10).
    pub fn zeroed(snapshot: SnapshotId, removed_unix_ns: i64, removed_by: &str, reason: &str) -> Tombstone {
        Tombstone {
            snapshot,
            time: Time { secs: 0, nanos: 0 },
            hostname: String::new(),
            paths: Vec::new(),
            tree: TreeId([0; 32]),
            removed_unix_ns,
            removed_by: removed_by.to_string(),
            reason: reason.to_string(),
            seen: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------- trees

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Time,
    pub ctime: Time,
    pub inode: u64,
    pub dev: u64,
    pub nlink: u64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// The chunks, in order.
    Chunks(Vec<ChunkRef>),
    /// Chunk-list pages (tree-kind blobs holding `ChunkPage`), in order.
    Pages(Vec<TreeId>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPage {
    pub chunks: Vec<ChunkRef>,
}

/// Cut a long chunk list into chunk-list pages, content-defined: a page ends after a
/// chunk chosen by its id, so an edit that changes a few chunks changes only the pages
/// holding them, even when it adds or removes chunks (fixed-size pages would all shift).
/// Ids are keyed hashes, so the cuts reveal nothing the ids do not.
pub fn chunk_list_pages(chunks: &[ChunkRef]) -> Vec<&[ChunkRef]> {
    let mut pages = Vec::with_capacity(chunks.len() / 128 + 1);
    let mut start = 0;
    for (i, c) in chunks.iter().enumerate() {
        let n = i + 1 - start;
        if (n >= CHUNK_LIST_PAGE_MIN && c.id.0[31] & CHUNK_LIST_PAGE_MASK == 0) || n == CHUNK_LIST_PAGE_MAX {
            pages.push(&chunks[start..=i]);
            start = i + 1;
        }
    }
    if start < chunks.len() {
        pages.push(&chunks[start..]);
    }
    pages
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileData {
    pub size: u64,
    /// Holes `(offset, length)`, sorted, in file coordinates; the chunk stream holds only
    /// the bytes outside them.
    pub holes: Vec<(u64, u64)>,
    pub content: Content,
}

impl FileData {
    /// The data regions `(offset, length)`: everything in `[0, size)` outside the holes,
    /// in order. The chunk stream fills them one after another.
    pub fn data_regions(&self) -> Vec<(u64, u64)> {
        let mut regions = Vec::new();
        let mut pos = 0;
        for &(s, l) in &self.holes {
            if s > pos {
                regions.push((pos, s - pos));
            }
            pos = s + l;
        }
        if pos < self.size {
            regions.push((pos, self.size - pos));
        }
        regions
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    File(FileData),
    Dir(TreeId),
    Symlink(Vec<u8>),
    /// A further name of a file seen earlier in this snapshot; `target` is its path
    /// relative to the snapshot root. The content is repeated so a partial restore that
    /// skips the target still has the bytes.
    HardLink {
        target: Vec<u8>,
        data: FileData,
    },
    Fifo,
    Socket,
    CharDevice(u64),
    BlockDevice(u64),
    /// A small directory kept inside its parent's page: `postcard(Vec<Node>)`, at most
    /// `INLINE_DIR_MAX` bytes. Kept encoded so that decoding a page never recurses.
    InlineDir(Vec<u8>),
}

impl NodeKind {
    pub fn is_dir(&self) -> bool {
        matches!(self, NodeKind::Dir(_) | NodeKind::InlineDir(_))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: Vec<u8>,
    pub kind: NodeKind,
    pub meta: Meta,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tree {
    /// Sorted by raw name bytes, no duplicates.
    pub nodes: Vec<Node>,
    /// The next page of this directory, when it was too large for one blob.
    pub next: Option<TreeId>,
}

/// Encode a directory as tree pages, split by encoded size. Returned last page first, each
/// with its encoding and id, so every page can name its successor; the last one returned is
/// the directory's id. `id` computes a page id from its plaintext.
pub fn encode_tree_pages(nodes: Vec<Node>, id: impl Fn(&[u8]) -> TreeId) -> Result<Vec<(TreeId, Vec<u8>)>> {
    let mut pages: Vec<Vec<Node>> = vec![Vec::new()];
    let mut size = 0;
    for n in nodes {
        let sz = postcard::to_allocvec(&n).map(|v| v.len()).unwrap_or(0);
        if size + sz > TREE_PAGE_TARGET && !pages.last().is_some_and(|p| p.is_empty()) {
            pages.push(Vec::new());
            size = 0;
        }
        size += sz;
        if let Some(p) = pages.last_mut() {
            p.push(n);
        }
    }
    let mut out = Vec::with_capacity(pages.len());
    let mut next = None;
    for nodes in pages.into_iter().rev() {
        let raw = encode_versioned(1, &Tree { nodes, next });
        if raw.len() > MAX_BLOB_RAW {
            return Err(Error::Invalid(format!(
                "a directory entry's metadata exceeds {MAX_BLOB_RAW} bytes (huge xattrs?); it cannot be stored"
            )));
        }
        let tid = id(&raw);
        next = Some(tid);
        out.push((tid, raw));
    }
    Ok(out)
}

/// How a directory is stored: inside its parent's page, or as a chain of tree pages.
pub enum DirEncoding {
    /// The `NodeKind::InlineDir` payload.
    Inline(Vec<u8>),
    /// As `encode_tree_pages` returns them: last page first, the directory's id last.
    Pages(Vec<(TreeId, Vec<u8>)>),
}

/// Encode a directory: inline when `may_inline` (every directory but a snapshot's root)
/// and its node list encodes to at most `INLINE_DIR_MAX` bytes, else as tree pages. The
/// choice depends only on the nodes, so equal directories always encode alike.
pub fn encode_dir(nodes: Vec<Node>, may_inline: bool, id: impl Fn(&[u8]) -> TreeId) -> Result<DirEncoding> {
    if may_inline {
        // Encoding into a buffer of the limit's size stops as soon as it is full, so a large
        // directory costs at most INLINE_DIR_MAX bytes of encoding here.
        let mut buf = [0u8; INLINE_DIR_MAX];
        if let Ok(inline) = postcard::to_slice(&nodes, &mut buf) {
            return Ok(DirEncoding::Inline(inline.to_vec()));
        }
    }
    encode_tree_pages(nodes, id).map(DirEncoding::Pages)
}

/// Decode and validate the payload of a `NodeKind::InlineDir`.
pub fn decode_inline_dir(bytes: &[u8]) -> Result<Vec<Node>> {
    if bytes.len() > INLINE_DIR_MAX {
        return Err(Error::corrupt("inline directory larger than allowed"));
    }
    let nodes: Vec<Node> =
        postcard::from_bytes(bytes).map_err(|e| Error::corrupt(format!("inline directory undecodable: {e}")))?;
    validate_nodes(&nodes)?;
    Ok(nodes)
}

/// Reject names that could escape a restore target (guarantee 6).
pub fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(Error::Hostile(format!(
            "tree entry named {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

/// Validate a file's layout: holes sorted, disjoint and inside the file; with an inline
/// chunk list, chunks plus holes add up to the size.
pub fn validate_file(d: &FileData) -> Result<()> {
    let mut pos = 0u64;
    let mut holes = 0u64;
    for &(o, l) in &d.holes {
        let end = o.checked_add(l);
        if o < pos || end.is_none_or(|e| e > d.size) {
            return Err(Error::corrupt("file entry: holes out of order or beyond the file size"));
        }
        pos = o + l; // checked just above
        holes += l;
    }
    if let Content::Chunks(c) = &d.content {
        let data: u64 = c.iter().map(|c| c.len as u64).sum();
        if data.checked_add(holes) != Some(d.size) {
            return Err(Error::corrupt(
                "file entry: chunk lengths and holes do not add up to its size",
            ));
        }
    }
    Ok(())
}

/// Validate a decoded tree page: safe names (also in hard-link targets), strictly
/// sorted, consistent file layouts.
pub fn validate_tree(t: &Tree) -> Result<()> {
    validate_nodes(&t.nodes)
}

/// Validate one directory level (a page, or an inline directory's nodes). An inline
/// child is only checked for its size here; its nodes are validated when it is decoded.
fn validate_nodes(nodes: &[Node]) -> Result<()> {
    for n in nodes {
        check_name(&n.name)?;
        match &n.kind {
            NodeKind::File(d) => validate_file(d)?,
            NodeKind::HardLink { target, data } => {
                for comp in target.split(|b| *b == b'/') {
                    check_name(comp)?;
                }
                validate_file(data)?;
            }
            NodeKind::InlineDir(b) if b.len() > INLINE_DIR_MAX => {
                return Err(Error::corrupt("inline directory larger than allowed"));
            }
            _ => {}
        }
    }
    if nodes.windows(2).any(|w| w[0].name >= w[1].name) {
        return Err(Error::corrupt("tree entries not sorted or duplicated"));
    }
    Ok(())
}

// ---------------------------------------------------------------- locks, condemned

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub hostname: String,
    pub boot_id: String,
    pub pid: u32,
    /// Process start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub pid_start: u64,
    pub exclusive: bool,
    pub created_unix_ns: i64,
    pub refreshed_unix_ns: i64,
    /// What the holder is doing (`backup`, `restore`, `check`, `prune`, …). Two prunes
    /// never run at once.
    pub purpose: String,
}

/// A condemned record (`condemned/<id>`, format-spec §12), structure version 2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condemned {
    pub packs: Vec<PackId>,
    pub marked_unix_ns: i64,
    pub hostname: String,
    /// The identities ([`Lock::identity`]) of the other clients' locks that were live just
    /// after the record became visible: the only clients that may use its packs without
    /// knowing they are condemned. Phase two waits while one of them is live, whatever the
    /// clocks say. `None` (version 1 records, and the first object of a prune killed before
    /// it listed the locks): the older rule by lock creation time applies.
    pub waits_for: Option<Vec<[u8; 32]>>,
}

/// Structure version of [`Condemned`] written by this build (version 1 is read too).
pub const CONDEMNED_VERSION: u8 = 2;

/// `Condemned` as structure version 1 wrote it.
#[derive(Deserialize)]
struct CondemnedV1 {
    packs: Vec<PackId>,
    marked_unix_ns: i64,
    hostname: String,
}

pub fn encode_condemned(c: &Condemned) -> Vec<u8> {
    encode_versioned(CONDEMNED_VERSION, c)
}

/// Decode a condemned record's plaintext, version 1 or 2.
pub fn decode_condemned(plain: &[u8], what: &str) -> Result<Condemned> {
    match plain.first() {
        Some(1) => {
            let v: CondemnedV1 = decode_versioned(1, plain, what)?;
            Ok(Condemned {
                packs: v.packs,
                marked_unix_ns: v.marked_unix_ns,
                hostname: v.hostname,
                waits_for: None,
            })
        }
        _ => decode_versioned(CONDEMNED_VERSION, plain, what),
    }
}

impl Lock {
    /// What stays the same across a lock's refreshes (each refresh writes a new object
    /// under a new name): host, boot, process and its start, and the creation time.
    pub fn identity(&self) -> [u8; 32] {
        let key = (
            &self.hostname,
            &self.boot_id,
            self.pid,
            self.pid_start,
            self.created_unix_ns,
        );
        *blake3::Hasher::new_derive_key("projectclone 2026-12 lock identity")
            .update(&postcard::to_allocvec(&key).expect("postcard serialisation of plain data"))
            .finalize()
            .as_bytes()
    }
}

// ---------------------------------------------------------------- sealed objects

/// `envelope || sealed(version || postcard(value))`, AAD binds repo, kind and file id.
pub fn seal_object(repo_id: &[u8; 32], cipher: &Cipher, kind: Kind, id: &[u8; 32], plain: &[u8]) -> Vec<u8> {
    let mut out = envelope(kind).to_vec();
    cipher.seal_into(&aad(repo_id, kind, id), plain, &mut out);
    out
}

pub fn open_object<T: DeserializeOwned>(
    repo_id: &[u8; 32],
    cipher: &Cipher,
    kind: Kind,
    id: &[u8; 32],
    bytes: &[u8],
    what: &str,
) -> Result<(T, Vec<u8>)> {
    let plain = open_sealed(repo_id, cipher, kind, id, bytes, what)?;
    let v = decode_versioned(1, &plain, what)?;
    Ok((v, plain))
}

/// A sealed object's plaintext (`version || postcard(value)`), authenticated, undecoded.
pub fn open_sealed(
    repo_id: &[u8; 32],
    cipher: &Cipher,
    kind: Kind,
    id: &[u8; 32],
    bytes: &[u8],
    what: &str,
) -> Result<Vec<u8>> {
    if bytes.len() > MAX_OBJECT {
        return Err(Error::corrupt(format!("{what}: object too large")));
    }
    let sealed = strip_envelope(kind, bytes, what)?;
    cipher.open(&aad(repo_id, kind, id), sealed, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chunk(n: u64) -> ChunkRef {
        ChunkRef {
            id: ChunkId(*blake3::hash(&n.to_le_bytes()).as_bytes()),
            len: 1000 + n as u32 % 7,
        }
    }

    #[test]
    fn chunk_list_pages_are_cut_by_content_within_bounds() {
        let list: Vec<ChunkRef> = (0..20_000).map(chunk).collect();
        let pages = chunk_list_pages(&list);
        assert_eq!(pages.concat(), list, "the pages are the list, in order");
        let (last, full) = pages.split_last().unwrap();
        assert!(!last.is_empty() && last.len() <= CHUNK_LIST_PAGE_MAX);
        for p in full {
            assert!((CHUNK_LIST_PAGE_MIN..=CHUNK_LIST_PAGE_MAX).contains(&p.len()));
            let end = p.last().unwrap();
            assert!(end.id.0[31] & CHUNK_LIST_PAGE_MASK == 0 || p.len() == CHUNK_LIST_PAGE_MAX);
            // Only the last chunk of a page may end it.
            assert!(
                p[CHUNK_LIST_PAGE_MIN - 1..p.len() - 1]
                    .iter()
                    .all(|c| c.id.0[31] & CHUNK_LIST_PAGE_MASK != 0)
            );
        }
        let avg = list.len() / pages.len();
        assert!(
            (100..200).contains(&avg),
            "about 1 page per 128 chunks past the minimum: {avg}"
        );
        assert!(chunk_list_pages(&[]).is_empty());
        assert_eq!(chunk_list_pages(&list[..3]), vec![&list[..3]]);
    }

    /// An insertion, a removal or a replaced chunk changes the pages around it only;
    /// the pages after it are the same slices, so they dedup in the next backup.
    #[test]
    fn chunk_list_pages_resynchronise_after_an_edit() {
        let list: Vec<ChunkRef> = (0..5_000).map(chunk).collect();
        let before = chunk_list_pages(&list);
        let edits: [(usize, usize, Vec<ChunkRef>); 4] = [
            (3, 3, vec![chunk(1 << 40)]),                              // insert near the start
            (2_000, 2_001, vec![chunk(1 << 41)]),                      // replace one
            (2_500, 2_503, Vec::new()),                                // remove three
            (10, 10, (0..40).map(|i| chunk((1 << 42) + i)).collect()), // insert many
        ];
        for (at, to, with) in edits {
            let mut edited = list.clone();
            edited.splice(at..to, with);
            let after = chunk_list_pages(&edited);
            let new = after.iter().filter(|p| !before.contains(p)).count();
            assert!(new <= 3, "edit at {at}: {new} of {} pages are new", after.len());
            assert!(after.len() > 30);
        }
    }

    fn arb_time() -> impl Strategy<Value = Time> {
        (any::<i64>(), 0u32..1_000_000_000).prop_map(|(secs, nanos)| Time { secs, nanos })
    }

    fn arb_meta() -> impl Strategy<Value = Meta> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            arb_time(),
            arb_time(),
            any::<u64>(),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 1..8),
                    proptest::collection::vec(any::<u8>(), 0..8),
                ),
                0..3,
            ),
        )
            .prop_map(|(mode, uid, gid, mtime, ctime, inode, xattrs)| Meta {
                mode,
                uid,
                gid,
                mtime,
                ctime,
                inode,
                dev: 1,
                nlink: 1,
                xattrs,
            })
    }

    fn arb_node() -> impl Strategy<Value = Node> {
        let kind = prop_oneof![
            (any::<u64>(), proptest::collection::vec(any::<[u8; 32]>(), 0..4)).prop_map(|(size, ids)| {
                NodeKind::File(FileData {
                    size,
                    holes: vec![(0, 4096)],
                    content: Content::Chunks(ids.into_iter().map(|i| ChunkRef { id: ChunkId(i), len: 7 }).collect()),
                })
            }),
            any::<[u8; 32]>().prop_map(|t| NodeKind::Dir(TreeId(t))),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(NodeKind::InlineDir),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(NodeKind::Symlink),
            Just(NodeKind::Fifo),
            any::<u64>().prop_map(NodeKind::CharDevice),
        ];
        (proptest::collection::vec(any::<u8>(), 1..20), kind, arb_meta()).prop_map(|(name, kind, meta)| Node {
            name,
            kind,
            meta,
        })
    }

    proptest! {
            #[test]
            fn tree_round_trip(nodes in proptest::collection::vec(arb_node(), 0..6), next in proptest::option::of(any::<[u8; 32]>())) {
                let t = Tree { nodes, next: next.map(TreeId) };
                let b = encode_versioned(1, &t);
                prop_assert_eq!(decode_versioned::<Tree>(1, &b, "t").unwrap(), t);
            }

            #[test]
            fn index_delta_round_trip(n in 0usize..5, off in any::<u64>()) {
                let d = IndexDelta {
                    packs: (0..n).map(|i| IndexPack {
                        id: PackId([i as u8; 32]),
                        size: off,
                        blobs: vec![PackEntry { kind: BlobKind::Tree, id: BlobId([1; 32]), offset: off, length: 5, raw_length: 9 }],
                    }).collect(),
                    supersedes: vec![ObjectId([3; 32])],
                            checkpoint: false,
    };
                let b = encode_versioned(1, &d);
                prop_assert_eq!(decode_versioned::<IndexDelta>(1, &b, "d").unwrap(), d);
            }

            #[test]
            fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = decode_versioned::<Tree>(1, &bytes, "t");
                let _ = decode_versioned::<Snapshot>(1, &bytes, "s");
                let _ = decode_inline_dir(&bytes);
                let _ = decode_key_file(&bytes);
                let _ = config_repo_id(&bytes);
            }
        }

    fn leaf(name: &[u8]) -> Node {
        Node {
            name: name.to_vec(),
            kind: NodeKind::Symlink(b"t".to_vec()),
            meta: Meta::default(),
        }
    }

    #[test]
    fn small_directories_inline_large_ones_and_roots_get_pages() {
        let id = |raw: &[u8]| TreeId(*blake3::hash(raw).as_bytes());
        let small = vec![leaf(b"a"), leaf(b"b")];
        let Ok(DirEncoding::Inline(b)) = encode_dir(small.clone(), true, id) else {
            panic!("a two-entry directory is stored inline");
        };
        assert_eq!(decode_inline_dir(&b).unwrap(), small);
        // The same nodes always give the same bytes: inline directories deduplicate with their parents.
        let Ok(DirEncoding::Inline(again)) = encode_dir(small.clone(), true, id) else {
            panic!("deterministic");
        };
        assert_eq!(b, again);
        // A root never inlines.
        assert!(matches!(encode_dir(small, false, id), Ok(DirEncoding::Pages(p)) if p.len() == 1));
        // Exactly at the limit: inline; one byte more: pages.
        let sized = |len: usize| vec![leaf(&vec![b'n'; len])];
        let len = (1..INLINE_DIR_MAX)
            .find(|l| postcard::to_allocvec(&sized(*l)).unwrap().len() == INLINE_DIR_MAX)
            .expect("a name length that encodes to the limit");
        assert!(matches!(encode_dir(sized(len), true, id), Ok(DirEncoding::Inline(b)) if b.len() == INLINE_DIR_MAX));
        assert!(matches!(
            encode_dir(sized(len + 1), true, id),
            Ok(DirEncoding::Pages(_))
        ));
        // Far over the limit: pages.
        let big: Vec<Node> = (0..200u32).map(|i| leaf(format!("{i:04}").as_bytes())).collect();
        assert!(postcard::to_allocvec(&big).unwrap().len() > INLINE_DIR_MAX);
        assert!(matches!(encode_dir(big, true, id), Ok(DirEncoding::Pages(_))));
    }

    #[test]
    fn inline_directories_are_validated_and_bounded() {
        let enc = |nodes: &Vec<Node>| postcard::to_allocvec(nodes).unwrap();
        // Unsorted, duplicated and hostile names are refused like in a page.
        assert!(decode_inline_dir(&enc(&vec![leaf(b"b"), leaf(b"a")])).is_err());
        assert!(decode_inline_dir(&enc(&vec![leaf(b"a"), leaf(b"a")])).is_err());
        assert!(matches!(
            decode_inline_dir(&enc(&vec![leaf(b"..")])),
            Err(Error::Hostile(_))
        ));
        // Larger than a writer ever inlines: refused both when decoding and in the parent's page,
        // which bounds how deeply inline directories can nest.
        let over = vec![0u8; INLINE_DIR_MAX + 1];
        assert!(decode_inline_dir(&over).is_err());
        let page = Tree {
            nodes: vec![Node {
                name: b"d".to_vec(),
                kind: NodeKind::InlineDir(over),
                meta: Meta::default(),
            }],
            next: None,
        };
        assert!(validate_tree(&page).is_err());
        assert!(decode_inline_dir(b"\xff\xff").is_err());
    }

    #[test]
    fn hostile_names_rejected() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            assert!(check_name(bad).is_err());
        }
        check_name(b"ok\nname\xff").unwrap();
    }

    #[test]
    fn config_round_trips_at_version_3_and_versions_2_and_1_still_read() {
        let cipher = Cipher::new(&[7; 32]);
        let c = Config {
            repo_id: [9; 32],
            chunker: ChunkerParams::default(),
            pack_target: 16 << 20,
            created_unix_ns: 5,
        };
        let bytes = encode_config(&c, &cipher);
        assert_eq!(decode_config(&bytes, &cipher).unwrap(), c);
        let plain = cipher
            .open(&aad(&[9; 32], Kind::Config, &[0; 32]), &bytes[38..], "c")
            .unwrap();
        assert_eq!(plain[0], 3, "config structure version");
        assert_eq!(
            &plain[33..39],
            [0x80, 0x80, 0x10, 0x80, 0x80, 0x20],
            "a new repository's min and avg: 256 KiB and 512 KiB (format-spec README, History)"
        );
        assert_eq!(
            &plain[plain.len() - 23..],
            [
                0x80, 0x80, 0x04, // run = 65 536
                0x01, // large: Some
                0x80, 0x80, 0x80, 0x20, // from = 67 108 864
                0x80, 0x80, 0x08, // min = 131 072
                0x80, 0x80, 0x10, // avg = 262 144
                0x80, 0x80, 0x80, 0x01, // max = 2 097 152
                0x80, 0x80, 0x80, 0x08, // pack target
                0x0a, // created
            ],
            "run, then large, end ChunkerParams; then pack target and created"
        );
        let sealed = |plain: &[u8]| {
            let mut out = envelope(Kind::Config).to_vec();
            out.extend_from_slice(&[9; 32]);
            cipher.seal_into(&aad(&[9; 32], Kind::Config, &[0; 32]), plain, &mut out);
            out
        };

        // A config as the builds before version 2 wrote it, byte by byte (format-spec §5):
        // version 1, repo id, min/avg/max as varints, normalization, pack target, created.
        let mut v1 = vec![1];
        v1.extend_from_slice(&[9; 32]);
        v1.extend_from_slice(&[0x80, 0x80, 0x20, 0x80, 0x80, 0x40, 0x80, 0x80, 0x80, 0x04, 0x01]);
        v1.extend_from_slice(&[0x80, 0x80, 0x80, 0x08, 0x0a]);
        let read = decode_config(&sealed(&v1), &cipher).unwrap();
        assert_eq!(
            read,
            Config {
                chunker: ChunkerParams {
                    min: ChunkerParams::BEFORE_512K.0,
                    avg: ChunkerParams::BEFORE_512K.1,
                    run: 0,
                    large: None,
                    ..c.chunker
                },
                ..c
            },
            "a version 1 repository keeps chunking without the run rule or large-file sizes"
        );

        // Version 2: the same with the run rule after normalization.
        let mut v2 = vec![2];
        v2.extend_from_slice(&[9; 32]);
        v2.extend_from_slice(&[0x80, 0x80, 0x20, 0x80, 0x80, 0x40, 0x80, 0x80, 0x80, 0x04, 0x01]);
        v2.extend_from_slice(&[0x80, 0x80, 0x04]);
        v2.extend_from_slice(&[0x80, 0x80, 0x80, 0x08, 0x0a]);
        let read = decode_config(&sealed(&v2), &cipher).unwrap();
        assert_eq!(
            read,
            Config {
                chunker: ChunkerParams {
                    min: ChunkerParams::BEFORE_512K.0,
                    avg: ChunkerParams::BEFORE_512K.1,
                    large: None,
                    ..c.chunker
                },
                ..c
            },
            "a version 2 repository keeps cutting large files like the rest"
        );

        let mut v4 = plain.clone();
        v4[0] = 4;
        let err = decode_config(&sealed(&v4), &cipher).unwrap_err().to_string();
        assert!(err.contains("structure version 4"), "{err}");
    }

    /// Structure version 3 adds `seen` and `git` at the end (tombstones version 2 `seen`):
    /// the earlier versions are the same bytes without them, and still decode.
    #[test]
    fn snapshot_v3_and_tombstone_v2_read_their_earlier_versions() {
        let mut s = Snapshot {
            time: Time { secs: 1, nanos: 2 },
            utc_offset: 0,
            hostname: "h".into(),
            username: "u".into(),
            paths: vec![b"/x".to_vec()],
            tags: vec![],
            note: None,
            tree: TreeId([1; 32]),
            root: None,
            parent: Some(SnapshotId([2; 32])),
            summary: Summary::default(),
            program_version: "1.0.0".into(),
            origin: None,
            seen: Vec::new(),
            git: None,
        };
        // Version 2 wrote everything up to `origin`: an empty `seen` and no `git` are the
        // two final bytes 00 00 of version 3.
        let v3 = encode_snapshot(&s);
        assert_eq!(v3[0], 3);
        assert_eq!(&v3[v3.len() - 2..], &[0, 0]);
        let mut v2 = v3[..v3.len() - 2].to_vec();
        v2[0] = 2;
        assert_eq!(decode_snapshot(&v2, "s").unwrap(), s);
        s.seen = vec![SnapshotId([3; 32]), SnapshotId([4; 32])];
        s.git = Some(GitState {
            commit: "ab".repeat(20),
            branch: None,
            dirty: Some(false),
        });
        assert_eq!(decode_snapshot(&encode_snapshot(&s), "s").unwrap(), s);
        let mut v4 = encode_snapshot(&s);
        v4[0] = 4;
        let e = decode_snapshot(&v4, "s").unwrap_err().to_string();
        assert!(e.contains("structure version 4, this build reads 3"), "{e}");

        let mut t = Tombstone::zeroed(SnapshotId([5; 32]), 7, "h", "forget");
        let v2 = encode_tombstone(&t);
        assert_eq!((v2[0], v2[v2.len() - 1]), (2, 0));
        let mut v1 = v2[..v2.len() - 1].to_vec();
        v1[0] = 1;
        assert_eq!(decode_tombstone(&v1, "t").unwrap(), t);
        t.seen = vec![SnapshotId([6; 32])];
        assert_eq!(decode_tombstone(&encode_tombstone(&t), "t").unwrap(), t);
    }

    #[test]
    fn snapshot_and_key_round_trip() {
        let s = Snapshot {
            time: Time { secs: 1, nanos: 2 },
            utc_offset: 3600,
            hostname: "h".into(),
            username: "u".into(),
            paths: vec![b"/x".to_vec()],
            tags: vec!["t".into()],
            note: Some("n".into()),
            tree: TreeId([1; 32]),
            root: Some(Meta::default()),
            parent: None,
            summary: Summary::default(),
            program_version: "0".into(),
            origin: None,
            seen: Vec::new(),
            git: None,
        };
        let b = encode_versioned(1, &s);
        assert_eq!(decode_versioned::<Snapshot>(1, &b, "s").unwrap(), s);
        let k = KeyFile {
            kdf: Some(KdfParams::default()),
            salt: [1; 32],
            created_unix_ns: 5,
            wrapped: vec![1, 2],
        };
        assert_eq!(decode_key_file(&encode_key_file(&k)).unwrap(), k);
    }
}
