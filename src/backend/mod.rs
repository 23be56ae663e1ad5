//! Storage backends: dumb byte stores behind one small trait. This module imports
//! nothing else of the crate but its error type, so backends stay swappable.

pub mod append_only;
pub mod cleanup;
pub mod fault;
pub mod local;
pub mod memory;
pub mod plugin;
pub mod retry;
pub(crate) mod runtime;
pub mod s3;
mod s3_bucket;
pub mod sftp;

use std::time::Duration;

use crate::error::{Error, Result};

/// Names of temp files of writes in progress (`.tmp-` and 16 hex digits, format-spec §14):
/// listings skip names that start with `.`.
pub const TEMP_PREFIX: &str = ".tmp-";

/// How long a request to a remote store may go without progress (no answer, no byte
/// moved) before it is abandoned and, being transient, tried again.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The top-level folders of a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Keys,
    Packs,
    Index,
    Snapshots,
    Condemned,
    Locks,
    /// Recovery shards over groups of packs (format-spec §20); absent from repositories
    /// made before it, which then have none.
    Parity,
}

impl Dir {
    pub const ALL: [Dir; 7] = [
        Dir::Keys,
        Dir::Packs,
        Dir::Index,
        Dir::Snapshots,
        Dir::Condemned,
        Dir::Locks,
        Dir::Parity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dir::Keys => "keys",
            Dir::Packs => "packs",
            Dir::Index => "index",
            Dir::Snapshots => "snapshots",
            Dir::Condemned => "condemned",
            Dir::Locks => "locks",
            Dir::Parity => "parity",
        }
    }

    /// Path of an object inside the repository. Packs are fanned out by their first
    /// two hex digits so no directory grows too large.
    pub fn path(self, name: &str) -> String {
        match self {
            Dir::Packs => format!("packs/{}/{}", &name[..2.min(name.len())], name),
            d => format!("{}/{}", d.name(), name),
        }
    }
}

/// Outcome of a conditional write.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    New,
    /// An object with that name was already there; nothing was changed.
    AlreadyThere,
}

/// A new object written piece by piece ([`Backend::write_streamed`]): it is stored only by
/// [`commit`](Self::commit), whole and durable; dropped before that, it leaves nothing.
pub trait NewObject: Send {
    /// Append bytes.
    fn write(&mut self, bytes: &[u8]) -> Result<()>;
    /// Store the bytes written as `path`, durably, unless an object of that name exists
    /// (then nothing changes): [`Backend::write_new`] of the same bytes.
    fn commit(self: Box<Self>, path: &str) -> Result<Written>;
}

/// What [`Backend::write_new`] does when an object of that name exists, as the store
/// tells it (the conformance suite holds each backend to what it declares).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateIfAbsent {
    /// Never replaced, not even by a writer racing this one: the store itself refuses an
    /// existing name (a rename or link that does not replace, a lock held, a conditional
    /// request the store is known to honour).
    Atomic,
    /// The request carries the condition (S3 `If-None-Match: *`): atomic where the store
    /// honours it (AWS, MinIO, moto); a store that ignores it (`rclone serve s3`) keeps the
    /// last writer's bytes. `config` and key files are looked for first, so only a writer
    /// racing another can replace one of those there.
    Requested,
    /// The store has no such condition: the name is looked for first, so an existing object
    /// is kept, but a writer racing another can replace one. Names other than `config` and
    /// key files are content hashes or random, so what replaces such an object holds the
    /// same plaintext.
    Checked,
}

/// An object as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
    /// When the store last wrote the object, on the store's own clock (ns since the
    /// epoch), if the store tells. Comparing two such times needs no agreement between
    /// the clients' clocks.
    pub modified_ns: Option<i64>,
}

