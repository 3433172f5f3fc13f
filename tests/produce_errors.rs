//! Produce errors the broker gives for good, against Apache Kafka: an output over
//! its topic's `max.message.bytes` dead-letters its source record as
//! `produce-rejected` with the broker's error, and every other record flows, in
//! both delivery modes.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::kafka::*;
use common::todo::assert_all_committed;
use rdkafka::message::Message;

const SETTLE: Duration = Duration::from_secs(120);

/// Incompressible text (lz4 cannot shrink it below the topic's limit).
fn noise(len: usize) -> String {
    (0..len)
        .map(|_| fastrand::alphanumeric())
        .collect::<String>()
}

fn run(delivery: &str) {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text, input, output, dlq, group) =
        chaos_config(brokers, 3, "", &format!("delivery = \"{delivery}\""));
    // The output exists before weir starts, with a small record limit.
    create_topic_with(brokers, &output, 3, &[("max.message.bytes", "4000")]);
    let config = write_config(dir.path(), &text);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    let big = [57, 140, 222];
    let records: Vec<Record> = (0..300)
        .map(|i| {
            let value = if big.contains(&i) {
                noise(10_000)
            } else {
                format!("ok-{i}")
            };
            (
                Some(format!("k{}", i % 7)),
                Some(value.into_bytes()),
                vec![("trace".to_owned(), format!("t-{i}"))],
            )
        })
        .collect();
    produce(brokers, &input, &records);
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);

    let outputs = read_topic(brokers, &output, 297, Duration::from_secs(30));
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in &outputs {
        *seen
            .entry(String::from_utf8_lossy(m.payload().unwrap()).into_owned())
            .or_default() += 1;
    }
    for i in (0..300).filter(|i| !big.contains(i)) {
        assert_eq!(seen.get(&format!("ok-{i}")), Some(&1), "ok-{i} once");
    }
    assert_eq!(outputs.len(), 297, "only the records that fit");

    let dead = read_topic(brokers, &dlq, 3, Duration::from_secs(30));
    let mut traces: Vec<&str> = dead.iter().map(|m| header(m, "trace").unwrap()).collect();
    traces.sort_unstable();
    assert_eq!(
        traces,
        ["t-140", "t-222", "t-57"],
        "exactly the big ones, once"
    );
    for m in &dead {
        assert_eq!(header(m, "weir.error.reason"), Some("produce-rejected"));
        let message = header(m, "weir.error.message").unwrap();
        assert!(
            message.contains(&output) && message.to_lowercase().contains("too large"),
            "the broker's error and the topic: {message}"
        );
        assert_eq!(
            m.payload().map(<[u8]>::len),
            Some(10_000),
            "the source record"
        );
    }
    weir.terminate_cleanly();
}

#[test]
fn an_output_too_large_for_its_topic_is_dead_lettered_at_least_once() {
    run("at-least-once");
}

#[test]
fn an_output_too_large_for_its_topic_is_dead_lettered_exactly_once() {
    run("exactly-once");
}

/// Records `big` of `count` carry a value of `size` incompressible bytes, the
/// others a small one; each has a unique `trace` header.
fn inputs(count: usize, big: &[usize], size: usize) -> Vec<Record> {
    (0..count)
        .map(|i| {
            let value = if big.contains(&i) {
                noise(size)
            } else {
                format!("ok-{i}")
            };
            (
                Some(format!("k{}", i % 7)),
                Some(value.into_bytes()),
                vec![("trace".to_owned(), format!("t-{i}"))],
            )
        })
        .collect()
}

