//! The supervisor: loads plugins, provisions topics, starts one consumer thread per
//! pipeline, and on shutdown stops fetching, lets in-flight records finish, flushes
//! the producer and commits.
//!
//! Each consumer thread polls its pipeline's consumer (so rebalance callbacks run
//! there), dispatches records to partition runners, pauses partitions for
//! backpressure or an open circuit, and commits periodically.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::topic_partition_list::TopicPartitionList;

/// How long the consumer thread waits for room before it looks again.
const CONGESTION_WAIT: Duration = Duration::from_millis(1);

use super::Chain;
use super::runner::{PartitionSet, PipelineShared, to_event};
use crate::config::WeirConfig;
use crate::kafka::Brokers;
use crate::kafka::consumer::{PipelineConsumer, PipelineContext, consumer_config};
use crate::kafka::producer::OutputProducer;
use crate::plugin::{PluginEngine, PluginVersion};
use crate::telemetry::{Health, Metrics};
use prometheus::IntGauge;

/// How often completed offsets are committed.
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// How long shutdown waits for the producer to deliver what it holds.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// How often, and how patiently, the watchdog asks the broker for metadata.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Compiles every pipeline's plugins and inits one chain of each, so a bad plugin or
/// config fails start-up, not the first record.
pub fn load_plugins(
    config: &WeirConfig,
    engine: &PluginEngine,
) -> anyhow::Result<Vec<Vec<Arc<PluginVersion>>>> {
    config
        .pipelines
        .iter()
        .map(|pipeline| {
            let limits = pipeline.limits.limits();
            let versions = pipeline
                .plugins
                .get_ref()
                .iter()
                .map(|plugin| {
                    engine.load(&config.plugin_path(plugin), plugin.init_config(), limits)
                })
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("pipeline {}", pipeline.name()))?;
            Chain::new(&versions).with_context(|| format!("pipeline {}", pipeline.name()))?;
            Ok(versions)
        })
        .collect()
}

/// The running pipelines.
pub struct Runtime {
    /// Set to stop every consumer thread.
    stop: Arc<AtomicBool>,
    consumers: Vec<(String, JoinHandle<()>)>,
    /// Probes the broker so that an outage is noticed even when idle.
    watchdog: JoinHandle<()>,
    /// The running pipelines, in config order (the reloader swaps their plugins).
    pub pipelines: Vec<Arc<PipelineShared>>,
    producer: OutputProducer,
    pub metrics: Metrics,
    pub health: Arc<Health>,
}

