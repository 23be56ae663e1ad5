//! A fault-injecting wrapper: every write after the first `ok_writes` fails, as if the
//! process died or the disk filled at that moment. Used by crash-ordering tests.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Backend, CreateIfAbsent, Dir, ObjectInfo, Written};
use crate::error::{Error, Result};

pub struct FailAfter<B> {
    inner: B,
    ok_writes: usize,
    writes: AtomicUsize,
}

impl<B: Backend> FailAfter<B> {
    pub fn new(inner: B, ok_writes: usize) -> Self {
        FailAfter {
            inner,
            ok_writes,
            writes: AtomicUsize::new(0),
        }
    }
}

impl<B: Backend> Backend for FailAfter<B> {
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
        if self.writes.fetch_add(1, Ordering::SeqCst) >= self.ok_writes {
            return Err(Error::io(
                path,
                std::io::Error::other("injected failure: no space left on device"),
            ));
        }
        self.inner.write_new(path, bytes)
    }
    fn create_if_absent(&self) -> CreateIfAbsent {
        self.inner.create_if_absent()
    }
    fn delete(&self, path: &str) -> Result<()> {
        self.inner.delete(path)
    }
    fn exists(&self, path: &str) -> Result<bool> {
        self.inner.exists(path)
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    fn remove_stale_temp(&self, older_than: std::time::Duration) -> Result<Vec<String>> {
        self.inner.remove_stale_temp(older_than)
    }
    fn connections(&self) -> usize {
        self.inner.connections()
    }
    fn remote(&self) -> bool {
        self.inner.remote()
    }
}
