//! A running pipeline as its partition runners, its consumer thread and the
//! reloader share it: the current snapshot (swapped whole by a reload), the
//! circuit's state, the sink and the worker slots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::keyed::StatefulSlots;
use super::sink::Sink;
use super::slots::{Slot, WorkerSlots};
use super::snapshot::Snapshot;
use crate::policy::{Admission, Change, CircuitBreaker, Outcome};
use crate::shutdown::Shutdown;
use crate::telemetry::PipelineMetrics;
use crate::telemetry::health::StallWatch;
use crate::telemetry::trace::ConsumeNames;

pub struct LivePipeline {
    name: Arc<str>,
    input: String,
    /// Replaced whole by a reload; runners take it at each record boundary.
    snapshot: ArcSwap<Snapshot>,
    /// Open / half-open state; its settings and window are in the snapshot.
    breaker: CircuitBreaker,
    sink: Arc<dyn Sink>,
    /// `workers`: how many partition runners may run plugins at once.
    slots: Option<WorkerSlots>,
    metrics: PipelineMetrics,
    /// The pipeline's watch over its records in flight.
    stall: Arc<StallWatch>,
    /// Signalled to stop the pipeline; every runner's stop is a child of it.
    stop: Shutdown,
    /// Its stateful plugin slots (none for most pipelines).
    stateful: Arc<StatefulSlots>,
    /// The names of its records' spans, with tracing on.
    trace: Option<ConsumeNames>,
}

impl LivePipeline {
    pub fn new(
        snapshot: Snapshot,
        input: &str,
        sink: Arc<dyn Sink>,
        workers: Option<u32>,
        metrics: PipelineMetrics,
        stall: Arc<StallWatch>,
        stop: Shutdown,
    ) -> LivePipeline {
        LivePipeline {
            name: snapshot.name().clone(),
            input: input.to_owned(),
            snapshot: ArcSwap::from_pointee(snapshot),
            breaker: CircuitBreaker::default(),
            sink,
            slots: workers.map(WorkerSlots::new),
            metrics,
            stall,
            stop,
            stateful: Arc::new(StatefulSlots::none()),
            trace: None,
        }
    }

    /// The pipeline, traced when tracing is on in this process; `group` is its
    /// consumer group.
    pub fn with_tracing(mut self, group: &str) -> LivePipeline {
        if crate::telemetry::trace::enabled() {
            self.trace = Some(ConsumeNames::new(&self.name, group, &self.input));
        }
        self
    }

    /// The names of its records' spans; `None` with tracing off.
    pub fn trace(&self) -> Option<&ConsumeNames> {
        self.trace.as_ref()
    }

    /// The pipeline with these stateful slots.
    pub fn with_state(mut self, stateful: StatefulSlots) -> LivePipeline {
        self.stateful = Arc::new(stateful);
        self
    }

    pub fn stateful(&self) -> &Arc<StatefulSlots> {
        &self.stateful
    }

    pub fn stall(&self) -> &Arc<StallWatch> {
        &self.stall
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn input(&self) -> &str {
        &self.input
    }

    pub fn sink(&self) -> &dyn Sink {
        self.sink.as_ref()
    }

    pub fn metrics(&self) -> &PipelineMetrics {
        &self.metrics
    }

    pub fn stop(&self) -> &Shutdown {
        &self.stop
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Moves `held` to the current snapshot if a reload replaced it; returns
    /// whether it did. Costs one atomic load when nothing changed.
    pub fn refresh(&self, held: &mut Arc<Snapshot>) -> bool {
        let current = self.snapshot.load();
        if Arc::ptr_eq(&current, held) {
            return false;
        }
        *held = arc_swap::Guard::into_inner(current);
        true
    }

    /// Installs a new snapshot (a reload); runners move to it at their next record.
    pub fn replace(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// A worker slot (always granted without `workers`); `None` if `stop` is
    /// signalled while waiting for one.
    pub fn slot(&self, stop: &Shutdown) -> Option<Slot<'_>> {
        match &self.slots {
            None => Some(Slot::unlimited()),
            Some(slots) => slots.acquire(stop),
        }
    }

    /// The circuit's permission to handle a record, or how long to wait for it.
    /// Dropped without [`LivePipeline::record`], it goes back to the circuit.
    pub fn admit(&self, now: Instant) -> Result<Admission<'_>, Duration> {
        self.breaker.admit(now)
    }

    /// Records a handled record's outcome in the circuit, and says so when that
    /// opened or closed it.
    pub fn record(&self, admission: Admission<'_>, outcome: Outcome, snapshot: &Snapshot) {
        match admission.record(outcome, Instant::now(), &snapshot.circuit) {
            Change::None => {}
            Change::Opened => {
                self.metrics.circuit(true);
                tracing::error!(
                    pipeline = %self.name,
                    "circuit opened: too many records are failing; consumption is paused (nothing is lost)"
                );
            }
            Change::Closed => {
                self.metrics.circuit(false);
                tracing::info!(pipeline = %self.name, "circuit closed: the probe record succeeded");
            }
        }
    }

    /// Whether the consumer should pause the pipeline's partitions now.
    pub fn circuit_blocks(&self) -> bool {
        self.breaker.blocks_consumption(Instant::now())
    }
}
