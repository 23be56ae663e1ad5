//! The stable surface: see [`Repository`].

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::format::Snapshot;
use crate::id::SnapshotId;
use crate::location::{Location, StorageOptions};
use crate::lock::{self, LockGuard, LockMode};
use crate::progress::Progress;
use crate::repo;

/// Where the repository's password comes from.
#[derive(Clone)]
#[non_exhaustive]
pub enum Credentials {
    /// This password.
    Password(Zeroizing<Vec<u8>>),
    /// The contents of this file, less one trailing line break (`\n` or `\r\n`).
    PasswordFile(PathBuf),
    /// The standard output of this shell command (`sh -c`), less one trailing line break.
    PasswordCommand(String),
    /// The program's environment: `PROJECTCLONE_PASSWORD_FILE`, else
    /// `PROJECTCLONE_PASSWORD`, else `PROJECTCLONE_PASSWORD_COMMAND`.
    Environment,
    /// No password: the repository's key is stored in clear, so anyone who can read the
    /// repository can read the backups. Only for a repository made so on purpose.
    InsecureNoPassword,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password(_) => f.write_str("Password(..)"),
            Credentials::PasswordFile(p) => f.debug_tuple("PasswordFile").field(p).finish(),
            Credentials::PasswordCommand(c) => f.debug_tuple("PasswordCommand").field(c).finish(),
            Credentials::Environment => f.write_str("Environment"),
            Credentials::InsecureNoPassword => f.write_str("InsecureNoPassword"),
        }
    }
}

impl Credentials {
    /// A password given as a string or bytes.
    ///
    /// ```
    /// let c = projectclone::Credentials::password("correct horse");
    /// assert_eq!(format!("{c:?}"), "Password(..)");
    /// ```
    pub fn password(p: impl AsRef<[u8]>) -> Credentials {
        Credentials::Password(Zeroizing::new(p.as_ref().to_vec()))
    }

    /// The password, or `None` for [`Credentials::InsecureNoPassword`].
    fn resolve(&self) -> Result<Option<Zeroizing<Vec<u8>>>> {
        match self {
            Credentials::Password(p) => Ok(Some(p.clone())),
            Credentials::PasswordFile(f) => read_password_file(f).map(Some),
            Credentials::PasswordCommand(c) => run_password_command(c).map(Some),
            Credentials::InsecureNoPassword => Ok(None),
            Credentials::Environment => {
                if let Some(f) = std::env::var_os("PROJECTCLONE_PASSWORD_FILE") {
                    return read_password_file(Path::new(&f)).map(Some);
                }
                if let Some(p) = crate::platform::env_bytes("PROJECTCLONE_PASSWORD") {
                    return Ok(Some(Zeroizing::new(p)));
                }
                if let Ok(c) = std::env::var("PROJECTCLONE_PASSWORD_COMMAND") {
                    return run_password_command(&c).map(Some);
                }
                Err(Error::PasswordRequired(
                    "the repository (none of PROJECTCLONE_PASSWORD_FILE, PROJECTCLONE_PASSWORD and \
                     PROJECTCLONE_PASSWORD_COMMAND is set)"
                        .into(),
                ))
            }
        }
    }
}

/// A password file's contents, less one trailing `\n` or `\r\n` (what an editor or `echo`
/// adds). Read into one buffer large enough for any password, so that growing it never
/// leaves a copy behind.
///
/// ```
/// # let tmp = tempfile::tempdir()?;
/// let f = tmp.path().join("pw");
/// std::fs::write(&f, "s3cret\r\n")?;
/// assert_eq!(&projectclone::read_password_file(&f)?[..], b"s3cret");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_password_file(f: &Path) -> Result<Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let mut b = Zeroizing::new(Vec::with_capacity(4096));
    std::fs::File::open(f)
        .and_then(|mut file| file.read_to_end(&mut b))
        .map_err(|e| Error::io(format!("password file {}", f.display()), e))?;
    if b.ends_with(b"\r\n") {
        let n = b.len() - 2;
        b.truncate(n);
    } else if b.ends_with(b"\n") {
        let n = b.len() - 1;
        b.truncate(n);
    }
    Ok(b)
}

/// The standard output of a shell command (`sh -c CMD`), less one trailing `\n` or
/// `\r\n`: a password from a password manager. A command that fails is an error.
///
/// ```
/// assert_eq!(&projectclone::run_password_command("echo s3cret")?[..], b"s3cret");
/// assert!(projectclone::run_password_command("exit 3").is_err());
/// # Ok::<(), projectclone::Error>(())
/// ```
pub fn run_password_command(cmd: &str) -> Result<Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("password command {cmd:?}"), e))?;
    let mut out = Zeroizing::new(Vec::with_capacity(256));
    let read = child.stdout.take().map(|mut o| o.read_to_end(&mut out));
    let status = child
        .wait()
        .map_err(|e| Error::io(format!("password command {cmd:?}"), e))?;
    if let Some(Err(e)) = read {
        return Err(Error::io(format!("password command {cmd:?}: its output"), e));
    }
    if !status.success() {
        return Err(Error::Invalid(format!(
            "password command {cmd:?} failed ({status}): fix it or give the password another way"
        )));
    }
    if out.ends_with(b"\n") {
        out.pop();
        if out.ends_with(b"\r") {
            out.pop();
        }
    }
    Ok(out)
}

/// How to open a repository. The defaults are the program's: the cache in
/// `PROJECTCLONE_CACHE_DIR` or `$XDG_CACHE_HOME/projectclone`, and what this client trusts
/// pinned in `$XDG_STATE_HOME/projectclone`, so a script and the program share both.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct OpenOptions {
    cache_dir: Option<PathBuf>,
    state_dir: Option<Option<PathBuf>>,
    storage: StorageOptions,
    append_only: bool,
}

