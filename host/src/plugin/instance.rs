//! One compiled plugin version and its live instances: instantiating a
//! [`PluginVersion`] (instantiate + `init` under the start deadline), and
//! [`PluginInstance::handle`], the call under the per-call deadline and memory cap,
//! which names a fault and checks the outputs before anything leaves the sandbox.
//!
//! Every call ends as a typed [`CallOutcome`]. This module does not compile or link
//! (that is [`super::engine`]) and knows nothing of Kafka, retries or routing.

use crate::record::wire_size;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap};

use super::engine::EPOCH_TICK;
use super::state::InstanceState;
use super::{
    CallError, CallOutcome, CallSite, Event, Failure, Fault, FiredTimer, GuestFailure,
    GuestLanguage, Limits, LoadError, Output, Plugin, PluginCall, PluginEngine, bindings,
};
use crate::state::SlotHandle;

/// The least time a new instance gets to start (instantiate + `init`): Go's runtime
/// starts during instantiation, and interpreters may set up in `init`, which can
/// take far longer than one call's `limits.timeout` on a busy machine.
pub const START_DEADLINE_MIN: Duration = Duration::from_secs(10);

/// The deadline of instantiate + `init`: `max(limits.timeout, 10s)`.
pub fn start_deadline(timeout: Duration) -> Duration {
    timeout.max(START_DEADLINE_MIN)
}

/// One compiled version of a plugin, ready to instantiate.
pub struct PluginVersion {
    /// File stem of the wasm, e.g. `task_validator`.
    pub name: String,
    pub path: PathBuf,
    /// Hex sha256 of the wasm file: the version identity in logs and DLQ headers.
    pub sha256: String,
    /// `name@sha256-prefix`, for log lines.
    pub label: Arc<str>,
    /// `name sha256:<hex>`, the value of the `weir.plugin` DLQ header.
    pub(super) identity: String,
    /// The pipeline's `config` table for this plugin, handed to `init`.
    pub config: Vec<(String, String)>,
    pub limits: Limits,
    /// Linked once at load, so each instance starts without type-checking again.
    pub(super) pre: Pre,
    /// It imports `state` or `timers`, or exports `handle-timer`: each partition
    /// gives it a slot ([`crate::state`]).
    pub stateful: bool,
    /// The engine the component was compiled in; every instance's store is made in it.
    pub(super) engine: PluginEngine,
}

/// A linked component: of the plain `plugin` world, or with `handle-timer`.
pub(crate) enum Pre {
    Plain(bindings::plain::PluginPre<InstanceState>),
    Stateful(bindings::StatefulPluginPre<InstanceState>),
}

/// An instance's exports.
enum Exports {
    Plain(bindings::plain::Plugin),
    Stateful(bindings::StatefulPlugin),
}

impl std::fmt::Debug for PluginVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginVersion")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl PluginVersion {
    /// `name sha256:...`, the value of the `weir.plugin` DLQ header.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Instantiates the plugin and calls `init` with its config. Both together get
    /// [`start_deadline`] (at least 10 s), not the per-call `limits.timeout`.
    pub fn instantiate(self: &Arc<Self>) -> Result<PluginInstance, LoadError> {
        let mut store = Store::new(
            &self.engine.engine,
            InstanceState::new(self.label.clone(), self.limits.memory),
        );
        store.limiter(|state| &mut state.limiter);
        let deadline = start_deadline(self.limits.timeout);
        store.set_epoch_deadline(deadline_ticks(deadline));
        let started = Instant::now();
        let made = match &self.pre {
            Pre::Plain(pre) => pre.instantiate(&mut store).map(Exports::Plain),
            Pre::Stateful(pre) => pre.instantiate(&mut store).map(Exports::Stateful),
        };
        let bindings = match made {
            Ok(bindings) => bindings,
            Err(e) => return Err(self.start_error(&store, e, deadline)),
        };
        let init = match &bindings {
            Exports::Plain(b) => b.call_init(&mut store, &self.config),
            Exports::Stateful(b) => b.call_init(&mut store, &self.config),
        };
        match init {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                return Err(LoadError::Init {
                    name: self.name.clone(),
                    message,
                });
            }
            Err(e) => return Err(self.start_error(&store, e, deadline)),
        }
        tracing::debug!(
            plugin = %self.label,
            "instantiated and initialised in {:.1}ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
        store.data_mut().end_call();
        store.data_mut().limiter.started();
        Ok(PluginInstance {
            version: self.clone(),
            store,
            bindings,
        })
    }
}

