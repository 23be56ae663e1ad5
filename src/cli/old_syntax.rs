//! The older Python tool's command line (README "Coming from projectclone 4.x"):
//! `projectclone NOTE [--dest DIR] [-a|--archive] [--incremental] [--manifest]
//! [--manifest-sha] [--keep N] [--exclude G]... [--symlinks] [--dry-run] [--yes]`, and
//! `--encrypt`/`--recipient` for an age-encrypted archive (the roadmap's Phase 2), which
//! take their passphrase or keys exactly as `export --encrypt` does ([`super::encrypt`]).
//!
//! [`route`] runs before clap parses: when the first word is not a subcommand, not within
//! two edits of one (a typo: exit 2 with a suggestion), and either an old-tool flag is
//! given or stdin is a terminal, it rewrites the arguments to the hidden `old-syntax`
//! subcommand; any other unknown word is a usage error naming both syntaxes. [`run`]
//! backs the current directory up like `backup --note NOTE`, then writes the view the
//! old tool would have written into DEST through the export code. [`explain`] adds a
//! hint to clap's error when an old flag is given to a new subcommand.

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::CommandFactory;
use clap::error::{ContextKind, ContextValue, ErrorKind};

use projectclone::export::{self, OldView, OldViewOptions};

use super::{Cli, Command, Ctx, output};

/// The older syntax, for messages.
pub const SYNOPSIS: &str = "projectclone NOTE [--dest DIR] [-a|--archive] [--incremental] [--manifest] \
                            [--manifest-sha] [--keep N] [--exclude G]... [--symlinks] [--dry-run] [--yes] \
                            [--encrypt | --recipient AGE_PUBKEY...]";

/// The older tool's flags: (name, takes a value).
const OLD_FLAGS: &[(&str, bool)] = &[
    ("--dest", true),
    ("-a", false),
    ("--archive", false),
    ("--incremental", false),
    ("--manifest", false),
    ("--manifest-sha", false),
    ("--keep", true),
    ("--exclude", true),
    ("--symlinks", false),
    ("--dry-run", false),
    ("--yes", false),
    // Phase 2 of the old tool's roadmap: an encrypted archive.
    ("--encrypt", false),
    ("--recipient", true),
    ("--recipients-file", true),
    ("--encrypt-password-file", true),
];

/// The older tool's arguments (after `old-syntax`, which [`route`] inserts).
#[derive(clap::Args, Debug)]
pub struct OldArgs {
    /// The note of the snapshot, also the end of the view's name
    note: String,
    /// Destination folder of the views (default: `dest` of [export] in the config files,
    /// else ~/project_backups)
    #[arg(long, value_name = "DIR")]
    dest: Option<PathBuf>,
    /// A .tar.gz archive instead of a folder copy
    #[arg(short = 'a', long)]
    archive: bool,
    /// An incremental folder: files unchanged since the previous view are hard links to it
    #[arg(long)]
    incremental: bool,
    /// MANIFEST.txt (path<TAB>size lines) in the folder; with --archive, NAME.tar.gz.sha256
    #[arg(long)]
    manifest: bool,
    /// MANIFEST_SHA256.txt (sha256sum format) in the folder; with --archive, NAME.tar.gz.sha256
    #[arg(long)]
    manifest_sha: bool,
    /// Keep this project's newest N views in DEST (0: keep all); the repository's
    /// snapshots are kept by [retention] and `prune`
    #[arg(long, value_name = "N")]
    keep: Option<usize>,
    /// Leave out files matching this glob (gitignore syntax); repeatable
    #[arg(long = "exclude", value_name = "GLOB")]
    excludes: Vec<String>,
    /// Accepted: symlinks are always kept as links
    #[arg(long)]
    symlinks: bool,
    /// Report what would be backed up and written; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask "Proceed with backup? [y/N]" on a terminal
    #[arg(long)]
    yes: bool,
    /// With --archive: encrypt it (age format, NAME.tar.gz.age) with a passphrase from
    /// --encrypt-password-file, PROJECTCLONE_ENCRYPT_PASSWORD or a prompt
    #[arg(long, requires = "archive", conflicts_with = "incremental")]
    encrypt: bool,
    /// With --archive: encrypt to this age public key (age1…) instead; repeatable
    #[arg(
        long = "recipient",
        value_name = "AGE_PUBKEY",
        requires = "archive",
        conflicts_with = "incremental"
    )]
    recipients: Vec<String>,
    /// With --archive: encrypt to the age public keys in this file (one per line); repeatable
    #[arg(
        long = "recipients-file",
        value_name = "F",
        requires = "archive",
        conflicts_with = "incremental"
    )]
    recipients_files: Vec<PathBuf>,
    /// With --archive: read the encryption passphrase from this file (implies --encrypt)
    #[arg(long, value_name = "F", requires = "archive", conflicts_with_all = ["incremental", "recipients", "recipients_files"])]
    encrypt_password_file: Option<PathBuf>,
}

