//! Reading file-system metadata into tree `Meta` records.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::format::{Meta, Time};

pub fn meta_from(md: &std::fs::Metadata) -> Meta {
    Meta {
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        mtime: Time {
            secs: md.mtime(),
            nanos: md.mtime_nsec() as u32,
        },
        ctime: Time {
            secs: md.ctime(),
            nanos: md.ctime_nsec() as u32,
        },
        inode: md.ino(),
        dev: md.dev(),
        nlink: md.nlink(),
        xattrs: Vec::new(),
    }
}

/// Extended attributes of a path, not following a final symlink, sorted by name.
/// Unsupported file systems give none.
pub fn read_xattrs(path: &Path) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    use std::os::unix::ffi::OsStrExt;
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTSUP.raw_os_error()) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        if let Some(v) = xattr::get(path, &name)? {
            out.push((name.as_bytes().to_vec(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// Extended attributes of an open file, sorted by name.
pub fn read_xattrs_fd(f: &std::fs::File) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    use std::os::unix::ffi::OsStrExt;
    use xattr::FileExt;
    let names = match f.list_xattr() {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTSUP.raw_os_error()) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        if let Some(v) = f.get_xattr(&name)? {
            out.push((name.as_bytes().to_vec(), v));
        }
    }
    out.sort();
    Ok(out)
}
