//! Retry decisions and exponential backoff with full jitter.

use std::time::Duration;

use crate::config::RetryConfig;
use crate::plugin::FailureKind;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this delay.
    Retry(Duration),
    /// Give up: dead-letter the record with this `weir.error.reason`.
    DeadLetter(&'static str),
}

/// Decides after attempt number `attempt` (1-based) failed with `kind`. `jitter` is a
/// uniform sample in [0, 1).
pub fn decide(kind: FailureKind, attempt: u32, retry: &RetryConfig, jitter: f64) -> Decision {
    let retryable = matches!(
        kind,
        FailureKind::Transient
            | FailureKind::Trap
            | FailureKind::Timeout
            | FailureKind::MemoryLimit
    );
    if !retryable {
        return Decision::DeadLetter(kind.as_str());
    }
    if attempt >= retry.max_attempts {
        return Decision::DeadLetter(match kind {
            FailureKind::Transient => "retries-exhausted",
            other => other.as_str(),
        });
    }
    Decision::Retry(backoff(
        attempt,
        retry.initial_backoff.0,
        retry.max_backoff.0,
        jitter,
    ))
}

/// Full-jitter backoff after attempt `attempt` (1-based): a uniform delay in
/// `[0, min(max, initial * 2^(attempt-1)))`.
pub fn backoff(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(32);
    let cap = initial.saturating_mul(1u32 << exp.min(31)).min(max);
    cap.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn retry(max_attempts: u32) -> RetryConfig {
        RetryConfig {
            max_attempts,
            initial_backoff: HumanDuration(Duration::from_millis(100)),
            max_backoff: HumanDuration(Duration::from_secs(1)),
        }
    }

    #[test]
    fn backoff_grows_then_caps() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff(1, i, m, 0.999_999).as_millis(), 99);
        assert_eq!(backoff(2, i, m, 0.5), Duration::from_millis(100));
        assert_eq!(backoff(3, i, m, 0.5), Duration::from_millis(200));
        assert_eq!(backoff(10, i, m, 0.5), Duration::from_millis(500));
        assert_eq!(backoff(200, i, m, 1.0), m);
        assert_eq!(backoff(3, i, m, 0.0), Duration::ZERO);
    }

    #[test]
    fn invalid_and_bad_output_go_straight_to_the_dlq() {
        assert_eq!(
            decide(FailureKind::Invalid, 1, &retry(5), 0.5),
            Decision::DeadLetter("invalid")
        );
        assert_eq!(
            decide(FailureKind::BadOutput, 1, &retry(5), 0.5),
            Decision::DeadLetter("bad-output")
        );
    }

    #[test]
    fn retryable_failures_retry_until_max_attempts() {
        assert!(matches!(
            decide(FailureKind::Transient, 4, &retry(5), 0.5),
            Decision::Retry(_)
        ));
        assert_eq!(
            decide(FailureKind::Transient, 5, &retry(5), 0.5),
            Decision::DeadLetter("retries-exhausted")
        );
        assert_eq!(
            decide(FailureKind::Timeout, 5, &retry(5), 0.5),
            Decision::DeadLetter("timeout")
        );
        assert_eq!(
            decide(FailureKind::Trap, 1, &retry(1), 0.5),
            Decision::DeadLetter("trap")
        );
        assert_eq!(
            decide(FailureKind::MemoryLimit, 2, &retry(2), 0.5),
            Decision::DeadLetter("memory-limit")
        );
    }
}
