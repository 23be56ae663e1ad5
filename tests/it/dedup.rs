//! Deduplication: an unchanged tree costs no new data; a shifted large file re-stores only
//! the chunks around the change; identical content is stored once.

use std::fs;

use crate::util::*;

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("backup --json: {key} is not a number in {v}"))
}

fn repo_bytes(env: &Env) -> u64 {
    files_under(&env.repo())
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

/// Write `edited` over `src/name` and back up again: the second backup must see one changed
/// file. Returns what it added, how much the repository grew, and its snapshot id.
#[track_caller]
fn back_up_edit(env: &Env, src: &std::path::Path, name: &str, edited: &[u8]) -> (u64, u64, String) {
    let before = repo_bytes(env);
    write(src.join(name), edited);
    age_tree(src);
    let second = env.backup_json([src]);
    assert_eq!(num(&second, "files_changed"), 1, "{second}");
    let snapshot = second["snapshot_id"].as_str().unwrap().to_string();
    (num(&second, "data_added"), repo_bytes(env) - before, snapshot)
}

/// Restore `snapshot` and compare `name` with `want`.
#[track_caller]
fn assert_restores(env: &Env, snapshot: &str, name: &str, want: &[u8]) {
    let target = env.path("out");
    env.restore(snapshot, &target);
    assert!(fs::read(target.join(name)).unwrap() == want, "{name} restored wrongly");
}

#[test]
fn unchanged_second_backup_adds_no_pack() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("medium.bin"), random_bytes(11, 3_000_000));
    for i in 0..40 {
        write(
            src.join(format!("d{}/f{i}.txt", i % 4)),
            format!("file {i}\n").repeat(i + 1),
        );
    }
    fs::create_dir_all(src.join("d0/empty")).unwrap();
    // mtimes well before the first snapshot: the racy-clean rule must not force re-reads.
    age_tree(&src);

    let first = env.backup_json([&src]);
    assert_eq!(num(&first, "files_new"), 41, "{first}");
    assert_eq!(num(&first, "files_changed"), 0, "{first}");
    assert_eq!(num(&first, "files_unmodified"), 0, "{first}");
    assert_eq!(num(&first, "errors"), 0, "{first}");
    assert!(num(&first, "data_added") > 3_000_000, "{first}");
    let packs_before = files_under(&env.repo().join("packs"));
    let index_before = files_under(&env.repo().join("index"));
    assert!(!packs_before.is_empty());

    let second = env.backup_json([&src]);
    assert_eq!(num(&second, "files_unmodified"), 41, "{second}");
    assert_eq!(num(&second, "files_new"), 0, "{second}");
    assert_eq!(num(&second, "files_changed"), 0, "{second}");
    assert_eq!(num(&second, "data_added"), 0, "{second}");
    assert_eq!(
        num(&second, "data_read"),
        0,
        "unchanged files must not be read again: {second}"
    );
    assert_eq!(num(&second, "dirs"), num(&first, "dirs"), "{second}");
    assert_ne!(second["snapshot_id"], first["snapshot_id"]);
    assert_eq!(files_under(&env.repo().join("packs")), packs_before, "no new pack");
    assert_eq!(
        files_under(&env.repo().join("index")),
        index_before,
        "no new index delta"
    );
    assert_eq!(env.snapshots().len(), 2);
}

#[test]
fn inserting_one_kib_at_the_start_of_a_large_file_restores_few_chunks() {
    const SIZE: usize = 40 * 1024 * 1024;
    let env = Env::with_repo();
    let src = env.path("src");
    let data = random_bytes(21, SIZE);
    write(src.join("big.bin"), &data);
    age_tree(&src);
    let first = env.backup_json([&src]);
    assert!(num(&first, "data_added") >= SIZE as u64, "{first}");

    let mut shifted = random_bytes(22, 1024);
    shifted.extend_from_slice(&data);
    drop(data);
    let (added, growth, snapshot) = back_up_edit(&env, &src, "big.bin", &shifted);
    let limit = SIZE as u64 / 10;
    assert!(
        added < limit && growth < limit,
        "a 1 KiB insert re-stored {added} bytes (repository grew {growth}); expected well under {limit}"
    );

    // And the shifted file restores exactly from old and new chunks.
    assert_restores(&env, &snapshot, "big.bin", &shifted);
}

