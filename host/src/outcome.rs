//! What can become of a record, by name: the ways a plugin call fails
//! ([`FailureKind`]) and the reasons a record is dead-lettered ([`DlqReason`]).
//!
//! A leaf module: it imports nothing of weir's. Every metric label, `weir.error.reason`
//! header, log field and `weir test` line that names an outcome takes the name from
//! here, so a reason is spelled in one place (docs/reference.md lists them).

/// How a plugin call failed: the `outcome` label of `weir_plugin_calls_total` and
/// the `error` of a `weir test` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The plugin rejected the event (`failure::invalid`).
    Invalid = 0,
    /// The plugin asked to be called again later (`failure::transient`).
    Transient = 1,
    /// The guest trapped (a panic, an uncaught exception, an error that is not a failure).
    Trap = 2,
    /// The call ran past its deadline.
    Timeout = 3,
    /// The guest tried to grow its memory past the cap.
    MemoryLimit = 4,
    /// An output broke a host rule (too large, an undeclared `to`).
    BadOutput = 5,
    /// The host could not make a new instance of the plugin (after a fault, or a
    /// worn one): not the record's fault, so it is retried until an instance
    /// starts, never dead-lettered.
    Unavailable = 6,
    /// A stateful plugin wrote past one of its slot's limits (`limits.state-value`,
    /// `limits.state-entries`, `limits.timers`).
    StateLimit = 7,
}

impl FailureKind {
    /// Every kind, in the order of their discriminants.
    pub const ALL: [FailureKind; 8] = [
        FailureKind::Invalid,
        FailureKind::Transient,
        FailureKind::Trap,
        FailureKind::Timeout,
        FailureKind::MemoryLimit,
        FailureKind::BadOutput,
        FailureKind::Unavailable,
        FailureKind::StateLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Invalid => "invalid",
            FailureKind::Transient => "transient",
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::MemoryLimit => "memory-limit",
            FailureKind::BadOutput => "bad-output",
            FailureKind::Unavailable => "unavailable",
            FailureKind::StateLimit => "state-limit",
        }
    }

    /// Worth calling again: the same input may succeed next time.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureKind::Transient
                | FailureKind::Trap
                | FailureKind::Timeout
                | FailureKind::MemoryLimit
                | FailureKind::Unavailable
        )
    }

    /// Never the record's fault: retried without limit, never dead-lettered.
    pub fn is_hosts(self) -> bool {
        self == FailureKind::Unavailable
    }
}

/// Why a record was dead-lettered: the `weir.error.reason` header and the `reason`
/// label of `weir_dlq_records_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DlqReason {
    Invalid,
    Trap,
    Timeout,
    MemoryLimit,
    BadOutput,
    /// A `transient` failure on every allowed attempt.
    RetriesExhausted,
    /// The broker (or weir's own Kafka client) refused one of the record's outputs
    /// for good, e.g. over the topic's `max.message.bytes`.
    ProduceRejected,
    /// A stateful plugin wrote past one of its slot's state or timer limits.
    StateLimit,
}

impl DlqReason {
    /// Every reason, in the order metrics declare them.
    pub const ALL: [DlqReason; 8] = [
        DlqReason::Invalid,
        DlqReason::Trap,
        DlqReason::Timeout,
        DlqReason::MemoryLimit,
        DlqReason::BadOutput,
        DlqReason::RetriesExhausted,
        DlqReason::ProduceRejected,
        DlqReason::StateLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DlqReason::Invalid => "invalid",
            DlqReason::Trap => "trap",
            DlqReason::Timeout => "timeout",
            DlqReason::MemoryLimit => "memory-limit",
            DlqReason::BadOutput => "bad-output",
            DlqReason::RetriesExhausted => "retries-exhausted",
            DlqReason::ProduceRejected => "produce-rejected",
            DlqReason::StateLimit => "state-limit",
        }
    }

    /// The reason named `text`, as a DLQ header or a `--reason` flag spells it.
    pub fn parse(text: &str) -> Option<DlqReason> {
        DlqReason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// The reason for a failure that is not retried any more. A `transient` failure
    /// that ran out of attempts is `retries-exhausted`; the host's own trouble
    /// ([`FailureKind::is_hosts`]) has none.
    pub fn of(kind: FailureKind) -> Option<DlqReason> {
        Some(match kind {
            FailureKind::Invalid => DlqReason::Invalid,
            FailureKind::Transient => DlqReason::RetriesExhausted,
            FailureKind::Trap => DlqReason::Trap,
            FailureKind::Timeout => DlqReason::Timeout,
            FailureKind::MemoryLimit => DlqReason::MemoryLimit,
            FailureKind::BadOutput => DlqReason::BadOutput,
            FailureKind::StateLimit => DlqReason::StateLimit,
            FailureKind::Unavailable => return None,
        })
    }

    /// An expected, per-record outcome (bad input), logged at debug rather than as a
    /// warning so that a flood of them does not flood the log.
    pub fn is_expected(self) -> bool {
        self == DlqReason::Invalid
    }
}

impl std::fmt::Display for DlqReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_back_from_their_names() {
        for reason in DlqReason::ALL {
            assert_eq!(DlqReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(DlqReason::parse("transient"), None);
    }

    #[test]
    fn kinds_are_in_discriminant_order() {
        for (i, kind) in FailureKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i);
        }
    }

    #[test]
    fn only_transient_failures_turn_into_retries_exhausted() {
        assert_eq!(
            DlqReason::of(FailureKind::Transient),
            Some(DlqReason::RetriesExhausted)
        );
        assert_eq!(DlqReason::of(FailureKind::Unavailable), None);
        for kind in FailureKind::ALL {
            if let Some(reason) = DlqReason::of(kind)
                && kind != FailureKind::Transient
            {
                assert_eq!(reason.as_str(), kind.as_str());
            }
        }
    }
}
