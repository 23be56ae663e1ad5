//! Issue 16 item 5: an initial backup killed half way resumes. The packs it stored are
//! listed by checkpoint deltas, so the next backup deduplicates against them instead of
//! sending them again, and a prune in between keeps them while they are young.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

const FILES: u64 = 32;
const FILE_SIZE: usize = 4 * 1024 * 1024;

/// Complete pack objects (no temp files of writes in progress) and their bytes.
fn packs_stored(repo: &Path) -> (usize, u64) {
    let packs: Vec<_> = files_under(&repo.join("packs"))
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    let bytes = packs.iter().map(|p| fs::metadata(p).map_or(0, |m| m.len())).sum();
    (packs.len(), bytes)
}

fn bytes_sent(out: &serde_json::Value) -> u64 {
    out["storage"]["bytes_sent"]
        .as_u64()
        .unwrap_or_else(|| panic!("no storage.bytes_sent in {out}"))
}

/// Start a backup of `src` into `env`'s repository and SIGKILL it once packs of at least
/// half of `total` bytes are stored.
fn kill_half_way(env: &Env, src: &Path, total: u64) {
    let mut child = Command::new(bin_path())
        .env_remove("PROJECTCLONE_PASSWORD_FILE")
        .env("PROJECTCLONE_PASSWORD", PASSWORD)
        .env("HOME", env.path("home"))
        .env("XDG_STATE_HOME", env.path("xdg-state"))
        .env("XDG_CONFIG_HOME", env.path("xdg-config"))
        .arg("-r")
        .arg(env.repo())
        .arg("--cache-dir")
        .arg(env.cache())
        .arg("-q")
        .arg("backup")
        .arg(src)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while packs_stored(&env.repo()).1 < total / 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before half of it was stored"
        );
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the backup stored less than half in 3 minutes"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn a_backup_killed_half_way_resumes_and_sends_the_rest_only() {
    let src_env = Env::new();
    let src = src_env.path("src");
    for i in 0..FILES {
        write(src.join(format!("f{i:02}.bin")), random_bytes(500 + i, FILE_SIZE));
    }
    age_tree(&src);
    let total = FILES * FILE_SIZE as u64;

    // What a whole backup sends, into a repository of its own.
    let whole = Env::with_small_packs();
    let full = bytes_sent(&whole.backup_json([&src]));
    assert!(
        full >= total,
        "a whole backup sent {full} bytes for {total} bytes of data"
    );

    let env = Env::with_small_packs();
    kill_half_way(&env, &src, total);
    let (packs_left, _) = packs_stored(&env.repo());
    assert!(env.snapshots().is_empty(), "the killed backup must not have finished");

    // The repository is consistent, and a prune keeps the young packs for the resume.
    env.run(["check"]).success();
    let p = env.run(["--json", "prune"]).success().json();
    let kept_ids: Vec<&str> = p["kept_for_resume"]
        .as_array()
        .expect("kept_for_resume")
        .iter()
        .map(|v| v.as_str().expect("pack id"))
        .collect();
    let kept = kept_ids.len();
    assert!(kept > 0 && kept <= packs_left, "{p}");
    // The bytes of the kept packs: what the resumed backup must not send again.
    let kept_bytes: u64 = files_under(&env.repo().join("packs"))
        .iter()
        .filter(|f| kept_ids.contains(&f.file_name().unwrap().to_string_lossy().as_ref()))
        .map(|f| fs::metadata(f).unwrap().len())
        .sum();
    assert!(
        p["condemned_packs"]
            .as_array()
            .is_none_or(|c| c.len() <= packs_left - kept),
        "{p}"
    );
    let text = env.run(["prune", "--dry-run"]).success();
    assert!(
        text.stdout.contains("of an interrupted backup were kept"),
        "{}",
        text.stdout
    );

    let rerun = env.backup_json([&src]);
    let sent = bytes_sent(&rerun);
    eprintln!(
        "killed with {packs_left} packs stored; prune kept {kept} ({kept_bytes} bytes); the rerun sent {sent} of {full} bytes ({}%)",
        sent * 100 / full
    );
    // The packs the checkpoint deltas listed hold most of the killed half (the last few
    // packs before the kill may not be listed yet: a delta is written every few packs).
    assert!(
        kept_bytes * 100 >= total * 40,
        "the checkpoints listed only {kept_bytes} bytes of the {total} stored before the kill"
    );
    // None of them is sent again: the rerun sends the rest, plus its index and snapshot
    // (1% of slack for those).
    assert!(
        sent + kept_bytes <= full + full / 100,
        "the resumed backup sent {sent} bytes although {kept_bytes} of a whole backup's {full} were kept"
    );
    env.run(["check", "--read-data"]).success();
    let snap = rerun["snapshot_id"].as_str().expect("snapshot id").to_string();
    let target = env.path("restored");
    env.restore(&snap, &target);
    assert_trees_equal(&src, &target, false);
}

/// Packs only checkpoint deltas list are kept while those deltas are younger than a day
/// (by the store's clock), and condemned as unused after that.
#[test]
fn prune_collects_packs_of_an_interrupted_backup_once_a_day_old() {
    let env = Env::with_small_packs();
    let src = env.path("src");
    for i in 0..8 {
        write(src.join(format!("f{i}.bin")), random_bytes(900 + i, FILE_SIZE));
    }
    kill_half_way(&env, &src, 8 * FILE_SIZE as u64);
    let p = env.run(["--json", "prune", "--dry-run"]).success().json();
    let kept = p["kept_for_resume"].as_array().expect("kept_for_resume").len();
    assert!(kept > 0, "{p}");
    let day_and_a_bit = 25 * 3600;
    for d in files_under(&env.repo().join("index")) {
        let age = fs::metadata(&d).unwrap().modified().unwrap();
        let secs = age.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - day_and_a_bit;
        set_mtime(&d, secs, 0);
    }
    let p = env.run(["--json", "prune"]).success().json();
    assert_eq!(p["kept_for_resume"].as_array().map_or(0, |k| k.len()), 0, "{p}");
    assert!(
        p["condemned_packs"].as_array().expect("condemned_packs").len() >= kept,
        "{p}"
    );
    env.run(["check", "--read-data"]).success();
}

/// A backup that finishes lists all its packs in its last delta and deletes its checkpoint
/// deltas: once its snapshot is forgotten, a prune frees its packs at once instead of
/// keeping them a day as a killed backup's work.
#[test]
fn a_finished_backup_leaves_no_checkpoint_delta_and_prune_frees_it_at_once() {
    let env = Env::with_small_packs();
    let src = env.path("src");
    for i in 0..3 {
        write(src.join(format!("f{i}.bin")), random_bytes(950 + i, FILE_SIZE));
    }
    // 12 MiB in 1 MiB packs: checkpoint deltas are written every 4 packs.
    let id = env.backup([&src]);
    let deltas = files_under(&env.repo().join("index"));
    assert_eq!(deltas.len(), 1, "one delta left: {deltas:?}");
    env.run(["check", "--read-data"]).success();
    // Another client reads it as well, and restores.
    let other = env.path("other-state");
    let mut c = env.cmd();
    c.env("XDG_CACHE_HOME", &other)
        .args(["restore", &id, "--target"])
        .arg(env.path("out"));
    run(&mut c).success();
    assert_trees_equal(&src, &env.path("out"), false);

    env.run(["forget", &id]).success();
    let p = env.run(["--json", "prune"]).success().json();
    assert_eq!(p["kept_for_resume"].as_array().map_or(0, |k| k.len()), 0, "{p}");
    assert_eq!(packs_stored(&env.repo()).0, 0, "{p}");
}
