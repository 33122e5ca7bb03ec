//! Signing `reqwest` requests, and a small client for talking to a proxy.
//!
//! What the proof covers is explained in the crate docs ("What is signed").

use std::sync::Arc;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Request, Response, Url};

use crate::signer::{SignError, Signer};

/// The `Signet-Proof` header name.
pub const SIGNET_PROOF: HeaderName = HeaderName::from_static(signet_core::HEADER_NAME);

/// The `User-Agent` that [`SignetClient::new`] sends (GitHub refuses requests
/// without one).
pub const DEFAULT_USER_AGENT: &str = concat!("signet/", env!("CARGO_PKG_VERSION"));

/// Why a request through [`SignetClient`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The proxy base URL is not an absolute `http` or `https` URL without
    /// query or fragment.
    #[error("invalid proxy URL {0:?}: expected http(s)://host[:port][/prefix]")]
    InvalidBaseUrl(String),
    /// The path given to [`SignetClient::request`] does not start with `/`,
    /// or does not make a valid URL after the base URL.
    #[error("invalid request path {0:?}: expected /path?query")]
    InvalidPath(String),
    /// The request could not be signed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// reqwest failed to build or send the request, or to read the response.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

impl ClientError {
    /// Whether the proxy could not be reached at all (connection refused,
    /// DNS failure, TLS handshake failure), as opposed to failing later.
    pub fn is_connect(&self) -> bool {
        matches!(self, ClientError::Http(e) if e.is_connect())
    }
}

/// Signs `request` in place: sets its `Signet-Proof` header (replacing any
/// already there) to a fresh proof over its method, wire request-target and
/// body.
///
/// Use this with your own [`reqwest::Client`]. The body must be given as bytes
/// (a `String`, `Vec<u8>`, `Bytes`, `&'static str` ...); a streaming body is
/// refused with [`SignError::StreamingBody`] because its bytes are not known
/// until it is sent. See [what is signed](crate#what-is-signed).
///
/// ```
/// use signet_client::{sign_request, Signer};
/// use signet_core::{BodyDigest, Limits, ProofHeader, RequestParts, SigningKey, Verifier};
///
/// let master = SigningKey::from_bytes(&[1; 32]);
/// let signer = Signer::new(master.clone());
/// let client = reqwest::Client::new();
/// let mut request = client
///     .post("http://localhost:8080/repos/o/r/a/../issues?state=open")
///     .body(r#"{"title":"hi"}"#)
///     .build()?;
/// sign_request(&signer, &mut request)?;
///
/// // What a proxy sees: the normalised target, and the header.
/// let header = request.headers()["signet-proof"].to_str()?;
/// let proof = ProofHeader::parse(header.as_bytes())?;
/// let verifier = Verifier::new([master.verifying_key()], Limits::default());
/// let wire = RequestParts {
///     method: "POST",
///     target: "/repos/o/r/issues?state=open",
///     body_digest: BodyDigest::of(br#"{"title":"hi"}"#),
/// };
/// verifier.check(&proof, proof.ts)?.verify(&wire)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sign_request(signer: &Signer, request: &mut Request) -> Result<(), SignError> {
    let body = match request.body() {
        None => &[][..],
        Some(body) => body.as_bytes().ok_or(SignError::StreamingBody)?,
    };
    let target = wire_target(request.url());
    let proof = signer.sign(request.method().as_str(), &target, body)?;
    // A proof is ASCII by construction, so it is always a valid header value.
    let mut value =
        HeaderValue::from_str(&proof).map_err(|_| SignError::InvalidTarget(target.clone()))?;
    value.set_sensitive(true);
    request.headers_mut().insert(SIGNET_PROOF, value);
    Ok(())
}

/// The origin-form request-target reqwest puts on the request line for `url`.
pub fn wire_target(url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{}", url.path(), query),
        None => url.path().to_owned(),
    }
}

/// A [`reqwest::Client`] that signs every request to one Signet proxy.
///
/// Cheap to clone: clones share the connection pool and the [`Signer`].
///
/// ```no_run
/// use std::sync::Arc;
/// use signet_client::{SignetClient, Signer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let signer = Arc::new(Signer::from_pem_file("master-key.pem")?.with_purpose("ci")?);
/// let client = SignetClient::new("http://localhost:8080", signer)?;
/// let response = client
///     .request(reqwest::Method::GET, "/repos/octocat/hello-world")
///     .header("accept", "application/vnd.github+json")
///     .send()
///     .await?;
/// println!("{}", response.status());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SignetClient {
    http: reqwest::Client,
    signer: Arc<Signer>,
    base: Url,
}

