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

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::{ClientConfig, Offset};
use serde_json::{Value, json};

use crate::config::WeirConfig;
use crate::events::{Line, output_line};
use crate::kafka::{Brokers, CONNECT_TIMEOUT, headers_of};
use crate::pipeline::Chain;
use crate::plugin::{CallSite, Event, Limits, PluginEngine, PluginVersion};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Options may come before the chains or after NEW; the first `--` separates OLD from NEW.

Examples:
  weir diff v1/reminder_deriver.wasm -- v2/reminder_deriver.wasm --input examples/task-events.jsonl
  weir diff deriver.wasm -- deriver.wasm --old-config lead-time=15m --new-config lead-time=1h --input events.jsonl
  weir diff old.wasm -- new.wasm --from-topic task-events --limit 5000 --config pipelines.toml")]
pub struct DiffArgs {
    /// Events as JSON lines, as `weir test` reads them (`-` for stdin).
    #[arg(long, value_name = "FILE.jsonl")]
    input: Option<PathBuf>,
    /// Read the events from this topic instead, on the brokers of the pipelines file
    /// (`--config pipelines.toml`, the default). Read-only: nothing is committed.
    #[arg(long, value_name = "TOPIC")]
    from_topic: Option<String>,
    /// With --from-topic: how many records, the latest of the topic.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Plugin config `[PLUGIN:]K=V` for both chains (PLUGIN: file stem or 1-based
    /// position), or, without `=`, the pipelines file whose brokers --from-topic reads.
    #[arg(long = "config", value_name = "[PLUGIN:]K=V|FILE.toml")]
    config: Vec<String>,
    /// Plugin config for the OLD chain only.
    #[arg(long = "old-config", value_name = "[PLUGIN:]K=V")]
    old_config: Vec<String>,
    /// Plugin config for the NEW chain only.
    #[arg(long = "new-config", value_name = "[PLUGIN:]K=V")]
    new_config: Vec<String>,
    /// Memory cap per plugin instance.
    #[arg(long, default_value = "64MiB")]
    memory: String,
    /// Deadline of one call.
    #[arg(long, default_value = "200ms")]
    timeout: String,
    /// Largest output record accepted.
    #[arg(long, default_value = "1MiB")]
    max_output: String,
    /// Compare failures by kind and stage only (ports in other languages word their
    /// messages differently).
    #[arg(long)]
    ignore_messages: bool,
    /// How many differing inputs to show in full (`all` for every one); the summary
    /// counts them all.
    #[arg(long, default_value = "100", value_name = "N|all")]
    show: String,
    /// One JSON line per differing input on stdout (`input`, `change`, `removed`,
    /// `added`), for scripts.
    #[arg(long)]
    json: bool,
    /// `OLD.wasm... -- NEW.wasm...`: the two chains, first stage first.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "OLD.wasm... -- NEW.wasm..."
    )]
    chains: Vec<String>,
}

/// Options that may follow the chains: (name, takes a value).
const OPTIONS: &[(&str, bool)] = &[
    ("--input", true),
    ("--from-topic", true),
    ("--limit", true),
    ("--config", true),
    ("--old-config", true),
    ("--new-config", true),
    ("--memory", true),
    ("--timeout", true),
    ("--max-output", true),
    ("--show", true),
    ("--ignore-messages", false),
    ("--json", false),
];

/// The two chains, and the options found among them.
#[derive(Debug, Default, PartialEq)]
struct Chains {
    old: Vec<PathBuf>,
    new: Vec<PathBuf>,
}

