//! The Todo chatbot's task event, as the seed brief defines it.
//!
//! [`TaskEvent::parse`] is the single validator: the `task-validator` plugin uses it to
//! reject bad events, and the other plugins use it to read events they are handed.
//! Every rejection names the field and the problem, for `weir.error.message`.
//! Output ids are derived with UUIDv5 from input ids, never from a clock or a random
//! source, so a replay produces byte-identical outputs.

pub mod sample;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Namespace of every UUIDv5 this crate derives.
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b1d_2f0e_8a4c_4e57_9d0e_5c1f_7a2b_3c4d);

/// The major schema version these plugins understand.
pub const SUPPORTED_MAJOR: u64 = 1;

/// The four task lifecycle events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Created,
    Updated,
    Completed,
    Deleted,
}

impl EventType {
    const NAMES: &'static str = "task.created|task.updated|task.completed|task.deleted";

    fn parse(s: &str) -> Option<EventType> {
        Some(match s {
            "task.created" => EventType::Created,
            "task.updated" => EventType::Updated,
            "task.completed" => EventType::Completed,
            "task.deleted" => EventType::Deleted,
            _ => return None,
        })
    }

    /// The name on the wire (`event_type`), such as `task.created`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "task.created",
            EventType::Updated => "task.updated",
            EventType::Completed => "task.completed",
            EventType::Deleted => "task.deleted",
        }
    }
}

/// A task event that passed validation. Borrowed fields keep the original text.
#[derive(Debug, Clone)]
pub struct TaskEvent {
    pub event_id: Uuid,
    pub event_type: EventType,
    pub timestamp: DateTime<FixedOffset>,
    /// The `timestamp` text exactly as received.
    pub timestamp_text: String,
    pub version: String,
    pub correlation_id: Uuid,
    pub task: Task,
}

/// The task state carried in an event's `payload`.
#[derive(Debug, Clone)]
pub struct Task {
    pub task_id: Uuid,
    pub user_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub status: String,
    pub priority: String,
    pub due_date: Option<DateTime<FixedOffset>>,
    /// The `due_date` text exactly as received (`None` when null or absent).
    pub due_date_text: Option<String>,
}

impl Task {
    pub fn is_completed(&self) -> bool {
        self.status == "completed"
    }
}

/// Why an event was rejected; `Display` gives `field: problem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "{}: {}", self.field, self.problem)
        }
    }
}

impl std::error::Error for Rejection {}

fn reject(field: &str, problem: impl Into<String>) -> Rejection {
    Rejection {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

const STATUSES: &[&str] = &["pending", "in_progress", "completed"];
const PRIORITIES: &[&str] = &["low", "medium", "high"];

/// The shape of a well-formed event, borrowed from the input bytes: the fast path.
/// Anything it cannot take (a wrong type, a null where text is required, an escaped
/// string) falls back to the checked path, which names the problem.
#[derive(serde::Deserialize)]
struct Borrowed<'a> {
    event_id: &'a str,
    event_type: &'a str,
    timestamp: &'a str,
    version: &'a str,
    correlation_id: &'a str,
    payload: BorrowedTask<'a>,
}

#[derive(serde::Deserialize)]
struct BorrowedTask<'a> {
    task_id: &'a str,
    user_id: &'a str,
    title: &'a str,
    #[serde(default)]
    description: Option<&'a str>,
    status: &'a str,
    priority: &'a str,
    #[serde(default)]
    due_date: Option<&'a str>,
}

/// The typed values of a [`Borrowed`] event that passed every rule.
struct Checked {
    event_id: Uuid,
    event_type: EventType,
    timestamp: DateTime<FixedOffset>,
    correlation_id: Uuid,
    task_id: Uuid,
    user_id: Uuid,
    due_date: Option<DateTime<FixedOffset>>,
}

