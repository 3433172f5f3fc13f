//! The at-least-once producer: idempotent, `acks=all`. Every message carries a
//! [`Ticket`] that hears how its delivery ended, and a failed delivery is classified
//! ([`Trouble`]):
//!
//! - broker trouble (timeouts, leader changes, not enough replicas): the message is
//!   kept and sent again after a backoff; the host reports not-ready meanwhile;
//! - refused (the broker will never take the record, e.g. over the topic's
//!   `max.message.bytes`): librdkafka refuses a whole batch for one bad record, so
//!   the message is sent again on its own through a second producer that sends one
//!   record per batch; refused on its own, its ticket dead-letters the source record;
//! - not allowed or gone (authorization failed, unknown topic): the message is kept
//!   and sent again with a long backoff, nothing is committed past it, and readiness
//!   names the topic and the ACL to grant, until a delivery to that topic succeeds.
//!
//! Nothing is dropped in any case. This module classifies and resends; what a
//! delivery means for offsets and dead letters is the ticket's business.

use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

pub use super::headers::to_kafka_headers;
use crate::policy::backoff;
use crate::record::Header;
use crate::shutdown::Shutdown;
use crate::telemetry::Health;

/// What a delivery outcome means to whoever produced the record.
pub trait Ticket: Send + Sync + Sized + 'static {
    /// The broker acknowledged the record.
    fn delivered(self);
    /// One delivery attempt failed, for `trouble` (it will be retried, isolated or
    /// handed back).
    fn failed(&self, trouble: Trouble);
    /// The broker (or the client itself) refuses `record` on its own, for good
    /// (`error` is its reason).
    fn refused(self, record: OwnedRecord, error: &str) -> Replacement<Self>;
}

/// What takes the place of a record the broker will never take.
pub enum Replacement<T> {
    /// Send this record in its place (a dead letter of the source, or a dead
    /// letter cut to fit).
    Send(OwnedRecord, T),
    /// Nothing more: the ticket settled it (the source is already dead-lettered).
    Settled,
    /// Keep the record and keep trying (even a cut dead letter was refused):
    /// nothing may be committed past it.
    Keep(OwnedRecord, T),
}

/// Why a delivery failed, and so what happens to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// The broker is away or busy: send again after a backoff.
    Broker,
    /// The broker will never take this record as it is.
    Refused,
    /// The principal may not write to the topic, or the topic is gone: keep it and
    /// wait for an operator.
    NotAllowed,
}

impl Trouble {
    /// Its name in spans and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Trouble::Broker => "broker",
            Trouble::Refused => "refused",
            Trouble::NotAllowed => "not-allowed",
        }
    }

    pub fn of(code: Option<RDKafkaErrorCode>) -> Trouble {
        use RDKafkaErrorCode as C;
        match code {
            Some(
                C::MessageSizeTooLarge
                | C::MessageBatchTooLarge
                | C::InvalidMessageSize
                | C::InvalidRecord
                | C::InvalidDifferentRecord
                | C::InvalidMessage,
            ) => Trouble::Refused,
            Some(
                C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::TransactionalIdAuthorizationFailed
                | C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::UnknownPartition,
            ) => Trouble::NotAllowed,
            _ => Trouble::Broker,
        }
    }
}

/// A record to produce, owned (a dead letter made in a delivery callback).
pub struct OwnedRecord {
    pub topic: String,
    /// `None`: the partitioner picks (by key).
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

/// One record to produce.
#[derive(Clone, Copy)]
pub struct OutRecord<'a> {
    pub topic: &'a str,
    /// `None`: the partitioner picks (by key).
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header],
}

impl OwnedRecord {
    /// A copy of a message weir produced (a failed delivery).
    pub fn of(message: &impl Message) -> OwnedRecord {
        OwnedRecord {
            topic: message.topic().to_owned(),
            partition: Some(message.partition()),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: super::headers_of(message),
        }
    }

    pub fn as_out(&self) -> OutRecord<'_> {
        OutRecord {
            topic: &self.topic,
            partition: self.partition,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: &self.headers,
        }
    }
}

