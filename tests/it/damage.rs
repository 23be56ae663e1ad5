//! Guarantees 4 and 9: damage is detected, never silent. A flipped byte, a missing pack, a
//! renamed or swapped object: `check` fails (or `--read-data` does), restore fails loudly
//! naming the file and never returns wrong bytes, and undamaged files still restore.

use std::fs;
use std::path::{Path, PathBuf};

use projectclone::format::NodeKind;
use projectclone::id::BlobId;

use crate::util::*;

struct Fixture {
    env: Env,
    src: PathBuf,
    id: String,
}

fn fixture() -> Fixture {
    fixture_sized(3_000_000)
}

/// `big.bin` of `size` bytes (several chunks at 3 MB) and smaller files beside it.
fn fixture_sized(size: usize) -> Fixture {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("big.bin"), random_bytes(91, size));
    write(src.join("other.bin"), random_bytes(92, size / 3));
    write(src.join("a.txt"), b"a small file\n");
    write(src.join("d/b.txt"), b"another small file\n");
    let id = env.backup([&src]);
    Fixture { env, src, id }
}

/// The pack path and the offset of the middle of the first chunk of `name`.
fn locate_chunk(env: &Env, name: &[u8]) -> (PathBuf, String, u64) {
    let f = Forge::open(env);
    let (_, snap) = f.repo.resolve_snapshot("latest").unwrap();
    let node = f.repo.find_node(&snap.tree, name).unwrap().expect("file in snapshot");
    let NodeKind::File(data) = node.kind else {
        panic!("not a file")
    };
    let chunks = f.repo.chunk_list(&data.content).unwrap();
    let loc = f.repo.locate(&BlobId(chunks[0].id.0)).unwrap();
    let hex = loc.pack.to_hex();
    let path = env.repo().join("packs").join(&hex[..2]).join(&hex);
    assert!(path.is_file(), "pack at {}", path.display());
    (path, hex, loc.offset + loc.length as u64 / 2)
}

fn flip(path: &Path, offset: u64) {
    let mut b = fs::read(path).unwrap();
    b[offset as usize] ^= 0x40;
    fs::write(path, b).unwrap();
}

fn packs(env: &Env) -> Vec<PathBuf> {
    files_under(&env.repo().join("packs"))
}

#[track_caller]
fn assert_no_panic(out: &Out) {
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn flipped_byte_in_a_data_pack_is_found_and_restore_names_the_file() {
    let Fixture { env, src, id } = fixture();
    let (pack, hex, off) = locate_chunk(&env, b"big.bin");
    flip(&pack, off);

    // A structural check may not read the data; --read-data must find it.
    assert_no_panic(&env.run(["check"]));
    let out = env.run(["check", "--read-data"]);
    assert_ne!(out.code, 0, "check --read-data missed a flipped byte:\n{}", out.stdout);
    assert_no_panic(&out);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains(&hex), "check names the damaged pack {hex}:\n{all}");

    let target = env.path("out");
    let out = env.run(["restore".as_ref(), id.as_ref(), "--target".as_ref(), target.as_os_str()]);
    assert_ne!(out.code, 0, "restore of damaged data succeeded");
    assert_no_panic(&out);
    assert!(
        out.stderr.contains("big.bin"),
        "restore names the damaged file: {}",
        out.stderr
    );
    for ok in ["other.bin", "a.txt", "d/b.txt"] {
        assert!(!out.stderr.contains(ok), "{ok} is not damaged: {}", out.stderr);
        assert_entries_equal(&src.join(ok), &target.join(ok));
    }
    if let Ok(b) = fs::read(target.join("big.bin")) {
        assert!(
            b != fs::read(src.join("big.bin")).unwrap() || b.is_empty(),
            "impossible: damaged yet equal"
        );
    }

    // Restoring only undamaged files succeeds.
    let t2 = env.path("out2");
    env.run([
        "restore".as_ref(),
        id.as_ref(),
        "--include".as_ref(),
        "d".as_ref(),
        "--include".as_ref(),
        "other.bin".as_ref(),
        "--target".as_ref(),
        t2.as_os_str(),
    ])
    .success();
    assert_entries_equal(&src.join("other.bin"), &t2.join("other.bin"));
}

#[test]
fn deleted_pack_is_damage() {
    let Fixture { env, id, .. } = fixture();
    let (pack, hex, _) = locate_chunk(&env, b"big.bin");
    fs::remove_file(&pack).unwrap();
    let out = env.run(["check"]);
    assert_ne!(out.code, 0, "check missed a deleted pack:\n{}", out.stdout);
    assert!(format!("{}{}", out.stdout, out.stderr).contains(&hex), "{}", out.stdout);
    let target = env.path("out");
    let out = env.run(["restore".as_ref(), id.as_ref(), "--target".as_ref(), target.as_os_str()]);
    assert_ne!(out.code, 0);
    assert_no_panic(&out);
    assert!(out.stderr.contains("big.bin"), "{}", out.stderr);
}

