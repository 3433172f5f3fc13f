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

/// The `event_id` of every valid sample, in order.
pub fn valid_event_ids(samples: &[SampleEvent]) -> Vec<String> {
    samples
        .iter()
        .filter(|s| s.valid)
        .map(|s| {
            serde_json::from_slice::<Value>(&s.value).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Asserts every valid sample came out on `updates` (possibly more than once, then
/// byte-identical) and every invalid one on `dlq`.
pub fn assert_all_accounted(brokers: &str, samples: &[SampleEvent], updates: &str, dlq: &str) {
    let valid: HashSet<String> = valid_event_ids(samples).into_iter().collect();
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

/// The branched Todo deployment of `pipelines.toml` on fresh topics: one pipeline
/// `todo` running `validator` as the shared prefix, then the branches `reminders`
/// (the Rust deriver, `lead-time = "15m"`) and `ui-sync` (the Rust projector), each
/// with its own output and dead-letter topic. The output topics are not compacted,
/// so that a test can count every record.
pub struct BranchedTodo {
    pub text: String,
    pub input: String,
    pub group: String,
    pub reminders: String,
    pub updates: String,
    pub reminders_dlq: String,
    pub ui_dlq: String,
}

/// [`BranchedTodo`] with `validator` (a wasm path) as the prefix and `keys` added to
/// the pipeline (e.g. `limits = { memory = "64MiB" }`).
pub fn branched_todo_config(brokers: &str, validator: &str, keys: &str) -> BranchedTodo {
    branched_todo_config_with_lead(brokers, validator, keys, "15m")
}

/// [`branched_todo_config`] with the deriver's `lead-time` set to `lead`.
pub fn branched_todo_config_with_lead(
    brokers: &str,
    validator: &str,
    keys: &str,
    lead: &str,
) -> BranchedTodo {
    let input = unique("task-events");
    let reminders = unique("reminders");
    let updates = unique("task-updates");
    let group = format!("{input}-todo");
    let text = format!(
        r#"{kafka}
[topics.{input}]
partitions = 6
[topics.{reminders}]
partitions = 6
[topics.{updates}]
partitions = 6

{pipeline}"#,
        kafka = kafka_section(brokers),
        pipeline = branched_pipeline_with_lead(
            &input, &group, validator, keys, &reminders, &updates, lead
        ),
    );
    BranchedTodo {
        text,
        reminders_dlq: format!("{input}.reminders.dlq"),
        ui_dlq: format!("{input}.ui-sync.dlq"),
        input,
        group,
        reminders,
        updates,
    }
}

/// The branched Todo pipeline (`todo`: `validator`, then the `reminders` and
/// `ui-sync` branches with the Rust plugins) on these topics, with `keys` added to
/// the pipeline.
pub fn branched_pipeline(
    input: &str,
    group: &str,
    validator: &str,
    keys: &str,
    reminders: &str,
    updates: &str,
) -> String {
    branched_pipeline_with_lead(input, group, validator, keys, reminders, updates, "15m")
}

/// [`branched_pipeline`] with the deriver's `lead-time` set to `lead`.
pub fn branched_pipeline_with_lead(
    input: &str,
    group: &str,
    validator: &str,
    keys: &str,
    reminders: &str,
    updates: &str,
    lead: &str,
) -> String {
    format!(
        r#"[[pipeline]]
name = "todo"
input = "{input}"
group = "{group}"
plugins = [{{ path = "{validator}" }}]
{keys}

[[pipeline.branch]]
name = "reminders"
plugins = [{{ path = "{deriver}", config = {{ lead-time = "{lead}" }} }}]
outputs = {{ reminders = "{reminders}" }}

[[pipeline.branch]]
name = "ui-sync"
plugins = [{{ path = "{projector}" }}]
outputs = {{ task-updates = "{updates}" }}
"#,
        deriver = wasm("reminder_deriver"),
        projector = wasm("ui_projector"),
    )
}

/// The samples as a `weir test` input file, line `i + 1` being what [`records`]
/// produces for sample `i`: the same key, the value's bytes as text (every sample
/// is UTF-8) and the `trace` header `t-i`.
pub fn samples_jsonl(samples: &[SampleEvent]) -> tempfile::NamedTempFile {
    let lines: Vec<Value> = records(samples)
        .into_iter()
        .map(|(key, value, headers)| {
            let value = String::from_utf8(value.expect("a value")).expect("UTF-8 samples");
            let headers: serde_json::Map<String, Value> = headers
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            serde_json::json!({ "key": key, "value": value, "headers": headers })
        })
        .collect();
    super::jsonl(&lines)
}

/// [`samples_jsonl`] for `weir test --now NOW_MS` standing in for a live pipeline at
/// the wall clock `now_ms`: every line is stamped `timestamp-ms` `now_ms`, so the
/// timers each event makes that are due by then fire before the next line (as a
/// partition runner fires them between records), and a last `advance-to` line fires
/// those of the last event. Line `i + 1` is still sample `i`.
pub fn samples_jsonl_at(samples: &[SampleEvent], now_ms: i64) -> tempfile::NamedTempFile {
    use std::io::Write;
    let plain = samples_jsonl(samples);
    let mut file = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .expect("temp file");
    for line in std::fs::read_to_string(plain.path())
        .expect("read the samples")
        .lines()
    {
        let mut line: Value = serde_json::from_str(line).expect("a samples line");
        line["timestamp-ms"] = now_ms.into();
        writeln!(file, "{line}").expect("write temp file");
    }
    writeln!(file, "{}", serde_json::json!({ "advance-to": now_ms })).expect("write temp file");
    file
}

/// Every input's offsets are committed: the group's committed offset of each
/// partition of `input` is its high watermark.
pub fn assert_all_committed(brokers: &str, group: &str, input: &str) {
    let committed = committed(brokers, group, input);
    for (partition, high) in high_watermarks(brokers, input) {
        assert_eq!(
            committed.get(&partition).copied().unwrap_or(0),
            high,
            "partition {partition} of {input} is committed up to its end"
        );
    }
}
