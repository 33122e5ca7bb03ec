//! Key files: `signet keygen`, `signet export-key-id`, and keys that
//! OpenSSL and Python's `cryptography` read and write.

use predicates::prelude::*;
use signet_core::parse_public_key_hex;
use tempfile::TempDir;

use crate::support::{is_lower_hex_key, keygen, signet, stdout_line, verify};

// ---------------------------------------------------------------- keygen

#[test]
fn keygen_writes_a_private_pkcs8_pem_and_prints_its_public_key() {
    let dir = TempDir::new().unwrap();
    let (path, public) = keygen(&dir);

    assert!(is_lower_hex_key(&public), "{public}");
    assert!(parse_public_key_hex(&public).is_ok());
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let key = signet_core::signing_key_from_pem(&pem).unwrap();
    assert_eq!(signet_core::public_key_hex(&key.verifying_key()), public);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn keygen_makes_a_new_key_each_time() {
    let (a, b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    assert_ne!(keygen(&a).1, keygen(&b).1);
}

#[test]
fn keygen_refuses_to_overwrite_without_force() {
    let dir = TempDir::new().unwrap();
    let (path, _) = keygen(&dir);
    let before = std::fs::read(&path).unwrap();

    signet()
        .args(["keygen", "--out"])
        .arg(&path)
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("already exists; use --force"));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn keygen_force_replaces_the_key_and_makes_it_private() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("master-key.pem");
    std::fs::write(&path, "old").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    let output = signet()
        .args(["keygen", "--force", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let public = stdout_line(&output.stdout);
    let pem = std::fs::read_to_string(&path).unwrap();
    let key = signet_core::signing_key_from_pem(&pem).unwrap();
    assert_eq!(signet_core::public_key_hex(&key.verifying_key()), public);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // No temporary file is left beside the key.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn keygen_writes_master_key_pem_in_the_current_directory_by_default() {
    let dir = TempDir::new().unwrap();
    signet()
        .arg("keygen")
        .current_dir(dir.path())
        .assert()
        .success();
    assert!(dir.path().join("master-key.pem").is_file());
}

// ---------------------------------------------------------------- export-key-id

#[test]
fn export_key_id_prints_the_public_key_that_keygen_printed() {
    let dir = TempDir::new().unwrap();
    let (path, public) = keygen(&dir);
    signet()
        .args(["export-key-id", "--key"])
        .arg(&path)
        .assert()
        .success()
        .stdout(format!("{public}\n"));
    // The default file name, and the environment variable.
    signet()
        .arg("export-key-id")
        .current_dir(dir.path())
        .assert()
        .success()
        .stdout(format!("{public}\n"));
    signet()
        .arg("export-key-id")
        .env("SIGNET_KEY_FILE", &path)
        .assert()
        .success()
        .stdout(format!("{public}\n"));
}

#[test]
fn a_missing_key_file_is_a_clear_error() {
    let dir = TempDir::new().unwrap();
    signet()
        .args(["export-key-id", "--key"])
        .arg(dir.path().join("nope.pem"))
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::starts_with("signet: cannot read key file "))
        .stderr(predicate::str::contains("nope.pem"));
}

#[test]
fn a_key_file_that_is_not_a_pem_is_refused_without_echoing_it() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("bad.pem");
    std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\nU0VDUkVUCg==\n").unwrap();
    signet()
        .args(["export-key-id", "--key"])
        .arg(&path)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("PKCS#8"))
        .stderr(predicate::str::contains("U0VDUkVUCg").not());
}

// ---------------------------------------------------------------- interop

/// Runs a real tool (the test script installs it); a missing tool fails the
/// test instead of skipping it.
fn run_tool(program: &str, args: &[&str]) -> std::process::Output {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed (scripts/test installs it): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn a_key_from_keygen_loads_in_openssl_with_the_same_public_key() {
    let dir = TempDir::new().unwrap();
    let (path, public) = keygen(&dir);
    let path = path.to_str().unwrap();
    run_tool("openssl", &["pkey", "-in", path, "-noout"]);
    let der = run_tool(
        "openssl",
        &["pkey", "-in", path, "-pubout", "-outform", "DER"],
    )
    .stdout;
    assert!(der.len() >= 32, "{der:?}");
    let derived: String = der[der.len() - 32..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(derived, public);
}

#[test]
fn a_key_from_keygen_loads_in_python_cryptography_with_the_same_public_key() {
    let dir = TempDir::new().unwrap();
    let (path, public) = keygen(&dir);
    let script = "import sys\n\
from cryptography.hazmat.primitives.serialization import load_pem_private_key, Encoding, PublicFormat\n\
key = load_pem_private_key(open(sys.argv[1], 'rb').read(), password=None)\n\
print(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex())";
    let output = run_tool("python3", &["-c", script, path.to_str().unwrap()]);
    assert_eq!(stdout_line(&output.stdout), public);
}

#[test]
fn a_key_made_by_openssl_signs_proofs_that_verify() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("openssl-key.pem");
    run_tool(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "ed25519",
            "-out",
            path.to_str().unwrap(),
        ],
    );
    let output = signet()
        .args(["export-key-id", "--key"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let public = stdout_line(&output.stdout);
    let output = signet()
        .args(["sign", "--key"])
        .arg(&path)
        .args(["GET", "/user"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let master = parse_public_key_hex(&public).unwrap();
    assert!(verify(&stdout_line(&output.stdout), &master, "GET", "/user", b"").is_ok());
}
