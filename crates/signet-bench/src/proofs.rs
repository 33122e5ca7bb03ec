//! Pre-generated requests: one fresh proof each, signed before the clock
//! of a measurement starts, so signing is never on anyone's CPU account but
//! this tool's.

use std::time::{SystemTime, UNIX_EPOCH};

use signet_core::{Binding, BodyDigest, Purpose, RequestParts, SigningKey};

use crate::http;

/// The bench client's master key (a fixed, public test key).
pub fn master() -> SigningKey {
    SigningKey::from_bytes(&[0x5e; 32])
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// What each request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A valid, unique proof per request (the binding is the same, so the
    /// proxy has it cached after the first request).
    Signed,
    /// A `Signet-Proof` header that fails to parse: refused before any key
    /// lookup or signature check.
    Junk,
    /// No proof at all (for the upstream directly).
    Plain,
}

/// `count` requests, built on every core at once.
pub fn requests(kind: Kind, host: &str, target: &str, count: usize) -> Vec<Vec<u8>> {
    match kind {
        Kind::Plain => (0..count)
            .map(|_| http::get(host, target, None, false))
            .collect(),
        Kind::Junk => (0..count)
            .map(|_| http::get(host, target, Some("v1 this-is-not-a-proof!"), false))
            .collect(),
        Kind::Signed => signed(host, target, count),
    }
}

fn signed(host: &str, target: &str, count: usize) -> Vec<Vec<u8>> {
    let master = master();
    let ephemeral = SigningKey::from_bytes(&[0xe7; 32]);
    let start = now();
    let binding = Binding::sign(
        &master,
        &ephemeral.verifying_key(),
        start + 600,
        Purpose::EMPTY,
    );
    // Nonces: a per-run prefix (the wall clock in ns) and a counter, so no
    // two requests of any run ever share one.
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = count.div_ceil(threads.max(1));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (binding, ephemeral) = (&binding, &ephemeral);
                scope.spawn(move || {
                    let from = t * per;
                    let to = count.min(from + per);
                    (from..to)
                        .map(|i| {
                            let mut nonce = [0u8; 16];
                            nonce[..8].copy_from_slice(&run.to_be_bytes());
                            nonce[8..].copy_from_slice(&(i as u64).to_be_bytes());
                            let request = RequestParts {
                                method: "GET",
                                target,
                                body_digest: BodyDigest::of(b""),
                            };
                            let proof = binding
                                .sign_request(ephemeral, &request, start, nonce)
                                .to_string();
                            http::get(host, target, Some(&proof), false)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap_or_default())
            .collect()
    })
}

/// One signed GET that asks the server to close the connection after it.
pub fn one_closing(host: &str, target: &str) -> Vec<u8> {
    let mut request = signed(host, target, 1).pop().unwrap_or_default();
    // Turn the final CRLF into `connection: close` + CRLF CRLF.
    request.truncate(request.len().saturating_sub(2));
    request.extend_from_slice(b"connection: close\r\n\r\n");
    request
}
