//! The dead-letter record: the original key, value and headers, plus `weir.*`
//! headers saying what failed, where and when (docs/reference.md §7).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::record::Header;

/// The names of the `weir.*` headers of a DLQ record (docs/reference.md §7). in the order they
/// are added.
pub mod header {
    pub const REASON: &str = "weir.error.reason";
    pub const MESSAGE: &str = "weir.error.message";
    pub const SOURCE_TOPIC: &str = "weir.source.topic";
    pub const SOURCE_PARTITION: &str = "weir.source.partition";
    pub const SOURCE_OFFSET: &str = "weir.source.offset";
    pub const PIPELINE: &str = "weir.pipeline";
    pub const PLUGIN: &str = "weir.plugin";
    pub const ATTEMPTS: &str = "weir.attempts";
    pub const FAILED_AT: &str = "weir.failed-at";
    /// Added by `weir dlq replay`: how often the record was replayed.
    pub const REPLAYED: &str = "weir.replayed";
    /// On a dead letter too large for its topic: what was left out of it (`value`,
    /// `value,headers` or `value,headers,key`). `weir dlq replay` reads such a
    /// record's original from its source topic.
    pub const CUT: &str = "weir.cut";
}

/// What a DLQ record's `weir.*` headers say, as `weir dlq` reads them back. Any
/// header may be missing or garbled (a record someone else wrote): the field is
/// then `None`. When a header repeats, the last one counts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reading {
    pub reason: Option<String>,
    pub message: Option<String>,
    pub source_topic: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub pipeline: Option<String>,
    pub plugin: Option<String>,
    pub attempts: Option<u32>,
    pub failed_at: Option<String>,
    /// Replays so far (0 when the header is missing or garbled).
    pub replayed: u32,
    /// What was left out of the letter to make it fit, if anything.
    pub cut: Option<String>,
}

/// Reads the `weir.*` headers of a DLQ record.
pub fn read(headers: &[Header]) -> Reading {
    let text = |key: &str| {
        headers
            .iter()
            .rev()
            .find(|h| h.key == key)
            .and_then(|h| std::str::from_utf8(&h.value).ok())
            .map(str::to_owned)
    };
    Reading {
        reason: text(header::REASON),
        message: text(header::MESSAGE),
        source_topic: text(header::SOURCE_TOPIC),
        source_partition: text(header::SOURCE_PARTITION).and_then(|v| v.parse().ok()),
        source_offset: text(header::SOURCE_OFFSET).and_then(|v| v.parse().ok()),
        pipeline: text(header::PIPELINE),
        plugin: text(header::PLUGIN),
        attempts: text(header::ATTEMPTS).and_then(|v| v.parse().ok()),
        failed_at: text(header::FAILED_AT),
        replayed: text(header::REPLAYED)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        cut: text(header::CUT),
    }
}

/// The headers a replayed record is sent with: the originals without `weir.*`,
/// then `weir.replayed` counting the replays.
pub fn for_replay(headers: &[Header]) -> Vec<Header> {
    let replayed = read(headers).replayed.saturating_add(1);
    headers
        .iter()
        .filter(|h| !h.key.starts_with("weir."))
        .cloned()
        .chain(std::iter::once(Header {
            key: header::REPLAYED.to_owned(),
            value: replayed.to_string().into_bytes(),
        }))
        .collect()
}

/// Everything a DLQ record says about a failure.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub reason: &'a str,
    pub message: &'a str,
    pub source_topic: &'a str,
    pub source_partition: i32,
    pub source_offset: i64,
    pub pipeline: &'a str,
    /// `name sha256:<hex>` of the plugin version that failed.
    pub plugin: &'a str,
    pub attempts: u32,
    pub failed_at: SystemTime,
}

/// Longest `weir.error.message` kept, in bytes.
const MESSAGE_MAX: usize = 8 * 1024;

