//! A small HTTP/1.1 listener beside the proxy's own, for the admin API and
//! for the metrics with the probes.
//!
//! Its connections get the proxy port's discipline ([`crate::ingress::connection`]):
//! the header, write and idle timeouts of `--read-timeout`,
//! `--write-timeout` and `--idle-timeout`, each capped (10 s, 10 s, 30 s)
//! and never off, since nothing a probe, a scrape or an admin command sends
//! or receives needs longer; header sections of at most 16 KiB; and at most
//! [`MAX_REQUESTS_PER_CONNECTION`] requests per connection, so a connection
//! that pipelines requests cannot keep one forever.
//!
//! At most [`MAX_CONNECTIONS`] connections are served at once, and a new one
//! is always taken: when all are in use, the one holding its slot for the
//! least reason is closed to make room — a connection whose peer stopped
//! reading our answers (longest first), else the one that has been waiting
//! (for a head, for its next request, for its answer) longest. Probes and
//! admin commands are answered in milliseconds on a fresh connection, so
//! they are the youngest there is: whoever holds the listener, be it with
//! connections that pipeline and never read, slow heads or idle keep-alives,
//! would have to open [`MAX_CONNECTIONS`] new ones within that time to push
//! a probe out, and closing connections costs the listener nothing. (A
//! refusal at the limit, as on the proxy's port, would let anyone holding
//! every slot fail the liveness probe and get the pod restarted.)
//!
//! The connection closed is taken from the peer holding the most slots (an
//! IPv6 peer counted by its /64, which one host usually holds whole): the
//! kubelet probes from the node's address and Prometheus from its own, so a
//! flood from any other address pushes out only its own connections while
//! it holds more than they do, however fast it connects.

use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::ingress::connection::{self, Limits, Occupant, Timeouts};

/// Most connections a side listener serves at once; a new one beyond it
/// closes another.
pub const MAX_CONNECTIONS: usize = 64;

/// Most requests answered on one connection; the last answer says
/// `Connection: close`.
pub const MAX_REQUESTS_PER_CONNECTION: u32 = 100;

/// The largest request header section, bytes (431 beyond it).
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The longest each phase may last, whatever the proxy port allows.
const MAX_READ: Duration = Duration::from_secs(10);
const MAX_WRITE: Duration = Duration::from_secs(10);
const MAX_IDLE: Duration = Duration::from_secs(30);

/// The limits of a side listener's connections, from the proxy port's
/// timeouts: each as configured, capped, and never off.
pub fn limits(timeouts: Timeouts) -> Limits {
    let capped = |limit: Option<Duration>, max: Duration| Some(limit.map_or(max, |l| l.min(max)));
    Limits {
        timeouts: Timeouts {
            read: capped(timeouts.read, MAX_READ),
            write: capped(timeouts.write, MAX_WRITE),
            idle: capped(timeouts.idle, MAX_IDLE),
        },
        max_header_bytes: MAX_HEADER_BYTES,
        max_requests: Some(MAX_REQUESTS_PER_CONNECTION),
    }
}

/// Serves `handle` on `listener` until the task is dropped; then its
/// connections finish the request they are answering and end.
pub async fn serve<H, F, B>(listener: TcpListener, timeouts: Timeouts, handle: H)
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = limits(timeouts);
    let handle = Arc::new(handle);
    let occupants = Arc::new(Mutex::new(Occupants::default()));
    // Dropped with this task: every connection then ends gracefully.
    let (_stop, stop) = watch::channel(false);
    let mut evictions = Evictions::default();
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let occupant = Occupant::new();
        let (id, evicted) = occupants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(occupant.clone(), peer.ip());
        // Closed outside the lock, which every ending connection takes.
        if let Some(evicted) = evicted {
            evicted.close();
            evictions.count();
        }
        let handle = Arc::clone(&handle);
        let occupants = Arc::clone(&occupants);
        let stop = stop.clone();
        tokio::spawn(async move {
            connection::serve_with(stream, limits, occupant, stop, move |request| {
                handle(request)
            })
            .await;
            occupants
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .leave(id);
        });
    }
}

/// The connections being served.
#[derive(Debug, Default)]
struct Occupants {
    next_id: u64,
    live: Vec<(u64, Peer, Occupant)>,
}

/// Whose connection it is: the IPv4 address, or an IPv6 address's /64.
type Peer = IpAddr;

