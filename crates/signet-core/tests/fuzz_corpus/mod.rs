//! The signet-core fuzz targets' kept inputs, replayed through the same
//! property checks the targets run (see `fuzz/README.md`).

// Shared with the fuzz crate, which includes `checks.rs` by path.
pub mod checks;
#[path = "../../../../fuzz/replay.rs"]
mod replay;

use replay::replay;

#[test]
fn proof_header_corpus_keeps_its_properties() {
    replay("proof_header", checks::proof_header);
}

#[test]
fn canonical_request_corpus_keeps_its_properties() {
    replay("canonical_request", checks::canonical_request_target);
}

#[test]
fn verify_corpus_keeps_its_properties() {
    replay("verify", checks::verify);
}

#[test]
fn content_digest_corpus_keeps_its_properties() {
    replay("content_digest", checks::content_digest);
}
