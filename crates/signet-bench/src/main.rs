//! `signet-bench`: the load generator behind `scripts/bench`.
//!
//! Every request is built (and, for signed runs, signed with a fresh nonce)
//! before a measurement starts, so signing never lands on the CPU account
//! of the process under test. CPU is read from `/proc/<pid>/stat` of the
//! processes named with `--pid` just before the first request and just
//! after the last answer: per thread from `schedstat` (nanoseconds) when
//! the same threads ran throughout, else from `stat` (clock ticks). Output is one line of `key=value` pairs.

mod http;
mod load;
mod procfs;
mod proofs;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use crate::proofs::Kind;

#[derive(Debug, Parser)]
#[command(about = "Load generator for scripts/bench")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints the bench client's master public key (hex), for `--master-key`.
    MasterKey,
    /// CPU time of one `verify_strict` on this machine, microseconds (median of rounds).
    Verify {
        /// Verifications per round.
        #[arg(long, default_value_t = 4000)]
        iterations: u32,
        /// Rounds; the median is printed.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Sends requests and reports latency, throughput and the CPU the
    /// `--pid` processes spent per answered request.
    Load {
        /// Address to send to.
        #[arg(long)]
        addr: SocketAddr,
        /// Request target.
        #[arg(long, default_value = "/repos/octo-org/hello-world")]
        target: String,
        /// What each request carries.
        #[arg(long, value_enum, default_value_t = Kind::Signed)]
        kind: Kind,
        /// How many requests (each proof is used once).
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Keep-alive connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Requests per second, open loop; without it, closed loop.
        #[arg(long)]
        rate: Option<f64>,
        /// Processes whose CPU is charged to the requests (repeatable).
        #[arg(long = "pid")]
        pids: Vec<u32>,
    },
    /// Opens keep-alive connections, one signed request on each, holds them
    /// all open, and prints the RSS of `--pid`.
    Hold {
        /// Address to connect to.
        #[arg(long)]
        addr: SocketAddr,
        /// Request target.
        #[arg(long, default_value = "/repos/octo-org/hello-world")]
        target: String,
        /// Connections to hold.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// The process whose RSS is read.
        #[arg(long)]
        pid: u32,
    },
    /// Downloads one signed GET, reading as fast as it can, and prints how
    /// far the RSS of `--pid` rose above where it was before.
    Stream {
        /// Address to connect to.
        #[arg(long)]
        addr: SocketAddr,
        /// Request target.
        #[arg(long)]
        target: String,
        /// The process whose RSS is watched.
        #[arg(long)]
        pid: u32,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::MasterKey => {
            let key = proofs::master().verifying_key();
            println!("{}", signet_core::public_key_hex(&key));
            Ok(())
        }
        Command::Verify { iterations, rounds } => verify(iterations, rounds),
        Command::Load {
            addr,
            target,
            kind,
            requests,
            connections,
            rate,
            pids,
        } => run_load(addr, &target, kind, requests, connections, rate, &pids),
        Command::Hold {
            addr,
            target,
            connections,
            pid,
        } => hold(addr, &target, connections, pid),
        Command::Stream { addr, target, pid } => stream(addr, &target, pid),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("signet-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The proxy's per-request signature check: a parsed key (the proxy keeps
/// it with the cached binding), a canonical request of typical length.
fn verify(iterations: u32, rounds: usize) -> Result<(), String> {
    let key = SigningKey::from_bytes(&[0xe7; 32]);
    let message = b"signet-proof-v1/request\nGET\n/repos/octo-org/hello-world\n1700000000\n\
        AAAAAAAAAAAAAAAAAAAAAA\n47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU";
    let signature = key.sign(message);
    let public = VerifyingKey::from_bytes(key.verifying_key().as_bytes())
        .map_err(|e| format!("key: {e}"))?;
    let mut per_round = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let before = procfs::thread_cpu_ns().ok_or("no /proc/thread-self/schedstat")?;
        for _ in 0..iterations {
            public
                .verify_strict(std::hint::black_box(message), &signature)
                .map_err(|e| format!("verify: {e}"))?;
        }
        let after = procfs::thread_cpu_ns().ok_or("no /proc/thread-self/schedstat")?;
        per_round.push((after - before) as f64 / 1000.0 / f64::from(iterations.max(1)));
    }
    per_round.sort_by(f64::total_cmp);
    println!("verify_us={:.2}", per_round[per_round.len() / 2]);
    Ok(())
}

fn run_load(
    addr: SocketAddr,
    target: &str,
    kind: Kind,
    count: usize,
    connections: usize,
    rate: Option<f64>,
    pids: &[u32],
) -> Result<(), String> {
    let host = addr.to_string();
    let requests = proofs::requests(kind, &host, target, count);
    let meter = procfs::CpuMeter::start(pids);
    let mut outcome = match rate {
        Some(rate) => load::open_loop(addr, requests, connections, rate),
        None => load::closed_loop(addr, requests, connections),
    };
    let (cpu, exact) = meter.elapsed_us();
    let answered = outcome.answered();
    let statuses: Vec<String> = outcome
        .statuses
        .iter()
        .map(|(status, n)| format!("{status}:{n}"))
        .collect();
    let (p50, p99) = (outcome.quantile_us(0.50), outcome.quantile_us(0.99));
    println!(
        "answered={answered} errors={} secs={:.3} rps={:.0} p50_us={p50} p99_us={p99} cpu_us_per_req={:.2} cpu_exact={exact} statuses={}",
        outcome.errors,
        outcome.elapsed.as_secs_f64(),
        answered as f64 / outcome.elapsed.as_secs_f64().max(1e-9),
        cpu / (answered.max(1)) as f64,
        statuses.join(","),
    );
    Ok(())
}

fn hold(addr: SocketAddr, target: &str, connections: usize, pid: u32) -> Result<(), String> {
    let host = addr.to_string();
    let requests = proofs::requests(Kind::Signed, &host, target, connections);
    let before = procfs::status_kib(pid, "VmRSS").ok_or("no such process")?;
    let mut held = Vec::with_capacity(connections);
    let mut ok = 0;
    let mut buf = Vec::new();
    for request in &requests {
        let mut conn = None;
        if matches!(
            load::exchange_blocking(addr, &mut conn, &mut buf, request),
            Ok(200)
        ) {
            ok += 1;
        }
        held.extend(conn);
    }
    std::thread::sleep(Duration::from_secs(1));
    let during = procfs::status_kib(pid, "VmRSS").ok_or("no such process")?;
    println!(
        "held={} ok={ok} rss_before_kib={before} rss_held_kib={during}",
        held.len()
    );
    Ok(())
}

fn stream(addr: SocketAddr, target: &str, pid: u32) -> Result<(), String> {
    let request = proofs::one_closing(&addr.to_string(), target);
    let peak_resettable = procfs::reset_peak(pid);
    let before = procfs::status_kib(pid, "VmRSS").ok_or("no such process")?;
    let mut highest = before;
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream.write_all(&request).map_err(|e| e.to_string())?;
    let mut chunk = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let mut head = Vec::new();
    let mut since_sample = 0u64;
    loop {
        let read = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if read == 0 {
            break;
        }
        if head.len() < 64 {
            head.extend_from_slice(&chunk[..read.min(64)]);
        }
        total += read as u64;
        since_sample += read as u64;
        if since_sample >= 1 << 20 {
            since_sample = 0;
            highest = highest.max(procfs::status_kib(pid, "VmRSS").unwrap_or(0));
        }
    }
    let elapsed = started.elapsed();
    if peak_resettable {
        highest = highest.max(procfs::status_kib(pid, "VmHWM").unwrap_or(0));
    }
    let status = String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .unwrap_or("?")
        .to_owned();
    println!(
        "status={status} bytes={total} secs={:.3} rss_before_kib={before} rss_peak_kib={highest} growth_kib={} peak_from_hwm={peak_resettable}",
        elapsed.as_secs_f64(),
        highest.saturating_sub(before),
    );
    Ok(())
}
