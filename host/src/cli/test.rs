//! `weir test`: the plugin author's inner loop. Runs a chain over JSON-lines events
//! with no broker and prints one JSON line per output or failure, in input order.
//!
//! Stateful plugins get in-memory state (as on one partition) and a virtual clock:
//! it starts at `--now` (default 0, the Unix epoch), moves to each event's
//! `timestamp-ms` and by `{"advance": "15m"}` / `{"advance-to": INSTANT}` lines,
//! and the timers that come due fire in due order; their lines name the timer.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;

use super::harness::Harness;
use crate::config::{ByteSize, HumanDuration};
use crate::events::{Line, output_line};
use crate::plugin::{CallSite, Limits, PluginEngine};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The plugin chain, first stage first.
    #[arg(required = true, value_name = "PLUGIN.wasm")]
    plugins: Vec<PathBuf>,
    /// JSON lines: {"key": ..., "value": {...} | "text" | null, "headers": {"k": "v"}}.
    /// `-` reads stdin.
    #[arg(long, value_name = "FILE.jsonl")]
    input: PathBuf,
    /// Plugin config `k=v` for every plugin, or `PLUGIN:k=v` for one (PLUGIN is the
    /// file stem, e.g. `reminder_deriver`, or its 1-based position).
    #[arg(long = "config", value_name = "[PLUGIN:]K=V")]
    config: Vec<String>,
    /// Memory cap per plugin instance.
    #[arg(long, default_value = "64MiB")]
    memory: String,
    /// Deadline of one call.
    #[arg(long, default_value = "200ms")]
    timeout: String,
    /// Largest output record accepted.
    #[arg(long, default_value = "1MiB")]
    max_output: String,
    /// Where the virtual clock of stateful plugins starts: an instant
    /// (`2026-11-26T09:00:00Z`) or milliseconds since the epoch.
    #[arg(long, value_name = "INSTANT")]
    now: Option<String>,
}

#[derive(Serialize)]
struct FailureLine<'a> {
    input: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    timer: Option<String>,
    failure: &'a str,
    message: String,
    plugin: &'a str,
}

pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let limits = Limits {
        memory: parse_size(&args.memory).context("--memory")? as usize,
        timeout: parse_duration(&args.timeout).context("--timeout")?,
        max_output: parse_size(&args.max_output).context("--max-output")? as usize,
        ..Limits::default()
    };
    let engine = PluginEngine::new()?;
    let mut versions = Vec::new();
    for (i, path) in args.plugins.iter().enumerate() {
        let config = plugin_config(&args.config, i, path)?;
        let version = engine.load(path, config, limits).map_err(|e| {
            let hint = super::build_hint(path)
                .map(|h| format!("\n  {h}"))
                .unwrap_or_default();
            anyhow::anyhow!("{e}{hint}")
        })?;
        versions.push(version);
    }
    let start = match &args.now {
        None => 0,
        Some(text) => parse_instant(text).context("--now")?,
    };
    let mut harness = Harness::new(&versions, start)?;

    let source_name = args.input.display().to_string();
    let reader: Box<dyn BufRead> = if args.input.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.input)
            .with_context(|| format!("cannot open --input {source_name}"))?;
        Box::new(BufReader::new(file))
    };
    let site = CallSite {
        pipeline: Arc::from("weir-test"),
        partition: 0,
        offset: 0,
        ..CallSite::default()
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut tally = Tally::default();
    for line in crate::events::read(reader) {
        let line = line.with_context(|| format!("cannot read {source_name}"))?;
        let (number, event) = match line {
            Line::Event(number, event) => (number, event),
            Line::Clock(number, advance) => {
                let site = CallSite {
                    offset: number as i64 - 1,
                    ..site.clone()
                };
                let to = advance.from(harness.now_ms());
                for fired in harness.advance_to(to, &site) {
                    let timer = Some(fired.timer.name.clone());
                    print_result(&mut out, &mut tally, number, timer, fired.result)?;
                }
                out.flush()?;
                continue;
            }
            Line::Malformed(number, message) => {
                eprintln!("error: {source_name}:{number}: {message}");
                tally.malformed += 1;
                continue;
            }
        };
        tally.events += 1;
        let site = CallSite {
            offset: event.offset,
            ..site.clone()
        };
        if let Some(at) = event.timestamp_ms {
            for fired in harness.advance_to(at, &site) {
                let timer = Some(fired.timer.name.clone());
                print_result(&mut out, &mut tally, number, timer, fired.result)?;
            }
        }
        let result = harness.event(&event, &site);
        print_result(&mut out, &mut tally, number, None, result)?;
        out.flush()?;
    }
    let pending = harness.pending_timers();
    if pending > 0 {
        eprintln!(
            "{pending} timer(s) still pending at the end of the input (an {{\"advance\": \"1d\"}} line fires those due by then)"
        );
    }
    let failures: Vec<_> = tally
        .failures
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    eprintln!(
        "{} event(s): {} output(s), {} failure(s){}",
        tally.events,
        tally.outputs,
        tally.failures.values().sum::<usize>(),
        if failures.is_empty() {
            String::new()
        } else {
            format!(" ({})", failures.join(", "))
        }
    );
    if tally.malformed > 0 {
        eprintln!(
            "error: {} malformed line(s) in {source_name} were skipped",
            tally.malformed
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the outputs (or the failure) of input line `number`, or of the timer
/// it fired.
fn print_result(
    out: &mut impl Write,
    tally: &mut Tally,
    number: usize,
    timer: Option<String>,
    result: Result<Vec<crate::plugin::Output>, crate::pipeline::ChainFailure>,
) -> anyhow::Result<()> {
    match result {
        Ok(outputs) => {
            for output in &outputs {
                let mut line = output_line(number, output);
                line.timer = timer.clone();
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
            tally.outputs += outputs.len();
        }
        Err(failure) => {
            let kind = failure.error.kind().as_str();
            let line = FailureLine {
                input: number,
                timer,
                failure: kind,
                message: failure.error.message(),
                plugin: &failure.plugin.name,
            };
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
            *tally.failures.entry(kind).or_default() += 1;
        }
    }
    Ok(())
}

/// An instant as `2026-11-26T09:00:00Z` or milliseconds since the epoch.
pub(super) fn parse_instant(text: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let at = humantime::parse_rfc3339_weak(text)
        .with_context(|| format!("{text:?}: expected an instant such as 2026-11-26T09:00:00Z"))?;
    Ok(at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64))
}

#[derive(Default)]
struct Tally {
    events: usize,
    outputs: usize,
    malformed: usize,
    failures: BTreeMap<&'static str, usize>,
}

pub(super) fn parse_size(text: &str) -> anyhow::Result<u64> {
    Ok(serde_json::from_value::<ByteSize>(Value::String(text.to_owned()))?.0)
}

pub(super) fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    Ok(serde_json::from_value::<HumanDuration>(Value::String(text.to_owned()))?.0)
}

/// The `--config` entries that apply to plugin `index` at `path`.
pub(super) fn plugin_config(
    entries: &[String],
    index: usize,
    path: &std::path::Path,
) -> anyhow::Result<Vec<(String, String)>> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let position = (index + 1).to_string();
    let mut config = Vec::new();
    for entry in entries {
        let Some((lhs, value)) = entry.split_once('=') else {
            bail!("--config {entry:?}: expected K=V or PLUGIN:K=V");
        };
        let (target, key) = match lhs.split_once(':') {
            Some((target, key)) => (Some(target), key),
            None => (None, lhs),
        };
        if key.is_empty() {
            bail!("--config {entry:?}: the key is empty");
        }
        if target.is_none_or(|t| t == stem || t == position) {
            config.push((key.to_owned(), value.to_owned()));
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn config_entries_target_plugins() {
        let entries = vec![
            "a=1".to_owned(),
            "reminder_deriver:lead-time=1h".to_owned(),
            "1:output=x".to_owned(),
        ];
        let first = plugin_config(&entries, 0, Path::new("x/task_validator.wasm")).unwrap();
        assert_eq!(
            first,
            vec![("a".into(), "1".into()), ("output".into(), "x".into())]
        );
        let second = plugin_config(&entries, 1, Path::new("x/reminder_deriver.wasm")).unwrap();
        assert_eq!(
            second,
            vec![("a".into(), "1".into()), ("lead-time".into(), "1h".into())]
        );
        assert!(plugin_config(&["novalue".into()], 0, Path::new("p.wasm")).is_err());
    }
}
