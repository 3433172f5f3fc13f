//! One stateful plugin slot on one partition: its entries and timers ([`Table`]),
//! the changes of the record being handled, and the scope (key) the plugin's
//! `state` and `timers` calls see.
//!
//! Reads see the record's own changes first (read-your-writes), then the table.
//! The changes reach the table only when the record is done and kept
//! ([`SlotState::finish`]); a record that is retried or dead-lettered leaves the
//! table as it was.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::clock::Clock;
use crate::config::Limits;

/// The key a state entry or timer belongs to: the source record's key (`None`: a
/// record without a key).
pub type ScopeKey = Option<Vec<u8>>;

/// A slot shared by the chain stage that owns it and the instance's host calls.
#[derive(Clone)]
pub struct SlotHandle(Arc<Mutex<SlotState>>);

impl SlotHandle {
    pub fn new(state: SlotState) -> SlotHandle {
        SlotHandle(Arc::new(Mutex::new(state)))
    }

    pub fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One change a record made to a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An entry set (`Some`) or deleted (`None`).
    Entry {
        key: ScopeKey,
        name: String,
        value: Option<Vec<u8>>,
    },
    /// A timer set (`Some((due_ms, payload))`) or removed (`None`); `link`: the
    /// span that set it, when that was traced and sampled.
    Timer {
        key: ScopeKey,
        name: String,
        due: Option<(i64, Vec<u8>)>,
        link: Option<SpanLink>,
    },
}

/// The trace context of the span that set a timer: trace id (16 bytes), span id
/// (8) and trace flags (1), so that the fired timer's span can link to it.
pub type SpanLink = [u8; 25];

/// A pending timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub key: ScopeKey,
    pub name: String,
    pub due_ms: i64,
    pub payload: Vec<u8>,
    pub link: Option<SpanLink>,
}

/// A slot's committed entries and pending timers on one partition, in memory.
///
/// Timers are kept compact (a million pending timers is an expected load): one
/// shared allocation names a timer (its key and name, [`timer_id`]), and the due
/// order holds the payload.
#[derive(Default)]
pub struct Table {
    /// Per key, its entries sorted by name (a key has few: a small vector costs
    /// far less than a map per key).
    entries: HashMap<ScopeKey, Vec<(String, Vec<u8>)>>,
    /// Due order: `(due, id) -> payload`.
    due: BTreeMap<DueId, Box<[u8]>>,
    /// `id -> due`.
    timers: HashMap<Arc<[u8]>, i64>,
    /// `id -> link`, for the timers set by a sampled span (tracing on).
    links: HashMap<Arc<[u8]>, SpanLink>,
    entry_count: usize,
    bytes: usize,
}

/// A timer's place in the due order: its due time and [`timer_id`].
type DueId = (i64, Arc<[u8]>);

/// A timer's key and name in one allocation: `has-key || key length (u32 LE) ||
/// key || name`.
fn timer_id(key: &ScopeKey, name: &str) -> Arc<[u8]> {
    let k = key.as_deref().unwrap_or_default();
    let mut id = Vec::with_capacity(5 + k.len() + name.len());
    id.push(u8::from(key.is_some()));
    id.extend_from_slice(&(k.len() as u32).to_le_bytes());
    id.extend_from_slice(k);
    id.extend_from_slice(name.as_bytes());
    id.into()
}

/// The key and name a [`timer_id`] holds.
fn split_id(id: &[u8]) -> (ScopeKey, String) {
    let has_key = id.first().copied() == Some(1);
    let len = id
        .get(1..5)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes) as usize;
    let k = id.get(5..5 + len).unwrap_or_default();
    let name = id.get(5 + len..).unwrap_or_default();
    (
        has_key.then(|| k.to_vec()),
        String::from_utf8_lossy(name).into_owned(),
    )
}

