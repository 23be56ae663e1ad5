//! Stores served by external programs: `-r NAME:ARG`, where NAME is no built-in kind of
//! location, runs `projectclone-backend-NAME ARG` (found on `PATH`) and speaks a small
//! versioned line protocol with it over its stdin and stdout, in the spirit of git's remote
//! helpers. The protocol is format-spec §19, "Plugin stores"; `plugins/` holds an example
//! plugin, which the backend conformance suite runs against.
//!
//! The plugin is a program the user installed, but its answers are checked as strictly as
//! any store's: every line has a length limit, every byte count is bounded by what was
//! asked, and an answer that does not parse is an error naming the plugin, never a panic.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use super::{Backend, CreateIfAbsent, Dir, ObjectInfo, Written};
use crate::error::{Error, Result, StorageKind};

/// The protocol version this build speaks.
pub const PROTOCOL: u32 = 1;
/// Program names: `projectclone-backend-` + the location's NAME.
pub const PROGRAM_PREFIX: &str = "projectclone-backend-";
/// Longest answer line accepted (a listing item, an error message).
const MAX_LINE: usize = 64 * 1024;

/// Whether NAME can name a plugin: lowercase letters, digits and `-`, starting with a letter.
pub fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The store plugin program for NAME on `PATH`, if there is one.
pub fn find(name: &str) -> Option<std::path::PathBuf> {
    find_program(&format!("{PROGRAM_PREFIX}{name}"))
}

/// An executable file named `prog` in a folder of `PATH`, the first one.
pub fn find_program(prog: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(prog))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        // A plugin that does not end on `quit` and EOF is stopped.
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A store behind `projectclone-backend-NAME`. One plugin process at a time serves the
/// requests, in order; a process that exits or breaks the protocol is replaced at the next
/// request (the failed one is reported as transient, so the retrying layer tries it again).
pub struct PluginBackend {
    name: String,
    arg: String,
    program: std::path::PathBuf,
    session: Mutex<Option<Session>>,
    atomic: bool,
    remote: bool,
}

/// One answer line, split into its word and the rest.
struct Answer {
    word: String,
    rest: String,
}

impl PluginBackend {
    /// Start `projectclone-backend-NAME ARG` (found on `PATH`) and make the handshake.
    pub fn open(name: &str, arg: &str) -> Result<PluginBackend> {
        let program = find(name).ok_or_else(|| Error::Storage {
            kind: StorageKind::Permanent,
            location: format!("{name}:{arg}"),
            message: format!(
                "{name}: is not a kind of location this build knows, and no program {PROGRAM_PREFIX}{name} is on PATH \
                 (a plugin store needs it installed)"
            ),
        })?;
        Self::with_program(name, arg, program)
    }

    /// [`open`](Self::open) with the plugin program given.
    pub fn with_program(name: &str, arg: &str, program: std::path::PathBuf) -> Result<PluginBackend> {
        let mut b = PluginBackend {
            name: name.to_string(),
            arg: arg.to_string(),
            program,
            session: Mutex::new(None),
            atomic: false,
            remote: false,
        };
        let caps = {
            let mut guard = b.session.lock().unwrap_or_else(|p| p.into_inner());
            let (s, caps) = b.start()?;
            *guard = Some(s);
            caps
        };
        b.atomic = caps.iter().any(|c| c == "atomic");
        b.remote = caps.iter().any(|c| c == "remote");
        Ok(b)
    }

    fn err(&self, kind: StorageKind, what: &str, message: impl Into<String>) -> Error {
        Error::Storage {
            kind,
            location: format!("{}:{} ({what})", self.name, self.arg),
            message: message.into(),
        }
    }

    /// A broken answer: the process is dropped and the request may be tried again.
    fn broken(&self, what: &str, message: impl Into<String>) -> Error {
        self.err(
            StorageKind::Transient,
            what,
            format!("plugin {}: {}", self.program.display(), message.into()),
        )
    }

