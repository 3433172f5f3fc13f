//! The Todo deployment's reminders end to end, as a user sees them on the
//! `reminders` topic: the branched pipeline (validator, then the stateful deriver
//! with `lead-time = "0s"` and the projector) against Apache Kafka, with due dates a
//! few seconds ahead of the wall clock. Tasks of every kind of history (left alone,
//! rescheduled, completed by an update or by `task.completed`, deleted with and
//! without a due date, unscheduled, updated with the same due date, never due) and a
//! few dozen more; weir is SIGKILLed while timers are pending and started again
//! after some of them came due. In both delivery modes every live reminder
//! triggers, never before its time, with the scheduling event's correlation id and
//! a deterministic id; a cancelled or replaced one never does; nothing is
//! dead-lettered. Exactly-once: a `read_committed` reader sees each reminder once.
//! At-least-once: a timer may fire again after the kill, with the same bytes.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::kafka::*;
use common::model::{Reminders, fmt};
use common::todo::*;
use rdkafka::message::{Message, OwnedMessage};
use serde_json::{Value, json};
use todo_events::derive_id;

/// When each group of due dates falls, in seconds after the events are produced:
/// `EARLY` before the kill, `DOWN` while weir is down, `LATE` after the restart.
const EARLY: (i64, i64) = (10, 13);
const DOWN: (i64, i64) = (25, 29);
const LATE: (i64, i64) = (48, 52);

/// How a task's history goes, and so what its reminders must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Created with a due date, then left alone: triggers once.
    LeftAlone,
    /// Created, then updated to a later due date: the first is cancelled and never
    /// triggers; the second triggers.
    Rescheduled,
    /// Created, then updated with the same due date (another title): triggers once.
    SameDueAgain,
    /// Created, then `task.updated` with status `completed`: never triggers.
    CompletedByUpdate,
    /// Created, then `task.completed`: never triggers.
    Completed,
    /// Created, then `task.deleted` carrying the due date: never triggers.
    DeletedWithDue,
    /// Created, then `task.deleted` without a due date: never triggers.
    DeletedWithoutDue,
    /// Created, then updated without a due date: never triggers.
    Unscheduled,
    /// Never has a due date: no reminder at all.
    NoDue,
}

impl Kind {
    fn triggers(self) -> bool {
        matches!(
            self,
            Kind::LeftAlone | Kind::Rescheduled | Kind::SameDueAgain
        )
    }
}

/// One task and the events of its history, in order.
struct Task {
    kind: Kind,
    user: String,
    id: String,
    /// The due date that triggers (`None` if nothing does), ms since the epoch.
    due_ms: Option<i64>,
    /// The correlation id a triggered reminder must carry: the scheduling event's.
    scheduling_correlation: String,
    /// A due date that was scheduled, then replaced (`Rescheduled`).
    replaced_due_ms: Option<i64>,
    events: Vec<Value>,
}

/// A deterministic pseudo-random sequence (SplitMix64).
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

    fn within(&mut self, (from, to): (i64, i64)) -> i64 {
        (from * 1000) + self.below(((to - from) * 1000) as u64) as i64
    }
}

fn instant(ms: i64) -> String {
    fmt(DateTime::<Utc>::from_timestamp_millis(ms).expect("a valid instant"))
}

fn uuid(parts: &[&str]) -> String {
    derive_id(parts).to_string()
}

