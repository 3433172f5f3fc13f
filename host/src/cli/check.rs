//! `weir check`: load the config and every plugin, init them, exit 0 or explain.

use std::path::Path;
use std::process::ExitCode;

use crate::config::WeirConfig;
use crate::pipeline::Chain;
use crate::plugin::{LoadError, PluginEngine};

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = WeirConfig::load(config_path)?;
    let engine = PluginEngine::new()?;
    let mut failed = false;
    for pipeline in &config.pipelines {
        let limits = pipeline.limits.limits();
        let mut versions = Vec::new();
        for plugin in pipeline.plugins.get_ref() {
            let path = config.plugin_path(plugin);
            match engine.load(&path, plugin.init_config(), limits) {
                Ok(version) => versions.push(version),
                Err(error) => {
                    failed = true;
                    eprintln!("error: pipeline {}: {error}", pipeline.name());
                    if let LoadError::Read { path, .. } = &error
                        && let Some(hint) = super::build_hint(path)
                    {
                        eprintln!("  {hint}");
                    }
                }
            }
        }
        if versions.len() != pipeline.plugins.get_ref().len() {
            continue;
        }
        if let Err(error) = Chain::new(&versions) {
            failed = true;
            eprintln!("error: pipeline {}: {error}", pipeline.name());
            continue;
        }
        let chain: Vec<_> = versions.iter().map(|v| v.label.to_string()).collect();
        let outputs: Vec<_> = pipeline
            .outputs
            .iter()
            .map(|(name, topic)| format!("{name} -> {}", topic.get_ref()))
            .collect();
        println!(
            "ok  pipeline {:<12} {} -> [{}] -> {{{}}}  group {}  dlq {}",
            pipeline.name(),
            pipeline.input(),
            chain.join(" -> "),
            outputs.join(", "),
            pipeline.group(),
            pipeline.dlq(),
        );
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
    Ok(ExitCode::SUCCESS)
}
