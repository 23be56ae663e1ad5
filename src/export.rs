//! Exported views of a snapshot (format-spec §17, README "export"): the plain folder copy, the tar archive and
//! the incremental hard-link folder that the older Python tool made, written from the
//! repository. Each view is planned (what `--dry-run` lists) and then written.
//!
//! Nothing half-made ever appears under the final name. Folders (`--clone`,
//! `--incremental`) are written by the restore machinery into a hidden staging folder
//! beside the target, `.<name>.projectclone-staging-<random>`, and renamed into place only
//! when complete; archives go to a temp file beside FILE and are renamed at the end. A
//! staging folder is held under an exclusive `flock` while its export runs, so the next
//! export tells a killed export's leftovers (removed) from a running one's (left alone).
//!
//! Safety (guarantee 6): tree names were validated when their trees were loaded; folders
//! are written through [`restore::execute`] (every path opened beneath the target with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`); an earlier export folder is read the same
//! way; tar member names are validated names joined under one top folder, never absolute
//! and never `..`. Memory stays bounded: file data streams chunk by chunk.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::format::{BlobKind, FileData, Meta, Snapshot, Time};
use crate::id::{BlobId, SnapshotId};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::{self, Includes, Item, ItemMeta, Plan, RestoreOptions};

mod old_tool;
pub use old_tool::{OldView, OldViewOptions, OldViewPlan, old_view, plan_old_view};

/// Which view to write.
#[derive(Clone, Debug)]
pub enum View {
    /// An exact copy at `dir` (absent or an empty directory).
    Clone { dir: PathBuf },
    /// A tar archive at `file`, compressed as `format` says, then encrypted (age) when
    /// `encryption` says how. `manifest`: `file.sha256`, of each member, or of the whole
    /// file when it is encrypted (member names and hashes would say what it holds).
    Archive {
        file: PathBuf,
        format: ArchiveFormat,
        manifest: bool,
        encryption: Option<crate::seal::ArchiveEncryption>,
    },
    /// A new `YYYY-MM-DD_HHMMSS-<project>[-<note>]` folder under `dir`, hard-linking the
    /// files unchanged since the newest earlier export of the project there; `keep`
    /// removes this project's oldest export folders beyond that many.
    Incremental { dir: PathBuf, keep: Option<usize> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveFormat {
    Tar,
    Gzip,
    Zstd,
}

impl ArchiveFormat {
    /// The format a file name asks for: `.tar`, `.tar.gz`/`.tgz`, `.tar.zst`/`.tzst`.
    pub fn from_path(p: &Path) -> Option<ArchiveFormat> {
        let n = p.file_name()?.as_bytes().to_ascii_lowercase();
        if n.ends_with(b".tar.gz") || n.ends_with(b".tgz") {
            Some(ArchiveFormat::Gzip)
        } else if n.ends_with(b".tar.zst") || n.ends_with(b".tzst") {
            Some(ArchiveFormat::Zstd)
        } else if n.ends_with(b".tar") {
            Some(ArchiveFormat::Tar)
        } else {
            None
        }
    }
}

impl std::str::FromStr for ArchiveFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tar" => Ok(ArchiveFormat::Tar),
            "tar.gz" | "tgz" | "gzip" | "gz" => Ok(ArchiveFormat::Gzip),
            "tar.zst" | "tzst" | "zstd" | "zst" => Ok(ArchiveFormat::Zstd),
            _ => Err(format!("unknown archive format {s:?}: tar, tar.gz or tar.zst")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub view: View,
    pub dry_run: bool,
    /// Zone for incremental folder names (the snapshot's time in local time).
    pub tz: jiff::tz::TimeZone,
}

/// What an entry of the view is (the `--dry-run` listing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Dir,
    File,
    Symlink,
    Special,
    HardLink,
    /// Incremental: a hard link to the same file in the previous export folder.
    Link,
}

#[derive(Debug, Default)]
pub struct ExportResult {
    /// The folder or file written (or that would be written).
    pub path: PathBuf,
    pub dry_run: bool,
    /// Regular files and hard links, directories below the root, symlinks and special
    /// files: counted as backup, restore and `stats` count them.
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    /// Bytes of file content in the view.
    pub bytes: u64,
    /// Bytes written: file data for folders, the (compressed) archive for archives.
    pub bytes_written: u64,
    /// Incremental: files hard-linked from the previous export, and their bytes.
    pub linked: u64,
    pub linked_bytes: u64,
    /// Incremental: unchanged files copied because linking failed (another file system,
    /// too many links, a protected link).
    pub copied_after_link_failure: u64,
    /// Incremental: the folder files were linked from.
    pub previous: Option<PathBuf>,
    pub manifest: Option<PathBuf>,
    /// Export folders removed by `--keep`.
    pub removed: Vec<PathBuf>,
    /// Staging folders of killed exports cleaned up.
    pub cleaned: Vec<PathBuf>,
    /// Entries the view cannot hold (sockets in a tar archive), with the reason.
    pub skipped: Vec<(String, String)>,
    /// Entries that could not be exported; when there are any, nothing was put in place.
    pub errors: Vec<(String, String)>,
    /// `--dry-run`: every entry, as a member name (archives) or relative path (folders).
    pub entries: Vec<(Action, Vec<u8>)>,
}

/// Write a view of `snap` (its id is `id`).
pub fn export(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    opts: &ExportOptions,
    progress: &dyn Progress,
) -> Result<ExportResult> {
    match &opts.view {
        View::Clone { dir } => clone(repo, snap, dir, opts.dry_run, progress),
        View::Archive {
            file,
            format,
            manifest,
            encryption,
        } => archive_file(
            repo,
            snap,
            file,
            (*format, encryption.as_ref()),
            *manifest,
            opts.dry_run,
            progress,
        ),
        View::Incremental { dir, keep } => incremental(repo, id, snap, dir, *keep, opts, progress),
    }
}

// ---------------------------------------------------------------- names

/// The project a snapshot is of: the base name of its source directory; for several
/// paths, the base name of their common parent; `root` when there is none.
pub fn project_name(snap: &Snapshot) -> Vec<u8> {
    let paths: Vec<&Path> = snap.paths.iter().map(|p| Path::new(OsStr::from_bytes(p))).collect();
    let dir: Option<PathBuf> = match paths.as_slice() {
        [] => None,
        [one] => Some(one.to_path_buf()),
        [first, rest @ ..] => {
            let mut common = first.parent().map(Path::to_path_buf);
            for p in rest {
                while let Some(c) = &common {
                    if p.starts_with(c) {
                        break;
                    }
                    common = c.parent().map(Path::to_path_buf);
                }
            }
            common
        }
    };
    dir.as_deref()
        .and_then(Path::file_name)
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_else(|| b"root".to_vec())
}

/// Make text safe for a file name: letters, digits and `.`, `_`, `+`, `-` are kept, runs
/// of anything else become one `_`; no leading dot or dash; at most 64 bytes.
pub fn safe_component(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() || matches!(c, '.' | '_' | '+' | '-') {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let t = out.trim_matches(|c| c == '_' || c == '.' || c == '-');
    let mut end = t.len().min(64);
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    t[..end].trim_end_matches(['_', '.', '-']).to_string()
}

/// `YYYY-MM-DD_HHMMSS-<project>[-<note>]` for a snapshot, in zone `tz`.
pub fn folder_name(snap: &Snapshot, tz: &jiff::tz::TimeZone) -> String {
    name_stem(&snap.time, &project_name(snap), snap.note.as_deref(), tz)
}

/// `YYYY-MM-DD_HHMMSS-<project>[-<note>]` for a time, a project's raw name and a note.
fn name_stem(time: &Time, project: &[u8], note: Option<&str>, tz: &jiff::tz::TimeZone) -> String {
    let stamp = jiff::Timestamp::new(time.secs, time.nanos as i32)
        .map(|t| t.to_zoned_datetime(tz.clone()).strftime("%Y-%m-%d_%H%M%S").to_string())
        .unwrap_or_else(|_| "0000-00-00_000000".into());
    let project = safe_component(&String::from_utf8_lossy(project));
    let project = if project.is_empty() { "project".into() } else { project };
    let note = note.map(safe_component).unwrap_or_default();
    if note.is_empty() {
        format!("{stamp}-{project}")
    } else {
        format!("{stamp}-{project}-{note}")
    }
}

/// The name an exported view that picks its own name gets in a destination folder:
/// `<stem><ext>` when it is free, else `<stem>-1<ext>`, `<stem>-2<ext>`, … as the older
/// Python tool did for two backups within the same second. `taken` says whether a name is
/// in use (an entry in the folder, or a record that reserves it). Incremental folders use
/// it now; the old tool's folder copies and archives under a destination folder will too.
pub fn unique_name(stem: &str, ext: &str, mut taken: impl FnMut(&str) -> bool) -> Result<String> {
    let first = format!("{stem}{ext}");
    if !taken(&first) {
        return Ok(first);
    }
    for n in 1..=MAX_NAME_SUFFIX {
        let name = format!("{stem}-{n}{ext}");
        if !taken(&name) {
            return Ok(name);
        }
    }
    Err(Error::Invalid(format!(
        "{first} and {stem}-1{ext} to {stem}-{MAX_NAME_SUFFIX}{ext} are all taken; remove some or choose \
         another folder"
    )))
}

/// Suffixes [`unique_name`] tries before giving up.
const MAX_NAME_SUFFIX: u32 = 9999;

/// A name with a numeric suffix that [`unique_name`] may have added (`-1`, `-2`, … after
/// `-<project>[-<note>]`), as (name without it, number); 0 when there is none. Orders
/// names of one second as they were made: `x` < `x-1` < `x-2` < `x-10`.
fn name_suffix(n: &str) -> (&str, u32) {
    if let Some((base, num)) = n.rsplit_once('-')
        && !num.is_empty()
        && num.len() <= 4
        && !num.starts_with('0')
        && num.bytes().all(|b| b.is_ascii_digit())
        && let Ok(k) = num.parse()
    {
        return (base, k);
    }
    (n, 0)
}

/// Whether `name` exists in `dir` (as anything, a dangling symlink included).
fn exists_in(dir: &Path, name: &str) -> bool {
    std::fs::symlink_metadata(dir.join(name)).is_ok()
}

// ---------------------------------------------------------------- file system helpers

// Shared with restore: one implementation of the beneath-the-target rules.
use crate::restore::{BENEATH, errno, open_dir_beneath as open_beneath, remove_at, split_rel};

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)
}