/// Builds the task histories: one of each kind in each due-date group, then
/// `extra` more of random kinds, over 12 users; events are stamped from `at_ms`.
fn histories(run: &str, at_ms: i64, extra: usize) -> Vec<Task> {
    const KINDS: [Kind; 9] = [
        Kind::LeftAlone,
        Kind::Rescheduled,
        Kind::SameDueAgain,
        Kind::CompletedByUpdate,
        Kind::Completed,
        Kind::DeletedWithDue,
        Kind::DeletedWithoutDue,
        Kind::Unscheduled,
        Kind::NoDue,
    ];
    let mut rng = Rng(7);
    let mut plan: Vec<(Kind, (i64, i64))> = Vec::new();
    for group in [EARLY, DOWN, LATE] {
        plan.extend(KINDS.iter().map(|k| (*k, group)));
    }
    for _ in 0..extra {
        let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
        let group = [EARLY, DOWN, LATE][rng.below(3) as usize];
        plan.push((kind, group));
    }
    let users: Vec<String> = (0..12)
        .map(|u| uuid(&[run, "user", &u.to_string()]))
        .collect();
    let mut serial = 0;
    plan.into_iter()
        .enumerate()
        .map(|(i, (kind, group))| {
            let n = i.to_string();
            let user = users[rng.below(users.len() as u64) as usize].clone();
            let id = uuid(&[run, "task", &n]);
            let title = format!("Task {i} ({kind:?})");
            // A rescheduled task moves to a later group: its first due time passes
            // while weir runs (EARLY) or is down (DOWN), and must never trigger.
            let (first_due, due) = match kind {
                Kind::Rescheduled if group == EARLY => (EARLY, LATE),
                Kind::Rescheduled if group == DOWN => (EARLY, DOWN),
                Kind::Rescheduled => (DOWN, LATE),
                _ => (group, group),
            };
            let (first_due, due) = (at_ms + rng.within(first_due), at_ms + rng.within(due));
            let created_correlation = uuid(&[run, "conversation", &n, "1"]);
            let later_correlation = uuid(&[run, "conversation", &n, "2"]);
            // The second event of each history: type, status, due date.
            let second = match kind {
                Kind::LeftAlone => None,
                Kind::Rescheduled => Some(("task.updated", "in_progress", Some(due))),
                Kind::SameDueAgain => Some(("task.updated", "in_progress", Some(first_due))),
                Kind::CompletedByUpdate => Some(("task.updated", "completed", Some(first_due))),
                Kind::Completed => Some(("task.completed", "completed", Some(first_due))),
                Kind::DeletedWithDue => Some(("task.deleted", "pending", Some(first_due))),
                Kind::DeletedWithoutDue => Some(("task.deleted", "pending", None)),
                Kind::Unscheduled => Some(("task.updated", "pending", None)),
                Kind::NoDue => Some(("task.updated", "in_progress", None)),
            };
            let created_due = (kind != Kind::NoDue).then_some(first_due);
            let mut events = vec![("task.created", "pending", created_due, &created_correlation)];
            events.extend(second.map(|(t, s, d)| (t, s, d, &later_correlation)));
            let events: Vec<Value> = events
                .into_iter()
                .enumerate()
                .map(|(step, (event_type, status, due, correlation))| {
                    serial += 1;
                    // Renamed on the way; the reminder keeps the title it was scheduled with.
                    let title = if step == 0 {
                        title.clone()
                    } else {
                        format!("{title}, renamed")
                    };
                    json!({
                        "event_id": uuid(&[run, "event", &serial.to_string()]),
                        "event_type": event_type,
                        "timestamp": instant(at_ms + serial),
                        "version": "1.0",
                        "correlation_id": correlation,
                        "payload": {
                            "task_id": id,
                            "user_id": user,
                            "title": title,
                            "status": status,
                            "priority": "medium",
                            "due_date": due.map(instant),
                        }
                    })
                })
                .collect();
            let rescheduled = kind == Kind::Rescheduled;
            Task {
                kind,
                user,
                id,
                due_ms: kind
                    .triggers()
                    .then_some(if rescheduled { due } else { first_due }),
                scheduling_correlation: if rescheduled {
                    later_correlation
                } else {
                    created_correlation
                },
                replaced_due_ms: rescheduled.then_some(first_due),
                events,
            }
        })
        .collect()
}

