//! Dead letters: the record a failed source becomes on its branch's dead-letter
//! topic ([`dead_letter`], [`refused_letter`]), cut to fit when it is too large
//! ([`fit`]), and the one report (log line and `weir_dlq_records_total`) of each
//! dead-lettered record ([`report`]).
//!
//! A dead letter carries the source's key, value and headers plus the `weir.*`
//! headers. A source near the size limits may not fit once those are added, or the
//! dead-letter topic may take less than the source topic: such a letter is written
//! without its value (then without the original headers, then without the key),
//! and `weir.cut` says what was left out. The `weir.source.*` headers still say
//! where the original is, and `weir dlq replay` reads it from there while the
//! source topic's retention keeps it. So no record blocks its partition because
//! its dead letter does not fit.

use std::time::SystemTime;

use super::process::{Failed, Verdict};
use super::snapshot::BranchInfo;
use crate::kafka::producer::OwnedRecord;
use crate::kafka::wire_size;
use crate::outcome::DlqReason;
use crate::policy::DeadLetter;
use crate::policy::circuit::Outcome;
use crate::policy::dlq::header;
use crate::record::{Event, Header};
use crate::telemetry::trace::{RecordTrace, SendSpan};

/// With tracing on: gives every output of `verdicts` its send span (sampled
/// records) and its `traceparent`, and the record's `changes` theirs (the
/// record's span: changelog records get no span of their own).
pub fn trace_writes(
    trace: Option<&RecordTrace>,
    verdicts: &mut [Verdict],
    changes: &mut [OwnedRecord],
) {
    let Some(trace) = trace else {
        return;
    };
    for verdict in verdicts {
        if let Verdict::Deliver(routed) = verdict {
            for r in routed {
                r.send = trace.send(&r.route.topic, &r.route.branch.name);
                trace.stamp(&mut r.output.headers, r.send.as_ref());
            }
        }
    }
    for change in changes {
        trace.stamp(&mut change.headers, None);
    }
}

/// A failed record's dead letter, cut to fit in `max` bytes (the producer's
/// `message.max.bytes`), with its send span when `trace` is sampled.
pub fn dead_letter(
    event: &Event,
    trace: Option<&RecordTrace>,
    failed: &Failed,
    max: usize,
) -> (OwnedRecord, Option<SendSpan>) {
    let message = failed.failure.error.message();
    let mut letter = letter(
        event,
        &failed.branch,
        failed.reason,
        &message,
        failed.failure.plugin.identity(),
        failed.attempts,
    );
    let span = trace_letter(trace, &mut letter, &failed.branch, failed.reason, &message);
    (fit(letter, max), span)
}

/// A dead letter's send span and `traceparent`, with tracing on.
fn trace_letter(
    trace: Option<&RecordTrace>,
    letter: &mut OwnedRecord,
    branch: &BranchInfo,
    reason: DlqReason,
    message: &str,
) -> Option<SendSpan> {
    let trace = trace?;
    let span = trace.send(&letter.topic, &branch.name);
    if let Some(span) = &span {
        span.dead_letter(reason.as_str(), message);
    }
    trace.stamp(&mut letter.headers, span.as_ref());
    span
}

/// The dead letter of a record one of whose outputs the broker refused.
pub fn refused_letter(
    event: &Event,
    trace: Option<&RecordTrace>,
    branch: &BranchInfo,
    message: &str,
    max: usize,
) -> (OwnedRecord, Option<SendSpan>) {
    let mut letter = letter(
        event,
        branch,
        DlqReason::ProduceRejected,
        message,
        &branch.last_plugin,
        1,
    );
    let span = trace_letter(
        trace,
        &mut letter,
        branch,
        DlqReason::ProduceRejected,
        message,
    );
    (fit(letter, max), span)
}

fn letter(
    event: &Event,
    branch: &BranchInfo,
    reason: DlqReason,
    message: &str,
    plugin: &str,
    attempts: u32,
) -> OwnedRecord {
    let headers: Vec<Header> = DeadLetter {
        reason: reason.as_str(),
        message,
        source_topic: &event.topic,
        source_partition: event.partition,
        source_offset: event.offset,
        pipeline: &branch.name,
        plugin,
        attempts,
        failed_at: SystemTime::now(),
    }
    .headers(&event.headers);
    OwnedRecord {
        topic: branch.dlq_topic.clone(),
        partition: None,
        key: event.key.clone(),
        value: event.value.clone(),
        headers,
    }
}

/// `letter` as it is if it fits in `max` bytes (as the Kafka client counts them);
/// else without its value, then without the source's headers, then without its
/// key, until it fits, with `weir.cut` naming what was left out. `max = 0` leaves
/// out all three (the broker refused the letter: its topic's limit is unknown).
pub fn fit(mut letter: OwnedRecord, max: usize) -> OwnedRecord {
    let size = |l: &OwnedRecord| wire_size(l.key.as_deref(), l.value.as_deref(), &l.headers);
    if size(&letter) <= max {
        return letter;
    }
    let mut cut = Vec::new();
    letter.value = None;
    cut.push("value");
    let marked = |letter: &mut OwnedRecord, cut: &[&str]| {
        letter.headers.retain(|h| h.key != header::CUT);
        letter.headers.push(Header {
            key: header::CUT.to_owned(),
            value: cut.join(",").into_bytes(),
        });
    };
    marked(&mut letter, &cut);
    if size(&letter) > max {
        letter.headers.retain(|h| h.key.starts_with("weir."));
        cut.push("headers");
        marked(&mut letter, &cut);
    }
    if size(&letter) > max {
        letter.key = None;
        cut.push("key");
        marked(&mut letter, &cut);
    }
    letter
}

