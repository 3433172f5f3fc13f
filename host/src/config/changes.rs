//! What a config change means for a running weir: which parts it can apply live (a
//! plugin's `config`, `limits`, `retry`, `circuit`) and which need a restart.
//!
//! A pure function of two configs, so the rules are unit tested here; the reloader
//! only acts on the answer.

use super::{PipelineConfig, WeirConfig};

/// The difference between the running config and a new one.
#[derive(Debug, Default, PartialEq)]
pub struct ConfigChange {
    /// Changed sections that only a restart applies (`[kafka]`, `[topics]`, ...).
    pub restart: Vec<String>,
    /// Pipelines that changed, in config order. Empty when the list of pipelines
    /// changed: then nothing is applied.
    pub pipelines: Vec<PipelineChange>,
}

/// One changed pipeline.
#[derive(Debug, PartialEq)]
pub struct PipelineChange {
    /// Its position in both configs.
    pub index: usize,
    pub name: String,
    /// Changed keys that need a restart. When any is set, none of this pipeline's
    /// changes may be applied: a change is never half-applied.
    pub restart: Vec<&'static str>,
    /// Stages (positions in [`PipelineConfig::all_plugins`] order) whose plugin
    /// must be loaded again: its `config` changed, or the pipeline's `limits`.
    pub stages: Vec<usize>,
    pub retry: bool,
    pub circuit: bool,
}

impl PipelineChange {
    /// Whether the change can be applied without a restart.
    pub fn is_live(&self) -> bool {
        self.restart.is_empty()
    }
}

/// Compares the running config with a new one.
pub fn diff(old: &WeirConfig, new: &WeirConfig) -> ConfigChange {
    let mut change = ConfigChange::default();
    if new.kafka != old.kafka {
        change.restart.push("[kafka]".to_owned());
    }
    if new.state != old.state {
        change.restart.push("[state]".to_owned());
    }
    if new.metrics != old.metrics {
        change.restart.push("[metrics]".to_owned());
    }
    let topics = |c: &WeirConfig| {
        c.topics
            .iter()
            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
            .collect::<Vec<_>>()
    };
    if topics(new) != topics(old) {
        change.restart.push("[topics]".to_owned());
    }
    let names = |c: &WeirConfig| {
        c.pipelines
            .iter()
            .map(|p| p.name().to_owned())
            .collect::<Vec<_>>()
    };
    if names(new) != names(old) {
        change.restart.push("the list of pipelines".to_owned());
        return change;
    }
    for (index, (o, n)) in old.pipelines.iter().zip(&new.pipelines).enumerate() {
        if let Some(p) = diff_pipeline(old, o, new, n, index) {
            change.pipelines.push(p);
        }
    }
    change
}

