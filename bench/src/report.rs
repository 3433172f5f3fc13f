//! The Markdown report: machine, workload, one row per system, and the ratios.

use std::fmt::Write as _;
use std::time::Duration;

use crate::collector::SpanCounts;
use crate::driver::RunArgs;
use crate::workload::Workload;

pub struct ThroughputResult {
    pub events_per_second: f64,
    pub cpu_per_100k: Duration,
    pub peak_rss: u64,
    /// A traced system's spans (issue 19).
    pub tracing: Option<TracingResult>,
}

/// What became of a traced system's spans in one throughput run.
pub struct TracingResult {
    /// weir's `weir_trace_spans_total{outcome}` once its export settled.
    pub spans: SpanCounts,
    /// CPU Jaeger spent from the system's start until then, per 100k events.
    pub collector_cpu_per_100k: Option<Duration>,
    /// Spans Jaeger's receivers took in that time.
    pub collector_accepted: Option<u64>,
}

pub struct LatencyResult {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub samples: usize,
    /// Events per second from the first paced send to the last output.
    pub achieved: f64,
    /// Peak RSS over the whole latency run (steady load, not a backlog).
    pub peak_rss: u64,
}

struct Row {
    label: String,
    runs: Vec<ThroughputResult>,
    latency: Option<LatencyResult>,
}

pub struct Report {
    header: String,
    /// Events in the workload.
    events: usize,
    notes: Vec<String>,
    rows: Vec<Row>,
    rate: u64,
    /// (system, baseline) pairs whose throughput and CPU per event are compared.
    comparisons: Vec<(String, String)>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']))
        })
        .unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|m| m.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    format!(
        "{cores} cores ({model}), {:.1} GiB RAM",
        memory_kib as f64 / (1024.0 * 1024.0)
    )
}

impl Report {
    /// `stateful`: weir's reminder-deriver keeps state (issue 18).
    pub fn new(args: &RunArgs, workload: &Workload, stateful: bool) -> Report {
        let header = format!(
            "Machine: {}. Broker: {}.\n\nWorkload: {} task events ({} invalid, {:.1}%), mean value {} bytes, {} users as keys, 6 partitions, event times from {} on. weir's reminder-deriver: {}. Throughput: {}. Date: {}.\n",
            machine(),
            match &args.broker_name {
                Some(name) => format!("{name} at {}", args.brokers),
                None => args.brokers.clone(),
            },
            workload.events.len(),
            workload.invalid(),
            100.0 * workload.invalid() as f64 / workload.events.len().max(1) as f64,
            workload.mean_size(),
            args.users,
            workload.start.format("%Y-%m-%d %H:%M UTC"),
            if stateful {
                "stateful (none of its timers is due during the run)"
            } else {
                "stateless"
            },
            match args.runs {
                0 => "not measured in this run (--runs 0)".to_owned(),
                n => format!("median of {n} runs on a preloaded input"),
            },
            chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
                .format("%Y-%m-%d %H:%M UTC"),
        );
        Report {
            header,
            events: workload.events.len(),
            notes: Vec::new(),
            rows: Vec::new(),
            rate: 0,
            comparisons: Vec::new(),
        }
    }

    /// A paragraph after the header.
    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    /// Compares `label`'s median throughput and CPU per event with `baseline`'s.
    pub fn compare(&mut self, label: String, baseline: String) {
        self.comparisons.push((label, baseline));
    }

    fn row(&mut self, label: String) -> &mut Row {
        if let Some(i) = self.rows.iter().position(|r| r.label == label) {
            return &mut self.rows[i];
        }
        self.rows.push(Row {
            label,
            runs: Vec::new(),
            latency: None,
        });
        self.rows.last_mut().expect("just pushed")
    }

    pub fn throughput(&mut self, label: String, runs: Vec<ThroughputResult>) {
        self.row(label).runs = runs;
    }

    pub fn latency(&mut self, label: String, result: LatencyResult) {
        self.row(label).latency = Some(result);
    }

    pub fn set_rate(&mut self, rate: u64) {
        self.rate = rate;
    }

    pub fn median_throughput(&self, label: &str) -> Option<f64> {
        let row = self.rows.iter().find(|r| r.label == label)?;
        (!row.runs.is_empty())
            .then(|| median(row.runs.iter().map(|r| r.events_per_second).collect()))
    }

    fn median_of(&self, label: &str, pick: impl Fn(&ThroughputResult) -> f64) -> Option<f64> {
        let row = self.rows.iter().find(|r| r.label == label)?;
        (!row.runs.is_empty()).then(|| median(row.runs.iter().map(&pick).collect()))
    }

