//! Command-line interface: argument definitions, repository/password resolution, and
//! one function per subcommand. `output` is the only place that prints results.

use projectclone::config;

mod beyond;
mod completions;
mod encrypt;
pub mod failure;
mod git;
mod help;
mod hooks;
pub mod interactive;
mod mount;
pub mod old_syntax;
mod output;
mod progress;
pub mod report;
mod schedule;
mod select;
mod watch;

use std::cell::{OnceCell, RefCell};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use zeroize::Zeroizing;

use projectclone::backend::local::LocalBackend;
use projectclone::backup::{BackupOptions, backup};
use projectclone::compress::Compression;
use projectclone::error::Error;
use projectclone::export::{self, ArchiveFormat};
use projectclone::location::{Location, StorageOptions};
use projectclone::lock::{self, LockMode};
use projectclone::repo::{InitOptions, Repository};
use projectclone::restore::{RestoreOptions, restore};
use select::SelectArgs;

#[derive(Parser, Debug)]
#[command(
    name = "projectclone",
    version = help::version(),
    about = "Exact, restorable, deduplicated and encrypted snapshots of project directories",
    after_long_help = help::TOP,
    next_help_heading = "Global options"
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
    pub json: bool,
    /// JSON with status lines: `"message_type": "status"` objects on stdout while the
    /// command runs, then its result as one line with `"message_type": "summary"`
    #[arg(long, global = true)]
    pub json_status: bool,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More detail on stderr (repeat for debug logs)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Logs on stderr as JSON lines
    #[arg(long, global = true)]
    log_json: bool,
    /// The repository has no password (its key is stored in clear): make one so with
    /// `init`, open one so on any command (this client remembers it from `init`)
    #[arg(long, global = true)]
    insecure_no_password: bool,
    /// Send at most this many KiB per second to the repository
    #[arg(long, global = true, value_name = "KiB/s")]
    limit_upload: Option<u64>,
    /// Receive at most this many KiB per second from the repository
    #[arg(long, global = true, value_name = "KiB/s")]
    limit_download: Option<u64>,
    /// S3 storage class of the objects written (STANDARD_IA, INTELLIGENT_TIERING, …)
    #[arg(long, global = true, value_name = "CLASS")]
    storage_class: Option<String>,
    /// Use the settings of `[profile.NAME]` in the user config file
    #[arg(short = 'P', long, global = true, env = "PROJECTCLONE_PROFILE", value_name = "NAME")]
    profile: Option<String>,
    /// Back up and read, never delete: forget, prune, repair and key changes are refused,
    /// and only lock files are ever deleted (also `append-only = true` in a config file)
    #[arg(long, global = true)]
    append_only: bool,
    /// Run no hook of the config files
    #[arg(long, global = true)]
    no_hooks: bool,
    /// Also POST how the command ended to this URL (JSON; repeatable)
    #[arg(long, global = true, value_name = "URL")]
    notify: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// The subcommand's name, as typed.
    fn command_name(&self) -> &'static str {
        match &self.command {
            Command::Init { .. } => "init",
            Command::Backup { .. } => "backup",
            Command::Cat { .. } => "cat",
            Command::Dump { .. } => "dump",
            Command::Snapshots { .. } => "snapshots",
            Command::Ls { .. } => "ls",
            Command::Diff { .. } => "diff",
            Command::Restore { .. } => "restore",
            Command::Export { .. } => "export",
            Command::Import { .. } => "import",
            Command::Check { .. } => "check",
            Command::Verify { .. } => "verify",
            Command::Log { .. } => "log",
            Command::Mount { .. } => "mount",
            Command::Watch { .. } => "watch",
            Command::Parity { .. } => "parity",
            Command::Find { .. } => "find",
            Command::GitHook { .. } => "git-hook",
            Command::Forget { .. } => "forget",
            Command::Prune { .. } => "prune",
            Command::Repair { .. } => "repair",
            Command::Unlock { .. } => "unlock",
            Command::Key { .. } => "key",
            Command::Trust { .. } => "trust",
            Command::Copy { .. } => "copy",
            Command::Stats { .. } => "stats",
            Command::Config { .. } => "config",
            // A backup, then a view of it: the backup hooks and notifications apply.
            Command::OldSyntax(_) => "backup",
            Command::Status => "status",
            Command::Schedule { .. } => "schedule",
            Command::Completions { .. } => "completions",
            Command::Man { .. } => "man",
        }
    }

    /// Whether this run chunks files into new snapshots, `backup` or `import` (the
    /// allocator is tuned differently for it).
    pub fn chunks_files(&self) -> bool {
        matches!(
            self.command,
            Command::Backup { .. } | Command::Import { .. } | Command::OldSyntax(_) | Command::Watch { .. }
        )
    }

    /// The command this run is when it deletes from the repository (outside `--dry-run`):
    /// refused when the repository is open append-only. Lock files do not count.
    fn deletes(&self) -> Option<&'static str> {
        match &self.command {
            Command::Forget {
                vanished: false,
                dry_run: false,
                ..
            } => Some("forget"),
            Command::Prune { dry_run: false, .. } => Some("prune"),
            Command::Repair {
                what: RepairCmd::Snapshots { dry_run: false, .. } | RepairCmd::Index { dry_run: false },
            } => Some("repair"),
            Command::Key {
                what: KeyCmd::Passwd { .. },
            } => Some("key passwd"),
            Command::Key {
                what: KeyCmd::Remove { .. },
            } => Some("key remove"),
            Command::Parity {
                what: ParityCmd::Rebuild { dry_run: false },
            } => Some("parity rebuild"),
            _ => None,
        }
    }

    /// Whether this run only reads the repository (and may write outside it). Such a run
    /// goes on without a lock when the repository is read-only, and with a temporary
    /// cache when the cache directory cannot be used.
    fn reads_only(&self) -> bool {
        match &self.command {
            Command::Snapshots { .. }
            | Command::Ls { .. }
            | Command::Cat { .. }
            | Command::Dump { .. }
            | Command::Diff { .. }
            | Command::Restore { .. }
            | Command::Export { .. }
            | Command::Check { .. }
            | Command::Verify { .. }
            | Command::Log { .. }
            | Command::GitHook { .. }
            | Command::Mount { .. }
            | Command::Find { .. }
            | Command::Parity {
                what: ParityCmd::Status | ParityCmd::Rebuild { dry_run: true },
            }
            | Command::Stats { .. }
            | Command::Key { what: KeyCmd::List } => true,
            Command::Backup { dry_run, .. }
            | Command::Import { dry_run, .. }
            | Command::Forget { dry_run, .. }
            | Command::Prune { dry_run, .. }
            | Command::Repair {
                what: RepairCmd::Snapshots { dry_run, .. } | RepairCmd::Index { dry_run },
            } => *dry_run,
            Command::Trust { .. } | Command::Config { .. } => true,
            Command::Status | Command::Schedule { .. } => true,
            Command::Completions { .. } | Command::Man { .. } => true,
            Command::Copy { dry_run, .. } => *dry_run,
            Command::OldSyntax(a) => a.dry_run,
            Command::Init { .. }
            | Command::Unlock { .. }
            | Command::Key { .. }
            | Command::Watch { .. }
            | Command::Parity { .. } => false,
        }
    }
}

