//! The metrics of docs/reference.md §5, in one registry. Each outcome is recorded in one place:
//! the runner, the producer's delivery callback or the consumer loop call these
//! methods; nothing else touches the Prometheus types. Labels stay bounded: pipeline,
//! plugin, topic, partition, outcome or reason, never a key, an offset or an id.

// Metric definitions are static: one that does not build or register twice is a
// bug that the unit tests below catch at once, never a runtime condition.
#![allow(clippy::expect_used)]

use crate::outcome::{DlqReason, FailureKind};

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// `weir_plugin_compiles_total{plugin, outcome}` (`compiled`, `cached`) and
/// `weir_plugin_compile_seconds{plugin, outcome}`: how each plugin version's native
/// code was obtained (Cranelift, or the compile cache) and how long that took.
/// Additions to the original spec. Process-wide, because plugins are loaded (by `weir check`,
/// `weir test`, start-up) before any registry exists; every [`Metrics`] registry
/// exposes them.
static PLUGIN_COMPILES: LazyLock<(IntCounterVec, HistogramVec)> = LazyLock::new(|| {
    let compiles = IntCounterVec::new(
        Opts::new(
            "weir_plugin_compiles_total",
            "Plugin versions made ready to run, by how: compiled, or loaded from the compile cache.",
        ),
        &["plugin", "outcome"],
    )
    .expect("valid metric definition");
    let seconds = HistogramVec::new(
        HistogramOpts::new(
            "weir_plugin_compile_seconds",
            "Time to compile a plugin, or to load it from the compile cache.",
        )
        .buckets(prometheus::exponential_buckets(0.001, 2.0, 16).expect("valid buckets")),
        &["plugin", "outcome"],
    )
    .expect("valid metric definition");
    (compiles, seconds)
});

/// Records how plugin `plugin` was made ready: `outcome` is `compiled` or `cached`.
pub fn plugin_compiled(plugin: &str, outcome: &str, seconds: f64) {
    let (compiles, duration) = &*PLUGIN_COMPILES;
    compiles.with_label_values(&[plugin, outcome]).inc();
    duration
        .with_label_values(&[plugin, outcome])
        .observe(seconds);
}

