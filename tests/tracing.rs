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

// ------------------------------------------------------------ weir's own traces

mod weir_traces {
    use std::collections::HashMap;
    use std::time::Duration;

    use rdkafka::message::{Headers, Message, OwnedMessage};

    use super::common::jaeger::{Jaeger, Span, Trace};
    use super::common::kafka::*;
    use super::common::todo::{branched_todo_config, records, start};

    const WAIT: Duration = Duration::from_secs(60);

    /// A `traceparent` of trace `n` (sampled or not), and its parts.
    fn parent(n: usize, sampled: bool) -> (String, String, String) {
        let trace = format!(
            "{:032x}",
            0xabc0_0000_0000_0000_0000_0000_0000_0000u128 + n as u128
        );
        let span = format!("{:016x}", 0x1000 + n);
        let flags = if sampled { "01" } else { "00" };
        (format!("00-{trace}-{span}-{flags}"), trace, span)
    }

    /// A record's `traceparent` as (trace id, span id, flags).
    fn traceparent(m: &OwnedMessage) -> (String, String, String) {
        let headers = m.headers().expect("a record with headers");
        let values: Vec<String> = headers
            .iter()
            .filter(|h| h.key == "traceparent")
            .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
            .collect();
        assert_eq!(
            values.len(),
            1,
            "exactly one traceparent on a record of {}: {values:?}",
            m.topic()
        );
        let parts: Vec<&str> = values[0].split('-').collect();
        assert_eq!(parts.len(), 4, "a W3C traceparent: {}", values[0]);
        assert_eq!(parts[0], "00");
        (
            parts[1].to_owned(),
            parts[2].to_owned(),
            parts[3].to_owned(),
        )
    }

    /// Records of `messages` by the trace id of their traceparent.
    fn by_trace(messages: &[OwnedMessage]) -> HashMap<String, Vec<&OwnedMessage>> {
        let mut map: HashMap<String, Vec<&OwnedMessage>> = HashMap::new();
        for m in messages {
            map.entry(traceparent(m).0).or_default().push(m);
        }
        map
    }

