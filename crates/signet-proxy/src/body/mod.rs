//! Request bodies in (bounded per request and in total, timed) and response
//! bodies out (streamed, with a no-progress limit on the upstream).

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use signet_core::ErrorCode;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::refusal::Refusal;

/// What a response body feeds as it is read from the upstream (the cache
/// implements it to keep a cacheable answer): the body module knows only
/// this hook, not the cache.
pub trait Tap: Send + 'static {
    /// A chunk arrived. `false` once the tap wants no more: the rest of the
    /// body is streamed to the client untapped.
    fn push(&mut self, chunk: &Bytes) -> bool;
    /// The body ended whole.
    fn finish(&mut self);
    /// What the tap holds of the [`ReadAheadBudget`], handed over (the tap
    /// keeps nothing): it stays counted until the client has taken the
    /// bytes read ahead of it.
    fn release(&mut self) -> Reservation;
}

/// What a streamed response holds until its body ends: the upstream
/// slot and its client's share of the slots, released as the body drops.
#[derive(Debug)]
pub struct Held {
    _slot: OwnedSemaphorePermit,
    _share: OwnedSemaphorePermit,
}

impl Held {
    /// Holds `slot` and `share` for as long as the body lives.
    pub fn new(slot: OwnedSemaphorePermit, share: OwnedSemaphorePermit) -> Self {
        Held {
            _slot: slot,
            _share: share,
        }
    }
}

/// The body of every response the proxy sends: a small in-memory body
/// (health, refusals) or the upstream's body, streamed frame by frame.
#[derive(Debug)]
pub struct ProxyBody(Kind);

#[derive(Debug)]
enum Kind {
    Full(Full<Bytes>),
    Streamed(Streamed),
    /// An upstream body the cache keeps, read ahead of the client.
    ReadAhead(ReadAhead),
}

/// A body's error, as the client connection sees it.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The upstream's body, with a limit on how long it may make no progress.
#[derive(Debug)]
struct Streamed {
    body: Incoming,
    stall_limit: Duration,
    stall: Pin<Box<Sleep>>,
    /// Whether the last poll left us waiting on the upstream: the stall timer
    /// runs only then, never while the client is slow to take what we have.
    waiting: bool,
    /// The request's upstream slot (and its client's share), held until the
    /// body ends.
    slot: Option<Held>,
}

