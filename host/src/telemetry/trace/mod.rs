//! Distributed tracing: OpenTelemetry spans for every record, with W3C trace
//! context carried in Kafka headers, exported over OTLP.
//!
//! Off unless `[tracing]` or the `OTEL_*` variables name an endpoint
//! ([`settings`]); then [`start`] sets the process-wide tracer once, and the record
//! path asks [`RecordTrace::consume`] for each record. With tracing off that
//! returns `None` and nothing else here runs: no header is parsed, no id made.
//!
//! The spans of one record (names and attributes in docs/reference.md §
//! "Tracing"):
//!
//! ```text
//! process <topic>                  consumer, continues the input's traceparent
//! ├── handle-event <plugin>        one per plugin call (and attempt)
//! ├── send <topic>                 producer, one per output, ends at the ack
//! └── send <dead-letter topic>     producer, with the reason and message
//! timer <pipeline>                 a fired timer: a new trace, linked to the call
//! └── handle-timer <plugin>        span that set the timer
//! ```
//!
//! Every record weir writes for a traced record (output, dead letter, changelog
//! record) carries `traceparent` (and the input's `tracestate`): of its send span
//! when sampled, else of the consume span, so that a downstream consumer continues
//! the same trace either way. Spans are only recorded for sampled records; an
//! unsampled one costs the header parse, two ids and the header it writes.

mod export;
pub mod settings;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, SpanId};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, Span};

pub use export::SPANS;
pub use settings::{Settings, SettingsError};

use crate::record::Header;

/// The W3C headers weir reads and writes.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Attribute and event limits of what a plugin adds to its call span.
const PLUGIN_ATTRIBUTES: usize = 32;
const PLUGIN_EVENTS: usize = 32;
const PLUGIN_KEY_MAX: usize = 256;
const PLUGIN_VALUE_MAX: usize = 4096;

/// The process-wide tracer, once tracing is on.
struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

static TRACING: OnceLock<Tracing> = OnceLock::new();

fn tracing() -> Option<&'static Tracing> {
    TRACING.get()
}

/// Whether tracing is on in this process.
pub fn enabled() -> bool {
    TRACING.get().is_some()
}

/// Turns tracing on for the process with `settings`: starts the export thread.
/// `Err` when the exporter cannot be made (a bad endpoint).
pub fn start(settings: &Settings) -> Result<(), String> {
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let processor = export::start(settings, resource.clone())?;
    let ratio = settings.sampling.ratio;
    let root = if ratio >= 1.0 {
        Sampler::AlwaysOn
    } else if ratio <= 0.0 {
        Sampler::AlwaysOff
    } else {
        Sampler::TraceIdRatioBased(ratio)
    };
    let sampler = if settings.sampling.parent_based {
        Sampler::ParentBased(Box::new(root))
    } else {
        root
    };
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("weir");
    let _ = TRACING.set(Tracing {
        provider,
        tracer,
        propagator: TraceContextPropagator::new(),
    });
    tracing::info!(
        endpoint = %settings.endpoint,
        protocol = settings.protocol.as_str(),
        sample_ratio = ratio,
        parent_based = settings.sampling.parent_based,
        service = %settings.service_name,
        "tracing: spans go to the collector over OTLP"
    );
    Ok(())
}

/// Exports the spans still queued (at most `timeout`), at exit.
pub fn shutdown(timeout: Duration) {
    if let Some(t) = tracing() {
        let _ = t.provider.shutdown_with_timeout(timeout);
    }
}

/// A name made once per distinct text (span names are `Cow<'static, str>`; a
/// record's must not cost an allocation).
fn interned(name: String) -> Cow<'static, str> {
    static NAMES: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(name) = names.get(&name) {
        return Cow::Borrowed(name);
    }
    let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
    names.insert(name, leaked);
    Cow::Borrowed(leaked)
}

/// Reads W3C headers out of a record's headers.
struct HeaderExtractor<'h>(&'h [Header]);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.key.eq_ignore_ascii_case(key))
            .and_then(|h| std::str::from_utf8(&h.value).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key.as_str()).collect()
    }
}

/// What a record's consumer needs to name its spans: made once per pipeline.
#[derive(Clone)]
pub struct ConsumeNames {
    process: Cow<'static, str>,
    timer: Cow<'static, str>,
    pipeline: opentelemetry::Value,
    group: opentelemetry::Value,
    topic: opentelemetry::Value,
}

impl ConsumeNames {
    pub fn new(pipeline: &str, group: &str, topic: &str) -> ConsumeNames {
        ConsumeNames {
            process: interned(format!("process {topic}")),
            timer: interned(format!("timer {pipeline}")),
            pipeline: pipeline.to_owned().into(),
            group: group.to_owned().into(),
            topic: topic.to_owned().into(),
        }
    }
}

