//! Going back after an aborted transaction ([`PartitionSet::rewind`]) and after a
//! fence ([`PartitionSet::rejoin`]): the exactly-once side of the partition set,
//! next to the transaction code that asks for it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::Consumer;

use crate::kafka::consumer::{PipelineConsumer, RebalanceHandler};
use crate::pipeline::partitions::{DRAIN_TIMEOUT, PartitionSet};
use crate::policy::backoff;

impl PartitionSet {
    /// After an aborted transaction: drops the partitions' work, moves them back to
    /// where their last committed transaction left them (or where they started),
    /// and starts their runners again.
    pub(in crate::pipeline) fn rewind(&self, consumer: &Arc<PipelineConsumer>) {
        let partitions = self.partitions();
        let input = self.pipeline.input();
        let halted = self.halt(&partitions, Instant::now() + DRAIN_TIMEOUT);
        let rewinds = self.rewinds.fetch_add(1, Ordering::Relaxed) + 1;
        let pause = backoff(
            rewinds,
            Duration::from_millis(100),
            Duration::from_secs(10),
            1.0,
        );
        if !self.pipeline.stop().sleep(pause) {
            return;
        }
        for (partition, unit) in &halted {
            let Some(offset) = unit.rewind_to() else {
                continue;
            };
            self.carried().insert(*partition, offset);
            if let Err(error) = consumer.seek(
                input,
                *partition,
                Offset::Offset(offset),
                Duration::from_secs(10),
            ) {
                tracing::warn!(pipeline = %self.pipeline.name(), partition, %error, "cannot rewind; rejoining the group instead");
                self.rejoin(consumer);
                return;
            }
        }
        tracing::info!(pipeline = %self.pipeline.name(), partitions = ?partitions, "rewound to the committed offsets");
        self.assigning(consumer, &partitions);
    }

    /// After a fence: drops every partition's work and asks the group for an
    /// assignment again.
    pub(in crate::pipeline) fn rejoin(&self, consumer: &Arc<PipelineConsumer>) {
        let partitions = self.partitions();
        self.halt(&partitions, Instant::now() + DRAIN_TIMEOUT);
        self.carried().clear();
        consumer.unsubscribe();
        if let Err(error) = consumer.subscribe(&[self.pipeline.input()]) {
            tracing::error!(pipeline = %self.pipeline.name(), %error, "cannot subscribe again");
        }
    }
}
