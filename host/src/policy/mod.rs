//! Failure policy: what to do with a failed call (retry, or dead-letter and why),
//! how long to back off, what a DLQ record carries, when to open the circuit.
//!
//! Pure functions and small state machines, unit tested without Kafka or wasm. The
//! runner asks; this module never performs I/O.

pub mod circuit;
pub mod dlq;
pub mod retry;

pub use circuit::{Admission, Change, CircuitBreaker, CircuitWindow, Outcome, Permit};
pub use dlq::DeadLetter;
pub use retry::{Decision, backoff, decide};
