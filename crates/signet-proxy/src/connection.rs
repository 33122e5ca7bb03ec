//! One client connection: HTTP/1.1 with keep-alive, and the three timeouts.
//!
//! * `--read-timeout`: hyper's header read timeout (a connection that has not
//!   sent complete request headers within it is closed; this also bounds how
//!   long a keep-alive connection may wait for its next request), then the
//!   body read in the pipeline.
//! * `--write-timeout`: one write to the client that makes no progress for
//!   this long drops the connection. Long downloads that keep moving are fine.
//! * `--idle-timeout`: a connection on which no byte moved either way for this
//!   long is shut down gracefully (an in-flight request still finishes).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::pipeline::Proxy;
use crate::replay::ReplayStore;

/// The connection timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Header read timeout.
    pub read: Option<Duration>,
    /// Stall limit of one write.
    pub write: Option<Duration>,
    /// No-traffic limit.
    pub idle: Option<Duration>,
}

/// Serves one connection until it closes, the idle limit passes, or
/// `shutdown` fires (then in-flight requests finish and keep-alive ends).
pub async fn serve<R: ReplayStore>(
    stream: TcpStream,
    proxy: Arc<Proxy<R>>,
    timeouts: Timeouts,
    mut shutdown: watch::Receiver<bool>,
) {
    let epoch = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = TimedIo {
        inner: stream,
        write_timeout: timeouts.write,
        write_stall: None,
        activity: Arc::clone(&activity),
        epoch,
    };
    let service = service_fn(move |request| {
        let proxy = Arc::clone(&proxy);
        async move { Ok::<_, Infallible>(proxy.handle(request).await) }
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true);
    if let Some(read) = timeouts.read {
        builder.header_read_timeout(read);
    }
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);

    let mut shutting_down = false;
    loop {
        let idle_check = async {
            match timeouts.idle {
                Some(idle) if !shutting_down => {
                    let last = epoch + Duration::from_millis(activity.load(Ordering::Relaxed));
                    tokio::time::sleep_until(last + idle).await;
                    last.elapsed() >= idle
                }
                _ => std::future::pending().await,
            }
        };
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
            idle = idle_check => {
                if idle {
                    connection.as_mut().graceful_shutdown();
                    shutting_down = true;
                }
            }
        }
    }
}

/// A TCP stream that records when bytes last moved and bounds write stalls.
struct TimedIo {
    inner: TcpStream,
    write_timeout: Option<Duration>,
    write_stall: Option<Pin<Box<Sleep>>>,
    activity: Arc<AtomicU64>,
    epoch: Instant,
}

impl TimedIo {
    fn touch(&self) {
        let millis = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(millis, Ordering::Relaxed);
    }

    fn poll_write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match write(Pin::new(&mut self.inner), cx) {
            Poll::Ready(result) => {
                self.write_stall = None;
                self.touch();
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
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if result.is_ready() {
            this.touch();
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
