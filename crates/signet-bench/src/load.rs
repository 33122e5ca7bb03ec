//! Sending pre-built requests: closed loop (each connection sends its next
//! request when the last one was answered, like wrk) and open loop (requests
//! leave on a fixed schedule whatever happened before, and latency is counted
//! from the scheduled moment, so a stall is charged to every request it
//! delayed: coordinated omission corrected, like wrk2).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::http;

/// What a run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Latency of every answered request, microseconds.
    pub latencies_us: Vec<u64>,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no response (connection errors).
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Outcome {
    /// The `q` quantile (0..=1) of the latencies, microseconds.
    pub fn quantile_us(&mut self, q: f64) -> u64 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        self.latencies_us.sort_unstable();
        let at = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        self.latencies_us[at.min(self.latencies_us.len() - 1)]
    }

    /// Requests answered.
    pub fn answered(&self) -> u64 {
        self.statuses.values().sum()
    }

    fn merge(&mut self, other: Outcome) {
        self.latencies_us.extend(other.latencies_us);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.errors += other.errors;
    }
}

/// Sends every request over `connections` keep-alive connections, each
/// sending its next request as soon as the previous one is answered. One
/// thread: the generator takes as little of the machine as it can.
pub fn closed_loop(addr: SocketAddr, requests: Vec<Vec<u8>>, connections: usize) -> Outcome {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("signet-bench: no runtime: {error}");
            return Outcome::default();
        }
    };
    let requests = Rc::new(requests);
    let next = Rc::new(Cell::new(0usize));
    let outcome = Rc::new(RefCell::new(Outcome::default()));
    let started = Instant::now();
    runtime.block_on(async {
        let local = tokio::task::LocalSet::new();
        for _ in 0..connections {
            let (requests, next, outcome) =
                (Rc::clone(&requests), Rc::clone(&next), Rc::clone(&outcome));
            local.spawn_local(async move {
                let mut conn = None;
                let mut buf = Vec::with_capacity(64 * 1024);
                loop {
                    let i = next.get();
                    let Some(request) = requests.get(i) else {
                        break;
                    };
                    next.set(i + 1);
                    let sent = Instant::now();
                    match exchange_async(addr, &mut conn, &mut buf, request).await {
                        Ok(status) => {
                            let mut outcome = outcome.borrow_mut();
                            outcome.latencies_us.push(sent.elapsed().as_micros() as u64);
                            *outcome.statuses.entry(status).or_default() += 1;
                        }
                        Err(_) => {
                            outcome.borrow_mut().errors += 1;
                            conn = None;
                        }
                    }
                }
            });
        }
        local.await;
    });
    let mut outcome = outcome.take();
    outcome.elapsed = started.elapsed();
    outcome
}

async fn exchange_async(
    addr: SocketAddr,
    conn: &mut Option<tokio::net::TcpStream>,
    buf: &mut Vec<u8>,
    request: &[u8],
) -> Result<u16, String> {
    if conn.is_none() {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        *conn = Some(stream);
        buf.clear();
    }
    let Some(stream) = conn.as_mut() else {
        return Err("no connection".into());
    };
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    loop {
        if let Some(framed) = http::frame(buf)? {
            buf.drain(..framed.len);
            return Ok(framed.status);
        }
        let mut chunk = [0u8; 16 * 1024];
        let read = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

/// Sends request `i` at `start + i / rate` over one of `connections`
/// blocking connections (one thread each: sleeps are exact to tens of
/// microseconds, where tokio's timer rounds to a millisecond). Latency is
/// counted from the scheduled moment.
pub fn open_loop(
    addr: SocketAddr,
    requests: Vec<Vec<u8>>,
    connections: usize,
    rate: f64,
) -> Outcome {
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(Mutex::new(Outcome::default()));
    let started = Instant::now() + Duration::from_millis(50);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (requests, next, total) =
                (Arc::clone(&requests), Arc::clone(&next), Arc::clone(&total));
            std::thread::spawn(move || {
                let mut outcome = Outcome::default();
                let mut conn: Option<TcpStream> = None;
                let mut buf = Vec::with_capacity(64 * 1024);
                loop {
                    // Whichever connection is free takes the next slot, as a
                    // pool of client connections would.
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(request) = requests.get(i) else {
                        break;
                    };
                    let due = started + interval * (i as u32);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    match exchange_blocking(addr, &mut conn, &mut buf, request) {
                        Ok(status) => {
                            outcome.latencies_us.push(due.elapsed().as_micros() as u64);
                            *outcome.statuses.entry(status).or_default() += 1;
                        }
                        Err(_) => {
                            outcome.errors += 1;
                            conn = None;
                        }
                    }
                }
                if let Ok(mut total) = total.lock() {
                    total.merge(outcome);
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    let mut outcome = match Arc::try_unwrap(total) {
        Ok(total) => total.into_inner().unwrap_or_default(),
        Err(_) => Outcome::default(),
    };
    outcome.elapsed = started.elapsed();
    outcome
}

/// One request and its whole response on a blocking connection (opened
/// when there is none).
pub fn exchange_blocking(
    addr: SocketAddr,
    conn: &mut Option<TcpStream>,
    buf: &mut Vec<u8>,
    request: &[u8],
) -> Result<u16, String> {
    if conn.is_none() {
        let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        *conn = Some(stream);
        buf.clear();
    }
    let Some(stream) = conn.as_mut() else {
        return Err("no connection".into());
    };
    stream.write_all(request).map_err(|e| e.to_string())?;
    loop {
        if let Some(framed) = http::frame(buf)? {
            buf.drain(..framed.len);
            return Ok(framed.status);
        }
        let mut chunk = [0u8; 16 * 1024];
        let read = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}
