//! The views the older Python tool wrote into its destination folder (README "Coming from
//! projectclone 4.x"), written from a snapshot: a folder copy
//! `YYYY-MM-DD_HHMMSS-<project>-<note>` (with `MANIFEST.txt`, `path<TAB>size` lines, and
//! `MANIFEST_SHA256.txt` in `sha256sum` format inside it on request), that name `.tar.gz`
//! with that name as its one top folder (with `NAME.tar.gz.sha256`, the archive's own
//! checksum, on request), or an incremental hard-link folder ([`super::incremental`]).
//! An archive may be encrypted (age, [`crate::seal`]): `NAME.tar.gz.age`, whose
//! `NAME.tar.gz.age.sha256` is then the checksum of the encrypted file, the one on disk.
//!
//! Each view gets a record in `DEST/.projectclone-export/` like an incremental export, so
//! `--keep N` counts this project's views of every kind there (an archive and its
//! `.sha256` once), a folder copy is a link base for a later incremental one, and two views
//! made within one second are named `<name>`, `<name>-1`, … Views the older tool itself
//! wrote have no record: they are neither counted nor removed.

use super::*;

/// Which of the older tool's views.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OldView {
    /// A folder copy; `sizes`: `MANIFEST.txt` inside it; `sha`: `MANIFEST_SHA256.txt`.
    Folder { sizes: bool, sha: bool },
    /// A `.tar.gz`; `sha`: `NAME.tar.gz.sha256` beside it. `age`: encrypted as
    /// [`OldViewOptions::encryption`] says, named `NAME.tar.gz.age` (and its checksum
    /// `NAME.tar.gz.age.sha256`, of the encrypted file).
    Archive { sha: bool, age: bool },
    /// An incremental hard-link folder.
    Incremental,
}

#[derive(Clone, Debug)]
pub struct OldViewOptions {
    /// The destination folder (the older tool's `--dest`), created when missing.
    pub dest: PathBuf,
    pub view: OldView,
    /// Keep this project's newest N views in `dest` (recorded ones; N ≥ 1).
    pub keep: Option<usize>,
    /// Zone for names (the snapshot's time in local time).
    pub tz: jiff::tz::TimeZone,
    /// How an archive with `age` is encrypted (required then; unused otherwise).
    pub encryption: Option<crate::seal::ArchiveEncryption>,
}

/// The manifests of a folder view, at its top.
pub const SIZES_MANIFEST: &str = "MANIFEST.txt";
pub const SHA_MANIFEST: &str = "MANIFEST_SHA256.txt";

const ARCHIVE_EXT: &str = ".tar.gz";
const AGE_ARCHIVE_EXT: &str = ".tar.gz.age";

/// A name the old tool's archives have here: `YYYY-MM-DD_HHMMSS-….tar.gz` (or `.tar.gz.age`).
pub(super) fn is_archive_name(n: &str) -> bool {
    (n.ends_with(ARCHIVE_EXT) || n.ends_with(AGE_ARCHIVE_EXT)) && export_folder_name(n)
}

/// The extension of a view's name.
fn view_ext(view: OldView) -> &'static str {
    match view {
        OldView::Archive { age: false, .. } => ARCHIVE_EXT,
        OldView::Archive { age: true, .. } => AGE_ARCHIVE_EXT,
        _ => "",
    }
}

