//! A local copy of the tree packs of a remote repository.
//!
//! Every listing, restore, diff and re-backup walks trees one directory at a time, and
//! each tree page is a separate ranged read: on a store a round trip away that is one
//! request per directory, in turn (a restore of 13k files waited 8 s more with 20 ms of
//! added round trip). Tree blobs live in packs of their own, so a whole tree pack is
//! fetched once, checked against its id (the BLAKE3 hash of its bytes), and kept in the
//! cache folder; tree pages are then read from the local copy.
//!
//! Nothing here is trusted more than the store: every blob read from a local copy is still
//! opened and authenticated by the caller, and a copy whose blob fails to open is dropped
//! and the blob read from the store instead ([`PackCache::evict`]). Copies of packs the
//! index no longer lists are removed when a command opens the repository
//! ([`PackCache::remove_unlisted`]). A pack whose bytes do not hash to its id is not kept:
//! its blobs are read one by one from the store as without the cache, so damage is
//! reported per blob exactly as before.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::backend::{Backend, Dir};
use crate::error::{Error, Result};
use crate::id::PackId;

/// Open local copies kept for reuse; more are closed (and reopened on demand).
const OPEN_FILES: usize = 32;

/// Local copies of tree packs, in `<cache>/<repository id>/tree-packs/<pack id>`.
pub struct PackCache {
    dir: PathBuf,
    open: Mutex<HashMap<PackId, Arc<File>>>,
    /// Held while a pack is fetched, so threads needing the same pack wait for one fetch.
    fetching: Mutex<()>,
}

/// Where a blob's sealed bytes came from.
pub enum Sealed {
    /// The local copy of its pack.
    Cached(Vec<u8>),
    /// The store (the pack could not be kept locally).
    Store(Vec<u8>),
}

impl PackCache {
    /// The cache of the repository whose cache folder is `repo_cache`.
    pub fn new(repo_cache: &Path) -> PackCache {
        PackCache {
            dir: repo_cache.join("tree-packs"),
            open: Mutex::new(HashMap::new()),
            fetching: Mutex::new(()),
        }
    }

    fn path(&self, pack: &PackId) -> PathBuf {
        self.dir.join(pack.to_hex())
    }

