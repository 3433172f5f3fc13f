//! SPEC §7 written out independently of the plugins' code: what the Todo pipelines
//! must emit for a valid task event.
#![allow(dead_code)]

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::Value;

pub fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

pub fn fmt(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The reminder (event type, scheduled time) a valid task event implies, if any.
pub fn expected_reminder(event: &Value, lead: TimeDelta) -> Option<(&'static str, String)> {
    let payload = &event["payload"];
    let due = payload["due_date"].as_str().map(utc)?;
    let at = utc(event["timestamp"].as_str()?);
    match event["event_type"].as_str()? {
        "task.created" | "task.updated" if payload["status"] != "completed" => {
            Some(("reminder.scheduled", fmt((due - lead).max(at))))
        }
        "task.completed" | "task.deleted" => Some(("reminder.cancelled", fmt(due - lead))),
        _ => None,
    }
}
