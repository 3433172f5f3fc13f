//! Produce errors the broker gives for good, against Apache Kafka: an output over
//! its topic's `max.message.bytes` dead-letters its source record as
//! `produce-rejected` with the broker's error, and every other record flows, in
//! both delivery modes.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::kafka::*;
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
    let log = weir.log.clone();
    assert_eq!(
        weir.terminate(),
        Some(0),
        "{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
fn an_output_too_large_for_its_topic_is_dead_lettered_at_least_once() {
    run("at-least-once");
}

#[test]
fn an_output_too_large_for_its_topic_is_dead_lettered_exactly_once() {
    run("exactly-once");
}
