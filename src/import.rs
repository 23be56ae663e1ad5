//! Importing the older Python tool's backups — plain folder copies, hard-link incremental
//! folders and `.tar.gz` archives, named `YYYY-MM-DD_HHMMSS-<project>[-<note>]` — as
//! snapshots with their original time (local zone), project and note.
//!
//! Each import is an ordinary backup of the folder (or of the archive unpacked into a
//! private temporary folder beside it) through [`backup::backup`], recording the parsed
//! time and `/<project>` as the source path instead of the folder's own. Imports run
//! oldest first, so each finds the previous one of its project as its parent and the
//! unchanged files of an incremental series (the same inodes) are not read again.
//!
//! Archives are unpacked by the `tar` crate into a new, private (0700) folder that is
//! removed afterwards. An archive with a member (or hard-link target) that is absolute or
//! has a `..` component is refused whole, naming the member (the crate would silently skip
//! or re-root it); the crate refuses writes through symlinks outside the folder. Directory
//! times are set last: from a PAX `mtime` record, else from the header (GNU and ustar
//! archives), since the crate sets times on files only.
//!
//! Files given that are neither folders nor archives (a `.sha256` manifest beside the
//! archives, a note) are skipped and reported, so `import ~/project_backups/*` works; an
//! archive that cannot be unpacked is reported and the others are still imported.

use std::path::{Path, PathBuf};

use crate::backup::{self, BackupOptions, BackupResult};
use crate::compress::Compression;
use crate::error::{Error, IoContext, Result};
use crate::format::Time;
use crate::progress::Progress;
use crate::repo::Repository;

#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The project name, when a name alone cannot tell project from note.
    pub project: Option<String>,
    pub tags: Vec<String>,
    pub hostname: String,
    pub username: String,
    pub compression: Compression,
    pub dry_run: bool,
    /// The zone the old tool's names are in (local time).
    pub tz: jiff::tz::TimeZone,
    /// Paths never backed up (the repository and the cache).
    pub skip: Vec<PathBuf>,
}

/// What a backup's name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub time: Time,
    pub utc_offset: i32,
    pub project: String,
    pub note: Option<String>,
}

#[derive(Debug)]
pub struct Imported {
    pub source: PathBuf,
    pub parsed: Parsed,
    pub result: BackupResult,
}

/// What an import did with each path it was given.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Snapshots made (or, in a dry run, measured), oldest first.
    pub imported: Vec<Imported>,
    /// Paths that are not backups of the old tool (neither a folder nor an archive), with
    /// the reason: left alone.
    pub skipped: Vec<(PathBuf, String)>,
    /// Archives that could not be unpacked or were refused (a member outside the folder),
    /// with the reason: nothing of them was imported.
    pub failed: Vec<(PathBuf, String)>,
}

const ARCHIVE_EXTS: [&str; 5] = [".tar.gz", ".tgz", ".tar.zst", ".tzst", ".tar"];

/// The name without an archive extension, and whether it had one.
fn stem(name: &str) -> (&str, bool) {
    for ext in ARCHIVE_EXTS {
        if let Some(s) = name.strip_suffix(ext) {
            return (s, true);
        }
    }
    (name, false)
}

/// Parse `YYYY-MM-DD_HHMMSS-<rest>`: the time in `tz` and the rest.
fn parse_stamp<'a>(name: &'a str, tz: &jiff::tz::TimeZone) -> Option<(jiff::ZonedDateTime, &'a str)> {
    let (stamp, rest) = (name.get(..17)?, name.get(17..)?);
    let rest = rest.strip_prefix('-')?;
    let dt = jiff::civil::DateTime::strptime("%Y-%m-%d_%H%M%S", stamp).ok()?;
    let z = dt.to_zoned_datetime(tz.clone()).ok()?;
    (!rest.is_empty()).then_some((z, rest))
}

