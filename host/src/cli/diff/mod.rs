//! `weir diff OLD.wasm... -- NEW.wasm... --input FILE | --from-topic TOPIC`: runs two
//! versions of a plugin chain over the same events, with no broker writes, and shows
//! per input what the new version adds, removes or changes (outputs and failures).
//!
//! Outputs are compared as `weir test` prints them (destination, key, headers, the
//! value as JSON when it is JSON); failures by kind, failing stage (by position, so
//! the two chains' files may have different names) and message (unless
//! `--ignore-messages`). Exit 0 when the chains agree on every input, 1 when they
//! differ, 2 when the diff could not be run.
//!
//! `--from-topic` reads the last `--limit` records of a topic from the brokers of a
//! pipelines file, read-only: partitions are assigned, never subscribed, and nothing
//! is committed.
//!
//! This file runs the command; `args` parses the command line, `inputs` reads the
//! events, `compare` runs the chains and compares their rows, `render` shows the
//! changes and the summary.

mod args;
mod compare;
mod inputs;
mod render;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};

pub use self::args::DiffArgs;
use self::compare::{compare, run_chain};
use self::inputs::{read_file, read_topic};
use self::render::Summary;
use crate::plugin::{Limits, PluginEngine, PluginVersion};

pub fn run(args: DiffArgs) -> anyhow::Result<ExitCode> {
    match diff(args) {
        Ok(same) => Ok(if same {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        Err(error) => {
            eprintln!("error: {error:#}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Runs the diff; `Ok(true)` when the chains agree.
fn diff(mut args: DiffArgs) -> anyhow::Result<bool> {
    let chains = args.split()?;
    let limits = Limits {
        memory: crate::cli::test::parse_size(&args.memory).context("--memory")? as usize,
        timeout: crate::cli::test::parse_duration(&args.timeout).context("--timeout")?,
        max_output: crate::cli::test::parse_size(&args.max_output).context("--max-output")?
            as usize,
        ..Limits::default()
    };
    let show = match args.show.as_str() {
        "all" => usize::MAX,
        n => n
            .parse()
            .with_context(|| format!("--show {n:?}: expected a number or all"))?,
    };
    let (plugin_config, files): (Vec<String>, Vec<String>) =
        args.config.iter().cloned().partition(|c| c.contains('='));
    let events = match (&args.input, &args.from_topic) {
        (Some(_), Some(_)) => bail!("give --input or --from-topic, not both"),
        (None, None) => bail!("give the events: --input FILE.jsonl or --from-topic TOPIC"),
        (Some(input), None) => read_file(input)?,
        (None, Some(topic)) => {
            let config = match files.as_slice() {
                [] => PathBuf::from("pipelines.toml"),
                [one] => PathBuf::from(one),
                _ => bail!("--config names more than one pipelines file: {files:?}"),
            };
            read_topic(&config, topic, args.limit)?
        }
    };
    if args.from_topic.is_none() && !files.is_empty() {
        bail!(
            "--config {:?} is neither K=V nor used: a pipelines file is only read with --from-topic",
            files[0]
        );
    }

    let engine = PluginEngine::new()?;
    let load = |paths: &[PathBuf], extra: &[String]| -> anyhow::Result<Vec<Arc<PluginVersion>>> {
        let entries: Vec<String> = plugin_config.iter().chain(extra).cloned().collect();
        paths
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let config = crate::cli::test::plugin_config(&entries, i, path)?;
                Ok(engine.load(path, config, limits)?)
            })
            .collect()
    };
    let old = load(&chains.old, &args.old_config).context("OLD")?;
    let new = load(&chains.new, &args.new_config).context("NEW")?;

    let ignore_messages = args.ignore_messages;
    let start = match &args.now {
        None => 0,
        Some(text) => crate::cli::test::parse_instant(text).context("--now")?,
    };
    let (old_rows, new_rows) = std::thread::scope(|scope| {
        let old = scope.spawn(|| run_chain(&old, &events, ignore_messages, start));
        let new = run_chain(&new, &events, ignore_messages, start);
        let old = old
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the OLD chain's thread panicked")));
        (old, new)
    });
    let (old_rows, new_rows) = (old_rows.context("OLD")?, new_rows.context("NEW")?);

    let mut summary = Summary::default();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for ((source, _), (old, new)) in events.iter().zip(old_rows.iter().zip(&new_rows)) {
        summary.count(old, new);
        let Some(change) = compare(old, new) else {
            continue;
        };
        summary.differ(change.kind);
        if args.json {
            serde_json::to_writer(&mut out, &change.json(*source))?;
            writeln!(out)?;
        } else if summary.differing() <= show {
            write!(out, "{}", change.text(*source))?;
        }
    }
    let line = summary.line(events.len(), show);
    if args.json {
        eprintln!("{line}");
    } else {
        writeln!(out, "{line}")?;
    }
    Ok(summary.differing() == 0)
}
