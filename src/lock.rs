//! Repository locks (`locks/`): shared for backup, restore, check and prune's first
//! phase; exclusive for key and repair commands. A lock is refreshed while held by
//! writing a new lock object and deleting the old one (objects are never rewritten).
//! A lock is stale when not refreshed for 30 minutes, or at once when it was taken on
//! this boot of this host by a process that no longer exists.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backend::{Backend, Dir, cleanup};
use crate::crypto::{Cipher, random_bytes};
use crate::error::{Error, Result};
use crate::format::{self, Kind, Lock};
use crate::id::ObjectId;
use crate::repo::{Repository, now_unix_ns};

pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Start time (clock ticks since boot) of a process, from `/proc/PID/stat` field 22.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

pub fn hostname() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Margin kept below [`STALE_AFTER`]: a holder that has not refreshed for longer than
/// `STALE_AFTER - VALIDITY_MARGIN` no longer counts on its lock.
const VALIDITY_MARGIN: Duration = Duration::from_secs(60);

impl Lock {
    /// Stale by the reader's clock: `now_ns` against the recorded refresh time. Used when
    /// the store does not report write times.
    pub fn is_stale(&self, now_ns: i64, my_host: &str, my_boot: &str) -> bool {
        self.is_stale_after(now_ns.saturating_sub(self.refreshed_unix_ns), my_host, my_boot)
    }

    /// Stale when not refreshed for 30 minutes (`age_ns` since the last refresh), or at
    /// once when taken on this boot of this host by a process that no longer exists.
    pub fn is_stale_after(&self, age_ns: i64, my_host: &str, my_boot: &str) -> bool {
        if age_ns > STALE_AFTER.as_nanos() as i64 {
            return true;
        }
        // Without a recorded start time (no /proc when it was taken) we cannot tell a
        // reused pid apart, so only the 30-minute rule applies.
        if self.pid_start != 0 && self.hostname == my_host && !my_boot.is_empty() && self.boot_id == my_boot {
            return process_start(self.pid) != Some(self.pid_start);
        }
        false
    }
}

struct Held {
    backend: Arc<dyn Backend>,
    repo_id: [u8; 32],
    cipher: Cipher,
    lock: Lock,
    id: ObjectId,
    /// This process's clock when the current lock object was written.
    written_at: i64,
    /// The lock can no longer be counted on: the process was suspended past the point
    /// where others may judge it stale, or its object disappeared (removed as stale).
    lost: bool,
}

impl Held {
    fn write(&mut self) -> Result<()> {
        self.id = ObjectId(random_bytes());
        let plain = format::encode_versioned(1, &self.lock);
        let bytes = format::seal_object(&self.repo_id, &self.cipher, Kind::Lock, &self.id.0, &plain);
        let path = Dir::Locks.path(&self.id.to_hex());
        // Registered first: a SIGINT or SIGTERM deletes it, even while it is being written.
        cleanup::register_object(&self.backend, &path);
        self.backend
            .write_new(&path, &bytes)
            .inspect_err(|_| cleanup::forget_object(&path))?;
        self.written_at = now_unix_ns();
        Ok(())
    }

    /// Write the lock anew under a new name, then delete the previous object. A lock that
    /// went unrefreshed for too long (a suspended process), or whose object is gone, is
    /// lost instead: refreshing it would hide that another client may have taken over.
    fn refresh(&mut self) {
        if self.lost {
            return;
        }
        let now = now_unix_ns();
        if now.saturating_sub(self.written_at) >= (STALE_AFTER - VALIDITY_MARGIN).as_nanos() as i64 {
            tracing::warn!("the repository lock was not refreshed for 29 minutes (process suspended?); it is lost");
            self.lost = true;
            return;
        }
        let old = Dir::Locks.path(&self.id.to_hex());
        match self.backend.exists(&old) {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("the repository lock object was removed by another client; the lock is lost");
                self.lost = true;
                return;
            }
            Err(e) => {
                tracing::warn!("could not refresh the repository lock: {e}");
                return;
            }
        }
        let (old_id, old_time, old_written) = (self.id, self.lock.refreshed_unix_ns, self.written_at);
        self.lock.refreshed_unix_ns = now;
        if self.write().is_ok() {
            delete_own(&self.backend, &old_id);
        } else {
            // Keep the time of the last refresh that reached the repository: `still_valid`
            // must judge by what other clients can see.
            self.id = old_id;
            self.lock.refreshed_unix_ns = old_time;
            self.written_at = old_written;
            tracing::warn!("could not refresh the repository lock");
        }
    }
}

