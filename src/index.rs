//! The per-client SQLite index cache (`index.db`): the only module that speaks SQL.
//! Everything here is derived from `index/` and `snapshots/` in the repository, so it
//! can be deleted at any time and rebuilt.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::format::{BlobKind, IndexDelta, Snapshot};
use crate::id::{BlobId, ObjectId, PackId, SnapshotId};

/// Schema version in `PRAGMA user_version`. A cache with another version is rebuilt.
pub const SCHEMA_VERSION: i64 = 8;

/// The blobs of each pack, in pack order (prune, check and repair walk packs); as in
/// [`SCHEMA`].
const BLOBS_BY_PACK: &str = "CREATE INDEX blobs_by_pack ON blobs(pack, id, offset, kind, length, raw_length);";

/// Blob rows added at once into an empty table above which the index by pack is built
/// after them: SQLite sorts once instead of inserting each row into a second B-tree at a
/// random place (a new client's first sync of a repository of 1M blobs).
const BULK_ROWS: usize = 50_000;

const SCHEMA: &str = "
CREATE TABLE deltas (id BLOB PRIMARY KEY, superseded INTEGER NOT NULL DEFAULT 0, checkpoint INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE packs (
    n INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    size INTEGER NOT NULL
);
CREATE TABLE blobs (
    id BLOB NOT NULL,
    pack INTEGER NOT NULL REFERENCES packs(n),
    kind INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    raw_length INTEGER NOT NULL,
    PRIMARY KEY (id, pack)
) WITHOUT ROWID;
CREATE INDEX blobs_by_pack ON blobs(pack, id, offset, kind, length, raw_length);
CREATE TABLE state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE delta_packs (
    delta BLOB NOT NULL,
    pack INTEGER NOT NULL,
    PRIMARY KEY (delta, pack)
) WITHOUT ROWID;
CREATE TABLE condemned (
    record BLOB NOT NULL,
    pack BLOB NOT NULL,
    marked INTEGER NOT NULL,
    PRIMARY KEY (record, pack)
) WITHOUT ROWID;
CREATE INDEX condemned_by_pack ON condemned(pack);
CREATE TABLE condemned_waits (record BLOB PRIMARY KEY, locks BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE tombstones (id BLOB PRIMARY KEY, snapshot BLOB NOT NULL, body BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX tombstones_by_snapshot ON tombstones(snapshot);
CREATE TABLE snapshots (
    id BLOB PRIMARY KEY,
    time_secs INTEGER NOT NULL,
    time_nanos INTEGER NOT NULL,
    body BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE damaged (
    pack BLOB NOT NULL,
    blob BLOB NOT NULL,
    what TEXT NOT NULL,
    noted INTEGER NOT NULL,
    PRIMARY KEY (pack, blob)
) WITHOUT ROWID;
";

/// The `damaged.blob` value that marks a whole pack (missing, truncated, header unreadable).
const WHOLE_PACK: &[u8] = b"";

/// [`Index::locate_sorted`] scans the blob table instead of looking ids up one by one from
/// this many ids...
const SCAN_FROM: usize = 4096;
/// ...when they number at least this fraction of the table's rows.
const SCAN_SHARE: u64 = 4;

/// A blob table row's location columns (kind, offset, length, raw length).
fn location(pack: PackId, kind: i64, offset: i64, length: i64, raw_length: i64) -> Result<Location> {
    Ok(Location {
        pack,
        kind: BlobKind::from_i64(kind).ok_or_else(|| Error::corrupt("index cache: bad blob kind"))?,
        offset: offset as u64,
        length: length as u32,
        raw_length: raw_length as u32,
    })
}

/// Where a blob is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub kind: BlobKind,
    pub offset: u64,
    pub length: u32,
    pub raw_length: u32,
}

/// How much of an index cache file [`read_ahead`] asks for.
const READ_AHEAD_MAX: u64 = 512 << 20;
/// The range of one read-ahead request.
const READ_AHEAD_STEP: u64 = 2 << 20;

/// Ask the kernel to start reading the index cache at `path` (and its write-ahead log)
/// into the page cache, without waiting. Every command then walks the B-trees in memory:
/// on a cold cache, SQLite's one-page reads at random offsets were most of the time
/// `check` waited, and a whole-file read costs a fraction of that. Called before key
/// derivation so the reads overlap it. Best effort: a missing file (first use) or a file
/// system without read-ahead is fine.
pub fn read_ahead(path: &Path) {
    for suffix in ["", "-wal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let Ok(f) = std::fs::File::open(&p) else { continue };
        let len = f.metadata().map(|m| m.len().min(READ_AHEAD_MAX)).unwrap_or(0);
        // The kernel queues the reads and returns; the file may be closed at once. One call
        // per step: Linux reads a single large range only in part.
        for at in (0..len).step_by(READ_AHEAD_STEP as usize) {
            let n = std::num::NonZeroU64::new(READ_AHEAD_STEP.min(len - at));
            let _ = rustix::fs::fadvise(&f, at, n, rustix::fs::Advice::WillNeed);
        }
    }
}

/// Make `p` exactly `mode` if it is not. Best effort, with a warning: a cache made before
/// modes were set followed the umask, and one this user does not own cannot be changed.
fn tighten(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(p) {
        Ok(m) if m.permissions().mode() & 0o7777 != mode => {
            if let Err(e) = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)) {
                tracing::warn!(
                    "{}: could not set its mode to {mode:o} ({e}); the index cache holds host names, \
                     paths, tags and notes in clear: make it private (chmod {mode:o})",
                    p.display()
                );
            }
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(p, e)),
    }
}

/// The cache's folder (and any missing parent) with mode 0700; an existing one is made
/// 0700 too. The cache holds host names, paths, tags and notes in clear.
fn private_dir(dir: &Path) -> Result<()> {
    crate::platform::create_private_dirs(dir).map_err(|e| Error::io(dir, e))?;
    tighten(dir, 0o700)
}

/// Create the database file at `path` empty with mode 0600 if it is missing, and make it
/// and its `-wal` and `-shm` files 0600 if they are not. SQLite creates the `-wal` and
/// `-shm` files with the database file's mode.
fn private_files(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    drop(f);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        tighten(Path::new(&p), 0o600)?;
    }
    Ok(())
}

pub struct Index {
    conn: std::sync::Mutex<Connection>,
    path: PathBuf,
}

impl Index {
    pub fn open(path: &Path) -> Result<Index> {
        if let Some(dir) = path.parent() {
            private_dir(dir)?;
        }
        match Self::try_open(path) {
            Ok(i) => Ok(i),
            Err(e) => {
                // A damaged cache is not data loss: it is derived. Start over.
                tracing::warn!("index cache {} unusable ({e}); rebuilding it", path.display());
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                Self::try_open(path)
            }
        }
    }

