//! The verdict: requests by kind and status, latency percentiles, the RSS
//! and descriptor curves, and whether each pass criterion holds.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::sample::Reading;
use crate::traffic::Kind;

/// How one request went.
#[derive(Debug)]
pub struct Outcome {
    /// Its kind.
    pub kind: Kind,
    /// The status answered, if any.
    pub status: Option<u16>,
    /// Whether it was the answer the spec gives (and carried no token).
    pub expected: bool,
    /// From connecting to the end of the answer, idle waits excluded.
    pub latency: Duration,
    /// Why no answer came.
    pub lost: Option<String>,
}

/// One sample: when, what the proxy held, and the traffic so far.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the traffic began.
    pub secs: f64,
    /// The proxy's RSS and descriptors.
    pub reading: Reading,
    /// Requests started so far.
    pub started: u64,
    /// Requests in flight.
    pub in_flight: u64,
}

/// Everything observed in one soak.
#[derive(Debug)]
pub struct Report {
    /// Requests started per second.
    pub rate: u32,
    /// Seconds of traffic.
    pub traffic_secs: f64,
    /// Every request's outcome.
    pub outcomes: Vec<Outcome>,
    /// Requests still unanswered after the drain.
    pub still_in_flight: u64,
    /// Ids answered 200.
    pub forwarded: HashSet<u64>,
    /// Ids the upstream received, and how often.
    pub received: BTreeMap<u64, u32>,
    /// Upstream requests without an id, the token or with a proof left on.
    pub received_other: u64,
    /// Every few seconds.
    pub samples: Vec<Sample>,
    /// Before any traffic.
    pub baseline: Reading,
    /// After the traffic drained.
    pub after: Reading,
    /// How the proxy exited on SIGTERM (`None`: it had to be killed).
    pub exit: Option<std::process::ExitStatus>,
    /// What it wrote on stderr.
    pub stderr: String,
    /// Lines on its stdout.
    pub log_lines: u64,
    /// Of those, per-request records.
    pub log_request_records: u64,
    /// Lines containing the shared token.
    pub log_token_leaks: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

impl Report {
    /// Writes `samples.csv` and `summary.txt` under `out`, prints the
    /// summary, and says whether the soak passed.
    pub fn write(&self, out: &Path) -> Result<bool, String> {
        let mut csv = String::from(
            "elapsed_s,rss_kib,fds,upstream_sockets,own_fds,requests_started,in_flight\n",
        );
        for sample in &self.samples {
            let r = &sample.reading;
            let _ = writeln!(
                csv,
                "{:.1},{},{},{},{},{},{}",
                sample.secs,
                r.rss_kib,
                r.fds,
                r.upstream_sockets,
                r.own_fds(),
                sample.started,
                sample.in_flight
            );
        }
        let csv_path = out.join("samples.csv");
        std::fs::write(&csv_path, csv).map_err(|e| format!("{}: {e}", csv_path.display()))?;

        let (text, passed) = self.summary();
        let summary_path = out.join("summary.txt");
        std::fs::write(&summary_path, &text)
            .map_err(|e| format!("{}: {e}", summary_path.display()))?;
        print!("{text}");
        println!(
            "signet-soak: wrote {} and {}",
            csv_path.display(),
            summary_path.display()
        );
        Ok(passed)
    }

    fn summary(&self) -> (String, bool) {
        let mut s = String::new();
        let mut failures: Vec<String> = Vec::new();
        let answered = self.outcomes.iter().filter(|o| o.status.is_some()).count() as u64;
        let _ = writeln!(
            s,
            "signet-soak: {:.0} s of traffic at {} req/s, {} requests ({} answered)\n",
            self.traffic_secs,
            self.rate,
            self.outcomes.len(),
            answered
        );

        // Requests by kind and status, with latencies.
        let _ = writeln!(s, "| kind | requests | by status | p50 ms | p99 ms |");
        let _ = writeln!(s, "|---|---:|---|---:|---:|");
        let mut timed: Vec<Duration> = Vec::new();
        for (kind, _) in Kind::MIX {
            let of_kind: Vec<&Outcome> = self.outcomes.iter().filter(|o| o.kind == kind).collect();
            let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
            for o in &of_kind {
                let key = o
                    .status
                    .map_or_else(|| "lost".to_owned(), |st| st.to_string());
                *by_status.entry(key).or_default() += 1;
            }
            let mut latencies: Vec<Duration> = of_kind
                .iter()
                .filter(|o| o.status.is_some())
                .map(|o| o.latency)
                .collect();
            latencies.sort_unstable();
            if kind.timed() {
                timed.extend(&latencies);
            }
            let statuses: Vec<String> =
                by_status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.1} |",
                kind.name(),
                of_kind.len(),
                statuses.join(", "),
                percentile(&latencies, 0.50),
                percentile(&latencies, 0.99)
            );
        }
        timed.sort_unstable();
        let _ = writeln!(
            s,
            "\nlatency over all but slow and idle clients: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&timed, 0.50),
            percentile(&timed, 0.99),
            percentile(&timed, 1.0)
        );

