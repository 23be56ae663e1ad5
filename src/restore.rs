//! Restore: plan (what `--dry-run` prints), then execute.
//!
//! Safety (guarantee 6): every name was checked when its tree was decoded; every file
//! system call is made relative to a directory descriptor opened beneath the target
//! with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so nothing is written outside it and
//! no symlink in the target is followed.
//!
//! Order: directories and empty files first (walk order), then file data pack by pack
//! (each pack read once, positioned writes from both cores; a file's last write sets its
//! times through its descriptor), then hard links, then metadata: owner before mode (chown
//! clears setuid), xattrs before times; directory metadata last, deepest first. In a fresh
//! target most entries are created with their final mode (`Modes`) and need no chmod.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use globset::{Glob, GlobMatcher};
use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::backend::Dir;
use crate::blob::open_blob_in_place;
use crate::error::{Error, Result};
use crate::format::{ChunkRef, Content, FileData, Meta, Node, NodeKind, Snapshot};
use crate::id::{BlobId, ChunkId, PackId};
use crate::per_thread::PerThread;
use crate::progress::Progress;
use crate::repo::Repository;

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub target: PathBuf,
    pub includes: Vec<String>,
    pub verify: bool,
    pub dry_run: bool,
}

/// The metadata a restore or export applies: a tree's [`Meta`] without the fields that
/// only detect changes (ctime, inode, device, link count). A plan holds one per entry, so
/// this is 40 bytes less per file of a large restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: crate::format::Time,
    /// A boxed slice: 8 bytes less than a `Vec` in every item, and no allocation when empty.
    pub xattrs: Box<[(Vec<u8>, Vec<u8>)]>,
}

impl From<Meta> for ItemMeta {
    fn from(m: Meta) -> ItemMeta {
        ItemMeta {
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            mtime: m.mtime,
            xattrs: m.xattrs.into_boxed_slice(),
        }
    }
}

/// One thing to create, in walk order. Paths are relative to the target.
#[derive(Clone, Debug)]
pub enum Item {
    Dir {
        rel: Box<[u8]>,
        meta: ItemMeta,
    },
    File {
        rel: Box<[u8]>,
        data: FileData,
        meta: ItemMeta,
    },
    Symlink {
        rel: Box<[u8]>,
        target: Vec<u8>,
        meta: ItemMeta,
    },
    Special {
        rel: Box<[u8]>,
        kind: Special,
        meta: ItemMeta,
    },
    HardLink {
        rel: Box<[u8]>,
        target: Vec<u8>,
        meta: ItemMeta,
    },
}

impl Item {
    pub fn rel(&self) -> &[u8] {
        match self {
            Item::Dir { rel, .. }
            | Item::File { rel, .. }
            | Item::Symlink { rel, .. }
            | Item::Special { rel, .. }
            | Item::HardLink { rel, .. } => rel,
        }
    }
    fn meta(&self) -> &ItemMeta {
        match self {
            Item::Dir { meta, .. }
            | Item::File { meta, .. }
            | Item::Symlink { meta, .. }
            | Item::Special { meta, .. }
            | Item::HardLink { meta, .. } => meta,
        }
    }
}

/// The kind of a special file (a `NodeKind` holds far more: this keeps `Item` small).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    Fifo,
    Socket,
    Char(u64),
    Block(u64),
}

#[derive(Debug, Default)]
pub struct Plan {
    pub items: Vec<Item>,
    /// Regular files and hard links; directories below the snapshot root; symlinks and
    /// special files (`other`): what backup and `stats` count under the same names.
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    pub bytes: u64,
    /// Directories whose listing could not be read (damaged or missing tree blobs): their
    /// contents are left out, everything else is restored.
    pub errors: Vec<(Vec<u8>, String)>,
    /// `--include` patterns that matched no entry of the snapshot.
    pub unmatched_includes: Vec<String>,
}

#[derive(Debug, Default)]
pub struct RestoreResult {
    pub plan: Plan,
    /// What was restored completely (a dry run: what would be): regular files and hard
    /// links, directories, symlinks and special files (`other`), and the bytes of file
    /// content. An entry named in `errors` is not counted.
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    pub bytes: u64,
    /// Bytes of file data written for the files counted in `files` (holes and hard links
    /// are not written).
    pub bytes_written: u64,
    /// Paths (relative to the target) that could not be restored, with the reason. A file
    /// whose data could not be written completely is not left in the target.
    pub errors: Vec<(String, String)>,
}

/// `--include` patterns: without a slash a name at any depth; with a slash anchored
/// at the snapshot root. A directory match includes its subtree.
pub struct Includes(Vec<(bool, GlobMatcher)>, Vec<(String, std::sync::atomic::AtomicBool)>);

impl Includes {
    pub fn new(patterns: &[String]) -> Result<Includes> {
        let mut v = Vec::new();
        for p in patterns {
            let anchored = p.contains('/');
            let pat = p.trim_start_matches('/').trim_end_matches('/');
            let g = Glob::new(pat).map_err(|e| Error::Invalid(format!("include pattern {p:?}: {e}")))?;
            v.push((anchored, g.compile_matcher()));
        }
        let hits = patterns.iter().map(|p| (p.clone(), Default::default())).collect();
        Ok(Includes(v, hits))
    }
    /// The patterns that matched no entry so far.
    pub fn unmatched(&self) -> Vec<String> {
        use std::sync::atomic::Ordering::Relaxed;
        self.1
            .iter()
            .filter(|(_, hit)| !hit.load(Relaxed))
            .map(|(p, _)| p.clone())
            .collect()
    }
    fn all(&self) -> bool {
        self.0.is_empty()
    }
    /// Does any pattern match? Every pattern is tried, so each one's hits are known.
    fn matches(&self, rel: &[u8], name: &[u8]) -> bool {
        let mut any = false;
        for ((anchored, g), (_, hit)) in self.0.iter().zip(&self.1) {
            let s = if *anchored { rel } else { name };
            if g.is_match(Path::new(OsStr::from_bytes(s))) {
                hit.store(true, std::sync::atomic::Ordering::Relaxed);
                any = true;
            }
        }
        any
    }
}

pub fn display(rel: &[u8]) -> String {
    crate::format_name(rel)
}

/// Build the restore plan for a snapshot.
pub fn plan(repo: &Repository, snap: &Snapshot, includes: &Includes) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut files = HashSet::new();
    plan_dir(
        repo,
        &NodeKind::Dir(snap.tree),
        b"",
        includes,
        includes.all(),
        &mut plan,
        &mut files,
    )?;
    plan.unmatched_includes = includes.unmatched();
    Ok(plan)
}

