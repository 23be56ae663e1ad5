//! `mount DIR` (a read-only FUSE file system of the snapshots, really mounted through
//! `/dev/fuse`) and `find PATTERN`: browsing and searching without a restore.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Std};
use std::time::{Duration, Instant};

use crate::util::*;

const MIB: usize = 1024 * 1024;

/// `projectclone mount DIR` running in the background, with ENV's repository.
struct Mount {
    child: Child,
    dir: PathBuf,
}

impl Mount {
    #[track_caller]
    fn start(env: &Env, dir: &Path, extra: &[&str]) -> Mount {
        fs::create_dir_all(dir).unwrap();
        let child = env.spawn(
            [OsStr::new("mount"), dir.as_os_str()]
                .into_iter()
                .chain(extra.iter().map(OsStr::new)),
        );
        let m = Mount {
            child,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !m.mounted() {
            assert!(
                Instant::now() < deadline,
                "the mount did not appear at {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn mounted(&self) -> bool {
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
        let dir = fs::canonicalize(&self.dir).unwrap();
        mounts
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(dir.to_str().unwrap()))
    }

    /// Ctrl-C: the command unmounts and exits 0.
    #[track_caller]
    fn interrupt(mut self) -> String {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let out = std::mem::replace(&mut self.child, Std::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(!self.mounted(), "still mounted after Ctrl-C");
        stderr
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.mounted() {
            let _ = rustix_umount(&self.dir);
        }
    }
}

fn rustix_umount(dir: &Path) -> std::io::Result<()> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    match unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[test]
fn mount_shows_every_snapshot_as_it_was_read_only_and_ctrl_c_unmounts() {
    let env = Env::with_repo();
    let src = env.path("app");
    let big = random_bytes(7, 3 * MIB + 4321);
    write(src.join("data/big.bin"), &big);
    write(src.join("notes.txt"), b"first\n");
    let sparse = src.join("sparse.img");
    {
        let f = fs::File::create(&sparse).unwrap();
        f.set_len(2 * MIB as u64).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_at(b"middle", MIB as u64).unwrap();
    }
    std::os::unix::fs::symlink("data/big.bin", src.join("link")).unwrap();
    fs::set_permissions(src.join("notes.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    xattr::set(src.join("notes.txt"), "user.kind", b"text").unwrap();
    let first = env.backup([&src]);
    write(src.join("notes.txt"), b"second\n");
    let second = env.backup([&src]);

    let mnt = env.path("mnt");
    let m = Mount::start(&env, &mnt, &[]);
    let names: Vec<String> = fs::read_dir(mnt.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // `<time>-<id>`: both backups may fall in the same second, so find each by its id.
    let name_of = |id: &str| {
        names
            .iter()
            .find(|n| n.ends_with(&format!("-{}", &id[..8])))
            .unwrap_or_else(|| panic!("no snapshot {id} in {names:?}"))
            .clone()
    };
    let (first_name, second_name) = (name_of(&first), name_of(&second));
    let old = mnt.join("snapshots").join(&first_name);
    let latest = mnt.join("projects/app/latest");
    assert_eq!(
        fs::read_link(&latest).unwrap(),
        PathBuf::from(format!("../../snapshots/{second_name}"))
    );

    // Contents, old and new, whole and at an offset across a chunk boundary.
    assert_eq!(fs::read(old.join("notes.txt")).unwrap(), b"first\n");
    assert_eq!(fs::read(latest.join("notes.txt")).unwrap(), b"second\n");
    let got = fs::read(latest.join("data/big.bin")).unwrap();
    assert!(got == big, "big.bin differs ({} bytes read)", got.len());
    let mut f = fs::File::open(latest.join("data/big.bin")).unwrap();
    f.seek(SeekFrom::Start(MIB as u64 - 100)).unwrap();
    let mut part = vec![0; 300_000];
    f.read_exact(&mut part).unwrap();
    assert!(part[..] == big[MIB - 100..MIB - 100 + 300_000]);
    let img = fs::read(latest.join("sparse.img")).unwrap();
    assert_eq!(img.len(), 2 * MIB);
    assert_eq!(&img[MIB..MIB + 6], b"middle");
    assert!(img[..MIB].iter().all(|&b| b == 0));

    // Metadata as recorded.
    assert_eq!(
        fs::read_link(latest.join("link")).unwrap(),
        PathBuf::from("data/big.bin")
    );
    let (here, there) = (
        fs::metadata(src.join("notes.txt")).unwrap(),
        fs::metadata(latest.join("notes.txt")).unwrap(),
    );
    assert_eq!(there.mode() & 0o7777, 0o600);
    assert_eq!((there.mtime(), there.mtime_nsec()), (here.mtime(), here.mtime_nsec()));
    assert_eq!(
        xattr::get(latest.join("notes.txt"), "user.kind").unwrap().as_deref(),
        Some(&b"text"[..])
    );

    // Read-only.
    let err = fs::write(latest.join("new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = fs::OpenOptions::new()
        .write(true)
        .open(latest.join("notes.txt"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");

    // The mount holds a shared lock; Ctrl-C unmounts, exits 0 and leaves no lock.
    assert_eq!(fs::read_dir(env.repo().join("locks")).unwrap().count(), 1);
    let stderr = m.interrupt();
    assert!(stderr.contains("unmounted"), "{stderr}");
    assert_eq!(fs::read_dir(env.repo().join("locks")).unwrap().count(), 0);

    // Filters choose the snapshots shown.
    let m = Mount::start(&env, &mnt, &["--tag", "none-has-it"]);
    assert_eq!(fs::read_dir(mnt.join("snapshots")).unwrap().count(), 0);
    m.interrupt();
}

#[test]
fn find_searches_every_snapshot_by_name_or_path() {
    let env = Env::with_repo();
    let src = env.path("app");
    write(src.join("src/main.rs"), b"fn main() {}");
    write(src.join("src/db/schema.sql"), b"create table t();");
    let first = env.backup([&src]);
    write(src.join("dump.sql"), b"insert;");
    let second = env.backup([&src]);

    let out = env.run(["find", "*.sql"]).success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("{}  /src/db/schema.sql", &first[..8]),
            format!("{}  /dump.sql", &second[..8]),
            format!("{}  /src/db/schema.sql", &second[..8]),
        ],
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("3 match(es) in 2 of 2 snapshot(s)"),
        "{}",
        out.stderr
    );

    // A pattern with a slash is a path from the snapshot root.
    let j = env.run(["--json", "find", "src/**/*.sql"]).success().json();
    let hits = j.as_array().unwrap();
    assert_eq!(hits.len(), 2, "{j}");
    assert_eq!(hits[0]["path"], "/src/db/schema.sql");
    assert_eq!(hits[0]["type"], "file");
    assert_eq!(hits[0]["size"], 17);
    assert_eq!(env.run(["--json", "find", "db"]).success().json()[0]["type"], "dir");

    // Nothing found: exit 1; a bad pattern: a clear error.
    env.run(["find", "*.nothing"]).code(1);
    let out = env.run(["find", "a[b"]).code(1);
    assert!(out.stderr.contains("pattern \"a[b\""), "{}", out.stderr);
}