/// The events to produce: every task's first event, then every second one, so that
/// each user's tasks interleave; each task's events stay in order.
fn interleaved(tasks: &[Task]) -> Vec<&Value> {
    let longest = tasks.iter().map(|t| t.events.len()).max().unwrap_or(0);
    (0..longest)
        .flat_map(|step| tasks.iter().filter_map(move |t| t.events.get(step)))
        .collect()
}

fn json(message: &OwnedMessage) -> Value {
    serde_json::from_slice(message.payload().expect("a value")).expect("a JSON reminder")
}

/// The reminder id of task `task` due at `due_ms`, as documented: UUIDv5 of the task
/// id and the due instant in UTC.
fn reminder_id(task: &str, due_ms: i64) -> String {
    uuid(&["reminder", task, &instant(due_ms)])
}

/// The reminders of one task, by event type.
fn of_task<'m>(got: &'m [OwnedMessage], task: &str, event_type: &str) -> Vec<&'m OwnedMessage> {
    got.iter()
        .filter(|m| {
            let v = json(m);
            v["payload"]["task_id"] == task && v["event_type"] == event_type
        })
        .collect()
}

fn scheduled_ms(value: &Value) -> i64 {
    DateTime::parse_from_rfc3339(value["payload"]["scheduled_time"].as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

/// How many reminders `tasks` give once every due time has passed (the model),
/// as counted values.
fn model(tasks: &[Task]) -> BTreeMap<String, usize> {
    let mut model = Reminders::new(TimeDelta::zero());
    let mut all = Vec::new();
    for event in interleaved(tasks) {
        all.extend(model.event(event));
    }
    all.extend(model.fire_due(i64::MAX));
    let mut counted = BTreeMap::new();
    for v in all {
        *counted.entry(v.to_string()).or_default() += 1;
    }
    counted
}

fn triggered_count(got: &[OwnedMessage]) -> usize {
    got.iter()
        .filter(|m| header(m, "event_type") == Some("reminder.triggered"))
        .count()
}

fn sleep_until(ms: i64) {
    let wait = ms - common::now_ms();
    if wait > 0 {
        std::thread::sleep(Duration::from_millis(wait as u64));
    }
}

fn reminders_through_a_kill(exactly_once: bool) {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let keys = if exactly_once {
        r#"delivery = "exactly-once""#
    } else {
        ""
    };
    let todo = branched_todo_config_with_lead(brokers, &wasm("task_validator"), keys, "0s");
    let config = write_config(dir.path(), &todo.text);
    let weir = Weir::start(&config, dir.path(), "first");
    weir.wait_ready(1);

    let produced_at = common::now_ms();
    let tasks = histories(&todo.input, produced_at, 40);
    let records: Vec<Record> = interleaved(&tasks)
        .into_iter()
        .map(|v| {
            let user = v["payload"]["user_id"].as_str().unwrap().to_owned();
            (Some(user), Some(v.to_string().into_bytes()), Vec::new())
        })
        .collect();
    produce(brokers, &todo.input, &records);
    let want = model(&tasks);
    let want_total: usize = want.values().sum();
    let want_triggered = want
        .keys()
        .filter(|v| v.contains("reminder.triggered"))
        .count();
    let live: Vec<&Task> = tasks.iter().filter(|t| t.kind.triggers()).collect();
    assert_eq!(want_triggered, live.len(), "the model agrees with the plan");

    wait_until(SETTLE, "every task event handled", || {
        lag(brokers, &todo.group, &todo.input) == 0
    });
    let handled_at = common::now_ms();
    assert!(
        handled_at < produced_at + EARLY.0 * 1000,
        "the events took {} ms to be handled, past the first due time: too slow a machine for this test",
        handled_at - produced_at
    );

    // The early reminders trigger while weir runs; then it is killed with the
    // others pending.
    let early: Vec<&&Task> = live
        .iter()
        .filter(|t| t.due_ms.unwrap() < produced_at + DOWN.0 * 1000)
        .collect();
    // Before the kill: every reminder scheduled and cancelled, and the early ones
    // triggered.
    let before_kill = want_total - want_triggered + early.len();
    wait_until(SETTLE, "the early reminders to trigger", || {
        triggered_count(&read_topic(
            brokers,
            &todo.reminders,
            before_kill,
            Duration::from_secs(5),
        )) >= early.len()
    });
    let before_kill = read_topic(
        brokers,
        &todo.reminders,
        before_kill,
        Duration::from_secs(5),
    );
    weir.kill();
    let killed_at = common::now_ms();
    assert!(
        killed_at < produced_at + DOWN.0 * 1000,
        "killed at +{} ms, after the first reminder due while weir is down",
        killed_at - produced_at
    );
    for m in &before_kill {
        let v = json(m);
        if v["event_type"] == "reminder.triggered" {
            assert!(
                scheduled_ms(&v) < produced_at + DOWN.0 * 1000,
                "triggered before its time: {v}"
            );
        }
    }

    // Down past every DOWN due time, then started again.
    sleep_until(produced_at + DOWN.1 * 1000 + 1000);
    let weir = Weir::start(&config, dir.path(), "second");
    let restarted_at = common::now_ms();
    weir.wait_ready(1);
    wait_until(
        Duration::from_millis((produced_at + LATE.1 * 1000 - common::now_ms()).max(0) as u64)
            + SETTLE,
        "every live reminder to trigger",
        || {
            let got = read_topic(brokers, &todo.reminders, want_total, Duration::from_secs(5));
            let distinct: std::collections::HashSet<String> = got
                .iter()
                .filter(|m| header(m, "event_type") == Some("reminder.triggered"))
                .map(|m| json(m)["event_id"].as_str().unwrap().to_owned())
                .collect();
            distinct.len() >= want_triggered
        },
    );
    // A read_committed reader (librdkafka's default isolation level).
    let got = read_topic(brokers, &todo.reminders, want_total, SETTLE);

    // Every record as a user reads it: keyed by user, headers naming the event.
    for m in &got {
        let v = json(m);
        assert_eq!(m.key(), v["payload"]["user_id"].as_str().map(str::as_bytes));
        assert_eq!(header(m, "event_type"), v["event_type"].as_str());
        assert_eq!(header(m, "correlation_id"), v["correlation_id"].as_str());
        let is_triggered = v["event_type"] == "reminder.triggered";
        assert_eq!(
            header(m, "weir.timer.lateness-ms").is_some(),
            is_triggered,
            "{v}"
        );
        if is_triggered {
            let produced = m.timestamp().to_millis().unwrap();
            assert!(
                produced >= scheduled_ms(&v),
                "triggered at {produced}, before its scheduled time: {v}"
            );
        }
    }

    // Exactly what the model says; after a kill, at-least-once may repeat a fired
    // timer's reminder, byte for byte, and nothing else.
    let mut got_counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut bytes: HashMap<String, &[u8]> = HashMap::new();
    for m in &got {
        let v = json(m);
        let id = v["event_id"].as_str().unwrap().to_owned();
        let first = *bytes.entry(id.clone()).or_insert(m.payload().unwrap());
        assert_eq!(first, m.payload().unwrap(), "{id} again with other bytes");
        *got_counts.entry(v.to_string()).or_default() += 1;
    }
    if exactly_once {
        assert_eq!(got_counts, want, "the reminders differ from the model");
    } else {
        assert_eq!(
            got_counts.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "the reminders differ from the model"
        );
        for (v, n) in &got_counts {
            assert!(
                *n == want[v] || v.contains("reminder.triggered"),
                "{n} times: {v}"
            );
        }
    }

    // Task by task, what a user of each history sees.
    for task in &tasks {
        let triggered = of_task(&got, &task.id, "reminder.triggered");
        let cancelled = of_task(&got, &task.id, "reminder.cancelled");
        let scheduled = of_task(&got, &task.id, "reminder.scheduled");
        let what = format!("{:?} task {}", task.kind, task.id);
        let Some(due_ms) = task.due_ms else {
            assert!(triggered.is_empty(), "{what} triggered");
            if task.kind == Kind::NoDue {
                assert!(cancelled.is_empty() && scheduled.is_empty(), "{what}");
            } else {
                let v = json(
                    cancelled
                        .first()
                        .unwrap_or_else(|| panic!("{what}: no cancel")),
                );
                assert_eq!(cancelled.len(), 1, "{what}");
                assert_eq!(
                    v["payload"]["reminder_id"],
                    json(scheduled[0])["payload"]["reminder_id"]
                );
            }
            continue;
        };
        if exactly_once {
            assert_eq!(triggered.len(), 1, "{what}: triggered once");
        } else {
            assert!(!triggered.is_empty(), "{what}: triggered");
        }
        let id = reminder_id(&task.id, due_ms);
        for m in &triggered {
            let v = json(m);
            assert_eq!(v["payload"]["reminder_id"], id.as_str(), "{what}");
            assert_eq!(
                v["event_id"],
                uuid(&["reminder-triggered", &id]).as_str(),
                "{what}: a deterministic event id"
            );
            assert_eq!(
                v["correlation_id"],
                task.scheduling_correlation.as_str(),
                "{what}"
            );
            assert_eq!(
                v["payload"]["scheduled_time"],
                instant(due_ms).as_str(),
                "{what}"
            );
            assert_eq!(v["timestamp"], instant(due_ms).as_str(), "{what}");
            assert_eq!(m.key(), Some(task.user.as_bytes()));
            if due_ms > killed_at {
                assert!(
                    m.timestamp().to_millis().unwrap() >= restarted_at,
                    "{what}: due while weir was down, triggered after the restart"
                );
            }
            if due_ms > killed_at && due_ms < restarted_at {
                let late: i64 = header(m, "weir.timer.lateness-ms")
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(late >= restarted_at - due_ms, "{what}: {late} ms late");
            }
        }
        match task.kind {
            Kind::Rescheduled => {
                let old = reminder_id(&task.id, task.replaced_due_ms.unwrap());
                assert_eq!(scheduled.len(), 2, "{what}");
                assert_eq!(cancelled.len(), 1, "{what}");
                let c = json(cancelled[0]);
                assert_eq!(c["payload"]["reminder_id"], old.as_str(), "{what}");
                assert!(
                    c["payload"]["message"]
                        .as_str()
                        .unwrap()
                        .ends_with("was rescheduled"),
                    "{c}"
                );
            }
            _ => {
                assert_eq!(scheduled.len(), 1, "{what}");
                assert!(cancelled.is_empty(), "{what}");
            }
        }
    }

    let kinds: BTreeMap<&str, usize> = got.iter().fold(BTreeMap::new(), |mut n, m| {
        *n.entry(header(m, "event_type").unwrap()).or_default() += 1;
        n
    });
    eprintln!(
        "{} tasks: {kinds:?} ({} records; the model: {want_total}); killed at +{} ms, started again at +{} ms",
        tasks.len(),
        got.len(),
        killed_at - produced_at,
        restarted_at - produced_at
    );

    for dlq in [&todo.reminders_dlq, &todo.ui_dlq] {
        let dead = read_topic(brokers, dlq, 0, Duration::from_secs(5));
        assert!(dead.is_empty(), "{} dead letters in {dlq}", dead.len());
    }
    assert_all_committed(brokers, &todo.group, &todo.input);
    weir.terminate_cleanly();
}

#[test]
fn reminders_trigger_once_their_time_comes_through_a_kill_at_least_once() {
    reminders_through_a_kill(false);
}

#[test]
fn reminders_trigger_exactly_once_through_a_kill_exactly_once() {
    reminders_through_a_kill(true);
}
