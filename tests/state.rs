//! Keyed state and timers against Apache Kafka, with the counter test plugin
//! (plugins/testing/counter): state that survives restarts, timers that fire after
//! a SIGKILL, exactly once under exactly-once, the changelog topic as documented,
//! limits that dead-letter a record and keep the host up.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::kafka::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};

/// The outputs whose value starts with `prefix`.
fn with_prefix<'m>(messages: &'m [OwnedMessage], prefix: &str) -> Vec<&'m OwnedMessage> {
    messages
        .iter()
        .filter(|m| value_text(m).starts_with(prefix))
        .collect()
}

fn partition_count(brokers: &str, topic: &str) -> usize {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata
        .topics()
        .iter()
        .find(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().len())
}

/// State and a pending timer survive a SIGKILL: the restarted instance restores the
/// count from the changelog and fires the timer that came due while it was down.
fn state_and_timers_survive_a_kill(policy: &str) {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text_config, input, output, _dlq, group) = counter_config(brokers, policy);
    let config = write_config(dir.path(), &text_config);
    let weir = Weir::start(&config, dir.path(), "first");
    weir.wait_ready(1);
    let changelog = format!("{group}.counter.0.changelog");
    assert_eq!(
        partition_count(brokers, &changelog),
        2,
        "changelog provisioned with the input's partitions"
    );

    let mut records = keyed("alice", &["count", "count", "in 2500 ping"]);
    records.extend(keyed("bob", &["count", "in 500 pong"]));
    produce(brokers, &input, &records);
    let got = read_topic(brokers, &output, 6, Duration::from_secs(30));
    let pong = with_prefix(&got, "fired pong");
    assert_eq!(
        pong.len(),
        1,
        "bob's timer fired once: {:?}",
        got.iter().map(value_text).collect::<Vec<_>>()
    );
    assert!(
        value_text(pong[0]).contains("count=1 payload=pong"),
        "{}",
        value_text(pong[0])
    );
    assert_eq!(pong[0].key(), Some(&b"bob"[..]));
    assert!(header(pong[0], "weir.timer.lateness-ms").is_some());
    assert!(
        with_prefix(&got, "fired ping").is_empty(),
        "ping is not due yet"
    );

    // Killed before alice's timer is due; started again after it is.
    weir.kill();
    std::thread::sleep(Duration::from_secs(3));
    let weir = Weir::start(&config, dir.path(), "second");
    weir.wait_ready(1);
    wait_until(
        Duration::from_secs(30),
        "alice's timer to fire after the restart",
        || {
            !with_prefix(
                &read_topic(brokers, &output, 7, Duration::from_secs(2)),
                "fired ping",
            )
            .is_empty()
        },
    );
    produce(brokers, &input, &keyed("alice", &["count"]));
    let got = read_topic(brokers, &output, 8, Duration::from_secs(30));
    let ping = with_prefix(&got, "fired ping");
    assert!(!ping.is_empty());
    for m in &ping {
        assert!(
            value_text(m).contains("count=2 payload=ping"),
            "{}",
            value_text(m)
        );
    }
    assert_eq!(
        with_prefix(&got, "count=3").len(),
        1,
        "alice's count was restored: {:?}",
        got.iter().map(value_text).collect::<Vec<_>>()
    );
    let metrics = http_get(&weir.ops_address(), "/metrics").1;
    assert!(
        metrics.contains("weir_state_restore_records_total{pipeline=\"counter\"}"),
        "{metrics}"
    );
    // This instance fired one timer (ping) and handled one record.
    assert_eq!(
        metric(
            &weir,
            r#"weir_timers_fired_total{outcome="delivered",pipeline="counter"}"#
        ),
        1.0
    );
    weir.terminate_cleanly();
    let _ = std::fs::remove_dir_all(dir.path());
    let _ = input;
}

#[test]
fn state_and_timers_survive_a_kill_at_least_once() {
    state_and_timers_survive_a_kill("");
}

/// Exactly-once: killed twice while timers are pending, and stopped longer than
/// their due times; a read_committed reader sees each timer fire exactly once and
/// none before its time.
#[test]
fn exactly_once_timers_fire_once_across_kills() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text_config, input, output, _dlq, _group) =
        counter_config(brokers, r#"delivery = "exactly-once""#);
    let config = write_config(dir.path(), &text_config);
    let weir = Weir::start(&config, dir.path(), "first");
    weir.wait_ready(1);
    let keys: Vec<String> = (0..20).map(|i| format!("user-{i}")).collect();
    let mut records = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        records.extend(keyed(key, &["count", &format!("in {} t", 1000 + 400 * i)]));
    }
    let produced_at = common::now_ms();
    produce(brokers, &input, &records);
    std::thread::sleep(Duration::from_millis(2500));
    weir.kill();
    let weir = Weir::start(&config, dir.path(), "second");
    weir.wait_ready(1);
    std::thread::sleep(Duration::from_millis(2000));
    weir.kill();
    std::thread::sleep(Duration::from_secs(5));
    let weir = Weir::start(&config, dir.path(), "third");
    weir.wait_ready(1);
    let expected = keys.len() * 3;
    let got = read_topic(brokers, &output, expected, Duration::from_secs(60));
    let mut fired: HashMap<Vec<u8>, usize> = HashMap::new();
    for m in with_prefix(&got, "fired t") {
        *fired.entry(m.key().unwrap().to_vec()).or_default() += 1;
        let due: i64 = value_text(m)
            .split_whitespace()
            .find_map(|w| w.strip_prefix("due="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            due >= produced_at + 1000,
            "a timer fired for a due time it was not given"
        );
        let at = m.timestamp().to_millis().unwrap();
        assert!(at >= due, "fired at {at}, before its due time {due}");
    }
    for key in &keys {
        assert_eq!(
            fired.get(key.as_bytes()),
            Some(&1),
            "{key}'s timer fired exactly once"
        );
    }
    assert_eq!(
        got.len(),
        expected,
        "{:?}",
        got.iter().map(value_text).collect::<Vec<_>>()
    );
    weir.terminate_cleanly();
}

