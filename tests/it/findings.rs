//! Regression tests for the faults hostile testing found in the repository's integrity
//! rules (lost index deltas, lost or damaged packs, shared damaged subtrees, two-phase
//! prune, unreadable objects, clocks, suspended prunes). Each test is named after the
//! fault it replays and ends with the repository passing `check --read-data` where the
//! data can be recovered. The other findings of the same review live beside the code they
//! concern: `fuse.rs` (short reads), `edges.rs` (CLI edges), `views.rs` (restore, import,
//! export naming, signals).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use projectclone::backend::local::LocalBackend;
use projectclone::backend::{Backend, Dir, ObjectInfo, Written};
use projectclone::backup::{BackupOptions, backup};
use projectclone::format::NodeKind;
use projectclone::id::BlobId;
use projectclone::lock::{self, LockMode};
use projectclone::progress::NoProgress;
use projectclone::prune::{PruneOptions, policy::KeepRules};
use projectclone::repo::{InitOptions, Repository};

use crate::util::*;

const MIN: i64 = 60 * 1_000_000_000;

fn objects(env: &Env, dir: &str) -> Vec<PathBuf> {
    files_under(&env.repo().join(dir))
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

fn pack_set(env: &Env) -> BTreeSet<PathBuf> {
    objects(env, "packs").into_iter().collect()
}

/// The packs that the last command wrote, the largest first.
fn new_packs(env: &Env, before: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = pack_set(env).difference(before).cloned().collect();
    v.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).unwrap().len()));
    v
}

/// Back up `src` and return (snapshot id, the index deltas and packs it wrote).
fn backup_noting(env: &Env, src: &Path) -> (String, Vec<PathBuf>, Vec<PathBuf>) {
    let deltas: BTreeSet<PathBuf> = objects(env, "index").into_iter().collect();
    let packs = pack_set(env);
    let id = env.backup([src]);
    let new_deltas = objects(env, "index")
        .into_iter()
        .filter(|d| !deltas.contains(d))
        .collect();
    (id, new_deltas, new_packs(env, &packs))
}

#[track_caller]
fn assert_restores(env: &Env, snap: &str, src: &Path) {
    let t = env.path(format!("restored-{snap}-{}", SEQ.fetch_add(1, Ordering::Relaxed)));
    env.restore(snap, &t);
    assert_trees_equal(src, &t, false);
    fs::remove_dir_all(&t).unwrap();
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

#[track_caller]
fn check_clean(env: &Env, context: &str) {
    let out = env.run(["check", "--read-data"]);
    assert_eq!(
        out.code, 0,
        "{context}: check --read-data\n{}{}",
        out.stdout, out.stderr
    );
}

/// Two snapshots, the second adding `b.bin` in packs of its own; then the second backup's
/// index delta is lost.
fn lost_delta() -> (Env, PathBuf, String, String) {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.bin"), random_bytes(1, 400_000));
    age_tree(&src);
    let (first, _, _) = backup_noting(&env, &src);
    write(src.join("b.bin"), random_bytes(2, 700_000));
    age_tree(&src);
    let (second, deltas, packs) = backup_noting(&env, &src);
    assert_eq!(deltas.len(), 1);
    assert!(!packs.is_empty());
    fs::remove_file(&deltas[0]).unwrap();
    (env, src, first, second)
}

#[test]
fn prune_after_a_lost_index_delta_keeps_the_data_that_delta_listed() {
    let (env, src, first, second) = lost_delta();
    // Twice: the second run would delete what the first condemned.
    let p = env.run(["--json", "prune"]).success().json();
    assert!(
        !p["reindexed_packs"].as_array().unwrap().is_empty(),
        "prune must index the packs a lost delta listed before judging anything unused: {p:#}"
    );
    env.run(["prune"]).success();
    assert_restores(&env, &second, &src);
    assert_eq!(env.snapshots().len(), 2);
    check_clean(&env, "after the prunes");
    let _ = first;
    // A dry run never writes, so it cannot re-index: it refuses and says what to run.
    let (env, _, _, _) = lost_delta();
    let out = env.run(["prune", "--dry-run"]).failure();
    assert!(out.stderr.contains("repair index"), "{}", out.stderr);
}

#[test]
fn check_tells_unindexed_data_from_lost_data_and_repair_snapshots_keeps_it() {
    let (env, src, first, second) = lost_delta();
    let out = env.run(["--json", "check"]).failure();
    let c = out.json();
    assert!(c["unindexed_chunks"].as_u64().unwrap() > 0, "{c:#}");
    assert_eq!(c["lost_chunks"], 0, "present data reported as lost: {c:#}");
    let text = env.run(["check"]).failure();
    let all = text.stdout + &text.stderr;
    assert!(all.contains("repair index"), "check must point to repair index:\n{all}");
    assert!(
        !all.contains("harmless"),
        "check calls packs holding live data harmless:\n{all}"
    );

    // Following the advice that used to wipe snapshots: repair snapshots, then prune twice.
    let plan = env.run(["--json", "repair", "snapshots", "--dry-run"]).success().json();
    assert!(plan["repaired"].as_array().unwrap().is_empty(), "{plan:#}");
    let r = env.run(["--json", "repair", "snapshots"]).success().json();
    assert!(r["repaired"].as_array().unwrap().is_empty(), "{r:#}");
    assert!(!r["reindexed_packs"].as_array().unwrap().is_empty(), "{r:#}");
    env.run(["prune"]).success();
    env.run(["prune"]).success();
    assert_restores(&env, &second, &src);
    let ids: BTreeSet<String> = env
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, BTreeSet::from([first, second]));
    check_clean(&env, "after repair snapshots and two prunes");
}

