//! The request record: what one request's log line says, filled in as
//! the stages advance and written by [`LoggedBody`] when the response body
//! ends. Per-request pipeline state; the log writer and the JSON format are
//! `observe::logging`'s.

use std::borrow::Cow;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use signet_core::ErrorCode;

use crate::auth::clients::Client;
use crate::observe::logging::{admit_unauthenticated_refusal, MAX_METHOD_BYTES, MAX_PATH_BYTES};
use crate::observe::metrics::Metrics;
use crate::refusal::Refusal;

/// What one request's log record says, filled in as the pipeline advances.
/// The record itself is written by [`LoggedBody`] when the response body
/// ends.
#[derive(Debug)]
pub struct RequestLog {
    method: Method,
    path: String,
    key: Key,
    /// Who connected (the load balancer, behind one).
    peer: SocketAddr,
    /// Counts the request in flight until the record is gone.
    inflight: Inflight,
    /// The upstream's `X-GitHub-Request-Id`, when it sent a sane one.
    github_request_id: Option<String>,
    /// How the cache answered (`HIT`, `REVALIDATED`, `MISS`), if it did.
    cache: Option<&'static str>,
    outcome: Outcome,
}

/// One request in flight, for the gauge; dropped with the record.
#[derive(Debug)]
struct Inflight(Arc<Metrics>);

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.inflight(false);
    }
}

/// Who the request is attributed to.
#[derive(Debug)]
enum Key {
    Unknown,
    /// Named by the proof and trusted, but no signature checked yet: logged
    /// as `claimed_key_id`, because a forger can name any trusted key.
    Claimed(Arc<Client>),
    /// Both signatures verified: logged as `key_id`, with the `client`'s
    /// name.
    Verified(Arc<Client>),
}

#[derive(Debug)]
enum Outcome {
    Forwarded,
    Health,
    Refused(ErrorCode, Option<String>),
}

/// How the response body went.
#[derive(Debug, Clone, Copy)]
struct BodyEnd {
    bytes: u64,
    completed: bool,
    duration: Duration,
}

impl RequestLog {
    /// Starts the record; the query string is left out of logs, and the path
    /// and method are capped at [`MAX_PATH_BYTES`] and [`MAX_METHOD_BYTES`]
    /// so a huge target or method cannot make a huge line.
    pub fn new(method: &Method, uri: &Uri, peer: SocketAddr, metrics: Arc<Metrics>) -> Self {
        metrics.inflight(true);
        RequestLog {
            method: method.clone(),
            path: capped(uri.path(), MAX_PATH_BYTES).into_owned(),
            peer,
            inflight: Inflight(metrics),
            github_request_id: None,
            cache: None,
            key: Key::Unknown,
            outcome: Outcome::Forwarded,
        }
    }

    /// The trusted client whose master key the proof names (spec §5 steps
    /// 3–6), before any signature is checked. Logged as `claimed_key_id`; a
    /// client already verified stays verified.
    pub fn claimed(&mut self, client: &Arc<Client>) {
        if !matches!(self.key, Key::Verified(_)) {
            self.key = Key::Claimed(Arc::clone(client));
        }
    }

    /// The client whose master key signed, once both signatures have
    /// verified (spec §5 steps 8–9). Logged as `key_id` and `client`.
    pub fn verified(&mut self, client: &Arc<Client>) {
        self.key = Key::Verified(Arc::clone(client));
    }

    /// GitHub's id of the request (`X-GitHub-Request-Id`): upstream-controlled,
    /// so kept only when it is short visible ASCII.
    pub fn github_request_id(&mut self, id: &http::HeaderValue) {
        let bytes = id.as_bytes();
        if bytes.len() <= 64 && bytes.iter().all(u8::is_ascii_graphic) {
            self.github_request_id = id.to_str().ok().map(str::to_owned);
        }
    }

    /// How the conditional-request cache answered, as the cache says (never
    /// read back from a response header, which an upstream could forge).
    pub fn cache(&mut self, outcome: crate::observe::CacheOutcome) {
        self.cache = Some(outcome.as_str());
    }

    /// The request was a health check (logged at debug level: probes are
    /// frequent).
    pub fn health(&mut self) {
        self.outcome = Outcome::Health;
    }

    /// The request was refused, or the upstream failed.
    pub fn refused(&mut self, refusal: &Refusal) {
        self.outcome = Outcome::Refused(refusal.code, refusal.detail.clone());
    }

