//! The dead-letter record: the original key, value and headers, plus `weir.*`
//! headers saying what failed, where and when (SPEC §4).

use std::time::SystemTime;

use crate::plugin::Header;

/// The names of the `weir.*` headers of a DLQ record (SPEC §4), in the order they
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
        let mut message = self.message;
        if message.len() > MESSAGE_MAX {
            let mut end = MESSAGE_MAX;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message = &message[..end];
        }
        let failed_at = humantime::format_rfc3339_millis(self.failed_at).to_string();
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
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn keeps_original_headers_and_adds_weir_ones() {
        let letter = DeadLetter {
            reason: "invalid",
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
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MESSAGE_MAX);
        let letter = DeadLetter {
            reason: "trap",
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
