//! `signet-soak`: a bounded soak of the real `signet-proxy` binary (issue 10).
//!
//! It starts the GitHub API stand-in in process and the proxy binary in
//! front of it, then starts requests at a fixed rate for `--minutes`: valid
//! GETs and POSTs, large bodies, downloads, junk, replays, slow clients and
//! idle connections (see [`traffic::Kind::MIX`]). Every few seconds it
//! samples the proxy's RSS and open descriptors into `samples.csv`.
//!
//! It passes when:
//!
//! * every request got the status (and code) the spec gives it, and none
//!   was lost (no answer, reset, timeout);
//! * the upstream received each forwarded request exactly once, and nothing
//!   else, always with the shared token — which appears in no log line;
//! * memory is flat after warm-up: the last third's peak RSS is at most the
//!   first third's × 1.2 + 8 MiB;
//! * descriptors come back: once traffic has drained, the proxy holds at
//!   most 2 more than before it (its upstream connection pool aside, which
//!   idles out after 90 s by design);
//! * SIGTERM ends it with exit status 0.
//!
//! `scripts/soak [--minutes N]` builds and runs it (release, 30 minutes by
//! default); `scripts/test` runs two minutes of it.

mod report;
mod sample;
mod traffic;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser as _;
use signet_standin::StandIn;

use crate::report::{Outcome, Report, Sample};
use crate::traffic::{Kind, Planned, Signer};

/// The shared token the proxy injects; it must never come back.
const TOKEN: &str = "ghs_soakSharedToken_Zr8Kq2Wm5TnX4";

/// The soak's options.
#[derive(clap::Parser, Debug)]
#[command(about = "Soak the signet-proxy binary with mixed traffic at a fixed rate")]
struct Args {
    /// Minutes of traffic.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Requests started per second.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// The proxy binary [default: signet-proxy beside this program].
    #[arg(long)]
    proxy: Option<PathBuf>,
    /// Directory for samples.csv and summary.txt.
    #[arg(long, default_value = "target/soak")]
    out: PathBuf,
    /// Seconds between samples.
    #[arg(long, default_value_t = 5)]
    sample_every: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("signet-soak: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(soak(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("signet-soak: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What the log reader saw on the proxy's stdout.
#[derive(Debug, Default)]
struct LogSeen {
    lines: AtomicU64,
    request_records: AtomicU64,
    token_leaks: AtomicU64,
}

/// Shared between the traffic tasks.
struct Shared {
    addr: SocketAddr,
    signer: Signer,
    stranger: Signer,
    /// Accepted GETs' bytes and when they were accepted, for replays.
    accepted: Mutex<VecDeque<(Instant, Vec<u8>)>>,
    outcomes: Mutex<Vec<Outcome>>,
    /// Ids of requests answered 200 (each must reach the upstream once).
    forwarded: Mutex<HashSet<u64>>,
    in_flight: AtomicU64,
    started: AtomicU64,
}

async fn soak(args: Args) -> Result<bool, String> {
    let proxy_bin = match args.proxy.clone() {
        Some(path) => path,
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find myself: {e}"))?
            .with_file_name("signet-proxy"),
    };
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let upstream = StandIn::start(Some(TOKEN))
        .await
        .map_err(|e| format!("stand-in: {e}"))?;
    let signer = Signer::new();
    let port = free_port()?;
    let mut child = Command::new(&proxy_bin)
        .args(["--listen", "127.0.0.1", "--port", &port.to_string()])
        .args(["--github-api", &upstream.url()])
        .args(["--master-key", &signer.public_hex()])
        .env_clear()
        .env("GITHUB_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", proxy_bin.display()))?;
    let pid = child.id();
    let logs = Arc::new(LogSeen::default());
    let log_reader = child.stdout.take().map(|stdout| {
        let logs = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                logs.lines.fetch_add(1, Ordering::Relaxed);
                if line.contains("\"status\":") {
                    logs.request_records.fetch_add(1, Ordering::Relaxed);
                }
                if line.contains(TOKEN) {
                    logs.token_leaks.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    });
    let stderr_reader = child.stderr.take().map(|stderr| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut { stderr }, &mut text);
            text
        })
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_healthy(addr).await?;
    let upstream_port = upstream.addr().port();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = sample::read(pid, upstream_port);
    println!(
        "signet-soak: proxy pid {pid} on {addr}; {} req/s for {} min; baseline RSS {} KiB, {} fds",
        args.rate, args.minutes, baseline.rss_kib, baseline.fds
    );

