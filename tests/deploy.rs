//! The deployment files, checked at the YAML level (no Docker engine runs here):
//! everything docker-compose mounts or builds from exists, the Dockerfile builds the
//! way the README says, and the Prometheus config and alert rules parse and only use
//! metrics weir exports.

mod common;

use std::collections::HashSet;

use common::root;
use yaml_rust2::{Yaml, YamlLoader};

fn load(path: &str) -> Yaml {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{path} is empty"))
}

fn strings(yaml: &Yaml) -> Vec<String> {
    yaml.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The metric names weir exports (docs/reference.md), read from a live registry
/// through the same handles and verbs the record path uses, so this list cannot
/// drift from the code.
fn exported_metrics() -> HashSet<String> {
    use weir::outcome::DlqReason;
    let metrics = weir::telemetry::Metrics::new();
    let p = metrics.pipeline("p");
    p.consumed();
    metrics.stage("p", "x").call(None, 0.1);
    metrics.route("p", "t").delivered();
    metrics.retries("p").retried();
    metrics.dead_letters("p").dead_lettered(DlqReason::Invalid);
    p.lag("t", 0, 0);
    p.latency().since(Some(0));
    p.circuit(false);
    // State and timers (a stateful slot).
    p.restored(1, 0.1);
    p.timer_fired(0.1);
    p.timer_done(false);
    let _slot = metrics.slot("p", "0");
    let transactions = metrics.transactions("p");
    transactions.committed();
    transactions.ended(0.1);
    metrics.set_ready(true);
    metrics.plugin_reloaded("x", true);
    metrics
        .render()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|name| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .fold(name.to_owned(), |n, suffix| {
                    n.strip_suffix(suffix).map_or(n.clone(), str::to_owned)
                })
        })
        .collect()
}

#[test]
fn compose_mounts_and_builds_only_files_that_exist() {
    let compose = load("docker-compose.yml");
    let services = compose["services"].as_hash().expect("services");
    let names: HashSet<&str> = services.keys().filter_map(Yaml::as_str).collect();
    for wanted in [
        "redpanda",
        "console",
        "weir",
        "prometheus",
        "grafana",
        "jaeger",
    ] {
        assert!(
            names.contains(wanted),
            "service {wanted} missing: {names:?}"
        );
    }
    for (name, service) in services {
        for volume in strings(&service["volumes"]) {
            let host = volume.split(':').next().unwrap();
            if host.starts_with("./") {
                assert!(
                    root().join(host).exists(),
                    "{name:?} mounts {host}, which does not exist"
                );
            }
        }
    }
    let build = &compose["services"]["weir"]["build"];
    let context = build["context"]
        .as_str()
        .expect("weir builds from a context");
    let dockerfile = root()
        .join(context)
        .join(build["dockerfile"].as_str().unwrap_or("Dockerfile"));
    assert!(dockerfile.exists(), "{} missing", dockerfile.display());
    let redpanda = strings(&compose["services"]["redpanda"]["command"]).join(" ");
    assert!(
        redpanda.contains("--schema-registry-addr"),
        "schema registry enabled"
    );
    assert!(redpanda.contains("--pandaproxy-addr"), "HTTP proxy enabled");
    assert!(
        redpanda.contains("--memory=1G") && redpanda.contains("--smp=1"),
        "sized for a laptop"
    );
    let weir_env = &compose["services"]["weir"]["environment"];
    assert_eq!(weir_env["KAFKA_BROKERS"].as_str(), Some("redpanda:9092"));
}

