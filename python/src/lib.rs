//! Python bindings of projectclone's library surface (`projectclone::Repository`): the
//! module `projectclone`. Long work runs with the GIL released; progress callbacks are
//! called with it, at most ten times a second; listings are iterators fed by a thread.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use ::projectclone as pc;

create_exception!(
    projectclone,
    ProjectcloneError,
    PyException,
    "Every error of projectclone."
);
create_exception!(
    projectclone,
    NotFoundError,
    ProjectcloneError,
    "No repository, snapshot or path there."
);
create_exception!(
    projectclone,
    WrongPasswordError,
    ProjectcloneError,
    "No key opens with this password, or none was given."
);
create_exception!(
    projectclone,
    LockedError,
    ProjectcloneError,
    "Another process holds a lock this operation cannot share."
);
create_exception!(
    projectclone,
    DamagedError,
    ProjectcloneError,
    "Stored data is missing, damaged or tampered with."
);
create_exception!(
    projectclone,
    UnsupportedError,
    ProjectcloneError,
    "Written by a newer version of projectclone."
);
create_exception!(
    projectclone,
    InvalidError,
    ProjectcloneError,
    "An argument or setting that cannot work."
);
create_exception!(
    projectclone,
    IoError,
    ProjectcloneError,
    "The file system or the storage failed."
);

fn to_py(e: pc::Error) -> PyErr {
    let msg = e.to_string();
    match e.kind() {
        pc::ErrorKind::NotFound => NotFoundError::new_err(msg),
        pc::ErrorKind::WrongPassword => WrongPasswordError::new_err(msg),
        pc::ErrorKind::Locked => LockedError::new_err(msg),
        pc::ErrorKind::Damaged => DamagedError::new_err(msg),
        pc::ErrorKind::Unsupported => UnsupportedError::new_err(msg),
        pc::ErrorKind::Invalid => InvalidError::new_err(msg),
        pc::ErrorKind::Io => IoError::new_err(msg),
        _ => ProjectcloneError::new_err(msg),
    }
}

/// The password arguments as credentials: the environment when none is given.
fn credentials(
    password: Option<&str>,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
    insecure_no_password: bool,
) -> PyResult<pc::Credentials> {
    let given = [
        password.is_some(),
        password_file.is_some(),
        password_command.is_some(),
        insecure_no_password,
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(InvalidError::new_err(
            "give one of password, password_file, password_command and insecure_no_password",
        ));
    }
    Ok(match (password, password_file, password_command) {
        (Some(p), _, _) => pc::Credentials::password(p),
        (_, Some(f), _) => pc::Credentials::PasswordFile(f),
        (_, _, Some(c)) => pc::Credentials::PasswordCommand(c),
        _ if insecure_no_password => pc::Credentials::InsecureNoPassword,
        _ => pc::Credentials::Environment,
    })
}

/// The password arguments of open and init.
type Given<'a> = (Option<&'a str>, Option<PathBuf>, Option<String>, bool);

/// Location, credentials and open options from the arguments, then (with `config`) the
/// program's environment and config files (read with the GIL released: a password
/// command may run later, never here).
#[allow(clippy::type_complexity)]
fn resolve(
    py: Python<'_>,
    location: Option<String>,
    (password, password_file, password_command, insecure_no_password): Given<'_>,
    cache_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    config: bool,
    profile: Option<String>,
) -> PyResult<(String, pc::Credentials, pc::OpenOptions, Option<Option<String>>)> {
    let any_password =
        password.is_some() || password_file.is_some() || password_command.is_some() || insecure_no_password;
    let creds = credentials(password, password_file, password_command, insecure_no_password)?;
    if !config {
        let Some(location) = location else {
            return Err(InvalidError::new_err(
                "no location: give one, or leave config on to use the program's (PROJECTCLONE_REPO, repo in \
                 config.toml, or the default repository)",
            ));
        };
        return Ok((
            location,
            creds,
            open_options(pc::OpenOptions::new(), cache_dir, state_dir),
            None,
        ));
    }
    let p = profile.clone();
    let settings = py
        .detach(move || pc::Settings::load(None, p.as_deref()))
        .map_err(to_py)?;
    let location = location.unwrap_or_else(|| settings.location().to_string());
    let creds = if any_password {
        creds
    } else {
        settings.credentials().map_err(to_py)?
    };
    let opts = open_options(settings.open_options(), cache_dir, state_dir);
    Ok((location, creds, opts, Some(profile)))
}

