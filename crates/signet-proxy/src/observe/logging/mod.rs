//! Structured logs: JSON lines on stdout, one record per request.
//!
//! Four parts:
//!
//! - [`LogWriter`]: where the lines go. A request never waits for the log:
//!   each line is copied into a byte-bounded queue and a dedicated thread
//!   does the blocking writes. When the queue is full the line is dropped and
//!   counted ([`dropped_lines`]), and the thread later writes one
//!   `"log lines dropped"` record saying how many went missing.
//! - [`RequestLog`] and [`LoggedBody`]: what a request's record says. The
//!   record is written when the response body ends, so it can tell a
//!   response that reached the client whole from one cut short.
//! - `json`: how an event becomes a line (the bytes `tracing-subscriber`'s
//!   JSON formatter writes, without its cost).
//! - `refusals`: how many records of unauthenticated refusals are written
//!   per second (`--refusal-log-limit`), and the report of the rest.
//!
//! Nothing here ever sees the GitHub token: no request or response header is
//! logged, ever.

mod json;
mod refusals;

/// Whether the record of a refusal no verified key stands behind may be
/// written now, for refusals logged outside [`RequestLog`] (the admin API);
/// if not, it is counted in the next `"refusals not logged"` record.
pub(crate) fn admit_unauthenticated_refusal() -> bool {
    refusals::admit()
}

pub use refusals::DEFAULT_PER_SECOND as DEFAULT_REFUSAL_LOG_LIMIT;
pub use refusals::{
    report_unlogged as report_unlogged_refusals, unlogged_total as unlogged_refusals,
};

use std::borrow::Cow;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use signet_core::ErrorCode;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::fmt::{MakeWriter, SubscriberBuilder};

use self::json::JsonLine;
use crate::auth::clients::Client;
use crate::observe::metrics::Metrics;
use crate::refusal::Refusal;

/// Bytes of log lines that may wait for stdout. Memory stays bounded however
/// long a consumer stalls; 4 MiB absorbs bursts of tens of thousands of
/// request records.
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// Longest line accepted, newline included. Longer lines are dropped and
/// counted rather than truncated: a truncated line is not valid JSON, and log
/// pipelines tend to reject or mangle it. Request records stay far below this
/// because the path and the method are capped ([`MAX_PATH_BYTES`],
/// [`MAX_METHOD_BYTES`]).
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Longest request path logged, in bytes, `…` included.
pub const MAX_PATH_BYTES: usize = 512;

/// Longest request method logged, in bytes, `…` included: every registered
/// HTTP method fits (the longest, `UPDATEREDIRECTREF`, has 17), while a
/// client may send one as long as the whole header section.
pub const MAX_METHOD_BYTES: usize = 32;

/// How long dropping the [`LogGuard`] waits for queued lines to be written:
/// long enough for a healthy consumer, short enough that a blocked stdout
/// cannot hang the exit.
const FLUSH_DEADLINE: Duration = Duration::from_secs(2);

/// While lines keep being dropped and the queue never empties, at most one
/// drop report per interval, so a slow stdout gets a steady trickle of
/// reports rather than one after every write.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// How long the writer thread waits after a write before taking the next
/// batch.
const COALESCE: Duration = Duration::from_millis(2);

/// The drop counter of the writer installed by [`init`].
static INSTALLED: OnceLock<Arc<AtomicU64>> = OnceLock::new();

/// Installs the JSON subscriber at `level`, writing to stdout through a
/// [`LogWriter`], with at most `refusal_limit` records of unauthenticated
/// refusals per second (0: no limit; the rest are counted and reported by
/// [`report_unlogged_refusals`]). Keep the returned
/// guard alive until exit: dropping it writes what is queued (waiting at
/// most 2 s).
///
/// Safe to call twice: the second call installs nothing and returns a guard
/// that does nothing.
pub fn init(level: tracing::Level, refusal_limit: u64) -> LogGuard {
    refusals::install(refusal_limit);
    let (writer, guard) = LogWriter::new(io::stdout());
    let counter = Arc::clone(&writer.shared.dropped);
    match subscriber(level, writer).try_init() {
        Ok(()) => {
            let _ = INSTALLED.set(counter);
            guard
        }
        // Dropping `guard` here stops the writer nobody will use.
        Err(_) => LogGuard::inert(),
    }
}

