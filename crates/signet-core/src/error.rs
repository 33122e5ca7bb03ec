//! Refusal codes (spec §5, §6) and the typed errors of parsing and verification.
//!
//! Every way a request can be refused maps to exactly one [`ErrorCode`], which
//! fixes the HTTP status, the JSON `code` and the generic message a client sees.
//! The detailed reason (which field, which rule) lives in the error value and
//! goes to the proxy's log, never into the response.

use std::fmt;

/// A refusal code from the Signet-Proof v1 spec, with its HTTP status and the
/// generic message sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// §5 step 1: no `Signet-Proof` header.
    MissingProof,
    /// §5 step 2: the header does not parse, is empty, or appears twice.
    InvalidProof,
    /// §5 step 3: `mk` is not a trusted master key.
    UnknownKey,
    /// §5 step 4: `now > exp`.
    BindingExpired,
    /// §5 step 5: `exp - now > max_binding_ttl`.
    BindingTtlTooLong,
    /// §5 step 6: `|ts - now| > clock_skew`.
    ClockSkew,
    /// §5 step 7: the body is larger than the configured maximum.
    RequestTooLarge,
    /// §5 steps 8 and 9: the binding or the request signature does not verify.
    InvalidSignature,
    /// §5 step 10: the purpose is not allowed for this key.
    PurposeMismatch,
    /// §5 step 10: no `allow` rule of the client covers the method and path
    /// (product code).
    ForbiddenByPolicy,
    /// The request manages the proxy's own GitHub credential
    /// (`DELETE /installation/token`, the App's `/app` routes): refused for
    /// every client, whatever its rules, and never forwarded (product code).
    CredentialEndpointRefused,
    /// The client is over its rate limit (product code).
    RateLimited,
    /// The proxy holds no usable GitHub token yet (product code).
    UpstreamCredentialsUnavailable,
    /// The shared token's quota for this resource is exhausted until its
    /// reset (product code).
    UpstreamQuotaExhausted,
    /// GitHub's secondary rate limit holds every request back (product code).
    UpstreamSecondaryLimit,
    /// `--upstream-concurrency` requests (or the client's
    /// `--upstream-concurrency-per-client`) are in flight to GitHub and no
    /// slot freed in time (product code).
    UpstreamBusy,
    /// §5 step 11: `(ek, n)` was seen before.
    ReplayDetected,
    /// §5: the replay store cannot be reached or is full (fail closed).
    ReplayStoreUnavailable,
    /// §3: the request-target is not in origin-form, or its path has a
    /// dot-segment (amendment 1).
    InvalidRequestTarget,
    /// §3 (amendment 1): the method is not one of the GitHub API's seven.
    MethodNotAllowed,
    /// §6: the upstream is unreachable or broke before its response headers.
    BadGateway,
    /// §6: no upstream response headers within the upstream timeout.
    GatewayTimeout,
    /// GitHub refused to mint the client's scoped installation token (an
    /// unknown repository, a permission the App lacks); the request was not
    /// sent with a broader token (product code).
    UpstreamScopeRefused,
    /// The request body did not arrive within the read timeout (product code).
    RequestTimeout,
    /// The request body could not be read: bad framing or the client went
    /// away mid-body (product code).
    InvalidBody,
    /// The proxy already buffers as many request bodies as its budget allows
    /// (product code, `--body-buffer-budget`).
    BodyBudgetExhausted,
    /// The proxy already serves `--max-connections` connections (product code).
    TooManyConnections,
    /// §3.1 (amendment 2), checked with step 2: several `Content-Digest`
    /// field lines, a value that is not an RFC 8941 Dictionary, or a
    /// `sha-256` member that appears twice or is not a canonical 32-byte
    /// Byte Sequence.
    InvalidContentDigest,
    /// §5.1 (amendment 2): the body arrived complete but its SHA-256 is not
    /// the declared digest; the upstream request was aborted before the
    /// body's last byte.
    BodyDigestMismatch,
}

