//! The Todo chains through `weir test`, checked against a model written here from
//! SPEC §7 (not from the plugins' code) and against the JSON Schemas in `schemas/`.

mod common;

use std::collections::HashMap;

use chrono::TimeDelta;
use common::model::{Reminders, fmt, utc};
use common::*;
use serde_json::{Value, json};

fn schema(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schemas").join(name)).expect("schema file");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn examples() -> Vec<Value> {
    std::fs::read_to_string(root().join("examples/task-events.jsonl"))
        .expect("examples/task-events.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("example line is JSON"))
        .collect()
}

/// The event as a JSON value, when the line's value is a JSON object (not text).
fn task_event(line: &Value) -> Option<&Value> {
    line["value"].as_object().map(|_| &line["value"])
}

fn is_valid_by_schema(validator: &jsonschema::Validator, line: &Value) -> bool {
    task_event(line).is_some_and(|v| validator.is_valid(v))
}

fn chain(plugins: &[&str], input: &std::path::Path, extra: &[&str]) -> Vec<Value> {
    let mut command = weir();
    command.arg("test");
    for p in plugins {
        command.arg(plugin(p));
    }
    let output = run(command.arg("--input").arg(input).args(extra));
    assert!(
        output.status.success(),
        "weir test failed: {}",
        stderr(&output)
    );
    json_lines(&output)
}

/// The reminder outputs of `results` (a `weir test` run), checked for what every
/// reminder line must be, grouped by input line.
fn reminder_lines(results: &[Value]) -> HashMap<u64, Vec<&Value>> {
    let reminder_schema = schema("reminder.schema.json");
    let mut by_input: HashMap<u64, Vec<&Value>> = HashMap::new();
    for r in results {
        if r.get("failure").is_none() {
            let v = &r["value"];
            assert_eq!(r["to"], "reminders", "{r}");
            assert!(
                reminder_schema.is_valid(v),
                "{v} breaks reminder.schema.json"
            );
            assert_eq!(r["key"], v["payload"]["user_id"], "{r}");
            assert_eq!(r["headers"]["event_type"], v["event_type"], "{r}");
            assert_eq!(r["headers"]["correlation_id"], v["correlation_id"], "{r}");
        }
        by_input
            .entry(r["input"].as_u64().unwrap())
            .or_default()
            .push(r);
    }
    by_input
}

#[test]
fn reminders_chain_matches_the_model() {
    let lines = examples();
    let input = root().join("examples/task-events.jsonl");
    let results = chain(
        &["task_validator", "reminder_deriver"],
        &input,
        &["--config", "lead-time=1h"],
    );
    let task_schema = schema("task-event.schema.json");
    let mut model = Reminders::new(TimeDelta::hours(1));
    let mut by_input = reminder_lines(&results);
    let mut kinds: HashMap<String, usize> = HashMap::new();
    let mut reminder_ids: HashMap<(String, String), String> = HashMap::new();
    let mut invalid = 0;
    for (i, line) in lines.iter().enumerate() {
        let got = by_input.remove(&(i as u64 + 1)).unwrap_or_default();
        if !is_valid_by_schema(&task_schema, line) {
            assert_eq!(got.len(), 1, "line {}: {got:?}", i + 1);
            assert_eq!(got[0]["failure"], "invalid", "line {}: {}", i + 1, got[0]);
            assert_eq!(got[0]["plugin"], "task_validator");
            invalid += 1;
            continue;
        }
        let event = task_event(line).unwrap();
        let want = model.event(event);
        let values: Vec<&Value> = got.iter().map(|r| &r["value"]).collect();
        assert_eq!(
            values,
            want.iter().collect::<Vec<_>>(),
            "line {}: the outputs differ from the model",
            i + 1
        );
        for v in values {
            let message = v["payload"]["message"].as_str().unwrap();
            let kind = match message.rsplit_once(" was ") {
                Some((_, why)) => format!("cancelled ({why})"),
                None => "scheduled".to_owned(),
            };
            *kinds.entry(kind).or_default() += 1;
            assert_ne!(v["event_id"], event["event_id"]);
            if v["event_type"] == "reminder.scheduled" {
                // One reminder per (task, due instant), whatever the offset it was written in.
                let due = fmt(utc(event["payload"]["due_date"].as_str().unwrap()));
                let task = event["payload"]["task_id"].as_str().unwrap().to_owned();
                let id = v["payload"]["reminder_id"].as_str().unwrap().to_owned();
                let known = reminder_ids
                    .entry((task, due))
                    .or_insert_with(|| id.clone());
                assert_eq!(*known, id, "line {}: reminder_id changed", i + 1);
            }
        }
    }
    assert!(
        by_input.is_empty(),
        "results for unknown inputs: {by_input:?}"
    );
    let distinct: std::collections::HashSet<_> = reminder_ids.values().collect();
    assert_eq!(
        distinct.len(),
        reminder_ids.len(),
        "different reminders share an id"
    );
    // The examples hold every kind of history: scheduled, rescheduled, completed and
    // deleted with a live reminder, and ended after a reminder was never live.
    for (kind, at_least) in [
        ("scheduled", 20),
        ("cancelled (rescheduled)", 4),
        ("cancelled (completed)", 4),
        ("cancelled (deleted)", 3),
    ] {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) >= at_least,
            "{kind}: {kinds:?}"
        );
    }
    assert!(invalid >= 14, "{invalid} invalid");
    assert_eq!(model.pending(), 8, "the live reminders at the end");
}

