//! An in-memory store: the reference the conformance suite holds every backend to, and a
//! fast store for tests of the layers above.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Backend, Dir, ObjectInfo, Written};
use crate::error::{Error, Result, StorageKind};

#[derive(Default)]
pub struct MemoryBackend {
    objects: Mutex<BTreeMap<String, (Vec<u8>, i64)>>,
    created: Mutex<bool>,
    remote: bool,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// A memory store that reports itself [`remote`](Backend::remote), so tests reach the
    /// code paths of network stores.
    pub fn new_remote() -> Self {
        MemoryBackend {
            remote: true,
            ..Self::default()
        }
    }

    fn not_found(path: &str) -> Error {
        Error::Storage {
            kind: StorageKind::NotFound,
            location: format!("memory:{path}"),
            message: "no such object".into(),
        }
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Vec<u8>, i64)>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory:".into()
    }

    fn remote(&self) -> bool {
        self.remote
    }

    fn list(&self, dir: Dir) -> Result<Vec<(String, u64)>> {
        Ok(self.list_info(dir)?.into_iter().map(|o| (o.name, o.size)).collect())
    }

    fn list_info(&self, dir: Dir) -> Result<Vec<ObjectInfo>> {
        let prefix = format!("{}/", dir.name());
        Ok(self
            .objects()
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, (v, t))| {
                let name = k.rsplit('/').next()?.to_string();
                Some(ObjectInfo {
                    name,
                    size: v.len() as u64,
                    modified_ns: Some(*t),
                })
            })
            .collect())
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.objects()
            .get(path)
            .map(|o| o.0.clone())
            .ok_or_else(|| Self::not_found(path))
    }

    fn read_range(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let objects = self.objects();
        let o = objects.get(path).ok_or_else(|| Self::not_found(path))?;
        o.0.get(offset as usize..offset as usize + len)
            .map(|b| b.to_vec())
            .ok_or_else(|| Error::corrupt(format!("memory:{path}: shorter than expected (truncated?)")))
    }

    fn size(&self, path: &str) -> Result<u64> {
        self.objects()
            .get(path)
            .map(|o| o.0.len() as u64)
            .ok_or_else(|| Self::not_found(path))
    }

    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<Written> {
        let mut objects = self.objects();
        if objects.contains_key(path) {
            return Ok(Written::AlreadyThere);
        }
        objects.insert(
            path.to_string(),
            (bytes.to_vec(), jiff::Timestamp::now().as_nanosecond() as i64),
        );
        Ok(Written::New)
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.objects().remove(path);
        Ok(())
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.objects().contains_key(path))
    }

    fn create(&self) -> Result<()> {
        let mut created = self.created.lock().unwrap_or_else(|p| p.into_inner());
        if *created || !self.objects().is_empty() {
            return Err(Error::Invalid(
                "memory: not empty: a new repository needs an empty store".into(),
            ));
        }
        *created = true;
        Ok(())
    }
}
