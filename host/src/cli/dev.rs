//! `weir dev`: the plugin author's loop. Runs the pipelines with `--watch` against
//! the configured brokers (the embedded cluster unless `KAFKA_BROKERS` says
//! otherwise), and rebuilds a plugin whenever its sources change, so the watcher
//! swaps the new build in. Compiler errors show inline; a failed build leaves the
//! running version alone.
//!
//! Two kinds of plugin are rebuilt:
//! - crates of the weir workspace under `plugins/` (cargo `-p`, as before);
//! - plugin project directories of any language whose `weir build` output is a file
//!   the config runs: `DIR/<name>.wasm` (Python, JavaScript, Go) or
//!   `DIR/target/wasm32-wasip2/release/<name>.wasm` (a Rust crate of its own). Their
//!   directory is watched, plus the shared code they reach outside it (symbolic
//!   links, Go `replace` directories, JavaScript relative imports).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::Context;
use notify::{RecursiveMode, Watcher};

use super::build::{Language, Project, build_project, snake};
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
    let mut projects: Vec<(Project, PathBuf)> = Vec::new();
    for plugin in config.pipelines.iter().flat_map(|p| p.all_plugins()) {
        let wasm = config.plugin_path(plugin);
        let wasm = std::path::absolute(&wasm).unwrap_or(wasm);
        if let Some(project) = project_for(&wasm)
            && !projects.iter().any(|(_, out)| *out == wasm)
        {
            projects.push((project, wasm));
        }
    }
    for (project, wasm) in &projects {
        eprintln!(
            "weir dev: building {} ({})",
            project.dir.display(),
            project.language.as_str()
        );
        build_one(project, wasm);
    }
    let _builder = spawn_builder(root, plugins_dir, packages)?;
    let _project_builder = spawn_project_builder(projects)?;
    super::run::run(config_path, true)
}

/// The project directory whose `weir build` writes `wasm`, if there is one: `DIR`
/// for `DIR/<name>.wasm`, or the crate `DIR` of its own for
/// `DIR/target/wasm32-wasip2/release/<name>.wasm`.
pub fn project_for(wasm: &Path) -> Option<Project> {
    let stem = wasm.file_stem()?.to_string_lossy().into_owned();
    if let Some(project) = wasm.parent().and_then(|dir| Project::open(dir).ok())
        && project.language != Language::Rust
        && snake(&project.name()) == stem
    {
        return Some(project);
    }
    let release = wasm.parent()?;
    if !release.ends_with("target/wasm32-wasip2/release") {
        return None;
    }
    let dir = release.parent()?.parent()?.parent()?;
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
        .ok()?
        .parse::<toml::Table>()
        .ok()?;
    let package = manifest.get("package")?.get("name")?.as_str()?;
    let lib = manifest
        .get("lib")
        .and_then(|l| l.get("name")?.as_str())
        .unwrap_or(package);
    (snake(lib) == stem)
        .then(|| Project::open(dir).ok())
        .flatten()
}

/// The directories whose files a project's build reads: the project itself, and
/// the shared code it reaches outside it (targets of symbolic links, local Go
/// `replace` directories, directories of JavaScript relative imports).
pub fn source_dirs(project: &Project) -> BTreeSet<PathBuf> {
    let dir = &project.dir;
    let mut dirs = BTreeSet::from([dir.clone()]);
    let mut outside = |path: PathBuf| {
        if let Ok(path) = path.canonicalize()
            && let Some(parent) = if path.is_dir() {
                Some(path.as_path())
            } else {
                path.parent()
            }
            && !parent.starts_with(dir)
        {
            dirs.insert(parent.to_owned());
        }
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeSet::from([dir.clone()]);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            outside(path.clone());
        }
        let is_js = path.extension().is_some_and(|e| e == "js" || e == "mjs");
        if project.language == Language::Js
            && is_js
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            for spec in relative_imports(&text) {
                outside(dir.join(spec));
            }
        }
    }
    if project.language == Language::Go
        && let Ok(text) = std::fs::read_to_string(dir.join("go.mod"))
    {
        for target in go_local_replaces(&text) {
            outside(dir.join(target));
        }
    }
    dirs
}

/// `'./x.js'` and `"../y/z.js"` specifiers of `import`/`export ... from`.
fn relative_imports(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for quote in ['\'', '"'] {
        for piece in text.split(&format!("from {quote}")).skip(1) {
            if let Some(spec) = piece.split(quote).next()
                && (spec.starts_with("./") || spec.starts_with("../"))
            {
                found.push(spec);
            }
        }
    }
    found
}

/// The local directories of `replace X => ./path` lines (one-line or in a block).
fn go_local_replaces(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|line| line.split_once("=>"))
        .map(|(_, target)| target.trim())
        .filter(|t| t.starts_with("./") || t.starts_with("../") || t.starts_with('/'))
        .collect()
}

/// Whether a change to `path` (relative to the watched directory) needs a
/// rebuild: not the build's own products (`*.wasm`, `target/`, `node_modules/`,
/// caches) nor an editor's scratch files.
pub fn is_source_change(path: &Path) -> bool {
    let skipped_dir = path.components().any(|c| {
        matches!(
            c.as_os_str().to_str(),
            Some("target" | "node_modules" | "__pycache__" | ".git")
        )
    });
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let scratch = name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".wasm")
        || name.ends_with(".pyc");
    !skipped_dir && !scratch
}

