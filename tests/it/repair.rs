//! `repair snapshots`: damaged snapshots are rewritten keeping every readable file.

use std::collections::BTreeSet;

use crate::util::*;

/// Two snapshots; the second adds `b`, whose data lands in a pack of its own. Returns
/// (env, first id, second id, the pack holding `b`).
fn damaged_repo() -> (Env, String, String, std::path::PathBuf) {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a"), random_bytes(1, 200_000));
    write(src.join("d/keep"), random_bytes(3, 1000));
    age_tree(&src);
    let first = env.backup([&src]);
    let (second, big_new) = backup_then_lose_its_data_pack(&env, &src.join("b"), random_bytes(2, 300_000));
    (env, first, second, big_new)
}

/// Write `content` at `file` (under the backed-up `src`), back up again, and delete the
/// largest pack that backup wrote (the one holding `file`'s data). Returns (snapshot, pack).
fn backup_then_lose_its_data_pack(env: &Env, file: &std::path::Path, content: Vec<u8>) -> (String, std::path::PathBuf) {
    let src = env.path("src");
    let before: BTreeSet<_> = files_under(&env.repo().join("packs")).into_iter().collect();
    write(file, content);
    age_tree(&src);
    let snap = env.backup([&src]);
    let pack = files_under(&env.repo().join("packs"))
        .into_iter()
        .filter(|p| !before.contains(p))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("the backup wrote a data pack");
    std::fs::remove_file(&pack).unwrap();
    (snap, pack)
}

#[test]
fn repair_snapshots_keeps_what_remains_and_check_is_clean_again() {
    let (env, first, second, _) = damaged_repo();
    env.run(["check"]).failure();

    // Dry run: names the lost file, changes nothing.
    let before = fingerprint(&env.repo());
    let plan = env.run(["--json", "repair", "snapshots", "--dry-run"]).success().json();
    assert_eq!(fingerprint(&env.repo()), before, "dry run wrote to the repository");
    let repaired = plan["repaired"].as_array().unwrap();
    assert_eq!(repaired.len(), 1, "{plan}");
    assert_eq!(repaired[0]["old"], second.as_str());
    assert_eq!(repaired[0]["dropped"], serde_json::json!(["/b"]));

    let out = env
        .run(["--json", "repair", "snapshots", "--forget-originals"])
        .success()
        .json();
    let new = out["repaired"][0]["new"].as_str().unwrap().to_string();
    assert_ne!(new, second);
    env.run(["check", "--read-data"]).success();

    let snaps = env.snapshots();
    let ids: Vec<&str> = snaps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert!(
        ids.contains(&first.as_str()) && ids.contains(&new.as_str()) && !ids.contains(&second.as_str()),
        "{ids:?}"
    );
    let s = snaps.iter().find(|s| s["id"] == new.as_str()).unwrap();
    assert!(s["tags"].as_array().unwrap().iter().any(|t| t == "repaired"), "{s}");
    assert!(s["note"].as_str().unwrap().contains("1 path(s) lost"), "{s}");

    let out = env.path("out");
    env.restore(&new, &out);
    assert_eq!(std::fs::read(out.join("a")).unwrap(), random_bytes(1, 200_000));
    assert_eq!(std::fs::read(out.join("d/keep")).unwrap(), random_bytes(3, 1000));
    assert!(!out.join("b").exists());
    // The first snapshot never needed the lost pack and still restores whole.
    let out1 = env.path("out1");
    env.restore(&first, &out1);
    assert_eq!(std::fs::read(out1.join("a")).unwrap(), random_bytes(1, 200_000));
}

#[test]
fn repair_snapshots_keep_original_and_nothing_to_do() {
    let (env, _, second, _) = damaged_repo();
    env.run(["repair", "snapshots", "--keep-original"]).success();
    let ids: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&second));

    let healthy = Env::with_repo();
    let src = healthy.path("src");
    write(src.join("x"), b"x");
    healthy.backup([&src]);
    let before = fingerprint(&healthy.repo());
    let out = healthy.run(["repair", "snapshots"]).success();
    assert!(out.stdout.contains("no damaged snapshots"), "{}", out.stdout);
    assert_eq!(fingerprint(&healthy.repo()), before);
}

/// A lost file inside small directories stored inline in their parent's page (format §9):
/// repair drops just that file, and the directories around it keep their other entries.
#[test]
fn repair_drops_a_lost_file_inside_inline_directories() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("x/y/keep"), random_bytes(3, 1000));
    write(src.join("x/z"), random_bytes(4, 1000));
    age_tree(&src);
    env.backup([&src]);
    let (second, _) = backup_then_lose_its_data_pack(&env, &src.join("x/y/lost"), random_bytes(5, 300_000));

    let out = env
        .run(["--json", "repair", "snapshots", "--forget-originals"])
        .success()
        .json();
    let r = &out["repaired"][0];
    assert_eq!(r["old"], second.as_str(), "{out}");
    assert_eq!(r["dropped"], serde_json::json!(["/x/y/lost"]));
    env.run(["check", "--read-data"]).success();
    let target = env.path("out");
    env.restore(r["new"].as_str().unwrap(), &target);
    assert_eq!(std::fs::read(target.join("x/y/keep")).unwrap(), random_bytes(3, 1000));
    assert_eq!(std::fs::read(target.join("x/z")).unwrap(), random_bytes(4, 1000));
    assert!(!target.join("x/y/lost").exists());
}
