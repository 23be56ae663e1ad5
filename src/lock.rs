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

impl Lock {
    pub fn is_stale(&self, now_ns: i64, my_host: &str, my_boot: &str) -> bool {
        if now_ns.saturating_sub(self.refreshed_unix_ns) > STALE_AFTER.as_nanos() as i64 {
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
        Ok(())
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

/// Read every lock in the repository (unreadable ones are skipped: they may be mid-delete).
pub fn list_locks(repo: &Repository) -> Result<Vec<(ObjectId, Lock)>> {
    let mut out = Vec::new();
    for (name, _) in repo.backend.list(Dir::Locks)? {
        let Some(id) = crate::repo::object_name(&name).map(ObjectId) else {
            continue;
        };
        let Ok(bytes) = repo.backend.read(&Dir::Locks.path(&name)) else {
            continue;
        };
        if let Ok((l, _)) = format::open_object::<Lock>(repo.repo_id(), &repo.cipher, Kind::Lock, &id.0, &bytes, "lock")
        {
            out.push((id, l));
        }
    }
    Ok(out)
}

/// Remove every stale lock; returns how many. A live process's lock is never removed.
pub fn remove_stale(repo: &Repository) -> Result<usize> {
    let (host, boot, now) = (hostname(), boot_id(), now_unix_ns());
    let mut n = 0;
    for (id, l) in list_locks(repo)? {
        if l.is_stale(now, &host, &boot) {
            repo.backend.delete(&Dir::Locks.path(&id.to_hex()))?;
            n += 1;
        }
    }
    Ok(n)
}

pub fn acquire(repo: &Repository, mode: LockMode, purpose: &str) -> Result<LockGuard> {
    let host = hostname();
    let boot = boot_id();
    let pid = std::process::id();
    let now = now_unix_ns();
    let lock = Lock {
        hostname: host.clone(),
        boot_id: boot.clone(),
        pid,
        pid_start: process_start(pid).unwrap_or(0),
        exclusive: mode == LockMode::Exclusive,
        created_unix_ns: now,
        refreshed_unix_ns: now,
        purpose: purpose.to_string(),
    };
    let mut held = Held {
        backend: repo.backend.clone(),
        repo_id: *repo.repo_id(),
        cipher: repo.cipher.clone(),
        lock,
        id: ObjectId([0; 32]),
    };
    held.write()?;
    let my_id = held.id;
    for (id, other) in list_locks(repo)? {
        if id == my_id {
            continue;
        }
        if other.is_stale(now_unix_ns(), &host, &boot) {
            // Left by a killed process or a machine gone for 30 minutes: remove it so the
            // locks folder does not grow. It no longer protects anything.
            let _ = repo.backend.delete(&Dir::Locks.path(&id.to_hex()));
            continue;
        }
        if other.exclusive || mode == LockMode::Exclusive || (purpose == "prune" && other.purpose == "prune") {
            delete_own(&repo.backend, &my_id);
            return Err(Error::Locked(format!(
                "{} {} lock of pid {} on {}",
                if other.exclusive { "an exclusive" } else { "a shared" },
                other.purpose,
                other.pid,
                other.hostname
            )));
        }
    }
    let held = Arc::new(std::sync::Mutex::new(held));
    let (tx, rx) = mpsc::channel::<()>();
    let h2 = held.clone();
    let thread = std::thread::Builder::new()
        .name("lock-refresh".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(REFRESH_EVERY) {
                let mut h = h2.lock().unwrap_or_else(|p| p.into_inner());
                let (old, old_time) = (h.id, h.lock.refreshed_unix_ns);
                h.lock.refreshed_unix_ns = now_unix_ns();
                if h.write().is_ok() {
                    delete_own(&h.backend, &old);
                } else {
                    // Keep the time of the last refresh that reached the repository:
                    // `still_valid` must judge by what other clients can see.
                    h.id = old;
                    h.lock.refreshed_unix_ns = old_time;
                    tracing::warn!("could not refresh the repository lock");
                }
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
    /// Still ours and fresh? A backup asks before writing its snapshot: if the lock went
    /// stale (the process was suspended for 30 minutes), a prune may have deleted packs
    /// this backup relies on, so the snapshot must not be written.
    pub fn still_valid(&self) -> bool {
        let h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let fresh =
            now_unix_ns().saturating_sub(h.lock.refreshed_unix_ns) < STALE_AFTER.as_nanos() as i64 - 60_000_000_000;
        fresh && h.backend.exists(&Dir::Locks.path(&h.id.to_hex())).unwrap_or(false)
    }

    /// When this lock was first taken.
    pub fn created_unix_ns(&self) -> i64 {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).lock.created_unix_ns
    }

    /// The lock object's current name.
    pub fn object_id(&self) -> ObjectId {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).id
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
