//! Rust bindings for the `weir:plugin` world, generated once for every Rust plugin.
//!
//! A plugin crate implements [`Guest`] for a unit struct and exports it with
//! `weir_plugin_sdk::export!(MyPlugin);`, guarded by
//! `#[cfg(target_arch = "wasm32")]` so that its logic still builds and tests natively.
//! The WIT file (`wit/plugin.wit`) is the API reference; this crate adds only small
//! conveniences on top of the generated types.

/// The generated bindings. They live in a module (not at the crate root) because the
/// exported macros are `#[macro_export]`ed to the root, where a same-named `use`
/// would clash.
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "weir_plugin_sdk::bindings",
    });
}

pub use bindings::weir::plugin::host::{Level, log};
pub use bindings::weir::plugin::types::Header;
pub use bindings::{Event, Failure, Guest, Output, export};

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