#[test]
fn repair_snapshots_keeps_the_damaged_originals_unless_told() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a"), random_bytes(3, 200_000));
    age_tree(&src);
    env.backup([&src]);
    write(src.join("b"), random_bytes(4, 300_000));
    age_tree(&src);
    let (second, _, packs) = backup_noting(&env, &src);
    fs::remove_file(&packs[0]).unwrap();
    let r = env.run(["--json", "repair", "snapshots"]).success().json();
    assert_eq!(r["repaired"][0]["old"], second.as_str());
    let ids: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ids.contains(&second),
        "the damaged original was removed without being asked"
    );
    assert_eq!(ids.len(), 3);
}

/// Data lost from a pack: check remembers it, the next backup of the same files stores the
/// chunks again, `repair index` drops what is gone, and every snapshot is whole again.
#[test]
fn backup_after_a_pack_is_lost_stores_its_chunks_again() {
    for damage in ["delete", "truncate", "flip"] {
        let env = Env::with_repo();
        let src = env.path("src");
        write(src.join("a.bin"), random_bytes(5, 900_000));
        write(src.join("small.txt"), b"small\n");
        age_tree(&src);
        let (first, _, packs) = backup_noting(&env, &src);
        let data = &packs[0];
        match damage {
            "delete" => fs::remove_file(data).unwrap(),
            "truncate" => {
                let len = fs::metadata(data).unwrap().len();
                fs::OpenOptions::new()
                    .write(true)
                    .open(data)
                    .unwrap()
                    .set_len(len / 2)
                    .unwrap();
            }
            _ => {
                let mut b = fs::read(data).unwrap();
                b[200] ^= 0x40;
                fs::write(data, b).unwrap();
            }
        }
        let out = env.run(["check", "--read-data"]).failure();
        assert!(
            (out.stdout.clone() + &out.stderr).contains("repair index"),
            "{damage}: {}",
            out.stdout
        );
        // The source is unchanged: the backup re-reads the files whose chunks are gone.
        let b = env.backup_json([&src]);
        assert!(
            b["data_added"].as_u64().unwrap() > 800_000,
            "{damage}: the backup stored nothing for the lost chunks: {b:#}"
        );
        env.run(["repair", "index"]).success();
        check_clean(&env, damage);
        assert_restores(&env, &first, &src);
        assert_restores(&env, b["snapshot_id"].as_str().unwrap(), &src);
    }
}

