//! Files whose block count is below their size: compressed ZFS, FUSE and network file
//! systems report such counts, so the backup probes them for holes (`SEEK_DATA` /
//! `SEEK_HOLE`). Whatever that probe does to the file offset, every byte must be read; and
//! a file that returns fewer bytes than its size says is reported (exit 3), never stored
//! as a shorter or empty file.
//!
//! The file system is a small FUSE server in this test process (the `fuser` crate, on a
//! thread), mounted with mount(2) directly: the tests run as root and need `/dev/fuse`.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, MountOption,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyLseek, ReplyOpen, Request,
};

use crate::util::*;

const MIB: usize = 1024 * 1024;

/// One regular file the test file system serves.
#[derive(Clone)]
struct Served {
    name: &'static str,
    /// The size `stat` reports.
    size: u64,
    /// `st_blocks`, in 512-byte units.
    blocks: u64,
    /// What `read` returns: the whole content, or fewer bytes than `size`.
    bytes: Vec<u8>,
    /// The holes `lseek(SEEK_DATA / SEEK_HOLE)` reports, when the file system implements
    /// lseek (`bytes` are zero there).
    holes: Vec<(u64, u64)>,
    open_flags: FopenFlags,
    /// How many times the file was opened.
    opens: Arc<AtomicU64>,
    quirk: Option<Quirk>,
}

/// Wrong answers to `lseek` a broken file system could give.
#[derive(Clone, Copy)]
enum Quirk {
    /// `SEEK_HOLE` answers the offset it was given, also in data: no progress.
    HoleWhereAsked,
    /// `SEEK_DATA` always answers 0, also after the first region: backwards.
    DataAtZero,
}

impl Served {
    /// A file that serves exactly `bytes` and reports 0 blocks.
    fn new(name: &'static str, bytes: Vec<u8>) -> Served {
        Served {
            name,
            size: bytes.len() as u64,
            blocks: 0,
            bytes,
            holes: Vec::new(),
            open_flags: FopenFlags::empty(),
            opens: Arc::new(AtomicU64::new(0)),
            quirk: None,
        }
    }

    fn quirk(mut self, quirk: Quirk) -> Served {
        self.quirk = Some(quirk);
        self
    }

    fn blocks(mut self, blocks: u64) -> Served {
        self.blocks = blocks;
        self
    }

    /// Report this size, whatever `read` returns.
    fn size(mut self, size: u64) -> Served {
        self.size = size;
        self
    }

    fn holes(mut self, holes: Vec<(u64, u64)>) -> Served {
        self.holes = holes;
        self
    }

    fn open_flags(mut self, flags: FopenFlags) -> Served {
        self.open_flags = flags;
        self
    }
}

/// A read-only directory of `files`. Without `lseek`, the kernel answers `SEEK_DATA` and
/// `SEEK_HOLE` itself (the whole file is data, and the offset moves to the end for
/// `SEEK_HOLE`); with it, the file system reports each file's `holes`.
struct TestFs {
    files: Vec<Served>,
    lseek: bool,
    lseeks: Arc<AtomicU64>,
}

/// Nothing is cached by the kernel: every `stat` asks the file system again, as on a
/// network file system.
const TTL: Duration = Duration::ZERO;

fn time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_600_000_000)
}

impl TestFs {
    fn new(lseek: bool, files: Vec<Served>) -> TestFs {
        TestFs {
            files,
            lseek,
            lseeks: Arc::new(AtomicU64::new(0)),
        }
    }

    fn file(&self, ino: INodeNo) -> Option<&Served> {
        (ino.0 as usize).checked_sub(2).and_then(|i| self.files.get(i))
    }

