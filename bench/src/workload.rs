//! The workload: generated task events, and what each system should output for them.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use reminder_deriver::{Change, Entry};
use todo_events::sample::{SampleEvent, generate_for_users};
use todo_events::{TaskEvent, derive_id};

/// The reminder-deriver's `lead-time` in every benchmark config.
pub const LEAD_TIME: Duration = reminder_deriver::DEFAULT_LEAD_TIME;

pub struct Workload {
    pub events: Vec<SampleEvent>,
    /// Outputs (reminders or a DLQ record) of each event under the reminders
    /// pipeline with the stateless deriver (before issue 18, and every reference
    /// system).
    pub reminder_outputs: Vec<u32>,
    /// The same with the stateful deriver (issue 18): a repeated schedule gives
    /// nothing, a reschedule a cancellation too. None of its timers comes due
    /// during a run: the events' times start at least a day after it
    /// ([`workload_start`]).
    pub stateful_outputs: Vec<u32>,
    /// Valid events (each gives one task-update in the Todo deployment).
    pub valid: usize,
    /// The `event_id` found in an output's value -> the input that caused it: the
    /// input's own id (passthrough copies, DLQ records), its reminder's id and the
    /// id of the cancellation the stateful deriver gives it.
    pub ids: HashMap<String, u32>,
    /// When the events' clock starts.
    pub start: DateTime<Utc>,
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

/// Midnight UTC two days from now: a run's workload starts there, so that every
/// reminder the stateful deriver schedules (never before its event's time) is due
/// at least a day after the run. The events differ from day to day only in their
/// dates (same ids, same sizes, same outputs).
pub fn workload_start() -> DateTime<Utc> {
    let today = DateTime::<Utc>::from(std::time::SystemTime::now()).date_naive();
    (today + chrono::Days::new(2))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
}

/// What the reminders pipeline does with an event: `None` when the validator or the
/// deriver rejects it (a dead letter), else whether it gives a reminder.
pub fn reminder_outcome(value: &[u8]) -> Option<bool> {
    task_validator::validate(Some(value))
        .and_then(|()| reminder_deriver::derive(value, reminder_deriver::DEFAULT_LEAD_TIME))
        .ok()
        .map(|reminder| reminder.is_some())
}

/// The stateful deriver's state, as far as output counts go: each key's live
/// reminders by entry name.
#[derive(Default)]
pub struct DeriverState(HashMap<(String, String), Entry>);

impl DeriverState {
    /// Outputs of one event under the reminders pipeline with the stateful deriver
    /// (reminders, or 1 for a DLQ record), and its change to the state: what
    /// `reminder_deriver::handle_task_event` does, given that no timer fires.
    pub fn outputs(&mut self, key: &str, value: &[u8]) -> u32 {
        if task_validator::validate(Some(value)).is_err() {
            return 1;
        }
        let Ok(event) = TaskEvent::parse(value) else {
            return 1;
        };
        let name = (
            key.to_owned(),
            reminder_deriver::entry_name(&event.task.task_id.to_string()),
        );
        let (outputs, change) = reminder_deriver::decide(&event, self.0.get(&name), LEAD_TIME);
        match change {
            Change::Keep => {}
            Change::Put { entry, .. } => {
                self.0.insert(name, entry);
            }
            Change::Remove => {
                self.0.remove(&name);
            }
        }
        outputs.len() as u32
    }
}

impl Workload {
    /// `count` events for `users` users, their clock starting at `start`.
    pub fn generate(count: usize, users: usize, seed: u64, start: DateTime<Utc>) -> Workload {
        let events = generate_for_users(count, users, seed, start);
        let mut reminder_outputs = Vec::with_capacity(events.len());
        let mut stateful_outputs = Vec::with_capacity(events.len());
        let mut state = DeriverState::default();
        let mut ids = HashMap::with_capacity(events.len() * 3);
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
            stateful_outputs.push(state.outputs(&event.key, &event.value));
            if let Some(id) = event_id(&event.value) {
                ids.insert(derive_id(&["reminder-event", id]).to_string(), index);
                ids.insert(derive_id(&["reminder-cancelled", id]).to_string(), index);
                ids.insert(id.to_owned(), index);
            }
        }
        Workload {
            events,
            reminder_outputs,
            stateful_outputs,
            valid,
            ids,
            start,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32, event_type: &str, status: &str, due: Option<&str>) -> Vec<u8> {
        serde_json::json!({
            "event_id": format!("00000000-0000-4000-8000-{n:012}"),
            "event_type": event_type,
            "timestamp": "2026-12-08T09:00:00.000Z",
            "version": "1.0",
            "correlation_id": "00000000-0000-4000-8000-0000000000aa",
            "payload": {
                "task_id": "00000000-0000-4000-8000-0000000000bb",
                "user_id": "00000000-0000-4000-8000-0000000000cc",
                "title": "Buy milk",
                "status": status,
                "priority": "low",
                "due_date": due,
            },
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn the_stateful_deriver_schedules_once_and_cancels_what_it_replaces() {
        let mut state = DeriverState::default();
        let key = "00000000-0000-4000-8000-0000000000cc";
        let due = Some("2026-12-09T09:00:00.000Z");
        let later = Some("2026-12-10T09:00:00.000Z");
        let steps = [
            (event(1, "task.created", "pending", due), 1, 1),
            // The same reminder again: nothing (the stateless deriver repeated it).
            (event(2, "task.updated", "in_progress", due), 0, 1),
            // Rescheduled: the old one cancelled, the new one scheduled.
            (event(3, "task.updated", "pending", later), 2, 1),
            (event(4, "task.completed", "completed", later), 1, 1),
            (b"not json".to_vec(), 1, 1),
        ];
        for (value, stateful, stateless) in steps {
            assert_eq!(state.outputs(key, &value), stateful);
            let outcome = reminder_outcome(&value);
            assert_eq!(outcome.map_or(1, u32::from), stateless);
        }
    }
}
