//! Interactive mode (README "Interactive mode"): `projectclone` with no arguments on a
//! terminal is `backup -i`, a guided first backup (the project folder, where the
//! repository goes, its password, which big folders to leave out, measured); `restore -i`
//! picks a snapshot, its paths and a target from lists.
//!
//! The questions only fill in the command's arguments ([`prepare`] rewrites `ctx.cli`);
//! the command then runs as if typed, with its hooks, progress and output. So nothing is
//! written before the last answer: Esc or Ctrl-C at a prompt leaves no repository and no
//! snapshot behind. Nothing here ever prompts when stdin is not a terminal: `-i` is then a
//! usage error naming the flags to give instead.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Result, anyhow, bail};
use dialoguer::theme::ColorfulTheme;
use dialoguer::{Confirm, Input, MultiSelect, Password, Select};
use zeroize::Zeroizing;

use projectclone::format::NodeKind;
use projectclone::location::Location;
use projectclone::{format_name, format_time};

use super::{Command, Ctx, exit_code, output};

/// Folders that hold what a build or a package manager makes again (preselected for
/// leaving out).
const REBUILT: &[&str] = &[
    "node_modules",
    "target",
    ".venv",
    "venv",
    "__pycache__",
    "build",
    "dist",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".gradle",
    ".next",
    ".nuxt",
    ".parcel-cache",
    ".cache",
    ".terraform",
];

/// How many of the biggest folders are offered for leaving out.
const BIGGEST: usize = 12;

/// The terminal's settings before the first prompt, put back if a signal ends the process
/// while a prompt has echo turned off.
static TERMINAL: OnceLock<rustix::termios::Termios> = OnceLock::new();

/// `projectclone` alone, on a terminal (stdin and stderr), is `projectclone backup -i`;
/// any other command line is left as it is (no arguments and no terminal: the usage).
pub fn no_arguments(argv: Vec<OsString>) -> Vec<OsString> {
    if argv.len() == 1 && std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let mut v = argv;
        v.extend(["backup".into(), "--interactive".into()]);
        return v;
    }
    argv
}

/// Put the terminal back as it was (echo on, cursor shown), when a signal ends the
/// process during a prompt.
pub fn restore_terminal() {
    if let Some(t) = TERMINAL.get() {
        let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, t);
        let _ = dialoguer::console::Term::stderr().show_cursor();
    }
}

/// End the process with a usage error (exit 2; with `--json` an `exit_error` object).
fn usage(msg: String) -> ! {
    use clap::CommandFactory;
    let e = super::Cli::command().error(clap::error::ErrorKind::ArgumentConflict, msg);
    super::failure::usage_error(e, &std::env::args_os().collect::<Vec<_>>())
}

/// An answer not given (Esc, or the end of input): nothing was written.
fn cancelled() -> anyhow::Error {
    anyhow!("cancelled at the prompt; nothing was written")
}

/// A prompt's result: an interrupted read (Ctrl-C) or the end of input is a cancel.
fn answer<T>(r: dialoguer::Result<T>) -> Result<T> {
    r.map_err(|dialoguer::Error::IO(e)| match e.kind() {
        std::io::ErrorKind::Interrupted | std::io::ErrorKind::UnexpectedEof => cancelled(),
        _ => anyhow!("reading the answer from the terminal: {e}"),
    })
}

/// Whether the command asks its questions (`-i`): checked, and its arguments filled in
/// from the answers. Returns whether it did, for [`finish`].
pub(super) fn prepare(ctx: &mut Ctx) -> Result<bool> {
    let name = match &ctx.cli.command {
        Command::Backup { interactive: true, .. } => "backup",
        Command::Restore { interactive: true, .. } => "restore",
        _ => return Ok(false),
    };
    if ctx.cli.json {
        usage(format!(
            "`{name} -i` asks questions on the terminal and cannot print one JSON document; leave out \
             --json, or give the arguments instead of -i ({})",
            instead(name)
        ));
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        usage(format!(
            "`{name} -i` asks questions on a terminal, and stdin or stderr is not one; give the \
             arguments instead of -i ({})",
            instead(name)
        ));
    }
    if let Ok(t) = rustix::termios::tcgetattr(std::io::stdin()) {
        let _ = TERMINAL.set(t);
    }
    match name {
        "backup" => guide_backup(ctx)?,
        _ => guide_restore(ctx)?,
    }
    Ok(true)
}

