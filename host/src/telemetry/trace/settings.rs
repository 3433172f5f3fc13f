//! What `[tracing]` and the standard `OTEL_*` variables ask for, resolved once at
//! start-up into [`Settings`] (or `None`: tracing is off). A key set in
//! `pipelines.toml` wins over its variable; a variable fills in what the file
//! leaves out; then the OpenTelemetry defaults apply. Errors name the key or the
//! variable and the values it takes.

use std::time::Duration;

use crate::config::TracingConfig;

/// How spans reach the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (usually port 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (usually port 4318, path `/v1/traces`).
    HttpProtobuf,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Which records start a sampled trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// The share of new traces (records without a `traceparent`) sampled.
    pub ratio: f64,
    /// A record with a `traceparent` keeps its parent's decision (else it is
    /// decided by `ratio` like a new one).
    pub parent_based: bool,
}

/// Tracing as resolved: on, with these settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The URL spans are sent to: for HTTP, with `/v1/traces`.
    pub endpoint: String,
    pub protocol: Protocol,
    pub sampling: Sampling,
    pub service_name: String,
    /// Finished spans waiting for export at most.
    pub queue: usize,
    /// How long one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`, default 10 s).
    pub timeout: Duration,
}

const DEFAULT_QUEUE: usize = 4096;

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what}: {message}")]
pub struct SettingsError {
    /// The key (`[tracing] protocol`) or the variable (`OTEL_TRACES_SAMPLER`).
    pub what: String,
    pub message: String,
}

fn error(what: &str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        what: what.to_owned(),
        message: message.into(),
    }
}

impl Settings {
    /// Resolves `config` against this process's environment; the error names the
    /// key or variable.
    pub fn of_process(config: &TracingConfig) -> anyhow::Result<Option<Settings>> {
        Settings::resolve(config, |name| std::env::var(name).ok())
            .map_err(|e| anyhow::anyhow!("tracing: {e}"))
    }

    /// One line on what tracing does, for `weir check` and the start-up log.
    pub fn describe(settings: Option<&Settings>) -> String {
        match settings {
            None => {
                "tracing off (set [tracing] endpoint or OTEL_EXPORTER_OTLP_ENDPOINT to turn it on)"
                    .to_owned()
            }
            Some(s) => format!(
                "tracing on: {} to {}, service {:?}, {} of new traces sampled{}",
                s.protocol.as_str(),
                s.endpoint,
                s.service_name,
                s.sampling.ratio,
                if s.sampling.parent_based {
                    ", a traceparent's decision kept"
                } else {
                    ""
                }
            ),
        }
    }

