//! The per-partition runner: receive a record, call the chain (retrying with
//! backoff), route the outputs, produce them (or a DLQ record), and register the
//! record with the partition's offset tracker. One thread per assigned partition
//! keeps order within the partition; partitions run in parallel, at most `workers`
//! at a time when that is set (a runner holds a worker slot for up to
//! [`SLOT_BATCH`] records, then lets the others have their turn).
//!
//! [`PartitionSet`] owns the runners of one pipeline and follows rebalances: on
//! revocation it stops the runners, waits for in-flight deliveries, then commits.
//! It also applies backpressure: a full queue keeps records in the partition's
//! overflow, the consumer thread stops taking records while a moving partition is
//! congested, and only a partition that stalls (a retry backoff) is paused, because
//! a pause makes librdkafka drop what it prefetched and fetch it again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use rdkafka::Offset;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::TopicPartitionList;

use super::{Chain, ChainFailure};
use crate::config::{PipelineConfig, RetryConfig};
use crate::kafka::OffsetTracker;
use crate::kafka::consumer::{PipelineConsumer, RebalanceHandler};
use crate::kafka::producer::{OutRecord, OutputProducer, Ticket};
use crate::plugin::{CallError, CallSite, Event, GuestFailure, Output, PluginVersion};
use crate::policy::{CircuitBreaker, DeadLetter, Decision, Permit, decide};
use crate::telemetry::{Health, PipelineMetrics};

/// Records buffered between the consumer and one partition's runner.
const QUEUE_DEPTH: usize = 512;
/// Records waiting for room in a moving partition's queue before the consumer
/// stops taking more for a moment.
const OVERFLOW_HIGH: usize = QUEUE_DEPTH / 2;
/// A partition whose runner takes nothing from its full queue for this long is
/// paused, so that it does not hold up the others.
const STALLED_AFTER: Duration = Duration::from_secs(1);
/// How long a revocation or shutdown waits for in-flight deliveries.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the runners of one pipeline share.
pub struct PipelineShared {
    pub name: Arc<str>,
    pub input: String,
    pub dlq: String,
    /// Logical output name -> topic.
    pub outputs: HashMap<String, String>,
    /// Replaced whole by a config reload.
    pub retry: Mutex<RetryConfig>,
    /// One slot per chain stage holding the version to run; a hot reload stores a
    /// new version and each runner moves to it at its next record boundary.
    pub plugins: Vec<ArcSwap<PluginVersion>>,
    pub producer: OutputProducer,
    pub breaker: Mutex<CircuitBreaker>,
    /// Shared by every delivery ticket, so a ticket costs one reference count.
    pub metrics: Arc<PipelineMetrics>,
    pub health: Arc<Health>,
    /// `workers`: how many partition runners may run plugins at once.
    slots: Option<WorkerSlots>,
}

/// Records a runner handles in a row while holding a worker slot, before giving
/// other partitions their turn.
const SLOT_BATCH: usize = 64;

/// A fair counting semaphore of worker slots; a runner holds one while it handles
/// records. Slots go to waiting runners in arrival order, so a runner that gives
/// its slot back cannot take it again ahead of the others.
struct WorkerSlots {
    state: Mutex<SlotState>,
    changed: Condvar,
}

struct SlotState {
    free: u32,
    /// Tickets of waiting runners, oldest first.
    waiting: VecDeque<u64>,
    next_ticket: u64,
}

/// A held worker slot, given back on drop.
struct Slot<'a>(Option<&'a WorkerSlots>);

