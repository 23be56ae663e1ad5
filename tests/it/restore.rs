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
