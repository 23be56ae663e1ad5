//! Build a synthetic repository with many blobs, to measure prune and check memory:
//!
//!     cargo run --release --example synth_repo -- DIR CACHE BLOBS
//!
//! BLOBS tiny data blobs in real packs of 10,000, indexed by deltas of 100,000, and one
//! snapshot whose files reference every other blob through chunk-list pages (those trees
//! and pages are real, sealed and packed). Insecure key: no password needed.

use std::sync::Arc;

use projectclone::backend::Dir;
use projectclone::backend::local::LocalBackend;
use projectclone::blob::seal_blob;
use projectclone::compress::Compression;
use projectclone::format::{
    self, BlobKind, ChunkPage, ChunkRef, Content, FileData, IndexDelta, IndexPack, Meta, Node, NodeKind, PackEntry,
    Snapshot, Summary, Time, Tree,
};
use projectclone::id::{BlobId, ChunkId, TreeId};
use projectclone::pack::PackWriter;
use projectclone::repo::{InitOptions, Repository};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, cache, n): (&str, &str, u64) = (&args[1], &args[2], args[3].parse()?);
    let opts = InitOptions {
        kdf: projectclone::crypto::KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        },
        ..Default::default()
    };
    let mut repo = Repository::init(Arc::new(LocalBackend::new(dir)), None, &opts, cache.as_ref())?;
    const PER_PACK: u64 = 10_000;
    const PER_DELTA: u64 = 100_000;
    // Real packs of tiny blobs: blob i holds the 8 bytes of i.
    let data = |i: u64| i.to_le_bytes();
    let id = |i: u64| BlobId(repo.keys.chunk_id(&data(i)));
    let mut delta = IndexDelta::default();
    let (mut scratch, mut sealed) = (Vec::new(), Vec::new());
    for p in 0..n.div_ceil(PER_PACK) {
        let mut w = PackWriter::new();
        for i in p * PER_PACK..((p + 1) * PER_PACK).min(n) {
            sealed.clear();
            seal_blob(
                repo.repo_id(),
                &repo.cipher,
                BlobKind::Data,
                &id(i),
                &data(i),
                Compression::None,
                &mut scratch,
                &mut sealed,
            );
            w.add(BlobKind::Data, id(i), 8, &sealed);
        }
        let (pid, bytes, blobs) = w.finish(repo.repo_id(), &repo.cipher);
        repo.backend.write_new(&Dir::Packs.path(&pid.to_hex()), &bytes)?;
        delta.packs.push(IndexPack {
            id: pid,
            size: bytes.len() as u64,
            blobs,
        });
        if ((p + 1) * PER_PACK).is_multiple_of(PER_DELTA) {
            repo.write_delta(&std::mem::take(&mut delta))?;
        }
    }
    if !delta.packs.is_empty() {
        repo.write_delta(&delta)?;
    }
    // One snapshot referencing every other blob, through chunk-list pages.
    let mut w = PackWriter::new();
    let (mut scratch, mut sealed) = (Vec::new(), Vec::new());
    let mut entries = Vec::new();
    let mut put = |w: &mut PackWriter, raw: Vec<u8>, entries: &mut Vec<PackEntry>| -> TreeId {
        let tid = TreeId(repo.keys.meta_id(&raw));
        sealed.clear();
        seal_blob(
            repo.repo_id(),
            &repo.cipher,
            BlobKind::Tree,
            &BlobId(tid.0),
            &raw,
            Compression::Zstd(3),
            &mut scratch,
            &mut sealed,
        );
        w.add(BlobKind::Tree, BlobId(tid.0), raw.len() as u32, &sealed);
        let _ = entries;
        tid
    };
    let live: Vec<ChunkRef> = (0..n)
        .step_by(2)
        .map(|i| ChunkRef {
            id: ChunkId(id(i).0),
            len: 2000,
        })
        .collect();
    let mut nodes = Vec::new();
    // 16,384 chunks per file: about 114 page ids per node, so the one tree page stays far
    // below the 4 MiB page target even at 100M blobs.
    for (f, file_chunks) in live.chunks(16_384).enumerate() {
        let pages: Vec<TreeId> = format::chunk_list_pages(file_chunks)
            .into_iter()
            .map(|c| {
                put(
                    &mut w,
                    format::encode_versioned(1, &ChunkPage { chunks: c.to_vec() }),
                    &mut entries,
                )
            })
            .collect();
        let data = FileData {
            size: file_chunks.len() as u64 * 8,
            holes: vec![],
            content: Content::Pages(pages),
        };
        nodes.push(Node {
            name: format!("file{f:05}").into_bytes(),
            kind: NodeKind::File(data),
            meta: Meta::default(),
        });
    }
    let tree = put(
        &mut w,
        format::encode_versioned(1, &Tree { nodes, next: None }),
        &mut entries,
    );
    let (pid, bytes, blobs) = w.finish(repo.repo_id(), &repo.cipher);
    repo.backend.write_new(&Dir::Packs.path(&pid.to_hex()), &bytes)?;
    repo.write_delta(&IndexDelta {
        packs: vec![IndexPack {
            id: pid,
            size: bytes.len() as u64,
            blobs,
        }],
        supersedes: vec![],
        checkpoint: false,
    })?;
    repo.write_snapshot(&Snapshot {
        time: Time {
            secs: 1_700_000_000,
            nanos: 0,
        },
        utc_offset: 0,
        hostname: "synth".into(),
        username: "synth".into(),
        paths: vec![b"/synth".to_vec()],
        tags: vec![],
        note: None,
        tree,
        root: None,
        parent: None,
        summary: Summary::default(),
        program_version: String::new(),
        origin: None,
        seen: Vec::new(),
        git: None,
    })?;
    println!("{n} blobs indexed; snapshot references {}", live.len());
    Ok(())
}