/// A record's place in its trace: its consume span (or a fired timer's span),
/// recording or not. Cheap to clone; the span ends when the last clone goes (at
/// least once: when its last output is acknowledged; exactly once: when its
/// transaction ends).
#[derive(Clone)]
pub struct RecordTrace {
    cx: Context,
    /// The span's `traceparent`, made once: what an unsampled record's writes
    /// carry, and the ids of its log lines.
    header: [u8; TRACEPARENT_LEN],
    /// The input's `tracestate`, when it had one.
    state: Option<std::sync::Arc<[u8]>>,
}

impl std::fmt::Debug for RecordTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sc = self.span_context();
        write!(f, "RecordTrace({}-{})", sc.trace_id(), sc.span_id())
    }
}

impl RecordTrace {
    /// The consume span of a record: continues its `traceparent` (keeping the
    /// parent's sampling decision), or starts a trace. `None` with tracing off.
    pub fn consume(
        names: &ConsumeNames,
        partition: i32,
        offset: i64,
        headers: &[Header],
    ) -> Option<RecordTrace> {
        let t = tracing()?;
        let parent = if headers
            .iter()
            .any(|h| h.key.eq_ignore_ascii_case(TRACEPARENT))
        {
            t.propagator
                .extract_with_context(&Context::new(), &HeaderExtractor(headers))
        } else {
            Context::new()
        };
        let mut span = t
            .tracer
            .span_builder(names.process.clone())
            .with_kind(SpanKind::Consumer)
            .start_with_context(&t.tracer, &parent);
        if span.is_recording() {
            span.set_attributes([
                KeyValue::new("messaging.system", "kafka"),
                KeyValue::new("messaging.operation.type", "process"),
                KeyValue::new("messaging.operation.name", "process"),
                KeyValue::new("messaging.destination.name", names.topic.clone()),
                KeyValue::new("messaging.destination.partition.id", partition.to_string()),
                KeyValue::new("messaging.kafka.offset", offset),
                KeyValue::new("messaging.consumer.group.name", names.group.clone()),
                KeyValue::new("weir.pipeline", names.pipeline.clone()),
            ]);
        }
        Some(RecordTrace::of(span))
    }

    /// The span of a fired timer: a trace of its own, linked to the span that set
    /// the timer (`setter`, when known), and sampled when that one was (else by
    /// the sampler, like a new record). `None` with tracing off.
    pub fn timer(
        names: &ConsumeNames,
        partition: i32,
        timer: &str,
        due_ms: i64,
        lateness_ms: i64,
        setter: Option<SpanContext>,
    ) -> Option<RecordTrace> {
        let t = tracing()?;
        let mut builder = t
            .tracer
            .span_builder(names.timer.clone())
            .with_kind(SpanKind::Internal);
        if let Some(setter) = setter.filter(SpanContext::is_valid) {
            if setter.is_sampled() {
                builder = builder.with_sampling_result(opentelemetry::trace::SamplingResult {
                    decision: opentelemetry::trace::SamplingDecision::RecordAndSample,
                    attributes: Vec::new(),
                    trace_state: TraceState::default(),
                });
            }
            builder = builder.with_links(vec![Link::with_context(setter)]);
        }
        let mut span = builder.start_with_context(&t.tracer, &Context::new());
        if span.is_recording() {
            span.set_attributes([
                KeyValue::new("weir.pipeline", names.pipeline.clone()),
                KeyValue::new("messaging.destination.name", names.topic.clone()),
                KeyValue::new("messaging.destination.partition.id", partition.to_string()),
                KeyValue::new("weir.timer.name", timer.to_owned()),
                KeyValue::new("weir.timer.due-ms", due_ms),
                KeyValue::new("weir.timer.lateness-ms", lateness_ms),
            ]);
        }
        Some(RecordTrace::of(span))
    }

    /// A record's trace with `span` as its span.
    fn of(span: Span) -> RecordTrace {
        let sc = span.span_context();
        let header = encode_traceparent(sc);
        let state = sc.trace_state().header();
        RecordTrace {
            header,
            state: (!state.is_empty()).then(|| state.into_bytes().into()),
            cx: Context::new().with_span(span),
        }
    }

    pub fn span_context(&self) -> SpanContext {
        self.cx.span().span_context().clone()
    }

    /// Whether the record's spans are recorded and exported.
    pub fn sampled(&self) -> bool {
        self.cx.span().span_context().is_sampled()
    }

    /// The trace and span ids in hex, for log lines.
    pub fn ids(&self) -> (&str, &str) {
        let hex = |range: std::ops::Range<usize>| {
            std::str::from_utf8(&self.header[range]).unwrap_or_default()
        };
        (hex(3..35), hex(36..52))
    }

