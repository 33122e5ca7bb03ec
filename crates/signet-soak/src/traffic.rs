//! The mixed traffic: what each kind of request sends, what the spec says
//! it must get back, and one HTTP/1.1 exchange on a fresh connection.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use signet_core::{Binding, BodyDigest, Purpose, RequestParts, SigningKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Longest a single exchange may take before it counts as lost.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(60);

/// The kinds of traffic, in the mix's proportions per 100 requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A signed `GET /user`.
    Get,
    /// A signed `POST /echo` with a small JSON body.
    Post,
    /// A signed `POST /echo` with a 256 KiB body.
    Large,
    /// A signed `GET /stream/1048576`: 1 MiB streamed back.
    Download,
    /// Unsigned, malformed, forged, stale or non-origin-form requests.
    Junk,
    /// A proof the proxy accepted moments ago, sent again.
    Replay,
    /// A signed `POST /echo` whose 8 KiB body trickles in over 2 s.
    Slow,
    /// A connection held idle for up to half a minute, then used for a
    /// signed `GET /user` or closed without a request.
    Idle,
}

impl Kind {
    /// Every kind, with its share of each 100 requests.
    pub const MIX: [(Kind, u32); 8] = [
        (Kind::Get, 42),
        (Kind::Post, 15),
        (Kind::Large, 2),
        (Kind::Download, 2),
        (Kind::Junk, 20),
        (Kind::Replay, 12),
        (Kind::Slow, 4),
        (Kind::Idle, 3),
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Get => "valid GET",
            Kind::Post => "valid POST",
            Kind::Large => "large body (256 KiB)",
            Kind::Download => "download (1 MiB)",
            Kind::Junk => "junk",
            Kind::Replay => "replay",
            Kind::Slow => "slow client (2 s body)",
            Kind::Idle => "idle connection",
        }
    }

    /// Whether its latency says something about the proxy (not the
    /// client's own pauses).
    pub fn timed(self) -> bool {
        !matches!(self, Kind::Slow | Kind::Idle)
    }
}

/// The kind of request number `n`: the mix, spread evenly over each 100.
pub fn kind_of(n: u64) -> Kind {
    // A fixed permutation of 0..100 (37 is coprime to 100).
    let slot = (n % 100) * 37 % 100;
    let mut upto = 0;
    for (kind, share) in Kind::MIX {
        upto += u64::from(share);
        if slot < upto {
            return kind;
        }
    }
    Kind::Get
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `N` random bytes.
pub fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // A failing OS random source leaves zeros: the proxy then refuses the
    // repeated nonces, which the report shows as unexpected statuses.
    let _ = getrandom::fill(&mut bytes);
    bytes
}

/// A client: a master key that binds a new ephemeral key every minute,
/// as `signet-client` does (bindings live five minutes).
pub struct Signer {
    master: SigningKey,
    current: Mutex<Option<(Instant, SigningKey, Binding)>>,
}

impl Signer {
    /// A client with a new random master key.
    pub fn new() -> Self {
        Signer {
            master: SigningKey::from_bytes(&random()),
            current: Mutex::new(None),
        }
    }

    /// The master public key, hex, as `--master-key` takes it.
    pub fn public_hex(&self) -> String {
        hex::encode(self.master.verifying_key().as_bytes())
    }

    /// A `Signet-Proof` value for this request, at `ts`.
    pub fn sign(&self, method: &str, target: &str, body: &[u8], ts: u64) -> String {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stale = current
            .as_ref()
            .is_none_or(|(made, _, _)| made.elapsed() > Duration::from_secs(60));
        if stale {
            let ephemeral = SigningKey::from_bytes(&random());
            let binding = Binding::sign(
                &self.master,
                &ephemeral.verifying_key(),
                unix_now() + 300,
                Purpose::EMPTY,
            );
            *current = Some((Instant::now(), ephemeral, binding));
        }
        let Some((_, ephemeral, binding)) = current.as_ref() else {
            return String::new();
        };
        let request = RequestParts {
            method,
            target,
            body_digest: BodyDigest::of(body),
        };
        binding
            .sign_request(ephemeral, &request, ts, random())
            .to_string()
    }
}

/// A request's bytes (with `Connection: close`) and how it is written.
pub struct Planned {
    /// The whole request.
    pub bytes: Vec<u8>,
    /// Where the head ends: a slow client trickles the rest.
    pub head_len: usize,
    /// What the proxy must answer.
    pub expect: Expect,
    /// The id in its target, when it should reach the upstream.
    pub id: Option<u64>,
}

/// The answer the spec gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// Status.
    pub status: u16,
    /// The JSON error code of a refusal.
    pub code: Option<&'static str>,
    /// The body's length when forwarded.
    pub body_len: Option<usize>,
}

impl Expect {
    /// A forwarded request whose answer has `body_len` bytes.
    pub fn forwarded(body_len: usize) -> Self {
        Expect {
            status: 200,
            code: None,
            body_len: Some(body_len),
        }
    }

