//! Kafka: client configuration, the embedded development cluster, topic
//! provisioning, the consumer context (rebalance: drain, then commit), the shared
//! producer, and the ordered per-partition offset tracker.
//!
//! This module speaks to the broker; it does not call plugins or decide what a
//! failure means.

pub mod consumer;
pub mod offsets;
pub mod producer;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::Offset;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{Cleanup, TopicConfig, WeirConfig};
use crate::plugin::Header;

pub use offsets::OffsetTracker;

/// How long start-up waits for the broker before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Broker-side failures: never a record's fault.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot reach Kafka at {brokers} within {timeout:?}: {reason} (is the broker running? check [kafka] brokers)"
    )]
    Unreachable {
        brokers: String,
        timeout: Duration,
        reason: KafkaError,
    },
    #[error(
        "Kafka at {brokers} refused the connection: {reason} (check security.protocol, sasl.username, sasl.password and ssl.ca.location in [kafka.properties])"
    )]
    Refused { brokers: String, reason: String },
    #[error("cannot create Kafka client: {0}")]
    Client(KafkaError),
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error(
        "input topic {topic:?} of pipeline {pipeline} does not exist; create it or declare it under [topics.{topic}]"
    )]
    MissingInput { pipeline: String, topic: String },
    #[error("the embedded cluster failed: {0}")]
    Embedded(KafkaError),
}

/// Where the brokers are: a real cluster, or the in-process development one.
pub struct Brokers {
    /// `bootstrap.servers` for clients.
    pub bootstrap: String,
    /// Keeps the embedded cluster alive (in memory, for trying weir only).
    embedded: Option<MockCluster<'static, DefaultProducerContext>>,
}

