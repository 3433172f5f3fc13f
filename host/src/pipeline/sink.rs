//! The sink turns a record's verdicts into produce calls and registers the record
//! with its partition's offset tracker. It is where the two delivery modes differ:
//!
//! - at-least-once ([`AtLeastOnce`]): the record waits in the tracker for every
//!   output and dead letter to be acknowledged; the consumer commits offsets that
//!   have nothing pending before them;
//! - exactly-once ([`super::transaction`]): records are produced into the open
//!   transaction and the record counts as done at once; the transaction commits
//!   them together with the offsets.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::SystemTime;

use prometheus::Histogram;
use rdkafka::Offset;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::topic_partition_list::TopicPartitionList;

use super::process::{Failed, Routed, Verdict};
use super::snapshot::{BranchInfo, Route};
use crate::kafka::OffsetTracker;
use crate::kafka::consumer::PipelineConsumer;
use crate::kafka::producer::{OutRecord, OutputProducer, OwnedRecord, Refusal, Stopped, Ticket};
use crate::plugin::{Event, Header};
use crate::policy::DeadLetter;
use crate::shutdown::Shutdown;
use crate::telemetry::Health;

/// What the runner, the producer's callbacks and the committer share about one
/// assigned partition.
pub struct PartitionUnit {
    pub partition: i32,
    pub tracker: OffsetTracker,
    /// The pipeline's end-to-end latency.
    latency: Histogram,
    /// Where an exactly-once rewind goes back to: the offset last committed for
    /// sure, or else the first offset this partition's runners were given (-1:
    /// nothing handled yet, no need to move).
    rewind_to: AtomicI64,
}

impl PartitionUnit {
    /// `rewind_to`: the position a previous unit of the partition would rewind to.
    pub fn new(partition: i32, latency: Histogram, rewind_to: Option<i64>) -> PartitionUnit {
        PartitionUnit {
            partition,
            tracker: OffsetTracker::new(),
            latency,
            rewind_to: AtomicI64::new(rewind_to.unwrap_or(-1)),
        }
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
        if let Some(ts) = source.timestamp_ms {
            let now_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            self.latency.observe((now_ms - ts).max(0) as f64 / 1000.0);
        }
    }
}

/// A consumed record, shared by the tickets of everything it causes.
pub struct Source {
    pub event: Event,
    /// Bits of the branches that dead-lettered it because the broker refused one of
    /// their outputs, so that a record is dead-lettered once per branch.
    refused: AtomicU64,
}

impl Source {
    pub fn new(event: Event) -> Arc<Source> {
        Arc::new(Source {
            event,
            refused: AtomicU64::new(0),
        })
    }
}

/// Why offsets are being committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The periodic commit (at-least-once: every second; exactly-once: every
    /// `transaction-interval`).
    Periodic,
    /// The partitions are going (revocation, shutdown), after their runners stopped
    /// and their deliveries drained: commit and wait for the answer.
    Final,
    /// The partitions were lost to another member: commit nothing.
    Lost,
}

/// How a commit went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Committed (or nothing to commit).
    Done,
    /// Exactly-once: the transaction was aborted; the partitions must go back to
    /// their committed offsets and process their records again.
    Rewind,
    /// Exactly-once: this instance was fenced; it must drop its work and rejoin.
    Fenced,
}

/// Delivers a record's verdicts, and commits.
pub trait Sink: Send + Sync {
    /// Produces what `verdicts` say and registers the record with `unit`'s tracker.
    /// `Err(Stopped)` when `stop` was signalled while waiting for room; the record
    /// then stays uncommitted.
    fn deliver(
        &self,
        source: &Arc<Source>,
        verdicts: Vec<Verdict>,
        unit: &Arc<PartitionUnit>,
        stop: &Shutdown,
    ) -> Result<(), Stopped>;

    /// The partitions start again after a rewind or a rejoin.
    fn resume(&self) {}

    /// Commits what `units` (every partition of `input` the pipeline holds)
    /// completed.
    fn commit(
        &self,
        consumer: &PipelineConsumer,
        input: &str,
        units: &[&Arc<PartitionUnit>],
        why: Commit,
    ) -> Committed;
}

/// The at-least-once sink: one idempotent producer shared by every pipeline.
pub struct AtLeastOnce {
    pub producer: OutputProducer<RecordTicket>,
    pub health: Arc<Health>,
}

impl Sink for AtLeastOnce {
    fn deliver(
        &self,
        source: &Arc<Source>,
        verdicts: Vec<Verdict>,
        unit: &Arc<PartitionUnit>,
        stop: &Shutdown,
    ) -> Result<(), Stopped> {
        let event = &source.event;
        let deliveries: usize = verdicts.iter().map(Verdict::deliveries).sum();
        unit.tracker.register(event.offset, deliveries as u32);
        if deliveries == 0 {
            unit.done(event);
        }
        for (_, produced) in produced(event, &verdicts) {
            let (record, target) = match &produced {
                Produced::Output(r) => (
                    OutRecord {
                        topic: &r.route.topic,
                        key: r.output.key.as_deref(),
                        value: r.output.value.as_deref(),
                        headers: &r.output.headers,
                    },
                    Target::Output(r.route.clone()),
                ),
                Produced::Letter(letter, branch) => {
                    (letter.as_out(), Target::DeadLetter(branch.clone()))
                }
            };
            let ticket = RecordTicket {
                unit: unit.clone(),
                source: source.clone(),
                target,
            };
            self.producer.send(record, ticket, stop)?;
        }
        Ok(())
    }

