//! A real Jaeger for the tracing tests: the Jaeger v2 all-in-one that
//! scripts/install-jaeger builds, started by each test on ports of its own with an
//! in-memory store, and a small typed view of what its query API answers.
//!
//! What the query API (`/api/traces/<id>`, Jaeger's v1 JSON) makes of OTLP spans, as
//! tried by hand on Jaeger v1.75.0 (tests/tracing.rs pins the common cases):
//! - the parent is the first reference, `{"refType": "CHILD_OF", "traceID", "spanID"}`;
//! - a link is a `{"refType": "FOLLOWS_FROM", "traceID", "spanID"}` reference, without
//!   its attributes; a link to the span's own parent takes the parent's place, so that
//!   span shows no CHILD_OF at all;
//! - attributes are tags `{"key", "type", "value"}` with `value` a JSON string, number
//!   or bool; the span kind is the tag `span.kind` (`server`, `client`, `producer`,
//!   `consumer`, `internal`; absent when unspecified), the scope is `otel.scope.name`;
//! - the status is the tag `otel.status_code` (`OK` or `ERROR`; absent when unset),
//!   with `otel.status_description` for its message and the bool tag `error` = true on
//!   an error;
//! - an event is a log `{"timestamp": µs, "fields": [tags]}` whose field `event` holds
//!   the event's name (absent for an empty name; an attribute named `event` replaces
//!   it), its attributes being the other fields;
//! - the resource is the span's process: `serviceName` and the other attributes as
//!   `tags`;
//! - a trace id whose first 8 bytes are zero is written with 16 hex digits; the view
//!   below pads every trace id to 32.
#![allow(dead_code)]

#[path = "../jaeger/config.rs"]
mod jaeger_config;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::net::{free_ports, port_taken};
use super::root;

/// How often Jaeger is started on new ports when another process took one of its
/// ports first.
const ATTEMPTS: usize = 3;

/// How long a started Jaeger may take to answer.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The Jaeger binary, built by scripts/install-jaeger on its first use on this
/// machine (about 14 minutes, with no time limit here) and looked up once per test
/// binary.
pub fn jaeger_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = root().join("scripts/install-jaeger");
        let output = Command::new(&script)
            .stdin(Stdio::null())
            // Build progress and errors go straight to the test's output.
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} ({e})", script.display()));
        assert!(
            output.status.success(),
            "{} failed ({}); its messages are above",
            script.display(),
            output.status
        );
        let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        assert!(
            path.is_file(),
            "{} printed {}, which is not a file",
            script.display(),
            path.display()
        );
        path
    })
}

/// A Jaeger process on free ports of 127.0.0.1, keeping spans in memory; killed when
/// dropped, and when the test process dies.
pub struct Jaeger {
    /// OTLP over gRPC, `127.0.0.1:PORT`.
    otlp_grpc: String,
    /// OTLP over HTTP, `127.0.0.1:PORT`.
    otlp_http: String,
    /// The query API (`/api/...`), `127.0.0.1:PORT`.
    query: String,
    /// The health check extension (`/status`).
    health: String,
    /// Jaeger's own metrics in the Prometheus format (`/metrics`).
    metrics: String,
    child: Option<Child>,
    /// Jaeger's stdout and stderr.
    log: PathBuf,
    /// The config Jaeger runs with.
    config: PathBuf,
}

impl Jaeger {
    /// Starts a Jaeger whose config and log are `dir/jaeger-N.yaml` and
    /// `dir/jaeger-N.log` (the first N free in `dir`, so several Jaegers can share a
    /// directory), and waits until it takes spans and answers queries.
    pub fn start(dir: &Path) -> Jaeger {
        let bin = jaeger_bin();
        let (config, log) = claim_files(dir);
        let mut attempt = 1;
        loop {
            match Jaeger::try_start(bin, &config, &log) {
                Ok(jaeger) => return jaeger,
                Err(failure) if port_taken(&failure) && attempt < ATTEMPTS => {
                    eprintln!("a port of Jaeger was taken; starting it on new ports");
                    attempt += 1;
                }
                Err(failure) => panic!("{failure}"),
            }
        }
    }