impl Streamed {
    fn poll_upstream(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.waiting {
            self.waiting = true;
            let deadline = Instant::now() + self.stall_limit;
            self.stall.as_mut().reset(deadline);
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match self.stall.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    Poll::Ready(Some(Err(Box::new(UpstreamStalled(self.stall_limit)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// A recorded body: a task reads the upstream ahead of the client, so the
/// cache stores the answer (and releases the requests waiting for it) at
/// GitHub's pace, not at the pace of the one client that asked first. It
/// reads ahead only while the recorder keeps the body: at most one entry's
/// worth, and only with room in the process-wide [`ReadAheadBudget`] for
/// every byte it holds; past either, the recorder gives up (the waiting
/// requests are released at once) and the rest is streamed at the client's
/// pace, as any body. Capping the waiters' wait instead would have sent every
/// identical request to GitHub behind a slow reader.
///
/// What was read ahead stays the client's to drain: the upstream slot and
/// the client's share are held here until the client has taken the whole
/// body (or left), not given back when GitHub's body ends. So a client's
/// slow readers hold at most its share of answers in memory, and all
/// clients' together at most the budget, never one entry per connection.
#[derive(Debug)]
struct ReadAhead {
    frames: mpsc::UnboundedReceiver<Ahead>,
    /// The request's upstream slot, held until the client drained the body.
    slot: Option<Held>,
    /// The rest of the upstream body, once the recorder gave up.
    rest: Option<Box<Streamed>>,
    ended: bool,
    size: SizeHint,
    /// The reading task, stopped when the client goes.
    task: tokio::task::AbortHandle,
}

/// What the read-ahead task passes on. The queue holds at most what the
/// recorder holds (one entry's worth, within the budget), shared, not
/// copied. The last message carries the recorder's [`Reservation`]: the
/// bytes queued stay counted until the client has taken them all.
#[derive(Debug)]
enum Ahead {
    Frame(Frame<Bytes>),
    Failed(BoxError, Reservation),
    /// Too large to keep, or no room left in the budget: the client reads
    /// the rest from the upstream.
    Rest(Box<Streamed>, Reservation),
    End(Reservation),
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReadAhead {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(rest) = &mut self.rest {
                let frame = rest.poll_upstream(cx);
                if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
                    self.slot = None;
                }
                return frame;
            }
            if self.ended {
                return Poll::Ready(None);
            }
            return match std::task::ready!(self.frames.poll_recv(cx)) {
                Some(Ahead::Frame(frame)) => Poll::Ready(Some(Ok(frame))),
                // The last message: the queue is drained, so what was read
                // ahead no longer counts against the budget.
                Some(Ahead::Rest(rest, _drained)) => {
                    self.rest = Some(rest);
                    continue;
                }
                Some(Ahead::End(_drained)) => {
                    self.ended = true;
                    self.slot = None;
                    Poll::Ready(None)
                }
                Some(Ahead::Failed(error, _drained)) => {
                    self.ended = true;
                    self.slot = None;
                    Poll::Ready(Some(Err(error)))
                }
                // The task ended without a word: a body cut short must
                // never look whole.
                None => {
                    self.ended = true;
                    self.slot = None;
                    Poll::Ready(Some(Err(Box::new(ReadAheadLost))))
                }
            };
        }
    }
}

/// Reads `streamed` into `recorder` and on to the client, until it ends,
/// fails, the recorder gives up, or the client goes.
async fn read_ahead(
    mut streamed: Streamed,
    mut recorder: Box<dyn Tap>,
    frames: mpsc::UnboundedSender<Ahead>,
) {
    loop {
        let frame = match std::future::poll_fn(|cx| streamed.poll_upstream(cx)).await {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                // The recorder goes unstored; the waiting requests are
                // released as it drops.
                let held = recorder.release();
                drop(recorder);
                let _ = frames.send(Ahead::Failed(error, held));
                return;
            }
            None => {
                recorder.finish();
                let _ = frames.send(Ahead::End(recorder.release()));
                return;
            }
        };
        let recording = frame.data_ref().is_none_or(|data| recorder.push(data));
        // hyper may not be asked again once a sized body has all its bytes.
        let end = streamed.body.is_end_stream();
        if end {
            recorder.finish();
        }
        if frames.send(Ahead::Frame(frame)).is_err() {
            return;
        }
        if end {
            let _ = frames.send(Ahead::End(recorder.release()));
            return;
        }
        if !recording {
            let held = recorder.release();
            let _ = frames.send(Ahead::Rest(Box::new(streamed), held));
            return;
        }
    }
}

impl ProxyBody {
    /// A body held in memory.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody(Kind::Full(Full::new(bytes.into())))
    }

    /// The upstream's body, passed through without buffering. If the
    /// upstream sends nothing for `stall_limit` while we wait on it, the
    /// body ends in an error, so the client sees a truncated response
    /// instead of a connection held open forever.
    pub fn streamed(body: Incoming, stall_limit: Duration, slot: Option<Held>) -> Self {
        ProxyBody(Kind::Streamed(Streamed {
            body,
            stall_limit,
            stall: Box::pin(tokio::time::sleep(stall_limit)),
            waiting: false,
            slot,
        }))
    }

    /// The same body, kept for the cache (stored only if it ends whole):
    /// read from the upstream ahead of the client, up to the entry limit and
    /// within the read-ahead budget. In-memory bodies are unchanged; outside
    /// a runtime, nothing is kept.
    pub fn recorded(self, recorder: impl Tap) -> Self {
        match self.0 {
            Kind::Streamed(mut streamed) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return ProxyBody(Kind::Streamed(streamed));
                };
                let size = streamed.body.size_hint();
                // The slot stays with the client's side: GitHub's body may
                // end long before the client has taken it.
                let slot = streamed.slot.take();
                let (sender, frames) = mpsc::unbounded_channel();
                let task = runtime
                    .spawn(read_ahead(streamed, Box::new(recorder), sender))
                    .abort_handle();
                ProxyBody(Kind::ReadAhead(ReadAhead {
                    frames,
                    slot,
                    rest: None,
                    ended: false,
                    size,
                    task,
                }))
            }
            other => ProxyBody(other),
        }
    }
}

impl From<Full<Bytes>> for ProxyBody {
    /// An in-memory body built elsewhere (a refusal's).
    fn from(full: Full<Bytes>) -> Self {
        ProxyBody(Kind::Full(full))
    }
}

/// Why a streamed response ended early.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent no response bytes for {0:?}")]
pub struct UpstreamStalled(Duration);

/// Why a read-ahead response ended early: its reading task stopped without
/// saying why.
#[derive(Debug, thiserror::Error)]
#[error("the upstream body's reader stopped")]
pub struct ReadAheadLost;

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.get_mut().0 {
            Kind::Full(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Kind::Streamed(streamed) => streamed.poll_upstream(cx),
            Kind::ReadAhead(ahead) => ahead.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(full) => full.is_end_stream(),
            Kind::Streamed(streamed) => streamed.body.is_end_stream(),
            Kind::ReadAhead(ahead) => ahead
                .rest
                .as_ref()
                .map_or(ahead.ended, |rest| rest.body.is_end_stream()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(full) => full.size_hint(),
            Kind::Streamed(streamed) => streamed.body.size_hint(),
            Kind::ReadAhead(ahead) => ahead.size,
        }
    }
}

/// One budget unit: budgets count KiB so a `u32` of permits covers any size.
const UNIT: u64 = 1024;

/// What a body reserves first; it doubles as more arrives.
const GROWTH: u64 = 16 * UNIT;

/// A process-wide limit on the bytes of request bodies held in memory at
/// once. Bodies are read before their signatures can be checked (spec §5
/// step 7), so without it anyone could make the proxy hold
/// `max_body_size` per connection; over budget, a request is refused with
/// 503 `BODY_BUDGET_EXHAUSTED` at once, never made to wait.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    units: Arc<Semaphore>,
}

