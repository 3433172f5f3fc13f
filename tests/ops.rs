//! Operations end to end: `/metrics` values match what happened, `/readyz` follows
//! the broker, and `weir dlq inspect|replay` bring dead-lettered records back once
//! the cause is fixed.

mod common;

use std::time::Duration;

use common::kafka::*;
use common::*;
use rdkafka::message::{Headers, Message};

const SETTLE: Duration = Duration::from_secs(120);

/// The value of one sample line of the metrics text, e.g.
/// `weir_retries_total{pipeline="chaos"}`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

#[test]
fn metrics_match_what_happened() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let policy = r#"retry = { max-attempts = 2, initial-backoff = "10ms", max-backoff = "20ms" }"#;
    let (text, input, output, dlq, group) = chaos_config(brokers, 1, "", policy);
    let config = write_config(dir.path(), &text);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    let ops = weir.ops_address();
    produce(
        brokers,
        &input,
        &commands(&["ok-1", "invalid", "flaky:1", "panic", "ok-2"]),
    );
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);
    let lag_series =
        format!("weir_consumer_lag{{partition=\"0\",pipeline=\"chaos\",topic=\"{input}\"}}");
    let mut metrics = String::new();
    wait_until(Duration::from_secs(30), "the lag gauge to reach 0", || {
        metrics = http_get(&ops, "/metrics").1;
        sample(&metrics, &lag_series) == Some(0.0)
    });
    let p = r#"pipeline="chaos""#;
    let expect = [
        (format!("weir_records_consumed_total{{{p}}}"), 5.0),
        (
            format!(r#"weir_plugin_calls_total{{outcome="ok",{p},plugin="chaos_plugin"}}"#),
            3.0,
        ),
        (
            format!(r#"weir_plugin_calls_total{{outcome="invalid",{p},plugin="chaos_plugin"}}"#),
            1.0,
        ),
        (
            format!(r#"weir_plugin_calls_total{{outcome="transient",{p},plugin="chaos_plugin"}}"#),
            1.0,
        ),
        (
            format!(r#"weir_plugin_calls_total{{outcome="trap",{p},plugin="chaos_plugin"}}"#),
            2.0,
        ),
        (
            format!(r#"weir_plugin_call_duration_seconds_count{{{p},plugin="chaos_plugin"}}"#),
            7.0,
        ),
        (
            format!(r#"weir_records_produced_total{{outcome="ok",{p},topic="{output}"}}"#),
            3.0,
        ),
        (
            format!(r#"weir_records_produced_total{{outcome="ok",{p},topic="{dlq}"}}"#),
            2.0,
        ),
        (format!("weir_retries_total{{{p}}}"), 2.0),
        (
            format!(r#"weir_dlq_records_total{{{p},reason="invalid"}}"#),
            1.0,
        ),
        (
            format!(r#"weir_dlq_records_total{{{p},reason="trap"}}"#),
            1.0,
        ),
        (format!("weir_end_to_end_latency_seconds_count{{{p}}}"), 5.0),
        (format!("weir_circuit_open{{{p}}}"), 0.0),
        (
            r#"weir_plugin_reloads_total{outcome="ok",plugin="chaos_plugin"}"#.to_owned(),
            0.0,
        ),
    ];
    for (series, value) in expect {
        assert_eq!(
            sample(&metrics, &series),
            Some(value),
            "{series} in\n{metrics}"
        );
    }
    assert_eq!(http_get(&ops, "/healthz").0, 200);
    assert_eq!(http_get(&ops, "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(weir.terminate(), Some(0));
}

#[test]
fn readyz_follows_the_broker() {
    let broker = start_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text, ..) = chaos_config(&broker.address, 1, "", "");
    let config = write_config(dir.path(), &text);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    let ops = weir.ops_address();
    wait_until(Duration::from_secs(30), "ready", || {
        http_get(&ops, "/readyz").0 == 200
    });
    broker.stop();
    let mut body = String::new();
    wait_until(
        Duration::from_secs(30),
        "not ready while the broker is stopped",
        || {
            let (status, text) = http_get(&ops, "/readyz");
            body = text;
            status == 503
        },
    );
    assert!(body.contains("broker trouble"), "{body}");
    assert_eq!(http_get(&ops, "/healthz").0, 200, "alive all along");
    broker.resume();
    wait_until(Duration::from_secs(60), "ready again", || {
        http_get(&ops, "/readyz").0 == 200
    });
    assert_eq!(weir.terminate(), Some(0));
}

fn weir_cli(args: &[&str]) -> (i32, String, String) {
    let output = run(weir().args(args));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr(&output),
    )
}

#[test]
fn dlq_replay_after_a_fix_delivers_and_a_second_replay_sends_nothing() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    // A plugin "bug": every record is rejected.
    let (text, input, output, dlq, group) = chaos_config(brokers, 2, r#"mode = "invalid""#, "");
    let broken = write_config(dir.path(), &text);
    let values: Vec<String> = (0..30).map(|i| format!("msg-{i}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let weir = Weir::start(&broken, dir.path(), "broken");
    weir.wait_ready(1);
    produce(brokers, &input, &commands(&values));
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);
    assert_eq!(weir.terminate(), Some(0));
    assert_eq!(read_topic(brokers, &dlq, 30, SETTLE).len(), 30);

    let config = broken.to_str().unwrap();
    let (code, out, err) = weir_cli(&[
        "dlq",
        "inspect",
        "--pipeline",
        "chaos",
        "--config",
        config,
        "--limit",
        "5",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("30 record(s), latest 5 shown"), "{out}");
    assert!(out.contains("invalid           30"), "{out}");
    assert!(out.contains("chaos plugin rejects this event"), "{out}");

    // Fix the plugin's config and run weir again.
    let fixed = write_config(dir.path(), &text.replace(r#"mode = "invalid""#, ""));
    let weir = Weir::start(&fixed, dir.path(), "fixed");
    weir.wait_ready(1);
    let config = fixed.to_str().unwrap();
    let (code, out, err) = weir_cli(&[
        "dlq",
        "replay",
        "--pipeline",
        "chaos",
        "--config",
        config,
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "would replay 30 record(s) from {dlq} (30 to {input})"
        )),
        "{out}"
    );
    let (code, out, err) = weir_cli(&["dlq", "replay", "--pipeline", "chaos", "--config", config]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replayed 30 record(s)"), "{out}");

    let outs = read_topic(brokers, &output, 30, SETTLE);
    assert_eq!(outs.len(), 30, "every replayed record comes out once");
    for m in &outs {
        let headers: Vec<(String, String)> = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            headers.contains(&("weir.replayed".to_owned(), "1".to_owned())),
            "{headers:?}"
        );
        assert!(
            !headers.iter().any(|(k, _)| k.starts_with("weir.error")),
            "{headers:?}"
        );
    }
    let (code, out, _) = weir_cli(&["dlq", "replay", "--pipeline", "chaos", "--config", config]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to replay"), "{out}");
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);
    assert_eq!(
        read_topic(brokers, &output, 30, Duration::from_secs(5)).len(),
        30,
        "the second replay sent nothing"
    );
    assert_eq!(weir.terminate(), Some(0));
}