    /// Hands the record to the response body, which writes it exactly once
    /// when the body ends, fails, or is dropped. `head_latency` is the time
    /// from the request's arrival to the response head.
    pub fn into_body<B>(self, status: StatusCode, head_latency: Duration, body: B) -> LoggedBody<B>
    where
        B: Body<Data = Bytes>,
    {
        LoggedBody {
            inner: body,
            pending: Some(Pending {
                log: self,
                status,
                head_latency,
                head_sent: Instant::now(),
            }),
            bytes: 0,
        }
    }

    fn write(&self, status: StatusCode, head_latency: Duration, body: Option<BodyEnd>) {
        let (key_id, claimed_key_id) = match &self.key {
            Key::Unknown => (None, None),
            Key::Claimed(client) => (None, Some(client.key_id.as_str())),
            Key::Verified(client) => (Some(client.key_id.as_str()), None),
        };
        let (code, detail) = match &self.outcome {
            Outcome::Refused(code, detail) => (
                Some(code.as_str()),
                Some(detail.as_deref().unwrap_or(code.message())),
            ),
            Outcome::Forwarded | Outcome::Health => (None, None),
        };
        let method = capped(self.method.as_str(), MAX_METHOD_BYTES);
        let method = method.as_ref();
        let path = self.path.as_str();
        let client = match &self.key {
            Key::Verified(client) => Some(client.name.as_str()),
            Key::Unknown | Key::Claimed(_) => None,
        };
        let refused = match &self.outcome {
            Outcome::Refused(code, _) => Some(*code),
            Outcome::Forwarded | Outcome::Health => None,
        };
        let total = body.map_or(head_latency, |end| {
            head_latency.saturating_add(end.duration)
        });
        self.inflight
            .0
            .request_finished(client, &self.method, status, refused, total);
        let mut peer_buf = [0; PEER_TEXT_BYTES];
        let peer = peer_text(&self.peer, &mut peer_buf);
        let github_request_id = self.github_request_id.as_deref();
        let cache = self.cache;
        let status = status.as_u16();
        let latency_ms = millis(head_latency);
        let duration_ms = body.map(|end| millis(head_latency.saturating_add(end.duration)));
        let bytes = body.map(|end| end.bytes);
        let completed = body.map(|end| end.completed);
        // One field list for every level; `tracing` needs the level at the
        // call site.
        macro_rules! record {
            ($level:expr, $message:expr) => {
                tracing::event!(
                    $level,
                    method,
                    path,
                    status,
                    client,
                    peer,
                    github_request_id,
                    cache,
                    key_id,
                    claimed_key_id,
                    latency_ms,
                    duration_ms,
                    bytes,
                    completed,
                    code,
                    detail,
                    "{}",
                    $message
                )
            };
        }
        let unauthenticated = !matches!(self.key, Key::Verified(_));
        // A replay verifies, but anyone holding a copy of the proof can send
        // it: it is limited like a refusal no key stands behind.
        let replayed = refused == Some(ErrorCode::ReplayDetected);
        if refused.is_some() && (unauthenticated || replayed) && !admit_unauthenticated_refusal() {
            return;
        }
        match &self.outcome {
            Outcome::Health => record!(tracing::Level::DEBUG, "health check"),
            Outcome::Forwarded if completed == Some(false) => {
                record!(tracing::Level::WARN, "response cut short")
            }
            Outcome::Forwarded => record!(tracing::Level::INFO, "request forwarded"),
            Outcome::Refused(code, _) => record!(tracing::Level::WARN, refusal_message(*code)),
        }
    }
}

/// Words operators grep for: `auth.*fail` finds exactly the 401s.
fn refusal_message(code: ErrorCode) -> &'static str {
    match code.status() {
        401 => "authentication failed",
        403 => "request forbidden",
        502 | 504 => "upstream failed",
        _ => "request refused",
    }
}

/// Room for the longest `SocketAddr` text,
/// `[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535` (58 bytes).
const PEER_TEXT_BYTES: usize = 64;

