//! The fuzz targets' checks (fuzz/src/lib.rs) over the seed corpus (fuzz/corpus/)
//! and every input a fuzz run found a bug with (fuzz/regressions/, where
//! `scripts/fuzz` copies crashes), without libFuzzer: a fixed bug stays fixed.

#[path = "../fuzz/src/lib.rs"]
mod checks;
mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

/// The saved inputs of a fuzz target, seeds first, in name order.
fn inputs(target: &str) -> Vec<PathBuf> {
    assert!(checks::TARGETS.contains(&target), "{target}");
    let mut all = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = common::root().join("fuzz").join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.expect("a readable directory").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        all.extend(files);
    }
    all
}

/// Runs `check` on every saved input of `target`; fails naming each input that
/// broke a check.
fn replay(target: &str, mut check: impl FnMut(&[u8])) {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no seed corpus for {target}");
    let failed: Vec<String> = inputs
        .iter()
        .filter_map(|path| {
            let data = std::fs::read(path).expect("a readable input");
            catch_unwind(AssertUnwindSafe(|| check(&data)))
                .err()
                .map(|_| path.display().to_string())
        })
        .collect();
    assert!(failed.is_empty(), "{target}: checks failed on {failed:#?}");
}

#[test]
fn config_inputs_pass_the_config_checks() {
    replay("config", checks::config);
}

#[test]
fn jsonl_inputs_pass_the_jsonl_checks() {
    replay("jsonl", checks::jsonl);
}

#[test]
fn dlq_header_inputs_pass_the_dlq_checks() {
    replay("dlq_headers", checks::dlq_headers);
}

#[test]
fn plugin_output_inputs_pass_the_record_path_checks() {
    let mut harness = checks::Harness::new(&common::plugin("recipe_plugin"));
    replay("plugin_outputs", |data| {
        checks::plugin_outputs(&mut harness, data)
    });
}