/// The producer's bookkeeping around a ticket.
pub struct Envelope<T> {
    ticket: T,
    /// Failed deliveries so far, for the backoff.
    failures: u32,
    /// Sent through the one-record-per-batch producer.
    alone: bool,
}

/// A failed delivery, waiting to be sent again.
struct Resend<T> {
    record: OwnedRecord,
    envelope: Box<Envelope<T>>,
    trouble: Trouble,
    /// The broker's (or the client's) reason.
    error: String,
    not_before: Instant,
}

impl<T> PartialEq for Resend<T> {
    fn eq(&self, other: &Self) -> bool {
        self.not_before == other.not_before
    }
}
impl<T> Eq for Resend<T> {}
impl<T> PartialOrd for Resend<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Resend<T> {
    /// Earliest first in a max-heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.not_before.cmp(&self.not_before)
    }
}

/// The producers' callbacks.
pub struct DeliveryContext<T> {
    health: Arc<Health>,
    /// Failed deliveries go here, to the resender thread.
    resend: Sender<Resend<T>>,
}

impl<T: Ticket> ClientContext for DeliveryContext<T> {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure) => {
                self.health.broker_trouble(format!("producer: {reason}"));
            }
            Some(RDKafkaErrorCode::Fatal) => self.health.fatal(format!("producer: {reason}")),
            _ => tracing::warn!(%error, reason, "producer error"),
        }
    }
}

impl<T: Ticket> ProducerContext for DeliveryContext<T> {
    type DeliveryOpaque = Box<Envelope<T>>;

    fn delivery(&self, result: &DeliveryResult<'_>, mut envelope: Box<Envelope<T>>) {
        match result {
            Ok(message) => {
                self.health.broker_ok();
                self.health.allowed(message.topic());
                envelope.ticket.delivered();
            }
            Err((error, message)) => {
                let trouble = Trouble::of(error.rdkafka_error_code());
                envelope.ticket.failed(trouble);
                envelope.failures += 1;
                let topic = message.topic();
                let delay = match trouble {
                    Trouble::Broker => {
                        self.health
                            .broker_trouble(format!("delivery to {topic} failed: {error}"));
                        backoff(
                            envelope.failures,
                            Duration::from_millis(100),
                            Duration::from_secs(30),
                            1.0,
                        )
                    }
                    Trouble::Refused => Duration::ZERO,
                    Trouble::NotAllowed => {
                        self.health.not_allowed(topic, &error.to_string());
                        backoff(
                            envelope.failures,
                            Duration::from_secs(1),
                            Duration::from_secs(10),
                            1.0,
                        )
                    }
                };
                let resend = Resend {
                    record: OwnedRecord::of(message),
                    envelope,
                    trouble,
                    error: error.to_string(),
                    not_before: Instant::now() + delay,
                };
                // The resender lives as long as the producer; if it is gone we are
                // shutting down and the record stays uncommitted.
                let _ = self.resend.send(resend);
            }
        }
    }
}

type Inner<T> = ThreadedProducer<DeliveryContext<T>>;

/// The at-least-once producer shared by every pipeline.
pub struct OutputProducer<T: Ticket> {
    /// Batches records (linger) for throughput.
    batched: Arc<Inner<T>>,
    /// One record per batch: isolates a record the broker refuses from the
    /// innocent records batched with it.
    alone: Arc<Inner<T>>,
    /// Stops the resender.
    stop: Shutdown,
}

impl<T: Ticket> Clone for OutputProducer<T> {
    fn clone(&self) -> Self {
        OutputProducer {
            batched: self.batched.clone(),
            alone: self.alone.clone(),
            stop: self.stop.clone(),
        }
    }
}

/// Why a send gave up.
#[derive(Debug, thiserror::Error)]
#[error("stopped before the record could be handed to the producer")]
pub struct Stopped;

