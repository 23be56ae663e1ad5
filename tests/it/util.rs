//! Shared helpers: a throwaway environment per test, a command builder for the binary,
//! a "nasty" source tree, and an exact tree comparison.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};

pub const PASSWORD: &str = "correct horse battery staple";

/// A throwaway environment: its own repository, cache, HOME and XDG directories, so no
/// test touches the real home or another test's state.
pub struct Env {
    pub tmp: tempfile::TempDir,
}

/// Outcome of one run of the binary.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub raw_stdout: Vec<u8>,
}

impl Out {
    #[track_caller]
    pub fn success(self) -> Out {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn code(self, code: i32) -> Out {
        assert_eq!(
            self.code, code,
            "expected exit code {code}\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn failure(self) -> Out {
        assert_ne!(
            self.code, 0,
            "expected failure\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// The snapshot id printed by `backup` (exactly 64 hex digits and a newline).
    #[track_caller]
    pub fn snapshot_id(&self) -> String {
        assert_id_line(&self.stdout);
        self.stdout.trim_end().to_string()
    }
}

#[track_caller]
pub fn assert_id_line(stdout: &str) {
    let ok = stdout.len() == 65
        && stdout.ends_with('\n')
        && stdout[..64]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    assert!(
        ok,
        "stdout must be exactly a 64-hex-digit snapshot id and a newline, got {stdout:?}"
    );
}

pub fn run(cmd: &mut Command) -> Out {
    let o = cmd.output().expect("the binary runs (and ends within its timeout)");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        raw_stdout: o.stdout,
    }
}

pub fn bin_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_projectclone"))
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new().prefix("pcl-it-").tempdir().expect("temp dir");
        for d in ["home", "xdg-data", "xdg-cache", "xdg-config", "xdg-state"] {
            fs::create_dir_all(tmp.path().join(d)).expect("mkdir");
        }
        Env { tmp }
    }

    /// A new environment with an initialised repository (fast KDF).
    pub fn with_repo() -> Env {
        let e = Env::new();
        e.init();
        e
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    pub fn cache(&self) -> PathBuf {
        self.path("cache")
    }

    /// The binary with an isolated environment and no password, repository or cache.
    pub fn bare(&self) -> Command {
        let mut c = Command::cargo_bin("projectclone").expect("binary built");
        for v in [
            "PROJECTCLONE_REPO",
            "PROJECTCLONE_PASSWORD",
            "PROJECTCLONE_PASSWORD_FILE",
            "PROJECTCLONE_CACHE_DIR",
            "PROJECTCLONE_NEW_PASSWORD",
            "PROJECTCLONE_PASSWORD_COMMAND",
            "PROJECTCLONE_PROFILE",
            "PROJECTCLONE_LOG",
            "RUST_LOG",
        ] {
            c.env_remove(v);
        }
        c.env("HOME", self.path("home"))
            .env("XDG_DATA_HOME", self.path("xdg-data"))
            .env("XDG_CACHE_HOME", self.path("xdg-cache"))
            .env("XDG_CONFIG_HOME", self.path("xdg-config"))
            .env("XDG_STATE_HOME", self.path("xdg-state"))
            .env("TZ", "UTC")
            .current_dir(self.root())
            // A hang (say, reading a device node) fails the test instead of blocking the suite.
            .timeout(std::time::Duration::from_secs(240));
        c
    }

    /// The binary with the password in the environment, `-r REPO` and `--cache-dir CACHE`.
    pub fn cmd(&self) -> Command {
        self.cmd_at(&self.repo())
    }

    /// Like `cmd()` for another repository path.
    pub fn cmd_at(&self, repo: &Path) -> Command {
        let mut c = self.bare();
        c.env("PROJECTCLONE_PASSWORD", PASSWORD)
            .arg("-r")
            .arg(repo)
            .arg("--cache-dir")
            .arg(self.cache());
        c
    }

    /// Like `cmd()`, but the binary runs as uid/gid 65534 (nobody) through `setpriv`.
    pub fn cmd_as_nobody(&self) -> Command {
        let mut c = Command::new("setpriv");
        for v in [
            "PROJECTCLONE_REPO",
            "PROJECTCLONE_PASSWORD_FILE",
            "PROJECTCLONE_CACHE_DIR",
            "PROJECTCLONE_LOG",
            "RUST_LOG",
        ] {
            c.env_remove(v);
        }
        c.env("HOME", self.path("home"))
            .env("XDG_DATA_HOME", self.path("xdg-data"))
            .env("XDG_CACHE_HOME", self.path("xdg-cache"))
            .env("XDG_CONFIG_HOME", self.path("xdg-config"))
            .env("XDG_STATE_HOME", self.path("xdg-state"))
            .env("TZ", "UTC")
            .env("PROJECTCLONE_PASSWORD", PASSWORD)
            .current_dir(self.root())
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin_path())
            .arg("-r")
            .arg(self.repo())
            .arg("--cache-dir")
            .arg(self.cache());
        c
    }

    pub fn run<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(self.cmd().args(args))
    }

