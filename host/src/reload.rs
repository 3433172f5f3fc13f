//! Hot reload (`weir run --watch`): watches every plugin file and the config file,
//! and swaps in what changed without restarting a consumer.
//!
//! A changed `.wasm` is compiled, type-checked and `init`-ed here, off the hot path,
//! then stored in its pipeline stage's slot; each partition runner moves to it at its
//! next record boundary. Anything that fails keeps the old version running. A config
//! change is applied when it can be applied live (a plugin's `config`, `limits`,
//! `retry`, `circuit`); other changes are named and left for a restart, never
//! half-applied.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use notify::event::ModifyKind;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::config::{PipelineConfig, WeirConfig};
use crate::pipeline::runner::PipelineShared;
use crate::plugin::{PluginEngine, PluginVersion};
use crate::telemetry::Metrics;

/// Quiet time after the last write before a file is read: a file being written is
/// not picked up half-way.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// The watcher thread (and the OS watch it owns).
pub struct Reloader {
    thread: JoinHandle<()>,
}

impl Reloader {
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Where a plugin file is used: (pipeline index, stage index).
type Uses = Vec<(usize, usize)>;

struct State {
    config_path: PathBuf,
    /// The config as currently applied (per pipeline: the last applied version).
    config: WeirConfig,
    engine: PluginEngine,
    pipelines: Vec<Arc<PipelineShared>>,
    metrics: Metrics,
    /// Canonical plugin path -> where it is used.
    plugins: HashMap<PathBuf, Uses>,
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// Canonicalises through the parent, so a path that was just renamed over still
/// matches.
fn event_path(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => canonical(parent).join(name),
        _ => path.to_owned(),
    }
}

fn plugin_uses(config: &WeirConfig) -> HashMap<PathBuf, Uses> {
    let mut uses: HashMap<PathBuf, Uses> = HashMap::new();
    for (p, pipeline) in config.pipelines.iter().enumerate() {
        for (s, plugin) in pipeline.plugins.get_ref().iter().enumerate() {
            uses.entry(canonical(&config.plugin_path(plugin)))
                .or_default()
                .push((p, s));
        }
    }
    uses
}

/// Starts watching. `pipelines` are the running pipelines, in config order.
pub fn spawn(
    config_path: &Path,
    config: WeirConfig,
    engine: PluginEngine,
    pipelines: Vec<Arc<PipelineShared>>,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Reloader> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut watcher: RecommendedWatcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Only content changes: reading a file to reload it raises access events,
            // which must not trigger another reload.
            if let Ok(event) = event
                && matches!(
                    event.kind,
                    EventKind::Create(_)
                        | EventKind::Modify(
                            ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any
                        )
                )
            {
                for path in event.paths {
                    let _ = tx.send(path);
                }
            }
        })
        .context("cannot start the file watcher")?;
    let state = State {
        config_path: canonical(config_path),
        plugins: plugin_uses(&config),
        config,
        engine,
        pipelines,
        metrics,
    };
    let mut dirs: BTreeSet<PathBuf> = state
        .plugins
        .keys()
        .filter_map(|p| p.parent().map(Path::to_owned))
        .collect();
    if let Some(dir) = state.config_path.parent() {
        dirs.insert(dir.to_owned());
    }
    for dir in &dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
    }
    tracing::info!(
        files = state.plugins.len() + 1,
        "watching the plugins and {} for changes",
        state.config_path.display()
    );
    let thread = std::thread::Builder::new()
        .name("weir-reload".into())
        .spawn(move || {
            let _watcher = watcher;
            run(state, rx, stop);
        })
        .context("cannot start the reload thread")?;
    Ok(Reloader { thread })
}

fn run(mut state: State, rx: crossbeam_channel::Receiver<PathBuf>, stop: Arc<AtomicBool>) {
    // Path -> (first event, last event) of a burst of writes.
    let mut pending: HashMap<PathBuf, (Instant, Instant)> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        if let Ok(path) = rx.recv_timeout(Duration::from_millis(50)) {
            let path = event_path(&path);
            if path == state.config_path || state.plugins.contains_key(&path) {
                let now = Instant::now();
                pending
                    .entry(path)
                    .and_modify(|(_, last)| *last = now)
                    .or_insert((now, now));
            }
            continue;
        }
        let ready: Vec<(PathBuf, Instant)> = pending
            .iter()
            .filter(|(_, (_, last))| last.elapsed() >= DEBOUNCE)
            .map(|(path, (first, _))| (path.clone(), *first))
            .collect();
        for (path, first) in ready {
            pending.remove(&path);
            if path == state.config_path {
                state.reload_config();
            } else {
                state.reload_plugin_file(&path, first);
            }
        }
    }
}

impl State {
    /// Loads `path` for stage `stage` of pipeline `p` with that pipeline's config,
    /// and inits one instance: the whole check, off the hot path.
    fn prepare(
        &self,
        path: &Path,
        pipeline: &PipelineConfig,
        stage: usize,
    ) -> Result<Arc<PluginVersion>, String> {
        let plugin = &pipeline.plugins.get_ref()[stage];
        let version = self
            .engine
            .load(path, plugin.init_config(), pipeline.limits.limits())
            .map_err(|e| e.to_string())?;
        version.instantiate().map_err(|e| e.to_string())?;
        Ok(version)
    }

