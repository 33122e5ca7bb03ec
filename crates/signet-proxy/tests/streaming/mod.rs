//! Replay under concurrency, streaming, upstream failures: concurrent
//! replays, a 100 MB response, an upstream that is unreachable, hangs up,
//! fails mid-body or is slow, and the shared token in no response.

use std::sync::Arc;
use std::time::Duration;

use signet_core::ErrorCode;
use signet_standin::StandIn;

use crate::support::{
    self, assert_no_token, assert_refused, closed_port, config, send, send_counting, Claims, Env,
    Reply, Request, RunningProxy, Signer, TOKEN,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replayed_proof_is_refused_even_when_sent_concurrently() {
    const COPIES: usize = 50;
    let env = Env::start().await;
    let request = Request::get("/user")
        .proof(env.signer.sign("GET", "/user", b""))
        .to_bytes("proxy");
    let addr = env.proxy.addr;

    // Every copy gets its own connection, opened first; then all are sent at once.
    let mut streams = Vec::with_capacity(COPIES);
    for _ in 0..COPIES {
        streams.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let start = Arc::new(tokio::sync::Barrier::new(COPIES));
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let start = Arc::clone(&start);
            let request = request.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt as _;
                start.wait().await;
                stream.write_all(&request).await.unwrap();
                tokio::time::timeout(
                    Duration::from_secs(20),
                    support::read_reply(&mut stream, false),
                )
                .await
                .expect("answered in time")
            })
        })
        .collect();
    let mut replies = Vec::with_capacity(COPIES);
    for task in tasks {
        replies.push(task.await.unwrap());
    }

    let accepted = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(accepted, 1, "exactly one copy is accepted");
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_refused(reply, ErrorCode::ReplayDetected);
    }
    assert_eq!(
        env.upstream.requests().len(),
        1,
        "the upstream saw one request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_response_streams_through_complete() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let env = Env::start().await;
    let target = format!("/stream/{SIZE}");
    let request = Request::get(&target).proof(env.signer.sign("GET", &target, b""));
    let (reply, received) = send_counting(env.proxy.addr, &request).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some(SIZE.to_string()));
    assert_eq!(received, SIZE, "every byte arrives");
}

#[tokio::test]
async fn an_unreachable_upstream_is_bad_gateway() {
    let down = closed_port().await;
    let signer = Signer::new();
    let proxy = RunningProxy::start(&config(&format!("http://{down}"), &signer)).await;
    let reply = send(
        proxy.addr,
        &Request::get("/user").proof(signer.sign("GET", "/user", b"")),
    )
    .await;
    assert_refused(&reply, ErrorCode::BadGateway);
}

#[tokio::test]
async fn an_upstream_that_hangs_up_before_answering_is_bad_gateway() {
    let upstream = support::raw_upstream(b"").await;
    let signer = Signer::new();
    let proxy = RunningProxy::start(&config(&format!("http://{upstream}"), &signer)).await;
    let reply = send(
        proxy.addr,
        &Request::get("/user").proof(signer.sign("GET", "/user", b"")),
    )
    .await;
    assert_refused(&reply, ErrorCode::BadGateway);
}

#[tokio::test]
async fn an_upstream_failing_mid_body_cuts_the_response_short_without_a_second_status() {
    let upstream = support::raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\nonly ten b",
    )
    .await;
    let signer = Signer::new();
    let proxy = RunningProxy::start(&config(&format!("http://{upstream}"), &signer)).await;
    let raw = support::send_until_closed(
        proxy.addr,
        &Request::get("/user").proof(signer.sign("GET", "/user", b"")),
    )
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "one status only: {text}"
    );
    let body_start = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        raw.len() - body_start < 1000,
        "the body is visibly truncated: {text}"
    );
}

#[tokio::test]
async fn a_slow_upstream_is_gateway_timeout() {
    // The upstream would answer 200 after 3 s; the proxy gives up at 500 ms.
    let env = Env::start_with(|c| c.upstream_timeout = Duration::from_millis(500)).await;
    let reply = env
        .send(&Request::get("/delay/3000").proof(env.signer.sign("GET", "/delay/3000", b"")))
        .await;
    assert_refused(&reply, ErrorCode::GatewayTimeout);
}

#[tokio::test]
async fn the_shared_token_never_appears_in_any_response() {
    let mut replies: Vec<Reply> = Vec::new();

    let down = closed_port().await;
    let signer = Signer::new();
    let proxy = RunningProxy::start(&config(&format!("http://{down}"), &signer)).await;
    let reply = send(
        proxy.addr,
        &Request::get("/user").proof(signer.sign("GET", "/user", b"")),
    )
    .await;
    assert_eq!(reply.status, 502);
    replies.push(reply);

    let env = Env::start_with(|c| {
        c.upstream_timeout = Duration::from_millis(300);
        c.max_body_size = 64;
    })
    .await;
    let reply = env
        .send(&Request::get("/delay/2000").proof(env.signer.sign("GET", "/delay/2000", b"")))
        .await;
    assert_eq!(reply.status, 504);
    replies.push(reply);

    let signed = Request::get("/user").proof(env.signer.sign("GET", "/user", b""));
    replies.push(env.send(&signed).await);
    replies.push(env.send(&signed).await); // replay
    let mut bad = env.signer.sign_with(Claims::default(), "GET", "/user", b"");
    bad.s[0] ^= 1;
    for request in [
        Request::get("/user"),
        Request::get("/user").proof(bad),
        Request::get("/user").proof("garbage"),
        Request::get("/user").header("Authorization", format!("Bearer {TOKEN}")),
        Request::new("POST", "/echo")
            .proof(env.signer.sign("POST", "/echo", &[0; 65]))
            .body(vec![0; 65]),
        Request::get("/redirect").proof(env.signer.sign("GET", "/redirect", b"")),
    ] {
        replies.push(env.send(&request).await);
    }

    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [502, 504, 200, 401, 401, 401, 400, 401, 413, 302]);
    for reply in &replies {
        assert_no_token(&reply.raw);
    }
}

#[tokio::test]
async fn absolute_form_forged_host_and_double_slash_paths_never_reach_another_host() {
    let evil = StandIn::start(None).await.unwrap();
    let env = Env::start().await;
    let evil_host = evil.addr().to_string();

    // Absolute-form naming the other host.
    let absolute = format!("http://{evil_host}/user");
    let reply = env
        .send(&Request::get(&absolute).proof(env.signer.sign("GET", &absolute, b"")))
        .await;
    assert_refused(&reply, ErrorCode::InvalidRequestTarget);

    // A forged Host and X-Forwarded-Host change nothing.
    let reply = env
        .send(
            &Request::get("/user")
                .proof(env.signer.sign("GET", "/user", b""))
                .host(&evil_host)
                .header("X-Forwarded-Host", &evil_host),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // A path that looks like a network-path reference stays a path.
    let double_slash = format!("//{evil_host}/user");
    let reply = env
        .send(&Request::get(&double_slash).proof(env.signer.sign("GET", &double_slash, b"")))
        .await;
    assert_eq!(reply.status, 404, "the real upstream has no such path");

    assert!(evil.requests().is_empty(), "the other host got nothing");
    let seen = env.upstream.requests();
    let targets: Vec<&str> = seen.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/user", double_slash.as_str()]);
    let upstream_host = env.upstream.addr().to_string();
    for forwarded in &seen {
        assert_eq!(
            forwarded.headers.get("host").map(|h| h.as_bytes()),
            Some(upstream_host.as_bytes())
        );
    }
}
