//! One function per fuzz target, each taking the raw fuzz input.
//!
//! Shared by the libFuzzer binaries (`fuzz/fuzz_targets/*.rs`) and by the corpus replay
//! test of the main package (`tests/fuzz_corpus.rs`, through `#[path]`), so a corpus
//! file replays exactly what the fuzzer ran. Any `Err` from the library is fine; a
//! finding is a panic (including an overflow or a failed `assert!` below), an abort, a
//! hang or a runaway allocation.
//!
//! Authenticated formats are fuzzed two ways: the input as the stored file (it must be
//! refused cleanly, nearly always at authentication), and the input as the *plaintext*,
//! sealed here with the fixed key, so the decoders behind authentication see hostile
//! bytes as well: a hostile repository may come with its password (guarantee 6).

use std::sync::LazyLock;

use projectclone::blob::{open_blob, seal_blob};
use projectclone::chunker::Chunker;
use projectclone::compress::{Codec, Compression, compress_into, decompress as decompress_payload};
use projectclone::crypto::{Cipher, KdfParams, Keys};
use projectclone::format::{
    self, BlobKind, ChunkPage, Condemned, Content, IndexDelta, KeyFile, Kind, Lock, MAX_BLOB_RAW, Node, NodeKind,
    Snapshot, Tree,
};
use projectclone::id::BlobId;
use projectclone::pack::{self, LEADER_LEN, TRAILER_LEN};
use projectclone::{format_name, format_time, inspect, repo, restore};

/// Master key of the fixed repository every target uses.
pub const MASTER: [u8; 32] = [7; 32];
/// Repository id of the fixed repository.
pub const REPO_ID: [u8; 32] = [9; 32];
/// The name (file id) under which raw inputs are opened as sealed objects and blobs.
pub const OBJECT_ID: [u8; 32] = [3; 32];
/// Password of the key files the targets unwrap with a password.
pub const PASSWORD: &[u8] = b"fuzz password";
/// Argon2id parameters cheap enough to run for every input.
pub const CHEAP_KDF: KdfParams = KdfParams {
    m_cost: 8,
    t_cost: 1,
    p_cost: 1,
};
/// Salt of the key file the `key_file` target builds around its input.
pub const KEY_SALT: [u8; 32] = [5; 32];
/// Bytes of blob area in the pack the `pack` target builds around a header plaintext.
pub const PACK_AREA: usize = 1024;
/// Upper bound of the declared raw length in the `decompress` target.
pub const DECOMPRESS_MAX: usize = 1 << 20;

/// Keys derived once per process.
pub struct Fixed {
    pub keys: Keys,
    pub cipher: Cipher,
    /// Wrapping key of `PASSWORD` under `CHEAP_KDF` and `KEY_SALT`.
    pub wrapping: [u8; 32],
}

static FIXED: LazyLock<Fixed> = LazyLock::new(|| {
    let keys = Keys::from_master(MASTER);
    let cipher = keys.cipher();
    let wrapping = *CHEAP_KDF
        .derive(PASSWORD, &KEY_SALT)
        .expect("cheap argon2id parameters are valid");
    Fixed { keys, cipher, wrapping }
});

pub fn fixed() -> &'static Fixed {
    &FIXED
}

/// Every target by name: the directory names under `fuzz/corpus/` and `fuzz/regressions/`.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("config", config),
    ("key_file", key_file),
    ("pack", pack),
    ("blob", blob),
    ("tree", tree),
    ("snapshot", snapshot),
    ("index_delta", index_delta),
    ("lock", lock),
    ("condemned", condemned),
    ("decompress", decompress),
    ("anchor", anchor),
    ("parity", parity),
];

/// A config file of the fixed repository whose sealed plaintext is `plain`.
pub fn sealed_config(plain: &[u8]) -> Vec<u8> {
    let mut file = format::envelope(Kind::Config).to_vec();
    file.extend_from_slice(&REPO_ID);
    fixed()
        .cipher
        .seal_into(&format::aad(&REPO_ID, Kind::Config, &[0; 32]), plain, &mut file);
    file
}

