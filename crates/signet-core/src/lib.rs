//! # signet-core
//!
//! The Signet-Proof v1 protocol, pure and I/O-free: no sockets, no clock, no
//! async. Time is always an argument (`now`, unix seconds).
//!
//! * [`keys`] — master public keys as hex, private keys as PKCS#8 PEM.
//! * [`request`] — the binding message (§2), the canonical request (§3) and
//!   the client side that signs them.
//! * [`header`] — strict parsing and formatting of the `Signet-Proof` header (§4).
//! * [`content_digest`] — the declared body digest, `Content-Digest` (§3.1,
//!   amendment 2): a strict parser and the value a client sends.
//! * [`verify`] — steps 3–6 and 8–9 of verification (§5), with a bounded cache
//!   of verified bindings.
//! * [`signature`] — signature validity (§5, amendment 3): the one rule both
//!   signatures are judged by, and the check a trusted master key must pass.
//! * [`error`] — every refusal code with its status and message (§5, §6).
//!
//! ```
//! use ed25519_dalek::SigningKey;
//! use signet_core::{Binding, BodyDigest, Limits, ProofHeader, Purpose, RequestParts, Verifier};
//!
//! // Client: the master key binds an ephemeral key, which signs a request.
//! let master = SigningKey::from_bytes(&[1; 32]);
//! let ephemeral = SigningKey::from_bytes(&[2; 32]);
//! let now = 1_700_000_000;
//! let binding = Binding::sign(&master, &ephemeral.verifying_key(), now + 300, Purpose::new("ci")?);
//! let request = RequestParts { method: "GET", target: "/user", body_digest: BodyDigest::of(b"") };
//! let header = binding.sign_request(&ephemeral, &request, now, [7; 16]).to_string();
//!
//! // Proxy: parse, cheap checks, then both signatures, offline.
//! let verifier = Verifier::new([master.verifying_key()], Limits::default());
//! let proof = ProofHeader::parse(header.as_bytes())?;
//! let verified = verifier.check(&proof, now)?.verify(&request)?;
//! assert_eq!(verified.purpose().as_str(), "ci");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod b64;
pub mod content_digest;
pub mod error;
pub mod header;
pub mod keys;
pub mod request;
pub mod signature;
pub mod verify;

pub use ed25519_dalek::{SigningKey, VerifyingKey};

pub use content_digest::{
    ContentDigest, ContentDigestError, CONTENT_DIGEST, MAX_CONTENT_DIGEST_LEN,
};
pub use error::{ErrorCode, ParseError, VerifyError, TOKEN_STORE_MESSAGE};
pub use header::{ProofHeader, Purpose, HEADER_NAME, MAX_HEADER_LEN};
pub use keys::{
    key_id, parse_public_key_hex, public_key_hex, signing_key_from_pem, signing_key_to_pem,
    KeyError,
};
pub use request::{canonical_request, Binding, BindingMessage, BodyDigest, RequestParts};
pub use signature::{check_master_key, verify_signature, SignatureError, ValidKey};
pub use verify::{CheckedProof, Limits, ReplayRecord, ReplayScope, VerifiedProof, Verifier};

/// Unpadded base64url, as used by every binary field of the header.
pub mod base64url {
    pub use crate::b64::{decode_array, encode};
}
