//! # signet-http
//!
//! HTTP plumbing shared by `signet-proxy` and the `signet agent`, so each
//! behaviour lives in one place:
//!
//! | module | concern |
//! |---|---|
//! | [`links`] | `Link` and `Location` URLs under one base moved to another |
//! | [`json_urls`] | the same for absolute URLs in JSON bodies, streaming, chunk by chunk |
//! | [`headers`] | hop-by-hop headers, removed in both directions |
//! | [`error_body`] | the JSON error shape `{"error":{"code":…,"message":…}}` |
//! | [`size`] | the byte-size grammar of the size flags (`1MiB`, `64KiB`, …) |
//!
//! No sockets, no runtime: these are plain functions and types over `http`
//! values and body frames.
//!
//! ```
//! use signet_http::json_urls::JsonUrlRewriter;
//!
//! let mut rewriter = JsonUrlRewriter::new(&[("https://api.github.com", "http://127.0.0.1:7180")]);
//! let mut out = rewriter.push(br#"{"url":"https://api.git"#[..].into()).to_vec();
//! out.extend_from_slice(&rewriter.push(br#"hub.com/repos/o/r"}"#[..].into()));
//! out.extend_from_slice(&rewriter.finish());
//! assert_eq!(out, br#"{"url":"http://127.0.0.1:7180/repos/o/r"}"#);
//! ```
#![forbid(unsafe_code)]

pub mod error_body;
pub mod headers;
pub mod json_urls;
pub mod links;
pub mod size;
