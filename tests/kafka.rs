//! The Kafka runtime end to end: the real `weir run` binary and real wasm plugins
//! against a real Apache Kafka broker, checked with an independent client.
//! Every test uses its own topics and groups.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta};
use common::kafka::*;
use common::model::reminders_all_due;
use common::todo::*;
use rdkafka::message::{Message, OwnedMessage};
use serde_json::Value;
use todo_events::sample::generate;

fn json(message: &OwnedMessage) -> Value {
    serde_json::from_slice(message.payload().expect("a value")).expect("JSON value")
}

fn value_text(message: &OwnedMessage) -> String {
    String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned()
}

/// The Todo deployment on fresh topics: (config text, input, reminders, updates).
fn todo_config(brokers: &str) -> (String, String, String, String) {
    let input = unique("task-events");
    let reminders = unique("reminders");
    let updates = unique("task-updates");
    let text = format!(
        r#"{kafka}
[topics.{input}]
partitions = 6
retention = "7d"
[topics.{reminders}]
partitions = 6
[topics.{updates}]
partitions = 6
cleanup = "compact"

[[pipeline]]
name = "reminders"
input = "{input}"
group = "{input}-reminders"
plugins = [{{ path = "{validator}" }}, {{ path = "{deriver}", config = {{ lead-time = "15m" }} }}]
outputs = {{ reminders = "{reminders}" }}

[[pipeline]]
name = "ui-sync"
input = "{input}"
group = "{input}-ui-sync"
plugins = [{{ path = "{validator}" }}, {{ path = "{projector}" }}]
outputs = {{ task-updates = "{updates}" }}
"#,
        kafka = kafka_section(brokers),
        validator = wasm("task_validator"),
        deriver = wasm("reminder_deriver"),
        projector = wasm("ui_projector"),
    );
    (text, input, reminders, updates)
}

fn count<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item).or_default() += 1;
    }
    counts
}

fn wait_for_lag_zero(brokers: &str, groups: &[String], input: &str) {
    wait_until(SETTLE, "consumer lag 0", || {
        groups.iter().all(|g| lag(brokers, g, input) == 0)
    });
}

