//! One client connection: HTTP/1.1 with keep-alive, and the three timeouts,
//! with the meaning Go's `net/http` gives them:
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
//! A connection is always in one phase (reading a head, busy, idle); a small
//! watchdog beside hyper's connection future enforces the phase's deadline.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::{Instant, Sleep};

use crate::body::ProxyBody;
use crate::pipeline::Proxy;
use crate::replay::ReplayStore;

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
}

impl ConnState {
    fn new() -> Self {
        ConnState {
            epoch: Instant::now(),
            phase: AtomicU8::new(Phase::Head as u8),
            since_ms: AtomicU64::new(0),
            changed: Notify::new(),
        }
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
        let millis = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.since_ms.store(millis, Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
        // Busy has no deadline: a watchdog still sleeping toward an older one
        // wakes, finds it stale and sleeps again, so it need not be woken now.
        if phase != Phase::Busy {
            self.changed.notify_one();
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

/// Serves one connection until it closes, a phase deadline passes, or
/// `shutdown` fires (then in-flight requests finish and keep-alive ends).
pub async fn serve<R: ReplayStore>(
    stream: TcpStream,
    proxy: Arc<Proxy<R>>,
    timeouts: Timeouts,
    mut shutdown: watch::Receiver<bool>,
) {
    let state = Arc::new(ConnState::new());
    let io = TimedIo {
        inner: stream,
        write_timeout: timeouts.write,
        write_stall: None,
        state: Arc::clone(&state),
    };
    let service_state = Arc::clone(&state);
    let service = service_fn(move |request| {
        let proxy = Arc::clone(&proxy);
        let guard = InFlight::start(Arc::clone(&service_state));
        async move {
            let response = proxy.handle(request).await;
            Ok::<_, Infallible>(response.map(|body| TrackedBody {
                body,
                _guard: guard,
            }))
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
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
            () = state.changed.notified() => {}
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

/// Marks the connection busy while a request is handled and its response
/// body is alive; idle again once hyper drops the body.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(state: Arc<ConnState>) -> Self {
        state.enter(Phase::Busy);
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.enter(Phase::Idle);
    }
}

/// A response body that keeps the connection marked busy until it is dropped.
struct TrackedBody {
    body: ProxyBody,
    _guard: InFlight,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = <ProxyBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
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
    state: Arc<ConnState>,
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
                Poll::Ready(result)
            }
            Poll::Pending => {
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
        if buf.filled().len() > before {
            this.state.bytes_read();
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
