//! Fuzz target `agent_route`: see `checks::agent_route` for the properties.
#![no_main]

#[path = "../../crates/signet-client/tests/fuzz_corpus/checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::agent_route(data));