    fn p99(&self, label: &str) -> Option<f64> {
        let row = self.rows.iter().find(|r| r.label == label)?;
        row.latency.as_ref().map(|l| l.p99.as_secs_f64())
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.header);
        for note in &self.notes {
            let _ = writeln!(out, "{note}\n");
        }
        let _ = writeln!(
            out,
            "Latency: end to end (driver `send` to output at a tail consumer) at a fixed offered load of {} events/s, after a warm-up.\n",
            self.rate
        );
        let _ = writeln!(
            out,
            "| system | events/s (median) | runs | p50 ms | p99 ms | max ms | drained at events/s | CPU s / 100k | peak RSS MiB, backlog | peak RSS MiB, fixed load |"
        );
        let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        for row in &self.rows {
            let runs = row
                .runs
                .iter()
                .map(|r| format!("{:.0}", r.events_per_second))
                .collect::<Vec<_>>()
                .join(" / ");
            let throughput = self
                .median_throughput(&row.label)
                .map_or("-".into(), |t| format!("{t:.0}"));
            let cpu = self
                .median_of(&row.label, |r| r.cpu_per_100k.as_secs_f64())
                .map_or("-".into(), |c| format!("{c:.2}"));
            let rss = row
                .runs
                .iter()
                .map(|r| r.peak_rss)
                .max()
                .map_or("-".into(), |r| {
                    format!("{:.0}", r as f64 / (1024.0 * 1024.0))
                });
            let (p50, p99, max, achieved, steady_rss) = match &row.latency {
                Some(l) => (
                    format!("{:.1}", l.p50.as_secs_f64() * 1e3),
                    format!("{:.1}", l.p99.as_secs_f64() * 1e3),
                    format!("{:.1}", l.max.as_secs_f64() * 1e3),
                    format!("{:.0}", l.achieved),
                    format!("{:.0}", l.peak_rss as f64 / (1024.0 * 1024.0)),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                out,
                "| {} | {throughput} | {runs} | {p50} | {p99} | {max} | {achieved} | {cpu} | {rss} | {steady_rss} |",
                row.label
            );
        }
        let weir = "weir run, reminders";
        let mut ratios = Vec::new();
        for (other, what) in [
            ("passthrough (rdkafka loop)", "passthrough"),
            ("native validator+deriver", "native"),
            ("aiokafka + Pydantic", "aiokafka"),
        ] {
            if let (Some(w), Some(o)) =
                (self.median_throughput(weir), self.median_throughput(other))
                && o > 0.0
            {
                ratios.push(format!("- `{weir}`: throughput / {what}: {:.2}×", w / o));
            }
        }
        if let (Some(w), Some(p)) = (self.p99(weir), self.p99("passthrough (rdkafka loop)")) {
            ratios.push(format!(
                "- `{weir}`: p99 latency / passthrough's: {:.2}×",
                w / p
            ));
        }
        let (todo, stateless) = (
            "weir run, Todo deployment",
            "weir run, Todo deployment, stateless deriver",
        );
        if let (Some(t), Some(s)) = (
            self.median_throughput(todo),
            self.median_throughput(stateless),
        ) {
            let cpu = |label| self.median_of(label, |r| r.cpu_per_100k.as_secs_f64());
            ratios.push(format!(
                "- `{todo}` / `{stateless}`: throughput {:.2}×, CPU per event {}",
                t / s,
                match (cpu(todo), cpu(stateless)) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                    _ => "-".into(),
                }
            ));
        }
        let cpu = |label: &str| self.median_of(label, |r| r.cpu_per_100k.as_secs_f64());
        for (label, baseline) in &self.comparisons {
            if let (Some(t), Some(b)) = (
                self.median_throughput(label),
                self.median_throughput(baseline),
            ) && b > 0.0
            {
                ratios.push(format!(
                    "- `{label}` / `{baseline}`: throughput {:.3}× ({:+.1}%), CPU per event {}",
                    t / b,
                    100.0 * (t / b - 1.0),
                    match (cpu(label), cpu(baseline)) {
                        (Some(a), Some(b)) if b > 0.0 =>
                            format!("{:.3}× ({:+.1}%)", a / b, 100.0 * (a / b - 1.0)),
                        _ => "-".into(),
                    }
                ));
            }
        }
        if !ratios.is_empty() {
            let _ = writeln!(out, "\nRatios:\n\n{}", ratios.join("\n"));
        }
        self.tracing_table(&mut out);
        let samples: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| {
                r.latency
                    .as_ref()
                    .map(|l| format!("{} {}", r.label, l.samples))
            })
            .collect();
        let _ = writeln!(out, "\nLatency samples: {}.", samples.join(", "));
        out
    }

    /// The spans of the traced systems' throughput runs, when any ran.
    fn tracing_table(&self, out: &mut String) {
        let traced: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.runs.iter().any(|run| run.tracing.is_some()))
            .collect();
        if traced.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\nSpans of the throughput runs (weir's `weir_trace_spans_total{{outcome}}` once its export settled, per run; Jaeger's accepted spans and CPU over the same time):\n"
        );
        let _ = writeln!(
            out,
            "| system | exported | dropped | failed | spans per event | Jaeger accepted | Jaeger CPU s / 100k |"
        );
        let _ = writeln!(out, "|---|---|---|---|---:|---|---:|");
        for row in traced {
            let runs: Vec<&TracingResult> =
                row.runs.iter().filter_map(|r| r.tracing.as_ref()).collect();
            let join = |pick: &dyn Fn(&TracingResult) -> String| {
                runs.iter().map(|t| pick(t)).collect::<Vec<_>>().join(" / ")
            };
            let spans: u64 = runs.iter().map(|t| t.spans.total()).sum();
            let per_event = spans as f64 / (runs.len() as f64 * self.events.max(1) as f64);
            let collector_cpu: Vec<f64> = runs
                .iter()
                .filter_map(|t| t.collector_cpu_per_100k.map(|c| c.as_secs_f64()))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {per_event:.3} | {} | {} |",
                row.label,
                join(&|t| t.spans.exported.to_string()),
                join(&|t| t.spans.dropped.to_string()),
                join(&|t| t.spans.failed.to_string()),
                join(&|t| t.collector_accepted.map_or("-".into(), |a| a.to_string())),
                if collector_cpu.is_empty() {
                    "-".into()
                } else {
                    format!("{:.2}", median(collector_cpu))
                },
            );
        }
    }
}
