//! weir: binds Kafka topics to sandboxed WebAssembly components.
//!
//! `config` reads pipelines.toml, `plugin` runs plugins in the sandbox, `pipeline`
//! chains them, `cli` implements the verbs of the `weir` binary, `telemetry` sets up
//! logs.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod config;
pub mod events;
pub mod kafka;
pub mod outcome;
pub mod pipeline;
pub mod plugin;
pub mod policy;
pub mod record;
pub mod reload;
pub mod shutdown;
pub mod startup;
pub mod state;
pub mod telemetry;
