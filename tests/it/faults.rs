//! Issue 16 item 6: faults between the client and real servers (moto and `rclone serve s3`
//! for S3, OpenSSH's sshd and rclone's sftp remote for SFTP), injected by a [`FaultProxy`]
//! in front of the server or by killing a process.
//!
//! Each fault must end in either a successful retry or a clear error (non-zero exit, a
//! message naming the store and what to do, no panic), and afterwards the repository must
//! pass `check --read-data`, the newest snapshot must restore exactly, and the next backup
//! must succeed ([`Remote::verify`]).
//!
//! Commands get short storage timeouts and retry delays through the environment
//! (`PROJECTCLONE_STORAGE_TIMEOUT`, `_TRIES`, `_RETRY_DELAY`), so a fault costs seconds.
//! Wall-clock bounds here are hang checks (a process timeout), never timing assertions.

use std::cell::{Cell, RefCell};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::servers::*;
use crate::util::*;

/// A request that makes no progress for this long is abandoned and tried again.
const TIMEOUT: &str = "2s";
/// Tries per request, and the first wait between tries (it doubles).
const TRIES: &str = "8";
const RETRY_DELAY: &str = "100ms";
/// A command that takes longer than this hangs (far above what any fault here costs).
const HANG: Duration = Duration::from_secs(90);
/// Size of each source file; with `init --pack-size 1` about one pack each.
const FILE: usize = 1 << 20;

/// The store a test runs against.
enum Server {
    Moto(Moto),
    RcloneS3(RcloneS3),
    Sshd(Sshd),
}

/// A repository on a real server, reached through a [`FaultProxy`], and the snapshots the
/// test made with the trees they hold.
struct Remote {
    env: Env,
    server: Server,
    proxy: FaultProxy,
    rclone: Option<RcloneConfig>,
    /// The repository through the proxy.
    via: String,
    /// The same repository straight to the server.
    direct: String,
    /// `(snapshot id, source folder)` of every snapshot made so far.
    history: RefCell<Vec<(String, PathBuf)>>,
    /// Extra environment for every command.
    extra: RefCell<Vec<(String, String)>>,
    /// Commands spawned so far (names their output files).
    spawned: Cell<usize>,
    started: Instant,
}

impl Remote {
    fn new(started: Instant, env: Env, server: Server, proxy: FaultProxy, via: String, direct: String) -> Remote {
        Remote {
            env,
            server,
            proxy,
            rclone: None,
            via,
            direct,
            history: RefCell::new(Vec::new()),
            extra: RefCell::new(Vec::new()),
            spawned: Cell::new(0),
            started,
        }
    }

    fn moto() -> Remote {
        let started = Instant::now();
        let env = Env::new();
        let s = Moto::start(&env);
        let proxy = FaultProxy::start(s.addr());
        let (via, direct) = (s.url_via(&proxy, "repo"), s.url("repo"));
        Remote::new(started, env, Server::Moto(s), proxy, via, direct)
    }

    fn rclone_s3() -> Remote {
        let started = Instant::now();
        let env = Env::new();
        let s = RcloneS3::start_api_only(&env);
        let proxy = FaultProxy::start(s.addr());
        let (via, direct) = (s.url_via(&proxy, "repo"), s.url("repo"));
        Remote::new(started, env, Server::RcloneS3(s), proxy, via, direct)
    }

    fn sshd() -> Remote {
        let started = Instant::now();
        let env = Env::new();
        let s = Sshd::start(&env);
        let proxy = FaultProxy::start(s.addr());
        let (via, direct) = (s.url_via(&proxy, "repo"), s.url("repo"));
        Remote::new(started, env, Server::Sshd(s), proxy, via, direct)
    }

    /// rclone's own SFTP client (`rclone:sftpremote:…`, through `rclone serve sftp --stdio`)
    /// to sshd through the proxy; `direct` is sshd without rclone or proxy.
    fn rclone_sftp() -> Remote {
        let started = Instant::now();
        let env = Env::new();
        let s = Sshd::start(&env);
        let proxy = FaultProxy::start(s.addr());
        let cfg = rclone_config_via(&env, &s, &proxy);
        let (via, direct) = (cfg.sftp_url("repo"), s.url("repo"));
        let mut r = Remote::new(started, env, Server::Sshd(s), proxy, via, direct);
        r.rclone = Some(cfg);
        r
    }

    fn set_env(&self, k: &str, v: &str) {
        self.extra.borrow_mut().push((k.into(), v.into()));
    }