/// Write the view of `snap` (id `id`) into `opts.dest`.
pub fn old_view(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    opts: &OldViewOptions,
    progress: &dyn Progress,
) -> Result<ExportResult> {
    if opts.keep == Some(0) {
        return Err(Error::Invalid(
            "--keep 0 would remove the new view itself; give 1 or more".into(),
        ));
    }
    if matches!(opts.view, OldView::Archive { age: true, .. }) && opts.encryption.is_none() {
        return Err(Error::Invalid(
            "an encrypted archive needs a passphrase or recipients; nothing was written".into(),
        ));
    }
    let dir = &opts.dest;
    std::fs::create_dir_all(dir).at(dir)?;
    if opts.view == OldView::Incremental {
        let eo = ExportOptions {
            view: View::Incremental {
                dir: dir.clone(),
                keep: opts.keep,
            },
            dry_run: false,
            tz: opts.tz.clone(),
        };
        return incremental(repo, id, snap, dir, opts.keep, &eo, progress);
    }
    let side = records_dir(dir)?;
    let _lock = lock_records(&side)?;
    let mut res = ExportResult {
        cleaned: clean_stale(dir, None, STAGING),
        ..Default::default()
    };
    res.cleaned.extend(clean_stale(dir, None, TMP));
    clean_sidecars(dir);

    let archive = matches!(opts.view, OldView::Archive { .. });
    let stem = folder_name(snap, &opts.tz);
    let ext = view_ext(opts.view);
    let name = unique_name(&stem, ext, |n| taken(dir, &side, n))?;
    res.path = dir.join(&name);
    let plan = full_plan(repo, snap)?;
    res.files = plan.files;
    res.dirs = plan.dirs;
    res.other = plan.other;
    res.bytes = plan.bytes;
    res.errors = plan_errors(&plan);
    if !res.errors.is_empty() {
        return Ok(res);
    }
    let mut files = HashMap::new();
    if !archive {
        for item in &plan.items {
            if let Item::File { rel, data, meta } = item {
                let sf = SidecarFile {
                    size: data.size,
                    mtime_secs: meta.mtime.secs,
                    mtime_nanos: meta.mtime.nanos,
                    content: content_digest(repo, data)?,
                };
                files.insert(crate::format_name(rel), sf);
            }
        }
    }
    let project_key = crate::format_name(&project_name(snap));
    let record = Sidecar {
        format: 1,
        folder: name.clone(),
        project: project_key.clone(),
        snapshot: id.to_hex(),
        time_secs: snap.time.secs,
        time_nanos: snap.time.nanos,
        files,
        archive,
    };
    match opts.view {
        OldView::Folder { sizes, sha } => {
            folder(repo, snap, plan, dir, &name, sizes, sha, &record, progress, &mut res)?
        }
        OldView::Archive { sha, age } => {
            let top = name.strip_suffix(ext).unwrap_or(&name);
            let encryption = if age { opts.encryption.as_ref() } else { None };
            let target = ArchiveTarget {
                dir,
                name: &name,
                top,
                sha,
                encryption,
            };
            archive_view(repo, snap, &plan, &target, &record, progress, &mut res)?
        }
        OldView::Incremental => unreachable!("handled above"),
    }
    if !res.errors.is_empty() {
        return Ok(res);
    }
    if let Some(k) = opts.keep {
        keep_newest(dir, &project_key, k, &mut res.removed, &mut res.errors);
    }
    Ok(res)
}

/// Whether `n` is in use in `dir`: an entry, an archive's checksum, or a record.
fn taken(dir: &Path, side: &Path, n: &str) -> bool {
    exists_in(dir, n) || exists_in(dir, &format!("{n}.sha256")) || exists_in(side, &format!("{n}.json"))
}

/// What a view would be named and which views `keep` would remove (`--dry-run`, when
/// there is no snapshot yet).
#[derive(Debug)]
pub struct OldViewPlan {
    pub path: PathBuf,
    pub removed: Vec<PathBuf>,
}

/// The name a view of a snapshot of `project` (its directory's raw base name) with `note`
/// taken at `time` would get in `opts.dest`, and the views `opts.keep` would remove then.
pub fn plan_old_view(opts: &OldViewOptions, time: &Time, project: &[u8], note: Option<&str>) -> OldViewPlan {
    let dir = &opts.dest;
    let side = dir.join(SIDECAR_DIR);
    let ext = view_ext(opts.view);
    let stem = name_stem(time, project, note, &opts.tz);
    let name = unique_name(&stem, ext, |n| taken(dir, &side, n)).unwrap_or(stem);
    let existing = list_exports(dir, &crate::format_name(project));
    let removed = match opts.keep {
        Some(k) => {
            let n = (existing.len() + 1).saturating_sub(k);
            existing.iter().take(n).map(|s| dir.join(&s.folder)).collect()
        }
        None => Vec::new(),
    };
    OldViewPlan {
        path: dir.join(name),
        removed,
    }
}

