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
//!   pass.
//! - A fenced producer (another instance owns the partitions, or the coordinator
//!   aborted a transaction that outlived `transaction.timeout.ms`) writes nothing
//!   more: the pipeline drops its work, makes a new producer and rejoins the group.
//!
//! A retry backoff never holds a transaction open: a record is produced only once
//! its verdicts are final, so a long backoff only holds back its own partition's
//! offsets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Offset;
use rdkafka::client::ClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::TopicPartitionList;

use super::process::Verdict;
use super::sink::{Commit, Committed, PartitionUnit, Produced, Sink, Source, produced};
use crate::config::PipelineConfig;
use crate::kafka::consumer::PipelineConsumer;
use crate::kafka::producer::{OutRecord, Stopped, Trouble, producer_defaults, to_kafka_headers};
use crate::shutdown::Shutdown;
use crate::telemetry::Health;
use crate::telemetry::metrics::TransactionMetrics;

/// How long one transactional call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the broker said about a record's refused output, by (partition, offset).
#[derive(Debug, Clone, PartialEq)]
enum Refusal {
    /// Refused in a batch: produce the record alone next time.
    Suspect { branch: usize },
    /// Refused alone: dead-letter the record.
    Final {
        branch: usize,
        topic: String,
        error: String,
    },
}

/// Which record a produced message belongs to.
struct TxnTicket {
    partition: i32,
    offset: i64,
    branch: usize,
    /// Produced alone, between two flushes.
    alone: bool,
}

/// The transactional producer's callbacks.
struct TxnContext {
    pipeline: Arc<str>,
    health: Arc<Health>,
    /// A delivery failed: the open transaction can only be aborted.
    doomed: Arc<AtomicBool>,
    refusals: Arc<Mutex<HashMap<(i32, i64), Refusal>>>,
}

impl ClientContext for TxnContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure) => {
                self.health
                    .broker_trouble(format!("producer of {}: {reason}", self.pipeline));
            }
            Some(RDKafkaErrorCode::Fatal) => {
                // Handled where the transaction is committed: the producer is replaced.
                tracing::debug!(pipeline = %self.pipeline, reason, "transactional producer: fatal error");
                self.doomed.store(true, Ordering::SeqCst);
            }
            _ => tracing::warn!(pipeline = %self.pipeline, %error, reason, "producer error"),
        }
    }
}

impl ProducerContext for TxnContext {
    type DeliveryOpaque = Box<TxnTicket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<TxnTicket>) {
        let Err((error, message)) = result else {
            self.health.broker_ok();
            return;
        };
        use rdkafka::message::Message;
        self.doomed.store(true, Ordering::SeqCst);
        let code = error.rdkafka_error_code();
        if matches!(
            code,
            Some(
                RDKafkaErrorCode::PurgeQueue
                    | RDKafkaErrorCode::PurgeInflight
                    | RDKafkaErrorCode::State
            )
        ) {
            // A consequence of an abort, not a verdict on the record.
            return;
        }
        let topic = message.topic();
        let trouble = Trouble::of(code);
        if trouble != Trouble::Broker {
            self.health.delivery_refused();
        }
        match trouble {
            Trouble::Refused => {
                let refusal = if ticket.alone {
                    Refusal::Final {
                        branch: ticket.branch,
                        topic: topic.to_owned(),
                        error: error.to_string(),
                    }
                } else {
                    Refusal::Suspect {
                        branch: ticket.branch,
                    }
                };
                self.refusals
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert((ticket.partition, ticket.offset), refusal);
            }
            Trouble::NotAllowed => self.health.not_allowed(topic, &error.to_string()),
            Trouble::Broker => self
                .health
                .broker_trouble(format!("delivery to {topic} failed: {error}")),
        }
    }
}

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
    refusals: Arc<Mutex<HashMap<(i32, i64), Refusal>>>,
    metrics: TransactionMetrics,
    health: Arc<Health>,
}

fn transaction_error(error: &KafkaError) -> Option<&rdkafka::error::RDKafkaError> {
    match error {
        KafkaError::Transaction(e) => Some(e),
        _ => None,
    }
}

