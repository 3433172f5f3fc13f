//! Jaeger's config for the tracing tests (tests/common/jaeger.rs) and the benchmark
//! (bench/src/collector.rs), which both include this file: config.yaml (which says
//! why each part is there) with its ports and store size filled in.

/// The ports of one Jaeger, all on 127.0.0.1.
pub struct Ports {
    pub otlp_grpc: u16,
    pub otlp_http: u16,
    pub query: u16,
    pub query_grpc: u16,
    pub health: u16,
    pub metrics: u16,
}

/// config.yaml with `ports` and a memory store of at most `max_traces` traces.
pub fn config_yaml(ports: &Ports, max_traces: usize) -> String {
    [
        ("@OTLP_GRPC@", ports.otlp_grpc),
        ("@OTLP_HTTP@", ports.otlp_http),
        ("@QUERY@", ports.query),
        ("@QUERY_GRPC@", ports.query_grpc),
        ("@HEALTH@", ports.health),
        ("@METRICS@", ports.metrics),
    ]
    .iter()
    .fold(
        include_str!("config.yaml").replace("@MAX_TRACES@", &max_traces.to_string()),
        |text, (name, port)| text.replace(name, &port.to_string()),
    )
}