/// Lines the installed log writer has dropped since start (0 before
/// [`init`]). Never decreases.
pub fn dropped_lines() -> u64 {
    INSTALLED
        .get()
        .map_or(0, |counter| counter.load(Ordering::Relaxed))
}

/// The JSON format every line shares ([`JsonLine`]), so the writer's own
/// drop reports can match it field for field.
fn subscriber(
    level: tracing::Level,
    writer: LogWriter,
) -> SubscriberBuilder<DefaultFields, JsonLine, LevelFilter, LogWriter> {
    tracing_subscriber::fmt()
        .event_format(JsonLine)
        .with_max_level(level)
        .with_writer(writer)
}

/// A log destination that never blocks the caller.
///
/// Every `write` must be one or more whole lines, which is how the
/// `tracing_subscriber` fmt layer writes (one `write_all` per event). The
/// line is copied into a queue bounded by [`QUEUE_BYTES`] and `write`
/// returns at once; a dedicated thread writes the queue to the sink. A line
/// that does not fit, or is longer than [`MAX_LINE_BYTES`], is dropped and
/// counted.
///
/// After drops the thread writes one record
/// `{"timestamp":…,"level":"WARN","message":"log lines dropped","dropped":N}`
/// with the lines lost since the previous report: as soon as it has caught up
/// (its queue is empty), or, while the queue never empties, at most once a
/// second after a write succeeds. A sink that stays blocked gets no reports at
/// all; one that drains always gets its report.
#[derive(Debug, Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread when dropped, after it has written what was queued
/// or a deadline has passed, whichever comes first.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    shared: Option<Arc<Shared>>,
    deadline: Duration,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread: lines queued, drops to report, or closing.
    work: Condvar,
    /// Wakes the guard: the writer thread has stopped.
    stopped: Condvar,
    /// Every line dropped by this writer, ever.
    dropped: Arc<AtomicU64>,
    limits: Limits,
}

#[derive(Debug)]
struct State {
    /// Whole lines, in order, waiting for the writer thread.
    queue: Vec<u8>,
    /// Lines dropped since the last report.
    unreported: u64,
    /// The guard is gone: write what is queued, then stop.
    closing: bool,
    /// No thread writes any more (or none ever started): lines are dropped.
    stopped: bool,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    queue_bytes: usize,
    line_bytes: usize,
    report_interval: Duration,
    flush_deadline: Duration,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        queue_bytes: QUEUE_BYTES,
        line_bytes: MAX_LINE_BYTES,
        report_interval: REPORT_INTERVAL,
        flush_deadline: FLUSH_DEADLINE,
    };
}

