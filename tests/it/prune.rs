//! Issue 3: `forget`, `prune` (retention rules in local time, two-phase garbage collection,
//! repacking), `repair index`, `unlock`, `key passwd/add/list/remove` and
//! `check --read-data-subset`.
//!
//! Prune's contract (format-spec §12): the first prune after snapshots are forgotten only
//! condemns the packs nothing uses (REPO/condemned/ID, with the time of marking); a later
//! prune deletes them once every lock older than the mark is gone and no snapshot needs
//! them, and un-condemns them otherwise. Backups never dedup into a condemned pack.
//!
//! Snapshot times come from the clock, so the calendar rules are tested on snapshots
//! forged at chosen times through the library (`Forge::snapshot_at`), and through the CLI
//! with `TZ` set for the child process. Races that depend on the order of two processes'
//! steps are replayed deterministically through the library (the same calls, in the same
//! order, as the CLI makes), with a second cache directory standing for a second machine.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use projectclone::backend::local::LocalBackend;
use projectclone::backup::{BackupOptions, backup};
use projectclone::format::{Node, NodeKind, Time};
use projectclone::id::BlobId;
use projectclone::lock::{self, LockGuard, LockMode};
use projectclone::progress::NoProgress;
use projectclone::prune::{PruneOptions, policy::KeepRules};
use projectclone::repo::Repository;
use serde_json::Value;

use crate::util::*;

// ---------------------------------------------------------------- helpers

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A path in the test's directory that no other call returned.
fn fresh(env: &Env, what: &str) -> PathBuf {
    env.path(format!("{what}-{}", SEQ.fetch_add(1, Ordering::Relaxed)))
}

