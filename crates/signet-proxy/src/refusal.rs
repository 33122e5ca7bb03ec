//! The one place where a refusal becomes an HTTP response (spec §6).
//!
//! Every stage of the pipeline fails with a [`Refusal`]: the spec code, the
//! message the client may see, and a detail that only goes to the log.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use signet_core::{ErrorCode, ParseError, VerifyError};

use crate::method;

/// Why a request was not forwarded (or failed upstream).
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The spec code.
    pub code: ErrorCode,
    /// The message sent to the client: generic, never a secret.
    pub message: Cow<'static, str>,
    /// What exactly went wrong, for the log only.
    pub detail: Option<String>,
    /// Seconds a client should wait before retrying (`Retry-After`); busy
    /// refusals without one say 1.
    pub retry_after: Option<u64>,
}

impl Refusal {
    /// A refusal with the code's generic message.
    pub fn new(code: ErrorCode) -> Self {
        Refusal {
            code,
            message: Cow::Borrowed(code.message()),
            detail: None,
            retry_after: None,
        }
    }

    /// Replaces the client message with a more precise one (still generic).
    pub fn with_message(mut self, message: &'static str) -> Self {
        self.message = Cow::Borrowed(message);
        self
    }

    /// A message built for this request: only for an authenticated client,
    /// about its own request (never a secret, never another client's policy).
    pub fn with_owned_message(mut self, message: String) -> Self {
        self.message = Cow::Owned(message);
        self
    }

    /// Sets `Retry-After` to `seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds a detail for the log.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The JSON response; a `HEAD` gets the same status and headers
    /// (`Content-Length` included), no body. The body is a plain in-memory
    /// one, so this module needs none of the proxy's body types: callers
    /// wrap it (`ProxyBody::from`).
    pub fn into_response(self, head: bool) -> Response<Full<Bytes>> {
        let json = self.json();
        let length = HeaderValue::from(json.len());
        let body = if head { Bytes::new() } else { json };
        let status = StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_LENGTH, length);
        if self.code.is_challenge() {
            headers.insert(WWW_AUTHENTICATE, challenge(self.code));
        }
        if self.code == ErrorCode::MethodNotAllowed {
            headers.insert(ALLOW, HeaderValue::from_static(method::ALLOW_HEADER));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        } else if self.code.is_retryable() {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }

    /// `{"error":{"code":…,"message":…}}`.
    pub fn json(&self) -> Bytes {
        signet_http::error_body::error_json(self.code.as_str(), &self.message)
    }
}

fn challenge(code: ErrorCode) -> HeaderValue {
    // Codes are fixed upper-case ASCII, so the value is always valid.
    HeaderValue::from_str(&format!(r#"Signet realm="signet-proxy", error="{code}""#))
        .unwrap_or_else(|_| HeaderValue::from_static(r#"Signet realm="signet-proxy""#))
}

impl From<ErrorCode> for Refusal {
    fn from(code: ErrorCode) -> Self {
        Refusal::new(code)
    }
}

impl From<ParseError> for Refusal {
    fn from(error: ParseError) -> Self {
        Refusal {
            code: ErrorCode::InvalidProof,
            message: Cow::Borrowed(error.client_message()),
            detail: Some(error.to_string()),
            retry_after: None,
        }
    }
}

impl From<VerifyError> for Refusal {
    fn from(error: VerifyError) -> Self {
        Refusal::new(error.code()).with_detail(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    async fn body_of(response: Response<Full<Bytes>>) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn a_401_has_the_json_body_and_one_challenge() {
        let response = Refusal::new(ErrorCode::ReplayDetected).into_response(false);
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .collect::<Vec<_>>(),
            [r#"Signet realm="signet-proxy", error="REPLAY_DETECTED""#]
        );
        assert_eq!(
            body_of(response).await,
            r#"{"error":{"code":"REPLAY_DETECTED","message":"This request has already been processed."}}"#
        );
    }

    #[tokio::test]
    async fn a_refused_head_has_no_body_but_the_same_headers() {
        let get = Refusal::new(ErrorCode::MissingProof).into_response(false);
        let head = Refusal::new(ErrorCode::MissingProof).into_response(true);
        assert_eq!(head.status(), 401);
        assert_eq!(head.headers(), get.headers());
        assert_eq!(
            head.headers()[CONTENT_LENGTH],
            body_of(get).await.len().to_string()
        );
        assert_eq!(body_of(head).await, "");
    }

    #[test]
    fn a_405_lists_the_allowed_methods_and_busy_refusals_say_when_to_retry() {
        let response = Refusal::new(ErrorCode::MethodNotAllowed).into_response(false);
        assert_eq!(response.status(), 405);
        assert_eq!(
            response.headers()[ALLOW],
            "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        );
        let response = Refusal::new(ErrorCode::BodyBudgetExhausted).into_response(false);
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn a_403_has_no_challenge() {
        let response = Refusal::new(ErrorCode::PurposeMismatch).into_response(false);
        assert_eq!(response.status(), 403);
        assert!(!response.headers().contains_key(WWW_AUTHENTICATE));
    }
}
