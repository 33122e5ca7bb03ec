//! The signet-git fuzz target's kept inputs, replayed through the same
//! property checks the target runs (see `fuzz/README.md`).

// Shared with the fuzz crate, which includes `checks.rs` by path.
#[allow(dead_code)]
pub mod checks;
#[path = "../../../../fuzz/replay.rs"]
mod replay;

use replay::replay;

#[test]
fn git_receive_pack_corpus_keeps_its_properties() {
    replay("git_receive_pack", checks::git_receive_pack);
}
