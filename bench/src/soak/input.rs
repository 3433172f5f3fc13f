//! The input: Todo task events generated in batches and offered at a steady rate,
//! each remembered in a `Ledger` (what weir should make of it, the ids its outputs
//! carry) for the accounting, and the producer's reports of what was not delivered.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};

use super::{BATCH, SEED, TRACE};
use crate::driver::send;
use crate::workload::{event_id, reminder_outcome, sample_events};

pub(super) const VALID: u8 = 1;
pub(super) const REMINDER: u8 = 2;
pub(super) const NOT_SENT: u8 = 4;

/// What was sent: per input (index = its `trace` header) what weir should make of
/// it, and the ids its outputs carry.
#[derive(Default)]
pub(super) struct Ledger {
    /// `VALID` (the validator accepts it), `REMINDER` (the deriver gives one),
    /// `NOT_SENT` (the producer reported it undelivered).
    pub(super) kind: Vec<u8>,
    /// Hash of the input's key and value.
    pub(super) hash: Vec<u64>,
    /// An input's `event_id`, and its reminder's -> the input.
    pub(super) ids: HashMap<u128, u32>,
}

/// The input producer's delivery reports: which inputs did not make it.
#[derive(Default)]
pub(super) struct Deliveries {
    pub(super) failed: Mutex<Vec<usize>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        if let Err((error, _)) = result {
            eprintln!("soak: input {index} was not delivered: {error}");
            self.failed.lock().unwrap().push(index);
        }
    }
}

pub(super) fn hash_of(key: Option<&[u8]>, value: Option<&[u8]>) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    value.hash(&mut hasher);
    hasher.finish()
}

/// A UUID in its text form as a number.
pub(super) fn uuid_bits(text: &str) -> Option<u128> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    (hex.len() == 32)
        .then(|| u128::from_str_radix(&hex, 16).ok())
        .flatten()
}

/// Offers `rate` events/s to `topic` until `stop`, then hands back what it sent.
pub(super) fn offer(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    rate: u64,
    users: usize,
    expected: usize,
    stop: &AtomicBool,
) -> Ledger {
    // Room for the whole run up front: no rehash of millions of ids mid-run.
    let mut ledger = Ledger {
        kind: Vec::with_capacity(expected),
        hash: Vec::with_capacity(expected),
        ids: HashMap::with_capacity(expected * 2),
    };
    let mut batch = Vec::new();
    let mut next_in_batch = 0;
    let mut batches = 0;
    let start = Instant::now();
    let mut sent: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due && !stop.load(Ordering::Relaxed) {
            if next_in_batch == batch.len() {
                batch = sample_events(BATCH, users, SEED * 1_000_000 + batches);
                batches += 1;
                next_in_batch = 0;
            }
            let event = &batch[next_in_batch];
            next_in_batch += 1;
            let index = sent as usize;
            let outcome = reminder_outcome(&event.value);
            let valid = task_validator::validate(Some(&event.value)).is_ok();
            let mut kind = 0;
            if valid {
                kind |= VALID;
                if let Some(id) = event_id(&event.value) {
                    ledger
                        .ids
                        .extend(uuid_bits(id).map(|id| (id, index as u32)));
                    let reminder = todo_events::derive_id(&["reminder-event", id]).to_string();
                    ledger
                        .ids
                        .extend(uuid_bits(&reminder).map(|id| (id, index as u32)));
                }
            }
            if outcome == Some(true) {
                kind |= REMINDER;
            }
            ledger.kind.push(kind);
            ledger
                .hash
                .push(hash_of(Some(event.key.as_bytes()), Some(&event.value)));
            let trace = index.to_string();
            send(
                producer,
                BaseRecord::with_opaque_to(topic, index)
                    .key(event.key.as_bytes())
                    .payload(event.value.as_slice())
                    .headers(OwnedHeaders::new().insert(Header {
                        key: TRACE,
                        value: Some(trace.as_bytes()),
                    })),
            );
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    ledger
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_parse_as_numbers() {
        let id = todo_events::derive_id(&["x"]);
        assert_eq!(uuid_bits(&id.to_string()), Some(id.as_u128()));
        assert_eq!(uuid_bits("not-a-uuid"), None);
    }
}