#[derive(Subcommand, Debug)]
enum ParityCmd {
    /// Protect the packs no parity covers yet: groups of N packs, M recovery shards each
    Create {
        /// Packs per group (1-64)
        #[arg(long, value_name = "N", default_value_t = projectclone::parity::DEFAULT_GROUP)]
        group: usize,
        /// Recovery shards per group (1-16): up to this many packs of a group can be rebuilt
        #[arg(long, value_name = "M", default_value_t = projectclone::parity::DEFAULT_SHARDS)]
        shards: usize,
    },
    /// Rebuild lost or damaged packs from their group's parity
    Rebuild {
        /// Say what would be rebuilt; write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// How many packs parity covers, and what it costs
    Status,
}

#[derive(Subcommand, Debug)]
enum GitHookCmd {
    /// Write the work tree's post-commit hook: a quiet backup of the work tree after each
    /// commit, with this command's -r, --password-file, --cache-dir and -P
    Install {
        /// A folder in the work tree (default: the current directory)
        path: Option<PathBuf>,
    },
    /// Remove the hook `install` wrote (any other hook is left alone)
    Remove {
        /// A folder in the work tree (default: the current directory)
        path: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new repository
    #[command(after_long_help = help::INIT)]
    Init {
        /// Argon2id memory in KiB for the new key (default and minimum: 65536)
        #[arg(long, default_value_t = projectclone::crypto::KdfParams::default().m_cost, hide = true)]
        kdf_memory: u32,
        /// Argon2id passes for the new key (default and minimum: 3)
        #[arg(long, default_value_t = projectclone::crypto::KdfParams::default().t_cost, hide = true)]
        kdf_time: u32,
        /// Accept --kdf-memory/--kdf-time below the default (tests and throwaway
        /// repositories only: a weak key is cheaper to guess)
        #[arg(long, hide = true)]
        weak_kdf: bool,
        /// Size packs aim for, in MiB (1-1024; default 16). Larger packs mean fewer
        /// objects on a remote store; smaller ones less to send again after an interruption
        #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(1..=1024))]
        pack_size: Option<u32>,
    },
    /// Take a snapshot of PATHs (default: the current directory)
    #[command(after_long_help = help::BACKUP)]
    Backup {
        /// Files and directories to back up (default: the current directory)
        paths: Vec<PathBuf>,
        /// Tag the snapshot (repeatable; added to `tags` of the config files)
        #[arg(long = "tag", value_name = "T")]
        tags: Vec<String>,
        /// A note recorded with the snapshot (shown by `snapshots`)
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// Leave out files matching this glob (gitignore syntax); repeatable
        #[arg(long = "exclude", value_name = "GLOB")]
        excludes: Vec<String>,
        /// Report what would be added; write nothing
        #[arg(long)]
        dry_run: bool,
        /// zstd, zstd:LEVEL, lz4 or none (default: zstd, level 4)
        #[arg(long, value_name = "ALGO")]
        compression: Option<Compression>,
        /// Record this host name instead of the machine's
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
        /// Back up what is piped in as one file (`pg_dump app | projectclone backup --stdin
        /// --stdin-name app.sql`)
        #[arg(long, conflicts_with_all = ["paths", "excludes", "exclude_caches", "one_file_system", "exclude_larger_than"])]
        stdin: bool,
        /// With --stdin: the file's name in the snapshot (default: stdin)
        #[arg(long, value_name = "NAME", requires = "stdin")]
        stdin_name: Option<String>,
        /// Of a directory holding a valid CACHEDIR.TAG, back up only the tag file
        #[arg(long)]
        exclude_caches: bool,
        /// Do not cross into other mounted file systems (a mount point is kept as an empty
        /// directory)
        #[arg(long)]
        one_file_system: bool,
        /// Leave out files larger than SIZE (500K, 10M, 1.5G: powers of 1024)
        #[arg(long, value_name = "SIZE", value_parser = projectclone::backup::parse_size)]
        exclude_larger_than: Option<u64>,
        /// Ask on the terminal what to back up, where, and which big folders to leave out
        /// (what `projectclone` alone does on a terminal)
        #[arg(short = 'i', long, conflicts_with = "stdin")]
        interactive: bool,
    },
    /// Write one file of a snapshot to standard output
    #[command(after_long_help = help::CAT)]
    Cat {
        #[arg(help = help::SNAP)]
        snap: String,
        /// The file's path in the snapshot (as `ls` shows it)
        path: String,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Write a folder of a snapshot (default: all of it) to standard output as a tar archive
    #[command(after_long_help = help::DUMP)]
    Dump {
        #[arg(help = help::SNAP)]
        snap: String,
        /// A directory (members named ./…) or one file of the snapshot
        path: Option<String>,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// List snapshots (those the filters select)
    #[command(after_long_help = help::SNAPSHOTS)]
    Snapshots {
        #[command(flatten)]
        select: SelectArgs,
    },
    /// List the entries of a snapshot, under PATH if given
    #[command(after_long_help = help::LS)]
    Ls {
        #[arg(help = help::SNAP)]
        snap: String,
        /// Only the entries under this path of the snapshot (as `ls` shows it)
        path: Option<String>,
        /// Long format: type, mode, owner, size, mtime
        #[arg(short, long)]
        long: bool,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Show what changed between two snapshots
    #[command(after_long_help = help::DIFF)]
    Diff {
        /// The older snapshot (see SNAP in `projectclone --help`)
        #[arg(value_name = "SNAP")]
        a: String,
        /// The newer snapshot (see SNAP in `projectclone --help`)
        #[arg(value_name = "SNAP")]
        b: String,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Restore a snapshot into a directory
    #[command(after_long_help = help::RESTORE)]
    Restore {
        #[arg(help = help::SNAP, required_unless_present_any = ["interactive", "commits"])]
        snap: Option<String>,
        /// Where to restore (created if missing; entries of the same name are replaced,
        /// others left alone)
        #[arg(long, value_name = "DIR", required_unless_present = "interactive")]
        target: Option<PathBuf>,
        /// Restore only matching entries (a name at any depth, or a path with a slash)
        #[arg(long = "include", value_name = "GLOB")]
        includes: Vec<String>,
        /// Re-read restored files and compare them with the snapshot
        #[arg(long)]
        verify: bool,
        /// Print the plan; write nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        select: SelectArgs,
        /// Pick the snapshot, its paths and the target from lists on the terminal
        #[arg(short = 'i', long)]
        interactive: bool,
    },
    /// Write a view of a snapshot: a folder copy, a tar archive or an incremental folder
    #[command(group(clap::ArgGroup::new("view").required(true).args(["clone", "archive", "incremental"])))]
    #[command(after_long_help = help::EXPORT)]
    Export {
        #[arg(help = help::SNAP)]
        snap: String,
        /// An exact copy at DIR (which must not exist, or be empty)
        #[arg(long, value_name = "DIR")]
        clone: Option<PathBuf>,
        /// A tar archive, compressed by extension (.tar, .tar.gz, .tar.zst); - for stdout
        #[arg(long, value_name = "FILE")]
        archive: Option<PathBuf>,
        /// With --archive: also write FILE.sha256 for `sha256sum -c`
        // Not `requires = "archive"`: clap takes any member of the required group "view" as
        // meeting it (clap-rs/clap#4707), so `--manifest --clone DIR` would pass silently.
        #[arg(long, conflicts_with_all = ["clone", "incremental"])]
        manifest: bool,
        /// With --archive: the format when the name does not say (default for -: tar.gz)
        #[arg(long, value_name = "tar|tar.gz|tar.zst", conflicts_with_all = ["clone", "incremental"])]
        format: Option<ArchiveFormat>,
        /// A new YYYY-MM-DD_HHMMSS-<project>[-<note>] folder under DIR; files unchanged
        /// since the previous export there are hard links to it
        #[arg(long, value_name = "DIR")]
        incremental: Option<PathBuf>,
        /// With --incremental: keep only this project's newest N export folders
        #[arg(long, value_name = "N", conflicts_with_all = ["clone", "archive"])]
        keep: Option<usize>,
        /// With --archive: encrypt it (age format; `.age` is appended to FILE) with a
        /// passphrase from --encrypt-password-file, PROJECTCLONE_ENCRYPT_PASSWORD or a prompt
        #[arg(long, conflicts_with_all = ["clone", "incremental"])]
        encrypt: bool,
        /// With --archive: encrypt to this age public key (age1…) instead; repeatable
        #[arg(long = "recipient", value_name = "AGE_PUBKEY", conflicts_with_all = ["clone", "incremental"])]
        recipients: Vec<String>,
        /// With --archive: encrypt to the age public keys in this file (one per line); repeatable
        #[arg(long = "recipients-file", value_name = "F", conflicts_with_all = ["clone", "incremental"])]
        recipients_files: Vec<PathBuf>,
        /// With --archive: read the encryption passphrase from this file (implies --encrypt)
        #[arg(long, value_name = "F", conflicts_with_all = ["recipients", "recipients_files", "clone", "incremental"])]
        encrypt_password_file: Option<PathBuf>,
        /// Print what would be written; write nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Bring the older Python tool's backups (folders, incremental folders, .tar.gz
    /// archives named YYYY-MM-DD_HHMMSS-<project>[-<note>]) in as snapshots
    #[command(after_long_help = help::IMPORT)]
    Import {
        /// Backup folders and archives of the old tool
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The project name, when a name cannot tell project from note (or has no time stamp)
        #[arg(long, value_name = "NAME")]
        project: Option<String>,
        /// Tag the imported snapshots (repeatable)
        #[arg(long = "tag", value_name = "T")]
        tags: Vec<String>,
        /// Record this host name instead of the machine's
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
        /// Report what would be imported; write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Verify the repository's structure (and with --read-data, every byte)
    #[command(after_long_help = help::CHECK)]
    Check {
        /// Also read and authenticate every pack (downloads all of a remote repository)
        #[arg(long)]
        read_data: bool,
        /// Read only part of the data: N/M (the N-th of M parts) or P% (a random P percent)
        #[arg(long, value_name = "N/M|P%", conflicts_with = "read_data")]
        read_data_subset: Option<projectclone::check::Subset>,
        /// Rolling verification: read the share of the packs that keeps each one read within
        /// DAYS (run it daily: each run reads about 1/DAYS of the data, the packs read
        /// longest ago first)
        #[arg(long, value_name = "DAYS", value_parser = parse_days, conflicts_with_all = ["read_data", "read_data_subset"])]
        read_data_within: Option<u32>,
    },
    /// Check that no snapshot was deleted, and no tombstone removed, behind the repository's
    /// back: against the parents snapshots name and an anchor file kept elsewhere
    #[command(after_long_help = help::VERIFY)]
    Verify {
        /// Compare with the anchor in FILE (kept outside the repository), then bring it up to
        /// date; FILE is made when missing
        #[arg(long, value_name = "FILE")]
        anchor: Option<PathBuf>,
    },
    /// Browse the snapshots as a read-only folder (FUSE) until Ctrl-C or `umount DIR`
    #[command(after_long_help = help::MOUNT)]
    Mount {
        /// An existing, empty folder to mount at
        dir: PathBuf,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Reed-Solomon parity across groups of packs: lost or damaged packs rebuilt
    #[command(after_long_help = help::PARITY)]
    Parity {
        #[command(subcommand)]
        what: ParityCmd,
    },
    /// Back up a project whenever it has gone quiet after changes, until Ctrl-C
    #[command(after_long_help = help::WATCH)]
    Watch {
        /// The project folder (default: the current directory)
        path: Option<PathBuf>,
        /// Back up once no file has changed for this long after a change
        #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = watch::parse_duration)]
        quiet_for: std::time::Duration,
        /// Never back up sooner than this after the previous backup
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = watch::parse_duration)]
        min_interval: std::time::Duration,
        /// Back up at the latest this long after the first change not yet saved, even if
        /// changes never stop
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = watch::parse_duration)]
        max_interval: std::time::Duration,
        /// Tag the snapshots (repeatable)
        #[arg(long = "tag", value_name = "T")]
        tags: Vec<String>,
        /// Do not back up when starting; wait for the first change
        #[arg(long)]
        no_initial: bool,
    },
    /// Find entries by name in the snapshots, without restoring
    #[command(after_long_help = help::FIND)]
    Find {
        /// A name pattern (`*.rs`, `Cargo.toml`), or a path pattern from the snapshot root
        /// when it has a slash (`src/**/mod.rs`); several: any of them
        #[arg(required = true, value_name = "PATTERN")]
        patterns: Vec<String>,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Snapshots beside `git log`: the work tree's commits, each with the snapshots taken at it
    #[command(after_long_help = help::LOG)]
    Log {
        /// A folder in the work tree (default: the current directory)
        path: Option<PathBuf>,
        /// How many commits, newest first
        #[arg(short = 'n', long = "max-count", value_name = "N", default_value_t = 20)]
        max_count: usize,
    },
    /// Take a snapshot after every git commit: install or remove a post-commit hook
    #[command(after_long_help = help::GIT_HOOK)]
    GitHook {
        #[command(subcommand)]
        what: GitHookCmd,
    },
    /// Remove snapshots (named, or those the --keep-* rules do not keep)
    #[command(after_long_help = help::FORGET)]
    Forget {
        /// Snapshots to remove (see SNAP in `projectclone --help`)
        #[arg(value_name = "SNAP")]
        snaps: Vec<String>,
        #[command(flatten)]
        keep: KeepArgs,
        /// Acknowledge the snapshots that vanished without a tombstone (reported on every
        /// command): write their tombstones, so prune may free what they referenced
        #[arg(long, conflicts_with_all = ["snaps", "prune", "keep_last", "keep_hourly", "keep_daily",
            "keep_weekly", "keep_monthly", "keep_yearly", "keep_tags", "keep_within"])]
        vanished: bool,
        /// Collect garbage afterwards, as `prune` does
        #[arg(long)]
        prune: bool,
        /// Print the plan; change nothing
        #[arg(long)]
        dry_run: bool,
        /// With --prune: repack a partly used pack when more than this fraction of it is
        /// unused
        #[arg(long, default_value_t = 0.1, value_name = "FRACTION")]
        repack_threshold: f64,
        #[command(flatten)]
        select: SelectArgs,
        /// Thin each group of snapshots on its own: none, or a comma list of host, paths,
        /// project and tags (default: host,paths, or group-by in a config file)
        #[arg(long, value_name = "host,paths|project|none")]
        group_by: Option<projectclone::select::GroupBy>,
    },
    /// Apply --keep-* rules (if any), then collect garbage without blocking backups
    #[command(after_long_help = help::PRUNE)]
    Prune {
        #[command(flatten)]
        keep: KeepArgs,
        /// Print the plan; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Repack a partly used pack when more than this fraction of it is unused
        #[arg(long, default_value_t = 0.1, value_name = "FRACTION")]
        repack_threshold: f64,
        #[command(flatten)]
        select: SelectArgs,
        /// Thin each group of snapshots on its own: none, or a comma list of host, paths,
        /// project and tags (default: host,paths, or group-by in a config file)
        #[arg(long, value_name = "host,paths|project|none")]
        group_by: Option<projectclone::select::GroupBy>,
    },
    /// Rebuild local state from the repository
    #[command(after_long_help = help::REPAIR)]
    Repair {
        #[command(subcommand)]
        what: RepairCmd,
    },
    /// Remove stale locks (a live process's lock is never removed, unless --remove-all)
    #[command(after_long_help = help::UNLOCK)]
    Unlock {
        /// Remove every lock, live ones too: only when you know their holders are gone
        /// (a machine that will not come back, a clock far ahead)
        #[arg(long)]
        remove_all: bool,
    },
    /// Manage the passwords (key files) of the repository
    #[command(after_long_help = help::KEY)]
    Key {
        #[command(subcommand)]
        what: KeyCmd,
    },
    /// What this client trusts about the repository (key kind, key check, config digest,
    /// snapshots seen), or trust it anew as it is now after a deliberate change
    #[command(after_long_help = help::TRUST)]
    Trust {
        #[command(subcommand)]
        what: Option<TrustCmd>,
    },
    /// Copy snapshots into another (initialised) repository, deduplicating there; a
    /// snapshot the destination already holds is skipped (default: every snapshot)
    #[command(after_long_help = help::COPY)]
    Copy {
        /// Snapshots to copy (default: all; see SNAP in `projectclone --help`)
        #[arg(value_name = "SNAP")]
        snaps: Vec<String>,
        /// The destination repository (any location: a folder, s3:…, sftp://…, rclone:…)
        #[arg(long, value_name = "LOCATION")]
        to: String,
        /// Read the destination's password from this file (or PROJECTCLONE_TO_PASSWORD)
        #[arg(long, value_name = "F")]
        to_password_file: Option<PathBuf>,
        /// The destination has no password (its key is stored in clear)
        #[arg(long)]
        to_insecure_no_password: bool,
        /// Report what would be copied; write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Sizes of the repository, or of one snapshot
    #[command(after_long_help = help::STATS)]
    Stats {
        /// This snapshot's sizes instead of the repository's (see SNAP in `projectclone --help`)
        snap: Option<String>,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Show the effective settings and where each came from, or trust a project's
    /// `.projectclone.toml`
    #[command(after_long_help = help::CONFIG)]
    Config {
        #[command(subcommand)]
        what: Option<ConfigCmd>,
    },
    /// The older Python tool's syntax, `projectclone NOTE [--archive] …` (main.rs routes
    /// it here; README "Coming from projectclone 4.x")
    #[command(name = "old-syntax", hide = true, override_usage = old_syntax::SYNOPSIS)]
    OldSyntax(old_syntax::OldArgs),
    /// The newest snapshot of each project (one host's set of paths) and its age
    #[command(after_long_help = help::STATUS)]
    Status,
    /// Back up a directory unattended: a systemd user timer, or a crontab line
    #[command(after_long_help = help::SCHEDULE)]
    Schedule {
        #[command(subcommand)]
        what: schedule::ScheduleCmd,
    },
    /// Print a shell completion script (bash, zsh, fish; also elvish, powershell)
    #[command(after_long_help = help::COMPLETIONS)]
    Completions {
        /// The shell to complete for
        #[arg(value_name = "SHELL")]
        shell: clap_complete::aot::Shell,
    },
    /// Print the manual page (roff) on stdout, or write one page per command into a folder
    #[command(after_long_help = help::MAN)]
    Man {
        /// Write projectclone.1 and one projectclone-COMMAND.1 per command into DIR instead
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Every setting's effective value and its source (the default)
    Show,
    /// Trust the `.projectclone.toml` of DIR (default: the nearest one above the current
    /// directory), so it may set `repo`, `password-command`, hooks and notifications
    Trust {
        /// The directory whose `.projectclone.toml` to trust (default: the nearest one)
        dir: Option<PathBuf>,
    },
    /// Stop trusting the `.projectclone.toml` of DIR
    Untrust {
        /// The directory whose `.projectclone.toml` to stop trusting (default: the nearest one)
        dir: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug, Default)]
struct KeepArgs {
    /// Keep the last N snapshots
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days that have one
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years that have one
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
    /// The rules given. One that keeps nothing (a count of 0, as a script with an empty
    /// variable produces, `--keep-within 0d`, `--keep-tag ""`) counts as not given, with a
    /// warning: it never means "keep nothing".
    fn rules(&self, cli: &Cli) -> Result<projectclone::prune::policy::KeepRules> {
        let mut rules = projectclone::prune::policy::KeepRules {
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
        };
        for flag in rules.drop_void_rules() {
            let given = match flag {
                "--keep-within" => format!("{flag} {}", self.keep_within.as_deref().unwrap_or("")),
                "--keep-tag" => format!("{flag} \"\""),
                _ => format!("{flag} 0"),
            };
            output::warn(
                cli,
                &format!(
                    "{given} counts as not given: a rule that keeps nothing never means \"keep \
                     nothing\" (to remove snapshots, name them or give rules that keep some)"
                ),
            );
        }
        Ok(rules)
    }
}

#[derive(Subcommand, Debug)]
enum RepairCmd {
    /// Rebuild the index cache and make the repository's index honest: drop lost packs,
    /// salvage damaged ones, index packs no delta lists, remove unreadable deltas
    Index {
        /// Print what would be done; write nothing to the repository (the local cache is
        /// rebuilt)
        #[arg(long)]
        dry_run: bool,
    },
    /// Rewrite snapshots whose data is partly lost, keeping what remains (tag `repaired`)
    Snapshots {
        /// Print what would be dropped; write nothing
        #[arg(long)]
        dry_run: bool,
        /// Remove the damaged originals once their repaired copies are written
        #[arg(long)]
        forget_originals: bool,
        /// Keep the damaged originals (the default; accepted for older scripts)
        #[arg(long, conflicts_with = "forget_originals", hide = true)]
        keep_original: bool,
        /// Remove snapshot objects that cannot be read at all (nothing in them can be restored)
        #[arg(long)]
        forget_unreadable: bool,
    },
}

#[derive(Subcommand, Debug)]
enum TrustCmd {
    /// Show what this client pinned (the default)
    Show,
    /// Trust the repository's current master key and config, replacing the pin: only after
    /// you re-created or restored the repository yourself
    Accept,
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
        /// Read the new password from this file (or PROJECTCLONE_NEW_PASSWORD, or a prompt)
        #[arg(long, value_name = "F")]
        new_password_file: Option<PathBuf>,
    },
    /// List key files
    List,
    /// Remove a key file (never the last one)
    Remove {
        /// The key file's id, or a unique prefix of it (as `key list` shows it)
        id: String,
    },
}

/// A password, zeroed when dropped.
type Password = Zeroizing<Vec<u8>>;

/// A password from the environment: the variable's bytes, zeroed when dropped (the copy
/// in the process's environment block stays).
fn password_from_env(var: &str) -> Option<Password> {
    projectclone::platform::env_bytes(var).map(Zeroizing::new)
}

/// Ask on the terminal (twice when `repeat` names the second question).
fn prompt(question: &str, repeat: Option<&str>) -> Result<Password> {
    let mut p = Zeroizing::new(rpassword::prompt_password(question)?);
    if let Some(again) = repeat {
        let p2 = Zeroizing::new(rpassword::prompt_password(again)?);
        if *p2 != *p {
            bail!("the passwords do not match");
        }
    }
    Ok(Zeroizing::new(std::mem::take(&mut *p).into_bytes()))
}

fn read_password_file(f: &Path) -> Result<Password> {
    Ok(projectclone::read_password_file(f)?)
}

/// The new password of `key add` and `key passwd`: never empty.
fn new_password(file: &Option<PathBuf>) -> Result<Password> {
    let (p, from) = if let Some(f) = file {
        (read_password_file(f)?, format!("in the file {}", f.display()))
    } else if let Some(p) = password_from_env("PROJECTCLONE_NEW_PASSWORD") {
        (p, "in PROJECTCLONE_NEW_PASSWORD".to_string())
    } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        (
            prompt("new password: ", Some("repeat the new password: "))?,
            "typed at the prompt".to_string(),
        )
    } else {
        bail!("no new password given: use --new-password-file F or PROJECTCLONE_NEW_PASSWORD")
    };
    if p.is_empty() {
        bail!("the new password {from} is empty: give a non-empty password; no key was added or changed");
    }
    Ok(p)
}

/// The error that ended the command, on stderr. Its control characters other than line
/// breaks are escaped: it may quote strings from the repository (see `output::text`).
/// The exit code of a failed command (README "Exit codes", as restic's): 2 a location string that
/// names no location (a usage error, as a bad flag value is), 10 no repository at the
/// location, 11 locked by another process, 12 wrong password; 1 for anything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            match e {
                Error::BadLocation(_) => return 2,
                Error::NotARepository(_) => return 10,
                Error::Locked(_) => return 11,
                Error::WrongPassword(_) => return 12,
                _ => {}
            }
        }
    }
    1
}

