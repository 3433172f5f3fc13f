//! The sink turns a record's verdicts into produce calls and registers the record
//! with its partition's offset tracker. It is where the two delivery modes differ:
//!
//! - at-least-once ([`AtLeastOnce`]): the record waits in the tracker for every
//!   output and dead letter to be acknowledged; the consumer commits offsets that
//!   have nothing pending before them;
//! - exactly-once ([`super::transaction`]): records are produced into the open
//!   transaction and the record counts as done at once; the transaction commits
//!   them together with the offsets.
//!
//! Either way the sink reports the record's final verdicts once ([`report`]): a
//! refusal it already knows of turns a branch's outputs into a dead letter before
//! anything is counted or logged.

use std::sync::Arc;

use rdkafka::Offset;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::topic_partition_list::TopicPartitionList;

use super::letters::{dead_letter, dead_lettered, fit, refused_letter, report, trace_writes};
use super::process::{Routed, Verdict};
use super::snapshot::{BranchInfo, Route};
use super::unit::{PartitionUnit, Source};
use crate::kafka::consumer::PipelineConsumer;
use crate::kafka::producer::{
    OutRecord, OutputProducer, OwnedRecord, Replacement, Stopped, Ticket, Trouble,
};
use crate::outcome::DlqReason;
use crate::policy::Outcome;
use crate::shutdown::Shutdown;
use crate::telemetry::Health;
use crate::telemetry::trace::SendSpan;

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
    /// Produces what `verdicts` say and the record's state `changes` (changelog
    /// records), registers the record with `unit`'s tracker and reports its dead
    /// letters; returns how the record went, for the circuit. A fired timer's
    /// source has no offset to register: its changes (its own removal) commit with
    /// its outputs. `Err(Stopped)` when `stop` was signalled while waiting for
    /// room; the record then stays uncommitted.
    fn deliver(
        &self,
        source: &Arc<Source>,
        verdicts: Vec<Verdict>,
        changes: Vec<OwnedRecord>,
        unit: &Arc<PartitionUnit>,
        stop: &Shutdown,
    ) -> Result<Outcome, Stopped>;

    /// At-least-once: sends the changelog records of fired timers whose outputs
    /// are acknowledged.
    fn send_ready(&self, unit: &Arc<PartitionUnit>, stop: &Shutdown) -> Result<(), Stopped> {
        let _ = (unit, stop);
        Ok(())
    }

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

    /// Records of `units` handed to Kafka and not acknowledged yet.
    fn in_flight(&self, units: &[&Arc<PartitionUnit>]) -> usize {
        units.iter().map(|u| u.tracker.in_flight()).sum()
    }
}

/// Where the at-least-once sink hands its records: weir's producer, or a unit
/// test's recorder.
pub trait Produce<T>: Send + Sync {
    fn send(&self, record: OutRecord<'_>, ticket: T, stop: &Shutdown) -> Result<(), Stopped>;
}

impl<T: Ticket> Produce<T> for OutputProducer<T> {
    fn send(&self, record: OutRecord<'_>, ticket: T, stop: &Shutdown) -> Result<(), Stopped> {
        OutputProducer::send(self, record, ticket, stop)
    }
}

/// The at-least-once sink: one idempotent producer shared by every pipeline.
pub struct AtLeastOnce<P = OutputProducer<RecordTicket>> {
    pub producer: P,
    pub health: Arc<Health>,
    /// The producer's `message.max.bytes`: dead letters are cut to fit it.
    pub max_record: usize,
}

impl<P: Produce<RecordTicket>> Sink for AtLeastOnce<P> {
    fn deliver(
        &self,
        source: &Arc<Source>,
        mut verdicts: Vec<Verdict>,
        mut changes: Vec<OwnedRecord>,
        unit: &Arc<PartitionUnit>,
        stop: &Shutdown,
    ) -> Result<Outcome, Stopped> {
        let event = &source.event;
        trace_writes(source.trace.as_ref(), &mut verdicts, &mut changes);
        let outcome = report(event, source.trace.as_ref(), &verdicts);
        let deliveries: usize = verdicts.iter().map(Verdict::deliveries).sum();
        if !source.timer {
            let all = deliveries + changes.len();
            unit.tracker.register(event.offset, all as u32);
            if all == 0 {
                unit.done(event);
            }
        }
        // The changes wait for the outputs (and go out in order): send_ready.
        unit.hold(source, deliveries, changes);
        for (_, produced) in produced(source, &verdicts, self.max_record, 0) {
            let (record, target, span) = match &produced {
                Produced::Output(r) => {
                    (r.as_out(), Target::Output(r.route.clone()), r.send.clone())
                }
                Produced::Letter(letter, branch, span) => (
                    letter.as_out(),
                    Target::DeadLetter {
                        branch: branch.clone(),
                        cut: false,
                    },
                    span.clone(),
                ),
            };
            let ticket = RecordTicket {
                unit: unit.clone(),
                source: source.clone(),
                target,
                max_record: self.max_record,
                span,
            };
            self.producer.send(record, ticket, stop)?;
        }
        Ok(outcome)
    }

