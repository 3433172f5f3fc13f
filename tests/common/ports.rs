//! The Todo plugins' ports in Python, JavaScript and Go (`examples/plugins/LANG/NAME`),
//! built with `weir build` once per test run, as `tests/languages.rs` builds its own.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::{root, run, stderr, weir};

/// This test binary's scratch directory for the ports, `target/tmp/<test>-ports`,
/// emptied at its first use in a run.
fn ports_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{}-ports", env!("CARGO_CRATE_NAME")));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the ports directory");
        dir
    })
}

/// The port of a Todo plugin (`task-validator`, `reminder-deriver`) in `lang`
/// (`python`, `js`, `go`), built by `weir build` into `<dir>/<lang>/<name_snake>.wasm`
/// on its first use in this run. The file stem is the Rust plugin's, so config
/// prefixes, metrics and the `weir.plugin` header name both alike. `weir build`
/// compiles the component into the default compile cache, so a `weir run` started
/// later loads it without compiling. The toolchain is installed into
/// `${WEIR_CACHE:-~/.cache/weir}/toolchains` on first use.
pub fn port(lang: &str, name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _building = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = ports_dir()
        .join(lang)
        .join(format!("{}.wasm", name.replace('-', "_")));
    if !out.exists() {
        let dir = root().join("examples/plugins").join(lang).join(name);
        let output = run(weir().arg("build").arg(&dir).arg("--out").arg(&out));
        assert!(
            output.status.success() && out.is_file(),
            "weir build {} failed ({}):\n{}{}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
    }
    out
}
