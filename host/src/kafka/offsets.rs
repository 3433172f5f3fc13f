//! The ordered per-partition offset tracker.
//!
//! A record's offset becomes committable only when it and every record before it in
//! its partition have all their outputs and DLQ writes acknowledged by the broker.
//! Records are registered in consumption order with the number of deliveries they
//! wait for; acknowledgements may arrive in any order.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Progress {
    /// In-flight records, ascending by offset: (offset, deliveries still awaited).
    pending: VecDeque<(i64, u32)>,
    /// The next offset to commit: one past the last record whose prefix is complete.
    committable: Option<i64>,
    /// The offset last handed to a commit.
    committed: Option<i64>,
}

impl Progress {
    fn settle(&mut self) {
        while let Some(&(offset, 0)) = self.pending.front() {
            self.pending.pop_front();
            self.committable = Some(offset + 1);
        }
    }
}

/// The tracker of one partition; shared by its worker, the producer's delivery
/// callback and the committer.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    progress: Mutex<Progress>,
    /// Signalled whenever the pending set shrinks, for draining.
    drained: Condvar,
}

impl OffsetTracker {
    pub fn new() -> OffsetTracker {
        OffsetTracker::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a handled record that waits for `deliveries` acknowledgements.
    /// Offsets must be registered in increasing order.
    pub fn register(&self, offset: i64, deliveries: u32) {
        let mut progress = self.lock();
        debug_assert!(
            progress
                .pending
                .back()
                .is_none_or(|&(last, _)| last < offset)
        );
        progress.pending.push_back((offset, deliveries));
        progress.settle();
        if progress.pending.is_empty() {
            self.drained.notify_all();
        }
    }

    /// One delivery of the record at `offset` was acknowledged. Returns true when
    /// that was the record's last awaited delivery.
    pub fn ack(&self, offset: i64) -> bool {
        let mut progress = self.lock();
        let Ok(i) = progress.pending.binary_search_by_key(&offset, |&(o, _)| o) else {
            return false;
        };
        let remaining = &mut progress.pending[i].1;
        *remaining = remaining.saturating_sub(1);
        let complete = *remaining == 0;
        progress.settle();
        self.drained.notify_all();
        complete
    }

    /// Records handled but not yet fully acknowledged.
    pub fn in_flight(&self) -> usize {
        self.lock().pending.len()
    }

    /// The offset to commit, if it moved since the last call.
    pub fn take_commit(&self) -> Option<i64> {
        let mut progress = self.lock();
        let next = progress.committable?;
        if progress.committed == Some(next) {
            return None;
        }
        progress.committed = Some(next);
        Some(next)
    }

    /// Forgets that `offset` was handed to a commit (the commit failed), so the next
    /// `take_commit` offers it again.
    pub fn commit_failed(&self, offset: i64) {
        let mut progress = self.lock();
        if progress.committed == Some(offset) {
            progress.committed = None;
        }
    }

    /// Waits until nothing is in flight, or `timeout` passes. Returns whether drained.
    pub fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut progress = self.lock();
        while !progress.pending.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            progress = self
                .drained
                .wait_timeout(progress, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_a_complete_prefix() {
        let t = OffsetTracker::new();
        t.register(10, 2);
        t.register(11, 1);
        t.register(12, 0);
        assert_eq!(t.take_commit(), None);
        assert!(t.ack(11));
        assert_eq!(t.take_commit(), None, "10 still waits");
        assert!(!t.ack(10));
        assert_eq!(t.take_commit(), None, "10 waits for two deliveries");
        assert!(t.ack(10));
        assert_eq!(t.take_commit(), Some(13));
        assert_eq!(t.take_commit(), None, "nothing new");
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn records_without_outputs_settle_at_once() {
        let t = OffsetTracker::new();
        t.register(0, 0);
        assert_eq!(t.take_commit(), Some(1));
    }

    #[test]
    fn a_failed_commit_is_offered_again() {
        let t = OffsetTracker::new();
        t.register(5, 0);
        assert_eq!(t.take_commit(), Some(6));
        t.commit_failed(6);
        assert_eq!(t.take_commit(), Some(6));
    }

    #[test]
    fn unknown_acks_are_ignored() {
        let t = OffsetTracker::new();
        t.register(1, 1);
        t.ack(7);
        assert_eq!(t.in_flight(), 1);
    }

    #[test]
    fn drains_across_threads() {
        let t = std::sync::Arc::new(OffsetTracker::new());
        t.register(1, 1);
        assert!(!t.wait_drained(Duration::from_millis(10)));
        let acker = t.clone();
        let handle = std::thread::spawn(move || acker.ack(1));
        assert!(t.wait_drained(Duration::from_secs(10)));
        handle.join().unwrap();
    }
}
