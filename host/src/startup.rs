//! The start-up sequence, once for `weir run`, `dev`, `demo` and `check`: read the
//! config, load and init every plugin, reach the broker, provision the topics, serve
//! the operations endpoint, start the pipelines (and the reloader); and the way
//! down: stop within the drain timeout.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::WeirConfig;
use crate::kafka::Brokers;
use crate::pipeline::keyed::StatefulSlots;
use crate::pipeline::{Runtime, install_signal_handlers, load_plugins};
use crate::plugin::{LoadError, PluginEngine, PluginVersion};
use crate::reload::{self, Reloader};
use crate::shutdown::Shutdown;
use crate::telemetry::trace::{self, Settings};
use crate::telemetry::{Health, Metrics, OpsEndpoint};

/// A config with its plugins loaded and initialised.
pub struct Loaded {
    pub config: WeirConfig,
    /// Tracing as `[tracing]` and the `OTEL_*` variables ask (`None`: off).
    pub tracing: Option<Settings>,
    pub engine: PluginEngine,
    /// Per pipeline, in `all_plugins` order.
    pub plugins: Vec<Vec<Arc<PluginVersion>>>,
}

/// Reads `config_path` and loads every plugin it names. `hint` is added to the
/// error when a plugin file is missing.
pub fn load(config_path: &Path, hint: &str) -> anyhow::Result<Loaded> {
    let config = WeirConfig::load(config_path)?;
    load_config(config, hint)
}

/// Loads every plugin `config` names.
pub fn load_config(config: WeirConfig, hint: &str) -> anyhow::Result<Loaded> {
    let tracing = Settings::of_process(&config.tracing)?;
    let engine = PluginEngine::new()?;
    let plugins = load_plugins(&config, &engine).map_err(|e| {
        let missing = e
            .chain()
            .any(|c| matches!(c.downcast_ref(), Some(LoadError::Read { .. })));
        let hint = if missing {
            format!("\n  build the plugins first: {hint}")
        } else {
            String::new()
        };
        anyhow::anyhow!("{e:#}{hint}")
    })?;
    Ok(Loaded {
        config,
        tracing,
        engine,
        plugins,
    })
}

/// What to start besides the pipelines.
#[derive(Debug, Default)]
pub struct Options {
    /// Serve `/metrics`, `/healthz` and `/readyz` on `[metrics] listen`.
    pub endpoint: bool,
    /// Hot reload, watching this config file and the plugins.
    pub watch: Option<PathBuf>,
}

/// Running pipelines and what runs with them.
pub struct Running {
    pub runtime: Runtime,
    pub brokers: Brokers,
    pub config: WeirConfig,
    endpoint: Option<OpsEndpoint>,
    reloader: Option<Reloader>,
}

impl Loaded {
    /// Connects to the brokers (checking they answer), provisions the topics and
    /// starts every pipeline. SIGINT/SIGTERM stop them.
    pub fn start(self, options: Options) -> anyhow::Result<Running> {
        let Loaded {
            config,
            tracing,
            engine,
            plugins,
        } = self;
        if let Some(settings) = &tracing {
            // Before the pipelines: they are traced from their first record.
            trace::start(settings).map_err(|e| anyhow::anyhow!("tracing: {e}"))?;
        }
        let brokers = Brokers::connect(&config)?;
        if !brokers.is_embedded() {
            brokers.check_reachable(&config)?;
        }
        brokers.provision(&config)?;
        brokers.provision_changelogs(&config, &changelogs(&config, &plugins))?;
        let shutdown = Shutdown::new();
        install_signal_handlers(&shutdown)?;
        let metrics = Metrics::new();
        let health = Arc::new(Health::default());
        let endpoint = options
            .endpoint
            .then(|| {
                OpsEndpoint::spawn(
                    &config.metrics.listen.0,
                    metrics.clone(),
                    health.clone(),
                    shutdown.clone(),
                )
            })
            .transpose()?;
        let runtime = Runtime::start(
            &config,
            &brokers,
            plugins,
            metrics.clone(),
            health,
            shutdown.clone(),
        )?;
        let reloader = match &options.watch {
            Some(path) => Some(reload::spawn(
                path,
                config.clone(),
                engine,
                runtime.pipelines.clone(),
                metrics,
                shutdown,
            )?),
            None => None,
        };
        Ok(Running {
            runtime,
            brokers,
            config,
            endpoint,
            reloader,
        })
    }
}

impl Running {
    /// Runs until SIGINT/SIGTERM (or a fatal client error), then stops.
    pub fn run_until_stopped(self) -> anyhow::Result<()> {
        self.runtime.wait();
        tracing::info!(
            "shutting down: no new records; finishing in-flight ones (a second signal exits at once)"
        );
        self.stop()?;
        tracing::info!("stopped cleanly: outputs delivered, offsets committed");
        Ok(())
    }

    /// Stops everything within the drain timeout.
    pub fn stop(self) -> anyhow::Result<()> {
        let result = self.runtime.shutdown();
        let deadline = Instant::now() + Duration::from_secs(2);
        if let Some(endpoint) = self.endpoint {
            endpoint.join(deadline);
        }
        if let Some(reloader) = self.reloader {
            reloader.join(deadline);
        }
        // The last records' spans.
        trace::shutdown(Duration::from_secs(2));
        Ok(result?)
    }
}

/// Each stateful slot's changelog topic, with its pipeline's input topic.
pub fn changelogs(
    config: &WeirConfig,
    plugins: &[Vec<Arc<PluginVersion>>],
) -> Vec<(String, String)> {
    config
        .pipelines
        .iter()
        .zip(plugins)
        .flat_map(|(pipeline, versions)| {
            let slots = StatefulSlots::of(
                pipeline,
                versions,
                rdkafka::ClientConfig::new(),
                pipeline.limits.limits(&config.kafka),
                None,
                None,
            );
            slots
                .slots
                .iter()
                .map(|s| (pipeline.input().to_owned(), s.topic.to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}
