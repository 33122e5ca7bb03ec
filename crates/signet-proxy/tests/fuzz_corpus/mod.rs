//! The `keys_file` and `request_target` fuzz targets' kept inputs,
//! replayed through the same property checks the targets run (see
//! `fuzz/README.md`).

// Shared with the fuzz crate, which includes `checks.rs` by path.
pub mod checks;
#[path = "../../../../fuzz/replay.rs"]
mod replay;

#[test]
fn keys_file_corpus_keeps_its_properties() {
    replay::replay("keys_file", checks::keys_file);
}

#[test]
fn request_target_corpus_keeps_its_properties() {
    replay::replay("request_target", checks::request_target);
}
