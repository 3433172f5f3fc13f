//! The changelog: how a slot's changes are written to its compacted topic, read
//! back, and restored into a [`Table`].
//!
//! One topic per stateful slot, `<group>.<pipeline>.<slot>.changelog`, with the
//! input's partition count: the changes a record makes go to the partition of its
//! source partition. The record key says what changed, so compaction keeps the
//! latest of each entry and timer:
//!
//! ```text
//! key   = kind (b'S' entry, b'T' timer) || has-key (0|1) || key length (u32 BE) || key || name
//! value = 1 || entry value                          (an entry)
//!       = 1 || due ms (i64 BE) || payload            (a timer)
//!       = 2 || due ms (i64 BE) || link || payload    (a timer set by a traced span)
//!       = null                                       (deleted: a tombstone)
//! ```
//!
//! `link` is the setting span's trace id (16 bytes), span id (8) and flags (1):
//! the fired timer's span links to it, across restarts.
//!
//! The leading version byte keeps a set value of zero bytes from being empty.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::slot::{Change, ScopeKey};

const ENTRY: u8 = b'S';
const TIMER: u8 = b'T';
const VERSION: u8 = 1;
/// A timer value with the link of the span that set it.
const LINKED: u8 = 2;

/// The changelog topic of slot `slot` of pipeline `pipeline` in group `group`.
pub fn topic(group: &str, pipeline: &str, slot: &str) -> String {
    format!("{group}.{pipeline}.{slot}.changelog")
}

/// The id of a slot: `<i>` for the i-th plugin of the shared chain, `<branch>.<i>`
/// for the i-th plugin of a branch.
pub fn slot_id(branch: Option<&str>, index: usize) -> String {
    match branch {
        None => index.to_string(),
        Some(branch) => format!("{branch}.{index}"),
    }
}

fn encode_key(kind: u8, key: &ScopeKey, name: &str) -> Vec<u8> {
    let k = key.as_deref().unwrap_or_default();
    let mut out = Vec::with_capacity(6 + k.len() + name.len());
    out.push(kind);
    out.push(u8::from(key.is_some()));
    out.extend_from_slice(&(k.len() as u32).to_be_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(name.as_bytes());
    out
}

/// A change as a changelog record's key and value.
pub fn encode(change: &Change) -> (Vec<u8>, Option<Vec<u8>>) {
    match change {
        Change::Entry { key, name, value } => (
            encode_key(ENTRY, key, name),
            value.as_ref().map(|v| {
                let mut out = Vec::with_capacity(1 + v.len());
                out.push(VERSION);
                out.extend_from_slice(v);
                out
            }),
        ),
        Change::Timer {
            key,
            name,
            due,
            link,
        } => (
            encode_key(TIMER, key, name),
            due.as_ref().map(|(at, payload)| {
                let mut out = Vec::with_capacity(34 + payload.len());
                out.push(if link.is_some() { LINKED } else { VERSION });
                out.extend_from_slice(&at.to_be_bytes());
                if let Some(link) = link {
                    out.extend_from_slice(link);
                }
                out.extend_from_slice(payload);
                out
            }),
        ),
    }
}

/// Why a changelog record could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("changelog record not written by weir: {0}")]
pub struct Malformed(&'static str);

/// A changelog record's key and value as a change.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Change, Malformed> {
    let [kind, has_key, rest @ ..] = key else {
        return Err(Malformed("key shorter than its header"));
    };
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or(Malformed("key shorter than its header"))?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(Malformed("key shorter than its length says"));
    }
    let (k, name) = rest.split_at(len);
    let key = (*has_key == 1).then(|| k.to_vec());
    let name = String::from_utf8(name.to_vec()).map_err(|_| Malformed("name not UTF-8"))?;
    let (body, linked) = match value {
        None => (None, false),
        Some([VERSION, body @ ..]) => (Some(body), false),
        Some([LINKED, body @ ..]) if *kind == TIMER => (Some(body), true),
        Some(_) => return Err(Malformed("unknown value version")),
    };
    match *kind {
        ENTRY => Ok(Change::Entry {
            key,
            name,
            value: body.map(<[u8]>::to_vec),
        }),
        TIMER => {
            let mut link = None;
            let due = match body {
                None => None,
                Some(body) => {
                    let (at, mut payload) = body
                        .split_first_chunk::<8>()
                        .ok_or(Malformed("timer value shorter than its due time"))?;
                    if linked {
                        let (l, rest) = payload
                            .split_first_chunk::<25>()
                            .ok_or(Malformed("timer value shorter than its link"))?;
                        link = Some(*l);
                        payload = rest;
                    }
                    Some((i64::from_be_bytes(*at), payload.to_vec()))
                }
            };
            Ok(Change::Timer {
                key,
                name,
                due,
                link,
            })
        }
        _ => Err(Malformed("unknown kind")),
    }
}

