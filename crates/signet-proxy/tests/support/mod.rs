//! Builders for the integration tests: the GitHub API stand-in and the real
//! proxy, both on `127.0.0.1:0`; a signer with throwaway keys; and a raw
//! HTTP/1.1 client, so a test controls every byte it sends (absolute-form
//! targets, forged `Host`, repeated or non-ASCII headers, chunked bodies).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use signet_core::{
    Binding, BodyDigest, ErrorCode, ProofHeader, Purpose, RequestParts, SigningKey, VerifyingKey,
};
use signet_proxy::standin::StandIn;
use signet_proxy::{Clock, Config, GitHubToken, Server, Upstream};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The shared GitHub token every test proxy injects.
pub const TOKEN: &str = "ghs_integrationTestToken_7Qx2Lm9Vb4";

/// The proxy's fixed `now` in tests that use a fixed clock.
pub const NOW: u64 = 1_750_000_000;

/// Longest any single exchange with the proxy may take before a test fails.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Keys and proofs
// ---------------------------------------------------------------------------

/// `N` random bytes.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("random bytes");
    bytes
}

/// A throwaway Ed25519 key.
pub fn random_key() -> SigningKey {
    SigningKey::from_bytes(&random_bytes())
}

/// What a test may choose about a proof besides the request it covers.
#[derive(Debug, Clone, Copy)]
pub struct Claims<'a> {
    /// Binding expiry.
    pub exp: u64,
    /// Request time.
    pub ts: u64,
    /// Binding purpose.
    pub purpose: &'a str,
}

impl Default for Claims<'_> {
    fn default() -> Self {
        Claims {
            exp: NOW + 300,
            ts: NOW,
            purpose: "test",
        }
    }
}

/// A master key that signs proofs the way a client does: a fresh ephemeral
/// key and nonce for every proof.
#[derive(Debug)]
pub struct Signer {
    master: SigningKey,
}

impl Signer {
    /// A signer with a new random master key.
    pub fn new() -> Self {
        Signer {
            master: random_key(),
        }
    }

    /// A signer for a given master key.
    pub fn with_master(master: SigningKey) -> Self {
        Signer { master }
    }

    /// The master public key a proxy must trust.
    pub fn key(&self) -> VerifyingKey {
        self.master.verifying_key()
    }

    /// The master private key.
    pub fn master(&self) -> &SigningKey {
        &self.master
    }

    /// A valid proof (default claims) as a header value.
    pub fn sign(&self, method: &str, target: &str, body: &[u8]) -> String {
        self.sign_with(Claims::default(), method, target, body)
            .to_string()
    }

    /// A proof with the given claims, as a parsed header the test may tamper with.
    pub fn sign_with(
        &self,
        claims: Claims<'_>,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> ProofHeader {
        self.sign_with_nonce(claims, method, target, body, random_bytes())
    }

    /// Like [`Signer::sign_with`] with a chosen nonce.
    pub fn sign_with_nonce(
        &self,
        claims: Claims<'_>,
        method: &str,
        target: &str,
        body: &[u8],
        nonce: [u8; 16],
    ) -> ProofHeader {
        let ephemeral = random_key();
        let purpose = Purpose::new(claims.purpose).expect("test purposes are valid");
        let binding = Binding::sign(
            &self.master,
            &ephemeral.verifying_key(),
            claims.exp,
            purpose,
        );
        let request = RequestParts {
            method,
            target,
            body_digest: BodyDigest::of(body),
        };
        binding.sign_request(&ephemeral, &request, claims.ts, nonce)
    }

