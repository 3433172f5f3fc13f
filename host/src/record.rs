//! The records plugins see and return, as the WIT's `weir:plugin/types` defines
//! them: [`Event`], [`Header`], [`Output`] and the plugin's [`Failure`]. A leaf
//! module, so that the Kafka and policy layers can speak of records without
//! depending on the plugin runtime.

/// The single `bindgen!` of the host: the `weir:plugin` world.
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit",
    });
}

pub use bindings::weir::plugin::types::{Event, Failure, Header, Output};
