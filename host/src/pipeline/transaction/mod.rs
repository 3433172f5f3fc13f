//! The exactly-once sink: consume-transform-produce in Kafka transactions.
//!
//! One transactional producer per pipeline. Runners produce a record's outputs and
//! dead letters into the open transaction while holding the gate for reading; the
//! consumer thread closes the transaction every `transaction-interval` holding it
//! for writing: it sends the input offsets of everything produced to the
//! transaction with the consumer's group metadata (KIP-447), then commits. Outputs,
//! dead letters and offsets become visible to `read_committed` readers together,
//! or not at all.
//!
//! - A transaction that cannot commit (a delivery failed) is aborted, and the
//!   pipeline rewinds its partitions to the committed offsets: its records are
//!   processed again.
//! - An output the broker refuses aborts the transaction; on the way back its
//!   record is produced alone (between two flushes, nothing else in its batch);
//!   refused alone, the record is dead-lettered as `produce-rejected` on the third
//!   pass. A record weir's own client refuses on the spot (over
//!   `message.max.bytes`) is final at once: the transaction aborts and the record
//!   is dead-lettered on the way back. Any other error from a send (an unknown
//!   topic, a fatal client error) also dooms the transaction: nothing produced
//!   into a transaction goes missing while its input offset commits.
//! - A dead letter its topic refuses is written again cut to the least
//!   (`weir.cut`, see [`super::letters`]).
//! - A fenced producer (another instance owns the partitions, or the coordinator
//!   aborted a transaction that outlived `transaction.timeout.ms`) writes nothing
//!   more: the pipeline drops its work, makes a new producer and rejoins the group.
//!
//! A retry backoff never holds a transaction open: a record is produced only once
//! its verdicts are final, so a long backoff only holds back its own partition's
//! offsets.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Offset;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::TopicPartitionList;

mod context;
mod failure;
mod refusals;
mod rewind;

use self::context::TxnContext;
use self::failure::{ErrorFacts, TxnFailure, classify};
use self::refusals::{Applied, Refusals, TxnTicket, apply_refusals};
use super::letters::{report, trace_writes};
use super::process::Verdict;
use super::sink::{Commit, Committed, Produced, Sink, produced};
use super::unit::{PartitionUnit, Source};
use crate::config::PipelineConfig;
use crate::kafka::consumer::PipelineConsumer;
use crate::kafka::producer::{
    OutRecord, OwnedRecord, Stopped, Trouble, producer_defaults, to_kafka_headers,
};
use crate::policy::Outcome;
use crate::shutdown::Shutdown;
use crate::telemetry::Health;
use crate::telemetry::health::StallWatch;
use crate::telemetry::metrics::TransactionMetrics;
use crate::telemetry::trace::RecordTrace;

/// How long one transactional call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

type TxnProducer = ThreadedProducer<TxnContext>;

/// The open transaction, behind the gate.
struct Open {
    producer: Arc<TxnProducer>,
    /// When its first record was produced.
    since: Option<Instant>,
}

/// The exactly-once sink of one pipeline.
pub struct Transactional {
    pipeline: Arc<str>,
    /// The producer's config, to make a new one after a fence.
    config: ClientConfig,
    /// Runners produce holding it for reading; the committer commits holding it for
    /// writing, so a transaction never commits half a record.
    gate: RwLock<Open>,
    /// Records produced into the open transaction.
    records: AtomicU64,
    /// Set by an abort or a fence until the partitions start again: what runners
    /// still deliver meanwhile would be processed twice, so it is refused.
    halted: AtomicBool,
    doomed: Arc<AtomicBool>,
    refusals: Arc<Refusals>,
    metrics: TransactionMetrics,
    health: Arc<Health>,
    stall: Arc<StallWatch>,
    /// The producer's `message.max.bytes`: dead letters are cut to fit it.
    max_record: usize,
    /// The records of the open transaction, with their timestamps: their
    /// end-to-end latency ends when it commits.
    in_transaction: Mutex<Vec<(Arc<PartitionUnit>, Option<i64>)>>,
    /// The traces of the open transaction's sampled records: their spans end
    /// with it, with its outcome as an event.
    traces: Mutex<Vec<RecordTrace>>,
}

