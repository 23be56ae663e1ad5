//! Valid inputs for every target: the committed seed corpus `fuzz/corpus/<target>/<name>`.
//!
//! Regenerate (sealed seeds differ on every run: nonces are random) with
//! `cargo test --test fuzz_corpus -- --ignored regenerate_seed_corpus`.

use projectclone::blob::{open_blob, seal_blob};
use projectclone::chunker::ChunkerParams;
use projectclone::compress::{Codec, Compression, compress_into, decompress};
use projectclone::crypto::KdfParams;
use projectclone::format::{
    self, BlobKind, ChunkPage, ChunkRef, Condemned, Config, Content, FileData, GitState, IndexDelta, IndexPack,
    KeyFile, Kind, Lock, Meta, Node, NodeKind, PackHeader, Snapshot, Summary, Time, Tombstone, Tree,
};
use projectclone::id::{BlobId, ChunkId, ObjectId, PackId, SnapshotId, TreeId};
use projectclone::pack::{self, LEADER_LEN, PackWriter};
use projectclone::repo;

use crate::targets::{CHEAP_KDF, MASTER, OBJECT_ID, PACK_AREA, PASSWORD, REPO_ID, fixed, sealed_config};

pub struct Seed {
    pub target: &'static str,
    pub name: &'static str,
    pub bytes: Vec<u8>,
    /// Whether the decoder this seed was made for accepts it; a committed seed that no
    /// longer passes only reaches the first error path and must be regenerated.
    pub accepted: fn(&[u8]) -> bool,
}

fn seed(target: &'static str, name: &'static str, bytes: Vec<u8>, accepted: fn(&[u8]) -> bool) -> Seed {
    Seed {
        target,
        name,
        bytes,
        accepted,
    }
}

fn time(secs: i64) -> Time {
    Time {
        secs,
        nanos: 123_456_789,
    }
}

fn meta(mode: u32) -> Meta {
    Meta {
        mode,
        uid: 1000,
        gid: 1000,
        mtime: time(1_790_000_000),
        ctime: time(1_790_000_001),
        inode: 42,
        dev: 2049,
        nlink: 1,
        xattrs: vec![(b"user.k".to_vec(), b"v".to_vec())],
    }
}

const CHUNK: &[u8] = b"fn main() { println!(\"hello\"); }\nfn main() { println!(\"hello\"); }\n";

pub fn sample_tree() -> Tree {
    let chunks = vec![
        ChunkRef {
            id: ChunkId(fixed().keys.chunk_id(CHUNK)),
            len: CHUNK.len() as u32,
        },
        ChunkRef {
            id: ChunkId([1; 32]),
            len: 10,
        },
    ];
    let data = FileData {
        size: 4096 + CHUNK.len() as u64 + 10,
        holes: vec![(0, 4096)],
        content: Content::Chunks(chunks),
    };
    let node = |name: &[u8], kind, mode| Node {
        name: name.to_vec(),
        kind,
        meta: meta(mode),
    };
    let small = vec![node(b"x", NodeKind::Symlink(b"../a-file".to_vec()), 0o120777)];
    let Ok(projectclone::format::DirEncoding::Inline(inline)) =
        projectclone::format::encode_dir(small, true, |_| TreeId([0; 32]))
    else {
        panic!("a one-entry directory is stored inline");
    };
    Tree {
        nodes: vec![
            node(b"a-file", NodeKind::File(data.clone()), 0o100644),
            node(b"b-dir", NodeKind::Dir(TreeId([2; 32])), 0o40755),
            node(b"b-inline", NodeKind::InlineDir(inline), 0o40755),
            node(b"c-link", NodeKind::Symlink(b"../a-file".to_vec()), 0o120777),
            node(
                b"d-hard",
                NodeKind::HardLink {
                    target: b"a-file".to_vec(),
                    data,
                },
                0o100644,
            ),
            node(b"e-fifo", NodeKind::Fifo, 0o10644),
            node(b"f-chr", NodeKind::CharDevice(0x0103), 0o20666),
            node(
                b"g-paged\xff",
                NodeKind::File(FileData {
                    size: 1 << 30,
                    holes: Vec::new(),
                    content: Content::Pages(vec![TreeId([4; 32])]),
                }),
                0o100600,
            ),
        ],
        next: Some(TreeId([6; 32])),
    }
}