impl BodyBudget {
    /// A budget of `bytes` (rounded up to whole KiB).
    pub fn new(bytes: u64) -> Self {
        let units = usize::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        BodyBudget {
            units: Arc::new(Semaphore::new(units)),
        }
    }

    /// Bytes not held by any body right now.
    pub fn available(&self) -> u64 {
        self.units.available_permits() as u64 * UNIT
    }

    /// Takes room for `bytes`, or refuses at once.
    fn take(&self, bytes: u64) -> Result<OwnedSemaphorePermit, Refusal> {
        let units = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX);
        Arc::clone(&self.units)
            .try_acquire_many_owned(units)
            .map_err(|_| {
                Refusal::new(ErrorCode::BodyBudgetExhausted).with_detail(format!(
                    "no room for {bytes} more body bytes ({} free)",
                    self.available()
                ))
            })
    }
}

/// A process-wide limit on the bytes of upstream answers held for the cache
/// before they are stored: what recorders have collected and what was read
/// ahead of clients that have not taken it yet (the same bytes, shared).
/// Neither is weighed by the cache, and a client that reads slowly chooses
/// how long they are held. Past the budget a recorder gives up (the answer
/// is streamed at its client's pace and not kept), so a full budget costs
/// coalescing and caching of new answers, never memory. Never waited for.
#[derive(Debug, Clone)]
pub struct ReadAheadBudget {
    units: Arc<Semaphore>,
}

impl ReadAheadBudget {
    /// A budget of `bytes` (rounded up to whole KiB).
    pub fn new(bytes: u64) -> Self {
        let units = usize::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        ReadAheadBudget {
            units: Arc::new(Semaphore::new(units)),
        }
    }

    /// Bytes not held by any recording right now.
    #[cfg(test)]
    fn available(&self) -> u64 {
        self.units.available_permits() as u64 * UNIT
    }

    /// An empty reservation, grown with [`Reservation::cover`].
    pub fn reservation(&self) -> Reservation {
        Reservation {
            units: Arc::clone(&self.units),
            permit: None,
            reserved: 0,
        }
    }
}

/// One recording's share of the [`ReadAheadBudget`], given back when
/// dropped.
#[derive(Debug)]
pub struct Reservation {
    units: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    /// Units held.
    reserved: u64,
}

impl Reservation {
    /// Grows to cover `bytes` in all, doubling from 16 KiB (so a large body
    /// takes a few reservations, not one per chunk), never waiting: `false`
    /// when the budget has no room left.
    pub fn cover(&mut self, bytes: u64) -> bool {
        let needed = bytes.div_ceil(UNIT);
        if needed <= self.reserved {
            return true;
        }
        let doubled = needed.max(self.reserved * 2).max(GROWTH / UNIT);
        for units in [doubled, needed] {
            let Ok(more) = u32::try_from(units - self.reserved) else {
                continue;
            };
            if let Ok(permit) = Arc::clone(&self.units).try_acquire_many_owned(more) {
                match &mut self.permit {
                    Some(held) => held.merge(permit),
                    None => self.permit = Some(permit),
                }
                self.reserved = units;
                return true;
            }
        }
        false
    }

    /// Moves what is held into a new reservation, leaving this one empty.
    pub fn take(&mut self) -> Reservation {
        Reservation {
            units: Arc::clone(&self.units),
            permit: self.permit.take(),
            reserved: std::mem::take(&mut self.reserved),
        }
    }
}