impl Transactional {
    /// Makes the pipeline's transactional producer and opens its first transaction.
    pub fn spawn(
        base: &ClientConfig,
        pipeline: &PipelineConfig,
        metrics: TransactionMetrics,
        health: Arc<Health>,
        stall: Arc<StallWatch>,
        max_record: usize,
    ) -> Result<Transactional, KafkaError> {
        let mut config = producer_defaults();
        config
            .set(
                "transactional.id",
                format!("{}-{:016x}", pipeline.group(), fastrand::u64(..)),
            )
            // A zombie's transaction holds up the next owner's reads until the
            // coordinator aborts it: keep that short (Kafka's default is a minute).
            .set("transaction.timeout.ms", "10000");
        crate::kafka::overlay(&mut config, base);
        let doomed = Arc::new(AtomicBool::new(false));
        let refusals = Arc::new(Refusals::default());
        let name: Arc<str> = pipeline.name().into();
        let producer = new_producer(&config, &name, &health, &stall, &doomed, &refusals)?;
        Ok(Transactional {
            pipeline: name,
            config,
            gate: RwLock::new(Open {
                producer,
                since: None,
            }),
            records: AtomicU64::new(0),
            halted: AtomicBool::new(false),
            doomed,
            refusals,
            metrics,
            health,
            stall,
            max_record,
            in_transaction: Mutex::new(Vec::new()),
            traces: Mutex::new(Vec::new()),
        })
    }

    /// Aborts the open transaction (a rewind or a rejoin follows: deliveries are
    /// refused until then); `Err` when the producer is fenced or failed and must
    /// be replaced.
    fn abort(&self, open: &mut Open) -> Result<(), KafkaError> {
        self.halted.store(true, Ordering::SeqCst);
        let result = open.producer.abort_transaction(CALL_TIMEOUT);
        self.end(open, "transaction.abort");
        self.metrics.aborted();
        result?;
        open.producer.begin_transaction()
    }

