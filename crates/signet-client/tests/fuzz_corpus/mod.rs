//! The `agent_route` fuzz target's kept inputs, replayed through the same
//! property check the target runs (see `fuzz/README.md`).

// Shared with the fuzz crate, which includes `checks.rs` by path.
pub mod checks;
#[path = "../../../../fuzz/replay.rs"]
mod replay;

#[test]
fn agent_route_corpus_keeps_its_properties() {
    replay::replay("agent_route", checks::agent_route);
}
