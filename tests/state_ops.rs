//! `weir state inspect|reset` against Apache Kafka, with the counter test plugin
//! (plugins/testing/counter): the state a stopped weir left in its changelog,
//! shown per key as text and JSON, filtered by key; reset refused while weir runs
//! and without a terminal or `--yes`, then clearing every entry and timer so that a
//! restarted weir starts from nothing.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::kafka::*;
use common::{run, stderr, weir};
use serde_json::Value;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The counter plugin's pipeline `counter` on fresh topics with 2 partitions, its
/// local stores under `stores`.
fn counter_config_in(brokers: &str, stores: &Path) -> (String, String, String, String, String) {
    let (text, input, output, dlq, group) = counter_config(brokers, "");
    let text = format!("{text}\n[state]\ndir = \"{}\"\n", stores.display());
    (text, input, output, dlq, group)
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// `weir state ARGS --pipeline counter --config CONFIG`.
fn state(config: &Path, args: &[&str]) -> Output {
    run(weir()
        .arg("state")
        .args(args)
        .args(["--pipeline", "counter", "--config"])
        .arg(config))
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

fn inspect_json(config: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["inspect", "--json"];
    args.extend(extra);
    let out = succeeded(&state(config, &args));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// The keys of the only slot of an inspect report, by key text.
fn keys(report: &Value) -> Vec<&Value> {
    let slots = report["slots"].as_array().expect("slots");
    assert_eq!(slots.len(), 1, "{report:#}");
    slots[0]["keys"].as_array().expect("keys").iter().collect()
}

fn key<'r>(report: &'r Value, name: &str) -> &'r Value {
    keys(report)
        .into_iter()
        .find(|k| k["key"] == name)
        .unwrap_or_else(|| panic!("no key {name} in {report:#}"))
}

#[test]
fn inspect_shows_a_stopped_weirs_state_and_reset_clears_it() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let stores = dir.path().join("stores");
    let (text_config, input, output, _dlq, group) = counter_config_in(brokers, &stores);
    let config = write_config(dir.path(), &text_config);
    let changelog = format!("{group}.counter.0.changelog");

    let weir_run = Weir::start(&config, dir.path(), "first");
    weir_run.wait_ready(1);
    let produced_at = common::now_ms();
    let mut records = keyed("alice", &["count", "count", "in 600000 ping"]);
    records.extend(keyed("bob", &["count"]));
    produce(brokers, &input, &records);
    let got = read_topic(brokers, &output, 4, Duration::from_secs(30));
    let mut values: Vec<String> = got.iter().map(value_text).collect();
    values.sort();
    assert_eq!(values, ["count=1", "count=1", "count=2", "set ping"]);

    // While weir runs the pipeline, reset refuses and writes nothing.
    let refused = state(&config, &["reset", "--yes"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("active member") && stderr(&refused).contains("Stop every weir"),
        "{}",
        stderr(&refused)
    );
    weir_run.terminate_cleanly();
    let slot_stores = stores.join(&group).join("counter").join("0");
    assert!(
        !walk(&slot_stores).is_empty(),
        "weir left local stores under {}",
        slot_stores.display()
    );

    // Text: both keys, their counts, the pending timer, the totals.
    let out = succeeded(&state(&config, &["inspect"]));
    assert!(out.contains(&changelog), "{out}");
    assert!(out.contains("key \"alice\""), "{out}");
    assert!(out.contains("key \"bob\""), "{out}");
    assert!(out.contains("entry \"count\" = \"2\"  (1 byte(s)"), "{out}");
    assert!(out.contains("entry \"count\" = \"1\"  (1 byte(s)"), "{out}");
    assert!(out.contains("timer \"ping\" due 20"), "{out}");
    assert!(out.contains("payload \"ping\""), "{out}");
    assert!(
        out.contains("total: 2 key(s), 2 entries, 12 byte(s), 1 timer(s)"),
        "{out}"
    );

    // JSON: the same, with the due time in ms and as RFC 3339.
    let report = inspect_json(&config, &[]);
    assert_eq!(report["pipeline"], "counter");
    assert_eq!(report["group"], group.as_str());
    assert_eq!(report["slots"][0]["slot"], "0");
    assert_eq!(report["slots"][0]["plugin"], "counter_plugin");
    assert_eq!(report["slots"][0]["topic"], changelog.as_str());
    assert_eq!(report["slots"][0]["exists"], true);
    let alice = key(&report, "alice");
    assert_eq!(alice["entries"][0]["name"], "count");
    assert_eq!(alice["entries"][0]["value"], "2");
    assert_eq!(alice["entries"][0]["encoding"], "utf8");
    assert_eq!(alice["entries"][0]["size"], 1);
    let timers = alice["timers"].as_array().expect("timers");
    assert_eq!(timers.len(), 1, "{alice:#}");
    assert_eq!(timers[0]["name"], "ping");
    assert_eq!(timers[0]["payload"]["value"], "ping");
    let due = timers[0]["due_ms"].as_i64().expect("due_ms");
    assert!(
        (produced_at + 600_000..common::now_ms() + 600_000).contains(&due),
        "due {due}, produced at {produced_at}"
    );
    let due_text = timers[0]["due"].as_str().expect("due");
    let parsed = chrono::DateTime::parse_from_rfc3339(due_text).expect("RFC 3339");
    assert_eq!(parsed.timestamp_millis(), due);
    let bob = key(&report, "bob");
    assert_eq!(bob["entries"][0]["value"], "1");
    assert_eq!(bob["timers"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        report["totals"],
        serde_json::json!({"keys": 2, "entries": 2, "bytes": 12, "timers": 1})
    );

    // --key shows one key.
    let only = inspect_json(&config, &["--key", "bob"]);
    assert_eq!(keys(&only).len(), 1, "{only:#}");
    assert_eq!(key(&only, "bob")["entries"][0]["value"], "1");
    assert_eq!(only["totals"]["timers"], 0);
    let out = succeeded(&state(&config, &["inspect", "--key", "alice"]));
    assert!(
        out.contains("key \"alice\"") && !out.contains("key \"bob\""),
        "{out}"
    );

    // Without a terminal and without --yes, reset refuses and writes nothing.
    let refused = state(&config, &["reset"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert_eq!(inspect_json(&config, &[])["totals"]["keys"], 2);

    // Reset: a tombstone per live record key (two counts, one timer).
    let out = succeeded(&state(&config, &["reset", "--yes"]));
    assert!(
        out.contains(&format!("wrote 3 tombstone(s) to {changelog}")),
        "{out}"
    );
    assert!(out.contains("local store(s) of slot 0"), "{out}");
    assert_eq!(walk(&slot_stores), Vec::<std::path::PathBuf>::new());
    let report = inspect_json(&config, &[]);
    assert_eq!(keys(&report).len(), 0, "{report:#}");
    assert_eq!(
        report["totals"],
        serde_json::json!({"keys": 0, "entries": 0, "bytes": 0, "timers": 0})
    );
    let out = succeeded(&state(&config, &["reset", "--yes"]));
    assert!(out.contains("nothing to reset"), "{out}");

    // A restarted weir restores nothing: alice counts from 1 again.
    let weir_run = Weir::start(&config, dir.path(), "second");
    weir_run.wait_ready(1);
    produce(brokers, &input, &keyed("alice", &["count"]));
    let got = read_topic(brokers, &output, 5, Duration::from_secs(30));
    let values: Vec<String> = got.iter().map(value_text).collect();
    assert_eq!(
        values.iter().filter(|v| *v == "count=1").count(),
        3,
        "{values:?}"
    );
    weir_run.terminate_cleanly();
    let report = inspect_json(&config, &[]);
    assert_eq!(key(&report, "alice")["entries"][0]["value"], "1");
    assert_eq!(
        report["totals"]["timers"], 0,
        "the reset timer stays gone: {report:#}"
    );
}

/// A pipeline whose changelog was never created (weir never ran it): inspect and
/// reset say so and exit 0; an unknown slot or pipeline exits 1 naming it.
#[test]
fn a_missing_changelog_and_bad_input_are_explained() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text_config, _input, _output, _dlq, group) =
        counter_config_in(brokers, &dir.path().join("stores"));
    let config = write_config(dir.path(), &text_config);
    let out = succeeded(&state(&config, &["inspect"]));
    assert!(
        out.contains(&format!(
            "changelog topic {group}.counter.0.changelog does not exist: nothing was ever written"
        )),
        "{out}"
    );
    let report = inspect_json(&config, &[]);
    assert_eq!(report["slots"][0]["exists"], false);
    let out = succeeded(&state(&config, &["reset", "--yes"]));
    assert!(
        out.contains("does not exist: nothing was ever written, nothing to reset"),
        "{out}"
    );

    let bad = state(&config, &["inspect", "--slot", "3"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("no stateful slot \"3\"") && stderr(&bad).contains("slots: 0"),
        "{}",
        stderr(&bad)
    );
    let bad = run(weir()
        .args(["state", "inspect", "--pipeline", "nope", "--config"])
        .arg(&config));
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("no pipeline \"nope\"") && stderr(&bad).contains("counter"),
        "{}",
        stderr(&bad)
    );
}

/// A pipeline of stateless plugins keeps no state: said, exit 0, no broker needed.
#[test]
fn a_pipeline_without_stateful_plugins_has_nothing_to_show() {
    let dir = tempfile::tempdir().unwrap();
    let (text_config, ..) =
        one_plugin_config("127.0.0.1:1", "counter", &wasm("chaos_plugin"), "", 1, "");
    let config = write_config(dir.path(), &text_config);
    for verb in ["inspect", "reset"] {
        let out = succeeded(&state(&config, &[verb]));
        assert!(out.contains("has no stateful plugins"), "{out}");
    }
}

/// A broker that does not answer: exit 1, naming it and what to check.
#[test]
fn an_unreachable_broker_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (text_config, ..) =
        one_plugin_config("127.0.0.1:1", "counter", &wasm("counter_plugin"), "", 1, "");
    let config = write_config(dir.path(), &text_config);
    let out = state(&config, &["inspect"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach Kafka at 127.0.0.1:1")
            && stderr(&out).contains("[kafka] brokers"),
        "{}",
        stderr(&out)
    );
}
