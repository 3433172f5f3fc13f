//! `weir-bench state`: keyed state and timers (issue 18) against a broker, with the
//! real `weir` binary and the counter test plugin (plugins/testing/counter). Each
//! scenario runs on fresh topics and a fresh group, with one pipeline `counter`:
//!
//! - **restore**: a changelog of N entries written directly, in the record format
//!   of `weir::state::changelog`; weir restores it (a) with no local store, then
//!   with one: (b1) a first start that reads the whole changelog and writes the
//!   store when stopped cleanly, (b2) a restart that loads the store and reads only
//!   the changelog's tail. Each start has one `count` record waiting, on a key whose
//!   count is in the changelog, and its output is checked;
//! - **timers**: K keys each set M timers an hour ahead, with a local store (the
//!   default) and without; weir's memory once all are pending, and a restart that
//!   restores them;
//! - **burst**: timers due at one instant some seconds ahead, set by one record
//!   each; how late each fired (its output's `weir.timer.lateness-ms` header).
//!
//! The Markdown report is printed and written to `--report`.

mod instance;
mod restore;
mod timers;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use weir::state::changelog;

use self::instance::{Instance, RestoreLine};
use crate::driver::{input_producer_config, send};
use crate::report::machine;

/// The pipeline of every scenario; its one plugin is slot `0`.
const PIPELINE: &str = "counter";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Restore from the changelog alone, then with a local store.
    Restore,
    /// Many pending timers: memory, and a restart.
    Timers,
    /// Many timers due at one instant: lateness.
    Burst,
}

#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// Bootstrap servers of the broker.
    #[arg(long)]
    pub brokers: String,
    /// What the broker is, for the report (scripts/with-broker exports it).
    #[arg(long, env = "BROKER_NAME")]
    pub broker_name: Option<String>,
    /// Scenarios to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "restore,timers,burst"
    )]
    pub scenarios: Vec<Scenario>,
    /// Entries in the changelog of the restore scenario.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: usize,
    /// Entries per key in that changelog (`count`, then `e1`, `e2`, ...; at most
    /// the pipeline's `limits.state-entries`, 1,000).
    #[arg(long, default_value_t = 1)]
    pub entries_per_key: usize,
    /// Keys of the timers scenario, each sending one `timers M 3600000` record.
    #[arg(long, default_value_t = 1_000)]
    pub timer_keys: usize,
    /// Timers each key of the timers scenario sets (M).
    #[arg(long, default_value_t = 1_000)]
    pub timers_per_key: usize,
    /// Keys of the burst scenario.
    #[arg(long, default_value_t = 100)]
    pub burst_keys: usize,
    /// Timers per key of the burst scenario (one `at T tJ` record each).
    #[arg(long, default_value_t = 100)]
    pub burst_per_key: usize,
    /// Input partitions of the burst scenario (the others use 1).
    #[arg(long, default_value_t = 6)]
    pub burst_partitions: i32,
    /// How far ahead of their records the burst's timers are due, seconds.
    #[arg(long, default_value_t = 20)]
    pub burst_ahead: u64,
    /// The weir binary.
    #[arg(long, default_value = "target/release/weir")]
    pub weir: PathBuf,
    /// The counter test plugin.
    #[arg(
        long,
        default_value = "target/wasm32-wasip2/release/counter_plugin.wasm"
    )]
    pub counter: PathBuf,
    /// Where configs, logs and local stores go.
    #[arg(long, default_value = "target/bench/state")]
    pub work_dir: PathBuf,
    /// Where the Markdown report goes (also printed).
    #[arg(long, default_value = "target/bench/state.md")]
    pub report: PathBuf,
}