fn open_options(base: pc::OpenOptions, cache_dir: Option<PathBuf>, state_dir: Option<PathBuf>) -> pc::OpenOptions {
    let mut o = base;
    if let Some(c) = cache_dir {
        o = o.cache_dir(c);
    }
    if let Some(s) = state_dir {
        o = o.state_dir(s);
    }
    o
}

/// Reports progress to a Python callable `callback(bytes, entries, path)`, at most every
/// 100 ms and once at the end. An exception it raises is kept and raised when the
/// operation returns (the operation itself goes on).
struct Callback {
    callback: Option<Py<PyAny>>,
    bytes: AtomicU64,
    entries: AtomicU64,
    state: Mutex<(Option<Instant>, Option<String>)>,
    error: Mutex<Option<PyErr>>,
}

impl Callback {
    fn new(callback: Option<Py<PyAny>>) -> Callback {
        Callback {
            callback,
            bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            state: Mutex::new((None, None)),
            error: Mutex::new(None),
        }
    }

    fn report(&self, force: bool) {
        let Some(cb) = &self.callback else { return };
        let path = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if !force && st.0.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) {
                return;
            }
            st.0 = Some(Instant::now());
            st.1.clone()
        };
        let (b, e) = (self.bytes.load(Ordering::Relaxed), self.entries.load(Ordering::Relaxed));
        Python::attach(|py| {
            if let Err(err) = cb.call1(py, (b, e, path)) {
                let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(err);
            }
        });
    }

    /// The first exception the callback raised.
    fn take_error(&self) -> PyResult<()> {
        match self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl pc::Progress for Callback {
    fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.report(false);
    }
    fn current(&self, path: &std::path::Path) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(path.display().to_string());
    }
    fn file_done(&self) {
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.report(false);
    }
    fn finish(&self) {
        self.report(true);
    }
}

/// One snapshot.
#[pyclass(module = "projectclone", frozen, get_all, skip_from_py_object)]
#[derive(Clone)]
struct Snapshot {
    /// The snapshot's id (64 hex digits).
    id: String,
    /// When it was taken, RFC 3339 with the UTC offset of the machine then.
    time: String,
    hostname: String,
    username: String,
    paths: Vec<String>,
    tags: Vec<String>,
    note: Option<String>,
    /// The id of the snapshot it was compared with, if any.
    parent: Option<String>,
    /// The git commit checked out in the backed-up work tree, if it was one.
    git_commit: Option<String>,
    /// Its branch (None when detached or not a work tree).
    git_branch: Option<String>,
    /// Whether the work tree had changes not in that commit (None: not known).
    git_dirty: Option<bool>,
}

impl Snapshot {
    fn new(s: pc::SnapshotInfo) -> Snapshot {
        Snapshot {
            id: s.id.to_hex(),
            time: s.time_text,
            hostname: s.hostname,
            username: s.username,
            paths: s
                .paths
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect(),
            tags: s.tags,
            note: s.note,
            parent: s.parent.map(|p| p.to_hex()),
            git_commit: s.git_commit,
            git_branch: s.git_branch,
            git_dirty: s.git_dirty,
        }
    }
}

#[pymethods]
impl Snapshot {
    fn __repr__(&self) -> String {
        format!(
            "Snapshot(id={:?}, time={:?}, hostname={:?}, paths={:?}, tags={:?})",
            &self.id[..8],
            self.time,
            self.hostname,
            self.paths,
            self.tags
        )
    }
}

/// What `Repository.backup` did.
#[pyclass(module = "projectclone", frozen, get_all)]
struct BackupResult {
    /// The new snapshot's id; None for a dry run.
    snapshot_id: Option<String>,
    files_new: u64,
    files_changed: u64,
    files_unmodified: u64,
    /// Bytes written to the repository (after deduplication and compression).
    data_added: u64,
    /// (path, reason) of each entry that could not be read; the snapshot holds the rest.
    errors: Vec<(String, String)>,
}

/// What `Repository.restore` did.
#[pyclass(module = "projectclone", frozen, get_all)]
struct RestoreResult {
    files: u64,
    dirs: u64,
    bytes: u64,
    /// (path, reason) of each entry that could not be restored.
    errors: Vec<(String, String)>,
}