    /// Resolves `config` against the environment `env` (a lookup, so that tests
    /// need not set variables). `Ok(None)`: tracing is off.
    pub fn resolve(
        config: &TracingConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, SettingsError> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match var("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(error(
                    "OTEL_TRACES_EXPORTER",
                    format!("{other:?} is not an exporter weir has; use \"otlp\" or \"none\""),
                ));
            }
        }
        let protocol = match config.protocol.as_ref() {
            Some(p) => protocol(&p.0, "[tracing] protocol")?,
            None => match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
                Some(p) => protocol(&p, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")?,
                None => match var("OTEL_EXPORTER_OTLP_PROTOCOL") {
                    Some(p) => protocol(&p, "OTEL_EXPORTER_OTLP_PROTOCOL")?,
                    None => Protocol::HttpProtobuf,
                },
            },
        };
        // A signal's own endpoint is used as it is; a base endpoint gets the
        // signal's path over HTTP.
        let (endpoint, what) = if let Some(base) = config.endpoint.as_ref() {
            (signal_url(&base.0, protocol), "[tracing] endpoint")
        } else if let Some(url) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            (url.trim().to_owned(), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        } else if let Some(base) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            (signal_url(&base, protocol), "OTEL_EXPORTER_OTLP_ENDPOINT")
        } else {
            return Ok(None);
        };
        check_url(&endpoint, what)?;
        let sampling = match config.sample_ratio {
            Some(ratio) => Sampling {
                ratio: check_ratio(ratio, "[tracing] sample-ratio")?,
                parent_based: true,
            },
            None => sampler(var("OTEL_TRACES_SAMPLER"), var("OTEL_TRACES_SAMPLER_ARG"))?,
        };
        let service_name = match config.service_name.as_ref() {
            Some(name) => name.0.clone(),
            None => var("OTEL_SERVICE_NAME")
                .or_else(|| {
                    var("OTEL_RESOURCE_ATTRIBUTES").and_then(|attrs| {
                        attrs.split(',').find_map(|kv| {
                            let (k, v) = kv.split_once('=')?;
                            (k.trim() == "service.name").then(|| v.trim().to_owned())
                        })
                    })
                })
                .unwrap_or_else(|| "weir".to_owned()),
        };
        let queue = match config.queue {
            Some(0) => return Err(error("[tracing] queue", "must be at least 1")),
            Some(n) => n,
            None => DEFAULT_QUEUE,
        };
        let timeout = match var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", v))
            .or_else(|| {
                var("OTEL_EXPORTER_OTLP_TIMEOUT").map(|v| ("OTEL_EXPORTER_OTLP_TIMEOUT", v))
            }) {
            Some((name, ms)) => Duration::from_millis(
                ms.trim()
                    .parse()
                    .map_err(|_| error(name, format!("{ms:?} is not a number of milliseconds")))?,
            ),
            None => Duration::from_secs(10),
        };
        Ok(Some(Settings {
            endpoint,
            protocol,
            sampling,
            service_name,
            queue,
            timeout,
        }))
    }
}

fn protocol(value: &str, what: &str) -> Result<Protocol, SettingsError> {
    match value.trim() {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "http/json" => Err(error(
            what,
            "\"http/json\" is not supported; use \"http/protobuf\" (port 4318) or \"grpc\" (port 4317)",
        )),
        other => Err(error(
            what,
            format!("{other:?} is not an OTLP protocol; use \"http/protobuf\" or \"grpc\""),
        )),
    }
}

/// The traces URL of a base endpoint: over HTTP, `<base>/v1/traces`.
fn signal_url(base: &str, protocol: Protocol) -> String {
    let base = base.trim();
    match protocol {
        Protocol::Grpc => base.to_owned(),
        Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
    }
}

fn check_url(url: &str, what: &str) -> Result<(), SettingsError> {
    if url.starts_with("https://") {
        return Err(error(
            what,
            format!(
                "{url}: weir exports over plain http only (no TLS in its exporter); send to a collector on the same host or network (http://...) and let it forward over TLS"
            ),
        ));
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(error(
            what,
            format!("{url:?} is not an http:// URL (write e.g. http://127.0.0.1:4318)"),
        ));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(error(what, format!("{url:?} names no host")));
    }
    Ok(())
}

fn check_ratio(ratio: f64, what: &str) -> Result<f64, SettingsError> {
    if (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err(error(
            what,
            format!("{ratio} is not a ratio from 0.0 to 1.0"),
        ))
    }
}