fn sample_config() -> Config {
    Config {
        repo_id: REPO_ID,
        chunker: ChunkerParams::default(),
        pack_target: 16 * 1024 * 1024,
        created_unix_ns: 1_790_000_000_000_000_000,
    }
}

fn sample_snapshot() -> Snapshot {
    Snapshot {
        time: time(1_790_000_000),
        utc_offset: 3600,
        hostname: "host".into(),
        username: "user".into(),
        paths: vec![b"/home/user/project".to_vec()],
        tags: vec!["nightly".into()],
        note: Some("before refactor".into()),
        tree: TreeId([2; 32]),
        root: Some(meta(0o40755)),
        parent: Some(SnapshotId([8; 32])),
        summary: Summary {
            files_new: 3,
            dirs: 1,
            data_added: 100,
            ..Summary::default()
        },
        program_version: "0.1.0".into(),
        origin: None,
        seen: vec![SnapshotId([8; 32]), SnapshotId([9; 32])],
        git: Some(GitState {
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            branch: Some("main".into()),
            dirty: Some(true),
        }),
    }
}

fn sample_tombstone() -> Tombstone {
    let mut t = Tombstone::zeroed(SnapshotId([7; 32]), 1_790_000_000_000_000_000, "host", "forget");
    t.paths = vec![b"/home/user/project".to_vec()];
    t.seen = vec![SnapshotId([6; 32])];
    t
}

fn sample_delta() -> IndexDelta {
    let (id, _, entries) = two_blob_pack();
    IndexDelta {
        packs: vec![IndexPack {
            id,
            size: 300,
            blobs: entries,
        }],
        supersedes: vec![ObjectId([11; 32])],
        checkpoint: false,
    }
}

fn sample_lock() -> Lock {
    Lock {
        hostname: "host".into(),
        boot_id: "0b1c2d3e-0000-4000-8000-000000000000".into(),
        pid: 4242,
        pid_start: 123_456,
        exclusive: false,
        created_unix_ns: 1_790_000_000_000_000_000,
        refreshed_unix_ns: 1_790_000_300_000_000_000,
        purpose: "backup".into(),
    }
}

fn sample_condemned() -> Condemned {
    Condemned {
        packs: vec![PackId([12; 32]), PackId([13; 32])],
        marked_unix_ns: 1_790_000_000_000_000_000,
        hostname: "host".into(),
        waits_for: Some(vec![[14; 32]]),
    }
}

/// A real pack holding a zstd-compressed data blob and a tree blob.
fn two_blob_pack() -> (PackId, Vec<u8>, Vec<format::PackEntry>) {
    let f = fixed();
    let tree = format::encode_versioned(1, &sample_tree());
    let mut w = PackWriter::new();
    let (mut scratch, mut sealed) = (Vec::new(), Vec::new());
    let id = BlobId(f.keys.chunk_id(CHUNK));
    seal_blob(
        &REPO_ID,
        &f.cipher,
        BlobKind::Data,
        &id,
        CHUNK,
        Compression::Zstd(3),
        &mut scratch,
        &mut sealed,
    );
    w.add(BlobKind::Data, id, CHUNK.len() as u32, &sealed);
    sealed.clear();
    let id = BlobId(f.keys.meta_id(&tree));
    seal_blob(
        &REPO_ID,
        &f.cipher,
        BlobKind::Tree,
        &id,
        &tree,
        Compression::Lz4,
        &mut scratch,
        &mut sealed,
    );
    w.add(BlobKind::Tree, id, tree.len() as u32, &sealed);
    w.finish(&REPO_ID, &f.cipher)
}

/// `codec || raw_len || payload`, the plaintext inside a sealed blob.
fn blob_plaintext(c: Compression, raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out[0] = compress_into(c, raw, &mut out) as u8;
    out
}

