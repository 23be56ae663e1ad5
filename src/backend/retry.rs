//! A layer over any backend: transient failures are tried again with exponential backoff
//! and jitter (`backon`), transfers can be held to a rate, and every request and byte is
//! counted for the command's report. Pipelines see only the `Backend` trait, so they never
//! know whether they talk to a local folder or a server across the world.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BlockingRetryable, ExponentialBuilder};

use super::{Backend, CreateIfAbsent, Dir, NewObject, ObjectInfo, Written};
use crate::error::{Error, Result, StorageKind};

/// Requests and bytes a command moved, for its `--json` report.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Requests tried again after a transient failure.
    pub retries: AtomicU64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

/// [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub retries: u64,
}

/// How the layer behaves.
#[derive(Clone, Copy, Debug)]
pub struct RetryOptions {
    /// Tries per request at most (the first one included).
    pub attempts: usize,
    /// First wait; it doubles up to `max_delay`, with jitter.
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Bytes per second sent at most (`None`: no limit).
    pub limit_upload: Option<u64>,
    /// Bytes per second received at most.
    pub limit_download: Option<u64>,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            attempts: 8,
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(20),
            limit_upload: None,
            limit_download: None,
        }
    }
}

/// Holds an average rate: a transfer of `n` bytes waits until the bytes so far fit the
/// limit since the first transfer.
struct Throttle {
    limit: u64,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    fn new(limit: Option<u64>) -> Option<Throttle> {
        limit.filter(|l| *l > 0).map(|limit| Throttle {
            limit,
            state: Mutex::new((None, 0)),
        })
    }

    fn take(&self, n: u64) {
        let wait = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let start = *s.0.get_or_insert_with(Instant::now);
            s.1 += n;
            let due = Duration::from_secs_f64(s.1 as f64 / self.limit as f64);
            due.saturating_sub(start.elapsed())
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

pub struct Retrying {
    inner: Arc<dyn Backend>,
    opts: RetryOptions,
    stats: Arc<Stats>,
    up: Option<Arc<Throttle>>,
    down: Option<Throttle>,
}

impl Retrying {
    pub fn new(inner: Arc<dyn Backend>, opts: RetryOptions) -> Retrying {
        Retrying {
            inner,
            up: Throttle::new(opts.limit_upload).map(Arc::new),
            down: Throttle::new(opts.limit_download),
            opts,
            stats: Arc::new(Stats::default()),
        }
    }

    /// The counters this layer keeps (shared: they keep counting after this call).
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    fn run<T>(&self, op: &'static str, what: &str, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let started = Instant::now();
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.opts.min_delay)
            .with_max_delay(self.opts.max_delay)
            .with_max_times(self.opts.attempts.saturating_sub(1))
            .with_jitter();
        let stats = &self.stats;
        (|| {
            stats.requests.fetch_add(1, Ordering::Relaxed);
            f()
        })
        .retry(backoff)
        .when(|e: &crate::Error| e.is_transient())
        .notify(|e, d| {
            stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("{what}: {e}; trying again in {:.1} s", d.as_secs_f64());
        })
        .call()
        .map_err(|e| match e {
            // Still transient after every try: say so, and what to do about it.
            Error::Storage {
                kind: StorageKind::Transient,
                location,
                message,
            } => Error::Storage {
                kind: StorageKind::Transient,
                location,
                message: format!(
                    "{message} (failed {} times in a row: check the network and that the store is up, \
                     then run the command again)",
                    self.opts.attempts.max(1)
                ),
            },
            e => e,
        })
        .inspect(|_| {
            tracing::trace!(
                id = "storage.request",
                op,
                object = what,
                ms = started.elapsed().as_secs_f64() * 1e3,
                "{op} {what}: {:.1} ms",
                started.elapsed().as_secs_f64() * 1e3
            )
        })
    }

    fn received(&self, n: usize) {
        self.stats.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(t) = &self.down {
            t.take(n as u64);
        }
    }
}

/// A streamed write through the layer: its bytes are counted and held to the upload
/// rate. It is not tried again: the bytes written so far are not kept, and a store that
/// streams (a local folder) has no transient failures to wait out.
struct Counted {
    inner: Box<dyn NewObject>,
    stats: Arc<Stats>,
    up: Option<Arc<Throttle>>,
}

impl NewObject for Counted {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(t) = &self.up {
            t.take(bytes.len() as u64);
        }
        self.inner.write(bytes)?;
        self.stats.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn commit(self: Box<Self>, path: &str) -> Result<Written> {
        self.inner.commit(path)
    }
}

impl Backend for Retrying {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list(&self, dir: Dir) -> Result<Vec<(String, u64)>> {
        self.run("list", dir.name(), || self.inner.list(dir))
    }

    fn list_info(&self, dir: Dir) -> Result<Vec<ObjectInfo>> {
        self.run("list", dir.name(), || self.inner.list_info(dir))
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        let b = self.run("read", path, || self.inner.read(path))?;
        self.received(b.len());
        Ok(b)
    }

    fn read_into(&self, path: &str, buf: &mut Vec<u8>) -> Result<()> {
        self.run("read", path, || self.inner.read_into(path, buf))?;
        self.received(buf.len());
        Ok(())
    }

    fn read_object(&self, path: &str, max: usize) -> Result<Vec<u8>> {
        let b = self.run("read", path, || self.inner.read_object(path, max))?;
        self.received(b.len());
        Ok(b)
    }

