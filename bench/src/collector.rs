//! The collector of the traced systems (issue 19): a real Jaeger all-in-one, the one
//! scripts/install-jaeger builds for the tracing tests, started once per benchmark
//! on free ports of 127.0.0.1 with an in-memory store and stopped at its end; an
//! endpoint that nothing listens on, for the collector that is down; and what
//! weir's `/metrics` and Jaeger's own metrics say about the spans.
//!
//! The config follows tests/common/jaeger.rs: the OTLP receivers straight into a
//! memory store, the query API, a health check and Jaeger's metrics, each on a port
//! of its own, and nothing else that listens.

#[path = "../../tests/jaeger/config.rs"]
mod jaeger_config;

use crate::http::{get as http_get, metric_sum};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// How often Jaeger is started on new ports when another process took one first.
const ATTEMPTS: usize = 3;
/// How long a started Jaeger may take to answer.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Traces Jaeger keeps in memory at most (the oldest go first): enough to look at
/// a run, without its memory growing with every traced record of the benchmark.
const MAX_TRACES: usize = 20_000;

/// The Jaeger binary: `explicit`, else what scripts/install-jaeger prints (it
/// builds Jaeger once, about 14 minutes on one core, when it is not cached).
pub fn jaeger_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let output = Command::new("scripts/install-jaeger")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running scripts/install-jaeger (run from the repository root)")?;
    if !output.status.success() {
        bail!(
            "scripts/install-jaeger failed ({}); its messages are above",
            output.status
        );
    }
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !path.is_file() {
        bail!(
            "scripts/install-jaeger printed {}, which is not a file",
            path.display()
        );
    }
    Ok(path)
}

/// A Jaeger process; killed when dropped, and when the benchmark dies.
pub struct Jaeger {
    child: Child,
    /// OTLP over HTTP, `127.0.0.1:PORT`.
    otlp_http: String,
    /// Jaeger's own metrics (`/metrics`), `127.0.0.1:PORT`.
    metrics: String,
    pub log: PathBuf,
}

impl Jaeger {
    /// Starts `bin` with its config and log in `dir` (`jaeger.yaml`, `jaeger.log`)
    /// and waits until its receivers take spans.
    pub fn start(bin: &Path, dir: &Path) -> anyhow::Result<Jaeger> {
        let config = dir.join("jaeger.yaml");
        let log = dir.join("jaeger.log");
        let mut attempt = 1;
        loop {
            match Jaeger::try_start(bin, &config, &log) {
                Ok(jaeger) => return Ok(jaeger),
                Err(failure)
                    if attempt < ATTEMPTS
                        && failure
                            .to_string()
                            .to_ascii_lowercase()
                            .contains("address already in use") =>
                {
                    eprintln!("a port of Jaeger was taken; starting it on new ports");
                    attempt += 1;
                }
                Err(failure) => return Err(failure),
            }
        }
    }

