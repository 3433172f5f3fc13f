//! The record path in one function. [`process`] runs one consumed record through a
//! pipeline snapshot's plugins (the shared prefix, then every branch) and says what
//! becomes of it: a [`Disposition`]. It calls plugins and nothing else: no Kafka, no
//! sleeping, no clocks but the call timings; the runner sleeps through a retry and
//! the sink produces what the disposition says. So every outcome is unit tested
//! here with scripted plugins.
//!
//! A retry repeats only what failed: once the prefix succeeded its outputs are kept,
//! and a branch that reached its verdict keeps it while another branch retries.
//!
//! (The file is longer than most: about half of it is those unit tests, one per
//! outcome, kept next to the function they pin down.)

use std::sync::Arc;
use std::time::Duration;

use super::chain::{Chain, ChainFailure, output_event};
use super::keyed::{PartitionState, Place};
use super::snapshot::{Branch, BranchInfo, Route, Snapshot};
use crate::outcome::DlqReason;
use crate::plugin::{
    CallError, CallSite, Event, FiredTimer, LoadError, Output, Plugin, PluginVersion,
};
use crate::policy::{Decision, decide};
use crate::telemetry::trace::SendSpan;

/// What becomes of a record.
pub enum Disposition<P: Plugin = PluginVersion> {
    /// Every branch has its verdict, in branch order.
    Done(Vec<Verdict<P>>),
    /// A plugin failed in a way worth retrying: call [`process`] again with the same
    /// [`Work`] after `delay`.
    Retry {
        delay: Duration,
        failure: ChainFailure<P>,
        /// The attempt that failed (1-based), of the failing part of the pipeline.
        attempt: u32,
    },
}

/// One branch's verdict on a record.
pub enum Verdict<P: Plugin = PluginVersion> {
    /// Produce these outputs (possibly none).
    Deliver(Vec<Routed>),
    /// Send the source record to the branch's dead-letter topic.
    DeadLetter(Failed<P>),
    /// The broker refused one of the branch's outputs on its own (exactly-once
    /// finds out before producing the record again): dead-letter the source record
    /// as `produce-rejected`.
    Refused {
        branch: Arc<BranchInfo>,
        /// The broker's reason.
        message: String,
    },
}

/// An output with the topic it goes to.
pub struct Routed {
    pub route: Arc<Route>,
    pub output: Output,
    /// Its send span, once the sink stamped it (sampled records only).
    pub send: Option<SendSpan>,
}

/// Why a record is dead-lettered, and where to.
pub struct Failed<P: Plugin = PluginVersion> {
    /// The branch whose dead-letter topic it goes to.
    pub branch: Arc<BranchInfo>,
    /// `weir.error.reason`.
    pub reason: DlqReason,
    pub failure: ChainFailure<P>,
    pub attempts: u32,
}

impl<P: Plugin> Clone for Failed<P> {
    fn clone(&self) -> Self {
        Failed {
            branch: self.branch.clone(),
            reason: self.reason,
            failure: self.failure.clone(),
            attempts: self.attempts,
        }
    }
}

impl<P: Plugin> Verdict<P> {
    /// How many records the sink produces for it.
    pub fn deliveries(&self) -> usize {
        match self {
            Verdict::Deliver(routed) => routed.len(),
            Verdict::DeadLetter(_) | Verdict::Refused { .. } => 1,
        }
    }
}

/// One record's progress through a pipeline, kept across retries.
pub struct Work<'r, P: Plugin = PluginVersion> {
    record: &'r Event,
    /// A fired timer: which slot's `handle-timer` starts the work.
    timer: Option<(Place, usize, &'r FiredTimer)>,
    /// The prefix's outputs, once it succeeded.
    shared: Option<Vec<Output>>,
    /// `shared` as events, for branches that run plugins (made once).
    shared_events: Option<Vec<Event>>,
    prefix_attempts: u32,
    branch_attempts: Vec<u32>,
    verdicts: Vec<Option<Verdict<P>>>,
}

