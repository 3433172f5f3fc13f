//! `pipelines.toml`: the model of the file and the way in ([`WeirConfig::load`],
//! [`WeirConfig::parse`]). This file holds the top level (`[kafka]`, `[metrics]`,
//! `[topics]`), a pipeline's `retry`, `limits` and `circuit` tables, and the sandbox
//! [`Limits`] they yield. Beside it, re-exported here: `pipeline` (a pipeline and its
//! branches), `values` (value types and their parsing), `env` (`${VAR}` expansion).
//! Also beside it: `checks` (the cross-field checks run on load) and `changes` (what
//! a config change may apply live).
//!
//! Loading either yields a [`WeirConfig`] that the rest of the host can trust, or an
//! error naming the file, the line and the key. Behaviour lives here, not in CLI
//! flags. This module does not touch Kafka or wasm.

pub mod changes;
mod checks;
mod env;
mod pipeline;
mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use checks::Checker;
pub use env::expand as expand_env;
pub use pipeline::{BranchConfig, BranchView, Delivery, PipelineConfig, PluginConfig};
pub use values::{ByteSize, ConfigValue, EnvString, HumanDuration};

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    /// Bad TOML, an unknown key, a wrong type, an unset variable.
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value that parses but cannot work (cross-field checks).
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WeirConfig {
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Where stateful plugins keep their local stores.
    #[serde(default)]
    pub state: StateConfig,
    /// Distributed tracing (OpenTelemetry over OTLP); off unless an endpoint is
    /// set here or in the environment.
    #[serde(default)]
    pub tracing: TracingConfig,
    #[serde(default)]
    pub topics: BTreeMap<String, Spanned<TopicConfig>>,
    #[serde(default, rename = "pipeline")]
    pub pipelines: Vec<PipelineConfig>,
    /// The directory of the config file; relative plugin paths start here.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KafkaConfig {
    /// Bootstrap servers, or `embedded` for the in-process development cluster.
    #[serde(default = "default_brokers")]
    pub brokers: EnvString,
    #[serde(default = "default_client_id")]
    pub client_id: EnvString,
    /// Passed through to librdkafka as they are.
    #[serde(default)]
    pub properties: BTreeMap<String, EnvString>,
}

/// The sandbox limits of one plugin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Linear memory cap per instance, in bytes.
    pub memory: usize,
    /// Deadline of one call.
    pub timeout: Duration,
    /// Largest output accepted, in bytes, as the Kafka client counts a record: key,
    /// value, headers and their framing ([`crate::kafka::wire_size`]).
    pub max_output: usize,
    /// Largest state value or timer payload a stateful plugin may write, in bytes.
    pub state_value: usize,
    /// Most state entries one key of a stateful plugin slot may hold.
    pub state_entries: usize,
    /// Most timers pending on one partition of a stateful plugin slot.
    pub timers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory: 64 << 20,
            timeout: Duration::from_millis(200),
            max_output: 1 << 20,
            state_value: 64 << 10,
            state_entries: 1000,
            timers: 1_000_000,
        }
    }
}

/// librdkafka's default `message.max.bytes`.
pub const CLIENT_MESSAGE_MAX_BYTES: usize = 1_000_000;

impl KafkaConfig {
    /// The producer's `message.max.bytes`: the largest record it accepts, framing
    /// included (`[kafka.properties]`, else librdkafka's default of 1,000,000).
    pub fn message_max_bytes(&self) -> usize {
        self.properties
            .get("message.max.bytes")
            .and_then(|v| v.0.trim().parse().ok())
            .unwrap_or(CLIENT_MESSAGE_MAX_BYTES)
    }
}

impl Default for KafkaConfig {
    fn default() -> KafkaConfig {
        KafkaConfig {
            brokers: default_brokers(),
            client_id: default_client_id(),
            properties: BTreeMap::new(),
        }
    }
}

fn default_brokers() -> EnvString {
    EnvString("embedded".into())
}

fn default_client_id() -> EnvString {
    EnvString("weir".into())
}

