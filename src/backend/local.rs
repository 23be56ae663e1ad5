//! Local directory backend: temp file, fsync, rename without replacing, directory fsync.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime};

use super::{Backend, Dir, NewObject, ObjectInfo, TEMP_PREFIX, Written, cleanup};
use crate::error::{Error, IoContext, Result};
use crate::platform;

pub struct LocalBackend {
    root: PathBuf,
    /// Recently read objects kept open: a backup reads thousands of tree blobs from a few
    /// packs, and a restore many blobs per pack. Objects are immutable and content-named,
    /// so a descriptor never shows other bytes than its name promises.
    open: Mutex<HashMap<String, Arc<File>>>,
}

const OPEN_FILES: usize = 64;

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend {
            root: root.into(),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn open_cached(&self, path: &str) -> std::io::Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = open.get(path) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(self.full(path))?);
        if open.len() >= OPEN_FILES {
            open.clear();
        }
        open.insert(path.to_string(), f.clone());
        Ok(f)
    }

    fn full(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Permission bits for new files and folders of a repository at `root`: 0600 and 0700, or,
/// when its `config` exists, `config`'s permission bits (always with the owner's read and
/// write) for files and those plus the matching execute bits for folders, so a repository
/// shared with a group on purpose (`chmod -R g+rX`) stays shared.
fn modes(root: &Path) -> (u32, u32) {
    use std::os::unix::fs::PermissionsExt;
    let file = match fs::metadata(root.join("config")) {
        Ok(m) if m.is_file() => (m.permissions().mode() & 0o777) | 0o600,
        _ => 0o600,
    };
    (file, file | ((file & 0o444) >> 2))
}

/// Set exact permission bits on a file or folder this process just created, whatever the
/// umask took away. Best effort: a file system without Unix modes (vfat, exfat) refuses a
/// change, and what the umask left is never more than was asked for.
fn set_mode(f: &File, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = f.set_permissions(fs::Permissions::from_mode(mode));
}

/// `create_dir_all` with permission bits `mode` for every folder it creates (existing
/// ones keep theirs). Returns whether it created any.
fn create_dirs(dir: &Path, mode: u32) -> Result<bool> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(false),
        Ok(_) => return Err(Error::io(dir, std::io::Error::from(ErrorKind::AlreadyExists))),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(dir, e)),
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dirs(parent, mode)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            if let Ok(d) = File::open(dir) {
                set_mode(&d, mode);
            }
            Ok(true)
        }
        // Made by another process meanwhile (two backups creating one pack folder).
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => Err(Error::io(dir, e)),
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, dir: Dir) -> Result<Vec<(String, u64)>> {
        Ok(self.list_info(dir)?.into_iter().map(|o| (o.name, o.size)).collect())
    }

    fn list_info(&self, dir: Dir) -> Result<Vec<ObjectInfo>> {
        let base = self.root.join(dir.name());
        let mut out = Vec::new();
        let mut dirs = vec![base.clone()];
        if dir == Dir::Packs {
            dirs.clear();
            match fs::read_dir(&base) {
                Ok(rd) => {
                    for e in rd {
                        let e = e.at(&base)?;
                        if e.file_type().at(e.path())?.is_dir() {
                            dirs.push(e.path());
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(base, e)),
            }
        }
        for d in dirs {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(d, e)),
            };
            for e in rd {
                let e = e.at(&d)?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue; // temp files of writes in progress
                }
                let md = match e.metadata() {
                    Ok(m) => m,
                    Err(err) if err.kind() == ErrorKind::NotFound => continue,
                    Err(err) => return Err(Error::io(e.path(), err)),
                };
                if md.is_file() {
                    let modified_ns = md
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_nanos() as i64);
                    out.push(ObjectInfo {
                        name,
                        size: md.len(),
                        modified_ns,
                    });
                }
            }
        }
        Ok(out)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        let p = self.full(path);
        fs::read(&p).at(p)
    }

    fn read_object(&self, path: &str, max: usize) -> Result<Vec<u8>> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let p = self.full(path);
        // Never through a symlink, and never blocking on a FIFO planted in its place.
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
            .open(&p)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => Error::corrupt(format!("{}: a symlink where an object should be", p.display())),
                _ => Error::io(&p, e),
            })?;
        let md = f.metadata().at(&p)?;
        if !md.is_file() {
            return Err(Error::corrupt(format!("{}: not a regular file", p.display())));
        }
        if md.len() > max as u64 {
            return Err(Error::corrupt(format!(
                "{}: {} bytes, more than the {max} an object of its kind may have",
                p.display(),
                md.len()
            )));
        }
        let mut out = Vec::with_capacity(md.len() as usize);
        (&mut f).take(max as u64 + 1).read_to_end(&mut out).at(&p)?;
        if out.len() > max {
            return Err(Error::corrupt(format!(
                "{}: grew past {max} bytes while read",
                p.display()
            )));
        }
        Ok(out)
    }

    fn read_into(&self, path: &str, buf: &mut Vec<u8>) -> Result<()> {
        use std::io::Read;
        let p = self.full(path);
        buf.clear();
        // `read_to_end` fills the spare capacity without zeroing it first.
        File::open(&p)
            .and_then(|mut f| {
                f.read_to_end(buf)?;
                // Whole objects are read to be checked or repaired, once each.
                platform::drop_cached(&f, 0, 0);
                Ok(())
            })
            .at(p)?;
        Ok(())
    }

    fn read_range(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_range_into(path, offset, len, &mut buf)?;
        Ok(buf)
    }

    fn read_range_into(&self, path: &str, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let p = self.full(path);
        let f = self.open_cached(path).at(&p)?;
        // A reused buffer is overwritten whole below, so only what it grows by is zeroed:
        // zeroing every byte first was a `memset` of all that restore reads.
        buf.truncate(len);
        buf.resize(len, 0);
        f.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                Error::corrupt(format!("{}: shorter than expected (truncated?)", p.display()))
            } else {
                Error::io(&p, e)
            }
        })?;
        if len >= BULK_READ {
            platform::drop_cached(&f, offset, len as u64);
        }
        Ok(())
    }

    fn size(&self, path: &str) -> Result<u64> {
        let p = self.full(path);
        Ok(fs::metadata(&p).at(&p)?.len())
    }

    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<Written> {
        let p = self.full(path);
        let mut o = Box::new(LocalNewObject::start(
            self,
            p.parent().expect("object paths have a parent"),
        )?);
        o.write(bytes)?;
        o.commit(path)
    }

    fn write_streamed(&self, dir: Dir) -> Option<Result<Box<dyn NewObject>>> {
        Some(LocalNewObject::start(self, &self.root.join(dir.name())).map(|o| Box::new(o) as Box<dyn NewObject>))
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(path);
        let p = self.full(path);
        match fs::remove_file(&p) {
            Ok(()) => fsync_dir(p.parent().expect("object paths have a parent")),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(p, e)),
        }
    }

    fn exists(&self, path: &str) -> Result<bool> {
        let p = self.full(path);
        match fs::symlink_metadata(&p) {
            Ok(_) => Ok(true),
            // A file where a folder should be: nothing can exist below it.
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(false),
            Err(e) => Err(Error::io(p, e)),
        }
    }

    /// The repository root, its folders and `packs/<xx>/`: every place `write_new` puts a
    /// temp file.
    fn remove_stale_temp(&self, older_than: Duration) -> Result<Vec<String>> {
        let mut dirs = vec![self.root.clone()];
        dirs.extend(Dir::ALL.iter().map(|d| self.root.join(d.name())));
        let packs = self.root.join(Dir::Packs.name());
        match fs::read_dir(&packs) {
            Ok(rd) => {
                for e in rd {
                    let e = e.at(&packs)?;
                    if e.file_type().at(e.path())?.is_dir() {
                        dirs.push(e.path());
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(packs, e)),
        }
        let now = SystemTime::now();
        let mut removed = Vec::new();
        for d in dirs {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(d, e)),
            };
            for e in rd {
                let e = e.at(&d)?;
                if !e.file_name().as_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
                    continue;
                }
                let md = match e.metadata() {
                    Ok(m) => m,
                    Err(err) if err.kind() == ErrorKind::NotFound => continue,
                    Err(err) => return Err(Error::io(e.path(), err)),
                };
                let age = md
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or(Duration::ZERO);
                if !md.is_file() || age < older_than {
                    continue;
                }
                match fs::remove_file(e.path()) {
                    Ok(()) => removed.push(
                        e.path()
                            .strip_prefix(&self.root)
                            .unwrap_or(&e.path())
                            .display()
                            .to_string(),
                    ),
                    Err(err) if err.kind() == ErrorKind::NotFound => {}
                    Err(err) => return Err(Error::io(e.path(), err)),
                }
            }
        }
        Ok(removed)
    }

    fn create(&self) -> Result<()> {
        // A new repository gets a folder of its own: never one holding other files, nor
        // the remains of an old repository (whose keys and packs would mix with the new).
        match fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => {
                let mut names: Vec<String> = fs::read_dir(&self.root)
                    .at(&self.root)?
                    .take(4)
                    .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect::<std::io::Result<_>>()
                    .at(&self.root)?;
                if !names.is_empty() {
                    names.sort();
                    if names.len() > 3 {
                        names[3] = "…".into();
                    }
                    return Err(Error::Invalid(format!(
                        "{} is not empty (it holds {}): a new repository needs a new or empty \
                         directory; choose another path",
                        self.root.display(),
                        names.join(", ")
                    )));
                }
            }
            Ok(_) => {
                return Err(Error::Invalid(format!(
                    "{} exists and is not a directory: a new repository needs a new or empty directory",
                    self.root.display()
                )));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&self.root, e)),
        }
        // Private folders: 0700 (no config exists yet; an existing empty root keeps its mode).
        let (_, dir_mode) = modes(&self.root);
        create_dirs(&self.root, dir_mode)?;
        for d in Dir::ALL {
            create_dirs(&self.root.join(d.name()), dir_mode)?;
        }
        fsync_dir(&self.root)?;
        if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent)?;
        }
        Ok(())
    }
}

