//! Keyed state (WIT `interface state`), for plugins exported with
//! [`export_stateful!`](crate::export_stateful). Every call is scoped to the key of
//! the record being handled (or of the timer that fired). Natively, the calls go to
//! the fake of `testing`.

#[cfg(target_arch = "wasm32")]
use crate::stateful_bindings::weir::plugin::state as imp;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake_state as imp;

/// The entry `name`, if set.
pub fn get(name: &str) -> Option<Vec<u8>> {
    imp::get(name)
}

/// Sets the entry `name`. `Err` (nothing written) when the value is over
/// `limits.state-value` bytes or the key would have more than `limits.state-entries`
/// entries; a handler that returns successfully after such an error has its record
/// dead-lettered as `state-limit`.
pub fn set(name: &str, value: &[u8]) -> Result<(), String> {
    imp::set(name, value)
}

/// Deletes the entry `name` (nothing happens if it is not set).
pub fn delete(name: &str) {
    imp::delete(name)
}

/// Whether the entry `name` is set.
pub fn exists(name: &str) -> bool {
    imp::exists(name)
}

/// The key's entries in name order: at most `max`, with names after `after` (from
/// the first when `None`). Page on with the last name returned.
pub fn entries(after: Option<&str>, max: u32) -> Vec<(String, Vec<u8>)> {
    imp::entries(after, max)
}