/// Time, project and note from a backup's file name. `project` settles a name like
/// `…-my-app-note` (is the project `my`, `my-app` or `my-app-note`?). A name without
/// the time stamp needs `project`, and takes its time from `mtime`.
pub fn parse_name(name: &str, project: Option<&str>, mtime: Time, tz: &jiff::tz::TimeZone) -> Result<Parsed> {
    let (base, _) = stem(name);
    let Some((z, rest)) = parse_stamp(base, tz) else {
        return match project {
            Some(p) => Ok(Parsed {
                time: mtime,
                utc_offset: jiff::Timestamp::new(mtime.secs, mtime.nanos as i32)
                    .map(|t| tz.to_offset(t).seconds())
                    .unwrap_or(0),
                project: p.to_string(),
                note: None,
            }),
            None => Err(Error::Invalid(format!(
                "{name}: not named YYYY-MM-DD_HHMMSS-<project>[-<note>]; give --project to import it \
                 (its time is then its modification time)"
            ))),
        };
    };
    let time = Time {
        secs: z.timestamp().as_second(),
        nanos: 0,
    };
    let utc_offset = z.offset().seconds();
    let (project, note) = match project {
        Some(p) if rest == p => (p.to_string(), None),
        Some(p) => match rest.strip_prefix(p).and_then(|r| r.strip_prefix('-')) {
            Some(note) => (p.to_string(), Some(note.to_string())),
            None => {
                return Err(Error::Invalid(format!(
                    "{name}: the name does not continue with the project {p:?} after its time stamp"
                )));
            }
        },
        None if !rest.contains('-') => (rest.to_string(), None),
        None => {
            let choices: Vec<&str> = rest.match_indices('-').map(|(i, _)| &rest[..i]).collect();
            return Err(Error::Invalid(format!(
                "{name}: cannot tell the project from the note; give --project (one of {}, or {rest:?})",
                choices.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", ")
            )));
        }
    };
    Ok(Parsed {
        time,
        utc_offset,
        project,
        note,
    })
}

fn mtime_of(md: &std::fs::Metadata) -> Time {
    use std::os::unix::fs::MetadataExt;
    Time {
        secs: md.mtime(),
        nanos: md.mtime_nsec() as u32,
    }
}

/// Unpack an archive into a new private folder beside it. Errors do not repeat the
/// archive's path: the caller reports them under it.
fn unpack(archive: &Path) -> Result<tempfile::TempDir> {
    let parent = match archive.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = tempfile::Builder::new()
        .prefix(".projectclone-import-")
        .tempdir_in(parent)
        .at(parent)?;
    let f = std::fs::File::open(archive).at(archive)?;
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let reader: Box<dyn std::io::Read> = if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)))
    } else if name.ends_with(".tar.zst") || name.ends_with(".tzst") {
        Box::new(zstd::stream::read::Decoder::new(f).at(archive)?)
    } else {
        Box::new(std::io::BufReader::new(f))
    };
    // The tar crate wraps the cause ("failed to unpack `…`"): show the whole chain.
    let bad = |e: std::io::Error| {
        let mut msg = format!("cannot unpack: {e}");
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            msg.push_str(&format!(": {c}"));
            cause = c.source();
        }
        Error::Invalid(msg)
    };
    let dst = dir.path().canonicalize().at(dir.path())?;
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(true);
    ar.set_preserve_ownerships(crate::platform::is_root());
    ar.set_overwrite(false);
    // As `Archive::unpack` does: directories last, deepest first, so a read-only directory
    // does not stop its contents; and then the PAX nanosecond mtimes, which the tar crate
    // does not apply (it sets whole seconds).
    let mut dirs = Vec::new();
    for e in ar.entries().map_err(bad)? {
        let mut e = e.map_err(bad)?;
        let (t, sparse) = pax_info(&mut e);
        if sparse {
            // The tar crate would unpack the stand-in member and its region map as a file.
            return Err(Error::Invalid(format!(
                "holds a GNU sparse 1.0 member ({}), which import cannot unpack; extract \
                 it with GNU tar or bsdtar and import the folder",
                String::from_utf8_lossy(&e.path_bytes())
            )));
        }
        let rel = match member_path(&e.path_bytes()) {
            Ok(r) => r,
            Err(why) => return Err(refused(&e.path_bytes(), why)),
        };
        if e.header().entry_type() == tar::EntryType::Link
            && let Some(target) = e.link_name_bytes().map(|l| l.into_owned())
            && let Err(why) = member_path(&target)
        {
            let what = format!("hard link to {:?}", String::from_utf8_lossy(&target));
            return Err(refused(&e.path_bytes(), &format!("its target is {why} ({what})")));
        }
        if e.header().entry_type() == tar::EntryType::Directory {
            // GNU and ustar archives carry no PAX time: the header's whole seconds.
            let t = t.or_else(|| {
                e.header().mtime().ok().map(|secs| Time {
                    secs: i64::try_from(secs).unwrap_or(i64::MAX),
                    nanos: 0,
                })
            });
            dirs.push((e, t, rel));
            continue;
        }
        if e.unpack_in(&dst).map_err(bad)?
            && let (Some(t), Some(rel)) = (t, rel)
        {
            set_mtime(&dst.join(rel), t);
        }
    }
    dirs.sort_by(|a, b| b.0.path_bytes().cmp(&a.0.path_bytes()));
    let mut dir_times = Vec::new();
    for (mut d, t, rel) in dirs {
        if d.unpack_in(&dst).map_err(bad)?
            && let (Some(t), Some(rel)) = (t, rel)
        {
            dir_times.push((dst.join(rel), t));
        }
    }
    for (p, t) in dir_times {
        set_mtime(&p, t);
    }
    Ok(dir)
}