/// The parent directory (`.` for a bare name) and base name of a target path.
fn parent_and_name(p: &Path) -> Result<(PathBuf, Vec<u8>)> {
    let name = p
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{}: give a path that ends in a name", p.display())))?;
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name.as_bytes().to_vec()))
}

fn path_join(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 6]>())
}

fn remove_path(p: &Path) -> io::Result<()> {
    let (parent, name) = match (p.parent(), p.file_name()) {
        (Some(d), Some(n)) => (if d.as_os_str().is_empty() { Path::new(".") } else { d }, n),
        _ => return Err(io::Error::other("not a removable path")),
    };
    remove_at(&open_dir(parent)?, name)
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

const STAGING: &str = ".projectclone-staging-";
const TMP: &str = ".projectclone-tmp-";

/// A hidden folder beside the target, locked while this export writes into it.
struct Staging {
    path: PathBuf,
    lock: File,
}

impl Staging {
    fn create(parent: &Path, name: &[u8]) -> Result<Staging> {
        // Room for the decoration within NAME_MAX.
        let short = &name[..name.len().min(200)];
        let mut n = b".".to_vec();
        n.extend_from_slice(short);
        n.extend_from_slice(format!(".projectclone-staging-{}", random_hex()).as_bytes());
        let path = path_join(parent, &n);
        std::fs::DirBuilder::new().mode(0o700).create(&path).at(&path)?;
        let lock = File::open(&path).at(&path)?;
        lock.try_lock()
            .map_err(|e| Error::io(&path, io::Error::other(e.to_string())))?;
        Ok(Staging { path, lock })
    }

    /// A snapshot without root metadata (one file, several paths) gives the folder the
    /// mode a new directory gets, not the staging folder's private 0700.
    fn default_mode(&self, snap: &Snapshot) -> Result<()> {
        if snap.root.is_some() {
            return Ok(());
        }
        // Not umask(2): setting it even for a moment races with the lock-refresh thread.
        let mask = restore::process_umask().unwrap_or(0o022);
        let mode = Mode::from_raw_mode(0o777 & !mask);
        rustix::fs::fchmod(&self.lock, mode).map_err(|e| Error::io(&self.path, errno(e)))
    }

    fn remove(self) {
        if let Err(e) = remove_path(&self.path) {
            tracing::warn!("could not remove the staging folder {}: {e}", self.path.display());
        }
    }

    /// Make the staging folder durable, then rename it to `dest`: `dest` must not exist,
    /// or be an empty directory (replaced).
    fn commit(self, dest: &Path) -> Result<()> {
        rustix::fs::syncfs(&self.lock).map_err(|e| Error::io(&self.path, errno(e)))?;
        let r = rustix::fs::renameat_with(
            rustix::fs::CWD,
            &self.path,
            rustix::fs::CWD,
            dest,
            RenameFlags::NOREPLACE,
        );
        let r = match r {
            Err(Errno::EXIST) if is_empty_dir(dest) => {
                rustix::fs::renameat(rustix::fs::CWD, &self.path, rustix::fs::CWD, dest)
            }
            r => r,
        };
        if let Err(e) = r {
            let msg = match e {
                Errno::EXIST | Errno::NOTEMPTY => format!(
                    "{} appeared meanwhile and is not empty; the export was not put in place",
                    dest.display()
                ),
                e => format!("renaming the finished export into place: {}", errno(e)),
            };
            self.remove();
            return Err(Error::Invalid(msg));
        }
        if let Some(parent) = dest.parent() {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            fsync_dir(parent).at(parent)?;
        }
        drop(self.lock);
        Ok(())
    }
}

fn is_empty_dir(p: &Path) -> bool {
    match std::fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none()),
        _ => false,
    }
}