impl OpenOptions {
    /// The defaults.
    ///
    /// ```
    /// let o = projectclone::OpenOptions::new().cache_dir("/var/cache/backups");
    /// # let _ = o;
    /// ```
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }

    /// Keep the index cache here (a folder per repository below it).
    ///
    /// ```
    /// let o = projectclone::OpenOptions::new().cache_dir("/var/cache/backups");
    /// # let _ = o;
    /// ```
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> OpenOptions {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Pin what this client trusts about repositories (their keys and config, the snapshots
    /// it saw) in this folder instead of `$XDG_STATE_HOME/projectclone`.
    ///
    /// ```
    /// let o = projectclone::OpenOptions::new().state_dir("/var/lib/backups/state");
    /// # let _ = o;
    /// ```
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> OpenOptions {
        self.state_dir = Some(Some(dir.into()));
        self
    }

    /// Pin nothing: a replaced key or config, or a snapshot deleted behind this client's
    /// back, goes unnoticed. For tools that work on a copy of a repository.
    ///
    /// ```
    /// let o = projectclone::OpenOptions::new().without_state();
    /// # let _ = o;
    /// ```
    pub fn without_state(mut self) -> OpenOptions {
        self.state_dir = Some(None);
        self
    }

    /// Requests to remote storage: give up on one after this long (default 5 minutes).
    ///
    /// ```
    /// let o = projectclone::OpenOptions::new().storage_timeout(std::time::Duration::from_secs(60));
    /// # let _ = o;
    /// ```
    pub fn storage_timeout(mut self, t: std::time::Duration) -> OpenOptions {
        self.storage.timeout = Some(t);
        self
    }

    /// Back up and read, never delete: [`Repository::prune`] refuses (but for a dry run),
    /// and nothing but lock files is ever deleted from the store, as the program's
    /// `append-only` setting does. Pair it with storage that enforces it (README,
    /// "Append-only repositories").
    ///
    /// ```
    /// let o = projectclone::OpenOptions::new().append_only(true);
    /// # let _ = o;
    /// ```
    pub fn append_only(mut self, on: bool) -> OpenOptions {
        self.append_only = on;
        self
    }

    /// Whether [`append_only`](Self::append_only) is on.
    #[cfg(test)]
    pub(crate) fn append_only_set(&self) -> bool {
        self.append_only
    }

    /// The store at `loc`, append-only when asked.
    fn backend(&self, loc: &Location) -> Result<std::sync::Arc<dyn crate::backend::Backend>> {
        let (backend, _) = loc.open(&self.storage())?;
        Ok(if self.append_only {
            std::sync::Arc::new(crate::backend::append_only::AppendOnly::new(backend))
        } else {
            backend
        })
    }

    /// The storage options, with the environment's S3 endpoint and ssh command as the
    /// program takes them (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`,
    /// `PROJECTCLONE_SSH_COMMAND`).
    fn storage(&self) -> StorageOptions {
        let mut s = self.storage.clone();
        if s.aws_endpoint.is_none() {
            s.aws_endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .ok()
                .filter(|e| !e.is_empty());
        }
        if s.ssh_command.is_empty() {
            s.ssh_command = std::env::var("PROJECTCLONE_SSH_COMMAND")
                .map(|c| c.split_whitespace().map(String::from).collect())
                .unwrap_or_default();
        }
        s
    }

    fn cache(&self) -> Result<PathBuf> {
        if let Some(d) = &self.cache_dir {
            return Ok(d.clone());
        }
        if let Some(d) = std::env::var_os("PROJECTCLONE_CACHE_DIR") {
            return Ok(PathBuf::from(d));
        }
        directories::BaseDirs::new()
            .map(|b| b.cache_dir().join("projectclone"))
            .ok_or_else(|| Error::Invalid("cannot find the home directory for the cache: give a cache folder".into()))
    }

    fn state(&self) -> Option<PathBuf> {
        if let Some(s) = &self.state_dir {
            return s.clone();
        }
        let dir = directories::BaseDirs::new().and_then(|b| b.state_dir().map(|d| d.join("projectclone")))?;
        crate::platform::create_private_dirs(&dir.join("repos")).ok()?;
        Some(dir)
    }
}

/// How to create a repository: [`OpenOptions`] and the key derivation's cost.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct InitOptions {
    open: OpenOptions,
    kdf: crate::crypto::KdfParams,
}

impl Default for InitOptions {
    fn default() -> InitOptions {
        InitOptions {
            open: OpenOptions::default(),
            kdf: repo::InitOptions::default().kdf,
        }
    }
}

impl InitOptions {
    /// The defaults: Argon2id with 64 MiB and 3 passes.
    ///
    /// ```
    /// let o = projectclone::InitOptions::new();
    /// # let _ = o;
    /// ```
    pub fn new() -> InitOptions {
        InitOptions::default()
    }

    /// Argon2id with `memory_kib` KiB and `passes` passes (one lane): less than the
    /// default makes a guessed password cheaper to try; for tests and small machines.
    ///
    /// ```
    /// let o = projectclone::InitOptions::new().kdf(1024, 1);
    /// # let _ = o;
    /// ```
    pub fn kdf(mut self, memory_kib: u32, passes: u32) -> InitOptions {
        self.kdf = crate::crypto::KdfParams {
            m_cost: memory_kib,
            t_cost: passes,
            p_cost: 1,
        };
        self
    }

    /// Open the new repository with these options.
    ///
    /// ```
    /// let o = projectclone::InitOptions::new().open_options(projectclone::OpenOptions::new());
    /// # let _ = o;
    /// ```
    pub fn open_options(mut self, open: OpenOptions) -> InitOptions {
        self.open = open;
        self
    }
}

/// One snapshot, as [`Repository::snapshots`] lists it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Its id.
    pub id: SnapshotId,
    /// When it was taken: seconds and nanoseconds since the Unix epoch.
    pub time: (i64, u32),
    /// The time as RFC 3339 in the zone it was taken in.
    pub time_text: String,
    /// The host it was taken on.
    pub hostname: String,
    /// The user who took it.
    pub username: String,
    /// The paths it backed up (raw bytes as in the file system).
    pub paths: Vec<Vec<u8>>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its note.
    pub note: Option<String>,
    /// The snapshot it was compared with to skip unchanged files.
    pub parent: Option<SnapshotId>,
    /// The git commit checked out in the backed-up work tree (hex), if it was one.
    pub git_commit: Option<String>,
    /// The branch checked out then (`None` when detached, or not a work tree).
    pub git_branch: Option<String>,
    /// Whether the work tree had changes not in that commit (`None`: not known).
    pub git_dirty: Option<bool>,
}

impl SnapshotInfo {
    fn new(id: SnapshotId, s: &Snapshot) -> SnapshotInfo {
        SnapshotInfo {
            id,
            time: (s.time.secs, s.time.nanos),
            time_text: crate::format_time(&s.time, s.utc_offset),
            hostname: s.hostname.clone(),
            username: s.username.clone(),
            paths: s.paths.clone(),
            tags: s.tags.clone(),
            note: s.note.clone(),
            parent: s.parent,
            git_commit: s.git.as_ref().map(|g| g.commit.clone()),
            git_branch: s.git.as_ref().and_then(|g| g.branch.clone()),
            git_dirty: s.git.as_ref().and_then(|g| g.dirty),
        }
    }
}