impl Brokers {
    /// Resolves `[kafka] brokers`; `embedded` starts the in-process cluster.
    pub fn connect(config: &WeirConfig) -> Result<Brokers, BrokerError> {
        if config.kafka.brokers.0 == "embedded" {
            let cluster = MockCluster::new(1).map_err(BrokerError::Embedded)?;
            tracing::warn!(
                bootstrap = %cluster.bootstrap_servers(),
                "using the embedded development cluster: data lives in memory and is lost on exit; not for production"
            );
            return Ok(Brokers {
                bootstrap: cluster.bootstrap_servers(),
                embedded: Some(cluster),
            });
        }
        Ok(Brokers {
            bootstrap: config.kafka.brokers.0.clone(),
            embedded: None,
        })
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// A client config with the bootstrap servers, client id and every
    /// `[kafka.properties]` entry.
    pub fn client_config(&self, config: &WeirConfig) -> ClientConfig {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", &config.kafka.client_id.0);
        for (key, value) in &config.kafka.properties {
            client.set(key, &value.0);
        }
        client
    }

    /// Checks the broker answers, within [`CONNECT_TIMEOUT`]. A refused login or a
    /// failed TLS handshake fails at once, saying so.
    pub fn check_reachable(&self, config: &WeirConfig) -> Result<(), BrokerError> {
        let consumer: BaseConsumer<ProbeContext> = self
            .client_config(config)
            .create_with_context(ProbeContext::default())
            .map_err(BrokerError::Client)?;
        let deadline = std::time::Instant::now() + CONNECT_TIMEOUT;
        loop {
            let result = consumer.fetch_metadata(None, Duration::from_millis(500));
            if result.is_ok() {
                return Ok(());
            }
            // Serves the error callbacks.
            let _ = consumer.poll(Duration::ZERO);
            if let Some(reason) = consumer.context().refused() {
                return Err(BrokerError::Refused {
                    brokers: self.bootstrap.clone(),
                    reason,
                });
            }
            if std::time::Instant::now() >= deadline {
                return result.map(drop).map_err(|reason| BrokerError::Unreachable {
                    brokers: self.bootstrap.clone(),
                    timeout: CONNECT_TIMEOUT,
                    reason,
                });
            }
        }
    }

    /// Creates the declared topics and every pipeline's dead-letter topic when
    /// missing; on existing topics checks partitions and cleanup policy and warns on
    /// a mismatch. Fails when a pipeline's input topic does not exist afterwards.
    pub fn provision(&self, config: &WeirConfig) -> Result<(), BrokerError> {
        let mut wanted: BTreeMap<String, TopicConfig> = config
            .topics
            .iter()
            .map(|(name, topic)| (name.clone(), topic.get_ref().clone()))
            .collect();
        for branch in config.pipelines.iter().flat_map(|p| p.branches()) {
            wanted.entry(branch.dlq()).or_insert(TopicConfig {
                partitions: 1,
                replication: 1,
                retention: None,
                cleanup: Cleanup::Delete,
            });
        }
        if let Some(cluster) = &self.embedded {
            for (name, topic) in &wanted {
                cluster
                    .create_topic(name, topic.partitions, 1)
                    .map_err(|e| BrokerError::CreateTopic {
                        topic: name.clone(),
                        reason: e.to_string(),
                    })?;
            }
        } else {
            self.create_topics(config, &wanted)?;
        }
        let consumer: BaseConsumer = self
            .client_config(config)
            .create()
            .map_err(BrokerError::Client)?;
        // Metadata can lag a moment behind a topic that was just created.
        let deadline = std::time::Instant::now() + CONNECT_TIMEOUT;
        for pipeline in &config.pipelines {
            loop {
                let metadata = consumer
                    .fetch_metadata(Some(pipeline.input()), CONNECT_TIMEOUT)
                    .map_err(|reason| BrokerError::Unreachable {
                        brokers: self.bootstrap.clone(),
                        timeout: CONNECT_TIMEOUT,
                        reason,
                    })?;
                let exists = metadata
                    .topics()
                    .iter()
                    .any(|t| t.error().is_none() && !t.partitions().is_empty());
                if exists {
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    return Err(BrokerError::MissingInput {
                        pipeline: pipeline.name().to_owned(),
                        topic: pipeline.input().to_owned(),
                    });
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }

    fn create_topics(
        &self,
        config: &WeirConfig,
        wanted: &BTreeMap<String, TopicConfig>,
    ) -> Result<(), BrokerError> {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config(config)
            .create()
            .map_err(BrokerError::Client)?;
        let options = AdminOptions::new()
            .request_timeout(Some(CONNECT_TIMEOUT))
            .operation_timeout(Some(CONNECT_TIMEOUT));
        let retention: BTreeMap<&str, String> = wanted
            .iter()
            .filter_map(|(name, t)| {
                t.retention
                    .map(|r| (name.as_str(), r.0.as_millis().to_string()))
            })
            .collect();
        let new_topics: Vec<NewTopic<'_>> = wanted
            .iter()
            .map(|(name, t)| {
                let mut topic =
                    NewTopic::new(name, t.partitions, TopicReplication::Fixed(t.replication))
                        .set("cleanup.policy", t.cleanup.as_str());
                if let Some(ms) = retention.get(name.as_str()) {
                    topic = topic.set("retention.ms", ms);
                }
                topic
            })
            .collect();
        let runtime = block_on_runtime();
        let results = runtime
            .block_on(admin.create_topics(&new_topics, &options))
            .map_err(|reason| BrokerError::Unreachable {
                brokers: self.bootstrap.clone(),
                timeout: CONNECT_TIMEOUT,
                reason,
            })?;
        let mut existing = Vec::new();
        for result in results {
            match result {
                Ok(name) => tracing::info!(topic = %name, "created topic"),
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => existing.push(name),
                // Without CREATE, an existing topic is all weir needs.
                Err((
                    name,
                    RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed,
                )) if self.exists(config, &name) => existing.push(name),
                Err((name, code)) => {
                    let hint = match code {
                        RDKafkaErrorCode::TopicAuthorizationFailed
                        | RDKafkaErrorCode::ClusterAuthorizationFailed => {
                            " (create it beforehand, or grant weir's principal CREATE on it)"
                        }
                        _ => "",
                    };
                    return Err(BrokerError::CreateTopic {
                        topic: name,
                        reason: format!("{code}{hint}"),
                    });
                }
            }
        }
        self.verify_existing(&admin, &runtime, &options, config, wanted, &existing);
        Ok(())
    }

    /// Whether `topic` exists (as far as weir's principal may see).
    fn exists(&self, config: &WeirConfig, topic: &str) -> bool {
        let Ok(consumer) = self.client_config(config).create::<BaseConsumer>() else {
            return false;
        };
        consumer
            .fetch_metadata(Some(topic), CONNECT_TIMEOUT)
            .is_ok_and(|m| {
                m.topics()
                    .iter()
                    .any(|t| t.error().is_none() && !t.partitions().is_empty())
            })
    }

    /// Warns when an existing topic differs from its declaration.
    fn verify_existing(
        &self,
        admin: &AdminClient<DefaultClientContext>,
        runtime: &tokio::runtime::Runtime,
        options: &AdminOptions,
        config: &WeirConfig,
        wanted: &BTreeMap<String, TopicConfig>,
        existing: &[String],
    ) {
        if existing.is_empty() {
            return;
        }
        let Ok(consumer) = self.client_config(config).create::<BaseConsumer>() else {
            return;
        };
        for name in existing {
            let declared = &wanted[name];
            if let Ok(metadata) = consumer.fetch_metadata(Some(name), CONNECT_TIMEOUT)
                && let Some(topic) = metadata.topics().first()
                && topic.partitions().len() as i32 != declared.partitions
            {
                tracing::warn!(
                    topic = %name,
                    declared = declared.partitions,
                    actual = topic.partitions().len(),
                    "existing topic has a different partition count than pipelines.toml declares"
                );
            }
            let specifier = [ResourceSpecifier::Topic(name)];
            match runtime.block_on(admin.describe_configs(&specifier, options)) {
                Ok(results) => {
                    let policy = results
                        .first()
                        .and_then(|r| r.as_ref().ok())
                        .and_then(|r| r.get("cleanup.policy"))
                        .and_then(|e| e.value.clone());
                    if let Some(policy) = policy
                        && policy != declared.cleanup.as_str()
                    {
                        tracing::warn!(
                            topic = %name,
                            declared = declared.cleanup.as_str(),
                            actual = %policy,
                            "existing topic has a different cleanup policy than pipelines.toml declares"
                        );
                    }
                }
                Err(e) => {
                    tracing::debug!(topic = %name, error = %e, "cannot describe topic config")
                }
            }
        }
    }
}

/// The offsets `consumer`'s group committed on `topic`, by partition (`None`: none
/// yet). The one place weir reads committed offsets.
pub fn committed_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, Option<i64>>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    Ok(consumer
        .committed_offsets(tpl, timeout)?
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => (e.partition(), Some(n)),
            _ => (e.partition(), None),
        })
        .collect())
}

/// Sets every property of `base` on `config` (overriding what `config` has): how
/// weir's defaults for a client meet `[kafka.properties]`. The values are read with
/// `ClientConfig::get`: `config_map()` hides secrets such as `sasl.password`.
pub fn overlay(config: &mut ClientConfig, base: &ClientConfig) {
    for key in base.config_map().keys() {
        if let Some(value) = base.get(key) {
            config.set(*key, value);
        }
    }
}

/// The start-up probe's client context: remembers an authentication or TLS error,
/// which librdkafka reports only through the error callback.
#[derive(Default)]
struct ProbeContext {
    refused: std::sync::Mutex<Option<String>>,
}

impl ProbeContext {
    fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl rdkafka::client::ClientContext for ProbeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let kind = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
                "authentication failed"
            }
            Some(RDKafkaErrorCode::SSL) => "the TLS handshake failed",
            _ => {
                tracing::debug!(%error, reason, "start-up probe");
                return;
            }
        };
        *self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(format!("{kind}: {reason}"));
    }
}

