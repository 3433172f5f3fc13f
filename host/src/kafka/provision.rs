//! Provisioning at start-up: creates the declared topics and every branch's
//! dead-letter topic when missing, warns when an existing topic differs from its
//! declaration, and waits for each pipeline's input topic to be visible.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::client::{BrokerError, Brokers, CONNECT_TIMEOUT, block_on_runtime};
use crate::config::{Cleanup, TopicConfig, WeirConfig};

impl Brokers {
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
        self.create_missing(config, &wanted)?;
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

    /// Creates each stateful slot's changelog topic when missing: compacted, with
    /// its input's partition count and replication. `changelogs` pairs each
    /// changelog topic with its pipeline's input. A changelog whose partition count
    /// differs from its input's is refused.
    pub fn provision_changelogs(
        &self,
        config: &WeirConfig,
        changelogs: &[(String, String)],
    ) -> Result<(), BrokerError> {
        if changelogs.is_empty() {
            return Ok(());
        }
        let consumer: BaseConsumer = self
            .client_config(config)
            .create()
            .map_err(BrokerError::Client)?;
        let unreachable = |reason| BrokerError::Unreachable {
            brokers: self.bootstrap.clone(),
            timeout: CONNECT_TIMEOUT,
            reason,
        };
        // Partition count and replication of a topic, if it exists.
        let shape = |topic: &str| -> Result<Option<(usize, i32)>, BrokerError> {
            let metadata = consumer
                .fetch_metadata(Some(topic), CONNECT_TIMEOUT)
                .map_err(unreachable)?;
            Ok(metadata
                .topics()
                .iter()
                .find(|t| t.error().is_none() && !t.partitions().is_empty())
                .map(|t| {
                    let replicas = t.partitions().first().map_or(1, |p| p.replicas().len());
                    (t.partitions().len(), replicas.max(1) as i32)
                }))
        };
        let mut wanted = BTreeMap::new();
        for (input, changelog) in changelogs {
            let Some((partitions, replication)) = shape(input)? else {
                continue;
            };
            wanted.insert(
                changelog.clone(),
                TopicConfig {
                    partitions: partitions as i32,
                    replication,
                    retention: None,
                    cleanup: Cleanup::Compact,
                },
            );
        }
        self.create_missing(config, &wanted)?;
        for (input, changelog) in changelogs {
            let (Some(wants), Some(has)) = (wanted.get(changelog), shape(changelog)?) else {
                continue;
            };
            if has.0 != wants.partitions as usize {
                return Err(BrokerError::ChangelogPartitions {
                    topic: changelog.clone(),
                    has: has.0,
                    input: input.clone(),
                    wants: wants.partitions as usize,
                });
            }
        }
        Ok(())
    }

    /// Creates the topics of `wanted` that are missing: in the embedded cluster, or
    /// through the admin API.
    fn create_missing(
        &self,
        config: &WeirConfig,
        wanted: &BTreeMap<String, TopicConfig>,
    ) -> Result<(), BrokerError> {
        let Some(cluster) = &self.embedded else {
            return self.create_topics(config, wanted);
        };
        for (name, topic) in wanted {
            cluster
                .create_topic(name, topic.partitions, 1)
                .map_err(|e| BrokerError::CreateTopic {
                    topic: name.clone(),
                    reason: e.to_string(),
                })?;
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
        let runtime = block_on_runtime().map_err(|e| BrokerError::CreateTopic {
            topic: wanted.keys().cloned().collect::<Vec<_>>().join(", "),
            reason: format!("cannot start the admin client's runtime: {e}"),
        })?;
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
