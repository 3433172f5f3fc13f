//! The operations endpoint on `[metrics] listen`: `/metrics` (Prometheus text),
//! `/healthz` (the process is alive) and `/readyz` (200 when every pipeline holds
//! its assignment and the broker answers; 503 with the reason otherwise).

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context;
use tiny_http::{Header, Response, Server};

use super::{Health, Metrics};
use crate::shutdown::{Shutdown, join_until};

/// The endpoint's thread and the address it actually listens on.
pub struct OpsEndpoint {
    pub address: SocketAddr,
    thread: JoinHandle<()>,
}

impl OpsEndpoint {
    /// Binds `listen` and serves until `stop` is signalled.
    pub fn spawn(
        listen: &str,
        metrics: Metrics,
        health: Arc<Health>,
        stop: Shutdown,
    ) -> anyhow::Result<OpsEndpoint> {
        let server = Server::http(listen)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| {
                format!("cannot listen on {listen} for /metrics; change [metrics] listen")
            })?;
        let address = server
            .server_addr()
            .to_ip()
            .with_context(|| format!("{listen} is not a TCP address"))?;
        let server = Arc::new(server);
        let unblock = server.clone();
        std::thread::Builder::new()
            .name("weir-http-stop".into())
            .spawn(move || {
                stop.wait();
                unblock.unblock();
            })
            .context("cannot start the HTTP thread")?;
        let thread = std::thread::Builder::new()
            .name("weir-http".into())
            .spawn(move || serve(&server, &metrics, &health))
            .context("cannot start the HTTP thread")?;
        tracing::info!(%address, "serving /metrics, /healthz and /readyz on http://{address}");
        Ok(OpsEndpoint { address, thread })
    }

    /// Waits (until `deadline`) for the endpoint to close after the stop signal.
    pub fn join(self, deadline: Instant) {
        join_until(self.thread, deadline, "the metrics endpoint");
    }
}

fn text_header(content_type: &str) -> Header {
    #[allow(
        clippy::expect_used,
        reason = "called with static, valid header values"
    )]
    Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
        .expect("a valid static header")
}

/// Answers requests until the server is unblocked (the stop signal).
fn serve(server: &Server, metrics: &Metrics, health: &Health) {
    for request in server.incoming_requests() {
        let path = request
            .url()
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let response = match path.as_str() {
            "/metrics" => Response::from_string(metrics.render())
                .with_header(text_header("text/plain; version=0.0.4; charset=utf-8")),
            "/healthz" => Response::from_string("ok\n").with_header(text_header("text/plain")),
            "/readyz" => match health.readiness() {
                Ok(()) => Response::from_string("ready\n").with_header(text_header("text/plain")),
                Err(reason) => Response::from_string(format!("not ready: {reason}\n"))
                    .with_status_code(503)
                    .with_header(text_header("text/plain")),
            },
            _ => Response::from_string("not found: try /metrics, /healthz or /readyz\n")
                .with_status_code(404),
        };
        let _ = request.respond(response);
    }
}