    fn try_open(path: &Path) -> Result<Index> {
        let err = |source| Error::Index {
            path: path.to_path_buf(),
            source,
        };
        private_files(path)?;
        let conn = Connection::open(path).map_err(err)?;
        // Query-planner stability: otherwise (with STAT4 compiled in) every statement that
        // compares a column with a bound id is re-parsed on each new binding, which cost
        // about 15 µs per blob lookup (a third of a restore's CPU).
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(120)).map_err(err)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;")
            .map_err(err)?;
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
        if v != SCHEMA_VERSION {
            let tx_sql = format!(
                "BEGIN IMMEDIATE; DROP TABLE IF EXISTS blobs; DROP TABLE IF EXISTS packs; DROP TABLE IF EXISTS deltas; DROP TABLE IF EXISTS snapshots; DROP TABLE IF EXISTS delta_packs; DROP TABLE IF EXISTS condemned; DROP TABLE IF EXISTS state; DROP TABLE IF EXISTS damaged; DROP TABLE IF EXISTS condemned_waits; DROP TABLE IF EXISTS tombstones; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            );
            conn.execute_batch(&tx_sql).map_err(err)?;
        }
        // Touch every table so a damaged file is found now, not mid-backup.
        for table in [
            "deltas",
            "packs",
            "blobs",
            "snapshots",
            "state",
            "damaged",
            "tombstones",
            "condemned_waits",
        ] {
            let sql = format!("SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)");
            conn.query_row(&sql, [], |r| r.get::<_, i64>(0)).map_err(err)?;
        }
        Ok(Index {
            conn: std::sync::Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// A copy of this cache in a new file at `path` (for a dry run that must see packs it
    /// does not add to the real cache).
    pub fn copy_to(&self, path: &Path) -> Result<Index> {
        {
            // Created empty and private first: SQLite would make it 0644 (less the umask).
            private_files(path)?;
            let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            conn.execute("VACUUM INTO ?1", params![path.to_string_lossy()])
                .map_err(|e| self.err(e))?;
        }
        Index::open(path)
    }

    /// Is a rebuild of the blob tables under way (or was one interrupted)?
    pub fn rebuilding(&self) -> Result<bool> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT value FROM state WHERE key = 'rebuilding'", [], |r| {
            r.get::<_, i64>(0)
        })
        .optional()
        .map(|v| v == Some(1))
        .map_err(|e| self.err(e))
    }

