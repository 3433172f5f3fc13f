//! The stop signal every loop of the host waits on (mini-redis's `Shutdown`, for
//! threads): a sleep, a wait for a worker slot or a retry backoff ends the moment
//! stop is signalled, instead of polling a flag.
//!
//! A [`Shutdown`] can have children (a partition runner's is a child of its
//! pipeline's, which is a child of the process's): signalling a parent signals
//! every child, signalling a child leaves the parent alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A stop signal; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Read without the lock on hot paths.
    stopped: AtomicBool,
    lock: Mutex<Vec<Weak<Inner>>>,
    /// Wakes sleepers when the signal is raised.
    changed: Condvar,
}

impl Inner {
    fn trigger(&self) {
        let children = {
            let children = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.stopped.store(true, Ordering::SeqCst);
            self.changed.notify_all();
            children.clone()
        };
        for child in children.iter().filter_map(Weak::upgrade) {
            child.trigger();
        }
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// A signal raised with this one (or on its own).
    pub fn child(&self) -> Shutdown {
        let child = Shutdown::new();
        let mut children = self
            .inner
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        children.retain(|c| c.strong_count() > 0);
        children.push(Arc::downgrade(&child.inner));
        if self.inner.stopped.load(Ordering::SeqCst) {
            child.inner.stopped.store(true, Ordering::SeqCst);
        }
        child
    }

    /// Raises the signal (idempotent).
    pub fn trigger(&self) {
        self.inner.trigger();
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.stopped.load(Ordering::Relaxed)
    }

    /// Sleeps up to `duration`; returns false, at once, if the signal is raised.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut guard = self
            .inner
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.inner.stopped.load(Ordering::SeqCst) {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            guard = self
                .inner
                .changed
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until the signal is raised.
    pub fn wait(&self) {
        while self.sleep(Duration::from_secs(3600)) {}
    }
}

/// Joins a thread, waiting at most until `deadline`; logs and leaves it running
/// (detached) when it does not finish in time. Returns whether it finished.
pub fn join_until(thread: JoinHandle<()>, deadline: Instant, what: &str) -> bool {
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            tracing::warn!("{what} did not finish in time; leaving it behind");
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if thread.join().is_err() {
        tracing::error!("{what} panicked");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_ends_when_signalled() {
        let shutdown = Shutdown::new();
        let sleeper = shutdown.clone();
        let started = Instant::now();
        let thread = std::thread::spawn(move || sleeper.sleep(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        shutdown.trigger();
        assert!(!thread.join().unwrap(), "interrupted");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!shutdown.sleep(Duration::from_secs(30)), "stays raised");
    }

    #[test]
    fn a_parent_stops_its_children_but_not_the_reverse() {
        let parent = Shutdown::new();
        let child = parent.child();
        let grandchild = child.child();
        grandchild.trigger();
        assert!(!child.is_triggered() && !parent.is_triggered());
        let other = child.child();
        parent.trigger();
        assert!(child.is_triggered() && other.is_triggered());
        assert!(parent.child().is_triggered(), "born stopped");
    }

    #[test]
    fn joins_are_bounded() {
        let quick = std::thread::spawn(|| ());
        assert!(join_until(
            quick,
            Instant::now() + Duration::from_secs(5),
            "quick"
        ));
        let stop = Shutdown::new();
        let waiting = stop.clone();
        let slow = std::thread::spawn(move || waiting.wait());
        assert!(!join_until(
            slow,
            Instant::now() + Duration::from_millis(20),
            "slow"
        ));
        stop.trigger();
    }
}