    let shared = Arc::new(Shared {
        addr,
        signer,
        stranger: Signer::new(),
        accepted: Mutex::new(VecDeque::new()),
        outcomes: Mutex::new(Vec::new()),
        forwarded: Mutex::new(HashSet::new()),
        in_flight: AtomicU64::new(0),
        started: AtomicU64::new(0),
    });

    // The upstream's record is drained as it grows; ids counted.
    let received: Arc<Mutex<BTreeMap<u64, u32>>> = Arc::default();
    let received_other = Arc::new(AtomicU64::new(0));
    let drain_upstream = {
        let received = Arc::clone(&received);
        let other = Arc::clone(&received_other);
        move |upstream: &StandIn| {
            let mut received = received.lock().unwrap_or_else(PoisonError::into_inner);
            for request in upstream.take_requests() {
                let authorized = request
                    .headers
                    .get("authorization")
                    .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
                let id = request
                    .target
                    .split_once("?soak=")
                    .and_then(|(_, id)| id.parse::<u64>().ok());
                match id {
                    Some(id) if authorized && request.headers.get("signet-proof").is_none() => {
                        *received.entry(id).or_default() += 1;
                    }
                    _ => {
                        other.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    };

    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let started_at = Instant::now();
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let sampler = {
        let samples = Arc::clone(&samples);
        let shared = Arc::clone(&shared);
        let every = Duration::from_secs(args.sample_every.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let reading = sample::read(pid, upstream_port);
                let row = Sample {
                    secs: started_at.elapsed().as_secs_f64(),
                    reading,
                    started: shared.started.load(Ordering::Relaxed),
                    in_flight: shared.in_flight.load(Ordering::Relaxed),
                };
                samples
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(row);
            }
        })
    };

    // Fixed rate: one request per tick, late ticks caught up at once.
    let mut tick =
        tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n: u64 = 0;
    let mut last_drain = Instant::now();
    while started_at.elapsed() < duration {
        tick.tick().await;
        let shared = Arc::clone(&shared);
        shared.started.fetch_add(1, Ordering::Relaxed);
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            one(&shared, n).await;
            shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        n += 1;
        if last_drain.elapsed() > Duration::from_secs(2) {
            drain_upstream(&upstream);
            last_drain = Instant::now();
        }
    }
    let traffic_secs = started_at.elapsed().as_secs_f64();

    // Every started request finishes (each is bounded by its timeouts).
    let drain_deadline = Instant::now() + Duration::from_secs(120);
    while shared.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = sample::read(pid, upstream_port);
    sampler.abort();
    drain_upstream(&upstream);

    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let exit = wait_exit(&mut child, Duration::from_secs(40));
    if let Some(reader) = log_reader {
        let _ = reader.join();
    }
    let stderr = stderr_reader
        .and_then(|reader| reader.join().ok())
        .unwrap_or_default();

    let outcomes = std::mem::take(
        &mut *shared
            .outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let forwarded = std::mem::take(
        &mut *shared
            .forwarded
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let received = std::mem::take(&mut *received.lock().unwrap_or_else(PoisonError::into_inner));
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(PoisonError::into_inner));
    let report = Report {
        rate: args.rate,
        traffic_secs,
        outcomes,
        still_in_flight: shared.in_flight.load(Ordering::Relaxed),
        forwarded,
        received,
        received_other: received_other.load(Ordering::Relaxed),
        samples,
        baseline,
        after,
        exit,
        stderr,
        log_lines: logs.lines.load(Ordering::Relaxed),
        log_request_records: logs.request_records.load(Ordering::Relaxed),
        log_token_leaks: logs.token_leaks.load(Ordering::Relaxed),
    };
    report.write(&args.out)
}

/// Sends request number `n` and records how it went.
async fn one(shared: &Shared, n: u64) {
    let kind = traffic::kind_of(n);
    let mut pieces = 1;
    let mut pause = Duration::ZERO;
    let mut idle = Duration::ZERO;
    let planned: Option<Planned> = match kind {
        Kind::Get => Some(traffic::signed(&shared.signer, "GET", "/user", b"", n)),
        Kind::Post => {
            let body = format!(
                r#"{{"title":"soak {n}","body":"{}"}}"#,
                "x".repeat((n % 200) as usize)
            );
            Some(traffic::signed(
                &shared.signer,
                "POST",
                "/echo",
                body.as_bytes(),
                n,
            ))
        }
        Kind::Large => {
            let body: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
            Some(traffic::signed(&shared.signer, "POST", "/echo", &body, n))
        }
        Kind::Download => Some(traffic::signed(
            &shared.signer,
            "GET",
            "/stream/1048576",
            b"",
            n,
        )),
        Kind::Junk => Some(traffic::junk(&shared.signer, &shared.stranger, n)),
        Kind::Replay => replay(shared),
        Kind::Slow => {
            pieces = 8;
            pause = Duration::from_millis(250);
            Some(traffic::signed(
                &shared.signer,
                "POST",
                "/echo",
                &[b'7'; 8 * 1024],
                n,
            ))
        }
        Kind::Idle => {
            // Signed now, sent after the wait: within the 30 s skew, and
            // within the read timeout a first request has from the accept.
            idle = Duration::from_secs(5 + n % 20);
            // Every other idle connection is closed without a request.
            (n % 2 == 0).then(|| traffic::signed(&shared.signer, "GET", "/user", b"", n))
        }
    };
    let Some(planned) = planned else {
        if kind == Kind::Idle {
            // Up to 45 s: some outlive the read timeout and are closed by it.
            if let Ok(stream) = tokio::net::TcpStream::connect(shared.addr).await {
                tokio::time::sleep(Duration::from_secs(5 + n % 41)).await;
                drop(stream);
            }
            return;
        }
        // No accepted proof young enough to replay yet: a valid GET instead.
        let planned = traffic::signed(&shared.signer, "GET", "/user", b"", n);
        return run(
            shared,
            Kind::Get,
            planned,
            1,
            Duration::ZERO,
            Duration::ZERO,
        )
        .await;
    };
    run(shared, kind, planned, pieces, pause, idle).await;
}

async fn run(
    shared: &Shared,
    kind: Kind,
    planned: Planned,
    pieces: usize,
    pause: Duration,
    idle: Duration,
) {
    // The proof is signed before the idle wait: the request is sent within
    // the clock skew (idle holds stay under 30 s, the skew).
    let begun = Instant::now();
    let answer = traffic::exchange(shared.addr, &planned, pieces, pause, idle).await;
    let latency = begun.elapsed().saturating_sub(idle);
    let outcome = match answer {
        Ok(answer) => {
            let expected = traffic::matches(&planned.expect, &answer);
            let leaked = answer
                .body
                .windows(TOKEN.len())
                .any(|w| w == TOKEN.as_bytes());
            if answer.status == 200 {
                if let Some(id) = planned.id {
                    shared
                        .forwarded
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(id);
                }
                if kind == Kind::Get {
                    let mut accepted = shared
                        .accepted
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    accepted.push_back((Instant::now(), planned.bytes.clone()));
                    if accepted.len() > 256 {
                        accepted.pop_front();
                    }
                }
            }
            Outcome {
                kind,
                status: Some(answer.status),
                expected: expected && !leaked,
                latency,
                lost: None,
            }
        }
        Err(why) => Outcome {
            kind,
            status: None,
            expected: false,
            latency,
            lost: Some(why),
        },
    };
    shared
        .outcomes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(outcome);
}

/// The bytes of a GET accepted less than 10 s ago (its replay record is
/// certainly still there, its `ts` still fresh): `REPLAY_DETECTED`.
fn replay(shared: &Shared) -> Option<Planned> {
    let accepted = shared
        .accepted
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let (when, bytes) = accepted.back()?;
    if when.elapsed() > Duration::from_secs(10) {
        return None;
    }
    let bytes = bytes.clone();
    Some(Planned {
        head_len: bytes.len(),
        bytes,
        expect: traffic::Expect::refused(401, "REPLAY_DETECTED"),
        id: None,
    })
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("no free port: {e}"))
}

async fn wait_healthy(addr: SocketAddr) -> Result<(), String> {
    for _ in 0..400 {
        let (bytes, head_len) = traffic::request("GET", "/healthz", None, b"");
        let probe = Planned {
            bytes,
            head_len,
            expect: traffic::Expect::forwarded(0),
            id: None,
        };
        if let Ok(answer) = traffic::exchange(addr, &probe, 1, Duration::ZERO, Duration::ZERO).await
        {
            if answer.status == 200 {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("the proxy never became healthy on {addr}"))
}

/// The exit status, or `None` if it had to be killed.
fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}
