//! The benchmark driver. For every system and run (run 1 of every system, then run
//! 2, ...) it creates fresh topics, and then:
//!
//! - **throughput**: preloads the whole workload, starts the system, and times the
//!   stretch from its first output to its last one as seen by a tail consumer;
//!   CPU time is sampled from `/proc` at the same two instants;
//! - **latency**: starts the system on empty topics, warms it up with the first
//!   records, then offers the rest at a fixed rate and times each record from the
//!   driver's `send` to its output arriving at the tail consumer.
//!
//! Peak RSS is the system's `VmHWM` just before it is stopped with SIGTERM. After
//! it exits, the driver checks that its consumer group committed the whole input.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::collector::{Jaeger, closed_endpoint, jaeger_bin, metrics_address, settled_span_counts};
use crate::proc::{cpu_time, peak_rss};
use crate::report::{LatencyResult, Report, ThroughputResult, TracingResult};
use crate::workload::{Workload, event_id, workload_start};

const PARTITIONS: i32 = 6;
/// Records sent before latency is measured: they bring the system to a steady state.
const WARM_UP: usize = 2_000;
/// A run fails when no output arrives for this long.
const STALL: Duration = Duration::from_secs(120);

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Bootstrap servers of the broker every system uses.
    #[arg(long)]
    pub brokers: String,
    /// What the broker is, for the report (scripts/with-broker exports it as
    /// BROKER_NAME).
    #[arg(long, env = "BROKER_NAME")]
    pub broker_name: Option<String>,
    /// Task events in the workload.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Distinct users (the topic key) in the workload.
    #[arg(long, default_value_t = 1_000)]
    pub users: usize,
    /// Throughput runs per system; the report gives the median.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Systems to run, in order. `weir:N` runs weir with `workers = N`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "passthrough,native,weir,weir:1,weir:2,weir-todo,aiokafka"
    )]
    pub systems: Vec<String>,
    /// Offered load of the latency runs, events/s. Default: half of passthrough's
    /// median throughput (passthrough must then be among the systems).
    #[arg(long)]
    pub rate: Option<u64>,
    /// The weir binary.
    #[arg(long, default_value = "target/release/weir")]
    pub weir: PathBuf,
    /// weir as it was just before tracing (commit 65248c0), for `weir-todo-before`
    /// (bench/run builds it).
    #[arg(long, default_value = "target/bench/weir-65248c0")]
    pub weir_before: PathBuf,
    /// The Jaeger all-in-one the traced systems export to. Default: what
    /// scripts/install-jaeger prints (it builds Jaeger once when it is not cached).
    #[arg(long, env = "WEIR_BENCH_JAEGER")]
    pub jaeger: Option<PathBuf>,
    /// Where the plugin components are.
    #[arg(long, default_value = "target/wasm32-wasip2/release")]
    pub plugins: PathBuf,
    /// The stateless reminder-deriver of before issue 18 (commit 999708b), for
    /// `weir-todo-stateless` (bench/run builds it).
    #[arg(long, default_value = "target/bench/reminder_deriver_stateless.wasm")]
    pub stateless_deriver: PathBuf,
    /// The Python interpreter that has aiokafka and pydantic.
    #[arg(long, default_value = "target/bench-venv/bin/python")]
    pub python: PathBuf,
    /// The aiokafka service.
    #[arg(long, default_value = "bench/aiokafka/service.py")]
    pub service: PathBuf,
    /// Where system logs and generated configs go.
    #[arg(long, default_value = "target/bench")]
    pub work_dir: PathBuf,
    /// Where the Markdown report goes (also printed).
    #[arg(long, default_value = "target/bench/report.md")]
    pub report: PathBuf,
}

/// One system under test.
#[derive(Debug, Clone, PartialEq)]
enum System {
    Passthrough,
    Native,
    /// `weir run` with the reminders pipeline, optionally with `workers`.
    Weir(Option<u32>),
    /// `weir run` with the reminders pipeline in exactly-once mode.
    WeirExactlyOnce,
    /// `weir run` with the whole Todo deployment: one consumption, the validator
    /// once, then the reminders and ui-sync branches.
    WeirTodo,
    /// The same with the stateless reminder-deriver of before issue 18 (the
    /// baseline of the stateful one).
    WeirTodoStateless,
    /// The Todo deployment as it was before branches: two pipelines on the same
    /// input, each with its own group and its own validator (the baseline of the
    /// branched one, and a config any weir version runs).
    WeirTodoTwoPipelines,
    /// The Todo deployment with tracing on (issue 19).
    WeirTodoTraced(Tracing),
    /// The Todo deployment on weir as it was just before tracing (`--weir-before`).
    WeirTodoBefore,
    Aiokafka,
}

/// How a traced Todo deployment exports its spans. Its input records carry no
/// `traceparent`, so each starts a new trace and the ratio decides.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tracing {
    /// To the benchmark's Jaeger, sampling this percentage of new traces.
    Sampled(u32),
    /// To a port nothing listens on (the collector is down), sampling every trace.
    Down,
}

