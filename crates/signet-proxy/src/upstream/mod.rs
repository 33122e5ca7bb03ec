//! The upstream: the credential the proxy injects ([`credentials`], with
//! per-client [`scope`]s), the header rewrite and forward (`forward`), the
//! pooled HTTP client (`pool`), each upstream as a value (`service`: base
//! URL, credential rendering, concurrency slots), and the parts only the
//! REST API has (`api`).

pub(crate) mod api;
pub mod credentials;
pub(crate) mod forward;
pub(crate) mod pool;
pub mod scope;
pub(crate) mod service;
