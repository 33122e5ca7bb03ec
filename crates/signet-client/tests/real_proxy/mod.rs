//! `signet curl` and `signet admin` through the real proxy (in-process) in
//! front of the GitHub API stand-in.

use std::net::SocketAddr;
use std::path::Path;

use predicates::prelude::*;
use signet_core::parse_public_key_hex;
use tempfile::TempDir;

use crate::support::{keygen, signet, SHARED_TOKEN};

/// The real `signet-proxy` (in-process, on `127.0.0.1:0`) in front of the
/// GitHub API stand-in, trusting `master_hex`.
struct RealProxy {
    url: String,
    upstream: signet_standin::StandIn,
    _runtime: tokio::runtime::Runtime,
}

fn real_proxy(master_hex: &str) -> RealProxy {
    real_proxy_with(master_hex, |_| {})
}

fn real_proxy_with(master_hex: &str, tweak: impl FnOnce(&mut signet_proxy::Config)) -> RealProxy {
    use signet_proxy::{Config, GitHubToken, Server, Upstream};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (upstream, addr) = runtime.block_on(async {
        let upstream = signet_standin::StandIn::start(Some(SHARED_TOKEN))
            .await
            .unwrap();
        let mut config = Config::new(
            Upstream::parse(&upstream.url()).unwrap(),
            vec![parse_public_key_hex(master_hex).unwrap()],
            GitHubToken::new(SHARED_TOKEN).unwrap(),
        );
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        tweak(&mut config);
        let server = Server::bind(&config).await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(server.run(std::future::pending()));
        (upstream, addr)
    });
    RealProxy {
        url: format!("http://{addr}"),
        upstream,
        _runtime: runtime,
    }
}

#[test]
fn curl_through_the_real_proxy_reaches_the_upstream_with_the_shared_token() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let proxy = real_proxy(&public);
    let body = dir.path().join("issue.json");
    std::fs::write(&body, br#"{"title":"signed \u00e9"}"#).unwrap();

    signet()
        .args(["curl", "--key"])
        .arg(&key)
        .args(["--proxy", &proxy.url, "POST", "/echo?x=1&y=%2C", "--data"])
        .arg(format!("@{}", body.display()))
        .args(["-H", "Accept: application/vnd.github+json"])
        .assert()
        .success()
        .stdout(r#"{"title":"signed \u00e9"}"#)
        .stderr(predicate::str::contains("200"));

    let seen = proxy.upstream.requests();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, "/echo?x=1&y=%2C");
    assert_eq!(&request.body[..], br#"{"title":"signed \u00e9"}"#);
    assert_eq!(
        request.headers["authorization"],
        format!("Bearer {SHARED_TOKEN}").as_str()
    );
    assert_eq!(request.headers["accept"], "application/vnd.github+json");
    assert!(!request.headers.contains_key("signet-proof"));
}

#[test]
fn curl_with_an_untrusted_key_is_refused_by_the_real_proxy_and_exits_22() {
    let dir = TempDir::new().unwrap();
    let (_trusted, public) = keygen(&dir);
    let other_dir = TempDir::new().unwrap();
    let (untrusted, _) = keygen(&other_dir);
    let proxy = real_proxy(&public);

    signet()
        .args(["curl", "--key"])
        .arg(&untrusted)
        .args(["--proxy", &proxy.url, "GET", "/user"])
        .assert()
        .code(22)
        .stdout(predicate::str::contains(r#""code":"UNKNOWN_KEY""#))
        .stderr(predicate::str::contains("401"));
    assert!(proxy.upstream.requests().is_empty());
}

#[test]
fn admin_revokes_and_restores_a_client_through_the_real_proxy() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let admin_dir = TempDir::new().unwrap();
    let (admin_key, admin_public) = keygen(&admin_dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin_url = format!("http://127.0.0.1:{port}");
    let proxy = real_proxy_with(&public, |config| {
        config.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], port)));
        config.admin_key = Some(parse_public_key_hex(&admin_public).unwrap());
    });
    let admin_as = |key: &Path, args: &[&str]| {
        let mut command = signet();
        command
            .arg("admin")
            .arg("--key")
            .arg(key)
            .args(["--admin-url", &admin_url])
            .args(args);
        command
    };
    let admin = |args: &[&str]| admin_as(&admin_key, args);
    let listed = admin(&["clients"]).output().unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let name = listed["clients"][0]["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("key:"), "{name}");

    admin(&["revoke", "--client", &name]).assert().success();
    signet()
        .args(["curl", "--key"])
        .arg(&key)
        .args(["--proxy", &proxy.url, "GET", "/user"])
        .assert()
        .code(22)
        .stdout(predicate::str::contains(r#""code":"UNKNOWN_KEY""#));
    admin(&["unrevoke", "--client", &name]).assert().success();
    signet()
        .args(["curl", "--key"])
        .arg(&key)
        .args(["--proxy", &proxy.url, "GET", "/user"])
        .assert()
        .success();
    admin(&["stats"])
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""clients":1"#));
    // A key that is not the admin key is refused, and signet says so.
    admin_as(&key, &["stats"])
        .assert()
        .code(22)
        .stdout(predicate::str::contains("UNKNOWN_KEY"));
    assert_eq!(proxy.upstream.requests().len(), 1);
}
