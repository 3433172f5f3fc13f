//! The pipeline snapshot: everything the record path needs for one pipeline (plugin
//! versions, routes, retry and circuit settings, metric handles resolved once), in
//! one value that a reload replaces whole. A partition runner takes the current
//! snapshot at each record boundary and keeps it for the whole record.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{PipelineConfig, RetryConfig};
use crate::plugin::{Plugin, PluginVersion};
use crate::policy::CircuitWindow;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{DeadLetterMetrics, Retries, RouteMetrics, StageMetrics};

/// One pipeline's settings and plugins, as of one config and reload.
pub struct Snapshot<P: Plugin = PluginVersion> {
    /// The plugins every record runs through first; the whole chain of a pipeline
    /// without branches.
    pub prefix: Segment<P>,
    /// At least one; a pipeline without `[[pipeline.branch]]` is one branch.
    pub branches: Vec<Branch<P>>,
    pub retry: RetryConfig,
    /// The circuit's settings and window; kept across reloads that leave the
    /// settings alone.
    pub circuit: Arc<CircuitWindow>,
}

/// A chain of plugins with the metric handles of each stage.
pub struct Segment<P> {
    /// The `pipeline` label of its metrics: the pipeline's name for the prefix, the
    /// branch's for a branch.
    pub label: Arc<str>,
    pub plugins: Vec<Arc<P>>,
    /// One per plugin.
    pub metrics: Vec<StageMetrics>,
    pub retries: Retries,
}

/// One branch: its plugins after the prefix, and where its records go.
pub struct Branch<P> {
    pub segment: Segment<P>,
    /// Logical output name (an output's `to`) -> route.
    pub routes: HashMap<String, Arc<Route>>,
    /// Its name and dead-letter topic.
    pub info: Arc<BranchInfo>,
}

/// A destination topic, with what a delivery to it must know.
pub struct Route {
    pub topic: String,
    pub metrics: RouteMetrics,
    pub branch: Arc<BranchInfo>,
}

/// What a delivery needs to know of its branch: where its dead letters go, also
/// when the broker refuses an output.
pub struct BranchInfo {
    /// The branch's name: `weir.pipeline` and the `pipeline` metric label.
    pub name: Arc<str>,
    /// Its position among the pipeline's branches.
    pub index: usize,
    pub dlq_topic: String,
    pub dlq_metrics: RouteMetrics,
    /// `weir.plugin` of a refused output: the branch's last plugin.
    pub last_plugin: String,
    /// `weir_dlq_records_total` of the branch.
    pub dead_letters: DeadLetterMetrics,
}

impl<P: Plugin> Segment<P> {
    fn new(label: &str, plugins: Vec<Arc<P>>, metrics: &Metrics) -> Segment<P> {
        Segment {
            label: label.into(),
            metrics: plugins
                .iter()
                .map(|p| metrics.stage(label, p.name()))
                .collect(),
            retries: metrics.retries(label),
            plugins,
        }
    }

    /// The last plugin, which a bad route is blamed on.
    pub fn last(&self) -> Option<&Arc<P>> {
        self.plugins.last()
    }
}

impl<P: Plugin> Branch<P> {
    /// Names of the declared outputs, for an error message.
    pub fn declared(&self) -> String {
        let mut names: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        names.sort_unstable();
        names.join(", ")
    }
}

impl<P: Plugin> Snapshot<P> {
    /// Builds a pipeline's snapshot. `plugins` are loaded versions of every plugin
    /// of `config`, in [`PipelineConfig::all_plugins`] order; `previous` is the
    /// snapshot it replaces, if any.
    pub fn build(
        config: &PipelineConfig,
        plugins: Vec<Arc<P>>,
        metrics: &Metrics,
        previous: Option<&Snapshot<P>>,
    ) -> Snapshot<P> {
        let mut plugins = plugins.into_iter();
        let prefix: Vec<Arc<P>> = plugins.by_ref().take(config.prefix().len()).collect();
        let last_prefix = prefix.last().map(|p| p.identity().to_owned());
        let branches = config
            .branches()
            .iter()
            .enumerate()
            .map(|(index, b)| {
                let segment = Segment::new(
                    b.name,
                    plugins.by_ref().take(b.plugins.len()).collect(),
                    metrics,
                );
                let info = Arc::new(BranchInfo {
                    name: b.name.into(),
                    index,
                    dlq_topic: b.dlq(),
                    dlq_metrics: metrics.route(b.name, &b.dlq()),
                    last_plugin: segment
                        .last()
                        .map(|p| p.identity().to_owned())
                        .or_else(|| last_prefix.clone())
                        .unwrap_or_default(),
                    dead_letters: metrics.dead_letters(b.name),
                });
                let routes = b
                    .outputs
                    .iter()
                    .map(|(name, topic)| {
                        let route = Route {
                            topic: topic.get_ref().clone(),
                            metrics: metrics.route(b.name, topic.get_ref()),
                            branch: info.clone(),
                        };
                        (name.clone(), Arc::new(route))
                    })
                    .collect();
                Branch {
                    segment,
                    routes,
                    info,
                }
            })
            .collect();
        Snapshot {
            prefix: Segment::new(config.name(), prefix, metrics),
            branches,
            retry: config.retry,
            circuit: match previous {
                Some(p) if p.circuit.settings == config.circuit => p.circuit.clone(),
                _ => Arc::new(CircuitWindow::new(config.circuit)),
            },
        }
    }

    /// Every plugin in [`PipelineConfig::all_plugins`] order.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<P>> {
        self.prefix
            .plugins
            .iter()
            .chain(self.branches.iter().flat_map(|b| b.segment.plugins.iter()))
    }

    /// The pipeline's name.
    pub fn name(&self) -> &Arc<str> {
        &self.prefix.label
    }
}