pub fn print_error(e: &anyhow::Error) {
    output::command_failed(e);
}

pub fn init_logging(cli: &Cli) {
    progress::set_json_status(cli.json_status);
    report::init(cli.quiet, cli.verbose, cli.log_json);
}

use config::{state_base, user_config_path};

/// The directory whose `.projectclone.toml` applies: the first path a backup names, else
/// the current directory.
fn project_dir(cli: &Cli) -> Option<PathBuf> {
    match &cli.command {
        Command::Backup { paths, .. } if !paths.is_empty() => {
            let p = &paths[0];
            Some(if p.is_dir() {
                p.clone()
            } else {
                p.parent().unwrap_or(Path::new(".")).to_path_buf()
            })
        }
        _ => std::env::current_dir().ok(),
    }
}

/// The config files of this run. `config` itself loads an untrusted project file's
/// trusted-only keys without failing (to show them); every other command refuses them.
fn load_config_files(cli: &Cli) -> Result<config::Files> {
    let strict = !matches!(cli.command, Command::Config { .. });
    let trusted = state_base().map(|d| config::TrustedDirs::new(&d));
    config::Files::load(
        user_config_path().as_deref(),
        cli.profile.as_deref(),
        project_dir(cli).as_deref(),
        trusted.as_ref(),
        strict,
    )
    .map_err(Into::into)
}

/// Run a password command (`sh -c`): its standard output, less one trailing newline, is
/// the password. It may ask on the terminal (stdin and stderr are the user's).
fn run_password_command(cmd: &str, from: &str) -> Result<Password> {
    projectclone::run_password_command(cmd).with_context(|| format!("the password command ({from}); nothing was done"))
}

struct Ctx {
    cli: Cli,
    /// The config files that apply.
    files: config::Files,
    /// The global options whose value came from the environment, not the command line.
    from_env: Vec<&'static str>,
    /// The cache directory in use, once decided: the configured one, or a temporary one.
    cache: RefCell<Option<PathBuf>>,
    /// A temporary cache (for a command that only reads, when the configured cache cannot
    /// be used); removed when the command ends.
    temp_cache: OnceCell<tempfile::TempDir>,
    /// A password typed at the prompt, so that opening again does not ask twice.
    typed: OnceCell<Password>,
    /// The snapshot a backup wrote, for hooks and notifications.
    snapshot_id: RefCell<Option<String>>,
    /// The command's figures, for notifications.
    stats: RefCell<Option<serde_json::Value>>,
    /// The next open syncs only the snapshot list ([`Ctx::open_snapshots_only`]).
    snapshots_only: std::cell::Cell<bool>,
}

/// Can this process keep its cache in `dir`? Creates it if missing. `Err` says why not.
fn probe_cache(dir: &Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => return Err("it is not a directory".into()),
        Ok(_) => {}
        // Missing, or below a file: the builder says which. Private: the cache holds host
        // names, paths, tags and notes in clear.
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("it cannot be created: {e}"))?,
    }
    let probe = dir.join(format!(".write-test-{:016x}", rand::random::<u64>()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("cannot write in it: {e}")),
    }
}

/// A duration from the environment variable `var` (`30s`, `500ms`, `2m`; a bare number is
/// seconds), `None` when unset.
fn duration_from_env(var: &str) -> Result<Option<std::time::Duration>> {
    let Ok(v) = std::env::var(var) else { return Ok(None) };
    let t = v.trim();
    let d = match t.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Some(std::time::Duration::from_secs_f64(secs)),
        Ok(_) => None,
        Err(_) => humantime::parse_duration(t).ok().filter(|d| !d.is_zero()),
    };
    d.map(Some)
        .ok_or_else(|| anyhow!("{var}={v:?}: not a duration above zero (write e.g. 30s, 500ms or 2m)"))
}

/// The error for a cache directory that cannot be used: what, where, and what to do.
fn cache_problem(dir: &Path, why: &str) -> String {
    format!(
        "cache directory {}: {why}. The index cache is kept there: make it a directory you can \
         write to, or choose another with --cache-dir D or PROJECTCLONE_CACHE_DIR (or cache-dir \
         in config.toml)",
        dir.display()
    )
}

/// Whether an error is about the cache (`cache`, or the SQLite database in it).
fn is_cache_error(e: &anyhow::Error, cache: &Path) -> bool {
    match e.downcast_ref::<Error>() {
        Some(Error::Index { .. }) => true,
        Some(Error::Io { path, .. }) => path.starts_with(cache),
        _ => false,
    }
}