/// The command line to use without a terminal.
fn instead(name: &str) -> &'static str {
    if name == "backup" {
        "projectclone backup [PATH]... [--exclude GLOB]..."
    } else {
        "projectclone restore SNAP --target DIR [--include GLOB]...; `projectclone snapshots` lists the \
         snapshots, `projectclone ls SNAP` their files"
    }
}

/// After a guided command: how to get the data back.
pub(super) fn finish(ctx: &Ctx, res: &Result<u8>) {
    if !matches!(res, Ok(0 | 3)) {
        return;
    }
    if let Command::Backup { .. } = ctx.cli.command
        && let Some(id) = ctx.snapshot_id.borrow().as_deref()
    {
        let repo = repo_flag(ctx);
        output::note(
            &ctx.cli,
            &format!(
                "snapshot {} saved. To get it back: projectclone{repo} restore {} --target DIR, or \
                 projectclone{repo} restore -i to pick it and its paths from lists",
                &id[..8.min(id.len())],
                &id[..8.min(id.len())],
            ),
        );
    }
}

/// ` -r LOCATION` when the repository is not the default one, else nothing.
fn repo_flag(ctx: &Ctx) -> String {
    match &ctx.cli.repo {
        Some(r) => format!(" -r {}", quote(r)),
        None => String::new(),
    }
}

/// A word for a POSIX shell: quoted when it holds anything but plain characters.
fn quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn theme() -> ColorfulTheme {
    ColorfulTheme::default()
}

/// The guided backup: fills in PATH, the repository, its password and `--exclude`.
fn guide_backup(ctx: &mut Ctx) -> Result<()> {
    let theme = theme();
    let Command::Backup { paths, excludes, .. } = &ctx.cli.command else {
        unreachable!("guide_backup runs for backup only")
    };
    let (mut paths, given_excludes) = (paths.clone(), excludes.clone());
    eprintln!("projectclone keeps encrypted, deduplicated snapshots of a project folder. A few questions first:");
    // 1. What to back up.
    if paths.is_empty() {
        let cwd = std::env::current_dir()?;
        let dir: String = answer(
            Input::with_theme(&theme)
                .with_prompt("Project folder to back up")
                .default(cwd.display().to_string())
                .validate_with(|s: &String| -> std::result::Result<(), String> {
                    let p = expand(s);
                    if p.is_dir() {
                        Ok(())
                    } else {
                        Err(format!("{}: not a folder", p.display()))
                    }
                })
                .interact_text(),
        )?;
        paths.push(std::path::absolute(expand(&dir))?);
    }
    // 2. Where the repository is (a -r, PROJECTCLONE_REPO or config file choice stands).
    let (default_loc, is_default) = ctx.repo_location()?;
    let loc = if is_default && !exists(&default_loc) {
        let s: String = answer(
            Input::with_theme(&theme)
                .with_prompt("Repository (where the snapshots are kept: a folder, s3:…, sftp://…)")
                .default(default_loc.display())
                .validate_with(|s: &String| Location::parse(s.trim()).map(|_| ()).map_err(|e| e.to_string()))
                .interact_text(),
        )?;
        let loc = match Location::parse(s.trim())? {
            Location::Local(p) => Location::Local(std::path::absolute(expand(&p.to_string_lossy()))?),
            l => l,
        };
        if loc.display() != default_loc.display() {
            ctx.cli.repo = Some(loc.display());
            ctx.from_env.retain(|id| *id != "repo");
        }
        loc
    } else {
        default_loc
    };
    let new = !exists(&loc);
    // 3. Its password.
    if new {
        eprintln!("A new repository will be made at {}.", loc.display());
        if ctx.cli.insecure_no_password {
            bail!(
                "an interactive first backup makes a repository with a password; for one without, run \
                 `projectclone -r {} init --insecure-no-password` first",
                quote(&loc.display())
            );
        }
        if ctx.password_from_sources()?.is_none() {
            eprintln!("Choose its password. Keep it safe: without it nothing in the repository can be read back.");
            let p = answer(
                Password::with_theme(&theme)
                    .with_prompt("New repository password")
                    .with_confirmation("Repeat the password", "the passwords do not match; type them again")
                    .interact(),
            )?;
            ctx.typed = Zeroizing::new(p.into_bytes()).into();
        }
    } else {
        eprintln!("A repository exists at {}: the snapshot goes there.", loc.display());
        open_existing(ctx, &loc)?;
    }
    // 4. What to leave out.
    let excludes = choose_excludes(ctx, &paths, &loc, &given_excludes)?;
    // 5. The command line, then the backup.
    let mut line = vec!["projectclone".to_string()];
    if let Some(r) = &ctx.cli.repo {
        line.extend(["-r".into(), quote(r)]);
    }
    line.push("backup".into());
    line.extend(paths.iter().map(|p| quote(&p.to_string_lossy())));
    for e in &excludes {
        line.extend(["--exclude".into(), quote(e)]);
    }
    eprintln!("Next time, this command does the same without questions (e.g. in a script):");
    eprintln!("  {}", line.join(" "));
    if !answer(
        Confirm::with_theme(&theme)
            .with_prompt("Start the backup now?")
            .default(true)
            .interact_opt(),
    )?
    .ok_or_else(cancelled)?
    {
        return Err(cancelled());
    }
    if let Command::Backup {
        paths: p,
        excludes: x,
        interactive,
        ..
    } = &mut ctx.cli.command
    {
        *p = paths;
        *x = excludes;
        *interactive = false;
    }
    // The project folder's config file applies now, as to a typed command.
    ctx.files = super::load_config_files(&ctx.cli)?;
    if new && ctx.cli.repo.is_some() {
        // Only the default repository is made by a first backup: make this one now.
        let pw = ctx.new_repo_password()?;
        let opts = projectclone::repo::InitOptions {
            state_dir: ctx.state_dir(),
            ..Default::default()
        };
        let repo = projectclone::repo::Repository::init(ctx.backend(&loc)?, Some(&pw), &opts, &ctx.cache()?)?;
        output::note(
            &ctx.cli,
            &format!(
                "created repository {} (id {})",
                loc.display(),
                &hex::encode(repo.repo_id())[..8]
            ),
        );
    }
    Ok(())
}

