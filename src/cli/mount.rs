//! `mount DIR`: the repository as a read-only FUSE file system, browsed without a restore.
//!
//! ```text
//! DIR/snapshots/<time>-<short id>/…      each snapshot's tree, as a restore would give it
//! DIR/projects/<name>/latest             symlink to that project's newest snapshot
//! DIR/projects/<name>/<time>-<short id>  symlinks to each of its snapshots
//! ```
//!
//! Directories are loaded when first looked at, file contents when read: an `open` builds
//! the file's map of chunks (holes read as zeros), a `read` decrypts only the chunks it
//! touches, keeping the last few. The mount holds a shared lock, so a prune meanwhile
//! deletes nothing it reads. It ends on Ctrl-C or SIGTERM (`signals.rs` detaches it) or when
//! unmounted (`umount DIR`).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, MountOption,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyXattr, Request,
};

use projectclone::format::{BlobKind, FileData, Meta, Node, NodeKind, Snapshot, Time};
use projectclone::id::{BlobId, ChunkId, SnapshotId};
use projectclone::repo::Repository;

/// The tree never changes while mounted: the kernel may keep what it was told.
const TTL: Duration = Duration::from_secs(3600);

/// Decrypted chunks kept for reads that come back to them (sequential reads of 128 KiB
/// within a 1 MiB chunk, several files read at once).
const CHUNK_CACHE: usize = 16;

/// What an inode is.
enum What {
    /// A folder of the mount's own: its children are fixed when it is made.
    Folder,
    /// A symlink of the mount's own (`projects/…`).
    Link(Vec<u8>),
    /// An entry of a snapshot. A snapshot's root is a `Dir` node with its root metadata.
    Entry(Node),
}

struct Inode {
    what: What,
    parent: INodeNo,
    /// Loaded children, by name (`None`: a snapshot directory not read yet).
    children: Option<BTreeMap<Vec<u8>, INodeNo>>,
}

/// Where the bytes of an open file come from: `(file offset, length, chunk, offset in it)`
/// segments in file order; anything between them is a hole.
struct FileMap {
    size: u64,
    segments: Vec<(u64, u64, usize, u64)>,
    chunks: Vec<(ChunkId, u32)>,
}

struct State {
    repo: Repository,
    inodes: Vec<Inode>,
    files: HashMap<u64, FileMap>,
    next_fh: u64,
    /// Recently read chunks, oldest first.
    cache: Vec<(ChunkId, std::sync::Arc<Vec<u8>>)>,
    mounted_at: SystemTime,
}

pub struct SnapshotFs {
    state: Mutex<State>,
}

fn system_time(t: &Time) -> SystemTime {
    if t.secs >= 0 {
        UNIX_EPOCH + Duration::new(t.secs as u64, t.nanos.min(999_999_999))
    } else {
        UNIX_EPOCH - Duration::from_secs(t.secs.unsigned_abs()) + Duration::from_nanos(u64::from(t.nanos))
    }
}

/// `2026-12-07T02:09:57-0d1a0fb9`: the snapshot's time in its own zone, and its short id.
pub fn snapshot_dir_name(id: &SnapshotId, s: &Snapshot) -> String {
    let t = projectclone::format_time(&s.time, s.utc_offset);
    format!("{}-{}", &t[..t.len().min(19)], id.short())
}

impl State {
    fn add(&mut self, parent: INodeNo, what: What, children: Option<BTreeMap<Vec<u8>, INodeNo>>) -> INodeNo {
        self.inodes.push(Inode { what, parent, children });
        INodeNo(self.inodes.len() as u64)
    }

    fn inode(&self, ino: INodeNo) -> Option<&Inode> {
        (ino.0 as usize).checked_sub(1).and_then(|i| self.inodes.get(i))
    }