impl DiffArgs {
    /// Splits `chains` at the first `--`, moving any option found there into `self`.
    fn split(&mut self) -> anyhow::Result<Chains> {
        let mut chains = Chains::default();
        let mut seen_separator = false;
        let mut tokens = std::mem::take(&mut self.chains).into_iter();
        while let Some(token) = tokens.next() {
            if token == "--" && !seen_separator {
                seen_separator = true;
                continue;
            }
            if token.starts_with("--") && token.len() > 2 {
                let (name, inline) = match token.split_once('=') {
                    Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                    None => (token.clone(), None),
                };
                let Some(&(_, takes_value)) = OPTIONS.iter().find(|(o, _)| *o == name) else {
                    bail!("unknown option {name} (see weir diff --help)");
                };
                let value = if takes_value {
                    match inline {
                        Some(v) => v,
                        None => tokens
                            .next()
                            .with_context(|| format!("{name} needs a value"))?,
                    }
                } else {
                    String::new()
                };
                self.set(&name, value)?;
                continue;
            }
            let side = if seen_separator {
                &mut chains.new
            } else {
                &mut chains.old
            };
            side.push(PathBuf::from(token));
        }
        if !seen_separator || chains.old.is_empty() || chains.new.is_empty() {
            bail!(
                "give both chains, separated by --: weir diff OLD.wasm... -- NEW.wasm... --input FILE"
            );
        }
        Ok(chains)
    }

    fn set(&mut self, name: &str, value: String) -> anyhow::Result<()> {
        match name {
            "--input" => self.input = Some(PathBuf::from(value)),
            "--from-topic" => self.from_topic = Some(value),
            "--limit" => {
                self.limit = value
                    .parse()
                    .with_context(|| format!("--limit {value:?}: expected a number"))?
            }
            "--config" => self.config.push(value),
            "--old-config" => self.old_config.push(value),
            "--new-config" => self.new_config.push(value),
            "--memory" => self.memory = value,
            "--timeout" => self.timeout = value,
            "--max-output" => self.max_output = value,
            "--show" => self.show = value,
            "--ignore-messages" => self.ignore_messages = true,
            "--json" => self.json = true,
            _ => unreachable!("every name of OPTIONS is handled"),
        }
        Ok(())
    }
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    /// 1-based line of the input file.
    Line(usize),
    /// A record of the topic.
    Record { partition: i32, offset: i64 },
}

impl Source {
    fn json(self) -> Value {
        match self {
            Source::Line(n) => json!(n),
            Source::Record { partition, offset } => json!(format!("{partition}/{offset}")),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Line(n) => write!(f, "input {n}"),
            Source::Record { partition, offset } => {
                write!(f, "record {partition}/{offset}")
            }
        }
    }
}

/// One line of a chain's result for an input: an output or the failure.
#[derive(Debug, Clone)]
struct Row {
    /// What is compared.
    key: Value,
    /// What is shown (adds the failing plugin's name).
    shown: Value,
}

