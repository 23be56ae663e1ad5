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

/// The share of `path`'s pages in the page cache (`mincore` on a read-only mapping).
fn cached_share(path: &std::path::Path) -> f64 {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    if len == 0 {
        return 0.0;
    }
    let page = 4096;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: a private read-only mapping of a file this function holds open, unmapped
    // before it returns; mincore writes one byte per page into `vec`, which has that many.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap {}", path.display());
        assert_eq!(libc::mincore(p, len, vec.as_mut_ptr()), 0, "mincore {}", path.display());
        libc::munmap(p, len);
    }
    vec.iter().filter(|&&b| b & 1 == 1).count() as f64 / vec.len() as f64
}

/// Read `path` whole, so its pages are in the page cache.
fn read_into_cache(path: &std::path::Path) -> f64 {
    let _ = fs::read(path).unwrap();
    cached_share(path)
}

/// The packs of `env`'s repository.
fn packs(env: &Env) -> Vec<std::path::PathBuf> {
    let p: Vec<_> = files_under(&env.repo().join("packs"));
    assert!(!p.is_empty(), "the repository has packs");
    p
}

/// Bytes of `files` in the page cache, as a share of their bytes.
fn cached_share_of(files: &[std::path::PathBuf]) -> f64 {
    let (mut cached, mut total) = (0.0, 0.0);
    for f in files {
        let len = fs::metadata(f).unwrap().len() as f64;
        cached += cached_share(f) * len;
        total += len;
    }
    cached / total
}

/// A backup reads each byte once; keeping it cached only pushed the user's files out of
/// memory and, on a virtual machine that hands free memory back to its host, made every
/// page the read-ahead took fault in the host (2.5 s of a 2 GiB image's 7 s backup).
/// Large files read, packs written, and packs read whole (`check`) or in bulk (`restore`)
/// now give their page cache back; small files and metadata keep theirs.
#[test]
fn backup_check_and_restore_give_back_the_page_cache_of_what_they_read_once() {
    let env = Env::with_repo();
    let src = env.path("src");
    let big = src.join("disk.img");
    write(&big, random_bytes(3, 24 << 20));
    write(src.join("small.txt"), text_bytes(4, 64 << 10));
    for f in [&big, &src.join("small.txt")] {
        fs::File::open(f).unwrap().sync_all().unwrap(); // clean pages: only those can go
        assert!(read_into_cache(f) > 0.9, "{} is cached before the backup", f.display());
    }
    let id = env.backup([&src]);
    assert!(cached_share(&big) < 0.1, "the large file read: {}", cached_share(&big));
    assert!(
        cached_share(&src.join("small.txt")) > 0.9,
        "a small file keeps its cache: {}",
        cached_share(&src.join("small.txt"))
    );
    let packs = packs(&env);
    let share = cached_share_of(&packs);
    assert!(share < 0.1, "packs written: {share}");
    // Each step below starts with every pack cached.
    let after = |step: &dyn Fn()| {
        for p in &packs {
            read_into_cache(p);
        }
        step();
        cached_share_of(&packs)
    };
    let share = after(&|| {
        run(env.cmd().args(["check", "--read-data"])).success();
    });
    assert!(share < 0.1, "packs checked: {share}");
    let out = env.path("out");
    let share = after(&|| env.restore(&id, &out));
    assert!(share < 0.2, "packs restored from: {share}");
    assert_trees_equal(&src, &out, false);
}
