//! Kafka helpers for the end-to-end tests: a real Apache Kafka broker process, a client
//! (rdkafka) to produce inputs and read outputs, committed offsets, and a `weir run`
//! process to start, signal and stop.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header as KafkaHeader, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::{ClientConfig, Offset};

use super::net::{free_ports, port_taken};
use super::{plugin, root};

/// An Apache Kafka broker process (scripts/kafka-broker); killed when dropped, and
/// when the test process dies.
pub struct Broker {
    /// The PLAINTEXT listener (for a secured broker: the internal, super-user one).
    pub address: String,
    /// The SASL_SSL listener of a secured broker.
    pub secure_address: Option<String>,
    child: Option<Child>,
    /// Config, data, log and (when secured) TLS files; removed when dropped.
    dir: tempfile::TempDir,
}

impl Broker {
    fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .map(|c| c.id() as i32)
            .expect("a broker started by this test")
    }

    /// Freezes the broker (an outage that keeps its data).
    pub fn stop(&self) {
        unsafe { libc::kill(self.pid(), libc::SIGSTOP) };
    }

    pub fn resume(&self) {
        unsafe { libc::kill(self.pid(), libc::SIGCONT) };
    }

    /// Resumes a frozen broker and waits until it creates topics again: after a
    /// long freeze, a busy machine can take longer than weir's 10 s start-up check
    /// for the broker to settle, and a test that starts weir anew wants the outage
    /// over.
    pub fn resume_and_settle(&self) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        self.resume();
        let admin: AdminClient<_> = client(&self.address).create().expect("admin");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
        let probe = unique("settled");
        let topic = [NewTopic::new(&probe, 1, TopicReplication::Fixed(1))];
        wait_until(
            Duration::from_secs(120),
            "the resumed broker to create a topic",
            || {
                runtime
                    .block_on(admin.create_topics(&topic, &options))
                    .is_ok_and(|results| {
                        results.iter().all(|r| {
                            matches!(
                                r,
                                Ok(_)
                                    | Err((
                                        _,
                                        rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
                                    ))
                            )
                        })
                    })
            },
        );
    }

    /// The CA that signed a secured broker's certificate (PEM).
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    /// The broker's own log.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a private broker with a PLAINTEXT listener.
pub fn start_broker() -> Broker {
    launch_broker(&[])
}

/// Starts a private broker that also has a SASL_SSL listener with these SCRAM-SHA-512
/// users (`name=password`) and ACLs enforced. Grant with [`grant`].
pub fn start_secured_broker(users: &[&str]) -> Broker {
    launch_broker(users)
}

/// How often a broker is started on new ports when another process took one of its
/// ports first.
const BROKER_ATTEMPTS: usize = 3;

/// Starts a broker on fresh ports, again on new ones when a port was taken in the
/// moment between picking it and the broker binding it.
fn launch_broker(scram_users: &[&str]) -> Broker {
    let mut attempt = 1;
    loop {
        match try_launch_broker(scram_users) {
            Ok(broker) => return broker,
            Err(failure) if port_taken(&failure) && attempt < BROKER_ATTEMPTS => {
                eprintln!("a port of the Kafka broker was taken; starting it on new ports");
                attempt += 1;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
}

/// Runs scripts/kafka-broker and waits until it is ready; the broker's output when it
/// exits during start-up. The child is spawned from a thread that never exits, so
/// PDEATHSIG kills it with the test process.
fn try_launch_broker(scram_users: &[&str]) -> Result<Broker, String> {
    let dir = tempfile::Builder::new()
        .prefix("weir-kafka-")
        .tempdir()
        .expect("a broker directory");
    let [port, controller_port, secure_port] = free_ports();
    let address = format!("127.0.0.1:{port}");
    let mut args: Vec<String> = vec![
        "--dir".into(),
        dir.path().display().to_string(),
        "--port".into(),
        port.to_string(),
        "--controller-port".into(),
        controller_port.to_string(),
    ];
    let secure_address = if scram_users.is_empty() {
        None
    } else {
        args.extend(["--secure-port".into(), secure_port.to_string()]);
        for user in scram_users {
            args.extend(["--scram".into(), (*user).to_owned()]);
        }
        Some(format!("127.0.0.1:{secure_port}"))
    };
    let script = root().join("scripts/kafka-broker");
    let stdout = std::fs::File::create(dir.path().join("stdout.log")).expect("broker stdout");
    let mut command = Command::new(&script);
    command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("broker stdout"))
        .stderr(stdout);
    let mut child = super::spawn_tied(command, &script);
    let log = dir.path().join("broker.log");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Kafka Server started") {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let out = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap_or_default();
            return Err(format!(
                "the Kafka broker exited during start-up ({status}):\n{out}\n{text}"
            ));
        }
        assert!(
            Instant::now() < deadline,
            "the Kafka broker was not ready within 90 s; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Broker {
        address,
        secure_address,
        child: Some(child),
        dir,
    })
}

