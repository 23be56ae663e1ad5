//! Parity across groups of packs (`parity create|rebuild|status`, format-spec §20): packs
//! lost whole or damaged are rebuilt byte for byte, as many per group as it has shards;
//! more losses are refused without a change; groups a prune broke are replaced.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::*;

fn packs(repo: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(repo.join("packs"))
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

/// About 11 MB backed up into a repository of 1 MiB packs. Groups are made by pack id, N at
/// a time: the first N ids form the first group.
fn setup(env: &Env) -> PathBuf {
    let src = env.path("src");
    for i in 0..12u64 {
        write(src.join(format!("f{i}")), random_bytes(500 + i, 900_000));
    }
    env.backup([&src]);
    src
}

#[test]
fn lost_and_damaged_packs_are_rebuilt_up_to_the_shard_count() {
    let env = Env::with_small_packs();
    let src = setup(&env);
    let all = packs(&env.repo());
    assert!(all.len() >= 5, "{} packs", all.len());
    let total: u64 = all.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    let r = env
        .run(["--json", "parity", "create", "--group", "4", "--shards", "2"])
        .success()
        .json();
    assert_eq!(r["status"]["covered"], all.len() as u64, "{r}");
    let parity = r["bytes_written"].as_u64().unwrap();
    // 2 shards per 4 packs: half the packs' bytes, plus padding and the last short group.
    assert!(parity >= total / 2 && parity < total, "{parity} of {total}");
    // Nothing to do the second time.
    assert_eq!(
        env.run(["--json", "parity", "create", "--group", "4", "--shards", "2"])
            .success()
            .json()["groups_written"],
        0
    );

    // In the first group (the 4 smallest ids): one pack deleted, one damaged.
    let lost = &all[0];
    let damaged = &all[2];
    let original_lost = fs::read(lost).unwrap();
    let original_damaged = fs::read(damaged).unwrap();
    fs::remove_file(lost).unwrap();
    let mut b = original_damaged.clone();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    fs::write(damaged, &b).unwrap();
    let out = env.run(["check", "--read-data"]).code(1);
    assert!(out.stderr.contains("parity rebuild"), "{}", out.stderr);

    let dry = env.run(["--json", "parity", "rebuild", "--dry-run"]).success().json();
    assert_eq!(dry["rebuilt"].as_array().unwrap().len(), 2, "{dry}");
    assert!(!lost.exists(), "a dry run writes nothing");
    env.run(["parity", "rebuild"]).success();
    assert!(fs::read(lost).unwrap() == original_lost);
    assert!(fs::read(damaged).unwrap() == original_damaged);
    env.run(["check", "--read-data"]).success();
    let target = env.path("restored");
    env.restore("latest", &target);
    for i in 0..12u64 {
        assert!(fs::read(target.join(format!("f{i}"))).unwrap() == fs::read(src.join(format!("f{i}"))).unwrap());
    }

    // Three losses in a group of two shards: refused, nothing written.
    for p in &all[..3] {
        fs::remove_file(p).unwrap();
    }
    let out = env.run(["parity", "rebuild"]).code(1);
    assert!(out.stdout.contains("cannot be rebuilt"), "{}", out.stdout);
    assert!(!all[0].exists());

    // Append-only clients never rebuild (it replaces packs).
    let out = env.run(["--append-only", "parity", "rebuild"]).code(1);
    assert!(out.stderr.contains("append-only"), "{}", out.stderr);
}

#[test]
fn groups_a_prune_broke_are_replaced() {
    let env = Env::with_small_packs();
    let src = setup(&env);
    env.run(["parity", "create", "--group", "4"]).success();
    // Half the data goes: a prune deletes packs, breaking their groups.
    for i in 0..6u64 {
        fs::remove_file(src.join(format!("f{i}"))).unwrap();
    }
    env.backup([&src]);
    env.run(["forget", "--keep-last", "1", "--prune"]).success();
    let s = env.run(["--json", "parity", "status"]).success().json();
    assert!(s["broken_groups"].as_u64().unwrap() > 0, "{s}");
    assert!(s["covered"].as_u64().unwrap() < s["packs"].as_u64().unwrap(), "{s}");
    let r = env.run(["--json", "parity", "create", "--group", "4"]).success().json();
    assert!(r["removed"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["status"]["broken_groups"], 0, "{r}");
    assert_eq!(r["status"]["covered"], r["status"]["packs"], "{r}");
    let human = env.run(["parity", "status"]).success().stdout;
    assert!(human.contains("pack(s) covered"), "{human}");
}
