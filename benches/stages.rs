//! Micro-benchmarks of every pipeline stage, in bytes/s or ops/s:
//! chunking, keyed BLAKE3, zstd and lz4, seal/open, pack write, index lookup and insert,
//! and the key derivation every command that opens a repository pays once.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use projectclone::blob::{open_blob, seal_blob};
use projectclone::chunker::{Chunker, ChunkerParams};
use projectclone::compress::{Codec, Compression, compress_into, decompress};
use projectclone::crypto::{KdfParams, Keys};
use projectclone::format::{BlobKind, IndexDelta, IndexPack, PackEntry};
use projectclone::id::{BlobId, ObjectId, PackId};
use projectclone::index::Index;
use projectclone::pack::PackWriter;

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    blake3::Hasher::new().update(b"bench").finalize_xof().fill(&mut v);
    v
}

/// Half random, half text-like: compresses roughly 2:1 like typical source trees.
fn mixed(n: usize) -> Vec<u8> {
    let r = random(n / 2);
    let text: Vec<u8> = b"fn main() { println!(\"hello, world\"); }\n"
        .iter()
        .cycle()
        .take(n - n / 2)
        .copied()
        .collect();
    // Alternating 64-byte runs (byte-wise interleaving left no 4-byte match for lz4).
    r.chunks(64)
        .zip(text.chunks(64))
        .flat_map(|(a, b)| a.iter().chain(b).copied())
        .collect()
}

