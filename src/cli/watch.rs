//! `watch [PATH]`: back up when the project has gone quiet after changes.
//!
//! The model, as README says it: a backup runs once no file under PATH has changed for
//! `--quiet-for` after a change, but never sooner than `--min-interval` after the previous
//! backup, and never later than `--max-interval` after the first change not yet backed up
//! (so steady activity is still saved). No change, no backup. Changes are inotify events
//! (the `notify` crate) for PATH and everything below it; events inside the repository, the
//! cache and `.git`'s lock files are ignored, as are reads.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use notify::{EventKind, RecursiveMode, Watcher};

use super::{Command, Ctx};

/// How `watch` is timed.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub quiet_for: Duration,
    pub min_interval: Duration,
    pub max_interval: Duration,
}

/// `--quiet-for 30s`, `5m`, `1h`: humantime's durations.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (for example 30s, 5m, 1h)"))
}

/// Whether an event says something under the project changed (not a read, not our own
/// writes to a repository or cache inside it, not git's lock files).
fn relevant(event: &notify::Event, ignored: &[PathBuf]) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    let git_lock =
        |p: &Path| p.components().any(|c| c.as_os_str() == ".git") && p.extension().is_some_and(|e| e == "lock");
    event
        .paths
        .iter()
        .any(|p| !git_lock(p) && !ignored.iter().any(|i| p.starts_with(i)))
}

/// Watch `path` and back it up as [`Timing`] says, with `tags`, until stopped.
pub fn watch(ctx: &Ctx, path: Option<&Path>, timing: Timing, tags: &[String], initial: bool) -> Result<u8> {
    if timing.min_interval > timing.max_interval {
        bail!(
            "--min-interval ({}) is longer than --max-interval ({}): a change could never be backed up in time",
            humantime::format_duration(timing.min_interval),
            humantime::format_duration(timing.max_interval)
        );
    }
    let dir = match path {
        Some(p) => std::fs::canonicalize(p).with_context(|| format!("{}", p.display()))?,
        None => std::env::current_dir().context("the current directory")?,
    };
    if !dir.is_dir() {
        bail!("{}: not a folder; `watch` watches a project folder", dir.display());
    }
    let mut ignored = Vec::new();
    if let Ok((loc, _)) = ctx.repo_location()
        && let Some(local) = loc.local_path()
        && let Ok(c) = std::fs::canonicalize(local)
    {
        ignored.push(c);
    }
    if let Ok(c) = ctx.cache().and_then(|c| Ok(std::fs::canonicalize(c)?)) {
        ignored.push(c);
    }
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        let _ = tx.send(e);
    })
    .context("cannot watch for changes (inotify)")?;
    watcher.watch(&dir, RecursiveMode::Recursive).with_context(|| {
        format!(
            "cannot watch {} for changes (a tree of more folders than fs.inotify.max_user_watches allows?)",
            dir.display()
        )
    })?;
    let backup = || -> Result<u8> {
        let cmd = Command::Backup {
            paths: vec![dir.clone()],
            tags: tags.to_vec(),
            note: None,
            excludes: Vec::new(),
            dry_run: false,
            compression: None,
            host: None,
            stdin: false,
            stdin_name: None,
            exclude_caches: false,
            one_file_system: false,
            exclude_larger_than: None,
            interactive: false,
        };
        super::run_cmd(ctx, &cmd)
    };
    super::output::watching(ctx.cli.json, &dir, &timing);
    let mut last_backup: Option<Instant> = None;
    if initial {
        report_backup(ctx, backup());
        last_backup = Some(Instant::now());
    }
    loop {
        crate::signals::set_idle(Some(format!("stopped watching {}", dir.display())));
        // Wait for a change.
        let first = loop {
            match rx.recv() {
                Ok(Ok(e)) if relevant(&e, &ignored) => break Instant::now(),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("watch: {e}"),
                Err(_) => bail!("the change watcher stopped"),
            }
        };
        let mut last_change = first;
        // Then for quiet, within the bounds.
        loop {
            let quiet_at = last_change + timing.quiet_for;
            let latest = first + timing.max_interval;
            let mut at = quiet_at.min(latest);
            if let Some(b) = last_backup {
                at = at.max(b + timing.min_interval);
            }
            let Some(wait) = at.checked_duration_since(Instant::now()) else {
                break;
            };
            match rx.recv_timeout(wait) {
                Ok(Ok(e)) if relevant(&e, &ignored) => last_change = Instant::now(),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the change watcher stopped"),
            }
        }
        crate::signals::set_idle(None);
        report_backup(ctx, backup());
        last_backup = Some(Instant::now());
    }
}

/// A backup that failed does not end the watch: it is said, and the next change tries again.
fn report_backup(ctx: &Ctx, r: Result<u8>) {
    match r {
        Ok(0) | Ok(3) => {}
        Ok(code) => super::output::warn(
            &ctx.cli,
            &format!("the backup ended with exit code {code}; watching on"),
        ),
        Err(e) => super::output::warn(&ctx.cli, &format!("the backup failed: {e:#}; watching on")),
    }
}
