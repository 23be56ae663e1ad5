//! Progress reporting: the library reports, the CLI renders (a bar on a terminal, status
//! lines with `--json-status`, nothing otherwise).
//!
//! Every event is a delta (`add_total`, `add_bytes`, `file_done`, `error`), so threads
//! report without coordinating and a command made of several pieces of work (an import
//! runs one backup per folder) keeps adding to the same counts. Work is counted in
//! entries ("files") and bytes:
//! - the total is announced up front when it is known (restore's and export's plan,
//!   check's packs, prune's packs to rewrite), or as it is found between `scanning(true)`
//!   and `scanning(false)`: the total is then a lower bound, and a renderer shows no
//!   percentage or ETA. Copy's walk reads as it goes; a backup, when `wants_totals`,
//!   counts its sources on a thread of its own while it reads, and ends the scanning
//!   when that count is done (else its walk counts as it goes);
//! - bytes are reported per chunk or blob, so a big file moves the count while it is
//!   read or written, not only when it is done.
//!
//! Implementations must be cheap: events come per chunk, from several threads.

use std::path::Path;

/// Receives a long command's progress. Every event is a delta, sent from several threads:
/// more work found (`add_total`; while `scanning(true)` the total is still a lower bound),
/// bytes done (per chunk or blob, so a big file moves the count), an entry done, a problem.
/// Every method has an empty default, so an implementation overrides only what it shows,
/// and must be cheap; [`NoProgress`] shows nothing.
pub trait Progress: Sync {
    /// Are the counts shown (a bar, status lines)? Then a command may spend some work on
    /// knowing its totals up front (a backup counts its sources before it reads them).
    fn wants_totals(&self) -> bool {
        false
    }
    /// More work found: `files` entries holding `bytes` bytes.
    fn add_total(&self, _files: u64, _bytes: u64) {}
    /// While on, the totals are still growing (a walk that counts as it goes).
    fn scanning(&self, _on: bool) {}
    /// `bytes` more bytes processed (read, written, verified or copied).
    fn add_bytes(&self, _bytes: u64) {}
    /// Work on `path` begins (a file read or written, a pack verified).
    fn current(&self, _path: &Path) {}
    /// One more entry done.
    fn file_done(&self) {}
    /// One more problem; the command goes on and reports it at the end.
    fn error(&self) {}
    /// An entry was written at `rel`, relative to the target (restore and export list
    /// them at `-v`).
    fn written(&self, _rel: &Path) {}
    /// The command's work is over.
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}