/// A repository store. Object names are lowercase hex (and `config`); writes never
/// overwrite (as far as [`create_if_absent`](Self::create_if_absent) says) and are durable
/// when they return. A reader never sees part of an object: it is absent or whole.
pub trait Backend: Send + Sync {
    /// Human-readable location, for messages.
    fn location(&self) -> String;
    /// Names and sizes of the objects in `dir`.
    fn list(&self, dir: Dir) -> Result<Vec<(String, u64)>>;
    /// [`list`](Self::list) with each object's modification time on the store's clock.
    fn list_info(&self, dir: Dir) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .list(dir)?
            .into_iter()
            .map(|(name, size)| ObjectInfo {
                name,
                size,
                modified_ns: None,
            })
            .collect())
    }
    fn read(&self, path: &str) -> Result<Vec<u8>>;
    /// Read a whole object of at most `max` bytes: a larger one is refused before it is
    /// read (a hostile store must not make a client allocate without bound), and so is
    /// anything that is not a plain stored object (a symlink, a device, a folder).
    fn read_object(&self, path: &str, max: usize) -> Result<Vec<u8>> {
        let size = self.size(path)?;
        if size > max as u64 {
            return Err(Error::corrupt(format!(
                "{path}: {size} bytes, more than the {max} an object of its kind may have"
            )));
        }
        let b = self.read(path)?;
        if b.len() > max {
            return Err(Error::corrupt(format!("{path}: grew past {max} bytes while read")));
        }
        Ok(b)
    }
    /// [`read`](Self::read) into `buf` (replaced), reusing its allocation.
    fn read_into(&self, path: &str, buf: &mut Vec<u8>) -> Result<()> {
        *buf = self.read(path)?;
        Ok(())
    }
    /// `len` bytes at `offset`. Fewer bytes there (an object cut short, an offset past its
    /// end) is a *corrupt* error saying "shorter than expected (truncated?)"; a missing
    /// object is not found.
    fn read_range(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>>;
    /// [`read_range`](Self::read_range) into `buf` (replaced): a loop of reads reuses one
    /// allocation instead of faulting in fresh pages for each.
    fn read_range_into(&self, path: &str, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        *buf = self.read_range(path, offset, len)?;
        Ok(())
    }
    fn size(&self, path: &str) -> Result<u64>;
    /// Write an object only if no object of that name exists, durably.
    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<Written>;
    /// Start a new object of `dir` that is written as it is made, when this store can
    /// take one that way at no extra cost (a local folder): a pack then never sits whole
    /// in memory. `None`: the store cannot, use [`write_new`](Self::write_new). The same
    /// guarantees as `write_new` hold at [`NewObject::commit`].
    fn write_streamed(&self, _dir: Dir) -> Option<Result<Box<dyn NewObject>>> {
        None
    }
    /// What [`write_new`](Self::write_new) guarantees for an existing name on this store.
    fn create_if_absent(&self) -> CreateIfAbsent {
        CreateIfAbsent::Atomic
    }
    /// Remove an object; one that does not exist counts as removed (`Ok`).
    fn delete(&self, path: &str) -> Result<()>;
    fn exists(&self, path: &str) -> Result<bool>;
    /// Create the directory layout of a new repository.
    fn create(&self) -> Result<()>;
    /// Remove the temporary files that writes killed mid-way left behind, when untouched
    /// for at least `older_than`; returns their paths. A write in progress must never be
    /// that old (`repo::TEMP_FILE_MAX_AGE`). The default removes nothing: right for a store
    /// that writes objects atomically and so has no temporary files.
    fn remove_stale_temp(&self, _older_than: Duration) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// How many writes may usefully run at once (pack uploads beside a backup): 1 for a
    /// local disk, more for a store whose requests wait on the network.
    fn connections(&self) -> usize {
        1
    }

    /// Whether each request waits on a network round trip (S3, SFTP, rclone): tree packs
    /// are then read whole and kept in the local cache ([`crate::pack_cache`]), and
    /// restores read several packs at once.
    fn remote(&self) -> bool {
        false
    }

    /// Whether this store is open append-only ([`append_only::AppendOnly`]): nothing but
    /// lock files is deleted through it.
    fn append_only(&self) -> bool {
        false
    }
}
