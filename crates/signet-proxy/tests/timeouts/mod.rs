//! Connection timeouts and broken bodies: idle and read timeouts on
//! keep-alive connections, slow clients, the write timeout, bodies cut
//! short, streaming before the upstream finishes, graceful shutdown.

use std::time::{Duration, Instant};

use signet_standin::StandIn;

use crate::support::{self, send, Env, Request, Signer, TOKEN};

#[tokio::test]
async fn a_keep_alive_connection_idle_past_the_idle_timeout_is_closed() {
    use tokio::io::AsyncWriteExt as _;
    let env = Env::start_with(|c| {
        c.read_timeout = None;
        c.idle_timeout = Some(Duration::from_millis(300));
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(env.proxy.addr)
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n")
        .await
        .unwrap();
    let reply = support::read_reply(&mut stream, false).await;
    assert_eq!(reply.status, 200);
    let started = Instant::now();
    let rest = support::read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(
        rest,
        Some(Vec::new()),
        "the idle connection is closed, silently"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "not closed at once"
    );
}

#[tokio::test]
async fn a_keep_alive_connection_outlives_the_read_timeout_while_idle() {
    use tokio::io::AsyncWriteExt as _;
    let env = Env::start_with(|c| {
        c.read_timeout = Some(Duration::from_millis(200));
        c.idle_timeout = Some(Duration::from_secs(30));
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(env.proxy.addr)
        .await
        .unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n")
            .await
            .unwrap();
        let reply = support::read_reply(&mut stream, false).await;
        assert_eq!(reply.status, 200);
        // Idle for three read timeouts: only the idle timeout applies now.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
}

#[tokio::test]
async fn a_slow_second_request_on_a_keep_alive_connection_is_cut_off_by_the_read_timeout() {
    use tokio::io::AsyncWriteExt as _;
    let env = Env::start_with(|c| {
        c.read_timeout = Some(Duration::from_millis(300));
        c.idle_timeout = Some(Duration::from_secs(30));
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(env.proxy.addr)
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(support::read_reply(&mut stream, false).await.status, 200);
    stream.write_all(b"GET /user HTTP/1.1\r\nHo").await.unwrap();
    let started = Instant::now();
    let rest = support::read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(rest.is_some(), "the slow request's connection is dropped");
    assert!(started.elapsed() < Duration::from_secs(5));
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn the_idle_timeout_never_cuts_a_request_that_is_waiting_for_the_upstream() {
    let env = Env::start_with(|c| {
        c.idle_timeout = Some(Duration::from_millis(200));
    })
    .await;
    let target = "/delay/800";
    let reply = env
        .send(&Request::get(target).proof(env.signer.sign("GET", target, b"")))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["delayed"], true);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off_by_the_read_timeout() {
    use tokio::io::AsyncWriteExt as _;
    let env = Env::start_with(|c| {
        c.read_timeout = Some(Duration::from_millis(300));
        c.idle_timeout = None;
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(env.proxy.addr)
        .await
        .unwrap();
    stream
        .write_all(b"GET /user HTTP/1.1\r\nHost: pro")
        .await
        .unwrap();
    let seen = support::read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(seen.is_some(), "a slow-loris connection must be closed");
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_client_that_stops_reading_a_download_is_dropped_by_the_write_timeout() {
    use tokio::io::AsyncWriteExt as _;
    let env = Env::start_with(|c| {
        c.write_timeout = Some(Duration::from_millis(300));
        c.idle_timeout = None;
    })
    .await;
    let total: u64 = 200 * 1024 * 1024;
    let target = format!("/stream/{total}");
    let request = Request::get(&target).proof(env.signer.sign("GET", &target, b""));
    let mut stream = tokio::net::TcpStream::connect(env.proxy.addr)
        .await
        .unwrap();
    stream
        .write_all(&request.to_bytes(&env.proxy.addr.to_string()))
        .await
        .unwrap();
    // Read nothing for a while: the proxy's writes stall once the socket
    // buffers are full, and it gives up after the write timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = support::read_until_closed(&mut stream, Duration::from_secs(20))
        .await
        .expect("the stalled connection was dropped");
    assert!(
        (seen.len() as u64) < total,
        "only what the socket buffers held arrives ({} bytes)",
        seen.len()
    );
}

#[tokio::test]
async fn a_body_cut_short_by_the_client_is_refused_and_never_forwarded() {
    use tokio::io::AsyncWriteExt as _;
    let env = Env::start().await;
    let body = vec![b'x'; 100];
    let proof = env.signer.sign("POST", "/echo", &body);
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: proxy\r\nSignet-Proof: {proof}\r\nContent-Length: 100\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(env.proxy.addr)
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    stream.shutdown().await.unwrap();
    let seen = support::read_until_closed(&mut stream, Duration::from_secs(10))
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(
        text.contains(r#"{"error":{"code":"INVALID_BODY","#),
        "{text}"
    );
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn response_bytes_reach_the_client_before_the_upstream_has_finished() {
    use tokio::io::AsyncWriteExt as _;
    let env = Env::start().await;
    let request = Request::get("/gated").proof(env.signer.sign("GET", "/gated", b""));
    let mut stream = tokio::net::TcpStream::connect(env.proxy.addr)
        .await
        .unwrap();
    stream
        .write_all(&request.to_bytes(&env.proxy.addr.to_string()))
        .await
        .unwrap();
    // The upstream has sent only "first\n" and waits for the gate: a proxy
    // that buffered the response would send nothing yet.
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, "first\n").await;
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    assert!(!String::from_utf8_lossy(&seen).contains("rest"));
    env.upstream.open_gate();
    read_until(&mut stream, &mut seen, "rest\n").await;
}

/// Reads into `seen` until it contains `needle` (at most 10 s).
async fn read_until(stream: &mut tokio::net::TcpStream, seen: &mut Vec<u8>, needle: &str) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(seen).contains(needle) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{needle:?} did not arrive; got {}",
            String::from_utf8_lossy(seen)
        )
    });
}

#[tokio::test]
async fn shutdown_stops_accepting_but_lets_an_in_flight_request_finish() {
    let upstream = StandIn::start(Some(TOKEN)).await.unwrap();
    let signer = Signer::new();
    let config = support::config(&upstream.url(), &signer);
    let server = signet_proxy::Server::bind(&config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let target = "/delay/700";
    let request = Request::get(target).proof(signer.sign("GET", target, b""));
    let in_flight = tokio::spawn(async move { send(addr, &request).await });
    // Wait until the request has reached the upstream, then shut down.
    tokio::time::timeout(Duration::from_secs(10), async {
        while upstream.requests().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    stop.send(()).unwrap();

    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("the server stops once the request is done")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
}