/// `config`: the config file as stored, then the input as its sealed plaintext.
pub fn config(data: &[u8]) {
    let f = fixed();
    let _ = format::config_repo_id(data);
    let _ = format::decode_config(data, &f.cipher);

    let file = sealed_config(data);
    assert_eq!(format::config_repo_id(&file).ok(), Some(REPO_ID));
    if let Ok(c) = format::decode_config(&file, &f.cipher) {
        // An accepted config must give a working chunker (fastcdc asserts on bad sizes).
        let chunker = Chunker::new(c.chunker, f.keys.gear_table());
        let cut = chunker.next_cut(data);
        assert!(cut <= data.len().max(1));
        if let Some((_, large)) = c.chunker.large_file_params() {
            let cut = Chunker::new(large, f.keys.gear_table()).next_cut(data);
            assert!(cut <= data.len().max(1));
        }
    }
}

/// `key_file`: decode and unwrap without a password (a key file with a password is then
/// refused before any Argon2id work, however large its parameters), with the password
/// when its parameters are cheap, then the input as the wrapped master key.
pub fn key_file(data: &[u8]) {
    let f = fixed();
    let decoded = format::decode_key_file(data);
    let _ = repo::unwrap_key_file(&REPO_ID, data, None);
    if let Ok(KeyFile { kdf: Some(p), .. }) = decoded
        && p.m_cost <= 64
        && p.t_cost <= 2
    {
        let _ = repo::unwrap_key_file(&REPO_ID, data, Some(PASSWORD));
    }

    let wrapped = Cipher::new(&f.wrapping).seal(&format::aad(&REPO_ID, Kind::MasterKey, &KEY_SALT), data);
    let file = format::encode_key_file(&KeyFile {
        kdf: Some(CHEAP_KDF),
        salt: KEY_SALT,
        created_unix_ns: 0,
        wrapped,
    });
    match repo::unwrap_key_file(&REPO_ID, &file, Some(PASSWORD)) {
        Ok(Some(keys)) => assert_eq!(&keys.master()[..], data),
        Ok(None) => panic!("the right password was refused"),
        Err(_) => assert_ne!(data.len(), 32, "a 32-byte master key was refused"),
    }
    assert!(matches!(
        repo::unwrap_key_file(&REPO_ID, &file, Some(b"wrong")),
        Ok(None)
    ));
}

/// `pack`: the input as a pack file (header, trailer, then every blob it lists), then
/// as the plaintext of the header of a pack with `PACK_AREA` bytes of blobs.
pub fn pack(data: &[u8]) {
    let f = fixed();
    if let Ok(entries) = pack::read_all(&REPO_ID, &f.cipher, data) {
        let (header_offset, _) =
            pack::parse_trailer(&data[data.len() - TRAILER_LEN..], data.len() as u64).expect("read_all parsed it");
        for e in &entries {
            let sealed = entry_bytes(data, e, header_offset);
            let _ = open_blob(&REPO_ID, &f.keys, &f.cipher, e.kind, &e.id, sealed);
        }
    }
    if data.len() >= TRAILER_LEN {
        let trailer = &data[data.len() - TRAILER_LEN..];
        // The real length, then a hostile length from the first bytes: `check` reads
        // the trailer by range and trusts the listed size, once it is at least
        // `LEADER_LEN + TRAILER_LEN` (as its callers check; `parse_trailer` does not).
        let mut claimed = [0u8; 8];
        claimed.copy_from_slice(&data[..8]);
        for pack_len in [data.len() as u64, u64::from_le_bytes(claimed)] {
            if pack_len < (LEADER_LEN + TRAILER_LEN) as u64 {
                continue;
            }
            if let Ok((off, len)) = pack::parse_trailer(trailer, pack_len) {
                assert!(off >= LEADER_LEN as u64);
                assert_eq!(off.checked_add((len + TRAILER_LEN) as u64), Some(pack_len));
            }
        }
    }
    let _ = pack::decode_header(&REPO_ID, &f.cipher, data, data.len() as u64);

    let mut file = format::envelope(Kind::Pack).to_vec();
    file.resize(LEADER_LEN + PACK_AREA, 0);
    let start = file.len();
    f.cipher
        .seal_into(&format::aad(&REPO_ID, Kind::PackHeader, &[0; 32]), data, &mut file);
    let hlen = (file.len() - start) as u32;
    file.extend_from_slice(&hlen.to_le_bytes());
    file.extend_from_slice(format::PACK_TRAILER_MAGIC);
    if let Ok(entries) = pack::read_all(&REPO_ID, &f.cipher, &file) {
        for e in &entries {
            entry_bytes(&file, e, start as u64);
        }
    }
}

