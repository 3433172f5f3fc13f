//! The circuit breaker (docs/reference.md §1.7, `circuit`): when the failure ratio over the last `window`
//! records passes `failure-ratio`, the circuit opens for `cooldown`; then one probe
//! record goes through, and its success closes the circuit (its failure reopens it).
//!
//! Two parts, both taking the time as an argument:
//! - [`CircuitWindow`]: the settings and the sliding window of outcomes. It lives in
//!   the pipeline snapshot (a reload that changes the settings starts a fresh one).
//!   Recording an outcome while closed takes no lock: partitions record in parallel.
//! - [`CircuitBreaker`]: the open / half-open state, which outlives reloads. It is
//!   locked only to open, to probe and to close.
//!
//! Outcomes that arrive while the circuit is open (records that were already being
//! handled) are ignored.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::CircuitConfig;

/// May a record be handled now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Yes.
    Go,
    /// Yes, as the single half-open probe: hand it back to `record`.
    Probe,
    /// No; ask again after this long.
    Wait(Duration),
}

/// How a handled record ended, for the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its outputs are on their way.
    Delivered,
    /// It went to a dead-letter topic.
    DeadLettered,
}

/// What recording an outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// Too many failures (or a failed probe): consumption pauses for `cooldown`.
    Opened,
    /// The probe succeeded.
    Closed,
}

/// The settings and the last `window` outcomes recorded while closed.
#[derive(Debug)]
pub struct CircuitWindow {
    pub settings: CircuitConfig,
    /// One flag per record, `true` for a failure, written round-robin.
    slots: Box<[AtomicBool]>,
    /// Outcomes recorded since the window (re)started.
    recorded: AtomicU64,
    /// Failures in `slots`. Racing writers may leave it off by one for a moment
    /// (even below zero), never for long.
    failures: AtomicI64,
}

impl CircuitWindow {
    pub fn new(settings: CircuitConfig) -> CircuitWindow {
        let size = settings.window.max(1) as usize;
        CircuitWindow {
            settings,
            slots: (0..size).map(|_| AtomicBool::new(false)).collect(),
            recorded: AtomicU64::new(0),
            failures: AtomicI64::new(0),
        }
    }

    /// Adds an outcome; returns true when the window is full and over the ratio.
    fn push(&self, failed: bool) -> bool {
        let i = self.recorded.fetch_add(1, Ordering::Relaxed);
        let before =
            self.slots[(i % self.slots.len() as u64) as usize].swap(failed, Ordering::Relaxed);
        let failures = match (before, failed) {
            (false, true) => self.failures.fetch_add(1, Ordering::Relaxed) + 1,
            (true, false) => self.failures.fetch_sub(1, Ordering::Relaxed) - 1,
            _ => self.failures.load(Ordering::Relaxed),
        };
        let full = i + 1 >= self.slots.len() as u64;
        failed
            && full
            && failures.max(0) as f64 / self.slots.len() as f64 > self.settings.failure_ratio
    }

    fn clear(&self) {
        for slot in &self.slots {
            slot.store(false, Ordering::Relaxed);
        }
        self.recorded.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The open / half-open state of one pipeline.
#[derive(Debug)]
pub struct CircuitBreaker {
    /// Mirrors `state == Closed`, so that the common case takes no lock.
    closed: AtomicBool,
    state: Mutex<State>,
}

impl Default for CircuitBreaker {
    fn default() -> CircuitBreaker {
        CircuitBreaker {
            closed: AtomicBool::new(true),
            state: Mutex::new(State::Closed),
        }
    }
}

/// A permission from [`CircuitBreaker::admit`].
pub struct Admission<'b> {
    breaker: &'b CircuitBreaker,
    permit: Option<Permit>,
}

impl Admission<'_> {
    /// Records how the record went.
    pub fn record(mut self, outcome: Outcome, now: Instant, window: &CircuitWindow) -> Change {
        match self.permit.take() {
            Some(permit) => self.breaker.record(outcome, permit, now, window),
            None => Change::None,
        }
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.breaker.abandon(permit);
        }
    }
}