impl System {
    fn parse(text: &str) -> anyhow::Result<System> {
        Ok(match text {
            "passthrough" => System::Passthrough,
            "native" => System::Native,
            "weir" => System::Weir(None),
            "weir-todo" => System::WeirTodo,
            "weir-todo-stateless" => System::WeirTodoStateless,
            "weir-todo-2p" => System::WeirTodoTwoPipelines,
            "weir-eos" => System::WeirExactlyOnce,
            "weir-todo-trace-down" => System::WeirTodoTraced(Tracing::Down),
            "weir-todo-before" => System::WeirTodoBefore,
            "aiokafka" => System::Aiokafka,
            other => {
                let workers = other.strip_prefix("weir:").map(str::parse);
                let percent = other
                    .strip_prefix("weir-todo-trace-")
                    .and_then(|p| p.strip_suffix("pct"))
                    .map(str::parse);
                match (workers, percent) {
                    (Some(Ok(n)), _) if n > 0 => System::Weir(Some(n)),
                    (_, Some(Ok(p))) if p <= 100 => System::WeirTodoTraced(Tracing::Sampled(p)),
                    _ => bail!(
                        "unknown system {other:?} (known: passthrough, native, weir, weir:N, weir-eos, weir-todo, weir-todo-stateless, weir-todo-2p, weir-todo-trace-Npct (N from 0 to 100), weir-todo-trace-down, weir-todo-before, aiokafka)"
                    ),
                }
            }
        })
    }

    pub fn label(&self) -> String {
        match self {
            System::Passthrough => "passthrough (rdkafka loop)".into(),
            System::Native => "native validator+deriver".into(),
            System::Weir(None) => "weir run, reminders".into(),
            System::Weir(Some(1)) => "weir run, reminders, 1 worker".into(),
            System::Weir(Some(n)) => format!("weir run, reminders, {n} workers"),
            System::WeirExactlyOnce => "weir run, reminders, exactly-once".into(),
            System::WeirTodo => "weir run, Todo deployment".into(),
            System::WeirTodoStateless => "weir run, Todo deployment, stateless deriver".into(),
            System::WeirTodoTwoPipelines => "weir run, Todo as two pipelines".into(),
            System::WeirTodoTraced(Tracing::Sampled(p)) => {
                format!("weir run, Todo deployment, traced {p}%")
            }
            System::WeirTodoTraced(Tracing::Down) => {
                "weir run, Todo deployment, traced 100%, collector down".into()
            }
            System::WeirTodoBefore => "weir run, Todo deployment, 65248c0 (before tracing)".into(),
            System::Aiokafka => "aiokafka + Pydantic".into(),
        }
    }

    fn slug(&self) -> String {
        match self {
            System::Passthrough => "passthrough".into(),
            System::Native => "native".into(),
            System::Weir(None) => "weir".into(),
            System::Weir(Some(n)) => format!("weir{n}"),
            System::WeirExactlyOnce => "weireos".into(),
            System::WeirTodo => "weirtodo".into(),
            System::WeirTodoStateless => "weirtodostateless".into(),
            System::WeirTodoTwoPipelines => "weirtodo2p".into(),
            System::WeirTodoTraced(Tracing::Sampled(p)) => format!("weirtodotrace{p}"),
            System::WeirTodoTraced(Tracing::Down) => "weirtodotracedown".into(),
            System::WeirTodoBefore => "weirtodobefore".into(),
            System::Aiokafka => "aiokafka".into(),
        }
    }

    /// Outputs the system produces for event `index`; `stateful`: weir's
    /// reminder-deriver (of `--plugins`) keeps state.
    fn outputs(&self, workload: &Workload, index: usize, stateful: bool) -> u64 {
        let reminders = if stateful && self.is_weir() && *self != System::WeirTodoStateless {
            workload.stateful_outputs[index]
        } else {
            workload.reminder_outputs[index]
        };
        match self {
            System::Passthrough => 1,
            // Reminders or a DLQ record, plus a task-update or a second DLQ record.
            System::WeirTodo
            | System::WeirTodoStateless
            | System::WeirTodoTwoPipelines
            | System::WeirTodoTraced(_)
            | System::WeirTodoBefore => u64::from(reminders) + 1,
            _ => u64::from(reminders),
        }
    }

    fn is_todo(&self) -> bool {
        matches!(
            self,
            System::WeirTodo
                | System::WeirTodoStateless
                | System::WeirTodoTwoPipelines
                | System::WeirTodoTraced(_)
                | System::WeirTodoBefore
        )
    }

    /// Whether the system exports spans to the benchmark's Jaeger.
    fn needs_jaeger(&self) -> bool {
        matches!(self, System::WeirTodoTraced(Tracing::Sampled(_)))
    }

