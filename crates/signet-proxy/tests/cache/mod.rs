//! The conditional-request cache: a 304 to a revalidation is answered as the
//! full 200, fresh responses are served without GitHub, identical concurrent
//! GETs are coalesced, and nothing crosses a credential or a client's own
//! conditional request.

use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::support::{Env, Reply, Request};

async fn get(env: &Env, target: &str) -> Reply {
    get_with(env, target, &[]).await
}

async fn get_with(env: &Env, target: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::get(target).proof(env.signer.sign("GET", target, b""));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    env.send(&request).await
}

fn cache(reply: &Reply) -> Option<String> {
    reply.header("x-signet-cache")
}

/// What the stand-in received for `target`, in order: the `If-None-Match`
/// of each request.
fn conditionals(env: &Env, target: &str) -> Vec<Option<String>> {
    env.upstream
        .requests()
        .iter()
        .filter(|r| r.target == target)
        .map(|r| {
            r.headers
                .get("if-none-match")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn a_304_to_a_revalidation_is_answered_as_the_full_200() {
    let env = Env::start().await;
    // max-age=0: every request is revalidated.
    let target = "/etag/0/0";
    let first = get(&env, target).await;
    assert_eq!(
        (first.status, cache(&first).as_deref()),
        (200, Some("MISS"))
    );
    assert_eq!(first.text(), r#"{"revision":0}"#);

    let second = get(&env, target).await;
    assert_eq!(
        (second.status, cache(&second).as_deref()),
        (200, Some("REVALIDATED"))
    );
    assert_eq!(
        second.text(),
        r#"{"revision":0}"#,
        "the body came from the cache"
    );
    assert_eq!(second.header("etag").as_deref(), Some("\"r0\""));
    assert_eq!(
        conditionals(&env, target),
        [None, Some("\"r0\"".to_owned())],
        "the proxy asked GitHub with the stored ETag"
    );

    // Changed upstream: the new 200 is served and kept.
    env.upstream.bump_revision();
    let third = get(&env, target).await;
    assert_eq!(
        (third.status, cache(&third).as_deref()),
        (200, Some("MISS"))
    );
    assert_eq!(third.text(), r#"{"revision":1}"#);
    let fourth = get(&env, target).await;
    assert_eq!(cache(&fourth).as_deref(), Some("REVALIDATED"));
    assert_eq!(fourth.text(), r#"{"revision":1}"#);
}

#[tokio::test]
async fn a_fresh_response_is_a_hit_until_a_write_goes_through_the_proxy() {
    let env = Env::start().await;
    let target = "/etag/60/0";
    assert_eq!(cache(&get(&env, target).await).as_deref(), Some("MISS"));
    let hit = get(&env, target).await;
    assert_eq!((hit.status, cache(&hit).as_deref()), (200, Some("HIT")));
    assert_eq!(hit.text(), r#"{"revision":0}"#);
    let head = env
        .send(&Request::new("HEAD", target).proof(env.signer.sign("HEAD", target, b"")))
        .await;
    assert_eq!((head.status, cache(&head).as_deref()), (200, Some("HIT")));
    assert_eq!(
        conditionals(&env, target).len(),
        1,
        "hits never asked GitHub"
    );

    // A hit still consumes the proof.
    let proof = env.signer.sign("GET", target, b"");
    let once = env.send(&Request::get(target).proof(&proof)).await;
    let again = env.send(&Request::get(target).proof(&proof)).await;
    assert_eq!((once.status, again.status), (200, 401));

    // A write may change anything: what was stored is revalidated.
    let body = b"{}";
    let write = env
        .send(
            &Request::new("POST", "/echo")
                .proof(env.signer.sign("POST", "/echo", body))
                .body(body.to_vec()),
        )
        .await;
    assert_eq!(write.status, 200);
    assert_eq!(
        write.header("x-signet-cache"),
        None,
        "writes bypass the cache"
    );
    assert_eq!(
        cache(&get(&env, target).await).as_deref(),
        Some("REVALIDATED")
    );
    // The client can ask for a revalidation too.
    let forced = get_with(&env, target, &[("cache-control", "no-cache")]).await;
    assert_eq!(cache(&forced).as_deref(), Some("REVALIDATED"));
}

#[tokio::test]
async fn a_clients_own_conditional_request_gets_its_own_304() {
    let env = Env::start().await;
    let target = "/etag/60/0";
    assert_eq!(cache(&get(&env, target).await).as_deref(), Some("MISS"));
    let own = get_with(&env, target, &[("if-none-match", "\"r0\"")]).await;
    assert_eq!(
        own.status, 304,
        "the client's If-None-Match is answered as it expects"
    );
    assert_eq!(cache(&own).as_deref(), Some("MISS"));
    let stale = get_with(&env, target, &[("if-none-match", "\"old\"")]).await;
    assert_eq!(stale.status, 200);
    assert_eq!(
        conditionals(&env, target),
        [None, Some("\"r0\"".to_owned()), Some("\"old\"".to_owned())],
        "the client's validators went upstream untouched"
    );
    // no-store from the client: nothing used, nothing kept.
    let bypass = get_with(&env, target, &[("cache-control", "no-store")]).await;
    assert_eq!(
        (bypass.status, cache(&bypass).as_deref()),
        (200, Some("MISS"))
    );
    assert_eq!(conditionals(&env, target).len(), 4);
}

#[tokio::test]
async fn the_key_covers_the_headers_github_varies_on() {
    let env = Env::start().await;
    let target = "/etag/60/0";
    let json = [("accept", "application/vnd.github+json")];
    let raw = [("accept", "application/vnd.github.raw+json")];
    assert_eq!(
        cache(&get_with(&env, target, &json).await).as_deref(),
        Some("MISS")
    );
    assert_eq!(
        cache(&get_with(&env, target, &raw).await).as_deref(),
        Some("MISS")
    );
    assert_eq!(
        cache(&get_with(&env, target, &json).await).as_deref(),
        Some("HIT")
    );
    let versioned = [
        ("accept", "application/vnd.github+json"),
        ("x-github-api-version", "2022-11-28"),
    ];
    assert_eq!(
        cache(&get_with(&env, target, &versioned).await).as_deref(),
        Some("MISS")
    );
    let gzip = [
        ("accept", "application/vnd.github+json"),
        ("accept-encoding", "gzip"),
    ];
    assert_eq!(
        cache(&get_with(&env, target, &gzip).await).as_deref(),
        Some("MISS")
    );
    // Vary names Cookie: another cookie is another representation.
    let cookie = [("accept", "application/vnd.github+json"), ("cookie", "a=b")];
    assert_eq!(
        cache(&get_with(&env, target, &cookie).await).as_deref(),
        Some("MISS")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_gets_are_coalesced_into_one_upstream_request() {
    let env = Env::start().await;
    // GitHub takes 300 ms to answer; five clients ask at once.
    let target = "/etag/60/300";
    let replies = futures_join(&env, target, 5).await;
    for reply in &replies {
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), r#"{"revision":0}"#);
    }
    let mut outcomes: Vec<String> = replies.iter().filter_map(cache).collect();
    outcomes.sort();
    assert_eq!(outcomes, ["HIT", "HIT", "HIT", "HIT", "MISS"]);
    assert_eq!(
        conditionals(&env, target).len(),
        1,
        "one request reached GitHub"
    );
}

async fn futures_join(env: &Env, target: &str, n: usize) -> Vec<Reply> {
    let addr = env.proxy.addr;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let request = Request::get(target).proof(env.signer.sign("GET", target, b""));
            tokio::spawn(async move { crate::support::send(addr, &request).await })
        })
        .collect();
    let mut replies = Vec::with_capacity(n);
    for task in tasks {
        replies.push(task.await.expect("request task"));
    }
    replies
}

#[tokio::test]
async fn uncacheable_answers_are_not_coalesced_or_kept() {
    let env = Env::start().await;
    // No ETag: every request goes to GitHub.
    for _ in 0..2 {
        let reply = get(&env, "/user").await;
        assert_eq!(
            (reply.status, cache(&reply).as_deref()),
            (200, Some("MISS"))
        );
    }
    assert_eq!(
        env.upstream
            .requests()
            .iter()
            .filter(|r| r.target == "/user")
            .count(),
        2
    );
}

#[tokio::test]
async fn cache_size_zero_turns_the_cache_off() {
    let env = Env::start_with(|c| c.cache_size = 0).await;
    for _ in 0..2 {
        let reply = get(&env, "/etag/60/0").await;
        assert_eq!((reply.status, reply.header("x-signet-cache")), (200, None));
    }
    assert_eq!(conditionals(&env, "/etag/60/0"), [None, None]);
}

#[tokio::test]
async fn responses_are_kept_apart_by_the_host_links_are_rewritten_to() {
    let env = Env::start().await;
    let target = "/etag/60/0";
    let a = env
        .send(
            &Request::get(target)
                .proof(env.signer.sign("GET", target, b""))
                .host("a.example"),
        )
        .await;
    let b = env
        .send(
            &Request::get(target)
                .proof(env.signer.sign("GET", target, b""))
                .host("b.example"),
        )
        .await;
    assert_eq!(
        (cache(&a).as_deref(), cache(&b).as_deref()),
        (Some("MISS"), Some("MISS"))
    );
}

#[tokio::test]
async fn metrics_count_hits_and_the_quota_saved() {
    let port = crate::support::free_port();
    let env = Env::start_with(|c| {
        c.metrics_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    })
    .await;
    let target = "/etag/60/0";
    for _ in 0..3 {
        get(&env, target).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let scrape = crate::support::send(metrics_addr, &Request::get("/metrics"))
        .await
        .text();
    for line in [
        "signet_cache_responses_total{result=\"MISS\"} 1",
        "signet_cache_responses_total{result=\"HIT\"} 2",
        "signet_cache_quota_saved_total 2",
        "signet_cache_entries 1",
    ] {
        assert!(scrape.contains(line), "{line} not in {scrape}");
    }
}

// ===========================================================================
// One client against the others (issue 15)
// ===========================================================================

/// Sends `request` to the proxy on a task of its own.
fn spawn_send(env: &Env, request: Request) -> tokio::task::JoinHandle<Reply> {
    let addr = env.proxy.addr;
    tokio::spawn(async move { crate::support::send(addr, &request).await })
}

/// Waits (bounded) until the stand-in has received `count` requests for
/// `target`: a request is then in flight upstream.
async fn arrived(env: &Env, target: &str, count: usize) {
    let seen = crate::support::eventually(async || {
        env.upstream
            .requests()
            .iter()
            .filter(|r| r.target == target)
            .count()
            >= count
    })
    .await;
    assert!(
        seen,
        "{count} requests for {target} never reached the stand-in"
    );
}

fn signed_get(env: &Env, target: &str, headers: &[(&str, &str)]) -> Request {
    let mut request = Request::get(target).proof(env.signer.sign("GET", target, b""));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request
}

async fn post(env: &Env, target: &str) -> Reply {
    let body = b"{}";
    env.send(
        &Request::new("POST", target)
            .proof(env.signer.sign("POST", target, body))
            .body(body.to_vec()),
    )
    .await
}

/// The value of a metric line in a Prometheus scrape.
fn metric(scrape: &str, name: &str) -> Option<u64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

const JSON: &str = r#"{"revision":0}"#;
const RAW: &str = "revision 0";

#[tokio::test]
async fn a_keyed_header_the_client_marks_hop_by_hop_is_not_part_of_the_key() {
    let env = Env::start().await;
    let target = "/etag/60/0";
    // `Connection: accept` strips Accept before GitHub sees it: GitHub
    // answers its default JSON, which must not be kept as the raw answer.
    let attacker = get_with(
        &env,
        target,
        &[
            ("accept", "application/vnd.github.raw"),
            ("connection", "accept"),
        ],
    )
    .await;
    assert_eq!(attacker.text(), JSON);
    assert!(
        env.upstream.requests()[0].headers.get("accept").is_none(),
        "the hop-by-hop Accept did not go upstream"
    );
    let raw = get_with(&env, target, &[("accept", "application/vnd.github.raw")]).await;
    assert_eq!(
        (raw.text().as_str(), cache(&raw).as_deref()),
        (RAW, Some("MISS")),
        "a client asking for raw gets raw, never the JSON stored under its key"
    );
    // What went upstream (no Accept) is what the answer is kept under.
    let plain = get(&env, target).await;
    assert_eq!(
        (plain.text().as_str(), cache(&plain).as_deref()),
        (JSON, Some("HIT"))
    );
}

#[tokio::test]
async fn a_request_repeating_a_keyed_header_is_neither_kept_nor_served_from_the_cache() {
    let env = Env::start().await;
    let target = "/etag/60/0";
    // Two Accept lines: the first is JSON, but GitHub reads both.
    let twice = [
        ("accept", "application/vnd.github+json"),
        ("accept", "application/vnd.github.raw"),
    ];
    let attacker = get_with(&env, target, &twice).await;
    assert_eq!(
        (attacker.text().as_str(), cache(&attacker).as_deref()),
        (RAW, Some("MISS"))
    );
    let json = [("accept", "application/vnd.github+json")];
    let victim = get_with(&env, target, &json).await;
    assert_eq!(
        (victim.text().as_str(), cache(&victim).as_deref()),
        (JSON, Some("MISS")),
        "the raw answer was not kept under the JSON key"
    );
    assert_eq!(
        cache(&get_with(&env, target, &json).await).as_deref(),
        Some("HIT")
    );
    // Nor is a stored answer served to a request repeating a keyed header.
    let again = get_with(&env, target, &twice).await;
    assert_eq!(
        (again.text().as_str(), cache(&again).as_deref()),
        (RAW, Some("MISS"))
    );
    for repeated in [
        [
            ("x-github-api-version", "2022-11-28"),
            ("x-github-api-version", "2026-03-10"),
        ],
        [("accept-encoding", "identity"), ("accept-encoding", "gzip")],
        // Vary names Cookie.
        [("cookie", "a=b"), ("cookie", "c=d")],
    ] {
        for _ in 0..2 {
            let reply = get_with(&env, target, &repeated).await;
            assert_eq!(cache(&reply).as_deref(), Some("MISS"), "{repeated:?}");
        }
    }
    assert_eq!(
        conditionals(&env, target),
        vec![None; 9],
        "every bypass went to GitHub without the stored validators"
    );
}

#[tokio::test]
async fn the_cache_weighs_keys_and_vary_values_and_bypasses_oversized_ones() {
    let port = crate::support::free_port();
    let env = Env::start_with(|c| {
        c.metrics_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    })
    .await;
    let scrape = async || {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        crate::support::send(addr, &Request::get("/metrics"))
            .await
            .text()
    };
    // Just under the limits: a 2 KiB target and a 1 KiB cookie are kept,
    // and weighed.
    let target = format!(
        "/etag/60/0?pad={}",
        "t".repeat(2048 - "/etag/60/0?pad=".len())
    );
    let cookie = format!("c={}", "v".repeat(1024 - 2));
    let kept = [("cookie", cookie.as_str())];
    assert_eq!(
        cache(&get_with(&env, &target, &kept).await).as_deref(),
        Some("MISS")
    );
    assert_eq!(
        cache(&get_with(&env, &target, &kept).await).as_deref(),
        Some("HIT")
    );
    let metrics = scrape().await;
    let bytes = metric(&metrics, "signet_cache_bytes").unwrap_or(0);
    assert!(
        bytes >= (target.len() + cookie.len() + JSON.len()) as u64,
        "signet_cache_bytes {bytes} must count the target and the Vary values"
    );

    // Over them: never kept, never served from the cache.
    let long_target = format!("/etag/60/0?pad={}", "t".repeat(2048));
    let long_cookie = format!("c={}", "v".repeat(1024));
    let long_accept = format!("application/vnd.github+json; x={}", "a".repeat(1024));
    for (target, headers) in [
        (long_target.as_str(), vec![]),
        ("/etag/60/0", vec![("cookie", long_cookie.as_str())]),
        ("/etag/60/0", vec![("accept", long_accept.as_str())]),
    ] {
        for _ in 0..2 {
            let reply = get_with(&env, target, &headers).await;
            assert_eq!(
                (reply.status, cache(&reply).as_deref()),
                (200, Some("MISS")),
                "{headers:?} {}",
                target.len()
            );
        }
    }
    assert_eq!(conditionals(&env, &long_target), [None, None]);
    assert_eq!(
        metric(&scrape().await, "signet_cache_entries"),
        Some(1),
        "nothing oversized was kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_sent_before_a_write_and_answered_after_it_is_not_served_fresh() {
    let env = Env::start().await;
    let target = "/etag/60/1000";
    let early = spawn_send(&env, signed_get(&env, target, &[]));
    arrived(&env, target, 1).await;
    assert_eq!(post(&env, "/echo").await.status, 200);
    let early = early.await.expect("request task");
    assert_eq!(cache(&early).as_deref(), Some("MISS"));
    // The GET may have read the resource before the write changed it.
    assert_eq!(
        cache(&get(&env, target).await).as_deref(),
        Some("REVALIDATED")
    );
    assert_eq!(cache(&get(&env, target).await).as_deref(), Some("HIT"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_never_answered_from_a_flight_older_than_the_last_write() {
    let env = Env::start().await;
    let target = "/etag/60/1500";
    let leader = spawn_send(&env, signed_get(&env, target, &[]));
    arrived(&env, target, 1).await;
    assert_eq!(post(&env, "/echo").await.status, 200);
    // Asks after the write went through, while the flight is still out.
    let waiter = spawn_send(&env, signed_get(&env, target, &[]));
    let (leader, waiter) = (
        leader.await.expect("request task"),
        waiter.await.expect("request task"),
    );
    assert_eq!(cache(&leader).as_deref(), Some("MISS"));
    assert_eq!(
        (waiter.status, cache(&waiter).as_deref()),
        (200, Some("REVALIDATED")),
        "the waiter asked GitHub itself"
    );
}

#[tokio::test]
async fn a_write_whose_answer_is_lost_still_makes_cached_answers_stale() {
    let env = Env::start_with(|c| c.upstream_timeout = Duration::from_millis(500)).await;
    let target = "/etag/60/0";
    assert_eq!(cache(&get(&env, target).await).as_deref(), Some("MISS"));
    assert_eq!(cache(&get(&env, target).await).as_deref(), Some("HIT"));
    // GitHub got the write but its answer never came: 504.
    assert_eq!(post(&env, "/delay/2000").await.status, 504);
    assert_eq!(
        cache(&get(&env, target).await).as_deref(),
        Some("REVALIDATED")
    );
    assert_eq!(cache(&get(&env, target).await).as_deref(), Some("HIT"));
    // GitHub failed it, perhaps after applying part of it.
    assert_eq!(post(&env, "/status/502").await.status, 502);
    assert_eq!(
        cache(&get(&env, target).await).as_deref(),
        Some("REVALIDATED")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_with_other_vary_values_is_not_answered_from_the_flight() {
    let env = Env::start().await;
    let target = "/etag/60/1000";
    let leader = spawn_send(&env, signed_get(&env, target, &[("cookie", "session=a")]));
    arrived(&env, target, 1).await;
    let other = spawn_send(&env, signed_get(&env, target, &[("cookie", "session=b")]));
    let (leader, other) = (
        leader.await.expect("request task"),
        other.await.expect("request task"),
    );
    assert_eq!(cache(&leader).as_deref(), Some("MISS"));
    assert_eq!(
        cache(&other).as_deref(),
        Some("MISS"),
        "GitHub varies on Cookie: another cookie asks GitHub"
    );
    let cookies: Vec<_> = env
        .upstream
        .requests()
        .iter()
        .filter_map(|r| r.headers.get("cookie").cloned())
        .collect();
    assert_eq!(cookies, ["session=a", "session=b"]);
}

/// Sends `request` on a connection that receives into a tiny buffer, and
/// reads only the response head: a client that stops reading.
async fn read_head_then_stop(addr: std::net::SocketAddr, request: &Request) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = socket.connect(addr).await.expect("connect to proxy");
    stream
        .write_all(&request.to_bytes(&addr.to_string()))
        .await
        .expect("write request");
    let head = crate::support::read_head(&mut stream)
        .await
        .expect("a response head");
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_stops_reading_does_not_hold_back_identical_requests() {
    // Room for an 8 MiB entry; identical requests would wait up to 5 s.
    let env = Env::start_with(|c| {
        c.cache_size = 128 * 1024 * 1024;
        c.upstream_timeout = Duration::from_secs(5);
    })
    .await;
    let size = 8 * 1024 * 1024;
    let target = format!("/large/{size}");
    let _stopped = read_head_then_stop(env.proxy.addr, &signed_get(&env, &target, &[])).await;
    let other = get(&env, &target).await;
    assert_eq!(
        (other.status, other.body.len(), cache(&other).as_deref()),
        (200, size, Some("HIT")),
        "the answer was kept at GitHub's pace, not the first client's"
    );
    assert_eq!(conditionals(&env, &target).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_released_as_soon_as_the_answer_cannot_be_kept() {
    // Entries up to 32 KiB; the answer grows past that, then stalls.
    let env = Env::start_with(|c| {
        c.cache_size = 256 * 1024;
        c.upstream_timeout = Duration::from_secs(60);
    })
    .await;
    let target = "/large/100000/gated";
    let leader = env.proxy.addr;
    let _leader = read_head_then_stop(leader, &signed_get(&env, target, &[])).await;
    let waiter = tokio::time::timeout(
        Duration::from_secs(10),
        read_head_then_stop(env.proxy.addr, &signed_get(&env, target, &[])),
    )
    .await;
    assert!(
        waiter.is_ok(),
        "the identical request was held until the first answer ended"
    );
    assert_eq!(conditionals(&env, target).len(), 2);
    env.upstream.open_gate();
    env.upstream.open_gate();
}

#[tokio::test]
async fn an_upstream_x_signet_cache_header_never_reaches_the_client() {
    let env = Env::start().await;
    let target = "/header/x-signet-cache/HIT";
    let write = post(&env, target).await;
    assert_eq!((write.status, write.all("x-signet-cache")), (200, vec![]));
    let read = get(&env, target).await;
    assert_eq!(
        (read.status, read.all("x-signet-cache")),
        (200, vec!["MISS".to_owned()])
    );

    let off = Env::start_with(|c| c.cache_size = 0).await;
    let read = get(&off, target).await;
    assert_eq!((read.status, read.all("x-signet-cache")), (200, vec![]));
}

// ===========================================================================
// The real binary: its log, its memory
// ===========================================================================

/// The proxy binary in front of a stand-in, with real-time proofs.
struct Binary {
    addr: std::net::SocketAddr,
    signer: crate::support::Signer,
    child: Option<std::process::Child>,
    _upstream: signet_standin::StandIn,
}

impl Binary {
    async fn start(extra: &[&str]) -> Binary {
        let upstream = signet_standin::StandIn::start(Some(crate::support::TOKEN))
            .await
            .expect("stand-in");
        let signer = crate::support::Signer::new();
        let port = crate::support::free_port().to_string();
        let key = signet_core::public_key_hex(&signer.key());
        let api = upstream.url();
        let mut args = vec![
            "--listen",
            "127.0.0.1",
            "--port",
            &port,
            "--master-key",
            &key,
            "--github-api",
            &api,
        ];
        args.extend_from_slice(extra);
        let mut child = crate::binary(&args, &[("GITHUB_TOKEN", crate::support::TOKEN)])
            .spawn()
            .expect("spawn signet-proxy");
        let addr = format!("127.0.0.1:{port}").parse().expect("addr");
        crate::wait_until_healthy(addr, &mut child).await;
        Binary {
            addr,
            signer,
            child: Some(child),
            _upstream: upstream,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    fn request(&self, method: &str, target: &str, body: &[u8]) -> Request {
        let now = crate::now();
        let claims = crate::support::Claims {
            exp: now + 300,
            ts: now,
            purpose: "test",
        };
        let proof = self.signer.sign_with(claims, method, target, body);
        let request = Request::new(method, target).proof(proof);
        if body.is_empty() {
            request
        } else {
            request.body(body.to_vec())
        }
    }

    /// Stops it (SIGTERM) and returns its per-request log records.
    async fn records(mut self) -> Vec<serde_json::Value> {
        let child = self.child.take().expect("running");
        crate::terminate(&child);
        let exited = tokio::task::spawn_blocking(move || {
            crate::support::wait_exit(child, Duration::from_secs(10))
        })
        .await
        .expect("wait task");
        exited
            .stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|record| record.get("path").is_some())
            .collect()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_takes_the_cache_outcome_from_the_cache_never_from_a_header() {
    let target = "/header/x-signet-cache/HIT";
    let proxy = Binary::start(&[]).await;
    let write = crate::support::send(proxy.addr, &proxy.request("POST", target, b"{}")).await;
    let read = crate::support::send(proxy.addr, &proxy.request("GET", target, b"")).await;
    assert_eq!((write.status, read.status), (200, 200));
    let records = proxy.records().await;
    let cache_fields: Vec<_> = records
        .iter()
        .map(|r| (r["method"].clone(), r.get("cache").cloned()))
        .collect();
    assert_eq!(
        cache_fields,
        [
            ("POST".into(), None),
            ("GET".into(), Some(serde_json::Value::from("MISS")))
        ],
        "a write is not the cache's; the GET reached GitHub: {records:#?}"
    );

    let off = Binary::start(&["--cache-size", "0"]).await;
    let read = crate::support::send(off.addr, &off.request("GET", target, b"")).await;
    assert_eq!(read.status, 200);
    let records = off.records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].get("cache"), None, "no cache, no outcome");
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

/// `count` GETs of distinct `/etag/60/0` targets, padded to `target_len`,
/// each with a distinct `cookie_len` cookie, four connections at a time
/// (each signed just before it is sent).
async fn padded_gets(proxy: &Binary, count: usize, target_len: usize, cookie_len: usize) {
    let mut tasks = Vec::new();
    for task in 0..4 {
        let addr = proxy.addr;
        let signer = crate::support::Signer::with_master(proxy.signer.master().clone());
        tasks.push(tokio::spawn(async move {
            for i in (task..count).step_by(4) {
                let prefix = format!("/etag/60/0?n={i}&pad=");
                let target = format!("{prefix}{}", "t".repeat(target_len - prefix.len()));
                let cookie = format!("n={i}; pad={}", "c".repeat(cookie_len));
                let now = crate::now();
                let claims = crate::support::Claims {
                    exp: now + 300,
                    ts: now,
                    purpose: "test",
                };
                let request = Request::get(&target)
                    .proof(signer.sign_with(claims, "GET", &target, b""))
                    .header("cookie", &cookie[..cookie_len]);
                let reply = crate::support::send(addr, &request).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
            }
        }));
    }
    for task in tasks {
        task.await.expect("request task");
    }
}

/// Run with `cargo test --release -p signet-proxy --test proxy -- --ignored
/// --nocapture cache::memory`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a memory figure against the release binary; run explicitly"]
async fn memory_stays_within_the_cache_size_under_long_targets_and_cookies() {
    let metrics_port = crate::support::free_port().to_string();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let proxy = Binary::start(&["--cache-size", "4MiB", "--metrics-listen", &metrics]).await;
    let pid = proxy.pid();
    // Connections, buffers and the allocator's arenas warmed up first.
    padded_gets(&proxy, 200, 100, 20).await;
    let idle = rss_kib(pid);

    // The issue's load: 20 KB targets and cookies. Over the limits, bypassed.
    padded_gets(&proxy, 2_500, 20_000, 20_000).await;
    let long = rss_kib(pid);
    // Just under the limits: every answer is kept, and 4 MiB is full many
    // times over.
    padded_gets(&proxy, 2_500, 2_048, 1_024).await;
    let limits = rss_kib(pid);
    let scrape = crate::support::send(metrics.parse().expect("addr"), &Request::get("/metrics"))
        .await
        .text();
    let bytes = metric(&scrape, "signet_cache_bytes").unwrap_or(u64::MAX);
    let entries = metric(&scrape, "signet_cache_entries").unwrap_or(0);
    println!(
        "RSS KiB: warmed up {idle}; after 2,500 GETs with 20 KB targets and cookies {long}; \
         after 2,500 at the limits {limits}; cache {entries} entries, {bytes} bytes"
    );
    assert!(bytes <= 4 * 1024 * 1024, "signet_cache_bytes {bytes}");
    // The cache's 4 MiB plus a fixed allowance for the allocator.
    let bound = idle + 4 * 1024 + 12 * 1024;
    assert!(long < bound, "20 KB targets and cookies: {long} KiB");
    assert!(limits < bound, "at the limits: {limits} KiB");
}

// ===========================================================================
// Red team (issue 15 follow-up): bypasses of the fixes, failing on main
// ===========================================================================

/// The read-ahead (item 10) reads a cacheable answer from GitHub into an
/// unbounded queue up to the entry limit (`--cache-size` / 8, up to 16 MiB)
/// whatever the client's pace, and gives the upstream slot and the
/// client's share back as soon as GitHub's body ends. So one client, with
/// connections that read the head and then stop (or read a few bytes now
/// and then, within `--write-timeout`), makes the proxy hold one entry's
/// worth per connection, outside the cache's weight and beyond its share
/// of slots: `--max-connections` × the entry limit (1,024 × 8 MiB with the
/// defaults). Before the read-ahead, hyper's back-pressure held a few
/// socket buffers per connection.
///
/// Now a slow reader holds its slot (and share) until it has taken what was
/// read ahead, and all read-ahead together stays within a quarter of
/// `--cache-size`; the share is widened here so all 32 are served at once.
/// The fast regression tests are
/// `a_slow_readers_read_ahead_keeps_its_clients_share_until_it_is_taken` and
/// `read_ahead_stops_at_its_budget_and_releases_the_waiters`.
///
/// Run with `cargo test -p signet-proxy --test proxy -- --ignored
/// --nocapture cache::slow_readers`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a memory figure against the binary; run explicitly"]
async fn slow_readers_of_distinct_large_answers_cannot_make_the_proxy_hold_more_than_the_cache_size(
) {
    // 64 MiB of cache: entries up to 8 MiB.
    let proxy = Binary::start(&[
        "--cache-size",
        "64MiB",
        "--write-timeout",
        "60s",
        "--upstream-concurrency-per-client",
        "40",
    ])
    .await;
    let pid = proxy.pid();
    // Warm up: connections, buffers, the allocator's arenas.
    for i in 0..4 {
        let target = format!("/large/7000000?warm={i}");
        let reply = crate::support::send(proxy.addr, &proxy.request("GET", &target, b"")).await;
        assert_eq!(reply.status, 200);
    }
    let idle = rss_kib(pid);

    // 32 distinct answers of 7 MB, one per connection, each read to its
    // head and no further: fewer than the client's 25-slot share would
    // allow at once were slots held, and a 32nd of --max-connections.
    let mut held = Vec::new();
    for i in 0..32 {
        let target = format!("/large/7000000?n={i}");
        held.push(read_head_then_stop(proxy.addr, &proxy.request("GET", &target, b"")).await);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let loaded = rss_kib(pid);
    println!("RSS KiB: warmed up {idle}; 32 slow readers of 7 MB answers {loaded}");
    // The cache's 64 MiB plus a generous fixed allowance (32 MiB).
    let bound = idle + 64 * 1024 + 32 * 1024;
    assert!(
        loaded < bound,
        "{loaded} KiB held for 32 slow readers (bound {bound} KiB)"
    );
    drop(held);
}

/// Item 10 stopped a leader that reads slowly from holding back identical
/// requests, and item 4 stopped a client beyond its share from taking
/// others' slots. Together they leave a gap: a request becomes the leader
/// of its flight before it waits for its client's share, so a client that
/// holds its whole share (one download it never reads) and then asks for a
/// resource others want makes every other client's identical `GET` wait on
/// a flight that cannot start: up to `--upstream-timeout`, until the leader
/// gets 503 `UPSTREAM_BUSY` and the waiters finally ask GitHub themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_waiting_for_its_own_clients_share_does_not_hold_back_other_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.toml");
    let other = crate::support::Signer::new();
    std::fs::write(
        &keys,
        format!(
            "[[client]]\nname = \"other\"\nkey = \"{}\"\n",
            signet_core::public_key_hex(&other.key())
        ),
    )
    .expect("write keys file");
    // A share of one slot each; a wait for a slot lasts up to 20 s.
    let env = Env::start_with(|c| {
        c.keys_file = Some(keys);
        c.upstream_concurrency = 4;
        c.upstream_concurrency_per_client = Some(1);
        c.upstream_timeout = Duration::from_secs(20);
    })
    .await;
    // The hog's one slot: a download it never reads past the head.
    let _download =
        read_head_then_stop(env.proxy.addr, &signed_get(&env, "/stream/200000000", &[])).await;
    // The hog asks for what others want: it leads the flight, and waits
    // for a slot of its own.
    let target = "/etag/60/0";
    let addr = env.proxy.addr;
    let hog = signed_get(&env, target, &[]);
    let _leader = tokio::spawn(async move { crate::support::send(addr, &hog).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Another client, well within its share, asks for the same resource.
    let request = Request::get(target).proof(other.sign("GET", target, b""));
    let started = std::time::Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        crate::support::send(env.proxy.addr, &request),
    )
    .await;
    let waited = started.elapsed();
    let reply = reply.unwrap_or_else(|_| {
        panic!("the other client was held back {waited:?} by the hog's flight, waiting for the hog's share")
    });
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_readers_read_ahead_keeps_its_clients_share_until_it_is_taken() {
    // A share of one slot; a wait for it lasts 2 s.
    let env = Env::start_with(|c| {
        c.cache_size = 128 * 1024 * 1024;
        c.upstream_concurrency = 4;
        c.upstream_concurrency_per_client = Some(1);
        c.upstream_timeout = Duration::from_secs(2);
    })
    .await;
    // GitHub's 7 MB body is read ahead at once; the client takes little of
    // it (more than the sockets' buffers hold).
    let _stopped =
        read_head_then_stop(env.proxy.addr, &signed_get(&env, "/large/7000000", &[])).await;
    let next = get(&env, "/etag/60/0").await;
    assert_eq!(
        (next.status, next.text().contains("UPSTREAM_BUSY")),
        (503, true),
        "what was read ahead for the client still holds its share: {}",
        next.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_ahead_stops_at_its_budget_and_releases_the_waiters() {
    // 64 MiB of cache: entries up to 8 MiB, 16 MiB of read-ahead budget,
    // which two slow readers of 7 MB answers fill (8 MiB reserved each, more
    // than the sockets' buffers take off them).
    let env = Env::start_with(|c| c.cache_size = 64 * 1024 * 1024).await;
    let mut held = Vec::new();
    for n in 0..2 {
        let target = format!("/large/7000000?n={n}");
        held.push(read_head_then_stop(env.proxy.addr, &signed_get(&env, &target, &[])).await);
        // Read ahead and stored, and still the slow reader's to take.
        let stored = crate::support::eventually(async || {
            cache(&get(&env, &target).await).as_deref() == Some("HIT")
        })
        .await;
        assert!(stored, "{target} was never stored");
    }
    // A third is not read ahead: its identical request is not held back
    // behind the slow reader, and asks GitHub itself.
    let target = "/large/7000000?n=2";
    held.push(read_head_then_stop(env.proxy.addr, &signed_get(&env, target, &[])).await);
    let other = get(&env, target).await;
    assert_eq!(
        (other.status, other.body.len(), cache(&other).as_deref()),
        (200, 7_000_000, Some("MISS"))
    );
    assert_eq!(conditionals(&env, target).len(), 2);
}
