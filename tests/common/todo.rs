//! The Todo deployment in end-to-end tests: sample inputs as records, a ui-sync
//! pipeline on fresh topics, and what "every input accounted for" means.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::message::{Message, OwnedMessage};
use serde_json::Value;
use todo_events::sample::SampleEvent;

use super::kafka::*;

pub const SETTLE: Duration = Duration::from_secs(120);

pub fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub fn records(samples: &[SampleEvent]) -> Vec<Record> {
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                Some(s.key.clone()),
                Some(s.value.clone()),
                vec![("trace".to_owned(), format!("t-{i}"))],
            )
        })
        .collect()
}

/// Asserts every valid sample came out on `updates` (possibly more than once, then
/// byte-identical) and every invalid one on `dlq`.
pub fn assert_all_accounted(brokers: &str, samples: &[SampleEvent], updates: &str, dlq: &str) {
    let valid: HashSet<String> = samples
        .iter()
        .filter(|s| s.valid)
        .map(|s| {
            serde_json::from_slice::<Value>(&s.value).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let got = read_topic(brokers, updates, valid.len(), SETTLE);
    let mut seen: HashMap<String, &OwnedMessage> = HashMap::new();
    for m in &got {
        let id = header(m, "event_id").unwrap().to_owned();
        if let Some(first) = seen.get(&id) {
            assert_eq!(first.key(), m.key(), "duplicate of {id} differs");
            assert_eq!(first.payload(), m.payload(), "duplicate of {id} differs");
        }
        seen.insert(id, m);
    }
    let seen: HashSet<String> = seen.into_keys().collect();
    assert_eq!(seen, valid, "every valid input is accounted for");
    let invalid: HashSet<&[u8]> = samples
        .iter()
        .filter(|s| !s.valid)
        .map(|s| s.value.as_slice())
        .collect();
    let dead = read_topic(brokers, dlq, invalid.len(), SETTLE);
    let dead_values: HashSet<&[u8]> = dead.iter().map(|m| m.payload().unwrap()).collect();
    assert_eq!(
        dead_values, invalid,
        "every invalid input is in the DLQ, and nothing else"
    );
    for m in &dead {
        assert_eq!(header(m, "weir.error.reason"), Some("invalid"));
    }
}

/// The ui-sync pipeline alone on fresh topics: (config, input, updates, dlq, group).
pub fn ui_sync_config(brokers: &str) -> (String, String, String, String, String) {
    ui_sync_config_with(brokers, "")
}

/// [`ui_sync_config`] with more pipeline keys (e.g. `delivery = "exactly-once"`).
pub fn ui_sync_config_with(brokers: &str, keys: &str) -> (String, String, String, String, String) {
    let input = unique("tasks");
    let updates = unique("updates");
    let group = format!("{input}-group");
    let text = format!(
        r#"{kafka}
[topics.{input}]
partitions = 6
[topics.{updates}]
partitions = 6

[[pipeline]]
name = "ui-sync"
input = "{input}"
group = "{group}"
plugins = [{{ path = "{validator}" }}, {{ path = "{projector}" }}]
outputs = {{ task-updates = "{updates}" }}
{keys}
"#,
        kafka = kafka_section(brokers),
        validator = wasm("task_validator"),
        projector = wasm("ui_projector"),
    );
    let dlq = format!("{input}.ui-sync.dlq");
    (text, input, updates, dlq, group)
}
