//! Logs and metrics. Logging setup lives here; `metrics` is the one registry of docs/reference.md §5
//! metrics; `health` is the readiness state the runtime reports into.

pub mod health;
pub mod http;
pub mod metrics;
pub mod trace;

pub use health::Health;
pub use http::OpsEndpoint;
pub use metrics::{Metrics, PipelineMetrics};

use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Sends logs to stderr. `WEIR_LOG` (an `EnvFilter` directive, e.g. `debug` or
/// `weir=debug`) overrides `default_level`.
pub fn init_logging(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal;
    let filter =
        EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
