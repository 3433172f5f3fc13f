//! One partition's runner thread: takes records from the partition's own queue, in
//! order, and for each one: moves to the current snapshot (a record boundary),
//! asks the circuit, [`process`]es it (sleeping through retries), and hands the
//! verdicts to the sink. Partitions run in parallel, at most `workers` at a time
//! when that is set (a runner holds a worker slot for up to [`SLOT_BATCH`] records).
//!
//! The runner never pauses its partition: while it is busy or backing off, its
//! queue fills and librdkafka stops fetching that partition by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::message::{BorrowedMessage, Message};

use super::live::LivePipeline;
use super::process::{Disposition, Instances, Work, process};
use super::slots::SLOT_BATCH;
use super::snapshot::Snapshot;
use super::unit::{PartitionUnit, Source};
use crate::kafka::consumer::PipelineContext;
use crate::plugin::{CallSite, Event};
use crate::policy::Admission;
use crate::shutdown::Shutdown;

/// How long a poll of the partition queue waits before looking at the stop signal.
const POLL: Duration = Duration::from_millis(100);

pub struct PartitionRunner {
    pub pipeline: Arc<LivePipeline>,
    pub unit: Arc<PartitionUnit>,
    pub queue: Arc<PartitionQueue<PipelineContext>>,
    /// Raised to stop at the next record boundary (or backoff).
    pub stop: Shutdown,
}

/// How a record ended.
enum Handled {
    Done,
    /// Stopped mid-record (revocation or shutdown): not registered, so not
    /// committed; the partition's next owner handles it again.
    Abandoned,
}

impl PartitionRunner {
    pub fn run(self) {
        let mut snapshot = self.pipeline.snapshot();
        let mut instances = loop {
            match Instances::new(&snapshot) {
                Ok(instances) => break instances,
                Err(error) => {
                    tracing::error!(pipeline = %self.pipeline.name(), partition = self.unit.partition, %error, "cannot start the plugins; retrying");
                    if !self.stop.sleep(Duration::from_secs(1)) {
                        return;
                    }
                }
            }
        };
        let mut site = CallSite {
            pipeline: self.pipeline.name().clone(),
            partition: self.unit.partition,
            offset: 0,
        };
        while !self.stop.is_triggered() {
            let Some(first) = self.next(POLL) else {
                continue;
            };
            let Some(_slot) = self.pipeline.slot(&self.stop) else {
                return;
            };
            let mut next = Some(first);
            let mut handled = 0;
            while let Some(source) = next.take() {
                site.offset = source.event.offset;
                if let Handled::Abandoned =
                    self.handle(&source, &mut snapshot, &mut instances, &site)
                {
                    return;
                }
                handled += 1;
                if handled < SLOT_BATCH && !self.stop.is_triggered() {
                    next = self.next(Duration::ZERO);
                }
            }
        }
    }

    /// The partition's next record, copied out of librdkafka's buffer.
    fn next(&self, wait: Duration) -> Option<Arc<Source>> {
        match self.queue.poll(wait)? {
            Ok(message) => {
                self.pipeline.metrics().consumed();
                self.unit.started_at(message.offset());
                Some(Source::new(to_event(&message)))
            }
            Err(error) => {
                tracing::warn!(pipeline = %self.pipeline.name(), partition = self.unit.partition, %error, "consume error");
                None
            }
        }
    }

    /// Waits for the circuit's permission; `None` if asked to stop.
    fn admit(&self) -> Option<Admission<'_>> {
        loop {
            match self.pipeline.admit(Instant::now()) {
                Err(wait) => {
                    if !self.stop.sleep(wait.min(Duration::from_millis(250))) {
                        return None;
                    }
                }
                Ok(admission) => return Some(admission),
            }
        }
    }

    fn handle(
        &self,
        source: &Arc<Source>,
        snapshot: &mut Arc<Snapshot>,
        instances: &mut Instances,
        site: &CallSite,
    ) -> Handled {
        let event = &source.event;
        // Lines about this record (plugin logs included) carry its correlation id.
        let _span = event
            .headers
            .iter()
            .find(|h| h.key == "correlation_id")
            .map(|h| {
                tracing::info_span!("record", correlation_id = %String::from_utf8_lossy(&h.value))
                    .entered()
            });
        let pipeline = &self.pipeline;
        if pipeline.refresh(snapshot) {
            for version in instances.sync(snapshot) {
                tracing::info!(pipeline = %pipeline.name(), partition = event.partition, offset = event.offset, plugin = %version.label, "now running the reloaded plugin");
            }
        }
        // Dropped on any early return (or a panic), it goes back to the circuit.
        let Some(admission) = self.admit() else {
            return Handled::Abandoned;
        };
        let mut work = Work::new(event, snapshot);
        loop {
            match process(&mut work, snapshot, instances, site, fastrand::f64()) {
                Disposition::Retry {
                    delay,
                    failure,
                    attempt,
                } => {
                    let kind = failure.error.kind();
                    if kind.is_hosts() {
                        tracing::warn!(
                            pipeline = %pipeline.name(), partition = event.partition, offset = event.offset,
                            plugin = %failure.plugin.label, attempt, retry_in = ?delay,
                            "{kind}: {}; the partition waits", failure.error.message()
                        );
                    } else {
                        tracing::debug!(
                            pipeline = %pipeline.name(), partition = event.partition, offset = event.offset,
                            plugin = %failure.plugin.label, attempt, retry_in = ?delay,
                            "{kind}: {}", failure.error.message()
                        );
                    }
                    if !self.stop.sleep(delay) {
                        return Handled::Abandoned;
                    }
                }
                Disposition::Done(verdicts) => {
                    let sink = pipeline.sink();
                    let Ok(outcome) = sink.deliver(source, verdicts, &self.unit, &self.stop) else {
                        return Handled::Abandoned;
                    };
                    pipeline.record(admission, outcome, snapshot);
                    return Handled::Done;
                }
            }
        }
    }
}

/// Copies a consumed message into an event.
pub fn to_event(message: &BorrowedMessage<'_>) -> Event {
    Event {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers: crate::kafka::consumed_headers(message),
    }
}
