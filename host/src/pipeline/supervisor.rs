//! The supervisor: starts one consumer thread per pipeline and the watchdog, and on
//! shutdown stops fetching, lets in-flight records finish, commits and flushes the
//! producer, all within one drain deadline.
//!
//! Each consumer thread polls its pipeline's consumer (so rebalance callbacks run
//! there; the records themselves go to the partition runners through their split
//! queues), pauses the partitions while the circuit is open, and commits.

use super::keyed::StatefulSlots;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset};

use super::live::LivePipeline;
use super::partitions::{DRAIN_TIMEOUT, PartitionSet};
use super::sink::{AtLeastOnce, Commit, RecordTicket, Sink};
use super::snapshot::Snapshot;
use super::transaction::Transactional;
use crate::config::{Delivery, PipelineConfig, WeirConfig};
use crate::kafka::consumer::{PipelineConsumer, PipelineContext, consumer_config, create_consumer};
use crate::kafka::producer::OutputProducer;
use crate::kafka::{Brokers, committed_offsets};
use crate::plugin::{PluginEngine, PluginVersion};
use crate::shutdown::{Shutdown, join_until};
use crate::telemetry::health::StallWatch;
use crate::telemetry::{Health, Metrics, PipelineMetrics};

/// How often an at-least-once pipeline commits completed offsets.
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// How often, and how patiently, the watchdog asks the broker for metadata.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Compiles a pipeline's plugins (in [`PipelineConfig::all_plugins`] order) and
/// inits one instance of each, so a bad plugin or config fails start-up, not the
/// first record.
pub fn load_pipeline(
    config: &WeirConfig,
    pipeline: &PipelineConfig,
    engine: &PluginEngine,
) -> anyhow::Result<Vec<Arc<PluginVersion>>> {
    let limits = pipeline.limits.limits(&config.kafka);
    pipeline
        .all_plugins()
        .map(|plugin| {
            let version = engine.load(&config.plugin_path(plugin), plugin.init_config(), limits)?;
            version.instantiate()?;
            Ok(version)
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("pipeline {}", pipeline.name()))
}

/// [`load_pipeline`] for every pipeline, in config order.
pub fn load_plugins(
    config: &WeirConfig,
    engine: &PluginEngine,
) -> anyhow::Result<Vec<Vec<Arc<PluginVersion>>>> {
    config
        .pipelines
        .iter()
        .map(|pipeline| load_pipeline(config, pipeline, engine))
        .collect()
}

/// The running pipelines.
pub struct Runtime {
    /// Stops everything; each pipeline's stop is a child of it.
    shutdown: Shutdown,
    consumers: Vec<(String, JoinHandle<()>)>,
    /// Probes the broker so that an outage is noticed even when idle.
    watchdog: JoinHandle<()>,
    /// The running pipelines, in config order (the reloader swaps their snapshots).
    pub pipelines: Vec<Arc<LivePipeline>>,
    /// The at-least-once producer, shared by those pipelines.
    producer: Option<OutputProducer<RecordTicket>>,
    pub metrics: Metrics,
    pub health: Arc<Health>,
}

/// Why the runtime could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot create the {what}: {source}")]
    Client {
        what: String,
        source: Box<rdkafka::error::KafkaError>,
    },
    #[error("cannot subscribe pipeline {pipeline} to {topic}: {source}")]
    Subscribe {
        pipeline: String,
        topic: String,
        source: Box<rdkafka::error::KafkaError>,
    },
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "{pending} record(s) were not delivered within the {DRAIN_TIMEOUT:?} drain timeout; \
         their inputs are not committed and will be processed again"
    )]
    Undelivered { pending: i32 },
    #[error("stopped after a fatal error: {0}")]
    Fatal(String),
}

fn client_error(
    what: impl Into<String>,
) -> impl FnOnce(rdkafka::error::KafkaError) -> RuntimeError {
    let what = what.into();
    move |source| RuntimeError::Client {
        what,
        source: Box::new(source),
    }
}

fn spawn(
    name: String,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, RuntimeError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(body)
        .map_err(|source| RuntimeError::Thread { what: name, source })
}

