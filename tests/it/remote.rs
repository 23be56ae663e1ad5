//! Issue 16 end to end through the binary, on real servers (tests/it/servers.rs): every
//! command works on every kind of remote location (S3 on moto and on `rclone serve s3`,
//! `sftp://` on OpenSSH, `rclone:` remotes); several clients back up into one remote
//! repository at once while a prune runs beside them, and nothing is lost; `copy` moves
//! snapshots between locations of different kinds; rate limits, the S3 storage class and
//! the storage counters do what they say; a string that only looks like a location is a
//! usage error that creates nothing.
//!
//! Each location kind gets one tour of all commands ([`tour`]) rather than many small tests:
//! a server starts once, and later steps build on the state the earlier ones left.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::servers::*;
use crate::util::*;

/// A repository at a remote location: the string the binary is given, what its environment
/// needs to reach it, and a direct view of what is stored there.
struct Remote {
    url: String,
    envs: Vec<(String, OsString)>,
    store: Store,
}

/// Where a remote repository's objects can be looked at without the binary.
#[derive(Clone)]
enum Store {
    /// Objects under `prefix/` in an S3 bucket.
    S3 { api: S3Api, bucket: String, prefix: String },
    /// Objects are the files below this folder (the server's disk).
    Dir(PathBuf),
}

impl Store {
    /// Objects (paths in the repository) under `dir/`, with their sizes; temporary files of
    /// writes in progress left out.
    fn objects(&self, dir: &str) -> BTreeMap<String, u64> {
        match self {
            Store::S3 { api, bucket, prefix } => {
                let base = if prefix.is_empty() {
                    String::new()
                } else {
                    format!("{prefix}/")
                };
                api.list(bucket, &format!("{base}{dir}/"))
                    .into_iter()
                    .map(|(k, v)| (k[base.len()..].to_string(), v))
                    .collect()
            }
            Store::Dir(root) => files_under(&root.join(dir))
                .into_iter()
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .map(|p| {
                    let size = fs::metadata(&p).map_or(0, |m| m.len());
                    (p.strip_prefix(root).unwrap().to_string_lossy().into_owned(), size)
                })
                .collect(),
        }
    }

    /// Nothing at all is stored at the location.
    fn is_empty(&self) -> bool {
        match self {
            Store::S3 { api, bucket, prefix } => api.list(bucket, prefix).is_empty(),
            Store::Dir(root) => match fs::read_dir(root) {
                Ok(mut d) => d.next().is_none(),
                Err(_) => !root.exists(),
            },
        }
    }

    fn has_config(&self) -> bool {
        match self {
            Store::S3 { api, bucket, prefix } => {
                let key = if prefix.is_empty() {
                    "config".to_string()
                } else {
                    format!("{prefix}/config")
                };
                api.get(bucket, &key).is_some()
            }
            Store::Dir(root) => root.join("config").is_file(),
        }
    }

    fn pack_bytes(&self) -> u64 {
        self.objects("packs").values().sum()
    }
}

fn s3_remote(s: &dyn S3Server, prefix: &str) -> Remote {
    Remote {
        url: s.url(prefix),
        envs: s.envs().into_iter().map(|(k, v)| (k.to_string(), v.into())).collect(),
        store: Store::S3 {
            api: s.api().clone(),
            bucket: s.bucket().to_string(),
            prefix: prefix.to_string(),
        },
    }
}

fn sftp_remote(sshd: &Sshd, rel: &str) -> Remote {
    Remote {
        url: sshd.url(rel),
        envs: Vec::new(),
        store: Store::Dir(PathBuf::from(sshd.abs(rel))),
    }
}

/// `rclone:localremote:REL` (an rclone remote of the local folder `cfg.local_dir`).
fn rclone_local_remote(cfg: &RcloneConfig, rel: &str) -> Remote {
    Remote {
        url: cfg.local_url(rel),
        envs: rclone_envs(cfg),
        store: Store::Dir(cfg.local_dir.join(rel)),
    }
}

/// `rclone:sftpremote:/ROOT/REL` (rclone's own SFTP client to the test's sshd).
fn rclone_sftp_remote(cfg: &RcloneConfig, rel: &str) -> Remote {
    Remote {
        url: cfg.sftp_url(rel),
        envs: rclone_envs(cfg),
        store: Store::Dir(cfg.sftp_root.as_ref().expect("an sftp remote").join(rel)),
    }
}

fn rclone_envs(cfg: &RcloneConfig) -> Vec<(String, OsString)> {
    cfg.envs().into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// One client machine of a remote repository: its own cache and state folders (what a
/// separate machine has), the test's HOME (ssh keys) and PATH (ssh wrappers, rclone).
struct Client<'a> {
    env: &'a Env,
    remote: &'a Remote,
    cache: PathBuf,
    state: PathBuf,
    password: String,
}

