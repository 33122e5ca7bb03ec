//! What the proxy process holds, read from `/proc`: resident memory, open
//! descriptors, and how many of those are pooled connections to the
//! upstream (which the proxy keeps for 90 s on purpose).

use std::collections::HashSet;

/// One reading of the proxy process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// Entries in `/proc/<pid>/fd`.
    pub fds: u64,
    /// Of those, TCP sockets connected to the upstream's port.
    pub upstream_sockets: u64,
}

impl Reading {
    /// Descriptors that are not the upstream pool's.
    pub fn own_fds(&self) -> u64 {
        self.fds.saturating_sub(self.upstream_sockets)
    }
}

/// Reads the process `pid`; zeros for what cannot be read (it exited).
pub fn read(pid: u32, upstream_port: u16) -> Reading {
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    let mut fds = 0;
    let mut sockets = HashSet::new();
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in entries.flatten() {
            fds += 1;
            if let Ok(link) = std::fs::read_link(entry.path()) {
                let link = link.to_string_lossy();
                if let Some(inode) = link
                    .strip_prefix("socket:[")
                    .and_then(|rest| rest.strip_suffix(']'))
                {
                    sockets.insert(inode.to_owned());
                }
            }
        }
    }
    let upstream_sockets = ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let remote_port = fields.get(2)?.rsplit(':').next()?;
                    let port = u16::from_str_radix(remote_port, 16).ok()?;
                    (port == upstream_port).then(|| fields.get(9).map(|s| (*s).to_owned()))?
                })
                .collect::<Vec<_>>()
        })
        .filter(|inode| sockets.contains(inode))
        .count() as u64;
    Reading {
        rss_kib,
        fds,
        upstream_sockets,
    }
}