    pub fn set_rebuilding(&self, on: bool) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.execute(
            "INSERT OR REPLACE INTO state (key, value) VALUES ('rebuilding', ?1)",
            params![on as i64],
        )
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        Error::Index {
            path: self.path.clone(),
            source,
        }
    }

    /// Deltas recorded as replaced by a later delta (still listed if a prune was
    /// interrupted before deleting them).
    pub fn superseded_deltas(&self) -> Result<Vec<ObjectId>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare("SELECT id FROM deltas WHERE superseded = 1")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| self.err(e))?
            .filter_map(|r| r.ok().and_then(|b| ObjectId::from_slice(&b)))
            .collect();
        Ok(rows)
    }

    pub fn known_deltas(&self) -> Result<Vec<ObjectId>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn.prepare("SELECT id FROM deltas").map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| self.err(e))?
            .filter_map(|r| r.ok().and_then(|b| ObjectId::from_slice(&b)))
            .collect();
        Ok(rows)
    }

    pub fn known_snapshots(&self) -> Result<Vec<SnapshotId>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn.prepare("SELECT id FROM snapshots").map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| self.err(e))?
            .filter_map(|r| r.ok().and_then(|b| SnapshotId::from_slice(&b)))
            .collect();
        Ok(rows)
    }

    /// Forget every pack and blob (when an index delta disappeared: rebuild from scratch).
    pub fn clear_blobs(&self) -> Result<()> {
        let path = self.path.clone();
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = &mut *guard;
        conn.execute_batch("BEGIN IMMEDIATE; DELETE FROM blobs; DELETE FROM packs; DELETE FROM deltas; DELETE FROM delta_packs; COMMIT;")
            .map_err(|source| Error::Index {
                path: path.clone(),
                source,
            })
    }

    /// Add index deltas in one transaction.
    /// Add index deltas in one transaction. Deltas in `superseded` are only recorded as
    /// known: a later delta replaced their content.
    pub fn add_deltas(&self, deltas: &[(ObjectId, IndexDelta)]) -> Result<()> {
        self.add_deltas_except(deltas, &Default::default())
    }

    pub fn add_deltas_except(
        &self,
        deltas: &[(ObjectId, IndexDelta)],
        superseded: &std::collections::HashSet<ObjectId>,
    ) -> Result<()> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = &mut *guard;
        let path = self.path.clone();
        let err = |source| Error::Index {
            path: path.clone(),
            source,
        };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        {
            let mut ins_delta = tx
                .prepare_cached("INSERT OR REPLACE INTO deltas (id, superseded, checkpoint) VALUES (?1, ?2, ?3)")
                .map_err(err)?;
            let mut ins_pack = tx
                .prepare_cached("INSERT OR IGNORE INTO packs (id, size) VALUES (?1, ?2)")
                .map_err(err)?;
            let mut get_pack = tx.prepare_cached("SELECT n FROM packs WHERE id = ?1").map_err(err)?;
            let mut ins_blob = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO blobs (id, pack, kind, offset, length, raw_length) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(err)?;
            let mut ins_dp = tx
                .prepare_cached("INSERT OR IGNORE INTO delta_packs (delta, pack) VALUES (?1, ?2)")
                .map_err(err)?;
            // Blob rows go in afterwards in id order: ids are uniformly random, so rows
            // inserted as they come touch B-tree pages at random, and once the table
            // outgrows SQLite's page cache nearly every row costs a page read and a page
            // spill. In id order each page is visited once.
            let mut rows: Vec<(&crate::format::PackEntry, i64)> = Vec::new();
            for (did, delta) in deltas {
                ins_delta
                    .execute(params![
                        &did.0[..],
                        superseded.contains(did) as i64,
                        delta.checkpoint as i64
                    ])
                    .map_err(err)?;
                if superseded.contains(did) {
                    continue;
                }
                for p in &delta.packs {
                    ins_pack.execute(params![&p.id.0[..], p.size as i64]).map_err(err)?;
                    let n: i64 = get_pack.query_row(params![&p.id.0[..]], |r| r.get(0)).map_err(err)?;
                    ins_dp.execute(params![&did.0[..], n]).map_err(err)?;
                    rows.extend(p.blobs.iter().map(|b| (b, n)));
                }
            }
            rows.sort_unstable_by(|a, b| (&a.0.id.0, a.1).cmp(&(&b.0.id.0, b.1)));
            let bulk = rows.len() >= BULK_ROWS
                && tx
                    .query_row("SELECT NOT EXISTS (SELECT 1 FROM blobs)", [], |r| r.get::<_, bool>(0))
                    .map_err(err)?;
            if bulk {
                tx.execute_batch("DROP INDEX blobs_by_pack").map_err(err)?;
            }
            for (b, n) in rows {
                ins_blob
                    .execute(params![
                        &b.id.0[..],
                        n,
                        b.kind.as_i64(),
                        b.offset as i64,
                        b.length as i64,
                        b.raw_length as i64
                    ])
                    .map_err(err)?;
            }
            if bulk {
                tx.execute_batch(BLOBS_BY_PACK).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Hold one read transaction across many lookups (a backup's dedup checks): saves
    /// SQLite's per-statement lock round trips. Pair with `end_read`.
    pub fn begin_read(&self) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if conn.is_autocommit() {
            conn.execute_batch("BEGIN DEFERRED").map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    pub fn end_read(&self) {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("COMMIT");
        }
    }

    /// [`begin_read`](Self::begin_read) until the guard is dropped: many lookups in a row
    /// (a restore plan, a check) without a lock round trip and file check per statement.
    pub fn read_txn(&self) -> Result<ReadTxn<'_>> {
        self.begin_read()?;
        Ok(ReadTxn(self))
    }

    /// Is the blob stored in a pack that is neither condemned nor known to be damaged? (A
    /// backup never dedups into a condemned pack, which a later prune may delete, nor into
    /// a copy that a check or a failed read found missing or damaged.)
    pub fn has_blob(&self, id: &BlobId) -> Result<bool> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare_cached(
                "SELECT 1 FROM blobs b JOIN packs p ON p.n = b.pack \
                 WHERE b.id = ?1 AND NOT EXISTS (SELECT 1 FROM condemned c WHERE c.pack = p.id) \
                 AND NOT EXISTS (SELECT 1 FROM damaged d WHERE d.pack = p.id AND d.blob IN (x'', b.id)) LIMIT 1",
            )
            .map_err(|e| self.err(e))?;
        st.exists(params![&id.0[..]]).map_err(|e| self.err(e))
    }

    /// Every stored copy of a blob (usually one; two briefly during a repack): copies not
    /// known damaged first, and among those copies outside condemned packs first.
    pub fn lookup(&self, id: &BlobId) -> Result<Vec<Location>> {
        Ok(self.copies(id)?.into_iter().map(|c| c.0).collect())
    }

    /// [`lookup`](Self::lookup) with each copy's state: (location, known damaged, condemned).
    pub fn copies(&self, id: &BlobId) -> Result<Vec<(Location, bool, bool)>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare_cached(
                // Correlated EXISTS, not `IN (SELECT ...)` with ORDER BY: that built a temporary
                // list and sorter on every call, a third of a restore's CPU.
                "SELECT p.id, b.kind, b.offset, b.length, b.raw_length, \
                 EXISTS (SELECT 1 FROM condemned c WHERE c.pack = p.id), \
                 EXISTS (SELECT 1 FROM damaged d WHERE d.pack = p.id AND d.blob IN (x'', b.id)) \
                 FROM blobs b JOIN packs p ON p.n = b.pack WHERE b.id = ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![&id.0[..]], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, bool>(5)?,
                    r.get::<_, bool>(6)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (p, k, o, l, rl, condemned, damaged) = row.map_err(|e| self.err(e))?;
            let pack = PackId::from_slice(&p).ok_or_else(|| Error::corrupt("index cache: bad pack id"))?;
            out.push((location(pack, k, o, l, rl)?, damaged, condemned));
        }
        // Intact copies first, then those outside condemned packs (stable: otherwise index
        // order).
        out.sort_by_key(|c| (c.1, c.2));
        Ok(out)
    }

    /// The copy [`lookup`](Self::lookup) lists first for each of `ids` (sorted ascending,
    /// without repeats): one in a pack that is not condemned if there is one, else the first
    /// in index order; `None` for a blob the index does not hold. `found` gets one call per
    /// id, in order (nothing is collected: a restore asks for every chunk of a snapshot).
    ///
    /// Past `SCAN_FROM` (4,096) ids, when they are at least a quarter (`SCAN_SHARE`) of the
    /// index, one ordered scan of the blob table is merged with them instead of a point
    /// lookup per id: a sequential read of the table costs a fraction of a B-tree descent
    /// per row.
    pub fn locate_sorted(&self, ids: &[BlobId], found: &mut dyn FnMut(Option<Location>)) -> Result<()> {
        debug_assert!(ids.windows(2).all(|w| w[0].0 < w[1].0), "ids sorted, no repeats");
        if ids.len() >= SCAN_FROM && ids.len() as u64 * SCAN_SHARE >= self.blob_rows()? {
            return self.locate_by_scan(ids, found);
        }
        for id in ids {
            found(self.lookup(id)?.into_iter().next());
        }
        Ok(())
    }

    /// Rows of the blob table (a blob stored twice counts twice).
    fn blob_rows(&self) -> Result<u64> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT count(*) FROM blobs", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// [`locate_sorted`](Self::locate_sorted) by one pass over the blob table in key order
    /// (id, then pack number: the order in which [`lookup`](Self::lookup) lists copies).
    fn locate_by_scan(&self, ids: &[BlobId], found: &mut dyn FnMut(Option<Location>)) -> Result<()> {
        let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
            return Ok(());
        };
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        // Pack number -> (pack id, condemned?, wholly damaged?), as `lookup`'s join and
        // EXISTS give them; and the single copies known damaged, by pack number.
        let mut packs: HashMap<i64, (PackId, bool, bool)> = HashMap::new();
        let mut damaged: std::collections::HashSet<(i64, Vec<u8>)> = std::collections::HashSet::new();
        {
            let mut st = conn
                .prepare(
                    "SELECT p.n, p.id, EXISTS (SELECT 1 FROM condemned c WHERE c.pack = p.id), \
                     EXISTS (SELECT 1 FROM damaged d WHERE d.pack = p.id AND d.blob = x'') FROM packs p",
                )
                .map_err(|e| self.err(e))?;
            let mut rows = st.query([]).map_err(|e| self.err(e))?;
            while let Some(r) = rows.next().map_err(|e| self.err(e))? {
                let pack = PackId::from_slice(r.get_ref(1).and_then(|v| Ok(v.as_blob()?)).map_err(|e| self.err(e))?)
                    .ok_or_else(|| Error::corrupt("index cache: bad pack id"))?;
                packs.insert(
                    r.get(0).map_err(|e| self.err(e))?,
                    (
                        pack,
                        r.get(2).map_err(|e| self.err(e))?,
                        r.get(3).map_err(|e| self.err(e))?,
                    ),
                );
            }
            let mut st = conn
                .prepare("SELECT p.n, d.blob FROM damaged d JOIN packs p ON p.id = d.pack WHERE d.blob != x''")
                .map_err(|e| self.err(e))?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
                .map_err(|e| self.err(e))?;
            for row in rows {
                damaged.insert(row.map_err(|e| self.err(e))?);
            }
        }
        let mut st = conn
            .prepare(
                "SELECT id, pack, kind, offset, length, raw_length FROM blobs \
                 WHERE id >= ?1 AND id <= ?2 ORDER BY id, pack",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = st.query(params![&first.0[..], &last.0[..]]).map_err(|e| self.err(e))?;
        // ids[i] is the next id to answer; `best` its preferred copy so far and that copy's
        // rank (known damaged, then condemned: lower is better, the first of a rank wins).
        let mut i = 0;
        let mut best: Option<(Location, (bool, bool))> = None;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let id = r.get_ref(0).and_then(|v| Ok(v.as_blob()?)).map_err(|e| self.err(e))?;
            while i < ids.len() && ids[i].0.as_slice() < id {
                found(best.take().map(|b| b.0));
                i += 1;
            }
            if i == ids.len() {
                break;
            }
            if ids[i].0.as_slice() != id {
                continue;
            }
            // A row whose pack is not listed drops out of `lookup`'s join too.
            let n = r.get::<_, i64>(1).map_err(|e| self.err(e))?;
            let Some(&(pack, condemned, whole)) = packs.get(&n) else {
                continue;
            };
            let rank = (
                whole || (!damaged.is_empty() && damaged.contains(&(n, id.to_vec()))),
                condemned,
            );
            if best.as_ref().is_some_and(|b| b.1 <= rank) {
                continue;
            }
            let loc = location(
                pack,
                r.get(2).map_err(|e| self.err(e))?,
                r.get(3).map_err(|e| self.err(e))?,
                r.get(4).map_err(|e| self.err(e))?,
                r.get(5).map_err(|e| self.err(e))?,
            )?;
            best = Some((loc, rank));
        }
        for _ in i..ids.len() {
            found(best.take().map(|b| b.0));
        }
        Ok(())
    }

    /// All packs known to the index with their sizes.
    pub fn packs(&self) -> Result<Vec<(PackId, u64)>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn.prepare("SELECT id, size FROM packs").map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (p, s) = row.map_err(|e| self.err(e))?;
            out.push((
                PackId::from_slice(&p).ok_or_else(|| Error::corrupt("index cache: bad pack id"))?,
                s as u64,
            ));
        }
        Ok(out)
    }

    /// Blobs recorded for one pack, by offset.
    pub fn pack_blobs(&self, pack: &PackId) -> Result<Vec<(BlobId, Location)>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        // Rows come in the covering index's (pack, id) order and are sorted by offset here:
        // faster than SQLite's sorter, and the ids are copied without an allocation each.
        let mut st = conn
            .prepare_cached(
                "SELECT b.id, b.kind, b.offset, b.length, b.raw_length FROM blobs b JOIN packs p ON p.n = b.pack WHERE p.id = ?1",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = st.query(params![&pack.0[..]]).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let id = r.get_ref(0).and_then(|v| Ok(v.as_blob()?)).map_err(|e| self.err(e))?;
            let id = BlobId(id.try_into().map_err(|_| Error::corrupt("index cache: bad blob id"))?);
            let get = |i| r.get::<_, i64>(i).map_err(|e| self.err(e));
            out.push((id, location(*pack, get(1)?, get(2)?, get(3)?, get(4)?)?));
        }
        out.sort_unstable_by_key(|(id, l)| (l.offset, id.0));
        Ok(out)
    }

    /// (blob count, total sealed bytes, total raw bytes) over the whole index.
    pub fn totals(&self) -> Result<(u64, u64, u64)> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn
            .query_row(
                "SELECT count(*), coalesce(sum(length),0), coalesce(sum(raw_length),0) FROM (SELECT id, min(length) AS length, min(raw_length) AS raw_length FROM blobs GROUP BY id)",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)),
            )
            .map_err(|e| self.err(e))
    }

    pub fn add_snapshots(&self, snaps: &[(SnapshotId, Vec<u8>, &Snapshot)]) -> Result<()> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = &mut *guard;
        let path = self.path.clone();
        let err = |source| Error::Index {
            path: path.clone(),
            source,
        };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO snapshots (id, time_secs, time_nanos, body) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(err)?;
            for (id, body, s) in snaps {
                st.execute(params![&id.0[..], s.time.secs, s.time.nanos as i64, body])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    pub fn remove_snapshots(&self, ids: &[SnapshotId]) -> Result<()> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = &mut *guard;
        let path = self.path.clone();
        let err = |source| Error::Index {
            path: path.clone(),
            source,
        };
        let tx = conn.transaction().map_err(err)?;
        for id in ids {
            tx.execute("DELETE FROM snapshots WHERE id = ?1", params![&id.0[..]])
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Every snapshot's plaintext body (version byte + postcard), oldest first.
    pub fn snapshot_bodies(&self) -> Result<Vec<(SnapshotId, Vec<u8>)>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare("SELECT id, body FROM snapshots ORDER BY time_secs, time_nanos, id")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row.map_err(|e| self.err(e))?;
            out.push((
                SnapshotId::from_slice(&id).ok_or_else(|| Error::corrupt("index cache: bad snapshot id"))?,
                body,
            ));
        }
        Ok(out)
    }

    /// Tombstones known to the cache: (tombstone id, snapshot it names, plaintext body).
    pub fn tombstones(&self) -> Result<Vec<(ObjectId, SnapshotId, Vec<u8>)>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare("SELECT id, snapshot, body FROM tombstones ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, snap, body) = row.map_err(|e| self.err(e))?;
            out.push((
                ObjectId::from_slice(&id).ok_or_else(|| Error::corrupt("index cache: bad tombstone id"))?,
                SnapshotId::from_slice(&snap).ok_or_else(|| Error::corrupt("index cache: bad snapshot id"))?,
                body,
            ));
        }
        Ok(out)
    }

    /// Record tombstones and drop the snapshots they name from the snapshot table.
    pub fn add_tombstones(&self, add: &[(ObjectId, SnapshotId, Vec<u8>)]) -> Result<()> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.path.clone();
        let err = |source| Error::Index {
            path: path.clone(),
            source,
        };
        let tx = guard.transaction().map_err(err)?;
        for (id, snap, body) in add {
            tx.execute(
                "INSERT OR REPLACE INTO tombstones (id, snapshot, body) VALUES (?1, ?2, ?3)",
                params![&id.0[..], &snap.0[..], body],
            )
            .map_err(err)?;
            tx.execute("DELETE FROM snapshots WHERE id = ?1", params![&snap.0[..]])
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    pub fn remove_tombstones(&self, ids: &[ObjectId]) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            conn.execute("DELETE FROM tombstones WHERE id = ?1", params![&id.0[..]])
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    pub fn snapshot_body(&self, id: &SnapshotId) -> Result<Option<Vec<u8>>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT body FROM snapshots WHERE id = ?1", params![&id.0[..]], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| self.err(e))
    }
}

