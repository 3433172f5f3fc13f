//! The events both chains run over, each with its `Source`: the lines of a JSONL
//! file (as `weir test` reads them), or the latest records of a topic, read without
//! joining a group or committing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::{ClientConfig, Offset};
use serde_json::{Value, json};

use crate::config::WeirConfig;
use crate::events::{Advance, Line};
use crate::kafka::{Brokers, CONNECT_TIMEOUT, headers_of};
use crate::plugin::Event;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Source {
    /// 1-based line of the input file.
    Line(usize),
    /// A record of the topic.
    Record { partition: i32, offset: i64 },
}

impl Source {
    pub(super) fn json(self) -> Value {
        match self {
            Source::Line(n) => json!(n),
            Source::Record { partition, offset } => json!(format!("{partition}/{offset}")),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Line(n) => write!(f, "input {n}"),
            Source::Record { partition, offset } => {
                write!(f, "record {partition}/{offset}")
            }
        }
    }
}

/// One input: an event, or a line that moves the virtual clock of stateful
/// plugins (its rows are the outputs of the timers it fires).
pub(super) enum Input {
    Event(Event),
    Clock(Advance),
}

pub(super) fn read_file(input: &Path) -> anyhow::Result<Vec<(Source, Input)>> {
    let name = input.display().to_string();
    let reader: Box<dyn BufRead> = if input.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file =
            std::fs::File::open(input).with_context(|| format!("cannot open --input {name}"))?;
        Box::new(BufReader::new(file))
    };
    let mut events = Vec::new();
    let mut malformed = 0;
    for line in crate::events::read(reader) {
        match line.with_context(|| format!("cannot read {name}"))? {
            Line::Event(number, event) => events.push((Source::Line(number), Input::Event(event))),
            Line::Clock(number, advance) => {
                events.push((Source::Line(number), Input::Clock(advance)))
            }
            Line::Malformed(number, message) => {
                eprintln!("error: {name}:{number}: {message}");
                malformed += 1;
            }
        }
    }
    if malformed > 0 {
        bail!("{malformed} malformed line(s) in {name}: fix them, the diff needs every input");
    }
    Ok(events)
}

/// The latest `limit` records of `topic`, spread over its partitions, read without
/// joining a group or committing.
pub(super) fn read_topic(
    config_path: &Path,
    topic: &str,
    limit: usize,
) -> anyhow::Result<Vec<(Source, Input)>> {
    let config = WeirConfig::load(config_path)?;
    if config.kafka.brokers.0 == "embedded" {
        bail!(
            "{} uses the embedded cluster, which lives inside a running weir process: point [kafka] brokers (or KAFKA_BROKERS) at a real cluster to diff over its records",
            config_path.display()
        );
    }
    let brokers = Brokers::connect(&config)?;
    brokers.check_reachable(&config)?;
    let consumer: BaseConsumer = reader_config(&brokers.client_config(&config)).create()?;
    let metadata = consumer.fetch_metadata(Some(topic), CONNECT_TIMEOUT)?;
    let Some(meta) = metadata.topics().first().filter(|t| t.error().is_none()) else {
        bail!("topic {topic} does not exist on {}", brokers.bootstrap);
    };
    let mut ranges = BTreeMap::new();
    for partition in meta.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, partition.id(), CONNECT_TIMEOUT)?;
        ranges.insert(partition.id(), (low, high));
    }
    let plan = plan_latest(&ranges, limit);
    let mut tpl = TopicPartitionList::new();
    for (&partition, &(start, end)) in &plan {
        if start < end {
            tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
        }
    }
    let mut events = Vec::new();
    if tpl.count() > 0 {
        consumer.assign(&tpl)?;
        let mut remaining: BTreeMap<i32, i64> = plan
            .iter()
            .filter(|(_, (s, e))| s < e)
            .map(|(&p, &(_, e))| (p, e))
            .collect();
        while !remaining.is_empty() {
            match consumer.poll(Duration::from_secs(10)) {
                Some(Ok(message)) => {
                    let (partition, offset) = (message.partition(), message.offset());
                    let Some(&end) = remaining.get(&partition) else {
                        continue;
                    };
                    if offset < end {
                        events.push((
                            Source::Record { partition, offset },
                            Input::Event(Event {
                                topic: topic.to_owned(),
                                partition,
                                offset,
                                timestamp_ms: message.timestamp().to_millis(),
                                key: message.key().map(<[u8]>::to_vec),
                                value: message.payload().map(<[u8]>::to_vec),
                                headers: headers_of(&message),
                            }),
                        ));
                    }
                    if offset + 1 >= end {
                        remaining.remove(&partition);
                    }
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                    remaining.remove(&partition);
                }
                Some(Err(error)) => bail!("reading {topic}: {error}"),
                None => bail!("reading {topic}: no record within 10s; the broker may be unhealthy"),
            }
        }
    }
    events.sort_by_key(|(source, _)| *source);
    eprintln!(
        "weir diff: read {} record(s) of {topic} ({} partition(s))",
        events.len(),
        plan.values().filter(|(s, e)| s < e).count()
    );
    Ok(events)
}

/// A consumer that reads what it is assigned and never commits or joins a group.
fn reader_config(base: &ClientConfig) -> ClientConfig {
    let mut config = base.clone();
    config
        .set("group.id", format!("weir-diff-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    config
}

/// Per partition, the offsets `[start, end)` of the latest records, `limit` in all,
/// spread evenly: taken one at a time from the end of the partition that gave the
/// fewest so far and still has some.
fn plan_latest(ranges: &BTreeMap<i32, (i64, i64)>, limit: usize) -> BTreeMap<i32, (i64, i64)> {
    let mut plan: BTreeMap<i32, (i64, i64)> = ranges
        .iter()
        .map(|(&p, &(_, high))| (p, (high, high)))
        .collect();
    let mut left = limit;
    while left > 0 {
        let next = plan
            .iter()
            .filter(|(p, (start, _))| *start > ranges[p].0)
            .min_by_key(|(p, (start, end))| (end - start, **p))
            .map(|(&p, _)| p);
        let Some(partition) = next else { break };
        if let Some(range) = plan.get_mut(&partition) {
            range.0 -= 1;
        }
        left -= 1;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_records_are_spread_over_the_partitions() {
        let ranges = BTreeMap::from([(0, (0, 10)), (1, (5, 7)), (2, (3, 3))]);
        let plan = plan_latest(&ranges, 6);
        assert_eq!(plan[&0], (6, 10));
        assert_eq!(plan[&1], (5, 7));
        assert_eq!(plan[&2], (3, 3));
        let all = plan_latest(&ranges, 100);
        assert_eq!(all[&0], (0, 10));
        assert_eq!(all[&1], (5, 7));
    }
}