    /// Like [`Signer::sign_with`], signed by a chosen ephemeral key: several
    /// proofs of one binding, as a client makes them until its binding expires.
    pub fn sign_with_ephemeral(
        &self,
        claims: Claims<'_>,
        ephemeral: &SigningKey,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> ProofHeader {
        let purpose = Purpose::new(claims.purpose).expect("test purposes are valid");
        let binding = Binding::sign(
            &self.master,
            &ephemeral.verifying_key(),
            claims.exp,
            purpose,
        );
        let request = RequestParts {
            method,
            target,
            body_digest: BodyDigest::of(body),
        };
        binding.sign_request(ephemeral, &request, claims.ts, random_bytes())
    }
}

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

/// Polls until `check` holds (bounded, 20 s): for what happens in the
/// background (reloads, rotations, Redis sync); whether it did.
pub async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// A configuration for a proxy in front of `upstream_url`, trusting
/// `signer`, listening on `127.0.0.1:0`, with its clock fixed at [`NOW`].
pub fn config(upstream_url: &str, signer: &Signer) -> Config {
    let mut config = Config::new(
        Upstream::parse(upstream_url).expect("upstream URL"),
        vec![signer.key()],
        GitHubToken::new(TOKEN).expect("token"),
    );
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.clock = Clock::fixed(NOW);
    config
}

/// The real proxy server, running on its own task until dropped.
#[derive(Debug)]
pub struct RunningProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningProxy {
    /// Binds and starts the proxy for `config`.
    pub async fn start(config: &Config) -> RunningProxy {
        let server = Server::bind(config).await.expect("the proxy binds");
        Self::run(server)
    }

    /// Starts a proxy with an explicitly sized replay store.
    pub async fn start_with_replay_capacity(config: &Config, capacity: usize) -> RunningProxy {
        let mut config = config.clone();
        config.replay_capacity = capacity;
        let server = Server::bind(&config).await.expect("the proxy binds");
        Self::run(server)
    }

