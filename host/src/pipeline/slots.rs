//! Worker slots (`workers`): at most N partitions of a pipeline run plugins at once.
//! A fair counting semaphore: slots go to waiting runners in arrival order, so a
//! runner that gives its slot back cannot take it again ahead of the others.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::shutdown::Shutdown;

/// Records a runner handles in a row while holding a worker slot, before giving
/// other partitions their turn.
pub const SLOT_BATCH: usize = 64;

pub struct WorkerSlots {
    state: Mutex<SlotState>,
    changed: Condvar,
}

struct SlotState {
    free: u32,
    /// Tickets of waiting runners, oldest first.
    waiting: VecDeque<u64>,
    next_ticket: u64,
}

/// A held worker slot, given back on drop.
pub struct Slot<'a>(Option<&'a WorkerSlots>);

impl Slot<'_> {
    /// A slot that limits nothing (a pipeline without `workers`).
    pub fn unlimited() -> Slot<'static> {
        Slot(None)
    }
}

impl WorkerSlots {
    pub fn new(workers: u32) -> WorkerSlots {
        WorkerSlots {
            state: Mutex::new(SlotState {
                free: workers,
                waiting: VecDeque::new(),
                next_ticket: 0,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a free slot, in turn; `None` if `stop` is signalled meanwhile.
    pub fn acquire(&self, stop: &Shutdown) -> Option<Slot<'_>> {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back(ticket);
        loop {
            if stop.is_triggered() {
                state.waiting.retain(|&t| t != ticket);
                self.changed.notify_all();
                return None;
            }
            if state.free > 0 && state.waiting.front() == Some(&ticket) {
                state.waiting.pop_front();
                state.free -= 1;
                // The next in line may find a slot free too.
                self.changed.notify_all();
                return Some(Slot(Some(self)));
            }
            // Short waits: a stop signal does not notify this condvar.
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(20))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(slots) = self.0 {
            slots.lock().free += 1;
            slots.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn worker_slots_cap_concurrency_and_go_in_turn() {
        let slots = Arc::new(WorkerSlots::new(1));
        let order = Arc::new(Mutex::new(Vec::new()));
        let never = Shutdown::new();
        let held = slots.acquire(&never).expect("a free slot");
        let mut waiters = Vec::new();
        for name in ["first", "second", "third"] {
            let (mine, order, never) = (slots.clone(), order.clone(), never.clone());
            waiters.push(std::thread::spawn(move || {
                let _slot = mine.acquire(&never).expect("a slot in turn");
                order.lock().unwrap().push(name);
            }));
            // Each waiter queues before the next one starts.
            while slots.lock().waiting.len() < waiters.len() {
                std::thread::yield_now();
            }
        }
        assert!(
            order.lock().unwrap().is_empty(),
            "nobody runs while the slot is held"
        );
        drop(held);
        for waiter in waiters {
            waiter.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["first", "second", "third"]);
    }

    #[test]
    fn a_stopped_runner_stops_waiting_for_a_slot() {
        let slots = WorkerSlots::new(1);
        let _held = slots.acquire(&Shutdown::new()).expect("a free slot");
        let stopped = Shutdown::new();
        stopped.trigger();
        assert!(slots.acquire(&stopped).is_none());
        assert!(slots.lock().waiting.is_empty());
    }
}
