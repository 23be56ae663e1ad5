//! Progress reporting: the library reports, the CLI renders (only on a terminal).

use std::path::Path;

pub trait Progress: Sync {
    fn backup(&self, _files: u64, _bytes_read: u64, _current: &Path) {}
    fn restore(&self, _bytes_written: u64, _bytes_total: u64) {}
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}
