//! ui-projector: turns every task event into the task's current state for the UI,
//! keyed by `task_id` for a compacted topic (SPEC §7). `task.deleted` becomes a
//! tombstone so compaction forgets the task.
//!
//! Config: `output` (default `task-updates`).

use serde::Serialize;
use todo_events::{EventType, Rejection, TaskEvent};

pub const DEFAULT_OUTPUT: &str = "task-updates";

/// A task-update record: key `task_id`, value the task state or `None` (tombstone).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskUpdate {
    pub key: String,
    pub value: Option<TaskState>,
    pub event_type: &'static str,
    pub event_id: String,
    pub correlation_id: String,
}

/// A task's current state, the value of a task update. Fields in alphabetical
/// order, so the JSON is the same bytes a sorted map would give.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskState {
    pub correlation_id: String,
    pub description: Option<String>,
    pub due_date: Option<String>,
    pub event_id: String,
    pub priority: String,
    pub status: String,
    pub task_id: String,
    pub title: String,
    pub updated_at: String,
    pub user_id: String,
    pub version: String,
}

impl TaskState {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a task state always serializes")
    }
}

/// Projects one task event.
pub fn project(value: &[u8]) -> Result<TaskUpdate, Rejection> {
    let event = TaskEvent::parse(value)?;
    let event_id = event.event_id.to_string();
    let correlation_id = event.correlation_id.to_string();
    let task = event.task;
    let task_id = task.task_id.to_string();
    let (event_type, value) = match event.event_type {
        EventType::Deleted => ("task.deleted", None),
        other => (
            match other {
                EventType::Created => "task.created",
                EventType::Updated => "task.updated",
                _ => "task.completed",
            },
            Some(TaskState {
                correlation_id: correlation_id.clone(),
                description: task.description,
                due_date: task.due_date_text,
                event_id: event_id.clone(),
                priority: task.priority,
                status: task.status,
                task_id: task_id.clone(),
                title: task.title,
                updated_at: event.timestamp_text,
                user_id: task.user_id.to_string(),
                version: event.version,
            }),
        ),
    };
    Ok(TaskUpdate {
        key: task_id,
        value,
        event_type,
        event_id,
        correlation_id,
    })
}

#[cfg(target_arch = "wasm32")]
mod component {
    use std::sync::OnceLock;
    use weir_plugin_sdk::{Event, Failure, Guest, Header, Output, config_value};

    static OUTPUT: OnceLock<String> = OnceLock::new();

    struct Projector;

    impl Guest for Projector {
        fn init(config: Vec<(String, String)>) -> Result<(), String> {
            let output = config_value(&config, "output").unwrap_or(super::DEFAULT_OUTPUT);
            OUTPUT.get_or_init(|| output.to_owned());
            Ok(())
        }

        fn handle_event(event: Event) -> Result<Vec<Output>, Failure> {
            let value = event.value.as_deref().ok_or_else(|| {
                Failure::Invalid("a tombstone (null value) is not a task event".into())
            })?;
            let update = super::project(value).map_err(|r| Failure::Invalid(r.to_string()))?;
            Ok(vec![Output {
                to: OUTPUT
                    .get()
                    .map_or(super::DEFAULT_OUTPUT, String::as_str)
                    .to_owned(),
                key: Some(update.key.into_bytes()),
                value: update.value.map(|v| v.to_json()),
                headers: vec![
                    Header::text("event_type", update.event_type),
                    Header::text("event_id", &update.event_id),
                    Header::text("correlation_id", &update.correlation_id),
                ],
            }])
        }
    }

    weir_plugin_sdk::export!(Projector);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn event(event_type: &str, description: Value) -> Vec<u8> {
        json!({
            "event_id": "0b8f8d4e-3c1a-4f4e-9a53-6d2c1b7e9f10",
            "event_type": event_type,
            "timestamp": "2026-11-26T09:00:00Z",
            "version": "1.2",
            "correlation_id": "5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
            "payload": {
                "task_id": "7e57c0de-0000-4000-8000-000000000001",
                "user_id": "a11ce000-0000-4000-8000-000000000001",
                "title": "Buy milk",
                "description": description,
                "status": "pending",
                "priority": "low"
            }
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn projects_current_state() {
        let u = project(&event("task.updated", json!("2 litres"))).unwrap();
        assert_eq!(u.key, "7e57c0de-0000-4000-8000-000000000001");
        let state = u.value.unwrap();
        let v: Value = serde_json::from_slice(&state.to_json()).unwrap();
        assert_eq!(v["description"], "2 litres");
        assert_eq!(v["due_date"], Value::Null);
        assert_eq!(v["updated_at"], "2026-11-26T09:00:00Z");
        assert_eq!(v["event_id"], "0b8f8d4e-3c1a-4f4e-9a53-6d2c1b7e9f10");
        assert_eq!(v["version"], "1.2");
        // The same bytes as the task state as a sorted JSON map.
        assert_eq!(state.to_json(), v.to_string().into_bytes());
    }

    #[test]
    fn deletion_is_a_tombstone() {
        let u = project(&event("task.deleted", Value::Null)).unwrap();
        assert_eq!(u.value, None);
        assert_eq!(u.event_type, "task.deleted");
    }
}
