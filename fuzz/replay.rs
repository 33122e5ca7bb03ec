//! Replays a fuzz target's committed inputs — `fuzz/seeds/<target>/` (from
//! the spec vectors and the tests) and `fuzz/corpus/<target>/` (what the
//! fuzzer kept, minimised) — through the target's check.
//!
//! The workspace crates' tests include this file by path, next to the
//! check module the fuzz target itself runs, so plain `cargo test` on
//! stable Rust checks every kept input with the very same properties.

use std::path::{Path, PathBuf};

/// Runs `check` on every seed and corpus file of `target`; fails naming
/// each input whose check panicked. There must be at least one input.
pub fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut inputs: Vec<PathBuf> = Vec::new();
    for kind in ["seeds", "corpus"] {
        let dir = fuzz.join(kind).join(target);
        // A target the fuzzer has not run yet has seeds but no corpus.
        if kind == "corpus" && !dir.exists() {
            continue;
        }
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            inputs.push(
                entry
                    .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                    .path(),
            );
        }
    }
    inputs.sort();
    assert!(!inputs.is_empty(), "{target}: no seeds and no corpus");
    let failed: Vec<String> = inputs
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs break its properties: {failed:#?}",
        failed.len(),
        inputs.len()
    );
}
