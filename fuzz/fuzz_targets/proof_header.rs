//! Fuzz target `proof_header`: see `checks::proof_header` for the properties.
#![no_main]

#[path = "../../crates/signet-core/tests/fuzz_corpus/checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::proof_header(data));