#[test]
fn renamed_and_swapped_packs_are_detected() {
    for mode in ["rename", "swap"] {
        let Fixture { env, src, id } = fixture();
        let all = packs(&env);
        assert!(all.len() >= 2, "{all:?}");
        let (data_pack, _, _) = locate_chunk(&env, b"big.bin");
        let other = all.iter().find(|p| **p != data_pack).unwrap().clone();
        if mode == "rename" {
            let new_name = "ab".repeat(32);
            fs::create_dir_all(env.repo().join("packs/ab")).unwrap();
            fs::rename(&data_pack, env.repo().join("packs/ab").join(new_name)).unwrap();
        } else {
            // Each pack's bytes under the other's name.
            let (x, y) = (fs::read(&data_pack).unwrap(), fs::read(&other).unwrap());
            fs::write(&data_pack, y).unwrap();
            fs::write(&other, x).unwrap();
        }
        let out = env.run(["check"]);
        assert_ne!(out.code, 0, "{mode}: check passed:\n{}", out.stdout);
        assert_no_panic(&out);
        let out = env.run(["check", "--read-data"]);
        assert_ne!(out.code, 0, "{mode}: check --read-data passed:\n{}", out.stdout);
        let target = env.path("out");
        let out = env.run(["restore".as_ref(), id.as_ref(), "--target".as_ref(), target.as_os_str()]);
        assert_ne!(out.code, 0, "{mode}: restore succeeded");
        assert_no_panic(&out);
        assert_no_wrong_bytes(&src, &target, &out.stderr);
    }
}

/// Every file that restore did not name as failed must be exactly right.
fn assert_no_wrong_bytes(src: &Path, target: &Path, stderr: &str) {
    for rel in ["big.bin", "other.bin", "a.txt", "d/b.txt"] {
        let t = target.join(rel);
        if t.exists() && !stderr.contains(rel) {
            assert_eq!(
                fs::read(&t).unwrap(),
                fs::read(src.join(rel)).unwrap(),
                "{rel} restored with wrong bytes and no error"
            );
        }
    }
}

#[test]
fn every_flipped_byte_in_any_object_is_detected() {
    let Fixture { env, src, .. } = fixture_sized(200_000);
    let objects = files_under(&env.repo());
    let mut cases = 0;
    for (i, obj) in objects.iter().enumerate() {
        let rel = obj.strip_prefix(env.repo()).unwrap().to_path_buf();
        if rel.starts_with("locks") {
            continue;
        }
        let len = fs::metadata(obj).unwrap().len();
        let mut offsets = vec![0, 5, 6, len / 2, len - 1];
        if rel.starts_with("packs") {
            offsets.extend([len - 12, len - 13, len - 40]);
        }
        offsets.sort();
        offsets.dedup();
        for off in offsets {
            cases += 1;
            let copy = env.path(format!("copy-{i}-{off}"));
            let st = std::process::Command::new("cp")
                .arg("-a")
                .arg(env.repo())
                .arg(&copy)
                .status()
                .unwrap();
            assert!(st.success());
            flip(&copy.join(&rel), off);
            let cache = env.path(format!("cache-{i}-{off}"));
            // The cache of each copy is its own: the copies share the repository id.
            let mut check = env.bare();
            check
                .env("PROJECTCLONE_PASSWORD", PASSWORD)
                .env("PROJECTCLONE_CACHE_DIR", &cache)
                .arg("-r")
                .arg(&copy)
                .args(["check", "--read-data"]);
            let out = run(&mut check);
            assert_ne!(
                out.code,
                0,
                "{} byte {off} flipped: check --read-data passed:\n{}",
                rel.display(),
                out.stdout
            );
            assert_no_panic(&out);
            let target = env.path(format!("t-{i}-{off}"));
            let mut restore = env.bare();
            restore
                .env("PROJECTCLONE_PASSWORD", PASSWORD)
                .env("PROJECTCLONE_CACHE_DIR", &cache)
                .arg("-r")
                .arg(&copy)
                .args(["restore", "latest", "--target"])
                .arg(&target);
            let out = run(&mut restore);
            assert_no_panic(&out);
            if out.code == 0 {
                assert_trees_equal(&src, &target, true);
            } else {
                assert_no_wrong_bytes(&src, &target, &out.stderr);
            }
            let _ = fs::remove_dir_all(&copy);
            let _ = fs::remove_dir_all(&target);
        }
    }
    assert!(cases >= 20, "{cases}");
}

#[test]
fn swapped_snapshot_objects_are_detected() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("f.txt"), b"first\n");
    let a = env.backup([&src]);
    write(src.join("f.txt"), b"second\n");
    let b = env.backup([&src]);
    let (pa, pb_) = (
        env.repo().join("snapshots").join(&a),
        env.repo().join("snapshots").join(&b),
    );
    let (x, y) = (fs::read(&pa).unwrap(), fs::read(&pb_).unwrap());
    fs::write(&pa, y).unwrap();
    fs::write(&pb_, x).unwrap();
    fs::remove_dir_all(env.cache()).unwrap();
    let out = env.run(["check"]);
    assert_ne!(out.code, 0, "check passed with swapped snapshots:\n{}", out.stdout);
    assert_no_panic(&out);
    let target = env.path("out");
    let out = env.run(["restore".as_ref(), a.as_ref(), "--target".as_ref(), target.as_os_str()]);
    assert_no_panic(&out);
    if out.code == 0 {
        assert_eq!(
            fs::read(target.join("f.txt")).unwrap(),
            b"first\n",
            "restore returned the other snapshot"
        );
    }
}

