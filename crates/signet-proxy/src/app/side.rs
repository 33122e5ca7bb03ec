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

use std::future::Future;
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
        let Ok((stream, _peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let occupant = Occupant::new();
        let (id, evicted) = occupants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(occupant.clone());
        if evicted {
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
    live: Vec<(u64, Occupant)>,
}

impl Occupants {
    /// Takes `occupant` in, first closing another if the listener is full
    /// (then `true`); returns its id for [`Occupants::leave`].
    fn admit(&mut self, occupant: Occupant) -> (u64, bool) {
        let mut evicted = false;
        if self.live.len() >= MAX_CONNECTIONS {
            if let Some(index) = least_reason_to_stay(&self.live) {
                let (_, victim) = self.live.swap_remove(index);
                victim.close();
                evicted = true;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.live.push((id, occupant));
        (id, evicted)
    }

    /// The connection `id` ended (or was closed by [`Occupants::admit`]).
    fn leave(&mut self, id: u64) {
        if let Some(index) = self.live.iter().position(|(live, _)| *live == id) {
            self.live.swap_remove(index);
        }
    }
}

/// Which connection to close to make room: one whose peer stopped reading
/// our answers, longest stalled first (no probe or scrape does that); else
/// the one that has been doing what it does longest.
fn least_reason_to_stay(live: &[(u64, Occupant)]) -> Option<usize> {
    live.iter()
        .enumerate()
        .min_by_key(|(_, (_, occupant))| match occupant.stalled_since() {
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

    #[test]
    fn a_full_listener_closes_the_connection_waiting_longest_to_take_a_new_one() {
        let mut occupants = Occupants::default();
        let (oldest, _) = occupants.admit(Occupant::new());
        std::thread::sleep(Duration::from_millis(2));
        for _ in 1..MAX_CONNECTIONS {
            assert!(!occupants.admit(Occupant::new()).1, "room for all");
        }
        let (newest, evicted) = occupants.admit(Occupant::new());
        assert!(evicted);
        let ids: Vec<u64> = occupants.live.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), MAX_CONNECTIONS);
        assert!(ids.contains(&newest));
        assert!(!ids.contains(&oldest));
        occupants.leave(newest);
        occupants.leave(oldest);
        assert_eq!(occupants.live.len(), MAX_CONNECTIONS - 1);
    }
}
