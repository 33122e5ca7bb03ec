//! The `signet` binary, end to end: key files, header output, and `curl`
//! against a local HTTP server that verifies every proof it receives. One
//! module per topic; `support` holds what they share.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod curl;
mod fuzz_corpus;
mod keys;
mod real_proxy;
mod sign;
mod support;

// `agent` reaches these as `super::…` (they lived here before the split).
use support::{keygen, signet, SHARED_TOKEN};
