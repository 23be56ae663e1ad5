//! The backup pipeline, top to bottom:
//!
//! walk (this thread, depth first, sorted by name bytes) → compare with the parent
//! snapshot's tree → read changed files into a buffer → FastCDC → keyed BLAKE3 →
//! dedup (this session's blobs, then the index) → (workers) compress + seal →
//! (packer) pack files, durable → index delta → tree blobs bottom-up → snapshot.
//!
//! Work is parallel over chunks, not files, so one large file keeps both cores busy.
//! Memory in flight between the walker and the packer is bounded in bytes.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded};
use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::blob::seal_blob;
use crate::chunker::FileChunkers;
use crate::compress::Compression;
use crate::crypto::{Cipher, Keys};
use crate::error::{Error, Result};
use crate::format::{
    self, BlobKind, CHUNK_LIST_INLINE_MAX, ChunkPage, ChunkRef, Content, DirEncoding, FileData, IndexDelta, IndexPack,
    Meta, Node, NodeKind, Snapshot, Summary, Time, Tree,
};
use crate::id::*;
use crate::meta::{meta_from, read_xattrs};
use crate::packer::PackSink;
use crate::platform;
use crate::prefetch::Prefetch;
use crate::progress::Progress;
use crate::repo::Repository;

mod count;
pub mod rules;
mod stdin;

pub use rules::{Rules, parse_size};
pub use stdin::backup_stdin;

/// The name of the per-directory ignore file.
pub const IGNORE_FILE: &str = ".projectcloneignore";
/// Bytes of chunk data allowed between the walker and the packer. Eight average chunks keep
/// both sealing workers busy; 16 MiB bought no speed and cost 8 MiB of peak memory.
const IN_FLIGHT_BUDGET: usize = 8 * 1024 * 1024;
/// Capacity a per-thread buffer (the walker's read buffer, a sealing worker's scratch) keeps
/// between files and blobs. One chunk cut at the 8 MiB maximum (a long run of zeros or of
/// any bytes the rolling hash never cuts) grew them to 9 MiB for the rest of the backup:
/// about 20 MB of a 53 MB heap peak on a developer tree. Normal chunks need less than this.
const KEEP_CAPACITY: usize = 4 * 1024 * 1024;
/// Read granularity.
const READ_SIZE: usize = 1024 * 1024;
/// A batch of blobs is handed to the sealing workers at this many bytes or blobs.
const BATCH_BYTES: usize = 2 * 1024 * 1024;
const BATCH_BLOBS: usize = 256;

#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub tags: Vec<String>,
    pub note: Option<String>,
    pub excludes: Vec<String>,
    pub dry_run: bool,
    pub compression: Compression,
    pub hostname: String,
    pub username: String,
    /// Absolute paths never backed up (the repository and the cache themselves); the
    /// directories among them are also recognised by device and inode under any other
    /// path ([`Skip`]).
    pub skip: Vec<PathBuf>,
    /// Record this time and UTC offset (seconds) instead of now (imports of older backups).
    pub time_override: Option<(Time, i32)>,
    /// Record these source paths (raw bytes, one per entry of `paths`) instead of the real
    /// ones; they also choose the parent snapshot. Imports record the project they came
    /// from, not the temporary folder they read.
    pub paths_override: Option<Vec<Vec<u8>>>,
    /// `--exclude-caches`: of a directory holding a valid `CACHEDIR.TAG`, keep only the tag.
    pub exclude_caches: bool,
    /// `--one-file-system`: directories on another file system than their source are
    /// kept empty, other entries there left out.
    pub one_file_system: bool,
    /// `--exclude-larger-than`: leave out files of more bytes than this.
    pub exclude_larger_than: Option<u64>,
}

impl BackupOptions {
    fn rules(&self) -> Rules {
        Rules {
            exclude_caches: self.exclude_caches,
            one_file_system: self.one_file_system,
            exclude_larger_than: self.exclude_larger_than,
        }
    }
}

#[derive(Debug)]
pub struct BackupResult {
    /// `None` for a dry run.
    pub snapshot_id: Option<SnapshotId>,
    pub summary: Summary,
    /// Source paths that could not be read, with the reason.
    pub errors: Vec<(PathBuf, String)>,
    /// Entries left out by `--exclude-caches`, `--one-file-system` or
    /// `--exclude-larger-than`, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Symlinks and special files stored (`summary` counts regular files, hard links and
    /// directories below the snapshot root; its shape is fixed on disk).
    pub other: u64,
}

/// Give back a buffer's capacity above [`KEEP_CAPACITY`] (its bytes are not kept).
fn shrink(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_CAPACITY {
        buf.truncate(KEEP_CAPACITY);
        buf.shrink_to(KEEP_CAPACITY);
    }
}

/// A byte budget: `acquire` blocks while more than the limit is in flight.
struct Budget {
    used: Mutex<usize>,
    cv: Condvar,
    limit: usize,
}

impl Budget {
    fn acquire(&self, n: usize) {
        let mut u = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *u > 0 && *u + n > self.limit {
            u = self.cv.wait(u).unwrap_or_else(|p| p.into_inner());
        }
        *u += n;
    }
    fn release(&self, n: usize) {
        let mut u = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *u -= n;
        self.cv.notify_all();
    }
}

struct Job {
    kind: BlobKind,
    id: BlobId,
    raw: Vec<u8>,
}

struct Sealed {
    kind: BlobKind,
    id: BlobId,
    raw_len: usize,
    sealed: Vec<u8>,
}

#[derive(Default)]
struct PackerOut {
    /// Every pack the backup wrote, those its checkpoint deltas listed included.
    packs: Vec<IndexPack>,
    /// The checkpoint deltas written, to delete once the last delta lists their packs.
    checkpoints: Vec<ObjectId>,
    data_added: u64,
    error: Option<Error>,
}

/// Everything the walker needs, threaded through the recursion.
struct Walker<'a> {
    repo: &'a Repository,
    chunkers: Arc<FileChunkers>,
    opts: &'a BackupOptions,
    jobs: Sender<Vec<Job>>,
    batch: Vec<Job>,
    batch_bytes: usize,
    budget: Arc<Budget>,
    seen: HashSet<BlobId>,
    excludes: Gitignore,
    ignores: Vec<Gitignore>,
    /// The repository and the cache (`opts.skip`), by path and by directory identity.
    skip: Skip,
    hardlinks: HashMap<(u64, u64), (Vec<u8>, FileData)>,
    summary: Summary,
    errors: Vec<(PathBuf, String)>,
    rules: Rules,
    /// The device of the source being walked (`--one-file-system`).
    source_dev: u64,
    skipped: Vec<(PathBuf, String)>,
    /// Symlinks and special files stored.
    other: u64,
    /// Some packs are condemned, or the parent snapshot is older than data this cache found
    /// lost or damaged: reused chunk lists must be checked against the index.
    check_reuse: bool,
    /// Parent snapshot start: files modified within a second of it are re-read.
    racy_before: Option<Time>,
    buf: Vec<u8>,
    progress: &'a dyn Progress,
    /// Bytes of the file being read reported to `progress` so far.
    file_progress: u64,
    /// A count of the totals runs beside the walk ([`count`]): the walk adds none.
    totals_counted: bool,
    /// Read-ahead threads running in front of the walk (started by `walk_sources`).
    prefetch: Option<Prefetch>,
    /// Whether they read file contents ahead (a first backup) or only metadata.
    prefetch_data: bool,
}

