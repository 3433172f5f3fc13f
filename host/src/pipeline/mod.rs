//! Pipelines: the plugin chain of one pipeline and, with the Kafka runtime, the
//! per-partition runner and the supervisor.

pub mod chain;

pub use chain::{Chain, ChainFailure};
