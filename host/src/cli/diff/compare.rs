//! The comparison: each chain run over every event into `Row`s (its outputs as
//! `weir test` prints them, or its failure by kind, stage and message), and per input
//! the `Change` from OLD's rows to NEW's, if any.

use std::sync::Arc;

use serde_json::{Value, json};

use super::inputs::{Input, Source};
use crate::cli::harness::Harness;
use crate::events::output_line;
use crate::plugin::{CallSite, PluginVersion};

/// One line of a chain's result for an input: an output or the failure.
#[derive(Debug, Clone)]
pub(super) struct Row {
    /// What is compared.
    pub(super) key: Value,
    /// What is shown (adds the failing plugin's name).
    pub(super) shown: Value,
}

impl PartialEq for Row {
    fn eq(&self, other: &Row) -> bool {
        self.key == other.key
    }
}

/// Runs every input through a fresh chain of `versions` (stateful plugins get
/// state and the virtual clock of `weir test`, starting at `start_ms`). An input's
/// rows are the outputs of the timers it fired (by its timestamp, or a clock
/// line's), then its own.
pub(super) fn run_chain(
    versions: &[Arc<PluginVersion>],
    inputs: &[(Source, Input)],
    ignore_messages: bool,
    start_ms: i64,
) -> anyhow::Result<Vec<Vec<Row>>> {
    let mut harness = Harness::new(versions, start_ms)?;
    let pipeline: Arc<str> = Arc::from("weir-diff");
    let mut results = Vec::with_capacity(inputs.len());
    for (i, (_, input)) in inputs.iter().enumerate() {
        let mut site = CallSite {
            pipeline: pipeline.clone(),
            partition: 0,
            offset: i as i64,
            ..CallSite::default()
        };
        let mut rows = Vec::new();
        let (at, event) = match input {
            Input::Event(event) => (event.timestamp_ms, Some(event)),
            Input::Clock(advance) => (Some(advance.from(harness.now_ms())), None),
        };
        if let Some(at) = at {
            for fired in harness.advance_to(at, &site) {
                rows.extend(rows_of(
                    versions,
                    fired.result,
                    Some(&fired.timer.name),
                    ignore_messages,
                ));
            }
        }
        if let Some(event) = event {
            site.partition = event.partition;
            site.offset = event.offset;
            let result = harness.event(event, &site);
            rows.extend(rows_of(versions, result, None, ignore_messages));
        }
        results.push(rows);
    }
    Ok(results)
}

/// The rows of one call's result.
fn rows_of(
    versions: &[Arc<PluginVersion>],
    result: Result<Vec<crate::plugin::Output>, crate::pipeline::ChainFailure>,
    timer: Option<&str>,
    ignore_messages: bool,
) -> Vec<Row> {
    {
        match result {
            Ok(outputs) => outputs
                .iter()
                .map(|o| {
                    let mut line = output_line(0, o);
                    line.timer = timer.map(str::to_owned);
                    let mut value = serde_json::to_value(line).unwrap_or_default();
                    if let Some(map) = value.as_object_mut() {
                        map.remove("input");
                    }
                    Row {
                        key: value.clone(),
                        shown: value,
                    }
                })
                .collect(),
            Err(failure) => {
                let stage = versions
                    .iter()
                    .position(|v| Arc::ptr_eq(v, &failure.plugin))
                    .map_or(0, |i| i + 1);
                let message = failure.error.message();
                let kind = failure.error.kind().as_str();
                let mut key = json!({"failure": kind, "stage": stage, "message": message});
                if ignore_messages && let Some(map) = key.as_object_mut() {
                    map.remove("message");
                }
                let shown = json!({
                    "failure": kind,
                    "stage": stage,
                    "plugin": failure.plugin.name,
                    "message": message,
                });
                vec![Row { key, shown }]
            }
        }
    }
}

/// How one input's results differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChangeKind {
    /// NEW has rows OLD has not, and nothing went.
    Added,
    /// OLD had rows NEW has not, and nothing came.
    Removed,
    /// Some rows went and others came.
    Changed,
    /// The same rows in another order.
    Reordered,
}

impl ChangeKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
            ChangeKind::Reordered => "reordered",
        }
    }
}

#[derive(Debug)]
pub(super) struct Change {
    pub(super) kind: ChangeKind,
    pub(super) removed: Vec<Row>,
    pub(super) added: Vec<Row>,
}

/// The difference between OLD's and NEW's rows for one input, if any.
pub(super) fn compare(old: &[Row], new: &[Row]) -> Option<Change> {
    if old == new {
        return None;
    }
    let mut added: Vec<Option<&Row>> = new.iter().map(Some).collect();
    let mut removed = Vec::new();
    for row in old {
        match added.iter_mut().find(|r| r.is_some_and(|r| r == row)) {
            Some(slot) => *slot = None,
            None => removed.push(row.clone()),
        }
    }
    let added: Vec<Row> = added.into_iter().flatten().cloned().collect();
    let kind = match (removed.is_empty(), added.is_empty()) {
        (true, true) => ChangeKind::Reordered,
        (true, false) => ChangeKind::Added,
        (false, true) => ChangeKind::Removed,
        (false, false) => ChangeKind::Changed,
    };
    Some(Change {
        kind,
        removed,
        added,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(to: &str, value: Value) -> Row {
        let v = json!({"to": to, "key": "k", "value": value, "headers": {}});
        Row {
            key: v.clone(),
            shown: v,
        }
    }

    #[test]
    fn changes_are_classified() {
        let a = output("out", json!({"n": 1, "t": "x"}));
        let b = output("out", json!({"n": 2, "t": "x"}));
        let kind = |old: Vec<&Row>, new: Vec<&Row>| {
            let old: Vec<Row> = old.into_iter().cloned().collect();
            let new: Vec<Row> = new.into_iter().cloned().collect();
            compare(&old, &new).map(|c| c.kind)
        };
        assert_eq!(kind(vec![&a], vec![&a]), None);
        assert_eq!(kind(vec![&a], vec![&a, &b]), Some(ChangeKind::Added));
        assert_eq!(kind(vec![&a, &b], vec![&b]), Some(ChangeKind::Removed));
        assert_eq!(
            kind(vec![&a, &b], vec![&b, &a]),
            Some(ChangeKind::Reordered)
        );
        let change = compare(std::slice::from_ref(&a), std::slice::from_ref(&b)).unwrap();
        assert_eq!(change.kind, ChangeKind::Changed);
        let text = change.text(Source::Line(3));
        assert!(text.starts_with("input 3: changed\n"), "{text}");
        assert!(text.contains("value.n: 1 -> 2"), "{text}");
        assert!(!text.contains("value.t"), "{text}");
    }
}
