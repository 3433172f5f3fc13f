//! `weir dlq inspect|replay`: look into a pipeline's dead-letter topic, and
//! re-publish its records to their source topic once the cause is fixed.
//!
//! Replay remembers how far it got as the committed offsets of the consumer group
//! `weir-dlq-replay-<pipeline>[-<reason>]` on the DLQ topic, so a second replay does
//! not send the same records again. A dead letter that was cut to fit its topic
//! (`weir.cut`) is replayed from its original, read again from the source topic at
//! `weir.source.partition`/`weir.source.offset` while retention keeps it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::{ClientConfig, Offset};

use crate::config::WeirConfig;
use crate::kafka::{Brokers, CONNECT_TIMEOUT};
use crate::policy::dlq;
use crate::record::Header;

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Show the latest dead-lettered records and a count by reason.
    Inspect {
        #[command(flatten)]
        target: Target,
        /// How many records to show (the most recent).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only records with this `weir.error.reason` (invalid, retries-exhausted, trap, ...).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Re-publish dead-lettered records to their source topic, with their original
    /// key, value and headers (weir.* removed, `weir.replayed` added).
    Replay {
        #[command(flatten)]
        target: Target,
        /// Only records with this `weir.error.reason`.
        #[arg(long)]
        reason: Option<String>,
        /// Show what would be replayed; send and record nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct Target {
    /// The pipeline whose dead-letter topic to use.
    #[arg(long)]
    pipeline: String,
    /// The pipelines file.
    #[arg(long, default_value = "pipelines.toml")]
    config: std::path::PathBuf,
}

pub fn run(command: DlqCommand) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::Inspect {
            target,
            limit,
            reason,
        } => inspect(&target, limit, reason.as_deref()),
        DlqCommand::Replay {
            target,
            reason,
            dry_run,
        } => replay(&target, reason.as_deref(), dry_run),
    }
}

/// The dead-letter topic of one pipeline (or branch) of the config.
struct DeadLetters {
    /// The pipeline or branch name, as in `weir.pipeline`.
    pipeline: String,
    topic: String,
}

fn open(target: &Target) -> anyhow::Result<(DeadLetters, ClientConfig)> {
    let config = WeirConfig::load(&target.config)?;
    let found = config
        .pipelines
        .iter()
        .flat_map(|p| p.branches())
        .find(|b| b.name == target.pipeline)
        .map(|b| DeadLetters {
            pipeline: b.name.to_owned(),
            topic: b.dlq(),
        });
    let Some(found) = found else {
        let names: Vec<_> = config
            .pipelines
            .iter()
            .flat_map(|p| p.branches())
            .map(|b| b.name)
            .collect();
        bail!(
            "no pipeline or branch {:?} in {} (those with a dead-letter topic: {})",
            target.pipeline,
            target.config.display(),
            names.join(", ")
        );
    };
    if config.kafka.brokers.0 == "embedded" {
        bail!(
            "the embedded cluster lives inside a running weir process; point [kafka] brokers (or KAFKA_BROKERS) at a real cluster"
        );
    }
    let brokers = Brokers::connect(&config)?;
    brokers.check_reachable(&config)?;
    let client = brokers.client_config(&config);
    Ok((found, client))
}

/// A record read from a dead-letter topic.
struct Letter {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
    /// What its `weir.*` headers say.
    reading: dlq::Reading,
}

impl Letter {
    /// Copies a consumed record; header keys that are not UTF-8 cannot panic it.
    fn of(message: &BorrowedMessage<'_>) -> Letter {
        let headers = crate::kafka::consumed_headers(message);
        Letter {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            reading: dlq::read(&headers),
            headers,
        }
    }
}