    fn attr(&self, ino: INodeNo) -> Option<FileAttr> {
        let node = self.inode(ino)?;
        let base = FileAttr {
            ino,
            size: 0,
            blocks: 0,
            atime: self.mounted_at,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: self.mounted_at,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        Some(match &node.what {
            What::Folder => base,
            What::Link(t) => FileAttr {
                kind: FileType::Symlink,
                perm: 0o777,
                nlink: 1,
                size: t.len() as u64,
                ..base
            },
            What::Entry(n) => {
                let m: &Meta = &n.meta;
                let (kind, size, rdev) = match &n.kind {
                    NodeKind::File(d) | NodeKind::HardLink { data: d, .. } => (FileType::RegularFile, d.size, 0),
                    NodeKind::Dir(_) | NodeKind::InlineDir(_) => (FileType::Directory, 0, 0),
                    NodeKind::Symlink(t) => (FileType::Symlink, t.len() as u64, 0),
                    NodeKind::Fifo => (FileType::NamedPipe, 0, 0),
                    NodeKind::Socket => (FileType::Socket, 0, 0),
                    NodeKind::CharDevice(d) => (FileType::CharDevice, 0, *d as u32),
                    NodeKind::BlockDevice(d) => (FileType::BlockDevice, 0, *d as u32),
                };
                FileAttr {
                    size,
                    blocks: size.div_ceil(512),
                    atime: system_time(&m.mtime),
                    mtime: system_time(&m.mtime),
                    ctime: system_time(&m.ctime),
                    crtime: system_time(&m.mtime),
                    kind,
                    perm: (m.mode & 0o7777) as u16,
                    nlink: if kind == FileType::Directory { 2 } else { 1 },
                    uid: m.uid,
                    gid: m.gid,
                    rdev,
                    ..base
                }
            }
        })
    }

    /// The children of a directory inode, loading a snapshot directory's on first use.
    fn children(&mut self, ino: INodeNo) -> Result<BTreeMap<Vec<u8>, INodeNo>, Errno> {
        let node = self.inode(ino).ok_or(Errno::ENOENT)?;
        if let Some(c) = &node.children {
            return Ok(c.clone());
        }
        let What::Entry(n) = &node.what else {
            return Err(Errno::ENOTDIR);
        };
        if !n.kind.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let nodes = self.repo.dir_nodes(&n.kind).map_err(|e| {
            tracing::warn!("mount: a directory could not be read: {e}");
            Errno::EIO
        })?;
        let mut children = BTreeMap::new();
        for child in nodes {
            let name = child.name.clone();
            let c = self.add(ino, What::Entry(child), None);
            children.insert(name, c);
        }
        self.inodes[ino.0 as usize - 1].children = Some(children.clone());
        Ok(children)
    }

    fn file_map(&self, data: &FileData) -> projectclone::error::Result<FileMap> {
        let chunks: Vec<(ChunkId, u32)> = self
            .repo
            .chunk_list(&data.content)?
            .into_iter()
            .map(|c| (c.id, c.len))
            .collect();
        let mut segments = Vec::new();
        let mut regions = data.data_regions().into_iter();
        let mut region: Option<(u64, u64)> = None;
        for (i, &(_, len)) in chunks.iter().enumerate() {
            let mut off = 0u64;
            while off < u64::from(len) {
                let (start, end) = match region {
                    Some(r) if r.0 < r.1 => r,
                    _ => {
                        let (s, l) = regions.next().ok_or_else(|| {
                            projectclone::error::Error::corrupt("damaged entry: its chunks do not add up to its size")
                        })?;
                        (s, s + l)
                    }
                };
                let k = (end - start).min(u64::from(len) - off);
                segments.push((start, k, i, off));
                off += k;
                region = Some((start + k, end));
            }
        }
        Ok(FileMap {
            size: data.size,
            segments,
            chunks,
        })
    }

    fn chunk(&mut self, id: ChunkId) -> projectclone::error::Result<std::sync::Arc<Vec<u8>>> {
        if let Some(i) = self.cache.iter().position(|c| c.0 == id) {
            let c = self.cache.remove(i);
            self.cache.push(c.clone());
            return Ok(c.1);
        }
        let b = std::sync::Arc::new(self.repo.read_blob(BlobKind::Data, &BlobId(id.0))?);
        if self.cache.len() >= CHUNK_CACHE {
            self.cache.remove(0);
        }
        self.cache.push((id, b.clone()));
        Ok(b)
    }

    fn read(&mut self, fh: u64, offset: u64, size: u32) -> projectclone::error::Result<Vec<u8>> {
        let Some(map) = self.files.get(&fh) else {
            return Err(projectclone::error::Error::Invalid("unknown file handle".into()));
        };
        let end = offset.saturating_add(u64::from(size)).min(map.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let first = map.segments.partition_point(|s| s.0 + s.1 <= offset);
        let wanted: Vec<(u64, u64, usize, u64)> = map.segments[first..]
            .iter()
            .take_while(|s| s.0 < end)
            .copied()
            .collect();
        let chunks: Vec<(ChunkId, u32)> = wanted.iter().map(|s| map.chunks[s.2]).collect();
        for ((start, len, _, in_chunk), (id, clen)) in wanted.into_iter().zip(chunks) {
            let bytes = self.chunk(id)?;
            if bytes.len() != clen as usize {
                return Err(projectclone::error::Error::corrupt(format!(
                    "chunk {id} is not as long as its file's chunk list says"
                )));
            }
            let from = start.max(offset);
            let to = (start + len).min(end);
            let src = (in_chunk + (from - start)) as usize;
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&bytes[src..src + (to - from) as usize]);
        }
        Ok(out)
    }
}

impl SnapshotFs {
    /// The file system of `snaps`, named per project by `project`.
    pub fn new(repo: Repository, snaps: Vec<(SnapshotId, Snapshot)>, project: impl Fn(&Snapshot) -> String) -> Self {
        let mut st = State {
            repo,
            inodes: Vec::new(),
            files: HashMap::new(),
            next_fh: 1,
            cache: Vec::new(),
            mounted_at: SystemTime::now(),
        };
        let root = st.add(INodeNo::ROOT, What::Folder, Some(BTreeMap::new()));
        debug_assert_eq!(root, INodeNo::ROOT);
        let snapshots = st.add(root, What::Folder, Some(BTreeMap::new()));
        let projects = st.add(root, What::Folder, Some(BTreeMap::new()));
        let mut by_project: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut snaps = snaps;
        snaps.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        let mut in_snapshots = BTreeMap::new();
        for (id, s) in &snaps {
            let name = snapshot_dir_name(id, s);
            let meta = s.root.clone().unwrap_or(Meta {
                mode: 0o40555,
                mtime: s.time,
                ctime: s.time,
                uid: rustix::process::getuid().as_raw(),
                gid: rustix::process::getgid().as_raw(),
                ..Meta::default()
            });
            let node = Node {
                name: name.clone().into_bytes(),
                kind: NodeKind::Dir(s.tree),
                meta,
            };
            let ino = st.add(snapshots, What::Entry(node), None);
            in_snapshots.insert(name.clone().into_bytes(), ino);
            by_project.entry(project(s)).or_default().push(name);
        }
        st.inodes[snapshots.0 as usize - 1].children = Some(in_snapshots);
        let mut in_projects = BTreeMap::new();
        for (p, names) in by_project {
            let dir = st.add(projects, What::Folder, Some(BTreeMap::new()));
            let mut links = BTreeMap::new();
            for n in &names {
                let l = st.add(dir, What::Link(format!("../../snapshots/{n}").into_bytes()), None);
                links.insert(n.clone().into_bytes(), l);
            }
            if let Some(newest) = names.last() {
                let l = st.add(dir, What::Link(format!("../../snapshots/{newest}").into_bytes()), None);
                links.insert(b"latest".to_vec(), l);
            }
            st.inodes[dir.0 as usize - 1].children = Some(links);
            // A project name is a file name here: `/` cannot be one.
            in_projects.insert(p.replace('/', "_").into_bytes(), dir);
        }
        st.inodes[projects.0 as usize - 1].children = Some(in_projects);
        st.inodes[0].children = Some(BTreeMap::from([
            (b"snapshots".to_vec(), snapshots),
            (b"projects".to_vec(), projects),
        ]));
        SnapshotFs { state: Mutex::new(st) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Filesystem for SnapshotFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut st = self.state();
        let found = st
            .children(parent)
            .and_then(|c| c.get(name.as_bytes()).copied().ok_or(Errno::ENOENT))
            .and_then(|ino| st.attr(ino).ok_or(Errno::ENOENT));
        match found {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let st = self.state();
        match st.inode(ino).map(|i| &i.what) {
            Some(What::Link(t)) => reply.data(t),
            Some(What::Entry(Node {
                kind: NodeKind::Symlink(t),
                ..
            })) => reply.data(t),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            reply.error(Errno::EROFS);
            return;
        }
        let mut st = self.state();
        let data = match st.inode(ino).map(|i| &i.what) {
            Some(What::Entry(Node {
                kind: NodeKind::File(d) | NodeKind::HardLink { data: d, .. },
                ..
            })) => d.clone(),
            Some(_) => {
                reply.error(Errno::EISDIR);
                return;
            }
            None => {
                reply.error(Errno::ENOENT);
                return;
            }
        };
        match st.file_map(&data) {
            Ok(map) => {
                let fh = st.next_fh;
                st.next_fh += 1;
                st.files.insert(fh, map);
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE)
            }
            Err(e) => {
                tracing::warn!("mount: a file could not be opened: {e}");
                reply.error(Errno::EIO)
            }
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.state().read(fh.0, offset, size) {
            Ok(b) => reply.data(&b),
            Err(e) => {
                tracing::warn!("mount: a read failed: {e}");
                reply.error(Errno::EIO)
            }
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.state().files.remove(&fh.0);
        reply.ok();
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    /// The extended attributes the snapshot recorded.
    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let st = self.state();
        let Some(What::Entry(n)) = st.inode(ino).map(|i| &i.what) else {
            reply.error(Errno::NO_XATTR);
            return;
        };
        match n.meta.xattrs.iter().find(|(k, _)| k.as_slice() == name.as_bytes()) {
            None => reply.error(Errno::NO_XATTR),
            Some((_, v)) if size == 0 => reply.size(v.len() as u32),
            Some((_, v)) if v.len() <= size as usize => reply.data(v),
            Some(_) => reply.error(Errno::ERANGE),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let st = self.state();
        let mut list = Vec::new();
        if let Some(What::Entry(n)) = st.inode(ino).map(|i| &i.what) {
            for (k, _) in &n.meta.xattrs {
                list.extend_from_slice(k);
                list.push(0);
            }
        }
        if size == 0 {
            reply.size(list.len() as u32);
        } else if list.len() <= size as usize {
            reply.data(&list);
        } else {
            reply.error(Errno::ERANGE);
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let mut st = self.state();
        let children = match st.children(ino) {
            Ok(c) => c,
            Err(e) => {
                reply.error(e);
                return;
            }
        };
        let parent = st.inode(ino).map(|i| i.parent).unwrap_or(INodeNo::ROOT);
        let mut entries = vec![
            (ino, FileType::Directory, b".".to_vec()),
            (parent, FileType::Directory, b"..".to_vec()),
        ];
        for (name, c) in children {
            let kind = st.attr(c).map(|a| a.kind).unwrap_or(FileType::RegularFile);
            entries.push((c, kind, name));
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, i as u64 + 1, kind, OsStr::from_bytes(&name)) {
                break;
            }
        }
        reply.ok();
    }
}

/// Mount `fs` at `dir` and serve it until the mount goes away (`umount DIR`); SIGINT and
/// SIGTERM detach it from the signal thread (`signals::set_mount`).
pub fn serve(fs: SnapshotFs, dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).with_context(|| format!("mount point {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("mount point {} is not a folder", dir.display());
    }
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::FSName("projectclone".into()),
        MountOption::Subtype("projectclone".into()),
    ];
    let session = fuser::spawn_mount(fs, dir, &cfg).with_context(|| {
        format!(
            "cannot mount at {}: FUSE needs /dev/fuse (the fuse kernel module) and, without root, \
             fusermount3 (Debian package fuse3)",
            dir.display()
        )
    })?;
    crate::signals::set_mount(Some(dir.to_path_buf()));
    let ended = session.join();
    crate::signals::set_mount(None);
    ended.with_context(|| format!("the mount at {}", dir.display()))
}
