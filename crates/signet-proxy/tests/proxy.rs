//! The proxy end to end: the real server on `127.0.0.1:0` in front of the
//! recording GitHub API stand-in (`signet-standin`), driven over real TCP.
//! Each test states one thing a user depends on (spec: `docs/PROTOCOL.md`,
//! Signet-Proof v1). One module per topic; `support` builds what they share.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cache;
mod clients;
mod credentials;
mod faults;
mod forwarding;
mod fuzz_corpus;
mod health;
mod http_vectors;
mod https;
mod invariant;
mod layout;
mod real_binary;
mod refusals;
mod replicas;
mod security;
mod serving;
mod side;
mod streaming;
mod support;
mod timeouts;

// The topic modules reach these as `crate::…` (they lived here before the
// split).
use support::{binary, free_port, now, terminate, wait_until_healthy};