    fn child<'t>(trace: &'t Trace, of: &Span, name: &str) -> &'t Span {
        let found: Vec<&Span> = trace
            .children_of(of)
            .into_iter()
            .filter(|s| s.operation_name == name)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one child {name:?} of {:?} in\n{}",
            of.operation_name,
            trace.outline()
        );
        found[0]
    }

    /// The shipped Todo deployment, started with only the standard variables
    /// pointing at a real Jaeger: every input's trace is continued, its plugin calls
    /// and sends are children of its consume span, and every output and dead letter
    /// carries a `traceparent` of that trace (of its send span). An invalid event's
    /// trace shows its dead-lettering; inputs without context get traces of their
    /// own; an unsampled parent's decision is kept.
    #[test]
    fn the_todo_deployment_continues_each_inputs_trace_to_every_output() {
        let brokers = shared_broker();
        let dir = tempfile::tempdir().unwrap();
        let jaeger = Jaeger::start(dir.path());
        let todo = branched_todo_config(brokers, &super::common::kafka::wasm("task_validator"), "");
        let config = write_config(dir.path(), &todo.text);
        let endpoint = jaeger.otlp_http_endpoint();
        let weir = Weir::start_env(
            &config,
            dir.path(),
            "weir",
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_SERVICE_NAME", "todo-weir"),
            ],
        );
        weir.wait_ready(1);

        // 40 samples: each of the first 30 with a sampled traceparent of its own,
        // then 5 with an unsampled one, then 5 with none.
        let samples = todo_events::sample::generate(40, 19, start());
        let mut inputs = records(&samples);
        for (i, record) in inputs.iter_mut().enumerate() {
            if i < 35 {
                record.2.push(("traceparent".into(), parent(i, i < 30).0));
            }
        }
        produce(brokers, &todo.input, &inputs);
        let valid = samples.iter().filter(|s| s.valid).count();
        let invalid = samples.len() - valid;
        assert!(invalid > 0 && samples[..30].iter().any(|s| !s.valid));

        let updates = read_topic(brokers, &todo.updates, valid, WAIT);
        let reminders = read_topic(brokers, &todo.reminders, 1, WAIT);
        let ui_dlq = read_topic(brokers, &todo.ui_dlq, invalid, WAIT);
        let reminders_dlq = read_topic(brokers, &todo.reminders_dlq, invalid, WAIT);
        assert_eq!(updates.len(), valid, "one update per valid event");
        assert_eq!(ui_dlq.len(), invalid);
        assert_eq!(reminders_dlq.len(), invalid);
        assert!(!reminders.is_empty(), "some events schedule reminders");

        // Every record weir wrote continues its input's trace.
        let updates_by = by_trace(&updates);
        let reminders_by = by_trace(&reminders);
        let ui_dlq_by = by_trace(&ui_dlq);
        let reminders_dlq_by = by_trace(&reminders_dlq);
        for (i, sample) in samples.iter().enumerate().take(35) {
            let (_, trace, _) = parent(i, i < 30);
            let (written, dlq) = if sample.valid {
                (&updates_by, &ui_dlq_by)
            } else {
                (&ui_dlq_by, &updates_by)
            };
            let records = written.get(&trace).unwrap_or_else(|| {
                panic!(
                    "input {i} (valid: {}): no record carries its trace {trace}",
                    sample.valid
                )
            });
            assert!(!dlq.contains_key(&trace));
            let flags = if i < 30 { "01" } else { "00" };
            for r in records {
                assert_eq!(
                    traceparent(r).2,
                    flags,
                    "the parent's sampling decision is kept"
                );
            }
            if !sample.valid {
                assert!(
                    reminders_dlq_by.contains_key(&trace),
                    "both branches' dead letters"
                );
            }
        }
        // Those without a traceparent got traces of their own: one each.
        let known: Vec<String> = (0..35).map(|i| parent(i, i < 30).1).collect();
        let own: Vec<&String> = updates_by
            .keys()
            .chain(ui_dlq_by.keys())
            .filter(|t| !known.contains(t))
            .collect();
        assert_eq!(
            own.len(),
            5,
            "five inputs without context, five new traces: {own:?}"
        );
        // Reminders come from the events, or from timers that fired (due dates in
        // the samples' past): those start traces of their own, linked to the call
        // that set them.
        let mut triggered = Vec::new();
        for m in reminders.iter().chain(&reminders_dlq) {
            let t = traceparent(m).0;
            if value_text(m).contains("reminder.triggered") {
                triggered.push(t);
            } else {
                assert!(
                    known.contains(&t) || own.contains(&&t),
                    "a reminder of an unknown trace {t}"
                );
            }
        }
        let fired = triggered
            .first()
            .expect("a reminder triggered by its timer");
        let timer = jaeger.wait_for_trace(fired, WAIT, |t| t.spans.len() >= 3);
        let root = timer.span("timer todo");
        assert!(
            root.links
                .iter()
                .any(|l| known.contains(&l.trace_id) || own.contains(&&l.trace_id)),
            "the fired timer links to the trace of the event that set it: {:?}",
            root.links
        );

        // A valid event with a reminder: consume span (child of the producer's
        // span), three plugin calls and two sends under it; the records carry the
        // send spans' ids.
        let (i, trace) = (0..30)
            .map(|i| (i, parent(i, true).1))
            .find(|(_, t)| reminders_by.contains_key(t))
            .expect("a sampled input with a reminder");
        let (_, _, parent_span) = parent(i, true);
        let process = format!("process {}", todo.input);
        let t = jaeger.wait_for_trace(&trace, WAIT, |t| t.spans.len() >= 6);
        let consume = t.span(&process);
        assert_eq!(
            consume.parent_span_id.as_deref(),
            Some(parent_span.as_str())
        );
        assert_eq!(consume.kind.as_deref(), Some("consumer"));
        assert_eq!(consume.service, "todo-weir");
        assert_eq!(consume.tag("messaging.system"), Some("kafka"));
        assert_eq!(
            consume.tag("messaging.destination.name"),
            Some(todo.input.as_str())
        );
        assert_eq!(
            consume.tag("messaging.consumer.group.name"),
            Some(todo.group.as_str())
        );
        assert_eq!(consume.tag("weir.pipeline"), Some("todo"));
        assert!(consume.tag("messaging.kafka.offset").is_some());
        for plugin in ["task_validator", "reminder_deriver", "ui_projector"] {
            let call = child(&t, consume, &format!("handle-event {plugin}"));
            assert_eq!(call.tag("weir.outcome"), Some("ok"));
            assert_eq!(call.tag("weir.attempt"), Some("1"));
            assert_eq!(call.tag("weir.plugin.sha256").map(str::len), Some(64));
        }
        let send_reminder = child(&t, consume, &format!("send {}", todo.reminders));
        let send_update = child(&t, consume, &format!("send {}", todo.updates));
        assert_eq!(send_reminder.kind.as_deref(), Some("producer"));
        assert_eq!(send_reminder.tag("weir.outcome"), Some("delivered"));
        assert_eq!(
            traceparent(reminders_by[&trace][0]).1,
            send_reminder.span_id,
            "the reminder carries its send span"
        );
        assert_eq!(traceparent(updates_by[&trace][0]).1, send_update.span_id);

        // An invalid event: its dead-lettering, on its consume span and the
        // dead letters' send spans.
        let i = (0..30)
            .find(|i| !samples[*i].valid)
            .expect("an invalid sampled input");
        let (_, trace, _) = parent(i, true);
        let t = jaeger.wait_for_trace(&trace, WAIT, |t| t.spans.len() >= 4);
        let consume = t.span(&process);
        assert_eq!(consume.status.code.as_deref(), Some("ERROR"));
        let letters = consume.events_named("dead-letter");
        assert_eq!(letters.len(), 2, "one per branch: {}", t.outline());
        for letter in letters {
            assert_eq!(
                letter.fields.get("weir.error.reason").map(String::as_str),
                Some("invalid")
            );
        }
        let validator = child(&t, consume, "handle-event task_validator");
        assert_eq!(validator.tag("weir.outcome"), Some("invalid"));
        let send = child(&t, consume, &format!("send {}", todo.ui_dlq));
        assert_eq!(send.tag("weir.error.reason"), Some("invalid"));
        assert!(
            send.tag("weir.error.message")
                .is_some_and(|m| !m.is_empty())
        );
        assert_eq!(traceparent(ui_dlq_by[&trace][0]).1, send.span_id);

        // New traces start at the consume span; unsampled parents export nothing.
        for trace in &own {
            let t = jaeger.wait_for_trace(trace, WAIT, |t| t.spans.len() >= 3);
            assert_eq!(t.span(&process).parent_span_id, None, "a root span");
        }
        for i in 30..35 {
            assert!(
                jaeger.trace(&parent(i, false).1).is_none(),
                "the unsampled input {i} has no spans in Jaeger"
            );
        }
        weir.terminate_cleanly();
    }

    /// `[tracing]` in the file, over gRPC, under exactly-once, sampling no new
    /// trace: a record without context still gets a trace id on its outputs (not
    /// sampled, nothing exported); one with a sampled parent is traced, and its
    /// consume span says when its transaction committed. A fired timer's span links
    /// to the plugin call that set the timer, and its output carries its own trace.
    #[test]
    fn sampling_follows_the_parent_and_timers_link_to_their_setter() {
        let brokers = shared_broker();
        let dir = tempfile::tempdir().unwrap();
        let jaeger = Jaeger::start(dir.path());
        let (text, input, output, _dlq, group) =
            counter_config(brokers, r#"delivery = "exactly-once""#);
        let text = format!(
            "[tracing]\nendpoint = \"{}\"\nprotocol = \"grpc\"\nsample-ratio = 0.0\nservice-name = \"counter\"\n\n{text}",
            jaeger.otlp_grpc_endpoint()
        );
        let config = write_config(dir.path(), &text);
        let weir = Weir::start(&config, dir.path(), "weir");
        weir.wait_ready(1);
        let (sampled, trace, parent_span) = parent(900, true);
        let mut records = keyed("alice", &["count"]);
        records.extend(keyed("bob", &["in 1500 ping"]));
        records[1].2.push(("traceparent".into(), sampled));
        produce(brokers, &input, &records);
        let got = read_topic(brokers, &output, 3, WAIT);
        let text_of = |prefix: &str| {
            got.iter()
                .find(|m| value_text(m).starts_with(prefix))
                .unwrap_or_else(|| {
                    panic!(
                        "an output {prefix:?}: {:?}",
                        got.iter().map(value_text).collect::<Vec<_>>()
                    )
                })
        };
        let count = text_of("count=");
        let (count_trace, _, count_flags) = traceparent(count);
        assert_eq!(count_flags, "00", "ratio 0: a new trace is not sampled");
        assert_ne!(count_trace, trace);
        let set = text_of("set ping");
        assert_eq!(traceparent(set).0, trace, "the parent's trace goes on");
        assert_eq!(traceparent(set).2, "01");
        let fired = text_of("fired ping");
        let (fired_trace, fired_span, fired_flags) = traceparent(fired);
        assert_ne!(
            fired_trace, trace,
            "a fired timer starts a trace of its own"
        );
        assert_eq!(fired_flags, "01", "sampled, as the span that set it was");

        // The setting record's trace: consume span with its transaction's commit,
        // and the call span that set the timer.
        let t = jaeger.wait_for_trace(&trace, WAIT, |t| {
            t.spans.len() >= 3
                && t.spans
                    .iter()
                    .any(|s| !s.events_named("transaction.commit").is_empty())
        });
        let consume = t.span(&format!("process {input}"));
        assert_eq!(
            consume.parent_span_id.as_deref(),
            Some(parent_span.as_str())
        );
        assert_eq!(consume.events_named("transaction.commit").len(), 1);
        let call = child(&t, consume, "handle-event counter_plugin");

        // The timer's trace: its span links to that call span.
        let timer = jaeger.wait_for_trace(&fired_trace, WAIT, |t| t.spans.len() >= 3);
        let root = timer.span("timer counter");
        assert_eq!(root.parent_span_id, None);
        assert_eq!(root.tag("weir.timer.name"), Some("ping"));
        assert!(
            root.links
                .iter()
                .any(|l| l.trace_id == trace && l.span_id == call.span_id),
            "the timer links to the call that set it: {:?} (call {})",
            root.links,
            call.span_id
        );
        child(&timer, root, "handle-timer counter_plugin");
        let send = child(&timer, root, &format!("send {output}"));
        assert_eq!(send.span_id, fired_span, "the output carries its send span");

        // The changelog records carry the trace of the record that made them.
        let changelog = read_topic(brokers, &format!("{group}.counter.0.changelog"), 2, WAIT);
        assert!(
            changelog.iter().any(|m| traceparent(m).0 == trace),
            "the timer's changelog record carries its record's trace"
        );
        assert!(
            jaeger.trace(&count_trace).is_none(),
            "an unsampled trace exports nothing"
        );
        weir.terminate_cleanly();
    }

    /// A collector that is down costs records nothing: they all go through, and
    /// the spans that could not be exported are counted.
    #[test]
    fn a_collector_that_is_down_blocks_nothing_and_the_loss_is_counted() {
        let brokers = shared_broker();
        let dir = tempfile::tempdir().unwrap();
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (text, input, output, _dlq, group) = counter_config(brokers, "");
        let config = write_config(dir.path(), &text);
        let endpoint = format!("http://127.0.0.1:{port}");
        let weir = Weir::start_env(
            &config,
            dir.path(),
            "weir",
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
            ],
        );
        weir.wait_ready(1);
        let values: Vec<String> = (0..300).map(|_| "count".to_owned()).collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        produce(brokers, &input, &keyed("k", &values));
        let got = read_topic(brokers, &output, 300, WAIT);
        assert_eq!(got.len(), 300);
        wait_until(WAIT, "every offset committed", || {
            lag(brokers, &group, &input) == 0
        });
        let address = weir.ops_address();
        wait_until(WAIT, "lost spans counted", || {
            let (_, metrics) = http_get(&address, "/metrics");
            metrics.lines().any(|l| {
                l.starts_with("weir_trace_spans_total{outcome=\"failed\"}")
                    && l.split_whitespace()
                        .last()
                        .and_then(|v| v.parse::<f64>().ok())
                        > Some(0.0)
            })
        });
        assert!(
            weir.log_text()
                .contains("cannot export spans to the trace collector"),
            "the outage is logged"
        );
        weir.terminate_cleanly();
    }
}
