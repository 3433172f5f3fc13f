//! `weir-bench soak` (issue 13): the Todo deployment of `pipelines.toml` for a long
//! run at a steady offered rate, disturbed the way production disturbs it:
//!
//! - a hot reload every few minutes (`weir run --watch`), alternately a live config
//!   change (the reminder-deriver's `lead-time`, 15m <-> 16m) and another build of
//!   the ui-projector copied over the running file, each checked in every
//!   instance's log;
//! - one SIGKILL of weir and a restart;
//! - one broker pause (SIGSTOP of the broker's JVM, then SIGCONT);
//! - a second weir instance joining the group and later leaving it (SIGTERM).
//!
//! Meanwhile the RSS, open file descriptors and threads of every weir process are
//! sampled from `/proc`, and the group's consumer lag from the broker. At the end the
//! traffic stops, the lag must fall to 0, and every input is accounted for: each
//! valid one's task update (duplicates only byte-identical) and reminder, each
//! invalid one in both branch DLQs (inputs carry a unique `trace` header). The report
//! says whether RSS and fds stayed flat after warm-up.
//!
//! Writes `report.md`, `samples.csv`, `lag.csv` and `rss-fds.svg` to `--out`, with
//! the config, the plugin copies weir runs and each process's log.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use rdkafka::ClientContext;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::driver::{
    TodoTopics, committed, create_topics, group_reader, input_producer_config, partitions_of, send,
    todo_pipeline, weir_config_head,
};
use crate::proc::{cpu_time, open_fds, rss, threads};
use crate::report::machine;
use crate::workload::{event_id, reminder_outcome, sample_events};

/// Events generated at a time (each batch has its own seed, so ids never repeat).
const BATCH: usize = 50_000;
const SEED: u64 = 13;
/// The input header that names each input: its sequence number.
const TRACE: &str = "trace";
/// The reminder-deriver's `lead-time`, toggled by the config reloads.
const LEAD_TIMES: [&str; 2] = ["15m", "16m"];
/// How long a reload may take to show in an instance's log.
const RELOAD_WAIT: Duration = Duration::from_secs(30);
/// How long an instance may take to get its partitions.
const ASSIGN_WAIT: Duration = Duration::from_secs(180);
/// How long the group may take to catch up once the traffic stops.
const DRAIN_WAIT: Duration = Duration::from_secs(900);
/// Flatness, judged over the second half of the run for the process that lived
/// through it: the least-squares trend of RSS over the window grows it by at most
/// this share of its mean (a falling RSS is no leak), ...
const FLAT_TREND: f64 = 0.05;
/// ... RSS max - min is at most this share of its mean, ...
const FLAT_SPREAD: f64 = 0.10;
/// ... and at most this many more open fds at the end of the window than at its start.
const FLAT_FDS: i64 = 4;

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Bootstrap servers of the broker.
    #[arg(long)]
    pub brokers: String,
    /// PID of the broker's JVM, frozen for the pause (scripts/with-broker exports
    /// it as BROKER_PID).
    #[arg(long, env = "BROKER_PID")]
    pub broker_pid: i32,
    /// What the broker is, for the report (BROKER_NAME from scripts/with-broker).
    #[arg(long, env = "BROKER_NAME")]
    pub broker_name: Option<String>,
    /// How long the traffic runs, in minutes.
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Offered load, events/s.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Where the report, samples, plot, config, plugin copies and logs go.
    #[arg(long, default_value = "target/soak")]
    pub out: PathBuf,
    /// Seconds between two samples of /proc and of the consumer lag.
    #[arg(long, default_value_t = 5)]
    pub sample_every: u64,
    /// Hot reloads over the run, evenly spread, alternately a config change and a
    /// plugin file replaced by another build.
    #[arg(long, default_value_t = 10)]
    pub reloads: usize,
    /// Seconds the broker stays frozen.
    #[arg(long, default_value_t = 15)]
    pub pause: u64,
    /// Distinct users (the topic key) per batch of generated events.
    #[arg(long, default_value_t = 1_000)]
    pub users: usize,
    /// The weir binary.
    #[arg(long, default_value = "target/release/weir")]
    pub weir: PathBuf,
    /// Where the plugin components are.
    #[arg(long, default_value = "target/wasm32-wasip2/release")]
    pub plugins: PathBuf,
    /// Another build of the ui-projector, swapped with the release build at every
    /// other reload (scripts/soak builds it: the dev profile at opt-level 3).
    #[arg(long, default_value = "target/wasm32-wasip2/debug/ui_projector.wasm")]
    pub other_projector: PathBuf,
}

// ---------------------------------------------------------------------------------
// The input: paced, generated, each record remembered for the accounting.

const VALID: u8 = 1;
const REMINDER: u8 = 2;
const NOT_SENT: u8 = 4;

/// What was sent: per input (index = its `trace` header) what weir should make of
/// it, and the ids its outputs carry.
#[derive(Default)]
struct Ledger {
    /// `VALID` (the validator accepts it), `REMINDER` (the deriver gives one),
    /// `NOT_SENT` (the producer reported it undelivered).
    kind: Vec<u8>,
    /// Hash of the input's key and value.
    hash: Vec<u64>,
    /// An input's `event_id`, and its reminder's -> the input.
    ids: HashMap<u128, u32>,
}

/// The input producer's delivery reports: which inputs did not make it.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Vec<usize>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        if let Err((error, _)) = result {
            eprintln!("soak: input {index} was not delivered: {error}");
            self.failed.lock().unwrap().push(index);
        }
    }
}

fn hash_of(key: Option<&[u8]>, value: Option<&[u8]>) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    value.hash(&mut hasher);
    hasher.finish()
}

/// A UUID in its text form as a number.
fn uuid_bits(text: &str) -> Option<u128> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    (hex.len() == 32)
        .then(|| u128::from_str_radix(&hex, 16).ok())
        .flatten()
}