/// How a restore went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Restored {
    /// Changelog records read.
    pub records: u64,
    /// Records loaded from the local store.
    pub from_store: u64,
    pub seconds: f64,
    /// The offset the read reached: the next one to read.
    pub end: i64,
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot read changelog {topic} partition {partition}: {source}")]
    Kafka {
        topic: String,
        partition: i32,
        source: KafkaError,
    },
    #[error("changelog {topic} partition {partition} offset {offset}: {source}")]
    Malformed {
        topic: String,
        partition: i32,
        offset: i64,
        source: Malformed,
    },
    #[error(
        "changelog {topic} partition {partition}: what is committed ends at offset {end}, the log at {high}, and no transaction ended in time (a producer that died leaves one open until the coordinator aborts it, after its transaction.timeout.ms)"
    )]
    OpenTransaction {
        topic: String,
        partition: i32,
        end: i64,
        high: i64,
    },
    #[error("stopped")]
    Stopped,
}

/// How long a restore waits for open transactions on its changelog partition to
/// end (weir's own producers abort theirs after 10 s).
const OPEN_TRANSACTION_WAIT: Duration = Duration::from_secs(60);

/// A changelog partition's first and next offsets: the log's real end (its high
/// watermark, `read_uncommitted`), not the end of what is committed so far.
pub fn watermarks(
    client: &ClientConfig,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), RestoreError> {
    let kafka = |source| RestoreError::Kafka {
        topic: topic.to_owned(),
        partition,
        source,
    };
    let consumer: BaseConsumer<Reader> = client
        .clone()
        .set("group.id", "weir-state-restore")
        .set("isolation.level", "read_uncommitted")
        .create_with_context(Reader)
        .map_err(kafka)?;
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(30))
        .map_err(kafka)
}