impl LogWriter {
    /// Starts a writer thread over `sink`. Use the writer as the fmt layer's
    /// `MakeWriter`; keep the guard until the log is no longer needed.
    ///
    /// If the thread cannot be started (the OS refuses), this says so on
    /// stderr and every line is dropped and counted: the proxy keeps serving
    /// and the drop counter shows the log is missing.
    pub fn new<W: Write + Send + 'static>(sink: W) -> (LogWriter, LogGuard) {
        Self::with_limits(sink, Limits::DEFAULT)
    }

    fn with_limits<W: Write + Send + 'static>(sink: W, limits: Limits) -> (LogWriter, LogGuard) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                // Reserved up front so queueing a line never reallocates (and
                // copies megabytes) while holding the lock.
                queue: Vec::with_capacity(limits.queue_bytes),
                unreported: 0,
                closing: false,
                stopped: false,
            }),
            work: Condvar::new(),
            stopped: Condvar::new(),
            dropped: Arc::new(AtomicU64::new(0)),
            limits,
        });
        let thread_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("signet-log".to_owned())
            .spawn(move || run_writer(&thread_shared, sink));
        if let Err(error) = spawned {
            eprintln!(
                "signet-proxy: cannot start the log writer thread ({error}); log lines are dropped"
            );
            shared.lock().stopped = true;
        }
        let guard = LogGuard {
            shared: Some(Arc::clone(&shared)),
            deadline: limits.flush_deadline,
        };
        (LogWriter { shared }, guard)
    }

    /// Lines this writer has dropped so far. Never decreases.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn enqueue(&self, line: &[u8]) {
        let limits = self.shared.limits;
        let mut state = self.shared.lock();
        let fits = line.len() <= limits.line_bytes
            && state.queue.len().saturating_add(line.len()) <= limits.queue_bytes;
        if fits && !state.stopped {
            state.queue.extend_from_slice(line);
        } else {
            state.unreported = state.unreported.saturating_add(1);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        // The writer takes the whole queue when it wakes: only the line that
        // finds it empty (or a drop to report) needs to wake it, so a busy
        // proxy pays for one wake-up per batch, not one per request.
        let wake = state.queue.len() == line.len() || !fits;
        drop(state);
        if wake {
            self.shared.work.notify_one();
        }
    }
}

impl Write for &LogWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        if !line.is_empty() {
            self.enqueue(line);
        }
        // Always the whole line, even when dropped: an error would only make
        // the fmt layer print to stderr, which can block too.
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing is the writer thread's job; a caller never waits for it.
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = &'a LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, and the state stays
        // consistent at every step, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the writer thread does next.
enum Work {
    Lines(Vec<u8>),
    Report(u64),
    Stop,
}