    /// A refusal.
    pub fn refused(status: u16, code: &'static str) -> Self {
        Expect {
            status,
            code: Some(code),
            body_len: None,
        }
    }
}

/// The bytes of `METHOD target` with `proof` (if any) and `body`.
pub fn request(method: &str, target: &str, proof: Option<&str>, body: &[u8]) -> (Vec<u8>, usize) {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n");
    if let Some(proof) = proof {
        head.push_str(&format!("Signet-Proof: {proof}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let head_len = head.len();
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    (bytes, head_len)
}

/// A signed request to the upstream, tagged with `id` in its query.
pub fn signed(signer: &Signer, method: &str, path: &str, body: &[u8], id: u64) -> Planned {
    let target = format!("{path}?soak={id}");
    let proof = signer.sign(method, &target, body, unix_now());
    let (bytes, head_len) = request(method, &target, Some(&proof), body);
    let answer_len = match path {
        "/user" => USER_BODY_LEN,
        "/echo" => body.len(),
        _ => path
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    };
    Planned {
        bytes,
        head_len,
        expect: Expect::forwarded(answer_len),
        id: Some(id),
    }
}

/// The stand-in's `GET /user` body length.
const USER_BODY_LEN: usize = r#"{"login":"signet-demo","id":1,"type":"Bot"}"#.len();

/// One of seven kinds of junk, by `n`.
pub fn junk(signer: &Signer, stranger: &Signer, n: u64) -> Planned {
    let now = unix_now();
    let (bytes, expect) = match n % 7 {
        0 => (
            request("GET", "/user", None, b"").0,
            Expect::refused(401, "MISSING_PROOF"),
        ),
        1 => (
            request("GET", "/user", Some("v1;garbage"), b"").0,
            Expect::refused(400, "INVALID_PROOF"),
        ),
        2 => {
            // A valid proof with the first character of its request
            // signature changed (the last one carries padding bits).
            let proof = signer.sign("GET", "/user", b"", now);
            let at = proof.rfind(";s=").map_or(0, |i| i + 3);
            let changed = if proof[at..].starts_with('A') {
                "B"
            } else {
                "A"
            };
            let proof = format!("{}{changed}{}", &proof[..at], &proof[at + 1..]);
            (
                request("GET", "/user", Some(&proof), b"").0,
                Expect::refused(401, "INVALID_SIGNATURE"),
            )
        }
        3 => {
            let proof = stranger.sign("GET", "/user", b"", now);
            (
                request("GET", "/user", Some(&proof), b"").0,
                Expect::refused(401, "UNKNOWN_KEY"),
            )
        }
        4 => (
            request("GET", "http://evil.example/user", None, b"").0,
            Expect::refused(400, "INVALID_REQUEST_TARGET"),
        ),
        5 => (
            request("TRACE", "/user", None, b"").0,
            Expect::refused(405, "METHOD_NOT_ALLOWED"),
        ),
        _ => {
            let proof = signer.sign("GET", "/user", b"", now.saturating_sub(120));
            (
                request("GET", "/user", Some(&proof), b"").0,
                Expect::refused(401, "CLOCK_SKEW"),
            )
        }
    };
    let head_len = bytes.len();
    Planned {
        bytes,
        head_len,
        expect,
        id: None,
    }
}

/// What came back.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// The body (after the head; the proxy frames with `Content-Length`).
    pub body: Vec<u8>,
}

/// How an exchange went wrong.
pub type Lost = String;

/// Connects, writes `planned` (its body in `pieces` with `pause` between),
/// and reads until the proxy closes.
pub async fn exchange(
    addr: SocketAddr,
    planned: &Planned,
    pieces: usize,
    pause: Duration,
    idle: Duration,
) -> Result<Answer, Lost> {
    let mut stream = tokio::time::timeout(EXCHANGE_LIMIT, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    if !idle.is_zero() {
        tokio::time::sleep(idle).await;
    }
    tokio::time::timeout(EXCHANGE_LIMIT, async {
        let (head, body) = planned.bytes.split_at(planned.head_len);
        stream
            .write_all(head)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let piece = body.len().div_ceil(pieces.max(1)).max(1);
        for (i, chunk) in body.chunks(piece).enumerate() {
            if i > 0 && !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            stream
                .write_all(chunk)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read: {e}"))?;
        parse(&raw).ok_or_else(|| format!("no complete response ({} bytes)", raw.len()))
    })
    .await
    .map_err(|_| "timed out".to_owned())?
}

/// The status and body of a complete `Content-Length` response.
fn parse(raw: &[u8]) -> Option<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let length: usize = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())?;
    let body = raw.get(end + 4..end + 4 + length)?.to_vec();
    Some(Answer { status, body })
}

/// Whether `answer` is what `expect` says.
pub fn matches(expect: &Expect, answer: &Answer) -> bool {
    if answer.status != expect.status {
        return false;
    }
    if let Some(code) = expect.code {
        let needle = format!(r#""code":"{code}""#);
        if !answer
            .body
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
        {
            return false;
        }
    }
    expect.body_len.is_none_or(|len| answer.body.len() == len)
}
