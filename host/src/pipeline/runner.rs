//! One partition's runner thread: takes records from the partition's own queue, in
//! order, and for each one: moves to the current snapshot (a record boundary),
//! asks the circuit, [`process`]es it (sleeping through retries), and hands the
//! verdicts to the sink. Partitions run in parallel, at most `workers` at a time
//! when that is set (a runner holds a worker slot for up to [`SLOT_BATCH`] records).
//!
//! The runner never pauses its partition: while it is busy or backing off, its
//! queue fills and librdkafka stops fetching that partition by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::message::{BorrowedMessage, Message};

use super::keyed::PartitionState;
use super::live::LivePipeline;
use super::process::{Disposition, Instances, Verdict, Work, process};
use super::slots::SLOT_BATCH;
use super::snapshot::Snapshot;
use super::unit::{PartitionUnit, Source};
use crate::kafka::consumer::PipelineContext;
use crate::plugin::{CallSite, Event, FiredTimer, Header};
use crate::policy::Admission;
use crate::shutdown::Shutdown;
use crate::state::Timer;
use crate::state::changelog::RestoreError;
use crate::state::clock::wall_ms;
use crate::telemetry::trace::RecordTrace;

/// How long a poll of the partition queue waits before looking at the stop signal.
const POLL: Duration = Duration::from_millis(100);

pub struct PartitionRunner {
    pub pipeline: Arc<LivePipeline>,
    pub unit: Arc<PartitionUnit>,
    pub queue: Arc<PartitionQueue<PipelineContext>>,
    /// Raised to stop at the next record boundary (or backoff).
    pub stop: Shutdown,
}

/// How a record ended.
enum Handled {
    Done,
    /// Stopped mid-record (revocation or shutdown): not registered, so not
    /// committed; the partition's next owner handles it again.
    Abandoned,
}

/// At most this many due timers fire before the partition's next record.
const TIMERS_PER_TURN: usize = 1000;

/// How long a stopping runner waits for its records' outputs to be acknowledged
/// so that it can send their held changelog records (at-least-once).
const FLUSH_HELD: Duration = Duration::from_secs(10);

impl PartitionRunner {
    pub fn run(self) {
        self.run_until_stopped();
        self.flush_held();
    }

