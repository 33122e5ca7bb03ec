//! One client connection: HTTP/1.1 with keep-alive, bounded header sections,
//! and the three timeouts, with the meaning Go's `net/http` gives them:
//!
//! * `--read-timeout`: a request's headers must be complete this long after
//!   its first byte (after the accept, for a connection's first request), or
//!   the connection is dropped (slow-loris protection). The pipeline then
//!   gives the body the same time again (`408 REQUEST_TIMEOUT`).
//! * `--idle-timeout`: a keep-alive connection that waits this long for the
//!   first byte of its next request is closed.
//! * `--write-timeout`: one write to the client that makes no progress for
//!   this long drops the connection. Unlike Go's deadline for the whole
//!   response, a long download that keeps moving is never cut.
//!
//! `0` turns a limit off entirely: hyper's own header timer is always off, so
//! these are the only ones. A connection is always in one phase (reading a
//! head, busy, idle); a small watchdog beside hyper's connection future
//! enforces the phase's deadline.
//!
//! Pipelining: bytes of the next request can reach hyper's buffer while the
//! current one is still being served (in the same read as its end, or
//! during it). Such a head is timed by the read timeout from the moment its
//! first byte arrived, not by the idle timeout. The connection knows where a
//! request ends in the byte stream from the end of its head (found by a scan
//! of the head bytes as they are read) and its declared `Content-Length`;
//! when that cannot be known — the head of a request that was itself
//! pipelined — the wait for the next head is held to the read timeout.
//!
//! The side listeners (metrics and probes, admin) serve their connections
//! with the same discipline through [`serve_with`], with [`Limits`] of their
//! own: smaller header sections, a bound on requests per connection, and an
//! [`Occupant`] each, through which the listener sees what the connection
//! is waiting for and can close it to make room.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::{Instant, Sleep};

/// What answers the requests of the proxy's port: the pipeline implements
/// it, so the connection knows nothing of what happens to a request.
pub trait Handler: Send + Sync + 'static {
    /// The responses' body.
    type Body: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static;

    /// Answers one request from `peer`.
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: std::net::SocketAddr,
    ) -> impl Future<Output = Response<Self::Body>> + Send;
}

/// The largest request header section (request line and headers), bytes;
/// hyper answers 431 beyond it.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Offsets and times not known (yet).
const UNKNOWN: u64 = u64::MAX;

/// The connection timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Headers complete within this of their first byte.
    pub read: Option<Duration>,
    /// Stall limit of one write.
    pub write: Option<Duration>,
    /// Wait limit for the next request on a keep-alive connection.
    pub idle: Option<Duration>,
}

/// What a listener asks of each of its connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The phase timeouts.
    pub timeouts: Timeouts,
    /// The largest request header section, bytes; hyper answers 431 beyond it.
    pub max_header_bytes: usize,
    /// Requests answered on one connection: the last answer says
    /// `Connection: close` and the connection ends after it, whatever else
    /// was pipelined behind it. `None`: no limit.
    pub max_requests: Option<u32>,
}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Reading a request's headers (bounded by the read timeout).
    Head = 0,
    /// A request is being handled or its response streamed (no deadline here:
    /// the body read, the upstream and writes have their own limits).
    Busy = 1,
    /// Waiting for the next request's first byte (bounded by the idle timeout).
    Idle = 2,
}

/// The phase and when it began, shared by the I/O wrapper, the service and
/// the watchdog.
struct ConnState {
    epoch: Instant,
    phase: AtomicU8,
    since_ms: AtomicU64,
    /// Wakes the watchdog when a new deadline may be earlier than its current one.
    changed: Notify,
    /// Bytes handed to hyper so far.
    read_total: AtomicU64,
    /// When (ms since `epoch`) the last read that returned bytes happened.
    last_read_ms: AtomicU64,
    /// Stream offset just past the head being read, once the scan found it.
    head_end: AtomicU64,
    /// Stream offset just past the request being served, when known.
    request_end: AtomicU64,
    /// When (ms since `epoch`) the first byte past `request_end` arrived:
    /// the next request's head is already under way.
    next_head_since_ms: AtomicU64,
    /// The request being served came from pipelined bytes, so where its head
    /// ended is unknown, and so is whether more bytes wait in hyper's buffer.
    blind: AtomicBool,
    /// Tells the I/O wrapper that the next byte it reads starts a new head.
    scan_next_read: AtomicBool,
    /// When (ms since `epoch`) a write to the peer began to wait for it to
    /// read; `UNKNOWN` while writes go through.
    stalled_since_ms: AtomicU64,
    /// The listener closed the connection ([`Occupant::close`]).
    closed: AtomicBool,
}