impl Borrowed<'_> {
    /// Applies every rule; `None` sends the caller to the checked path.
    fn check(&self) -> Option<Checked> {
        let task = &self.payload;
        if task.title.trim().is_empty()
            || !STATUSES.contains(&task.status)
            || !PRIORITIES.contains(&task.priority)
            || check_version(self.version).is_err()
        {
            return None;
        }
        let due_date = match task.due_date {
            None => None,
            Some(text) => Some(DateTime::parse_from_rfc3339(text).ok()?),
        };
        Some(Checked {
            event_id: Uuid::try_parse(self.event_id).ok()?,
            event_type: EventType::parse(self.event_type)?,
            timestamp: DateTime::parse_from_rfc3339(self.timestamp).ok()?,
            correlation_id: Uuid::try_parse(self.correlation_id).ok()?,
            task_id: Uuid::try_parse(task.task_id).ok()?,
            user_id: Uuid::try_parse(task.user_id).ok()?,
            due_date,
        })
    }

    /// The event, if every rule holds.
    fn accept(&self) -> Option<TaskEvent> {
        let checked = self.check()?;
        let task = &self.payload;
        Some(TaskEvent {
            event_id: checked.event_id,
            event_type: checked.event_type,
            timestamp: checked.timestamp,
            timestamp_text: self.timestamp.to_owned(),
            version: self.version.to_owned(),
            correlation_id: checked.correlation_id,
            task: Task {
                task_id: checked.task_id,
                user_id: checked.user_id,
                title: task.title.to_owned(),
                description: task.description.map(str::to_owned),
                status: task.status.to_owned(),
                priority: task.priority.to_owned(),
                due_date: checked.due_date,
                due_date_text: task.due_date.map(str::to_owned),
            },
        })
    }
}

impl TaskEvent {
    /// Parses and validates a task event from its JSON bytes.
    ///
    /// Well-formed events take one pass of typed, borrowing deserialisation. Others
    /// take the checked path over a JSON tree, which reports the first problem in
    /// field order; both paths apply the same rules (tested on every sample).
    pub fn parse(bytes: &[u8]) -> Result<TaskEvent, Rejection> {
        if let Some(event) = serde_json::from_slice::<Borrowed<'_>>(bytes)
            .ok()
            .and_then(|b| b.accept())
        {
            return Ok(event);
        }
        TaskEvent::parse_checked(bytes)
    }

    /// Validates a task event without keeping it: what the validator needs.
    pub fn validate(bytes: &[u8]) -> Result<(), Rejection> {
        if serde_json::from_slice::<Borrowed<'_>>(bytes)
            .ok()
            .and_then(|b| b.check())
            .is_some()
        {
            return Ok(());
        }
        TaskEvent::parse_checked(bytes).map(drop)
    }

    /// The checked path: every field in order, naming the first problem.
    fn parse_checked(bytes: &[u8]) -> Result<TaskEvent, Rejection> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| reject("", format!("invalid JSON: {e}")))?;
        let root = value
            .as_object()
            .ok_or_else(|| reject("", format!("expected a JSON object, got {}", kind(&value))))?;

        let event_id = uuid_field(root, "", "event_id")?;
        let event_type_text = string_field(root, "", "event_type")?;
        let event_type = EventType::parse(event_type_text).ok_or_else(|| {
            reject(
                "event_type",
                format!(
                    "expected one of {}, got {:?}",
                    EventType::NAMES,
                    event_type_text
                ),
            )
        })?;
        let timestamp_text = string_field(root, "", "timestamp")?;
        let timestamp = rfc3339("timestamp", timestamp_text)?;
        let version = string_field(root, "", "version")?;
        check_version(version)?;
        let correlation_id = uuid_field(root, "", "correlation_id")?;

        let payload = match root.get("payload") {
            None | Some(Value::Null) => return Err(reject("payload", "missing required field")),
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(reject(
                    "payload",
                    format!("expected an object, got {}", kind(other)),
                ));
            }
        };
        let p = "payload.";
        let task_id = uuid_field(payload, p, "task_id")?;
        let user_id = uuid_field(payload, p, "user_id")?;
        let title = string_field(payload, p, "title")?;
        if title.trim().is_empty() {
            return Err(reject("payload.title", "must not be empty"));
        }
        let description = match payload.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(reject(
                    "payload.description",
                    format!("expected a string, got {}", kind(other)),
                ));
            }
        };
        let status = one_of(payload, p, "status", STATUSES)?;
        let priority = one_of(payload, p, "priority", PRIORITIES)?;
        let (due_date, due_date_text) = match payload.get("due_date") {
            None | Some(Value::Null) => (None, None),
            Some(Value::String(s)) => (Some(rfc3339("payload.due_date", s)?), Some(s.clone())),
            Some(other) => {
                return Err(reject(
                    "payload.due_date",
                    format!("expected an RFC 3339 string or null, got {}", kind(other)),
                ));
            }
        };

        Ok(TaskEvent {
            event_id,
            event_type,
            timestamp,
            timestamp_text: timestamp_text.to_owned(),
            version: version.to_owned(),
            correlation_id,
            task: Task {
                task_id,
                user_id,
                title: title.to_owned(),
                description,
                status: status.to_owned(),
                priority: priority.to_owned(),
                due_date,
                due_date_text,
            },
        })
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string_field<'a>(
    map: &'a Map<String, Value>,
    prefix: &str,
    name: &str,
) -> Result<&'a str, Rejection> {
    match map.get(name) {
        None | Some(Value::Null) => {
            Err(reject(&format!("{prefix}{name}"), "missing required field"))
        }
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(reject(
            &format!("{prefix}{name}"),
            format!("expected a string, got {}", kind(other)),
        )),
    }
}