    /// At-least-once: sends the changelog records still held for outputs in flight,
    /// as the outputs are acknowledged, so that the partition's final commit can
    /// include their records. Gives up after [`FLUSH_HELD`]: those records are then
    /// not committed, and the next owner handles them again.
    fn flush_held(&self) {
        let deadline = Instant::now() + FLUSH_HELD;
        // Not the runner's stop, which is already triggered: waiting for room in
        // the producer's queue must not give up at once.
        let flushing = Shutdown::new();
        let sink = self.pipeline.sink();
        while self.unit.holds_changes() && Instant::now() < deadline {
            if sink.send_ready(&self.unit, &flushing).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = sink.send_ready(&self.unit, &flushing);
    }

    fn run_until_stopped(&self) {
        let mut snapshot = self.pipeline.snapshot();
        let state = Arc::new(PartitionState::new(
            self.pipeline.stateful(),
            self.unit.partition,
        ));
        if !state.is_empty() {
            if !self.restore(&state) {
                return;
            }
            self.unit.set_state(state.clone());
            state.keep_stores_current();
        }
        let mut instances = loop {
            match Instances::new(&snapshot, &state) {
                Ok(instances) => break instances,
                Err(error) => {
                    tracing::error!(pipeline = %self.pipeline.name(), partition = self.unit.partition, %error, "cannot start the plugins; retrying");
                    if !self.stop.sleep(Duration::from_secs(1)) {
                        return;
                    }
                }
            }
        };
        let mut site = CallSite {
            pipeline: self.pipeline.name().clone(),
            partition: self.unit.partition,
            offset: 0,
            ..CallSite::default()
        };
        while !self.stop.is_triggered() {
            let wait = match self.timers(&state, &mut snapshot, &mut instances, &site) {
                // Held changelog records go out soon after their outputs' acks.
                Some(_) if self.unit.holds_changes() => Duration::from_millis(5),
                Some(wait) => wait.min(POLL),
                None => return,
            };
            let Some(first) = self.next(wait) else {
                continue;
            };
            let Some(_slot) = self.pipeline.slot(&self.stop) else {
                state.abandon();
                return;
            };
            let mut next = Some(first);
            let mut handled = 0;
            while let Some(source) = next.take() {
                site.offset = source.event.offset;
                if let Handled::Abandoned =
                    self.handle(&source, &state, &mut snapshot, &mut instances, &site)
                {
                    state.abandon();
                    return;
                }
                handled += 1;
                if handled < SLOT_BATCH && !self.stop.is_triggered() {
                    if !state.is_empty()
                        && self
                            .timers(&state, &mut snapshot, &mut instances, &site)
                            .is_none()
                    {
                        return;
                    }
                    next = self.next(Duration::ZERO);
                }
            }
        }
    }

    /// Restores the partition's state from the changelogs, retrying until it
    /// succeeds; `false` if asked to stop first.
    fn restore(&self, state: &PartitionState) -> bool {
        let pipeline = &self.pipeline;
        let partition = self.unit.partition;
        pipeline.stateful().restoring(partition, true);
        let mut failures = 0;
        let done = loop {
            match state.restore(pipeline.stateful(), || self.stop.is_triggered()) {
                Ok(restored) => {
                    pipeline
                        .metrics()
                        .restored(restored.records, restored.seconds);
                    break true;
                }
                Err(RestoreError::Stopped) => break false,
                Err(error) => {
                    failures += 1;
                    tracing::error!(pipeline = %pipeline.name(), partition, %error, "cannot restore the partition's state; retrying (its records wait)");
                    let delay = crate::policy::backoff(
                        failures,
                        Duration::from_millis(500),
                        Duration::from_secs(10),
                        1.0,
                    );
                    if !self.stop.sleep(delay) {
                        break false;
                    }
                }
            }
        };
        pipeline.stateful().restoring(partition, false);
        done
    }

    /// Sends the changelog records that are ready, and fires every timer that is
    /// due. Returns how long until the next timer is due (`Duration::MAX` when none
    /// is pending), or `None` if asked to stop.
    fn timers(
        &self,
        state: &PartitionState,
        snapshot: &mut Arc<Snapshot>,
        instances: &mut Instances,
        site: &CallSite,
    ) -> Option<Duration> {
        if state.is_empty() {
            return Some(Duration::MAX);
        }
        let sink = self.pipeline.sink();
        if sink.send_ready(&self.unit, &self.stop).is_err() {
            return None;
        }
        // Records get their turn after this many timers (a flood of due timers, or
        // one that re-arms itself, cannot hold the partition).
        for _ in 0..TIMERS_PER_TURN {
            let Some((slot, timer)) = state.next_timer() else {
                return Some(Duration::MAX);
            };
            let now = wall_ms();
            if timer.due_ms > now {
                return Some(Duration::from_millis((timer.due_ms - now) as u64));
            }
            if self.stop.is_triggered() {
                return None;
            }
            let _slot = self.pipeline.slot(&self.stop)?;
            if let Handled::Abandoned =
                self.fire(state, slot, timer, now, snapshot, instances, site)
            {
                state.abandon();
                return None;
            }
            // Held changelog records of fired timers go out as their outputs are
            // acknowledged.
            if sink.send_ready(&self.unit, &self.stop).is_err() {
                return None;
            }
        }
        Some(Duration::ZERO)
    }

    /// Fires one due timer: its slot's `handle-timer`, then the rest of the
    /// pipeline, like a record (circuit, retries, dead letters).
    #[allow(clippy::too_many_arguments)]
    fn fire(
        &self,
        state: &PartitionState,
        slot: usize,
        timer: Timer,
        now: i64,
        snapshot: &mut Arc<Snapshot>,
        instances: &mut Instances,
        site: &CallSite,
    ) -> Handled {
        let Some((spec, handle)) = state.slot(slot) else {
            return Handled::Done;
        };
        let pipeline = &self.pipeline;
        self.refresh(snapshot, instances);
        let lateness = (now - timer.due_ms).max(0);
        pipeline.metrics().timer_fired(lateness as f64 / 1000.0);
        handle.lock().fire(&timer);
        let fired = FiredTimer {
            name: timer.name.clone(),
            key: timer.key.clone(),
            due_ms: timer.due_ms,
            payload: timer.payload.clone(),
            topic: pipeline.input().to_owned(),
            partition: self.unit.partition,
        };
        let text = |key: &str, value: String| Header {
            key: key.to_owned(),
            value: value.into_bytes(),
        };
        let record = Event {
            topic: pipeline.input().to_owned(),
            partition: self.unit.partition,
            offset: -1,
            timestamp_ms: Some(timer.due_ms),
            key: timer.key.clone(),
            value: None,
            headers: vec![
                text("weir.timer.slot", spec.id.to_string()),
                text("weir.timer.name", timer.name.clone()),
                text("weir.timer.due-ms", timer.due_ms.to_string()),
            ],
        };
        let trace = pipeline.trace().and_then(|names| {
            RecordTrace::timer(
                names,
                self.unit.partition,
                &timer.name,
                timer.due_ms,
                lateness,
                timer
                    .link
                    .as_ref()
                    .and_then(crate::telemetry::trace::link_context),
            )
        });
        let _logs = log_span(&record, trace.as_ref()).entered();
        let mut traced = None;
        let site = with_trace(site, trace.as_ref(), &mut traced);
        let Some(admission) = self.admit() else {
            return Handled::Abandoned;
        };
        let mut work = Work::timer(&record, snapshot, spec.place, spec.stage, &fired);
        let Some(mut verdicts) = self.verdicts(&mut work, &record, snapshot, instances, site)
        else {
            return Handled::Abandoned;
        };
        for verdict in &mut verdicts {
            if let Verdict::Deliver(routed) = verdict {
                for r in routed {
                    r.output
                        .headers
                        .push(text("weir.timer.lateness-ms", lateness.to_string()));
                }
            }
        }
        let changes = state.finish(&verdicts, None);
        let source = Source::timer(record, trace);
        let sink = pipeline.sink();
        let Ok(outcome) = sink.deliver(&source, verdicts, changes, &self.unit, &self.stop) else {
            return Handled::Abandoned;
        };
        pipeline
            .metrics()
            .timer_done(outcome == crate::policy::Outcome::DeadLettered);
        pipeline.record(admission, outcome, snapshot);
        Handled::Done
    }

    /// Moves to the current snapshot (a record boundary) and its plugin versions.
    fn refresh(&self, snapshot: &mut Arc<Snapshot>, instances: &mut Instances) {
        let pipeline = &self.pipeline;
        if pipeline.refresh(snapshot) {
            for version in instances.sync(snapshot) {
                tracing::info!(pipeline = %pipeline.name(), partition = self.unit.partition, plugin = %version.label, "now running the reloaded plugin");
            }
        }
    }

    /// Processes `work` (about `event`) until every branch has its verdict,
    /// sleeping through retries; `None` if asked to stop meanwhile.
    fn verdicts(
        &self,
        work: &mut Work<'_>,
        event: &Event,
        snapshot: &Arc<Snapshot>,
        instances: &mut Instances,
        site: &CallSite,
    ) -> Option<Vec<Verdict>> {
        let pipeline = &self.pipeline;
        loop {
            match process(work, snapshot, instances, site, fastrand::f64()) {
                Disposition::Done(verdicts) => return Some(verdicts),
                Disposition::Retry {
                    delay,
                    failure,
                    attempt,
                } => {
                    let kind = failure.error.kind();
                    if let Some(trace) = &site.trace {
                        trace.event("retry", || {
                            vec![
                                opentelemetry::KeyValue::new("weir.attempt", i64::from(attempt)),
                                opentelemetry::KeyValue::new("weir.error.kind", kind.as_str()),
                                opentelemetry::KeyValue::new(
                                    "weir.error.message",
                                    failure.error.message(),
                                ),
                                opentelemetry::KeyValue::new(
                                    "weir.plugin",
                                    failure.plugin.label.to_string(),
                                ),
                                opentelemetry::KeyValue::new(
                                    "weir.retry.delay-ms",
                                    delay.as_millis() as i64,
                                ),
                            ]
                        });
                    }
                    if kind.is_hosts() {
                        tracing::warn!(
                            pipeline = %pipeline.name(), partition = event.partition, offset = event.offset,
                            plugin = %failure.plugin.label, attempt, retry_in = ?delay,
                            "{kind}: {}; the partition waits", failure.error.message()
                        );
                    } else {
                        tracing::debug!(
                            pipeline = %pipeline.name(), partition = event.partition, offset = event.offset,
                            plugin = %failure.plugin.label, attempt, retry_in = ?delay,
                            "{kind}: {}", failure.error.message()
                        );
                    }
                    if !self.stop.sleep(delay) {
                        return None;
                    }
                }
            }
        }
    }

    /// The partition's next record, copied out of librdkafka's buffer.
    fn next(&self, wait: Duration) -> Option<Arc<Source>> {
        match self.queue.poll(wait)? {
            Ok(message) => {
                self.pipeline.metrics().consumed();
                self.unit.started_at(message.offset());
                let event = to_event(&message);
                let trace = self.pipeline.trace().and_then(|names| {
                    RecordTrace::consume(names, event.partition, event.offset, &event.headers)
                });
                Some(Source::new(event, trace))
            }
            Err(error) => {
                tracing::warn!(pipeline = %self.pipeline.name(), partition = self.unit.partition, %error, "consume error");
                None
            }
        }
    }

    /// Waits for the circuit's permission; `None` if asked to stop.
    fn admit(&self) -> Option<Admission<'_>> {
        loop {
            match self.pipeline.admit(Instant::now()) {
                Err(wait) => {
                    if !self.stop.sleep(wait.min(Duration::from_millis(250))) {
                        return None;
                    }
                }
                Ok(admission) => return Some(admission),
            }
        }
    }