/// The bytes of one listed blob, checking the promise of `decode_header`: every entry
/// lies between the leader and the header.
fn entry_bytes<'a>(pack: &'a [u8], e: &format::PackEntry, header_offset: u64) -> &'a [u8] {
    let end = e.offset.checked_add(u64::from(e.length));
    assert!(
        e.offset >= LEADER_LEN as u64 && end.is_some_and(|end| end <= header_offset),
        "pack header accepted an entry outside the blob area: {e:?} (header at {header_offset})"
    );
    &pack[e.offset as usize..][..e.length as usize]
}

/// `blob`: the input as a sealed blob, as the sealed plaintext of a blob
/// (`codec || raw_len || payload`, named by the keyed hash of the payload so an
/// uncompressed one opens), and as a chunk sealed and opened with each codec.
pub fn blob(data: &[u8]) {
    let f = fixed();
    let payload = data.get(5..).unwrap_or_default();
    for kind in [BlobKind::Data, BlobKind::Tree] {
        let _ = open_blob(&REPO_ID, &f.keys, &f.cipher, kind, &BlobId(OBJECT_ID), data);

        let id = BlobId(blob_id(kind, payload));
        let sealed = f.cipher.seal(&format::aad(&REPO_ID, kind.kind(), &id.0), data);
        if let Ok(raw) = open_blob(&REPO_ID, &f.keys, &f.cipher, kind, &id, &sealed) {
            assert!(raw.len() <= MAX_BLOB_RAW);
            assert_eq!(blob_id(kind, &raw), id.0);
        }
    }

    if data.len() <= MAX_BLOB_RAW {
        let id = BlobId(f.keys.chunk_id(data));
        let (mut scratch, mut sealed) = (Vec::new(), Vec::new());
        for c in [Compression::None, Compression::Zstd(3), Compression::Lz4] {
            sealed.clear();
            seal_blob(
                &REPO_ID,
                &f.cipher,
                BlobKind::Data,
                &id,
                data,
                c,
                &mut scratch,
                &mut sealed,
            );
            let raw = open_blob(&REPO_ID, &f.keys, &f.cipher, BlobKind::Data, &id, &sealed);
            assert_eq!(raw.as_deref().ok(), Some(data), "{c:?} round trip");
        }
    }
}

fn blob_id(kind: BlobKind, raw: &[u8]) -> [u8; 32] {
    match kind {
        BlobKind::Data => fixed().keys.chunk_id(raw),
        BlobKind::Tree => fixed().keys.meta_id(raw),
    }
}

/// `tree`: a tree page plaintext (decoded, validated, then walked the way `ls` and
/// restore use its nodes), and the input as a chunk-list page.
pub fn tree(data: &[u8]) {
    if let Ok(t) = format::decode_versioned::<Tree>(1, data, "tree")
        && format::validate_tree(&t).is_ok()
    {
        t.nodes.iter().for_each(use_node);
    }
    if let Ok(page) = format::decode_versioned::<ChunkPage>(1, data, "chunk list page") {
        let size = page.chunks.iter().map(|c| u64::from(c.len)).sum();
        let file = format::FileData {
            size,
            holes: Vec::new(),
            content: Content::Pages(Vec::new()),
        };
        assert_eq!(restore::chunk_offsets(&file, &page.chunks).len(), page.chunks.len());
    }
}

fn use_node(n: &Node) {
    let _ = format_name(&n.name);
    let _ = format_time(&n.meta.mtime, 0);
    let _ = inspect::kind_name(&n.kind);
    match &n.kind {
        NodeKind::File(d) | NodeKind::HardLink { data: d, .. } => {
            if let Content::Chunks(chunks) = &d.content {
                assert_eq!(restore::chunk_offsets(d, chunks).len(), chunks.len());
            }
        }
        NodeKind::Symlink(target) => {
            let _ = format_name(target);
        }
        // An inline directory is decoded (and validated) one level at a time, as readers do.
        NodeKind::InlineDir(b) => {
            if let Ok(nodes) = format::decode_inline_dir(b) {
                nodes.iter().for_each(use_node);
            }
        }
        _ => {}
    }
}