    /// Adds an event to the consume span (sampled records only).
    pub fn event(&self, name: &'static str, attributes: impl FnOnce() -> Vec<KeyValue>) {
        let span = self.cx.span();
        if span.is_recording() {
            span.add_event(name, attributes());
        }
    }

    /// Marks the consume span failed with `message` (a dead letter).
    pub fn fail(&self, message: &str) {
        let span = self.cx.span();
        if span.is_recording() {
            span.set_status(Status::error(message.to_owned()));
        }
    }

    /// A child of the record's span named `name`, for a sampled record.
    fn child(&self, name: String, kind: SpanKind) -> Option<Span> {
        let t = tracing()?;
        if !self.sampled() {
            return None;
        }
        Some(
            t.tracer
                .span_builder(interned(name))
                .with_kind(kind)
                .start_with_context(&t.tracer, &self.cx),
        )
    }

    /// A send span for one record to `topic` (sampled records only; an unsampled
    /// record's writes carry its consume span's context).
    pub fn send(&self, topic: &str, branch: &str) -> Option<SendSpan> {
        let mut span = self.child(format!("send {topic}"), SpanKind::Producer)?;
        span.set_attributes([
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.operation.type", "send"),
            KeyValue::new("messaging.operation.name", "send"),
            KeyValue::new("messaging.destination.name", topic.to_owned()),
            KeyValue::new("weir.branch", branch.to_owned()),
        ]);
        Some(SendSpan {
            cx: Context::new().with_span(span),
        })
    }

    /// The span of one plugin call (`export`: `handle-event` or `handle-timer`),
    /// a child of the consume span (sampled records only).
    pub fn call(&self, export: &str, plugin: &str, sha256: &str, attempt: u32) -> Option<CallSpan> {
        let mut span = self.child(format!("{export} {plugin}"), SpanKind::Internal)?;
        span.set_attributes([
            KeyValue::new("weir.plugin.name", plugin.to_owned()),
            KeyValue::new("weir.plugin.sha256", sha256.to_owned()),
            KeyValue::new("weir.attempt", i64::from(attempt)),
        ]);
        Some(CallSpan {
            span,
            attributes: 0,
            events: 0,
        })
    }

    /// Writes `traceparent` (of `send` if given, else of the record's span) and the
    /// record's `tracestate` into `headers`, replacing any there.
    pub fn stamp(&self, headers: &mut Vec<Header>, send: Option<&SendSpan>) {
        let parent = match send {
            Some(s) => encode_traceparent(s.cx.span().span_context()),
            None => self.header,
        };
        stamp(headers, &parent, self.state.as_deref());
    }
}

/// Writes `traceparent` (and `tracestate`) into `headers`, replacing any there.
fn stamp(headers: &mut Vec<Header>, traceparent: &[u8], tracestate: Option<&[u8]>) {
    headers.retain(|h| {
        !h.key.eq_ignore_ascii_case(TRACEPARENT) && !h.key.eq_ignore_ascii_case(TRACESTATE)
    });
    headers.push(Header {
        key: TRACEPARENT.to_owned(),
        value: traceparent.to_vec(),
    });
    if let Some(state) = tracestate {
        headers.push(Header {
            key: TRACESTATE.to_owned(),
            value: state.to_vec(),
        });
    }
}

/// The length of a version-00 `traceparent`.
const TRACEPARENT_LEN: usize = 55;

/// `00-<trace id>-<span id>-<flags>`, in lowercase hex.
fn encode_traceparent(sc: &SpanContext) -> [u8; TRACEPARENT_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; TRACEPARENT_LEN];
    out[0] = b'0';
    out[1] = b'0';
    let mut put = |at: usize, bytes: &[u8]| {
        for (i, b) in bytes.iter().enumerate() {
            out[at + 2 * i] = HEX[usize::from(b >> 4)];
            out[at + 2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
    };
    put(3, &sc.trace_id().to_bytes());
    put(36, &sc.span_id().to_bytes());
    put(53, &[sc.trace_flags().to_u8()]);
    out
}

/// `00-<trace id>-<span id>-<flags>`.
pub fn traceparent(sc: &SpanContext) -> String {
    String::from_utf8_lossy(&encode_traceparent(sc)).into_owned()
}

/// The span context a `traceparent` value names, if it is valid.
pub fn parse_traceparent(value: &[u8]) -> Option<SpanContext> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let sc = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

/// A send span (sampled records only): ends when the record is acknowledged or
/// given up.
#[derive(Clone)]
pub struct SendSpan {
    cx: Context,
}

impl SendSpan {
    /// The record was acknowledged.
    pub fn delivered(&self) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("weir.outcome", "delivered"));
        span.end();
    }

    /// A delivery attempt failed (the producer keeps trying unless refused).
    pub fn failed(&self, trouble: &'static str) {
        self.cx.span().add_event(
            "delivery failed",
            vec![KeyValue::new("weir.trouble", trouble)],
        );
    }

    /// The broker refused the record for good.
    pub fn refused(&self, message: &str) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("weir.outcome", "refused"));
        span.set_status(Status::error(message.to_owned()));
        span.end();
    }

    /// This record is a dead letter: its reason and message.
    pub fn dead_letter(&self, reason: &'static str, message: &str) {
        let span = self.cx.span();
        span.set_attributes([
            KeyValue::new("weir.error.reason", reason),
            KeyValue::new("weir.error.message", message.to_owned()),
        ]);
        span.set_status(Status::error(format!("{reason}: {message}")));
    }
}

