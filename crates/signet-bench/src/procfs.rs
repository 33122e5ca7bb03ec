//! What the kernel knows about the processes under test.

use std::fs;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: u64 = 100;

/// User + system CPU of `pid` so far, in microseconds (all its threads,
/// including those that have exited).
pub fn cpu_us(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / TICKS_PER_SEC)
}

/// CPU of all `pids` together, microseconds, from `/proc/<pid>/stat`:
/// every thread that ever ran counts, in clock ticks (10 ms).
pub fn total_cpu_us(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&pid| cpu_us(pid)).sum()
}

/// CPU of all threads of all `pids`, nanoseconds, from each thread's
/// `schedstat`, with the set of threads it was read from. Exact, but a
/// thread that has exited no longer counts.
pub fn threads_cpu_ns(pids: &[u32]) -> (u64, Vec<(u32, u32)>) {
    let mut total = 0;
    let mut threads = Vec::new();
    for &pid in pids {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let ns = fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|line| line.split(' ').next()?.parse::<u64>().ok());
            if let Some(ns) = ns {
                total += ns;
                threads.push((pid, tid));
            }
        }
    }
    threads.sort_unstable();
    (total, threads)
}

/// CPU the `pids` spent between two readings, microseconds: from the exact
/// per-thread figures when the same threads were there both times, else
/// from the tick-granular process totals (which keep exited threads).
pub struct CpuMeter {
    pids: Vec<u32>,
    ticks_us: u64,
    threads_ns: u64,
    threads: Vec<(u32, u32)>,
}

impl CpuMeter {
    /// Starts measuring.
    pub fn start(pids: &[u32]) -> Self {
        let (threads_ns, threads) = threads_cpu_ns(pids);
        CpuMeter {
            pids: pids.to_vec(),
            ticks_us: total_cpu_us(pids),
            threads_ns,
            threads,
        }
    }

    /// Microseconds of CPU since [`CpuMeter::start`], and whether they are
    /// the exact per-thread figure.
    pub fn elapsed_us(&self) -> (f64, bool) {
        let (threads_ns, threads) = threads_cpu_ns(&self.pids);
        if threads == self.threads {
            (
                threads_ns.saturating_sub(self.threads_ns) as f64 / 1000.0,
                true,
            )
        } else {
            (
                total_cpu_us(&self.pids).saturating_sub(self.ticks_us) as f64,
                false,
            )
        }
    }
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resets `VmHWM` to the current RSS (needs to own the process or be root).
pub fn reset_peak(pid: u32) -> bool {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// CPU time of the calling thread, nanoseconds (`/proc/thread-self/schedstat`).
pub fn thread_cpu_ns() -> Option<u64> {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split(' ')
        .next()?
        .parse()
        .ok()
}
