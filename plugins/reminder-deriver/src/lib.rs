//! reminder-deriver: turns task events into reminder events (SPEC §7) and fires each
//! reminder when it is due. World `stateful-plugin`; the behaviour, event by event, is
//! the table of docs/design/state-and-timers.md, "The Todo deriver".
//!
//! Records are keyed by `user_id`, so the state scope is one user. For each task with
//! a live reminder the deriver keeps an entry and a timer, both named
//! `reminder:<task_id>` ([`entry_name`]): the entry is the scheduled reminder and the
//! task's title ([`Entry`], JSON with sorted keys); the timer is due at its
//! `scheduled_time` and carries its `reminder_id`.
//!
//! - `task.created`/`task.updated` with a `due_date` and a status other than
//!   `completed` ask for a reminder at `max(due_date - lead-time, event timestamp)`,
//!   with id UUIDv5(task id, due date) ([`derive`]). A new reminder is emitted as
//!   `reminder.scheduled` and stored; the stored one is kept if it has the same id,
//!   else cancelled (`was rescheduled`) and replaced.
//! - The same events without a `due_date` cancel the stored reminder (`was
//!   unscheduled`). A status of `completed` (on `task.updated`, and on
//!   `task.created`, which the design's table leaves out), `task.completed` and
//!   `task.deleted` cancel it (`was completed`/`was deleted`); with none stored, they
//!   cancel the reminder their `due_date` derives, as the stateless deriver did (a
//!   reminder scheduled before the deriver kept state).
//! - When the timer fires and the entry still holds the reminder its payload names,
//!   `reminder.triggered` is emitted and the entry deleted; otherwise (stale) nothing.
//!
//! Every output is a function of the input and the key's state: ids are UUIDv5 of
//! input ids, and a triggered reminder's `timestamp` is its `scheduled_time`, so a
//! timer fired again gives the same bytes.
//!
//! Config: `lead-time` (humantime, default `15m`), `output` (default `reminders`).
//!
//! Span: when the call's span is sampled, each reminder emitted is also an event of
//! it, named after its type (`reminder.scheduled`, `reminder.cancelled`,
//! `reminder.triggered`), with the task id, the reminder id and when it is (or was)
//! due.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use todo_events::{EventType, Rejection, TaskEvent, derive_id, format_utc};
use weir_plugin_sdk::{span, state, timers};

pub const DEFAULT_OUTPUT: &str = "reminders";
pub const DEFAULT_LEAD_TIME: Duration = Duration::from_secs(15 * 60);

pub const SCHEDULED: &str = "reminder.scheduled";
pub const CANCELLED: &str = "reminder.cancelled";
pub const TRIGGERED: &str = "reminder.triggered";

/// A reminder event to produce, keyed by `user_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reminder {
    pub event_type: &'static str,
    pub key: String,
    pub value: ReminderEvent,
    pub correlation_id: String,
}

impl Reminder {
    /// The record value: `reminder.schema.json`, keys in sorted order.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.value).expect("a reminder always serialises")
    }
}

/// The reminder event (`schemas/reminder.schema.json`). Fields are declared in
/// sorted order, so the bytes are the same as those of earlier releases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReminderEvent {
    pub correlation_id: String,
    pub event_id: String,
    pub event_type: &'static str,
    pub payload: ReminderPayload,
    pub timestamp: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReminderPayload {
    pub message: String,
    pub reminder_id: String,
    pub scheduled_time: String,
    pub task_id: String,
    pub user_id: String,
}

/// The stored state of a live reminder: the strings of the `reminder.scheduled`
/// event that scheduled it, and the task's title (for the messages that cancel it).
/// Fields are declared in sorted order, so the JSON has sorted keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub correlation_id: String,
    pub message: String,
    pub reminder_id: String,
    pub scheduled_time: String,
    pub task_id: String,
    pub title: String,
    pub user_id: String,
    pub version: String,
}

impl Entry {
    /// The entry of the reminder `scheduled` for a task titled `title`.
    fn of(scheduled: &Reminder, title: &str) -> Entry {
        let v = &scheduled.value;
        Entry {
            correlation_id: v.correlation_id.clone(),
            message: v.payload.message.clone(),
            reminder_id: v.payload.reminder_id.clone(),
            scheduled_time: v.payload.scheduled_time.clone(),
            task_id: v.payload.task_id.clone(),
            title: title.to_owned(),
            user_id: v.payload.user_id.clone(),
            version: v.version.clone(),
        }
    }

    /// The entry's value: compact JSON, keys sorted.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an entry always serialises")
    }

    /// An entry read back; `None` if it is not one (it then counts as absent).
    pub fn parse(bytes: &[u8]) -> Option<Entry> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The name of the entry and of the timer of task `task_id`.
pub fn entry_name(task_id: &str) -> String {
    format!("reminder:{task_id}")
}

/// Parses the plugin config; unknown keys are refused so a typo fails at start-up.
pub fn parse_config(config: &[(String, String)]) -> Result<Settings, String> {
    let mut settings = Settings {
        lead_time: DEFAULT_LEAD_TIME,
        output: DEFAULT_OUTPUT.to_owned(),
    };
    for (key, value) in config {
        match key.as_str() {
            "lead-time" => {
                settings.lead_time = humantime::parse_duration(value)
                    .map_err(|e| format!("lead-time: {e} (got {value:?}; try \"15m\")"))?;
            }
            "output" => settings.output = value.clone(),
            other => {
                return Err(format!(
                    "unknown config key {other:?} (known: lead-time, output)"
                ));
            }
        }
    }
    Ok(settings)
}