impl PartialEq for Row {
    fn eq(&self, other: &Row) -> bool {
        self.key == other.key
    }
}

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
        memory: super::test::parse_size(&args.memory).context("--memory")? as usize,
        timeout: super::test::parse_duration(&args.timeout).context("--timeout")?,
        max_output: super::test::parse_size(&args.max_output).context("--max-output")? as usize,
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
                let config = super::test::plugin_config(&entries, i, path)?;
                Ok(engine.load(path, config, limits)?)
            })
            .collect()
    };
    let old = load(&chains.old, &args.old_config).context("OLD")?;
    let new = load(&chains.new, &args.new_config).context("NEW")?;

    let ignore_messages = args.ignore_messages;
    let (old_rows, new_rows) = std::thread::scope(|scope| {
        let old = scope.spawn(|| run_chain(&old, &events, ignore_messages));
        let new = run_chain(&new, &events, ignore_messages);
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

/// Runs every event through a fresh chain of `versions`.
fn run_chain(
    versions: &[Arc<PluginVersion>],
    events: &[(Source, Event)],
    ignore_messages: bool,
) -> anyhow::Result<Vec<Vec<Row>>> {
    let mut chain = Chain::new(versions)?;
    let pipeline: Arc<str> = Arc::from("weir-diff");
    let mut results = Vec::with_capacity(events.len());
    for (_, event) in events {
        let site = CallSite {
            pipeline: pipeline.clone(),
            partition: event.partition,
            offset: event.offset,
        };
        let rows = match chain.process(event, &site) {
            Ok(outputs) => outputs
                .iter()
                .map(|o| {
                    let mut value = serde_json::to_value(output_line(0, o)).unwrap_or_default();
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
        };
        results.push(rows);
    }
    Ok(results)
}

/// How one input's results differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeKind {
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
    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
            ChangeKind::Reordered => "reordered",
        }
    }
}

#[derive(Debug)]
struct Change {
    kind: ChangeKind,
    removed: Vec<Row>,
    added: Vec<Row>,
}

/// The difference between OLD's and NEW's rows for one input, if any.
fn compare(old: &[Row], new: &[Row]) -> Option<Change> {
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

impl Change {
    fn json(&self, source: Source) -> Value {
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
    fn text(&self, source: Source) -> String {
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
            super::cut(&row["value"].to_string(), 400),
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
                        super::cut(&value.to_string(), 120)
                    )),
                }
            }
            for (key, value) in b {
                if !a.contains_key(key) {
                    into.push(format!(
                        "{}: (absent) -> {}",
                        join(key),
                        super::cut(&value.to_string(), 120)
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
            super::cut(&a.to_string(), 120),
            super::cut(&b.to_string(), 120)
        )),
        _ => {}
    }
}

#[derive(Debug, Default)]
struct Summary {
    by_kind: BTreeMap<&'static str, usize>,
    old_outputs: usize,
    old_failures: usize,
    new_outputs: usize,
    new_failures: usize,
}

impl Summary {
    fn count(&mut self, old: &[Row], new: &[Row]) {
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

    fn differ(&mut self, kind: ChangeKind) {
        *self.by_kind.entry(kind.as_str()).or_default() += 1;
    }

    fn differing(&self) -> usize {
        self.by_kind.values().sum()
    }

    fn line(&self, inputs: usize, show: usize) -> String {
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

fn read_file(input: &Path) -> anyhow::Result<Vec<(Source, Event)>> {
    let name = input.display().to_string();
    let reader: Box<dyn BufRead> = if input.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file =
            std::fs::File::open(input).with_context(|| format!("cannot open --input {name}"))?;
        Box::new(BufReader::new(file))
    };
    let mut events = Vec::new();
    let mut malformed = 0;
    for line in crate::events::read(reader) {
        match line.with_context(|| format!("cannot read {name}"))? {
            Line::Event(number, event) => events.push((Source::Line(number), event)),
            Line::Malformed(number, message) => {
                eprintln!("error: {name}:{number}: {message}");
                malformed += 1;
            }
        }
    }
    if malformed > 0 {
        bail!("{malformed} malformed line(s) in {name}: fix them, the diff needs every input");
    }
    Ok(events)
}

/// The latest `limit` records of `topic`, spread over its partitions, read without
/// joining a group or committing.
fn read_topic(
    config_path: &Path,
    topic: &str,
    limit: usize,
) -> anyhow::Result<Vec<(Source, Event)>> {
    let config = WeirConfig::load(config_path)?;
    if config.kafka.brokers.0 == "embedded" {
        bail!(
            "{} uses the embedded cluster, which lives inside a running weir process: point [kafka] brokers (or KAFKA_BROKERS) at a real cluster to diff over its records",
            config_path.display()
        );
    }
    let brokers = Brokers::connect(&config)?;
    brokers.check_reachable(&config)?;
    let consumer: BaseConsumer = reader_config(&brokers.client_config(&config)).create()?;
    let metadata = consumer.fetch_metadata(Some(topic), CONNECT_TIMEOUT)?;
    let Some(meta) = metadata.topics().first().filter(|t| t.error().is_none()) else {
        bail!("topic {topic} does not exist on {}", brokers.bootstrap);
    };
    let mut ranges = BTreeMap::new();
    for partition in meta.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, partition.id(), CONNECT_TIMEOUT)?;
        ranges.insert(partition.id(), (low, high));
    }
    let plan = plan_latest(&ranges, limit);
    let mut tpl = TopicPartitionList::new();
    for (&partition, &(start, end)) in &plan {
        if start < end {
            tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
        }
    }
    let mut events = Vec::new();
    if tpl.count() > 0 {
        consumer.assign(&tpl)?;
        let mut remaining: BTreeMap<i32, i64> = plan
            .iter()
            .filter(|(_, (s, e))| s < e)
            .map(|(&p, &(_, e))| (p, e))
            .collect();
        while !remaining.is_empty() {
            match consumer.poll(Duration::from_secs(10)) {
                Some(Ok(message)) => {
                    let (partition, offset) = (message.partition(), message.offset());
                    let Some(&end) = remaining.get(&partition) else {
                        continue;
                    };
                    if offset < end {
                        events.push((
                            Source::Record { partition, offset },
                            Event {
                                topic: topic.to_owned(),
                                partition,
                                offset,
                                timestamp_ms: message.timestamp().to_millis(),
                                key: message.key().map(<[u8]>::to_vec),
                                value: message.payload().map(<[u8]>::to_vec),
                                headers: headers_of(&message),
                            },
                        ));
                    }
                    if offset + 1 >= end {
                        remaining.remove(&partition);
                    }
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                    remaining.remove(&partition);
                }
                Some(Err(error)) => bail!("reading {topic}: {error}"),
                None => bail!("reading {topic}: no record within 10s; the broker may be unhealthy"),
            }
        }
    }
    events.sort_by_key(|(source, _)| *source);
    eprintln!(
        "weir diff: read {} record(s) of {topic} ({} partition(s))",
        events.len(),
        plan.values().filter(|(s, e)| s < e).count()
    );
    Ok(events)
}

/// A consumer that reads what it is assigned and never commits or joins a group.
fn reader_config(base: &ClientConfig) -> ClientConfig {
    let mut config = base.clone();
    config
        .set("group.id", format!("weir-diff-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    config
}

/// Per partition, the offsets `[start, end)` of the latest records, `limit` in all,
/// spread evenly: taken one at a time from the end of the partition that gave the
/// fewest so far and still has some.
fn plan_latest(ranges: &BTreeMap<i32, (i64, i64)>, limit: usize) -> BTreeMap<i32, (i64, i64)> {
    let mut plan: BTreeMap<i32, (i64, i64)> = ranges
        .iter()
        .map(|(&p, &(_, high))| (p, (high, high)))
        .collect();
    let mut left = limit;
    while left > 0 {
        let next = plan
            .iter()
            .filter(|(p, (start, _))| *start > ranges[p].0)
            .min_by_key(|(p, (start, end))| (end - start, **p))
            .map(|(&p, _)| p);
        let Some(partition) = next else { break };
        if let Some(range) = plan.get_mut(&partition) {
            range.0 -= 1;
        }
        left -= 1;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(line: &[&str]) -> (DiffArgs, Chains) {
        let cli =
            crate::cli::Cli::try_parse_from(["weir", "diff"].iter().chain(line).copied()).unwrap();
        let crate::cli::Command::Diff(mut args) = cli.command else {
            panic!("not diff");
        };
        let chains = args.split().unwrap();
        (args, chains)
    }

    #[test]
    fn options_may_come_before_or_after_the_chains() {
        let (args, chains) = parse(&[
            "--input",
            "a.jsonl",
            "v.wasm",
            "d.wasm",
            "--",
            "v.wasm",
            "d2.wasm",
            "--config",
            "2:lead-time=1h",
            "--new-config=x=y",
            "--ignore-messages",
        ]);
        assert_eq!(args.input, Some(PathBuf::from("a.jsonl")));
        assert_eq!(args.config, ["2:lead-time=1h"]);
        assert_eq!(args.new_config, ["x=y"]);
        assert!(args.ignore_messages);
        assert_eq!(
            chains.old,
            [PathBuf::from("v.wasm"), PathBuf::from("d.wasm")]
        );
        assert_eq!(
            chains.new,
            [PathBuf::from("v.wasm"), PathBuf::from("d2.wasm")]
        );

        let cli = crate::cli::Cli::try_parse_from(["weir", "diff", "a.wasm", "b.wasm"]).unwrap();
        let crate::cli::Command::Diff(mut args) = cli.command else {
            panic!("not diff");
        };
        assert!(args.split().is_err(), "no separator");
    }

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

    #[test]
    fn the_latest_records_are_spread_over_the_partitions() {
        let ranges = BTreeMap::from([(0, (0, 10)), (1, (5, 7)), (2, (3, 3))]);
        let plan = plan_latest(&ranges, 6);
        assert_eq!(plan[&0], (6, 10));
        assert_eq!(plan[&1], (5, 7));
        assert_eq!(plan[&2], (3, 3));
        let all = plan_latest(&ranges, 100);
        assert_eq!(all[&0], (0, 10));
        assert_eq!(all[&1], (5, 7));
    }
}
