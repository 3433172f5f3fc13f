//! A chain with keyed state and a virtual clock, for `weir test` and `weir diff`:
//! each stateful stage gets an in-memory slot (as one partition would), the clock
//! moves only when the input says so (an event's `timestamp-ms`, an `advance`
//! line), and the timers that come due fire in due order, on the spot.

use std::sync::Arc;

use crate::pipeline::{Chain, ChainFailure};
use crate::plugin::{CallSite, Event, FiredTimer, Output, Plugin, PluginVersion};
use crate::state::{Clock, SlotHandle, SlotState, Timer};

/// A fired timer and what came of it.
pub struct Fired {
    pub timer: Timer,
    pub result: Result<Vec<Output>, ChainFailure>,
}

pub struct Harness {
    chain: Chain,
    /// The stateful stages' slots, with their stage index.
    slots: Vec<(usize, SlotHandle)>,
    clock: Clock,
}

impl Harness {
    /// Instantiates `versions` as one chain; the clock starts at `start_ms`.
    pub fn new(versions: &[Arc<PluginVersion>], start_ms: i64) -> anyhow::Result<Harness> {
        let clock = Clock::fixed(start_ms);
        let mut slots = Vec::new();
        let chain = Chain::with_slots(versions, |i| {
            let version = &versions[i];
            version.stateful().then(|| {
                let state = SlotState::new(i.to_string().into(), version.limits, clock.clone());
                let handle = SlotHandle::new(state);
                slots.push((i, handle.clone()));
                handle
            })
        })?;
        Ok(Harness {
            chain,
            slots,
            clock,
        })
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Runs one event through the chain. Its state changes are kept if it
    /// succeeded. Call [`Harness::advance_to`] first with its timestamp.
    pub fn event(&mut self, event: &Event, site: &CallSite) -> Result<Vec<Output>, ChainFailure> {
        for (_, slot) in &self.slots {
            slot.lock().discard();
        }
        let result = self.chain.process(event, site);
        self.finish(result.is_ok());
        result
    }

    /// Moves the clock to `ms` (never back) and fires every timer due by then,
    /// earliest first.
    pub fn advance_to(&mut self, ms: i64, site: &CallSite) -> Vec<Fired> {
        self.clock.advance_to(ms);
        let now = self.clock.now_ms();
        let mut fired = Vec::new();
        loop {
            let next = self
                .slots
                .iter()
                .filter_map(|(stage, slot)| {
                    slot.lock()
                        .table()
                        .first_timer()
                        .map(|t| (*stage, slot.clone(), t))
                })
                .min_by_key(|(_, _, t)| t.due_ms);
            let Some((stage, slot, timer)) = next.filter(|(_, _, t)| t.due_ms <= now) else {
                return fired;
            };
            for (_, slot) in &self.slots {
                slot.lock().discard();
            }
            slot.lock().fire(&timer);
            let source = Event {
                topic: "weir-test".into(),
                partition: 0,
                offset: site.offset,
                timestamp_ms: Some(timer.due_ms),
                key: timer.key.clone(),
                value: None,
                headers: Vec::new(),
            };
            let call = FiredTimer {
                name: timer.name.clone(),
                key: timer.key.clone(),
                due_ms: timer.due_ms,
                payload: timer.payload.clone(),
                topic: source.topic.clone(),
                partition: 0,
            };
            let result = self.chain.fire(stage, &call, &source, site, &[]);
            self.finish(result.is_ok());
            fired.push(Fired { timer, result });
        }
    }

    /// Timers pending in every slot.
    pub fn pending_timers(&self) -> usize {
        self.slots
            .iter()
            .map(|(_, s)| s.lock().table().timer_count())
            .sum()
    }

    fn finish(&self, keep: bool) {
        for (_, slot) in &self.slots {
            slot.lock().finish(keep);
        }
    }
}