/// What `Repository.check` found.
#[pyclass(module = "projectclone", frozen, get_all)]
struct CheckResult {
    snapshots: u64,
    packs: u64,
    /// Each problem found; empty when the repository is intact.
    errors: Vec<String>,
}

#[pymethods]
impl CheckResult {
    /// True when no damage was found.
    #[getter]
    fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// What `Repository.forget` and `Repository.prune` did.
#[pyclass(module = "projectclone", frozen, get_all)]
struct PruneResult {
    /// Ids of the snapshots forgotten (a dry run: that would be).
    forgotten: Vec<String>,
    deleted_packs: usize,
    deleted_bytes: u64,
    /// Packs marked for deletion that wait for other clients' older locks.
    waiting_packs: usize,
}

/// What `Repository.export_archive` wrote.
#[pyclass(module = "projectclone", frozen, get_all)]
struct ExportResult {
    path: String,
    manifest: Option<String>,
    files: u64,
    bytes: u64,
    bytes_written: u64,
}

/// One path that differs between two snapshots.
#[pyclass(module = "projectclone", frozen, get_all)]
struct Change {
    /// From the snapshots' root, starting with "/".
    path: String,
    /// "added", "removed", "modified" (contents), "metadata" (mode, owner, times or
    /// xattrs only) or "type" (a file that became a folder, …).
    kind: &'static str,
}

#[pymethods]
impl Change {
    fn __repr__(&self) -> String {
        format!("Change({:?}, {:?})", self.path, self.kind)
    }
}

/// What `Repository.copy` did.
#[pyclass(module = "projectclone", frozen, get_all)]
struct CopyResult {
    /// (source snapshot id, id of its copy in the destination) of each snapshot copied.
    copied: Vec<(String, Option<String>)>,
    /// Ids of the source snapshots the destination already held.
    skipped: Vec<String>,
    /// Bytes of new packs written to the destination.
    data_added: u64,
}

enum Listed {
    Entry(String, u64),
    Done(Result<(), pc::Error>),
}

/// The entries of a snapshot, as (path, size), produced while they are read.
#[pyclass(module = "projectclone")]
struct LsIterator {
    rx: Receiver<Listed>,
    done: bool,
}

#[pymethods]
impl LsIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<(String, u64)>> {
        if self.done {
            return Ok(None);
        }
        let rx = self.rx.clone();
        match py.detach(move || rx.recv()) {
            Ok(Listed::Entry(p, s)) => Ok(Some((p, s))),
            Ok(Listed::Done(r)) => {
                self.done = true;
                r.map(|()| None).map_err(to_py)
            }
            Err(_) => {
                self.done = true;
                Ok(None)
            }
        }
    }
}

/// A snapshot given as an id, a unique prefix, "latest" or a Snapshot.
fn snapshot_spec(s: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(text) = s.extract::<String>() {
        return Ok(text);
    }
    match s.extract::<PyRef<'_, Snapshot>>() {
        Ok(snap) => Ok(snap.id.clone()),
        Err(_) => Err(InvalidError::new_err(
            "snapshot: give an id, a unique prefix of at least 4 hex digits, \"latest\" or a Snapshot",
        )),
    }
}

/// The repository of a `Repository` object for one call, or `None` while another call (or
/// an unfinished `ls()` iterator) holds it. A call that panicked does not make it unusable.
fn hold(m: &Mutex<pc::Repository>) -> Option<MutexGuard<'_, pc::Repository>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// An open projectclone repository.
#[pyclass(module = "projectclone")]
struct Repository {
    inner: Arc<Mutex<pc::Repository>>,
    location: String,
    /// Whether the program's config files and environment apply (and with which
    /// profile): backups then take their settings for the project they back up.
    config: Option<Option<String>>,
}

impl Repository {
    /// Run `f` on the repository with the GIL released. One call at a time: a second one
    /// meanwhile (another thread, or an unfinished `ls` iterator) is an error, not a wait.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut pc::Repository) -> pc::Result<T> + Send,
    ) -> PyResult<T> {
        let inner = self.inner.clone();
        let res = py.detach(move || match hold(&inner) {
            Some(mut r) => Ok(f(&mut r)),
            None => Err(()),
        });
        match res {
            Ok(r) => r.map_err(to_py),
            Err(()) => Err(ProjectcloneError::new_err(
                "this Repository is busy with another call or an unfinished ls() iterator: finish or \
                 delete the iterator, or open a second Repository for the other work",
            )),
        }
    }
}

