//! Fuzz target `dlq_headers`: the checks of `weir_fuzz::dlq_headers` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::dlq_headers(data));