    /// A new environment with a repository of 1 MiB packs (fast KDF): a few MiB of data
    /// make many packs.
    pub fn with_small_packs() -> Env {
        let e = Env::new();
        e.run([
            "init",
            "--kdf-memory",
            "1024",
            "--kdf-time",
            "1",
            "--weak-kdf",
            "--pack-size",
            "1",
        ])
        .success();
        e
    }

    /// The binary started in the background as [`cmd`](Self::cmd) would run it (password,
    /// `-r REPO`, `--cache-dir CACHE`), stdin empty, stdout and stderr piped: for commands
    /// that run until stopped (`mount`, `watch`).
    pub fn spawn<I, S>(&self, args: I) -> std::process::Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        use std::process::Stdio;
        std::process::Command::new(bin_path())
            .env_remove("PROJECTCLONE_REPO")
            .env("PROJECTCLONE_PASSWORD", PASSWORD)
            .env("HOME", self.path("home"))
            .env("XDG_DATA_HOME", self.path("xdg-data"))
            .env("XDG_CACHE_HOME", self.path("xdg-cache"))
            .env("XDG_CONFIG_HOME", self.path("xdg-config"))
            .env("XDG_STATE_HOME", self.path("xdg-state"))
            .env("TZ", "UTC")
            .current_dir(self.root())
            .arg("-r")
            .arg(self.repo())
            .arg("--cache-dir")
            .arg(self.cache())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary")
    }

    pub fn init(&self) {
        self.run(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"])
            .success();
    }

    /// `backup ARGS...`; returns the new snapshot id.
    #[track_caller]
    pub fn backup<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd();
        c.arg("backup").args(args);
        run(&mut c).success().snapshot_id()
    }

    /// `backup --json ARGS...`, expecting success.
    #[track_caller]
    pub fn backup_json<I, S>(&self, args: I) -> serde_json::Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd();
        c.arg("--json").arg("backup").args(args);
        run(&mut c).success().json()
    }

    #[track_caller]
    pub fn restore(&self, snap: &str, target: &Path) {
        let mut c = self.cmd();
        c.args(["restore", snap, "--target"]).arg(target);
        run(&mut c).success();
    }

    /// `snapshots --json`.
    #[track_caller]
    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        let v = self.run(["--json", "snapshots"]).success().json();
        v.as_array().expect("snapshots --json gives an array").clone()
    }

    pub fn pack_count(&self) -> usize {
        files_under(&self.repo().join("packs")).len()
    }
}

/// Every regular file below `dir` (recursively), sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd {
            let e = e.expect("dir entry");
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                walk(&e.path(), out);
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    walk(dir, &mut out);
    out.sort();
    out
}

/// Every entry below `dir` with its type and the BLAKE3 of its bytes (files) — a
/// fingerprint to show that nothing in a directory changed.
pub fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd {
            let e = e.expect("dir entry");
            let p = e.path();
            let rel = p.strip_prefix(root).expect("below root").to_path_buf();
            let md = fs::symlink_metadata(&p).expect("lstat");
            let ft = md.file_type();
            let v = if ft.is_dir() {
                walk(root, &p, out);
                format!("dir {:o}", md.mode())
            } else if ft.is_file() {
                format!(
                    "file {:o} {}",
                    md.mode(),
                    blake3::hash(&fs::read(&p).expect("read")).to_hex()
                )
            } else if ft.is_symlink() {
                format!("symlink {:?}", fs::read_link(&p).expect("readlink"))
            } else {
                format!("other {:o}", md.mode())
            };
            out.insert(rel, v);
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// Relative paths (as raw bytes joined by `/`) of every entry below `dir`.
pub fn rel_paths(dir: &Path) -> BTreeSet<String> {
    fingerprint(dir)
        .into_keys()
        .map(|p| String::from_utf8_lossy(p.as_os_str().as_bytes()).into_owned())
        .collect()
}

/// Make everything below (and including) `dir` readable and writable by everybody.
pub fn world_accessible(dir: &Path) {
    let md = fs::symlink_metadata(dir).expect("lstat");
    if md.file_type().is_symlink() {
        return;
    }
    let mode = if md.is_dir() { 0o777 } else { 0o666 };
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).expect("chmod");
    if md.is_dir() {
        for e in fs::read_dir(dir).expect("read_dir") {
            world_accessible(&e.expect("entry").path());
        }
    }
}

