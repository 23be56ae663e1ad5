//! What a process removes when SIGINT or SIGTERM stops it: the temp files of its writes in
//! progress and its lock objects (README "Exit codes", format-spec §14).
//!
//! A process-wide registry. The local backend registers each temp file as it creates it
//! ([`create_temp`]) and forgets it once renamed or removed; the lock code registers each
//! lock object before writing it and forgets it once deleted. The binary's signal thread
//! calls [`interrupted`], which removes everything registered and keeps the registry
//! locked until the exit (so no temp file appears between the clean-up and the exit). A temp file
//! removed under a running write makes that write fail at its rename: no object is ever
//! half written, since only renamed names count.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::Backend;

struct Registry {
    /// Set by [`interrupted`]: no temp file is created any more (a second safeguard: the
    /// registry stays locked after it).
    closing: bool,
    temps: Vec<PathBuf>,
    objects: Vec<(Arc<dyn Backend>, String)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    closing: false,
    temps: Vec::new(),
    objects: Vec::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Create the temp file `path` with `create` and register it, unless the process is being
/// stopped. Both happen under the registry's lock, so [`interrupted`] either removes the
/// file or runs before it is created (and then it never is).
pub fn create_temp<T>(path: &Path, create: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    let mut r = registry();
    if r.closing {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Interrupted,
            "the process is stopping (interrupted by a signal)",
        ));
    }
    let made = create()?;
    r.temps.push(path.to_path_buf());
    Ok(made)
}

/// The temp file `path` was renamed into place or removed.
pub fn forget_temp(path: &Path) {
    let mut r = registry();
    if let Some(i) = r.temps.iter().position(|p| p == path) {
        r.temps.swap_remove(i);
    }
}

/// The object `path` of `backend` (a lock) is about to be written: [`interrupted`] deletes
/// it (a missing object counts as deleted).
pub fn register_object(backend: &Arc<dyn Backend>, path: &str) {
    registry().objects.push((backend.clone(), path.to_string()));
}

/// The object `path` was deleted (or never written).
pub fn forget_object(path: &str) {
    let mut r = registry();
    if let Some(i) = r.objects.iter().position(|(_, p)| p == path) {
        r.objects.swap_remove(i);
    }
}

/// Remove every registered temp file, then delete every registered object. Returns a
/// message for each that could not be removed. Call it once, just before the process
/// exits: it leaves the registry locked, so from then on a thread that would create a temp
/// file, or finish or remove a write or a lock, waits for the exit instead of failing
/// (its temp file gone) and racing the exit with an error and an exit code of its own.
pub fn interrupted() -> Vec<String> {
    let mut r = registry();
    r.closing = true;
    let mut failed = Vec::new();
    for p in std::mem::take(&mut r.temps) {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => failed.push(format!("{}: could not remove this temporary file: {e}", p.display())),
        }
    }
    // After the temp files: a write that renamed its file before that removal is
    // visible now, and its object is deleted here. A store that does not answer (its
    // requests retried for minutes) must not hold the stop: the deletions get
    // [`STOP_WAIT`], then the process exits with the locks named.
    let objects = std::mem::take(&mut r.objects);
    let names: Vec<(String, String)> = objects.iter().map(|(b, p)| (p.clone(), b.location())).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let started = std::thread::Builder::new().name("stop-cleanup".into()).spawn(move || {
        for (backend, p) in objects {
            let res = backend.delete(&p);
            if tx.send((p, backend.location(), res)).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + STOP_WAIT;
    let mut done = std::collections::HashSet::new();
    if started.is_ok() {
        while done.len() < names.len() {
            let Ok((p, location, res)) = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            else {
                break;
            };
            if let Err(e) = res {
                failed.push(format!("{p} in {location}: could not remove this lock: {e}"));
            }
            done.insert(p);
        }
    }
    for (p, location) in names.iter().filter(|(p, _)| !done.contains(p)) {
        failed.push(format!(
            "{p} in {location}: the store did not confirm this lock's removal within {} s; if it is still \
             there, other clients wait for it until it goes stale (30 minutes without a refresh) or \
             `projectclone unlock` removes it",
            STOP_WAIT.as_secs()
        ));
    }
    std::mem::forget(r);
    failed
}

/// How long a stop waits for its lock objects to be deleted.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
