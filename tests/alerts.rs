//! Alerts that fire: deploy/alerts.yml in a real Prometheus that scrapes a real
//! `weir run`. A DLQ flood that opens the circuit and leaves a growing backlog fires
//! WeirDeadLettersGrowing, WeirCircuitOpen and WeirConsumerLagGrowing; a frozen broker,
//! then a dead weir, fire WeirNotReady; every query of the Grafana dashboard returns
//! data. The rules are loaded unchanged except for their `for:` durations (a minute
//! becomes a second), next to a broken copy of each alert (its metric names
//! misspelled), which must stay silent while the real one fires: proof that these
//! checks can fail. `promtool_tests_catch_broken_expressions` does the same for the
//! unit tests in deploy/alerts.test.yml.
//!
//! Prometheus is `$PROMETHEUS`, or whatever scripts/install-prometheus installs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::net::{free_ports, port_taken};
use common::root;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

/// How long an alert may take to fire once its cause is there (the rules' `for:`
/// is a few seconds here, evaluation and scrapes every second).
const FIRE: Duration = Duration::from_secs(120);

/// The directory holding `prometheus` and `promtool`.
fn prometheus_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let output = Command::new(root().join("scripts/install-prometheus"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/install-prometheus");
        assert!(
            output.status.success(),
            "scripts/install-prometheus failed; set PROMETHEUS=/path/to/prometheus"
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

fn promtool(args: &[&str]) -> (bool, String) {
    let output = Command::new(prometheus_dir().join("promtool"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

// ------------------------------------------------------------------ the rules

fn alert_rules() -> Yaml {
    let text = std::fs::read_to_string(root().join("deploy/alerts.yml")).expect("alerts.yml");
    YamlLoader::load_from_str(&text)
        .expect("alerts.yml is YAML")
        .remove(0)
}

fn rules_mut(doc: &mut Yaml) -> impl Iterator<Item = &mut Yaml> {
    groups_rules(doc)
        .into_iter()
        .flat_map(|rules| rules.iter_mut())
}

fn key(name: &str) -> Yaml {
    Yaml::String(name.to_owned())
}

fn set(rule: &mut Yaml, name: &str, value: &str) {
    let Yaml::Hash(rule) = rule else {
        panic!("a rule is not a mapping")
    };
    rule.insert(key(name), Yaml::String(value.to_owned()));
}

fn emit(doc: &Yaml) -> String {
    let mut text = String::new();
    let mut emitter = YamlEmitter::new(&mut text);
    emitter.multiline_strings(true);
    emitter.dump(doc).expect("emit YAML");
    text
}

/// An expression broken the way a rename breaks it: every weir metric misspelled.
fn broken(expr: &str) -> String {
    expr.replace("weir_", "weir_misspelled_")
}

/// A duration of the rules (`10m`, `30s`) in seconds.
fn seconds(duration: &str) -> u64 {
    let (number, unit) = duration.split_at(duration.len() - 1);
    let n: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("duration {duration:?}"));
    match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("duration {duration:?}"),
    }
}

/// deploy/alerts.yml for a test: each `for:` a sixtieth as long (a minute becomes a
/// second), expressions unchanged; plus `<alert>Broken`, a copy with `broken` metric
/// names, after each alert in the same group (so evaluated at the same instants).
fn test_rules() -> String {
    let mut doc = alert_rules();
    for rules in groups_rules(&mut doc) {
        let mut with_copies = Vec::new();
        for mut rule in std::mem::take(rules) {
            if let Some(duration) = rule["for"].as_str() {
                let short = (seconds(duration) / 60).max(1);
                set(&mut rule, "for", &format!("{short}s"));
            }
            let copy = match (rule["alert"].as_str(), rule["expr"].as_str()) {
                (Some(name), Some(expr)) => {
                    let mut copy = rule.clone();
                    set(&mut copy, "alert", &format!("{name}Broken"));
                    set(&mut copy, "expr", &broken(expr));
                    Some(copy)
                }
                _ => None,
            };
            with_copies.push(rule);
            with_copies.extend(copy);
        }
        *rules = with_copies;
    }
    emit(&doc)
}

/// The `rules` list of each group.
fn groups_rules(doc: &mut Yaml) -> Vec<&mut Vec<Yaml>> {
    let Some(Yaml::Array(groups)) = (match doc {
        Yaml::Hash(top) => top.get_mut(&key("groups")),
        _ => None,
    }) else {
        panic!("deploy/alerts.yml has no groups")
    };
    groups
        .iter_mut()
        .map(|group| match group {
            Yaml::Hash(g) => match g.get_mut(&key("rules")) {
                Some(Yaml::Array(rules)) => rules,
                _ => panic!("a group of deploy/alerts.yml has no rules"),
            },
            _ => panic!("a group of deploy/alerts.yml is not a mapping"),
        })
        .collect()
}

/// deploy/alerts.yml with `alert`'s expression replaced.
fn rules_with(alert: &str, expr: &str) -> String {
    let mut doc = alert_rules();
    let mut found = false;
    for rule in rules_mut(&mut doc) {
        if rule["alert"].as_str() == Some(alert) {
            set(rule, "expr", expr);
            found = true;
        }
    }
    assert!(found, "no alert {alert} in deploy/alerts.yml");
    emit(&doc)
}

// ------------------------------------------------------------------ a Prometheus

/// A Prometheus process on a free port with its own storage; killed when dropped,
/// and when the test process dies.
struct Prometheus {
    address: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `targets` as job `weir` and evaluates `rules`, both every second.
    fn start(targets: &[&str], rules: &str) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("weir-prometheus-")
            .tempdir()
            .expect("a Prometheus directory");
        let rules_path = dir.path().join("alerts.yml");
        std::fs::write(&rules_path, rules).expect("write rules");
        let (ok, text) = promtool(&["check", "rules", rules_path.to_str().unwrap()]);
        assert!(
            ok,
            "the test copy of the rules is invalid:\n{text}\n{rules}"
        );
        let targets: Vec<String> = targets.iter().map(|t| format!("{t:?}")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: weir\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [{targets}]\n",
            rules = rules_path.display(),
            targets = targets.join(", "),
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        // Up to 3 times, on a new port when another process took the one picked.
        let mut attempt = 1;
        loop {
            let [port] = free_ports();
            let address = format!("127.0.0.1:{port}");
            let mut child = Self::spawn(dir.path(), &config_path, &address);
            let failure = match Self::wait_ready(&mut child, &address, dir.path()) {
                Ok(()) => {
                    return Prometheus {
                        address,
                        child,
                        dir,
                    };
                }
                Err(failure) => failure,
            };
            let _ = child.kill();
            let _ = child.wait();
            assert!(port_taken(&failure) && attempt < 3, "{failure}");
            eprintln!("the port of Prometheus was taken; starting it on a new one");
            attempt += 1;
        }
    }

    /// Starts `prometheus` listening on `address`, logging to `dir/prometheus.log`.
    fn spawn(dir: &Path, config_path: &Path, address: &str) -> Child {
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let mut command = Command::new(prometheus_dir().join("prometheus"));
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        common::spawn_tied(command, Path::new("prometheus"))
    }

    /// Waits until Prometheus answers `/-/ready`; what went wrong, with its log, when
    /// it exits first or is not ready within 60 s.
    fn wait_ready(child: &mut Child, address: &str, dir: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect(address).is_ok()
                && http_get(address, "/-/ready").0 == 200
            {
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("prometheus exited ({status}):\n{}", log_tail(dir)));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "prometheus not ready within 60 s:\n{}",
                    log_tail(dir)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        log_tail(self.dir.path())
    }

    /// GET an API path; its `data`.
    fn api(&self, path: &str) -> Value {
        let (status, body) = http_get(&self.address, path);
        let value: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: {status}, not JSON ({e}): {body}"));
        assert_eq!(value["status"], "success", "GET {path}: {status} {body}");
        value["data"].clone()
    }

    /// An instant query's result.
    fn query(&self, promql: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", common::encode(promql)));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Active (pending or firing) alerts.
    fn alerts(&self) -> Vec<Value> {
        self.api("/api/v1/alerts")["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The active alerts named `name` in state `state`.
    fn alerts_in(&self, name: &str, state: &str) -> Vec<Value> {
        self.alerts()
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == name && a["state"] == state)
            .collect()
    }

    /// Every alerting rule: name, state, health, last error.
    fn rules(&self) -> Vec<Value> {
        self.api("/api/v1/rules?type=alert")["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// What Prometheus holds now, for a failure message.
    fn report(&self) -> String {
        let alerts: Vec<String> = self
            .alerts()
            .iter()
            .map(|a| format!("  {} {} value={}", a["state"], a["labels"], a["value"]))
            .collect();
        let rules: Vec<String> = self
            .rules()
            .iter()
            .map(|r| {
                format!(
                    "  {} state={} health={} lastError={} lastEvaluation={}",
                    r["name"], r["state"], r["health"], r["lastError"], r["lastEvaluation"]
                )
            })
            .collect();
        let targets = self.api("/api/v1/targets")["activeTargets"].clone();
        let targets: Vec<String> = targets
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                format!(
                    "  {} health={} lastError={}",
                    t["scrapeUrl"], t["health"], t["lastError"]
                )
            })
            .collect();
        format!(
            "active alerts:\n{}\nrules:\n{}\ntargets:\n{}\nprometheus log:\n{}",
            alerts.join("\n"),
            rules.join("\n"),
            targets.join("\n"),
            self.log()
        )
    }

    /// Polls until `check` passes; on time-out panics with what `check` saw last,
    /// Prometheus's state and `context`.
    fn eventually(
        &self,
        what: &str,
        context: &dyn Fn() -> String,
        mut check: impl FnMut() -> Result<(), String>,
    ) {
        let deadline = Instant::now() + FIRE;
        loop {
            match check() {
                Ok(()) => return,
                Err(got) if Instant::now() > deadline => panic!(
                    "timed out after {FIRE:?} waiting for {what}\nlast seen: {got}\n{}\n{}",
                    self.report(),
                    context()
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// Waits until `alert` fires; returns its alerts.
    fn wait_firing(&self, alert: &str, context: &dyn Fn() -> String) -> Vec<Value> {
        let mut firing = Vec::new();
        self.eventually(&format!("{alert} to fire"), context, || {
            firing = self.alerts_in(alert, "firing");
            if firing.is_empty() {
                Err(Value::Array(self.alerts()).to_string())
            } else {
                Ok(())
            }
        });
        firing
    }

    /// Asserts every `<alert>Broken` copy of `alerts` evaluates without error and is
    /// inactive, and the real rules evaluate without error.
    fn assert_broken_copies_silent(&self, alerts: &[&str]) {
        let rules = self.rules();
        for rule in &rules {
            assert_eq!(
                rule["health"],
                "ok",
                "rule {} fails to evaluate\n{}",
                rule["name"],
                self.report()
            );
        }
        for alert in alerts {
            let copy = format!("{alert}Broken");
            let rule = rules
                .iter()
                .find(|r| r["name"] == copy.as_str())
                .unwrap_or_else(|| panic!("rule {copy} not loaded\n{}", self.report()));
            assert_eq!(
                rule["state"],
                "inactive",
                "{copy}, a misspelled copy of {alert}, should never fire: these checks would \
                 not notice a broken expression\n{}",
                self.report()
            );
        }
    }

    /// Waits until Prometheus has scraped every target and evaluated the rules, then
    /// asserts that nothing is pending or firing.
    fn wait_quiet_start(&self, targets: usize, context: &dyn Fn() -> String) {
        self.eventually("the first scrapes and evaluations", context, || {
            let up = self.query(r#"up{job="weir"} == 1"#);
            let ready = self.query("weir_ready == 1");
            let evaluated = self.rules().iter().all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            });
            if up.len() == targets && ready.len() == targets && evaluated {
                Ok(())
            } else {
                Err(format!(
                    "up: {}, weir_ready: {}",
                    Value::Array(up),
                    Value::Array(ready)
                ))
            }
        });
        let active = self.alerts();
        assert!(
            active.is_empty(),
            "alerts active before anything happened: {active:#?}\n{}\n{}",
            self.report(),
            context()
        );
    }
}

/// The last lines of the log of the Prometheus in `dir`.
fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    tail(&text, 40)
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// weir's log and metrics, for a failure message.
fn weir_context(weir: &Weir, ops: &str) -> String {
    let metrics = if std::net::TcpStream::connect(ops).is_ok() {
        http_get(ops, "/metrics").1
    } else {
        "(no answer)".to_owned()
    };
    let metrics: Vec<&str> = metrics.lines().filter(|l| !l.starts_with('#')).collect();
    format!(
        "weir /metrics:\n{}\nweir log:\n{}",
        metrics
            .iter()
            .filter(|l| !l.contains("_bucket"))
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
        tail(&weir.log_text(), 40)
    )
}

/// The dashboard's queries, with Grafana's variables replaced: the built-in
/// intervals by `1m`, a template variable by `.*` (a regex matching every value).
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("deploy/grafana/dashboards/weir.json"))
        .expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let variables: Vec<String> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str() else {
                continue;
            };
            let mut expr = expr.to_owned();
            for builtin in ["__rate_interval", "__interval", "__range"] {
                expr = expr
                    .replace(&format!("${{{builtin}}}"), "1m")
                    .replace(&format!("${builtin}"), "1m");
            }
            for variable in &variables {
                expr = expr
                    .replace(&format!("${{{variable}}}"), ".*")
                    .replace(&format!("${variable}"), ".*");
            }
            assert!(!expr.contains('$'), "an unknown variable in {expr}");
            let name = format!("{} / {}", panel["title"], target["refId"]);
            queries.push((name, expr));
        }
    }
    assert!(!queries.is_empty(), "the dashboard has no queries");
    queries
}

// ------------------------------------------------------------------ the tests

/// Every alert of deploy/alerts.yml is covered by deploy/alerts.test.yml: the unit
/// tests pass, and fail once the alert's expression is broken. The two expressions
/// fixed in issue 13 fail them too, as they were.
#[test]
fn promtool_tests_catch_broken_expressions() {
    let (ok, text) = promtool(&["check", "rules", "deploy/alerts.yml"]);
    assert!(ok, "promtool check rules deploy/alerts.yml:\n{text}");
    let (ok, text) = promtool(&["test", "rules", "deploy/alerts.test.yml"]);
    assert!(ok, "promtool test rules deploy/alerts.test.yml:\n{text}");

    let tests = std::fs::read_to_string(root().join("deploy/alerts.test.yml")).unwrap();
    let fails_with = |alert: &str, expr: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alerts.yml"), rules_with(alert, expr)).unwrap();
        std::fs::write(dir.path().join("alerts.test.yml"), &tests).unwrap();
        let (ok, text) = promtool(&[
            "test",
            "rules",
            dir.path().join("alerts.test.yml").to_str().unwrap(),
        ]);
        assert!(
            !ok && text.contains(&format!("alertname: {alert}")),
            "deploy/alerts.test.yml still passes with {alert} as\n  {expr}\n\
             so it does not test that alert\n{text}"
        );
    };
    let mut doc = alert_rules();
    let alerts: Vec<(String, String)> = rules_mut(&mut doc)
        .map(|r| {
            (
                r["alert"].as_str().expect("alert").to_owned(),
                r["expr"].as_str().expect("expr").to_owned(),
            )
        })
        .collect();
    assert_eq!(alerts.len(), 6, "{alerts:?}");
    for (alert, expr) in &alerts {
        fails_with(alert, &broken(expr));
    }
    // The expressions before issue 13: the lag of N processes counted N times, and a
    // burst of dead letters that creates its series never seen.
    fails_with(
        "WeirConsumerLagGrowing",
        "sum by (pipeline) (weir_consumer_lag) > 1000\n\
         and sum by (pipeline) (delta(weir_consumer_lag[10m])) > 0\n",
    );
    fails_with(
        "WeirDeadLettersGrowing",
        "sum by (pipeline, reason) (increase(weir_dlq_records_total[10m])) > 10",
    );
}

/// A plugin that rejects everything, behind a circuit: about one window of records
/// is dead-lettered, the circuit opens, and the 2,000 records produced wait.
#[test]
fn a_dlq_flood_fires_dead_letters_circuit_and_lag_and_the_dashboard_has_data() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let policy = r#"circuit = { failure-ratio = 0.5, window = 20, cooldown = "10m" }"#;
    let (text, input, ..) = chaos_config(brokers, 1, r#"mode = "invalid""#, policy);
    let config = write_config(dir.path(), &text);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    let ops = weir.ops_address();
    let context = || weir_context(&weir, &ops);
    let prometheus = Prometheus::start(&[&ops], &test_rules());
    prometheus.wait_quiet_start(1, &context);

    let values: Vec<String> = (0..2000).map(|i| format!("msg-{i}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    produce(brokers, &input, &commands(&values));

    let dead = prometheus.wait_firing("WeirDeadLettersGrowing", &context);
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0]["labels"]["pipeline"], "chaos", "{dead:#?}");
    assert_eq!(dead[0]["labels"]["reason"], "invalid", "{dead:#?}");
    let circuit = prometheus.wait_firing("WeirCircuitOpen", &context);
    assert_eq!(circuit[0]["labels"]["pipeline"], "chaos", "{circuit:#?}");
    let lag = prometheus.wait_firing("WeirConsumerLagGrowing", &context);
    assert_eq!(lag[0]["labels"]["pipeline"], "chaos", "{lag:#?}");
    // All three at once, while their broken copies, evaluated on the same samples,
    // stay silent.
    for alert in [
        "WeirDeadLettersGrowing",
        "WeirCircuitOpen",
        "WeirConsumerLagGrowing",
    ] {
        assert!(
            !prometheus.alerts_in(alert, "firing").is_empty(),
            "{alert} stopped firing\n{}",
            prometheus.report()
        );
    }
    prometheus.assert_broken_copies_silent(&[
        "WeirDeadLettersGrowing",
        "WeirCircuitOpen",
        "WeirConsumerLagGrowing",
        "WeirNotReady",
    ]);
    assert!(
        prometheus.alerts_in("WeirNotReady", "firing").is_empty(),
        "an open circuit is no readiness problem\n{}",
        prometheus.report()
    );

    // Every panel of the dashboard has something to show.
    let queries = dashboard_queries();
    prometheus.eventually("every dashboard query to return data", &context, || {
        let empty: Vec<String> = queries
            .iter()
            .filter(|(_, expr)| prometheus.query(expr).is_empty())
            .map(|(name, expr)| format!("\n  {name}: {expr}"))
            .collect();
        if empty.is_empty() {
            Ok(())
        } else {
            Err(format!("no data for:{}", empty.concat()))
        }
    });
    assert_eq!(weir.terminate(), Some(0));
}

/// A frozen broker makes weir not ready; a dead weir cannot be scraped. Both fire
/// WeirNotReady, which resolves when the broker is back.
#[test]
fn a_broker_outage_and_a_dead_weir_fire_not_ready() {
    let broker = start_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text, ..) = chaos_config(&broker.address, 1, "", "");
    let config = write_config(dir.path(), &text);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    let ops = weir.ops_address();
    let context = || weir_context(&weir, &ops);
    let prometheus = Prometheus::start(&[&ops], &test_rules());
    prometheus.wait_quiet_start(1, &context);

    broker.stop();
    let firing = prometheus.wait_firing("WeirNotReady", &context);
    assert_eq!(firing.len(), 1, "{firing:#?}");
    assert_eq!(firing[0]["labels"]["instance"], ops.as_str(), "{firing:#?}");
    assert_eq!(
        prometheus.query(r#"up{job="weir"} == 1"#).len(),
        1,
        "weir is scraped all along: weir_ready fired it"
    );
    prometheus.assert_broken_copies_silent(&["WeirNotReady"]);

    broker.resume();
    prometheus.eventually("WeirNotReady to resolve", &context, || {
        let active: Vec<Value> = prometheus
            .alerts()
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == "WeirNotReady")
            .collect();
        if active.is_empty() {
            Ok(())
        } else {
            Err(Value::Array(active).to_string())
        }
    });

    weir.kill();
    let firing = prometheus.wait_firing("WeirNotReady", &|| "weir was killed".to_owned());
    assert_eq!(firing[0]["labels"]["instance"], ops.as_str(), "{firing:#?}");
    assert_eq!(
        prometheus.query(r#"up{job="weir"} == 0"#).len(),
        1,
        "the scrape failure fired it\n{}",
        prometheus.report()
    );
}