impl PluginVersion {
    /// Names why an instance could not start: the memory cap, the start deadline,
    /// or a trap.
    fn start_error(
        &self,
        store: &Store<InstanceState>,
        error: wasmtime::Error,
        deadline: Duration,
    ) -> LoadError {
        if store.data().limiter.hit {
            // Read again only on this rare path, to give language-specific advice.
            let language = std::fs::read(&self.path)
                .ok()
                .and_then(|bytes| GuestLanguage::of_component(&bytes));
            return LoadError::StartMemory {
                name: self.name.clone(),
                limit: self.limits.memory,
                language,
            };
        }
        if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
            return LoadError::StartTimeout {
                name: self.name.clone(),
                deadline,
            };
        }
        LoadError::Instantiate {
            name: self.name.clone(),
            message: format!("{error:#}"),
        }
    }
}

impl Plugin for PluginVersion {
    type Instance = PluginInstance;

    fn instantiate(self: &Arc<Self>) -> Result<PluginInstance, LoadError> {
        PluginVersion::instantiate(self)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn label(&self) -> &Arc<str> {
        &self.label
    }

    fn identity(&self) -> &str {
        &self.identity
    }

    fn stateful(&self) -> bool {
        self.stateful
    }

    fn limits(&self) -> Option<Limits> {
        Some(self.limits)
    }
}

impl PluginCall for PluginInstance {
    fn handle(&mut self, event: &Event, site: &CallSite) -> CallOutcome {
        PluginInstance::handle(self, event, site)
    }

    fn handle_timer(&mut self, timer: &FiredTimer, site: &CallSite) -> CallOutcome {
        PluginInstance::handle_timer(self, timer, site)
    }

    fn bind(&mut self, slot: SlotHandle) {
        self.store.data_mut().slot = Some(slot);
    }

    fn worn(&self) -> bool {
        self.store.data().limiter.worn()
    }
}

fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64).max(1)
}

/// A live instance. Reused across calls; replace it after a [`Fault`].
pub struct PluginInstance {
    pub version: Arc<PluginVersion>,
    store: Store<InstanceState>,
    bindings: Exports,
}

impl PluginInstance {
    /// Calls `handle-event` under the deadline and memory cap.
    ///
    /// On `Err(CallError::Fault(_))` the instance is in an unknown state: drop it and
    /// make a new one with [`PluginVersion::instantiate`].
    pub fn handle(&mut self, event: &Event, site: &CallSite) -> CallOutcome {
        let limits = self.version.limits;
        self.begin_call(site, "handle-event");
        self.store
            .set_epoch_deadline(deadline_ticks(limits.timeout));
        let result = match &self.bindings {
            Exports::Plain(b) => b.call_handle_event(&mut self.store, event),
            Exports::Stateful(b) => b.call_handle_event(&mut self.store, event),
        };
        self.finish_call(result, limits)
    }

    /// Readies the store for a call of `export`: budgets, and the call's span
    /// when the record is sampled.
    fn begin_call(&mut self, site: &CallSite, export: &str) {
        begin_call(&mut self.store, &self.version, site, export);
    }

    /// Calls `handle-timer` under the deadline and memory cap, as
    /// [`PluginInstance::handle`] calls `handle-event`.
    pub fn handle_timer(&mut self, timer: &FiredTimer, site: &CallSite) -> CallOutcome {
        let limits = self.version.limits;
        let Exports::Stateful(bindings) = &self.bindings else {
            return Err(CallError::Guest(GuestFailure::Invalid(format!(
                "timer {:?} fired, but the plugin exports no handle-timer",
                timer.name
            ))));
        };
        begin_call(&mut self.store, &self.version, site, "handle-timer");
        self.store
            .set_epoch_deadline(deadline_ticks(limits.timeout));
        let result = bindings.call_handle_timer(&mut self.store, timer);
        self.finish_call(result, limits)
    }