/// The plan of the directory entry `dir` found at `prefix` in a snapshot, with paths
/// relative to it (hard links among its entries stay links; one whose first name is
/// outside it carries the content).
pub fn plan_under(repo: &Repository, dir: &NodeKind, prefix: &[u8]) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut files = HashSet::new();
    let inc = Includes::new(&[])?;
    // Planned under the real prefix, so hard-link targets (snapshot paths) match.
    plan_dir(repo, dir, prefix, &inc, true, &mut plan, &mut files)?;
    if prefix.is_empty() {
        return Ok(plan);
    }
    // `prefix/` off the front of a path.
    let cut = |p: &[u8]| p[(prefix.len() + 1).min(p.len())..].to_vec();
    for item in &mut plan.items {
        match item {
            Item::HardLink { rel, target, .. } => {
                *rel = cut(rel).into();
                *target = cut(target);
            }
            Item::Dir { rel, .. } | Item::File { rel, .. } | Item::Symlink { rel, .. } | Item::Special { rel, .. } => {
                *rel = cut(rel).into()
            }
        }
    }
    for (rel, _) in &mut plan.errors {
        *rel = cut(rel);
    }
    Ok(plan)
}

/// `rel/name`, allocated at its exact length: a plan holds one per entry.
fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        return name.to_vec();
    }
    let mut r = Vec::with_capacity(rel.len() + 1 + name.len());
    r.extend_from_slice(rel);
    r.push(b'/');
    r.extend_from_slice(name);
    r
}

fn plan_dir(
    repo: &Repository,
    dir: &NodeKind,
    rel: &[u8],
    inc: &Includes,
    included: bool,
    plan: &mut Plan,
    files: &mut HashSet<Vec<u8>>,
) -> Result<()> {
    let nodes = match repo.dir_nodes(dir) {
        Ok(n) => n,
        Err(e) => {
            plan.errors
                .push((rel.to_vec(), format!("directory contents lost: {e}")));
            return Ok(());
        }
    };
    for node in nodes {
        let Node { name, kind, meta } = node;
        // Only a file with several links can be a hard link's target.
        let multi_link = meta.nlink > 1;
        let meta = ItemMeta::from(meta);
        let r = join(rel, &name);
        // Patterns are tried inside an included subtree too, to know which ones hit.
        let inc_here = inc.matches(&r, &name) || included;
        match kind {
            k if k.is_dir() => {
                let mark = plan.items.len();
                plan.items.push(Item::Dir { rel: r.as_slice().into(), meta });
                plan_dir(repo, &k, &r, inc, inc_here, plan, files)?;
                if !inc_here && plan.items.len() == mark + 1 {
                    plan.items.pop();
                } else {
                    plan.dirs += 1;
                }
            }
            _ if !inc_here => {}
            NodeKind::File(data) => {
                plan.files += 1;
                plan.bytes += data.size;
                if multi_link {
                    files.insert(r.clone());
                }
                plan.items.push(Item::File { rel: r.into(), data, meta });
            }
            NodeKind::HardLink { target, data } => {
                plan.files += 1;
                if files.contains(&target) {
                    plan.items.push(Item::HardLink { rel: r.into(), target, meta });
                } else {
                    // The first name was not restored: this one carries the content.
                    plan.bytes += data.size;
                    files.insert(r.clone());
                    plan.items.push(Item::File { rel: r.into(), data, meta });
                }
            }
            NodeKind::Symlink(target) => {
                plan.other += 1;
                plan.items.push(Item::Symlink { rel: r.into(), target, meta });
            }
            k => {
                plan.other += 1;
                let kind = match k {
                    NodeKind::Fifo => Special::Fifo,
                    NodeKind::Socket => Special::Socket,
                    NodeKind::CharDevice(d) => Special::Char(d),
                    NodeKind::BlockDevice(d) => Special::Block(d),
                    // Directories, files, symlinks and hard links were matched above.
                    _ => continue,
                };
                plan.items.push(Item::Special { rel: r.into(), kind, meta });
            }
        }
    }
    Ok(())
}

pub(crate) fn errno(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

pub(crate) const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// Open a directory beneath the target without following any symlink.
pub(crate) fn open_dir_beneath(root: &OwnedFd, rel: &[u8]) -> std::io::Result<OwnedFd> {
    let p: &OsStr = if rel.is_empty() {
        OsStr::new(".")
    } else {
        OsStr::from_bytes(rel)
    };
    rustix::fs::openat2(
        root,
        p,
        OFlags::DIRECTORY | OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        BENEATH,
    )
    .map_err(errno)
}

pub(crate) fn split_rel(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (b"", rel),
    }
}

/// Caches the descriptors of the parent directories used last (opened beneath the target).
struct Parents<'a> {
    root: &'a OwnedFd,
    /// Most recently used first, at most [`PARENTS_KEPT`].
    open: Vec<(Vec<u8>, OwnedFd)>,
}

/// Directory descriptors a [`Parents`] keeps. The walk order alternates between a
/// directory's files and its subdirectories' files, and a pack holds files of several
/// neighbouring directories. With one descriptor kept, a restore of 126k files in 4,400
/// directories made 24,400 directory opens; with eight (and phase 3 passing over entries
/// with nothing left to set), 11,400: about one per directory in each of phases 1 and 2,
/// and 1,600 in phases 3 and 4.
const PARENTS_KEPT: usize = 8;

impl<'a> Parents<'a> {
    fn new(root: &'a OwnedFd) -> Self {
        Parents { root, open: Vec::new() }
    }

    fn get(&mut self, parent: &[u8]) -> std::io::Result<&OwnedFd> {
        match self.open.iter().position(|(p, _)| p == parent) {
            Some(i) => self.open[..=i].rotate_right(1),
            None => {
                let fd = open_dir_beneath(self.root, parent)?;
                self.open.truncate(PARENTS_KEPT - 1);
                self.open.insert(0, (parent.to_vec(), fd));
            }
        }
        Ok(&self.open[0].1)
    }
}