impl Table {
    /// Applies one change (from a record that is done, or from the changelog).
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Entry { key, name, value } => {
                let entries = self.entries.entry(key.clone()).or_default();
                let at = entries.binary_search_by(|(n, _)| n.as_str().cmp(name));
                let old = match (value, at) {
                    (Some(value), Ok(i)) => {
                        Some(std::mem::replace(&mut entries[i].1, value.clone()))
                    }
                    (Some(value), Err(i)) => {
                        entries.insert(i, (name.clone(), value.clone()));
                        None
                    }
                    (None, Ok(i)) => Some(entries.remove(i).1),
                    (None, Err(_)) => None,
                };
                if let Some(old) = &old {
                    self.bytes -= old.len() + name.len();
                    self.entry_count -= 1;
                }
                if let Some(value) = value {
                    self.bytes += value.len() + name.len();
                    self.entry_count += 1;
                }
                if entries.is_empty() {
                    self.entries.remove(key);
                }
            }
            Change::Timer {
                key,
                name,
                due,
                link,
            } => {
                let id = timer_id(key, name);
                if let Some((id, old_due)) = self.timers.remove_entry(&id) {
                    self.due.remove(&(old_due, id));
                }
                if !self.links.is_empty() {
                    self.links.remove(&id);
                }
                if let Some((due_ms, payload)) = due {
                    self.due
                        .insert((*due_ms, id.clone()), payload.clone().into_boxed_slice());
                    if let Some(link) = link {
                        self.links.insert(id.clone(), *link);
                    }
                    self.timers.insert(id, *due_ms);
                }
            }
        }
    }

    pub fn get(&self, key: &ScopeKey, name: &str) -> Option<&Vec<u8>> {
        let entries = self.entries.get(key)?;
        let i = entries
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()?;
        entries.get(i).map(|(_, v)| v)
    }

    /// Every entry of `key`, by name.
    pub fn entries_of(&self, key: &ScopeKey) -> &[(String, Vec<u8>)] {
        self.entries.get(key).map_or(&[], Vec::as_slice)
    }

    /// When the timer `name` of `key` is due, if it is pending.
    pub fn timer(&self, key: &ScopeKey, name: &str) -> Option<i64> {
        self.timers.get(&timer_id(key, name)).copied()
    }

    /// The earliest pending timer.
    pub fn first_timer(&self) -> Option<Timer> {
        let ((due_ms, id), payload) = self.due.first_key_value()?;
        let (key, name) = split_id(id);
        Some(Timer {
            key,
            name,
            due_ms: *due_ms,
            payload: payload.to_vec(),
            link: self.links.get(id).copied(),
        })
    }

    /// Entries held, over every key.
    pub fn entry_count(&self) -> usize {
        self.entry_count
    }

    /// Bytes of entry names and values held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }
}

/// A stateful slot on one partition.
pub struct SlotState {
    /// The slot's id in its pipeline (`0`, `reminders.0`): errors name it.
    pub slot: Arc<str>,
    table: Table,
    limits: Limits,
    clock: Clock,
    /// The key the plugin's calls are scoped to.
    scope: ScopeKey,
    /// Changes made by the record being handled, in order.
    pending: Vec<Change>,
    /// The latest of `pending` for each (timer?, key, name): lookups stay O(1).
    latest: HashMap<(bool, ScopeKey, String), usize>,
    /// Timers `pending` adds to the table, net.
    added_timers: isize,
    /// The timer being fired: it is removed whatever becomes of the call.
    firing: Option<(ScopeKey, String)>,
    /// The first limit a write ran into during the record, if any.
    limit_hit: Option<String>,
}

impl SlotState {
    pub fn new(slot: Arc<str>, limits: Limits, clock: Clock) -> SlotState {
        SlotState {
            slot,
            table: Table::default(),
            limits,
            clock,
            scope: None,
            pending: Vec::new(),
            latest: HashMap::new(),
            added_timers: 0,
            firing: None,
            limit_hit: None,
        }
    }