fn peer_of(ip: IpAddr) -> Peer {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

impl Occupants {
    /// Takes `occupant` from `ip` in, first making room if the listener is
    /// full: returns its id for [`Occupants::leave`] and the connection to
    /// close, for the caller to close once the lock is released.
    fn admit(&mut self, occupant: Occupant, ip: IpAddr) -> (u64, Option<Occupant>) {
        let mut evicted = None;
        if self.live.len() >= MAX_CONNECTIONS {
            if let Some(index) = least_reason_to_stay(&self.live) {
                let (_, _, victim) = self.live.swap_remove(index);
                evicted = Some(victim);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.live.push((id, peer_of(ip), occupant));
        (id, evicted)
    }

    /// The connection `id` ended (or was closed by [`Occupants::admit`]).
    fn leave(&mut self, id: u64) {
        if let Some(index) = self.live.iter().position(|(live, _, _)| *live == id) {
            self.live.swap_remove(index);
        }
    }
}

/// Which connection to close to make room: one of the peer holding the
/// most (a few tens of entries, counted on each eviction only); of its
/// connections, one whose peer stopped reading our answers, longest
/// stalled first (no probe or scrape does that); else the one that has
/// been doing what it does longest.
fn least_reason_to_stay(live: &[(u64, Peer, Occupant)]) -> Option<usize> {
    let mut held: Vec<(Peer, usize)> = Vec::new();
    for (_, peer, _) in live {
        match held.iter_mut().find(|(p, _)| p == peer) {
            Some((_, count)) => *count += 1,
            None => held.push((*peer, 1)),
        }
    }
    let (greediest, _) = held.into_iter().max_by_key(|(_, count)| *count)?;
    live.iter()
        .enumerate()
        .filter(|(_, (_, peer, _))| *peer == greediest)
        .min_by_key(|(_, (_, _, occupant))| match occupant.stalled_since() {
            Some(since) => (false, since),
            None => (true, occupant.phase_since()),
        })
        .map(|(index, _)| index)
}

/// Counts connections closed to make room and logs them at most once a
/// second, so a connection flood cannot become a log flood.
#[derive(Debug, Default)]
struct Evictions {
    since_log: u64,
    logged_at: Option<Instant>,
}

impl Evictions {
    fn count(&mut self) {
        self.since_log += 1;
        if self
            .logged_at
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(
                closed = self.since_log,
                max_connections = MAX_CONNECTIONS,
                "side listener full; closed the connections holding their slots for the least reason"
            );
            self.since_log = 0;
            self.logged_at = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_limits_follow_the_proxy_port_capped_and_never_off() {
        let short = Duration::from_millis(300);
        let limits = limits(Timeouts {
            read: Some(short),
            write: None,
            idle: Some(Duration::from_secs(600)),
        });
        assert_eq!(limits.timeouts.read, Some(short));
        assert_eq!(limits.timeouts.write, Some(MAX_WRITE), "0 (off) is capped");
        assert_eq!(limits.timeouts.idle, Some(MAX_IDLE));
        assert_eq!(limits.max_requests, Some(MAX_REQUESTS_PER_CONNECTION));
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_full_listener_closes_a_connection_of_the_peer_holding_the_most_however_old_the_others_are()
    {
        let node: IpAddr = [10, 0, 0, 1].into();
        let flood: IpAddr = [10, 0, 0, 9].into();
        let mut occupants = Occupants::default();
        // The probes' connections are the oldest there are.
        let probes: Vec<u64> = (0..3)
            .map(|_| occupants.admit(Occupant::new(), node).0)
            .collect();
        std::thread::sleep(Duration::from_millis(2));
        for _ in 3..MAX_CONNECTIONS {
            occupants.admit(Occupant::new(), flood);
        }
        for _ in 0..3 * MAX_CONNECTIONS {
            let (_, evicted) = occupants.admit(Occupant::new(), flood);
            assert!(evicted.is_some());
            let ids: Vec<u64> = occupants.live.iter().map(|(id, _, _)| *id).collect();
            assert!(probes.iter().all(|p| ids.contains(p)), "a probe was closed");
        }
        // A new probe takes a slot from the flood too.
        let (probe, evicted) = occupants.admit(Occupant::new(), node);
        assert!(evicted.is_some());
        let node_held = occupants.live.iter().filter(|(_, p, _)| *p == node).count();
        assert_eq!(node_held, 4);
        assert!(occupants.live.iter().any(|(id, _, _)| *id == probe));
    }

    #[test]
    fn ipv6_peers_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap_or(LOCAL);
        let b: IpAddr = "2001:db8:1:2:ffff::7".parse().unwrap_or(LOCAL);
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(LOCAL);
        assert_eq!(peer_of(a), peer_of(b));
        assert_ne!(peer_of(a), peer_of(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap_or(LOCAL);
        assert_eq!(peer_of(mapped), IpAddr::from([10, 0, 0, 1]));
    }

    #[test]
    fn a_full_listener_closes_the_connection_waiting_longest_to_take_a_new_one() {
        let mut occupants = Occupants::default();
        let (oldest, _) = occupants.admit(Occupant::new(), LOCAL);
        std::thread::sleep(Duration::from_millis(2));
        for _ in 1..MAX_CONNECTIONS {
            assert!(
                occupants.admit(Occupant::new(), LOCAL).1.is_none(),
                "room for all"
            );
        }
        let (newest, evicted) = occupants.admit(Occupant::new(), LOCAL);
        assert!(evicted.is_some());
        let ids: Vec<u64> = occupants.live.iter().map(|(id, _, _)| *id).collect();
        assert_eq!(ids.len(), MAX_CONNECTIONS);
        assert!(ids.contains(&newest));
        assert!(!ids.contains(&oldest));
        occupants.leave(newest);
        occupants.leave(oldest);
        assert_eq!(occupants.live.len(), MAX_CONNECTIONS - 1);
    }
}