impl<T: Ticket> OutputProducer<T> {
    /// Creates the producers and the resender thread. `base` carries the bootstrap
    /// servers and `[kafka.properties]`; weir's defaults come first so a property
    /// can override them. `stop` ends the resender.
    pub fn spawn(
        base: &ClientConfig,
        health: Arc<Health>,
        stop: Shutdown,
    ) -> Result<OutputProducer<T>, KafkaError> {
        let mut config = producer_defaults();
        config
            // Keep messages until the broker takes them: an outage is waited out,
            // never turned into a lost or dead-lettered record.
            .set("message.timeout.ms", "0")
            // A topic that was not allowed or gone is looked up again soon, so that
            // a grant or a re-creation is noticed quickly.
            .set("topic.metadata.refresh.interval.ms", "10000");
        crate::kafka::overlay(&mut config, base);
        let (resend_tx, resend_rx) = crossbeam_channel::unbounded();
        let context = |tx: Sender<Resend<T>>| DeliveryContext {
            health: health.clone(),
            resend: tx,
        };
        let batched: Inner<T> = config.create_with_context(context(resend_tx.clone()))?;
        let alone: Inner<T> = config
            .clone()
            .set("batch.num.messages", "1")
            .set("linger.ms", "0")
            .create_with_context(context(resend_tx))?;
        let producer = OutputProducer {
            batched: Arc::new(batched),
            alone: Arc::new(alone),
            stop,
        };
        let resender = producer.clone();
        std::thread::Builder::new()
            .name("weir-resend".into())
            .spawn(move || resend_loop(resend_rx, resender))
            .map_err(|e| {
                KafkaError::ClientCreation(format!("cannot start the resender thread: {e}"))
            })?;
        Ok(producer)
    }

    /// Enqueues a record. Waits while the local queue is full or the client refuses
    /// the message for a broker-side reason; gives up (the record stays
    /// uncommitted) when `stop` is signalled.
    pub fn send(&self, record: OutRecord<'_>, ticket: T, stop: &Shutdown) -> Result<(), Stopped> {
        let envelope = Box::new(Envelope {
            ticket,
            failures: 0,
            alone: false,
        });
        self.send_envelope(&self.batched, record, envelope, stop)
    }

    fn send_envelope(
        &self,
        producer: &Inner<T>,
        record: OutRecord<'_>,
        envelope: Box<Envelope<T>>,
        stop: &Shutdown,
    ) -> Result<(), Stopped> {
        let headers = to_kafka_headers(record.headers);
        let mut base = BaseRecord::with_opaque_to(record.topic, envelope).headers(headers);
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        if let Some(key) = record.key {
            base = base.key(key);
        }
        if let Some(value) = record.value {
            base = base.payload(value);
        }
        let mut failures = 0;
        loop {
            match producer.send(base) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    base = back;
                    if !stop.sleep(Duration::from_millis(5)) {
                        return Err(Stopped);
                    }
                }
                Err((KafkaError::MessageProduction(code), back))
                    if Trouble::of(Some(code)) == Trouble::Refused =>
                {
                    // The client itself refuses it (over message.max.bytes): final.
                    let refused = OwnedRecord {
                        topic: back.topic.to_owned(),
                        partition: back.partition,
                        key: back.key.map(<[u8]>::to_vec),
                        value: back.payload.map(<[u8]>::to_vec),
                        headers: record.headers.to_vec(),
                    };
                    let envelope = *back.delivery_opaque;
                    envelope.ticket.failed(Trouble::Refused);
                    self.refused(refused, envelope, &format!("weir's Kafka client: {code}"));
                    return Ok(());
                }
                Err((error, back)) => {
                    base = back;
                    failures += 1;
                    let delay = backoff(
                        failures,
                        Duration::from_millis(100),
                        Duration::from_secs(10),
                        1.0,
                    );
                    if Trouble::of(error.rdkafka_error_code()) == Trouble::NotAllowed {
                        // Logged once per topic, and named by readiness.
                        self.batched
                            .context()
                            .health
                            .not_allowed(base.topic, &error.to_string());
                        tracing::debug!(topic = base.topic, %error, retry_in = ?delay, "cannot enqueue a record; keeping it");
                    } else {
                        tracing::warn!(topic = base.topic, %error, retry_in = ?delay, "cannot enqueue a record; keeping it");
                    }
                    if !stop.sleep(delay) {
                        return Err(Stopped);
                    }
                }
            }
        }
    }

    /// A record refused for good, even on its own: its ticket decides what
    /// replaces it. A record that must be kept goes back to the resender.
    fn refused(&self, record: OwnedRecord, envelope: Envelope<T>, error: &str) {
        let Envelope {
            ticket, failures, ..
        } = envelope;
        match ticket.refused(record, error) {
            Replacement::Settled => {}
            Replacement::Send(record, ticket) => {
                // Stop leaves the source uncommitted: nothing is lost.
                let _ = self.send(record.as_out(), ticket, &self.stop);
            }
            Replacement::Keep(record, ticket) => {
                tracing::error!(
                    topic = %record.topic,
                    error,
                    "the broker refuses even a cut dead letter; it is kept and sent again, and nothing is committed past it"
                );
                let health = &self.batched.context().health;
                health.not_allowed(&record.topic, error);
                let resend = Resend {
                    record,
                    envelope: Box::new(Envelope {
                        ticket,
                        failures,
                        alone: true,
                    }),
                    // Sent again (alone) like a record that is not allowed: a
                    // refusal then comes back to the ticket, which keeps it again.
                    trouble: Trouble::NotAllowed,
                    error: error.to_owned(),
                    not_before: Instant::now() + Duration::from_secs(10),
                };
                let _ = self.batched.context().resend.send(resend);
            }
        }
    }

    /// Waits for every enqueued record to be delivered, up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let deadline = Instant::now() + timeout;
        self.batched.flush(timeout)?;
        self.alone
            .flush(deadline.saturating_duration_since(Instant::now()))
    }

    pub fn in_flight(&self) -> i32 {
        self.batched.in_flight_count() + self.alone.in_flight_count()
    }

    /// Gives up on everything not delivered yet (shutdown after the drain timeout):
    /// those records' inputs stay uncommitted and are processed again later. Stops
    /// the resender.
    pub fn abandon(&self) {
        self.stop.trigger();
        let purge = rdkafka::producer::PurgeConfig::default().queue().inflight();
        self.batched.purge(purge);
        self.alone.purge(purge);
    }

    /// Stops the resender once everything is delivered.
    pub fn close(&self) {
        self.stop.trigger();
    }
}

