//! An HTTPS upstream: one signed by the configured CA is forwarded to, one
//! with an untrusted certificate is a bad gateway.

use std::sync::Arc;

use signet_core::ErrorCode;
use signet_standin::StandIn;

use crate::support::{assert_refused, config, send, Request, RunningProxy, Signer, TOKEN};

struct TlsUpstream {
    upstream: StandIn,
    ca_file: tempfile::NamedTempFile,
}

/// An HTTPS stand-in whose certificate (for `localhost` and `127.0.0.1`) is
/// signed by a fresh private CA, written as PEM to a temporary file.
async fn tls_upstream() -> TlsUpstream {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "signet-proxy test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .unwrap();
    let upstream = StandIn::start_tls(Some(TOKEN), Arc::new(tls))
        .await
        .unwrap();

    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), ca.pem()).unwrap();
    TlsUpstream { upstream, ca_file }
}

#[tokio::test]
async fn an_https_upstream_signed_by_the_configured_ca_is_forwarded_to() {
    let tls = tls_upstream().await;
    let signer = Signer::new();
    let url = format!("https://localhost:{}", tls.upstream.addr().port());
    let mut config = config(&url, &signer);
    config.upstream_ca_file = Some(tls.ca_file.path().to_owned());
    let proxy = RunningProxy::start(&config).await;

    let reply = send(
        proxy.addr,
        &Request::get("/repos/o/r").proof(signer.sign("GET", "/repos/o/r", b"")),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["full_name"], "o/r");
    let seen = tls.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers.get("authorization").map(|v| v.as_bytes()),
        Some(format!("Bearer {TOKEN}").as_bytes())
    );
    assert_eq!(
        seen[0].headers.get("host").map(|v| v.as_bytes()),
        Some(format!("localhost:{}", tls.upstream.addr().port()).as_bytes()),
        "Host is the upstream's authority, with its non-default port"
    );
}

#[tokio::test]
async fn an_https_upstream_with_an_untrusted_certificate_is_bad_gateway() {
    let tls = tls_upstream().await;
    let signer = Signer::new();
    let url = format!("https://localhost:{}", tls.upstream.addr().port());
    let proxy = RunningProxy::start(&config(&url, &signer)).await;
    let reply = send(
        proxy.addr,
        &Request::get("/repos/o/r").proof(signer.sign("GET", "/repos/o/r", b"")),
    )
    .await;
    assert_refused(&reply, ErrorCode::BadGateway);
    assert!(
        tls.upstream.requests().is_empty(),
        "no request crossed the failed handshake"
    );
}
