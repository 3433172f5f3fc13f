//! Keyed state on the record path: which slots of a pipeline are stateful
//! ([`StatefulSlots`], fixed when the pipeline starts) and, for one partition
//! runner, their state ([`PartitionState`]): restored from the changelogs before
//! the first record, scoped and changed by the plugins' calls, and turned into
//! changelog records when a record (or a fired timer) is done.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::ClientConfig;

use super::process::Verdict;
use crate::config::PipelineConfig;
use crate::kafka::producer::OwnedRecord;
use crate::plugin::{Header, Plugin};
use crate::state::changelog::{self, RestoreError, Restored};
use crate::state::store::{self, LocalStore, StoreError};
use crate::state::{Clock, SlotHandle, SlotState, Timer};
use crate::telemetry::Health;
use crate::telemetry::metrics::{Metrics, SlotMetrics};

/// How often a partition's local stores catch up with their changelogs.
pub const CATCH_UP_EVERY: Duration = Duration::from_secs(60);

/// Where a plugin sits in its pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The shared chain every record runs through first.
    Prefix,
    /// Branch `b`'s own chain.
    Branch(usize),
}

/// One stateful slot of a pipeline.
#[derive(Debug)]
pub struct SlotSpec {
    pub place: Place,
    /// Its index in its chain.
    pub stage: usize,
    /// `<i>` or `<branch>.<i>`.
    pub id: Arc<str>,
    /// Its changelog topic.
    pub topic: Arc<str>,
    pub limits: crate::config::Limits,
    pub metrics: Option<SlotMetrics>,
}

impl std::fmt::Debug for SlotMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlotMetrics")
    }
}

/// The stateful slots of a pipeline.
pub struct StatefulSlots {
    pub slots: Vec<Arc<SlotSpec>>,
    /// The client settings restores read the changelogs with.
    client: ClientConfig,
    clock: Clock,
    pipeline: Arc<str>,
    /// `<state.dir>/<group>/<pipeline>`: the slots' local stores are in
    /// `<slot>/<partition>.redb` under it (`None`: no local stores).
    store_dir: Option<PathBuf>,
    group: String,
    /// Readiness names the partitions that are restoring.
    health: Option<Arc<Health>>,
}

impl StatefulSlots {
    /// The slots of `config` whose loaded plugin (`plugins`, in
    /// [`PipelineConfig::all_plugins`] order) is stateful.
    pub fn of<P: Plugin>(
        config: &PipelineConfig,
        plugins: &[Arc<P>],
        client: ClientConfig,
        limits: crate::config::Limits,
        metrics: Option<&Metrics>,
        health: Option<Arc<Health>>,
    ) -> StatefulSlots {
        let mut places = Vec::new();
        for stage in 0..config.prefix().len() {
            places.push((Place::Prefix, None, stage));
        }
        for (b, branch) in config.branches().iter().enumerate() {
            for stage in 0..branch.plugins.len() {
                places.push((Place::Branch(b), Some(branch.name), stage));
            }
        }
        let group = config.group();
        let slots = places
            .into_iter()
            .zip(plugins)
            .filter(|(_, plugin)| plugin.stateful())
            .map(|((place, branch, stage), _)| {
                let id = changelog::slot_id(branch, stage);
                Arc::new(SlotSpec {
                    place,
                    stage,
                    topic: changelog::topic(&group, config.name(), &id).into(),
                    metrics: metrics.map(|m| m.slot(config.name(), &id)),
                    id: id.into(),
                    limits,
                })
            })
            .collect();
        StatefulSlots {
            slots,
            client,
            clock: Clock::wall(),
            pipeline: config.name().into(),
            health,
            store_dir: None,
            group,
        }
    }

    /// The slots with local stores under `state_dir` (`[state] dir`), if given.
    pub fn with_stores(mut self, state_dir: Option<PathBuf>) -> StatefulSlots {
        self.store_dir = state_dir.map(|d| d.join(&self.group).join(&*self.pipeline));
        self
    }

    /// A pipeline without stateful plugins.
    pub fn none() -> StatefulSlots {
        StatefulSlots {
            slots: Vec::new(),
            client: ClientConfig::new(),
            clock: Clock::wall(),
            pipeline: "".into(),
            health: None,
            store_dir: None,
            group: String::new(),
        }
    }