/// How long a non-probe record waits while a probe is out.
const PROBE_POLL: Duration = Duration::from_millis(50);

impl CircuitBreaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, state: &mut State, to: State) {
        *state = to;
        self.closed.store(to == State::Closed, Ordering::SeqCst);
    }

    /// Whether the circuit is open or half-open.
    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::SeqCst)
    }

    /// Whether consumption should stay paused: open and still cooling down. Once
    /// the cooldown has passed, records flow again so that one can be the probe.
    pub fn blocks_consumption(&self, now: Instant) -> bool {
        !self.closed.load(Ordering::SeqCst)
            && matches!(*self.lock(), State::Open { until } if now < until)
    }

    pub fn try_acquire(&self, now: Instant) -> Permit {
        if self.closed.load(Ordering::Acquire) {
            return Permit::Go;
        }
        let mut state = self.lock();
        match *state {
            State::Closed => Permit::Go,
            State::Open { until } if now < until => Permit::Wait(until - now),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                self.set(&mut state, State::HalfOpen { probing: true });
                Permit::Probe
            }
            State::HalfOpen { probing: true } => Permit::Wait(PROBE_POLL),
        }
    }

    /// The circuit's permission for one record, or how long to wait for it. The
    /// permission goes back on every path: recorded with an outcome, or abandoned
    /// when dropped (a stop, or a panic unwinding its holder), so a half-open probe
    /// is never held forever.
    pub fn admit(&self, now: Instant) -> Result<Admission<'_>, Duration> {
        match self.try_acquire(now) {
            Permit::Wait(wait) => Err(wait),
            permit => Ok(Admission {
                breaker: self,
                permit: Some(permit),
            }),
        }
    }

    /// The probe was abandoned (its runner stopped): let another record probe.
    pub fn abandon(&self, permit: Permit) {
        let mut state = self.lock();
        if permit == Permit::Probe && *state == (State::HalfOpen { probing: true }) {
            self.set(&mut state, State::HalfOpen { probing: false });
        }
    }

    /// Records the outcome of a record handled under `permit`.
    pub fn record(
        &self,
        outcome: Outcome,
        permit: Permit,
        now: Instant,
        window: &CircuitWindow,
    ) -> Change {
        let failed = outcome == Outcome::DeadLettered;
        if permit != Permit::Probe {
            if !self.closed.load(Ordering::Acquire) || !window.push(failed) {
                return Change::None;
            }
            let mut state = self.lock();
            if *state != State::Closed {
                return Change::None;
            }
            window.clear();
            self.set(
                &mut state,
                State::Open {
                    until: now + window.settings.cooldown.0,
                },
            );
            return Change::Opened;
        }
        let mut state = self.lock();
        if !matches!(*state, State::HalfOpen { .. }) {
            return Change::None;
        }
        if failed {
            self.set(
                &mut state,
                State::Open {
                    until: now + window.settings.cooldown.0,
                },
            );
            return Change::Opened;
        }
        window.clear();
        self.set(&mut state, State::Closed);
        Change::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;
    use Outcome::{DeadLettered as Fail, Delivered as Ok};

    fn window(ratio: f64, size: u32) -> CircuitWindow {
        CircuitWindow::new(CircuitConfig {
            failure_ratio: ratio,
            window: size,
            cooldown: HumanDuration(Duration::from_secs(10)),
        })
    }

    #[test]
    fn opens_only_after_a_full_window_over_the_ratio() {
        let (b, w) = (CircuitBreaker::default(), window(0.5, 4));
        let t = Instant::now();
        assert_eq!(b.record(Fail, Permit::Go, t, &w), Change::None);
        assert_eq!(b.record(Fail, Permit::Go, t, &w), Change::None);
        assert_eq!(b.record(Ok, Permit::Go, t, &w), Change::None);
        assert_eq!(b.try_acquire(t), Permit::Go);
        assert_eq!(
            b.record(Fail, Permit::Go, t, &w),
            Change::Opened,
            "3 of 4 failed"
        );
        assert!(b.is_open());
        assert!(b.blocks_consumption(t));
        assert_eq!(
            b.try_acquire(t + Duration::from_secs(4)),
            Permit::Wait(Duration::from_secs(6))
        );
    }

    #[test]
    fn the_window_slides() {
        let (b, w) = (CircuitBreaker::default(), window(0.5, 4));
        let t = Instant::now();
        for outcome in [Fail, Fail, Ok, Ok, Ok, Ok, Fail, Fail] {
            assert_eq!(
                b.record(outcome, Permit::Go, t, &w),
                Change::None,
                "never more than 2 of the last 4"
            );
        }
    }

    #[test]
    fn half_open_lets_one_probe_through() {
        let (b, w) = (CircuitBreaker::default(), window(0.5, 2));
        let t = Instant::now();
        b.record(Fail, Permit::Go, t, &w);
        assert_eq!(b.record(Fail, Permit::Go, t, &w), Change::Opened);
        let later = t + Duration::from_secs(10);
        assert!(!b.blocks_consumption(later));
        assert_eq!(b.try_acquire(later), Permit::Probe);
        assert_eq!(b.try_acquire(later), Permit::Wait(PROBE_POLL));
        assert_eq!(
            b.record(Fail, Permit::Probe, later, &w),
            Change::Opened,
            "a failed probe reopens"
        );
        let again = later + Duration::from_secs(10);
        assert_eq!(b.try_acquire(again), Permit::Probe);
        assert_eq!(b.record(Ok, Permit::Probe, again, &w), Change::Closed);
        assert!(!b.is_open());
        assert_eq!(b.try_acquire(again), Permit::Go);
        assert_eq!(
            b.record(Fail, Permit::Go, again, &w),
            Change::None,
            "the window started afresh"
        );
    }

    #[test]
    fn an_abandoned_probe_lets_another_record_probe() {
        let (b, w) = (CircuitBreaker::default(), window(0.5, 1));
        let t = Instant::now();
        assert_eq!(b.record(Fail, Permit::Go, t, &w), Change::Opened);
        let later = t + Duration::from_secs(11);
        assert_eq!(b.try_acquire(later), Permit::Probe);
        b.abandon(Permit::Probe);
        assert_eq!(b.try_acquire(later), Permit::Probe);
    }

    #[test]
    fn a_probe_goes_back_when_its_holder_panics() {
        let (b, w) = (CircuitBreaker::default(), window(0.5, 1));
        let t = Instant::now();
        assert_eq!(b.record(Fail, Permit::Go, t, &w), Change::Opened);
        let later = t + Duration::from_secs(11);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _probe = b.admit(later).expect("the probe");
            panic!("a bug while handling the probe record");
        }));
        assert!(panicked.is_err());
        let probe = b.admit(later).expect("another record may probe");
        assert_eq!(probe.record(Ok, later, &w), Change::Closed);
        assert!(!b.is_open());
    }

    #[test]
    fn outcomes_while_open_are_ignored() {
        let (b, w) = (CircuitBreaker::default(), window(0.5, 2));
        let t = Instant::now();
        b.record(Fail, Permit::Go, t, &w);
        b.record(Fail, Permit::Go, t, &w);
        assert_eq!(b.record(Ok, Permit::Go, t, &w), Change::None);
        assert!(b.is_open());
    }

    #[test]
    fn partitions_record_in_parallel() {
        let b = std::sync::Arc::new(CircuitBreaker::default());
        let w = std::sync::Arc::new(window(0.5, 1000));
        let t = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (b, w) = (b.clone(), w.clone());
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        let outcome = if i % 10 == 0 { Fail } else { Ok };
                        assert_eq!(b.record(outcome, Permit::Go, t, &w), Change::None);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(!b.is_open(), "10% failures never open a 50% circuit");
    }
}
