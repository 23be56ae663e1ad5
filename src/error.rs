//! The library's one error type. Variants are named by what the caller can do about them.

use std::path::PathBuf;

/// A result whose error is the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong. Match on [`Error::kind`] for what to do about it; the
/// variants themselves are the program's detail and may change between minor versions.
/// The message (`Display`) says what went wrong, where, and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read or written (the local store, a source, a target).
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The program adds where a password comes from (`cli::output::command_failed`).
    #[error("wrong password: no key in {0} opens with it")]
    WrongPassword(String),
    /// The program adds how to give one.
    #[error("{0} needs a password")]
    PasswordRequired(String),
    /// Opened without a password, but no key opens so. The program adds how to give one.
    #[error(
        "{0} has no key that opens without a password (it was made with one, or its password-less key was removed)"
    )]
    NoPasswordlessKey(String),
    /// A password was given, but only a password-less key is there: refused, so that a key
    /// file planted without a password never takes a password-protected repository over.
    /// The program adds how to open without one.
    #[error(
        "{0} opens only without a password (its key is stored in clear), and a password was given: refused, so that \
         a key file planted without a password never takes a password-protected repository over. If this \
         repository is meant to have no password, open it without one"
    )]
    PasswordlessOnly(String),
    /// The repository is not the one this client trusted: its keys or config were replaced.
    #[error("{0}")]
    TrustChanged(String),
    /// The program adds how to create one.
    #[error("{0} is not a projectclone repository (no config file): create one first, or name another location")]
    NotARepository(String),
    /// `init` found a repository at the location.
    #[error("repository {0} already exists")]
    AlreadyExists(String),
    /// Stored data failed to authenticate or to parse.
    #[error("corrupt repository data: {0}")]
    Corrupt(String),
    /// Written by a newer format than this build reads.
    #[error("unsupported repository format: {0}")]
    Unsupported(String),
    /// No snapshot has this id, prefix or name.
    #[error("snapshot not found: {0}")]
    SnapshotNotFound(String),
    /// A snapshot id prefix matches more than one snapshot.
    #[error("ambiguous snapshot prefix {0}: matches several snapshots, give more digits")]
    AmbiguousSnapshot(String),
    /// A path asked for is not in the snapshot.
    #[error("path not found in snapshot: {0}")]
    PathNotInSnapshot(String),
    /// The program adds how to remove a lock whose holder is gone.
    #[error("repository is locked by {0}; wait for it to finish, or remove the lock if its holder is gone")]
    Locked(String),
    /// A lock object could not be written into `dir` (the repository's `locks/`).
    #[error("could not write a lock in {dir}: {source}")]
    LockNotWritten {
        /// The repository's `locks/`.
        dir: PathBuf,
        /// What the store said.
        #[source]
        source: std::io::Error,
    },
    /// The local index cache (SQLite) failed.
    #[error("index cache {path}: {source}")]
    Index {
        /// The cache's database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored tree holds an entry that a restore must not write (an absolute name, `..`,
    /// a slash inside a name).
    #[error("unsafe entry in repository tree: {0}")]
    Hostile(String),
    /// The request is wrong: a bad argument or option, said in the message.
    #[error("{0}")]
    Invalid(String),
    /// A deletion refused because the repository is open append-only (only lock files are
    /// deleted then).
    #[error("{0}")]
    AppendOnly(String),
    /// A repository location string that names no location this build knows (`gdrive:x`,
    /// `ftp://…`): a usage error, like a bad flag value.
    #[error("{0}")]
    BadLocation(String),
    /// A storage request failed (remote stores; the local directory reports `Io`).
    #[error("{location}: {message}")]
    Storage {
        /// What the failure means to the caller.
        kind: StorageKind,
        /// Where: the store and the object (never with credentials).
        location: String,
        /// What the store said.
        message: String,
    },
}

/// What a failed storage request means to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageKind {
    /// The object (or the place asked for) does not exist.
    NotFound,
    /// The request may succeed if tried again: a timeout, a dropped connection, a server
    /// busy or failing (HTTP 5xx, 429), a connection that could not be made.
    Transient,
    /// Trying again will not help: refused credentials or permissions, a bad request.
    Permanent,
}

/// What kind of failure an [`Error`] is, for a caller that acts on it rather than shows it:
/// one match instead of one per variant. New kinds may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No repository at the location, or no such snapshot, path or object.
    NotFound,
    /// The password opens no key, or a password is needed and none was given.
    WrongPassword,
    /// Another process holds a lock that this operation cannot share.
    Locked,
    /// Stored data is damaged, malformed or unsafe, or the repository is not the one this
    /// client trusted (its keys or config were replaced).
    Damaged,
    /// Written by a newer format than this build reads.
    Unsupported,
    /// The request itself is wrong: a bad argument or location, an ambiguous prefix, a
    /// repository that already exists.
    Invalid,
    /// The disk, the network or the store failed (it may pass: see
    /// [`Error::is_transient`]).
    Io,
}