/// Snapshot ids, oldest first.
fn ids(env: &Env) -> Vec<String> {
    env.snapshots()
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

/// Restore `snap` into a fresh directory and fingerprint it (types, modes, bytes).
#[track_caller]
fn restored(env: &Env, snap: &str) -> BTreeMap<PathBuf, String> {
    let t = fresh(env, "restored");
    let out = env.run(["restore", snap, "--target", t.to_str().unwrap()]);
    assert_eq!(
        out.code, 0,
        "restore {snap} failed\nstdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    let fp = fingerprint(&t);
    fs::remove_dir_all(&t).expect("remove restored tree");
    fp
}

/// Restore `snap` and compare it with `src` exactly (bytes, modes, mtimes, owners, …).
#[track_caller]
fn assert_restores_exactly(env: &Env, snap: &str, src: &Path) {
    let t = fresh(env, "exact");
    env.restore(snap, &t);
    assert_trees_equal(src, &t, false);
    fs::remove_dir_all(&t).expect("remove restored tree");
}

#[track_caller]
fn check_read_data_ok(env: &Env, context: &str) {
    let out = env.run(["check", "--read-data"]);
    assert_eq!(
        out.code, 0,
        "{context}: check --read-data failed\nstdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
}

/// A JSON array of strings.
fn strs(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

/// `{id: (keep, reasons)}` from a prune/forget plan.
fn decisions(plan: &Value) -> BTreeMap<String, (bool, Vec<String>)> {
    plan["snapshots"]
        .as_array()
        .expect("plan.snapshots is an array")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().expect("id").to_string(),
                (
                    s["keep"].as_bool().expect("keep"),
                    s["reasons"]
                        .as_array()
                        .expect("reasons")
                        .iter()
                        .map(|r| r.as_str().expect("reason").to_string())
                        .collect(),
                ),
            )
        })
        .collect()
}

/// Pack names present in the repository (temporary files left out).
fn pack_names(env: &Env) -> BTreeSet<String> {
    files_under(&env.repo().join("packs"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn pack_bytes(env: &Env) -> u64 {
    files_under(&env.repo().join("packs"))
        .iter()
        .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn pack_path(env: &Env, hex: &str) -> PathBuf {
    env.repo().join("packs").join(&hex[..2]).join(hex)
}

/// Objects in a repository folder (temporary files left out).
fn objects(env: &Env, dir: &str) -> Vec<PathBuf> {
    files_under(&env.repo().join(dir))
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

/// Every entry below a repository folder, temporary files included.
fn listing(env: &Env, dir: &str) -> BTreeSet<PathBuf> {
    files_under(&env.repo().join(dir)).into_iter().collect()
}

/// The binary as a child process with the test's environment, `--cache-dir cache`.
fn child<I, S>(env: &Env, cache: &Path, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = Command::new(bin_path());
    for v in [
        "PROJECTCLONE_REPO",
        "PROJECTCLONE_PASSWORD_FILE",
        "PROJECTCLONE_CACHE_DIR",
        "PROJECTCLONE_NEW_PASSWORD",
        "PROJECTCLONE_LOG",
        "RUST_LOG",
    ] {
        c.env_remove(v);
    }
    c.env("PROJECTCLONE_PASSWORD", PASSWORD)
        .env("HOME", env.path("home"))
        .env("XDG_DATA_HOME", env.path("xdg-data"))
        .env("XDG_CACHE_HOME", env.path("xdg-cache"))
        .env("XDG_CONFIG_HOME", env.path("xdg-config"))
        .env("XDG_STATE_HOME", env.path("xdg-state"))
        .env("TZ", "UTC")
        .current_dir(env.root())
        .arg("-r")
        .arg(env.repo())
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn finish(c: Child) -> Out {
    let o = c.wait_with_output().expect("wait for the child");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        raw_stdout: o.stdout,
    }
}

fn signal(c: &Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(c.id() as i32).expect("pid");
    rustix::process::kill_process(pid, sig).expect("signal the child");
}

/// Wait until there are more than `before` lock objects (the child took its lock); false if
/// the child ended first.
fn wait_for_lock(env: &Env, c: &mut Child, before: usize) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if objects(env, "locks").len() > before {
            return true;
        }
        if c.try_wait().expect("try_wait").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    false
}

fn lib_open(env: &Env, cache: &str) -> Repository {
    Repository::open(
        Arc::new(LocalBackend::new(env.repo())),
        Some(PASSWORD.as_bytes()),
        &env.path(cache),
    )
    .unwrap_or_else(|e| panic!("open the repository through the library: {e}"))
}

/// A backup through the library with an already held lock (what `backup` does after
/// opening the repository and taking its lock).
fn lib_backup(repo: &mut Repository, src: &Path, guard: &LockGuard) -> projectclone::Result<String> {
    let opts = BackupOptions {
        paths: vec![src.to_path_buf()],
        hostname: "machine-b".into(),
        username: "tester".into(),
        ..Default::default()
    };
    backup(repo, &opts, &NoProgress, Some(guard)).map(|r| r.snapshot_id.expect("not a dry run").to_hex())
}

/// The node of `name` (a path inside the snapshot) in snapshot `snap`.
fn file_node(env: &Env, snap: &str, name: &str) -> Node {
    let f = Forge::open(env);
    let (_, s) = f.repo.resolve_snapshot(snap).expect("snapshot");
    f.repo
        .find_node(&s.tree, name.as_bytes())
        .expect("walk the snapshot")
        .unwrap_or_else(|| panic!("{name} in snapshot {snap}"))
}

/// The chunk ids of file `name` in snapshot `snap`.
fn file_chunks(env: &Env, snap: &str, name: &str) -> Vec<BlobId> {
    let n = file_node(env, snap, name);
    let NodeKind::File(d) = n.kind else {
        panic!("{name} is not a regular file")
    };
    let f = Forge::open(env);
    f.repo
        .chunk_list(&d.content)
        .expect("chunk list")
        .iter()
        .map(|c| BlobId(c.id.0))
        .collect()
}

/// The packs that hold any of `blobs`, per an index rebuilt from the repository now.
fn packs_holding(env: &Env, blobs: &[BlobId]) -> BTreeSet<String> {
    let cache = fresh(env, "lookup-cache");
    let repo = Repository::open(
        Arc::new(LocalBackend::new(env.repo())),
        Some(PASSWORD.as_bytes()),
        &cache,
    )
    .expect("open");
    let mut out = BTreeSet::new();
    for b in blobs {
        for l in repo.index.lookup(b).expect("lookup") {
            out.insert(l.pack.to_hex());
        }
    }
    out
}

/// Write a lock object as another client would, dated by the store at its last refresh.
fn forge_lock(env: &Env, host: &str, pid: u32, created_ns: i64, refreshed_ns: i64) -> PathBuf {
    forge_lock_at(env, host, pid, created_ns, refreshed_ns, refreshed_ns)
}

/// Another machine's backup, live while the returned file exists: prunes keep what they
/// condemn for a later run instead of deleting it at once.
fn other_client_busy(env: &Env) -> PathBuf {
    forge_lock(env, "another-machine", 4242, now_ns(), now_ns())
}

/// Version `i` of a small project: a stable file, a file of which one quarter changes per
/// version, the two newest "hot" files, and small text files. Old versions' data becomes
/// garbage, fully (hot files) or partly (the mixed file's packs).
fn project_version(src: &Path, i: usize, hot_size: usize) {
    if !src.join("stable.bin").exists() {
        write(src.join("stable.bin"), random_bytes(500, 600_000));
    }
    let mut mix = fs::read(src.join("mix.bin")).unwrap_or_else(|_| random_bytes(501, 1_600_000));
    let q = (i % 4) * 400_000;
    mix[q..q + 400_000].copy_from_slice(&random_bytes(1000 + i as u64, 400_000));
    write(src.join("mix.bin"), mix);
    write(
        src.join(format!("hot/{i}.bin")),
        random_bytes(2000 + i as u64, hot_size),
    );
    if i >= 2 {
        let _ = fs::remove_file(src.join(format!("hot/{}.bin", i - 2)));
    }
    for k in 0..10 {
        write(
            src.join(format!("small/{k}.txt")),
            format!("small {k} of version {}\n", if k % 3 == 0 { i } else { 0 }),
        );
    }
}

// ---------------------------------------------------------------- forget

#[test]
fn forget_by_id_prefix_and_latest() {
    let env = Env::with_repo();
    let src = env.path("src");
    let mut snaps = Vec::new();
    for i in 0..4 {
        write(src.join(format!("f{i}.txt")), format!("version {i}\n"));
        snaps.push(env.backup([&src]));
    }
    let packs = pack_names(&env);

    // An 8-digit prefix and a full id in one call.
    env.run(["forget", &snaps[0][..8], &snaps[1]]).success();
    assert_eq!(ids(&env), snaps[2..].to_vec());
    // forget alone collects no garbage: every pack is still there, nothing is condemned.
    assert_eq!(pack_names(&env), packs);
    assert!(objects(&env, "condemned").is_empty());

    // Unknown, too short or already forgotten: an error naming it; nothing is removed.
    for bad in ["deadbeef", "abc", &snaps[0]] {
        let out = env.run(["forget", bad]).failure();
        assert!(
            out.stderr.contains(bad),
            "forget {bad}: the error should name it: {}",
            out.stderr
        );
        assert_eq!(ids(&env), snaps[2..].to_vec());
    }
    // One bad id among good ones: nothing is removed.
    env.run(["forget", &snaps[2], "deadbeef"]).failure();
    assert_eq!(ids(&env), snaps[2..].to_vec());
    // Neither ids nor rules.
    let out = env.run(["forget"]).failure();
    assert!(out.stderr.contains("--keep"), "{}", out.stderr);

    env.run(["forget", "latest"]).success();
    assert_eq!(ids(&env), vec![snaps[2].clone()]);
    let fp = restored(&env, &snaps[2]);
    assert!(fp.contains_key(Path::new("f2.txt")) && !fp.contains_key(Path::new("f3.txt")));
    env.run(["check", "--read-data"]).success();
}

#[test]
fn dry_runs_change_nothing_and_print_the_plan() {
    let env = Env::with_repo();
    let src = env.path("src");
    let mut s = Vec::new();
    for i in 0..4u64 {
        // Each snapshot holds only its own file: its packs are used by nothing else.
        if i > 0 {
            fs::remove_file(src.join(format!("v{}.bin", i - 1))).unwrap();
        }
        write(src.join(format!("v{i}.bin")), random_bytes(300 + i, 300_000));
        let tag: &[&str] = if i % 2 == 0 { &["--tag", "release"] } else { &[] };
        let mut c = env.cmd();
        c.arg("backup").args(tag).arg(&src);
        s.push(run(&mut c).success().snapshot_id());
    }
    let before = fingerprint(&env.repo());
    let unchanged = |what: &str| {
        assert_eq!(fingerprint(&env.repo()), before, "{what} changed the repository");
    };

    let p = env
        .run([
            "--json",
            "forget",
            "--keep-last",
            "1",
            "--keep-tag",
            "release",
            "--dry-run",
        ])
        .success()
        .json();
    unchanged("forget --keep-last 1 --keep-tag release --dry-run");
    assert_eq!(p["dry_run"], true);
    assert_eq!(p["forgotten"], 1);
    let d = decisions(&p);
    assert_eq!(d.len(), 4, "{p:#}");
    assert_eq!(d[&s[3]], (true, vec!["last 1".to_string()]));
    assert_eq!(d[&s[2]], (true, vec!["tag release".to_string()]));
    assert_eq!(d[&s[1]], (false, vec![]));
    assert_eq!(d[&s[0]], (true, vec!["tag release".to_string()]));
    for k in ["deleted_packs", "condemned_packs", "repacked_packs"] {
        assert!(strs(&p[k]).is_empty(), "forget without --prune plans no {k}: {p:#}");
    }

    // With --prune the plan names the packs only the forgotten snapshots use.
    let p = env
        .run(["--json", "forget", "--keep-last", "1", "--dry-run", "--prune"])
        .success()
        .json();
    unchanged("forget --keep-last 1 --dry-run --prune");
    assert_eq!(p["forgotten"], 3);
    let condemned = strs(&p["condemned_packs"]);
    assert!(condemned.len() >= 3, "three snapshots' own packs: {p:#}");
    assert!(p["condemned_bytes"].as_u64().unwrap() >= 900_000, "{p:#}");
    assert!(strs(&p["deleted_packs"]).is_empty(), "{p:#}");
    for c in &condemned {
        assert!(pack_path(&env, c).is_file(), "planned pack {c} exists");
    }

    // --keep-within: snapshots seconds apart are all within an hour.
    let p = env
        .run(["--json", "forget", "--keep-within", "1h", "--dry-run", "--prune"])
        .success()
        .json();
    assert_eq!(p["forgotten"], 0);
    assert!(
        decisions(&p)
            .values()
            .all(|(k, r)| *k && r == &vec!["within".to_string()]),
        "{p:#}"
    );
    assert!(strs(&p["condemned_packs"]).is_empty(), "{p:#}");

    // Named snapshots.
    let p = env.run(["--json", "forget", &s[1][..10], "--dry-run"]).success().json();
    let d = decisions(&p);
    assert_eq!(d[&s[1]], (false, vec!["named".to_string()]));
    assert_eq!(d[&s[0]], (true, vec!["not named".to_string()]));
    unchanged("forget ID --dry-run");

    // The human plan: one line per snapshot with the rule that kept it.
    let out = env
        .run(["forget", "--keep-last", "1", "--keep-tag", "release", "--dry-run"])
        .success();
    let text = out.stdout.clone() + &out.stderr;
    assert!(text.contains(&format!("keep   {}  last 1", &s[3][..8])), "{text}");
    assert!(text.contains(&format!("keep   {}  tag release", &s[0][..8])), "{text}");
    assert!(text.contains(&format!("remove {}", &s[1][..8])), "{text}");
    assert!(text.contains("would be removed"), "{text}");
    unchanged("the human dry run");

    // Bad rules: errors, nothing changed.
    for bad in [
        vec!["forget", "--keep-within", "5x"],
        vec!["forget", "--keep-within", ""],
        vec!["prune", "--repack-threshold", "1.5"],
    ] {
        env.run(&bad).failure();
        unchanged(&bad.join(" "));
    }
    assert_eq!(ids(&env), s);

    // A real forget + first prune (another client busy, so it only condemns), then a dry
    // run of the second: it plans the deletion and bytes freed, and deletes nothing.
    let busy = other_client_busy(&env);
    let p1 = env
        .run(["--json", "forget", "--keep-last", "1", "--prune"])
        .success()
        .json();
    assert_eq!(ids(&env), vec![s[3].clone()]);
    let marked: BTreeSet<String> = strs(&p1["condemned_packs"])
        .union(&strs(&p1["repacked_packs"]))
        .cloned()
        .collect();
    assert!(!marked.is_empty(), "{p1:#}");
    assert_eq!(objects(&env, "condemned").len(), 1, "one condemned record");
    fs::remove_file(&busy).unwrap();
    let before = fingerprint(&env.repo());
    let p2 = env.run(["--json", "prune", "--dry-run"]).success().json();
    assert_eq!(
        fingerprint(&env.repo()),
        before,
        "prune --dry-run changed the repository"
    );
    assert_eq!(strs(&p2["deleted_packs"]), marked, "{p2:#}");
    let freed: u64 = marked
        .iter()
        .map(|c| fs::metadata(pack_path(&env, c)).unwrap().len())
        .sum();
    assert_eq!(p2["deleted_bytes"].as_u64().unwrap(), freed, "{p2:#}");
    let out = env.run(["prune", "--dry-run"]).success();
    let text = out.stdout + &out.stderr;
    assert!(text.contains("would be deleted"), "{text}");
    assert_eq!(
        fingerprint(&env.repo()),
        before,
        "prune --dry-run changed the repository"
    );
    for c in &marked {
        assert!(pack_path(&env, c).is_file());
    }
}

// ---------------------------------------------------------------- retention in local time

#[test]
fn retention_rules_count_local_calendar_periods_across_dst_month_and_year_ends() {
    let env = Env::with_repo();
    // Snapshots at chosen instants (UTC), one group (same host and paths):
    //        UTC                          Europe/Berlin
    // a  2026-01-31 22:30 Sat W05    2026-01-31 23:30 Sat W05
    // b  2026-01-31 23:30 Sat W05    2026-02-01 00:30 Sun W05   (another month)
    // c  2026-03-22 23:30 Sun W12    2026-03-23 00:30 Mon W13   (another week)
    // d  2026-03-28 23:30 Sat W13    2026-03-29 00:30 Sun W13   (CET)
    // e  2026-03-29 01:30 Sun W13    2026-03-29 03:30 Sun W13   (CEST, same day as d)
    // f  2026-12-31 12:00 Thu 2026-W53
    // g  2027-01-01 12:00 Fri 2026-W53 (ISO week of the previous year)
    let times = [
        ("a", "2026-01-31T22:30:00Z"),
        ("b", "2026-01-31T23:30:00Z"),
        ("c", "2026-03-22T23:30:00Z"),
        ("d", "2026-03-28T23:30:00Z"),
        ("e", "2026-03-29T01:30:00Z"),
        ("f", "2026-12-31T12:00:00Z"),
        ("g", "2027-01-01T12:00:00Z"),
    ];
    let mut f = Forge::open(&env);
    let data = f.data(b"forged content\n");
    let tree = f.tree(vec![node(b"f.txt", NodeKind::File(data))], None);
    let mut by_name = BTreeMap::new();
    for (name, when) in times {
        let t: jiff::Timestamp = when.parse().unwrap();
        let id = f.snapshot_at(
            tree,
            name,
            Time {
                secs: t.as_second(),
                nanos: 0,
            },
        );
        by_name.insert(id, name);
    }
    drop(f);

    let kept = |tz: &str, rules: &[&str]| -> String {
        let mut c = env.cmd();
        c.env("TZ", tz).args(["--json", "forget", "--dry-run"]).args(rules);
        let p = run(&mut c).success().json();
        let d = decisions(&p);
        assert_eq!(d.len(), 7, "{p:#}");
        let mut k: Vec<&str> = d.iter().filter(|(_, v)| v.0).map(|(id, _)| by_name[id]).collect();
        k.sort();
        k.concat()
    };
    let cases: &[(&[&str], &str, &str)] = &[
        // (rules, kept in Berlin, kept in UTC)
        (&["--keep-daily", "10"], "abcefg", "bcdefg"),
        (&["--keep-weekly", "10"], "beg", "bceg"),
        (&["--keep-monthly", "10"], "abefg", "befg"),
        // Only months that have snapshots count: April to November are skipped.
        (&["--keep-monthly", "3"], "efg", "efg"),
        (&["--keep-yearly", "10"], "fg", "fg"),
        (&["--keep-last", "2"], "fg", "fg"),
        (&["--keep-within", "2d"], "fg", "fg"),
        (&["--keep-within", "10m"], "cdefg", "cdefg"),
        (&["--keep-within", "1y"], "abcdefg", "abcdefg"),
    ];
    for (rules, berlin, utc) in cases {
        assert_eq!(kept("Europe/Berlin", rules), *berlin, "{rules:?} in Europe/Berlin");
        assert_eq!(kept("UTC", rules), *utc, "{rules:?} in UTC");
    }

    // One snapshot may satisfy several rules; each reason is named.
    let mut c = env.cmd();
    c.env("TZ", "Europe/Berlin").args([
        "--json",
        "forget",
        "--dry-run",
        "--keep-daily",
        "1",
        "--keep-monthly",
        "3",
    ]);
    let d = decisions(&run(&mut c).success().json());
    let reasons: BTreeMap<&str, Vec<String>> = d.iter().map(|(id, v)| (by_name[id], v.1.clone())).collect();
    assert_eq!(reasons["g"], vec!["daily 1", "monthly 1"]);
    assert_eq!(reasons["f"], vec!["monthly 2"]);
    assert_eq!(reasons["e"], vec!["monthly 3"]);
    assert!(reasons["d"].is_empty() && reasons["a"].is_empty());

    // For real, in Berlin: d shares its local day with e and goes.
    let mut c = env.cmd();
    c.env("TZ", "Europe/Berlin")
        .args(["--json", "forget", "--keep-daily", "10", "--prune"]);
    let p = run(&mut c).success().json();
    assert_eq!(p["forgotten"], 1, "{p:#}");
    let mut left: Vec<&str> = ids(&env).iter().map(|id| by_name[id]).collect();
    left.sort();
    assert_eq!(left.concat(), "abcefg");
    env.run(["check", "--read-data"]).success();
}

// ---------------------------------------------------------------- garbage collection

#[test]
fn prune_twice_frees_space_and_kept_snapshots_restore_exactly() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("keep.bin"), random_bytes(41, 1_500_000));
    write(src.join("gone.bin"), random_bytes(42, 3_000_000));
    write(src.join("d/small.txt"), "small\n");
    let s1 = env.backup([&src]);
    let gone_chunks = file_chunks(&env, &s1, "gone.bin");
    let keep_chunks = file_chunks(&env, &s1, "keep.bin");
    fs::remove_file(src.join("gone.bin")).unwrap();
    write(src.join("new.txt"), "new\n");
    let s2 = env.backup([&src]);
    let bytes0 = pack_bytes(&env);

    // forget --prune while another client is busy: phase one only. Nothing is deleted yet.
    let busy = other_client_busy(&env);
    let p1 = env.run(["--json", "forget", &s1, "--prune"]).success().json();
    assert_eq!(p1["forgotten"], 1);
    assert!(strs(&p1["deleted_packs"]).is_empty(), "{p1:#}");
    assert!(
        p1["waiting_for"][0].as_str().unwrap().contains("another-machine"),
        "the plan names the client the packs wait for: {p1:#}"
    );
    let marked: BTreeSet<String> = strs(&p1["condemned_packs"])
        .union(&strs(&p1["repacked_packs"]))
        .cloned()
        .collect();
    assert!(!marked.is_empty(), "{p1:#}");
    // gone.bin shares its pack with keep.bin: that pack is repacked (keep.bin copied out).
    let shared = packs_holding(&env, &gone_chunks);
    assert!(
        shared.iter().all(|p| marked.contains(p)),
        "packs holding gone.bin {shared:?} not marked: {p1:#}"
    );
    for p in &marked {
        assert!(
            pack_path(&env, p).is_file(),
            "condemned pack {p} deleted by the first prune"
        );
    }
    assert_eq!(objects(&env, "condemned").len(), 1);
    assert!(pack_bytes(&env) >= bytes0, "the first prune deleted something");
    assert_restores_exactly(&env, &s2, &src);

    // The other client finished: the second prune deletes them.
    fs::remove_file(&busy).unwrap();
    let p2 = env.run(["--json", "prune"]).success().json();
    assert_eq!(strs(&p2["deleted_packs"]), marked, "{p2:#}");
    assert!(p2["deleted_bytes"].as_u64().unwrap() > 3_000_000, "{p2:#}");
    for p in &marked {
        assert!(!pack_path(&env, p).exists(), "condemned pack {p} still there");
    }
    assert!(objects(&env, "condemned").is_empty(), "records left after deletion");
    let bytes2 = pack_bytes(&env);
    assert!(
        bytes2 + 2_900_000 < bytes0,
        "the packs directory should shrink by gone.bin's 3 MB: {bytes0} -> {bytes2}"
    );

    // Deleted data is gone: the snapshot, and every chunk of gone.bin.
    let out = env.run(["restore", &s1, "--target", env.path("s1").to_str().unwrap()]);
    assert_ne!(out.code, 0, "a forgotten snapshot restored");
    assert!(
        packs_holding(&env, &gone_chunks).is_empty(),
        "gone.bin's chunks are still indexed"
    );
    assert!(!packs_holding(&env, &keep_chunks).is_empty());
    assert_restores_exactly(&env, &s2, &src);
    let c = env.run(["--json", "check", "--read-data"]).success().json();
    assert!(
        strs(&c["unreferenced_packs"]).is_empty(),
        "prune left unreferenced packs: {c:#}"
    );

    // A third prune has nothing to do.
    let p3 = env.run(["--json", "prune"]).success().json();
    for k in ["deleted_packs", "condemned_packs", "repacked_packs", "waiting_packs"] {
        assert!(strs(&p3[k]).is_empty(), "{k}: {p3:#}");
    }
    // The next backup works and shares what is left.
    write(src.join("later.txt"), "later\n");
    let s3 = env.backup([&src]);
    assert_restores_exactly(&env, &s3, &src);
}

#[test]
fn condemned_packs_wait_for_older_locks() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("x.bin"), random_bytes(51, 2_000_000));
    write(src.join("base.txt"), "base\n");
    let s1 = env.backup([&src]);
    fs::remove_file(src.join("x.bin")).unwrap();
    let s2 = env.backup([&src]);
    let other = env.path("other");
    write(other.join("big.bin"), random_bytes(52, 6_000_000));
    write(other.join("small.txt"), "other\n");

    // A backup (another client: its own cache) takes its lock and is frozen there.
    let mut bg = child(&env, &env.path("cache-bg"), ["-q", "backup", other.to_str().unwrap()])
        .spawn()
        .expect("spawn backup");
    assert!(
        wait_for_lock(&env, &mut bg, 0),
        "the background backup ended before its lock was seen: {:?}",
        finish(bg)
    );
    signal(&bg, rustix::process::Signal::STOP);

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        env.run(["forget", &s1]).success();
        let p1 = env.run(["--json", "prune"]).success().json();
        let marked: BTreeSet<String> = strs(&p1["condemned_packs"])
            .union(&strs(&p1["repacked_packs"]))
            .cloned()
            .collect();
        assert!(!marked.is_empty(), "{p1:#}");

        // The frozen backup's lock is older than the mark: nothing is deleted.
        let p2 = env.run(["--json", "prune"]).success().json();
        assert!(
            strs(&p2["deleted_packs"]).is_empty(),
            "deleted under an older lock: {p2:#}"
        );
        assert_eq!(strs(&p2["waiting_packs"]), marked, "{p2:#}");
        for p in &marked {
            assert!(pack_path(&env, p).is_file(), "pack {p} deleted under an older lock");
        }
        // A stopped process is alive: unlock leaves its lock alone.
        let u = env.run(["--json", "unlock"]).success().json();
        assert_eq!(u["removed"], 0, "unlock removed a live process's lock");
        assert_eq!(objects(&env, "locks").len(), 1);
        marked
    }));
    signal(&bg, rustix::process::Signal::CONT);
    let out = finish(bg);
    let marked = result.unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert_eq!(out.code, 0, "background backup: {}", out.stderr);
    let bg_id = out.snapshot_id();

    // Its lock is gone: the next prune deletes the condemned packs.
    let p3 = env.run(["--json", "prune"]).success().json();
    assert_eq!(strs(&p3["deleted_packs"]), marked, "{p3:#}");
    for p in &marked {
        assert!(!pack_path(&env, p).exists());
    }
    assert_restores_exactly(&env, &s2, &src);
    assert_restores_exactly(&env, &bg_id, &other);

    // Another machine's lock (not refreshed for a minute, created before the mark) also
    // holds deletion back until it goes away.
    write(src.join("y.bin"), random_bytes(53, 1_000_000));
    let s3 = env.backup([&src]);
    fs::remove_file(src.join("y.bin")).unwrap();
    let _s4 = env.backup([&src]);
    let remote = forge_lock(
        &env,
        "other-machine",
        4242,
        now_ns() - 60_000_000_000,
        now_ns() - 60_000_000_000,
    );
    env.run(["forget", &s3]).success();
    let p4 = env.run(["--json", "prune"]).success().json();
    let marked: BTreeSet<String> = strs(&p4["condemned_packs"])
        .union(&strs(&p4["repacked_packs"]))
        .cloned()
        .collect();
    assert!(!marked.is_empty(), "{p4:#}");
    let p5 = env.run(["--json", "prune"]).success().json();
    assert!(strs(&p5["deleted_packs"]).is_empty(), "{p5:#}");
    assert_eq!(strs(&p5["waiting_packs"]), marked, "{p5:#}");
    fs::remove_file(&remote).unwrap();
    let p6 = env.run(["--json", "prune"]).success().json();
    assert_eq!(strs(&p6["deleted_packs"]), marked, "{p6:#}");
    check_read_data_ok(&env, "after the waits");
}