/// Remove staging folders (`tag` [`STAGING`]) or temp files (`tag` [`TMP`]) in `parent`
/// left by killed exports, for target `name` only or for any. One whose lock is held
/// belongs to a running export and is left alone.
fn clean_stale(parent: &Path, name: Option<&[u8]>, tag: &str) -> Vec<PathBuf> {
    let mut cleaned = Vec::new();
    let Ok(rd) = std::fs::read_dir(parent) else {
        return cleaned;
    };
    let prefix = name.map(|n| {
        let mut p = b".".to_vec();
        p.extend_from_slice(&n[..n.len().min(200)]);
        p.extend_from_slice(tag.as_bytes());
        p
    });
    let dirs = tag == STAGING;
    for e in rd.flatten() {
        let n = e.file_name();
        let n = n.as_bytes();
        let ours = match &prefix {
            Some(p) => n.starts_with(p) && n.len() == p.len() + 12,
            None => n.starts_with(b".") && n.windows(tag.len()).any(|w| w == tag.as_bytes()),
        };
        let kind_ok = e.file_type().is_ok_and(|t| if dirs { t.is_dir() } else { t.is_file() });
        if !ours || !kind_ok {
            continue;
        }
        let p = e.path();
        let opened = if dirs {
            open_dir(&p).map(File::from)
        } else {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(OFlags::NOFOLLOW.bits() as i32)
                .open(&p)
        };
        let Ok(f) = opened else { continue };
        if f.try_lock().is_err() {
            continue;
        }
        let r = if dirs {
            remove_path(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match r {
            Ok(()) => cleaned.push(p),
            Err(e) => tracing::warn!("could not remove {} (left by an interrupted export): {e}", p.display()),
        }
    }
    cleaned
}

fn listing(plan: &Plan) -> Vec<(Action, Vec<u8>)> {
    plan.items
        .iter()
        .map(|i| {
            let a = match i {
                Item::Dir { .. } => Action::Dir,
                Item::File { .. } => Action::File,
                Item::Symlink { .. } => Action::Symlink,
                Item::Special { .. } => Action::Special,
                Item::HardLink { .. } => Action::HardLink,
            };
            (a, i.rel().to_vec())
        })
        .collect()
}

pub(crate) fn plan_errors(plan: &Plan) -> Vec<(String, String)> {
    plan.errors
        .iter()
        .map(|(rel, e)| {
            (
                if rel.is_empty() {
                    "/".into()
                } else {
                    restore::display(rel)
                },
                e.clone(),
            )
        })
        .collect()
}

fn full_plan(repo: &Repository, snap: &Snapshot) -> Result<Plan> {
    restore::plan(repo, snap, &Includes::new(&[])?)
}

// ---------------------------------------------------------------- --clone

fn clone(
    repo: &Repository,
    snap: &Snapshot,
    dir: &Path,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<ExportResult> {
    let (parent, name) = parent_and_name(dir)?;
    match std::fs::symlink_metadata(dir) {
        Ok(_) if is_empty_dir(dir) => {}
        Ok(_) => {
            return Err(Error::Invalid(format!(
                "{} already exists and is not an empty directory; choose a new name",
                dir.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(dir, e)),
    }
    let plan = full_plan(repo, snap)?;
    let mut res = ExportResult {
        path: dir.to_path_buf(),
        dry_run,
        files: plan.files,
        dirs: plan.dirs,
        other: plan.other,
        bytes: plan.bytes,
        ..Default::default()
    };
    if dry_run {
        res.entries = listing(&plan);
        res.errors = plan_errors(&plan);
        return Ok(res);
    }
    std::fs::create_dir_all(&parent).at(&parent)?;
    res.cleaned = clean_stale(&parent, Some(&name), STAGING);
    let staging = Staging::create(&parent, &name)?;
    let opts = RestoreOptions {
        target: staging.path.clone(),
        ..Default::default()
    };
    let r = match restore::execute(repo, snap, plan, true, &opts, progress) {
        Ok(r) => r,
        Err(e) => {
            staging.remove();
            return Err(e);
        }
    };
    res.bytes_written = r.bytes_written;
    if !r.errors.is_empty() {
        res.errors = r.errors;
        staging.remove();
        return Ok(res);
    }
    if let Err(e) = staging.default_mode(snap) {
        staging.remove();
        return Err(e);
    }
    staging.commit(dir)?;
    Ok(res)
}

// ---------------------------------------------------------------- --archive

const BLOCK: usize = 512;

/// Counts the bytes that reach the underlying writer.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(b)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A writer that also hashes what passes (SHA-256), when asked.
struct Hashing<W> {
    inner: W,
    hasher: Option<sha2::Sha256>,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(b)?;
        if let Some(h) = &mut self.hasher {
            sha2::Digest::update(h, &b[..k]);
        }
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Encoder<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    fn new(format: ArchiveFormat, w: W) -> io::Result<Encoder<W>> {
        Ok(match format {
            ArchiveFormat::Tar => Encoder::Plain(w),
            ArchiveFormat::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(w, flate2::Compression::default())),
            ArchiveFormat::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(w, 3)?),
        })
    }
    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(b),
            Encoder::Gzip(e) => e.write(b),
            Encoder::Zstd(e) => e.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// What a tar member is.
enum Member<'a> {
    Dir,
    File {
        size: u64,
    },
    /// GNU sparse format 1.0 (PAX): `map` is the block-padded region map that precedes
    /// the data regions.
    Sparse {
        size: u64,
        map: Vec<u8>,
        data: u64,
    },
    Symlink(&'a [u8]),
    HardLink(&'a [u8]),
    Char(u64),
    Block(u64),
    Fifo,
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while base + len.to_string().len() != len {
        len = base + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// A PAX time: seconds and nanoseconds as one decimal (`-1.5` is 1.5 s before 1970).
fn pax_time(t: &Time) -> String {
    if t.secs >= 0 || t.nanos == 0 {
        format!("{}.{:09}", t.secs, t.nanos)
    } else {
        format!("-{}.{:09}", -(t.secs + 1), 1_000_000_000 - t.nanos)
    }
}

/// Fits the plain ustar name field: printable ASCII, at most 100 bytes.
fn plain_name(n: &[u8]) -> bool {
    n.len() <= 100 && n.iter().all(|b| (0x20..0x7f).contains(b))
}

/// A printable stand-in for the ustar name field when the real name is in PAX records.
fn fallback_name(n: &[u8], dir: bool) -> Vec<u8> {
    let mut v: Vec<u8> = n
        .iter()
        .map(|&b| if (0x21..0x7f).contains(&b) { b } else { b'_' })
        .collect();
    if v.len() > 100 {
        v = v[v.len() - 99..].to_vec();
        if v[0] == b'/' {
            v[0] = b'_';
        }
    }
    if dir && !v.ends_with(b"/") {
        v.truncate(99);
        v.push(b'/');
    }
    v
}

fn tar_err(e: io::Error) -> Error {
    Error::io("archive", e)
}

struct Tar<W: Write> {
    w: W,
    pos: u64,
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl<W: Write> Tar<W> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.w.write_all(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let r = (self.pos % BLOCK as u64) as usize;
        if r != 0 {
            self.put(&ZEROS[..BLOCK - r])?;
        }
        Ok(())
    }

    /// Write a member's header (a PAX extended header first when needed). Returns the
    /// names of xattrs that a PAX record cannot carry (they contain `=`).
    fn header(&mut self, name: &[u8], m: &Member, meta: &ItemMeta) -> io::Result<Vec<String>> {
        let mut pax = Vec::new();
        let mut binary = false;
        let mut skipped = Vec::new();
        let mut full = name.to_vec();
        if matches!(m, Member::Dir) {
            full.push(b'/');
        }
        let shown: Vec<u8> = if let Member::Sparse { size, .. } = m {
            // GNU sparse 1.0: the real name and size go in GNU.sparse.* records, the
            // header carries a stand-in under `GNUSparseFile.0/`.
            pax_record(&mut pax, b"GNU.sparse.major", b"1");
            pax_record(&mut pax, b"GNU.sparse.minor", b"0");
            pax_record(&mut pax, b"GNU.sparse.name", &full);
            pax_record(&mut pax, b"GNU.sparse.realsize", size.to_string().as_bytes());
            binary |= std::str::from_utf8(&full).is_err();
            let (d, b) = split_rel(name);
            let mut s = d.to_vec();
            s.extend_from_slice(b"/GNUSparseFile.0/");
            s.extend_from_slice(b);
            fallback_name(&s, false)
        } else if plain_name(&full) {
            full.clone()
        } else {
            pax_record(&mut pax, b"path", &full);
            binary |= std::str::from_utf8(&full).is_err();
            fallback_name(&full, matches!(m, Member::Dir))
        };
        let link = match m {
            Member::Symlink(t) | Member::HardLink(t) => Some(*t),
            _ => None,
        };
        let mut link_field = Vec::new();
        if let Some(t) = link {
            if plain_name(t) {
                link_field = t.to_vec();
            } else {
                pax_record(&mut pax, b"linkpath", t);
                binary |= std::str::from_utf8(t).is_err();
                link_field = fallback_name(t, false);
            }
        }
        if binary {
            // The names are raw bytes, not UTF-8: readers must not convert them.
            pax_record(&mut pax, b"hdrcharset", b"BINARY");
        }

        let mut h = tar::Header::new_ustar();
        let (flag, size) = match m {
            Member::Dir => (tar::EntryType::Directory, 0),
            Member::File { size } => (tar::EntryType::Regular, *size),
            Member::Sparse { map, data, .. } => (tar::EntryType::Regular, map.len() as u64 + data),
            Member::Symlink(_) => (tar::EntryType::Symlink, 0),
            Member::HardLink(_) => (tar::EntryType::Link, 0),
            Member::Char(_) => (tar::EntryType::Char, 0),
            Member::Block(_) => (tar::EntryType::Block, 0),
            Member::Fifo => (tar::EntryType::Fifo, 0),
        };
        h.set_entry_type(flag);
        h.set_mode(meta.mode & 0o7777);
        const MAX7: u32 = 0o7777777;
        if meta.uid > MAX7 {
            pax_record(&mut pax, b"uid", meta.uid.to_string().as_bytes());
        } else {
            h.set_uid(meta.uid as u64);
        }
        if meta.gid > MAX7 {
            pax_record(&mut pax, b"gid", meta.gid.to_string().as_bytes());
        } else {
            h.set_gid(meta.gid as u64);
        }
        const MAX11: i64 = 0o77777777777;
        if meta.mtime.nanos != 0 || !(0..=MAX11).contains(&meta.mtime.secs) {
            pax_record(&mut pax, b"mtime", pax_time(&meta.mtime).as_bytes());
        }
        h.set_mtime(meta.mtime.secs.clamp(0, MAX11) as u64);
        if size > MAX11 as u64 {
            pax_record(&mut pax, b"size", size.to_string().as_bytes());
        }
        h.set_size(size);
        if let Member::Char(d) | Member::Block(d) = m {
            h.set_device_major(rustix::fs::major(*d as _))?;
            h.set_device_minor(rustix::fs::minor(*d as _))?;
        }
        for (k, v) in meta.xattrs.iter() {
            if k.contains(&b'=') {
                skipped.push(crate::format_name(k));
                continue;
            }
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax_record(&mut pax, &key, v);
        }
        {
            let u = h.as_ustar_mut().expect("a ustar header");
            u.name = [0; 100];
            u.name[..shown.len()].copy_from_slice(&shown);
            u.linkname = [0; 100];
            u.linkname[..link_field.len()].copy_from_slice(&link_field);
        }
        h.set_cksum();

        if !pax.is_empty() {
            let mut x = tar::Header::new_ustar();
            let mut xn = b"PaxHeaders/".to_vec();
            let (_, base) = split_rel(&shown);
            xn.extend_from_slice(&base[..base.len().min(80)]);
            let xn = fallback_name(&xn, false);
            {
                let u = x.as_ustar_mut().expect("a ustar header");
                u.name[..xn.len()].copy_from_slice(&xn);
            }
            x.set_entry_type(tar::EntryType::XHeader);
            x.set_mode(0o644);
            x.set_uid(0);
            x.set_gid(0);
            x.set_mtime(meta.mtime.secs.clamp(0, MAX11) as u64);
            x.set_size(pax.len() as u64);
            x.set_cksum();
            self.put(x.as_bytes())?;
            self.put(&pax)?;
            self.pad()?;
        }
        self.put(h.as_bytes())?;
        if let Member::Sparse { map, .. } = m {
            self.put(map)?;
        }
        Ok(skipped)
    }

    /// End of archive: two zero blocks, padded to a 10 KiB record like tar does.
    fn finish(&mut self) -> io::Result<()> {
        self.put(&ZEROS[..2 * BLOCK])?;
        let r = (self.pos % 10240) as usize;
        if r != 0 {
            self.put(&ZEROS[..10240 - r])?;
        }
        self.w.flush()
    }
}

/// The data regions of a sparse file as GNU sparse 1.0 writes them: `(offset, length)`,
/// with a final empty region at the end when the file ends in a hole.
fn sparse_map(data: &FileData) -> Vec<u8> {
    let mut regions = data.data_regions();
    if regions.last().is_none_or(|r| r.0 + r.1 < data.size) {
        // The file ends in a hole: GNU marks that with an empty region at the end.
        regions.push((data.size, 0));
    }
    let mut map = format!("{}\n", regions.len()).into_bytes();
    for (o, l) in regions {
        map.extend_from_slice(format!("{o}\n{l}\n").as_bytes());
    }
    let r = map.len() % BLOCK;
    if r != 0 {
        map.resize(map.len() + BLOCK - r, 0);
    }
    map
}

/// A manifest line in `sha256sum` format; names with a backslash, newline or carriage
/// return are escaped the way `sha256sum` does (a leading backslash marks the line).
pub fn manifest_line(hash: &[u8], name: &[u8]) -> Vec<u8> {
    let escape = name.iter().any(|b| matches!(b, b'\\' | b'\n' | b'\r'));
    let mut l = Vec::with_capacity(name.len() + 70);
    if escape {
        l.push(b'\\');
    }
    l.extend_from_slice(hex::encode(hash).as_bytes());
    l.extend_from_slice(b"  ");
    for &b in name {
        match b {
            b'\\' if escape => l.extend_from_slice(b"\\\\"),
            b'\n' => l.extend_from_slice(b"\\n"),
            b'\r' => l.extend_from_slice(b"\\r"),
            b => l.push(b),
        }
    }
    l.push(b'\n');
    l
}

/// File data handed from the reading thread to the archive writer, in plan order.
enum Piece {
    Data(Vec<u8>),
    /// The current file is complete.
    End,
    Err(String),
}

/// Read every file's chunks in plan order (the writer consumes them in the same order).
fn produce(repo: &Repository, items: &[Item], tx: crossbeam_channel::Sender<Piece>) {
    for item in items {
        let Item::File { data, .. } = item else { continue };
        let r = (|| -> std::result::Result<bool, String> {
            let chunks = repo.chunk_list(&data.content).map_err(|e| e.to_string())?;
            for c in chunks {
                let b = repo
                    .read_blob(BlobKind::Data, &BlobId(c.id.0))
                    .map_err(|e| e.to_string())?;
                if b.len() != c.len as usize {
                    return Err(format!("chunk {}: length differs from the file's chunk list", c.id));
                }
                if tx.send(Piece::Data(b)).is_err() {
                    return Ok(false);
                }
            }
            Ok(tx.send(Piece::End).is_ok())
        })();
        match r {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                let _ = tx.send(Piece::Err(e));
                return;
            }
        }
    }
}

/// Feeds a file's data regions to a hasher with the holes as zeros.
struct HoleHasher<'a> {
    h: sha2::Sha256,
    holes: &'a [(u64, u64)],
    pos: u64,
}

impl HoleHasher<'_> {
    fn zeros(&mut self, mut n: u64) {
        use sha2::Digest;
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.h.update(&ZEROS[..k]);
            n -= k as u64;
        }
    }
    fn skip_holes(&mut self) {
        while let Some(&(s, l)) = self.holes.first()
            && s <= self.pos
        {
            self.zeros(s + l - self.pos);
            self.pos = s + l;
            self.holes = &self.holes[1..];
        }
    }
    fn update(&mut self, mut b: &[u8]) {
        use sha2::Digest;
        while !b.is_empty() {
            self.skip_holes();
            let room = self.holes.first().map_or(u64::MAX, |h| h.0 - self.pos);
            let k = (b.len() as u64).min(room) as usize;
            self.h.update(&b[..k]);
            self.pos += k as u64;
            b = &b[k..];
        }
    }
    fn finish(mut self, size: u64) -> Vec<u8> {
        use sha2::Digest;
        self.skip_holes();
        if self.pos < size {
            self.zeros(size - self.pos);
        }
        self.h.finalize().to_vec()
    }
}

/// Member name of a snapshot path under the top folder (none when `top` is empty).
pub(crate) fn member(top: &[u8], rel: &[u8]) -> Vec<u8> {
    if top.is_empty() {
        return rel.to_vec();
    }
    let mut n = top.to_vec();
    if !rel.is_empty() {
        n.push(b'/');
        n.extend_from_slice(rel);
    }
    n
}

/// The metadata of a snapshot's root directory; made up for the synthetic root of a
/// snapshot of several paths (or of standard input).
pub(crate) fn root_meta(snap: &Snapshot) -> ItemMeta {
    snap.root
        .clone()
        .unwrap_or_else(|| Meta {
            mode: 0o040755,
            mtime: snap.time,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            ..Meta::default()
        })
        .into()
}

/// Stream the archive of `plan` into `out`; manifest lines go to `manifest`. `top` is the
/// folder every member is under, written first with the metadata `root`; with no `root`,
/// members are named by their paths alone (`top` empty).
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_archive<W: Write>(
    repo: &Repository,
    root: Option<&ItemMeta>,
    plan: &Plan,
    top: &[u8],
    out: W,
    mut manifest: Option<&mut dyn Write>,
    progress: &dyn Progress,
    res: &mut ExportResult,
) -> Result<W> {
    let mut tar = Tar { w: out, pos: 0 };
    if let Some(root) = root {
        tar.header(top, &Member::Dir, root).map_err(tar_err)?;
    }
    let (files, bytes) = plan.items.iter().fold((0, 0), |(f, b), i| match i {
        Item::File { data, .. } => (f + 1, b + data.size),
        Item::HardLink { .. } => (f + 1, b),
        _ => (f, b),
    });
    progress.add_total(files, bytes);
    // Hard links repeat their first name's line in the manifest: remember those hashes.
    let link_targets: HashSet<&[u8]> = plan
        .items
        .iter()
        .filter_map(|i| match i {
            Item::HardLink { target, .. } => Some(target.as_slice()),
            _ => None,
        })
        .collect();
    let mut target_hashes: HashMap<&[u8], Vec<u8>> = HashMap::new();
    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded::<Piece>(4);
        s.spawn(|| produce(repo, &plan.items, tx));
        for item in &plan.items {
            let name = member(top, item.rel());
            let skipped = match item {
                Item::Dir { meta, .. } => tar.header(&name, &Member::Dir, meta),
                Item::Symlink { target, meta, .. } => tar.header(&name, &Member::Symlink(target), meta),
                Item::HardLink { target, meta, .. } => {
                    if let (Some(m), Some(h)) = (manifest.as_deref_mut(), target_hashes.get(target.as_slice())) {
                        m.write_all(&manifest_line(h, &name))
                            .map_err(|e| Error::io("manifest", e))?;
                    }
                    tar.header(&name, &Member::HardLink(&member(top, target)), meta)
                }
                Item::Special { kind, meta, .. } => {
                    let m = match kind {
                        restore::Special::Fifo => Member::Fifo,
                        restore::Special::Char(d) => Member::Char(*d),
                        restore::Special::Block(d) => Member::Block(*d),
                        restore::Special::Socket => {
                            res.skipped
                                .push((restore::display(&name), "a tar archive cannot hold a socket".into()));
                            continue;
                        }
                    };
                    tar.header(&name, &m, meta)
                }
                Item::File { data, meta, .. } => {
                    let holes: u64 = data.holes.iter().map(|h| h.1).sum();
                    let data_len = data.size - holes;
                    progress.current(Path::new(OsStr::from_bytes(item.rel())));
                    progress.add_bytes(holes);
                    let m = if data.holes.is_empty() {
                        Member::File { size: data.size }
                    } else {
                        Member::Sparse {
                            size: data.size,
                            map: sparse_map(data),
                            data: data_len,
                        }
                    };
                    let skipped = tar.header(&name, &m, meta).map_err(tar_err)?;
                    let mut hasher = manifest.is_some().then(|| HoleHasher {
                        h: <sha2::Sha256 as sha2::Digest>::new(),
                        holes: &data.holes,
                        pos: 0,
                    });
                    let mut got = 0u64;
                    loop {
                        match rx.recv() {
                            Ok(Piece::Data(b)) => {
                                got += b.len() as u64;
                                if got > data_len {
                                    break;
                                }
                                tar.put(&b).map_err(tar_err)?;
                                if let Some(h) = &mut hasher {
                                    h.update(&b);
                                }
                                progress.add_bytes(b.len() as u64);
                            }
                            Ok(Piece::End) => break,
                            Ok(Piece::Err(e)) => {
                                return Err(Error::Corrupt(format!("{}: {e}", restore::display(item.rel()))));
                            }
                            Err(_) => return Err(Error::Corrupt("the reading thread stopped".into())),
                        }
                    }
                    if got != data_len {
                        return Err(Error::Corrupt(format!(
                            "{}: damaged entry: its chunks do not add up to its size",
                            restore::display(item.rel())
                        )));
                    }
                    tar.pad().map_err(tar_err)?;
                    if let (Some(h), Some(m)) = (hasher, manifest.as_deref_mut()) {
                        let hash = h.finish(data.size);
                        m.write_all(&manifest_line(&hash, &name))
                            .map_err(|e| Error::io("manifest", e))?;
                        if link_targets.contains(item.rel()) {
                            target_hashes.insert(item.rel(), hash);
                        }
                    }
                    Ok(skipped)
                }
            }
            .map_err(tar_err)?;
            if matches!(item, Item::File { .. } | Item::HardLink { .. }) {
                progress.file_done();
            }
            progress.written(Path::new(OsStr::from_bytes(&name)));
            for x in skipped {
                res.skipped.push((
                    restore::display(&name),
                    format!("xattr {x}: a name with '=' cannot be stored in a PAX record"),
                ));
            }
        }
        Ok(())
    })?;
    tar.finish().map_err(tar_err)?;
    Ok(tar.w)
}

fn archive_listing(plan: &Plan, top: &[u8]) -> Vec<(Action, Vec<u8>)> {
    let mut v = vec![(Action::Dir, top.to_vec())];
    v.extend(listing(plan).into_iter().map(|(a, rel)| (a, member(top, &rel))));
    v
}

/// Stream an archive of `snap` into `w` (e.g. standard output); nothing else is written.
pub fn archive_to_writer(
    repo: &Repository,
    snap: &Snapshot,
    format: ArchiveFormat,
    encryption: Option<&crate::seal::ArchiveEncryption>,
    w: &mut dyn Write,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<ExportResult> {
    let plan = full_plan(repo, snap)?;
    let top = project_name(snap);
    let mut res = ExportResult {
        path: PathBuf::from("-"),
        dry_run,
        files: plan.files,
        dirs: plan.dirs,
        other: plan.other,
        bytes: plan.bytes,
        errors: plan_errors(&plan),
        ..Default::default()
    };
    if dry_run {
        res.entries = archive_listing(&plan, &top);
        return Ok(res);
    }
    if !res.errors.is_empty() {
        return Ok(res);
    }
    let sealed = crate::seal::Sealed::new(Counting { inner: w, n: 0 }, encryption)?;
    let enc = Encoder::new(format, sealed).map_err(tar_err)?;
    let enc = write_archive(repo, Some(&root_meta(snap)), &plan, &top, enc, None, progress, &mut res)?;
    let mut c = enc.finish().and_then(|s| s.finish()).map_err(tar_err)?;
    c.flush().map_err(tar_err)?;
    res.bytes_written = c.n;
    Ok(res)
}

fn archive_file(
    repo: &Repository,
    snap: &Snapshot,
    file: &Path,
    (format, encryption): (ArchiveFormat, Option<&crate::seal::ArchiveEncryption>),
    with_manifest: bool,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<ExportResult> {
    let (parent, name) = parent_and_name(file)?;
    let mut mname = name.clone();
    mname.extend_from_slice(b".sha256");
    let mpath = path_join(&parent, &mname);
    for p in std::iter::once(file).chain(with_manifest.then_some(mpath.as_path())) {
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(Error::Invalid(format!(
                "{} already exists; remove it or choose another name",
                p.display()
            )));
        }
    }
    let plan = full_plan(repo, snap)?;
    let top = project_name(snap);
    let mut res = ExportResult {
        path: file.to_path_buf(),
        dry_run,
        files: plan.files,
        dirs: plan.dirs,
        other: plan.other,
        bytes: plan.bytes,
        manifest: with_manifest.then(|| mpath.clone()),
        errors: plan_errors(&plan),
        ..Default::default()
    };
    if dry_run {
        res.entries = archive_listing(&plan, &top);
        return Ok(res);
    }
    if !res.errors.is_empty() {
        return Ok(res);
    }
    std::fs::create_dir_all(&parent).at(&parent)?;
    let temp = |n: &[u8]| {
        let mut t = b".".to_vec();
        t.extend_from_slice(&n[..n.len().min(200)]);
        t.extend_from_slice(format!("{TMP}{}", random_hex()).as_bytes());
        path_join(&parent, &t)
    };
    // Temp files are locked while written, so a later export tells a killed one's
    // leftovers (removed) from a running one's.
    res.cleaned = clean_stale(&parent, Some(&name), TMP);
    res.cleaned.extend(clean_stale(&parent, Some(&mname), TMP));
    let create = |p: &Path| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(p)
            .at(p)?;
        f.try_lock()
            .map_err(|e| Error::io(p, io::Error::other(e.to_string())))?;
        Ok::<File, Error>(f)
    };
    let (tmp, mtmp) = (temp(&name), temp(&mname));
    let out = create(&tmp)?;
    let mut mout = match with_manifest {
        true => match create(&mtmp) {
            Ok(f) => Some(BufWriter::new(f)),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        },
        false => None,
    };
    let written = (|| -> Result<()> {
        // File <- hash (an encrypted archive's manifest is of the file) <- count <- age
        // <- compression <- tar.
        let hashed = Hashing {
            inner: BufWriter::with_capacity(1 << 20, out),
            hasher: (with_manifest && encryption.is_some()).then(<sha2::Sha256 as sha2::Digest>::new),
        };
        let sealed = crate::seal::Sealed::new(Counting { inner: hashed, n: 0 }, encryption)?;
        let enc = Encoder::new(format, sealed).map_err(tar_err)?;
        let members = match encryption {
            None => mout.as_mut().map(|m| m as &mut dyn Write),
            Some(_) => None,
        };
        let enc = write_archive(
            repo,
            Some(&root_meta(snap)),
            &plan,
            &top,
            enc,
            members,
            progress,
            &mut res,
        )?;
        let c = enc.finish().and_then(|s| s.finish()).map_err(tar_err)?;
        res.bytes_written = c.n;
        let Hashing { inner, hasher } = c.inner;
        if let (Some(h), Some(m)) = (hasher, mout.as_mut()) {
            m.write_all(&manifest_line(&sha2::Digest::finalize(h), &name))
                .map_err(|e| Error::io(&mtmp, e))?;
        }
        let f = inner.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
        f.sync_all().at(&tmp)?;
        if let Some(m) = mout.take() {
            let f = m.into_inner().map_err(|e| Error::io(&mtmp, e.into_error()))?;
            f.sync_all().at(&mtmp)?;
        }
        rename_new(&tmp, file)?;
        if with_manifest {
            rename_new(&mtmp, &mpath)?;
        }
        fsync_dir(&parent).at(&parent)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&mtmp);
        return Err(e);
    }
    Ok(res)
}

fn rename_new(from: &Path, to: &Path) -> Result<()> {
    rustix::fs::renameat_with(rustix::fs::CWD, from, rustix::fs::CWD, to, RenameFlags::NOREPLACE)
        .map_err(|e| Error::io(to, errno(e)))
}

// ---------------------------------------------------------------- --incremental

/// Where sidecar records live: `DIR/.projectclone-export/<folder>.json`. They sit beside
/// the export folders, not inside them, so every folder stays an exact copy.
const SIDECAR_DIR: &str = ".projectclone-export";

/// What an incremental export remembers about each folder it made.
#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    format: u32,
    folder: String,
    project: String,
    snapshot: String,
    time_secs: i64,
    time_nanos: u32,
    /// Regular files: name (escaped as in JSON output) → what was written there.
    files: HashMap<String, SidecarFile>,
    /// The view is an archive `<folder>` (`….tar.gz`, with perhaps `<folder>.sha256`
    /// beside it), not a folder: counted by `--keep`, never a link base.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    archive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SidecarFile {
    size: u64,
    mtime_secs: i64,
    mtime_nanos: u32,
    /// BLAKE3 of the size, the holes and the chunk ids (keyed hashes of the bytes).
    content: String,
}

/// Identifies a file's bytes without reading them: chunk ids are keyed hashes of the
/// chunks, so equal digests mean equal bytes.
fn content_digest(repo: &Repository, data: &FileData) -> Result<String> {
    let mut h = blake3::Hasher::new();
    h.update(b"projectclone export content v1");
    h.update(&data.size.to_le_bytes());
    h.update(&(data.holes.len() as u64).to_le_bytes());
    for (o, l) in &data.holes {
        h.update(&o.to_le_bytes());
        h.update(&l.to_le_bytes());
    }
    for c in repo.chunk_list(&data.content)? {
        h.update(&c.id.0);
        h.update(&c.len.to_le_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

/// This project's export folders under `dir` (those with a sidecar naming the project),
/// oldest first.
fn list_exports(dir: &Path, project: &str) -> Vec<Sidecar> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir.join(SIDECAR_DIR)) else {
        return out;
    };
    for e in rd.flatten() {
        let n = e.file_name();
        let Some(folder) = n.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        let sc: Sidecar = match std::fs::read(e.path())
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!("export record {} skipped: {err}", e.path().display());
                continue;
            }
        };
        if sc.project != project || sc.folder != folder || sc.format != 1 || !export_folder_name(folder) {
            continue;
        }
        out.push(sc);
    }
    // Equal times (imports of one second carry no nanoseconds): `x`, `x-1`, …, `x-10`.
    let key = |s: &Sidecar| (s.time_secs, s.time_nanos, name_suffix(&s.folder).1, s.folder.clone());
    out.sort_by_key(key);
    out
}