    fn is_weir(&self) -> bool {
        matches!(
            self,
            System::Weir(_)
                | System::WeirExactlyOnce
                | System::WeirTodo
                | System::WeirTodoStateless
                | System::WeirTodoTwoPipelines
                | System::WeirTodoTraced(_)
                | System::WeirTodoBefore
        )
    }
}

/// The topics and group of one run.
struct Topics {
    input: String,
    /// Output topics first, then DLQs.
    outputs: Vec<String>,
    group: String,
}

impl Topics {
    fn new(stamp: u64, system: &System, run: &str) -> Topics {
        let base = format!("bench-{stamp}-{}-{run}", system.slug());
        let mut outputs = vec![format!("{base}-out"), format!("{base}-dlq")];
        if system.is_todo() {
            outputs.extend([format!("{base}-updates"), format!("{base}-ui-dlq")]);
        }
        Topics {
            input: format!("{base}-in"),
            outputs,
            group: format!("{base}-group"),
        }
    }
}

/// The `[kafka]`, `[metrics]` and `[topics.*]` sections of a weir config for the
/// benchmark: the broker, an ephemeral metrics port, `topics` declared with their
/// partitions.
pub fn weir_config_head(brokers: &str, topics: &[&str]) -> String {
    format!(
        r#"[kafka]
brokers = "{brokers}"

[metrics]
listen = "127.0.0.1:0"
{declared}
"#,
        declared = topics
            .iter()
            .map(|t| format!("\n[topics.\"{t}\"]\npartitions = {}\n", partitions_of(t)))
            .collect::<String>(),
    )
}

/// What the report says about the traced systems (issue 19).
const TRACING_NOTE: &str = "Tracing: the traced systems are the Todo deployment with `OTEL_EXPORTER_OTLP_ENDPOINT` (http/protobuf), `OTEL_TRACES_SAMPLER=parentbased_traceidratio` and `OTEL_TRACES_SAMPLER_ARG` set in weir's environment; every other weir system runs with no `OTEL_*` variable (tracing off). The input records carry no headers (no `traceparent`), so every record starts a new trace and the ratio alone decides which are sampled. \"traced N%\" exports to a Jaeger all-in-one (memory store) on the same machine, started once for the benchmark, which shares the 2 cores with weir, the broker and the driver; \"collector down\" samples every record and exports to a port of 127.0.0.1 nothing listens on. \"65248c0 (before tracing)\" is weir built from commit 65248c0, the one before tracing landed, with the same plugins. weir's CPU is its own process's only (not Jaeger's).";

/// The suffix of the ui-sync pipeline's group in [`System::WeirTodoTwoPipelines`].
const UI_GROUP: &str = "-ui";

/// The retry, limits and circuit keys of `pipelines.toml`.
const POLICY: &str = r#"retry = { max-attempts = 5, initial-backoff = "200ms", max-backoff = "30s" }
limits = { memory = "64MiB", timeout = "200ms" }
circuit = { failure-ratio = 0.5, window = 100, cooldown = "30s" }
"#;

/// The topics and group of the Todo deployment.
pub struct TodoTopics<'a> {
    pub input: &'a str,
    pub group: &'a str,
    pub reminders: &'a str,
    pub reminders_dlq: &'a str,
    pub updates: &'a str,
    pub updates_dlq: &'a str,
}

/// The Todo deployment of `pipelines.toml` (pipeline `todo`: the validator, then the
/// `reminders` and `ui-sync` branches) on `topics`, with the plugins of the
/// directory `plugins` and the reminder-deriver's `lead-time`.
pub fn todo_pipeline(topics: &TodoTopics<'_>, plugins: &Path, lead_time: &str) -> String {
    todo_pipeline_with(
        topics,
        plugins,
        &plugins.join("reminder_deriver.wasm"),
        lead_time,
    )
}

/// [`todo_pipeline`] with the reminder-deriver component `deriver`.
pub fn todo_pipeline_with(
    topics: &TodoTopics<'_>,
    plugins: &Path,
    deriver: &Path,
    lead_time: &str,
) -> String {
    let plugin = |name: &str| plugins.join(format!("{name}.wasm")).display().to_string();
    format!(
        r#"[[pipeline]]
name = "todo"
input = "{input}"
group = "{group}"
plugins = [{{ path = "{validator}" }}]
{POLICY}
[[pipeline.branch]]
name = "reminders"
plugins = [{{ path = "{deriver}", config = {{ lead-time = "{lead_time}" }} }}]
outputs = {{ reminders = "{out}" }}
dlq = "{dlq}"

[[pipeline.branch]]
name = "ui-sync"
plugins = [{{ path = "{projector}" }}]
outputs = {{ task-updates = "{updates}" }}
dlq = "{ui_dlq}"
"#,
        input = topics.input,
        group = topics.group,
        validator = plugin("task_validator"),
        deriver = deriver.display(),
        projector = plugin("ui_projector"),
        out = topics.reminders,
        dlq = topics.reminders_dlq,
        updates = topics.updates,
        ui_dlq = topics.updates_dlq,
    )
}