pub fn state(args: &StateArgs) -> anyhow::Result<()> {
    for (path, fix) in [
        (&args.weir, "build it with `cargo build --release -p weir`"),
        (
            &args.counter,
            "build it with `scripts/build-plugins -p counter-plugin`",
        ),
    ] {
        if !path.exists() {
            bail!("{} is missing; {fix}", path.display());
        }
    }
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("creating {}", args.work_dir.display()))?;
    let bench = Bench {
        args,
        weir: std::fs::canonicalize(&args.weir)?,
        counter: std::fs::canonicalize(&args.counter)?,
        work_dir: std::fs::canonicalize(&args.work_dir)?,
        admin: ClientConfig::new()
            .set("bootstrap.servers", &args.brokers)
            .create()?,
        producer: input_producer_config(&args.brokers).create()?,
        stamp: SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
    };
    let mut out = format!(
        "# weir-bench state\n\nMachine: {}. Broker: {}. Date: {}. weir: `{}`.\n",
        machine(),
        match &args.broker_name {
            Some(name) => format!("{name} at {}", args.brokers),
            None => args.brokers.clone(),
        },
        chrono::DateTime::<chrono::Utc>::from(SystemTime::now()).format("%Y-%m-%d %H:%M UTC"),
        args.weir.display(),
    );
    let mut goals = Vec::new();
    for scenario in &args.scenarios {
        eprintln!("state: {scenario:?}...");
        let (section, met) = match scenario {
            Scenario::Restore => bench.restore(),
            Scenario::Timers => bench.timers(),
            Scenario::Burst => bench.burst(),
        }
        .with_context(|| format!("the {scenario:?} scenario"))?;
        out.push_str(&section);
        goals.extend(met);
    }
    out.push_str("\n## Goals\n\n| goal | measured | met? |\n|---|---:|---|\n");
    for goal in goals {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            goal.goal,
            goal.measured,
            if goal.met { "yes" } else { "no" }
        );
    }
    std::fs::write(&args.report, &out)
        .with_context(|| format!("writing {}", args.report.display()))?;
    println!("{out}");
    eprintln!("report written to {}", args.report.display());
    Ok(())
}

/// A goal of issue 18 and what a scenario measured for it.
struct Goal {
    goal: String,
    measured: String,
    met: bool,
}

struct Bench<'a> {
    args: &'a StateArgs,
    weir: PathBuf,
    counter: PathBuf,
    /// Absolute: the local stores' directory goes into configs.
    work_dir: PathBuf,
    admin: AdminClient<DefaultClientContext>,
    /// Inputs and the restore scenario's changelog.
    producer: ThreadedProducer<DefaultProducerContext>,
    /// Seconds since the epoch at start: this invocation's topics, groups and
    /// stores are named with it.
    stamp: u64,
}

/// The topics and group of one scenario.
struct Names {
    scenario: &'static str,
    input: String,
    output: String,
    dlq: String,
    group: String,
    /// The counter slot's changelog.
    changelog: String,
}

/// What one start of weir showed, times from its spawn.
struct Start {
    /// From spawn to the first output's timestamp (set by weir's producer).
    first_output_ms: i64,
    assigned_ms: Option<i64>,
    restore: Option<RestoreLine>,
    /// `weir_state_restore_seconds_sum` and `weir_state_restore_records_total`.
    metric_seconds: f64,
    metric_records: f64,
    /// After the first output.
    peak_rss: u64,
    rss: u64,
    exit: ExitStatus,
    stop: Duration,
}

impl Start {
    fn restored_ms(&self, spawned_ms: i64) -> Option<i64> {
        self.restore.map(|r| r.at_ms - spawned_ms)
    }
}

