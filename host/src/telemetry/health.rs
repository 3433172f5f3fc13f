//! Readiness: is every pipeline assigned, and is the broker answering? The runtime
//! reports into this; the readiness endpoint and logs read it.
//!
//! A frozen broker often produces no error at all (connections stay open), so
//! silence counts too: a pipeline with records in flight and no acknowledgement for
//! [`STALL_AFTER`] is broker trouble. Each pipeline watches its own records
//! ([`StallWatch`]): an idle pipeline must not hide a busy one's stall.
//!
//! A producer can also go quiet for good while the broker is fine: librdkafka 2.12
//! keeps a partition leaderless after a metadata update named leader -1 (a broker
//! fenced by its controller, e.g. after a long pause), and the records for it are
//! never delivered (confluentinc/librdkafka#5430). Records in flight with no
//! delivery and no refusal from the broker (only silence or timeouts) for
//! [`WEDGED_AFTER`] while the broker answers every probe is that state; it is
//! fatal, so that weir exits and a restart brings new clients. Nothing is lost:
//! what was not delivered is not committed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long records may wait for any acknowledgement before weir says so.
pub const STALL_AFTER: Duration = Duration::from_secs(5);

/// How long records may go without a delivery or a refusal, while the broker
/// answers probes, before the producer counts as wedged.
pub const WEDGED_AFTER: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
struct State {
    /// Pipelines and whether they hold an assignment.
    assigned: BTreeMap<String, bool>,
    /// The latest broker trouble, cleared by the next sign of a healthy broker.
    broker_problem: Option<(String, Instant)>,
    /// The watchdog's last verdict: the broker did not answer a probe.
    probe_problem: Option<String>,
    /// Topics weir may not produce to (or that are gone), with the broker's error.
    not_allowed: BTreeMap<String, String>,
    /// A client error nothing can recover from; weir must stop.
    fatal: Option<String>,
    /// Partitions restoring their state, by pipeline.
    restoring: BTreeMap<String, std::collections::BTreeSet<i32>>,
}

/// One pipeline's watch over its records in flight: when the broker last
/// acknowledged one of them, and when it last answered one at all (took or refused
/// it). Delivery callbacks stamp it; the pipeline's consumer thread checks it.
#[derive(Debug)]
pub struct StallWatch {
    pipeline: Box<str>,
    health: Arc<Health>,
    /// In ms since the health's epoch.
    last_ack_ms: AtomicU64,
    last_report_ms: AtomicU64,
}

impl StallWatch {
    /// The broker acknowledged one of the pipeline's records.
    pub fn acked(&self) {
        let now = self.health.now_ms();
        self.last_ack_ms.store(now, Ordering::Relaxed);
        self.last_report_ms.store(now, Ordering::Relaxed);
    }

    /// The broker refused one of the pipeline's records (not allowed, too large):
    /// the producer is alive, whatever becomes of the record. Timeouts are not such
    /// an answer.
    pub fn answered(&self) {
        self.last_report_ms
            .store(self.health.now_ms(), Ordering::Relaxed);
    }

    /// Reports broker trouble when `in_flight` of the pipeline's records have
    /// waited past [`STALL_AFTER`] without any acknowledgement, and a wedged
    /// producer (fatal) past [`WEDGED_AFTER`] without any answer while the broker
    /// answers probes. Call periodically.
    pub fn check(&self, in_flight: usize) {
        let health = &self.health;
        let now = health.now_ms();
        if in_flight == 0 {
            self.last_ack_ms.store(now, Ordering::Relaxed);
            self.last_report_ms.store(now, Ordering::Relaxed);
            return;
        }
        let since =
            |at: &AtomicU64| Duration::from_millis(now.saturating_sub(at.load(Ordering::Relaxed)));
        let silent = since(&self.last_ack_ms);
        if silent >= STALL_AFTER && !health.troubled.load(Ordering::SeqCst) {
            health.broker_trouble(format!(
                "no acknowledgement from the broker for {}s with {in_flight} record(s) of pipeline {} in flight",
                silent.as_secs(),
                self.pipeline
            ));
        }
        let unreported = since(&self.last_report_ms);
        if unreported >= WEDGED_AFTER && since(&health.probe_failed_ms) >= WEDGED_AFTER {
            health.fatal(format!(
                "the producer has delivered none of {in_flight} record(s) in flight of pipeline {} for {}s \
                 while the broker answers: librdkafka keeps a partition without a leader after \
                 the broker was fenced (confluentinc/librdkafka#5430); weir stops so that a \
                 restart gets new clients, and the records are processed again",
                self.pipeline,
                unreported.as_secs()
            ));
        }
    }
}