impl Ctx {
    /// Where a global option's value came from: the command line or its variable.
    fn flag_source(&self, id: &'static str, var: &'static str) -> config::Source {
        if self.from_env.contains(&id) {
            config::Source::Env(var)
        } else {
            config::Source::Flag
        }
    }

    /// A path-like setting of the files, `~` and `$VAR` expanded.
    fn file_path(&self, s: &config::Setting<String>) -> Result<String> {
        config::expand(&s.value).map_err(|e| anyhow!("{}: {e}", s.source))
    }

    /// The repository location and whether it is the default one.
    fn repo_location(&self) -> Result<(Location, bool)> {
        if let Some(r) = &self.cli.repo {
            return Ok((Location::parse(r)?, false));
        }
        if let Some(s) = self.files.get(|l| l.repo.as_ref()) {
            let r = self.file_path(&s)?;
            let loc = Location::parse(&r).with_context(|| format!("repo of the {}", s.source))?;
            return Ok((loc, false));
        }
        let repo = config::default_repo().ok_or_else(|| anyhow!("cannot find the home directory; give --repo"))?;
        Ok((Location::Local(repo), true))
    }

    /// How the repository's store is reached: rate limits, storage class, endpoint,
    /// timeouts and retries.
    fn storage_options(&self) -> Result<StorageOptions> {
        let files = &self.files;
        Ok(StorageOptions {
            limit_upload: (self.cli.limit_upload)
                .or_else(|| files.get(|l| l.limit_upload.as_ref()).map(|s| s.value))
                .map(|k| k * 1024),
            limit_download: (self.cli.limit_download)
                .or_else(|| files.get(|l| l.limit_download.as_ref()).map(|s| s.value))
                .map(|k| k * 1024),
            storage_class: (self.cli.storage_class.clone())
                .or_else(|| files.get(|l| l.storage_class.as_ref()).map(|s| s.value)),
            aws_endpoint: std::env::var("AWS_ENDPOINT_URL_S3")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .ok()
                .filter(|e| !e.is_empty()),
            ssh_command: std::env::var("PROJECTCLONE_SSH_COMMAND")
                .map(|c| c.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
            timeout: duration_from_env("PROJECTCLONE_STORAGE_TIMEOUT")?,
            min_upload_rate: std::env::var("PROJECTCLONE_STORAGE_MIN_RATE")
                .ok()
                .map(|v| match v.trim().parse::<u64>() {
                    Ok(k) if k >= 1 => Ok(k * 1024),
                    _ => Err(anyhow!(
                        "PROJECTCLONE_STORAGE_MIN_RATE={v:?}: give the slowest upload rate that is not a stall, in KiB/s, \
                         1 or more (default 64)"
                    )),
                })
                .transpose()?,
            tries: std::env::var("PROJECTCLONE_STORAGE_TRIES")
                .ok()
                .map(|v| match v.trim().parse::<usize>() {
                    Ok(n) if n >= 1 => Ok(n),
                    _ => Err(anyhow!(
                        "PROJECTCLONE_STORAGE_TRIES={v:?}: give the number of tries per request, 1 or more (default 8)"
                    )),
                })
                .transpose()?,
            retry_delay: duration_from_env("PROJECTCLONE_STORAGE_RETRY_DELAY")?,
        })
    }

    /// The store at `loc` (behind the retrying layer); its counters are kept for the
    /// command's report.
    fn backend(&self, loc: &Location) -> Result<Arc<dyn projectclone::backend::Backend>> {
        let (b, stats) = loc.open(&self.storage_options()?)?;
        output::report_storage("storage", stats);
        Ok(b)
    }

    /// The configured cache directory (it may not exist, or not be usable: see `cache`).
    fn cache_dir(&self) -> Result<PathBuf> {
        if let Some(d) = self.cli.cache_dir.clone() {
            return Ok(d);
        }
        if let Some(s) = self.files.get(|l| l.cache_dir.as_ref()) {
            return Ok(PathBuf::from(self.file_path(&s)?));
        }
        let dirs =
            directories::BaseDirs::new().ok_or_else(|| anyhow!("cannot find the home directory; give --cache-dir"))?;
        Ok(dirs.cache_dir().join("projectclone"))
    }

    /// The cache directory this command uses. The configured one must be a directory this
    /// process can write in (it is created if missing). When it is not, a command that only
    /// reads uses a temporary one, removed when it ends, with a warning; any other fails
    /// with an error naming the directory and how to choose another.
    fn cache(&self) -> Result<PathBuf> {
        if let Some(c) = self.cache.borrow().clone() {
            return Ok(c);
        }
        let dir = self.cache_dir()?;
        let c = match probe_cache(&dir) {
            Ok(()) => dir,
            Err(why) => self.temporary_cache(&dir, &why)?,
        };
        *self.cache.borrow_mut() = Some(c.clone());
        Ok(c)
    }

    /// A temporary cache instead of `dir`, which cannot be used (`why`): only for a
    /// command that only reads.
    fn temporary_cache(&self, dir: &Path, why: &str) -> Result<PathBuf> {
        if !self.cli.reads_only() || self.temp_cache.get().is_some() {
            bail!(cache_problem(dir, why));
        }
        let t = tempfile::Builder::new()
            .prefix("projectclone-cache-")
            .tempdir()
            .with_context(|| {
                format!(
                    "{}; and no temporary cache could be made either",
                    cache_problem(dir, why)
                )
            })?;
        output::warn(
            &self.cli,
            &format!(
                "cache directory {} cannot be used ({why}); this command only reads, so it uses a \
                 temporary cache, removed when it ends. Set --cache-dir D or PROJECTCLONE_CACHE_DIR \
                 to a directory you can write to, to keep the cache",
                dir.display()
            ),
        );
        let p = t.path().to_path_buf();
        let _ = self.temp_cache.set(t);
        *self.cache.borrow_mut() = Some(p.clone());
        Ok(p)
    }

    /// The password from the configured sources, without prompting, and where it came from.
    /// In order: `--password-file` (or `PROJECTCLONE_PASSWORD_FILE`),
    /// `PROJECTCLONE_PASSWORD`, `PROJECTCLONE_PASSWORD_COMMAND`, then `password-file` or
    /// `password-command` of the config files.
    fn password_from_sources(&self) -> Result<Option<(Password, String)>> {
        if let Some(f) = &self.cli.password_file {
            return Ok(Some((read_password_file(f)?, format!("in the file {}", f.display()))));
        }
        if let Some(p) = password_from_env("PROJECTCLONE_PASSWORD") {
            return Ok(Some((p, "in PROJECTCLONE_PASSWORD".into())));
        }
        if let Ok(c) = std::env::var("PROJECTCLONE_PASSWORD_COMMAND") {
            let from = "environment PROJECTCLONE_PASSWORD_COMMAND".to_string();
            return Ok(Some((
                run_password_command(&c, &from)?,
                format!("from the command of {from}"),
            )));
        }
        match self.files.password() {
            Some(config::Setting {
                value: config::PasswordSource::File(f),
                source,
            }) => {
                let f = PathBuf::from(config::expand(&f).map_err(|e| anyhow!("{source}: {e}"))?);
                let p = read_password_file(&f).with_context(|| format!("password-file of the {source}"))?;
                Ok(Some((p, format!("in the file {} ({source})", f.display()))))
            }
            Some(config::Setting {
                value: config::PasswordSource::Command(c),
                source,
            }) => {
                let from = source.to_string();
                Ok(Some((
                    run_password_command(&c, &from)?,
                    format!("from the password-command of the {from}"),
                )))
            }
            None => Ok(None),
        }
    }

    fn password(&self, confirm: bool) -> Result<(Password, String)> {
        if let Some(p) = self.password_from_sources()? {
            return Ok(p);
        }
        if let Some(p) = self.typed.get() {
            return Ok((p.clone(), "typed at the prompt".into()));
        }
        if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            let p = prompt("repository password: ", confirm.then_some("repeat the password: "))?;
            let _ = self.typed.set(p.clone());
            return Ok((p, "typed at the prompt".into()));
        }
        bail!(
            "no password given and no terminal to ask on: use --password-file F, \
             PROJECTCLONE_PASSWORD_FILE, PROJECTCLONE_PASSWORD, PROJECTCLONE_PASSWORD_COMMAND, or \
             password-file or password-command in the config file (or --insecure-no-password for a \
             repository made without a password)"
        )
    }

    /// The password for a new repository: never empty (only `--insecure-no-password` makes
    /// a repository without one).
    fn new_repo_password(&self) -> Result<Password> {
        let (p, from) = self.password(true)?;
        if p.is_empty() {
            bail!(
                "the password {from} is empty: a repository needs a non-empty password \
                 (`init --insecure-no-password` stores the key in clear, for anyone with the \
                 files to read); nothing was created"
            );
        }
        Ok(p)
    }

    fn open(&self) -> Result<Repository> {
        let (loc, _) = self.repo_location()?;
        self.open_at(&loc)
    }

    /// [`open`](Self::open) for a command that reads only the snapshot list (`snapshots`,
    /// `status`): the blob index is not brought up to date, so a new client of a large
    /// remote repository does not download every index delta first.
    fn open_snapshots_only(&self) -> Result<Repository> {
        self.snapshots_only.set(true);
        let r = self.open();
        self.snapshots_only.set(false);
        r
    }

    /// Open the repository at `path` with the cache of `cache()`; if that cache fails while
    /// opening, a command that only reads goes on with a temporary one.
    fn open_at(&self, path: &Location) -> Result<Repository> {
        let cache = self.cache()?;
        match self.open_with(path, &cache) {
            Err(e) if is_cache_error(&e, &cache) && self.temp_cache.get().is_none() => {
                let tmp = self.temporary_cache(&cache, &format!("{e:#}"))?;
                self.open_with(path, &tmp)
            }
            r => r,
        }
    }

    /// Where this client remembers what it trusts about each repository:
    /// `$XDG_STATE_HOME/projectclone` (never the cache, which may be deleted at any time).
    fn state_dir(&self) -> Option<PathBuf> {
        let lost = "this client cannot remember what it trusts about repositories, so a replaced key or config, \
                    or a snapshot deleted behind its back, goes unnoticed in this run";
        let Some(dir) = directories::BaseDirs::new().and_then(|b| b.state_dir().map(|d| d.join("projectclone"))) else {
            output::warn(
                &self.cli,
                &format!("no state folder ($XDG_STATE_HOME or $HOME is unset): {lost}"),
            );
            return None;
        };
        let repos = dir.join("repos");
        let usable = projectclone::platform::create_private_dirs(&repos)
            .and_then(|()| rustix::fs::access(&repos, rustix::fs::Access::WRITE_OK).map_err(std::io::Error::from));
        if let Err(e) = usable {
            output::warn(
                &self.cli,
                &format!("state folder {}: {e}: {lost}; make it writable", dir.display()),
            );
            return None;
        }
        Some(dir)
    }

    fn open_with(&self, path: &Location, cache: &Path) -> Result<Repository> {
        self.open_repo(path, cache, false)
    }

    /// Open a repository checking it against this client's pin (`accept`: re-pin what
    /// opens now, for `trust accept`). A repository made without a password opens without
    /// one only when asked (`--insecure-no-password`) or when this client made or opened it
    /// so before; otherwise a password comes from its sources or a prompt.
    fn open_repo(&self, path: &Location, cache: &Path, accept: bool) -> Result<Repository> {
        let mut backend = self.backend(path)?;
        if self.append_only().is_some() {
            backend = Arc::new(projectclone::backend::append_only::AppendOnly::new(backend));
        }
        let opts = projectclone::repo::OpenOptions {
            cache_dir: cache.to_path_buf(),
            state_dir: self.state_dir(),
            insecure_no_password: self.cli.insecure_no_password,
            accept_changes: accept,
            snapshots_only: self.snapshots_only.get(),
        };
        let repo = if self.cli.insecure_no_password {
            Repository::open_with(backend, None, &opts)?
        } else {
            match self.password_from_sources()? {
                Some((p, _)) => Repository::open_with(backend, Some(&p), &opts)?,
                None => match Repository::open_with(backend.clone(), None, &opts) {
                    Ok(r) => r,
                    Err(Error::PasswordRequired(_)) => {
                        let p = self.password(false)?.0;
                        Repository::open_with(backend, Some(&p), &opts)?
                    }
                    Err(e) => return Err(e.into()),
                },
            }
        };
        for n in &repo.notices {
            output::note(&self.cli, n);
        }
        for a in &repo.alerts {
            output::alert(a);
        }
        Ok(repo)
    }