impl<'a> Client<'a> {
    /// The test's own client: the environment's cache and state folders.
    fn main(env: &'a Env, remote: &'a Remote) -> Client<'a> {
        Client {
            env,
            remote,
            cache: env.cache(),
            state: env.path("xdg-state"),
            password: PASSWORD.to_string(),
        }
    }

    /// Another machine, `name`.
    fn machine(env: &'a Env, remote: &'a Remote, name: &str) -> Client<'a> {
        let dir = env.path(format!("machine-{name}"));
        Client {
            env,
            remote,
            cache: dir.join("cache"),
            state: dir.join("state"),
            password: PASSWORD.to_string(),
        }
    }

    fn command(&self) -> std::process::Command {
        let env = self.env;
        let mut c = std::process::Command::new(bin_path());
        for v in [
            "PROJECTCLONE_REPO",
            "PROJECTCLONE_PASSWORD_FILE",
            "PROJECTCLONE_CACHE_DIR",
            "PROJECTCLONE_NEW_PASSWORD",
            "PROJECTCLONE_TO_PASSWORD",
            "PROJECTCLONE_LOG",
            "RUST_LOG",
            "RCLONE_CONFIG",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_PROFILE",
        ] {
            c.env_remove(v);
        }
        c.env("PROJECTCLONE_PASSWORD", &self.password)
            .env("HOME", env.path("home"))
            .env("XDG_DATA_HOME", env.path("xdg-data"))
            .env("XDG_CACHE_HOME", env.path("xdg-cache"))
            .env("XDG_CONFIG_HOME", env.path("xdg-config"))
            .env("XDG_STATE_HOME", &self.state)
            .env("TZ", "UTC")
            .env("PATH", test_path(env))
            // Nothing from a real ~/.aws.
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .envs(self.remote.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(env.root())
            .arg("-r")
            .arg(&self.remote.url)
            .arg("--cache-dir")
            .arg(&self.cache)
            .stdin(Stdio::null());
        c
    }

    fn run<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = assert_cmd::Command::from_std(self.command());
        c.args(args).timeout(Duration::from_secs(240));
        run(&mut c)
    }

    fn spawn<I, S>(&self, args: I) -> Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the binary")
    }

    fn init(&self) {
        self.run([
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
    }

    #[track_caller]
    fn restore_equals(&self, snap: &str, src: &Path, target: &Path) {
        self.run([os("restore"), os(snap), os("--target"), target.as_os_str()])
            .success();
        assert_trees_equal(src, target, false);
    }

    /// `snapshots --json` ids, oldest first.
    fn snapshot_ids(&self) -> Vec<String> {
        let v = self.run(["--json", "snapshots"]).success().json();
        v.as_array()
            .expect("an array")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect()
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn finish(c: Child) -> Out {
    let o = c.wait_with_output().expect("wait for the child");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        raw_stdout: o.stdout,
    }
}

fn strs(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().expect("a string").to_string()).collect())
        .unwrap_or_default()
}

/// The `storage` object of a `--json` report: requests, bytes sent and received, retries.
#[track_caller]
fn storage(v: &Value, key: &str) -> (u64, u64, u64, u64) {
    let s = &v[key];
    let n = |f: &str| s[f].as_u64().unwrap_or_else(|| panic!("no {key}.{f} in {v:#}"));
    (n("requests"), n("bytes_sent"), n("bytes_received"), n("retries"))
}

/// The password [`tour`] leaves the repository with (`key passwd`).
const NEW_PASSWORD: &str = "a new remote password";