    fn start(&self) -> Result<(Session, Vec<String>)> {
        let mut child = Command::new(&self.program)
            .arg(&self.arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                self.err(
                    StorageKind::Permanent,
                    "start",
                    format!("cannot run {}: {e}", self.program.display()),
                )
            })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut s = Session { child, stdin, stdout };
        writeln!(s.stdin, "projectclone-backend {PROTOCOL}")
            .and_then(|_| s.stdin.flush())
            .map_err(|e| self.broken("handshake", format!("does not read its input: {e}")))?;
        let a = self.answer(&mut s, "handshake")?;
        let mut words = a.rest.split_whitespace();
        match (a.word.as_str(), words.next()) {
            ("ok", Some(v)) if v == PROTOCOL.to_string() => Ok((s, words.map(String::from).collect())),
            ("error", _) => Err(self.err(StorageKind::Permanent, "handshake", a.rest)),
            _ => Err(self.err(
                StorageKind::Permanent,
                "handshake",
                format!(
                    "plugin {} does not speak protocol {PROTOCOL} (answered {:?} {:?})",
                    self.program.display(),
                    a.word,
                    a.rest
                ),
            )),
        }
    }

    fn answer(&self, s: &mut Session, what: &str) -> Result<Answer> {
        let mut line = Vec::new();
        let n = (&mut s.stdout)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| self.broken(what, format!("reading its answer: {e}")))?;
        if n == 0 {
            return Err(self.broken(what, "exited without answering"));
        }
        if line.last() != Some(&b'\n') {
            return Err(self.broken(what, format!("answer line longer than {MAX_LINE} bytes")));
        }
        line.pop();
        let line = String::from_utf8(line).map_err(|_| self.broken(what, "answer is not UTF-8"))?;
        let (word, rest) = line.split_once(' ').unwrap_or((&line, ""));
        Ok(Answer {
            word: word.to_string(),
            rest: rest.to_string(),
        })
    }

    /// The error an `error KIND MESSAGE` answer stands for, or a protocol error.
    fn error_answer(&self, what: &str, a: &Answer) -> Error {
        if a.word != "error" {
            return self.broken(what, format!("unexpected answer {:?} {:?}", a.word, a.rest));
        }
        let (kind, msg) = a.rest.split_once(' ').unwrap_or((&a.rest, ""));
        let kind = match kind {
            "notfound" => StorageKind::NotFound,
            "transient" => StorageKind::Transient,
            "permanent" => StorageKind::Permanent,
            other => return self.broken(what, format!("unknown error kind {other:?}: {msg}")),
        };
        self.err(kind, what, msg.to_string())
    }

    /// Send a request (a line, then `body` if any) and give the session to `f` to read the
    /// answer. A transport failure or a protocol error drops the session.
    fn call<T>(
        &self,
        what: &str,
        line: &str,
        body: Option<&[u8]>,
        f: impl FnOnce(&Self, &mut Session) -> Result<T>,
    ) -> Result<T> {
        let mut guard = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.start()?.0);
        }
        let s = guard.as_mut().expect("started above");
        let sent = writeln!(s.stdin, "{line}")
            .and_then(|_| body.map_or(Ok(()), |b| s.stdin.write_all(b)))
            .and_then(|_| s.stdin.flush());
        let res = match sent {
            Ok(()) => f(self, s),
            Err(e) => Err(self.broken(what, format!("does not take requests: {e}"))),
        };
        if let Err(e) = &res
            && e.is_transient()
        {
            *guard = None;
        }
        res
    }

    fn read_data(&self, s: &mut Session, what: &str, max: usize) -> Result<Vec<u8>> {
        let a = self.answer(s, what)?;
        if a.word != "data" {
            return Err(self.error_answer(what, &a));
        }
        let n: usize = a
            .rest
            .parse()
            .map_err(|_| self.broken(what, format!("bad byte count {:?}", a.rest)))?;
        if n > max {
            return Err(self.broken(what, format!("sent {n} bytes where at most {max} were asked for")));
        }
        let mut buf = vec![0; n];
        s.stdout
            .read_exact(&mut buf)
            .map_err(|e| self.broken(what, format!("{n} bytes announced, fewer sent: {e}")))?;
        Ok(buf)
    }

    fn check_path(&self, path: &str) -> Result<()> {
        if path.is_empty() || path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(self.err(
                StorageKind::Permanent,
                path,
                "object path with blanks or control characters",
            ));
        }
        Ok(())
    }
}

impl Backend for PluginBackend {
    fn location(&self) -> String {
        format!("{}:{}", self.name, self.arg)
    }

    fn list(&self, dir: Dir) -> Result<Vec<(String, u64)>> {
        Ok(self.list_info(dir)?.into_iter().map(|o| (o.name, o.size)).collect())
    }