    /// New limits (a reload changed them); what is stored already stays.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn table_mut(&mut self) -> &mut Table {
        &mut self.table
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Scopes the next calls to `key` (the source record's key).
    pub fn enter(&mut self, key: &ScopeKey) {
        if &self.scope != key {
            self.scope = key.clone();
        }
    }

    /// Starts firing `timer`: calls are scoped to its key, and it is removed when
    /// the firing finishes, whatever becomes of it.
    pub fn fire(&mut self, timer: &Timer) {
        self.scope = timer.key.clone();
        self.firing = Some((timer.key.clone(), timer.name.clone()));
    }

    /// Forgets the changes of an attempt that failed (it is run again, or the
    /// record is dead-lettered).
    pub fn discard(&mut self) {
        self.pending.clear();
        self.latest.clear();
        self.added_timers = 0;
        self.limit_hit = None;
    }

    /// Records a change of the current record.
    fn push(&mut self, change: Change) {
        let id = match &change {
            Change::Entry { key, name, .. } => (false, key.clone(), name.clone()),
            Change::Timer { key, name, .. } => (true, key.clone(), name.clone()),
        };
        self.latest.insert(id, self.pending.len());
        self.pending.push(change);
    }

    /// This record's latest change of the current key's entry or timer `name`.
    fn pending_change(&self, timer: bool, name: &str) -> Option<&Change> {
        let index = self
            .latest
            .get(&(timer, self.scope.clone(), name.to_owned()))?;
        self.pending.get(*index)
    }

    /// The limit a write of this attempt ran into, if any.
    pub fn limit_hit(&self) -> Option<&str> {
        self.limit_hit.as_deref()
    }

    /// Ends the record: its changes (if `keep`) and the removal of a fired timer
    /// go into the table, and are returned for the changelog.
    pub fn finish(&mut self, keep: bool) -> Vec<Change> {
        let mut changes = Vec::new();
        if let Some((key, name)) = self.firing.take() {
            changes.push(Change::Timer {
                key,
                name,
                due: None,
                link: None,
            });
        }
        if keep {
            changes.append(&mut self.pending);
        }
        self.latest.clear();
        self.added_timers = 0;
        self.discard();
        for change in &changes {
            self.table.apply(change);
        }
        changes
    }

    // The plugin's calls, scoped to the current key.

    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        if let Some(Change::Entry { value, .. }) = self.pending_change(false, name) {
            return value.clone();
        }
        self.table.get(&self.scope, name).cloned()
    }

