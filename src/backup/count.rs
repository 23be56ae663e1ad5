//! The count of a backup's totals: when progress is shown (a bar, `--json-status`), a
//! thread walks the sources ahead of the backup, as restic's scanner does, and announces
//! the files and bytes the backup will read, so the renderer can show a percentage and an
//! ETA once it is done. It makes the walk's own decisions ([`list_dir`], [`visit`]: the
//! `--exclude` patterns, `.projectcloneignore` files, `--exclude-caches`,
//! `--one-file-system`, `--exclude-larger-than`, the repository and the cache) and only
//! lists directories and `lstat`s entries. What it cannot read it skips: the walk reports
//! errors. Without progress shown it does not run (an unchanged re-backup reads little
//! else than what this would).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ignore::gitignore::Gitignore;

use super::rules::Rules;
use super::{BackupOptions, Skip, Visit, build_excludes, list_dir, visit};
use crate::progress::Progress;

struct Counter<'a> {
    skip: Skip,
    rules: Rules,
    excludes: Gitignore,
    ignores: Vec<Gitignore>,
    source_dev: u64,
    progress: &'a dyn Progress,
    stop: &'a AtomicBool,
}

/// Announce to `progress` the regular files under `sources` that a backup with `opts`
/// reads, as `walk_sources` visits them; stops early when `stop` is set. Returns whether
/// it counted everything.
pub(super) fn count_sources(
    sources: &[PathBuf],
    opts: &BackupOptions,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> bool {
    let Ok(excludes) = build_excludes(Path::new("/"), &opts.excludes) else {
        return false;
    };
    let mut c = Counter {
        skip: Skip::new(&opts.skip),
        rules: opts.rules(),
        excludes,
        ignores: Vec::new(),
        source_dev: 0,
        progress,
        stop,
    };
    if let [src] = sources
        && let Ok(md) = std::fs::symlink_metadata(src)
        && md.is_dir()
    {
        // One directory: its entries are the snapshot root's (anchored at it).
        let Ok(ex) = build_excludes(src, &opts.excludes) else {
            return false;
        };
        c.excludes = ex;
        c.source_dev = md.dev();
        c.dir(src);
    } else {
        // Each source is an entry of a synthetic root, anchored at its parent.
        for s in sources {
            let Ok(ex) = build_excludes(s.parent().unwrap_or(Path::new("/")), &opts.excludes) else {
                return false;
            };
            c.excludes = ex;
            c.source_dev = std::fs::symlink_metadata(s).map(|m| m.dev()).unwrap_or(0);
            c.entry(s);
        }
    }
    !stop.load(Ordering::Relaxed)
}

impl Counter<'_> {
    fn dir(&mut self, path: &Path) {
        let listing = list_dir(path, &self.rules);
        let pushed = match listing.ignore {
            Some(g) => {
                self.ignores.push(g);
                true
            }
            None => false,
        };
        for (_, full) in &listing.entries {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            self.entry(full);
        }
        if pushed {
            self.ignores.pop();
        }
    }

    fn entry(&mut self, full: &Path) {
        let Ok(md) = std::fs::symlink_metadata(full) else {
            return;
        };
        let v = visit(
            &self.skip,
            &self.excludes,
            &self.ignores,
            &self.rules,
            self.source_dev,
            full,
            &md,
        );
        match v {
            Visit::Keep if md.is_dir() => self.dir(full),
            // The walk counts only regular files as files.
            Visit::Keep if md.file_type().is_file() => self.progress.add_total(1, md.len()),
            _ => {}
        }
    }
}
