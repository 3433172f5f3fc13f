//! The reference services, (a) passthrough and (b) native: one consumer thread that
//! reads a record, turns it into outputs, produces them and registers the record
//! with its partition's offset tracker. Delivery callbacks acknowledge it, and
//! every second the completed prefix of each partition is committed. These are
//! weir's delivery guarantees (idempotent `acks=all` producer, commit only after
//! every output of a record is acknowledged) without plugins, retries or metrics.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use weir::kafka::OffsetTracker;

/// Input partitions a service can track (the benchmark uses 6).
const MAX_PARTITIONS: usize = 256;
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Copy every record to the output unchanged.
    Passthrough,
    /// Validate, derive reminders natively; invalid records go to the DLQ.
    Native,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[arg(long, value_enum)]
    pub mode: Mode,
    #[arg(long)]
    pub brokers: String,
    #[arg(long)]
    pub input: String,
    #[arg(long)]
    pub output: String,
    #[arg(long)]
    pub dlq: String,
    #[arg(long)]
    pub group: String,
}

struct Trackers(Vec<OffsetTracker>);

struct Delivery {
    trackers: Arc<Trackers>,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = Box<(i32, i64)>;

    fn delivery(&self, result: &DeliveryResult<'_>, source: Self::DeliveryOpaque) {
        match result {
            Ok(_) => {
                self.trackers.0[source.0 as usize].ack(source.1);
            }
            Err((error, _)) => {
                // The benchmark treats a lost output as a failed run.
                eprintln!(
                    "delivery of an output of offset {} failed: {error}",
                    source.1
                );
                std::process::exit(3);
            }
        }
    }
}

/// One output of a record.
struct Out<'a> {
    topic: &'a str,
    key: Option<Cow<'a, [u8]>>,
    value: Vec<u8>,
    headers: Vec<(&'a str, Vec<u8>)>,
}

pub fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;

    let trackers = Arc::new(Trackers(
        (0..MAX_PARTITIONS).map(|_| OffsetTracker::new()).collect(),
    ));
    let producer: ThreadedProducer<Delivery> = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.kbytes", "65536")
        .create_with_context(Delivery {
            trackers: trackers.clone(),
        })
        .context("creating the producer")?;
    // The consumer settings of weir's pipelines (host/src/kafka/consumer.rs).
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", &args.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .set("queued.max.messages.kbytes", "16384")
        .create()
        .context("creating the consumer")?;
    consumer.subscribe(&[&args.input])?;

    let lead_time = reminder_deriver::DEFAULT_LEAD_TIME;
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if last_commit.elapsed() >= COMMIT_INTERVAL {
            commit(&consumer, &args.input, &trackers, CommitMode::Async);
            last_commit = Instant::now();
        }
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(error)) => {
                eprintln!("consumer error: {error}");
                continue;
            }
            Some(Ok(message)) => message,
        };
        let partition = message.partition();
        if partition as usize >= MAX_PARTITIONS {
            bail!("partition {partition} is beyond this service's {MAX_PARTITIONS}");
        }
        let mut outs = Vec::with_capacity(1);
        match args.mode {
            Mode::Passthrough => outs.push(Out {
                topic: &args.output,
                key: message.key().map(Cow::Borrowed),
                value: message.payload().unwrap_or_default().to_vec(),
                headers: message
                    .headers()
                    .map(|hs| {
                        use rdkafka::message::Headers;
                        hs.iter()
                            .map(|h| (h.key, h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Mode::Native => {
                let value = message.payload();
                match task_validator::validate(value)
                    .and_then(|()| reminder_deriver::derive(value.unwrap_or_default(), lead_time))
                {
                    Err(rejection) => outs.push(Out {
                        topic: &args.dlq,
                        key: message.key().map(Cow::Borrowed),
                        value: value.unwrap_or_default().to_vec(),
                        headers: vec![("dlq.reason", rejection.to_string().into_bytes())],
                    }),
                    Ok(None) => {}
                    Ok(Some(reminder)) => outs.push(Out {
                        topic: &args.output,
                        value: reminder.to_json(),
                        key: Some(Cow::Owned(reminder.key.into_bytes())),
                        headers: vec![
                            ("event_type", reminder.event_type.as_bytes().to_vec()),
                            ("correlation_id", reminder.correlation_id.into_bytes()),
                        ],
                    }),
                }
            }
        }
        let tracker = &trackers.0[partition as usize];
        tracker.register(message.offset(), outs.len() as u32);
        for out in outs.drain(..) {
            send(&producer, out, (partition, message.offset()));
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the producer")?;
    commit(&consumer, &args.input, &trackers, CommitMode::Sync);
    Ok(())
}

/// Produces one output, waiting while the producer's queue is full.
fn send(producer: &ThreadedProducer<Delivery>, out: Out<'_>, source: (i32, i64)) {
    let mut headers = OwnedHeaders::new_with_capacity(out.headers.len());
    for (name, value) in &out.headers {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_slice()),
        });
    }
    let mut record = BaseRecord::with_opaque_to(out.topic, Box::new(source))
        .payload(out.value.as_slice())
        .headers(headers);
    if let Some(key) = &out.key {
        record = record.key(key.as_ref());
    }
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((error, _)) => {
                eprintln!("cannot produce: {error}");
                std::process::exit(3);
            }
        }
    }
}

fn commit(consumer: &BaseConsumer, topic: &str, trackers: &Trackers, mode: CommitMode) {
    let mut tpl = TopicPartitionList::new();
    for (partition, tracker) in trackers.0.iter().enumerate() {
        if let Some(next) = tracker.take_commit() {
            let _ = tpl.add_partition_offset(topic, partition as i32, Offset::Offset(next));
        }
    }
    if tpl.count() > 0
        && let Err(error) = consumer.commit(&tpl, mode)
    {
        eprintln!("commit failed: {error}");
    }
}
