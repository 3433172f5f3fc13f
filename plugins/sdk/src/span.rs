//! The plugin's call span (WIT `interface span`, both worlds): attributes and events
//! added to the OpenTelemetry span the host opens around each call of `handle-event`
//! or `handle-timer`. With tracing off, or a record that is not sampled, the calls do
//! nothing; ask [`recording`] first when an attribute is expensive to make. The host
//! keeps at most 32 attributes and 32 events per call (keys and names up to 256
//! bytes, values up to 4 KiB) and drops the rest. Natively, the calls go to the
//! recorder of `testing`.
//!
//! ```
//! use weir_plugin_sdk::span;
//!
//! if span::recording() {
//!     span::set_attribute("todo.task_id", "7e57c0de");
//! }
//! span::add_event("reminder.scheduled", &[("todo.task_id", "7e57c0de")]);
//! ```

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::bindings::weir::plugin::span as wit;

    pub fn recording() -> bool {
        wit::recording()
    }

    pub fn set_attribute(key: &str, value: &str) {
        wit::set_attribute(key, value)
    }

    pub fn add_event(name: &str, attributes: &[(&str, &str)]) {
        let attributes: Vec<(String, String)> = attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        wit::add_event(name, &attributes)
    }
}
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake_span as imp;

/// Whether the current call's span is sampled: whether what is added here reaches
/// the trace.
pub fn recording() -> bool {
    imp::recording()
}

/// Sets an attribute of the call span (a later value for the same key replaces the
/// earlier one).
pub fn set_attribute(key: &str, value: &str) {
    imp::set_attribute(key, value)
}

/// Adds an event, timestamped now, with its attributes (`(key, value)` pairs).
pub fn add_event(name: &str, attributes: &[(&str, &str)]) {
    imp::add_event(name, attributes)
}