// ---------------------------------------------------------------- routing

/// Whether `tok` is one of the older tool's flags (`--keep=3` too), and whether it takes
/// a value that is the next argument.
fn old_flag(tok: &str) -> Option<bool> {
    let (name, inline) = match tok.split_once('=') {
        Some((n, _)) if n.starts_with("--") => (n, true),
        _ => (tok, false),
    };
    OLD_FLAGS
        .iter()
        .find(|(f, _)| *f == name)
        .map(|(_, value)| *value && !inline)
}

/// Optimal string alignment distance (insertions, deletions, substitutions and swaps of
/// two neighbours each count one).
fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, v) in d[0].iter_mut().enumerate() {
        *v = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// Whether a word `d` edits from subcommand `name` is a typo of it: at most two edits,
/// and fewer than the shorter one's length, so that something of the name is left (a
/// two-letter note such as `v2` is not a typo of `ls`, which it could become only by
/// replacing both letters).
fn is_typo(d: usize, word: &str, name: &str) -> bool {
    d <= 2 && d < word.chars().count().min(name.chars().count())
}

/// A global option of the new syntax: (long, short, takes a value).
type Global = (Option<String>, Option<char>, bool);

fn globals(cmd: &clap::Command) -> Vec<Global> {
    cmd.get_arguments()
        .filter(|a| !a.is_positional())
        .map(|a| {
            (
                a.get_long().map(String::from),
                a.get_short(),
                a.get_action().takes_values(),
            )
        })
        .collect()
}

/// The arguments clap is to parse: `argv` as given, or rewritten to the hidden
/// `old-syntax` subcommand when the older tool's syntax applies. Exits with a usage error
/// (2) for a mistyped subcommand, and for an unknown word that the older syntax does not
/// take (no old-tool flag and no terminal).
pub fn route(argv: Vec<OsString>) -> Vec<OsString> {
    let mut cmd = Cli::command();
    cmd.build();
    let globals = globals(&cmd);
    let mut before: Vec<OsString> = argv.iter().take(1).cloned().collect();
    let mut moved: Vec<OsString> = Vec::new();
    let mut i = 1;
    // Find the first word that is not an option (or an option's value).
    let word_at = loop {
        let Some(arg) = argv.get(i) else { return argv };
        let t = arg.to_string_lossy();
        if t == "--" || t == "-" {
            return argv;
        }
        if let Some(long) = t.strip_prefix("--") {
            let (name, inline) = long.split_once('=').map_or((long, false), |(n, _)| (n, true));
            if let Some(g) = globals.iter().find(|g| g.0.as_deref() == Some(name)) {
                before.push(arg.clone());
                if g.2
                    && !inline
                    && let Some(v) = argv.get(i + 1)
                {
                    before.push(v.clone());
                    i += 1;
                }
                i += 1;
                continue;
            }
        }
        if t.starts_with('-') && t.len() > 1 {
            // An old-tool flag before NOTE (argparse took them anywhere): moved after it.
            if let Some(value) = old_flag(&t) {
                moved.push(arg.clone());
                if value && let Some(v) = argv.get(i + 1) {
                    moved.push(v.clone());
                    i += 1;
                }
                i += 1;
                continue;
            }
            if t.starts_with("--") {
                return argv; // an unknown option: clap says so
            }
            // A cluster of short global options (`-qv`, `-rPATH`, `-r PATH`).
            let mut takes_next = false;
            for (k, c) in t[1..].char_indices() {
                match globals.iter().find(|g| g.1 == Some(c)) {
                    Some(g) if g.2 => {
                        takes_next = t.len() == k + 2;
                        break;
                    }
                    Some(_) => {}
                    None => return argv,
                }
            }
            before.push(arg.clone());
            if takes_next && let Some(v) = argv.get(i + 1) {
                before.push(v.clone());
                i += 1;
            }
            i += 1;
            continue;
        }
        break i;
    };
    let word = argv[word_at].to_string_lossy().into_owned();
    let mut names: Vec<String> = vec!["help".into()];
    for s in cmd.get_subcommands() {
        names.push(s.get_name().to_string());
        names.extend(s.get_all_aliases().map(String::from));
    }
    if names.contains(&word) {
        return argv;
    }
    let close = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name())
        .map(|n| (edits(&word, n), n))
        .filter(|(d, n)| is_typo(*d, &word, n))
        .min();
    if let Some((_, name)) = close {
        let msg = format!(
            "unrecognized subcommand '{word}'\n\n  tip: a similar subcommand exists: '{name}'\n  \
             tip: to back up with the note '{word}', run `projectclone backup --note {}`",
            projectclone::config::shell_quote(&word)
        );
        cmd.error(ErrorKind::InvalidSubcommand, msg).exit();
    }
    let rest = &argv[word_at + 1..];
    let has_old_flag = !moved.is_empty()
        || rest
            .iter()
            .take_while(|a| *a != "--")
            .any(|a| old_flag(&a.to_string_lossy()).is_some());
    if has_old_flag || std::io::stdin().is_terminal() {
        if argv.iter().any(|a| a == "--json") {
            cmd.error(
                ErrorKind::ArgumentConflict,
                format!(
                    "--json is not available with the older tool's syntax ({SYNOPSIS}): run `projectclone \
                     backup --json --note NOTE`, then `projectclone export latest --json …`"
                ),
            )
            .exit();
        }
        let mut out = before;
        out.push("old-syntax".into());
        out.push(argv[word_at].clone());
        out.extend(moved);
        out.extend(rest.iter().cloned());
        return out;
    }
    let msg = format!(
        "unrecognized subcommand '{word}'\n\n  tip: the commands are listed by `projectclone --help` \
         (projectclone [OPTIONS] COMMAND …)\n  tip: the older tool's syntax is {SYNOPSIS}; without a terminal it \
         needs one of its flags, e.g. `projectclone {} --yes`",
        projectclone::config::shell_quote(&word)
    );
    cmd.error(ErrorKind::InvalidSubcommand, msg).exit()
}

