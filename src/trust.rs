//! What this client trusts about each repository it has opened, kept outside the index
//! cache (in `$XDG_STATE_HOME/projectclone/repos/<repo id>/`, given by the caller):
//! deleting, damaging or replacing the cache never resets it.
//!
//! - **The pin** (`trust.json`): whether the repository opens without a password, a
//!   key-check value derived from the master key, and the BLAKE3 digest of `config`. An
//!   open that finds another master key or another `config` under the same repository id is
//!   refused: someone who can write to the storage planted a key and config of their own.
//! - **The snapshots seen** (`snapshots.json`): every snapshot this client has seen, and
//!   whether it is still there, was forgotten (a tombstone names it), or vanished without
//!   one. A vanished snapshot, or one that came back after its tombstone, is reported on
//!   every command until the user acknowledges it (`forget --vanished`), and prune keeps
//!   what it referenced meanwhile.
//!
//! Files are written whole (temp file, fsync, rename) under an advisory lock
//! (`.lock`), mode 0600 in a 0700 folder, so concurrent commands never lose an update.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::format::{Snapshot, Time, Tombstone};
use crate::id::{SnapshotId, TreeId};

/// What a client pinned for one repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// Opened without a password (`--insecure-no-password`).
    pub insecure: bool,
    /// Hex of [`crate::crypto::Keys::key_check`]: the same value means the same master key.
    pub key_check: String,
    /// Hex of the BLAKE3 hash of the `config` file's bytes (a config is never rewritten).
    pub config: String,
    /// When this client first trusted the repository (RFC 3339).
    pub since: String,
    /// Where it was then (for messages; no credentials).
    pub location: String,
    /// The key file that opened it last: tried first next time.
    #[serde(default)]
    pub last_key: Option<String>,
}

/// What a client knows of one snapshot it has seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seen {
    pub state: SeenState,
    pub secs: i64,
    pub nanos: u32,
    pub host: String,
    /// Source paths, hex of their raw bytes.
    pub paths: Vec<String>,
    /// Root tree id (hex): prune keeps what a vanished snapshot referenced.
    pub tree: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeenState {
    /// Listed at the last sync.
    Present,
    /// Named by a tombstone: removed on purpose.
    Forgotten,
    /// Gone from the listing without a tombstone: reported until acknowledged.
    Vanished,
}

/// Something about the repository's snapshots that nobody here did on purpose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Alert {
    /// A snapshot this client saw disappeared without a tombstone. The count: objects of
    /// `snapshots/` that could not be read (one may be its tombstone, damaged).
    Vanished(SnapshotId, Seen, usize),
    /// A snapshot this client saw forgotten is listed again without its tombstone.
    CameBack(SnapshotId, Seen),
}

impl std::fmt::Display for Alert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let describe = |id: &SnapshotId, s: &Seen| {
            let paths: Vec<String> = s
                .paths
                .iter()
                .map(|p| crate::format_name(&hex::decode(p).unwrap_or_default()))
                .collect();
            format!(
                "snapshot {} ({} of {} on {})",
                id.short(),
                crate::format_time(
                    &Time {
                        secs: s.secs,
                        nanos: s.nanos
                    },
                    0
                ),
                paths.join(", "),
                crate::format_name(s.host.as_bytes())
            )
        };
        match self {
            Alert::Vanished(id, s, unreadable) => {
                write!(
                    f,
                    "{} vanished from the repository without a tombstone: it was deleted behind this client's back \
                     (or the repository was rolled back). Prune keeps the data it referenced. If its removal is \
                     expected, `projectclone forget --vanished` acknowledges it",
                    describe(id, s)
                )?;
                if *unreadable > 0 {
                    write!(
                        f,
                        " ({unreadable} object(s) of snapshots/ could not be read: if one is its damaged \
                         tombstone, the snapshot was forgotten; `projectclone check` names them)"
                    )?;
                }
                Ok(())
            }
            Alert::CameBack(id, s) => write!(
                f,
                "{} was forgotten (a tombstone named it) and is listed again without its tombstone: an old \
                 repository state was put back. `projectclone forget {}` forgets it again",
                describe(id, s),
                id.short()
            ),
        }
    }
}

pub struct TrustStore {
    dir: PathBuf,
}

