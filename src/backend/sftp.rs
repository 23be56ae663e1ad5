//! SFTP stores, through a program that speaks SFTP on its standard input and output: the
//! system `ssh` client (`ssh HOST -s sftp`, so `~/.ssh/config`, the agent and the user's
//! keys apply as they do for `sftp`), or `rclone serve sftp --stdio REMOTE:PATH` for any
//! rclone remote (Google Drive, Dropbox, …). The SFTP client runs on the shared runtime.
//!
//! Writes are atomic: each object is written to `.tmp-<random>` in its folder, synced when
//! the server supports it, then hard-linked to its name (OpenSSH's `hardlink@openssh.com`:
//! a link never replaces, so an existing object is kept, whatever other writers do) and the
//! temp file removed. Elsewhere (rclone, a server without hard links) the name is looked
//! for, then the temp file renamed to it: only a writer racing another can replace an object
//! there, and what replaces it holds the same plaintext (names are content hashes or random).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use openssh_sftp_client::error::SftpErrorKind;
use openssh_sftp_client::{Error as SftpError, Sftp, SftpOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::runtime::block_on;
use super::{Backend, CreateIfAbsent, DEFAULT_TIMEOUT, Dir, ObjectInfo, TEMP_PREFIX, Written};
use crate::error::{Error, Result, StorageKind};

/// What the server answers at most per read and takes per write (0: not known yet). The
/// client caps each request at the server's `limits@openssh.com` but does not say what they
/// are, so the first long transfer of a session learns them from an answer, and the rest
/// send all their requests at once.
#[derive(Default)]
struct Pieces {
    read: std::sync::atomic::AtomicUsize,
    write: std::sync::atomic::AtomicUsize,
}

/// Read up to `len` bytes from the file's offset (fewer at its end), waiting at most
/// `limit` for each request's answer. The read goes out as requests of the most the server
/// answers at once (255 KiB for OpenSSH), many in flight on the one channel, so a long read
/// waits about one round trip, not one per piece.
async fn read_upto(
    f: &mut openssh_sftp_client::file::File,
    len: usize,
    limit: Duration,
    pieces: &Pieces,
) -> std::result::Result<Vec<u8>, SftpError> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    use std::sync::atomic::Ordering::Relaxed;
    let start = f.offset();
    let mut out = bytes::BytesMut::with_capacity(len);
    let mut piece = pieces.read.load(Relaxed);
    let mut from = 0;
    if piece == 0 {
        // One request learns the server's limit: it answers the most it can.
        let ask = len.min(8 << 20);
        let first = read_piece(f.clone(), start, ask, limit, true).await?;
        piece = first.len();
        out.unsplit(first);
        if piece == 0 || piece >= len {
            return Ok(out.to_vec());
        }
        from = piece;
    }
    let reads = (from..len).step_by(piece).map(|at| {
        let f = f.clone();
        read_piece(f, start + at as u64, piece.min(len - at), limit, false)
    });
    let mut reads = stream::iter(reads).buffered(PIPELINED_READS);
    while let Some(p) = reads.try_next().await? {
        let short = p.len() < piece;
        out.unsplit(p);
        if short {
            break; // the end of the object
        }
    }
    if from > 0 && out.len() > from {
        // The object went on past the first answer: its length was the server's limit.
        pieces.read.store(from, Relaxed);
    }
    Ok(out.to_vec())
}

/// The whole object behind `f`: its size is asked for together with the first piece, so a
/// small object costs one round trip after the open, not two.
async fn read_whole(
    mut f: openssh_sftp_client::file::File,
    limit: Duration,
    pieces: &Pieces,
) -> std::result::Result<Vec<u8>, SftpError> {
    use std::sync::atomic::Ordering::Relaxed;
    let known = pieces.read.load(Relaxed);
    let (md, first) = {
        let mut g = f.clone();
        let ask = if known == 0 { 8 << 20 } else { known };
        tokio::join!(g.metadata().within(limit), read_piece(f.clone(), 0, ask, limit, true))
    };
    let len = md?.len().unwrap_or(0) as usize;
    let first = first?;
    if first.len() >= len || first.is_empty() {
        return Ok(first.to_vec());
    }
    if known == 0 {
        pieces.read.store(first.len(), Relaxed);
    }
    f.seek(std::io::SeekFrom::Start(first.len() as u64))
        .await
        .map_err(SftpError::from)?;
    let rest = read_upto(&mut f, len - first.len(), limit, pieces).await?;
    let mut out = first.to_vec();
    out.extend_from_slice(&rest);
    Ok(out)
}

