//! Plugins in other languages in real pipelines against the test broker: the
//! branched Todo deployment with the Python port of task-validator as its shared
//! prefix gives exactly what the all-Rust chains give, and a hot reload from the
//! Rust validator to the Python one under load loses and doubles nothing. Plus a
//! measurement of the validator in Rust, Python, JavaScript and Go (not run by
//! default; see BENCHMARKS.md).
//!
//! The ports are built once per run with `weir build` (`common::ports`).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::kafka::*;
use common::ports::port;
use common::todo::*;
use common::{json_lines, plugin, run, stderr, weir};
use rdkafka::message::{Headers, Message, OwnedMessage};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use todo_events::sample::{generate, generate_for_users};

/// Python plugins need at least 32MiB to start (docs/languages.md); a generous call
/// deadline keeps a busy, shared machine from turning a slow call into a retry.
const PYTHON_LIMITS: &str = r#"limits = { memory = "64MiB", timeout = "2s" }"#;

/// Creates a pipeline's input topic (6 partitions, as declared) and waits until the
/// broker's metadata shows it. `weir run` creates it too, but checks that it exists
/// with a single metadata request right after creating it, and exits 1 ("does not
/// exist") when the broker's metadata lags the creation; this test is not about that.
fn create_input(brokers: &str, input: &str) {
    create_topic(brokers, input, 6);
    wait_until(
        Duration::from_secs(30),
        "the input topic's metadata",
        || high_watermarks(brokers, input).len() == 6,
    );
}

/// The `weir.plugin` header value of the component at `path`.
fn identity(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read the component");
    let hex: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let stem = path.file_stem().unwrap().to_string_lossy();
    format!("{stem} sha256:{hex}")
}

/// An output as one comparable text: key, value and headers as `weir test` renders
/// them (a JSON value as JSON, a tombstone as null).
fn row(key: &Value, value: &Value, headers: &Value) -> String {
    json!({ "key": key, "value": value, "headers": headers }).to_string()
}

/// A record read back from Kafka as a [`row`].
fn message_row(m: &OwnedMessage) -> String {
    message_row_without(m, "")
}

/// [`message_row`] without the header `skip`.
fn message_row_without(m: &OwnedMessage, skip: &str) -> String {
    let headers: BTreeMap<String, String> = m
        .headers()
        .map(|h| {
            h.iter()
                .filter(|h| h.key != skip)
                .map(|h| {
                    let value = weir::events::text_or_base64(h.value.unwrap_or_default());
                    (h.key.to_owned(), value)
                })
                .collect()
        })
        .unwrap_or_default();
    let key = m
        .key()
        .map_or(Value::Null, |k| weir::events::text_or_base64(k).into());
    row(
        &key,
        &weir::events::value_json(m.payload()),
        &json!(headers),
    )
}

fn count<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item).or_default() += 1;
    }
    counts
}

/// What a Rust chain gives under `weir test`: its outputs to `to` as counted rows,
/// and, by the `trace` header of the input (`t-<line - 1>`), the kind of every
/// failure.
fn rust_chain(
    plugins: &[&str],
    input: &Path,
    config: &[&str],
    to: &str,
    extra: &[&str],
) -> (BTreeMap<String, usize>, BTreeMap<String, String>) {
    let mut command = weir();
    command.arg("test");
    for name in plugins {
        command.arg(plugin(name));
    }
    command.arg("--input").arg(input).args(extra);
    for entry in config {
        command.args(["--config", entry]);
    }
    let output = run(&mut command);
    assert!(output.status.success(), "weir test: {}", stderr(&output));
    let lines = json_lines(&output);
    let outputs = count(
        lines
            .iter()
            .filter(|l| l.get("failure").is_none())
            .map(|l| {
                assert_eq!(l["to"], to, "{l}");
                row(&l["key"], &l["value"], &l["headers"])
            }),
    );
    let failures = lines
        .iter()
        .filter_map(|l| {
            let kind = l.get("failure")?.as_str()?.to_owned();
            Some((format!("t-{}", l["input"].as_u64()? - 1), kind))
        })
        .collect();
    (outputs, failures)
}