/// Take a snapshot. `guard` is the shared lock the caller holds: it is re-checked before
/// the snapshot is written (a lock gone stale may have let a prune delete packs we use).
pub fn backup(
    repo: &mut Repository,
    opts: &BackupOptions,
    progress: &dyn Progress,
    guard: Option<&crate::lock::LockGuard>,
) -> Result<BackupResult> {
    run(repo, opts, Source::Paths, progress, guard)
}

/// What a backup reads: the paths of its options, or one stream stored as a file.
enum Source<'a> {
    Paths,
    Stream {
        /// The file's name in the snapshot (one plain name).
        name: Vec<u8>,
        input: &'a mut dyn std::io::Read,
    },
}

fn run(
    repo: &mut Repository,
    opts: &BackupOptions,
    mut source: Source,
    progress: &dyn Progress,
    guard: Option<&crate::lock::LockGuard>,
) -> Result<BackupResult> {
    let started = Instant::now();
    if guard.is_some() {
        // Condemned marks written before our lock are visible only now: a prune waits
        // just for locks older than its mark, so we must know every earlier one.
        repo.sync_index()?;
    }
    let now = jiff::ZonedDateTime::now();
    let time = Time {
        secs: now.timestamp().as_second(),
        nanos: now.timestamp().subsec_nanosecond() as u32,
    };
    let utc_offset = now.offset().seconds();
    let (time, utc_offset) = opts.time_override.unwrap_or((time, utc_offset));

    // Resolve sources up front: a missing path fails before anything is written.
    let mut sources = Vec::new();
    for p in &opts.paths {
        let abs = std::fs::canonicalize(p).map_err(|e| Error::io(p, e))?;
        sources.push(abs);
    }
    if let Source::Stream { name, .. } = &source {
        // The snapshot records a stream as the path `/NAME` (as restic does): its parent
        // is the last backup of a stream of that name.
        sources = vec![PathBuf::from(OsStr::from_bytes(&[b"/", name.as_slice()].concat()))];
    }
    if sources.is_empty() {
        return Err(Error::Invalid("nothing to back up".into()));
    }
    let mut names = HashSet::new();
    for s in &sources {
        let name = s
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_else(|| b"root".to_vec());
        if sources.len() > 1 && !names.insert(name.clone()) {
            return Err(Error::Invalid(format!(
                "two paths share the name {:?}; back them up separately",
                String::from_utf8_lossy(&name)
            )));
        }
    }
    let mut path_bytes: Vec<Vec<u8>> = match &opts.paths_override {
        Some(p) if p.len() == sources.len() => p.clone(),
        Some(_) => return Err(Error::Invalid("paths_override needs one path per source".into())),
        None => sources.iter().map(|s| s.as_os_str().as_bytes().to_vec()).collect(),
    };
    path_bytes.sort();
    // Where the sources' git work tree stands, asked beside the walk (a `git status` reads
    // the tree too). Imports record no git state: their sources are copies.
    let git = match opts.paths_override {
        None if !opts.dry_run => {
            let sources = sources.clone();
            Some(std::thread::spawn(move || crate::git::state_of(&sources)))
        }
        _ => None,
    };

    // Parent: the latest snapshot of the same host and paths.
    let parent = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| {
            s.hostname == opts.hostname && {
                let mut p = s.paths.clone();
                p.sort();
                p == path_bytes
            }
        })
        .max_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    match &parent {
        Some((id, _)) => tracing::debug!(
            id = "backup.parent",
            snapshot = %id.to_hex(),
            "parent snapshot {}: files unchanged since it are not read",
            id.short()
        ),
        None => tracing::debug!(
            id = "backup.parent",
            "no parent snapshot of these paths on this host: every file is read"
        ),
    }

    // Checked now so a bad glob fails before anything is read; rebuilt per source below.
    let excludes = build_excludes(Path::new("/"), &opts.excludes)?;

    let budget = Arc::new(Budget {
        used: Mutex::new(0),
        cv: Condvar::new(),
        limit: IN_FLIGHT_BUDGET,
    });
    // Blobs travel in batches: one channel hand-off per blob costs more than sealing a small file.
    let (job_tx, job_rx) = bounded::<Vec<Job>>(4);
    let (sealed_tx, sealed_rx) = bounded::<Vec<Sealed>>(4);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 16);

    let packer_out = Arc::new(Mutex::new(PackerOut::default()));
    // A parent taken before something was found lost may reference it (or, after `repair
    // index` dropped it, chunks the index no longer holds): its unchanged files are reused
    // only when every chunk has an intact indexed copy, else read and stored again.
    let check_reuse = !repo.index.condemned()?.is_empty()
        || match (repo.index.verify_before()?, &parent) {
            (Some(before), Some((_, p))) => p.time.secs.saturating_mul(1_000_000_000) < before,
            _ => false,
        };
    let repo_ref: &Repository = repo;
    repo_ref.index.begin_read()?;
    // Set when the walk is over: a count still running has nothing left to tell.
    let stop_count = std::sync::atomic::AtomicBool::new(false);
    let (walked, mut summary, errors) = std::thread::scope(|scope| {
        for _ in 0..workers {
            let rx = job_rx.clone();
            let tx = sealed_tx.clone();
            let cipher = repo_ref.cipher.clone();
            let repo_id = *repo_ref.repo_id();
            let comp = opts.compression;
            scope.spawn(move || seal_worker(rx, tx, &repo_id, &cipher, comp));
        }
        drop(sealed_tx);
        drop(job_rx);
        {
            let out = packer_out.clone();
            let budget = budget.clone();
            let backend = repo_ref.backend.clone();
            let cipher = repo_ref.cipher.clone();
            let repo_id = *repo_ref.repo_id();
            let target = repo_ref.config.pack_target as usize;
            let dry = opts.dry_run;
            let checkpoints = (!dry).then(|| Checkpoints {
                repo: repo_ref,
                guard,
                last: Instant::now(),
                written: Vec::new(),
            });
            scope.spawn(move || {
                let sink = PackSink::with_parts(backend, repo_id, cipher, target, dry);
                packer(sealed_rx, &budget, &out, sink, checkpoints)
            });
        }

        let mut w = Walker {
            repo: repo_ref,
            chunkers: Arc::new(repo_ref.file_chunkers()),
            opts,
            jobs: job_tx,
            batch: Vec::new(),
            batch_bytes: 0,
            budget: budget.clone(),
            seen: HashSet::new(),
            excludes,
            ignores: Vec::new(),
            skip: Skip::new(&opts.skip),
            hardlinks: HashMap::new(),
            summary: Summary::default(),
            errors: Vec::new(),
            rules: opts.rules(),
            source_dev: 0,
            skipped: Vec::new(),
            other: 0,
            check_reuse,
            racy_before: parent.as_ref().map(|(_, s)| Time {
                secs: s.time.secs - 1,
                nanos: s.time.nanos,
            }),
            buf: Vec::with_capacity(repo_ref.config.chunker.max as usize + READ_SIZE),
            progress,
            file_progress: 0,
            totals_counted: false,
            prefetch: None,
            // Without a parent every file is read; with one, only changed files are.
            prefetch_data: parent.is_none(),
        };
        // The walk reads as it goes: the totals grow with it, until the count (when
        // progress is shown) has found them all.
        progress.scanning(true);
        if matches!(source, Source::Paths) && progress.wants_totals() {
            let (sources, stop) = (&sources, &stop_count);
            // Without a thread (the system refused one), the walk counts as it goes.
            w.totals_counted = std::thread::Builder::new()
                .name("backup-count".into())
                .spawn_scoped(scope, move || {
                    if count::count_sources(sources, opts, progress, stop) {
                        progress.scanning(false);
                    }
                })
                .is_ok();
        }
        let walked = match &mut source {
            Source::Paths => w.walk_sources(&sources, parent.as_ref().map(|(_, s)| s.tree)),
            Source::Stream { name, input } => w.walk_stream(name, &mut **input, parent.is_some()),
        }
        .and_then(|v| w.flush_batch().map(|_| v));
        stop_count.store(true, std::sync::atomic::Ordering::Relaxed);
        progress.scanning(false);
        w.prefetch = None; // stop the read-ahead threads
        // Closing the job channel ends the workers, then the packer flushes its last packs.
        let Walker {
            jobs,
            summary,
            errors,
            skipped,
            other,
            ..
        } = w;
        drop(jobs);
        (walked, summary, (errors, skipped, other))
    });
    let (errors, skipped, other) = errors;
    repo.index.end_read();
    let (tree, root) = walked?;

    let out = std::mem::take(&mut *packer_out.lock().unwrap_or_else(|p| p.into_inner()));
    if let Some(e) = out.error {
        return Err(e);
    }
    summary.data_added = out.data_added;
    summary.errors = errors.len() as u64;
    summary.duration_ns = started.elapsed().as_nanos() as u64;

    if opts.dry_run {
        return Ok(BackupResult {
            snapshot_id: None,
            summary,
            errors,
            skipped,
            other,
        });
    }
    if guard.is_some_and(|g| !g.still_valid()) {
        return Err(Error::Invalid(
            "this backup's repository lock went stale (suspended for 30 minutes?): a prune may have \
             removed data it relies on, so no snapshot was written; run the backup again"
                .into(),
        ));
    }
    // Write order: packs (durable above) → index delta → snapshot. The delta lists every
    // pack of this backup, so its checkpoint deltas are redundant once it is written: they
    // go, and the packs they listed are no longer taken for a killed backup's work (kept
    // a day for a resume) once this snapshot is forgotten.
    repo.index_packs(out.packs)?;
    repo.drop_redundant_deltas(&out.checkpoints);
    let snap = Snapshot {
        time,
        utc_offset,
        hostname: opts.hostname.clone(),
        username: opts.username.clone(),
        paths: path_bytes,
        tags: opts.tags.clone(),
        note: opts.note.clone(),
        tree,
        root,
        parent: parent.map(|(id, _)| id),
        summary: summary.clone(),
        program_version: env!("CARGO_PKG_VERSION").to_string(),
        origin: None,
        seen: repo.heads()?,
        git: git.and_then(|g| g.join().ok().flatten()),
    };
    let id = repo.write_snapshot(&snap)?;
    Ok(BackupResult {
        snapshot_id: Some(id),
        summary,
        errors,
        skipped,
        other,
    })
}

