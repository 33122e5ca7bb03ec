//! The proxy end to end: the real server on `127.0.0.1:0` in front of the
//! recording GitHub API stand-in, driven over real TCP. Each test states one
//! thing a user depends on (spec: `docs/PROTOCOL.md`, Signet-Proof v1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cache;
mod clients;
mod credentials;
mod faults;
mod fuzz_corpus;
mod invariant;
mod replicas;
mod security;
mod serving;
mod side;
mod support;

use std::io::Read as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::Signer as _;
use serde::Deserialize;
use serde_json::Value;
use signet_core::{BindingMessage, ErrorCode, SigningKey, TOKEN_STORE_MESSAGE};
use signet_proxy::standin::StandIn;
use signet_proxy::Clock;
use support::{
    assert_no_token, assert_refusal_headers, assert_refused, assert_refused_with, closed_port,
    config, free_port, random_bytes, send, send_counting, Claims, Env, Reply, Request,
    RunningProxy, Signer, NOW, TOKEN,
};

// ===========================================================================
// Forwarding (spec §7)
// ===========================================================================

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

// ===========================================================================
// Refusals (spec §5, §6): exact status, body and challenge; nothing forwarded
// ===========================================================================

#[tokio::test]
async fn a_request_without_a_proof_is_refused_as_missing_proof() {
    let env = Env::start().await;
    let reply = env.send(&Request::get("/user")).await;
    assert_refused(&reply, ErrorCode::MissingProof);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_refused_head_has_the_same_status_and_headers_as_a_get_and_no_body() {
    let env = Env::start().await;
    let cases = [
        ("/user", None, ErrorCode::MissingProof),
        ("/user", Some("garbage"), ErrorCode::InvalidProof),
        (
            "http://evil.example/user",
            None,
            ErrorCode::InvalidRequestTarget,
        ),
    ];
    for (target, proof, code) in cases {
        let request = |method: &str| match proof {
            Some(proof) => Request::new(method, target).proof(proof),
            None => Request::new(method, target),
        };
        let get = env.send(&request("GET")).await;
        assert_refused(&get, code);
        let head = env.send(&request("HEAD")).await;
        assert_eq!(head.status, get.status, "{code}");
        assert_refusal_headers(&head, code);
        assert_eq!(head.all("www-authenticate"), get.all("www-authenticate"));
        let after_head = head.raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(
            head.raw.len(),
            after_head,
            "{code}: a HEAD refusal has no body"
        );
    }
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn an_empty_proof_header_is_invalid() {
    let env = Env::start().await;
    let reply = env.send(&Request::get("/user").proof("")).await;
    assert_refused(&reply, ErrorCode::InvalidProof);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn two_proof_headers_are_invalid_even_when_each_is_valid() {
    let env = Env::start().await;
    let reply = env
        .send(
            &Request::get("/user")
                .proof(env.signer.sign("GET", "/user", b""))
                .proof(env.signer.sign("GET", "/user", b"")),
        )
        .await;
    assert_refused(&reply, ErrorCode::InvalidProof);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_garbage_proof_is_invalid() {
    let env = Env::start().await;
    for garbage in [
        "garbage",
        "v1",
        "Bearer abc",
        "v1;mk=;ek=;exp=;pur=;b=;ts=;n=;s=",
    ] {
        let reply = env.send(&Request::get("/user").proof(garbage)).await;
        assert_refused(&reply, ErrorCode::InvalidProof);
    }
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn the_token_store_form_is_refused_with_the_spec_sentence() {
    let env = Env::start().await;
    let reply = env
        .send(&Request::get("/user").proof("v1;m=compact;jti=jmFY8MteBOh-nBWrBdc0ww;t=1700000000"))
        .await;
    assert_refused_with(&reply, ErrorCode::InvalidProof, TOKEN_STORE_MESSAGE);
    assert_eq!(
        reply.json()["error"]["message"],
        "Signet-Proof token-store form is not supported; send a self-contained v1 proof."
    );
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_proof_from_an_untrusted_master_key_is_unknown_key() {
    let env = Env::start().await;
    let stranger = Signer::new();
    let reply = env
        .send(&Request::get("/user").proof(stranger.sign("GET", "/user", b"")))
        .await;
    assert_refused(&reply, ErrorCode::UnknownKey);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn an_expired_binding_is_refused() {
    let env = Env::start().await;
    for exp in [NOW - 1, 0] {
        let claims = Claims {
            exp,
            ..Claims::default()
        };
        let proof = env.signer.sign_with(claims, "GET", "/user", b"");
        let reply = env.send(&Request::get("/user").proof(proof)).await;
        assert_refused(&reply, ErrorCode::BindingExpired);
    }
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_binding_living_longer_than_the_maximum_is_refused() {
    let env = Env::start().await;
    // 9999999999999999999 is the largest 19-digit value; 20 digits do not parse at all.
    for exp in [NOW + 901, 9_999_999_999_999_999_999] {
        let claims = Claims {
            exp,
            ..Claims::default()
        };
        let proof = env.signer.sign_with(claims, "GET", "/user", b"");
        let reply = env.send(&Request::get("/user").proof(proof)).await;
        assert_refused(&reply, ErrorCode::BindingTtlTooLong);
    }
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_request_time_outside_the_clock_skew_is_refused() {
    let env = Env::start().await;
    for ts in [NOW - 31, NOW + 31, 0, 9_999_999_999_999_999_999] {
        let claims = Claims {
            ts,
            ..Claims::default()
        };
        let proof = env.signer.sign_with(claims, "GET", "/user", b"");
        let reply = env.send(&Request::get("/user").proof(proof)).await;
        assert_refused(&reply, ErrorCode::ClockSkew);
    }
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn expiry_lifetime_and_skew_limits_are_inclusive() {
    let env = Env::start().await;
    let edges = [
        Claims {
            exp: NOW,
            ..Claims::default()
        },
        Claims {
            exp: NOW + 900,
            ..Claims::default()
        },
        Claims {
            ts: NOW - 30,
            ..Claims::default()
        },
        Claims {
            ts: NOW + 30,
            ..Claims::default()
        },
    ];
    for claims in edges {
        let proof = env.signer.sign_with(claims, "GET", "/user", b"");
        let reply = env.send(&Request::get("/user").proof(proof)).await;
        assert_eq!(reply.status, 200, "{claims:?}: {}", reply.text());
    }
    assert_eq!(env.upstream.requests().len(), 4);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_by_its_content_length() {
    let env = Env::start_with(|c| c.max_body_size = 1024).await;
    let body = vec![b'x'; 1025];
    let proof = env.signer.sign("POST", "/echo", &body);
    let reply = env
        .send(&Request::new("POST", "/echo").proof(proof).body(body))
        .await;
    assert_refused(&reply, ErrorCode::RequestTooLarge);

    // A declared length far past the limit is refused before any body byte.
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: proxy\r\nSignet-Proof: {}\r\nContent-Length: 1000000000\r\n\r\n",
        env.signer.sign("POST", "/echo", b"")
    );
    let reply = support::send_raw(env.proxy.addr, request.as_bytes(), false).await;
    assert_refused(&reply, ErrorCode::RequestTooLarge);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_chunked_body_growing_past_the_limit_is_refused() {
    let env = Env::start_with(|c| c.max_body_size = 1024).await;
    let chunks = vec![vec![b'y'; 512]; 4];
    let proof = env.signer.sign("POST", "/echo", &chunks.concat());
    let reply = env
        .send(&Request::new("POST", "/echo").proof(proof).chunked(chunks))
        .await;
    assert_refused(&reply, ErrorCode::RequestTooLarge);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_is_forwarded() {
    let env = Env::start_with(|c| c.max_body_size = 1024).await;
    let body = vec![b'z'; 1024];
    let proof = env.signer.sign("POST", "/echo", &body);
    let reply = env
        .send(
            &Request::new("POST", "/echo")
                .proof(proof)
                .body(body.clone()),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.body, body);
}

#[tokio::test]
async fn a_request_body_that_stalls_past_the_read_timeout_is_refused() {
    let env = Env::start_with(|c| c.read_timeout = Some(Duration::from_millis(300))).await;
    let body = b"0123456789";
    // Headers and half the declared body, then nothing more.
    let mut raw = format!(
        "POST /echo HTTP/1.1\r\nHost: proxy\r\nSignet-Proof: {}\r\nContent-Length: {}\r\n\r\n",
        env.signer.sign("POST", "/echo", body),
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body[..5]);
    let reply = support::send_raw(env.proxy.addr, &raw, false).await;
    assert_refused(&reply, ErrorCode::RequestTimeout);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_bad_binding_signature_is_an_invalid_signature() {
    let env = Env::start().await;
    let mut proof = env.signer.sign_with(Claims::default(), "GET", "/user", b"");
    proof.b[0] ^= 0x01;
    let reply = env.send(&Request::get("/user").proof(proof)).await;
    assert_refused(&reply, ErrorCode::InvalidSignature);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_bad_request_signature_is_an_invalid_signature() {
    let env = Env::start().await;
    let mut proof = env.signer.sign_with(Claims::default(), "GET", "/user", b"");
    proof.s[5] ^= 0x80;
    let reply = env.send(&Request::get("/user").proof(proof)).await;
    assert_refused(&reply, ErrorCode::InvalidSignature);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_proof_does_not_cover_another_body_target_or_method() {
    let env = Env::start().await;
    let signed_body = env.signer.sign("POST", "/echo", b"signed body");
    let signed_target = env.signer.sign("GET", "/user", b"");
    let signed_method = env.signer.sign("GET", "/repos/o/r", b"");
    for request in [
        Request::new("POST", "/echo")
            .proof(signed_body)
            .body(b"other body".to_vec()),
        Request::get("/user?per_page=100").proof(&signed_target),
        Request::get("/User").proof(&signed_target),
        Request::new("DELETE", "/repos/o/r").proof(&signed_method),
    ] {
        let reply = env.send(&request).await;
        assert_refused(&reply, ErrorCode::InvalidSignature);
    }
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn an_ephemeral_key_that_is_not_a_curve_point_is_an_invalid_signature() {
    let env = Env::start().await;
    let not_a_point = (2u8..=255)
        .map(|y| {
            let mut ek = [0u8; 32];
            ek[0] = y;
            ek
        })
        .find(|ek| ed25519_dalek::VerifyingKey::from_bytes(ek).is_err())
        .expect("some small y is not on the curve");
    let mut proof = env.signer.sign_with(Claims::default(), "GET", "/user", b"");
    proof.ek = not_a_point;
    // The binding itself is valid: the master key really signed this `ek`.
    let message = BindingMessage::new(&proof.ek, proof.exp, &proof.pur);
    proof.b = env.signer.master().sign(message.as_bytes()).to_bytes();
    let reply = env.send(&Request::get("/user").proof(proof)).await;
    assert_refused(&reply, ErrorCode::InvalidSignature);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_disallowed_purpose_is_forbidden_and_an_allowed_one_forwarded() {
    let env = Env::start_with(|c| {
        c.allowed_purposes = vec![signet_core::Purpose::new("ci:deploy").unwrap()];
    })
    .await;
    let other = Claims {
        purpose: "laptop",
        ..Claims::default()
    };
    let proof = env.signer.sign_with(other, "GET", "/user", b"");
    let reply = env.send(&Request::get("/user").proof(proof)).await;
    assert_refused(&reply, ErrorCode::PurposeMismatch);
    env.assert_nothing_forwarded();

    let allowed = Claims {
        purpose: "ci:deploy",
        ..Claims::default()
    };
    let proof = env.signer.sign_with(allowed, "GET", "/user", b"");
    let reply = env.send(&Request::get("/user").proof(proof)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn a_replayed_proof_is_refused() {
    let env = Env::start().await;
    let request = Request::get("/user").proof(env.signer.sign("GET", "/user", b""));
    assert_eq!(env.send(&request).await.status, 200);
    let replay = env.send(&request).await;
    assert_refused(&replay, ErrorCode::ReplayDetected);
    assert_eq!(env.upstream.requests().len(), 1);
}

#[tokio::test]
async fn a_full_replay_store_refuses_instead_of_forgetting() {
    let upstream = StandIn::start(Some(TOKEN)).await.unwrap();
    let signer = Signer::new();
    // Capacity 1 holds one record per shard; nonces with the same first byte
    // land in the same shard.
    let proxy =
        RunningProxy::start_with_replay_capacity(&config(&upstream.url(), &signer), 1).await;
    let mut first = random_bytes::<16>();
    let mut second = random_bytes::<16>();
    first[0] = 7;
    second[0] = 7;
    let sign = |nonce| signer.sign_with_nonce(Claims::default(), "GET", "/user", b"", nonce);
    let reply = send(proxy.addr, &Request::get("/user").proof(sign(first))).await;
    assert_eq!(reply.status, 200);
    let reply = send(proxy.addr, &Request::get("/user").proof(sign(second))).await;
    assert_refused(&reply, ErrorCode::ReplayStoreUnavailable);
    assert_eq!(
        upstream.requests().len(),
        1,
        "fail closed: nothing forwarded"
    );
}

#[tokio::test]
async fn non_origin_form_targets_are_refused_and_never_forwarded() {
    let env = Env::start().await;
    for raw in [
        "GET http://evil.example/x HTTP/1.1\r\nHost: evil.example\r\n\r\n".to_owned(),
        format!(
            "GET http://{}/user HTTP/1.1\r\nHost: {}\r\n\r\n",
            env.upstream.addr(),
            env.upstream.addr()
        ),
        "OPTIONS * HTTP/1.1\r\nHost: proxy\r\n\r\n".to_owned(),
        "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n".to_owned(),
    ] {
        let reply = support::send_raw(env.proxy.addr, raw.as_bytes(), false).await;
        assert_refused(&reply, ErrorCode::InvalidRequestTarget);
    }
    // Even with a proof signed over the absolute URL.
    let absolute = format!("http://{}/user", env.upstream.addr());
    let reply = env
        .send(&Request::get(&absolute).proof(env.signer.sign("GET", &absolute, b"")))
        .await;
    assert_refused(&reply, ErrorCode::InvalidRequestTarget);
    env.assert_nothing_forwarded();
}

// ---------------------------------------------------------------------------
// The order of the checks (spec §5: cheap before expensive, policy last)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_untrusted_key_is_reported_before_an_expired_binding() {
    let env = Env::start().await;
    let stranger = Signer::new();
    let expired = Claims {
        exp: NOW - 100,
        ..Claims::default()
    };
    let proof = stranger.sign_with(expired, "GET", "/user", b"");
    let reply = env.send(&Request::get("/user").proof(proof)).await;
    assert_refused(&reply, ErrorCode::UnknownKey);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn an_expired_binding_is_reported_before_a_bad_signature() {
    let env = Env::start().await;
    let expired = Claims {
        exp: NOW - 1,
        ..Claims::default()
    };
    let mut proof = env.signer.sign_with(expired, "GET", "/user", b"");
    proof.b[1] ^= 0x01;
    proof.s[1] ^= 0x01;
    let reply = env.send(&Request::get("/user").proof(proof)).await;
    assert_refused(&reply, ErrorCode::BindingExpired);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_too_large_body_is_reported_before_a_bad_signature() {
    let env = Env::start_with(|c| c.max_body_size = 16).await;
    let body = vec![b'x'; 32];
    let mut proof = env
        .signer
        .sign_with(Claims::default(), "POST", "/echo", &body);
    proof.s[0] ^= 0x01;
    let reply = env
        .send(&Request::new("POST", "/echo").proof(proof).body(body))
        .await;
    assert_refused(&reply, ErrorCode::RequestTooLarge);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_bad_signature_is_reported_before_a_disallowed_purpose() {
    let env = Env::start_with(|c| {
        c.allowed_purposes = vec![signet_core::Purpose::new("ci:deploy").unwrap()];
    })
    .await;
    let other = Claims {
        purpose: "laptop",
        ..Claims::default()
    };
    let mut proof = env.signer.sign_with(other, "GET", "/user", b"");
    proof.s[0] ^= 0x01;
    let reply = env.send(&Request::get("/user").proof(proof)).await;
    assert_refused(&reply, ErrorCode::InvalidSignature);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn an_absolute_form_target_is_reported_before_a_missing_proof() {
    let env = Env::start().await;
    let raw = "GET http://evil.example/user HTTP/1.1\r\nHost: evil.example\r\n\r\n";
    let reply = support::send_raw(env.proxy.addr, raw.as_bytes(), false).await;
    assert_refused(&reply, ErrorCode::InvalidRequestTarget);
    env.assert_nothing_forwarded();
}

// ===========================================================================
// The spec's test vectors, over HTTP
// ===========================================================================

const POSITIVE_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../signet-core/tests/vectors/positive.json"
));
const PARSE_NEGATIVE_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../signet-core/tests/vectors/parse_negative.json"
));

#[derive(Debug, Deserialize)]
struct PositiveFile {
    keys: VectorKeys,
    cases: Vec<PositiveCase>,
}

#[derive(Debug, Deserialize)]
struct VectorKeys {
    master_seed_hex: String,
}

#[derive(Debug, Deserialize)]
struct PositiveCase {
    id: String,
    method: String,
    target: String,
    body_hex: String,
    header: String,
    verify_at: u64,
}

#[derive(Debug, Deserialize)]
struct NegativeFile {
    base_case: String,
    cases: Vec<NegativeCase>,
}

#[derive(Debug, Deserialize)]
struct NegativeCase {
    id: String,
    header: String,
    status: u16,
    code: String,
    wire: bool,
    message: Option<String>,
}

/// A proxy trusting the vectors' master key, its clock, and its upstream.
async fn vector_env() -> (StandIn, RunningProxy, Clock) {
    let keys: PositiveFile = serde_json::from_str(POSITIVE_JSON).unwrap();
    let seed: [u8; 32] = hex::decode(&keys.keys.master_seed_hex)
        .unwrap()
        .try_into()
        .unwrap();
    let signer = Signer::with_master(SigningKey::from_bytes(&seed));
    let upstream = StandIn::start(Some(TOKEN)).await.unwrap();
    let mut config = config(&upstream.url(), &signer);
    let clock = Clock::fixed(0);
    config.clock = clock.clone();
    let proxy = RunningProxy::start(&config).await;
    (upstream, proxy, clock)
}

/// Whether a vector's path has a `.` or `..` segment (`%2e` in any case):
/// spec amendment 1 has the proxy refuse it, though its signature is valid.
fn has_dot_segment(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or_default();
    path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

#[tokio::test]
async fn every_positive_vector_is_forwarded_exactly_over_http() {
    let file: PositiveFile = serde_json::from_str(POSITIVE_JSON).unwrap();
    let (upstream, proxy, clock) = vector_env().await;
    assert!(
        file.cases.iter().any(|c| c.id == "path_not_normalised"),
        "the vectors include the non-normalised path"
    );
    let mut forwarded_count = 0;
    for case in &file.cases {
        clock.set(case.verify_at);
        let body = hex::decode(&case.body_hex).unwrap();
        let mut request = Request::new(&case.method, &case.target).proof(&case.header);
        if !body.is_empty() {
            request = request.body(body.clone());
        }
        let reply = send(proxy.addr, &request).await;
        if has_dot_segment(&case.target) {
            // Signed correctly (signet-core verifies it byte for byte), but
            // amendment 1 refuses dot-segments before any proof work.
            assert_refused(&reply, ErrorCode::InvalidRequestTarget);
            assert_eq!(upstream.requests().len(), forwarded_count, "{}", case.id);
            continue;
        }
        assert_eq!(
            reply.header("x-ratelimit-remaining").as_deref(),
            Some("4999"),
            "{}: answered by the upstream, not refused: {} {}",
            case.id,
            reply.status,
            reply.text()
        );
        let seen = upstream.requests();
        forwarded_count += 1;
        assert_eq!(seen.len(), forwarded_count, "{}", case.id);
        let forwarded = &seen[forwarded_count - 1];
        assert_eq!(forwarded.method, case.method, "{}", case.id);
        assert_eq!(
            forwarded.target, case.target,
            "{}: target byte for byte",
            case.id
        );
        assert_eq!(forwarded.body.as_ref(), body.as_slice(), "{}", case.id);
        assert!(forwarded.headers.get("signet-proof").is_none());
    }
    assert!(
        forwarded_count + 1 >= file.cases.len(),
        "only dot-segment cases are refused"
    );
}

#[tokio::test]
async fn every_wire_negative_vector_is_refused_as_invalid_proof_over_http() {
    let positive: PositiveFile = serde_json::from_str(POSITIVE_JSON).unwrap();
    let negative: NegativeFile = serde_json::from_str(PARSE_NEGATIVE_JSON).unwrap();
    let base = positive
        .cases
        .iter()
        .find(|c| c.id == negative.base_case)
        .expect("the base case is a positive vector");
    assert!(base.body_hex.is_empty(), "the base case has no body");
    let (upstream, proxy, clock) = vector_env().await;
    clock.set(base.verify_at);

    let wire: Vec<&NegativeCase> = negative.cases.iter().filter(|c| c.wire).collect();
    assert!(wire.len() > 100, "only {} wire cases", wire.len());
    for case in wire {
        assert_eq!((case.status, case.code.as_str()), (400, "INVALID_PROOF"));
        // The header value goes out as its raw UTF-8 bytes.
        let request =
            Request::new(&base.method, &base.target).header("Signet-Proof", case.header.as_bytes());
        let reply = send(proxy.addr, &request).await;
        let message = case
            .message
            .as_deref()
            .unwrap_or(ErrorCode::InvalidProof.message());
        assert_eq!(reply.status, 400, "{}: {}", case.id, reply.text());
        assert_refused_with(&reply, ErrorCode::InvalidProof, message);
    }
    assert!(
        upstream.requests().is_empty(),
        "no negative vector is forwarded"
    );
}

// ===========================================================================
// Replay under concurrency, streaming, upstream failures
// ===========================================================================

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

// ===========================================================================
// HTTPS upstream
// ===========================================================================

struct TlsUpstream {
    upstream: StandIn,
    ca_file: tempfile::NamedTempFile,
}

/// An HTTPS stand-in whose certificate (for `localhost` and `127.0.0.1`) is
/// signed by a fresh private CA, written as PEM to a temporary file.
async fn tls_upstream() -> TlsUpstream {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "signet-proxy test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .unwrap();
    let upstream = StandIn::start_tls(Some(TOKEN), Arc::new(tls))
        .await
        .unwrap();

    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), ca.pem()).unwrap();
    TlsUpstream { upstream, ca_file }
}

#[tokio::test]
async fn an_https_upstream_signed_by_the_configured_ca_is_forwarded_to() {
    let tls = tls_upstream().await;
    let signer = Signer::new();
    let url = format!("https://localhost:{}", tls.upstream.addr().port());
    let mut config = config(&url, &signer);
    config.upstream_ca_file = Some(tls.ca_file.path().to_owned());
    let proxy = RunningProxy::start(&config).await;

    let reply = send(
        proxy.addr,
        &Request::get("/repos/o/r").proof(signer.sign("GET", "/repos/o/r", b"")),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["full_name"], "o/r");
    let seen = tls.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers.get("authorization").map(|v| v.as_bytes()),
        Some(format!("Bearer {TOKEN}").as_bytes())
    );
    assert_eq!(
        seen[0].headers.get("host").map(|v| v.as_bytes()),
        Some(format!("localhost:{}", tls.upstream.addr().port()).as_bytes()),
        "Host is the upstream's authority, with its non-default port"
    );
}

#[tokio::test]
async fn an_https_upstream_with_an_untrusted_certificate_is_bad_gateway() {
    let tls = tls_upstream().await;
    let signer = Signer::new();
    let url = format!("https://localhost:{}", tls.upstream.addr().port());
    let proxy = RunningProxy::start(&config(&url, &signer)).await;
    let reply = send(
        proxy.addr,
        &Request::get("/repos/o/r").proof(signer.sign("GET", "/repos/o/r", b"")),
    )
    .await;
    assert_refused(&reply, ErrorCode::BadGateway);
    assert!(
        tls.upstream.requests().is_empty(),
        "no request crossed the failed handshake"
    );
}

// ===========================================================================
// Health
// ===========================================================================

fn assert_healthy(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    let body = reply.json();
    assert_eq!(body["status"], "ok");
    let timestamp = body["timestamp"].as_str().expect("a timestamp string");
    assert!(
        humantime::parse_rfc3339(timestamp).is_ok(),
        "RFC 3339: {timestamp}"
    );
    assert_eq!(body.as_object().map(serde_json::Map::len), Some(2));
}

#[tokio::test]
async fn the_health_check_needs_no_proof() {
    let env = Env::start().await;
    assert_healthy(&env.send(&Request::get("/healthz")).await);
    let head = env.send(&Request::new("HEAD", "/healthz")).await;
    assert_eq!(head.status, 200);
    // Only GET and HEAD are health checks; anything else needs a proof.
    let post = env.send(&Request::new("POST", "/healthz")).await;
    assert_refused(&post, ErrorCode::MissingProof);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_custom_health_path_replaces_the_default() {
    let env = Env::start_with(|c| c.health_path = "/-/ready".to_owned()).await;
    assert_healthy(&env.send(&Request::get("/-/ready")).await);
    let old = env.send(&Request::get("/healthz")).await;
    assert_refused(&old, ErrorCode::MissingProof);
    env.assert_nothing_forwarded();
}

// ===========================================================================
// The real binary
// ===========================================================================

const BINARY: &str = env!("CARGO_BIN_EXE_signet-proxy");

/// The binary with an empty environment but `PATH`.
fn binary(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BINARY);
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

struct Exited {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Waits (bounded) for `child` to exit and collects its output.
fn wait_exit(mut child: Child, limit: Duration) -> Exited {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("signet-proxy did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Exited {
        success: status.success(),
        stdout,
        stderr,
    }
}

/// Polls `/healthz` until the started binary answers (bounded).
async fn wait_until_healthy(addr: SocketAddr, child: &mut Child) -> Reply {
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("signet-proxy exited early: {status}");
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return send(addr, &Request::get("/healthz")).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("signet-proxy never listened on {addr}");
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM");
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const MASTER_HEX: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// Runs the binary, which must refuse to start; returns what it printed.
fn startup_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let child = binary(args, env).spawn().unwrap();
    let exited = wait_exit(child, Duration::from_secs(10));
    assert!(!exited.success, "{args:?} {env:?} must not start");
    exited.stderr.trim_end().to_owned()
}

#[test]
fn the_binary_explains_startup_errors_and_exits_non_zero() {
    assert_eq!(
        startup_error(&["--github-token", "t"], &[]),
        "signet-proxy: master public key required: set --master-key or SIGNET_MASTER_PUBLIC_KEY, or --keys-file"
    );
    assert_eq!(
        startup_error(&["--github-token", "t", "--master-key", "a1b2c3"], &[]),
        "signet-proxy: invalid master key length: got 3 bytes, expected 32"
    );
    assert_eq!(
        startup_error(
            &[],
            &[
                ("GITHUB_TOKEN", "t"),
                ("SIGNET_MASTER_PUBLIC_KEY", "a1b2c3")
            ]
        ),
        "signet-proxy: invalid master key length: got 3 bytes, expected 32"
    );
    assert_eq!(
        startup_error(&["--master-key", MASTER_HEX], &[]),
        "signet-proxy: github token required: set --github-token or GITHUB_TOKEN"
    );
    assert_eq!(
        startup_error(
            &[
                "--master-key",
                MASTER_HEX,
                "--github-token",
                "t",
                "--github-api",
                "ftp://x"
            ],
            &[]
        ),
        r#"signet-proxy: invalid --github-api URL "ftp://x": scheme must be http or https"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_beats_its_environment_variable() {
    let port = free_port();
    let other_port = free_port();
    let mut child = binary(
        &[
            "--master-key",
            MASTER_HEX,
            "--listen",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ],
        &[
            ("SIGNET_MASTER_PUBLIC_KEY", "not-a-key"),
            ("SIGNET_PROXY_PORT", &other_port.to_string()),
            ("GITHUB_TOKEN", TOKEN),
        ],
    )
    .spawn()
    .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let reply = wait_until_healthy(addr, &mut child).await;
    assert_healthy(&reply);
    terminate(&child);
    let exited = tokio::task::spawn_blocking(move || wait_exit(child, Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(exited.success, "stderr: {}", exited.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_forwards_logs_one_json_line_per_request_and_stops_on_sigterm() {
    let upstream = StandIn::start(Some(TOKEN)).await.unwrap();
    let signer = Signer::new();
    let master_hex = signet_core::public_key_hex(&signer.key());
    let port = free_port();
    let mut child = binary(
        &[
            "--listen",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--github-api",
            &upstream.url(),
            "--master-key",
            &master_hex,
        ],
        &[("GITHUB_TOKEN", TOKEN)],
    )
    .spawn()
    .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert_healthy(&wait_until_healthy(addr, &mut child).await);

    let claims = Claims {
        exp: now() + 300,
        ts: now(),
        purpose: "test",
    };
    let proof = signer.sign_with(claims, "GET", "/user", b"");
    let forwarded = send(addr, &Request::get("/user").proof(proof)).await;
    assert_eq!(forwarded.status, 200, "{}", forwarded.text());
    let refused = send(addr, &Request::get("/repos/o/r?token=hidden")).await;
    assert_refused(&refused, ErrorCode::MissingProof);
    // A forger who names a real client's key is not attributed to it.
    let mut forged = signer.sign_with(claims, "GET", "/user", b"");
    forged.s[0] ^= 1;
    let refused = send(addr, &Request::get("/user").proof(forged)).await;
    assert_refused(&refused, ErrorCode::InvalidSignature);
    // A download the client walks away from is logged as cut short.
    let target = "/stream/50000000";
    let proof = signer.sign_with(claims, "GET", target, b"");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let request = Request::get(target).proof(proof).to_bytes("p");
        stream.write_all(&request).await.unwrap();
        let mut first = vec![0u8; 64 * 1024];
        let n = stream.read(&mut first).await.unwrap();
        assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    }
    drop(stream);
    tokio::time::sleep(Duration::from_millis(500)).await;

    terminate(&child);
    let exited = tokio::task::spawn_blocking(move || wait_exit(child, Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(
        exited.success,
        "exit 0 on SIGTERM; stderr: {}",
        exited.stderr
    );

    assert_no_token(exited.stdout.as_bytes());
    assert_no_token(exited.stderr.as_bytes());
    let records: Vec<Value> = exited
        .stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect();
    let per_request: Vec<&Value> = records.iter().filter(|r| r.get("path").is_some()).collect();
    // Health checks are logged at debug level only: probes are frequent.
    assert_eq!(per_request.len(), 4, "one record per request: {records:#?}");
    for record in &per_request {
        for field in [
            "method",
            "path",
            "status",
            "latency_ms",
            "duration_ms",
            "bytes",
            "completed",
        ] {
            assert!(record.get(field).is_some(), "{field} missing in {record}");
        }
        assert_eq!(record["method"], "GET");
    }
    let key_id = signet_core::key_id(&signer.key().to_bytes());
    assert_eq!(per_request[0]["path"], "/user");
    assert_eq!(per_request[0]["status"], 200);
    assert_eq!(per_request[0]["key_id"], key_id.as_str());
    assert_eq!(per_request[0]["client"], format!("key:{key_id}").as_str());
    assert_eq!(per_request[0]["github_request_id"], "C0DE:5TAND:1N");
    assert!(per_request[0]["peer"]
        .as_str()
        .is_some_and(|peer| peer.starts_with("127.0.0.1:")));
    assert_eq!(per_request[0]["message"], "request forwarded");
    assert_eq!(per_request[0]["completed"], true);
    assert_eq!(
        per_request[0]["bytes"].as_u64(),
        Some(forwarded.body.len() as u64)
    );
    // Attributed only after verification; before, the key is merely claimed.
    assert!(per_request[1].get("key_id").is_none());
    assert!(per_request[2].get("key_id").is_none());
    assert!(
        per_request[2].get("client").is_none(),
        "a forger is nobody's client"
    );
    assert_eq!(per_request[2]["claimed_key_id"], key_id.as_str());
    assert_eq!(per_request[2]["code"], "INVALID_SIGNATURE");
    assert_eq!(per_request[3]["message"], "response cut short");
    assert_eq!(per_request[3]["completed"], false);
    assert_eq!(per_request[3]["key_id"], key_id.as_str());
    assert!(per_request[3]["bytes"].as_u64().unwrap_or(u64::MAX) < 50_000_000);
    assert_eq!(
        per_request[1]["path"], "/repos/o/r",
        "no query string in logs"
    );
    assert_eq!(per_request[1]["status"], 401);
    assert_eq!(per_request[1]["code"], "MISSING_PROOF");
    assert_eq!(per_request[1]["message"], "authentication failed");
    assert!(!exited.stdout.contains("hidden"));
}

#[test]
fn the_demo_command_succeeds() {
    let child = binary(&["demo"], &[]).spawn().unwrap();
    let exited = wait_exit(child, Duration::from_secs(30));
    assert!(
        exited.success,
        "stdout: {}\nstderr: {}",
        exited.stdout, exited.stderr
    );
    assert!(exited.stdout.contains("All steps behaved as expected."));
}

// ===========================================================================
// Connection timeouts and broken bodies
// ===========================================================================

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