/// Remove `name` in `dir` (a directory recursively), never following symlinks; a
/// directory we may not list (mode 000 when not root) is opened up first.
pub(crate) fn remove_at(dir: &OwnedFd, name: &OsStr) -> std::io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(errno(e)),
    }
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    let sub = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Err(Errno::ACCESS) => {
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o700), AtFlags::empty()).map_err(errno)?;
            rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(errno)?
        }
        r => r.map_err(errno)?,
    };
    // Removing entries needs write permission on the directory itself.
    let _ = rustix::fs::fchmod(&sub, Mode::from_raw_mode(0o700));
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(&sub).map_err(errno)? {
        let e = e.map_err(errno)?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    for n in names {
        remove_at(&sub, OsStr::from_bytes(&n))?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(errno)
}

/// The modes entries are created with. In a fresh target whose new entries take exactly
/// the mode asked for (no setgid, no default ACL, a known umask), a file or directory is
/// created with its recorded permission bits when that still lets the restore fill it,
/// and then needs no chmod: one system call fewer per entry. Otherwise entries are created
/// private (0600 files, 0700 directories) and get their mode at the end.
#[derive(Clone, Copy)]
struct Modes {
    exact: bool,
    umask: u32,
}

impl Modes {
    fn private() -> Modes {
        Modes { exact: false, umask: 0 }
    }

    fn for_target(root: &OwnedFd, target: &Path, fresh: bool) -> Modes {
        if !fresh {
            return Modes::private();
        }
        let sgid = rustix::fs::fstat(root).map_or(true, |st| st.st_mode & 0o2000 != 0);
        // A default ACL replaces the umask for new entries: then the mode is not predictable.
        let acl = !matches!(xattr::get(target, "system.posix_acl_default"), Ok(None) | Err(_));
        let Some(umask) = process_umask() else {
            return Modes::private();
        };
        if sgid || acl {
            return Modes::private();
        }
        let modes = Modes { exact: true, umask };
        // Other inheritance schemes (NFSv4 ACLs, mounts that force modes) are found by
        // trying: a file and a directory must come out with the predicted mode.
        if modes.probe(root) { modes } else { Modes::private() }
    }

    /// Create a file (0754) and a directory (0751) in the empty target, compare their
    /// modes with the prediction, and remove them.
    fn probe(&self, root: &OwnedFd) -> bool {
        let name = format!(".projectclone-mode-probe-{}", std::process::id());
        let want = |m: u32| m & !self.umask;
        let file = rustix::fs::openat(
            root,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o754),
        )
        .and_then(|fd| rustix::fs::fstat(&fd))
        .map(|st| st.st_mode & 0o7777 == want(0o754));
        let _ = rustix::fs::unlinkat(root, name.as_str(), AtFlags::empty());
        let dir = rustix::fs::mkdirat(root, name.as_str(), Mode::from_raw_mode(0o751))
            .and_then(|()| rustix::fs::statat(root, name.as_str(), AtFlags::SYMLINK_NOFOLLOW))
            .map(|st| st.st_mode & 0o7777 == want(0o751));
        let _ = rustix::fs::unlinkat(root, name.as_str(), AtFlags::REMOVEDIR);
        file == Ok(true) && dir == Ok(true)
    }

    /// The mode a directory or regular file is created with. Directories keep owner rwx
    /// (entries are created inside them) and are never created writable by others, so
    /// nobody else can add entries while the restore runs; files keep owner write.
    fn create(&self, mode: u32, dir: bool) -> u32 {
        let m = mode & 0o777;
        match (self.exact, dir) {
            (true, true) if m & 0o700 == 0o700 && m & 0o022 == 0 => m,
            (true, false) if m & 0o200 != 0 => m,
            (_, true) => 0o700,
            (_, false) => 0o600,
        }
    }

    /// Whether an entry made with `create` already has its recorded mode: no special bits
    /// and nothing taken away by the umask.
    fn already_right(&self, mode: u32, dir: bool) -> bool {
        self.exact && mode & 0o7777 == self.create(mode, dir) & !self.umask
    }
}

/// The process's umask, read from `/proc/self/status`: reading it through `umask(2)` means
/// setting it for a moment, which would race with the lock-refresh thread creating files.
pub(crate) fn process_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok().filter(|m| *m <= 0o777)
}

fn ts(t: &crate::format::Time) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nanos as _,
    }
}

pub fn restore(
    repo: &Repository,
    snap: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    let includes = Includes::new(&opts.includes)?;
    let plan = plan(repo, snap, &includes)?;
    execute(repo, snap, plan, includes.all(), opts, progress)
}

