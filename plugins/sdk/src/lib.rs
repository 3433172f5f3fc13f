//! Rust bindings for the `weir:plugin` worlds, generated once for every Rust plugin.
//!
//! A stateless plugin implements [`Guest`] for a unit struct and exports it with
//! `weir_plugin_sdk::export!(MyPlugin);` (world `plugin`). A plugin with keyed state
//! and timers implements [`StatefulGuest`] (`init`, `handle_event`, `handle_timer`)
//! and exports it with `weir_plugin_sdk::export_stateful!(MyPlugin);` (world
//! `stateful-plugin`); it reads and writes through [`state`] and [`timers`]. Either
//! export is guarded by `#[cfg(target_arch = "wasm32")]` so that the plugin's logic
//! still builds and tests natively, where [`state`] and [`timers`] run against the
//! in-memory fake of the `testing` module (native targets only). Both worlds import
//! [`span`], which adds attributes and events to the span the host opens around each
//! call (natively: to the fake's recorder).
//!
//! The WIT file (`wit/plugin.wit`) is the API reference; this crate adds only small
//! conveniences on top of the generated types.

pub mod span;
pub mod state;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod timers;

/// The generated bindings of world `plugin`. They live in a module (not at the crate
/// root) because the exported macros are `#[macro_export]`ed to the root, where a
/// same-named `use` would clash.
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "weir_plugin_sdk::bindings",
    });
}

/// The generated bindings of world `stateful-plugin`. The shared interfaces (`types`,
/// `host`, `span`) are those of [`bindings`], so both worlds use the same `Event`, `Output`
/// and `Failure`. Each world's generated code declares only its imports; its exports
/// are declared by its export macro, in the plugin's crate. So a stateless plugin
/// neither imports `state`/`timers` nor has to export `handle-timer`.
#[allow(clippy::too_many_arguments)]
pub mod stateful_bindings {
    wit_bindgen::generate!({
        world: "stateful-plugin",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "weir_plugin_sdk::stateful_bindings",
        export_macro_name: "export_stateful",
        // The keys name the WIT package version: update them with `wit/plugin.wit`.
        with: {
            "weir:plugin/types@0.1.2": crate::bindings::weir::plugin::types,
            "weir:plugin/host@0.1.2": crate::bindings::weir::plugin::host,
            "weir:plugin/span@0.1.2": crate::bindings::weir::plugin::span,
        },
        generate_all,
    });
}

pub use bindings::weir::plugin::host::{Level, log};
pub use bindings::weir::plugin::types::{FiredTimer, Header};
pub use bindings::{Event, Failure, Guest, Output, export};
pub use stateful_bindings::{Guest as StatefulGuest, export_stateful};

impl Header {
    /// A header whose value is the text `value` in UTF-8. `text` only builds
    /// headers; a received header's value is bytes, for the plugin to decode.
    /// (The Python and JavaScript SDKs' `Header.text` and Go's `weir.TextHeader`
    /// mean the same.)
    pub fn text(key: &str, value: &str) -> Header {
        Header {
            key: key.to_owned(),
            value: value.as_bytes().to_vec(),
        }
    }
}

impl Event {
    /// The value of the first header named `key`, if any.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_slice())
    }
}

/// Looks up `key` in the config list handed to `init`.
pub fn config_value<'a>(config: &'a [(String, String)], key: &str) -> Option<&'a str> {
    config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}
