//! `weir check`: load the config and every plugin, init them, exit 0 or explain.
//! A plugin that cannot start under its memory cap or deadline is named with the
//! cap and, for Python, JavaScript and Go, the least that language needs; a cap that
//! lets a plugin start but is below its language's advice is warned about.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{PipelineConfig, WeirConfig};
use crate::plugin::{GuestLanguage, LoadError, PluginEngine, PluginVersion, size_text};

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = WeirConfig::load(config_path)?;
    let tracing = crate::telemetry::trace::Settings::of_process(&config.tracing)?;
    let engine = PluginEngine::new()?;
    let mut failed = false;
    for pipeline in &config.pipelines {
        match load(&config, pipeline, &engine) {
            Some(versions) => {
                print_pipeline(pipeline, &versions);
                let cap = pipeline.limits.output_cap(&config.kafka);
                println!(
                    "    outputs up to {} bytes each, framing included (set by {})",
                    cap.bytes, cap.by
                );
            }
            None => failed = true,
        }
    }
    if failed {
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "{}: {} pipeline(s), {} topic(s), brokers {}",
        config_path.display(),
        config.pipelines.len(),
        config.topics.len(),
        config.kafka.brokers
    );
    println!(
        "{}",
        crate::telemetry::trace::Settings::describe(tracing.as_ref())
    );
    Ok(ExitCode::SUCCESS)
}

/// Loads and inits every plugin of `pipeline`, printing each failure; `None` if any
/// failed.
fn load(
    config: &WeirConfig,
    pipeline: &PipelineConfig,
    engine: &PluginEngine,
) -> Option<Vec<std::sync::Arc<PluginVersion>>> {
    let limits = pipeline.limits.limits(&config.kafka);
    let mut versions = Vec::new();
    let mut ok = true;
    for plugin in pipeline.all_plugins() {
        let path = config.plugin_path(plugin);
        let loaded = engine
            .load(&path, plugin.init_config(), limits)
            .and_then(|version| version.instantiate().map(|_| version));
        match loaded {
            Ok(version) => {
                if let Some(advice) = memory_advice(&path, limits.memory) {
                    eprintln!("warning: pipeline {}: {advice}", pipeline.name());
                }
                versions.push(version)
            }
            Err(error) => {
                ok = false;
                eprintln!("error: pipeline {}: {error}", pipeline.name());
                if let LoadError::Read { path, .. } = &error
                    && let Some(hint) = super::build_hint(path)
                {
                    eprintln!("  {hint}");
                }
            }
        }
    }
    ok.then_some(versions)
}

/// Advice when a plugin starts under `memory` but is below its language's minimum
/// (with margin): it is likely to run out.
fn memory_advice(path: &Path, memory: usize) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let language = GuestLanguage::of_component(&bytes)?;
    let advised = language.min_memory();
    (memory < advised).then(|| {
        format!(
            "{} is a {} plugin and limits.memory = {} is below the {} it should have (see docs/languages.md)",
            path.display(),
            language.name(),
            size_text(memory as u64),
            size_text(advised as u64),
        )
    })
}

fn print_pipeline(pipeline: &PipelineConfig, versions: &[std::sync::Arc<PluginVersion>]) {
    let labels: Vec<String> = versions.iter().map(|v| v.label.to_string()).collect();
    let (prefix, mut rest) = labels.split_at(pipeline.prefix().len());
    let branches = pipeline.branches();
    let delivery = pipeline.delivery.as_str();
    if pipeline.branches.is_empty() {
        let branch = &branches[0];
        println!(
            "ok  pipeline {:<12} {} -> [{}] -> {{{}}}  group {}  dlq {}  {delivery}",
            pipeline.name(),
            pipeline.input(),
            prefix.join(" -> "),
            outputs(branch.outputs),
            pipeline.group(),
            branch.dlq(),
        );
        return;
    }
    println!(
        "ok  pipeline {:<12} {} -> [{}]  group {}  {delivery}",
        pipeline.name(),
        pipeline.input(),
        prefix.join(" -> "),
        pipeline.group(),
    );
    for branch in &branches {
        let (mine, others) = rest.split_at(branch.plugins.len());
        rest = others;
        println!(
            "ok  pipeline {:<12} branch of {}: -> [{}] -> {{{}}}  dlq {}",
            branch.name,
            pipeline.name(),
            mine.join(" -> "),
            outputs(branch.outputs),
            branch.dlq(),
        );
    }
}

fn outputs(outputs: &std::collections::BTreeMap<String, toml::Spanned<String>>) -> String {
    outputs
        .iter()
        .map(|(name, topic)| format!("{name} -> {}", topic.get_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}