    /// Environment of every command: credentials, PATH for ssh and rclone, short timeouts.
    fn envs(&self) -> Vec<(OsString, OsString)> {
        let mut v: Vec<(OsString, OsString)> = vec![
            ("PATH".into(), test_path(&self.env)),
            ("PROJECTCLONE_STORAGE_TIMEOUT".into(), TIMEOUT.into()),
            ("PROJECTCLONE_STORAGE_TRIES".into(), TRIES.into()),
            ("PROJECTCLONE_STORAGE_RETRY_DELAY".into(), RETRY_DELAY.into()),
        ];
        match &self.server {
            Server::Moto(s) => v.extend(s.envs().into_iter().map(|(k, x)| (k.into(), x.into()))),
            Server::RcloneS3(s) => v.extend(s.envs().into_iter().map(|(k, x)| (k.into(), x.into()))),
            Server::Sshd(_) => {}
        }
        if let Some(r) = &self.rclone {
            v.extend(r.envs().into_iter().map(|(k, x)| (k.into(), x)));
        }
        v.extend(self.extra.borrow().iter().map(|(k, x)| (k.into(), x.into())));
        v
    }

    /// The binary on the repository at `url`, ended after [`HANG`].
    fn cmd_to(&self, url: &str) -> assert_cmd::Command {
        let mut c = self.env.cmd_at(Path::new(url));
        c.envs(self.envs()).timeout(HANG);
        c
    }

    /// `ARGS` through the proxy; a hang fails the test.
    #[track_caller]
    fn run(&self, args: &[&str]) -> Out {
        self.run_to(&self.via, args)
    }

    /// `ARGS` straight to the server.
    #[track_caller]
    fn run_direct(&self, args: &[&str]) -> Out {
        self.run_to(&self.direct, args)
    }

