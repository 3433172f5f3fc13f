//! The in-memory fake behind [`state`](crate::state), [`timers`](crate::timers) and
//! [`span`](crate::span) on native targets, so that a plugin's logic runs under
//! `cargo test`.
//!
//! The fake plays the host for one partition, per thread (`cargo test` runs each test
//! on its own thread, so tests do not share it). Entries and timers are kept per key;
//! [`set_key`] chooses the key that later calls are scoped to, as the host does for
//! the record being handled. The clock stands still at [`set_now`]'s value (0 at
//! first); [`take_due_timers`] is what the host does when the clock has moved.
//!
//! ```
//! use weir_plugin_sdk::{state, testing, timers};
//!
//! testing::reset();
//! testing::set_key(Some(b"user-1"));
//! state::set("count", b"1").unwrap();
//! timers::set("wake", 1_000, b"ping").unwrap();
//!
//! testing::set_now(1_000);
//! let fired = testing::take_due_timers();
//! assert_eq!(fired[0].name, "wake");
//! // Before handling a timer, scope the calls to its key, as the host does.
//! testing::set_key(fired[0].key.as_deref());
//! assert_eq!(state::get("count").as_deref(), Some(&b"1"[..]));
//! assert_eq!(timers::due("wake"), None); // a fired timer is gone
//! ```
//!
//! The fake's span records what the plugin adds to its call span: [`span_attributes`]
//! and [`span_events`] read it back. It starts recording (as a sampled call's span);
//! [`set_recording`]`(false)` makes it an unsampled one, which drops everything.
//! There is one span, not one per call: [`clear_span`] starts a new one, as the host
//! does for each call.
//!
//! ```
//! use weir_plugin_sdk::{span, testing};
//!
//! testing::reset();
//! span::set_attribute("todo.task_id", "t-1");
//! span::add_event("reminder.scheduled", &[("todo.task_id", "t-1")]);
//! assert_eq!(testing::span_attribute("todo.task_id").as_deref(), Some("t-1"));
//! assert_eq!(testing::span_events()[0].name, "reminder.scheduled");
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::FiredTimer;

/// The topic of every [`FiredTimer`] the fake hands out (that of `weir test`'s events).
pub const TOPIC: &str = "weir-test";
/// The partition of every [`FiredTimer`] the fake hands out.
pub const PARTITION: i32 = 0;

/// The slot's limits (`limits.state-value`, `limits.state-entries`,
/// `limits.timers`). The fake's default is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one entry value or timer payload.
    pub state_value: usize,
    /// Entries of one key.
    pub state_entries: usize,
    /// Pending timers of the partition (every key).
    pub timers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            state_value: usize::MAX,
            state_entries: usize::MAX,
            timers: usize::MAX,
        }
    }
}

type Key = Option<Vec<u8>>;

/// One event added to the span, as [`span::add_event`](crate::span::add_event) gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanEvent {
    /// The event's name.
    pub name: String,
    /// Its attributes, in the order given.
    pub attributes: Vec<(String, String)>,
}