fn diff_pipeline(
    old_config: &WeirConfig,
    old: &PipelineConfig,
    new_config: &WeirConfig,
    new: &PipelineConfig,
    index: usize,
) -> Option<PipelineChange> {
    let mut restart = Vec::new();
    if new.input() != old.input() {
        restart.push("input");
    }
    if new.group() != old.group() {
        restart.push("group");
    }
    let shape = |p: &PipelineConfig| {
        p.branches()
            .iter()
            .map(|b| (b.name.to_owned(), b.plugins.len()))
            .collect::<Vec<_>>()
    };
    if shape(new) != shape(old) || new.prefix().len() != old.prefix().len() {
        restart.push("branches");
    }
    let outputs = |p: &PipelineConfig| {
        p.branches()
            .iter()
            .map(|b| {
                b.outputs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    if outputs(new) != outputs(old) {
        restart.push("outputs");
    }
    let dlqs = |p: &PipelineConfig| p.branches().iter().map(|b| b.dlq()).collect::<Vec<_>>();
    if dlqs(new) != dlqs(old) {
        restart.push("dlq");
    }
    let paths = |c: &WeirConfig, p: &PipelineConfig| {
        p.all_plugins()
            .map(|plugin| c.plugin_path(plugin))
            .collect::<Vec<_>>()
    };
    if paths(new_config, new) != paths(old_config, old) {
        restart.push("plugins (which files)");
    }
    if new.workers() != old.workers() {
        restart.push("workers");
    }
    if new.delivery != old.delivery {
        restart.push("delivery");
    }
    if new.transaction_interval != old.transaction_interval {
        restart.push("transaction-interval");
    }
    let limits = new.limits != old.limits;
    let stages: Vec<usize> = new
        .all_plugins()
        .zip(old.all_plugins())
        .enumerate()
        .filter(|(_, (n, o))| limits || n.config != o.config)
        .map(|(i, _)| i)
        .collect();
    let change = PipelineChange {
        index,
        name: new.name().to_owned(),
        restart,
        stages,
        retry: new.retry != old.retry,
        circuit: new.circuit != old.circuit,
    };
    let changed =
        !change.restart.is_empty() || !change.stages.is_empty() || change.retry || change.circuit;
    changed.then_some(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[topics.in]
[topics.a]
[topics.b]

[[pipeline]]
name = "todo"
input = "in"
plugins = [{ path = "validator.wasm" }]
retry = { max-attempts = 3 }

[[pipeline.branch]]
name = "left"
plugins = [{ path = "left.wasm", config = { lead-time = "15m" } }]
outputs = { out = "a" }

[[pipeline.branch]]
name = "right"
plugins = [{ path = "right.wasm" }]
outputs = { out = "b" }
"#;

    fn config(text: &str) -> WeirConfig {
        WeirConfig::parse(text, "pipelines.toml").expect("valid config")
    }

    fn change(new: &str) -> ConfigChange {
        diff(&config(BASE), &config(new))
    }

    #[test]
    fn no_change_is_empty() {
        assert_eq!(change(BASE), ConfigChange::default());
    }

    #[test]
    fn plugin_config_retry_and_circuit_are_live() {
        let new = BASE
            .replace("\"15m\"", "\"1h\"")
            .replace("max-attempts = 3", "max-attempts = 4")
            .replace("retry = {", "circuit = { failure-ratio = 0.9 }\nretry = {");
        let change = change(&new);
        assert!(change.restart.is_empty());
        let p = &change.pipelines[0];
        assert!(p.is_live(), "{p:?}");
        assert_eq!(p.stages, vec![1], "the left branch's plugin only");
        assert!(p.retry && p.circuit);
    }

    #[test]
    fn limits_reload_every_stage() {
        let new = BASE.replace("retry = {", "limits = { memory = \"32MiB\" }\nretry = {");
        assert_eq!(change(&new).pipelines[0].stages, vec![0, 1, 2]);
    }

    #[test]
    fn routing_and_files_need_a_restart_and_nothing_is_half_applied() {
        let new = BASE
            .replace("out = \"b\"", "out = \"a\"")
            .replace("right.wasm", "right2.wasm")
            .replace("max-attempts = 3", "max-attempts = 4");
        let p = &change(&new).pipelines[0];
        assert_eq!(p.restart, vec!["outputs", "plugins (which files)"]);
        assert!(!p.is_live());
    }

    #[test]
    fn delivery_branches_and_sections_need_a_restart() {
        let new = BASE
            .replace("retry = {", "delivery = \"exactly-once\"\nretry = {")
            .replace("name = \"right\"", "name = \"rite\"")
            .replace("[topics.b]", "[topics.b]\npartitions = 3");
        let change = change(&new);
        assert_eq!(change.restart, vec!["[topics]"]);
        assert_eq!(
            change.pipelines[0].restart,
            vec!["branches", "dlq", "delivery"]
        );
    }

    #[test]
    fn a_changed_list_of_pipelines_applies_nothing() {
        let change = change(&BASE.replace("name = \"todo\"", "name = \"todos\""));
        assert_eq!(change.restart, vec!["the list of pipelines"]);
        assert!(change.pipelines.is_empty());
    }
}
