//! The `weir` binary: parse the command line, hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: per-thread heaps suit the runner threads, which allocate and free
/// every record's buffers (glibc's arenas fragment under that load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    weir::cli::run(weir::cli::Cli::parse())
}