/// A consumer that reads without a group's progress and says when it reached the
/// end of a partition (an exactly-once pipeline's dead-letter topic ends with a
/// transaction marker, which is never delivered as a record).
fn reader(client: &ClientConfig) -> anyhow::Result<BaseConsumer> {
    Ok(client
        .clone()
        .set("group.id", "weir-dlq-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()?)
}

/// Reads `topic` from `start` (per partition; missing = beginning) up to the high
/// watermarks as they are now.
fn read_snapshot(
    client: &ClientConfig,
    topic: &str,
    start: &BTreeMap<i32, i64>,
    mut each: impl FnMut(Letter),
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let consumer = reader(client)?;
    let metadata = consumer.fetch_metadata(Some(topic), CONNECT_TIMEOUT)?;
    let Some(meta) = metadata.topics().first().filter(|t| t.error().is_none()) else {
        bail!("dead-letter topic {topic} does not exist (yet): nothing was dead-lettered");
    };
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for partition in meta.partitions() {
        let id = partition.id();
        let (low, high) = consumer.fetch_watermarks(topic, id, CONNECT_TIMEOUT)?;
        let from = start.get(&id).copied().unwrap_or(low).max(low);
        if from < high {
            tpl.add_partition_offset(topic, id, Offset::Offset(from))?;
            ends.insert(id, high);
        }
    }
    let targets = ends.clone();
    if tpl.count() > 0 {
        consumer.assign(&tpl)?;
        let mut remaining = ends.clone();
        while !remaining.is_empty() {
            match consumer.poll(Duration::from_secs(10)) {
                Some(Ok(message)) => {
                    let (partition, offset) = (message.partition(), message.offset());
                    if remaining
                        .get(&partition)
                        .is_some_and(|end| offset + 1 >= *end)
                    {
                        remaining.remove(&partition);
                    }
                    if targets.get(&partition).is_some_and(|end| offset < *end) {
                        each(Letter::of(&message));
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    remaining.remove(&partition);
                }
                Some(Err(error)) => bail!("reading {topic}: {error}"),
                None => bail!("reading {topic}: no record within 10s; the broker may be unhealthy"),
            }
        }
    }
    Ok(targets)
}

fn inspect(target: &Target, limit: usize, reason: Option<&str>) -> anyhow::Result<ExitCode> {
    let (found, client) = open(target)?;
    let dlq = found.topic;
    let mut rows = Vec::new();
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    read_snapshot(&client, &dlq, &BTreeMap::new(), |m| {
        let reading = &m.reading;
        let r = reading.reason.clone().unwrap_or_else(|| "?".into());
        if reason.is_some_and(|want| want != r) {
            return;
        }
        *by_reason.entry(r.clone()).or_default() += 1;
        let or_unknown = |v: Option<String>| v.unwrap_or_else(|| "?".into());
        rows.push((
            or_unknown(reading.failed_at.clone()),
            format!(
                "{}/{}",
                or_unknown(reading.source_partition.map(|p| p.to_string())),
                or_unknown(reading.source_offset.map(|o| o.to_string()))
            ),
            r,
            reading.message.clone().unwrap_or_default(),
            m.key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_else(|| "-".into()),
        ));
    })?;
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let shown = rows.len().saturating_sub(limit);
    println!("dead-letter topic {dlq} of pipeline {}", found.pipeline);
    println!(
        "{:<24}  {:<12}  {:<17}  {:<48}  key",
        "failed at", "source p/off", "reason", "message"
    );
    for (at, source, r, message, key) in &rows[shown..] {
        println!(
            "{at:<24}  {source:<12}  {r:<17}  {:<48}  {}",
            super::cut(message, 48),
            super::cut(key, 36)
        );
    }
    println!();
    let total: usize = by_reason.values().sum();
    println!(
        "{total} record(s){}",
        if shown > 0 {
            format!(", latest {limit} shown")
        } else {
            String::new()
        }
    );
    for (r, n) in &by_reason {
        println!("  {r:<17} {n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The replay group: progress is kept per pipeline and reason filter.
fn replay_group(pipeline: &str, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!("weir-dlq-replay-{pipeline}-{reason}"),
        None => format!("weir-dlq-replay-{pipeline}"),
    }
}

fn replay(target: &Target, reason: Option<&str>, dry_run: bool) -> anyhow::Result<ExitCode> {
    let (found, client) = open(target)?;
    let dlq = found.topic;
    let group = replay_group(&found.pipeline, reason);
    let progress: BaseConsumer = client
        .clone()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = progress.fetch_metadata(Some(&dlq), CONNECT_TIMEOUT)?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition(&dlq, p.id());
        }
    }
    let start: BTreeMap<i32, i64> = progress
        .committed_offsets(tpl, CONNECT_TIMEOUT)
        .context("cannot read replay progress")?
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(n) => Some((e.partition(), n)),
            _ => None,
        })
        .collect();

    let mut pending = Vec::new();
    let ends = read_snapshot(&client, &dlq, &start, |m| pending.push(m))?;
    // A fired timer's dead letter is no input record: nothing to send back. Its
    // `weir.timer.*` headers name the timer; its state is gone with it.
    let is_timer = |m: &Letter| m.headers.iter().any(|h| h.key == "weir.timer.name");
    let timers = pending.iter().filter(|m| is_timer(m)).count();
    if timers > 0 {
        println!(
            "{timers} dead letter(s) of fired timers (weir.timer.name) are not replayed: a timer is no input record"
        );
    }
    let chosen: Vec<&Letter> = pending
        .iter()
        .filter(|m| !is_timer(m))
        .filter(|m| reason.is_none_or(|want| m.reading.reason.as_deref() == Some(want)))
        .collect();
    let mut by_topic: BTreeMap<String, usize> = BTreeMap::new();
    for m in &chosen {
        *by_topic
            .entry(m.reading.source_topic.clone().unwrap_or_else(|| "?".into()))
            .or_default() += 1;
    }
    let summary: Vec<String> = by_topic
        .iter()
        .map(|(t, n)| format!("{n} to {t}"))
        .collect();
    if dry_run {
        println!(
            "dry run: would replay {} record(s) from {dlq} ({}); {} other(s) skipped; nothing sent",
            chosen.len(),
            if summary.is_empty() {
                "none".to_owned()
            } else {
                summary.join(", ")
            },
            pending.len() - chosen.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if chosen.is_empty() {
        println!("nothing to replay from {dlq} (progress is kept in consumer group {group})");
        return Ok(ExitCode::SUCCESS);
    }
    let producer: ThreadedProducer<ReplayContext> = client
        .clone()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create_with_context(ReplayContext::default())?;
    let bar = ProgressBar::new(chosen.len() as u64).with_style(
        ProgressStyle::with_template("replaying [{bar:40}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    // Per DLQ partition, the first record that could not be replayed: progress
    // stops there, so that a later replay tries it again.
    let mut failed: BTreeMap<i32, (i64, String)> = BTreeMap::new();
    let mut fail = |m: &Letter, why: String| {
        bar.suspend(|| {
            eprintln!(
                "cannot replay the record at {dlq} partition {} offset {}: {why}",
                m.partition, m.offset
            )
        });
        let first = failed.entry(m.partition).or_insert((m.offset, why.clone()));
        if m.offset < first.0 {
            *first = (m.offset, why);
        }
    };
    for m in &chosen {
        bar.inc(1);
        let Some(topic) = m.reading.source_topic.as_deref() else {
            bar.suspend(|| {
                eprintln!(
                    "skipping the record at {dlq} partition {} offset {}: no weir.source.topic header",
                    m.partition, m.offset
                )
            });
            continue;
        };
        let original;
        let source = if m.reading.cut.is_some() {
            match read_original(&client, m) {
                Ok(found) => {
                    original = found;
                    &original
                }
                Err(why) => {
                    fail(m, why);
                    continue;
                }
            }
        } else {
            m
        };
        // The original's headers, and the dead letter's replay count.
        let mut headers: Vec<Header> = source
            .headers
            .iter()
            .filter(|h| !h.key.starts_with("weir."))
            .cloned()
            .collect();
        headers.extend(
            m.headers
                .iter()
                .filter(|h| h.key.starts_with("weir."))
                .cloned(),
        );
        let headers = crate::kafka::to_kafka_headers(&dlq::for_replay(&headers));
        let mut record =
            BaseRecord::with_opaque_to(topic, Box::new((m.partition, m.offset))).headers(headers);
        if let Some(key) = &source.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &source.value {
            record = record.payload(value.as_slice());
        }
        if let Err(error) = crate::kafka::send_waiting(&producer, record) {
            fail(m, error.to_string());
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .context("not every replayed record was acknowledged; progress was not recorded, so a retry resends them")?;
    for (partition, offset, why) in producer.context().failures() {
        if let Some(m) = chosen
            .iter()
            .find(|m| m.partition == partition && m.offset == offset)
        {
            fail(m, why);
        }
    }
    let mut done = TopicPartitionList::new();
    for (partition, end) in &ends {
        let next = failed.get(partition).map_or(*end, |(offset, _)| *offset);
        done.add_partition_offset(&dlq, *partition, Offset::Offset(next))?;
    }
    progress
        .commit(&done, CommitMode::Sync)
        .context("records were replayed but progress could not be recorded")?;
    bar.finish_and_clear();
    if !failed.is_empty() {
        println!(
            "replayed records from {dlq} up to the first one that failed in {} partition(s); progress kept in consumer group {group} stops there, so a later replay starts with it",
            failed.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "replayed {} record(s) from {dlq}: {}; {} other(s) skipped; progress kept in consumer group {group}",
        chosen.len(),
        summary.join(", "),
        pending.len() - chosen.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The original of a cut dead letter, read again from its source topic.
fn read_original(client: &ClientConfig, letter: &Letter) -> Result<Letter, String> {
    let reading = &letter.reading;
    let (Some(topic), Some(partition), Some(offset)) = (
        reading.source_topic.as_deref(),
        reading.source_partition,
        reading.source_offset,
    ) else {
        return Err(
            "it was cut to fit its topic and its weir.source.* headers are incomplete".into(),
        );
    };
    let gone = || {
        format!(
            "it was cut to fit its topic (weir.cut), and its original at {topic} partition {partition} offset {offset} is gone (retention or compaction)"
        )
    };
    let consumer = reader(client).map_err(|e| e.to_string())?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, CONNECT_TIMEOUT)
        .map_err(|e| format!("cannot read {topic}: {e}"))?;
    if offset < low || offset >= high {
        return Err(gone());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .and_then(|()| consumer.assign(&tpl))
        .map_err(|e| format!("cannot read {topic}: {e}"))?;
    match consumer.poll(Duration::from_secs(10)) {
        Some(Ok(message)) if message.offset() == offset => Ok(Letter::of(&message)),
        Some(Ok(_)) | Some(Err(KafkaError::PartitionEOF(_))) => Err(gone()),
        Some(Err(error)) => Err(format!("cannot read {topic}: {error}")),
        None => Err(format!("cannot read {topic}: no record within 10s")),
    }
}

/// Remembers which replayed records the broker did not take.
#[derive(Default)]
struct ReplayContext {
    failures: std::sync::Mutex<Vec<(i32, i64, String)>>,
}

impl ReplayContext {
    /// (DLQ partition, DLQ offset, error) of every failed delivery.
    fn failures(&self) -> Vec<(i32, i64, String)> {
        std::mem::take(&mut *self.failures.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl rdkafka::client::ClientContext for ReplayContext {}

impl rdkafka::producer::ProducerContext for ReplayContext {
    type DeliveryOpaque = Box<(i32, i64)>;

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, at: Box<(i32, i64)>) {
        let (partition, offset) = *at;
        if let Err((error, _)) = result {
            self.failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((partition, offset, error.to_string()));
        }
    }
}