/// Make everything below (and including) `dir` readable, not writable, by everybody
/// (folders 0755, files 0644): a repository another user may read.
pub fn world_readable(dir: &Path) {
    let md = fs::symlink_metadata(dir).expect("lstat");
    if md.file_type().is_symlink() {
        return;
    }
    let mode = if md.is_dir() { 0o755 } else { 0o644 };
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).expect("chmod");
    if md.is_dir() {
        for e in fs::read_dir(dir).expect("read_dir") {
            world_readable(&e.expect("entry").path());
        }
    }
}

// ---------------------------------------------------------------- data

/// Deterministic incompressible bytes (splitmix64).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    while out.len() < len {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Deterministic, highly compressible text-like bytes: a 64 KiB block of words repeated,
/// each copy behind its own header line, so no two 512 KiB chunks are equal but zstd
/// stores the whole at a small fraction of its size.
pub fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&[u8]; 16] = [
        b"alpha",
        b"bravo",
        b"charlie",
        b"delta",
        b"echo",
        b"foxtrot",
        b"golf",
        b"hotel",
        b"india",
        b"juliet",
        b"kilo",
        b"lima",
        b"mike",
        b"november",
        b"oscar",
        b"papa",
    ];
    let r = random_bytes(seed, 16 * 1024);
    let mut block = Vec::with_capacity(64 * 1024 + 16);
    for (i, b) in r.iter().enumerate() {
        block.extend_from_slice(WORDS[(b & 15) as usize]);
        block.push(if i % 9 == 8 { b'\n' } else { b' ' });
        if block.len() >= 64 * 1024 {
            break;
        }
    }
    let mut out = Vec::with_capacity(len + block.len() + 64);
    let mut n = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("== {seed} block {n:08} ==\n").as_bytes());
        out.extend_from_slice(&block);
        n += 1;
    }
    out.truncate(len);
    out
}

/// Write the user config file (`$XDG_CONFIG_HOME/projectclone/config.toml`) of `env`.
pub fn user_file(env: &Env, text: &str) {
    write(env.path("xdg-config/projectclone/config.toml"), text);
}

pub fn write(path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) {
    let path = path.as_ref();
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("mkdir -p");
    }
    fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Join raw name bytes onto a path.
pub fn pb(base: &Path, name: &[u8]) -> PathBuf {
    base.join(OsStr::from_bytes(name))
}

/// Set atime and mtime (nanoseconds) without following a final symlink.
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nanos as _,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// Give every entry below `root` (and `root`) a distinct mtime in the past (2021),
/// with nanoseconds, deepest first. Past mtimes keep the racy-clean rule out of dedup
/// tests: only files modified within a second of the previous backup are re-read.
pub fn age_tree(root: &Path) {
    let mut entries = Vec::new();
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(d).expect("read_dir") {
            let e = e.expect("entry");
            let p = e.path();
            if e.file_type().expect("type").is_dir() {
                walk(&p, out);
            }
            out.push(p);
        }
    }
    walk(root, &mut entries);
    entries.push(root.to_path_buf());
    for (i, p) in entries.iter().enumerate() {
        set_mtime(
            p,
            1_620_000_000 + i as i64 * 7,
            (i as u32).wrapping_mul(7_919_993) % 1_000_000_000,
        );
    }
}

// ---------------------------------------------------------------- the nasty tree

/// Size of the random file in the nasty tree.
pub const NASTY_BIG: usize = 20 * 1024 * 1024;