fn seal_worker(
    rx: Receiver<Vec<Job>>,
    tx: Sender<Vec<Sealed>>,
    repo_id: &[u8; 32],
    cipher: &Cipher,
    comp: Compression,
) {
    let mut scratch = Vec::new();
    for batch in rx {
        let mut out = Vec::with_capacity(batch.len());
        for job in batch {
            // Allocated by `seal_into` at its exact size once the compressed length is
            // known: a guess too small for incompressible data reallocated and copied it.
            let mut sealed = Vec::new();
            seal_blob(
                repo_id,
                cipher,
                job.kind,
                &job.id,
                &job.raw,
                comp,
                &mut scratch,
                &mut sealed,
            );
            out.push(Sealed {
                kind: job.kind,
                id: job.id,
                raw_len: job.raw.len(),
                sealed,
            });
            shrink(&mut scratch);
        }
        if tx.send(out).is_err() {
            return;
        }
    }
}

/// A backup writes a checkpoint delta for the packs it has stored once this many are
/// waiting for one...
const CHECKPOINT_PACKS: usize = 4;
/// ...or once this long has passed since the last one: a backup killed after hours of
/// uploading leaves its work indexed, and the next backup deduplicates against it.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// What a backup needs to write checkpoint deltas from the packer thread.
struct Checkpoints<'a> {
    repo: &'a Repository,
    guard: Option<&'a crate::lock::LockGuard>,
    last: Instant,
    /// The checkpoint deltas written so far.
    written: Vec<ObjectId>,
}

impl Checkpoints<'_> {
    fn maybe(&mut self, sink: &mut PackSink, force: bool) -> Result<()> {
        let due = sink.pending() >= CHECKPOINT_PACKS || (sink.pending() > 0 && self.last.elapsed() >= CHECKPOINT_EVERY);
        if !(due || force) {
            return Ok(());
        }
        // A lock gone stale may have let a prune condemn these packs as unindexed: no
        // delta may name them then (the backup fails before its snapshot anyway).
        if self.guard.is_some_and(|g| !g.still_valid()) {
            return Ok(());
        }
        let packs = sink.take_durable();
        if packs.is_empty() {
            return Ok(());
        }
        let r = self.repo;
        let id = crate::repo::write_delta_to(
            r.backend.as_ref(),
            r.repo_id(),
            &r.keys,
            &r.cipher,
            &IndexDelta {
                packs,
                supersedes: Vec::new(),
                checkpoint: true,
            },
        )?;
        self.written.push(id);
        self.last = Instant::now();
        Ok(())
    }
}

fn packer(
    rx: Receiver<Vec<Sealed>>,
    budget: &Budget,
    out: &Mutex<PackerOut>,
    mut sink: PackSink,
    mut checkpoints: Option<Checkpoints>,
) {
    let mut failed = None;
    for s in rx.into_iter().flatten() {
        budget.release(s.raw_len);
        if failed.is_none()
            && let Err(e) = sink
                .add(s.kind, s.id, s.raw_len as u32, &s.sealed)
                .and_then(|()| checkpoints.as_mut().map_or(Ok(()), |c| c.maybe(&mut sink, false)))
        {
            // Keep draining the channel so the walker is not blocked; it stops at its
            // next hand-off when the channel closes.
            failed = Some(e);
        }
    }
    let res = failed.map_or_else(|| sink.finish(), Err);
    let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
    o.checkpoints = checkpoints.map(|c| c.written).unwrap_or_default();
    match res {
        Ok((packs, written)) => {
            o.packs = packs;
            o.data_added = written;
        }
        Err(e) => o.error = Some(e),
    }
}