/// Ranges at least this long are bulk reads of file data (restore reads packs in spans of
/// many blobs, each once): the page cache that held them is given back at once
/// ([`platform::drop_cached`]), so reading a repository does not push the user's files
/// out of memory and the next reads reuse those pages. Shorter ranges are metadata (tree
/// blobs) that `ls`, `find` or `mount` may read again, and keep their cache.
const BULK_READ: usize = 1024 * 1024;

/// A new object of a local store: a temporary file (registered, so a signal removes it,
/// and `remove_stale_temp` finds it after a crash) in the object's folder (`write_new`) or
/// in the top folder of its kind (`write_streamed`: the name is known only at the end),
/// made durable and renamed to its name by `commit`, without replacing an existing object.
struct LocalNewObject {
    file: Option<File>,
    tmp: PathBuf,
    root: PathBuf,
    dir_mode: u32,
    /// Renamed to its object name: no temporary file is left to remove.
    stored: bool,
}

impl LocalNewObject {
    /// A temporary file in `folder` (made, with its parent synced, when missing).
    fn start(b: &LocalBackend, folder: &Path) -> Result<LocalNewObject> {
        use std::os::unix::fs::OpenOptionsExt;
        let (file_mode, dir_mode) = modes(&b.root);
        if create_dirs(folder, dir_mode)?
            && let Some(parent) = folder.parent()
        {
            fsync_dir(parent)?;
        }
        let tmp = folder.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
        // Registered, so a process stopped by a signal removes it (`cleanup`); never
        // readable by others, not even while being written.
        let file = cleanup::create_temp(&tmp, || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(file_mode)
                .open(&tmp)
        })
        .at(&tmp)?;
        set_mode(&file, file_mode);
        Ok(LocalNewObject {
            file: Some(file),
            tmp,
            root: b.root.clone(),
            dir_mode,
            stored: false,
        })
    }
}