/// Even `rm -rf packs/` then `repair index`, without a check first.
#[test]
fn backup_after_all_packs_are_gone_and_repair_index_stores_everything_again() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.bin"), random_bytes(6, 600_000));
    write(src.join("d/b.txt"), b"b\n");
    age_tree(&src);
    let first = env.backup([&src]);
    fs::remove_dir_all(env.repo().join("packs")).unwrap();
    fs::create_dir(env.repo().join("packs")).unwrap();
    env.run(["repair", "index"]).success();
    let b = env.backup_json([&src]);
    assert!(b["data_added"].as_u64().unwrap() > 600_000, "{b:#}");
    check_clean(&env, "after the backup that stored everything again");
    assert_restores(&env, &first, &src);
}

#[test]
fn check_names_every_snapshot_that_shares_a_damaged_file() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("shared/dir/f.bin"), random_bytes(7, 300_000));
    // Enough entries that the directory is a tree of its own (not inline in its parent),
    // reached by every snapshot through the same tree id.
    for i in 0..40 {
        write(
            src.join(format!("shared/dir/file-with-a-long-name-{i:03}.txt")),
            format!("{i}\n"),
        );
    }
    write(src.join("x"), b"1");
    age_tree(&src);
    let (s1, _, packs) = backup_noting(&env, &src);
    write(src.join("x"), b"2");
    let s2 = env.backup([&src]);
    write(src.join("x"), b"3");
    let s3 = env.backup([&src]);
    let data = &packs[0];
    let mut b = fs::read(data).unwrap();
    b[300] ^= 1;
    fs::write(data, b).unwrap();
    let out = env.run(["--json", "check", "--read-data"]).failure();
    let c = out.json();
    let damaged: BTreeSet<String> = c["damaged_snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(damaged, BTreeSet::from([s1.clone(), s2.clone(), s3.clone()]), "{c:#}");
    for s in [&s1, &s2, &s3] {
        let line = format!("snapshot {}: file shared/dir/f.bin:", &s[..8]);
        assert!(
            c["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e.as_str().unwrap().starts_with(&line)),
            "{line} missing: {c:#}"
        );
    }
}

#[test]
fn one_prune_frees_space_when_no_other_client_holds_a_lock() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("gone.bin"), random_bytes(8, 2_000_000));
    write(src.join("keep.txt"), b"keep\n");
    age_tree(&src);
    let s1 = env.backup([&src]);
    fs::remove_file(src.join("gone.bin")).unwrap();
    let s2 = env.backup([&src]);
    let bytes = |env: &Env| -> u64 { pack_set(env).iter().map(|p| fs::metadata(p).unwrap().len()).sum() };
    let before = bytes(&env);
    let p = env.run(["--json", "forget", &s1, "--prune"]).success().json();
    assert!(!p["deleted_packs"].as_array().unwrap().is_empty(), "{p:#}");
    assert!(bytes(&env) + 1_900_000 < before, "one prune freed nothing");
    assert!(objects(&env, "condemned").is_empty());
    assert_restores(&env, &s2, &src);
    check_clean(&env, "after one prune");

    // With another client busy the packs wait, and the output says until when.
    write(src.join("gone2.bin"), random_bytes(9, 1_000_000));
    let s3 = env.backup([&src]);
    fs::remove_file(src.join("gone2.bin")).unwrap();
    env.backup([&src]);
    let busy = forge_lock_at(&env, "laptop", 77, now_ns(), now_ns(), now_ns());
    let out = env.run(["forget", &s3, "--prune"]).success();
    let text = out.stdout + &out.stderr;
    assert!(text.contains("laptop") && text.contains("frees the space"), "{text}");
    assert_eq!(objects(&env, "condemned").len(), 1);
    fs::remove_file(busy).unwrap();
    let p = env.run(["--json", "prune"]).success().json();
    assert!(!p["deleted_packs"].as_array().unwrap().is_empty(), "{p:#}");
    check_clean(&env, "after the second prune");
}