impl SignetClient {
    /// A client for the proxy at `proxy_base_url` (e.g.
    /// `http://localhost:8080`, or `https://proxy.example/prefix`), with a
    /// default reqwest client that sends [`DEFAULT_USER_AGENT`] and follows no
    /// redirects.
    pub fn new(proxy_base_url: &str, signer: Arc<Signer>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(DEFAULT_USER_AGENT)
            // A followed redirect would carry a proof made for the old target
            // (and a used nonce), so the proxy would refuse it: hand the 3xx
            // back to the caller instead, as the proxy itself does.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Self::with_client(http, proxy_base_url, signer)
    }

    /// Like [`SignetClient::new`], with your own configured reqwest client
    /// (timeouts, TLS roots, proxies).
    pub fn with_client(
        http: reqwest::Client,
        proxy_base_url: &str,
        signer: Arc<Signer>,
    ) -> Result<Self, ClientError> {
        let invalid = || ClientError::InvalidBaseUrl(proxy_base_url.to_owned());
        let base = Url::parse(proxy_base_url).map_err(|_| invalid())?;
        let usable = matches!(base.scheme(), "http" | "https")
            && base.has_host()
            && base.query().is_none()
            && base.fragment().is_none();
        if !usable {
            return Err(invalid());
        }
        Ok(SignetClient { http, signer, base })
    }

    /// The proxy's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The signer.
    pub fn signer(&self) -> &Arc<Signer> {
        &self.signer
    }

    /// The URL for `path` (`/path?query`) on the proxy: the base URL's own
    /// path (without its trailing `/`) followed by `path`.
    pub fn url(&self, path: &str) -> Result<Url, ClientError> {
        let invalid = || ClientError::InvalidPath(path.to_owned());
        if !path.starts_with('/') {
            return Err(invalid());
        }
        let mut base = self.base.clone();
        base.set_path("");
        let prefix = self.base.path().trim_end_matches('/');
        // Built as text, not with `Url::join`: `join` would treat `//host/x`
        // as a new authority, and would replace the base path.
        Url::parse(&format!(
            "{}{prefix}{path}",
            base.as_str().trim_end_matches('/')
        ))
        .map_err(|_| invalid())
    }

    /// Starts a request to `path` (`/path?query`) on the proxy; it is signed
    /// when sent.
    pub fn request(&self, method: Method, path: &str) -> SignedRequestBuilder {
        let inner = self.url(path).map(|url| self.http.request(method, url));
        SignedRequestBuilder {
            client: self.clone(),
            inner,
        }
    }

    /// Signs `request` (see [`sign_request`]) and sends it with this client's
    /// reqwest client. The request may go anywhere; it is usually built from
    /// [`SignetClient::url`].
    pub async fn execute(&self, mut request: Request) -> Result<Response, ClientError> {
        sign_request(&self.signer, &mut request)?;
        Ok(self.http.execute(request).await?)
    }
}

/// A request being built by [`SignetClient::request`]; signed by
/// [`SignedRequestBuilder::send`] once it is complete.
#[derive(Debug)]
#[must_use = "a request does nothing until it is sent"]
pub struct SignedRequestBuilder {
    client: SignetClient,
    inner: Result<reqwest::RequestBuilder, ClientError>,
}

impl SignedRequestBuilder {
    /// Adds a header (not covered by the signature).
    pub fn header(self, name: &str, value: &str) -> Self {
        self.map(|b| b.header(name, value))
    }

    /// Sets the body; it must be bytes, not a stream, to be signable.
    pub fn body(self, body: impl Into<reqwest::Body>) -> Self {
        self.map(|b| b.body(body))
    }

    /// Applies any other [`reqwest::RequestBuilder`] setting (headers,
    /// timeout, query). The request is signed after this runs, so the proof
    /// covers whatever URL and body it leaves.
    pub fn map(self, f: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder) -> Self {
        SignedRequestBuilder {
            client: self.client,
            inner: self.inner.map(f),
        }
    }

    /// Builds and signs the request without sending it.
    pub fn build(self) -> Result<Request, ClientError> {
        let mut request = self.inner?.build()?;
        sign_request(&self.client.signer, &mut request)?;
        Ok(request)
    }

