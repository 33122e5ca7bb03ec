//! Fuzz target `request_target`: see `checks::request_target`.
#![no_main]

#[path = "../../crates/signet-proxy/tests/fuzz_corpus/checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::request_target(data));
