//! Opening, creating and unlocking a repository; it owns the backend, the keys and the
//! index cache, and offers typed reads of blobs, trees and snapshots.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::{Backend, Dir, Written};
use crate::blob;
use crate::chunker::{Chunker, ChunkerParams, FileChunkers};
use crate::crypto::{Cipher, KdfParams, Keys, random_bytes};
use crate::error::{Error, Result};
use crate::format::{
    self, BlobKind, ChunkPage, ChunkRef, Config, Content, IndexDelta, KeyFile, Kind, Node, NodeKind, Snapshot,
    Tombstone, Tree,
};
use crate::id::*;
use crate::index::{Index, Location};
use crate::pack_cache::{PackCache, Sealed};
use crate::trust::{Pin, TrustStore};
use zeroize::Zeroizing;

pub use crate::lock::{LockGuard, LockMode};

pub struct Repository {
    pub backend: Arc<dyn Backend>,
    pub config: Config,
    pub keys: Keys,
    pub cipher: Cipher,
    pub index: Index,
    /// Repository objects that could not be read while syncing the index cache (they are
    /// skipped so the rest stays usable; `check` reports them as damage).
    pub damaged: Vec<Unreadable>,
    /// Name of the key file that opened the repository.
    pub key_name: String,
    /// What this client pinned about the repository, when opened with a state folder.
    pub trust: Option<TrustStore>,
    /// Things to tell the user once (the first open of a repository trusts it).
    pub notices: Vec<String>,
    /// Snapshots that vanished without a tombstone or came back after one, as of the last
    /// sync: reported on every command until acknowledged.
    pub alerts: Vec<crate::trust::Alert>,
    /// Local copies of tree packs, for a remote store only ([`crate::pack_cache`]).
    pub tree_packs: Option<PackCache>,
}

/// A repository object that a sync could not read.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Unreadable {
    /// `index delta`, `snapshot` or `condemned record`.
    pub what: &'static str,
    #[serde(serialize_with = "ser_hex")]
    pub id: ObjectId,
    pub error: String,
    /// The object is there but fails to authenticate or decode (as opposed to a newer
    /// format this build does not read, or a read that failed): removing it loses nothing
    /// that could still be read.
    pub corrupt: bool,
}

fn ser_hex<S: serde::Serializer>(id: &ObjectId, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_hex())
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.what, self.id, self.error)
    }
}

impl Unreadable {
    fn new(what: &'static str, id: ObjectId, e: &Error) -> Unreadable {
        Unreadable {
            what,
            id,
            error: e.to_string(),
            corrupt: matches!(e, Error::Corrupt(_)),
        }
    }
}

/// Temporary files of the repository untouched this long are left by killed writes, and
/// prune removes them (format-spec §14): a write in progress touches its file far more
/// often, and a writer idle for a day lost its lock long ago (stale after 30 minutes).
pub const TEMP_FILE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

pub fn now_unix_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

fn insecure_wrapping_key(repo_id: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(blake3::derive_key(
        "projectclone 2026-11 v1 insecure no-password wrapping key",
        repo_id,
    ))
}

/// Build a key file wrapping `keys`' master key under `password` (None: insecure).
pub fn make_key_file(repo_id: &[u8; 32], keys: &Keys, password: Option<&[u8]>, kdf: KdfParams) -> Result<Vec<u8>> {
    let salt: [u8; 32] = random_bytes();
    let (wrapping, kdf) = match password {
        Some(p) => (kdf.derive(p, &salt)?, Some(kdf)),
        None => (insecure_wrapping_key(repo_id), None),
    };
    let wrapped = Cipher::new(&wrapping).seal(&format::aad(repo_id, Kind::MasterKey, &salt), keys.master());
    Ok(format::encode_key_file(&KeyFile {
        kdf,
        salt,
        created_unix_ns: now_unix_ns(),
        wrapped,
    }))
}

/// An empty password protects nothing: only `None` (the explicit insecure mode) may
/// create a key without one.
fn refuse_empty_password(password: Option<&[u8]>) -> Result<()> {
    if password.is_some_and(|p| p.is_empty()) {
        return Err(Error::Invalid(
            "the password is empty: give a non-empty password (a key without a password is made only \
             on purpose, for a repository created insecure)"
                .into(),
        ));
    }
    Ok(())
}

/// Try to unwrap a key file; `Ok(None)` when it does not fit: a password key without a
/// password or with another one, and a password-less key when a password is given (a
/// password-less key never opens a repository for someone who gave a password).
pub fn unwrap_key_file(repo_id: &[u8; 32], bytes: &[u8], password: Option<&[u8]>) -> Result<Option<Keys>> {
    let kf = format::decode_key_file(bytes)?;
    unwrap_decoded(repo_id, &kf, password)
}

fn unwrap_decoded(repo_id: &[u8; 32], kf: &KeyFile, password: Option<&[u8]>) -> Result<Option<Keys>> {
    let wrapping = match (&kf.kdf, password) {
        (Some(kdf), Some(p)) => kdf.derive(p, &kf.salt)?,
        (None, None) => insecure_wrapping_key(repo_id),
        _ => return Ok(None),
    };
    // The unwrapped master key is zeroed when dropped, as are the wrapping key and the
    // cipher holding it (the `zeroize` features of `chacha20poly1305` and `argon2`).
    match Cipher::new(&wrapping)
        .open(&format::aad(repo_id, Kind::MasterKey, &kf.salt), &kf.wrapped, "key")
        .map(Zeroizing::new)
    {
        Ok(m) => match <&[u8; 32]>::try_from(&m[..]) {
            Ok(master) => Ok(Some(Keys::from_master_ref(master))),
            Err(_) => Err(Error::corrupt("key file: master key has the wrong length")),
        },
        Err(_) => Ok(None),
    }
}

/// Options for `init`.
#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    pub kdf: KdfParams,
    pub chunker: ChunkerParams,
    pub pack_target: Option<u32>,
    /// Where this client pins what it trusts ([`crate::trust`]); `None`: no pinning.
    pub state_dir: Option<PathBuf>,
}

/// How to open a repository.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Where the index cache lives (a folder per repository id below it).
    pub cache_dir: PathBuf,
    /// Where this client pins what it trusts ([`crate::trust`]); `None`: no pinning (tests,
    /// tools working on a copy).
    pub state_dir: Option<PathBuf>,
    /// The user asked for a repository without a password. Without this (or a pin saying
    /// this client opened the repository so before), a password-less key file opens
    /// nothing: anyone who can write to the storage could plant one.
    pub insecure_no_password: bool,
    /// Pin what opens now even if it differs from what was pinned (`trust accept`).
    pub accept_changes: bool,
    /// Bring only the cache's snapshots up to date, not its blob index: for a command that
    /// reads nothing but the snapshot list. Taking a lock syncs everything as usual.
    pub snapshots_only: bool,
}

/// Key files tried at most per open (the one that worked last time first): a store full of
/// planted key files must not make every open slow.
pub const MAX_KEY_FILES_TRIED: usize = 32;

/// A folder's listing: names and sizes.
type Listing = Vec<(String, u64)>;

/// What a sync of the index cache lists, in this order.
const SYNCED: [Dir; 3] = [Dir::Index, Dir::Condemned, Dir::Snapshots];

/// The listings of `dirs`: side by side on a remote store, where each waits on the network,
/// in turn on a local one. Every listing starts after this call does, so a sync after a
/// lock still sees everything written before the lock.
fn list_dirs<const N: usize>(backend: &Arc<dyn Backend>, dirs: [Dir; N]) -> Result<[Listing; N]> {
    if !backend.remote() {
        return dirs.map(|d| backend.list(d)).try_map_compat();
    }
    std::thread::scope(|scope| {
        let running = dirs.map(|d| scope.spawn(move || backend.list(d)));
        running
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .try_map_compat()
    })
}

/// `[Result<T>; N]` to `Result<[T; N]>` (the first error), until `array::try_map` is stable.
trait TryMapCompat<T, const N: usize> {
    fn try_map_compat(self) -> Result<[T; N]>;
}

impl<T, const N: usize> TryMapCompat<T, N> for [Result<T>; N] {
    fn try_map_compat(self) -> Result<[T; N]> {
        let v: Vec<T> = self.into_iter().collect::<Result<_>>()?;
        Ok(v.try_into().unwrap_or_else(|_| unreachable!("N results make N values")))
    }
}