#[test]
fn an_insert_inside_a_zero_run_stores_only_the_chunk_it_falls_in() {
    // Like a database file or disk image: a long zero-filled region, then data. FastCDC
    // cannot cut inside zeros, so without the run rule (format-spec §15) the first chunk
    // would run on into the data, and this insert would store that data again (a random
    // amount, about 512 KB on average with the default parameters).
    let env = Env::with_repo();
    let src = env.path("src");
    let mut data = vec![0u8; 4_041_012];
    data.extend(random_bytes(41, 12_000_000));
    write(src.join("image.bin"), &data);
    age_tree(&src);
    env.backup_json([&src]);

    let mut edited = data[..4096].to_vec();
    edited.extend(random_bytes(42, 1024));
    edited.extend_from_slice(&data[4096..]);
    let (added, growth, snapshot) = back_up_edit(&env, &src, "image.bin", &edited);
    assert!(
        added < 32_000 && growth < 32_000,
        "a 1 KiB insert into the zero run stored {added} bytes (repository grew {growth})"
    );
    assert_restores(&env, &snapshot, "image.bin", &edited);
}

#[test]
fn identical_content_is_stored_once() {
    let env = Env::with_repo();
    let src = env.path("src");
    let blob = random_bytes(31, 6_000_000);
    write(src.join("a/one.bin"), &blob);
    write(src.join("b/c/two.bin"), &blob);
    write(src.join("b/three.bin"), &blob);
    age_tree(&src);
    let first = env.backup_json([&src]);
    let added = num(&first, "data_added");
    assert!(
        (6_000_000..7_000_000).contains(&added),
        "three copies of 6 MB in one backup should store about 6 MB, stored {added}"
    );

    // Moving a directory re-reads nothing new: only trees are written.
    fs::rename(src.join("b"), src.join("moved")).unwrap();
    let second = env.backup_json([&src]);
    let added = num(&second, "data_added");
    assert!(added < 100_000, "a moved directory stored {added} bytes again");
    let target = env.path("out");
    env.restore("latest", &target);
    assert!(fs::read(target.join("moved/c/two.bin")).unwrap() == blob);
    assert!(fs::read(target.join("a/one.bin")).unwrap() == blob);
}

#[test]
fn same_size_and_mtime_but_new_content_is_noticed() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("edited.txt"), b"version one\n");
    write(src.join("replaced.txt"), b"original file\n");
    age_tree(&src);
    env.backup([&src]);

    // Rewrite in place, then put the old mtime back: only the ctime tells.
    let md = fs::metadata(src.join("edited.txt")).unwrap();
    fs::write(src.join("edited.txt"), b"version two\n").unwrap();
    set_mtime(&src.join("edited.txt"), md.mtime(), md.mtime_nsec() as u32);
    // Replace by another file (another inode) with the same size and mtime.
    let md = fs::metadata(src.join("replaced.txt")).unwrap();
    write(src.join("new.tmp"), b"replacement!!\n");
    set_mtime(&src.join("new.tmp"), md.mtime(), md.mtime_nsec() as u32);
    fs::rename(src.join("new.tmp"), src.join("replaced.txt")).unwrap();

    let j = env.backup_json([&src]);
    assert_eq!(j["files_changed"], 2, "{j}");
    let target = env.path("out");
    env.restore("latest", &target);
    assert_eq!(fs::read(target.join("edited.txt")).unwrap(), b"version two\n");
    assert_eq!(fs::read(target.join("replaced.txt")).unwrap(), b"replacement!!\n");
}

#[test]
fn parent_snapshot_is_found_whatever_the_path_spelling() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a/b.txt"), b"b\n");
    write(src.join("c.bin"), random_bytes(3, 100_000));
    age_tree(&src);
    let first = crate::util::run(env.cmd().arg("backup").arg("src").current_dir(env.root()))
        .success()
        .snapshot_id();
    let mut spelled = src.clone().into_os_string();
    spelled.push("/./a/..//");
    let j = env.backup_json([&spelled]);
    assert_eq!(j["files_unmodified"], 2, "{j}");
    let snaps = env.snapshots();
    let second = snaps.iter().find(|s| s["id"] == j["snapshot_id"]).unwrap();
    assert_eq!(second["parent"], first.as_str());
    assert_eq!(second["paths"], snaps[0]["paths"]);
}

