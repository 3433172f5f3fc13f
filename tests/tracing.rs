//! Tracing end to end: the spans weir exports over OTLP, as a real Jaeger shows them.
//! Jaeger is the all-in-one that scripts/install-jaeger builds (tests/common/jaeger.rs);
//! no broker is needed for the harness's own test.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::jaeger::{Jaeger, Link};
use serde_json::{Value, json};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const CHILD: &str = "53995c3f42cd8ad8";
const LINKED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const LINKED_SPAN: &str = "b7ad6b7169203331";

/// The wall clock in nanoseconds since the Unix epoch, as OTLP/JSON writes times.
fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_nanos()
}

/// An OTLP/JSON export request for `service`: a server span `handle` and its child
/// `call` in `trace`. The child has attributes, an event and a link to another
/// trace, and ends in an error.
fn handmade_spans(service: &str, trace: &str) -> Value {
    let start = now_ns();
    let at = |offset_ms: u128| (start + offset_ms * 1_000_000).to_string();
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": service}},
                {"key": "host.name", "value": {"stringValue": "test-host"}},
            ]},
            "scopeSpans": [{
                "scope": {"name": "weir-tests"},
                "spans": [
                    {
                        "traceId": trace,
                        "spanId": PARENT,
                        "name": "handle",
                        "kind": 2,
                        "startTimeUnixNano": at(0),
                        "endTimeUnixNano": at(10),
                        "status": {"code": 1},
                    },
                    {
                        "traceId": trace,
                        "spanId": CHILD,
                        "parentSpanId": PARENT,
                        "name": "call",
                        "kind": 1,
                        "startTimeUnixNano": at(2),
                        "endTimeUnixNano": at(8),
                        "attributes": [
                            {"key": "weir.pipeline", "value": {"stringValue": "todo"}},
                            {"key": "weir.attempt", "value": {"intValue": "3"}},
                        ],
                        "events": [{
                            "timeUnixNano": at(5),
                            "name": "retrying",
                            "attributes": [
                                {"key": "reason", "value": {"stringValue": "timeout"}},
                                {"key": "delay_ms", "value": {"intValue": "250"}},
                            ],
                        }],
                        "links": [{
                            "traceId": LINKED_TRACE,
                            "spanId": LINKED_SPAN,
                            "attributes": [
                                {"key": "weir.link", "value": {"stringValue": "input"}},
                            ],
                        }],
                        "status": {"code": 2, "message": "the plugin trapped"},
                    },
                ],
            }],
        }],
    })
}

