//! Hot reload end to end (`weir run --watch`): plugins swapped under load lose and
//! double nothing, bad plugins are refused while the old one keeps serving, and live
//! config changes apply to the next record.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use common::kafka::*;
use common::*;
use rdkafka::message::{Message, OwnedMessage};

const SETTLE: Duration = Duration::from_secs(120);

/// The stamp plugin at `plugin` in a pipeline "stamped": (config, input, output, group).
fn stamped_config(
    brokers: &str,
    plugin: &Path,
    partitions: i32,
) -> (String, String, String, String) {
    let (text, input, output, _, group) = one_plugin_config(
        brokers,
        "stamped",
        &plugin.display().to_string(),
        "",
        partitions,
        "",
    );
    (text, input, output, group)
}

fn count(weir: &Weir, needle: &str) -> usize {
    weir.log_text().matches(needle).count()
}

fn wait_for_log(weir: &Weir, needle: &str, times: usize) {
    wait_until(Duration::from_secs(60), needle, || {
        count(weir, needle) >= times
    });
}

#[test]
fn plugins_swapped_under_load_lose_and_double_nothing() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let builds: Vec<_> = ["v0", "v1", "v2", "v3"]
        .iter()
        .map(|v| stamp_build(v))
        .collect();
    let live = dir.path().join("stamp.wasm");
    std::fs::copy(&builds[0], &live).unwrap();
    let (text, input, output, group) = stamped_config(brokers, &live, 6);
    let config = write_config(dir.path(), &text);
    let weir = Weir::start_with(&config, dir.path(), "weir", &["--watch"]);
    weir.wait_ready(1);

    let total = 20_000;
    let producer = {
        let (brokers, input) = (brokers.to_owned(), input.clone());
        std::thread::spawn(move || {
            let records: Vec<Record> = (0..total)
                .map(|i| {
                    (
                        Some(format!("k{}", i % 50)),
                        Some(format!("msg-{i}").into_bytes()),
                        Vec::new(),
                    )
                })
                .collect();
            for chunk in records.chunks(500) {
                produce(&brokers, &input, chunk);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    for (n, build) in builds.iter().enumerate().skip(1) {
        std::thread::sleep(Duration::from_millis(700));
        // A plain copy: the file is truncated, then written; the debounce must wait.
        std::fs::copy(build, &live).unwrap();
        wait_for_log(&weir, "plugin reloaded", n);
    }
    producer.join().unwrap();
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);

    let outs = read_topic(brokers, &output, total, SETTLE);
    assert_eq!(outs.len(), total, "every input yields exactly one output");
    let values: HashSet<Vec<u8>> = outs.iter().map(|m| m.payload().unwrap().to_vec()).collect();
    assert_eq!(values.len(), total, "no input is doubled");
    let version = |m: &OwnedMessage| header(m, "stamp").unwrap()[1..].parse::<u32>().unwrap();
    let mut per_source: BTreeMap<(i32, String), Vec<(i64, u32)>> = BTreeMap::new();
    for m in &outs {
        let source = header(m, "source-partition").unwrap().to_owned();
        let offset: i64 = header(m, "source-offset").unwrap().parse().unwrap();
        per_source
            .entry((m.partition(), source))
            .or_default()
            .push((offset, version(m)));
    }
    for (source, records) in &per_source {
        for pair in records.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{source:?}: out of order {pair:?}");
            assert!(
                pair[0].1 <= pair[1].1,
                "{source:?}: an older version after a newer one {pair:?}"
            );
        }
    }
    let seen: HashSet<u32> = outs.iter().map(version).collect();
    assert!(
        seen.contains(&0) && seen.contains(&3),
        "swaps happened under load: {seen:?}"
    );
    assert_eq!(count(&weir, "plugin reloaded"), 3);
    assert_eq!(count(&weir, "reload rejected"), 0);
    assert_eq!(count(&weir, "partitions revoked"), 0, "no rebalance");
    assert_eq!(weir.terminate(), Some(0));
}

/// Produces one record and returns the `stamp` of its output.
fn probe(brokers: &str, input: &str, output: &str, n: usize) -> String {
    let value = format!("probe-{n}");
    produce(
        brokers,
        input,
        &[(
            Some("p".into()),
            Some(value.clone().into_bytes()),
            Vec::new(),
        )],
    );
    let mut stamp = None;
    wait_until(SETTLE, "the probe's output", || {
        stamp = read_topic(brokers, output, n, Duration::from_secs(3))
            .iter()
            .find(|m| m.payload() == Some(value.as_bytes()))
            .and_then(|m| header(m, "stamp").map(str::to_owned));
        stamp.is_some()
    });
    stamp.expect("checked above")
}

#[test]
fn bad_plugins_are_refused_and_the_old_one_keeps_serving() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2, broken) = (
        stamp_build("v1"),
        stamp_build("v2"),
        stamp_build("broken-init"),
    );
    let live = dir.path().join("stamp.wasm");
    std::fs::copy(&v1, &live).unwrap();
    let (text, input, output, _) = stamped_config(brokers, &live, 1);
    let config = write_config(dir.path(), &text);
    let weir = Weir::start_with(&config, dir.path(), "weir", &["--watch"]);
    weir.wait_ready(1);
    let ops = weir.ops_address();
    assert_eq!(probe(brokers, &input, &output, 1), "v1");

    std::fs::write(&live, b"this is not a wasm component").unwrap();
    wait_for_log(&weir, "reload rejected", 1);
    assert!(
        weir.log_text()
            .contains("is not a valid WebAssembly component")
    );
    assert_eq!(probe(brokers, &input, &output, 2), "v1", "garbage refused");

    let bytes = std::fs::read(&v2).unwrap();
    std::fs::write(&live, &bytes[..bytes.len() / 2]).unwrap();
    wait_for_log(&weir, "reload rejected", 2);
    assert_eq!(
        probe(brokers, &input, &output, 3),
        "v1",
        "truncated file refused"
    );

    std::fs::copy(&broken, &live).unwrap();
    wait_for_log(&weir, "reload rejected", 3);
    assert!(
        weir.log_text().contains("refuses to start"),
        "init failure named: {}",
        weir.log_text()
            .lines()
            .filter(|l| l.contains("reload"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        probe(brokers, &input, &output, 4),
        "v1",
        "init failure refused"
    );

    std::fs::copy(&v2, &live).unwrap();
    wait_for_log(&weir, "plugin reloaded", 1);
    assert_eq!(
        probe(brokers, &input, &output, 5),
        "v2",
        "a good version is picked up"
    );

    let metrics = http_get(&ops, "/metrics").1;
    assert!(
        metrics.contains(r#"weir_plugin_reloads_total{outcome="rejected",plugin="stamp"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"weir_plugin_reloads_total{outcome="ok",plugin="stamp"} 1"#),
        "{metrics}"
    );
    assert!(
        weir.log_text().contains(&live.display().to_string()),
        "the log names the path"
    );
    assert_eq!(weir.terminate(), Some(0));
}

#[test]
fn a_config_reload_applies_limits_to_the_next_record_and_names_what_needs_a_restart() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let policy = r#"retry = { max-attempts = 1 }
limits = { timeout = "100ms" }"#;
    let (text, input, output, dlq, _) = chaos_config(brokers, 1, "", policy);
    let config = write_config(dir.path(), &text);
    let weir = Weir::start_with(&config, dir.path(), "weir", &["--watch"]);
    weir.wait_ready(1);
    produce(brokers, &input, &commands(&["loop"]));
    let dead = read_topic(brokers, &dlq, 1, SETTLE);
    assert!(
        header(&dead[0], "weir.error.message")
            .unwrap()
            .contains("100ms"),
        "{:?}",
        header(&dead[0], "weir.error.message")
    );

    std::fs::write(
        &config,
        text.replace(r#"timeout = "100ms""#, r#"timeout = "300ms""#),
    )
    .unwrap();
    wait_for_log(&weir, "config change applied", 1);
    produce(brokers, &input, &commands(&["loop"]));
    let dead = read_topic(brokers, &dlq, 2, SETTLE);
    assert_eq!(dead.len(), 2);
    assert!(
        header(&dead[1], "weir.error.message")
            .unwrap()
            .contains("300ms"),
        "the next record uses the new limit"
    );

    let other = unique("elsewhere");
    let moved = text
        .replace(r#"timeout = "100ms""#, r#"timeout = "300ms""#)
        .replace(
            &format!(r#"outputs = {{ out = "{output}" }}"#),
            &format!(r#"outputs = {{ out = "{other}" }}"#),
        )
        .replace("[[pipeline]]", &format!("[topics.{other}]\n\n[[pipeline]]"));
    std::fs::write(&config, moved).unwrap();
    wait_for_log(&weir, "need a restart", 1);
    let log = weir.log_text();
    assert!(log.contains("changes to outputs need a restart"), "{log}");
    assert!(log.contains("[topics]"), "{log}");
    assert_eq!(weir.terminate(), Some(0));
}

/// A measurement, not a test: run by hand and record the figures in BENCHMARKS.md.
/// `cargo test --release -p weir --test reload -- --ignored --nocapture measure`
#[test]
#[ignore = "a measurement run by hand; see BENCHMARKS.md"]
fn measure_reload_latency_and_throughput_dip() {
    use chrono::{DateTime, Utc};
    let broker = start_broker();
    let brokers = broker.address.as_str();
    let dir = tempfile::tempdir().unwrap();
    let (v0, v1) = (stamp_build("v0"), stamp_build("v1"));
    let live = dir.path().join("stamp.wasm");
    std::fs::copy(&v0, &live).unwrap();
    let (text, input, _, _) = stamped_config(brokers, &live, 6);
    create_topic(brokers, &input, 6);
    let total = 300_000usize;
    let records: Vec<Record> = (0..total)
        .map(|i| {
            (
                Some(format!("k{}", i % 97)),
                Some(format!("{i:0>380}").into_bytes()),
                Vec::new(),
            )
        })
        .collect();
    produce(brokers, &input, &records);
    let config = write_config(dir.path(), &text);
    let weir = Weir::start_with(&config, dir.path(), "weir", &["--watch"]);
    let ops = weir.ops_address();
    let consumed = |ops: &str| {
        let metrics = http_get(ops, "/metrics").1;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("weir_records_consumed_total{pipeline=\"stamped\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let started = std::time::Instant::now();
    let mut samples = Vec::new();
    let mut swap_at = None;
    let mut swapped_wall = None;
    while started.elapsed() < Duration::from_secs(120) {
        let now = started.elapsed().as_secs_f64();
        let count = consumed(&ops);
        samples.push((now, count));
        if swap_at.is_none() && count > total as f64 * 0.3 {
            std::fs::copy(&v1, &live).unwrap();
            swapped_wall = DateTime::<Utc>::from_timestamp_millis(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64,
            );
            swap_at = Some(started.elapsed().as_secs_f64());
        }
        if count >= total as f64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let swap_at = swap_at.expect("the swap happened");
    let rates: Vec<(f64, f64)> = samples
        .windows(2)
        .map(|w| (w[1].0, (w[1].1 - w[0].1) / (w[1].0 - w[0].0)))
        .collect();
    let mut before: Vec<f64> = rates
        .iter()
        .filter(|(t, _)| *t < swap_at && *t > 1.0)
        .map(|(_, r)| *r)
        .collect();
    before.sort_by(f64::total_cmp);
    let steady = before.get(before.len() / 2).copied().unwrap_or(0.0);
    let around: Vec<f64> = rates
        .iter()
        .filter(|(t, _)| *t >= swap_at && *t <= swap_at + 2.0)
        .map(|(_, r)| *r)
        .collect();
    let dip = around.iter().copied().fold(f64::INFINITY, f64::min);
    let log = weir.log_text();
    let first_serving = log
        .lines()
        .find(|l| l.contains("now running the reloaded plugin"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|ts| DateTime::parse_from_rfc3339(ts).ok())
        .map(|ts| ts.with_timezone(&Utc));
    let reloaded_took = log
        .lines()
        .find(|l| l.contains("plugin reloaded"))
        .and_then(|l| l.split("took=").nth(1))
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or("?")
        .to_owned();
    let serving_ms = first_serving
        .zip(swapped_wall)
        .map(|(a, b)| (a - b).num_milliseconds());
    println!(
        "records: {total} x ~400 B on 6 partitions, one stamp plugin, backlog drained at full speed"
    );
    println!("steady throughput before the swap (median of 100 ms windows): {steady:.0} records/s");
    println!("lowest 100 ms window within 2 s after the swap: {dip:.0} records/s");
    println!("file change -> reloaded (debounce + compile + init): {reloaded_took}");
    println!("file change -> first record on the new version: {serving_ms:?} ms");
    assert_eq!(weir.terminate(), Some(0));
}