impl NewObject for LocalNewObject {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let f = self.file.as_mut().expect("written only before commit");
        f.write_all(bytes).at(&self.tmp)
    }

    fn commit(mut self: Box<Self>, path: &str) -> Result<Written> {
        let f = self.file.take().expect("committed once");
        f.sync_all().at(&self.tmp)?;
        // Written and durable: its pages are clean, and nothing reads an object just
        // written, so they go back for the next ones to use.
        platform::drop_cached(&f, 0, 0);
        drop(f);
        let p = self.root.join(path);
        let dir = p.parent().expect("object paths have a parent").to_path_buf();
        if create_dirs(&dir, self.dir_mode)?
            && let Some(pp) = dir.parent()
        {
            fsync_dir(pp)?;
        }
        let w = match rustix::fs::renameat_with(
            rustix::fs::CWD,
            &self.tmp,
            rustix::fs::CWD,
            &p,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => Written::New,
            Err(rustix::io::Errno::EXIST) => Written::AlreadyThere,
            Err(e) => return Err(Error::io(&p, e.into())),
        };
        if w == Written::New {
            self.stored = true;
            cleanup::forget_temp(&self.tmp);
            fsync_dir(&dir)?;
            let from = self.tmp.parent().expect("a temporary file has a folder");
            if from != dir {
                fsync_dir(from)?;
            }
        }
        Ok(w)
    }
}

