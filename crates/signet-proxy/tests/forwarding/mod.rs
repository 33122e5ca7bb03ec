//! Forwarding (spec §7): what reaches the upstream, byte for byte, and what
//! comes back — bodies, keep-alive, hop-by-hop headers, redirects,
//! pagination links, a GitHub Enterprise base path.

use std::net::SocketAddr;
use std::time::Duration;

use signet_core::ErrorCode;
use signet_standin::StandIn;

use crate::support::{
    self, assert_refused, config, send, Env, Request, RunningProxy, Signer, TOKEN,
};

#[tokio::test]
async fn a_signed_get_reaches_the_upstream_with_only_the_shared_token() {
    let env = Env::start().await;
    let proof = env.signer.sign("GET", "/user", b"");
    let reply = env
        .send(
            &Request::get("/user")
                .proof(&proof)
                .header("Authorization", "Bearer client-supplied-token")
                .header("Proxy-Authorization", "Basic dXNlcjpwdw==")
                .header("X-HTTP-Method-Override", "DELETE")
                .header("X-HTTP-Method", "DELETE")
                .header("X-Method-Override", "DELETE")
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
                .header("Connection", "X-Secret-Hop")
                .header("X-Secret-Hop", "1")
                .header("Keep-Alive", "timeout=5")
                .header("Proxy-Connection", "keep-alive")
                .header("TE", "trailers"),
        )
        .await;

    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["login"], "signet-demo");

    let seen = env.upstream.requests();
    assert_eq!(seen.len(), 1);
    let forwarded = &seen[0];
    assert_eq!(forwarded.method, "GET");
    assert_eq!(forwarded.target, "/user");
    let headers = &forwarded.headers;
    let all = |name: &str| -> Vec<&[u8]> {
        headers
            .get_all(name)
            .iter()
            .map(http::HeaderValue::as_bytes)
            .collect()
    };
    assert_eq!(all("authorization"), [format!("Bearer {TOKEN}").as_bytes()]);
    assert_eq!(
        all("host"),
        [env.upstream.addr().to_string().as_bytes()],
        "Host is the upstream's authority"
    );
    for stripped in [
        "signet-proof",
        "proxy-authorization",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-secret-hop",
        "keep-alive",
        "proxy-connection",
        "te",
    ] {
        assert!(all(stripped).is_empty(), "{stripped} must not be forwarded");
    }
    assert_eq!(all("accept"), [b"application/vnd.github+json".as_slice()]);
    assert_eq!(all("x-github-api-version"), [b"2022-11-28".as_slice()]);
}

#[tokio::test]
async fn the_request_target_is_forwarded_byte_for_byte_including_the_query() {
    let env = Env::start().await;
    for target in [
        "/search/issues?q=a%20b&x=",
        "/search/issues?",
        "/repos/o/r/contents/A%2fb/c..d/%2E%2E%2E?ref=x%2fy/../z",
    ] {
        let reply = env
            .send(&Request::get(target).proof(env.signer.sign("GET", target, b"")))
            .await;
        assert_eq!(reply.status, 404, "{target}: {}", reply.text());
        let seen = env.upstream.requests();
        assert_eq!(seen.last().map(|r| r.target.as_str()), Some(target));
    }
    assert_eq!(env.upstream.requests().len(), 3);
}

#[tokio::test]
async fn post_and_put_bodies_are_forwarded_byte_for_byte() {
    let env = Env::start().await;
    let binary: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    for method in ["POST", "PUT"] {
        let proof = env.signer.sign(method, "/echo", &binary);
        let reply = env
            .send(
                &Request::new(method, "/echo")
                    .proof(proof)
                    .header("Content-Type", "application/octet-stream")
                    .body(binary.clone()),
            )
            .await;
        assert_eq!(reply.status, 200, "{method}: {}", reply.text());
        assert_eq!(reply.body, binary, "{method}: the echo comes back intact");
        let seen = env.upstream.requests();
        let forwarded = seen.last().unwrap();
        assert_eq!(forwarded.method, method);
        assert_eq!(forwarded.body.as_ref(), binary.as_slice());
    }
}

