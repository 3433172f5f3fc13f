//! Pipelines. The record path is [`process`] (a pure function of a record, a
//! [`snapshot`] and plugin instances) and a [`sink`] (at-least-once, or
//! [`transaction`]al); around them, a partition [`runner`] per assigned partition,
//! the [`partitions`] set that follows rebalances, the [`live`] pipeline the runners
//! and the reloader share, and the [`supervisor`] that owns the threads.

pub mod chain;
pub mod keyed;
pub mod letters;
pub mod live;
pub mod partitions;
pub mod process;
pub mod runner;
pub mod sink;
pub mod slots;
pub mod snapshot;
pub mod supervisor;
pub mod transaction;
pub mod unit;

pub use chain::{Chain, ChainFailure};
pub use supervisor::{Runtime, install_signal_handlers, load_pipeline, load_plugins};