    /// Why this client opens repositories append-only, if it does: `--append-only`, or
    /// `append-only = true` in a config file (named).
    fn append_only(&self) -> Option<String> {
        if self.cli.append_only {
            return Some("--append-only".into());
        }
        self.files
            .get(|l| l.append_only.as_ref())
            .filter(|s| s.value)
            .map(|s| format!("append-only in {}", s.source))
    }

    /// Take a lock. When the repository refuses the lock's write (a read-only mount, a
    /// write-protected disk, another user's folder) a command that only reads goes on
    /// without one, with a warning; any other fails saying why it needs one.
    fn lock(&self, repo: &Repository, mode: LockMode, purpose: &str) -> Result<Option<lock::LockGuard>> {
        match lock::acquire(repo, mode, purpose) {
            Ok(g) => Ok(Some(g)),
            Err(e) if e.repository_read_only() && self.cli.reads_only() => {
                output::warn(
                    &self.cli,
                    &format!(
                        "no lock was taken because the repository {} is read-only ({e}); this command \
                         only reads it, so it goes on (a prune from another machine meanwhile could \
                         make it fail)",
                        repo.backend.location()
                    ),
                );
                Ok(None)
            }
            Err(e @ Error::LockNotWritten { .. }) => bail!(
                "{e}; this command writes to the repository and needs a lock there: make {} \
                 writable (is it on a read-only mount, a write-protected disk, or another user's \
                 folder?)",
                repo.backend.location()
            ),
            Err(e) => Err(e.into()),
        }
    }

    /// A shared lock (none for a dry run), then a re-sync: condemned marks written before
    /// the lock are visible from here on, since a prune waits only for locks older than its
    /// mark. Without a lock (a read-only repository) no prune waits for this command, so a
    /// re-sync would protect nothing.
    fn shared_lock(&self, repo: &mut Repository, dry_run: bool, purpose: &str) -> Result<Option<lock::LockGuard>> {
        if dry_run {
            return Ok(None);
        }
        let Some(guard) = self.lock(repo, LockMode::Shared, purpose)? else {
            return Ok(None);
        };
        repo.sync_index()?;
        Ok(Some(guard))
    }

    /// Refuse a restore or export target that is, contains or lies inside the repository
    /// or the cache directory.
    fn refuse_overlap(&self, what: &str, target: &Path) -> Result<()> {
        let (repo, _) = self.repo_location()?;
        let cache = self.cache_dir()?;
        let mut places = vec![("the cache directory", cache.as_path())];
        if let Some(r) = repo.local_path() {
            places.push(("the repository", r));
        }
        projectclone::target::refuse_overlap(what, target, &places)?;
        Ok(())
    }

    /// The `--keep-*` rules given, or else the `[retention]` of the config files (with a
    /// note naming where it came from).
    fn keep_rules(&self, keep: &KeepArgs) -> Result<projectclone::prune::policy::KeepRules> {
        let rules = keep.rules(&self.cli)?;
        if !rules.is_empty() {
            return Ok(rules);
        }
        let Some(s) = self.files.get(|l| l.retention.as_ref()) else {
            return Ok(rules);
        };
        let r = s.value;
        let rules = projectclone::prune::policy::KeepRules {
            last: r.keep_last,
            hourly: r.keep_hourly,
            daily: r.keep_daily,
            weekly: r.keep_weekly,
            monthly: r.keep_monthly,
            yearly: r.keep_yearly,
            tags: r.keep_tag,
            within: (r.keep_within.as_deref())
                .map(projectclone::prune::policy::parse_within)
                .transpose()
                .map_err(|e| anyhow!("{}: retention.keep-within: {e}", s.source))?,
        };
        if !rules.is_empty() {
            output::note(
                &self.cli,
                &format!("keeping snapshots by the [retention] of the {}", s.source),
            );
        }
        Ok(rules)
    }

    /// An error about the cache, met after it was chosen, gets the cache's advice.
    fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        let cache = self.cache.borrow().clone();
        match cache {
            Some(c) if self.temp_cache.get().is_none() && is_cache_error(&e, &c) => {
                anyhow!(cache_problem(&c, &format!("{e:#}")))
            }
            _ => e,
        }
    }
}

pub fn run(cli: Cli, matches: &clap::ArgMatches) -> Result<u8> {
    let from_env = ["repo", "password_file", "cache_dir", "profile"]
        .into_iter()
        .filter(|id| matches.value_source(id) == Some(clap::parser::ValueSource::EnvVariable))
        .collect();
    // Generated from the arguments alone: no config file, hook or repository.
    if let Some(res) = completions::run(&cli.command) {
        return res;
    }
    let files = load_config_files(&cli)?;
    let mut ctx = Ctx {
        cli,
        files,
        from_env,
        cache: RefCell::new(None),
        temp_cache: OnceCell::new(),
        typed: OnceCell::new(),
        snapshots_only: Default::default(),
        snapshot_id: RefCell::new(None),
        stats: RefCell::new(None),
    };
    let guided = interactive::prepare(&mut ctx)?;
    let around = ctx.around()?;
    around.start();
    let res = around
        .pre()
        .and_then(|()| run_command(&ctx).map_err(|e| ctx.explain(e)));
    output::storage_summary();
    if guided {
        interactive::finish(&ctx, &res);
    }
    let snapshot_id = ctx.snapshot_id.borrow().clone();
    let stats = ctx.stats.borrow().clone();
    let outcome = |res: &Result<u8>| hooks::Outcome {
        code: match res {
            Ok(c) => *c,
            Err(e) => exit_code(e),
        },
        error: res.as_ref().err().map(|e| format!("{e:#}")),
        snapshot_id: snapshot_id.as_deref(),
        stats: stats.as_ref(),
    };
    // The post hook when the work is done (a backup with unreadable files too).
    let res = match res {
        Ok(code) => {
            failure::printed();
            around.post(&outcome(&Ok(code))).map(|()| code)
        }
        Err(e) => Err(e),
    };
    let o = outcome(&res);
    if o.code != 0 {
        around.on_failure(&o);
    }
    around.send(&o);
    res
}

impl Ctx {
    /// The hooks and notifications of this run (none for `config` and with `--no-hooks`
    /// no hooks).
    fn around(&self) -> Result<hooks::Around> {
        let command = self.cli.command_name();
        let hooks = if self.cli.no_hooks || command == "config" {
            None
        } else {
            self.files.get(|l| l.hooks.as_ref()).map(|s| s.value)
        };
        let mut notify = if command == "config" {
            Vec::new()
        } else {
            self.files
                .get(|l| l.notify.as_ref())
                .map(|s| s.value)
                .unwrap_or_default()
        };
        for url in &self.cli.notify {
            let u = url::Url::parse(url).map_err(|e| anyhow!("--notify {url:?}: {e}"))?;
            if !matches!(u.scheme(), "http" | "https") {
                bail!("--notify {url:?}: must be an http:// or https:// URL");
            }
            notify.push(config::Notify {
                url: url.clone(),
                plugin: None,
                format: None,
                on: None,
                timeout: None,
                retries: None,
            });
        }
        let dir = project_dir(&self.cli).unwrap_or_else(|| PathBuf::from("/"));
        let repo = match self.repo_location() {
            Ok((l, _)) => l.display(),
            Err(_) => String::new(),
        };
        let host = match &self.cli.command {
            Command::Backup { host: Some(h), .. } => h.clone(),
            _ => (self.files.get(|l| l.host.as_ref()).map(|s| s.value)).unwrap_or_else(lock::hostname),
        };
        Ok(hooks::Around {
            command,
            hooks,
            notify,
            project: (self.files.get(|l| l.project.as_ref()).map(|s| s.value))
                .unwrap_or_else(|| hooks::project_name(&dir)),
            dir,
            repo,
            host,
            started: std::time::SystemTime::now(),
            quiet: self.cli.quiet,
        })
    }
}

fn run_command(ctx: &Ctx) -> Result<u8> {
    if let (Some(what), Some(why)) = (ctx.cli.deletes(), ctx.append_only()) {
        bail!(
            "{what} deletes from the repository, and this client opens it append-only ({why}): it backs up \
             and reads, and never deletes; nothing was changed. Run {what} from a client that may delete"
        );
    }
    run_cmd(ctx, &ctx.cli.command)
}