/// The plugin's settings, from its `config` table.
#[derive(Debug, Clone)]
pub struct Settings {
    pub lead_time: Duration,
    pub output: String,
}

/// Why a task event produced nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The event is not a valid task event.
    Invalid(Rejection),
    /// The host refused a state or timer write (a slot limit); its message.
    StateLimit(String),
}

impl From<Rejection> for Refusal {
    fn from(r: Rejection) -> Refusal {
        Refusal::Invalid(r)
    }
}

/// What one task event asks for, with no state: the reminder the stateless deriver
/// emitted (`reminder.scheduled`, or `reminder.cancelled` for `task.completed` and
/// `task.deleted`), if any. A pure function of its input.
pub fn derive(value: &[u8], lead_time: Duration) -> Result<Option<Reminder>, Rejection> {
    let event = TaskEvent::parse(value)?;
    Ok(match event.event_type {
        EventType::Created | EventType::Updated if !event.task.is_completed() => {
            schedule(&event, lead_time).map(|(r, _)| r)
        }
        EventType::Created | EventType::Updated => None,
        EventType::Completed | EventType::Deleted => derived_cancel(&event, lead_time),
    })
}

/// The change an event makes to its task's entry and timer.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Leave both as they are.
    Keep,
    /// Set the entry, and the timer due at `due_ms` with the reminder id.
    Put { entry: Entry, due_ms: i64 },
    /// Delete the entry and cancel the timer.
    Remove,
}

/// Decides what a task event does, given the stored entry of its task (`old`): the
/// outputs, in order, and the change. Pure; [`handle_task_event`] applies it.
pub fn decide(
    event: &TaskEvent,
    old: Option<&Entry>,
    lead_time: Duration,
) -> (Vec<Reminder>, Change) {
    let ends = event.task.is_completed()
        || matches!(event.event_type, EventType::Completed | EventType::Deleted);
    if ends {
        return match old {
            Some(old) => (
                vec![cancel_stored(event, old, ended(event))],
                Change::Remove,
            ),
            None => (
                derived_cancel(event, lead_time).into_iter().collect(),
                Change::Keep,
            ),
        };
    }
    match (schedule(event, lead_time), old) {
        (Some((asked, _)), Some(old)) if asked.value.payload.reminder_id == old.reminder_id => {
            (vec![], Change::Keep)
        }
        (Some((asked, due_ms)), old) => {
            let entry = Entry::of(&asked, &event.task.title);
            let mut outputs: Vec<Reminder> = old
                .map(|old| cancel_stored(event, old, "rescheduled"))
                .into_iter()
                .collect();
            outputs.push(asked);
            (outputs, Change::Put { entry, due_ms })
        }
        (None, Some(old)) => (
            vec![cancel_stored(event, old, "unscheduled")],
            Change::Remove,
        ),
        (None, None) => (vec![], Change::Keep),
    }
}

/// Handles one task event against the state of its key (the record's): decides,
/// then writes the entry and the timer. On a refused write it stops and says so;
/// the host then dead-letters the record as `state-limit` and keeps no change of it.
pub fn handle_task_event(value: &[u8], lead_time: Duration) -> Result<Vec<Reminder>, Refusal> {
    let event = TaskEvent::parse(value)?;
    let name = entry_name(&event.task.task_id.to_string());
    let old = state::get(&name).and_then(|bytes| Entry::parse(&bytes));
    let (outputs, change) = decide(&event, old.as_ref(), lead_time);
    match change {
        Change::Keep => {}
        Change::Put { entry, due_ms } => {
            state::set(&name, &entry.to_json()).map_err(Refusal::StateLimit)?;
            timers::set(&name, due_ms, entry.reminder_id.as_bytes())
                .map_err(Refusal::StateLimit)?;
        }
        Change::Remove => {
            state::delete(&name);
            timers::cancel(&name);
        }
    }
    trace(&outputs);
    Ok(outputs)
}

/// Handles the timer `name` with its `payload` (a reminder id), in the scope of its
/// key: `reminder.triggered` if the entry `name` still holds that reminder (the
/// entry is then deleted), else nothing.
pub fn handle_timer(name: &str, payload: &[u8]) -> Vec<Reminder> {
    let Some(entry) = state::get(name).and_then(|bytes| Entry::parse(&bytes)) else {
        return vec![];
    };
    if entry.reminder_id.as_bytes() != payload {
        return vec![];
    }
    state::delete(name);
    let outputs = vec![triggered(&entry)];
    trace(&outputs);
    outputs
}

/// Adds an event to the call's span for each reminder, when it is recording: named
/// after the reminder's type, with `todo.task_id`, `todo.reminder_id` and
/// `todo.scheduled_time` (when the reminder is, or was, due).
fn trace(reminders: &[Reminder]) {
    if reminders.is_empty() || !span::recording() {
        return;
    }
    for r in reminders {
        let p = &r.value.payload;
        span::add_event(
            r.event_type,
            &[
                ("todo.task_id", &p.task_id),
                ("todo.reminder_id", &p.reminder_id),
                ("todo.scheduled_time", &p.scheduled_time),
            ],
        );
    }
}