fn stages(c: &mut Criterion) {
    let keys = Keys::from_master([1; 32]);
    let data = mixed(16 << 20);

    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    let chunker = Chunker::new(ChunkerParams::default(), keys.gear_table());
    g.bench_function("fastcdc", |b| b.iter(|| black_box(chunker.cuts(black_box(&data)))));
    // The same without the run rule (repositories of config version 1): the rule's cost.
    let plain = Chunker::new(
        ChunkerParams {
            run: 0,
            ..Default::default()
        },
        keys.gear_table(),
    );
    g.bench_function("fastcdc_without_run_rule", |b| {
        b.iter(|| black_box(plain.cuts(black_box(&data))))
    });
    g.bench_function("keyed_blake3", |b| {
        b.iter(|| black_box(keys.chunk_id(black_box(&data))))
    });

    // Data with long zero runs (1 MiB after every 3 MiB), where the run rule cuts.
    let sparse: Vec<u8> = data
        .chunks(3 << 20)
        .flat_map(|c| c.iter().copied().chain(std::iter::repeat_n(0, 1 << 20)))
        .collect();
    g.throughput(Throughput::Bytes(sparse.len() as u64));
    g.bench_function("fastcdc_zero_runs", |b| {
        b.iter(|| black_box(chunker.cuts(black_box(&sparse))))
    });

    let chunk = &data[..1 << 20];
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    for (name, comp) in [("zstd3", Compression::Zstd(3)), ("lz4", Compression::Lz4)] {
        let mut out = Vec::new();
        g.bench_function(format!("compress_{name}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(compress_into(comp, black_box(chunk), &mut out))
            })
        });
        out.clear();
        let codec = compress_into(comp, chunk, &mut out);
        assert_ne!(codec, Codec::None);
        g.bench_function(format!("decompress_{name}"), |b| {
            b.iter(|| black_box(decompress(codec, black_box(&out), chunk.len()).unwrap()))
        });
    }
    let cipher = keys.cipher();
    let rid = [2; 32];
    let id = BlobId(keys.chunk_id(chunk));
    let (mut scratch, mut sealed) = (Vec::new(), Vec::new());
    g.bench_function("seal_blob_zstd3", |b| {
        b.iter(|| {
            sealed.clear();
            seal_blob(
                &rid,
                &cipher,
                BlobKind::Data,
                &id,
                chunk,
                Compression::Zstd(3),
                &mut scratch,
                &mut sealed,
            )
        })
    });
    sealed.clear();
    seal_blob(
        &rid,
        &cipher,
        BlobKind::Data,
        &id,
        chunk,
        Compression::Zstd(3),
        &mut scratch,
        &mut sealed,
    );
    g.bench_function("open_blob_zstd3", |b| {
        b.iter(|| black_box(open_blob(&rid, &keys, &cipher, BlobKind::Data, &id, &sealed).unwrap()))
    });
    // A small file's blob (most blobs of a source tree): per-blob costs dominate, the
    // AEAD's setup (subkey, Poly1305 key block), zstd's tables and the keyed hash.
    let small = &data[..300];
    let small_id = BlobId(keys.chunk_id(small));
    sealed.clear();
    seal_blob(
        &rid,
        &cipher,
        BlobKind::Data,
        &small_id,
        small,
        Compression::Zstd(3),
        &mut scratch,
        &mut sealed,
    );
    g.throughput(Throughput::Elements(1));
    g.bench_function("open_blob_300B", |b| {
        b.iter(|| black_box(open_blob(&rid, &keys, &cipher, BlobKind::Data, &small_id, &sealed).unwrap()))
    });
    g.throughput(Throughput::Bytes(16 << 20));
    g.bench_function("pack_write_16MiB", |b| {
        b.iter_batched(
            PackWriter::new,
            |mut w| {
                for i in 0..16u32 {
                    w.add(BlobKind::Data, BlobId([i as u8; 32]), 1 << 20, chunk);
                }
                black_box(w.finish(&rid, &cipher))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("index");
    g.sample_size(10);
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::open(&dir.path().join("index.db")).unwrap();
    let n = 100_000u32;
    let delta = |base: u32| IndexDelta {
        packs: vec![IndexPack {
            id: PackId(*blake3::hash(&base.to_le_bytes()).as_bytes()),
            size: 1,
            blobs: (base..base + n)
                .map(|i| PackEntry {
                    kind: BlobKind::Data,
                    id: BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes()),
                    offset: i as u64 * 100,
                    length: 100,
                    raw_length: 200,
                })
                .collect(),
        }],
        supersedes: vec![],
        checkpoint: false,
    };
    g.throughput(Throughput::Elements(n as u64));
    let mut round = 0u32;
    g.bench_function("insert_100k_blobs", |b| {
        b.iter(|| {
            round += 1;
            idx.add_deltas(&[(ObjectId([round as u8; 32]), delta(round * n))])
                .unwrap();
        })
    });
    g.throughput(Throughput::Elements(1000));
    g.bench_function("lookup_1000", |b| {
        b.iter(|| {
            for i in n..n + 1000 {
                black_box(
                    idx.has_blob(&BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes()))
                        .unwrap(),
                );
            }
        })
    });
    // A restore's lookups: every blob of an index, in id order. `locate_sorted` scans the
    // table once; the alternative is a point lookup per blob.
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::open(&dir.path().join("index.db")).unwrap();
    idx.add_deltas(&[(ObjectId([1; 32]), delta(0))]).unwrap();
    let mut ids: Vec<BlobId> = (0..n)
        .map(|i| BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    ids.sort_unstable_by_key(|b| b.0);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("locate_sorted_100k", |b| {
        b.iter(|| {
            let mut found = 0u32;
            idx.locate_sorted(&ids, &mut |l| found += l.is_some() as u32).unwrap();
            assert_eq!(found, n);
        })
    });
    g.bench_function("lookup_each_of_100k", |b| {
        b.iter(|| {
            for id in &ids {
                black_box(idx.lookup(id).unwrap());
            }
        })
    });
    g.finish();

    // Argon2id at the defaults (64 MiB, 3 passes, 4 lanes): time and page faults before any
    // work starts.
    let mut g = c.benchmark_group("kdf");
    g.sample_size(10);
    g.bench_function("argon2id_default", |b| {
        b.iter(|| black_box(KdfParams::default().derive(b"password", b"sixteen byte salt").unwrap()))
    });
    // The same derivation in the `argon2` crate's own allocation (aligned, so zeroed by one
    // thread with memset before the lanes start), which `derive` replaced.
    g.bench_function("argon2id_default_crate_allocation", |b| {
        b.iter(|| {
            let params = argon2::Params::new(64 * 1024, 3, 4, Some(32)).unwrap();
            let mut out = [0u8; 32];
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(b"password", b"sixteen byte salt", &mut out)
                .unwrap();
            black_box(out)
        })
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
