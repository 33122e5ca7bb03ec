//! Fuzz target `canonical_request`: see `checks::canonical_request_target` for the properties.
#![no_main]

#[path = "../../crates/signet-core/tests/fuzz_corpus/checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::canonical_request_target(data));