impl SpanEvent {
    /// The value of the event's attribute `key`, if it has one.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The fake's call span.
struct Span {
    recording: bool,
    /// In the order first set; a key set again keeps its place.
    attributes: Vec<(String, String)>,
    events: Vec<SpanEvent>,
}

impl Default for Span {
    fn default() -> Span {
        Span {
            recording: true,
            attributes: Vec::new(),
            events: Vec::new(),
        }
    }
}

#[derive(Default)]
struct Fake {
    /// The key that calls are scoped to.
    key: Key,
    now_ms: i64,
    entries: BTreeMap<Key, BTreeMap<String, Vec<u8>>>,
    /// Pending timers: (key, name) -> (due, payload).
    timers: BTreeMap<(Key, String), (i64, Vec<u8>)>,
    limits: Limits,
    span: Span,
}

thread_local! {
    static FAKE: RefCell<Fake> = RefCell::new(Fake::default());
}

fn with<R>(f: impl FnOnce(&mut Fake) -> R) -> R {
    FAKE.with(|fake| f(&mut fake.borrow_mut()))
}

/// Forgets every entry and timer and the span's attributes and events, and sets the
/// key back to `None`, the clock to 0, the limits to none and the span to recording.
pub fn reset() {
    with(|fake| *fake = Fake::default());
}

/// Scopes later calls to `key` (`None`: records without a key).
pub fn set_key(key: Option<&[u8]>) {
    with(|fake| fake.key = key.map(<[u8]>::to_vec));
}

/// Sets the clock that [`timers::now_ms`](crate::timers::now_ms) reads and
/// [`take_due_timers`] compares with.
pub fn set_now(ms: i64) {
    with(|fake| fake.now_ms = ms);
}

/// Sets the limits that [`state::set`](crate::state::set) and
/// [`timers::set`](crate::timers::set) check.
pub fn set_limits(limits: Limits) {
    with(|fake| fake.limits = limits);
}

/// Removes and returns the timers of every key due at or before the clock, oldest
/// first (then by key and name). The current key is left as it was: call
/// [`set_key`] with a timer's key before handling it.
pub fn take_due_timers() -> Vec<FiredTimer> {
    with(|fake| {
        let now = fake.now_ms;
        let mut due: Vec<(i64, Key, String)> = fake
            .timers
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|((key, name), (at, _))| (*at, key.clone(), name.clone()))
            .collect();
        due.sort();
        due.into_iter()
            .filter_map(|(due_ms, key, name)| {
                let (_, payload) = fake.timers.remove(&(key.clone(), name.clone()))?;
                Some(FiredTimer {
                    name,
                    key,
                    due_ms,
                    payload,
                    topic: TOPIC.to_owned(),
                    partition: PARTITION,
                })
            })
            .collect()
    })
}

/// Whether [`span::recording`](crate::span::recording) says the span is sampled
/// (`true` at first). An unsampled span drops what is added to it, as the host's does.
pub fn set_recording(recording: bool) {
    with(|fake| fake.span.recording = recording);
}

/// Forgets the span's attributes and events (the recording setting stays): a fresh
/// span, as the host opens one for each call.
pub fn clear_span() {
    with(|fake| {
        fake.span.attributes.clear();
        fake.span.events.clear();
    });
}

/// The span's attributes, in the order first set (a key set again keeps its place
/// and has its last value).
pub fn span_attributes() -> Vec<(String, String)> {
    with(|fake| fake.span.attributes.clone())
}

/// The value of the span's attribute `key`, if it was set.
pub fn span_attribute(key: &str) -> Option<String> {
    with(|fake| {
        fake.span
            .attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    })
}

/// The events added to the span, in order.
pub fn span_events() -> Vec<SpanEvent> {
    with(|fake| fake.span.events.clone())
}

fn check_value(what: &str, len: usize, limits: &Limits) -> Result<(), String> {
    if len > limits.state_value {
        return Err(format!(
            "{what} of {len} bytes is over limits.state-value ({})",
            limits.state_value
        ));
    }
    Ok(())
}

/// `state`, on the fake; reached through [`crate::state`].
pub(crate) mod fake_state {
    use super::{check_value, with};

    pub fn get(name: &str) -> Option<Vec<u8>> {
        with(|fake| fake.entries.get(&fake.key)?.get(name).cloned())
    }

    pub fn set(name: &str, value: &[u8]) -> Result<(), String> {
        with(|fake| {
            check_value("a state value", value.len(), &fake.limits)?;
            let max = fake.limits.state_entries;
            let entries = fake.entries.entry(fake.key.clone()).or_default();
            if !entries.contains_key(name) && entries.len() >= max {
                return Err(format!(
                    "the key has {max} entries already (limits.state-entries)"
                ));
            }
            entries.insert(name.to_owned(), value.to_vec());
            Ok(())
        })
    }

    pub fn delete(name: &str) {
        with(|fake| {
            let key = fake.key.clone();
            if let Some(entries) = fake.entries.get_mut(&key) {
                entries.remove(name);
                if entries.is_empty() {
                    fake.entries.remove(&key);
                }
            }
        });
    }