#[test]
fn an_unreadable_object_that_blocks_prune_is_removed_by_repair() {
    // An index delta and a condemned record that fail to authenticate.
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.bin"), random_bytes(10, 500_000));
    age_tree(&src);
    let s1 = env.backup([&src]);
    write(src.join("b.bin"), random_bytes(11, 500_000));
    age_tree(&src);
    let (s2, deltas, _) = backup_noting(&env, &src);
    let busy = forge_lock_at(&env, "laptop", 78, now_ns(), now_ns(), now_ns());
    env.run(["forget", &s1, "--prune"]).success();
    fs::remove_file(busy).unwrap();
    for f in [&deltas[0], &objects(&env, "condemned")[0]] {
        let mut b = fs::read(f).unwrap();
        let n = b.len();
        b[n - 3] ^= 1;
        fs::write(f, b).unwrap();
    }
    // As another client (or this one after its cache is rebuilt) meets them.
    fs::remove_dir_all(env.cache()).unwrap();
    let out = env.run(["prune"]).failure();
    assert!(out.stderr.contains("repair index --dry-run"), "{}", out.stderr);
    let before = fingerprint(&env.repo());
    let plan = env.run(["--json", "repair", "index", "--dry-run"]).success().json();
    assert_eq!(fingerprint(&env.repo()), before, "the dry run changed the repository");
    assert_eq!(plan["removed_objects"].as_array().unwrap().len(), 2, "{plan:#}");
    env.run(["repair", "index"]).success();
    env.run(["prune"]).success();
    check_clean(&env, "after repair index removed the unreadable objects");
    assert_restores(&env, &s2, &src);

    // An unreadable snapshot: `repair snapshots --forget-unreadable`.
    let snap = env.repo().join("snapshots").join(&s2);
    let mut b = fs::read(&snap).unwrap();
    b[40] ^= 1;
    fs::write(&snap, b).unwrap();
    // Found by check even though the cache holds the snapshot as it read before.
    let out = env.run(["check"]).failure();
    assert!(out.stdout.contains("unreadable snapshot"), "{}", out.stdout);
    fs::remove_dir_all(env.cache()).unwrap();
    let out = env.run(["prune"]).failure();
    assert!(out.stderr.contains("--forget-unreadable"), "{}", out.stderr);
    let before = fingerprint(&env.repo());
    env.run(["repair", "snapshots", "--dry-run", "--forget-unreadable"])
        .success();
    assert_eq!(fingerprint(&env.repo()), before);
    env.run(["repair", "snapshots", "--forget-unreadable"]).success();
    assert!(!snap.exists());
    env.run(["prune"]).success();
    check_clean(&env, "after the unreadable snapshot was removed");
}

#[test]
fn repair_snapshots_treats_a_pack_with_io_errors_as_damaged() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("keep"), random_bytes(12, 100_000));
    age_tree(&src);
    env.backup([&src]);
    write(src.join("lost.bin"), random_bytes(13, 400_000));
    age_tree(&src);
    let (second, _, packs) = backup_noting(&env, &src);
    // Reading it fails with EISDIR, not "not found".
    fs::remove_file(&packs[0]).unwrap();
    fs::create_dir(&packs[0]).unwrap();
    let r = env
        .run(["--json", "repair", "snapshots", "--forget-originals"])
        .success()
        .json();
    assert_eq!(r["repaired"][0]["old"], second.as_str(), "{r:#}");
    assert_eq!(r["repaired"][0]["dropped"], serde_json::json!(["/lost.bin"]));
    let t = env.path("out");
    env.restore(r["repaired"][0]["new"].as_str().unwrap(), &t);
    assert_eq!(fs::read(t.join("keep")).unwrap(), random_bytes(12, 100_000));
}