/// A request body held in memory, with its share of the [`BodyBudget`]
/// (given back when this is dropped).
#[derive(Debug)]
pub struct BufferedBody {
    /// Exactly the bytes that are hashed and forwarded.
    pub bytes: Bytes,
    _budget: Option<OwnedSemaphorePermit>,
}

/// A request body on its way upstream. One kind today: read whole, since
/// the request signature covers its digest. A body that streams (git's
/// packs) is one more variant, not a rewrite.
#[derive(Debug)]
pub enum RequestBody {
    /// Read whole and verified; its budget share is held while it lives.
    Buffered(BufferedBody),
}

impl From<BufferedBody> for RequestBody {
    fn from(body: BufferedBody) -> Self {
        RequestBody::Buffered(body)
    }
}

/// Reads a whole request body (spec §5 step 7): refused up front when its
/// declared length is over `limit`, and while reading when it grows past it;
/// refused with 503 when the budget has no room for it; 408 when it takes
/// longer than `timeout`.
pub async fn read(
    mut body: Incoming,
    limit: u64,
    timeout: Option<Duration>,
    budget: &BodyBudget,
) -> Result<BufferedBody, Refusal> {
    let declared = body.size_hint();
    if declared.lower() > limit {
        return Err(
            Refusal::new(ErrorCode::RequestTooLarge).with_detail(format!(
                "Content-Length {} over the limit of {limit}",
                declared.lower()
            )),
        );
    }
    if body.is_end_stream() {
        return Ok(BufferedBody {
            bytes: Bytes::new(),
            _budget: None,
        });
    }
    // Room is reserved as bytes arrive, doubling from 16 KiB, never upfront
    // by the declared length: holding budget costs a caller the bytes it
    // actually sent, not a number it wrote in a header.
    let ceiling = declared.exact().unwrap_or(limit).min(limit);
    let mut reserved = GROWTH.min(ceiling);
    let mut permit = budget.take(reserved)?;
    let mut buf = BytesMut::with_capacity(usize::try_from(reserved).unwrap_or(0));
    let collect = async {
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| Refusal::new(ErrorCode::InvalidBody).with_detail(e.to_string()))?;
            // Request trailers are dropped (spec §7): only data counts.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let len = (buf.len() + data.len()) as u64;
            if len > limit {
                return Err(Refusal::new(ErrorCode::RequestTooLarge)
                    .with_detail(format!("body grew past the limit of {limit} bytes")));
            }
            if len > reserved {
                let more = (len - reserved).max(reserved).min(limit - reserved);
                permit.merge(budget.take(more)?);
                reserved += more;
                buf.reserve(
                    usize::try_from(reserved)
                        .unwrap_or(0)
                        .saturating_sub(buf.len()),
                );
            }
            buf.extend_from_slice(&data);
        }
        Ok(())
    };
    match timeout {
        Some(timeout) => tokio::time::timeout(timeout, collect)
            .await
            .map_err(|_| Refusal::new(ErrorCode::RequestTimeout))??,
        None => collect.await?,
    }
    Ok(BufferedBody {
        bytes: buf.freeze(),
        _budget: Some(permit),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_ahead_reservation_grows_by_doubling_within_the_budget() {
        let budget = ReadAheadBudget::new(100 * 1024);
        let mut first = budget.reservation();
        assert!(first.cover(1));
        assert_eq!(budget.available(), 84 * 1024, "16 KiB to start");
        assert!(first.cover(20 * 1024));
        assert_eq!(budget.available(), 68 * 1024, "doubled");
        let mut second = budget.reservation();
        assert!(second.cover(60 * 1024));
        assert!(!second.cover(70 * 1024), "past the budget");
        assert!(first.cover(24 * 1024), "what is held still covers");
        let moved = first.take();
        assert!(first.cover(1) && !first.cover(16 * 1024));
        drop((first, moved, second));
        assert_eq!(budget.available(), 100 * 1024, "all given back");
    }

    #[test]
    fn the_budget_refuses_at_once_and_gives_room_back() {
        let budget = BodyBudget::new(64 * 1024);
        let first = budget.take(40 * 1024);
        assert!(first.is_ok());
        let refused = budget.take(40 * 1024).err().map(|r| r.code);
        assert_eq!(refused, Some(ErrorCode::BodyBudgetExhausted));
        drop(first);
        assert_eq!(budget.available(), 64 * 1024);
        assert!(budget.take(40 * 1024).is_ok());
    }
}