#[tokio::test]
async fn a_chunked_request_body_is_verified_and_forwarded_without_its_transfer_coding() {
    let env = Env::start().await;
    let chunks = vec![b"hello, ".to_vec(), b"chunked ".to_vec(), b"world".to_vec()];
    let body = chunks.concat();
    let proof = env.signer.sign("POST", "/echo", &body);
    let reply = env
        .send(&Request::new("POST", "/echo").proof(proof).chunked(chunks))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.body, body);
    let seen = env.upstream.requests();
    assert_eq!(seen[0].body.as_ref(), body.as_slice());
    assert!(seen[0].headers.get("transfer-encoding").is_none());
    assert_eq!(
        seen[0].headers.get("content-length").map(|v| v.as_bytes()),
        Some(body.len().to_string().as_bytes())
    );
}

#[tokio::test]
async fn a_get_body_is_signed_and_forwarded_like_any_other() {
    let env = Env::start().await;
    let body = b"a GET may carry a body".to_vec();
    let proof = env.signer.sign("GET", "/echo", &body);
    let reply = env
        .send(&Request::get("/echo").proof(proof).body(body.clone()))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(env.upstream.requests()[0].body.as_ref(), body.as_slice());

    // The same GET sent without its body no longer matches the signature.
    let proof = env.signer.sign("GET", "/echo", &body);
    let reply = env.send(&Request::get("/echo").proof(proof)).await;
    assert_refused(&reply, ErrorCode::InvalidSignature);
    assert_eq!(env.upstream.requests().len(), 1);
}

#[tokio::test]
async fn several_requests_share_one_keep_alive_connection() {
    use tokio::io::AsyncWriteExt as _;
    let env = Env::start().await;
    let mut stream = tokio::net::TcpStream::connect(env.proxy.addr)
        .await
        .unwrap();
    for target in ["/user", "/repos/o/r", "/user"] {
        let request = Request::get(target).proof(env.signer.sign("GET", target, b""));
        stream.write_all(&request.to_bytes("proxy")).await.unwrap();
        let reply = tokio::time::timeout(
            Duration::from_secs(20),
            support::read_reply(&mut stream, false),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 200, "{target}: {}", reply.text());
    }
    assert_eq!(env.upstream.requests().len(), 3);
}

#[tokio::test]
async fn the_upstream_status_headers_and_body_are_passed_back() {
    let env = Env::start().await;
    for (target, status) in [
        ("/status/418", 418),
        ("/no/such/route", 404),
        ("/repos/o/r", 200),
    ] {
        let reply = env
            .send(&Request::get(target).proof(env.signer.sign("GET", target, b"")))
            .await;
        assert_eq!(reply.status, status, "{target}");
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(
            reply.header("x-ratelimit-remaining").as_deref(),
            Some("4999")
        );
        if status == 200 {
            assert_eq!(reply.json()["full_name"], "o/r");
        }
    }
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_dropped_and_the_rest_kept() {
    let env = Env::start().await;
    let reply = env
        .send(&Request::get("/hop-by-hop").proof(env.signer.sign("GET", "/hop-by-hop", b"")))
        .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.all("x-upstream-internal").is_empty(),
        "named by Connection"
    );
    assert!(reply.all("keep-alive").is_empty());
    assert!(
        reply.all("connection").iter().all(|v| v == "close"),
        "the upstream's Connection header is not passed on: {:?}",
        reply.all("connection")
    );
    assert_eq!(
        reply.header("x-ratelimit-remaining").as_deref(),
        Some("4999")
    );
}

#[tokio::test]
async fn redirects_are_passed_back_not_followed() {
    let env = Env::start().await;
    let reply = env
        .send(&Request::get("/redirect").proof(env.signer.sign("GET", "/redirect", b"")))
        .await;
    assert_eq!(reply.status, 302);
    // Passed back, pointing at the proxy (the Host the client used).
    assert_eq!(
        reply.header("location"),
        Some(format!("http://{}/user", env.proxy.addr))
    );
    let seen = env.upstream.requests();
    assert_eq!(seen.len(), 1, "the proxy never follows a redirect");
    assert_eq!(seen[0].target, "/redirect");
}