/// Runs one of Kafka's own command-line tools (a class of kafka-tools) against a
/// broker, e.g. `AclCommand`. Panics with its output when it fails.
pub fn kafka_tool(class: &str, args: &[&str]) -> String {
    let libs = Command::new(root().join("scripts/install-kafka"))
        .output()
        .expect("scripts/install-kafka");
    assert!(libs.status.success(), "scripts/install-kafka failed");
    let libs = String::from_utf8_lossy(&libs.stdout).trim().to_owned();
    let java = std::env::var_os("JAVA_HOME").map_or_else(
        || PathBuf::from("java"),
        |h| PathBuf::from(h).join("bin/java"),
    );
    let output = Command::new(java)
        .arg("-cp")
        .arg(format!("{libs}/*"))
        .arg(format!("org.apache.kafka.tools.{class}"))
        .args(args)
        .output()
        .expect("run a Kafka tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{class} {args:?} failed:\n{text}");
    text
}

/// Grants `principal` (e.g. `User:weir`) `operations` on a resource of a secured
/// broker, through its internal listener: `resource` is e.g. `--topic` or `--group`.
pub fn grant(broker: &Broker, principal: &str, operations: &[&str], resource: &str, name: &str) {
    acl(broker, "--add", principal, operations, resource, name);
}

/// Takes back what [`grant`] gave.
pub fn revoke(broker: &Broker, principal: &str, operations: &[&str], resource: &str, name: &str) {
    acl(broker, "--remove", principal, operations, resource, name);
}

fn acl(
    broker: &Broker,
    verb: &str,
    principal: &str,
    operations: &[&str],
    resource: &str,
    name: &str,
) {
    let mut args = vec![
        "--bootstrap-server",
        &broker.address,
        verb,
        "--force",
        "--allow-principal",
        principal,
    ];
    for operation in operations {
        args.extend(["--operation", operation]);
    }
    args.extend([resource, name]);
    kafka_tool("AclCommand", &args);
}

/// The broker shared by the tests of this binary: `WEIR_TEST_BROKERS` (started by
/// scripts/test), or a private one.
pub fn shared_broker() -> &'static str {
    static BROKER: OnceLock<(String, Option<Broker>)> = OnceLock::new();
    let (address, _) = BROKER.get_or_init(|| match std::env::var("WEIR_TEST_BROKERS") {
        Ok(address) if !address.is_empty() => (address, None),
        _ => {
            let broker = start_broker();
            (broker.address.clone(), Some(broker))
        }
    });
    address
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn client(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("log_level", "3");
    config
}

/// One record to produce: key, value, headers.
pub type Record = (Option<String>, Option<Vec<u8>>, Vec<(String, String)>);

pub fn produce(brokers: &str, topic: &str, records: &[Record]) {
    let producer: ThreadedProducer<DefaultProducerContext> = client(brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // Inputs near the size limits: the broker's default (1,048,588) decides.
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer");
    for (key, value, headers) in records {
        let headers = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(KafkaHeader {
                key: k,
                value: Some(v.as_bytes()),
            })
        });
        let mut record = BaseRecord::to(topic).headers(headers);
        if let Some(key) = key {
            record = record.key(key.as_bytes());
        }
        if let Some(value) = value {
            record = record.payload(value.as_slice());
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("inputs delivered");
}

pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    create_topic_with(brokers, topic, partitions, &[]);
}

