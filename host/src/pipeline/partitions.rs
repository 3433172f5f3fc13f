//! The partitions a pipeline holds, following rebalances. An assignment splits
//! each partition's queue off the consumer (before records are fetched) and starts
//! a runner on it; a revocation stops those runners at a record boundary, waits
//! (bounded) for their deliveries, then commits.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::topic_partition_list::TopicPartitionList;

use super::live::LivePipeline;
use super::runner::PartitionRunner;
use super::sink::{Commit, Committed};
use super::unit::PartitionUnit;
use crate::kafka::consumer::{PipelineConsumer, PipelineContext, RebalanceHandler};
use crate::shutdown::{Shutdown, join_until};
use crate::telemetry::Health;

/// How long a revocation waits for a partition's runner and in-flight deliveries.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The runners of one pipeline, keyed by partition.
pub struct PartitionSet {
    pub(in crate::pipeline) pipeline: Arc<LivePipeline>,
    /// A runner that panics is a fatal error reported here.
    health: Arc<Health>,
    runners: Mutex<BTreeMap<i32, RunnerHandle>>,
    /// Exactly-once rewinds in a row, for their backoff.
    pub(in crate::pipeline) rewinds: AtomicU32,
    /// Rewind positions handed from stopped units to the next ones (a rewind).
    carried: Mutex<HashMap<i32, i64>>,
}

/// The pipeline's side of one partition's runner.
struct RunnerHandle {
    /// Stops the runner at its next record boundary.
    stop: Shutdown,
    thread: JoinHandle<()>,
    unit: Arc<PartitionUnit>,
    /// Kept until the partition is revoked: dropping a split queue of a partition
    /// still assigned would silence it.
    _queue: Arc<PartitionQueue<PipelineContext>>,
}

impl PartitionSet {
    pub fn new(pipeline: Arc<LivePipeline>, health: Arc<Health>) -> PartitionSet {
        PartitionSet {
            pipeline,
            health,
            runners: Mutex::new(BTreeMap::new()),
            rewinds: AtomicU32::new(0),
            carried: Mutex::new(HashMap::new()),
        }
    }

    pub(in crate::pipeline) fn carried(&self) -> std::sync::MutexGuard<'_, HashMap<i32, i64>> {
        self.carried.lock().unwrap_or_else(PoisonError::into_inner)
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
            tpl.add_partition(self.pipeline.input(), p);
        }
        tpl
    }

    pub fn pause(&self, consumer: &PipelineConsumer) {
        if let Err(error) = consumer.pause(&self.tpl(self.partitions())) {
            tracing::warn!(pipeline = %self.pipeline.name(), %error, "cannot pause partitions");
        }
    }

    pub fn resume(&self, consumer: &PipelineConsumer) {
        if let Err(error) = consumer.resume(&self.tpl(self.partitions())) {
            tracing::warn!(pipeline = %self.pipeline.name(), %error, "cannot resume partitions");
        }
    }

    /// The periodic commit of what every partition completed. After an aborted
    /// transaction the partitions go back to their committed offsets; a fenced
    /// instance drops its work and rejoins the group.
    pub fn commit(&self, consumer: &Arc<PipelineConsumer>) {
        let outcome = {
            let runners = self.runners();
            let units: Vec<&Arc<PartitionUnit>> = runners.values().map(|r| &r.unit).collect();
            self.pipeline
                .sink()
                .commit(consumer, self.pipeline.input(), &units, Commit::Periodic)
        };
        match outcome {
            Committed::Done => self.rewinds.store(0, Ordering::Relaxed),
            Committed::Rewind => self.rewind(consumer),
            Committed::Fenced => self.rejoin(consumer),
        }
    }

    /// Records handed to Kafka and not yet acknowledged, over all partitions.
    pub fn in_flight(&self) -> usize {
        let runners = self.runners();
        let units: Vec<&Arc<PartitionUnit>> = runners.values().map(|r| &r.unit).collect();
        self.pipeline.sink().in_flight(&units)
    }

    /// Stops the runners of `partitions`, waits (until `deadline`) for them and for
    /// their deliveries, then commits what every partition completed (`why`).
    pub fn stop(
        &self,
        consumer: &PipelineConsumer,
        partitions: &[i32],
        deadline: Instant,
        why: Commit,
    ) {
        let stopped = self.halt(partitions, deadline);
        let name = self.pipeline.name();
        let mut drained = Vec::new();
        for (partition, unit) in &stopped {
            if why == Commit::Lost {
                continue;
            }
            if unit
                .tracker
                .wait_drained(deadline.saturating_duration_since(Instant::now()))
            {
                drained.push(unit);
            } else {
                tracing::warn!(
                    pipeline = %name,
                    partition,
                    in_flight = unit.tracker.in_flight(),
                    "deliveries still pending when the partition went; their records will be processed again by the next owner"
                );
            }
        }
        let runners = self.runners();
        let units: Vec<&Arc<PartitionUnit>> = stopped
            .iter()
            .map(|(_, unit)| unit)
            .chain(runners.values().map(|r| &r.unit))
            .collect();
        let outcome = self
            .pipeline
            .sink()
            .commit(consumer, self.pipeline.input(), &units, why);
        if outcome != Committed::Done {
            tracing::info!(pipeline = %name, ?outcome, "the partitions went without a commit; their next owner processes their records again");
            return;
        }
        // Every change of these partitions is in the changelogs for good: their
        // local stores can say so.
        for unit in drained {
            if let Some(state) = unit.state() {
                state.catch_up();
            }
        }
    }

    /// Stops the runners of `partitions` and waits for them (until `deadline`);
    /// returns their partitions' units.
    pub(in crate::pipeline) fn halt(
        &self,
        partitions: &[i32],
        deadline: Instant,
    ) -> Vec<(i32, Arc<PartitionUnit>)> {
        let stopped: Vec<(i32, RunnerHandle)> = {
            let mut runners = self.runners();
            partitions
                .iter()
                .filter_map(|p| runners.remove(p).map(|r| (*p, r)))
                .collect()
        };
        for (_, runner) in &stopped {
            runner.stop.trigger();
        }
        let name = self.pipeline.name();
        stopped
            .into_iter()
            .map(|(partition, runner)| {
                let what = format!("the runner of {name}/{partition}");
                join_until(runner.thread, deadline, &what);
                (partition, runner.unit)
            })
            .collect()
    }
}

