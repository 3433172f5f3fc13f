//! Exactly-once pipelines against Apache Kafka: crashes, a zombie instance and a
//! rebalance under load, each followed by a `read_committed` reader (an independent
//! client) that must find every valid input's output once, every invalid input in
//! the DLQ once, and every input offset committed.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::kafka::*;
use common::todo::*;
use todo_events::sample::{SampleEvent, generate};

const EXACTLY_ONCE: &str = r#"delivery = "exactly-once""#;

/// Reads `updates` and `dlq` with `read_committed` and asserts each valid sample's
/// update is there exactly once and each invalid sample's dead letter too.
fn assert_exactly_once(brokers: &str, samples: &[SampleEvent], updates: &str, dlq: &str) {
    let valid = valid_event_ids(samples);
    let got = read_topic(brokers, updates, valid.len(), Duration::from_secs(60));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in &got {
        *counts
            .entry(header(m, "event_id").expect("event_id header").to_owned())
            .or_default() += 1;
    }
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "duplicates: {doubled:?}");
    let missing: Vec<_> = valid
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} valid inputs lost: {missing:?}",
        missing.len()
    );
    assert_eq!(got.len(), valid.len(), "nothing else on the output");

    // Invalid inputs by their unique `trace` header (values may repeat).
    let invalid: Vec<String> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.valid)
        .map(|(i, _)| format!("t-{i}"))
        .collect();
    let dead = read_topic(brokers, dlq, invalid.len(), Duration::from_secs(30));
    let mut dead_counts: HashMap<&str, usize> = HashMap::new();
    for m in &dead {
        assert_eq!(header(m, "weir.error.reason"), Some("invalid"));
        *dead_counts
            .entry(header(m, "trace").expect("trace"))
            .or_default() += 1;
    }
    for trace in &invalid {
        assert_eq!(
            dead_counts.get(trace.as_str()),
            Some(&1),
            "invalid input {trace} dead-lettered once"
        );
    }
    assert_eq!(dead.len(), invalid.len(), "nothing else in the DLQ");
}

fn assert_all_committed(brokers: &str, group: &str, input: &str) {
    let committed = committed(brokers, group, input);
    for (partition, high) in high_watermarks(brokers, input) {
        assert_eq!(
            committed.get(&partition).copied().unwrap_or(0),
            high,
            "partition {partition} committed up to its end"
        );
    }
}

#[test]
fn exactly_once_survives_being_killed_twice() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text, input, updates, dlq, group) = ui_sync_config_with(brokers, EXACTLY_ONCE);
    let config = write_config(dir.path(), &text);
    let samples = generate(6000, 61, start());
    let mut weir = Weir::start(&config, dir.path(), "first");
    weir.wait_ready(1);
    let traffic = trickle(
        brokers,
        &input,
        records(&samples),
        300,
        Duration::from_millis(300),
    );
    for (round, at_least) in [(1, 500), (2, 2500)] {
        wait_until(SETTLE, "some progress", || {
            committed(brokers, &group, &input).values().sum::<i64>() >= at_least
        });
        std::thread::sleep(Duration::from_millis(150));
        weir.kill();
        weir = Weir::start(&config, dir.path(), &format!("restart-{round}"));
        weir.wait_ready(1);
    }
    traffic.join().unwrap();
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);
    assert_exactly_once(brokers, &samples, &updates, &dlq);
    assert_all_committed(brokers, &group, &input);
    assert_eq!(weir.terminate(), Some(0));
}

#[test]
fn a_zombie_is_fenced_and_writes_nothing() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text, input, updates, dlq, group) = ui_sync_config_with(brokers, EXACTLY_ONCE);
    let config = write_config(dir.path(), &text);
    let samples = generate(5000, 67, start());
    let zombie = Weir::start(&config, dir.path(), "zombie");
    zombie.wait_ready(1);
    let heir = Weir::start(&config, dir.path(), "heir");
    wait_until(SETTLE, "both instances to hold partitions", || {
        zombie.log_text().matches("partitions assigned").count() >= 2
            && heir.log_text().contains("partitions assigned")
    });
    let traffic = trickle(
        brokers,
        &input,
        records(&samples),
        250,
        Duration::from_millis(400),
    );
    wait_until(SETTLE, "some progress", || {
        committed(brokers, &group, &input).values().sum::<i64>() > 300
    });
    // Frozen past the session timeout (6 s): the group gives its partitions to the
    // heir, and the coordinator aborts its open transaction.
    zombie.signal(libc::SIGSTOP);
    wait_until(SETTLE, "the heir to take every partition", || {
        heir.log_text()
            .lines()
            .rev()
            .find(|l| l.contains("partitions assigned"))
            .is_some_and(|l| l.contains("[0, 1, 2, 3, 4, 5]"))
    });
    std::thread::sleep(Duration::from_secs(12));
    zombie.signal(libc::SIGCONT);
    traffic.join().unwrap();
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);
    wait_until(
        Duration::from_secs(60),
        "the zombie to say it was fenced",
        || zombie.log_text().contains("fenced"),
    );
    assert_exactly_once(brokers, &samples, &updates, &dlq);
    assert_all_committed(brokers, &group, &input);
    assert_eq!(heir.terminate(), Some(0));
    assert_eq!(zombie.terminate(), Some(0));
}

#[test]
fn a_rebalance_under_load_stays_exactly_once() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text, input, updates, dlq, group) = ui_sync_config_with(brokers, EXACTLY_ONCE);
    let config = write_config(dir.path(), &text);
    let samples = generate(6000, 71, start());
    let a = Weir::start(&config, dir.path(), "a");
    a.wait_ready(1);
    let b = Weir::start(&config, dir.path(), "b");
    b.wait_ready(1);
    let traffic = trickle(
        brokers,
        &input,
        records(&samples),
        300,
        Duration::from_millis(250),
    );
    wait_until(SETTLE, "some progress", || {
        committed(brokers, &group, &input).values().sum::<i64>() > 1000
    });
    let c = Weir::start(&config, dir.path(), "c");
    c.wait_ready(1);
    traffic.join().unwrap();
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);
    assert_exactly_once(brokers, &samples, &updates, &dlq);
    assert_all_committed(brokers, &group, &input);
    let metrics_seen = [&a, &b, &c]
        .iter()
        .any(|w| w.log_text().contains("partitions revoked"));
    assert!(metrics_seen, "the third instance caused a rebalance");
    for weir in [a, b, c] {
        assert_eq!(weir.terminate(), Some(0));
    }
}
