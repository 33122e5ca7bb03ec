//! The `signet` binary, end to end: key files, header output, and `curl`
//! against a local HTTP server that verifies every proof it receives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

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

mod agent;
mod fuzz_corpus;

// ---------------------------------------------------------------- helpers

/// The `signet` binary, unaffected by the caller's environment (its own
/// variables, and forward-proxy settings that reqwest would follow).
fn signet() -> Command {
    let mut cmd = Command::cargo_bin("signet").unwrap();
    for var in [
        "SIGNET_KEY_FILE",
        "SIGNET_PROXY",
        "SIGNET_PURPOSE",
        "http_proxy",
        "HTTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `signet keygen --out DIR/master-key.pem`; returns the path and the
/// printed public key.
fn keygen(dir: &TempDir) -> (PathBuf, String) {
    let path = dir.path().join("master-key.pem");
    let output = signet()
        .args(["keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    (path, stdout_line(&output.stdout))
}

fn stdout_line(stdout: &[u8]) -> String {
    let text = std::str::from_utf8(stdout).unwrap();
    assert!(
        text.ends_with('\n') && text.lines().count() == 1,
        "{text:?}"
    );
    text.trim_end().to_owned()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Verifies a header value as the proxy would, now, for this request.
fn verify(
    header: &str,
    master: &VerifyingKey,
    method: &str,
    target: &str,
    body: &[u8],
) -> Result<ProofHeader, String> {
    let proof = ProofHeader::parse(header.as_bytes()).map_err(|e| e.to_string())?;
    let verifier = Verifier::new([*master], Limits::default());
    let request = RequestParts {
        method,
        target,
        body_digest: BodyDigest::of(body),
    };
    verifier
        .check(&proof, now())
        .map_err(|e| e.to_string())?
        .verify(&request)
        .map_err(|e| e.to_string())?;
    Ok(proof)
}

fn is_lower_hex_key(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

// ---------------------------------------------------------------- keygen

#[test]
fn keygen_writes_a_private_pkcs8_pem_and_prints_its_public_key() {
    let dir = TempDir::new().unwrap();
    let (path, public) = keygen(&dir);

    assert!(is_lower_hex_key(&public), "{public}");
    assert!(parse_public_key_hex(&public).is_ok());
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let key = signet_core::signing_key_from_pem(&pem).unwrap();
    assert_eq!(signet_core::public_key_hex(&key.verifying_key()), public);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn keygen_makes_a_new_key_each_time() {
    let (a, b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    assert_ne!(keygen(&a).1, keygen(&b).1);
}

#[test]
fn keygen_refuses_to_overwrite_without_force() {
    let dir = TempDir::new().unwrap();
    let (path, _) = keygen(&dir);
    let before = std::fs::read(&path).unwrap();

    signet()
        .args(["keygen", "--out"])
        .arg(&path)
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("already exists; use --force"));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn keygen_force_replaces_the_key_and_makes_it_private() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("master-key.pem");
    std::fs::write(&path, "old").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    let output = signet()
        .args(["keygen", "--force", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let public = stdout_line(&output.stdout);
    let pem = std::fs::read_to_string(&path).unwrap();
    let key = signet_core::signing_key_from_pem(&pem).unwrap();
    assert_eq!(signet_core::public_key_hex(&key.verifying_key()), public);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // No temporary file is left beside the key.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn keygen_writes_master_key_pem_in_the_current_directory_by_default() {
    let dir = TempDir::new().unwrap();
    signet()
        .arg("keygen")
        .current_dir(dir.path())
        .assert()
        .success();
    assert!(dir.path().join("master-key.pem").is_file());
}

// ---------------------------------------------------------------- export-key-id

#[test]
fn export_key_id_prints_the_public_key_that_keygen_printed() {
    let dir = TempDir::new().unwrap();
    let (path, public) = keygen(&dir);
    signet()
        .args(["export-key-id", "--key"])
        .arg(&path)
        .assert()
        .success()
        .stdout(format!("{public}\n"));
    // The default file name, and the environment variable.
    signet()
        .arg("export-key-id")
        .current_dir(dir.path())
        .assert()
        .success()
        .stdout(format!("{public}\n"));
    signet()
        .arg("export-key-id")
        .env("SIGNET_KEY_FILE", &path)
        .assert()
        .success()
        .stdout(format!("{public}\n"));
}

#[test]
fn a_missing_key_file_is_a_clear_error() {
    let dir = TempDir::new().unwrap();
    signet()
        .args(["export-key-id", "--key"])
        .arg(dir.path().join("nope.pem"))
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::starts_with("signet: cannot read key file "))
        .stderr(predicate::str::contains("nope.pem"));
}

#[test]
fn a_key_file_that_is_not_a_pem_is_refused_without_echoing_it() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("bad.pem");
    std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\nU0VDUkVUCg==\n").unwrap();
    signet()
        .args(["export-key-id", "--key"])
        .arg(&path)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("PKCS#8"))
        .stderr(predicate::str::contains("U0VDUkVUCg").not());
}

// ---------------------------------------------------------------- interop

/// Runs a real tool (the test script installs it); a missing tool fails the
/// test instead of skipping it.
fn run_tool(program: &str, args: &[&str]) -> std::process::Output {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed (scripts/test installs it): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn a_key_from_keygen_loads_in_openssl_with_the_same_public_key() {
    let dir = TempDir::new().unwrap();
    let (path, public) = keygen(&dir);
    let path = path.to_str().unwrap();
    run_tool("openssl", &["pkey", "-in", path, "-noout"]);
    let der = run_tool(
        "openssl",
        &["pkey", "-in", path, "-pubout", "-outform", "DER"],
    )
    .stdout;
    assert!(der.len() >= 32, "{der:?}");
    let derived: String = der[der.len() - 32..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(derived, public);
}

#[test]
fn a_key_from_keygen_loads_in_python_cryptography_with_the_same_public_key() {
    let dir = TempDir::new().unwrap();
    let (path, public) = keygen(&dir);
    let script = "import sys\n\
from cryptography.hazmat.primitives.serialization import load_pem_private_key, Encoding, PublicFormat\n\
key = load_pem_private_key(open(sys.argv[1], 'rb').read(), password=None)\n\
print(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex())";
    let output = run_tool("python3", &["-c", script, path.to_str().unwrap()]);
    assert_eq!(stdout_line(&output.stdout), public);
}

#[test]
fn a_key_made_by_openssl_signs_proofs_that_verify() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("openssl-key.pem");
    run_tool(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "ed25519",
            "-out",
            path.to_str().unwrap(),
        ],
    );
    let output = signet()
        .args(["export-key-id", "--key"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let public = stdout_line(&output.stdout);
    let output = signet()
        .args(["sign", "--key"])
        .arg(&path)
        .args(["GET", "/user"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let master = parse_public_key_hex(&public).unwrap();
    assert!(verify(&stdout_line(&output.stdout), &master, "GET", "/user", b"").is_ok());
}

// ---------------------------------------------------------------- sign

#[test]
fn sign_prints_a_proof_that_verifies_for_a_post_with_data() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let body = r#"{"title":"Found a bug"}"#;
    let output = signet()
        .args(["sign", "--key"])
        .arg(&key)
        .args(["POST", "/repos/o/r/issues?x=1", "--data", body])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let header = stdout_line(&output.stdout);

    let master = parse_public_key_hex(&public).unwrap();
    let proof = verify(
        &header,
        &master,
        "POST",
        "/repos/o/r/issues?x=1",
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(proof.pur.as_str(), "");
    assert!(proof.exp.abs_diff(now() + 300) <= 2, "default ttl is 5m");
    // The signature covers the body.
    assert!(verify(&header, &master, "POST", "/repos/o/r/issues?x=1", b"").is_err());
}

#[test]
fn sign_reads_data_from_a_file() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let body = b"{\"body\":\"line one\\nline two\"}\n\x00binary";
    let data = dir.path().join("body.json");
    std::fs::write(&data, body).unwrap();

    let output = signet()
        .args(["sign", "--key"])
        .arg(&key)
        .args(["PATCH", "/repos/o/r/issues/1"])
        .arg(format!("--data=@{}", data.display()))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let master = parse_public_key_hex(&public).unwrap();
    verify(
        &stdout_line(&output.stdout),
        &master,
        "PATCH",
        "/repos/o/r/issues/1",
        body,
    )
    .unwrap();
}

#[test]
fn sign_reads_data_from_stdin() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let output = signet()
        .args(["sign", "--key"])
        .arg(&key)
        .args(["PUT", "/x", "-d", "@-"])
        .write_stdin("from stdin")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let master = parse_public_key_hex(&public).unwrap();
    verify(
        &stdout_line(&output.stdout),
        &master,
        "PUT",
        "/x",
        b"from stdin",
    )
    .unwrap();
}

#[test]
fn sign_without_data_signs_an_empty_body() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let output = signet()
        .args(["sign", "--key"])
        .arg(&key)
        .args(["GET", "/user"])
        .output()
        .unwrap();
    let master = parse_public_key_hex(&public).unwrap();
    verify(&stdout_line(&output.stdout), &master, "GET", "/user", b"").unwrap();
}

#[test]
fn sign_writes_purpose_and_ttl_into_the_binding() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let output = signet()
        .args(["sign", "--key"])
        .arg(&key)
        .args(["--purpose", "ci:deploy", "--ttl", "1m30s", "GET", "/user"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let master = parse_public_key_hex(&public).unwrap();
    let proof = verify(&stdout_line(&output.stdout), &master, "GET", "/user", b"").unwrap();
    assert_eq!(proof.pur.as_str(), "ci:deploy");
    assert!(proof.exp.abs_diff(now() + 90) <= 2);
}

#[test]
fn sign_refuses_a_target_that_is_not_origin_form() {
    let dir = TempDir::new().unwrap();
    let (key, _) = keygen(&dir);
    for target in ["user", "https://api.github.com/user", "/a b"] {
        signet()
            .args(["sign", "--key"])
            .arg(&key)
            .args(["GET", target])
            .assert()
            .code(1)
            .stdout("")
            .stderr(predicate::str::contains("invalid request target"));
    }
}

#[test]
fn sign_refuses_a_bad_purpose_or_ttl() {
    let dir = TempDir::new().unwrap();
    let (key, _) = keygen(&dir);
    signet()
        .args(["sign", "--key"])
        .arg(&key)
        .args(["--purpose", "no spaces", "GET", "/"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("invalid purpose"));
    signet()
        .args(["sign", "--key"])
        .arg(&key)
        .args(["--ttl", "1h", "GET", "/"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("between 1s and 15m"));
}

// ---------------------------------------------------------------- curl

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

// ------------------------------------------------- through the real proxy

/// The real `signet-proxy` (in-process, on `127.0.0.1:0`) in front of the
/// GitHub API stand-in, trusting `master_hex`.
struct RealProxy {
    url: String,
    upstream: signet_standin::StandIn,
    _runtime: tokio::runtime::Runtime,
}

const SHARED_TOKEN: &str = "ghs_shared_token_for_cli_tests";

fn real_proxy(master_hex: &str) -> RealProxy {
    real_proxy_with(master_hex, |_| {})
}

fn real_proxy_with(master_hex: &str, tweak: impl FnOnce(&mut signet_proxy::Config)) -> RealProxy {
    use signet_proxy::{Config, GitHubToken, Server, Upstream};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (upstream, addr) = runtime.block_on(async {
        let upstream = signet_standin::StandIn::start(Some(SHARED_TOKEN))
            .await
            .unwrap();
        let mut config = Config::new(
            Upstream::parse(&upstream.url()).unwrap(),
            vec![parse_public_key_hex(master_hex).unwrap()],
            GitHubToken::new(SHARED_TOKEN).unwrap(),
        );
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        tweak(&mut config);
        let server = Server::bind(&config).await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(server.run(std::future::pending()));
        (upstream, addr)
    });
    RealProxy {
        url: format!("http://{addr}"),
        upstream,
        _runtime: runtime,
    }
}

#[test]
fn curl_through_the_real_proxy_reaches_the_upstream_with_the_shared_token() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let proxy = real_proxy(&public);
    let body = dir.path().join("issue.json");
    std::fs::write(&body, br#"{"title":"signed \u00e9"}"#).unwrap();

    signet()
        .args(["curl", "--key"])
        .arg(&key)
        .args(["--proxy", &proxy.url, "POST", "/echo?x=1&y=%2C", "--data"])
        .arg(format!("@{}", body.display()))
        .args(["-H", "Accept: application/vnd.github+json"])
        .assert()
        .success()
        .stdout(r#"{"title":"signed \u00e9"}"#)
        .stderr(predicate::str::contains("200"));

    let seen = proxy.upstream.requests();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, "/echo?x=1&y=%2C");
    assert_eq!(&request.body[..], br#"{"title":"signed \u00e9"}"#);
    assert_eq!(
        request.headers["authorization"],
        format!("Bearer {SHARED_TOKEN}").as_str()
    );
    assert_eq!(request.headers["accept"], "application/vnd.github+json");
    assert!(!request.headers.contains_key("signet-proof"));
}

#[test]
fn curl_with_an_untrusted_key_is_refused_by_the_real_proxy_and_exits_22() {
    let dir = TempDir::new().unwrap();
    let (_trusted, public) = keygen(&dir);
    let other_dir = TempDir::new().unwrap();
    let (untrusted, _) = keygen(&other_dir);
    let proxy = real_proxy(&public);

    signet()
        .args(["curl", "--key"])
        .arg(&untrusted)
        .args(["--proxy", &proxy.url, "GET", "/user"])
        .assert()
        .code(22)
        .stdout(predicate::str::contains(r#""code":"UNKNOWN_KEY""#))
        .stderr(predicate::str::contains("401"));
    assert!(proxy.upstream.requests().is_empty());
}

#[test]
fn admin_revokes_and_restores_a_client_through_the_real_proxy() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let admin_dir = TempDir::new().unwrap();
    let (admin_key, admin_public) = keygen(&admin_dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin_url = format!("http://127.0.0.1:{port}");
    let proxy = real_proxy_with(&public, |config| {
        config.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], port)));
        config.admin_key = Some(parse_public_key_hex(&admin_public).unwrap());
    });
    let admin_as = |key: &Path, args: &[&str]| {
        let mut command = signet();
        command
            .arg("admin")
            .arg("--key")
            .arg(key)
            .args(["--admin-url", &admin_url])
            .args(args);
        command
    };
    let admin = |args: &[&str]| admin_as(&admin_key, args);
    let listed = admin(&["clients"]).output().unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let name = listed["clients"][0]["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("key:"), "{name}");

    admin(&["revoke", "--client", &name]).assert().success();
    signet()
        .args(["curl", "--key"])
        .arg(&key)
        .args(["--proxy", &proxy.url, "GET", "/user"])
        .assert()
        .code(22)
        .stdout(predicate::str::contains(r#""code":"UNKNOWN_KEY""#));
    admin(&["unrevoke", "--client", &name]).assert().success();
    signet()
        .args(["curl", "--key"])
        .arg(&key)
        .args(["--proxy", &proxy.url, "GET", "/user"])
        .assert()
        .success();
    admin(&["stats"])
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""clients":1"#));
    // A key that is not the admin key is refused, and signet says so.
    admin_as(&key, &["stats"])
        .assert()
        .code(22)
        .stdout(predicate::str::contains("UNKNOWN_KEY"));
    assert_eq!(proxy.upstream.requests().len(), 1);
}
