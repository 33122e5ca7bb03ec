//! The side listeners — metrics with the probes (`--metrics-listen`) and the
//! admin API (`--admin-listen`) — against callers that try to hold them:
//! connections that pipeline requests and never read, peers that stop
//! reading, keep-alive connections left idle. Probes and the admin API must
//! stay answerable through all of it. Real sockets; the real binary where
//! the whole listener is at stake.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use signet_core::ErrorCode;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpSocket, TcpStream};

use crate::security::Running;
use crate::support::{self, assert_refused, Claims, Env, Request, Signer, TOKEN};

/// How many connections a side listener serves at once (`side.rs`).
const SIDE_CONNECTIONS: usize = 64;

/// Most requests a side listener answers on one connection (`side.rs`).
const SIDE_REQUESTS_PER_CONNECTION: usize = 100;

/// How long a probe may take to be answered, however the listener is held:
/// the kubelet's default probe timeout is 1 s, and this leaves room for a
/// loaded test machine.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

/// Opens `count` connections to `addr`, each pipelining `requests` copies of
/// `request` (a whole request, bytes) and never reading an answer.
async fn hold(addr: SocketAddr, count: usize, request: &[u8], requests: usize) -> Vec<TcpStream> {
    let batch = request.repeat(requests);
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            continue;
        };
        // The listener may stop reading (or close a connection it evicts):
        // what matters is that it was sent, not that all of it was taken.
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.write_all(&batch)).await;
        held.push(stream);
    }
    // Let the listener take them all in and answer what it can.
    tokio::time::sleep(Duration::from_millis(300)).await;
    held
}

/// `request` on a fresh connection, as a kubelet probe sends it (`Connection:
/// close`): the status it got within [`PROBE_LIMIT`], or why not.
async fn answered(addr: SocketAddr, request: Request) -> Result<support::Reply, String> {
    let started = Instant::now();
    let bytes = request
        .header("Connection", "close")
        .to_bytes(&addr.to_string());
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.write_all(&bytes).await;
    let raw = support::read_until_closed(&mut stream, PROBE_LIMIT)
        .await
        .ok_or_else(|| format!("no answer within {PROBE_LIMIT:?}"))?;
    let mut raw = raw;
    let reply = support::take_reply(&mut raw, false).ok_or_else(|| {
        format!(
            "closed without an answer after {:?} ({} bytes)",
            started.elapsed(),
            raw.len()
        )
    })?;
    Ok(reply)
}

/// Answers counted in the raw bytes of pipelined responses.
fn count_answers(raw: &[u8], status_line: &[u8]) -> usize {
    raw.windows(status_line.len())
        .filter(|w| *w == status_line)
        .count()
}

/// The proxy binary with both side listeners, probes and admin API, and a
/// stdout nobody reads (the floods below are logged).
struct SideBinary {
    addr: SocketAddr,
    metrics: SocketAddr,
    admin: SocketAddr,
    admin_signer: Signer,
    client: Signer,
    _running: Running,
}

