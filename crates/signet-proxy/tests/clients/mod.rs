//! One identity per client from the keys file: its own purposes and
//! allowed methods and paths, reloaded when the file changes, validated by
//! `check-config`.

use std::path::Path;
use std::time::Duration;

use signet_core::{public_key_hex, ErrorCode};

use crate::support::{assert_refused, assert_refused_with, Claims, Env, Reply, Request, Signer};

fn client_entry(name: &str, signer: &Signer, extra: &str) -> String {
    format!(
        "[[client]]\nname = \"{name}\"\nkey = \"{}\"\n{extra}\n",
        public_key_hex(&signer.key())
    )
}

/// A proxy that trusts only the clients of `keys_file` (no `--master-key`).
async fn env_with_keys_file(keys_file: &Path) -> Env {
    let path = keys_file.to_owned();
    Env::start_with(move |config| {
        config.master_keys.clear();
        config.keys_file = Some(path);
    })
    .await
}

async fn get(env: &Env, signer: &Signer, target: &str) -> Reply {
    env.send(&Request::get(target).proof(signer.sign("GET", target, b"")))
        .await
}

#[tokio::test]
async fn a_client_is_held_to_its_own_rules_and_purposes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.toml");
    let bot = Signer::new();
    let free = Signer::new();
    std::fs::write(
        &keys,
        client_entry(
            "release-bot",
            &bot,
            r#"purposes = ["test"]
allow = ["GET /repos/acme/**", "POST /repos/acme/*/issues"]"#,
        ) + &client_entry("anything-goes", &free, ""),
    )
    .expect("write keys file");
    let env = env_with_keys_file(&keys).await;

    assert_eq!(get(&env, &bot, "/repos/acme/app").await.status, 200);
    let body = br#"{"title":"t"}"#;
    let post = Request::new("POST", "/repos/acme/app/issues")
        .proof(bot.sign("POST", "/repos/acme/app/issues", body))
        .body(body.to_vec());
    assert_ne!(env.send(&post).await.status, 403);
    let allowed = env.upstream.requests().len();
    assert_eq!(allowed, 2);

    let delete =
        Request::new("DELETE", "/repos/acme/app").proof(bot.sign("DELETE", "/repos/acme/app", b""));
    assert_refused_with(
        &env.send(&delete).await,
        ErrorCode::ForbiddenByPolicy,
        "No rule of this client allows DELETE /repos/acme/app.",
    );
    for target in [
        "/repos/other/app",
        "/repos/acme/app/x%2F..%2F..%2Fother",
        "/repos/ACME/app",
        "/user",
    ] {
        let reply = get(&env, &bot, target).await;
        assert_refused_with(
            &reply,
            ErrorCode::ForbiddenByPolicy,
            &format!("No rule of this client allows GET {target}."),
        );
    }
    let wrong_purpose = bot.sign_with(
        Claims {
            purpose: "deploy",
            ..Claims::default()
        },
        "GET",
        "/repos/acme/app",
        b"",
    );
    assert_refused(
        &env.send(&Request::get("/repos/acme/app").proof(wrong_purpose))
            .await,
        ErrorCode::PurposeMismatch,
    );
    assert_eq!(
        env.upstream.requests().len(),
        allowed,
        "no refusal was forwarded"
    );

    // A client without rules may call anything, with any purpose.
    assert_eq!(get(&env, &free, "/user").await.status, 200);
    // A key that is in no file is unknown.
    assert_refused(
        &get(&env, &Signer::new(), "/user").await,
        ErrorCode::UnknownKey,
    );
}

use crate::support::eventually;

