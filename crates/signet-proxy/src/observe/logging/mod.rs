//! Structured logs: JSON lines on stdout, one record per request.
//!
//! Four parts:
//!
//! - [`LogWriter`]: where the lines go. A request never waits for the log:
//!   each line is copied into a byte-bounded queue and a dedicated thread
//!   does the blocking writes. When the queue is full the line is dropped and
//!   counted ([`dropped_lines`]), and the thread later writes one
//!   `"log lines dropped"` record saying how many went missing.
//! - the request record (`RequestLog` and `LoggedBody`, per-request state
//!   that lives with the pipeline in `pipeline::record`): written when the
//!   response body ends, so it can tell a response that reached the client
//!   whole from one cut short.
//! - `json`: how an event becomes a line (the bytes `tracing-subscriber`'s
//!   JSON formatter writes, without its cost).
//! - `refusals`: how many records of unauthenticated refusals are written
//!   per second (`--refusal-log-limit`), and the report of the rest.
//!
//! Nothing here ever sees the GitHub token: no request or response header is
//! logged, ever.

mod json;
mod refusals;

pub use crate::config::DEFAULT_REFUSAL_LOG_LIMIT;
pub(crate) use refusals::admit as admit_unauthenticated_refusal;
pub use refusals::{
    report_unlogged as report_unlogged_refusals, unlogged_total as unlogged_refusals,
};

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::fmt::{MakeWriter, SubscriberBuilder};

use self::json::JsonLine;

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

/// What the request record's tests (in `pipeline`) share with these: a
/// sink they can read and a subscriber over it.
#[cfg(test)]
pub(crate) mod testing {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};

    use super::{subscriber, LogWriter};

    /// A sink the test can read.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        pub(crate) fn lines(&self) -> Vec<serde_json::Value> {
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

    /// Runs `f` with a subscriber over a fresh writer and returns its lines.
    pub(crate) fn capture(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let sink = Captured::default();
        let (writer, guard) = LogWriter::new(sink.clone());
        let subscriber = subscriber(tracing::Level::DEBUG, writer).finish();
        tracing::subscriber::with_default(subscriber, f);
        drop(guard);
        sink.lines()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::testing::Captured;
    use super::*;
    use std::sync::mpsc;

    const PATIENCE: Duration = Duration::from_secs(30);

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