impl Error {
    /// The kind of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotARepository(_) | Error::SnapshotNotFound(_) | Error::PathNotInSnapshot(_) => ErrorKind::NotFound,
            Error::WrongPassword(_)
            | Error::PasswordRequired(_)
            | Error::NoPasswordlessKey(_)
            | Error::PasswordlessOnly(_) => ErrorKind::WrongPassword,
            Error::Locked(_) => ErrorKind::Locked,
            Error::Corrupt(_) | Error::Hostile(_) | Error::TrustChanged(_) => ErrorKind::Damaged,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Invalid(_)
            | Error::BadLocation(_)
            | Error::AmbiguousSnapshot(_)
            | Error::AlreadyExists(_)
            | Error::AppendOnly(_) => ErrorKind::Invalid,
            Error::Storage {
                kind: StorageKind::NotFound,
                ..
            } => ErrorKind::NotFound,
            Error::Io { .. } | Error::LockNotWritten { .. } | Error::Index { .. } | Error::Storage { .. } => {
                ErrorKind::Io
            }
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    /// An [`Error::Corrupt`] saying `msg`.
    pub fn corrupt(msg: impl Into<String>) -> Self {
        Error::Corrupt(msg.into())
    }

    /// Does this error say that the object does not exist?
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Storage { kind, .. } => *kind == StorageKind::NotFound,
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }

    /// May the failed request succeed if tried again?
    pub fn is_transient(&self) -> bool {
        use std::io::ErrorKind::*;
        match self {
            Error::Storage { kind, .. } => *kind == StorageKind::Transient,
            Error::Io { source, .. } => matches!(
                source.kind(),
                TimedOut
                    | Interrupted
                    | WouldBlock
                    | ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
            ),
            _ => false,
        }
    }

    /// Does this error say that stored data is missing or damaged (as opposed to a
    /// failure that may pass, such as a timeout or a full disk)? An I/O error other than
    /// "not found" counts only when it persisted through a retry, which the caller decides.
    pub fn is_damage(&self) -> bool {
        match self {
            Error::Corrupt(_) => true,
            Error::Storage { kind, .. } => *kind == StorageKind::NotFound,
            Error::Io { source, .. } => {
                matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory | std::io::ErrorKind::InvalidData
                ) || source.raw_os_error() == Some(libc::EIO)
            }
            _ => false,
        }
    }

    /// A lock could not be written because the repository refuses writes: a read-only
    /// file system (EROFS) or no permission to write there (EACCES, EPERM: a repository
    /// of another user, an immutable folder).
    pub fn repository_read_only(&self) -> bool {
        let Error::LockNotWritten { source, .. } = self else {
            return false;
        };
        matches!(
            source.raw_os_error(),
            Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM)
        )
    }
}

/// Attach a path to an `io::Result`.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_the_kind_a_caller_expects() {
        let io = || std::io::Error::other("x");
        let cases = [
            (Error::NotARepository("r".into()), ErrorKind::NotFound),
            (Error::SnapshotNotFound("s".into()), ErrorKind::NotFound),
            (Error::PathNotInSnapshot("p".into()), ErrorKind::NotFound),
            (
                Error::Storage {
                    kind: StorageKind::NotFound,
                    location: "l".into(),
                    message: "m".into(),
                },
                ErrorKind::NotFound,
            ),
            (Error::WrongPassword("r".into()), ErrorKind::WrongPassword),
            (Error::PasswordRequired("r".into()), ErrorKind::WrongPassword),
            (Error::NoPasswordlessKey("r".into()), ErrorKind::WrongPassword),
            (Error::PasswordlessOnly("r".into()), ErrorKind::WrongPassword),
            (Error::Locked("h".into()), ErrorKind::Locked),
            (Error::Corrupt("c".into()), ErrorKind::Damaged),
            (Error::Hostile("h".into()), ErrorKind::Damaged),
            (Error::TrustChanged("t".into()), ErrorKind::Damaged),
            (Error::Unsupported("u".into()), ErrorKind::Unsupported),
            (Error::Invalid("i".into()), ErrorKind::Invalid),
            (Error::BadLocation("b".into()), ErrorKind::Invalid),
            (Error::AmbiguousSnapshot("a".into()), ErrorKind::Invalid),
            (Error::AlreadyExists("r".into()), ErrorKind::Invalid),
            (Error::io("/x", io()), ErrorKind::Io),
            (
                Error::Storage {
                    kind: StorageKind::Transient,
                    location: "l".into(),
                    message: "m".into(),
                },
                ErrorKind::Io,
            ),
            (
                Error::LockNotWritten {
                    dir: "/l".into(),
                    source: io(),
                },
                ErrorKind::Io,
            ),
        ];
        for (e, k) in cases {
            assert_eq!(e.kind(), k, "{e:?}");
            // The library's own words name no flag and no command of the program: a
            // library caller has neither (the program adds its hints).
            let text = e.to_string();
            assert!(!text.contains("--") && !text.contains("`projectclone "), "{text}");
        }
    }
}