/// Run `command` with the settings of `ctx` (the older tool's syntax runs a `backup`
/// through here).
fn run_cmd(ctx: &Ctx, command: &Command) -> Result<u8> {
    let json = ctx.cli.json;
    match command {
        Command::Init {
            kdf_memory,
            kdf_time,
            weak_kdf,
            pack_size,
        } => {
            let insecure_no_password = &ctx.cli.insecure_no_password;
            let kdf = projectclone::crypto::KdfParams {
                m_cost: *kdf_memory,
                t_cost: *kdf_time,
                p_cost: projectclone::crypto::KdfParams::default().p_cost,
            };
            let default = projectclone::crypto::KdfParams::default();
            // (Without a password there is no derivation to weaken.)
            if kdf.weaker_than(&default) && !*weak_kdf && !*insecure_no_password {
                bail!(
                    "--kdf-memory {} --kdf-time {} is weaker than the default ({} KiB, {} passes): a \
                     weak key is cheaper to guess. Leave both out, or add --weak-kdf for a throwaway \
                     repository; nothing was created",
                    kdf.m_cost,
                    kdf.t_cost,
                    default.m_cost,
                    default.t_cost
                );
            }
            // Settings no open would accept are refused before anything is written.
            if !*insecure_no_password {
                kdf.check().map_err(|e| {
                    anyhow!(
                        "--kdf-memory {} --kdf-time {}: {e}; nothing was created",
                        kdf.m_cost,
                        kdf.t_cost
                    )
                })?;
            }
            let (path, _) = ctx.repo_location()?;
            // The cache first: nothing may be created before every check passed.
            let cache = ctx.cache()?;
            let pw = if *insecure_no_password {
                None
            } else {
                Some(ctx.new_repo_password()?)
            };
            let opts = InitOptions {
                kdf,
                pack_target: pack_size.map(|m| m * 1024 * 1024),
                state_dir: ctx.state_dir(),
                ..Default::default()
            };
            let repo = Repository::init(ctx.backend(&path)?, pw.as_ref().map(|p| p.as_slice()), &opts, &cache)?;
            output::init(json, &path.display(), repo.repo_id());
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
            stdin,
            stdin_name,
            exclude_caches,
            one_file_system,
            exclude_larger_than,
            interactive: _,
        } => {
            if *stdin {
                beyond::refuse_terminal_stdin()?;
            }
            let (path, is_default) = ctx.repo_location()?;
            let paths = if *stdin {
                Vec::new()
            } else if paths.is_empty() {
                vec![std::env::current_dir()?]
            } else {
                paths.clone()
            };
            let files = &ctx.files;
            let compression = match compression {
                Some(c) => *c,
                None => match files.get(|l| l.compression.as_ref()) {
                    // Checked when the file was read.
                    Some(s) => s.value.parse().map_err(|e: String| anyhow!("{}: {e}", s.source))?,
                    None => Compression::default(),
                },
            };
            let excludes = if excludes.is_empty() {
                files.get(|l| l.exclude.as_ref()).map(|s| s.value).unwrap_or_default()
            } else {
                excludes.clone()
            };
            let tags = if tags.is_empty() {
                files.get(|l| l.tags.as_ref()).map(|s| s.value).unwrap_or_default()
            } else {
                tags.clone()
            };
            let host = host.clone().or_else(|| files.get(|l| l.host.as_ref()).map(|s| s.value));
            for p in &paths {
                if std::fs::symlink_metadata(p).is_err() {
                    bail!("{}: no such file or directory; nothing was backed up", p.display());
                }
            }
            let exists = path.local_path().is_none_or(|p| p.join("config").exists());
            let mut _tmp = None;
            let mut repo = if is_default && !exists {
                let pw = ctx.new_repo_password()?;
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
                    // The cache first: nothing may be created before every check passed.
                    let cache = ctx.cache()?;
                    output::note(&ctx.cli, &format!("creating repository {}", path.display()));
                    Repository::init(
                        ctx.backend(&path)?,
                        Some(&pw),
                        &InitOptions {
                            state_dir: ctx.state_dir(),
                            ..Default::default()
                        },
                        &cache,
                    )?
                }
            } else {
                ctx.open_at(&path)?
            };
            let _lock = ctx.shared_lock(&mut repo, *dry_run, "backup")?;
            let mut skip = Vec::new();
            let in_use = ctx.cache.borrow().clone();
            for p in [path.local_path().map(Path::to_path_buf), Some(ctx.cache_dir()?), in_use]
                .into_iter()
                .flatten()
            {
                if let Ok(c) = std::fs::canonicalize(p) {
                    skip.push(c);
                }
            }
            let opts = BackupOptions {
                paths,
                tags,
                note: note.clone(),
                excludes,
                dry_run: *dry_run,
                compression,
                hostname: host.unwrap_or_else(lock::hostname),
                username: projectclone::whoami::username(),
                skip,
                time_override: None,
                paths_override: None,
                exclude_caches: false,
                one_file_system: false,
                exclude_larger_than: None,
            };
            let opts = beyond::with_rules(opts, files, *exclude_caches, *one_file_system, *exclude_larger_than)?;
            let progress = output::progress(&ctx.cli);
            let res = if *stdin {
                let name = stdin_name.as_deref().unwrap_or("stdin");
                let mut input = std::io::stdin().lock();
                projectclone::backup::backup_stdin(
                    &mut repo,
                    &opts,
                    name,
                    &mut input,
                    progress.as_ref(),
                    _lock.as_ref(),
                )?
            } else {
                backup(&mut repo, &opts, progress.as_ref(), _lock.as_ref())?
            };
            progress.finish();
            *ctx.snapshot_id.borrow_mut() = res.snapshot_id.map(|id| id.to_hex());
            *ctx.stats.borrow_mut() = serde_json::to_value(&res.summary).ok();
            output::backup(&ctx.cli, &res);
            Ok(if res.errors.is_empty() { 0 } else { 3 })
        }
        Command::Cat { snap, path, select } => beyond::cat(ctx, snap, path, select),
        Command::Dump { snap, path, select } => beyond::dump(ctx, snap, path.as_deref(), select),
        Command::Snapshots { select } => {
            let repo = ctx.open_snapshots_only()?;
            let sel = ctx.selection(select)?;
            let snaps: Vec<_> = repo.snapshots()?.into_iter().filter(|(_, s)| sel.matches(s)).collect();
            output::snapshots(json, &snaps, &sel.names);
            Ok(0)
        }
        Command::Status => {
            let repo = ctx.open_snapshots_only()?;
            let now = jiff::Timestamp::now();
            let now = projectclone::format::Time {
                secs: now.as_second(),
                nanos: now.subsec_nanosecond().max(0) as u32,
            };
            output::status(json, &projectclone::status::newest_per_project(&repo.snapshots()?, now));
            Ok(0)
        }
        Command::Completions { .. } | Command::Man { .. } => completions::run(command).unwrap_or(Ok(0)),
        Command::Schedule {
            what: schedule::ScheduleCmd::Suggest { dir, days },
        } => suggest_schedule(ctx, dir.as_deref(), *days),
        Command::Schedule { what } => {
            let report = match what {
                schedule::ScheduleCmd::Install(a) => {
                    let has_password = ctx.cli.password_file.is_some()
                        || ctx.cli.insecure_no_password
                        || ctx.files.password().is_some();
                    schedule::install(&ctx.cli, a, has_password, &|m| output::warn(&ctx.cli, m))?
                }
                schedule::ScheduleCmd::Remove { via, dry_run } => schedule::remove(*via, *dry_run)?,
                schedule::ScheduleCmd::Status => schedule::status()?,
                schedule::ScheduleCmd::Suggest { .. } => unreachable!("matched above"),
            };
            output::schedule(json, &report);
            Ok(0)
        }
        Command::Ls {
            snap,
            path,
            long,
            select,
        } => {
            let repo = ctx.open()?;
            let (_, s) = ctx.resolve(&repo, snap, select)?;
            if json && progress::json_status() {
                // The list goes inside the summary line: built whole.
                let entries = projectclone::inspect::ls(&repo, &s, path.as_deref())?;
                output::ls(json, *long, &entries);
            } else {
                output::ls_streamed(json, *long, |each| {
                    projectclone::inspect::ls_each(&repo, &s, path.as_deref(), each)
                })?;
            }
            Ok(0)
        }
        Command::Diff { a, b, select } => {
            let repo = ctx.open()?;
            let (_, sa) = ctx.resolve(&repo, a, select)?;
            let (_, sb) = ctx.resolve(&repo, b, select)?;
            output::diff(json, &projectclone::inspect::diff(&repo, &sa, &sb)?);
            Ok(0)
        }
        Command::Restore {
            snap,
            target,
            includes,
            verify,
            dry_run,
            select,
            interactive: _,
        } => {
            // clap requires both unless -i, whose answers fill them in; `--commit REV`
            // alone restores the newest snapshot taken at that commit.
            let latest = "latest".to_string();
            let snap = snap.as_ref().or((!select.commits.is_empty()).then_some(&latest));
            let (Some(snap), Some(target)) = (snap, target) else {
                bail!("restore needs SNAP and --target DIR (or -i to pick them on a terminal)");
            };
            ctx.refuse_overlap("restore target", target)?;
            let mut repo = ctx.open()?;
            let (id, s) = ctx.resolve(&repo, snap, select)?;
            let _lock = ctx.shared_lock(&mut repo, *dry_run, "restore")?;
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
            encrypt,
            recipients,
            recipients_files,
            encrypt_password_file,
            dry_run,
            select,
        } => {
            let flags = encrypt::Flags {
                encrypt: *encrypt,
                recipients,
                recipients_files,
                password_file: encrypt_password_file,
            };
            let archive = &archive.as_deref().map(|a| encrypt::archive_name(a, flags.wanted()));
            let encryption = flags.resolve(*dry_run)?;
            for t in [clone, archive, incremental].into_iter().flatten() {
                if t.as_os_str() != "-" {
                    ctx.refuse_overlap("export target", t)?;
                }
            }
            let mut repo = ctx.open()?;
            let (id, s) = ctx.resolve(&repo, snap, select)?;
            let _lock = ctx.shared_lock(&mut repo, *dry_run, "export")?;
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
                        export::archive_to_writer(&repo, &s, fmt, None, &mut std::io::sink(), true, progress.as_ref())?
                    } else {
                        export::archive_to_writer(
                            &repo,
                            &s,
                            fmt,
                            encryption.as_ref(),
                            &mut w,
                            false,
                            progress.as_ref(),
                        )?
                    };
                    std::io::Write::flush(&mut w).context("writing the archive to stdout")?;
                    res
                }
                _ => {
                    let view = match (clone, archive, incremental) {
                        (Some(d), _, _) => export::View::Clone { dir: d.clone() },
                        (_, Some(f), _) => export::View::Archive {
                            file: f.clone(),
                            format: match format.or_else(|| ArchiveFormat::from_path(&encrypt::inner_name(f))) {
                                Some(x) => x,
                                None => bail!(
                                    "{}: name the archive .tar, .tar.gz or .tar.zst{}, or give --format",
                                    f.display(),
                                    if flags.wanted() { " (then .age)" } else { "" }
                                ),
                            },
                            manifest: *manifest,
                            encryption,
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
            let guard = ctx.shared_lock(&mut repo, *dry_run, "import")?;
            let mut skip = Vec::new();
            for p in [
                ctx.repo_location()?.0.local_path().map(Path::to_path_buf),
                Some(ctx.cache_dir()?),
            ]
            .into_iter()
            .flatten()
            {
                if let Ok(c) = std::fs::canonicalize(p) {
                    skip.push(c);
                }
            }
            let opts = projectclone::import::ImportOptions {
                project: project.clone(),
                tags: tags.clone(),
                hostname: host.clone().unwrap_or_else(lock::hostname),
                username: projectclone::whoami::username(),
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
        Command::Verify { anchor } => verify(ctx, anchor.as_deref()),
        Command::Log { path, max_count } => git::log(ctx, path.as_deref(), *max_count),
        Command::Mount { dir, select } => {
            ctx.refuse_overlap("mount point", dir)?;
            let mut repo = ctx.open()?;
            let lock = ctx.shared_lock(&mut repo, false, "mount")?;
            let sel = ctx.selection(select)?;
            let snaps: Vec<_> = repo.snapshots()?.into_iter().filter(|(_, s)| sel.matches(s)).collect();
            let count = snaps.len();
            let names = sel.names.clone();
            let fs = mount::SnapshotFs::new(repo, snaps, move |s| projectclone::select::project_name(s, &names));
            output::mounted(ctx.cli.json, dir, count);
            mount::serve(fs, dir)?;
            drop(lock);
            Ok(0)
        }
        Command::Parity { what } => {
            let mut repo = ctx.open()?;
            match what {
                ParityCmd::Status => {
                    output::parity_status(json, &projectclone::parity::status(&repo)?);
                    Ok(0)
                }
                ParityCmd::Create { group, shards } => {
                    let _lock = ctx.shared_lock(&mut repo, false, "parity")?;
                    let r = projectclone::parity::create(&repo, *group, *shards)?;
                    output::parity_created(json, &r);
                    Ok(if r.damaged.is_empty() { 0 } else { 1 })
                }
                ParityCmd::Rebuild { dry_run } => {
                    let _lock = if *dry_run {
                        ctx.shared_lock(&mut repo, false, "parity")?
                    } else {
                        ctx.lock(&repo, LockMode::Exclusive, "parity")?
                    };
                    let r = projectclone::parity::rebuild(&repo, *dry_run)?;
                    output::parity_rebuilt(json, &r);
                    Ok(if r.unrecoverable.is_empty() { 0 } else { 1 })
                }
            }
        }
        Command::Watch {
            path,
            quiet_for,
            min_interval,
            max_interval,
            tags,
            no_initial,
        } => {
            let timing = watch::Timing {
                quiet_for: *quiet_for,
                min_interval: *min_interval,
                max_interval: *max_interval,
            };
            watch::watch(ctx, path.as_deref(), timing, tags, !*no_initial)
        }
        Command::Find { patterns, select } => {
            let repo = ctx.open()?;
            let sel = ctx.selection(select)?;
            let pats = projectclone::find::Patterns::new(patterns)?;
            let mut memo = projectclone::find::Memo::new();
            let mut found = Vec::new();
            for (id, s) in repo.snapshots()?.into_iter().filter(|(_, s)| sel.matches(s)) {
                let hits = projectclone::find::find(&repo, &s, &pats, &mut memo)?;
                found.push((id, s, hits));
            }
            output::found(json, &found);
            Ok(if found.iter().any(|f| !f.2.is_empty()) { 0 } else { 1 })
        }
        Command::GitHook { what } => match what {
            GitHookCmd::Install { path } => git::hook(ctx, true, path.as_deref()),
            GitHookCmd::Remove { path } => git::hook(ctx, false, path.as_deref()),
        },
        Command::Check {
            read_data,
            read_data_subset,
            read_data_within,
        } => {
            let mut repo = ctx.open()?;
            // Synced again after the lock: a prune that deleted packs between the open and
            // the lock must not look like damage.
            let _lock = ctx.shared_lock(&mut repo, false, "check")?;
            let subset = if *read_data {
                let (loc, _) = ctx.repo_location()?;
                if !matches!(loc, Location::Local(_)) {
                    let bytes: u64 = repo.index.packs()?.iter().map(|(_, s)| s).sum();
                    output::note(
                        &ctx.cli,
                        &format!(
                            "--read-data downloads every pack ({}) from {}; on metered storage, \
                             --read-data-subset 1/10 (or 10%) reads a tenth per run",
                            bytesize::ByteSize(bytes),
                            loc.display()
                        ),
                    );
                }
                Some(projectclone::check::Subset::All)
            } else if let Some(days) = read_data_within {
                Some(projectclone::check::Subset::Within(*days))
            } else {
                *read_data_subset
            };
            let progress = output::progress(&ctx.cli);
            let report = projectclone::check::check_with_progress(&repo, subset, progress.as_ref())?;
            progress.finish();
            output::check(json, &report);
            if !report.damaged_packs.is_empty()
                && let Ok(p) = projectclone::parity::status(&repo)
                && p.covered > 0
            {
                output::note(
                    &ctx.cli,
                    &format!(
                        "parity covers {} of {} pack(s): `projectclone parity rebuild` rebuilds the damaged ones it covers",
                        p.covered, p.packs
                    ),
                );
            }
            Ok(if report.ok() { 0 } else { 1 })
        }
        Command::Forget {
            vanished: true,
            dry_run,
            ..
        } => {
            let mut repo = ctx.open()?;
            // What this client saw vanish, and snapshots gone without a tombstone that the
            // chain records (which any client finds).
            let gone = match &repo.trust {
                Some(trust) => trust.vanished()?,
                None => Vec::new(),
            };
            let broken = repo.broken_links()?;
            if repo.trust.is_none() && broken.is_empty() {
                bail!("this client has no state folder, so it knows of no vanished snapshot");
            }
            let _lock = ctx.shared_lock(&mut repo, *dry_run, "forget")?;
            if !*dry_run {
                let host = lock::hostname();
                let now = projectclone::repo::now_unix_ns();
                for (id, tree, seen) in &gone {
                    repo.write_tombstone(&seen.tombstone(*id, *tree, now, &host))?;
                }
                for link in &broken {
                    if !gone.iter().any(|g| g.0 == link.missing) {
                        repo.write_tombstone(&projectclone::format::Tombstone::zeroed(
                            link.missing,
                            now,
                            &host,
                            "vanished",
                        ))?;
                    }
                }
                repo.sync_index()?;
            }
            output::forgot_vanished(json, *dry_run, &gone, &broken);
            Ok(0)
        }
        Command::Forget {
            snaps,
            keep,
            prune,
            dry_run,
            repack_threshold,
            vanished: false,
            select,
            group_by,
        } => {
            let mut repo = ctx.open()?;
            let mut ids = Vec::new();
            for s in snaps {
                ids.push(ctx.resolve(&repo, s, select)?.0);
            }
            let rules = if ids.is_empty() {
                ctx.keep_rules(keep)?
            } else {
                keep.rules(&ctx.cli)?
            };
            if ids.is_empty() && rules.is_empty() {
                bail!("forget needs snapshot ids, --keep-* rules, or [retention] in a config file");
            }
            let scope = ctx.prune_scope(select, *group_by, &rules, !ids.is_empty())?;
            run_prune(ctx, &mut repo, rules, ids, *prune, *dry_run, *repack_threshold, scope)
        }
        Command::Prune {
            keep,
            dry_run,
            repack_threshold,
            select,
            group_by,
        } => {
            let mut repo = ctx.open()?;
            let rules = ctx.keep_rules(keep)?;
            let scope = ctx.prune_scope(select, *group_by, &rules, false)?;
            run_prune(
                ctx,
                &mut repo,
                rules,
                Vec::new(),
                true,
                *dry_run,
                *repack_threshold,
                scope,
            )
        }
        Command::Repair {
            what: RepairCmd::Index { dry_run },
        } => {
            let mut repo = ctx.open()?;
            let _lock = ctx.lock(&repo, LockMode::Exclusive, "repair")?;
            let report = projectclone::repair::repair_index(&mut repo, *dry_run)?;
            output::repair_index(json, &report);
            Ok(
                if report.kept_unreadable.is_empty() && report.unreadable_packs.is_empty() {
                    0
                } else {
                    1
                },
            )
        }
        Command::Repair {
            what:
                RepairCmd::Snapshots {
                    dry_run,
                    forget_originals,
                    keep_original: _,
                    forget_unreadable,
                },
        } => {
            let mut repo = ctx.open()?;
            let _lock = ctx.lock(&repo, LockMode::Exclusive, "repair")?;
            let opts = projectclone::repair::RepairSnapshotsOptions {
                dry_run: *dry_run,
                forget_originals: *forget_originals,
                forget_unreadable: *forget_unreadable,
            };
            let report = projectclone::repair::repair_snapshots(&mut repo, opts)?;
            output::repair_snapshots(json, &report);
            Ok(0)
        }
        Command::Unlock { remove_all } => {
            let repo = ctx.open()?;
            if *remove_all {
                let removed = lock::remove_all(&repo)?;
                for s in removed.iter().filter(|s| !s.stale) {
                    tracing::warn!(
                        "removed a live lock: {} — if that process is still running, stop it: it no longer \
                         excludes a prune",
                        lock::describe(s)
                    );
                }
                output::unlock(json, removed.len(), true);
            } else {
                let removed = lock::remove_stale(&repo)?;
                output::unlock(json, removed, false);
            }
            Ok(0)
        }
        Command::Key { what } => {
            let repo = ctx.open()?;
            let _lock = ctx.lock(&repo, LockMode::Exclusive, "key")?;
            // A new key is at least as strong as the one that opened the repository and as
            // the default, parameter by parameter.
            let default = projectclone::crypto::KdfParams::default();
            let kdf = match what {
                KeyCmd::Add { .. } | KeyCmd::Passwd { .. } => repo
                    .list_keys()?
                    .into_iter()
                    .find(|(name, _, _)| *name == repo.key_name)
                    .and_then(|(_, _, kdf)| kdf)
                    .map_or(default, |current| current.at_least(&default)),
                _ => default,
            };
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
                    let keys = repo.list_keys()?;
                    let clear = |name: &str| keys.iter().any(|(n, _, kdf)| n == name && kdf.is_none());
                    // The password-less key of `init --insecure-no-password` may go once a key
                    // with a password exists: that is how such a repository gets a password.
                    let clear_current = clear(&repo.key_name) && keys.iter().any(|(_, _, kdf)| kdf.is_some());
                    if repo.key_name.starts_with(id.as_str()) && !clear_current {
                        bail!("key {id} is the one opening the repository now; use `key passwd` to replace it");
                    }
                    let name = repo.remove_key(id)?;
                    output::key_changed(json, "removed", &name);
                    if clear(&name) && !repo.list_keys()?.iter().any(|(_, _, kdf)| kdf.is_none()) {
                        output::note(
                            &ctx.cli,
                            "the repository has no password-less key left: from now on it opens only with a password",
                        );
                    }
                }
            }
            Ok(0)
        }
        Command::Copy {
            snaps,
            to,
            to_password_file,
            to_insecure_no_password,
            dry_run,
        } => {
            // The destination string first: a bad one fails before the source is touched.
            let dest = Location::parse(to)?;
            let mut src = ctx.open()?;
            let _src_lock = ctx.shared_lock(&mut src, *dry_run, "copy")?;
            let selected = if snaps.is_empty() {
                src.snapshots()?
            } else {
                let mut v = Vec::new();
                for s in snaps {
                    v.push(ctx.resolve(&src, s, &SelectArgs::default())?);
                }
                v.sort_by_key(|s| s.0);
                v.dedup_by_key(|s| s.0);
                v
            };
            let (backend, stats) = dest.open(&ctx.storage_options()?)?;
            output::report_storage("destination_storage", stats);
            let opts = projectclone::repo::OpenOptions {
                cache_dir: ctx.cache()?,
                state_dir: ctx.state_dir(),
                insecure_no_password: *to_insecure_no_password,
                accept_changes: false,
                snapshots_only: false,
            };
            let pw = if *to_insecure_no_password {
                None
            } else if let Some(f) = to_password_file {
                Some(read_password_file(f)?)
            } else if let Some(p) = password_from_env("PROJECTCLONE_TO_PASSWORD") {
                Some(p)
            } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
                Some(Zeroizing::new(
                    rpassword::prompt_password("destination repository password: ")?.into_bytes(),
                ))
            } else {
                bail!(
                    "no password for the destination {}: use --to-password-file F or PROJECTCLONE_TO_PASSWORD \
                     (or --to-insecure-no-password for a repository made without one)",
                    dest.display()
                );
            };
            let mut dst = Repository::open_with(backend, pw.as_ref().map(|p| p.as_slice()), &opts)?;
            for n in &dst.notices {
                output::note(&ctx.cli, n);
            }
            for a in &dst.alerts {
                output::alert(a);
            }
            let dst_lock = if *dry_run {
                None
            } else {
                Some(dst.lock(LockMode::Shared, "copy")?)
            };
            let progress = output::progress(&ctx.cli);
            let report = projectclone::copy::copy_with_progress(
                &src,
                &mut dst,
                &selected,
                *dry_run,
                dst_lock.as_ref(),
                progress.as_ref(),
            )?;
            progress.finish();
            output::copy(json, &report);
            Ok(0)
        }
        Command::Trust { what } => {
            let (path, _) = ctx.repo_location()?;
            let cache = ctx.cache()?;
            let accept = matches!(what, Some(TrustCmd::Accept));
            let repo = ctx.open_repo(&path, &cache, accept)?;
            let Some(trust) = &repo.trust else {
                bail!("this client has no state folder ($XDG_STATE_HOME or $HOME), so it pins nothing");
            };
            output::trust(json, &trust.pin()?, &trust.seen()?, trust.dir(), accept);
            Ok(0)
        }
        Command::Config { what } => run_config(ctx, what.as_ref().unwrap_or(&ConfigCmd::Show)),
        Command::OldSyntax(args) => old_syntax::run(ctx, args),
        Command::Stats { snap, select } => {
            let repo = ctx.open()?;
            match snap {
                Some(s) => {
                    let (id, s) = ctx.resolve(&repo, s, select)?;
                    output::snapshot_stats(json, &id, &projectclone::inspect::snapshot_stats(&repo, &s)?);
                }
                None => output::repo_stats(json, &projectclone::inspect::repo_stats(&repo)?),
            }
            Ok(0)
        }
    }
}

