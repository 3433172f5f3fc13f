//! Processing-time timers (WIT `interface timers`), scoped like [`state`](crate::state).
//! A timer fires once, at or after its due time, as a call of
//! [`StatefulGuest::handle_timer`](crate::StatefulGuest::handle_timer) with the
//! timer's key in scope. Natively, the calls go to the fake of `testing`.

#[cfg(target_arch = "wasm32")]
use crate::stateful_bindings::weir::plugin::timers as imp;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake_timers as imp;

/// Creates the key's timer `name`, or replaces it (new due time and payload), due at
/// `at_ms` milliseconds since the Unix epoch (a time already past fires as soon as
/// possible). `Err` (nothing set) when the payload is over `limits.state-value` bytes
/// or the partition would have more than `limits.timers` pending timers; then as for
/// [`state::set`](crate::state::set).
pub fn set(name: &str, at_ms: i64, payload: &[u8]) -> Result<(), String> {
    imp::set(name, at_ms, payload)
}

/// Cancels the key's timer `name` (nothing happens if there is none).
pub fn cancel(name: &str) {
    imp::cancel(name)
}

/// When the key's timer `name` is due, if it is pending.
pub fn due(name: &str) -> Option<i64> {
    imp::due(name)
}

/// The host's clock, milliseconds since the Unix epoch: the clock timers follow.
pub fn now_ms() -> i64 {
    imp::now_ms()
}
