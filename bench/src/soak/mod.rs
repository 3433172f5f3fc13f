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
//!
//! The files, in the order of a run: `run` (the whole run, start to report), `input`
//! (the paced producer and its ledger), `sampling` (/proc and the lag), `disturb`
//! (the weir instances and the disturbances), `logs` (what an instance's log says),
//! `accounting` (the outputs read back against the ledger), `flatness` (RSS and fds
//! judged), `plot` (the SVG) and `report` (the Markdown).

mod accounting;
mod disturb;
mod flatness;
mod input;
mod logs;
mod plot;
mod report;
mod run;
mod sampling;

use std::path::PathBuf;
use std::time::Duration;

pub use run::soak;

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

/// A time of the run, seconds after its start, as `mm:ss`.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{:02}:{:02}", s / 60, s % 60)
}