/// Locks are judged by the store's clock (the time it wrote each lock object), so a
/// client whose clock runs ahead or behind neither keeps its lock forever nor loses it.
#[test]
fn locks_from_clocks_ahead_or_behind_are_judged_by_the_store_clock() {
    let env = Env::with_repo();
    let now = now_ns();
    // Refreshed "two hours from now" by its own clock, written 31 minutes ago: stale.
    let ahead = forge_lock_at(&env, "fast-clock", 1, now + 120 * MIN, now + 120 * MIN, now - 31 * MIN);
    // Refreshed "two hours ago" by its own clock, written just now: live.
    let behind = forge_lock_at(&env, "slow-clock", 2, now - 120 * MIN, now - 120 * MIN, now);
    let u = env.run(["--json", "unlock"]).success().json();
    assert_eq!(u["removed"], 1, "{u}");
    assert!(!ahead.exists(), "a lock not written for 31 minutes survived unlock");
    assert!(
        behind.exists(),
        "a live lock was removed because its holder's clock is behind"
    );

    // The message for a live lock says how long ago it was refreshed and when it expires.
    let exclusive = env.run(["key", "list"]).failure();
    assert!(exclusive.stderr.contains("slow-clock"), "{}", exclusive.stderr);
    assert!(exclusive.stderr.contains("last refreshed"), "{}", exclusive.stderr);
    // `unlock --remove-all` removes live locks, with a warning.
    let out = env.run(["unlock", "--remove-all"]).success();
    assert!(out.stderr.contains("removed a live lock"), "{}", out.stderr);
    assert!(!behind.exists());
    env.run(["key", "list"]).success();
}

/// Prune waits for exactly the clients that were live when its record became visible,
/// whatever their clocks say (gap G3).
#[test]
fn condemned_packs_wait_for_a_client_whose_clock_runs_ahead() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("x.bin"), random_bytes(14, 1_500_000));
    write(src.join("y"), b"y");
    age_tree(&src);
    let s1 = env.backup([&src]);
    fs::remove_file(src.join("x.bin")).unwrap();
    env.backup([&src]);
    let now = now_ns();
    // A backup on a machine whose clock runs an hour ahead, live on the store's clock.
    let fast = forge_lock_at(&env, "fast-clock", 3, now + 60 * MIN, now + 60 * MIN, now);
    let p1 = env.run(["--json", "forget", &s1, "--prune"]).success().json();
    assert!(p1["deleted_packs"].as_array().unwrap().is_empty(), "{p1:#}");
    let marked = objects(&env, "condemned");
    assert_eq!(marked.len(), 1);
    let p2 = env.run(["--json", "prune"]).success().json();
    assert!(
        p2["deleted_packs"].as_array().unwrap().is_empty(),
        "deleted while a client that did not know the mark was live: {p2:#}"
    );
    fs::remove_file(fast).unwrap();
    let p3 = env.run(["--json", "prune"]).success().json();
    assert!(!p3["deleted_packs"].as_array().unwrap().is_empty(), "{p3:#}");
    check_clean(&env, "after the prune");
}

/// `check` syncs the cache after taking its lock (gap G1): packs a prune deleted between
/// the check's open and its lock are not reported missing.
#[test]
fn a_command_that_locks_sees_what_a_prune_did_after_it_opened() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("gone.bin"), random_bytes(15, 1_000_000));
    age_tree(&src);
    let s1 = env.backup([&src]);
    fs::remove_file(src.join("gone.bin")).unwrap();
    env.backup([&src]);
    let mut repo = Repository::open(
        Arc::new(LocalBackend::new(env.repo())),
        Some(PASSWORD.as_bytes()),
        &env.path("other-cache"),
    )
    .unwrap();
    env.run(["forget", &s1, "--prune"]).success();
    let _g = repo.lock(LockMode::Shared, "check").unwrap();
    let r = projectclone::check::check(&repo, true).unwrap();
    assert!(r.ok(), "{:?}", r.errors);
}

/// A store that removes every lock object after the first pack deletion, as another
/// client would once our lock looked stale.
struct LoseLockAfterFirstPackDelete {
    inner: LocalBackend,
    root: PathBuf,
    pack_deletes: AtomicUsize,
}