/// `config`, `config trust DIR`, `config untrust DIR`.
fn run_config(ctx: &Ctx, what: &ConfigCmd) -> Result<u8> {
    use config::Source;
    let files = &ctx.files;
    let (dir, trust) = match what {
        ConfigCmd::Show => {
            let mut rows: Vec<output::ConfigRow> = Vec::new();
            let mut row = |key: &str, value: serde_json::Value, source: Source| {
                rows.push(output::ConfigRow {
                    key: key.to_string(),
                    value,
                    source: source.to_string(),
                })
            };
            let (loc, _) = ctx.repo_location()?;
            let repo_source = if ctx.cli.repo.is_some() {
                ctx.flag_source("repo", "PROJECTCLONE_REPO")
            } else {
                files.get(|l| l.repo.as_ref()).map_or(Source::Default, |s| s.source)
            };
            row("repo", loc.display().into(), repo_source);
            let (password, source) = if let Some(f) = &ctx.cli.password_file {
                (
                    format!("file {}", f.display()),
                    ctx.flag_source("password_file", "PROJECTCLONE_PASSWORD_FILE"),
                )
            } else if std::env::var_os("PROJECTCLONE_PASSWORD").is_some() {
                ("the variable's value".into(), Source::Env("PROJECTCLONE_PASSWORD"))
            } else if let Ok(c) = std::env::var("PROJECTCLONE_PASSWORD_COMMAND") {
                (format!("command {c}"), Source::Env("PROJECTCLONE_PASSWORD_COMMAND"))
            } else {
                match files.password() {
                    Some(config::Setting {
                        value: config::PasswordSource::File(f),
                        source,
                    }) => (format!("file {f}"), source),
                    Some(config::Setting {
                        value: config::PasswordSource::Command(c),
                        source,
                    }) => (format!("command {c}"), source),
                    None => ("asked on the terminal".into(), Source::Default),
                }
            };
            row("password", password.into(), source);
            let cache_source = if ctx.cli.cache_dir.is_some() {
                ctx.flag_source("cache_dir", "PROJECTCLONE_CACHE_DIR")
            } else {
                files
                    .get(|l| l.cache_dir.as_ref())
                    .map_or(Source::Default, |s| s.source)
            };
            row("cache-dir", ctx.cache_dir()?.display().to_string().into(), cache_source);
            match files.get(|l| l.compression.as_ref()) {
                Some(s) => row("compression", s.value.into(), s.source),
                None => row(
                    "compression",
                    format!("zstd:{}", projectclone::compress::DEFAULT_ZSTD_LEVEL).into(),
                    Source::Default,
                ),
            }
            for (key, list) in [
                ("exclude", files.get(|l| l.exclude.as_ref())),
                ("tags", files.get(|l| l.tags.as_ref())),
            ] {
                match list {
                    Some(s) => row(key, s.value.into(), s.source),
                    None => row(key, serde_json::json!([]), Source::Default),
                }
            }
            beyond::config_rows(files, &mut row);
            old_syntax::config_rows(files, &mut row);
            match files.get(|l| l.host.as_ref()) {
                Some(s) => row("host", s.value.into(), s.source),
                None => row("host", lock::hostname().into(), Source::Default),
            }
            for (key, flag, file) in [
                (
                    "limit-upload",
                    ctx.cli.limit_upload,
                    files.get(|l| l.limit_upload.as_ref()),
                ),
                (
                    "limit-download",
                    ctx.cli.limit_download,
                    files.get(|l| l.limit_download.as_ref()),
                ),
            ] {
                match (flag, file) {
                    (Some(v), _) => row(key, v.into(), Source::Flag),
                    (None, Some(s)) => row(key, s.value.into(), s.source),
                    (None, None) => row(key, serde_json::Value::Null, Source::Default),
                }
            }
            match (&ctx.cli.storage_class, files.get(|l| l.storage_class.as_ref())) {
                (Some(v), _) => row("storage-class", v.clone().into(), Source::Flag),
                (None, Some(s)) => row("storage-class", s.value.into(), s.source),
                (None, None) => row("storage-class", serde_json::Value::Null, Source::Default),
            }
            match files.get(|l| l.retention.as_ref()) {
                Some(s) => row("retention", serde_json::to_value(&s.value)?, s.source),
                None => row("retention", serde_json::Value::Null, Source::Default),
            }
            match files.get(|l| l.project.as_ref()) {
                Some(s) => row("project", s.value.into(), s.source),
                None => row("project", serde_json::Value::Null, Source::Default),
            }
            match files.get(|l| l.group_by.as_ref()) {
                Some(s) => row("group-by", s.value.into(), s.source),
                None => row("group-by", "host,paths".into(), Source::Default),
            }
            match (ctx.cli.append_only, files.get(|l| l.append_only.as_ref())) {
                (true, _) => row("append-only", true.into(), Source::Flag),
                (false, Some(s)) => row("append-only", s.value.into(), s.source),
                (false, None) => row("append-only", false.into(), Source::Default),
            }
            let profile = ctx.cli.profile.as_ref().map(|p| {
                (
                    p.clone(),
                    ctx.flag_source("profile", "PROJECTCLONE_PROFILE").to_string(),
                )
            });
            let report = output::ConfigReport {
                user_file: user_config_path().filter(|p| p.is_file()),
                profile,
                project_file: files.project.as_ref().map(|p| p.path.clone()),
                project_trusted: files.project_trusted,
                untrusted_keys: files.untrusted.iter().map(|(k, line)| (k.to_string(), *line)).collect(),
                settings: rows,
            };
            output::config(ctx.cli.json, &report);
            return Ok(0);
        }
        ConfigCmd::Trust { dir } => (dir, true),
        ConfigCmd::Untrust { dir } => (dir, false),
    };
    // The directory holding the project file: DIR, or the one whose file applies here.
    let dir = match (dir, &files.project) {
        (Some(d), _) => d.clone(),
        (None, Some(p)) => p.path.parent().unwrap_or(Path::new("/")).to_path_buf(),
        (None, None) => bail!(
            "no {} here or in any directory above: name the directory, `config trust DIR`",
            config::PROJECT_FILE
        ),
    };
    if trust && !dir.join(config::PROJECT_FILE).is_file() {
        bail!(
            "{} has no {}: trust the directory that holds the file",
            dir.display(),
            config::PROJECT_FILE
        );
    }
    let state = state_base().ok_or_else(|| anyhow!("no state folder ($XDG_STATE_HOME or $HOME is unset)"))?;
    let canonical = config::TrustedDirs::new(&state).set(&dir, trust)?;
    output::config_trust(ctx.cli.json, &canonical, trust);
    Ok(0)
}