/// What every weir producer sets before `[kafka.properties]` (which may override).
pub fn producer_defaults() -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        // 16 MiB is far more than a 5 ms linger needs; when the broker is away a
        // full queue holds the runners back (backpressure) instead of growing.
        .set("queue.buffering.max.kbytes", "16384");
    config
}

/// Sends failed deliveries again once their backoff has passed: a refused one
/// alone, then to its ticket.
fn resend_loop<T: Ticket>(rx: Receiver<Resend<T>>, producer: OutputProducer<T>) {
    let mut waiting: BinaryHeap<Resend<T>> = BinaryHeap::new();
    loop {
        let wait = waiting
            .peek()
            .map_or(Duration::from_millis(200), |r| {
                r.not_before.saturating_duration_since(Instant::now())
            })
            .min(Duration::from_millis(200));
        match rx.recv_timeout(wait) {
            Ok(resend) => waiting.push(resend),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if producer.stop.is_triggered() {
            return;
        }
        while waiting
            .peek()
            .is_some_and(|r| r.not_before <= Instant::now())
        {
            let Some(resend) = waiting.pop() else { break };
            resend_one(&producer, resend);
        }
    }
}

fn resend_one<T: Ticket>(producer: &OutputProducer<T>, resend: Resend<T>) {
    let Resend {
        record,
        mut envelope,
        trouble,
        error,
        ..
    } = resend;
    if trouble == Trouble::Refused && envelope.alone {
        producer.refused(record, *envelope, &error);
        return;
    }
    if trouble == Trouble::NotAllowed {
        // Ask for the topic again, so that a grant or a re-creation is seen.
        let _ = producer
            .batched
            .client()
            .fetch_metadata(Some(&record.topic), Duration::from_secs(5));
    }
    if trouble == Trouble::Refused {
        envelope.alone = true;
    }
    let target = if envelope.alone {
        &producer.alone
    } else {
        &producer.batched
    };
    // A stop while resending leaves the record uncommitted: nothing is lost.
    let _ = producer.send_envelope(target, record.as_out(), envelope, &producer.stop);
}