/// Carry out a plan (from [`plan`], possibly trimmed by the caller: an incremental export
/// leaves out the files it hard-links from an earlier export). `whole`: the plan covers
/// the whole snapshot, so the snapshot root's metadata is applied to the target.
pub fn execute(
    repo: &Repository,
    snap: &Snapshot,
    plan: Plan,
    whole: bool,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    let mut res = RestoreResult::default();
    if opts.dry_run {
        res.errors = plan.errors.iter().map(|(rel, e)| (display(rel), e.clone())).collect();
        (res.files, res.dirs, res.other, res.bytes) = (plan.files, plan.dirs, plan.other, plan.bytes);
        res.plan = plan;
        return Ok(res);
    }
    // An empty (or new) target holds nothing of its own, so nothing needs removing before
    // an entry is created, and files with data are created by the data phase on their first
    // write: two to three system calls fewer per file.
    let fresh = match std::fs::read_dir(&opts.target) {
        Ok(mut rd) => rd.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    std::fs::create_dir_all(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
    // Counted from the items: an incremental export trims the plan after its counts.
    let (files, bytes) = plan.items.iter().fold((0, 0), |(f, b), i| match i {
        Item::File { data, .. } => (f + 1, b + data.size),
        Item::HardLink { .. } => (f + 1, b),
        _ => (f, b),
    });
    progress.add_total(files, bytes);
    // One read transaction for the whole restore: plan and data lookups hit the index per
    // file and per chunk.
    let _txn = repo.index.read_txn()?;
    let root: OwnedFd = rustix::fs::open(
        &opts.target,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(&opts.target, errno(e)))?;
    let mut errors: Vec<(String, String)> = plan
        .errors
        .iter()
        .map(|(rel, e)| (if rel.is_empty() { "/".into() } else { display(rel) }, e.clone()))
        .collect();
    let mut failed: HashSet<Vec<u8>> = HashSet::new();
    let clear = |dir: &OwnedFd, name: &OsStr| if fresh { Ok(()) } else { remove_at(dir, name) };
    let modes = Modes::for_target(&root, &opts.target, fresh);

    // Phase 1: the skeleton, in walk order.
    let mut parents = Parents::new(&root);
    for item in &plan.items {
        let rel = item.rel();
        let (parent, name) = split_rel(rel);
        let name = OsStr::from_bytes(name);
        let r = (|| -> std::io::Result<()> {
            let dir = parents.get(parent)?;
            match item {
                Item::Dir { meta, .. } => {
                    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(modes.create(meta.mode, true))) {
                        Ok(()) => Ok(()),
                        Err(Errno::EXIST) => {
                            let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(errno)?;
                            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                                remove_at(dir, name)?;
                                let mode = Mode::from_raw_mode(modes.create(meta.mode, true));
                                rustix::fs::mkdirat(dir, name, mode).map_err(errno)?;
                            }
                            Ok(())
                        }
                        Err(e) => Err(errno(e)),
                    }
                }
                Item::File { data, meta, .. } => {
                    let hole_bytes: u64 = data.holes.iter().map(|h| h.1).sum();
                    if fresh && data.size > hole_bytes {
                        return Ok(()); // it has data: created on its first write (`restore_data`)
                    }
                    clear(dir, name)?;
                    let fd = rustix::fs::openat(
                        dir,
                        name,
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::from_raw_mode(modes.create(meta.mode, false)),
                    )
                    .map_err(errno)?;
                    if let Err(e) = size_new_file(&fd, data) {
                        // Not left behind with the wrong length.
                        let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
                        return Err(errno(e));
                    }
                    Ok(())
                }
                Item::Symlink { target, .. } => {
                    clear(dir, name)?;
                    rustix::fs::symlinkat(OsStr::from_bytes(target), dir, name).map_err(errno)
                }
                Item::Special { kind, meta, .. } => {
                    clear(dir, name)?;
                    let (ft, dev) = match kind {
                        Special::Fifo => (FileType::Fifo, 0),
                        Special::Socket => (FileType::Socket, 0),
                        Special::Char(d) => (FileType::CharacterDevice, *d),
                        Special::Block(d) => (FileType::BlockDevice, *d),
                    };
                    rustix::fs::mknodat(dir, name, ft, Mode::from_raw_mode(meta.mode & 0o777), dev as _).map_err(errno)
                }
                Item::HardLink { .. } => Ok(()),
            }
        })();
        if let Err(e) = r {
            progress.error();
            failed.insert(rel.to_vec());
            errors.push((display(rel), e.to_string()));
        }
    }
    drop(parents);

    // Phase 2: file data, pack by pack.
    let written = AtomicU64::new(0);
    let (data_errors, times_set) = restore_data(repo, &root, &plan, &failed, fresh, modes, &written, progress)?;
    // A file whose data failed (damaged or missing chunks, a full disk) may hold part of
    // its data, or none: it must not stay under its name looking restored. Every write is
    // done by now, so nothing writes to it any more. (Removing beats writing each file
    // under a temporary name and renaming it: no extra system call for the files that
    // succeed. An older entry of that name was already replaced in phase 1.)
    let mut parents = Parents::new(&root);
    for (rel, mut msg) in data_errors {
        if !failed.insert(rel.clone()) {
            continue;
        }
        let (parent, name) = split_rel(&rel);
        let removed = parents.get(parent).and_then(|dir| {
            match rustix::fs::unlinkat(dir, OsStr::from_bytes(name), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(errno(e)),
            }
        });
        if let Err(e) = removed {
            msg.push_str(&format!("; the incomplete file could not be removed ({e}): delete it"));
        }
        errors.push((display(&rel), msg));
    }
    drop(parents);

    // Phase 3: hard links, then metadata of non-directories in walk order.
    // Entries that exist but whose metadata (or `--verify`) failed: not counted as restored.
    let mut incomplete: HashSet<Vec<u8>> = HashSet::new();
    let mut parents = Parents::new(&root);
    let is_root = crate::platform::is_root();
    // In a fresh target every entry was created by us, so it already belongs to our user
    // and group (new entries take the target's group when it is setgid or mounted `grpid`:
    // hence the target's own group must be ours too). Entries recorded with that owner need
    // no chown: one system call fewer per file for the common case.
    let ours = {
        let (uid, gid) = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
        let root_gid = rustix::fs::fstat(&root).map(|st| st.st_gid).ok();
        (fresh && root_gid == Some(gid)).then_some((uid, gid))
    };
    for (i, item) in plan.items.iter().enumerate() {
        let rel = item.rel();
        if matches!(item, Item::Dir { .. }) || failed.contains(rel) {
            continue;
        }
        if let Item::HardLink { target, .. } = item
            && failed.contains(target.as_slice())
        {
            failed.insert(rel.to_vec());
            errors.push((
                display(rel),
                format!("not restored: it is a hard link to {}, which failed", display(target)),
            ));
            continue;
        }
        let r = (|| -> std::io::Result<()> {
            if let Item::HardLink { target, .. } = item {
                let (tp, tn) = split_rel(target);
                let tdir = open_dir_beneath(&root, tp)?;
                let (parent, name) = split_rel(rel);
                let dir = parents.get(parent)?;
                clear(dir, OsStr::from_bytes(name))?;
                rustix::fs::linkat(
                    &tdir,
                    OsStr::from_bytes(tn),
                    dir,
                    OsStr::from_bytes(name),
                    AtFlags::empty(),
                )
                .map_err(errno)?;
                progress.file_done();
                return Ok(());
            }
            let done = Done {
                mode: matches!(item, Item::File { .. }) && modes.already_right(item.meta().mode, false),
                times: times_set.get(i).is_some_and(|t| t.load(Ordering::Relaxed)),
            };
            if done.complete(item, ours) {
                return Ok(());
            }
            let (parent, name) = split_rel(rel);
            let dir = parents.get(parent)?;
            apply_meta(
                dir,
                OsStr::from_bytes(name),
                item,
                is_root,
                ours,
                done,
                &opts.target.join(OsStr::from_bytes(rel)),
            )
        })();
        if let Err(e) = r {
            progress.error();
            // Its data is there (hard links to it are still made): only not counted.
            incomplete.insert(rel.to_vec());
            errors.push((display(rel), format!("metadata: {e}")));
        }
    }
    drop(parents);

    // Phase 4: directory metadata, deepest first.
    let mut parents = Parents::new(&root);
    for item in plan.items.iter().rev() {
        if let Item::Dir { rel, .. } = item {
            let (parent, name) = split_rel(rel);
            let done = Done {
                mode: modes.already_right(item.meta().mode, true),
                times: false,
            };
            let r = parents.get(parent).and_then(|dir| {
                apply_meta(
                    dir,
                    OsStr::from_bytes(name),
                    item,
                    is_root,
                    ours,
                    done,
                    &opts.target.join(OsStr::from_bytes(rel)),
                )
            });
            if let Err(e) = r {
                incomplete.insert(rel.to_vec());
                errors.push((display(rel), format!("metadata: {e}")));
            }
        }
    }
    if let Some(m) = &snap.root
        && whole
    {
        let item = Item::Dir {
            rel: Box::default(),
            meta: m.clone().into(),
        };
        if let Err(e) = apply_meta(
            &root,
            OsStr::new("."),
            &item,
            is_root,
            None,
            Done::default(),
            &opts.target,
        ) {
            errors.push((".".into(), format!("metadata: {e}")));
        }
    }

    if opts.verify {
        for (rel, msg) in verify(repo, &root, &plan, &failed) {
            incomplete.insert(rel.clone());
            errors.push((display(&rel), msg));
        }
    }
    // The summary counts what was restored, not what was planned.
    let counted = |i: &&Item| !failed.contains(i.rel()) && !incomplete.contains(i.rel());
    for item in plan.items.iter().filter(counted) {
        progress.written(Path::new(OsStr::from_bytes(item.rel())));
        match item {
            Item::Dir { .. } => res.dirs += 1,
            Item::File { data, .. } => {
                res.files += 1;
                res.bytes += data.size;
                res.bytes_written += data.size - data.holes.iter().map(|h| h.1).sum::<u64>().min(data.size);
            }
            Item::HardLink { .. } => res.files += 1,
            Item::Symlink { .. } | Item::Special { .. } => res.other += 1,
        }
    }
    res.errors = errors;
    res.plan = plan;
    Ok(res)
}