/// The three ways every sealed metadata object is fuzzed: its plaintext decoded, the
/// input opened as the stored object, and the input sealed as the plaintext and opened.
macro_rules! sealed_object {
    ($data:expr, $ty:ty, $kind:expr, $what:literal, $use:expr) => {{
        let data: &[u8] = $data;
        let f = fixed();
        if let Ok(v) = format::decode_versioned::<$ty>(1, data, $what) {
            $use(&v);
        }
        if let Ok((v, _)) = format::open_object::<$ty>(&REPO_ID, &f.cipher, $kind, &OBJECT_ID, data, $what) {
            $use(&v);
        }
        let file = format::seal_object(&REPO_ID, &f.cipher, $kind, &OBJECT_ID, data);
        if let Ok((v, plain)) = format::open_object::<$ty>(&REPO_ID, &f.cipher, $kind, &OBJECT_ID, &file, $what) {
            assert_eq!(plain, data);
            $use(&v);
        }
    }};
}

/// `snapshot`: the objects of `snapshots/`: sealed snapshots (structure versions 1 to 3,
/// through `format::decode_snapshot`) with the fields `snapshots` prints, and sealed
/// tombstones (versions 1 and 2, `format::decode_tombstone`).
pub fn snapshot(data: &[u8]) {
    let f = fixed();
    let show = |s: &Snapshot| {
        let _ = format_time(&s.time, s.utc_offset);
        for p in &s.paths {
            let _ = format_name(p);
        }
        if let Some(root) = &s.root {
            let _ = format_time(&root.mtime, s.utc_offset);
        }
    };
    if let Ok(s) = format::decode_snapshot(data, "snapshot") {
        show(&s);
    }
    if let Ok(s) = format::open_sealed(&REPO_ID, &f.cipher, Kind::Snapshot, &OBJECT_ID, data, "snapshot")
        .and_then(|p| format::decode_snapshot(&p, "snapshot"))
    {
        show(&s);
    }
    let file = format::seal_object(&REPO_ID, &f.cipher, Kind::Snapshot, &OBJECT_ID, data);
    if let Ok(plain) = format::open_sealed(&REPO_ID, &f.cipher, Kind::Snapshot, &OBJECT_ID, &file, "snapshot") {
        assert_eq!(plain, data);
        if let Ok(s) = format::decode_snapshot(&plain, "snapshot") {
            show(&s);
        }
    }
    let _ = format::decode_tombstone(data, "tombstone");
    if let Ok(t) = format::open_sealed(&REPO_ID, &f.cipher, Kind::Tombstone, &OBJECT_ID, data, "tombstone")
        .and_then(|p| format::decode_tombstone(&p, "tombstone"))
    {
        let _ = format_time(&t.time, 0);
    }
}

/// `index_delta`: sealed index deltas, structure versions 1 and 2
/// (`format::decode_index_delta`).
pub fn index_delta(data: &[u8]) {
    let f = fixed();
    let check = |d: &IndexDelta| {
        let blobs: usize = d.packs.iter().map(|p| p.blobs.len()).sum();
        assert!(blobs <= data.len());
    };
    if let Ok(d) = format::decode_index_delta(data, "index delta") {
        check(&d);
    }
    if let Ok(d) = format::open_sealed(&REPO_ID, &f.cipher, Kind::Index, &OBJECT_ID, data, "index delta")
        .and_then(|p| format::decode_index_delta(&p, "index delta"))
    {
        check(&d);
    }
    let file = format::seal_object(&REPO_ID, &f.cipher, Kind::Index, &OBJECT_ID, data);
    if let Ok(plain) = format::open_sealed(&REPO_ID, &f.cipher, Kind::Index, &OBJECT_ID, &file, "index delta") {
        assert_eq!(plain, data);
        if let Ok(d) = format::decode_index_delta(&plain, "index delta") {
            check(&d);
        }
    }
}