/// Write `bytes` at the file's offset in requests of the most the server takes at once, many
/// in flight on the one channel, so a pack upload waits about one round trip, not one per
/// piece (the first write of a session learns that size from the server's answer). Each
/// answer is waited for at most `limit`.
async fn write_all(
    f: &mut openssh_sftp_client::file::File,
    bytes: &[u8],
    limit: Duration,
    pieces: &Pieces,
) -> std::result::Result<(), SftpError> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    use std::sync::atomic::Ordering::Relaxed;
    if bytes.is_empty() {
        return Ok(());
    }
    let start = f.offset();
    let mut piece = pieces.write.load(Relaxed);
    let mut from = 0;
    if piece == 0 {
        piece = f.write(bytes).within(limit).await?;
        if piece == 0 {
            return Err(SftpError::from(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "the server took no bytes of a write",
            )));
        }
        if piece < bytes.len() {
            pieces.write.store(piece, Relaxed);
        }
        from = piece;
    }
    let writes = (from..bytes.len()).step_by(piece).map(|at| {
        let end = (at + piece).min(bytes.len());
        write_piece(f.clone(), start + at as u64, &bytes[at..end], limit)
    });
    stream::iter(writes)
        .buffer_unordered(PIPELINED_WRITES)
        .try_for_each(|()| async { Ok(()) })
        .await
}

/// Write requests in flight at once for one object.
const PIPELINED_WRITES: usize = 32;

/// Write `data` at `at`, in as many requests as the server's limit takes.
async fn write_piece(
    mut f: openssh_sftp_client::file::File,
    at: u64,
    data: &[u8],
    limit: Duration,
) -> std::result::Result<(), SftpError> {
    let mut done = 0;
    while done < data.len() {
        f.seek(std::io::SeekFrom::Start(at + done as u64))
            .await
            .map_err(SftpError::from)?;
        let n = f.write(&data[done..]).within(limit).await?;
        if n == 0 {
            return Err(SftpError::from(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "the server took no bytes of a write",
            )));
        }
        done += n;
    }
    Ok(())
}

/// Folders listed at once.
const PIPELINED_LISTS: usize = 16;

/// Read requests in flight at once for one long read.
const PIPELINED_READS: usize = 32;

/// `len` bytes at `at` (fewer only at the end of the object), in as many requests as the
/// server's answers take; with `once`, the first answer only (it tells the server's limit).
async fn read_piece(
    mut f: openssh_sftp_client::file::File,
    at: u64,
    len: usize,
    limit: Duration,
    once: bool,
) -> std::result::Result<bytes::BytesMut, SftpError> {
    let mut out = bytes::BytesMut::with_capacity(len);
    while out.len() < len {
        // The file's offset moves by what was asked, not by what was answered: set it.
        f.seek(std::io::SeekFrom::Start(at + out.len() as u64))
            .await
            .map_err(SftpError::from)?;
        let want = (len - out.len()).min(8 << 20) as u32;
        let n = out.len();
        match f.read(want, out.split_off(n)).within(limit).await? {
            Some(b) if !b.is_empty() => out.unsplit(b),
            _ => break,
        }
        if once {
            break;
        }
    }
    Ok(out)
}

/// An SFTP request whose answer is waited for at most `limit`: a stalled connection or
/// server fails it as timed out, a transient error, so the session is dropped and the call
/// tried again on a new one (a stall must not hold a command until ssh's keepalive gives up,
/// or forever behind rclone).
trait Within<T>: Future<Output = std::result::Result<T, SftpError>> + Sized {
    async fn within(self, limit: Duration) -> std::result::Result<T, SftpError> {
        tokio::time::timeout(limit, self)
            .await
            .unwrap_or_else(|_| Err(timed_out(limit)))
    }
}

impl<T, F: Future<Output = std::result::Result<T, SftpError>>> Within<T> for F {}