/// Reads changelog `topic` partition `partition` from `from` (`None`: its start)
/// to its end (`read_committed`: an exactly-once pipeline's aborted changes are
/// skipped, and an open transaction holds the end back until it ends), handing
/// each record's key and value to `apply`. `stopped` is polled between polls.
pub fn restore(
    client: &ClientConfig,
    topic: &str,
    partition: i32,
    from: Option<i64>,
    mut apply: impl FnMut(&[u8], Option<&[u8]>) -> Result<(), Malformed>,
    stopped: impl Fn() -> bool,
) -> Result<Restored, RestoreError> {
    let started = Instant::now();
    let kafka = |source| RestoreError::Kafka {
        topic: topic.to_owned(),
        partition,
        source,
    };
    let consumer: BaseConsumer<Reader> = client
        .clone()
        .set("group.id", "weir-state-restore")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        // Bounds what a restore buffers ahead of applying it.
        .set("queued.max.messages.kbytes", "16384")
        // The broker answers a fetch at the end of a partition at once, so that
        // the end (EOF) is seen without waiting out the default 500 ms.
        .set("fetch.wait.max.ms", "10")
        // Whole batches of a partition per fetch: the default 1 MiB holds a
        // restore to a fraction of what the broker can send.
        .set("max.partition.fetch.bytes", "52428800")
        .set("fetch.max.bytes", "52428800")
        .create_with_context(Reader)
        .map_err(kafka)?;
    let mut tpl = TopicPartitionList::new();
    let start = from.map_or(Offset::Beginning, Offset::Offset);
    tpl.add_partition_offset(topic, partition, start)
        .map_err(kafka)?;
    consumer.assign(&tpl).map_err(kafka)?;
    // Read up to the log's end as it is now, not only to the end of what is
    // committed: a transaction left open by a process that died (until the
    // coordinator aborts it) holds back what is committed after it, and a restore
    // that stopped there would miss changes committed since, and fire their timers
    // again. `read_committed` delivers those changes once the transaction ends.
    let (_, high) = watermarks(client, topic, partition)?;
    let mut records = 0u64;
    let mut end = from.unwrap_or(0);
    let mut waiting_since: Option<Instant> = None;
    loop {
        if stopped() {
            return Err(RestoreError::Stopped);
        }
        if let Some(since) = waiting_since
            && since.elapsed() > OPEN_TRANSACTION_WAIT
        {
            return Err(RestoreError::OpenTransaction {
                topic: topic.to_owned(),
                partition,
                end,
                high,
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            None if waiting_since.is_some() => {
                // Aborted records and transaction markers are skipped without
                // being delivered; the position still moves past them.
                if let Some(at) = position(&consumer, topic, partition) {
                    end = end.max(at);
                }
                if end >= high {
                    break;
                }
            }
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => {
                if let Some(at) = position(&consumer, topic, partition) {
                    end = end.max(at);
                }
                if end >= high {
                    break;
                }
                // The committed end is short of the log's end: an open
                // transaction; wait until it ends.
                let since = *waiting_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(1) {
                    tracing::debug!(
                        topic,
                        partition,
                        end,
                        high,
                        "restore waits for an open transaction to end"
                    );
                }
            }
            Some(Err(error)) if is_transient(&error) => {
                tracing::debug!(topic, partition, %error, "restoring");
            }
            Some(Err(error)) => return Err(kafka(error)),
            Some(Ok(message)) => {
                end = message.offset() + 1;
                let Some(key) = message.key() else {
                    continue;
                };
                apply(key, message.payload()).map_err(|source| RestoreError::Malformed {
                    topic: topic.to_owned(),
                    partition,
                    offset: message.offset(),
                    source,
                })?;
                records += 1;
            }
        }
    }
    Ok(Restored {
        records,
        from_store: 0,
        seconds: started.elapsed().as_secs_f64(),
        end,
    })
}

/// Where `consumer` stands in `topic`/`partition`: the next offset it delivers.
fn position(consumer: &BaseConsumer<Reader>, topic: &str, partition: i32) -> Option<i64> {
    let position = consumer.position().ok()?;
    position.find_partition(topic, partition)?.offset().to_raw()
}

/// The changelog reader's client context: the end of a partition is what a restore
/// waits for, not an error to log.
struct Reader;

impl ClientContext for Reader {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::warn!(%error, reason, "changelog reader");
        }
    }
}

impl ConsumerContext for Reader {}

fn is_transient(error: &KafkaError) -> bool {
    !matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownPartition
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_the_round_trip() {
        let changes = [
            Change::Entry {
                key: Some(b"user".to_vec()),
                name: "reminder:1".into(),
                value: Some(vec![]),
            },
            Change::Entry {
                key: None,
                name: "n".into(),
                value: None,
            },
            Change::Timer {
                key: Some(vec![0, 1, 2]),
                name: "t".into(),
                due: Some((-5, b"payload".to_vec())),
                link: None,
            },
            Change::Timer {
                key: Some(vec![0, 1, 2]),
                name: "linked".into(),
                due: Some((7, b"payload".to_vec())),
                link: Some([9; 25]),
            },
            Change::Timer {
                key: Some(vec![]),
                name: String::new(),
                due: None,
                link: None,
            },
        ];
        for change in changes {
            let (key, value) = encode(&change);
            assert_eq!(decode(&key, value.as_deref()), Ok(change));
        }
    }

    #[test]
    fn an_empty_value_is_not_a_tombstone_and_keys_do_not_collide() {
        let set = encode(&Change::Entry {
            key: None,
            name: "a".into(),
            value: Some(vec![]),
        });
        assert_eq!(set.1, Some(vec![VERSION]));
        let none_key = encode_key(ENTRY, &None, "a");
        let empty_key = encode_key(ENTRY, &Some(vec![]), "a");
        assert_ne!(none_key, empty_key);
        assert_ne!(encode_key(ENTRY, &None, "a"), encode_key(TIMER, &None, "a"));
    }

    #[test]
    fn foreign_records_are_refused() {
        assert!(decode(b"", None).is_err());
        assert!(decode(b"X\x00\x00\x00\x00\x00n", Some(b"\x01")).is_err());
        assert!(decode(b"S\x00\x00\x00\x00\x09n", None).is_err());
        assert!(decode(b"S\x00\x00\x00\x00\x00n", Some(b"\x02v")).is_err());
    }
}