#[tokio::test]
async fn the_keys_file_is_reloaded_when_it_changes_and_a_broken_one_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.toml");
    let alice = Signer::new();
    let bob = Signer::new();
    std::fs::write(&keys, client_entry("alice", &alice, "")).expect("write");
    let env = env_with_keys_file(&keys).await;
    assert_refused(&get(&env, &bob, "/user").await, ErrorCode::UnknownKey);

    std::fs::write(
        &keys,
        client_entry("alice", &alice, "") + &client_entry("bob", &bob, ""),
    )
    .expect("write");
    assert!(
        eventually(async || get(&env, &bob, "/user").await.status == 200).await,
        "bob is trusted once the file lists him"
    );

    // A broken file is refused; the last good set stays in force.
    std::fs::write(&keys, "[[client]\nthis is not toml").expect("write");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(get(&env, &alice, "/user").await.status, 200);
    assert_eq!(get(&env, &bob, "/user").await.status, 200);

    // Removing a client cuts it off.
    std::fs::write(&keys, client_entry("alice", &alice, "")).expect("write");
    assert!(
        eventually(async || get(&env, &bob, "/user").await.status == 401).await,
        "bob is cut off once the file drops him"
    );
    assert_eq!(get(&env, &alice, "/user").await.status, 200);
}

#[test]
fn check_config_validates_the_keys_file_without_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.toml");
    let bad = dir.path().join("bad.toml");
    let signer = Signer::new();
    std::fs::write(
        &good,
        client_entry("ci", &signer, r#"allow = ["GET /repos/**"]"#),
    )
    .expect("write");
    std::fs::write(
        &bad,
        client_entry("ci", &signer, r#"allow = ["GIT /repos/**"]"#),
    )
    .expect("write");

    let run = |file: &Path| {
        crate::binary(
            &[
                "check-config",
                "--github-token",
                "t",
                "--keys-file",
                &file.display().to_string(),
            ],
            &[],
        )
        .output()
        .expect("run check-config")
    };
    let ok = run(&good);
    assert!(ok.status.success(), "{ok:?}");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        stdout.contains("configuration OK: 1 trusted client(s)"),
        "{stdout}"
    );

    let refused = run(&bad);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("GIT /repos/**"), "{stderr}");
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after_and_nothing_is_forwarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.toml");
    let noisy = Signer::new();
    let quiet = Signer::new();
    std::fs::write(
        &keys,
        client_entry("noisy", &noisy, r#"rate = "2/min""#) + &client_entry("quiet", &quiet, ""),
    )
    .expect("write");
    let env = env_with_keys_file(&keys).await;
    assert_eq!(get(&env, &noisy, "/user").await.status, 200);
    assert_eq!(get(&env, &noisy, "/user").await.status, 200);
    let limited = get(&env, &noisy, "/user").await;
    assert_refused(&limited, ErrorCode::RateLimited);
    assert_eq!(limited.header("retry-after").as_deref(), Some("30"));
    assert_eq!(env.upstream.requests().len(), 2);
    // Other clients have buckets of their own.
    assert_eq!(get(&env, &quiet, "/user").await.status, 200);
}

#[tokio::test]
async fn metrics_count_requests_by_client_failures_by_code_and_the_shared_quota() {
    let port = crate::support::free_port();
    let env = Env::start_with(|c| {
        c.metrics_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    })
    .await;
    assert_eq!(get(&env, &env.signer, "/user").await.status, 200);
    assert_refused(
        &env.send(&Request::get("/user")).await,
        ErrorCode::MissingProof,
    );
    tokio::time::sleep(Duration::from_millis(100)).await;

    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let scrape = crate::support::send(metrics_addr, &Request::get("/metrics")).await;
    assert_eq!(scrape.status, 200);
    let text = scrape.text();
    let client = format!("key:{}", signet_core::key_id(&env.signer.key().to_bytes()));
    for line in [
        format!(r#"signet_requests_total{{client="{client}",method="GET",status="200"}} 1"#),
        r#"signet_requests_total{client="-",method="GET",status="401"} 1"#.to_owned(),
        r#"signet_auth_failures_total{code="MISSING_PROOF"} 1"#.to_owned(),
        r#"signet_upstream_responses_total{status="200"} 1"#.to_owned(),
        r#"signet_github_ratelimit_remaining{resource="core"} 4999"#.to_owned(),
        r#"signet_request_duration_seconds_count{stage="verify"} 1"#.to_owned(),
        "signet_inflight_requests 0".to_owned(),
        r#"signet_config_reloads_total{result="success"} 1"#.to_owned(),
        "signet_log_lines_dropped_total 0".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing in:\n{text}"
        );
    }
    assert!(!text.contains(crate::support::TOKEN));
    let other = crate::support::send(metrics_addr, &Request::get("/other")).await;
    assert_eq!(other.status, 404);
}