struct Driver<'a> {
    args: &'a RunArgs,
    workload: Workload,
    /// weir's reminder-deriver (`--plugins`) is the stateful one: it decides how
    /// many reminders weir's systems give.
    stateful_deriver: bool,
    stamp: u64,
    admin: AdminClient<DefaultClientContext>,
    producer: ThreadedProducer<DefaultProducerContext>,
    /// The traced systems' collector, when one of them runs.
    jaeger: Option<Jaeger>,
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let systems = args
        .systems
        .iter()
        .map(|s| System::parse(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    check_inputs(args, &systems)?;
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("creating {}", args.work_dir.display()))?;
    let start = workload_start();
    eprintln!(
        "generating {} task events for {} users, from {start}...",
        args.events, args.users
    );
    let workload = Workload::generate(args.events, args.users, 6, start);
    let stateful_deriver = is_stateful(&args.plugins.join("reminder_deriver.wasm"));
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .create()?;
    let producer: ThreadedProducer<DefaultProducerContext> =
        input_producer_config(&args.brokers).create()?;
    // One Jaeger for the whole benchmark, stopped when the driver is dropped.
    let jaeger = if systems.iter().any(System::needs_jaeger) {
        let bin = jaeger_bin(args.jaeger.as_deref())?;
        let jaeger = Jaeger::start(&bin, &args.work_dir)?;
        eprintln!(
            "Jaeger {} takes OTLP at {} (log {})",
            bin.display(),
            jaeger.endpoint(),
            jaeger.log.display()
        );
        Some(jaeger)
    } else {
        None
    };
    let driver = Driver {
        args,
        stamp: SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
        workload,
        stateful_deriver,
        admin,
        producer,
        jaeger,
    };
    let mut report = Report::new(args, &driver.workload, stateful_deriver);
    if systems
        .iter()
        .any(|s| matches!(s, System::WeirTodoTraced(_) | System::WeirTodoBefore))
    {
        report.note(TRACING_NOTE.to_owned());
    }
    // Each traced system and the one before tracing against the same deployment
    // with tracing off.
    if systems.contains(&System::WeirTodo) {
        for system in &systems {
            if matches!(system, System::WeirTodoTraced(_) | System::WeirTodoBefore) {
                report.compare(system.label(), System::WeirTodo.label());
            }
        }
    }

    // Run 1 of every system, then run 2, ...: when the machine's load changes
    // during the benchmark, every system gets its share of it.
    let mut results: Vec<Vec<ThroughputResult>> = systems.iter().map(|_| Vec::new()).collect();
    for run in 1..=args.runs {
        for (system, results) in systems.iter().zip(&mut results) {
            let result = driver
                .throughput(system, run)
                .with_context(|| format!("{} throughput run {run}", system.label()))?;
            eprintln!(
                "  {:<36} run {run}: {:>9.0} events/s, {:.2} CPU s/100k, peak RSS {} MiB{}",
                system.label(),
                result.events_per_second,
                result.cpu_per_100k.as_secs_f64(),
                result.peak_rss / (1024 * 1024),
                result.tracing.as_ref().map_or(String::new(), |t| format!(
                    ", spans exported {} dropped {} failed {}",
                    t.spans.exported, t.spans.dropped, t.spans.failed
                ))
            );
            results.push(result);
        }
    }
    for (system, results) in systems.iter().zip(results) {
        report.throughput(system.label(), results);
    }

    let rate = match args.rate {
        Some(rate) => rate,
        None => {
            let peak = report
                .median_throughput(&System::Passthrough.label())
                .ok_or_else(|| anyhow!("--rate is needed when passthrough is not run"))?;
            (peak / 2.0) as u64
        }
    };
    report.set_rate(rate);
    for system in &systems {
        let result = driver
            .latency(system, rate)
            .with_context(|| format!("{} latency run", system.label()))?;
        eprintln!(
            "  {:<36} at {rate} events/s: p50 {:.1} ms, p99 {:.1} ms",
            system.label(),
            result.p50.as_secs_f64() * 1e3,
            result.p99.as_secs_f64() * 1e3
        );
        report.latency(system.label(), result);
    }

    let text = report.markdown();
    std::fs::write(&args.report, &text)
        .with_context(|| format!("writing {}", args.report.display()))?;
    println!("{text}");
    eprintln!("report written to {}", args.report.display());
    Ok(())
}