/// Write the record (durably), then move `from` into place as `to`; a crash in between
/// leaves a record without its view, which the next run removes.
fn record_then(side: &Path, record: &Sidecar, put: impl FnOnce() -> Result<()>) -> Result<()> {
    let sp = side.join(format!("{}.json", record.folder));
    let tmp = side.join(format!(".{}.json.{}", record.folder, random_hex()));
    let written = serde_json::to_vec(record)
        .map_err(|e| Error::Invalid(format!("export record: {e}")))
        .and_then(|b| {
            let mut f = File::create(&tmp).at(&tmp)?;
            f.write_all(&b).at(&tmp)?;
            f.sync_all().at(&tmp)?;
            std::fs::rename(&tmp, &sp).at(&sp)
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = put() {
        let _ = std::fs::remove_file(&sp);
        return Err(e);
    }
    Ok(())
}

/// A manifest's name bytes: a tab, newline, carriage return or backslash in a name is
/// written `\t`, `\n`, `\r`, `\\` (one line per file, whatever its name).
fn escaped(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    for &b in name {
        match b {
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b => out.push(b),
        }
    }
    out
}

/// The SHA-256 of a file of the snapshot, read from the repository (holes as zeros).
fn file_sha256(repo: &Repository, rel: &[u8], data: &FileData) -> Result<Vec<u8>> {
    let mut h = HoleHasher {
        h: <sha2::Sha256 as sha2::Digest>::new(),
        holes: &data.holes,
        pos: 0,
    };
    let holes: u64 = data.holes.iter().map(|h| h.1).sum();
    let mut got = 0u64;
    for c in repo.chunk_list(&data.content)? {
        let b = repo.read_blob(BlobKind::Data, &BlobId(c.id.0))?;
        if b.len() != c.len as usize {
            return Err(Error::Corrupt(format!(
                "{}: chunk {}: length differs from the file's chunk list",
                restore::display(rel),
                c.id
            )));
        }
        got += b.len() as u64;
        h.update(&b);
    }
    if got != data.size - holes {
        return Err(Error::Corrupt(format!(
            "{}: damaged entry: its chunks do not add up to its size",
            restore::display(rel)
        )));
    }
    Ok(h.finish(data.size))
}

/// The manifests' bytes: `path<TAB>size` lines and `sha256sum` lines for every regular
/// file (each name of a hard-link group), in the snapshot's order.
fn manifests(repo: &Repository, plan: &Plan, sizes: bool, sha: bool) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut by_rel: HashMap<&[u8], (u64, Option<Vec<u8>>)> = HashMap::new();
    let (mut size_lines, mut sha_lines) = (Vec::new(), Vec::new());
    for item in &plan.items {
        let (rel, size, hash) = match item {
            Item::File { rel, data, .. } => {
                let hash = if sha { Some(file_sha256(repo, rel, data)?) } else { None };
                by_rel.insert(rel, (data.size, hash.clone()));
                (rel, data.size, hash)
            }
            Item::HardLink { rel, target, .. } => match by_rel.get(target.as_slice()) {
                Some((size, hash)) => (rel, *size, hash.clone()),
                None => continue,
            },
            _ => continue,
        };
        if sizes {
            size_lines.extend_from_slice(&escaped(rel));
            size_lines.extend_from_slice(format!("\t{size}\n").as_bytes());
        }
        if let Some(h) = hash {
            sha_lines.extend_from_slice(&manifest_line(&h, rel));
        }
    }
    Ok((size_lines, sha_lines))
}

#[allow(clippy::too_many_arguments)]
fn folder(
    repo: &Repository,
    snap: &Snapshot,
    plan: Plan,
    dir: &Path,
    name: &str,
    sizes: bool,
    sha: bool,
    record: &Sidecar,
    progress: &dyn Progress,
    res: &mut ExportResult,
) -> Result<()> {
    for (wanted, m) in [(sizes, SIZES_MANIFEST), (sha, SHA_MANIFEST)] {
        if wanted && plan.items.iter().any(|i| i.rel() == m.as_bytes()) {
            return Err(Error::Invalid(format!(
                "the snapshot has its own {m} at its top, which the manifest would replace in the copy; \
                 rename that file, or leave out the manifest option"
            )));
        }
    }
    let (size_lines, sha_lines) = manifests(repo, &plan, sizes, sha)?;
    let staging = Staging::create(dir, name.as_bytes())?;
    let written = (|| -> Result<()> {
        // The manifests first: the restore then sets the top folder's mode and times last.
        for (wanted, m, bytes) in [(sizes, SIZES_MANIFEST, &size_lines), (sha, SHA_MANIFEST, &sha_lines)] {
            if wanted {
                let p = staging.path.join(m);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&p)
                    .at(&p)?;
                f.write_all(bytes).at(&p)?;
            }
        }
        let ropts = RestoreOptions {
            target: staging.path.clone(),
            ..Default::default()
        };
        let r = restore::execute(repo, snap, plan, true, &ropts, progress)?;
        res.bytes_written = r.bytes_written;
        res.errors = r.errors;
        staging.default_mode(snap)
    })();
    if let Err(e) = written {
        staging.remove();
        return Err(e);
    }
    if !res.errors.is_empty() {
        staging.remove();
        return Ok(());
    }
    if sizes {
        res.manifest = Some(res.path.join(SIZES_MANIFEST));
    }
    if sha {
        res.manifest = Some(res.path.join(SHA_MANIFEST));
    }
    let side = dir.join(SIDECAR_DIR);
    let dest = dir.join(name);
    let mut staging = Some(staging);
    let r = record_then(&side, record, || staging.take().expect("committed once").commit(&dest));
    if let Some(s) = staging {
        s.remove();
    }
    r
}