/// `--exclude` globs in gitignore syntax, anchored at `root`.
fn build_excludes(root: &Path, globs: &[String]) -> Result<Gitignore> {
    let mut b = GitignoreBuilder::new(root);
    for g in globs {
        b.add_line(None, g)
            .map_err(|e| Error::Invalid(format!("exclude pattern {g:?}: {e}")))?;
    }
    b.build().map_err(|e| Error::Invalid(format!("exclude patterns: {e}")))
}

fn name_bytes(n: &OsStr) -> Vec<u8> {
    n.as_bytes().to_vec()
}

/// What a backup never descends into: the repository and the cache. Matched by path, and
/// by the device and inode of the directory, so another path to the same directory that a
/// path comparison misses (a bind mount of the repository inside the source, a second
/// mount of its file system) is left out too.
#[derive(Clone, Debug, Default)]
pub struct Skip {
    paths: Vec<PathBuf>,
    /// (device, inode) of each skipped path that is a directory, as it was at the start.
    dirs: Vec<(u64, u64)>,
}

impl Skip {
    /// From absolute, canonical paths ([`BackupOptions::skip`]); paths that do not exist
    /// (a dry run's repository) are matched by path only.
    pub fn new(paths: &[PathBuf]) -> Skip {
        let dirs = paths
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .filter(|m| m.is_dir())
            .map(|m| (m.dev(), m.ino()))
            .collect();
        Skip {
            paths: paths.to_vec(),
            dirs,
        }
    }

    fn has_path(&self, path: &Path) -> bool {
        self.paths.iter().any(|s| s == path)
    }

    /// Is this (not followed) entry one of the skipped directories, under whatever path?
    pub fn has_dir(&self, md: &std::fs::Metadata) -> bool {
        md.is_dir() && self.dirs.contains(&(md.dev(), md.ino()))
    }
}

/// Is `path` left out of the backup: a skipped path, an `--exclude` match, or matched by the
/// innermost `.projectcloneignore` that has an opinion (`!pattern` re-includes)? (Skipped
/// directories reached by another path are found by [`Skip::has_dir`] on their metadata.)
pub(crate) fn ignored(skip: &Skip, excludes: &Gitignore, ignores: &[Gitignore], path: &Path, is_dir: bool) -> bool {
    ignored_by(skip, excludes, ignores, path, is_dir).is_some()
}

/// [`ignored`], naming the rule that leaves `path` out: `--exclude PATTERN`,
/// `FILE: PATTERN` of a `.projectcloneignore`, or the repository or cache.
pub(crate) fn ignored_by(
    skip: &Skip,
    excludes: &Gitignore,
    ignores: &[Gitignore],
    path: &Path,
    is_dir: bool,
) -> Option<String> {
    if skip.has_path(path) {
        return Some("the repository or the cache".into());
    }
    if let Match::Ignore(g) = excludes.matched(path, is_dir) {
        return Some(format!("--exclude {}", g.original()));
    }
    for g in ignores.iter().rev() {
        match g.matched(path, is_dir) {
            Match::Ignore(g) => {
                let from = g
                    .from()
                    .map(|f| f.display().to_string())
                    .unwrap_or_else(|| IGNORE_FILE.into());
                return Some(format!("{from}: {}", g.original()));
            }
            Match::Whitelist(_) => return None,
            Match::None => {}
        }
    }
    None
}

/// One directory as a backup sees it: its entries by name, what is left of them under
/// `--exclude-caches`, and its `.projectcloneignore`. Shared by the walk and the count of
/// the totals ([`count`]), so both leave out the same entries.
pub(crate) struct Listing {
    /// (name, full path), sorted by name.
    pub entries: Vec<(Vec<u8>, PathBuf)>,
    /// It holds a cache directory tag (`--exclude-caches`): only the tag is left in `entries`.
    pub cache_dir: bool,
    /// Its `.projectcloneignore`, if it has one that parses (the valid lines of a partly
    /// invalid file still apply).
    pub ignore: Option<Gitignore>,
    /// What could not be read: (path, message).
    pub errors: Vec<(PathBuf, String)>,
}

pub(crate) fn list_dir(path: &Path, rules: &Rules) -> Listing {
    let mut errors = Vec::new();
    let mut entries: Vec<(Vec<u8>, PathBuf)> = Vec::new();
    match std::fs::read_dir(path) {
        Ok(rd) => {
            for e in rd {
                match e {
                    Ok(e) => entries.push((name_bytes(&e.file_name()), e.path())),
                    Err(err) => errors.push((path.to_path_buf(), err.to_string())),
                }
            }
        }
        Err(e) => errors.push((path.to_path_buf(), format!("cannot list directory: {e}"))),
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let cache_dir = rules.cache_dir(path, entries.iter().map(|e| e.0.as_slice()));
    if cache_dir {
        entries.retain(|e| e.0 == rules::CACHEDIR_TAG.as_bytes());
    }
    let ignore = if entries.iter().any(|(n, _)| n == IGNORE_FILE.as_bytes()) {
        let file = path.join(IGNORE_FILE);
        let mut b = GitignoreBuilder::new(path);
        if let Some(e) = b.add(&file) {
            errors.push((file.clone(), e.to_string()));
        }
        match b.build() {
            Ok(g) => Some(g),
            Err(e) => {
                errors.push((file, e.to_string()));
                None
            }
        }
    } else {
        None
    };
    Listing {
        entries,
        cache_dir,
        ignore,
        errors,
    }
}

/// What a backup does with one directory entry (its metadata not followed).
pub(crate) enum Visit {
    /// Left out by a pattern, or as the repository or the cache: the rule.
    Excluded(String),
    /// Left out by a rule (`--exclude-larger-than`, ...): why.
    Skipped(String),
    /// Kept as an empty directory (`--one-file-system`): why.
    EmptyDir(String),
    Keep,
}

/// The walk's decision on the entry at `full`, shared with the count of the totals.
pub(crate) fn visit(
    skip: &Skip,
    excludes: &Gitignore,
    ignores: &[Gitignore],
    rules: &Rules,
    source_dev: u64,
    full: &Path,
    md: &std::fs::Metadata,
) -> Visit {
    if let Some(rule) = ignored_by(skip, excludes, ignores, full, md.is_dir()) {
        return Visit::Excluded(rule);
    }
    if skip.has_dir(md) {
        return Visit::Excluded("the repository or the cache".into());
    }
    match rules.entry(md, source_dev) {
        rules::Verdict::Skip(why) => Visit::Skipped(why),
        rules::Verdict::EmptyDir(why) => Visit::EmptyDir(why),
        rules::Verdict::Keep => Visit::Keep,
    }
}

fn join_rel(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        name.to_vec()
    } else {
        let mut r = rel.to_vec();
        r.push(b'/');
        r.extend_from_slice(name);
        r
    }
}

