//! Rolling verification: `check --read-data-within DAYS` reads a bounded share per run, the
//! packs read longest ago first, and always every pack past due; `check --read-data` goes
//! on from an interrupted one. The client's record is `CACHE/<repo>/read-data.json`; the
//! tests move its times back instead of waiting days.

use std::fs;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::util::*;

const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A repository of 1 MiB packs holding about 16 MiB.
fn repo_of_many_packs() -> Env {
    let env = Env::with_small_packs();
    let src = env.path("src");
    for i in 0..16u64 {
        write(src.join(format!("f{i}")), random_bytes(100 + i, 1 << 20));
    }
    env.backup([&src]);
    env
}

fn walk_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn record_path(env: &Env) -> PathBuf {
    let dirs: Vec<PathBuf> = fs::read_dir(env.cache())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("index.db").exists())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].join("read-data.json")
}

fn record(env: &Env) -> Value {
    serde_json::from_slice(&fs::read(record_path(env)).unwrap()).unwrap()
}

fn rolling(env: &Env, days: &str) -> Value {
    let v = env
        .run(["--json", "check", "--read-data-within", days])
        .success()
        .json();
    assert_eq!(v["ok"], true, "{v}");
    v["rolling"].clone()
}

#[test]
fn rolling_reads_a_bounded_share_and_every_pack_past_due() {
    let env = repo_of_many_packs();
    let packs = env.run(["--json", "check"]).success().json()["packs"].as_u64().unwrap();
    assert!(packs >= 16, "{packs} packs");

    let total: u64 = walk_files(&env.repo().join("packs"))
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    // A share of the bytes: at least it, and less than one more pack beyond it.
    let share = |r: &Value, num: u64, den: u64| {
        let b = r["bytes_read"].as_u64().unwrap();
        let want = total * num / den;
        assert!(
            b >= want && b < want + (1 << 20) + 65536,
            "{b} bytes read for {num}/{den} of {total}: {r}"
        );
    };

    // First run: a day's share of 4 days, a quarter of the bytes, nothing overdue.
    let r = rolling(&env, "4d");
    let first = r["packs_read"].as_u64().unwrap();
    share(&r, 1, 4);
    assert_eq!(
        (r["never_read"].as_u64().unwrap(), r["overdue"].as_u64()),
        (packs - first, Some(0))
    );
    // Again at once: the seconds since are worth a few bytes, so at most one pack is read.
    let between = rolling(&env, "4d")["packs_read"].as_u64().unwrap();
    assert!(between <= 1);

    // Two days later: half the bytes, the never-read packs first.
    let path = record_path(&env);
    let mut rec = record(&env);
    rec["last_rolling"] = json!(now() - 2 * DAY);
    fs::write(&path, rec.to_string()).unwrap();
    let r = rolling(&env, "4d");
    let second = r["packs_read"].as_u64().unwrap();
    share(&r, 2, 4);
    assert_eq!(
        r["never_read"].as_u64().unwrap(),
        packs - first - between - second,
        "{r}"
    );

    // Runs were missed: the unread packs were first seen 5 days ago, past due for 4 days.
    // This run reads every one of them, whatever the share.
    let mut rec = record(&env);
    let seen: Vec<String> = rec["seen"].as_object().unwrap().keys().cloned().collect();
    assert!(!seen.is_empty());
    for k in &seen {
        rec["seen"][k] = json!(now() - 5 * DAY);
    }
    rec["last_rolling"] = json!(now() - 60);
    fs::write(&path, rec.to_string()).unwrap();
    let r = rolling(&env, "4d");
    assert!(r["packs_read"].as_u64().unwrap() >= seen.len() as u64, "{r}");
    assert_eq!(
        (r["never_read"].as_u64(), r["overdue"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );

    // A damaged pack among those due is found.
    let mut rec = record(&env);
    let oldest = rec["read"].as_object().unwrap().keys().next().unwrap().clone();
    rec["read"][&oldest] = json!(now() - 10 * DAY);
    fs::write(&path, rec.to_string()).unwrap();
    let pack = env.repo().join("packs").join(&oldest[..2]).join(&oldest);
    let mut bytes = fs::read(&pack).unwrap();
    bytes[100] ^= 1;
    fs::write(&pack, bytes).unwrap();
    let out = env.run(["--json", "check", "--read-data-within", "4"]).code(1);
    assert!(
        out.json()["damaged_packs"].to_string().contains(&oldest),
        "{}",
        out.stdout
    );

    env.run(["check", "--read-data-within", "0"]).code(2);
}

#[test]
fn a_full_read_goes_on_from_an_interrupted_one() {
    let env = repo_of_many_packs();
    let full = env.run(["--json", "check", "--read-data"]).success().json();
    let all_blobs = full["blobs_read"].as_u64().unwrap();
    assert_eq!(full["resumed_from"], Value::Null);
    assert_eq!(record(&env)["full_run"], Value::Null, "a finished run leaves no marker");

    // As a run killed half way leaves it: started a minute ago, half the packs read since.
    let path = record_path(&env);
    let mut rec = record(&env);
    let started = now() - 60;
    rec["full_run"] = json!(started);
    let keys: Vec<String> = rec["read"].as_object().unwrap().keys().cloned().collect();
    for (i, k) in keys.iter().enumerate() {
        rec["read"][k] = json!(if i % 2 == 0 { started + 10 } else { started - DAY });
    }
    fs::write(&path, rec.to_string()).unwrap();
    let out = env.run(["check", "--read-data"]).success();
    assert!(
        out.stdout.contains("resumed the check --read-data started"),
        "{}",
        out.stdout
    );
    let skipped = keys.len().div_ceil(2);
    assert!(
        out.stdout.contains(&format!("{skipped} pack(s) it had read")),
        "{}",
        out.stdout
    );
    let resumed = record(&env);
    assert_eq!(resumed["full_run"], Value::Null);
    // The next one reads everything again.
    let again = env.run(["--json", "check", "--read-data"]).success().json();
    assert_eq!(again["resumed_from"], Value::Null);
    assert_eq!(again["blobs_read"].as_u64().unwrap(), all_blobs);

    // An interrupted run older than a week starts over.
    let mut rec = record(&env);
    rec["full_run"] = json!(now() - 8 * DAY);
    fs::write(&path, rec.to_string()).unwrap();
    let v = env.run(["--json", "check", "--read-data"]).success().json();
    assert_eq!(
        (v["resumed_from"].clone(), v["blobs_read"].as_u64()),
        (Value::Null, Some(all_blobs))
    );
}