/// The virtual clock of `weir test`: with `--now` before every scheduled time, no
/// reminder triggers while the examples are read; an `advance` line past them all
/// then triggers each live reminder once, in due order, and nothing else.
#[test]
fn reminders_chain_triggers_the_live_reminders_when_time_passes() {
    let lines = examples();
    let mut text = std::fs::read_to_string(root().join("examples/task-events.jsonl")).unwrap();
    text.push_str("{\"advance\": \"30d\"}\n");
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), text).unwrap();
    let results = chain(
        &["task_validator", "reminder_deriver"],
        input.path(),
        &["--config", "lead-time=1h", "--now", "2026-11-26T09:00:00Z"],
    );
    let task_schema = schema("task-event.schema.json");
    let mut model = Reminders::new(TimeDelta::hours(1));
    for line in lines.iter().filter(|l| is_valid_by_schema(&task_schema, l)) {
        model.event(task_event(line).unwrap());
    }
    let fired = model.fire_due(utc("2026-12-26T09:00:00Z").timestamp_millis());
    assert_eq!(fired.len(), 8);
    let by_input = reminder_lines(&results);
    let last = by_input[&(lines.len() as u64 + 1)].clone();
    assert_eq!(
        last.iter().map(|r| &r["value"]).collect::<Vec<_>>(),
        fired.iter().collect::<Vec<_>>(),
        "the advance line triggers the live reminders, in due order"
    );
    for r in &last {
        let task = r["value"]["payload"]["task_id"].as_str().unwrap();
        assert_eq!(r["timer"], format!("reminder:{task}"), "{r}");
    }
    let triggered = results
        .iter()
        .filter(|r| r["value"]["event_type"] == "reminder.triggered")
        .count();
    assert_eq!(triggered, fired.len(), "nothing triggers before its time");
}

#[test]
fn ui_sync_chain_projects_state_and_tombstones() {
    let lines = examples();
    let input = root().join("examples/task-events.jsonl");
    let results = chain(&["task_validator", "ui_projector"], &input, &[]);
    let task_schema = schema("task-event.schema.json");
    let update_schema = schema("task-update.schema.json");
    let mut by_input: HashMap<u64, &Value> = HashMap::new();
    for r in &results {
        assert!(
            by_input.insert(r["input"].as_u64().unwrap(), r).is_none(),
            "one result per event"
        );
    }
    for (i, line) in lines.iter().enumerate() {
        let r = by_input[&(i as u64 + 1)];
        if !is_valid_by_schema(&task_schema, line) {
            assert_eq!(r["failure"], "invalid", "line {}", i + 1);
            continue;
        }
        let event = task_event(line).unwrap();
        let payload = &event["payload"];
        assert_eq!(r["to"], "task-updates");
        assert_eq!(r["key"], payload["task_id"]);
        assert_eq!(r["headers"]["event_id"], event["event_id"]);
        if event["event_type"] == "task.deleted" {
            assert_eq!(
                r["value"],
                Value::Null,
                "line {}: deletion is a tombstone",
                i + 1
            );
            continue;
        }
        let v = &r["value"];
        assert!(
            update_schema.is_valid(v),
            "line {}: {v} breaks task-update.schema.json",
            i + 1
        );
        for field in ["task_id", "user_id", "title", "status", "priority"] {
            assert_eq!(v[field], payload[field], "line {}: {field}", i + 1);
        }
        assert_eq!(
            v["description"],
            payload.get("description").cloned().unwrap_or(Value::Null)
        );
        assert_eq!(
            v["due_date"],
            payload.get("due_date").cloned().unwrap_or(Value::Null)
        );
        assert_eq!(v["updated_at"], event["timestamp"]);
        assert_eq!(v["event_id"], event["event_id"]);
        assert_eq!(v["correlation_id"], event["correlation_id"]);
        assert_eq!(v["version"], event["version"]);
    }
}

#[test]
fn validator_passes_valid_events_unchanged_and_names_the_field() {
    let valid = json!({
        "event_id": "3b0c1c6e-7d0a-4d53-a6a4-4b1e0f9b2d11",
        "event_type": "task.updated",
        "timestamp": "2026-12-01T08:15:00.250+05:30",
        "version": "1.9",
        "correlation_id": "c0ffee00-1111-4222-8333-444455556666",
        "extra": {"nested": [1, 2, 3]},
        "payload": {"task_id": "d3adbeef-0000-4000-8000-00000000abcd", "user_id": "0badcafe-0000-4000-8000-000000000042",
                    "title": "Ünïcødé ✓", "status": "in_progress", "priority": "medium", "due_date": null}
    });
    let mut wrong_priority = valid.clone();
    wrong_priority["payload"]["priority"] = json!("urgent");
    let mut no_title = valid.clone();
    no_title["payload"].as_object_mut().unwrap().remove("title");
    let mut bad_user = valid.clone();
    bad_user["payload"]["user_id"] = json!(17);
    let input = jsonl(&[
        json!({"key": "u1", "value": valid, "headers": {"trace": "abc"}}),
        json!({"key": "u1", "value": wrong_priority}),
        json!({"key": "u1", "value": no_title}),
        json!({"key": "u1", "value": bad_user}),
        json!({"key": "u1", "value": "{\"event_id\":"}),
    ]);
    let results = chain(&["task_validator"], input.path(), &[]);
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["value"], valid, "valid events pass unchanged");
    assert_eq!(results[0]["key"], "u1");
    assert_eq!(results[0]["headers"]["trace"], "abc");
    assert_eq!(
        results[1]["message"],
        r#"payload.priority: expected one of low|medium|high, got "urgent""#
    );
    assert_eq!(
        results[2]["message"],
        "payload.title: missing required field"
    );
    assert_eq!(
        results[3]["message"],
        "payload.user_id: expected a string, got a number"
    );
    assert!(
        results[4]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON")
    );
    for r in &results[1..] {
        assert_eq!(r["failure"], "invalid");
    }
}