/// A name this tool gives export folders: `YYYY-MM-DD_HHMMSS-` and a plain name (a record
/// naming anything else, such as `..`, is ignored).
fn export_folder_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() > 18
        && b[..18].iter().enumerate().all(|(i, c)| match i {
            4 | 7 | 17 => *c == b'-',
            10 => *c == b'_',
            _ => c.is_ascii_digit(),
        })
        && !n.contains('/')
}

/// `DIR/.projectclone-export`, which must be a directory if it exists.
fn records_dir(dir: &Path) -> Result<PathBuf> {
    let side = dir.join(SIDECAR_DIR);
    if std::fs::symlink_metadata(&side).is_ok_and(|m| !m.is_dir()) {
        return Err(Error::Invalid(format!(
            "{} is not a directory (a symlink?); export records are kept there",
            side.display()
        )));
    }
    Ok(side)
}

/// Create the records folder and take its lock: one export that names its own view at a
/// time per destination folder (the records and the rotation are shared).
fn lock_records(side: &Path) -> Result<File> {
    std::fs::create_dir_all(side).at(side)?;
    let lp = side.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lp)
        .at(&lp)?;
    f.lock().map_err(|e| Error::io(&lp, e))?;
    Ok(f)
}

/// Remove sidecars whose folder is gone (deleted by hand, or a crash between the
/// sidecar and the folder rename).
fn clean_sidecars(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir.join(SIDECAR_DIR)) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name();
        let Some(folder) = n.as_bytes().strip_suffix(b".json") else {
            continue;
        };
        if std::fs::symlink_metadata(path_join(dir, folder)).is_err() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A file of the previous export that matches the snapshot's entry in type, size, ns