    fn open_copy(&self, pack: &PackId) -> Option<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = open.get(pack) {
            return Some(f.clone());
        }
        let f = Arc::new(File::open(self.path(pack)).ok()?);
        if open.len() >= OPEN_FILES {
            open.clear();
        }
        open.insert(*pack, f.clone());
        Some(f)
    }

    /// `len` bytes at `offset` of `pack`: from its local copy, fetching the whole pack
    /// first when there is none.
    pub fn read_range(&self, backend: &dyn Backend, pack: &PackId, offset: u64, len: usize) -> Result<Sealed> {
        let path = Dir::Packs.path(&pack.to_hex());
        if let Some(got) = self.read_local(pack, offset, len) {
            return Ok(Sealed::Cached(got));
        }
        {
            let _one = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
            if self.open_copy(pack).is_none() {
                let bytes = backend.read(&path)?;
                if blake3::hash(&bytes).as_bytes() != &pack.0 {
                    tracing::debug!(
                        "{path}: bytes do not hash to its id; its blobs are read from the store one by one"
                    );
                    return backend.read_range(&path, offset, len).map(Sealed::Store);
                }
                if let Err(e) = self.keep(pack, &bytes) {
                    tracing::debug!("could not keep a copy of {path} in {}: {e}", self.dir.display());
                    return slice(&bytes, offset, len, &path).map(Sealed::Cached);
                }
            }
        }
        match self.read_local(pack, offset, len) {
            Some(got) => Ok(Sealed::Cached(got)),
            None => backend.read_range(&path, offset, len).map(Sealed::Store),
        }
    }

    fn read_local(&self, pack: &PackId, offset: u64, len: usize) -> Option<Vec<u8>> {
        let f = self.open_copy(pack)?;
        let mut buf = vec![0; len];
        match f.read_exact_at(&mut buf, offset) {
            Ok(()) => Some(buf),
            Err(_) => {
                self.evict(pack);
                None
            }
        }
    }

    fn keep(&self, pack: &PackId, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
        let res = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            std::fs::rename(&tmp, self.path(pack))
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    /// Drop the local copy of `pack` (one of its blobs did not open from it).
    pub fn evict(&self, pack: &PackId) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(pack);
        let _ = std::fs::remove_file(self.path(pack));
    }

    /// Remove the copies of packs for which `listed` says no, and temporary files left by
    /// a killed fetch. Returns how many files were removed.
    pub fn remove_unlisted(&self, listed: &mut dyn FnMut(&PackId) -> Result<bool>) -> Result<usize> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        let mut removed = 0;
        for e in entries {
            let e = e.map_err(|e| Error::io(&self.dir, e))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            let keep = match name.parse::<PackId>().ok() {
                Some(id) => listed(&id)?,
                // A fetch of another command may be writing it right now: only old ones.
                None if name.starts_with(".tmp-") => e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_none_or(|age| age.as_secs() < 3600),
                None => true,
            };
            if !keep {
                if let Ok(id) = name.parse::<PackId>() {
                    self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                }
                if std::fs::remove_file(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

fn slice(bytes: &[u8], offset: u64, len: usize, path: &str) -> Result<Vec<u8>> {
    usize::try_from(offset)
        .ok()
        .and_then(|o| bytes.get(o..o.checked_add(len)?))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            Error::corrupt(format!(
                "{path}: {} bytes, shorter than expected (truncated?): {len} bytes at offset {offset} wanted",
                bytes.len()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;
    use crate::backend::memory::MemoryBackend;
    use crate::backup::{BackupOptions, backup};
    use crate::format::NodeKind;
    use crate::progress::NoProgress;
    use crate::repo::{Repository, test_init_options};

    /// A tree of folders with enough entries each to be stored as tree pages of their own
    /// (not inline in their parent); the names of every directory, sorted, by walking.
    fn make_tree(root: &Path) {
        for d in ["a", "a/b", "c", "c/d/e"] {
            let dir = root.join(d);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..40 {
                std::fs::write(dir.join(format!("file-with-a-long-name-{i:03}")), format!("{d}{i}")).unwrap();
            }
        }
    }

    /// A backup of [`make_tree`] into `store`, with the cache `cache`; the repository
    /// stays open.
    fn backed_up(t: &Path, store: Arc<dyn Backend>, cache: &Path) -> Repository {
        make_tree(&t.join("src"));
        let mut repo = Repository::init(store, Some(b"pw"), &test_init_options(), cache).unwrap();
        let opts = BackupOptions {
            paths: vec![t.join("src")],
            ..Default::default()
        };
        backup(&mut repo, &opts, &NoProgress, None).unwrap();
        repo
    }

    fn walk(repo: &Repository, kind: &NodeKind, out: &mut Vec<String>) -> Result<()> {
        for n in repo.dir_nodes(kind)? {
            out.push(String::from_utf8_lossy(&n.name).into_owned());
            walk(repo, &n.kind, out)?;
        }
        Ok(())
    }

    fn names(repo: &Repository) -> Result<Vec<String>> {
        let (_, snap) = repo.resolve_snapshot("latest")?;
        let mut out = Vec::new();
        walk(repo, &NodeKind::Dir(snap.tree), &mut out)?;
        Ok(out)
    }

    fn cached(cache: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(cache)
            .unwrap()
            .flat_map(|r| {
                std::fs::read_dir(r.unwrap().path().join("tree-packs"))
                    .into_iter()
                    .flatten()
            })
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// The tree packs the index lists.
    fn tree_packs(repo: &Repository) -> Vec<String> {
        let mut v: Vec<String> = repo
            .index
            .packs()
            .unwrap()
            .into_iter()
            .filter(|(p, _)| {
                let blobs = repo.index.pack_blobs(p).unwrap();
                !blobs.is_empty() && blobs.iter().all(|(_, l)| l.kind == crate::format::BlobKind::Tree)
            })
            .map(|(p, _)| p.to_hex())
            .collect();
        v.sort();
        v
    }

    /// A remote store's tree packs are fetched whole once, then every tree page is read
    /// from the local copy: the walk succeeds even with the store's tree packs gone.
    #[test]
    fn remote_trees_are_read_from_a_verified_local_copy() {
        let t = tempfile::tempdir().unwrap();
        let store = Arc::new(MemoryBackend::new_remote());
        let repo = backed_up(t.path(), store.clone(), &t.path().join("c1"));
        drop(repo);

        let cache = t.path().join("c2");
        let repo = Repository::open(store.clone(), Some(b"pw"), &cache).unwrap();
        let want = names(&repo).unwrap();
        assert!(want.contains(&"e".to_string()) && want.len() > 160, "{want:?}");
        let packs = tree_packs(&repo);
        assert!(!packs.is_empty());
        assert_eq!(cached(&cache), packs, "every tree pack kept, under its id");

        // Only the local copies can answer now.
        let saved: Vec<(String, Vec<u8>)> = packs
            .iter()
            .map(|p| (p.clone(), store.read(&Dir::Packs.path(p)).unwrap()))
            .collect();
        for p in &packs {
            store.delete(&Dir::Packs.path(p)).unwrap();
        }
        let repo = Repository::open(store.clone(), Some(b"pw"), &cache).unwrap();
        assert_eq!(names(&repo).unwrap(), want);

        // A local copy that changed is dropped and the store asked again.
        for (p, b) in &saved {
            store.write_new(&Dir::Packs.path(p), b).unwrap();
        }
        for p in &packs {
            let f = cache.join(hex::encode(repo.repo_id())).join("tree-packs").join(p);
            let mut b = std::fs::read(&f).unwrap();
            let last = b.len() - 40;
            b[last] ^= 1;
            b[20] ^= 1;
            std::fs::write(&f, b).unwrap();
        }
        let repo = Repository::open(store.clone(), Some(b"pw"), &cache).unwrap();
        assert_eq!(names(&repo).unwrap(), want);
        assert_eq!(
            cached(&cache),
            packs,
            "fetched again after the damaged copies were dropped"
        );
    }

    /// A store whose pack does not hash to its id is not copied: blobs are read from it one
    /// by one, so an intact blob of a damaged pack still reads and the damaged one fails.
    #[test]
    fn a_pack_not_matching_its_id_is_not_kept() {
        let t = tempfile::tempdir().unwrap();
        let store = Arc::new(MemoryBackend::new_remote());
        let repo = backed_up(t.path(), store.clone(), &t.path().join("c1"));
        let packs = tree_packs(&repo);
        drop(repo);
        for p in packs {
            let path = Dir::Packs.path(&p);
            let mut b = store.read(&path).unwrap();
            let n = b.len();
            b[n - 1] ^= 1; // the trailer: the blobs themselves are intact
            store.delete(&path).unwrap();
            store.write_new(&path, &b).unwrap();
        }
        let cache = t.path().join("c2");
        let repo = Repository::open(store.clone(), Some(b"pw"), &cache).unwrap();
        assert!(names(&repo).unwrap().len() > 160);
        assert!(cached(&cache).is_empty(), "{:?}", cached(&cache));
    }

    /// Copies of packs the index no longer lists, and old temporary files, are removed when
    /// the repository opens; a local store keeps no copies at all.
    #[test]
    fn unlisted_copies_are_removed_and_local_stores_copy_nothing() {
        let t = tempfile::tempdir().unwrap();
        let store = Arc::new(MemoryBackend::new_remote());
        let cache = t.path().join("c");
        let repo = backed_up(t.path(), store.clone(), &cache);
        names(&repo).unwrap();
        let dir = cache.join(hex::encode(repo.repo_id())).join("tree-packs");
        let stray = dir.join(hex::encode([7u8; 32]));
        std::fs::write(&stray, b"x").unwrap();
        let young = dir.join(".tmp-0000000000000001");
        std::fs::write(&young, b"x").unwrap();
        let old = dir.join(".tmp-0000000000000002");
        std::fs::write(&old, b"x").unwrap();
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        drop(repo);
        let repo = Repository::open(store.clone(), Some(b"pw"), &cache).unwrap();
        assert!(!stray.exists() && !old.exists() && young.exists());
        let kept: Vec<String> = cached(&cache).into_iter().filter(|n| !n.starts_with('.')).collect();
        assert_eq!(kept, tree_packs(&repo));

        let t = tempfile::tempdir().unwrap();
        let cache = t.path().join("lc");
        let repo = backed_up(t.path(), Arc::new(LocalBackend::new(t.path().join("local"))), &cache);
        names(&repo).unwrap();
        assert!(cached(&cache).is_empty());
    }
}
