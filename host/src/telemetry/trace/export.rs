//! Getting finished spans to the collector without ever holding up a record.
//!
//! A span that ends is handed to [`QueueProcessor`], which puts it in a bounded
//! queue and returns at once: when the queue is full (the collector is down or
//! slow), the span is dropped and counted in `weir_trace_spans_total{outcome=
//! "dropped"}`. One thread, `weir-trace-export`, takes spans off the queue in
//! batches and sends them with the OTLP exporter; a failed export is counted
//! (`outcome="failed"`) and its spans are not retried (the exporter's own timeout
//! bounds how long one takes). Nothing on the record path waits for it.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use opentelemetry::Context;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus::{IntCounterVec, Opts};

use super::settings::{Protocol, Settings};

/// Spans sent in one export at most.
const BATCH: usize = 512;
/// How long the exporter waits for a batch to fill after its first span.
const LINGER: Duration = Duration::from_millis(200);

/// `weir_trace_spans_total{outcome}`: spans `exported`, `dropped` (the queue was
/// full) or `failed` (the collector did not take them). Process-wide like the
/// tracer; every metrics registry exposes it.
#[allow(clippy::expect_used, reason = "a static metric definition")]
pub static SPANS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let spans = IntCounterVec::new(
        Opts::new(
            "weir_trace_spans_total",
            "Finished trace spans, by what became of them: exported to the collector, dropped because the export queue was full, or failed (the collector refused them or did not answer).",
        ),
        &["outcome"],
    )
    .expect("valid metric definition");
    for outcome in ["exported", "dropped", "failed"] {
        spans.with_label_values(&[outcome]);
    }
    spans
});

enum Message {
    Span(Box<SpanData>),
    /// Export everything queued before it, then answer.
    Flush(Sender<()>),
}

/// Hands finished spans to the export thread through a bounded queue.
#[derive(Debug)]
pub struct QueueProcessor {
    queue: Sender<Message>,
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        match self.queue.try_send(Message::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                SPANS.with_label_values(&["dropped"]).inc();
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush(Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.flush(timeout)
    }
}

impl QueueProcessor {
    /// Waits (at most `timeout`) until what is queued now was exported.
    fn flush(&self, timeout: Duration) -> OTelSdkResult {
        let (done, wait) = bounded(1);
        let deadline = Instant::now() + timeout;
        // The queue may be full: a flush waits for room like anything else, but
        // not past its deadline.
        self.queue
            .send_timeout(Message::Flush(done), timeout)
            .map_err(|_| OTelSdkError::Timeout(timeout))?;
        wait.recv_deadline(deadline)
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

/// Starts the export thread with the exporter `settings` ask for, and returns the
/// processor that feeds it; `Err` names what is wrong with the settings.
pub fn start(settings: &Settings, resource: Resource) -> Result<QueueProcessor, String> {
    let (queue, spans) = bounded(settings.queue);
    let (built, result) = bounded(1);
    let settings = settings.clone();
    std::thread::Builder::new()
        .name("weir-trace-export".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = built.send(Err(format!("cannot start the export runtime: {e}")));
                    return;
                }
            };
            // The gRPC client must be made inside the runtime it runs on.
            let exporter = runtime.block_on(async { exporter(&settings) });
            let mut exporter = match exporter {
                Ok(exporter) => {
                    let _ = built.send(Ok(()));
                    exporter
                }
                Err(e) => {
                    let _ = built.send(Err(e));
                    return;
                }
            };
            exporter.set_resource(&resource);
            export_loop(&runtime, &exporter, &spans);
        })
        .map_err(|e| format!("cannot start the trace export thread: {e}"))?;
    result
        .recv()
        .map_err(|_| "the trace export thread stopped at start".to_owned())??;
    Ok(QueueProcessor { queue })
}

fn exporter(settings: &Settings) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let built = match settings.protocol {
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.timeout)
            .build(),
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.timeout)
            .with_headers(Default::default())
            .build(),
    };
    built.map_err(|e| {
        format!(
            "cannot make the OTLP exporter for {}: {e}",
            settings.endpoint
        )
    })
}

/// Exports batches until every processor is gone.
fn export_loop(
    runtime: &tokio::runtime::Runtime,
    exporter: &opentelemetry_otlp::SpanExporter,
    spans: &Receiver<Message>,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<Sender<()>> = Vec::new();
    let mut failures: u32 = 0;
    loop {
        // Wait for a first message, then linger a little for a fuller batch.
        let Ok(first) = spans.recv() else {
            return;
        };
        let deadline = Instant::now() + LINGER;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Span(span) => batch.push(*span),
                Message::Flush(done) => {
                    waiting.push(done);
                    break;
                }
            }
            if batch.len() >= BATCH {
                break;
            }
            next = match spans.recv_deadline(deadline) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => None,
            };
        }
        if !batch.is_empty() {
            let count = batch.len() as u64;
            match runtime.block_on(exporter.export(std::mem::take(&mut batch))) {
                Ok(()) => {
                    failures = 0;
                    SPANS.with_label_values(&["exported"]).inc_by(count);
                }
                Err(error) => {
                    SPANS.with_label_values(&["failed"]).inc_by(count);
                    failures += 1;
                    // Once per outage, then every hundredth failure.
                    if failures == 1 || failures.is_multiple_of(100) {
                        tracing::warn!(%error, spans = count, failures, "cannot export spans to the trace collector; they are dropped (weir_trace_spans_total{{outcome=\"failed\"}}) and records go on");
                    }
                }
            }
            batch = Vec::with_capacity(BATCH);
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
