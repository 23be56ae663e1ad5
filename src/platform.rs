//! What the operating system must provide, in one place: the port's starting point.
//!
//! projectclone is built and tested on Linux (and is written for Unix in general). A port
//! to macOS or Windows starts here: every small primitive below has one implementation per
//! family behind `cfg`, and the rest of the crate calls these instead of
//! `std::os::unix` directly. The parts that are Unix by design, and what a port of each
//! needs, are:
//!
//! - `restore` and the folder views of `export`: trees are built with the `*at` calls
//!   (`openat2` with `RESOLVE_BENEATH`, `mkdirat`, `linkat`, `fchownat`, `utimensat`)
//!   relative to directory handles, so that a symlink planted in the target during a restore
//!   never redirects a write. A port needs the same guarantee (Windows: handles opened with
//!   `FILE_FLAG_OPEN_REPARSE_POINT`, `NtCreateFile` relative to a directory handle).
//! - `meta`: mode, owner, device numbers and extended attributes of a snapshot's entries
//!   (format-spec §9 stores Unix metadata; a port maps its own onto it).
//! - `backup`'s reader and `prefetch`: `O_NOFOLLOW`, `O_NOATIME`, `SEEK_DATA`/`SEEK_HOLE`,
//!   `posix_fadvise` ([`open_for_reading`] holds the open, [`drop_cached`] the advice).
//! - `backend::local`: `renameat2(RENAME_NOREPLACE)` for write-if-absent, and
//!   `posix_fadvise(DONTNEED)` on what is read or written once ([`drop_cached`]).
//! - `crypto`'s key derivation: fresh zeroed pages with huge pages asked for
//!   ([`ZeroedPages`]: `mmap`, `madvise`); any zeroed allocation works, only slower.
//! - `lock` and `signals`: process liveness by pid, `SIGINT`/`SIGTERM`.
//! - The command line's `mount` (FUSE) and `schedule` (systemd timers, cron).

#[cfg(not(unix))]
compile_error!(
    "projectclone builds on Unix only for now (it is tested on Linux). A port starts in src/platform.rs, \
     which lists what the operating system must provide."
);

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Open a file of a tree being backed up, for reading: never through a symlink (the entry
/// was seen as a file), never blocking on a FIFO swapped in, and without updating its access
/// time when the file system and our rights allow it (only the owner or root may ask that:
/// `EPERM` otherwise, and then it is opened without).
pub fn open_for_reading(path: &Path) -> io::Result<File> {
    let open = |noatime: bool| {
        let mut flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        if noatime {
            flags |= rustix::fs::OFlags::NOATIME;
        }
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits() as i32)
            .open(path)
    };
    match open(true) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => open(false),
        r => r,
    }
}

/// Give back the page cache that holds `len` bytes of `f` from `offset` (`len` 0: to the
/// end), once they have been read and are not needed again (`posix_fadvise(DONTNEED)`).
/// Only clean pages go; a failure (a file system without page cache) changes nothing.
pub fn drop_cached(f: &File, offset: u64, len: u64) {
    let _ = rustix::fs::fadvise(f, offset, std::num::NonZeroU64::new(len), rustix::fs::Advice::DontNeed);
}

/// Whether the file system holding `fd` is one where reserving a file's blocks up front
/// (`fallocate`) before writing it in pieces keeps it in few extents at no other cost:
/// ext2/3/4 and XFS. Not the copy-on-write ones: btrfs writes a preallocated extent in
/// place and so without its compression, and ZFS or bcachefs allocate again on every
/// write anyway. Unknown file systems are left to allocate as they write.
pub fn preallocation_helps(fd: impl std::os::fd::AsFd) -> bool {
    const EXT4_SUPER_MAGIC: u64 = 0xEF53; // ext2 and ext3 too
    const XFS_SUPER_MAGIC: u64 = 0x5846_5342;
    rustix::fs::fstatfs(fd).is_ok_and(|st| matches!(st.f_type as u64, EXT4_SUPER_MAGIC | XFS_SUPER_MAGIC))
}

