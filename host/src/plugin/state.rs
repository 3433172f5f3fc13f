//! Per-instance store state: the WASI context (granting nothing), the memory limiter,
//! the bounded capture of guest stdout/stderr, and the `log` import.
//!
//! Everything a guest can say to the outside world passes through here, so every
//! channel is bounded: a plugin cannot flood the host's log or memory.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::weir::plugin::host::{Host as LogHost, Level};
use super::bindings::weir::plugin::span::Host as SpanHost;
use super::bindings::weir::plugin::state::Host as StateHost;
use super::bindings::weir::plugin::timers::Host as TimersHost;
use super::bindings::weir::plugin::types::Host as TypesHost;
use crate::state::SlotHandle;
use crate::telemetry::trace::{CallSpan, RecordTrace};

/// Bytes of guest stdout+stderr kept per call; the rest is counted and dropped.
const OUTPUT_BUDGET: usize = 16 * 1024;
/// `log` lines accepted per call; the rest are counted and dropped.
const LOG_LINES_PER_CALL: u32 = 64;
/// Longest `log` line kept, in bytes.
const LOG_LINE_MAX: usize = 4 * 1024;
/// Table elements a guest may grow to (tables hold function references).
const TABLE_ELEMENTS_MAX: usize = 100_000;

/// Where a call happens, attached to every line the guest writes.
#[derive(Debug, Clone, Default)]
pub struct CallSite {
    pub pipeline: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// The record's trace, with tracing on: each call gets a span in it.
    pub trace: Option<RecordTrace>,
    /// The attempt of the part of the pipeline being called (1-based), for the
    /// call's span.
    pub attempt: std::cell::Cell<u32>,
}

/// The data of one plugin instance's `Store`.
pub struct InstanceState {
    /// The WASI context: no preopens, no env, no args, no sockets, closed stdin.
    wasi: WasiCtx,
    /// WASI resources (streams, pollables) owned by the guest.
    table: ResourceTable,
    /// Enforces `limits.memory` and remembers whether it had to refuse a grow.
    pub(crate) limiter: MemoryLimiter,
    /// Captured guest stdout and stderr, drained into the log after each call.
    console: GuestConsole,
    /// Plugin name and version, for log lines.
    plugin: Arc<str>,
    /// The record being handled, for log lines.
    pub(crate) site: CallSite,
    /// `log` lines seen during the current call.
    log_lines: u32,
    /// The slot's state on the partition, for a stateful plugin.
    pub(crate) slot: Option<SlotHandle>,
    /// The current call's span, when its record is sampled.
    pub(crate) span: Option<CallSpan>,
}

impl InstanceState {
    pub fn new(plugin: Arc<str>, memory_limit: usize) -> InstanceState {
        let console = GuestConsole::new(OUTPUT_BUDGET);
        let wasi = WasiCtx::builder()
            .stdout(console.clone())
            .stderr(console.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        InstanceState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            console,
            plugin,
            site: CallSite::default(),
            log_lines: 0,
            slot: None,
            span: None,
        }
    }

    /// Resets per-call budgets before a call.
    pub(crate) fn begin_call(&mut self, site: &CallSite) {
        if !Arc::ptr_eq(&self.site.pipeline, &site.pipeline) {
            self.site.pipeline = site.pipeline.clone();
        }
        self.site.partition = site.partition;
        self.site.offset = site.offset;
        self.log_lines = 0;
        self.limiter.hit = false;
    }

    /// Moves what the guest printed during the call into the host's log, and
    /// returns its last non-empty line.
    pub(crate) fn end_call(&mut self) -> Option<String> {
        let (text, dropped) = self.console.take();
        let text = String::from_utf8_lossy(&text);
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| truncate(l, 512).to_owned());
        if !text.is_empty() {
            for line in text.lines() {
                tracing::info!(
                    pipeline = %self.site.pipeline,
                    partition = self.site.partition,
                    offset = self.site.offset,
                    plugin = %self.plugin,
                    "guest: {line}"
                );
            }
        }
        if dropped > 0 {
            tracing::warn!(plugin = %self.plugin, dropped_bytes = dropped, "guest output over budget was dropped");
        }
        if self.log_lines > LOG_LINES_PER_CALL {
            tracing::warn!(
                plugin = %self.plugin,
                dropped_lines = self.log_lines - LOG_LINES_PER_CALL,
                "guest log lines over budget were dropped"
            );
        }
        last
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl TypesHost for InstanceState {}

/// What a stateful plugin's calls get where it has no state (an instance made to
/// check a plugin, not to run it on a partition).
const NO_STATE: &str = "state and timers are not available here (no partition is being handled)";

impl StateHost for InstanceState {
    fn get(&mut self, name: String) -> Option<Vec<u8>> {
        self.slot.as_ref()?.lock().get(&name)
    }

    fn set(&mut self, name: String, value: Vec<u8>) -> Result<(), String> {
        match &self.slot {
            Some(slot) => slot.lock().set(name, value),
            None => Err(NO_STATE.into()),
        }
    }

    fn delete(&mut self, name: String) {
        if let Some(slot) = &self.slot {
            slot.lock().delete(name);
        }
    }

    fn exists(&mut self, name: String) -> bool {
        self.slot.as_ref().is_some_and(|s| s.lock().exists(&name))
    }