    fn read_range(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let b = self.run("read_range", path, || self.inner.read_range(path, offset, len))?;
        self.received(b.len());
        Ok(b)
    }

    fn read_range_into(&self, path: &str, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        self.run("read_range", path, || {
            self.inner.read_range_into(path, offset, len, buf)
        })?;
        self.received(buf.len());
        Ok(())
    }

    fn size(&self, path: &str) -> Result<u64> {
        self.run("size", path, || self.inner.size(path))
    }

    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<Written> {
        if let Some(t) = &self.up {
            t.take(bytes.len() as u64);
        }
        let mut failed_before = false;
        let w = self.run("write", path, || {
            let r = self.inner.write_new(path, bytes);
            failed_before |= r.is_err();
            r
        })?;
        self.stats.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if w == Written::AlreadyThere && failed_before {
            // A try whose answer was lost (a timeout, a connection cut after the request)
            // may have stored the object; this try then finds it. The same bytes there are
            // this write's (config, key and lock objects hold random bytes; any other name
            // is a hash of its content), so it counts as new: `init` must not take its own
            // config for another repository's.
            return match self.run("read", path, || self.inner.read(path)) {
                Ok(there) if there == bytes => Ok(Written::New),
                Ok(_) => Ok(Written::AlreadyThere),
                Err(e) if e.is_not_found() => Ok(Written::AlreadyThere),
                Err(e) => Err(e),
            };
        }
        Ok(w)
    }

    fn write_streamed(&self, dir: Dir) -> Option<Result<Box<dyn NewObject>>> {
        let started = self.inner.write_streamed(dir)?;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        Some(started.map(|inner| {
            Box::new(Counted {
                inner,
                stats: self.stats.clone(),
                up: self.up.clone(),
            }) as Box<dyn NewObject>
        }))
    }

    fn create_if_absent(&self) -> CreateIfAbsent {
        self.inner.create_if_absent()
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.run("delete", path, || self.inner.delete(path))
    }

    fn exists(&self, path: &str) -> Result<bool> {
        self.run("exists", path, || self.inner.exists(path))
    }

    fn create(&self) -> Result<()> {
        self.run("create", "create", || self.inner.create())
    }

    fn remove_stale_temp(&self, older_than: Duration) -> Result<Vec<String>> {
        self.run("remove_stale_temp", "temporary files", || {
            self.inner.remove_stale_temp(older_than)
        })
    }

    fn connections(&self) -> usize {
        self.inner.connections()
    }

    fn remote(&self) -> bool {
        self.inner.remote()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::error::StorageKind;

    /// Fails the first `fail` writes as timed out, after storing what `stored` says: the
    /// request's own bytes (the answer was lost) or another writer's (it won the name).
    struct LostAnswers {
        inner: MemoryBackend,
        fail: AtomicU64,
        stored: Option<&'static [u8]>,
    }

    impl Backend for LostAnswers {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn list(&self, dir: Dir) -> Result<Vec<(String, u64)>> {
            self.inner.list(dir)
        }
        fn read(&self, path: &str) -> Result<Vec<u8>> {
            self.inner.read(path)
        }
        fn read_range(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
            self.inner.read_range(path, offset, len)
        }
        fn size(&self, path: &str) -> Result<u64> {
            self.inner.size(path)
        }
        fn write_new(&self, path: &str, bytes: &[u8]) -> Result<Written> {
            if self.fail.load(Ordering::SeqCst) == 0 {
                return self.inner.write_new(path, bytes);
            }
            self.fail.fetch_sub(1, Ordering::SeqCst);
            self.inner.write_new(path, self.stored.unwrap_or(bytes))?;
            Err(Error::Storage {
                kind: StorageKind::Transient,
                location: path.into(),
                message: "operation timeout reached".into(),
            })
        }
        fn delete(&self, path: &str) -> Result<()> {
            self.inner.delete(path)
        }
        fn exists(&self, path: &str) -> Result<bool> {
            self.inner.exists(path)
        }
        fn create(&self) -> Result<()> {
            self.inner.create()
        }
    }

    fn layer(fail: u64, stored: Option<&'static [u8]>) -> Retrying {
        let b = LostAnswers {
            inner: MemoryBackend::new(),
            fail: AtomicU64::new(fail),
            stored,
        };
        let opts = RetryOptions {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            ..Default::default()
        };
        Retrying::new(Arc::new(b), opts)
    }

    #[test]
    fn a_write_whose_answer_was_lost_is_new_when_retried() {
        let r = layer(2, None);
        assert_eq!(r.write_new("config", b"ours").unwrap(), Written::New);
        assert_eq!(r.stats().snapshot().retries, 2);
        assert_eq!(r.read("config").unwrap(), b"ours");
        // Without a lost answer, an existing object is still reported as such.
        assert_eq!(r.write_new("config", b"ours").unwrap(), Written::AlreadyThere);
    }

    #[test]
    fn another_writers_object_found_on_a_retry_is_already_there() {
        let r = layer(1, Some(b"theirs"));
        assert_eq!(r.write_new("config", b"ours").unwrap(), Written::AlreadyThere);
        assert_eq!(r.read("config").unwrap(), b"theirs");
    }

    #[test]
    fn a_write_that_keeps_failing_says_how_often_and_what_to_do() {
        let r = layer(u64::MAX, Some(b""));
        let e = r.write_new("config", b"ours").unwrap_err().to_string();
        assert!(e.contains("failed 8 times in a row"), "{e}");
        assert!(e.contains("then run the command again"), "{e}");
    }
}
