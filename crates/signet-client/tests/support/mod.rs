//! What the topics share: the `signet` binary with a clean environment, a
//! fresh key from `signet keygen`, and a proof checked as the proxy would.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use assert_cmd::Command;
use signet_core::{BodyDigest, Limits, ProofHeader, RequestParts, Verifier, VerifyingKey};
use tempfile::TempDir;

/// The `signet` binary, unaffected by the caller's environment (its own
/// variables, and forward-proxy settings that reqwest would follow).
pub fn signet() -> Command {
    let mut cmd = Command::cargo_bin("signet").unwrap();
    for var in [
        "SIGNET_KEY_FILE",
        "SIGNET_PROXY",
        "SIGNET_PURPOSE",
        "http_proxy",
        "HTTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `signet keygen --out DIR/master-key.pem`; returns the path and the
/// printed public key.
pub fn keygen(dir: &TempDir) -> (PathBuf, String) {
    let path = dir.path().join("master-key.pem");
    let output = signet()
        .args(["keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    (path, stdout_line(&output.stdout))
}

/// The one line a command printed, without its newline.
pub fn stdout_line(stdout: &[u8]) -> String {
    let text = std::str::from_utf8(stdout).unwrap();
    assert!(
        text.ends_with('\n') && text.lines().count() == 1,
        "{text:?}"
    );
    text.trim_end().to_owned()
}

/// The wall clock, in unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Verifies a header value as the proxy would, now, for this request.
pub fn verify(
    header: &str,
    master: &VerifyingKey,
    method: &str,
    target: &str,
    body: &[u8],
) -> Result<ProofHeader, String> {
    let proof = ProofHeader::parse(header.as_bytes()).map_err(|e| e.to_string())?;
    let verifier = Verifier::new([*master], Limits::default());
    let request = RequestParts {
        method,
        target,
        body_digest: BodyDigest::of(body),
    };
    verifier
        .check(&proof, now())
        .map_err(|e| e.to_string())?
        .verify(&request)
        .map_err(|e| e.to_string())?;
    Ok(proof)
}

/// Whether `text` is a public key as `signet` prints it: 64 lower-case hex digits.
pub fn is_lower_hex_key(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The token the real proxy injects in these tests.
pub const SHARED_TOKEN: &str = "ghs_shared_token_for_cli_tests";
