//! Several replicas sharing replay records through a real `redis-server`:
//! a proof is accepted once across all of them and across restarts, and a
//! Redis that is down makes the proxy fail closed, then recover by itself.

use std::time::{Duration, Instant};

use signet_core::ErrorCode;
use signet_proxy::RedisUrl;

use crate::support::{
    assert_refused, config, send, Env, RedisServer, Reply, Request, RunningProxy,
};

/// Proxies that share one Redis and one upstream.
fn with_redis(redis: &RedisServer) -> impl FnOnce(&mut signet_proxy::Config) + '_ {
    move |config| config.redis_url = Some(RedisUrl::new(redis.url()))
}

/// Two replicas sharing `redis`, one upstream and one trusted key; the first
/// comes with that upstream and key.
async fn two_replicas(redis: &RedisServer) -> (Env, RunningProxy) {
    let env = Env::start_with(with_redis(redis)).await;
    let mut second = config(&env.upstream.url(), &env.signer);
    with_redis(redis)(&mut second);
    let replica = RunningProxy::start(&second).await;
    (env, replica)
}

/// Polls `target` on the proxy until it answers `status` (bounded).
async fn wait_for_status(
    addr: std::net::SocketAddr,
    request: impl Fn() -> Request,
    status: u16,
) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = send(addr, &request()).await;
        if reply.status == status || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_proof_accepted_by_one_replica_is_refused_by_another() {
    let redis = RedisServer::start().await;
    let (env, replica) = two_replicas(&redis).await;

    let body = br#"{"title":"once"}"#;
    let request = Request::new("POST", "/echo")
        .proof(env.signer.sign("POST", "/echo", body))
        .body(body.to_vec());
    assert_eq!(env.send(&request).await.status, 200);
    assert_refused(
        &send(replica.addr, &request).await,
        ErrorCode::ReplayDetected,
    );
    assert_refused(&env.send(&request).await, ErrorCode::ReplayDetected);
    assert_eq!(env.upstream.requests().len(), 1, "forwarded exactly once");
}

#[tokio::test]
async fn a_proof_accepted_before_a_restart_is_refused_after_it() {
    let redis = RedisServer::start().await;
    let env = Env::start_with(with_redis(&redis)).await;
    let request = Request::get("/user").proof(env.signer.sign("GET", "/user", b""));
    assert_eq!(env.send(&request).await.status, 200);

    let mut restarted = config(&env.upstream.url(), &env.signer);
    with_redis(&redis)(&mut restarted);
    let Env { proxy, .. } = env;
    drop(proxy);
    let proxy = RunningProxy::start(&restarted).await;
    assert_refused(&send(proxy.addr, &request).await, ErrorCode::ReplayDetected);
}

#[tokio::test]
async fn records_outlive_the_skew_on_every_replica_clock() {
    // Amendment 1: a shared store keeps a record until ts + 2 × clock_skew,
    // so a replica whose clock is up to the skew behind still refuses it.
    let redis = RedisServer::start().await;
    let env = Env::start_with(with_redis(&redis)).await;
    let proof = env
        .signer
        .sign_with(Default::default(), "GET", "/user", b"");
    let request = Request::get("/user").proof(&proof);
    assert_eq!(env.send(&request).await.status, 200);

    let mut key = b"signet:replay:".to_vec();
    key.extend_from_slice(&proof.ek);
    key.extend_from_slice(&proof.n);
    let client = redis::Client::open(redis.url()).expect("client");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .expect("PTTL");
    // ts = now = NOW: kept until the end of second NOW + 60.
    assert!((59_000..=61_000).contains(&ttl_ms), "{ttl_ms} ms");
}