/// Init options for unit tests: a cheap key derivation and 1 MiB packs.
#[cfg(test)]
pub(crate) fn test_init_options() -> InitOptions {
    InitOptions {
        kdf: KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        },
        pack_target: Some(1024 * 1024),
        ..Default::default()
    }
}

impl Repository {
    /// Create a new repository. `password: None` stores the key in clear.
    pub fn init(
        backend: Arc<dyn Backend>,
        password: Option<&[u8]>,
        opts: &InitOptions,
        cache_dir: &Path,
    ) -> Result<Repository> {
        if backend.exists("config")? {
            return Err(Error::AlreadyExists(backend.location()));
        }
        refuse_empty_password(password)?;
        opts.chunker.validate()?;
        // Checked before anything is written: open would refuse this config.
        if let Some(t) = opts.pack_target.filter(|t| !format::PACK_TARGET_RANGE.contains(t)) {
            return Err(Error::Invalid(format!(
                "pack target size {t} out of range: use 1 MiB to 1 GiB ({} to {} bytes)",
                format::PACK_TARGET_RANGE.start(),
                format::PACK_TARGET_RANGE.end()
            )));
        }
        backend.create()?;
        let keys = Keys::generate();
        let repo_id: [u8; 32] = random_bytes();
        let config = Config {
            repo_id,
            chunker: opts.chunker,
            pack_target: opts.pack_target.unwrap_or(16 * 1024 * 1024),
            created_unix_ns: now_unix_ns(),
        };
        let kf = make_key_file(&repo_id, &keys, password, opts.kdf)?;
        let key_name = blake3::hash(&kf).to_hex().to_string();
        let opened_with = key_name.clone();
        backend.write_new(&Dir::Keys.path(&key_name), &kf)?;
        // The config is written last: its presence is what makes a repository.
        let cipher = keys.cipher();
        if backend.write_new("config", &format::encode_config(&config, &cipher))? == Written::AlreadyThere {
            return Err(Error::AlreadyExists(backend.location()));
        }
        let index = Index::open(&cache_dir.join(hex::encode(repo_id)).join("index.db"))?;
        let tree_packs = backend
            .remote()
            .then(|| PackCache::new(&cache_dir.join(hex::encode(repo_id))));
        let mut repo = Repository {
            backend,
            config,
            keys,
            cipher,
            index,
            damaged: Vec::new(),
            key_name: opened_with,
            trust: None,
            notices: Vec::new(),
            alerts: Vec::new(),
            tree_packs,
        };
        if let Some(dir) = &opts.state_dir {
            let store = TrustStore::open(dir, &repo_id)?;
            let cfg = repo.backend.read_object("config", format::MAX_SMALL_OBJECT)?;
            store.set_pin(&repo.pin_now(&cfg, password.is_none()))?;
            repo.trust = Some(store);
        }
        Ok(repo)
    }

    /// What this client pins about the repository as it is open now.
    fn pin_now(&self, config_bytes: &[u8], insecure: bool) -> Pin {
        Pin {
            insecure,
            key_check: hex::encode(self.keys.key_check()),
            config: blake3::hash(config_bytes).to_hex().to_string(),
            since: jiff::Timestamp::now().to_string(),
            location: self.backend.location(),
            last_key: Some(self.key_name.clone()),
        }
    }

    /// Open and unlock a repository, then bring the index cache up to date. Pins nothing
    /// ([`Repository::open_with`] does); `password: None` opens a password-less repository.
    pub fn open(backend: Arc<dyn Backend>, password: Option<&[u8]>, cache_dir: &Path) -> Result<Repository> {
        Self::open_with(
            backend,
            password,
            &OpenOptions {
                cache_dir: cache_dir.to_path_buf(),
                insecure_no_password: password.is_none(),
                ..Default::default()
            },
        )
    }

