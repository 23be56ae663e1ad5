//! Command-line interface: argument definitions, repository/password resolution, and
//! one function per subcommand. `output` is the only place that prints results.

mod output;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};

use projectclone::backend::local::LocalBackend;
use projectclone::backup::{BackupOptions, backup};
use projectclone::compress::Compression;
use projectclone::error::Error;
use projectclone::export::{self, ArchiveFormat};
use projectclone::lock::{self, LockMode};
use projectclone::repo::{InitOptions, Repository};
use projectclone::restore::{RestoreOptions, restore};

#[derive(Parser, Debug)]
#[command(
    name = "projectclone",
    version,
    about = "Exact, restorable, deduplicated and encrypted snapshots of project directories"
)]
pub struct Cli {
    /// Repository path (default: $XDG_DATA_HOME/projectclone/repo)
    #[arg(
        short = 'r',
        long = "repo",
        global = true,
        env = "PROJECTCLONE_REPO",
        value_name = "PATH|URL"
    )]
    repo: Option<String>,
    /// Read the password from this file (one trailing newline is removed)
    #[arg(long, global = true, env = "PROJECTCLONE_PASSWORD_FILE", value_name = "F")]
    password_file: Option<PathBuf>,
    /// Where the per-client index cache lives (default: $XDG_CACHE_HOME/projectclone)
    #[arg(long, global = true, env = "PROJECTCLONE_CACHE_DIR", value_name = "D")]
    cache_dir: Option<PathBuf>,
    /// Print one JSON document on stdout
    #[arg(long, global = true)]
    json: bool,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More detail on stderr (repeat for debug logs)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Logs on stderr as JSON lines
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Whether this run chunks files into new snapshots, `backup` or `import` (the
    /// allocator is tuned differently for it).
    pub fn chunks_files(&self) -> bool {
        matches!(self.command, Command::Backup { .. } | Command::Import { .. })
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new repository
    Init {
        /// Store the key in clear (no password; anyone with the files can read them)
        #[arg(long)]
        insecure_no_password: bool,
        /// Argon2id memory in KiB for the new key
        #[arg(long, default_value_t = 32 * 1024, hide = true)]
        kdf_memory: u32,
        /// Argon2id passes for the new key
        #[arg(long, default_value_t = 3, hide = true)]
        kdf_time: u32,
    },
    /// Take a snapshot of PATHs (default: the current directory)
    Backup {
        paths: Vec<PathBuf>,
        #[arg(long = "tag", value_name = "T")]
        tags: Vec<String>,
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// Leave out files matching this glob (gitignore syntax); repeatable
        #[arg(long = "exclude", value_name = "GLOB")]
        excludes: Vec<String>,
        /// Report what would be added; write nothing
        #[arg(long)]
        dry_run: bool,
        /// zstd, zstd:LEVEL, lz4 or none
        #[arg(long, default_value = "zstd")]
        compression: Compression,
        /// Record this host name instead of the machine's
        #[arg(long)]
        host: Option<String>,
    },
    /// List snapshots
    Snapshots,
    /// List the entries of a snapshot, under PATH if given
    Ls {
        snap: String,
        path: Option<String>,
        /// Long format: type, mode, owner, size, mtime
        #[arg(short, long)]
        long: bool,
    },
    /// Show what changed between two snapshots
    Diff { a: String, b: String },
    /// Restore a snapshot into a directory
    Restore {
        snap: String,
        #[arg(long, value_name = "DIR")]
        target: PathBuf,
        /// Restore only matching entries (a name at any depth, or a path with a slash)
        #[arg(long = "include", value_name = "GLOB")]
        includes: Vec<String>,
        /// Re-read restored files and compare them with the snapshot
        #[arg(long)]
        verify: bool,
        /// Print the plan; write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Write a view of a snapshot: a folder copy, a tar archive or an incremental folder
    #[command(group(clap::ArgGroup::new("view").required(true).args(["clone", "archive", "incremental"])))]
    Export {
        /// Snapshot: an id, a unique prefix of at least 4 hex digits, or `latest`
        snap: String,
        /// An exact copy at DIR (which must not exist, or be empty)
        #[arg(long, value_name = "DIR")]
        clone: Option<PathBuf>,
        /// A tar archive, compressed by extension (.tar, .tar.gz, .tar.zst); - for stdout
        #[arg(long, value_name = "FILE")]
        archive: Option<PathBuf>,
        /// With --archive: also write FILE.sha256 for `sha256sum -c`
        #[arg(long, requires = "archive")]
        manifest: bool,
        /// With --archive: the format when the name does not say (default for -: tar.gz)
        #[arg(long, value_name = "tar|tar.gz|tar.zst", requires = "archive")]
        format: Option<ArchiveFormat>,
        /// A new YYYY-MM-DD_HHMMSS-<project>[-<note>] folder under DIR; files unchanged
        /// since the previous export there are hard links to it
        #[arg(long, value_name = "DIR")]
        incremental: Option<PathBuf>,
        /// With --incremental: keep only this project's newest N export folders
        #[arg(long, value_name = "N", requires = "incremental")]
        keep: Option<usize>,
        /// Print what would be written; write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Bring the older Python tool's backups (folders, incremental folders, .tar.gz
    /// archives named YYYY-MM-DD_HHMMSS-<project>[-<note>]) in as snapshots
    Import {
        /// Backup folders and archives of the old tool
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The project name, when a name cannot tell project from note (or has no time stamp)
        #[arg(long, value_name = "NAME")]
        project: Option<String>,
        #[arg(long = "tag", value_name = "T")]
        tags: Vec<String>,
        /// Record this host name instead of the machine's
        #[arg(long)]
        host: Option<String>,
        /// Report what would be imported; write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Verify the repository's structure (and with --read-data, every byte)
    Check {
        #[arg(long)]
        read_data: bool,
        /// Read only part of the data: N/M (the N-th of M parts) or P% (a random P percent)
        #[arg(long, value_name = "N/M|P%", conflicts_with = "read_data")]
        read_data_subset: Option<projectclone::check::Subset>,
    },
    /// Remove snapshots (named, or those the --keep-* rules do not keep)
    Forget {
        snaps: Vec<String>,
        #[command(flatten)]
        keep: KeepArgs,
        /// Collect garbage afterwards, as `prune` does
        #[arg(long)]
        prune: bool,
        /// Print the plan; change nothing
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value_t = 0.1, value_name = "FRACTION")]
        repack_threshold: f64,
    },
    /// Apply --keep-* rules (if any), then collect garbage without blocking backups
    Prune {
        #[command(flatten)]
        keep: KeepArgs,
        /// Print the plan; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Repack a partly used pack when more than this fraction of it is unused
        #[arg(long, default_value_t = 0.1, value_name = "FRACTION")]
        repack_threshold: f64,
    },
    /// Rebuild local state from the repository
    Repair {
        #[command(subcommand)]
        what: RepairCmd,
    },
    /// Remove stale locks (a live process's lock is never removed)
    Unlock,
    /// Manage the passwords (key files) of the repository
    Key {
        #[command(subcommand)]
        what: KeyCmd,
    },
    /// Sizes of the repository, or of one snapshot
    Stats { snap: Option<String> },
}

#[derive(clap::Args, Debug, Default)]
struct KeepArgs {
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    #[arg(long, value_name = "N")]
    keep_yearly: Option<u32>,
    /// Keep snapshots with this tag (repeatable)
    #[arg(long = "keep-tag", value_name = "T")]
    keep_tags: Vec<String>,
    /// Keep snapshots within this span of the newest one: e.g. 14d, 6m, 1y2m, 36h
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
}

impl KeepArgs {
    fn rules(&self) -> Result<projectclone::prune::policy::KeepRules> {
        Ok(projectclone::prune::policy::KeepRules {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            tags: self.keep_tags.clone(),
            within: self
                .keep_within
                .as_deref()
                .map(projectclone::prune::policy::parse_within)
                .transpose()?,
        })
    }
}

#[derive(Subcommand, Debug)]
enum RepairCmd {
    /// Rebuild the index cache from the repository (and index packs no delta lists)
    Index,
    /// Rewrite snapshots whose data is partly lost, keeping what remains (tag `repaired`)
    Snapshots {
        /// Print what would be dropped; write nothing
        #[arg(long)]
        dry_run: bool,
        /// Keep the damaged originals too
        #[arg(long)]
        keep_original: bool,
    },
}

#[derive(Subcommand, Debug)]
enum KeyCmd {
    /// Change the password: add a key for the new one, remove the one used now
    Passwd {
        /// Read the new password from this file (or PROJECTCLONE_NEW_PASSWORD, or a prompt)
        #[arg(long, value_name = "F")]
        new_password_file: Option<PathBuf>,
    },
    /// Add a key for another password
    Add {
        #[arg(long, value_name = "F")]
        new_password_file: Option<PathBuf>,
    },
    /// List key files
    List,
    /// Remove a key file (never the last one)
    Remove { id: String },
}

fn read_password_file(f: &Path) -> Result<Vec<u8>> {
    let mut b = std::fs::read(f).with_context(|| format!("password file {}", f.display()))?;
    if b.ends_with(b"\r\n") {
        b.truncate(b.len() - 2);
    } else if b.ends_with(b"\n") {
        b.truncate(b.len() - 1);
    }
    Ok(b)
}

fn new_password(file: &Option<PathBuf>) -> Result<Vec<u8>> {
    if let Some(f) = file {
        return read_password_file(f);
    }
    if let Some(p) = std::env::var_os("PROJECTCLONE_NEW_PASSWORD") {
        use std::os::unix::ffi::OsStrExt;
        return Ok(p.as_bytes().to_vec());
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let p = rpassword::prompt_password("new password: ")?;
        if rpassword::prompt_password("repeat the new password: ")? != p {
            bail!("the passwords do not match");
        }
        return Ok(p.into_bytes());
    }
    bail!("no new password given: use --new-password-file F or PROJECTCLONE_NEW_PASSWORD")
}

pub fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("PROJECTCLONE_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if cli.log_json {
        b.json().init();
    } else {
        b.without_time().init();
    }
}

/// The optional user config file, `$XDG_CONFIG_HOME/projectclone/config.toml`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    repo: Option<String>,
    password_file: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
}

