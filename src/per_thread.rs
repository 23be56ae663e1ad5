//! State each rayon worker thread keeps across the items it processes: buffers, cached
//! directory descriptors.
//!
//! Rayon's `map_init` and `for_each_init` make a fresh value for each job split, not for
//! each thread, and a parallel loop over a few dozen packs splits down to nearly one pack
//! per job. A 16 MiB pack buffer made fresh per pack is 4,000 page faults each time: a
//! `check --read-data` of 361 MiB took 83,000 of them.

use std::sync::Mutex;

/// One slot per worker thread of the current rayon pool, made up front.
pub struct PerThread<'a, T> {
    slots: Vec<Mutex<T>>,
    make: Box<dyn Fn() -> T + Sync + 'a>,
}

impl<'a, T: Send> PerThread<'a, T> {
    /// Slots for the pool this is called in (the global pool outside any).
    pub fn new(make: impl Fn() -> T + Sync + 'a) -> Self {
        let slots = (0..rayon::current_num_threads()).map(|_| Mutex::new(make())).collect();
        PerThread {
            slots,
            make: Box::new(make),
        }
    }

    /// Run `f` with this thread's slot. A thread that already holds its slot further up
    /// its stack (a worker that, waiting inside a nested parallel loop, took another item
    /// of this one) or that is not a worker of the pool gets a fresh value instead.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let slot = rayon::current_thread_index()
            .and_then(|i| self.slots.get(i))
            .and_then(|m| m.try_lock().ok());
        match slot {
            Some(mut state) => f(&mut state),
            None => f(&mut (self.make)()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_worker_reuses_its_slot_and_a_nested_use_gets_a_fresh_value() {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        pool.install(|| {
            let per = PerThread::new(|| {
                MADE.fetch_add(1, Ordering::Relaxed);
                Vec::<u32>::new()
            });
            assert_eq!(MADE.load(Ordering::Relaxed), 2, "one per worker, up front");
            (0..1000u32).into_par_iter().for_each(|i| per.with(|v| v.push(i)));
            assert_eq!(MADE.load(Ordering::Relaxed), 2, "no split made its own");
            let mut all: Vec<u32> = per.slots.iter().flat_map(|m| m.lock().unwrap().clone()).collect();
            all.sort_unstable();
            assert_eq!(all, (0..1000).collect::<Vec<_>>());
            // Held further up the stack: a fresh value, not a deadlock.
            per.with(|outer| per.with(|inner| assert!(!std::ptr::eq(outer, inner))));
        });
        assert_eq!(MADE.load(Ordering::Relaxed), 3);
    }
}
