//! Refusals (spec §5, §6): exact status, body and challenge; nothing
//! forwarded. Then the order of the checks (spec §5: cheap before expensive,
//! policy last).

use std::time::Duration;

use ed25519_dalek::Signer as _;
use signet_core::{BindingMessage, ErrorCode, TOKEN_STORE_MESSAGE};
use signet_standin::StandIn;

use crate::support::{
    self, assert_refusal_headers, assert_refused, assert_refused_with, config, random_bytes, send,
    Claims, Env, Request, RunningProxy, Signer, NOW, TOKEN,
};

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