    fn handle(
        &self,
        source: &Arc<Source>,
        state: &PartitionState,
        snapshot: &mut Arc<Snapshot>,
        instances: &mut Instances,
        site: &CallSite,
    ) -> Handled {
        let event = &source.event;
        let _logs = log_span(event, source.trace.as_ref()).entered();
        // The record's trace, for its plugin calls' spans; gone with the record.
        let mut traced = None;
        let site = with_trace(site, source.trace.as_ref(), &mut traced);
        let pipeline = &self.pipeline;
        self.refresh(snapshot, instances);
        // Dropped on any early return (or a panic), it goes back to the circuit.
        let Some(admission) = self.admit() else {
            return Handled::Abandoned;
        };
        let mut work = Work::new(event, snapshot);
        let Some(verdicts) = self.verdicts(&mut work, event, snapshot, instances, site) else {
            return Handled::Abandoned;
        };
        let changes = state.finish(&verdicts, Some(event.offset));
        let sink = pipeline.sink();
        let Ok(outcome) = sink.deliver(source, verdicts, changes, &self.unit, &self.stop) else {
            return Handled::Abandoned;
        };
        pipeline.record(admission, outcome, snapshot);
        Handled::Done
    }
}

/// `site` carrying `trace` (kept in `slot`), or `site` itself with tracing off.
fn with_trace<'s>(
    site: &'s CallSite,
    trace: Option<&RecordTrace>,
    slot: &'s mut Option<CallSite>,
) -> &'s CallSite {
    match trace {
        None => site,
        Some(trace) => slot.insert(CallSite {
            trace: Some(trace.clone()),
            ..site.clone()
        }),
    }
}

/// Lines about a record (plugin logs included) carry its correlation id and, with
/// tracing on, its trace and span ids.
fn log_span(event: &Event, trace: Option<&RecordTrace>) -> tracing::Span {
    let correlation = event.headers.iter().find(|h| h.key == "correlation_id");
    if correlation.is_none() && trace.is_none() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "record",
        correlation_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(h) = correlation {
        span.record(
            "correlation_id",
            tracing::field::display(String::from_utf8_lossy(&h.value)),
        );
    }
    if let Some(trace) = trace {
        let (trace_id, span_id) = trace.ids();
        span.record("trace_id", tracing::field::display(trace_id));
        span.record("span_id", tracing::field::display(span_id));
    }
    span
}

/// Copies a consumed message into an event.
pub fn to_event(message: &BorrowedMessage<'_>) -> Event {
    Event {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers: crate::kafka::consumed_headers(message),
    }
}