/// Logs and counts the dead letters among `verdicts` (the final ones, after any
/// refusal was applied), and says how the record went, for the circuit.
pub fn report(event: &Event, trace: Option<&RecordTrace>, verdicts: &[Verdict]) -> Outcome {
    let mut outcome = Outcome::Delivered;
    for verdict in verdicts {
        match verdict {
            Verdict::Deliver(_) => {}
            Verdict::Refused { branch, message } => {
                outcome = Outcome::DeadLettered;
                dead_lettered(
                    event,
                    trace,
                    branch,
                    DlqReason::ProduceRejected,
                    None,
                    1,
                    message,
                );
            }
            Verdict::DeadLetter(failed) => {
                outcome = Outcome::DeadLettered;
                dead_lettered(
                    event,
                    trace,
                    &failed.branch,
                    failed.reason,
                    Some(&failed.failure.plugin.label),
                    failed.attempts,
                    &failed.failure.error.message(),
                );
            }
        }
    }
    outcome
}

/// Counts one dead letter and logs it: a warning, except for invalid input (the
/// expected, per-record kind, counted in `weir_dlq_records_total` and listed by
/// `weir dlq inspect`: a warning each would flood the log at scale).
pub fn dead_lettered(
    event: &Event,
    trace: Option<&RecordTrace>,
    branch: &BranchInfo,
    reason: DlqReason,
    plugin: Option<&str>,
    attempts: u32,
    message: &str,
) {
    branch.dead_letters.dead_lettered(reason);
    let plugin = plugin.unwrap_or(&branch.last_plugin);
    if let Some(trace) = trace {
        trace.fail(message);
        trace.event("dead-letter", || {
            vec![
                opentelemetry::KeyValue::new("weir.error.reason", reason.as_str()),
                opentelemetry::KeyValue::new("weir.error.message", message.to_owned()),
                opentelemetry::KeyValue::new("weir.branch", branch.name.to_string()),
                opentelemetry::KeyValue::new("weir.plugin", plugin.to_owned()),
                opentelemetry::KeyValue::new("weir.attempts", i64::from(attempts)),
                opentelemetry::KeyValue::new(
                    "messaging.destination.name",
                    branch.dlq_topic.to_string(),
                ),
            ]
        });
    }
    if reason.is_expected() {
        tracing::debug!(
            pipeline = %branch.name, partition = event.partition, offset = event.offset,
            plugin, reason = reason.as_str(), attempts, "dead-lettered: {message}"
        );
    } else {
        tracing::warn!(
            pipeline = %branch.name, partition = event.partition, offset = event.offset,
            plugin, reason = reason.as_str(), attempts, "dead-lettered: {message}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(key: usize, value: usize, headers: usize) -> OwnedRecord {
        OwnedRecord {
            topic: "dlq".into(),
            partition: None,
            key: Some(vec![b'k'; key]),
            value: Some(vec![b'v'; value]),
            headers: vec![
                Header {
                    key: "trace".into(),
                    value: vec![b't'; headers],
                },
                Header {
                    key: header::SOURCE_OFFSET.into(),
                    value: b"42".to_vec(),
                },
            ],
        }
    }

    fn cut_of(letter: &OwnedRecord) -> Option<&str> {
        letter
            .headers
            .iter()
            .find(|h| h.key == header::CUT)
            .map(|h| std::str::from_utf8(&h.value).unwrap())
    }

    #[test]
    fn a_letter_that_fits_is_left_alone() {
        let fitted = fit(letter(10, 1000, 10), 1_000_000);
        assert_eq!(fitted.value.as_ref().map(Vec::len), Some(1000));
        assert_eq!(cut_of(&fitted), None);
    }

    #[test]
    fn a_letter_too_large_loses_its_value_first() {
        let fitted = fit(letter(10, 2_000_000, 10), 1_000_000);
        assert_eq!(fitted.value, None);
        assert_eq!(fitted.key.as_ref().map(Vec::len), Some(10));
        assert_eq!(cut_of(&fitted), Some("value"));
        assert!(fitted.headers.iter().any(|h| h.key == "trace"));
        assert!(
            fitted
                .headers
                .iter()
                .any(|h| h.key == header::SOURCE_OFFSET)
        );
    }

    #[test]
    fn then_the_source_headers_then_the_key() {
        let fitted = fit(letter(10, 2_000_000, 2_000_000), 1_000_000);
        assert_eq!(cut_of(&fitted), Some("value,headers"));
        assert!(fitted.key.is_some());
        assert!(!fitted.headers.iter().any(|h| h.key == "trace"));
        let fitted = fit(letter(2_000_000, 10, 10), 1_000_000);
        assert_eq!(cut_of(&fitted), Some("value,headers,key"));
        assert_eq!((fitted.key, fitted.value), (None, None));
        assert!(
            fitted
                .headers
                .iter()
                .any(|h| h.key == header::SOURCE_OFFSET)
        );
    }

    #[test]
    fn a_letter_the_broker_refused_keeps_only_weirs_headers() {
        let fitted = fit(letter(10, 10, 10), 0);
        assert_eq!(cut_of(&fitted), Some("value,headers,key"));
        assert!(fitted.headers.iter().all(|h| h.key.starts_with("weir.")));
    }
}
