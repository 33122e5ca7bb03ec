//! The raw HTTP/1.1 wire: a client that controls every byte it sends
//! (absolute-form targets, forged `Host`, repeated or non-ASCII headers,
//! chunked bodies) and reads replies as bytes, and scripted upstreams that
//! answer fixed bytes.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::EXCHANGE_LIMIT;

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
