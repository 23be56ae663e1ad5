//! Rendering the library's progress events (`projectclone::progress`): an indicatif bar on
//! stderr when it is a terminal (not with `-q` or `--json-status`), restic-style status
//! lines on stdout with `--json-status`, and at `-v` one info line per entry that restore
//! and export write (`restore.written`, `export.written`).
//!
//! The library's events only move atomic counters; what is drawn or printed is taken from
//! them at most every [`BAR_EVERY`] (bar) or status interval (`--json-status`, 250 ms;
//! `PROJECTCLONE_STATUS_INTERVAL_MS` sets it, 0 for a line per event), so a per-chunk
//! event costs a few atomic adds. A timer thread takes them at that interval too, so a
//! long stretch without events (waiting for an upload, a slow read) still prints status
//! lines and moves the bar; it stops at `finish`, before the summary is printed.

use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use projectclone::format_name;
use projectclone::progress::Progress;

use super::{Cli, report};

/// `--json-status` was given (set once at start-up).
static JSON_STATUS: AtomicBool = AtomicBool::new(false);

/// The bar on screen, if any: the reporter draws its lines above it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// How often the bar takes the counters (indicatif redraws at most 20 times a second).
const BAR_EVERY: Duration = Duration::from_millis(100);
/// How often a status line is printed with `--json-status`, by default.
const STATUS_EVERY: Duration = Duration::from_millis(250);

pub fn set_json_status(on: bool) {
    JSON_STATUS.store(on, Ordering::Relaxed);
}

/// Is `--json-status` on: status lines while a command runs, then its result as one line
/// with `"message_type": "summary"`.
pub fn json_status() -> bool {
    JSON_STATUS.load(Ordering::Relaxed)
}

/// Run `f` (which writes a line to stderr) with the bar, if one is shown, cleared
/// meanwhile and drawn again after it.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match bar {
        Some(pb) => pb.suspend(f),
        None => f(),
    }
}