// ---------------------------------------------------------------------------
// The admin API and revocation
// ---------------------------------------------------------------------------

struct AdminClient {
    addr: std::net::SocketAddr,
    signer: Signer,
}

impl AdminClient {
    fn claims() -> Claims<'static> {
        Claims {
            purpose: "admin",
            ..Claims::default()
        }
    }

    async fn get(&self, target: &str) -> Reply {
        let proof = self.signer.sign_with(Self::claims(), "GET", target, b"");
        crate::support::send(self.addr, &Request::get(target).proof(proof)).await
    }

    async fn post(&self, target: &str, body: &str) -> Reply {
        let proof = self
            .signer
            .sign_with(Self::claims(), "POST", target, body.as_bytes());
        let request = Request::new("POST", target)
            .proof(proof)
            .body(body.as_bytes().to_vec());
        crate::support::send(self.addr, &request).await
    }
}

fn with_admin(admin: &Signer, port: u16) -> impl FnOnce(&mut signet_proxy::Config) {
    let key = admin.key();
    move |config| {
        config.admin_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        config.admin_key = Some(key);
    }
}

#[tokio::test]
async fn the_admin_api_is_never_open() {
    let admin = AdminClient {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], crate::support::free_port())),
        signer: Signer::new(),
    };
    let env = Env::start_with(with_admin(&admin.signer, admin.addr.port())).await;
    assert_refused(
        &crate::support::send(admin.addr, &Request::get("/clients")).await,
        ErrorCode::MissingProof,
    );
    // A client's key is not the admin key…
    let proof = env
        .signer
        .sign_with(AdminClient::claims(), "GET", "/clients", b"");
    assert_refused(
        &crate::support::send(admin.addr, &Request::get("/clients").proof(proof)).await,
        ErrorCode::UnknownKey,
    );
    // …and the admin key signs admin proofs only.
    let proof = admin.signer.sign("GET", "/clients", b"");
    assert_refused(
        &crate::support::send(admin.addr, &Request::get("/clients").proof(proof)).await,
        ErrorCode::PurposeMismatch,
    );
    // A replayed admin proof is refused like any other.
    let proof = admin
        .signer
        .sign_with(AdminClient::claims(), "GET", "/stats", b"");
    let request = Request::get("/stats").proof(proof);
    assert_eq!(crate::support::send(admin.addr, &request).await.status, 200);
    assert_refused(
        &crate::support::send(admin.addr, &request).await,
        ErrorCode::ReplayDetected,
    );
}

