//! `weir demo`: the embedded cluster, the Todo pipelines from pipelines.toml and
//! generated task events; a progress bar while they flow, a summary table at the end.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::DateTime;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::{ClientConfig, Offset};

use crate::config::{EnvString, WeirConfig};
use crate::kafka::Brokers;
use crate::pipeline::{Runtime, install_signal_handlers, load_plugins};
use crate::plugin::PluginEngine;
use crate::telemetry::{Health, Metrics};

/// Longest the demo waits for the pipelines to catch up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(300);

pub fn run(config_path: &Path, events: usize) -> anyhow::Result<ExitCode> {
    let mut config = WeirConfig::load(config_path)?;
    config.kafka.brokers = EnvString("embedded".into());
    let engine = PluginEngine::new()?;
    let plugins = load_plugins(&config, &engine).map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\n  build the plugins first: scripts/build-plugins (or run scripts/demo)"
        )
    })?;
    let brokers = Brokers::connect(&config)?;
    brokers.provision(&config)?;
    let stop = Arc::new(AtomicBool::new(false));
    install_signal_handlers(&stop)?;
    let health = Arc::new(Health::default());
    let runtime = Runtime::start(&config, &brokers, plugins, Metrics::new(), health, stop)?;
    // Produce once every pipeline holds its partitions, so latency measures the
    // pipelines, not the consumer groups forming.
    let joining = Instant::now();
    while runtime.health.readiness().is_err()
        && joining.elapsed() < Duration::from_secs(30)
        && !runtime.stopping()
    {
        std::thread::sleep(Duration::from_millis(50));
    }

    let inputs: BTreeSet<&str> = config.pipelines.iter().map(|p| p.input()).collect();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let start = DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    let samples = todo_events::sample::generate(events, 2026, start);
    let invalid = samples.iter().filter(|s| !s.valid).count();
    let producer: ThreadedProducer<DefaultProducerContext> = brokers
        .client_config(&config)
        .set("linger.ms", "5")
        .create()
        .context("cannot create the demo producer")?;
    let started = Instant::now();
    for input in &inputs {
        for sample in &samples {
            let record = BaseRecord::to(input)
                .key(sample.key.as_bytes())
                .payload(sample.value.as_slice());
            crate::kafka::send_waiting(&producer, record);
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .context("cannot deliver the demo events")?;
    eprintln!(
        "produced {events} task events ({invalid} invalid) to {}",
        inputs.iter().copied().collect::<Vec<_>>().join(", ")
    );

    let total = (events * config.pipelines.len()) as u64;
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
        .map(|p| committed_watcher(&brokers.client_config(&config), &p.group(), p.input()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    loop {
        let done: u64 = watchers.iter().map(Watcher::committed).sum();
        bar.set_position(done.min(total));
        if done >= total {
            break;
        }
        if runtime.stopping() {
            bar.abandon_with_message("interrupted");
            runtime.shutdown()?;
            return Ok(ExitCode::FAILURE);
        }
        if started.elapsed() > CATCH_UP_TIMEOUT {
            bar.abandon_with_message("too slow");
            runtime.shutdown()?;
            bail!(
                "the pipelines did not catch up within {CATCH_UP_TIMEOUT:?} ({done} of {total} records committed)"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = started.elapsed();
    bar.finish_with_message("done");
    let metrics = runtime.metrics.clone();
    runtime.shutdown()?;
    print_summary(&config, &metrics, events, invalid, elapsed);
    Ok(ExitCode::SUCCESS)
}

/// Reads a group's committed offsets on one topic.
struct Watcher {
    consumer: BaseConsumer,
    partitions: TopicPartitionList,
}

impl Watcher {
    fn committed(&self) -> u64 {
        self.consumer
            .committed_offsets(self.partitions.clone(), Duration::from_secs(5))
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .map(|e| match e.offset() {
                        Offset::Offset(n) => n.max(0) as u64,
                        _ => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
}

fn committed_watcher(base: &ClientConfig, group: &str, topic: &str) -> anyhow::Result<Watcher> {
    let consumer: BaseConsumer = base.clone().set("group.id", group).create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let mut partitions = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            partitions.add_partition(topic, p.id());
        }
    }
    Ok(Watcher {
        consumer,
        partitions,
    })
}

fn print_summary(
    config: &WeirConfig,
    metrics: &Metrics,
    events: usize,
    invalid: usize,
    elapsed: Duration,
) {
    const REASONS: [&str; 6] = [
        "invalid",
        "retries-exhausted",
        "trap",
        "timeout",
        "memory-limit",
        "bad-output",
    ];
    let ms = |s: Option<f64>| s.map_or("-".to_owned(), |s| format!("{:.1} ms", s * 1000.0));
    println!();
    println!(
        "weir demo: {events} task events ({invalid} invalid) through {} pipelines in {:.2}s",
        config.pipelines.len(),
        elapsed.as_secs_f64()
    );
    println!();
    println!(
        "{:<12} {:>10} {:<28} {:>8} {:<24} {:>10} {:>10}",
        "pipeline", "events in", "outputs", "dlq", "dlq by reason", "p50", "p99"
    );
    for pipeline in &config.pipelines {
        let m = metrics.pipeline(pipeline.name());
        let outputs: Vec<String> = pipeline
            .outputs
            .values()
            .map(|topic| format!("{} {}", m.produced_count(topic.get_ref()), topic.get_ref()))
            .collect();
        let dlq: Vec<String> = REASONS
            .iter()
            .filter_map(|r| {
                Some(m.dlq_count(r))
                    .filter(|n| *n > 0)
                    .map(|n| format!("{r}: {n}"))
            })
            .collect();
        println!(
            "{:<12} {:>10} {:<28} {:>8} {:<24} {:>10} {:>10}",
            pipeline.name(),
            m.consumed.get(),
            outputs.join(", "),
            m.produced_count(&pipeline.dlq()),
            dlq.join(", "),
            ms(m.latency_quantile(0.5)),
            ms(m.latency_quantile(0.99)),
        );
    }
    println!();
    println!(
        "latency: record timestamp to every output acknowledged by the broker (embedded cluster, in memory)"
    );
}
