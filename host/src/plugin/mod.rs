//! The plugin runtime: one wasmtime `Engine`, plugins compiled once into an
//! `InstancePre` (through the on-disk compile cache of [`cache`]), and instances
//! that are reused across calls.
//!
//! This module owns the sandbox (memory cap, per-call deadline by epoch interruption,
//! WASI with nothing granted) and turns every call into a typed [`CallOutcome`]. It
//! knows nothing of Kafka, retries or routing: policy lives in `policy/`, routing in
//! `pipeline/`.

pub mod cache;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store, Trap};

pub use self::cache::{CompileCache, Compiled};
pub use self::state::CallSite;
use self::state::InstanceState;

pub use crate::config::Limits;
pub use crate::record::{Event, Failure, Header, Output, bindings};

/// How often the epoch advances; deadlines are whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The least time a new instance gets to start (instantiate + `init`): Go's runtime
/// starts during instantiation, and interpreters may set up in `init`, which can
/// take far longer than one call's `limits.timeout` on a busy machine.
pub const START_DEADLINE_MIN: Duration = Duration::from_secs(10);

/// The deadline of instantiate + `init`: `max(limits.timeout, 10s)`.
pub fn start_deadline(timeout: Duration) -> Duration {
    timeout.max(START_DEADLINE_MIN)
}

/// Errors that stop a plugin from being loaded: a permanent condition at start-up or
/// reload, never a record failure.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin {path}: {reason}")]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("{path} is not a valid WebAssembly component: {message}")]
    Compile { path: PathBuf, message: String },
    #[error("{path} does not implement the weir:plugin world: {message}")]
    Link { path: PathBuf, message: String },
    #[error("plugin {name} failed to start: {message}")]
    Instantiate { name: String, message: String },
    /// Instantiation or `init` tried to grow memory past the cap.
    #[error(
        "plugin {name} could not start within limits.memory = {}: it tried to grow its memory past that while starting (instantiate + init){}",
        size_text(*limit as u64),
        language_hint(language, *limit)
    )]
    StartMemory {
        name: String,
        limit: usize,
        /// The language the component was written in, when it can be told.
        language: Option<GuestLanguage>,
    },
    /// Instantiation or `init` ran past [`start_deadline`].
    #[error(
        "plugin {name} did not start within {deadline:?} (instantiate + init get max(limits.timeout, {START_DEADLINE_MIN:?})): its init may loop or wait"
    )]
    StartTimeout { name: String, deadline: Duration },
    #[error("plugin {name} refused its config: {message}")]
    Init { name: String, message: String },
}

/// The language a component was written in, told from the marks its toolchain
/// leaves (for advice in error messages only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestLanguage {
    Python,
    JavaScript,
    Go,
}

impl GuestLanguage {
    /// Tells the language from the component's bytes: componentize-py and
    /// StarlingMonkey (componentize-js) name themselves, Go's producers section says
    /// `Go cmd/compile`. Rust and others: `None`.
    pub fn of_component(bytes: &[u8]) -> Option<GuestLanguage> {
        let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        if has(b"componentize-py") {
            Some(GuestLanguage::Python)
        } else if has(b"StarlingMonkey") {
            Some(GuestLanguage::JavaScript)
        } else if has(b"Go cmd/compile") {
            Some(GuestLanguage::Go)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GuestLanguage::Python => "Python",
            GuestLanguage::JavaScript => "JavaScript",
            GuestLanguage::Go => "Go",
        }
    }

    /// The memory cap a plugin of this language needs, with margin (the measured
    /// linear memory after init is 4.5MiB for Go, 12.3MiB for Python, 9.1MiB for
    /// JavaScript: BENCHMARKS.md, "Plugins in other languages").
    pub fn min_memory(self) -> usize {
        match self {
            GuestLanguage::Python => 32 << 20,
            GuestLanguage::JavaScript => 32 << 20,
            GuestLanguage::Go => 16 << 20,
        }
    }
}

fn language_hint(language: &Option<GuestLanguage>, limit: usize) -> String {
    match language {
        Some(GuestLanguage::JavaScript) if limit < GuestLanguage::JavaScript.min_memory() => {
            ". JavaScript plugins need at least 32MiB (see docs/languages.md)".to_owned()
        }
        Some(language) if limit < language.min_memory() => format!(
            ". {} plugins need at least {} (see docs/languages.md)",
            language.name(),
            size_text(language.min_memory() as u64)
        ),
        Some(language) => format!(" ({} plugin)", language.name()),
        None => String::new(),
    }
}

/// A size as `16MiB` when it is a whole number of MiB (or KiB), else in bytes.
pub fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{}MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{}KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// The wasmtime engine shared by every plugin, with its epoch ticker.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    /// Compiled components on disk, keyed by the wasm's sha256 and this engine's
    /// configuration, so an unchanged plugin is compiled once per machine.
    cache: Arc<CompileCache>,
    /// Host functions (WASI with nothing granted, and `log`), built once.
    linker: Arc<Linker<InstanceState>>,
    /// Keeps the epoch advancing while any clone of the engine is alive.
    _ticker: Arc<EpochTicker>,
}

