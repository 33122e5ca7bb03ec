//! Fault injection (issue 10): what breaks around the proxy — the upstream,
//! its TLS, Redis, the GitHub App token endpoint, signals — and what the
//! proxy answers. Each test ends in the documented status or close, checks
//! that nothing unverified was forwarded, and that the proxy serves again by
//! itself once the fault is gone.
//!
//! Faults already covered elsewhere are not repeated here: an upstream that
//! hangs up, stalls before or after its headers, or answers garbage or an
//! unrequested 101 (`proxy.rs`, `security`); an upstream certificate from an
//! unknown CA (`proxy.rs`); Redis down and back (`replicas`); stdout nobody
//! reads (`security`); a single SIGHUP (`clients`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use signet_core::ErrorCode;
use signet_proxy::RedisUrl;
use signet_standin::{StandIn, TokenEndpoint};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::support::{
    assert_no_token, assert_refused, config, send, Claims, Env, RedisServer, Reply, Request,
    RunningProxy, Signer, TOKEN,
};

// ---------------------------------------------------------------------------
// A TCP relay that can be slowed, cut, or pointed elsewhere
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Bytes pass.
    Pass,
    /// Each chunk from the far side waits this long first.
    Delay(Duration),
    /// Open connections are reset; new ones are reset at once.
    Cut,
}

/// Sits between the proxy and something it talks to.
struct Relay {
    addr: SocketAddr,
    state: Arc<Mutex<(SocketAddr, Mode)>>,
    /// Bumped to drop every open connection.
    generation: watch::Sender<u64>,
}