/// What is already applied to an entry when its metadata phase comes.
#[derive(Clone, Copy, Default)]
struct Done {
    /// It was created with its recorded mode (`Modes::already_right`).
    mode: bool,
    /// Its times were set through the descriptor of its last write.
    times: bool,
}

impl Done {
    /// Would [`apply_meta`] make no system call for `item`? (Then phase 3 need not even open
    /// its directory.) Mirrors `apply_meta` step by step.
    fn complete(self, item: &Item, ours: Option<(u32, u32)>) -> bool {
        let meta = item.meta();
        ours == Some((meta.uid, meta.gid))
            && meta.xattrs.is_empty()
            && (self.mode || matches!(item, Item::Symlink { .. }))
            && self.times
    }
}

/// Owner, extended attributes, mode, times. `ours`: the (uid, gid) the entry already has
/// because we created it, when that is known. Neither chown, xattrs nor chmod change the
/// modification time, so times set earlier (`done.times`) stay right.
fn apply_meta(
    dir: &OwnedFd,
    name: &OsStr,
    item: &Item,
    is_root: bool,
    ours: Option<(u32, u32)>,
    done: Done,
    full: &Path,
) -> std::io::Result<()> {
    let meta = item.meta();
    let is_link = matches!(item, Item::Symlink { .. });
    let nofollow = AtFlags::SYMLINK_NOFOLLOW;
    // Owner first: chown clears setuid/setgid, so the mode comes after it.
    let own = if ours == Some((meta.uid, meta.gid)) {
        Ok(())
    } else {
        rustix::fs::chownat(
            dir,
            name,
            Some(rustix::process::Uid::from_raw(meta.uid)),
            Some(rustix::process::Gid::from_raw(meta.gid)),
            nofollow,
        )
    };
    if let Err(e) = own
        && (is_root || e != Errno::PERM)
    {
        return Err(errno(e));
    }
    if !meta.xattrs.is_empty() {
        // Through the directory descriptor: `/proc/self/fd/N/name` resolves `name` inside
        // the directory we hold, and l*xattr does not follow a final symlink.
        use std::os::fd::AsRawFd;
        let mut p = std::ffi::OsString::from(format!("/proc/self/fd/{}/", dir.as_raw_fd()));
        p.push(name);
        let via_fd = Path::new(&p);
        let target = if via_fd.parent().is_some_and(|d| d.exists()) {
            via_fd
        } else {
            full
        };
        for (k, v) in meta.xattrs.iter() {
            xattr::set(target, OsStr::from_bytes(k), v)?;
        }
    }
    // A chown does not change permission bits when there are no setuid/setgid bits, and
    // `done.mode` implies there are none.
    if !is_link && !done.mode {
        rustix::fs::chmodat(dir, name, Mode::from_raw_mode(meta.mode & 0o7777), AtFlags::empty()).map_err(errno)?;
    }
    if done.times {
        return Ok(());
    }
    rustix::fs::utimensat(dir, name, &times(meta), nofollow).map_err(errno)
}

/// Access and modification time, both set to the recorded mtime.
fn times(meta: &ItemMeta) -> Timestamps {
    Timestamps {
        last_access: ts(&meta.mtime),
        last_modification: ts(&meta.mtime),
    }
}

/// File offsets of each chunk of a file: the chunk stream fills the data regions
/// (everything outside `holes`) in order; a chunk never spans two regions.
pub fn chunk_offsets(data: &FileData, chunks: &[ChunkRef]) -> Vec<u64> {
    let regions = data.data_regions();
    let mut out = Vec::with_capacity(chunks.len());
    let mut ri = 0;
    let mut used = 0;
    for c in chunks {
        while ri < regions.len() && used >= regions[ri].1 {
            ri += 1;
            used = 0;
        }
        let base = regions.get(ri).map(|r| r.0).unwrap_or(data.size);
        out.push(base + used);
        used += c.len as u64;
    }
    out
}

/// Where one chunk of the data phase goes: 24 bytes. The chunk's id is not repeated here
/// (it is in the file's chunk list, [`DataFile::chunks`]); `key`, its first 8 bytes, sorts
/// the targets without reaching into the lists. Half the 48 bytes of a target that held the
/// id: 4.8 MB less on a restore of 200k chunks. (A list kept in chunk-list pages is read
/// once and kept for the data phase instead, 36 bytes per chunk, but only lists of more
/// than 128 chunks are paged: with the default sizes, those of files of 64 MiB and more.)
struct Target {
    key: u64,
    offset: u64,
    /// Index in `files`, and of the chunk in that file's list.
    file: u32,
    chunk: u32,
}

/// A chunk id's first 8 bytes, the targets' sort key.
fn id_key(id: &ChunkId) -> u64 {
    let mut k = [0u8; 8];
    k.copy_from_slice(&id.0[..8]);
    u64::from_be_bytes(k)
}