/// clap's error, with a hint when an old-tool flag was given to a new subcommand.
pub fn explain(e: clap::Error, argv: &[OsString]) -> clap::Error {
    if argv.iter().any(|a| a == "old-syntax")
        && matches!(
            e.kind(),
            ErrorKind::MissingRequiredArgument | ErrorKind::ArgumentConflict
        )
        && argv.iter().any(|a| {
            let a = a.to_string_lossy();
            let flag = a.split('=').next().unwrap_or_default();
            [
                "--encrypt",
                "--recipient",
                "--recipients-file",
                "--encrypt-password-file",
            ]
            .contains(&flag)
        })
    {
        let conflict = |name: &str| {
            [ContextKind::InvalidArg, ContextKind::PriorArg]
                .iter()
                .any(|k| matches!(e.get(*k), Some(ContextValue::String(s)) if s.starts_with(name)))
        };
        let tip = if e.kind() == ErrorKind::MissingRequiredArgument {
            "encryption applies to the archive: add -a/--archive (`projectclone NOTE --archive --encrypt` writes \
             NAME.tar.gz.age); a folder copy is not encrypted"
        } else if conflict("--incremental") {
            "an incremental folder is not encrypted: leave out --incremental (`projectclone NOTE --archive \
             --encrypt` writes NAME.tar.gz.age)"
        } else {
            return e;
        };
        return hint(e, tip.into());
    }
    if e.kind() == ErrorKind::ArgumentConflict
        && argv.iter().any(|a| a == "export")
        && let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg)
    {
        let tip = match arg.split([' ', '=']).next().unwrap_or_default() {
            "--manifest" | "--format" => "--manifest and --format apply to --archive FILE only",
            "--keep" => "--keep N applies to --incremental DIR only (it keeps that many export folders there)",
            _ => return e,
        };
        return hint(e, tip.into());
    }
    if e.kind() != ErrorKind::UnknownArgument {
        return e;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    let flag = arg.split(['=', ' ']).next().unwrap_or_default().to_string();
    let sub = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy())
        .find(|a| Cli::command().get_subcommands().any(|s| s.get_name() == a.as_ref()))
        .map(|s| s.into_owned())
        .unwrap_or_default();
    let hint = match flag.as_str() {
        "--keep" => format!(
            "--keep N is the older tool's syntax ({}): it keeps N views in the destination folder. Snapshots \
             in the repository are kept by `projectclone prune --keep-last N` (or [retention] in the config \
             file){}",
            "projectclone NOTE --keep N",
            if sub == "export" {
                "; an incremental export takes `export SNAP --incremental DIR --keep N`"
            } else {
                ""
            }
        ),
        "-a" | "--archive" => "--archive belongs to `export` or to the older tool's syntax: `projectclone NOTE \
                               --archive` backs up and writes a .tar.gz into ~/project_backups; after a backup, \
                               `projectclone export latest --archive FILE.tar.gz` writes one anywhere"
            .into(),
        "--incremental" => "--incremental belongs to `export` or to the older tool's syntax: `projectclone NOTE \
                            --incremental`, or `projectclone export latest --incremental DIR`"
            .into(),
        "--manifest" | "--manifest-sha" => format!(
            "{flag} belongs to the older tool's syntax (`projectclone NOTE {flag}`); `projectclone export SNAP \
             --archive FILE --manifest` writes FILE.sha256"
        ),
        "--dest" => "--dest belongs to the older tool's syntax (`projectclone NOTE --dest DIR`); `export` names \
                     its target: --clone DIR, --archive FILE or --incremental DIR"
            .into(),
        "--symlinks" => "projectclone always keeps symlinks as links: leave --symlinks out".into(),
        "--yes" => {
            "only the older tool's syntax (`projectclone NOTE --yes`) asks before it starts: leave --yes out".into()
        }
        _ => return e,
    };
    self::hint(e, hint)
}