impl Index {
    /// Condemned records known to the cache, by record id.
    pub fn condemned(&self) -> Result<Vec<CondemnedRecord>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut waits: HashMap<ObjectId, Vec<[u8; 32]>> = HashMap::new();
        {
            let mut st = conn
                .prepare("SELECT record, locks FROM condemned_waits")
                .map_err(|e| self.err(e))?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)))
                .map_err(|e| self.err(e))?;
            for row in rows {
                let (rec, locks) = row.map_err(|e| self.err(e))?;
                let rec = ObjectId::from_slice(&rec).ok_or_else(|| Error::corrupt("index cache: bad record id"))?;
                let ids = locks
                    .chunks(32)
                    .map(|c| <[u8; 32]>::try_from(c).map_err(|_| Error::corrupt("index cache: bad lock identity")))
                    .collect::<Result<Vec<_>>>()?;
                waits.insert(rec, ids);
            }
        }
        let mut st = conn
            .prepare("SELECT record, marked, pack FROM condemned ORDER BY record")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out: Vec<CondemnedRecord> = Vec::new();
        for row in rows {
            let (rec, marked, pack) = row.map_err(|e| self.err(e))?;
            let rec = ObjectId::from_slice(&rec).ok_or_else(|| Error::corrupt("index cache: bad record id"))?;
            let pack = PackId::from_slice(&pack).ok_or_else(|| Error::corrupt("index cache: bad pack id"))?;
            match out.last_mut() {
                Some(last) if last.id == rec => last.packs.push(pack),
                _ => out.push(CondemnedRecord {
                    id: rec,
                    marked,
                    packs: vec![pack],
                    waits_for: waits.remove(&rec),
                }),
            }
        }
        Ok(out)
    }

    /// Packs that some cached condemned record lists.
    pub fn condemned_packs(&self) -> Result<std::collections::HashSet<PackId>> {
        Ok(self.condemned()?.into_iter().flat_map(|r| r.packs).collect())
    }

    pub fn set_condemned(&self, add: &[CondemnedRecord], remove: &[ObjectId]) -> Result<()> {
        let path = self.path.clone();
        let err = |source| Error::Index {
            path: path.clone(),
            source,
        };
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = &mut *guard;
        let tx = conn.transaction().map_err(err)?;
        for r in remove {
            tx.execute("DELETE FROM condemned WHERE record = ?1", params![&r.0[..]])
                .map_err(err)?;
            tx.execute("DELETE FROM condemned_waits WHERE record = ?1", params![&r.0[..]])
                .map_err(err)?;
        }
        for r in add {
            for p in &r.packs {
                tx.execute(
                    "INSERT OR IGNORE INTO condemned (record, pack, marked) VALUES (?1, ?2, ?3)",
                    params![&r.id.0[..], &p.0[..], r.marked],
                )
                .map_err(err)?;
            }
            if let Some(w) = &r.waits_for {
                tx.execute(
                    "INSERT OR REPLACE INTO condemned_waits (record, locks) VALUES (?1, ?2)",
                    params![&r.id.0[..], w.concat()],
                )
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Start a fresh set of live blob ids (a temporary table: memory stays bounded).
    pub fn live_reset(&self) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS live (id BLOB PRIMARY KEY) WITHOUT ROWID; DELETE FROM live;",
        )
        .map_err(|e| self.err(e))
    }

    /// Mark blobs live; returns, for each, whether it was new to the set.
    pub fn live_insert(&self, ids: &[BlobId]) -> Result<Vec<bool>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(ids.len());
        conn.execute_batch("SAVEPOINT live_ins").map_err(|e| self.err(e))?;
        {
            let mut st = conn
                .prepare_cached("INSERT OR IGNORE INTO live (id) VALUES (?1)")
                .map_err(|e| self.err(e))?;
            for id in ids {
                out.push(st.execute(params![&id.0[..]]).map_err(|e| self.err(e))? == 1);
            }
        }
        conn.execute_batch("RELEASE live_ins").map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// Does the live set hold an id that no indexed pack holds (condemned ones included)?
    pub fn live_has_unindexed(&self) -> Result<bool> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM live l WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = l.id))",
            [],
            |r| r.get::<_, bool>(0),
        )
        .map_err(|e| self.err(e))
    }

    /// What [`live_has_unindexed`](Self::live_has_unindexed) and
    /// [`packs_without_live`](Self::packs_without_live) answer, for a live set held in
    /// memory as sorted, distinct `ids`: `None` when one of them is in no indexed pack
    /// (condemned packs count), else the packs that hold blobs but none of `ids`, in id
    /// order. One pass over the blob table in key order (as `locate_by_scan`) instead of
    /// an insert per id into the temporary table.
    pub fn packs_without_sorted(&self, ids: &[BlobId]) -> Result<Option<Vec<PackId>>> {
        debug_assert!(ids.windows(2).all(|w| w[0].0 < w[1].0), "ids sorted, no repeats");
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut used: std::collections::HashSet<i64> = std::collections::HashSet::new();
        if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
            let mut st = conn
                .prepare("SELECT id, pack FROM blobs WHERE id >= ?1 AND id <= ?2 ORDER BY id, pack")
                .map_err(|e| self.err(e))?;
            let mut rows = st.query(params![&first.0[..], &last.0[..]]).map_err(|e| self.err(e))?;
            // ids[i] is the next id to meet; `met` says whether a row already held it.
            let (mut i, mut met) = (0, false);
            while let Some(r) = rows.next().map_err(|e| self.err(e))? {
                let id = r.get_ref(0).and_then(|v| Ok(v.as_blob()?)).map_err(|e| self.err(e))?;
                while i < ids.len() && ids[i].0.as_slice() < id {
                    if !met {
                        return Ok(None);
                    }
                    (i, met) = (i + 1, false);
                }
                if i == ids.len() {
                    break;
                }
                if ids[i].0.as_slice() == id {
                    met = true;
                    used.insert(r.get(1).map_err(|e| self.err(e))?);
                }
            }
            // Past the last row: the current id must have been met, and no other be left.
            if i < ids.len() && (!met || i + 1 < ids.len()) {
                return Ok(None);
            }
        }
        let mut st = conn
            .prepare(
                "SELECT p.n, p.id FROM packs p WHERE EXISTS (SELECT 1 FROM blobs b WHERE b.pack = p.n) ORDER BY p.id",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            if used.contains(&r.get::<_, i64>(0).map_err(|e| self.err(e))?) {
                continue;
            }
            let id = r.get_ref(1).and_then(|v| Ok(v.as_blob()?)).map_err(|e| self.err(e))?;
            out.push(PackId::from_slice(id).ok_or_else(|| Error::corrupt("index cache: bad pack id"))?);
        }
        Ok(Some(out))
    }

    /// Is any copy of the blob indexed (condemned packs included)?
    pub fn exists_any(&self, id: &BlobId) -> Result<bool> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.prepare_cached("SELECT 1 FROM blobs WHERE id = ?1 LIMIT 1")
            .and_then(|mut s| s.exists(params![&id.0[..]]))
            .map_err(|e| self.err(e))
    }

    pub fn live_remove(&self, id: &BlobId) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.prepare_cached("DELETE FROM live WHERE id = ?1")
            .and_then(|mut s| s.execute(params![&id.0[..]]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub fn is_live(&self, id: &BlobId) -> Result<bool> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.prepare_cached("SELECT 1 FROM live WHERE id = ?1")
            .and_then(|mut s| s.exists(params![&id.0[..]]))
            .map_err(|e| self.err(e))
    }

    /// Packs that hold indexed blobs, none of them in the live set, in id order. Stops at
    /// the first live blob of each pack, unlike [`pack_usage`](Self::pack_usage).
    pub fn packs_without_live(&self) -> Result<Vec<PackId>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare(
                "SELECT p.id FROM packs p WHERE EXISTS (SELECT 1 FROM blobs b WHERE b.pack = p.n) \
                 AND NOT EXISTS (SELECT 1 FROM blobs b JOIN live l ON l.id = b.id WHERE b.pack = p.n) ORDER BY p.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let id = row.map_err(|e| self.err(e))?;
            out.push(PackId::from_slice(&id).ok_or_else(|| Error::corrupt("index cache: bad pack id"))?);
        }
        Ok(out)
    }

    /// Per pack: size, blob count, live blob count, blob bytes, live blob bytes.
    pub fn pack_usage(&self) -> Result<Vec<PackUsage>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare(
                "SELECT p.id, p.size, count(*), count(l.id), sum(b.length), coalesce(sum(CASE WHEN l.id IS NULL THEN 0 ELSE b.length END), 0) \
                 FROM packs p JOIN blobs b ON b.pack = p.n LEFT JOIN live l ON l.id = b.id GROUP BY p.n ORDER BY p.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, size, blobs, live, bytes, live_bytes) = row.map_err(|e| self.err(e))?;
            out.push(PackUsage {
                id: PackId::from_slice(&id).ok_or_else(|| Error::corrupt("index cache: bad pack id"))?,
                size: size as u64,
                blobs: blobs as u64,
                live_blobs: live as u64,
                bytes: bytes as u64,
                live_bytes: live_bytes as u64,
            });
        }
        Ok(out)
    }

    /// Live blobs of `pack` that have no copy outside `gone` (the packs about to be
    /// deleted, which includes `pack`) other than copies known to be damaged: a damaged copy
    /// is not a copy.
    pub fn live_only_in(&self, pack: &PackId, gone: &std::collections::HashSet<PackId>) -> Result<u64> {
        let mut n = 0;
        for (b, _) in self.pack_blobs(pack)? {
            if self.is_live(&b)?
                && self
                    .copies(&b)?
                    .iter()
                    .all(|(l, damaged, _)| *damaged || gone.contains(&l.pack))
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Packs that only checkpoint deltas list (a backup's interim deltas), with those
    /// deltas.
    pub fn checkpoint_only_packs(&self) -> Result<HashMap<PackId, Vec<ObjectId>>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare(
                "SELECT p.id, dp.delta FROM delta_packs dp JOIN packs p ON p.n = dp.pack JOIN deltas d ON d.id = dp.delta \
                 WHERE p.n IN (SELECT dp2.pack FROM delta_packs dp2 JOIN deltas d2 ON d2.id = dp2.delta \
                 GROUP BY dp2.pack HAVING min(d2.checkpoint) = 1)",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out: HashMap<PackId, Vec<ObjectId>> = HashMap::new();
        for row in rows {
            let (p, d) = row.map_err(|e| self.err(e))?;
            let p = PackId::from_slice(&p).ok_or_else(|| Error::corrupt("index cache: bad pack id"))?;
            let d = ObjectId::from_slice(&d).ok_or_else(|| Error::corrupt("index cache: bad delta id"))?;
            out.entry(p).or_default().push(d);
        }
        Ok(out)
    }

    /// The deltas that list any of `packs`.
    pub fn deltas_with_packs(&self, packs: &[PackId]) -> Result<Vec<ObjectId>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare_cached(
                "SELECT DISTINCT dp.delta FROM delta_packs dp JOIN packs p ON p.n = dp.pack WHERE p.id = ?1",
            )
            .map_err(|e| self.err(e))?;
        let mut out = std::collections::BTreeSet::new();
        for p in packs {
            let rows = st
                .query_map(params![&p.0[..]], |r| r.get::<_, Vec<u8>>(0))
                .map_err(|e| self.err(e))?;
            for r in rows {
                let r = r.map_err(|e| self.err(e))?;
                out.insert(ObjectId::from_slice(&r).ok_or_else(|| Error::corrupt("index cache: bad delta id"))?);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Does another delta list every pack that the deltas of `gone` list? Then dropping
    /// `gone` leaves the cache as a rebuild without them would: the same packs, and their
    /// blob entries, which each delta copies from the pack's header.
    pub fn listed_elsewhere(&self, gone: &std::collections::HashSet<ObjectId>) -> Result<bool> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare_cached(
                "SELECT dp.pack, o.delta FROM delta_packs dp LEFT JOIN delta_packs o \
                 ON o.pack = dp.pack AND o.delta <> dp.delta WHERE dp.delta = ?1",
            )
            .map_err(|e| self.err(e))?;
        for d in gone {
            let rows = st
                .query_map(params![&d.0[..]], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Option<Vec<u8>>>(1)?))
                })
                .map_err(|e| self.err(e))?;
            let mut covered: HashMap<i64, bool> = HashMap::new();
            for r in rows {
                let (pack, other) = r.map_err(|e| self.err(e))?;
                let elsewhere = other
                    .and_then(|o| ObjectId::from_slice(&o))
                    .is_some_and(|o| !gone.contains(&o));
                *covered.entry(pack).or_default() |= elsewhere;
            }
            if covered.values().any(|c| !c) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Forget deltas that no longer exist: their rows and pack listings (the packs and
    /// blob entries stay; see [`listed_elsewhere`](Self::listed_elsewhere)).
    pub fn remove_deltas(&self, ids: &[ObjectId]) -> Result<()> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.path.clone();
        let err = |source| Error::Index {
            path: path.clone(),
            source,
        };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        for id in ids {
            tx.execute("DELETE FROM delta_packs WHERE delta = ?1", params![&id.0[..]])
                .map_err(err)?;
            tx.execute("DELETE FROM deltas WHERE id = ?1", params![&id.0[..]])
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// The packs (with their blob entries) that a delta contributed.
    pub fn delta_packs(&self, delta: &ObjectId) -> Result<Vec<PackId>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare_cached("SELECT p.id FROM delta_packs dp JOIN packs p ON p.n = dp.pack WHERE dp.delta = ?1")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![&delta.0[..]], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let r = r.map_err(|e| self.err(e))?;
            out.push(PackId::from_slice(&r).ok_or_else(|| Error::corrupt("index cache: bad pack id"))?);
        }
        Ok(out)
    }

    /// Remember that a pack is missing or unreadable as a whole (`blob: None`), or that one
    /// blob's copy in it failed to authenticate. Reads then prefer other copies, and dedup
    /// and prune never count it as a copy (see [`has_blob`](Self::has_blob),
    /// [`lookup`](Self::lookup), [`live_only_in`](Self::live_only_in)).
    pub fn note_damage(&self, pack: &PackId, blob: Option<&BlobId>, what: &str, now_ns: i64) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let blob: &[u8] = blob.map(|b| &b.0[..]).unwrap_or(WHOLE_PACK);
        conn.prepare_cached("INSERT OR REPLACE INTO damaged (pack, blob, what, noted) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut s| s.execute(params![&pack.0[..], blob, what, now_ns]))
            .map_err(|e| self.err(e))?;
        conn.execute(
            "INSERT OR REPLACE INTO state (key, value) VALUES ('verify_before', ?1)",
            params![now_ns],
        )
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    /// Everything known damaged: (pack, `None` for the whole pack or the blob, why).
    pub fn damage(&self) -> Result<Vec<(PackId, Option<BlobId>, String)>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare("SELECT pack, blob, what FROM damaged ORDER BY pack, blob")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (p, b, what) = row.map_err(|e| self.err(e))?;
            let pack = PackId::from_slice(&p).ok_or_else(|| Error::corrupt("index cache: bad pack id"))?;
            let blob = if b.is_empty() {
                None
            } else {
                Some(BlobId(
                    b.try_into().map_err(|_| Error::corrupt("index cache: bad blob id"))?,
                ))
            };
            out.push((pack, blob, what));
        }
        Ok(out)
    }

    /// Forget what is known damaged about `pack` (it was read again and found intact, or
    /// it left the index).
    pub fn clear_damage(&self, pack: &PackId) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.prepare_cached("DELETE FROM damaged WHERE pack = ?1")
            .and_then(|mut s| s.execute(params![&pack.0[..]]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Forget the marks a structural check can disprove: a pack found present, of its
    /// indexed size, with a header that agrees with the index, is not missing any more.
    pub fn clear_structural_damage(&self, pack: &PackId) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.prepare_cached(
            "DELETE FROM damaged WHERE pack = ?1 AND blob = x'' AND (what LIKE 'missing%' OR what LIKE 'size%')",
        )
        .and_then(|mut s| s.execute(params![&pack.0[..]]))
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    /// Snapshots taken before this time (ns) may reference data that is missing or damaged
    /// now: a backup does not reuse such a parent's file contents without making sure each
    /// chunk has an intact indexed copy. `None` when nothing was found lost since the last
    /// clean `check`.
    pub fn verify_before(&self) -> Result<Option<i64>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT value FROM state WHERE key = 'verify_before'", [], |r| {
            r.get::<_, i64>(0)
        })
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Set [`verify_before`](Self::verify_before) (`None`: clear it, after a clean check).
    pub fn set_verify_before(&self, ns: Option<i64>) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        match ns {
            Some(ns) => conn.execute(
                "INSERT OR REPLACE INTO state (key, value) VALUES ('verify_before', ?1)",
                params![ns],
            ),
            None => conn.execute("DELETE FROM state WHERE key = 'verify_before'", []),
        }
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    pub fn pack_size(&self, pack: &PackId) -> Result<Option<u64>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT size FROM packs WHERE id = ?1", params![&pack.0[..]], |r| {
            r.get::<_, i64>(0)
        })
        .optional()
        .map(|o| o.map(|s| s as u64))
        .map_err(|e| self.err(e))
    }
}

