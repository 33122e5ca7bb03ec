//! Fuzz target `json_urls`: see `checks::json_urls` for the properties.
#![no_main]

#[path = "../../crates/signet-http/tests/fuzz_corpus/checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::json_urls(data));