/// What to back up, and how.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BackupOptions {
    paths: Vec<PathBuf>,
    tags: Vec<String>,
    note: Option<String>,
    excludes: Vec<String>,
    hostname: Option<String>,
    dry_run: bool,
    exclude_caches: bool,
    one_file_system: bool,
    exclude_larger_than: Option<u64>,
}

impl BackupOptions {
    /// Back up these paths (files or directories) into one snapshot.
    ///
    /// ```
    /// let o = projectclone::BackupOptions::new(["/srv/project"]).tag("nightly").exclude("target/");
    /// # let _ = o;
    /// ```
    pub fn new<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> BackupOptions {
        BackupOptions {
            paths: paths.into_iter().map(|p| p.as_ref().to_path_buf()).collect(),
            tags: Vec::new(),
            note: None,
            excludes: Vec::new(),
            hostname: None,
            dry_run: false,
            exclude_caches: false,
            one_file_system: false,
            exclude_larger_than: None,
        }
    }

    /// Of a folder holding a valid `CACHEDIR.TAG`, keep only the tag.
    ///
    /// ```
    /// let o = projectclone::BackupOptions::new(["/srv/p"]).exclude_caches(true);
    /// # let _ = o;
    /// ```
    pub fn exclude_caches(mut self, on: bool) -> BackupOptions {
        self.exclude_caches = on;
        self
    }

    /// Stay on the file system of each path: folders on another one are kept empty.
    ///
    /// ```
    /// let o = projectclone::BackupOptions::new(["/srv/p"]).one_file_system(true);
    /// # let _ = o;
    /// ```
    pub fn one_file_system(mut self, on: bool) -> BackupOptions {
        self.one_file_system = on;
        self
    }

    /// Leave out files of more than this many bytes.
    ///
    /// ```
    /// let o = projectclone::BackupOptions::new(["/srv/p"]).exclude_larger_than(100 << 20);
    /// # let _ = o;
    /// ```
    pub fn exclude_larger_than(mut self, bytes: u64) -> BackupOptions {
        self.exclude_larger_than = Some(bytes);
        self
    }

    /// Add a tag.
    ///
    /// ```
    /// let o = projectclone::BackupOptions::new(["/srv/p"]).tag("nightly").tag("before-upgrade");
    /// # let _ = o;
    /// ```
    pub fn tag(mut self, t: impl Into<String>) -> BackupOptions {
        self.tags.push(t.into());
        self
    }

    /// A note kept with the snapshot.
    ///
    /// ```
    /// let o = projectclone::BackupOptions::new(["/srv/p"]).note("before the refactor");
    /// # let _ = o;
    /// ```
    pub fn note(mut self, n: impl Into<String>) -> BackupOptions {
        self.note = Some(n.into());
        self
    }

    /// Leave out what this gitignore-style pattern matches (relative to each path).
    ///
    /// ```
    /// let o = projectclone::BackupOptions::new(["/srv/p"]).exclude("target/").exclude("*.tmp");
    /// # let _ = o;
    /// ```
    pub fn exclude(mut self, glob: impl Into<String>) -> BackupOptions {
        self.excludes.push(glob.into());
        self
    }

    /// Record this host name instead of this machine's.
    ///
    /// ```
    /// let o = projectclone::BackupOptions::new(["/srv/p"]).hostname("build-server");
    /// # let _ = o;
    /// ```
    pub fn hostname(mut self, h: impl Into<String>) -> BackupOptions {
        self.hostname = Some(h.into());
        self
    }

    /// Read and count everything, write nothing.
    ///
    /// ```
    /// let o = projectclone::BackupOptions::new(["/srv/p"]).dry_run(true);
    /// # let _ = o;
    /// ```
    pub fn dry_run(mut self, on: bool) -> BackupOptions {
        self.dry_run = on;
        self
    }
}

/// What a backup did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BackupOutcome {
    /// The new snapshot; `None` for a dry run.
    pub snapshot: Option<SnapshotId>,
    /// Files stored for the first time.
    pub files_new: u64,
    /// Files changed since the parent snapshot.
    pub files_changed: u64,
    /// Files unchanged since the parent snapshot (not read again).
    pub files_unmodified: u64,
    /// Bytes of packs written (after deduplication and compression).
    pub data_added: u64,
    /// Entries that could not be read, with the reason: the snapshot holds the rest.
    pub errors: Vec<(String, String)>,
}

/// Where and what to restore.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RestoreOptions {
    target: PathBuf,
    includes: Vec<String>,
    verify: bool,
    dry_run: bool,
}

impl RestoreOptions {
    /// Restore into `target` (created if missing).
    ///
    /// ```
    /// let o = projectclone::RestoreOptions::new("/tmp/restored").include("src/**");
    /// # let _ = o;
    /// ```
    pub fn new(target: impl Into<PathBuf>) -> RestoreOptions {
        RestoreOptions {
            target: target.into(),
            includes: Vec::new(),
            verify: false,
            dry_run: false,
        }
    }

    /// Restore only what this glob (relative to the snapshot's root) matches; repeatable.
    ///
    /// ```
    /// let o = projectclone::RestoreOptions::new("/tmp/r").include("src/**").include("Cargo.toml");
    /// # let _ = o;
    /// ```
    pub fn include(mut self, glob: impl Into<String>) -> RestoreOptions {
        self.includes.push(glob.into());
        self
    }

    /// Read every file back after writing it and compare.
    ///
    /// ```
    /// let o = projectclone::RestoreOptions::new("/tmp/r").verify(true);
    /// # let _ = o;
    /// ```
    pub fn verify(mut self, on: bool) -> RestoreOptions {
        self.verify = on;
        self
    }

    /// Plan and count, write nothing.
    ///
    /// ```
    /// let o = projectclone::RestoreOptions::new("/tmp/r").dry_run(true);
    /// # let _ = o;
    /// ```
    pub fn dry_run(mut self, on: bool) -> RestoreOptions {
        self.dry_run = on;
        self
    }
}

/// What a restore did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RestoreOutcome {
    /// Regular files and hard links restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Bytes of file content restored.
    pub bytes: u64,
    /// Paths (relative to the target) that could not be restored, with the reason.
    pub errors: Vec<(String, String)>,
}

/// What `check` found; empty `errors` means no damage.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CheckOutcome {
    /// Snapshots checked.
    pub snapshots: u64,
    /// Packs checked.
    pub packs: u64,
    /// Each problem, naming what is wrong and where.
    pub errors: Vec<String>,
}