fn load_file_config() -> Result<FileConfig> {
    let Some(dirs) = directories::BaseDirs::new() else {
        return Ok(FileConfig::default());
    };
    let path = dirs.config_dir().join("projectclone").join("config.toml");
    match std::fs::read_to_string(&path) {
        Ok(s) => toml::from_str(&s).map_err(|e| anyhow!("config file {}: {e}\nfix or remove it", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
        Err(e) => Err(anyhow!("config file {}: {e}", path.display())),
    }
}

struct Ctx {
    cli: Cli,
    file: FileConfig,
}

impl Ctx {
    /// The repository location and whether it is the default one.
    fn repo_location(&self) -> Result<(PathBuf, bool)> {
        if let Some(r) = self.cli.repo.clone().or_else(|| self.file.repo.clone()) {
            let p = r.strip_prefix("file://").unwrap_or(&r);
            if p.contains("://") || p.starts_with("sftp:") || p.starts_with("s3:") {
                bail!("repository {r}: only local directories are supported in this version");
            }
            return Ok((PathBuf::from(p), false));
        }
        let dirs =
            directories::BaseDirs::new().ok_or_else(|| anyhow!("cannot find the home directory; give --repo"))?;
        Ok((dirs.data_dir().join("projectclone").join("repo"), true))
    }

    fn cache_dir(&self) -> Result<PathBuf> {
        if let Some(d) = self.cli.cache_dir.clone().or_else(|| self.file.cache_dir.clone()) {
            return Ok(d);
        }
        let dirs =
            directories::BaseDirs::new().ok_or_else(|| anyhow!("cannot find the home directory; give --cache-dir"))?;
        Ok(dirs.cache_dir().join("projectclone"))
    }

    /// The password from the configured sources, without prompting.
    fn password_from_sources(&self) -> Result<Option<Vec<u8>>> {
        if let Some(f) = self
            .cli
            .password_file
            .clone()
            .or_else(|| self.file.password_file.clone())
        {
            return Ok(Some(read_password_file(&f)?));
        }
        if let Some(p) = std::env::var_os("PROJECTCLONE_PASSWORD") {
            use std::os::unix::ffi::OsStrExt;
            return Ok(Some(p.as_bytes().to_vec()));
        }
        Ok(None)
    }

    fn password(&self, confirm: bool) -> Result<Vec<u8>> {
        if let Some(p) = self.password_from_sources()? {
            return Ok(p);
        }
        if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            let p = rpassword::prompt_password("repository password: ")?;
            if confirm && rpassword::prompt_password("repeat the password: ")? != p {
                bail!("the passwords do not match");
            }
            return Ok(p.into_bytes());
        }
        bail!(
            "no password given and no terminal to ask on: use --password-file F, \
             PROJECTCLONE_PASSWORD_FILE or PROJECTCLONE_PASSWORD"
        )
    }

    fn open(&self) -> Result<Repository> {
        let (path, _) = self.repo_location()?;
        self.open_at(&path)
    }

    fn open_at(&self, path: &Path) -> Result<Repository> {
        let backend = Arc::new(LocalBackend::new(path));
        let cache = self.cache_dir()?;
        let pw = self.password_from_sources()?;
        if pw.is_none() {
            // A repository created with --insecure-no-password opens without one.
            match Repository::open(backend.clone(), None, &cache) {
                Ok(r) => return Ok(r),
                Err(Error::WrongPassword(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let pw = match pw {
            Some(p) => p,
            None => self.password(false)?,
        };
        Ok(Repository::open(backend, Some(&pw), &cache)?)
    }
}

pub fn run(cli: Cli) -> Result<u8> {
    let file = load_file_config()?;
    let ctx = Ctx { cli, file };
    let json = ctx.cli.json;
    match &ctx.cli.command {
        Command::Init {
            insecure_no_password,
            kdf_memory,
            kdf_time,
        } => {
            let (path, _) = ctx.repo_location()?;
            let pw = if *insecure_no_password {
                None
            } else {
                Some(ctx.password(true)?)
            };
            let opts = InitOptions {
                kdf: projectclone::crypto::KdfParams {
                    m_cost: *kdf_memory,
                    t_cost: *kdf_time,
                    p_cost: 4,
                },
                ..Default::default()
            };
            let repo = Repository::init(
                Arc::new(LocalBackend::new(&path)),
                pw.as_deref(),
                &opts,
                &ctx.cache_dir()?,
            )?;
            output::init(json, &path, repo.repo_id());
            Ok(0)
        }
        Command::Backup {
            paths,
            tags,
            note,
            excludes,
            dry_run,
            compression,
            host,
        } => {
            let (path, is_default) = ctx.repo_location()?;
            let paths = if paths.is_empty() {
                vec![std::env::current_dir()?]
            } else {
                paths.clone()
            };
            for p in &paths {
                if std::fs::symlink_metadata(p).is_err() {
                    bail!("{}: no such file or directory; nothing was backed up", p.display());
                }
            }
            let cache = ctx.cache_dir()?;
            let exists = path.join("config").exists();
            let mut _tmp = None;
            let mut repo = if is_default && !exists {
                let pw = ctx.password(true)?;
                if *dry_run {
                    // Nothing may be created: measure against a throwaway repository.
                    let t = tempfile::tempdir()?;
                    let r = Repository::init(
                        Arc::new(LocalBackend::new(t.path().join("repo"))),
                        Some(&pw),
                        &InitOptions::default(),
                        &t.path().join("cache"),
                    )?;
                    _tmp = Some(t);
                    r
                } else {
                    if !ctx.cli.quiet {
                        eprintln!("creating repository {}", path.display());
                    }
                    Repository::init(
                        Arc::new(LocalBackend::new(&path)),
                        Some(&pw),
                        &InitOptions::default(),
                        &cache,
                    )?
                }
            } else {
                ctx.open_at(&path)?
            };
            let _lock = shared_lock(&mut repo, *dry_run, "backup")?;
            let mut skip = Vec::new();
            for p in [&path, &cache] {
                if let Ok(c) = std::fs::canonicalize(p) {
                    skip.push(c);
                }
            }
            let opts = BackupOptions {
                paths,
                tags: tags.clone(),
                note: note.clone(),
                excludes: excludes.clone(),
                dry_run: *dry_run,
                compression: *compression,
                hostname: host.clone().unwrap_or_else(lock::hostname),
                username: std::env::var("USER").unwrap_or_else(|_| rustix::process::getuid().as_raw().to_string()),
                skip,
                time_override: None,
                paths_override: None,
            };
            let progress = output::progress(&ctx.cli);
            let res = backup(&mut repo, &opts, progress.as_ref(), _lock.as_ref())?;
            progress.finish();
            output::backup(&ctx.cli, &res);
            Ok(if res.errors.is_empty() { 0 } else { 3 })
        }
        Command::Snapshots => {
            let repo = ctx.open()?;
            output::snapshots(json, &repo.snapshots()?);
            Ok(0)
        }
        Command::Ls { snap, path, long } => {
            let repo = ctx.open()?;
            let (_, s) = repo.resolve_snapshot(snap)?;
            let entries = projectclone::inspect::ls(&repo, &s, path.as_deref())?;
            output::ls(json, *long, &entries);
            Ok(0)
        }
        Command::Diff { a, b } => {
            let repo = ctx.open()?;
            let (_, sa) = repo.resolve_snapshot(a)?;
            let (_, sb) = repo.resolve_snapshot(b)?;
            output::diff(json, &projectclone::inspect::diff(&repo, &sa, &sb)?);
            Ok(0)
        }
        Command::Restore {
            snap,
            target,
            includes,
            verify,
            dry_run,
        } => {
            let mut repo = ctx.open()?;
            let (id, s) = repo.resolve_snapshot(snap)?;
            let _lock = shared_lock(&mut repo, *dry_run, "restore")?;
            let opts = RestoreOptions {
                target: target.clone(),
                includes: includes.clone(),
                verify: *verify,
                dry_run: *dry_run,
            };
            let progress = output::progress(&ctx.cli);
            let res = restore(&repo, &s, &opts, progress.as_ref())?;
            progress.finish();
            output::restore(&ctx.cli, &id, &opts, &res);
            Ok(if res.errors.is_empty() { 0 } else { 1 })
        }
        Command::Export {
            snap,
            clone,
            archive,
            manifest,
            format,
            incremental,
            keep,
            dry_run,
        } => {
            let mut repo = ctx.open()?;
            let (id, s) = repo.resolve_snapshot(snap)?;
            let _lock = shared_lock(&mut repo, *dry_run, "export")?;
            let progress = output::progress(&ctx.cli);
            let res = match (clone, archive, incremental) {
                (_, Some(a), _) if a.as_os_str() == "-" => {
                    if *manifest {
                        bail!("--manifest needs an archive file name, not -");
                    }
                    if json && !*dry_run {
                        bail!("--json prints on stdout, where the archive goes with -; leave one out");
                    }
                    let fmt = format.unwrap_or(ArchiveFormat::Gzip);
                    let stdout = std::io::stdout();
                    let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
                    let res = if *dry_run {
                        export::archive_to_writer(&repo, &s, fmt, &mut std::io::sink(), true, progress.as_ref())?
                    } else {
                        export::archive_to_writer(&repo, &s, fmt, &mut w, false, progress.as_ref())?
                    };
                    std::io::Write::flush(&mut w).context("writing the archive to stdout")?;
                    res
                }
                _ => {
                    let view = match (clone, archive, incremental) {
                        (Some(d), _, _) => export::View::Clone { dir: d.clone() },
                        (_, Some(f), _) => export::View::Archive {
                            file: f.clone(),
                            format: match format.or_else(|| ArchiveFormat::from_path(f)) {
                                Some(x) => x,
                                None => bail!(
                                    "{}: name the archive .tar, .tar.gz or .tar.zst, or give --format",
                                    f.display()
                                ),
                            },
                            manifest: *manifest,
                        },
                        (_, _, Some(d)) => export::View::Incremental {
                            dir: d.clone(),
                            keep: *keep,
                        },
                        _ => unreachable!("clap requires one view"),
                    };
                    let opts = export::ExportOptions {
                        view,
                        dry_run: *dry_run,
                        tz: jiff::tz::TimeZone::system(),
                    };
                    export::export(&repo, &id, &s, &opts, progress.as_ref())?
                }
            };
            progress.finish();
            output::export(&ctx.cli, &id, &res);
            Ok(if res.errors.is_empty() { 0 } else { 1 })
        }
        Command::Import {
            paths,
            project,
            tags,
            host,
            dry_run,
        } => {
            let mut repo = ctx.open()?;
            let guard = shared_lock(&mut repo, *dry_run, "import")?;
            let mut skip = Vec::new();
            for p in [ctx.repo_location()?.0, ctx.cache_dir()?] {
                if let Ok(c) = std::fs::canonicalize(p) {
                    skip.push(c);
                }
            }
            let opts = projectclone::import::ImportOptions {
                project: project.clone(),
                tags: tags.clone(),
                hostname: host.clone().unwrap_or_else(lock::hostname),
                username: std::env::var("USER").unwrap_or_else(|_| rustix::process::getuid().as_raw().to_string()),
                compression: Compression::default(),
                dry_run: *dry_run,
                tz: jiff::tz::TimeZone::system(),
                skip,
            };
            let progress = output::progress(&ctx.cli);
            let res = projectclone::import::import(&mut repo, paths, &opts, progress.as_ref(), guard.as_ref())?;
            progress.finish();
            output::import(&ctx.cli, &res);
            Ok(if !res.failed.is_empty() {
                1
            } else if res.imported.iter().all(|r| r.result.errors.is_empty()) {
                0
            } else {
                3
            })
        }
        Command::Check {
            read_data,
            read_data_subset,
        } => {
            let repo = ctx.open()?;
            let _lock = lock::acquire(&repo, LockMode::Shared, "check")?;
            let subset = if *read_data {
                Some(projectclone::check::Subset::All)
            } else {
                *read_data_subset
            };
            let report = projectclone::check::check_with(&repo, subset)?;
            output::check(json, &report);
            Ok(if report.ok() { 0 } else { 1 })
        }
        Command::Forget {
            snaps,
            keep,
            prune,
            dry_run,
            repack_threshold,
        } => {
            let mut repo = ctx.open()?;
            let mut ids = Vec::new();
            for s in snaps {
                ids.push(repo.resolve_snapshot(s)?.0);
            }
            let rules = keep.rules()?;
            if ids.is_empty() && rules.is_empty() {
                bail!("forget needs snapshot ids or --keep-* rules");
            }
            run_prune(&ctx, &mut repo, rules, ids, *prune, *dry_run, *repack_threshold)
        }
        Command::Prune {
            keep,
            dry_run,
            repack_threshold,
        } => {
            let mut repo = ctx.open()?;
            run_prune(
                &ctx,
                &mut repo,
                keep.rules()?,
                Vec::new(),
                true,
                *dry_run,
                *repack_threshold,
            )
        }
        Command::Repair { what: RepairCmd::Index } => {
            let mut repo = ctx.open()?;
            let _lock = lock::acquire(&repo, LockMode::Exclusive, "repair")?;
            let recovered = repo.repair_index()?;
            output::repair_index(json, &repo, recovered)?;
            Ok(if repo.damaged.is_empty() { 0 } else { 1 })
        }
        Command::Repair {
            what: RepairCmd::Snapshots { dry_run, keep_original },
        } => {
            let mut repo = ctx.open()?;
            let _lock = lock::acquire(&repo, LockMode::Exclusive, "repair")?;
            let report = projectclone::repair::repair_snapshots(&mut repo, *dry_run, !*keep_original)?;
            output::repair_snapshots(json, &report);
            Ok(0)
        }
        Command::Unlock => {
            let repo = ctx.open()?;
            let removed = lock::remove_stale(&repo)?;
            output::unlock(json, removed);
            Ok(0)
        }
        Command::Key { what } => {
            let repo = ctx.open()?;
            let _lock = lock::acquire(&repo, LockMode::Exclusive, "key")?;
            let kdf = projectclone::crypto::KdfParams::default();
            match what {
                KeyCmd::List => output::keys(json, &repo.list_keys()?, &repo.key_name),
                KeyCmd::Add { new_password_file } => {
                    let name = repo.add_key(&new_password(new_password_file)?, kdf)?;
                    output::key_changed(json, "added", &name);
                }
                KeyCmd::Passwd { new_password_file } => {
                    let name = repo.add_key(&new_password(new_password_file)?, kdf)?;
                    repo.remove_key(&repo.key_name)?;
                    output::key_changed(json, "password changed; new key", &name);
                }
                KeyCmd::Remove { id } => {
                    if repo.key_name.starts_with(id.as_str()) {
                        bail!("key {id} is the one opening the repository now; use `key passwd` to replace it");
                    }
                    let name = repo.remove_key(id)?;
                    output::key_changed(json, "removed", &name);
                }
            }
            Ok(0)
        }
        Command::Stats { snap } => {
            let repo = ctx.open()?;
            match snap {
                Some(s) => {
                    let (id, s) = repo.resolve_snapshot(s)?;
                    output::snapshot_stats(json, &id, &projectclone::inspect::snapshot_stats(&repo, &s)?);
                }
                None => output::repo_stats(json, &projectclone::inspect::repo_stats(&repo)?),
            }
            Ok(0)
        }
    }
}

/// A shared lock (none for a dry run), then a re-sync: condemned marks written before the
/// lock are visible from here on, since a prune waits only for locks older than its mark.
fn shared_lock(repo: &mut Repository, dry_run: bool, purpose: &str) -> Result<Option<lock::LockGuard>> {
    if dry_run {
        return Ok(None);
    }
    let guard = lock::acquire(repo, LockMode::Shared, purpose)?;
    repo.sync_index()?;
    Ok(Some(guard))
}

fn run_prune(
    ctx: &Ctx,
    repo: &mut Repository,
    rules: projectclone::prune::policy::KeepRules,
    forget: Vec<projectclone::id::SnapshotId>,
    gc: bool,
    dry_run: bool,
    repack_threshold: f64,
) -> Result<u8> {
    if !(0.0..=1.0).contains(&repack_threshold) {
        bail!("--repack-threshold {repack_threshold}: give a fraction between 0 and 1");
    }
    let guard = shared_lock(repo, dry_run, "prune")?;
    let opts = projectclone::prune::PruneOptions {
        rules,
        forget,
        gc,
        dry_run,
        repack_threshold,
        tz: jiff::tz::TimeZone::system(),
        hostname: lock::hostname(),
        own_lock: guard.as_ref().map(|g| g.object_id()),
    };
    let plan = projectclone::prune::run(repo, &opts, guard.as_ref())?;
    output::prune(&ctx.cli, &plan);
    Ok(0)
}