    fn commit(
        &self,
        consumer: &PipelineConsumer,
        input: &str,
        units: &[&Arc<PartitionUnit>],
        why: Commit,
    ) -> Committed {
        if why == Commit::Lost {
            return Committed::Done;
        }
        let mut tpl = TopicPartitionList::new();
        let mut taken = Vec::new();
        for unit in units {
            if let Some(next) = unit.tracker.take_commit() {
                let _ = tpl.add_partition_offset(input, unit.partition, Offset::Offset(next));
                taken.push((unit, next));
            }
        }
        if tpl.count() == 0 {
            return Committed::Done;
        }
        let mode = match why {
            Commit::Final => CommitMode::Sync,
            _ => CommitMode::Async,
        };
        if let Err(error) = consumer.commit(&tpl, mode) {
            self.health
                .broker_trouble(format!("commit of {input} failed: {error}"));
            for (unit, next) in taken {
                unit.tracker.commit_failed(next);
            }
        } else if matches!(mode, CommitMode::Sync) {
            self.health.broker_ok();
            tracing::debug!(?tpl, "committed");
        }
        Committed::Done
    }
}

/// One record a verdict asks for.
pub enum Produced<'v> {
    /// An output, to its route.
    Output(&'v Routed),
    /// A dead letter, to the branch's dead-letter topic.
    Letter(OwnedRecord, Arc<BranchInfo>),
}

/// Every record `verdicts` ask for, each with its branch's position.
pub fn produced<'v>(
    event: &'v Event,
    verdicts: &'v [Verdict],
) -> impl Iterator<Item = (usize, Produced<'v>)> + 'v {
    verdicts
        .iter()
        .enumerate()
        .flat_map(move |(branch, verdict)| {
            let records: Vec<Produced<'v>> = match verdict {
                Verdict::Deliver(routed) => routed.iter().map(Produced::Output).collect(),
                Verdict::DeadLetter(failed) => vec![Produced::Letter(
                    dead_letter(event, failed),
                    failed.branch.clone(),
                )],
                Verdict::Refused { branch, message } => vec![Produced::Letter(
                    refused_letter(event, branch, message),
                    branch.clone(),
                )],
            };
            records.into_iter().map(move |p| (branch, p))
        })
}

/// A failed record's dead letter: the original key, value and headers, plus the
/// `weir.*` headers.
pub fn dead_letter(event: &Event, failed: &Failed) -> OwnedRecord {
    letter(
        event,
        &failed.branch,
        failed.reason,
        &failed.failure.error.message(),
        failed.failure.plugin.identity(),
        failed.attempts,
    )
}

/// The dead letter of a record one of whose outputs the broker refused.
pub fn refused_letter(event: &Event, branch: &BranchInfo, message: &str) -> OwnedRecord {
    letter(
        event,
        branch,
        "produce-rejected",
        message,
        &branch.last_plugin,
        1,
    )
}

fn letter(
    event: &Event,
    branch: &BranchInfo,
    reason: &str,
    message: &str,
    plugin: &str,
    attempts: u32,
) -> OwnedRecord {
    let headers: Vec<Header> = DeadLetter {
        reason,
        message,
        source_topic: &event.topic,
        source_partition: event.partition,
        source_offset: event.offset,
        pipeline: &branch.name,
        plugin,
        attempts,
        failed_at: SystemTime::now(),
    }
    .headers(&event.headers);
    OwnedRecord {
        topic: branch.dlq_topic.clone(),
        key: event.key.clone(),
        value: event.value.clone(),
        headers,
    }
}

/// Where a produced record goes.
pub enum Target {
    /// An output topic of a branch.
    Output(Arc<Route>),
    /// A branch's dead-letter topic.
    DeadLetter(Arc<BranchInfo>),
}

/// The ticket of one output or dead letter of a consumed record.
pub struct RecordTicket {
    unit: Arc<PartitionUnit>,
    source: Arc<Source>,
    target: Target,
}

impl Ticket for RecordTicket {
    fn delivered(self) {
        match &self.target {
            Target::Output(route) => route.metrics.ok.inc(),
            Target::DeadLetter(branch) => branch.dlq_metrics.ok.inc(),
        }
        let event = &self.source.event;
        if self.unit.tracker.ack(event.offset) {
            self.unit.done(event);
        }
    }

    fn failed(&self) {
        match &self.target {
            Target::Output(route) => route.metrics.error.inc(),
            Target::DeadLetter(branch) => branch.dlq_metrics.error.inc(),
        }
    }

    fn refused(self, topic: &str, error: &str) -> Refusal<RecordTicket> {
        let Target::Output(route) = &self.target else {
            return Refusal::Keep(self);
        };
        let branch = route.branch.clone();
        let event = &self.source.event;
        let bit = 1u64 << branch.index.min(63);
        if self.source.refused.fetch_or(bit, Ordering::SeqCst) & bit != 0 {
            // Already dead-lettered for another refused output: this one is settled.
            self.delivered_as_settled();
            return Refusal::Settled;
        }
        let message = format!("the broker refused an output to {topic}: {error}");
        tracing::warn!(
            pipeline = %branch.name, partition = event.partition, offset = event.offset,
            reason = "produce-rejected", "dead-lettered: {message}"
        );
        branch
            .metrics
            .dead_lettered(&branch.name, "produce-rejected");
        let record = refused_letter(event, &branch, &message);
        let ticket = RecordTicket {
            unit: self.unit.clone(),
            source: self.source.clone(),
            target: Target::DeadLetter(branch),
        };
        Refusal::DeadLetter(record, ticket)
    }
}

impl RecordTicket {
    /// Counts this delivery as done without a record of its own.
    fn delivered_as_settled(self) {
        let event = &self.source.event;
        if self.unit.tracker.ack(event.offset) {
            self.unit.done(event);
        }
    }
}