/// Passes bytes through and hashes them.
struct Sha256Writer<W> {
    inner: W,
    h: sha2::Sha256,
}

impl<W: Write> Write for Sha256Writer<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(b)?;
        sha2::Digest::update(&mut self.h, &b[..k]);
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where an archive view goes and how it is written.
struct ArchiveTarget<'a> {
    dir: &'a Path,
    /// The file's name in `dir`.
    name: &'a str,
    /// The archive's one top folder.
    top: &'a str,
    /// `NAME.sha256` beside it: the checksum of the file as written (encrypted or not).
    sha: bool,
    encryption: Option<&'a crate::seal::ArchiveEncryption>,
}

fn archive_view(
    repo: &Repository,
    snap: &Snapshot,
    plan: &Plan,
    t: &ArchiveTarget,
    record: &Sidecar,
    progress: &dyn Progress,
    res: &mut ExportResult,
) -> Result<()> {
    let (dir, name, top, sha) = (t.dir, t.name, t.top, t.sha);
    let file = dir.join(name);
    let sum_path = dir.join(format!("{name}.sha256"));
    let temp = |n: &str| dir.join(format!(".{}{TMP}{}", &n[..n.len().min(200)], random_hex()));
    let (tmp, sum_tmp) = (temp(name), temp(&format!("{name}.sha256")));
    let create = |p: &Path| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(p)
            .at(p)?;
        // Locked while written, so a later run tells a killed one's leftovers (removed)
        // from a running one's.
        f.try_lock()
            .map_err(|e| Error::io(p, io::Error::other(e.to_string())))?;
        Ok::<File, Error>(f)
    };
    let written = (|| -> Result<()> {
        let out = create(&tmp)?;
        let hashed = Sha256Writer {
            inner: BufWriter::with_capacity(1 << 20, out),
            h: <sha2::Sha256 as sha2::Digest>::new(),
        };
        // File <- hash (of the bytes on disk, encrypted or not) <- count <- age <- gzip <- tar.
        let sealed = crate::seal::Sealed::new(Counting { inner: hashed, n: 0 }, t.encryption)?;
        let enc = Encoder::new(ArchiveFormat::Gzip, sealed).map_err(tar_err)?;
        let root = super::root_meta(snap);
        let enc = write_archive(repo, Some(&root), plan, top.as_bytes(), enc, None, progress, res)?;
        let c = enc.finish().and_then(|s| s.finish()).map_err(tar_err)?;
        res.bytes_written = c.n;
        let hash = sha2::Digest::finalize(c.inner.h).to_vec();
        let f = c
            .inner
            .inner
            .into_inner()
            .map_err(|e| Error::io(&tmp, e.into_error()))?;
        f.sync_all().at(&tmp)?;
        if sha {
            // The old tool's line: the archive's checksum and its name, for `sha256sum -c`
            // run in the destination folder.
            let mut s = create(&sum_tmp)?;
            s.write_all(&manifest_line(&hash, name.as_bytes())).at(&sum_tmp)?;
            s.sync_all().at(&sum_tmp)?;
        }
        record_then(&dir.join(SIDECAR_DIR), record, || {
            rename_new(&tmp, &file)?;
            if sha {
                rename_new(&sum_tmp, &sum_path)?;
            }
            fsync_dir(dir).at(dir)
        })
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&sum_tmp);
        return Err(e);
    }
    if sha {
        res.manifest = Some(sum_path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_manifest_names_stay_on_one_line() {
        assert_eq!(escaped(b"a\tb\nc\\d"), b"a\\tb\\nc\\\\d");
        assert_eq!(escaped(b"plain/name.txt"), b"plain/name.txt");
    }

    #[test]
    fn archive_names() {
        assert!(is_archive_name("2025-01-02_030405-app-x.tar.gz"));
        assert!(is_archive_name("2025-01-02_030405-app-x.tar.gz.age"));
        assert!(!is_archive_name("2025-01-02_030405-app-x.age"));
        assert!(!is_archive_name("2025-01-02_030405-app-x"));
        assert!(!is_archive_name("notes.tar.gz"));
    }
}