/// `peer` exactly as its `Display` writes it. Every record has this field,
/// and `Display` of an IPv4 address goes through the formatting machinery
/// four times; this writes the digits directly.
fn peer_text<'a>(peer: &SocketAddr, buf: &'a mut [u8; PEER_TEXT_BYTES]) -> &'a str {
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        let end = (len + bytes.len()).min(buf.len());
        buf[len..end].copy_from_slice(&bytes[..end - len]);
        len = end;
    };
    match peer {
        SocketAddr::V4(v4) => {
            for (n, octet) in v4.ip().octets().iter().enumerate() {
                if n > 0 {
                    put(b".");
                }
                put(itoa::Buffer::new().format(*octet).as_bytes());
            }
            put(b":");
            put(itoa::Buffer::new().format(v4.port()).as_bytes());
        }
        SocketAddr::V6(_) => {
            let mut cursor = io::Cursor::new(&mut buf[..]);
            // 64 bytes always hold it; a failed write leaves a shorter text.
            let _ = write!(cursor, "{peer}");
            len = usize::try_from(cursor.position()).unwrap_or(0);
        }
    }
    std::str::from_utf8(&buf[..len]).unwrap_or("")
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `text` cut to at most `max` bytes on a character boundary, ending in `…`
/// when cut (borrowed when it fits: the common case costs nothing).
fn capped(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    const MARK: &str = "…";
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + MARK.len());
    out.push_str(&text[..end]);
    out.push_str(MARK);
    Cow::Owned(out)
}

/// The record waiting for the body to end.
#[derive(Debug)]
struct Pending {
    log: RequestLog,
    status: StatusCode,
    head_latency: Duration,
    head_sent: Instant,
}

impl Pending {
    fn write(self, bytes: u64, completed: bool) {
        let end = BodyEnd {
            bytes,
            completed,
            duration: self.head_sent.elapsed(),
        };
        self.log.write(self.status, self.head_latency, Some(end));
    }
}

pin_project_lite::pin_project! {
    /// A response body that writes its request's log record exactly once:
    /// when it reaches its end (`completed=true`), when it fails, or when it
    /// is dropped before its end (`completed=false`: the client went away or
    /// the upstream broke). `bytes` counts the data bytes handed to the
    /// connection.
    ///
    /// A body already at its end when dropped counts as completed, even if
    /// never polled: hyper does not poll the body of a `HEAD` response, or an
    /// empty one.
    #[derive(Debug)]
    pub struct LoggedBody<B>
    where
        B: Body,
    {
        #[pin]
        inner: B,
        pending: Option<Pending>,
        bytes: u64,
    }

    impl<B> PinnedDrop for LoggedBody<B>
    where
        B: Body,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(pending) = this.pending.take() {
                pending.write(*this.bytes, this.inner.is_end_stream());
            }
        }
    }
}