/// Reads a branch's dead-letter topic and checks that it holds every failure of
/// `expected` (by `trace`) exactly once, with its reason, the branch and the plugin
/// version that refused it. Returns the dead letters.
fn assert_dead_letters(
    brokers: &str,
    dlq: &str,
    branch: &str,
    expected: &BTreeMap<String, String>,
    plugin: &str,
) -> Vec<OwnedMessage> {
    let dead = read_topic(brokers, dlq, expected.len(), SETTLE);
    let traces = count(dead.iter().map(|m| header(m, "trace").unwrap().to_owned()));
    assert!(
        traces.values().all(|n| *n == 1),
        "{branch}: a dead letter more than once"
    );
    assert_eq!(
        traces.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{branch}: the dead letters are the Rust chain's failures"
    );
    for m in &dead {
        let trace = header(m, "trace").unwrap();
        assert_eq!(
            header(m, "weir.error.reason"),
            Some(expected[trace].as_str())
        );
        assert_eq!(header(m, "weir.pipeline"), Some(branch));
        assert_eq!(header(m, "weir.plugin"), Some(plugin), "{trace}");
    }
    dead
}

#[test]
fn todo_flow_through_the_python_validator_gives_what_the_rust_deployment_gives() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let python = port("python", "task-validator");
    let todo = branched_todo_config(brokers, &python.display().to_string(), PYTHON_LIMITS);
    let config = write_config(dir.path(), &todo.text);
    let samples = generate(2000, 11, start());

    // The all-Rust chains over the same events, as the shipped deployment runs them:
    // the deriver's timers on the wall clock, by which every sample's reminder is
    // due as soon as it is scheduled.
    let now_ms = common::now_ms();
    let input = samples_jsonl_at(&samples, now_ms);
    let (want_reminders, reminder_failures) = rust_chain(
        &["task_validator", "reminder_deriver"],
        input.path(),
        &["reminder_deriver:lead-time=15m"],
        "reminders",
        &["--now", &now_ms.to_string()],
    );
    assert!(
        want_reminders
            .keys()
            .any(|r| r.contains("reminder.triggered")),
        "the timers fired"
    );
    let (want_updates, update_failures) = rust_chain(
        &["task_validator", "ui_projector"],
        input.path(),
        &[],
        "task-updates",
        &[],
    );
    let invalid = samples.iter().filter(|s| !s.valid).count();
    assert_eq!(reminder_failures.len(), invalid);
    assert_eq!(update_failures.len(), invalid);
    assert!(!want_reminders.is_empty() && !want_updates.is_empty());

    create_input(brokers, &todo.input);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    produce(brokers, &todo.input, &records(&samples));
    wait_until(SETTLE, "lag 0", || {
        lag(brokers, &todo.group, &todo.input) == 0
    });

    let got = read_topic(
        brokers,
        &todo.reminders,
        want_reminders.values().sum(),
        SETTLE,
    );
    // How late a timer fired is the one header a live run adds.
    for m in &got {
        assert_eq!(
            header(m, "weir.timer.lateness-ms").is_some(),
            header(m, "event_type") == Some("reminder.triggered")
        );
    }
    assert_eq!(
        count(
            got.iter()
                .map(|m| message_row_without(m, "weir.timer.lateness-ms"))
        ),
        want_reminders,
        "reminders differ from the all-Rust chain's"
    );
    let got = read_topic(brokers, &todo.updates, want_updates.values().sum(), SETTLE);
    assert_eq!(
        count(got.iter().map(message_row)),
        want_updates,
        "task-updates differ from the all-Rust chain's"
    );
    let python_identity = identity(&python);
    assert_dead_letters(
        brokers,
        &todo.reminders_dlq,
        "reminders",
        &reminder_failures,
        &python_identity,
    );
    assert_dead_letters(
        brokers,
        &todo.ui_dlq,
        "ui-sync",
        &update_failures,
        &python_identity,
    );
    assert_all_committed(brokers, &todo.group, &todo.input);
    assert_eq!(weir.terminate(), Some(0));
}

