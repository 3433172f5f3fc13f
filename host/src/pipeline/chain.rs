//! A plugin chain: every output of stage i is handed to stage i+1 as an event; the
//! outputs of the last stage are the chain's outputs.
//!
//! The chain owns one instance per stage and replaces an instance after a sandbox
//! fault. It does not retry, route or produce: that is the processor's and the
//! sink's job.

use std::sync::Arc;
use std::time::Instant;

use crate::plugin::{
    CallError, CallSite, Event, FailureKind, FiredTimer, LoadError, Output, Plugin, PluginCall,
    PluginVersion,
};
use crate::state::SlotHandle;
use crate::telemetry::metrics::StageMetrics;

/// One failed stage of a chain.
#[derive(Debug)]
pub struct ChainFailure<P = PluginVersion> {
    /// The plugin version that failed, for `weir.plugin` and logs.
    pub plugin: Arc<P>,
    pub error: CallError,
}

impl<P> Clone for ChainFailure<P> {
    fn clone(&self) -> Self {
        ChainFailure {
            plugin: self.plugin.clone(),
            error: self.error.clone(),
        }
    }
}

/// Instances of a chain of plugins, for one worker.
pub struct Chain<P: Plugin = PluginVersion> {
    stages: Vec<Stage<P>>,
}

struct Stage<P: Plugin> {
    version: Arc<P>,
    /// `None` after a fault until a fresh instance is made.
    instance: Option<P::Instance>,
    /// A stateful plugin's slot on the partition: it outlives instances and
    /// versions (a reload keeps it).
    slot: Option<SlotHandle>,
}

impl<P: Plugin> Chain<P> {
    /// Instantiates and inits every stage, without state.
    pub fn new(versions: &[Arc<P>]) -> Result<Chain<P>, LoadError> {
        Chain::with_slots(versions, |_| None)
    }