    /// Bookkeeping after a commit or an abort.
    fn end(&self, open: &mut Open, outcome: &'static str) {
        if let Some(since) = open.since.take() {
            self.metrics.ended(since.elapsed().as_secs_f64());
        }
        for trace in self
            .traces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            trace.event(outcome, Vec::new);
        }
        self.in_transaction
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.records.store(0, Ordering::SeqCst);
        self.doomed.store(false, Ordering::SeqCst);
    }

    /// Aborts the open transaction of an instance that lost its partitions, and
    /// counts the fence once (an abort that fails replaces the producer, which
    /// counts it).
    fn abort_fenced(&self, open: &mut Open) -> Committed {
        match self.abort(open) {
            Ok(()) => {
                self.metrics.fenced();
                Committed::Fenced
            }
            Err(_) => self.replace(open),
        }
    }

    /// Replaces a fenced or failed producer.
    fn replace(&self, open: &mut Open) -> Committed {
        self.halted.store(true, Ordering::SeqCst);
        self.metrics.fenced();
        match new_producer(
            &self.config,
            &self.pipeline,
            &self.health,
            &self.stall,
            &self.doomed,
            &self.refusals,
        ) {
            Ok(producer) => {
                open.producer = producer;
                self.end(open, "transaction.abort");
            }
            Err(error) => {
                tracing::error!(pipeline = %self.pipeline, %error, "cannot make a new transactional producer; trying again at the next commit");
                self.doomed.store(true, Ordering::SeqCst);
            }
        }
        Committed::Fenced
    }

    /// What is known of `source`'s refusals, applied to its verdicts.
    fn apply_refusals(&self, source: &Source, verdicts: Vec<Verdict>) -> Applied {
        let event = &source.event;
        apply_refusals(self.refusals.known(event.partition, event.offset), verdicts)
    }

    /// Produces every record `verdicts` ask for into the open transaction. A
    /// record the client refuses on the spot dooms the transaction; one it refuses
    /// for its size is also remembered as final, so that the record is
    /// dead-lettered when it comes back.
    fn produce(
        &self,
        producer: &TxnProducer,
        source: &Source,
        applied: &Applied,
        changes: &[OwnedRecord],
        stop: &Shutdown,
    ) -> Result<(), Stopped> {
        let event = &source.event;
        let ticket = |branch, letter, metrics, span| TxnTicket {
            partition: event.partition,
            offset: event.offset,
            branch,
            letter,
            alone: applied.alone,
            metrics,
            span,
        };
        for change in changes {
            if !self.send_one(
                producer,
                event,
                change.as_out(),
                ticket(0, false, None, None),
                stop,
            )? {
                return Ok(());
            }
        }
        for (branch, produced) in produced(source, &applied.verdicts, self.max_record, applied.cut)
        {
            let (record, letter, metrics, span) = match &produced {
                Produced::Output(r) => (r.as_out(), false, r.route.metrics.clone(), r.send.clone()),
                Produced::Letter(letter, branch, span) => (
                    letter.as_out(),
                    true,
                    branch.dlq_metrics.clone(),
                    span.clone(),
                ),
            };
            if !self.send_one(
                producer,
                event,
                record,
                ticket(branch, letter, Some(metrics), span),
                stop,
            )? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Sends one record of `event` into the open transaction; `Ok(false)` when the
    /// client refused it, which dooms the transaction (nothing more is sent).
    fn send_one(
        &self,
        producer: &TxnProducer,
        event: &crate::record::Event,
        record: OutRecord<'_>,
        ticket: TxnTicket,
        stop: &Shutdown,
    ) -> Result<bool, Stopped> {
        let Err(refused) = send(producer, record, Box::new(ticket), stop)? else {
            return Ok(true);
        };
        let (ticket, error) = refused;
        self.doomed.store(true, Ordering::SeqCst);
        let code = error.rdkafka_error_code();
        let trouble = Trouble::of(code);
        if code == Some(RDKafkaErrorCode::State) {
            // The transaction already failed (a delivery was refused): it aborts.
            tracing::debug!(pipeline = %self.pipeline, %error, "the open transaction takes no more records");
        } else {
            tracing::warn!(
                pipeline = %self.pipeline, partition = event.partition, offset = event.offset,
                topic = record.topic, %error,
                "weir's Kafka client refused a record of the open transaction; the transaction is aborted and the record processed again"
            );
        }
        match trouble {
            Trouble::Refused => {
                let refusal = ticket.refusal(record.topic, &error.to_string(), true);
                self.refusals.learn(event.partition, event.offset, refusal);
            }
            Trouble::NotAllowed => self.health.not_allowed(record.topic, &error.to_string()),
            Trouble::Broker => {}
        }
        Ok(false)
    }
}

fn new_producer(
    config: &ClientConfig,
    pipeline: &Arc<str>,
    health: &Arc<Health>,
    stall: &Arc<StallWatch>,
    doomed: &Arc<AtomicBool>,
    refusals: &Arc<Refusals>,
) -> Result<Arc<TxnProducer>, KafkaError> {
    let context = TxnContext {
        pipeline: pipeline.clone(),
        health: health.clone(),
        stall: stall.clone(),
        doomed: doomed.clone(),
        refusals: refusals.clone(),
    };
    let producer: TxnProducer = config.create_with_context(context)?;
    producer.init_transactions(CALL_TIMEOUT)?;
    producer.begin_transaction()?;
    Ok(Arc::new(producer))
}

/// A message the client refused on the spot, with its ticket and why.
type Refused = (Box<TxnTicket>, KafkaError);

/// Enqueues one message, waiting while the local queue is full. `Ok(Err(_))`: the
/// client refused it (too large, unknown topic, a transaction in an error state).
fn send(
    producer: &TxnProducer,
    record: OutRecord<'_>,
    ticket: Box<TxnTicket>,
    stop: &Shutdown,
) -> Result<Result<(), Refused>, Stopped> {
    let mut base =
        BaseRecord::with_opaque_to(record.topic, ticket).headers(to_kafka_headers(record.headers));
    if let Some(partition) = record.partition {
        base = base.partition(partition);
    }
    if let Some(key) = record.key {
        base = base.key(key);
    }
    if let Some(value) = record.value {
        base = base.payload(value);
    }
    loop {
        match producer.send(base) {
            Ok(()) => return Ok(Ok(())),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                base = back;
                if !stop.sleep(Duration::from_millis(5)) {
                    return Err(Stopped);
                }
            }
            Err((error, back)) => return Ok(Err((back.delivery_opaque, error))),
        }
    }
}