impl Backend for LoseLockAfterFirstPackDelete {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn list(&self, dir: Dir) -> projectclone::Result<Vec<(String, u64)>> {
        self.inner.list(dir)
    }
    fn list_info(&self, dir: Dir) -> projectclone::Result<Vec<ObjectInfo>> {
        self.inner.list_info(dir)
    }
    fn read(&self, path: &str) -> projectclone::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn read_range(&self, path: &str, offset: u64, len: usize) -> projectclone::Result<Vec<u8>> {
        self.inner.read_range(path, offset, len)
    }
    fn size(&self, path: &str) -> projectclone::Result<u64> {
        self.inner.size(path)
    }
    fn write_new(&self, path: &str, bytes: &[u8]) -> projectclone::Result<Written> {
        self.inner.write_new(path, bytes)
    }
    fn delete(&self, path: &str) -> projectclone::Result<()> {
        self.inner.delete(path)?;
        if path.starts_with("packs/") && self.pack_deletes.fetch_add(1, Ordering::SeqCst) == 0 {
            for l in files_under(&self.root.join("locks")) {
                fs::remove_file(l).unwrap();
            }
        }
        Ok(())
    }
    fn exists(&self, path: &str) -> projectclone::Result<bool> {
        self.inner.exists(path)
    }
    fn create(&self) -> projectclone::Result<()> {
        self.inner.create()
    }
}

/// A prune that loses its lock (suspended past staleness, removed by another client)
/// stops before its next deletion (gap G7); a lock not refreshed for 29 minutes is lost
/// even if the refresher wakes up.
#[test]
fn a_prune_that_loses_its_lock_stops_before_the_next_deletion() {
    let env = Env::new();
    let src = env.path("src");
    // 1 MiB packs: the forgotten file fills several.
    write(src.join("gone.bin"), random_bytes(16, 4_000_000));
    write(src.join("keep"), b"keep");
    let cache = env.cache();
    let opts = InitOptions {
        kdf: projectclone::crypto::KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        },
        pack_target: Some(1 << 20),
        ..Default::default()
    };
    let mut repo = Repository::init(Arc::new(LocalBackend::new(env.repo())), None, &opts, &cache).unwrap();
    let bopts = |p: &Path| BackupOptions {
        paths: vec![p.to_path_buf()],
        hostname: "h".into(),
        ..Default::default()
    };
    let s1 = backup(&mut repo, &bopts(&src), &NoProgress, None)
        .unwrap()
        .snapshot_id
        .unwrap();
    fs::remove_file(src.join("gone.bin")).unwrap();
    backup(&mut repo, &bopts(&src), &NoProgress, None).unwrap();
    drop(repo);
    let backend = Arc::new(LoseLockAfterFirstPackDelete {
        inner: LocalBackend::new(env.repo()),
        root: env.repo(),
        pack_deletes: AtomicUsize::new(0),
    });
    let mut repo = Repository::open(backend.clone(), None, &cache).unwrap();
    let guard = repo.lock(LockMode::Shared, "prune").unwrap();
    let popts = PruneOptions {
        rules: KeepRules::default(),
        forget: vec![s1],
        gc: true,
        dry_run: false,
        repack_threshold: 0.1,
        tz: jiff::tz::TimeZone::UTC,
        hostname: "h".into(),
        own_lock: Some(guard.object_id()),
        scope: Default::default(),
    };
    let res = projectclone::prune::run(&mut repo, &popts, Some(&guard));
    let err = res.expect_err("the prune went on without its lock");
    assert!(err.to_string().contains("lock"), "{err}");
    assert_eq!(
        backend.pack_deletes.load(Ordering::SeqCst),
        1,
        "deleted after losing its lock"
    );
    drop(guard);
    drop(repo);
    env.run(["--insecure-no-password", "--json", "prune"]).success();
    env.run(["--insecure-no-password", "check", "--read-data"]).success();

    // The refresher does not revive a lock that went unrefreshed past the margin.
    let repo = Repository::open(Arc::new(LocalBackend::new(env.repo())), None, &cache).unwrap();
    let g = lock::acquire(&repo, LockMode::Shared, "prune").unwrap();
    assert!(g.still_valid());
    g.backdate_for_tests(Duration::from_secs(29 * 60 + 30));
    g.refresh_for_tests();
    assert!(
        !g.still_valid(),
        "a lock unrefreshed for 29.5 minutes was refreshed and counted on"
    );
}

