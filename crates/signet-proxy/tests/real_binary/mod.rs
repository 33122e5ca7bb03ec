//! The real binary: startup errors, flags against environment variables,
//! the JSON log lines and SIGTERM, the `demo` command.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use signet_core::ErrorCode;
use signet_standin::StandIn;

use crate::support::{
    assert_healthy, assert_no_token, assert_refused, binary, free_port, now, send, terminate,
    wait_exit, wait_until_healthy, Claims, Request, Signer, TOKEN,
};

const MASTER_HEX: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// Runs the binary, which must refuse to start; returns what it printed.
pub(crate) fn startup_error(args: &[&str], env: &[(&str, &str)]) -> String {
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

#[cfg(feature = "demo")]
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
