//! Keys and proofs: throwaway keys, and a signer that makes Signet proofs
//! with any claim a test wants to get wrong.

use signet_core::{
    Binding, BodyDigest, ProofHeader, Purpose, RequestParts, SigningKey, VerifyingKey,
};

use super::NOW;

/// `N` random bytes.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("random bytes");
    bytes
}

/// A throwaway Ed25519 key.
pub fn random_key() -> SigningKey {
    SigningKey::from_bytes(&random_bytes())
}

/// What a test may choose about a proof besides the request it covers.
#[derive(Debug, Clone, Copy)]
pub struct Claims<'a> {
    /// Binding expiry.
    pub exp: u64,
    /// Request time.
    pub ts: u64,
    /// Binding purpose.
    pub purpose: &'a str,
}

impl Default for Claims<'_> {
    fn default() -> Self {
        Claims {
            exp: NOW + 300,
            ts: NOW,
            purpose: "test",
        }
    }
}

/// A master key that signs proofs the way a client does: a fresh ephemeral
/// key and nonce for every proof.
#[derive(Debug)]
pub struct Signer {
    master: SigningKey,
}

impl Signer {
    /// A signer with a new random master key.
    pub fn new() -> Self {
        Signer {
            master: random_key(),
        }
    }

    /// A signer for a given master key.
    pub fn with_master(master: SigningKey) -> Self {
        Signer { master }
    }

    /// The master public key a proxy must trust.
    pub fn key(&self) -> VerifyingKey {
        self.master.verifying_key()
    }

    /// The master private key.
    pub fn master(&self) -> &SigningKey {
        &self.master
    }

    /// A valid proof (default claims) as a header value.
    pub fn sign(&self, method: &str, target: &str, body: &[u8]) -> String {
        self.sign_with(Claims::default(), method, target, body)
            .to_string()
    }

    /// A proof with the given claims, as a parsed header the test may tamper with.
    pub fn sign_with(
        &self,
        claims: Claims<'_>,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> ProofHeader {
        self.sign_with_nonce(claims, method, target, body, random_bytes())
    }

    /// Like [`Signer::sign_with`] with a chosen nonce.
    pub fn sign_with_nonce(
        &self,
        claims: Claims<'_>,
        method: &str,
        target: &str,
        body: &[u8],
        nonce: [u8; 16],
    ) -> ProofHeader {
        let ephemeral = random_key();
        let purpose = Purpose::new(claims.purpose).expect("test purposes are valid");
        let binding = Binding::sign(
            &self.master,
            &ephemeral.verifying_key(),
            claims.exp,
            purpose,
        );
        let request = RequestParts {
            method,
            target,
            body_digest: BodyDigest::of(body),
        };
        binding.sign_request(&ephemeral, &request, claims.ts, nonce)
    }

    /// Like [`Signer::sign_with`], signed by a chosen ephemeral key: several
    /// proofs of one binding, as a client makes them until its binding expires.
    pub fn sign_with_ephemeral(
        &self,
        claims: Claims<'_>,
        ephemeral: &SigningKey,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> ProofHeader {
        let purpose = Purpose::new(claims.purpose).expect("test purposes are valid");
        let binding = Binding::sign(
            &self.master,
            &ephemeral.verifying_key(),
            claims.exp,
            purpose,
        );
        let request = RequestParts {
            method,
            target,
            body_digest: BodyDigest::of(body),
        };
        binding.sign_request(ephemeral, &request, claims.ts, random_bytes())
    }
}