/// Shared readiness state.
#[derive(Debug)]
pub struct Health {
    state: Mutex<State>,
    /// Mirrors `state.broker_problem.is_some()` so the hot path need not lock.
    troubled: AtomicBool,
    /// Mirrors `!state.not_allowed.is_empty()`, likewise.
    forbidden: AtomicBool,
    /// When a probe of the broker last failed, in ms since `epoch` (0: never).
    probe_failed_ms: AtomicU64,
    epoch: Instant,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            state: Mutex::default(),
            troubled: AtomicBool::new(false),
            forbidden: AtomicBool::new(false),
            probe_failed_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A partition of `pipeline` starts or ends restoring its state.
    pub fn restoring(&self, pipeline: &str, partition: i32, restoring: bool) {
        let mut state = self.lock();
        let set = state.restoring.entry(pipeline.to_owned()).or_default();
        if restoring {
            set.insert(partition);
        } else {
            set.remove(&partition);
        }
    }

    pub fn pipeline_assigned(&self, pipeline: &str, assigned: bool) {
        self.lock().assigned.insert(pipeline.to_owned(), assigned);
    }

    /// A produce, commit or connection error. Logged once per change.
    pub fn broker_trouble(&self, problem: String) {
        let mut state = self.lock();
        if state
            .broker_problem
            .as_ref()
            .is_none_or(|(p, _)| *p != problem)
        {
            tracing::warn!(%problem, "broker trouble: records are kept and retried; weir is not ready");
        }
        state.broker_problem = Some((problem, Instant::now()));
        self.troubled.store(true, Ordering::SeqCst);
    }

    /// A successful delivery or commit. Cheap unless there was trouble.
    pub fn broker_ok(&self) {
        if self.troubled.swap(false, Ordering::SeqCst)
            && let Some((problem, since)) = self.lock().broker_problem.take()
        {
            tracing::info!(%problem, after = ?since.elapsed(), "broker answers again");
        }
    }

    /// The stall watch of one pipeline.
    pub fn stall_watch(self: &Arc<Self>, pipeline: &str) -> Arc<StallWatch> {
        let now = self.now_ms();
        Arc::new(StallWatch {
            pipeline: pipeline.into(),
            health: self.clone(),
            last_ack_ms: AtomicU64::new(now),
            last_report_ms: AtomicU64::new(now),
        })
    }

    /// The broker refused a record for `topic` because the principal may not write
    /// to it, or the topic is gone. Logged as an error once per topic.
    pub fn not_allowed(&self, topic: &str, error: &str) {
        let mut state = self.lock();
        if !state.not_allowed.contains_key(topic) {
            tracing::error!(
                topic,
                %error,
                "cannot produce to {topic}: grant weir's principal WRITE and DESCRIBE on topic {topic} \
                 (or create it); records are kept, nothing is committed past them, and weir resumes \
                 by itself once the broker takes them"
            );
        }
        state.not_allowed.insert(topic.to_owned(), error.to_owned());
        self.forbidden.store(true, Ordering::SeqCst);
    }

    /// A delivery to `topic` succeeded. Cheap unless the topic was not allowed.
    pub fn allowed(&self, topic: &str) {
        if !self.forbidden.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.lock();
        if state.not_allowed.remove(topic).is_some() {
            tracing::info!(topic, "the broker takes records for {topic} again");
        }
        self.forbidden
            .store(!state.not_allowed.is_empty(), Ordering::SeqCst);
    }

    /// A client error weir cannot recover from (e.g. a fatal producer error).
    pub fn fatal(&self, problem: String) {
        let mut state = self.lock();
        if state.fatal.is_none() {
            tracing::error!(%problem, "fatal Kafka client error: weir stops; uncommitted records are processed again after a restart");
            state.fatal = Some(problem);
        }
    }

    /// The fatal error, if one happened.
    pub fn fatal_error(&self) -> Option<String> {
        self.lock().fatal.clone()
    }

    /// The watchdog's probe of the broker: `Err` when it did not answer.
    pub fn probe_result(&self, result: Result<(), String>) {
        let mut state = self.lock();
        match result {
            Ok(()) => {
                if let Some(problem) = state.probe_problem.take() {
                    tracing::info!(%problem, "broker answers probes again");
                }
            }
            Err(problem) => {
                self.probe_failed_ms.store(self.now_ms(), Ordering::Relaxed);
                if state.probe_problem.is_none() {
                    tracing::warn!(%problem, "broker trouble: the broker does not answer; weir is not ready");
                }
                state.probe_problem = Some(problem);
            }
        }
    }