impl Bench<'_> {
    fn names(&self, scenario: &'static str) -> Names {
        let base = format!("state-{}-{scenario}", self.stamp);
        let group = format!("{base}-group");
        Names {
            scenario,
            input: format!("{base}-in"),
            output: format!("{base}-out"),
            dlq: format!("{base}-dlq"),
            changelog: changelog::topic(&group, PIPELINE, &changelog::slot_id(None, 0)),
            group,
        }
    }

    fn create_topics(&self, topics: &[(&str, i32, bool)]) -> anyhow::Result<()> {
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(name, partitions, compact)| {
                let topic = NewTopic::new(name, *partitions, TopicReplication::Fixed(1));
                if *compact {
                    topic.set("cleanup.policy", "compact")
                } else {
                    topic
                }
            })
            .collect();
        let results = weir::kafka::block_on_runtime()?
            .block_on(self.admin.create_topics(&new, &AdminOptions::new()))?;
        for result in results {
            result.map_err(|(topic, code)| anyhow!("creating topic {topic}: {code}"))?;
        }
        Ok(())
    }

    /// The input (`partitions`), output and DLQ of a scenario.
    fn create(&self, names: &Names, partitions: i32) -> anyhow::Result<()> {
        self.create_topics(&[
            (&names.input, partitions, false),
            (&names.output, 1, false),
            (&names.dlq, 1, false),
        ])
    }

    /// Writes a config for `names` with the `[state]` keys `state`; its path.
    fn config(
        &self,
        names: &Names,
        partitions: i32,
        state: &str,
        file: &str,
    ) -> anyhow::Result<PathBuf> {
        let text = format!(
            r#"[kafka]
brokers = "{brokers}"

[metrics]
listen = "127.0.0.1:0"

[state]
{state}

[topics."{input}"]
partitions = {partitions}

[topics."{output}"]
partitions = 1

[topics."{dlq}"]
partitions = 1

[[pipeline]]
name = "{PIPELINE}"
input = "{input}"
group = "{group}"
plugins = [{{ path = "{counter}" }}]
outputs = {{ out = "{output}" }}
dlq = "{dlq}"
limits = {{ timeout = "10s" }}
"#,
            brokers = self.args.brokers,
            input = names.input,
            output = names.output,
            dlq = names.dlq,
            group = names.group,
            counter = self.counter.display(),
        );
        let path = self
            .work_dir
            .join(format!("{}-{file}.toml", names.scenario));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// A `[state]` with local stores in a fresh directory of the work dir (the
    /// scenario deletes it when done).
    fn store_dir(&self, names: &Names) -> (PathBuf, String) {
        let dir = self
            .work_dir
            .join(format!("stores-{}-{}", self.stamp, names.scenario));
        let keys = format!("dir = \"{}\"", dir.display());
        (dir, keys)
    }

    fn start(&self, config: &Path, names: &Names, log: &str) -> anyhow::Result<Instance> {
        Instance::start(
            &self.weir,
            config,
            &self.work_dir.join(format!("{}-{log}.log", names.scenario)),
        )
    }

    fn produce(&self, topic: &str, records: impl IntoIterator<Item = (String, String)>) {
        for (key, value) in records {
            send(
                &self.producer,
                BaseRecord::to(topic)
                    .key(key.as_bytes())
                    .payload(value.as_bytes()),
            );
        }
    }

    fn flush(&self) -> anyhow::Result<()> {
        self.producer
            .flush(Duration::from_secs(120))
            .context("flushing the producer")
    }
}

/// Reads a scenario's output topic from its end as it was when created.
struct Tail(BaseConsumer);

impl Tail {
    fn at_end(brokers: &str, topic: &str) -> anyhow::Result<Tail> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("{topic}-tail"))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "5")
            .create()?;
        let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(30))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(high))?;
        consumer.assign(&tpl)?;
        Ok(Tail(consumer))
    }

    /// The next output; fails when weir exits or none comes `within`.
    fn next(&self, weir: &mut Instance, within: Duration) -> anyhow::Result<OwnedMessage> {
        let start = Instant::now();
        loop {
            weir.check_alive()?;
            match self.0.poll(Duration::from_millis(50)) {
                Some(Ok(message)) => return Ok(message.detach()),
                Some(Err(error)) => bail!("tail consumer: {error}"),
                None if start.elapsed() > within => {
                    bail!("no output within {within:?}; see {}", weir.log.display())
                }
                None => {}
            }
        }
    }
}

/// Waits until metric `name` sums to at least `target`; fails if it stops moving
/// for 2 minutes or `within` passes.
fn wait_metric(
    weir: &mut Instance,
    name: &str,
    target: f64,
    within: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let (mut last, mut moved) = (f64::NAN, Instant::now());
    loop {
        let now = weir.metric(name)?;
        if now >= target {
            return Ok(());
        }
        if now != last {
            (last, moved) = (now, Instant::now());
        }
        if moved.elapsed() > Duration::from_secs(120) || start.elapsed() > within {
            bail!(
                "{name} stuck at {now} of {target}; see {}",
                weir.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn header(message: &OwnedMessage, key: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn mib(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / (1 << 20) as f64)
}

fn ms(ms: i64) -> String {
    format!("{} ms", thousands_signed(ms))
}

fn thousands_signed(n: i64) -> String {
    if n < 0 {
        format!("-{}", thousands(n.unsigned_abs()))
    } else {
        thousands(n as u64)
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_000_002), "1,000,002");
        assert_eq!(ms(-1_500), "-1,500 ms");
    }
}