/// Every weir metric.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    records_consumed: IntCounterVec,
    plugin_calls: IntCounterVec,
    plugin_call_duration: HistogramVec,
    records_produced: IntCounterVec,
    retries: IntCounterVec,
    dlq_records: IntCounterVec,
    consumer_lag: IntGaugeVec,
    end_to_end_latency: HistogramVec,
    circuit_open: IntGaugeVec,
    plugin_reloads: IntCounterVec,
    transactions: IntCounterVec,
    transaction_duration: HistogramVec,
    /// 1 while `/readyz` would answer 200 (for alerting; listed in docs/reference.md §5).
    ready: IntGauge,
    state_entries: IntGaugeVec,
    state_bytes: IntGaugeVec,
    timers_pending: IntGaugeVec,
    changelog_records: IntCounterVec,
    timers_fired: IntCounterVec,
    timer_lateness: HistogramVec,
    restore_seconds: HistogramVec,
    restore_records: IntCounterVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric =
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let (compiles, compile_seconds) = &*PLUGIN_COMPILES;
        for metric in [
            Box::new(compiles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(compile_seconds.clone()),
            Box::new(super::trace::SPANS.clone()),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        let call_buckets =
            prometheus::exponential_buckets(0.000_005, 2.0, 20).expect("valid buckets");
        let latency_buckets =
            prometheus::exponential_buckets(0.000_5, 1.5, 30).expect("valid buckets");
        Metrics {
            records_consumed: counter(
                &registry,
                "weir_records_consumed_total",
                "Records consumed from input topics.",
                &["pipeline"],
            ),
            plugin_calls: counter(
                &registry,
                "weir_plugin_calls_total",
                "Plugin calls by outcome.",
                &["pipeline", "plugin", "outcome"],
            ),
            plugin_call_duration: histogram(
                &registry,
                "weir_plugin_call_duration_seconds",
                "Duration of one plugin call.",
                &["pipeline", "plugin"],
                call_buckets,
            ),
            records_produced: counter(
                &registry,
                "weir_records_produced_total",
                "Records produced (outputs and DLQ), by delivery outcome.",
                &["pipeline", "topic", "outcome"],
            ),
            retries: counter(
                &registry,
                "weir_retries_total",
                "Attempts retried after a retryable failure.",
                &["pipeline"],
            ),
            dlq_records: counter(
                &registry,
                "weir_dlq_records_total",
                "Records sent to the dead-letter topic, by reason.",
                &["pipeline", "reason"],
            ),
            consumer_lag: gauge(
                &registry,
                "weir_consumer_lag",
                "High watermark minus committed offset.",
                &["pipeline", "topic", "partition"],
            ),
            end_to_end_latency: histogram(
                &registry,
                "weir_end_to_end_latency_seconds",
                "From record timestamp to all its outputs acknowledged.",
                &["pipeline"],
                latency_buckets,
            ),
            circuit_open: gauge(
                &registry,
                "weir_circuit_open",
                "1 while the pipeline's circuit is open.",
                &["pipeline"],
            ),
            plugin_reloads: counter(
                &registry,
                "weir_plugin_reloads_total",
                "Hot reloads by outcome.",
                &["plugin", "outcome"],
            ),
            transactions: counter(
                &registry,
                "weir_transactions_total",
                "Exactly-once transactions by outcome (committed, aborted, fenced).",
                &["pipeline", "outcome"],
            ),
            transaction_duration: histogram(
                &registry,
                "weir_transaction_duration_seconds",
                "From a transaction's first record to its commit or abort.",
                &["pipeline"],
                prometheus::exponential_buckets(0.001, 2.0, 16).expect("valid buckets"),
            ),
            state_entries: gauge(
                &registry,
                "weir_state_entries",
                "State entries held by a stateful plugin slot (partitions held here).",
                &["pipeline", "slot"],
            ),
            state_bytes: gauge(
                &registry,
                "weir_state_bytes",
                "Bytes of state entry names and values held by a slot (partitions held here).",
                &["pipeline", "slot"],
            ),
            timers_pending: gauge(
                &registry,
                "weir_timers_pending",
                "Timers pending in a slot (partitions held here).",
                &["pipeline", "slot"],
            ),
            changelog_records: counter(
                &registry,
                "weir_changelog_records_total",
                "State and timer changes produced to a slot's changelog topic.",
                &["pipeline", "slot"],
            ),
            timers_fired: counter(
                &registry,
                "weir_timers_fired_total",
                "Timers fired, by outcome (delivered, dead-lettered).",
                &["pipeline", "outcome"],
            ),
            timer_lateness: histogram(
                &registry,
                "weir_timer_lateness_seconds",
                "From a timer's due time to its firing.",
                &["pipeline"],
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 900.0, 3600.0,
                ],
            ),
            restore_seconds: histogram(
                &registry,
                "weir_state_restore_seconds",
                "Restores of a partition's state from the changelogs.",
                &["pipeline"],
                prometheus::exponential_buckets(0.01, 2.0, 14).expect("valid buckets"),
            ),
            restore_records: counter(
                &registry,
                "weir_state_restore_records_total",
                "Changelog records read by restores.",
                &["pipeline"],
            ),
            ready: {
                let gauge = IntGauge::new(
                    "weir_ready",
                    "1 while every pipeline is assigned and the broker answers.",
                )
                .expect("valid metric definition");
                registry
                    .register(Box::new(gauge.clone()))
                    .expect("metric names are unique");
                gauge
            },
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let families = self.registry.gather();
        if TextEncoder::new().encode(&families, &mut buffer).is_err() {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Handles for one pipeline, so the hot path does not look labels up.
    pub fn pipeline(&self, pipeline: &str) -> PipelineMetrics {
        PipelineMetrics {
            name: pipeline.to_owned(),
            consumed: self.records_consumed.with_label_values(&[pipeline]),
            latency: Latency(self.end_to_end_latency.with_label_values(&[pipeline])),
            circuit_open: self.circuit_open.with_label_values(&[pipeline]),
            metrics: self.clone(),
        }
    }

    /// Handles for one stateful slot.
    pub fn slot(&self, pipeline: &str, slot: &str) -> SlotMetrics {
        SlotMetrics {
            entries: self.state_entries.with_label_values(&[pipeline, slot]),
            bytes: self.state_bytes.with_label_values(&[pipeline, slot]),
            timers: self.timers_pending.with_label_values(&[pipeline, slot]),
            changelog: self.changelog_records.with_label_values(&[pipeline, slot]),
        }
    }

    /// The retry counter of one pipeline (or branch).
    pub fn retries(&self, pipeline: &str) -> Retries {
        Retries(self.retries.with_label_values(&[pipeline]))
    }

    /// The dead-letter counters of one pipeline (or branch).
    pub fn dead_letters(&self, pipeline: &str) -> DeadLetterMetrics {
        DeadLetterMetrics {
            pipeline: pipeline.into(),
            records: self.dlq_records.clone(),
        }
    }

    /// Sets `weir_ready`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Handles for the calls of one plugin in one pipeline (or branch).
    pub fn stage(&self, pipeline: &str, plugin: &str) -> StageMetrics {
        let outcome = |o: &str| self.plugin_calls.with_label_values(&[pipeline, plugin, o]);
        StageMetrics {
            ok: outcome("ok"),
            failed: FailureKind::ALL.map(|kind| outcome(kind.as_str())),
            duration: self
                .plugin_call_duration
                .with_label_values(&[pipeline, plugin]),
        }
    }

    /// Handles for the records one pipeline (or branch) produces to `topic`.
    pub fn route(&self, pipeline: &str, topic: &str) -> RouteMetrics {
        RouteMetrics {
            ok: self
                .records_produced
                .with_label_values(&[pipeline, topic, "ok"]),
            error: self
                .records_produced
                .with_label_values(&[pipeline, topic, "error"]),
        }
    }

    /// Handles for one exactly-once pipeline's transactions.
    pub fn transactions(&self, pipeline: &str) -> TransactionMetrics {
        let outcome = |o: &str| self.transactions.with_label_values(&[pipeline, o]);
        TransactionMetrics {
            committed: outcome("committed"),
            aborted: outcome("aborted"),
            fenced: outcome("fenced"),
            duration: self.transaction_duration.with_label_values(&[pipeline]),
        }
    }

    /// Makes a plugin's reload counters visible (at 0) from start-up.
    pub fn declare_plugin(&self, plugin: &str) {
        for outcome in ["ok", "rejected"] {
            self.plugin_reloads.with_label_values(&[plugin, outcome]);
        }
    }

    pub fn plugin_reloaded(&self, plugin: &str, ok: bool) {
        self.plugin_reloads
            .with_label_values(&[plugin, if ok { "ok" } else { "rejected" }])
            .inc();
    }
}

/// One plugin's call counters and duration, in one pipeline.
#[derive(Clone)]
pub struct StageMetrics {
    ok: IntCounter,
    failed: [IntCounter; FailureKind::ALL.len()],
    duration: Histogram,
}

impl StageMetrics {
    /// Records one call: `None` for success, else the failure.
    pub fn call(&self, failure: Option<FailureKind>, seconds: f64) {
        match failure {
            None => self.ok.inc(),
            Some(kind) => self.failed[kind as usize].inc(),
        }
        self.duration.observe(seconds);
    }
}

/// Produced-record counters of one topic, in one pipeline.
#[derive(Clone)]
pub struct RouteMetrics {
    ok: IntCounter,
    error: IntCounter,
}

impl RouteMetrics {
    /// The broker acknowledged a record.
    pub fn delivered(&self) {
        self.ok.inc();
    }

    /// A delivery attempt failed (the record is sent again, isolated or replaced).
    pub fn failed(&self) {
        self.error.inc();
    }
}

/// `weir_dlq_records_total` of one pipeline (or branch). Dead letters are rare, so
/// the reason's series is looked up when one is counted (and exists from then on).
#[derive(Clone)]
pub struct DeadLetterMetrics {
    pipeline: std::sync::Arc<str>,
    records: IntCounterVec,
}

impl DeadLetterMetrics {
    pub fn dead_lettered(&self, reason: DlqReason) {
        self.records
            .with_label_values(&[&*self.pipeline, reason.as_str()])
            .inc();
    }

    /// How many records were dead-lettered for `reason` (for `weir demo`'s summary).
    pub fn count(&self, reason: DlqReason) -> u64 {
        self.records
            .with_label_values(&[&*self.pipeline, reason.as_str()])
            .get()
    }
}

/// `weir_retries_total` of one pipeline (or branch).
#[derive(Clone)]
pub struct Retries(IntCounter);

impl Retries {
    pub fn retried(&self) {
        self.0.inc();
    }

    pub fn count(&self) -> u64 {
        self.0.get()
    }
}

/// `weir_end_to_end_latency_seconds` of one pipeline.
#[derive(Clone)]
pub struct Latency(Histogram);

impl Latency {
    /// Observes the time from a record's timestamp (ms since the epoch) to now.
    pub fn since(&self, timestamp_ms: Option<i64>) {
        if let Some(ts) = timestamp_ms {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            self.0.observe((now_ms - ts).max(0) as f64 / 1000.0);
        }
    }

    /// Estimates a quantile, in seconds, by linear interpolation within histogram
    /// buckets (for `weir demo`'s summary).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        use prometheus::core::Metric;
        let metric = self.0.metric();
        let histogram = metric.get_histogram();
        let total = histogram.get_sample_count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let (mut below, mut lower) = (0u64, 0.0);
        for bucket in histogram.get_bucket() {
            let (count, upper) = (bucket.cumulative_count(), bucket.upper_bound());
            if count as f64 >= rank && count > below {
                let within = (rank - below as f64) / (count - below) as f64;
                return Some(lower + (upper - lower) * within);
            }
            (below, lower) = (count, upper);
        }
        Some(lower)
    }
}

/// Transaction counters of one exactly-once pipeline.
#[derive(Clone)]
pub struct TransactionMetrics {
    committed: IntCounter,
    aborted: IntCounter,
    fenced: IntCounter,
    duration: Histogram,
}

impl TransactionMetrics {
    pub fn committed(&self) {
        self.committed.inc();
    }

    pub fn aborted(&self) {
        self.aborted.inc();
    }

    pub fn fenced(&self) {
        self.fenced.inc();
    }

    /// A transaction ended (committed or aborted) after `seconds`.
    pub fn ended(&self, seconds: f64) {
        self.duration.observe(seconds);
    }
}

/// One pipeline's metric handles.
#[derive(Clone)]
pub struct PipelineMetrics {
    name: String,
    consumed: IntCounter,
    latency: Latency,
    circuit_open: IntGauge,
    metrics: Metrics,
}

/// The gauges of one stateful slot: each partition runner adds what it holds.
#[derive(Clone)]
pub struct SlotMetrics {
    pub entries: IntGauge,
    pub bytes: IntGauge,
    pub timers: IntGauge,
    pub changelog: IntCounter,
}

impl PipelineMetrics {
    /// A partition's state was restored.
    pub fn restored(&self, records: u64, seconds: f64) {
        self.metrics
            .restore_records
            .with_label_values(&[&self.name])
            .inc_by(records);
        self.metrics
            .restore_seconds
            .with_label_values(&[&self.name])
            .observe(seconds);
    }

    /// A timer fired `lateness` seconds after it was due.
    pub fn timer_fired(&self, lateness: f64) {
        self.metrics
            .timer_lateness
            .with_label_values(&[&self.name])
            .observe(lateness);
    }

    /// A fired timer's outputs were handed to Kafka (`delivered`) or it was
    /// dead-lettered.
    pub fn timer_done(&self, dead_lettered: bool) {
        let outcome = if dead_lettered {
            "dead-lettered"
        } else {
            "delivered"
        };
        self.metrics
            .timers_fired
            .with_label_values(&[&self.name, outcome])
            .inc();
    }

    /// A record was taken from the input topic.
    pub fn consumed(&self) {
        self.consumed.inc();
    }

    pub fn consumed_count(&self) -> u64 {
        self.consumed.get()
    }

    /// Sets `weir_circuit_open`.
    pub fn circuit(&self, open: bool) {
        self.circuit_open.set(i64::from(open));
    }

    /// The end-to-end latency histogram.
    pub fn latency(&self) -> &Latency {
        &self.latency
    }

    pub fn lag(&self, topic: &str, partition: i32, lag: i64) {
        self.metrics
            .consumer_lag
            .with_label_values(&[self.name.as_str(), topic, &partition.to_string()])
            .set(lag);
    }

    /// Records produced to `topic` and acknowledged (for `weir demo`'s summary).
    pub fn produced_count(&self, topic: &str) -> u64 {
        self.metrics
            .records_produced
            .with_label_values(&[self.name.as_str(), topic, "ok"])
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_spec_metric_once_used() {
        let metrics = Metrics::new();
        let p = metrics.pipeline("reminders");
        p.consumed();
        metrics
            .stage("reminders", "task_validator")
            .call(None, 0.000_01);
        metrics.route("reminders", "reminders").delivered();
        metrics.retries("reminders").retried();
        let dlq = metrics.dead_letters("reminders");
        dlq.dead_lettered(DlqReason::Invalid);
        p.lag("task-events", 0, 3);
        p.latency().since(Some(0));
        p.circuit(false);
        metrics.plugin_reloaded("task_validator", true);
        let text = metrics.render();
        for name in [
            "weir_records_consumed_total{pipeline=\"reminders\"} 1",
            "weir_plugin_calls_total{outcome=\"ok\",pipeline=\"reminders\",plugin=\"task_validator\"} 1",
            "weir_plugin_call_duration_seconds_bucket",
            "weir_records_produced_total{outcome=\"ok\",pipeline=\"reminders\",topic=\"reminders\"} 1",
            "weir_retries_total{pipeline=\"reminders\"} 1",
            "weir_dlq_records_total{pipeline=\"reminders\",reason=\"invalid\"} 1",
            "weir_consumer_lag{partition=\"0\",pipeline=\"reminders\",topic=\"task-events\"} 3",
            "weir_end_to_end_latency_seconds_count{pipeline=\"reminders\"} 1",
            "weir_circuit_open{pipeline=\"reminders\"} 0",
            "weir_plugin_reloads_total{outcome=\"ok\",plugin=\"task_validator\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        assert_eq!(dlq.count(DlqReason::Invalid), 1);
    }

    #[test]
    fn compiles_are_counted_in_every_registry() {
        plugin_compiled("metrics_test_plugin", "cached", 0.002);
        for metrics in [Metrics::new(), Metrics::new()] {
            let text = metrics.render();
            assert!(
                text.contains(
                    r#"weir_plugin_compiles_total{outcome="cached",plugin="metrics_test_plugin"} 1"#
                ),
                "{text}"
            );
            assert!(
                text.contains("weir_plugin_compile_seconds_bucket"),
                "{text}"
            );
        }
    }
}
