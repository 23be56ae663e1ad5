//! Read-ahead for the backup walker.
//!
//! The walker visits one entry at a time, so on a cold page cache every `stat`, directory
//! listing and file read waits for the disk in turn: on the 1.1 GB reference tree that
//! waiting was half the wall time of a first backup and most of an unchanged re-backup.
//! A few threads walk the same trees just ahead of it and only ask the kernel for what the
//! walker will need next — directory entries and inodes (`readdir`, `fstatat`) and, when
//! file contents will be read, the start of each file (`posix_fadvise(WILLNEED)`, which
//! queues the reads without waiting for them). The disk then sees many requests at once
//! and the walker finds them cached. Nothing read here is used as data: the walker reads
//! and checks everything itself, so a file that changes in between is still captured
//! correctly; the read-ahead only makes it faster.
//!
//! The threads take their work in the walker's own order — the pending directory or file
//! that comes first in the walk, whatever directory it is in — so the lead is spent on what
//! the walker needs next and many files of one directory are read ahead at once.
//!
//! The lead is bounded: each entry weighs [`ENTRY_WEIGHT`] plus the bytes read ahead for
//! it, the walker reports the same weight for every entry it visits, and the threads wait
//! while they are more than `MAX_LEAD` ahead, so a huge tree does not flood the page cache.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroU64;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::backup::rules::{Rules, Verdict};
use crate::backup::{IGNORE_FILE, Skip, ignored};

/// Threads issuing read-ahead. They mostly wait on the disk, so more than the cores.
const THREADS: usize = 8;
/// How far ahead of the walker the threads may run, in entry weights.
const MAX_LEAD: u64 = 256 * 1024 * 1024;
/// The weight of one entry beyond its data (an inode and a directory entry).
pub const ENTRY_WEIGHT: u64 = 4096;
/// At most this much of each file is read ahead; the kernel's own read-ahead follows the
/// walker's sequential reads from there.
const FILE_AHEAD: u64 = 8 * 1024 * 1024;

/// The weight of one visited entry; the walker and the threads must agree on it.
pub fn weight(is_file: bool, size: u64, data: bool) -> u64 {
    if is_file && data {
        ENTRY_WEIGHT + size.min(FILE_AHEAD)
    } else {
        ENTRY_WEIGHT
    }
}

/// One piece of read-ahead work. Tasks are taken in the walker's order (see [`Ord`] below),
/// so the threads always serve the walker's nearest future: a thread that has nothing
/// near to do does not wander into a sibling subtree the walker will reach only much later
/// (a 100k-file directory beside a few big ones made a first backup take 1.8 times as long,
/// because the lead went to the big files' data while the walker waited on small ones).
struct Task {
    /// Which source it belongs to: sources are walked one after another.
    root: usize,
    path: PathBuf,
    kind: Kind,
}

enum Kind {
    /// List a directory and queue its entries. `weigh`: the walker counts this directory
    /// as an entry (false for a lone source, which the walker lists without visiting it
    /// as an entry).
    Dir {
        excludes: Arc<Gitignore>,
        ignores: Arc<Vec<Gitignore>>,
        weigh: bool,
    },
    /// Load one non-directory entry's inode and, for a file whose contents will be read,
    /// start reading its first bytes.
    Entry,
}

impl Task {
    /// Walk order within a source is the order of paths compared component by component
    /// (the walker visits a directory's entries in byte order of their names, each
    /// subdirectory's contents right after it). Comparing the bytes with `/` taken as the
    /// lowest byte gives exactly that: names contain neither `/` nor NUL.
    fn walk_order(&self, other: &Task) -> std::cmp::Ordering {
        fn key(p: &Path) -> impl Iterator<Item = u8> + '_ {
            let bytes = p.as_os_str().as_bytes().iter();
            bytes.map(|&b| if b == b'/' { 0 } else { b })
        }
        self.root
            .cmp(&other.root)
            .then_with(|| key(&self.path).cmp(key(&other.path)))
    }
}