fn uuid_field(map: &Map<String, Value>, prefix: &str, name: &str) -> Result<Uuid, Rejection> {
    let text = string_field(map, prefix, name)?;
    Uuid::try_parse(text).map_err(|_| {
        reject(
            &format!("{prefix}{name}"),
            format!("expected a UUID, got {text:?}"),
        )
    })
}

fn one_of<'a>(
    map: &'a Map<String, Value>,
    prefix: &str,
    name: &str,
    allowed: &[&str],
) -> Result<&'a str, Rejection> {
    let text = string_field(map, prefix, name)?;
    if allowed.contains(&text) {
        Ok(text)
    } else {
        Err(reject(
            &format!("{prefix}{name}"),
            format!("expected one of {}, got {text:?}", allowed.join("|")),
        ))
    }
}

fn rfc3339(field: &str, text: &str) -> Result<DateTime<FixedOffset>, Rejection> {
    DateTime::parse_from_rfc3339(text).map_err(|e| {
        reject(
            field,
            format!("expected an RFC 3339 timestamp, got {text:?} ({e})"),
        )
    })
}

fn check_version(version: &str) -> Result<(), Rejection> {
    let major = version.split('.').next().unwrap_or_default();
    match major.parse::<u64>() {
        Ok(SUPPORTED_MAJOR) => Ok(()),
        Ok(other) => Err(reject(
            "version",
            format!(
                "unsupported major version {other} (this plugin understands {SUPPORTED_MAJOR}.x), got {version:?}"
            ),
        )),
        Err(_) => Err(reject(
            "version",
            format!("expected \"MAJOR.MINOR\", got {version:?}"),
        )),
    }
}