/// The progress reporter of this command (`command`: its name, for the `-v` message ids).
pub fn reporter(cli: &Cli, command: &str) -> Box<dyn Progress> {
    let sink = if json_status() {
        let interval = std::env::var("PROJECTCLONE_STATUS_INTERVAL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(STATUS_EVERY, Duration::from_millis);
        Sink::Json {
            interval,
            state: Mutex::new(JsonState::default()),
        }
    } else if cli.quiet || !std::io::stderr().is_terminal() {
        Sink::None
    } else {
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        pb.set_style(style(true));
        pb.enable_steady_tick(Duration::from_millis(200));
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(pb.clone());
        Sink::Bar {
            pb,
            last: Mutex::new(Instant::now() - BAR_EVERY),
            growing: AtomicBool::new(true),
        }
    };
    let (written_id, written_verb) = match command {
        "restore" => ("restore.written", "restored"),
        _ => ("export.written", "written"),
    };
    let tick = match &sink {
        Sink::None => None,
        Sink::Bar { .. } => Some(BAR_EVERY),
        // At least every 50 ms: an interval of 0 asks for a line per event, not a busy timer.
        Sink::Json { interval, .. } => Some((*interval).max(Duration::from_millis(50))),
    };
    let inner = Arc::new(Inner {
        counts: Counts::default(),
        started: Instant::now(),
        list_written: report::verbose() >= 1,
        written_id,
        written_verb,
        sink,
        finished: AtomicBool::new(false),
    });
    let timer = tick.and_then(|every| Timer::start(&inner, every));
    Box::new(Reporter {
        inner,
        timer: Mutex::new(timer),
    })
}

/// The thread that takes the counters at the interval, events or not.
struct Timer {
    /// Dropping it stops the thread.
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Timer {
    /// `None` when the system refuses a thread: the counters are then shown on events only.
    fn start(inner: &Arc<Inner>, every: Duration) -> Option<Timer> {
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let inner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("progress-timer".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                    inner.update(false);
                }
            })
            .ok()?;
        Some(Timer { stop, thread })
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// The bar's look: with a known total, a bar with percentage, rate and ETA; while the
/// total still grows (a backup before its count is done, a copy), the counts so far and
/// the rate, no ETA.
fn style(growing: bool) -> ProgressStyle {
    // `wide_msg` takes the rest of the line and is cut to fit it: a line that wraps
    // cannot be redrawn in place.
    let template = if growing {
        "{spinner} [{elapsed}] {bytes} of {total_bytes} so far, {binary_bytes_per_sec}  {wide_msg}"
    } else {
        "{spinner} {percent:>3}% [{bar:20}] {bytes}/{total_bytes}, {binary_bytes_per_sec}, ETA {eta}  {wide_msg}"
    };
    ProgressStyle::with_template(template)
        .expect("the progress templates are valid")
        .progress_chars("=> ")
}

#[derive(Default)]
struct Counts {
    files_total: AtomicU64,
    bytes_total: AtomicU64,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    errors: AtomicU64,
    scanning: AtomicBool,
    current: Mutex<Option<String>>,
}

enum Sink {
    None,
    Bar {
        pb: ProgressBar,
        last: Mutex<Instant>,
        /// Which style is on the bar.
        growing: AtomicBool,
    },
    Json {
        interval: Duration,
        state: Mutex<JsonState>,
    },
}

#[derive(Default)]
struct JsonState {
    /// When the last status line was printed.
    last: Option<Instant>,
    /// The final status line was printed (or the command failed): no more lines, so none
    /// comes after the summary or the error.
    closed: bool,
}

/// The reporter of a command: the counters, shared with the timer thread.
struct Reporter {
    inner: Arc<Inner>,
    timer: Mutex<Option<Timer>>,
}

impl Reporter {
    fn stop_timer(&self) {
        let timer = self.timer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = timer {
            t.stop();
        }
    }
}

struct Inner {
    counts: Counts,
    started: Instant,
    list_written: bool,
    written_id: &'static str,
    written_verb: &'static str,
    sink: Sink,
    finished: AtomicBool,
}

impl Inner {
    /// Show the counters if it is time (or now, with `force`).
    fn update(&self, force: bool) {
        self.show(force, false);
    }

    /// [`Self::update`]; with `last`, print the final status line and no more after it.
    fn show(&self, force: bool, last_line: bool) {
        match &self.sink {
            Sink::None => {}
            Sink::Bar { pb, last, growing } => {
                let Ok(mut last) = last.try_lock() else { return };
                if !force && last.elapsed() < BAR_EVERY {
                    return;
                }
                *last = Instant::now();
                let c = &self.counts;
                let scanning = c.scanning.load(Ordering::Relaxed);
                if growing.swap(scanning, Ordering::Relaxed) != scanning {
                    pb.set_style(style(scanning));
                }
                let done = c.bytes_done.load(Ordering::Relaxed);
                pb.set_length(c.bytes_total.load(Ordering::Relaxed).max(done));
                pb.set_position(done);
                pb.set_message(self.message());
            }
            Sink::Json { interval, state } => {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                if st.closed || (!force && st.last.is_some_and(|t| t.elapsed() < *interval)) {
                    return;
                }
                st.last = Some(Instant::now());
                st.closed = last_line;
                // Under the lock: lines come out whole and their counts never go back.
                let line = self.status_line();
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        }
    }

    /// The bar's message: entries done of the total, errors, the current path.
    fn message(&self) -> String {
        let c = &self.counts;
        let files = c.files_done.load(Ordering::Relaxed);
        let total = c.files_total.load(Ordering::Relaxed).max(files);
        let errors = c.errors.load(Ordering::Relaxed);
        let mut m = format!("{files}/{total} files");
        if errors > 0 {
            m.push_str(&format!(", {errors} error{}", if errors == 1 { "" } else { "s" }));
        }
        if let Some(p) = c.current.lock().unwrap_or_else(|e| e.into_inner()).as_deref() {
            // The end of a long path: its file name is what tells most.
            let n = p.chars().count();
            let tail: String = p.chars().skip(n.saturating_sub(30)).collect();
            m.push_str("  ");
            if n > 30 {
                m.push('…');
            }
            m.push_str(&tail);
        }
        m
    }

    fn status_line(&self) -> serde_json::Value {
        let c = &self.counts;
        // Before the totals: once the count is over they are complete.
        let scanning = c.scanning.load(Ordering::Acquire);
        let bytes_done = c.bytes_done.load(Ordering::Relaxed);
        let files_done = c.files_done.load(Ordering::Relaxed);
        let total_bytes = c.bytes_total.load(Ordering::Relaxed).max(bytes_done);
        let total_files = c.files_total.load(Ordering::Relaxed).max(files_done);
        let percent = match (total_bytes, total_files) {
            (0, 0) => 0.0,
            (0, f) => files_done as f64 / f as f64,
            (b, _) => bytes_done as f64 / b as f64,
        };
        let elapsed = self.started.elapsed().as_secs_f64();
        let current: Vec<String> = c
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let mut v = json!({
            "message_type": "status",
            "seconds_elapsed": (elapsed * 1000.0).round() / 1000.0,
            "percent_done": percent,
            "total_files": total_files,
            "files_done": files_done,
            "total_bytes": total_bytes,
            "bytes_done": bytes_done,
            "error_count": c.errors.load(Ordering::Relaxed),
            "current_files": current,
            "scanning": scanning,
        });
        if !scanning && bytes_done > 0 && total_bytes > bytes_done {
            let rate = bytes_done as f64 / elapsed.max(1e-3);
            v["seconds_remaining"] = json!(((total_bytes - bytes_done) as f64 / rate).ceil() as u64);
        }
        v
    }
}

impl Progress for Reporter {
    fn wants_totals(&self) -> bool {
        !matches!(self.inner.sink, Sink::None)
    }
    fn add_total(&self, files: u64, bytes: u64) {
        self.inner.add_total(files, bytes)
    }
    fn scanning(&self, on: bool) {
        self.inner.scanning(on)
    }
    fn add_bytes(&self, bytes: u64) {
        self.inner.add_bytes(bytes)
    }
    fn current(&self, path: &Path) {
        self.inner.current(path)
    }
    fn file_done(&self) {
        self.inner.file_done()
    }
    fn error(&self) {
        self.inner.error()
    }
    fn written(&self, rel: &Path) {
        self.inner.written(rel)
    }
    fn finish(&self) {
        self.stop_timer();
        self.inner.finish()
    }
}

impl Progress for Inner {
    fn add_total(&self, files: u64, bytes: u64) {
        self.counts.files_total.fetch_add(files, Ordering::Relaxed);
        self.counts.bytes_total.fetch_add(bytes, Ordering::Relaxed);
        self.update(false);
    }
    fn scanning(&self, on: bool) {
        self.counts.scanning.store(on, Ordering::Release);
        // Shown at once: the end of a count is when a percentage and an ETA appear.
        self.update(true);
    }
    fn add_bytes(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        self.counts.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.update(false);
    }
    fn current(&self, path: &Path) {
        if matches!(self.sink, Sink::None) {
            return;
        }
        let p = format_name(path.as_os_str().as_bytes());
        *self.counts.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
    }
    fn file_done(&self) {
        self.counts.files_done.fetch_add(1, Ordering::Relaxed);
        self.update(false);
    }
    fn error(&self) {
        self.counts.errors.fetch_add(1, Ordering::Relaxed);
        self.update(false);
    }
    fn written(&self, rel: &Path) {
        if !self.list_written {
            return;
        }
        let p = format_name(rel.as_os_str().as_bytes());
        report::info(
            self.written_id,
            &format!("{}: {p}", self.written_verb),
            &[("path", json!(p))],
        );
    }
    fn finish(&self) {
        if self.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        *self.counts.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        match &self.sink {
            Sink::Bar { pb, .. } => {
                *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
                pb.finish_and_clear();
            }
            // The last status line: the final counts, before the summary.
            Sink::Json { .. } => self.show(true, true),
            Sink::None => {}
        }
    }
}

impl Drop for Reporter {
    /// A command that fails leaves no bar on screen (and prints no status line after its
    /// error).
    fn drop(&mut self) {
        self.stop_timer();
        match &self.inner.sink {
            Sink::Bar { pb, .. } => {
                *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
                pb.finish_and_clear();
            }
            Sink::Json { state, .. } => state.lock().unwrap_or_else(|e| e.into_inner()).closed = true,
            Sink::None => {}
        }
    }
}