impl Transactional {
    /// Makes the pipeline's transactional producer and opens its first transaction.
    pub fn spawn(
        base: &ClientConfig,
        pipeline: &PipelineConfig,
        metrics: TransactionMetrics,
        health: Arc<Health>,
        _stop: Shutdown,
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
        let refusals = Arc::new(Mutex::new(HashMap::new()));
        let name: Arc<str> = pipeline.name().into();
        let producer = new_producer(&config, &name, &health, &doomed, &refusals)?;
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
        })
    }

    /// Aborts the open transaction (a rewind or a rejoin follows: deliveries are
    /// refused until then); `Err` when the producer is fenced or failed and must
    /// be replaced.
    fn abort(&self, open: &mut Open) -> Result<(), KafkaError> {
        self.halted.store(true, Ordering::SeqCst);
        let result = open.producer.abort_transaction(CALL_TIMEOUT);
        self.end(open);
        self.metrics.aborted.inc();
        result?;
        open.producer.begin_transaction()
    }

    /// Bookkeeping after a commit or an abort.
    fn end(&self, open: &mut Open) {
        if let Some(since) = open.since.take() {
            self.metrics.duration.observe(since.elapsed().as_secs_f64());
        }
        self.records.store(0, Ordering::SeqCst);
        self.doomed.store(false, Ordering::SeqCst);
    }

    /// Replaces a fenced or failed producer.
    fn replace(&self, open: &mut Open) -> Committed {
        self.halted.store(true, Ordering::SeqCst);
        self.metrics.fenced.inc();
        match new_producer(
            &self.config,
            &self.pipeline,
            &self.health,
            &self.doomed,
            &self.refusals,
        ) {
            Ok(producer) => {
                open.producer = producer;
                self.end(open);
            }
            Err(error) => {
                tracing::error!(pipeline = %self.pipeline, %error, "cannot make a new transactional producer; trying again at the next commit");
                self.doomed.store(true, Ordering::SeqCst);
            }
        }
        Committed::Fenced
    }

    /// The verdicts with a refused record's branch turned into a dead letter.
    fn apply_refusals(&self, source: &Source, verdicts: Vec<Verdict>) -> (Vec<Verdict>, bool) {
        let event = &source.event;
        let refusal = self
            .refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(event.partition, event.offset))
            .cloned();
        match refusal {
            None => (verdicts, false),
            Some(Refusal::Suspect { .. }) => (verdicts, true),
            Some(Refusal::Final {
                branch,
                topic,
                error,
            }) => {
                let verdicts = verdicts
                    .into_iter()
                    .enumerate()
                    .map(|(b, verdict)| match verdict {
                        Verdict::Deliver(routed) if b == branch => {
                            let Some(first) = routed.first() else {
                                return Verdict::Deliver(routed);
                            };
                            Verdict::Refused {
                                branch: first.route.branch.clone(),
                                message: format!(
                                    "the broker refused an output to {topic}: {error}"
                                ),
                            }
                        }
                        other => other,
                    })
                    .collect();
                (verdicts, false)
            }
        }
    }

    fn produce(
        &self,
        producer: &TxnProducer,
        source: &Source,
        verdicts: &[Verdict],
        alone: bool,
        stop: &Shutdown,
    ) -> Result<(), Stopped> {
        let event = &source.event;
        for (branch, produced) in produced(event, verdicts) {
            let ticket = Box::new(TxnTicket {
                partition: event.partition,
                offset: event.offset,
                branch,
                alone,
            });
            let record = match &produced {
                Produced::Output(r) => OutRecord {
                    topic: &r.route.topic,
                    key: r.output.key.as_deref(),
                    value: r.output.value.as_deref(),
                    headers: &r.output.headers,
                },
                Produced::Letter(letter, _) => letter.as_out(),
            };
            send(producer, record, ticket, stop)?;
        }
        Ok(())
    }
}

fn new_producer(
    config: &ClientConfig,
    pipeline: &Arc<str>,
    health: &Arc<Health>,
    doomed: &Arc<AtomicBool>,
    refusals: &Arc<Mutex<HashMap<(i32, i64), Refusal>>>,
) -> Result<Arc<TxnProducer>, KafkaError> {
    let context = TxnContext {
        pipeline: pipeline.clone(),
        health: health.clone(),
        doomed: doomed.clone(),
        refusals: refusals.clone(),
    };
    let producer: TxnProducer = config.create_with_context(context)?;
    producer.init_transactions(CALL_TIMEOUT)?;
    producer.begin_transaction()?;
    Ok(Arc::new(producer))
}

