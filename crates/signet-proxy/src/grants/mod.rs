//! What the keys file grants a client, parsed and validated, enforced
//! nowhere here: its `allow` rules (enforced by `policy`), its `rate`
//! (`policy::rate`) and its `github` scope (minted by `upstream::scope`).
//! Pure values, so the keys file (`auth::clients`) and the stages that
//! enforce them all import them from below.

mod github;
mod rate;
mod rule;

pub use github::{GitHubScope, ScopeEntry};
pub use rate::Rate;
pub use rule::Rule;
