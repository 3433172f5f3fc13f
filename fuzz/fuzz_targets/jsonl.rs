//! Fuzz target `jsonl`: the checks of `weir_fuzz::jsonl` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::jsonl(data));