/// Enqueues one message, waiting while the local queue is full.
fn send(
    producer: &TxnProducer,
    record: OutRecord<'_>,
    ticket: Box<TxnTicket>,
    stop: &Shutdown,
) -> Result<(), Stopped> {
    let mut base =
        BaseRecord::with_opaque_to(record.topic, ticket).headers(to_kafka_headers(record.headers));
    if let Some(key) = record.key {
        base = base.key(key);
    }
    if let Some(value) = record.value {
        base = base.payload(value);
    }
    loop {
        match producer.send(base) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                base = back;
                if !stop.sleep(Duration::from_millis(5)) {
                    return Err(Stopped);
                }
            }
            Err((error, _)) => {
                // The transaction is in an error state (it is aborted and the record
                // processed again), or the client refuses the record: the same.
                tracing::debug!(%error, "cannot produce into the transaction");
                return Ok(());
            }
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
        unit: &Arc<PartitionUnit>,
        stop: &Shutdown,
    ) -> Result<(), Stopped> {
        let (verdicts, alone) = self.apply_refusals(source, verdicts);
        // The record's offset is registered before the gate opens again, so that no
        // transaction commits its outputs without its offset.
        let register = || {
            self.records.fetch_add(1, Ordering::SeqCst);
            unit.tracker.register(source.event.offset, 0);
            unit.done(&source.event);
        };
        if alone {
            // Nothing else may share its batches: hold the gate exclusively and
            // flush around it.
            let mut open = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            if self.halted.load(Ordering::SeqCst) {
                return Err(Stopped);
            }
            open.since.get_or_insert_with(Instant::now);
            let _ = open.producer.flush(CALL_TIMEOUT);
            self.produce(&open.producer, source, &verdicts, true, stop)?;
            let _ = open.producer.flush(CALL_TIMEOUT);
            register();
        } else {
            let open = self.gate.read().unwrap_or_else(PoisonError::into_inner);
            if self.halted.load(Ordering::SeqCst) {
                return Err(Stopped);
            }
            self.produce(&open.producer, source, &verdicts, false, stop)?;
            register();
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
        let mut open = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        if why == Commit::Lost {
            tracing::warn!(pipeline = %self.pipeline, "fenced: this instance lost its partitions to another member; its open transaction is aborted and it writes nothing more for them");
            self.metrics.fenced.inc();
            return match self.abort(&mut open) {
                Ok(()) => Committed::Fenced,
                Err(_) => self.replace(&mut open),
            };
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
                    self.metrics.committed.inc();
                    for (unit, next) in &taken {
                        unit.committed(*next);
                    }
                    self.end(&mut open);
                    self.health.broker_ok();
                    tracing::trace!(pipeline = %self.pipeline, ?offsets, "transaction committed");
                    if let Err(error) = open.producer.begin_transaction() {
                        tracing::error!(pipeline = %self.pipeline, %error, "cannot begin a transaction");
                        return self.replace(&mut open);
                    }
                    return Committed::Done;
                }
                Err(error) => {
                    let retriable = matches!(error, KafkaError::Flush(_))
                        || transaction_error(&error).is_some_and(|e| {
                            e.is_retriable() && !e.is_fatal() && !e.txn_requires_abort()
                        });
                    if retriable && retried < 3 {
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

    /// A transactional call failed: a fenced producer is replaced, anything else
    /// aborts the transaction.
    fn failed(&self, open: &mut Open, error: &KafkaError, doing: &str) -> Committed {
        let txn = transaction_error(error);
        let fatal =
            txn.is_none_or(|e| e.is_fatal() || (!e.txn_requires_abort() && !e.is_retriable()));
        let generation = txn.is_some_and(|e| {
            matches!(
                e.code(),
                RDKafkaErrorCode::IllegalGeneration
                    | RDKafkaErrorCode::UnknownMemberId
                    | RDKafkaErrorCode::FencedInstanceId
                    | RDKafkaErrorCode::RebalanceInProgress
            )
        });
        if fatal {
            tracing::warn!(pipeline = %self.pipeline, %error, "fenced: {doing} failed for good; this instance writes nothing more with this producer, drops its work and rejoins the group");
            return self.replace(open);
        }
        if generation {
            tracing::warn!(pipeline = %self.pipeline, %error, "fenced: another member owns the partitions now; the open transaction is aborted and this instance rejoins the group");
            self.metrics.fenced.inc();
            return match self.abort(open) {
                Ok(()) => Committed::Fenced,
                Err(_) => self.replace(open),
            };
        }
        self.abort_and_rewind(open, &format!("{doing} failed: {error}"))
    }
}
