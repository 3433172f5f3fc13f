//! The verbs of the `weir` binary. `main.rs` parses arguments and calls [`run`]; every
//! verb lives in its own file.

mod build;
mod check;
mod demo;
mod dev;
mod diff;
mod dlq;
mod harness;
mod new;
mod run;
mod state;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::telemetry::{LogFormat, init_logging};

/// weir: binds Kafka topics to sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, propagate_version = true)]
pub struct Cli {
    /// Log line format on stderr (`WEIR_LOG` sets the level, e.g. `debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every pipeline until SIGINT/SIGTERM (a second signal exits at once).
    Run {
        /// The pipelines file.
        #[arg(long, default_value = "pipelines.toml")]
        config: PathBuf,
        /// Hot reload: swap in changed plugin files, apply live config changes.
        #[arg(long)]
        watch: bool,
    },
    /// The embedded cluster, the Todo pipelines and generated task events, with a
    /// summary table at the end.
    Demo {
        /// The pipelines file (its brokers are replaced by the embedded cluster).
        #[arg(long, default_value = "pipelines.toml")]
        config: PathBuf,
        /// Sample events, JSON lines as `weir test` reads them (default:
        /// `examples/task-events.jsonl` beside the config; `scripts/demo` generates
        /// 1,000 Todo events).
        #[arg(long, value_name = "FILE.jsonl")]
        input: Option<PathBuf>,
        /// How many events to send (the file's events, repeated as needed; default:
        /// each once).
        #[arg(long)]
        events: Option<usize>,
    },
    /// The plugin author's loop: run with --watch and rebuild the plugins (crates
    /// under plugins/, or project directories of any language) whose sources change.
    Dev {
        /// The pipelines file.
        #[arg(long, default_value = "pipelines.toml")]
        config: PathBuf,
    },
    /// Look into a pipeline's dead-letter topic, or replay it to the source topic.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Look into a pipeline's keyed state (its stateful slots' changelogs), or clear
    /// it when its format changes incompatibly.
    State {
        #[command(subcommand)]
        command: state::StateCommand,
    },
    /// Load the config and every plugin, init them, and exit 0 or explain.
    Check {
        /// The pipelines file.
        #[arg(long, default_value = "pipelines.toml")]
        config: PathBuf,
    },
    /// Run a plugin chain over JSON-lines events with no broker; print one JSON line
    /// per output or failure.
    Test(test::TestArgs),
    /// Create a plugin project (Rust, Python, JavaScript or Go) that builds and
    /// passes its own test as it is.
    New(new::NewArgs),
    /// Build the plugin project in DIR into a component, installing its language's
    /// toolchain on first use; print the component's path, size and build time.
    Build(build::BuildArgs),
    /// Run two versions of a plugin chain over the same events and show, per input,
    /// what was added, removed or changed. Exit 0 when identical, 1 when they differ.
    Diff(diff::DiffArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    // The demo shows a progress bar and a table; its per-record lines would bury them.
    let default_level = match cli.command {
        Command::Demo { .. } => "error",
        // Their report is on stdout; loading the plugins is no news.
        Command::State { .. } => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
    let result = match cli.command {
        Command::Run { config, watch } => run::run(&config, watch),
        Command::Demo {
            config,
            input,
            events,
        } => {
            let input = input.unwrap_or_else(|| demo::default_input(&config));
            demo::run(&config, &input, events)
        }
        Command::Check { config } => check::run(&config),
        Command::Dlq { command } => dlq::run(command),
        Command::State { command } => state::run(command),
        Command::Dev { config } => dev::run(&config),
        Command::Test(args) => test::run(args),
        Command::New(args) => new::run(args),
        Command::Build(args) => build::run(args),
        Command::Diff(args) => diff::run(args),
    };
    match result {
        Ok(code) => code,
        // The reader of our stdout went away (`weir test … | head`): it had enough.
        Err(error) if broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub(super) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// A hint for a plugin file that does not exist yet.
fn build_hint(path: &std::path::Path) -> Option<String> {
    let text = path.to_string_lossy();
    if !text.contains("wasm32-wasip2") {
        return None;
    }
    let stem = path.file_stem()?.to_string_lossy().replace('_', "-");
    Some(format!(
        "build it with: cargo build --release --target wasm32-wasip2 -p {stem} (or scripts/build-plugins)"
    ))
}