/// Build a tree with everything a backup tool gets wrong: odd names, empty files and
/// directories, a 20 MB random file, many small files, all kinds of symlinks, a hard-link
/// group across directories, a FIFO, a character device, a sparse file, xattrs, setuid and
/// other odd modes, foreign owners, nanosecond and pre-1970 mtimes.
pub fn build_nasty(root: &Path) {
    fs::create_dir_all(root).expect("mkdir");
    write(root.join("hello.txt"), b"hello world\n");
    write(root.join("empty_file"), b"");
    fs::create_dir_all(root.join("empty_dir")).expect("mkdir");
    fs::create_dir_all(root.join("nested/empty/deeper")).expect("mkdir");
    // Names: not UTF-8, a newline, a backslash, a tab, unicode, 255 bytes, leading dash and dot.
    write(pb(root, b"bad\xff\xfename"), b"not utf-8 name\n");
    write(pb(root, b"new\nline"), b"newline in name\n");
    write(pb(root, b"back\\slash"), b"backslash\n");
    write(pb(root, b"tab\there"), b"tab\n");
    write(root.join("ünïcødé ☃.txt"), "unicode ☃\n");
    write(pb(root, &[b'L'; 255]), b"long name\n");
    write(root.join("-dash"), b"dash\n");
    write(root.join(".hidden"), b"hidden\n");
    fs::create_dir_all(pb(root, b"dir\xc0\x80odd")).expect("mkdir");
    write(pb(root, b"dir\xc0\x80odd/inner\x01"), b"inner\n");

    write(root.join("big/random.bin"), random_bytes(1, NASTY_BIG));
    // Many small files, some with identical content.
    for i in 0..300u32 {
        let content = if i % 10 == 0 {
            b"duplicate content\n".to_vec()
        } else {
            format!("small file {i}\n").repeat(i as usize % 7 + 1).into_bytes()
        };
        write(root.join(format!("small/f{i:03}")), content);
    }

    fs::create_dir_all(root.join("links")).expect("mkdir");
    std::os::unix::fs::symlink("../hello.txt", root.join("links/rel")).expect("symlink");
    std::os::unix::fs::symlink("does/not/exist", root.join("links/dangling")).expect("symlink");
    std::os::unix::fs::symlink("/etc/hostname", root.join("links/abs")).expect("symlink");
    std::os::unix::fs::symlink("../small", root.join("links/to_dir")).expect("symlink");
    std::os::unix::fs::symlink("loop", root.join("links/loop")).expect("symlink");
    std::os::unix::fs::symlink(OsStr::from_bytes(b"tar\xffget\nx"), root.join("links/odd_target")).expect("symlink");

    // A hard-link group across three directories, and a second group in one directory.
    write(root.join("hl/one"), b"hard linked content\n");
    fs::create_dir_all(root.join("hl/sub")).expect("mkdir");
    fs::create_dir_all(root.join("other")).expect("mkdir");
    fs::hard_link(root.join("hl/one"), root.join("hl/sub/two")).expect("link");
    fs::hard_link(root.join("hl/one"), root.join("other/three")).expect("link");
    write(root.join("hl2/a"), random_bytes(7, 100_000));
    fs::hard_link(root.join("hl2/a"), root.join("hl2/b")).expect("link");

    fs::create_dir_all(root.join("special")).expect("mkdir");
    rustix::fs::mknodat(
        CWD,
        root.join("special/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .expect("mkfifo");
    rustix::fs::mknodat(
        CWD,
        root.join("special/null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .expect("mknod (needs root)");
    fs::set_permissions(root.join("special/null"), fs::Permissions::from_mode(0o620)).expect("chmod");
    // /dev/zero's numbers: a backup that opened device nodes for reading would never end.
    rustix::fs::mknodat(
        CWD,
        root.join("special/zero"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o644),
        rustix::fs::makedev(1, 5),
    )
    .expect("mknod");
    rustix::fs::mknodat(
        CWD,
        root.join("special/block"),
        rustix::fs::FileType::BlockDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::makedev(7, 200),
    )
    .expect("mknod block device");
    drop(std::os::unix::net::UnixListener::bind(root.join("special/socket")).expect("bind a unix socket"));

    // Sparse: 64 MiB with two 4 KiB data regions and a hole at the end.
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(root.join("sparse.img")).expect("create");
        f.set_len(64 * 1024 * 1024).expect("set_len");
        f.write_all_at(&random_bytes(3, 4096), 0).expect("write");
        f.write_all_at(&random_bytes(4, 4096), 32 * 1024 * 1024).expect("write");
    }

    // Fully sparse, and a hole followed by data up to the end.
    fs::File::create(root.join("sparse_empty.img"))
        .and_then(|f| f.set_len(10 * 1024 * 1024))
        .expect("sparse file");
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(root.join("sparse_tail.img")).expect("create");
        f.write_all_at(&random_bytes(5, 4096), 16 * 1024 * 1024 - 4096)
            .expect("write");
    }

    // Owners (before modes: chown clears setuid).
    write(root.join("owned/file"), b"owned by 1234:5678\n");
    fs::create_dir_all(root.join("owned/dir")).expect("mkdir");
    std::os::unix::fs::symlink("file", root.join("owned/link")).expect("symlink");
    for p in ["owned/file", "owned/dir", "owned/link"] {
        std::os::unix::fs::lchown(root.join(p), Some(1234), Some(5678)).expect("lchown (needs root)");
    }
    write(root.join("modes/setuid"), b"#!/bin/sh\n");
    std::os::unix::fs::lchown(root.join("modes/setuid"), Some(1234), Some(5678)).expect("lchown");
    write(root.join("modes/zero"), b"mode 000\n");
    write(root.join("modes/setgid"), b"setgid\n");
    write(root.join("modes/odd"), b"odd\n");
    fs::create_dir_all(root.join("modes/sticky")).expect("mkdir");
    write(root.join("modes/ro_dir/inside"), b"inside a read-only directory\n");
    fs::create_dir_all(root.join("modes/noexec_dir")).expect("mkdir");

    // xattrs on files and directories, with binary values.
    xattr::set(root.join("hello.txt"), "user.comment", b"a comment").expect("xattr (user.* supported)");
    xattr::set(root.join("hello.txt"), "user.binary", b"\x00\xff\x01\n").expect("xattr");
    xattr::set(root.join("hello.txt"), "user.empty", b"").expect("xattr");
    xattr::set(root.join("big"), "user.dir", b"on a directory").expect("xattr");
    xattr::set(root.join("modes/setuid"), "user.k", b"v").expect("xattr");
    xattr::set(root.join("big/random.bin"), "user.big", &[b'x'; 2000]).expect("xattr");
    xattr::set(root, "user.root", b"root attr").expect("xattr");
    // trusted.* (root only) also works on symlinks.
    xattr::set(root.join("links/rel"), "trusted.on_symlink", b"t").expect("trusted xattr on a symlink");
    xattr::set(root.join("hl2/a"), "trusted.on_file", b"\x00t").expect("trusted xattr");
    // A file capability (cap_net_raw+ep) on a foreign-owned file: chown clears
    // capabilities, so a restore must set the owner before the xattrs.
    write(root.join("modes/cap"), b"capable\n");
    std::os::unix::fs::lchown(root.join("modes/cap"), Some(1234), Some(5678)).expect("lchown");
    xattr::set(
        root.join("modes/cap"),
        "security.capability",
        &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    )
    .expect("file capability");
    write(root.join("modes/closed_dir/inner"), b"inside a mode-000 directory\n");

    let chmod = |p: &str, m: u32| fs::set_permissions(root.join(p), fs::Permissions::from_mode(m)).expect("chmod");
    chmod("modes/setuid", 0o4755);
    chmod("modes/cap", 0o750);
    chmod("modes/closed_dir", 0o000);
    chmod("modes/zero", 0o000);
    chmod("modes/setgid", 0o2750);
    chmod("modes/odd", 0o4001);
    chmod("modes/sticky", 0o1777);
    chmod("modes/ro_dir", 0o555);
    chmod("modes/noexec_dir", 0o600);
    chmod("hl/one", 0o640);
    chmod("empty_dir", 0o700);
    fs::set_permissions(root, fs::Permissions::from_mode(0o751)).expect("chmod root");

    // Timestamps last, deepest first, each with its own nanoseconds; one before 1970.
    age_tree(root);
    set_mtime(&root.join("hello.txt"), 1_700_000_000, 123_456_789);
    set_mtime(&root.join("empty_file"), 1_000_000_000, 999_999_999);
    set_mtime(&root.join("modes/zero"), -86_400 * 400, 500_000_001);
    set_mtime(&root.join("links/dangling"), 1_234_567_890, 1);
    set_mtime(&root.join("-dash"), 4_102_444_800, 999_999_998);
    set_mtime(root, 1_650_000_000, 42);
}

// ---------------------------------------------------------------- comparison

/// One entry's observable state.
#[derive(Debug, PartialEq, Eq)]
struct EntryState {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    xattrs: Vec<(OsString, Vec<u8>)>,
    rdev: u64,
    size: u64,
    link_target: Option<Vec<u8>>,
}

fn kind_of(ft: &fs::FileType) -> &'static str {
    if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "chardev"
    } else {
        "blockdev"
    }
}