impl Repository {
    /// A repository `open` (or `init`) makes at `location`, with the GIL released.
    fn opened(
        py: Python<'_>,
        location: String,
        config: Option<Option<String>>,
        open: impl FnOnce(&str) -> pc::Result<pc::Repository> + Send,
    ) -> PyResult<Repository> {
        let repo = py.detach(|| open(&location)).map_err(to_py)?;
        Ok(Repository {
            inner: Arc::new(Mutex::new(repo)),
            location,
            config,
        })
    }

    /// [`with`](Self::with) for work that reports progress to a Python callable: the
    /// callback's last call, then the first exception it raised, if any.
    fn with_progress<T: Send>(
        &self,
        py: Python<'_>,
        progress: Option<Py<PyAny>>,
        f: impl FnOnce(&mut pc::Repository, &Callback) -> pc::Result<T> + Send,
    ) -> PyResult<T> {
        let cb = Callback::new(progress);
        let out = self.with(py, |r| {
            let out = f(r, &cb);
            pc::Progress::finish(&cb);
            out
        })?;
        cb.take_error()?;
        Ok(out)
    }
}

#[allow(clippy::too_many_arguments)]
#[pymethods]
impl Repository {
    /// Open the repository at a location: a folder, "s3:…", "sftp:…", "rclone:…" or a
    /// plugin store. As the program does, unless config=False: without a location, the
    /// one of PROJECTCLONE_REPO, the config files (repo) or the default; without password
    /// arguments, the password of PROJECTCLONE_PASSWORD_FILE, PROJECTCLONE_PASSWORD,
    /// PROJECTCLONE_PASSWORD_COMMAND or the config files (password-file,
    /// password-command); the cache folder of cache_dir, PROJECTCLONE_CACHE_DIR or the
    /// config files; append-only from the config files unless append_only is given. The
    /// files are $XDG_CONFIG_HOME/projectclone/config.toml (its [profile.NAME] with
    /// profile or PROJECTCLONE_PROFILE) and the .projectclone.toml of the current folder,
    /// and, for each backup, of the project backed up.
    #[staticmethod]
    #[pyo3(signature = (location=None, password=None, *, password_file=None, password_command=None, insecure_no_password=false, cache_dir=None, state_dir=None, append_only=None, config=true, profile=None))]
    fn open(
        py: Python<'_>,
        location: Option<String>,
        password: Option<&str>,
        password_file: Option<PathBuf>,
        password_command: Option<String>,
        insecure_no_password: bool,
        cache_dir: Option<PathBuf>,
        state_dir: Option<PathBuf>,
        append_only: Option<bool>,
        config: bool,
        profile: Option<String>,
    ) -> PyResult<Repository> {
        let given = (password, password_file, password_command, insecure_no_password);
        let (location, creds, opts, config) = resolve(py, location, given, cache_dir, state_dir, config, profile)?;
        let opts = match append_only {
            Some(on) => opts.append_only(on),
            None => opts,
        };
        Repository::opened(py, location, config, move |loc| {
            pc::Repository::open(loc, &creds, &opts)
        })
    }

    /// Create a repository at a location (nothing may be there yet) and open it; the
    /// location, password and cache folder are found as for open. The key derivation
    /// costs 64 MiB and 3 passes unless kdf_memory_kib / kdf_passes say less.
    #[staticmethod]
    #[pyo3(signature = (location=None, password=None, *, password_file=None, password_command=None, insecure_no_password=false, cache_dir=None, state_dir=None, kdf_memory_kib=None, kdf_passes=None, config=true, profile=None))]
    fn init(
        py: Python<'_>,
        location: Option<String>,
        password: Option<&str>,
        password_file: Option<PathBuf>,
        password_command: Option<String>,
        insecure_no_password: bool,
        cache_dir: Option<PathBuf>,
        state_dir: Option<PathBuf>,
        kdf_memory_kib: Option<u32>,
        kdf_passes: Option<u32>,
        config: bool,
        profile: Option<String>,
    ) -> PyResult<Repository> {
        let given = (password, password_file, password_command, insecure_no_password);
        let (location, creds, open, config) = resolve(py, location, given, cache_dir, state_dir, config, profile)?;
        let mut opts = pc::InitOptions::new().open_options(open);
        if kdf_memory_kib.is_some() || kdf_passes.is_some() {
            opts = opts.kdf(kdf_memory_kib.unwrap_or(64 * 1024), kdf_passes.unwrap_or(3));
        }
        Repository::opened(py, location, config, move |loc| {
            pc::Repository::init(loc, &creds, &opts)
        })
    }