#[test]
fn todo_flow_produces_exactly_what_spec_implies() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text, input, reminders, updates) = todo_config(brokers);
    let config = write_config(dir.path(), &text);
    let samples = generate(2000, 11, start());
    let started_ms = common::now_ms();
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(2);
    produce(brokers, &input, &records(&samples));
    let groups = [format!("{input}-reminders"), format!("{input}-ui-sync")];
    wait_for_lag_zero(brokers, &groups, &input);

    // The model, from the inputs as they sit on the topic: in each partition's order,
    // which keeps each user's (key's) order. The samples are dated before the test
    // runs, so every reminder is due when it is scheduled and triggers right away.
    let inputs = read_topic(brokers, &input, samples.len(), SETTLE);
    assert_eq!(inputs.len(), samples.len());
    let mut valid_events: Vec<Value> = Vec::new();
    let mut want_updates: BTreeMap<(String, String), usize> = BTreeMap::new();
    // Invalid inputs by their unique `trace` header (values may repeat).
    let mut invalid: HashMap<String, &OwnedMessage> = HashMap::new();
    for message in &inputs {
        match serde_json::from_slice::<Value>(message.payload().unwrap())
            .ok()
            .filter(|_| todo_events::TaskEvent::parse(message.payload().unwrap()).is_ok())
        {
            Some(event) => {
                let task = event["payload"]["task_id"].as_str().unwrap().to_owned();
                *want_updates
                    .entry((task, event["event_id"].as_str().unwrap().to_owned()))
                    .or_default() += 1;
                valid_events.push(event);
            }
            None => {
                invalid.insert(header(message, "trace").unwrap().to_owned(), message);
            }
        }
    }
    let want_reminders = count(
        reminders_all_due(&valid_events, TimeDelta::minutes(15), started_ms)
            .iter()
            .map(Value::to_string),
    );
    for kind in [
        "reminder.scheduled",
        "reminder.cancelled",
        "reminder.triggered",
    ] {
        assert!(
            want_reminders.keys().any(|v| v.contains(kind)),
            "the samples give no {kind}"
        );
    }

    let got = read_topic(brokers, &reminders, want_reminders.values().sum(), SETTLE);
    for m in &got {
        let v = json(m);
        assert_eq!(m.key(), v["payload"]["user_id"].as_str().map(str::as_bytes));
        assert_eq!(header(m, "event_type"), v["event_type"].as_str());
        assert_eq!(header(m, "correlation_id"), v["correlation_id"].as_str());
        assert_eq!(
            header(m, "weir.timer.lateness-ms").is_some(),
            v["event_type"] == "reminder.triggered",
            "a triggered reminder, and only one, says how late its timer fired"
        );
    }
    assert_eq!(
        count(got.iter().map(|m| json(m).to_string())),
        want_reminders,
        "reminders differ from the model"
    );

    let got = read_topic(brokers, &updates, want_updates.values().sum(), SETTLE);
    let mut got_updates: BTreeMap<_, usize> = BTreeMap::new();
    for m in &got {
        let key = std::str::from_utf8(m.key().unwrap()).unwrap().to_owned();
        match m.payload() {
            Some(_) => assert_eq!(json(m)["task_id"], key.as_str()),
            None => assert_eq!(
                header(m, "event_type"),
                Some("task.deleted"),
                "only deletions are tombstones"
            ),
        }
        *got_updates
            .entry((key, header(m, "event_id").unwrap().to_owned()))
            .or_default() += 1;
    }
    assert_eq!(
        got_updates, want_updates,
        "task-updates differ from the model"
    );

    for (pipeline, dlq) in [
        ("reminders", format!("{input}.reminders.dlq")),
        ("ui-sync", format!("{input}.ui-sync.dlq")),
    ] {
        let dead = read_topic(brokers, &dlq, invalid.len(), SETTLE);
        assert_eq!(
            dead.len(),
            invalid.len(),
            "{pipeline}: every invalid event, once"
        );
        for m in &dead {
            let original = invalid[header(m, "trace").expect("original headers kept")];
            assert_eq!(m.key(), original.key(), "original key kept");
            assert_eq!(m.payload(), original.payload(), "original value kept");
            assert_eq!(header(m, "weir.error.reason"), Some("invalid"));
            assert!(!header(m, "weir.error.message").unwrap().is_empty());
            assert_eq!(header(m, "weir.source.topic"), Some(input.as_str()));
            assert_eq!(
                header(m, "weir.source.partition"),
                Some(original.partition().to_string().as_str())
            );
            assert_eq!(
                header(m, "weir.source.offset"),
                Some(original.offset().to_string().as_str())
            );
            assert_eq!(header(m, "weir.pipeline"), Some(pipeline));
            assert!(
                header(m, "weir.plugin")
                    .unwrap()
                    .starts_with("task_validator sha256:")
            );
            assert_eq!(header(m, "weir.attempts"), Some("1"));
            assert!(DateTime::parse_from_rfc3339(header(m, "weir.failed-at").unwrap()).is_ok());
        }
    }
    assert_eq!(weir.terminate(), Some(0));
}

#[test]
fn poison_and_runaway_records_go_to_the_dlq_and_weir_carries_on() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let policy = r#"retry = { max-attempts = 2, initial-backoff = "10ms", max-backoff = "50ms" }
limits = { memory = "32MiB", timeout = "100ms" }"#;
    let (text, input, output, dlq, group) = chaos_config(brokers, 1, "", policy);
    let config = write_config(dir.path(), &text);
    let mut weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    let values = [
        "ok-1", "invalid", "loop", "alloc", "panic", "recurse", "huge", "ok-2",
    ];
    produce(brokers, &input, &commands(&values));
    wait_for_lag_zero(brokers, std::slice::from_ref(&group), &input);
    assert!(weir.is_running(), "weir must survive its plugins");

    let outs: Vec<String> = read_topic(brokers, &output, 2, SETTLE)
        .iter()
        .map(value_text)
        .collect();
    assert_eq!(
        outs,
        ["ok-1", "ok-2"],
        "good records around the bad ones are processed, in order"
    );
    let dead = read_topic(brokers, &dlq, 6, SETTLE);
    let reasons: Vec<(String, &str, &str)> = dead
        .iter()
        .map(|m| {
            (
                value_text(m),
                header(m, "weir.error.reason").unwrap(),
                header(m, "weir.attempts").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("invalid".to_owned(), "invalid", "1"),
            ("loop".to_owned(), "timeout", "2"),
            ("alloc".to_owned(), "memory-limit", "2"),
            ("panic".to_owned(), "trap", "2"),
            ("recurse".to_owned(), "trap", "2"),
            ("huge".to_owned(), "bad-output", "1"),
        ]
    );
    assert_eq!(
        committed(brokers, &group, &input).get(&0),
        Some(&(values.len() as i64))
    );
    assert_eq!(weir.terminate(), Some(0));
}

