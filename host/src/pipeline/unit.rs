//! What the runner, the producer's callbacks and the committer share about one
//! assigned partition ([`PartitionUnit`]), and about one consumed record
//! ([`Source`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use super::keyed::PartitionState;
use crate::kafka::producer::OwnedRecord;

use crate::kafka::OffsetTracker;
use crate::record::Event;
use crate::telemetry::health::StallWatch;
use crate::telemetry::metrics::Latency;
use crate::telemetry::trace::RecordTrace;

/// One assigned partition of a pipeline.
pub struct PartitionUnit {
    pub partition: i32,
    pub tracker: OffsetTracker,
    /// At-least-once: the changelog records of records (and fired timers) whose
    /// outputs are not all acknowledged yet, in the partition's order. A change goes
    /// to the changelog only once the outputs of the record that made it are
    /// acknowledged, so that a crash in between replays the record with the state
    /// it first saw (its outputs again, never none); and in order, so that the
    /// changelog ends with the latest change of each entry.
    held: std::sync::Mutex<VecDeque<(Arc<Source>, Vec<OwnedRecord>)>>,
    /// The partition's stateful slots, once its runner made them: written to the
    /// local stores when the partition goes cleanly.
    state: std::sync::OnceLock<Arc<PartitionState>>,
    /// The pipeline's end-to-end latency.
    latency: Latency,
    /// The pipeline's watch over its records in flight.
    pub stall: Arc<StallWatch>,
    /// Where an exactly-once rewind goes back to: the offset last committed for
    /// sure, or else the first offset this partition's runners were given (-1:
    /// nothing handled yet, no need to move).
    rewind_to: AtomicI64,
}

impl PartitionUnit {
    /// `rewind_to`: the position a previous unit of the partition would rewind to.
    pub fn new(
        partition: i32,
        latency: Latency,
        stall: Arc<StallWatch>,
        rewind_to: Option<i64>,
    ) -> PartitionUnit {
        PartitionUnit {
            partition,
            tracker: OffsetTracker::new(),
            held: std::sync::Mutex::new(VecDeque::new()),
            state: std::sync::OnceLock::new(),
            latency,
            stall,
            rewind_to: AtomicI64::new(rewind_to.unwrap_or(-1)),
        }
    }

    /// The runner's stateful slots.
    pub fn set_state(&self, state: Arc<PartitionState>) {
        let _ = self.state.set(state);
    }

    pub fn state(&self) -> Option<&Arc<PartitionState>> {
        self.state.get()
    }

    /// Holds `source`'s changelog records until its outputs are acknowledged (see
    /// `held`). Call before sending the outputs.
    pub fn hold(&self, source: &Arc<Source>, outputs: usize, changes: Vec<OwnedRecord>) {
        if changes.is_empty() {
            return;
        }
        source.outputs_left.store(outputs as u64, Ordering::SeqCst);
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back((source.clone(), changes));
    }

    /// Takes, from the front, the held changes whose outputs are all acknowledged.
    pub fn take_ready(&self) -> Vec<(Arc<Source>, Vec<OwnedRecord>)> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ready = Vec::new();
        while held
            .front()
            .is_some_and(|(source, _)| source.outputs_left.load(Ordering::SeqCst) == 0)
        {
            ready.extend(held.pop_front());
        }
        ready
    }

    /// Whether changes are still held.
    pub fn holds_changes(&self) -> bool {
        !self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// The runner got its first record, at `offset`.
    pub fn started_at(&self, offset: i64) {
        let _ = self
            .rewind_to
            .compare_exchange(-1, offset, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// A transaction committed the partition's offset `next`.
    pub fn committed(&self, next: i64) {
        self.rewind_to.store(next, Ordering::SeqCst);
    }

    /// Where a rewind goes back to, if anything was handled.
    pub fn rewind_to(&self) -> Option<i64> {
        Some(self.rewind_to.load(Ordering::SeqCst)).filter(|o| *o >= 0)
    }

    /// Observes the end-to-end latency of a record that is done.
    pub fn done(&self, source: &Event) {
        self.done_at(source.timestamp_ms);
    }

    /// Observes the end-to-end latency of a record with timestamp `timestamp_ms`.
    pub fn done_at(&self, timestamp_ms: Option<i64>) {
        self.latency.since(timestamp_ms);
    }
}

/// A consumed record (or a fired timer), shared by the tickets of everything it
/// causes.
pub struct Source {
    pub event: Event,
    /// A fired timer: it has no offset to register.
    pub timer: bool,
    /// Its place in its trace, with tracing on.
    pub trace: Option<RecordTrace>,
    /// At-least-once: its outputs not acknowledged yet, while it holds changes.
    pub(super) outputs_left: AtomicU64,
    /// Bits of the branches that dead-lettered it because the broker refused one of
    /// their outputs, so that a record is dead-lettered once per branch.
    pub(super) refused: AtomicU64,
}

impl Source {
    pub fn new(event: Event, trace: Option<RecordTrace>) -> Arc<Source> {
        Arc::new(Source {
            event,
            timer: false,
            trace,
            outputs_left: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// A fired timer, `event` standing for its source.
    pub fn timer(event: Event, trace: Option<RecordTrace>) -> Arc<Source> {
        Arc::new(Source {
            event,
            timer: true,
            trace,
            outputs_left: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Marks branch `index` as dead-lettered for a refused output; `false` when it
    /// already was.
    pub(super) fn refuse_once(&self, index: usize) -> bool {
        let bit = 1u64 << index.min(63);
        self.refused.fetch_or(bit, Ordering::SeqCst) & bit == 0
    }
}
