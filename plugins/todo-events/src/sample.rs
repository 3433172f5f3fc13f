//! Deterministic sample traffic: task lifecycles (created, maybe updated, then
//! completed or deleted, or left open) for a handful of users, with a share of
//! invalid events of every kind the validator rejects. Used by `weir demo`, the
//! end-to-end tests and the benchmarks.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::derive_id;

/// One generated record.
#[derive(Debug, Clone)]
pub struct SampleEvent {
    /// `user_id`, the topic key.
    pub key: String,
    pub value: Vec<u8>,
    /// Whether the validator should accept it.
    pub valid: bool,
}

/// A small deterministic generator (SplitMix64), so samples need no RNG crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const TITLES: &[&str] = &[
    "Buy milk",
    "Call the dentist",
    "Renew passport",
    "Submit expense report",
    "Water the plants",
    "Prepare slides for Monday",
    "Book train tickets",
    "Pay electricity bill",
    "Fix the leaking tap",
    "Read chapter 4",
    "Plan birthday party",
    "Back up laptop",
    "Send invoice",
    "Walk the dog",
    "Update résumé",
    "Order printer ink",
    "Review pull request",
    "Schedule team lunch",
];

const DESCRIPTIONS: &[&str] = &[
    "Semi-skimmed, two litres",
    "Ask about the crown on the upper left molar",
    "Photos are in the drawer",
    "Use the Q3 numbers from the finance dashboard",
    "Window seat if possible, return on Sunday",
    "External drive is in the second drawer",
];

