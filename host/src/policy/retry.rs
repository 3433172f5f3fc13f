//! Retry decisions and exponential backoff with full jitter.

use std::time::Duration;

use crate::config::RetryConfig;
use crate::outcome::{DlqReason, FailureKind};

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this delay.
    Retry(Duration),
    /// Give up: dead-letter the record with this `weir.error.reason`.
    DeadLetter(DlqReason),
}

/// Decides after attempt number `attempt` (1-based) failed with `kind`. `jitter` is a
/// uniform sample in [0, 1).
pub fn decide(kind: FailureKind, attempt: u32, retry: &RetryConfig, jitter: f64) -> Decision {
    let reason = DlqReason::of(kind);
    if let Some(reason) = reason
        && (!kind.is_retryable() || attempt >= retry.max_attempts)
    {
        return Decision::DeadLetter(reason);
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
            Decision::DeadLetter(DlqReason::Invalid)
        );
        assert_eq!(
            decide(FailureKind::BadOutput, 1, &retry(5), 0.5),
            Decision::DeadLetter(DlqReason::BadOutput)
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
            Decision::DeadLetter(DlqReason::RetriesExhausted)
        );
        assert_eq!(
            decide(FailureKind::Timeout, 5, &retry(5), 0.5),
            Decision::DeadLetter(DlqReason::Timeout)
        );
        assert_eq!(
            decide(FailureKind::Trap, 1, &retry(1), 0.5),
            Decision::DeadLetter(DlqReason::Trap)
        );
        assert_eq!(
            decide(FailureKind::MemoryLimit, 2, &retry(2), 0.5),
            Decision::DeadLetter(DlqReason::MemoryLimit)
        );
        // A plugin the host cannot restart is not the record's fault.
        assert!(matches!(
            decide(FailureKind::Unavailable, 50, &retry(2), 0.5),
            Decision::Retry(_)
        ));
    }
}
