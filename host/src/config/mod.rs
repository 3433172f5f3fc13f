//! `pipelines.toml`: serde structs, environment expansion and cross-field checks.
//!
//! Loading either yields a [`WeirConfig`] that the rest of the host can trust, or an
//! error naming the file, the line and the key. Behaviour lives here, not in CLI
//! flags. This module does not touch Kafka or wasm.

mod env;
pub mod live;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

pub use env::expand as expand_env;

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
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory: 64 << 20,
            timeout: Duration::from_millis(200),
            max_output: 1 << 20,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PipelineConfig {
    pub name: Spanned<String>,
    pub input: Spanned<String>,
    #[serde(default)]
    pub group: Option<EnvString>,
    /// The chain every record runs through; with branches, the prefix they share.
    #[serde(default)]
    pub plugins: Option<Spanned<Vec<PluginConfig>>>,
    #[serde(default)]
    pub outputs: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub dlq: Option<Spanned<String>>,
    /// `[[pipeline.branch]]`: chains that run after the shared prefix, each with its
    /// own outputs and dead-letter topic, on one consumption of the input.
    #[serde(default, rename = "branch")]
    pub branches: Vec<BranchConfig>,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// At most this many of the pipeline's partitions run plugins at once (its
    /// worker threads' worth of CPU). Unset: every assigned partition in parallel.
    #[serde(default)]
    pub workers: Option<Spanned<u32>>,
    #[serde(default)]
    pub delivery: Delivery,
    /// Exactly-once: how long a transaction stays open at most.
    #[serde(default = "default_transaction_interval")]
    pub transaction_interval: HumanDuration,
}

/// How outputs, dead letters and input offsets reach the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Outputs are produced as records are handled; an offset is committed once
    /// everything its record caused is acknowledged. A crash replays some records.
    #[default]
    AtLeastOnce,
    /// Outputs, dead letters and input offsets commit together in Kafka
    /// transactions; `read_committed` consumers see each record's effects once.
    ExactlyOnce,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::AtLeastOnce => "at-least-once",
            Delivery::ExactlyOnce => "exactly-once",
        }
    }
}

fn default_transaction_interval() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}

/// One `[[pipeline.branch]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BranchConfig {
    pub name: Spanned<String>,
    /// Runs on every output of the pipeline's shared `plugins`.
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
    #[serde(default)]
    pub outputs: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub dlq: Option<Spanned<String>>,
}

/// A branch as the runtime sees it: a pipeline without `[[pipeline.branch]]` is one
/// branch named after it, with no plugins of its own.
#[derive(Debug, Clone, Copy)]
pub struct BranchView<'a> {
    pub name: &'a str,
    pub plugins: &'a [PluginConfig],
    pub outputs: &'a BTreeMap<String, Spanned<String>>,
    dlq: Option<&'a Spanned<String>>,
    input: &'a str,
}

impl BranchView<'_> {
    /// The dead-letter topic: `dlq`, or `<input>.<name>.dlq`.
    pub fn dlq(&self) -> String {
        match self.dlq {
            Some(dlq) => dlq.get_ref().clone(),
            None => format!("{}.{}.dlq", self.input, self.name),
        }
    }
}

impl PipelineConfig {
    /// The `workers` value, if set.
    pub fn workers(&self) -> Option<u32> {
        self.workers.as_ref().map(|w| *w.get_ref())
    }

    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    pub fn input(&self) -> &str {
        self.input.get_ref()
    }

    /// The consumer group: `group`, or `weir-<name>`.
    pub fn group(&self) -> String {
        match &self.group {
            Some(group) => group.0.clone(),
            None => format!("weir-{}", self.name()),
        }
    }

    /// The plugins every record runs through first (with branches: the shared prefix).
    pub fn prefix(&self) -> &[PluginConfig] {
        self.plugins
            .as_ref()
            .map_or(&[], |p| p.get_ref().as_slice())
    }

    /// The branches: the `[[pipeline.branch]]` tables, or the pipeline itself as one.
    pub fn branches(&self) -> Vec<BranchView<'_>> {
        if self.branches.is_empty() {
            return vec![BranchView {
                name: self.name(),
                plugins: &[],
                outputs: &self.outputs,
                dlq: self.dlq.as_ref(),
                input: self.input(),
            }];
        }
        self.branches
            .iter()
            .map(|b| BranchView {
                name: b.name.get_ref(),
                plugins: &b.plugins,
                outputs: &b.outputs,
                dlq: b.dlq.as_ref(),
                input: self.input(),
            })
            .collect()
    }

    /// Every plugin in chain order: the prefix, then each branch's.
    pub fn all_plugins(&self) -> impl Iterator<Item = &PluginConfig> {
        self.prefix()
            .iter()
            .chain(self.branches.iter().flat_map(|b| b.plugins.iter()))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginConfig {
    pub path: EnvString,
    /// Handed to the plugin's `init`, values rendered as strings.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
}

impl PluginConfig {
    /// The config as `init` receives it.
    pub fn init_config(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect()
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
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            memory: default_memory(),
            timeout: default_timeout(),
            max_output: default_max_output(),
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

/// A string with `${VAR}` / `${VAR:-default}` expanded from the environment while
/// parsing, so an unset variable is reported at its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvString(pub String);

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        env::expand(&raw, &|name| std::env::var(name).ok())
            .map(EnvString)
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for EnvString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A humantime duration: `200ms`, `15m`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        humantime::parse_duration(&raw)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "{e} in {raw:?} (write durations like \"200ms\", \"15m\", \"7d\")"
                ))
            })
    }
}

