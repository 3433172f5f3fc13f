//! SPEC §7 and the design's table of the Todo deriver (docs/design/state-and-timers.md,
//! "The Todo deriver") written out independently of the plugins' code: what the Todo
//! pipelines must emit for a sequence of valid task events, and when time passes.
//!
//! Ids are UUIDv5s of documented parts (`todo_events::derive_id`, the one naming
//! scheme every port shares), so the model gives whole reminder values.
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};
use todo_events::derive_id;

pub fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

pub fn fmt(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn id(parts: &[&str]) -> String {
    derive_id(parts).to_string()
}

fn text<'v>(value: &'v Value, field: &str) -> &'v str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {value}"))
}

/// A UUID as the deriver writes it (lower case, hyphenated).
fn uuid(value: &Value, field: &str) -> String {
    text(value, field).to_ascii_lowercase()
}

/// The live reminder of one task of one user: the `reminder.scheduled` that
/// scheduled it and the task's title then.
#[derive(Debug, Clone)]
struct Live {
    scheduled: Value,
    title: String,
    due_ms: i64,
}

/// The deriver's behaviour for one partition's worth of users: feed it the valid
/// task events in topic order ([`Reminders::event`]) and tell it when the clock
/// passes ([`Reminders::fire_due`]); it returns the reminder values, in order.
#[derive(Debug, Clone)]
pub struct Reminders {
    lead: TimeDelta,
    /// Live reminders by (user_id, task_id).
    live: BTreeMap<(String, String), Live>,
}

impl Reminders {
    pub fn new(lead: TimeDelta) -> Reminders {
        Reminders {
            lead,
            live: BTreeMap::new(),
        }
    }

    /// The reminders a valid task event gives, in order.
    pub fn event(&mut self, event: &Value) -> Vec<Value> {
        let payload = &event["payload"];
        let scope = (uuid(payload, "user_id"), uuid(payload, "task_id"));
        let event_type = text(event, "event_type");
        let ends = payload["status"] == "completed"
            || matches!(event_type, "task.completed" | "task.deleted");
        if ends {
            let why = if event_type == "task.deleted" {
                "deleted"
            } else {
                "completed"
            };
            return match self.live.remove(&scope) {
                Some(old) => vec![cancel_live(event, &old, why)],
                None => self.cancel_derived(event, why).into_iter().collect(),
            };
        }
        let asked = self.schedule(event);
        let old = self.live.remove(&scope);
        match (asked, old) {
            (Some(asked), Some(old))
                if asked.scheduled["payload"]["reminder_id"]
                    == old.scheduled["payload"]["reminder_id"] =>
            {
                // The same reminder (same task and due instant): nothing new.
                self.live.insert(scope, old);
                vec![]
            }
            (Some(asked), old) => {
                let mut out: Vec<Value> = old
                    .map(|old| cancel_live(event, &old, "rescheduled"))
                    .into_iter()
                    .collect();
                out.push(asked.scheduled.clone());
                self.live.insert(scope, asked);
                out
            }
            (None, Some(old)) => vec![cancel_live(event, &old, "unscheduled")],
            (None, None) => vec![],
        }
    }

    /// The `reminder.triggered` of every live reminder due at `now_ms` (wall clock,
    /// ms since the epoch), by due time; they are no longer live.
    pub fn fire_due(&mut self, now_ms: i64) -> Vec<Value> {
        let mut due: Vec<((String, String), i64)> = self
            .live
            .iter()
            .filter(|(_, l)| l.due_ms <= now_ms)
            .map(|(scope, l)| (scope.clone(), l.due_ms))
            .collect();
        due.sort_by_key(|(_, at)| *at);
        due.into_iter()
            .map(|(scope, _)| triggered(&self.live.remove(&scope).expect("listed above")))
            .collect()
    }

    /// How many reminders are live (scheduled, not yet triggered or cancelled).
    pub fn pending(&self) -> usize {
        self.live.len()
    }

    /// When the latest live reminder is due (ms since the epoch).
    pub fn last_due_ms(&self) -> Option<i64> {
        self.live.values().map(|l| l.due_ms).max()
    }