impl ErrorCode {
    /// The code as written in the JSON body and the `WWW-Authenticate` challenge.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingProof => "MISSING_PROOF",
            Self::InvalidProof => "INVALID_PROOF",
            Self::UnknownKey => "UNKNOWN_KEY",
            Self::BindingExpired => "BINDING_EXPIRED",
            Self::BindingTtlTooLong => "BINDING_TTL_TOO_LONG",
            Self::ClockSkew => "CLOCK_SKEW",
            Self::RequestTooLarge => "REQUEST_TOO_LARGE",
            Self::InvalidSignature => "INVALID_SIGNATURE",
            Self::PurposeMismatch => "PURPOSE_MISMATCH",
            Self::ForbiddenByPolicy => "FORBIDDEN_BY_POLICY",
            Self::CredentialEndpointRefused => "CREDENTIAL_ENDPOINT_REFUSED",
            Self::RateLimited => "RATE_LIMITED",
            Self::UpstreamCredentialsUnavailable => "UPSTREAM_CREDENTIALS_UNAVAILABLE",
            Self::UpstreamQuotaExhausted => "UPSTREAM_QUOTA_EXHAUSTED",
            Self::UpstreamSecondaryLimit => "UPSTREAM_SECONDARY_LIMIT",
            Self::UpstreamBusy => "UPSTREAM_BUSY",
            Self::ReplayDetected => "REPLAY_DETECTED",
            Self::ReplayStoreUnavailable => "REPLAY_STORE_UNAVAILABLE",
            Self::InvalidRequestTarget => "INVALID_REQUEST_TARGET",
            Self::BadGateway => "BAD_GATEWAY",
            Self::GatewayTimeout => "GATEWAY_TIMEOUT",
            Self::UpstreamScopeRefused => "UPSTREAM_SCOPE_REFUSED",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::InvalidBody => "INVALID_BODY",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::BodyBudgetExhausted => "BODY_BUDGET_EXHAUSTED",
            Self::TooManyConnections => "TOO_MANY_CONNECTIONS",
            Self::InvalidContentDigest => "INVALID_CONTENT_DIGEST",
            Self::BodyDigestMismatch => "BODY_DIGEST_MISMATCH",
        }
    }

    /// The HTTP status code of this refusal.
    pub const fn status(self) -> u16 {
        match self {
            Self::InvalidProof
            | Self::InvalidRequestTarget
            | Self::InvalidBody
            | Self::InvalidContentDigest
            | Self::BodyDigestMismatch => 400,
            Self::MissingProof
            | Self::UnknownKey
            | Self::BindingExpired
            | Self::BindingTtlTooLong
            | Self::ClockSkew
            | Self::InvalidSignature
            | Self::ReplayDetected => 401,
            Self::PurposeMismatch | Self::ForbiddenByPolicy | Self::CredentialEndpointRefused => {
                403
            }
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::RequestTooLarge => 413,
            Self::RateLimited | Self::UpstreamQuotaExhausted | Self::UpstreamSecondaryLimit => 429,
            Self::BadGateway | Self::UpstreamScopeRefused => 502,
            Self::ReplayStoreUnavailable
            | Self::BodyBudgetExhausted
            | Self::TooManyConnections
            | Self::UpstreamCredentialsUnavailable
            | Self::UpstreamBusy => 503,
            Self::GatewayTimeout => 504,
        }
    }

    /// The generic, secret-free message sent to the client.
    pub const fn message(self) -> &'static str {
        match self {
            Self::MissingProof => "A Signet-Proof header is required.",
            Self::InvalidProof => "The Signet-Proof header is malformed.",
            Self::UnknownKey => "The master key is not trusted by this proxy.",
            Self::BindingExpired => "The ephemeral key binding has expired.",
            Self::BindingTtlTooLong => {
                "The ephemeral key binding lives longer than this proxy allows."
            }
            Self::ClockSkew => "The request time is too far from the proxy's clock.",
            Self::RequestTooLarge => "The request body is larger than this proxy allows.",
            Self::InvalidSignature => "A Signet-Proof signature does not verify.",
            Self::PurposeMismatch => "The proof's purpose is not allowed here.",
            Self::ForbiddenByPolicy => "No rule of this client allows this request.",
            Self::CredentialEndpointRefused => {
                "This request would manage the proxy's own GitHub credential; it is refused for every client."
            }
            Self::RateLimited => {
                "This client is over its rate limit; retry after Retry-After seconds."
            }
            Self::UpstreamCredentialsUnavailable => {
                "The proxy holds no usable GitHub credential yet; the request was not forwarded."
            }
            Self::UpstreamQuotaExhausted => {
                "The shared GitHub quota for this resource is exhausted; retry after Retry-After seconds."
            }
            Self::UpstreamSecondaryLimit => {
                "GitHub's secondary rate limit is in force; retry after Retry-After seconds."
            }
            Self::UpstreamBusy => "Too many requests are in flight to GitHub; retry shortly.",
            Self::ReplayDetected => "This request has already been processed.",
            Self::ReplayStoreUnavailable => {
                "The replay store is unavailable; the request was not forwarded."
            }
            Self::InvalidRequestTarget => {
                "The request target must be in origin-form (/path?query)."
            }
            Self::BadGateway => "The upstream API could not be reached.",
            Self::GatewayTimeout => "The upstream API did not answer in time.",
            Self::UpstreamScopeRefused => {
                "GitHub refused this client's scoped token; the request was not forwarded."
            }
            Self::RequestTimeout => "The request body did not arrive in time.",
            Self::InvalidBody => "The request body could not be read.",
            Self::MethodNotAllowed => {
                "The method is not allowed; use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS."
            }
            Self::BodyBudgetExhausted => {
                "The proxy is buffering too many request bodies; retry shortly."
            }
            Self::TooManyConnections => "The proxy has too many open connections; retry shortly.",
            Self::InvalidContentDigest => {
                "The Content-Digest header is malformed: send one field line with one sha-256 member in canonical base64."
            }
            Self::BodyDigestMismatch => {
                "The request body does not match its declared Content-Digest; the request was not completed upstream."
            }
        }
    }

    /// Whether a client may simply retry later (the proxy was busy, not the
    /// request wrong): such refusals carry `Retry-After`.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::ReplayStoreUnavailable
                | Self::BodyBudgetExhausted
                | Self::TooManyConnections
                | Self::UpstreamCredentialsUnavailable
                | Self::UpstreamBusy
        )
    }

    /// Whether this refusal carries a `WWW-Authenticate` challenge (every 401 does).
    pub const fn is_challenge(self) -> bool {
        self.status() == 401
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a `Signet-Proof` field value does not parse (§4). All map to
/// [`ErrorCode::InvalidProof`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The header is present but empty.
    #[error("the header value is empty")]
    Empty,
    /// The value is longer than 4096 bytes.
    #[error("the header value is {0} bytes; at most 4096 are allowed")]
    TooLong(usize),
    /// A byte outside visible ASCII (whitespace, control or non-ASCII).
    #[error("byte 0x{byte:02x} at offset {offset} is not visible ASCII")]
    InvalidByte {
        /// The offending byte.
        byte: u8,
        /// Its offset in the field value.
        offset: usize,
    },
    /// The first element is not exactly `v1`.
    #[error("the first element must be the version token v1")]
    BadVersion,
    /// An empty element (`;;` or a trailing `;`).
    #[error("empty element")]
    EmptyElement,
    /// An element without `=`.
    #[error("element without '='")]
    MissingEquals,
    /// A key that is empty, too long or outside `a-z 0-9 _ -`.
    #[error("invalid key")]
    InvalidKey,
    /// A key that appears twice.
    #[error("duplicate key")]
    DuplicateKey,
    /// A required field is absent.
    #[error("required field {0} is missing")]
    MissingField(&'static str),
    /// A required field's value breaks its rule (base64url, length, integer, purpose).
    #[error("field {0} has an invalid value")]
    InvalidValue(&'static str),
    /// The original token-store form (`m`, `jti`, `t` without `mk`/`ek`).
    #[error("{}", TOKEN_STORE_MESSAGE)]
    TokenStoreForm,
}

/// The exact message the spec requires for the original token-store form (§4).
pub const TOKEN_STORE_MESSAGE: &str =
    "Signet-Proof token-store form is not supported; send a self-contained v1 proof.";

impl ParseError {
    /// The message sent to the client: the spec's fixed sentence for the
    /// token-store form, the generic one otherwise.
    pub const fn client_message(&self) -> &'static str {
        match self {
            Self::TokenStoreForm => TOKEN_STORE_MESSAGE,
            _ => ErrorCode::InvalidProof.message(),
        }
    }
}

/// Why a parsed proof fails verification (§5 steps 3–6, 8, 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Step 3: the master key is not trusted.
    #[error("master key is not trusted")]
    UnknownKey,
    /// Step 4: the binding expired.
    #[error("binding expired")]
    BindingExpired,
    /// Step 5: the binding's remaining lifetime exceeds the maximum.
    #[error("binding lifetime exceeds the maximum")]
    BindingTtlTooLong,
    /// Step 6: the request time is outside the allowed skew.
    #[error("request time outside the allowed clock skew")]
    ClockSkew,
    /// Step 8: the master key's signature over the binding does not verify.
    #[error("binding signature does not verify")]
    InvalidBindingSignature,
    /// Step 9: the ephemeral key's signature over the request does not verify.
    #[error("request signature does not verify")]
    InvalidRequestSignature,
}