impl Runtime {
    /// Starts every pipeline of `config` against `brokers` (already provisioned):
    /// the shared at-least-once producer, then each pipeline (its sink, its live
    /// state, its consumer thread), then the watchdog.
    pub fn start(
        config: &WeirConfig,
        brokers: &Brokers,
        plugins: Vec<Vec<Arc<PluginVersion>>>,
        metrics: Metrics,
        health: Arc<Health>,
        shutdown: Shutdown,
    ) -> Result<Runtime, RuntimeError> {
        let base = brokers.client_config(config);
        let needs_producer = config
            .pipelines
            .iter()
            .any(|p| p.delivery == Delivery::AtLeastOnce);
        // The producer's resender outlives the pipelines: it keeps resending while
        // they drain, and stops when the runtime has flushed (or given up).
        let producer = needs_producer
            .then(|| OutputProducer::spawn(&base, health.clone(), Shutdown::new()))
            .transpose()
            .map_err(client_error("Kafka producer"))?;
        let mut consumers = Vec::new();
        let mut pipelines = Vec::new();
        let starter = PipelineStarter {
            config,
            base: &base,
            producer: producer.as_ref(),
            metrics: &metrics,
            health: &health,
            shutdown: &shutdown,
        };
        for (pipeline, versions) in config.pipelines.iter().zip(plugins) {
            let (live, consumer) = starter.start(pipeline, versions)?;
            pipelines.push(live);
            consumers.push((pipeline.name().to_owned(), consumer));
        }
        let watchdog = start_watchdog(config, &base, &metrics, &health, &shutdown)?;
        Ok(Runtime {
            shutdown,
            consumers,
            watchdog,
            pipelines,
            producer,
            metrics,
            health,
        })
    }

    /// Stops fetching, lets in-flight records finish, commits, flushes the producer:
    /// all within [`DRAIN_TIMEOUT`] of the stop signal.
    pub fn shutdown(self) -> Result<(), RuntimeError> {
        self.shutdown.trigger();
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        // Consumer threads use the same deadline; give them a moment more to close.
        let join_by = deadline + Duration::from_secs(2);
        for (name, thread) in self.consumers {
            join_until(thread, join_by, &format!("the consumer of pipeline {name}"));
        }
        join_until(self.watchdog, join_by, "the watchdog");
        if let Some(producer) = self.producer {
            let left = deadline.saturating_duration_since(Instant::now());
            if producer.flush(left).is_err() {
                let pending = producer.in_flight();
                producer.abandon();
                return Err(RuntimeError::Undelivered { pending });
            }
            producer.close();
        }
        if let Some(problem) = self.health.fatal_error() {
            return Err(RuntimeError::Fatal(problem));
        }
        Ok(())
    }

    /// Whether shutdown was asked for (by a signal, or a fatal error).
    pub fn stopping(&self) -> bool {
        self.shutdown.is_triggered()
    }

    /// Waits until shutdown is asked for, or a fatal client error happens.
    pub fn wait(&self) {
        while self.shutdown.sleep(Duration::from_millis(200)) {
            if self.health.fatal_error().is_some() {
                self.shutdown.trigger();
            }
        }
    }
}

/// What every pipeline's start needs.
struct PipelineStarter<'a> {
    config: &'a WeirConfig,
    /// The client config with `[kafka]`.
    base: &'a ClientConfig,
    /// The shared at-least-once producer, if any pipeline is at-least-once.
    producer: Option<&'a OutputProducer<RecordTicket>>,
    metrics: &'a Metrics,
    health: &'a Arc<Health>,
    shutdown: &'a Shutdown,
}