    fn entries(&mut self, after: Option<String>, max: u32) -> Vec<(String, Vec<u8>)> {
        match &self.slot {
            Some(slot) => slot.lock().entries(after.as_deref(), max),
            None => Vec::new(),
        }
    }
}

impl TimersHost for InstanceState {
    fn set(&mut self, name: String, at_ms: i64, payload: Vec<u8>) -> Result<(), String> {
        match &self.slot {
            Some(slot) => {
                let link = self.span.as_ref().map(CallSpan::link);
                slot.lock().set_timer(name, at_ms, payload, link)
            }
            None => Err(NO_STATE.into()),
        }
    }

    fn cancel(&mut self, name: String) {
        if let Some(slot) = &self.slot {
            slot.lock().cancel_timer(name);
        }
    }

    fn due(&mut self, name: String) -> Option<i64> {
        self.slot.as_ref()?.lock().due(&name)
    }

    fn now_ms(&mut self) -> i64 {
        match &self.slot {
            Some(slot) => slot.lock().now_ms(),
            None => crate::state::clock::wall_ms(),
        }
    }
}

impl SpanHost for InstanceState {
    fn recording(&mut self) -> bool {
        self.span.is_some()
    }

    fn set_attribute(&mut self, key: String, value: String) {
        if let Some(span) = &mut self.span {
            span.set_attribute(&key, &value);
        }
    }

    fn add_event(&mut self, name: String, attributes: Vec<(String, String)>) {
        if let Some(span) = &mut self.span {
            span.add_event(&name, &attributes);
        }
    }
}

impl LogHost for InstanceState {
    fn log(&mut self, level: Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > LOG_LINES_PER_CALL {
            return;
        }
        let message = truncate(&message, LOG_LINE_MAX);
        let site = &self.site;
        macro_rules! emit {
            ($lvl:ident) => {
                tracing::$lvl!(
                    pipeline = %site.pipeline,
                    partition = site.partition,
                    offset = site.offset,
                    plugin = %self.plugin,
                    "{message}"
                )
            };
        }
        match level {
            Level::Trace => emit!(trace),
            Level::Debug => emit!(debug),
            Level::Info => emit!(info),
            Level::Warn => emit!(warn),
            Level::Error => emit!(error),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

/// Caps linear memory per store and records refusals, so that the trap that follows
/// (usually an allocation-failure abort inside the guest) is reported as
/// `memory-limit` rather than as a generic trap.
pub(crate) struct MemoryLimiter {
    limit: usize,
    /// Set when a grow was refused during the current call.
    pub(crate) hit: bool,
    /// The largest linear memory granted so far (memory never shrinks).
    pub(crate) grown: usize,
    /// `grown` once `init` returned: what the instance needs to start.
    started: usize,
}

impl MemoryLimiter {
    fn new(limit: usize) -> MemoryLimiter {
        MemoryLimiter {
            limit,
            hit: false,
            grown: 0,
            started: 0,
        }
    }

    /// The instance is initialised: its memory so far is what it needs to start.
    pub(crate) fn started(&mut self) {
        self.started = self.grown;
    }

    /// Whether the memory has grown, since `init`, through three quarters of the
    /// room the cap leaves: an instance that only grows (a garbage-collected
    /// language's heap) is better replaced between records than stopped by the cap
    /// in the middle of one.
    pub(crate) fn worn(&self) -> bool {
        let room = self.limit.saturating_sub(self.started);
        self.grown.saturating_sub(self.started) > room / 4 * 3
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.limit && maximum.is_none_or(|m| desired <= m);
        if allowed {
            self.grown = self.grown.max(desired);
        } else {
            self.hit = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX && maximum.is_none_or(|m| desired <= m))
    }
}

/// A bounded sink for guest stdout/stderr. Writes past the budget succeed (so a
/// chatty guest does not fail) but are dropped and counted.
#[derive(Clone)]
struct GuestConsole {
    inner: Arc<Mutex<ConsoleBuffer>>,
}

struct ConsoleBuffer {
    bytes: Vec<u8>,
    budget: usize,
    dropped: usize,
}

impl GuestConsole {
    fn new(budget: usize) -> GuestConsole {
        GuestConsole {
            inner: Arc::new(Mutex::new(ConsoleBuffer {
                bytes: Vec::new(),
                budget,
                dropped: 0,
            })),
        }
    }

    fn append(&self, data: &[u8]) {
        let mut buf = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let room = buf.budget.saturating_sub(buf.bytes.len());
        let kept = data.len().min(room);
        buf.bytes.extend_from_slice(&data[..kept]);
        buf.dropped += data.len() - kept;
    }

    fn take(&self) -> (Vec<u8>, usize) {
        let mut buf = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let dropped = std::mem::take(&mut buf.dropped);
        (std::mem::take(&mut buf.bytes), dropped)
    }
}

impl IsTerminal for GuestConsole {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestConsole {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for GuestConsole {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestConsole {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestConsole {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_keeps_budget_and_counts_the_rest() {
        let console = GuestConsole::new(4);
        console.append(b"abc");
        console.append(b"def");
        assert_eq!(console.take(), (b"abcd".to_vec(), 2));
        assert_eq!(console.take(), (Vec::new(), 0));
    }

    #[test]
    fn limiter_refuses_and_remembers() {
        let mut limiter = MemoryLimiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 19, None).unwrap());
        assert!(!limiter.hit);
        assert!(!limiter.memory_growing(0, 2 << 20, None).unwrap());
        assert!(limiter.hit);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