/// `[state]`: the local stores of stateful plugin slots (Kafka's changelog topics
/// hold the durable copy; a local store only makes restarts read less of them).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StateConfig {
    /// The directory of the local stores: `$WEIR_STATE_DIR`, else
    /// `$XDG_STATE_HOME/weir`, else `~/.local/state/weir`.
    #[serde(default)]
    pub dir: Option<EnvString>,
    /// `false`: no local store; every assignment restores from the changelog.
    #[serde(default = "yes")]
    pub local_store: bool,
}

fn yes() -> bool {
    true
}

impl Default for StateConfig {
    fn default() -> StateConfig {
        StateConfig {
            dir: None,
            local_store: true,
        }
    }
}

impl StateConfig {
    /// The directory of the local stores, if they are on.
    pub fn dir(&self) -> Option<PathBuf> {
        if !self.local_store {
            return None;
        }
        if let Some(dir) = &self.dir {
            return Some(PathBuf::from(&dir.0));
        }
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(dir) = env("WEIR_STATE_DIR") {
            return Some(PathBuf::from(dir));
        }
        if let Some(dir) = env("XDG_STATE_HOME") {
            return Some(PathBuf::from(dir).join("weir"));
        }
        env("HOME").map(|home| PathBuf::from(home).join(".local/state/weir"))
    }
}

/// `[tracing]`: OpenTelemetry traces, exported over OTLP. Every key is optional;
/// one left out takes its standard `OTEL_*` environment variable, then the
/// default (telemetry::trace resolves them). Tracing is on when an endpoint is
/// known from either.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TracingConfig {
    /// The collector's OTLP base address, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes
    /// it: `http://host:4317` for gRPC, `http://host:4318` for HTTP (weir adds
    /// `/v1/traces`).
    #[serde(default)]
    pub endpoint: Option<EnvString>,
    /// `grpc` or `http/protobuf` (`OTEL_EXPORTER_OTLP_PROTOCOL`; default
    /// `http/protobuf`).
    #[serde(default)]
    pub protocol: Option<EnvString>,
    /// The share of new traces sampled, 0.0 to 1.0 (`OTEL_TRACES_SAMPLER_ARG`
    /// with a ratio sampler; default 1.0). A record that arrives with a
    /// `traceparent` keeps its parent's decision.
    #[serde(default)]
    pub sample_ratio: Option<f64>,
    /// `service.name` of weir's spans (`OTEL_SERVICE_NAME`; default `weir`).
    #[serde(default)]
    pub service_name: Option<EnvString>,
    /// Finished spans waiting for export at most; more are dropped and counted
    /// (default 4096).
    #[serde(default)]
    pub queue: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricsConfig {
    #[serde(default = "default_listen")]
    pub listen: EnvString,
}

impl Default for MetricsConfig {
    fn default() -> MetricsConfig {
        MetricsConfig {
            listen: default_listen(),
        }
    }
}

