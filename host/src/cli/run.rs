//! `weir run`: run every pipeline until SIGINT/SIGTERM.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::config::WeirConfig;
use crate::kafka::Brokers;
use crate::pipeline::{Runtime, install_signal_handlers, load_plugins};
use crate::plugin::PluginEngine;
use crate::reload;
use crate::telemetry::{Health, Metrics, OpsEndpoint};

pub fn run(config_path: &Path, watch: bool) -> anyhow::Result<ExitCode> {
    let config = WeirConfig::load(config_path)?;
    let engine = PluginEngine::new()?;
    let plugins = load_plugins(&config, &engine).map_err(|e| {
        let missing = e
            .chain()
            .any(|c| c.to_string().starts_with("cannot read plugin"));
        let hint = if missing {
            "\n  build the plugins first: scripts/build-plugins"
        } else {
            ""
        };
        anyhow::anyhow!("{e:#}{hint}")
    })?;
    let brokers = Brokers::connect(&config)?;
    if !brokers.is_embedded() {
        brokers.check_reachable(&config)?;
    }
    brokers.provision(&config)?;
    let stop = Arc::new(AtomicBool::new(false));
    install_signal_handlers(&stop)?;
    let metrics = Metrics::new();
    let health = Arc::new(Health::default());
    let endpoint = OpsEndpoint::spawn(
        &config.metrics.listen.0,
        metrics.clone(),
        health.clone(),
        stop.clone(),
    )?;
    let runtime = Runtime::start(
        &config,
        &brokers,
        plugins,
        metrics.clone(),
        health,
        stop.clone(),
    )?;
    let reloader = if watch {
        Some(reload::spawn(
            config_path,
            config,
            engine,
            runtime.pipelines.clone(),
            metrics,
            stop,
        )?)
    } else {
        None
    };
    while !runtime.stopping() {
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!(
        "shutting down: no new records; finishing in-flight ones (a second signal exits at once)"
    );
    runtime.shutdown()?;
    endpoint.join();
    if let Some(reloader) = reloader {
        reloader.join();
    }
    tracing::info!("stopped cleanly: outputs delivered, offsets committed");
    Ok(ExitCode::SUCCESS)
}