impl Drop for LocalNewObject {
    /// Not committed (an error, a dry end), or committed onto an existing object: the
    /// temporary file goes. After a rename it is gone already.
    fn drop(&mut self) {
        self.file = None;
        if !self.stored {
            let _ = fs::remove_file(&self.tmp);
            cleanup::forget_temp(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `create` takes a new or empty directory, and refuses anything else untouched.
    #[test]
    fn create_needs_a_new_or_empty_directory() {
        let t = tempfile::tempdir().unwrap();
        LocalBackend::new(t.path().join("new")).create().unwrap();
        fs::create_dir(t.path().join("empty")).unwrap();
        LocalBackend::new(t.path().join("empty")).create().unwrap();
        fs::create_dir_all(t.path().join("old/keys")).unwrap();
        let e = LocalBackend::new(t.path().join("old")).create().unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        assert!(!t.path().join("old/packs").exists());
        fs::write(t.path().join("file"), b"x").unwrap();
        let e = LocalBackend::new(t.path().join("file")).create().unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
    }

    #[test]
    fn conformance() {
        let t = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(t.path().join("r"));
        b.create().unwrap();
        assert_eq!(b.write_new("config", b"abc").unwrap(), Written::New);
        assert_eq!(b.write_new("config", b"xyz").unwrap(), Written::AlreadyThere);
        assert_eq!(b.read("config").unwrap(), b"abc");
        let name = "ab".repeat(32);
        b.write_new(&Dir::Packs.path(&name), b"0123456789").unwrap();
        assert_eq!(b.list(Dir::Packs).unwrap(), vec![(name.clone(), 10)]);
        assert_eq!(b.read_range(&Dir::Packs.path(&name), 2, 3).unwrap(), b"234");
        assert!(b.read_range(&Dir::Packs.path(&name), 8, 5).is_err());
        b.delete(&Dir::Packs.path(&name)).unwrap();
        assert!(b.list(Dir::Packs).unwrap().is_empty());
        assert!(!b.exists(&Dir::Packs.path(&name)).unwrap());
    }

    #[test]
    fn temp_files_of_killed_writes_are_removed_when_old_enough() {
        let t = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(t.path().join("r"));
        b.create().unwrap();
        let day = Duration::from_secs(86_400);
        let put = |rel: &str, age: Duration| {
            let p = t.path().join("r").join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            let f = File::create(&p).unwrap();
            f.set_modified(SystemTime::now() - age).unwrap();
        };
        put("packs/ab/.tmp-00000000000000ab", 2 * day);
        put("snapshots/.tmp-0000000000000001", 2 * day);
        put(".tmp-0000000000000002", 2 * day);
        put("index/.tmp-0000000000000003", Duration::from_secs(60));
        put(&Dir::Packs.path(&"ab".repeat(32)), 2 * day);
        put("packs/ab/.other", 2 * day);
        let mut removed = b.remove_stale_temp(day).unwrap();
        removed.sort();
        assert_eq!(
            removed,
            [
                ".tmp-0000000000000002",
                "packs/ab/.tmp-00000000000000ab",
                "snapshots/.tmp-0000000000000001"
            ]
        );
        for kept in ["index/.tmp-0000000000000003", "packs/ab/.other"] {
            assert!(t.path().join("r").join(kept).exists(), "{kept}");
        }
        assert_eq!(b.list(Dir::Packs).unwrap().len(), 1);
        // A write leaves no temp file, and none stays registered for a signal's clean-up.
        b.write_new("index/x", b"abc").unwrap();
        assert_eq!(
            b.remove_stale_temp(Duration::ZERO).unwrap(),
            ["index/.tmp-0000000000000003"]
        );
    }

    #[test]
    fn a_streamed_object_is_stored_whole_at_commit_and_never_replaces() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("r");
        let b = LocalBackend::new(&root);
        b.create().unwrap();
        let name = Dir::Packs.path(&"cd".repeat(32));
        let mut o = b.write_streamed(Dir::Packs).unwrap().unwrap();
        o.write(b"0123").unwrap();
        o.write(b"456789").unwrap();
        // Nothing under the object's name before the commit.
        assert!(!b.exists(&name).unwrap());
        assert!(b.list(Dir::Packs).unwrap().is_empty());
        assert_eq!(o.commit(&name).unwrap(), Written::New);
        assert_eq!(b.read(&name).unwrap(), b"0123456789");
        // A second object of the same name leaves the first alone and no temporary file.
        let mut o = b.write_streamed(Dir::Packs).unwrap().unwrap();
        o.write(b"other").unwrap();
        assert_eq!(o.commit(&name).unwrap(), Written::AlreadyThere);
        assert_eq!(b.read(&name).unwrap(), b"0123456789");
        // Dropped before its commit (a failed backup): nothing is left.
        let mut o = b.write_streamed(Dir::Packs).unwrap().unwrap();
        o.write(b"half a pack").unwrap();
        drop(o);
        assert!(b.remove_stale_temp(Duration::ZERO).unwrap().is_empty());
        let left: Vec<_> = fs::read_dir(root.join("packs"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["cd"]);
    }
}
