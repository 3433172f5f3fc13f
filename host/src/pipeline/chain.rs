//! A plugin chain: every output of stage i is handed to stage i+1 as an event; the
//! outputs of the last stage are the chain's outputs.
//!
//! The chain owns one instance per stage and replaces an instance after a sandbox
//! fault. It does not retry, route or produce: that is the runner's job.

use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::{Duration, Instant};

use crate::plugin::{
    CallError, CallSite, Event, Fault, LoadError, Output, PluginInstance, PluginVersion,
};

/// One failed stage of a chain.
#[derive(Debug, Clone)]
pub struct ChainFailure {
    /// The plugin version that failed, for `weir.plugin` and logs.
    pub plugin: Arc<PluginVersion>,
    pub error: CallError,
}

/// Instances of a chain of plugins, for one worker.
pub struct Chain {
    stages: Vec<Stage>,
}

struct Stage {
    version: Arc<PluginVersion>,
    /// `None` after a fault until a fresh instance is made.
    instance: Option<PluginInstance>,
}

impl Stage {
    fn instance(&mut self) -> Result<&mut PluginInstance, LoadError> {
        if self.instance.is_none() {
            self.instance = Some(self.version.instantiate()?);
        }
        Ok(self.instance.as_mut().expect("set just above"))
    }
}

impl Chain {
    /// Instantiates and inits every stage.
    pub fn new(versions: &[Arc<PluginVersion>]) -> Result<Chain, LoadError> {
        let stages = versions
            .iter()
            .map(|v| {
                Ok(Stage {
                    version: v.clone(),
                    instance: Some(v.instantiate()?),
                })
            })
            .collect::<Result<_, LoadError>>()?;
        Ok(Chain { stages })
    }

    /// Moves every stage to the version in its slot, if that changed (a hot reload).
    /// Called between records, so a record never sees two versions of a plugin.
    /// The new instance is made lazily, on the stage's next call.
    pub fn sync(&mut self, slots: &[ArcSwap<PluginVersion>]) -> Vec<Arc<PluginVersion>> {
        let mut swapped = Vec::new();
        for (stage, slot) in self.stages.iter_mut().zip(slots) {
            let current = slot.load();
            if !Arc::ptr_eq(&current, &stage.version) {
                stage.version = Arc::clone(&current);
                stage.instance = None;
                swapped.push(stage.version.clone());
            }
        }
        swapped
    }

    /// The plugin versions, in chain order.
    pub fn versions(&self) -> impl Iterator<Item = &Arc<PluginVersion>> {
        self.stages.iter().map(|s| &s.version)
    }

    /// Runs one source event through every stage.
    pub fn process(&mut self, event: &Event, site: &CallSite) -> Result<Vec<Output>, ChainFailure> {
        self.process_observed(event, site, |_, _, _| {})
    }

    /// Like [`Chain::process`], reporting every plugin call to `observe` with the
    /// plugin, its outcome (`ok` or a failure kind) and its duration.
    pub fn process_observed(
        &mut self,
        event: &Event,
        site: &CallSite,
        mut observe: impl FnMut(&PluginVersion, &'static str, Duration),
    ) -> Result<Vec<Output>, ChainFailure> {
        let last = self.stages.len() - 1;
        // Stages after the first get owned events made from the previous outputs.
        let mut owned: Vec<Event> = Vec::new();
        let mut outputs = Vec::new();
        for (i, stage) in self.stages.iter_mut().enumerate() {
            outputs.clear();
            let events = if i == 0 {
                std::slice::from_ref(event)
            } else {
                owned.as_slice()
            };
            for input in events {
                let started = Instant::now();
                let result = match stage.instance() {
                    Ok(instance) => instance.handle(input, site.clone()),
                    Err(e) => Err(CallError::Fault(Fault::Trap(format!(
                        "cannot restart the plugin: {e}"
                    )))),
                };
                let outcome = result.as_ref().map_or_else(|e| e.kind().as_str(), |_| "ok");
                observe(&stage.version, outcome, started.elapsed());
                match result {
                    Ok(more) => outputs.extend(more),
                    Err(error) => {
                        if matches!(error, CallError::Fault(_)) {
                            stage.instance = None;
                        }
                        return Err(ChainFailure {
                            plugin: stage.version.clone(),
                            error,
                        });
                    }
                }
            }
            if i < last {
                owned = outputs
                    .drain(..)
                    .map(|o| Event {
                        topic: event.topic.clone(),
                        partition: event.partition,
                        offset: event.offset,
                        timestamp_ms: event.timestamp_ms,
                        key: o.key,
                        value: o.value,
                        headers: o.headers,
                    })
                    .collect();
            }
        }
        Ok(outputs)
    }
}