    /// The local store of slot `slot` on `partition`, if local stores are on.
    fn store_path(&self, slot: &SlotSpec, partition: i32) -> Option<PathBuf> {
        let dir = self.store_dir.as_ref()?;
        Some(dir.join(&*slot.id).join(format!("{partition}.redb")))
    }

    /// Readiness names `partition` while it restores.
    pub fn restoring(&self, partition: i32, restoring: bool) {
        if let Some(health) = &self.health {
            health.restoring(&self.pipeline, partition, restoring);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// The stateful slots of one partition, for its runner.
pub struct PartitionState {
    partition: i32,
    slots: Vec<(Arc<SlotSpec>, SlotHandle)>,
    /// Per slot: its local store, if on and usable. It follows the changelog, never
    /// this working copy ([`PartitionState::catch_up`]).
    stores: Mutex<Vec<Option<LocalStore>>>,
    /// One catch-up at a time.
    catching_up: Mutex<()>,
    /// The client settings catch-ups read the changelogs with.
    client: ClientConfig,
    /// What each slot's gauges count for this partition: entries, bytes, timers.
    held: Mutex<Vec<[i64; 3]>>,
}

impl PartitionState {
    /// Empty slots for `partition` (restore them before the first record).
    pub fn new(spec: &StatefulSlots, partition: i32) -> PartitionState {
        PartitionState {
            partition,
            slots: spec
                .slots
                .iter()
                .map(|s| {
                    let state = SlotState::new(s.id.clone(), s.limits, spec.clock.clone());
                    (s.clone(), SlotHandle::new(state))
                })
                .collect(),
            held: Mutex::new(vec![[0; 3]; spec.slots.len()]),
            stores: Mutex::new((0..spec.slots.len()).map(|_| None).collect()),
            catching_up: Mutex::new(()),
            client: spec.client.clone(),
        }
    }

    /// Brings the slots' gauges up to date with what this partition holds.
    fn publish(&self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        for ((spec, handle), held) in self.slots.iter().zip(held.iter_mut()) {
            let Some(metrics) = &spec.metrics else {
                continue;
            };
            let now = {
                let state = handle.lock();
                let table = state.table();
                [
                    table.entry_count() as i64,
                    table.bytes() as i64,
                    table.timer_count() as i64,
                ]
            };
            metrics.entries.add(now[0] - held[0]);
            metrics.bytes.add(now[1] - held[1]);
            metrics.timers.add(now[2] - held[2]);
            *held = now;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot of the plugin at `place`, stage `stage`, if it is stateful.
    pub fn handle(&self, place: Place, stage: usize) -> Option<SlotHandle> {
        self.slots
            .iter()
            .find(|(s, _)| s.place == place && s.stage == stage)
            .map(|(_, h)| h.clone())
    }

    /// Restores every slot: from its local store and the changelog's tail when the
    /// store can be trusted, else from the whole changelog (and the store is
    /// rebuilt).
    pub fn restore(
        &self,
        spec: &StatefulSlots,
        stopped: impl Fn() -> bool,
    ) -> Result<Restored, RestoreError> {
        let mut total = Restored::default();
        for (i, (slot, handle)) in self.slots.iter().enumerate() {
            let started = std::time::Instant::now();
            let path = spec.store_path(slot, self.partition);
            let mut kept = path.map(|path| self.open_store(spec, slot, path));
            let mut state = handle.lock();
            *state.table_mut() = Default::default();
            let mut from = None;
            let mut from_store = 0;
            if let Some(Some(store)) = &kept
                && let Ok(Some(offset)) = store.offset()
            {
                let table = state.table_mut();
                let loaded = store.load(|key, value| {
                    if let Ok(change) = changelog::decode(key, Some(value)) {
                        table.apply(&change);
                    }
                });
                match loaded {
                    Ok(n) => {
                        from = Some(offset);
                        from_store = n;
                    }
                    Err(error) => {
                        tracing::warn!(slot = %slot.id, partition = self.partition, %error, "the local store cannot be read; rebuilding it from the changelog");
                        let path = store.path().to_owned();
                        *state.table_mut() = Default::default();
                        LocalStore::wipe(&path);
                        kept = Some(self.open_store(spec, slot, path));
                    }
                }
            }
            let table = state.table_mut();
            let restored = changelog::restore(
                &spec.client,
                &slot.topic,
                self.partition,
                from,
                |key, value| {
                    table.apply(&changelog::decode(key, value)?);
                    Ok(())
                },
                &stopped,
            )?;
            tracing::info!(
                slot = %slot.id, topic = %slot.topic, partition = self.partition,
                from_store, records = restored.records, entries = state.table().entry_count(),
                timers = state.table().timer_count(),
                "restored state in {:.3}s ({} from the local store, {} from the changelog{})",
                started.elapsed().as_secs_f64(), from_store, restored.records,
                if from.is_some() { "'s tail" } else { "" }
            );
            drop(state);
            self.stores.lock().unwrap_or_else(PoisonError::into_inner)[i] = kept.flatten();
            total.records += restored.records;
            total.from_store += from_store;
            total.seconds += started.elapsed().as_secs_f64();
        }
        self.publish();
        Ok(total)
    }

    /// Opens slot `slot`'s local store at `path` and checks it against the
    /// changelog; a store that cannot be trusted is deleted and made again empty.
    /// `None`: no store for this assignment (another process holds it).
    fn open_store(
        &self,
        spec: &StatefulSlots,
        slot: &SlotSpec,
        path: PathBuf,
    ) -> Option<LocalStore> {
        let partition = self.partition;
        let store = match LocalStore::open(&path) {
            Ok(store) => store,
            Err(StoreError::Busy(path)) => {
                tracing::warn!(slot = %slot.id, partition, path = %path.display(), "the local store is open in another process; restoring from the changelog alone");
                return None;
            }
            Err(error) => {
                tracing::warn!(slot = %slot.id, partition, %error, "rebuilding the local store from the changelog");
                LocalStore::wipe(&path);
                LocalStore::open(&path).ok()?
            }
        };
        let age = store
            .written_ms()
            .ok()
            .flatten()
            .map(|at| crate::state::clock::wall_ms() - at);
        let trusted = match (
            store.offset(),
            changelog::watermarks(&spec.client, &slot.topic, partition),
        ) {
            (Ok(None), _) => true,
            (Ok(Some(_)), _) if age.is_some_and(|age| age > store::MAX_AGE_MS) => {
                tracing::info!(slot = %slot.id, partition, age_hours = age.unwrap_or(0) / 3_600_000, "the local store is older than the changelog keeps its tombstones; rebuilding it");
                false
            }
            (Ok(Some(offset)), Ok((low, high))) if (low..=high).contains(&offset) => true,
            (Ok(Some(offset)), Ok((low, high))) => {
                tracing::warn!(slot = %slot.id, partition, offset, low, high, "the local store does not match the changelog (it reflects an offset outside the changelog's); rebuilding it");
                false
            }
            (Ok(Some(_)), Err(error)) => {
                tracing::warn!(slot = %slot.id, partition, %error, "cannot check the local store against the changelog; restoring from the changelog alone");
                return None;
            }
            (Err(error), _) => {
                tracing::warn!(slot = %slot.id, partition, %error, "rebuilding the local store from the changelog");
                false
            }
        };
        if trusted {
            return Some(store);
        }
        drop(store);
        LocalStore::wipe(&path);
        LocalStore::open(&path).ok()
    }

    /// Brings every local store up to the changelog's end: reads the changelog
    /// (`read_committed`) from where the store is, and writes what it read with the
    /// offset it reached, in one store transaction. So a store only ever holds what
    /// the changelog holds for good. Runs every [`CATCH_UP_EVERY`] in the
    /// background, and when the partition is released cleanly.
    pub fn catch_up(&self) {
        let _one = self
            .catching_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (i, (slot, _)) in self.slots.iter().enumerate() {
            let from = {
                let stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
                match stores.get(i) {
                    Some(Some(store)) => store.offset(),
                    _ => continue,
                }
            };
            let Ok(from) = from else {
                continue;
            };
            let mut latest: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
            let read = changelog::restore(
                &self.client,
                &slot.topic,
                self.partition,
                from,
                |key, value| {
                    latest.insert(key.to_vec(), value.map(<[u8]>::to_vec));
                    Ok(())
                },
                || false,
            );
            let end = match read {
                Ok(read) => read.end,
                Err(error) => {
                    tracing::warn!(slot = %slot.id, partition = self.partition, %error, "cannot bring the local store up to date; a restart reads more of the changelog");
                    continue;
                }
            };
            if from == Some(end) {
                continue;
            }
            let stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(Some(store)) = stores.get(i) else {
                continue;
            };
            let changes = latest.iter().map(|(k, v)| (k.as_slice(), v.as_deref()));
            match store.save(changes, end) {
                Ok(()) => {
                    tracing::debug!(slot = %slot.id, partition = self.partition, records = latest.len(), end, "the local store caught up with the changelog")
                }
                Err(error) => {
                    tracing::warn!(slot = %slot.id, partition = self.partition, %error, "cannot write the local store; a restart reads more of the changelog")
                }
            }
        }
    }

    /// Catches the local stores up every [`CATCH_UP_EVERY`] while the partition is
    /// held (a thread that ends when the runner drops its state).
    pub fn keep_stores_current(self: &Arc<Self>) {
        let has_store = self
            .stores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(Option::is_some);
        if !has_store {
            return;
        }
        let state = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name(format!("weir-store-{}", self.partition))
            .spawn(move || {
                let mut waited = Duration::ZERO;
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    waited += Duration::from_secs(1);
                    let Some(state) = state.upgrade() else {
                        return;
                    };
                    if waited >= CATCH_UP_EVERY {
                        waited = Duration::ZERO;
                        state.catch_up();
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(partition = self.partition, %error, "cannot start the thread that keeps local stores current; they catch up when the partition goes");
        }
    }

    /// The earliest pending timer of any slot, with the slot's index.
    pub fn next_timer(&self) -> Option<(usize, Timer)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, (_, h))| h.lock().table().first_timer().map(|t| (i, t)))
            .min_by_key(|(_, t)| t.due_ms)
    }

    /// The slot at index `i` (from [`PartitionState::next_timer`]).
    pub fn slot(&self, i: usize) -> Option<&(Arc<SlotSpec>, SlotHandle)> {
        self.slots.get(i)
    }

    /// Ends a record (or a fired timer): each slot keeps its changes if its part of
    /// the pipeline delivered (the shared chain: if any branch did), and the
    /// changes become changelog records to produce with the outputs.
    /// `source_offset` goes in a header (`None`: a fired timer).
    pub fn finish<P: Plugin>(
        &self,
        verdicts: &[Verdict<P>],
        source_offset: Option<i64>,
    ) -> Vec<OwnedRecord> {
        let delivered = |b: usize| matches!(verdicts.get(b), Some(Verdict::Deliver(_)));
        let mut records = Vec::new();
        for (slot, handle) in &self.slots {
            let keep = match slot.place {
                Place::Prefix => (0..verdicts.len()).any(delivered),
                Place::Branch(b) => delivered(b),
            };
            let changes = handle.lock().finish(keep);
            if let Some(metrics) = &slot.metrics {
                metrics.changelog.inc_by(changes.len() as u64);
            }
            for change in changes {
                let (key, value) = changelog::encode(&change);
                let origin = match source_offset {
                    Some(offset) => offset.to_string(),
                    None => "timer".to_owned(),
                };
                records.push(OwnedRecord {
                    topic: slot.topic.to_string(),
                    partition: Some(self.partition),
                    key: Some(key),
                    value,
                    headers: vec![Header {
                        key: "weir.source.offset".into(),
                        value: origin.into_bytes(),
                    }],
                });
            }
        }
        if !records.is_empty() {
            self.publish();
        }
        records
    }

    /// Empty slots (a pipeline without stateful plugins).
    pub fn stateless() -> PartitionState {
        PartitionState::new(&StatefulSlots::none(), 0)
    }

    /// Forgets every slot's unfinished changes (the record was abandoned).
    pub fn abandon(&self) {
        for (_, handle) in &self.slots {
            handle.lock().discard();
        }
    }
}

impl Drop for PartitionState {
    /// The partition goes: its share leaves the gauges.
    fn drop(&mut self) {
        let held = self.held.get_mut().unwrap_or_else(PoisonError::into_inner);
        for ((spec, _), held) in self.slots.iter().zip(held.iter()) {
            if let Some(metrics) = &spec.metrics {
                metrics.entries.sub(held[0]);
                metrics.bytes.sub(held[1]);
                metrics.timers.sub(held[2]);
            }
        }
    }
}