/// Delete a lock object of ours (best effort) and stop registering it for a signal's clean-up.
fn delete_own(backend: &Arc<dyn Backend>, id: &ObjectId) {
    let path = Dir::Locks.path(&id.to_hex());
    let _ = backend.delete(&path);
    cleanup::forget_object(&path);
}

/// A held lock; dropping it stops the refresher and removes the lock object.
pub struct LockGuard {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    held: Arc<std::sync::Mutex<Held>>,
}

/// A lock object as a survey of `locks/` found it.
#[derive(Clone, Debug)]
pub struct Surveyed {
    pub id: ObjectId,
    pub lock: Lock,
    /// Time since its last refresh: on the store's clock when the store reports write
    /// times, else on this client's clock against the refresh time the holder recorded.
    pub age_ns: i64,
    /// Judged stale ([`Lock::is_stale_after`]).
    pub stale: bool,
}

/// "Now" on the store's clock: the write time of a lock object written just now (our
/// own, refreshed), or `None` without a lock or when the store does not report times.
pub fn store_now(repo: &Repository, own: Option<&LockGuard>) -> Result<Option<i64>> {
    let Some(g) = own else { return Ok(None) };
    let id = {
        let mut h = g.held.lock().unwrap_or_else(|p| p.into_inner());
        h.refresh();
        h.id
    };
    Ok(repo
        .backend
        .list_info(Dir::Locks)?
        .into_iter()
        .find(|o| o.name == id.to_hex())
        .and_then(|o| o.modified_ns))
}

/// Read every lock object (unreadable ones are skipped: they may be mid-delete) and judge
/// each. `clock` is the name of a lock object written just now: its write time on the
/// store's clock is "now" for the ages, so no two clients' clocks are compared; it is not
/// in the result.
fn survey_with(repo: &Repository, clock: Option<ObjectId>) -> Result<Vec<Surveyed>> {
    let (host, boot, now) = (hostname(), boot_id(), now_unix_ns());
    let listed = repo.backend.list_info(Dir::Locks)?;
    let store_now = clock.and_then(|c| listed.iter().find(|o| o.name == c.to_hex()).and_then(|o| o.modified_ns));
    let mut out = Vec::new();
    for o in listed {
        let Some(id) = crate::repo::object_name(&o.name).map(ObjectId) else {
            continue;
        };
        if Some(id) == clock {
            continue; // our own, written just now: every caller leaves it out
        }
        let Ok(bytes) = repo
            .backend
            .read_object(&Dir::Locks.path(&o.name), format::MAX_SMALL_OBJECT)
        else {
            continue;
        };
        let Ok((lock, _)) =
            format::open_object::<Lock>(repo.repo_id(), &repo.cipher, Kind::Lock, &id.0, &bytes, "lock")
        else {
            continue;
        };
        let age_ns = match (store_now, o.modified_ns) {
            (Some(n), Some(m)) => n.saturating_sub(m),
            _ => now.saturating_sub(lock.refreshed_unix_ns),
        };
        let stale = lock.is_stale_after(age_ns, &host, &boot);
        out.push(Surveyed {
            id,
            lock,
            age_ns,
            stale,
        });
    }
    Ok(out)
}