#[test]
fn content_added_again_after_condemning_survives_the_next_prune() {
    let env = Env::with_repo();
    let src = env.path("src");
    let x = random_bytes(61, 3_000_000);
    write(src.join("x.bin"), &x);
    write(src.join("base.txt"), "base\n");
    let s1 = env.backup([&src]);
    let x_chunks = file_chunks(&env, &s1, "x.bin");
    let x_packs = packs_holding(&env, &x_chunks);
    fs::remove_file(src.join("x.bin")).unwrap();
    let _s2 = env.backup([&src]);
    env.run(["forget", &s1]).success();
    // Another client is busy: what the prunes condemn stays condemned for a while.
    let busy = other_client_busy(&env);
    let p1 = env.run(["--json", "prune"]).success().json();
    let marked: BTreeSet<String> = strs(&p1["condemned_packs"])
        .union(&strs(&p1["repacked_packs"]))
        .cloned()
        .collect();
    assert!(
        x_packs.is_subset(&marked),
        "x.bin's packs {x_packs:?} not condemned: {p1:#}"
    );

    // The same bytes come back: the backup must not rely on the condemned packs.
    write(src.join("x.bin"), &x);
    let b = env.backup_json([&src]);
    let s3 = b["snapshot_id"].as_str().unwrap().to_string();
    fs::remove_file(&busy).unwrap();
    let p2 = env.run(["--json", "prune"]).success().json();
    let stored_anew = b["data_added"].as_u64().unwrap() >= 3_000_000;
    let uncondemned = strs(&p2["uncondemned_packs"]);
    assert!(
        stored_anew || x_packs.is_subset(&uncondemned),
        "the backup added only {} bytes (dedup into condemned packs?) and prune did not \
         un-condemn them: {p2:#}",
        b["data_added"]
    );
    assert_restores_exactly(&env, &s3, &src);
    check_read_data_ok(&env, "after re-adding condemned content");

    // A snapshot that does use condemned packs (as a backup that started before the mark
    // and deduplicated into them leaves behind): the next prune un-condemns them.
    let x_node = file_node(&env, &s3, "x.bin");
    let x3_packs = packs_holding(&env, &file_chunks(&env, &s3, "x.bin"));
    fs::remove_file(src.join("x.bin")).unwrap();
    let _s4 = env.backup([&src]);
    env.run(["forget", &s3]).success();
    let busy = other_client_busy(&env);
    let p3 = env.run(["--json", "prune"]).success().json();
    let marked: BTreeSet<String> = strs(&p3["condemned_packs"])
        .union(&strs(&p3["repacked_packs"]))
        .cloned()
        .collect();
    assert!(x3_packs.is_subset(&marked), "{x3_packs:?} not condemned: {p3:#}");
    let mut f = Forge::open(&env);
    let tree = f.tree(vec![x_node], None);
    let late = f.snapshot(tree, "finished after the mark");
    drop(f);
    fs::remove_file(&busy).unwrap();
    let p4 = env.run(["--json", "prune"]).success().json();
    let deleted = strs(&p4["deleted_packs"]);
    assert!(
        x3_packs.is_disjoint(&deleted),
        "packs a snapshot needs were deleted: {x3_packs:?} in {p4:#}"
    );
    assert!(x3_packs.is_subset(&strs(&p4["uncondemned_packs"])), "{p4:#}");
    for p in &x3_packs {
        assert!(pack_path(&env, p).is_file());
    }
    let t = fresh(&env, "late");
    env.restore(&late, &t);
    assert_eq!(rel_paths(&t), BTreeSet::from(["x.bin".to_string()]));
    assert!(
        fs::read(t.join("x.bin")).unwrap() == x,
        "x.bin restored with other bytes"
    );
    // Un-condemned packs are ordinary again: later prunes keep them.
    let p5 = env.run(["--json", "prune"]).success().json();
    assert!(x3_packs.is_disjoint(&strs(&p5["deleted_packs"])), "{p5:#}");
    check_read_data_ok(&env, "after un-condemning");
}