#[test]
fn reload_from_the_rust_validator_to_the_python_one_under_load_loses_and_doubles_nothing() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (rust, python) = (plugin("task_validator"), port("python", "task-validator"));
    let live = dir.path().join("task_validator.wasm");
    std::fs::copy(&rust, &live).unwrap();
    let (text, input, updates, dlq, group) = ui_sync_config_with(brokers, PYTHON_LIMITS);
    let text = text.replace(&rust.display().to_string(), &live.display().to_string());
    assert!(text.contains(&live.display().to_string()));
    let config = write_config(dir.path(), &text);
    create_input(brokers, &input);
    let weir = Weir::start_with(&config, dir.path(), "weir", &["--watch"]);
    weir.wait_ready(1);

    // 20,000 events over 50 users (keys), so that every partition gets some.
    let samples = generate_for_users(20_000, 50, 29, start());
    let producer = trickle(
        brokers,
        &input,
        records(&samples),
        500,
        Duration::from_millis(100),
    );
    wait_until(SETTLE, "some progress on the Rust validator", || {
        committed(brokers, &group, &input).values().sum::<i64>() > 3000
    });
    assert!(
        !producer.is_finished(),
        "records are still arriving when the plugin is swapped"
    );
    // A plain copy: the file is truncated, then written; the debounce waits.
    std::fs::copy(&python, &live).unwrap();
    wait_until(SETTLE, "plugin reloaded", || {
        weir.log_text().contains("plugin reloaded")
    });
    producer.join().unwrap();
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);

    // Every valid input's task update, exactly once.
    let valid: HashSet<String> = valid_event_ids(&samples).into_iter().collect();
    let got = read_topic(brokers, &updates, valid.len(), SETTLE);
    let per_event = count(
        got.iter()
            .map(|m| header(m, "event_id").unwrap().to_owned()),
    );
    let doubled: Vec<_> = per_event.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "task updates doubled: {doubled:?}");
    assert_eq!(
        per_event.into_keys().collect::<HashSet<_>>(),
        valid,
        "every valid input's task update"
    );

    // Every invalid input in the DLQ, exactly once, refused by one version or the
    // other, and on each partition never by the Rust one after the Python one.
    let invalid: BTreeMap<String, String> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.valid)
        .map(|(i, _)| (format!("t-{i}"), "invalid".to_owned()))
        .collect();
    let (rust_id, python_id) = (identity(&rust), identity(&python));
    let dead = read_topic(brokers, &dlq, invalid.len(), SETTLE);
    let traces = count(dead.iter().map(|m| header(m, "trace").unwrap().to_owned()));
    assert!(
        traces.values().all(|n| *n == 1),
        "a dead letter more than once"
    );
    assert_eq!(
        traces.keys().collect::<Vec<_>>(),
        invalid.keys().collect::<Vec<_>>(),
        "every invalid input in the DLQ"
    );
    let mut by_partition: HashMap<String, Vec<(i64, bool)>> = HashMap::new();
    for m in &dead {
        assert_eq!(header(m, "weir.error.reason"), Some("invalid"));
        let plugin = header(m, "weir.plugin").unwrap();
        assert!(plugin == rust_id || plugin == python_id, "{plugin}");
        let offset: i64 = header(m, "weir.source.offset").unwrap().parse().unwrap();
        by_partition
            .entry(header(m, "weir.source.partition").unwrap().to_owned())
            .or_default()
            .push((offset, plugin == python_id));
    }
    for (partition, mut refused) in by_partition {
        refused.sort();
        assert!(
            refused.windows(2).all(|w| w[0].1 <= w[1].1),
            "partition {partition}: the Rust validator after the Python one"
        );
    }
    let by_python = dead
        .iter()
        .filter(|m| header(m, "weir.plugin") == Some(python_id.as_str()))
        .count();
    assert!(
        by_python > 0 && by_python < dead.len(),
        "both versions refused records: {by_python} of {} by Python",
        dead.len()
    );

    assert_all_committed(brokers, &group, &input);
    let log = weir.log_text();
    assert_eq!(log.matches("plugin reloaded").count(), 1);
    assert_eq!(log.matches("reload rejected").count(), 0);
    assert_eq!(log.matches("partitions revoked").count(), 0, "no rebalance");
    assert_eq!(weir.terminate(), Some(0));
}