impl Walker<'_> {
    fn walk_sources(&mut self, sources: &[PathBuf], parent_tree: Option<TreeId>) -> Result<(TreeId, Option<Meta>)> {
        if let [src] = sources
            && let Ok(md) = std::fs::symlink_metadata(src)
            && md.is_dir()
        {
            let mut root_meta = meta_from(&md);
            root_meta.xattrs = read_xattrs(src).unwrap_or_default();
            // `--exclude` patterns with a slash are anchored at the snapshot root.
            self.excludes = build_excludes(src, &self.opts.excludes)?;
            self.source_dev = md.dev();
            self.prefetch = Some(Prefetch::start(
                vec![(src.clone(), self.excludes.clone())],
                self.skip.clone(),
                self.rules.clone(),
                self.prefetch_data,
                false,
            ));
            let parent = parent_tree.map(NodeKind::Dir);
            let nodes = self.dir_nodes(src, b"", parent.as_ref())?;
            return Ok((self.store_root(nodes)?, Some(root_meta)));
        }
        // Several paths, or one non-directory: a synthetic root holding each by name.
        let parent_nodes = match &parent_tree {
            Some(t) => self.repo.load_tree(t).unwrap_or_default(),
            None => Vec::new(),
        };
        let mut roots = Vec::new();
        for s in sources {
            if std::fs::symlink_metadata(s).is_ok_and(|m| m.is_dir()) {
                let ex = build_excludes(s.parent().unwrap_or(Path::new("/")), &self.opts.excludes)?;
                roots.push((s.clone(), ex));
            }
        }
        self.prefetch = Some(Prefetch::start(
            roots,
            self.skip.clone(),
            self.rules.clone(),
            self.prefetch_data,
            true,
        ));
        let mut nodes = Vec::new();
        for s in sources {
            let name = s
                .file_name()
                .map(|n| n.as_bytes().to_vec())
                .unwrap_or_else(|| b"root".to_vec());
            let pn = parent_nodes.iter().find(|n| n.name == name);
            // The snapshot root holds each source by name: anchor patterns at its parent.
            self.excludes = build_excludes(s.parent().unwrap_or(Path::new("/")), &self.opts.excludes)?;
            self.source_dev = std::fs::symlink_metadata(s).map(|m| m.dev()).unwrap_or(0);
            if let Some(n) = self.entry(s, &name, name.clone(), pn)? {
                nodes.push(n);
            }
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((self.store_root(nodes)?, None))
    }

    /// A path that could not be read (completely). Collected into the result, which the
    /// caller reports once; not logged here as well.
    fn error(&mut self, path: &Path, msg: impl std::fmt::Display) {
        self.progress.error();
        self.errors.push((path.to_path_buf(), msg.to_string()));
    }

    /// Does a reused file's content live (only) in condemned packs, or in copies known to
    /// be missing or damaged, or not in the index at all? Then it is read again: a backup
    /// never makes a snapshot depend on a pack a prune may delete or on data that is gone.
    fn relies_on_unsafe(&self, d: &FileData) -> bool {
        if !self.check_reuse {
            return false;
        }
        let mut ids: Vec<BlobId> = match &d.content {
            Content::Chunks(_) => Vec::new(),
            Content::Pages(p) => p.iter().map(|p| BlobId(p.0)).collect(),
        };
        match self.repo.chunk_list(&d.content) {
            Ok(c) => ids.extend(c.iter().map(|c| BlobId(c.id.0))),
            Err(_) => return true,
        }
        ids.iter()
            .any(|id| !self.seen.contains(id) && !self.repo.index.has_blob(id).unwrap_or(false))
    }

    /// Queue a blob unless it is already stored or in flight.
    fn store(&mut self, kind: BlobKind, id: BlobId, raw: Vec<u8>) -> Result<()> {
        if self.is_stored(&id)? {
            return Ok(());
        }
        self.queue(kind, id, raw)
    }

    /// Store a chunk of file data: copied only when it is new.
    fn store_chunk(&mut self, id: BlobId, chunk: &[u8]) -> Result<()> {
        if self.is_stored(&id)? {
            return Ok(());
        }
        self.queue(BlobKind::Data, id, chunk.to_vec())
    }

    /// Whether this backup already stores `id`, or the repository holds it.
    fn is_stored(&mut self, id: &BlobId) -> Result<bool> {
        if !self.seen.insert(*id) {
            return Ok(true);
        }
        self.repo.index.has_blob(id)
    }

    fn queue(&mut self, kind: BlobKind, id: BlobId, raw: Vec<u8>) -> Result<()> {
        self.batch_bytes += raw.len();
        self.batch.push(Job { kind, id, raw });
        if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= BATCH_BLOBS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let n = std::mem::take(&mut self.batch_bytes);
        self.budget.acquire(n);
        if self.jobs.send(std::mem::take(&mut self.batch)).is_err() {
            self.budget.release(n);
            return Err(Error::Invalid(
                "backup pipeline stopped (a pack could not be written)".into(),
            ));
        }
        Ok(())
    }

    /// Store a snapshot's root directory: always as tree pages, so the snapshot can name it.
    fn store_root(&mut self, nodes: Vec<Node>) -> Result<TreeId> {
        let keys = &self.repo.keys;
        let pages = format::encode_tree_pages(nodes, |raw| TreeId(keys.meta_id(raw)))?;
        self.store_pages(pages)
    }

    /// Store any other directory and return its node kind: inline, or tree pages.
    fn store_dir(&mut self, nodes: Vec<Node>) -> Result<NodeKind> {
        let keys = &self.repo.keys;
        match format::encode_dir(nodes, true, |raw| TreeId(keys.meta_id(raw)))? {
            DirEncoding::Inline(b) => Ok(NodeKind::InlineDir(b)),
            DirEncoding::Pages(pages) => Ok(NodeKind::Dir(self.store_pages(pages)?)),
        }
    }

    /// Queue tree pages (last first, as `encode_tree_pages` returns them); the directory's id.
    fn store_pages(&mut self, pages: Vec<(TreeId, Vec<u8>)>) -> Result<TreeId> {
        let root = pages
            .last()
            .map(|p| p.0)
            .expect("encode_tree_pages returns at least one page");
        for (id, raw) in pages {
            self.store(BlobKind::Tree, BlobId(id.0), raw)?;
        }
        Ok(root)
    }

    /// Back up the entries of one directory; `parent` is its entry in the parent snapshot.
    fn dir_nodes(&mut self, path: &Path, rel: &[u8], parent: Option<&NodeKind>) -> Result<Vec<Node>> {
        // The snapshot root is not counted: restore, export and `stats` count what is below it.
        if !rel.is_empty() {
            self.summary.dirs += 1;
        }
        let parent_nodes = match parent {
            Some(k) => self.repo.dir_nodes(k).unwrap_or_else(|e| {
                tracing::warn!("parent tree of {} unreadable ({e}); reading all files", path.display());
                Vec::new()
            }),
            None => Vec::new(),
        };
        let listing = list_dir(path, &self.rules);
        for (p, e) in &listing.errors {
            self.error(p, e);
        }
        if listing.cache_dir {
            let why = format!("holds a {} (exclude-caches): only the tag is kept", rules::CACHEDIR_TAG);
            let p = crate::format_name(path.as_os_str().as_bytes());
            tracing::info!(id = "backup.skipped", path = %p, reason = %why, "skipped: {p}: {why}");
            self.skipped.push((path.to_path_buf(), why));
        }

        let pushed = match listing.ignore {
            Some(g) => {
                self.ignores.push(g);
                true
            }
            None => false,
        };

        let mut nodes = Vec::with_capacity(listing.entries.len());
        let mut pi = 0;
        for (name, full) in listing.entries {
            while pi < parent_nodes.len() && parent_nodes[pi].name < name {
                pi += 1;
            }
            let pn = parent_nodes.get(pi).filter(|n| n.name == name);
            let child_rel = join_rel(rel, &name);
            if let Some(n) = self.entry(&full, &name, child_rel, pn)? {
                nodes.push(n);
            }
        }
        if pushed {
            self.ignores.pop();
        }
        Ok(nodes)
    }

    /// Back up one directory entry; `None` when it is ignored or unreadable.
    fn entry(&mut self, full: &Path, name: &[u8], rel: Vec<u8>, parent: Option<&Node>) -> Result<Option<Node>> {
        let md = match std::fs::symlink_metadata(full) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None), // vanished
            Err(e) => {
                self.error(full, e);
                return Ok(None);
            }
        };
        let ft = md.file_type();
        let verdict = visit(
            &self.skip,
            &self.excludes,
            &self.ignores,
            &self.rules,
            self.source_dev,
            full,
            &md,
        );
        match verdict {
            Visit::Excluded(rule) => {
                let p = crate::format_name(full.as_os_str().as_bytes());
                tracing::info!(id = "backup.excluded", path = %p, rule = %rule, "excluded: {p} ({rule})");
                return Ok(None);
            }
            Visit::Skipped(why) => {
                let p = crate::format_name(full.as_os_str().as_bytes());
                tracing::info!(id = "backup.skipped", path = %p, reason = %why, "skipped: {p}: {why}");
                self.skipped.push((full.to_path_buf(), why));
                return Ok(None);
            }
            Visit::EmptyDir(_) | Visit::Keep => {}
        }
        if let Some(p) = &self.prefetch {
            p.consumed(crate::prefetch::weight(ft.is_file(), md.len(), self.prefetch_data));
        }
        let mut meta = meta_from(&md);
        if !ft.is_file() {
            match read_xattrs(full) {
                Ok(x) => meta.xattrs = x,
                Err(e) => self.error(full, format!("cannot read extended attributes: {e}")),
            }
        }
        let kind = if let Visit::EmptyDir(why) = verdict {
            let p = crate::format_name(full.as_os_str().as_bytes());
            tracing::info!(id = "backup.skipped", path = %p, reason = %why, "skipped: {p}: {why}");
            self.skipped.push((full.to_path_buf(), why));
            self.summary.dirs += 1;
            self.store_dir(Vec::new())?
        } else if ft.is_dir() {
            let pk = parent.map(|n| &n.kind).filter(|k| k.is_dir());
            let nodes = self.dir_nodes(full, &rel, pk)?;
            self.store_dir(nodes)?
        } else if ft.is_symlink() {
            match std::fs::read_link(full) {
                Ok(t) => NodeKind::Symlink(t.as_os_str().as_bytes().to_vec()),
                Err(e) => {
                    self.error(full, e);
                    return Ok(None);
                }
            }
        } else if ft.is_fifo() {
            NodeKind::Fifo
        } else if ft.is_socket() {
            NodeKind::Socket
        } else if ft.is_char_device() {
            NodeKind::CharDevice(md.rdev())
        } else if ft.is_block_device() {
            NodeKind::BlockDevice(md.rdev())
        } else {
            if !self.totals_counted {
                self.progress.add_total(1, md.len());
            }
            return self.counted_file(full, name, rel, meta, md.len(), parent);
        };
        if !kind.is_dir() {
            self.other += 1;
        }
        Ok(Some(Node {
            name: name.to_vec(),
            kind,
            meta,
        }))
    }

    /// [`Self::file`], reported to `progress`: its chunks as they are read, and whatever
    /// was not read (unchanged, holes, unreadable) when it is done, so the bytes done
    /// reach the total the walk announced.
    fn counted_file(
        &mut self,
        full: &Path,
        name: &[u8],
        rel: Vec<u8>,
        meta: Meta,
        size: u64,
        parent: Option<&Node>,
    ) -> Result<Option<Node>> {
        self.progress.current(full);
        self.file_progress = 0;
        let r = self.file(full, name, rel, meta, size, parent);
        if self.file_progress < size {
            self.progress.add_bytes(size - self.file_progress);
        }
        self.progress.file_done();
        r
    }

    fn file(
        &mut self,
        full: &Path,
        name: &[u8],
        rel: Vec<u8>,
        meta: Meta,
        size: u64,
        parent: Option<&Node>,
    ) -> Result<Option<Node>> {
        let key = (meta.dev, meta.inode);
        if meta.nlink > 1
            && let Some((target, data)) = self.hardlinks.get(&key)
        {
            if parent.is_some() {
                self.summary.files_unmodified += 1;
            } else {
                self.summary.files_new += 1;
            }
            let kind = NodeKind::HardLink {
                target: target.clone(),
                data: data.clone(),
            };
            let mut meta = meta;
            meta.xattrs = read_xattrs(full).unwrap_or_default();
            return Ok(Some(Node {
                name: name.to_vec(),
                kind,
                meta,
            }));
        }
        // Unchanged since the parent snapshot? (size, mtime, ctime, inode, device; racy rule)
        let mut racy_reread = None;
        if let Some(p) = parent {
            let pdata = match &p.kind {
                NodeKind::File(d) => Some(d),
                NodeKind::HardLink { data, .. } => Some(data),
                _ => None,
            };
            if let Some(d) = pdata {
                let racy = self.racy_before.is_none_or(|r| meta.mtime >= r);
                if !racy
                    && !self.relies_on_unsafe(d)
                    && d.size == size
                    && p.meta.mtime == meta.mtime
                    && p.meta.ctime == meta.ctime
                    && p.meta.inode == meta.inode
                    && p.meta.dev == meta.dev
                {
                    self.summary.files_unmodified += 1;
                    let mut m = meta;
                    // ctime unchanged ⇒ xattrs unchanged.
                    m.xattrs = p.meta.xattrs.clone();
                    if m.nlink > 1 {
                        self.hardlinks.insert(key, (rel, d.clone()));
                    }
                    tracing::debug!(id = "backup.unmodified", path = %full.display(), "unmodified: {}", full.display());
                    return Ok(Some(Node {
                        name: name.to_vec(),
                        kind: NodeKind::File(d.clone()),
                        meta: m,
                    }));
                }
                // Only the racy-clean rule sends it to be read: if its content and
                // metadata turn out the same, it did not change.
                if racy
                    && d.size == size
                    && p.meta.mtime == meta.mtime
                    && p.meta.ctime == meta.ctime
                    && p.meta.inode == meta.inode
                    && p.meta.dev == meta.dev
                {
                    racy_reread = Some((d.clone(), p.meta.mtime, p.meta.ctime));
                }
            }
        }
        let (data, meta) = match self.read_file(full) {
            Ok(v) => v,
            Err(e) => {
                self.error(full, format!("cannot read: {e}"));
                return Ok(None);
            }
        };
        let p = crate::format_name(full.as_os_str().as_bytes());
        let same =
            |(d, mtime, ctime): &(FileData, Time, Time)| *d == data && *mtime == meta.mtime && *ctime == meta.ctime;
        if racy_reread.as_ref().is_some_and(same) {
            self.summary.files_unmodified += 1;
            tracing::info!(id = "backup.read_unmodified", path = %p, bytes = data.size, "read, unmodified (modified within a second of the last backup): {p}");
        } else if parent.is_some() {
            self.summary.files_changed += 1;
            tracing::info!(id = "backup.read_changed", path = %p, bytes = data.size, "read, changed: {p}");
        } else {
            self.summary.files_new += 1;
            tracing::info!(id = "backup.read_new", path = %p, bytes = data.size, "read, new: {p}");
        }
        if meta.nlink > 1 {
            self.hardlinks.insert((meta.dev, meta.inode), (rel, data.clone()));
        }
        Ok(Some(Node {
            name: name.to_vec(),
            kind: NodeKind::File(data),
            meta,
        }))
    }

    /// Read a regular file. A read that returns fewer bytes than the size `fstat` gave
    /// means the file changed while read (it shrank), or its file system reports a size
    /// it does not serve: it is read again from a new `open` and `fstat`, up to
    /// [`READ_ATTEMPTS`] times, and then reported, never stored shorter than it is.
    fn read_file(&mut self, full: &Path) -> std::io::Result<(FileData, Meta)> {
        let mut last = String::new();
        for _ in 0..READ_ATTEMPTS {
            match self.read_file_once(full)? {
                FileRead::Done(data, meta) => return Ok((data, meta)),
                FileRead::Short(what) => last = what,
            }
        }
        Err(std::io::Error::other(format!(
            "{last}, on each of {READ_ATTEMPTS} tries: the file kept shrinking while it was read, or its \
             file system reports a size it does not serve; it is left out of this snapshot (back it up \
             again once it is stable, or exclude it)"
        )))
    }

    /// Read a regular file once, through one descriptor: metadata (fstat) and bytes belong
    /// to the same version of the file.
    fn read_file_once(&mut self, full: &Path) -> std::io::Result<FileRead> {
        let f = platform::open_for_reading(full)?;
        let md = f.metadata()?;
        if !md.is_file() {
            return Err(std::io::Error::other("changed type while being read"));
        }
        let mut meta = meta_from(&md);
        meta.xattrs = crate::meta::read_xattrs_fd(&f)?;
        let size = md.len();
        // Sparse files: read only the data regions. The probe moves the file offset (to
        // the end of the file where the file system has no holes to show, as on compressed
        // ZFS or FUSE), so every region below is read from its own offset with `pread`.
        let mut regions = if size > 0 && md.blocks() * 512 < size {
            data_regions(&f, size)
        } else {
            vec![(0, size)]
        };
        let mut holes = Vec::new();
        let mut pos = 0;
        for &(s, l) in &regions {
            if s > pos {
                holes.push((pos, s - pos));
            }
            pos = s + l;
        }
        if pos < size {
            holes.push((pos, size - pos));
        }
        if holes.is_empty() {
            // No hole found (the scan may still have cut the file where it gave up): dense.
            regions = vec![(0, size)];
        }
        let mut chunks = Vec::new();
        let mut total = 0u64;
        let mut buf = std::mem::take(&mut self.buf);
        let res = (|| -> std::io::Result<()> {
            for (i, &(start, len)) in regions.iter().enumerate() {
                // The last region of a dense file is read to EOF, so a file that grows
                // while read is captured whole; sparse regions to their recorded length.
                let limit = if i + 1 == regions.len() && holes.is_empty() {
                    u64::MAX
                } else {
                    len
                };
                let chunkers = self.chunkers.clone();
                let chunker = chunkers.for_size(size);
                let repo = self.repo;
                let got = chunker.stream(&mut ReadAt::new(&f, start), limit, &mut buf, |c| {
                    let id = ChunkId(repo.keys.chunk_id(c));
                    chunks.push(ChunkRef {
                        id,
                        len: c.len() as u32,
                    });
                    self.summary.data_read += c.len() as u64;
                    self.file_progress += c.len() as u64;
                    self.progress.add_bytes(c.len() as u64);
                    self.store_chunk(BlobId(id.0), c).map_err(std::io::Error::other)
                })?;
                total += got;
                if got < len {
                    break; // end of file inside a region: short (checked below)
                }
            }
            Ok(())
        })();
        shrink(&mut buf);
        self.buf = buf;
        if size >= KEEP_CACHED {
            platform::drop_cached(&f, 0, 0);
        }
        res?;
        let hole_total: u64 = holes.iter().map(|h| h.1).sum();
        if total + hole_total < size {
            let holes_note = if holes.is_empty() { "" } else { " (holes included)" };
            return Ok(FileRead::Short(format!(
                "read {} of its {size} bytes{holes_note}",
                total + hole_total
            )));
        }
        if !holes.is_empty() {
            // The probe ran after the fstat: a file that shrank in between shows its lost
            // tail as a hole (no data past the new end), so check the size again.
            let now = f.metadata()?.len();
            if now < size {
                return Ok(FileRead::Short(format!(
                    "it shrank from {size} to {now} bytes while being read"
                )));
            }
        }
        let content = self.content(chunks).map_err(std::io::Error::other)?;
        // A dense file that grew while read keeps all that was read.
        Ok(FileRead::Done(
            FileData {
                size: total + hole_total,
                holes,
                content,
            },
            meta,
        ))
    }
}