impl ConnState {
    fn new() -> Self {
        ConnState {
            epoch: Instant::now(),
            phase: AtomicU8::new(Phase::Head as u8),
            since_ms: AtomicU64::new(0),
            changed: Notify::new(),
            read_total: AtomicU64::new(0),
            last_read_ms: AtomicU64::new(0),
            head_end: AtomicU64::new(UNKNOWN),
            request_end: AtomicU64::new(UNKNOWN),
            next_head_since_ms: AtomicU64::new(UNKNOWN),
            blind: AtomicBool::new(false),
            scan_next_read: AtomicBool::new(false),
            stalled_since_ms: AtomicU64::new(UNKNOWN),
            closed: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn phase(&self) -> (Phase, Instant) {
        let phase = match self.phase.load(Ordering::Acquire) {
            0 => Phase::Head,
            1 => Phase::Busy,
            _ => Phase::Idle,
        };
        let since = self.epoch + Duration::from_millis(self.since_ms.load(Ordering::Acquire));
        (phase, since)
    }

    fn enter(&self, phase: Phase) {
        self.enter_since(phase, self.now_ms());
    }

    fn enter_since(&self, phase: Phase, millis: u64) {
        self.since_ms.store(millis, Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
        // Busy has no deadline: a watchdog still sleeping toward an older one
        // wakes, finds it stale and sleeps again, so it need not be woken now.
        if phase != Phase::Busy {
            self.changed.notify_one();
        }
    }

    /// `count` bytes were read at stream offset `start`; `head_end` is the
    /// offset just past a head end the scan found in them.
    fn read(&self, start: u64, count: u64, head_end: Option<u64>) {
        let now = self.now_ms();
        self.read_total.store(start + count, Ordering::Release);
        self.last_read_ms.store(now, Ordering::Release);
        if let Some(end) = head_end {
            self.head_end.store(end, Ordering::Release);
        }
        let request_end = self.request_end.load(Ordering::Acquire);
        if request_end != UNKNOWN && start + count > request_end {
            let _ = self.next_head_since_ms.compare_exchange(
                UNKNOWN,
                now,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        self.bytes_read();
    }

    /// Busy: hyper has parsed a head and calls the service. `body_len` is the
    /// request's declared body length (`None` when chunked).
    fn request_started(&self, body_len: Option<u64>) {
        let head_end = self.head_end.swap(UNKNOWN, Ordering::AcqRel);
        let blind = head_end == UNKNOWN;
        self.blind.store(blind, Ordering::Release);
        let request_end = match body_len {
            Some(len) if !blind => head_end.saturating_add(len),
            _ => UNKNOWN,
        };
        self.request_end.store(request_end, Ordering::Release);
        self.next_head_since_ms.store(UNKNOWN, Ordering::Release);
        if request_end != UNKNOWN && self.read_total.load(Ordering::Acquire) > request_end {
            // The read that completed this request also brought the next one's start.
            let at = self.last_read_ms.load(Ordering::Acquire);
            self.next_head_since_ms.store(at, Ordering::Release);
        }
        self.enter(Phase::Busy);
    }

    /// The response is done: wait for the next head, timed by the idle
    /// timeout only if hyper certainly holds none of its bytes yet.
    fn request_finished(&self) {
        self.request_end.store(UNKNOWN, Ordering::Release);
        let since = self.next_head_since_ms.swap(UNKNOWN, Ordering::AcqRel);
        if since != UNKNOWN {
            self.enter_since(Phase::Head, since);
        } else if self.blind.load(Ordering::Acquire) {
            self.enter(Phase::Head);
        } else {
            self.scan_next_read.store(true, Ordering::Release);
            self.enter(Phase::Idle);
        }
    }

    /// Idle → Head when a byte of the next request arrives.
    fn bytes_read(&self) {
        if self
            .phase
            .compare_exchange(
                Phase::Idle as u8,
                Phase::Head as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            self.enter(Phase::Head);
        }
    }

    /// The deadline of the current phase, if it has one.
    fn deadline(&self, timeouts: &Timeouts) -> Option<(Phase, Instant)> {
        let (phase, since) = self.phase();
        let limit = match phase {
            Phase::Head => timeouts.read?,
            Phase::Idle => timeouts.idle?,
            Phase::Busy => return None,
        };
        Some((phase, since + limit))
    }
}

/// Serves one connection of the proxy's port until it closes, a phase
/// deadline passes, or `shutdown` fires (then in-flight requests finish and
/// keep-alive ends).
pub async fn serve<H: Handler>(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    proxy: Arc<H>,
    timeouts: Timeouts,
    shutdown: watch::Receiver<bool>,
) {
    let limits = Limits {
        timeouts,
        max_header_bytes: MAX_HEADER_BYTES,
        max_requests: None,
    };
    serve_with(stream, limits, Occupant::new(), shutdown, move |request| {
        let proxy = Arc::clone(&proxy);
        async move { proxy.handle(request, peer).await }
    })
    .await;
}

/// Serves one connection with `handle` under `limits` until it closes, a
/// phase deadline passes, its listener closes it through `occupant`, or
/// `shutdown` fires (then in-flight requests finish and keep-alive ends).
pub async fn serve_with<H, F, B>(
    stream: TcpStream,
    limits: Limits,
    occupant: Occupant,
    mut shutdown: watch::Receiver<bool>,
    handle: H,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let timeouts = limits.timeouts;
    let state = occupant.0;
    let io = TimedIo {
        inner: stream,
        write_timeout: timeouts.write,
        write_stall: None,
        stalled: false,
        state: Arc::clone(&state),
        head_scan: Some(HeadScan::default()),
    };
    let service_state = Arc::clone(&state);
    let served = AtomicU32::new(0);
    let service = service_fn(move |request: Request<Incoming>| {
        let body_len = request.body().size_hint().exact();
        let guard = InFlight::start(Arc::clone(&service_state), body_len);
        let last = limits
            .max_requests
            .is_some_and(|max| served.fetch_add(1, Ordering::Relaxed).saturating_add(1) >= max);
        let response = handle(request);
        async move {
            let mut response = response.await;
            if last {
                // hyper ends the connection after a response that says so.
                response
                    .headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response.map(|body| TrackedBody {
                body,
                _guard: guard,
            }))
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        // Our watchdog owns head timing; hyper's timer would also run while
        // a keep-alive connection is idle, and can't be turned off by `0`.
        .header_read_timeout(None)
        .max_header_size(limits.max_header_bytes)
        // A head that is not complete within the limit never grows past it.
        .max_buf_size(limits.max_header_bytes + 1)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);

    let mut shutting_down = false;
    // One timer for the connection's life, moved to each new deadline.
    let watchdog = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(watchdog);
    loop {
        let deadline = state.deadline(&timeouts);
        if let Some((_, at)) = deadline {
            watchdog.as_mut().reset(at);
        }
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            changed = shutdown.changed(), if !shutting_down => {
                if changed.is_err() || *shutdown.borrow() {
                    connection.as_mut().graceful_shutdown();
                    shutting_down = true;
                }
            }
            () = state.changed.notified() => {
                if state.closed.load(Ordering::Acquire) {
                    tracing::debug!("connection closed by its listener to make room");
                    return;
                }
            }
            () = watchdog.as_mut(), if deadline.is_some() && !shutting_down => {
                // The phase may have moved on while we slept; only a deadline
                // that is still current counts.
                match state.deadline(&timeouts) {
                    Some((Phase::Head, at)) if at <= Instant::now() => {
                        tracing::debug!("request headers not complete within --read-timeout; dropping the connection");
                        return;
                    }
                    Some((Phase::Idle, at)) if at <= Instant::now() => {
                        connection.as_mut().graceful_shutdown();
                        shutting_down = true;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// One connection as its listener sees it: whether its peer has stopped
/// reading, how long it has been doing what it does now, and a way to close
/// it at once. Clones share the connection.
#[derive(Clone)]
pub struct Occupant(Arc<ConnState>);

impl std::fmt::Debug for Occupant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (phase, since) = self.0.phase();
        f.debug_struct("Occupant")
            .field("phase", &phase)
            .field("since", &since)
            .field("stalled_since", &self.stalled_since())
            .finish()
    }
}

impl Default for Occupant {
    fn default() -> Self {
        Self::new()
    }
}

impl Occupant {
    /// A connection accepted now.
    pub fn new() -> Self {
        Occupant(Arc::new(ConnState::new()))
    }

    /// Since when a write to the peer has waited for it to read, if one is
    /// waiting now.
    pub fn stalled_since(&self) -> Option<Instant> {
        let at = self.0.stalled_since_ms.load(Ordering::Acquire);
        (at != UNKNOWN).then(|| self.0.epoch + Duration::from_millis(at))
    }

    /// Since when the connection has been doing what it does now: reading
    /// a request's head, being answered, or waiting idle for the next one.
    pub fn phase_since(&self) -> Instant {
        self.0.phase().1
    }

    /// Drops the connection now, whatever it is doing; a request being
    /// answered is cut off.
    pub fn close(&self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.changed.notify_one();
    }
}

/// Marks the connection busy while a request is handled and its response
/// body is alive; idle again once hyper drops the body.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(state: Arc<ConnState>, body_len: Option<u64>) -> Self {
        state.request_started(body_len);
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps the connection marked busy until it is dropped.
    struct TrackedBody<B> {
        #[pin]
        body: B,
        _guard: InFlight,
    }
}

impl<B: Body<Data = Bytes>> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A TCP stream that notices the first byte of each request and bounds
/// write stalls.
struct TimedIo {
    inner: TcpStream,
    write_timeout: Option<Duration>,
    write_stall: Option<Pin<Box<Sleep>>>,
    /// A write is waiting for the peer to read (mirrored in the state for
    /// the listener; kept here so writes that go through touch no atomics).
    stalled: bool,
    state: Arc<ConnState>,
    /// Finds where the head being read ends (`None`: not scanning).
    head_scan: Option<HeadScan>,
}

/// Finds the end of a request head (the first empty line; httparse accepts
/// `\r\n` and bare `\n` line ends) in bytes that arrive in pieces.
#[derive(Debug, Clone, Copy, Default)]
struct HeadScan {
    /// The previous byte ended a line.
    line_start: bool,
    /// A `\r` right after a line end: the empty line may be `\r\n`.
    cr: bool,
}

impl HeadScan {
    /// The index just past the head end in `bytes`, if it is there. Every
    /// read of every connection passes through here, so it jumps from line
    /// end to line end (`memchr`) and looks at single bytes only where a
    /// line starts.
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        loop {
            if self.line_start {
                match *bytes.get(i)? {
                    b'\n' => return Some(i + 1),
                    b'\r' if !self.cr => self.cr = true,
                    _ => {
                        self.line_start = false;
                        self.cr = false;
                    }
                }
                i += 1;
            } else {
                i += memchr::memchr(b'\n', bytes.get(i..)?)? + 1;
                self.line_start = true;
                self.cr = false;
            }
        }
    }
}

impl TimedIo {
    fn poll_write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match write(Pin::new(&mut self.inner), cx) {
            Poll::Ready(result) => {
                self.write_stall = None;
                if self.stalled {
                    self.stalled = false;
                    self.state
                        .stalled_since_ms
                        .store(UNKNOWN, Ordering::Release);
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                if !self.stalled {
                    self.stalled = true;
                    let now = self.state.now_ms();
                    self.state.stalled_since_ms.store(now, Ordering::Release);
                }
                let Some(limit) = self.write_timeout else {
                    return Poll::Pending;
                };
                let stall = self
                    .write_stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match stall.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "write to client stalled past --write-timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        let fresh = buf.filled().get(before..).unwrap_or_default();
        if !fresh.is_empty() {
            if this.state.scan_next_read.swap(false, Ordering::AcqRel) {
                this.head_scan = Some(HeadScan::default());
            }
            let start = this.state.read_total.load(Ordering::Acquire);
            let head_end = this.head_scan.as_mut().and_then(|scan| scan.feed(fresh));
            if head_end.is_some() {
                this.head_scan = None;
            }
            this.state.read(
                start,
                fresh.len() as u64,
                head_end.map(|at| start + at as u64),
            );
        }
        result
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_write_with(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(pieces: &[&[u8]]) -> Option<(usize, usize)> {
        let mut scan = HeadScan::default();
        pieces
            .iter()
            .enumerate()
            .find_map(|(i, piece)| scan.feed(piece).map(|at| (i, at)))
    }

    #[test]
    fn the_head_scan_finds_the_first_empty_line_across_reads() {
        assert_eq!(
            scan(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /b"]),
            Some((0, 27))
        );
        assert_eq!(
            scan(&[b"GET / HTTP/1.1\r\nHost: x\r", b"\n\r\nrest"]),
            Some((1, 3))
        );
        assert_eq!(scan(&[b"GET / HTTP/1.1\nHost: x\n\n"]), Some((0, 24)));
        assert_eq!(scan(&[b"GET / HTTP/1.1\r\nHost: x\r\n"]), None);
        assert_eq!(scan(&[b"GET / HTTP/1.1\r\nA: \r\r\n"]), None);
    }

    /// The byte-at-a-time scanner `feed` replaced: the definition it must
    /// agree with.
    fn scan_bytewise(pieces: &[Vec<u8>]) -> Option<(usize, usize)> {
        let (mut line_start, mut cr) = (false, false);
        for (n, piece) in pieces.iter().enumerate() {
            for (i, &byte) in piece.iter().enumerate() {
                match byte {
                    b'\n' if line_start => return Some((n, i + 1)),
                    b'\n' => (line_start, cr) = (true, false),
                    b'\r' if line_start && !cr => cr = true,
                    _ => (line_start, cr) = (false, false),
                }
            }
        }
        None
    }

    proptest::proptest! {
        #[test]
        fn the_head_scan_agrees_with_the_bytewise_definition(
            pieces in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(b"\r\nab".to_vec()), 0..12),
                0..8,
            )
        ) {
            let slices: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            proptest::prop_assert_eq!(scan(&slices), scan_bytewise(&pieces));
        }
    }
}