#[test]
fn transient_failures_are_retried_then_succeed_once() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let policy = r#"retry = { max-attempts = 5, initial-backoff = "10ms", max-backoff = "100ms" }"#;
    let (text, input, output, dlq, group) = chaos_config(brokers, 2, "", policy);
    let config = write_config(dir.path(), &text);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    produce(brokers, &input, &commands(&["flaky:2"; 10]));
    wait_for_lag_zero(brokers, std::slice::from_ref(&group), &input);
    let outs = read_topic(brokers, &output, 10, SETTLE);
    assert_eq!(outs.len(), 10, "one output per record");
    let keys: HashSet<_> = outs.iter().map(|m| m.key().unwrap().to_vec()).collect();
    assert_eq!(keys.len(), 10);
    assert!(
        read_topic(brokers, &dlq, 0, Duration::from_secs(3)).is_empty(),
        "no DLQ record"
    );
    assert_eq!(weir.terminate(), Some(0));
    let log = std::fs::read_to_string(dir.path().join("weir.log")).unwrap();
    assert_eq!(
        log.matches("transient: flaky attempt").count(),
        20,
        "two retries per record:\n{log}"
    );
}

#[test]
fn clean_shutdown_commits_so_nothing_is_processed_twice() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text, input, output, _, group) = chaos_config(brokers, 3, "", "");
    let config = write_config(dir.path(), &text);
    let batch = |from: usize, n: usize| -> Vec<Record> {
        (from..from + n)
            .map(|i| {
                (
                    Some(format!("k{}", i % 7)),
                    Some(format!("msg-{i}").into_bytes()),
                    Vec::new(),
                )
            })
            .collect()
    };
    let weir = Weir::start(&config, dir.path(), "first");
    weir.wait_ready(1);
    produce(brokers, &input, &batch(0, 500));
    wait_for_lag_zero(brokers, std::slice::from_ref(&group), &input);
    assert_eq!(weir.terminate(), Some(0), "SIGTERM exits 0");
    produce(brokers, &input, &batch(500, 300));
    let weir = Weir::start(&config, dir.path(), "second");
    weir.wait_ready(1);
    wait_for_lag_zero(brokers, std::slice::from_ref(&group), &input);
    let outs: Vec<String> = read_topic(brokers, &output, 800, SETTLE)
        .iter()
        .map(value_text)
        .collect();
    assert_eq!(outs.len(), 800, "every record exactly once");
    assert_eq!(outs.iter().collect::<HashSet<_>>().len(), 800);
    assert_eq!(weir.terminate(), Some(0));
}

#[test]
fn crash_then_restart_accounts_for_every_input() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text, input, updates, dlq, group) = ui_sync_config(brokers);
    let config = write_config(dir.path(), &text);
    let samples = generate(6000, 23, start());
    let (first, second) = samples.split_at(3000);
    let weir = Weir::start(&config, dir.path(), "first");
    weir.wait_ready(1);
    produce(brokers, &input, &records(first));
    wait_until(SETTLE, "some progress", || {
        committed(brokers, &group, &input).values().sum::<i64>() > 500
    });
    // Kill while the second half is still arriving.
    let producer = {
        let (brokers, input, second) = (brokers.to_owned(), input.clone(), records(second));
        std::thread::spawn(move || produce(&brokers, &input, &second))
    };
    std::thread::sleep(Duration::from_millis(150));
    weir.kill();
    producer.join().unwrap();
    assert!(
        lag(brokers, &group, &input) > 0,
        "the crash must leave work behind"
    );
    let weir = Weir::start(&config, dir.path(), "second");
    weir.wait_ready(1);
    wait_for_lag_zero(brokers, std::slice::from_ref(&group), &input);
    assert_all_accounted(brokers, &samples, &updates, &dlq);
    assert_eq!(weir.terminate(), Some(0));
}

fn last_assignment(log: &str) -> Option<Vec<i32>> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("partitions assigned"))?;
    let list = line.split("partitions=[").nth(1)?.split(']').next()?;
    Some(
        list.split(',')
            .filter_map(|p| p.trim().parse().ok())
            .collect(),
    )
}

