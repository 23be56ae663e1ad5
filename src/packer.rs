//! Sealed blobs → pack files in the repository. The one piece that fills packs (data and
//! tree blobs apart), writes each one durably when it reaches the target size, and keeps
//! the entries for the index delta that must follow: backup, prune's repack and the repair
//! commands all write packs through it. Write order (format-spec §14): packs first; the
//! caller writes their delta ([`Repository::index_packs`]) only after `finish`.

use crate::backend::{Backend, Dir};
use crate::crypto::Cipher;
use crate::error::Result;
use crate::format::{self, BlobKind, IndexDelta, IndexPack};
use crate::id::{BlobId, ObjectId};
use crate::pack::{LEADER_LEN, PackWriter};
use crate::repo::Repository;

pub struct PackSink<'a> {
    backend: &'a dyn Backend,
    repo_id: [u8; 32],
    cipher: Cipher,
    target: usize,
    dry_run: bool,
    data: PackWriter,
    trees: PackWriter,
    packs: Vec<IndexPack>,
    written: u64,
}

impl<'a> PackSink<'a> {
    /// Packs for `repo`, each closed at the repository's pack target size.
    pub fn new(repo: &'a Repository) -> Self {
        Self::with_parts(
            repo.backend.as_ref(),
            *repo.repo_id(),
            repo.cipher.clone(),
            repo.config.pack_target as usize,
            false,
        )
    }

    /// A sink from its parts (for a thread that does not hold the repository). With
    /// `dry_run` packs are built and counted but not written.
    pub fn with_parts(
        backend: &'a dyn Backend,
        repo_id: [u8; 32],
        cipher: Cipher,
        target: usize,
        dry_run: bool,
    ) -> Self {
        PackSink {
            backend,
            repo_id,
            cipher,
            target,
            dry_run,
            data: PackWriter::new(),
            trees: PackWriter::new(),
            packs: Vec::new(),
            written: 0,
        }
    }

    /// Add one sealed blob; a pack that reaches the target is written at once.
    pub fn add(&mut self, kind: BlobKind, id: BlobId, raw_len: u32, sealed: &[u8]) -> Result<()> {
        let w = if kind == BlobKind::Data {
            &mut self.data
        } else {
            &mut self.trees
        };
        w.add(kind, id, raw_len, sealed);
        if w.len() >= self.target {
            let full = std::mem::take(w);
            self.flush(full)?;
        } else if kind == BlobKind::Data && w.len() == LEADER_LEN + sealed.len() {
            // First blob of a data pack: from here on it grows to the target, so reserve it
            // once instead of doubling (which briefly holds two buffers). Room for the
            // largest sealed blob that can push it over the target.
            w.reserve(self.target + format::MAX_BLOB_RAW / 2);
        }
        Ok(())
    }

    fn flush(&mut self, w: PackWriter) -> Result<()> {
        if w.is_empty() {
            return Ok(());
        }
        let (id, bytes, entries) = w.finish(&self.repo_id, &self.cipher);
        if !self.dry_run {
            self.backend.write_new(&Dir::Packs.path(&id.to_hex()), &bytes)?;
        }
        self.written += bytes.len() as u64;
        self.packs.push(IndexPack {
            id,
            size: bytes.len() as u64,
            blobs: entries,
        });
        Ok(())
    }

    /// Write the packs still open; returns every pack written (durable) and their bytes.
    pub fn finish(mut self) -> Result<(Vec<IndexPack>, u64)> {
        let data = std::mem::take(&mut self.data);
        self.flush(data)?;
        let trees = std::mem::take(&mut self.trees);
        self.flush(trees)?;
        Ok((self.packs, self.written))
    }
}

impl Repository {
    /// Write the index delta for packs that are durable already, and add it to the cache.
    /// Nothing is written for no packs.
    pub fn index_packs(&mut self, packs: Vec<IndexPack>) -> Result<Option<ObjectId>> {
        if packs.is_empty() {
            return Ok(None);
        }
        let delta = IndexDelta {
            packs,
            supersedes: Vec::new(),
        };
        let id = self.write_delta(&delta)?;
        self.index.add_deltas(&[(id, delta)])?;
        Ok(Some(id))
    }
}