/// The writer thread: takes the whole queue at once (one write for many
/// lines), and reports drops between writes. The lock is never held while
/// writing.
fn run_writer<W: Write>(shared: &Shared, mut sink: W) {
    let mut batch = Vec::with_capacity(shared.limits.queue_bytes);
    let mut last_report = Instant::now();
    loop {
        let work = {
            let mut state = shared.lock();
            loop {
                let caught_up = state.queue.is_empty();
                if state.unreported > 0
                    && (caught_up || last_report.elapsed() >= shared.limits.report_interval)
                {
                    break Work::Report(std::mem::take(&mut state.unreported));
                }
                if !caught_up {
                    std::mem::swap(&mut state.queue, &mut batch);
                    break Work::Lines(std::mem::take(&mut batch));
                }
                if state.closing {
                    state.stopped = true;
                    break Work::Stop;
                }
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        match work {
            Work::Lines(mut lines) => {
                if sink.write_all(&lines).is_err() {
                    // Part of the batch may have been written; count it all
                    // as lost, since nobody can tell which lines arrived.
                    let lost = lines.iter().filter(|&&b| b == b'\n').count();
                    let lost = u64::try_from(lost).unwrap_or(u64::MAX);
                    shared.dropped.fetch_add(lost, Ordering::Relaxed);
                    let mut state = shared.lock();
                    state.unreported = state.unreported.saturating_add(lost);
                }
                lines.clear();
                batch = lines;
            }
            Work::Report(dropped) => {
                // A report that cannot be written is not retried: the lines
                // stay counted in `dropped_lines`, and retrying a broken sink
                // would spin.
                let _ = sink.write_all(drop_report(dropped).as_bytes());
                last_report = Instant::now();
            }
            Work::Stop => {
                let _ = sink.flush();
                shared.stopped.notify_all();
                return;
            }
        }
        if shared.lock().queue.is_empty() {
            // Caught up: push out anything the sink buffers (stdout flushes
            // at newlines, other sinks may not).
            let _ = sink.flush();
        }
        // Let lines gather for a moment: under load this turns one write and
        // one wake-up per request into one per batch, for at most this much
        // delay of a log line.
        std::thread::sleep(COALESCE);
    }
}

/// The writer's own record, in the fmt layer's JSON shape.
fn drop_report(dropped: u64) -> String {
    let mut timestamp = String::new();
    if SystemTime
        .format_time(&mut Writer::new(&mut timestamp))
        .is_err()
    {
        timestamp.clear();
    }
    let timestamp = serde_json::Value::String(timestamp);
    format!(
        "{{\"timestamp\":{timestamp},\"level\":\"WARN\",\"message\":\"log lines dropped\",\"dropped\":{dropped}}}\n"
    )
}

impl LogGuard {
    fn inert() -> Self {
        LogGuard {
            shared: None,
            deadline: Duration::ZERO,
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        let mut state = shared.lock();
        state.closing = true;
        shared.work.notify_one();
        // Bounded: a blocked sink must not hang the exit.
        let _ = shared
            .stopped
            .wait_timeout_while(state, self.deadline, |state| !state.stopped)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

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
    pub fn cache(&mut self, outcome: crate::upstream::api::cache::Outcome) {
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
        if refused.is_some() && (unauthenticated || replayed) && !refusals::admit() {
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
    use std::sync::mpsc;

    use http_body_util::{BodyExt as _, Empty, Full};

    const PATIENCE: Duration = Duration::from_secs(30);

    /// A sink the test can read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        fn lines(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A sink whose writes wait until the test opens the gate.
    #[derive(Clone, Default)]
    struct Gated {
        gate: Arc<(Mutex<bool>, Condvar)>,
        out: Captured,
    }

    impl Gated {
        fn open(&self) {
            *self.gate.0.lock().unwrap() = true;
            self.gate.1.notify_all();
        }
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let open = self.gate.0.lock().unwrap();
            drop(self.gate.1.wait_while(open, |open| !*open).unwrap());
            self.out.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn is_report(line: &serde_json::Value) -> bool {
        line["message"] == "log lines dropped"
    }

    /// Writes `count` numbered lines from another thread; None if the calls
    /// did not all return in time.
    fn write_lines_elsewhere(writer: &LogWriter, count: usize) -> Option<()> {
        let writer = writer.clone();
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            for n in 0..count {
                let line = format!("{{\"n\":{n},\"pad\":\"{:064}\"}}\n", 0);
                (&writer).write_all(line.as_bytes()).unwrap();
            }
            let _ = done.send(());
        });
        finished.recv_timeout(PATIENCE).ok()
    }

    /// Runs `f` with a subscriber over a fresh writer and returns its lines.
    fn capture(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let sink = Captured::default();
        let (writer, guard) = LogWriter::new(sink.clone());
        let subscriber = subscriber(tracing::Level::DEBUG, writer).finish();
        tracing::subscriber::with_default(subscriber, f);
        drop(guard);
        sink.lines()
    }

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
    fn writing_never_waits_for_a_blocked_sink() {
        let sink = Gated::default();
        let (writer, guard) = LogWriter::new(sink.clone());
        let returned = write_lines_elsewhere(&writer, 100_000);
        sink.open();
        drop(guard);
        assert!(returned.is_some(), "writes blocked on a blocked sink");
    }

    #[test]
    fn lines_over_the_byte_budget_are_dropped_counted_and_reported_once() {
        let sink = Gated::default();
        let (writer, guard) = LogWriter::new(sink.clone());
        let total = 100_000;
        write_lines_elsewhere(&writer, total).unwrap();
        let dropped = writer.dropped_lines();
        assert!(dropped > 0, "100k lines of ~80 bytes exceed 4 MiB");

        sink.open();
        drop(guard);
        let lines = sink.out.lines();
        let reports: Vec<_> = lines.iter().filter(|l| is_report(l)).collect();
        assert_eq!(reports.len(), 1, "one report after draining");
        assert_eq!(reports[0]["dropped"], dropped);
        assert_eq!(reports[0]["level"], "WARN");
        assert!(reports[0]["timestamp"].as_str().unwrap().ends_with('Z'));
        // Once the budget was full nothing fitted until the sink moved, so
        // the kept lines are exactly the first ones, in order.
        let kept: Vec<u64> = lines
            .iter()
            .filter(|l| !is_report(l))
            .map(|l| l["n"].as_u64().unwrap())
            .collect();
        assert_eq!(kept, (0..kept.len() as u64).collect::<Vec<_>>());
        assert_eq!(kept.len() as u64 + dropped, total as u64);
    }

    #[test]
    fn a_line_longer_than_the_cap_is_dropped_and_reported() {
        let sink = Captured::default();
        let (writer, guard) = LogWriter::new(sink.clone());
        let long = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(MAX_LINE_BYTES));
        (&writer).write_all(long.as_bytes()).unwrap();
        (&writer).write_all(b"{\"n\":1}\n").unwrap();
        drop(guard);
        let lines = sink.lines();
        assert_eq!(writer.dropped_lines(), 1);
        assert_eq!(lines.iter().filter(|l| is_report(l)).count(), 1);
        assert!(lines.iter().any(|l| l["n"] == 1));
        assert!(!lines.iter().any(|l| l.get("pad").is_some()));
    }

    #[test]
    fn the_drop_counter_never_decreases() {
        let limits = Limits {
            queue_bytes: 16,
            ..Limits::DEFAULT
        };
        let sink = Gated::default();
        let (writer, guard) = LogWriter::with_limits(sink.clone(), limits);
        let mut last = 0;
        for _ in 0..50 {
            (&writer).write_all(b"{\"line\":12345}\n").unwrap();
            let now = writer.dropped_lines();
            assert!(now >= last);
            last = now;
        }
        assert!(last >= 48, "16 bytes hold at most two queued lines");
        sink.open();
        drop(guard);
        assert!(writer.dropped_lines() >= last);
    }

    #[test]
    fn dropping_the_guard_gives_up_on_a_blocked_sink() {
        let limits = Limits {
            flush_deadline: Duration::from_millis(50),
            ..Limits::DEFAULT
        };
        let sink = Gated::default();
        let (writer, guard) = LogWriter::with_limits(sink.clone(), limits);
        (&writer).write_all(b"{}\n").unwrap();
        let (done, dropped) = mpsc::channel();
        std::thread::spawn(move || {
            drop(guard);
            let _ = done.send(());
        });
        let returned = dropped.recv_timeout(PATIENCE);
        sink.open();
        assert!(returned.is_ok(), "guard drop hung on a blocked sink");
    }

    #[test]
    fn dropping_the_guard_writes_what_is_queued() {
        let sink = Captured::default();
        let (writer, guard) = LogWriter::new(sink.clone());
        for n in 0..1000 {
            (&writer)
                .write_all(format!("{{\"n\":{n}}}\n").as_bytes())
                .unwrap();
        }
        drop(guard);
        assert_eq!(sink.lines().len(), 1000);
        assert_eq!(writer.dropped_lines(), 0);
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

    #[test]
    fn a_drop_report_has_the_shape_of_a_logged_event() {
        let sink = Captured::default();
        let (writer, guard) = LogWriter::new(sink.clone());
        let subscriber = subscriber(tracing::Level::INFO, writer.clone()).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(dropped = 1u64, "log lines dropped");
        });
        let too_long = format!("\"{}\"\n", "x".repeat(MAX_LINE_BYTES));
        (&writer).write_all(too_long.as_bytes()).unwrap();
        drop(guard);
        let lines = sink.lines();
        assert_eq!(lines.len(), 2);
        let keys = |line: &serde_json::Value| {
            line.as_object()
                .unwrap()
                .iter()
                .map(|(key, value)| {
                    (
                        key.clone(),
                        if key == "timestamp" {
                            serde_json::Value::Null
                        } else {
                            value.clone()
                        },
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&lines[0]), keys(&lines[1]));
    }
}
