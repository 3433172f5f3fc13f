//! `weir dev`: the plugin author's loop. Runs the pipelines with `--watch` against
//! the configured brokers (the embedded cluster unless `KAFKA_BROKERS` says
//! otherwise), and rebuilds a plugin crate for `wasm32-wasip2` whenever its sources
//! under `plugins/` change, so the watcher swaps the new build in. Compiler errors
//! show inline; a failed build leaves the running version alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::Context;
use notify::{RecursiveMode, Watcher};

use crate::config::WeirConfig;

/// Quiet time after the last source change before building.
const SETTLE: Duration = Duration::from_millis(500);

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = WeirConfig::load(config_path)?;
    let root = if config.base_dir.as_os_str().is_empty() {
        std::env::current_dir().context("cannot read the current directory")?
    } else {
        config.base_dir.clone()
    };
    let plugins_dir = root.join("plugins");
    // The crates whose wasm the config runs: file stem `foo_bar` is package `foo-bar`.
    let packages: BTreeSet<String> = config
        .pipelines
        .iter()
        .flat_map(|p| p.all_plugins())
        .filter_map(|plugin| {
            let path = config.plugin_path(plugin);
            path.file_stem()
                .map(|s| s.to_string_lossy().replace('_', "-"))
        })
        .filter(|package| crate_dir(&plugins_dir, package).is_some())
        .collect();
    if !packages.is_empty() {
        eprintln!(
            "weir dev: building {}",
            packages.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        build(&root, &packages);
    }
    let _builder = spawn_builder(root, plugins_dir, packages)?;
    super::run::run(config_path, true)
}

/// The directory of `package` under `plugins/`, if it is there.
fn crate_dir(plugins_dir: &Path, package: &str) -> Option<PathBuf> {
    walk_crates(plugins_dir)
        .into_iter()
        .find(|(_, name)| name == package)
        .map(|(dir, _)| dir)
}

/// Every crate under `plugins/` (one level, plus `plugins/testing/*`): (dir, package).
fn walk_crates(plugins_dir: &Path) -> Vec<(PathBuf, String)> {
    let mut crates = Vec::new();
    for dir in [plugins_dir.to_owned(), plugins_dir.join("testing")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let manifest = entry.path().join("Cargo.toml");
            let name = std::fs::read_to_string(&manifest)
                .ok()
                .and_then(|text| text.parse::<toml::Table>().ok())
                .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_owned));
            if let Some(name) = name {
                crates.push((entry.path(), name));
            }
        }
    }
    crates
}

fn build(root: &Path, packages: &BTreeSet<String>) -> bool {
    let started = Instant::now();
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .current_dir(root)
        .args(["build", "--release", "--target", "wasm32-wasip2"]);
    for package in packages {
        command.args(["-p", package]);
    }
    match command.status() {
        Ok(status) if status.success() => {
            eprintln!(
                "weir dev: built in {:.1}s; the watcher swaps it in",
                started.elapsed().as_secs_f64()
            );
            true
        }
        Ok(_) => {
            eprintln!("weir dev: the build failed (errors above); the running version stays");
            false
        }
        Err(error) => {
            eprintln!("weir dev: cannot run cargo: {error}");
            false
        }
    }
}

/// Watches `plugins/` and rebuilds what changed: the crate itself when it is one the
/// config runs, every such crate when a shared library crate changed.
fn spawn_builder(
    root: PathBuf,
    plugins_dir: PathBuf,
    packages: BTreeSet<String>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let (tx, rx) = crossbeam_channel::unbounded::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })
    .context("cannot start the source watcher")?;
    watcher
        .watch(&plugins_dir, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", plugins_dir.display()))?;
    let crates = walk_crates(&plugins_dir);
    std::thread::Builder::new()
        .name("weir-dev-build".into())
        .spawn(move || {
            let mut changed: BTreeSet<String> = BTreeSet::new();
            let mut last = Instant::now();
            loop {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(path) => {
                        let is_source = path
                            .extension()
                            .is_some_and(|e| e == "rs" || e == "toml" || e == "wit");
                        if let Some((_, name)) =
                            crates.iter().find(|(dir, _)| path.starts_with(dir))
                            && is_source
                        {
                            changed.insert(name.clone());
                            last = Instant::now();
                        }
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                }
                if changed.is_empty() || last.elapsed() < SETTLE {
                    continue;
                }
                let targets: BTreeSet<String> = if changed.iter().all(|c| packages.contains(c)) {
                    std::mem::take(&mut changed)
                } else {
                    changed.clear();
                    packages.clone()
                };
                if !targets.is_empty() {
                    eprintln!(
                        "weir dev: sources changed; rebuilding {}",
                        targets.iter().cloned().collect::<Vec<_>>().join(", ")
                    );
                    build(&root, &targets);
                }
            }
        })
        .context("cannot start the build thread")?;
    Ok(watcher)
}