impl Runtime {
    /// Starts every pipeline of `config` against `brokers` (already provisioned).
    pub fn start(
        config: &WeirConfig,
        brokers: &Brokers,
        plugins: Vec<Vec<Arc<PluginVersion>>>,
        metrics: Metrics,
        health: Arc<Health>,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<Runtime> {
        let base = brokers.client_config(config);
        let producer = OutputProducer::spawn(&base, health.clone())
            .context("cannot create the Kafka producer")?;
        let mut consumers = Vec::new();
        let mut pipelines = Vec::new();
        for (pipeline, versions) in config.pipelines.iter().zip(plugins) {
            let shared = Arc::new(PipelineShared::new(
                pipeline,
                versions,
                producer.clone(),
                metrics.pipeline(pipeline.name()),
                health.clone(),
            ));
            shared.metrics.circuit_open.set(0);
            for version in shared.versions() {
                metrics.declare_plugin(&version.name);
            }
            health.pipeline_assigned(pipeline.name(), false);
            pipelines.push(shared.clone());
            let set = Arc::new(PartitionSet::new(shared.clone()));
            let context =
                PipelineContext::new(pipeline.name().to_owned(), health.clone(), set.clone());
            let consumer: PipelineConsumer = consumer_config(&base, &pipeline.group())
                .create_with_context(context)
                .with_context(|| {
                    format!("cannot create the consumer of pipeline {}", pipeline.name())
                })?;
            consumer.subscribe(&[pipeline.input()]).with_context(|| {
                format!(
                    "cannot subscribe pipeline {} to {}",
                    pipeline.name(),
                    pipeline.input()
                )
            })?;
            tracing::info!(
                pipeline = pipeline.name(), input = pipeline.input(), group = %pipeline.group(), dlq = %pipeline.dlq(),
                plugins = ?shared.versions().iter().map(|v| v.label.to_string()).collect::<Vec<_>>(),
                "pipeline started"
            );
            let loop_stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("weir-consume-{}", pipeline.name()))
                .spawn(move || consume(consumer, set, shared, loop_stop))
                .context("cannot start a consumer thread")?;
            consumers.push((pipeline.name().to_owned(), thread));
        }
        let probe: BaseConsumer = base.create().context("cannot create the broker probe")?;
        let lags = config
            .pipelines
            .iter()
            .map(|p| {
                let offsets: BaseConsumer = base
                    .clone()
                    .set("group.id", p.group())
                    .create()
                    .context("cannot create the lag reader")?;
                Ok(LagReader {
                    offsets,
                    topic: p.input().to_owned(),
                    metrics: metrics.pipeline(p.name()),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (watch_stop, watch_health, watch_ready) =
            (stop.clone(), health.clone(), metrics.ready.clone());
        let watchdog = std::thread::Builder::new()
            .name("weir-watchdog".into())
            .spawn(move || watch(probe, lags, watch_health, watch_ready, watch_stop))
            .context("cannot start the watchdog thread")?;
        Ok(Runtime {
            stop,
            consumers,
            watchdog,
            pipelines,
            producer,
            metrics,
            health,
        })
    }

    /// Stops fetching, lets in-flight records finish, commits, flushes the producer.
    pub fn shutdown(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        for (name, thread) in self.consumers {
            if thread.join().is_err() {
                tracing::error!(pipeline = %name, "consumer thread panicked");
            }
        }
        let _ = self.watchdog.join();
        self.producer.flush(FLUSH_TIMEOUT).with_context(|| {
            format!(
                "{} records were not delivered before shutdown",
                self.producer.in_flight()
            )
        })?;
        Ok(())
    }

    /// Whether shutdown was asked for (by a signal).
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// The consumer thread of one pipeline.
fn consume(
    consumer: PipelineConsumer,
    set: Arc<PartitionSet>,
    shared: Arc<PipelineShared>,
    stop: Arc<AtomicBool>,
) {
    let mut last_commit = Instant::now();
    let mut circuit_paused = false;
    while !stop.load(Ordering::SeqCst) {
        // The circuit: pause everything while it cools down.
        let blocked = shared.circuit_blocks();
        if blocked && !circuit_paused {
            set.pause(&consumer, set.partitions());
            circuit_paused = true;
        } else if !blocked && circuit_paused {
            let backpressured = set.backpressured();
            set.resume(
                &consumer,
                set.partitions()
                    .into_iter()
                    .filter(|p| !backpressured.contains(p)),
            );
            circuit_paused = false;
        }
        // Backpressure: feed the queues from the overflow, resume partitions that
        // caught up, pause those that stalled, and hold off polling while a moving
        // partition is congested.
        let relief = set.relieve();
        if !relief.resume.is_empty() && !circuit_paused {
            set.resume(&consumer, relief.resume);
        }
        if !relief.pause.is_empty() {
            set.pause(&consumer, relief.pause);
        }
        if relief.congested {
            std::thread::sleep(CONGESTION_WAIT);
        } else {
            let wait = if relief.overflowing {
                CONGESTION_WAIT
            } else {
                Duration::from_millis(100)
            };
            match consumer.poll(wait) {
                None => {}
                Some(Ok(message)) => {
                    shared.metrics.consumed.inc();
                    set.dispatch(to_event(&message));
                }
                Some(Err(error)) => {
                    tracing::warn!(pipeline = %shared.name, %error, "consume error");
                }
            }
        }
        if last_commit.elapsed() >= COMMIT_INTERVAL {
            set.commit(&consumer, CommitMode::Async);
            shared.health.watch_stall(shared.producer.in_flight());
            last_commit = Instant::now();
        }
    }
    tracing::info!(pipeline = %shared.name, "stopping: finishing in-flight records");
    set.stop(&consumer, &set.partitions());
    consumer.unsubscribe();
    tracing::info!(pipeline = %shared.name, "stopped");
}

/// Reads one pipeline's consumer lag: high watermarks minus committed offsets.
struct LagReader {
    /// A client with the pipeline's `group.id` (never subscribed), to read commits.
    offsets: BaseConsumer,
    topic: String,
    metrics: crate::telemetry::PipelineMetrics,
}

impl LagReader {
    fn refresh(&self) -> Result<(), rdkafka::error::KafkaError> {
        let metadata = self
            .offsets
            .fetch_metadata(Some(&self.topic), PROBE_EVERY)?;
        let mut tpl = TopicPartitionList::new();
        for topic in metadata.topics() {
            for partition in topic.partitions() {
                tpl.add_partition(&self.topic, partition.id());
            }
        }
        let committed = self.offsets.committed_offsets(tpl, PROBE_EVERY)?;
        for element in committed.elements() {
            let (low, high) =
                self.offsets
                    .fetch_watermarks(&self.topic, element.partition(), PROBE_EVERY)?;
            let position = match element.offset() {
                Offset::Offset(n) => n,
                _ => low,
            };
            self.metrics
                .lag(&self.topic, element.partition(), (high - position).max(0));
        }
        Ok(())
    }
}

/// Asks the broker for metadata every [`PROBE_EVERY`] (no answer within that time is
/// broker trouble: a frozen broker raises no error by itself) and refreshes the
/// consumer lag gauges.
fn watch(
    probe: BaseConsumer,
    lags: Vec<LagReader>,
    health: Arc<Health>,
    ready: IntGauge,
    stop: Arc<AtomicBool>,
) {
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if Instant::now() >= next {
            let result = probe
                .fetch_metadata(None, PROBE_EVERY)
                .map(drop)
                .map_err(|e| format!("no metadata answer within {PROBE_EVERY:?}: {e}"));
            let answered = result.is_ok();
            health.probe_result(result);
            if answered {
                for reader in &lags {
                    if let Err(error) = reader.refresh() {
                        tracing::debug!(topic = %reader.topic, %error, "cannot refresh consumer lag");
                    }
                }
            }
            next = Instant::now() + PROBE_EVERY;
        }
        ready.set(i64::from(health.readiness().is_ok()));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Installs SIGINT/SIGTERM handlers: the first sets `stop`, a second exits at once.
pub fn install_signal_handlers(stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal.
        signal_hook::flag::register_conditional_shutdown(signal, 130, stop.clone())
            .context("cannot install signal handler")?;
        signal_hook::flag::register(signal, stop.clone())
            .context("cannot install signal handler")?;
    }
    Ok(())
}