#[test]
fn unreferenced_pack_is_reported_but_not_an_error() {
    let Fixture { env, .. } = fixture();
    let mut f = Forge::open(&env);
    f.data(b"a blob in a pack that no index lists, as a killed backup leaves it");
    let orphan = f.flush(false);
    drop(f);
    for args in [vec!["check"], vec!["check", "--read-data"]] {
        let out = env.run(&args).success();
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            all.contains(&orphan[..12]),
            "{args:?} should mention the unreferenced pack {orphan}:\n{all}"
        );
    }
}

/// Issue 14 finding 16: a file whose data was damaged stayed in the target under its real
/// name with part of its data (the chunks that could be read), its hard links with it,
/// and the summary counted it as restored. It is now removed, and `files`, `dirs` and
/// `bytes` count only what was restored; in a fresh target and over an earlier restore.
#[test]
fn restore_leaves_no_partial_file_and_counts_only_what_it_restored() {
    let env = Env::with_repo();
    let src = env.path("src");
    let big = random_bytes(93, 3_000_000);
    write(src.join("big.bin"), &big);
    write(src.join("other.bin"), random_bytes(94, 1_000_000));
    write(src.join("a.txt"), b"a small file\n");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::hard_link(src.join("big.bin"), src.join("d/big-link.bin")).unwrap();
    let id = env.backup([&src]);
    let (pack, _, off) = locate_chunk(&env, b"big.bin");
    flip(&pack, off);

    let target = env.path("out");
    for round in ["fresh target", "over an earlier restore"] {
        let out = env.run([
            "--json".as_ref(),
            "restore".as_ref(),
            id.as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ]);
        let out = out.code(1);
        assert_no_panic(&out);
        let v = out.json();
        for gone in ["big.bin", "d/big-link.bin"] {
            assert!(
                fs::symlink_metadata(target.join(gone)).is_err(),
                "{round}: {gone} must not be left with partial content"
            );
            assert!(out.stderr.contains(gone), "{round}: {gone} named: {}", out.stderr);
        }
        assert_entries_equal(&src.join("other.bin"), &target.join("other.bin"));
        assert_entries_equal(&src.join("a.txt"), &target.join("a.txt"));
        assert_eq!(v["files"], 2, "{round}: {v}");
        assert_eq!(v["dirs"], 1, "{round}: {v}");
        assert_eq!(v["bytes"], 1_000_000 + 13, "{round}: {v}");
        assert_eq!(v["bytes_written"], 1_000_000 + 13, "{round}: {v}");
        assert_eq!(v["errors"].as_array().unwrap().len(), 2, "{round}: {v}");
    }
    let out = env.run(["restore".as_ref(), id.as_ref(), "--target".as_ref(), target.as_os_str()]);
    let err = out.code(1).stderr;
    assert!(
        err.contains(": 2 files, 1 dirs, 976.6 KiB; 2 error(s), 2 of 4 files and 0 of 1 dirs not restored"),
        "the summary counts what was restored: {err}"
    );
}

/// `ls --json` streams its entries (a million of them took 2.3 GB as one JSON value), but a
/// walk that meets a damaged directory half way must still leave stdout with the one error
/// document, not half an array; the text listing names what it could list and fails.
#[test]
fn ls_json_over_a_damaged_directory_prints_only_the_error_object() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.txt"), b"listed before the damage\n");
    // Enough entries that `sub` is a tree of its own, not inlined in its parent's.
    for i in 0..64 {
        write(src.join(format!("sub/file-with-a-long-name-{i:03}.txt")), b"x\n");
    }
    env.backup([&src]);
    let f = Forge::open(&env);
    let (_, snap) = f.repo.resolve_snapshot("latest").unwrap();
    let node = f.repo.find_node(&snap.tree, b"sub").unwrap().expect("sub in snapshot");
    let NodeKind::Dir(tree) = node.kind else {
        panic!("sub is inlined: {:?}", node.kind)
    };
    let loc = f.repo.locate(&BlobId(tree.0)).unwrap();
    drop(f);
    let hex = loc.pack.to_hex();
    let pack = env.repo().join("packs").join(&hex[..2]).join(&hex);
    flip(&pack, loc.offset + loc.length as u64 / 2);
    // A fresh cache: the tree is read from the damaged pack.
    let _ = fs::remove_dir_all(env.cache());

    let out = env.run(["--json", "ls", "latest"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert_no_panic(&out);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", out.stdout));
    assert_eq!(doc["message_type"], "exit_error", "{doc}");

    let out = env.run(["ls", "latest"]);
    assert_ne!(out.code, 0);
    assert!(out.stdout.contains("/a.txt"), "{}", out.stdout);
    assert!(!out.stdout.contains("file-with-a-long-name-010"), "{}", out.stdout);
}