/// `survey_with` for a client that may hold a lock: `own` is refreshed first so its new
/// object dates "now" on the store's clock. Without one (a dry run writes nothing) ages are
/// judged on this client's clock. Our own objects are not in the result.
pub fn survey(repo: &Repository, own: Option<&LockGuard>) -> Result<Vec<Surveyed>> {
    match own {
        Some(g) => {
            let id = {
                let mut h = g.held.lock().unwrap_or_else(|p| p.into_inner());
                h.refresh();
                h.id
            };
            Ok(survey_with(repo, Some(id))?
                .into_iter()
                .filter(|s| s.id != id)
                .collect())
        }
        None => survey_with(repo, None),
    }
}

/// `survey_with` for a client that holds no lock (`unlock`): a probe lock object is
/// written so its write time gives "now" on the store's clock, and removed again. A store
/// that refuses the write (read-only) is judged on this client's clock.
fn survey_probed(repo: &Repository) -> Result<Vec<Surveyed>> {
    let mut probe = Held::new(repo, LockMode::Shared, "clock");
    if probe.write().is_err() {
        return survey_with(repo, None);
    }
    let res = survey_with(repo, Some(probe.id));
    delete_own(&repo.backend, &probe.id);
    Ok(res?.into_iter().filter(|s| s.id != probe.id).collect())
}