impl Sink for Transactional {
    fn resume(&self) {
        self.halted.store(false, Ordering::SeqCst);
    }

    fn deliver(
        &self,
        source: &Arc<Source>,
        verdicts: Vec<Verdict>,
        mut changes: Vec<OwnedRecord>,
        unit: &Arc<PartitionUnit>,
        stop: &Shutdown,
    ) -> Result<Outcome, Stopped> {
        let mut applied = if source.timer {
            // A fired timer has no offset that refusals could be known by.
            apply_refusals(None, verdicts)
        } else {
            self.apply_refusals(source, verdicts)
        };
        trace_writes(source.trace.as_ref(), &mut applied.verdicts, &mut changes);
        // The record's offset is registered before the gate opens again, so that no
        // transaction commits its outputs without its offset.
        let register = || {
            self.records.fetch_add(1, Ordering::SeqCst);
            if let Some(trace) = source.trace.as_ref().filter(|t| t.sampled()) {
                self.traces
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(trace.clone());
            }
            if source.timer {
                return;
            }
            unit.tracker.register(source.event.offset, 0);
            self.in_transaction
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((unit.clone(), source.event.timestamp_ms));
        };
        if applied.alone {
            // Nothing else may share its batches: hold the gate exclusively and
            // flush around it.
            let mut open = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            if self.halted.load(Ordering::SeqCst) {
                return Err(Stopped);
            }
            open.since.get_or_insert_with(Instant::now);
            let _ = open.producer.flush(CALL_TIMEOUT);
            self.produce(&open.producer, source, &applied, &changes, stop)?;
            let _ = open.producer.flush(CALL_TIMEOUT);
            register();
        } else {
            let open = self.gate.read().unwrap_or_else(PoisonError::into_inner);
            if self.halted.load(Ordering::SeqCst) {
                return Err(Stopped);
            }
            self.produce(&open.producer, source, &applied, &changes, stop)?;
            register();
        }
        Ok(report(
            &source.event,
            source.trace.as_ref(),
            &applied.verdicts,
        ))
    }

    fn in_flight(&self, _units: &[&Arc<PartitionUnit>]) -> usize {
        match self.gate.try_read() {
            Ok(open) => open.producer.in_flight_count().max(0) as usize,
            // A record is being produced alone, between two flushes: in flight.
            Err(_) => 1,
        }
    }