    /// Where the repository is, as given.
    #[getter]
    fn location(&self) -> String {
        self.location.clone()
    }

    /// What this client should tell its user: snapshots deleted behind its back, notes of
    /// the first open.
    #[getter]
    fn warnings(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with(py, |r| Ok(r.warnings()))
    }

    fn __repr__(&self) -> String {
        format!("Repository({:?})", self.location)
    }

    /// Every snapshot, oldest first.
    fn snapshots(&self, py: Python<'_>) -> PyResult<Vec<Snapshot>> {
        let all = self.with(py, |r| r.snapshots())?;
        Ok(all.into_iter().map(Snapshot::new).collect())
    }

    /// The snapshot an id, a unique prefix of at least 4 hex digits, or "latest" names.
    fn snapshot(&self, py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<Snapshot> {
        let spec = snapshot_spec(spec)?;
        Ok(Snapshot::new(self.with(py, move |r| r.snapshot(&spec))?))
    }

    /// Back up paths into one new snapshot; unchanged files are not read again.
    #[pyo3(signature = (paths, *, tags=Vec::new(), note=None, exclude=Vec::new(), host=None, dry_run=false, progress=None))]
    fn backup(
        &self,
        py: Python<'_>,
        paths: Vec<PathBuf>,
        tags: Vec<String>,
        note: Option<String>,
        exclude: Vec<String>,
        host: Option<String>,
        dry_run: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<BackupResult> {
        // The settings of the project backed up (its .projectclone.toml), as the program
        // takes them; a list given here replaces the files' list, as a flag does.
        let (mut tags, mut exclude, mut host) = (tags, exclude, host);
        let mut opts = pc::BackupOptions::new(&paths).dry_run(dry_run);
        if let (Some(profile), Some(first)) = (&self.config, paths.first()) {
            let dir = if first.is_dir() {
                first.clone()
            } else {
                first.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
            };
            let profile = profile.clone();
            let s = py
                .detach(move || pc::Settings::load(Some(&dir), profile.as_deref()))
                .map_err(to_py)?;
            if tags.is_empty() {
                tags = s.tags().to_vec();
            }
            if exclude.is_empty() {
                exclude = s.excludes().to_vec();
            }
            host = host.or_else(|| s.host().map(String::from));
            let (caches, one_fs, larger) = s.backup_rules();
            opts = opts.exclude_caches(caches).one_file_system(one_fs);
            if let Some(n) = larger {
                opts = opts.exclude_larger_than(n);
            }
        }
        for t in tags {
            opts = opts.tag(t);
        }
        for e in exclude {
            opts = opts.exclude(e);
        }
        if let Some(n) = note {
            opts = opts.note(n);
        }
        if let Some(h) = host {
            opts = opts.hostname(h);
        }
        let out = self.with_progress(py, progress, |r, cb| r.backup(&opts, cb))?;
        Ok(BackupResult {
            snapshot_id: out.snapshot.map(|s| s.to_hex()),
            files_new: out.files_new,
            files_changed: out.files_changed,
            files_unmodified: out.files_unmodified,
            data_added: out.data_added,
            errors: out.errors,
        })
    }

    /// Restore a snapshot (an id, a prefix, "latest" or a Snapshot) into target.
    #[pyo3(signature = (snapshot, target, *, include=Vec::new(), verify=false, dry_run=false, progress=None))]
    fn restore(
        &self,
        py: Python<'_>,
        snapshot: &Bound<'_, PyAny>,
        target: PathBuf,
        include: Vec<String>,
        verify: bool,
        dry_run: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<RestoreResult> {
        let spec = snapshot_spec(snapshot)?;
        let mut opts = pc::RestoreOptions::new(target).verify(verify).dry_run(dry_run);
        for i in include {
            opts = opts.include(i);
        }
        let out = self.with_progress(py, progress, |r, cb| r.restore(&spec, &opts, cb))?;
        Ok(RestoreResult {
            files: out.files,
            dirs: out.dirs,
            bytes: out.bytes,
            errors: out.errors,
        })
    }

    /// The entries of a snapshot at or below path, as (path, size) pairs, read as the
    /// iterator is consumed (a listing of millions of entries is never held in memory).
    #[pyo3(signature = (snapshot, path=None))]
    fn ls(&self, snapshot: &Bound<'_, PyAny>, path: Option<String>) -> PyResult<LsIterator> {
        let spec = snapshot_spec(snapshot)?;
        let (tx, rx) = bounded(1024);
        let inner = self.inner.clone();
        let started = bounded::<bool>(1);
        std::thread::Builder::new()
            .name("projectclone-ls".into())
            .spawn(move || {
                let guard = match hold(&inner) {
                    Some(g) => g,
                    None => {
                        let _ = started.0.send(false);
                        return;
                    }
                };
                let _ = started.0.send(true);
                let res = guard.ls(&spec, path.as_deref(), &mut |p, size| {
                    let _ = tx.send(Listed::Entry(p.to_string(), size));
                });
                let _ = tx.send(Listed::Done(res));
            })
            .map_err(|e| IoError::new_err(format!("cannot start the listing thread: {e}")))?;
        if started.1.recv() != Ok(true) {
            return Err(ProjectcloneError::new_err(
                "this Repository is busy with another call or an unfinished ls() iterator",
            ));
        }
        Ok(LsIterator { rx, done: false })
    }

    /// Check the repository; with read_data, read and verify every pack too.
    #[pyo3(signature = (read_data=false, *, progress=None))]
    fn check(&self, py: Python<'_>, read_data: bool, progress: Option<Py<PyAny>>) -> PyResult<CheckResult> {
        let opts = pc::CheckOptions::new().read_data(read_data);
        let out = self.with_progress(py, progress, |r, cb| r.check(&opts, cb))?;
        Ok(CheckResult {
            snapshots: out.snapshots,
            packs: out.packs,
            errors: out.errors,
        })
    }

    /// Forget the snapshots given (ids, prefixes, "latest" or Snapshots) and those the
    /// keep_* rules leave out, then delete the data nothing uses any more.
    #[pyo3(signature = (snapshots=Vec::new(), *, keep_last=None, keep_daily=None, keep_weekly=None, keep_monthly=None, dry_run=false, progress=None))]
    fn forget(
        &self,
        py: Python<'_>,
        snapshots: Vec<Bound<'_, PyAny>>,
        keep_last: Option<u32>,
        keep_daily: Option<u32>,
        keep_weekly: Option<u32>,
        keep_monthly: Option<u32>,
        dry_run: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<PruneResult> {
        let mut opts = pc::PruneOptions::new().dry_run(dry_run);
        for s in &snapshots {
            opts = opts.forget(snapshot_spec(s)?);
        }
        let rules = [
            (
                keep_last,
                pc::PruneOptions::keep_last as fn(pc::PruneOptions, u32) -> pc::PruneOptions,
            ),
            (keep_daily, pc::PruneOptions::keep_daily),
            (keep_weekly, pc::PruneOptions::keep_weekly),
            (keep_monthly, pc::PruneOptions::keep_monthly),
        ];
        for (n, set) in rules {
            if let Some(n) = n {
                opts = set(opts, n);
            }
        }
        let out = self.with_progress(py, progress, |r, cb| r.prune(&opts, cb))?;
        Ok(PruneResult {
            forgotten: out.forgotten.iter().map(|s| s.to_hex()).collect(),
            deleted_packs: out.deleted_packs,
            deleted_bytes: out.deleted_bytes,
            waiting_packs: out.waiting_packs,
        })
    }

    /// Delete the data no snapshot uses (keep_* rules as for forget).
    #[pyo3(signature = (*, keep_last=None, keep_daily=None, keep_weekly=None, keep_monthly=None, dry_run=false, progress=None))]
    fn prune(
        &self,
        py: Python<'_>,
        keep_last: Option<u32>,
        keep_daily: Option<u32>,
        keep_weekly: Option<u32>,
        keep_monthly: Option<u32>,
        dry_run: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<PruneResult> {
        self.forget(
            py,
            Vec::new(),
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
            dry_run,
            progress,
        )
    }

    /// What changed from one snapshot to another (ids, prefixes, "latest" or Snapshots),
    /// in path order.
    fn diff(&self, py: Python<'_>, old: &Bound<'_, PyAny>, new: &Bound<'_, PyAny>) -> PyResult<Vec<Change>> {
        let (a, b) = (snapshot_spec(old)?, snapshot_spec(new)?);
        let changes = self.with(py, move |r| r.diff(&a, &b))?;
        Ok(changes
            .into_iter()
            .map(|c| Change {
                kind: match c.kind {
                    pc::ChangeKind::Added => "added",
                    pc::ChangeKind::Removed => "removed",
                    pc::ChangeKind::Modified => "modified",
                    pc::ChangeKind::Metadata => "metadata",
                    _ => "type",
                },
                path: c.path,
            })
            .collect())
    }

    /// Copy snapshots (ids, prefixes, "latest" or Snapshots; none given: all) into another
    /// open repository, re-encrypted with its keys and deduplicated against its data. The
    /// ones it already holds are skipped, so running it again copies only what is new.
    #[pyo3(signature = (to, snapshots=Vec::new(), *, dry_run=false, progress=None))]
    fn copy(
        &self,
        py: Python<'_>,
        to: PyRef<'_, Repository>,
        snapshots: Vec<Bound<'_, PyAny>>,
        dry_run: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<CopyResult> {
        let mut opts = pc::CopyOptions::new().dry_run(dry_run);
        for s in &snapshots {
            opts = opts.snapshot(snapshot_spec(s)?);
        }
        if Arc::ptr_eq(&self.inner, &to.inner) {
            return Err(InvalidError::new_err(
                "copy: the destination is this same Repository object: open the other repository",
            ));
        }
        let dst = to.inner.clone();
        let out = self.with_progress(py, progress, move |r, cb| {
            let mut d = match hold(&dst) {
                Some(d) => d,
                None => {
                    return Err(pc::Error::Invalid(
                        "the destination Repository is busy with another call or an unfinished ls() iterator".into(),
                    ));
                }
            };
            r.copy(&mut d, &opts, cb)
        })?;
        Ok(CopyResult {
            copied: out
                .copied
                .iter()
                .map(|(a, b)| (a.to_hex(), b.map(|b| b.to_hex())))
                .collect(),
            skipped: out.skipped.iter().map(|s| s.to_hex()).collect(),
            data_added: out.data_added,
        })
    }

    /// Write a snapshot as a tar archive (.tar, .tar.gz/.tgz or .tar.zst as the name
    /// says) with a SHA-256 manifest beside it.
    #[pyo3(signature = (snapshot, path, *, progress=None))]
    fn export_archive(
        &self,
        py: Python<'_>,
        snapshot: &Bound<'_, PyAny>,
        path: PathBuf,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<ExportResult> {
        let spec = snapshot_spec(snapshot)?;
        let out = self.with_progress(py, progress, |r, cb| r.export_archive(&spec, &path, cb))?;
        Ok(ExportResult {
            path: out.path.display().to_string(),
            manifest: out.manifest.map(|m| m.display().to_string()),
            files: out.files,
            bytes: out.bytes,
            bytes_written: out.bytes_written,
        })
    }
}

/// projectclone: exact, restorable, deduplicated and encrypted snapshots of project
/// directories.
#[pymodule(name = "projectclone")]
fn projectclone_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Repository>()?;
    m.add_class::<Snapshot>()?;
    m.add_class::<BackupResult>()?;
    m.add_class::<RestoreResult>()?;
    m.add_class::<CheckResult>()?;
    m.add_class::<PruneResult>()?;
    m.add_class::<ExportResult>()?;
    m.add_class::<LsIterator>()?;
    m.add_class::<Change>()?;
    m.add_class::<CopyResult>()?;
    m.add("ProjectcloneError", py.get_type::<ProjectcloneError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("WrongPasswordError", py.get_type::<WrongPasswordError>())?;
    m.add("LockedError", py.get_type::<LockedError>())?;
    m.add("DamagedError", py.get_type::<DamagedError>())?;
    m.add("UnsupportedError", py.get_type::<UnsupportedError>())?;
    m.add("InvalidError", py.get_type::<InvalidError>())?;
    m.add("IoError", py.get_type::<IoError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
