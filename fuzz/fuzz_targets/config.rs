//! Fuzz target `config`: the checks of `weir_fuzz::config` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::config(data));
