//! Sealed blobs → pack files in the repository. The one piece that fills packs (data and
//! tree blobs apart), writes each one durably when it reaches the target size, and keeps
//! the entries for the index delta that must follow: backup, prune's repack and the repair
//! commands all write packs through it. Write order (format-spec §14): packs first; the
//! caller writes their delta ([`Repository::index_packs`]) only after `finish`.

use std::sync::{Arc, Condvar, Mutex};

use crate::backend::{Backend, Dir};
use crate::crypto::Cipher;
use crate::error::{Error, Result};
use crate::format::{self, BlobKind, IndexDelta, IndexPack};
use crate::id::{BlobId, ObjectId, PackId};
use crate::pack::{LEADER_LEN, PackWriter, StreamedPack};
use crate::repo::Repository;

pub struct PackSink {
    backend: Arc<dyn Backend>,
    repo_id: [u8; 32],
    cipher: Cipher,
    target: usize,
    dry_run: bool,
    data: OpenPack,
    trees: OpenPack,
    /// Packs go to the store as they are built ([`Backend::write_streamed`]): a local
    /// store, no upload threads, not a dry run. Cleared when the store says it cannot.
    streams: bool,
    packs: Vec<IndexPack>,
    written: u64,
    uploads: Option<Uploads>,
    /// How many of `packs` (in order) were handed out by `take_durable` already.
    handed_out: usize,
    /// The last pack's buffer once it is written (to local storage, in this thread): the
    /// next data pack is built in it instead of in new memory.
    spare: Option<Vec<u8>>,
}

/// The pack being filled: in memory (written whole when full), or streamed to the store.
enum OpenPack {
    Mem(PackWriter),
    Streamed(Box<StreamedPack>),
}

impl Default for OpenPack {
    fn default() -> Self {
        OpenPack::Mem(PackWriter::new())
    }
}

impl OpenPack {
    fn len(&self) -> usize {
        match self {
            OpenPack::Mem(w) => w.len(),
            OpenPack::Streamed(s) => s.len(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            OpenPack::Mem(w) => w.is_empty(),
            OpenPack::Streamed(s) => s.is_empty(),
        }
    }
}

/// Packs written beside the caller by a few threads, for stores whose writes wait on the
/// network: at most `limit` bytes of finished packs wait or travel at once.
struct Uploads {
    tx: Option<crossbeam_channel::Sender<(PackId, Vec<u8>)>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    budget: Arc<(Mutex<usize>, Condvar)>,
    limit: usize,
    error: Arc<Mutex<Option<Error>>>,
    /// Packs whose write has completed.
    done: Arc<Mutex<std::collections::HashSet<PackId>>>,
}

impl Uploads {
    fn start(backend: &Arc<dyn Backend>, workers: usize, limit: usize) -> Uploads {
        let (tx, rx) = crossbeam_channel::unbounded::<(PackId, Vec<u8>)>();
        let budget = Arc::new((Mutex::new(0usize), Condvar::new()));
        let error: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
        let done: Arc<Mutex<std::collections::HashSet<PackId>>> = Arc::default();
        let threads = (0..workers)
            .filter_map(|i| {
                let (rx, backend, budget, error, done) =
                    (rx.clone(), backend.clone(), budget.clone(), error.clone(), done.clone());
                std::thread::Builder::new()
                    .name(format!("upload-{i}"))
                    .spawn(move || {
                        for (id, bytes) in rx {
                            let failed = error.lock().unwrap_or_else(|p| p.into_inner()).is_some();
                            if !failed {
                                match backend.write_new(&Dir::Packs.path(&id.to_hex()), &bytes) {
                                    Ok(_) => {
                                        done.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
                                    }
                                    Err(e) => {
                                        error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                                    }
                                }
                            }
                            let (used, cv) = &*budget;
                            *used.lock().unwrap_or_else(|p| p.into_inner()) -= bytes.len();
                            cv.notify_all();
                        }
                    })
                    .ok()
            })
            .collect();
        Uploads {
            tx: Some(tx),
            threads,
            budget,
            limit,
            error,
            done,
        }
    }

    fn failed(&self) -> Option<Error> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn send(&self, id: PackId, bytes: Vec<u8>) -> Result<()> {
        {
            let (used, cv) = &*self.budget;
            let mut u = used.lock().unwrap_or_else(|p| p.into_inner());
            while *u > 0 && *u + bytes.len() > self.limit {
                u = cv.wait(u).unwrap_or_else(|p| p.into_inner());
            }
            *u += bytes.len();
        }
        if let Some(e) = self.failed() {
            return Err(e);
        }
        self.tx
            .as_ref()
            .expect("open until finish")
            .send((id, bytes))
            .map_err(|_| Error::Invalid("pack upload threads stopped".into()))
    }