    fn send_ready(&self, unit: &Arc<PartitionUnit>, stop: &Shutdown) -> Result<(), Stopped> {
        for (source, changes) in unit.take_ready() {
            for change in &changes {
                let ticket = RecordTicket {
                    unit: unit.clone(),
                    source: source.clone(),
                    target: Target::Changelog,
                    max_record: self.max_record,
                    span: None,
                };
                self.producer.send(change.as_out(), ticket, stop)?;
            }
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

impl Routed {
    pub fn as_out(&self) -> OutRecord<'_> {
        OutRecord {
            topic: &self.route.topic,
            partition: None,
            key: self.output.key.as_deref(),
            value: self.output.value.as_deref(),
            headers: &self.output.headers,
        }
    }
}

/// One record a verdict asks for.
pub enum Produced<'v> {
    /// An output, to its route.
    Output(&'v Routed),
    /// A dead letter, to the branch's dead-letter topic, with its send span.
    Letter(OwnedRecord, Arc<BranchInfo>, Option<SendSpan>),
}

/// Every record `verdicts` ask for, each with its branch's position. Dead letters
/// are cut to fit in `max` bytes; those of the branches in the bit set `cut` (their
/// dead-letter topic refused the whole letter before) are cut to the least.
pub fn produced<'v>(
    source: &'v Source,
    verdicts: &'v [Verdict],
    max: usize,
    cut: u64,
) -> impl Iterator<Item = (usize, Produced<'v>)> + 'v {
    let (event, trace) = (&source.event, source.trace.as_ref());
    verdicts
        .iter()
        .enumerate()
        .flat_map(move |(branch, verdict)| {
            let max = if cut & (1u64 << branch.min(63)) != 0 {
                0
            } else {
                max
            };
            let records: Vec<Produced<'v>> = match verdict {
                Verdict::Deliver(routed) => routed.iter().map(Produced::Output).collect(),
                Verdict::DeadLetter(failed) => {
                    let (letter, span) = dead_letter(event, trace, failed, max);
                    vec![Produced::Letter(letter, failed.branch.clone(), span)]
                }
                Verdict::Refused { branch, message } => {
                    let (letter, span) = refused_letter(event, trace, branch, message, max);
                    vec![Produced::Letter(letter, branch.clone(), span)]
                }
            };
            records.into_iter().map(move |p| (branch, p))
        })
}

/// Where a produced record goes.
pub enum Target {
    /// An output topic of a branch.
    Output(Arc<Route>),
    /// A branch's dead-letter topic; `cut` once the broker refused the whole letter.
    DeadLetter { branch: Arc<BranchInfo>, cut: bool },
    /// A stateful slot's changelog topic.
    Changelog,
}

/// The ticket of one output or dead letter of a consumed record.
pub struct RecordTicket {
    unit: Arc<PartitionUnit>,
    source: Arc<Source>,
    target: Target,
    /// The producer's `message.max.bytes`, for a dead letter made in a callback.
    max_record: usize,
    /// Its send span (sampled records only).
    span: Option<SendSpan>,
}

impl Ticket for RecordTicket {
    fn delivered(self) {
        if let Some(span) = &self.span {
            span.delivered();
        }
        match &self.target {
            Target::Output(route) => route.metrics.delivered(),
            Target::DeadLetter { branch, .. } => branch.dlq_metrics.delivered(),
            Target::Changelog => {}
        }
        self.unit.stall.acked();
        self.settled();
    }

