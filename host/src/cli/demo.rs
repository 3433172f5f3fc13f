//! `weir demo`: the embedded cluster, the pipelines of a config and sample events
//! from a JSON-lines file (as `weir test` reads them); a progress bar while they
//! flow, a summary table at the end. `scripts/demo` generates the Todo events.

use std::collections::BTreeSet;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::config::{EnvString, WeirConfig};
use crate::events::Line;
use crate::kafka::committed_offsets;
use crate::kafka::producer::to_kafka_headers;
use crate::outcome::DlqReason;
use crate::plugin::Event;
use crate::startup::{self, Options};
use crate::telemetry::Metrics;

/// Longest the demo waits for the pipelines to catch up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(300);

pub fn run(config_path: &Path, input: &Path, events: Option<usize>) -> anyhow::Result<ExitCode> {
    let mut config = WeirConfig::load(config_path)?;
    config.kafka.brokers = EnvString("embedded".into());
    let samples = read_events(input)?;
    let count = events.unwrap_or(samples.len());
    let running = startup::load_config(config, "scripts/build-plugins (or run scripts/demo)")?
        .start(Options::default())?;
    let runtime = &running.runtime;
    // Produce once every pipeline holds its partitions, so latency measures the
    // pipelines, not the consumer groups forming.
    let joining = Instant::now();
    while runtime.health.readiness().is_err()
        && joining.elapsed() < Duration::from_secs(30)
        && !runtime.stopping()
    {
        std::thread::sleep(Duration::from_millis(50));
    }

    let config = &running.config;
    let inputs: BTreeSet<&str> = config.pipelines.iter().map(|p| p.input()).collect();
    let producer: ThreadedProducer<DefaultProducerContext> = running
        .brokers
        .client_config(config)
        .set("linger.ms", "5")
        .create()
        .context("cannot create the demo producer")?;
    let started = Instant::now();
    for input in &inputs {
        for event in samples.iter().cycle().take(count) {
            let mut record = BaseRecord::to(input).headers(to_kafka_headers(&event.headers));
            if let Some(key) = &event.key {
                record = record.key(key.as_slice());
            }
            if let Some(value) = &event.value {
                record = record.payload(value.as_slice());
            }
            crate::kafka::send_waiting(&producer, record)
                .with_context(|| format!("cannot produce a demo event to {input}"))?;
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .context("cannot deliver the demo events")?;
    eprintln!(
        "produced {count} events from {} to {}",
        input.display(),
        inputs.iter().copied().collect::<Vec<_>>().join(", ")
    );

    let total = (count * config.pipelines.len()) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{spinner} {msg:10} [{bar:40}] {pos}/{len} records committed ({elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("processing");
    let watchers = config
        .pipelines
        .iter()
        .map(|p| -> anyhow::Result<Watcher> {
            let consumer: BaseConsumer = running
                .brokers
                .client_config(config)
                .set("group.id", p.group())
                .create()?;
            Ok(Watcher {
                consumer,
                topic: p.input().to_owned(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    loop {
        let done: u64 = watchers.iter().map(Watcher::committed).sum();
        bar.set_position(done.min(total));
        if done >= total {
            break;
        }
        if runtime.stopping() {
            bar.abandon_with_message("interrupted");
            drop((watchers, producer));
            running.stop()?;
            return Ok(ExitCode::FAILURE);
        }
        if started.elapsed() > CATCH_UP_TIMEOUT {
            bar.abandon_with_message("too slow");
            drop((watchers, producer));
            running.stop()?;
            bail!(
                "the pipelines did not catch up within {CATCH_UP_TIMEOUT:?} ({done} of {total} records committed)"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = started.elapsed();
    bar.finish_with_message("done");
    // Clients go before the embedded cluster does.
    drop((watchers, producer));
    let metrics = runtime.metrics.clone();
    let config = running.config.clone();
    running.stop()?;
    print_summary(&config, &metrics, count, input, elapsed);
    Ok(ExitCode::SUCCESS)
}

/// The events of a JSON-lines file; a malformed line is an error naming it.
fn read_events(path: &Path) -> anyhow::Result<Vec<Event>> {
    let file = std::fs::File::open(path).with_context(|| {
        format!(
            "cannot open {} (generate sample events with scripts/demo, or pass --input)",
            path.display()
        )
    })?;
    let mut events = Vec::new();
    for line in crate::events::read(BufReader::new(file)) {
        match line.with_context(|| format!("cannot read {}", path.display()))? {
            Line::Event(_, event) => events.push(event),
            Line::Clock(number, _) => {
                bail!(
                    "{}:{number}: clock lines are for weir test, not the demo",
                    path.display()
                )
            }
            Line::Malformed(number, message) => {
                bail!("{}:{number}: {message}", path.display())
            }
        }
    }
    if events.is_empty() {
        bail!("{} holds no events", path.display());
    }
    Ok(events)
}

/// The default sample events: beside the config, in `examples/`.
pub fn default_input(config_path: &Path) -> PathBuf {
    config_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("examples/task-events.jsonl")
}

/// Reads a group's committed offsets on one topic.
struct Watcher {
    consumer: BaseConsumer,
    topic: String,
}

impl Watcher {
    fn committed(&self) -> u64 {
        committed_offsets(&self.consumer, &self.topic, Duration::from_secs(5))
            .map(|offsets| offsets.values().map(|o| o.unwrap_or(0).max(0) as u64).sum())
            .unwrap_or(0)
    }
}

fn print_summary(
    config: &WeirConfig,
    metrics: &Metrics,
    events: usize,
    input: &Path,
    elapsed: Duration,
) {
    let ms = |s: Option<f64>| s.map_or("-".to_owned(), |s| format!("{:.1} ms", s * 1000.0));
    println!();
    println!(
        "weir demo: {events} events from {} through {} pipeline(s) in {:.2}s",
        input.display(),
        config
            .pipelines
            .iter()
            .map(|p| p.branches().len())
            .sum::<usize>(),
        elapsed.as_secs_f64()
    );
    println!();
    println!(
        "{:<12} {:>10} {:<28} {:>8} {:<24} {:>10} {:>10}",
        "pipeline", "events in", "outputs", "dlq", "dlq by reason", "p50", "p99"
    );
    for pipeline in &config.pipelines {
        let consumed = metrics.pipeline(pipeline.name());
        for branch in pipeline.branches() {
            let m = metrics.pipeline(branch.name);
            let outputs: Vec<String> = branch
                .outputs
                .values()
                .map(|topic| format!("{} {}", m.produced_count(topic.get_ref()), topic.get_ref()))
                .collect();
            let dead_letters = metrics.dead_letters(branch.name);
            let dlq: Vec<String> = DlqReason::ALL
                .iter()
                .filter_map(|r| {
                    Some(dead_letters.count(*r))
                        .filter(|n| *n > 0)
                        .map(|n| format!("{r}: {n}"))
                })
                .collect();
            println!(
                "{:<12} {:>10} {:<28} {:>8} {:<24} {:>10} {:>10}",
                branch.name,
                consumed.consumed_count(),
                outputs.join(", "),
                m.produced_count(&branch.dlq()),
                dlq.join(", "),
                ms(consumed.latency().quantile(0.5)),
                ms(consumed.latency().quantile(0.99)),
            );
        }
    }
    println!();
    println!(
        "latency: record timestamp to every output acknowledged by the broker (embedded cluster, in memory)"
    );
}
