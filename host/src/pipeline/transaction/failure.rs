//! What a failed transactional call means, as one pure function of what
//! librdkafka says of the error ([`ErrorFacts`]): call again, abort and rewind,
//! rejoin the group (another member owns the partitions), or replace the producer
//! (fenced or failed for good).

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What librdkafka says of an error of a transactional call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErrorFacts {
    /// A transaction error (`KafkaError::Transaction`); anything else is not
    /// something a transaction can recover from.
    pub transactional: bool,
    /// The call timed out waiting for outstanding messages (`KafkaError::Flush`).
    pub flush: bool,
    pub code: Option<RDKafkaErrorCode>,
    pub fatal: bool,
    pub retriable: bool,
    pub requires_abort: bool,
}

impl ErrorFacts {
    pub fn of(error: &KafkaError) -> ErrorFacts {
        match error {
            KafkaError::Transaction(e) => ErrorFacts {
                transactional: true,
                code: Some(e.code()),
                fatal: e.is_fatal(),
                retriable: e.is_retriable(),
                requires_abort: e.txn_requires_abort(),
                ..ErrorFacts::default()
            },
            KafkaError::Flush(code) => ErrorFacts {
                flush: true,
                code: Some(*code),
                ..ErrorFacts::default()
            },
            other => ErrorFacts {
                code: other.rdkafka_error_code(),
                ..ErrorFacts::default()
            },
        }
    }
}

/// What to do about a failed transactional call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnFailure {
    /// Make the same call again (a commit that is only slow).
    Retry,
    /// The producer is fenced or failed for good: it writes nothing more; make a
    /// new one, drop the work and rejoin the group.
    Replace,
    /// Another member owns the partitions now: abort and rejoin the group.
    Rejoin,
    /// Abort the transaction and process its records again.
    Abort,
}

/// Classifies a failed call; `may_retry`: the call may be made again (a commit,
/// within its few retries).
pub fn classify(facts: ErrorFacts, may_retry: bool) -> TxnFailure {
    let retriable = facts.flush
        || (facts.transactional && facts.retriable && !facts.fatal && !facts.requires_abort);
    if may_retry && retriable {
        return TxnFailure::Retry;
    }
    if !facts.transactional || facts.fatal || (!facts.requires_abort && !facts.retriable) {
        return TxnFailure::Replace;
    }
    if matches!(
        facts.code,
        Some(
            RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::FencedInstanceId
                | RDKafkaErrorCode::RebalanceInProgress
        )
    ) {
        return TxnFailure::Rejoin;
    }
    TxnFailure::Abort
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(code: RDKafkaErrorCode) -> ErrorFacts {
        ErrorFacts {
            transactional: true,
            code: Some(code),
            ..ErrorFacts::default()
        }
    }

    #[test]
    fn a_slow_commit_is_tried_again_while_it_may_be() {
        let slow = ErrorFacts {
            retriable: true,
            ..txn(RDKafkaErrorCode::RequestTimedOut)
        };
        assert_eq!(classify(slow, true), TxnFailure::Retry);
        assert_eq!(classify(slow, false), TxnFailure::Abort);
        let flush = ErrorFacts {
            flush: true,
            ..ErrorFacts::default()
        };
        assert_eq!(classify(flush, true), TxnFailure::Retry);
        // Still waiting after its retries: the producer is replaced.
        assert_eq!(classify(flush, false), TxnFailure::Replace);
    }

    #[test]
    fn a_fatal_or_unrecoverable_error_replaces_the_producer() {
        let fenced = ErrorFacts {
            fatal: true,
            ..txn(RDKafkaErrorCode::ProducerFenced)
        };
        assert_eq!(classify(fenced, true), TxnFailure::Replace);
        // Neither abortable nor retriable: nothing else can be done with it.
        assert_eq!(
            classify(txn(RDKafkaErrorCode::InvalidTransactionalState), false),
            TxnFailure::Replace
        );
        // Not a transaction error at all.
        assert_eq!(classify(ErrorFacts::default(), false), TxnFailure::Replace);
    }

    #[test]
    fn a_lost_generation_rejoins_and_anything_abortable_aborts() {
        let generation = ErrorFacts {
            requires_abort: true,
            ..txn(RDKafkaErrorCode::IllegalGeneration)
        };
        assert_eq!(classify(generation, true), TxnFailure::Rejoin);
        let abortable = ErrorFacts {
            requires_abort: true,
            ..txn(RDKafkaErrorCode::MessageSizeTooLarge)
        };
        assert_eq!(classify(abortable, true), TxnFailure::Abort);
    }
}
