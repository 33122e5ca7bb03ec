//! Fuzz target `keys_file`: see `checks::keys_file` for the properties.
#![no_main]

#[path = "../../crates/signet-proxy/tests/fuzz_corpus/checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::keys_file(data));
