//! `weir-bench`: the end-to-end benchmark of issue #6 (see BENCHMARKS.md).
//!
//! `weir-bench run` drives every system through the same workload on one broker;
//! `weir-bench serve` is the passthrough and native reference services it starts;
//! `weir-bench soak` runs the Todo deployment for a long time under disturbances
//! and accounts for every input (issue 13); `weir-bench state` measures restores
//! and timers (issue 18).

mod collector;
mod driver;
mod http;
mod proc;
mod report;
mod serve;
mod soak;
mod state;
mod workload;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the benchmark: every system, throughput then latency, and writes the report.
    Run(driver::RunArgs),
    /// Runs a reference service (passthrough or native) until SIGTERM.
    Serve(serve::ServeArgs),
    /// Runs the Todo deployment for a long time at a steady rate, with hot reloads,
    /// a crash, a broker pause and a second instance; then accounts for every input
    /// and reports RSS and open fds over time.
    Soak(soak::SoakArgs),
    /// Measures keyed state and timers with the counter test plugin: restore of a
    /// large changelog with and without a local store, a million pending timers,
    /// and a burst of timers due at one instant.
    State(state::StateArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => driver::run(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Soak(args) => soak::soak(&args),
        Command::State(args) => state::state(&args),
    }
}
