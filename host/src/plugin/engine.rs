//! The wasmtime side shared by every plugin: one `Engine` with epoch interruption,
//! the linker (WASI with nothing granted, and the `weir:plugin` host), the thread
//! that advances the epoch, and loading a wasm file into a [`PluginVersion`]
//! (through the compile cache of [`super::cache`]).
//!
//! Loading is slow and happens off the hot path. This module makes no instances and
//! makes no calls: that is [`super::instance`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::cache::{CompileCache, Compiled};
use super::instance::Pre;
use super::state::InstanceState;
use super::{Limits, LoadError, PluginVersion, bindings};

/// How often the epoch advances; deadlines are whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The wasmtime engine shared by every plugin, with its epoch ticker.
#[derive(Clone)]
pub struct PluginEngine {
    /// The engine every store is made in; instances of one engine share its epoch.
    pub(super) engine: Engine,
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
        bindings::StatefulPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| EngineError::Link {
                what: "the weir:plugin host",
                message: e.to_string(),
            })?;
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
        let shape = Shape::of(&component, &self.engine);
        let pre = if shape.timer_handler {
            Pre::Stateful(bindings::StatefulPluginPre::new(instance_pre).map_err(link_error)?)
        } else {
            Pre::Plain(bindings::plain::PluginPre::new(instance_pre).map_err(link_error)?)
        };
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
            stateful: shape.stateful,
            engine: self.clone(),
        }))
    }
}

/// What a component imports and exports of the stateful world.
struct Shape {
    /// It imports `state` or `timers`, or exports `handle-timer`: it gets a slot.
    stateful: bool,
    /// It exports `handle-timer`.
    timer_handler: bool,
}

impl Shape {
    fn of(component: &Component, engine: &Engine) -> Shape {
        let ty = component.component_type();
        let imports_state = ty.imports(engine).any(|(name, _)| {
            let interface = name.split('@').next().unwrap_or(name);
            interface == "weir:plugin/state" || interface == "weir:plugin/timers"
        });
        let timer_handler = ty.exports(engine).any(|(name, _)| name == "handle-timer");
        Shape {
            stateful: imports_state || timer_handler,
            timer_handler,
        }
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
