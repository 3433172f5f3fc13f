//! The workload: generated task events, and what each system should output for them.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use todo_events::derive_id;
use todo_events::sample::{SampleEvent, generate_for_users};

pub struct Workload {
    pub events: Vec<SampleEvent>,
    /// Outputs (reminder or DLQ record) of each event under the reminders pipeline.
    pub reminder_outputs: Vec<u32>,
    /// Valid events (each gives one task-update in the Todo deployment).
    pub valid: usize,
    /// The `event_id` found in an output's value -> the input that caused it: the
    /// input's own id (passthrough copies, DLQ records) and its reminder's id.
    pub ids: HashMap<String, u32>,
}

#[derive(serde::Deserialize)]
struct EventId<'a> {
    #[serde(borrow)]
    event_id: Option<&'a str>,
}

/// Reads the `event_id` of an event or reminder value, if it has one.
pub fn event_id(value: &[u8]) -> Option<&str> {
    serde_json::from_slice::<EventId<'_>>(value)
        .ok()
        .and_then(|e| e.event_id)
}

/// `count` generated task events for `users` users (about 5% invalid). Event ids
/// derive from `seed`, so batches with different seeds never share one.
pub fn sample_events(count: usize, users: usize, seed: u64) -> Vec<SampleEvent> {
    let start = Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap();
    generate_for_users(count, users, seed, start)
}

/// What the reminders pipeline does with an event: `None` when the validator or the
/// deriver rejects it (a dead letter), else whether it gives a reminder.
pub fn reminder_outcome(value: &[u8]) -> Option<bool> {
    task_validator::validate(Some(value))
        .and_then(|()| reminder_deriver::derive(value, reminder_deriver::DEFAULT_LEAD_TIME))
        .ok()
        .map(|reminder| reminder.is_some())
}

impl Workload {
    pub fn generate(count: usize, users: usize, seed: u64) -> Workload {
        let events = sample_events(count, users, seed);
        let mut reminder_outputs = Vec::with_capacity(events.len());
        let mut ids = HashMap::with_capacity(events.len() * 2);
        let mut valid = 0;
        for (index, event) in events.iter().enumerate() {
            let index = index as u32;
            let outputs = match reminder_outcome(&event.value) {
                None => 1,
                Some(reminder) => u32::from(reminder),
            };
            if event.valid {
                valid += 1;
            }
            reminder_outputs.push(outputs);
            if let Some(id) = event_id(&event.value) {
                ids.insert(derive_id(&["reminder-event", id]).to_string(), index);
                ids.insert(id.to_owned(), index);
            }
        }
        Workload {
            events,
            reminder_outputs,
            valid,
            ids,
        }
    }

    /// Mean value size in bytes.
    pub fn mean_size(&self) -> usize {
        self.events.iter().map(|e| e.value.len()).sum::<usize>() / self.events.len().max(1)
    }

    pub fn invalid(&self) -> usize {
        self.events.len() - self.valid
    }
}