    /// Instantiates and inits every stage; `slot(i)` gives stage `i` its slot.
    pub fn with_slots(
        versions: &[Arc<P>],
        mut slot: impl FnMut(usize) -> Option<SlotHandle>,
    ) -> Result<Chain<P>, LoadError> {
        let stages = versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut stage = Stage {
                    version: v.clone(),
                    instance: None,
                    slot: slot(i),
                };
                stage.instance()?;
                Ok(stage)
            })
            .collect::<Result<_, LoadError>>()?;
        Ok(Chain { stages })
    }

    /// The slots of the stateful stages, with their stage index.
    pub fn slots(&self) -> impl Iterator<Item = (usize, &SlotHandle)> {
        self.stages
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.slot.as_ref().map(|slot| (i, slot)))
    }

    /// Forgets the state changes of the attempt that failed.
    pub fn discard_changes(&self) {
        for (_, slot) in self.slots() {
            slot.lock().discard();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Moves every stage to the version given for it, where that changed (a hot
    /// reload), and returns the new versions. Called between records, so a record
    /// never sees two versions of a plugin. New instances are made lazily.
    pub fn sync<'v>(&mut self, versions: impl IntoIterator<Item = &'v Arc<P>>) -> Vec<Arc<P>> {
        let mut swapped = Vec::new();
        for (stage, version) in self.stages.iter_mut().zip(versions) {
            if !Arc::ptr_eq(version, &stage.version) {
                stage.version = version.clone();
                stage.instance = None;
                if let (Some(slot), Some(limits)) = (&stage.slot, version.limits()) {
                    slot.lock().set_limits(limits);
                }
                swapped.push(version.clone());
            }
        }
        swapped
    }

    /// The plugin versions, in chain order.
    pub fn versions(&self) -> impl Iterator<Item = &Arc<P>> {
        self.stages.iter().map(|s| &s.version)
    }

    /// Runs one source event through every stage.
    pub fn process(
        &mut self,
        event: &Event,
        site: &CallSite,
    ) -> Result<Vec<Output>, ChainFailure<P>> {
        self.run(std::slice::from_ref(event), event, site, &[])
    }

    /// Runs `inputs` (events made from `source`) through every stage, recording each
    /// call in `metrics` (one per stage, or none).
    pub fn run(
        &mut self,
        inputs: &[Event],
        source: &Event,
        site: &CallSite,
        metrics: &[StageMetrics],
    ) -> Result<Vec<Output>, ChainFailure<P>> {
        self.run_from(0, inputs, source, site, metrics)
    }

    /// Calls `handle-timer` of stage `stage` for `timer`, whose key and place are
    /// `source`'s; its outputs go down the rest of the chain.
    pub fn fire(
        &mut self,
        stage: usize,
        timer: &FiredTimer,
        source: &Event,
        site: &CallSite,
        metrics: &[StageMetrics],
    ) -> Result<Vec<Output>, ChainFailure<P>> {
        let Some(s) = self.stages.get_mut(stage) else {
            return Ok(Vec::new());
        };
        let started = Instant::now();
        let result = match s.instance() {
            Ok(instance) => instance.handle_timer(timer, site),
            Err(e) => Err(CallError::Unavailable(e.to_string())),
        };
        let outputs = s.settle(result, metrics.get(stage), started)?;
        if stage + 1 >= self.stages.len() {
            return Ok(outputs);
        }
        let events: Vec<Event> = outputs
            .into_iter()
            .map(|o| output_event(source, o))
            .collect();
        self.run_from(stage + 1, &events, source, site, metrics)
    }

    /// Runs `inputs` through the stages from `first` on.
    fn run_from(
        &mut self,
        first: usize,
        inputs: &[Event],
        source: &Event,
        site: &CallSite,
        metrics: &[StageMetrics],
    ) -> Result<Vec<Output>, ChainFailure<P>> {
        let last = self.stages.len().saturating_sub(1);
        // Stages after the first get owned events made from the previous outputs.
        let mut owned: Vec<Event> = Vec::new();
        let mut outputs = Vec::new();
        for (i, stage) in self.stages.iter_mut().enumerate().skip(first) {
            outputs.clear();
            let events = if i == first { inputs } else { owned.as_slice() };
            if let Some(slot) = &stage.slot {
                // State is scoped to the source record's key.
                slot.lock().enter(&source.key);
            }
            for input in events {
                let started = Instant::now();
                let result = match stage.instance() {
                    Ok(instance) => instance.handle(input, site),
                    Err(e) => Err(CallError::Unavailable(e.to_string())),
                };
                outputs.extend(stage.settle(result, metrics.get(i), started)?);
            }
            if i < last {
                owned = outputs.drain(..).map(|o| output_event(source, o)).collect();
            }
        }
        Ok(outputs)
    }
}

impl<P: Plugin> Stage<P> {
    /// The live instance, made (and given the slot) when there is none.
    fn instance(&mut self) -> Result<&mut P::Instance, LoadError> {
        match &mut self.instance {
            Some(instance) => Ok(instance),
            empty => {
                let mut instance = self.version.instantiate()?;
                if let Some(slot) = &self.slot {
                    instance.bind(slot.clone());
                }
                Ok(empty.insert(instance))
            }
        }
    }

    /// After a call: replaces a worn or faulted instance, counts the call, and
    /// names the stage in a failure.
    fn settle(
        &mut self,
        result: crate::plugin::CallOutcome,
        metrics: Option<&StageMetrics>,
        started: Instant,
    ) -> Result<Vec<Output>, ChainFailure<P>> {
        if self.instance.as_ref().is_some_and(PluginCall::worn) {
            tracing::debug!(plugin = %self.version.label(), "replacing an instance whose memory grew close to its cap");
            self.instance = None;
        }
        if let Some(metrics) = metrics {
            let failure: Option<FailureKind> = result.as_ref().err().map(CallError::kind);
            metrics.call(failure, started.elapsed().as_secs_f64());
        }
        result.map_err(|error| {
            if matches!(error, CallError::Fault(_)) {
                self.instance = None;
            }
            ChainFailure {
                plugin: self.version.clone(),
                error,
            }
        })
    }
}

/// The event the next plugin sees for an output: the output's key, value and
/// headers, at the source record's place.
pub fn output_event(source: &Event, output: Output) -> Event {
    Event {
        topic: source.topic.clone(),
        partition: source.partition,
        offset: source.offset,
        timestamp_ms: source.timestamp_ms,
        key: output.key,
        value: output.value,
        headers: output.headers,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::plugin::CallOutcome;

    /// Counts its instances; each instance wears out after two calls.
    struct Growing {
        label: Arc<str>,
        made: AtomicU32,
    }

    struct GrowingInstance {
        calls: u32,
    }

    impl Plugin for Growing {
        type Instance = GrowingInstance;
        fn instantiate(self: &Arc<Self>) -> Result<GrowingInstance, LoadError> {
            self.made.fetch_add(1, Ordering::SeqCst);
            Ok(GrowingInstance { calls: 0 })
        }
        fn name(&self) -> &str {
            "growing"
        }
        fn label(&self) -> &Arc<str> {
            &self.label
        }
        fn identity(&self) -> &str {
            "growing"
        }
    }

    impl PluginCall for GrowingInstance {
        fn handle(&mut self, _event: &Event, _site: &CallSite) -> CallOutcome {
            self.calls += 1;
            Ok(vec![])
        }
        fn worn(&self) -> bool {
            self.calls >= 2
        }
    }

    #[test]
    fn a_worn_instance_is_replaced_between_calls() {
        let plugin = Arc::new(Growing {
            label: "growing".into(),
            made: AtomicU32::new(0),
        });
        let mut chain = Chain::new(std::slice::from_ref(&plugin)).unwrap();
        let event = Event {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            timestamp_ms: None,
            key: None,
            value: None,
            headers: vec![],
        };
        for _ in 0..5 {
            assert!(chain.process(&event, &CallSite::default()).is_ok());
        }
        // Calls 1-2 on the first instance, 3-4 on the second, 5 on a third.
        assert_eq!(plugin.made.load(Ordering::SeqCst), 3);
    }
}
