//! What a backup reads and leaves out (README "backup").

use std::fs;

use crate::util::*;

/// Issue 14 finding 18: the repository and the cache were left out by path only, so a
/// repository bind-mounted inside the source (same directory, another path) was backed up
/// into itself. They are now recognised by the device and inode of the directory.
#[test]
fn a_repository_bind_mounted_inside_the_source_is_not_backed_up_into_itself() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("code.txt"), b"code\n");
    fs::create_dir_all(env.cache()).unwrap();
    let _repo = Mount::bind(&env.repo(), &src.join("mnt/repo"));
    let _cache = Mount::bind(&env.cache(), &src.join("mnt/cache"));
    assert!(
        src.join("mnt/repo/config").is_file(),
        "the bind mount shows the repository"
    );
    let id = env.backup([&src]);
    // And as one of several sources, the mount point itself given.
    let id2 = env.backup([src.join("code.txt"), src.join("mnt/repo")]);
    drop((_repo, _cache));

    let t = env.path("out");
    env.restore(&id, &t);
    assert_eq!(
        rel_paths(&t),
        ["code.txt", "mnt"].map(String::from).into(),
        "{:?}",
        rel_paths(&t)
    );
    let t2 = env.path("out2");
    env.restore(&id2, &t2);
    assert_eq!(
        rel_paths(&t2),
        ["code.txt"].map(String::from).into(),
        "{:?}",
        rel_paths(&t2)
    );
}

/// A chunk cut at the 8 MiB maximum (a long run the rolling hash never cuts) grows the
/// walker's read buffer and a sealing worker's scratch to about 9 MiB; both give that
/// capacity back after the file or blob. The files read after such a file, through the
/// smaller buffers, and the next maximum-size chunk, through grown ones again, must come
/// back byte for byte.
#[test]
fn files_after_a_maximum_size_chunk_come_back_exactly() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a-run.bin"), vec![7u8; 17 << 20]);
    for i in 0..6u64 {
        write(
            src.join(format!("b-{i}.bin")),
            random_bytes(i, 300_000 + i as usize * 700_000),
        );
    }
    let mut mixed = vec![0u8; 9 << 20];
    mixed.extend_from_slice(&random_bytes(99, 3 << 20));
    write(src.join("c-mixed.bin"), mixed);
    write(src.join("d-text.txt"), text_bytes(5, 2 << 20));
    let id = env.backup([&src]);
    run(env.cmd().args(["check", "--read-data"])).success();
    let out = env.path("out");
    env.restore(&id, &out);
    assert_trees_equal(&src, &out, false);
}
