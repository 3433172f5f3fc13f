//! The shared producer: idempotent, `acks=all`, with a delivery callback that
//! acknowledges records in their partition's offset tracker.
//!
//! A broker error never fails a record: a message whose delivery failed is kept and
//! sent again after a backoff, and the host reports not-ready meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::OffsetTracker;
use crate::plugin::Header;
use crate::policy::backoff;
use crate::telemetry::{Health, PipelineMetrics};

/// What a delivery acknowledges: one output or DLQ record of the record at
/// `offset` in the partition that `tracker` follows.
pub struct Ticket {
    pub tracker: Arc<OffsetTracker>,
    pub offset: i64,
    /// The source record's timestamp, for end-to-end latency.
    pub timestamp_ms: Option<i64>,
    pub metrics: Arc<PipelineMetrics>,
    /// Deliveries of this message that failed so far.
    pub failures: u32,
}

/// A failed delivery, waiting to be sent again.
struct Resend {
    message: OwnedMessage,
    ticket: Box<Ticket>,
    not_before: Instant,
}

/// The producer's callbacks.
pub struct DeliveryContext {
    health: Arc<Health>,
    /// Failed deliveries go here, to the resender thread.
    resend: Sender<Resend>,
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
        ) {
            self.health.broker_trouble(format!("producer: {reason}"));
        } else {
            tracing::warn!(%error, reason, "producer error");
        }
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, mut ticket: Box<Ticket>) {
        match result {
            Ok(message) => {
                ticket.metrics.produced(message.topic(), true);
                self.health.broker_ok();
                if ticket.tracker.ack(ticket.offset)
                    && let Some(ts) = ticket.timestamp_ms
                {
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    ticket
                        .metrics
                        .latency
                        .observe((now_ms - ts).max(0) as f64 / 1000.0);
                }
            }
            Err((error, message)) => {
                ticket.metrics.produced(message.topic(), false);
                ticket.failures += 1;
                self.health
                    .broker_trouble(format!("delivery to {} failed: {error}", message.topic()));
                let delay = backoff(
                    ticket.failures,
                    Duration::from_millis(100),
                    Duration::from_secs(30),
                    1.0,
                );
                let resend = Resend {
                    message: message.detach(),
                    ticket,
                    not_before: Instant::now() + delay,
                };
                // The resender lives as long as the producer; if it is gone we are
                // shutting down and the record stays uncommitted.
                let _ = self.resend.send(resend);
            }
        }
    }
}

/// The producer shared by every pipeline.
#[derive(Clone)]
pub struct OutputProducer {
    inner: ThreadedProducer<DeliveryContext>,
    /// Set by [`OutputProducer::close`]: the resender lets go of its clone.
    closed: Arc<AtomicBool>,
}

/// One record to produce.
pub struct OutRecord<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header],
}

impl OutputProducer {
    /// Creates the producer and its resender thread. `base` carries the bootstrap
    /// servers and `[kafka.properties]`; these defaults come first so a property can
    /// override them.
    pub fn spawn(base: &ClientConfig, health: Arc<Health>) -> Result<OutputProducer, KafkaError> {
        let mut config = ClientConfig::new();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            // Keep messages until the broker takes them: an outage is waited out,
            // never turned into a lost or dead-lettered record.
            .set("message.timeout.ms", "0")
            // 16 MiB is far more than a 5 ms linger needs; when the broker is away
            // a full queue holds the runners back (backpressure) instead of growing.
            .set("queue.buffering.max.kbytes", "16384");
        for (key, value) in base.config_map() {
            config.set(key, value);
        }
        let (resend_tx, resend_rx) = crossbeam_channel::unbounded();
        let context = DeliveryContext {
            health,
            resend: resend_tx,
        };
        let inner: ThreadedProducer<DeliveryContext> = config.create_with_context(context)?;
        let producer = OutputProducer {
            inner,
            closed: Arc::new(AtomicBool::new(false)),
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

    /// Enqueues a record. Waits (and keeps waiting) while the local queue is full
    /// or the client refuses the message for a broker-side reason: the caller's
    /// record is never dropped.
    pub fn send(&self, record: OutRecord<'_>, ticket: Box<Ticket>) {
        let headers = to_kafka_headers(record.headers);
        let mut base = BaseRecord::with_opaque_to(record.topic, ticket).headers(headers);
        if let Some(key) = record.key {
            base = base.key(key);
        }
        if let Some(value) = record.value {
            base = base.payload(value);
        }
        self.send_base(base);
    }

    fn send_base(&self, mut base: BaseRecord<'_, [u8], [u8], Box<Ticket>>) {
        let mut failures = 0;
        loop {
            match self.inner.send(base) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    base = back;
                    std::thread::sleep(Duration::from_millis(5));
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
                    tracing::warn!(topic = base.topic, %error, retry_in = ?delay, "cannot enqueue a record; keeping it");
                    std::thread::sleep(delay);
                }
            }
        }
    }

    /// Waits for every enqueued record to be delivered, up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.flush(timeout)
    }

    pub fn in_flight(&self) -> i32 {
        self.inner.in_flight_count()
    }

    /// Ends the resender once it has nothing left, so the producer (and its
    /// connections) go away with the last clone.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

fn to_kafka_headers(headers: &[Header]) -> OwnedHeaders {
    headers
        .iter()
        .fold(OwnedHeaders::new_with_capacity(headers.len()), |acc, h| {
            acc.insert(KafkaHeader {
                key: &h.key,
                value: Some(h.value.as_slice()),
            })
        })
}

/// Sends failed deliveries again once their backoff has passed.
fn resend_loop(rx: Receiver<Resend>, producer: OutputProducer) {
    loop {
        let resend = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(resend) => resend,
            Err(RecvTimeoutError::Timeout) if !producer.closed.load(Ordering::SeqCst) => continue,
            Err(_) => return,
        };
        let wait = resend.not_before.saturating_duration_since(Instant::now());
        std::thread::sleep(wait);
        let message = resend.message;
        let headers = super::headers_of(&message);
        producer.send(
            OutRecord {
                topic: message.topic(),
                key: message.key(),
                value: message.payload(),
                headers: &headers,
            },
            resend.ticket,
        );
    }
}
