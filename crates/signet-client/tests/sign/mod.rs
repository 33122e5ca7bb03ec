//! `signet sign`: a proof header for a request, checked as the proxy would.

use predicates::prelude::*;
use signet_core::parse_public_key_hex;
use tempfile::TempDir;

use crate::support::{keygen, now, signet, stdout_line, verify};

#[test]
fn sign_prints_a_proof_that_verifies_for_a_post_with_data() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let body = r#"{"title":"Found a bug"}"#;
    let output = signet()
        .args(["sign", "--key"])
        .arg(&key)
        .args(["POST", "/repos/o/r/issues?x=1", "--data", body])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let header = stdout_line(&output.stdout);

    let master = parse_public_key_hex(&public).unwrap();
    let proof = verify(
        &header,
        &master,
        "POST",
        "/repos/o/r/issues?x=1",
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(proof.pur.as_str(), "");
    assert!(proof.exp.abs_diff(now() + 300) <= 2, "default ttl is 5m");
    // The signature covers the body.
    assert!(verify(&header, &master, "POST", "/repos/o/r/issues?x=1", b"").is_err());
}

#[test]
fn sign_reads_data_from_a_file() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let body = b"{\"body\":\"line one\\nline two\"}\n\x00binary";
    let data = dir.path().join("body.json");
    std::fs::write(&data, body).unwrap();

    let output = signet()
        .args(["sign", "--key"])
        .arg(&key)
        .args(["PATCH", "/repos/o/r/issues/1"])
        .arg(format!("--data=@{}", data.display()))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let master = parse_public_key_hex(&public).unwrap();
    verify(
        &stdout_line(&output.stdout),
        &master,
        "PATCH",
        "/repos/o/r/issues/1",
        body,
    )
    .unwrap();
}

#[test]
fn sign_reads_data_from_stdin() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let output = signet()
        .args(["sign", "--key"])
        .arg(&key)
        .args(["PUT", "/x", "-d", "@-"])
        .write_stdin("from stdin")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let master = parse_public_key_hex(&public).unwrap();
    verify(
        &stdout_line(&output.stdout),
        &master,
        "PUT",
        "/x",
        b"from stdin",
    )
    .unwrap();
}

#[test]
fn sign_without_data_signs_an_empty_body() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let output = signet()
        .args(["sign", "--key"])
        .arg(&key)
        .args(["GET", "/user"])
        .output()
        .unwrap();
    let master = parse_public_key_hex(&public).unwrap();
    verify(&stdout_line(&output.stdout), &master, "GET", "/user", b"").unwrap();
}

#[test]
fn sign_writes_purpose_and_ttl_into_the_binding() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let output = signet()
        .args(["sign", "--key"])
        .arg(&key)
        .args(["--purpose", "ci:deploy", "--ttl", "1m30s", "GET", "/user"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let master = parse_public_key_hex(&public).unwrap();
    let proof = verify(&stdout_line(&output.stdout), &master, "GET", "/user", b"").unwrap();
    assert_eq!(proof.pur.as_str(), "ci:deploy");
    assert!(proof.exp.abs_diff(now() + 90) <= 2);
}

#[test]
fn sign_refuses_a_target_that_is_not_origin_form() {
    let dir = TempDir::new().unwrap();
    let (key, _) = keygen(&dir);
    for target in ["user", "https://api.github.com/user", "/a b"] {
        signet()
            .args(["sign", "--key"])
            .arg(&key)
            .args(["GET", target])
            .assert()
            .code(1)
            .stdout("")
            .stderr(predicate::str::contains("invalid request target"));
    }
}

#[test]
fn sign_refuses_a_bad_purpose_or_ttl() {
    let dir = TempDir::new().unwrap();
    let (key, _) = keygen(&dir);
    signet()
        .args(["sign", "--key"])
        .arg(&key)
        .args(["--purpose", "no spaces", "GET", "/"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("invalid purpose"));
    signet()
        .args(["sign", "--key"])
        .arg(&key)
        .args(["--ttl", "1h", "GET", "/"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("between 1s and 15m"));
}