/// Every command (init, backup, snapshots, ls, diff, restore, export, import, stats, forget,
/// prune, check --read-data, repair index, key) against one remote repository (which must
/// not exist yet), each outcome checked: the repository's objects on the server, restored
/// bytes and metadata, exit codes, `check`, the snapshot list.
fn tour(env: &Env, r: &Remote) {
    let c = Client::main(env, r);
    let t0 = Instant::now();
    let lap = |what: &str| eprintln!("{:>6.1?} {what}", t0.elapsed());

    // A command before init: no repository there (exit 10), and nothing is created.
    c.run(["snapshots"]).code(10);
    assert!(
        r.store.is_empty(),
        "a command before init created something at {}",
        r.url
    );

    c.init();
    assert!(r.store.has_config(), "init stored no config at {}", r.url);
    assert_eq!(r.store.objects("keys").len(), 1, "one key after init");
    assert!(r.store.objects("packs").is_empty());

    // Backup: everything a backup tool gets wrong, and a file only the first snapshot has.
    let src = env.path("src");
    build_nasty(&src);
    // The nasty tree's 20 MiB file made smaller: each byte crosses a loopback server
    // several times in this tour, and its size adds nothing to what is tested here.
    write(src.join("big/random.bin"), random_bytes(16_000, 3 << 19));
    write(src.join("gone.bin"), random_bytes(16_001, 2 << 20));
    let b1 = c.run([os("--json"), os("backup"), src.as_os_str()]).success().json();
    let s1 = b1["snapshot_id"].as_str().expect("snapshot_id").to_string();
    let data_added = b1["data_added"].as_u64().expect("data_added");
    let (requests, sent, received, retries) = storage(&b1, "storage");
    let stored = r.store.pack_bytes();
    assert!(
        data_added > 0 && stored >= data_added * 9 / 10,
        "data_added {data_added}, packs on the server {stored}"
    );
    assert!(
        sent >= stored && sent < stored + (1 << 20),
        "bytes_sent {sent} for {stored} bytes of packs stored: {b1:#}"
    );
    assert!(requests >= r.store.objects("packs").len() as u64, "{b1:#}");
    assert!(received > 0, "opening reads the config and a key: {b1:#}");
    assert_eq!(retries, 0, "a healthy server needs no retries: {b1:#}");
    lap("backup 1");

    // A second snapshot: a file removed, one added, one changed. Plain output is the id only.
    fs::remove_file(src.join("gone.bin")).unwrap();
    write(src.join("added.txt"), b"added on the way\n");
    write(src.join("hello.txt"), b"hello again\n");
    let s2 = c
        .run([os("backup"), os("--tag"), os("second"), src.as_os_str()])
        .success()
        .snapshot_id();
    assert_ne!(s1, s2);

    let snaps = c.run(["--json", "snapshots"]).success().json();
    let snaps = snaps.as_array().expect("an array");
    assert_eq!(
        snaps.iter().map(|s| s["id"].as_str().unwrap()).collect::<Vec<_>>(),
        [s1.as_str(), s2.as_str()],
        "{snaps:#?}"
    );
    for s in snaps {
        assert_eq!(s["paths"], serde_json::json!([src.to_str().unwrap()]), "{s:#}");
    }
    assert_eq!(snaps[1]["tags"], serde_json::json!(["second"]));

    let ls1 = c.run(["ls", &s1]).success().stdout;
    let ls2 = c.run(["ls", &s2]).success().stdout;
    assert!(ls1.lines().any(|l| l.ends_with("gone.bin")), "{ls1}");
    assert!(!ls2.lines().any(|l| l.ends_with("gone.bin")), "{ls2}");
    assert!(ls2.lines().any(|l| l.ends_with("added.txt")), "{ls2}");
    let diff = c.run(["diff", &s1, &s2]).success().stdout;
    for name in ["gone.bin", "added.txt", "hello.txt"] {
        assert!(diff.contains(name), "diff names {name}:\n{diff}");
    }
    assert!(!diff.contains("empty_file"), "an unchanged file is no change:\n{diff}");
    lap("backup 2, snapshots, ls, diff");

    // Restore: bytes and metadata equal the source; --json counts what came down.
    let target = env.path("restored");
    let out = c
        .run([
            os("--json"),
            os("restore"),
            os(&s2),
            os("--target"),
            target.as_os_str(),
            os("--verify"),
        ])
        .success()
        .json();
    assert_trees_equal(&src, &target, false);
    let (_, _, received, _) = storage(&out, "storage");
    assert!(received >= 3 << 19, "restore received {received} bytes: {out:#}");
    lap("restore");

    // Exported views come from the remote too.
    let clone = env.path("clone");
    c.run([os("export"), os(&s2), os("--clone"), clone.as_os_str()])
        .success();
    assert_trees_equal(&src, &clone, false);
    let archive = env.path("views/app.tar.gz");
    fs::create_dir_all(archive.parent().unwrap()).unwrap();
    c.run([
        os("export"),
        os(&s2),
        os("--archive"),
        archive.as_os_str(),
        os("--manifest"),
    ])
    .success();
    assert!(fs::metadata(&archive).unwrap().len() > 1 << 20);
    let manifest = fs::read(env.path("views/app.tar.gz.sha256")).unwrap();
    let lines = manifest.iter().filter(|b| **b == b'\n').count();
    assert!(lines > 300, "one line per file, {lines} lines");
    lap("export clone, archive");

    // Import of one of the older tool's folders.
    let old = env.path("project_backups/2024-03-05_101500-app-before_release");
    write(old.join("main.py"), b"print('hi')\n");
    write(old.join("pkg/mod.py"), random_bytes(16_002, 300_000));
    let imp = c
        .run([os("--json"), os("import"), os("--project"), os("app"), old.as_os_str()])
        .success()
        .json();
    let s3 = imp[0]["snapshot_id"].as_str().expect("snapshot_id").to_string();
    c.restore_equals(&s3, &old, &env.path("restored-import"));
    lap("import, restore");

    // Stats agree with what the server holds.
    let st = c.run(["--json", "stats"]).success().json();
    let packs = r.store.objects("packs");
    assert_eq!(st["snapshots"], 3, "{st:#}");
    assert_eq!(st["packs"].as_u64(), Some(packs.len() as u64), "{st:#}");
    assert_eq!(st["pack_bytes"].as_u64(), Some(r.store.pack_bytes()), "{st:#}");
    let st2 = c.run(["--json", "stats", &s2]).success().json();
    assert!(st2["files"].as_u64().unwrap() > 10, "{st2:#}");
    lap("stats");

    // Forget and prune: the first snapshot's own data leaves the server; nothing else does.
    c.run(["forget", &s1]).success();
    let before = r.store.pack_bytes();
    let p = c.run(["--json", "prune"]).success().json();
    let after = r.store.pack_bytes();
    assert!(!strs(&p["deleted_packs"]).is_empty(), "{p:#}");
    assert!(strs(&p["waiting_packs"]).is_empty(), "no other client: {p:#}");
    assert!(
        after + (3 << 19) < before,
        "prune freed {} bytes of {before}; gone.bin alone is 2 MiB: {p:#}",
        before - after
    );
    for gone in strs(&p["deleted_packs"]) {
        assert!(
            !r.store.objects("packs").keys().any(|k| k.ends_with(&gone)),
            "deleted pack {gone} is still on the server"
        );
    }
    assert_eq!(
        c.snapshot_ids(),
        [s3.clone(), s2.clone()],
        "oldest first: the import is of 2024"
    );
    lap("forget, prune");

    // check --read-data reads every pack, and on a remote says what that costs.
    let out = c.run(["--json", "check", "--read-data"]).success();
    assert!(
        out.stderr.contains("--read-data-subset"),
        "no pointer to --read-data-subset: {}",
        out.stderr
    );
    let chk = out.json();
    assert_eq!(chk["ok"], true, "{chk:#}");
    let (_, _, received, _) = storage(&chk, "storage");
    assert!(
        received >= r.store.pack_bytes(),
        "check --read-data received {received} bytes of {} in packs",
        r.store.pack_bytes()
    );
    lap("check");

    // repair index: the cache is derived from the server's objects.
    fs::remove_dir_all(&c.cache).unwrap();
    let rep = c.run(["--json", "repair", "index"]).success().json();
    assert!(strs(&rep["missing_packs"]).is_empty(), "{rep:#}");
    assert_eq!(
        c.snapshot_ids(),
        [s3.clone(), s2.clone()],
        "oldest first: the import is of 2024"
    );
    c.restore_equals(&s2, &src, &env.path("restored-after-repair"));
    lap("repair, restore");

    // key passwd: a new key on the server, the old password refused (exit 12).
    let old_key: BTreeSet<String> = r.store.objects("keys").into_keys().collect();
    let pw_file = env.path("new-password");
    write(&pw_file, format!("{NEW_PASSWORD}\n"));
    c.run([os("key"), os("passwd"), os("--new-password-file"), pw_file.as_os_str()])
        .success();
    let new_key: BTreeSet<String> = r.store.objects("keys").into_keys().collect();
    assert_eq!(new_key.len(), 1, "{new_key:?}");
    assert!(new_key.is_disjoint(&old_key), "the old key is still there: {new_key:?}");
    c.run(["snapshots"]).code(12);
    let c = Client {
        password: NEW_PASSWORD.into(),
        ..c
    };
    let keys = c.run(["--json", "key", "list"]).success().json();
    assert_eq!(keys.as_array().map(Vec::len), Some(1), "{keys:#}");
    c.run(["check"]).success();
    lap("key");

    // repair snapshots (nothing to repair), unlock and trust, on the server too.
    let rep = c.run(["--json", "repair", "snapshots"]).success().json();
    assert_eq!(rep["repaired"].as_array().map(Vec::len), Some(0), "{rep:#}");
    assert_eq!(rep["unreadable"].as_array().map(Vec::len), Some(0), "{rep:#}");
    c.run(["unlock"]).success();
    let tr = c.run(["--json", "trust"]).success().json();
    assert_eq!(
        (tr["present"].as_u64(), tr["forgotten"].as_u64()),
        (Some(2), Some(1)),
        "{tr:#}"
    );
    assert_eq!(tr["pin"]["location"].as_str(), Some(r.url.as_str()), "{tr:#}");
    lap("repair snapshots, unlock, trust");

    // The tree packs this client read are kept in its cache, each the pack of its name.
    let copies: Vec<PathBuf> = files_under(&c.cache)
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("tree-packs")))
        .collect();
    assert!(!copies.is_empty(), "no tree pack kept in {}", c.cache.display());
    for p in &copies {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = fs::read(p).unwrap();
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), name, "{}", p.display());
    }

    // Every command took its lock on the server and removed it.
    assert!(
        r.store.objects("locks").is_empty(),
        "locks left on the server: {:?}",
        r.store.objects("locks")
    );
    eprintln!("tour of {} took {:.1?}", r.url, t0.elapsed());
}