struct Task {
    id: String,
    user: String,
    title: &'static str,
    description: Option<&'static str>,
    priority: &'static str,
    due: Option<DateTime<Utc>>,
    status: &'static str,
    correlation: String,
    /// Remaining lifecycle steps.
    steps: Vec<&'static str>,
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Generates `count` records for 8 users starting at `start`, 5% of them invalid.
pub fn generate(count: usize, seed: u64, start: DateTime<Utc>) -> Vec<SampleEvent> {
    generate_for_users(count, 8, seed, start)
}

/// Like [`generate`], spread over `users` users (the topic key), so that keys cover
/// many partitions. Up to `max(40, 5 × users)` tasks are open at once.
pub fn generate_for_users(
    count: usize,
    users: usize,
    seed: u64,
    start: DateTime<Utc>,
) -> Vec<SampleEvent> {
    let mut rng = Rng(seed);
    let seed_text = seed.to_string();
    let max_open = (5 * users).max(40);
    let users: Vec<String> = (0..users.max(1))
        .map(|u| derive_id(&["sample-user", &seed_text, &u.to_string()]).to_string())
        .collect();
    let mut open: Vec<Task> = Vec::new();
    let mut out = Vec::with_capacity(count);
    let mut clock = start;
    let mut serial = 0u64;
    while out.len() < count {
        serial += 1;
        clock += TimeDelta::seconds(1 + rng.below(20) as i64);
        let event_id = derive_id(&["sample-event", &seed_text, &serial.to_string()]).to_string();
        if rng.chance(5) {
            out.push(invalid(&mut rng, &users, &event_id, clock));
            continue;
        }
        if open.is_empty() || (open.len() < max_open && rng.chance(35)) {
            let user = users[rng.below(users.len() as u64) as usize].clone();
            let due = rng
                .chance(70)
                .then(|| clock + TimeDelta::minutes(5 + rng.below(60 * 24 * 7) as i64));
            let mut steps = vec!["task.updated"; rng.below(3) as usize];
            match rng.below(10) {
                0..=4 => steps.push("task.completed"),
                5..=7 => steps.push("task.deleted"),
                _ => {}
            }
            let task = Task {
                id: derive_id(&["sample-task", &seed_text, &serial.to_string()]).to_string(),
                user,
                title: rng.pick(TITLES),
                description: rng.chance(50).then(|| rng.pick(DESCRIPTIONS)),
                priority: rng.pick(&["low", "medium", "high"]),
                due,
                status: "pending",
                correlation: derive_id(&["sample-conversation", &seed_text, &serial.to_string()])
                    .to_string(),
                steps,
            };
            out.push(task_event(&task, "task.created", &event_id, clock));
            if !task.steps.is_empty() {
                open.push(task);
            }
            continue;
        }
        let index = rng.below(open.len() as u64) as usize;
        let task = &mut open[index];
        let step = task.steps.remove(0);
        match step {
            "task.updated" => {
                task.status = if rng.chance(50) {
                    "in_progress"
                } else {
                    task.status
                };
                if rng.chance(40) {
                    task.due = Some(clock + TimeDelta::minutes(rng.below(60 * 24 * 3) as i64));
                }
                if rng.chance(30) {
                    task.priority = "high";
                }
            }
            "task.completed" => task.status = "completed",
            _ => {}
        }
        out.push(task_event(task, step, &event_id, clock));
        if task.steps.is_empty() {
            open.swap_remove(index);
        }
    }
    out
}

fn task_event(task: &Task, event_type: &str, event_id: &str, at: DateTime<Utc>) -> SampleEvent {
    let mut payload = json!({
        "task_id": task.id,
        "user_id": task.user,
        "title": task.title,
        "status": task.status,
        "priority": task.priority,
        "due_date": task.due.map(timestamp),
    });
    if let Some(description) = task.description {
        payload["description"] = json!(description);
    }
    let value = json!({
        "event_id": event_id,
        "event_type": event_type,
        "timestamp": timestamp(at),
        "version": "1.0",
        "correlation_id": task.correlation,
        "payload": payload,
    });
    SampleEvent {
        key: task.user.clone(),
        value: value.to_string().into_bytes(),
        valid: true,
    }
}

/// An event broken in one of the ways the validator rejects.
fn invalid(rng: &mut Rng, users: &[String], event_id: &str, at: DateTime<Utc>) -> SampleEvent {
    let user = users[rng.below(users.len() as u64) as usize].clone();
    let task = Task {
        id: derive_id(&["sample-bad-task", event_id]).to_string(),
        user: user.clone(),
        title: rng.pick(TITLES),
        description: None,
        priority: "medium",
        due: Some(at + TimeDelta::hours(3)),
        status: "pending",
        correlation: derive_id(&["sample-bad-conversation", event_id]).to_string(),
        steps: Vec::new(),
    };
    let good = task_event(&task, "task.created", event_id, at);
    let mut value: Value = serde_json::from_slice(&good.value).expect("generated JSON parses");
    let bytes = match rng.below(12) {
        0 => b"{\"event_id\": \"truncated".to_vec(),
        1 => {
            value["payload"]["priority"] = json!("urgent");
            value.to_string().into_bytes()
        }
        2 => {
            value["payload"]["status"] = json!("done");
            value.to_string().into_bytes()
        }
        3 => {
            value["event_type"] = json!("task.archived");
            value.to_string().into_bytes()
        }
        4 => {
            value["payload"]["task_id"] = json!("task-42");
            value.to_string().into_bytes()
        }
        5 => {
            value.as_object_mut().map(|o| o.remove("correlation_id"));
            value.to_string().into_bytes()
        }
        6 => {
            value["payload"]["title"] = json!("");
            value.to_string().into_bytes()
        }
        7 => {
            value["timestamp"] = json!("yesterday at noon");
            value.to_string().into_bytes()
        }
        8 => {
            value["payload"]["due_date"] = json!("next friday");
            value.to_string().into_bytes()
        }
        9 => {
            value["version"] = json!("2.0");
            value.to_string().into_bytes()
        }
        10 => {
            value["payload"]["user_id"] = json!(12345);
            value.to_string().into_bytes()
        }
        _ => {
            value.as_object_mut().map(|o| o.remove("payload"));
            value.to_string().into_bytes()
        }
    };
    SampleEvent {
        key: user,
        value: bytes,
        valid: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskEvent;

    #[test]
    fn generated_events_are_as_labelled() {
        let start = DateTime::parse_from_rfc3339("2026-11-26T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let events = generate(2000, 42, start);
        assert_eq!(events.len(), 2000);
        let invalid = events.iter().filter(|e| !e.valid).count();
        assert!((50..=150).contains(&invalid), "{invalid} invalid");
        for event in &events {
            assert_eq!(
                TaskEvent::parse(&event.value).is_ok(),
                event.valid,
                "{}",
                String::from_utf8_lossy(&event.value)
            );
        }
        let types = [
            "task.created",
            "task.updated",
            "task.completed",
            "task.deleted",
        ];
        for t in types {
            assert!(
                events
                    .iter()
                    .any(|e| String::from_utf8_lossy(&e.value).contains(t)),
                "no {t}"
            );
        }
    }

    #[test]
    fn generation_is_deterministic() {
        let start = DateTime::UNIX_EPOCH;
        let a = generate(100, 7, start);
        let b = generate(100, 7, start);
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.value == y.value && x.key == y.key)
        );
    }
}
