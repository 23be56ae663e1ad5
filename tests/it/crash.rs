//! Guarantees 2 and 3: a backup killed at any moment leaves a repository that passes
//! `check --read-data`, with every earlier snapshot intact, and the next backup needs no
//! unlock; two concurrent backups into one repository both succeed.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

const HOT_SIZE: usize = 3_000_000;

fn hot_content(i: usize) -> Vec<u8> {
    random_bytes(1000 + i as u64, HOT_SIZE)
}

fn backup_process(env: &Env, src: &Path) -> Command {
    let mut c = Command::new(bin_path());
    c.env_remove("PROJECTCLONE_REPO")
        .env_remove("PROJECTCLONE_PASSWORD_FILE")
        .env("PROJECTCLONE_PASSWORD", PASSWORD)
        .env("HOME", env.path("home"))
        .env("XDG_DATA_HOME", env.path("xdg-data"))
        .env("XDG_CACHE_HOME", env.path("xdg-cache"))
        .env("XDG_CONFIG_HOME", env.path("xdg-config"))
        .arg("-r")
        .arg(env.repo())
        .arg("--cache-dir")
        .arg(env.cache())
        .arg("-q")
        .arg("backup")
        .arg(src)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Check one snapshot against the last one, which is restored in full: `ls` shows it holds
/// hot/0..k (a prefix of the files written), `diff` shows it differs from the last only by
/// the hot files it lacks, and its newest hot file restores with the exact bytes.
fn check_snapshot(env: &Env, snap: &str, last: &str, n: usize) -> usize {
    let ls = env.run(["ls", snap, "hot"]).success();
    let names: BTreeSet<String> = ls
        .stdout
        .lines()
        .map(|l| l.trim_start_matches('/').to_string())
        .filter(|l| l.starts_with("hot/"))
        .collect();
    let k = names.len();
    assert!(
        k <= n,
        "snapshot {snap} holds more hot files than ever existed: {names:?}"
    );
    let expected: BTreeSet<String> = (0..k).map(|i| format!("hot/{i}.bin")).collect();
    assert_eq!(
        names, expected,
        "snapshot {snap}: hot files must be a prefix of those written"
    );

    let d = env.run(["diff", snap, last]).success();
    for line in d.stdout.lines() {
        let mut it = line.split_whitespace();
        let (change, path) = (it.next().unwrap_or(""), it.next().unwrap_or("").trim_start_matches('/'));
        let ok = path == "hot"
            || (change == "+"
                && path
                    .strip_prefix("hot/")
                    .and_then(|f| f.strip_suffix(".bin"))
                    .and_then(|j| j.parse::<usize>().ok())
                    .is_some_and(|j| j >= k));
        assert!(
            ok,
            "snapshot {snap} differs from the last one beyond the newer hot files: {line}"
        );
    }

    if k > 0 {
        let target = env.path(format!("hot-{}", &snap[..12]));
        let newest = format!("hot/{}.bin", k - 1);
        env.run([
            "restore".as_ref(),
            snap.as_ref(),
            "--include".as_ref(),
            newest.as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ])
        .success();
        assert!(
            fs::read(target.join(&newest)).unwrap() == hot_content(k - 1),
            "snapshot {snap}: {newest} restored with wrong bytes"
        );
        fs::remove_dir_all(&target).unwrap();
    }
    k
}

#[derive(Debug)]
enum Moment {
    /// Kill this many milliseconds after the start.
    After(u64),
    /// Kill as soon as a new object appears in this repository folder (`true`: counting
    /// temporary files of writes in progress).
    FirstIn(&'static str, bool),
}

fn objects_in(env: &Env, dir: &str, with_temp: bool) -> usize {
    files_under(&env.repo().join(dir))
        .iter()
        .filter(|p| with_temp || !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .count()
}

/// SIGKILL `child` at `moment` (or let it finish if it gets there first).
fn kill_at(env: &Env, mut child: std::process::Child, moment: &Moment) {
    match moment {
        Moment::After(ms) => std::thread::sleep(Duration::from_millis(*ms)),
        Moment::FirstIn(dir, with_temp) => {
            let before = objects_in(env, dir, *with_temp);
            let start = std::time::Instant::now();
            while child.try_wait().unwrap().is_none()
                && objects_in(env, dir, *with_temp) == before
                && start.elapsed() < Duration::from_secs(60)
            {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    let _ = child.kill(); // SIGKILL; the backup may already have finished
    let _ = child.wait_with_output().expect("wait for the killed backup");
}

#[test]
fn killed_backups_leave_a_consistent_repository() {
    let env = Env::with_repo();
    let src = env.path("src");
    // About 60 MB: compressible "source" files, many small files, and a directory that
    // receives new incompressible data before each killed backup.
    for i in 0..6u64 {
        write(src.join(format!("text/f{i}.txt")), text_bytes(i, 10_000_000));
    }
    for i in 0..200 {
        write(
            src.join(format!("small/{:02}/s{i}.txt", i % 10)),
            format!("small {i}\n").repeat(i % 13 + 1),
        );
    }
    fs::create_dir_all(src.join("hot")).unwrap();
    age_tree(&src);
    let first = env.backup([&src]);
    let mut snapshots = vec![first.clone()];

    // Deterministic kill moments: fixed delays spread over 0-300 ms (a backup of the new
    // 3 MB takes about that long), and kills triggered by what appears in the repository:
    // a temporary pack file (mid-write), a finished pack, an index delta.
    let moments = [
        Moment::After(150),
        Moment::After(0),
        Moment::FirstIn("packs", true),
        Moment::After(290),
        Moment::After(40),
        Moment::FirstIn("packs", false),
        Moment::After(210),
        Moment::FirstIn("index", false),
        Moment::After(90),
    ];
    for (i, moment) in moments.iter().enumerate() {
        let f = src.join(format!("hot/{i}.bin"));
        write(&f, hot_content(i));
        set_mtime(&f, 1_600_000_000 + i as i64, 0);

        let child = backup_process(&env, &src).spawn().expect("spawn backup");
        kill_at(&env, child, moment);
        let delay = format!("{moment:?}");

        let out = env.run(["check", "--read-data"]);
        assert_eq!(
            out.code, 0,
            "iteration {i} (killed after {delay} ms): check --read-data failed\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
        // The next backup succeeds without any unlock step.
        let out = env.run(["backup".as_ref(), src.as_os_str()]);
        assert_eq!(
            out.code, 0,
            "iteration {i}: backup after a kill failed\nstderr: {}",
            out.stderr
        );
        snapshots.push(out.snapshot_id());
    }
    env.run(["check", "--read-data"]).success();

    // Every snapshot, including any the killed runs completed, restores exactly: the last
    // one in full, each other one checked against it.
    let last = snapshots.last().unwrap().clone();
    let tn = env.path("last");
    env.restore(&last, &tn);
    assert_trees_equal(&src, &tn, true);
    let all: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    for s in &snapshots {
        assert!(all.contains(s), "snapshot {s} vanished");
    }
    let holds: HashMap<&String, usize> = all
        .iter()
        .map(|s| (s, check_snapshot(&env, s, &last, moments.len())))
        .collect();
    for (i, s) in snapshots.iter().enumerate() {
        assert_eq!(holds[s], i, "snapshot {s} should hold hot/0..{i}");
    }
}

#[test]
fn concurrent_backups_into_one_repository_both_succeed() {
    let env = Env::with_repo();
    let (a, b) = (env.path("a"), env.path("b"));
    for (dir, seed) in [(&a, 1u64), (&b, 2)] {
        write(dir.join("big.bin"), random_bytes(seed * 100, 4_000_000));
        write(dir.join("shared.bin"), random_bytes(7, 1_500_000));
        for i in 0..50 {
            write(dir.join(format!("d/f{i}.txt")), format!("{seed} file {i}\n"));
        }
    }
    // Twice: different trees, then the same tree (both racing to store the same blobs).
    for round in 0..2 {
        let (x, y) = if round == 0 { (&a, &b) } else { (&a, &a) };
        let c1 = backup_process(&env, x).spawn().unwrap();
        let c2 = backup_process(&env, y).spawn().unwrap();
        let (o1, o2) = (c1.wait_with_output().unwrap(), c2.wait_with_output().unwrap());
        for (o, dir) in [(&o1, x), (&o2, y)] {
            assert!(
                o.status.success(),
                "round {round}: concurrent backup failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let id = String::from_utf8(o.stdout.clone()).unwrap();
            assert_id_line(&id);
            let target = env.path(format!("out-{round}-{}", &id[..12]));
            env.restore(id.trim(), &target);
            assert_trees_equal(dir, &target, true);
        }
    }
    assert_eq!(env.snapshots().len(), 4);
    env.run(["check", "--read-data"]).success();
}

#[test]
fn reading_commands_work_while_a_backup_runs() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("first.bin"), random_bytes(8, 500_000));
    let first = env.backup([&src]);
    for i in 0..4 {
        write(src.join(format!("new{i}.bin")), random_bytes(20 + i, 2_000_000));
    }
    let child = backup_process(&env, &src).spawn().unwrap();
    let mut rounds = 0;
    loop {
        let running = child.id();
        for args in [vec!["check"], vec!["snapshots"], vec!["ls", "latest"]] {
            let out = env.run(&args);
            assert_eq!(
                out.code, 0,
                "{args:?} during a backup (pid {running}): {}{}",
                out.stdout, out.stderr
            );
        }
        let target = env.path(format!("during-{rounds}"));
        env.restore(&first, &target);
        assert_eq!(fs::read(target.join("first.bin")).unwrap(), random_bytes(8, 500_000));
        rounds += 1;
        if rounds >= 3 || std::fs::metadata(format!("/proc/{running}")).is_err() {
            break;
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    env.run(["check", "--read-data"]).success();
}

/// A backup killed after its index delta but before its snapshot leaves packs no snapshot
/// uses: `check` names exactly those as `unused_packs`, and they are not errors.
#[test]
fn check_names_packs_that_no_snapshot_uses() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("kept"), random_bytes(1, 100_000));
    age_tree(&src);
    env.backup([&src]);
    let before: BTreeSet<_> = files_under(&env.repo().join("packs")).into_iter().collect();
    let snaps_before: BTreeSet<_> = files_under(&env.repo().join("snapshots")).into_iter().collect();
    write(src.join("orphan"), random_bytes(2, 300_000));
    age_tree(&src);
    env.backup([&src]);
    let new_packs: BTreeSet<String> = files_under(&env.repo().join("packs"))
        .into_iter()
        .filter(|p| !before.contains(p))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(!new_packs.is_empty());
    // The state of a backup killed just before writing its snapshot (so this client never
    // saw the snapshot either: its record of snapshots seen is dropped too).
    for s in files_under(&env.repo().join("snapshots")) {
        if !snaps_before.contains(&s) {
            fs::remove_file(s).unwrap();
        }
    }
    fs::remove_dir_all(env.path("xdg-state/projectclone")).unwrap();
    let c = env.run(["--json", "check", "--read-data"]).success().json();
    let unused: BTreeSet<String> = c["unused_packs"]
        .as_array()
        .expect("unused_packs")
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(unused, new_packs, "{c}");
    let text = env.run(["check"]).success();
    assert!(
        text.stdout.contains("used by no snapshot") || text.stderr.contains("used by no snapshot"),
        "{}",
        text.stdout
    );
}

/// Temporary files of writes in progress (`.tmp-*`) anywhere in the repository.
fn temp_files(env: &Env) -> Vec<std::path::PathBuf> {
    files_under(&env.repo())
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(".tmp-"))
        .collect()
}

/// Issue 14 finding 19: SIGINT and SIGTERM killed the process at once, leaving its lock
/// object and the temp file of the pack it was writing. Now both are removed and the exit
/// code is 128 + the signal (130, 143); the repository checks clean and the next backup
/// runs as usual.
#[test]
fn sigterm_and_sigint_remove_the_lock_and_temp_files_and_exit_143_and_130() {
    let env = Env::with_repo();
    let src = env.path("src");
    for i in 0..6u64 {
        write(src.join(format!("big/{i}.bin")), random_bytes(300 + i, 16_000_000));
    }
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        // New data each round, so the backup has packs to write.
        write(
            src.join(format!("round-{code}.bin")),
            random_bytes(code as u64, 16_000_000),
        );
        let child = backup_process(&env, &src).spawn().expect("spawn backup");
        // Mid-way: as soon as a pack is being written (or, if that is missed, written).
        let start = std::time::Instant::now();
        let packs_before = objects_in(&env, "packs", false);
        let pack_temp = |env: &Env| temp_files(env).iter().any(|p| p.starts_with(env.repo().join("packs")));
        while !pack_temp(&env)
            && objects_in(&env, "packs", false) == packs_before
            && start.elapsed() < Duration::from_secs(120)
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        assert!(
            env.repo().join("locks").read_dir().unwrap().next().is_some(),
            "the backup holds its lock while it runs"
        );
        // SAFETY: kill(2) on our own child, which has not been waited for yet.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
        let out = child.wait_with_output().expect("wait for the signalled backup");
        assert_eq!(
            out.status.code(),
            Some(code),
            "signal {sig}: exit status {:?}, stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let locks: Vec<_> = files_under(&env.repo().join("locks"));
        assert!(locks.is_empty(), "signal {sig}: lock objects left: {locks:?}");
        assert_eq!(
            temp_files(&env),
            Vec::<std::path::PathBuf>::new(),
            "signal {sig}: temp files left"
        );
        env.run(["check"]).success();
    }
    env.backup([&src]);
    env.run(["check", "--read-data"]).success();
}

/// Issue 14 finding 19: temp files left by killed writes (`packs/xx/.tmp-*`, and the same
/// in the other folders) were never removed. Prune removes those untouched for a day and
/// leaves younger ones (a write may still be running).
#[test]
fn prune_removes_temp_files_of_killed_writes_older_than_a_day() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.bin"), random_bytes(5, 200_000));
    env.backup([&src]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let old = [
        "packs/ab/.tmp-00000000000000ab",
        "packs/.tmp-0000000000000001",
        "index/.tmp-0000000000000002",
        "snapshots/.tmp-0000000000000003",
        "locks/.tmp-0000000000000004",
        ".tmp-0000000000000005",
    ];
    let young = "packs/cd/.tmp-00000000000000cd";
    for (p, age) in old.iter().map(|p| (p, 2 * 86_400)).chain([(&young, 3_600)]) {
        let path = env.repo().join(p);
        write(&path, random_bytes(9, 1000));
        set_mtime(&path, now - age, 0);
    }
    env.run(["prune"]).success();
    for p in old {
        assert!(!env.repo().join(p).exists(), "{p} should be removed");
    }
    assert!(env.repo().join(young).exists(), "a temp file younger than a day stays");
    env.run(["check", "--read-data"]).success();
}
