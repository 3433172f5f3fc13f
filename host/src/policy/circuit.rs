//! The circuit breaker of SPEC §4: when the failure ratio over the last `window`
//! records passes `failure-ratio`, the circuit opens for `cooldown`; then one probe
//! record goes through, and its success closes the circuit (its failure reopens it).
//!
//! A pure state machine: the caller passes the time and acts on the answer (pausing
//! partitions, waiting). Outcomes that arrive while the circuit is open (records
//! that were already being handled) are ignored.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::CircuitConfig;

/// May a record be handled now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Yes.
    Go,
    /// Yes, as the single half-open probe: report its outcome with `record`.
    Probe,
    /// No; ask again after this long.
    Wait(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
pub struct CircuitBreaker {
    failure_ratio: f64,
    window: usize,
    cooldown: Duration,
    /// Outcomes of the last `window` records while closed; `true` is a failure.
    outcomes: VecDeque<bool>,
    failures: usize,
    state: State,
}

/// How long a non-probe record waits while a probe is out.
const PROBE_POLL: Duration = Duration::from_millis(50);

impl CircuitBreaker {
    pub fn new(config: &CircuitConfig) -> CircuitBreaker {
        CircuitBreaker {
            failure_ratio: config.failure_ratio,
            window: config.window.max(1) as usize,
            cooldown: config.cooldown.0,
            outcomes: VecDeque::new(),
            failures: 0,
            state: State::Closed,
        }
    }

    /// Takes new settings (a config reload); the window starts afresh.
    pub fn reconfigure(&mut self, config: &CircuitConfig) {
        self.failure_ratio = config.failure_ratio;
        self.window = config.window.max(1) as usize;
        self.cooldown = config.cooldown.0;
        self.outcomes.clear();
        self.failures = 0;
    }

    /// Whether consumption should be paused (open, or half-open).
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed)
    }

    /// Whether consumption should stay paused: open and still cooling down. Once
    /// the cooldown has passed, records flow again so that one can be the probe.
    pub fn blocks_consumption(&self, now: Instant) -> bool {
        matches!(self.state, State::Open { until } if now < until)
    }

    /// The probe was abandoned (its runner stopped): let another record probe.
    pub fn abandon_probe(&mut self) {
        if self.state == (State::HalfOpen { probing: true }) {
            self.state = State::HalfOpen { probing: false };
        }
    }

    pub fn try_acquire(&mut self, now: Instant) -> Permit {
        match self.state {
            State::Closed => Permit::Go,
            State::Open { until } if now < until => Permit::Wait(until - now),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                Permit::Probe
            }
            State::HalfOpen { probing: true } => Permit::Wait(PROBE_POLL),
        }
    }

    /// Records a handled record's outcome. Returns true when this opened the circuit.
    pub fn record(&mut self, failed: bool, probe: bool, now: Instant) -> bool {
        match self.state {
            State::HalfOpen { .. } if probe => {
                if failed {
                    self.state = State::Open {
                        until: now + self.cooldown,
                    };
                    return true;
                }
                self.state = State::Closed;
                self.outcomes.clear();
                self.failures = 0;
                false
            }
            State::Closed => {
                self.outcomes.push_back(failed);
                self.failures += usize::from(failed);
                if self.outcomes.len() > self.window && self.outcomes.pop_front() == Some(true) {
                    self.failures -= 1;
                }
                let full = self.outcomes.len() == self.window;
                if full && self.failures as f64 / self.window as f64 > self.failure_ratio {
                    self.state = State::Open {
                        until: now + self.cooldown,
                    };
                    self.outcomes.clear();
                    self.failures = 0;
                    return true;
                }
                false
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn breaker(ratio: f64, window: u32) -> CircuitBreaker {
        CircuitBreaker::new(&CircuitConfig {
            failure_ratio: ratio,
            window,
            cooldown: HumanDuration(Duration::from_secs(10)),
        })
    }

    #[test]
    fn opens_only_after_a_full_window_over_the_ratio() {
        let mut b = breaker(0.5, 4);
        let t = Instant::now();
        assert!(!b.record(true, false, t));
        assert!(!b.record(true, false, t));
        assert!(!b.record(false, false, t));
        assert_eq!(b.try_acquire(t), Permit::Go);
        assert!(b.record(true, false, t), "3 of 4 failed");
        assert!(b.is_open());
        assert_eq!(
            b.try_acquire(t + Duration::from_secs(4)),
            Permit::Wait(Duration::from_secs(6))
        );
    }

    #[test]
    fn the_window_slides() {
        let mut b = breaker(0.5, 4);
        let t = Instant::now();
        for failed in [true, true, false, false, false, false, true, true] {
            assert!(
                !b.record(failed, false, t),
                "never more than 2 of the last 4"
            );
        }
    }

    #[test]
    fn half_open_lets_one_probe_through() {
        let mut b = breaker(0.5, 2);
        let t = Instant::now();
        b.record(true, false, t);
        assert!(b.record(true, false, t));
        let later = t + Duration::from_secs(10);
        assert_eq!(b.try_acquire(later), Permit::Probe);
        assert_eq!(b.try_acquire(later), Permit::Wait(PROBE_POLL));
        assert!(b.record(true, true, later), "a failed probe reopens");
        let again = later + Duration::from_secs(10);
        assert_eq!(b.try_acquire(again), Permit::Probe);
        assert!(!b.record(false, true, again));
        assert!(!b.is_open());
        assert_eq!(b.try_acquire(again), Permit::Go);
    }

    #[test]
    fn outcomes_while_open_are_ignored() {
        let mut b = breaker(0.5, 2);
        let t = Instant::now();
        b.record(true, false, t);
        b.record(true, false, t);
        assert!(!b.record(false, false, t));
        assert!(b.is_open());
    }
}
