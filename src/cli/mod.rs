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
    /// Verify the repository's structure (and with --read-data, every byte)
    Check {
        #[arg(long)]
        read_data: bool,
    },
    /// Sizes of the repository, or of one snapshot
    Stats { snap: Option<String> },
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
            let mut b = std::fs::read(&f).with_context(|| format!("password file {}", f.display()))?;
            if b.ends_with(b"\r\n") {
                b.truncate(b.len() - 2);
            } else if b.ends_with(b"\n") {
                b.truncate(b.len() - 1);
            }
            return Ok(Some(b));
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
            let _lock = if *dry_run {
                None
            } else {
                Some(lock::acquire(&repo, LockMode::Shared)?)
            };
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
            };
            let progress = output::progress(&ctx.cli);
            let res = backup(&mut repo, &opts, progress.as_ref())?;
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
            let repo = ctx.open()?;
            let (id, s) = repo.resolve_snapshot(snap)?;
            let _lock = if *dry_run {
                None
            } else {
                Some(lock::acquire(&repo, LockMode::Shared)?)
            };
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
        Command::Check { read_data } => {
            let repo = ctx.open()?;
            let _lock = lock::acquire(&repo, LockMode::Shared)?;
            let report = projectclone::check::check(&repo, *read_data)?;
            output::check(json, &report);
            Ok(if report.ok() { 0 } else { 1 })
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