impl Walker<'_> {
    /// A file's chunk list as stored: inline, or in chunk-list pages (queued here).
    fn content(&mut self, chunks: Vec<ChunkRef>) -> Result<Content> {
        if chunks.len() <= CHUNK_LIST_INLINE_MAX {
            return Ok(Content::Chunks(chunks));
        }
        let mut pages = Vec::new();
        for page in format::chunk_list_pages(&chunks) {
            let raw = format::encode_versioned(1, &ChunkPage { chunks: page.to_vec() });
            let id = TreeId(self.repo.keys.meta_id(&raw));
            self.store(BlobKind::Tree, BlobId(id.0), raw)?;
            pages.push(id);
        }
        Ok(Content::Pages(pages))
    }
}

/// Reads of a file that returns fewer bytes than its size (each from a new `open`).
const READ_ATTEMPTS: usize = 3;

/// One read of a regular file.
enum FileRead {
    Done(FileData, Meta),
    /// Fewer bytes than the size said; what happened, for the error message.
    Short(String),
}

/// Page cache a backup keeps of the file it is reading: what it has read beyond this is
/// given back ([`platform::drop_cached`]) as it goes, and the rest once the file is read.
/// Smaller files keep theirs: one more call per file cost the low-duplication tree
/// (28k files) more system time than it saved.
///
/// A backup reads each byte once, so caching it only pushes out what the user's programs
/// use. Giving it back as it goes also lets the kernel's read-ahead reuse those pages
/// instead of taking free memory: on a virtual machine that returns free memory to its host
/// (free page reporting), each page taken from free memory faults in the host, and a cold
/// read of a 2 GiB image spent 2.3-3.0 s of system time in some runs against 0.25 s when
/// the pages were given back every 8 MiB.
const KEEP_CACHED: u64 = 8 * 1024 * 1024;