/// The compose file's Jaeger takes OTLP where weir sends it, and weir's tracing,
/// resolved by weir's own rules from the shipped pipelines.toml and the service's
/// environment, is on and pointed at it.
#[test]
fn compose_traces_weir_into_jaeger() {
    use weir::telemetry::trace::Settings;
    use weir::telemetry::trace::settings::Protocol;

    let compose = load("docker-compose.yml");
    let jaeger = &compose["services"]["jaeger"];
    let image = jaeger["image"].as_str().expect("jaeger has an image");
    // Jaeger v2, the release of the v1.75.0 that tests/jaeger/go.mod pins for the
    // tracing tests (v1.75.0 and v2.12.0 were released together).
    assert_eq!(image, "jaegertracing/jaeger:2.12.0");
    let go_mod = std::fs::read_to_string(root().join("tests/jaeger/go.mod")).unwrap();
    assert!(
        go_mod.contains("github.com/jaegertracing/jaeger v1.75.0"),
        "tests/jaeger/go.mod moved off v1.75.0: move the compose image with it"
    );
    let ports = strings(&jaeger["ports"]);
    for port in ["16686:16686", "4317:4317", "4318:4318"] {
        assert!(
            ports.iter().any(|p| p == port),
            "jaeger does not publish {port}: {ports:?}"
        );
    }

    let weir = &compose["services"]["weir"];
    let env = &weir["environment"];
    assert_eq!(
        env["OTEL_EXPORTER_OTLP_ENDPOINT"].as_str(),
        Some("http://jaeger:4318")
    );
    assert!(
        env["OTEL_SERVICE_NAME"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "weir names its service"
    );
    assert!(
        weir["depends_on"]["jaeger"].as_hash().is_some(),
        "weir starts after jaeger"
    );
    let config = weir::config::WeirConfig::load(&root().join("pipelines.toml"))
        .unwrap_or_else(|e| panic!("pipelines.toml: {e}"));
    let settings = Settings::resolve(&config.tracing, |name| {
        env[name].as_str().map(str::to_owned)
    })
    .unwrap_or_else(|e| panic!("weir's tracing settings in docker-compose.yml: {e}"))
    .expect("tracing is on in docker-compose.yml");
    assert_eq!(settings.endpoint, "http://jaeger:4318/v1/traces");
    assert_eq!(settings.protocol, Protocol::HttpProtobuf);
    assert_eq!(
        Some(settings.service_name.as_str()),
        env["OTEL_SERVICE_NAME"].as_str()
    );
}

#[test]
fn dockerfile_builds_the_way_the_readme_says() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("### Build from source")
        .nth(1)
        .expect("README has a 'Build from source' section");
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(!commands.is_empty());
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let runs: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("RUN "))
        .collect();
    for command in &commands {
        assert!(
            runs.iter().any(|r| r.trim() == *command),
            "Dockerfile does not RUN {command:?} (RUN lines: {runs:?})"
        );
    }
    // The image runs the config it copies, with plugins where that config expects them.
    let pipelines = std::fs::read_to_string(root().join("pipelines.toml")).unwrap();
    for plugin in ["task_validator", "reminder_deriver", "ui_projector"] {
        let path = format!("target/wasm32-wasip2/release/{plugin}.wasm");
        assert!(pipelines.contains(&path), "pipelines.toml expects {path}");
        assert!(
            dockerfile.contains(&format!("/src/{path}")),
            "Dockerfile copies {path}"
        );
    }
    assert!(dockerfile.contains("COPY pipelines.toml /app/pipelines.toml"));
}

#[test]
fn prometheus_scrapes_weir_and_loads_the_mounted_rules() {
    let prometheus = load("deploy/prometheus.yml");
    let targets = strings(&prometheus["scrape_configs"][0]["static_configs"][0]["targets"]);
    assert_eq!(targets, ["weir:9464"]);
    let compose = load("docker-compose.yml");
    let mounts = strings(&compose["services"]["prometheus"]["volumes"]).join(" ");
    for rule_file in strings(&prometheus["rule_files"]) {
        assert!(
            mounts.contains(&format!(":{rule_file}")),
            "{rule_file} is not mounted: {mounts}"
        );
    }
}

#[test]
fn alert_rules_parse_and_use_exported_metrics() {
    let alerts = load("deploy/alerts.yml");
    let exported = exported_metrics();
    assert!(
        exported.contains("weir_consumer_lag") && exported.contains("weir_ready"),
        "{exported:?}"
    );
    let mut names = HashSet::new();
    for group in alerts["groups"].as_vec().expect("groups") {
        for rule in group["rules"].as_vec().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name");
            names.insert(name.to_owned());
            let expr = rule["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: expr"));
            assert!(
                rule["labels"]["severity"].as_str().is_some(),
                "{name}: severity"
            );
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{name}: summary"
            );
            for word in expr.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                // A histogram's series: `_bucket`, `_sum`, `_count`.
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .fold(word, |w, s| w.strip_suffix(s).unwrap_or(w));
                if base.starts_with("weir_") {
                    assert!(
                        exported.contains(base),
                        "{name} uses {word}, which weir does not export"
                    );
                }
            }
        }
    }
    for wanted in [
        "WeirConsumerLagGrowing",
        "WeirDeadLettersGrowing",
        "WeirCircuitOpen",
        "WeirNotReady",
        "WeirTracesDropped",
    ] {
        assert!(names.contains(wanted), "alert {wanted} missing");
    }
}

#[test]
fn the_grafana_dashboard_charts_exported_metrics() {
    let text = std::fs::read_to_string(root().join("deploy/grafana/dashboards/weir.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let exported = exported_metrics();
    let mut charted = HashSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .fold(word.to_owned(), |w, s| {
                        w.strip_suffix(s).map_or(w.clone(), str::to_owned)
                    });
                if base.starts_with("weir_") {
                    assert!(exported.contains(&base), "panel uses {word}");
                    charted.insert(base);
                }
            }
        }
    }
    for wanted in [
        "weir_records_consumed_total",
        "weir_plugin_call_duration_seconds",
        "weir_consumer_lag",
        "weir_dlq_records_total",
        "weir_circuit_open",
        "weir_trace_spans_total",
    ] {
        assert!(
            charted.contains(wanted),
            "the dashboard does not chart {wanted}"
        );
    }
    let provider = load("deploy/grafana/provisioning/dashboards/weir.yml");
    assert_eq!(
        provider["providers"][0]["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards")
    );
    let datasource = load("deploy/grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(
        datasource["datasources"][0]["url"].as_str(),
        Some("http://prometheus:9090")
    );
}