/// Creates a topic with topic-level configs, e.g. `("max.message.bytes", "4000")`.
pub fn create_topic_with(brokers: &str, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = client(brokers).create().expect("admin");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let topics = [configs.iter().fold(
        NewTopic::new(topic, partitions, TopicReplication::Fixed(1)),
        |t, (k, v)| t.set(k, v),
    )];
    let results = runtime
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .expect("create topic");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("create {t}: {e}"));
    }
}

/// Produces `records` one chunk at a time with a pause between chunks, from a
/// thread: traffic that keeps arriving while a test does something to weir.
pub fn trickle(
    brokers: &str,
    topic: &str,
    records: Vec<Record>,
    chunk: usize,
    pause: Duration,
) -> std::thread::JoinHandle<()> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    std::thread::spawn(move || {
        for part in records.chunks(chunk) {
            produce(&brokers, &topic, part);
            std::thread::sleep(pause);
        }
    })
}

fn partitions(consumer: &BaseConsumer, topic: &str) -> Vec<i32> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect()
}

/// Reads a whole topic from the beginning: stops once `expected` records arrived
/// and nothing more came for `settle`, or after `timeout`.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = client(brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in partitions(&consumer, topic) {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("offset");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let settle = Duration::from_millis(1500);
    let mut messages = Vec::new();
    let mut last = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                messages.push(m.detach());
                last = Instant::now();
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None if messages.len() >= expected && last.elapsed() > settle => break,
            None => {}
        }
    }
    messages
}

/// Committed offsets of `group` on `topic`, by partition (absent = none committed).
pub fn committed(brokers: &str, group: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = client(brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in partitions(&consumer, topic) {
        tpl.add_partition(topic, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets")
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(n) => Some((e.partition(), n)),
            _ => None,
        })
        .collect()
}

/// High watermarks of `topic`, by partition.
pub fn high_watermarks(brokers: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = client(brokers).create().expect("consumer");
    partitions(&consumer, topic)
        .into_iter()
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (p, high)
        })
        .collect()
}