    /// Turns what a call returned into its outcome.
    fn finish_call(
        &mut self,
        result: wasmtime::Result<Result<Vec<Output>, Failure>>,
        limits: Limits,
    ) -> CallOutcome {
        let last_output = self.store.data_mut().end_call();
        let span = self.store.data_mut().span.take();
        let outcome = self.outcome(result, limits, last_output);
        if let Some(span) = span {
            span.finish(match &outcome {
                Ok(outputs) => Ok(outputs.len()),
                Err(error) => Err((error.kind().as_str(), error.message())),
            });
        }
        outcome
    }

    fn outcome(
        &mut self,
        result: wasmtime::Result<Result<Vec<Output>, Failure>>,
        limits: Limits,
        last_output: Option<String>,
    ) -> CallOutcome {
        match result {
            Ok(Ok(outputs)) => {
                if let Some(slot) = &self.store.data().slot
                    && let Some(limit) = slot.lock().limit_hit()
                {
                    return Err(CallError::StateLimit(limit.to_owned()));
                }
                check_outputs(&outputs, limits.max_output)?;
                Ok(outputs)
            }
            Ok(Err(Failure::Invalid(m))) => Err(CallError::Guest(GuestFailure::Invalid(m))),
            Ok(Err(Failure::Transient(m))) => Err(CallError::Guest(GuestFailure::Transient(m))),
            Err(error) => Err(CallError::Fault(self.classify(error, limits, last_output))),
        }
    }

    /// Names the fault; a trap's message carries the guest's last line of output
    /// (a Rust panic prints its message there).
    fn classify(
        &self,
        error: wasmtime::Error,
        limits: Limits,
        last_output: Option<String>,
    ) -> Fault {
        if self.store.data().limiter.hit {
            return Fault::MemoryLimit(limits.memory);
        }
        let trap = match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => return Fault::Timeout(limits.timeout),
            Some(Trap::StackOverflow) => "stack overflow".to_owned(),
            Some(trap) => trap.to_string(),
            None => format!("{error:#}"),
        };
        Fault::Trap(match last_output {
            Some(line) => format!("{trap} (guest said: {line})"),
            None => trap,
        })
    }
}

/// Readies `store` for a call of `export` of `version`: budgets, and the call's
/// span when the record is sampled.
fn begin_call(
    store: &mut Store<InstanceState>,
    version: &PluginVersion,
    site: &CallSite,
    export: &str,
) {
    let span = site.trace.as_ref().and_then(|trace| {
        trace.call(
            export,
            &version.name,
            &version.sha256,
            site.attempt.get().max(1),
        )
    });
    let data = store.data_mut();
    data.begin_call(site);
    data.span = span;
}

/// Rejects outputs that could never be produced to Kafka as they are.
/// An output is sized as weir's Kafka client will size it ([`wire_size`]: key,
/// value, headers and their framing), so that one within the limit is never
/// refused by the client.
fn check_outputs(outputs: &[Output], max_output: usize) -> Result<(), CallError> {
    for (i, output) in outputs.iter().enumerate() {
        let size = wire_size(
            output.key.as_deref(),
            output.value.as_deref(),
            &output.headers,
        );
        if size > max_output {
            return Err(CallError::BadOutput(format!(
                "output {i} (to {:?}) is {size} bytes with its framing, over the {max_output}-byte limit \
                 (the smaller of limits.max-output and the Kafka client's message.max.bytes)",
                output.to
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{FailureKind, Header};

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        assert_eq!(deadline_ticks(Duration::from_millis(200)), 200);
        assert_eq!(deadline_ticks(Duration::from_micros(1500)), 2);
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
    }

    #[test]
    fn starting_gets_at_least_ten_seconds() {
        assert_eq!(start_deadline(Duration::from_millis(5)), START_DEADLINE_MIN);
        assert_eq!(
            start_deadline(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn oversized_outputs_are_bad_output() {
        let output = Output {
            to: "out".into(),
            key: Some(vec![0; 10]),
            value: Some(vec![0; 100]),
            headers: vec![Header {
                key: "h".into(),
                value: vec![0; 9],
            }],
        };
        // 36 bytes of framing, the key, the value, and the header with its lengths.
        let size = 36 + 10 + 100 + (1 + 1 + 1 + 9);
        assert!(check_outputs(std::slice::from_ref(&output), size).is_ok());
        let err = check_outputs(&[output], size - 1).unwrap_err();
        assert_eq!(err.kind(), FailureKind::BadOutput);
    }
}