/// `lock`: sealed lock objects and the staleness rule (without looking at /proc).
pub fn lock(data: &[u8]) {
    sealed_object!(data, Lock, Kind::Lock, "lock", |l: &Lock| {
        for now in [0, l.created_unix_ns, i64::MAX, i64::MIN] {
            let _ = l.is_stale(now, "", "");
        }
    });
}

/// `condemned`: sealed garbage-collection records, versions 1 and 2
/// (`format::decode_condemned`), as plaintext, as the stored object, and sealed.
pub fn condemned(data: &[u8]) {
    let f = fixed();
    let check = |c: &Condemned| {
        assert!(c.packs.len() <= data.len());
        assert!(c.waits_for.as_ref().map_or(0, |w| w.len()) <= data.len());
    };
    if let Ok(c) = format::decode_condemned(data, "condemned") {
        check(&c);
    }
    if let Ok(c) = format::open_sealed(&REPO_ID, &f.cipher, Kind::Condemned, &OBJECT_ID, data, "condemned")
        .and_then(|p| format::decode_condemned(&p, "condemned"))
    {
        check(&c);
    }
    let file = format::seal_object(&REPO_ID, &f.cipher, Kind::Condemned, &OBJECT_ID, data);
    if let Ok(plain) = format::open_sealed(&REPO_ID, &f.cipher, Kind::Condemned, &OBJECT_ID, &file, "condemned") {
        assert_eq!(plain, data);
        if let Ok(c) = format::decode_condemned(&plain, "condemned") {
            check(&c);
        }
    }
}

/// `decompress`: `raw_len (u32 LE, reduced below DECOMPRESS_MAX) || payload` through
/// each codec, then the payload compressed and decompressed again with each.
pub fn decompress(data: &[u8]) {
    let mut len = [0u8; 4];
    let n = data.len().min(4);
    len[..n].copy_from_slice(&data[..n]);
    let raw_len = u32::from_le_bytes(len) as usize % (DECOMPRESS_MAX + 1);
    let payload = &data[n..];
    for codec in [Codec::None, Codec::Zstd, Codec::Lz4] {
        if let Ok(out) = decompress_payload(codec, payload, raw_len) {
            assert_eq!(out.len(), raw_len, "{codec:?}");
        }
    }
    for c in [Compression::None, Compression::Zstd(1), Compression::Lz4] {
        let mut out = Vec::new();
        let codec = compress_into(c, payload, &mut out);
        assert!(out.len() <= payload.len(), "{c:?} grew the data");
        let back = decompress_payload(codec, &out, payload.len());
        assert_eq!(back.as_deref().ok(), Some(payload), "{c:?} round trip");
    }
}

/// `anchor`: an anchor file of `verify --anchor` (user-held text, read back as given). What
/// is accepted renders back to the same bytes, so nothing read is lost or reordered.
pub fn anchor(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(a) = projectclone::verify::Anchor::parse(text, "fuzz") {
        let again = a.render();
        assert_eq!(
            projectclone::verify::Anchor::parse(&again, "again").as_ref().ok(),
            Some(&a)
        );
        assert_eq!(again, text, "an accepted anchor is in its one canonical form");
        let _ = a.breaks(&projectclone::verify::State::default());
    }
}

/// `parity`: parity objects (`parity::open_header`) as stored, and the input as a header's
/// plaintext sealed into one.
pub fn parity(data: &[u8]) {
    let f = fixed();
    let id = projectclone::id::ObjectId(OBJECT_ID);
    if let Ok(h) = projectclone::parity::open_header(&REPO_ID, &f.cipher, &f.keys, &id, data) {
        assert!(h.packs.len() <= projectclone::parity::MAX_GROUP && h.index < h.recovery);
    }
    if let Ok(h) = format::decode_versioned::<projectclone::parity::ParityHeader>(1, data, "parity") {
        let (id, bytes) = projectclone::parity::seal(&REPO_ID, &f.cipher, &f.keys, &h, &[]);
        let _ = projectclone::parity::open_header(&REPO_ID, &f.cipher, &f.keys, &id, &bytes);
    }
}