fn timed_out(limit: Duration) -> SftpError {
    SftpError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {} s", limit.as_secs_f64()),
    ))
}

/// How to reach the SFTP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SftpTarget {
    /// `ssh [-p PORT] [-l USER] HOST -s sftp`; the repository at the absolute `path`.
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        path: String,
    },
    /// `rclone serve sftp --stdio REMOTE:PATH`: the repository at the served root.
    Rclone { remote: String, path: String },
}

impl SftpTarget {
    pub fn display(&self) -> String {
        match self {
            SftpTarget::Ssh { user, host, port, path } => format!(
                "sftp://{}{host}{}{path}",
                user.as_ref().map(|u| format!("{u}@")).unwrap_or_default(),
                port.map(|p| format!(":{p}")).unwrap_or_default()
            ),
            SftpTarget::Rclone { remote, path } => format!("rclone:{remote}:{path}"),
        }
    }

    /// The program that speaks SFTP on its standard input and output: `program` (the
    /// program, then its first arguments) or, when empty, `ssh` or `rclone`.
    fn command(&self, program: &[String]) -> tokio::process::Command {
        let default = [self.program_name().to_string()];
        let program = if program.is_empty() { &default[..] } else { program };
        let mut c = tokio::process::Command::new(&program[0]);
        c.args(&program[1..]);
        match self {
            SftpTarget::Ssh { user, host, port, .. } => {
                // Keep the connection alive through idle stretches (a long local read) and
                // notice a dead one instead of hanging.
                c.args(["-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]);
                if let Some(p) = port {
                    c.arg("-p").arg(p.to_string());
                }
                if let Some(u) = user {
                    c.arg("-l").arg(u);
                }
                c.arg("-s").arg(host).arg("sftp");
                c
            }
            SftpTarget::Rclone { remote, path } => {
                c.args(["serve", "sftp", "--stdio"]).arg(format!("{remote}:{path}"));
                c
            }
        }
    }

    fn program_name(&self) -> &'static str {
        match self {
            SftpTarget::Ssh { .. } => "ssh",
            SftpTarget::Rclone { .. } => "rclone",
        }
    }

    /// The folder holding the repository, as the server names it ("" for the served root).
    fn root(&self) -> &str {
        match self {
            SftpTarget::Ssh { path, .. } => path,
            SftpTarget::Rclone { .. } => "",
        }
    }
}

struct Session {
    sftp: Sftp,
    /// How long one request's answer may take (the backend's timeout).
    timeout: Duration,
    child: Mutex<Option<tokio::process::Child>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    pieces: Pieces,
    /// Packs opened for ranged reads, newest last: a restore or check reads many spans of
    /// one pack, and each open costs a round trip. Packs are never rewritten (their names
    /// are their contents' hashes), so a handle stays good; `delete` drops its own first.
    open_packs: Mutex<std::collections::VecDeque<(PathBuf, openssh_sftp_client::file::File)>>,
}

/// Pack handles a session keeps open at most.
const OPEN_PACKS: usize = 16;

impl Session {
    /// A handle on `full` for reading: a kept one, or one opened now (and kept, when it is
    /// a pack).
    async fn open_for_read(
        &self,
        full: &std::path::Path,
        keep: bool,
    ) -> std::result::Result<openssh_sftp_client::file::File, SftpError> {
        if keep {
            let kept = self.open_packs.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, f)) = kept.iter().find(|(p, _)| p == full) {
                return Ok(f.clone());
            }
        }
        let f = self.sftp.open(full).within(self.timeout).await?;
        if keep {
            let mut kept = self.open_packs.lock().unwrap_or_else(|p| p.into_inner());
            if !kept.iter().any(|(p, _)| p == full) {
                if kept.len() >= OPEN_PACKS {
                    kept.pop_front(); // closed in the background once no read uses it
                }
                kept.push_back((full.to_path_buf(), f.clone()));
            }
        }
        Ok(f)
    }

    /// Forget a kept handle on `full` (it is about to be deleted).
    fn forget_handle(&self, full: &std::path::Path) {
        self.open_packs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(p, _)| p != full);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = c.start_kill();
        }
    }
}

