//! A secured Apache Kafka: a TLS listener with a CA and certificate generated for
//! the test, SASL/SCRAM-SHA-512 users, and ACLs that allow weir's principal exactly
//! what docs/operations.md says it needs. The Todo deployment runs over SASL_SSL; a
//! wrong password fails start-up at once; a missing WRITE ACL keeps records (not
//! ready, naming the ACL) until it is granted.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use common::kafka::*;
use common::model::reminders_all_due;
use common::todo::*;
use rdkafka::message::Message;
use serde_json::Value;
use todo_events::sample::generate;

const USER: &str = "weir";
const PASSWORD: &str = "weir-secret";

/// The Todo deployment over SASL_SSL on fresh topics.
struct Todo {
    text: String,
    input: String,
    reminders: String,
    updates: String,
    group: String,
}

impl Todo {
    fn dlqs(&self) -> [String; 2] {
        [
            format!("{}.reminders.dlq", self.input),
            format!("{}.ui-sync.dlq", self.input),
        ]
    }

    /// The changelog topic of the reminder-deriver (slot 0 of the `reminders`
    /// branch), the one stateful plugin.
    fn changelog(&self) -> String {
        format!("{}.todo.reminders.0.changelog", self.group)
    }

    fn topics(&self) -> Vec<String> {
        let mut all = vec![
            self.input.clone(),
            self.reminders.clone(),
            self.updates.clone(),
            self.changelog(),
        ];
        all.extend(self.dlqs());
        all
    }
}

fn todo(broker: &Broker, password: &str) -> Todo {
    let input = unique("task-events");
    let reminders = unique("reminders");
    let updates = unique("task-updates");
    let group = format!("{input}-todo");
    let text = format!(
        r#"[kafka]
brokers = "{secure}"
[kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "{USER}"
"sasl.password" = "{password}"
"ssl.ca.location" = "{ca}"
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[metrics]
listen = "127.0.0.1:0"

[topics.{input}]
partitions = 3
[topics.{reminders}]
partitions = 3
[topics.{updates}]
partitions = 3
cleanup = "compact"

{pipeline}"#,
        secure = broker.secure_address.as_deref().expect("a secured broker"),
        ca = broker.ca_pem().display(),
        pipeline = branched_pipeline(
            &input,
            &group,
            &wasm("task_validator"),
            "",
            &reminders,
            &updates
        ),
    );
    Todo {
        text,
        input,
        reminders,
        updates,
        group,
    }
}

/// The ACLs docs/operations.md lists for a pipeline, except those in `withhold`
/// (`(operation, topic)`).
fn grant_pipeline(broker: &Broker, todo: &Todo, withhold: &[(&str, &str)]) {
    let principal = format!("User:{USER}");
    let grant_topic = |operations: &[&str], topic: &str| {
        let operations: Vec<&str> = operations
            .iter()
            .copied()
            .filter(|op| !withhold.contains(&(*op, topic)))
            .collect();
        if !operations.is_empty() {
            grant(broker, &principal, &operations, "--topic", topic);
        }
    };
    grant_topic(&["Read", "Describe"], &todo.input);
    grant(
        broker,
        &principal,
        &["Read", "Describe"],
        "--group",
        &todo.group,
    );
    for topic in [&todo.reminders, &todo.updates]
        .into_iter()
        .chain(todo.dlqs().iter())
    {
        grant_topic(&["Write", "Describe"], topic);
    }
    // The reminder-deriver's state (docs/operations.md, "Keyed state", "ACLs").
    grant_topic(&["Read", "Write", "Describe"], &todo.changelog());
    grant(
        broker,
        &principal,
        &["Describe"],
        "--group",
        "weir-state-restore",
    );
    for topic in todo.topics() {
        grant_topic(&["Create", "DescribeConfigs"], &topic);
    }
}

#[test]
fn the_todo_flow_runs_over_tls_and_scram_with_exactly_the_documented_acls() {
    let broker = start_secured_broker(&[&format!("{USER}={PASSWORD}")]);
    let dir = tempfile::tempdir().unwrap();
    let todo = todo(&broker, PASSWORD);
    grant_pipeline(&broker, &todo, &[]);
    let config = write_config(dir.path(), &todo.text);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    let samples = generate(1500, 83, start());
    // The test's own client uses the internal listener.
    let internal = broker.address.as_str();
    produce(internal, &todo.input, &records(&samples));
    wait_until(SETTLE, "lag 0", || {
        lag(internal, &todo.group, &todo.input) == 0
    });

    let valid: Vec<Value> = samples
        .iter()
        .filter(|s| s.valid)
        .map(|s| serde_json::from_slice(&s.value).unwrap())
        .collect();
    let want_reminders = reminders_all_due(&valid, TimeDelta::minutes(15), common::now_ms()).len();
    let updates = read_topic(
        internal,
        &todo.updates,
        valid.len(),
        Duration::from_secs(30),
    );
    assert_eq!(updates.len(), valid.len(), "a task update per valid event");
    let reminders = read_topic(
        internal,
        &todo.reminders,
        want_reminders,
        Duration::from_secs(30),
    );
    assert_eq!(
        reminders.len(),
        want_reminders,
        "the reminders the model expects"
    );
    let invalid = samples.len() - valid.len();
    for dlq in todo.dlqs() {
        let dead = read_topic(internal, &dlq, invalid, Duration::from_secs(30));
        assert_eq!(dead.len(), invalid, "every invalid event in {dlq}");
    }
    assert_eq!(weir.terminate(), Some(0));
}

#[test]
fn a_wrong_password_fails_start_up_at_once_naming_the_authentication_failure() {
    let broker = start_secured_broker(&[&format!("{USER}={PASSWORD}")]);
    let dir = tempfile::tempdir().unwrap();
    let todo = todo(&broker, "not-the-password");
    let config = write_config(dir.path(), &todo.text);
    let started = Instant::now();
    let mut weir = Weir::start(&config, dir.path(), "weir");
    let code = weir.wait(Duration::from_secs(30));
    let took = started.elapsed();
    let log = weir.log_text();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("authentication failed") && log.contains("sasl.password"),
        "the message names the failure and the fix: {log}"
    );
    assert!(took < Duration::from_secs(10), "failed after {took:?}");
}

