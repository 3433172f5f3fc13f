//! The sandbox: misbehaving plugins cost one event's attempt, the host carries on, and
//! forbidden accesses fail inside the guest. Drives `weir test` with the chaos plugin.

mod common;

use common::*;
use serde_json::{Value, json};

fn line(command: &str) -> Value {
    json!({"key": "k", "value": command})
}

/// Runs the chaos plugin over `commands`, each followed by an `ok` echo that proves
/// the host carried on. Returns the result line of each command, and stderr.
fn run_chaos(commands: &[&str], extra: &[&str]) -> (Vec<Value>, String) {
    let mut lines = Vec::new();
    for command in commands {
        lines.push(line(command));
        lines.push(line("ok"));
    }
    let input = jsonl(&lines);
    let output = run(weir()
        .arg("test")
        .arg(plugin("chaos_plugin"))
        .arg("--input")
        .arg(input.path())
        .args(["--timeout", "100ms", "--memory", "32MiB"])
        .args(extra));
    let err = stderr(&output);
    assert!(output.status.success(), "weir test failed: {err}");
    let results = json_lines(&output);
    assert_eq!(
        results.len(),
        lines.len(),
        "one line per event: {results:#?}\n{err}"
    );
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["input"], i + 1, "input order kept");
        if i % 2 == 1 {
            assert_eq!(
                result["value"],
                "ok",
                "event after {:?} not processed: {result}",
                commands[i / 2]
            );
        }
    }
    (results.into_iter().step_by(2).collect(), err)
}

#[test]
fn runaway_plugins_cost_one_event_each() {
    let (results, _) = run_chaos(&["loop", "alloc", "recurse", "panic", "huge"], &[]);
    assert_eq!(results[0]["failure"], "timeout", "{}", results[0]);
    assert_eq!(results[1]["failure"], "memory-limit", "{}", results[1]);
    assert_eq!(results[2]["failure"], "trap", "{}", results[2]);
    assert!(
        results[2]["message"]
            .as_str()
            .unwrap()
            .contains("stack overflow"),
        "{}",
        results[2]
    );
    assert_eq!(results[3]["failure"], "trap", "{}", results[3]);
    assert_eq!(results[4]["failure"], "bad-output", "{}", results[4]);
    assert!(
        results[4]["message"]
            .as_str()
            .unwrap()
            .contains("over the 1048576-byte limit")
    );
    for result in &results {
        assert_eq!(result["plugin"], "chaos_plugin");
    }
}

#[test]
fn forbidden_accesses_fail_inside_the_guest() {
    let (results, _) = run_chaos(&["read-file", "socket", "env"], &[]);
    for result in &results {
        let report = result["value"]
            .as_str()
            .unwrap_or_else(|| panic!("no report: {result}"));
        assert!(report.starts_with("denied:"), "sandbox leaked: {report}");
    }
    assert!(
        results[2]["value"]
            .as_str()
            .unwrap()
            .ends_with("(0 variables)")
    );
}

#[test]
fn guest_output_and_logs_reach_the_host_log() {
    let (_, err) = run_chaos(&["log", "print"], &[]);
    assert!(err.contains("chaos log at offset 0"), "{err}");
    assert!(err.contains("guest: chaos stdout at offset 2"), "{err}");
    assert!(err.contains("guest: chaos stderr at offset 2"), "{err}");
}

#[test]
fn guest_failures_are_reported_as_such() {
    let (results, _) = run_chaos(&["invalid", "transient"], &[]);
    assert_eq!(results[0]["failure"], "invalid");
    assert_eq!(results[0]["message"], "chaos plugin rejects this event");
    assert_eq!(results[1]["failure"], "transient");
}

#[test]
fn a_plugin_that_fails_init_is_refused() {
    let input = jsonl(&[line("ok")]);
    let output = run(weir()
        .arg("test")
        .arg(plugin("chaos_plugin"))
        .arg("--input")
        .arg(input.path())
        .args(["--config", "fail-init=yes"]));
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("chaos_plugin refused its config: chaos plugin refuses to start"),
        "{err}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn garbage_and_missing_plugins_are_refused_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm this is not a component").unwrap();
    let input = jsonl(&[line("ok")]);
    let output = run(weir()
        .arg("test")
        .arg(&garbage)
        .arg("--input")
        .arg(input.path()));
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("garbage.wasm is not a valid WebAssembly component"),
        "{err}"
    );

    let output = run(weir()
        .arg("test")
        .arg("target/wasm32-wasip2/release/no_such_plugin.wasm")
        .arg("--input")
        .arg(input.path()));
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("cannot read plugin target/wasm32-wasip2/release/no_such_plugin.wasm"),
        "{err}"
    );
    assert!(err.contains("-p no-such-plugin"), "{err}");
}

#[test]
fn json_logs_carry_the_plugin_and_the_record() {
    let input = jsonl(&[line("log")]);
    let output = run(weir()
        .args(["--log-format", "json", "test"])
        .arg(plugin("chaos_plugin"))
        .arg("--input")
        .arg(input.path()));
    assert!(output.status.success());
    let err = stderr(&output);
    let line = err
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("chaos log at offset 0"))
        })
        .unwrap_or_else(|| panic!("no JSON log line from the plugin in:\n{err}"));
    assert_eq!(line["level"], "WARN");
    assert!(
        line["fields"]["plugin"]
            .as_str()
            .unwrap()
            .starts_with("chaos_plugin@"),
        "{line}"
    );
    assert_eq!(line["fields"]["pipeline"], "weir-test");
    assert_eq!(line["fields"]["offset"], 0);
}
