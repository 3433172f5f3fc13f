//! Fuzz target `plugin_outputs`: each input is the value of a record that the recipe
//! plugin reads as its reply (plugins/testing/recipe), run through weir's record
//! path; the checks are `weir_fuzz::plugin_outputs` (fuzz/src/lib.rs). The plugin is
//! `$WEIR_RECIPE_WASM`, by default target/wasm32-wasip2/release/recipe_plugin.wasm.
#![no_main]

use std::cell::RefCell;
use std::path::PathBuf;

use weir_fuzz::Harness;

thread_local! {
    /// Loaded once: the engine, the compiled plugin and its instances.
    static HARNESS: RefCell<Harness> = RefCell::new(Harness::new(&wasm()));
}

fn wasm() -> PathBuf {
    std::env::var_os("WEIR_RECIPE_WASM").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/wasm32-wasip2/release/recipe_plugin.wasm")
        },
        PathBuf::from,
    )
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    HARNESS.with(|h| weir_fuzz::plugin_outputs(&mut h.borrow_mut(), data));
});