impl VerifyError {
    /// The spec code this failure maps to.
    pub const fn code(self) -> ErrorCode {
        match self {
            Self::UnknownKey => ErrorCode::UnknownKey,
            Self::BindingExpired => ErrorCode::BindingExpired,
            Self::BindingTtlTooLong => ErrorCode::BindingTtlTooLong,
            Self::ClockSkew => ErrorCode::ClockSkew,
            Self::InvalidBindingSignature | Self::InvalidRequestSignature => {
                ErrorCode::InvalidSignature
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_401_is_a_challenge_and_nothing_else_is() {
        for code in [
            ErrorCode::MissingProof,
            ErrorCode::UnknownKey,
            ErrorCode::BindingExpired,
            ErrorCode::BindingTtlTooLong,
            ErrorCode::ClockSkew,
            ErrorCode::InvalidSignature,
            ErrorCode::ReplayDetected,
        ] {
            assert_eq!(code.status(), 401, "{code}");
            assert!(code.is_challenge());
        }
        assert!(!ErrorCode::InvalidProof.is_challenge());
        assert!(!ErrorCode::PurposeMismatch.is_challenge());
    }

    #[test]
    fn the_amendment_2_codes_are_400s_with_their_spec_names() {
        for (code, name) in [
            (ErrorCode::InvalidContentDigest, "INVALID_CONTENT_DIGEST"),
            (ErrorCode::BodyDigestMismatch, "BODY_DIGEST_MISMATCH"),
        ] {
            assert_eq!((code.status(), code.as_str()), (400, name));
            assert!(!code.is_challenge() && !code.is_retryable());
            assert!(code.message().contains("Content-Digest"), "{code}");
        }
    }

    #[test]
    fn token_store_form_has_the_spec_sentence() {
        assert_eq!(
            ParseError::TokenStoreForm.client_message(),
            "Signet-Proof token-store form is not supported; send a self-contained v1 proof."
        );
        assert_eq!(
            ParseError::Empty.client_message(),
            "The Signet-Proof header is malformed."
        );
    }
}
