//! What the fuzz targets check, as plain functions of the input bytes: each panics
//! when an invariant breaks. The targets in `fuzz_targets/` call them under
//! libFuzzer; `tests/fuzz_regressions.rs` includes this file and replays the seed
//! corpus and every saved crash through them, so a fixed bug stays fixed.
//!
//! Only `weir`, `serde_json` and std are used, so that the host's test build can
//! include the file as it is.

#[path = "../../plugins/testing/recipe/src/recipe.rs"]
pub mod recipe;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use weir::config::{WeirConfig, changes, expand_env};
use weir::events::{self, Line};
use weir::pipeline::keyed::PartitionState;
use weir::pipeline::process::{Disposition, Instances, Verdict, Work, process};
use weir::pipeline::snapshot::Snapshot;
use weir::plugin::{CallSite, Event, FailureKind, Header, Output, PluginEngine, start_deadline};
use weir::policy::circuit::{CircuitBreaker, CircuitWindow, Outcome, Permit};
use weir::policy::dlq::{self, DeadLetter};
use weir::policy::{Decision, decide};
use weir::shutdown::Shutdown;
use weir::telemetry::Metrics;

use self::recipe::{Out, Reply};

/// The fuzz targets, as named in `fuzz/fuzz_targets/` and `fuzz/corpus/`.
pub const TARGETS: [&str; 4] = ["config", "jsonl", "dlq_headers", "plugin_outputs"];

// ---------------------------------------------------------------------------
// config: pipelines.toml and `${VAR}` expansion

/// The file name config errors must start with.
const CONFIG_FILE: &str = "fuzz.toml";

/// Parses the input as pipelines.toml and expands it as a config string.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    expand(&text);
    match WeirConfig::parse(&text, CONFIG_FILE) {
        Ok(config) => derived(&config),
        Err(error) => located(&text, &error.to_string()),
    }
}

/// A deterministic environment: `SET`, `EMPTY` (set but empty), `NESTED` (whose
/// value looks like a reference, which must not be expanded again) and anything
/// starting with `X` (its own name, lower-cased).
fn lookup(name: &str) -> Option<String> {
    match name {
        "SET" => Some("value".into()),
        "EMPTY" => Some(String::new()),
        "NESTED" => Some("${SET}".into()),
        _ if name.starts_with('X') => Some(name.to_lowercase()),
        _ => None,
    }
}

fn expand(text: &str) {
    match expand_env(text, &lookup) {
        Ok(out) if !text.contains('$') => assert_eq!(out, text, "no `$`, nothing to expand"),
        Ok(_) => {}
        Err(message) => assert!(!message.is_empty()),
    }
    // Escaping every `$` makes any text literal.
    assert_eq!(
        expand_env(&text.replace('$', "$$"), &lookup).as_deref(),
        Ok(text),
        "`$$` is a literal `$`"
    );
}

