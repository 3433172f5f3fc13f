//! The consumer context: rebalance callbacks hand partitions to the pipeline's
//! partition set (which drains, then commits, on revocation), commit results and
//! client errors go to health.

use std::sync::Arc;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::telemetry::Health;

/// The consumer of one pipeline.
pub type PipelineConsumer = BaseConsumer<PipelineContext>;

/// What the pipeline does when partitions come and go. Called on the consumer's
/// polling thread, inside the rebalance.
pub trait RebalanceHandler: Send + Sync {
    /// Partitions were assigned: start handling them.
    fn assigned(&self, consumer: &PipelineConsumer, partitions: &[i32]);
    /// Partitions are being revoked: finish in-flight records, then commit.
    fn revoked(&self, consumer: &PipelineConsumer, partitions: &[i32]);
}

pub struct PipelineContext {
    pipeline: String,
    health: Arc<Health>,
    handler: Arc<dyn RebalanceHandler>,
}

impl PipelineContext {
    pub fn new(
        pipeline: String,
        health: Arc<Health>,
        handler: Arc<dyn RebalanceHandler>,
    ) -> PipelineContext {
        PipelineContext {
            pipeline,
            health,
            handler,
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for PipelineContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
        ) {
            self.health
                .broker_trouble(format!("consumer of {}: {reason}", self.pipeline));
        } else {
            tracing::warn!(pipeline = %self.pipeline, %error, reason, "consumer error");
        }
    }
}

impl ConsumerContext for PipelineContext {
    fn pre_rebalance(&self, consumer: &PipelineConsumer, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = partitions(tpl);
            tracing::info!(pipeline = %self.pipeline, partitions = ?revoked, "partitions revoked");
            self.health.pipeline_assigned(&self.pipeline, false);
            self.handler.revoked(consumer, &revoked);
        }
    }

    fn post_rebalance(&self, consumer: &PipelineConsumer, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let assigned = partitions(tpl);
                tracing::info!(pipeline = %self.pipeline, partitions = ?assigned, "partitions assigned");
                self.handler.assigned(consumer, &assigned);
                self.health.pipeline_assigned(&self.pipeline, true);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(pipeline = %self.pipeline, %error, "rebalance error");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.health.broker_ok(),
            // Nothing to commit is not a failure.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                tracing::debug!(pipeline = %self.pipeline, ?offsets, "commit failed");
                self.health
                    .broker_trouble(format!("commit of {} failed: {error}", self.pipeline));
            }
        }
    }
}

/// Consumer settings weir relies on, before `[kafka.properties]` (which may override).
pub fn consumer_config(base: &ClientConfig, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("group.id", group)
        // weir commits itself, only offsets whose records are fully delivered.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // librdkafka prefetches up to 64 MiB per consumer by default; the runners'
        // queues already hold 512 records per partition, so 16 MiB keeps the
        // pipeline fed at a quarter of the memory.
        .set("queued.max.messages.kbytes", "16384")
        // Some brokers hold a fetch for the whole wait even when data arrives;
        // 100 ms bounds what that adds to end-to-end latency.
        .set("fetch.wait.max.ms", "100");
    for (key, value) in base.config_map() {
        config.set(key, value);
    }
    config
}
