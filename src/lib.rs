//! projectclone: exact, restorable snapshots of project directories in a
//! content-addressed, deduplicating, encrypted repository.
//!
//! # Code map
//! - [`id`]: typed 32-byte ids. [`error`]: the one error type.
//! - [`format`](mod@format): every on-disk structure and its pure encode/decode (mirrors `format-spec/`).
//! - [`crypto`]: Argon2id key wrapping, XChaCha20-Poly1305 sealing, keyed BLAKE3 ids.
//! - [`chunker`], [`compress`], [`blob`]: plaintext chunk ⇄ sealed blob.
//! - [`pack`]: pack writer (sans-IO) and header reader.
//! - [`backend`]: the storage trait and the local directory backend.
//! - [`index`]: the SQLite index cache (the only module speaking SQL).
//! - [`repo`], [`lock`]: open/init/unlock, typed reads, repository locks.
//! - [`prefetch`]: read-ahead threads in front of the backup walker.
//! - [`backup`], [`restore`], [`check`], [`inspect`], [`prune`]: the commands' logic.
//! - [`select`]: filters, `latest` and retention groups across the projects of a repository.
//! - [`export`]: the folder copy, tar archive and incremental hard-link views of a snapshot;
//!   [`import`](mod@import): the older Python tool's backups brought in as snapshots.
//!   [`target`]: keeps restore and export targets out of the repository and the cache.
//!   [`dump`]: one file (`cat`) or a folder as a tar stream (`dump`) for pipes.
//!
//! Dependency direction: commands → repo → pack/index/blob → format/crypto/chunker/compress → id;
//! `backend` imports only the error type.
//!
//! ```no_run
//! use std::sync::Arc;
//! use projectclone::{backend::local::LocalBackend, repo::{Repository, InitOptions}};
//! let backend = Arc::new(LocalBackend::new("/tmp/repo"));
//! let mut repo = Repository::init(backend, Some(b"secret"), &InitOptions::default(), "/tmp/cache".as_ref())?;
//! let opts = projectclone::backup::BackupOptions { paths: vec![".".into()], ..Default::default() };
//! let res = projectclone::backup::backup(&mut repo, &opts, &projectclone::progress::NoProgress, None)?;
//! println!("{:?}", res.snapshot_id);
//! # Ok::<(), projectclone::Error>(())
//! ```

pub mod backend;
pub mod backup;
pub mod blob;
pub mod check;
pub mod chunker;
pub mod compress;
pub mod copy;
pub mod crypto;
pub mod dump;
pub mod error;
pub mod export;
pub mod format;
pub mod id;
pub mod import;
pub mod index;
pub mod inspect;
pub mod location;
pub mod lock;
pub mod meta;
pub mod pack;
pub mod pack_cache;
pub mod packer;
pub mod per_thread;
pub mod prefetch;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod seal;
pub mod select;
pub mod status;
pub mod target;
pub mod trust;

pub use error::{Error, ErrorKind, Result, StorageKind};
pub use id::{ChunkId, PackId, SnapshotId, TreeId};

/// Render raw name bytes for humans and JSON: valid UTF-8 as is, except that a
/// backslash becomes `\\` and each control byte (below 0x20, or 0x7f) and each byte
/// that is not part of valid UTF-8 becomes `\xHH`. Reversible; see `format-spec/`.
pub fn format_name(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// RFC 3339 with nanoseconds and the given UTC offset (seconds).
pub fn format_time(t: &format::Time, utc_offset: i32) -> String {
    let off = jiff::tz::Offset::from_seconds(utc_offset).unwrap_or(jiff::tz::Offset::UTC);
    match jiff::Timestamp::new(t.secs, t.nanos as i32) {
        Ok(ts) => ts
            .to_zoned_datetime(jiff::tz::TimeZone::fixed(off))
            .strftime("%Y-%m-%dT%H:%M:%S.%N%:z")
            .to_string(),
        Err(_) => format!("@{}.{:09}", t.secs, t.nanos),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_escape_reversibly() {
        assert_eq!(super::format_name(b"a\xffb\\c\nd\xc3\xa9"), "a\\xffb\\\\c\\x0ad\u{e9}");
    }

    #[test]
    fn time_has_nanos_and_offset() {
        let t = super::format::Time { secs: 0, nanos: 5 };
        assert_eq!(super::format_time(&t, 3600), "1970-01-01T01:00:00.000000005+01:00");
    }
}