    fn failed(&self, trouble: Trouble) {
        if let Some(span) = &self.span {
            span.failed(trouble.as_str());
        }
        match &self.target {
            Target::Output(route) => route.metrics.failed(),
            Target::DeadLetter { branch, .. } => branch.dlq_metrics.failed(),
            Target::Changelog => {}
        }
        if trouble != Trouble::Broker {
            // An answer: the producer is alive, whatever becomes of the record.
            self.unit.stall.answered();
        }
    }

    fn refused(self, record: OwnedRecord, error: &str) -> Replacement<RecordTicket> {
        let event = &self.source.event;
        let trace = self.source.trace.as_ref();
        if let Some(span) = &self.span {
            span.refused(error);
        }
        match &self.target {
            Target::Output(route) => {
                let branch = route.branch.clone();
                if !self.source.refuse_once(branch.index) {
                    // Already dead-lettered for another refused output: settled.
                    self.settled();
                    return Replacement::Settled;
                }
                let message = format!("the broker refused an output to {}: {error}", record.topic);
                dead_lettered(
                    event,
                    trace,
                    &branch,
                    DlqReason::ProduceRejected,
                    None,
                    1,
                    &message,
                );
                let (letter, span) =
                    refused_letter(event, trace, &branch, &message, self.max_record);
                let ticket = RecordTicket {
                    span,
                    ..self.retarget(branch, false)
                };
                Replacement::Send(letter, ticket)
            }
            Target::DeadLetter { branch, cut: false } => {
                tracing::warn!(
                    pipeline = %branch.name, partition = event.partition, offset = event.offset,
                    topic = %record.topic, %error,
                    "the dead-letter topic refused a dead letter; it is written without the source's value, headers and key (weir.cut), and `weir dlq replay` reads the original from the source topic"
                );
                let branch = branch.clone();
                Replacement::Send(fit(record, 0), self.retarget(branch, true))
            }
            Target::DeadLetter { cut: true, .. } => Replacement::Keep(record, self),
            Target::Changelog => {
                tracing::error!(
                    partition = event.partition, topic = %record.topic, %error,
                    "the changelog topic refuses a state change; it is kept and sent again (check the topic's max.message.bytes against limits.state-value)"
                );
                Replacement::Keep(record, self)
            }
        }
    }
}

impl RecordTicket {
    /// This ticket's record and source, going to `branch`'s dead-letter topic.
    fn retarget(self, branch: Arc<BranchInfo>, cut: bool) -> RecordTicket {
        RecordTicket {
            target: Target::DeadLetter { branch, cut },
            ..self
        }
    }

