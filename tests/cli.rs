//! `weir check` and `weir test` as a user meets them: exit codes and messages.

mod common;

use common::*;
use serde_json::json;

#[test]
fn check_accepts_the_todo_deployment() {
    plugin("task_validator");
    let output = run(weir().args(["check", "--config", "pipelines.toml"]));
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}\n{out}", stderr(&output));
    assert!(out.contains("pipeline reminders"), "{out}");
    assert!(out.contains("pipeline ui-sync"), "{out}");
    assert!(out.contains("task_validator@"), "{out}");
    assert!(out.contains("reminders.dlq"), "{out}");
}

#[test]
fn check_names_file_line_and_key_of_a_misspelt_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("pipelines.toml"))
        .unwrap()
        .replace("cleanup = \"compact\"", "clenaup = \"compact\"");
    let line = text.lines().position(|l| l.starts_with("clenaup")).unwrap() + 1;
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, text).unwrap();
    let output = run(weir().arg("check").arg("--config").arg(&path));
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains(&format!("broken.toml:{line}:")), "{err}");
    assert!(err.contains("clenaup"), "{err}");
}

#[test]
fn check_reports_a_plugin_that_refuses_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[topics.out]
[[pipeline]]
name = "p"
input = "in"
plugins = [{{ path = "{}", config = {{ lead-time = "whenever" }} }}]
outputs = {{ reminders = "out" }}
"#,
        plugin("reminder_deriver").display()
    );
    let path = dir.path().join("p.toml");
    std::fs::write(&path, config).unwrap();
    let output = run(weir().arg("check").arg("--config").arg(&path));
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("reminder_deriver refused its config: lead-time:"),
        "{err}"
    );
}

#[test]
fn check_without_a_config_file_says_so() {
    let output = run(weir().args(["check", "--config", "nowhere/pipelines.toml"]));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot read nowhere/pipelines.toml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn test_skips_malformed_lines_reports_them_and_fails() {
    let input = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .unwrap();
    std::fs::write(
        input.path(),
        format!(
            "{}\nnot json at all\n{}\n",
            json!({"value": "a"}),
            json!({"vaule": "typo"})
        ),
    )
    .unwrap();
    let output = run(weir()
        .arg("test")
        .arg(plugin("chaos_plugin"))
        .arg("--input")
        .arg(input.path()));
    assert_eq!(output.status.code(), Some(1));
    let results = json_lines(&output);
    assert_eq!(results.len(), 1, "the good line is still processed");
    assert_eq!(results[0]["value"], "a");
    let err = stderr(&output);
    let name = input.path().display().to_string();
    assert!(err.contains(&format!("{name}:2:")), "{err}");
    assert!(
        err.contains(&format!("{name}:3: unknown field `vaule`")),
        "{err}"
    );
}

#[test]
fn test_stops_quietly_when_its_reader_goes_away() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("many.jsonl");
    let line = format!("{}\n", json!({"value": "a"}));
    std::fs::write(&input, line.repeat(20_000)).unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = weir()
        .arg("test")
        .arg(plugin("chaos_plugin"))
        .arg("--input")
        .arg(&input)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("cannot start weir");
    // `weir test … | head -1`: one line, then the pipe closes.
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains(r#""value":"a""#), "{first}");
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(!err.contains("error"), "no error for a closed pipe: {err}");
}

#[test]
fn check_says_whether_tracing_is_on_and_names_a_bad_setting() {
    plugin("task_validator");
    let off = run(weir()
        .args(["check", "--config", "pipelines.toml"])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
    let out = String::from_utf8_lossy(&off.stdout);
    assert!(off.status.success(), "{}", stderr(&off));
    assert!(out.contains("tracing off"), "{out}");

    let on = run(weir()
        .args(["check", "--config", "pipelines.toml"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
        .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        .env("OTEL_TRACES_SAMPLER_ARG", "0.01"));
    let out = String::from_utf8_lossy(&on.stdout);
    assert!(on.status.success(), "{}", stderr(&on));
    assert!(
        out.contains("tracing on: http/protobuf to http://collector:4318/v1/traces")
            && out.contains("0.01 of new traces sampled"),
        "{out}"
    );

    let bad = run(weir()
        .args(["check", "--config", "pipelines.toml"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
        .env("OTEL_TRACES_SAMPLER", "sometimes"));
    assert_eq!(bad.status.code(), Some(1));
    let err = stderr(&bad);
    assert!(
        err.contains("OTEL_TRACES_SAMPLER") && err.contains("parentbased_traceidratio"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("pipelines.toml")).unwrap();
    let path = dir.path().join("traced.toml");
    std::fs::write(
        &path,
        format!("[tracing]\nendpoint = \"http://collector:4317\"\nprotocol = \"thrift\"\n\n{text}"),
    )
    .unwrap();
    let bad = run(weir().arg("check").arg("--config").arg(&path));
    assert_eq!(bad.status.code(), Some(1));
    let err = stderr(&bad);
    assert!(
        err.contains("[tracing] protocol") && err.contains("grpc"),
        "{err}"
    );
}