/// The span of one plugin call, with what the plugin adds through the `span`
/// import (bounded).
pub struct CallSpan {
    span: Span,
    attributes: usize,
    events: usize,
}

impl CallSpan {
    /// A plugin's `set-attribute`.
    pub fn set_attribute(&mut self, key: &str, value: &str) {
        if self.attributes >= PLUGIN_ATTRIBUTES {
            return;
        }
        self.attributes += 1;
        self.span.set_attribute(KeyValue::new(
            bounded(key, PLUGIN_KEY_MAX),
            bounded(value, PLUGIN_VALUE_MAX),
        ));
    }

    /// A plugin's `add-event`.
    pub fn add_event(&mut self, name: &str, attributes: &[(String, String)]) {
        if self.events >= PLUGIN_EVENTS {
            return;
        }
        self.events += 1;
        let attributes = attributes
            .iter()
            .take(PLUGIN_ATTRIBUTES)
            .map(|(k, v)| KeyValue::new(bounded(k, PLUGIN_KEY_MAX), bounded(v, PLUGIN_VALUE_MAX)))
            .collect();
        self.span
            .add_event(bounded(name, PLUGIN_KEY_MAX), attributes);
    }

    /// This span, for a timer the call sets (the fired timer links to it).
    pub fn link(&self) -> [u8; 25] {
        let sc = self.span.span_context();
        let mut link = [0; 25];
        link[..16].copy_from_slice(&sc.trace_id().to_bytes());
        link[16..24].copy_from_slice(&sc.span_id().to_bytes());
        link[24] = sc.trace_flags().to_u8();
        link
    }
}

/// The span context a timer's link names, if valid.
pub fn link_context(link: &[u8; 25]) -> Option<SpanContext> {
    let trace: [u8; 16] = link[..16].try_into().ok()?;
    let span: [u8; 8] = link[16..24].try_into().ok()?;
    let sc = SpanContext::new(
        TraceId::from_bytes(trace),
        SpanId::from_bytes(span),
        TraceFlags::new(link[24]),
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

impl CallSpan {
    /// Ends the span with the call's outcome: `Ok(outputs)` or the failure's kind
    /// and message.
    pub fn finish(mut self, outcome: Result<usize, (&'static str, String)>) {
        match outcome {
            Ok(outputs) => {
                self.span.set_attributes([
                    KeyValue::new("weir.outcome", "ok"),
                    KeyValue::new("weir.outputs", outputs as i64),
                ]);
            }
            Err((kind, message)) => {
                self.span.set_attribute(KeyValue::new("weir.outcome", kind));
                self.span.set_status(Status::error(message));
            }
        }
        self.span.end();
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn bounded(s: &str, max: usize) -> String {
    s[..s.floor_char_boundary(max)].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_bad_values() {
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let text = traceparent(&sc);
        assert_eq!(
            text,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let back = parse_traceparent(text.as_bytes()).unwrap();
        assert_eq!(back.trace_id(), sc.trace_id());
        assert_eq!(back.span_id(), sc.span_id());
        assert!(back.is_sampled());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad.as_bytes()).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn stamping_replaces_the_inputs_context() {
        let sc =
            parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        let mut headers = vec![
            Header {
                key: "Traceparent".into(),
                value: b"00-11111111111111111111111111111111-2222222222222222-01".to_vec(),
            },
            Header {
                key: "tracestate".into(),
                value: b"a=b".to_vec(),
            },
            Header {
                key: "correlation_id".into(),
                value: b"c".to_vec(),
            },
        ];
        stamp(&mut headers, &encode_traceparent(&sc), None);
        let keys: Vec<&str> = headers.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, ["correlation_id", "traceparent"]);
        assert_eq!(
            headers[1].value,
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }
}