/// The `reminder.scheduled` an event asks for, and when it is due (ms since the
/// epoch); `None` without a `due_date`.
fn schedule(event: &TaskEvent, lead_time: Duration) -> Option<(Reminder, i64)> {
    let due = event.task.due_date?.with_timezone(&Utc);
    let at = remind_at(due, lead_time).max(event.timestamp.with_timezone(&Utc));
    let message = format!(
        "Reminder: \"{}\" is due at {}",
        event.task.title,
        format_utc(due)
    );
    let reminder = reminder(
        event,
        SCHEDULED,
        derive_id(&["reminder-event", &event.event_id.to_string()]).to_string(),
        ReminderPayload {
            message,
            reminder_id: reminder_id(event, due),
            scheduled_time: format_utc(at),
            task_id: event.task.task_id.to_string(),
            user_id: event.task.user_id.to_string(),
        },
    );
    Some((reminder, at.timestamp_millis()))
}

/// The `reminder.cancelled` of the reminder an event's `due_date` derives, as the
/// stateless deriver emitted it; `None` without a `due_date`.
fn derived_cancel(event: &TaskEvent, lead_time: Duration) -> Option<Reminder> {
    let due = event.task.due_date?.with_timezone(&Utc);
    Some(reminder(
        event,
        CANCELLED,
        derive_id(&["reminder-event", &event.event_id.to_string()]).to_string(),
        ReminderPayload {
            message: format!(
                "Reminder cancelled: \"{}\" was {}",
                event.task.title,
                ended(event)
            ),
            reminder_id: reminder_id(event, due),
            scheduled_time: format_utc(remind_at(due, lead_time)),
            task_id: event.task.task_id.to_string(),
            user_id: event.task.user_id.to_string(),
        },
    ))
}

/// How an event that ends a task's reminder ended the task, for the message.
fn ended(event: &TaskEvent) -> &'static str {
    if event.event_type == EventType::Deleted {
        "deleted"
    } else {
        "completed"
    }
}

/// The `reminder.cancelled` of the stored reminder `old`, caused by `event`.
fn cancel_stored(event: &TaskEvent, old: &Entry, why: &str) -> Reminder {
    reminder(
        event,
        CANCELLED,
        derive_id(&["reminder-cancelled", &event.event_id.to_string()]).to_string(),
        ReminderPayload {
            message: format!("Reminder cancelled: \"{}\" was {why}", old.title),
            reminder_id: old.reminder_id.clone(),
            scheduled_time: old.scheduled_time.clone(),
            task_id: old.task_id.clone(),
            user_id: old.user_id.clone(),
        },
    )
}

/// The `reminder.triggered` of a stored reminder: every field from the entry, so
/// firing it again gives the same bytes.
fn triggered(entry: &Entry) -> Reminder {
    Reminder {
        event_type: TRIGGERED,
        key: entry.user_id.clone(),
        correlation_id: entry.correlation_id.clone(),
        value: ReminderEvent {
            correlation_id: entry.correlation_id.clone(),
            event_id: derive_id(&["reminder-triggered", &entry.reminder_id]).to_string(),
            event_type: TRIGGERED,
            payload: ReminderPayload {
                message: entry.message.clone(),
                reminder_id: entry.reminder_id.clone(),
                scheduled_time: entry.scheduled_time.clone(),
                task_id: entry.task_id.clone(),
                user_id: entry.user_id.clone(),
            },
            timestamp: entry.scheduled_time.clone(),
            version: entry.version.clone(),
        },
    }
}

/// A reminder caused by a task event: its correlation id, timestamp and version.
fn reminder(
    event: &TaskEvent,
    event_type: &'static str,
    event_id: String,
    payload: ReminderPayload,
) -> Reminder {
    let correlation_id = event.correlation_id.to_string();
    Reminder {
        event_type,
        key: payload.user_id.clone(),
        correlation_id: correlation_id.clone(),
        value: ReminderEvent {
            correlation_id,
            event_id,
            event_type,
            payload,
            timestamp: event.timestamp_text.clone(),
            version: event.version.clone(),
        },
    }
}

fn remind_at(due: DateTime<Utc>, lead_time: Duration) -> DateTime<Utc> {
    let lead = TimeDelta::from_std(lead_time).unwrap_or(TimeDelta::MAX);
    due.checked_sub_signed(lead).unwrap_or(due)
}

/// UUIDv5 of the task id and the due instant: the same reminder whatever offset the
/// due date was written in.
fn reminder_id(event: &TaskEvent, due: DateTime<Utc>) -> String {
    derive_id(&[
        "reminder",
        &event.task.task_id.to_string(),
        &format_utc(due),
    ])
    .to_string()
}

#[cfg(target_arch = "wasm32")]
mod component {
    use std::sync::OnceLock;
    use weir_plugin_sdk::{Event, Failure, FiredTimer, Header, Output, StatefulGuest};

    use super::{Refusal, Reminder, Settings};

    static SETTINGS: OnceLock<Settings> = OnceLock::new();

    struct Deriver;