        let lost: Vec<&Outcome> = self.outcomes.iter().filter(|o| o.lost.is_some()).collect();
        let unexpected = self
            .outcomes
            .iter()
            .filter(|o| o.lost.is_none() && !o.expected)
            .count();
        if !lost.is_empty() || self.still_in_flight > 0 {
            let why: Vec<&str> = lost
                .iter()
                .filter_map(|o| o.lost.as_deref())
                .take(5)
                .collect();
            failures.push(format!(
                "{} requests lost, {} never finished (e.g. {why:?})",
                lost.len(),
                self.still_in_flight
            ));
        }
        if unexpected > 0 {
            let examples: Vec<String> = self
                .outcomes
                .iter()
                .filter(|o| o.lost.is_none() && !o.expected)
                .take(5)
                .map(|o| format!("{}: {:?}", o.kind.name(), o.status))
                .collect();
            failures.push(format!(
                "{unexpected} unexpected answers (e.g. {examples:?})"
            ));
        }

        // The upstream got each forwarded request once, and nothing else.
        let missing = self
            .forwarded
            .iter()
            .filter(|id| !self.received.contains_key(id))
            .count();
        let duplicated = self.received.values().filter(|n| **n > 1).count();
        let unanswered = self
            .received
            .keys()
            .filter(|id| !self.forwarded.contains(id))
            .count();
        let _ = writeln!(
            s,
            "upstream: {} forwarded requests received, {} missing, {} twice or more, {} never answered 200, {} without id/token or with a proof",
            self.received.len(),
            missing,
            duplicated,
            unanswered,
            self.received_other
        );
        if missing + duplicated + unanswered > 0 || self.received_other > 0 {
            failures.push("the upstream did not get exactly the forwarded requests".to_owned());
        }

        // Memory and descriptors.
        let traffic: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|sample| sample.secs <= self.traffic_secs)
            .collect();
        let warm_up = (self.traffic_secs / 4.0).min(60.0);
        let steady: Vec<&Reading> = traffic
            .iter()
            .filter(|sample| sample.secs >= warm_up)
            .map(|sample| &sample.reading)
            .collect();
        let third = steady.len() / 3;
        let max_rss = |rs: &[&Reading]| rs.iter().map(|r| r.rss_kib).max().unwrap_or(0);
        let max_fds = |rs: &[&Reading]| rs.iter().map(|r| r.fds).max().unwrap_or(0);
        let (first, last) = if third > 0 {
            (&steady[..third], &steady[steady.len() - third..])
        } else {
            (&steady[..], &steady[..])
        };
        let (first_rss, last_rss) = (max_rss(first), max_rss(last));
        let all: Vec<&Reading> = traffic.iter().map(|sample| &sample.reading).collect();
        let _ = writeln!(
            s,
            "RSS KiB: baseline {}, peak {}, after warm-up ({warm_up:.0} s) first third peak {first_rss}, last third peak {last_rss}, after drain {}",
            self.baseline.rss_kib,
            max_rss(&all),
            self.after.rss_kib
        );
        let _ = writeln!(
            s,
            "fds: baseline {} ({} own), peak {}, first third peak {}, last third peak {}, after drain {} ({} upstream pool, {} own)",
            self.baseline.fds,
            self.baseline.own_fds(),
            max_fds(&all),
            max_fds(first),
            max_fds(last),
            self.after.fds,
            self.after.upstream_sockets,
            self.after.own_fds()
        );
        if steady.len() < 3 {
            failures.push(format!(
                "too few samples after warm-up ({}) to judge memory",
                steady.len()
            ));
        } else if last_rss as f64 > first_rss as f64 * 1.2 + 8.0 * 1024.0 {
            failures.push(format!(
                "RSS grew: last third peak {last_rss} KiB > 1.2 × {first_rss} KiB + 8 MiB"
            ));
        }
        if self.after.own_fds() > self.baseline.own_fds() + 2 {
            failures.push(format!(
                "descriptors not returned: {} own after drain, {} before",
                self.after.own_fds(),
                self.baseline.own_fds()
            ));
        }

        // Logs and exit.
        let _ = writeln!(
            s,
            "log: {} lines, {} request records, {} with the token; exit on SIGTERM: {}",
            self.log_lines,
            self.log_request_records,
            self.log_token_leaks,
            self.exit
                .map_or_else(|| "killed after 40 s".to_owned(), |st| st.to_string())
        );
        if self.log_token_leaks > 0 {
            failures.push("the token appeared in the log".to_owned());
        }
        if self.log_request_records != answered {
            failures.push(format!(
                "{} request records for {answered} answered requests",
                self.log_request_records
            ));
        }
        if !self.exit.is_some_and(|st| st.success()) {
            failures.push("the proxy did not exit 0 on SIGTERM".to_owned());
        }
        if !self.stderr.trim().is_empty() {
            let _ = writeln!(s, "stderr: {}", self.stderr.trim());
        }

        let passed = failures.is_empty();
        if passed {
            let _ = writeln!(s, "\nPASS");
        } else {
            let _ = writeln!(s, "\nFAIL:");
            for failure in &failures {
                let _ = writeln!(s, "  - {failure}");
            }
        }
        (s, passed)
    }
}
