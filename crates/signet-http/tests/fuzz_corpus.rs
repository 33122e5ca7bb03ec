//! The signet-http fuzz targets' kept inputs, replayed through the same
//! property checks the targets run (see `fuzz/README.md`).

// Shared with the fuzz crate, which includes `checks.rs` by path.
#[path = "fuzz_corpus/checks.rs"]
mod checks;
#[path = "../../../fuzz/replay.rs"]
mod replay;

use replay::replay;

#[test]
fn links_corpus_keeps_its_properties() {
    replay("links", checks::links);
}

#[test]
fn json_urls_corpus_keeps_its_properties() {
    replay("json_urls", checks::json_urls);
}