#[test]
fn repack_threshold_decides_which_partly_used_packs_are_rewritten() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("live.bin"), random_bytes(71, 3_000_000));
    write(src.join("dead.bin"), random_bytes(72, 150_000));
    let s1 = env.backup([&src]);
    let dead = file_chunks(&env, &s1, "dead.bin");
    let live = file_chunks(&env, &s1, "live.bin");
    let shared = packs_holding(&env, &dead);
    assert_eq!(shared, packs_holding(&env, &live), "one data pack holds both files");
    fs::remove_file(src.join("dead.bin")).unwrap();
    let s2 = env.backup([&src]);
    env.run(["forget", &s1]).success();

    // About 5 % of that pack is unused: below the default threshold (10 %).
    let p = env.run(["--json", "prune", "--dry-run"]).success().json();
    assert!(strs(&p["repacked_packs"]).is_disjoint(&shared), "{p:#}");
    assert!(strs(&p["condemned_packs"]).is_disjoint(&shared), "{p:#}");
    let p = env
        .run(["--json", "prune", "--dry-run", "--repack-threshold", "0"])
        .success()
        .json();
    assert_eq!(strs(&p["repacked_packs"]), shared, "{p:#}");
    let out = env.run(["prune", "--repack-threshold", "2"]).failure();
    assert!(out.stderr.contains("repack-threshold"), "{}", out.stderr);

    let before = pack_names(&env);
    let busy = other_client_busy(&env);
    let p1 = env.run(["--json", "prune", "--repack-threshold", "0"]).success().json();
    assert_eq!(strs(&p1["repacked_packs"]), shared, "{p1:#}");
    assert!(p1["repacked_bytes"].as_u64().unwrap() >= 3_000_000, "{p1:#}");
    let new: Vec<String> = pack_names(&env).difference(&before).cloned().collect();
    assert!(!new.is_empty(), "repacking wrote no new pack");
    // live.bin now also lives in the new pack(s).
    assert!(
        packs_holding(&env, &live).iter().any(|p| new.contains(p)),
        "live.bin was not copied"
    );
    assert_restores_exactly(&env, &s2, &src);
    check_read_data_ok(&env, "after repacking");

    fs::remove_file(&busy).unwrap();
    let p2 = env.run(["--json", "prune"]).success().json();
    assert!(shared.is_subset(&strs(&p2["deleted_packs"])), "{p2:#}");
    for p in &shared {
        assert!(!pack_path(&env, p).exists());
    }
    assert!(packs_holding(&env, &dead).is_empty(), "dead.bin is still stored");
    assert_restores_exactly(&env, &s2, &src);
    check_read_data_ok(&env, "after deleting the repacked pack");
}