    fn run(server: Server) -> RunningProxy {
        let addr = server.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        RunningProxy {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A recording stand-in for the GitHub API, a signer, and the proxy between
/// them: what almost every test starts with.
#[derive(Debug)]
pub struct Env {
    /// The recording upstream.
    pub upstream: StandIn,
    /// The trusted master key.
    pub signer: Signer,
    /// The proxy.
    pub proxy: RunningProxy,
}

impl Env {
    /// Default configuration.
    pub async fn start() -> Env {
        Self::start_with(|_| {}).await
    }

    /// Default configuration changed by `tweak` before the proxy starts.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Env {
        let upstream = StandIn::start(Some(TOKEN)).await.expect("stand-in starts");
        let signer = Signer::new();
        let mut config = config(&upstream.url(), &signer);
        tweak(&mut config);
        let proxy = RunningProxy::start(&config).await;
        Env {
            upstream,
            signer,
            proxy,
        }
    }

    /// Sends `request` to the proxy.
    pub async fn send(&self, request: &Request) -> Reply {
        send(self.proxy.addr, request).await
    }

    /// Asserts that the upstream received no request at all.
    pub fn assert_nothing_forwarded(&self) {
        let seen = self.upstream.requests();
        assert!(
            seen.is_empty(),
            "the upstream must receive nothing, got {:?}",
            seen.iter()
                .map(|r| format!("{} {}", r.method, r.target))
                .collect::<Vec<_>>()
        );
    }
}

/// The address of a port on which nothing listens.
pub async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

/// An upstream that reads each request's head, writes `response` verbatim
/// (possibly nothing, or a cut-off message) and hangs up. For failures the
/// stand-in cannot produce. Stops when the test's runtime ends.
pub async fn raw_upstream(response: &'static [u8]) -> SocketAddr {
    scripted_upstream(response, Duration::ZERO).await
}

/// Like [`raw_upstream`], but keeps each connection open (silent) for a
/// minute after writing `response`: an upstream whose body stalls.
pub async fn stalling_upstream(response: &'static [u8]) -> SocketAddr {
    scripted_upstream(response, Duration::from_secs(60)).await
}

/// Reads a request head (through its blank line) from `stream`; `None` if
/// the peer left first.
pub async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}

async fn scripted_upstream(response: &'static [u8], hold: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if crate::support::read_head(&mut stream).await.is_none() {
                    return;
                }
                let _ = stream.write_all(response).await;
                if !hold.is_zero() {
                    tokio::time::sleep(hold).await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// A real `redis-server` on a free loopback port, with nothing persisted;
/// killed when dropped. The test script installs Debian's `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    password: Option<String>,
    tls: bool,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts one on a free port.
    pub async fn start() -> RedisServer {
        Self::start_on(free_port(), None).await
    }

    /// Starts one that requires `password`.
    pub async fn start_with_password(password: &str) -> RedisServer {
        Self::start_on(free_port(), Some(password.to_owned())).await
    }

    /// Starts one on `port` (to bring a stopped server back where it was).
    pub async fn start_on(port: u16, password: Option<String>) -> RedisServer {
        Self::spawn(port, password, &[]).await
    }

    /// Starts one that speaks TLS only, with this certificate and key (PEM
    /// files); clients need no certificate of their own.
    pub async fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> RedisServer {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let port = free_port().to_string();
        let args = [
            "--port",
            "0",
            "--tls-port",
            &port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &cert,
            "--tls-auth-clients",
            "no",
        ];
        let mut server = Self::spawn(port.parse().expect("port"), None, &args).await;
        server.tls = true;
        server
    }

    async fn spawn(port: u16, password: Option<String>, extra: &[&str]) -> RedisServer {
        let mut command = std::process::Command::new("redis-server");
        let listen = if extra.is_empty() {
            vec!["--port".to_owned(), port.to_string()]
        } else {
            extra.iter().map(|a| (*a).to_owned()).collect()
        };
        command
            .args(&listen)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(password) = &password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        let server = RedisServer {
            port,
            password,
            tls: false,
            child: Some(child),
        };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not listen on {port}");
    }

    /// `redis://[:password@]127.0.0.1:port`, or `rediss://localhost:port`.
    pub fn url(&self) -> String {
        if self.tls {
            return format!("rediss://localhost:{}", self.port);
        }
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Kills it; its records are gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

// ---------------------------------------------------------------------------
// A raw HTTP/1.1 client
// ---------------------------------------------------------------------------

enum Framing {
    None,
    Sized(Vec<u8>),
    Chunked(Vec<Vec<u8>>),
}

/// One HTTP/1.1 request, written byte for byte as built.
pub struct Request {
    method: String,
    target: String,
    host: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    framing: Framing,
}

impl Request {
    /// A request line `METHOD target HTTP/1.1`; `Host` defaults to the proxy's address.
    pub fn new(method: &str, target: &str) -> Self {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            host: None,
            headers: Vec::new(),
            framing: Framing::None,
        }
    }

    /// A GET.
    pub fn get(target: &str) -> Self {
        Self::new("GET", target)
    }

    /// Adds a header line; the value's bytes are sent as they are.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// Adds a `Signet-Proof` header.
    pub fn proof(self, proof: impl std::fmt::Display) -> Self {
        self.header("Signet-Proof", proof.to_string())
    }

    /// Sets the `Host` header instead of the proxy's address.
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.as_bytes().to_vec());
        self
    }

    /// A body sent with `Content-Length`.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.framing = Framing::Sized(body.into());
        self
    }

    /// A body sent with `Transfer-Encoding: chunked`, one chunk per element.
    pub fn chunked(mut self, chunks: Vec<Vec<u8>>) -> Self {
        self.framing = Framing::Chunked(chunks);
        self
    }

    /// The request's bytes, with `Host: default_host` unless one was set.
    pub fn to_bytes(&self, default_host: &str) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(self.host.as_deref().unwrap_or(default_host.as_bytes()));
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        match &self.framing {
            Framing::None => out.extend_from_slice(b"\r\n"),
            Framing::Sized(body) => {
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                out.extend_from_slice(body);
            }
            Framing::Chunked(chunks) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for chunk in chunks.iter().filter(|c| !c.is_empty()) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
        }
        out
    }
}