    fn settings() -> Result<&'static Settings, Failure> {
        SETTINGS
            .get()
            .ok_or_else(|| Failure::Transient("called before init".into()))
    }

    fn outputs(reminders: Vec<Reminder>, to: &str) -> Vec<Output> {
        reminders
            .into_iter()
            .map(|r| Output {
                to: to.to_owned(),
                value: Some(r.to_json()),
                key: Some(r.key.into_bytes()),
                headers: vec![
                    Header::text("event_type", r.event_type),
                    Header::text("correlation_id", &r.correlation_id),
                ],
            })
            .collect()
    }

    impl StatefulGuest for Deriver {
        fn init(config: Vec<(String, String)>) -> Result<(), String> {
            let settings = super::parse_config(&config)?;
            SETTINGS.get_or_init(|| settings);
            Ok(())
        }

        fn handle_event(event: Event) -> Result<Vec<Output>, Failure> {
            let settings = settings()?;
            let value = event.value.as_deref().ok_or_else(|| {
                Failure::Invalid("a tombstone (null value) is not a task event".into())
            })?;
            match super::handle_task_event(value, settings.lead_time) {
                Ok(reminders) => Ok(outputs(reminders, &settings.output)),
                Err(Refusal::Invalid(r)) => Err(Failure::Invalid(r.to_string())),
                // The host remembers the refused write and dead-letters the record
                // as `state-limit`, whatever is returned here.
                Err(Refusal::StateLimit(_)) => Ok(vec![]),
            }
        }

        fn handle_timer(timer: FiredTimer) -> Result<Vec<Output>, Failure> {
            let settings = settings()?;
            let reminders = super::handle_timer(&timer.name, &timer.payload);
            Ok(outputs(reminders, &settings.output))
        }
    }

    weir_plugin_sdk::export_stateful!(Deriver);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn event(event_type: &str, status: &str, due: Value) -> Vec<u8> {
        json!({
            "event_id": "0b8f8d4e-3c1a-4f4e-9a53-6d2c1b7e9f10",
            "event_type": event_type,
            "timestamp": "2026-11-26T09:00:00Z",
            "version": "1.0",
            "correlation_id": "5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
            "payload": {
                "task_id": "7e57c0de-0000-4000-8000-000000000001",
                "user_id": "a11ce000-0000-4000-8000-000000000001",
                "title": "Buy milk",
                "status": status,
                "priority": "high",
                "due_date": due
            }
        })
        .to_string()
        .into_bytes()
    }

    const LEAD: Duration = Duration::from_secs(15 * 60);

    fn json(r: &Reminder) -> Value {
        serde_json::from_slice(&r.to_json()).unwrap()
    }

    #[test]
    fn schedules_lead_time_before_due() {
        let r = derive(
            &event(
                "task.created",
                "pending",
                json!("2026-11-27T18:00:00+01:00"),
            ),
            LEAD,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.event_type, "reminder.scheduled");
        assert_eq!(r.key, "a11ce000-0000-4000-8000-000000000001");
        assert_eq!(
            json(&r)["payload"]["scheduled_time"],
            "2026-11-27T16:45:00.000Z"
        );
        assert_eq!(
            json(&r)["correlation_id"],
            "5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
        );
        assert_eq!(json(&r)["version"], "1.0");
    }

    #[test]
    fn never_schedules_before_the_event() {
        let r = derive(
            &event("task.updated", "in_progress", json!("2026-11-26T09:05:00Z")),
            LEAD,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            json(&r)["payload"]["scheduled_time"],
            "2026-11-26T09:00:00.000Z"
        );
    }

    #[test]
    fn cancels_the_same_reminder() {
        let due = json!("2026-11-27T17:00:00Z");
        let scheduled = derive(&event("task.created", "pending", due.clone()), LEAD)
            .unwrap()
            .unwrap();
        // The same instant written in another offset is the same reminder.
        let cancelled = derive(
            &event(
                "task.deleted",
                "pending",
                json!("2026-11-27T18:00:00+01:00"),
            ),
            LEAD,
        )
        .unwrap()
        .unwrap();
        assert_eq!(cancelled.event_type, "reminder.cancelled");
        assert_eq!(
            json(&scheduled)["payload"]["reminder_id"],
            json(&cancelled)["payload"]["reminder_id"]
        );
        let done = derive(&event("task.completed", "completed", due), LEAD)
            .unwrap()
            .unwrap();
        assert_eq!(done.event_type, "reminder.cancelled");
    }

    #[test]
    fn nothing_without_due_date_or_when_completed() {
        assert!(
            derive(&event("task.created", "pending", Value::Null), LEAD)
                .unwrap()
                .is_none()
        );
        assert!(
            derive(&event("task.completed", "completed", Value::Null), LEAD)
                .unwrap()
                .is_none()
        );
        assert!(
            derive(
                &event("task.updated", "completed", json!("2026-11-27T17:00:00Z")),
                LEAD
            )
            .unwrap()
            .is_none()
        );
    }

    #[test]
    fn outputs_are_deterministic() {
        let input = event("task.created", "pending", json!("2026-11-27T17:00:00Z"));
        assert_eq!(derive(&input, LEAD).unwrap(), derive(&input, LEAD).unwrap());
    }

    #[test]
    fn config_is_checked() {
        let ok = parse_config(&[("lead-time".into(), "1h".into())]).unwrap();
        assert_eq!(ok.lead_time, Duration::from_secs(3600));
        assert!(
            parse_config(&[("lead-time".into(), "soon".into())])
                .unwrap_err()
                .contains("lead-time")
        );
        assert!(
            parse_config(&[("lead".into(), "1h".into())])
                .unwrap_err()
                .contains("unknown config key")
        );
    }

    #[test]
    fn invalid_events_are_rejected() {
        assert!(derive(b"[]", LEAD).is_err());
    }
}