/// `OTEL_TRACES_SAMPLER` and its argument, as the OpenTelemetry spec defines them.
fn sampler(name: Option<String>, arg: Option<String>) -> Result<Sampling, SettingsError> {
    let ratio = || -> Result<f64, SettingsError> {
        match &arg {
            None => Ok(1.0),
            Some(a) => {
                let r: f64 = a.trim().parse().map_err(|_| {
                    error(
                        "OTEL_TRACES_SAMPLER_ARG",
                        format!("{a:?} is not a ratio from 0.0 to 1.0"),
                    )
                })?;
                check_ratio(r, "OTEL_TRACES_SAMPLER_ARG")
            }
        }
    };
    let (ratio, parent_based) = match name.as_deref().map(str::trim) {
        None | Some("parentbased_always_on") => (1.0, true),
        Some("parentbased_always_off") => (0.0, true),
        Some("parentbased_traceidratio") => (ratio()?, true),
        Some("always_on") => (1.0, false),
        Some("always_off") => (0.0, false),
        Some("traceidratio") => (ratio()?, false),
        Some(other) => {
            return Err(error(
                "OTEL_TRACES_SAMPLER",
                format!(
                    "{other:?} is not a sampler weir has; use parentbased_always_on (the default), parentbased_traceidratio, parentbased_always_off, traceidratio, always_on or always_off"
                ),
            ));
        }
    };
    Ok(Sampling {
        ratio,
        parent_based,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::EnvString;

    fn resolve(
        config: &TracingConfig,
        vars: &[(&str, &str)],
    ) -> Result<Option<Settings>, SettingsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::resolve(config, |name| vars.get(name).cloned())
    }

    #[test]
    fn off_without_an_endpoint() {
        assert_eq!(resolve(&TracingConfig::default(), &[]), Ok(None));
        assert_eq!(
            resolve(&TracingConfig::default(), &[("OTEL_SERVICE_NAME", "x")]),
            Ok(None)
        );
    }

    #[test]
    fn the_environment_alone_turns_it_on_with_the_spec_defaults() {
        let s = resolve(
            &TracingConfig::default(),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(
            s.sampling,
            Sampling {
                ratio: 1.0,
                parent_based: true
            }
        );
        assert_eq!(s.service_name, "weir");
        let g = resolve(
            &TracingConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,service.name=todo-weir",
                ),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(g.endpoint, "http://collector:4317");
        assert_eq!(g.protocol, Protocol::Grpc);
        assert_eq!(g.sampling.ratio, 0.01);
        assert_eq!(g.service_name, "todo-weir");
    }

    #[test]
    fn the_file_wins_over_the_environment() {
        let config = TracingConfig {
            endpoint: Some(EnvString("http://file:4317".into())),
            protocol: Some(EnvString("grpc".into())),
            sample_ratio: Some(0.5),
            service_name: Some(EnvString("from-file".into())),
            queue: Some(10),
        };
        let s = resolve(
            &config,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_TRACES_SAMPLER", "always_off"),
                ("OTEL_SERVICE_NAME", "from-env"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://file:4317");
        assert_eq!(s.sampling.ratio, 0.5);
        assert!(s.sampling.parent_based);
        assert_eq!(s.service_name, "from-file");
        assert_eq!(s.queue, 10);
    }

    #[test]
    fn a_signal_endpoint_is_used_as_it_is_and_disabling_wins() {
        let s = resolve(
            &TracingConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://c:4318/custom");
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(
                resolve(
                    &TracingConfig::default(),
                    &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), off]
                ),
                Ok(None)
            );
        }
    }

    #[test]
    fn bad_settings_name_the_key_or_variable_and_the_fix() {
        let endpoint = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
        // (variables, the one named, a word of the fix)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (
                &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "http/protobuf",
            ),
            (
                &[("OTEL_TRACES_SAMPLER", "jaeger_remote")],
                "OTEL_TRACES_SAMPLER",
                "parentbased_traceidratio",
            ),
            (
                &[
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "2"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
                "0.0 to 1.0",
            ),
            (
                &[("OTEL_TRACES_EXPORTER", "zipkin")],
                "OTEL_TRACES_EXPORTER",
                "otlp",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                "milliseconds",
            ),
        ];
        for (vars, what, fix) in cases {
            let mut all = endpoint.to_vec();
            all.extend_from_slice(vars);
            let e = resolve(&TracingConfig::default(), &all).unwrap_err();
            assert_eq!(e.what, *what);
            assert!(e.message.contains(fix), "{e}");
        }
        let tls = resolve(
            &TracingConfig::default(),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")],
        )
        .unwrap_err();
        assert!(tls.message.contains("plain http"), "{tls}");
        let ratio = TracingConfig {
            endpoint: Some(EnvString("http://c:4318".into())),
            sample_ratio: Some(1.5),
            ..TracingConfig::default()
        };
        assert_eq!(
            resolve(&ratio, &[]).unwrap_err().what,
            "[tracing] sample-ratio"
        );
    }
}