#[allow(clippy::too_many_arguments)]
fn run_prune(
    ctx: &Ctx,
    repo: &mut Repository,
    rules: projectclone::prune::policy::KeepRules,
    forget: Vec<projectclone::id::SnapshotId>,
    gc: bool,
    dry_run: bool,
    repack_threshold: f64,
    scope: projectclone::prune::Scope,
) -> Result<u8> {
    if !(0.0..=1.0).contains(&repack_threshold) {
        bail!("--repack-threshold {repack_threshold}: give a fraction between 0 and 1");
    }
    let guard = ctx.shared_lock(repo, dry_run, "prune")?;
    let opts = projectclone::prune::PruneOptions {
        rules,
        forget,
        gc,
        dry_run,
        repack_threshold,
        tz: jiff::tz::TimeZone::system(),
        hostname: lock::hostname(),
        own_lock: guard.as_ref().map(|g| g.object_id()),
        scope,
    };
    let progress = output::progress(&ctx.cli);
    let plan = projectclone::prune::run_with_progress(repo, &opts, guard.as_ref(), progress.as_ref())?;
    progress.finish();
    output::prune(&ctx.cli, &plan);
    Ok(0)
}

/// `verify`: the parents snapshots name, the snapshots this client saw, and with an anchor
/// every snapshot present or forgotten when it was made (format-spec §18, "Anchors").
fn verify(ctx: &Ctx, anchor: Option<&Path>) -> Result<u8> {
    use projectclone::verify::{Anchor, State};
    let repo = ctx.open()?;
    let state = State::of(&repo)?;
    let mut errors: Vec<String> = repo.alerts.iter().map(|a| a.to_string()).collect();
    for d in repo.damaged.iter().filter(|d| d.what == "snapshot") {
        errors.push(format!("unreadable {d}"));
    }
    for link in repo.broken_links()? {
        errors.push(projectclone::check::broken_link(&link));
    }
    let now = Anchor::of(
        &state,
        &jiff::ZonedDateTime::now().strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
    );
    let mut report = output::VerifyReport {
        snapshots: state.present.len(),
        forgotten: state.forgotten.len(),
        digest: now.digest(),
        anchor: None,
        errors,
    };
    if let Some(file) = anchor {
        let what = file.display().to_string();
        let before = match std::fs::read_to_string(file) {
            Ok(text) => Some(Anchor::parse(&text, &what)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => bail!("anchor {what}: {e}"),
        };
        if let Some(a) = &before
            && a.repo_id != state.repo_id
        {
            bail!(
                "anchor {what} belongs to repository {}, not to {}: give the anchor of this repository",
                &hex::encode(a.repo_id)[..8],
                &hex::encode(state.repo_id)[..8]
            );
        }
        let breaks = before.as_ref().map(|a| a.breaks(&state)).unwrap_or_default();
        let updated = breaks.is_empty() && report.errors.is_empty();
        if updated {
            write_file_atomically(file, now.render().as_bytes())
                .with_context(|| format!("anchor {what}: cannot write it"))?;
        }
        report.anchor = Some(output::AnchorReport {
            path: what,
            made: before.as_ref().map(|a| a.made.clone()),
            checked: before.as_ref().map_or(0, |a| a.present.len() + a.forgotten.len()),
            updated,
        });
        report.errors.extend(breaks);
    }
    output::verify(&ctx.cli, &report);
    Ok(if report.errors.is_empty() { 0 } else { 1 })
}

/// `schedule suggest`: the project's changes (git commits in its folder, else its files'
/// modification times) and its snapshots, then the heuristic of `projectclone::suggest`.
fn suggest_schedule(ctx: &Ctx, dir: Option<&Path>, days: u32) -> Result<u8> {
    let dir = match dir {
        Some(d) => std::fs::canonicalize(d).with_context(|| format!("{}", d.display()))?,
        None => std::env::current_dir()?,
    };
    let now = projectclone::repo::now_unix_ns() / 1_000_000_000;
    let since = now - i64::from(days) * 86_400;
    let from_git = projectclone::git::work_tree_of(&dir)
        .and_then(|_| projectclone::git::run(&dir, &["log", &format!("--since={since}"), "--format=%ct", "--", "."]));
    let (source, changes) = match from_git {
        Some(text) => (
            "git commits",
            text.lines().filter_map(|l| l.trim().parse().ok()).collect(),
        ),
        None => ("file modification times", file_mtimes(&dir, since)),
    };
    let recorded = std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()).to_vec();
    let repo = ctx.open_snapshots_only()?;
    let snapshots: Vec<i64> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| s.paths.contains(&recorded))
        .map(|(_, s)| s.time.secs)
        .collect();
    let utc_offset = jiff::ZonedDateTime::now().offset().seconds();
    let s = projectclone::suggest::suggest(&projectclone::suggest::History {
        changes,
        snapshots,
        utc_offset,
        now,
        days,
    });
    output::suggestion(ctx.cli.json, &dir, source, days, utc_offset, &s);
    Ok(0)
}

/// Modification times (Unix seconds) since `since` of the regular files below `dir`,
/// `.git` left out; at most 200 000 files are looked at.
fn file_mtimes(dir: &Path, since: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            seen += 1;
            if seen > 200_000 {
                return out;
            }
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                if e.file_name() != ".git" {
                    todo.push(e.path());
                }
            } else if t.is_file()
                && let Ok(m) = e.metadata()
            {
                use std::os::unix::fs::MetadataExt;
                if m.mtime() >= since {
                    out.push(m.mtime());
                }
            }
        }
    }
    out
}

/// `--read-data-within`: days, as `30` or `30d` (1 to 3650).
fn parse_days(s: &str) -> std::result::Result<u32, String> {
    let n: u32 = s
        .strip_suffix('d')
        .unwrap_or(s)
        .parse()
        .map_err(|_| format!("{s:?}: give a number of days, such as 30 or 30d"))?;
    if !(1..=3650).contains(&n) {
        return Err(format!("{s:?}: between 1 and 3650 days"));
    }
    Ok(n)
}

/// Write `bytes` to `path` through a temporary file beside it and a rename, so a reader (or
/// a crash) sees the old contents or the new, never half.
pub(crate) fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