impl ConsumerContext for ProbeContext {}

/// A consumed record's headers as plugin headers: a null value becomes empty, and a
/// key that is not UTF-8 is converted lossily (U+FFFD for the bad bytes), since a
/// WIT `string` must be UTF-8. Read through librdkafka directly: rdkafka's own
/// header iterator panics on such a key, and a record must never take a runner
/// down.
pub fn consumed_headers(message: &BorrowedMessage<'_>) -> Vec<Header> {
    use rdkafka::bindings as rd;
    let mut headers = Vec::new();
    // SAFETY: the message pointer is valid while `message` is borrowed, and the
    // header list it returns lives as long as the message; every pointer read
    // below comes from librdkafka with the size it gives.
    unsafe {
        let mut list: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
        if rd::rd_kafka_message_headers(message.ptr(), &mut list)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            || list.is_null()
        {
            return headers;
        }
        let count = rd::rd_kafka_header_cnt(list);
        headers.reserve(count);
        for idx in 0..count {
            let mut name: *const std::os::raw::c_char = std::ptr::null();
            let mut value: *const std::os::raw::c_void = std::ptr::null();
            let mut size: usize = 0;
            if rd::rd_kafka_header_get_all(list, idx, &mut name, &mut value, &mut size)
                != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                || name.is_null()
            {
                break;
            }
            let key = std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned();
            let value = if value.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec()
            };
            headers.push(Header { key, value });
        }
    }
    headers
}