/// Reads a file from an explicit offset (`pread`), whatever its file offset is.
struct ReadAt<'a> {
    f: &'a File,
    pos: u64,
    /// Where the page cache of what was read has not been given back yet.
    kept_from: u64,
    /// The file is not seekable: plain `read`s from where `open` left the offset.
    in_order: bool,
}

impl<'a> ReadAt<'a> {
    fn new(f: &'a File, pos: u64) -> Self {
        ReadAt {
            f,
            pos,
            kept_from: pos,
            in_order: false,
        }
    }
}

impl std::io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = if self.in_order {
            (&mut &*self.f).read(buf)?
        } else {
            match self.f.read_at(buf, self.pos) {
                // Not seekable (a FUSE file opened with FOPEN_NONSEEKABLE): no `pread`, and
                // no `lseek` either, so the probe found no holes and moved nothing: the
                // offset is still at 0, where this one region starts.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::SPIPE.raw_os_error()) && self.pos == 0 => {
                    self.in_order = true;
                    (&mut &*self.f).read(buf)?
                }
                r => r?,
            }
        };
        self.pos += n as u64;
        if self.pos - self.kept_from >= KEEP_CACHED && !self.in_order {
            platform::drop_cached(self.f, self.kept_from, self.pos - self.kept_from);
            self.kept_from = self.pos;
        }
        Ok(n)
    }
}

