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
