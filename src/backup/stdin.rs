//! `backup --stdin`: what is piped in, stored as one file of the snapshot.
//!
//! The stream goes through the same chunker, dedup and packer as any file, a buffer at a
//! time: it is never written to disk. The snapshot's root holds the one file `NAME` and
//! records the path `/NAME` (as restic records a stdin backup), so the next backup of a
//! stream of that name has it as its parent, and equal content dedups against it.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;

use super::{BackupOptions, BackupResult, Source, Walker, run};
use crate::error::{Error, Result};
use crate::format::{ChunkRef, FileData, Meta, Node, NodeKind, Time};
use crate::id::{BlobId, ChunkId, TreeId};
use crate::lock::LockGuard;
use crate::progress::Progress;
use crate::repo::Repository;

/// The mode the file gets: a dump often holds data as private as its database, so only
/// its owner (the user who ran the backup) may read it once restored.
pub const STDIN_MODE: u32 = 0o100600;

/// Back up everything `input` yields as the file `name` (one plain name: no `/`, not `.`
/// or `..`). `opts.paths` must be empty; tags, note, host and compression apply.
pub fn backup_stdin(
    repo: &mut Repository,
    opts: &BackupOptions,
    name: &str,
    input: &mut dyn Read,
    progress: &dyn Progress,
    guard: Option<&LockGuard>,
) -> Result<BackupResult> {
    check_name(name)?;
    if !opts.paths.is_empty() {
        return Err(Error::Invalid(
            "a backup of standard input takes no paths: back the paths up in a backup of their own".into(),
        ));
    }
    let source = Source::Stream {
        name: name.as_bytes().to_vec(),
        input,
    };
    run(repo, opts, source, progress, guard)
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::Invalid(format!(
            "--stdin-name {name:?}: give a file name such as app.sql (no '/', not '.' or '..')"
        )));
    }
    Ok(())
}

impl Walker<'_> {
    /// Chunk and store the stream; the snapshot root holding its one file.
    pub(super) fn walk_stream(
        &mut self,
        name: &[u8],
        input: &mut dyn Read,
        has_parent: bool,
    ) -> Result<(TreeId, Option<Meta>)> {
        let mut chunks = Vec::new();
        let chunkers = self.chunkers.clone();
        let chunker = &chunkers.base;
        let repo = self.repo;
        let mut buf = std::mem::take(&mut self.buf);
        self.progress.add_total(1, 0);
        self.progress
            .current(std::path::Path::new(std::ffi::OsStr::from_bytes(name)));
        let mut input = input;
        let got = chunker.stream(&mut input, u64::MAX, &mut buf, |c| {
            let id = ChunkId(repo.keys.chunk_id(c));
            chunks.push(ChunkRef {
                id,
                len: c.len() as u32,
            });
            self.summary.data_read += c.len() as u64;
            // A stream's size is known only at its end: the total grows with it.
            self.progress.add_total(0, c.len() as u64);
            self.progress.add_bytes(c.len() as u64);
            self.store_chunk(BlobId(id.0), c).map_err(std::io::Error::other)
        });
        self.buf = buf;
        let size = got.map_err(|e| Error::io("standard input", e))?;
        self.progress.file_done();
        let content = self.content(chunks)?;
        if has_parent {
            self.summary.files_changed += 1;
        } else {
            self.summary.files_new += 1;
        }
        // Read to its end now: the file's time is when its last byte came in.
        let now = jiff::Timestamp::now();
        let now = Time {
            secs: now.as_second(),
            nanos: now.subsec_nanosecond() as u32,
        };
        let meta = Meta {
            mode: STDIN_MODE,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            mtime: now,
            ctime: now,
            nlink: 1,
            ..Meta::default()
        };
        let node = Node {
            name: name.to_vec(),
            kind: NodeKind::File(FileData {
                size,
                holes: Vec::new(),
                content,
            }),
            meta,
        };
        Ok((self.store_root(vec![node])?, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_plain_component() {
        for ok in ["app.sql", "stdin", "a b", ".hidden"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "/x", "x\0"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
