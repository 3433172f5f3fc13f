//! Shared helpers for the end-to-end tests: build the wasm plugins once per test run,
//! run the real `weir` binary, parse its JSON lines.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_owned()
}

/// Where cargo puts the wasm plugins.
fn wasm_dir() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    target.join("wasm32-wasip2").join("release")
}

/// Builds every plugin for wasm32-wasip2 once per test binary (cargo makes the
/// later calls no-ops), and returns the path of `name`'s wasm, e.g. `chaos_plugin`.
pub fn plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(root())
            .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
            .args([
                "-p",
                "task-validator",
                "-p",
                "reminder-deriver",
                "-p",
                "ui-projector",
                "-p",
                "chaos-plugin",
                "-p",
                "stamp-plugin",
                "-p",
                "recipe-plugin",
                "-p",
                "counter-plugin",
            ])
            .status()
            .expect("cannot run cargo to build the plugins");
        assert!(status.success(), "building the wasm plugins failed");
        wasm_dir()
    });
    let path = dir.join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Builds the stamp plugin with `WEIR_STAMP=stamp` and returns a copy of it that
/// no later build overwrites.
pub fn stamp_build(stamp: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    plugin("task_validator");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .env("WEIR_STAMP", stamp)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--quiet",
            "-p",
            "stamp-plugin",
        ])
        .status()
        .expect("cannot run cargo to build the stamp plugin");
    assert!(status.success(), "building the stamp plugin failed");
    let dir = wasm_dir()
        .parent()
        .expect("target/wasm32-wasip2")
        .join("stamp-builds");
    std::fs::create_dir_all(&dir).expect("stamp-builds dir");
    let copy = dir.join(format!("{stamp}.wasm"));
    std::fs::copy(wasm_dir().join("stamp_plugin.wasm"), &copy).expect("copy the stamp build");
    copy
}

/// The `weir` binary under test: this build's, or `WEIR_TEST_BIN` (to show that a
/// test fails on another version, e.g. one from before a fix).
pub fn weir_bin() -> PathBuf {
    std::env::var_os("WEIR_TEST_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_weir")), PathBuf::from)
}

/// A `weir` command, run from the repository root.
pub fn weir() -> Command {
    let mut command = Command::new(weir_bin());
    command.current_dir(root()).env("WEIR_LOG", "info");
    command
}

/// Runs a command to completion.
pub fn run(command: &mut Command) -> Output {
    command.output().expect("cannot start weir")
}

/// stdout as JSON lines.
pub fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
        })
        .collect()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes `lines` to a temporary JSONL file.
pub fn jsonl(lines: &[Value]) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut file = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .expect("temp file");
    for line in lines {
        writeln!(file, "{line}").expect("write temp file");
    }
    file
}

pub mod jaeger;
pub mod kafka;
pub mod model;
pub mod net;
pub mod ports;
pub mod todo;

/// The wall clock, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Spawns `command` from a thread that never exits, so that PDEATHSIG kills the
/// process with the test process (it fires when the spawning thread ends).
pub fn spawn_tied(mut command: Command, what: &Path) -> std::process::Child {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        tx.send(command.spawn()).expect("the test waits");
        loop {
            std::thread::park();
        }
    });
    rx.recv()
        .expect("the spawning thread")
        .unwrap_or_else(|e| panic!("cannot start {} ({e})", what.display()))
}

/// Percent-encodes a query parameter.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