impl PipelineStarter<'_> {
    /// Starts one pipeline: its snapshot and sink, its live state, and its consumer
    /// thread, subscribed to its input.
    fn start(
        &self,
        pipeline: &PipelineConfig,
        versions: Vec<Arc<PluginVersion>>,
    ) -> Result<(Arc<LivePipeline>, JoinHandle<()>), RuntimeError> {
        let (name, metrics, health) = (pipeline.name(), self.metrics, self.health);
        let stateful = StatefulSlots::of(
            pipeline,
            &versions,
            self.base.clone(),
            pipeline.limits.limits(&self.config.kafka),
            Some(metrics),
            Some(health.clone()),
        )
        // The embedded cluster lives in memory: a local store would outlive it.
        .with_stores(
            self.config
                .state
                .dir()
                .filter(|_| self.config.kafka.brokers.0 != "embedded"),
        );
        let snapshot = Snapshot::build(pipeline, versions, metrics, None);
        let pipeline_metrics = metrics.pipeline(name);
        pipeline_metrics.circuit(false);
        for version in snapshot.plugins() {
            metrics.declare_plugin(&version.name);
        }
        let stall = health.stall_watch(name);
        let (sink, commit_every) = self.sink(pipeline, &stall)?;
        let live = Arc::new(
            LivePipeline::new(
                snapshot,
                pipeline.input(),
                sink,
                pipeline.workers(),
                pipeline_metrics,
                stall,
                self.shutdown.child(),
            )
            .with_state(stateful)
            .with_tracing(&pipeline.group()),
        );
        health.pipeline_assigned(name, false);
        let set = Arc::new(PartitionSet::new(live.clone(), health.clone()));
        let context = PipelineContext::new(name.to_owned(), health.clone(), set.clone());
        let consumer = create_consumer(&consumer_config(self.base, &pipeline.group()), context)
            .map_err(client_error(format!("consumer of pipeline {name}")))?;
        consumer
            .subscribe(&[pipeline.input()])
            .map_err(|source| RuntimeError::Subscribe {
                pipeline: name.to_owned(),
                topic: pipeline.input().to_owned(),
                source: Box::new(source),
            })?;
        tracing::info!(
            pipeline = name, input = pipeline.input(), group = %pipeline.group(),
            delivery = pipeline.delivery.as_str(),
            branches = ?pipeline.branches().iter().map(|b| format!("{} (dlq {})", b.name, b.dlq())).collect::<Vec<_>>(),
            plugins = ?live.snapshot().plugins().map(|v| v.label.to_string()).collect::<Vec<_>>(),
            "pipeline started"
        );
        let running = live.clone();
        let thread = spawn(format!("weir-consume-{name}"), move || {
            consume(consumer, set, running, commit_every)
        })?;
        Ok((live, thread))
    }

    /// The pipeline's sink and how often it commits.
    fn sink(
        &self,
        pipeline: &PipelineConfig,
        stall: &Arc<StallWatch>,
    ) -> Result<(Arc<dyn Sink>, Duration), RuntimeError> {
        let name = pipeline.name();
        let max_record = self.config.kafka.message_max_bytes();
        Ok(match pipeline.delivery {
            Delivery::AtLeastOnce => {
                let producer = self.producer.cloned().ok_or_else(|| RuntimeError::Client {
                    what: format!("producer of pipeline {name}"),
                    source: Box::new(rdkafka::error::KafkaError::ClientCreation(
                        "no shared producer was made".into(),
                    )),
                })?;
                let sink = AtLeastOnce {
                    producer,
                    health: self.health.clone(),
                    max_record,
                };
                (Arc::new(sink), COMMIT_INTERVAL)
            }
            Delivery::ExactlyOnce => {
                let sink = Transactional::spawn(
                    self.base,
                    pipeline,
                    self.metrics.transactions(name),
                    self.health.clone(),
                    stall.clone(),
                    max_record,
                )
                .map_err(client_error(format!(
                    "transactional producer of pipeline {name}"
                )))?;
                (Arc::new(sink), pipeline.transaction_interval.0)
            }
        })
    }
}