/// Sort `targets` by chunk id (`chunk_id` reads it from the file's chunk list) and list
/// each id once, in order, with the end of its run of targets: what `locate_sorted` asks
/// for, and where each answer's targets are. The targets are sorted by their 8-byte keys
/// alone; a run of equal keys is the same chunk in several places (its list entries are
/// read once each to make sure), and only if two ids in it differ past their first 8
/// bytes is that run sorted by whole id. Reading the lists in the sort itself, on every
/// comparison of equal keys, cost 0.2 s more CPU on a restore of 166k entries.
fn group_targets(targets: &mut [Target], chunk_id: impl Fn(&Target) -> ChunkId) -> (Vec<BlobId>, Vec<u32>) {
    targets.sort_unstable_by_key(|t| t.key);
    let mut ids: Vec<BlobId> = Vec::new();
    let mut ends: Vec<u32> = Vec::new();
    let mut i = 0;
    while i < targets.len() {
        let key = targets[i].key;
        let run = i + targets[i..].iter().take_while(|t| t.key == key).count();
        let first = chunk_id(&targets[i]);
        if targets[i + 1..run].iter().all(|t| chunk_id(t) == first) {
            ids.push(BlobId(first.0));
            ends.push(run as u32);
        } else {
            let run = &mut targets[i..run];
            run.sort_unstable_by_key(|t| chunk_id(t));
            let mut j = 0;
            while j < run.len() {
                let id = chunk_id(&run[j]);
                j += run[j..].iter().take_while(|t| chunk_id(t) == id).count();
                ids.push(BlobId(id.0));
                ends.push((i + j) as u32);
            }
        }
        i = run;
    }
    (ids, ends)
}

/// A pack's blob in the data phase: its offset and sealed length in the pack, and its
/// targets (`targets[start..end]`).
struct PackBlob {
    offset: u64,
    len: u32,
    start: u32,
    end: u32,
}

type DataErrors = Vec<(Vec<u8>, String)>;

/// Per plan item: whether the data phase already set its times.
type TimesSet = Vec<std::sync::atomic::AtomicBool>;

/// Neighbouring blobs of a pack are read together up to this many bytes: few system calls,
/// and per worker one buffer of this size (peak memory: 8 MiB cost 12 MB more than 2 MiB
/// on a restore of 130k files, for no measurable speed).
const READ_COALESCE: u64 = 2 << 20;

/// Threads reading a remote store at once in a restore: each waits mostly on its round
/// trip, so more than the cores.
const REMOTE_READERS: usize = 8;

/// A pool of `readers` threads (at least one per core) for a remote store; `None` (the
/// global pool) for a local one, or if no pool can be made.
pub(crate) fn remote_pool(repo: &Repository, readers: usize) -> Option<rayon::ThreadPool> {
    if !repo.backend.remote() {
        return None;
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(readers.max(rayon::current_num_threads()))
        .build()
        .ok()
}

/// Files of at least this size get all their blocks in one call when they are created,
/// on file systems where that helps ([`crate::platform::preallocation_helps`]). Such a
/// file is written chunk by chunk, by both workers and in pack order, not file order, so
/// the file system allocated its blocks piecemeal. Restoring the low-duplication benchmark
/// tree onto a fresh ext4: its 188 files over 1 MiB took 188 extents (17 of them were in
/// several, 205 in all before). CPU stayed the same (3.54 s against 3.53, medians of 13
/// alternating runs; system time 1.35 s against 1.44). Preallocating every file cost more
/// (1.56 s of system time), as a file of one chunk is one write anyway.
const PREALLOCATE_FROM: u64 = 1024 * 1024;

/// Give a file just created for `data` its length where a write will not: a file ending in
/// a hole gets it from `ftruncate`. A large one without holes gets its blocks at once
/// ([`PREALLOCATE_FROM`]) where its own file system gains from that (asked per file: a
/// target may hold mount points of others); no room for all of them at once leaves that
/// to the writes, which report a full disk themselves.
fn size_new_file(fd: &OwnedFd, data: &FileData) -> rustix::io::Result<()> {
    if !data.holes.is_empty() {
        return rustix::fs::ftruncate(fd, data.size);
    }
    if data.size >= PREALLOCATE_FROM && crate::platform::preallocation_helps(fd) {
        let _ = rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), 0, data.size);
    }
    Ok(())
}

/// A file the data phase writes: 20 bytes, everything else is read from its plan item.
struct DataFile {
    /// Its index in the plan (an `Item::File`).
    item: u32,
    /// Its chunk list: `paged[list]` for a list kept in chunk-list pages (read once, here),
    /// `NO_LIST` for one held in the plan item.
    list: u32,
    /// Writes still to come; the last one sets the times through its descriptor.
    remaining: AtomicU32,
    /// Whether it exists yet: in a fresh target the first write creates it, exclusively,
    /// so nothing that appeared there meanwhile is ever written through.
    created: Mutex<bool>,
}

/// [`DataFile::list`] of a file whose chunk list is in its plan item.
const NO_LIST: u32 = u32::MAX;

impl DataFile {
    fn rel<'p>(&self, plan: &'p Plan) -> &'p [u8] {
        plan.items[self.item as usize].rel()
    }

    /// Its chunks, in order.
    fn chunks<'p>(&self, plan: &'p Plan, paged: &'p [Vec<ChunkRef>]) -> &'p [ChunkRef] {
        if let Some(list) = paged.get(self.list as usize) {
            return list;
        }
        match &plan.items[self.item as usize] {
            Item::File { data: FileData { content: Content::Chunks(c), .. }, .. } => c,
            // Not made: a file's list is in its item unless it is paged (`restore_data`).
            _ => &[],
        }
    }

    /// Open (or in a fresh target, create) the file through the descriptor of its parent
    /// directory, which `parents` opened beneath the target and keeps while the writer
    /// stays in that directory: a pack's blobs are in walk order, so most files of a pack
    /// share their parent with the file before.
    fn open(&self, parents: &mut Parents, plan: &Plan, modes: Modes) -> std::io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let item = &plan.items[self.item as usize];
        let (parent, name) = split_rel(item.rel());
        let name = OsStr::from_bytes(name);
        let dir = parents.get(parent)?;
        let mut created = self.created.lock().unwrap_or_else(|p| p.into_inner());
        if *created {
            drop(created);
            let fd = rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(errno)?;
            return Ok(File::from(fd));
        }
        let fd = rustix::fs::openat(
            dir,
            name,
            flags | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(modes.create(item.meta().mode, false)),
        )
        .map_err(errno)?;
        if let Item::File { data, .. } = item {
            size_new_file(&fd, data).map_err(errno)?;
        }
        *created = true;
        Ok(File::from(fd))
    }
}