impl DeadLetter<'_> {
    /// The DLQ record's headers: the originals, in order, then the `weir.*` ones.
    pub fn headers(&self, original: &[Header]) -> Vec<Header> {
        let message = &self.message[..self.message.floor_char_boundary(MESSAGE_MAX)];
        // humantime writes 1970 to 9999 only, and panics outside: a clock set
        // wrong must not stop a dead letter.
        let latest = UNIX_EPOCH + Duration::from_millis(253_402_300_799_999);
        let failed_at = self.failed_at.clamp(UNIX_EPOCH, latest);
        let failed_at = humantime::format_rfc3339_millis(failed_at).to_string();
        let mut headers = original.to_vec();
        for (key, value) in [
            (header::REASON, self.reason),
            (header::MESSAGE, message),
            (header::SOURCE_TOPIC, self.source_topic),
            (header::SOURCE_PARTITION, &self.source_partition.to_string()),
            (header::SOURCE_OFFSET, &self.source_offset.to_string()),
            (header::PIPELINE, self.pipeline),
            (header::PLUGIN, self.plugin),
            (header::ATTEMPTS, &self.attempts.to_string()),
            (header::FAILED_AT, &failed_at),
        ] {
            headers.push(Header {
                key: key.to_owned(),
                value: value.as_bytes().to_vec(),
            });
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::DlqReason;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn keeps_original_headers_and_adds_weir_ones() {
        let letter = DeadLetter {
            reason: DlqReason::Invalid.as_str(),
            message: "payload.title: must not be empty",
            source_topic: "task-events",
            source_partition: 3,
            source_offset: 42,
            pipeline: "reminders",
            plugin: "task_validator sha256:abc",
            attempts: 1,
            failed_at: UNIX_EPOCH + Duration::from_millis(1_795_683_600_123),
        };
        let original = vec![Header {
            key: "trace".into(),
            value: b"t-1".to_vec(),
        }];
        let headers = letter.headers(&original);
        let get = |k: &str| {
            headers
                .iter()
                .find(|h| h.key == k)
                .map(|h| String::from_utf8(h.value.clone()).unwrap())
        };
        assert_eq!(headers[0].key, "trace");
        assert_eq!(get("weir.error.reason").as_deref(), Some("invalid"));
        assert_eq!(get("weir.source.partition").as_deref(), Some("3"));
        assert_eq!(get("weir.source.offset").as_deref(), Some("42"));
        assert_eq!(get("weir.attempts").as_deref(), Some("1"));
        assert_eq!(
            get("weir.failed-at").as_deref(),
            Some("2026-11-26T09:00:00.123Z")
        );
        assert_eq!(headers.len(), 10);
    }

    #[test]
    fn what_is_written_reads_back_and_replays_count() {
        let letter = DeadLetter {
            reason: DlqReason::Timeout.as_str(),
            message: "too slow",
            source_topic: "in",
            source_partition: 2,
            source_offset: 9,
            pipeline: "p",
            plugin: "x sha256:00",
            attempts: 3,
            failed_at: UNIX_EPOCH,
        };
        let original = vec![Header {
            key: "k".into(),
            value: b"v".to_vec(),
        }];
        let headers = letter.headers(&original);
        let reading = read(&headers);
        assert_eq!(reading.reason.as_deref(), Some("timeout"));
        assert_eq!(reading.source_partition, Some(2));
        assert_eq!(reading.source_offset, Some(9));
        assert_eq!(reading.attempts, Some(3));
        assert_eq!(reading.replayed, 0);
        let replay = for_replay(&headers);
        assert_eq!(replay[0].key, "k");
        assert_eq!(read(&replay).replayed, 1);
        assert_eq!(read(&for_replay(&replay)).replayed, 2);
        assert!(
            replay
                .iter()
                .all(|h| h.key == "k" || h.key == header::REPLAYED)
        );
    }

    #[test]
    fn garbled_headers_read_as_missing() {
        let headers = vec![
            Header {
                key: header::SOURCE_OFFSET.into(),
                value: b"not a number".to_vec(),
            },
            Header {
                key: header::REASON.into(),
                value: vec![0xff, 0xfe],
            },
            Header {
                key: header::REPLAYED.into(),
                value: b"99999999999999999999".to_vec(),
            },
        ];
        let reading = read(&headers);
        assert_eq!(reading.source_offset, None);
        assert_eq!(reading.reason, None);
        assert_eq!(reading.replayed, 0);
    }

    #[test]
    fn a_clock_out_of_range_is_clamped_not_a_panic() {
        let at = |failed_at| {
            let letter = DeadLetter {
                failed_at,
                ..letter_at(UNIX_EPOCH)
            };
            read(&letter.headers(&[])).failed_at.unwrap()
        };
        let far = Duration::from_secs(400_000_000_000);
        assert_eq!(at(UNIX_EPOCH - far), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(UNIX_EPOCH + far), "9999-12-31T23:59:59.999Z");
    }

    fn letter_at(failed_at: SystemTime) -> DeadLetter<'static> {
        DeadLetter {
            reason: DlqReason::Trap.as_str(),
            message: "m",
            source_topic: "t",
            source_partition: 0,
            source_offset: 0,
            pipeline: "p",
            plugin: "x",
            attempts: 1,
            failed_at,
        }
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MESSAGE_MAX);
        let letter = DeadLetter {
            reason: DlqReason::Trap.as_str(),
            message: &long,
            source_topic: "t",
            source_partition: 0,
            source_offset: 0,
            pipeline: "p",
            plugin: "x",
            attempts: 5,
            failed_at: SystemTime::now(),
        };
        let headers = letter.headers(&[]);
        let message = &headers[1].value;
        assert!(message.len() <= MESSAGE_MAX);
        assert!(std::str::from_utf8(message).is_ok());
    }
}