    /// Counts this delivery as done.
    fn settled(self) {
        if !matches!(self.target, Target::Changelog) {
            // One output less between the record and its held changes.
            let _ = self.source.outputs_left.fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            );
        }
        if !self.source.timer {
            let event = &self.source.event;
            if self.unit.tracker.ack(event.offset) {
                self.unit.done(event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::policy::dlq::header;
    use crate::record::{Event, Header, Output};
    use crate::telemetry::Metrics;

    /// Keeps what the sink sends, with its ticket, for the test to settle.
    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<(OwnedRecord, RecordTicket)>>,
    }

    impl Produce<RecordTicket> for Recorder {
        fn send(
            &self,
            record: OutRecord<'_>,
            ticket: RecordTicket,
            _stop: &Shutdown,
        ) -> Result<(), Stopped> {
            let owned = OwnedRecord {
                topic: record.topic.to_owned(),
                partition: record.partition,
                key: record.key.map(<[u8]>::to_vec),
                value: record.value.map(<[u8]>::to_vec),
                headers: record.headers.to_vec(),
            };
            self.sent.lock().unwrap().push((owned, ticket));
            Ok(())
        }
    }

    impl Recorder {
        fn take(&self) -> Vec<(OwnedRecord, RecordTicket)> {
            std::mem::take(&mut *self.sent.lock().unwrap())
        }
    }

    struct Fixture {
        sink: AtLeastOnce<Recorder>,
        unit: Arc<PartitionUnit>,
        branch: Arc<BranchInfo>,
        route: Arc<Route>,
    }

    fn fixture() -> Fixture {
        let metrics = Metrics::new();
        let health = Arc::new(Health::default());
        let branch = Arc::new(BranchInfo {
            name: "ui-sync".into(),
            index: 0,
            dlq_topic: "in.ui-sync.dlq".into(),
            dlq_metrics: metrics.route("ui-sync", "in.ui-sync.dlq"),
            last_plugin: "projector sha256:00".into(),
            dead_letters: metrics.dead_letters("ui-sync"),
        });
        let route = Arc::new(Route {
            topic: "updates".into(),
            metrics: metrics.route("ui-sync", "updates"),
            branch: branch.clone(),
        });
        let unit = Arc::new(PartitionUnit::new(
            2,
            metrics.pipeline("todo").latency().clone(),
            health.stall_watch("todo"),
            None,
        ));
        Fixture {
            sink: AtLeastOnce {
                producer: Recorder::default(),
                health,
                max_record: 1_000_000,
            },
            unit,
            branch,
            route,
        }
    }

    fn source(offset: i64, value: &[u8]) -> Arc<Source> {
        Source::new(
            Event {
                topic: "in".into(),
                partition: 2,
                offset,
                timestamp_ms: None,
                key: Some(b"k".to_vec()),
                value: Some(value.to_vec()),
                headers: vec![Header {
                    key: "trace".into(),
                    value: b"t".to_vec(),
                }],
            },
            None,
        )
    }

    fn deliver(route: &Arc<Route>, values: &[&str]) -> Verdict {
        Verdict::Deliver(
            values
                .iter()
                .map(|v| Routed {
                    send: None,
                    route: route.clone(),
                    output: Output {
                        to: "task-updates".into(),
                        key: Some(b"k".to_vec()),
                        value: Some(v.as_bytes().to_vec()),
                        headers: Vec::new(),
                    },
                })
                .collect(),
        )
    }

    fn header_of<'r>(record: &'r OwnedRecord, key: &str) -> Option<&'r str> {
        record
            .headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| std::str::from_utf8(&h.value).unwrap())
    }

    #[test]
    fn an_offset_commits_only_once_every_output_is_acknowledged() {
        let f = fixture();
        let stop = Shutdown::new();
        let outcome = f
            .sink
            .deliver(
                &source(10, b"in"),
                vec![deliver(&f.route, &["a", "b"])],
                Vec::new(),
                &f.unit,
                &stop,
            )
            .unwrap();
        assert_eq!(outcome, Outcome::Delivered);
        let sent = f.sink.producer.take();
        let topics: Vec<&str> = sent.iter().map(|(r, _)| r.topic.as_str()).collect();
        assert_eq!(topics, ["updates", "updates"]);
        assert_eq!(f.unit.tracker.in_flight(), 1);
        let mut tickets = sent.into_iter().map(|(_, t)| t);
        tickets.next().unwrap().delivered();
        assert_eq!(
            f.unit.tracker.take_commit(),
            None,
            "one output still pending"
        );
        tickets.next().unwrap().delivered();
        assert_eq!(f.unit.tracker.take_commit(), Some(11));
    }

    /// At-least-once: a record's state changes go to the changelog only once its
    /// outputs are acknowledged (a crash in between replays it with the state it
    /// first saw), in the partition's order, and its offset waits for them too.
    #[test]
    fn a_records_changes_wait_for_its_outputs_and_go_in_order() {
        let f = fixture();
        let stop = Shutdown::new();
        let change = |value: &[u8]| OwnedRecord {
            topic: "changelog".into(),
            partition: Some(2),
            key: Some(b"S".to_vec()),
            value: Some(value.to_vec()),
            headers: Vec::new(),
        };
        f.sink
            .deliver(
                &source(10, b"in"),
                vec![deliver(&f.route, &["a"])],
                vec![change(b"first")],
                &f.unit,
                &stop,
            )
            .unwrap();
        // A later record without outputs: its change queues behind the first's.
        f.sink
            .deliver(
                &source(11, b"in"),
                vec![deliver(&f.route, &[])],
                vec![change(b"second")],
                &f.unit,
                &stop,
            )
            .unwrap();
        let outputs = f.sink.producer.take();
        assert_eq!(outputs.len(), 1, "only the output goes out");
        f.sink.send_ready(&f.unit, &stop).unwrap();
        assert!(f.sink.producer.take().is_empty(), "the changes wait");
        for (_, ticket) in outputs {
            ticket.delivered();
        }
        assert_eq!(
            f.unit.tracker.take_commit(),
            None,
            "the changes are not acknowledged"
        );
        f.sink.send_ready(&f.unit, &stop).unwrap();
        let changes = f.sink.producer.take();
        let values: Vec<&[u8]> = changes
            .iter()
            .map(|(r, _)| r.value.as_deref().unwrap())
            .collect();
        assert_eq!(values, [&b"first"[..], b"second"]);
        assert!(changes.iter().all(|(r, _)| r.partition == Some(2)));
        for (_, ticket) in changes {
            ticket.delivered();
        }
        assert_eq!(f.unit.tracker.take_commit(), Some(12));
    }