    fn try_start(bin: &Path, config: &Path, log: &Path) -> anyhow::Result<Jaeger> {
        let [grpc, http, query, query_grpc, health, metrics] = free_ports::<6>()?;
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
                MAX_TRACES,
            ),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(bin);
        command
            .arg(format!("--config=file:{}", config.display()))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        // Jaeger reads no OTEL_* setting meant for weir.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        // SAFETY: the closure only calls prctl, which is async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt as _;
            command.pre_exec(|| {
                // Killed with the benchmark, however it ends (the main thread
                // spawns it and lives as long as the process).
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut jaeger = Jaeger {
            child,
            otlp_http: format!("127.0.0.1:{http}"),
            metrics: format!("127.0.0.1:{metrics}"),
            log: log.to_owned(),
        };
        let health = format!("127.0.0.1:{health}");
        let deadline = Instant::now() + READY_WITHIN;
        // The health check says OK once every component runs (the receivers last).
        while !http_get(&health, "/status").is_ok_and(|(status, _)| status == 200) {
            if let Some(status) = jaeger.child.try_wait()? {
                bail!(
                    "Jaeger exited during start-up ({status}); {}:\n{}",
                    log.display(),
                    tail(log, 20)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "Jaeger was not ready within {READY_WITHIN:?}; {}:\n{}",
                    log.display(),
                    tail(log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(jaeger)
    }

    /// The OTLP/HTTP base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.otlp_http)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Spans its OTLP receivers took so far (its metric
    /// `otelcol_receiver_accepted_spans`, summed over receivers and transports).
    pub fn accepted_spans(&self) -> Option<u64> {
        let (status, text) = http_get(&self.metrics, "/metrics").ok()?;
        (status == 200).then(|| {
            let total = metric_sum(&text, "otelcol_receiver_accepted_spans_total")
                + metric_sum(&text, "otelcol_receiver_accepted_spans");
            total as u64
        })
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OTLP/HTTP endpoint on a port of 127.0.0.1 that was free a moment ago and that
/// nothing listens on: a collector that is down (connections are refused).
pub fn closed_endpoint() -> anyhow::Result<String> {
    let [port] = free_ports::<1>()?;
    Ok(format!("http://127.0.0.1:{port}"))
}

/// `N` distinct ports of 127.0.0.1, free a moment ago: every listener is held until
/// all are chosen, so that the kernel never hands out one port twice.
fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
        *port = listener.local_addr()?.port();
        held.push(listener);
    }
    Ok(ports)
}

/// What became of the spans of one weir process: `weir_trace_spans_total{outcome}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanCounts {
    pub exported: u64,
    pub dropped: u64,
    pub failed: u64,
}

impl SpanCounts {
    pub fn total(&self) -> u64 {
        self.exported + self.dropped + self.failed
    }

    /// Reads the counts out of weir's `/metrics` text.
    pub fn parse(text: &str) -> SpanCounts {
        let outcome = |name: &str| {
            text.lines()
                .filter(|l| {
                    l.starts_with("weir_trace_spans_total{")
                        && l.contains(&format!("outcome=\"{name}\""))
                })
                .filter_map(|l| {
                    l.rsplit_once('}')?
                        .1
                        .split_whitespace()
                        .next()?
                        .parse::<f64>()
                        .ok()
                })
                .sum::<f64>() as u64
        };
        SpanCounts {
            exported: outcome("exported"),
            dropped: outcome("dropped"),
            failed: outcome("failed"),
        }
    }
}

/// The address weir serves `/metrics` on, from its log ("serving /metrics, ... on
/// http://ADDRESS").
pub fn metrics_address(log: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains("serving /metrics"))
        .find_map(|l| {
            l.split("on http://")
                .nth(1)?
                .split_whitespace()
                .next()
                .map(str::to_owned)
        })
}

/// The span counts of the weir whose metrics are at `address`, once they have
/// settled (the export thread sends the last spans up to a linger after the last
/// record): read until two reads 500 ms apart agree, for at most `within`.
pub fn settled_span_counts(address: &str, within: Duration) -> anyhow::Result<SpanCounts> {
    let read = || -> anyhow::Result<SpanCounts> {
        let (status, text) = http_get(address, "/metrics")?;
        if status != 200 {
            bail!("GET /metrics from weir at {address}: {status}");
        }
        Ok(SpanCounts::parse(&text))
    };
    let deadline = Instant::now() + within;
    let mut last = read()?;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = read()?;
        if now == last || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// The last `lines` lines of a log.
fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_counts_and_the_metrics_address_are_read_from_weir() {
        let metrics = "# HELP weir_trace_spans_total x\n\
                       weir_trace_spans_total{outcome=\"dropped\"} 7\n\
                       weir_trace_spans_total{outcome=\"exported\"} 1200\n\
                       weir_trace_spans_total{outcome=\"failed\"} 0\n\
                       weir_trace_spans_totals{outcome=\"exported\"} 5\n";
        let counts = SpanCounts::parse(metrics);
        assert_eq!(
            counts,
            SpanCounts {
                exported: 1200,
                dropped: 7,
                failed: 0
            }
        );
        assert_eq!(counts.total(), 1207);
        let log = "2026-12-06T10:00:00.000000Z  INFO weir::telemetry::http: \
                   address=127.0.0.1:41234 serving /metrics, /healthz and /readyz on \
                   http://127.0.0.1:41234\n";
        assert_eq!(metrics_address(log).as_deref(), Some("127.0.0.1:41234"));
    }

    #[test]
    fn jaeger_metrics_sum_whole_names_only() {
        let text = "otelcol_receiver_accepted_spans_total{transport=\"http\"} 10\n\
                    otelcol_receiver_accepted_spans_total{transport=\"grpc\"} 2\n\
                    otelcol_receiver_refused_spans_total{transport=\"http\"} 3\n";
        assert_eq!(
            metric_sum(text, "otelcol_receiver_accepted_spans_total"),
            12.0
        );
        assert_eq!(metric_sum(text, "otelcol_receiver_accepted_spans"), 0.0);
    }
}