    pub fn exists(name: &str) -> bool {
        with(|fake| {
            fake.entries
                .get(&fake.key)
                .is_some_and(|e| e.contains_key(name))
        })
    }

    pub fn entries(after: Option<&str>, max: u32) -> Vec<(String, Vec<u8>)> {
        with(|fake| {
            let Some(entries) = fake.entries.get(&fake.key) else {
                return Vec::new();
            };
            entries
                .iter()
                .filter(|(name, _)| after.is_none_or(|after| name.as_str() > after))
                .take(usize::try_from(max).unwrap_or(usize::MAX))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect()
        })
    }
}

/// `timers`, on the fake; reached through [`crate::timers`].
pub(crate) mod fake_timers {
    use super::{check_value, with};

    pub fn set(name: &str, at_ms: i64, payload: &[u8]) -> Result<(), String> {
        with(|fake| {
            check_value("a timer payload", payload.len(), &fake.limits)?;
            let id = (fake.key.clone(), name.to_owned());
            let max = fake.limits.timers;
            if !fake.timers.contains_key(&id) && fake.timers.len() >= max {
                return Err(format!(
                    "the partition has {max} pending timers already (limits.timers)"
                ));
            }
            fake.timers.insert(id, (at_ms, payload.to_vec()));
            Ok(())
        })
    }

    pub fn cancel(name: &str) {
        with(|fake| {
            let id = (fake.key.clone(), name.to_owned());
            fake.timers.remove(&id);
        });
    }

    pub fn due(name: &str) -> Option<i64> {
        with(|fake| {
            let id = (fake.key.clone(), name.to_owned());
            fake.timers.get(&id).map(|(at, _)| *at)
        })
    }

    pub fn now_ms() -> i64 {
        with(|fake| fake.now_ms)
    }
}

/// `span`, on the fake; reached through [`crate::span`].
pub(crate) mod fake_span {
    use super::{SpanEvent, with};

    pub fn recording() -> bool {
        with(|fake| fake.span.recording)
    }

    pub fn set_attribute(key: &str, value: &str) {
        with(|fake| {
            let span = &mut fake.span;
            if !span.recording {
                return;
            }
            match span.attributes.iter_mut().find(|(k, _)| k == key) {
                Some((_, old)) => value.clone_into(old),
                None => span.attributes.push((key.to_owned(), value.to_owned())),
            }
        });
    }