/// `e` with one more tip.
fn hint(mut e: clap::Error, hint: String) -> clap::Error {
    let mut tips = match e.get(ContextKind::Suggested) {
        Some(ContextValue::StyledStrs(v)) => v.clone(),
        _ => Vec::new(),
    };
    tips.push(hint.into());
    e.insert(ContextKind::Suggested, ContextValue::StyledStrs(tips));
    e
}

// ---------------------------------------------------------------- running

/// Back up the current directory with note NOTE, then write the older tool's view of it.
pub(super) fn run(ctx: &Ctx, a: &OldArgs) -> Result<u8> {
    let files = &ctx.files;
    let dest = match &a.dest {
        Some(d) => d.clone(),
        None => match files.export_key(|t| t.dest.as_ref()) {
            Some(s) => PathBuf::from(projectclone::config::expand(&s.value).map_err(|e| anyhow!("{}: {e}", s.source))?),
            None => default_dest().ok_or_else(|| anyhow!("cannot find the home directory; give --dest DIR"))?,
        },
    };
    // As the old tool: 0 keeps all.
    let keep = a
        .keep
        .or_else(|| files.export_key(|t| t.keep.as_ref()).map(|s| s.value))
        .filter(|k| *k > 0);
    // The same flags, checks and passphrase sources as `export --archive F --encrypt`.
    let flags = super::encrypt::Flags {
        encrypt: a.encrypt,
        recipients: &a.recipients,
        recipients_files: &a.recipients_files,
        password_file: &a.encrypt_password_file,
    };
    let view = if a.incremental {
        if a.archive {
            output::warn(
                &ctx.cli,
                "--incremental and --archive: the incremental folder is written (as the old tool did)",
            );
        }
        if a.manifest || a.manifest_sha {
            output::warn(
                &ctx.cli,
                "an incremental folder gets no manifest (as with the old tool)",
            );
        }
        OldView::Incremental
    } else if a.archive {
        OldView::Archive {
            sha: a.manifest || a.manifest_sha,
            age: flags.wanted(),
        }
    } else {
        OldView::Folder {
            sizes: a.manifest,
            sha: a.manifest_sha,
        }
    };
    let cwd = std::env::current_dir().context("the current directory")?;
    ctx.refuse_overlap("destination folder", &dest)?;
    if let Some(d) = resolved(&dest)
        && let Ok(c) = std::fs::canonicalize(&cwd)
        && d.starts_with(&c)
    {
        bail!(
            "the destination {} lies inside the directory being backed up ({}): each view would be backed \
             up into the next; give --dest DIR outside it",
            dest.display(),
            cwd.display()
        );
    }
    let mut opts = OldViewOptions {
        dest,
        view,
        keep,
        tz: jiff::tz::TimeZone::system(),
        encryption: None,
    };
    if !a.yes && !a.dry_run && std::io::stdin().is_terminal() && !ask(&cwd, &opts)? {
        eprintln!("Aborted by user.");
        return Ok(1);
    }
    // Before the backup: a missing passphrase or a bad key stops the run before it writes.
    opts.encryption = flags.resolve(a.dry_run)?;
    let backup = Command::Backup {
        paths: Vec::new(),
        tags: Vec::new(),
        note: Some(a.note.clone()),
        excludes: a.excludes.clone(),
        dry_run: a.dry_run,
        compression: None,
        host: None,
        stdin: false,
        stdin_name: None,
        exclude_caches: false,
        one_file_system: false,
        exclude_larger_than: None,
        interactive: false,
    };
    let code = super::run_cmd(ctx, &backup)?;
    if a.dry_run {
        use std::os::unix::ffi::OsStrExt;
        let project = cwd.file_name().map_or(&b"root"[..], |n| n.as_bytes());
        let now = jiff::Timestamp::now();
        let time = projectclone::format::Time {
            secs: now.as_second(),
            nanos: now.subsec_nanosecond() as u32,
        };
        let plan = export::plan_old_view(&opts, &time, project, Some(&a.note));
        output::old_view_plan(&ctx.cli, &plan);
        return Ok(code);
    }
    let Some(id) = ctx.snapshot_id.borrow().clone() else {
        bail!("the backup wrote no snapshot, so no view was written");
    };
    let mut repo = ctx.open()?;
    let (id, snap) = repo.resolve_snapshot(&id)?;
    let _lock = ctx.shared_lock(&mut repo, false, "export")?;
    let progress = output::progress(&ctx.cli);
    let res = export::old_view(&repo, &id, &snap, &opts, progress.as_ref())
        .with_context(|| format!("snapshot {} was saved, but its view was not written", id.short()))?;
    progress.finish();
    output::export(&ctx.cli, &id, &res);
    Ok(if res.errors.is_empty() { code } else { 1 })
}