/// Why the plugin engine cannot be made: the host cannot run any plugin.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot create the wasm engine: {0}")]
    Create(String),
    #[error("cannot link {what}: {message}")]
    Link { what: &'static str, message: String },
    /// Without the ticker no call would ever meet its deadline.
    #[error("cannot start the epoch ticker thread (call deadlines need it): {0}")]
    Ticker(std::io::Error),
}

impl PluginEngine {
    pub fn new() -> Result<PluginEngine, EngineError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        if std::env::var_os("WEIR_PERF_MAP").is_some_and(|v| v == "1") {
            // /tmp/perf-PID.map names the compiled guest functions for `perf report`.
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| EngineError::Create(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| EngineError::Link {
            what: "WASI",
            message: e.to_string(),
        })?;
        bindings::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state).map_err(
            |e| EngineError::Link {
                what: "the weir:plugin host",
                message: e.to_string(),
            },
        )?;
        let ticker = EpochTicker::spawn(engine.clone()).map_err(EngineError::Ticker)?;
        let cache = Arc::new(CompileCache::from_env(&engine));
        Ok(PluginEngine {
            engine,
            cache,
            linker: Arc::new(linker),
            _ticker: Arc::new(ticker),
        })
    }

    /// Compiles and type-checks a plugin. Slow (milliseconds to seconds): call it off
    /// the hot path.
    pub fn load(
        &self,
        path: &Path,
        config: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<Arc<PluginVersion>, LoadError> {
        let bytes = std::fs::read(path).map_err(|reason| LoadError::Read {
            path: path.to_owned(),
            reason,
        })?;
        let sha256 = hex(&Sha256::digest(&bytes));
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let started = Instant::now();
        let (component, how) = self.cache.get_or_compile(&self.engine, &sha256, || {
            Component::new(&self.engine, &bytes).map_err(|e| LoadError::Compile {
                path: path.to_owned(),
                message: format!("{e:#}"),
            })
        })?;
        let seconds = started.elapsed().as_secs_f64();
        crate::telemetry::metrics::plugin_compiled(&name, how.as_str(), seconds);
        match how {
            Compiled::Compiled => tracing::info!(
                plugin = %name,
                sha256 = &sha256[..12],
                "compiled {} in {seconds:.2}s",
                path.display()
            ),
            Compiled::Cached => tracing::info!(
                plugin = %name,
                sha256 = &sha256[..12],
                "loaded {} from the compile cache in {seconds:.2}s",
                path.display()
            ),
        }
        let link_error = |e: wasmtime::Error| LoadError::Link {
            path: path.to_owned(),
            message: format!("{e:#}"),
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(link_error)?;
        let pre = bindings::PluginPre::new(instance_pre).map_err(link_error)?;
        let label: Arc<str> = format!("{name}@{}", &sha256[..12]).into();
        let identity = format!("{name} sha256:{sha256}");
        Ok(Arc::new(PluginVersion {
            identity,
            name,
            path: path.to_owned(),
            sha256,
            label,
            config,
            limits,
            pre,
            engine: self.clone(),
        }))
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread that stops when
/// this value is dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn spawn(engine: Engine) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
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
    identity: String,
    /// The pipeline's `config` table for this plugin, handed to `init`.
    pub config: Vec<(String, String)>,
    pub limits: Limits,
    pre: bindings::PluginPre<InstanceState>,
    engine: PluginEngine,
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
        let bindings = match self.pre.instantiate(&mut store) {
            Ok(bindings) => bindings,
            Err(e) => return Err(self.start_error(&store, e, deadline)),
        };
        match bindings.call_init(&mut store, &self.config) {
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

/// A loaded plugin as the record path sees it. A trait so that the processor can be
/// tested with scripted plugins; [`PluginVersion`] is the real one.
pub trait Plugin: Send + Sync + 'static {
    type Instance: PluginCall;
    /// A fresh instance, `init`-ed with its config.
    fn instantiate(self: &Arc<Self>) -> Result<Self::Instance, LoadError>;
    /// The file stem, e.g. `task_validator`: the `plugin` metric label.
    fn name(&self) -> &str;
    /// `name@sha256-prefix`, for log lines.
    fn label(&self) -> &Arc<str>;
    /// `name sha256:<hex>`, for the `weir.plugin` DLQ header.
    fn identity(&self) -> &str;
}

/// One instance of a [`Plugin`].
pub trait PluginCall {
    /// Calls `handle-event`. After `Err(CallError::Fault(_))` the instance must not
    /// be used again.
    fn handle(&mut self, event: &Event, site: &CallSite) -> CallOutcome;

    /// Whether the instance should be replaced before its next call (its memory
    /// grew close to the cap).
    fn worn(&self) -> bool {
        false
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
}

impl PluginCall for PluginInstance {
    fn handle(&mut self, event: &Event, site: &CallSite) -> CallOutcome {
        PluginInstance::handle(self, event, site)
    }

    fn worn(&self) -> bool {
        self.store.data().limiter.worn()
    }
}

fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64).max(1)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A live instance. Reused across calls; replace it after a [`Fault`].
pub struct PluginInstance {
    pub version: Arc<PluginVersion>,
    store: Store<InstanceState>,
    bindings: bindings::Plugin,
}

/// What one call came to.
pub type CallOutcome = Result<Vec<Output>, CallError>;

/// Why a call produced no outputs. A guest failure (the plugin's own verdict) and a
/// sandbox fault (the host stopped the guest) are different things.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Guest(GuestFailure),
    #[error("{0}")]
    Fault(Fault),
    /// An output broke a host rule (size, undeclared `to`).
    #[error("bad output: {0}")]
    BadOutput(String),
    /// No instance of the plugin could be made to call.
    #[error("cannot restart the plugin: {0}")]
    Unavailable(String),
}

/// The plugin's own `failure` value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GuestFailure {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Transient(String),
}

/// The sandbox stopped the call; the instance must be replaced.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Fault {
    #[error("{0}")]
    Trap(String),
    #[error("the call ran past its {0:?} deadline")]
    Timeout(Duration),
    #[error("the plugin tried to grow its memory past the {0}-byte cap")]
    MemoryLimit(usize),
}