impl PartialEq for Task {
    fn eq(&self, other: &Task) -> bool {
        self.walk_order(other).is_eq()
    }
}
impl Eq for Task {}
impl PartialOrd for Task {
    fn partial_cmp(&self, other: &Task) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Task {
    fn cmp(&self, other: &Task) -> std::cmp::Ordering {
        self.walk_order(other)
    }
}

struct Shared {
    queue: Mutex<Queue>,
    cv: Condvar,
    stop: AtomicBool,
    /// Weight issued by the threads and consumed by the walker.
    issued: AtomicU64,
    consumed: AtomicU64,
    skip: Skip,
    /// `--exclude-caches` and the like, applied as the walker applies them.
    rules: Rules,
    /// The device of each root (`--one-file-system`).
    root_devs: Vec<u64>,
    /// Read file contents ahead too (a first backup reads every file).
    data: bool,
}

struct Queue {
    /// Pending tasks, the first in walk order on top.
    tasks: BinaryHeap<Reverse<Task>>,
    /// Tasks taken and not finished: their directories may still add tasks.
    busy: usize,
}

/// Running read-ahead threads; dropping it stops and joins them.
pub struct Prefetch {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Prefetch {
    /// Start reading ahead of a walk of `roots` (each with its `--exclude` matcher).
    /// `roots_are_entries`: the walker visits each root as an entry first (several
    /// sources), so a root is weighed, and skipped when excluded, like any directory.
    /// (File sources are visited too but not read ahead: the threads then lead by a little
    /// more than `MAX_LEAD`.)
    pub fn start(
        roots: Vec<(PathBuf, Gitignore)>,
        skip: Skip,
        rules: Rules,
        data: bool,
        roots_are_entries: bool,
    ) -> Prefetch {
        let root_devs = roots
            .iter()
            .map(|(p, _)| std::fs::symlink_metadata(p).map(|m| m.dev()).unwrap_or(0))
            .collect();
        let tasks = roots
            .into_iter()
            .enumerate()
            .filter(|(_, (path, ex))| !(roots_are_entries && ignored(&skip, ex, &[], path, true)))
            .map(|(root, (path, ex))| {
                Reverse(Task {
                    root,
                    path,
                    kind: Kind::Dir {
                        excludes: Arc::new(ex),
                        ignores: Arc::new(Vec::new()),
                        weigh: roots_are_entries,
                    },
                })
            })
            .collect();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { tasks, busy: 0 }),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            issued: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            skip,
            rules,
            root_devs,
            data,
        });
        let threads = (0..THREADS)
            .filter_map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("prefetch-{i}"))
                    .spawn(move || run(&s))
                    .ok()
            })
            .collect();
        Prefetch { shared, threads }
    }

    /// The walker visited entries of this total weight.
    pub fn consumed(&self, w: u64) {
        self.shared.consumed.fetch_add(w, Ordering::Relaxed);
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.cv.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn run(s: &Shared) {
    loop {
        let task = {
            let mut q = s.queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if s.stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(Reverse(t)) = q.tasks.pop() {
                    q.busy += 1;
                    break t;
                }
                if q.busy == 0 {
                    return; // everything listed
                }
                q = s.cv.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let children = match &task.kind {
            Kind::Dir { .. } => dir(s, &task),
            Kind::Entry => {
                entry(s, task.root, &task.path);
                Vec::new()
            }
        };
        let mut q = s.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.busy -= 1;
        let woke = !children.is_empty();
        q.tasks.extend(children.into_iter().map(Reverse));
        if woke || q.busy == 0 {
            s.cv.notify_all();
        }
    }
}

/// List one directory; returns a task for each of its entries that the walker will visit.
fn dir(s: &Shared, task: &Task) -> Vec<Task> {
    let Kind::Dir {
        excludes,
        ignores,
        weigh,
    } = &task.kind
    else {
        return Vec::new();
    };
    // The repository or the cache under another path (a bind mount): the walker skips it
    // without weighing it, so it is neither weighed nor read here.
    let md = std::fs::symlink_metadata(&task.path);
    if md.as_ref().is_ok_and(|m| s.skip.has_dir(m)) {
        return Vec::new();
    }
    if *weigh {
        // The walker weighs a directory when it stats it in its parent.
        let w = weight(false, 0, s.data);
        wait_for_walker(s, w);
        s.issued.fetch_add(w, Ordering::Relaxed);
    }
    // Another file system with --one-file-system: the walker keeps it empty.
    let root_dev = s.root_devs.get(task.root).copied().unwrap_or(0);
    if *weigh && md.as_ref().is_ok_and(|m| s.rules.entry(m, root_dev) != Verdict::Keep) {
        return Vec::new();
    }
    let Ok(rd) = std::fs::read_dir(&task.path) else {
        return Vec::new();
    };
    let mut entries: Vec<std::fs::DirEntry> = rd.filter_map(|e| e.ok()).collect();
    let names: Vec<Vec<u8>> = entries.iter().map(|e| e.file_name().as_bytes().to_vec()).collect();
    if s.rules.cache_dir(&task.path, names.iter().map(Vec::as_slice)) {
        entries.retain(|e| e.file_name() == crate::backup::rules::CACHEDIR_TAG);
    }
    let mut ignores = ignores.clone();
    if entries.iter().any(|e| e.file_name() == IGNORE_FILE) {
        // As the walker does: the valid lines of a partly invalid file still apply.
        let mut b = GitignoreBuilder::new(&task.path);
        let _ = b.add(task.path.join(IGNORE_FILE));
        if let Ok(g) = b.build() {
            let mut v = (*ignores).clone();
            v.push(g);
            ignores = Arc::new(v);
        }
    }
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        if s.stop.load(Ordering::Relaxed) {
            break;
        }
        // The type comes from the directory entry (no stat) and, like the walker's
        // lstat, does not follow symlinks.
        let Ok(ft) = e.file_type() else { continue };
        let path = e.path();
        let is_dir = ft.is_dir();
        if ignored(&s.skip, excludes, &ignores, &path, is_dir) {
            continue;
        }
        let kind = if is_dir {
            Kind::Dir {
                excludes: excludes.clone(),
                ignores: ignores.clone(),
                weigh: true,
            }
        } else if !s.data {
            // Only inodes to load: cheaper here than as a task of its own.
            entry(s, task.root, &path);
            continue;
        } else {
            Kind::Entry
        };
        out.push(Task {
            root: task.root,
            path,
            kind,
        });
    }
    out
}

/// Load an entry's inode (the walker will stat it) and read a file's start ahead.
fn entry(s: &Shared, root: usize, path: &Path) {
    if s.stop.load(Ordering::Relaxed) {
        return;
    }
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return;
    };
    // Left out by the rules: the walker does not weigh it.
    if matches!(
        s.rules.entry(&md, s.root_devs.get(root).copied().unwrap_or(0)),
        Verdict::Skip(_)
    ) {
        return;
    }
    let w = weight(md.is_file(), md.len(), s.data);
    wait_for_walker(s, w);
    s.issued.fetch_add(w, Ordering::Relaxed);
    if s.data && md.is_file() && md.len() > 0 && md.blocks() > 0 {
        read_ahead(path, md.len().min(FILE_AHEAD));
    }
}

