//! What only the GitHub REST API gets: the conditional-request `cache`,
//! the quota guard (`quota`) and the pagination [`links`].

pub(crate) mod cache;
/// Pagination links (moved to `signet-http`, shared with the `signet agent`).
pub use signet_http::links;
pub(crate) mod quota;
