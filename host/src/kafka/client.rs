//! Reaching the cluster: where the brokers are (a real cluster or the embedded
//! development one), a client config with `[kafka.properties]`, the start-up
//! reachability check, committed-offset reads, and a plain send for tools.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::config::WeirConfig;

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
    #[error(
        "changelog topic {topic} has {has} partition(s) but its input topic {input} has {wants}: \
         a key's state must live on the partition that owns the key. Delete {topic} \
         (its state is lost) or give it {wants} partitions"
    )]
    ChangelogPartitions {
        topic: String,
        has: usize,
        input: String,
        wants: usize,
    },
}

/// Where the brokers are: a real cluster, or the in-process development one.
pub struct Brokers {
    /// `bootstrap.servers` for clients.
    pub bootstrap: String,
    /// Keeps the embedded cluster alive (in memory, for trying weir only).
    pub(super) embedded: Option<MockCluster<'static, DefaultProducerContext>>,
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

/// Sends with a plain producer, waiting while its local queue is full. For tools
/// (demo, DLQ replay); the pipelines use [`super::producer::OutputProducer`]. Any
/// other refusal (a record over `message.max.bytes`, an unknown topic, a fatal
/// client error) is returned: waiting would not change it.
pub fn send_waiting<C: ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
) -> Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// A small runtime to drive the admin client's futures.
pub fn block_on_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
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
        let consumer = crate::kafka::consumer::consumer_config(&base, "g");
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