/// A write past `limits.state-value` dead-letters that record as `state-limit`;
/// the host stays up and the key's state is as it was.
#[test]
fn a_write_past_a_state_limit_is_dead_lettered() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text_config, input, output, dlq, _group) =
        counter_config(brokers, r#"limits = { state-value = "1KiB" }"#);
    let config = write_config(dir.path(), &text_config);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    produce(
        brokers,
        &input,
        &keyed("k", &["count", "big 2000", "count"]),
    );
    let got = read_topic(brokers, &output, 2, Duration::from_secs(30));
    let values: Vec<String> = got.iter().map(value_text).collect();
    assert_eq!(values, ["count=1", "count=2"]);
    let dead = read_topic(brokers, &dlq, 1, Duration::from_secs(30));
    assert_eq!(dead.len(), 1);
    assert_eq!(header(&dead[0], "weir.error.reason"), Some("state-limit"));
    assert!(
        header(&dead[0], "weir.error.message").is_some_and(|m| m.contains("limits.state-value")),
        "{:?}",
        header(&dead[0], "weir.error.message")
    );
    weir.terminate_cleanly();
}

/// A changelog topic whose partition count differs from the input's is refused at
/// start-up, naming both counts.
#[test]
fn a_changelog_with_the_wrong_partition_count_is_refused() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text_config, _input, _output, _dlq, group) = counter_config(brokers, "");
    let changelog = format!("{group}.counter.0.changelog");
    create_topic_with(brokers, &changelog, 1, &[("cleanup.policy", "compact")]);
    let config = write_config(dir.path(), &text_config);
    let mut weir = Weir::start(&config, dir.path(), "weir");
    let code = weir.wait(Duration::from_secs(60));
    assert_ne!(code, Some(0));
    let log = weir.log_text();
    assert!(
        log.contains(&format!("changelog topic {changelog} has 1 partition(s)"))
            && log.contains("has 2"),
        "{log}"
    );
}