fn xattrs_of(p: &Path) -> Vec<(OsString, Vec<u8>)> {
    let mut v: Vec<(OsString, Vec<u8>)> = match xattr::list(p) {
        Ok(names) => names
            .map(|n| {
                let val = xattr::get(p, &n).ok().flatten().unwrap_or_default();
                (n, val)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn state(p: &Path, md: &fs::Metadata) -> EntryState {
    let ft = md.file_type();
    EntryState {
        kind: kind_of(&ft),
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        mtime: (md.mtime(), md.mtime_nsec()),
        xattrs: xattrs_of(p),
        rdev: if ft.is_char_device() || ft.is_block_device() {
            md.rdev()
        } else {
            0
        },
        size: if ft.is_file() { md.len() } else { 0 },
        link_target: if ft.is_symlink() {
            Some(fs::read_link(p).expect("readlink").into_os_string().into_vec())
        } else {
            None
        },
    }
}

fn show(rel: &[u8]) -> String {
    if rel.is_empty() {
        ".".into()
    } else {
        format!("{:?}", String::from_utf8_lossy(rel))
    }
}

fn files_equal(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (Ok(mut fa), Ok(mut fb)) = (fs::File::open(a), fs::File::open(b)) else {
        return false;
    };
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
    fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => panic!("read: {e}"),
            }
        }
        n
    }
}

/// Compare two trees entry by entry: names (raw bytes), types, bytes, mode bits, mtimes to
/// the nanosecond, owners, xattrs, symlink targets, device numbers, hard-link groups and
/// sparseness. `with_root` also compares the two roots' own metadata. Returns the differences.
pub fn compare_trees(a: &Path, b: &Path, with_root: bool) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut inodes_a: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
    let mut inodes_b: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
    if with_root {
        let (ma, mb) = (
            fs::symlink_metadata(a).expect("lstat a"),
            fs::symlink_metadata(b).expect("lstat b"),
        );
        let (sa, sb) = (state(a, &ma), state(b, &mb));
        if sa != sb {
            diffs.push(format!("root: {sa:?}\n   vs {sb:?}"));
        }
    }
    compare_dir(a, b, b"", &mut diffs, &mut inodes_a, &mut inodes_b);
    let groups = |m: HashMap<u64, Vec<Vec<u8>>>| -> BTreeSet<Vec<Vec<u8>>> {
        m.into_values()
            .filter(|g| g.len() > 1)
            .map(|mut g| {
                g.sort();
                g
            })
            .collect()
    };
    let (ga, gb) = (groups(inodes_a), groups(inodes_b));
    if ga != gb {
        let fmt = |g: &BTreeSet<Vec<Vec<u8>>>| {
            g.iter()
                .map(|grp| grp.iter().map(|r| show(r)).collect::<Vec<_>>().join(" = "))
                .collect::<Vec<_>>()
        };
        diffs.push(format!("hard-link groups differ: {:?} vs {:?}", fmt(&ga), fmt(&gb)));
    }
    diffs
}

