//! `copy` re-checks its lock on the destination before it writes there, as a backup does:
//! blobs the destination already held are reused on the strength of that lock, and a prune
//! may have removed them once the lock went stale.

use std::sync::Arc;
use std::time::Duration;

use projectclone::backend::local::LocalBackend;
use projectclone::lock::{self, LockMode};
use projectclone::repo::Repository;

use crate::util::*;

#[test]
fn a_copy_whose_destination_lock_went_stale_writes_no_snapshot() {
    let env = Env::with_repo();
    let src_dir = env.path("src");
    write(src_dir.join("a.txt"), b"copied data");
    env.backup([src_dir.to_str().unwrap()]);
    let dst_env = Env::with_repo();
    let pw = Some(PASSWORD.as_bytes());
    let src = Repository::open(Arc::new(LocalBackend::new(env.repo())), pw, &env.cache()).unwrap();
    let snaps = src.snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    let mut dst = Repository::open(Arc::new(LocalBackend::new(dst_env.repo())), pw, &dst_env.cache()).unwrap();

    let g = lock::acquire(&dst, LockMode::Shared, "copy").unwrap();
    g.backdate_for_tests(Duration::from_secs(29 * 60 + 30));
    let err = projectclone::copy::copy(&src, &mut dst, &snaps, false, Some(&g)).expect_err("copied on a stale lock");
    assert!(err.to_string().contains("went stale"), "{err}");
    drop(g);
    assert!(dst.snapshots().unwrap().is_empty(), "a snapshot was written");

    let g = lock::acquire(&dst, LockMode::Shared, "copy").unwrap();
    let report = projectclone::copy::copy(&src, &mut dst, &snaps, false, Some(&g)).unwrap();
    drop(g);
    assert_eq!(report.copied.len(), 1);
    drop(dst);
    dst_env.run(["check", "--read-data"]).success();
    let target = dst_env.path("restored");
    dst_env
        .run(["restore", "latest", "--target", target.to_str().unwrap()])
        .success();
    let restored: Vec<_> = files_under(&target)
        .into_iter()
        .filter(|p| p.ends_with("a.txt"))
        .collect();
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert_eq!(std::fs::read(&restored[0]).unwrap(), b"copied data");
}