/// The older tool's destination folder: `~/project_backups`.
fn default_dest() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|b| b.home_dir().join("project_backups"))
}

/// `config`'s rows for the `[export]` table: `export.dest` (expanded) and `export.keep`
/// (none: all views are kept), each with where it came from.
pub fn config_rows(
    files: &projectclone::config::Files,
    row: &mut impl FnMut(&str, serde_json::Value, projectclone::config::Source),
) {
    use projectclone::config::Source;
    match files.export_key(|t| t.dest.as_ref()) {
        Some(s) => {
            let value = projectclone::config::expand(&s.value).unwrap_or(s.value);
            row("export.dest", value.into(), s.source)
        }
        None => row(
            "export.dest",
            default_dest().map_or(serde_json::Value::Null, |d| d.display().to_string().into()),
            Source::Default,
        ),
    }
    match files.export_key(|t| t.keep.as_ref()) {
        Some(s) => row("export.keep", s.value.into(), s.source),
        None => row("export.keep", serde_json::Value::Null, Source::Default),
    }
}

/// `p` with its nearest existing ancestor resolved (symlinks, `..`) and the rest appended:
/// where `p` is or would be created.
fn resolved(p: &std::path::Path) -> Option<PathBuf> {
    let abs = std::path::absolute(p).ok()?;
    let mut rest = Vec::new();
    let mut at = abs.as_path();
    loop {
        if let Ok(c) = std::fs::canonicalize(at) {
            let mut out = c;
            for part in rest.iter().rev() {
                match part {
                    std::path::Component::ParentDir => {
                        out.pop();
                    }
                    std::path::Component::Normal(n) => out.push(n),
                    _ => {}
                }
            }
            return Some(out);
        }
        rest.push(at.components().next_back()?);
        at = at.parent()?;
    }
}

/// "Proceed with backup? [y/N]", as the old tool asked; true for y or yes.
fn ask(cwd: &std::path::Path, opts: &OldViewOptions) -> Result<bool> {
    let what = match opts.view {
        OldView::Folder { .. } => "a folder copy",
        OldView::Archive { age: false, .. } => "a .tar.gz archive",
        OldView::Archive { age: true, .. } => "an age-encrypted .tar.gz.age archive",
        OldView::Incremental => "an incremental folder",
    };
    eprintln!(
        "Back up {} into the repository and write {what} into {}.",
        cwd.display(),
        opts.dest.display()
    );
    eprint!("Proceed with backup? [y/N] ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim().to_lowercase().as_str(), "y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(edits("backup", "backup"), 0);
        assert_eq!(edits("bakup", "backup"), 1);
        assert_eq!(edits("bakcup", "backup"), 1);
        assert_eq!(edits("restor", "restore"), 1);
        assert_eq!(edits("release", "restore"), 4);
        assert!(edits("before_refactor", "prune") > 2);
        assert!(is_typo(edits("bakup", "backup"), "bakup", "backup"));
        assert!(is_typo(edits("lss", "ls"), "lss", "ls"));
        assert!(!is_typo(edits("v2", "ls"), "v2", "ls"));
        assert!(!is_typo(edits("wip", "ls"), "wip", "ls"));
    }

    #[test]
    fn old_flags() {
        assert_eq!(old_flag("--keep"), Some(true));
        assert_eq!(old_flag("--keep=3"), Some(false));
        assert_eq!(old_flag("-a"), Some(false));
        assert_eq!(old_flag("--yes"), Some(false));
        assert_eq!(old_flag("--tag"), None);
    }
}