impl CheckOutcome {
    /// No damage found.
    ///
    /// ```
    /// # use projectclone::*;
    /// # let tmp = tempfile::tempdir()?;
    /// # let init = InitOptions::new().kdf(1024, 1).open_options(OpenOptions::new().cache_dir(tmp.path().join("c")).state_dir(tmp.path().join("s")));
    /// # let mut repo = Repository::init(tmp.path().join("r").to_str().unwrap(), &Credentials::password("pw"), &init)?;
    /// let report = repo.check(&CheckOptions::new(), &NoProgress)?;
    /// assert!(report.ok() && report.errors.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// How much [`Repository::check`] reads.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CheckOptions {
    read: Option<crate::check::Subset>,
}

impl CheckOptions {
    /// Check the structure only: every snapshot's trees, the index against the packs'
    /// headers and sizes.
    ///
    /// ```
    /// let o = projectclone::CheckOptions::new();
    /// # let _ = o;
    /// ```
    pub fn new() -> CheckOptions {
        CheckOptions::default()
    }

    /// Also read every pack in full and authenticate every blob in it.
    ///
    /// ```
    /// let o = projectclone::CheckOptions::new().read_data(true);
    /// # let _ = o;
    /// ```
    pub fn read_data(mut self, on: bool) -> CheckOptions {
        self.read = on.then_some(crate::check::Subset::All);
        self
    }

    /// Read part `n` of `m` of the packs (1 ≤ n ≤ m): run parts 1 to m on successive days
    /// and every pack is read once. Out of range is an error of [`Repository::check`].
    ///
    /// ```
    /// let tuesday = projectclone::CheckOptions::new().read_data_part(2, 7);
    /// # let _ = tuesday;
    /// ```
    pub fn read_data_part(mut self, n: u32, m: u32) -> CheckOptions {
        self.read = Some(crate::check::Subset::Part(n, m));
        self
    }
}

/// Which snapshots to copy ([`Repository::copy`]).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CopyOptions {
    snapshots: Vec<String>,
    dry_run: bool,
}

impl CopyOptions {
    /// Every snapshot of the source.
    ///
    /// ```
    /// let o = projectclone::CopyOptions::new();
    /// # let _ = o;
    /// ```
    pub fn new() -> CopyOptions {
        CopyOptions::default()
    }

    /// Copy this snapshot (`latest`, an id or a unique prefix) instead of all; repeat for
    /// more.
    ///
    /// ```
    /// let o = projectclone::CopyOptions::new().snapshot("latest").snapshot("1a2b3c4d");
    /// # let _ = o;
    /// ```
    pub fn snapshot(mut self, spec: impl Into<String>) -> CopyOptions {
        self.snapshots.push(spec.into());
        self
    }

    /// Read and translate everything, write nothing to the destination.
    ///
    /// ```
    /// let o = projectclone::CopyOptions::new().dry_run(true);
    /// # let _ = o;
    /// ```
    pub fn dry_run(mut self, on: bool) -> CopyOptions {
        self.dry_run = on;
        self
    }
}

/// Which snapshots to forget, and whether to collect the data nothing uses any more.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct PruneOptions {
    forget: Vec<String>,
    keep_last: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    dry_run: bool,
}

impl PruneOptions {
    /// Forget nothing; collect unused data.
    ///
    /// ```
    /// let o = projectclone::PruneOptions::new().keep_last(7).keep_daily(14);
    /// # let _ = o;
    /// ```
    pub fn new() -> PruneOptions {
        PruneOptions::default()
    }

    /// Forget this snapshot (an id, a unique prefix of at least 4 hex digits, or `latest`).
    ///
    /// ```
    /// let o = projectclone::PruneOptions::new().forget("1a2b3c4d").forget("latest");
    /// # let _ = o;
    /// ```
    pub fn forget(mut self, snapshot: impl Into<String>) -> PruneOptions {
        self.forget.push(snapshot.into());
        self
    }

    /// Keep the last `n` snapshots of each host and set of paths; forget the rest (unless
    /// another rule keeps them).
    ///
    /// ```
    /// let o = projectclone::PruneOptions::new().keep_last(10);
    /// # let _ = o;
    /// ```
    pub fn keep_last(mut self, n: u32) -> PruneOptions {
        self.keep_last = Some(n);
        self
    }

    /// Keep the newest snapshot of each of the last `n` days that have one.
    ///
    /// ```
    /// let o = projectclone::PruneOptions::new().keep_daily(7);
    /// # let _ = o;
    /// ```
    pub fn keep_daily(mut self, n: u32) -> PruneOptions {
        self.keep_daily = Some(n);
        self
    }

    /// Keep the newest snapshot of each of the last `n` ISO weeks that have one.
    ///
    /// ```
    /// let o = projectclone::PruneOptions::new().keep_weekly(4);
    /// # let _ = o;
    /// ```
    pub fn keep_weekly(mut self, n: u32) -> PruneOptions {
        self.keep_weekly = Some(n);
        self
    }

    /// Keep the newest snapshot of each of the last `n` months that have one.
    ///
    /// ```
    /// let o = projectclone::PruneOptions::new().keep_monthly(12);
    /// # let _ = o;
    /// ```
    pub fn keep_monthly(mut self, n: u32) -> PruneOptions {
        self.keep_monthly = Some(n);
        self
    }

    /// Decide and report, change nothing.
    ///
    /// ```
    /// let o = projectclone::PruneOptions::new().keep_last(1).dry_run(true);
    /// # let _ = o;
    /// ```
    pub fn dry_run(mut self, on: bool) -> PruneOptions {
        self.dry_run = on;
        self
    }
}

/// What a prune did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PruneOutcome {
    /// Snapshots forgotten.
    pub forgotten: Vec<SnapshotId>,
    /// Packs deleted, and their bytes.
    pub deleted_packs: usize,
    /// Bytes of the packs deleted.
    pub deleted_bytes: u64,
    /// Packs marked for deletion that wait for older locks of other clients (a later
    /// prune deletes them).
    pub waiting_packs: usize,
}

/// What an export wrote.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExportOutcome {
    /// The archive written.
    pub path: PathBuf,
    /// Its SHA-256 manifest (`ARCHIVE.sha256`, one line per member, `sha256sum -c` checks it).
    pub manifest: Option<PathBuf>,
    /// Regular files and hard links in it.
    pub files: u64,
    /// Bytes of file content in it.
    pub bytes: u64,
    /// Bytes of the (compressed) archive.
    pub bytes_written: u64,
    /// Entries a tar archive cannot hold (sockets), with the reason.
    pub skipped: Vec<(String, String)>,
}