    #[track_caller]
    fn run_to(&self, url: &str, args: &[&str]) -> Out {
        let t0 = Instant::now();
        let o = self.cmd_to(url).args(args).output();
        // The time each command took, shown with a failure's output.
        eprintln!(
            "[{:6.1} s] `{}` on {url}: {:.1} s, {:?}",
            self.started.elapsed().as_secs_f64(),
            args.join(" "),
            t0.elapsed().as_secs_f64(),
            o.as_ref().map(|o| o.status.code())
        );
        match o {
            // assert_cmd kills a command that outlives its timeout.
            Ok(o) if o.status.code().is_some() || t0.elapsed() < HANG => Out {
                code: o.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
                raw_stdout: o.stdout,
            },
            o => panic!(
                "`{}` on {url} hung: no end after {:?} ({:?}); proxy: {:?}",
                args.join(" "),
                t0.elapsed(),
                o.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()),
                self.proxy.stats()
            ),
        }
    }

    /// The binary as a child process (to be killed), through the proxy. Its output goes
    /// to files, so that a chatty child never blocks on a full pipe.
    fn spawn(&self, args: &[&str]) -> Spawned {
        let n = self.spawned.get();
        self.spawned.set(n + 1);
        let out = self.env.path(format!("spawned-{n}.stdout"));
        let err = self.env.path(format!("spawned-{n}.stderr"));
        let file = |p: &Path| std::fs::File::create(p).expect("create an output file");
        let child = Command::new(bin_path())
            .env_remove("PROJECTCLONE_PASSWORD_FILE")
            .env_remove("PROJECTCLONE_LOG")
            .env("PROJECTCLONE_PASSWORD", PASSWORD)
            .env("HOME", self.env.path("home"))
            .env("XDG_STATE_HOME", self.env.path("xdg-state"))
            .env("XDG_CONFIG_HOME", self.env.path("xdg-config"))
            .env("XDG_CACHE_HOME", self.env.path("xdg-cache"))
            .envs(self.envs())
            .arg("-r")
            .arg(&self.via)
            .arg("--cache-dir")
            .arg(self.env.cache())
            .args(args)
            .stdin(Stdio::null())
            .stdout(file(&out))
            .stderr(file(&err))
            .spawn()
            .expect("start the binary");
        eprintln!(
            "[{:6.1} s] spawned `{}`",
            self.started.elapsed().as_secs_f64(),
            args.join(" ")
        );
        Spawned {
            child,
            out,
            err,
            started: Instant::now(),
        }
    }

    /// Waits (polling) until `done()`; panics if the child ends first, or after [`HANG`].
    #[track_caller]
    fn wait_for(&self, child: &mut Spawned, what: &str, mut done: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !done() {
            if let Some(st) = child.child.try_wait().expect("wait") {
                let o = child.output();
                panic!("the command ended ({st}) before {what}\nstderr: {}", o.stderr);
            }
            if t0.elapsed() > HANG {
                let _ = child.child.kill();
                let o = child.output();
                panic!(
                    "{what}: not within {HANG:?}; proxy: {:?}\nstderr: {}",
                    self.proxy.stats(),
                    o.stderr
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn init(&self) {
        self.run_direct(&[
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

    /// A new source folder `NAME` of `files` files of [`FILE`] random bytes.
    fn tree(&self, name: &str, seed: u64, files: usize) -> PathBuf {
        let d = self.env.path(name);
        for i in 0..files {
            write(d.join(format!("f{i}.bin")), random_bytes(seed * 1000 + i as u64, FILE));
        }
        d
    }

    /// Records a successful backup's snapshot of `src`.
    #[track_caller]
    fn record(&self, out: &Out, src: &Path) -> serde_json::Value {
        let v = out.json();
        let id = v["snapshot_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no snapshot id in {v}"));
        self.history.borrow_mut().push((id.to_string(), src.to_path_buf()));
        v
    }

    /// `backup --json SRC` through the proxy, which must succeed.
    #[track_caller]
    fn backup(&self, src: &Path) -> serde_json::Value {
        let o = self.run(&["--json", "backup", src.to_str().unwrap()]).success();
        self.record(&o, src)
    }

    /// Objects stored under `DIR/` on the server (complete ones: no temporary files).
    fn objects_on_server(&self, dir: &str) -> usize {
        match &self.server {
            Server::Moto(s) => s.api().list(s.bucket(), &format!("repo/{dir}/")).len(),
            Server::RcloneS3(s) => count_files(&s.bucket_dir().join("repo").join(dir)),
            Server::Sshd(s) => count_files(&s.root_dir().join("repo").join(dir)),
        }
    }

    /// After a fault: the repository passes `check --read-data` (every blob of every
    /// snapshot is there and whole), the newest snapshot restores exactly, and a new backup
    /// through the (now healed) proxy succeeds.
    #[track_caller]
    fn verify(&self, label: &str) {
        self.proxy.clear();
        let o = self.run_direct(&["check", "--read-data"]);
        assert_eq!(
            o.code, 0,
            "{label}: check --read-data after the fault\nstdout: {}\nstderr: {}",
            o.stdout, o.stderr
        );
        let newest = self.history.borrow().last().cloned();
        if let Some((id, src)) = newest {
            let target = self.env.path(format!("restored-{label}"));
            self.run_direct(&["restore", &id, "--target", target.to_str().unwrap()])
                .success();
            assert_trees_equal(&src, &target, false);
        }
        let n = self.history.borrow().len();
        let src = self.tree(&format!("next-{label}"), 900 + n as u64, 1);
        self.backup(&src);
    }
}

fn count_files(dir: &Path) -> usize {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            !n.starts_with('.') && !n.contains("partial")
        })
        .count()
}

/// What the error of a store that kept failing tells the user to do.
const AGAIN: &str = "then run the command again";

/// A failed command's error is clear: non-zero exit, no panic or backtrace, one `error:`
/// line that names `names` (the store, the object, what to do).
#[track_caller]
fn assert_clear_error(o: &Out, names: &[&str]) -> String {
    assert_ne!(
        o.code, 0,
        "expected a failure\nstdout: {}\nstderr: {}",
        o.stdout, o.stderr
    );
    assert_ne!(o.code, 101, "a panic\nstderr: {}", o.stderr);
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!o.stderr.contains(bad), "{bad:?} on stderr:\n{}", o.stderr);
    }
    let line = o
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error:` line on stderr:\n{}", o.stderr))
        .to_string();
    for n in names {
        assert!(line.contains(n), "the error does not name {n:?}: {line}");
    }
    line
}

fn retries(v: &serde_json::Value) -> u64 {
    v["storage"]["retries"]
        .as_u64()
        .unwrap_or_else(|| panic!("no storage.retries in {v}"))
}

impl Drop for Remote {
    fn drop(&mut self) {
        // Each test's duration, server start included (shown with --nocapture).
        eprintln!(
            "{}: {:.1} s",
            std::thread::current().name().unwrap_or("?"),
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// A running command and the files its output goes to.
struct Spawned {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
}

impl Spawned {
    /// Waits for the child to end (a hang fails the test) and returns its output.
    #[track_caller]
    fn finish(mut self) -> Out {
        let t0 = Instant::now();
        while self.child.try_wait().expect("wait").is_none() {
            if t0.elapsed() > HANG {
                let _ = self.child.kill();
                let o = self.output();
                panic!("the command hung: no end after {HANG:?}\nstderr: {}", o.stderr);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.output()
    }

    /// SIGKILL, then the output.
    fn kill9(mut self) -> Out {
        self.child.kill().expect("SIGKILL");
        self.output()
    }

    /// The output of the ended (or killed) child.
    fn output(&mut self) -> Out {
        let status = self.child.wait().expect("wait");
        eprintln!(
            "spawned command: {status} after {:.1} s",
            self.started.elapsed().as_secs_f64()
        );
        let stdout = std::fs::read(&self.out).expect("read the child's stdout");
        let stderr = std::fs::read(&self.err).expect("read the child's stderr");
        Out {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            raw_stdout: stdout,
        }
    }
}

// ---------------------------------------------------------------- 1. dropped uploads

/// A pack's PUT cut mid-way, once and then five times in a row: retried, and the backup
/// succeeds.
#[test]
fn s3_upload_cut_mid_pack_is_retried() {
    let r = Remote::moto();
    r.init();
    let src = r.tree("one", 1, 4);
    r.proxy.drop_transfers_over(1, Direction::Up, 300_000);
    let v = r.backup(&src);
    assert_eq!(r.proxy.stats().cut, 1);
    assert!(retries(&v) >= 1, "{v}");

    let src = r.tree("five", 2, 4);
    r.proxy.drop_transfers_over(5, Direction::Up, 300_000);
    let v = r.backup(&src);
    assert_eq!(r.proxy.stats().cut, 6);
    assert!(retries(&v) >= 5, "{v}");
    r.verify("cuts");
}

/// Every try of a pack's PUT cut: the backup fails clearly, and writes no snapshot.
#[test]
fn s3_upload_cut_on_every_try_fails_clearly() {
    let r = Remote::moto();
    r.init();
    r.backup(&r.tree("before", 1, 2));
    r.set_env("PROJECTCLONE_STORAGE_TRIES", "3");
    let src = r.tree("src", 2, 4);
    r.proxy.drop_transfers_over(1000, Direction::Up, 300_000);
    let o = r.run(&["backup", src.to_str().unwrap()]);
    let line = assert_clear_error(&o, &[&r.proxy.addr().to_string(), "packs/", AGAIN]);
    eprintln!("{line}");
    assert_eq!(
        r.run_direct(&["--json", "snapshots"]).json().as_array().unwrap().len(),
        1
    );
    r.extra.borrow_mut().clear();
    r.verify("after");
}

/// The SFTP session's connection cut mid-upload, once and then three times in a row (each
/// new session cut again): a new session each time, and the backup succeeds.
#[test]
fn sftp_upload_cut_mid_pack_reconnects() {
    let r = Remote::sshd();
    r.init();
    let src = r.tree("one", 1, 4);
    r.proxy.drop_next_after(1, Direction::Up, 300_000);
    let v = r.backup(&src);
    assert_eq!(r.proxy.stats().cut, 1);
    assert!(retries(&v) >= 1, "{v}");

    let src = r.tree("three", 2, 4);
    r.proxy.drop_next_after(3, Direction::Up, 300_000);
    let v = r.backup(&src);
    assert_eq!(r.proxy.stats().cut, 4);
    assert!(retries(&v) >= 3, "{v}");
    r.verify("cuts");
}

/// Every SFTP session cut after 300 kB: the backup fails clearly.
#[test]
fn sftp_upload_cut_on_every_try_fails_clearly() {
    let r = Remote::sshd();
    r.init();
    r.backup(&r.tree("before", 1, 2));
    r.set_env("PROJECTCLONE_STORAGE_TRIES", "3");
    let src = r.tree("src", 2, 4);
    r.proxy.drop_next_after(1000, Direction::Up, 300_000);
    let o = r.run(&["backup", src.to_str().unwrap()]);
    let line = assert_clear_error(&o, &[&format!("127.0.0.1:{}", r.proxy.port()), AGAIN]);
    eprintln!("{line}");
    r.extra.borrow_mut().clear();
    r.verify("after");
}

/// rclone's SFTP client (under `rclone serve sftp --stdio`) cut mid-upload.
#[test]
fn rclone_sftp_upload_cut_mid_pack() {
    let r = Remote::rclone_sftp();
    r.init();
    let src = r.tree("src", 1, 4);
    r.proxy.drop_next_after(2, Direction::Up, 300_000);
    let o = r.run(&["--json", "backup", src.to_str().unwrap()]);
    eprintln!("code {}: {}", o.code, o.stderr);
    if o.code == 0 {
        r.record(&o, &src);
    } else {
        assert_clear_error(&o, &["rclone:"]);
    }
    assert!(r.proxy.stats().cut >= 1, "{:?}", r.proxy.stats());
    r.verify("after");
}

// ---------------------------------------------------------------- 2. dropped downloads

/// Packs' GETs cut mid-body during restore and during `check --read-data`: retried.
#[test]
fn s3_download_cut_during_restore_and_check() {
    let r = Remote::moto();
    r.init();
    let src = r.tree("src", 1, 4);
    let id = r.backup(&src)["snapshot_id"].as_str().unwrap().to_string();
    let target = r.env.path("target");
    r.proxy.drop_transfers_over(2, Direction::Down, 200_000);
    let o = r.run(&["--json", "restore", &id, "--target", target.to_str().unwrap()]);
    let v = o.success().json();
    assert_eq!(r.proxy.stats().cut, 2);
    assert!(retries(&v) >= 2, "{v}");
    assert_trees_equal(&src, &target, false);

    r.proxy.drop_transfers_over(2, Direction::Down, 200_000);
    let v = r.run(&["--json", "check", "--read-data"]).success().json();
    assert_eq!(r.proxy.stats().cut, 4);
    assert!(retries(&v) >= 2, "{v}");
    r.verify("after");
}

#[test]
fn sftp_download_cut_during_restore_and_check() {
    let r = Remote::sshd();
    r.init();
    let src = r.tree("src", 1, 4);
    let id = r.backup(&src)["snapshot_id"].as_str().unwrap().to_string();
    let target = r.env.path("target");
    r.proxy.drop_next_after(2, Direction::Down, 600_000);
    let v = r
        .run(&["--json", "restore", &id, "--target", target.to_str().unwrap()])
        .success()
        .json();
    assert_eq!(r.proxy.stats().cut, 2);
    assert!(retries(&v) >= 2, "{v}");
    assert_trees_equal(&src, &target, false);

    r.proxy.drop_next_after(2, Direction::Down, 600_000);
    let v = r.run(&["--json", "check", "--read-data"]).success().json();
    assert_eq!(r.proxy.stats().cut, 4);
    assert!(retries(&v) >= 2, "{v}");
    r.verify("after");
}

// ---------------------------------------------------------------- 3. stalls

/// Upload data at most this fast (KiB/s), so a backup of a few MiB lasts long enough for a
/// fault to land in the middle of it.
const SLOW: &str = "2048";

/// The proxy holds all data for longer than the request timeout while packs are being
/// uploaded: the requests time out, and their retries go through once the stall ends.
fn stall_mid_upload(r: &Remote) {
    r.init();
    fast_stall_detection(r);
    let src = r.tree("src", 1, 6);
    let before = r.proxy.stats().bytes_up;
    let mut child = r.spawn(&["--json", "--limit-upload", SLOW, "backup", src.to_str().unwrap()]);
    r.wait_for(&mut child, "2 MiB were uploaded", || {
        r.proxy.stats().bytes_up > before + (2 << 20)
    });
    r.proxy.stall(Duration::from_secs(5));
    let o = child.finish().success();
    let v = r.record(&o, &src);
    assert!(
        retries(&v) >= 1,
        "the stall outlasted the timeout, yet nothing was retried: {v}"
    );
    r.verify("after");
}

/// The same during a restore's downloads.
fn stall_mid_download(r: &Remote) {
    r.init();
    let src = r.tree("src", 1, 6);
    let id = r.backup(&src)["snapshot_id"].as_str().unwrap().to_string();
    let target = r.env.path("target");
    let before = r.proxy.stats().bytes_down;
    r.set_env("PROJECTCLONE_STORAGE_TRIES", "8");
    // The proxy passes data on no faster than the client reads it: otherwise the socket
    // buffers could hold every remaining byte before the stall begins, and the restore
    // would never see it.
    r.proxy.limit_down(2048 * 1024);
    let mut child = r.spawn(&[
        "--json",
        "--limit-download",
        SLOW,
        "restore",
        &id,
        "--target",
        target.to_str().unwrap(),
    ]);
    r.wait_for(&mut child, "2 MiB were downloaded", || {
        r.proxy.stats().bytes_down > before + (2 << 20)
    });
    r.proxy.stall(Duration::from_secs(5));
    let o = child.finish().success();
    let v = o.json();
    assert!(
        retries(&v) >= 1,
        "the stall outlasted the timeout, yet nothing was retried: {v}"
    );
    assert_trees_equal(&src, &target, false);
    r.verify("after");
}

/// An S3 upload may take the timeout plus its size at PROJECTCLONE_STORAGE_MIN_RATE (64 KiB/s
/// by default, 16 s more for a 1 MiB pack): a stall test wants a stalled PUT abandoned after
/// about the timeout, so it counts any rate below 1 GiB/s as a stall.
fn fast_stall_detection(r: &Remote) {
    r.set_env("PROJECTCLONE_STORAGE_MIN_RATE", "1048576");
}

/// A slow uplink (the proxy passes 128 KiB/s on to the server) with a 2 s timeout: an S3
/// upload of a 1 MiB pack takes about 8 s, longer than the timeout, and is still progress,
/// not a stall. Every pack is stored at its first try, with no retry.
#[test]
fn s3_uploads_slower_than_the_timeout_still_succeed() {
    let r = Remote::moto();
    r.init();
    let src = r.tree("src", 1, 2);
    r.proxy.limit_up(128 * 1024);
    let v = r.backup(&src);
    assert_eq!(retries(&v), 0, "a slow but steady upload was taken for a stall: {v}");
    r.proxy.limit_up(0);
    r.verify("after");
}

/// A stall that outlasts every try of a command's first request (the store does not
/// answer at all): a clear error, well within the hang bound.
fn stall_forever(r: &Remote, names: &[&str]) {
    r.init();
    r.backup(&r.tree("before", 1, 2));
    r.set_env("PROJECTCLONE_STORAGE_TRIES", "3");
    r.set_env("PROJECTCLONE_STORAGE_TIMEOUT", "1s");
    fast_stall_detection(r);
    r.proxy.stall(Duration::from_secs(3600));
    let t0 = Instant::now();
    let o = r.run(&["snapshots"]);
    let line = assert_clear_error(&o, names);
    eprintln!("after {:?}: {line}", t0.elapsed());
    // Mid-upload, with a session or connections already open. The usual timeout again: an
    // ssh session's start on a loaded machine may take longer than 1 s.
    r.set_env("PROJECTCLONE_STORAGE_TIMEOUT", TIMEOUT);
    r.proxy.clear();
    let src = r.tree("src", 2, 6);
    let before = r.proxy.stats().bytes_up;
    let mut child = r.spawn(&["--limit-upload", SLOW, "backup", src.to_str().unwrap()]);
    r.wait_for(&mut child, "1 MiB was uploaded", || {
        r.proxy.stats().bytes_up > before + (1 << 20)
    });
    r.proxy.stall(Duration::from_secs(3600));
    let t0 = Instant::now();
    let o = child.finish();
    let line = assert_clear_error(&o, names);
    eprintln!("after {:?}: {line}", t0.elapsed());
    r.extra.borrow_mut().clear();
    r.verify("after");
}

/// SIGTERM while the store does not answer at all: the stop cannot delete the lock, and
/// must not retry for minutes either. It names the lock it left and how to remove it, exits
/// 143, and once the store answers again the next commands run (the lock of a process
/// gone from this host is stale at once) and the repository checks clean.
#[test]
fn s3_stop_while_the_store_stalls_names_the_lock_left_behind() {
    let r = Remote::moto();
    r.init();
    let src = r.tree("src", 1, 6);
    let before = r.proxy.stats().bytes_up;
    let mut child = r.spawn(&["--limit-upload", SLOW, "backup", src.to_str().unwrap()]);
    r.wait_for(&mut child, "1 MiB was uploaded", || {
        r.proxy.stats().bytes_up > before + (1 << 20)
    });
    r.proxy.stall(Duration::from_secs(3600));
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.child.id() as i32, libc::SIGTERM) }, 0);
    let o = child.finish();
    assert_eq!(o.code, 143, "stderr: {}", o.stderr);
    assert!(
        o.stderr.contains("did not confirm this lock's removal") && o.stderr.contains("projectclone unlock"),
        "the lock left behind is not named: {}",
        o.stderr
    );
    r.verify("after");
}

#[test]
fn s3_stall_mid_upload_times_out_and_retries() {
    stall_mid_upload(&Remote::moto());
}

#[test]
fn s3_stall_mid_download_times_out_and_retries() {
    stall_mid_download(&Remote::moto());
}

#[test]
fn s3_stall_longer_than_every_retry_fails_clearly() {
    let r = Remote::moto();
    let port = r.proxy.port().to_string();
    stall_forever(&r, &[&port, AGAIN]);
}

#[test]
fn sftp_stall_mid_upload_times_out_and_retries() {
    stall_mid_upload(&Remote::sshd());
}

#[test]
fn sftp_stall_mid_download_times_out_and_retries() {
    stall_mid_download(&Remote::sshd());
}

#[test]
fn sftp_stall_longer_than_every_retry_fails_clearly() {
    let r = Remote::sshd();
    let port = r.proxy.port().to_string();
    stall_forever(&r, &[&port, AGAIN]);
}

// ---------------------------------------------------------------- 4. HTTP 500 and 503

/// S3 answering 500 InternalError, then 503 SlowDown, to several requests in a row (moto
/// takes one connection per request): tried again, counted in `storage.retries`.
#[test]
fn s3_500_and_503_are_retried() {
    let r = Remote::moto();
    r.init();
    let src = r.tree("a", 1, 3);
    r.proxy.http_error_next(4, 500);
    let v = r.backup(&src);
    assert_eq!(r.proxy.stats().http_errors, 4);
    assert!(retries(&v) >= 4, "{v}");

    let src = r.tree("b", 2, 3);
    r.proxy.http_error_next(4, 503);
    let v = r.backup(&src);
    assert_eq!(r.proxy.stats().http_errors, 8);
    assert!(retries(&v) >= 4, "{v}");

    let target = r.env.path("target");
    r.proxy.http_error_next(4, 503);
    let id = v["snapshot_id"].as_str().unwrap();
    let v = r
        .run(&["--json", "restore", id, "--target", target.to_str().unwrap()])
        .success()
        .json();
    assert!(retries(&v) >= 4, "{v}");
    assert_trees_equal(&src, &target, false);

    // A server that keeps failing: a clear error that quotes it.
    r.set_env("PROJECTCLONE_STORAGE_TRIES", "3");
    r.proxy.http_error_next(1000, 503);
    let o = r.run(&["backup", src.to_str().unwrap()]);
    let line = assert_clear_error(&o, &[&r.proxy.addr().to_string(), AGAIN]);
    eprintln!("{line}");
    r.extra.borrow_mut().clear();
    r.verify("after");
}

/// A server refusing a request as bad (400 Bad Request, 416 Range Not Satisfiable): the same
/// request would get the same answer, so it is not tried again; a clear error at once.
#[test]
fn s3_400_and_416_are_not_retried() {
    let r = Remote::moto();
    r.init();
    let src = r.tree("a", 1, 1);
    for status in [400, 416] {
        r.proxy.clear();
        let before = r.proxy.stats().http_errors;
        r.proxy.http_error_next(1000, status);
        let o = r.run(&["--json", "backup", src.to_str().unwrap()]);
        assert_ne!(o.code, 0, "{status}: {}", o.stdout);
        assert!(o.stderr.contains(&status.to_string()), "{status}: {}", o.stderr);
        assert_eq!(
            r.proxy.stats().http_errors - before,
            1,
            "{status}: asked once, not again: {}",
            o.stderr
        );
    }
    r.verify("after");
}

// ---------------------------------------------------------------- 5. refused connections

/// A port where nothing listens: the server is down.
fn dead_port() -> u16 {
    free_port()
}

/// Refused at a command's start: a server not up yet (the first connections closed at once)
/// is waited for; one that is down gives a clear error naming the location.
#[test]
fn s3_refused_connections() {
    let r = Remote::moto();
    r.init();
    let src = r.tree("src", 1, 2);
    r.proxy.refuse_next(3);
    let v = r.backup(&src);
    assert_eq!(r.proxy.stats().refused, 3);
    assert!(retries(&v) >= 3, "{v}");

    let down = format!("s3:http://127.0.0.1:{}/{BUCKET}/repo", dead_port());
    r.set_env("PROJECTCLONE_STORAGE_TRIES", "3");
    let o = r.run_to(&down, &["snapshots"]);
    let line = assert_clear_error(&o, &[&down, AGAIN]);
    eprintln!("{line}");
    let o = r.run_to(&down, &["backup", src.to_str().unwrap()]);
    assert_clear_error(&o, &[&down, AGAIN]);
    r.extra.borrow_mut().clear();
    r.verify("after");
}

#[test]
fn sftp_refused_connections() {
    let r = Remote::sshd();
    r.init();
    let src = r.tree("src", 1, 2);
    r.proxy.refuse_next(2);
    let v = r.backup(&src);
    assert_eq!(r.proxy.stats().refused, 2);
    assert!(retries(&v) >= 2, "{v}");

    let down = format!("sftp://{}@127.0.0.1:{}/srv/repo", current_user(), dead_port());
    r.set_env("PROJECTCLONE_STORAGE_TRIES", "3");
    let o = r.run_to(&down, &["snapshots"]);
    let line = assert_clear_error(&o, &[&down, "Connection refused", AGAIN]);
    eprintln!("{line}");
    r.extra.borrow_mut().clear();
    r.verify("after");
}

// ---------------------------------------------------------------- 6. kill -9 of the client

/// A backup SIGKILLed once it has written its first checkpoint (an index delta for the
/// packs stored so far, written once 4 are waiting for one): the repository stays
/// consistent, and the next backup reuses the checkpointed packs (sends less than the tree).
fn client_killed_mid_upload(r: &Remote) {
    r.init();
    r.backup(&r.tree("before", 1, 2));
    let files = 8;
    let src = r.tree("big", 2, files);
    let packs_before = r.objects_on_server("packs");
    let index_before = r.objects_on_server("index");
    let mut child = r.spawn(&["--limit-upload", "4096", "backup", src.to_str().unwrap()]);
    r.wait_for(&mut child, "a checkpoint was stored", || {
        r.objects_on_server("index") > index_before
    });
    let killed = child.kill9();
    assert_eq!(killed.code, -1, "killed by a signal: {}", killed.stderr);
    let stored = r.objects_on_server("packs") - packs_before;
    assert_eq!(
        r.run_direct(&["--json", "snapshots"]).json().as_array().unwrap().len(),
        1,
        "the backup ended before the kill"
    );

    // The repository as the kill left it passes the check.
    r.run_direct(&["check", "--read-data"]).success();
    // A whole backup of this tree sends at least its size: the files are random bytes.
    let whole = (files * FILE) as u64;
    let v = r.backup(&src);
    let sent = v["storage"]["bytes_sent"].as_u64().unwrap();
    eprintln!(
        "killed with {stored} packs stored; the rerun sent {sent} bytes, {}% of the tree's {whole}",
        sent * 100 / whole
    );
    // The checkpoint lists the packs stored when it was written (at least one of 1 MiB),
    // which the rerun does not send again; without them it would send the whole tree and more.
    assert!(
        sent + (FILE as u64) / 2 < whole,
        "the rerun sent {sent} bytes, {}% of the tree's {whole}: the checkpointed packs were not reused",
        sent * 100 / whole
    );
    r.verify("after");
}

#[test]
fn s3_client_killed_mid_upload_resumes() {
    client_killed_mid_upload(&Remote::moto());
}

#[test]
fn sftp_client_killed_mid_upload_resumes() {
    client_killed_mid_upload(&Remote::sshd());
}

// ---------------------------------------------------------------- 7. server killed and restarted

/// The server SIGKILLed and started again (same port, same data) while a backup uploads:
/// the backup retries through the restart or fails clearly; either way the repository is
/// consistent and the next backup succeeds.
fn server_restarted_mid_backup(mut r: Remote) {
    r.init();
    r.backup(&r.tree("before", 1, 2));
    let src = r.tree("src", 2, 8);
    r.set_env("PROJECTCLONE_STORAGE_TRIES", "12");
    let packs_before = r.objects_on_server("packs");
    let mut child = r.spawn(&["--json", "--limit-upload", "4096", "backup", src.to_str().unwrap()]);
    r.wait_for(&mut child, "3 packs were stored", || {
        r.objects_on_server("packs") >= packs_before + 3
    });
    match &mut r.server {
        Server::RcloneS3(s) => s.kill_and_restart(),
        Server::Sshd(s) => s.kill_and_restart(),
        Server::Moto(_) => unreachable!("moto keeps its objects in memory"),
    }
    let o = child.finish();
    if o.code == 0 {
        let v = r.record(&o, &src);
        eprintln!("retried through the restart: {}", v["storage"]);
    } else {
        let line = assert_clear_error(&o, &[AGAIN]);
        eprintln!("failed clearly: {line}");
    }
    r.extra.borrow_mut().clear();
    r.verify("after");
}

#[test]
fn rclone_s3_server_killed_and_restarted_mid_backup() {
    server_restarted_mid_backup(Remote::rclone_s3());
}

#[test]
fn sftp_server_killed_and_restarted_mid_backup() {
    server_restarted_mid_backup(Remote::sshd());
}