    /// Open and unlock a repository, check it against what this client pinned (the first
    /// open pins it), then bring the index cache up to date.
    ///
    /// Key files are tried in this order, at most [`MAX_KEY_FILES_TRIED`]: the one that
    /// opened the repository last time, then by name. A key file is skipped when it is
    /// larger than a key file can be, when its name is not the BLAKE3 hash of its bytes,
    /// when it does not decode (its KDF parameters out of bounds), when it is of the other
    /// kind (password-less without `insecure_no_password` or its pin; password with none),
    /// and when it unwraps a master key that does not open `config` (one planted or damaged
    /// key file never locks the user out: the others are tried, and it is named).
    pub fn open_with(backend: Arc<dyn Backend>, password: Option<&[u8]>, opts: &OpenOptions) -> Result<Repository> {
        let cfg_bytes = match backend.read_object("config", format::MAX_SMALL_OBJECT) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(Error::NotARepository(backend.location()));
            }
            Err(e) => return Err(e),
        };
        let repo_id = format::config_repo_id(&cfg_bytes)?;
        // On a remote store the listings the first sync needs are taken while the key is
        // derived (the slow part of an open), not after it, one round trip each.
        let early = backend.remote().then(|| {
            let b = backend.clone();
            let only_snapshots = opts.snapshots_only;
            std::thread::spawn(move || -> Result<[Listing; 3]> {
                if only_snapshots {
                    Ok([Vec::new(), Vec::new(), b.list(Dir::Snapshots)?])
                } else {
                    list_dirs(&b, SYNCED)
                }
            })
        });
        let index_path = opts.cache_dir.join(hex::encode(repo_id)).join("index.db");
        crate::index::read_ahead(&index_path);
        let trust = opts
            .state_dir
            .as_ref()
            .map(|d| TrustStore::open(d, &repo_id))
            .transpose()?;
        let pin = match &trust {
            Some(t) => t.pin()?,
            None => None,
        };
        let allow_insecure = opts.insecure_no_password || pin.as_ref().is_some_and(|p| p.insecure);
        if password.is_none() && !allow_insecure {
            return Err(Error::PasswordRequired(backend.location()));
        }
        let mut names: Vec<(String, u64)> = backend
            .list(Dir::Keys)?
            .into_iter()
            .filter(|(n, _)| object_name(n).is_some())
            .collect();
        names.sort();
        if let Some(last) = pin.as_ref().and_then(|p| p.last_key.as_ref())
            && let Some(i) = names.iter().position(|(n, _)| n == last)
        {
            let first = names.remove(i);
            names.insert(0, first);
        }
        let mut opened = None;
        let mut skipped: Vec<String> = Vec::new();
        let mut insecure_present = false;
        for (name, size) in names.iter().take(MAX_KEY_FILES_TRIED) {
            if *size > format::MAX_SMALL_OBJECT as u64 {
                skipped.push(format!("key file {name}: {size} bytes, larger than a key file can be"));
                continue;
            }
            let bytes = match backend.read_object(&Dir::Keys.path(name), format::MAX_SMALL_OBJECT) {
                Ok(b) => b,
                Err(e) => {
                    skipped.push(format!("key file {name}: {e}"));
                    continue;
                }
            };
            if blake3::hash(&bytes).to_hex().as_str() != name {
                skipped.push(format!(
                    "key file {name}: its name is not the hash of its bytes (planted or damaged)"
                ));
                continue;
            }
            let kf = match format::decode_key_file(&bytes) {
                Ok(k) => k,
                Err(e) => {
                    skipped.push(format!("key file {name}: {e}"));
                    continue;
                }
            };
            if kf.kdf.is_none() {
                insecure_present = true;
                if !allow_insecure {
                    continue;
                }
            }
            let keys = match unwrap_decoded(&repo_id, &kf, password) {
                Ok(Some(k)) => k,
                Ok(None) => continue,
                Err(e) => {
                    skipped.push(format!("key file {name}: {e}"));
                    continue;
                }
            };
            match format::decode_config(&cfg_bytes, &keys.cipher()) {
                Ok(config) => {
                    opened = Some((keys, config, name.clone(), kf.kdf.is_none()));
                    break;
                }
                Err(e) => skipped.push(format!(
                    "key file {name} opens with this password but `config` does not authenticate under the key it \
                     holds ({e}): planted by someone who can write to the repository, or damaged"
                )),
            }
        }
        for s in &skipped {
            tracing::warn!("{s}; skipped");
        }
        let Some((keys, config, key_name, insecure)) = opened else {
            if password.is_some() && insecure_present {
                // Only a password-less key could have opened it: never with a password.
                let any_password_key = names.iter().take(MAX_KEY_FILES_TRIED).any(|(n, _)| {
                    backend
                        .read_object(&Dir::Keys.path(n), format::MAX_SMALL_OBJECT)
                        .and_then(|b| format::decode_key_file(&b))
                        .is_ok_and(|k| k.kdf.is_some())
                });
                if !any_password_key {
                    return Err(Error::PasswordlessOnly(backend.location()));
                }
            }
            if password.is_none() && opts.insecure_no_password {
                return Err(Error::NoPasswordlessKey(backend.location()));
            }
            if password.is_none() {
                return Err(Error::PasswordRequired(backend.location()));
            }
            let mut msg = backend.location();
            if let Some(s) = skipped.first() {
                msg += &format!(" ({} key file(s) skipped; the first: {s})", skipped.len());
            }
            if names.len() > MAX_KEY_FILES_TRIED {
                msg += &format!(
                    " ({} key files were not tried: at most {MAX_KEY_FILES_TRIED} are per open, so planted ones cannot \
                     make every open slow; remove the ones you do not know, or open from a client that opened this \
                     repository before, which tries its key first)",
                    names.len() - MAX_KEY_FILES_TRIED
                );
            }
            return Err(Error::WrongPassword(msg));
        };
        let cipher = keys.cipher();
        let index = Index::open(&index_path)?;
        let tree_packs = backend
            .remote()
            .then(|| PackCache::new(index_path.parent().unwrap_or(Path::new("."))));
        let mut repo = Repository {
            backend,
            config,
            keys,
            cipher,
            index,
            damaged: Vec::new(),
            key_name,
            trust: None,
            notices: Vec::new(),
            alerts: Vec::new(),
            tree_packs,
        };
        if let Some(store) = trust {
            let now = repo.pin_now(&cfg_bytes, insecure);
            match pin {
                None => {
                    repo.notices.push(format!(
                        "trusting repository {} at {} for the first time (key check {}); this client will refuse it if \
                         its keys or config are ever replaced",
                        &hex::encode(repo_id)[..8],
                        repo.backend.location(),
                        &now.key_check[..16]
                    ));
                    store.set_pin(&now)?;
                }
                Some(p) if p.key_check != now.key_check || p.config != now.config => {
                    if !opts.accept_changes {
                        let what = if p.key_check != now.key_check {
                            "its master key is not the one"
                        } else {
                            "its config is not the one"
                        };
                        return Err(Error::TrustChanged(format!(
                            "repository {} at {}: {what} this client trusted on {} (at {}). Someone who can write to \
                             the repository may have replaced its keys and config to take it over; nothing was read or \
                             written. If you re-created or restored it yourself, `projectclone trust accept` trusts it \
                             as it is now",
                            &hex::encode(repo_id)[..8],
                            repo.backend.location(),
                            p.since,
                            p.location
                        )));
                    }
                    repo.notices.push(format!(
                        "repository {}: trusting its new {} as asked",
                        &hex::encode(repo_id)[..8],
                        if p.key_check != now.key_check {
                            "master key and config"
                        } else {
                            "config"
                        }
                    ));
                    store.set_pin(&now)?;
                }
                Some(p) => {
                    if p.insecure != insecure {
                        repo.notices.push(format!(
                            "repository {} now opens {} (same master key as trusted)",
                            &hex::encode(repo_id)[..8],
                            if insecure {
                                "without a password"
                            } else {
                                "with a password"
                            }
                        ));
                    }
                    if p.insecure != insecure || p.last_key != now.last_key {
                        store.set_pin(&Pin {
                            insecure,
                            last_key: now.last_key,
                            ..p
                        })?;
                    }
                }
            }
            repo.trust = Some(store);
        }
        let early = early.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        if opts.snapshots_only {
            match early {
                Some(listed) => {
                    let [_, _, snapshots] = listed?;
                    repo.sync_snapshots_listed(snapshots)?;
                }
                None => repo.sync_snapshots()?,
            }
        } else {
            match early {
                Some(listed) => repo.sync_index_listed(listed?)?,
                None => repo.sync_index()?,
            }
            repo.tidy_tree_packs();
        }
        Ok(repo)
    }

    /// Remove the local copies of tree packs the index no longer lists (pruned). Best
    /// effort: a copy left behind only takes room, it is never read for another pack.
    fn tidy_tree_packs(&self) {
        if let Some(c) = &self.tree_packs {
            match c.remove_unlisted(&mut |p| Ok(self.index.pack_size(p)?.is_some())) {
                Ok(0) => {}
                Ok(n) => tracing::debug!("removed {n} cached tree pack(s) no longer in the index"),
                Err(e) => tracing::warn!("could not tidy the cached tree packs: {e}"),
            }
        }
    }

    /// Take a lock, then sync the index cache again: what other clients did between the
    /// open and the lock (a prune that condemned or deleted packs) is visible from here on.
    /// A prune waits only for locks older than its mark, so a command that relies on the
    /// cache must know every mark written before its lock.
    pub fn lock(&mut self, mode: LockMode, purpose: &str) -> Result<LockGuard> {
        let guard = crate::lock::acquire(self, mode, purpose)?;
        self.sync_index()?;
        Ok(guard)
    }

    /// Add a key file for another password (or replace ours: add, then `remove_key`).
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<String> {
        refuse_empty_password(Some(password))?;
        let kf = make_key_file(self.repo_id(), &self.keys, Some(password), kdf)?;
        let name = blake3::hash(&kf).to_hex().to_string();
        self.backend.write_new(&Dir::Keys.path(&name), &kf)?;
        Ok(name)
    }

    /// Key files: (name, created, KDF parameters; `None` for an insecure key).
    pub fn list_keys(&self) -> Result<Vec<(String, i64, Option<KdfParams>)>> {
        let mut out = Vec::new();
        for (name, _) in self.backend.list(Dir::Keys)? {
            match self
                .backend
                .read_object(&Dir::Keys.path(&name), format::MAX_SMALL_OBJECT)
                .and_then(|b| format::decode_key_file(&b))
            {
                Ok(k) => out.push((name, k.created_unix_ns, k.kdf)),
                Err(e) => tracing::warn!("key file {name}: {e}"),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Remove a key file by name or unique prefix; never the last one. When no
    /// password-less key is left, this client's pin says so (the repository opens only
    /// with a password from now on, and a password-less key that turns up later is not
    /// tried without `--insecure-no-password`).
    pub fn remove_key(&self, name: &str) -> Result<String> {
        let target = self.remove_key_file(name)?;
        if let Some(store) = &self.trust
            && let Some(pin) = store.pin()?
        {
            let clear_left = self.list_keys()?.iter().any(|(_, _, kdf)| kdf.is_none());
            let insecure = pin.insecure && clear_left;
            let last_key = pin.last_key.clone().filter(|k| *k != target);
            if insecure != pin.insecure || last_key != pin.last_key {
                store.set_pin(&Pin {
                    insecure,
                    last_key,
                    ..pin
                })?;
            }
        }
        Ok(target)
    }

    fn remove_key_file(&self, name: &str) -> Result<String> {
        let keys = self.backend.list(Dir::Keys)?;
        let matches: Vec<&String> = keys.iter().map(|k| &k.0).filter(|k| k.starts_with(name)).collect();
        let target = match matches.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(Error::Invalid(format!(
                    "no key file {name}; see `projectclone key list`"
                )));
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "key prefix {name} is ambiguous; give more digits"
                )));
            }
        };
        if keys.len() <= 1 {
            return Err(Error::Invalid(
                "refusing to remove the last key: the repository would be unreadable".into(),
            ));
        }
        self.backend.delete(&Dir::Keys.path(&target))?;
        Ok(target)
    }

    /// Remove `gone` packs from the repository's index: write one delta replacing every
    /// delta that lists any of them (without them), then delete the replaced deltas. Deltas
    /// already replaced by an interrupted prune or repair are replaced and deleted too, so
    /// they cannot come back once the delta that replaced them is itself replaced.
    pub fn drop_packs_from_index(&mut self, gone: &std::collections::HashSet<PackId>) -> Result<()> {
        let gone_list: Vec<PackId> = gone.iter().copied().collect();
        let listing = self.index.deltas_with_packs(&gone_list)?;
        let mut affected = listing.clone();
        affected.extend(self.index.superseded_deltas()?);
        affected.sort();
        affected.dedup();
        if affected.is_empty() {
            return Ok(());
        }
        let mut packs = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for d in &listing {
            for p in self.index.delta_packs(d)? {
                if gone.contains(&p) || !seen.insert(p) {
                    continue;
                }
                let blobs = self.index.pack_blobs(&p)?;
                packs.push(format::IndexPack {
                    id: p,
                    size: self.index.pack_size(&p)?.unwrap_or(0),
                    blobs: blobs
                        .into_iter()
                        .map(|(id, l)| format::PackEntry {
                            kind: l.kind,
                            id,
                            offset: l.offset,
                            length: l.length,
                            raw_length: l.raw_length,
                        })
                        .collect(),
                });
            }
        }
        self.write_delta(&IndexDelta {
            packs,
            supersedes: affected.clone(),
            checkpoint: false,
        })?;
        for d in &affected {
            self.backend.delete(&Dir::Index.path(&d.to_hex()))?;
        }
        self.sync_index()
    }

    /// Drop packs the index lists but the repository no longer holds (after damage was
    /// repaired). Returns how many.
    pub fn forget_missing_packs(&mut self) -> Result<usize> {
        let listed: std::collections::HashSet<PackId> = self
            .backend
            .list(Dir::Packs)?
            .into_iter()
            .filter_map(|(n, _)| object_name(&n).map(PackId))
            .collect();
        let missing: std::collections::HashSet<PackId> = self
            .index
            .packs()?
            .into_iter()
            .map(|p| p.0)
            .filter(|p| !listed.contains(p))
            .collect();
        if !missing.is_empty() {
            self.drop_packs_from_index(&missing)?;
        }
        Ok(missing.len())
    }

    /// Throw the index cache away and rebuild it from the repository's deltas, condemned
    /// records and snapshots (`repair index` then makes the repository's index honest).
    pub fn rebuild_index(&mut self) -> Result<()> {
        let path = self.index.path().to_path_buf();
        for suffix in ["", "-wal", "-shm"] {
            let p = format!("{}{suffix}", path.display());
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(p, e)),
            }
        }
        self.index = Index::open(&path)?;
        self.damaged.clear();
        self.sync_index()
    }

    /// Remove temporary files that killed writes left, once [`TEMP_FILE_MAX_AGE`] old;
    /// returns how many. Best effort: a failure is logged, and what it left is tried again
    /// by the next prune.
    pub fn remove_stale_temp_files(&self) -> usize {
        match self.backend.remove_stale_temp(TEMP_FILE_MAX_AGE) {
            Ok(removed) => {
                for p in &removed {
                    tracing::info!("removed {p}, a temporary file left by a killed write");
                }
                removed.len()
            }
            Err(e) => {
                tracing::warn!("old temporary files could not all be removed: {e}");
                0
            }
        }
    }

    pub fn repo_id(&self) -> &[u8; 32] {
        &self.config.repo_id
    }

    pub fn chunker(&self) -> Chunker {
        Chunker::new(self.config.chunker, self.keys.gear_table())
    }

    /// The chunkers of files by their size: finer ones for large files where this
    /// repository has them (config version 3, format-spec §15 "Large files").
    pub fn file_chunkers(&self) -> FileChunkers {
        FileChunkers {
            base: self.chunker(),
            large: self
                .config
                .chunker
                .large_file_params()
                .map(|(from, p)| (from, Chunker::new(p, self.keys.gear_table()))),
        }
    }

    /// Reconcile the index cache with a listing of `index/`, `condemned/` and `snapshots/`.
    pub fn sync_index(&mut self) -> Result<()> {
        let listed = list_dirs(&self.backend, SYNCED)?;
        self.sync_index_listed(listed)
    }

    /// [`sync_index`](Self::sync_index) with the listings of [`SYNCED`] taken already.
    fn sync_index_listed(&mut self, listed: [Listing; 3]) -> Result<()> {
        let [index, condemned, snapshots] = listed;
        // Each sync reports afresh what it could not read.
        self.damaged.clear();
        let listed: Vec<ObjectId> = index
            .into_iter()
            .filter_map(|(n, _)| object_name(&n).map(ObjectId))
            .collect();
        let known: std::collections::HashSet<ObjectId> = self.index.known_deltas()?.into_iter().collect();
        let listed_set: std::collections::HashSet<ObjectId> = listed.iter().copied().collect();
        // Deltas are applied in bounded batches, so memory does not grow with the index.
        const BATCH_BLOBS: usize = 500_000;
        let mut damaged = Vec::new();
        let read = |id: &ObjectId, damaged: &mut Vec<Unreadable>| match self.read_delta(id) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!("index delta {id} skipped: {e}");
                damaged.push(Unreadable::new("index delta", *id, &e));
                None
            }
        };
        let new: Vec<ObjectId> = listed.iter().filter(|d| !known.contains(d)).copied().collect();
        // Deltas deleted since the last sync: a finished backup's checkpoint deltas, whose
        // packs its last delta lists too, or deltas a prune or repair replaced.
        let vanished: HashSet<ObjectId> = known.iter().filter(|k| !listed_set.contains(k)).copied().collect();
        let mut rebuild = self.index.rebuilding()?;
        let mut batch: Vec<(ObjectId, IndexDelta)> = Vec::new();
        if !rebuild {
            let mut blobs = 0;
            for id in &new {
                let Some(d) = read(id, &mut damaged) else { continue };
                if !d.supersedes.is_empty() {
                    rebuild = true;
                    break;
                }
                blobs += d.packs.iter().map(|p| p.blobs.len()).sum::<usize>();
                batch.push((*id, d));
                if blobs >= BATCH_BLOBS {
                    // Applied at once; if a superseding delta turns up later the rebuild
                    // below starts from scratch anyway.
                    self.index.add_deltas(&batch)?;
                    batch.clear();
                    blobs = 0;
                }
            }
        }
        if !rebuild {
            if !batch.is_empty() {
                self.index.add_deltas(&batch)?;
                batch.clear();
            }
            // Vanished deltas whose packs other deltas list are dropped from the cache as
            // they are; any other loss of a delta means packs left the index: rebuild.
            if !vanished.is_empty() {
                if self.index.listed_elsewhere(&vanished)? {
                    self.index
                        .remove_deltas(&vanished.iter().copied().collect::<Vec<_>>())?;
                } else {
                    rebuild = true;
                }
            }
        }
        if rebuild {
            // A prune replaced some deltas: rebuild, ignoring the replaced ones (they may
            // still be listed if that prune was interrupted before deleting them). First
            // pass: who replaces whom; second pass: apply the rest in batches.
            damaged.clear();
            let mut superseded = std::collections::HashSet::new();
            for id in &listed {
                if let Some(d) = read(id, &mut damaged) {
                    superseded.extend(d.supersedes);
                }
            }
            // Packs this cache indexes and does not know to be condemned: if one of them is
            // gone after the rebuild, a repair elsewhere dropped lost data (or a prune this
            // cache never saw condemned them), so parents' contents are checked again.
            let condemned: std::collections::HashSet<PackId> = self.index.condemned_packs()?;
            let before: Vec<PackId> = self
                .index
                .packs()?
                .into_iter()
                .map(|p| p.0)
                .filter(|p| !condemned.contains(p))
                .collect();
            // Marked until done: an interrupted rebuild must start over, never be taken for a
            // complete index (a replaced delta could otherwise be loaded as a current one).
            self.index.set_rebuilding(true)?;
            self.index.clear_blobs()?;
            let mut batch = Vec::new();
            let mut blobs = 0;
            let mut second = Vec::new();
            for id in &listed {
                let Some(d) = read(id, &mut second) else { continue };
                blobs += d.packs.iter().map(|p| p.blobs.len()).sum::<usize>();
                batch.push((*id, d));
                if blobs >= BATCH_BLOBS {
                    self.index.add_deltas_except(&batch, &superseded)?;
                    batch.clear();
                    blobs = 0;
                }
            }
            self.index.add_deltas_except(&batch, &superseded)?;
            for e in second {
                if !damaged.contains(&e) {
                    damaged.push(e);
                }
            }
            self.index.set_rebuilding(false)?;
            let after: std::collections::HashSet<PackId> = self.index.packs()?.into_iter().map(|p| p.0).collect();
            if before.iter().any(|p| !after.contains(p)) {
                self.index.set_verify_before(Some(now_unix_ns()))?;
            }
        }
        self.damaged.extend(damaged);
        self.sync_condemned_listed(condemned)?;

        self.sync_snapshots_listed(snapshots)
    }

    /// Reconcile the cache's snapshots and tombstones with `snapshots/` (both live there;
    /// the envelope's kind byte tells them apart), then, with a trust store, what this
    /// client has seen: a snapshot that vanished without a tombstone, or came back after
    /// one, becomes an alert.
    fn sync_snapshots(&mut self) -> Result<()> {
        let listed = self.backend.list(Dir::Snapshots)?;
        self.sync_snapshots_listed(listed)
    }

    fn sync_snapshots_listed(&mut self, listed: Listing) -> Result<()> {
        let listed: Vec<ObjectId> = listed
            .into_iter()
            .filter_map(|(n, _)| object_name(&n).map(ObjectId))
            .collect();
        let listed_set: HashSet<ObjectId> = listed.iter().copied().collect();
        let known_snaps: HashSet<ObjectId> = self
            .index
            .known_snapshots()?
            .into_iter()
            .map(|s| ObjectId(s.0))
            .collect();
        let (tombs, gone_tombs): (Vec<_>, Vec<_>) = self
            .index
            .tombstones()?
            .into_iter()
            .partition(|t| listed_set.contains(&t.0));
        // A snapshot named by a tombstone is forgotten whether its object is there or not
        // (a forget killed between the two writes leaves both): never read again.
        let known: HashSet<ObjectId> = known_snaps
            .iter()
            .copied()
            .chain(tombs.iter().flat_map(|(t, s, _)| [*t, ObjectId(s.0)]))
            .collect();
        let gone: Vec<SnapshotId> = known_snaps
            .iter()
            .filter(|k| !listed_set.contains(k))
            .map(|k| SnapshotId(k.0))
            .collect();
        if !gone.is_empty() {
            self.index.remove_snapshots(&gone)?;
        }
        if !gone_tombs.is_empty() {
            self.index
                .remove_tombstones(&gone_tombs.iter().map(|t| t.0).collect::<Vec<_>>())?;
        }
        let mut added = Vec::new();
        let mut added_tombs = Vec::new();
        let mut unreadable = HashSet::new();
        for id in listed.into_iter().filter(|s| !known.contains(s)) {
            match self.read_snapshots_entry(&id) {
                Ok(SnapshotsEntry::Snapshot(snap, body)) => added.push((SnapshotId(id.0), body, *snap)),
                Ok(SnapshotsEntry::Tombstone(t, body)) => added_tombs.push((id, t.snapshot, body)),
                Err(e) => {
                    tracing::warn!("snapshot {id} skipped: {e}");
                    self.damaged.push(Unreadable::new("snapshot", id, &e));
                    unreadable.insert(SnapshotId(id.0));
                }
            }
        }
        let named: HashSet<SnapshotId> = tombs
            .iter()
            .map(|t| t.1)
            .chain(added_tombs.iter().map(|t| t.1))
            .collect();
        added.retain(|(id, _, _)| !named.contains(id));
        if !added.is_empty() {
            let rows: Vec<_> = added.iter().map(|(i, b, s)| (*i, b.clone(), s)).collect();
            self.index.add_snapshots(&rows)?;
        }
        if !added_tombs.is_empty() {
            self.index.add_tombstones(&added_tombs)?;
        }
        if let Some(trust) = &self.trust {
            let present = self.snapshots()?;
            let mut tombstoned = std::collections::BTreeMap::new();
            for (_, snap, body) in self.index.tombstones()? {
                tombstoned.insert(snap, format::decode_tombstone(&body, "cached tombstone")?);
            }
            self.alerts = trust.update_snapshots(&present, &tombstoned, &unreadable)?;
        }
        Ok(())
    }

    /// Snapshot objects still stored although a tombstone forgets them (a forget killed
    /// between writing the tombstone and deleting the snapshot): nobody reads them, prune
    /// deletes them.
    pub fn forgotten_leftovers(&self) -> Result<Vec<SnapshotId>> {
        let listed: HashSet<ObjectId> = self
            .backend
            .list(Dir::Snapshots)?
            .into_iter()
            .filter_map(|(n, _)| object_name(&n).map(ObjectId))
            .collect();
        let mut out: Vec<SnapshotId> = self
            .index
            .tombstones()?
            .into_iter()
            .map(|(_, s, _)| s)
            .filter(|s| listed.contains(&ObjectId(s.0)))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Read an object of `snapshots/`: a snapshot or a tombstone.
    pub fn read_snapshots_entry(&self, id: &ObjectId) -> Result<SnapshotsEntry> {
        let bytes = self
            .backend
            .read_object(&Dir::Snapshots.path(&id.to_hex()), format::MAX_OBJECT)?;
        let kind = if bytes.get(4) == Some(&(Kind::Tombstone as u8)) {
            Kind::Tombstone
        } else {
            Kind::Snapshot
        };
        let what = format!(
            "{} {id}",
            if kind == Kind::Tombstone {
                "tombstone"
            } else {
                "snapshot"
            }
        );
        let plain = format::open_sealed(self.repo_id(), &self.cipher, kind, &id.0, &bytes, &what)?;
        if self.keys.meta_id(&plain) != id.0 {
            return Err(Error::corrupt(format!("{what}: content does not match its name")));
        }
        Ok(match kind {
            Kind::Tombstone => SnapshotsEntry::Tombstone(format::decode_tombstone(&plain, &what)?, plain),
            _ => SnapshotsEntry::Snapshot(Box::new(format::decode_snapshot(&plain, &what)?), plain),
        })
    }

    /// Forget snapshots for good: write a tombstone for each (what it was, when, by whom,
    /// why), then delete its object. The tombstone is written first, so a process killed in
    /// between leaves a snapshot that every reader treats as forgotten, never one that
    /// vanished without a trace.
    pub fn forget_snapshots(&mut self, snaps: &[(SnapshotId, Option<&Snapshot>)], reason: &str) -> Result<()> {
        let host = crate::lock::hostname();
        let mut rows = Vec::new();
        for (id, snap) in snaps {
            let t = Tombstone {
                snapshot: *id,
                time: snap.map(|s| s.time).unwrap_or_default(),
                hostname: snap.map(|s| s.hostname.clone()).unwrap_or_default(),
                paths: snap.map(|s| s.paths.clone()).unwrap_or_default(),
                tree: snap.map(|s| s.tree).unwrap_or_default(),
                removed_unix_ns: now_unix_ns(),
                removed_by: host.clone(),
                reason: reason.to_string(),
                seen: snap.map(|s| s.seen.clone()).unwrap_or_default(),
            };
            rows.push((self.write_tombstone(&t)?, *id, format::encode_tombstone(&t)));
        }
        for (id, _) in snaps {
            self.backend.delete(&Dir::Snapshots.path(&id.to_hex()))?;
        }
        self.index.add_tombstones(&rows)?;
        self.index
            .remove_snapshots(&snaps.iter().map(|s| s.0).collect::<Vec<_>>())
    }

    /// The snapshot chain's links that are broken: snapshots gone without a tombstone
    /// although a present snapshot or a tombstone still records them (format-spec §10, "The
    /// chain"). A snapshot is only removed after a tombstone naming it is durable, and
    /// tombstones are never deleted, so such a snapshot was deleted behind the repository's
    /// back, or lost. One link per missing snapshot (its oldest witness), oldest witness
    /// first: the first is where the chain first breaks. A snapshot whose object is there
    /// but unreadable is reported as unreadable instead. Parents count as links only in
    /// snapshots written by 1.0.0 or later (`program_version`): earlier builds forgot without
    /// tombstones.
    pub fn broken_links(&self) -> Result<Vec<BrokenLink>> {
        let snaps = self.snapshots()?;
        let tombs = self.decoded_tombstones()?;
        let present: HashSet<SnapshotId> = snaps.iter().map(|s| s.0).collect();
        let forgotten: HashSet<SnapshotId> = tombs.iter().map(|t| t.snapshot).collect();
        let unreadable: HashSet<SnapshotId> = self.damaged.iter().map(|d| SnapshotId(d.id.0)).collect();
        let accounted = |id: &SnapshotId| present.contains(id) || forgotten.contains(id) || unreadable.contains(id);
        let mut out: std::collections::BTreeMap<SnapshotId, BrokenLink> = std::collections::BTreeMap::new();
        let mut note = |link: BrokenLink| {
            let e = out.entry(link.missing).or_insert_with(|| link.clone());
            if (link.witness_time, link.witness) < (e.witness_time, e.witness) {
                *e = link;
            }
        };
        for (id, s) in &snaps {
            let parent = s.parent.filter(|_| since_release(&s.program_version));
            for (missing, how) in parent
                .map(|p| (p, Link::Parent))
                .into_iter()
                .chain(s.seen.iter().map(|m| (*m, Link::Seen)))
            {
                if !accounted(&missing) {
                    note(BrokenLink {
                        missing,
                        witness: *id,
                        witness_time: s.time,
                        how,
                    });
                }
            }
        }
        for t in &tombs {
            for missing in t.seen.iter().filter(|m| !accounted(m)) {
                note(BrokenLink {
                    missing: *missing,
                    witness: t.snapshot,
                    witness_time: t.time,
                    how: Link::SeenByForgotten,
                });
            }
        }
        let mut out: Vec<BrokenLink> = out.into_values().collect();
        out.sort_by_key(|l| (l.witness_time, l.witness, l.missing));
        Ok(out)
    }

    /// The repository's snapshot heads, as the next snapshot records them in `seen`
    /// (format-spec §10, "The chain"): every snapshot in the cache, present or named by a
    /// tombstone, that no present snapshot or tombstone records, in id order.
    pub fn heads(&self) -> Result<Vec<SnapshotId>> {
        let snaps = self.snapshots()?;
        let tombs = self.decoded_tombstones()?;
        let mut heads: std::collections::BTreeSet<SnapshotId> = snaps
            .iter()
            .map(|s| s.0)
            .chain(tombs.iter().map(|t| t.snapshot))
            .collect();
        for (_, s) in &snaps {
            if let Some(p) = s.parent.filter(|_| since_release(&s.program_version)) {
                heads.remove(&p);
            }
            for id in &s.seen {
                heads.remove(id);
            }
        }
        for t in &tombs {
            for id in &t.seen {
                heads.remove(id);
            }
        }
        Ok(heads.into_iter().collect())
    }

    /// Every tombstone in the cache, decoded.
    pub fn decoded_tombstones(&self) -> Result<Vec<Tombstone>> {
        self.index
            .tombstones()?
            .into_iter()
            .map(|(_, _, body)| format::decode_tombstone(&body, "cached tombstone"))
            .collect()
    }

    /// Write a tombstone object; returns its name.
    pub fn write_tombstone(&self, t: &Tombstone) -> Result<ObjectId> {
        let plain = format::encode_tombstone(t);
        let id = ObjectId(self.keys.meta_id(&plain));
        let bytes = format::seal_object(self.repo_id(), &self.cipher, Kind::Tombstone, &id.0, &plain);
        self.backend.write_new(&Dir::Snapshots.path(&id.to_hex()), &bytes)?;
        Ok(id)
    }

    /// Reconcile the cache's condemned-pack records with `condemned/`.
    pub fn sync_condemned(&mut self) -> Result<()> {
        let listed = self.backend.list(Dir::Condemned)?;
        self.sync_condemned_listed(listed)
    }

    fn sync_condemned_listed(&mut self, listed: Listing) -> Result<()> {
        let listed: std::collections::HashSet<ObjectId> = listed
            .into_iter()
            .filter_map(|(n, _)| object_name(&n).map(ObjectId))
            .collect();
        let known: std::collections::HashSet<ObjectId> = self.index.condemned()?.into_iter().map(|r| r.id).collect();
        let gone: Vec<ObjectId> = known.iter().filter(|k| !listed.contains(k)).copied().collect();
        let mut add = Vec::new();
        for id in listed.iter().filter(|l| !known.contains(l)) {
            match self.read_condemned(id) {
                Ok(c) => add.push(crate::index::CondemnedRecord {
                    id: *id,
                    marked: c.marked_unix_ns,
                    packs: c.packs,
                    waits_for: c.waits_for,
                }),
                Err(e) => {
                    tracing::warn!("condemned record {id} skipped: {e}");
                    self.damaged.push(Unreadable::new("condemned record", *id, &e));
                }
            }
        }
        if !gone.is_empty() || !add.is_empty() {
            self.index.set_condemned(&add, &gone)?;
        }
        Ok(())
    }

    pub fn read_condemned(&self, id: &ObjectId) -> Result<format::Condemned> {
        let bytes = self
            .backend
            .read_object(&Dir::Condemned.path(&id.to_hex()), format::MAX_OBJECT)?;
        let what = format!("condemned record {id}");
        let plain = format::open_sealed(self.repo_id(), &self.cipher, Kind::Condemned, &id.0, &bytes, &what)?;
        let c = format::decode_condemned(&plain, &what)?;
        if self.keys.meta_id(&plain) != id.0 {
            return Err(Error::corrupt(format!("{what}: content does not match its name")));
        }
        Ok(c)
    }

    /// Record packs as condemned (phase one of a prune).
    pub fn write_condemned(&mut self, c: &format::Condemned) -> Result<ObjectId> {
        let plain = format::encode_condemned(c);
        let id = ObjectId(self.keys.meta_id(&plain));
        let bytes = format::seal_object(self.repo_id(), &self.cipher, Kind::Condemned, &id.0, &plain);
        self.backend.write_new(&Dir::Condemned.path(&id.to_hex()), &bytes)?;
        self.index.set_condemned(
            &[crate::index::CondemnedRecord {
                id,
                marked: c.marked_unix_ns,
                packs: c.packs.clone(),
                waits_for: c.waits_for.clone(),
            }],
            &[],
        )?;
        Ok(id)
    }

    pub fn delete_condemned(&mut self, id: &ObjectId) -> Result<()> {
        self.backend.delete(&Dir::Condemned.path(&id.to_hex()))?;
        self.index.set_condemned(&[], &[*id])
    }

    pub fn read_delta(&self, id: &ObjectId) -> Result<IndexDelta> {
        let bytes = self
            .backend
            .read_object(&Dir::Index.path(&id.to_hex()), format::MAX_OBJECT)?;
        let what = format!("index delta {id}");
        let plain = format::open_sealed(self.repo_id(), &self.cipher, Kind::Index, &id.0, &bytes, &what)?;
        let d = format::decode_index_delta(&plain, &what)?;
        if self.keys.meta_id(&plain) != id.0 {
            return Err(Error::corrupt(format!("{what}: content does not match its name")));
        }
        Ok(d)
    }

    /// Write an index delta (after its packs are durable). Returns its id.
    pub fn write_delta(&self, delta: &IndexDelta) -> Result<ObjectId> {
        write_delta_to(self.backend.as_ref(), self.repo_id(), &self.keys, &self.cipher, delta)
    }

    pub fn read_snapshot_object(&self, id: &SnapshotId) -> Result<(Snapshot, Vec<u8>)> {
        let bytes = self
            .backend
            .read_object(&Dir::Snapshots.path(&id.to_hex()), format::MAX_OBJECT)?;
        let what = format!("snapshot {id}");
        let plain = format::open_sealed(self.repo_id(), &self.cipher, Kind::Snapshot, &id.0, &bytes, &what)?;
        let s = format::decode_snapshot(&plain, &what)?;
        if self.keys.meta_id(&plain) != id.0 {
            return Err(Error::corrupt(format!("{what}: content does not match its name")));
        }
        Ok((s, plain))
    }

    /// Write a snapshot object: the last step of a backup.
    pub fn write_snapshot(&mut self, snap: &Snapshot) -> Result<SnapshotId> {
        let plain = format::encode_snapshot(snap);
        let id = SnapshotId(self.keys.meta_id(&plain));
        let bytes = format::seal_object(self.repo_id(), &self.cipher, Kind::Snapshot, &id.0, &plain);
        self.backend.write_new(&Dir::Snapshots.path(&id.to_hex()), &bytes)?;
        self.index.add_snapshots(&[(id, plain, snap)])?;
        if let Some(t) = &self.trust {
            t.note_written(id, snap)?;
        }
        Ok(id)
    }

    /// All snapshots, oldest first (ties by id).
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        self.index
            .snapshot_bodies()?
            .into_iter()
            .map(|(id, body)| Ok((id, format::decode_snapshot(&body, "cached snapshot")?)))
            .collect()
    }

    /// Resolve `latest`, a full id, or a unique prefix of at least 4 hex digits.
    pub fn resolve_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        let all = self.snapshots()?;
        if spec == "latest" {
            return all
                .into_iter()
                .max_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)))
                .ok_or_else(|| Error::SnapshotNotFound("latest (the repository has no snapshots)".into()));
        }
        let lower = spec.to_ascii_lowercase();
        if lower.len() < 4 || lower.len() > 64 || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::SnapshotNotFound(format!(
                "{spec:?}: give `latest`, a snapshot id, or at least 4 of its hex digits"
            )));
        }
        let mut matches: Vec<_> = all
            .into_iter()
            .filter(|(id, _)| id.to_hex().starts_with(&lower))
            .collect();
        match matches.len() {
            0 => Err(Error::SnapshotNotFound(spec.to_string())),
            1 => Ok(matches.pop().expect("one match")),
            _ => Err(Error::AmbiguousSnapshot(spec.to_string())),
        }
    }

    /// Find a blob's location, preferring the first copy.
    pub fn locate(&self, id: &BlobId) -> Result<Location> {
        self.index.lookup(id)?.into_iter().next().ok_or_else(|| not_indexed(id))
    }

    /// [`locate`](Self::locate) for many blobs, `ids` sorted ascending without repeats:
    /// `found` gets one result per id, in order.
    pub fn locate_sorted(&self, ids: &[BlobId], found: &mut dyn FnMut(Result<Location>)) -> Result<()> {
        let mut i = 0;
        self.index.locate_sorted(ids, &mut |l| {
            found(l.ok_or_else(|| not_indexed(&ids[i])));
            i += 1;
        })
    }

    /// Read, open and verify one blob.
    ///
    /// Copies are tried in [`Index::lookup`]'s order (intact, then outside condemned packs,
    /// first). A copy that turns out missing or damaged is remembered as such in the cache
    /// ([`Repository::note_damage`]) and the next copy is tried; the first error is
    /// returned when none reads.
    pub fn read_blob(&self, kind: BlobKind, id: &BlobId) -> Result<Vec<u8>> {
        let copies = self.index.copies(id)?;
        let mut first_err = None;
        for (loc, _, _) in copies {
            if loc.kind != kind {
                first_err.get_or_insert(Error::corrupt(format!(
                    "blob {id}: indexed as {:?}, wanted {kind:?}",
                    loc.kind
                )));
                continue;
            }
            let path = Dir::Packs.path(&loc.pack.to_hex());
            let from_store = || {
                self.backend
                    .read_range(&path, loc.offset, loc.length as usize)
                    .or_else(|e| match e {
                        // One more try for an I/O error that is not a plain "not there".
                        ref e @ Error::Io { .. } if !e.is_not_found() => {
                            self.backend.read_range(&path, loc.offset, loc.length as usize)
                        }
                        e => Err(e),
                    })
            };
            let cache = self.tree_packs.as_ref().filter(|_| kind == BlobKind::Tree);
            let read = match cache.map(|c| c.read_range(&*self.backend, &loc.pack, loc.offset, loc.length as usize)) {
                Some(Ok(Sealed::Cached(sealed))) => {
                    match blob::open_blob(self.repo_id(), &self.keys, &self.cipher, kind, id, &sealed) {
                        Ok(v) => return Ok(v),
                        Err(e) => {
                            // The local copy hashed to the pack's id when it was kept: it
                            // changed since. Drop it and ask the store.
                            tracing::warn!("cached copy of pack {}: {e}; dropped, reading the store", loc.pack);
                            cache.inspect(|c| c.evict(&loc.pack));
                            from_store()
                        }
                    }
                }
                Some(Ok(Sealed::Store(sealed))) => Ok(sealed),
                Some(Err(e)) if !e.is_not_found() && !e.is_damage() => from_store(),
                Some(Err(e)) => Err(e),
                None => from_store(),
            };
            let res = match read {
                Ok(sealed) => {
                    blob::open_blob(self.repo_id(), &self.keys, &self.cipher, kind, id, &sealed).inspect_err(|e| {
                        if e.is_damage() {
                            self.note_damage(&loc.pack, Some(id), e);
                        }
                    })
                }
                Err(e) => {
                    if e.is_damage() {
                        self.note_damage(&loc.pack, None, &e);
                    }
                    Err(e)
                }
            };
            match res {
                Ok(v) => return Ok(v),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| not_indexed(id)))
    }

    /// Remember in the cache that a pack (`blob: None`) or one blob's copy in it is missing
    /// or damaged, so reads prefer other copies and backups and prunes stop relying on it
    /// (`Index::note_damage`). Best effort: a cache that cannot be written is only logged.
    pub fn note_damage(&self, pack: &PackId, blob: Option<&BlobId>, why: &Error) {
        tracing::warn!(
            "pack {pack}{}: {why}; remembered as damaged",
            blob.map(|b| format!(", blob {b}")).unwrap_or_default()
        );
        if let Err(e) = self.index.note_damage(pack, blob, &why.to_string(), now_unix_ns()) {
            tracing::warn!("could not record the damage in the index cache: {e}");
        }
    }

    /// Load one tree page.
    pub fn load_tree_page(&self, id: &TreeId) -> Result<Tree> {
        let raw = self.read_blob(BlobKind::Tree, &BlobId(id.0))?;
        let t: Tree = format::decode_versioned(1, &raw, &format!("tree {id}"))?;
        format::validate_tree(&t)?;
        Ok(t)
    }

    /// Load all pages of a directory, with the ids of its continuation pages.
    pub fn load_tree_pages(&self, id: &TreeId) -> Result<(Vec<Node>, Vec<TreeId>)> {
        let mut ids = Vec::new();
        let mut t = self.load_tree_page(id)?;
        let mut nodes = std::mem::take(&mut t.nodes);
        let mut next = t.next;
        while let Some(n) = next {
            ids.push(n);
            if ids.len() > 1_000_000 {
                return Err(Error::corrupt(format!("tree {id}: page chain too long (loop?)")));
            }
            let mut p = self.load_tree_page(&n)?;
            if let (Some(last), Some(first)) = (nodes.last(), p.nodes.first())
                && last.name >= first.name
            {
                return Err(Error::corrupt(format!("tree {id}: pages out of order")));
            }
            nodes.append(&mut p.nodes);
            next = p.next;
        }
        Ok((nodes, ids))
    }

    /// Load all pages of a directory.
    pub fn load_tree(&self, id: &TreeId) -> Result<Vec<Node>> {
        Ok(self.load_tree_pages(id)?.0)
    }

    /// The nodes of a directory entry, whether it is stored in tree pages of its own or
    /// inline in its parent's page. An entry that is not a directory has none.
    pub fn dir_nodes(&self, kind: &NodeKind) -> Result<Vec<Node>> {
        match kind {
            NodeKind::Dir(t) => self.load_tree(t),
            NodeKind::InlineDir(b) => format::decode_inline_dir(b),
            _ => Ok(Vec::new()),
        }
    }

    /// The full chunk list of a file, expanding pages.
    pub fn chunk_list(&self, content: &Content) -> Result<Vec<ChunkRef>> {
        match content {
            Content::Chunks(c) => Ok(c.clone()),
            Content::Pages(pages) => {
                let mut out = Vec::new();
                for p in pages {
                    let raw = self.read_blob(BlobKind::Tree, &BlobId(p.0))?;
                    let page: ChunkPage = format::decode_versioned(1, &raw, &format!("chunk list page {p}"))?;
                    out.extend(page.chunks);
                }
                Ok(out)
            }
        }
    }

    /// Walk a snapshot path (`a/b/c`) down from a root tree.
    pub fn find_node(&self, root: &TreeId, path: &[u8]) -> Result<Option<Node>> {
        let mut dir = NodeKind::Dir(*root);
        let comps: Vec<&[u8]> = path.split(|b| *b == b'/').filter(|c| !c.is_empty()).collect();
        for (i, comp) in comps.iter().enumerate() {
            let nodes = self.dir_nodes(&dir)?;
            let Some(n) = nodes.into_iter().find(|n| n.name == *comp) else {
                return Ok(None);
            };
            if i + 1 == comps.len() {
                return Ok(Some(n));
            }
            if !n.kind.is_dir() {
                return Ok(None);
            }
            dir = n.kind;
        }
        Ok(None)
    }
}

