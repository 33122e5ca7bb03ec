//! `signet curl` against a local HTTP server that verifies every proof it
//! receives.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use assert_cmd::Command;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use predicates::prelude::*;
use signet_core::{
    parse_public_key_hex, BodyDigest, Limits, ProofHeader, RequestParts, Verifier, VerifyingKey,
};
use tempfile::TempDir;

use crate::support::{keygen, now, signet};

/// What the test server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: hyper::HeaderMap,
    body: Bytes,
}

type Chunks = tokio::sync::mpsc::UnboundedSender<Bytes>;

/// The server side of one test: what it saw, and the sender of the body
/// being streamed to `/stream`.
#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    stream: Mutex<Option<Chunks>>,
}

/// A local HTTP server standing in for the proxy: it verifies each request's
/// Signet-Proof against `master` (401 with the reason if it does not), then
/// answers `/missing*` with 404, `/stream` with a body the test sends chunk
/// by chunk, and anything else with 200 JSON.
struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

/// A response body fed from a channel, ending when the sender is dropped.
struct ChannelBody(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

impl TestServer {
    fn start(master: VerifyingKey) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let verifier = Arc::new(Verifier::new([master], Limits::default()));
        let state = (Arc::clone(&shared), verifier);
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let (shared, verifier) = state.clone();
                        handle(request, shared, verifier)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestServer {
            addr,
            shared,
            _runtime: runtime,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The sender of the `/stream` body, once that request has arrived.
    fn stream(&self) -> Option<Chunks> {
        self.shared.stream.lock().unwrap().take()
    }
}

async fn handle(
    request: hyper::Request<Incoming>,
    shared: Arc<Shared>,
    verifier: Arc<Verifier>,
) -> Result<hyper::Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let method = parts.method.as_str().to_owned();
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_default();
    shared.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        target: target.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });

    let proofs: Vec<_> = parts.headers.get_all("signet-proof").iter().collect();
    let verified = match proofs.as_slice() {
        [one] => ProofHeader::parse(one.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|proof| {
                let request = RequestParts {
                    method: &method,
                    target: &target,
                    body_digest: BodyDigest::of(&body),
                };
                verifier
                    .check(&proof, now())
                    .and_then(|checked| checked.verify(&request))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }),
        _ => Err(format!("{} Signet-Proof headers", proofs.len())),
    };

    let full = |json: String| Full::new(Bytes::from(json)).boxed();
    let (status, body) = match verified {
        Err(reason) => (401, full(format!(r#"{{"error":{reason:?}}}"#))),
        Ok(()) if target.starts_with("/missing") => {
            (404, full(r#"{"message":"Not Found"}"#.into()))
        }
        Ok(()) if target == "/stream" => {
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            sender.send(Bytes::from("first\n")).unwrap();
            *shared.stream.lock().unwrap() = Some(sender);
            (200, ChannelBody(receiver).boxed())
        }
        Ok(()) => (
            200,
            full(format!(r#"{{"method":"{method}","target":{target:?}}}"#)),
        ),
    };
    let response = hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-test", "yes")
        .body(body)
        .unwrap();
    Ok(response)
}

/// `signet curl` with a fresh key, against a fresh server trusting it.
struct CurlSetup {
    dir: TempDir,
    key: PathBuf,
    server: TestServer,
}

impl CurlSetup {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        let (key, public) = keygen(&dir);
        let server = TestServer::start(parse_public_key_hex(&public).unwrap());
        CurlSetup { dir, key, server }
    }

    fn curl(&self) -> Command {
        let mut cmd = signet();
        cmd.arg("curl")
            .arg("--key")
            .arg(&self.key)
            .args(["--proxy", &self.server.url()]);
        cmd
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }
}

#[test]
fn curl_sends_a_verified_request_and_prints_the_body() {
    let setup = CurlSetup::new();
    setup
        .curl()
        .args(["GET", "/repos/o/r?per_page=2"])
        .assert()
        .success()
        .stdout(r#"{"method":"GET","target":"/repos/o/r?per_page=2"}"#)
        .stderr("HTTP/1.1 200 OK\n");

    let seen = setup.server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].target, "/repos/o/r?per_page=2");
    assert!(seen[0].body.is_empty());
    let agent = seen[0].headers["user-agent"].to_str().unwrap();
    assert!(agent.starts_with("signet/"), "{agent}");
}

#[test]
fn curl_signs_data_and_headers_are_passed_through() {
    let setup = CurlSetup::new();
    let data = setup.dir().join("issue.json");
    std::fs::write(&data, r#"{"title":"t"}"#).unwrap();
    setup
        .curl()
        .args(["POST", "/repos/o/r/issues"])
        .arg(format!("--data=@{}", data.display()))
        .args(["-H", "Accept: application/vnd.github+json"])
        .args(["-H", "X-GitHub-Api-Version:2022-11-28"])
        .assert()
        .success()
        .stderr("HTTP/1.1 200 OK\n");

    let seen = setup.server.seen();
    assert_eq!(seen[0].body, r#"{"title":"t"}"#);
    assert_eq!(seen[0].headers["accept"], "application/vnd.github+json");
    assert_eq!(seen[0].headers["x-github-api-version"], "2022-11-28");
    assert_eq!(seen[0].headers["content-type"], "application/json");
}

#[test]
fn curl_keeps_a_content_type_given_with_h() {
    let setup = CurlSetup::new();
    setup
        .curl()
        .args(["PUT", "/x", "-d", "a=b", "-H", "Content-Type: text/plain"])
        .assert()
        .success();
    let seen = setup.server.seen();
    assert_eq!(seen[0].headers["content-type"], "text/plain");
    assert_eq!(seen[0].body, "a=b");
}

#[test]
fn curl_exits_22_on_an_error_status_and_still_prints_the_body() {
    let setup = CurlSetup::new();
    setup
        .curl()
        .args(["GET", "/missing"])
        .assert()
        .code(22)
        .stdout(r#"{"message":"Not Found"}"#)
        .stderr("HTTP/1.1 404 Not Found\n");
}

#[test]
fn curl_streams_the_body_to_stdout_as_it_arrives() {
    use std::io::Read as _;
    use std::time::Duration;

    let setup = CurlSetup::new();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("signet"))
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .arg("curl")
        .arg("--key")
        .arg(&setup.key)
        .args(["--proxy", &setup.server.url(), "GET", "/stream"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (chunks, received) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => chunks.send(buf[..n].to_vec()).unwrap(),
            }
        }
    });

    // The first chunk is on stdout while the server still holds the rest.
    let first = received.recv_timeout(Duration::from_secs(30));
    if first.is_err() {
        let _ = child.kill();
    }
    assert_eq!(first.unwrap(), b"first\n");
    let sender = setup.server.stream().unwrap();
    sender.send(Bytes::from("second\n")).unwrap();
    drop(sender);

    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    let rest: Vec<u8> = received.iter().flatten().collect();
    assert_eq!(rest, b"second\n");
}

#[test]
fn curl_include_prints_response_headers_to_stderr() {
    let setup = CurlSetup::new();
    setup
        .curl()
        .args(["-i", "GET", "/user"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("{"))
        .stderr(predicate::str::starts_with("HTTP/1.1 200 OK\n"))
        .stderr(predicate::str::contains("x-test: yes\n"))
        .stderr(predicate::str::contains("content-type: application/json\n"));
}

#[test]
fn curl_signs_the_target_as_sent_after_url_normalisation() {
    let setup = CurlSetup::new();
    setup
        .curl()
        .args(["GET", "/a/./b/../c?q=x y"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "the request target is sent (and signed) as /a/c?q=x%20y",
        ));
    assert_eq!(setup.server.seen()[0].target, "/a/c?q=x%20y");
}

#[test]
fn curl_uses_the_purpose_and_the_proxy_from_the_environment() {
    let setup = CurlSetup::new();
    let mut cmd = signet();
    cmd.args(["curl", "GET", "/user"])
        .env("SIGNET_KEY_FILE", &setup.key)
        .env("SIGNET_PROXY", setup.server.url())
        .env("SIGNET_PURPOSE", "ci")
        .assert()
        .success();
    let seen = setup.server.seen();
    let header = seen[0].headers["signet-proof"].to_str().unwrap();
    let proof = ProofHeader::parse(header.as_bytes()).unwrap();
    assert_eq!(proof.pur.as_str(), "ci");
}

#[test]
fn curl_exits_7_when_the_proxy_cannot_be_reached() {
    let dir = TempDir::new().unwrap();
    let (key, _) = keygen(&dir);
    // A port that was just free and has nothing listening.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    signet()
        .args(["curl", "--key"])
        .arg(&key)
        .args(["--proxy", &format!("http://{addr}"), "GET", "/user"])
        .assert()
        .code(7)
        .stdout("")
        .stderr(predicate::str::starts_with(format!(
            "signet: cannot reach the proxy at http://{addr}: "
        )));
}

#[test]
fn curl_refuses_to_send_a_user_supplied_proof() {
    let setup = CurlSetup::new();
    setup
        .curl()
        .args(["GET", "/user", "-H", "Signet-Proof: v1;forged"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("made by signet"));
    assert!(setup.server.seen().is_empty());
}
