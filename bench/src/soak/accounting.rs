//! Accounting: every output topic read back from the beginning, each record matched
//! to the input it came from (by id, or by the input's `trace` header for dead
//! letters) and tallied against the ledger: found, missing, duplicated, differing,
//! unexpected.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::disturb::Topics;
use super::input::{Ledger, NOT_SENT, REMINDER, VALID, hash_of, uuid_bits};
use super::{SoakArgs, TRACE};
use crate::driver::partitions_of;
use crate::workload::event_id;

/// What one output topic holds, against what the inputs call for.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) records: u64,
    /// Inputs that should have an output here.
    pub(super) expected: u64,
    /// Of those, the ones found at least once.
    pub(super) found: u64,
    /// Records beyond the first for an input.
    pub(super) duplicates: u64,
    /// Duplicates whose bytes differ from the first (for a DLQ: records whose key or
    /// value differ from the input's).
    pub(super) differing: u64,
    /// Records that no input calls for here.
    pub(super) unexpected: u64,
    /// DLQ records by `weir.error.reason`.
    pub(super) reasons: BTreeMap<String, u64>,
}

impl Tally {
    pub(super) fn missing(&self) -> u64 {
        self.expected - self.found
    }
}

pub(super) struct Accounting {
    pub(super) updates: Tally,
    pub(super) reminders: Tally,
    pub(super) reminders_dlq: Tally,
    pub(super) updates_dlq: Tally,
}

fn header<'a>(message: &'a BorrowedMessage<'_>, key: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Reads `topic` from the beginning to its high watermarks.
fn read_all(
    brokers: &str,
    topic: &str,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("soak-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for partition in 0..partitions_of(topic) {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        if high > low {
            ends.insert(partition, high);
        }
        tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut count = 0;
    let mut last = Instant::now();
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                count += 1;
                last = Instant::now();
                each(&message);
                if ends
                    .get(&message.partition())
                    .is_some_and(|&high| message.offset() + 1 >= high)
                {
                    ends.remove(&message.partition());
                }
            }
            Some(Err(error)) => bail!("reading {topic}: {error}"),
            None if last.elapsed() > Duration::from_secs(60) => {
                bail!("reading {topic}: nothing for 60 s after {count} records")
            }
            None => {}
        }
    }
    Ok(count)
}

pub(super) fn account(
    args: &SoakArgs,
    topics: &Topics,
    ledger: &Ledger,
) -> anyhow::Result<Accounting> {
    let sent = ledger.kind.len();
    let is = |index: usize, flag: u8| ledger.kind[index] & (flag | NOT_SENT) == flag;
    let count_expected =
        |pred: &dyn Fn(usize) -> bool| (0..sent).filter(|&i| pred(i)).count() as u64;

    // Outputs found by an id: the task updates (header `event_id`, the input's) and the
    // reminders (value `event_id`, derived from the input's).
    let by_id = |topic: &str, flag: u8, id_of: &dyn Fn(&BorrowedMessage<'_>) -> Option<u128>| {
        let mut tally = Tally {
            expected: count_expected(&|i| is(i, flag)),
            ..Tally::default()
        };
        let mut first: Vec<u64> = vec![0; sent];
        let mut seen: Vec<bool> = vec![false; sent];
        tally.records = read_all(&args.brokers, topic, |m| {
            let index = id_of(m)
                .and_then(|id| ledger.ids.get(&id))
                .map(|&i| i as usize);
            match index {
                Some(i) if is(i, flag) => {
                    let hash = hash_of(m.key(), m.payload());
                    if seen[i] {
                        tally.duplicates += 1;
                        if first[i] != hash {
                            tally.differing += 1;
                        }
                    } else {
                        seen[i] = true;
                        first[i] = hash;
                        tally.found += 1;
                    }
                }
                _ => tally.unexpected += 1,
            }
        })?;
        anyhow::Ok(tally)
    };
    let updates = by_id(&topics.updates, VALID, &|m| {
        header(m, "event_id").and_then(uuid_bits)
    })?;
    let reminders = by_id(&topics.reminders, VALID | REMINDER, &|m| {
        m.payload().and_then(event_id).and_then(uuid_bits)
    })?;

    // Dead letters, found by the input's own `trace` header: every input the
    // validator rejects, in both branches' DLQs, with its key and value.
    let dead = |topic: &str| {
        let invalid = |i: usize| ledger.kind[i] & (VALID | NOT_SENT) == 0;
        let mut tally = Tally {
            expected: count_expected(&invalid),
            ..Tally::default()
        };
        let mut seen: Vec<bool> = vec![false; sent];
        tally.records = read_all(&args.brokers, topic, |m| {
            *tally
                .reasons
                .entry(header(m, "weir.error.reason").unwrap_or("none").to_owned())
                .or_default() += 1;
            let index = header(m, TRACE)
                .and_then(|t| t.parse::<usize>().ok())
                .filter(|&i| i < sent);
            match index {
                Some(i) if invalid(i) => {
                    if hash_of(m.key(), m.payload()) != ledger.hash[i] {
                        tally.differing += 1;
                    }
                    if seen[i] {
                        tally.duplicates += 1;
                    } else {
                        seen[i] = true;
                        tally.found += 1;
                    }
                }
                _ => tally.unexpected += 1,
            }
        })?;
        anyhow::Ok(tally)
    };
    Ok(Accounting {
        updates,
        reminders,
        reminders_dlq: dead(&topics.reminders_dlq)?,
        updates_dlq: dead(&topics.updates_dlq)?,
    })
}