/// Bytes a process has read so far (`rchar` of `/proc/PID/io`: files, pipes and sockets).
fn read_so_far(pid: u32) -> u64 {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Backups in progress, stopped (SIGSTOP) and killed if the test ends before they do.
struct Backups(Vec<Child>);

impl Backups {
    fn signal(&self, sig: rustix::process::Signal) {
        for c in &self.0 {
            let pid = rustix::process::Pid::from_raw(c.id() as i32).expect("pid");
            let _ = rustix::process::kill_process(pid, sig);
        }
    }
}

impl Drop for Backups {
    fn drop(&mut self) {
        self.signal(rustix::process::Signal::CONT);
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Three machines back up into one remote repository at once (uploads held to 128 KiB/s so
/// that they overlap), deduplicating against a snapshot that a fourth machine forgets and
/// prunes while they run. The backups are held (SIGSTOP) in the middle, after they decided
/// to reuse that snapshot's data, so that the prune meets them whatever the store's speed:
/// it sees their locks on the server and only condemns. Once they finish, the next prune
/// finds their snapshots need data in condemned packs, keeps those packs and deletes the
/// rest. Nothing is lost.
fn clients_and_prune_at_once(env: &Env, r: &Remote) {
    let t0 = Instant::now();
    let lap = |what: &str| eprintln!("{:>6.1?} {what}", t0.elapsed());
    let first = Client::machine(env, r, "first");
    first.init();
    let base = env.path("base");
    write(base.join("common.bin"), random_bytes(16_100, 3 << 20));
    write(base.join("gone.bin"), random_bytes(16_101, 2 << 20));
    let s0 = first.run([os("backup"), base.as_os_str()]).success().snapshot_id();
    lap("init, backup");

    let clients: Vec<Client> = (1..=3).map(|i| Client::machine(env, r, &format!("m{i}"))).collect();
    let mut trees = Vec::new();
    let mut children = Vec::new();
    for (i, m) in clients.iter().enumerate() {
        let tree = env.path(format!("tree-{i}"));
        fs::create_dir_all(&tree).unwrap();
        fs::copy(base.join("common.bin"), tree.join("common.bin")).unwrap();
        write(tree.join("own.bin"), random_bytes(16_200 + i as u64, 768 << 10));
        write(tree.join(format!("notes-{i}.txt")), format!("machine {i}\n"));
        children.push(m.spawn([
            os("--limit-upload"),
            os("128"),
            os("backup"),
            os("--host"),
            os(&format!("machine-{i}")),
            tree.as_os_str(),
        ]));
        trees.push(tree);
    }
    // Each backup is held once it has read 1 MiB: only source files are that large (the
    // repository's config, keys, index and the cache are a few KiB), so it has taken its
    // lock and synced the index after the lock, and decides what to deduplicate with what
    // it knows now. Its upload (768 KiB at 128 KiB/s) is still under way.
    let mut backups = Backups(children);
    let start = Instant::now();
    for (i, ch) in backups.0.iter_mut().enumerate() {
        while read_so_far(ch.id()) < 1 << 20 {
            assert!(
                ch.try_wait().unwrap().is_none(),
                "machine {i}'s backup ended before it was held"
            );
            assert!(start.elapsed() < Duration::from_secs(60), "machine {i} reads nothing");
            std::thread::sleep(Duration::from_millis(5));
        }
        let pid = rustix::process::Pid::from_raw(ch.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
    }
    assert_eq!(
        r.store.objects("locks").len(),
        3,
        "the three backups' locks on the server"
    );
    lap("backups held");

    let pruner = Client::machine(env, r, "pruner");
    pruner.run(["forget", &s0]).success();
    let p1 = pruner.run(["--json", "prune"]).success().json();
    assert_eq!(
        p1["waiting_for"].as_array().expect("waiting_for").len(),
        3,
        "the prune must see the three backups' locks on the server: {p1:#}"
    );
    let marked: BTreeSet<String> = strs(&p1["condemned_packs"])
        .union(&strs(&p1["repacked_packs"]))
        .cloned()
        .collect();
    assert!(!marked.is_empty(), "nothing condemned: {p1:#}");
    assert!(
        strs(&p1["deleted_packs"]).is_empty(),
        "deleted while older locks were held: {p1:#}"
    );
    assert!(
        !r.store.objects("condemned").is_empty(),
        "the condemned record is not on the server"
    );
    let stored: BTreeSet<String> = r.store.objects("packs").into_keys().collect();
    for p in &marked {
        assert!(
            stored.iter().any(|k| k.ends_with(p.as_str())),
            "condemned pack {p} deleted under older locks"
        );
    }
    lap("forget, prune");

    backups.signal(rustix::process::Signal::CONT);
    let mut snaps = BTreeMap::new();
    for (i, ch) in std::mem::take(&mut backups.0).into_iter().enumerate() {
        let out = finish(ch);
        assert_eq!(out.code, 0, "machine {i}: {}", out.stderr);
        snaps.insert(out.snapshot_id(), i);
    }
    lap("backups done");
    // The locks are gone: prune again until nothing waits.
    let (mut deleted, mut uncondemned) = (BTreeSet::new(), BTreeSet::new());
    for round in 0.. {
        let p = pruner.run(["--json", "prune"]).success().json();
        deleted.extend(strs(&p["deleted_packs"]));
        uncondemned.extend(strs(&p["uncondemned_packs"]));
        if strs(&p["waiting_packs"]).is_empty() && strs(&p["condemned_packs"]).is_empty() {
            break;
        }
        assert!(round < 3, "prune keeps waiting: {p:#}");
    }
    assert!(!deleted.is_empty(), "the forgotten snapshot's own data was never freed");
    // The backups deduplicated common.bin into packs condemned while they ran: those packs
    // are needed again, and kept.
    assert!(
        !uncondemned.is_empty() && uncondemned.is_subset(&marked),
        "uncondemned {uncondemned:?} of marked {marked:?}"
    );
    let bytes = r.store.pack_bytes();
    assert!(
        bytes < (3 << 20) + 3 * (768 << 10) + (1 << 20),
        "{bytes} bytes of packs left for 5.25 MiB of live data"
    );
    lap("prunes");

    let check = Client::machine(env, r, "checker");
    check.run(["check", "--read-data"]).success();
    let ids: BTreeSet<String> = check.snapshot_ids().into_iter().collect();
    assert_eq!(ids, snaps.keys().cloned().collect(), "snapshots after the prunes");
    let listed = check.run(["--json", "snapshots"]).success().json();
    let hosts: BTreeSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, BTreeSet::from(["machine-0", "machine-1", "machine-2"]));
    for (id, i) in &snaps {
        check.restore_equals(id, &trees[*i], &env.path(format!("restored-{i}")));
    }
    assert!(r.store.objects("locks").is_empty(), "locks left on the server");
    eprintln!("clients and prune on {} took {:.1?}", r.url, t0.elapsed());
}

#[test]
fn every_command_on_s3_at_moto() {
    let env = Env::new();
    let moto = Moto::start(&env);
    let r = s3_remote(&moto, "tour/repo");
    tour(&env, &r);

    // The same repository as s3://BUCKET/PREFIX, the endpoint from AWS_ENDPOINT_URL.
    let by_env = Remote {
        url: format!("s3://{}/tour/repo", moto.bucket()),
        envs: r
            .envs
            .iter()
            .cloned()
            .chain([("AWS_ENDPOINT_URL".to_string(), moto.endpoint().into())])
            .collect(),
        store: r.store.clone(),
    };
    let c = Client {
        password: NEW_PASSWORD.into(),
        ..Client::main(&env, &by_env)
    };
    let via_url = Client {
        password: NEW_PASSWORD.into(),
        ..Client::main(&env, &r)
    };
    assert_eq!(c.snapshot_ids(), via_url.snapshot_ids());
    c.run(["check"]).success();

    clients_and_prune_at_once(&env, &s3_remote(&moto, "shared"));
}

#[test]
fn every_command_on_rclone_serve_s3() {
    let env = Env::new();
    // Its directory cache kept: with none, rclone 1.75's VFS stops answering under a
    // backup's parallel uploads (see RcloneS3). This test reaches the objects only by S3.
    let rclone = RcloneS3::start_api_only(&env);
    tour(&env, &s3_remote(&rclone, "tour"));
    clients_and_prune_at_once(&env, &s3_remote(&rclone, "shared"));
}

#[test]
fn every_command_on_sftp() {
    let env = Env::new();
    let sshd = Sshd::start(&env);
    tour(&env, &sftp_remote(&sshd, "tour/repo"));
    clients_and_prune_at_once(&env, &sftp_remote(&sshd, "shared"));
}

/// An rclone remote of type `local` (rclone's `sftp` type is a destination in
/// [`copy_between_locations_of_different_kinds`]).
#[test]
fn every_command_on_an_rclone_remote() {
    let env = Env::new();
    let cfg = rclone_config(&env, None);
    tour(&env, &rclone_local_remote(&cfg, "tour/repo"));
    clients_and_prune_at_once(&env, &rclone_local_remote(&cfg, "shared"));
}

/// Issue 16 item 4: `copy` from a local folder to S3, from S3 to SFTP, from SFTP to an rclone
/// remote of type `sftp`, each destination with its own password. Data shared between
/// snapshots is stored once at the destination; a second copy finds every snapshot there and
/// sends no pack; the copies keep their metadata, restore exactly and pass `check --read-data`.
#[test]
fn copy_between_locations_of_different_kinds() {
    let env = Env::new();
    let moto = Moto::start(&env);
    let sshd = Sshd::start(&env);
    let cfg = rclone_config(&env, Some(&sshd));
    let local = Remote {
        url: env.repo().to_str().unwrap().to_string(),
        envs: Vec::new(),
        store: Store::Dir(env.repo()),
    };
    let first = Client::main(&env, &local);
    first.init();
    let src = env.path("src");
    write(src.join("big.bin"), random_bytes(16_300, 2 << 20));
    write(src.join("a.txt"), b"first\n");
    let s1 = first.run([os("backup"), src.as_os_str()]).success().snapshot_id();
    let at_s1 = env.path("at-s1");
    first.restore_equals(&s1, &src, &at_s1);
    write(src.join("a.txt"), b"second\n");
    write(src.join("more.bin"), random_bytes(16_301, 512 << 10));
    first
        .run([os("backup"), os("--tag"), os("t"), src.as_os_str()])
        .success();
    let unique = (2 << 20) + (512 << 10);

    let hops = [
        ("s3", s3_remote(&moto, "copied"), "password at s3"),
        ("sftp", sftp_remote(&sshd, "copied-by-ssh"), "password at sftp"),
        (
            "rclone",
            rclone_sftp_remote(&cfg, "copied-by-rclone"),
            "password at rclone",
        ),
    ];
    let mut from = first;
    let t0 = Instant::now();
    for (i, (kind, to_remote, to_pw)) in hops.iter().enumerate() {
        let lap = |what: &str| eprintln!("{:>6.1?} {kind}: {what}", t0.elapsed());
        let to = Client {
            password: to_pw.to_string(),
            ..Client::main(&env, to_remote)
        };
        to.init();
        let pw_file = env.path(format!("to-password-{i}"));
        write(&pw_file, format!("{to_pw}\n"));
        let copy_env = |args: &[&OsStr], to_password: Option<&str>| {
            let mut c = assert_cmd::Command::from_std(from.command());
            if let Some(p) = to_password {
                c.env("PROJECTCLONE_TO_PASSWORD", p);
            }
            c.envs(to_remote.envs.iter().map(|(k, v)| (k, v)))
                .arg("--json")
                .arg("copy")
                .arg("--to")
                .arg(&to_remote.url)
                .args(args)
                .timeout(Duration::from_secs(240));
            run(&mut c)
        };
        let copy = |args: &[&OsStr]| copy_env(args, None);
        let from_snaps = from.run(["--json", "snapshots"]).success().json();
        let from_ids: Vec<&str> = from_snaps
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(from_ids.len(), 2, "{from_snaps:#}");

        lap("init");
        // The destination's own password: the source's is refused there (exit 12).
        let wrong = env.path("wrong-password");
        write(&wrong, format!("{}\n", from.password));
        copy(&[os("--to-password-file"), wrong.as_os_str()]).code(12);
        assert!(to_remote.store.objects("packs").is_empty());

        lap("wrong password");
        let out = copy(&[
            os(from_ids[0]),
            os(from_ids[1]),
            os("--to-password-file"),
            pw_file.as_os_str(),
        ])
        .success()
        .json();
        let copied: BTreeSet<&str> = out["copied"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["from"].as_str().unwrap())
            .collect();
        assert_eq!(copied, from_ids.iter().copied().collect(), "{kind}: {out:#}");
        let packs = to_remote.store.objects("packs");
        let stored: u64 = packs.values().sum();
        let added = out["data_added"].as_u64().unwrap();
        assert!(
            stored >= unique as u64 * 9 / 10 && stored < unique as u64 * 5 / 4,
            "{kind}: {stored} bytes of packs for {unique} bytes of distinct data in two snapshots"
        );
        assert!(
            added > 0 && added <= stored,
            "{kind}: data_added {added}, stored {stored}"
        );
        let (_, sent, _, _) = storage(&out, "destination_storage");
        assert!(sent >= stored, "{kind}: destination bytes_sent {sent} < {stored}");

        lap("copy");
        // Again (the password from PROJECTCLONE_TO_PASSWORD this time): every snapshot is
        // there already, no pack is sent.
        let again = copy_env(&[], Some(to_pw)).success().json();
        assert!(again["copied"].as_array().unwrap().is_empty(), "{kind}: {again:#}");
        assert_eq!(
            strs(&again["skipped"]),
            from_ids.iter().map(|s| s.to_string()).collect(),
            "{kind}: {again:#}"
        );
        assert_eq!(again["data_added"], 0, "{kind}: {again:#}");
        assert_eq!(to_remote.store.objects("packs"), packs, "{kind}: packs changed");
        let (_, sent, _, _) = storage(&again, "destination_storage");
        assert!(sent < 16 << 10, "{kind}: the second copy sent {sent} bytes");
        lap("again");
        // The source's password environment is no destination password.
        let mut c = assert_cmd::Command::from_std(from.command());
        c.envs(to_remote.envs.iter().map(|(k, v)| (k, v)))
            .args(["copy", "--to", &to_remote.url]);
        let no_pw = run(&mut c).code(1);
        assert!(
            no_pw.stderr.contains("PROJECTCLONE_TO_PASSWORD"),
            "{kind}: {}",
            no_pw.stderr
        );

        lap("no password");
        // The copies: same metadata, exact restores, a clean check.
        let to_snaps = to.run(["--json", "snapshots"]).success().json();
        let (a, b) = (from_snaps.as_array().unwrap(), to_snaps.as_array().unwrap());
        assert_eq!(a.len(), b.len(), "{kind}: {to_snaps:#}");
        for (x, y) in a.iter().zip(b) {
            for f in ["time", "hostname", "username", "paths", "tags", "note"] {
                assert_eq!(x[f], y[f], "{kind}: {f} of a copied snapshot");
            }
        }
        lap("snapshots");
        to.run(["check", "--read-data"]).success();
        lap("check");
        let latest = y_id(b, 1);
        to.restore_equals(&latest, &src, &env.path(format!("restored-{kind}")));
        to.restore_equals(&y_id(b, 0), &at_s1, &env.path(format!("restored-{kind}-1")));
        lap("restores");
        from = to;
    }
}

fn y_id(snaps: &[Value], i: usize) -> String {
    snaps[i]["id"].as_str().unwrap().to_string()
}

/// Issue 16 item 5 on S3 (moto): `--limit-upload` and `--limit-download` hold transfers to
/// their rate; `--storage-class` reaches the pack objects; the `storage` counters of
/// `--json` are plausible.
#[test]
fn rate_limits_storage_class_and_counters_on_s3() {
    let env = Env::new();
    let moto = Moto::start(&env);
    let r = s3_remote(&moto, "limits");
    let c = Client::main(&env, &r);
    c.init();
    let src = env.path("src");
    write(src.join("random.bin"), random_bytes(16_400, 2 << 20));

    // 2 MiB at 512 KiB/s: 4 s.
    let t = Instant::now();
    let b = c
        .run([
            os("--json"),
            os("--limit-upload"),
            os("512"),
            os("--storage-class"),
            os("STANDARD_IA"),
            os("backup"),
            src.as_os_str(),
        ])
        .success()
        .json();
    let took = t.elapsed();
    let (requests, sent, received, retries) = storage(&b, "storage");
    assert!(sent >= 2 << 20, "{b:#}");
    assert!(took >= Duration::from_secs(3), "2 MiB at 512 KiB/s took {took:?}");
    assert!(took < Duration::from_secs(60), "2 MiB at 512 KiB/s took {took:?}");
    assert!(requests >= 3 && received > 0 && retries == 0, "{b:#}");

    // The class of every pack object, as the server reports it.
    let head = |key: &str| {
        let k = format!("/{}/limits/{key}", moto.bucket());
        let resp = moto.api().request("HEAD", &k, &[], &[], b"").expect("HEAD");
        assert_eq!(resp.status, 200, "HEAD {k}");
        resp.header("x-amz-storage-class").map(str::to_string)
    };
    let packs = r.store.objects("packs");
    assert!(!packs.is_empty());
    for key in packs.keys() {
        assert_eq!(head(key).as_deref(), Some("STANDARD_IA"), "{key}");
    }
    // init ran without the option: its config is of the default class.
    assert!(head("config").is_none_or(|c| c == "STANDARD"), "{:?}", head("config"));

    let snap = b["snapshot_id"].as_str().unwrap();
    let target = env.path("restored");
    let t = Instant::now();
    let out = c
        .run([
            os("--json"),
            os("--limit-download"),
            os("512"),
            os("restore"),
            os(snap),
            os("--target"),
            target.as_os_str(),
        ])
        .success()
        .json();
    let took = t.elapsed();
    assert_trees_equal(&src, &target, false);
    let (_, sent, received, _) = storage(&out, "storage");
    assert!(received >= 2 << 20, "{out:#}");
    assert!(sent < 8 << 10, "a restore sends only its lock: {out:#}");
    assert!(took >= Duration::from_secs(3), "2 MiB at 512 KiB/s took {took:?}");
    assert!(took < Duration::from_secs(60), "2 MiB at 512 KiB/s took {took:?}");
}

/// A string that looks like a location of another tool, or names a scheme this build does
/// not know, is a usage error (exit 2) that says what to write, whether given with `-r`,
/// `PROJECTCLONE_REPO` or `copy --to`; nothing is created, least of all a local folder of
/// that name.
#[test]
fn strings_that_only_look_like_locations_are_usage_errors_and_create_nothing() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("f.txt"), b"x\n");
    env.backup([&src]);
    let before = rel_paths(env.root());
    for loc in [
        "gdrive:backups",
        "user@host:/srv/x",
        "nas:backups/app",
        "ftp://x",
        "ftp://host/backups",
        "http://example.com/repo",
        "s3:ftp://host/bucket",
        "rclone:no-second-colon",
    ] {
        let commands: [&[&OsStr]; 3] = [&[os("init")], &[os("backup"), src.as_os_str()], &[os("snapshots")]];
        for args in commands {
            let out = run(env
                .bare()
                .env("PROJECTCLONE_PASSWORD", PASSWORD)
                .arg("--cache-dir")
                .arg(env.path("new-cache"))
                .arg("-r")
                .arg(loc)
                .args(args))
            .code(2);
            assert!(
                out.stderr.contains(loc) && out.stderr.contains("location"),
                "{loc} {args:?}: {}",
                out.stderr
            );
            let out = run(env
                .bare()
                .env("PROJECTCLONE_PASSWORD", PASSWORD)
                .env("PROJECTCLONE_REPO", loc)
                .arg("--cache-dir")
                .arg(env.path("new-cache"))
                .args(args))
            .code(2);
            assert!(out.stderr.contains(loc), "{loc} {args:?}: {}", out.stderr);
        }
        let out = env.run(["copy", "--to", loc]).code(2);
        assert!(out.stderr.contains(loc), "copy --to {loc}: {}", out.stderr);
    }
    assert!(!Path::new("gdrive:backups").exists());
    assert_eq!(rel_paths(env.root()), before, "something was created");
    assert!(!env.path("new-cache").exists());
}