/// Starts the watchdog: the broker probe and every pipeline's lag reader.
fn start_watchdog(
    config: &WeirConfig,
    base: &ClientConfig,
    metrics: &Metrics,
    health: &Arc<Health>,
    shutdown: &Shutdown,
) -> Result<JoinHandle<()>, RuntimeError> {
    let probe: BaseConsumer = base.create().map_err(client_error("broker probe"))?;
    let lags = config
        .pipelines
        .iter()
        .map(|p| {
            let offsets: BaseConsumer = base
                .clone()
                .set("group.id", p.group())
                .create()
                .map_err(client_error(format!("lag reader of pipeline {}", p.name())))?;
            Ok(LagReader {
                offsets,
                topic: p.input().to_owned(),
                metrics: metrics.pipeline(p.name()),
            })
        })
        .collect::<Result<Vec<_>, RuntimeError>>()?;
    let (stop, health, metrics) = (shutdown.clone(), health.clone(), metrics.clone());
    spawn("weir-watchdog".into(), move || {
        watch(probe, lags, health, metrics, stop)
    })
}

/// The consumer thread of one pipeline.
fn consume(
    consumer: Arc<PipelineConsumer>,
    set: Arc<PartitionSet>,
    pipeline: Arc<LivePipeline>,
    commit_every: Duration,
) {
    let stop = pipeline.stop().clone();
    let mut last_commit = Instant::now();
    let mut circuit_paused = false;
    while !stop.is_triggered() {
        // The circuit: pause everything while it cools down.
        let blocked = pipeline.circuit_blocks();
        if blocked != circuit_paused {
            if blocked {
                set.pause(&consumer);
            } else {
                set.resume(&consumer);
            }
            circuit_paused = blocked;
        }
        let wait = commit_every.min(Duration::from_millis(100));
        match consumer.poll(wait) {
            None => {}
            Some(Ok(message)) => {
                // Every partition's queue is split off before its assignment, so no
                // record should arrive here; if one does, fetch it again in order.
                let (partition, offset) = (message.partition(), message.offset());
                tracing::error!(
                    pipeline = %pipeline.name(), partition, offset,
                    "a record arrived on the consumer's main queue; fetching the partition again from it"
                );
                drop(message);
                if let Err(error) = consumer.seek(
                    pipeline.input(),
                    partition,
                    Offset::Offset(offset),
                    Duration::from_secs(5),
                ) {
                    tracing::error!(pipeline = %pipeline.name(), partition, %error, "cannot seek");
                }
            }
            Some(Err(error)) => {
                tracing::warn!(pipeline = %pipeline.name(), %error, "consume error");
            }
        }
        if last_commit.elapsed() >= commit_every {
            set.commit(&consumer);
            pipeline.stall().check(set.in_flight());
            last_commit = Instant::now();
        }
    }
    tracing::info!(pipeline = %pipeline.name(), "stopping: finishing in-flight records");
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    set.stop(&consumer, &set.partitions(), deadline, Commit::Final);
    consumer.unsubscribe();
    tracing::info!(pipeline = %pipeline.name(), "stopped");
}

/// Reads one pipeline's consumer lag: high watermarks minus committed offsets.
struct LagReader {
    /// A client with the pipeline's `group.id` (never subscribed), to read commits.
    offsets: BaseConsumer,
    topic: String,
    metrics: PipelineMetrics,
}

impl LagReader {
    fn refresh(&self) -> Result<(), rdkafka::error::KafkaError> {
        let committed = committed_offsets(&self.offsets, &self.topic, PROBE_EVERY)?;
        for (partition, position) in committed {
            let (low, high) = self
                .offsets
                .fetch_watermarks(&self.topic, partition, PROBE_EVERY)?;
            let position = position.unwrap_or(low);
            self.metrics
                .lag(&self.topic, partition, (high - position).max(0));
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
    metrics: Metrics,
    stop: Shutdown,
) {
    let mut next = Instant::now();
    loop {
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
        metrics.set_ready(health.readiness().is_ok());
        if !stop.sleep(Duration::from_millis(100)) {
            return;
        }
    }
}

/// Installs SIGINT/SIGTERM handling: the first signal raises `shutdown`, a second
/// exits at once.
pub fn install_signal_handlers(shutdown: &Shutdown) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install signal handlers")?;
    let shutdown = shutdown.clone();
    std::thread::Builder::new()
        .name("weir-signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if shutdown.is_triggered() {
                    std::process::exit(130);
                }
                shutdown.trigger();
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}