impl<'r, P: Plugin> Work<'r, P> {
    pub fn new(record: &'r Event, snapshot: &Snapshot<P>) -> Work<'r, P> {
        let branches = snapshot.branches.len();
        Work {
            record,
            timer: None,
            shared: None,
            shared_events: None,
            prefix_attempts: 0,
            branch_attempts: vec![0; branches],
            verdicts: (0..branches).map(|_| None).collect(),
        }
    }

    /// The work of a fired timer of the slot at `place`, stage `stage`: its
    /// `handle-timer` outputs go down the rest of its chain (and, from the shared
    /// chain, into every branch); other branches have nothing to do. `record`
    /// stands for the source: the timer's key at the partition's place.
    pub fn timer(
        record: &'r Event,
        snapshot: &Snapshot<P>,
        place: Place,
        stage: usize,
        timer: &'r FiredTimer,
    ) -> Work<'r, P> {
        let mut work = Work::new(record, snapshot);
        work.timer = Some((place, stage, timer));
        if let Place::Branch(b) = place {
            work.shared = Some(Vec::new());
            for (i, verdict) in work.verdicts.iter_mut().enumerate() {
                if i != b {
                    *verdict = Some(Verdict::Deliver(Vec::new()));
                }
            }
        }
        work
    }

    /// The branch whose slot's timer fired, for a timer in a branch.
    fn timer_in(&self, b: usize) -> Option<(usize, &'r FiredTimer)> {
        match self.timer {
            Some((Place::Branch(at), stage, timer)) if at == b => Some((stage, timer)),
            _ => None,
        }
    }
}

/// The plugin instances of one partition runner, for one pipeline.
pub struct Instances<P: Plugin = PluginVersion> {
    prefix: Chain<P>,
    branches: Vec<Chain<P>>,
}

