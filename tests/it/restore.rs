//! Restore into a target that cannot take everything (README "restore").

use std::fs;

use crate::util::*;

/// Issue 14 finding 16: on a target file system that fills up, files whose writes failed
/// stayed under their names, truncated, and the summary counted them as restored. Every
/// file left in the target must now be complete, and `files`/`bytes` count exactly those.
#[test]
fn restore_onto_a_full_file_system_leaves_only_complete_files_and_counts_them() {
    let env = Env::with_repo();
    let src = env.path("src");
    let n = 16;
    for i in 0..n {
        write(src.join(format!("f{i:02}.bin")), random_bytes(200 + i, 400_000));
    }
    let id = env.backup([&src]);
    let target = env.path("small");
    // 6.4 MB of incompressible data onto a 2 MiB tmpfs.
    let _fs = Mount::tmpfs(&target, "2m");
    let mut c = env.cmd();
    c.args(["--json", "restore", &id, "--target"]).arg(&target);
    let out = run(&mut c).code(1);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let v = out.json();
    let (mut present, mut bytes) = (0u64, 0u64);
    for i in 0..n {
        let name = format!("f{i:02}.bin");
        match fs::read(target.join(&name)) {
            Ok(b) => {
                assert!(b == fs::read(src.join(&name)).unwrap(), "{name} left incomplete");
                present += 1;
                bytes += b.len() as u64;
            }
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{name}");
                assert!(
                    out.stderr.contains(&name),
                    "{name} not restored and not named: {}",
                    out.stderr
                );
            }
        }
    }
    assert!(present > 0 && present < n, "{present} of {n} files fit");
    assert_eq!(v["files"], present, "{v}");
    assert_eq!(v["bytes"], bytes, "{v}");
    assert_eq!(v["errors"].as_array().unwrap().len() as u64, n - present, "{v}");
}

/// Restore reserves the blocks of a file over 1 MiB when it creates it (`fallocate`) on
/// ext4 and XFS. btrfs writes such a reserved extent in place, without the compression the
/// file system is mounted with, so there it must not: a compressible file restored onto a
/// `compress=zstd` btrfs is stored compressed (its extents "encoded"), as `cp` leaves it.
/// This is asked of each file's own file system: a target on another one may hold the
/// btrfs as a mount point.
#[test]
fn restore_onto_compressed_btrfs_leaves_files_compressed() {
    let env = Env::with_repo();
    let src = env.path("src");
    let data = text_bytes(31, 4_000_000);
    write(src.join("sub/big.txt"), &data);
    let id = env.backup([&src]);
    let mnt = env.path("btrfs");
    let _m = Mount::image("btrfs", &env.path("btrfs.img"), 256 << 20, &mnt, "compress=zstd");
    // The test's own folder's file system, with the btrfs mounted inside it as `sub`.
    let outer = env.path("outer");
    fs::create_dir(mnt.join("inner")).unwrap();
    let _b = Mount::bind(&mnt.join("inner"), &outer.join("sub"));
    // Into a new target (files made by the data phase), then into one that holds the file
    // already (replaced in the skeleton phase), then into the outer target.
    for target in [mnt.join("restored"), mnt.join("restored"), outer] {
        env.restore(&id, &target);
        let file = target.join("sub/big.txt");
        assert!(fs::read(&file).unwrap() == data, "restored bytes differ");
        assert!(
            std::process::Command::new("sync")
                .arg("-f")
                .arg(&file)
                .status()
                .unwrap()
                .success()
        );
        let frag = std::process::Command::new("filefrag")
            .arg("-v")
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("filefrag does not run ({e}): .ci/install-servers installs e2fsprogs"));
        assert!(
            frag.status.success(),
            "filefrag: {}",
            String::from_utf8_lossy(&frag.stderr)
        );
        let frag = String::from_utf8_lossy(&frag.stdout);
        assert!(
            frag.contains("encoded"),
            "{} is not compressed on btrfs:\n{frag}",
            file.display()
        );
    }
}