/// Fails early, naming the fix, when a system's program is missing.
fn check_inputs(args: &RunArgs, systems: &[System]) -> anyhow::Result<()> {
    let need = |path: &Path, fix: &str| {
        if path.exists() {
            Ok(())
        } else {
            Err(anyhow!("{} is missing; {fix}", path.display()))
        }
    };
    if systems.iter().any(System::is_weir) {
        need(&args.weir, "build it with `cargo build --release -p weir`")?;
        for plugin in ["task_validator", "reminder_deriver", "ui_projector"] {
            need(
                &args.plugins.join(format!("{plugin}.wasm")),
                "build the plugins with scripts/build-plugins",
            )?;
        }
    }
    if systems.contains(&System::WeirTodoStateless) {
        need(
            &args.stateless_deriver,
            "bench/run builds it from commit 999708b",
        )?;
    }
    if systems.contains(&System::WeirTodoBefore) {
        need(&args.weir_before, "bench/run builds it from commit 65248c0")?;
    }
    if systems.contains(&System::Aiokafka) {
        need(
            &args.python,
            "create it with bench/run (a venv with bench/aiokafka/requirements.txt)",
        )?;
        need(&args.service, "run from the repository root")?;
    }
    Ok(())
}

/// Throughput and latency of one run, measured at the tail.
struct Tail {
    consumer: BaseConsumer,
    seen: u64,
}

impl Tail {
    fn new(brokers: &str, topics: &Topics) -> anyhow::Result<Tail> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("{}-tail", topics.group))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "5")
            .set("enable.partition.eof", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for topic in &topics.outputs {
            for partition in 0..partitions_of(topic) {
                tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
            }
        }
        consumer.assign(&tpl)?;
        Ok(Tail { consumer, seen: 0 })
    }

    /// Reads outputs, handing each to `each`, until `expected` have been seen.
    /// Fails when the system exits or nothing arrives for [`STALL`].
    fn follow(
        &mut self,
        expected: u64,
        child: &mut Child,
        system: &System,
        mut each: impl FnMut(&BorrowedMessage<'_>),
    ) -> anyhow::Result<()> {
        let mut last_progress = Instant::now();
        while self.seen < expected {
            if let Some(status) = child.try_wait()? {
                bail!("{} exited early with {status}", system.label());
            }
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(message)) => {
                    self.seen += 1;
                    last_progress = Instant::now();
                    each(&message);
                }
                Some(Err(error)) => bail!("tail consumer: {error}"),
                None if last_progress.elapsed() > STALL => {
                    let _ = child.kill();
                    bail!("no output for {STALL:?} after {} of {expected}", self.seen);
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// Whether a plugin component imports the `timers` interface (the stateful
/// reminder-deriver does; the one before issue 18 does not).
pub fn is_stateful(component: &Path) -> bool {
    let needle = b"weir:plugin/timers";
    std::fs::read(component).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
}

/// Partitions of a benchmark topic: 1 for a dead-letter topic, else [`PARTITIONS`].
pub fn partitions_of(topic: &str) -> i32 {
    if topic.ends_with("dlq") {
        1
    } else {
        PARTITIONS
    }
}

/// Creates `names` (partitions by [`partitions_of`], replication 1).
pub fn create_topics(
    admin: &AdminClient<DefaultClientContext>,
    names: &[&str],
) -> anyhow::Result<()> {
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| NewTopic::new(name, partitions_of(name), TopicReplication::Fixed(1)))
        .collect();
    let results = weir::kafka::block_on_runtime()?
        .block_on(admin.create_topics(&new, &AdminOptions::new()))?;
    for result in results {
        result.map_err(|(topic, code)| anyhow!("creating topic {topic}: {code}"))?;
    }
    Ok(())
}

/// The producer of the input: idempotent, `acks=all`, a large queue.
pub fn input_producer_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        // Uncompressed input: aiokafka reads it without an lz4 library, and no
        // system pays for decompression.
        .set("compression.type", "none")
        .set("queue.buffering.max.kbytes", "262144");
    config
}

/// Sends a record, waiting while the producer's queue is full.
pub fn send<'a, C: ProducerContext>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'a, [u8], [u8], C::DeliveryOpaque>,
) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// The group's committed offset of each partition of `topic` (0 where none).
pub fn committed(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> KafkaResult<Vec<i64>> {
    let mut tpl = TopicPartitionList::new();
    for partition in 0..partitions_of(topic) {
        tpl.add_partition(topic, partition);
    }
    Ok(consumer
        .committed_offsets(tpl, timeout)?
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => n,
            _ => 0,
        })
        .collect())
}

/// A client of `group` that only reads its committed offsets (it never joins).
pub fn group_reader(brokers: &str, group: &str) -> KafkaResult<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
}

