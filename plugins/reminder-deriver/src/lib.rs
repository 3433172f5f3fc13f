//! reminder-deriver: turns task events into reminder events (SPEC §7).
//!
//! `task.created`/`task.updated` with a `due_date` and a status other than `completed`
//! schedule a reminder at `max(due_date - lead-time, event timestamp)`;
//! `task.completed`/`task.deleted` with a `due_date` cancel it. The reminder id is a
//! UUIDv5 of the task id and the due date, so scheduling and cancelling agree without
//! any state, and every output is a pure function of its input.
//!
//! Config: `lead-time` (humantime, default `15m`), `output` (default `reminders`).

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde::Serialize;
use todo_events::{EventType, Rejection, TaskEvent, derive_id, format_utc};

pub const DEFAULT_OUTPUT: &str = "reminders";
pub const DEFAULT_LEAD_TIME: Duration = Duration::from_secs(15 * 60);

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

/// Derives the reminder event (if any) caused by one task event.
pub fn derive(value: &[u8], lead_time: Duration) -> Result<Option<Reminder>, Rejection> {
    let event = TaskEvent::parse(value)?;
    let Some(due) = event.task.due_date else {
        return Ok(None);
    };
    let due = due.with_timezone(&Utc);
    let lead = TimeDelta::from_std(lead_time).unwrap_or(TimeDelta::MAX);
    let remind_at = due.checked_sub_signed(lead).unwrap_or(due);
    let (event_type, scheduled, message) = match event.event_type {
        EventType::Created | EventType::Updated if !event.task.is_completed() => (
            "reminder.scheduled",
            remind_at.max(event.timestamp.with_timezone(&Utc)),
            format!(
                "Reminder: \"{}\" is due at {}",
                event.task.title,
                format_utc(due)
            ),
        ),
        EventType::Created | EventType::Updated => return Ok(None),
        EventType::Completed | EventType::Deleted => (
            "reminder.cancelled",
            remind_at,
            format!(
                "Reminder cancelled: \"{}\" was {}",
                event.task.title,
                if event.event_type == EventType::Completed {
                    "completed"
                } else {
                    "deleted"
                }
            ),
        ),
    };
    let task_id = event.task.task_id.to_string();
    let user_id = event.task.user_id.to_string();
    let reminder_id = derive_id(&["reminder", &task_id, &format_utc(due)]);
    let event_id = derive_id(&["reminder-event", &event.event_id.to_string()]);
    let correlation_id = event.correlation_id.to_string();
    let value = ReminderEvent {
        correlation_id: correlation_id.clone(),
        event_id: event_id.to_string(),
        event_type,
        payload: ReminderPayload {
            message,
            reminder_id: reminder_id.to_string(),
            scheduled_time: format_utc(scheduled),
            task_id,
            user_id: user_id.clone(),
        },
        timestamp: event.timestamp_text,
        version: event.version,
    };
    Ok(Some(Reminder {
        event_type,
        key: user_id,
        value,
        correlation_id,
    }))
}

#[cfg(target_arch = "wasm32")]
mod component {
    use std::sync::OnceLock;
    use weir_plugin_sdk::{Event, Failure, Guest, Header, Output};

    static SETTINGS: OnceLock<super::Settings> = OnceLock::new();

    struct Deriver;

    impl Guest for Deriver {
        fn init(config: Vec<(String, String)>) -> Result<(), String> {
            let settings = super::parse_config(&config)?;
            SETTINGS.get_or_init(|| settings);
            Ok(())
        }

        fn handle_event(event: Event) -> Result<Vec<Output>, Failure> {
            let settings = SETTINGS
                .get()
                .ok_or_else(|| Failure::Transient("handle-event called before init".into()))?;
            let value = event.value.as_deref().ok_or_else(|| {
                Failure::Invalid("a tombstone (null value) is not a task event".into())
            })?;
            let reminder = super::derive(value, settings.lead_time)
                .map_err(|r| Failure::Invalid(r.to_string()))?;
            Ok(reminder
                .map(|r| Output {
                    to: settings.output.clone(),
                    value: Some(r.to_json()),
                    key: Some(r.key.into_bytes()),
                    headers: vec![
                        Header::text("event_type", r.event_type),
                        Header::text("correlation_id", &r.correlation_id),
                    ],
                })
                .into_iter()
                .collect())
        }
    }

    weir_plugin_sdk::export!(Deriver);
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