/// Write an index delta with the repository's parts (for a thread that does not hold the
/// repository: a backup's checkpoints). Returns its id.
pub fn write_delta_to(
    backend: &dyn Backend,
    repo_id: &[u8; 32],
    keys: &Keys,
    cipher: &Cipher,
    delta: &IndexDelta,
) -> Result<ObjectId> {
    let plain = format::encode_index_delta(delta);
    let id = ObjectId(keys.meta_id(&plain));
    let bytes = format::seal_object(repo_id, cipher, Kind::Index, &id.0, &plain);
    backend.write_new(&Dir::Index.path(&id.to_hex()), &bytes)?;
    Ok(id)
}

/// An object of `snapshots/`.
pub enum SnapshotsEntry {
    /// A snapshot and its plaintext.
    Snapshot(Box<Snapshot>, Vec<u8>),
    /// A tombstone and its plaintext.
    Tombstone(Tombstone, Vec<u8>),
}

/// An object name: exactly 64 lowercase hex digits (anything else in a folder is ignored).
pub fn object_name(n: &str) -> Option<[u8; 32]> {
    if n.len() != 64 || !n.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(n, &mut out).ok()?;
    Some(out)
}

/// Where the index cache of a repository lives.
pub fn cache_path(cache_dir: &Path, repo_id: &[u8; 32]) -> PathBuf {
    cache_dir.join(hex::encode(repo_id))
}