#[test]
fn two_processes_share_partitions_and_one_takes_over() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text, input, updates, dlq, group) = ui_sync_config(brokers);
    let config = write_config(dir.path(), &text);
    let samples = generate(4000, 31, start());
    let (first, second) = samples.split_at(2000);
    let a = Weir::start(&config, dir.path(), "a");
    let b = Weir::start(&config, dir.path(), "b");
    wait_until(SETTLE, "both processes to hold partitions", || {
        let (pa, pb) = (
            last_assignment(&a.log_text()),
            last_assignment(&b.log_text()),
        );
        matches!((pa, pb), (Some(pa), Some(pb)) if !pa.is_empty() && !pb.is_empty() && pa.len() + pb.len() == 6
            && pa.iter().chain(&pb).collect::<HashSet<_>>().len() == 6)
    });
    produce(brokers, &input, &records(first));
    wait_until(SETTLE, "some progress", || {
        committed(brokers, &group, &input).values().sum::<i64>() > 200
    });
    a.kill();
    produce(brokers, &input, &records(second));
    wait_until(SETTLE, "b to take every partition", || {
        last_assignment(&b.log_text()).is_some_and(|p| p.len() == 6)
    });
    wait_for_lag_zero(brokers, std::slice::from_ref(&group), &input);
    assert_all_accounted(brokers, &samples, &updates, &dlq);
    assert_eq!(b.terminate(), Some(0));
}

/// Ports picked together, or by tests at the same time, are never the same port: a
/// broker given one port for two listeners does not start. A port that another
/// process takes before the server binds it is recognised in the server's output, so
/// that the broker (or Prometheus) is started again on new ports.
#[test]
fn picked_ports_are_distinct_and_a_taken_one_is_recognised() {
    use common::net::{free_ports, port_taken};
    let together: [u16; 64] = free_ports();
    let at_once: Vec<[u16; 3]> = std::thread::scope(|scope| {
        let pickers: Vec<_> = (0..8).map(|_| scope.spawn(free_ports::<3>)).collect();
        pickers.into_iter().map(|p| p.join().unwrap()).collect()
    });
    let all: Vec<u16> = together
        .iter()
        .chain(at_once.iter().flatten())
        .copied()
        .collect();
    let distinct: HashSet<u16> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a port picked twice: {all:?}");
    assert!(!all.contains(&0), "{all:?}");

    // What Kafka and Prometheus say when a port is taken.
    assert!(port_taken(
        "org.apache.kafka.common.KafkaException: Socket server failed to bind to 127.0.0.1:41437: Address already in use."
    ));
    assert!(port_taken(
        "Error starting web server: listen tcp 127.0.0.1:41437: bind: address already in use"
    ));
    assert!(!port_taken("Kafka Server started"));
}