    /// Builds, signs and sends the request.
    pub async fn send(self) -> Result<Response, ClientError> {
        let client = self.client.clone();
        let request = self.build()?;
        Ok(client.http.execute(request).await?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use signet_core::{BodyDigest, Limits, ProofHeader, RequestParts, SigningKey, Verifier};

    use super::*;

    fn master() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    fn client(base: &str) -> SignetClient {
        SignetClient::new(base, Arc::new(Signer::new(master()))).unwrap()
    }

    /// Verifies `request`'s proof against what is actually on the wire.
    fn assert_verifies(request: &Request, target: &str, body: &[u8]) {
        assert_eq!(wire_target(request.url()), target);
        let headers = request.headers().get_all(SIGNET_PROOF);
        assert_eq!(headers.iter().count(), 1);
        let header = request.headers()[SIGNET_PROOF].as_bytes();
        let proof = ProofHeader::parse(header).unwrap();
        let verifier = Verifier::new([master().verifying_key()], Limits::default());
        let wire = RequestParts {
            method: request.method().as_str(),
            target,
            body_digest: BodyDigest::of(body),
        };
        verifier
            .check(&proof, proof.ts)
            .unwrap()
            .verify(&wire)
            .unwrap();
    }

    #[test]
    fn target_is_the_normalised_path_and_query() {
        let c = client("http://localhost:8080");
        for (path, wire) in [
            ("/user", "/user"),
            ("/a/./b/../c?x=1&y", "/a/c?x=1&y"),
            ("/search?q=a b", "/search?q=a%20b"),
            ("/bare?", "/bare?"),
            ("/with#fragment", "/with"),
            ("//double", "//double"),
        ] {
            let request = c.request(Method::GET, path).build().unwrap();
            assert_verifies(&request, wire, b"");
        }
    }

    #[test]
    fn base_path_prefix_is_kept_once() {
        for base in ["http://h:1/prefix", "http://h:1/prefix/"] {
            let request = client(base).request(Method::GET, "/x?y").build().unwrap();
            assert_eq!(request.url().as_str(), "http://h:1/prefix/x?y");
            assert_verifies(&request, "/prefix/x?y", b"");
        }
    }

    #[test]
    fn body_bytes_are_signed() {
        let request = client("http://h")
            .request(Method::POST, "/repos/o/r/issues")
            .header("content-type", "application/json")
            .body(r#"{"title":"t"}"#)
            .build()
            .unwrap();
        assert_verifies(&request, "/repos/o/r/issues", br#"{"title":"t"}"#);
    }

    #[test]
    fn an_existing_proof_header_is_replaced() {
        let request = client("http://h")
            .request(Method::GET, "/")
            .header("signet-proof", "v1;forged")
            .build()
            .unwrap();
        assert_verifies(&request, "/", b"");
    }

    #[test]
    fn proof_header_is_marked_sensitive() {
        let request = client("http://h")
            .request(Method::GET, "/")
            .build()
            .unwrap();
        assert!(request.headers()[SIGNET_PROOF].is_sensitive());
    }

    #[test]
    fn streaming_body_is_refused() {
        let err = client("http://h")
            .request(Method::POST, "/")
            .body(reqwest::Body::wrap(String::from("streamed")))
            .build()
            .unwrap_err();
        assert!(matches!(err, ClientError::Sign(SignError::StreamingBody)));
    }

    #[test]
    fn sign_request_works_with_any_reqwest_client() {
        let mut request = reqwest::Client::new()
            .put("https://proxy.example/x?")
            .body(vec![1, 2, 3])
            .build()
            .unwrap();
        sign_request(&Signer::new(master()), &mut request).unwrap();
        assert_verifies(&request, "/x?", &[1, 2, 3]);
    }

    #[test]
    fn relative_paths_are_refused() {
        let err = client("http://h").request(Method::GET, "user").build();
        assert!(matches!(err, Err(ClientError::InvalidPath(_))));
    }

    #[test]
    fn base_url_must_be_http_without_query() {
        let signer = Arc::new(Signer::new(master()));
        for bad in [
            "localhost:8080",
            "ftp://h/",
            "http://h/?q",
            "http://h/#f",
            "/x",
            "",
        ] {
            let err = SignetClient::new(bad, Arc::clone(&signer)).unwrap_err();
            assert!(matches!(err, ClientError::InvalidBaseUrl(_)), "{bad}");
        }
    }
}
