//! Fuzz target `git_receive_pack`: see `checks::git_receive_pack` for the
//! properties.
#![no_main]

#[path = "../../crates/signet-git/tests/fuzz_corpus/checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::git_receive_pack(data));