/// Data regions of a sparse file via SEEK_DATA / SEEK_HOLE (this moves the file offset).
fn data_regions(f: &File, size: u64) -> Vec<(u64, u64)> {
    use rustix::fs::{SeekFrom, seek};
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let data = match seek(f, SeekFrom::Data(pos)) {
            Ok(d) => d,
            // ENXIO: no data after `pos`, the rest is a hole.
            Err(rustix::io::Errno::NXIO) => break,
            // SEEK_DATA unsupported or failing: read the whole file densely.
            Err(_) if out.is_empty() => return vec![(0, size)],
            Err(_) => {
                out.push((pos, size - pos));
                break;
            }
        };
        if data >= size {
            break;
        }
        if data < pos {
            // An answer behind the scan (a broken file system): read the rest whole.
            out.push((pos, size - pos));
            break;
        }
        let hole = seek(f, SeekFrom::Hole(data)).unwrap_or(size).min(size);
        if hole <= data {
            // No progress (a broken file system): read the rest whole.
            out.push((data, size - data));
            break;
        }
        out.push((data, hole - data));
        pos = hole;
    }
    if out.is_empty() && size > 0 {
        // Entirely a hole: nothing to read.
        return Vec::new();
    }
    out
}

/// Keys are needed by tests that build trees by hand.
pub fn tree_id(keys: &Keys, t: &Tree) -> TreeId {
    TreeId(keys.meta_id(&format::encode_versioned(1, t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fault::FailAfter;
    use crate::backend::local::LocalBackend;
    use crate::progress::NoProgress;

    fn opts(src: &Path) -> BackupOptions {
        BackupOptions {
            paths: vec![src.to_path_buf()],
            hostname: "h".into(),
            ..Default::default()
        }
    }

    /// Write order is an invariant: a backup that dies after any number of writes leaves a
    /// repository whose every snapshot is complete, and the next backup succeeds.
    #[test]
    fn failure_after_any_write_leaves_a_consistent_repository() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("d")).unwrap();
        for i in 0..20u32 {
            let mut data = vec![0u8; 50_000 + i as usize * 1000];
            blake3::Hasher::new()
                .update(&i.to_le_bytes())
                .finalize_xof()
                .fill(&mut data);
            std::fs::write(src.join("d").join(format!("f{i}")), data).unwrap();
        }
        let repo_path = t.path().join("repo");
        let cache = t.path().join("cache");
        let mut repo = Repository::init(
            Arc::new(LocalBackend::new(&repo_path)),
            None,
            &crate::repo::test_init_options(),
            &cache,
        )
        .unwrap();
        let first = backup(&mut repo, &opts(&src), &NoProgress, None)
            .unwrap()
            .snapshot_id
            .unwrap();
        // New content so the next backups must write packs, a delta and a snapshot.
        let mut big = vec![0u8; 1_500_000];
        blake3::Hasher::new().update(b"big").finalize_xof().fill(&mut big);
        std::fs::write(src.join("new"), big).unwrap();
        for i in 0..20u32 {
            let mut data = vec![0u8; 50_000];
            blake3::Hasher::new()
                .update(b"g")
                .update(&i.to_le_bytes())
                .finalize_xof()
                .fill(&mut data);
            std::fs::write(src.join("d").join(format!("g{i}")), data).unwrap();
        }
        let mut failures = 0;
        for ok_writes in 0..8 {
            let faulty = Arc::new(FailAfter::new(LocalBackend::new(&repo_path), ok_writes));
            let mut r = Repository::open(faulty, None, &cache).unwrap();
            if backup(&mut r, &opts(&src), &NoProgress, None).is_err() {
                failures += 1;
            }
            let repo = Repository::open(Arc::new(LocalBackend::new(&repo_path)), None, &cache).unwrap();
            let report = crate::check::check(&repo, true).unwrap();
            assert!(report.ok(), "after {ok_writes} writes: {:?}", report.errors);
            assert!(repo.snapshots().unwrap().iter().any(|(id, _)| *id == first));
        }
        assert!(failures >= 3, "the fault injection must actually interrupt backups");
        let mut repo = Repository::open(Arc::new(LocalBackend::new(&repo_path)), None, &cache).unwrap();
        backup(&mut repo, &opts(&src), &NoProgress, None).unwrap();
        assert!(crate::check::check(&repo, true).unwrap().ok());
    }
}