#[tokio::test]
async fn a_revoked_client_or_ephemeral_key_is_unknown_until_unrevoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.toml");
    let bot = Signer::new();
    let other = Signer::new();
    std::fs::write(
        &keys,
        client_entry("bot", &bot, "") + &client_entry("other", &other, ""),
    )
    .expect("write");
    let admin = AdminClient {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], crate::support::free_port())),
        signer: Signer::new(),
    };
    let keys_path = keys.clone();
    let add_admin = with_admin(&admin.signer, admin.addr.port());
    let env = Env::start_with(move |config| {
        config.master_keys.clear();
        config.keys_file = Some(keys_path);
        add_admin(config);
    })
    .await;

    let clients = admin.get("/clients").await;
    assert_eq!(clients.status, 200, "{}", clients.text());
    let names: Vec<String> = clients.json()["clients"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(names, ["bot", "other"]);

    assert_eq!(
        admin.post("/revoke", r#"{"client":"bot"}"#).await.status,
        200
    );
    let refused = get(&env, &bot, "/user").await;
    assert_refused(&refused, ErrorCode::UnknownKey);
    assert_eq!(
        get(&env, &other, "/user").await.status,
        200,
        "others unaffected"
    );
    assert_eq!(
        admin.post("/unrevoke", r#"{"client":"bot"}"#).await.status,
        200
    );
    assert_eq!(get(&env, &bot, "/user").await.status, 200);

    // One ephemeral key only: its proofs are refused, the client's others pass.
    let proof = other.sign_with(Claims::default(), "GET", "/user", b"");
    let ek = signet_core::base64url::encode(&proof.ek);
    let body = format!(r#"{{"ephemeral_key":"{ek}","until":{}}}"#, proof.exp);
    assert_eq!(admin.post("/revoke", &body).await.status, 200);
    assert_refused(
        &env.send(&Request::get("/user").proof(&proof)).await,
        ErrorCode::UnknownKey,
    );
    assert_eq!(get(&env, &other, "/user").await.status, 200);
    assert_eq!(admin.post("/revoke", r#"{"nope":1}"#).await.status, 400);
    let forwarded = env.upstream.requests().len();
    assert_eq!(forwarded, 3, "no revoked request was forwarded");

    let stats = admin.get("/stats").await;
    assert_eq!(stats.json()["revoked_ephemeral_keys"], 1);
    assert_eq!(admin.post("/reload", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_keys_file_of_the_running_binary() {
    let upstream = signet_standin::StandIn::start(Some(crate::support::TOKEN))
        .await
        .expect("stand-in");
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.toml");
    let alice = Signer::new();
    let bob = Signer::new();
    std::fs::write(&keys, client_entry("alice", &alice, "")).expect("write");
    let port = crate::support::free_port().to_string();
    let mut child = crate::binary(
        &[
            "--listen",
            "127.0.0.1",
            "--port",
            &port,
            "--github-api",
            &upstream.url(),
            "--github-token",
            crate::support::TOKEN,
            "--keys-file",
            &keys.display().to_string(),
        ],
        &[],
    )
    .spawn()
    .expect("spawn");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    crate::wait_until_healthy(addr, &mut child).await;
    let pid = child.id();
    let reloads = reload_records(child.stdout.take().expect("stdout"));
    let _running = crate::security::Running(child);
    let signed = |signer: &Signer| {
        let now = crate::now();
        let claims = Claims {
            exp: now + 300,
            ts: now,
            purpose: "test",
        };
        Request::get("/user").proof(signer.sign_with(claims, "GET", "/user", b""))
    };

    // Bob is added, and the proxy told at once. (The watcher would notice
    // the new content too, within its interval: the SIGHUP reload is the
    // one whose record says so.)
    assert_refused(
        &crate::support::send(addr, &signed(&bob)).await,
        ErrorCode::UnknownKey,
    );
    std::fs::write(
        &keys,
        client_entry("alice", &alice, "") + &client_entry("bob", &bob, ""),
    )
    .expect("write");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    assert!(
        eventually(async || reloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|line| line["trigger"] == "SIGHUP" && line["clients"] == 2))
        .await,
        "the SIGHUP reload read the new file"
    );
    assert!(
        eventually(async || crate::support::send(addr, &signed(&bob)).await.status == 200).await,
        "bob is trusted after SIGHUP"
    );
    assert_eq!(
        crate::support::send(addr, &signed(&alice)).await.status,
        200
    );
}

/// The `"keys file reloaded"` records of a binary's stdout, collected on a
/// thread of their own.
fn reload_records(
    stdout: std::process::ChildStdout,
) -> std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> {
    let records = std::sync::Arc::<std::sync::Mutex<Vec<serde_json::Value>>>::default();
    let collected = std::sync::Arc::clone(&records);
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if value["message"] == "keys file reloaded" {
                collected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(value);
            }
        }
    });
    records
}

#[tokio::test]
async fn sighup_without_a_keys_file_leaves_the_binary_serving() {
    let port = crate::support::free_port().to_string();
    let master = signet_core::public_key_hex(&Signer::new().key());
    let mut child = crate::binary(
        &[
            "--listen",
            "127.0.0.1",
            "--port",
            &port,
            "--github-api",
            "http://127.0.0.1:9",
            "--github-token",
            crate::support::TOKEN,
            "--master-key",
            &master,
        ],
        &[],
    )
    .stdout(std::process::Stdio::null())
    .spawn()
    .expect("spawn");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    crate::wait_until_healthy(addr, &mut child).await;
    let pid = child.id().to_string();
    for _ in 0..3 {
        let hup = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill -HUP");
        assert!(hup.success());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(child.try_wait().ok().flatten(), None, "still running");
    let _running = crate::security::Running(child);
    assert_eq!(
        crate::support::send(addr, &Request::get("/healthz"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_stale_admin_proof_is_refused_for_its_clock_not_its_key() {
    let admin = AdminClient {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], crate::support::free_port())),
        signer: Signer::new(),
    };
    let _env = Env::start_with(with_admin(&admin.signer, admin.addr.port())).await;
    let stale = admin.signer.sign_with(
        Claims {
            ts: crate::support::NOW - 120,
            purpose: "admin",
            ..Claims::default()
        },
        "GET",
        "/stats",
        b"",
    );
    assert_refused(
        &crate::support::send(admin.addr, &Request::get("/stats").proof(stale)).await,
        ErrorCode::ClockSkew,
    );
}

/// The proxy binary trusting the clients of `keys` (a path, followed if a
/// symlink), in front of `upstream`; its stdout is dropped.
async fn binary_with_keys_file(
    keys: &Path,
    upstream: &signet_standin::StandIn,
) -> (std::net::SocketAddr, crate::security::Running) {
    let port = crate::support::free_port().to_string();
    let mut child = crate::binary(
        &[
            "--listen",
            "127.0.0.1",
            "--port",
            &port,
            "--github-api",
            &upstream.url(),
            "--github-token",
            crate::support::TOKEN,
            "--keys-file",
            &keys.display().to_string(),
        ],
        &[],
    )
    .stdout(std::process::Stdio::null())
    .spawn()
    .expect("spawn");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    crate::wait_until_healthy(addr, &mut child).await;
    (addr, crate::security::Running(child))
}

/// A signed `GET /user` for the binary's real clock.
fn signed_now(signer: &Signer) -> Request {
    let now = crate::now();
    let claims = Claims {
        exp: now + 300,
        ts: now,
        purpose: "test",
    };
    Request::get("/user").proof(signer.sign_with(claims, "GET", "/user", b""))
}

/// Writes `text` to `path` and gives it the modification time `mtime`, as
/// `cp -p` and a Nix store (every file at 1 s past the epoch) do.
fn write_with_mtime(path: &Path, text: &str, mtime: std::time::SystemTime) {
    std::fs::write(path, text).expect("write");
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(mtime))
        .expect("set mtime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_file_rewritten_with_its_old_mtime_is_reloaded_without_sighup() {
    let upstream = signet_standin::StandIn::start(Some(crate::support::TOKEN))
        .await
        .expect("stand-in");
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.toml");
    let alice = Signer::new();
    let bob = Signer::new();
    let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    write_with_mtime(
        &keys,
        &(client_entry("alice", &alice, "") + &client_entry("bob", &bob, "")),
        mtime,
    );
    let (addr, _running) = binary_with_keys_file(&keys, &upstream).await;
    assert_eq!(
        crate::support::send(addr, &signed_now(&bob)).await.status,
        200
    );

    // Bob is removed; the file keeps its modification time.
    write_with_mtime(&keys, &client_entry("alice", &alice, ""), mtime);
    assert!(
        eventually(async || crate::support::send(addr, &signed_now(&bob)).await.status == 401)
            .await,
        "bob is cut off once the file drops him, whatever its mtime"
    );
    assert_eq!(
        crate::support::send(addr, &signed_now(&alice)).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_file_symlink_swapped_to_a_file_with_the_same_mtime_is_reloaded() {
    let upstream = signet_standin::StandIn::start(Some(crate::support::TOKEN))
        .await
        .expect("stand-in");
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = Signer::new();
    let bob = Signer::new();
    // Two generations, as a Nix store holds them: every file's mtime is 1.
    let store_mtime = std::time::UNIX_EPOCH + Duration::from_secs(1);
    let old = dir.path().join("old-keys.toml");
    let new = dir.path().join("new-keys.toml");
    write_with_mtime(
        &old,
        &(client_entry("alice", &alice, "") + &client_entry("bob", &bob, "")),
        store_mtime,
    );
    write_with_mtime(&new, &client_entry("alice", &alice, ""), store_mtime);
    let keys = dir.path().join("keys.toml");
    std::os::unix::fs::symlink(&old, &keys).expect("symlink");
    let (addr, _running) = binary_with_keys_file(&keys, &upstream).await;
    assert_eq!(
        crate::support::send(addr, &signed_now(&bob)).await.status,
        200
    );

    // The link is swapped atomically to the generation without bob.
    let next = dir.path().join("keys.toml.next");
    std::os::unix::fs::symlink(&new, &next).expect("symlink");
    std::fs::rename(&next, &keys).expect("swap the link");
    assert!(
        eventually(async || crate::support::send(addr, &signed_now(&bob)).await.status == 401)
            .await,
        "bob is cut off once the link names a file without him"
    );
    assert_eq!(
        crate::support::send(addr, &signed_now(&alice)).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_key_that_is_also_a_client_key_is_refused_at_startup_check_config_and_reload() {
    let admin = AdminClient {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], crate::support::free_port())),
        signer: Signer::new(),
    };
    let admin_hex = public_key_hex(&admin.signer.key());
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = Signer::new();
    let with_admin_as_client = dir.path().join("with-admin.toml");
    std::fs::write(
        &with_admin_as_client,
        client_entry("alice", &alice, "") + &client_entry("ops", &admin.signer, ""),
    )
    .expect("write");

    // As --master-key, at startup.
    let stderr = crate::real_binary::startup_error(
        &[
            "--github-token",
            "t",
            "--master-key",
            &admin_hex,
            "--admin-key",
            &admin_hex,
        ],
        &[],
    );
    assert!(stderr.contains("--admin-key"), "{stderr}");
    assert!(stderr.contains("client"), "{stderr}");
    // As a client of the keys file, at startup and in check-config.
    let keys_flag = with_admin_as_client.display().to_string();
    let stderr = crate::real_binary::startup_error(
        &[
            "--github-token",
            "t",
            "--keys-file",
            &keys_flag,
            "--admin-key",
            &admin_hex,
        ],
        &[],
    );
    assert!(stderr.contains("\"ops\""), "{stderr}");
    assert!(stderr.contains("admin key"), "{stderr}");
    let checked = crate::binary(
        &[
            "check-config",
            "--github-token",
            "t",
            "--keys-file",
            &keys_flag,
            "--admin-key",
            &admin_hex,
        ],
        &[],
    )
    .output()
    .expect("run check-config");
    assert_eq!(checked.status.code(), Some(1), "{checked:?}");
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(stderr.contains("admin key"), "{stderr}");

    // Added to the keys file of a running proxy: the reload is refused, by
    // the admin API and by the watcher alike.
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, client_entry("alice", &alice, "")).expect("write");
    let keys_path = keys.clone();
    let admin_config = with_admin(&admin.signer, admin.addr.port());
    let env = Env::start_with(move |config| {
        admin_config(config);
        config.master_keys.clear();
        config.keys_file = Some(keys_path);
    })
    .await;
    std::fs::copy(&with_admin_as_client, &keys).expect("copy");
    let reload = admin.post("/reload", "").await;
    assert_eq!(reload.status, 422, "{}", reload.text());
    assert!(reload.text().contains("admin key"), "{}", reload.text());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_refused(
        &get(&env, &admin.signer, "/user").await,
        ErrorCode::UnknownKey,
    );
    assert_eq!(get(&env, &alice, "/user").await.status, 200);
}

#[tokio::test]
async fn a_revoked_admin_ephemeral_key_is_unknown_to_the_admin_api_until_unrevoked() {
    let admin = AdminClient {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], crate::support::free_port())),
        signer: Signer::new(),
    };
    let _env = Env::start_with(with_admin(&admin.signer, admin.addr.port())).await;
    // An admin tool's binding: one ephemeral key signs each of its requests.
    let ephemeral = crate::support::random_key();
    let stats = async || {
        let proof = admin.signer.sign_with_ephemeral(
            AdminClient::claims(),
            &ephemeral,
            "GET",
            "/stats",
            b"",
        );
        crate::support::send(admin.addr, &Request::get("/stats").proof(proof)).await
    };
    assert_eq!(stats().await.status, 200);

    // Its key leaks: the operator revokes it, from another binding.
    let ek = signet_core::base64url::encode(ephemeral.verifying_key().as_bytes());
    let body = format!(
        r#"{{"ephemeral_key":"{ek}","until":{}}}"#,
        crate::support::NOW + 300
    );
    assert_eq!(admin.post("/revoke", &body).await.status, 200);
    let refused = stats().await;
    assert_refused(&refused, ErrorCode::UnknownKey);
    assert_eq!(
        admin.get("/stats").await.status,
        200,
        "the admin's other bindings still work"
    );

    assert_eq!(admin.post("/unrevoke", &body).await.status, 200);
    assert_eq!(stats().await.status, 200);
}

/// A point of small order (the identity, canonically encoded) and a
/// non-canonical encoding (y = p + 1, the identity again): no one may trust
/// either as a master key (spec §5, signature validity rules 2 and 3).
const SMALL_ORDER_KEY: &str = "0100000000000000000000000000000000000000000000000000000000000000";
const NON_CANONICAL_KEY: &str = "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_order_or_non_canonical_master_key_is_refused_at_startup_check_config_and_reload() {
    for (key, why) in [
        (SMALL_ORDER_KEY, "small order"),
        (NON_CANONICAL_KEY, "canonical"),
    ] {
        let stderr =
            crate::real_binary::startup_error(&["--github-token", "t", "--master-key", key], &[]);
        assert!(stderr.contains(why), "{stderr}");

        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("keys.toml");
        std::fs::write(
            &keys,
            format!("[[client]]\nname = \"evil\"\nkey = \"{key}\"\n"),
        )
        .expect("write");
        let checked = crate::binary(
            &[
                "check-config",
                "--github-token",
                "t",
                "--keys-file",
                &keys.display().to_string(),
            ],
            &[],
        )
        .output()
        .expect("run check-config");
        assert_eq!(checked.status.code(), Some(1), "{checked:?}");
        let stderr = String::from_utf8_lossy(&checked.stderr);
        assert!(stderr.contains("\"evil\""), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
    }

    // Written into the keys file of a running proxy: the reload is refused
    // (by the admin API and the watcher alike) and the clients it had keep
    // working.
    let admin = AdminClient {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], crate::support::free_port())),
        signer: Signer::new(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.toml");
    let alice = Signer::new();
    std::fs::write(&keys, client_entry("alice", &alice, "")).expect("write");
    let keys_path = keys.clone();
    let admin_config = with_admin(&admin.signer, admin.addr.port());
    let env = Env::start_with(move |config| {
        admin_config(config);
        config.master_keys.clear();
        config.keys_file = Some(keys_path);
    })
    .await;
    std::fs::write(
        &keys,
        client_entry("alice", &alice, "")
            + &format!("[[client]]\nname = \"evil\"\nkey = \"{SMALL_ORDER_KEY}\"\n"),
    )
    .expect("write");
    let reload = admin.post("/reload", "").await;
    assert_eq!(reload.status, 422, "{}", reload.text());
    assert!(reload.text().contains("small order"), "{}", reload.text());
    assert_eq!(get(&env, &alice, "/user").await.status, 200);
}
