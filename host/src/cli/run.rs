//! `weir run`: run every pipeline until SIGINT/SIGTERM.

use std::path::Path;
use std::process::ExitCode;

use crate::startup::{self, Options};

pub fn run(config_path: &Path, watch: bool) -> anyhow::Result<ExitCode> {
    let running = startup::load(config_path, "scripts/build-plugins")?.start(Options {
        endpoint: true,
        watch: watch.then(|| config_path.to_owned()),
    })?;
    running.run_until_stopped()?;
    Ok(ExitCode::SUCCESS)
}