    /// `Ok` when ready, else the reason.
    pub fn readiness(&self) -> Result<(), String> {
        let state = self.lock();
        if let Some(problem) = &state.fatal {
            return Err(format!("fatal: {problem}"));
        }
        if let Some((topic, error)) = state.not_allowed.iter().next() {
            return Err(format!(
                "not allowed to produce to topic {topic} ({error}): grant weir's principal WRITE and DESCRIBE on topic {topic}"
            ));
        }
        if let Some(problem) = &state.probe_problem {
            return Err(format!("broker trouble: {problem}"));
        }
        if let Some((problem, _)) = &state.broker_problem {
            return Err(format!("broker trouble: {problem}"));
        }
        let waiting: Vec<_> = state
            .assigned
            .iter()
            .filter(|(_, assigned)| !**assigned)
            .map(|(p, _)| p.as_str())
            .collect();
        if !waiting.is_empty() {
            return Err(format!(
                "waiting for a partition assignment: {}",
                waiting.join(", ")
            ));
        }
        let restoring: Vec<String> = state
            .restoring
            .iter()
            .filter(|(_, partitions)| !partitions.is_empty())
            .map(|(p, partitions)| format!("pipeline {p} partitions {partitions:?}"))
            .collect();
        if !restoring.is_empty() {
            return Err(format!(
                "restoring state from the changelogs: {}",
                restoring.join("; ")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_assigned_and_broker_ok() {
        let health = Health::default();
        health.pipeline_assigned("a", false);
        assert!(health.readiness().unwrap_err().contains("a"));
        health.pipeline_assigned("a", true);
        assert!(health.readiness().is_ok());
        health.broker_trouble("timed out".into());
        assert!(health.readiness().unwrap_err().contains("timed out"));
        health.broker_ok();
        assert!(health.readiness().is_ok());
    }

    #[test]
    fn a_topic_not_allowed_names_the_acl_until_a_delivery_succeeds() {
        let health = Health::default();
        health.allowed("out");
        assert!(health.readiness().is_ok());
        health.not_allowed("out", "Broker: Topic authorization failed");
        let reason = health.readiness().unwrap_err();
        assert!(
            reason.contains("topic out") && reason.contains("WRITE"),
            "{reason}"
        );
        health.allowed("other");
        assert!(health.readiness().is_err());
        health.allowed("out");
        assert!(health.readiness().is_ok());
    }

    #[test]
    fn an_unanswered_probe_is_trouble_until_one_is_answered() {
        let health = Health::default();
        health.probe_result(Err("no answer within 2s".into()));
        assert!(health.readiness().unwrap_err().contains("no answer"));
        health.broker_ok();
        assert!(
            health.readiness().is_err(),
            "a delivery does not clear the probe's verdict"
        );
        health.probe_result(Ok(()));
        assert!(health.readiness().is_ok());
    }

    /// A health whose clock started `ago`, and a watch that has seen nothing since.
    fn started(ago: Duration) -> (Arc<Health>, Arc<StallWatch>) {
        let health = Arc::new(Health {
            epoch: Instant::now() - ago,
            ..Health::default()
        });
        let watch = health.stall_watch("p");
        watch.last_ack_ms.store(0, Ordering::Relaxed);
        watch.last_report_ms.store(0, Ordering::Relaxed);
        (health, watch)
    }

    #[test]
    fn silence_with_records_in_flight_is_trouble() {
        let (health, watch) = started(STALL_AFTER * 2);
        watch.check(0);
        assert!(health.readiness().is_ok());
        watch.last_ack_ms.store(0, Ordering::Relaxed);
        watch.check(3);
        let reason = health.readiness().unwrap_err();
        assert!(
            reason.contains("3 record(s) of pipeline p in flight"),
            "{reason}"
        );
        health.broker_ok();
        assert!(health.readiness().is_ok());
    }

    #[test]
    fn an_idle_pipeline_does_not_hide_a_busy_ones_stall() {
        let (health, busy) = started(STALL_AFTER * 2);
        let idle = health.stall_watch("idle");
        idle.check(0);
        busy.check(2);
        assert!(
            health
                .readiness()
                .unwrap_err()
                .contains("pipeline p in flight")
        );
    }

    #[test]
    fn a_producer_silent_for_minutes_while_the_broker_answers_is_fatal() {
        let (health, watch) = started(WEDGED_AFTER * 2);
        watch.check(3);
        let fatal = health.fatal_error().expect("fatal");
        assert!(fatal.contains("none of 3 record(s) in flight"), "{fatal}");
        assert!(fatal.contains("librdkafka#5430"), "{fatal}");
        assert!(health.readiness().unwrap_err().starts_with("fatal"));
    }

    #[test]
    fn an_outage_or_failed_deliveries_are_not_a_wedged_producer() {
        // The broker did not answer a probe lately: an outage, not a wedge.
        let (health, watch) = started(WEDGED_AFTER * 2);
        health.probe_result(Err("no metadata answer".into()));
        watch.check(3);
        assert_eq!(health.fatal_error(), None);
        // Refusals are answers: the producer is alive (e.g. a missing ACL).
        let (health, watch) = started(WEDGED_AFTER * 2);
        watch.answered();
        watch.check(3);
        assert_eq!(health.fatal_error(), None);
        // Nothing in flight: nothing to report.
        let (health, watch) = started(WEDGED_AFTER * 2);
        watch.check(0);
        watch.check(3);
        assert_eq!(health.fatal_error(), None);
    }
}