/// A member path as the tar crate unpacks it (empty and `.` components dropped; `None`
/// for the top folder itself), or why it is refused: absolute, or with a `..` component
/// (the crate would re-root the one and skip the other, silently).
fn member_path(p: &[u8]) -> std::result::Result<Option<PathBuf>, &'static str> {
    use std::os::unix::ffi::OsStrExt;
    if p.starts_with(b"/") {
        return Err("an absolute path");
    }
    let mut out = PathBuf::new();
    for c in p.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("a path with a `..` component"),
            c => out.push(std::ffi::OsStr::from_bytes(c)),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// The error for an archive refused because of `member` (the caller names the archive).
fn refused(member: &[u8], why: &str) -> Error {
    Error::Invalid(format!(
        "refused, nothing of it imported: member {:?} is {why}, which would land outside \
         the folder it is unpacked into; extract it by hand, check what it holds, and import \
         the folder",
        String::from_utf8_lossy(member)
    ))
}

/// An entry's PAX `mtime` record, if any, and whether it is a GNU sparse member.
fn pax_info<R: std::io::Read>(e: &mut tar::Entry<'_, R>) -> (Option<Time>, bool) {
    let (mut mtime, mut sparse) = (None, false);
    if let Ok(Some(exts)) = e.pax_extensions() {
        for x in exts.flatten() {
            match x.key() {
                Ok("mtime") => mtime = x.value().ok().and_then(parse_pax_time),
                Ok(k) if k.starts_with("GNU.sparse.") => sparse = true,
                _ => {}
            }
        }
    }
    (mtime, sparse)
}

/// `"1700000000.5"` → 1700000000 s + 500000000 ns; `"-1.5"` is 1.5 s before 1970.
fn parse_pax_time(v: &str) -> Option<Time> {
    let (neg, v) = match v.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, v),
    };
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = int.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: u32 = digits.parse().ok()?;
    Some(match (neg, nanos) {
        (false, n) => Time { secs, nanos: n },
        (true, 0) => Time { secs: -secs, nanos: 0 },
        (true, n) => Time {
            secs: -secs - 1,
            nanos: 1_000_000_000 - n,
        },
    })
}

/// Set a member's mtime (and atime) without following a final symlink.
fn set_mtime(p: &Path, t: Time) {
    let ts = rustix::fs::Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nanos as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    if let Err(e) = rustix::fs::utimensat(rustix::fs::CWD, p, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        tracing::warn!("{}: cannot set its time: {e}", p.display());
    }
}

/// The folder to back up from an unpacked archive: its one top folder if it has
/// exactly one (the old tool's archives hold `<project>/…`), else the whole folder.
fn content_root(dir: &Path) -> Result<PathBuf> {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .at(dir)?
        .collect::<std::io::Result<_>>()
        .at(dir)?;
    if let [one] = entries.as_slice()
        && one.file_type().at(one.path())?.is_dir()
    {
        return Ok(one.path());
    }
    Ok(dir.to_path_buf())
}