#[test]
fn jaeger_takes_otlp_and_answers_queries() {
    let dir = tempfile::tempdir().unwrap();
    let jaeger = Jaeger::start(dir.path());
    // A second one beside it, as parallel tests have: other ports, its own spans.
    let other = Jaeger::start(dir.path());
    let addresses = |j: &Jaeger| {
        [
            j.otlp_grpc_endpoint(),
            j.otlp_http_endpoint(),
            j.query_address().to_owned(),
            j.metrics_address().to_owned(),
        ]
    };
    for a in addresses(&jaeger) {
        assert!(
            !addresses(&other).contains(&a),
            "both Jaegers use {a}: see {} and {}",
            jaeger.config().display(),
            other.config().display()
        );
    }
    for j in [&jaeger, &other] {
        let grpc = j.otlp_grpc_endpoint();
        let address = grpc.strip_prefix("http://127.0.0.1:").map_or_else(
            || panic!("not an http://127.0.0.1 endpoint: {grpc}"),
            |port| format!("127.0.0.1:{port}"),
        );
        TcpStream::connect(&address)
            .unwrap_or_else(|e| panic!("nothing takes OTLP/gRPC on {address} ({e})"));
    }
    assert!(jaeger.trace(TRACE).is_none(), "a new Jaeger has no trace");

    jaeger.post_otlp_json(&handmade_spans("weir-harness", TRACE));
    let trace = jaeger.wait_for_trace(TRACE, Duration::from_secs(30), |t| t.spans.len() == 2);

    assert_eq!(trace.trace_id, TRACE);
    let handle = trace.span("handle");
    let call = trace.span("call");
    let summary = trace.outline();
    assert_eq!(handle.trace_id, TRACE, "{summary}");
    assert_eq!(handle.span_id, PARENT, "{summary}");
    assert_eq!(handle.parent_span_id, None, "{summary}");
    assert!(handle.links.is_empty(), "{summary}");
    assert_eq!(call.span_id, CHILD, "{summary}");
    assert_eq!(call.parent_span_id.as_deref(), Some(PARENT), "{summary}");
    assert_eq!(
        trace.parent_of(call).map(|s| &s.span_id),
        Some(&handle.span_id)
    );
    assert!(trace.parent_of(handle).is_none(), "{summary}");
    let children: Vec<&str> = trace
        .children_of(handle)
        .iter()
        .map(|s| s.operation_name.as_str())
        .collect();
    assert_eq!(children, ["call"], "{summary}");
    assert_eq!(trace.roots().len(), 1, "{summary}");

    // The span kind, and the resource as the process.
    assert_eq!(handle.kind.as_deref(), Some("server"), "{summary}");
    assert_eq!(call.kind.as_deref(), Some("internal"), "{summary}");
    for span in [handle, call] {
        assert_eq!(span.service, "weir-harness", "{summary}");
        assert_eq!(
            span.process_tags.get("host.name").map(String::as_str),
            Some("test-host"),
            "{summary}"
        );
        assert_eq!(span.tag("otel.scope.name"), Some("weir-tests"), "{summary}");
    }

    // Attributes as tags, numbers as text.
    assert_eq!(call.tag("weir.pipeline"), Some("todo"), "{summary}");
    assert_eq!(call.tag("weir.attempt"), Some("3"), "{summary}");
    assert_eq!(handle.tag("weir.pipeline"), None, "{summary}");

    // The event as a log: its name in the field `event`, its attributes the others.
    assert!(handle.logs.is_empty(), "{summary}");
    let [event] = &call.logs[..] else {
        panic!("expected one event on call: {summary}");
    };
    assert_eq!(event.name.as_deref(), Some("retrying"), "{summary}");
    assert_eq!(
        event.fields,
        [("delay_ms", "250"), ("reason", "timeout")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        "{summary}"
    );
    assert!(event.timestamp_us >= call.start_us, "{summary}");
    assert_eq!(call.events_named("retrying").len(), 1, "{summary}");

    // The link as a FOLLOWS_FROM reference, without its attributes.
    assert_eq!(
        call.links,
        [Link {
            trace_id: LINKED_TRACE.to_owned(),
            span_id: LINKED_SPAN.to_owned(),
            ref_type: "FOLLOWS_FROM".to_owned(),
        }],
        "{summary}"
    );
    assert_eq!(call.tag("weir.link"), None, "{summary}");

    // The status as tags.
    assert_eq!(handle.status.code.as_deref(), Some("OK"), "{summary}");
    assert!(!handle.status.error, "{summary}");
    assert_eq!(handle.status.description, None, "{summary}");
    assert_eq!(call.status.code.as_deref(), Some("ERROR"), "{summary}");
    assert_eq!(
        call.status.description.as_deref(),
        Some("the plugin trapped"),
        "{summary}"
    );
    assert!(call.status.error, "{summary}");
    assert_eq!(call.tag("error"), Some("true"), "{summary}");

    // Found without its id, too.
    assert_eq!(jaeger.services(), ["weir-harness"]);
    let found = jaeger.traces_of("weir-harness", 10);
    let ids: Vec<&str> = found.iter().map(|t| t.trace_id.as_str()).collect();
    assert_eq!(ids, [TRACE]);
    assert_eq!(found[0].spans.len(), 2);
    assert!(jaeger.traces_of("nobody", 10).is_empty());

    // The other Jaeger has none of it, and takes its own spans.
    assert!(other.trace(TRACE).is_none());
    assert!(other.services().is_empty());
    let other_trace = "5bf92f3577b34da6a3ce929d0e0e4736";
    other.post_otlp_json(&handmade_spans("weir-other", other_trace));
    let seen = other.wait_for_trace(other_trace, Duration::from_secs(30), |t| t.spans.len() == 2);
    assert_eq!(seen.span("call").service, "weir-other");
    assert!(jaeger.trace(other_trace).is_none());
}
