//! The consumer context: rebalance callbacks hand partitions to the pipeline's
//! partition set (which splits their queues before the assignment, and drains,
//! then commits, on revocation); commit results and client errors go to health.

use std::sync::{Arc, OnceLock, Weak};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::telemetry::Health;

/// The consumer of one pipeline.
pub type PipelineConsumer = BaseConsumer<PipelineContext>;

/// What the pipeline does when partitions come and go. Called on the consumer's
/// polling thread, inside the rebalance.
pub trait RebalanceHandler: Send + Sync {
    /// Partitions are about to be assigned: start handling them. Called before the
    /// assignment, so that their queues can be split off before any record is
    /// fetched.
    fn assigning(&self, consumer: &Arc<PipelineConsumer>, partitions: &[i32]);
    /// Partitions are being revoked: finish in-flight records, then commit. `lost`:
    /// the group already gave them to another member; commit nothing.
    fn revoked(&self, consumer: &PipelineConsumer, partitions: &[i32], lost: bool);
    /// An asynchronous commit of `offset` on `partition` failed: commit it again
    /// next time, even if nothing new completes (an idle partition, or shutdown).
    fn commit_failed(&self, partition: i32, offset: i64);
}

pub struct PipelineContext {
    pipeline: String,
    health: Arc<Health>,
    handler: Arc<dyn RebalanceHandler>,
    /// The consumer itself, to split partition queues off in the rebalance.
    consumer: OnceLock<Weak<PipelineConsumer>>,
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
            consumer: OnceLock::new(),
        }
    }
}

/// Makes a pipeline's consumer and lets its context reach it.
pub fn create_consumer(
    config: &ClientConfig,
    context: PipelineContext,
) -> KafkaResult<Arc<PipelineConsumer>> {
    let consumer: Arc<PipelineConsumer> = Arc::new(config.create_with_context(context)?);
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    Ok(consumer)
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for PipelineContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure) => {
                self.health
                    .broker_trouble(format!("consumer of {}: {reason}", self.pipeline));
            }
            Some(RDKafkaErrorCode::Fatal) => self
                .health
                .fatal(format!("consumer of {}: {reason}", self.pipeline)),
            _ => tracing::warn!(pipeline = %self.pipeline, %error, reason, "consumer error"),
        }
    }
}

impl ConsumerContext for PipelineContext {
    fn pre_rebalance(&self, consumer: &PipelineConsumer, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let assigned = partitions(tpl);
                match self.consumer.get().and_then(Weak::upgrade) {
                    Some(consumer) => self.handler.assigning(&consumer, &assigned),
                    None => {
                        tracing::error!(pipeline = %self.pipeline, "the consumer is gone; partitions are not handled")
                    }
                }
            }
            Rebalance::Revoke(tpl) => {
                let revoked = partitions(tpl);
                let lost = consumer.assignment_lost();
                tracing::info!(pipeline = %self.pipeline, partitions = ?revoked, lost, "partitions revoked");
                self.health.pipeline_assigned(&self.pipeline, false);
                self.handler.revoked(consumer, &revoked, lost);
            }
            Rebalance::Error(_) => {}
        }
    }

    fn post_rebalance(&self, _consumer: &PipelineConsumer, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let assigned = partitions(tpl);
                tracing::info!(pipeline = %self.pipeline, partitions = ?assigned, "partitions assigned");
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
                for element in offsets.elements() {
                    if let rdkafka::Offset::Offset(offset) = element.offset() {
                        self.handler.commit_failed(element.partition(), offset);
                    }
                }
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
        // Each partition has its own queue, and librdkafka stops fetching a
        // partition whose queue holds this much: the backpressure of a partition
        // whose runner is busy or backing off, without pausing it.
        .set("queued.max.messages.kbytes", "2048")
        // Some brokers hold a fetch for the whole wait even when data arrives;
        // 100 ms bounds what that adds to end-to-end latency.
        .set("fetch.wait.max.ms", "100")
        // Only committed transactions (librdkafka's default, said out loud): an
        // exactly-once pipeline downstream of another sees its outputs once.
        .set("isolation.level", "read_committed");
    crate::kafka::overlay(&mut config, base);
    config
}