/// `raw_len || payload`, the input of the `decompress` target.
fn compressed(c: Compression, raw: &[u8]) -> Vec<u8> {
    let mut out = (raw.len() as u32).to_le_bytes().to_vec();
    compress_into(c, raw, &mut out);
    out
}

fn declared_len(b: &[u8]) -> usize {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
}

fn decompresses(codec: Codec) -> fn(&[u8]) -> bool {
    match codec {
        Codec::None => |b| decompress(Codec::None, &b[4..], declared_len(b)).is_ok(),
        Codec::Zstd => |b| decompress(Codec::Zstd, &b[4..], declared_len(b)).is_ok(),
        Codec::Lz4 => |b| decompress(Codec::Lz4, &b[4..], declared_len(b)).is_ok(),
    }
}

macro_rules! object_seeds {
    ($out:ident, $target:literal, $ty:ty, $kind:expr, $value:expr) => {
        $out.push(seed($target, "plaintext", format::encode_versioned(1, &$value), |b| {
            format::decode_versioned::<$ty>(1, b, "seed").is_ok()
        }));
        $out.push(seed(
            $target,
            "sealed",
            format::seal_object(
                &REPO_ID,
                &fixed().cipher,
                $kind,
                &OBJECT_ID,
                &format::encode_versioned(1, &$value),
            ),
            |b| format::open_object::<$ty>(&REPO_ID, &fixed().cipher, $kind, &OBJECT_ID, b, "seed").is_ok(),
        ));
    };
}

