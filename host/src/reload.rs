//! Hot reload (`weir run --watch`): watches every plugin file and the config file,
//! and swaps in what changed without restarting a consumer.
//!
//! A changed `.wasm` is compiled, type-checked and `init`-ed here, off the hot path;
//! then the pipeline gets a whole new snapshot, and each partition runner moves to
//! it at its next record boundary. Anything that fails keeps the old version
//! running. What a config change may apply live is [`config::changes::diff`]'s
//! answer; other changes are named and left for a restart, never half-applied.
//!
//! [`config::changes::diff`]: crate::config::changes::diff

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use notify::event::ModifyKind;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::config::changes::{PipelineChange, diff};
use crate::config::{PipelineConfig, WeirConfig};
use crate::pipeline::live::LivePipeline;
use crate::pipeline::snapshot::Snapshot;
use crate::plugin::{LoadError, PluginEngine, PluginVersion};
use crate::shutdown::{Shutdown, join_until};
use crate::telemetry::Metrics;

/// Quiet time after the last write before a file is read: a file being written is
/// not picked up half-way.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// The watcher thread (and the OS watch it owns).
pub struct Reloader {
    thread: JoinHandle<()>,
}

impl Reloader {
    pub fn join(self, deadline: Instant) {
        join_until(self.thread, deadline, "the reloader");
    }
}

/// Where a plugin file is used: (pipeline index, stage index in `all_plugins`).
type Uses = Vec<(usize, usize)>;

struct State {
    config_path: PathBuf,
    /// The config as currently applied (per pipeline: the last applied version).
    config: WeirConfig,
    engine: PluginEngine,
    pipelines: Vec<Arc<LivePipeline>>,
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
        for (s, plugin) in pipeline.all_plugins().enumerate() {
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
    pipelines: Vec<Arc<LivePipeline>>,
    metrics: Metrics,
    stop: Shutdown,
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

fn run(mut state: State, rx: crossbeam_channel::Receiver<PathBuf>, stop: Shutdown) {
    // Path -> (first event, last event) of a burst of writes.
    let mut pending: HashMap<PathBuf, (Instant, Instant)> = HashMap::new();
    while !stop.is_triggered() {
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

/// Why a reload was refused; the running version stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("pipeline {pipeline} has no stage {stage}")]
    NoStage { pipeline: String, stage: usize },
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A stateful slot has a changelog provisioned at start-up; a stateless one
    /// has none.
    #[error(
        "{plugin} {now} state or timers but the running version {was}: a slot's state needs its changelog topic, provisioned at start-up; restart weir to change this"
    )]
    Statefulness {
        plugin: String,
        now: &'static str,
        was: &'static str,
    },
}

impl State {
    /// Loads the plugin at `path` as stage `stage` of `pipeline`, and inits one
    /// instance: the whole check, off the hot path.
    fn prepare(
        &self,
        path: &Path,
        pipeline: &PipelineConfig,
        stage: usize,
    ) -> Result<Arc<PluginVersion>, ReloadError> {
        let plugin = pipeline
            .all_plugins()
            .nth(stage)
            .ok_or_else(|| ReloadError::NoStage {
                pipeline: pipeline.name().to_owned(),
                stage,
            })?;
        let version = self.engine.load(
            path,
            plugin.init_config(),
            pipeline.limits.limits(&self.config.kafka),
        )?;
        let running = self
            .pipelines
            .iter()
            .find(|p| p.name().as_ref() == pipeline.name())
            .and_then(|p| p.snapshot().plugins().nth(stage).map(|v| v.stateful));
        if let Some(was) = running
            && was != version.stateful
        {
            let uses = |yes: bool| if yes { "uses" } else { "does not use" };
            return Err(ReloadError::Statefulness {
                plugin: version.name.clone(),
                now: uses(version.stateful),
                was: uses(was),
            });
        }
        version.instantiate()?;
        Ok(version)
    }

    /// Installs a snapshot of pipeline `p` made from `config` and `versions`.
    fn install(&self, p: usize, config: &PipelineConfig, versions: Vec<Arc<PluginVersion>>) {
        let live = &self.pipelines[p];
        let previous = live.snapshot();
        live.replace(Snapshot::build(
            config,
            versions,
            &self.metrics,
            Some(&previous),
        ));
    }

    fn reload_plugin_file(&mut self, path: &Path, first_event: Instant) {
        let uses = self.plugins.get(path).cloned().unwrap_or_default();
        let mut by_pipeline: HashMap<usize, Vec<usize>> = HashMap::new();
        for (p, stage) in uses {
            by_pipeline.entry(p).or_default().push(stage);
        }
        for (p, stages) in by_pipeline {
            let pipeline = &self.config.pipelines[p];
            let mut versions: Vec<Arc<PluginVersion>> =
                self.pipelines[p].snapshot().plugins().cloned().collect();
            let mut changed = false;
            for stage in stages {
                let old = versions[stage].clone();
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
                        versions[stage] = version;
                        changed = true;
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
            if changed {
                self.install(p, pipeline, versions);
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
        let change = diff(&self.config, &new);
        if !change.restart.is_empty() {
            tracing::warn!(
                "config change not applied: changes to {} need a restart",
                change.restart.join(", ")
            );
        }
        for pipeline in &change.pipelines {
            self.apply(&new, pipeline);
        }
    }

    /// Applies one pipeline's change, or none of it.
    fn apply(&mut self, new_config: &WeirConfig, change: &PipelineChange) {
        let p = change.index;
        let new = &new_config.pipelines[p];
        if !change.is_live() {
            tracing::warn!(
                pipeline = new.name(),
                "config change not applied to this pipeline: changes to {} need a restart",
                change.restart.join(", ")
            );
            return;
        }
        // Prepare every changed stage first, so that a refused plugin refuses the
        // whole change.
        let mut versions: Vec<Arc<PluginVersion>> =
            self.pipelines[p].snapshot().plugins().cloned().collect();
        let mut applied = Vec::new();
        for &stage in &change.stages {
            let Some(plugin) = new.all_plugins().nth(stage) else {
                continue;
            };
            let path = canonical(&new_config.plugin_path(plugin));
            match self.prepare(&path, new, stage) {
                Ok(version) => {
                    applied.push(format!("{} config/limits", version.name));
                    versions[stage] = version;
                }
                Err(error) => {
                    tracing::warn!(pipeline = new.name(), path = %path.display(), "config change rejected, the running config stays: {error}");
                    self.metrics.plugin_reloaded(&versions[stage].name, false);
                    return;
                }
            }
        }
        for &stage in &change.stages {
            self.metrics.plugin_reloaded(&versions[stage].name, true);
        }
        if change.retry {
            applied.push("retry".to_owned());
        }
        if change.circuit {
            applied.push("circuit".to_owned());
        }
        self.install(p, new, versions);
        if !applied.is_empty() {
            tracing::info!(pipeline = new.name(), changes = %applied.join(", "), "config change applied");
        }
        self.config.pipelines[p] = new.clone();
    }
}