#[test]
fn a_missing_write_acl_holds_records_until_granted_and_then_delivers_each_once() {
    let broker = start_secured_broker(&[&format!("{USER}={PASSWORD}")]);
    let dir = tempfile::tempdir().unwrap();
    let todo = todo(&broker, PASSWORD);
    let principal = format!("User:{USER}");
    grant_pipeline(&broker, &todo, &[("Write", todo.updates.as_str())]);
    let config = write_config(dir.path(), &todo.text);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    let address = weir.ops_address();
    // Only valid events: every one of them needs the forbidden topic.
    let samples: Vec<_> = generate(900, 89, start())
        .into_iter()
        .filter(|s| s.valid)
        .take(600)
        .collect();
    let internal = broker.address.as_str();
    produce(internal, &todo.input, &records(&samples));

    wait_until(SETTLE, "readyz to name the missing ACL", || {
        let (status, body) = http_get(&address, "/readyz");
        status == 503 && body.contains(&todo.updates) && body.contains("WRITE")
    });
    std::thread::sleep(Duration::from_secs(5));
    let committed_before = committed(internal, &todo.group, &todo.input);
    assert!(
        committed_before.values().all(|offset| *offset == 0),
        "nothing committed past a record that could not be delivered: {committed_before:?}"
    );
    assert!(
        weir.log_text().contains(&format!(
            "grant weir's principal WRITE and DESCRIBE on topic {}",
            todo.updates
        )),
        "an ERROR line says what to grant"
    );

    grant(&broker, &principal, &["Write"], "--topic", &todo.updates);
    wait_until(SETTLE, "lag 0 after the grant", || {
        lag(internal, &todo.group, &todo.input) == 0
    });
    wait_until(SETTLE, "ready again", || {
        http_get(&address, "/readyz").0 == 200
    });
    let updates = read_topic(
        internal,
        &todo.updates,
        samples.len(),
        Duration::from_secs(30),
    );
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in &updates {
        *counts
            .entry(header(m, "event_id").unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), samples.len(), "every record arrived");
    assert!(counts.values().all(|n| *n == 1), "and once each");
    // The other branch delivered each of its reminders once: exactly what the model
    // gives (a reminder that triggered and was scheduled again by a later update may
    // trigger twice with the same bytes, so the comparison counts them).
    let events: Vec<Value> = samples
        .iter()
        .map(|s| serde_json::from_slice(&s.value).unwrap())
        .collect();
    let mut want: HashMap<String, usize> = HashMap::new();
    for v in reminders_all_due(&events, TimeDelta::minutes(15), common::now_ms()) {
        *want.entry(v.to_string()).or_default() += 1;
    }
    let reminders = read_topic(
        internal,
        &todo.reminders,
        want.values().sum(),
        Duration::from_secs(10),
    );
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in &reminders {
        let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        *seen.entry(v.to_string()).or_default() += 1;
    }
    assert!(
        seen == want,
        "the other branch was not delivered twice, nor lost anything"
    );
    assert_eq!(weir.terminate(), Some(0));
}