/// Offers `rate` events/s to `topic` until `stop`, then hands back what it sent.
fn offer(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    rate: u64,
    users: usize,
    expected: usize,
    stop: &AtomicBool,
) -> Ledger {
    // Room for the whole run up front: no rehash of millions of ids mid-run.
    let mut ledger = Ledger {
        kind: Vec::with_capacity(expected),
        hash: Vec::with_capacity(expected),
        ids: HashMap::with_capacity(expected * 2),
    };
    let mut batch = Vec::new();
    let mut next_in_batch = 0;
    let mut batches = 0;
    let start = Instant::now();
    let mut sent: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due && !stop.load(Ordering::Relaxed) {
            if next_in_batch == batch.len() {
                batch = sample_events(BATCH, users, SEED * 1_000_000 + batches);
                batches += 1;
                next_in_batch = 0;
            }
            let event = &batch[next_in_batch];
            next_in_batch += 1;
            let index = sent as usize;
            let outcome = reminder_outcome(&event.value);
            let valid = task_validator::validate(Some(&event.value)).is_ok();
            let mut kind = 0;
            if valid {
                kind |= VALID;
                if let Some(id) = event_id(&event.value) {
                    ledger
                        .ids
                        .extend(uuid_bits(id).map(|id| (id, index as u32)));
                    let reminder = todo_events::derive_id(&["reminder-event", id]).to_string();
                    ledger
                        .ids
                        .extend(uuid_bits(&reminder).map(|id| (id, index as u32)));
                }
            }
            if outcome == Some(true) {
                kind |= REMINDER;
            }
            ledger.kind.push(kind);
            ledger
                .hash
                .push(hash_of(Some(event.key.as_bytes()), Some(&event.value)));
            let trace = index.to_string();
            send(
                producer,
                BaseRecord::with_opaque_to(topic, index)
                    .key(event.key.as_bytes())
                    .payload(event.value.as_slice())
                    .headers(OwnedHeaders::new().insert(Header {
                        key: TRACE,
                        value: Some(trace.as_bytes()),
                    })),
            );
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    ledger
}

// ---------------------------------------------------------------------------------
// Sampling: /proc of every weir process, and the group's lag.

/// One sample of one process.
struct Sample {
    at: f64,
    label: String,
    pid: u32,
    rss: u64,
    fds: usize,
    threads: u64,
    cpu: f64,
}

/// The processes to sample: (label, pid). The broker and the driver are sampled too,
/// for their CPU.
type Watched = Arc<Mutex<Vec<(String, u32)>>>;

fn sample_processes(
    origin: Instant,
    watched: &Watched,
    every: Duration,
    csv: &Path,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<Sample>> {
    let mut file = std::fs::File::create(csv)?;
    writeln!(file, "elapsed_s,process,pid,rss_kib,fds,threads,cpu_s")?;
    let mut samples = Vec::new();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let at = origin.elapsed().as_secs_f64();
        let processes = watched.lock().unwrap().clone();
        for (label, pid) in processes {
            let (Some(rss), Some(fds), Some(threads), Some(cpu)) =
                (rss(pid), open_fds(pid), threads(pid), cpu_time(pid))
            else {
                continue;
            };
            let cpu = cpu.as_secs_f64();
            writeln!(
                file,
                "{at:.1},{label},{pid},{},{fds},{threads},{cpu:.2}",
                rss / 1024
            )?;
            samples.push(Sample {
                at,
                label,
                pid,
                rss,
                fds,
                threads,
                cpu,
            });
        }
        file.flush()?;
        next += every;
        while Instant::now() < next && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(samples)
}

/// The group's lag on `topic`: high watermarks minus committed offsets.
fn group_lag(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> KafkaResult<i64> {
    let committed = committed(consumer, topic, timeout)?;
    let mut lag = 0;
    for (partition, committed) in committed.iter().enumerate() {
        let (_, high) = consumer.fetch_watermarks(topic, partition as i32, timeout)?;
        lag += high - committed;
    }
    Ok(lag)
}

fn sample_lag(
    origin: Instant,
    consumer: &BaseConsumer,
    topic: &str,
    every: Duration,
    csv: &Path,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<(f64, i64)>> {
    let mut file = std::fs::File::create(csv)?;
    writeln!(file, "elapsed_s,lag")?;
    let mut samples = Vec::new();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let at = origin.elapsed().as_secs_f64();
        // A frozen broker answers nothing: that sample is left out.
        match group_lag(consumer, topic, every.min(Duration::from_secs(4))) {
            Ok(lag) => {
                writeln!(file, "{at:.1},{lag}")?;
                file.flush()?;
                samples.push((at, lag));
            }
            Err(error) => eprintln!("soak {}: no lag sample: {error}", clock(at)),
        }
        next += every;
        while Instant::now() < next && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(samples)
}

// ---------------------------------------------------------------------------------
// weir processes and their logs.

struct Instance {
    label: String,
    child: Child,
    log: PathBuf,
}

fn log_text(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn count_in_log(path: &Path, needle: &str) -> usize {
    log_text(path).matches(needle).count()
}

/// Waits until `needle` occurs in the log more than `before` times.
fn wait_in_log(path: &Path, needle: &str, before: usize, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if count_in_log(path, needle) > before {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The partitions of the last "partitions assigned" line of a log.
fn last_assignment(path: &Path) -> String {
    log_text(path)
        .lines()
        .rev()
        .find(|l| l.contains("partitions assigned"))
        .and_then(|l| l.split("partitions=").nth(1))
        .map_or("?".into(), |p| p.trim().to_owned())
}

/// The WARN and ERROR lines of a log, by kind (the text after the level, digits
/// masked, cut at 150 characters), most frequent first.
fn log_summary(path: &Path) -> Vec<(String, usize)> {
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for line in log_text(path).lines() {
        let Some(at) = line.find(" WARN ").or_else(|| line.find(" ERROR ")) else {
            continue;
        };
        let kind: String = mask_ids(&line[at + 1..])
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .filter(|c| *c != '`')
            .take(150)
            .collect();
        *kinds.entry(kind).or_default() += 1;
    }
    let mut kinds: Vec<(String, usize)> = kinds.into_iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    kinds
}

/// Replaces what a log line has in parentheses without a space (librdkafka's topic
/// ids) with `(…)`.
fn mask_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('(') {
        out.push_str(&rest[..open]);
        match rest[open..].find(')') {
            Some(close) if !rest[open..open + close].contains(' ') => {
                out.push_str("(…)");
                rest = &rest[open + close + 1..];
            }
            _ => {
                out.push('(');
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// One line of the timeline.
struct Event {
    at: f64,
    what: String,
    outcome: String,
    ok: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    /// Reload number n (even: config change, odd: plugin file).
    Reload(usize),
    Kill,
    Join,
    PauseBroker,
    Leave,
}

impl Action {
    /// Disruptions whose lag the report looks at.
    fn short(self) -> &'static str {
        match self {
            Action::Reload(_) => "reload",
            Action::Kill => "SIGKILL + restart",
            Action::Join => "second instance joins",
            Action::PauseBroker => "broker paused",
            Action::Leave => "second instance leaves",
        }
    }
}

/// When each disturbance happens, in seconds after the traffic starts: the
/// disruptions in the first half (so that the second half shows the steady state
/// with reloads only), the reloads evenly spread between them.
fn schedule(seconds: f64, reloads: usize) -> Vec<(f64, Action)> {
    let mut plan = vec![
        (0.10 * seconds, Action::Kill),
        (0.20 * seconds, Action::Join),
        (0.30 * seconds, Action::PauseBroker),
        (0.40 * seconds, Action::Leave),
    ];
    for n in 0..reloads {
        plan.push((
            (n as f64 + 0.5) / reloads as f64 * seconds,
            Action::Reload(n),
        ));
    }
    plan.sort_by(|a, b| a.0.total_cmp(&b.0));
    plan
}

struct Topics {
    input: String,
    reminders: String,
    reminders_dlq: String,
    updates: String,
    updates_dlq: String,
    group: String,
}

impl Topics {
    fn todo(&self) -> TodoTopics<'_> {
        TodoTopics {
            input: &self.input,
            group: &self.group,
            reminders: &self.reminders,
            reminders_dlq: &self.reminders_dlq,
            updates: &self.updates,
            updates_dlq: &self.updates_dlq,
        }
    }

    fn all(&self) -> [&str; 5] {
        [
            &self.input,
            &self.reminders,
            &self.updates,
            &self.reminders_dlq,
            &self.updates_dlq,
        ]
    }
}

struct Soak<'a> {
    args: &'a SoakArgs,
    origin: Instant,
    /// Seconds after `origin` when the traffic started.
    traffic_start: f64,
    topics: Topics,
    config: PathBuf,
    plugins: PathBuf,
    logs: PathBuf,
    lead_time: usize,
    other_build: bool,
    instances: Vec<Instance>,
    watched: Watched,
    timeline: Vec<Event>,
    /// (seconds after origin, action) of each disruption, for the lag table.
    disruptions: Vec<(f64, Action)>,
    replacements: usize,
    /// The weir binary (a copy).
    weir: PathBuf,
    /// Copies of the release and the other build of the ui-projector.
    projector_builds: [PathBuf; 2],
    /// Every instance started, in order.
    logged: Vec<String>,
}

impl Soak<'_> {
    fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    fn note(&mut self, what: impl Into<String>, outcome: impl Into<String>, ok: bool) {
        let event = Event {
            at: self.now(),
            what: what.into(),
            outcome: outcome.into(),
            ok,
        };
        eprintln!(
            "soak {} {}{}: {}",
            clock(event.at),
            if ok { "" } else { "FAILED " },
            event.what,
            event.outcome
        );
        self.timeline.push(event);
    }

    fn write_config(&self) -> anyhow::Result<()> {
        let text = weir_config_head(&self.args.brokers, &self.topics.all())
            + &todo_pipeline(
                &self.topics.todo(),
                &self.plugins,
                LEAD_TIMES[self.lead_time],
            );
        // Written aside and renamed over, so weir never reads half a file.
        let aside = self.config.with_extension("toml.new");
        std::fs::write(&aside, text)?;
        std::fs::rename(&aside, &self.config)?;
        Ok(())
    }

    fn start(&mut self, label: &str) -> anyhow::Result<()> {
        let log = self.logs.join(format!("{label}.log"));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(&self.weir);
        command
            .args(["run", "--watch", "--config"])
            .arg(&self.config)
            .env("WEIR_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        // SAFETY: prctl is async-signal-safe. weir dies with this driver, so a
        // failed soak leaves no instance behind in the group.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.weir.display()))?;
        let pid = child.id();
        self.watched.lock().unwrap().push((label.to_owned(), pid));
        self.logged.push(label.to_owned());
        self.instances.push(Instance {
            label: label.to_owned(),
            child,
            log,
        });
        self.note(format!("{label} started"), format!("pid {pid}"), true);
        Ok(())
    }

    fn forget(&mut self, pid: u32) {
        self.watched.lock().unwrap().retain(|(_, p)| *p != pid);
    }

    fn instance(&self, label: &str) -> Option<usize> {
        self.instances.iter().position(|i| i.label == label)
    }

    /// Waits for the first assignment of the newest instance.
    fn await_assignment(&mut self, label: &str) {
        let Some(i) = self.instance(label) else {
            return;
        };
        let log = self.instances[i].log.clone();
        match wait_in_log(&log, "partitions assigned", 0, ASSIGN_WAIT) {
            Some(took) => self.note(
                format!("{label} assigned"),
                format!(
                    "partitions {} after {:.1} s",
                    last_assignment(&log),
                    took.as_secs_f64()
                ),
                true,
            ),
            None => self.note(
                format!("{label} assigned"),
                format!("no assignment within {} s", ASSIGN_WAIT.as_secs()),
                false,
            ),
        }
    }

    fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        let Some(i) = self.instance("weir-a") else {
            self.note("SIGKILL weir-a", "weir-a is not running", false);
            return Ok(());
        };
        let mut victim = self.instances.remove(i);
        let pid = victim.child.id();
        victim.child.kill()?;
        let status = victim.child.wait()?;
        self.forget(pid);
        self.note(
            format!("SIGKILL weir-a (pid {pid})"),
            format!("{status}"),
            true,
        );
        self.start("weir-a2")?;
        self.await_assignment("weir-a2");
        Ok(())
    }

    fn join(&mut self) -> anyhow::Result<()> {
        self.start("weir-b")?;
        self.await_assignment("weir-b");
        std::thread::sleep(Duration::from_secs(2));
        let shares: Vec<String> = self
            .instances
            .iter()
            .map(|i| format!("{} {}", i.label, last_assignment(&i.log)))
            .collect();
        self.note("group after the join", shares.join(", "), true);
        Ok(())
    }

    fn pause_broker(&mut self) {
        let pid = self.args.broker_pid;
        // SAFETY: kill has no memory-safety preconditions.
        let frozen = unsafe { libc::kill(pid, libc::SIGSTOP) } == 0;
        if !frozen {
            self.note(
                format!("SIGSTOP broker (pid {pid})"),
                std::io::Error::last_os_error().to_string(),
                false,
            );
            return;
        }
        self.note(
            format!("SIGSTOP broker (pid {pid})"),
            format!("frozen for {} s", self.args.pause),
            true,
        );
        let resume = BrokerResume(pid);
        std::thread::sleep(Duration::from_secs(self.args.pause));
        drop(resume);
        let alive = self.instances.len();
        self.note(
            "SIGCONT broker",
            format!("resumed; {alive} weir instance(s) running"),
            true,
        );
    }

    fn leave(&mut self) -> anyhow::Result<()> {
        let Some(i) = self.instance("weir-b") else {
            self.note("SIGTERM weir-b", "weir-b is not running", false);
            return Ok(());
        };
        let mut leaver = self.instances.remove(i);
        let pid = leaver.child.id();
        let others: Vec<(String, PathBuf, usize)> = self
            .instances
            .iter()
            .map(|i| {
                (
                    i.label.clone(),
                    i.log.clone(),
                    count_in_log(&i.log, "partitions assigned"),
                )
            })
            .collect();
        let started = Instant::now();
        let status = terminate(&mut leaver.child)?;
        self.forget(pid);
        match status {
            Some(status) => self.note(
                format!("SIGTERM weir-b (pid {pid})"),
                format!("{status} after {:.1} s", started.elapsed().as_secs_f64()),
                status.success(),
            ),
            None => self.note(
                format!("SIGTERM weir-b (pid {pid})"),
                "still running 60 s later; killed",
                false,
            ),
        }
        for (label, log, before) in others {
            match wait_in_log(&log, "partitions assigned", before, ASSIGN_WAIT) {
                Some(took) => self.note(
                    format!("{label} takes over"),
                    format!(
                        "partitions {} after {:.1} s",
                        last_assignment(&log),
                        took.as_secs_f64()
                    ),
                    true,
                ),
                None => self.note(format!("{label} takes over"), "no new assignment", false),
            }
        }
        Ok(())
    }

    fn reload(&mut self, n: usize) -> anyhow::Result<()> {
        // Only instances already watching can see the change.
        let watching: Vec<(String, PathBuf, usize, usize)> = self
            .instances
            .iter()
            .filter(|i| log_text(&i.log).contains("for changes"))
            .map(|i| {
                (
                    i.label.clone(),
                    i.log.clone(),
                    count_in_log(&i.log, "config change applied"),
                    count_in_log(&i.log, "plugin reloaded"),
                )
            })
            .collect();
        let changed = Instant::now();
        let (what, needle) = if n.is_multiple_of(2) {
            let old = LEAD_TIMES[self.lead_time];
            self.lead_time = 1 - self.lead_time;
            self.write_config()?;
            (
                format!(
                    "reload {}: config, reminder-deriver lead-time {old} -> {}",
                    n + 1,
                    LEAD_TIMES[self.lead_time]
                ),
                "config change applied",
            )
        } else {
            self.other_build = !self.other_build;
            let (source, name) = if self.other_build {
                (&self.projector_builds[1], "the other build")
            } else {
                (&self.projector_builds[0], "the release build")
            };
            // Copied over the running file in place, as `cp` does.
            std::fs::copy(source, self.plugins.join("ui_projector.wasm"))
                .with_context(|| format!("copying {}", source.display()))?;
            (
                format!("reload {}: ui_projector.wasm <- {name}", n + 1),
                "plugin reloaded",
            )
        };
        let mut outcomes = Vec::new();
        let mut ok = !watching.is_empty();
        for (label, log, config_before, plugin_before) in watching {
            let before = if needle == "plugin reloaded" {
                plugin_before
            } else {
                config_before
            };
            let remaining = RELOAD_WAIT.saturating_sub(changed.elapsed());
            match wait_in_log(&log, needle, before, remaining) {
                Some(_) => outcomes.push(format!(
                    "applied by {label} ({:.1} s)",
                    changed.elapsed().as_secs_f64()
                )),
                None => {
                    ok = false;
                    outcomes.push(format!(
                        "NOT applied by {label} within {} s",
                        RELOAD_WAIT.as_secs()
                    ));
                }
            }
        }
        if outcomes.is_empty() {
            outcomes.push("no instance was watching".into());
        }
        self.note(what, outcomes.join("; "), ok);
        Ok(())
    }

    /// Notes instances that exited on their own; starts a replacement when none is
    /// left, so that the run can still be accounted for.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        let mut exited = Vec::new();
        for (i, instance) in self.instances.iter_mut().enumerate() {
            if let Some(status) = instance.child.try_wait()? {
                exited.push((i, status));
            }
        }
        for (i, status) in exited.into_iter().rev() {
            let instance = self.instances.remove(i);
            self.forget(instance.child.id());
            self.note(
                format!("{} exited on its own", instance.label),
                format!("{status}; see {}", instance.log.display()),
                false,
            );
        }
        if self.instances.is_empty() {
            self.replacements += 1;
            let label = format!("weir-r{}", self.replacements);
            self.start(&label)?;
            self.await_assignment(&label);
        }
        Ok(())
    }

    fn perform(&mut self, action: Action) -> anyhow::Result<()> {
        if !matches!(action, Action::Reload(_)) {
            self.disruptions.push((self.now(), action));
        }
        match action {
            Action::Reload(n) => self.reload(n),
            Action::Kill => self.kill_and_restart(),
            Action::Join => self.join(),
            Action::PauseBroker => {
                self.pause_broker();
                Ok(())
            }
            Action::Leave => self.leave(),
        }
    }
}

/// SIGTERM, then the exit status; `None` when the process was still running 60 s
/// later (it is then killed).
fn terminate(child: &mut Child) -> anyhow::Result<Option<std::process::ExitStatus>> {
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGCONT to the broker when dropped, even when the soak fails mid-pause.
struct BrokerResume(i32);

impl Drop for BrokerResume {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{:02}:{:02}", s / 60, s % 60)
}

// ---------------------------------------------------------------------------------
// The run.

pub fn soak(args: &SoakArgs) -> anyhow::Result<()> {
    let seconds = args.minutes * 60.0;
    if seconds <= 0.0 || args.rate == 0 {
        bail!("--minutes and --rate must be positive");
    }
    for (path, fix) in [
        (&args.weir, "build it with `cargo build --release -p weir`"),
        (
            &args.other_projector,
            "build it with `cargo build --target wasm32-wasip2 -p ui-projector` (scripts/soak does)",
        ),
    ] {
        if !path.exists() {
            bail!("{} is missing; {fix}", path.display());
        }
    }
    for plugin in ["task_validator", "reminder_deriver", "ui_projector"] {
        let path = args.plugins.join(format!("{plugin}.wasm"));
        if !path.exists() {
            bail!(
                "{} is missing; build the plugins with scripts/build-plugins",
                path.display()
            );
        }
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    if unsafe { libc::kill(args.broker_pid, 0) } != 0 {
        bail!("no broker process {} to pause", args.broker_pid);
    }

    let out = &args.out;
    let config_dir = out.join("config");
    let plugins = out.join("plugins");
    let logs = out.join("logs");
    let builds = out.join("builds");
    for dir in [&config_dir, &plugins, &logs, &builds] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // weir runs copies of the plugins, so that replacing one never touches the build
    // output; the binary and both projector builds are copied too, so that a rebuild
    // during the run changes nothing (a restarted instance is the same weir).
    for plugin in ["task_validator", "reminder_deriver", "ui_projector"] {
        let name = format!("{plugin}.wasm");
        std::fs::copy(args.plugins.join(&name), plugins.join(&name))?;
    }
    let plugins = std::fs::canonicalize(&plugins)?;
    let weir = builds.join("weir");
    std::fs::copy(&args.weir, &weir)?;
    let projector_builds = [
        builds.join("ui_projector.release.wasm"),
        builds.join("ui_projector.other.wasm"),
    ];
    std::fs::copy(args.plugins.join("ui_projector.wasm"), &projector_builds[0])?;
    std::fs::copy(&args.other_projector, &projector_builds[1])?;

    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let base = format!("soak-{stamp}");
    let topics = Topics {
        input: format!("{base}-task-events"),
        reminders: format!("{base}-reminders"),
        updates: format!("{base}-task-updates"),
        reminders_dlq: format!("{base}-reminders.dlq"),
        updates_dlq: format!("{base}-ui-sync.dlq"),
        group: format!("{base}-weir-todo"),
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .create()?;
    create_topics(&admin, &topics.all())?;
    let producer = Arc::new(
        input_producer_config(&args.brokers)
            // Never give an input up, whatever the broker does.
            .set("message.timeout.ms", "0")
            .create_with_context::<_, ThreadedProducer<Deliveries>>(Deliveries::default())?,
    );

    let mut soak = Soak {
        args,
        origin: Instant::now(),
        traffic_start: 0.0,
        config: config_dir.join("todo.toml"),
        plugins,
        logs,
        lead_time: 0,
        other_build: false,
        instances: Vec::new(),
        // The broker and this driver are sampled for their CPU: the machine is shared.
        watched: Arc::new(Mutex::new(vec![
            ("broker".into(), args.broker_pid as u32),
            ("driver".into(), std::process::id()),
        ])),
        timeline: Vec::new(),
        disruptions: Vec::new(),
        replacements: 0,
        weir,
        projector_builds,
        logged: Vec::new(),
        topics,
    };
    soak.write_config()?;
    let every = Duration::from_secs(args.sample_every.max(1));
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let process_sampler = {
        let (origin, watched, stop) = (soak.origin, soak.watched.clone(), stop_sampling.clone());
        let csv = out.join("samples.csv");
        std::thread::spawn(move || sample_processes(origin, &watched, every, &csv, &stop))
    };
    let lag_sampler = {
        let (origin, stop) = (soak.origin, stop_sampling.clone());
        let consumer = group_reader(&args.brokers, &soak.topics.group)?;
        let input = soak.topics.input.clone();
        let csv = out.join("lag.csv");
        std::thread::spawn(move || sample_lag(origin, &consumer, &input, every, &csv, &stop))
    };

    soak.start("weir-a")?;
    soak.await_assignment("weir-a");

    // The traffic, and the disturbances on their schedule.
    let stop_traffic = Arc::new(AtomicBool::new(false));
    soak.traffic_start = soak.now();
    soak.note(
        "traffic starts",
        format!(
            "{} events/s for {} min to {}",
            args.rate, args.minutes, soak.topics.input
        ),
        true,
    );
    let sender = {
        let (producer, stop) = (producer.clone(), stop_traffic.clone());
        let (input, rate, users) = (soak.topics.input.clone(), args.rate, args.users);
        let expected = (seconds * rate as f64 * 1.05) as usize;
        std::thread::spawn(move || offer(&producer, &input, rate, users, expected, &stop))
    };
    let plan = schedule(seconds, args.reloads);
    let mut next = 0;
    loop {
        let elapsed = soak.now() - soak.traffic_start;
        if elapsed >= seconds {
            break;
        }
        if next < plan.len() && elapsed >= plan[next].0 {
            soak.perform(plan[next].1)?;
            next += 1;
            continue;
        }
        soak.check_alive()?;
        std::thread::sleep(Duration::from_millis(200));
    }
    for &(_, action) in &plan[next..] {
        soak.note(
            format!("{action:?}"),
            "not done: the run ended first (earlier steps took longer than planned)",
            false,
        );
    }
    stop_traffic.store(true, Ordering::Relaxed);
    let mut ledger = sender
        .join()
        .map_err(|_| anyhow!("the traffic thread panicked"))?;
    producer
        .flush(Duration::from_secs(120))
        .context("flushing the input")?;
    let traffic_end = soak.now();
    let failed = producer.context().failed.lock().unwrap().clone();
    for &index in &failed {
        ledger.kind[index] |= NOT_SENT;
    }
    let sent = ledger.kind.len();
    soak.note(
        "traffic stops",
        format!(
            "{sent} inputs in {:.0} s ({:.0}/s), {} undelivered",
            traffic_end - soak.traffic_start,
            sent as f64 / (traffic_end - soak.traffic_start),
            failed.len()
        ),
        failed.is_empty(),
    );

    // Lag back to 0.
    let reader = group_reader(&args.brokers, &soak.topics.group)?;
    let drain_start = Instant::now();
    let mut drained = None;
    while drain_start.elapsed() < DRAIN_WAIT {
        soak.check_alive()?;
        if group_lag(&reader, &soak.topics.input, Duration::from_secs(5)) == Ok(0) {
            drained = Some(drain_start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    match drained {
        Some(took) => soak.note(
            "consumer lag 0",
            format!("{:.1} s after the traffic stopped", took.as_secs_f64()),
            true,
        ),
        None => soak.note(
            "consumer lag 0",
            format!(
                "still {} after {} s",
                group_lag(&reader, &soak.topics.input, Duration::from_secs(5))
                    .map_or("unknown".into(), |l| l.to_string()),
                DRAIN_WAIT.as_secs()
            ),
            false,
        ),
    }
    // A few more samples of the idle processes.
    std::thread::sleep(every * 3);
    stop_sampling.store(true, Ordering::Relaxed);
    let samples = process_sampler
        .join()
        .map_err(|_| anyhow!("the /proc sampler panicked"))??;
    let lags = lag_sampler
        .join()
        .map_err(|_| anyhow!("the lag sampler panicked"))??;

    for mut instance in std::mem::take(&mut soak.instances) {
        let pid = instance.child.id();
        let started = Instant::now();
        let status = terminate(&mut instance.child)?;
        let ok = status.is_some_and(|s| s.success());
        soak.note(
            format!("SIGTERM {} (pid {pid})", instance.label),
            status.map_or("did not exit within 60 s; killed".into(), |s| {
                format!("{s} after {:.1} s", started.elapsed().as_secs_f64())
            }),
            ok,
        );
    }

    eprintln!("soak: reading the outputs back...");
    let accounting = account(args, &soak.topics, &ledger)?;
    let stats = process_stats(
        &samples,
        soak.traffic_start,
        traffic_end,
        every.as_secs_f64(),
    );
    let markers: Vec<(f64, String)> = soak
        .timeline
        .iter()
        .filter_map(|e| marker(&e.what).map(|m| (e.at, m.to_owned())))
        .collect();
    std::fs::write(
        out.join("rss-fds.svg"),
        plot(&samples, &lags, &markers, traffic_end),
    )?;
    let report = Report {
        args,
        soak: &soak,
        accounting: &accounting,
        stats: &stats,
        lags: &lags,
        traffic_end,
        sent,
        undelivered: failed.len(),
    };
    let (text, ok) = report.markdown();
    let path = out.join("report.md");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    println!("{text}");
    eprintln!("report written to {}", path.display());
    if !ok {
        bail!("the soak run failed; see {}", path.display());
    }
    Ok(())
}

/// The short label of a timeline event on the plot, for the events worth marking.
fn marker(what: &str) -> Option<&'static str> {
    if what.starts_with("reload") {
        Some("r")
    } else if what.starts_with("SIGKILL") {
        Some("kill")
    } else if what == "weir-b started" {
        Some("join")
    } else if what.starts_with("SIGSTOP") {
        Some("pause")
    } else if what == "SIGCONT broker" {
        Some("cont")
    } else if what.starts_with("SIGTERM weir-b") {
        Some("leave")
    } else if what == "traffic stops" {
        Some("stop")
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------
// Accounting.

/// What one output topic holds, against what the inputs call for.
#[derive(Default)]
struct Tally {
    records: u64,
    /// Inputs that should have an output here.
    expected: u64,
    /// Of those, the ones found at least once.
    found: u64,
    /// Records beyond the first for an input.
    duplicates: u64,
    /// Duplicates whose bytes differ from the first (for a DLQ: records whose key or
    /// value differ from the input's).
    differing: u64,
    /// Records that no input calls for here.
    unexpected: u64,
    /// DLQ records by `weir.error.reason`.
    reasons: BTreeMap<String, u64>,
}

impl Tally {
    fn missing(&self) -> u64 {
        self.expected - self.found
    }
}

struct Accounting {
    updates: Tally,
    reminders: Tally,
    reminders_dlq: Tally,
    updates_dlq: Tally,
}

fn header<'a>(message: &'a BorrowedMessage<'_>, key: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Reads `topic` from the beginning to its high watermarks.
fn read_all(
    brokers: &str,
    topic: &str,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("soak-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for partition in 0..partitions_of(topic) {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        if high > low {
            ends.insert(partition, high);
        }
        tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut count = 0;
    let mut last = Instant::now();
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                count += 1;
                last = Instant::now();
                each(&message);
                if ends
                    .get(&message.partition())
                    .is_some_and(|&high| message.offset() + 1 >= high)
                {
                    ends.remove(&message.partition());
                }
            }
            Some(Err(error)) => bail!("reading {topic}: {error}"),
            None if last.elapsed() > Duration::from_secs(60) => {
                bail!("reading {topic}: nothing for 60 s after {count} records")
            }
            None => {}
        }
    }
    Ok(count)
}

fn account(args: &SoakArgs, topics: &Topics, ledger: &Ledger) -> anyhow::Result<Accounting> {
    let sent = ledger.kind.len();
    let is = |index: usize, flag: u8| ledger.kind[index] & (flag | NOT_SENT) == flag;
    let count_expected =
        |pred: &dyn Fn(usize) -> bool| (0..sent).filter(|&i| pred(i)).count() as u64;

    // Outputs found by an id: the task updates (header `event_id`, the input's) and the
    // reminders (value `event_id`, derived from the input's).
    let by_id = |topic: &str, flag: u8, id_of: &dyn Fn(&BorrowedMessage<'_>) -> Option<u128>| {
        let mut tally = Tally {
            expected: count_expected(&|i| is(i, flag)),
            ..Tally::default()
        };
        let mut first: Vec<u64> = vec![0; sent];
        let mut seen: Vec<bool> = vec![false; sent];
        tally.records = read_all(&args.brokers, topic, |m| {
            let index = id_of(m)
                .and_then(|id| ledger.ids.get(&id))
                .map(|&i| i as usize);
            match index {
                Some(i) if is(i, flag) => {
                    let hash = hash_of(m.key(), m.payload());
                    if seen[i] {
                        tally.duplicates += 1;
                        if first[i] != hash {
                            tally.differing += 1;
                        }
                    } else {
                        seen[i] = true;
                        first[i] = hash;
                        tally.found += 1;
                    }
                }
                _ => tally.unexpected += 1,
            }
        })?;
        anyhow::Ok(tally)
    };
    let updates = by_id(&topics.updates, VALID, &|m| {
        header(m, "event_id").and_then(uuid_bits)
    })?;
    let reminders = by_id(&topics.reminders, VALID | REMINDER, &|m| {
        m.payload().and_then(event_id).and_then(uuid_bits)
    })?;

    // Dead letters, found by the input's own `trace` header: every input the
    // validator rejects, in both branches' DLQs, with its key and value.
    let dead = |topic: &str| {
        let invalid = |i: usize| ledger.kind[i] & (VALID | NOT_SENT) == 0;
        let mut tally = Tally {
            expected: count_expected(&invalid),
            ..Tally::default()
        };
        let mut seen: Vec<bool> = vec![false; sent];
        tally.records = read_all(&args.brokers, topic, |m| {
            *tally
                .reasons
                .entry(header(m, "weir.error.reason").unwrap_or("none").to_owned())
                .or_default() += 1;
            let index = header(m, TRACE)
                .and_then(|t| t.parse::<usize>().ok())
                .filter(|&i| i < sent);
            match index {
                Some(i) if invalid(i) => {
                    if hash_of(m.key(), m.payload()) != ledger.hash[i] {
                        tally.differing += 1;
                    }
                    if seen[i] {
                        tally.duplicates += 1;
                    } else {
                        seen[i] = true;
                        tally.found += 1;
                    }
                }
                _ => tally.unexpected += 1,
            }
        })?;
        anyhow::Ok(tally)
    };
    Ok(Accounting {
        updates,
        reminders,
        reminders_dlq: dead(&topics.reminders_dlq)?,
        updates_dlq: dead(&topics.updates_dlq)?,
    })
}

// ---------------------------------------------------------------------------------
// Flatness.

struct ProcessStats {
    label: String,
    pid: u32,
    from: f64,
    to: f64,
    samples: usize,
    rss_first: f64,
    rss_peak: f64,
    rss_last: f64,
    /// The second half of the process's life under traffic.
    window: (f64, f64),
    slope_mib_h: f64,
    spread_mib: f64,
    mean_mib: f64,
    fds_window: (usize, usize),
    fds_growth: i64,
    threads: (u64, u64),
    cores: f64,
    /// Whether it lived through the second half of the run, and is judged.
    judged: bool,
    /// RSS change the trend makes over the window, MiB.
    trend_mib: f64,
    flat: bool,
}

const MIB: f64 = 1024.0 * 1024.0;

/// Least-squares slope of `points`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in points {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// Per process (only weir processes are judged): its samples while
/// the traffic ran, and the slope and spread over the second half of that life.
fn process_stats(
    samples: &[Sample],
    traffic_start: f64,
    traffic_end: f64,
    every: f64,
) -> Vec<ProcessStats> {
    let run_middle = (traffic_start + traffic_end) / 2.0;
    let mut labels: Vec<(&str, u32)> = Vec::new();
    for s in samples {
        if !labels.contains(&(s.label.as_str(), s.pid)) {
            labels.push((&s.label, s.pid));
        }
    }
    labels
        .into_iter()
        .filter_map(|(label, pid)| {
            let all: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.pid == pid && s.label == label)
                .collect();
            let life: Vec<&Sample> = all
                .iter()
                .copied()
                .filter(|s| s.at >= traffic_start && s.at <= traffic_end)
                .collect();
            let (first, last) = (life.first()?, life.last()?);
            // The processes that lived through the second half of the run are judged
            // on it; the others are described on the second half of their life.
            let judged = label.starts_with("weir")
                && first.at <= run_middle + every
                && last.at >= traffic_end - 2.0 * every;
            let middle = if judged {
                run_middle
            } else {
                (first.at + last.at) / 2.0
            };
            let window: Vec<&Sample> = life.iter().copied().filter(|s| s.at >= middle).collect();
            let points: Vec<(f64, f64)> = window
                .iter()
                .map(|s| (s.at / 3600.0, s.rss as f64 / MIB))
                .collect();
            let rss: Vec<f64> = window.iter().map(|s| s.rss as f64 / MIB).collect();
            let max = rss.iter().copied().fold(f64::MIN, f64::max);
            let min = rss.iter().copied().fold(f64::MAX, f64::min);
            let mean = rss.iter().sum::<f64>() / rss.len().max(1) as f64;
            let fds: Vec<usize> = window.iter().map(|s| s.fds).collect();
            let fds_window = (
                fds.iter().copied().min().unwrap_or(0),
                fds.iter().copied().max().unwrap_or(0),
            );
            // Growth of fds: the mean of the window's last quarter minus its first's.
            let quarter = (fds.len() / 4).max(1);
            let head = fds[..quarter].iter().sum::<usize>() as f64 / quarter as f64;
            let tail = fds[fds.len() - quarter..].iter().sum::<usize>() as f64 / quarter as f64;
            let fds_growth = (tail - head).round() as i64;
            let slope_mib_h = slope(&points);
            let window_hours = points.last()?.0 - points.first()?.0;
            let spread_mib = max - min;
            let all_first = all.first()?;
            let all_last = all.last()?;
            Some(ProcessStats {
                label: label.to_owned(),
                pid,
                from: all_first.at,
                to: all_last.at,
                samples: all.len(),
                rss_first: all_first.rss as f64 / MIB,
                rss_peak: all.iter().map(|s| s.rss).max().unwrap_or(0) as f64 / MIB,
                rss_last: all_last.rss as f64 / MIB,
                window: (window.first()?.at, window.last()?.at),
                slope_mib_h,
                spread_mib,
                mean_mib: mean,
                fds_window,
                fds_growth,
                threads: (
                    life.iter().map(|s| s.threads).min().unwrap_or(0),
                    life.iter().map(|s| s.threads).max().unwrap_or(0),
                ),
                cores: (last.cpu - first.cpu) / (last.at - first.at).max(1.0),
                judged,
                trend_mib: slope_mib_h * (window_hours),
                flat: slope_mib_h * window_hours <= FLAT_TREND * mean
                    && spread_mib <= FLAT_SPREAD * mean
                    && fds_growth <= FLAT_FDS,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// The plot: RSS, open fds and consumer lag over time, one line per process.

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// Ticks at a round step (1, 2 or 5 times a power of ten) from 0 to the first at or
/// above `max`.
fn ticks(max: f64) -> Vec<f64> {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power);
    let count = (max / step - 1e-9).ceil().max(1.0) as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

fn number(value: f64) -> String {
    if value >= 1000.0 && value.fract() == 0.0 {
        let text = format!("{value:.0}");
        let mut out = String::new();
        for (i, c) in text.chars().enumerate() {
            if i > 0 && (text.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

struct Panel<'a> {
    title: &'a str,
    /// (colour, points) of each line.
    lines: Vec<(&'a str, Vec<(f64, f64)>)>,
}

fn plot(samples: &[Sample], lags: &[(f64, i64)], markers: &[(f64, String)], end: f64) -> String {
    let mut weirs: Vec<(String, u32)> = Vec::new();
    for s in samples.iter().filter(|s| s.label.starts_with("weir")) {
        if !weirs.contains(&(s.label.clone(), s.pid)) {
            weirs.push((s.label.clone(), s.pid));
        }
    }
    let line = |pick: &dyn Fn(&Sample) -> f64| -> Vec<(&str, Vec<(f64, f64)>)> {
        weirs
            .iter()
            .enumerate()
            .map(|(i, (label, pid))| {
                let points = samples
                    .iter()
                    .filter(|s| s.pid == *pid && &s.label == label)
                    .map(|s| (s.at / 60.0, pick(s)))
                    .collect();
                (COLORS[i % COLORS.len()], points)
            })
            .collect()
    };
    let panels = [
        Panel {
            title: "RSS (MiB)",
            lines: line(&|s| s.rss as f64 / MIB),
        },
        Panel {
            title: "open file descriptors",
            lines: line(&|s| s.fds as f64),
        },
        Panel {
            title: "consumer lag (records)",
            lines: vec![(
                "#555555",
                lags.iter().map(|&(t, l)| (t / 60.0, l as f64)).collect(),
            )],
        },
    ];
    let x_max = samples
        .iter()
        .map(|s| s.at)
        .chain(lags.iter().map(|l| l.0))
        .fold(end, f64::max)
        / 60.0;
    // The time axis ends with the samples.
    let x_end = x_max.max(1.0 / 60.0);
    let x_ticks: Vec<f64> = ticks(x_end).into_iter().filter(|t| *t <= x_end).collect();
    let (width, left, right) = (960.0, 80.0, 20.0);
    let (top, height, gap) = (60.0, 190.0, 70.0);
    let total = top + panels.len() as f64 * (height + gap);
    let plot_width = width - left - right;
    let x = |minutes: f64| left + minutes / x_end * plot_width;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total}" viewBox="0 0 {width} {total}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{left}" y="22" font-size="15" font-weight="bold">weir soak: RSS, open fds and consumer lag over time (minutes)</text>"#
    );
    // The legend: one colour per process.
    let mut legend_x = left;
    for (i, (label, pid)) in weirs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let text = format!("{label} (pid {pid})");
        let _ = writeln!(
            svg,
            r#"<rect x="{legend_x}" y="34" width="14" height="4" fill="{color}"/><text x="{}" y="40">{text}</text>"#,
            legend_x + 18.0
        );
        legend_x += 40.0 + 7.0 * text.len() as f64;
    }
    for (p, panel) in panels.iter().enumerate() {
        let y0 = top + p as f64 * (height + gap) + 20.0;
        let y_max = panel
            .lines
            .iter()
            .flat_map(|l| l.1.iter().map(|p| p.1))
            .fold(0.0, f64::max);
        let y_ticks = ticks(y_max);
        let y_end = *y_ticks.last().unwrap_or(&1.0);
        let y = |v: f64| y0 + height - v / y_end * height;
        let _ = writeln!(
            svg,
            r#"<text x="{left}" y="{}" font-weight="bold">{}</text>"#,
            y0 - 8.0,
            panel.title
        );
        for &t in &y_ticks {
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                left + plot_width,
                left - 6.0,
                y(t) + 4.0,
                number(t),
                yy = y(t)
            );
        }
        for &t in &x_ticks {
            let _ = writeln!(
                svg,
                r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{}" y2="{}" stroke="#444"/><text x="{xx:.1}" y="{}" text-anchor="middle">{}</text>"##,
                y0 + height,
                y0 + height + 5.0,
                y0 + height + 18.0,
                number(t),
                xx = x(t)
            );
        }
        // Labels of markers close together go on lower rows.
        let mut row_ends: Vec<f64> = Vec::new();
        for (at, label) in markers {
            let xx = x(at / 60.0);
            let _ = writeln!(
                svg,
                r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{y0}" y2="{}" stroke="#999" stroke-dasharray="3,3"/>"##,
                y0 + height
            );
            if p == 0 {
                let half = 3.5 * label.len() as f64 + 3.0;
                let row = row_ends
                    .iter()
                    .position(|end| *end < xx - half)
                    .unwrap_or(row_ends.len());
                if row == row_ends.len() {
                    row_ends.push(0.0);
                }
                row_ends[row] = xx + half;
                let _ = writeln!(
                    svg,
                    r##"<text x="{:.1}" y="{}" font-size="10" fill="#666" text-anchor="middle">{label}</text>"##,
                    xx,
                    y0 + 10.0 + 11.0 * row as f64
                );
            }
        }
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{left}" y1="{y0}" y2="{}" stroke="#444"/><line x1="{left}" x2="{}" y1="{}" y2="{}" stroke="#444"/>"##,
            y0 + height,
            left + plot_width,
            y0 + height,
            y0 + height
        );
        for (color, points) in &panel.lines {
            let path: Vec<String> = points
                .iter()
                .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
                path.join(" ")
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

// ---------------------------------------------------------------------------------
// The report.

struct Report<'a> {
    args: &'a SoakArgs,
    soak: &'a Soak<'a>,
    accounting: &'a Accounting,
    stats: &'a [ProcessStats],
    lags: &'a [(f64, i64)],
    traffic_end: f64,
    sent: usize,
    undelivered: usize,
}

impl Report<'_> {
    /// The Markdown, and whether every check passed.
    fn markdown(&self) -> (String, bool) {
        let (args, soak, a) = (self.args, self.soak, self.accounting);
        let mut out = String::new();
        let mut failures: Vec<String> = Vec::new();
        let version = Command::new(&soak.weir)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "# Soak: the Todo deployment for {} minutes at {} events/s\n",
            args.minutes, args.rate
        );
        let _ = writeln!(
            out,
            "Date: {}. Machine: {}. Broker: {}. weir: `{version}`. Command: `scripts/soak --minutes {} --rate {}`.\n",
            chrono::DateTime::<chrono::Utc>::from(SystemTime::now()).format("%Y-%m-%d %H:%M UTC"),
            machine(),
            args.broker_name.as_deref().unwrap_or(&args.brokers),
            args.minutes,
            args.rate
        );

        // Checks first.
        let mut verdict = Vec::new();
        let tally_ok = |t: &Tally| t.missing() == 0 && t.unexpected == 0 && t.differing == 0;
        let every = tally_ok(&a.updates)
            && tally_ok(&a.reminders_dlq)
            && tally_ok(&a.updates_dlq)
            && a.reminders.missing() == 0
            && a.reminders.unexpected == 0
            && self.undelivered == 0;
        verdict.push(format!(
            "- Every input accounted for: **{}** ({} inputs: {} task updates expected, {} missing, {} duplicates of which {} differ; {} invalid inputs, missing from the reminders DLQ {} and from the ui-sync DLQ {}; {} reminders expected, {} missing).",
            yes(every),
            self.sent,
            a.updates.expected,
            a.updates.missing(),
            a.updates.duplicates,
            a.updates.differing,
            a.updates_dlq.expected,
            a.reminders_dlq.missing(),
            a.updates_dlq.missing(),
            a.reminders.expected,
            a.reminders.missing(),
        ));
        if !every {
            failures.push("accounting".into());
        }
        let drained = soak.timeline.iter().find(|e| e.what == "consumer lag 0");
        let drained_ok = drained.is_some_and(|e| e.ok);
        verdict.push(format!(
            "- Consumer lag back to 0: **{}** ({}).",
            yes(drained_ok),
            drained.map_or("not measured", |e| e.outcome.as_str())
        ));
        if !drained_ok {
            failures.push("lag".into());
        }
        let judged: Vec<&ProcessStats> = self.stats.iter().filter(|s| s.judged).collect();
        if judged.is_empty() {
            verdict.push("- RSS and open fds flat after warm-up: **not judged**: no weir process lived through the second half of the run.".into());
            failures.push("no process to judge flatness on".into());
        }
        for s in judged {
            verdict.push(format!(
                "- RSS and open fds flat after warm-up, {} (pid {}): **{}**: RSS slope {:+.1} MiB/h (a trend of {:+.1} MiB over the window), max-min {:.1} MiB (mean {:.1} MiB) over minutes {:.1}-{:.1}; open fds {}-{} (growth {:+}).",
                s.label,
                s.pid,
                yes(s.flat),
                s.slope_mib_h,
                s.trend_mib,
                s.spread_mib,
                s.mean_mib,
                s.window.0 / 60.0,
                s.window.1 / 60.0,
                s.fds_window.0,
                s.fds_window.1,
                s.fds_growth
            ));
            if !s.flat {
                failures.push(format!("{} not flat", s.label));
            }
        }
        let reloads: Vec<&Event> = soak
            .timeline
            .iter()
            .filter(|e| e.what.starts_with("reload"))
            .collect();
        let applied = reloads.iter().filter(|e| e.ok).count();
        verdict.push(format!(
            "- Hot reloads applied by every running instance: **{applied} of {}**.",
            reloads.len()
        ));
        let failed_events: Vec<String> = soak
            .timeline
            .iter()
            .filter(|e| !e.ok)
            .map(|e| format!("{} at {}", e.what, clock(e.at)))
            .collect();
        if !failed_events.is_empty() {
            failures.push(format!("events: {}", failed_events.join("; ")));
        }
        let ok = failures.is_empty();
        let _ = writeln!(out, "## Verdict\n");
        let _ = writeln!(
            out,
            "**{}**{}\n",
            if ok { "PASS" } else { "FAIL" },
            if ok {
                String::new()
            } else {
                format!(": {}", failures.join(", "))
            }
        );
        for line in verdict {
            let _ = writeln!(out, "{line}");
        }

        let _ = writeln!(out, "\n## Set-up\n");
        let _ = writeln!(
            out,
            "- The Todo deployment of `pipelines.toml` (pipeline `todo`: task-validator, then the `reminders` branch with reminder-deriver and the `ui-sync` branch with ui-projector, its retry, limits and circuit), at-least-once, on fresh topics `{}` (6 partitions; `-reminders` and `-task-updates` 6, both DLQs 1). The task-updates topic has `cleanup = delete` here, not `compact`, so that no update is compacted away before it is counted. No `[kafka.properties]`: librdkafka's defaults, so a killed member holds its partitions for the 45 s session timeout.",
            soak.topics.input
        );
        let _ = writeln!(
            out,
            "- `weir run --watch` (a copy of the binary in `{}`), config `{}`, plugin copies in `{}`.",
            args.out.join("builds").display(),
            soak.config.display(),
            args.out.join("plugins").display()
        );
        let _ = writeln!(
            out,
            "- Input: `todo_events::sample` task events, {} users per batch of {BATCH}, about 5% invalid, offered at {} events/s by an idempotent producer; each input carries a unique `{TRACE}` header (its sequence number).",
            args.users, args.rate
        );
        let _ = writeln!(
            out,
            "- Disturbances: {} hot reloads evenly spread, alternately a live config change (reminder-deriver `lead-time` 15m <-> 16m) and the ui-projector file overwritten in place (`cp`) by the other build (dev profile, opt-level 3: debug assertions and overflow checks) and back; at 10% of the run a SIGKILL of weir and a restart; at 20% a second instance joins; at 30% the broker's JVM is stopped (SIGSTOP) for {} s; at 40% the second instance leaves (SIGTERM). The second half runs with reloads only.",
            args.reloads, args.pause
        );
        let _ = writeln!(
            out,
            "- Sampled every {} s: VmRSS, open fds (`/proc/PID/fd`), threads and CPU time of each process (`samples.csv`), and the group's lag (`lag.csv`).",
            args.sample_every
        );

        let _ = writeln!(out, "\n## Timeline\n");
        let _ = writeln!(out, "| at (mm:ss) | event | outcome |\n|---:|---|---|");
        for e in &soak.timeline {
            let _ = writeln!(
                out,
                "| {} | {}{} | {} |",
                clock(e.at),
                if e.ok { "" } else { "**FAILED** " },
                e.what,
                e.outcome
            );
        }

        let _ = writeln!(out, "\n## Accounting\n");
        let _ = writeln!(
            out,
            "{} inputs sent ({} undelivered by the driver's producer). The outputs were read back from the beginning to the high watermark of every partition.\n",
            self.sent, self.undelivered
        );
        let _ = writeln!(
            out,
            "| topic | records | inputs that call for one | found | missing | duplicates | of which differ | unexpected records |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (name, t) in [
            (
                "task-updates (valid inputs, by `event_id` header)",
                &a.updates,
            ),
            ("reminders (by the derived `event_id`)", &a.reminders),
            (
                "reminders.dlq (invalid inputs, by `trace`)",
                &a.reminders_dlq,
            ),
            ("ui-sync.dlq (invalid inputs, by `trace`)", &a.updates_dlq),
        ] {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                t.records,
                t.expected,
                t.found,
                t.missing(),
                t.duplicates,
                t.differing,
                t.unexpected
            );
        }
        let _ = writeln!(
            out,
            "\nA task-update duplicate must be byte-identical (key and value) to the first. A dead letter must carry its input's key and value (\"differ\" counts those that do not). A reminder may legitimately differ when the input was processed again after a lead-time change, so its differing duplicates are not a failure."
        );
        for (name, t) in [
            ("reminders.dlq", &a.reminders_dlq),
            ("ui-sync.dlq", &a.updates_dlq),
        ] {
            let reasons: Vec<String> = t.reasons.iter().map(|(r, n)| format!("{r}: {n}")).collect();
            let _ = writeln!(out, "{name} by reason: {}.", reasons.join(", "));
        }

        let _ = writeln!(out, "\n## Consumer lag\n");
        let steady: Vec<i64> = {
            let mut v: Vec<i64> = self
                .lags
                .iter()
                .filter(|(t, _)| *t >= soak.traffic_start && *t <= self.traffic_end)
                .map(|l| l.1)
                .collect();
            v.sort_unstable();
            v
        };
        let median = steady.get(steady.len() / 2).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "Median lag while the traffic ran: {median} records ({:.1} s of input; weir commits every second). Around each disruption (the peak up to the next disruption or 3 minutes, and when it next came back under 2 s of input; a frozen broker or a group in a rebalance may leave gaps in the samples):\n",
            median as f64 / args.rate as f64
        );
        let _ = writeln!(
            out,
            "| at | disruption | peak lag | back under {} after |\n|---:|---|---:|---:|",
            2 * args.rate
        );
        let threshold = 2 * args.rate as i64;
        for (n, &(at, action)) in soak.disruptions.iter().enumerate() {
            let until = soak
                .disruptions
                .get(n + 1)
                .map_or(at + 180.0, |next| next.0.min(at + 180.0));
            let peak = self
                .lags
                .iter()
                .filter(|(t, _)| *t >= at && *t < until)
                .max_by_key(|l| l.1)
                .copied();
            let back = match peak {
                None => "no sample".to_owned(),
                Some((_, lag)) if lag <= threshold => "stayed under".to_owned(),
                Some((peak_at, _)) => self
                    .lags
                    .iter()
                    .find(|(t, l)| *t >= peak_at && *l <= threshold)
                    .map_or("never".into(), |(t, _)| format!("{:.0} s", t - at)),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {back} |",
                clock(at),
                action.short(),
                peak.map_or("-".into(), |p| p.1.to_string()),
            );
        }

        let _ = writeln!(out, "\n## Memory and file descriptors\n");
        let _ = writeln!(out, "![RSS, open fds and consumer lag](rss-fds.svg)\n");
        let _ = writeln!(
            out,
            "Flat means, for the process that lived through the second half of the run and over that half: the least-squares trend of RSS grows it by at most {:.0}% of its mean over the window, RSS max-min is at most {:.0}% of its mean, and open fds grew by at most {FLAT_FDS} (mean of the window's last quarter minus its first). Processes that did not live through it are described over the second half of their own life, not judged.\n",
            FLAT_TREND * 100.0,
            FLAT_SPREAD * 100.0
        );
        let _ = writeln!(
            out,
            "| process | pid | sampled (min) | samples | RSS first / peak / last MiB | window (min) | RSS slope MiB/h | RSS max-min MiB | fds in window | threads | mean CPU (cores) | flat |\n|---|---:|---|---:|---|---|---:|---:|---|---|---:|---|"
        );
        for s in self.stats {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1}-{:.1} | {} | {:.1} / {:.1} / {:.1} | {:.1}-{:.1} | {:+.1} | {:.1} | {}-{} | {}-{} | {:.2} | {} |",
                s.label,
                s.pid,
                s.from / 60.0,
                s.to / 60.0,
                s.samples,
                s.rss_first,
                s.rss_peak,
                s.rss_last,
                s.window.0 / 60.0,
                s.window.1 / 60.0,
                s.slope_mib_h,
                s.spread_mib,
                s.fds_window.0,
                s.fds_window.1,
                s.threads.0,
                s.threads.1,
                s.cores,
                if !s.label.starts_with("weir") {
                    "-"
                } else if s.judged {
                    yes(s.flat)
                } else {
                    "(not judged)"
                }
            );
        }
        let _ = writeln!(out, "\n## Warnings and errors in weir's logs\n");
        let _ = writeln!(
            out,
            "Lines at WARN and ERROR per process, grouped by their text with digits masked, most frequent first.\n"
        );
        for label in soak.logged.iter() {
            let path = soak.logs.join(format!("{label}.log"));
            let summary = log_summary(&path);
            let total: usize = summary.iter().map(|k| k.1).sum();
            let _ = writeln!(out, "- {label}: {total} line(s)");
            for (kind, count) in summary.iter().take(8) {
                let _ = writeln!(out, "  - {count} × `{kind}`");
            }
            if summary.len() > 8 {
                let _ = writeln!(out, "  - and {} more kind(s)", summary.len() - 8);
            }
        }
        let _ = writeln!(
            out,
            "\nFiles: `samples.csv` (per sample and process: elapsed s, RSS KiB, fds, threads, CPU s), `lag.csv`, `rss-fds.svg`, `config/todo.toml`, `logs/*.log` (one per weir process)."
        );
        (out, ok)
    }
}

fn yes(ok: bool) -> &'static str {
    if ok { "yes" } else { "no" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_end_at_the_first_round_value_at_or_above_the_maximum() {
        assert_eq!(ticks(110.0), [0.0, 50.0, 100.0, 150.0]);
        assert_eq!(ticks(100.0), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(ticks(30.3), [0.0, 10.0, 20.0, 30.0, 40.0]);
        assert_eq!(ticks(0.0).last(), Some(&1.0));
        assert_eq!(number(0.6000000000000001), "0.6");
        assert_eq!(number(100000.0), "100,000");
    }

    #[test]
    fn slope_is_the_least_squares_fit() {
        assert!((slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) - 2.0).abs() < 1e-12);
        assert_eq!(slope(&[(1.0, 7.0)]), 0.0);
        assert_eq!(slope(&[(1.0, 7.0), (1.0, 9.0)]), 0.0);
    }

    #[test]
    fn uuids_parse_as_numbers() {
        let id = todo_events::derive_id(&["x"]);
        assert_eq!(uuid_bits(&id.to_string()), Some(id.as_u128()));
        assert_eq!(uuid_bits("not-a-uuid"), None);
    }

    #[test]
    fn log_kinds_mask_topic_ids_but_keep_messages() {
        assert_eq!(
            mask_ids("Partition t(oZwoG8iLQ/asQ)[3]: down (Local: Timed out)"),
            "Partition t(…)[3]: down (Local: Timed out)"
        );
    }

    #[test]
    fn disruptions_fall_in_the_first_half_between_reloads() {
        let plan = schedule(1800.0, 10);
        assert_eq!(plan.len(), 14);
        assert!(plan.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            plan.iter()
                .filter(|(_, a)| !matches!(a, Action::Reload(_)))
                .all(|(at, _)| *at < 900.0)
        );
    }
}