/// Wait while more than [`MAX_LEAD`] ahead of the walker.
fn wait_for_walker(s: &Shared, w: u64) {
    while !s.stop.load(Ordering::Relaxed)
        && s.issued.load(Ordering::Relaxed) + w > s.consumed.load(Ordering::Relaxed) + MAX_LEAD
    {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Ask the kernel to start reading the first `len` bytes of a file; does not wait for them.
fn read_ahead(path: &Path, len: u64) {
    let Ok(f) = crate::platform::open_for_reading(path) else {
        return;
    };
    let _ = rustix::fs::fadvise(&f, 0, NonZeroU64::new(len), rustix::fs::Advice::WillNeed);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tasks come off the queue in the walker's order: a directory's entries by name bytes,
    /// each subdirectory's contents right after it, sources one after another.
    #[test]
    fn tasks_are_taken_in_walk_order() {
        let walk = [
            (0, "/s/a"),
            (0, "/s/a/b"),
            (0, "/s/a/b/\u{e9}"),
            (0, "/s/a/c"),
            (0, "/s/a-b"),
            (0, "/s/a.c"),
            (0, "/s/a0"),
            (0, "/s/b"),
            (1, "/r/0"),
        ];
        let mut q: BinaryHeap<Reverse<Task>> = walk
            .iter()
            .rev()
            .map(|&(root, p)| {
                Reverse(Task {
                    root,
                    path: PathBuf::from(p),
                    kind: Kind::Entry,
                })
            })
            .collect();
        let mut got = Vec::new();
        while let Some(Reverse(t)) = q.pop() {
            got.push((t.root, t.path.to_string_lossy().into_owned()));
        }
        let want: Vec<_> = walk.iter().map(|&(r, p)| (r, p.to_string())).collect();
        assert_eq!(got, want);
    }

    /// With `--exclude-caches` and `--exclude-larger-than` the threads leave out what the
    /// walker leaves out: a cache directory's contents but its tag, files over the limit.
    #[test]
    fn reads_ahead_only_what_the_backup_rules_keep() {
        let root = std::env::temp_dir().join(format!("pc-prefetch-rules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("cache/deep")).unwrap();
        let tag = [crate::backup::rules::CACHEDIR_SIGNATURE, b"\n"].concat();
        std::fs::write(root.join("cache").join(crate::backup::rules::CACHEDIR_TAG), &tag).unwrap();
        std::fs::write(root.join("cache/deep/x"), vec![0u8; 100]).unwrap();
        std::fs::write(root.join("cache/y"), vec![0u8; 100]).unwrap();
        std::fs::write(root.join("big"), vec![1u8; 9000]).unwrap();
        std::fs::write(root.join("small"), vec![1u8; 10]).unwrap();
        let rules = Rules {
            exclude_caches: true,
            one_file_system: true,
            exclude_larger_than: Some(8000),
        };
        // Visited: cache, cache/CACHEDIR.TAG, small (big is over the limit).
        let want = 3 * ENTRY_WEIGHT + tag.len() as u64 + 10;
        let mut p = Prefetch::start(
            vec![(root.clone(), GitignoreBuilder::new(&root).build().unwrap())],
            Skip::default(),
            rules,
            true,
            false,
        );
        for t in p.threads.drain(..) {
            t.join().unwrap();
        }
        assert_eq!(p.shared.issued.load(Ordering::Relaxed), want);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// The threads must weigh exactly the entries the walker visits (same ignore rules,
    /// no symlink followed, special files counted but never opened) and then finish.
    #[test]
    fn reads_ahead_exactly_what_the_walker_visits_then_finishes() {
        let root = std::env::temp_dir().join(format!("pc-prefetch-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["a/b", "skipped/deep", "ignored", "excluded"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("a/one"), vec![1u8; 10_000]).unwrap();
        std::fs::write(root.join("a/b/two"), b"two").unwrap();
        std::fs::write(root.join("skipped/deep/x"), vec![0u8; 5000]).unwrap();
        std::fs::write(root.join("ignored/y"), vec![0u8; 7000]).unwrap();
        std::fs::write(root.join("excluded/z"), vec![0u8; 3000]).unwrap();
        std::fs::write(root.join(IGNORE_FILE), "ignored/\n").unwrap();
        // A FIFO would block an open for reading; a symlink to / would loop the walk.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("a/fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::os::unix::fs::symlink("/", root.join("a/up")).unwrap();
        let mut ex = GitignoreBuilder::new(&root);
        ex.add_line(None, "/excluded").unwrap();
        let ex = ex.build().unwrap();

        // Visited: the ignore file, a, a/b, a/b/two, a/fifo, a/one, a/up; with contents
        // (a first backup) the ignore file's 9 bytes and the two files' too.
        for (data, want) in [(true, 7 * ENTRY_WEIGHT + 9 + 3 + 10_000), (false, 7 * ENTRY_WEIGHT)] {
            let mut p = Prefetch::start(
                vec![(root.clone(), ex.clone())],
                Skip::new(&[root.join("skipped")]),
                Rules::default(),
                data,
                false,
            );
            for t in p.threads.drain(..) {
                t.join().unwrap();
            }
            assert_eq!(p.shared.issued.load(Ordering::Relaxed), want, "data: {data}");
        }
        // As one of several sources, the root is an entry too; an excluded source is not
        // read ahead at all.
        let mut ex2 = GitignoreBuilder::new(root.parent().unwrap());
        ex2.add_line(None, root.file_name().unwrap().to_str().unwrap()).unwrap();
        for (ex, want) in [(ex.clone(), 8 * ENTRY_WEIGHT), (ex2.build().unwrap(), 0)] {
            let mut p = Prefetch::start(
                vec![(root.clone(), ex)],
                Skip::new(&[root.join("skipped")]),
                Rules::default(),
                false,
                true,
            );
            for t in p.threads.drain(..) {
                t.join().unwrap();
            }
            assert_eq!(p.shared.issued.load(Ordering::Relaxed), want);
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
