//! What people back up besides a tree, and read back without a restore: `backup --stdin`
//! (its terminal check), the backup rules `--exclude-caches`, `--one-file-system` and
//! `--exclude-larger-than` with their config keys, and the `cat` and `dump` commands.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result, anyhow, bail};

use projectclone::backup::{BackupOptions, parse_size};

use super::config::{Files, Source};
use super::{Ctx, output};

/// `--stdin` reads what is piped in: a terminal there means the pipe was forgotten, and
/// waiting for typed input would look like a hang.
pub fn refuse_terminal_stdin() -> Result<()> {
    if std::io::stdin().is_terminal() {
        bail!(
            "--stdin backs up what is piped in, but standard input is a terminal: pipe the data in, \
             e.g. `pg_dump app | projectclone backup --stdin --stdin-name app.sql`; nothing was backed up"
        );
    }
    Ok(())
}

/// The backup rules from the flags, else the config files (flag > file > off).
pub fn with_rules(
    mut opts: BackupOptions,
    files: &Files,
    exclude_caches: bool,
    one_file_system: bool,
    exclude_larger_than: Option<u64>,
) -> Result<BackupOptions> {
    opts.exclude_caches = exclude_caches || files.get(|l| l.exclude_caches.as_ref()).is_some_and(|s| s.value);
    opts.one_file_system = one_file_system || files.get(|l| l.one_file_system.as_ref()).is_some_and(|s| s.value);
    opts.exclude_larger_than = match exclude_larger_than {
        Some(n) => Some(n),
        None => match files.get(|l| l.exclude_larger_than.as_ref()) {
            // Checked when the file was read.
            Some(s) => Some(parse_size(&s.value).map_err(|e| anyhow!("{}: exclude-larger-than: {e}", s.source))?),
            None => None,
        },
    };
    Ok(opts)
}

/// The rows `config` shows for the backup rules.
pub fn config_rows(files: &Files, row: &mut impl FnMut(&str, serde_json::Value, Source)) {
    for (key, v) in [
        ("exclude-caches", files.get(|l| l.exclude_caches.as_ref())),
        ("one-file-system", files.get(|l| l.one_file_system.as_ref())),
    ] {
        match v {
            Some(s) => row(key, s.value.into(), s.source),
            None => row(key, false.into(), Source::Default),
        }
    }
    match files.get(|l| l.exclude_larger_than.as_ref()) {
        Some(s) => row("exclude-larger-than", s.value.into(), s.source),
        None => row("exclude-larger-than", serde_json::Value::Null, Source::Default),
    }
}

/// `cat SNAP PATH`: the file's bytes on stdout, nothing else there.
pub fn cat(ctx: &Ctx, snap: &str, path: &str, select: &super::select::SelectArgs) -> Result<u8> {
    if ctx.cli.json {
        bail!("--json prints on stdout, where `cat` writes the file; leave --json out");
    }
    let mut repo = ctx.open()?;
    let (_, s) = ctx.resolve(&repo, snap, select)?;
    let _lock = ctx.shared_lock(&mut repo, false, "cat")?;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    projectclone::dump::cat(&repo, &s, path, &mut w)?;
    w.flush().context("writing the file to standard output")?;
    Ok(0)
}

/// `dump SNAP [PATH]`: a tar stream on stdout; a summary on stderr.
pub fn dump(ctx: &Ctx, snap: &str, path: Option<&str>, select: &super::select::SelectArgs) -> Result<u8> {
    if ctx.cli.json {
        bail!("--json prints on stdout, where `dump` writes the archive; leave --json out");
    }
    if std::io::stdout().is_terminal() {
        bail!(
            "`dump` writes a tar archive to standard output, which is a terminal: redirect it to a file or pipe it, e.g. `projectclone dump latest | tar -x`"
        );
    }
    let mut repo = ctx.open()?;
    let (_, s) = ctx.resolve(&repo, snap, select)?;
    let _lock = ctx.shared_lock(&mut repo, false, "dump")?;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let res = projectclone::dump::dump(&repo, &s, path, &mut w, &projectclone::progress::NoProgress)?;
    w.flush().context("writing the archive to standard output")?;
    for (p, why) in &res.skipped {
        output::warn(&ctx.cli, &format!("{p} left out: {why}"));
    }
    if !res.errors.is_empty() {
        for (p, e) in &res.errors {
            super::report::error(
                "dump.entry_failed",
                &format!("{p}: {e}"),
                &[("path", p.as_str().into()), ("error", e.as_str().into())],
            );
        }
        bail!("parts of the snapshot cannot be read: no archive was written (`check` says more)");
    }
    Ok(0)
}
