//! A request through the real proxy on loopback, against the GitHub API
//! stand-in, compared with the same request sent to the stand-in directly:
//! the difference is what the proxy adds. Also the cost of the cheapest
//! refusal. Run with `cargo bench -p signet-proxy`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::Request;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use signet_core::{Binding, BodyDigest, Purpose, RequestParts, SigningKey};
use signet_proxy::{Config, GitHubToken, Server, Upstream};
use signet_standin::StandIn;

const TOKEN: &str = "ghs_bench";
const TARGET: &str = "/repos/octo-org/hello-world";

struct Rig {
    client: Client<HttpConnector, Full<Bytes>>,
    proxy: SocketAddr,
    upstream: SocketAddr,
    ephemeral: SigningKey,
    binding: Binding,
    _standin: StandIn,
}

async fn rig() -> Rig {
    let standin = StandIn::start(Some(TOKEN)).await.unwrap();
    let master = SigningKey::from_bytes(&[1; 32]);
    let ephemeral = SigningKey::from_bytes(&[2; 32]);
    let mut config = Config::new(
        Upstream::parse(&standin.url()).unwrap(),
        vec![master.verifying_key()],
        GitHubToken::new(TOKEN).unwrap(),
    );
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.replay_capacity = 10_000_000;
    let server = Server::bind(&config).await.unwrap();
    let proxy = server.local_addr().unwrap();
    tokio::spawn(server.run(std::future::pending()));
    let binding = Binding::sign(
        &master,
        &ephemeral.verifying_key(),
        now() + 900,
        Purpose::EMPTY,
    );
    Rig {
        client: Client::builder(TokioExecutor::new()).build_http(),
        proxy,
        upstream: standin.addr(),
        ephemeral,
        binding,
        _standin: standin,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Rig {
    fn proof(&self, nonce: u64) -> String {
        let mut n = [0u8; 16];
        n[..8].copy_from_slice(&nonce.to_be_bytes());
        n[8..].copy_from_slice(&now().to_be_bytes());
        let request = RequestParts {
            method: "GET",
            target: TARGET,
            body_digest: BodyDigest::of(b""),
        };
        self.binding
            .sign_request(&self.ephemeral, &request, now(), n)
            .to_string()
    }

    async fn get(&self, addr: SocketAddr, headers: &[(&str, &str)]) -> u16 {
        let mut request = Request::get(format!("http://{addr}{TARGET}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .client
            .request(request.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        response.into_body().collect().await.unwrap();
        status
    }
}

fn pipeline(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rig = runtime.block_on(rig());
    let mut nonce = 0u64;
    let auth = format!("Bearer {TOKEN}");

    let mut group = c.benchmark_group("request");
    group.bench_function("direct_to_upstream", |b| {
        b.to_async(&runtime).iter(|| async {
            assert_eq!(
                rig.get(rig.upstream, &[("authorization", &auth)]).await,
                200
            )
        });
    });
    group.bench_function("through_proxy_signed", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                nonce += 1;
                rig.proof(nonce)
            },
            |proof| async {
                let proof = proof;
                assert_eq!(rig.get(rig.proxy, &[("signet-proof", &proof)]).await, 200);
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("refused_missing_proof", |b| {
        b.to_async(&runtime)
            .iter(|| async { assert_eq!(rig.get(rig.proxy, &[]).await, 401) });
    });
    group.finish();

    // Throughput: 64 signed requests in flight at once, each on its own
    // pooled connection; the client runs on the same two cores.
    let rig = std::sync::Arc::new(rig);
    let mut group = c.benchmark_group("concurrent");
    group.throughput(Throughput::Elements(CONCURRENCY as u64));
    group.bench_function("64_signed_requests_through_proxy", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                (0..CONCURRENCY)
                    .map(|_| {
                        nonce += 1;
                        rig.proof(nonce)
                    })
                    .collect::<Vec<_>>()
            },
            |proofs| {
                let rig = std::sync::Arc::clone(&rig);
                async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    for proof in proofs {
                        let rig = std::sync::Arc::clone(&rig);
                        tasks.spawn(async move {
                            rig.get(rig.proxy, &[("signet-proof", &proof)]).await
                        });
                    }
                    while let Some(status) = tasks.join_next().await {
                        assert_eq!(status.unwrap(), 200);
                    }
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

const CONCURRENCY: usize = 64;

criterion_group!(benches, pipeline);
criterion_main!(benches);
