//! `signet-proxy demo`: the whole product path on loopback, with no GitHub
//! account. It starts the GitHub API stand-in and the real proxy, makes a
//! throwaway master key, and checks what a user depends on: a signed request
//! goes through with the shared token injected, its replay is refused, and an
//! unsigned request is refused.
//!
//! With `--keep` it then leaves the proxy and the stand-in running, writes
//! the throwaway key to a private temporary directory, and prints the
//! `signet curl` and `signet agent` commands to try against them, until
//! Ctrl-C (the directory is removed on the way out).

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
use signet_standin::StandIn;

use crate::app::server::Server;
use crate::config::{Config, Upstream};
use crate::secret::GitHubToken;

const DEMO_TOKEN: &str = "ghs_demo_token_that_never_leaves_the_proxy";

type DemoClient = Client<HttpConnector, Full<Bytes>>;

/// Runs the demo; exit code 0 when every step behaved as expected. With
/// `keep`, serves on until Ctrl-C/SIGTERM afterwards.
pub async fn run(keep: bool) -> ExitCode {
    match demo(keep).await {
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

async fn demo(keep: bool) -> Result<bool, Box<dyn std::error::Error>> {
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

    if keep {
        keep_running(&master, &upstream, proxy).await?;
    }
    let _ = stop.send(());
    let _ = serving.await;
    Ok(ok)
}

/// `--keep`: the key in a private temporary directory, the commands to try,
/// then wait for Ctrl-C/SIGTERM.
async fn keep_running(
    master: &SigningKey,
    upstream: &StandIn,
    proxy: SocketAddr,
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = KeptDir::create()?;
    let key = dir.0.join("master-key.pem");
    write_private(&key, signet_core::signing_key_to_pem(master)?.as_bytes())?;
    let key = key.display();
    let proxy = format!("http://{proxy}");
    let upstream = upstream.url();
    println!();
    println!("Still running, until Ctrl-C. The throwaway master key is {key}. Try:");
    println!();
    println!("  signet curl --key {key} --proxy {proxy} GET /repos/octo-org/hello-world");
    println!();
    println!("  # a local GitHub API for gh, PyGithub, octokit (in another terminal):");
    println!("  signet agent --key {key} --proxy {proxy} --github-api-url {upstream}");
    println!("  eval \"$(signet agent env)\"");
    println!("  gh api /repos/octo-org/hello-world");
    println!("  gh api --paginate /repos/octo-org/hello-world/issues --jq '.[].url'");
    println!("  curl -s $GITHUB_API_URL/repos/octo-org/hello-world");
    println!();
    crate::app::server::shutdown_signal().await;
    println!("signet-proxy demo: stopped; {} removed", dir.0.display());
    Ok(())
}

/// A temporary directory only its owner can read, removed when dropped.
struct KeptDir(std::path::PathBuf);

impl KeptDir {
    fn create() -> Result<Self, Box<dyn std::error::Error>> {
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix)?;
        let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let path = std::env::temp_dir().join(format!("signet-demo-{suffix}"));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&path)?;
        Ok(KeptDir(path))
    }
}

impl Drop for KeptDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a new file readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
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
