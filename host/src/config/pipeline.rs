//! A `[[pipeline]]` table: its input, plugin chain, outputs and dead-letter topic,
//! its `[[pipeline.branch]]` tables and the [`BranchView`] the runtime reads them
//! through, and its delivery mode. The `retry`, `limits` and `circuit` tables it
//! holds are in the parent module; the checks on it are in `checks`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{CircuitConfig, ConfigValue, EnvString, HumanDuration, LimitsConfig, RetryConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PipelineConfig {
    pub name: Spanned<String>,
    pub input: Spanned<String>,
    #[serde(default)]
    pub group: Option<EnvString>,
    /// The chain every record runs through; with branches, the prefix they share.
    #[serde(default)]
    pub plugins: Option<Spanned<Vec<PluginConfig>>>,
    #[serde(default)]
    pub outputs: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub dlq: Option<Spanned<String>>,
    /// `[[pipeline.branch]]`: chains that run after the shared prefix, each with its
    /// own outputs and dead-letter topic, on one consumption of the input.
    #[serde(default, rename = "branch")]
    pub branches: Vec<BranchConfig>,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// At most this many of the pipeline's partitions run plugins at once (its
    /// worker threads' worth of CPU). Unset: every assigned partition in parallel.
    #[serde(default)]
    pub workers: Option<Spanned<u32>>,
    #[serde(default)]
    pub delivery: Delivery,
    /// Exactly-once: how long a transaction stays open at most.
    #[serde(default = "default_transaction_interval")]
    pub transaction_interval: HumanDuration,
}

/// How outputs, dead letters and input offsets reach the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Outputs are produced as records are handled; an offset is committed once
    /// everything its record caused is acknowledged. A crash replays some records.
    #[default]
    AtLeastOnce,
    /// Outputs, dead letters and input offsets commit together in Kafka
    /// transactions; `read_committed` consumers see each record's effects once.
    ExactlyOnce,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::AtLeastOnce => "at-least-once",
            Delivery::ExactlyOnce => "exactly-once",
        }
    }
}

fn default_transaction_interval() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}

/// One `[[pipeline.branch]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BranchConfig {
    pub name: Spanned<String>,
    /// Runs on every output of the pipeline's shared `plugins`.
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
    #[serde(default)]
    pub outputs: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub dlq: Option<Spanned<String>>,
}

/// A branch as the runtime sees it: a pipeline without `[[pipeline.branch]]` is one
/// branch named after it, with no plugins of its own.
#[derive(Debug, Clone, Copy)]
pub struct BranchView<'a> {
    pub name: &'a str,
    pub plugins: &'a [PluginConfig],
    pub outputs: &'a BTreeMap<String, Spanned<String>>,
    dlq: Option<&'a Spanned<String>>,
    input: &'a str,
}

impl BranchView<'_> {
    /// The dead-letter topic: `dlq`, or `<input>.<name>.dlq`.
    pub fn dlq(&self) -> String {
        match self.dlq {
            Some(dlq) => dlq.get_ref().clone(),
            None => format!("{}.{}.dlq", self.input, self.name),
        }
    }
}

impl PipelineConfig {
    /// The `workers` value, if set.
    pub fn workers(&self) -> Option<u32> {
        self.workers.as_ref().map(|w| *w.get_ref())
    }

    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    pub fn input(&self) -> &str {
        self.input.get_ref()
    }

    /// The consumer group: `group`, or `weir-<name>`.
    pub fn group(&self) -> String {
        match &self.group {
            Some(group) => group.0.clone(),
            None => format!("weir-{}", self.name()),
        }
    }

    /// The plugins every record runs through first (with branches: the shared prefix).
    pub fn prefix(&self) -> &[PluginConfig] {
        self.plugins
            .as_ref()
            .map_or(&[], |p| p.get_ref().as_slice())
    }

    /// The branches: the `[[pipeline.branch]]` tables, or the pipeline itself as one.
    pub fn branches(&self) -> Vec<BranchView<'_>> {
        if self.branches.is_empty() {
            return vec![BranchView {
                name: self.name(),
                plugins: &[],
                outputs: &self.outputs,
                dlq: self.dlq.as_ref(),
                input: self.input(),
            }];
        }
        self.branches
            .iter()
            .map(|b| BranchView {
                name: b.name.get_ref(),
                plugins: &b.plugins,
                outputs: &b.outputs,
                dlq: b.dlq.as_ref(),
                input: self.input(),
            })
            .collect()
    }

    /// Every plugin in chain order: the prefix, then each branch's.
    pub fn all_plugins(&self) -> impl Iterator<Item = &PluginConfig> {
        self.prefix()
            .iter()
            .chain(self.branches.iter().flat_map(|b| b.plugins.iter()))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginConfig {
    pub path: EnvString,
    /// Handed to the plugin's `init`, values rendered as strings.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
}

impl PluginConfig {
    /// The config as `init` receives it.
    pub fn init_config(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{BRANCHED, GOOD, parse};

    #[test]
    fn branches_share_a_prefix_and_keep_their_own_routes() {
        let c = parse(BRANCHED).unwrap();
        let p = &c.pipelines[0];
        assert_eq!(p.group(), "weir-todo");
        assert_eq!(p.delivery, Delivery::ExactlyOnce);
        assert_eq!(p.transaction_interval.0, Duration::from_millis(100));
        assert_eq!(p.prefix().len(), 1);
        let branches = p.branches();
        assert_eq!(branches.len(), 2);
        assert_eq!(branches[0].name, "reminders");
        assert_eq!(branches[0].dlq(), "task-events.reminders.dlq");
        assert_eq!(branches[1].dlq(), "ui-sync.dlq");
        assert_eq!(p.all_plugins().count(), 3);
    }

    #[test]
    fn a_pipeline_without_branches_is_one_branch() {
        let c = parse(GOOD).unwrap();
        let branches = c.pipelines[0].branches();
        assert_eq!(branches.len(), 1);
        assert_eq!(branches[0].name, "reminders");
        assert!(branches[0].plugins.is_empty());
        assert_eq!(c.pipelines[0].delivery, Delivery::AtLeastOnce);
    }
}