#[test]
fn a_broker_outage_loses_nothing_and_dead_letters_nothing() {
    let broker = start_broker();
    let brokers = broker.address.as_str();
    let dir = tempfile::tempdir().unwrap();
    let (text, input, updates, dlq, group) = ui_sync_config(brokers);
    let config = write_config(dir.path(), &text);
    let samples = generate(3000, 47, start());
    let (first, second) = samples.split_at(1000);
    let mut weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    produce(brokers, &input, &records(first));
    wait_until(SETTLE, "some progress", || {
        committed(brokers, &group, &input).values().sum::<i64>() > 100
    });
    // Keep records arriving, and freeze the broker while they do.
    let trickle = {
        let (brokers, input, second) = (brokers.to_owned(), input.clone(), records(second));
        std::thread::spawn(move || {
            for chunk in second.chunks(100) {
                produce(&brokers, &input, chunk);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    broker.stop();
    std::thread::sleep(Duration::from_secs(15));
    broker.resume();
    trickle.join().unwrap();
    assert!(weir.is_running());
    wait_for_lag_zero(brokers, std::slice::from_ref(&group), &input);
    assert_all_accounted(brokers, &samples, &updates, &dlq);
    let log = weir.log_text();
    assert!(
        log.contains("broker trouble"),
        "the outage is reported:\n{}",
        log.lines()
            .filter(|l| !l.contains("DEBUG"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(weir.terminate(), Some(0));
}

#[test]
fn sigterm_during_an_outage_with_a_full_producer_queue_exits_within_the_drain_timeout() {
    let broker = start_broker();
    let brokers = broker.address.as_str();
    let dir = tempfile::tempdir().unwrap();
    let (text, input, updates, dlq, group) = ui_sync_config(brokers);
    // A small producer queue fills within moments of the outage.
    let text = text.replace(
        "[kafka.properties]\n",
        "[kafka.properties]\n\"queue.buffering.max.kbytes\" = \"64\"\n",
    );
    let config = write_config(dir.path(), &text);
    let samples = generate(20_000, 53, start());
    let weir = Weir::start(&config, dir.path(), "first");
    weir.wait_ready(1);
    produce(brokers, &input, &records(&samples));
    wait_until(SETTLE, "some progress", || {
        committed(brokers, &group, &input).values().sum::<i64>() > 500
    });
    broker.stop();
    std::thread::sleep(Duration::from_secs(5));
    let stopping = std::time::Instant::now();
    let log = weir.log.clone();
    let code = weir.terminate();
    let took = stopping.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        took < Duration::from_secs(40),
        "exit within the 30 s drain timeout (and a moment), took {took:?}"
    );
    assert_eq!(code, Some(1), "records were left undelivered: {text}");
    assert!(
        text.contains("not delivered within the 30s drain timeout"),
        "the log says what happened"
    );
    broker.resume_and_settle();
    let weir = Weir::start(&config, dir.path(), "second");
    weir.wait_ready(1);
    wait_for_lag_zero(brokers, std::slice::from_ref(&group), &input);
    assert_all_accounted(brokers, &samples, &updates, &dlq);
    assert_eq!(weir.terminate(), Some(0));
}

#[test]
fn an_open_circuit_stops_the_flood_and_a_fixed_config_finishes_the_work() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let policy = r#"circuit = { failure-ratio = 0.5, window = 10, cooldown = "10m" }"#;
    let (text, input, output, dlq, group) = chaos_config(brokers, 1, r#"mode = "invalid""#, policy);
    let config = write_config(dir.path(), &text);
    let weir = Weir::start(&config, dir.path(), "broken");
    weir.wait_ready(1);
    let values: Vec<String> = (0..200).map(|i| format!("msg-{i}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    produce(brokers, &input, &commands(&values));
    wait_until(SETTLE, "the circuit to open", || {
        weir.log_text().contains("circuit opened")
    });
    std::thread::sleep(Duration::from_secs(3));
    let dead = read_topic(brokers, &dlq, 10, Duration::from_secs(10));
    assert!(
        (10..=12).contains(&dead.len()),
        "the DLQ holds about one window, not {}",
        dead.len()
    );
    let done = committed(brokers, &group, &input)
        .get(&0)
        .copied()
        .unwrap_or(0);
    assert!(done <= 12, "consumption paused, committed {done}");
    assert_eq!(weir.terminate(), Some(0));

    // Fix the config (no failure mode), restart: the rest is processed.
    let fixed = write_config(dir.path(), &text.replace(r#"mode = "invalid""#, ""));
    let weir = Weir::start(&fixed, dir.path(), "fixed");
    weir.wait_ready(1);
    wait_for_lag_zero(brokers, std::slice::from_ref(&group), &input);
    let dead = read_topic(brokers, &dlq, 10, Duration::from_secs(5)).len();
    let outs = read_topic(brokers, &output, 200 - dead, SETTLE).len();
    assert_eq!(
        outs + dead,
        200,
        "every record either dead-lettered before the fix or processed after"
    );
    assert_eq!(weir.terminate(), Some(0));
}

#[test]
fn an_unreachable_broker_fails_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let (text, ..) = chaos_config("127.0.0.1:1", 1, "", "");
    let config = write_config(dir.path(), &text);
    let mut weir = Weir::start(&config, dir.path(), "weir");
    let code = weir.wait(Duration::from_secs(60));
    assert_eq!(code, Some(1));
    let log = weir.log_text();
    assert!(log.contains("cannot reach Kafka at 127.0.0.1:1"), "{log}");
}

#[test]
fn a_config_error_fails_start_up_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (text, ..) = chaos_config(shared_broker(), 1, "", "");
    let config = write_config(
        dir.path(),
        &text.replace("partitions = 1\n[topics", "partitons = 1\n[topics"),
    );
    let mut weir = Weir::start(&config, dir.path(), "weir");
    assert_eq!(weir.wait(Duration::from_secs(60)), Some(1));
    let log = weir.log_text();
    let name = config.file_name().unwrap().to_string_lossy().into_owned();
    assert!(log.contains(&name) && log.contains("partitons"), "{log}");
}