impl TrustStore {
    /// The store for one repository under `root` (created 0700 when missing).
    pub fn open(root: &Path, repo_id: &[u8; 32]) -> Result<TrustStore> {
        let dir = root.join("repos").join(hex::encode(repo_id));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                Error::Invalid(format!(
                    "cannot create {} where this client remembers what it trusts about the repository: {e}; \
                     make $XDG_STATE_HOME writable",
                    dir.display()
                ))
            })?;
        Ok(TrustStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Run `f` holding this store's advisory lock (other processes of this client wait).
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let p = self.dir.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .at(&p)?;
        lock.lock().at(&p)?;
        let res = f();
        let _ = lock.unlock();
        res
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>> {
        let p = self.dir.join(name);
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                Error::Invalid(format!(
                    "{}: {e}; this file records what this client trusts about a repository: restore it from a \
                     backup of your home folder, or remove it to trust the repository anew",
                    p.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(p, e)),
        }
    }

    fn write_json<T: Serialize>(&self, name: &str, v: &T) -> Result<()> {
        let p = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp-{:016x}", rand::random::<u64>()));
        let bytes = serde_json::to_vec_pretty(v).expect("serialisable");
        let res = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .at(&tmp)?;
            f.write_all(&bytes).at(&tmp)?;
            f.sync_all().at(&tmp)?;
            fs::rename(&tmp, &p).at(&p)?;
            File::open(&self.dir).and_then(|d| d.sync_all()).at(&self.dir)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    pub fn pin(&self) -> Result<Option<Pin>> {
        self.read_json("trust.json")
    }

    pub fn set_pin(&self, pin: &Pin) -> Result<()> {
        self.locked(|| self.write_json("trust.json", pin))
    }

    /// Every snapshot this client has seen, by id.
    pub fn seen(&self) -> Result<BTreeMap<SnapshotId, Seen>> {
        let raw: Option<BTreeMap<String, Seen>> = self.read_json("snapshots.json")?;
        let mut out = BTreeMap::new();
        for (k, v) in raw.unwrap_or_default() {
            if let Ok(id) = k.parse::<SnapshotId>() {
                out.insert(id, v);
            }
        }
        Ok(out)
    }

    /// Bring the snapshots seen up to date with a sync: `present` are the snapshots
    /// listed and not forgotten, `tombstoned` the snapshots tombstones name. Returns what
    /// nobody did on purpose (reported on every command until acknowledged).
    pub fn update_snapshots(
        &self,
        present: &[(SnapshotId, Snapshot)],
        tombstoned: &BTreeMap<SnapshotId, Tombstone>,
        unreadable: &std::collections::HashSet<SnapshotId>,
    ) -> Result<Vec<Alert>> {
        self.locked(|| {
            let mut seen = self.seen()?;
            let before = seen.clone();
            let mut alerts = Vec::new();
            let listed: std::collections::HashSet<SnapshotId> = present.iter().map(|p| p.0).collect();
            for (id, s) in seen.iter_mut() {
                if tombstoned.contains_key(id) {
                    s.state = SeenState::Forgotten;
                } else if listed.contains(id) {
                    if s.state == SeenState::Forgotten {
                        alerts.push(Alert::CameBack(*id, s.clone()));
                    } else {
                        s.state = SeenState::Present;
                    }
                } else if unreadable.contains(id) {
                    // Listed but damaged: not gone. `check` and the open's notice report it.
                } else if s.state != SeenState::Forgotten {
                    s.state = SeenState::Vanished;
                    alerts.push(Alert::Vanished(*id, s.clone(), unreadable.len()));
                }
            }
            for (id, snap) in present {
                seen.entry(*id).or_insert_with(|| Seen::present(snap));
            }
            if seen != before {
                let raw: BTreeMap<String, &Seen> = seen.iter().map(|(k, v)| (k.to_hex(), v)).collect();
                self.write_json("snapshots.json", &raw)?;
            }
            Ok(alerts)
        })
    }

    /// Record a snapshot this client just wrote (so the next command does not see it as
    /// new, and a snapshot deleted before then still counts as seen).
    pub fn note_written(&self, id: SnapshotId, snap: &Snapshot) -> Result<()> {
        self.locked(|| {
            let mut seen = self.seen()?;
            if seen.contains_key(&id) {
                return Ok(());
            }
            seen.insert(id, Seen::present(snap));
            let raw: BTreeMap<String, &Seen> = seen.iter().map(|(k, v)| (k.to_hex(), v)).collect();
            self.write_json("snapshots.json", &raw)
        })
    }

    /// Snapshots seen that vanished without a tombstone: (id, root tree, what was seen).
    pub fn vanished(&self) -> Result<Vec<(SnapshotId, TreeId, Seen)>> {
        Ok(self
            .seen()?
            .into_iter()
            .filter(|(_, s)| s.state == SeenState::Vanished)
            .filter_map(|(id, s)| Some((id, s.tree.parse::<TreeId>().ok()?, s)))
            .collect())
    }
}

impl Seen {
    fn present(snap: &Snapshot) -> Seen {
        Seen {
            state: SeenState::Present,
            secs: snap.time.secs,
            nanos: snap.time.nanos,
            host: snap.hostname.clone(),
            paths: snap.paths.iter().map(hex::encode).collect(),
            tree: snap.tree.to_hex(),
        }
    }

    /// The tombstone that acknowledges this snapshot's removal.
    pub fn tombstone(&self, id: SnapshotId, tree: TreeId, now_ns: i64, host: &str) -> Tombstone {
        Tombstone {
            snapshot: id,
            time: Time {
                secs: self.secs,
                nanos: self.nanos,
            },
            hostname: self.host.clone(),
            paths: self.paths.iter().map(|p| hex::decode(p).unwrap_or_default()).collect(),
            tree,
            removed_unix_ns: now_ns,
            removed_by: host.to_string(),
            reason: "vanished".into(),
            seen: Vec::new(),
        }
    }
}