/// An output between the Kafka client's `message.max.bytes` (1,000,000) and the
/// default `limits.max-output` (1 MiB): weir's own producer would refuse it. It is
/// a `bad-output` of the plugin, dead-lettered (the letter cut to fit, since the
/// input is as large), and every other record flows; nothing vanishes with its
/// offset committed.
fn an_output_over_the_clients_limit(delivery: &str) {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text, input, output, dlq, group) =
        chaos_config(brokers, 3, "", &format!("delivery = \"{delivery}\""));
    let config = write_config(dir.path(), &text);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    let big = [5, 23, 41];
    produce(brokers, &input, &inputs(60, &big, 1_010_000));
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);

    let outputs = read_topic(brokers, &output, 57, Duration::from_secs(30));
    let mut traces: Vec<&str> = outputs
        .iter()
        .map(|m| header(m, "trace").unwrap())
        .collect();
    traces.sort_unstable();
    traces.dedup();
    assert_eq!(traces.len(), 57, "every small record delivered");
    if delivery == "exactly-once" {
        assert_eq!(outputs.len(), 57, "each once");
    }
    let dead = read_topic(brokers, &dlq, 3, Duration::from_secs(30));
    let mut offsets: Vec<(i32, i64)> = Vec::new();
    for m in &dead {
        assert_eq!(header(m, "weir.error.reason"), Some("bad-output"));
        let message = header(m, "weir.error.message").unwrap();
        assert!(
            message.contains("1000000-byte"),
            "the limit that applies: {message}"
        );
        assert_eq!(header(m, "weir.cut"), Some("value"), "cut to fit");
        assert_eq!(m.payload(), None, "without its value");
        assert!(header(m, "trace").is_some(), "the source's headers kept");
        offsets.push((
            header(m, "weir.source.partition").unwrap().parse().unwrap(),
            header(m, "weir.source.offset").unwrap().parse().unwrap(),
        ));
    }
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(
        offsets.len(),
        3,
        "the three big records, each once: {offsets:?}"
    );
    assert_all_committed(brokers, &group, &input);
    // The metrics say the same, in both modes.
    let metrics = http_get(&weir.ops_address(), "/metrics").1;
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    let produced = format!(
        "weir_records_produced_total{{outcome=\"ok\",pipeline=\"chaos\",topic=\"{output}\"}}"
    );
    assert!(value(&produced) >= 57.0, "{produced}");
    assert!(value("weir_dlq_records_total{pipeline=\"chaos\",reason=\"bad-output\"}") >= 3.0);
    assert!(
        value("weir_end_to_end_latency_seconds_count{pipeline=\"chaos\"}") >= 60.0,
        "every record's latency observed once it is done"
    );
    weir.terminate_cleanly();
}

#[test]
fn an_output_over_the_clients_limit_is_dead_lettered_at_least_once() {
    an_output_over_the_clients_limit("at-least-once");
}

#[test]
fn an_output_over_the_clients_limit_is_dead_lettered_exactly_once() {
    an_output_over_the_clients_limit("exactly-once");
}

/// A dead-letter topic that takes less than the source topic: the letters of the
/// large records are refused, written again cut to the least, and the partition
/// moves on; `weir dlq replay` sends the originals back, read from the source.
fn a_dead_letter_too_large_for_its_topic(delivery: &str) {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    // Every record fails: keep the circuit closed (it would pause for a cooldown).
    let (text, input, _output, dlq, group) = chaos_config(
        brokers,
        3,
        "mode = \"invalid\"",
        &format!("delivery = \"{delivery}\"\ncircuit = {{ failure-ratio = 1.0 }}"),
    );
    create_topic_with(brokers, &dlq, 1, &[("max.message.bytes", "4000")]);
    let config = write_config(dir.path(), &text);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    let big = [7, 33, 71];
    let records = inputs(90, &big, 10_000);
    produce(brokers, &input, &records);
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);

    let dead = read_topic(brokers, &dlq, 90, Duration::from_secs(30));
    let (cut, whole): (Vec<_>, Vec<_>) = dead.iter().partition(|m| header(m, "weir.cut").is_some());
    let mut whole_traces: Vec<&str> = whole.iter().map(|m| header(m, "trace").unwrap()).collect();
    whole_traces.sort_unstable();
    whole_traces.dedup();
    assert_eq!(
        whole_traces.len(),
        87,
        "every small record dead-lettered whole"
    );
    assert!(cut.len() >= 3, "the big ones, cut: {}", cut.len());
    for m in &cut {
        assert_eq!(header(m, "weir.cut"), Some("value,headers,key"));
        assert_eq!(header(m, "weir.error.reason"), Some("invalid"));
        assert_eq!((m.key(), m.payload()), (None, None));
        assert_eq!(header(m, "weir.source.topic"), Some(input.as_str()));
    }
    assert_all_committed(brokers, &group, &input);
    weir.terminate_cleanly();

    // Replay: the cut letters come back whole, from the source topic.
    let before = high_watermarks(brokers, &input).values().sum::<i64>();
    let replay = common::run(
        common::weir()
            .args(["dlq", "replay", "--pipeline", "chaos", "--config"])
            .arg(&config),
    );
    assert!(
        replay.status.success(),
        "weir dlq replay: {}",
        common::stderr(&replay)
    );
    let replayed: Vec<_> = read_topic(brokers, &input, 90 + dead.len(), Duration::from_secs(30))
        .into_iter()
        .filter(|m| header(m, "weir.replayed") == Some("1"))
        .collect();
    assert_eq!(
        replayed.len() as i64,
        high_watermarks(brokers, &input).values().sum::<i64>() - before
    );
    for i in big {
        let trace = format!("t-{i}");
        let copy = replayed
            .iter()
            .find(|m| header(m, "trace") == Some(trace.as_str()))
            .unwrap_or_else(|| panic!("{trace} replayed from its original"));
        assert_eq!(
            copy.payload(),
            records[i].1.as_deref(),
            "{trace}: the original value"
        );
        assert_eq!(
            copy.key().map(<[u8]>::to_vec),
            records[i].0.clone().map(String::into_bytes)
        );
    }
}