/// Blob `x` stored twice: alone in pack A (whose copy is then damaged) and in pack B beside
/// a blob nothing uses. One snapshot uses `x`. Returns (env, x, snapshot, B's name).
fn damaged_duplicate() -> (Env, Vec<u8>, String, String) {
    let env = Env::with_repo();
    let x = random_bytes(17, 50_000);
    let mut f = Forge::open(&env);
    let data = f.data(&x);
    let a = f.flush(true);
    f.data(&x);
    f.data(&random_bytes(18, 300_000));
    let b = f.flush(true);
    let tree = f.tree(vec![node(b"x", NodeKind::File(data))], None);
    let snap = f.snapshot(tree, "x only");
    drop(f);
    let f = Forge::open(&env);
    let id = BlobId(f.repo.keys.chunk_id(&x));
    let loc = f
        .repo
        .index
        .lookup(&id)
        .unwrap()
        .into_iter()
        .find(|l| l.pack.to_hex() == a)
        .unwrap();
    drop(f);
    let a_path = env.repo().join("packs").join(&a[..2]).join(&a);
    let mut bytes = fs::read(&a_path).unwrap();
    bytes[(loc.offset + 40) as usize] ^= 1;
    fs::write(&a_path, bytes).unwrap();
    (env, x, snap, b)
}

/// A damaged copy is not a copy (gap G13): prune copies the live blob out of a partly used
/// pack instead of condemning it because another copy exists, when that copy is damaged:
/// damage a check found, and damage nobody has seen yet (the prune reads the copy first).
#[test]
fn prune_does_not_count_a_damaged_copy_as_a_copy() {
    for checked_first in [true, false] {
        let (env, x, snap, b) = damaged_duplicate();
        if checked_first {
            env.run(["check", "--read-data"]).failure();
        }
        let p = env.run(["--json", "prune", "--repack-threshold", "0"]).success().json();
        assert!(
            p["repacked_packs"].as_array().unwrap().iter().any(|v| v == b.as_str()),
            "checked first: {checked_first}: pack B condemned without copying x, whose other copy is damaged: {p:#}"
        );
        let t = env.path("out");
        env.restore(&snap, &t);
        assert_eq!(fs::read(t.join("x")).unwrap(), x);
        env.run(["repair", "index"]).success();
        check_clean(&env, "after repair index dropped the damaged copy");
    }
}

/// A damaged pack, found by check and salvaged by `repair index` (twice, as a script may):
/// the next backup of the same files still stores the lost chunk again, and check then
/// does not send the user back to `repair index` for the salvaged pack's leftovers.
#[test]
fn after_repair_index_salvages_a_pack_backups_store_its_lost_chunks_and_check_does_not_loop() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.bin"), random_bytes(19, 600_000));
    age_tree(&src);
    let (first, _, packs) = backup_noting(&env, &src);
    let mut b = fs::read(&packs[0]).unwrap();
    b[100] ^= 1;
    fs::write(&packs[0], b).unwrap();
    env.run(["check", "--read-data"]).failure();
    env.run(["repair", "index"]).success();
    env.run(["repair", "index"]).success();
    let c = env.run(["--json", "check"]).failure().json();
    assert_eq!(
        c["unindexed_chunks"], 0,
        "check calls a salvaged pack's damaged data recoverable: {c:#}"
    );
    assert!(c["lost_chunks"].as_u64().unwrap() > 0, "{c:#}");
    let b = env.backup_json([&src]);
    assert!(
        b["data_added"].as_u64().unwrap() > 0,
        "the backup reused the lost chunk: {b:#}"
    );
    check_clean(&env, "after the backup stored the lost chunk again");
    assert_restores(&env, &first, &src);
}