    fn reload_plugin_file(&mut self, path: &Path, first_event: Instant) {
        let uses = self.plugins.get(path).cloned().unwrap_or_default();
        for (p, stage) in uses {
            let pipeline = &self.config.pipelines[p];
            let shared = &self.pipelines[p];
            let old = shared.plugins[stage].load_full();
            match self.prepare(path, pipeline, stage) {
                Ok(version) if version.sha256 == old.sha256 => {
                    tracing::debug!(path = %path.display(), "plugin file touched but unchanged");
                }
                Ok(version) => {
                    tracing::info!(
                        pipeline = pipeline.name(),
                        path = %path.display(),
                        old = %old.label,
                        new = %version.label,
                        took = ?first_event.elapsed(),
                        "plugin reloaded; partitions move to it at their next record"
                    );
                    self.metrics.plugin_reloaded(&version.name, true);
                    shared.plugins[stage].store(version);
                }
                Err(error) => {
                    tracing::warn!(
                        pipeline = pipeline.name(),
                        path = %path.display(),
                        running = %old.label,
                        "plugin reload rejected, the running version stays: {error}"
                    );
                    self.metrics.plugin_reloaded(&old.name, false);
                }
            }
        }
    }

    fn reload_config(&mut self) {
        let new = match WeirConfig::load(&self.config_path) {
            Ok(new) => new,
            Err(error) => {
                tracing::warn!("config change rejected, the running config stays: {error}");
                return;
            }
        };
        let mut restart = Vec::new();
        if new.kafka != self.config.kafka {
            restart.push("[kafka]".to_owned());
        }
        if new.metrics != self.config.metrics {
            restart.push("[metrics]".to_owned());
        }
        let topics = |c: &WeirConfig| {
            c.topics
                .iter()
                .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                .collect::<Vec<_>>()
        };
        if topics(&new) != topics(&self.config) {
            restart.push("[topics]".to_owned());
        }
        let names = |c: &WeirConfig| {
            c.pipelines
                .iter()
                .map(|p| p.name().to_owned())
                .collect::<Vec<_>>()
        };
        if names(&new) != names(&self.config) {
            restart.push("the list of pipelines".to_owned());
        }
        if !restart.is_empty() {
            tracing::warn!(
                "config change not applied: changes to {} need a restart",
                restart.join(", ")
            );
        }
        if names(&new) != names(&self.config) {
            return;
        }
        for p in 0..new.pipelines.len() {
            self.apply_pipeline(&new, p);
        }
    }

    /// Applies one pipeline's live-applicable changes, or none of them.
    fn apply_pipeline(&mut self, new_config: &WeirConfig, p: usize) {
        let old = &self.config.pipelines[p];
        let new = &new_config.pipelines[p];
        let outputs = |c: &PipelineConfig| {
            c.outputs
                .iter()
                .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                .collect::<Vec<_>>()
        };
        let paths = |c: &WeirConfig, pc: &PipelineConfig| {
            pc.plugins
                .get_ref()
                .iter()
                .map(|pl| c.plugin_path(pl))
                .collect::<Vec<_>>()
        };
        let mut restart = Vec::new();
        if new.input() != old.input() {
            restart.push("input");
        }
        if new.group() != old.group() {
            restart.push("group");
        }
        if outputs(new) != outputs(old) {
            restart.push("outputs");
        }
        if new.dlq() != old.dlq() {
            restart.push("dlq");
        }
        if paths(new_config, new) != paths(&self.config, old) {
            restart.push("plugins (which files)");
        }
        if new.workers() != old.workers() {
            restart.push("workers");
        }
        if !restart.is_empty() {
            tracing::warn!(
                pipeline = new.name(),
                "config change not applied to this pipeline: changes to {} need a restart",
                restart.join(", ")
            );
            return;
        }
        // Prepare every changed stage first, so that a refused plugin refuses the
        // whole change.
        let limits_changed = new.limits != old.limits;
        let mut staged = Vec::new();
        for (stage, (np, op)) in new
            .plugins
            .get_ref()
            .iter()
            .zip(old.plugins.get_ref())
            .enumerate()
        {
            if limits_changed || np.config != op.config {
                let path = canonical(&new_config.plugin_path(np));
                match self.prepare(&path, new, stage) {
                    Ok(version) => staged.push((stage, version)),
                    Err(error) => {
                        tracing::warn!(pipeline = new.name(), path = %path.display(), "config change rejected, the running config stays: {error}");
                        self.metrics
                            .plugin_reloaded(&self.pipelines[p].plugins[stage].load().name, false);
                        return;
                    }
                }
            }
        }
        let shared = &self.pipelines[p];
        let mut applied = Vec::new();
        for (stage, version) in staged {
            self.metrics.plugin_reloaded(&version.name, true);
            applied.push(format!("{} config/limits", version.name));
            shared.plugins[stage].store(version);
        }
        if new.retry != old.retry {
            shared.set_retry(new.retry);
            applied.push("retry".to_owned());
        }
        if new.circuit != old.circuit {
            shared
                .breaker
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .reconfigure(&new.circuit);
            applied.push("circuit".to_owned());
        }
        if !applied.is_empty() {
            tracing::info!(pipeline = new.name(), changes = %applied.join(", "), "config change applied");
        }
        self.config.pipelines[p] = new.clone();
    }
}
