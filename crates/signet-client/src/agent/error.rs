//! The agent's own failures, and the one place they become responses: JSON
//! in the proxy's error shape (`{"error":{"code":…,"message":…}}`) with
//! codes of their own (`AGENT_…`), so a client can tell the agent's answer
//! from the proxy's refusals, which pass through unchanged.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};

use super::AgentBody;
use crate::SignError;

/// Why the agent answered a request itself instead of forwarding it.
///
/// The `Display` text is the detail for the agent's log; clients get the
/// generic [`message`](Self::message).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// `CONNECT`: the agent is a plain-HTTP endpoint, not a tunnel.
    #[error("CONNECT {0} refused")]
    Connect(String),
    /// An absolute-form request for a host other than `api.github.localhost`.
    #[error("absolute-form request for {0:?} refused")]
    ForeignHost(String),
    /// An origin-form request whose `Host` is not a loopback name, without
    /// `--allow-remote` (a page in a browser could otherwise reach the agent
    /// through DNS rebinding and act with its key).
    #[error("Host {0:?} is not a loopback name")]
    RemoteHost(String),
    /// A request a web browser made (an `Origin`, a `Sec-Fetch-Site` other
    /// than `none`, a CORS preflight): the agent serves no page, and a page
    /// must not act with the user's key. The detail is the telling header.
    #[error("a browser's request ({0}) refused")]
    BrowserRequest(String),
    /// The request body is larger than `--max-body-size`.
    #[error("request body over {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The request body broke off or took longer than the timeout.
    #[error("cannot read the request body: {0}")]
    BodyRead(String),
    /// The method or target cannot be signed (not origin-form ASCII).
    #[error("cannot sign the request: {0}")]
    Unsignable(SignError),
    /// Signing failed for a reason of the agent's own (random source, clock).
    #[error("signing failed: {0}")]
    SigningFailed(SignError),
    /// The master key file could not be (re-)read.
    #[error("{0}")]
    KeyUnreadable(String),
    /// No connection to the proxy could be made.
    #[error("cannot reach the proxy: {0}")]
    ProxyUnreachable(String),
    /// The proxy accepted the connection but the exchange failed.
    #[error("the exchange with the proxy failed: {0}")]
    ProxyFailed(String),
    /// The proxy sent no response headers in time.
    #[error("the proxy did not answer within {0:?}")]
    ProxyTimeout(Duration),
}

impl AgentError {
    /// The HTTP status of the agent's answer.
    pub fn status(&self) -> StatusCode {
        match self {
            AgentError::Connect(_) => StatusCode::METHOD_NOT_ALLOWED,
            AgentError::ForeignHost(_)
            | AgentError::RemoteHost(_)
            | AgentError::BrowserRequest(_) => StatusCode::FORBIDDEN,
            AgentError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AgentError::BodyRead(_) | AgentError::Unsignable(_) => StatusCode::BAD_REQUEST,
            AgentError::SigningFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AgentError::KeyUnreadable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AgentError::ProxyUnreachable(_) | AgentError::ProxyFailed(_) => StatusCode::BAD_GATEWAY,
            AgentError::ProxyTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The code in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::Connect(_) => "AGENT_CONNECT_REFUSED",
            AgentError::ForeignHost(_) | AgentError::RemoteHost(_) => "AGENT_HOST_REFUSED",
            AgentError::BrowserRequest(_) => "AGENT_BROWSER_REFUSED",
            AgentError::BodyTooLarge { .. } => "AGENT_REQUEST_TOO_LARGE",
            AgentError::BodyRead(_) => "AGENT_INVALID_BODY",
            AgentError::Unsignable(_) => "AGENT_INVALID_REQUEST",
            AgentError::SigningFailed(_) => "AGENT_SIGNING_FAILED",
            AgentError::KeyUnreadable(_) => "AGENT_KEY_UNREADABLE",
            AgentError::ProxyUnreachable(_) => "AGENT_PROXY_UNREACHABLE",
            AgentError::ProxyFailed(_) => "AGENT_PROXY_FAILED",
            AgentError::ProxyTimeout(_) => "AGENT_PROXY_TIMEOUT",
        }
    }

    /// The message in the JSON body: what to do, never a secret.
    pub fn message(&self) -> &'static str {
        match self {
            AgentError::Connect(_) => {
                "The signet agent serves plain HTTP; it does not tunnel (CONNECT)."
            }
            AgentError::ForeignHost(_) => {
                "The signet agent forwards absolute-form requests only for api.github.localhost."
            }
            AgentError::RemoteHost(_) => {
                "The signet agent answers only requests addressed to a loopback name (start it with --allow-remote to accept others)."
            }
            AgentError::BrowserRequest(_) => {
                "The signet agent refuses requests from web browsers: it serves no web page, and a page must not act with your key."
            }
            AgentError::BodyTooLarge { .. } => {
                "The request body is larger than the agent's --max-body-size."
            }
            AgentError::BodyRead(_) => "The request body could not be read.",
            AgentError::Unsignable(_) => {
                "The request method or target cannot be signed (use /path?query in visible ASCII)."
            }
            AgentError::SigningFailed(_) => "The signet agent could not sign the request.",
            AgentError::KeyUnreadable(_) => {
                "The signet agent cannot read its master key file; fix it and retry."
            }
            AgentError::ProxyUnreachable(_) => {
                "The signet agent cannot reach signet-proxy (check --proxy)."
            }
            AgentError::ProxyFailed(_) => "The exchange between the agent and signet-proxy failed.",
            AgentError::ProxyTimeout(_) => "signet-proxy did not answer the agent in time.",
        }
    }

    /// The JSON response; a `HEAD` gets the same status and headers, no body.
    pub fn into_response(self, head: bool) -> Response<AgentBody> {
        let json = signet_http::error_body::error_json(self.code(), self.message());
        let length = HeaderValue::from(json.len());
        let body = if head { Bytes::new() } else { json };
        let mut response = Response::new(AgentBody::full(body));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_LENGTH, length);
        if matches!(self, AgentError::Connect(_)) {
            headers.insert(
                ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        response
    }
}

impl From<SignError> for AgentError {
    fn from(error: SignError) -> Self {
        match error {
            SignError::InvalidMethod(_) | SignError::InvalidTarget(_) => {
                AgentError::Unsignable(error)
            }
            _ => AgentError::SigningFailed(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test]
    async fn an_agent_error_is_json_in_the_proxy_shape_with_its_own_code() {
        let response =
            AgentError::ProxyUnreachable("connection refused".to_owned()).into_response(false);
        assert_eq!(response.status(), 502);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await;
        let body = body.map(|b| b.to_bytes()).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(json["error"]["code"], "AGENT_PROXY_UNREACHABLE");
        assert!(json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.contains("connection refused")));
    }

    #[test]
    fn a_head_gets_the_headers_without_the_body() {
        let head = AgentError::BodyTooLarge { limit: 1 }.into_response(true);
        assert_eq!(head.status(), 413);
        assert_ne!(head.headers()[CONTENT_LENGTH], "0");
    }
}