impl Driver<'_> {
    fn create_topics(&self, topics: &Topics) -> anyhow::Result<()> {
        let names: Vec<&str> = std::iter::once(&topics.input)
            .chain(&topics.outputs)
            .map(String::as_str)
            .collect();
        create_topics(&self.admin, &names)
    }

    fn send(&self, topic: &str, index: usize) {
        let event = &self.workload.events[index];
        send(
            &self.producer,
            BaseRecord::to(topic)
                .key(event.key.as_bytes())
                .payload(event.value.as_slice()),
        );
    }

    fn start(&self, system: &System, topics: &Topics, run: &str) -> anyhow::Result<Child> {
        let args = self.args;
        let log_path = args.work_dir.join(format!("{}-{run}.log", system.slug()));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = match system {
            System::Passthrough | System::Native => {
                let mut command = Command::new(std::env::current_exe()?);
                command.args([
                    "serve",
                    "--mode",
                    if *system == System::Native {
                        "native"
                    } else {
                        "passthrough"
                    },
                ]);
                command
            }
            System::Weir(_)
            | System::WeirExactlyOnce
            | System::WeirTodo
            | System::WeirTodoStateless
            | System::WeirTodoTwoPipelines
            | System::WeirTodoTraced(_)
            | System::WeirTodoBefore => {
                let config = args.work_dir.join(format!("{}-{run}.toml", system.slug()));
                std::fs::write(&config, self.weir_config(system, topics)?)?;
                let weir = if *system == System::WeirTodoBefore {
                    &args.weir_before
                } else {
                    &args.weir
                };
                let mut command = Command::new(weir);
                command.arg("run").arg("--config").arg(&config);
                // Local stores of stateful plugins go here, not to the user's
                // ~/.local/state (an environment variable, which weir versions
                // without state ignore).
                command.env("WEIR_STATE_DIR", args.work_dir.join("stores"));
                self.tracing_env(&mut command, system)?;
                command
            }
            System::Aiokafka => {
                let mut command = Command::new(&args.python);
                command.arg(&args.service);
                command
            }
        };
        if !system.is_weir() {
            command.args([
                "--brokers",
                &args.brokers,
                "--input",
                &topics.input,
                "--output",
                &topics.outputs[0],
                "--dlq",
                &topics.outputs[1],
                "--group",
                &topics.group,
            ]);
        }
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", system.label()))
    }

    /// Tracing off (no `OTEL_*` variable from the benchmark's own environment),
    /// or on as `system` asks: OTLP over HTTP to the benchmark's Jaeger or to a
    /// closed port, new traces sampled at its ratio.
    fn tracing_env(&self, command: &mut Command, system: &System) -> anyhow::Result<()> {
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        let System::WeirTodoTraced(tracing) = system else {
            return Ok(());
        };
        let (endpoint, ratio) = match tracing {
            Tracing::Sampled(percent) => (
                self.jaeger
                    .as_ref()
                    .ok_or_else(|| anyhow!("no Jaeger was started"))?
                    .endpoint(),
                f64::from(*percent) / 100.0,
            ),
            Tracing::Down => (closed_endpoint()?, 1.0),
        };
        command
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
            .env("OTEL_TRACES_SAMPLER_ARG", ratio.to_string())
            .env("OTEL_SERVICE_NAME", format!("weir-bench-{}", system.slug()));
        Ok(())
    }

    /// What became of a traced system's spans, once its export has settled, and
    /// the CPU Jaeger spent since `jaeger_cpu` (read when the system started).
    /// Fails when its log shows that tracing is not on.
    fn tracing_result(
        &self,
        system: &System,
        log: &Path,
        jaeger_cpu: Option<Duration>,
        jaeger_spans: Option<u64>,
    ) -> anyhow::Result<Option<TracingResult>> {
        let text =
            std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
        let on = text.contains("spans go to the collector");
        if !matches!(system, System::WeirTodoTraced(_)) {
            if on {
                bail!(
                    "{} traces, though no OTEL_* variable was set; see {}",
                    system.label(),
                    log.display()
                );
            }
            return Ok(None);
        }
        if !on {
            bail!(
                "{}: weir did not log that tracing is on; see {}",
                system.label(),
                log.display()
            );
        }
        let address = metrics_address(&text)
            .ok_or_else(|| anyhow!("no metrics address in {}", log.display()))?;
        let spans = settled_span_counts(&address, Duration::from_secs(15))?;
        let jaeger = self.jaeger.as_ref().filter(|_| system.needs_jaeger());
        let collector_cpu = jaeger
            .and_then(|j| Some(cpu_time(j.pid())?.saturating_sub(jaeger_cpu?)))
            .map(|cpu| cpu.mul_f64(100_000.0 / self.workload.events.len() as f64));
        let accepted = jaeger.and_then(|j| Some(j.accepted_spans()?.saturating_sub(jaeger_spans?)));
        Ok(Some(TracingResult {
            spans,
            collector_cpu_per_100k: collector_cpu,
            collector_accepted: accepted,
        }))
    }

    fn weir_config(&self, system: &System, topics: &Topics) -> anyhow::Result<String> {
        let plugins = std::fs::canonicalize(&self.args.plugins)?;
        let plugin = |name: &str| plugins.join(format!("{name}.wasm")).display().to_string();
        let mut keys = String::new();
        if let System::Weir(Some(n)) = system {
            keys.push_str(&format!("workers = {n}\n"));
        }
        if *system == System::WeirExactlyOnce {
            keys.push_str("delivery = \"exactly-once\"\n");
        }
        let names: Vec<&str> = std::iter::once(&topics.input)
            .chain(&topics.outputs)
            .map(String::as_str)
            .collect();
        let head = weir_config_head(&self.args.brokers, &names);
        let body = if matches!(
            system,
            System::WeirTodo
                | System::WeirTodoStateless
                | System::WeirTodoTraced(_)
                | System::WeirTodoBefore
        ) {
            let deriver = if *system == System::WeirTodoStateless {
                std::fs::canonicalize(&self.args.stateless_deriver)?
            } else {
                plugins.join("reminder_deriver.wasm")
            };
            todo_pipeline_with(
                &TodoTopics {
                    input: &topics.input,
                    group: &topics.group,
                    reminders: &topics.outputs[0],
                    reminders_dlq: &topics.outputs[1],
                    updates: &topics.outputs[2],
                    updates_dlq: &topics.outputs[3],
                },
                &plugins,
                &deriver,
                "15m",
            )
        } else if *system == System::WeirTodoTwoPipelines {
            format!(
                r#"[[pipeline]]
name = "reminders"
input = "{input}"
group = "{group}"
plugins = [
  {{ path = "{validator}" }},
  {{ path = "{deriver}", config = {{ lead-time = "15m" }} }},
]
outputs = {{ reminders = "{out}" }}
dlq = "{dlq}"
{POLICY}
[[pipeline]]
name = "ui-sync"
input = "{input}"
group = "{group}{UI_GROUP}"
plugins = [{{ path = "{validator}" }}, {{ path = "{projector}" }}]
outputs = {{ task-updates = "{updates}" }}
dlq = "{ui_dlq}"
{POLICY}"#,
                input = topics.input,
                group = topics.group,
                validator = plugin("task_validator"),
                deriver = plugin("reminder_deriver"),
                projector = plugin("ui_projector"),
                out = topics.outputs[0],
                dlq = topics.outputs[1],
                updates = topics.outputs[2],
                ui_dlq = topics.outputs[3],
            )
        } else {
            format!(
                r#"[[pipeline]]
name = "reminders"
input = "{input}"
group = "{group}"
plugins = [
  {{ path = "{validator}" }},
  {{ path = "{deriver}", config = {{ lead-time = "15m" }} }},
]
outputs = {{ reminders = "{out}" }}
dlq = "{dlq}"
{keys}{POLICY}"#,
                input = topics.input,
                group = topics.group,
                validator = plugin("task_validator"),
                deriver = plugin("reminder_deriver"),
                out = topics.outputs[0],
                dlq = topics.outputs[1],
            )
        };
        Ok(head + &body)
    }

    fn throughput(&self, system: &System, run: usize) -> anyhow::Result<ThroughputResult> {
        let run_name = format!("t{run}");
        let topics = Topics::new(self.stamp, system, &run_name);
        self.create_topics(&topics)?;
        for index in 0..self.workload.events.len() {
            self.send(&topics.input, index);
        }
        self.producer
            .flush(Duration::from_secs(60))
            .context("preloading the input")?;
        let expected: u64 = (0..self.workload.events.len())
            .map(|i| system.outputs(&self.workload, i, self.stateful_deriver))
            .sum();

        let mut tail = Tail::new(&self.args.brokers, &topics)?;
        let jaeger = self.jaeger.as_ref().filter(|_| system.needs_jaeger());
        let jaeger_cpu = jaeger.and_then(|j| cpu_time(j.pid()));
        let jaeger_spans = jaeger.and_then(Jaeger::accepted_spans);
        let mut child = self.start(system, &topics, &run_name)?;
        let sampler = CpuSampler::start(child.id());
        // Output timestamps are set by the system's producer when it produces, so
        // the span from the first to the last is the processing time, however late
        // the tail consumer reads them.
        let (mut first_ms, mut last_ms) = (i64::MAX, i64::MIN);
        tail.follow(expected, &mut child, system, |message| {
            let at = message.timestamp().to_millis().unwrap_or_default();
            first_ms = first_ms.min(at);
            last_ms = last_ms.max(at);
        })?;
        let peak_rss = peak_rss(child.id()).unwrap_or_default();
        let samples = sampler.finish();
        let log = self
            .args
            .work_dir
            .join(format!("{}-{run_name}.log", system.slug()));
        // Stopped whatever the spans say, then their error, if any.
        let tracing = self.tracing_result(system, &log, jaeger_cpu, jaeger_spans);
        stop(&mut child, system)?;
        let tracing = tracing?;
        let span_ms = (last_ms - first_ms).max(1) as f64;
        let events = self.workload.events.len() as f64;
        let cpu = cpu_between(&samples, first_ms, last_ms);
        let committed = self.committed(system, &topics)?;
        if committed < self.workload.events.len() as i64 {
            bail!(
                "{} committed {committed} of {} input records",
                system.label(),
                self.workload.events.len()
            );
        }
        Ok(ThroughputResult {
            events_per_second: events * 1000.0 / span_ms,
            cpu_per_100k: cpu.mul_f64(100_000.0 / events),
            peak_rss,
            tracing,
        })
    }

    fn latency(&self, system: &System, rate: u64) -> anyhow::Result<LatencyResult> {
        let topics = Topics::new(self.stamp, system, "lat");
        self.create_topics(&topics)?;
        let events = self.workload.events.len();
        let warm = WARM_UP.min(events / 10);
        let expected_warm: u64 = (0..warm)
            .map(|i| system.outputs(&self.workload, i, self.stateful_deriver))
            .sum();
        let expected: u64 = (0..events)
            .map(|i| system.outputs(&self.workload, i, self.stateful_deriver))
            .sum();

        let mut tail = Tail::new(&self.args.brokers, &topics)?;
        let mut child = self.start(system, &topics, "lat")?;
        let origin = Instant::now();
        for index in 0..warm {
            self.send(&topics.input, index);
        }
        tail.follow(expected_warm, &mut child, system, |_| {})?;

        // The sender paces the rest; this thread matches outputs to send times.
        let sent: Arc<Vec<AtomicU64>> = Arc::new((0..events).map(|_| AtomicU64::new(0)).collect());
        let paced_start = Instant::now();
        let mut latencies = Vec::with_capacity(events);
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let sent_by_sender = sent.clone();
            let input = topics.input.clone();
            scope.spawn(move || {
                for index in warm..events {
                    let due =
                        paced_start + Duration::from_secs_f64((index - warm) as f64 / rate as f64);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    sent_by_sender[index].store(
                        (Instant::now() - origin).as_nanos() as u64,
                        Ordering::Release,
                    );
                    self.send(&input, index);
                }
            });
            tail.follow(expected, &mut child, system, |message| {
                let now = (Instant::now() - origin).as_nanos() as u64;
                let index = message
                    .payload()
                    .and_then(event_id)
                    .and_then(|id| self.workload.ids.get(id));
                if let Some(&index) = index
                    && index as usize >= warm
                {
                    let at = sent[index as usize].load(Ordering::Acquire);
                    if at > 0 {
                        latencies.push(Duration::from_nanos(now.saturating_sub(at)));
                    }
                }
            })?;
            Ok(())
        })?;
        let drained = paced_start.elapsed();
        let peak_rss = peak_rss(child.id()).unwrap_or_default();
        stop(&mut child, system)?;
        latencies.sort_unstable();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        if latencies.is_empty() {
            bail!("no output could be matched to its input");
        }
        Ok(LatencyResult {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
            samples: latencies.len(),
            achieved: (events - warm) as f64 / drained.as_secs_f64(),
            peak_rss,
        })
    }

    /// Sum over the input's partitions of the group's committed offsets; with two
    /// pipelines, the lesser of their groups' sums.
    fn committed(&self, system: &System, topics: &Topics) -> anyhow::Result<i64> {
        let sum = |group: &str| -> anyhow::Result<i64> {
            let consumer = group_reader(&self.args.brokers, group)?;
            Ok(
                committed(&consumer, &topics.input, Duration::from_secs(10))?
                    .iter()
                    .sum(),
            )
        };
        let mut least = sum(&topics.group)?;
        if *system == System::WeirTodoTwoPipelines {
            least = least.min(sum(&format!("{}{UI_GROUP}", topics.group))?);
        }
        Ok(least)
    }
}