/// Total lag of `group` on `topic`: high watermark minus committed, summed.
pub fn lag(brokers: &str, group: &str, topic: &str) -> i64 {
    let committed = committed(brokers, group, topic);
    high_watermarks(brokers, topic)
        .iter()
        .map(|(p, high)| high - committed.get(p).copied().unwrap_or(0))
        .sum()
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn header<'a>(message: &'a OwnedMessage, key: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// A `weir run` process whose stderr goes to a file.
pub struct Weir {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Weir {
    pub fn start(config: &Path, log_dir: &Path, name: &str) -> Weir {
        Weir::start_with(config, log_dir, name, &[])
    }

    /// `weir run --config CONFIG` plus `extra` arguments (e.g. `--watch`).
    pub fn start_with(config: &Path, log_dir: &Path, name: &str, extra: &[&str]) -> Weir {
        Weir::start_env(config, log_dir, name, extra, &[])
    }

    /// [`Weir::start_with`] with `env` added to weir's environment (e.g. the
    /// `OTEL_*` variables), without touching the test process's own.
    pub fn start_env(
        config: &Path,
        log_dir: &Path,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Weir {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(super::weir_bin());
        // A test process that is killed takes its weir processes with it.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .current_dir(root())
            .env(
                "WEIR_LOG",
                std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "info,weir=debug".into()),
            )
            // Local stores in the test's directory, not the user's.
            .env("WEIR_STATE_DIR", log_dir.join("state"))
            .envs(env.iter().copied())
            .args(["run", "--config"])
            .arg(config)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start weir");
        Weir {
            child: Some(child),
            log,
        }
    }

    /// Waits until every one of `pipelines` pipelines holds an assignment, so that
    /// topics exist as configured before the test produces.
    pub fn wait_ready(&self, pipelines: usize) {
        wait_until(Duration::from_secs(60), "weir to be assigned", || {
            self.log_text().matches("partitions assigned").count() >= pipelines
        });
    }

    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        self.wait(Duration::from_secs(60))
    }

    /// SIGTERM, and asserts a clean exit (0), showing weir's log if not.
    pub fn terminate_cleanly(self) {
        let log = self.log.clone();
        assert_eq!(
            self.terminate(),
            Some(0),
            "{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "weir did not exit within {timeout:?}; log: {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        // A failing test shows what weir said.
        if std::thread::panicking() {
            let text = self.log_text();
            let lines: Vec<&str> = text.lines().filter(|l| !l.contains(" DEBUG ")).collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- last lines of {} ---\n{}",
                self.log.display(),
                tail.join("\n")
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Weir {
    /// The address of the operations endpoint, from the start-up log line.
    pub fn ops_address(&self) -> String {
        let mut address = None;
        wait_until(Duration::from_secs(60), "the metrics endpoint", || {
            address = self.log_text().lines().find_map(|l| {
                l.split("on http://")
                    .nth(1)?
                    .split_whitespace()
                    .next()
                    .map(str::to_owned)
            });
            address.is_some()
        });
        address.expect("checked above")
    }
}

/// A plain HTTP GET: (status, body).
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut stream = TcpStream::connect(address).expect("connect to the metrics endpoint");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The `[kafka]` section for tests: fast failure detection so takeovers are quick.
pub fn kafka_section(brokers: &str) -> String {
    format!(
        r#"[kafka]
brokers = "{brokers}"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[metrics]
listen = "127.0.0.1:0"
"#
    )
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join(format!("{}.toml", unique("pipelines")));
    std::fs::write(&path, text).expect("write config");
    path
}

pub fn wasm(name: &str) -> String {
    plugin(name).display().to_string()
}

/// One pipeline named `name` around one plugin, on fresh topics with `partitions`
/// partitions: (config, input, output, dlq, group). `policy` adds pipeline keys.
pub fn one_plugin_config(
    brokers: &str,
    name: &str,
    plugin: &str,
    plugin_config: &str,
    partitions: i32,
    policy: &str,
) -> (String, String, String, String, String) {
    let input = unique(&format!("{name}-in"));
    let output = unique(&format!("{name}-out"));
    let dlq = format!("{input}.dlq");
    let group = format!("{input}-group");
    let text = format!(
        r#"{kafka}
[topics.{input}]
partitions = {partitions}
[topics.{output}]
partitions = {partitions}

[[pipeline]]
name = "{name}"
input = "{input}"
group = "{group}"
plugins = [{{ path = "{plugin}", config = {{ {plugin_config} }} }}]
outputs = {{ out = "{output}" }}
dlq = "{dlq}"
{policy}
"#,
        kafka = kafka_section(brokers),
    );
    (text, input, output, dlq, group)
}

/// A pipeline around the chaos plugin on fresh topics: (config, input, output, dlq, group).
pub fn chaos_config(
    brokers: &str,
    partitions: i32,
    plugin_config: &str,
    policy: &str,
) -> (String, String, String, String, String) {
    one_plugin_config(
        brokers,
        "chaos",
        &wasm("chaos_plugin"),
        plugin_config,
        partitions,
        policy,
    )
}

pub fn commands(values: &[&str]) -> Vec<Record> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                Some(format!("k{i}")),
                Some(v.as_bytes().to_vec()),
                Vec::new(),
            )
        })
        .collect()
}

/// A message's value as text (lossy).
pub fn value_text(m: &OwnedMessage) -> String {
    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()
}

/// Records with key `key`, one per value.
pub fn keyed(key: &str, values: &[&str]) -> Vec<Record> {
    values
        .iter()
        .map(|v| {
            (
                Some(key.to_owned()),
                Some(v.as_bytes().to_vec()),
                Vec::new(),
            )
        })
        .collect()
}

/// The counter test plugin's pipeline `counter` (plugins/testing/counter) on fresh
/// topics with 2 partitions: (config, input, output, dlq, group).
pub fn counter_config(brokers: &str, policy: &str) -> (String, String, String, String, String) {
    one_plugin_config(brokers, "counter", &wasm("counter_plugin"), "", 2, policy)
}