    /// Wait until every pack is written; the first failure, if any.
    fn finish(mut self) -> Result<()> {
        drop(self.tx.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        match self.failed() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl PackSink {
    /// Packs for `repo`, each closed at the repository's pack target size.
    pub fn new(repo: &Repository) -> Self {
        Self::with_parts(
            repo.backend.clone(),
            *repo.repo_id(),
            repo.cipher.clone(),
            repo.config.pack_target as usize,
            false,
        )
    }

    /// A sink from its parts (for a thread that does not hold the repository). With
    /// `dry_run` packs are built and counted but not written. A store that takes several
    /// writes at once ([`Backend::connections`]) gets them from upload threads while the
    /// caller fills the next pack.
    pub fn with_parts(
        backend: Arc<dyn Backend>,
        repo_id: [u8; 32],
        cipher: Cipher,
        target: usize,
        dry_run: bool,
    ) -> Self {
        let n = backend.connections();
        let uploads = (!dry_run && n > 1).then(|| Uploads::start(&backend, n, n * target));
        PackSink {
            backend,
            repo_id,
            cipher,
            target,
            dry_run,
            data: OpenPack::default(),
            trees: OpenPack::default(),
            streams: !dry_run && uploads.is_none(),
            packs: Vec::new(),
            written: 0,
            uploads,
            handed_out: 0,
            spare: None,
        }
    }

    /// The packs written durably since the last call, in the order they were finished
    /// (stopping at the first one whose upload is still under way), for a checkpoint
    /// delta.
    pub fn take_durable(&mut self) -> Vec<IndexPack> {
        let start = self.handed_out;
        let mut end = start;
        while end < self.packs.len() {
            let durable = match &self.uploads {
                Some(u) => u
                    .done
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&self.packs[end].id),
                None => true,
            };
            if !durable {
                break;
            }
            end += 1;
        }
        self.handed_out = end;
        self.packs[start..end].to_vec()
    }

    /// Packs finished so far that `take_durable` has not handed out.
    pub fn pending(&self) -> usize {
        self.packs.len() - self.handed_out
    }

    /// Add one sealed blob; a pack that reaches the target is written at once.
    pub fn add(&mut self, kind: BlobKind, id: BlobId, raw_len: u32, sealed: &[u8]) -> Result<()> {
        let data = kind == BlobKind::Data;
        if self.streams && (if data { &self.data } else { &self.trees }).is_empty() {
            match self.backend.write_streamed(Dir::Packs) {
                Some(out) => {
                    *(if data { &mut self.data } else { &mut self.trees }) =
                        OpenPack::Streamed(Box::new(StreamedPack::new(out?)))
                }
                None => self.streams = false,
            }
        }
        let open = if data { &mut self.data } else { &mut self.trees };
        match open {
            OpenPack::Mem(w) => {
                w.add(kind, id, raw_len, sealed);
                if data && w.len() < self.target && w.len() == LEADER_LEN + sealed.len() {
                    // First blob of a data pack: from here on it grows to the target, so
                    // reserve it once instead of doubling (which briefly holds two
                    // buffers). Room for the largest sealed blob that can push it over.
                    w.reserve(self.target + format::MAX_BLOB_RAW / 2);
                }
            }
            OpenPack::Streamed(p) => p.add(kind, id, raw_len, sealed)?,
        }
        if open.len() >= self.target {
            let full = std::mem::take(open);
            self.flush(full)?;
            if data && let Some(buf) = self.spare.take() {
                self.data = OpenPack::Mem(PackWriter::reusing(buf));
            }
        }
        Ok(())
    }

    fn flush(&mut self, open: OpenPack) -> Result<()> {
        if open.is_empty() {
            return Ok(());
        }
        let (id, size, entries) = match open {
            OpenPack::Streamed(p) => {
                let (id, size, entries, _) =
                    p.finish(&self.repo_id, &self.cipher, |id| Dir::Packs.path(&id.to_hex()))?;
                (id, size, entries)
            }
            OpenPack::Mem(w) => {
                let (id, bytes, entries) = w.finish(&self.repo_id, &self.cipher);
                let size = bytes.len() as u64;
                if !self.dry_run {
                    match &self.uploads {
                        Some(u) => u.send(id, bytes)?,
                        None => {
                            self.backend.write_new(&Dir::Packs.path(&id.to_hex()), &bytes)?;
                            self.spare = Some(bytes);
                        }
                    }
                }
                (id, size, entries)
            }
        };
        self.written += size;
        let hex = id.to_hex();
        if self.dry_run {
            tracing::info!(id = "pack.written", pack = %hex, bytes = size, dry_run = true, "would write pack {hex} ({size} bytes)");
        } else {
            tracing::info!(id = "pack.written", pack = %hex, bytes = size, "wrote pack {hex} ({size} bytes)");
        }
        self.packs.push(IndexPack {
            id,
            size,
            blobs: entries,
        });
        Ok(())
    }

    /// Write the packs still open and wait for every upload; returns every pack written,
    /// those `take_durable` handed out included (all durable when this returns), and the
    /// bytes of all packs written.
    pub fn finish(mut self) -> Result<(Vec<IndexPack>, u64)> {
        let data = std::mem::take(&mut self.data);
        let trees = std::mem::take(&mut self.trees);
        let res = self.flush(data).and_then(|()| self.flush(trees));
        if let Some(u) = self.uploads.take() {
            u.finish()?;
        }
        res?;
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
            checkpoint: false,
        };
        let id = self.write_delta(&delta)?;
        tracing::debug!(id = "index.delta_written", delta = %id.to_hex(), packs = delta.packs.len(), "wrote index delta {} for {} pack(s)", id.to_hex(), delta.packs.len());
        self.index.add_deltas(&[(id, delta)])?;
        Ok(Some(id))
    }

    /// Delete deltas whose packs a delta written since lists too (a finished backup's
    /// checkpoint deltas). Best effort: one left behind only lists its packs twice, which
    /// every reader takes as once; the failure is logged.
    pub fn drop_redundant_deltas(&self, ids: &[ObjectId]) {
        if self.backend.append_only() {
            return;
        }
        for id in ids {
            if let Err(e) = self.backend.delete(&Dir::Index.path(&id.to_hex())) {
                tracing::warn!("checkpoint delta {id} could not be deleted (it stays, harmless): {e}");
            }
        }
    }
}