/// Samples a process's CPU time every 10 ms against the wall clock, so that the CPU
/// spent between two output timestamps can be read afterwards.
struct CpuSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(i64, Duration)>>,
}

impl CpuSampler {
    fn start(pid: u32) -> CpuSampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                if let Some(cpu) = cpu_time(pid) {
                    samples.push((wall_ms(), cpu));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            samples
        });
        CpuSampler { stop, thread }
    }

    fn finish(self) -> Vec<(i64, Duration)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// CPU time used from wall-clock `from_ms` to `to_ms`: the last sample at or before
/// `from_ms` to the first at or after `to_ms`.
fn cpu_between(samples: &[(i64, Duration)], from_ms: i64, to_ms: i64) -> Duration {
    let start = samples
        .iter()
        .rev()
        .find(|(at, _)| *at <= from_ms)
        .or(samples.first())
        .map_or(Duration::ZERO, |s| s.1);
    let end = samples
        .iter()
        .find(|(at, _)| *at >= to_ms)
        .or(samples.last())
        .map_or(Duration::ZERO, |s| s.1);
    end.saturating_sub(start)
}

/// Stops a system with SIGTERM (it drains and commits), killing it after 60 s.
fn stop(child: &mut Child, system: &System) -> anyhow::Result<()> {
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() && !system.is_weir() {
                eprintln!("  note: {} exited with {status}", system.label());
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("{} did not stop within 60 s of SIGTERM", system.label());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
