//! # signet-client
//!
//! The client side of Signet-Proof v1: sign requests for a `signet-proxy`
//! with a master key, without sending the master key anywhere.
//!
//! * [`Signer`] owns the master key. It binds a short-lived random ephemeral
//!   key to it (spec §2), replaces that key before the binding expires, and
//!   signs each request with a fresh nonce (spec §3), returning the
//!   `Signet-Proof` header value (spec §4).
//! * [`sign_request`] signs a [`reqwest::Request`] in place, covering exactly
//!   the method, request-target and body that reqwest puts on the wire.
//! * [`SignetClient`] is a reqwest client bound to one proxy that signs every
//!   request it sends.
//!
//! * [`agent`] is the `signet agent`: a local GitHub API endpoint for tools
//!   that cannot sign (`gh`, octokit, PyGithub), which signs every request it
//!   forwards to the proxy.
//!
//! The `signet` command-line tool in this package (`signet keygen`, `signet
//! sign`, `signet curl`, `signet agent`, ...) is built on the same pieces.
//!
//! ```
//! use signet_client::Signer;
//! use signet_core::{BodyDigest, Limits, ProofHeader, RequestParts, SigningKey, Verifier};
//!
//! // Client: sign a request with the master key.
//! let master = SigningKey::from_bytes(&[7; 32]);
//! let signer = Signer::new(master.clone()).with_purpose("ci")?;
//! let header = signer.sign("POST", "/repos/o/r/issues", br#"{"title":"hi"}"#)?;
//!
//! // Proxy: verify it offline, knowing only the master public key.
//! let verifier = Verifier::new([master.verifying_key()], Limits::default());
//! let proof = ProofHeader::parse(header.as_bytes())?;
//! let request = RequestParts {
//!     method: "POST",
//!     target: "/repos/o/r/issues",
//!     body_digest: BodyDigest::of(br#"{"title":"hi"}"#),
//! };
//! let verified = verifier.check(&proof, proof.ts)?.verify(&request)?;
//! assert_eq!(verified.purpose().as_str(), "ci");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is signed
//!
//! The proof covers the request-target exactly as it goes on the wire, and
//! that is what reqwest's [`Url`](reqwest::Url) makes of the URL you give it, not the text
//! you typed: `Url` removes dot segments (`/a/../b` becomes `/b`),
//! percent-encodes characters that may not appear in a path or query (a space
//! becomes `%20`) and drops any `#fragment`. [`sign_request`] therefore reads
//! the target from the finished [`reqwest::Request`] — `url.path()` plus, when
//! the URL has a query (even an empty one, a bare `?`), `?` and the query —
//! which is byte for byte what reqwest writes on the request line.
//!
//! The whole path is signed, including any path prefix of the proxy's base
//! URL: the proxy must receive the request at that same path (a reverse proxy
//! in front of it must not strip a prefix).
//!
//! The method is signed as reqwest sends it (`get` stays `get`), and the body
//! as the exact bytes of the request, so a streaming body cannot be signed.
//! Headers (`Accept`, `Content-Type`, ...) are not covered (spec §7).
#![forbid(unsafe_code)]

pub mod agent;
mod client;
mod signer;

pub use client::{
    sign_request, wire_target, ClientError, SignedRequestBuilder, SignetClient, DEFAULT_USER_AGENT,
    SIGNET_PROOF,
};
pub use signer::{KeyFileError, SignError, Signer, DEFAULT_TTL, MAX_TTL};

/// Re-exported so callers name the same reqwest version as this crate.
pub use reqwest;