/// A file of many chunks keeps its chunk list in content-defined pages: an edit near its
/// start stores one or two new pages, the others are the same blobs as before, and the
/// file restores and checks whole. (Small chunker parameters, set through the library,
/// make a 10 MB file about 9000 chunks, about 60 pages whatever the repository's key;
/// the defaults page the lists of files of 64 MiB and more.)
#[test]
fn long_chunk_lists_are_paged_and_an_edit_rewrites_few_pages() {
    use projectclone::backend::local::LocalBackend;
    use projectclone::chunker::ChunkerParams;
    use projectclone::crypto::KdfParams;
    use projectclone::format::{Content, NodeKind};
    use projectclone::repo::{InitOptions, Repository};

    let env = Env::new();
    let opts = InitOptions {
        kdf: KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        },
        chunker: ChunkerParams {
            min: 256,
            avg: 1024,
            max: 4096,
            normalization: 1,
            run: 128,
            large: None,
        },
        pack_target: None,
        state_dir: None,
    };
    let backend = std::sync::Arc::new(LocalBackend::new(env.repo()));
    Repository::init(backend, Some(PASSWORD.as_bytes()), &opts, &env.path("init-cache")).expect("init");

    let src = env.path("src");
    let data = random_bytes(31, 10_000_000);
    write(src.join("big.bin"), &data);
    // A short file with the big one's first bytes: its chunk list is in its entry, and
    // shares chunks with the paged one, so a restore writes those chunks to both.
    write(src.join("small.bin"), &data[..8000]);
    age_tree(&src);
    let first = env.backup([&src]);
    let mut edited = data[..5000].to_vec();
    edited.extend_from_slice(&random_bytes(32, 1024));
    edited.extend_from_slice(&data[5000..]);
    write(src.join("big.bin"), &edited);
    age_tree(&src);
    let second = env.backup([&src]);

    let pages = |snap: &str| {
        let f = Forge::open(&env);
        let (_, s) = f.repo.resolve_snapshot(snap).unwrap();
        let node = f.repo.find_node(&s.tree, b"big.bin").unwrap().expect("big.bin");
        let NodeKind::File(d) = node.kind else {
            panic!("not a file")
        };
        let Content::Pages(p) = d.content else {
            panic!("chunk list not paged")
        };
        p
    };
    let (a, b) = (pages(&first), pages(&second));
    assert!(a.len() > 10, "{} pages", a.len());
    {
        let f = Forge::open(&env);
        let (_, s) = f.repo.resolve_snapshot(&first).unwrap();
        let list = |name: &[u8]| {
            let node = f.repo.find_node(&s.tree, name).unwrap().expect("file");
            let NodeKind::File(d) = node.kind else {
                panic!("not a file")
            };
            (
                matches!(d.content, Content::Chunks(_)),
                f.repo.chunk_list(&d.content).unwrap(),
            )
        };
        let ((inline, small), (_, big)) = (list(b"small.bin"), list(b"big.bin"));
        assert!(inline, "small.bin's chunk list should be in its entry");
        let shared = small.iter().filter(|c| big.iter().any(|b| b.id == c.id)).count();
        assert!(shared >= 2, "small.bin shares {shared} chunks with big.bin");
    }
    let new = b.iter().filter(|p| !a.contains(p)).count();
    assert!(
        (1..=2).contains(&new),
        "{new} of {} pages rewritten by one 1 KiB insert",
        b.len()
    );

    env.run(["check", "--read-data"]).success();
    for (snap, want) in [(&first, &data), (&second, &edited)] {
        let target = env.path(format!("out-{snap}"));
        env.restore(snap, &target);
        assert!(
            fs::read(target.join("big.bin")).unwrap() == *want,
            "{snap} restored wrongly"
        );
        assert!(
            fs::read(target.join("small.bin")).unwrap() == data[..8000],
            "{snap}: small.bin restored wrongly"
        );
    }
}

/// Files of 64 MiB and more (disk images, databases) are cut into chunks of about 256 KiB,
/// smaller ones into chunks of about 1 MiB: scattered small writes to a large file cost a
/// quarter of what they did (format-spec §15, "Large files").
#[test]
fn large_files_are_cut_finer_and_small_edits_to_them_store_little() {
    const LARGE: usize = 64 << 20;
    let env = Env::with_repo();
    let unique_chunks = |snap: &str| {
        let s = env.run(["--json", "stats", snap]).success().json();
        num(&s, "unique_chunks")
    };
    let src = env.path("src");
    let mut image = random_bytes(22, LARGE);
    write(src.join("image.bin"), &image);
    age_tree(&src);
    let fine = unique_chunks(&env.backup([&src]));
    // 64 MiB in chunks of 256 KiB on average, not 1 MiB (within a factor 2).
    assert!((128..=512).contains(&fine), "{fine} chunks from 64 MiB on");

    // 16 writes of 4 KiB spread over the image: each rewrites a chunk or two of at most
    // 2 MiB (1 MiB chunks would cost about 16-32 MiB).
    for i in 0..16 {
        let at = i * (LARGE / 16) + 12_345;
        image[at..at + 4096].copy_from_slice(&random_bytes(100 + i as u64, 4096));
    }
    let (added, _, snap) = back_up_edit(&env, &src, "image.bin", &image);
    assert!(added > 0 && added < 12 << 20, "{added} bytes added for 64 KiB of edits");
    assert_restores(&env, &snap, "image.bin", &image);
}