/// A size: `64MiB`, `512KiB`, or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(text) => text
                .parse::<bytesize::ByteSize>()
                .map(|b| ByteSize(b.as_u64()))
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "{e} in {text:?} (write sizes like \"64MiB\")"
                    ))
                }),
        }
    }
}

/// A plugin config value: strings as they are, numbers and booleans rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigValue(pub String);

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match toml::Value::deserialize(d)? {
            toml::Value::String(s) => env::expand(&s, &|name| std::env::var(name).ok())
                .map_err(serde::de::Error::custom)?,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "plugin config values must be strings, numbers or booleans, got a {}",
                    other.type_str()
                )));
            }
        };
        Ok(ConfigValue(text))
    }
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

/// Cross-field checks, each reported at the line of the offending key.
struct Checker<'a> {
    text: &'a str,
    file: &'a str,
}

impl Checker<'_> {
    fn error(&self, span: Range<usize>, key: String, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line: line_col(self.text, span.start).0,
            key,
            message,
        }
    }

    /// A pipeline or branch name: valid characters, and not taken.
    fn name<'c>(
        &self,
        name: &'c Spanned<String>,
        key: String,
        taken: &mut HashSet<&'c str>,
    ) -> Result<(), ConfigError> {
        let text = name.get_ref().as_str();
        if text.is_empty()
            || !text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(self.error(
                name.span(),
                key,
                format!("{text:?} is not a valid name (use letters, digits, '-', '_', '.')"),
            ));
        }
        if !taken.insert(text) {
            return Err(self.error(
                name.span(),
                key,
                format!(
                    "duplicate pipeline name {text:?}; every pipeline and branch needs its own name"
                ),
            ));
        }
        Ok(())
    }

    /// Outputs name declared topics other than the input; the DLQ is not the input.
    /// `at` is the key prefix, e.g. `pipeline[0].` or `pipeline[0].branch[1].`.
    fn routes(
        &self,
        config: &WeirConfig,
        pipeline: &PipelineConfig,
        outputs: &BTreeMap<String, Spanned<String>>,
        dlq: Option<&Spanned<String>>,
        at: &str,
    ) -> Result<(), ConfigError> {
        for (output, topic) in outputs {
            let key = format!("{at}outputs.{output}");
            if !config.topics.contains_key(topic.get_ref()) {
                return Err(self.error(
                    topic.span(),
                    key,
                    format!(
                        "topic {:?} is not declared; add a [topics.{}] table or fix the name",
                        topic.get_ref(),
                        topic.get_ref()
                    ),
                ));
            }
            if topic.get_ref() == pipeline.input() {
                return Err(self.error(
                    topic.span(),
                    key,
                    "an output must not be the pipeline's own input (it would loop)".into(),
                ));
            }
        }
        if let Some(dlq) = dlq {
            self.topic_name(dlq.span(), format!("{at}dlq"), dlq.get_ref())?;
        }
        if let Some(dlq) = dlq
            && dlq.get_ref() == pipeline.input()
        {
            return Err(self.error(
                dlq.span(),
                format!("{at}dlq"),
                format!(
                    "the dead-letter topic must differ from the input {:?}",
                    pipeline.input()
                ),
            ));
        }
        Ok(())
    }

    /// A Kafka topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
    fn topic_name(&self, span: Range<usize>, key: String, name: &str) -> Result<(), ConfigError> {
        let legal = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        let problem = if name.is_empty() || name == "." || name == ".." {
            Some("is not a valid topic name".to_owned())
        } else if !legal {
            Some("is not a valid topic name: use letters, digits, '.', '_' and '-'".to_owned())
        } else if name.len() > 249 {
            Some(format!(
                "is {} characters long; Kafka allows at most 249",
                name.len()
            ))
        } else {
            None
        };
        match problem {
            Some(problem) => Err(self.error(span, key, format!("{name:?} {problem}"))),
            None => Ok(()),
        }
    }

    fn check(&self, config: &WeirConfig) -> Result<(), ConfigError> {
        for (name, topic) in &config.topics {
            let key = format!("topics.{name}");
            self.topic_name(topic.span(), key.clone(), name)?;
            if topic.get_ref().partitions < 1 {
                return Err(self.error(topic.span(), key, "partitions must be at least 1".into()));
            }
            if topic.get_ref().replication < 1 {
                return Err(self.error(topic.span(), key, "replication must be at least 1".into()));
            }
        }
        // Pipeline and branch names share one namespace: they label metrics and
        // `weir.pipeline` headers, and `weir dlq --pipeline` looks them up.
        let mut names = HashSet::new();
        for (i, p) in config.pipelines.iter().enumerate() {
            let at = |field: &str| format!("pipeline[{i}].{field}");
            self.name(&p.name, at("name"), &mut names)?;
            self.topic_name(p.input.span(), at("input"), p.input())?;
            if p.branches.is_empty() {
                if p.prefix().is_empty() {
                    let span = p.plugins.as_ref().map_or(p.name.span(), Spanned::span);
                    return Err(self.error(
                        span,
                        at("plugins"),
                        "a pipeline needs at least one plugin".into(),
                    ));
                }
                self.routes(config, p, &p.outputs, p.dlq.as_ref(), &at(""))?;
            } else {
                for (field, span) in [
                    ("outputs", p.outputs.values().next().map(Spanned::span)),
                    ("dlq", p.dlq.as_ref().map(Spanned::span)),
                ] {
                    if let Some(span) = span {
                        return Err(self.error(
                            span,
                            at(field),
                            format!(
                                "a pipeline with [[pipeline.branch]] tables has no {field} of its own: \
                                 move `{field}` into each branch"
                            ),
                        ));
                    }
                }
                for (j, branch) in p.branches.iter().enumerate() {
                    let at = |field: &str| format!("pipeline[{i}].branch[{j}].{field}");
                    self.name(&branch.name, at("name"), &mut names)?;
                    if p.prefix().is_empty() && branch.plugins.is_empty() {
                        return Err(self.error(
                            branch.name.span(),
                            at("plugins"),
                            format!(
                                "branch {:?} runs no plugin: give it a plugins list, or the pipeline a shared one",
                                branch.name.get_ref()
                            ),
                        ));
                    }
                    self.routes(config, p, &branch.outputs, branch.dlq.as_ref(), &at(""))?;
                }
            }
            for branch in p.branches() {
                let dlq = branch.dlq();
                if dlq.len() > 249 {
                    return Err(self.error(
                        p.name.span(),
                        at("dlq"),
                        format!(
                            "the default dead-letter topic of {:?}, {dlq:?}, is {} characters long; \
                             Kafka allows at most 249: set `dlq`",
                            branch.name,
                            dlq.len()
                        ),
                    ));
                }
            }
            if let Some(workers) = &p.workers
                && *workers.get_ref() == 0
            {
                return Err(self.error(
                    workers.span(),
                    at("workers"),
                    "workers must be at least 1 (or leave it out to run every partition in parallel)".into(),
                ));
            }
            if p.retry.max_attempts == 0 {
                return Err(self.error(
                    p.name.span(),
                    at("retry.max-attempts"),
                    "must be at least 1 (1 means no retries)".into(),
                ));
            }
            let circuit = &p.circuit;
            if !(circuit.failure_ratio > 0.0 && circuit.failure_ratio <= 1.0) || circuit.window == 0
            {
                return Err(self.error(
                    p.name.span(),
                    at("circuit"),
                    "failure-ratio must be in (0, 1] and window at least 1".into(),
                ));
            }
            if p.transaction_interval.0.is_zero() {
                return Err(self.error(
                    p.name.span(),
                    at("transaction-interval"),
                    "must be longer than 0 (e.g. \"100ms\")".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
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

    fn parse(text: &str) -> Result<WeirConfig, ConfigError> {
        WeirConfig::parse(text, "pipelines.toml")
    }

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
    fn undeclared_output_topic_is_an_error_at_its_line() {
        let text = GOOD.replace("reminders = \"reminders\"", "reminders = \"remnders\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("pipelines.toml:18: pipeline[0].outputs.reminders:"),
            "{err}"
        );
        assert!(err.contains("\"remnders\" is not declared"), "{err}");
    }

    #[test]
    fn duplicate_pipeline_names_are_refused() {
        let second = GOOD[GOOD.find("[[pipeline]]").unwrap()..].to_owned();
        let err = parse(&format!("{GOOD}\n{second}")).unwrap_err().to_string();
        assert!(
            err.contains("duplicate pipeline name \"reminders\""),
            "{err}"
        );
    }

    #[test]
    fn workers_must_be_positive() {
        let one = parse(&GOOD.replace("outputs = {", "workers = 1\noutputs = {")).unwrap();
        assert_eq!(one.pipelines[0].workers(), Some(1));
        assert_eq!(parse(GOOD).unwrap().pipelines[0].workers(), None);
        let text = GOOD.replace("outputs = {", "workers = 0\noutputs = {");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("pipeline[0].workers: workers must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn dlq_equal_to_input_is_refused() {
        let text = GOOD.replace("outputs = {", "dlq = \"task-events\"\noutputs = {");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("pipeline[0].dlq"), "{err}");
    }

    #[test]
    fn unset_variable_is_reported_at_its_line() {
        let text = GOOD.replace(
            "${WEIR_TEST_SURELY_UNSET:-embedded}",
            "${WEIR_TEST_SURELY_UNSET}",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("pipelines.toml:3:"), "{err}");
        assert!(err.contains("WEIR_TEST_SURELY_UNSET is not set"), "{err}");
    }

    #[test]
    fn bad_durations_and_sizes_explain_the_format() {
        let err = parse(&GOOD.replace("\"150ms\"", "\"fast\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("200ms"), "{err}");
        let err = parse(&GOOD.replace("\"32MiB\"", "\"lots\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("64MiB"), "{err}");
    }

    const BRANCHED: &str = r#"
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
    fn branches_share_a_prefix_and_keep_their_own_routes() {
        let c = parse(BRANCHED).unwrap();
        let p = &c.pipelines[0];
        assert_eq!(p.group(), "weir-todo");
        assert_eq!(p.delivery, Delivery::ExactlyOnce);
        assert_eq!(p.transaction_interval.0, Duration::from_millis(100));
        assert_eq!(p.prefix().len(), 1);
        let branches = p.branches();
        assert_eq!(branches.len(), 2);
        assert_eq!(branches[0].name, "reminders");
        assert_eq!(branches[0].dlq(), "task-events.reminders.dlq");
        assert_eq!(branches[1].dlq(), "ui-sync.dlq");
        assert_eq!(p.all_plugins().count(), 3);
    }

    #[test]
    fn a_pipeline_without_branches_is_one_branch() {
        let c = parse(GOOD).unwrap();
        let branches = c.pipelines[0].branches();
        assert_eq!(branches.len(), 1);
        assert_eq!(branches[0].name, "reminders");
        assert!(branches[0].plugins.is_empty());
        assert_eq!(c.pipelines[0].delivery, Delivery::AtLeastOnce);
    }

    #[test]
    fn bad_branch_configs_name_file_line_and_key() {
        let cases = [
            (
                BRANCHED.replace(
                    "delivery = \"exactly-once\"",
                    "outputs = { x = \"reminders\" }",
                ),
                "pipelines.toml:10: pipeline[0].outputs: a pipeline with [[pipeline.branch]] tables has no outputs of its own",
            ),
            (
                BRANCHED.replace("name = \"ui-sync\"", "name = \"todo\""),
                "pipelines.toml:18: pipeline[0].branch[1].name: duplicate pipeline name \"todo\"",
            ),
            (
                BRANCHED.replace("\"task-updates\" }", "\"task-update\" }"),
                "pipelines.toml:20: pipeline[0].branch[1].outputs.task-updates: topic \"task-update\" is not declared",
            ),
            (
                BRANCHED.replace("dlq = \"ui-sync.dlq\"", "dlq = \"task-events\""),
                "pipelines.toml:21: pipeline[0].branch[1].dlq: the dead-letter topic must differ",
            ),
            (
                BRANCHED
                    .replace("plugins = [{ path = \"validator.wasm\" }]\n", "")
                    .replace("plugins = [{ path = \"projector.wasm\" }]\n", ""),
                "pipelines.toml:17: pipeline[0].branch[1].plugins: branch \"ui-sync\" runs no plugin",
            ),
            (
                BRANCHED.replace("\"exactly-once\"", "\"exactly-twice\""),
                "pipelines.toml:10:",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.starts_with(want), "want {want:?}, got {err:?}");
        }
    }

    #[test]
    fn topic_names_must_be_legal_kafka_names() {
        let every = "Aa0._-".repeat(40);
        let ok = GOOD.replace("[topics.task-events]", &format!("[topics.\"{every}\"]"));
        let ok = ok.replace("input = \"task-events\"", &format!("input = \"{every}\""));
        let err = parse(&ok).unwrap_err().to_string();
        assert!(
            err.contains("default dead-letter topic") && err.contains("set `dlq`"),
            "a legal 240-character input, but its default DLQ is too long: {err}"
        );
        let fixed = ok.replace("outputs = {", "dlq = \"short.dlq\"\noutputs = {");
        assert!(parse(&fixed).is_ok(), "every legal character is accepted");
        for bad in ["a b", "caf\u{e9}", "..", &"x".repeat(250)] {
            let text = GOOD.replace("[topics.reminders]", &format!("[topics.\"{bad}\"]"));
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("topics."), "{bad:?}: {err}");
        }
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