/// The value of the metric line that starts with `name` (labels included).
fn metric(weir: &Weir, name: &str) -> f64 {
    let text = http_get(&weir.ops_address(), "/metrics").1;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .map(|v| v.trim().parse::<f64>().unwrap())
        })
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// The local store: a clean restart restores from it and reads only the
/// changelog's tail (nothing); a corrupted store and a deleted one are rebuilt from
/// the changelog, and the count goes on either way.
#[test]
fn the_local_store_makes_a_restart_read_only_the_tail_and_a_bad_one_is_rebuilt() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let stores = dir.path().join("stores");
    let (text_config, input, output, _dlq, _group) = counter_config(brokers, "");
    let text_config = format!("{text_config}\n[state]\ndir = \"{}\"\n", stores.display());
    let config = write_config(dir.path(), &text_config);
    let restored = r#"weir_state_restore_records_total{pipeline="counter"}"#;

    let weir = Weir::start(&config, dir.path(), "first");
    weir.wait_ready(1);
    produce(brokers, &input, &keyed("k", &["count"; 40]));
    read_topic(brokers, &output, 40, Duration::from_secs(30));
    weir.terminate_cleanly();
    let files: Vec<_> = walk(&stores);
    assert!(
        !files.is_empty(),
        "a local store was written under {}",
        stores.display()
    );

    // Clean restart: everything comes from the store, nothing from the changelog.
    let weir = Weir::start(&config, dir.path(), "second");
    weir.wait_ready(1);
    produce(brokers, &input, &keyed("k", &["count"]));
    let got = read_topic(brokers, &output, 41, Duration::from_secs(30));
    assert_eq!(value_text(got.last().unwrap()), "count=41");
    assert_eq!(
        metric(&weir, restored),
        0.0,
        "a clean restart reads no changelog record"
    );
    weir.terminate_cleanly();

    // Corrupted: rebuilt from the whole changelog.
    for file in walk(&stores) {
        std::fs::write(&file, vec![0x5a; 64 << 10]).unwrap();
    }
    let weir = Weir::start(&config, dir.path(), "third");
    weir.wait_ready(1);
    produce(brokers, &input, &keyed("k", &["count"]));
    let got = read_topic(brokers, &output, 42, Duration::from_secs(30));
    assert_eq!(value_text(got.last().unwrap()), "count=42");
    assert!(
        metric(&weir, restored) >= 41.0,
        "the changelog was read whole"
    );
    assert!(
        weir.log_text().contains("rebuilding the local store"),
        "{}",
        weir.log_text()
    );
    weir.terminate_cleanly();

    // Deleted: the same.
    std::fs::remove_dir_all(&stores).unwrap();
    let weir = Weir::start(&config, dir.path(), "fourth");
    weir.wait_ready(1);
    produce(brokers, &input, &keyed("k", &["count"]));
    let got = read_topic(brokers, &output, 43, Duration::from_secs(30));
    assert_eq!(value_text(got.last().unwrap()), "count=43");
    assert!(metric(&weir, restored) >= 42.0);
    weir.terminate_cleanly();
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Two instances share the partitions; one is killed while timers are pending on
/// its partitions. The survivor restores the partitions it takes over and fires
/// their timers, with the counts restored too.
#[test]
fn the_survivor_of_a_kill_restores_the_taken_partitions_and_fires_their_timers() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text_config, input, output, _dlq, _group) = counter_config(brokers, "");
    let config = write_config(dir.path(), &text_config);
    let first = Weir::start(&config, dir.path(), "first");
    first.wait_ready(1);
    let second = Weir::start(&config, dir.path(), "second");
    wait_until(
        Duration::from_secs(60),
        "both instances to hold a partition",
        || {
            second.log_text().contains("partitions assigned")
                && first.log_text().matches("partitions assigned").count() >= 2
        },
    );
    // Keys on both partitions; timers due well after the kill.
    let keys: Vec<String> = (0..12).map(|i| format!("key-{i}")).collect();
    let mut records = Vec::new();
    for key in &keys {
        records.extend(keyed(key, &["count", "count", "in 12000 t"]));
    }
    produce(brokers, &input, &records);
    read_topic(brokers, &output, keys.len() * 3, Duration::from_secs(30));
    first.kill();
    let got = read_topic(brokers, &output, keys.len() * 4, Duration::from_secs(90));
    let fired = with_prefix(&got, "fired t");
    let mut by_key: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
    for m in &fired {
        by_key
            .entry(m.key().unwrap().to_vec())
            .or_default()
            .push(value_text(m));
    }
    for key in &keys {
        let texts = by_key
            .get(key.as_bytes())
            .unwrap_or_else(|| panic!("{key}'s timer never fired\n{}", second.log_text()));
        assert!(
            texts.iter().all(|t| t.contains("count=2")),
            "{key}: {texts:?}"
        );
    }
    assert!(
        second.log_text().contains("restored state"),
        "the survivor restored the partitions it took"
    );
    second.terminate_cleanly();
}

/// A hot reload (here a config change of the plugin) keeps the slot's state and
/// its pending timers: they belong to the slot, not the version.
#[test]
fn a_hot_reload_keeps_state_and_timers() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text_config, input, output, _dlq, _group) = counter_config(brokers, "");
    let config = write_config(dir.path(), &text_config);
    let weir = Weir::start_with(&config, dir.path(), "weir", &["--watch"]);
    weir.wait_ready(1);
    produce(
        brokers,
        &input,
        &keyed("k", &["count", "count", "in 4000 later"]),
    );
    read_topic(brokers, &output, 3, Duration::from_secs(30));
    // The plugin gets a config table: a new version of the stage.
    let changed = text_config.replace("config = {  }", "config = { note = \"v2\" }");
    assert_ne!(
        changed, text_config,
        "the config has a plugin table to change"
    );
    std::fs::write(&config, changed).unwrap();
    wait_until(Duration::from_secs(30), "the reload", || {
        weir.log_text().contains("config change applied")
    });
    produce(brokers, &input, &keyed("k", &["count"]));
    let got = read_topic(brokers, &output, 5, Duration::from_secs(30));
    let values: Vec<String> = got.iter().map(value_text).collect();
    assert!(values.contains(&"count=3".to_owned()), "{values:?}");
    let fired = with_prefix(&got, "fired later");
    assert_eq!(fired.len(), 1, "{values:?}");
    assert!(
        value_text(fired[0]).contains("count=3"),
        "{}",
        value_text(fired[0])
    );
    weir.terminate_cleanly();
}

/// A plugin built against the WIT of before state and timers (weir:plugin@0.1.0)
/// runs unchanged: the same outputs as the same plugin built today.
#[test]
fn a_plugin_built_against_the_old_wit_runs_unchanged() {
    let fixture = common::root().join("tests/fixtures/wit-0.1.0/task_validator.wasm");
    let input = common::root().join("examples/task-events.jsonl");
    let run = |plugin: &std::path::Path| {
        let output = common::run(
            common::weir()
                .args(["test", "--input"])
                .arg(&input)
                .arg(plugin),
        );
        assert!(output.status.success(), "{}", common::stderr(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    let old = run(&fixture);
    assert!(old.lines().count() > 10, "{old}");
    assert_eq!(old, run(&common::plugin("task_validator")));
}
