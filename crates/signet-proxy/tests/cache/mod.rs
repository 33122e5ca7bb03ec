//! The conditional-request cache: a 304 to a revalidation is answered as the
//! full 200, fresh responses are served without GitHub, identical concurrent
//! GETs are coalesced, and nothing crosses a credential or a client's own
//! conditional request.

use std::time::Duration;

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