/// A message's headers as plugin headers (a null value becomes empty). For
/// messages weir made itself; consumed records go through [`consumed_headers`].
pub fn headers_of(message: &impl Message) -> Vec<Header> {
    message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Sends with a plain producer, waiting while its local queue is full. For tools
/// (demo, DLQ replay); the pipelines use [`producer::OutputProducer`].
pub fn send_waiting(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// A small runtime to drive the admin client's futures.
pub fn block_on_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime can always be built")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(properties: &str) -> WeirConfig {
        let text = format!("[kafka]\nbrokers = \"127.0.0.1:1\"\n[kafka.properties]\n{properties}");
        WeirConfig::parse(&text, "test.toml").expect("valid config")
    }

    #[test]
    fn tls_and_scram_properties_are_supported_by_the_client() {
        let config = config(
            r#""security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "weir"
"sasl.password" = "secret"
"#,
        );
        let brokers = Brokers::connect(&config).expect("no connection is made yet");
        let client = brokers.client_config(&config);
        assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
        client
            .create::<BaseConsumer>()
            .expect("librdkafka is built with TLS and SCRAM");
    }

    #[test]
    fn secrets_reach_every_client() {
        let config = config(
            r#""sasl.password" = "s3cret"
"ssl.key.password" = "k3y"
"#,
        );
        let base = Brokers::connect(&config).unwrap().client_config(&config);
        let consumer = consumer::consumer_config(&base, "g");
        assert_eq!(consumer.get("sasl.password"), Some("s3cret"));
        assert_eq!(consumer.get("ssl.key.password"), Some("k3y"));
        let mut producer = ClientConfig::new();
        producer.set("sasl.password", "default");
        overlay(&mut producer, &base);
        assert_eq!(producer.get("sasl.password"), Some("s3cret"));
    }

    #[test]
    fn properties_pass_through_and_override_defaults() {
        let config = config("\"linger.ms\" = \"50\"\n");
        let brokers = Brokers::connect(&config).unwrap();
        let client = brokers.client_config(&config);
        assert_eq!(client.get("bootstrap.servers"), Some("127.0.0.1:1"));
        assert_eq!(client.get("client.id"), Some("weir"));
        assert_eq!(client.get("linger.ms"), Some("50"));
    }
}