impl SideBinary {
    async fn start() -> SideBinary {
        let port = support::free_port().to_string();
        let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let (metrics, admin) = (local(support::free_port()), local(support::free_port()));
        let client = Signer::new();
        let admin_signer = Signer::new();
        let client_key = hex::encode(client.key().as_bytes());
        let admin_key = hex::encode(admin_signer.key().as_bytes());
        let (metrics_arg, admin_arg) = (metrics.to_string(), admin.to_string());
        let mut child = crate::binary(
            &[
                "--listen",
                "127.0.0.1",
                "--port",
                &port,
                "--master-key",
                &client_key,
                "--github-token",
                TOKEN,
                "--metrics-listen",
                &metrics_arg,
                "--admin-listen",
                &admin_arg,
                "--admin-key",
                &admin_key,
                "--log-level",
                "warn",
            ],
            &[],
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        crate::wait_until_healthy(addr, &mut child).await;
        let running = Running(child);
        for side in [metrics, admin] {
            assert!(
                support::eventually(async || TcpStream::connect(side).await.is_ok()).await,
                "{side} never listened"
            );
        }
        SideBinary {
            addr,
            metrics,
            admin,
            admin_signer,
            client,
            _running: running,
        }
    }

    /// A signed admin request, with the binary's real clock.
    fn admin_request(&self, method: &str, target: &str, body: &str) -> Request {
        let now = crate::now();
        let claims = Claims {
            exp: now + 300,
            ts: now,
            purpose: "admin",
        };
        let proof = self
            .admin_signer
            .sign_with(claims, method, target, body.as_bytes());
        Request::new(method, target)
            .proof(proof)
            .body(body.as_bytes().to_vec())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_answered_while_pipelining_connections_that_never_read_hold_the_metrics_listener(
) {
    let proxy = SideBinary::start().await;
    // More than the listener's limit, each with a queue of scrapes it never
    // reads (fewer than the per-connection bound, so none is closed for it).
    let scrape = b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n";
    let _held = hold(proxy.metrics, SIDE_CONNECTIONS + 16, scrape, 90).await;
    let health = answered(proxy.metrics, Request::get("/healthz")).await;
    assert_eq!(health.map(|r| r.status), Ok(200), "liveness probe");

    let _more = hold(proxy.metrics, SIDE_CONNECTIONS + 16, scrape, 90).await;
    let ready = answered(proxy.metrics, Request::get("/readyz")).await;
    assert_eq!(ready.map(|r| r.status), Ok(200), "readiness probe");
    let scraped = answered(proxy.metrics, Request::get("/metrics")).await;
    assert_eq!(scraped.map(|r| r.status), Ok(200), "a fresh scrape");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_revokes_while_pipelining_connections_that_never_read_hold_its_listener() {
    let proxy = SideBinary::start().await;
    let junk = b"GET /stats HTTP/1.1\r\nHost: a\r\n\r\n";
    let _held = hold(proxy.admin, SIDE_CONNECTIONS + 16, junk, 90).await;

    let client = format!(
        "key:{}",
        signet_core::key_id(&proxy.client.key().to_bytes())
    );
    let body = format!(r#"{{"client":"{client}"}}"#);
    let revoked = answered(proxy.admin, proxy.admin_request("POST", "/revoke", &body)).await;
    let revoked = revoked.expect("the admin API answers");
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert_eq!(revoked.json()["revoked"], true);
    // In force on the proxy's port, which the flood never touched.
    let now = crate::now();
    let claims = Claims {
        exp: now + 300,
        ts: now,
        purpose: "test",
    };
    let proof = proxy.client.sign_with(claims, "GET", "/user", b"");
    let refused = support::send(proxy.addr, &Request::get("/user").proof(proof)).await;
    assert_refused(&refused, ErrorCode::UnknownKey);
}

#[tokio::test]
async fn a_side_connection_is_closed_after_its_hundredth_request() {
    let side = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let _env = Env::start_with(|c| c.metrics_listen = Some(side)).await;
    let mut stream = TcpStream::connect(side).await.expect("connect");
    let probe = b"GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n";
    stream
        .write_all(&probe.repeat(SIDE_REQUESTS_PER_CONNECTION + 50))
        .await
        .expect("write");
    let raw = support::read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("the connection is closed after its last allowed request");
    assert_eq!(
        count_answers(&raw, b"HTTP/1.1 200"),
        SIDE_REQUESTS_PER_CONNECTION
    );
    let text = String::from_utf8_lossy(&raw);
    let last = text.rsplit("HTTP/1.1 200").next().unwrap_or_default();
    assert!(
        last.to_ascii_lowercase().contains("connection: close"),
        "the last answer says so: {last}"
    );
}

#[tokio::test]
async fn a_side_connection_whose_peer_never_reads_is_dropped_by_the_write_timeout() {
    // The admin API's `GET /clients` answers are large when a client has
    // many rules: 6,000 make each ~280 KB, so a dozen of the 20 pipelined
    // below are more than the socket buffers hold (~3 MB on loopback) and
    // the writes stall, however slowly a loaded machine verifies them.
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.toml");
    let client = Signer::new();
    let rules: Vec<String> = (0..6_000)
        .map(|i| format!("\"GET /repos/acme/repository-{i:05}/**\""))
        .collect();
    std::fs::write(
        &keys,
        format!(
            "[[client]]\nname = \"wide\"\nkey = \"{}\"\nallow = [{}]\n",
            signet_core::public_key_hex(&client.key()),
            rules.join(", ")
        ),
    )
    .expect("write keys file");
    let admin = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let admin_signer = Signer::new();
    let admin_key = admin_signer.key();
    let _env = Env::start_with(|c| {
        c.master_keys.clear();
        c.keys_file = Some(keys.clone());
        c.admin_listen = Some(admin);
        c.admin_key = Some(admin_key);
        c.write_timeout = Some(Duration::from_millis(300));
    })
    .await;
    let ephemeral = support::random_key();
    let claims = Claims {
        purpose: "admin",
        ..Claims::default()
    };
    let requests = 20;
    let pipelined: Vec<u8> = (0..requests)
        .flat_map(|_| {
            let proof =
                admin_signer.sign_with_ephemeral(claims, &ephemeral, "GET", "/clients", b"");
            Request::get("/clients")
                .proof(proof)
                .to_bytes(&admin.to_string())
        })
        .collect();
    // A small receive window besides.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = socket.connect(admin).await.expect("connect");
    stream.write_all(&pipelined).await.expect("write");
    // Reading nothing until the stall has surely come, and with it, 300 ms
    // later, the drop: reading earlier would let the writes go on.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let raw = support::read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("the stalled connection was dropped");
    let answers = count_answers(&raw, b"HTTP/1.1 200");
    assert!(
        answers < requests,
        "cut off once its writes stalled: {answers} of {requests} answers arrived"
    );
}

#[tokio::test]
async fn an_idle_side_connection_is_closed_by_the_idle_timeout() {
    let side = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let _env = Env::start_with(|c| {
        c.metrics_listen = Some(side);
        c.idle_timeout = Some(Duration::from_millis(300));
    })
    .await;
    let mut stream = TcpStream::connect(side).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(support::read_reply(&mut stream, false).await.status, 200);
    let rest = support::read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(rest, Some(Vec::new()), "closed, silently, once idle");
}

// ===========================================================================
// Red team (issue 15 follow-up): bypasses of the fixes, failing on main
// ===========================================================================

/// Opens connections to `addr` as fast as one thread can until `stop`,
/// keeping the latest 200 open and sending nothing: a connection flood.
fn churn(addr: SocketAddr, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let mut held = std::collections::VecDeque::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // A short wait: once the accept queue is full, the SYN goes unanswered.
        if let Ok(stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(10)) {
            held.push_back(stream);
        }
        if held.len() > 200 {
            held.drain(..100);
        }
    }
}

/// The eviction that keeps probes answerable against connections that hold
/// their slot does not hold against connections that merely arrive: with
/// two threads opening connections as fast as they can (nothing sent), the
/// metrics listener takes them in more slowly than they come, its accept
/// queue overflows, and about half the probes get no answer within the
/// kubelet's 1 s (connect timeouts, a few resets from evictions). The same
/// flood against the proxy's own port leaves probes there all answered.
///
/// The listener now evicts from the peer holding the most connections
/// (`side::tests::a_full_listener_closes_a_connection_of_the_peer_holding_the_most_however_old_the_others_are`),
/// which keeps probes from another address in; here the flood and the
/// probes share 127.0.0.1, and the accept queue itself overflows, so this
/// still misses probes (9 of 24 on a 2-core machine): a stress test of the
/// accept rate, not of the eviction choice.
///
/// Run with `cargo test -p signet-proxy --test proxy -- --ignored
/// --nocapture side::probes_are_answered_through`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stress test: a connection flood from the probes' own address overflows the metrics listener's accept queue"]
async fn probes_are_answered_through_a_connection_flood_on_the_metrics_listener() {
    let proxy = SideBinary::start().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders: Vec<_> = (0..2)
        .map(|_| {
            let (metrics, stop) = (proxy.metrics, std::sync::Arc::clone(&stop));
            std::thread::spawn(move || churn(metrics, stop))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut probes, mut failed) = (0, Vec::new());
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        probes += 1;
        let probe = async {
            let mut stream = TcpStream::connect(proxy.metrics).await.ok()?;
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let raw = support::read_until_closed(&mut stream, Duration::from_secs(1)).await?;
            raw.starts_with(b"HTTP/1.1 200").then_some(())
        };
        // The kubelet's default probe timeout.
        if tokio::time::timeout(Duration::from_secs(1), probe)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            failed.push(probes);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for flooder in flooders {
        let _ = flooder.join();
    }
    println!("{} of {probes} probes failed", failed.len());
    assert!(
        failed.len() * 20 <= probes,
        "{} of {probes} liveness probes got no answer within 1 s",
        failed.len()
    );
}