fn compare_dir(
    a: &Path,
    b: &Path,
    rel: &[u8],
    diffs: &mut Vec<String>,
    ia: &mut HashMap<u64, Vec<Vec<u8>>>,
    ib: &mut HashMap<u64, Vec<Vec<u8>>>,
) {
    let names = |d: &Path| -> BTreeSet<Vec<u8>> {
        fs::read_dir(d)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", d.display()))
            .map(|e| e.expect("entry").file_name().into_vec())
            .collect()
    };
    let (na, nb) = (names(a), names(b));
    for n in na.symmetric_difference(&nb) {
        let mut r = rel.to_vec();
        if !r.is_empty() {
            r.push(b'/');
        }
        r.extend_from_slice(n);
        diffs.push(format!(
            "{} only in {}",
            show(&r),
            if na.contains(n) { "the source" } else { "the copy" }
        ));
    }
    for n in na.intersection(&nb) {
        let mut r = rel.to_vec();
        if !r.is_empty() {
            r.push(b'/');
        }
        r.extend_from_slice(n);
        let (pa, pb_) = (pb(a, n), pb(b, n));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).expect("lstat"),
            fs::symlink_metadata(&pb_).expect("lstat"),
        );
        let (sa, sb) = (state(&pa, &ma), state(&pb_, &mb));
        if sa != sb {
            diffs.push(format!("{}: {sa:?}\n   vs {sb:?}", show(&r)));
            if sa.kind != sb.kind || sa.kind != "dir" {
                continue;
            }
        }
        match sa.kind {
            "dir" => compare_dir(&pa, &pb_, &r, diffs, ia, ib),
            "file" => {
                ia.entry(ma.ino()).or_default().push(r.clone());
                ib.entry(mb.ino()).or_default().push(r.clone());
                if !files_equal(&pa, &pb_) {
                    diffs.push(format!("{}: contents differ", show(&r)));
                }
                let (alloc_a, alloc_b) = (ma.blocks() * 512, mb.blocks() * 512);
                if ma.len() >= 1 << 20 && alloc_a < ma.len() / 4 && alloc_b >= ma.len() / 4 {
                    diffs.push(format!(
                        "{}: sparse file not sparse in the copy ({alloc_b} bytes allocated of {}; source {alloc_a})",
                        show(&r),
                        ma.len()
                    ));
                }
            }
            _ => {}
        }
    }
}

/// Compare two single entries (any type; directories without their contents).
#[track_caller]
pub fn assert_entries_equal(a: &Path, b: &Path) {
    let (ma, mb) = (
        fs::symlink_metadata(a).expect("lstat a"),
        fs::symlink_metadata(b).expect("lstat b"),
    );
    let (sa, sb) = (state(a, &ma), state(b, &mb));
    assert_eq!(sa, sb, "{} vs {}", a.display(), b.display());
    if sa.kind == "file" {
        assert!(
            files_equal(a, b),
            "contents of {} and {} differ",
            a.display(),
            b.display()
        );
    }
}