impl<B> Body for LoggedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        let poll = this.inner.as_mut().poll_frame(cx);
        let completed = match &poll {
            Poll::Pending => return poll,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
                    *this.bytes = this.bytes.saturating_add(len);
                }
                // Written as soon as the last frame is out, so
                // `duration_ms` does not include hyper's teardown.
                if !this.inner.is_end_stream() {
                    return poll;
                }
                true
            }
            Poll::Ready(Some(Err(_))) => false,
            Poll::Ready(None) => true,
        };
        if let Some(pending) = this.pending.take() {
            pending.write(*this.bytes, completed);
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::collections::VecDeque;

    use http_body_util::{BodyExt as _, Empty, Full};

    use crate::observe::logging::testing::capture;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn log(path: &str) -> RequestLog {
        RequestLog::new(
            &Method::GET,
            &path.parse().unwrap(),
            SocketAddr::from(([192, 0, 2, 7], 4242)),
            Arc::new(Metrics::new()),
        )
    }

    /// A trusted client, as the keys file would make it.
    fn trusted() -> Arc<Client> {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        Arc::new(Client {
            name: "ci-bot".to_owned(),
            key_id: signet_core::key_id(key.as_bytes()),
            key,
            purposes: None,
            allow: None,
            rate: None,
            github: None,
        })
    }

    #[test]
    fn a_body_polled_to_its_end_logs_completed_with_its_bytes() {
        let client = trusted();
        let lines = capture(|| {
            let mut request = log("/repos/o/r");
            request.claimed(&client);
            request.verified(&client);
            let body = request.into_body(
                StatusCode::OK,
                Duration::from_millis(3),
                Full::new(Bytes::from_static(b"hello world")),
            );
            let collected = block_on(body.collect()).unwrap().to_bytes();
            assert_eq!(collected, "hello world");
        });
        assert_eq!(lines.len(), 1, "exactly one record");
        let record = &lines[0];
        assert_eq!(record["message"], "request forwarded");
        assert_eq!(record["level"], "INFO");
        assert_eq!(record["bytes"], 11);
        assert_eq!(record["completed"], true);
        assert_eq!(record["status"], 200);
        assert_eq!(record["method"], "GET");
        assert_eq!(record["path"], "/repos/o/r");
        assert_eq!(record["key_id"], client.key_id);
        assert!(record.get("claimed_key_id").is_none());
        assert!(record["latency_ms"].as_f64().unwrap() >= 3.0);
        assert!(record["duration_ms"].as_f64().unwrap() >= 3.0);
        assert!(record.get("code").is_none());
    }

    #[test]
    fn a_body_dropped_midway_logs_cut_short_with_the_bytes_so_far() {
        let client = trusted();
        let lines = capture(|| {
            let mut request = log("/repos/o/r/tarball");
            request.verified(&client);
            let chunks = vec![
                Ok(Frame::data(Bytes::from_static(b"abcd"))),
                Ok(Frame::data(Bytes::from_static(b"efgh"))),
            ];
            let mut body = request.into_body(StatusCode::OK, Duration::ZERO, Frames(chunks.into()));
            let first = block_on(body.frame()).unwrap().unwrap();
            assert_eq!(first.into_data().unwrap(), "abcd");
            drop(body);
        });
        assert_eq!(lines.len(), 1);
        let record = &lines[0];
        assert_eq!(record["message"], "response cut short");
        assert_eq!(record["level"], "WARN");
        assert_eq!(record["bytes"], 4);
        assert_eq!(record["completed"], false);
    }

    #[test]
    fn a_body_that_fails_logs_cut_short_once() {
        let lines = capture(|| {
            let request = log("/x");
            let chunks = vec![
                Ok(Frame::data(Bytes::from_static(b"ab"))),
                Err(io::Error::other("upstream reset")),
            ];
            let body = request.into_body(StatusCode::OK, Duration::ZERO, Frames(chunks.into()));
            assert!(block_on(body.collect()).is_err());
        });
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["completed"], false);
        assert_eq!(lines[0]["bytes"], 2);
    }

    #[test]
    fn an_empty_body_never_polled_counts_as_completed() {
        // hyper does not poll the body of a HEAD response.
        let lines = capture(|| {
            let request = log("/repos/o/r");
            drop(request.into_body(StatusCode::OK, Duration::ZERO, Full::new(Bytes::new())));
        });
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["message"], "request forwarded");
        assert_eq!(lines[0]["completed"], true);
        assert_eq!(lines[0]["bytes"], 0);
    }

    #[test]
    fn a_refusal_is_attributed_to_the_claimed_key_only() {
        let client = trusted();
        let lines = capture(|| {
            let mut request = log("/user");
            request.claimed(&client);
            request.refused(
                &Refusal::new(ErrorCode::InvalidSignature).with_detail("request signature"),
            );
            let body = request.into_body(
                StatusCode::UNAUTHORIZED,
                Duration::ZERO,
                Full::new(Bytes::from_static(b"{}")),
            );
            block_on(body.collect()).unwrap();
        });
        assert_eq!(lines.len(), 1);
        let record = &lines[0];
        assert_eq!(record["message"], "authentication failed");
        assert_eq!(record["level"], "WARN");
        assert_eq!(record["code"], "INVALID_SIGNATURE");
        assert_eq!(record["detail"], "request signature");
        assert_eq!(record["claimed_key_id"], client.key_id);
        assert!(record.get("key_id").is_none());
        assert_eq!(record["status"], 401);
        assert_eq!(record["completed"], true);
    }

    #[test]
    fn a_purpose_mismatch_is_logged_as_forbidden_not_as_failed_authentication() {
        let client = trusted();
        let lines = capture(|| {
            let mut request = log("/user");
            request.claimed(&client);
            request.verified(&client);
            request.refused(&Refusal::new(ErrorCode::PurposeMismatch));
            drop(request.into_body(
                StatusCode::FORBIDDEN,
                Duration::ZERO,
                Full::new(Bytes::new()),
            ));
        });
        assert_eq!(lines[0]["message"], "request forbidden");
        assert_eq!(lines[0]["code"], "PURPOSE_MISMATCH");
        assert_eq!(lines[0]["key_id"], client.key_id);
        assert!(lines[0].get("claimed_key_id").is_none());
    }

    #[test]
    fn upstream_failures_and_other_refusals_have_their_own_messages() {
        let cases = [
            (ErrorCode::MissingProof, "authentication failed"),
            (ErrorCode::ReplayDetected, "authentication failed"),
            (ErrorCode::PurposeMismatch, "request forbidden"),
            (ErrorCode::BadGateway, "upstream failed"),
            (ErrorCode::GatewayTimeout, "upstream failed"),
            (ErrorCode::InvalidProof, "request refused"),
            (ErrorCode::RequestTooLarge, "request refused"),
            (ErrorCode::MethodNotAllowed, "request refused"),
        ];
        for (code, message) in cases {
            assert_eq!(refusal_message(code), message, "{code}");
        }
    }

    #[test]
    fn a_refusal_without_detail_logs_the_generic_message_as_detail() {
        let lines = capture(|| {
            let mut request = log("/user");
            request.refused(&Refusal::new(ErrorCode::MissingProof));
            drop(request.into_body(
                StatusCode::UNAUTHORIZED,
                Duration::ZERO,
                Empty::<Bytes>::new(),
            ));
        });
        assert_eq!(lines[0]["detail"], ErrorCode::MissingProof.message());
        assert!(lines[0].get("key_id").is_none());
        assert!(lines[0].get("claimed_key_id").is_none());
    }

    #[test]
    fn a_long_path_is_capped_and_the_query_left_out() {
        let long = format!("/{}?token=secret", "a".repeat(60_000));
        let lines = capture(|| {
            drop(log(&long).into_body(StatusCode::OK, Duration::ZERO, Full::new(Bytes::new())));
        });
        let path = lines[0]["path"].as_str().unwrap();
        assert!(path.len() <= MAX_PATH_BYTES);
        assert!(path.starts_with("/aaaa"));
        assert!(path.ends_with('…'));
        assert!(!path.contains("token"));
    }

    #[test]
    fn a_long_method_is_capped_like_the_path() {
        // Methods outside the seven are refused, but their record still
        // names them, and a method is as long as the header section allows.
        let long = Method::from_bytes("X".repeat(20_000).as_bytes()).unwrap();
        let lines = capture(|| {
            let request = RequestLog::new(
                &long,
                &"/user".parse().unwrap(),
                SocketAddr::from(([192, 0, 2, 7], 4242)),
                Arc::new(Metrics::new()),
            );
            drop(request.into_body(
                StatusCode::METHOD_NOT_ALLOWED,
                Duration::ZERO,
                Full::new(Bytes::new()),
            ));
        });
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0]["message"], "request forwarded",
            "the record is written, not dropped as too long"
        );
        let method = lines[0]["method"].as_str().unwrap();
        assert!(method.len() <= MAX_METHOD_BYTES, "{} bytes", method.len());
        assert!(method.starts_with("XXXX"));
        assert!(method.ends_with('…'));
    }

    #[test]
    fn the_peer_is_written_as_display_writes_it() {
        for peer in [
            "0.0.0.0:0",
            "192.0.2.7:4242",
            "255.255.255.255:65535",
            "[::1]:8080",
            "[2001:db8::ff00:42:8329]:443",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535",
        ] {
            let addr: SocketAddr = match peer.parse() {
                Ok(addr) => addr,
                // The scoped form does not parse; build it.
                Err(_) => SocketAddr::V6(std::net::SocketAddrV6::new(
                    std::net::Ipv6Addr::from([0xffff; 8]),
                    65535,
                    0,
                    u32::MAX,
                )),
            };
            let mut buf = [0; PEER_TEXT_BYTES];
            assert_eq!(peer_text(&addr, &mut buf), addr.to_string());
            assert_eq!(addr.to_string(), peer);
        }
    }

    #[test]
    fn capping_never_splits_a_character() {
        let text = "é".repeat(MAX_PATH_BYTES);
        let cut = capped(&text, MAX_PATH_BYTES);
        assert!(cut.len() <= MAX_PATH_BYTES);
        assert!(cut.ends_with('…'));
        assert_eq!(capped("/short", MAX_PATH_BYTES), "/short");
    }

    #[test]
    fn a_health_check_is_logged_at_debug() {
        let lines = capture(|| {
            let mut request = log("/healthz");
            request.health();
            drop(request.into_body(StatusCode::OK, Duration::ZERO, Full::new(Bytes::new())));
        });
        assert_eq!(lines[0]["message"], "health check");
        assert_eq!(lines[0]["level"], "DEBUG");
    }

    /// A body of ready frames (data or errors), ending after the last.
    struct Frames(VecDeque<Result<Frame<Bytes>, io::Error>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            Poll::Ready(self.0.pop_front())
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }
}