/// Closes with a reset (RST) rather than a FIN: what a crashed peer or a
/// middlebox does. Zero linger never blocks the thread on drop.
fn reset(stream: TcpStream) {
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new((target, Mode::Pass)));
        let (generation, _) = watch::channel(0u64);
        let relay = Relay {
            addr,
            state: Arc::clone(&state),
            generation: generation.clone(),
        };
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (target, mode) = *state.lock().expect("relay state");
                if mode == Mode::Cut {
                    reset(client);
                    continue;
                }
                let state = Arc::clone(&state);
                let mut cut = generation.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        reset(client);
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let delay = || match state.lock().expect("relay state").1 {
                        Mode::Delay(delay) => delay,
                        _ => Duration::ZERO,
                    };
                    let up = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n @ 1..) = client_read.read(&mut buf).await {
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let down = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n @ 1..) = server_read.read(&mut buf).await {
                            let delay = delay();
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::select! {
                        () = up => {}
                        () = down => {}
                        _ = cut.changed() => {}
                    }
                    if let (Ok(client), Ok(_)) = (
                        client_read.reunite(client_write),
                        server_read.reunite(server_write),
                    ) {
                        reset(client);
                    }
                });
            }
        });
        relay
    }

    /// From now on: to `target`, as `mode` says. Open connections are
    /// dropped unless only a delay changed.
    fn set(&self, target: SocketAddr, mode: Mode) {
        let mut state = self.state.lock().expect("relay state");
        let keep = state.0 == target && !matches!(mode, Mode::Cut);
        *state = (target, mode);
        drop(state);
        if !keep {
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

/// A signed `GET target` with the real clock's claims.
fn signed_now(signer: &Signer, target: &str) -> Request {
    Request::get(target).proof(signer.sign_with(live_claims(), "GET", target, b""))
}

fn live_claims() -> Claims<'static> {
    let now = crate::now();
    Claims {
        exp: now + 300,
        ts: now,
        purpose: "test",
    }
}

use crate::support::eventually;

// ---------------------------------------------------------------------------
// The upstream breaks
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum UpstreamFault {
    /// 200 and part of the body, then a reset.
    ResetMidBody,
    /// The request is read, then a reset before any answer.
    ResetBeforeHead,
    /// A response header section of 1 MiB.
    OversizedHead,
    /// Half a status line, then silence.
    StalledInHead,
}

/// An upstream that misbehaves as `fault` says on every connection.
async fn faulty_upstream(fault: UpstreamFault) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if crate::support::read_head(&mut stream).await.is_none() {
                    return;
                }
                match fault {
                    UpstreamFault::ResetMidBody => {
                        let mut response =
                            b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
                        response.extend_from_slice(&[b'x'; 2000]);
                        let _ = stream.write_all(&response).await;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        reset(stream);
                    }
                    UpstreamFault::ResetBeforeHead => reset(stream),
                    UpstreamFault::OversizedHead => {
                        let mut response = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
                        response.extend(std::iter::repeat_n(b'a', 1024 * 1024));
                        response.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
                        let _ = stream.write_all(&response).await;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    UpstreamFault::StalledInHead => {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-Partial: ").await;
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_upstream_fault_ends_in_its_documented_answer_and_serving_resumes_by_itself() {
    let good = StandIn::start(Some(TOKEN)).await.expect("stand-in");
    let relay = Relay::start(good.addr()).await;
    let signer = Signer::new();
    let mut config = config(&format!("http://{}", relay.addr), &signer);
    config.upstream_timeout = Duration::from_millis(800);
    let proxy = RunningProxy::start(&config).await;

    for fault in [
        UpstreamFault::ResetMidBody,
        UpstreamFault::ResetBeforeHead,
        UpstreamFault::OversizedHead,
        UpstreamFault::StalledInHead,
    ] {
        relay.set(faulty_upstream(fault).await, Mode::Pass);
        let request = Request::get("/user").proof(signer.sign("GET", "/user", b""));
        let raw = match fault {
            UpstreamFault::ResetMidBody => {
                crate::support::send_until_closed(proxy.addr, &request).await
            }
            _ => send(proxy.addr, &request).await.raw,
        };
        assert_no_token(&raw);
        let text = String::from_utf8_lossy(&raw);
        match fault {
            // The answer had started: it is cut short, never a second status.
            UpstreamFault::ResetMidBody => {
                assert!(text.starts_with("HTTP/1.1 200 "), "{fault:?}: {text:.200}");
                assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{fault:?}");
                let body = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
                assert!(raw.len() - body < 100_000, "{fault:?}: visibly truncated");
            }
            UpstreamFault::ResetBeforeHead | UpstreamFault::OversizedHead => {
                let reply = crate::support::send(proxy.addr, &request).await;
                // The same proof again is a replay: it was consumed.
                assert_refused(&reply, ErrorCode::ReplayDetected);
                assert!(text.starts_with("HTTP/1.1 502 "), "{fault:?}: {text:.200}");
                assert!(
                    text.contains(r#""code":"BAD_GATEWAY""#),
                    "{fault:?}: {text:.300}"
                );
            }
            UpstreamFault::StalledInHead => {
                assert!(text.starts_with("HTTP/1.1 504 "), "{fault:?}: {text:.200}");
                assert!(text.contains(r#""code":"GATEWAY_TIMEOUT""#), "{fault:?}");
            }
        }

        // The fault is gone: the same proxy serves again at once.
        relay.set(good.addr(), Mode::Pass);
        let reply = send(
            proxy.addr,
            &Request::get("/user").proof(signer.sign("GET", "/user", b"")),
        )
        .await;
        assert_eq!(reply.status, 200, "after {fault:?}: {}", reply.text());
    }
    // Only the signed requests that were meant for it reached the stand-in.
    assert_eq!(good.requests().len(), 4);
}

// ---------------------------------------------------------------------------
// TLS to the upstream
// ---------------------------------------------------------------------------

struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    ca_file: tempfile::NamedTempFile,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "signet-proxy faults CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("key");
    let ca = params.self_signed(&ca_key).expect("CA");
    let ca_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca_file.path(), ca.pem()).expect("write CA");
    Pki {
        ca,
        ca_key,
        ca_file,
    }
}

/// An HTTPS stand-in whose certificate, signed by `pki`'s CA, names
/// `names` and is valid from `not_before` to `not_after` (years).
async fn tls_standin(pki: &Pki, names: &[&str], not_before: i32, not_after: i32) -> StandIn {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "upstream");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(not_before, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after, 1, 1);
    let key = KeyPair::generate().expect("key");
    let leaf = params.signed_by(&key, &pki.ca, &pki.ca_key).expect("leaf");
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .expect("server config");
    StandIn::start_tls(Some(TOKEN), Arc::new(tls))
        .await
        .expect("TLS stand-in")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_wrong_host_upstream_certificates_are_bad_gateway_until_a_good_one_is_back() {
    let pki = pki();
    let expired = tls_standin(&pki, &["localhost"], 2020, 2021).await;
    let wrong_host = tls_standin(&pki, &["api.elsewhere.example"], 2024, 2099).await;
    let good = tls_standin(&pki, &["localhost"], 2024, 2099).await;
    let relay = Relay::start(expired.addr()).await;
    let signer = Signer::new();
    let mut config = config(&format!("https://localhost:{}", relay.addr.port()), &signer);
    config.upstream_ca_file = Some(pki.ca_file.path().to_owned());
    let proxy = RunningProxy::start(&config).await;

    for (bad, what) in [(&expired, "expired"), (&wrong_host, "wrong host")] {
        relay.set(bad.addr(), Mode::Pass);
        for _ in 0..2 {
            let reply = send(
                proxy.addr,
                &Request::get("/user").proof(signer.sign("GET", "/user", b"")),
            )
            .await;
            assert_refused(&reply, ErrorCode::BadGateway);
            assert_no_token(&reply.raw);
        }
        assert!(
            bad.requests().is_empty(),
            "{what}: nothing crossed the handshake"
        );
    }

    relay.set(good.addr(), Mode::Pass);
    let reply = send(
        proxy.addr,
        &Request::get("/user").proof(signer.sign("GET", "/user", b"")),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(good.requests().len(), 1);
}

// ---------------------------------------------------------------------------
// Redis slow and flapping
// ---------------------------------------------------------------------------

/// A proxy whose replay store is the Redis behind `relay`.
async fn redis_env(relay: &Relay) -> Env {
    let url = format!("redis://{}", relay.addr);
    Env::start_with(move |c| c.redis_url = Some(RedisUrl::new(url))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_fails_closed_and_no_late_answer_is_taken_for_another_proof() {
    let redis = RedisServer::start().await;
    let redis_addr = SocketAddr::from(([127, 0, 0, 1], redis.port));
    let relay = Relay::start(redis_addr).await;
    let env = redis_env(&relay).await;
    let get = |target: &str| Request::get(target).proof(env.signer.sign("GET", target, b""));
    assert_eq!(env.send(&get("/user")).await.status, 200);

    // Answers take 1.5 s, the proxy waits 500 ms (--redis-timeout).
    relay.set(redis_addr, Mode::Delay(Duration::from_millis(1500)));
    let mut slow = Vec::new();
    for i in 0..4 {
        let request = get(&format!("/user?slow={i}"));
        let reply = env.send(&request).await;
        assert_refused(&reply, ErrorCode::ReplayStoreUnavailable);
        assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
        slow.push(request);
    }
    assert_eq!(
        env.upstream.requests().len(),
        1,
        "nothing forwarded while slow"
    );

    relay.set(redis_addr, Mode::Pass);
    // The late answers to the timed-out commands arrive now: none of them
    // may be read as the answer to a later command.
    // (A new proof each try: one refused while a late answer was still on
    // its way may have been recorded, and is then rightly a replay.)
    assert!(
        eventually(async || env.send(&get("/user?retry")).await.status == 200).await,
        "serving resumes once Redis answers in time"
    );
    for i in 1..20 {
        let request = get(&format!("/user?fresh={i}"));
        assert_eq!(env.send(&request).await.status, 200, "fresh proof {i}");
        assert_refused(&env.send(&request).await, ErrorCode::ReplayDetected);
    }
    // A proof refused while Redis was slow may have been recorded (its
    // SET reached Redis): it is then a replay; it is never forwarded twice.
    let mut accepted = 0;
    for request in &slow {
        let first = env.send(request).await;
        match first.status {
            200 => accepted += 1,
            _ => assert_refused(&first, ErrorCode::ReplayDetected),
        }
        assert_refused(&env.send(request).await, ErrorCode::ReplayDetected);
    }
    let retries = env
        .upstream
        .requests()
        .iter()
        .filter(|r| r.target == "/user?retry")
        .count();
    assert_eq!(env.upstream.requests().len(), 1 + retries + 19 + accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_redis_never_lets_a_proof_through_twice_and_serving_resumes() {
    let redis = RedisServer::start().await;
    let redis_addr = SocketAddr::from(([127, 0, 0, 1], redis.port));
    let relay = Arc::new(Relay::start(redis_addr).await);
    let env = redis_env(&relay).await;

    let flapping = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flapper = {
        let relay = Arc::clone(&relay);
        let flapping = Arc::clone(&flapping);
        tokio::spawn(async move {
            let mut up = false;
            while flapping.load(Ordering::Relaxed) {
                relay.set(redis_addr, if up { Mode::Pass } else { Mode::Cut });
                up = !up;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            relay.set(redis_addr, Mode::Pass);
        })
    };

    let (mut forwarded, mut refused) = (0, 0);
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let target = format!("/user?flap={i}");
        i += 1;
        let request = Request::get(&target).proof(env.signer.sign("GET", &target, b""));
        let reply = env.send(&request).await;
        match reply.status {
            200 => forwarded += 1,
            _ => {
                assert_refused(&reply, ErrorCode::ReplayStoreUnavailable);
                refused += 1;
            }
        }
        // Whatever happened to it, the same proof is never forwarded again.
        let again = env.send(&request).await;
        match again.status {
            401 => assert_refused(&again, ErrorCode::ReplayDetected),
            503 => assert_refused(&again, ErrorCode::ReplayStoreUnavailable),
            200 if reply.status != 200 => forwarded += 1,
            _ => panic!(
                "a proof was forwarded twice: {} then {}",
                reply.status, again.status
            ),
        }
    }
    flapping.store(false, Ordering::Relaxed);
    flapper.await.expect("flapper");
    assert!(refused > 0, "the flapping was felt ({forwarded} forwarded)");
    assert_eq!(env.upstream.requests().len(), forwarded);

    let get = || Request::get("/user").proof(env.signer.sign("GET", "/user", b""));
    assert!(
        eventually(async || env.send(&get()).await.status == 200).await,
        "serving resumes by itself"
    );
    for _ in 0..10 {
        assert_eq!(env.send(&get()).await.status, 200);
    }
}

// ---------------------------------------------------------------------------
// The GitHub App token endpoint during a rotation
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_failing_or_stalled_during_a_rotation_leaves_the_old_token_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key_file, public) = crate::credentials::app_key(dir.path());
    // 20 s tokens: the proxy rotates at 16 s, the old one lasts until 20 s.
    let upstream = StandIn::start_app(&public, 31, 41, Duration::from_secs(20))
        .await
        .expect("stand-in");
    let (proxy, signer) = crate::credentials::app_proxy(&upstream.url(), key_file, 31, 41).await;
    assert!(crate::credentials::wait_ready(&proxy).await);
    assert_eq!(upstream.issued_tokens(), 1);
    let served = AtomicU64::new(0);
    let get = async || {
        let reply = send(
            proxy.addr,
            &Request::get("/user").proof(signer.sign("GET", "/user", b"")),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        served.fetch_add(1, Ordering::Relaxed);
    };

    // The rotation's exchange fails (and its retries, with backoff).
    upstream.set_token_endpoint(TokenEndpoint::Fail);
    let deadline = Instant::now() + Duration::from_secs(30);
    while upstream.token_exchange_faults().0 == 0 && Instant::now() < deadline {
        get().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        upstream.token_exchange_faults().0 > 0,
        "a rotation was attempted"
    );
    get().await;

    // Then it hangs: requests still go out with the old token meanwhile.
    upstream.set_token_endpoint(TokenEndpoint::Stall);
    while upstream.token_exchange_faults().1 == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        upstream.token_exchange_faults().1,
        1,
        "one exchange is held"
    );
    for _ in 0..5 {
        get().await;
    }

    // It answers again: the held exchange gets its token, nothing failed.
    upstream.set_token_endpoint(TokenEndpoint::Answer);
    assert!(
        eventually(async || upstream.issued_tokens() == 2).await,
        "a new token once the endpoint answers"
    );
    for _ in 0..5 {
        get().await;
    }
    assert_eq!(upstream.token_exchange_faults().1, 0);
    let recorded = upstream
        .requests()
        .into_iter()
        .filter(|r| r.target == "/user")
        .count() as u64;
    assert_eq!(recorded, served.load(Ordering::Relaxed));
}

#[tokio::test]
async fn an_installation_token_past_its_expiry_is_never_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key_file, public) = crate::credentials::app_key(dir.path());
    // 2 s tokens, and the endpoint fails every refresh after the first grant.
    let upstream = StandIn::start_app(&public, 32, 42, Duration::from_secs(2))
        .await
        .expect("stand-in");
    let (proxy, signer) = crate::credentials::app_proxy(&upstream.url(), key_file, 32, 42).await;
    assert!(crate::credentials::wait_ready(&proxy).await);
    upstream.set_token_endpoint(TokenEndpoint::Fail);
    let signed = || Request::get("/user").proof(signer.sign("GET", "/user", b""));
    assert_eq!(send(proxy.addr, &signed()).await.status, 200);

    // Past the expiry: 503 and not ready, instead of GitHub's 401 for a dead token.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let forwarded = upstream.requests().len();
    crate::support::assert_refused(
        &send(proxy.addr, &signed()).await,
        signet_core::ErrorCode::UpstreamCredentialsUnavailable,
    );
    assert_eq!(send(proxy.addr, &Request::get("/readyz")).await.status, 503);
    assert_eq!(
        upstream
            .requests()
            .iter()
            .filter(|r| r.target == "/user")
            .count(),
        1,
        "nothing went out with the expired token ({forwarded} requests seen)"
    );

    // The endpoint recovers: serving resumes by itself.
    upstream.set_token_endpoint(TokenEndpoint::Answer);
    assert!(
        eventually(async || send(proxy.addr, &signed()).await.status == 200).await,
        "a new token, and requests flow again"
    );
}

// ---------------------------------------------------------------------------
// Signals to the real binary
// ---------------------------------------------------------------------------

/// The real binary in front of `upstream`, logs to a pipe read by a thread.
async fn start_binary(
    upstream: &StandIn,
    extra: &[&str],
) -> (
    SocketAddr,
    crate::security::Running,
    std::thread::JoinHandle<String>,
) {
    let port = crate::support::free_port().to_string();
    let api = upstream.url();
    let mut args = vec![
        "--listen",
        "127.0.0.1",
        "--port",
        &port,
        "--github-api",
        &api,
        "--github-token",
        TOKEN,
    ];
    args.extend_from_slice(extra);
    let mut child = crate::binary(&args, &[]).spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut { stdout }, &mut text);
        text
    });
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    crate::wait_until_healthy(addr, &mut child).await;
    (addr, crate::security::Running(child), log)
}

/// Waits (bounded) for the running binary to exit; whether it exited 0.
async fn exits_zero(running: &mut crate::security::Running) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = running.0.try_wait().expect("try_wait") {
            return status.success();
        }
        assert!(Instant::now() < deadline, "no exit within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_answers_every_accepted_request_and_exits_zero() {
    let upstream = StandIn::start(Some(TOKEN)).await.expect("stand-in");
    let signer = Arc::new(Signer::new());
    let key = signet_core::public_key_hex(&signer.key());
    let (addr, mut running, log) = start_binary(&upstream, &["--master-key", &key]).await;

    // In flight at SIGTERM: requests waiting on the upstream, downloads
    // streaming, and bodies still arriving from slow clients.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let signer = Arc::clone(&signer);
        tasks.push(tokio::spawn(async move {
            let (target, body): (String, Vec<u8>) = match i % 3 {
                0 => (format!("/delay/1500?i={i}"), Vec::new()),
                1 => (format!("/stream/4000000?i={i}"), Vec::new()),
                _ => (format!("/echo?i={i}"), vec![b'b'; 64 * 1024]),
            };
            let method = if body.is_empty() { "GET" } else { "POST" };
            let proof = signer.sign_with(live_claims(), method, &target, &body);
            let mut request = Request::new(method, &target).proof(proof);
            if !body.is_empty() {
                request = request.body(body.clone());
            }
            let bytes = request.to_bytes("p");
            let (head, rest) = bytes.split_at(bytes.len() - body.len());
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(head).await.expect("head");
            // The body trickles in over 1.5 s, across the SIGTERM.
            for piece in rest.chunks(8 * 1024) {
                tokio::time::sleep(Duration::from_millis(190)).await;
                stream.write_all(piece).await.expect("body");
            }
            let reply = tokio::time::timeout(
                Duration::from_secs(30),
                crate::support::read_reply(&mut stream, false),
            )
            .await
            .expect("answered in time");
            (i, reply, body)
        }));
    }
    // Every request's head has been read once the delayed ones are upstream.
    assert!(
        eventually(async || {
            upstream
                .requests()
                .iter()
                .filter(|r| r.target.starts_with("/delay/"))
                .count()
                == 10
        })
        .await
    );
    // New connections keep coming across the SIGTERM, until it refuses
    // them. Each gets a whole answer, or none at all (its request was not
    // read yet: never forwarded, safe to retry) — never half of one.
    let hammer = {
        let signer = Arc::clone(&signer);
        tokio::spawn(async move {
            let (mut answered, mut dropped) = (0u64, 0u64);
            for i in 0.. {
                let Ok(mut stream) = TcpStream::connect(addr).await else {
                    break;
                };
                let target = format!("/user?hammer={i}");
                let proof = signer.sign_with(live_claims(), "GET", &target, b"");
                let request = Request::get(&target)
                    .proof(proof)
                    .header("Connection", "close")
                    .to_bytes("p");
                let _ = stream.write_all(&request).await;
                let raw = crate::support::read_until_closed(&mut stream, Duration::from_secs(20))
                    .await
                    .expect("closed in time");
                if raw.is_empty() {
                    dropped += 1;
                    continue;
                }
                let text = String::from_utf8_lossy(&raw);
                assert!(text.starts_with("HTTP/1.1 200 "), "hammer {i}: {text}");
                assert!(
                    text.ends_with(r#""type":"Bot"}"#),
                    "hammer {i} whole: {text}"
                );
                answered += 1;
            }
            (answered, dropped)
        })
    };
    // The slow bodies are still arriving, the delayed answers pending.
    tokio::time::sleep(Duration::from_millis(300)).await;
    crate::terminate(&running.0);

    for task in tasks {
        let (i, reply, body): (usize, Reply, Vec<u8>) = task.await.expect("task");
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        match i % 3 {
            0 => assert_eq!(reply.json()["delayed"], true),
            1 => assert_eq!(reply.body.len(), 4_000_000, "request {i} streamed whole"),
            _ => assert_eq!(reply.body, body, "request {i} echoed whole"),
        }
    }
    assert!(exits_zero(&mut running).await, "exit 0 after SIGTERM");
    let (answered, dropped) = hammer.await.expect("hammer");
    assert!(
        answered > 0,
        "{answered} answered, {dropped} dropped unread"
    );
    assert_eq!(
        upstream.requests().len() as u64,
        30 + answered,
        "each answered request forwarded once, no unanswered one forwarded"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
    let log = log.join().expect("log");
    assert_no_token(log.as_bytes());
    assert!(log.contains("signet-proxy stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sighup_storm_while_the_keys_file_is_rewritten_never_drops_a_trusted_client() {
    let upstream = StandIn::start(Some(TOKEN)).await.expect("stand-in");
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.toml");
    let alice = Signer::new();
    let bob = Signer::new();
    let entry = |name: &str, signer: &Signer| {
        format!(
            "[[client]]\nname = \"{name}\"\nkey = \"{}\"\n\n",
            signet_core::public_key_hex(&signer.key())
        )
    };
    let only_alice = entry("alice", &alice);
    let both = only_alice.clone() + &entry("bob", &bob);
    std::fs::write(&keys, &only_alice).expect("write");
    let keys_arg = keys.display().to_string();
    let (addr, mut running, log) = start_binary(&upstream, &["--keys-file", &keys_arg]).await;
    let pid = running.0.id().to_string();

    // Rewritten in place (truncate, write: readers can see it half done)
    // between two valid versions, while SIGHUPs arrive every few ms.
    let storm = {
        let keys = keys.clone();
        std::thread::spawn(move || {
            for i in 0..200 {
                let text = if i % 2 == 0 { &both } else { &only_alice };
                std::fs::write(&keys, text).expect("rewrite");
                let _ = std::process::Command::new("kill")
                    .args(["-HUP", &pid])
                    .status();
                std::thread::sleep(Duration::from_millis(5));
            }
            std::fs::write(&keys, &both).expect("final version");
        })
    };
    let mut served = 0;
    while !storm.is_finished() {
        let reply = send(addr, &signed_now(&alice, "/user")).await;
        assert_eq!(
            reply.status,
            200,
            "alice is trusted in every version: {}",
            reply.text()
        );
        served += 1;
    }
    storm.join().expect("storm");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &running.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    assert!(
        eventually(async || send(addr, &signed_now(&bob, "/user")).await.status == 200).await,
        "the final version is in force"
    );
    assert!(served > 0);
    crate::terminate(&running.0);
    assert!(exits_zero(&mut running).await, "exit 0 after the storm");
    let log = log.join().expect("log");
    assert_no_token(log.as_bytes());
    assert!(log.contains("keys file reloaded"));
}