/// A response as received.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Header lines in order, names lower-cased.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, transfer coding removed.
    pub body: Vec<u8>,
    /// Every byte received.
    pub raw: Vec<u8>,
}

impl Reply {
    /// Every value of header `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The one value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut all = self.all(name);
        assert!(all.len() <= 1, "header {name} appears {} times", all.len());
        all.pop()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` on a new connection and reads one response.
pub async fn send(addr: SocketAddr, request: &Request) -> Reply {
    let bytes = request.to_bytes(&addr.to_string());
    send_raw(addr, &bytes, request.method == "HEAD").await
}

/// Writes `bytes` on a new connection and reads one response (`head`: the
/// request was a HEAD, so the response has no body).
pub async fn send_raw(addr: SocketAddr, bytes: &[u8], head: bool) -> Reply {
    tokio::time::timeout(EXCHANGE_LIMIT, async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to proxy");
        // A refusal may come (and the connection close) before the whole
        // request is written; the response is still read below.
        let _ = stream.write_all(bytes).await;
        read_reply(&mut stream, head).await
    })
    .await
    .expect("the proxy answers in time")
}

/// Sends `request` and returns every byte received until the proxy closes
/// the connection (or resets it), for responses that are cut off.
pub async fn send_until_closed(addr: SocketAddr, request: &Request) -> Vec<u8> {
    let bytes = request.to_bytes(&addr.to_string());
    let mut stream = TcpStream::connect(addr).await.expect("connect to proxy");
    stream.write_all(&bytes).await.expect("write request");
    read_until_closed(&mut stream, EXCHANGE_LIMIT)
        .await
        .expect("the proxy closes the connection in time")
}

/// Every byte received until the proxy closes (or resets) the connection;
/// `None` if it is still open after `limit`.
pub async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    tokio::time::timeout(limit, async {
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return raw,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
}

/// Reads one response from `stream`: stops once it is complete, or at EOF.
pub async fn read_reply(stream: &mut TcpStream, head: bool) -> Reply {
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some(reply) = parse_reply(&raw, head, false) {
            return reply;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    parse_reply(&raw, head, true)
        .unwrap_or_else(|| panic!("incomplete response: {:?}", String::from_utf8_lossy(&raw)))
}

struct Head {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    len: usize,
}

fn parse_head(raw: &[u8]) -> Option<Head> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = &raw[..end];
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = String::from_utf8_lossy(lines.next()?).into_owned();
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
            let value = line[colon + 1..].trim_ascii().to_vec();
            Some((name, value))
        })
        .collect();
    Some(Head {
        status,
        headers,
        len: end + 4,
    })
}

fn header_value<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// A complete response, or `None` when more bytes are needed (`eof`: no more will come).
fn parse_reply(raw: &[u8], head: bool, eof: bool) -> Option<Reply> {
    let parsed = parse_head(raw)?;
    let rest = &raw[parsed.len..];
    let no_body = head || parsed.status == 204 || parsed.status == 304 || parsed.status < 200;
    let body = if no_body {
        Vec::new()
    } else if header_value(&parsed.headers, "transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"chunked"))
    {
        dechunk(rest)?
    } else if let Some(length) = header_value(&parsed.headers, "content-length") {
        let length: usize = std::str::from_utf8(length).ok()?.parse().ok()?;
        if rest.len() < length {
            return None;
        }
        rest[..length].to_vec()
    } else if eof {
        rest.to_vec()
    } else {
        return None;
    };
    Some(Reply {
        status: parsed.status,
        headers: parsed.headers,
        body,
        raw: raw.to_vec(),
    })
}

/// Takes the first complete response off the front of `buf` (leaving any
/// pipelined responses behind it), or `None` while it is incomplete.
pub fn take_reply(buf: &mut Vec<u8>, head: bool) -> Option<Reply> {
    let parsed = parse_head(buf)?;
    let rest = &buf[parsed.len..];
    let no_body = head || parsed.status == 204 || parsed.status == 304 || parsed.status < 200;
    let consumed = if no_body {
        parsed.len
    } else if header_value(&parsed.headers, "transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"chunked"))
    {
        parsed.len + chunked_len(rest)?
    } else {
        let length = header_value(&parsed.headers, "content-length")?;
        let length: usize = std::str::from_utf8(length).ok()?.parse().ok()?;
        if rest.len() < length {
            return None;
        }
        parsed.len + length
    };
    let raw: Vec<u8> = buf.drain(..consumed).collect();
    parse_reply(&raw, head, true)
}

/// The length of a complete chunked body at the start of `rest`, framing
/// and (empty) trailer included, or `None` if incomplete.
fn chunked_len(rest: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line_end = at + rest[at..].windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[at..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            let end = at + rest[at..].windows(2).position(|w| w == b"\r\n")?;
            return Some(end + 2);
        }
        if rest.len() < at + size + 2 {
            return None;
        }
        at += size + 2;
    }
}

/// The decoded body of a complete chunked message, or `None` if incomplete.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            return rest.windows(2).any(|w| w == b"\r\n").then_some(body);
        }
        if rest.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Sends `request` and counts the response body's bytes as they stream in,
/// without keeping them. Returns the response head and the count.
pub async fn send_counting(addr: SocketAddr, request: &Request) -> (Reply, u64) {
    let bytes = request.to_bytes(&addr.to_string());
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to proxy");
        stream.write_all(&bytes).await.expect("write request");
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        let head = loop {
            if let Some(head) = parse_head(&raw) {
                break head;
            }
            let n = stream.read(&mut buf).await.expect("read head");
            assert!(n > 0, "connection closed before the response head");
            raw.extend_from_slice(&buf[..n]);
        };
        let length: u64 = header_value(&head.headers, "content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .expect("a streamed download keeps its Content-Length");
        let mut count = (raw.len() - head.len) as u64;
        while count < length {
            let n = stream.read(&mut buf).await.expect("read body");
            if n == 0 {
                break;
            }
            count += n as u64;
        }
        let reply = Reply {
            status: head.status,
            headers: head.headers,
            body: Vec::new(),
            raw: raw[..head.len].to_vec(),
        };
        (reply, count)
    })
    .await
    .expect("the download finishes in time")
}

// ---------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------

/// Asserts a refusal exactly as spec §6 describes it, with the code's generic message.
pub fn assert_refused(reply: &Reply, code: ErrorCode) {
    assert_refused_with(reply, code, code.message());
}

/// Asserts a refusal: status, `application/json`, the exact JSON body, and
/// exactly one `WWW-Authenticate` challenge on a 401 (none otherwise).
pub fn assert_refused_with(reply: &Reply, code: ErrorCode, message: &str) {
    assert_eq!(
        reply.status,
        code.status(),
        "expected {code}, got {} {:?}",
        reply.status,
        reply.text()
    );
    assert_refusal_headers(reply, code);
    let expected = serde_json::json!({ "error": { "code": code.as_str(), "message": message } });
    assert_eq!(reply.json(), expected);
}

/// The headers every refusal with `code` carries (also on a refused HEAD).
pub fn assert_refusal_headers(reply: &Reply, code: ErrorCode) {
    assert_eq!(
        reply.all("content-type"),
        ["application/json"],
        "refusals are JSON"
    );
    let challenges = reply.all("www-authenticate");
    if code.status() == 401 {
        assert_eq!(
            challenges,
            [format!(r#"Signet realm="signet-proxy", error="{code}""#)],
            "every 401 carries exactly one challenge"
        );
    } else {
        assert!(
            challenges.is_empty(),
            "only a 401 carries a challenge, got {challenges:?}"
        );
    }
}

/// Asserts `raw` nowhere contains the shared token.
pub fn assert_no_token(raw: &[u8]) {
    assert!(
        !raw.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
        "the shared token leaked: {:?}",
        String::from_utf8_lossy(raw)
    );
}