/// A config error starts with `fuzz.toml:LINE:` and LINE is a line of the text.
fn located(text: &str, message: &str) {
    let rest = message
        .strip_prefix(CONFIG_FILE)
        .and_then(|r| r.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no file prefix: {message:?}"));
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let line: usize = rest[..digits]
        .parse()
        .unwrap_or_else(|_| panic!("no line number: {message:?}"));
    assert!(
        rest[digits..].starts_with(':'),
        "no `:` after the line: {message:?}"
    );
    let lines = text.matches('\n').count() + 1;
    assert!(
        (1..=lines).contains(&line),
        "line {line} of a {lines}-line text: {message:?}"
    );
}

/// What the runtime derives from a loaded config must not panic either.
fn derived(config: &WeirConfig) {
    let legal_topic = |t: &str| {
        (1..=249).contains(&t.len())
            && t != "."
            && t != ".."
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    for p in &config.pipelines {
        let _ = (p.name(), p.group(), p.workers(), p.prefix());
        assert!(legal_topic(p.input()), "input {:?}", p.input());
        for branch in p.branches() {
            let dlq = branch.dlq();
            assert!(legal_topic(&dlq), "dead-letter topic {dlq:?}");
            assert_ne!(dlq, p.input());
            for topic in branch.outputs.values() {
                assert!(config.topics.contains_key(topic.get_ref()));
            }
        }
        for plugin in p.all_plugins() {
            let _ = (plugin.init_config(), config.plugin_path(plugin));
        }
        let limits = p.limits.limits(&config.kafka);
        let _ = start_deadline(limits.timeout);
        // Every retry decision the pipeline can take, and the runner's sleep
        // through its delay (cut short: the signal is raised).
        let stopped = Shutdown::new();
        stopped.trigger();
        for attempt in 1..=p.retry.max_attempts.min(70) {
            for kind in [FailureKind::Transient, FailureKind::Trap] {
                for jitter in [0.0, 0.5, 0.999_999] {
                    if let Decision::Retry(delay) = decide(kind, attempt, &p.retry, jitter) {
                        assert!(delay <= p.retry.max_backoff.0);
                        assert!(!stopped.sleep(delay));
                    }
                }
            }
        }
        // The circuit opening for `cooldown` (for windows that fit in memory).
        if p.circuit.window <= 10_000 {
            let window = CircuitWindow::new(p.circuit);
            let breaker = CircuitBreaker::default();
            let now = Instant::now();
            for _ in 0..p.circuit.window {
                breaker.record(Outcome::DeadLettered, Permit::Go, now, &window);
            }
            // It opens when more than `failure-ratio` failed: never at 1.
            assert_eq!(
                breaker.is_open(),
                p.circuit.failure_ratio < 1.0,
                "{:?}",
                p.circuit
            );
            let _ = breaker.try_acquire(now);
        }
    }
    let change = changes::diff(config, config);
    assert!(
        change.restart.is_empty() && change.pipelines.is_empty(),
        "a config differs from itself: {change:?}"
    );
}

// ---------------------------------------------------------------------------
// jsonl: `weir test`'s input lines

/// Reads the input as a JSON-lines events file, and as one line.
pub fn jsonl(data: &[u8]) {
    for line in events::read(data) {
        match line {
            // Not UTF-8: `weir test` stops with the reader's error.
            Err(_) => {}
            Ok(Line::Malformed(number, message)) => assert!(number >= 1 && !message.is_empty()),
            Ok(Line::Event(number, event)) => rendered(number, &event),
            // A clock line moves `weir test`'s virtual clock forward (or to an instant).
            Ok(Line::Clock(number, advance)) => {
                assert!(number >= 1);
                let _ = advance.from(0);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(event) = events::parse_line(text, 7)
    {
        assert_eq!(event.offset, 7);
        rendered(1, &event);
    }
}

/// An event rendered as a `weir test` output line serializes, parses back as
/// JSON, and keeps its key and headers.
fn rendered(number: usize, event: &Event) {
    let output = Output {
        to: "out".into(),
        key: event.key.clone(),
        value: event.value.clone(),
        headers: event.headers.clone(),
    };
    let line = events::output_line(number, &output);
    let text = serde_json::to_string(&line).expect("an output line serializes");
    let back: serde_json::Value = serde_json::from_str(&text).expect("and parses back");
    assert_eq!(back["input"], number);
    let key = event
        .key
        .as_deref()
        .map(|k| String::from_utf8_lossy(k).into_owned());
    assert_eq!(line.key, key, "a key read from JSON is text");
    let headers: BTreeMap<String, String> = event
        .headers
        .iter()
        .map(|h| {
            (
                h.key.clone(),
                String::from_utf8_lossy(&h.value).into_owned(),
            )
        })
        .collect();
    assert_eq!(line.headers, headers);
    // The value's bytes are UTF-8 (JSON text or a string): text when not JSON,
    // never base64.
    if let Some(bytes) = event.value.as_deref()
        && serde_json::from_slice::<serde_json::Value>(bytes).is_err()
    {
        assert_eq!(line.value.as_str().map(str::as_bytes), Some(bytes));
    }
}

// ---------------------------------------------------------------------------
// dlq_headers: the `weir.*` headers of a dead letter

/// Header keys a byte below 0xC0 picks, so inputs reach every `weir.*` field.
const HEADER_KEYS: [&str; 14] = [
    dlq::header::REASON,
    dlq::header::MESSAGE,
    dlq::header::SOURCE_TOPIC,
    dlq::header::SOURCE_PARTITION,
    dlq::header::SOURCE_OFFSET,
    dlq::header::PIPELINE,
    dlq::header::PLUGIN,
    dlq::header::ATTEMPTS,
    dlq::header::FAILED_AT,
    dlq::header::REPLAYED,
    "weir.",
    "weir",
    "trace",
    "",
];

/// Byte reader for the header and dead-letter inputs: 0 past the end.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let taken = self.take(N);
        out[..taken.len()].copy_from_slice(taken);
        out
    }

    fn text(&mut self) -> String {
        let n = usize::from(self.byte());
        String::from_utf8_lossy(self.take(n)).into_owned()
    }

    /// A header: key (one of [`HEADER_KEYS`], or lossy UTF-8 of the next bytes),
    /// then a value of any bytes.
    fn header(&mut self) -> Header {
        let k = self.byte();
        let key = if k < 0xC0 {
            HEADER_KEYS[usize::from(k) % HEADER_KEYS.len()].to_owned()
        } else {
            String::from_utf8_lossy(self.take(usize::from(k & 0x3F))).into_owned()
        };
        let n = usize::from(self.byte());
        Header {
            key,
            value: self.take(n).to_vec(),
        }
    }
}

/// Reads arbitrary headers as `weir dlq` does, replays them, and round-trips a
/// dead letter made of the input through its headers.
pub fn dlq_headers(data: &[u8]) {
    let mut b = Bytes(data);
    let count = usize::from(b.byte() % 32);
    let headers: Vec<Header> = (0..count).map(|_| b.header()).collect();

    let reading = dlq::read(&headers);
    let last = |key: &str| headers.iter().rev().find(|h| h.key == key);
    let text_of = |key: &str| last(key).and_then(|h| String::from_utf8(h.value.clone()).ok());
    assert_eq!(reading.reason, text_of(dlq::header::REASON));
    assert_eq!(reading.message, text_of(dlq::header::MESSAGE));
    assert_eq!(reading.pipeline, text_of(dlq::header::PIPELINE));

    let replay = dlq::for_replay(&headers);
    let pair = |h: &Header| (h.key.clone(), h.value.clone());
    let kept: Vec<_> = headers
        .iter()
        .filter(|h| !h.key.starts_with("weir."))
        .map(pair)
        .collect();
    let (last_header, rest) = replay.split_last().expect("weir.replayed is added");
    assert_eq!(
        rest.iter().map(pair).collect::<Vec<_>>(),
        kept,
        "other headers kept, in order"
    );
    assert_eq!(last_header.key, dlq::header::REPLAYED);
    assert_eq!(
        dlq::read(&replay).replayed,
        reading.replayed.saturating_add(1)
    );
    assert!(
        dlq::read(&replay).reason.is_none(),
        "every other weir.* header is gone"
    );

    // A dead letter made of the rest of the input reads back as written.
    let (reason, message, topic) = (b.text(), b.text(), b.text());
    let (pipeline, plugin) = (b.text(), b.text());
    let partition = i32::from_le_bytes(b.array());
    let offset = i64::from_le_bytes(b.array());
    let attempts = u32::from_le_bytes(b.array());
    // Any instant a clock may show, before 1970 as well.
    let millis = i64::from_le_bytes(b.array());
    let failed_at = if millis >= 0 {
        UNIX_EPOCH + Duration::from_millis(millis.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(millis.unsigned_abs())
    };
    let letter = DeadLetter {
        reason: &reason,
        message: &message.repeat(usize::from(b.byte() % 64) + 1),
        source_topic: &topic,
        source_partition: partition,
        source_offset: offset,
        pipeline: &pipeline,
        plugin: &plugin,
        attempts,
        failed_at,
    };
    let written = letter.headers(&headers);
    assert!(
        written
            .iter()
            .map(pair)
            .take(headers.len())
            .eq(headers.iter().map(pair)),
        "originals first"
    );
    let back = dlq::read(&written);
    assert_eq!(back.reason.as_deref(), Some(letter.reason));
    let kept = back.message.expect("the message is UTF-8");
    assert!(letter.message.starts_with(&kept) && kept.len() <= 8 * 1024);
    assert_eq!(back.source_topic.as_deref(), Some(letter.source_topic));
    assert_eq!(back.source_partition, Some(partition));
    assert_eq!(back.source_offset, Some(offset));
    assert_eq!(back.pipeline.as_deref(), Some(letter.pipeline));
    assert_eq!(back.plugin.as_deref(), Some(letter.plugin));
    assert_eq!(back.attempts, Some(attempts));
    assert!(back.failed_at.is_some_and(|t| !t.is_empty()));
    assert_eq!(
        back.replayed, reading.replayed,
        "weir.replayed is passed on"
    );
}

// ---------------------------------------------------------------------------
// plugin_outputs: the record path over whatever a plugin returns

/// Three pipelines around the recipe plugin: one stage, a shared stage before
/// two branches with different outputs, and a chain of two stages.
const PIPELINES: &str = r#"
[topics.in]
[topics.a]
[topics.b]

[[pipeline]]
name = "single"
input = "in"
plugins = [{ path = "recipe.wasm" }]
outputs = { out = "a", alt = "b" }
retry = { max-attempts = 3, initial-backoff = "1ms", max-backoff = "2ms" }
limits = { max-output = 1024, timeout = "10s" }

[[pipeline]]
name = "branched"
input = "in"
plugins = [{ path = "recipe.wasm" }]
retry = { max-attempts = 3, initial-backoff = "1ms", max-backoff = "2ms" }
limits = { max-output = 1024, timeout = "10s" }
[[pipeline.branch]]
name = "left"
outputs = { out = "a" }
[[pipeline.branch]]
name = "right"
outputs = { out = "b", alt = "a" }

[[pipeline]]
name = "chain"
input = "in"
plugins = [{ path = "recipe.wasm" }, { path = "recipe.wasm" }]
outputs = { alt = "b" }
retry = { max-attempts = 2, initial-backoff = "1ms", max-backoff = "2ms" }
limits = { max-output = 1024, timeout = "10s" }
"#;

/// The recipe plugin in the pipelines of [`PIPELINES`], with instances kept
/// across inputs as a partition runner keeps them.
pub struct Harness {
    pipelines: Vec<(Snapshot, Instances, Expectations)>,
}

/// What a pipeline's config says about its outcomes.
struct Expectations {
    max_output: usize,
    max_attempts: u32,
    /// Per branch: output name -> topic.
    routes: Vec<BTreeMap<String, String>>,
    /// Plugins in the chain (before the branches, which run none).
    stages: usize,
}

impl Harness {
    /// Loads the recipe plugin's wasm (built by `scripts/build-plugins`).
    pub fn new(wasm: &Path) -> Harness {
        let config = WeirConfig::parse(PIPELINES, "fuzz.toml").expect("the fuzz pipelines parse");
        let engine = PluginEngine::new().expect("a wasm engine");
        let metrics = Metrics::new();
        let pipelines = config
            .pipelines
            .iter()
            .map(|p| {
                let limits = p.limits.limits(&config.kafka);
                let version = engine
                    .load(wasm, Vec::new(), limits)
                    .unwrap_or_else(|e| panic!("{e} (run scripts/build-plugins)"));
                let versions = p.all_plugins().map(|_| version.clone()).collect();
                let snapshot = Snapshot::build(p, versions, &metrics, None);
                let instances = Instances::new(&snapshot, &PartitionState::stateless())
                    .expect("the recipe plugin starts");
                let expect = Expectations {
                    max_output: limits.max_output,
                    max_attempts: p.retry.max_attempts,
                    routes: p
                        .branches()
                        .iter()
                        .map(|b| {
                            b.outputs
                                .iter()
                                .map(|(name, topic)| (name.clone(), topic.get_ref().clone()))
                                .collect()
                        })
                        .collect(),
                    stages: p.prefix().len(),
                };
                (snapshot, instances, expect)
            })
            .collect();
        Harness { pipelines }
    }
}

/// How one call, or a chain of calls, ends, as predicted from the recipe.
#[derive(Debug, Clone, PartialEq)]
enum Predicted {
    Outputs(Vec<Out>),
    /// A failure: its `weir.error.reason` kind.
    Failed(FailureKind),
}

/// One call of the recipe plugin, as the host must see it.
fn call(value: Option<&[u8]>, max_output: usize) -> Predicted {
    match recipe::decode(value.unwrap_or_default()).reply {
        Reply::Outputs(outs) if outs.iter().any(|o| o.size() > max_output) => {
            Predicted::Failed(FailureKind::BadOutput)
        }
        Reply::Outputs(outs) => Predicted::Outputs(outs),
        Reply::Invalid(_) => Predicted::Failed(FailureKind::Invalid),
        Reply::Transient(_) => Predicted::Failed(FailureKind::Transient),
        Reply::Trap(_) => Predicted::Failed(FailureKind::Trap),
    }
}

/// A chain of `stages` recipe plugins: each output of a stage is an input of the
/// next; the first failure ends it.
fn chain(value: &[u8], stages: usize, max_output: usize) -> Predicted {
    let mut outs = vec![Out {
        to: String::new(),
        key: None,
        value: Some(value.to_vec()),
        headers: Vec::new(),
    }];
    for _ in 0..stages {
        let mut next = Vec::new();
        for out in &outs {
            match call(out.value.as_deref(), max_output) {
                Predicted::Outputs(more) => next.extend(more),
                failed => return failed,
            }
        }
        outs = next;
    }
    Predicted::Outputs(outs)
}

fn out_of(output: &Output) -> Out {
    Out {
        to: output.to.clone(),
        key: output.key.clone(),
        value: output.value.clone(),
        headers: output
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect(),
    }
}

/// Runs the input as an event value (a recipe) through every pipeline and checks
/// each disposition against what the recipe and the config predict.
pub fn plugin_outputs(harness: &mut Harness, data: &[u8]) {
    let record = Event {
        topic: "in".into(),
        partition: 0,
        offset: 1,
        timestamp_ms: None,
        key: None,
        value: Some(data.to_vec()),
        headers: Vec::new(),
    };
    let site = CallSite {
        pipeline: Arc::from("fuzz"),
        partition: 0,
        offset: 1,
        ..CallSite::default()
    };
    for (snapshot, instances, expect) in &mut harness.pipelines {
        let predicted = chain(data, expect.stages, expect.max_output);
        let mut work = Work::new(&record, snapshot);
        let mut retries = 0;
        let verdicts = loop {
            match process(&mut work, snapshot, instances, &site, 0.5) {
                Disposition::Done(verdicts) => break verdicts,
                Disposition::Retry { attempt, .. } => {
                    retries += 1;
                    assert_eq!(attempt, retries, "attempts count up");
                    assert!(retries < expect.max_attempts, "retried past max-attempts");
                }
            }
        };
        let name = snapshot.name().clone();
        assert_eq!(
            verdicts.len(),
            expect.routes.len(),
            "{name}: a verdict per branch"
        );
        for (verdict, routes) in verdicts.iter().zip(&expect.routes) {
            // The prefix's outcome, then the branch's routing of its outputs.
            let want = match &predicted {
                Predicted::Outputs(outs) if outs.iter().all(|o| routes.contains_key(&o.to)) => {
                    Predicted::Outputs(outs.clone())
                }
                Predicted::Outputs(_) => Predicted::Failed(FailureKind::BadOutput),
                failed => failed.clone(),
            };
            match (verdict, want) {
                (Verdict::Deliver(routed), Predicted::Outputs(outs)) => {
                    assert_eq!(retries, 0, "{name}: delivered after a retry");
                    let got: Vec<Out> = routed.iter().map(|r| out_of(&r.output)).collect();
                    assert_eq!(got, outs, "{name}: outputs as the plugin returned them");
                    for r in routed {
                        assert!(out_of(&r.output).size() <= expect.max_output);
                        assert_eq!(Some(&r.route.topic), routes.get(&r.output.to));
                    }
                }
                (Verdict::DeadLetter(failed), Predicted::Failed(kind)) => {
                    let retryable = matches!(kind, FailureKind::Transient | FailureKind::Trap);
                    let reason = match kind {
                        FailureKind::Transient => "retries-exhausted",
                        other => other.as_str(),
                    };
                    assert_eq!(failed.reason.as_str(), reason, "{name}");
                    assert_eq!(failed.failure.error.kind(), kind, "{name}");
                    let attempts = if retryable { expect.max_attempts } else { 1 };
                    assert_eq!(failed.attempts, attempts, "{name}: attempts of {kind:?}");
                    assert_eq!(retries, attempts - 1, "{name}: retries of {kind:?}");
                    if kind == FailureKind::Invalid
                        && let Reply::Invalid(message) = recipe::decode(data).reply
                        && expect.stages == 1
                    {
                        assert_eq!(failed.failure.error.message(), message);
                    }
                }
                (verdict, want) => panic!("{name}: got {}, predicted {want:?}", describe(verdict)),
            }
        }
    }
}

fn describe(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Deliver(routed) => format!("{} outputs", routed.len()),
        Verdict::DeadLetter(f) => format!("dead letter {}: {}", f.reason, f.failure.error),
        Verdict::Refused { message, .. } => format!("refused: {message}"),
    }
}