/// mtime, mode, owner (when root) and xattrs, as it is on disk now.
fn unchanged_on_disk(parent: &OwnedFd, name: &[u8], meta: &ItemMeta, size: u64, is_root: bool) -> bool {
    let Ok(st) = rustix::fs::statat(parent, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) else {
        return false;
    };
    if st.st_mode != meta.mode
        || st.st_size as u64 != size
        || st.st_mtime != meta.mtime.secs
        || st.st_mtime_nsec as u32 != meta.mtime.nanos
        || (is_root && (st.st_uid != meta.uid || st.st_gid != meta.gid))
    {
        return false;
    }
    // Through the directory descriptor (`/proc/self/fd/N/name`); l*xattr does not
    // follow a final symlink.
    let mut p = std::ffi::OsString::from(format!("/proc/self/fd/{}/", parent.as_raw_fd()));
    p.push(OsStr::from_bytes(name));
    match crate::meta::read_xattrs(Path::new(&p)) {
        Ok(x) => {
            let mut want = meta.xattrs.to_vec();
            want.sort();
            x == want
        }
        Err(_) => false,
    }
}

/// The newest folder in `dir` named `YYYY-MM-DD_HHMMSS-<project>[-<note>]` that no record
/// describes: the older Python tool's latest backup of the project, a link base for the
/// first export into its backup folder.
fn old_tool_folder(dir: &Path, project: &str) -> Option<String> {
    let rd = std::fs::read_dir(dir).ok()?;
    let mut best: Option<String> = None;
    for e in rd.flatten() {
        let Ok(n) = e.file_name().into_string() else { continue };
        if !export_folder_name(&n) || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let rest = &n[18..];
        let ours = rest == project || rest.strip_prefix(project).is_some_and(|r| r.starts_with('-'));
        // Newest by time stamp; within a second the highest `-N` suffix is the last made.
        let key = |n: &str| (n[..17].to_string(), name_suffix(n).1, n.to_string());
        if ours && best.as_ref().is_none_or(|b| key(&n) > key(b)) {
            best = Some(n);
        }
    }
    best
}