    fn attr(&self, ino: INodeNo) -> Option<FileAttr> {
        let (kind, perm, nlink, size, blocks) = if ino == INodeNo::ROOT {
            (FileType::Directory, 0o755, 2, 0, 0)
        } else {
            let f = self.file(ino)?;
            (FileType::RegularFile, 0o644, 1, f.size, f.blocks)
        };
        Some(FileAttr {
            ino,
            size,
            blocks,
            atime: time(),
            mtime: time(),
            ctime: time(),
            crtime: time(),
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }
}

impl Filesystem for TestFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = (parent == INodeNo::ROOT)
            .then(|| self.files.iter().position(|f| f.name.as_bytes() == name.as_bytes()))
            .flatten()
            .and_then(|i| self.attr(INodeNo(i as u64 + 2)));
        match found {
            Some(a) => reply.entry(&TTL, &a, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.file(ino) {
            Some(f) => {
                f.opens.fetch_add(1, Ordering::SeqCst);
                reply.opened(FileHandle(0), f.open_flags)
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.file(ino) {
            Some(f) => {
                let start = (offset as usize).min(f.bytes.len());
                let end = start.saturating_add(size as usize).min(f.bytes.len());
                reply.data(&f.bytes[start..end])
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if ino != INodeNo::ROOT {
            reply.error(Errno::ENOTDIR);
            return;
        }
        let mut entries = vec![
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
        ];
        for (i, f) in self.files.iter().enumerate() {
            entries.push((INodeNo(i as u64 + 2), FileType::RegularFile, f.name));
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn lseek(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        if !self.lseek {
            reply.error(Errno::ENOSYS);
            return;
        }
        self.lseeks.fetch_add(1, Ordering::SeqCst);
        let Some(f) = self.file(ino) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let Ok(pos) = u64::try_from(offset) else {
            reply.error(Errno::EINVAL);
            return;
        };
        if pos >= f.size {
            reply.error(Errno::ENXIO);
            return;
        }
        let hole_at = |p: u64| f.holes.iter().find(|&&(o, l)| o <= p && p < o + l).copied();
        let answer = match (whence, f.quirk) {
            (libc::SEEK_HOLE, Some(Quirk::HoleWhereAsked)) => pos,
            (libc::SEEK_DATA, Some(Quirk::DataAtZero)) => 0,
            (libc::SEEK_DATA, _) => match hole_at(pos) {
                None => pos,
                Some((o, l)) if o + l < f.size => o + l,
                Some(_) => {
                    reply.error(Errno::ENXIO);
                    return;
                }
            },
            (libc::SEEK_HOLE, _) => match hole_at(pos) {
                Some(_) => pos,
                None => f.holes.iter().map(|h| h.0).filter(|&o| o > pos).min().unwrap_or(f.size),
            },
            _ => {
                reply.error(Errno::EINVAL);
                return;
            }
        };
        reply.offset(answer as i64);
    }
}

/// A mounted test file system; unmounted when dropped, also when the test fails.
struct Mounted {
    dir: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl Mounted {
    #[track_caller]
    fn new(fs: TestFs, dir: &Path) -> Mounted {
        fs::create_dir_all(dir).expect("mount point");
        let mut cfg = fuser::Config::default();
        cfg.mount_options = vec![MountOption::RO, MountOption::FSName("projectclone-test".into())];
        let session = fuser::spawn_mount(fs, dir, &cfg).unwrap_or_else(|e| {
            panic!(
                "cannot mount the test FUSE file system at {}: {e}\nThese tests need /dev/fuse (the fuse \
                 kernel module) and root, which mounts with mount(2) directly; without root, fuser runs \
                 fusermount3 (Debian package fuse3) instead.",
                dir.display()
            )
        });
        Mounted {
            dir: dir.to_path_buf(),
            session: Some(session),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        if let Err(e) = session.umount_and_join() {
            // Still busy: detach it, so nothing stays mounted under the test's directory.
            eprintln!("unmounting {}: {e}; detaching it", self.dir.display());
            let c = std::ffi::CString::new(self.dir.as_os_str().as_bytes()).expect("no NUL in a temp path");
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// `path` holds exactly `expected` (compared without printing megabytes).
#[track_caller]
fn assert_content(path: &Path, expected: &[u8]) {
    let got = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if got != expected {
        let first = got.iter().zip(expected).position(|(a, b)| a != b);
        panic!(
            "{}: {} bytes restored, {} served; first difference at {:?}",
            path.display(),
            got.len(),
            expected.len(),
            first
        );
    }
}

#[test]
fn files_with_fewer_blocks_than_bytes_are_backed_up_whole() {
    let env = Env::with_repo();
    let src = env.path("src");
    let big = random_bytes(14, 3 * MIB + 12_345); // several chunks
    let small = b"a small file on a file system that reports no blocks\n".to_vec();
    let dense = random_bytes(15, 200_000);
    let stream = random_bytes(16, MIB + 1);
    // The kernel answers SEEK_DATA / SEEK_HOLE (all data, the offset left at the end).
    let plain = Mounted::new(
        TestFs::new(
            false,
            vec![
                Served::new("big", big.clone()),
                Served::new("small", small.clone()),
                Served::new("dense", dense.clone()).blocks(dense.len() as u64 / 512 + 1),
                // Not seekable: no lseek, no pread (FUSE's FOPEN_NONSEEKABLE).
                Served::new("stream", stream.clone()).open_flags(FopenFlags::FOPEN_NONSEEKABLE),
            ],
        ),
        &src.join("plain"),
    );
    // The file system answers them: all data, except the hole in `holey`.
    let mut holey = random_bytes(17, 3 * MIB);
    holey[MIB..2 * MIB].fill(0);
    let seek_fs = TestFs::new(
        true,
        vec![
            Served::new("big", big.clone()),
            Served::new("small", small.clone()),
            Served::new("holey", holey.clone())
                .blocks(2 * MIB as u64 / 512)
                .holes(vec![(MIB as u64, MIB as u64)]),
            // Wrong answers must neither hang the probe nor lose data.
            Served::new("no_progress", holey.clone())
                .blocks(8)
                .holes(vec![(MIB as u64, MIB as u64)])
                .quirk(Quirk::HoleWhereAsked),
            Served::new("backwards", holey.clone())
                .blocks(8)
                .holes(vec![(MIB as u64, MIB as u64)])
                .quirk(Quirk::DataAtZero),
        ],
    );
    let lseeks = seek_fs.lseeks.clone();
    let seek = Mounted::new(seek_fs, &src.join("seek"));

    let md = fs::metadata(src.join("plain/big")).unwrap();
    assert_eq!(
        (md.len(), md.blocks()),
        (big.len() as u64, 0),
        "what the test file system reports"
    );

    let id = env.backup([&src]);
    assert!(
        lseeks.load(Ordering::SeqCst) > 0,
        "the backup asked the file system for holes"
    );
    let out = env.path("out");
    env.run([
        "restore".as_ref(),
        id.as_ref(),
        "--verify".as_ref(),
        "--target".as_ref(),
        out.as_os_str(),
    ])
    .success();
    assert_content(&out.join("plain/big"), &big);
    assert_content(&out.join("plain/small"), &small);
    assert_content(&out.join("plain/dense"), &dense);
    assert_content(&out.join("plain/stream"), &stream);
    assert_content(&out.join("seek/big"), &big);
    assert_content(&out.join("seek/small"), &small);
    assert_content(&out.join("seek/holey"), &holey);
    assert_content(&out.join("seek/no_progress"), &holey);
    assert_content(&out.join("seek/backwards"), &holey);
    drop(seek);
    drop(plain);
}

#[test]
fn a_file_that_returns_fewer_bytes_than_its_size_is_reported_not_stored_short() {
    let env = Env::with_repo();
    let src = env.path("src");
    let good = b"served whole\n".to_vec();
    // Reports 1 MiB, returns 1000 bytes (as sysfs files and some FUSE file systems do).
    let short = Served::new("short", random_bytes(18, 1000))
        .size(MIB as u64)
        .open_flags(FopenFlags::FOPEN_DIRECT_IO);
    let short_opens = short.opens.clone();
    let plain = Mounted::new(
        TestFs::new(false, vec![Served::new("good.txt", good.clone()), short]),
        &src.join("plain"),
    );
    // 3 MiB with a hole in the middle; the data after the hole ends half-way.
    let mut holey = random_bytes(19, 3 * MIB);
    holey[MIB..2 * MIB].fill(0);
    holey.truncate(2 * MIB + MIB / 2);
    let seek = Mounted::new(
        TestFs::new(
            true,
            vec![
                Served::new("short_holey", holey)
                    .size(3 * MIB as u64)
                    .blocks(2 * MIB as u64 / 512)
                    .holes(vec![(MIB as u64, MIB as u64)])
                    .open_flags(FopenFlags::FOPEN_DIRECT_IO),
            ],
        ),
        &src.join("seek"),
    );

    let out = run(env.cmd().arg("backup").arg(&src)).code(3);
    let id = out.snapshot_id();
    for name in ["plain/short", "seek/short_holey"] {
        assert!(
            out.stderr.lines().any(|l| l.starts_with("error: ") && l.contains(name)),
            "{name} is named on stderr: {}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("good.txt"), "{}", out.stderr);
    assert!(
        short_opens.load(Ordering::SeqCst) >= 2,
        "a short file is read again before it is reported"
    );

    // The snapshot has the good file and neither short one, not even empty or truncated.
    let target = env.path("out");
    env.restore(&id, &target);
    assert_content(&target.join("plain/good.txt"), &good);
    assert!(
        !target.join("plain/short").exists(),
        "a short file is not in the snapshot"
    );
    assert!(
        !target.join("seek/short_holey").exists(),
        "a short file is not in the snapshot"
    );

    // The next backup (with a parent) reads them again and reports them again.
    let json = run(env.cmd().args(["--json", "backup"]).arg(&src)).code(3).json();
    assert_eq!(json["errors"], 2, "{json}");
    drop(seek);
    drop(plain);
}