    pub fn add_event(name: &str, attributes: &[(&str, &str)]) {
        with(|fake| {
            if !fake.span.recording {
                return;
            }
            fake.span.events.push(SpanEvent {
                name: name.to_owned(),
                attributes: attributes
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{span, state, timers};

    #[test]
    fn entries_are_scoped_to_the_key() {
        reset();
        set_key(Some(b"a"));
        state::set("x", b"1").unwrap();
        assert!(state::exists("x"));
        set_key(Some(b"b"));
        assert_eq!(state::get("x"), None);
        assert!(!state::exists("x"));
        set_key(None);
        state::set("x", b"none").unwrap();
        set_key(Some(b"a"));
        assert_eq!(state::get("x").as_deref(), Some(&b"1"[..]));
        state::delete("x");
        state::delete("x");
        assert_eq!(state::get("x"), None);
        set_key(None);
        assert_eq!(state::get("x").as_deref(), Some(&b"none"[..]));
    }

    #[test]
    fn entries_page_in_name_order() {
        reset();
        for name in ["c", "a", "b", "d"] {
            state::set(name, name.as_bytes()).unwrap();
        }
        let names = |after, max| -> Vec<String> {
            state::entries(after, max)
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(names(None, 2), ["a", "b"]);
        assert_eq!(names(Some("b"), 10), ["c", "d"]);
        assert_eq!(names(Some("bb"), 1), ["c"]);
        assert!(names(Some("d"), 10).is_empty());
        assert!(names(None, 0).is_empty());
        assert_eq!(state::entries(None, 1), [("a".to_owned(), b"a".to_vec())]);
    }

    #[test]
    fn timers_fire_once_in_due_order() {
        reset();
        set_key(Some(b"k1"));
        timers::set("late", 300, b"l").unwrap();
        timers::set("early", 100, b"e").unwrap();
        set_key(Some(b"k2"));
        timers::set("early", 100, b"e2").unwrap();
        timers::set("gone", 50, b"").unwrap();
        timers::cancel("gone");
        timers::cancel("never-set");
        // Replacing moves the due time and the payload.
        timers::set("mid", 500, b"old").unwrap();
        timers::set("mid", 200, b"m").unwrap();
        assert_eq!(timers::due("mid"), Some(200));
        assert_eq!(timers::due("late"), None, "k1's timer is not k2's");

        assert!(take_due_timers().is_empty(), "nothing due at 0");
        set_now(250);
        assert_eq!(timers::now_ms(), 250);
        let fired: Vec<_> = take_due_timers()
            .into_iter()
            .map(|t| (t.name, t.key, t.due_ms, t.payload))
            .collect();
        assert_eq!(
            fired,
            [
                ("early".into(), Some(b"k1".to_vec()), 100, b"e".to_vec()),
                ("early".into(), Some(b"k2".to_vec()), 100, b"e2".to_vec()),
                ("mid".into(), Some(b"k2".to_vec()), 200, b"m".to_vec()),
            ]
        );
        assert!(take_due_timers().is_empty(), "a timer fires once");
        assert_eq!(timers::due("mid"), None);
        set_now(1_000);
        let last = take_due_timers();
        assert_eq!(last.len(), 1);
        assert_eq!((last[0].topic.as_str(), last[0].partition), (TOPIC, 0));
    }

    #[test]
    fn limits_refuse_writes_and_write_nothing() {
        reset();
        set_limits(Limits {
            state_value: 4,
            state_entries: 2,
            timers: 1,
        });
        assert!(
            state::set("big", b"12345")
                .unwrap_err()
                .contains("state-value")
        );
        assert!(!state::exists("big"));
        state::set("a", b"1").unwrap();
        state::set("b", b"2").unwrap();
        assert!(state::set("c", b"3").unwrap_err().contains("state-entries"));
        state::set("a", b"11").unwrap(); // replacing is not a new entry
        set_key(Some(b"other"));
        state::set("c", b"3").unwrap(); // the entry limit is per key

        timers::set("t", 1, b"").unwrap();
        timers::set("t", 2, b"").unwrap(); // replacing is not a new timer
        set_key(None);
        assert!(
            timers::set("u", 1, b"")
                .unwrap_err()
                .contains("limits.timers")
        );
        assert!(
            timers::set("u", 1, b"12345")
                .unwrap_err()
                .contains("state-value")
        );
        assert_eq!(timers::due("u"), None);

        reset();
        state::set("big", &[0; 100]).unwrap();
    }

    #[test]
    fn the_span_records_until_cleared_and_drops_when_not_sampled() {
        reset();
        assert!(span::recording());
        span::set_attribute("a", "1");
        span::set_attribute("b", "2");
        span::set_attribute("a", "3"); // replaces, in place
        span::add_event("e", &[("k", "v"), ("k2", "v2")]);
        span::add_event("e", &[]);
        assert_eq!(
            span_attributes(),
            [("a".to_owned(), "3".to_owned()), ("b".into(), "2".into())]
        );
        assert_eq!(span_attribute("b").as_deref(), Some("2"));
        assert_eq!(span_attribute("c"), None);
        let events = span_events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].name, "e");
        assert_eq!(events[0].attribute("k2"), Some("v2"));
        assert!(events[1].attributes.is_empty());

        clear_span();
        assert!(span_attributes().is_empty() && span_events().is_empty());
        set_recording(false);
        assert!(!span::recording());
        span::set_attribute("a", "1");
        span::add_event("e", &[]);
        assert!(span_attributes().is_empty() && span_events().is_empty());

        reset();
        assert!(span::recording(), "reset records again");
    }
}