/// Remove every stale lock; returns how many. A live process's lock is never removed.
pub fn remove_stale(repo: &Repository) -> Result<usize> {
    let mut n = 0;
    for s in survey_probed(repo)? {
        if s.stale {
            repo.backend.delete(&Dir::Locks.path(&s.id.to_hex()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Remove every lock, live ones too (`unlock --remove-all`): for a lock whose holder is
/// known to be gone although it does not look stale (a machine that will not come back).
/// Returns the locks removed.
pub fn remove_all(repo: &Repository) -> Result<Vec<Surveyed>> {
    let all = survey_probed(repo)?;
    for s in &all {
        repo.backend.delete(&Dir::Locks.path(&s.id.to_hex()))?;
    }
    Ok(all)
}

/// How a live lock is described in "locked" errors.
pub fn describe(s: &Surveyed) -> String {
    let age = s.age_ns.max(0) as u64 / 1_000_000_000;
    let left = STALE_AFTER.as_secs().saturating_sub(age);
    format!(
        "{} {} lock of pid {} on {} (last refreshed {} ago{}; it goes stale if not refreshed for {} more)",
        if s.lock.exclusive { "an exclusive" } else { "a shared" },
        // Written by another client: escaped, so it cannot reach a terminal as control bytes.
        crate::format_name(s.lock.purpose.as_bytes()),
        s.lock.pid,
        crate::format_name(s.lock.hostname.as_bytes()),
        humantime::format_duration(Duration::from_secs(age)),
        if s.age_ns < 0 {
            ", in the future by the clock that judged it"
        } else {
            ""
        },
        humantime::format_duration(Duration::from_secs(left)),
    )
}

impl Held {
    fn new(repo: &Repository, mode: LockMode, purpose: &str) -> Held {
        let pid = std::process::id();
        let now = now_unix_ns();
        Held {
            backend: repo.backend.clone(),
            repo_id: *repo.repo_id(),
            cipher: repo.cipher.clone(),
            lock: Lock {
                hostname: hostname(),
                boot_id: boot_id(),
                pid,
                pid_start: process_start(pid).unwrap_or(0),
                exclusive: mode == LockMode::Exclusive,
                created_unix_ns: now,
                refreshed_unix_ns: now,
                purpose: purpose.to_string(),
            },
            id: ObjectId([0; 32]),
            written_at: now,
            lost: false,
        }
    }
}

pub fn acquire(repo: &Repository, mode: LockMode, purpose: &str) -> Result<LockGuard> {
    let mut held = Held::new(repo, mode, purpose);
    held.write().map_err(|e| match e {
        Error::Io { path, source } => Error::LockNotWritten {
            dir: path.parent().map(|d| d.to_path_buf()).unwrap_or(path),
            source,
        },
        e => e,
    })?;
    let my_id = held.id;
    for other in survey_with(repo, Some(my_id))? {
        if other.id == my_id {
            continue;
        }
        if other.stale {
            // Left by a killed process or a machine gone for 30 minutes: remove it so the
            // locks folder does not grow. It no longer protects anything.
            let _ = repo.backend.delete(&Dir::Locks.path(&other.id.to_hex()));
            continue;
        }
        if other.lock.exclusive || mode == LockMode::Exclusive || (purpose == "prune" && other.lock.purpose == "prune")
        {
            delete_own(&repo.backend, &my_id);
            return Err(Error::Locked(describe(&other)));
        }
    }
    let held = Arc::new(std::sync::Mutex::new(held));
    let (tx, rx) = mpsc::channel::<()>();
    let h2 = held.clone();
    let thread = std::thread::Builder::new()
        .name("lock-refresh".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(REFRESH_EVERY) {
                h2.lock().unwrap_or_else(|p| p.into_inner()).refresh();
            }
        })
        .map_err(|e| Error::io("lock refresh thread", e))?;
    Ok(LockGuard {
        stop: Some(tx),
        thread: Some(thread),
        held,
    })
}

impl LockGuard {
    /// Still ours and fresh? Asked before every step that relies on the lock: a backup
    /// before writing its snapshot, a prune before each deletion and before condemning. A
    /// lock that went stale (the process was suspended for 30 minutes) or whose object is
    /// gone may have let another client act as if we were not there.
    pub fn still_valid(&self) -> bool {
        let h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = now_unix_ns().saturating_sub(h.written_at) < (STALE_AFTER - VALIDITY_MARGIN).as_nanos() as i64;
        !h.lost && fresh && h.backend.exists(&Dir::Locks.path(&h.id.to_hex())).unwrap_or(false)
    }

    /// When this lock was first taken.
    pub fn created_unix_ns(&self) -> i64 {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).lock.created_unix_ns
    }

    /// The lock object's current name.
    pub fn object_id(&self) -> ObjectId {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).id
    }

    /// The lock's identity (the same across refreshes).
    pub fn identity(&self) -> [u8; 32] {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).lock.identity()
    }

    /// Pretend the last refresh happened `ago` earlier (tests of a suspended process).
    #[doc(hidden)]
    pub fn backdate_for_tests(&self, ago: Duration) {
        let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        h.written_at -= ago.as_nanos() as i64;
    }

    /// Refresh now, as the background thread does every 5 minutes.
    #[doc(hidden)]
    pub fn refresh_for_tests(&self) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).refresh();
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        delete_own(&h.backend, &h.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(pid: u32, pid_start: u64, refreshed: i64) -> Lock {
        Lock {
            hostname: "h".into(),
            boot_id: "b".into(),
            pid,
            pid_start,
            exclusive: false,
            created_unix_ns: refreshed,
            refreshed_unix_ns: refreshed,
            purpose: "test".into(),
        }
    }

    #[test]
    fn staleness() {
        let now = now_unix_ns();
        let me = std::process::id();
        let start = process_start(me).expect("own /proc entry");
        // Live process on this boot: not stale.
        assert!(!lock(me, start, now).is_stale(now, "h", "b"));
        // Same pid but another start time (pid reused): stale.
        assert!(lock(me, start + 1, now).is_stale(now, "h", "b"));
        // Another host: only the 30-minute rule applies.
        assert!(!lock(me, start + 1, now).is_stale(now, "other", "b"));
        let old = now - STALE_AFTER.as_nanos() as i64 - 1;
        assert!(lock(me, start, old).is_stale(now, "other", "b"));
        // A pid that cannot exist.
        assert!(lock(u32::MAX - 1, 1, now).is_stale(now, "h", "b"));
    }
}