/// The stateful behaviour, row by row of the design's table, against the SDK's fake.
#[cfg(test)]
mod stateful {
    use super::*;
    use serde_json::{Value, json};
    use weir_plugin_sdk::testing;

    const LEAD: Duration = Duration::from_secs(15 * 60);
    const USER: &str = "a11ce000-0000-4000-8000-000000000001";
    const TASK: &str = "7e57c0de-0000-4000-8000-000000000001";
    const CORRELATION: &str = "5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b";
    const NAME: &str = "reminder:7e57c0de-0000-4000-8000-000000000001";

    /// The id of test event `n`.
    fn event_id(n: u32) -> String {
        format!("0b8f8d4e-3c1a-4f4e-9a53-{n:012x}")
    }

    /// Task event `n` of task [`TASK`], titled "Buy milk".
    fn event(n: u32, event_type: &str, status: &str, due: Option<&str>) -> Vec<u8> {
        task_event(n, event_type, status, due, "Buy milk", TASK)
    }

    fn task_event(
        n: u32,
        event_type: &str,
        status: &str,
        due: Option<&str>,
        title: &str,
        task: &str,
    ) -> Vec<u8> {
        json!({
            "event_id": event_id(n),
            "event_type": event_type,
            "timestamp": "2026-11-26T09:00:00Z",
            "version": "1.0",
            "correlation_id": CORRELATION,
            "payload": {
                "task_id": task,
                "user_id": USER,
                "title": title,
                "status": status,
                "priority": "high",
                "due_date": due
            }
        })
        .to_string()
        .into_bytes()
    }

    /// An empty fake, scoped to [`USER`] (the records' key).
    fn fresh() {
        testing::reset();
        testing::set_key(Some(USER.as_bytes()));
    }

    fn handle(value: &[u8]) -> Vec<Reminder> {
        handle_task_event(value, LEAD).unwrap()
    }

    fn json(r: &Reminder) -> Value {
        serde_json::from_slice(&r.to_json()).unwrap()
    }

    fn kinds(outputs: &[Reminder]) -> Vec<&str> {
        outputs.iter().map(|r| r.event_type).collect()
    }

    fn reminder_id_of(r: &Reminder) -> String {
        r.value.payload.reminder_id.clone()
    }

    fn stored() -> Option<Entry> {
        state::get(NAME).map(|b| Entry::parse(&b).unwrap())
    }

    fn id(parts: &[&str]) -> String {
        derive_id(parts).to_string()
    }

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    /// Schedules the reminder of `due` with a `task.created` event `n`.
    fn schedule(n: u32, due: &str) -> Reminder {
        let out = handle(&event(n, "task.created", "pending", Some(due)));
        assert_eq!(kinds(&out), [SCHEDULED]);
        out.into_iter().next().unwrap()
    }

    /// Moves the clock to `now` and handles every timer due, each in its key's scope.
    fn fire_at(now: i64) -> Vec<Reminder> {
        testing::set_now(now);
        testing::take_due_timers()
            .into_iter()
            .flat_map(|t| {
                testing::set_key(t.key.as_deref());
                handle_timer(&t.name, &t.payload)
            })
            .collect()
    }

