//! Append-only use: a store through which this client backs up and reads but never deletes
//! or replaces anything but its own lock files (README, "Append-only repositories").
//!
//! This guards against mistakes and scripts, not against a compromised client, which can
//! simply not use it: the guarantee that matters is the store's own refusal to delete
//! (an S3 bucket policy or object lock, an SFTP account that cannot remove files). The
//! wrapper makes every command behave well on such a store, and refuses deletions before
//! the store has to.

use std::sync::Arc;

use super::{Backend, CreateIfAbsent, Dir, NewObject, ObjectInfo, Written};
use crate::error::{Error, Result};

/// A store opened append-only: `delete` refuses every object but lock files; everything
/// else passes through.
pub struct AppendOnly {
    inner: Arc<dyn Backend>,
}

impl AppendOnly {
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        AppendOnly { inner }
    }
}

impl Backend for AppendOnly {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn list(&self, dir: Dir) -> Result<Vec<(String, u64)>> {
        self.inner.list(dir)
    }
    fn list_info(&self, dir: Dir) -> Result<Vec<ObjectInfo>> {
        self.inner.list_info(dir)
    }
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn read_object(&self, path: &str, max: usize) -> Result<Vec<u8>> {
        self.inner.read_object(path, max)
    }
    fn read_into(&self, path: &str, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.read_into(path, buf)
    }
    fn read_range(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.inner.read_range(path, offset, len)
    }
    fn read_range_into(&self, path: &str, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.read_range_into(path, offset, len, buf)
    }
    fn size(&self, path: &str) -> Result<u64> {
        self.inner.size(path)
    }
    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<Written> {
        self.inner.write_new(path, bytes)
    }
    fn write_streamed(&self, dir: Dir) -> Option<Result<Box<dyn NewObject>>> {
        self.inner.write_streamed(dir)
    }
    fn create_if_absent(&self) -> CreateIfAbsent {
        self.inner.create_if_absent()
    }
    fn delete(&self, path: &str) -> Result<()> {
        if path.starts_with(&format!("{}/", Dir::Locks.name())) {
            return self.inner.delete(path);
        }
        Err(Error::AppendOnly(format!(
            "{path} was not deleted: the repository is open append-only"
        )))
    }
    fn exists(&self, path: &str) -> Result<bool> {
        self.inner.exists(path)
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    /// Unfinished writes are left too: a store that refuses deletions would refuse these.
    fn remove_stale_temp(&self, _older_than: std::time::Duration) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn connections(&self) -> usize {
        self.inner.connections()
    }
    fn remote(&self) -> bool {
        self.inner.remote()
    }
    fn append_only(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;

    #[test]
    fn only_lock_files_are_deleted() {
        let inner: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        inner.create().unwrap();
        let store = AppendOnly::new(inner.clone());
        for p in ["locks/aa", "snapshots/bb", "index/cc", "packs/dd/dd00", "keys/ee"] {
            store.write_new(p, b"x").unwrap();
        }
        store.delete("locks/aa").unwrap();
        assert!(!inner.exists("locks/aa").unwrap());
        for p in ["snapshots/bb", "index/cc", "packs/dd/dd00", "keys/ee", "locks"] {
            let e = store.delete(p).unwrap_err();
            assert!(matches!(e, Error::AppendOnly(_)), "{p}: {e}");
            if p != "locks" {
                assert!(inner.exists(p).unwrap(), "{p}");
            }
        }
        assert!(store.append_only() && !inner.append_only());
    }
}