/// Import each of `paths` as a snapshot, oldest first. Paths that are neither folders nor
/// archives are skipped; archives that cannot be unpacked are reported and the others
/// imported. Any other error (a name that cannot be parsed, a repository failure) stops
/// the import: names are all parsed before anything is imported.
pub fn import(
    repo: &mut Repository,
    paths: &[PathBuf],
    opts: &ImportOptions,
    progress: &dyn Progress,
    guard: Option<&crate::lock::LockGuard>,
) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    let mut todo = Vec::new();
    for p in paths {
        let md = std::fs::symlink_metadata(p).at(p)?;
        let name = p.file_name().and_then(|n| n.to_str());
        let archive = md.is_file() && name.is_some_and(|n| stem(n).1);
        if !md.is_dir() && !archive {
            report.skipped.push((
                p.clone(),
                "not a backup of the old tool (neither a folder nor a .tar.gz, .tar.zst or .tar archive)".into(),
            ));
            continue;
        }
        let name = name.ok_or_else(|| Error::Invalid(format!("{}: not a UTF-8 name", p.display())))?;
        let parsed = parse_name(name, opts.project.as_deref(), mtime_of(&md), &opts.tz)?;
        todo.push((p.clone(), archive, parsed));
    }
    todo.sort_by(|a, b| (a.2.time, &a.0).cmp(&(b.2.time, &b.0)));
    for (path, archive, parsed) in todo {
        let unpacked = if archive {
            match unpack(&path) {
                Ok(d) => Some(d),
                Err(e) => {
                    report.failed.push((path, e.to_string()));
                    continue;
                }
            }
        } else {
            None
        };
        let source = match &unpacked {
            Some(d) => content_root(d.path())?,
            None => path.clone(),
        };
        let mut tags = vec!["imported".to_string()];
        tags.extend(opts.tags.iter().cloned());
        let bopts = BackupOptions {
            paths: vec![source],
            tags,
            note: parsed.note.clone(),
            dry_run: opts.dry_run,
            compression: opts.compression,
            hostname: opts.hostname.clone(),
            username: opts.username.clone(),
            skip: opts.skip.clone(),
            time_override: Some((parsed.time, parsed.utc_offset)),
            paths_override: Some(vec![format!("/{}", parsed.project).into_bytes()]),
            ..Default::default()
        };
        let result = backup::backup(repo, &bopts, progress, guard)?;
        drop(unpacked);
        report.imported.push(Imported {
            source: path,
            parsed,
            result,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::UTC
    }

    #[test]
    fn names_give_time_project_and_note() {
        let t = Time::default();
        let p = parse_name("2024-03-05_140102-app-before_refactor.tar.gz", Some("app"), t, &utc()).unwrap();
        assert_eq!(p.project, "app");
        assert_eq!(p.note.as_deref(), Some("before_refactor"));
        assert_eq!(p.time.secs, 1_709_647_262);
        let p = parse_name("2024-03-05_140102-app", None, t, &utc()).unwrap();
        assert_eq!((p.project.as_str(), p.note), ("app", None));
        let p = parse_name("2024-03-05_140102-my-app", Some("my-app"), t, &utc()).unwrap();
        assert_eq!((p.project.as_str(), p.note), ("my-app", None));
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("5.000000001"), Some(Time { secs: 5, nanos: 1 }));
        assert_eq!(
            parse_pax_time("1.5"),
            Some(Time {
                secs: 1,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            parse_pax_time("-1.5"),
            Some(Time {
                secs: -2,
                nanos: 500_000_000
            })
        );
        assert_eq!(parse_pax_time("7"), Some(Time { secs: 7, nanos: 0 }));
        assert_eq!(parse_pax_time("x"), None);
        assert_eq!(member_path(b"./a//b/"), Ok(Some(PathBuf::from("a/b"))));
        assert_eq!(member_path(b"./"), Ok(None));
        assert!(member_path(b"a/../b").is_err());
        assert!(member_path(b"/etc/passwd").is_err());
    }

    #[test]
    fn ambiguous_or_unnamed_backups_need_the_project() {
        let t = Time { secs: 7, nanos: 8 };
        let e = parse_name("2024-03-05_140102-my-app-x", None, t, &utc()).unwrap_err();
        assert!(e.to_string().contains("--project"), "{e}");
        assert!(parse_name("copy-of-app", None, t, &utc()).is_err());
        let p = parse_name("copy-of-app", Some("app"), t, &utc()).unwrap();
        assert_eq!(p.time, t);
        assert!(parse_name("2024-03-05_140102-other-x", Some("app"), t, &utc()).is_err());
        assert!(parse_name("2024-13-05_140102-app", None, t, &utc()).is_err());
    }
}