// ---------------------------------------------------------------- races and crashes

#[test]
fn prune_racing_backups_never_leaves_a_snapshot_without_its_data() {
    let env = Env::with_repo();
    let src = env.path("src");
    let mut fps: BTreeMap<String, BTreeMap<PathBuf, String>> = BTreeMap::new();
    for i in 0..3 {
        project_version(&src, i, 700_000);
        let id = env.backup([&src]);
        fps.insert(id, fingerprint(&src));
    }
    let start = Instant::now();
    for round in 0..3 {
        project_version(&src, 3 + round, 2_000_000);
        let fp = fingerprint(&src);
        // The prunes alternate between this client's cache and another machine's.
        let prune_cache = if round % 2 == 0 {
            env.cache()
        } else {
            env.path("cache-m2")
        };
        let prune_args = ["-q", "prune", "--keep-last", "2", "--repack-threshold", "0"];
        let b = child(&env, &env.cache(), ["-q", "backup", src.to_str().unwrap()])
            .spawn()
            .unwrap();
        let p = child(&env, &prune_cache, prune_args).spawn().unwrap();
        let p_out = finish(p);
        // A second prune while the backup may still run (phase two of the first one's marks).
        let p2_out = finish(child(&env, &env.path("cache-m3"), prune_args).spawn().unwrap());
        let b_out = finish(b);
        assert_eq!(b_out.code, 0, "round {round}: backup failed: {}", b_out.stderr);
        assert_eq!(p_out.code, 0, "round {round}: prune failed: {}", p_out.stderr);
        assert_eq!(p2_out.code, 0, "round {round}: second prune failed: {}", p2_out.stderr);
        fps.insert(b_out.snapshot_id(), fp);

        let out = env.run(["check", "--read-data"]);
        assert_eq!(
            out.code, 0,
            "round {round}: check --read-data after prune raced a backup\n{}{}",
            out.stdout, out.stderr
        );
        for id in ids(&env) {
            let want = fps.get(&id).unwrap_or_else(|| panic!("unknown snapshot {id}"));
            assert!(
                restored(&env, &id) == *want,
                "round {round}: snapshot {id} restores other content"
            );
        }
        if start.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    // Settle: two more prunes (condemn, delete) and everything left still restores.
    env.run(["prune"]).success();
    env.run(["prune"]).success();
    check_read_data_ok(&env, "after the races");
    for id in ids(&env) {
        assert!(restored(&env, &id) == fps[&id], "snapshot {id} restores other content");
    }
}

#[derive(Debug)]
enum Moment {
    /// SIGKILL this many milliseconds after the start.
    After(u64),
    /// SIGKILL as soon as anything in this repository folder changes (temporary files too).
    Change(&'static str),
}

#[test]
fn killed_prunes_leave_a_repository_that_checks_and_restores() {
    let env = Env::with_repo();
    let src = env.path("src");
    let mut order: Vec<String> = Vec::new();
    let mut fps: BTreeMap<String, BTreeMap<PathBuf, String>> = BTreeMap::new();
    let snap = |order: &mut Vec<String>, fps: &mut BTreeMap<String, BTreeMap<PathBuf, String>>| {
        let id = env.backup([&src]);
        fps.insert(id.clone(), fingerprint(&src));
        order.push(id);
    };
    for i in 0..3 {
        project_version(&src, i, 500_000);
        snap(&mut order, &mut fps);
    }
    let moments = [
        Moment::After(0),
        Moment::Change("condemned"),
        Moment::After(8),
        Moment::Change("packs"),
        Moment::After(20),
        Moment::Change("index"),
        Moment::After(40),
        Moment::Change("snapshots"),
    ];
    let start = Instant::now();
    let mut killed = 0;
    for (i, moment) in moments.iter().enumerate() {
        project_version(&src, 3 + i, 500_000);
        snap(&mut order, &mut fps);
        let dir = match moment {
            Moment::Change(d) => *d,
            Moment::After(_) => "packs",
        };
        let before = listing(&env, dir);
        let mut c = child(
            &env,
            &env.cache(),
            ["-q", "prune", "--keep-last", "3", "--repack-threshold", "0"],
        )
        .spawn()
        .unwrap();
        let t0 = Instant::now();
        match moment {
            Moment::After(ms) => std::thread::sleep(Duration::from_millis(*ms)),
            Moment::Change(_) => {
                while c.try_wait().unwrap().is_none()
                    && listing(&env, dir) == before
                    && t0.elapsed() < Duration::from_secs(20)
                {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
        if c.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = c.kill();
        let _ = c.wait();
        let ctx = format!("iteration {i} (prune killed at {moment:?})");

        check_read_data_ok(&env, &ctx);
        let left = ids(&env);
        for id in &order[order.len() - 3..] {
            assert!(left.contains(id), "{ctx}: kept snapshot {id} vanished");
        }
        for id in &left {
            let want = fps.get(id).unwrap_or_else(|| panic!("{ctx}: unknown snapshot {id}"));
            assert!(
                restored(&env, id) == *want,
                "{ctx}: snapshot {id} restores other content"
            );
        }
        // The next backup and the next prune succeed without any unlock.
        write(src.join("after.txt"), format!("after iteration {i}\n"));
        snap(&mut order, &mut fps);
        let out = env.run(["prune", "--keep-last", "3", "--repack-threshold", "0"]);
        assert_eq!(out.code, 0, "{ctx}: the next prune failed: {}", out.stderr);
        if start.elapsed() > Duration::from_secs(40) && i >= 3 {
            break;
        }
    }
    eprintln!("{killed} prune(s) were still running when killed");
    env.run(["prune"]).success();
    check_read_data_ok(&env, "after all kills");
    for id in ids(&env) {
        assert!(restored(&env, &id) == fps[&id], "snapshot {id} restores other content");
    }
    assert!(objects(&env, "locks").is_empty(), "locks left behind");
}

#[test]
fn two_prunes_at_once_never_damage_the_repository() {
    let env = Env::with_repo();
    let src = env.path("src");
    let mut fps = BTreeMap::new();
    for i in 0..3 {
        project_version(&src, i, 700_000);
        fps.insert(env.backup([&src]), fingerprint(&src));
    }
    // Deterministically first: while another prune holds its lock (this process), a prune
    // is refused with a message naming the holder, and changes nothing; a dry run needs no lock.
    {
        let f = Forge::open(&env);
        let held = lock::acquire(&f.repo, LockMode::Shared, "prune").expect("lock");
        let before = fingerprint(&env.repo());
        for args in [
            vec!["prune", "--keep-last", "1"],
            vec!["forget", "--keep-last", "1", "--prune"],
        ] {
            let out = env.run(&args).code(11);
            assert!(
                out.stderr.contains("lock") && out.stderr.contains(&format!("pid {}", std::process::id())),
                "{args:?}: the refusal should name the lock and its holder: {}",
                out.stderr
            );
            assert_eq!(
                fingerprint(&env.repo()),
                before,
                "a refused {args:?} changed the repository"
            );
        }
        env.run(["prune", "--keep-last", "1", "--dry-run"]).success();
        drop(held);
        drop(f);
    }
    let mut refused = 0;
    for round in 0..3 {
        project_version(&src, 3 + round, 700_000);
        fps.insert(env.backup([&src]), fingerprint(&src));
        let args = ["-q", "prune", "--keep-last", "2", "--repack-threshold", "0"];
        let a = child(&env, &env.cache(), args).spawn().unwrap();
        let b = child(&env, &env.path("cache-2"), args).spawn().unwrap();
        let (oa, ob) = (finish(a), finish(b));
        for o in [&oa, &ob] {
            if o.code != 0 {
                refused += 1;
                assert_eq!(o.code, 11, "round {round}: {}", o.stderr);
                assert!(
                    o.stderr.contains("lock"),
                    "round {round}: a refused prune should say it is locked out: {}",
                    o.stderr
                );
            }
        }
        check_read_data_ok(&env, &format!("round {round}"));
        for id in ids(&env) {
            assert!(
                restored(&env, &id) == fps[&id],
                "round {round}: snapshot {id} restores other content"
            );
        }
    }
    eprintln!("{refused} of 6 concurrent prunes were refused by the lock");
    env.run(["prune", "--keep-last", "2"]).success();
    env.run(["prune"]).success();
    check_read_data_ok(&env, "after the concurrent prunes");
    assert_eq!(ids(&env).len(), 2);
}

/// A backup whose index cache was synced before a prune condemned packs, and which took its
/// lock just after the mark (the CLI opens the repository, then locks it), must not end with
/// a snapshot whose data a second prune deleted meanwhile.
#[test]
fn backup_with_a_cache_older_than_the_mark_keeps_its_data() {
    let env = Env::with_repo();
    let src = env.path("src");
    let x = random_bytes(81, 2_000_000);
    write(src.join("x.bin"), &x);
    write(src.join("base.txt"), "base\n");
    let s1 = env.backup([&src]);
    fs::remove_file(src.join("x.bin")).unwrap();
    env.backup([&src]);

    // Machine B starts a backup: it opens the repository (its cache is synced now) ...
    let mut b = lib_open(&env, "cache-b");
    // ... while machine A forgets s1 and prunes: x.bin's pack is condemned ...
    env.run(["forget", &s1]).success();
    let p1 = env.run(["--json", "prune"]).success().json();
    assert!(
        !strs(&p1["condemned_packs"]).is_empty() && !strs(&p1["repacked_packs"]).is_empty(),
        "{p1:#}"
    );
    // ... B takes its lock (after the mark) ...
    let guard = lock::acquire(&b, LockMode::Shared, "backup").expect("lock");
    // ... A prunes again while B's backup runs (B's lock is newer than the mark) ...
    let p2 = env.run(["--json", "prune"]).success().json();
    // ... and B stores x.bin again.
    let src_b = env.path("src-b");
    write(src_b.join("x.bin"), &x);
    let res = lib_backup(&mut b, &src_b, &guard);
    drop(guard);
    drop(b);
    // Refusing is fine; a snapshot that references deleted data is not.
    if let Ok(id) = res {
        let out = env.run(["check", "--read-data"]);
        assert_eq!(
            out.code, 0,
            "snapshot {id} of a backup whose cache predates the mark references data the \
             second prune deleted (it deleted {}):\n{}{}",
            p2["deleted_packs"], out.stdout, out.stderr
        );
        assert_restores_exactly(&env, &id, &src_b);
        // And the prunes that follow keep what it needs.
        env.run(["prune"]).success();
        env.run(["prune"]).success();
        check_read_data_ok(&env, "after the prunes that followed");
        assert_restores_exactly(&env, &id, &src_b);
    }
}

/// A prune must decide "no snapshot needs this condemned pack" with a snapshot list at least
/// as new as the moment it saw the older locks gone: a backup that started before the mark
/// may have deduplicated into the pack, and may finish between the prune's opening of the
/// repository and its look at the locks.
#[test]
fn prune_counts_snapshots_finished_before_the_older_locks_went_away() {
    let env = Env::with_repo();
    let src = env.path("src");
    let x = random_bytes(91, 2_000_000);
    write(src.join("x.bin"), &x);
    write(src.join("base.txt"), "base\n");
    let s1 = env.backup([&src]);
    fs::remove_file(src.join("x.bin")).unwrap();
    env.backup([&src]);

    // Machine B starts a backup before the mark: open, lock.
    let mut b = lib_open(&env, "cache-b");
    let guard_b = lock::acquire(&b, LockMode::Shared, "backup").expect("lock");
    // Machine A: forget, condemn; the next prune waits for B (its lock is older).
    env.run(["forget", &s1]).success();
    let p1 = env.run(["--json", "prune"]).success().json();
    let marked: BTreeSet<String> = strs(&p1["condemned_packs"])
        .union(&strs(&p1["repacked_packs"]))
        .cloned()
        .collect();
    assert!(!marked.is_empty(), "{p1:#}");
    let p2 = env.run(["--json", "prune"]).success().json();
    assert_eq!(strs(&p2["waiting_packs"]), marked, "{p2:#}");
    assert!(strs(&p2["deleted_packs"]).is_empty(), "{p2:#}");

    // A's third prune opens the repository (as `prune` does first) ...
    let mut a = lib_open(&env, "cache-a3");
    // ... B backs up x.bin (deduplicating into the condemned pack, which its cache from
    // before the mark does not know is condemned), writes its snapshot, releases its lock ...
    let src_b = env.path("src-b");
    write(src_b.join("x.bin"), &x);
    let id = lib_backup(&mut b, &src_b, &guard_b).expect("backup on machine B");
    drop(guard_b);
    drop(b);
    // ... and A's prune goes on: lock, then collect.
    let guard_a = lock::acquire(&a, LockMode::Shared, "prune").expect("lock");
    let opts = PruneOptions {
        rules: KeepRules::default(),
        forget: Vec::new(),
        gc: true,
        dry_run: false,
        repack_threshold: 0.1,
        tz: jiff::tz::TimeZone::UTC,
        hostname: "machine-a".into(),
        own_lock: Some(guard_a.object_id()),
        scope: Default::default(),
    };
    let plan = projectclone::prune::run(&mut a, &opts, Some(&guard_a)).expect("prune");
    drop(guard_a);
    drop(a);
    let out = env.run(["check", "--read-data"]);
    assert_eq!(
        out.code, 0,
        "snapshot {id} (finished while the prune ran) lost its data; the prune deleted {:?}:\n{}{}",
        plan.deleted_packs, out.stdout, out.stderr
    );
    assert_restores_exactly(&env, &id, &src_b);
}

// ---------------------------------------------------------------- repair, unlock, keys

#[test]
fn repair_index_rebuilds_after_losing_the_cache_or_an_index_delta() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.bin"), random_bytes(111, 1_200_000));
    write(src.join("t/a.txt"), "a\n");
    let s1 = env.backup([&src]);
    let src2 = env.path("src2");
    write(src2.join("b.bin"), random_bytes(112, 900_000));
    let s2 = env.backup([&src2]);

    // The cache is derived: delete it, repair, and everything works.
    let dbs: Vec<PathBuf> = files_under(&env.cache())
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("index.db"))
        .collect();
    assert!(!dbs.is_empty(), "no index.db under {}", env.cache().display());
    for p in &dbs {
        fs::remove_file(p).unwrap();
    }
    let r = env.run(["--json", "repair", "index"]).success().json();
    assert!(r["reindexed_packs"].as_array().unwrap().is_empty(), "{r:#}");
    assert!(r["packs"].as_u64().unwrap() >= 4, "{r:#}");
    check_read_data_ok(&env, "after repair index");
    assert_restores_exactly(&env, &s1, &src);
    assert_restores_exactly(&env, &s2, &src2);

    // An index delta lost: s2's data is no longer findable, which check reports.
    let f = Forge::open(&env);
    let b_chunks = file_chunks(&env, &s2, "b.bin");
    let b_pack = f.repo.locate(&b_chunks[0]).expect("indexed").pack.to_hex();
    drop(f);
    let delta = objects(&env, "index")
        .into_iter()
        .find(|d| {
            let id = d.file_name().unwrap().to_string_lossy().parse().unwrap();
            Forge::open(&env)
                .repo
                .read_delta(&id)
                .unwrap()
                .packs
                .iter()
                .any(|p| p.id.to_hex() == b_pack)
        })
        .expect("the delta listing b.bin's pack");
    fs::remove_file(&delta).unwrap();
    let out = env.run(["check"]);
    assert_ne!(out.code, 0, "check passed with an index delta missing: {}", out.stdout);
    // `repair index` recovers the packs from their verified contents.
    let r = env.run(["--json", "repair", "index", "--dry-run"]).success().json();
    assert!(!r["reindexed_packs"].as_array().unwrap().is_empty(), "{r:#}");
    let r = env.run(["--json", "repair", "index"]).success().json();
    assert!(!r["reindexed_packs"].as_array().unwrap().is_empty(), "{r:#}");
    check_read_data_ok(&env, "after repair index recovered packs from their headers");
    assert_restores_exactly(&env, &s1, &src);
    assert_restores_exactly(&env, &s2, &src2);
    let src3 = env.path("src3");
    write(src3.join("b.bin"), random_bytes(112, 900_000));
    write(src3.join("c.txt"), "c\n");
    let s3 = env.backup([&src3]);
    assert_restores_exactly(&env, &s3, &src3);
    env.run(["prune"]).success();
    env.run(["prune"]).success();
    check_read_data_ok(&env, "after the prunes that followed the repair");
    assert_restores_exactly(&env, &s1, &src);
    assert_restores_exactly(&env, &s2, &src2);
}

#[test]
fn unlock_removes_stale_locks_and_never_a_live_one() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("big.bin"), random_bytes(121, 8_000_000));
    // A live process's lock: this test process's (taken first: taking a lock removes the
    // stale ones it sees, which would hide what unlock does).
    let f = Forge::open(&env);
    let live = lock::acquire(&f.repo, LockMode::Shared, "test").expect("lock");
    let live_file = env.repo().join("locks").join(live.object_id().to_hex());
    assert!(live_file.is_file());

    // A backup killed while it holds its lock leaves the lock behind.
    let mut c = child(&env, &env.cache(), ["-q", "backup", src.to_str().unwrap()])
        .spawn()
        .unwrap();
    assert!(
        wait_for_lock(&env, &mut c, 1),
        "the backup ended before its lock was seen: {:?}",
        finish(c)
    );
    c.kill().unwrap();
    c.wait().unwrap();
    let dead: Vec<PathBuf> = objects(&env, "locks").into_iter().filter(|p| *p != live_file).collect();
    assert_eq!(dead.len(), 1, "the killed backup's lock");

    // Another machine's fresh lock, and another machine's lock not refreshed for 31 minutes.
    let fresh_remote = forge_lock(&env, "other-machine", 77, now_ns(), now_ns());
    let old = now_ns() - 31 * 60 * 1_000_000_000;
    let stale_remote = forge_lock(&env, "other-machine", 78, old, old);
    assert_eq!(objects(&env, "locks").len(), 4);

    let u = env.run(["--json", "unlock"]).success().json();
    assert_eq!(u["removed"], 2, "{u}");
    assert!(!dead[0].exists(), "the dead backup's lock is still there");
    assert!(
        !stale_remote.exists(),
        "a lock not refreshed for 31 minutes is still there"
    );
    assert!(live_file.exists(), "unlock removed a live process's lock");
    assert!(fresh_remote.exists(), "unlock removed another machine's fresh lock");
    let out = env.run(["unlock"]).success();
    assert!((out.stdout + &out.stderr).contains("0 stale lock"));

    drop(live);
    drop(f);
    assert!(!live_file.exists(), "a released lock stays");
    fs::remove_file(&fresh_remote).unwrap();
    let small = env.path("small");
    write(small.join("a.txt"), "after unlock\n");
    let s = env.backup([&small]);
    assert_restores_exactly(&env, &s, &small);
    check_read_data_ok(&env, "after unlock");
}

#[test]
fn keys_add_list_remove_and_passwd() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.txt"), "keys\n");
    let s1 = env.backup([&src]);
    let with = |pw: &str| {
        let mut c = env.cmd();
        c.env("PROJECTCLONE_PASSWORD", pw);
        c
    };
    let list = |pw: &str| -> Vec<(String, bool)> {
        let v = run(with(pw).args(["--json", "key", "list"])).success().json();
        v.as_array()
            .expect("array")
            .iter()
            .map(|k| (k["id"].as_str().unwrap().to_string(), k["current"].as_bool().unwrap()))
            .collect()
    };
    let opens = |pw: &str| run(with(pw).arg("snapshots")).code;

    let keys = list(PASSWORD);
    assert_eq!(keys.len(), 1);
    assert!(keys[0].1, "the only key is the current one");
    let k1 = keys[0].0.clone();

    // key add: a second password opens the same repository.
    let pw2 = "second password";
    write(env.path("pw2"), format!("{pw2}\n"));
    let added = run(with(PASSWORD).args([
        "--json",
        "key",
        "add",
        "--new-password-file",
        env.path("pw2").to_str().unwrap(),
    ]))
    .success()
    .json();
    let k2 = added["id"].as_str().expect("new key id").to_string();
    let keys = list(PASSWORD);
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&(k1.clone(), true)) && keys.contains(&(k2.clone(), false)));
    assert!(list(pw2).contains(&(k2.clone(), true)));
    let t = fresh(&env, "pw2");
    run(with(pw2).args(["restore", &s1, "--target", t.to_str().unwrap()])).success();
    assert_trees_equal(&src, &t, false);

    // key remove (by prefix): that password stops working.
    run(with(PASSWORD).args(["key", "remove", &k2[..12]])).success();
    assert_eq!(opens(pw2), 12, "a removed key still opens the repository");
    assert_eq!(list(PASSWORD), vec![(k1.clone(), true)]);

    // The key in use cannot be removed (here it is also the last one).
    let out = run(with(PASSWORD).args(["key", "remove", &k1])).failure();
    assert!(out.stderr.contains("key passwd"), "{}", out.stderr);
    assert_eq!(list(PASSWORD), vec![(k1.clone(), true)]);
    run(with(PASSWORD).args(["key", "remove", "ffffffffffff"])).failure();
    // The library refuses to remove the last key whatever opened the repository.
    let f = Forge::open(&env);
    assert!(f.repo.remove_key(&k1).is_err(), "the last key was removed");
    drop(f);
    assert!(env.repo().join("keys").join(&k1).is_file());

    // Another key; the current key of each password is the one it opens.
    run(with(PASSWORD).args(["key", "add", "--new-password-file", env.path("pw2").to_str().unwrap()])).success();
    let out = run(with(pw2).args(["--json", "key", "list"])).success().json();
    let k2b = out.as_array().unwrap().iter().find(|k| k["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(k2b, k1);
    // With the second password the first key is not the current one: it can go.
    run(with(pw2).args(["key", "remove", &k1])).success();
    assert_eq!(opens(PASSWORD), 12);
    assert_eq!(opens(pw2), 0);

    // key passwd: the old password stops working, the new one works.
    let pw3 = "third password";
    run(with(pw2).env("PROJECTCLONE_NEW_PASSWORD", pw3).args(["key", "passwd"])).success();
    assert_eq!(opens(pw2), 12, "the old password still works after key passwd");
    let out = run(with(pw2).arg("snapshots"));
    assert!(out.stderr.contains("wrong password"), "{}", out.stderr);
    assert_eq!(list(pw3).len(), 1);
    let t = fresh(&env, "pw3");
    run(with(pw3).args(["restore", &s1, "--target", t.to_str().unwrap()])).success();
    assert_trees_equal(&src, &t, false);
    // And with a file (one trailing CRLF dropped).
    write(env.path("pw4"), "fourth\r\n");
    run(with(pw3).args([
        "key",
        "passwd",
        "--new-password-file",
        env.path("pw4").to_str().unwrap(),
    ]))
    .success();
    assert_eq!(opens(pw3), 12);
    assert_eq!(opens("fourth"), 0);
    let keys = list("fourth");
    assert_eq!(keys.len(), 1);
    let out = run(with("fourth").args(["key", "remove", &keys[0].0[..8]])).failure();
    assert!(out.stderr.contains("key passwd"), "{}", out.stderr);
    assert_eq!(opens("fourth"), 0);
    run(with("fourth").args(["check", "--read-data"])).success();
}

// ---------------------------------------------------------------- check --read-data-subset

#[test]
fn read_data_subsets_cover_the_repository_and_find_a_flipped_byte() {
    let env = Env::with_repo();
    let src = env.path("src");
    let mut snaps = Vec::new();
    for i in 0..4u64 {
        let size = if i == 0 { 900_000 } else { 300_000 };
        write(src.join(format!("f{i}.bin")), random_bytes(130 + i, size));
        snaps.push(env.backup([&src]));
    }
    let all = env.run(["--json", "check", "--read-data"]).success().json();
    let total = all["blobs_read"].as_u64().unwrap();
    assert!(total > 0);
    let mut parts = 0;
    for s in ["1/2", "2/2"] {
        let j = env.run(["--json", "check", "--read-data-subset", s]).success().json();
        parts += j["blobs_read"].as_u64().unwrap();
    }
    assert_eq!(parts, total, "1/2 and 2/2 together read every blob once");
    for s in ["50%", "100%", "1/1", "3/3"] {
        env.run(["check", "--read-data-subset", s]).success();
    }
    let j = env
        .run(["--json", "check", "--read-data-subset", "100%"])
        .success()
        .json();
    assert_eq!(j["blobs_read"].as_u64().unwrap(), total);
    for bad in ["0/2", "3/2", "0%", "101%", "x", "1/0"] {
        env.run(["check", "--read-data-subset", bad]).code(2);
    }
    env.run(["check", "--read-data", "--read-data-subset", "1/2"]).code(2);

    // Flip a byte in the middle of the largest pack (f0.bin's data, in every snapshot).
    let largest = files_under(&env.repo().join("packs"))
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let name = largest.file_name().unwrap().to_string_lossy().into_owned();
    let mut bytes = fs::read(&largest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    fs::write(&largest, bytes).unwrap();

    let outs: Vec<Out> = ["1/2", "2/2"]
        .iter()
        .map(|s| env.run(["check", "--read-data-subset", s]))
        .collect();
    let failed: Vec<&Out> = outs.iter().filter(|o| o.code != 0).collect();
    assert_eq!(
        failed.len(),
        1,
        "exactly one half holds the damaged pack: {:?}",
        outs.iter().map(|o| (o.code, &o.stdout)).collect::<Vec<_>>()
    );
    let o = failed[0];
    assert_eq!(o.code, 1);
    assert!(o.stdout.contains(&name), "the damaged pack is named: {}", o.stdout);
    assert!(o.stdout.contains("f0.bin"), "the damaged file is named: {}", o.stdout);
    for s in &snaps {
        assert!(
            o.stdout.contains(s.as_str()),
            "damaged snapshot {s} is named: {}",
            o.stdout
        );
    }
    let j = env.run(["--json", "check", "--read-data"]).code(1).json();
    assert_eq!(strs(&j["damaged_snapshots"]), snaps.iter().cloned().collect());
}