#[tokio::test]
async fn with_redis_down_requests_fail_closed_and_serving_resumes_when_it_is_back() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let env = Env::start_with(with_redis(&redis)).await;
    let signed = || Request::get("/user").proof(env.signer.sign("GET", "/user", b""));
    assert_eq!(env.send(&signed()).await.status, 200);
    assert_eq!(env.send(&Request::get("/readyz")).await.status, 200);

    redis.stop();
    let refused = env.send(&signed()).await;
    assert_refused(&refused, ErrorCode::ReplayStoreUnavailable);
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    for _ in 0..5 {
        assert_refused(
            &env.send(&signed()).await,
            ErrorCode::ReplayStoreUnavailable,
        );
    }
    assert_eq!(
        env.upstream.requests().len(),
        1,
        "nothing forwarded while down"
    );
    let not_ready = wait_for_status(env.proxy.addr, || Request::get("/readyz"), 503).await;
    assert_eq!(not_ready.status, 503, "{}", not_ready.text());
    assert_eq!(
        env.send(&Request::get("/healthz")).await.status,
        200,
        "still alive"
    );

    let _back = RedisServer::start_on(port, None).await;
    let reply = wait_for_status(env.proxy.addr, signed, 200).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let ready = wait_for_status(env.proxy.addr, || Request::get("/readyz"), 200).await;
    assert_eq!(ready.status, 200);
}

#[tokio::test]
async fn a_password_in_the_redis_url_is_used_and_a_wrong_one_fails_closed() {
    let redis = RedisServer::start_with_password("s3cret-pw").await;
    let env = Env::start_with(with_redis(&redis)).await;
    let signed = || Request::get("/user").proof(env.signer.sign("GET", "/user", b""));
    assert_eq!(env.send(&signed()).await.status, 200);

    let mut wrong = config(&env.upstream.url(), &env.signer);
    wrong.redis_url = Some(RedisUrl::new(format!(
        "redis://:wrong@127.0.0.1:{}",
        redis.port
    )));
    let proxy = RunningProxy::start(&wrong).await;
    let reply = send(proxy.addr, &signed()).await;
    assert_refused(&reply, ErrorCode::ReplayStoreUnavailable);
    assert!(!reply.text().contains("wrong"));
    assert_eq!(env.upstream.requests().len(), 1);
}

#[tokio::test]
async fn a_client_rate_limit_is_shared_by_every_replica() {
    let (_redis, _dir, bot, env, replica) = rate_limited_replicas("bot", "3/min").await;
    let signed = || Request::get("/user").proof(bot.sign("GET", "/user", b""));
    assert_eq!(env.send(&signed()).await.status, 200);
    assert_eq!(send(replica.addr, &signed()).await.status, 200);
    assert_eq!(env.send(&signed()).await.status, 200);
    let limited = send(replica.addr, &signed()).await;
    assert_refused(&limited, ErrorCode::RateLimited);
    assert_eq!(limited.header("retry-after").as_deref(), Some("20"));
    assert_refused(&env.send(&signed()).await, ErrorCode::RateLimited);
    assert_eq!(env.upstream.requests().len(), 3);
}

