//! Regression tests for the holes a security review found: each one failed
//! before its fix. Real sockets, the real server, the recording stand-in.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use signet_core::ErrorCode;
use signet_proxy::Clock;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{
    self, assert_no_token, assert_refusal_headers, assert_refused, assert_refused_with, config,
    raw_upstream, send, stalling_upstream, Env, Reply, Request, RunningProxy, Signer, NOW, TOKEN,
};

/// Connects and writes `bytes`, leaving the connection open.
async fn open_with(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream
}

/// The head of a signed POST whose body is still to come.
fn post_head(addr: SocketAddr, target: &str, proof: &str, length: usize) -> Vec<u8> {
    format!(
        "POST {target} HTTP/1.1\r\nHost: {addr}\r\nSignet-Proof: {proof}\r\nContent-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}

// ===========================================================================
// 1. No window between freshness and the replay record (amendment 1)
// ===========================================================================

#[tokio::test]
async fn a_replay_whose_body_arrives_after_the_first_record_expired_is_refused() {
    let mut clock = Clock::fixed(0);
    let env = Env::start_with(|c| clock = c.clock.clone()).await;
    let body = b"{\"title\":\"once\"}";
    let proof = env.signer.sign("POST", "/echo", body);
    let first = env
        .send(
            &Request::new("POST", "/echo")
                .proof(&proof)
                .body(body.to_vec()),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text());

    // The replay's head arrives at the last second the proof is fresh…
    clock.set(NOW + 30);
    let mut stream = open_with(
        env.proxy.addr,
        &post_head(env.proxy.addr, "/echo", &proof, body.len()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // …and its body once the first record would have expired.
    clock.set(NOW + 31);
    stream.write_all(body).await.expect("write body");
    let reply = support::read_reply(&mut stream, false).await;
    assert_refused(&reply, ErrorCode::ClockSkew);
    assert_eq!(env.upstream.requests().len(), 1, "forwarded exactly once");
}

#[tokio::test]
async fn a_proof_that_goes_stale_while_its_body_arrives_is_never_forwarded() {
    let mut clock = Clock::fixed(0);
    let env = Env::start_with(|c| clock = c.clock.clone()).await;
    let body = b"slow body";
    let proof = env.signer.sign("POST", "/echo", body);
    let mut stream = open_with(
        env.proxy.addr,
        &post_head(env.proxy.addr, "/echo", &proof, body.len()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    clock.set(NOW + 31);
    stream.write_all(body).await.expect("write body");
    assert_refused(
        &support::read_reply(&mut stream, false).await,
        ErrorCode::ClockSkew,
    );
    env.assert_nothing_forwarded();
}

// ===========================================================================
// 2–3. Dot-segments and methods (amendment 1)
// ===========================================================================

#[tokio::test]
async fn dot_segments_are_refused_even_with_a_valid_proof() {
    let env = Env::start().await;
    for target in [
        "/repos/a/../../orgs/x",
        "/repos/a/%2e%2e/b",
        "/repos/a/%2E%2e/b",
        "/repos/a/.%2e/b",
        "/repos/./a",
        "/repos/a/..",
        "/repos/a/%2e",
    ] {
        let reply = env
            .send(&Request::get(target).proof(env.signer.sign("GET", target, b"")))
            .await;
        assert_refused(&reply, ErrorCode::InvalidRequestTarget);
    }
    // The target form is checked before the proof, so no proof is needed to be refused.
    let reply = env.send(&Request::get("/a/../user")).await;
    assert_refused(&reply, ErrorCode::InvalidRequestTarget);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn dots_inside_segments_and_in_the_query_are_forwarded() {
    let env = Env::start().await;
    for target in ["/repos/o/r.js", "/repos/o/a..b", "/repos/o/r?path=../x"] {
        let reply = env
            .send(&Request::get(target).proof(env.signer.sign("GET", target, b"")))
            .await;
        assert_eq!(reply.status, 200, "{target}: {}", reply.text());
    }
    assert_eq!(env.upstream.requests().len(), 3);
}

#[tokio::test]
async fn methods_outside_the_api_set_are_405_with_allow_and_never_forwarded() {
    let env = Env::start().await;
    for method in ["TRACE", "CONNECT", "PROPFIND", "get", "BREW"] {
        let reply = env
            .send(&Request::new(method, "/user").proof(env.signer.sign(method, "/user", b"")))
            .await;
        assert_refused(&reply, ErrorCode::MethodNotAllowed);
        assert_eq!(
            reply.all("allow"),
            ["GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"],
            "{method}"
        );
    }
    // Before §5: no proof needed to be refused.
    assert_refused(
        &env.send(&Request::new("TRACE", "/user")).await,
        ErrorCode::MethodNotAllowed,
    );
    // Authority-form stays a target-form error.
    assert_refused(
        &env.send(&Request::new("CONNECT", "api.github.com:443"))
            .await,
        ErrorCode::InvalidRequestTarget,
    );
    env.assert_nothing_forwarded();
    let reply = env
        .send(&Request::new("OPTIONS", "/user").proof(env.signer.sign("OPTIONS", "/user", b"")))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

// ===========================================================================
// 4. Unauthenticated memory: connections, header sections, body budget
// ===========================================================================

#[tokio::test]
async fn a_header_section_over_64_kib_is_431_and_one_under_it_is_read() {
    let env = Env::start().await;
    let big = "x".repeat(65 * 1024);
    let reply = env.send(&Request::get("/user").header("X-Pad", &big)).await;
    assert_eq!(reply.status, 431);
    let fits = "x".repeat(60 * 1024);
    let reply = env
        .send(&Request::get("/user").header("X-Pad", &fits))
        .await;
    assert_refused(&reply, ErrorCode::MissingProof);
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_and_the_rest_served() {
    let env = Env::start_with(|c| c.max_connections = 3).await;
    // Two slow-loris connections sit on their unfinished heads.
    let _held: Vec<TcpStream> = vec![
        open_with(env.proxy.addr, b"GET /user HTTP/1.1\r\nHo").await,
        open_with(env.proxy.addr, b"GET /user HTTP/1.1\r\nHo").await,
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Below the limit, a request is served normally.
    let mut third = open_with(env.proxy.addr, b"").await;
    let target = "/user";
    let request = Request::get(target).proof(env.signer.sign("GET", target, b""));
    third
        .write_all(&request.to_bytes(&env.proxy.addr.to_string()))
        .await
        .expect("write");
    assert_eq!(support::read_reply(&mut third, false).await.status, 200);
    // Over it, the fourth gets a 503 and is closed.
    let mut fourth = TcpStream::connect(env.proxy.addr).await.expect("connect");
    let refused = support::read_until_closed(&mut fourth, Duration::from_secs(10))
        .await
        .expect("closed at once");
    let text = String::from_utf8_lossy(&refused);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("TOO_MANY_CONNECTIONS"), "{text}");
    // A connection that closes gives its slot back.
    drop(third);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = env
        .send(&Request::get(target).proof(env.signer.sign("GET", target, b"")))
        .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn probes_on_the_metrics_listener_are_answered_while_the_proxy_port_is_full() {
    let side = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let env = Env::start_with(|c| {
        c.max_connections = 1;
        c.metrics_listen = Some(side);
    })
    .await;
    let _held = open_with(env.proxy.addr, b"GET /user HTTP/1.1\r\nHo").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The proxy's own port cannot tell a probe from a client: it is full.
    let mut probe = TcpStream::connect(env.proxy.addr).await.expect("connect");
    let refused = support::read_until_closed(&mut probe, Duration::from_secs(10))
        .await
        .expect("closed at once");
    assert!(String::from_utf8_lossy(&refused).contains("TOO_MANY_CONNECTIONS"));

    // The metrics listener answers both checks as the proxy's port does.
    let health = send(side, &Request::get("/healthz")).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let head = support::send_raw(side, b"HEAD /healthz HTTP/1.1\r\nHost: m\r\n\r\n", true).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let ready = send(side, &Request::get("/readyz")).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");
    assert_eq!(send(side, &Request::get("/metrics")).await.status, 200);
    assert_eq!(send(side, &Request::get("/user")).await.status, 404);
    assert_eq!(
        send(side, &Request::new("POST", "/healthz")).await.status,
        404
    );
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn bodies_beyond_the_buffer_budget_are_503_at_once_and_room_comes_back() {
    let env = Env::start_with(|c| {
        c.max_body_size = 64 * 1024;
        c.body_buffer_budget = 64 * 1024;
    })
    .await;
    let body = vec![b'y'; 10 * 1024];
    let signed = |env: &Env| {
        Request::new("POST", "/echo")
            .proof(env.signer.sign("POST", "/echo", &body))
            .body(body.clone())
    };
    // A captured proof is enough to make the proxy buffer a body. Room is
    // taken by the bytes sent, not by the length declared…
    let proof = env.signer.sign("POST", "/echo", b"never sent");
    let mut holder = open_with(
        env.proxy.addr,
        &post_head(env.proxy.addr, "/echo", &proof, 60 * 1024),
    )
    .await;
    holder.write_all(&[b'x'; 1024]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = env.send(&signed(&env)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // …so the holder must send most of its body to hold most of the budget.
    holder.write_all(&[b'x'; 49 * 1024]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let reply = env.send(&signed(&env)).await;
    assert_refused(&reply, ErrorCode::BodyBudgetExhausted);
    assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "never made to wait"
    );
    // A chunked body that would grow past the budget is refused too.
    let chunked = Request::new("POST", "/echo")
        .proof(env.signer.sign("POST", "/echo", &body))
        .chunked(vec![body.clone()]);
    assert_refused(&env.send(&chunked).await, ErrorCode::BodyBudgetExhausted);
    assert_eq!(
        env.upstream.requests().len(),
        1,
        "only the first was forwarded"
    );

    drop(holder);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = env.send(&signed(&env)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.body, body);
}

// ===========================================================================
// 7. Framing is the proxy's, never the client's
// ===========================================================================

#[tokio::test]
async fn the_upstream_gets_a_content_length_computed_from_the_verified_body() {
    let env = Env::start().await;
    let body = b"0123456789";
    let proof = env.signer.sign("POST", "/echo", body);
    let raw = format!(
        "POST /echo HTTP/1.1\r\nHost: p\r\nSignet-Proof: {proof}\r\nContent-Length: 010\r\n\r\n0123456789"
    );
    let reply = support::send_raw(env.proxy.addr, raw.as_bytes(), false).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = env.upstream.requests();
    assert_eq!(seen.len(), 1);
    let lengths: Vec<_> = seen[0].headers.get_all("content-length").iter().collect();
    assert_eq!(lengths, ["10"]);
    assert_eq!(&seen[0].body[..], body);
    // A chunked body goes out with its length, not its chunking.
    let proof = env.signer.sign("POST", "/echo", body);
    let reply = env
        .send(
            &Request::new("POST", "/echo")
                .proof(proof)
                .chunked(vec![b"01234".to_vec(), b"56789".to_vec()]),
        )
        .await;
    assert_eq!(reply.status, 200);
    let seen = env.upstream.requests();
    assert_eq!(seen[1].headers["content-length"], "10");
    assert!(!seen[1].headers.contains_key("transfer-encoding"));
}

// ===========================================================================
// 8. Response hygiene
// ===========================================================================

async fn proxy_for(
    upstream: SocketAddr,
    tweak: impl FnOnce(&mut signet_proxy::Config),
) -> (RunningProxy, Signer) {
    let signer = Signer::new();
    let mut config = config(&format!("http://{upstream}"), &signer);
    tweak(&mut config);
    (RunningProxy::start(&config).await, signer)
}

/// One signed `GET /user` through a default proxy in front of `upstream`.
async fn signed_get_through(upstream: SocketAddr) -> support::Reply {
    let (proxy, signer) = proxy_for(upstream, |_| {}).await;
    send(
        proxy.addr,
        &Request::get("/user").proof(signer.sign("GET", "/user", b"")),
    )
    .await
}

#[tokio::test]
async fn a_response_header_echoing_the_token_is_dropped() {
    let response: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nX-Echo-Authorization: Bearer {TOKEN}\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let upstream = raw_upstream(response).await;
    let reply = signed_get_through(upstream).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-kept").as_deref(), Some("yes"));
    assert_eq!(reply.header("x-echo-authorization"), None);
    assert_no_token(&reply.raw);
}

#[tokio::test]
async fn a_chunked_response_that_also_has_a_content_length_is_delivered_whole() {
    let upstream = raw_upstream(
        // `Connection: close`: each request gets a fresh upstream connection,
        // so the second exchange tests the client side alone.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    let (proxy, signer) = proxy_for(upstream, |_| {}).await;
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    for _ in 0..2 {
        let request = Request::get("/user").proof(signer.sign("GET", "/user", b""));
        stream
            .write_all(&request.to_bytes("p"))
            .await
            .expect("write");
        let reply = support::read_reply(&mut stream, false).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "hello world");
        assert_eq!(reply.header("content-length"), None);
    }
}

#[tokio::test]
async fn an_unrequested_101_is_a_bad_gateway() {
    let upstream = raw_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    )
    .await;
    let reply = signed_get_through(upstream).await;
    assert_refused_with(
        &reply,
        ErrorCode::BadGateway,
        "The upstream API sent an invalid response.",
    );
}

#[tokio::test]
async fn an_upstream_answering_garbage_is_a_bad_gateway_that_says_so() {
    let upstream = raw_upstream(b"NOT HTTP AT ALL\r\n\r\n").await;
    let reply = signed_get_through(upstream).await;
    assert_refused_with(
        &reply,
        ErrorCode::BadGateway,
        "The upstream API sent an invalid response.",
    );
}

#[tokio::test]
async fn a_response_body_that_stalls_past_the_upstream_timeout_is_cut_short() {
    let upstream =
        stalling_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst ten.").await;
    let (proxy, signer) = proxy_for(upstream, |c| {
        c.upstream_timeout = Duration::from_millis(500);
        c.write_timeout = None;
        c.idle_timeout = None;
    })
    .await;
    let request = Request::get("/user").proof(signer.sign("GET", "/user", b""));
    let started = Instant::now();
    let raw = support::send_until_closed(proxy.addr, &request).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with("first ten."),
        "truncated, no second status: {text}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

// ===========================================================================
// 9. Timeouts mean what the docs say
// ===========================================================================

#[tokio::test]
async fn a_partial_head_pipelined_behind_a_request_is_timed_by_the_read_timeout() {
    let env = Env::start_with(|c| {
        c.read_timeout = Some(Duration::from_millis(500));
        c.idle_timeout = Some(Duration::from_secs(60));
    })
    .await;
    let mut stream = open_with(
        env.proxy.addr,
        b"GET /healthz HTTP/1.1\r\nHost: p\r\n\r\nGET /user HTTP/1.1\r\nHo",
    )
    .await;
    assert_eq!(support::read_reply(&mut stream, false).await.status, 200);
    let started = Instant::now();
    let rest = support::read_until_closed(&mut stream, Duration::from_secs(20)).await;
    assert!(
        rest.is_some(),
        "dropped by the read timeout, not kept for the idle one"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn pipelined_complete_requests_are_all_answered() {
    let env = Env::start_with(|c| {
        c.read_timeout = Some(Duration::from_millis(300));
        c.idle_timeout = Some(Duration::from_secs(60));
    })
    .await;
    let one = "GET /healthz HTTP/1.1\r\nHost: p\r\n\r\n";
    let mut stream = open_with(env.proxy.addr, one.repeat(3).as_bytes()).await;
    // What hyper may still hold after a pipelined request is unknown, so
    // the wait for a fourth head is held to the read timeout.
    let raw = support::read_until_closed(&mut stream, Duration::from_secs(20))
        .await
        .expect("closed by the read timeout");
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
}

#[tokio::test]
async fn a_read_timeout_of_zero_means_no_limit_not_hypers_thirty_seconds() {
    let env = Env::start_with(|c| {
        c.read_timeout = None;
        c.idle_timeout = None;
    })
    .await;
    let mut stream = open_with(env.proxy.addr, b"GET /healthz HTTP/1.1\r\nHo").await;
    tokio::time::sleep(Duration::from_secs(32)).await;
    stream.write_all(b"st: p\r\n\r\n").await.expect("write");
    assert_eq!(support::read_reply(&mut stream, false).await.status, 200);
}

// ===========================================================================
// 12. Smaller gaps
// ===========================================================================

#[tokio::test]
async fn a_refused_head_has_the_content_length_of_its_get() {
    let env = Env::start().await;
    let get = env.send(&Request::get("/user")).await;
    let head = env.send(&Request::new("HEAD", "/user")).await;
    assert_refusal_headers(&head, ErrorCode::MissingProof);
    assert_eq!(head.status, get.status);
    assert_eq!(
        head.header("content-length"),
        Some(get.body.len().to_string())
    );
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn every_refusal_is_read_fully_before_the_connection_is_reused() {
    // A refusal that comes before the body was read must not leave the body
    // to be parsed as the next request.
    let env = Env::start().await;
    let mut stream = TcpStream::connect(env.proxy.addr).await.expect("connect");
    let smuggled = "GET /user HTTP/1.1\r\nHost: p\r\n\r\n";
    let raw = format!(
        "POST /echo HTTP/1.1\r\nHost: p\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    stream.write_all(raw.as_bytes()).await.expect("write");
    assert_refused(
        &support::read_reply(&mut stream, false).await,
        ErrorCode::MissingProof,
    );
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(500), stream.read_to_end(&mut rest)).await;
    assert!(
        !String::from_utf8_lossy(&rest).contains("HTTP/1.1"),
        "the body was answered as a request: {:?}",
        String::from_utf8_lossy(&rest)
    );
    env.assert_nothing_forwarded();
}

// ===========================================================================
// 4. Memory, measured on the real binary (ignored by default: a stress test)
// ===========================================================================

/// A started binary that is killed when the test ends, even by a panic.
pub(crate) struct Running(pub(crate) std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Run with `cargo test --release -p signet-proxy --test proxy -- --ignored --nocapture memory`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stress test: prints RSS figures of the real binary"]
async fn memory_under_an_unauthenticated_flood_is_bounded_and_comes_back() {
    let port = crate::free_port().to_string();
    let signer = Signer::new();
    let key = hex::encode(signer.key().as_bytes());
    let mut child = crate::binary(
        &[
            "--listen",
            "127.0.0.1",
            "--port",
            &port,
            "--master-key",
            &key,
            "--github-token",
            TOKEN,
            "--read-timeout",
            "60s",
            "--log-level",
            "error",
        ],
        &[],
    )
    .stdout(std::process::Stdio::null())
    .spawn()
    .expect("spawn");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    crate::wait_until_healthy(addr, &mut child).await;
    let pid = child.id();
    let _running = Running(child);
    let idle = rss_kib(pid);

    // 1,500 connections, each with an unfinished header section just under
    // the 64 KiB limit (a larger one is cut off at once with 431).
    let mut held = Vec::new();
    let pad = vec![b'a'; 60 * 1024];
    for _ in 0..1_500 {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            continue;
        };
        let _ = stream.write_all(b"GET /user HTTP/1.1\r\nX-Pad: ").await;
        let _ = tokio::time::timeout(Duration::from_millis(5), stream.write_all(&pad)).await;
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let headers_peak = rss_kib(pid);
    drop(held);
    // The allocator hands freed pages back after its decay time (10 s).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let headers_after = rss_kib(pid);

    // A captured proof reused on 300 connections, each sending 1 MiB of body
    // but the last byte, so the signatures are never checked.
    let now = crate::now();
    let claims = crate::support::Claims {
        exp: now + 300,
        ts: now,
        purpose: "test",
    };
    let proof = signer.sign_with(claims, "POST", "/echo", b"x").to_string();
    let body = vec![b'b'; 1024 * 1024 - 1];
    let mut held = Vec::new();
    for _ in 0..300 {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            continue;
        };
        let _ = stream
            .write_all(&post_head(addr, "/echo", &proof, 1024 * 1024))
            .await;
        let _ = tokio::time::timeout(Duration::from_millis(20), stream.write_all(&body)).await;
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bodies_peak = rss_kib(pid);
    drop(held);

    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = rss_kib(pid);
    let alive = send(addr, &Request::get("/healthz")).await.status;
    println!(
        "RSS KiB: idle {idle}; 1500 header floods {headers_peak}, 12 s later {headers_after}; \
         300 body floods {bodies_peak}, 12 s later {after}"
    );
    assert_eq!(alive, 200);
    assert!(
        headers_peak < 128 * 1024,
        "header flood: {headers_peak} KiB"
    );
    assert!(bodies_peak < 128 * 1024, "body flood: {bodies_peak} KiB");
    assert!(
        headers_after < idle + 16 * 1024,
        "memory not returned: {headers_after} KiB"
    );
    assert!(after < idle + 16 * 1024, "memory not returned: {after} KiB");
}

// ===========================================================================
// 5. A stalled log never freezes the proxy
// ===========================================================================

/// Sends `count` pipelined unsigned requests on one connection and reads
/// all the answers (each is a 401): log lines the proxy must write.
async fn flood(addr: SocketAddr, count: usize) -> usize {
    flood_with(addr, b"GET /user HTTP/1.1\r\nHost: p\r\n\r\n", count).await
}

/// Sends `request` `count` times, pipelined on one connection, and reads all
/// the answers; returns how many were 401s.
async fn flood_with(addr: SocketAddr, request: &[u8], count: usize) -> usize {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return 0;
    };
    let (mut reader, mut writer) = stream.into_split();
    // The write half stays open until every answer is read: a client that
    // half-closes while requests are still pipelined loses the last ones.
    let batch = request.repeat(250);
    let sender = tokio::spawn(async move {
        for _ in 0..count / 250 {
            if writer.write_all(&batch).await.is_err() {
                break;
            }
        }
        writer
    });
    let expected = count / 250 * 250;
    let mut seen = 0;
    let mut buf = vec![0u8; 256 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    while seen < expected {
        match tokio::time::timeout(Duration::from_secs(20), reader.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                // Count status lines, including one split across two reads.
                tail.extend_from_slice(&buf[..n]);
                seen += tail.windows(12).filter(|w| w == b"HTTP/1.1 401").count();
                let keep = tail.len().min(11);
                tail.drain(..tail.len() - keep);
            }
            _ => break,
        }
    }
    drop(sender.await);
    seen
}

/// The proxy binary in front of a stand-in, with its stdout a pipe the test
/// holds: what the proxy logs, and whether the log can stall it.
struct LoggedProxy {
    addr: SocketAddr,
    signer: Signer,
    stdout: Option<std::process::ChildStdout>,
    _running: Running,
    _upstream: signet_standin::StandIn,
}

impl LoggedProxy {
    async fn start(extra: &[&str]) -> LoggedProxy {
        let upstream = signet_standin::StandIn::start(Some(TOKEN))
            .await
            .expect("stand-in");
        let signer = Signer::new();
        let port = crate::free_port().to_string();
        let key = hex::encode(signer.key().as_bytes());
        let api = upstream.url();
        let mut args = vec![
            "--listen",
            "127.0.0.1",
            "--port",
            &port,
            "--master-key",
            &key,
            "--github-token",
            TOKEN,
            "--github-api",
            &api,
        ];
        args.extend_from_slice(extra);
        let mut child = crate::binary(&args, &[]).spawn().expect("spawn");
        let stdout = child.stdout.take();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        crate::wait_until_healthy(addr, &mut child).await;
        LoggedProxy {
            addr,
            signer,
            stdout,
            _running: Running(child),
            _upstream: upstream,
        }
    }

    /// A signed `GET /user`, answered 200 by the stand-in.
    async fn signed_get(&self) -> Reply {
        let now = crate::now();
        let claims = crate::support::Claims {
            exp: now + 300,
            ts: now,
            purpose: "test",
        };
        let proof = self.signer.sign_with(claims, "GET", "/user", b"");
        send(self.addr, &Request::get("/user").proof(proof)).await
    }

    /// Every line of stdout from now on, parsed, on a thread of its own.
    fn collect_lines(&mut self) -> std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> {
        let lines: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> =
            std::sync::Arc::default();
        let collected = std::sync::Arc::clone(&lines);
        let stdout = self.stdout.take().expect("stdout not taken yet");
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(value) = serde_json::from_str(&line) else {
                    continue;
                };
                collected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(value);
            }
        });
        lines
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdout_nobody_reads_drops_log_lines_but_never_stalls_requests() {
    // Every refusal writes its record: the log itself is under test. Its
    // stdout is a pipe that nobody reads until the end of the test.
    let mut proxy = LoggedProxy::start(&["--refusal-log-limit", "0"]).await;
    let addr = proxy.addr;

    // Far more refusals than the pipe and the log queue can hold.
    let floods: Vec<_> = (0..4).map(|_| tokio::spawn(flood(addr, 10_000))).collect();
    let mut answered = 0;
    for flood in floods {
        answered += flood.await.unwrap_or(0);
    }
    assert_eq!(answered, 40_000, "every flooded request was answered");

    // Health and signed requests are still served while the log is stuck.
    let health = tokio::time::timeout(
        Duration::from_secs(5),
        send(addr, &Request::get("/healthz")),
    )
    .await
    .expect("health answers");
    assert_eq!(health.status, 200);
    let reply = proxy.signed_get().await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Once a reader attaches, the log drains and says what it dropped.
    let lines = proxy.collect_lines();
    let report = || {
        lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|line| line["message"] == "log lines dropped")
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while report().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = report().expect("a report of the dropped lines");
    assert!(report["dropped"].as_u64().unwrap_or(0) > 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_junk_flood_writes_at_most_the_limit_per_second_and_counts_the_rest() {
    let mut proxy = LoggedProxy::start(&["--refusal-log-limit", "20"]).await;
    let lines = proxy.collect_lines();

    assert_eq!(
        flood(proxy.addr, 5_000).await,
        5_000,
        "every request answered"
    );
    let reply = proxy.signed_get().await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Written plus reported is every refusal, once the reports are in.
    let tally = || {
        let lines = lines.lock().unwrap_or_else(|e| e.into_inner());
        let written = lines
            .iter()
            .filter(|line| line["message"] == "authentication failed")
            .count() as u64;
        let reported: u64 = lines
            .iter()
            .filter(|line| line["message"] == "refusals not logged")
            .map(|line| line["count"].as_u64().unwrap_or(0))
            .sum();
        let forwarded = lines
            .iter()
            .any(|line| line["message"] == "request forwarded" && line["key_id"].is_string());
        let report = lines
            .iter()
            .find(|line| line["message"] == "refusals not logged")
            .cloned()
            .unwrap_or_default();
        (written, reported, forwarded, report)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while tally().0 + tally().1 < 5_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (written, reported, forwarded, report) = tally();
    assert_eq!(
        written + reported,
        5_000,
        "written {written}, reported {reported}"
    );
    assert!(
        written >= 20,
        "the first of the flood are written: {written}"
    );
    assert!(reported > 0, "most of it is only counted");
    assert!(
        forwarded,
        "the verified request's record is written whatever the flood"
    );
    assert_eq!(report["level"], "WARN", "{report}");
    assert_eq!(report["limit_per_second"], 20, "{report}");
}

#[tokio::test]
async fn ten_thousand_pipelined_requests_on_one_connection_are_all_answered() {
    let env = Env::start().await;
    assert_eq!(flood(env.proxy.addr, 10_000).await, 10_000);
}

// ===========================================================================
// Second review, 8. Replays of a captured proof are not the victim's traffic
// ===========================================================================

/// A proxy that trusts only `victim`, with rate limit `rate`; keep the
/// directory alive as long as the proxy.
async fn env_trusting_at_rate(victim: &Signer, rate: &str) -> (Env, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        format!(
            "[[client]]\nname = \"victim\"\nkey = \"{}\"\nrate = \"{rate}\"\n",
            signet_core::public_key_hex(&victim.key())
        ),
    )
    .expect("write keys file");
    let env = Env::start_with(|config| {
        config.master_keys.clear();
        config.keys_file = Some(keys);
    })
    .await;
    (env, dir)
}

#[tokio::test]
async fn replays_of_a_captured_proof_never_take_tokens_from_the_victims_rate() {
    let victim = Signer::new();
    let (env, _dir) = env_trusting_at_rate(&victim, "3/hour").await;
    let fresh = || Request::get("/user").proof(victim.sign("GET", "/user", b""));
    let captured = fresh();
    assert_eq!(env.send(&captured).await.status, 200);

    for _ in 0..20 {
        assert_refused(&env.send(&captured).await, ErrorCode::ReplayDetected);
    }
    // The victim's bucket is as its own request left it: two of three left.
    assert_eq!(env.send(&fresh()).await.status, 200);
    assert_eq!(env.send(&fresh()).await.status, 200);
    assert_refused(&env.send(&fresh()).await, ErrorCode::RateLimited);
    assert_eq!(env.upstream.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_of_one_proof_leave_one_token_taken_between_them() {
    let victim = Signer::new();
    let (env, _dir) = env_trusting_at_rate(&victim, "3/hour").await;
    let fresh = || Request::get("/user").proof(victim.sign("GET", "/user", b""));
    let copies = std::sync::Arc::new(fresh());
    let addr = env.proxy.addr;
    let sent: Vec<_> = (0..16)
        .map(|_| {
            let copy = std::sync::Arc::clone(&copies);
            tokio::spawn(async move { send(addr, &copy).await })
        })
        .collect();
    let mut served = 0;
    for reply in sent {
        let reply = reply.await.expect("task");
        match reply.status {
            200 => served += 1,
            // A copy racing the first one may find its tokens held for a
            // moment; it is refused either way, and gives them back.
            _ => assert!(
                [ErrorCode::ReplayDetected, ErrorCode::RateLimited]
                    .iter()
                    .any(|code| reply.json()["error"]["code"] == code.as_str()),
                "{}",
                reply.text()
            ),
        }
    }
    assert_eq!(served, 1, "one proof, one request served");

    // Every copy that was refused gave its token back.
    assert_eq!(env.send(&fresh()).await.status, 200);
    assert_eq!(env.send(&fresh()).await.status, 200);
    assert_refused(&env.send(&fresh()).await, ErrorCode::RateLimited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_flood_is_log_limited_like_an_unauthenticated_one_and_counted_in_full() {
    let metrics = SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
    let mut proxy = LoggedProxy::start(&[
        "--refusal-log-limit",
        "5",
        "--metrics-listen",
        &metrics.to_string(),
    ])
    .await;
    let lines = proxy.collect_lines();
    let now = crate::now();
    let claims = crate::support::Claims {
        exp: now + 300,
        ts: now,
        purpose: "test",
    };
    let captured = Request::get("/user").proof(proxy.signer.sign_with(claims, "GET", "/user", b""));
    assert_eq!(send(proxy.addr, &captured).await.status, 200);

    // Few enough to be sent well within the proof's freshness window,
    // however slow the machine: each one is verified before it is a replay.
    let replays = 500;
    let bytes = captured.to_bytes(&proxy.addr.to_string());
    assert_eq!(
        flood_with(proxy.addr, &bytes, replays).await,
        replays,
        "every replay answered 401"
    );

    // Written plus reported is every replay, once the reports are in.
    let tally = || {
        let lines = lines.lock().unwrap_or_else(|e| e.into_inner());
        let written = lines
            .iter()
            .filter(|line| line["code"] == "REPLAY_DETECTED")
            .count();
        let reported: u64 = lines
            .iter()
            .filter(|line| line["message"] == "refusals not logged")
            .map(|line| line["count"].as_u64().unwrap_or(0))
            .sum();
        (written as u64, reported)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while tally().0 + tally().1 < replays as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (written, reported) = tally();
    assert_eq!(
        written + reported,
        replays as u64,
        "written {written}, reported {reported}"
    );
    assert!(written >= 5, "the first replays are written: {written}");
    assert!(reported > 0, "most of the flood is only counted");

    // The metrics count every one of them.
    let scrape = send(metrics, &Request::get("/metrics")).await;
    let expected = format!(r#"signet_auth_failures_total{{code="REPLAY_DETECTED"}} {replays}"#);
    assert!(
        scrape.text().lines().any(|line| line == expected),
        "{expected:?} missing in:\n{}",
        scrape.text()
    );
}

// ===========================================================================
// Second review, 16. The log's method field is bounded
// ===========================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_huge_method_is_logged_with_the_method_capped() {
    let mut proxy = LoggedProxy::start(&[]).await;
    let lines = proxy.collect_lines();
    let method = "X".repeat(20_000);
    let reply = send(proxy.addr, &Request::new(&method, "/user")).await;
    assert_refused(&reply, ErrorCode::MethodNotAllowed);

    let record = || {
        lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|line| line["code"] == "METHOD_NOT_ALLOWED")
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while record().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = record().expect("the refusal's record is written, not dropped as too long");
    let logged = record["method"].as_str().unwrap_or_default();
    assert!(logged.starts_with("XXXX"), "{record}");
    assert!(logged.ends_with('…'), "{record}");
    assert!(logged.len() <= 32, "{} bytes: {record}", logged.len());
}

// ===========================================================================
// 6. One client against the others: the shared credential and the slots
// ===========================================================================

/// Requests that would manage the proxy's own GitHub credential: revoking
/// the token it is sent with, and the App's JWT-only routes (whose 401s
/// would make the proxy mint again), however the path is spelt.
const CREDENTIAL_ENDPOINTS: [(&str, &str); 19] = [
    ("DELETE", "/installation/token"),
    ("DELETE", "/installation/token/"),
    ("DELETE", "/installation/token?x=1"),
    ("DELETE", "//installation//token"),
    ("DELETE", "/%69nstallation/%74oken"),
    ("DELETE", "/Installation/Token"),
    ("POST", "/installation/token"),
    ("GET", "/app"),
    ("GET", "/app/"),
    ("GET", "/app?per_page=1"),
    ("GET", "/app/installations"),
    ("POST", "/app/installations/1/access_tokens"),
    ("DELETE", "/app/installations/1"),
    ("GET", "//app/installations"),
    ("GET", "/%61pp/installations"),
    ("GET", "/%2561pp/installations"),
    ("GET", "/APP/hook/config"),
    ("GET", "/app%2Finstallations"),
    ("GET", "/app.json"),
];

#[tokio::test]
async fn credential_endpoints_are_refused_for_every_client_and_never_forwarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.toml");
    // A client whose rules name the endpoints explicitly, and one with none.
    let allowed = Signer::new();
    std::fs::write(
        &keys,
        format!(
            "[[client]]\nname = \"allowed\"\nkey = \"{}\"\nallow = [\"* /app/**\", \"* /app\", \"* /installation/token\", \"* /**\"]\n",
            signet_core::public_key_hex(&allowed.key())
        ),
    )
    .expect("write keys file");
    let env = Env::start_with(|c| c.keys_file = Some(keys)).await;
    for signer in [&env.signer, &allowed] {
        for (method, target) in CREDENTIAL_ENDPOINTS {
            let request = Request::new(method, target).proof(signer.sign(method, target, b""));
            let reply = env.send(&request).await;
            assert_refused(&reply, ErrorCode::CredentialEndpointRefused);
            assert_eq!(reply.status, 403, "{method} {target}");
        }
    }
    // Unsigned, they are refused like any request without a proof.
    let reply = env
        .send(&Request::new("DELETE", "/installation/token"))
        .await;
    assert_refused(&reply, ErrorCode::MissingProof);
    env.assert_nothing_forwarded();

    // Neighbouring routes are the API's, and go through.
    for (method, target) in [
        ("GET", "/apps/acme-bot"),
        ("GET", "/application"),
        ("GET", "/app-manifests/x/conversions"),
        ("GET", "/repos/o/app"),
        ("GET", "/installation/repositories"),
        ("GET", "/installation/token-x"),
        ("DELETE", "/repos/o/r/installation/token"),
    ] {
        let request = Request::new(method, target).proof(env.signer.sign(method, target, b""));
        let reply = env.send(&request).await;
        assert_ne!(reply.status, 403, "{method} {target}: {}", reply.text());
    }
    assert_eq!(env.upstream.requests().len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clamped_rate_limit_hold_is_logged_with_what_github_sent() {
    let mut proxy = LoggedProxy::start(&[]).await;
    let lines = proxy.collect_lines();
    let now = crate::now();
    let sent = now + 3_000 * 365 * 24 * 3600;
    let target = format!("/limit/code_search/0/{sent}");
    let claims = crate::support::Claims {
        exp: now + 300,
        ts: now,
        purpose: "test",
    };
    let proof = proxy.signer.sign_with(claims, "GET", &target, b"");
    let reply = send(proxy.addr, &Request::get(&target).proof(proof)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let clamp = || {
        lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|line| {
                line["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("X-RateLimit-Reset is more than an hour away"))
            })
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while clamp().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = clamp().expect("the clamp is logged");
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["resource"], "code_search", "{line}");
    assert_eq!(line["sent"], sent, "{line}");
}

/// The status code of a response head, and the bytes read so far.
async fn status_of(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let head = tokio::time::timeout(Duration::from_secs(10), support::read_head(stream))
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let status = std::str::from_utf8(head.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_holding_its_share_of_upstream_slots_never_starves_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.toml");
    let other = Signer::new();
    std::fs::write(
        &keys,
        format!(
            "[[client]]\nname = \"other\"\nkey = \"{}\"\n",
            signet_core::public_key_hex(&other.key())
        ),
    )
    .expect("write keys file");
    let keys = keys.display().to_string();
    // Four slots; each client's share is the default, a quarter: one.
    let proxy = LoggedProxy::start(&[
        "--keys-file",
        &keys,
        "--upstream-concurrency",
        "4",
        "--upstream-timeout",
        "1s",
    ])
    .await;
    let now = crate::now();
    let signed = |signer: &Signer, target: &str| {
        let claims = crate::support::Claims {
            exp: now + 300,
            ts: now,
            purpose: "test",
        };
        Request::get(target).proof(signer.sign_with(claims, "GET", target, b""))
    };

    // The hog opens as many large downloads as there are slots (distinct,
    // so none waits on another's flight) and never reads their bodies: a
    // slot is held until its response body ends.
    let mut downloads = Vec::new();
    for n in 0..4 {
        let target = format!("/stream/{}", 200_000_000 + n);
        let request = signed(&proxy.signer, &target).to_bytes("p");
        downloads.push(open_with(proxy.addr, &request).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Another client is still served, at once.
    let reply = send(proxy.addr, &signed(&other, "/user")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // The hog got its share; the rest of its downloads waited for a slot of
    // its own (never another's) and were refused.
    let mut statuses = Vec::new();
    for stream in &mut downloads {
        let (status, mut read) = status_of(stream).await;
        if status == 503 {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&read).contains("UPSTREAM_BUSY")
                && Instant::now() < deadline
            {
                match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => read.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            assert!(
                String::from_utf8_lossy(&read).contains("UPSTREAM_BUSY"),
                "{}",
                String::from_utf8_lossy(&read)
            );
        }
        statuses.push(status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 503, 503, 503]);
}

// ===========================================================================
// Red team (issue 15 follow-up): bypasses of the fixes, failing on main
// ===========================================================================

/// Spellings of the credential's routes that pass the target check (its
/// dot-segment test splits on a raw `/` only) and the credential check (it
/// decodes and splits on `/` and `\`, but never resolves `.` and `..`), yet
/// name `DELETE /installation/token` or `/app` to any server in front of
/// GitHub that decodes `%2F` / `%5C` (or decodes twice) and then removes
/// dot-segments: the loosest reader `manages_the_credential` promises to
/// read as.
const CREDENTIAL_ENDPOINTS_BEHIND_DOT_SEGMENTS: [(&str, &str); 6] = [
    ("DELETE", "/installation/x/..%2Ftoken"),
    ("DELETE", "/x/..%2Finstallation/token"),
    ("DELETE", "/installation/x/%252e%252e/token"),
    ("DELETE", "/installation/x\\..\\token"),
    ("GET", "/x/..%2Fapp/installations"),
    ("POST", "/x/..%5Capp/installations/1/access_tokens"),
];

#[tokio::test]
async fn credential_endpoints_behind_an_encoded_dot_segment_are_refused_and_never_forwarded() {
    let env = Env::start().await;
    let mut forwarded = Vec::new();
    for (method, target) in CREDENTIAL_ENDPOINTS_BEHIND_DOT_SEGMENTS {
        let request = Request::new(method, target).proof(env.signer.sign(method, target, b""));
        let reply = env.send(&request).await;
        // Refused one way or the other (the dot-segment itself, or the
        // route it climbs to), never sent to GitHub with the shared token.
        if !(reply.status == 400 || reply.status == 403) {
            forwarded.push(format!("{method} {target} -> {}", reply.status));
        }
    }
    assert!(forwarded.is_empty(), "{forwarded:#?}");
    env.assert_nothing_forwarded();
}

/// Item 8 made replays look up the store before the rate check, and give
/// a token back when the atomic record finds a copy. But a request refused
/// between the rate check and the record — by the quota guard (429
/// `UPSTREAM_QUOTA_EXHAUSTED`, common for code search's 10 a minute), or
/// for want of a credential — keeps its token and leaves no record. So
/// every copy of a captured proof for such a request passes the look,
/// takes one of the victim's tokens, and is refused without a record: the
/// victim's bucket drains, one log record each, attributed to the victim.
#[tokio::test]
async fn copies_of_a_proof_refused_by_the_quota_guard_never_take_tokens_from_the_victims_rate() {
    let victim = Signer::new();
    let (env, _dir) = env_trusting_at_rate(&victim, "4/hour").await;
    let get = |target: &str| Request::get(target).proof(victim.sign("GET", target, b""));
    // Code search's quota is gone (GitHub said so, on the victim's request).
    let exhausting = format!("/limit/code_search/0/{}", NOW + 600);
    assert_eq!(env.send(&get(&exhausting)).await.status, 200);
    // The victim's own code search is answered locally…
    let captured = get("/search/code?q=x");
    assert_refused(
        &env.send(&captured).await,
        ErrorCode::UpstreamQuotaExhausted,
    );
    // …and an attacker who captured its proof sends it again and again.
    for _ in 0..10 {
        let reply = env.send(&captured).await;
        assert_ne!(reply.status, 200, "{}", reply.text());
    }
    // The victim took two tokens of four; two are left for its own requests.
    assert_eq!(env.send(&get("/user")).await.status, 200);
    assert_eq!(env.send(&get("/user")).await.status, 200);
    assert_refused(&env.send(&get("/user")).await, ErrorCode::RateLimited);
}

/// Item 5 gave the side listeners the proxy port's connection discipline,
/// but not its log limiter: the admin API logs a WARN line for every
/// refusal, unauthenticated ones included, so anyone who reaches the admin
/// port turns each ~40-byte pipelined request into a log line, without
/// bound (the proxy's port writes at most `--refusal-log-limit` records a
/// second of refusals no verified key stands behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_admin_refusals_are_log_limited_like_the_proxy_ports() {
    let admin = SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
    let admin_key = hex::encode(Signer::new().key().as_bytes());
    let admin_arg = admin.to_string();
    let mut proxy = LoggedProxy::start(&[
        "--admin-listen",
        &admin_arg,
        "--admin-key",
        &admin_key,
        "--refusal-log-limit",
        "10",
    ])
    .await;
    let lines = proxy.collect_lines();
    assert!(
        support::eventually(async || TcpStream::connect(admin).await.is_ok()).await,
        "the admin API never listened"
    );
    // 10 connections, each pipelining 100 unsigned requests (the side
    // listener's most per connection), sent within well under a second.
    let mut answered = 0;
    for _ in 0..10 {
        let mut stream = open_with(
            admin,
            &b"GET /clients HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100),
        )
        .await;
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw)).await;
        answered += raw.windows(9).filter(|w| *w == b"HTTP/1.1 ").count();
    }
    assert!(answered >= 900, "{answered} answered");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logged = lines
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.contains("admin request refused"))
        })
        .count();
    // A few seconds' worth of the limit at most.
    assert!(
        logged <= 50,
        "{logged} log lines for {answered} unauthenticated admin requests"
    );
}