pub struct SftpBackend {
    target: SftpTarget,
    /// The program and its first arguments (empty: `ssh` or `rclone`; e.g. `ssh -F
    /// /path/config`, `rclone --config /path/rclone.conf`).
    program: Vec<String>,
    session: Mutex<Option<Arc<Session>>>,
    /// How long the session may take to start, and each request's answer.
    timeout: Duration,
}

impl SftpBackend {
    /// A backend for `target`; the connection is made on first use (and made again after
    /// it breaks).
    pub fn new(target: SftpTarget) -> SftpBackend {
        Self::with_program(target, Vec::new())
    }

    /// A backend whose `ssh` is `ssh` (the program, then arguments placed before the
    /// host), e.g. `["ssh", "-F", "/path/config"]`; empty: `ssh`. An `rclone:` target
    /// ignores it.
    pub fn with_ssh(target: SftpTarget, ssh: Vec<String>) -> SftpBackend {
        match target {
            SftpTarget::Ssh { .. } => Self::with_program(target, ssh),
            SftpTarget::Rclone { .. } => Self::new(target),
        }
    }

    /// A backend that starts `program` (the program, then its first arguments) instead of
    /// `ssh` or `rclone`: e.g. `["rclone", "--config", "/path/rclone.conf"]`; empty: the
    /// default.
    pub fn with_program(target: SftpTarget, program: Vec<String>) -> SftpBackend {
        SftpBackend {
            target,
            program,
            session: Mutex::new(None),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same backend with `timeout` for a session to start and for each request's answer.
    pub fn with_timeout(mut self, timeout: Duration) -> SftpBackend {
        self.timeout = timeout;
        self
    }

    fn full(&self, path: &str) -> PathBuf {
        let root = self.target.root();
        if root.is_empty() {
            PathBuf::from(path)
        } else {
            PathBuf::from(root).join(path)
        }
    }

    fn at(&self, path: &str) -> String {
        format!("{}/{path}", self.target.display().trim_end_matches('/'))
    }

    fn connect(&self) -> Result<Arc<Session>> {
        let mut guard = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let location = self.target.display();
        let program = self
            .program
            .first()
            .map(String::as_str)
            .unwrap_or(self.target.program_name());
        let session = block_on(async {
            let mut cmd = self.target.command(&self.program);
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let mut child = cmd.spawn().map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::Invalid(format!(
                        "{location}: `{program}` is not installed (or not on PATH); it is needed to reach this \
                         repository"
                    ))
                } else {
                    Error::Storage {
                        kind: StorageKind::Transient,
                        location: location.clone(),
                        message: format!("cannot start {program}: {e}"),
                    }
                }
            })?;
            let stdin = child.stdin.take().expect("stdin is piped");
            let stdout = child.stdout.take().expect("stdout is piped");
            let mut err_pipe = child.stderr.take().expect("stderr is piped");
            let stderr = Arc::new(Mutex::new(Vec::new()));
            let sink = stderr.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err_pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                    if s.len() < 16384 {
                        s.extend_from_slice(&buf[..n]);
                    }
                }
            });
            let sftp = match tokio::time::timeout(self.timeout, Sftp::new(stdin, stdout, SftpOptions::new())).await {
                Ok(Ok(s)) => s,
                res => {
                    let _ = child.start_kill();
                    // The program's own words say why (refused key, unknown host, no remote).
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let said = String::from_utf8_lossy(&stderr.lock().unwrap_or_else(|p| p.into_inner()))
                        .trim()
                        .to_string();
                    let why = match res {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {} s", self.timeout.as_secs_f64()),
                    };
                    return Err(Error::Storage {
                        kind: StorageKind::Transient,
                        location: location.clone(),
                        message: format!(
                            "could not start an SFTP session with {program} ({why}){}",
                            if said.is_empty() {
                                String::new()
                            } else {
                                format!(": {said}")
                            }
                        ),
                    });
                }
            };
            Ok::<_, Error>(Session {
                sftp,
                timeout: self.timeout,
                child: Mutex::new(Some(child)),
                stderr,
                pieces: Pieces::default(),
                open_packs: Mutex::new(std::collections::VecDeque::new()),
            })
        })?;
        let session = Arc::new(session);
        *guard = Some(session.clone());
        Ok(session)
    }

    /// Run one operation on the session; a broken session is dropped so the next call
    /// connects again (the retry layer above tries the call again).
    fn op<T, F, Fut>(&self, path: &str, f: F) -> Result<T>
    where
        F: FnOnce(Arc<Session>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, SftpError>>,
    {
        let s = self.connect()?;
        match block_on(f(s.clone())) {
            Ok(v) => Ok(v),
            Err(e) => {
                let err = self.map_err(&s, e, path);
                if matches!(
                    err,
                    Error::Storage {
                        kind: StorageKind::Transient,
                        ..
                    }
                ) {
                    let mut guard = self.session.lock().unwrap_or_else(|p| p.into_inner());
                    if guard.as_ref().is_some_and(|g| Arc::ptr_eq(g, &s)) {
                        *guard = None;
                    }
                }
                Err(err)
            }
        }
    }

    fn map_err(&self, s: &Session, e: SftpError, path: &str) -> Error {
        let kind = match &e {
            SftpError::SftpError(SftpErrorKind::NoSuchFile, _) => StorageKind::NotFound,
            SftpError::SftpError(SftpErrorKind::PermDenied, _) => StorageKind::Permanent,
            SftpError::SftpError(SftpErrorKind::OpUnsupported, _) => StorageKind::Permanent,
            SftpError::SftpError(_, _) => StorageKind::Permanent,
            // The connection or the program behind it failed: try again on a new one.
            _ => StorageKind::Transient,
        };
        let said = String::from_utf8_lossy(&s.stderr.lock().unwrap_or_else(|p| p.into_inner()))
            .trim()
            .to_string();
        Error::Storage {
            kind,
            location: self.at(path),
            message: if kind == StorageKind::Transient && !said.is_empty() {
                format!("{e} ({said})")
            } else {
                e.to_string()
            },
        }
    }

    /// Whether writes place objects with a hard link, which never replaces a name: on an
    /// ssh server that offers it. Not through rclone, whose remotes have no such thing (its
    /// SFTP server accepts the request, yet several writers racing on one name all succeed).
    fn links(&self) -> bool {
        matches!(self.target, SftpTarget::Ssh { .. }) && self.connect().is_ok_and(|s| s.sftp.support_hardlink())
    }

    /// Move the written temp file `tmp` to `full` unless an object is there already (looked
    /// for first: another writer may still come in between). Whether it was moved.
    async fn rename_unless_there(
        s: &Session,
        tmp: &std::path::Path,
        full: &std::path::Path,
    ) -> std::result::Result<bool, SftpError> {
        let there = match s.sftp.fs().metadata(full).within(s.timeout).await {
            Ok(_) => true,
            Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => false,
            Err(e) => return Err(e),
        };
        if there {
            let _ = s.sftp.fs().remove_file(tmp).within(s.timeout).await;
            return Ok(false);
        }
        match s.sftp.fs().rename(tmp, full).within(s.timeout).await {
            Ok(()) => Ok(true),
            Err(e) => {
                let _ = s.sftp.fs().remove_file(tmp).within(s.timeout).await;
                // A server whose rename does not replace refuses a name taken meanwhile.
                match s.sftp.fs().metadata(full).within(s.timeout).await {
                    Ok(_) => Ok(false),
                    Err(_) => Err(e),
                }
            }
        }
    }

    /// `mkdir -p` of the folders above `path` (from the repository root down).
    async fn make_parents(s: &Session, full: &std::path::Path) -> std::result::Result<(), SftpError> {
        let mut todo = Vec::new();
        let mut p = full.parent();
        while let Some(dir) = p {
            if dir.as_os_str().is_empty() {
                break;
            }
            match s.sftp.fs().metadata(dir).within(s.timeout).await {
                Ok(_) => break,
                Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => todo.push(dir.to_path_buf()),
                Err(e) => return Err(e),
            }
            p = dir.parent();
        }
        for d in todo.into_iter().rev() {
            match s.sftp.fs().create_dir(&d).within(s.timeout).await {
                Ok(()) => {}
                // Made meanwhile by another writer.
                Err(e) if s.sftp.fs().metadata(&d).within(s.timeout).await.is_ok() => drop(e),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn list_dir(s: &Session, dir: PathBuf) -> std::result::Result<Vec<(String, ObjectInfoRaw)>, SftpError> {
        let mut fs = s.sftp.fs();
        let d = match fs.open_dir(&dir).within(s.timeout).await {
            Ok(d) => d,
            Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        let mut rd = Box::pin(d.read_dir());
        while let Some(e) = tokio::time::timeout(s.timeout, rd.next())
            .await
            .unwrap_or_else(|_| Some(Err(timed_out(s.timeout))))
        {
            let e = e?;
            let name = e.filename().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            let md = e.metadata();
            out.push((
                name,
                ObjectInfoRaw {
                    is_dir: md.file_type().is_some_and(|t| t.is_dir()),
                    size: md.len().unwrap_or(0),
                    modified: md.modified().map(|t| t.as_system_time()),
                },
            ));
        }
        Ok(out)
    }
}

struct ObjectInfoRaw {
    is_dir: bool,
    size: u64,
    modified: Option<std::time::SystemTime>,
}

fn ns(t: Option<std::time::SystemTime>) -> Option<i64> {
    t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
}

impl Backend for SftpBackend {
    fn location(&self) -> String {
        self.target.display()
    }

    fn list(&self, dir: Dir) -> Result<Vec<(String, u64)>> {
        Ok(self.list_info(dir)?.into_iter().map(|o| (o.name, o.size)).collect())
    }

    fn list_info(&self, dir: Dir) -> Result<Vec<ObjectInfo>> {
        let base = self.full(dir.name());
        let fan_out = dir == Dir::Packs;
        self.op(dir.name(), |s| async move {
            let mut out = Vec::new();
            let mut dirs = vec![base.clone()];
            if fan_out {
                dirs = Self::list_dir(&s, base.clone())
                    .await?
                    .into_iter()
                    .filter(|(n, i)| i.is_dir && !n.starts_with('.'))
                    .map(|(n, _)| base.join(n))
                    .collect();
            }
            // The pack folders are listed many at once: one round trip each in turn would
            // make a listing of 256 folders take seconds on a distant server.
            let listed: Vec<Vec<(String, ObjectInfoRaw)>> = {
                use futures_util::stream::{self, TryStreamExt};
                stream::iter(dirs.into_iter().map(|d| Self::list_dir(&s, d)))
                    .buffered(PIPELINED_LISTS)
                    .try_collect()
                    .await?
            };
            for entries in listed {
                for (name, i) in entries {
                    if i.is_dir || name.starts_with('.') {
                        continue;
                    }
                    out.push(ObjectInfo {
                        name,
                        size: i.size,
                        modified_ns: ns(i.modified),
                    });
                }
            }
            Ok(out)
        })
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        let full = self.full(path);
        self.op(path, |s| async move {
            let f = s.sftp.open(&full).within(s.timeout).await?;
            read_whole(f, s.timeout, &s.pieces).await
        })
    }

    fn read_range(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let full = self.full(path);
        let keep = path.starts_with(Dir::Packs.name());
        let got = self.op(path, |s| async move {
            let mut f = s.open_for_read(&full, keep).await?;
            f.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(SftpError::from)?;
            read_upto(&mut f, len, s.timeout, &s.pieces).await
        })?;
        if got.len() != len {
            return Err(Error::corrupt(format!(
                "{}: {} bytes at offset {offset} where {len} were expected (truncated?)",
                self.at(path),
                got.len()
            )));
        }
        Ok(got)
    }

    fn size(&self, path: &str) -> Result<u64> {
        let full = self.full(path);
        self.op(path, |s| async move {
            Ok(s.sftp.fs().metadata(&full).within(s.timeout).await?.len().unwrap_or(0))
        })
    }

    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<Written> {
        let full = self.full(path);
        let tmp = full.with_file_name(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
        let bytes = bytes.to_vec();
        let ssh = matches!(self.target, SftpTarget::Ssh { .. });
        let renamed = self.op(path, |s| async move {
            let link = ssh && s.sftp.support_hardlink();
            let create = || async {
                let mut o = s.sftp.options();
                o.write(true).create_new(true);
                o.open(&tmp).within(s.timeout).await
            };
            // The folder is there but for the first object of its kind: its parents are
            // made only when the server says they are missing.
            let mut f = match create().await {
                Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => {
                    Self::make_parents(&s, &full).await?;
                    create().await?
                }
                r => r?,
            };
            write_all(&mut f, &bytes, s.timeout, &s.pieces).await?;
            if s.sftp.support_fsync() {
                f.sync_all().within(s.timeout).await?;
            }
            f.close().within(s.timeout).await?;
            if !link {
                return Self::rename_unless_there(&s, &tmp, &full).await;
            }
            // link(2) never replaces a name: the server decides atomically (OpenSSH's
            // `hardlink@openssh.com`). A rename would not do: the client sends OpenSSH's
            // `posix-rename`, which replaces.
            let placed = match s.sftp.fs().hard_link(&tmp, &full).within(s.timeout).await {
                Ok(()) => Ok(true),
                Err(SftpError::SftpError(SftpErrorKind::OpUnsupported, _)) => {
                    return Self::rename_unless_there(&s, &tmp, &full).await;
                }
                Err(e) => match s.sftp.fs().metadata(&full).within(s.timeout).await {
                    Ok(_) => Ok(false),
                    Err(_) => Err(e),
                },
            };
            // The name is placed (or refused). The temp name goes without waiting for the
            // answer; one left behind (a cut connection, the process ending first) is
            // removed later as stale.
            let fs = s.sftp.fs();
            let timeout = s.timeout;
            tokio::spawn(async move {
                let mut fs = fs;
                let _ = fs.remove_file(&tmp).within(timeout).await;
            });
            placed
        })?;
        Ok(if renamed { Written::New } else { Written::AlreadyThere })
    }

    fn create_if_absent(&self) -> CreateIfAbsent {
        if self.links() {
            CreateIfAbsent::Atomic
        } else {
            CreateIfAbsent::Checked
        }
    }

    fn delete(&self, path: &str) -> Result<()> {
        let full = self.full(path);
        match self.op(path, |s| async move {
            s.forget_handle(&full);
            s.sftp.fs().remove_file(&full).within(s.timeout).await
        }) {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }

    fn exists(&self, path: &str) -> Result<bool> {
        let full = self.full(path);
        match self.op(
            path,
            |s| async move { s.sftp.fs().metadata(&full).within(s.timeout).await },
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn create(&self) -> Result<()> {
        let root = self.full("");
        let location = self.target.display();
        let entries = self.op("", |s| async move {
            match s.sftp.fs().metadata(&root).within(s.timeout).await {
                Ok(_) => Self::list_dir(&s, root).await,
                Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => {
                    Self::make_parents(&s, &root.join("x")).await?;
                    Ok(Vec::new())
                }
                Err(e) => Err(e),
            }
        })?;
        if let Some((name, _)) = entries.first() {
            return Err(Error::Invalid(format!(
                "{location} is not empty (it holds {name}): a new repository needs a new or empty folder; \
                 choose another path"
            )));
        }
        Ok(())
    }

    fn remove_stale_temp(&self, older_than: Duration) -> Result<Vec<String>> {
        let root = self.full("");
        let now = std::time::SystemTime::now();
        self.op("", |s| async move {
            let mut dirs = vec![root.clone()];
            dirs.extend(Dir::ALL.iter().map(|d| root.join(d.name())));
            for (n, i) in Self::list_dir(&s, root.join(Dir::Packs.name())).await? {
                if i.is_dir {
                    dirs.push(root.join(Dir::Packs.name()).join(n));
                }
            }
            let mut removed = Vec::new();
            for d in dirs {
                for (name, i) in Self::list_dir(&s, d.clone()).await? {
                    let old = i
                        .modified
                        .and_then(|m| now.duration_since(m).ok())
                        .is_some_and(|age| age >= older_than);
                    if name.starts_with(TEMP_PREFIX) && !i.is_dir && old {
                        let p = d.join(&name);
                        match s.sftp.fs().remove_file(&p).within(s.timeout).await {
                            Ok(()) | Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => {
                                removed.push(p.to_string_lossy().into_owned())
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            Ok(removed)
        })
    }

    fn remote(&self) -> bool {
        true
    }

    fn connections(&self) -> usize {
        // One SSH channel carries pipelined requests; more writers than that only queue.
        2
    }
}
