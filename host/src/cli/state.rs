//! `weir state inspect|reset`: look into a pipeline's keyed state, or clear it, by
//! reading the stateful slots' changelog topics themselves (so they work with weir
//! stopped).
//!
//! The slots are found as `weir run` finds them: the config's plugins of the
//! pipeline are loaded (compiled or taken from the compile cache, not `init`-ed)
//! and those that import `state`/`timers` or export `handle-timer` are the
//! stateful ones. A changelog is read `read_committed` from its start to its end,
//! with no consumer group progress, and folded: the latest value of each record
//! key, a tombstone deleting it.
//!
//! `reset` writes a tombstone for every live record key of a slot, and deletes this
//! machine's local stores of the slot. It must not run while weir runs the
//! pipeline: an instance keeps the state in memory and its next change of a key
//! would write that key back. So it refuses while the pipeline's consumer group
//! has members.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use crate::config::{PipelineConfig, WeirConfig};
use crate::kafka::{Brokers, CONNECT_TIMEOUT};
use crate::pipeline::keyed::{Place, StatefulSlots};
use crate::plugin::{LoadError, Plugin, PluginEngine};
use crate::state::Change;
use crate::state::changelog;

/// How long a read may go without a record or an end of partition before it gives up.
const READ_IDLE: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Show the entries and pending timers of a pipeline's stateful slots, per key,
    /// as their changelog topics hold them.
    Inspect {
        #[command(flatten)]
        target: Target,
        /// Only this key (the input record's key, as text).
        #[arg(long)]
        key: Option<String>,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete every entry and timer of a pipeline's stateful slots (all, or
    /// `--slot`) by writing tombstones to their changelogs. Stop weir first.
    Reset {
        #[command(flatten)]
        target: Target,
        /// Do not ask for confirmation (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct Target {
    /// The pipeline (its `name`).
    #[arg(long)]
    pipeline: String,
    /// Only this slot: `<i>` for the i-th plugin of the shared chain, `<branch>.<i>`
    /// for the i-th plugin of a branch.
    #[arg(long)]
    slot: Option<String>,
    /// The pipelines file.
    #[arg(long, default_value = "pipelines.toml")]
    config: std::path::PathBuf,
}

pub fn run(command: StateCommand) -> anyhow::Result<ExitCode> {
    match command {
        StateCommand::Inspect { target, key, json } => inspect(&target, key.as_deref(), json),
        StateCommand::Reset { target, yes } => reset(&target, yes),
    }
}

/// A pipeline's stateful slots, as the config and its plugins say.
struct Slots {
    config: WeirConfig,
    pipeline: String,
    group: String,
    /// The chosen slots (all, or `--slot`).
    slots: Vec<Slot>,
}

struct Slot {
    /// `<i>` or `<branch>.<i>`.
    id: String,
    /// The plugin's file stem.
    plugin: String,
    topic: String,
}

/// Loads the config, finds the pipeline and loads its plugins to learn which slots
/// are stateful. `Ok(None)`: the pipeline has none (a message was printed).
fn find_slots(target: &Target) -> anyhow::Result<Option<Slots>> {
    let config = WeirConfig::load(&target.config)?;
    let Some(pipeline) = config
        .pipelines
        .iter()
        .find(|p| p.name() == target.pipeline)
    else {
        let names: Vec<&str> = config.pipelines.iter().map(|p| p.name()).collect();
        let owner = config.pipelines.iter().find(|p| {
            p.branches
                .iter()
                .any(|b| b.name.get_ref() == &target.pipeline)
        });
        if let Some(owner) = owner {
            bail!(
                "{:?} is a branch of pipeline {} in {}: use --pipeline {} --slot {}.<i>",
                target.pipeline,
                owner.name(),
                target.config.display(),
                owner.name(),
                target.pipeline
            );
        }
        bail!(
            "no pipeline {:?} in {} (its pipelines: {})",
            target.pipeline,
            target.config.display(),
            names.join(", ")
        );
    };
    let stateful = stateful_slots(&config, pipeline)?;
    let pipeline_name = pipeline.name().to_owned();
    let group = pipeline.group();
    if stateful.is_empty() {
        println!(
            "pipeline {pipeline_name} has no stateful plugins (none imports state or timers): it keeps no state"
        );
        return Ok(None);
    }
    let slots = match &target.slot {
        None => stateful,
        Some(wanted) => {
            let ids: Vec<String> = stateful.iter().map(|s| s.id.clone()).collect();
            let chosen: Vec<Slot> = stateful.into_iter().filter(|s| &s.id == wanted).collect();
            if chosen.is_empty() {
                bail!(
                    "pipeline {pipeline_name} has no stateful slot {wanted:?} (its stateful slots: {}); \
                     a slot is <i> for the i-th plugin of the shared chain, <branch>.<i> for a branch's",
                    ids.join(", ")
                );
            }
            chosen
        }
    };
    Ok(Some(Slots {
        config,
        pipeline: pipeline_name,
        group,
        slots,
    }))
}

/// The stateful slots of `pipeline`, in chain order, with their plugins' names.
fn stateful_slots(config: &WeirConfig, pipeline: &PipelineConfig) -> anyhow::Result<Vec<Slot>> {
    let engine = PluginEngine::new()?;
    let limits = pipeline.limits.limits(&config.kafka);
    let mut versions = Vec::new();
    for plugin in pipeline.all_plugins() {
        let path = config.plugin_path(plugin);
        let version = engine
            .load(&path, plugin.init_config(), limits)
            .map_err(|error| {
                let hint = match &error {
                    LoadError::Read { path, .. } => super::build_hint(path)
                        .map(|h| format!("\n  {h}"))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                anyhow::anyhow!(
                    "pipeline {}: {error}{hint}\n  (weir state loads the pipeline's plugins to learn which slots keep state)",
                    pipeline.name()
                )
            })?;
        versions.push(version);
    }
    let spec = StatefulSlots::of(pipeline, &versions, ClientConfig::new(), limits, None, None);
    // Where each slot's plugin is in `all_plugins` order.
    let branches = pipeline.branches();
    let index = |place: Place, stage: usize| match place {
        Place::Prefix => stage,
        Place::Branch(b) => {
            pipeline.prefix().len()
                + branches
                    .iter()
                    .take(b)
                    .map(|b| b.plugins.len())
                    .sum::<usize>()
                + stage
        }
    };
    Ok(spec
        .slots
        .iter()
        .map(|s| Slot {
            id: s.id.to_string(),
            plugin: versions
                .get(index(s.place, s.stage))
                .map_or_else(|| "?".to_owned(), |v| v.name().to_owned()),
            topic: s.topic.to_string(),
        })
        .collect())
}

/// A client for the config's brokers, once they answer.
fn connect(config: &WeirConfig) -> anyhow::Result<ClientConfig> {
    if config.kafka.brokers.0 == "embedded" {
        bail!(
            "the embedded cluster lives inside a running weir process and its state goes with it; \
             point [kafka] brokers (or KAFKA_BROKERS) at a real cluster"
        );
    }
    let brokers = Brokers::connect(config)?;
    brokers.check_reachable(config)?;
    Ok(brokers.client_config(config))
}

/// A changelog topic read to its end and folded.
#[derive(Default)]
struct Changelog {
    /// The latest value of each live record key, by partition.
    live: BTreeMap<(i32, Vec<u8>), Latest>,
    /// Records read (tombstones included).
    records: u64,
}

struct Latest {
    value: Vec<u8>,
    /// Its `weir.source.offset` header: the input offset that made the change, or
    /// `timer`.
    source: Option<String>,
}

/// Reads changelog `topic` from its start to its end (`read_committed`: up to the
/// last stable offset). `Ok(None)`: the topic does not exist.
fn read_changelog(client: &ClientConfig, topic: &str) -> anyhow::Result<Option<Changelog>> {
    let consumer: BaseConsumer<ReaderContext> = client
        .clone()
        .set("group.id", "weir-state-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create_with_context(ReaderContext)
        .context("cannot create a Kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), CONNECT_TIMEOUT)
        .with_context(|| format!("cannot read the metadata of changelog topic {topic}"))?;
    let Some(meta) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    if let Some(error) = meta.error() {
        return match RDKafkaErrorCode::from(error) {
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => Ok(None),
            RDKafkaErrorCode::TopicAuthorizationFailed => bail!(
                "not authorized to read changelog topic {topic}: grant weir's principal READ and DESCRIBE on it (docs/operations.md, ACLs)"
            ),
            code => bail!("cannot read changelog topic {topic}: {code}"),
        };
    }
    let mut tpl = TopicPartitionList::new();
    let mut remaining = BTreeSet::new();
    for partition in meta.partitions() {
        tpl.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
        remaining.insert(partition.id());
    }
    let mut changelog = Changelog::default();
    if remaining.is_empty() {
        return Ok(Some(changelog));
    }
    consumer.assign(&tpl)?;
    let mut last = Instant::now();
    while !remaining.is_empty() {
        match consumer.poll(Duration::from_millis(500)) {
            None => {
                if last.elapsed() > READ_IDLE {
                    bail!(
                        "reading changelog topic {topic}: no record and no end of partition {remaining:?} within {}s \
                         (an open transaction of a running or crashed exactly-once weir holds the end back \
                         until it ends; or the broker is unhealthy)",
                        READ_IDLE.as_secs()
                    );
                }
                continue;
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                remaining.remove(&partition);
            }
            Some(Err(error)) => bail!("reading changelog topic {topic}: {error}"),
            Some(Ok(message)) => {
                changelog.records += 1;
                let Some(key) = message.key() else {
                    continue;
                };
                let at = (message.partition(), key.to_vec());
                match message.payload() {
                    None => {
                        changelog.live.remove(&at);
                    }
                    Some(value) => {
                        let source = crate::kafka::consumed_headers(&message)
                            .into_iter()
                            .find(|h| h.key == "weir.source.offset")
                            .map(|h| String::from_utf8_lossy(&h.value).into_owned());
                        changelog.live.insert(
                            at,
                            Latest {
                                value: value.to_vec(),
                                source,
                            },
                        );
                    }
                }
            }
        }
        last = Instant::now();
    }
    Ok(Some(changelog))
}

/// The changelog reader's context: an end of partition is how a read ends, not an
/// error, also when librdkafka reports one outside a poll (as the reader closes).
struct ReaderContext;

impl rdkafka::client::ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::error!(%error, "librdkafka: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// Bytes as UTF-8 text, or base64 when they are not.
#[derive(Debug, Serialize)]
struct Bytes {
    #[serde(rename = "value")]
    text: String,
    /// `utf8` or `base64`.
    encoding: &'static str,
}

impl Bytes {
    fn of(bytes: &[u8]) -> Bytes {
        match std::str::from_utf8(bytes) {
            Ok(text) => Bytes {
                text: text.to_owned(),
                encoding: "utf8",
            },
            Err(_) => Bytes {
                text: base64::engine::general_purpose::STANDARD.encode(bytes),
                encoding: "base64",
            },
        }
    }

    /// For a text line: quoted text, or `base64:…`; cut to `max` characters.
    fn shown(&self, max: usize) -> String {
        let whole = match self.encoding {
            "utf8" => format!("{:?}", self.text),
            _ => format!("base64:{}", self.text),
        };
        super::cut(&whole, max)
    }
}

#[derive(Serialize)]
struct Report {
    pipeline: String,
    group: String,
    slots: Vec<SlotReport>,
    totals: Totals,
}

#[derive(Serialize)]
struct SlotReport {
    slot: String,
    plugin: String,
    topic: String,
    /// Whether the changelog topic exists (weir creates it when the pipeline starts).
    exists: bool,
    /// Changelog records read, tombstones included.
    records: u64,
    /// Live records weir cannot read (not written by weir).
    unreadable: u64,
    keys: Vec<KeyReport>,
}

#[derive(Serialize)]
struct KeyReport {
    /// The input records' key; `null` for records without one.
    key: Option<String>,
    key_encoding: Option<&'static str>,
    /// The changelog (and input) partition that holds it.
    partition: i32,
    entries: Vec<EntryReport>,
    timers: Vec<TimerReport>,
}

#[derive(Serialize)]
struct EntryReport {
    name: String,
    #[serde(flatten)]
    value: Bytes,
    size: usize,
    /// The input offset whose record made the change, or `timer`.
    source_offset: Option<String>,
}

#[derive(Serialize)]
struct TimerReport {
    name: String,
    /// RFC 3339, UTC.
    due: String,
    due_ms: i64,
    payload: Bytes,
    source_offset: Option<String>,
}

#[derive(Default, Serialize)]
struct Totals {
    keys: usize,
    entries: usize,
    /// Entry names and values, as `weir_state_bytes` counts them.
    bytes: usize,
    timers: usize,
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).map_or_else(
        || "out of range".to_owned(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// What a folded changelog holds, per key (only `only`, when given).
fn report_slot(
    slot: &Slot,
    changelog: Option<&Changelog>,
    only: Option<&[u8]>,
    totals: &mut Totals,
) -> SlotReport {
    let mut keys: BTreeMap<(Option<Vec<u8>>, i32), KeyReport> = BTreeMap::new();
    let mut unreadable = 0;
    for ((partition, record_key), latest) in changelog.iter().flat_map(|c| &c.live) {
        let change = match changelog::decode(record_key, Some(&latest.value)) {
            Ok(change) => change,
            Err(_) => {
                unreadable += 1;
                continue;
            }
        };
        let key = match &change {
            Change::Entry { key, .. } | Change::Timer { key, .. } => key.clone(),
        };
        if only.is_some_and(|only| key.as_deref() != Some(only)) {
            continue;
        }
        let report = keys
            .entry((key.clone(), *partition))
            .or_insert_with(|| KeyReport {
                key_encoding: key.as_deref().map(|k| Bytes::of(k).encoding),
                key: key.as_deref().map(|k| Bytes::of(k).text),
                partition: *partition,
                entries: Vec::new(),
                timers: Vec::new(),
            });
        match change {
            Change::Entry {
                name,
                value: Some(value),
                ..
            } => {
                totals.entries += 1;
                totals.bytes += name.len() + value.len();
                report.entries.push(EntryReport {
                    size: value.len(),
                    value: Bytes::of(&value),
                    name,
                    source_offset: latest.source.clone(),
                });
            }
            Change::Timer {
                name,
                due: Some((due_ms, payload)),
                ..
            } => {
                totals.timers += 1;
                report.timers.push(TimerReport {
                    name,
                    due: rfc3339(due_ms),
                    due_ms,
                    payload: Bytes::of(&payload),
                    source_offset: latest.source.clone(),
                });
            }
            // A live record always decodes to a set entry or timer.
            Change::Entry { value: None, .. } | Change::Timer { due: None, .. } => {}
        }
    }
    totals.keys += keys.len();
    SlotReport {
        slot: slot.id.clone(),
        plugin: slot.plugin.clone(),
        topic: slot.topic.clone(),
        exists: changelog.is_some(),
        records: changelog.map_or(0, |c| c.records),
        unreadable,
        keys: keys.into_values().collect(),
    }
}

fn inspect(target: &Target, key: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let Some(found) = find_slots(target)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let client = connect(&found.config)?;
    let mut totals = Totals::default();
    let mut slots = Vec::new();
    for slot in &found.slots {
        let changelog = read_changelog(&client, &slot.topic)?;
        slots.push(report_slot(
            slot,
            changelog.as_ref(),
            key.map(str::as_bytes),
            &mut totals,
        ));
    }
    if target.slot.is_none() {
        note_leftovers(&client, &found);
    }
    let report = Report {
        pipeline: found.pipeline,
        group: found.group,
        slots,
        totals,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, key);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &Report, key: Option<&str>) {
    let now = crate::state::clock::wall_ms();
    println!(
        "pipeline {} (group {}): {} stateful slot(s)",
        report.pipeline,
        report.group,
        report.slots.len()
    );
    for slot in &report.slots {
        println!();
        if !slot.exists {
            println!(
                "slot {} ({}): changelog topic {} does not exist: nothing was ever written \
                 (weir creates it when it starts the pipeline)",
                slot.slot, slot.plugin, slot.topic
            );
            continue;
        }
        println!(
            "slot {} ({}), changelog {}: {} record(s) read, {} key(s){}",
            slot.slot,
            slot.plugin,
            slot.topic,
            slot.records,
            slot.keys.len(),
            key.map(|k| format!(" with key {k:?}")).unwrap_or_default()
        );
        if slot.unreadable > 0 {
            println!(
                "  {} live record(s) not written by weir were skipped (weir cannot restore them either; `weir state reset` deletes them)",
                slot.unreadable
            );
        }
        for k in &slot.keys {
            let shown = match (&k.key, k.key_encoding) {
                (None, _) => "(no key)".to_owned(),
                (Some(text), Some("base64")) => format!("base64:{text}"),
                (Some(text), _) => format!("{text:?}"),
            };
            println!("  key {shown} (partition {})", k.partition);
            for e in &k.entries {
                let by = source(&e.source_offset)
                    .map(|by| format!(", {by}"))
                    .unwrap_or_default();
                println!(
                    "    entry {:?} = {}  ({} byte(s){by})",
                    e.name,
                    e.value.shown(80),
                    e.size,
                );
            }
            for t in &k.timers {
                let when = if t.due_ms > now {
                    format!(
                        "in {}",
                        humantime::format_duration(Duration::from_secs(
                            ((t.due_ms - now) / 1000) as u64
                        ))
                    )
                } else {
                    "overdue: fires when the partition next runs".to_owned()
                };
                let by = source(&t.source_offset)
                    .map(|by| format!("  ({by})"))
                    .unwrap_or_default();
                println!(
                    "    timer {:?} due {} ({} ms, {when}), payload {}{by}",
                    t.name,
                    t.due,
                    t.due_ms,
                    t.payload.shown(60),
                );
            }
        }
    }
    let t = &report.totals;
    println!();
    println!(
        "total: {} key(s), {} entr{}, {} byte(s), {} timer(s)",
        t.keys,
        t.entries,
        if t.entries == 1 { "y" } else { "ies" },
        t.bytes,
        t.timers
    );
}

/// What made a change, from its `weir.source.offset` header, for a text line.
fn source(header: &Option<String>) -> Option<String> {
    match header.as_deref()? {
        "timer" => Some("set by a fired timer".to_owned()),
        offset => Some(format!("set by input offset {offset}")),
    }
}

/// Notes changelog topics of the pipeline that no stateful slot of the config owns
/// (a plugin that moved or became stateless): their state is not used.
fn note_leftovers(client: &ClientConfig, found: &Slots) {
    let Ok(consumer) = client.create::<BaseConsumer>() else {
        return;
    };
    let Ok(metadata) = consumer.fetch_metadata(None, CONNECT_TIMEOUT) else {
        return;
    };
    let prefix = format!("{}.{}.", found.group, found.pipeline);
    let owned: BTreeSet<&str> = found.slots.iter().map(|s| s.topic.as_str()).collect();
    for topic in metadata.topics() {
        let Some(slot) = topic
            .name()
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".changelog"))
        else {
            continue;
        };
        let index = slot.rsplit('.').next().unwrap_or(slot);
        let is_slot = !index.is_empty()
            && index.bytes().all(|b| b.is_ascii_digit())
            && slot.split('.').count() <= 2;
        if is_slot && !owned.contains(topic.name()) {
            eprintln!(
                "note: changelog topic {} belongs to no stateful slot of pipeline {} in this config \
                 (a plugin that moved or keeps no state now); weir does not read it. Delete the topic when it is not needed",
                topic.name(),
                found.pipeline
            );
        }
    }
}

fn reset(target: &Target, yes: bool) -> anyhow::Result<ExitCode> {
    let Some(found) = find_slots(target)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let interactive = std::io::stdin().is_terminal();
    if !yes && !interactive {
        bail!(
            "weir state reset asks for confirmation on a terminal, and stdin is not one: \
             pass --yes to reset pipeline {} without asking (stop every weir running it first)",
            found.pipeline
        );
    }
    let client = connect(&found.config)?;
    check_stopped(&client, &found)?;

    let mut plans = Vec::new();
    for slot in &found.slots {
        match read_changelog(&client, &slot.topic)? {
            None => println!(
                "slot {}: changelog topic {} does not exist: nothing was ever written, nothing to reset",
                slot.id, slot.topic
            ),
            Some(changelog) if changelog.live.is_empty() => println!(
                "slot {}: changelog topic {} holds no live entries or timers: nothing to reset",
                slot.id, slot.topic
            ),
            Some(changelog) => plans.push((slot, changelog)),
        }
    }
    if plans.is_empty() {
        // A store is a cache of the changelog: dropping it is always safe.
        for slot in &found.slots {
            delete_local_stores(&found, slot);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let what: Vec<String> = plans
        .iter()
        .map(|(slot, changelog)| {
            let mut totals = Totals::default();
            report_slot(slot, Some(changelog), None, &mut totals);
            format!(
                "slot {} ({}): {} entr{} and {} timer(s) of {} key(s), {} record key(s) in {}",
                slot.id,
                slot.plugin,
                totals.entries,
                if totals.entries == 1 { "y" } else { "ies" },
                totals.timers,
                totals.keys,
                changelog.live.len(),
                slot.topic
            )
        })
        .collect();
    eprintln!(
        "This deletes the state of pipeline {}:\n  {}",
        found.pipeline,
        what.join("\n  ")
    );
    eprintln!(
        "weir must be stopped first: a running instance keeps its copy of the state in memory \
         and writes a key back with its next change of it."
    );
    if !yes {
        eprint!("Type the pipeline name ({}) to go on: ", found.pipeline);
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != found.pipeline {
            eprintln!("not confirmed: nothing was written");
            return Ok(ExitCode::FAILURE);
        }
    }

    let producer: ThreadedProducer<TombstoneContext> = client
        .clone()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create_with_context(TombstoneContext::default())
        .context("cannot create a Kafka producer")?;
    for (slot, changelog) in &plans {
        for (partition, key) in changelog.live.keys() {
            let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&slot.topic)
                .partition(*partition)
                .key(key.as_slice());
            crate::kafka::send_waiting(&producer, record)
                .with_context(|| format!("cannot write a tombstone to {}", slot.topic))?;
        }
    }
    producer.flush(Duration::from_secs(60)).context(
        "not every tombstone was acknowledged within 60s; run weir state reset again (it only writes what is still live)",
    )?;
    if let Some((failed, error)) = producer.context().failed() {
        bail!(
            "{failed} tombstone(s) were refused ({error}); run weir state reset again (it only writes what is still live)"
        );
    }
    for (slot, changelog) in &plans {
        println!(
            "reset slot {} of pipeline {}: wrote {} tombstone(s) to {}",
            slot.id,
            found.pipeline,
            changelog.live.len(),
            slot.topic
        );
    }
    for slot in &found.slots {
        delete_local_stores(&found, slot);
    }
    Ok(ExitCode::SUCCESS)
}

/// Deletes this machine's local stores of `slot`, laid out as
/// [`StatefulSlots::with_stores`] does: `<state.dir>/<group>/<pipeline>/<slot>/<partition>.redb`.
/// Not needed for the reset to hold (a store reads the changelog's tail, tombstones
/// included, on its next start), but a store left behind longer than the topic's
/// `delete.retention.ms` would no longer see them.
fn delete_local_stores(found: &Slots, slot: &Slot) {
    let Some(dir) = found.config.state.dir() else {
        return;
    };
    let dir = dir.join(&found.group).join(&found.pipeline).join(&slot.id);
    let Ok(files) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut deleted = 0;
    for file in files.flatten() {
        let path = file.path();
        let is_store = path.extension().is_some_and(|e| e == "redb")
            && path
                .file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|s| s.parse::<i32>().is_ok());
        if !is_store {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => deleted += 1,
            Err(error) => eprintln!(
                "warning: cannot delete the local store {} ({error}); weir reads the tombstones from the changelog's tail when it starts",
                path.display()
            ),
        }
    }
    let _ = std::fs::remove_dir(&dir);
    if deleted > 0 {
        println!(
            "deleted {deleted} local store(s) of slot {} under {}",
            slot.id,
            dir.display()
        );
    }
}

/// Refuses while the pipeline's consumer group has members: weir is running it.
/// A group this client cannot describe is warned about, not refused.
fn check_stopped(client: &ClientConfig, found: &Slots) -> anyhow::Result<()> {
    let consumer: BaseConsumer = client.create().context("cannot create a Kafka consumer")?;
    let groups = match consumer.fetch_group_list(Some(&found.group), CONNECT_TIMEOUT) {
        Ok(groups) => groups,
        Err(error) => {
            eprintln!(
                "warning: cannot describe consumer group {} ({error}), so cannot tell whether weir is running pipeline {}: make sure it is not",
                found.group, found.pipeline
            );
            return Ok(());
        }
    };
    let members: Vec<String> = groups
        .groups()
        .iter()
        .filter(|g| g.name() == found.group)
        .flat_map(|g| g.members())
        .map(|m| format!("{} on {}", m.client_id(), m.client_host()))
        .collect();
    if !members.is_empty() {
        bail!(
            "consumer group {} of pipeline {} has {} active member(s) ({}): weir is running it. \
             Stop every weir running pipeline {} first (a running instance keeps its state in memory \
             and would write it back), then run weir state reset again",
            found.group,
            found.pipeline,
            members.len(),
            members.join(", "),
            found.pipeline
        );
    }
    Ok(())
}

/// Counts the tombstones the broker refused.
#[derive(Default)]
struct TombstoneContext {
    /// How many, and the first error.
    failed: Mutex<(usize, Option<String>)>,
}

impl TombstoneContext {
    fn failed(&self) -> Option<(usize, String)> {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.1.clone().map(|error| (failed.0, error))
    }
}

impl rdkafka::client::ClientContext for TombstoneContext {}

impl rdkafka::producer::ProducerContext for TombstoneContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
            failed.0 += 1;
            failed.1.get_or_insert_with(|| error.to_string());
        }
    }
}
