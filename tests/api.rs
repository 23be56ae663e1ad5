//! The library's stable surface (`projectclone::Repository` and its options), used as a
//! program linking the crate would use it.
//!
//! The first test is the API snapshot: every public function and method of the surface,
//! coerced to its exact signature. A change to any of them fails to compile here, so the
//! surface cannot change by accident; a deliberate change updates this list and
//! CHANGELOG.md (a removal or a changed signature is a new major version).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use projectclone::{
    BackupOptions, BackupOutcome, Change, ChangeKind, CheckOptions, CheckOutcome, CopyOptions, CopyOutcome,
    Credentials, Error, ErrorKind, ExportOutcome, InitOptions, NoProgress, OpenOptions, Progress, PruneOptions,
    PruneOutcome, Repository, RestoreOptions, RestoreOutcome, Settings, SnapshotId, SnapshotInfo,
};

#[test]
#[allow(clippy::type_complexity)] // the signatures are the point
fn the_surface_has_exactly_these_signatures() {
    let _: fn(&str, &Credentials, &OpenOptions) -> Result<Repository, Error> = Repository::open;
    let _: fn(&str, &Credentials, &InitOptions) -> Result<Repository, Error> = Repository::init;
    let _: fn(&Repository) -> String = Repository::location;
    let _: fn(&Repository) -> Vec<String> = Repository::warnings;
    let _: fn(&Repository) -> Result<Vec<SnapshotInfo>, Error> = Repository::snapshots;
    let _: fn(&Repository, &str) -> Result<SnapshotInfo, Error> = Repository::snapshot;
    let _: fn(&mut Repository, &BackupOptions, &dyn Progress) -> Result<BackupOutcome, Error> = Repository::backup;
    let _: fn(&mut Repository, &str, &RestoreOptions, &dyn Progress) -> Result<RestoreOutcome, Error> =
        Repository::restore;
    let _: fn(&Repository, &str, Option<&str>, &mut dyn FnMut(&str, u64)) -> Result<(), Error> = Repository::ls;
    let _: fn(&mut Repository, &CheckOptions, &dyn Progress) -> Result<CheckOutcome, Error> = Repository::check;
    let _: fn(&mut Repository, &PruneOptions, &dyn Progress) -> Result<PruneOutcome, Error> = Repository::prune;
    let _: fn(&mut Repository, &str, &Path, &dyn Progress) -> Result<ExportOutcome, Error> = Repository::export_archive;
    let _: fn(&Repository, &str, &str) -> Result<Vec<Change>, Error> = Repository::diff;
    let _: fn(&mut Repository, &mut Repository, &CopyOptions, &dyn Progress) -> Result<CopyOutcome, Error> =
        Repository::copy;

    let _: fn(Option<&Path>, Option<&str>) -> Result<Settings, Error> = Settings::load;
    let _: fn(&Settings) -> &str = Settings::location;
    let _: fn(&Settings) -> Result<Credentials, Error> = Settings::credentials;
    let _: fn(&Settings) -> OpenOptions = Settings::open_options;
    let _: fn(&Settings) -> &[String] = Settings::excludes;
    let _: fn(&Settings) -> &[String] = Settings::tags;
    let _: fn(&Settings) -> Option<&str> = Settings::host;
    let _: fn(&Settings) -> (bool, bool, Option<u64>) = Settings::backup_rules;
    let _: fn(&Settings, Vec<PathBuf>) -> BackupOptions = Settings::backup_options::<PathBuf>;
    let _: fn(&Settings) -> &[(&'static str, String)] = Settings::sources;
    let _: fn(&Settings) -> Result<Repository, Error> = Settings::open;

    let _: fn(&'static str) -> Credentials = Credentials::password;
    let _: fn(&Path) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> = projectclone::read_password_file;
    let _: fn(&str) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> = projectclone::run_password_command;
    let _: fn() -> OpenOptions = OpenOptions::new;
    let _: fn(OpenOptions, PathBuf) -> OpenOptions = OpenOptions::cache_dir;
    let _: fn(OpenOptions, PathBuf) -> OpenOptions = OpenOptions::state_dir;
    let _: fn(OpenOptions) -> OpenOptions = OpenOptions::without_state;
    let _: fn(OpenOptions, std::time::Duration) -> OpenOptions = OpenOptions::storage_timeout;
    let _: fn(OpenOptions, bool) -> OpenOptions = OpenOptions::append_only;
    let _: fn() -> InitOptions = InitOptions::new;
    let _: fn(InitOptions, u32, u32) -> InitOptions = InitOptions::kdf;
    let _: fn(InitOptions, OpenOptions) -> InitOptions = InitOptions::open_options;
    let _: fn(Vec<PathBuf>) -> BackupOptions = BackupOptions::new::<PathBuf>;
    let _: fn(BackupOptions, String) -> BackupOptions = BackupOptions::tag;
    let _: fn(BackupOptions, String) -> BackupOptions = BackupOptions::note;
    let _: fn(BackupOptions, String) -> BackupOptions = BackupOptions::exclude;
    let _: fn(BackupOptions, String) -> BackupOptions = BackupOptions::hostname;
    let _: fn(BackupOptions, bool) -> BackupOptions = BackupOptions::dry_run;
    let _: fn(BackupOptions, bool) -> BackupOptions = BackupOptions::exclude_caches;
    let _: fn(BackupOptions, bool) -> BackupOptions = BackupOptions::one_file_system;
    let _: fn(BackupOptions, u64) -> BackupOptions = BackupOptions::exclude_larger_than;
    let _: fn(PathBuf) -> RestoreOptions = RestoreOptions::new;
    let _: fn(RestoreOptions, String) -> RestoreOptions = RestoreOptions::include;
    let _: fn(RestoreOptions, bool) -> RestoreOptions = RestoreOptions::verify;
    let _: fn(RestoreOptions, bool) -> RestoreOptions = RestoreOptions::dry_run;
    let _: fn() -> PruneOptions = PruneOptions::new;
    let _: fn(PruneOptions, String) -> PruneOptions = PruneOptions::forget;
    let _: fn(PruneOptions, u32) -> PruneOptions = PruneOptions::keep_last;
    let _: fn(PruneOptions, u32) -> PruneOptions = PruneOptions::keep_daily;
    let _: fn(PruneOptions, u32) -> PruneOptions = PruneOptions::keep_weekly;
    let _: fn(PruneOptions, u32) -> PruneOptions = PruneOptions::keep_monthly;
    let _: fn(PruneOptions, bool) -> PruneOptions = PruneOptions::dry_run;
    let _: fn(&CheckOutcome) -> bool = CheckOutcome::ok;
    let _: fn() -> CheckOptions = CheckOptions::new;
    let _: fn(CheckOptions, bool) -> CheckOptions = CheckOptions::read_data;
    let _: fn(CheckOptions, u32, u32) -> CheckOptions = CheckOptions::read_data_part;
    let _: fn() -> CopyOptions = CopyOptions::new;
    let _: fn(CopyOptions, String) -> CopyOptions = CopyOptions::snapshot;
    let _: fn(CopyOptions, bool) -> CopyOptions = CopyOptions::dry_run;
    let _: fn(&Error) -> ErrorKind = Error::kind;

    // The outcome fields a caller reads.
    let _ = |b: BackupOutcome| -> (Option<SnapshotId>, u64, u64, u64, u64, Vec<(String, String)>) {
        (
            b.snapshot,
            b.files_new,
            b.files_changed,
            b.files_unmodified,
            b.data_added,
            b.errors,
        )
    };
    let _ = |r: RestoreOutcome| -> (u64, u64, u64, Vec<(String, String)>) { (r.files, r.dirs, r.bytes, r.errors) };
    let _ = |c: CheckOutcome| -> (u64, u64, Vec<String>) { (c.snapshots, c.packs, c.errors) };
    let _ = |e: ExportOutcome| -> (PathBuf, Option<PathBuf>, u64, u64, u64, Vec<(String, String)>) {
        (e.path, e.manifest, e.files, e.bytes, e.bytes_written, e.skipped)
    };
    let _ = |p: PruneOutcome| -> (Vec<SnapshotId>, usize, u64, usize) {
        (p.forgotten, p.deleted_packs, p.deleted_bytes, p.waiting_packs)
    };
    let _ = |s: SnapshotInfo| {
        let _: (SnapshotId, (i64, u32), String, String, String) = (s.id, s.time, s.time_text, s.hostname, s.username);
        let _: (Vec<Vec<u8>>, Vec<String>, Option<String>, Option<SnapshotId>) = (s.paths, s.tags, s.note, s.parent);
        let _: (Option<String>, Option<String>, Option<bool>) = (s.git_commit, s.git_branch, s.git_dirty);
    };
    let _ = |c: Change| -> (String, ChangeKind) { (c.path, c.kind) };
    let _ = |c: CopyOutcome| -> (Vec<(SnapshotId, Option<SnapshotId>)>, Vec<SnapshotId>, u64) {
        (c.copied, c.skipped, c.data_added)
    };
}

struct Fixture {
    tmp: tempfile::TempDir,
    open: OpenOptions,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let open = OpenOptions::new()
            .cache_dir(tmp.path().join("cache"))
            .state_dir(tmp.path().join("state"));
        Fixture { tmp, open }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn location(&self) -> String {
        self.path("repo").to_str().unwrap().to_string()
    }

    fn init(&self) -> Repository {
        let init = InitOptions::new().kdf(1024, 1).open_options(self.open.clone());
        Repository::init(&self.location(), &Credentials::password("pw"), &init).unwrap()
    }
}

/// Counts what a command reports.
#[derive(Default)]
struct Counting {
    bytes: AtomicU64,
    files: AtomicU64,
}

impl Progress for Counting {
    fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    fn file_done(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn backup_restore_ls_check_and_prune_through_the_library() {
    let f = Fixture::new();
    let src = f.path("project");
    std::fs::create_dir_all(src.join("src")).unwrap();
    std::fs::write(src.join("src/lib.rs"), vec![b'x'; 100_000]).unwrap();
    std::fs::write(src.join("README"), "readme").unwrap();
    std::fs::create_dir_all(src.join("target")).unwrap();
    std::fs::write(src.join("target/big.o"), "object").unwrap();
    let mut repo = f.init();

    let progress = Counting::default();
    let first = repo
        .backup(
            &BackupOptions::new([&src]).tag("t1").note("first").exclude("target/"),
            &progress,
        )
        .unwrap();
    assert_eq!(first.files_new, 2, "{first:?}");
    assert!(progress.bytes.load(Ordering::Relaxed) >= 100_006);
    let id1 = first.snapshot.unwrap();
    let info = repo.snapshot("latest").unwrap();
    assert_eq!(
        (info.id, info.tags.clone(), info.note.clone()),
        (id1, vec!["t1".to_string()], Some("first".into()))
    );

    let mut listed = Vec::new();
    repo.ls(&id1.to_hex()[..8], None, &mut |p, size| {
        listed.push((p.to_string(), size))
    })
    .unwrap();
    assert!(listed.contains(&("/src/lib.rs".to_string(), 100_000)), "{listed:?}");
    assert!(!listed.iter().any(|(p, _)| p.contains("target")), "{listed:?}");

    // Unchanged: nothing new, nothing read again; the parent is the first snapshot.
    let second = repo
        .backup(&BackupOptions::new([&src]).exclude("target/"), &NoProgress)
        .unwrap();
    assert_eq!(
        (second.files_new, second.files_changed, second.files_unmodified),
        (0, 0, 2)
    );
    assert_eq!(repo.snapshot("latest").unwrap().parent, Some(id1));

    let target = f.path("restored");
    let r = repo
        .restore(
            "latest",
            &RestoreOptions::new(&target).include("src/**").verify(true),
            &NoProgress,
        )
        .unwrap();
    assert_eq!((r.files, r.errors.len()), (1, 0), "{r:?}");
    assert_eq!(std::fs::read(target.join("src/lib.rs")).unwrap(), vec![b'x'; 100_000]);
    assert!(!target.join("README").exists());

    let c = repo.check(&CheckOptions::new().read_data(true), &NoProgress).unwrap();
    assert!(c.ok() && c.snapshots == 2 && c.packs >= 1, "{c:?}");

    // Another handle (a second process would do the same) sees both snapshots.
    let again = Repository::open(&f.location(), &Credentials::password("pw"), &f.open).unwrap();
    assert_eq!(again.snapshots().unwrap().len(), 2);
    drop(again);

    let dry = repo
        .prune(&PruneOptions::new().keep_last(1).dry_run(true), &NoProgress)
        .unwrap();
    assert_eq!(dry.forgotten, [id1]);
    assert_eq!(repo.snapshots().unwrap().len(), 2, "a dry run forgets nothing");
    let p = repo.prune(&PruneOptions::new().keep_last(1), &NoProgress).unwrap();
    assert_eq!(p.forgotten, [id1]);
    assert_eq!(repo.snapshots().unwrap().len(), 1);
    assert!(
        repo.check(&CheckOptions::new().read_data(true), &NoProgress)
            .unwrap()
            .ok()
    );
}

#[test]
fn errors_have_kinds_a_caller_can_match() {
    let f = Fixture::new();
    let missing = Repository::open(&f.location(), &Credentials::password("pw"), &f.open).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");

    let repo = f.init();
    let wrong = Repository::open(&f.location(), &Credentials::password("guess"), &f.open).unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::WrongPassword, "{wrong}");
    let unknown = repo.snapshot("deadbeef").unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::NotFound, "{unknown}");
    let again = Repository::init(
        &f.location(),
        &Credentials::password("pw"),
        &InitOptions::new().kdf(1024, 1).open_options(f.open.clone()),
    )
    .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Invalid, "{again}");
    let bad = Repository::open("s3:", &Credentials::password("pw"), &f.open).unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::Invalid, "{bad}");

    // A password-less repository opens only when asked for as such.
    let insecure = f.path("insecure").to_str().unwrap().to_string();
    let init = InitOptions::new().kdf(1024, 1).open_options(f.open.clone());
    Repository::init(&insecure, &Credentials::InsecureNoPassword, &init).unwrap();
    Repository::open(&insecure, &Credentials::InsecureNoPassword, &f.open).unwrap();
}

#[test]
fn credentials_come_from_a_file_or_a_command() {
    let f = Fixture::new();
    f.init();
    let file = f.path("pw.txt");
    std::fs::write(&file, "pw\n").unwrap();
    Repository::open(&f.location(), &Credentials::PasswordFile(file.clone()), &f.open).unwrap();
    Repository::open(
        &f.location(),
        &Credentials::PasswordCommand("printf 'pw\\r\\n'".into()),
        &f.open,
    )
    .unwrap();
    std::fs::write(&file, "pw\n\n").unwrap();
    let two = Repository::open(&f.location(), &Credentials::PasswordFile(file), &f.open).unwrap_err();
    assert_eq!(
        two.kind(),
        ErrorKind::WrongPassword,
        "only one line break is dropped: {two}"
    );
    let failing = Repository::open(&f.location(), &Credentials::PasswordCommand("exit 3".into()), &f.open).unwrap_err();
    assert!(failing.to_string().contains("failed"), "{failing}");
}

#[test]
fn diff_copy_and_append_only_through_the_library() {
    let f = Fixture::new();
    let project = f.path("project");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("src/lib.rs"), "pub fn a() {}\n").unwrap();
    std::fs::write(project.join("old.txt"), "old").unwrap();
    let mut repo = f.init();
    let first = repo
        .backup(&BackupOptions::new([&project]), &NoProgress)
        .unwrap()
        .snapshot
        .unwrap();
    std::fs::write(project.join("src/lib.rs"), "pub fn b() {}\n").unwrap();
    std::fs::remove_file(project.join("old.txt")).unwrap();
    std::fs::write(project.join("new.txt"), "new").unwrap();
    repo.backup(&BackupOptions::new([&project]), &NoProgress).unwrap();

    let changes: Vec<(String, ChangeKind)> = repo
        .diff(&first.to_hex(), "latest")
        .unwrap()
        .into_iter()
        .map(|c| (c.path, c.kind))
        .collect();
    assert!(changes.contains(&("/new.txt".into(), ChangeKind::Added)), "{changes:?}");
    assert!(
        changes.contains(&("/old.txt".into(), ChangeKind::Removed)),
        "{changes:?}"
    );
    assert!(
        changes.contains(&("/src/lib.rs".into(), ChangeKind::Modified)),
        "{changes:?}"
    );
    assert_eq!(repo.diff("latest", "latest").unwrap(), []);

    // Copy into a second repository with another password; a dry run writes nothing, a
    // second run copies nothing.
    let init = InitOptions::new().kdf(1024, 1).open_options(f.open.clone());
    let offsite = f.path("offsite");
    let mut other = Repository::init(offsite.to_str().unwrap(), &Credentials::password("other"), &init).unwrap();
    let dry = repo
        .copy(&mut other, &CopyOptions::new().dry_run(true), &NoProgress)
        .unwrap();
    assert_eq!(dry.copied.len(), 2);
    assert!(dry.copied.iter().all(|(_, to)| to.is_none()));
    assert!(other.snapshots().unwrap().is_empty());
    let done = repo.copy(&mut other, &CopyOptions::new(), &NoProgress).unwrap();
    assert_eq!(done.copied.len(), 2);
    assert!(done.copied.iter().all(|(_, to)| to.is_some()));
    let again = repo
        .copy(&mut other, &CopyOptions::new().snapshot("latest"), &NoProgress)
        .unwrap();
    assert!(again.copied.is_empty() && again.skipped.len() == 1);
    let out = f.path("out");
    other
        .restore("latest", &RestoreOptions::new(&out), &NoProgress)
        .unwrap();
    assert_eq!(std::fs::read(out.join("src/lib.rs")).unwrap(), b"pub fn b() {}\n");
    assert!(
        other
            .check(&CheckOptions::new().read_data(true), &NoProgress)
            .unwrap()
            .ok()
    );
    for n in 1..=3 {
        let part = other
            .check(&CheckOptions::new().read_data_part(n, 3), &NoProgress)
            .unwrap();
        assert!(part.ok(), "{:?}", part.errors);
    }
    let e = other
        .check(&CheckOptions::new().read_data_part(4, 3), &NoProgress)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);

    // Append-only: backups work, pruning is refused before anything changes.
    let files = |dir: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = walk(dir);
        v.sort();
        v
    };
    let mut ro = Repository::open(
        &f.location(),
        &Credentials::password("pw"),
        &f.open.clone().append_only(true),
    )
    .unwrap();
    ro.backup(&BackupOptions::new([&project]).tag("ro"), &NoProgress)
        .unwrap();
    let before = files(&f.path("repo/snapshots"));
    let e = ro
        .prune(&PruneOptions::new().forget(first.to_hex()), &NoProgress)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.to_string().contains("append-only"), "{e}");
    let dry = ro
        .prune(&PruneOptions::new().keep_last(1).dry_run(true), &NoProgress)
        .unwrap();
    assert_eq!(dry.forgotten.len(), 2);
    assert_eq!(files(&f.path("repo/snapshots")), before);
    assert_eq!(ro.snapshots().unwrap().len(), 3);
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