/// Runs `body` (a partition runner); a panic in it (a bug in weir: plugin
/// failures never panic the host) is a fatal error: logged, named by `/readyz`,
/// and weir drains and exits 1 so that its supervisor restarts it. Nothing is lost:
/// the records the runner did not finish are not committed. The runner's circuit
/// permission goes back to the circuit as the panic unwinds.
fn guarded(what: &str, health: &Health, body: impl FnOnce()) {
    let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) else {
        return;
    };
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    health.fatal(format!(
        "{what} panicked: {message}; weir stops, and its unfinished records are processed again after a restart"
    ));
}

impl RebalanceHandler for PartitionSet {
    fn assigning(&self, consumer: &Arc<PipelineConsumer>, partitions: &[i32]) {
        let pipeline = &self.pipeline;
        pipeline.sink().resume();
        let mut runners = self.runners();
        for &partition in partitions {
            if runners.contains_key(&partition) {
                continue;
            }
            let Some(queue) = consumer.split_partition_queue(pipeline.input(), partition) else {
                tracing::error!(pipeline = %pipeline.name(), partition, "cannot get the partition's queue; it is not handled");
                continue;
            };
            let queue = Arc::new(queue);
            let rewind_to = self.carried().remove(&partition);
            let unit = Arc::new(PartitionUnit::new(
                partition,
                pipeline.metrics().latency().clone(),
                pipeline.stall().clone(),
                rewind_to,
            ));
            let stop = pipeline.stop().child();
            let runner = PartitionRunner {
                pipeline: pipeline.clone(),
                unit: unit.clone(),
                queue: queue.clone(),
                stop: stop.clone(),
            };
            let health = self.health.clone();
            let what = format!(
                "the runner of partition {partition} of pipeline {}",
                pipeline.name()
            );
            let thread = std::thread::Builder::new()
                .name(format!("weir-{}-{partition}", pipeline.name()))
                .spawn(move || guarded(&what, &health, || runner.run()));
            match thread {
                Ok(thread) => {
                    runners.insert(
                        partition,
                        RunnerHandle {
                            stop,
                            thread,
                            unit,
                            _queue: queue,
                        },
                    );
                }
                Err(error) => {
                    tracing::error!(pipeline = %pipeline.name(), partition, %error, "cannot start a partition runner");
                }
            }
        }
        drop(runners);
        if pipeline.circuit_blocks() {
            self.pause(consumer);
        }
    }

    fn commit_failed(&self, partition: i32, offset: i64) {
        // Not while this thread commits synchronously holding the runners (that
        // path hands a failure back itself).
        let Ok(runners) = self.runners.try_lock() else {
            return;
        };
        if let Some(runner) = runners.get(&partition) {
            runner.unit.tracker.commit_failed(offset);
        }
    }

    fn revoked(&self, consumer: &PipelineConsumer, partitions: &[i32], lost: bool) {
        let why = if lost { Commit::Lost } else { Commit::Final };
        self.carried().clear();
        self.stop(consumer, partitions, Instant::now() + DRAIN_TIMEOUT, why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runner_that_panics_is_a_fatal_error_readiness_names() {
        let health = Health::default();
        guarded("the runner of partition 3 of pipeline p", &health, || {});
        assert_eq!(health.fatal_error(), None);
        guarded("the runner of partition 3 of pipeline p", &health, || {
            panic!("index out of bounds")
        });
        let fatal = health.fatal_error().expect("fatal");
        assert!(
            fatal.contains("partition 3 of pipeline p panicked: index out of bounds"),
            "{fatal}"
        );
        assert!(health.readiness().unwrap_err().starts_with("fatal"));
    }
}
