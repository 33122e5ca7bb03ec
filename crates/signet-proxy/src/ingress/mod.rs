//! Ingress: what happens to a request before anyone asks who sent it — the
//! client connection and its timeouts (`connection`), the request-target
//! and method checks ([`target`]), and the endpoints answered locally
//! without a proof (`health`).

pub(crate) mod connection;
pub(crate) mod health;
pub mod target;