// --- measurements (not run by default) ----------------------------------------------

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// User + system CPU time of this process (`RUSAGE_SELF`) or of its waited-for
/// children (`RUSAGE_CHILDREN`).
fn rusage(who: libc::c_int) -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(who, &mut usage) }, 0);
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) },
        0
    );
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// (Rss, Private_Dirty) of this process in KiB, from /proc/self/smaps_rollup.
fn smaps() -> (i64, i64) {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
    let field = |name: &str| -> i64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in smaps_rollup"))
    };
    (field("Rss:"), field("Private_Dirty:"))
}

/// Prints, for the validator in Rust, Python, JavaScript and Go: component size,
/// cold compile, load from the compile cache, instantiate + init, the cost of one
/// event, the least memory cap and the RSS of an instance. Run it alone:
/// `cargo test --release -p weir --test polyglot -- --ignored --nocapture measure`.
#[test]
#[ignore = "a measurement run by hand; see BENCHMARKS.md"]
fn measure_the_validator_in_every_language() {
    use std::process::Stdio;
    use std::time::Instant;
    use weir::plugin::{
        CallError, CallSite, Event, Fault, Limits, LoadError, PluginEngine, PluginInstance,
    };

    const EVENTS: usize = 20_000;
    const CALLS: usize = 1_000;
    const INSTANCES: i64 = 8;
    let validators: [(&str, PathBuf); 4] = [
        ("Rust", plugin("task_validator")),
        ("Python", port("python", "task-validator")),
        ("JavaScript", port("js", "task-validator")),
        ("Go", port("go", "task-validator")),
    ];
    let samples = generate(EVENTS, 7, start());
    let many = samples_jsonl(&samples);
    let one = samples_jsonl(&samples[..1]);
    let events: Vec<_> = std::fs::read_to_string(many.path())
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| weir::events::parse_line(l, i as i64).unwrap())
        .collect();
    let site = CallSite::default();
    let roomy = Limits {
        memory: 512 << 20,
        timeout: Duration::from_secs(10),
        max_output: 1 << 20,
        ..Limits::default()
    };
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("polyglot-measure");

    // `weir test` of one validator over a file: the child's CPU time, least of 3.
    let weir_test_cpu = |wasm: &Path, input: &Path| -> Duration {
        (0..3)
            .map(|_| {
                let before = rusage(libc::RUSAGE_CHILDREN);
                let status = weir()
                    .arg("test")
                    .arg(wasm)
                    .arg("--input")
                    .arg(input)
                    .args(["--memory", "512MiB", "--timeout", "10s"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success());
                rusage(libc::RUSAGE_CHILDREN) - before
            })
            .min()
            .unwrap()
    };

    println!(
        "| validator | component | compile, cold (wall / CPU) | load from the cache | instantiate + init (first / median of 50) | handle-event in process (CPU per call) | `weir test` per event (CPU) | least memory cap (after init / after {CALLS} calls) | RSS per instance (after init / after {CALLS} calls) | of which private dirty |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (lang, wasm) in &validators {
        let size = std::fs::metadata(wasm).unwrap().len() as f64 / 1e6;

        // Cold: an empty compile cache.
        let cache = scratch.join(format!("cache-{lang}"));
        let _ = std::fs::remove_dir_all(&cache);
        // SAFETY of set_var: this test runs alone (--ignored, filtered by name).
        unsafe { std::env::set_var("WEIR_COMPILE_CACHE", &cache) };
        let engine = PluginEngine::new().unwrap();
        let (wall, cpu) = (Instant::now(), rusage(libc::RUSAGE_SELF));
        engine.load(wasm, Vec::new(), roomy).unwrap();
        let (cold_wall, cold_cpu) = (wall.elapsed(), rusage(libc::RUSAGE_SELF) - cpu);

        // Cached: a new engine, the same cache.
        let engine = PluginEngine::new().unwrap();
        let started = Instant::now();
        let version = engine.load(wasm, Vec::new(), roomy).unwrap();
        let cached = started.elapsed();

        let mut starts: Vec<Duration> = (0..50)
            .map(|_| {
                let started = Instant::now();
                let instance = version.instantiate().unwrap();
                let took = started.elapsed();
                drop(instance);
                took
            })
            .collect();
        let first = starts[0];
        starts.sort();

        // One instance, warmed up with 1,000 calls, then every event once.
        let mut instance = version.instantiate().unwrap();
        let mut faults = 0;
        let mut call_all = |instance: &mut PluginInstance, events: &[Event]| {
            for event in events {
                if let Err(CallError::Fault(_)) = instance.handle(event, &site) {
                    faults += 1;
                    *instance = version.instantiate().unwrap();
                }
            }
        };
        call_all(&mut instance, &events[..CALLS]);
        let cpu = thread_cpu();
        call_all(&mut instance, &events);
        let per_call = (thread_cpu() - cpu) / EVENTS as u32;
        assert_eq!(faults, 0, "{lang}: faults under a 512MiB cap");
        drop(instance);

        // `weir test`: (CPU of 20,000 events - CPU of 1) / 19,999.
        let (cpu_one, cpu_many) = (
            weir_test_cpu(wasm, one.path()),
            weir_test_cpu(wasm, many.path()),
        );
        let per_event = (cpu_many - cpu_one) / (EVENTS as u32 - 1);

        // RSS: INSTANCES more instances beside a first one, after init, then after
        // CALLS calls each.
        let _first = version.instantiate().unwrap();
        let (rss0, dirty0) = smaps();
        let mut instances: Vec<_> = (0..INSTANCES)
            .map(|_| version.instantiate().unwrap())
            .collect();
        let (rss1, dirty1) = smaps();
        for instance in &mut instances {
            for event in &events[..CALLS] {
                let _ = instance.handle(event, &site);
            }
        }
        let (rss2, dirty2) = smaps();
        drop(instances);

        // The least cap (64 KiB pages) under which it starts, then under which it
        // also handles CALLS events without a memory-limit fault.
        let fits = |cap: usize, calls: usize| -> bool {
            let limits = Limits {
                memory: cap,
                ..roomy
            };
            let version = engine.load(wasm, Vec::new(), limits).unwrap();
            let mut instance = match version.instantiate() {
                Ok(instance) => instance,
                Err(LoadError::StartMemory { .. }) => return false,
                Err(e) => panic!("{lang}: {e}"),
            };
            !events[..calls].iter().any(|e| {
                matches!(
                    instance.handle(e, &site),
                    Err(CallError::Fault(Fault::MemoryLimit(_)))
                )
            })
        };
        let least = |calls: usize| -> usize {
            let page = 64 << 10;
            let (mut lo, mut hi) = (0usize, 4096usize);
            assert!(fits(hi * page, calls));
            while hi - lo > 1 {
                let mid = (lo + hi) / 2;
                if fits(mid * page, calls) {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            hi * page
        };
        let mib = |bytes: usize| bytes as f64 / (1 << 20) as f64;
        let (at_init, at_calls) = (least(0), least(CALLS));
        let per = |kib: i64| kib as f64 / INSTANCES as f64 / 1024.0;
        println!(
            "| {lang} | {size:.2} MB | {:.2} s / {:.2} s | {:.3} s | {:.2} ms / {:.2} ms | {:.1} µs | {:.1} µs | {:.2} / {:.2} MiB | {:.2} / {:.2} MiB | {:.2} / {:.2} MiB |",
            cold_wall.as_secs_f64(),
            cold_cpu.as_secs_f64(),
            cached.as_secs_f64(),
            first.as_secs_f64() * 1e3,
            starts[25].as_secs_f64() * 1e3,
            per_call.as_secs_f64() * 1e6,
            per_event.as_secs_f64() * 1e6,
            mib(at_init),
            mib(at_calls),
            per(rss1 - rss0),
            per(rss2 - rss0),
            per(dirty1 - dirty0),
            per(dirty2 - dirty0),
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