    fn list_info(&self, dir: Dir) -> Result<Vec<ObjectInfo>> {
        let what = dir.name();
        self.call(what, &format!("list {what}"), None, |me, s| {
            let mut out = Vec::new();
            loop {
                let a = me.answer(s, what)?;
                match a.word.as_str() {
                    "end" => return Ok(out),
                    "item" => {
                        let f: Vec<&str> = a.rest.split(' ').collect();
                        let (name, size, time) = match f[..] {
                            [n, sz, t] => (n, sz, t),
                            _ => return Err(me.broken(what, format!("bad listing line {:?}", a.rest))),
                        };
                        let size = size
                            .parse()
                            .map_err(|_| me.broken(what, format!("bad size {size:?}")))?;
                        let modified_ns = match time {
                            "-" => None,
                            t => Some(t.parse().map_err(|_| me.broken(what, format!("bad time {t:?}")))?),
                        };
                        if name.is_empty() || name.contains('/') {
                            return Err(me.broken(what, format!("bad object name {name:?}")));
                        }
                        out.push(ObjectInfo {
                            name: name.to_string(),
                            size,
                            modified_ns,
                        });
                    }
                    _ => return Err(me.error_answer(what, &a)),
                }
            }
        })
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.read_object(path, usize::MAX)
    }

    fn read_object(&self, path: &str, max: usize) -> Result<Vec<u8>> {
        self.check_path(path)?;
        let size = self.size(path)?;
        if size > max as u64 {
            return Err(Error::corrupt(format!(
                "{path}: {size} bytes, more than the {max} an object of its kind may have"
            )));
        }
        let b = self.call(path, &format!("read {path} 0 -"), None, |me, s| {
            me.read_data(s, path, max.min(size as usize))
        })?;
        if b.len() as u64 != size {
            return Err(self.broken(path, format!("{} bytes sent for an object of {size}", b.len())));
        }
        Ok(b)
    }

    fn read_range(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.check_path(path)?;
        let b = self.call(path, &format!("read {path} {offset} {len}"), None, |me, s| {
            me.read_data(s, path, len)
        })?;
        if b.len() < len {
            return Err(Error::corrupt(format!(
                "{}: {path}: shorter than expected (truncated?): {} of {len} bytes at offset {offset}",
                self.location(),
                b.len()
            )));
        }
        Ok(b)
    }

    fn size(&self, path: &str) -> Result<u64> {
        self.check_path(path)?;
        self.call(path, &format!("size {path}"), None, |me, s| {
            let a = me.answer(s, path)?;
            match a.word.as_str() {
                "size" => a
                    .rest
                    .parse()
                    .map_err(|_| me.broken(path, format!("bad size {:?}", a.rest))),
                _ => Err(me.error_answer(path, &a)),
            }
        })
    }

    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<Written> {
        self.check_path(path)?;
        self.call(path, &format!("write {path} {}", bytes.len()), Some(bytes), |me, s| {
            let a = me.answer(s, path)?;
            match a.word.as_str() {
                "new" => Ok(Written::New),
                "exists" => Ok(Written::AlreadyThere),
                _ => Err(me.error_answer(path, &a)),
            }
        })
    }

    fn create_if_absent(&self) -> CreateIfAbsent {
        if self.atomic {
            CreateIfAbsent::Atomic
        } else {
            CreateIfAbsent::Checked
        }
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.check_path(path)?;
        self.call(path, &format!("delete {path}"), None, |me, s| {
            let a = me.answer(s, path)?;
            match a.word.as_str() {
                "ok" => Ok(()),
                _ => Err(me.error_answer(path, &a)),
            }
        })
    }

    fn exists(&self, path: &str) -> Result<bool> {
        self.check_path(path)?;
        self.call(path, &format!("exists {path}"), None, |me, s| {
            let a = me.answer(s, path)?;
            match a.word.as_str() {
                "yes" => Ok(true),
                "no" => Ok(false),
                _ => Err(me.error_answer(path, &a)),
            }
        })
    }

    fn create(&self) -> Result<()> {
        self.call("create", "create", None, |me, s| {
            let a = me.answer(s, "create")?;
            match a.word.as_str() {
                "ok" => Ok(()),
                _ => Err(me.error_answer("create", &a)),
            }
        })
    }

    fn remote(&self) -> bool {
        self.remote
    }
}