fn build_one(project: &Project, wasm: &Path) -> bool {
    match build_project(project, Some(wasm)) {
        Ok(built) => {
            eprintln!(
                "weir dev: built {} in {:.1}s; the watcher swaps it in",
                built.out.display(),
                built.took.as_secs_f64()
            );
            true
        }
        Err(error) => {
            eprintln!("weir dev: {error}; the running version stays");
            false
        }
    }
}

/// Watches the plugin projects and rebuilds one when its sources change.
/// A file watcher (not yet watching anything) and the paths it reports changed;
/// reads are not changes.
fn path_watcher() -> anyhow::Result<(
    notify::RecommendedWatcher,
    crossbeam_channel::Receiver<PathBuf>,
)> {
    let (tx, rx) = crossbeam_channel::unbounded::<PathBuf>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })
    .context("cannot start the source watcher")?;
    Ok((watcher, rx))
}

fn spawn_project_builder(
    projects: Vec<(Project, PathBuf)>,
) -> anyhow::Result<Option<notify::RecommendedWatcher>> {
    if projects.is_empty() {
        return Ok(None);
    }
    let (mut watcher, rx) = path_watcher()?;
    let sources: Vec<BTreeSet<PathBuf>> = projects.iter().map(|(p, _)| source_dirs(p)).collect();
    let mut watched: Vec<PathBuf> = Vec::new();
    for dir in sources.iter().flatten() {
        if watched.iter().any(|w| dir.starts_with(w)) {
            continue;
        }
        watcher
            .watch(dir, RecursiveMode::Recursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
        watched.push(dir.clone());
    }
    std::thread::Builder::new()
        .name("weir-dev-projects".into())
        .spawn(move || {
            let mut changed: BTreeSet<usize> = BTreeSet::new();
            let mut last = Instant::now();
            loop {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(path) => {
                        for (i, dirs) in sources.iter().enumerate() {
                            let inside = dirs
                                .iter()
                                .any(|d| path.strip_prefix(d).is_ok_and(is_source_change));
                            if inside {
                                changed.insert(i);
                                last = Instant::now();
                            }
                        }
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                }
                if changed.is_empty() || last.elapsed() < SETTLE {
                    continue;
                }
                for i in std::mem::take(&mut changed) {
                    let (project, wasm) = &projects[i];
                    eprintln!(
                        "weir dev: sources of {} changed; rebuilding",
                        project.dir.display()
                    );
                    build_one(project, wasm);
                }
            }
        })
        .context("cannot start the build thread")?;
    Ok(Some(watcher))
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
    let (mut watcher, rx) = path_watcher()?;
    if plugins_dir.is_dir() {
        watcher
            .watch(&plugins_dir, RecursiveMode::Recursive)
            .with_context(|| format!("cannot watch {}", plugins_dir.display()))?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_are_found_from_the_wasm_the_config_runs() {
        let dir = tempfile::tempdir().unwrap();
        let py = dir.path().join("my-py");
        std::fs::create_dir(&py).unwrap();
        std::fs::write(py.join("app.py"), "").unwrap();
        assert_eq!(project_for(&py.join("my_py.wasm")).unwrap().dir, py);
        assert!(project_for(&py.join("other.wasm")).is_none());

        let rust = dir.path().join("my-rs");
        std::fs::create_dir(&rust).unwrap();
        std::fs::write(rust.join("Cargo.toml"), "[package]\nname = \"my-rs\"\n").unwrap();
        let wasm = rust.join("target/wasm32-wasip2/release/my_rs.wasm");
        let found = project_for(&wasm).unwrap();
        assert_eq!((found.dir, found.language), (rust.clone(), Language::Rust));
        assert!(project_for(&rust.join("my_rs.wasm")).is_none());

        // The workspace's own crates are cargo -p builds, not projects.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert!(
            project_for(&root.join("target/wasm32-wasip2/release/task_validator.wasm")).is_none()
        );
    }

    #[test]
    fn shared_code_outside_a_project_is_watched_too() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .canonicalize()
            .unwrap();
        let examples = root.join("examples/plugins");
        for (language, shared) in [
            ("python", "todo-events"),
            ("js", "todo-events"),
            ("go", "todo-events"),
        ] {
            let project = Project::open(&examples.join(language).join("task-validator")).unwrap();
            let dirs = source_dirs(&project);
            assert!(dirs.contains(&project.dir), "{dirs:?}");
            assert!(
                dirs.contains(&examples.join(language).join(shared)),
                "{language}: {dirs:?}"
            );
        }
        let go = Project::open(&examples.join("go/task-validator")).unwrap();
        assert!(source_dirs(&go).contains(&root.join("plugins/sdk-go")));
    }

    #[test]
    fn build_products_are_not_source_changes() {
        for source in [
            "p/app.py",
            "p/main.go",
            "p/plugin.js",
            "p/src/lib.rs",
            "p/go.mod",
        ] {
            assert!(is_source_change(Path::new(source)), "{source}");
        }
        for product in [
            "p/my_py.wasm",
            "p/target/debug/x",
            "p/node_modules/a/index.js",
            "p/__pycache__/app.cpython-311.pyc",
            "p/.app.py.swp",
            "p/app.py~",
        ] {
            assert!(!is_source_change(Path::new(product)), "{product}");
        }
    }
}