#[test]
fn a_dead_letter_too_large_for_its_topic_is_cut_and_replayed_at_least_once() {
    a_dead_letter_too_large_for_its_topic("at-least-once");
}

#[test]
fn a_dead_letter_too_large_for_its_topic_is_cut_and_replayed_exactly_once() {
    a_dead_letter_too_large_for_its_topic("exactly-once");
}

/// The Todo deployment with `task-updates` made beforehand with a small record limit
/// (2,000 bytes, compacted, 3 partitions): whole batches of ordinary updates exceed
/// it, and 11 updates exceed it on their own. Every one of the 11 is dead-lettered
/// as `produce-rejected` in the ui-sync DLQ, every other update is delivered, and
/// every input offset is committed.
#[test]
fn updates_over_a_small_topic_limit_are_dead_lettered_and_the_rest_delivered() {
    small_topic_limit(8, 580);
}

/// The same with the task events of 200 users (keys over every partition).
#[test]
fn updates_of_many_users_over_a_small_topic_limit() {
    small_topic_limit(200, 580);
}

fn small_topic_limit(users: usize, count: usize) {
    use common::todo::*;
    use serde_json::Value;

    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let todo = branched_todo_config(brokers, &wasm("task_validator"), "");
    create_topic_with(
        brokers,
        &todo.updates,
        3,
        &[("max.message.bytes", "2000"), ("cleanup.policy", "compact")],
    );
    let mut samples = todo_events::sample::generate_for_users(count, users, 29, start());
    // Words, as a user would write them: lz4 shrinks them, but not below 2,000.
    let words = [
        "remember", "to", "call", "the", "plumber", "about", "kitchen", "sink",
    ];
    let long: String = (0..6_000)
        .map(|_| words[fastrand::usize(..words.len())])
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(6_000)
        .collect();
    let mut big = Vec::new();
    for (i, sample) in samples.iter_mut().enumerate() {
        if !sample.valid || big.len() == 11 || i % 40 != 7 {
            continue;
        }
        let mut event: Value = serde_json::from_slice(&sample.value).unwrap();
        if event["event_type"] == "task.deleted" {
            continue;
        }
        event["payload"]["description"] = Value::String(long.clone());
        sample.value = serde_json::to_vec(&event).unwrap();
        big.push(format!("t-{i}"));
    }
    assert_eq!(big.len(), 11, "11 large task events among the samples");
    let config = write_config(dir.path(), &todo.text);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    produce(brokers, &todo.input, &records(&samples));
    wait_until(SETTLE, "lag 0", || {
        lag(brokers, &todo.group, &todo.input) == 0
    });

    let event_id = |s: &todo_events::sample::SampleEvent| {
        serde_json::from_slice::<Value>(&s.value).unwrap()["event_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let valid = samples.iter().filter(|s| s.valid).count();
    let updates = read_topic(brokers, &todo.updates, valid - 11, Duration::from_secs(30));
    let mut delivered: Vec<&str> = updates
        .iter()
        .map(|m| header(m, "event_id").unwrap())
        .collect();
    delivered.sort_unstable();
    delivered.dedup();
    let expected: Vec<String> = samples
        .iter()
        .enumerate()
        .filter(|(i, s)| s.valid && !big.contains(&format!("t-{i}")))
        .map(|(_, s)| event_id(s))
        .collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| delivered.binary_search(&id.as_str()).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{} updates never delivered: {missing:?}",
        missing.len()
    );
    assert_eq!(
        delivered.len(),
        expected.len(),
        "no update of a large event delivered"
    );
    let invalid = samples.iter().filter(|s| !s.valid).count();
    let dead = read_topic(brokers, &todo.ui_dlq, invalid + 11, Duration::from_secs(30));
    let mut rejected: Vec<&str> = dead
        .iter()
        .filter(|m| header(m, "weir.error.reason") == Some("produce-rejected"))
        .map(|m| header(m, "trace").unwrap())
        .collect();
    rejected.sort_unstable();
    rejected.dedup();
    let mut big_sorted: Vec<&str> = big.iter().map(String::as_str).collect();
    big_sorted.sort_unstable();
    assert_eq!(
        rejected, big_sorted,
        "exactly the large updates are dead-lettered"
    );
    assert_all_committed(brokers, &todo.group, &todo.input);
    weir.terminate_cleanly();
}