fn default_listen() -> EnvString {
    EnvString("127.0.0.1:9464".into())
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TopicConfig {
    #[serde(default = "one")]
    pub partitions: i32,
    #[serde(default = "one")]
    pub replication: i32,
    /// `None`: the broker's default.
    #[serde(default)]
    pub retention: Option<HumanDuration>,
    #[serde(default)]
    pub cleanup: Cleanup,
}

fn one() -> i32 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cleanup {
    #[default]
    Delete,
    Compact,
}

impl Cleanup {
    pub fn as_str(self) -> &'static str {
        match self {
            Cleanup::Delete => "delete",
            Cleanup::Compact => "compact",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetryConfig {
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: HumanDuration,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: HumanDuration,
}

impl Default for RetryConfig {
    fn default() -> RetryConfig {
        RetryConfig {
            max_attempts: default_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_attempts() -> u32 {
    5
}

fn default_initial_backoff() -> HumanDuration {
    HumanDuration(Duration::from_millis(200))
}

fn default_max_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsConfig {
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Largest output record (key + value + headers) a plugin may return.
    #[serde(default = "default_max_output")]
    pub max_output: ByteSize,
    /// Largest state value or timer payload (stateful plugins).
    #[serde(default = "default_state_value")]
    pub state_value: ByteSize,
    /// Most state entries per key (stateful plugins).
    #[serde(default = "default_state_entries")]
    pub state_entries: usize,
    /// Most pending timers per partition (stateful plugins).
    #[serde(default = "default_timers")]
    pub timers: usize,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            memory: default_memory(),
            timeout: default_timeout(),
            max_output: default_max_output(),
            state_value: default_state_value(),
            state_entries: default_state_entries(),
            timers: default_timers(),
        }
    }
}

impl LimitsConfig {
    /// The sandbox limits, with outputs capped at what `kafka`'s producer accepts.
    pub fn limits(&self, kafka: &KafkaConfig) -> Limits {
        Limits {
            memory: self.memory.0 as usize,
            timeout: self.timeout.0,
            max_output: self.output_cap(kafka).bytes,
            state_value: self.state_value.0 as usize,
            state_entries: self.state_entries,
            timers: self.timers,
        }
    }

    /// The largest output a plugin may return, as the Kafka client counts its size
    /// (key, value, headers and the record's framing), and which setting decides
    /// it: `limits.max-output`, or the client's `message.max.bytes` when that is
    /// smaller (weir's own producer would refuse the record otherwise).
    pub fn output_cap(&self, kafka: &KafkaConfig) -> OutputCap {
        let configured = self.max_output.0 as usize;
        let client = kafka.message_max_bytes();
        if client < configured {
            OutputCap {
                bytes: client,
                by: "the Kafka client's message.max.bytes",
            }
        } else {
            OutputCap {
                bytes: configured,
                by: "limits.max-output",
            }
        }
    }
}

/// The largest output a pipeline's plugins may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCap {
    /// In bytes, as the Kafka client counts a record ([`crate::kafka::wire_size`]).
    pub bytes: usize,
    /// The setting that decides it.
    pub by: &'static str,
}

fn default_memory() -> ByteSize {
    ByteSize(Limits::default().memory as u64)
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Limits::default().timeout)
}

fn default_max_output() -> ByteSize {
    ByteSize(Limits::default().max_output as u64)
}

fn default_state_value() -> ByteSize {
    ByteSize(Limits::default().state_value as u64)
}

fn default_state_entries() -> usize {
    Limits::default().state_entries
}

fn default_timers() -> usize {
    Limits::default().timers
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CircuitConfig {
    #[serde(default = "default_ratio")]
    pub failure_ratio: f64,
    #[serde(default = "default_window")]
    pub window: u32,
    #[serde(default = "default_cooldown")]
    pub cooldown: HumanDuration,
}

impl Default for CircuitConfig {
    fn default() -> CircuitConfig {
        CircuitConfig {
            failure_ratio: default_ratio(),
            window: default_window(),
            cooldown: default_cooldown(),
        }
    }
}

fn default_ratio() -> f64 {
    0.5
}

fn default_window() -> u32 {
    100
}

fn default_cooldown() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl WeirConfig {
    /// Reads, parses and checks a config file.
    pub fn load(path: &Path) -> Result<WeirConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|reason| ConfigError::Read {
            path: path.to_owned(),
            reason,
        })?;
        let mut config = WeirConfig::parse(&text, &path.display().to_string())?;
        config.base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Ok(config)
    }

    /// Parses and checks config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<WeirConfig, ConfigError> {
        let config: WeirConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
            let key = e
                .span()
                .map(|s| text[s].trim().to_owned())
                .filter(|k| !k.is_empty() && k.len() < 80 && !k.contains('\n'));
            let message = e.message().trim_end().to_owned();
            ConfigError::Parse {
                file: file.to_owned(),
                line,
                column,
                message: match key {
                    Some(key) if !message.contains(&key) => format!("at `{key}`: {message}"),
                    _ => message,
                },
            }
        })?;
        Checker { text, file }.check(&config)?;
        Ok(config)
    }

    /// Resolves a plugin path against the config file's directory.
    pub fn plugin_path(&self, plugin: &PluginConfig) -> PathBuf {
        let path = Path::new(&plugin.path.0);
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    // GOOD, BRANCHED and parse are shared with the tests of the other config modules.
    pub(super) const GOOD: &str = r#"
[kafka]
brokers = "${WEIR_TEST_SURELY_UNSET:-embedded}"

[topics.task-events]
partitions = 6
retention = "7d"

[topics.reminders]

[[pipeline]]
name = "reminders"
input = "task-events"
plugins = [
  { path = "a.wasm" },
  { path = "b.wasm", config = { lead-time = "15m", n = 3, on = true } },
]
outputs = { reminders = "reminders" }
retry = { max-attempts = 3, initial-backoff = "100ms", max-backoff = "5s" }
limits = { memory = "32MiB", timeout = "150ms" }
"#;

    pub(super) fn parse(text: &str) -> Result<WeirConfig, ConfigError> {
        WeirConfig::parse(text, "pipelines.toml")
    }

    pub(super) const BRANCHED: &str = r#"
[topics.task-events]
[topics.reminders]
[topics.task-updates]

[[pipeline]]
name = "todo"
input = "task-events"
plugins = [{ path = "validator.wasm" }]
delivery = "exactly-once"

[[pipeline.branch]]
name = "reminders"
plugins = [{ path = "deriver.wasm", config = { lead-time = "15m" } }]
outputs = { reminders = "reminders" }

[[pipeline.branch]]
name = "ui-sync"
plugins = [{ path = "projector.wasm" }]
outputs = { task-updates = "task-updates" }
dlq = "ui-sync.dlq"
"#;

    #[test]
    fn parses_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.kafka.brokers.0, "embedded");
        assert_eq!(c.metrics.listen.0, "127.0.0.1:9464");
        let t = c.topics["task-events"].get_ref();
        assert_eq!(t.partitions, 6);
        assert_eq!(t.retention.unwrap().0, Duration::from_secs(7 * 86400));
        assert_eq!(t.cleanup, Cleanup::Delete);
        let p = &c.pipelines[0];
        assert_eq!(p.group(), "weir-reminders");
        assert_eq!(p.branches()[0].dlq(), "task-events.reminders.dlq");
        assert_eq!(p.retry.max_attempts, 3);
        let limits = p.limits.limits(&KafkaConfig::default());
        assert_eq!(limits.memory, 32 << 20);
        assert_eq!(limits.timeout, Duration::from_millis(150));
        // max-output defaults to 1 MiB, but the client's message.max.bytes is less.
        assert_eq!(limits.max_output, 1_000_000);
        assert_eq!(p.circuit.window, 100);
        assert_eq!(
            p.prefix()[1].init_config(),
            vec![
                ("lead-time".into(), "15m".into()),
                ("n".into(), "3".into()),
                ("on".into(), "true".into())
            ]
        );
    }

    #[test]
    fn misspelt_key_names_file_line_and_key() {
        let text = GOOD.replace("partitions = 6", "partitons = 6");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("pipelines.toml:6:"), "{err}");
        assert!(err.contains("partitons"), "{err}");
    }

    #[test]
    fn the_shipped_deployment_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines.toml");
        let config = WeirConfig::load(&path).unwrap();
        assert_eq!(config.pipelines.len(), 1);
        let names: Vec<&str> = config.pipelines[0]
            .branches()
            .iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["reminders", "ui-sync"]);
    }

    #[test]
    fn the_smaller_of_max_output_and_the_clients_message_max_bytes_caps_outputs() {
        let limits = |max_output: &str| -> LimitsConfig {
            toml::from_str(&format!("max-output = \"{max_output}\"")).unwrap()
        };
        let mut kafka = KafkaConfig::default();
        let cap = limits("1MiB").output_cap(&kafka);
        assert_eq!(cap.bytes, 1_000_000);
        assert!(cap.by.contains("message.max.bytes"), "{}", cap.by);
        let cap = limits("64KiB").output_cap(&kafka);
        assert_eq!((cap.bytes, cap.by), (64 << 10, "limits.max-output"));
        kafka
            .properties
            .insert("message.max.bytes".into(), EnvString("4000000".into()));
        let cap = limits("1MiB").output_cap(&kafka);
        assert_eq!((cap.bytes, cap.by), (1 << 20, "limits.max-output"));
        kafka
            .properties
            .insert("message.max.bytes".into(), EnvString("2000".into()));
        assert_eq!(limits("1MiB").output_cap(&kafka).bytes, 2000);
    }
}
