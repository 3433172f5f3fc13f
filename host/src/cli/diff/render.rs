//! What `weir diff` shows: each differing input as text (outputs to the same place
//! field by field, the rest whole) or as a JSON line, and the summary line that
//! counts every input.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::compare::{Change, ChangeKind, Row};
use super::inputs::Source;

impl Change {
    pub(super) fn json(&self, source: Source) -> Value {
        let shown = |rows: &[Row]| rows.iter().map(|r| r.shown.clone()).collect::<Vec<_>>();
        json!({
            "input": source.json(),
            "change": self.kind.as_str(),
            "removed": shown(&self.removed),
            "added": shown(&self.added),
        })
    }

    /// The change for a terminal: outputs to the same place that differ are shown
    /// field by field, the rest whole.
    pub(super) fn text(&self, source: Source) -> String {
        let mut text = format!("{source}: {}\n", self.kind.as_str());
        let mut added: Vec<Option<&Row>> = self.added.iter().map(Some).collect();
        for old in &self.removed {
            let partner = added
                .iter_mut()
                .find(|r| r.is_some_and(|r| same_place(&old.shown, &r.shown)));
            match partner.and_then(Option::take) {
                Some(new) => {
                    text += &format!("  ~ {}\n", describe(&old.shown));
                    let mut fields = Vec::new();
                    field_changes("", &old.key, &new.key, &mut fields);
                    for (i, field) in fields.iter().enumerate() {
                        if i == 12 {
                            text += &format!("      … {} more\n", fields.len() - i);
                            break;
                        }
                        text += &format!("      {field}\n");
                    }
                }
                None => text += &format!("  - {}\n", whole(&old.shown)),
            }
        }
        for new in added.into_iter().flatten() {
            text += &format!("  + {}\n", whole(&new.shown));
        }
        text
    }
}

/// Two outputs to the same destination with the same key, or two failures: shown
/// as a change of fields rather than a removal and an addition.
fn same_place(a: &Value, b: &Value) -> bool {
    match (a.get("failure"), b.get("failure")) {
        (Some(_), Some(_)) => true,
        (None, None) => a.get("to") == b.get("to") && a.get("key") == b.get("key"),
        _ => false,
    }
}

fn describe(row: &Value) -> String {
    match row.get("failure") {
        Some(kind) => format!(
            "failure {} at stage {} ({})",
            kind.as_str().unwrap_or("?"),
            row["stage"],
            row["plugin"].as_str().unwrap_or("?")
        ),
        None => format!("output to {} key {}", row["to"], row["key"]),
    }
}

fn whole(row: &Value) -> String {
    match row.get("failure") {
        Some(_) => format!(
            "{}: {}",
            describe(row),
            row["message"].as_str().unwrap_or("")
        ),
        None => format!(
            "{}: value {} headers {}",
            describe(row),
            crate::cli::cut(&row["value"].to_string(), 400),
            row["headers"]
        ),
    }
}

/// `path: old -> new` for every leaf that differs.
fn field_changes(path: &str, old: &Value, new: &Value, into: &mut Vec<String>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(other) => field_changes(&join(key), value, other, into),
                    None => into.push(format!(
                        "{}: {} -> (absent)",
                        join(key),
                        crate::cli::cut(&value.to_string(), 120)
                    )),
                }
            }
            for (key, value) in b {
                if !a.contains_key(key) {
                    into.push(format!(
                        "{}: (absent) -> {}",
                        join(key),
                        crate::cli::cut(&value.to_string(), 120)
                    ));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                field_changes(&join(&i.to_string()), x, y, into);
            }
        }
        (a, b) if a != b => into.push(format!(
            "{}: {} -> {}",
            if path.is_empty() { "value" } else { path },
            crate::cli::cut(&a.to_string(), 120),
            crate::cli::cut(&b.to_string(), 120)
        )),
        _ => {}
    }
}

#[derive(Debug, Default)]
pub(super) struct Summary {
    by_kind: BTreeMap<&'static str, usize>,
    old_outputs: usize,
    old_failures: usize,
    new_outputs: usize,
    new_failures: usize,
}

impl Summary {
    pub(super) fn count(&mut self, old: &[Row], new: &[Row]) {
        let failed = |rows: &[Row]| rows.iter().any(|r| r.key.get("failure").is_some());
        if failed(old) {
            self.old_failures += 1;
        } else {
            self.old_outputs += old.len();
        }
        if failed(new) {
            self.new_failures += 1;
        } else {
            self.new_outputs += new.len();
        }
    }

    pub(super) fn differ(&mut self, kind: ChangeKind) {
        *self.by_kind.entry(kind.as_str()).or_default() += 1;
    }

    pub(super) fn differing(&self) -> usize {
        self.by_kind.values().sum()
    }

    pub(super) fn line(&self, inputs: usize, show: usize) -> String {
        let differing = self.differing();
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let mut line = format!(
            "{inputs} input(s): {} identical, {differing} differ{}; OLD {} output(s) {} failure(s), NEW {} output(s) {} failure(s)",
            inputs - differing,
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            },
            self.old_outputs,
            self.old_failures,
            self.new_outputs,
            self.new_failures,
        );
        if differing > show {
            line += &format!("; {} not shown (--show all)", differing - show);
        }
        line
    }
}
