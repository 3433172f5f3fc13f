//! The `weir` binary: parse the command line, hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    weir::cli::run(weir::cli::Cli::parse())
}
