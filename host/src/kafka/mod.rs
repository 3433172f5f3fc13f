//! Kafka: client configuration, the embedded development cluster, topic
//! provisioning, the consumer context (rebalance: drain, then commit), the shared
//! producer, and the ordered per-partition offset tracker.
//!
//! This module speaks to the broker; it does not call plugins or decide what a
//! failure means.

pub mod client;
pub mod consumer;
pub mod headers;
pub mod offsets;
pub mod producer;
mod provision;

pub use crate::record::wire_size;
pub use client::{
    BrokerError, Brokers, CONNECT_TIMEOUT, block_on_runtime, committed_offsets, overlay,
    send_waiting,
};
pub use headers::{consumed_headers, headers_of, to_kafka_headers};
pub use offsets::OffsetTracker;