#[track_caller]
pub fn assert_trees_equal(a: &Path, b: &Path, with_root: bool) {
    let d = compare_trees(a, b, with_root);
    assert!(
        d.is_empty(),
        "{} difference(s) between {} and {}:\n{}",
        d.len(),
        a.display(),
        b.display(),
        d.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
}

// ---------------------------------------------------------------- forging repository content

use projectclone::backend::Dir;
use projectclone::backend::local::LocalBackend;
use projectclone::blob::seal_blob;
use projectclone::compress::Compression;
use projectclone::format::{
    BlobKind, ChunkRef, Content, FileData, IndexDelta, IndexPack, Meta, Node, NodeKind, Snapshot, Summary, Time, Tree,
};
use projectclone::id::{BlobId, ChunkId, TreeId};
use projectclone::pack::PackWriter;
use projectclone::repo::Repository;

/// Writes objects into a repository through the library, bypassing the backup pipeline:
/// hostile trees, extra snapshots, stray packs.
pub struct Forge {
    pub repo: Repository,
    blobs: Vec<(BlobKind, BlobId, Vec<u8>)>,
}

impl Forge {
    pub fn open(env: &Env) -> Forge {
        let backend = std::sync::Arc::new(LocalBackend::new(env.repo()));
        let repo = Repository::open(backend, Some(PASSWORD.as_bytes()), &env.path("forge-cache"))
            .unwrap_or_else(|e| panic!("open repository through the library: {e}"));
        Forge {
            repo,
            blobs: Vec::new(),
        }
    }

    /// File content held in one chunk.
    pub fn data(&mut self, bytes: &[u8]) -> FileData {
        let id = ChunkId(self.repo.keys.chunk_id(bytes));
        self.blobs.push((BlobKind::Data, BlobId(id.0), bytes.to_vec()));
        FileData {
            size: bytes.len() as u64,
            holes: Vec::new(),
            content: Content::Chunks(vec![ChunkRef {
                id,
                len: bytes.len() as u32,
            }]),
        }
    }

    /// A tree page with exactly these nodes, in this order (no validation).
    pub fn tree(&mut self, nodes: Vec<Node>, next: Option<TreeId>) -> TreeId {
        let raw = projectclone::format::encode_versioned(1, &Tree { nodes, next });
        let id = TreeId(self.repo.keys.meta_id(&raw));
        self.blobs.push((BlobKind::Tree, BlobId(id.0), raw));
        id
    }

    /// Write the pending blobs as one pack plus its index delta. Returns the pack's name.
    pub fn flush(&mut self, with_index: bool) -> String {
        let mut w = PackWriter::new();
        let (mut scratch, mut sealed) = (Vec::new(), Vec::new());
        let repo_id = *self.repo.repo_id();
        for (kind, id, raw) in self.blobs.drain(..) {
            sealed.clear();
            seal_blob(
                &repo_id,
                &self.repo.cipher,
                kind,
                &id,
                &raw,
                Compression::default(),
                &mut scratch,
                &mut sealed,
            );
            w.add(kind, id, raw.len() as u32, &sealed);
        }
        let (id, bytes, entries) = w.finish(&repo_id, &self.repo.cipher);
        self.repo
            .backend
            .write_new(&Dir::Packs.path(&id.to_hex()), &bytes)
            .expect("write pack");
        if with_index {
            self.repo
                .write_delta(&IndexDelta {
                    packs: vec![IndexPack {
                        id,
                        size: bytes.len() as u64,
                        blobs: entries,
                    }],
                    supersedes: Vec::new(),
                    checkpoint: false,
                })
                .expect("write index delta");
        }
        id.to_hex()
    }

    /// Flush pending blobs and write a snapshot of `tree`. Returns its id.
    pub fn snapshot(&mut self, tree: TreeId, note: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        self.snapshot_at(
            tree,
            note,
            Time {
                secs: now.as_secs() as i64,
                nanos: now.subsec_nanos(),
            },
        )
    }

    /// Like `snapshot`, with a given snapshot time.
    pub fn snapshot_at(&mut self, tree: TreeId, note: &str, time: Time) -> String {
        if !self.blobs.is_empty() {
            self.flush(true);
        }
        let snap = Snapshot {
            time,
            utc_offset: 0,
            hostname: "forge".into(),
            username: "forge".into(),
            paths: vec![b"/forged".to_vec()],
            tags: Vec::new(),
            note: Some(note.into()),
            tree,
            root: None,
            parent: None,
            summary: Summary::default(),
            program_version: "forge".into(),
            origin: None,
            seen: Vec::new(),
            git: None,
        };
        self.repo.write_snapshot(&snap).expect("write snapshot").to_hex()
    }
}

/// A node with plain metadata: type bits from the kind, mode 0644/0755, owned by root.
pub fn node(name: &[u8], kind: NodeKind) -> Node {
    let mode = match &kind {
        NodeKind::Dir(_) | NodeKind::InlineDir(_) => 0o040755,
        NodeKind::Symlink(_) => 0o120777,
        _ => 0o100644,
    };
    Node {
        name: name.to_vec(),
        kind,
        meta: Meta {
            mode,
            mtime: Time {
                secs: 1_600_000_000,
                nanos: 0,
            },
            nlink: 1,
            ..Meta::default()
        },
    }
}

/// Write a lock object as another client would (through the repository's own encoding),
/// with its fields as given and the store's write time (the file's mtime) `mtime_ns`.
pub fn forge_lock_at(env: &Env, host: &str, pid: u32, created_ns: i64, refreshed_ns: i64, mtime_ns: i64) -> PathBuf {
    let f = Forge::open(env);
    let lock = projectclone::format::Lock {
        hostname: host.into(),
        boot_id: "another-boot".into(),
        pid,
        pid_start: 12345,
        exclusive: false,
        created_unix_ns: created_ns,
        refreshed_unix_ns: refreshed_ns,
        purpose: "backup".into(),
    };
    let id = *blake3::hash(format!("forged lock {host} {pid} {created_ns} {refreshed_ns}").as_bytes()).as_bytes();
    let plain = projectclone::format::encode_versioned(1, &lock);
    let bytes = projectclone::format::seal_object(
        f.repo.repo_id(),
        &f.repo.cipher,
        projectclone::format::Kind::Lock,
        &id,
        &plain,
    );
    let hex = hex_of(&id);
    f.repo
        .backend
        .write_new(&Dir::Locks.path(&hex), &bytes)
        .expect("write lock");
    let path = env.repo().join("locks").join(hex);
    set_mtime(
        &path,
        mtime_ns.div_euclid(1_000_000_000),
        mtime_ns.rem_euclid(1_000_000_000) as u32,
    );
    path
}

pub fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// This machine's clock, ns since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A tar.gz built member by member (hostile names included), through the tar crate.
pub fn raw_tar_gz(path: &Path, members: &[(&[u8], tar::EntryType, &[u8], &[u8])]) {
    let f = fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, kind, link, data) in members {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        if !link.is_empty() {
            h.set_link_name(OsStr::from_bytes(link)).unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
}

/// A file system mounted by a test (tests run as root), unmounted when dropped: declare it
/// after the `Env` it lives in, so it is unmounted before the temporary folder is removed.
pub struct Mount(PathBuf);

impl Mount {
    /// `mount --bind FROM TO` (TO is created).
    #[track_caller]
    pub fn bind(from: &Path, to: &Path) -> Mount {
        fs::create_dir_all(to).expect("mount point");
        Mount::run(std::process::Command::new("mount").arg("--bind").arg(from).arg(to), to)
    }

    /// A tmpfs of `size` (such as `"2m"`) at `at` (created).
    #[track_caller]
    pub fn tmpfs(at: &Path, size: &str) -> Mount {
        fs::create_dir_all(at).expect("mount point");
        Mount::run(
            std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0755"))
                .arg("tmpfs")
                .arg(at),
            at,
        )
    }

    /// A new file system of type `fs` (`mkfs.FS`) in a sparse image of `size` bytes at
    /// `image`, mounted through a loop device at `at` (created) with `options`.
    #[track_caller]
    pub fn image(fs: &str, image: &Path, size: u64, at: &Path, options: &str) -> Mount {
        fs::File::create(image)
            .and_then(|f| f.set_len(size))
            .expect("image file");
        let mkfs = format!("mkfs.{fs}");
        let out = std::process::Command::new(&mkfs)
            .arg("-q")
            .arg(image)
            .output()
            .unwrap_or_else(|e| panic!("{mkfs} does not run ({e}): .ci/install-servers installs it"));
        assert!(out.status.success(), "{mkfs}: {}", String::from_utf8_lossy(&out.stderr));
        fs::create_dir_all(at).expect("mount point");
        Mount::run(
            std::process::Command::new("mount")
                .arg("-o")
                .arg(format!("loop,{options}"))
                .arg(image)
                .arg(at),
            at,
        )
    }

    #[track_caller]
    fn run(cmd: &mut std::process::Command, at: &Path) -> Mount {
        let out = cmd.output().expect("mount runs");
        assert!(
            out.status.success(),
            "{cmd:?} failed (these tests run as root and need mount): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount").arg(&self.0).status();
        if !ok.is_ok_and(|s| s.success()) {
            // Busy (a process of a failed test still inside): detach it anyway.
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}