/// Every seed, for every target.
pub fn seeds() -> Vec<Seed> {
    let f = fixed();
    let mut out = Vec::new();

    out.push(seed(
        "config",
        "sealed",
        format::encode_config(&sample_config(), &f.cipher),
        |b| format::decode_config(b, &fixed().cipher).is_ok(),
    ));
    out.push(seed(
        "config",
        "plaintext",
        format::encode_versioned(format::CONFIG_VERSION, &sample_config()),
        |b| format::decode_versioned::<Config>(format::CONFIG_VERSION, b, "seed").is_ok(),
    ));
    // The structure version 2 form (no `large`): the same fields, as a tuple.
    let (c, p) = (sample_config(), sample_config().chunker);
    out.push(seed(
        "config",
        "plaintext-v2",
        format::encode_versioned(
            2,
            &(
                c.repo_id,
                (p.min, p.avg, p.max, p.normalization, p.run),
                c.pack_target,
                c.created_unix_ns,
            ),
        ),
        // Sealed as the config target seals its input, it must decode without large-file sizes.
        |b| {
            format::decode_config(&sealed_config(b), &fixed().cipher)
                .is_ok_and(|c| c.chunker.large.is_none() && c.chunker.run == sample_config().chunker.run)
        },
    ));
    // The structure version 1 form (no `run`): the same fields, as a tuple.
    let (c, p) = (sample_config(), sample_config().chunker);
    out.push(seed(
        "config",
        "plaintext-v1",
        format::encode_versioned(
            1,
            &(
                c.repo_id,
                (p.min, p.avg, p.max, p.normalization),
                c.pack_target,
                c.created_unix_ns,
            ),
        ),
        // Sealed as the config target seals its input, it must decode with no run rule.
        |b| {
            format::decode_config(&sealed_config(b), &fixed().cipher)
                .is_ok_and(|c| c.chunker.run == 0 && c.repo_id == REPO_ID)
        },
    ));

    let insecure = repo::make_key_file(&REPO_ID, &f.keys, None, KdfParams::default()).expect("insecure key file");
    out.push(seed(
        "key_file",
        "insecure",
        insecure,
        |b| matches!(repo::unwrap_key_file(&REPO_ID, b, None), Ok(Some(k)) if *k.master() == MASTER),
    ));
    let cheap = repo::make_key_file(&REPO_ID, &f.keys, Some(PASSWORD), CHEAP_KDF).expect("cheap key file");
    out.push(seed(
        "key_file",
        "password-cheap-kdf",
        cheap,
        |b| matches!(repo::unwrap_key_file(&REPO_ID, b, Some(PASSWORD)), Ok(Some(k)) if *k.master() == MASTER),
    ));
    let default_kdf = format::encode_key_file(&KeyFile {
        kdf: Some(KdfParams::default()),
        salt: [1; 32],
        created_unix_ns: 1_790_000_000_000_000_000,
        wrapped: vec![0xaa; 72],
    });
    out.push(seed("key_file", "password-default-kdf", default_kdf, |b| {
        matches!(repo::unwrap_key_file(&REPO_ID, b, None), Ok(None))
    }));
    out.push(seed("key_file", "master-key", MASTER.to_vec(), |b| b.len() == 32));

    let (_, pack_bytes, entries) = two_blob_pack();
    out.push(seed("pack", "two-blobs", pack_bytes, |b| {
        let f = fixed();
        pack::read_all(&REPO_ID, &f.cipher, b).is_ok_and(|entries| {
            entries.len() == 2
                && entries.iter().all(|e| {
                    let sealed = &b[e.offset as usize..][..e.length as usize];
                    open_blob(&REPO_ID, &f.keys, &f.cipher, e.kind, &e.id, sealed).is_ok()
                })
        })
    }));
    out.push(seed(
        "pack",
        "header-plaintext",
        format::encode_versioned(1, &PackHeader { entries }),
        |b| {
            format::decode_versioned::<PackHeader>(1, b, "seed").is_ok_and(|h| {
                h.entries.len() == 2
                    && h.entries
                        .iter()
                        .all(|e| e.offset + u64::from(e.length) <= (LEADER_LEN + PACK_AREA) as u64)
            })
        },
    ));

    out.push(seed(
        "blob",
        "plaintext-none",
        blob_plaintext(Compression::None, CHUNK),
        |b| {
            // Opens completely in the target: named by the keyed hash of its payload.
            let f = fixed();
            let id = BlobId(f.keys.chunk_id(&b[5..]));
            let sealed = f.cipher.seal(&format::aad(&REPO_ID, Kind::DataBlob, &id.0), b);
            b[0] == Codec::None as u8 && open_blob(&REPO_ID, &f.keys, &f.cipher, BlobKind::Data, &id, &sealed).is_ok()
        },
    ));
    out.push(seed(
        "blob",
        "plaintext-zstd",
        blob_plaintext(Compression::Zstd(3), CHUNK),
        |b| b[0] == Codec::Zstd as u8 && decompress(Codec::Zstd, &b[5..], CHUNK.len()).is_ok(),
    ));
    out.push(seed(
        "blob",
        "plaintext-lz4",
        blob_plaintext(Compression::Lz4, CHUNK),
        |b| b[0] == Codec::Lz4 as u8 && decompress(Codec::Lz4, &b[5..], CHUNK.len()).is_ok(),
    ));

    out.push(seed(
        "tree",
        "tree-page",
        format::encode_versioned(1, &sample_tree()),
        |b| format::decode_versioned::<Tree>(1, b, "seed").is_ok_and(|t| format::validate_tree(&t).is_ok()),
    ));
    let page = ChunkPage {
        chunks: (0..4u8)
            .map(|i| ChunkRef {
                id: ChunkId([i; 32]),
                len: 1 << 20,
            })
            .collect(),
    };
    out.push(seed("tree", "chunk-page", format::encode_versioned(1, &page), |b| {
        format::decode_versioned::<ChunkPage>(1, b, "seed").is_ok()
    }));

    out.push(seed(
        "snapshot",
        "plaintext",
        format::encode_snapshot(&sample_snapshot()),
        |b| format::decode_snapshot(b, "seed").is_ok(),
    ));
    out.push(seed(
        "snapshot",
        "sealed",
        format::seal_object(
            &REPO_ID,
            &fixed().cipher,
            Kind::Snapshot,
            &OBJECT_ID,
            &format::encode_snapshot(&sample_snapshot()),
        ),
        |b| {
            format::open_sealed(&REPO_ID, &fixed().cipher, Kind::Snapshot, &OBJECT_ID, b, "seed")
                .and_then(|p| format::decode_snapshot(&p, "seed"))
                .is_ok()
        },
    ));
    out.push(seed(
        "snapshot",
        "tombstone-sealed",
        format::seal_object(
            &REPO_ID,
            &fixed().cipher,
            Kind::Tombstone,
            &OBJECT_ID,
            &format::encode_tombstone(&sample_tombstone()),
        ),
        |b| {
            format::open_sealed(&REPO_ID, &fixed().cipher, Kind::Tombstone, &OBJECT_ID, b, "seed")
                .and_then(|p| format::decode_tombstone(&p, "seed"))
                .is_ok()
        },
    ));
    out.push(seed(
        "index_delta",
        "plaintext",
        format::encode_index_delta(&sample_delta()),
        |b| format::decode_index_delta(b, "seed").is_ok(),
    ));
    out.push(seed(
        "index_delta",
        "sealed",
        format::seal_object(
            &REPO_ID,
            &fixed().cipher,
            Kind::Index,
            &OBJECT_ID,
            &format::encode_index_delta(&sample_delta()),
        ),
        |b| {
            format::open_sealed(&REPO_ID, &fixed().cipher, Kind::Index, &OBJECT_ID, b, "seed")
                .and_then(|p| format::decode_index_delta(&p, "seed"))
                .is_ok()
        },
    ));
    object_seeds!(out, "lock", Lock, Kind::Lock, sample_lock());
    out.push(seed(
        "condemned",
        "plaintext",
        format::encode_condemned(&sample_condemned()),
        |b| format::decode_condemned(b, "seed").is_ok(),
    ));
    out.push(seed(
        "condemned",
        "plaintext-v1",
        {
            let c = sample_condemned();
            format::encode_versioned(1, &(c.packs, c.marked_unix_ns, c.hostname))
        },
        |b| format::decode_condemned(b, "seed").is_ok_and(|c| c.waits_for.is_none()),
    ));
    out.push(seed(
        "condemned",
        "sealed",
        format::seal_object(
            &REPO_ID,
            &fixed().cipher,
            Kind::Condemned,
            &OBJECT_ID,
            &format::encode_condemned(&sample_condemned()),
        ),
        |b| {
            format::open_sealed(&REPO_ID, &fixed().cipher, Kind::Condemned, &OBJECT_ID, b, "seed")
                .and_then(|p| format::decode_condemned(&p, "seed"))
                .is_ok()
        },
    ));

    let text = CHUNK.repeat(4);
    out.push(seed(
        "decompress",
        "zstd",
        compressed(Compression::Zstd(3), &text),
        decompresses(Codec::Zstd),
    ));
    out.push(seed(
        "decompress",
        "lz4",
        compressed(Compression::Lz4, &text),
        decompresses(Codec::Lz4),
    ));
    out.push(seed(
        "decompress",
        "none",
        compressed(Compression::None, CHUNK),
        decompresses(Codec::None),
    ));
    out.push(seed(
        "parity",
        "header-plaintext",
        format::encode_versioned(
            1,
            &projectclone::parity::ParityHeader {
                packs: vec![(PackId([4; 32]), 100), (PackId([5; 32]), 64)],
                recovery: 2,
                index: 1,
                shard_len: 128,
                shard_hash: [9; 32],
            },
        ),
        |b| format::decode_versioned::<projectclone::parity::ParityHeader>(1, b, "seed").is_ok(),
    ));
    out.push(seed(
        "anchor",
        "two-snapshots-one-forgotten",
        {
            let mut st = projectclone::verify::State {
                repo_id: REPO_ID,
                ..Default::default()
            };
            st.present
                .insert(SnapshotId([1; 32]), ("2026-12-06T10:00:00+01:00".into(), "vm".into()));
            st.present.insert(
                SnapshotId([2; 32]),
                ("2026-12-06T11:00:00+01:00".into(), "laptop".into()),
            );
            st.forgotten.insert(SnapshotId([3; 32]));
            projectclone::verify::Anchor::of(&st, "2026-12-06T12:00:00+01:00")
                .render()
                .into_bytes()
        },
        |b| std::str::from_utf8(b).is_ok_and(|t| projectclone::verify::Anchor::parse(t, "seed").is_ok()),
    ));
    out
}
