//! Keyed state and timers of stateful plugins (the WIT's `state` and `timers`).
//!
//! A stateful plugin slot (a plugin of the `stateful-plugin` world, at one place in
//! its pipeline) has, on each partition the instance holds, a [`SlotState`]: its
//! entries and pending timers in memory, and the changes of the record being
//! handled. Kafka holds the durable copy, the slot's compacted [`changelog`]
//! topic: a record's changes are produced with its outputs, and a partition that is
//! assigned restores its slots from the changelog before its first record.
//!
//! - `slot`: the table, the record's changes, scope and limits;
//! - `changelog`: the topic's name, record format and restore;
//! - `clock`: the wall clock, or `weir test`'s virtual one;
//! - `store`: the local store (redb) that makes a restart read only the
//!   changelog's tail.

pub mod changelog;
pub mod clock;
pub mod slot;
pub mod store;

pub use clock::Clock;
pub use slot::{Change, ScopeKey, SlotHandle, SlotState, Table, Timer};