    pub fn exists(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The current key's entries with this record's changes applied.
    fn view(&self) -> BTreeMap<String, Vec<u8>> {
        let mut view: BTreeMap<String, Vec<u8>> =
            self.table.entries_of(&self.scope).iter().cloned().collect();
        for change in &self.pending {
            if let Change::Entry { key, name, value } = change
                && key == &self.scope
            {
                match value {
                    Some(v) => view.insert(name.clone(), v.clone()),
                    None => view.remove(name),
                };
            }
        }
        view
    }

    pub fn entries(&self, after: Option<&str>, max: u32) -> Vec<(String, Vec<u8>)> {
        let view = self.view();
        match after {
            Some(after) => view
                .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                .map(|(k, v)| (k.clone(), v.clone()))
                .take(max as usize)
                .collect(),
            None => view.into_iter().take(max as usize).collect(),
        }
    }

    /// Refuses a write past a limit, remembering the first one.
    fn refuse(&mut self, message: String) -> Result<(), String> {
        self.limit_hit.get_or_insert_with(|| message.clone());
        Err(message)
    }

    pub fn set(&mut self, name: String, value: Vec<u8>) -> Result<(), String> {
        if value.len() > self.limits.state_value {
            return self.refuse(format!(
                "state entry {name:?} of slot {} is {} bytes, over limits.state-value ({} bytes)",
                self.slot,
                value.len(),
                self.limits.state_value
            ));
        }
        if !self.exists(&name) && self.view().len() >= self.limits.state_entries {
            return self.refuse(format!(
                "a key of slot {} may hold at most {} state entries (limits.state-entries); {name:?} would be one more",
                self.slot, self.limits.state_entries
            ));
        }
        self.push(Change::Entry {
            key: self.scope.clone(),
            name,
            value: Some(value),
        });
        Ok(())
    }

    pub fn delete(&mut self, name: String) {
        if self.exists(&name) {
            self.push(Change::Entry {
                key: self.scope.clone(),
                name,
                value: None,
            });
        }
    }

    /// When the current key's timer `name` is due, with this record's changes.
    pub fn due(&self, name: &str) -> Option<i64> {
        if let Some(Change::Timer { due, .. }) = self.pending_change(true, name) {
            return due.as_ref().map(|(at, _)| *at);
        }
        if self
            .firing
            .as_ref()
            .is_some_and(|(k, n)| k == &self.scope && n == name)
        {
            return None;
        }
        self.table.timer(&self.scope, name)
    }

    /// Sets the current key's timer `name`; `link` names the span that sets it.
    pub fn set_timer(
        &mut self,
        name: String,
        at_ms: i64,
        payload: Vec<u8>,
        link: Option<SpanLink>,
    ) -> Result<(), String> {
        if payload.len() > self.limits.state_value {
            return self.refuse(format!(
                "the payload of timer {name:?} of slot {} is {} bytes, over limits.state-value ({} bytes)",
                self.slot,
                payload.len(),
                self.limits.state_value
            ));
        }
        let now = self.clock.now_ms();
        let at_ms = match &self.firing {
            // Set again for now by its own handler: the next millisecond, so that a
            // timer that keeps re-arming itself cannot hold the partition.
            Some((key, n)) if key == &self.scope && n == &name && at_ms <= now => now + 1,
            _ => at_ms,
        };
        let new = self.due(&name).is_none();
        if new && self.timers_pending() >= self.limits.timers {
            return self.refuse(format!(
                "slot {} may have at most {} timers pending per partition (limits.timers)",
                self.slot, self.limits.timers
            ));
        }
        if new {
            self.added_timers += 1;
        }
        self.push(Change::Timer {
            key: self.scope.clone(),
            name,
            due: Some((at_ms, payload)),
            link,
        });
        Ok(())
    }

    pub fn cancel_timer(&mut self, name: String) {
        if self.due(&name).is_some() {
            self.added_timers -= 1;
            self.push(Change::Timer {
                key: self.scope.clone(),
                name,
                due: None,
                link: None,
            });
        }
    }

    /// Timers pending on the partition, with this record's changes.
    fn timers_pending(&self) -> usize {
        (self.table.timer_count() as isize + self.added_timers).max(0) as usize
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> SlotState {
        let limits = Limits {
            state_value: 8,
            state_entries: 2,
            timers: 2,
            ..Limits::default()
        };
        SlotState::new("0".into(), limits, Clock::fixed(1_000))
    }

    #[test]
    fn reads_see_the_records_own_writes_and_a_dropped_record_leaves_nothing() {
        let mut s = slot();
        s.enter(&Some(b"k".to_vec()));
        s.set("a".into(), b"1".to_vec()).unwrap();
        assert_eq!(s.get("a"), Some(b"1".to_vec()));
        assert!(s.finish(false).is_empty());
        assert_eq!(s.get("a"), None);
        s.set("a".into(), b"2".to_vec()).unwrap();
        let changes = s.finish(true);
        assert_eq!(changes.len(), 1);
        assert_eq!(s.get("a"), Some(b"2".to_vec()));
        // Another key sees nothing.
        s.enter(&None);
        assert_eq!(s.get("a"), None);
    }

    #[test]
    fn entries_page_by_name_with_pending_changes() {
        let mut s = slot();
        s.set("b".into(), b"2".to_vec()).unwrap();
        s.finish(true);
        s.set("a".into(), b"1".to_vec()).unwrap();
        assert_eq!(s.entries(None, 10).len(), 2);
        assert_eq!(s.entries(Some("a"), 10), vec![("b".into(), b"2".to_vec())]);
        s.delete("b".into());
        assert_eq!(s.entries(None, 10), vec![("a".into(), b"1".to_vec())]);
    }

    #[test]
    fn a_keys_entries_stay_sorted_and_counted() {
        let mut t = Table::default();
        let key = Some(b"k".to_vec());
        for (name, value) in [("c", "3"), ("a", "1"), ("b", "2"), ("a", "11")] {
            t.apply(&Change::Entry {
                key: key.clone(),
                name: name.into(),
                value: Some(value.as_bytes().to_vec()),
            });
        }
        let names: Vec<&str> = t.entries_of(&key).iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(t.get(&key, "a"), Some(&b"11".to_vec()));
        assert_eq!((t.entry_count(), t.bytes()), (3, 3 + 4));
        t.apply(&Change::Entry {
            key: key.clone(),
            name: "b".into(),
            value: None,
        });
        assert_eq!(t.get(&key, "b"), None);
        assert_eq!((t.entry_count(), t.bytes()), (2, 2 + 3));
        assert!(t.entries_of(&None).is_empty());
    }

    #[test]
    fn writes_past_a_limit_are_refused_and_remembered() {
        let mut s = slot();
        assert!(
            s.set("big".into(), vec![0; 9])
                .unwrap_err()
                .contains("limits.state-value")
        );
        assert!(s.limit_hit().is_some());
        s.discard();
        s.set("a".into(), vec![]).unwrap();
        s.set("b".into(), vec![]).unwrap();
        assert!(
            s.set("c".into(), vec![])
                .unwrap_err()
                .contains("limits.state-entries")
        );
        // Replacing an entry is not one more.
        s.set("a".into(), vec![1]).unwrap();
        s.discard();
        s.set_timer("t1".into(), 5, vec![], None).unwrap();
        s.set_timer("t2".into(), 5, vec![], None).unwrap();
        assert!(
            s.set_timer("t3".into(), 5, vec![], None)
                .unwrap_err()
                .contains("limits.timers")
        );
    }

    #[test]
    fn timers_fire_in_due_order_and_a_fired_timer_goes_even_when_its_record_is_dropped() {
        let mut s = slot();
        s.enter(&Some(b"x".to_vec()));
        s.set_timer("late".into(), 20, b"L".to_vec(), None).unwrap();
        s.set_timer("early".into(), 10, b"E".to_vec(), None)
            .unwrap();
        s.finish(true);
        let first = s.table().first_timer().unwrap();
        assert_eq!((first.name.as_str(), first.due_ms), ("early", 10));
        s.fire(&first);
        assert_eq!(s.due("early"), None);
        s.set("seen".into(), vec![]).unwrap();
        let changes = s.finish(false);
        assert_eq!(changes.len(), 1, "only the removal: {changes:?}");
        assert_eq!(s.table().first_timer().unwrap().name, "late");
        assert_eq!(s.get("seen"), None);
    }

    #[test]
    fn a_timer_that_re_arms_itself_for_now_waits_a_millisecond() {
        let mut s = slot();
        s.set_timer("t".into(), 5, vec![], None).unwrap();
        s.finish(true);
        let t = s.table().first_timer().unwrap();
        s.fire(&t);
        // The clock stands at 1000.
        s.set_timer("t".into(), 0, vec![], None).unwrap();
        s.finish(true);
        assert_eq!(s.table().first_timer().unwrap().due_ms, 1001);
        // Another timer may be due at once.
        s.set_timer("u".into(), 0, vec![], None).unwrap();
        s.finish(true);
        assert_eq!(s.table().first_timer().unwrap().due_ms, 0);
    }

    #[test]
    fn a_timer_set_again_while_it_fires_stays() {
        let mut s = slot();
        s.set_timer("t".into(), 10, vec![], None).unwrap();
        s.finish(true);
        let t = s.table().first_timer().unwrap();
        s.fire(&t);
        s.set_timer("t".into(), 3000, vec![], None).unwrap();
        s.finish(true);
        assert_eq!(s.table().first_timer().unwrap().due_ms, 3000);
        assert_eq!(s.table().timer_count(), 1);
    }
}