/// `~` and `$VAR` expanded, as in config files.
fn expand(s: &str) -> PathBuf {
    PathBuf::from(super::config::expand(s.trim()).unwrap_or_else(|_| s.trim().to_string()))
}

/// Whether a repository is at `loc` (a remote one is taken to exist: opening it tells).
fn exists(loc: &Location) -> bool {
    loc.local_path().is_none_or(|p| p.join("config").exists())
}

/// Open the existing repository at `loc` once, asking its password (again after a wrong
/// one, three times at most) unless it comes from a password source.
fn open_existing(ctx: &mut Ctx, loc: &Location) -> Result<()> {
    if ctx.cli.insecure_no_password || ctx.password_from_sources()?.is_some() {
        ctx.open_at(loc)?;
        return Ok(());
    }
    for attempt in 1..=3 {
        let p = answer(
            Password::with_theme(&theme())
                .with_prompt("Repository password")
                .allow_empty_password(true)
                .interact(),
        )?;
        ctx.typed = Zeroizing::new(p.into_bytes()).into();
        match ctx.open_at(loc) {
            Ok(_) => return Ok(()),
            Err(e) if exit_code(&e) == 12 && attempt < 3 => {
                eprintln!("That is not the password of {}; try again.", loc.display())
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last attempt returns")
}

/// A folder below the project with its size in bytes.
struct Folder {
    /// Relative to the backed-up path, `/`-separated.
    rel: String,
    size: u64,
    rebuilt: bool,
}

/// Measure the folders of `paths` (each top-level one, and each folder anywhere with a
/// well-known rebuilt name) and ask which of the biggest to leave out.
fn choose_excludes(ctx: &Ctx, paths: &[PathBuf], loc: &Location, given: &[String]) -> Result<Vec<String>> {
    let mut skip: Vec<PathBuf> = [loc.local_path().map(Path::to_path_buf), ctx.cache_dir().ok()]
        .into_iter()
        .flatten()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    skip.sort();
    eprintln!("Measuring the folders…");
    let mut folders = Vec::new();
    for root in paths.iter().filter(|p| p.is_dir()) {
        measure(root, "", 0, false, &skip, &mut folders);
    }
    folders.sort_by(|a, b| b.size.cmp(&a.size).then(a.rel.cmp(&b.rel)));
    folders.truncate(BIGGEST);
    let mut excludes: Vec<String> = given.to_vec();
    if folders.is_empty() {
        return Ok(excludes);
    }
    let width = folders.iter().map(|f| f.rel.len()).max().unwrap_or(0);
    let items: Vec<(String, bool)> = folders
        .iter()
        .map(|f| {
            let pattern = pattern(&f.rel);
            let label = format!(
                "{:<width$}  {:>10}{}",
                format_name(f.rel.as_bytes()),
                bytesize::ByteSize(f.size).to_string(),
                if f.rebuilt { "  (rebuilt by its tools)" } else { "" }
            );
            (label, f.rebuilt || given.contains(&pattern))
        })
        .collect();
    let chosen = answer(
        MultiSelect::with_theme(&theme())
            .with_prompt("Leave out (space toggles, enter accepts; the biggest folders)")
            .items_checked(items)
            .interact_opt(),
    )?
    .ok_or_else(cancelled)?;
    for i in chosen {
        let p = pattern(&folders[i].rel);
        if !excludes.contains(&p) {
            excludes.push(p);
        }
    }
    Ok(excludes)
}

/// The `--exclude` pattern of one folder: anchored at the backed-up folder, glob
/// characters escaped.
fn pattern(rel: &str) -> String {
    let mut p = String::from("/");
    for c in rel.chars() {
        if "*?[]\\!#".contains(c) {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('/');
    p
}

/// The bytes under `dir` (files' sizes; symlinks are not followed), listing the folders
/// worth offering into `out`.
fn measure(dir: &Path, rel: &str, depth: usize, inside_rebuilt: bool, skip: &[PathBuf], out: &mut Vec<Folder>) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    let mut total = 0;
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if !m.is_dir() {
            total += m.len();
            continue;
        }
        let path = e.path();
        if skip.contains(&path) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let rebuilt = REBUILT.contains(&name.as_str());
        let size = measure(&path, &child, depth + 1, inside_rebuilt || rebuilt, skip, out);
        total += size;
        if !inside_rebuilt && (depth == 0 || rebuilt) {
            out.push(Folder {
                rel: child,
                size,
                rebuilt,
            });
        }
    }
    total
}

/// The guided restore: fills in SNAP, `--include` and `--target`.
fn guide_restore(ctx: &mut Ctx) -> Result<()> {
    let theme = theme();
    let Command::Restore {
        snap,
        target,
        includes,
        select,
        ..
    } = &ctx.cli.command
    else {
        unreachable!("guide_restore runs for restore only")
    };
    let repo = ctx.open()?;
    // 1. Which snapshot.
    let (id, s) = match snap {
        Some(spec) => ctx.resolve(&repo, spec, select)?,
        None => {
            let sel = ctx.selection(select)?;
            let mut snaps: Vec<_> = repo.snapshots()?.into_iter().filter(|(_, s)| sel.matches(s)).collect();
            if snaps.is_empty() {
                bail!(
                    "no snapshot to restore in {} (among those the filters select, if any)",
                    repo.backend.location()
                );
            }
            snaps.sort_by_key(|(id, s)| std::cmp::Reverse((s.time.secs, s.time.nanos, *id)));
            let items: Vec<String> = snaps
                .iter()
                .map(|(id, s)| {
                    format!(
                        "{}  {}  {}  {}{}",
                        id.short(),
                        format_time(&s.time, s.utc_offset),
                        format_name(s.hostname.as_bytes()),
                        s.paths.iter().map(|p| format_name(p)).collect::<Vec<_>>().join(" "),
                        s.note
                            .as_ref()
                            .map(|n| format!("  ({})", format_name(n.as_bytes())))
                            .unwrap_or_default()
                    )
                })
                .collect();
            let i = answer(
                Select::with_theme(&theme)
                    .with_prompt("Snapshot to restore (newest first)")
                    .items(&items)
                    .default(0)
                    .interact_opt(),
            )?
            .ok_or_else(cancelled)?;
            snaps.swap_remove(i)
        }
    };
    // 2. Which of its paths.
    let includes = if includes.is_empty() {
        let top = repo.dir_nodes(&NodeKind::Dir(s.tree))?;
        let names: Vec<String> = top
            .iter()
            .map(|n| String::from_utf8_lossy(&n.name).into_owned())
            .collect();
        let labels: Vec<(String, bool)> = top
            .iter()
            .map(|n| {
                let slash = if n.kind.is_dir() { "/" } else { "" };
                (format!("{}{slash}", format_name(&n.name)), true)
            })
            .collect();
        if top.is_empty() {
            Vec::new()
        } else {
            loop {
                let chosen = answer(
                    MultiSelect::with_theme(&theme)
                        .with_prompt("Paths to restore (space toggles, enter accepts; all are chosen)")
                        .items_checked(labels.clone())
                        .interact_opt(),
                )?
                .ok_or_else(cancelled)?;
                if chosen.is_empty() {
                    eprintln!("Nothing chosen: choose at least one path (Esc cancels).");
                    continue;
                }
                if chosen.len() == names.len() {
                    break Vec::new();
                }
                break chosen
                    .iter()
                    .map(|&i| format!("/{}", globset::escape(&names[i])))
                    .collect();
            }
        }
    } else {
        includes.clone()
    };
    // 3. Where to.
    let target = match target {
        Some(t) => t.clone(),
        None => loop {
            let cwd = std::env::current_dir()?;
            let default = cwd.join(format!("restore-{}", id.short()));
            let t: String = answer(
                Input::with_theme(&theme)
                    .with_prompt("Restore into (a new folder, or an empty one)")
                    .default(default.display().to_string())
                    .interact_text(),
            )?;
            let t = std::path::absolute(expand(&t))?;
            let busy = std::fs::read_dir(&t).map(|mut d| d.next().is_some()).unwrap_or(false);
            if t.exists() && !t.is_dir() {
                eprintln!("{} is not a folder; choose another.", t.display());
                continue;
            }
            if busy
                && !answer(
                    Confirm::with_theme(&theme)
                        .with_prompt(format!(
                            "{} is not empty: entries of the same names will be replaced, others left alone. Restore into it?",
                            t.display()
                        ))
                        .default(false)
                        .interact_opt(),
                )?
                .ok_or_else(cancelled)?
            {
                continue;
            }
            break t;
        },
    };
    drop(repo);
    let mut line = vec!["projectclone".to_string()];
    if let Some(r) = &ctx.cli.repo {
        line.extend(["-r".into(), quote(r)]);
    }
    line.extend([
        "restore".into(),
        id.short(),
        "--target".into(),
        quote(&target.to_string_lossy()),
    ]);
    for i in &includes {
        line.extend(["--include".into(), quote(i)]);
    }
    eprintln!("The same without questions:");
    eprintln!("  {}", line.join(" "));
    if let Command::Restore {
        snap,
        target: t,
        includes: inc,
        interactive,
        ..
    } = &mut ctx.cli.command
    {
        *snap = Some(id.to_hex());
        *t = Some(target);
        *inc = includes;
        *interactive = false;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_anchored_and_escaped() {
        assert_eq!(pattern("node_modules"), "/node_modules/");
        assert_eq!(pattern("web/a[1]*"), "/web/a\\[1\\]\\*/");
    }

    #[test]
    fn quoting_for_the_shell() {
        assert_eq!(quote("/home/a/proj"), "/home/a/proj");
        assert_eq!(quote("my dir"), "'my dir'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn measuring_lists_top_folders_and_rebuilt_ones() {
        let t = tempfile::tempdir().unwrap();
        let w = |p: &str, n: usize| {
            let p = t.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, vec![0u8; n]).unwrap();
        };
        w("src/main.rs", 10);
        w("web/node_modules/x/node_modules/y.js", 100);
        w("web/app.js", 5);
        w("top.txt", 1);
        let mut out = Vec::new();
        let total = measure(t.path(), "", 0, false, &[], &mut out);
        assert_eq!(total, 116);
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        let got: Vec<_> = out.iter().map(|f| (f.rel.as_str(), f.size, f.rebuilt)).collect();
        assert_eq!(
            got,
            [("src", 10, false), ("web", 105, false), ("web/node_modules", 100, true)]
        );
    }
}