fn restore_data(
    repo: &Repository,
    root: &OwnedFd,
    plan: &Plan,
    failed: &HashSet<Vec<u8>>,
    create: bool,
    modes: Modes,
    written: &AtomicU64,
    progress: &dyn Progress,
) -> Result<(DataErrors, TimesSet)> {
    let times_set: TimesSet = plan.items.iter().map(|_| Default::default()).collect();
    let mut files: Vec<DataFile> = Vec::with_capacity(plan.files as usize);
    // The chunk lists kept in chunk-list pages, read once here; the others are in the plan.
    let mut paged: Vec<Vec<ChunkRef>> = Vec::new();
    // Every (chunk, where it goes), sorted by chunk below: one flat array, no per-chunk
    // allocation (a restore of 100k small files held ~100 bytes per chunk in a map of vectors).
    let mut targets: Vec<Target> = Vec::with_capacity(plan.files as usize);
    let mut errors: DataErrors = Vec::new();
    for (item_idx, item) in plan.items.iter().enumerate() {
        if let Item::File { rel, data, .. } = item {
            if failed.contains(&rel[..]) || data.size == 0 {
                progress.file_done();
                continue;
            }
            let (list, chunks) = match &data.content {
                Content::Chunks(c) => (NO_LIST, c.as_slice()),
                pages => match repo.chunk_list(pages) {
                    Ok(c) => {
                        paged.push(c);
                        ((paged.len() - 1) as u32, paged[paged.len() - 1].as_slice())
                    }
                    Err(e) => {
                        progress.error();
                        errors.push((rel.to_vec(), e.to_string()));
                        continue;
                    }
                },
            };
            let holes: u64 = data.holes.iter().map(|h| h.1).sum();
            if chunks.iter().map(|c| c.len as u64).sum::<u64>() + holes != data.size {
                progress.error();
                errors.push((
                    rel.to_vec(),
                    "damaged entry: chunk list does not add up to the file size".into(),
                ));
                continue;
            }
            // Indexes are u32: the limits below are far past any real tree (a 4-billion-chunk
            // file is 256 TiB at the smallest chunk size).
            let file = files.len();
            if file >= NO_LIST as usize || chunks.len() > u32::MAX as usize || item_idx > u32::MAX as usize {
                return Err(Error::Invalid(format!(
                    "{}: too many files or chunks to restore at once: restore the snapshot in parts \
                     with --include",
                    display(rel)
                )));
            }
            files.push(DataFile {
                created: Mutex::new(!create),
                item: item_idx as u32,
                list,
                remaining: AtomicU32::new(chunks.len() as u32),
            });
            for (i, (c, off)) in chunks.iter().zip(chunk_offsets(data, chunks)).enumerate() {
                targets.push(Target {
                    key: id_key(&c.id),
                    offset: off,
                    file: file as u32,
                    chunk: i as u32,
                });
            }
            // Holes are not written: done already.
            progress.add_bytes(holes);
            if chunks.is_empty() {
                progress.file_done();
            }
        }
    }
    if targets.len() > u32::MAX as usize {
        return Err(Error::Invalid(
            "too many chunks to restore at once: restore the snapshot in parts with --include".into(),
        ));
    }
    let paged = paged;
    let chunk_id = |t: &Target| files[t.file as usize].chunks(plan, &paged)[t.chunk as usize].id;
    let (ids, ends) = group_targets(&mut targets, chunk_id);
    // Per pack: its blobs, each with its range in `targets`.
    let mut by_pack: HashMap<PackId, Vec<PackBlob>> = HashMap::new();
    let mut failed_files: HashSet<usize> = HashSet::new();
    let mut group = 0;
    repo.locate_sorted(&ids, &mut |located| {
        let start = if group == 0 { 0 } else { ends[group - 1] };
        let end = ends[group];
        group += 1;
        match located {
            Ok(loc) => by_pack.entry(loc.pack).or_default().push(PackBlob {
                offset: loc.offset,
                len: loc.length,
                start,
                end,
            }),
            Err(e) => {
                for t in &targets[start as usize..end as usize] {
                    if failed_files.insert(t.file as usize) {
                        progress.error();
                        errors.push((files[t.file as usize].rel(plan).to_vec(), e.to_string()));
                    }
                }
            }
        }
    })?;
    drop((ids, ends));
    let mut packs: Vec<(PackId, Vec<PackBlob>)> = by_pack.into_iter().collect();
    packs.sort_by_key(|p| p.0);
    let errs = Mutex::new(Vec::<(usize, String)>::new());
    // Per worker thread, across packs: the coalesced read (blobs are decrypted in it), the
    // plaintext, and the descriptors of the directories it wrote in last. Both buffers keep
    // their capacity, at most one blob's bound each: dropping a large chunk's plaintext
    // made the next ones fault their pages in again (60,800 page faults against 24,900 on
    // 126k files, for 3 MiB more peak memory).
    // Neighbouring blobs of a pack are read together, at most READ_COALESCE bytes at a time;
    // every such span is a job of its own, so a store a round trip away has many reads in
    // flight (a pool of REMOTE_READERS threads), not one per pack in turn.
    let mut spans: Vec<(usize, Range<usize>)> = Vec::new();
    for (p, (_, blobs)) in packs.iter_mut().enumerate() {
        blobs.sort_unstable_by_key(|b| b.offset);
        let mut i = 0;
        while i < blobs.len() {
            let start = blobs[i].offset;
            let mut end = start + blobs[i].len as u64;
            let mut j = i + 1;
            while j < blobs.len()
                && blobs[j].offset <= end + 256 * 1024
                && blobs[j].offset + blobs[j].len as u64 - start <= READ_COALESCE
            {
                end = end.max(blobs[j].offset + blobs[j].len as u64);
                j += 1;
            }
            spans.push((p, i..j));
            i = j;
        }
    }
    let run = || {
        // Per worker thread, across spans: the coalesced read (blobs are decrypted in it),
        // the plaintext, the descriptors of the directories it wrote in last, and of the
        // files it wrote last. Both buffers keep their capacity, at most one blob's bound
        // each: dropping a large chunk's plaintext made the next ones fault their pages in
        // again (60,800 page faults against 24,900 on 126k files, for 3 MiB more peak memory).
        let workers = PerThread::new(|| {
            (
                Vec::new(),
                Vec::new(),
                Parents::new(root),
                HashMap::<usize, File>::new(),
            )
        });
        spans.par_iter().for_each(|(p, span)| {
            workers.with(|(range, bytes, parents, open)| {
                let (pack, blobs) = &packs[*p];
                let blobs = &blobs[span.clone()];
                let path = Dir::Packs.path(&pack.to_hex());
                let start = blobs[0].offset;
                let end = blobs.iter().map(|b| b.offset + b.len as u64).max().unwrap_or(start);
                let read = repo
                    .backend
                    .read_range_into(&path, start, (end - start) as usize, range);
                for b in blobs {
                    let (off, len) = (b.offset, b.len);
                    let ts = &targets[b.start as usize..b.end as usize];
                    let id = chunk_id(&ts[0]);
                    let plain = read.as_ref().map_err(|e| e.to_string()).and_then(|_| {
                        let s = (off - start) as usize;
                        open_blob_in_place(
                            repo.repo_id(),
                            &repo.keys,
                            &repo.cipher,
                            crate::format::BlobKind::Data,
                            &BlobId(id.0),
                            &mut range[s..s + len as usize],
                            bytes,
                        )
                        .map_err(|e| e.to_string())
                    });
                    match plain {
                        Ok(()) => {
                            for t in ts {
                                let file = t.file as usize;
                                let r = (|| -> std::io::Result<()> {
                                    if !open.contains_key(&file) {
                                        if open.len() >= 64 {
                                            open.clear();
                                        }
                                        let df = &files[file];
                                        progress.current(Path::new(OsStr::from_bytes(df.rel(plan))));
                                        open.insert(file, df.open(parents, plan, modes)?);
                                    }
                                    let f = &open[&file];
                                    f.write_all_at(bytes, t.offset)?;
                                    let df = &files[file];
                                    if df.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                                        progress.file_done();
                                        // The file's last write: its times, through this
                                        // descriptor. On failure phase 3 tries again by name.
                                        let t = times(plan.items[df.item as usize].meta());
                                        if rustix::fs::futimens(f, &t).is_ok() {
                                            times_set[df.item as usize].store(true, Ordering::Relaxed);
                                        }
                                    }
                                    Ok(())
                                })();
                                match r {
                                    Ok(()) => {
                                        written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                                        progress.add_bytes(bytes.len() as u64);
                                    }
                                    Err(e) => {
                                        let mut g = errs.lock().unwrap_or_else(|p| p.into_inner());
                                        if !g.iter().any(|(f, _)| *f == file) {
                                            progress.error();
                                        }
                                        g.push((file, e.to_string()));
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            let mut g = errs.lock().unwrap_or_else(|p| p.into_inner());
                            for t in ts {
                                let file = t.file as usize;
                                if !g.iter().any(|(f, _)| *f == file) {
                                    progress.error();
                                }
                                g.push((file, format!("damaged data: {e}")));
                            }
                        }
                    }
                }
            })
        });
    };
    match remote_pool(repo, REMOTE_READERS) {
        Some(pool) => pool.install(run),
        None => run(),
    }
    for (f, e) in errs.into_inner().unwrap_or_else(|p| p.into_inner()) {
        if failed_files.insert(f) {
            errors.push((files[f].rel(plan).to_vec(), e));
        }
    }
    Ok((errors, times_set))
}

/// Re-read every restored file and compare each chunk's keyed hash with its id.
fn verify(repo: &Repository, root: &OwnedFd, plan: &Plan, failed: &HashSet<Vec<u8>>) -> DataErrors {
    let items: Vec<&Item> = plan
        .items
        .iter()
        .filter(|i| matches!(i, Item::File { rel, .. } if !failed.contains(&rel[..])))
        .collect();
    items
        .par_iter()
        .filter_map(|item| {
            let Item::File { rel, data, .. } = item else {
                return None;
            };
            let r = (|| -> std::result::Result<(), String> {
                let chunks = repo.chunk_list(&data.content).map_err(|e| e.to_string())?;
                let fd = rustix::fs::openat2(
                    root,
                    OsStr::from_bytes(rel),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    BENEATH,
                )
                .map_err(|e| e.to_string())?;
                let f = File::from(fd);
                let size = f.metadata().map_err(|e| e.to_string())?.len();
                if size != data.size {
                    return Err(format!("verify: size {size}, expected {}", data.size));
                }
                let mut buf = Vec::new();
                for (c, off) in chunks.iter().zip(chunk_offsets(data, &chunks)) {
                    buf.resize(c.len as usize, 0);
                    f.read_exact_at(&mut buf, off).map_err(|e| e.to_string())?;
                    if repo.keys.chunk_id(&buf) != c.id.0 {
                        return Err(format!("verify: content differs at offset {off}"));
                    }
                }
                Ok(())
            })();
            r.err().map(|e| (rel.to_vec(), e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A restore holds one `Item` per entry and one `Target` per chunk to write: their sizes
    /// set its peak memory on large trees (README, Performance), so a field that grows them
    /// must be a choice, not an accident.
    #[test]
    fn restore_records_stay_small() {
        assert_eq!(std::mem::size_of::<Item>(), 128);
        assert_eq!(std::mem::size_of::<Target>(), 24);
        assert_eq!(std::mem::size_of::<PackBlob>(), 24);
        assert_eq!(std::mem::size_of::<DataFile>(), 20);
    }

    proptest::proptest! {
        /// Targets come out grouped by their whole chunk id, in id order, each id listed
        /// once with the end of its run: also when ids share their first 8 bytes (the sort
        /// key), which real ids do once in 2^64, so only made-up ids can show it.
        #[test]
        fn targets_group_by_whole_id(picks in proptest::collection::vec(0usize..6, 0..48)) {
            // Six ids, three to each 8-byte prefix, differing only after it.
            let pool: Vec<ChunkId> = (0..6u8)
                .map(|i| {
                    let mut id = [0u8; 32];
                    id[..8].fill(i / 3);
                    id[31] = 2 - i % 3;
                    ChunkId(id)
                })
                .collect();
            let mut targets: Vec<Target> = picks
                .iter()
                .enumerate()
                .map(|(n, &p)| Target { key: id_key(&pool[p]), offset: n as u64, file: 0, chunk: p as u32 })
                .collect();
            let chunk_id = |t: &Target| pool[t.chunk as usize];
            let (ids, ends) = group_targets(&mut targets, chunk_id);

            let mut want: Vec<ChunkId> = picks.iter().map(|&p| pool[p]).collect();
            want.sort();
            want.dedup();
            proptest::prop_assert_eq!(ids.iter().map(|b| ChunkId(b.0)).collect::<Vec<_>>(), want);
            proptest::prop_assert_eq!(ends.len(), ids.len());
            let mut start = 0;
            for (id, &end) in ids.iter().zip(&ends) {
                proptest::prop_assert!(start < end as usize);
                for t in &targets[start..end as usize] {
                    proptest::prop_assert_eq!(chunk_id(t).0, id.0);
                }
                start = end as usize;
            }
            proptest::prop_assert_eq!(start, picks.len());
            // Every target is still there, once.
            let mut offsets: Vec<u64> = targets.iter().map(|t| t.offset).collect();
            offsets.sort();
            proptest::prop_assert_eq!(offsets, (0..picks.len() as u64).collect::<Vec<_>>());
        }
    }
}