    #[test]
    fn a_refused_output_dead_letters_its_source_once_per_branch() {
        let f = fixture();
        let stop = Shutdown::new();
        f.sink
            .deliver(
                &source(10, b"in"),
                vec![deliver(&f.route, &["a", "b"])],
                Vec::new(),
                &f.unit,
                &stop,
            )
            .unwrap();
        let mut sent = f.sink.producer.take().into_iter();
        let (first, ticket) = sent.next().unwrap();
        let Replacement::Send(letter, letter_ticket) = ticket.refused(first, "too large") else {
            panic!("a refused output is replaced by a dead letter");
        };
        assert_eq!(letter.topic, "in.ui-sync.dlq");
        assert_eq!(header_of(&letter, header::REASON), Some("produce-rejected"));
        assert!(
            header_of(&letter, header::MESSAGE)
                .unwrap()
                .contains("too large")
        );
        assert_eq!(
            letter.value.as_deref(),
            Some(&b"in"[..]),
            "the source record"
        );
        assert_eq!(header_of(&letter, "trace"), Some("t"));
        // The branch's other refused output is settled by the same dead letter.
        let (second, ticket) = sent.next().unwrap();
        assert!(matches!(
            ticket.refused(second, "too large"),
            Replacement::Settled
        ));
        assert_eq!(
            f.unit.tracker.take_commit(),
            None,
            "the dead letter is pending"
        );
        letter_ticket.delivered();
        assert_eq!(f.unit.tracker.take_commit(), Some(11));
        assert_eq!(
            f.branch.dead_letters.count(DlqReason::ProduceRejected),
            1,
            "counted once"
        );
    }

    #[test]
    fn a_refused_dead_letter_is_cut_then_kept() {
        let f = fixture();
        let stop = Shutdown::new();
        let refused = Verdict::Refused {
            branch: f.branch.clone(),
            message: "the broker refused an output".into(),
        };
        let outcome = f
            .sink
            .deliver(
                &source(10, &[7; 5000]),
                vec![refused],
                Vec::new(),
                &f.unit,
                &stop,
            )
            .unwrap();
        assert_eq!(outcome, Outcome::DeadLettered);
        let (letter, ticket) = f.sink.producer.take().pop().unwrap();
        assert_eq!(letter.value.as_ref().map(Vec::len), Some(5000));
        let Replacement::Send(cut, ticket) = ticket.refused(letter, "too large for the DLQ") else {
            panic!("a refused dead letter is written again, cut");
        };
        assert_eq!(header_of(&cut, header::CUT), Some("value,headers,key"));
        assert_eq!(header_of(&cut, header::SOURCE_OFFSET), Some("10"));
        assert!(matches!(
            ticket.refused(cut, "still"),
            Replacement::Keep(..)
        ));
    }

    #[test]
    fn a_dead_letter_over_the_clients_limit_is_cut_before_it_is_sent() {
        let mut f = fixture();
        f.sink.max_record = 2_000;
        let stop = Shutdown::new();
        let refused = Verdict::Refused {
            branch: f.branch.clone(),
            message: "refused".into(),
        };
        f.sink
            .deliver(
                &source(3, &[7; 5000]),
                vec![refused],
                Vec::new(),
                &f.unit,
                &stop,
            )
            .unwrap();
        let (letter, _) = f.sink.producer.take().pop().unwrap();
        assert_eq!(header_of(&letter, header::CUT), Some("value"));
        assert_eq!(letter.value, None);
        assert_eq!(
            header_of(&letter, "trace"),
            Some("t"),
            "the source's headers kept"
        );
    }
}
