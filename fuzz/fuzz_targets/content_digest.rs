//! Fuzz target `content_digest`: see `checks::content_digest` for the properties.
#![no_main]

#[path = "../../crates/signet-core/tests/fuzz_corpus/checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::content_digest(data));