    /// The reminder an event with a `due_date` asks for; `None` without one.
    fn schedule(&self, event: &Value) -> Option<Live> {
        let payload = &event["payload"];
        let due = utc(payload["due_date"].as_str()?);
        let at = (due - self.lead).max(utc(text(event, "timestamp")));
        let (task, user) = (uuid(payload, "task_id"), uuid(payload, "user_id"));
        let title = text(payload, "title").to_owned();
        let scheduled = json!({
            "correlation_id": uuid(event, "correlation_id"),
            "event_id": id(&["reminder-event", &uuid(event, "event_id")]),
            "event_type": "reminder.scheduled",
            "payload": {
                "message": format!("Reminder: \"{title}\" is due at {}", fmt(due)),
                "reminder_id": id(&["reminder", &task, &fmt(due)]),
                "scheduled_time": fmt(at),
                "task_id": task,
                "user_id": user,
            },
            "timestamp": text(event, "timestamp"),
            "version": text(event, "version"),
        });
        Some(Live {
            scheduled,
            title,
            due_ms: at.timestamp_millis(),
        })
    }

    /// With nothing live, an ending event cancels the reminder its `due_date`
    /// derives, as the deriver did before it kept state (at `due_date - lead`).
    fn cancel_derived(&self, event: &Value, why: &str) -> Option<Value> {
        let payload = &event["payload"];
        let due = utc(payload["due_date"].as_str()?);
        let task = uuid(payload, "task_id");
        Some(json!({
            "correlation_id": uuid(event, "correlation_id"),
            "event_id": id(&["reminder-event", &uuid(event, "event_id")]),
            "event_type": "reminder.cancelled",
            "payload": {
                "message": format!("Reminder cancelled: \"{}\" was {why}", text(payload, "title")),
                "reminder_id": id(&["reminder", &task, &fmt(due)]),
                "scheduled_time": fmt(due - self.lead),
                "task_id": task,
                "user_id": uuid(payload, "user_id"),
            },
            "timestamp": text(event, "timestamp"),
            "version": text(event, "version"),
        }))
    }
}

/// The `reminder.cancelled` of a live reminder, caused by `event`.
fn cancel_live(event: &Value, old: &Live, why: &str) -> Value {
    let was = &old.scheduled["payload"];
    json!({
        "correlation_id": uuid(event, "correlation_id"),
        "event_id": id(&["reminder-cancelled", &uuid(event, "event_id")]),
        "event_type": "reminder.cancelled",
        "payload": {
            "message": format!("Reminder cancelled: \"{}\" was {why}", old.title),
            "reminder_id": was["reminder_id"],
            "scheduled_time": was["scheduled_time"],
            "task_id": was["task_id"],
            "user_id": was["user_id"],
        },
        "timestamp": text(event, "timestamp"),
        "version": text(event, "version"),
    })
}

/// The `reminder.triggered` of a live reminder: everything from the event that
/// scheduled it, stamped with its scheduled time.
fn triggered(live: &Live) -> Value {
    let s = &live.scheduled;
    let p = &s["payload"];
    json!({
        "correlation_id": s["correlation_id"],
        "event_id": id(&["reminder-triggered", text(p, "reminder_id")]),
        "event_type": "reminder.triggered",
        "payload": p,
        "timestamp": p["scheduled_time"],
        "version": s["version"],
    })
}

/// The reminders of valid task events handled one after the other on a live
/// pipeline whose every reminder is already due by the wall clock `now_ms` (the
/// samples are dated before any test runs): each scheduled reminder triggers right
/// after the event that scheduled it, before the key's next event. Panics if one is
/// not due yet, since when it fires would then depend on timing.
pub fn reminders_all_due(events: &[Value], lead: TimeDelta, now_ms: i64) -> Vec<Value> {
    let mut model = Reminders::new(lead);
    let mut out = Vec::new();
    for event in events {
        out.extend(model.event(event));
        out.extend(model.fire_due(now_ms));
        assert_eq!(
            model.pending(),
            0,
            "a reminder is not due yet at {now_ms}: the model assumes sample dates in the past"
        );
    }
    out
}