    fn commit(
        &self,
        consumer: &PipelineConsumer,
        input: &str,
        units: &[&Arc<PartitionUnit>],
        why: Commit,
    ) -> Committed {
        let mut open = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        if why == Commit::Lost {
            tracing::warn!(pipeline = %self.pipeline, "fenced: this instance lost its partitions to another member; its open transaction is aborted and it writes nothing more for them");
            return self.abort_fenced(&mut open);
        }
        if self.doomed.load(Ordering::SeqCst) {
            return self.abort_and_rewind(&mut open, "a delivery in the transaction failed");
        }
        let mut offsets = TopicPartitionList::new();
        let mut taken = Vec::new();
        for unit in units {
            if let Some(next) = unit.tracker.take_commit() {
                let _ = offsets.add_partition_offset(input, unit.partition, Offset::Offset(next));
                taken.push((unit, next));
            }
        }
        if offsets.count() == 0 && self.records.load(Ordering::SeqCst) == 0 {
            return Committed::Done;
        }
        open.since.get_or_insert_with(Instant::now);
        if offsets.count() > 0 {
            let Some(group) = consumer.group_metadata() else {
                return self.abort_and_rewind(&mut open, "the consumer has no group metadata");
            };
            if let Err(error) =
                open.producer
                    .send_offsets_to_transaction(&offsets, &group, CALL_TIMEOUT)
            {
                return self.failed(&mut open, &error, "sending the offsets to the transaction");
            }
        }
        let mut retried = 0;
        loop {
            match open.producer.commit_transaction(CALL_TIMEOUT) {
                Ok(()) => {
                    self.metrics.committed();
                    for (unit, next) in &taken {
                        unit.committed(*next);
                    }
                    let committed: Vec<(i32, i64)> =
                        taken.iter().map(|(u, next)| (u.partition, *next)).collect();
                    self.refusals.forget(&committed);
                    // Visible to read_committed readers now: the end-to-end latency.
                    for (unit, timestamp_ms) in self
                        .in_transaction
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .drain(..)
                    {
                        unit.done_at(timestamp_ms);
                    }
                    self.end(&mut open, "transaction.commit");
                    self.health.broker_ok();
                    tracing::trace!(pipeline = %self.pipeline, ?offsets, "transaction committed");
                    if let Err(error) = open.producer.begin_transaction() {
                        tracing::error!(pipeline = %self.pipeline, %error, "cannot begin a transaction");
                        return self.replace(&mut open);
                    }
                    return Committed::Done;
                }
                Err(error) => {
                    let facts = ErrorFacts::of(&error);
                    if classify(facts, retried < 3) == TxnFailure::Retry {
                        retried += 1;
                        self.health.broker_trouble(format!(
                            "commit of a transaction of {} is slow: {error}",
                            self.pipeline
                        ));
                        continue;
                    }
                    return self.failed(&mut open, &error, "committing the transaction");
                }
            }
        }
    }
}

impl Transactional {
    fn abort_and_rewind(&self, open: &mut Open, why: &str) -> Committed {
        tracing::warn!(pipeline = %self.pipeline, "aborting the open transaction ({why}); its records are processed again");
        match self.abort(open) {
            Ok(()) => Committed::Rewind,
            Err(error) => {
                tracing::warn!(pipeline = %self.pipeline, %error, "fenced: the abort failed; making a new producer");
                self.replace(open)
            }
        }
    }

    /// A transactional call failed: a fenced producer is replaced, a lost
    /// generation rejoins, anything else aborts the transaction.
    fn failed(&self, open: &mut Open, error: &KafkaError, doing: &str) -> Committed {
        match classify(ErrorFacts::of(error), false) {
            TxnFailure::Replace | TxnFailure::Retry => {
                tracing::warn!(pipeline = %self.pipeline, %error, "fenced: {doing} failed for good; this instance writes nothing more with this producer, drops its work and rejoins the group");
                self.replace(open)
            }
            TxnFailure::Rejoin => {
                tracing::warn!(pipeline = %self.pipeline, %error, "fenced: another member owns the partitions now; the open transaction is aborted and this instance rejoins the group");
                self.abort_fenced(open)
            }
            TxnFailure::Abort => self.abort_and_rewind(open, &format!("{doing} failed: {error}")),
        }
    }
}