#[tokio::test]
async fn with_a_public_url_pagination_and_redirects_stay_on_the_proxy() {
    let env = Env::start_with(|c| c.public_url = Some("https://signet.internal".to_owned())).await;
    let target = "/repos/o/r/issues";
    let reply = env
        .send(&Request::get(target).proof(env.signer.sign("GET", target, b"")))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("link").as_deref(),
        Some(
            r#"<https://signet.internal/repos/o/r/issues?page=2>; rel="next", <https://docs.github.com/rest>; rel="help""#
        )
    );
    let reply = env
        .send(&Request::get("/redirect").proof(env.signer.sign("GET", "/redirect", b"")))
        .await;
    assert_eq!(reply.status, 302);
    assert_eq!(
        reply.header("location").as_deref(),
        Some("https://signet.internal/user")
    );
}

#[tokio::test]
async fn without_a_public_url_links_point_at_the_host_the_client_used() {
    let env = Env::start().await;
    let target = "/repos/o/r/issues";
    let reply = env
        .send(
            &Request::get(target)
                .host("signet.internal:8080")
                .proof(env.signer.sign("GET", target, b"")),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let link = reply.header("link").unwrap_or_default();
    assert!(
        link.starts_with("<http://signet.internal:8080/repos/o/r/issues?page=2>"),
        "{link}"
    );
    assert!(
        link.contains("<https://docs.github.com/rest>"),
        "other hosts untouched: {link}"
    );
    // A Host that is not a plain authority rewrites nothing.
    let reply = env
        .send(
            &Request::get(target)
                .host("user@evil.example")
                .proof(env.signer.sign("GET", target, b"")),
        )
        .await;
    let link = reply.header("link").unwrap_or_default();
    assert!(
        link.starts_with(&format!("<{}/", env.upstream.url())),
        "{link}"
    );
}

/// Follows `rel="next"` from `first` through the proxy, signing each page as
/// a client would; returns the pages' bodies.
async fn follow_pages(addr: SocketAddr, signer: &Signer, first: &str, host: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut target = first.to_owned();
    for _ in 0..10 {
        let reply = send(
            addr,
            &Request::get(&target)
                .host(host)
                .proof(signer.sign("GET", &target, b"")),
        )
        .await;
        assert_eq!(reply.status, 200, "{target}: {}", reply.text());
        bodies.push(reply.text());
        let link = reply.header("link").unwrap_or_default();
        let next = link.split(", ").find_map(|part| {
            part.strip_suffix(r#">; rel="next""#)
                .and_then(|url| url.strip_prefix('<'))
        });
        let Some(next) = next else { break };
        let on_proxy = format!("http://{host}");
        target = next
            .strip_prefix(&on_proxy)
            .unwrap_or_else(|| panic!("next link left the proxy: {next}"))
            .to_owned();
    }
    bodies
}

#[tokio::test]
async fn a_client_following_rel_next_pages_through_the_proxy_to_the_last_page() {
    let env = Env::start().await;
    let pages = follow_pages(
        env.proxy.addr,
        &env.signer,
        "/paged/4",
        "signet.internal:8080",
    )
    .await;
    assert_eq!(pages, ["[1]", "[2]", "[3]", "[4]"]);
    let seen: Vec<String> = env
        .upstream
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(
        seen,
        [
            "/paged/4",
            "/paged/4?page=2",
            "/paged/4?page=3",
            "/paged/4?page=4"
        ],
        "each page was signed and forwarded once"
    );

    // GitHub Enterprise: the upstream's /api/v3 prefix is taken off the links.
    let upstream = StandIn::start(Some(TOKEN)).await.unwrap();
    let signer = Signer::new();
    let proxy = RunningProxy::start(&config(&format!("{}/api/v3", upstream.url()), &signer)).await;
    let pages = follow_pages(proxy.addr, &signer, "/paged/3", "proxy.example").await;
    assert_eq!(pages, ["[1]", "[2]", "[3]"]);
    assert!(upstream
        .requests()
        .iter()
        .all(|r| r.target.starts_with("/api/v3/paged/3")));
}

#[tokio::test]
async fn a_github_enterprise_base_path_prefixes_the_verified_target() {
    let upstream = StandIn::start(Some(TOKEN)).await.unwrap();
    let signer = Signer::new();
    let proxy = RunningProxy::start(&config(&format!("{}/api/v3/", upstream.url()), &signer)).await;
    let target = "/repos/a/b?x=1";
    let reply = send(
        proxy.addr,
        &Request::get(target).proof(signer.sign("GET", target, b"")),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["full_name"], "a/b");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/api/v3/repos/a/b?x=1");
}