    /// Writes the config for fresh ports, runs Jaeger with it and waits until it is
    /// ready; what went wrong, with the end of its log, when it is not.
    fn try_start(bin: &Path, config: &Path, log: &Path) -> Result<Jaeger, String> {
        let [grpc, http, query, query_grpc, health, metrics] = free_ports();
        std::fs::write(
            config,
            jaeger_config::config_yaml(
                &jaeger_config::Ports {
                    otlp_grpc: grpc,
                    otlp_http: http,
                    query,
                    query_grpc,
                    health,
                    metrics,
                },
                100_000,
            ),
        )
        .unwrap_or_else(|e| panic!("cannot write {} ({e})", config.display()));
        let file = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("cannot create {} ({e})", log.display()));
        let mut command = Command::new(bin);
        command
            .arg(format!("--config=file:{}", config.display()))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("Jaeger's log file"))
            .stderr(file);
        // Jaeger reads no OTEL_* setting meant for the test or the weir it starts.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        let child = super::spawn_tied(command, bin);
        let mut jaeger = Jaeger {
            otlp_grpc: format!("127.0.0.1:{grpc}"),
            otlp_http: format!("127.0.0.1:{http}"),
            query: format!("127.0.0.1:{query}"),
            health: format!("127.0.0.1:{health}"),
            metrics: format!("127.0.0.1:{metrics}"),
            child: Some(child),
            log: log.to_owned(),
            config: config.to_owned(),
        };
        jaeger.wait_ready()?;
        Ok(jaeger)
    }

    /// Waits until the health check says every component runs (the receivers start
    /// last) and the query API answers. The end of the log when Jaeger exits first
    /// or is not ready in time (dropping `self` then kills it).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let healthy =
                http(&self.health, "GET", "/status", None).is_ok_and(|(status, _)| status == 200);
            if healthy
                && http(&self.query, "GET", "/api/services", None)
                    .is_ok_and(|(status, _)| status == 200)
                && self.is_running()
            {
                return Ok(());
            }
            let child = self.child.as_mut().expect("a Jaeger started by this test");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!(
                    "Jaeger exited during start-up ({status}); {}:\n{}",
                    self.log.display(),
                    self.log_tail(30)
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "Jaeger was not ready within {READY_WITHIN:?}; {}:\n{}",
                    self.log.display(),
                    self.log_tail(30)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The OTLP/gRPC endpoint, `http://127.0.0.1:PORT`, as OTEL_EXPORTER_OTLP_ENDPOINT
    /// takes it for the grpc protocol.
    pub fn otlp_grpc_endpoint(&self) -> String {
        format!("http://{}", self.otlp_grpc)
    }

    /// The OTLP/HTTP base URL, `http://127.0.0.1:PORT`, as OTEL_EXPORTER_OTLP_ENDPOINT
    /// takes it (exporters add `/v1/traces`).
    pub fn otlp_http_endpoint(&self) -> String {
        format!("http://{}", self.otlp_http)
    }

    /// The query API's address, `127.0.0.1:PORT` (paths under `/api/`).
    pub fn query_address(&self) -> &str {
        &self.query
    }

    /// The address where Jaeger serves its own metrics (`/metrics`), e.g. how many
    /// spans its receivers took or refused.
    pub fn metrics_address(&self) -> &str {
        &self.metrics
    }

    /// Jaeger's log (stdout and stderr).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The config file Jaeger runs with.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The last `lines` lines of Jaeger's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends an OTLP/HTTP JSON export request (`{"resourceSpans": [...]}`) to
    /// `/v1/traces`, as an exporter would; panics unless Jaeger takes it.
    pub fn post_otlp_json(&self, request: &Value) {
        let body = request.to_string();
        let (status, answer) = http(
            &self.otlp_http,
            "POST",
            "/v1/traces",
            Some(("application/json", body.as_bytes())),
        )
        .unwrap_or_else(|e| panic!("POST /v1/traces to Jaeger at {}: {e}", self.otlp_http));
        assert_eq!(
            status,
            200,
            "Jaeger refused the spans: {answer}\nrequest: {body}\nJaeger's log: {}",
            self.log.display()
        );
    }

    /// GET a query API path: its JSON and the status. Panics when Jaeger does not
    /// answer or answers something else than JSON.
    fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = http(&self.query, "GET", path, None).unwrap_or_else(|e| {
            panic!(
                "Jaeger's query API at {} did not answer GET {path} ({e}); log: {}",
                self.query,
                self.log.display()
            )
        });
        let value = serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!(
                "GET {path} from Jaeger: {status}, not JSON ({e}): {body}\nlog: {}",
                self.log.display()
            )
        });
        (status, value)
    }

    /// The trace with this id (hex), or None when Jaeger has no span of it.
    pub fn trace(&self, trace_id: &str) -> Option<Trace> {
        let (status, value) = self.get(&format!("/api/traces/{trace_id}"));
        match status {
            404 => None,
            200 => value["data"]
                .as_array()
                .and_then(|traces| traces.first())
                .map(Trace::from_json)
                .filter(|trace| !trace.spans.is_empty()),
            _ => panic!(
                "GET /api/traces/{trace_id} from Jaeger: {status} {value}\nlog: {}",
                self.log.display()
            ),
        }
    }

    /// Polls until Jaeger has the trace and it meets `condition` (spans arrive in
    /// batches, so a trace grows over time); panics after `timeout` with what was
    /// seen last.
    pub fn wait_for_trace(
        &self,
        trace_id: &str,
        timeout: Duration,
        condition: impl Fn(&Trace) -> bool,
    ) -> Trace {
        let deadline = Instant::now() + timeout;
        loop {
            let trace = self.trace(trace_id);
            if let Some(trace) = &trace
                && condition(trace)
            {
                return trace.clone();
            }
            if Instant::now() >= deadline {
                let seen = trace.map_or_else(|| "no span of it".to_owned(), |t| t.outline());
                panic!(
                    "timed out after {timeout:?} waiting for trace {trace_id} in Jaeger to \
                     meet the test's condition; last seen:\n{seen}\nservices: {:?}\n\
                     Jaeger's log: {}",
                    self.services(),
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The services Jaeger has spans of.
    pub fn services(&self) -> Vec<String> {
        let (status, value) = self.get("/api/services");
        assert_eq!(status, 200, "GET /api/services from Jaeger: {value}");
        value["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    }

    /// Up to `limit` traces with a span of `service`, at any time (Jaeger's search
    /// otherwise looks back two days only), in Jaeger's order.
    pub fn traces_of(&self, service: &str, limit: usize) -> Vec<Trace> {
        let until_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros())
            + 3_600_000_000;
        let path = format!(
            "/api/traces?service={}&limit={limit}&start=0&end={until_us}",
            super::encode(service)
        );
        let (status, value) = self.get(&path);
        assert_eq!(status, 200, "GET {path} from Jaeger: {value}");
        value["data"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Trace::from_json)
            .collect()
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        // A failing test shows what Jaeger complained about: its log without the
        // info lines, nor the warning that this build has no UI.
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains("\tinfo\t") && !l.contains("ui assets not embedded"))
                .collect();
            if !lines.is_empty() {
                eprintln!(
                    "--- warnings and errors in {} ---\n{}",
                    self.log.display(),
                    lines[lines.len().saturating_sub(20)..].join("\n")
                );
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Claims `dir/jaeger-N.log` for the first N whose log does not exist yet (created
/// here, so two Jaegers never get the same N): (config path, log path).
fn claim_files(dir: &Path) -> (PathBuf, PathBuf) {
    for n in 1.. {
        let log = dir.join(format!("jaeger-{n}.log"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&log)
        {
            Ok(_) => return (dir.join(format!("jaeger-{n}.yaml")), log),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("cannot create {} ({e})", log.display()),
        }
    }
    unreachable!("some N is free")
}

/// One HTTP/1.0 request to `address` (`host:port`), with a body of a content type
/// when given: (status, body). An error when nothing answers in time.
pub fn http(
    address: &str,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> std::io::Result<(u16, String)> {
    let socket: SocketAddr = address
        .parse()
        .unwrap_or_else(|e| panic!("{address} is not host:port ({e})"));
    let mut stream = TcpStream::connect_timeout(&socket, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {address}\r\n");
    if let Some((content_type, bytes)) = body {
        request.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    if let Some((_, bytes)) = body {
        stream.write_all(bytes)?;
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no HTTP status line in {response:?}"),
            )
        })?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

// ------------------------------------------------------------------ the typed view

/// A trace as Jaeger's query API shows it.
#[derive(Clone, Debug)]
pub struct Trace {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// In Jaeger's order, which is not the order of the spans in time or in the tree.
    pub spans: Vec<Span>,
    /// Jaeger's warnings about the trace as a whole.
    pub warnings: Vec<String>,
}

/// A span as Jaeger's query API shows it.
#[derive(Clone, Debug)]
pub struct Span {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// The span of the first CHILD_OF reference: the OTLP parent.
    pub parent_span_id: Option<String>,
    /// The other references: the OTLP links (Jaeger keeps none of their attributes).
    pub links: Vec<Link>,
    /// The span's name.
    pub operation_name: String,
    /// The tag `span.kind`: `server`, `client`, `producer`, `consumer`, `internal`;
    /// None for an unspecified kind.
    pub kind: Option<String>,
    /// Every tag, numbers and bools written as text (`7`, `1.5`, `true`). Holds the
    /// attributes and what Jaeger adds: `span.kind`, `otel.scope.name`, the status.
    pub tags: BTreeMap<String, String>,
    /// The OTLP events, which Jaeger calls logs.
    pub logs: Vec<Event>,
    pub status: Status,
    /// The process's (the OTLP resource's) `service.name`.
    pub service: String,
    /// The resource's other attributes.
    pub process_tags: BTreeMap<String, String>,
    /// Microseconds since the Unix epoch.
    pub start_us: u64,
    pub duration_us: u64,
    /// Jaeger's warnings about this span, e.g. that its parent is not in the trace.
    pub warnings: Vec<String>,
}

/// A link to another span, of this trace or another one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    pub span_id: String,
    /// `FOLLOWS_FROM` for an OTLP link (`CHILD_OF` only when the link says so with
    /// the attribute `opentracing.ref_type`).
    pub ref_type: String,
}

/// An OTLP event (a Jaeger log).
#[derive(Clone, Debug)]
pub struct Event {
    /// The field `event`: the event's name (None for an empty name).
    pub name: Option<String>,
    /// Microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// The other fields: the event's attributes, as text.
    pub fields: BTreeMap<String, String>,
}

/// A span's OTLP status, from its tags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The tag `otel.status_code`: `OK` or `ERROR`; None when the status is unset.
    pub code: Option<String>,
    /// The tag `otel.status_description`: an error's message.
    pub description: Option<String>,
    /// The tag `error`, which Jaeger sets to true on an error status.
    pub error: bool,
}

impl Trace {
    /// Reads one element of the `data` array of `/api/traces` answers.
    pub fn from_json(trace: &Value) -> Trace {
        let processes = &trace["processes"];
        let spans = trace["spans"]
            .as_array()
            .unwrap_or_else(|| panic!("a Jaeger trace without a spans array: {trace}"))
            .iter()
            .map(|span| {
                let process = &processes[text(&span["processID"])];
                Span::from_json(span, process)
            })
            .collect();
        Trace {
            trace_id: full_trace_id(&text(&trace["traceID"])),
            spans,
            warnings: strings(&trace["warnings"]),
        }
    }

    /// The spans with this operation name.
    pub fn spans_named(&self, name: &str) -> Vec<&Span> {
        self.spans
            .iter()
            .filter(|s| s.operation_name == name)
            .collect()
    }

    /// The one span with this operation name; panics, showing the trace, when there
    /// is none or more than one.
    pub fn span(&self, name: &str) -> &Span {
        match self.spans_named(name)[..] {
            [span] => span,
            ref found => panic!(
                "expected exactly one span named {name:?} in trace {}, found {}:\n{}",
                self.trace_id,
                found.len(),
                self.outline()
            ),
        }
    }

    /// The spans whose parent is `span`.
    pub fn children_of(&self, span: &Span) -> Vec<&Span> {
        self.spans
            .iter()
            .filter(|s| s.parent_span_id.as_deref() == Some(span.span_id.as_str()))
            .collect()
    }

    /// `span`'s parent, when it has one and the parent is in the trace.
    pub fn parent_of(&self, span: &Span) -> Option<&Span> {
        let parent = span.parent_span_id.as_deref()?;
        self.spans.iter().find(|s| s.span_id == parent)
    }

    /// The spans whose parent is not in the trace (the root, and orphans).
    pub fn roots(&self) -> Vec<&Span> {
        self.spans
            .iter()
            .filter(|s| self.parent_of(s).is_none())
            .collect()
    }

    /// The trace as an indented tree, one line a span, for failure messages.
    pub fn outline(&self) -> String {
        let mut lines = vec![format!(
            "trace {} ({} spans)",
            self.trace_id,
            self.spans.len()
        )];
        let mut shown = BTreeSet::new();
        for root in self.roots() {
            self.outline_from(root, 1, &mut shown, &mut lines);
        }
        // Spans in a cycle of parents have no root.
        for span in &self.spans {
            if !shown.contains(&span.span_id) {
                self.outline_from(span, 1, &mut shown, &mut lines);
            }
        }
        lines.join("\n")
    }

    fn outline_from(
        &self,
        span: &Span,
        depth: usize,
        shown: &mut BTreeSet<String>,
        lines: &mut Vec<String>,
    ) {
        if !shown.insert(span.span_id.clone()) {
            return;
        }
        let mut line = format!("{}{}", "  ".repeat(depth), span.summary());
        if let Some(parent) = &span.parent_span_id
            && self.parent_of(span).is_none()
        {
            line.push_str(&format!(" (its parent {parent} is not in the trace)"));
        }
        lines.push(line);
        for child in self.children_of(span) {
            self.outline_from(child, depth + 1, shown, lines);
        }
    }
}

impl Span {
    /// Reads a span of a trace, with its entry of the trace's `processes`.
    pub fn from_json(span: &Value, process: &Value) -> Span {
        let trace_id = full_trace_id(&text(&span["traceID"]));
        let mut parent_span_id = None;
        let mut links = Vec::new();
        for reference in span["references"].as_array().into_iter().flatten() {
            let ref_type = text(&reference["refType"]);
            let span_id = text(&reference["spanID"]);
            if ref_type == "CHILD_OF" && parent_span_id.is_none() {
                parent_span_id = Some(span_id);
            } else {
                links.push(Link {
                    trace_id: full_trace_id(&text(&reference["traceID"])),
                    span_id,
                    ref_type,
                });
            }
        }
        let tags = key_values(&span["tags"]);
        let logs = span["logs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|log| {
                let mut fields = key_values(&log["fields"]);
                Event {
                    name: fields.remove("event"),
                    timestamp_us: log["timestamp"].as_u64().unwrap_or_default(),
                    fields,
                }
            })
            .collect();
        let status = Status {
            code: tags.get("otel.status_code").cloned(),
            description: tags.get("otel.status_description").cloned(),
            error: tags.get("error").is_some_and(|e| e == "true"),
        };
        Span {
            trace_id,
            span_id: text(&span["spanID"]),
            parent_span_id,
            links,
            operation_name: text(&span["operationName"]),
            kind: tags.get("span.kind").cloned(),
            tags,
            logs,
            status,
            service: text(&process["serviceName"]),
            process_tags: key_values(&process["tags"]),
            start_us: span["startTime"].as_u64().unwrap_or_default(),
            duration_us: span["duration"].as_u64().unwrap_or_default(),
            warnings: strings(&span["warnings"]),
        }
    }

    /// A tag's value as text.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// The events with this name.
    pub fn events_named(&self, name: &str) -> Vec<&Event> {
        self.logs
            .iter()
            .filter(|e| e.name.as_deref() == Some(name))
            .collect()
    }

    /// One line about the span: name, kind, service, id, status, links, events and
    /// the tags that are not in [`JAEGER_TAGS`].
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} [{}] {} {}",
            self.operation_name,
            self.kind.as_deref().unwrap_or("unspecified"),
            self.service,
            self.span_id
        );
        if let Some(code) = &self.status.code {
            line.push_str(&format!(" status={code}"));
        }
        if let Some(description) = &self.status.description {
            line.push_str(&format!(" ({description})"));
        }
        for link in &self.links {
            line.push_str(&format!(
                " {}->{}/{}",
                link.ref_type, link.trace_id, link.span_id
            ));
        }
        let events: Vec<&str> = self
            .logs
            .iter()
            .map(|e| e.name.as_deref().unwrap_or("?"))
            .collect();
        if !events.is_empty() {
            line.push_str(&format!(" events={events:?}"));
        }
        let attributes: BTreeMap<&str, &str> = self
            .tags
            .iter()
            .filter(|(k, _)| !JAEGER_TAGS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if !attributes.is_empty() {
            line.push_str(&format!(" {attributes:?}"));
        }
        line
    }
}

/// The tags that Jaeger makes of the span's kind, scope and status rather than of
/// its attributes.
pub const JAEGER_TAGS: [&str; 6] = [
    "span.kind",
    "otel.scope.name",
    "otel.scope.version",
    "otel.status_code",
    "otel.status_description",
    "error",
];

/// A JSON string as is; anything else as its JSON text; an absent field as "".
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Jaeger's `[{"key", "type", "value"}]` lists as a map of texts.
fn key_values(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|kv| (text(&kv["key"]), text(&kv["value"])))
        .collect()
}

fn strings(list: &Value) -> Vec<String> {
    list.as_array().into_iter().flatten().map(text).collect()
}

/// A trace id as 32 lowercase hex digits: Jaeger leaves out the first 16 when they
/// are all zero.
pub fn full_trace_id(id: &str) -> String {
    format!("{:0>32}", id.to_ascii_lowercase())
}