/// Formats a timestamp the one way every output uses: UTC, millisecond precision, `Z`.
pub fn format_utc(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A UUIDv5 in [`ID_NAMESPACE`] from the given parts, joined by `/`.
pub fn derive_id(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, parts.join("/").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "event_id": "0b8f8d4e-3c1a-4f4e-9a53-6d2c1b7e9f10",
            "event_type": "task.created",
            "timestamp": "2026-11-26T09:00:00Z",
            "version": "1.0",
            "correlation_id": "5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
            "payload": {
                "task_id": "7e57c0de-0000-4000-8000-000000000001",
                "user_id": "a11ce000-0000-4000-8000-000000000001",
                "title": "Buy milk",
                "status": "pending",
                "priority": "high",
                "due_date": "2026-11-27T18:00:00+01:00"
            }
        })
    }

    fn parse(v: &Value) -> Result<TaskEvent, Rejection> {
        TaskEvent::parse(v.to_string().as_bytes())
    }

    fn rejection(mutate: impl FnOnce(&mut Value)) -> String {
        let mut v = sample();
        mutate(&mut v);
        parse(&v).expect_err("should be rejected").to_string()
    }

    #[test]
    fn fast_and_checked_paths_agree() {
        use chrono::TimeZone;
        let start = Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap();
        let mut escaped = sample();
        escaped["payload"]["title"] = json!("Say \"hi\"\n");
        let mut values: Vec<Vec<u8>> = sample::generate(3000, 5, start)
            .into_iter()
            .map(|e| e.value)
            .collect();
        values.push(escaped.to_string().into_bytes());
        let mut fast = 0;
        for bytes in &values {
            let borrowed = serde_json::from_slice::<Borrowed<'_>>(bytes)
                .ok()
                .and_then(|b| b.accept());
            let checked = TaskEvent::parse_checked(bytes);
            match (&borrowed, &checked) {
                (Some(a), Ok(b)) => {
                    assert_eq!(format!("{a:?}"), format!("{b:?}"));
                    fast += 1;
                }
                (Some(a), Err(e)) => panic!("fast path accepted what is rejected ({e}): {a:?}"),
                (None, _) => {}
            }
            assert_eq!(
                format!("{:?}", TaskEvent::parse(bytes)),
                format!("{checked:?}")
            );
            assert_eq!(
                TaskEvent::validate(bytes).err(),
                checked.as_ref().err().cloned()
            );
        }
        // Every generated valid event takes the fast path.
        assert!(fast >= values.len() * 9 / 10, "{fast} of {}", values.len());
    }

    #[test]
    fn valid_event_parses() {
        let e = parse(&sample()).unwrap();
        assert_eq!(e.event_type, EventType::Created);
        assert_eq!(e.task.title, "Buy milk");
        assert_eq!(
            e.task.due_date_text.as_deref(),
            Some("2026-11-27T18:00:00+01:00")
        );
        assert_eq!(e.task.description, None);
    }

    #[test]
    fn event_type_names_round_trip() {
        let names: Vec<&str> = EventType::NAMES.split('|').collect();
        for name in names {
            assert_eq!(EventType::parse(name).map(EventType::as_str), Some(name));
        }
    }

    #[test]
    fn extra_fields_and_minor_versions_are_accepted() {
        let mut v = sample();
        v["version"] = json!("1.7");
        v["payload"]["labels"] = json!(["home"]);
        v["source"] = json!("mobile");
        assert!(parse(&v).is_ok());
    }

    #[test]
    fn rejections_name_field_and_problem() {
        assert!(
            TaskEvent::parse(b"{not json")
                .unwrap_err()
                .to_string()
                .starts_with("invalid JSON")
        );
        assert_eq!(
            rejection(|v| v["payload"]["priority"] = json!("urgent")),
            r#"payload.priority: expected one of low|medium|high, got "urgent""#
        );
        assert_eq!(
            rejection(|v| v["payload"]["status"] = json!("done")),
            r#"payload.status: expected one of pending|in_progress|completed, got "done""#
        );
        assert_eq!(
            rejection(|v| v["event_type"] = json!("task.archived")),
            r#"event_type: expected one of task.created|task.updated|task.completed|task.deleted, got "task.archived""#
        );
        assert_eq!(
            rejection(|v| v["payload"]["task_id"] = json!("42")),
            r#"payload.task_id: expected a UUID, got "42""#
        );
        assert_eq!(
            rejection(|v| v
                .as_object_mut()
                .unwrap()
                .remove("correlation_id")
                .map(drop)
                .unwrap()),
            "correlation_id: missing required field"
        );
        assert_eq!(
            rejection(|v| v["payload"]["title"] = json!("  ")),
            "payload.title: must not be empty"
        );
        assert!(
            rejection(|v| v["timestamp"] = json!("yesterday"))
                .starts_with("timestamp: expected an RFC 3339")
        );
        assert!(
            rejection(|v| v["payload"]["due_date"] = json!("2026-13-01"))
                .starts_with("payload.due_date:")
        );
        assert!(
            rejection(|v| v["version"] = json!("2.0"))
                .starts_with("version: unsupported major version 2")
        );
        assert_eq!(
            rejection(|v| v["payload"]["description"] = json!(5)),
            "payload.description: expected a string, got a number"
        );
        assert_eq!(
            rejection(|v| v["payload"] = json!([])),
            "payload: expected an object, got an array"
        );
    }

    #[test]
    fn null_due_date_is_absent() {
        let mut v = sample();
        v["payload"]["due_date"] = Value::Null;
        assert!(parse(&v).unwrap().task.due_date.is_none());
    }

    #[test]
    fn derived_ids_are_stable() {
        assert_eq!(derive_id(&["a", "b"]), derive_id(&["a", "b"]));
        assert_ne!(derive_id(&["a", "b"]), derive_id(&["a/b", ""]));
        assert_eq!(derive_id(&["x"]).get_version_num(), 5);
    }
}
