//! What the exactly-once sink knows of the records the broker (or weir's own
//! client) refused: per record, across its passes through aborted transactions,
//! whether to produce it alone, which branches to dead-letter as
//! `produce-rejected`, and whose dead letters to cut. Pure bookkeeping, unit tested.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::pipeline::process::Verdict;
use crate::telemetry::metrics::RouteMetrics;

/// What the broker (or the client) said of one message of a record.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Refusal {
    /// Refused in a batch: produce the record alone next time.
    Suspect,
    /// An output refused alone, or by the client itself: dead-letter the branch.
    Final { branch: usize, message: String },
    /// The branch's dead letter was refused alone: cut it to the least next time.
    Letter { branch: usize },
}

/// Everything refused of one record so far, across its passes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Known {
    /// Produce it alone, between two flushes.
    pub(super) alone: bool,
    /// Branches to dead-letter as `produce-rejected`, with the broker's reason.
    rejected: Vec<(usize, String)>,
    /// Branches whose dead letter is cut to the least.
    cut: u64,
}

impl Known {
    fn learn(&mut self, refusal: Refusal) {
        match refusal {
            Refusal::Suspect => self.alone = true,
            Refusal::Final { branch, message } => {
                if !self.rejected.iter().any(|(b, _)| *b == branch) {
                    self.rejected.push((branch, message));
                }
            }
            Refusal::Letter { branch } => self.cut |= 1u64 << branch.min(63),
        }
    }
}

/// The refusals of records in uncommitted transactions, by (partition, offset).
#[derive(Default)]
pub(super) struct Refusals(Mutex<HashMap<(i32, i64), Known>>);

impl Refusals {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, i64), Known>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn learn(&self, partition: i32, offset: i64, refusal: Refusal) {
        self.lock()
            .entry((partition, offset))
            .or_default()
            .learn(refusal);
    }

    pub(super) fn known(&self, partition: i32, offset: i64) -> Option<Known> {
        self.lock().get(&(partition, offset)).cloned()
    }

    /// Forgets the records before `committed`'s offsets (partition, next offset).
    pub(super) fn forget(&self, committed: &[(i32, i64)]) {
        self.lock().retain(|(partition, offset), _| {
            committed
                .iter()
                .all(|(p, next)| p != partition || offset >= next)
        });
    }
}

/// Which record a produced message belongs to.
pub(super) struct TxnTicket {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) branch: usize,
    /// A dead letter, not an output.
    pub(super) letter: bool,
    /// Produced alone, between two flushes.
    pub(super) alone: bool,
    /// `weir_records_produced_total` of its topic (none in unit tests).
    pub(super) metrics: Option<RouteMetrics>,
    /// Its send span (sampled records only).
    pub(super) span: Option<crate::telemetry::trace::SendSpan>,
}

impl TxnTicket {
    /// What a refusal of this message means for its record. `by_client`: weir's
    /// own client refused it, which it would do alone as well.
    pub(super) fn refusal(&self, topic: &str, error: &str, by_client: bool) -> Refusal {
        match (self.letter, self.alone || by_client) {
            (_, false) => Refusal::Suspect,
            (true, true) => Refusal::Letter {
                branch: self.branch,
            },
            (false, true) => Refusal::Final {
                branch: self.branch,
                message: format!("the broker refused an output to {topic}: {error}"),
            },
        }
    }
}

/// A record's verdicts with what is known of its refusals applied.
pub(super) struct Applied {
    pub(super) verdicts: Vec<Verdict>,
    /// Produce it alone, between two flushes (an output was refused in a batch).
    pub(super) alone: bool,
    /// Branches whose dead letter was refused whole: cut theirs to the least.
    pub(super) cut: u64,
}

/// Applies what is known of a record's refusals to its verdicts: a branch with an
/// output refused for good has its outputs turned into a `produce-rejected` dead
/// letter; a record refused in a batch is produced alone; a refused dead letter is
/// cut to the least.
pub(super) fn apply_refusals(known: Option<Known>, verdicts: Vec<Verdict>) -> Applied {
    let Some(known) = known else {
        return Applied {
            verdicts,
            alone: false,
            cut: 0,
        };
    };
    let verdicts = verdicts
        .into_iter()
        .enumerate()
        .map(|(b, verdict)| {
            let rejected = known.rejected.iter().find(|(branch, _)| *branch == b);
            match (verdict, rejected) {
                (Verdict::Deliver(routed), Some((_, message))) => match routed.first() {
                    Some(first) => Verdict::Refused {
                        branch: first.route.branch.clone(),
                        message: message.clone(),
                    },
                    None => Verdict::Deliver(routed),
                },
                (verdict, _) => verdict,
            }
        })
        .collect();
    Applied {
        verdicts,
        alone: known.alone,
        cut: known.cut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(branch: usize, letter: bool, alone: bool) -> TxnTicket {
        TxnTicket {
            span: None,
            partition: 0,
            offset: 5,
            branch,
            letter,
            alone,
            metrics: None,
        }
    }

    #[test]
    fn a_refusal_in_a_batch_suspects_the_record_and_alone_it_is_final() {
        assert_eq!(
            ticket(1, false, false).refusal("out", "too large", false),
            Refusal::Suspect
        );
        let Refusal::Final { branch, message } =
            ticket(1, false, true).refusal("out", "too large", false)
        else {
            panic!("final");
        };
        assert_eq!(branch, 1);
        assert!(
            message.contains("out") && message.contains("too large"),
            "{message}"
        );
        // The client refuses a record alone as well: final at once.
        assert!(matches!(
            ticket(1, false, false).refusal("out", "too large", true),
            Refusal::Final { branch: 1, .. }
        ));
        assert_eq!(
            ticket(0, true, false).refusal("dlq", "too large", true),
            Refusal::Letter { branch: 0 }
        );
    }

    #[test]
    fn what_is_known_of_a_record_accumulates_across_its_passes() {
        let refusals = Refusals::default();
        refusals.learn(0, 5, Refusal::Suspect);
        refusals.learn(
            0,
            5,
            Refusal::Final {
                branch: 1,
                message: "m".into(),
            },
        );
        // The dead letter that replaced the output is refused in a batch too.
        refusals.learn(0, 5, Refusal::Suspect);
        refusals.learn(0, 5, Refusal::Letter { branch: 1 });
        let known = refusals.known(0, 5).unwrap();
        assert!(known.alone);
        assert_eq!(known.rejected, vec![(1, "m".to_owned())]);
        assert_eq!(known.cut, 0b10);
        assert_eq!(refusals.known(0, 6), None);
    }

    #[test]
    fn committed_records_are_forgotten() {
        let refusals = Refusals::default();
        refusals.learn(0, 5, Refusal::Suspect);
        refusals.learn(0, 9, Refusal::Suspect);
        refusals.learn(1, 2, Refusal::Suspect);
        refusals.forget(&[(0, 6)]);
        assert_eq!(refusals.known(0, 5), None);
        assert!(refusals.known(0, 9).is_some());
        assert!(refusals.known(1, 2).is_some(), "another partition");
    }

    #[test]
    fn records_without_refusals_keep_their_verdicts() {
        let applied = apply_refusals(None, vec![Verdict::Deliver(Vec::new())]);
        assert!(!applied.alone);
        assert_eq!(applied.cut, 0);
        assert!(matches!(applied.verdicts[..], [Verdict::Deliver(_)]));
    }
}
