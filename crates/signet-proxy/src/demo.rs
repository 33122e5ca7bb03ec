//! `signet-proxy demo`: the whole product path on loopback, with no GitHub
//! account. It starts the GitHub API stand-in and the real proxy, makes a
//! throwaway master key, and checks what a user depends on: a signed request
//! goes through with the shared token injected, its replay is refused, and an
//! unsigned request is refused.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use signet_core::{public_key_hex, Binding, BodyDigest, Purpose, RequestParts, SigningKey};

use crate::config::{Config, Upstream};
use crate::secret::GitHubToken;
use crate::server::Server;
use crate::standin::StandIn;

const DEMO_TOKEN: &str = "ghs_demo_token_that_never_leaves_the_proxy";

type DemoClient = Client<HttpConnector, Full<Bytes>>;

/// Runs the demo; exit code 0 when every step behaved as expected.
pub async fn run() -> ExitCode {
    match demo().await {
        Ok(true) => {
            println!("\nAll steps behaved as expected.");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("\nSome steps did NOT behave as expected.");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("signet-proxy demo: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> Result<bool, Box<dyn std::error::Error>> {
    let upstream = StandIn::start(Some(DEMO_TOKEN)).await?;
    let master = random_key()?;
    let token = GitHubToken::new(DEMO_TOKEN).ok_or("demo token is not a valid header")?;
    let mut config = Config::new(
        Upstream::parse(&upstream.url())?,
        vec![master.verifying_key()],
        token,
    );
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = Server::bind(&config).await?;
    let proxy = server.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    println!("signet-proxy demo");
    println!("  GitHub API stand-in  {}", upstream.url());
    println!("  signet-proxy         http://{proxy}");
    println!(
        "  master public key    {}",
        public_key_hex(&master.verifying_key())
    );
    println!();

    let client: DemoClient = Client::builder(TokioExecutor::new()).build_http();
    let target = "/repos/octo-org/hello-world";
    let proof = sign(&master, "GET", target)?;
    let mut ok = true;

    let (status, body) = send(&client, proxy, target, Some(&proof)).await?;
    let forwarded = upstream.requests();
    let injected = forwarded.last().is_some_and(|r| {
        r.headers.get("authorization").map(|v| v.as_bytes())
            == Some(format!("Bearer {DEMO_TOKEN}").as_bytes())
            && !r.headers.contains_key("signet-proof")
    });
    ok &= step(
        "signed request is forwarded with the shared token",
        status == StatusCode::OK && injected && body.contains("octo-org/hello-world"),
        status,
        &body,
    );

    let (status, body) = send(&client, proxy, target, Some(&proof)).await?;
    ok &= step(
        "the same proof sent again is refused as a replay",
        status == StatusCode::UNAUTHORIZED && body.contains("REPLAY_DETECTED"),
        status,
        &body,
    );

    let (status, body) = send(&client, proxy, "/user", None).await?;
    ok &= step(
        "an unsigned request is refused",
        status == StatusCode::UNAUTHORIZED && body.contains("MISSING_PROOF"),
        status,
        &body,
    );

    ok &= step(
        "the upstream saw only the one signed request",
        upstream.requests().len() == 1,
        StatusCode::OK,
        &format!(
            "{} request(s) reached the upstream",
            upstream.requests().len()
        ),
    );

    let _ = stop.send(());
    let _ = serving.await;
    Ok(ok)
}

fn step(what: &str, passed: bool, status: StatusCode, body: &str) -> bool {
    let mark = if passed { "ok  " } else { "FAIL" };
    println!("[{mark}] {what}");
    println!("       -> {status}  {body}");
    passed
}

fn random_key() -> Result<SigningKey, getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    Ok(SigningKey::from_bytes(&seed))
}

fn sign(
    master: &SigningKey,
    method: &str,
    target: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let ephemeral = random_key()?;
    let binding = Binding::sign(
        master,
        &ephemeral.verifying_key(),
        now + 300,
        Purpose::new("demo")?,
    );
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce)?;
    let request = RequestParts {
        method,
        target,
        body_digest: BodyDigest::of(b""),
    };
    Ok(binding
        .sign_request(&ephemeral, &request, now, nonce)
        .to_string())
}

async fn send(
    client: &DemoClient,
    proxy: SocketAddr,
    target: &str,
    proof: Option<&str>,
) -> Result<(StatusCode, String), Box<dyn std::error::Error>> {
    let mut request = Request::get(format!("http://{proxy}{target}"));
    if let Some(proof) = proof {
        request = request.header("signet-proof", proof);
    }
    let response = client
        .request(request.body(Full::new(Bytes::new()))?)
        .await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
