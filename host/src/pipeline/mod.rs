//! Pipelines: the plugin chain, the per-partition runner and the supervisor that
//! owns the threads and shutdown.

pub mod chain;
pub mod runner;
pub mod supervisor;

pub use chain::{Chain, ChainFailure};
pub use supervisor::{Runtime, install_signal_handlers, load_plugins};