impl<P: Plugin> Instances<P> {
    /// Instantiates and inits every plugin of the snapshot; the stateful ones get
    /// their slot in `state`.
    pub fn new(snapshot: &Snapshot<P>, state: &PartitionState) -> Result<Instances<P>, LoadError> {
        Ok(Instances {
            prefix: Chain::with_slots(&snapshot.prefix.plugins, |i| {
                state.handle(Place::Prefix, i)
            })?,
            branches: snapshot
                .branches
                .iter()
                .enumerate()
                .map(|(b, branch)| {
                    Chain::with_slots(&branch.segment.plugins, |i| {
                        state.handle(Place::Branch(b), i)
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// Moves to the snapshot's plugin versions where they changed (a reload), and
    /// returns the new ones. New instances are made on their first call.
    pub fn sync(&mut self, snapshot: &Snapshot<P>) -> Vec<Arc<P>> {
        let mut swapped = self.prefix.sync(&snapshot.prefix.plugins);
        for (chain, branch) in self.branches.iter_mut().zip(&snapshot.branches) {
            swapped.extend(chain.sync(&branch.segment.plugins));
        }
        swapped
    }
}

/// Runs the parts of `work` that have no verdict yet: the shared prefix (once it
/// succeeded its outputs are kept), then every branch without a verdict. `jitter`
/// is a uniform sample in [0, 1) for the retry backoff.
pub fn process<P: Plugin>(
    work: &mut Work<'_, P>,
    snapshot: &Snapshot<P>,
    instances: &mut Instances<P>,
    site: &CallSite,
    jitter: f64,
) -> Disposition<P> {
    if let Err(done) = run_prefix(work, snapshot, instances, site, jitter) {
        return done;
    }
    run_branches(work, snapshot, instances, site, jitter)
}

/// Runs the shared prefix unless it already succeeded. `Err` when the record is
/// settled without the branches: retry the prefix later, or dead-letter the record
/// to every branch (each would have failed the same way on its own).
fn run_prefix<P: Plugin>(
    work: &mut Work<'_, P>,
    snapshot: &Snapshot<P>,
    instances: &mut Instances<P>,
    site: &CallSite,
    jitter: f64,
) -> Result<(), Disposition<P>> {
    if work.shared.is_some() {
        return Ok(());
    }
    let record = work.record;
    work.prefix_attempts += 1;
    site.attempt.set(work.prefix_attempts);
    instances.prefix.discard_changes();
    let result = if let Some((Place::Prefix, stage, timer)) = work.timer {
        instances
            .prefix
            .fire(stage, timer, record, site, &snapshot.prefix.metrics)
    } else if instances.prefix.is_empty() {
        Ok(vec![passthrough(record)])
    } else {
        instances.prefix.run(
            std::slice::from_ref(record),
            record,
            site,
            &snapshot.prefix.metrics,
        )
    };
    let failure = match result {
        Ok(outputs) => {
            work.shared = Some(outputs);
            return Ok(());
        }
        Err(failure) => failure,
    };
    let kind = failure.error.kind();
    match decide(kind, work.prefix_attempts, &snapshot.retry, jitter) {
        Decision::Retry(delay) => {
            snapshot.prefix.retries.retried();
            Err(Disposition::Retry {
                delay,
                failure,
                attempt: work.prefix_attempts,
            })
        }
        Decision::DeadLetter(reason) => {
            let verdicts = snapshot
                .branches
                .iter()
                .map(|b| {
                    Verdict::DeadLetter(Failed {
                        branch: b.info.clone(),
                        reason,
                        failure: failure.clone(),
                        attempts: work.prefix_attempts,
                    })
                })
                .collect();
            Err(Disposition::Done(verdicts))
        }
    }
}

/// Runs every branch that has no verdict yet on the prefix's outputs. A branch
/// that fails in a way worth retrying leaves the record to be retried (the others
/// keep their verdicts); otherwise every branch has its verdict.
fn run_branches<P: Plugin>(
    work: &mut Work<'_, P>,
    snapshot: &Snapshot<P>,
    instances: &mut Instances<P>,
    site: &CallSite,
    jitter: f64,
) -> Disposition<P> {
    let record = work.record;
    let mut retry = None;
    for (b, branch) in snapshot.branches.iter().enumerate() {
        if work.verdicts[b].is_some() {
            continue;
        }
        work.branch_attempts[b] += 1;
        site.attempt.set(work.branch_attempts[b]);
        let chain = &mut instances.branches[b];
        chain.discard_changes();
        let result = if let Some((stage, timer)) = work.timer_in(b) {
            chain
                .fire(stage, timer, record, site, &branch.segment.metrics)
                .and_then(|outputs| route(branch, outputs, branch.segment.last()))
        } else if chain.is_empty() {
            let outputs = if snapshot.branches.len() == 1 {
                work.shared.take().unwrap_or_default()
            } else {
                work.shared.clone().unwrap_or_default()
            };
            let blame = snapshot.prefix.last();
            route(branch, outputs, blame)
        } else {
            let shared = work.shared.as_deref().unwrap_or_default();
            let events = work.shared_events.get_or_insert_with(|| {
                shared
                    .iter()
                    .map(|o| output_event(record, o.clone()))
                    .collect()
            });
            chain
                .run(events, record, site, &branch.segment.metrics)
                .and_then(|outputs| route(branch, outputs, branch.segment.last()))
        };
        let verdict = match result {
            Ok(routed) => Verdict::Deliver(routed),
            Err(failure) => {
                let attempt = work.branch_attempts[b];
                match decide(failure.error.kind(), attempt, &snapshot.retry, jitter) {
                    Decision::Retry(delay) => {
                        branch.segment.retries.retried();
                        retry.get_or_insert(Disposition::Retry {
                            delay,
                            failure,
                            attempt,
                        });
                        continue;
                    }
                    Decision::DeadLetter(reason) => Verdict::DeadLetter(Failed {
                        branch: branch.info.clone(),
                        reason,
                        failure,
                        attempts: attempt,
                    }),
                }
            }
        };
        work.verdicts[b] = Some(verdict);
    }
    if let Some(retry) = retry {
        return retry;
    }
    Disposition::Done(work.verdicts.iter_mut().filter_map(Option::take).collect())
}

/// A pipeline without plugins before a branch hands the record on as it is.
fn passthrough(record: &Event) -> Output {
    Output {
        to: String::new(),
        key: record.key.clone(),
        value: record.value.clone(),
        headers: record.headers.clone(),
    }
}

/// Maps every output's `to` to its route; an undeclared name is a bad output of the
/// branch's last plugin.
#[allow(
    clippy::expect_used,
    reason = "the config checks make every branch run at least one plugin"
)]
fn route<P: Plugin>(
    branch: &Branch<P>,
    outputs: Vec<Output>,
    blame: Option<&Arc<P>>,
) -> Result<Vec<Routed>, ChainFailure<P>> {
    let mut routed = Vec::with_capacity(outputs.len());
    for output in outputs {
        match branch.routes.get(&output.to) {
            Some(route) => routed.push(Routed {
                route: route.clone(),
                output,
                send: None,
            }),
            None => {
                return Err(ChainFailure {
                    plugin: blame
                        .expect("a pipeline runs at least one plugin (checked at load)")
                        .clone(),
                    error: CallError::BadOutput(format!(
                        "output to {:?} is not declared in the pipeline's outputs (declared: {})",
                        output.to,
                        branch.declared()
                    )),
                });
            }
        }
    }
    Ok(routed)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::config::WeirConfig;
    use crate::plugin::{CallOutcome, GuestFailure, Header, PluginCall};
    use crate::telemetry::Metrics;

    /// A plugin whose every call is decided by a script: `value -> outcome`.
    struct Scripted {
        name: String,
        label: Arc<str>,
        script: fn(&str, u32) -> CallOutcome,
        /// Calls so far, by input value: scripts can fail the first attempts.
        calls: Mutex<HashMap<String, u32>>,
    }

    struct ScriptedInstance(Arc<Scripted>);

    impl Plugin for Scripted {
        type Instance = ScriptedInstance;
        fn instantiate(self: &Arc<Self>) -> Result<ScriptedInstance, LoadError> {
            Ok(ScriptedInstance(self.clone()))
        }
        fn name(&self) -> &str {
            &self.name
        }
        fn label(&self) -> &Arc<str> {
            &self.label
        }
        fn identity(&self) -> &str {
            &self.name
        }
    }

    impl PluginCall for ScriptedInstance {
        fn handle(&mut self, event: &Event, _site: &CallSite) -> CallOutcome {
            let value =
                String::from_utf8_lossy(event.value.as_deref().unwrap_or_default()).into_owned();
            let mut calls = self.0.calls.lock().unwrap();
            let n = calls.entry(value.clone()).or_default();
            *n += 1;
            (self.0.script)(&value, *n)
        }
    }

    fn plugin(name: &str, script: fn(&str, u32) -> CallOutcome) -> Arc<Scripted> {
        Arc::new(Scripted {
            name: name.into(),
            label: name.into(),
            script,
            calls: Mutex::default(),
        })
    }

    fn out(to: &str, value: &str) -> Output {
        Output {
            to: to.into(),
            key: Some(b"k".to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![Header {
                key: "h".into(),
                value: b"v".to_vec(),
            }],
        }
    }

    /// Passes valid values on as `valid`; `bad*` is invalid; `flaky` fails once.
    fn validator(value: &str, call: u32) -> CallOutcome {
        match value {
            v if v.starts_with("bad") => Err(CallError::Guest(GuestFailure::Invalid(format!(
                "{v} is bad"
            )))),
            "flaky" if call == 1 => Err(CallError::Guest(GuestFailure::Transient("later".into()))),
            v => Ok(vec![out("valid", v)]),
        }
    }

    /// Upper-cases into `left`; `boom` always traps; `slow` times out once.
    fn left(value: &str, call: u32) -> CallOutcome {
        match value {
            "boom" => Err(CallError::Fault(crate::plugin::Fault::Trap("boom".into()))),
            "slow" if call == 1 => Err(CallError::Fault(crate::plugin::Fault::Timeout(
                Duration::from_millis(1),
            ))),
            "stray" => Ok(vec![out("nowhere", value)]),
            v => Ok(vec![out("out", &v.to_uppercase())]),
        }
    }

    /// Two outputs into `right`, or none for `skip`.
    fn right(value: &str, _call: u32) -> CallOutcome {
        match value {
            "skip" => Ok(vec![]),
            v => Ok(vec![
                out("out", &format!("{v}-1")),
                out("out", &format!("{v}-2")),
            ]),
        }
    }

    const BRANCHED: &str = r#"
[topics.in]
[topics.a]
[topics.b]
[[pipeline]]
name = "todo"
input = "in"
plugins = [{ path = "validator.wasm" }]
retry = { max-attempts = 2 }
[[pipeline.branch]]
name = "left"
plugins = [{ path = "left.wasm" }]
outputs = { out = "a" }
[[pipeline.branch]]
name = "right"
plugins = [{ path = "right.wasm" }]
outputs = { out = "b" }
"#;

    const SINGLE: &str = r#"
[topics.in]
[topics.a]
[[pipeline]]
name = "solo"
input = "in"
plugins = [{ path = "validator.wasm" }, { path = "left.wasm" }]
outputs = { out = "a" }
dlq = "solo.dlq"
"#;

    fn snapshot(text: &str, plugins: Vec<Arc<Scripted>>) -> Snapshot<Scripted> {
        let config = WeirConfig::parse(text, "pipelines.toml").unwrap();
        Snapshot::build(&config.pipelines[0], plugins, &Metrics::new(), None)
    }

    fn branched() -> Snapshot<Scripted> {
        snapshot(
            BRANCHED,
            vec![
                plugin("validator", validator),
                plugin("left", left),
                plugin("right", right),
            ],
        )
    }

    fn record(value: &str) -> Event {
        Event {
            topic: "in".into(),
            partition: 2,
            offset: 40,
            timestamp_ms: Some(1),
            key: Some(b"key".to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
        }
    }

    /// Runs a record to its end: (verdicts, retries taken).
    fn run(snapshot: &Snapshot<Scripted>, value: &str) -> (Vec<Verdict<Scripted>>, u32) {
        let mut instances = Instances::new(snapshot, &PartitionState::stateless()).unwrap();
        let event = record(value);
        let mut work = Work::new(&event, snapshot);
        let site = CallSite::default();
        let mut retries = 0;
        loop {
            match process(&mut work, snapshot, &mut instances, &site, 0.5) {
                Disposition::Done(verdicts) => return (verdicts, retries),
                Disposition::Retry { .. } => retries += 1,
            }
        }
    }

    /// Each verdict as text: `topic <- value` per output, or `dlq topic: reason`.
    fn describe(verdicts: &[Verdict<Scripted>]) -> Vec<String> {
        verdicts
            .iter()
            .map(|v| match v {
                Verdict::Deliver(routed) => routed
                    .iter()
                    .map(|r| {
                        format!(
                            "{} <- {}",
                            r.route.topic,
                            String::from_utf8_lossy(r.output.value.as_deref().unwrap())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                Verdict::DeadLetter(f) => format!(
                    "{}: {} by {} after {}",
                    f.branch.dlq_topic, f.reason, f.failure.plugin.name, f.attempts
                ),
                Verdict::Refused { branch, message } => {
                    format!("{}: produce-rejected: {message}", branch.dlq_topic)
                }
            })
            .collect()
    }

    #[test]
    fn a_valid_record_reaches_every_branch_with_its_topics() {
        let (verdicts, retries) = run(&branched(), "task");
        assert_eq!(
            describe(&verdicts),
            ["a <- TASK", "b <- task-1, b <- task-2"]
        );
        assert_eq!(retries, 0);
    }

    #[test]
    fn a_prefix_rejection_dead_letters_to_every_branch_once() {
        let (verdicts, _) = run(&branched(), "bad-title");
        assert_eq!(
            describe(&verdicts),
            [
                "in.left.dlq: invalid by validator after 1",
                "in.right.dlq: invalid by validator after 1"
            ]
        );
        let Verdict::DeadLetter(failed) = &verdicts[0] else {
            unreachable!()
        };
        assert_eq!(failed.failure.error.message(), "bad-title is bad");
    }

    #[test]
    fn a_transient_prefix_failure_is_retried_then_succeeds() {
        let snapshot = branched();
        let (verdicts, retries) = run(&snapshot, "flaky");
        assert_eq!(retries, 1);
        assert_eq!(
            describe(&verdicts),
            ["a <- FLAKY", "b <- flaky-1, b <- flaky-2"]
        );
        assert_eq!(snapshot.prefix.retries.count(), 1);
    }

    #[test]
    fn a_retry_repeats_only_the_failing_branch() {
        let snapshot = branched();
        let (verdicts, retries) = run(&snapshot, "slow");
        assert_eq!(retries, 1);
        assert_eq!(
            describe(&verdicts),
            ["a <- SLOW", "b <- slow-1, b <- slow-2"]
        );
        let calls = |p: &Arc<Scripted>| p.calls.lock().unwrap().get("slow").copied();
        assert_eq!(calls(&snapshot.prefix.plugins[0]), Some(1), "prefix once");
        assert_eq!(calls(&snapshot.branches[0].segment.plugins[0]), Some(2));
        assert_eq!(calls(&snapshot.branches[1].segment.plugins[0]), Some(1));
        assert_eq!(snapshot.branches[0].segment.retries.count(), 1);
    }

    #[test]
    fn one_branch_failing_for_good_leaves_the_other_delivering() {
        let (verdicts, retries) = run(&branched(), "boom");
        assert_eq!(retries, 1, "a trap is retried up to max-attempts = 2");
        assert_eq!(
            describe(&verdicts),
            [
                "in.left.dlq: trap by left after 2",
                "b <- boom-1, b <- boom-2"
            ]
        );
    }

    #[test]
    fn an_undeclared_output_is_a_bad_output_of_the_last_plugin() {
        let (verdicts, retries) = run(&branched(), "stray");
        assert_eq!(retries, 0, "bad output is never retried");
        assert_eq!(
            describe(&verdicts)[0],
            "in.left.dlq: bad-output by left after 1"
        );
        let Verdict::DeadLetter(failed) = &verdicts[0] else {
            unreachable!()
        };
        assert!(
            failed
                .failure
                .error
                .message()
                .contains("\"nowhere\" is not declared"),
            "{}",
            failed.failure.error.message()
        );
    }

    #[test]
    fn no_outputs_is_a_verdict_too() {
        let (verdicts, _) = run(&branched(), "skip");
        assert_eq!(describe(&verdicts), ["a <- SKIP", ""]);
        assert_eq!(verdicts[1].deliveries(), 0);
    }

    #[test]
    fn a_pipeline_without_branches_is_a_chain_with_one_route() {
        let snapshot = snapshot(
            SINGLE,
            vec![plugin("validator", validator), plugin("left", left)],
        );
        assert_eq!(describe(&run(&snapshot, "task").0), ["a <- TASK"]);
        assert_eq!(
            describe(&run(&snapshot, "bad").0),
            ["solo.dlq: invalid by validator after 1"]
        );
        assert_eq!(
            describe(&run(&snapshot, "boom").0),
            ["solo.dlq: trap by left after 5"],
            "the default max-attempts"
        );
    }

    #[test]
    fn retries_give_up_with_retries_exhausted() {
        fn always_transient(_: &str, _: u32) -> CallOutcome {
            Err(CallError::Guest(GuestFailure::Transient("down".into())))
        }
        let snapshot = snapshot(
            &SINGLE.replace("dlq = ", "retry = { max-attempts = 3 }\ndlq = "),
            vec![plugin("validator", always_transient), plugin("left", left)],
        );
        let (verdicts, retries) = run(&snapshot, "x");
        assert_eq!(retries, 2);
        assert_eq!(
            describe(&verdicts),
            ["solo.dlq: retries-exhausted by validator after 3"]
        );
    }

    #[test]
    fn a_reload_moves_instances_to_the_new_versions() {
        let old = branched();
        let mut instances = Instances::new(&old, &PartitionState::stateless()).unwrap();
        let new = snapshot(
            BRANCHED,
            vec![
                old.prefix.plugins[0].clone(),
                plugin("left", |v, _| Ok(vec![out("out", &format!("v2 {v}"))])),
                old.branches[1].segment.plugins[0].clone(),
            ],
        );
        let swapped = instances.sync(&new);
        assert_eq!(swapped.len(), 1);
        assert!(Arc::ptr_eq(
            &swapped[0],
            &new.branches[0].segment.plugins[0]
        ));
        let event = record("x");
        let mut work = Work::new(&event, &new);
        let Disposition::Done(verdicts) =
            process(&mut work, &new, &mut instances, &CallSite::default(), 0.5)
        else {
            panic!("no retry expected")
        };
        assert_eq!(describe(&verdicts)[0], "a <- v2 x");
    }
}