#[tokio::test]
async fn a_revocation_made_on_one_replica_is_in_force_on_every_replica() {
    let redis = RedisServer::start().await;
    let admin_signer = crate::support::Signer::new();
    let admin_port = crate::support::free_port();
    let admin_key = admin_signer.key();
    let env = Env::start_with(|config| {
        config.redis_url = Some(RedisUrl::new(redis.url()));
        config.admin_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], admin_port)));
        config.admin_key = Some(admin_key);
    })
    .await;
    let mut second = config(&env.upstream.url(), &env.signer);
    with_redis(&redis)(&mut second);
    let replica = RunningProxy::start(&second).await;
    let signed = || Request::get("/user").proof(env.signer.sign("GET", "/user", b""));
    assert_eq!(send(replica.addr, &signed()).await.status, 200);

    let client = format!("key:{}", signet_core::key_id(&env.signer.key().to_bytes()));
    let body = format!(r#"{{"client":"{client}"}}"#);
    let claims = crate::support::Claims {
        purpose: "admin",
        ..Default::default()
    };
    let proof = admin_signer.sign_with(claims, "POST", "/revoke", body.as_bytes());
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    let revoked = send(
        admin,
        &Request::new("POST", "/revoke")
            .proof(proof)
            .body(body.into_bytes()),
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    let refused = wait_for_status(replica.addr, signed, 401).await;
    assert_refused(&refused, ErrorCode::UnknownKey);
}

#[tokio::test]
async fn rediss_connects_with_tls_checked_against_the_configured_ca() {
    use rcgen::{CertificateParams, DnType, KeyPair};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    let (cert_file, key_file) = (dir.path().join("redis.crt"), dir.path().join("redis.key"));
    std::fs::write(&cert_file, cert.pem()).expect("write cert");
    std::fs::write(&key_file, key.serialize_pem()).expect("write key");
    let redis = RedisServer::start_tls(&cert_file, &key_file).await;
    assert!(redis.url().starts_with("rediss://"));

    let ca = cert_file.clone();
    let env = Env::start_with(|config| {
        config.redis_url = Some(RedisUrl::new(redis.url()));
        config.redis_ca_file = Some(ca);
    })
    .await;
    let request = Request::get("/user").proof(env.signer.sign("GET", "/user", b""));
    let first = env.send(&request).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_refused(&env.send(&request).await, ErrorCode::ReplayDetected);

    // Without the CA, the server's certificate is not trusted: fail closed.
    let mut untrusted = config(&env.upstream.url(), &env.signer);
    untrusted.redis_url = Some(RedisUrl::new(redis.url()));
    let proxy = RunningProxy::start(&untrusted).await;
    let request = Request::get("/user").proof(env.signer.sign("GET", "/user", b""));
    assert_refused(
        &send(proxy.addr, &request).await,
        ErrorCode::ReplayStoreUnavailable,
    );
}

#[tokio::test]
async fn a_quota_one_replica_saw_run_out_is_guarded_by_every_replica() {
    let redis = RedisServer::start().await;
    let (env, replica) = two_replicas(&redis).await;
    let get = |target: &str| Request::get(target).proof(env.signer.sign("GET", target, b""));
    let now = crate::support::NOW;

    // The first replica learns from GitHub that the core quota is gone …
    let exhausting = format!("/limit/core/0/{}", now + 120);
    assert_eq!(env.send(&get(&exhausting)).await.status, 200);
    // … and within about a second the other one answers locally too.
    let refused = wait_for_status(replica.addr, || get("/user"), 429).await;
    assert_refused(&refused, ErrorCode::UpstreamQuotaExhausted);
    assert_eq!(refused.header("retry-after").as_deref(), Some("120"));
    let forwarded = env.upstream.requests().len();
    assert_refused(
        &send(replica.addr, &get("/user")).await,
        ErrorCode::UpstreamQuotaExhausted,
    );
    assert_eq!(
        env.upstream.requests().len(),
        forwarded,
        "once it knew, the second replica sent nothing to GitHub"
    );
}

#[tokio::test]
async fn a_secondary_limit_one_replica_hit_holds_back_every_replica() {
    let redis = RedisServer::start().await;
    let (env, replica) = two_replicas(&redis).await;
    let get = |target: &str| Request::get(target).proof(env.signer.sign("GET", target, b""));

    assert_eq!(env.send(&get("/secondary/90")).await.status, 403);
    let held = wait_for_status(replica.addr, || get("/search/issues?q=x"), 429).await;
    assert_refused(&held, ErrorCode::UpstreamSecondaryLimit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_of_a_captured_proof_never_take_tokens_from_the_shared_rate() {
    let (_redis, _dir, victim, env, replica) = rate_limited_replicas("victim", "3/hour").await;
    let fresh = || Request::get("/user").proof(victim.sign("GET", "/user", b""));

    // A captured proof, replayed on both replicas.
    let captured = fresh();
    assert_eq!(env.send(&captured).await.status, 200);
    for _ in 0..10 {
        assert_refused(&env.send(&captured).await, ErrorCode::ReplayDetected);
        assert_refused(
            &send(replica.addr, &captured).await,
            ErrorCode::ReplayDetected,
        );
    }

    // Copies of one new proof, racing on both replicas: one is served, and
    // the refused ones give back what they took from the shared bucket.
    let copies = std::sync::Arc::new(fresh());
    let sent: Vec<_> = (0..16)
        .map(|n| {
            let copy = std::sync::Arc::clone(&copies);
            let addr = if n % 2 == 0 {
                env.proxy.addr
            } else {
                replica.addr
            };
            tokio::spawn(async move { send(addr, &copy).await.status })
        })
        .collect();
    let mut served = 0;
    for status in sent {
        if status.await.expect("task") == 200 {
            served += 1;
        }
    }
    assert_eq!(served, 1, "one proof, one request served");

    // Two of the victim's three requests were its own: one is left.
    assert_eq!(send(replica.addr, &fresh()).await.status, 200);
    assert_refused(&env.send(&fresh()).await, ErrorCode::RateLimited);
    assert_eq!(env.upstream.requests().len(), 3);
}

#[tokio::test]
async fn an_admin_proof_accepted_by_one_replica_is_refused_by_another() {
    let redis = RedisServer::start().await;
    let admin_signer = crate::support::Signer::new();
    let admin_key = admin_signer.key();
    let local = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (first_admin, second_admin) = (
        local(crate::support::free_port()),
        local(crate::support::free_port()),
    );
    let redis = &redis;
    let with_admin = |admin: std::net::SocketAddr| {
        move |config: &mut signet_proxy::Config| {
            with_redis(redis)(config);
            config.admin_listen = Some(admin);
            config.admin_key = Some(admin_key);
        }
    };
    let env = Env::start_with(with_admin(first_admin)).await;
    let mut second = config(&env.upstream.url(), &env.signer);
    with_admin(second_admin)(&mut second);
    let replica = RunningProxy::start(&second).await;
    let signed = || Request::get("/user").proof(env.signer.sign("GET", "/user", b""));
    let admin_request = |target: &str, body: String| {
        let claims = crate::support::Claims {
            purpose: "admin",
            ..Default::default()
        };
        let proof = admin_signer.sign_with(claims, "POST", target, body.as_bytes());
        Request::new("POST", target)
            .proof(proof)
            .body(body.into_bytes())
    };
    let client = format!("key:{}", signet_core::key_id(&env.signer.key().to_bytes()));
    let body = format!(r#"{{"client":"{client}"}}"#);

    // An operator lifts a revocation, and someone captures that request …
    let captured_unrevoke = admin_request("/unrevoke", body.clone());
    assert_eq!(send(first_admin, &captured_unrevoke).await.status, 200);
    // … then revokes the client again.
    let revoked = send(first_admin, &admin_request("/revoke", body)).await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert_refused(
        &wait_for_status(replica.addr, signed, 401).await,
        ErrorCode::UnknownKey,
    );

    // The captured unrevoke, replayed on the other replica, undoes nothing.
    assert_refused(
        &send(second_admin, &captured_unrevoke).await,
        ErrorCode::ReplayDetected,
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_refused(&send(replica.addr, &signed()).await, ErrorCode::UnknownKey);
    assert_refused(&env.send(&signed()).await, ErrorCode::UnknownKey);
}

/// Two replicas sharing a real Redis, trusting one keys-file client `name`
/// with `rate`: the Redis server, the keys file's directory, the client's
/// signer, the first replica (with the upstream) and the second.
async fn rate_limited_replicas(
    name: &str,
    rate: &str,
) -> (
    RedisServer,
    tempfile::TempDir,
    crate::support::Signer,
    Env,
    RunningProxy,
) {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.toml");
    let signer = crate::support::Signer::new();
    std::fs::write(
        &keys,
        format!(
            "[[client]]\nname = \"{name}\"\nkey = \"{}\"\nrate = \"{rate}\"\n",
            signet_core::public_key_hex(&signer.key())
        ),
    )
    .expect("write");
    let shared = |config: &mut signet_proxy::Config| {
        config.redis_url = Some(RedisUrl::new(redis.url()));
        config.master_keys.clear();
        config.keys_file = Some(keys.clone());
    };
    let env = Env::start_with(shared).await;
    let mut second = config(&env.upstream.url(), &env.signer);
    shared(&mut second);
    let replica = RunningProxy::start(&second).await;
    (redis, dir, signer, env, replica)
}