/// The error for a blob the index does not hold.
fn not_indexed(id: &BlobId) -> Error {
    Error::corrupt(format!(
        "blob {id} is not in the index (missing data; run `projectclone check`)"
    ))
}

/// Whether a snapshot was written by 1.0.0 or later (`program_version`): earlier builds
/// forgot snapshots without tombstones, so their links prove nothing.
fn since_release(version: &str) -> bool {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|m| m >= 1)
}

/// How a snapshot records another: the link [`Repository::broken_links`] found broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// The witness names it as its parent.
    Parent,
    /// The witness saw it as a head (`seen`).
    Seen,
    /// The witness was forgotten, and its tombstone records that it saw it.
    SeenByForgotten,
}

/// A snapshot gone without a tombstone, and the oldest snapshot that still records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokenLink {
    /// The snapshot that is gone.
    pub missing: SnapshotId,
    /// The snapshot (present, or forgotten with a tombstone) that records it.
    pub witness: SnapshotId,
    /// When the witness was taken.
    pub witness_time: format::Time,
    /// How the witness records it.
    pub how: Link,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;

    /// An empty password creates no repository and no key; `None` (insecure) still does.
    #[test]
    fn empty_password_makes_no_repository_and_no_key() {
        let t = tempfile::tempdir().unwrap();
        let cache = t.path().join("cache");
        let dir = t.path().join("r");
        let res = Repository::init(
            Arc::new(LocalBackend::new(&dir)),
            Some(b""),
            &test_init_options(),
            &cache,
        );
        assert!(matches!(res, Err(Error::Invalid(_))));
        assert!(!dir.exists(), "nothing written");
        let repo = Repository::init(
            Arc::new(LocalBackend::new(&dir)),
            Some(b"pw"),
            &test_init_options(),
            &cache,
        )
        .unwrap();
        assert!(matches!(
            repo.add_key(b"", test_init_options().kdf),
            Err(Error::Invalid(_))
        ));
        assert_eq!(repo.list_keys().unwrap().len(), 1);
        let insecure = t.path().join("insecure");
        Repository::init(
            Arc::new(LocalBackend::new(&insecure)),
            None,
            &test_init_options(),
            &cache,
        )
        .unwrap();
    }

    /// A pack target that `open` would refuse is refused by `init`, before anything is
    /// written; the bounds themselves are accepted.
    #[test]
    fn init_refuses_a_pack_target_that_open_would_refuse() {
        let t = tempfile::tempdir().unwrap();
        let opts = |target| InitOptions {
            pack_target: Some(target),
            ..test_init_options()
        };
        let cache = t.path().join("cache");
        for (i, target) in [(1 << 20) - 1, (1 << 30) + 1].into_iter().enumerate() {
            let dir = t.path().join(format!("bad{i}"));
            let res = Repository::init(Arc::new(LocalBackend::new(&dir)), None, &opts(target), &cache);
            assert!(matches!(res, Err(Error::Invalid(_))), "{target}");
            assert!(!dir.exists(), "nothing written for {target}");
        }
        for (i, target) in [1 << 20, 1 << 30].into_iter().enumerate() {
            let dir = t.path().join(format!("good{i}"));
            Repository::init(Arc::new(LocalBackend::new(&dir)), None, &opts(target), &cache).unwrap();
            Repository::open(Arc::new(LocalBackend::new(&dir)), None, &cache).unwrap();
        }
    }

    fn fake_pack(n: u8) -> format::IndexPack {
        format::IndexPack {
            id: PackId([n; 32]),
            size: 100,
            blobs: vec![format::PackEntry {
                kind: format::BlobKind::Data,
                id: crate::id::BlobId([n; 32]),
                offset: 0,
                length: 60,
                raw_length: 20,
            }],
        }
    }

    fn delta(packs: &[u8], checkpoint: bool) -> IndexDelta {
        IndexDelta {
            packs: packs.iter().map(|&n| fake_pack(n)).collect(),
            supersedes: Vec::new(),
            checkpoint,
        }
    }

    /// A delta deleted because another lists its packs too (a finished backup's checkpoint
    /// delta) leaves another client's cache without a rebuild; a delta whose packs nobody
    /// else lists makes it rebuild, and the packs leave its index.
    #[test]
    fn a_vanished_delta_whose_packs_are_listed_elsewhere_is_dropped_without_a_rebuild() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("r");
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(&dir));
        let writer = Repository::init(backend.clone(), Some(b"pw"), &test_init_options(), &t.path().join("a")).unwrap();
        let other = writer.write_delta(&delta(&[9], false)).unwrap();
        let checkpoint = writer.write_delta(&delta(&[1, 2], true)).unwrap();
        let mut reader = Repository::open(backend.clone(), Some(b"pw"), &t.path().join("b")).unwrap();
        assert_eq!(reader.index.checkpoint_only_packs().unwrap().len(), 2);
        // A rebuild would read every delta again and find this one unreadable.
        let other_path = Dir::Index.path(&other.to_hex());
        backend.delete(&other_path).unwrap();
        backend.write_new(&other_path, b"not a delta").unwrap();

        writer.write_delta(&delta(&[1, 2, 3], false)).unwrap();
        writer.drop_redundant_deltas(&[checkpoint]);
        reader.sync_index().unwrap();
        assert!(reader.damaged.is_empty(), "rebuilt: {:?}", reader.damaged.len());
        assert!(!reader.index.known_deltas().unwrap().contains(&checkpoint));
        assert!(reader.index.checkpoint_only_packs().unwrap().is_empty());
        let packs: HashSet<PackId> = reader.index.packs().unwrap().into_iter().map(|p| p.0).collect();
        assert_eq!(packs, [1, 2, 3, 9].map(|n| PackId([n; 32])).into_iter().collect());
        for n in [1, 2, 3, 9] {
            assert!(reader.index.has_blob(&crate::id::BlobId([n; 32])).unwrap(), "blob {n}");
        }

        // Pack 4 is listed by one delta only: its loss is a rebuild, which drops the pack.
        let lone = writer.write_delta(&delta(&[4], false)).unwrap();
        reader.sync_index().unwrap();
        assert!(reader.index.has_blob(&crate::id::BlobId([4; 32])).unwrap());
        backend.delete(&Dir::Index.path(&lone.to_hex())).unwrap();
        reader.sync_index().unwrap();
        assert!(!reader.damaged.is_empty(), "a rebuild reads the unreadable delta");
        assert!(!reader.index.has_blob(&crate::id::BlobId([4; 32])).unwrap());
        assert!(reader.index.has_blob(&crate::id::BlobId([3; 32])).unwrap());
    }
}

#[cfg(test)]
mod snapshots_only_tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;

    /// `snapshots_only` lists the snapshots without loading one index delta; the next full
    /// open loads them all.
    #[test]
    fn a_snapshots_only_open_reads_no_index_delta() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"data").unwrap();
        let store = Arc::new(MemoryBackend::new());
        let mut repo =
            Repository::init(store.clone(), Some(b"pw"), &test_init_options(), &t.path().join("c1")).unwrap();
        let opts = crate::backup::BackupOptions {
            paths: vec![t.path().join("f")],
            ..Default::default()
        };
        crate::backup::backup(&mut repo, &opts, &crate::progress::NoProgress, None).unwrap();
        drop(repo);
        let open = |snapshots_only| {
            Repository::open_with(
                store.clone(),
                Some(b"pw"),
                &OpenOptions {
                    cache_dir: t.path().join("c2"),
                    snapshots_only,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let repo = open(true);
        assert_eq!(repo.snapshots().unwrap().len(), 1);
        assert!(repo.index.known_deltas().unwrap().is_empty());
        drop(repo);
        let repo = open(false);
        assert_eq!(repo.index.known_deltas().unwrap().len(), 1);
        assert_eq!(repo.snapshots().unwrap().len(), 1);
    }
}
