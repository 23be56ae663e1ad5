//! What a backup leaves out beyond `--exclude` and the ignore files: the contents of cache
//! directories (`--exclude-caches`), other file systems (`--one-file-system`) and large
//! files (`--exclude-larger-than`). The walker and the read-ahead threads ask the same
//! questions here, so both visit the same entries.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The file that marks a cache directory (<https://bford.info/cachedir/>).
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
/// A valid tag file starts with exactly these bytes.
pub const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// The rules of one backup, from [`super::BackupOptions`].
#[derive(Clone, Debug, Default)]
pub struct Rules {
    pub exclude_caches: bool,
    pub one_file_system: bool,
    pub exclude_larger_than: Option<u64>,
}

/// What the rules say about one entry (after `--exclude` and the ignore files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Left out, for this reason.
    Skip(String),
    /// A directory on another file system: kept as an empty directory.
    EmptyDir(String),
}

impl Rules {
    /// `source_dev`: the device of the source this entry is under.
    pub fn entry(&self, md: &std::fs::Metadata, source_dev: u64) -> Verdict {
        if self.one_file_system && md.dev() != source_dev {
            let why = "on another file system (one-file-system)";
            return if md.is_dir() {
                Verdict::EmptyDir(format!("{why}: kept as an empty directory"))
            } else {
                Verdict::Skip(why.into())
            };
        }
        if let Some(limit) = self.exclude_larger_than
            && md.is_file()
            && md.len() > limit
        {
            return Verdict::Skip(format!(
                "{} is larger than {} (exclude-larger-than)",
                bytesize::ByteSize(md.len()).display().iec(),
                bytesize::ByteSize(limit).display().iec()
            ));
        }
        Verdict::Keep
    }

    /// With `--exclude-caches`, is `dir` (whose entry names are `names`) a cache
    /// directory? Then only its tag file is backed up.
    pub fn cache_dir<'a>(&self, dir: &Path, mut names: impl Iterator<Item = &'a [u8]>) -> bool {
        self.exclude_caches && names.any(|n| n == CACHEDIR_TAG.as_bytes()) && is_cache_dir(dir)
    }
}

/// Does `dir` hold a valid `CACHEDIR.TAG`: a regular file (not a symlink) that starts with
/// the signature? (As restic and borg check it.)
pub fn is_cache_dir(dir: &Path) -> bool {
    let tag = dir.join(CACHEDIR_TAG);
    if !std::fs::symlink_metadata(&tag).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(f) = std::fs::File::open(&tag) else {
        return false;
    };
    let mut head = Vec::with_capacity(CACHEDIR_SIGNATURE.len());
    f.take(CACHEDIR_SIGNATURE.len() as u64).read_to_end(&mut head).is_ok() && head == CACHEDIR_SIGNATURE
}

/// A size as `--exclude-larger-than` takes it: bytes, or a number (decimals allowed) with
/// K, M, G or T (powers of 1024, as restic reads them; `KiB`, `MB` and the like are
/// accepted and mean the same).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("{s:?} is not a size: write e.g. 500K, 10M, 1.5G or a number of bytes");
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(bad()),
    };
    let v = n * mult as f64;
    if !v.is_finite() || v >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(v.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("500K").unwrap(), 500 * 1024);
        assert_eq!(parse_size("10M").unwrap(), 10 << 20);
        assert_eq!(parse_size("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size(" 2t ").unwrap(), 2 << 40);
        for bad in ["", "M", "10X", "1.2.3K", "-5", "10 M B"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cache_tags_need_the_signature() {
        let d = tempfile::tempdir().unwrap();
        let rules = Rules {
            exclude_caches: true,
            ..Default::default()
        };
        let names = || [CACHEDIR_TAG.as_bytes()].into_iter();
        assert!(!rules.cache_dir(d.path(), names()), "no tag file");
        std::fs::write(
            d.path().join(CACHEDIR_TAG),
            b"Signature: 8a477f597d28d172789f06886806bc5",
        )
        .unwrap();
        assert!(!rules.cache_dir(d.path(), names()), "a signature one digit short");
        let mut ok = CACHEDIR_SIGNATURE.to_vec();
        ok.extend_from_slice(b"\n# This file is a cache directory tag.\n");
        std::fs::write(d.path().join(CACHEDIR_TAG), &ok).unwrap();
        assert!(rules.cache_dir(d.path(), names()));
        assert!(
            !Rules::default().cache_dir(d.path(), names()),
            "only with --exclude-caches"
        );
    }
}