/// A condemned record as the cache holds it (format-spec §12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CondemnedRecord {
    pub id: ObjectId,
    /// `marked_unix_ns`.
    pub marked: i64,
    pub packs: Vec<PackId>,
    /// The lock identities phase two waits for (`None`: the rule by creation time).
    pub waits_for: Option<Vec<[u8; 32]>>,
}

/// How much of a pack the kept snapshots still use.
#[derive(Clone, Debug)]
pub struct PackUsage {
    pub id: PackId,
    pub size: u64,
    pub blobs: u64,
    pub live_blobs: u64,
    pub bytes: u64,
    pub live_bytes: u64,
}

/// An open read transaction on the index cache; ends when dropped.
pub struct ReadTxn<'a>(&'a Index);

impl Drop for ReadTxn<'_> {
    fn drop(&mut self) {
        self.0.end_read();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{IndexPack, PackEntry};

    #[test]
    fn add_and_lookup() {
        let t = tempfile::tempdir().unwrap();
        let idx = Index::open(&t.path().join("index.db")).unwrap();
        let e = PackEntry {
            kind: BlobKind::Data,
            id: BlobId([1; 32]),
            offset: 6,
            length: 50,
            raw_length: 40,
        };
        let d = IndexDelta {
            packs: vec![IndexPack {
                id: PackId([2; 32]),
                size: 100,
                blobs: vec![e],
            }],
            supersedes: vec![],
            checkpoint: false,
        };
        idx.add_deltas(&[(ObjectId([3; 32]), d)]).unwrap();
        assert!(idx.has_blob(&BlobId([1; 32])).unwrap());
        assert!(!idx.has_blob(&BlobId([9; 32])).unwrap());
        let loc = idx.lookup(&BlobId([1; 32])).unwrap();
        assert_eq!(loc.len(), 1);
        assert_eq!(loc[0].pack, PackId([2; 32]));
        assert_eq!(idx.known_deltas().unwrap(), vec![ObjectId([3; 32])]);
        drop(idx);
        // Damaged cache: reopened empty, not an error.
        std::fs::write(t.path().join("index.db"), b"garbage garbage garbage").unwrap();
        let _ = std::fs::remove_file(t.path().join("index.db-wal"));
        let idx = Index::open(&t.path().join("index.db")).unwrap();
        assert!(idx.known_deltas().unwrap().is_empty());
    }

    /// A first sync of many blobs into an empty cache builds the index by pack after the
    /// rows: afterwards the cache answers exactly as one built row by row, and the index
    /// is there for the next (small) sync.
    #[test]
    fn bulk_load_into_an_empty_cache_keeps_the_index_by_pack() {
        let delta = |seed: u8, blobs: usize| {
            let packs = (0..4u8)
                .map(|p| IndexPack {
                    id: PackId([seed.wrapping_add(p); 32]),
                    size: 1 << 20,
                    blobs: (0..blobs / 4)
                        .map(|i| {
                            let mut id = [0u8; 32];
                            id[..8].copy_from_slice(&(i as u64 * 4 + p as u64).to_le_bytes());
                            id[31] = seed;
                            PackEntry {
                                kind: BlobKind::Data,
                                id: BlobId(*blake3::hash(&id).as_bytes()),
                                offset: 6 + i as u64 * 10,
                                length: 10,
                                raw_length: 8,
                            }
                        })
                        .collect(),
                })
                .collect::<Vec<_>>();
            IndexDelta {
                packs,
                supersedes: vec![],
                checkpoint: false,
            }
        };
        let t = tempfile::tempdir().unwrap();
        let bulk = Index::open(&t.path().join("bulk.db")).unwrap();
        let rows = Index::open(&t.path().join("rows.db")).unwrap();
        let big = delta(1, BULK_ROWS + 400);
        bulk.add_deltas(&[(ObjectId([1; 32]), big.clone())]).unwrap();
        // Row by row: the same rows in deltas below the threshold.
        for (n, p) in big.packs.iter().enumerate() {
            let d = IndexDelta {
                packs: vec![p.clone()],
                supersedes: vec![],
                checkpoint: false,
            };
            rows.add_deltas(&[(ObjectId([n as u8 + 10; 32]), d)]).unwrap();
        }
        let small = delta(9, 8);
        for idx in [&bulk, &rows] {
            idx.add_deltas(&[(ObjectId([99; 32]), small.clone())]).unwrap();
        }
        let has_index = |idx: &Index| -> bool {
            idx.conn
                .lock()
                .unwrap()
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'blobs_by_pack'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap()
                == 1
        };
        assert!(has_index(&bulk) && has_index(&rows));
        for p in big.packs.iter().chain(&small.packs) {
            let (a, b) = (bulk.pack_blobs(&p.id).unwrap(), rows.pack_blobs(&p.id).unwrap());
            assert_eq!(a.len(), p.blobs.len());
            assert_eq!(a, b);
        }
        let some = &big.packs[2].blobs[77];
        assert_eq!(bulk.lookup(&some.id).unwrap(), rows.lookup(&some.id).unwrap());
        assert_eq!(bulk.lookup(&some.id).unwrap()[0].pack, big.packs[2].id);
    }

    /// Blob `i` of the property tests: 0 to 11 may be stored, 12 to 15 never are.
    fn blob(i: u8) -> BlobId {
        BlobId([i * 13 + 1; 32])
    }

    /// An index whose pack `p` holds blob `i` when bit `i` of `packs[p].0` is set, and is
    /// condemned when `packs[p].1`. Pack ids run opposite to pack numbers, so "index order"
    /// (the pack number) and id order differ; copies differ in length by pack.
    fn packed_index(packs: &[(u16, bool)]) -> (tempfile::TempDir, Index) {
        let t = tempfile::tempdir().unwrap();
        let idx = Index::open(&t.path().join("index.db")).unwrap();
        let delta = IndexDelta {
            packs: packs
                .iter()
                .enumerate()
                .map(|(p, (held, _))| IndexPack {
                    id: PackId([200 - p as u8; 32]),
                    size: 1000,
                    blobs: (0..12u8)
                        .filter(|i| held & (1 << i) != 0)
                        .map(|i| PackEntry {
                            kind: BlobKind::Data,
                            id: blob(i),
                            offset: 6 + 10 * i as u64,
                            length: 10 + p as u32,
                            raw_length: 4,
                        })
                        .collect(),
                })
                .collect(),
            supersedes: vec![],
            checkpoint: false,
        };
        idx.add_deltas(&[(ObjectId([3; 32]), delta)]).unwrap();
        let condemned: Vec<PackId> = packs
            .iter()
            .enumerate()
            .filter(|(_, (_, c))| *c)
            .map(|(p, _)| PackId([200 - p as u8; 32]))
            .collect();
        idx.set_condemned(
            &[CondemnedRecord {
                id: ObjectId([4; 32]),
                marked: 0,
                packs: condemned,
                waits_for: None,
            }],
            &[],
        )
        .unwrap();
        (t, idx)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Both ways of `locate_sorted` give `lookup`'s first copy for every id: copies in
        /// several packs, some packs condemned, ids the index does not hold.
        #[test]
        fn locate_sorted_is_lookups_first_copy(
            // Per pack: which of 12 blob ids it holds (bit i), and whether it is condemned.
            packs in proptest::collection::vec((0u16..1 << 12, proptest::bool::ANY), 1..6),
            // Which of 16 ids to ask for (12 indexable, 4 never stored).
            asked in 1u16..,
        ) {
            let (_t, idx) = packed_index(&packs);
            let mut ids: Vec<BlobId> = (0..16u8).filter(|i| asked & (1 << i) != 0).map(blob).collect();
            ids.sort_by_key(|b| b.0);
            let want: Vec<Option<Location>> =
                ids.iter().map(|id| idx.lookup(id).unwrap().into_iter().next()).collect();
            let collect = |scan: bool| {
                let mut got = Vec::new();
                let mut push = |l| got.push(l);
                if scan {
                    idx.locate_by_scan(&ids, &mut push).unwrap();
                } else {
                    idx.locate_sorted(&ids, &mut push).unwrap();
                }
                got
            };
            proptest::prop_assert_eq!(&collect(true), &want);
            proptest::prop_assert_eq!(&collect(false), &want);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The in-memory live set's one scan answers as the temporary table's two queries:
        /// packs holding copies of one blob, empty packs, condemned packs, ids not indexed.
        #[test]
        fn packs_without_sorted_is_the_live_table_queries(
            // Per pack: which of 12 blob ids it holds (bit i), and whether it is condemned.
            packs in proptest::collection::vec((0u16..1 << 12, proptest::bool::ANY), 0..6),
            // Which of 16 ids are live (12 indexable, 4 never stored).
            live in 0u16..,
        ) {
            let (_t, idx) = packed_index(&packs);
            let mut ids: Vec<BlobId> = (0..16u8).filter(|i| live & (1 << i) != 0).map(blob).collect();
            ids.sort_by_key(|b| b.0);
            idx.live_reset().unwrap();
            idx.live_insert(&ids).unwrap();
            let want = if idx.live_has_unindexed().unwrap() {
                None
            } else {
                Some(idx.packs_without_live().unwrap())
            };
            proptest::prop_assert_eq!(idx.packs_without_sorted(&ids).unwrap(), want);
        }
    }

    #[test]
    fn a_cache_of_another_schema_version_is_rebuilt_empty() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("index.db");
        let idx = Index::open(&path).unwrap();
        let entry = |offset| PackEntry {
            kind: BlobKind::Data,
            // Ids in the opposite order to offsets: the listing must sort.
            id: BlobId([100 - offset as u8; 32]),
            offset,
            length: 10,
            raw_length: 4,
        };
        let delta = || IndexDelta {
            packs: vec![IndexPack {
                id: PackId([2; 32]),
                size: 100,
                blobs: vec![entry(40), entry(6), entry(20)],
            }],
            supersedes: vec![],
            checkpoint: false,
        };
        idx.add_deltas(&[(ObjectId([3; 32]), delta())]).unwrap();
        drop(idx);
        Connection::open(&path)
            .unwrap()
            .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION - 1))
            .unwrap();
        let idx = Index::open(&path).unwrap();
        assert!(idx.known_deltas().unwrap().is_empty(), "rebuilt, not migrated");
        let v: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        // The rebuilt schema lists a pack's blobs by offset.
        idx.add_deltas(&[(ObjectId([3; 32]), delta())]).unwrap();
        let offsets: Vec<u64> = idx
            .pack_blobs(&PackId([2; 32]))
            .unwrap()
            .iter()
            .map(|b| b.1.offset)
            .collect();
        assert_eq!(offsets, [6, 20, 40]);
    }

    #[test]
    fn lookup_prefers_a_copy_outside_condemned_packs() {
        let t = tempfile::tempdir().unwrap();
        let idx = Index::open(&t.path().join("index.db")).unwrap();
        let entry = |length| PackEntry {
            kind: BlobKind::Data,
            id: BlobId([1; 32]),
            offset: 6,
            length,
            raw_length: 4,
        };
        let pack = |id, length| IndexPack {
            id: PackId([id; 32]),
            size: 100,
            blobs: vec![entry(length)],
        };
        let delta = IndexDelta {
            packs: vec![pack(9, 20), pack(5, 30)],
            supersedes: vec![],
            checkpoint: false,
        };
        idx.add_deltas(&[(ObjectId([3; 32]), delta)]).unwrap();
        let first = |idx: &Index| {
            let mut got = None;
            idx.locate_by_scan(&[BlobId([1; 32])], &mut |l| got = l).unwrap();
            got.unwrap().pack
        };
        assert_eq!(first(&idx), PackId([9; 32]), "index order: the pack added first");
        idx.set_condemned(
            &[CondemnedRecord {
                id: ObjectId([4; 32]),
                marked: 0,
                packs: vec![PackId([9; 32])],
                waits_for: Some(vec![[1; 32]]),
            }],
            &[],
        )
        .unwrap();
        assert_eq!(first(&idx), PackId([5; 32]), "the copy outside the condemned pack");
        assert_eq!(idx.lookup(&BlobId([1; 32])).unwrap()[0].pack, PackId([5; 32]));
    }
}
