//! The plugin runtime: one wasmtime `Engine`, plugins compiled once into an
//! `InstancePre` (through the on-disk compile cache of [`cache`]), and instances
//! that are reused across calls.
//!
//! This module owns the sandbox (memory cap, per-call deadline by epoch interruption,
//! WASI with nothing granted) and turns every call into a typed [`CallOutcome`]. It
//! knows nothing of Kafka, retries or routing: policy lives in `policy/`, routing in
//! `pipeline/`.
//!
//! - `engine`: the `Engine`, the linker, the epoch ticker, loading a plugin;
//! - `instance`: instantiating a version, the call, deadlines, output checks;
//! - `errors`: load and call errors, and the helpers their messages use;
//! - `state`: per-instance store state (WASI context, limiter, guest output);
//! - `cache`: compiled components on disk.
//!
//! Everything is re-exported here: callers name `crate::plugin::X`.

pub mod cache;
mod engine;
mod errors;
mod instance;
mod state;

use std::sync::Arc;

pub use self::cache::{CompileCache, Compiled};
pub use self::engine::{EPOCH_TICK, EngineError, PluginEngine};
pub use self::errors::{
    CallError, CallOutcome, Fault, GuestFailure, GuestLanguage, LoadError, size_text,
};
pub use self::instance::{PluginInstance, PluginVersion, START_DEADLINE_MIN, start_deadline};
pub use self::state::CallSite;

pub use crate::config::Limits;
pub use crate::outcome::FailureKind;
pub use crate::record::{Event, Failure, FiredTimer, Header, Output, bindings};
use crate::state::SlotHandle;

/// A loaded plugin as the record path sees it. A trait so that the processor can be
/// tested with scripted plugins; [`PluginVersion`] is the real one.
pub trait Plugin: Send + Sync + 'static {
    type Instance: PluginCall;
    /// A fresh instance, `init`-ed with its config.
    fn instantiate(self: &Arc<Self>) -> Result<Self::Instance, LoadError>;
    /// The file stem, e.g. `task_validator`: the `plugin` metric label.
    fn name(&self) -> &str;
    /// `name@sha256-prefix`, for log lines.
    fn label(&self) -> &Arc<str>;
    /// `name sha256:<hex>`, for the `weir.plugin` DLQ header.
    fn identity(&self) -> &str;
    /// Whether it uses state or timers: each partition then gives it a slot.
    fn stateful(&self) -> bool {
        false
    }
    /// Its limits (a reload may change those of its slot).
    fn limits(&self) -> Option<Limits> {
        None
    }
}

/// One instance of a [`Plugin`].
pub trait PluginCall {
    /// Calls `handle-event`. After `Err(CallError::Fault(_))` the instance must not
    /// be used again.
    fn handle(&mut self, event: &Event, site: &CallSite) -> CallOutcome;

    /// Calls `handle-timer` (a stateful plugin's timer came due).
    fn handle_timer(&mut self, timer: &FiredTimer, site: &CallSite) -> CallOutcome {
        let _ = site;
        Err(CallError::Guest(GuestFailure::Invalid(format!(
            "timer {:?} fired, but the plugin has no timer handler",
            timer.name
        ))))
    }

    /// Gives a stateful plugin's instance its slot on the partition.
    fn bind(&mut self, slot: SlotHandle) {
        let _ = slot;
    }

    /// Whether the instance should be replaced before its next call (its memory
    /// grew close to the cap).
    fn worn(&self) -> bool {
        false
    }
}
