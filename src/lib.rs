//! projectclone: exact, restorable snapshots of project directories in a
//! content-addressed, deduplicating, encrypted repository.
//!
//! # The library
//! [`Repository`] is the stable surface: open or create a repository at a location (a
//! folder, `s3:…`, `sftp:…`, a plugin store) with [`Credentials`], then back up, list,
//! restore, check and prune, each method taking an options struct built with methods
//! ([`BackupOptions`], [`RestoreOptions`], [`PruneOptions`]) and a [`Progress`] callback,
//! and each taking the lock its work needs. Errors are one type, [`Error`], whose
//! [`kind`](Error::kind) a caller matches ([`ErrorKind`]).
//!
//! ```
//! use projectclone::{BackupOptions, Credentials, ErrorKind, InitOptions, NoProgress, OpenOptions, Repository};
//! # let tmp = tempfile::tempdir()?;
//! # let project = tmp.path().join("project");
//! # std::fs::create_dir(&project)?;
//! # std::fs::write(project.join("notes.txt"), "hello")?;
//! let at = tmp.path().join("repo");
//! let at = at.to_str().unwrap();
//! let open = OpenOptions::new().cache_dir(tmp.path().join("cache"));
//! # let open = open.state_dir(tmp.path().join("state"));
//! let init = InitOptions::new().kdf(1024, 1).open_options(open.clone());
//! let mut repo = Repository::init(at, &Credentials::password("s3cret"), &init)?;
//! repo.backup(&BackupOptions::new([&project]).note("before the refactor"), &NoProgress)?;
//! assert_eq!(repo.snapshots()?.len(), 1);
//!
//! let wrong = Repository::open(at, &Credentials::password("guess"), &open).unwrap_err();
//! assert_eq!(wrong.kind(), ErrorKind::WrongPassword);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Use it without the command line's dependencies:
//! `projectclone = { version = "1", default-features = false }`.
//!
//! Without the default features the crate exports this surface and nothing else: the
//! engine's modules are private. The `internals` feature (part of `cli`, the program's
//! feature) makes them public for the `projectclone` binary, the fuzz targets and the
//! benchmarks; they are hidden from this documentation, not covered by semantic versioning,
//! and change without notice.
//!
//! # Code map (internals)
//! - `id`: typed 32-byte ids. `error`: the one error type.
//! - `format`: every on-disk structure and its pure encode/decode (mirrors `format-spec/`).
//! - `crypto`: Argon2id key wrapping, XChaCha20-Poly1305 sealing, keyed BLAKE3 ids.
//! - `chunker`, `compress`, `blob`: plaintext chunk ⇄ sealed blob.
//! - `pack`: pack writer (sans-IO) and header reader.
//! - `backend`: the storage trait, the local directory, S3, SFTP and plugin stores.
//! - `index`: the SQLite index cache (the only module speaking SQL).
//! - `repo`, `lock`: open/init/unlock, typed reads, repository locks.
//! - `prefetch`: read-ahead threads in front of the backup walker.
//! - `backup`, `restore`, `check`, `inspect`, `prune`: the commands' logic.
//! - `select`: filters, `latest` and retention groups across the projects of a repository.
//! - `export`: the folder copy, tar archive and incremental hard-link views of a snapshot;
//!   `import`: the older Python tool's backups brought in as snapshots.
//!   `target`: keeps restore and export targets out of the repository and the cache.
//!   `dump`: one file (`cat`) or a folder as a tar stream (`dump`) for pipes.
//! - `client`: the stable surface above, built on the rest.
//!
//! Dependency direction: client → commands → repo → pack/index/blob → format/crypto/chunker/compress → id;
//! `backend` imports only the error type.

#![deny(missing_docs)]
// Without `internals` the engine's modules are private, and what only the program reaches
// through them (imports, repair, parity, the older tool's views, ...) is unused here.
#![cfg_attr(not(feature = "internals"), allow(dead_code, unused_imports))]

/// The engine's modules: public (and hidden from the documentation) with the `internals`
/// feature, which the program (`cli`), the fuzz targets and the benchmarks use; private
/// without it, so a library user who leaves the default features out sees only the surface
/// re-exported below.
macro_rules! internal_modules {
    ($($name:ident),* $(,)?) => { $(
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        mod $name;
    )* };
}

internal_modules!(
    backend, backup, blob, check, chunker, compress, copy, crypto, dump, error, export, find, format, git, id, import,
    index, inspect, location, lock, meta, pack, pack_cache, packer, parity, per_thread, platform, prefetch, progress,
    prune, repair, repo, restore, seal, select, status, suggest, target, trust, verify, whoami
);
#[cfg(feature = "config")]
internal_modules!(config);

mod client;
#[cfg(feature = "config")]
mod settings;

pub use client::{
    BackupOptions, BackupOutcome, Change, ChangeKind, CheckOptions, CheckOutcome, CopyOptions, CopyOutcome,
    Credentials, ExportOutcome, InitOptions, OpenOptions, PruneOptions, PruneOutcome, Repository, RestoreOptions,
    RestoreOutcome, SnapshotInfo, read_password_file, run_password_command,
};
pub use error::{Error, ErrorKind, Result, StorageKind};
pub use id::{ChunkId, PackId, SnapshotId, TreeId};
pub use progress::{NoProgress, Progress};
#[cfg(feature = "config")]
pub use settings::Settings;

#[doc(hidden)]
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

#[doc(hidden)]
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