/// Huge pages on x86-64 and most other Linux ports; a mapping aligned to it can use them.
pub const HUGE_PAGE: usize = 2 << 20;

/// Fresh zeroed memory, 2 MiB-aligned, for one large short-lived buffer (the key
/// derivation's 64 MiB): a private anonymous mapping with transparent huge pages asked for
/// (`MADV_HUGEPAGE`, advice only). The kernel hands it out zeroed, so nothing `memset`s
/// it, and faults it in 2 MiB at a time where huge pages are on. The pages go back to the
/// kernel, which zeroes them before any reuse, when it is dropped.
pub struct ZeroedPages {
    map: *mut std::ffi::c_void,
    map_len: usize,
    start: *mut u8,
}

impl ZeroedPages {
    /// `len` bytes; `None` when the mapping is refused.
    pub fn new(len: usize) -> Option<ZeroedPages> {
        let map_len = len.checked_add(HUGE_PAGE)?;
        // SAFETY: a new private anonymous mapping at an address the kernel picks aliases no
        // existing memory.
        let map = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                map_len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
        }
        .ok()?;
        // The bytes before the first 2 MiB boundary in the mapping.
        let to_boundary = (HUGE_PAGE - map as usize % HUGE_PAGE) % HUGE_PAGE;
        // SAFETY: `to_boundary < HUGE_PAGE`, so `to_boundary + len <= map_len`: inside the mapping.
        let start = unsafe { map.cast::<u8>().add(to_boundary) };
        // SAFETY: the range lies inside the mapping made above.
        let _ = unsafe { rustix::mm::madvise(start.cast(), len, rustix::mm::Advice::LinuxHugepage) };
        Some(ZeroedPages { map, map_len, start })
    }

    /// The first of the `len` bytes asked for, 2 MiB-aligned; valid while `self` lives.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.start
    }
}

impl Drop for ZeroedPages {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; pointers into it are valid only
        // while `self` lives.
        let _ = unsafe { rustix::mm::munmap(self.map, self.map_len) };
    }
}

/// Create `dir` and its missing parents, each created one private to this user (`0700`:
/// caches and state hold host names, paths and notes in clear). Existing folders keep
/// their permissions.
pub fn create_private_dirs(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// An environment variable's raw bytes (a password need not be UTF-8).
pub fn env_bytes(var: &str) -> Option<Vec<u8>> {
    std::env::var_os(var).map(OsString::into_vec)
}

/// An OS string's raw bytes.
pub fn into_bytes(s: OsString) -> Vec<u8> {
    s.into_vec()
}

/// Whether this process runs as root (restores ownership, reads every file).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A name's raw bytes, as stored in snapshots (format-spec §9).
pub fn name_bytes(s: &OsStr) -> &[u8] {
    s.as_bytes()
}

/// A name from its stored bytes.
pub fn name_from_bytes(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_but_never_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("f", d.path().join("l")).unwrap();
        assert!(open_for_reading(&d.path().join("f")).is_ok());
        let e = open_for_reading(&d.path().join("l")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(rustix::io::Errno::LOOP.raw_os_error()));
    }

    #[test]
    fn zeroed_pages_are_zero_aligned_to_huge_pages_and_as_long_as_asked() {
        let len = 2 * HUGE_PAGE + 4096;
        let mut mem = ZeroedPages::new(len).expect("an anonymous mapping");
        let p = mem.as_mut_ptr();
        assert_eq!(p as usize % HUGE_PAGE, 0);
        // SAFETY: `len` bytes from `p` belong to `mem`, which outlives the slice.
        let b = unsafe { std::slice::from_raw_parts_mut(p, len) };
        assert!(b.iter().all(|x| *x == 0));
        // Writable to the last byte.
        b[len - 1] = 0xff;
        assert_eq!(b[len - 1], 0xff);
    }

    #[test]
    fn private_dirs_and_names() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("a/b");
        create_private_dirs(&deep).unwrap();
        for p in [d.path().join("a"), deep] {
            assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o700);
        }
        assert_eq!(
            name_from_bytes(name_bytes(OsStr::new("n\u{e9}"))),
            OsStr::new("n\u{e9}")
        );
    }
}
