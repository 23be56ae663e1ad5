//! The one tokio runtime that remote backends block on: two worker threads, made on first
//! use, so commands on a local repository never start it.

use std::sync::LazyLock;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("storage-io")
        .enable_all()
        .build()
        // Only fails when the system refuses threads, which no command can work without.
        .expect("the storage runtime starts (two threads)")
});

pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    &RUNTIME
}

/// Run `f` to completion on the storage runtime from a thread outside it.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}