pub use crate::outcome::FailureKind;

impl CallError {
    pub fn kind(&self) -> FailureKind {
        match self {
            CallError::Guest(GuestFailure::Invalid(_)) => FailureKind::Invalid,
            CallError::Guest(GuestFailure::Transient(_)) => FailureKind::Transient,
            CallError::Fault(Fault::Trap(_)) => FailureKind::Trap,
            CallError::Fault(Fault::Timeout(_)) => FailureKind::Timeout,
            CallError::Fault(Fault::MemoryLimit(_)) => FailureKind::MemoryLimit,
            CallError::BadOutput(_) => FailureKind::BadOutput,
            CallError::Unavailable(_) => FailureKind::Unavailable,
        }
    }

    /// The message for `weir.error.message` and `weir test` output.
    pub fn message(&self) -> String {
        match self {
            CallError::BadOutput(m) => m.clone(),
            other => other.to_string(),
        }
    }
}

impl PluginInstance {
    /// Calls `handle-event` under the deadline and memory cap.
    ///
    /// On `Err(CallError::Fault(_))` the instance is in an unknown state: drop it and
    /// make a new one with [`PluginVersion::instantiate`].
    pub fn handle(&mut self, event: &Event, site: &CallSite) -> CallOutcome {
        let limits = self.version.limits;
        self.store.data_mut().begin_call(site);
        self.store
            .set_epoch_deadline(deadline_ticks(limits.timeout));
        let result = self.bindings.call_handle_event(&mut self.store, event);
        let last_output = self.store.data_mut().end_call();
        match result {
            Ok(Ok(outputs)) => {
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

/// Rejects outputs that could never be produced to Kafka as they are.
fn check_outputs(outputs: &[Output], max_output: usize) -> Result<(), CallError> {
    for (i, output) in outputs.iter().enumerate() {
        let size = output.key.as_ref().map_or(0, Vec::len)
            + output.value.as_ref().map_or(0, Vec::len)
            + output
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.len())
                .sum::<usize>();
        if size > max_output {
            return Err(CallError::BadOutput(format!(
                "output {i} (to {:?}) is {size} bytes, over the {max_output}-byte limit",
                output.to
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn start_failures_say_what_to_change() {
        let error = LoadError::StartMemory {
            name: "app".into(),
            limit: 16 << 20,
            language: Some(GuestLanguage::Python),
        };
        let text = error.to_string();
        assert!(
            text.contains("plugin app could not start within limits.memory = 16MiB: it tried"),
            "{text}"
        );
        assert!(
            text.contains("Python plugins need at least 32MiB (see docs/languages.md)"),
            "{text}"
        );
        assert_eq!(size_text(1536), "1536 bytes");
        assert_eq!(size_text(3 << 10), "3KiB");
        assert_eq!(
            GuestLanguage::of_component(b"..componentize-py.."),
            Some(GuestLanguage::Python)
        );
        assert_eq!(GuestLanguage::of_component(b"rustc"), None);
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
        assert!(check_outputs(std::slice::from_ref(&output), 120).is_ok());
        let err = check_outputs(&[output], 119).unwrap_err();
        assert_eq!(err.kind(), FailureKind::BadOutput);
    }
}