/// How a path differs between two snapshots ([`Repository::diff`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeKind {
    /// Only in the newer snapshot.
    Added,
    /// Only in the older snapshot.
    Removed,
    /// Its contents differ.
    Modified,
    /// Same contents; its mode, owner, times or xattrs differ.
    Metadata,
    /// A different kind of entry (a file that became a folder, …).
    TypeChanged,
}

/// One path that differs between two snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// From the snapshots' root, starting with `/`.
    pub path: String,
    /// How it differs.
    pub kind: ChangeKind,
}

/// What [`Repository::copy`] did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CopyOutcome {
    /// (source snapshot, its copy in the destination); the copy is `None` in a dry run.
    pub copied: Vec<(SnapshotId, Option<SnapshotId>)>,
    /// Source snapshots the destination already held (copied before).
    pub skipped: Vec<SnapshotId>,
    /// Bytes of new packs written to the destination.
    pub data_added: u64,
}

/// An open repository, opened at a location with [`Credentials`]. It has
/// one method per command, each taking an options struct and a [`Progress`] callback.
///
/// Each method takes the lock its command needs (a shared lock, as the program's commands
/// do: backups, restores, checks and prunes of several clients run side by side, and a prune
/// only deletes what no older lock may still use), re-reads what changed in the repository
/// since it was opened, and releases the lock when it returns. Errors are [`Error`]s: match
/// on [`Error::kind`] to tell a wrong password from a missing repository or damage.
///
/// ```
/// use projectclone::{BackupOptions, Credentials, InitOptions, OpenOptions, Repository, RestoreOptions};
/// # let tmp = tempfile::tempdir()?;
/// # let (project, repo_dir) = (tmp.path().join("project"), tmp.path().join("repo"));
/// # std::fs::create_dir(&project)?;
/// std::fs::write(project.join("main.rs"), "fn main() {}\n")?;
/// let options = OpenOptions::new().cache_dir(tmp.path().join("cache"));
/// # let options = options.state_dir(tmp.path().join("state"));
/// let password = Credentials::password("correct horse");
/// # let init = InitOptions::new().kdf(1024, 1);
/// # let init = init.open_options(options.clone());
/// let mut repo = Repository::init(repo_dir.to_str().unwrap(), &password, &init)?;
/// let done = repo.backup(&BackupOptions::new([&project]).tag("nightly"), &projectclone::NoProgress)?;
/// let id = done.snapshot.expect("not a dry run");
///
/// let target = tmp.path().join("restored");
/// repo.restore(&id.to_hex(), &RestoreOptions::new(&target), &projectclone::NoProgress)?;
/// assert_eq!(std::fs::read(target.join("main.rs"))?, b"fn main() {}\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Repository {
    inner: repo::Repository,
    /// The cache folder (never backed up).
    cache: PathBuf,
    /// Opened append-only ([`OpenOptions::append_only`]).
    append_only: bool,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.location())
            .finish()
    }
}