    #[test]
    fn a_new_due_date_schedules_and_stores() {
        fresh();
        let value = event(
            1,
            "task.created",
            "pending",
            Some("2026-11-27T18:00:00+01:00"),
        );
        let out = handle(&value);
        // Exactly what the stateless deriver emitted.
        assert_eq!(out, [derive(&value, LEAD).unwrap().unwrap()]);
        let reminder_id = id(&["reminder", TASK, "2026-11-27T17:00:00.000Z"]);
        assert_eq!(reminder_id_of(&out[0]), reminder_id);
        let expected_entry = format!(
            r#"{{"correlation_id":"{CORRELATION}","message":"Reminder: \"Buy milk\" is due at 2026-11-27T17:00:00.000Z","reminder_id":"{reminder_id}","scheduled_time":"2026-11-27T16:45:00.000Z","task_id":"{TASK}","title":"Buy milk","user_id":"{USER}","version":"1.0"}}"#
        );
        assert_eq!(
            String::from_utf8(state::get(NAME).unwrap()).unwrap(),
            expected_entry
        );
        assert_eq!(timers::due(NAME), Some(ms("2026-11-27T16:45:00Z")));
        testing::set_now(ms("2026-11-27T16:45:00Z"));
        let fired = testing::take_due_timers();
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].name, NAME);
        assert_eq!(
            fired[0].payload,
            reminder_id.as_bytes(),
            "the payload is the id"
        );
    }

    #[test]
    fn the_same_reminder_again_changes_nothing() {
        fresh();
        schedule(1, "2026-11-27T17:00:00Z");
        let (entry, due) = (state::get(NAME), timers::due(NAME));
        // The same due instant in another offset, with another title and status.
        let value = task_event(
            2,
            "task.updated",
            "in_progress",
            Some("2026-11-27T18:00:00+01:00"),
            "Buy oat milk",
            TASK,
        );
        assert!(handle(&value).is_empty());
        assert_eq!((state::get(NAME), timers::due(NAME)), (entry, due));
    }

    #[test]
    fn another_due_date_reschedules() {
        fresh();
        let first = schedule(1, "2026-11-27T17:00:00Z");
        let value = task_event(
            2,
            "task.updated",
            "pending",
            Some("2026-11-28T17:00:00Z"),
            "Buy oat milk",
            TASK,
        );
        let out = handle(&value);
        assert_eq!(kinds(&out), [CANCELLED, SCHEDULED]);
        assert_eq!(
            json(&out[0]),
            json!({
                "correlation_id": CORRELATION,
                "event_id": id(&["reminder-cancelled", &event_id(2)]),
                "event_type": "reminder.cancelled",
                "payload": {
                    "message": "Reminder cancelled: \"Buy milk\" was rescheduled",
                    "reminder_id": reminder_id_of(&first),
                    "scheduled_time": "2026-11-27T16:45:00.000Z",
                    "task_id": TASK,
                    "user_id": USER
                },
                "timestamp": "2026-11-26T09:00:00Z",
                "version": "1.0"
            })
        );
        assert_eq!(
            (out[0].key.as_str(), out[0].correlation_id.as_str()),
            (USER, CORRELATION)
        );
        assert_eq!(out[1], derive(&value, LEAD).unwrap().unwrap());
        let entry = stored().unwrap();
        assert_eq!(entry.reminder_id, reminder_id_of(&out[1]));
        assert_eq!(entry.title, "Buy oat milk");
        assert_eq!(timers::due(NAME), Some(ms("2026-11-28T16:45:00Z")));
    }

    #[test]
    fn a_removed_due_date_unschedules() {
        fresh();
        let first = schedule(1, "2026-11-27T17:00:00Z");
        let out = handle(&event(2, "task.updated", "pending", None));
        assert_eq!(kinds(&out), [CANCELLED]);
        assert_eq!(
            out[0].value.payload.message,
            "Reminder cancelled: \"Buy milk\" was unscheduled"
        );
        assert_eq!(reminder_id_of(&out[0]), reminder_id_of(&first));
        assert_eq!(state::get(NAME), None);
        assert_eq!(timers::due(NAME), None);
    }

    #[test]
    fn no_due_date_and_nothing_stored_is_nothing() {
        fresh();
        assert!(handle(&event(1, "task.created", "pending", None)).is_empty());
        assert!(handle(&event(2, "task.updated", "in_progress", None)).is_empty());
        assert!(state::entries(None, 10).is_empty());
        assert!(testing::take_due_timers().is_empty());
    }

    #[test]
    fn completion_and_deletion_cancel_the_stored_reminder() {
        for (event_type, status, why) in [
            ("task.updated", "completed", "completed"),
            ("task.created", "completed", "completed"),
            ("task.completed", "completed", "completed"),
            ("task.completed", "pending", "completed"),
            ("task.deleted", "pending", "deleted"),
            ("task.deleted", "completed", "deleted"),
        ] {
            fresh();
            let first = schedule(1, "2026-11-27T17:00:00Z");
            // The event's own due date and title do not matter: the stored reminder goes.
            let value = task_event(
                2,
                event_type,
                status,
                Some("2026-12-01T09:00:00Z"),
                "Renamed",
                TASK,
            );
            let out = handle(&value);
            assert_eq!(kinds(&out), [CANCELLED], "{event_type} {status}");
            let v = &out[0].value;
            assert_eq!(v.event_id, id(&["reminder-cancelled", &event_id(2)]));
            assert_eq!(
                v.payload.message,
                format!("Reminder cancelled: \"Buy milk\" was {why}")
            );
            assert_eq!(v.payload.reminder_id, reminder_id_of(&first));
            assert_eq!(v.payload.scheduled_time, "2026-11-27T16:45:00.000Z");
            assert_eq!(state::get(NAME), None);
            assert_eq!(timers::due(NAME), None);
        }
    }

    #[test]
    fn completion_with_nothing_stored_cancels_the_derived_reminder() {
        for (event_type, status, why) in [
            ("task.updated", "completed", "completed"),
            ("task.completed", "completed", "completed"),
            ("task.deleted", "pending", "deleted"),
        ] {
            fresh();
            let value = event(3, event_type, status, Some("2026-11-27T17:00:00Z"));
            let out = handle(&value);
            assert_eq!(kinds(&out), [CANCELLED]);
            // The ids and scheduled time the stateless deriver gave it.
            let v = &out[0].value;
            assert_eq!(
                v.payload.reminder_id,
                id(&["reminder", TASK, "2026-11-27T17:00:00.000Z"])
            );
            assert_eq!(v.payload.scheduled_time, "2026-11-27T16:45:00.000Z");
            assert_eq!(v.event_id, id(&["reminder-event", &event_id(3)]));
            assert_eq!(
                v.payload.message,
                format!("Reminder cancelled: \"Buy milk\" was {why}")
            );
            if event_type != "task.updated" {
                assert_eq!(out, [derive(&value, LEAD).unwrap().unwrap()]);
            }
            assert!(state::entries(None, 10).is_empty());
            assert_eq!(timers::due(NAME), None);
        }
    }

    #[test]
    fn completion_with_nothing_stored_and_no_due_date_is_nothing() {
        for (event_type, status) in [
            ("task.updated", "completed"),
            ("task.completed", "completed"),
            ("task.deleted", "pending"),
        ] {
            fresh();
            assert!(handle(&event(1, event_type, status, None)).is_empty());
            assert!(state::entries(None, 10).is_empty());
        }
    }

    #[test]
    fn a_due_timer_triggers_the_stored_reminder() {
        fresh();
        let scheduled = schedule(1, "2026-11-27T17:00:00Z");
        assert!(
            fire_at(ms("2026-11-27T16:44:59.999Z")).is_empty(),
            "not yet due"
        );
        let out = fire_at(ms("2026-11-27T16:45:00Z"));
        assert_eq!(kinds(&out), [TRIGGERED]);
        let reminder_id = reminder_id_of(&scheduled);
        assert_eq!(
            json(&out[0]),
            json!({
                "correlation_id": CORRELATION,
                "event_id": id(&["reminder-triggered", &reminder_id]),
                "event_type": "reminder.triggered",
                "payload": {
                    "message": "Reminder: \"Buy milk\" is due at 2026-11-27T17:00:00.000Z",
                    "reminder_id": reminder_id,
                    "scheduled_time": "2026-11-27T16:45:00.000Z",
                    "task_id": TASK,
                    "user_id": USER
                },
                "timestamp": "2026-11-27T16:45:00.000Z",
                "version": "1.0"
            })
        );
        assert_eq!(
            (out[0].key.as_str(), out[0].correlation_id.as_str()),
            (USER, CORRELATION)
        );
        assert_eq!(state::get(NAME), None, "the entry goes with the trigger");
        assert!(fire_at(ms("2026-11-28T00:00:00Z")).is_empty(), "once");
        // Completing the task afterwards has nothing stored to cancel.
        assert!(handle(&event(2, "task.completed", "completed", None)).is_empty());
    }

    #[test]
    fn a_stale_timer_triggers_nothing() {
        fresh();
        let first = schedule(1, "2026-11-27T17:00:00Z");
        handle(&event(
            2,
            "task.updated",
            "pending",
            Some("2026-11-28T17:00:00Z"),
        ));
        let entry = state::get(NAME);
        // The replaced reminder's timer (as if it had fired before the replacement
        // was handled) finds another reminder stored.
        assert!(handle_timer(NAME, reminder_id_of(&first).as_bytes()).is_empty());
        assert!(handle_timer(NAME, b"not a reminder id").is_empty());
        assert_eq!(state::get(NAME), entry, "the live reminder is kept");
    }

    #[test]
    fn a_timer_without_its_entry_triggers_nothing() {
        fresh();
        let first = schedule(1, "2026-11-27T17:00:00Z");
        let payload = reminder_id_of(&first);
        // Another key's scope does not see this key's entry.
        testing::set_key(Some(b"someone-else"));
        assert!(handle_timer(NAME, payload.as_bytes()).is_empty());
        testing::set_key(Some(USER.as_bytes()));
        assert!(state::exists(NAME));
        assert!(handle_timer("reminder:unknown", payload.as_bytes()).is_empty());
        state::delete(NAME);
        assert!(handle_timer(NAME, payload.as_bytes()).is_empty());
    }

    #[test]
    fn rescheduling_twice_leaves_one_live_reminder() {
        fresh();
        let a = schedule(1, "2026-11-27T17:00:00Z");
        let b = handle(&event(
            2,
            "task.updated",
            "pending",
            Some("2026-11-28T17:00:00Z"),
        ));
        let c = handle(&event(
            3,
            "task.updated",
            "pending",
            Some("2026-11-29T17:00:00Z"),
        ));
        assert_eq!(kinds(&b), [CANCELLED, SCHEDULED]);
        assert_eq!(kinds(&c), [CANCELLED, SCHEDULED]);
        assert_eq!(reminder_id_of(&b[0]), reminder_id_of(&a), "b cancels a");
        assert_eq!(reminder_id_of(&c[0]), reminder_id_of(&b[1]), "c cancels b");
        assert_eq!(
            c[0].value.payload.scheduled_time,
            "2026-11-28T16:45:00.000Z"
        );
        assert_ne!(b[0].value.event_id, c[0].value.event_id);
        assert_eq!(stored().unwrap().reminder_id, reminder_id_of(&c[1]));
        assert_eq!(state::entries(None, 10).len(), 1);
        // Only the last reminder fires, at its own time.
        assert!(fire_at(ms("2026-11-29T16:44:00Z")).is_empty());
        let out = fire_at(ms("2026-11-29T16:45:00Z"));
        assert_eq!(kinds(&out), [TRIGGERED]);
        assert_eq!(reminder_id_of(&out[0]), reminder_id_of(&c[1]));
    }

    #[test]
    fn tasks_and_keys_are_apart() {
        fresh();
        schedule(1, "2026-11-27T17:00:00Z");
        let other = "7e57c0de-0000-4000-8000-000000000002";
        let due = Some("2026-11-27T17:00:00Z");
        let out = handle(&task_event(
            2,
            "task.created",
            "pending",
            due,
            "Walk dog",
            other,
        ));
        assert_eq!(kinds(&out), [SCHEDULED]);
        assert_eq!(state::entries(None, 10).len(), 2);
        // The same task event under another key finds nothing stored there.
        testing::set_key(Some(b"another-key"));
        assert_eq!(
            kinds(&handle(&event(3, "task.created", "pending", due))),
            [SCHEDULED]
        );
        // Every key's timers fire, each with its own key in scope.
        let out = fire_at(ms("2026-11-27T16:45:00Z"));
        assert_eq!(kinds(&out), [TRIGGERED, TRIGGERED, TRIGGERED]);
    }

    #[test]
    fn outputs_and_state_are_deterministic() {
        let run = || {
            fresh();
            let inputs = [
                event(1, "task.created", "pending", Some("2026-11-27T17:00:00Z")),
                event(
                    2,
                    "task.updated",
                    "pending",
                    Some("2026-11-28T17:00:00+01:00"),
                ),
                event(
                    3,
                    "task.updated",
                    "in_progress",
                    Some("2026-11-28T16:00:00Z"),
                ),
            ];
            let mut bytes: Vec<Vec<u8>> = inputs
                .iter()
                .flat_map(|input| handle(input))
                .map(|r| r.to_json())
                .collect();
            bytes.push(state::get(NAME).unwrap());
            bytes.push(timers::due(NAME).unwrap().to_be_bytes().to_vec());
            bytes.extend(fire_at(i64::MAX).iter().map(Reminder::to_json));
            bytes
        };
        let first = run();
        // Scheduled; cancelled and scheduled; nothing (the same instant); entry,
        // due time; triggered.
        assert_eq!(first.len(), 6);
        assert_eq!(first, run());
    }

    #[test]
    fn a_timer_fired_again_gives_the_same_bytes() {
        // A timer may fire again (its outputs delivered, its removal lost in a
        // crash): with the same entry, the output is byte-identical.
        fresh();
        schedule(1, "2026-11-27T17:00:00Z");
        let entry = state::get(NAME).unwrap();
        let payload = stored().unwrap().reminder_id;
        let first = handle_timer(NAME, payload.as_bytes());
        state::set(NAME, &entry).unwrap();
        let again = handle_timer(NAME, payload.as_bytes());
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].to_json(), again[0].to_json());
    }

    #[test]
    fn a_refused_write_is_reported() {
        let value = event(1, "task.created", "pending", Some("2026-11-27T17:00:00Z"));
        fresh();
        testing::set_limits(testing::Limits {
            state_entries: 0,
            ..testing::Limits::default()
        });
        assert!(matches!(
            handle_task_event(&value, LEAD),
            Err(Refusal::StateLimit(_))
        ));
        assert_eq!(state::get(NAME), None);
        fresh();
        testing::set_limits(testing::Limits {
            timers: 0,
            ..testing::Limits::default()
        });
        assert!(matches!(
            handle_task_event(&value, LEAD),
            Err(Refusal::StateLimit(_))
        ));
        assert_eq!(timers::due(NAME), None);
    }

    #[test]
    fn invalid_events_are_refused_before_any_state() {
        fresh();
        assert!(matches!(
            handle_task_event(b"[]", LEAD),
            Err(Refusal::Invalid(_))
        ));
        assert!(state::entries(None, 10).is_empty());
    }

    #[test]
    fn an_unreadable_entry_counts_as_absent() {
        fresh();
        state::set(NAME, b"not json").unwrap();
        assert!(handle_timer(NAME, b"x").is_empty());
        let out = handle(&event(
            1,
            "task.created",
            "pending",
            Some("2026-11-27T17:00:00Z"),
        ));
        assert_eq!(kinds(&out), [SCHEDULED]);
        assert!(stored().is_some(), "replaced by a readable entry");
    }

    /// The span's events as (name, task id, reminder id, scheduled time).
    fn span_events() -> Vec<(String, String, String, String)> {
        testing::span_events()
            .into_iter()
            .map(|e| {
                let attribute = |key| e.attribute(key).unwrap_or_default().to_owned();
                (
                    e.name.clone(),
                    attribute("todo.task_id"),
                    attribute("todo.reminder_id"),
                    attribute("todo.scheduled_time"),
                )
            })
            .collect()
    }

    #[test]
    fn each_reminder_is_an_event_of_the_span() {
        fresh();
        let first = schedule(1, "2026-11-27T17:00:00Z");
        let s = |t: &str| t.to_owned();
        assert_eq!(
            span_events(),
            [(
                s(SCHEDULED),
                s(TASK),
                reminder_id_of(&first),
                s("2026-11-27T16:45:00.000Z")
            )]
        );

        // One call, one span: rescheduling cancels, then schedules.
        testing::clear_span();
        let out = handle(&event(
            2,
            "task.updated",
            "pending",
            Some("2026-11-28T17:00:00Z"),
        ));
        let second = reminder_id_of(&out[1]);
        assert_eq!(
            span_events(),
            [
                (
                    s(CANCELLED),
                    s(TASK),
                    reminder_id_of(&first),
                    s("2026-11-27T16:45:00.000Z")
                ),
                (
                    s(SCHEDULED),
                    s(TASK),
                    second.clone(),
                    s("2026-11-28T16:45:00.000Z")
                ),
            ]
        );

        testing::clear_span();
        assert_eq!(kinds(&fire_at(ms("2026-11-28T16:45:00Z"))), [TRIGGERED]);
        assert_eq!(
            span_events(),
            [(s(TRIGGERED), s(TASK), second, s("2026-11-28T16:45:00.000Z"))]
        );
        assert!(testing::span_attributes().is_empty());
    }

    #[test]
    fn an_unsampled_span_gets_no_events_and_the_same_outputs() {
        fresh();
        let value = event(1, "task.created", "pending", Some("2026-11-27T17:00:00Z"));
        let sampled = handle(&value);
        fresh();
        testing::set_recording(false);
        assert_eq!(handle(&value), sampled);
        assert!(testing::span_events().is_empty());
    }
}