impl WorkerSlots {
    fn new(workers: u32) -> WorkerSlots {
        WorkerSlots {
            state: Mutex::new(SlotState {
                free: workers,
                waiting: VecDeque::new(),
                next_ticket: 0,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a free slot, in turn; `None` if `stop` is raised meanwhile.
    fn acquire(&self, stop: &AtomicBool) -> Option<Slot<'_>> {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back(ticket);
        loop {
            if stop.load(Ordering::SeqCst) {
                state.waiting.retain(|&t| t != ticket);
                self.changed.notify_all();
                return None;
            }
            if state.free > 0 && state.waiting.front() == Some(&ticket) {
                state.waiting.pop_front();
                state.free -= 1;
                // The next in line may find a slot free too.
                self.changed.notify_all();
                return Some(Slot(Some(self)));
            }
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(slots) = self.0 {
            slots.lock().free += 1;
            slots.changed.notify_all();
        }
    }
}

impl PipelineShared {
    pub fn new(
        config: &PipelineConfig,
        versions: Vec<Arc<PluginVersion>>,
        producer: OutputProducer,
        metrics: PipelineMetrics,
        health: Arc<Health>,
    ) -> PipelineShared {
        PipelineShared {
            name: Arc::from(config.name()),
            input: config.input().to_owned(),
            dlq: config.dlq(),
            outputs: config
                .outputs
                .iter()
                .map(|(name, topic)| (name.clone(), topic.get_ref().clone()))
                .collect(),
            retry: Mutex::new(config.retry),
            plugins: versions.into_iter().map(ArcSwap::new).collect(),
            producer,
            breaker: Mutex::new(CircuitBreaker::new(&config.circuit)),
            metrics: Arc::new(metrics),
            health,
            slots: config.workers().map(WorkerSlots::new),
        }
    }

    /// A worker slot (always granted without `workers`); `None` if `stop` is raised
    /// while waiting for one.
    fn slot(&self, stop: &AtomicBool) -> Option<Slot<'_>> {
        match &self.slots {
            None => Some(Slot(None)),
            Some(slots) => slots.acquire(stop),
        }
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current plugin versions, in chain order.
    pub fn versions(&self) -> Vec<Arc<PluginVersion>> {
        self.plugins.iter().map(|slot| slot.load_full()).collect()
    }

    pub fn retry(&self) -> RetryConfig {
        *self.retry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_retry(&self, retry: RetryConfig) {
        *self.retry.lock().unwrap_or_else(PoisonError::into_inner) = retry;
    }

    /// Whether the consumer should pause the pipeline's partitions now.
    pub fn circuit_blocks(&self) -> bool {
        self.breaker().blocks_consumption(Instant::now())
    }
}

/// What the consumer thread should do after [`PartitionSet::relieve`].
#[derive(Debug, Default)]
pub struct Relief {
    /// Partitions paused for backpressure whose overflow drained: resume them.
    pub resume: Vec<i32>,
    /// Partitions whose runner took nothing from its full queue for
    /// [`STALLED_AFTER`] (a retry backoff, a slow plugin): pause them, so the
    /// others keep flowing.
    pub pause: Vec<i32>,
    /// A moving partition has [`OVERFLOW_HIGH`] records waiting for room: stop
    /// taking records for a moment. Waiting instead of pausing keeps what
    /// librdkafka prefetched (a pause drops it, and it is fetched again on resume).
    pub congested: bool,
    /// Some partition has records waiting for room in its queue.
    pub overflowing: bool,
}

/// The runners of one pipeline, keyed by partition.
pub struct PartitionSet {
    shared: Arc<PipelineShared>,
    runners: Mutex<BTreeMap<i32, RunnerHandle>>,
}

/// The consumer's side of one partition's runner.
struct RunnerHandle {
    /// Records to the runner; dropped to let it finish.
    tx: Option<Sender<Event>>,
    /// Asks the runner to stop at the next record boundary (or backoff).
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    tracker: Arc<OffsetTracker>,
    /// Records that did not fit in the queue yet.
    overflow: VecDeque<Event>,
    /// When the queue last accepted a record.
    progress: Instant,
    /// Paused for backpressure: the runner stalled with records waiting.
    paused: bool,
}

impl PartitionSet {
    pub fn new(shared: Arc<PipelineShared>) -> PartitionSet {
        PartitionSet {
            shared,
            runners: Mutex::new(BTreeMap::new()),
        }
    }

    fn runners(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, RunnerHandle>> {
        self.runners.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn partitions(&self) -> Vec<i32> {
        self.runners().keys().copied().collect()
    }

    fn tpl(&self, partitions: impl IntoIterator<Item = i32>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(&self.shared.input, p);
        }
        tpl
    }

    /// Hands a consumed record to its partition's runner, or keeps it in the
    /// partition's overflow while the runner's queue is full. Never blocks: one busy
    /// partition must not hold up the others.
    pub fn dispatch(&self, event: Event) {
        let mut runners = self.runners();
        let Some(runner) = runners.get_mut(&event.partition) else {
            // Not ours (any more): the next owner consumes it from the committed offset.
            return;
        };
        if !runner.overflow.is_empty() {
            runner.overflow.push_back(event);
            return;
        }
        let Some(tx) = &runner.tx else { return };
        match tx.try_send(event) {
            Ok(()) => runner.progress = Instant::now(),
            Err(TrySendError::Full(event)) => runner.overflow.push_back(event),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// One pass of backpressure over the partitions, between two polls: moves
    /// overflowed records into their queues and says what the consumer should do.
    pub fn relieve(&self) -> Relief {
        let mut relief = Relief::default();
        for (partition, runner) in self.runners().iter_mut() {
            if let Some(tx) = &runner.tx {
                while let Some(event) = runner.overflow.pop_front() {
                    match tx.try_send(event) {
                        Ok(()) => runner.progress = Instant::now(),
                        Err(TrySendError::Full(event)) => {
                            runner.overflow.push_front(event);
                            break;
                        }
                        Err(TrySendError::Disconnected(_)) => runner.overflow.clear(),
                    }
                }
            }
            if runner.overflow.is_empty() {
                if runner.paused {
                    runner.paused = false;
                    relief.resume.push(*partition);
                }
                continue;
            }
            relief.overflowing = true;
            if runner.paused {
                continue;
            }
            if runner.progress.elapsed() >= STALLED_AFTER {
                runner.paused = true;
                relief.pause.push(*partition);
            } else if runner.overflow.len() >= OVERFLOW_HIGH {
                relief.congested = true;
            }
        }
        relief
    }

    /// Partitions paused for backpressure (kept paused when the circuit closes).
    pub fn backpressured(&self) -> Vec<i32> {
        self.runners()
            .iter()
            .filter(|(_, r)| r.paused)
            .map(|(p, _)| *p)
            .collect()
    }

    pub fn pause(&self, consumer: &PipelineConsumer, partitions: impl IntoIterator<Item = i32>) {
        if let Err(error) = consumer.pause(&self.tpl(partitions)) {
            tracing::warn!(pipeline = %self.shared.name, %error, "cannot pause partitions");
        }
    }

    pub fn resume(&self, consumer: &PipelineConsumer, partitions: impl IntoIterator<Item = i32>) {
        if let Err(error) = consumer.resume(&self.tpl(partitions)) {
            tracing::warn!(pipeline = %self.shared.name, %error, "cannot resume partitions");
        }
    }

    /// Commits every partition whose committable offset moved.
    pub fn commit(&self, consumer: &PipelineConsumer, mode: CommitMode) {
        let runners = self.runners();
        self.commit_trackers(
            consumer,
            runners.iter().map(|(p, r)| (*p, &r.tracker)),
            mode,
        );
    }

    fn commit_trackers<'a>(
        &self,
        consumer: &PipelineConsumer,
        trackers: impl Iterator<Item = (i32, &'a Arc<OffsetTracker>)>,
        mode: CommitMode,
    ) {
        let mut tpl = TopicPartitionList::new();
        let mut taken = Vec::new();
        for (partition, tracker) in trackers {
            if let Some(next) = tracker.take_commit() {
                let _ =
                    tpl.add_partition_offset(&self.shared.input, partition, Offset::Offset(next));
                taken.push((tracker, next));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        if let Err(error) = consumer.commit(&tpl, mode) {
            self.shared
                .health
                .broker_trouble(format!("commit of {} failed: {error}", self.shared.name));
            for (tracker, next) in taken {
                tracker.commit_failed(next);
            }
        } else if matches!(mode, CommitMode::Sync) {
            self.shared.health.broker_ok();
            tracing::debug!(pipeline = %self.shared.name, ?tpl, "committed");
        }
    }

    /// Stops the runners of `partitions`, waits for their in-flight deliveries and
    /// commits what they completed.
    pub fn stop(&self, consumer: &PipelineConsumer, partitions: &[i32]) {
        let mut stopped = Vec::new();
        {
            let mut runners = self.runners();
            for partition in partitions {
                if let Some(mut runner) = runners.remove(partition) {
                    runner.stop.store(true, Ordering::SeqCst);
                    runner.tx = None;
                    stopped.push((*partition, runner));
                }
            }
        }
        for (partition, runner) in &mut stopped {
            if let Some(thread) = runner.thread.take()
                && thread.join().is_err()
            {
                tracing::error!(pipeline = %self.shared.name, partition, "partition runner panicked");
            }
            if !runner.tracker.wait_drained(DRAIN_TIMEOUT) {
                tracing::warn!(
                    pipeline = %self.shared.name,
                    partition,
                    in_flight = runner.tracker.in_flight(),
                    "deliveries still pending after {DRAIN_TIMEOUT:?}; their records will be processed again by the next owner"
                );
            }
        }
        self.commit_trackers(
            consumer,
            stopped.iter().map(|(p, r)| (*p, &r.tracker)),
            CommitMode::Sync,
        );
    }
}

impl RebalanceHandler for PartitionSet {
    fn assigned(&self, consumer: &PipelineConsumer, partitions: &[i32]) {
        {
            let mut runners = self.runners();
            for &partition in partitions {
                if runners.contains_key(&partition) {
                    continue;
                }
                let (tx, rx) = crossbeam_channel::bounded(QUEUE_DEPTH);
                let stop = Arc::new(AtomicBool::new(false));
                let tracker = Arc::new(OffsetTracker::new());
                let runner = PartitionRunner {
                    shared: self.shared.clone(),
                    partition,
                    stop: stop.clone(),
                    tracker: tracker.clone(),
                };
                let thread = std::thread::Builder::new()
                    .name(format!("weir-{}-{partition}", self.shared.name))
                    .spawn(move || runner.run(rx));
                match thread {
                    Ok(thread) => {
                        runners.insert(
                            partition,
                            RunnerHandle {
                                tx: Some(tx),
                                stop,
                                thread: Some(thread),
                                tracker,
                                overflow: VecDeque::new(),
                                progress: Instant::now(),
                                paused: false,
                            },
                        );
                    }
                    Err(error) => {
                        tracing::error!(pipeline = %self.shared.name, partition, %error, "cannot start a partition runner");
                    }
                }
            }
        }
        if self.shared.circuit_blocks() {
            self.pause(consumer, partitions.iter().copied());
        }
    }

    fn revoked(&self, consumer: &PipelineConsumer, partitions: &[i32]) {
        self.stop(consumer, partitions);
    }
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
        headers: crate::kafka::headers_of(message),
    }
}

/// One partition's runner thread.
struct PartitionRunner {
    shared: Arc<PipelineShared>,
    partition: i32,
    stop: Arc<AtomicBool>,
    tracker: Arc<OffsetTracker>,
}

/// How a record ended.
enum Handled {
    Done,
    /// Stopped mid-record (revocation or shutdown): not registered, so not committed.
    Abandoned,
}

impl PartitionRunner {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps up to `duration`; returns false if asked to stop meanwhile.
    fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        loop {
            if self.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
        }
    }

    fn run(self, rx: Receiver<Event>) {
        let mut chain = loop {
            match Chain::new(&self.shared.versions()) {
                Ok(chain) => break chain,
                Err(error) => {
                    tracing::error!(pipeline = %self.shared.name, partition = self.partition, %error, "cannot start the plugin chain; retrying");
                    if !self.sleep(Duration::from_secs(1)) {
                        return;
                    }
                }
            }
        };
        while let Ok(first) = rx.recv() {
            let Some(_slot) = self.shared.slot(&self.stop) else {
                return;
            };
            let mut next = Some(first);
            let mut handled = 0;
            while let Some(event) = next.take() {
                if self.stopped() {
                    return;
                }
                if let Handled::Abandoned = self.handle(&mut chain, &event) {
                    return;
                }
                handled += 1;
                if handled < SLOT_BATCH {
                    next = rx.try_recv().ok();
                }
            }
        }
    }

    /// Waits for the circuit breaker's permission. `None` if asked to stop.
    fn permit(&self) -> Option<bool> {
        loop {
            let permit = self.shared.breaker().try_acquire(Instant::now());
            match permit {
                Permit::Go => return Some(false),
                Permit::Probe => return Some(true),
                Permit::Wait(wait) => {
                    if !self.sleep(wait.min(Duration::from_millis(250))) {
                        return None;
                    }
                }
            }
        }
    }

    fn handle(&self, chain: &mut Chain, event: &Event) -> Handled {
        // Lines about this record (plugin logs included) carry its correlation id.
        let _span = event
            .headers
            .iter()
            .find(|h| h.key == "correlation_id")
            .map(|h| {
                tracing::info_span!("record", correlation_id = %String::from_utf8_lossy(&h.value))
                    .entered()
            });
        let Some(probe) = self.permit() else {
            return Handled::Abandoned;
        };
        let shared = &self.shared;
        for version in chain.sync(&shared.plugins) {
            tracing::info!(pipeline = %shared.name, partition = self.partition, offset = event.offset, plugin = %version.label, "now running the reloaded plugin");
        }
        let retry = shared.retry();
        let site = CallSite {
            pipeline: shared.name.clone(),
            partition: self.partition,
            offset: event.offset,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = chain
                .process_observed(event, &site, |plugin, outcome, elapsed| {
                    shared
                        .metrics
                        .plugin_call(&plugin.name, outcome, elapsed.as_secs_f64());
                })
                .and_then(|outputs| self.route(chain, outputs));
            let failure = match result {
                Ok(routed) => {
                    self.produce(event, &routed);
                    self.circuit(false, probe);
                    return Handled::Done;
                }
                Err(failure) => failure,
            };
            match decide(failure.error.kind(), attempt, &retry, fastrand::f64()) {
                Decision::Retry(delay) => {
                    shared.metrics.retries.inc();
                    tracing::debug!(
                        pipeline = %shared.name, partition = self.partition, offset = event.offset,
                        plugin = %failure.plugin.label, attempt, retry_in = ?delay,
                        "{}: {}", failure.error.kind().as_str(), failure.error.message()
                    );
                    if !self.sleep(delay) {
                        if probe {
                            shared.breaker().abandon_probe();
                        }
                        return Handled::Abandoned;
                    }
                }
                Decision::DeadLetter(reason) => {
                    self.dead_letter(event, &failure, reason, attempt);
                    self.circuit(true, probe);
                    return Handled::Done;
                }
            }
        }
    }

    fn circuit(&self, failed: bool, probe: bool) {
        let shared = &self.shared;
        let mut breaker = shared.breaker();
        let was_open = breaker.is_open();
        if breaker.record(failed, probe, Instant::now()) {
            shared.metrics.circuit_open.set(1);
            tracing::error!(
                pipeline = %shared.name,
                "circuit opened: too many records are failing; consumption is paused (nothing is lost)"
            );
        } else if was_open && !breaker.is_open() {
            shared.metrics.circuit_open.set(0);
            tracing::info!(pipeline = %shared.name, "circuit closed: the probe record succeeded");
        }
    }

    /// Maps every output's `to` to its topic; an undeclared name is a bad output.
    fn route(
        &self,
        chain: &Chain,
        outputs: Vec<Output>,
    ) -> Result<Vec<(String, Output)>, ChainFailure> {
        let mut routed = Vec::with_capacity(outputs.len());
        for output in outputs {
            match self.shared.outputs.get(&output.to) {
                Some(topic) => routed.push((topic.clone(), output)),
                None => {
                    let mut declared: Vec<_> =
                        self.shared.outputs.keys().map(String::as_str).collect();
                    declared.sort_unstable();
                    return Err(ChainFailure {
                        plugin: chain
                            .versions()
                            .last()
                            .expect("a chain has a stage")
                            .clone(),
                        error: CallError::BadOutput(format!(
                            "output to {:?} is not declared in the pipeline's outputs (declared: {})",
                            output.to,
                            declared.join(", ")
                        )),
                    });
                }
            }
        }
        Ok(routed)
    }

    fn ticket(&self, event: &Event) -> Box<Ticket> {
        Box::new(Ticket {
            tracker: self.tracker.clone(),
            offset: event.offset,
            timestamp_ms: event.timestamp_ms,
            metrics: self.shared.metrics.clone(),
            failures: 0,
        })
    }

    fn produce(&self, event: &Event, routed: &[(String, Output)]) {
        self.tracker.register(event.offset, routed.len() as u32);
        if routed.is_empty() {
            self.shared.metrics.record_latency(event.timestamp_ms);
        }
        for (topic, output) in routed {
            self.shared.producer.send(
                OutRecord {
                    topic,
                    key: output.key.as_deref(),
                    value: output.value.as_deref(),
                    headers: &output.headers,
                },
                self.ticket(event),
            );
        }
    }

    fn dead_letter(&self, event: &Event, failure: &ChainFailure, reason: &str, attempts: u32) {
        let shared = &self.shared;
        let message = failure.error.message();
        let plugin = failure.plugin.identity();
        // Invalid input is the expected, per-record kind (counted in
        // weir_dlq_records_total, listed by `weir dlq inspect`): a warning each
        // would flood the log at scale. Faults and exhausted retries stay warnings.
        if matches!(failure.error, CallError::Guest(GuestFailure::Invalid(_))) {
            tracing::debug!(
                pipeline = %shared.name, partition = self.partition, offset = event.offset,
                plugin = %failure.plugin.label, reason, attempts,
                "dead-lettered: {message}"
            );
        } else {
            tracing::warn!(
                pipeline = %shared.name, partition = self.partition, offset = event.offset,
                plugin = %failure.plugin.label, reason, attempts,
                "dead-lettered: {message}"
            );
        }
        let headers = DeadLetter {
            reason,
            message: &message,
            source_topic: &event.topic,
            source_partition: event.partition,
            source_offset: event.offset,
            pipeline: &shared.name,
            plugin: &plugin,
            attempts,
            failed_at: SystemTime::now(),
        }
        .headers(&event.headers);
        shared.metrics.dead_lettered(reason);
        self.tracker.register(event.offset, 1);
        shared.producer.send(
            OutRecord {
                topic: &shared.dlq,
                key: event.key.as_deref(),
                value: event.value.as_deref(),
                headers: &headers,
            },
            self.ticket(event),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_slots_cap_concurrency_and_go_in_turn() {
        let slots = Arc::new(WorkerSlots::new(1));
        let order = Arc::new(Mutex::new(Vec::new()));
        let never = Arc::new(AtomicBool::new(false));
        let held = slots.acquire(&never).expect("a free slot");
        let mut waiters = Vec::new();
        for name in ["first", "second", "third"] {
            let (mine, order, never) = (slots.clone(), order.clone(), never.clone());
            waiters.push(std::thread::spawn(move || {
                let _slot = mine.acquire(&never).expect("a slot in turn");
                order.lock().unwrap().push(name);
            }));
            // Each waiter queues before the next one starts.
            while slots.lock().waiting.len() < waiters.len() {
                std::thread::yield_now();
            }
        }
        assert!(
            order.lock().unwrap().is_empty(),
            "nobody runs while the slot is held"
        );
        drop(held);
        for waiter in waiters {
            waiter.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["first", "second", "third"]);
    }

    #[test]
    fn a_stopped_runner_stops_waiting_for_a_slot() {
        let slots = WorkerSlots::new(1);
        let never = AtomicBool::new(false);
        let _held = slots.acquire(&never).expect("a free slot");
        assert!(slots.acquire(&AtomicBool::new(true)).is_none());
        assert!(slots.lock().waiting.is_empty());
    }
}