impl Repository {
    /// Open the repository at `location`: a folder, `s3:…`, `sftp:…` or a plugin store, as
    /// the program takes them.
    ///
    /// ```
    /// use projectclone::{Credentials, ErrorKind, OpenOptions, Repository};
    /// # let tmp = tempfile::tempdir()?;
    /// let none = tmp.path().join("no-repository-here");
    /// let err = Repository::open(none.to_str().unwrap(), &Credentials::password("pw"), &OpenOptions::new().without_state())
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::NotFound);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(location: &str, credentials: &Credentials, options: &OpenOptions) -> Result<Repository> {
        let loc = Location::parse(location)?;
        let backend = options.backend(&loc)?;
        let password = credentials.resolve()?;
        let opts = repo::OpenOptions {
            cache_dir: options.cache()?,
            state_dir: options.state(),
            insecure_no_password: password.is_none(),
            accept_changes: false,
            snapshots_only: false,
        };
        let cache = opts.cache_dir.clone();
        let inner = repo::Repository::open_with(backend, password.as_deref().map(|p| &p[..]), &opts)?;
        Ok(Repository {
            inner,
            cache,
            append_only: options.append_only,
        })
    }

    /// Create a repository at `location` (nothing may be there yet) and open it.
    ///
    /// ```
    /// use projectclone::{Credentials, InitOptions, OpenOptions, Repository};
    /// # let tmp = tempfile::tempdir()?;
    /// let at = tmp.path().join("repo");
    /// let init = InitOptions::new().kdf(1024, 1).open_options(OpenOptions::new().cache_dir(tmp.path().join("c")).state_dir(tmp.path().join("s")));
    /// let repo = Repository::init(at.to_str().unwrap(), &Credentials::password("pw"), &init)?;
    /// assert!(repo.snapshots()?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn init(location: &str, credentials: &Credentials, options: &InitOptions) -> Result<Repository> {
        let loc = Location::parse(location)?;
        let backend = options.open.backend(&loc)?;
        let password = credentials.resolve()?;
        let opts = repo::InitOptions {
            kdf: options.kdf,
            state_dir: options.open.state(),
            ..Default::default()
        };
        let cache = options.open.cache()?;
        let inner = repo::Repository::init(backend, password.as_deref().map(|p| &p[..]), &opts, &cache)?;
        Ok(Repository {
            inner,
            cache,
            append_only: options.open.append_only,
        })
    }

    /// Where the repository is.
    ///
    /// ```
    /// # use projectclone::*;
    /// # let tmp = tempfile::tempdir()?;
    /// # let p = tmp.path().join("p"); std::fs::create_dir(&p)?; std::fs::write(p.join("a.txt"), "a")?;
    /// # let init = InitOptions::new().kdf(1024, 1).open_options(OpenOptions::new().cache_dir(tmp.path().join("c")).state_dir(tmp.path().join("s")));
    /// # let mut repo = Repository::init(tmp.path().join("r").to_str().unwrap(), &Credentials::password("pw"), &init)?;
    /// assert!(repo.location().ends_with("/r"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn location(&self) -> String {
        self.inner.backend.location()
    }

    /// Things this client should tell its user: snapshots deleted behind its back or put
    /// back after they were forgotten (until acknowledged), and notes of the first open.
    ///
    /// ```
    /// # use projectclone::*;
    /// # let tmp = tempfile::tempdir()?;
    /// # let p = tmp.path().join("p"); std::fs::create_dir(&p)?; std::fs::write(p.join("a.txt"), "a")?;
    /// # let init = InitOptions::new().kdf(1024, 1).open_options(OpenOptions::new().cache_dir(tmp.path().join("c")).state_dir(tmp.path().join("s")));
    /// # let mut repo = Repository::init(tmp.path().join("r").to_str().unwrap(), &Credentials::password("pw"), &init)?;
    /// assert!(repo.warnings().iter().all(|w| !w.is_empty()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn warnings(&self) -> Vec<String> {
        self.inner
            .notices
            .iter()
            .cloned()
            .chain(self.inner.alerts.iter().map(|a| a.to_string()))
            .collect()
    }

    /// Every snapshot, oldest first.
    ///
    /// See the example of [`Repository`].
    ///
    /// ```
    /// # use projectclone::*;
    /// # let tmp = tempfile::tempdir()?;
    /// # let p = tmp.path().join("p"); std::fs::create_dir(&p)?; std::fs::write(p.join("a.txt"), "a")?;
    /// # let init = InitOptions::new().kdf(1024, 1).open_options(OpenOptions::new().cache_dir(tmp.path().join("c")).state_dir(tmp.path().join("s")));
    /// # let mut repo = Repository::init(tmp.path().join("r").to_str().unwrap(), &Credentials::password("pw"), &init)?;
    /// repo.backup(&BackupOptions::new([&p]), &NoProgress)?;
    /// let all = repo.snapshots()?;
    /// assert_eq!(all[0].paths, [p.to_str().unwrap().as_bytes()]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let mut all: Vec<SnapshotInfo> = self
            .inner
            .snapshots()?
            .iter()
            .map(|(id, s)| SnapshotInfo::new(*id, s))
            .collect();
        all.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    /// The snapshot `spec` names: `latest`, an id, or a unique prefix of at least 4 hex
    /// digits.
    ///
    /// ```
    /// # use projectclone::*;
    /// # let tmp = tempfile::tempdir()?;
    /// # let p = tmp.path().join("p"); std::fs::create_dir(&p)?; std::fs::write(p.join("a.txt"), "a")?;
    /// # let init = InitOptions::new().kdf(1024, 1).open_options(OpenOptions::new().cache_dir(tmp.path().join("c")).state_dir(tmp.path().join("s")));
    /// # let mut repo = Repository::init(tmp.path().join("r").to_str().unwrap(), &Credentials::password("pw"), &init)?;
    /// let id = repo.backup(&BackupOptions::new([&p]), &NoProgress)?.snapshot.unwrap();
    /// assert_eq!(repo.snapshot("latest")?.id, id);
    /// assert_eq!(repo.snapshot(&id.to_hex()[..6])?.id, id);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self, spec: &str) -> Result<SnapshotInfo> {
        let (id, s) = self.inner.resolve_snapshot(spec)?;
        Ok(SnapshotInfo::new(id, &s))
    }

    /// A shared lock, then a re-sync, as the program's commands take them (none for a dry
    /// run).
    fn shared_lock(&mut self, dry_run: bool, purpose: &str) -> Result<Option<LockGuard>> {
        if dry_run {
            return Ok(None);
        }
        let guard = lock::acquire(&self.inner, LockMode::Shared, purpose)?;
        self.inner.sync_index()?;
        Ok(Some(guard))
    }

    /// Back up: one new snapshot of the paths, files unchanged since the newest snapshot of
    /// the same paths and host not read again. Entries that cannot be read are reported in
    /// [`BackupOutcome::errors`], and the snapshot holds the rest.
    ///
    /// See the example of [`Repository`].
    ///
    /// ```
    /// # use projectclone::*;
    /// # let tmp = tempfile::tempdir()?;
    /// # let p = tmp.path().join("p"); std::fs::create_dir(&p)?; std::fs::write(p.join("a.txt"), "a")?;
    /// # let init = InitOptions::new().kdf(1024, 1).open_options(OpenOptions::new().cache_dir(tmp.path().join("c")).state_dir(tmp.path().join("s")));
    /// # let mut repo = Repository::init(tmp.path().join("r").to_str().unwrap(), &Credentials::password("pw"), &init)?;
    /// let first = repo.backup(&BackupOptions::new([&p]).tag("t"), &NoProgress)?;
    /// assert_eq!(first.files_new, 1);
    /// let again = repo.backup(&BackupOptions::new([&p]), &NoProgress)?;
    /// assert_eq!((again.files_new, again.files_unmodified), (0, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backup(&mut self, options: &BackupOptions, progress: &dyn Progress) -> Result<BackupOutcome> {
        let guard = self.shared_lock(options.dry_run, "backup")?;
        let mut skip = Vec::new();
        if let Some(p) = Location::parse(&self.location())
            .ok()
            .and_then(|l| l.local_path().map(Path::to_path_buf))
        {
            skip.extend(std::fs::canonicalize(p).ok());
        }
        skip.extend(std::fs::canonicalize(&self.cache).ok());
        let opts = crate::backup::BackupOptions {
            paths: options.paths.clone(),
            tags: options.tags.clone(),
            note: options.note.clone(),
            excludes: options.excludes.clone(),
            dry_run: options.dry_run,
            hostname: options.hostname.clone().unwrap_or_else(lock::hostname),
            username: crate::whoami::username(),
            skip,
            exclude_caches: options.exclude_caches,
            one_file_system: options.one_file_system,
            exclude_larger_than: options.exclude_larger_than,
            ..Default::default()
        };
        let r = crate::backup::backup(&mut self.inner, &opts, progress, guard.as_ref())?;
        Ok(BackupOutcome {
            snapshot: r.snapshot_id,
            files_new: r.summary.files_new,
            files_changed: r.summary.files_changed,
            files_unmodified: r.summary.files_unmodified,
            data_added: r.summary.data_added,
            errors: r
                .errors
                .into_iter()
                .map(|(p, e)| (p.display().to_string(), e))
                .collect(),
        })
    }

    /// Restore a snapshot (`latest`, an id or a unique prefix) into the target, exactly:
    /// contents, modes, times, ownership (as root), xattrs, hard links, sparse files.
    ///
    /// See the example of [`Repository`].
    ///
    /// ```
    /// # use projectclone::*;
    /// # let tmp = tempfile::tempdir()?;
    /// # let p = tmp.path().join("p"); std::fs::create_dir(&p)?; std::fs::write(p.join("a.txt"), "a")?;
    /// # let init = InitOptions::new().kdf(1024, 1).open_options(OpenOptions::new().cache_dir(tmp.path().join("c")).state_dir(tmp.path().join("s")));
    /// # let mut repo = Repository::init(tmp.path().join("r").to_str().unwrap(), &Credentials::password("pw"), &init)?;
    /// repo.backup(&BackupOptions::new([&p]), &NoProgress)?;
    /// let out = tmp.path().join("out");
    /// let done = repo.restore("latest", &RestoreOptions::new(&out), &NoProgress)?;
    /// assert_eq!((done.files, std::fs::read(out.join("a.txt"))?), (1, b"a".to_vec()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restore(
        &mut self,
        snapshot: &str,
        options: &RestoreOptions,
        progress: &dyn Progress,
    ) -> Result<RestoreOutcome> {
        let (_, snap) = self.inner.resolve_snapshot(snapshot)?;
        let _guard = self.shared_lock(options.dry_run, "restore")?;
        let opts = crate::restore::RestoreOptions {
            target: options.target.clone(),
            includes: options.includes.clone(),
            verify: options.verify,
            dry_run: options.dry_run,
        };
        let r = crate::restore::restore(&self.inner, &snap, &opts, progress)?;
        Ok(RestoreOutcome {
            files: r.files,
            dirs: r.dirs,
            bytes: r.bytes,
            errors: r.errors,
        })
    }

    /// Every entry of a snapshot at or below `path` (`/`-separated, relative to the
    /// snapshot's root; `None`: all), handed to `f` with its path (from the snapshot's
    /// root, starting with `/`) and its size, one by one in name order, so a listing of
    /// millions of entries is never held in memory.
    ///
    /// ```
    /// # use projectclone::*;
    /// # let tmp = tempfile::tempdir()?;
    /// # let p = tmp.path().join("p"); std::fs::create_dir(&p)?; std::fs::write(p.join("a.txt"), "a")?;
    /// # let init = InitOptions::new().kdf(1024, 1).open_options(OpenOptions::new().cache_dir(tmp.path().join("c")).state_dir(tmp.path().join("s")));
    /// # let mut repo = Repository::init(tmp.path().join("r").to_str().unwrap(), &Credentials::password("pw"), &init)?;
    /// # repo.backup(&BackupOptions::new([&p]), &NoProgress)?;
    /// let mut names = Vec::new();
    /// repo.ls("latest", None, &mut |path, size| names.push((path.to_string(), size)))?;
    /// assert_eq!(names, [("/a.txt".to_string(), 1)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ls(&self, snapshot: &str, path: Option<&str>, f: &mut dyn FnMut(&str, u64)) -> Result<()> {
        let (_, snap) = self.inner.resolve_snapshot(snapshot)?;
        crate::inspect::ls_each(&self.inner, &snap, path, &mut |e| f(&e.path, e.size))
    }

    /// Write a snapshot as a tar archive (`.tar`, `.tar.gz`/`.tgz` or `.tar.zst`, as the
    /// file name says) with a SHA-256 manifest beside it: the older Python tool's archive
    /// view. The archive appears complete or not at all.
    ///
    /// ```
    /// # use projectclone::*;
    /// # let tmp = tempfile::tempdir()?;
    /// # let p = tmp.path().join("p"); std::fs::create_dir(&p)?; std::fs::write(p.join("a.txt"), "a")?;
    /// # let init = InitOptions::new().kdf(1024, 1).open_options(OpenOptions::new().cache_dir(tmp.path().join("c")).state_dir(tmp.path().join("s")));
    /// # let mut repo = Repository::init(tmp.path().join("r").to_str().unwrap(), &Credentials::password("pw"), &init)?;
    /// # repo.backup(&BackupOptions::new([&p]), &NoProgress)?;
    /// let out = tmp.path().join("p.tar.gz");
    /// let done = repo.export_archive("latest", &out, &NoProgress)?;
    /// assert_eq!(done.files, 1);
    /// assert!(out.exists() && done.manifest.is_some_and(|m| m.exists()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn export_archive(&mut self, snapshot: &str, file: &Path, progress: &dyn Progress) -> Result<ExportOutcome> {
        let Some(format) = crate::export::ArchiveFormat::from_path(file) else {
            return Err(Error::Invalid(format!(
                "{}: name the archive .tar, .tar.gz, .tgz or .tar.zst",
                file.display()
            )));
        };
        let (id, snap) = self.inner.resolve_snapshot(snapshot)?;
        let _guard = self.shared_lock(false, "export")?;
        let opts = crate::export::ExportOptions {
            view: crate::export::View::Archive {
                file: file.to_path_buf(),
                format,
                manifest: true,
                encryption: None,
            },
            dry_run: false,
            tz: jiff::tz::TimeZone::system(),
        };
        let r = crate::export::export(&self.inner, &id, &snap, &opts, progress)?;
        if let Some((path, why)) = r.errors.first() {
            return Err(Error::Invalid(format!(
                "{path}: {why} ({} entries could not be exported; nothing was written)",
                r.errors.len()
            )));
        }
        Ok(ExportOutcome {
            path: r.path,
            manifest: r.manifest,
            files: r.files,
            bytes: r.bytes,
            bytes_written: r.bytes_written,
            skipped: r.skipped,
        })
    }

    /// Check the repository's structure; with `read_data`, also read and verify every
    /// pack. Damage is reported in [`CheckOutcome::errors`], not as an `Err`.
    ///
    /// ```
    /// # use projectclone::*;
    /// # let tmp = tempfile::tempdir()?;
    /// # let init = InitOptions::new().kdf(1024, 1).open_options(OpenOptions::new().cache_dir(tmp.path().join("c")).state_dir(tmp.path().join("s")));
    /// # let mut repo = Repository::init(tmp.path().join("r").to_str().unwrap(), &Credentials::password("pw"), &init)?;
    /// assert!(repo.check(&CheckOptions::new().read_data(true), &NoProgress)?.ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check(&mut self, options: &CheckOptions, progress: &dyn Progress) -> Result<CheckOutcome> {
        if let Some(crate::check::Subset::Part(n, m)) = options.read
            && !(1..=m).contains(&n)
        {
            return Err(Error::Invalid(format!(
                "read part {n} of {m}: give a part from 1 to the number of parts"
            )));
        }
        let _guard = self.shared_lock(false, "check")?;
        let r = crate::check::check_with_progress(&self.inner, options.read, progress)?;
        Ok(CheckOutcome {
            snapshots: r.snapshots,
            packs: r.packs,
            errors: r.errors,
        })
    }

    /// Forget the snapshots the options name or their `keep_*` rules leave out, then
    /// delete the data no snapshot uses any more. Safe beside other clients' backups: data
    /// they may still rely on is only marked, and deleted by a later prune.
    ///
    /// ```
    /// # use projectclone::*;
    /// # let tmp = tempfile::tempdir()?;
    /// # let p = tmp.path().join("p"); std::fs::create_dir(&p)?; std::fs::write(p.join("a.txt"), "a")?;
    /// # let init = InitOptions::new().kdf(1024, 1).open_options(OpenOptions::new().cache_dir(tmp.path().join("c")).state_dir(tmp.path().join("s")));
    /// # let mut repo = Repository::init(tmp.path().join("r").to_str().unwrap(), &Credentials::password("pw"), &init)?;
    /// let first = repo.backup(&BackupOptions::new([&p]), &NoProgress)?.snapshot.unwrap();
    /// let done = repo.prune(&PruneOptions::new().forget(first.to_hex()), &NoProgress)?;
    /// assert_eq!(done.forgotten, [first]);
    /// assert!(repo.snapshots()?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn prune(&mut self, options: &PruneOptions, progress: &dyn Progress) -> Result<PruneOutcome> {
        if self.append_only && !options.dry_run {
            return Err(Error::AppendOnly(
                "the repository is open append-only: pruning deletes snapshots and data; nothing was changed \
                 (a dry run shows what it would do)"
                    .into(),
            ));
        }
        let mut forget = Vec::new();
        for s in &options.forget {
            forget.push(self.inner.resolve_snapshot(s)?.0);
        }
        let guard = self.shared_lock(options.dry_run, "prune")?;
        let rules = crate::prune::policy::KeepRules {
            last: options.keep_last,
            daily: options.keep_daily,
            weekly: options.keep_weekly,
            monthly: options.keep_monthly,
            ..Default::default()
        };
        let opts = crate::prune::PruneOptions {
            rules,
            forget,
            gc: true,
            dry_run: options.dry_run,
            repack_threshold: 0.1,
            tz: jiff::tz::TimeZone::system(),
            hostname: lock::hostname(),
            own_lock: guard.as_ref().map(|g| g.object_id()),
            scope: Default::default(),
        };
        let plan = crate::prune::run_with_progress(&mut self.inner, &opts, guard.as_ref(), progress)?;
        Ok(PruneOutcome {
            forgotten: plan
                .snapshots
                .iter()
                .filter(|d| !d.keep)
                .filter_map(|d| d.id.parse().ok())
                .collect(),
            deleted_packs: plan.deleted_packs.len(),
            deleted_bytes: plan.deleted_bytes,
            waiting_packs: plan.waiting_packs.len(),
        })
    }

    /// What changed from snapshot `from` to snapshot `to` (each `latest`, an id or a unique
    /// prefix), in path order. Shared subtrees are skipped without reading them.
    ///
    /// ```
    /// # use projectclone::*;
    /// # let tmp = tempfile::tempdir()?;
    /// # let p = tmp.path().join("p"); std::fs::create_dir(&p)?; std::fs::write(p.join("a.txt"), "a")?;
    /// # let init = InitOptions::new().kdf(1024, 1).open_options(OpenOptions::new().cache_dir(tmp.path().join("c")).state_dir(tmp.path().join("s")));
    /// # let mut repo = Repository::init(tmp.path().join("r").to_str().unwrap(), &Credentials::password("pw"), &init)?;
    /// let before = repo.backup(&BackupOptions::new([&p]), &NoProgress)?.snapshot.unwrap();
    /// std::fs::write(p.join("b.txt"), "b")?;
    /// repo.backup(&BackupOptions::new([&p]), &NoProgress)?;
    /// let changes = repo.diff(&before.to_hex(), "latest")?;
    /// assert_eq!((changes[0].path.as_str(), changes[0].kind), ("/b.txt", ChangeKind::Added));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn diff(&self, from: &str, to: &str) -> Result<Vec<Change>> {
        let (_, a) = self.inner.resolve_snapshot(from)?;
        let (_, b) = self.inner.resolve_snapshot(to)?;
        let changes = crate::inspect::diff(&self.inner, &a, &b)?;
        Ok(changes
            .into_iter()
            .map(|c| Change {
                kind: match c.change {
                    "+" => ChangeKind::Added,
                    "-" => ChangeKind::Removed,
                    "M" => ChangeKind::Modified,
                    "U" => ChangeKind::Metadata,
                    _ => ChangeKind::TypeChanged,
                },
                path: c.path,
            })
            .collect())
    }

    /// Copy snapshots (each `latest`, an id or a unique prefix; none: all) into another
    /// repository, re-encrypted with its keys and chunked by its chunker secret, so it
    /// deduplicates them against its own data. A snapshot the destination already holds
    /// (copied before) is skipped, so running it again copies only what is new. Each copy
    /// keeps the original's time, host, paths, tags and note; its id differs.
    ///
    /// ```
    /// # use projectclone::*;
    /// # let tmp = tempfile::tempdir()?;
    /// # let p = tmp.path().join("p"); std::fs::create_dir(&p)?; std::fs::write(p.join("a.txt"), "a")?;
    /// # let open = OpenOptions::new().cache_dir(tmp.path().join("c")).state_dir(tmp.path().join("s"));
    /// # let init = InitOptions::new().kdf(1024, 1).open_options(open.clone());
    /// # let mut repo = Repository::init(tmp.path().join("r").to_str().unwrap(), &Credentials::password("pw"), &init)?;
    /// repo.backup(&BackupOptions::new([&p]), &NoProgress)?;
    /// let offsite = tmp.path().join("offsite");
    /// let mut other = Repository::init(offsite.to_str().unwrap(), &Credentials::password("other"), &init)?;
    /// let done = repo.copy(&mut other, &CopyOptions::new(), &NoProgress)?;
    /// assert_eq!(done.copied.len(), 1);
    /// assert_eq!(repo.copy(&mut other, &CopyOptions::new().snapshot("latest"), &NoProgress)?.skipped.len(), 1);
    /// assert_eq!(other.snapshots()?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn copy(&mut self, to: &mut Repository, options: &CopyOptions, progress: &dyn Progress) -> Result<CopyOutcome> {
        let mut selected = if options.snapshots.is_empty() {
            self.inner.snapshots()?
        } else {
            let mut v = Vec::new();
            for s in &options.snapshots {
                v.push(self.inner.resolve_snapshot(s)?);
            }
            v
        };
        selected.sort_by_key(|s| s.0);
        selected.dedup_by_key(|s| s.0);
        let _src = self.shared_lock(options.dry_run, "copy")?;
        let dst = to.shared_lock(options.dry_run, "copy")?;
        let r = crate::copy::copy_with_progress(
            &self.inner,
            &mut to.inner,
            &selected,
            options.dry_run,
            dst.as_ref(),
            progress,
        )?;
        Ok(CopyOutcome {
            copied: r.copied,
            skipped: r.skipped,
            data_added: r.data_added,
        })
    }
}