/// Whether the file at `rel` below `root` holds exactly the bytes of `data`: cut by the
/// repository's chunker for its size, its keyed chunk ids are the snapshot's chunk list.
/// Only dense files qualify; the file is read once, nothing is decrypted.
fn same_content(
    repo: &Repository,
    chunkers: &crate::chunker::FileChunkers,
    buf: &mut Vec<u8>,
    root: &OwnedFd,
    rel: &[u8],
    data: &FileData,
) -> bool {
    if !data.holes.is_empty() {
        return false;
    }
    let Ok(chunks) = repo.chunk_list(&data.content) else {
        return false;
    };
    let Ok(fd) = rustix::fs::openat2(
        root,
        OsStr::from_bytes(rel),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
        BENEATH,
    ) else {
        return false;
    };
    let mut f = File::from(fd);
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut i = 0;
    let chunker = chunkers.for_size(data.size);
    let read = chunker.stream(&mut f, data.size + 1, buf, |c| match chunks.get(i) {
        Some(x) if x.len as usize == c.len() && x.id.0 == repo.keys.chunk_id(c) => {
            i += 1;
            Ok(())
        }
        _ => Err(io::Error::other("content differs")),
    });
    read.is_ok_and(|n| n == data.size) && i == chunks.len()
}

/// Create the directories of `rel` (not its last component) below `root`, mode 0700
/// (the restore sets their real metadata later).
fn make_parents(root: &OwnedFd, rel: &[u8], made: &mut HashSet<Vec<u8>>) -> io::Result<()> {
    let mut end = 0;
    while let Some(i) = rel[end..].iter().position(|b| *b == b'/') {
        let d = &rel[..end + i];
        if made.insert(d.to_vec()) {
            let (p, n) = split_rel(d);
            let pfd = open_beneath(root, p)?;
            match rustix::fs::mkdirat(&pfd, OsStr::from_bytes(n), Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        end += i + 1;
    }
    Ok(())
}

fn incremental(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    dir: &Path,
    keep: Option<usize>,
    opts: &ExportOptions,
    progress: &dyn Progress,
) -> Result<ExportResult> {
    if keep == Some(0) {
        return Err(Error::Invalid(
            "--keep 0 would remove the new export itself; give 1 or more".into(),
        ));
    }
    let dry_run = opts.dry_run;
    let stem = folder_name(snap, &opts.tz);
    let project = safe_component(&String::from_utf8_lossy(&project_name(snap)));
    let project = if project.is_empty() {
        "project".to_string()
    } else {
        project
    };
    // Records match on the project's exact name, not its sanitized form: two projects whose
    // names sanitize alike must never rotate each other's folders away.
    let project_key = crate::format_name(&project_name(snap));
    // One incremental export at a time per DIR: the sidecars and rotation are shared.
    let side = records_dir(dir)?;
    let _lock = if dry_run { None } else { Some(lock_records(&side)?) };
    let mut res = ExportResult {
        dry_run,
        ..Default::default()
    };
    if !dry_run {
        res.cleaned = clean_stale(dir, None, STAGING);
        clean_sidecars(dir);
    }
    let existing = list_exports(dir, &project_key);
    if let Some(done) = existing.iter().find(|s| s.snapshot == id.to_hex()) {
        return Err(Error::Invalid(format!(
            "{} already exists: this snapshot was exported there already",
            dir.join(&done.folder).display()
        )));
    }
    // Chosen under the lock: two snapshots of one second get `<name>`, `<name>-1`, …
    // A name is taken by anything in DIR and by any record (its folder may be gone only
    // in a dry run, which does not remove records).
    let folder = unique_name(&stem, "", |n| {
        exists_in(dir, n) || exists_in(&side, &format!("{n}.json"))
    })?;
    let dest = dir.join(&folder);
    res.path = dest.clone();
    // Archives the older tool's syntax wrote there count for `--keep`, but hold no folder.
    let prev = existing.iter().rev().find(|s| !s.archive);

    let mut plan = full_plan(repo, snap)?;
    res.files = plan.files;
    res.dirs = plan.dirs;
    res.other = plan.other;
    res.bytes = plan.bytes;
    res.errors = plan_errors(&plan);
    if !res.errors.is_empty() && !dry_run {
        return Ok(res);
    }

    // What this export writes, for its own sidecar; and which files may be linked.
    let mut files = HashMap::new();
    let mut candidates: HashSet<Vec<u8>> = HashSet::new();
    for item in &plan.items {
        if let Item::File { rel, data, meta } = item {
            let key = crate::format_name(rel);
            let sf = SidecarFile {
                size: data.size,
                mtime_secs: meta.mtime.secs,
                mtime_nanos: meta.mtime.nanos,
                content: content_digest(repo, data)?,
            };
            if prev.and_then(|p| p.files.get(&key)) == Some(&sf) {
                candidates.insert(rel.to_vec());
            }
            files.insert(key, sf);
        }
    }
    // The folder to link from: the newest export with a record; without one, the newest
    // folder of the project named like the old tool's, its content compared by hashing.
    let (base, by_record) = match prev {
        Some(p) => (Some(p.folder.clone()), true),
        None => (old_tool_folder(dir, &project), false),
    };
    let prev_root = match &base {
        Some(b) if !by_record || !candidates.is_empty() => match open_dir(&dir.join(b)) {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::warn!("previous export {b} unreadable, nothing linked: {e}");
                None
            }
        },
        _ => None,
    };
    res.previous = base.as_ref().map(|b| dir.join(b));
    let is_root = crate::platform::is_root();
    let mut link: HashSet<Vec<u8>> = HashSet::new();
    if let Some(root) = &prev_root {
        let chunkers = repo.file_chunkers();
        let mut buf = Vec::new();
        let mut parent: Option<(Vec<u8>, OwnedFd)> = None;
        for item in &plan.items {
            let Item::File { rel, data, meta } = item else { continue };
            if by_record && !candidates.contains(&rel[..]) {
                continue;
            }
            let (p, n) = split_rel(rel);
            if parent.as_ref().is_none_or(|(q, _)| q != p) {
                parent = open_beneath(root, p).ok().map(|fd| (p.to_vec(), fd));
            }
            let Some((_, fd)) = &parent else { continue };
            if unchanged_on_disk(fd, n, meta, data.size, is_root)
                && (by_record || same_content(repo, &chunkers, &mut buf, root, rel, data))
            {
                link.insert(rel.to_vec());
            }
        }
    }

    if dry_run {
        res.entries = listing(&plan)
            .into_iter()
            .map(|(a, rel)| (if link.contains(&rel) { Action::Link } else { a }, rel))
            .collect();
        for item in &plan.items {
            if let Item::File { rel, data, .. } = item
                && link.contains(&rel[..])
            {
                res.linked += 1;
                res.linked_bytes += data.size;
            }
        }
        if let Some(k) = keep {
            let mut all: Vec<PathBuf> = existing.iter().map(|s| dir.join(&s.folder)).collect();
            all.push(dest.clone());
            all.sort_by(|a, b| {
                let t = |p: &PathBuf| {
                    existing
                        .iter()
                        .find(|s| dir.join(&s.folder) == *p)
                        .map_or((snap.time.secs, snap.time.nanos), |s| (s.time_secs, s.time_nanos))
                };
                (t(a), a).cmp(&(t(b), b))
            });
            let n = all.len().saturating_sub(k);
            res.removed = all.into_iter().take(n).collect();
        }
        return Ok(res);
    }

    let staging = Staging::create(dir, folder.as_bytes())?;
    let result = (|| -> Result<()> {
        // Hard links first: the restore then writes everything else and sets every
        // directory's metadata last, so the links do not disturb directory mtimes.
        if let Some(root) = &prev_root {
            let sroot = open_dir(&staging.path).at(&staging.path)?;
            let mut made = HashSet::new();
            let mut linked_ok: HashSet<Vec<u8>> = HashSet::new();
            for item in &plan.items {
                let Item::File { rel, data, .. } = item else { continue };
                if !link.contains(&rel[..]) {
                    continue;
                }
                let (p, n) = split_rel(rel);
                let r = make_parents(&sroot, rel, &mut made).and_then(|()| {
                    let from = open_beneath(root, p)?;
                    let to = open_beneath(&sroot, p)?;
                    rustix::fs::linkat(&from, OsStr::from_bytes(n), &to, OsStr::from_bytes(n), AtFlags::empty())
                        .map_err(errno)
                });
                match r {
                    Ok(()) => {
                        res.linked += 1;
                        res.linked_bytes += data.size;
                        linked_ok.insert(rel.to_vec());
                    }
                    Err(e) => {
                        tracing::debug!("link {} failed ({e}); copying it", restore::display(rel));
                        res.copied_after_link_failure += 1;
                    }
                }
            }
            plan.items
                .retain(|i| !matches!(i, Item::File { rel, .. } if linked_ok.contains(&rel[..])));
        }
        let ropts = RestoreOptions {
            target: staging.path.clone(),
            ..Default::default()
        };
        let r = restore::execute(repo, snap, std::mem::take(&mut plan), true, &ropts, progress)?;
        res.bytes_written = r.bytes_written;
        res.errors = r.errors;
        staging.default_mode(snap)
    })();
    if let Err(e) = result {
        staging.remove();
        return Err(e);
    }
    if !res.errors.is_empty() {
        staging.remove();
        return Ok(res);
    }
    // The record first, then the folder: a crash in between leaves a record without a
    // folder, which the next export removes.
    let sc = Sidecar {
        format: 1,
        folder: folder.clone(),
        project: project_key.clone(),
        snapshot: id.to_hex(),
        time_secs: snap.time.secs,
        time_nanos: snap.time.nanos,
        files,
        archive: false,
    };
    let sp = side.join(format!("{folder}.json"));
    let tmp = side.join(format!(".{folder}.json.{}", random_hex()));
    let written = serde_json::to_vec(&sc)
        .map_err(|e| Error::Invalid(format!("export record: {e}")))
        .and_then(|b| {
            let mut f = File::create(&tmp).at(&tmp)?;
            f.write_all(&b).at(&tmp)?;
            f.sync_all().at(&tmp)?;
            std::fs::rename(&tmp, &sp).at(&sp)
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        staging.remove();
        return Err(e);
    }
    if let Err(e) = staging.commit(&dest) {
        let _ = std::fs::remove_file(&sp);
        return Err(e);
    }

    if let Some(k) = keep {
        keep_newest(dir, &project_key, k, &mut res.removed, &mut res.errors);
    }
    Ok(res)
}

/// Remove all but the `keep` newest views of `project` in `dir` (`--keep`): each removed
/// one goes to `removed`, each that could not be removed to `errors`.
fn keep_newest(dir: &Path, project: &str, keep: usize, removed: &mut Vec<PathBuf>, errors: &mut Vec<(String, String)>) {
    let all = list_exports(dir, project);
    let n = all.len().saturating_sub(keep);
    for old in all.into_iter().take(n) {
        let p = dir.join(&old.folder);
        match rotate_out(dir, &old.folder) {
            Ok(true) => removed.push(p),
            Ok(false) => {}
            Err(e) => errors.push((p.display().to_string(), format!("could not remove: {e}"))),
        }
    }
}

/// Remove an export folder and its record. The folder is first renamed to a staging
/// name, so a removal cut short is finished by the next export; a symlink is never
/// followed (nor removed: it is not a folder this tool made).
fn rotate_out(dir: &Path, folder: &str) -> io::Result<bool> {
    let p = dir.join(folder);
    let md = std::fs::symlink_metadata(&p)?;
    if md.is_file() && old_tool::is_archive_name(folder) {
        // The record first: an archive without one is left alone by later runs.
        let _ = std::fs::remove_file(dir.join(SIDECAR_DIR).join(format!("{folder}.json")));
        std::fs::remove_file(&p)?;
        let sum = dir.join(format!("{folder}.sha256"));
        if std::fs::symlink_metadata(&sum).is_ok_and(|m| m.is_file()) {
            std::fs::remove_file(&sum)?;
        }
        return Ok(true);
    }
    if !md.is_dir() {
        return Ok(false);
    }
    let gone = dir.join(format!(".{folder}{STAGING}{}", random_hex()));
    std::fs::rename(&p, &gone)?;
    let _ = std::fs::remove_file(dir.join(SIDECAR_DIR).join(format!("{folder}.json")));
    remove_path(&gone)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_counts_itself() {
        for (k, v) in [("path", "a"), ("mtime", "1.5"), ("path", &"x".repeat(95)[..])] {
            let mut out = Vec::new();
            pax_record(&mut out, k.as_bytes(), v.as_bytes());
            let s = String::from_utf8(out.clone()).unwrap();
            let len: usize = s.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "{s:?}");
        }
    }

    #[test]
    fn pax_times_before_1970() {
        assert_eq!(pax_time(&Time { secs: 5, nanos: 1 }), "5.000000001");
        assert_eq!(
            pax_time(&Time {
                secs: -2,
                nanos: 500_000_000
            }),
            "-1.500000000"
        );
        assert_eq!(pax_time(&Time { secs: -3, nanos: 0 }), "-3.000000000");
    }

    #[test]
    fn safe_names() {
        assert_eq!(safe_component("before refactor: v2/3!"), "before_refactor_v2_3");
        assert_eq!(safe_component("../.."), "");
        assert_eq!(safe_component("ünï côdé"), "ünï_côdé");
        assert!(safe_component(&"x".repeat(300)).len() <= 64);
    }

    #[test]
    fn manifest_escapes_like_sha256sum() {
        assert_eq!(manifest_line(&[0xab], b"a b"), b"ab  a b\n");
        assert_eq!(manifest_line(&[0xab], b"n\nl\\"), b"\\ab  n\\nl\\\\\n");
    }

    #[test]
    fn sparse_map_ends_with_the_size() {
        let d = FileData {
            size: 100,
            holes: vec![(10, 90)],
            content: crate::format::Content::Chunks(Vec::new()),
        };
        assert!(sparse_map(&d).starts_with(b"2\n0\n10\n100\n0\n"));
        let d = FileData {
            size: 100,
            holes: vec![(0, 50)],
            content: crate::format::Content::Chunks(Vec::new()),
        };
        assert!(sparse_map(&d).starts_with(b"1\n50\n50\n"));
    }

    #[test]
    fn export_folder_names() {
        assert!(export_folder_name("2024-03-05_140102-app"));
        assert!(export_folder_name("2024-03-05_140102-app-note"));
        assert!(!export_folder_name(".."));
        assert!(!export_folder_name("2024-03-05_140102-"));
        assert!(!export_folder_name("2024-03-05-140102-app"));
    }

    #[test]
    fn unique_names_count_up_like_the_old_tool() {
        let taken = ["a", "a-1", "b.tar.gz"];
        let free = |stem: &str, ext: &str| unique_name(stem, ext, |n| taken.contains(&n)).unwrap();
        assert_eq!(free("c", ""), "c");
        assert_eq!(free("a", ""), "a-2");
        assert_eq!(free("b", ".tar.gz"), "b-1.tar.gz");
        assert!(unique_name("x", "", |_| true).is_err());
        assert_eq!(name_suffix("2024-03-05_140102-app-12"), ("2024-03-05_140102-app", 12));
        assert_eq!(name_suffix("2024-03-05_140102-app-v0"), ("2024-03-05_140102-app-v0", 0));
        assert_eq!(
            name_suffix("2024-03-05_140102-app-007"),
            ("2024-03-05_140102-app-007", 0)
        );
    }

    #[test]
    fn archive_formats_by_extension() {
        assert_eq!(
            ArchiveFormat::from_path(Path::new("a.tar.gz")),
            Some(ArchiveFormat::Gzip)
        );
        assert_eq!(
            ArchiveFormat::from_path(Path::new("a.TAR.ZST")),
            Some(ArchiveFormat::Zstd)
        );
        assert_eq!(ArchiveFormat::from_path(Path::new("a.tar")), Some(ArchiveFormat::Tar));
        assert_eq!(ArchiveFormat::from_path(Path::new("a.zip")), None);
    }
}
