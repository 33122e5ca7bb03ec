//! The [`Signer`]: a master key that binds short-lived ephemeral keys and
//! signs requests with them (spec §2–§4).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use signet_core::keys::Zeroizing;
use signet_core::{
    public_key_hex, signing_key_from_pem, Binding, BodyDigest, KeyError, Purpose, RequestParts,
    SigningKey,
};

/// The binding lifetime used unless [`Signer::with_ttl`] says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);

/// The longest binding lifetime a [`Signer`] accepts: the proxy's default
/// `max_binding_ttl` (spec §5 step 5).
pub const MAX_TTL: Duration = Duration::from_secs(900);

/// A binding is replaced once its remaining lifetime falls to this many
/// seconds or fewer (unless that is more than half the TTL): it covers the
/// proxy's default clock skew, so a proof never reaches a proxy whose clock
/// runs a little ahead with a binding that has already expired there.
const MIN_ROTATION_MARGIN: u64 = 30;

/// Why a master key could not be loaded.
///
/// Messages name the file but never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The key file could not be read.
    #[error("cannot read key file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file was read but is not a PKCS#8 Ed25519 PEM.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        source: KeyError,
    },
    /// A PEM string (not a file) is not a PKCS#8 Ed25519 PEM.
    #[error(transparent)]
    Pem(#[from] KeyError),
}

/// Why a [`Signer`] could not be configured or could not sign a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The purpose is longer than 64 characters or uses a character outside
    /// `A-Z a-z 0-9 . _ : / -`.
    #[error("invalid purpose {0:?}: use at most 64 characters from A-Z a-z 0-9 . _ : / -")]
    InvalidPurpose(String),
    /// The binding lifetime is shorter than one second or longer than
    /// [`MAX_TTL`].
    #[error("invalid binding lifetime {0:?}: must be between 1s and 15m")]
    InvalidTtl(Duration),
    /// The method is not an HTTP token (RFC 9110 §5.6.2).
    #[error("invalid HTTP method {0:?}")]
    InvalidMethod(String),
    /// The request-target is not origin-form (`/path?query`, visible ASCII,
    /// no fragment).
    #[error("invalid request target {0:?}: expected origin-form /path?query in visible ASCII, without a #fragment")]
    InvalidTarget(String),
    /// The request body is a stream, whose bytes are not known before it is
    /// sent, so it cannot be signed.
    #[error("cannot sign a streaming request body; give the body as bytes")]
    StreamingBody,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(getrandom::Error),
    /// The system clock reads a time before 1970.
    #[error("the system clock is set before 1970")]
    Clock,
}

/// Signs requests for a Signet proxy with a master key.
///
/// A `Signer` keeps one ephemeral key bound by the master key at a time and
/// replaces it with a new random one once the binding's remaining lifetime
/// falls below a margin (a fifth of the TTL, at least 30 s, at most half the
/// TTL), so the proxy never receives a binding that is about to expire. Each
/// request gets the current time and a fresh random nonce.
///
/// Share one `Signer` (e.g. in an [`Arc`]) between tasks: a proxy checks the
/// binding signature only once per ephemeral key, so reusing the binding makes
/// every later request cheaper there.
///
/// ```
/// use signet_client::Signer;
/// use signet_core::SigningKey;
/// use std::time::Duration;
///
/// let signer = Signer::new(SigningKey::from_bytes(&[1; 32]))
///     .with_purpose("ci:deploy")?
///     .with_ttl(Duration::from_secs(120))?;
/// let header = signer.sign("GET", "/user", b"")?;
/// assert!(header.starts_with("v1;mk="));
/// assert!(header.contains(";pur=ci:deploy;"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Signer {
    master: SigningKey,
    purpose: Purpose,
    ttl: u64,
    current: Mutex<Option<Arc<Ephemeral>>>,
}

/// An ephemeral key and the master's binding of it.
struct Ephemeral {
    key: SigningKey,
    binding: Binding,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("master_public_key", &self.master_public_key_hex())
            .field("purpose", &self.purpose)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for `master` with the empty purpose and a 5-minute binding
    /// lifetime.
    pub fn new(master: SigningKey) -> Self {
        Signer {
            master,
            purpose: Purpose::EMPTY,
            ttl: DEFAULT_TTL.as_secs(),
            current: Mutex::new(None),
        }
    }

    /// A signer whose master key is a PKCS#8 PEM document
    /// (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyFileError> {
        Ok(Signer::new(signing_key_from_pem(pem)?))
    }

    /// A signer whose master key is read from a PKCS#8 PEM file, such as the
    /// one `signet keygen` writes.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, KeyFileError> {
        let path = path.as_ref();
        let pem = std::fs::read_to_string(path)
            .map(Zeroizing::new)
            .map_err(|source| KeyFileError::Read {
                path: path.to_owned(),
                source,
            })?;
        let master = signing_key_from_pem(&pem).map_err(|source| KeyFileError::Parse {
            path: path.to_owned(),
            source,
        })?;
        Ok(Signer::new(master))
    }

    /// Sets the purpose written into every binding (the proxy may restrict a
    /// key to some purposes, and may use it as an audience).
    pub fn with_purpose(self, purpose: &str) -> Result<Self, SignError> {
        let purpose =
            Purpose::new(purpose).map_err(|_| SignError::InvalidPurpose(purpose.to_owned()))?;
        let ttl = self.ttl;
        Ok(self.replace_binding_settings(purpose, ttl))
    }

    /// Sets how long each binding lives, in whole seconds: from 1 s up to
    /// [`MAX_TTL`] (15 minutes). The default is [`DEFAULT_TTL`] (5 minutes).
    ///
    /// A proxy refuses a binding whose remaining lifetime exceeds its
    /// `max_binding_ttl` by its own clock, so a TTL equal to that maximum fails
    /// whenever the proxy's clock is behind the client's; keep a margin.
    pub fn with_ttl(self, ttl: Duration) -> Result<Self, SignError> {
        if ttl.as_secs() == 0 || ttl > MAX_TTL {
            return Err(SignError::InvalidTtl(ttl));
        }
        let purpose = self.purpose;
        Ok(self.replace_binding_settings(purpose, ttl.as_secs()))
    }

    fn replace_binding_settings(self, purpose: Purpose, ttl: u64) -> Self {
        // The old binding (if any) was made with the old settings.
        Signer {
            master: self.master,
            purpose,
            ttl,
            current: Mutex::new(None),
        }
    }

    /// The master public key as 64 lowercase hex characters: the value a proxy
    /// trusts (`SIGNET_MASTER_PUBLIC_KEY`).
    pub fn master_public_key_hex(&self) -> String {
        public_key_hex(&self.master.verifying_key())
    }

    /// The purpose written into every binding.
    pub fn purpose(&self) -> &str {
        self.purpose.as_str()
    }

    /// The lifetime of each binding.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl)
    }

    /// Signs one request now and returns the `Signet-Proof` header value.
    ///
    /// * `method` exactly as it goes on the request line (`GET`, not `get`);
    /// * `target` the origin-form request-target byte for byte as it goes on
    ///   the request line: path plus, when present, `?` and the query. No
    ///   normalisation happens here or at the proxy, so `/a/../b` and `/b` are
    ///   different targets;
    /// * `body` the exact body bytes (empty for none).
    pub fn sign(&self, method: &str, target: &str, body: &[u8]) -> Result<String, SignError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| SignError::Clock)?
            .as_secs();
        self.sign_at(method, target, body, now)
    }

    /// Like [`Signer::sign`], with `now` (unix seconds) given instead of read
    /// from the system clock: for tests, and for callers that own a clock.
    pub fn sign_at(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
        now: u64,
    ) -> Result<String, SignError> {
        check_method(method)?;
        check_target(target)?;
        let ephemeral = self.ephemeral_at(now)?;
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(SignError::Random)?;
        let request = RequestParts {
            method,
            target,
            body_digest: BodyDigest::of(body),
        };
        Ok(ephemeral
            .binding
            .sign_request(&ephemeral.key, &request, now, nonce)
            .to_string())
    }

    /// The ephemeral key to sign with at `now`, making a new one when the
    /// current binding is missing, close to expiry, or (after the clock went
    /// back) longer-lived than the TTL.
    fn ephemeral_at(&self, now: u64) -> Result<Arc<Ephemeral>, SignError> {
        // A panic elsewhere cannot leave the slot half-written: it only ever
        // holds a complete binding or nothing.
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ephemeral) = current.as_ref() {
            if self.is_usable(&ephemeral.binding, now) {
                return Ok(Arc::clone(ephemeral));
            }
        }
        let fresh = Arc::new(self.new_ephemeral(now)?);
        *current = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    fn is_usable(&self, binding: &Binding, now: u64) -> bool {
        let remaining = binding.exp.saturating_sub(now);
        remaining > rotation_margin(self.ttl) && remaining <= self.ttl
    }

    fn new_ephemeral(&self, now: u64) -> Result<Ephemeral, SignError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(SignError::Random)?;
        let key = SigningKey::from_bytes(&seed);
        let exp = now.saturating_add(self.ttl);
        let binding = Binding::sign(&self.master, &key.verifying_key(), exp, self.purpose);
        Ok(Ephemeral { key, binding })
    }
}

/// How close to expiry a binding may get before it is replaced: a fifth of
/// the TTL, at least [`MIN_ROTATION_MARGIN`], but never more than half the
/// TTL so that each binding serves at least half its life.
fn rotation_margin(ttl: u64) -> u64 {
    (ttl / 5).max(MIN_ROTATION_MARGIN).min(ttl / 2)
}

/// `method = token` (RFC 9110 §9.1, §5.6.2).
fn check_method(method: &str) -> Result<(), SignError> {
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(SignError::InvalidMethod(method.to_owned()));
    }
    Ok(())
}

/// Origin-form (`/path?query`) in visible ASCII. A `#` never reaches the
/// request line (clients drop the fragment), so a target containing one could
/// not match what the proxy sees.
fn check_target(target: &str) -> Result<(), SignError> {
    let valid = target.starts_with('/')
        && target
            .bytes()
            .all(|c| (0x21..=0x7e).contains(&c) && c != b'#');
    if !valid {
        return Err(SignError::InvalidTarget(target.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use signet_core::{Limits, ProofHeader, Verifier};

    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn master() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    fn verify(header: &str, method: &str, target: &str, body: &[u8], now: u64) -> ProofHeader {
        let verifier = Verifier::new([master().verifying_key()], Limits::default());
        let proof = ProofHeader::parse(header.as_bytes()).unwrap();
        let request = RequestParts {
            method,
            target,
            body_digest: BodyDigest::of(body),
        };
        verifier
            .check(&proof, now)
            .unwrap()
            .verify(&request)
            .unwrap();
        proof
    }

    #[test]
    fn signed_request_verifies_under_the_master_key() {
        let signer = Signer::new(master()).with_purpose("ci:deploy").unwrap();
        let header = signer
            .sign_at("POST", "/repos/o/r/issues?x=1", b"{\"title\":\"t\"}", NOW)
            .unwrap();
        let proof = verify(
            &header,
            "POST",
            "/repos/o/r/issues?x=1",
            b"{\"title\":\"t\"}",
            NOW,
        );
        assert_eq!(proof.pur.as_str(), "ci:deploy");
        assert_eq!(proof.ts, NOW);
        assert_eq!(proof.exp, NOW + DEFAULT_TTL.as_secs());
        assert_eq!(proof.mk, master().verifying_key().to_bytes());
    }

    #[test]
    fn sign_uses_the_system_clock() {
        let signer = Signer::new(master());
        let header = signer.sign("GET", "/user", b"").unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let proof = verify(&header, "GET", "/user", b"", now);
        assert!(proof.ts.abs_diff(now) <= 1);
    }

    #[test]
    fn signature_covers_method_target_and_body() {
        let signer = Signer::new(master());
        let header = signer.sign_at("POST", "/a?b", b"body", NOW).unwrap();
        let verifier = Verifier::new([master().verifying_key()], Limits::default());
        let proof = ProofHeader::parse(header.as_bytes()).unwrap();
        for (method, target, body) in [
            ("PUT", "/a?b", &b"body"[..]),
            ("POST", "/a", b"body"),
            ("POST", "/a?b", b"bodz"),
        ] {
            let request = RequestParts {
                method,
                target,
                body_digest: BodyDigest::of(body),
            };
            assert!(verifier
                .check(&proof, NOW)
                .unwrap()
                .verify(&request)
                .is_err());
        }
    }

    #[test]
    fn every_request_gets_a_fresh_nonce() {
        let signer = Signer::new(master());
        let a = ProofHeader::parse(signer.sign_at("GET", "/", b"", NOW).unwrap().as_bytes());
        let b = ProofHeader::parse(signer.sign_at("GET", "/", b"", NOW).unwrap().as_bytes());
        assert_ne!(a.unwrap().n, b.unwrap().n);
    }

    #[test]
    fn binding_is_reused_until_the_rotation_margin() {
        let signer = Signer::new(master()); // ttl 300 s, margin 60 s
        let ek = |now| {
            let header = signer.sign_at("GET", "/", b"", now).unwrap();
            ProofHeader::parse(header.as_bytes()).unwrap().ek
        };
        let first = ek(NOW);
        assert_eq!(ek(NOW + 1), first);
        assert_eq!(ek(NOW + 239), first, "61 s left: still used");
        let second = ek(NOW + 240);
        assert_ne!(second, first, "60 s left: replaced");
        assert_eq!(ek(NOW + 241), second);
    }

    #[test]
    fn binding_is_replaced_when_the_clock_goes_back() {
        let signer = Signer::new(master());
        let header = signer.sign_at("GET", "/", b"", NOW).unwrap();
        let first = ProofHeader::parse(header.as_bytes()).unwrap();
        let header = signer.sign_at("GET", "/", b"", NOW - 10).unwrap();
        let second = verify(&header, "GET", "/", b"", NOW - 10);
        assert_ne!(second.ek, first.ek);
        assert_eq!(second.exp, NOW - 10 + 300);
    }

    #[test]
    fn rotation_margin_is_a_fifth_of_the_ttl_within_bounds() {
        assert_eq!(rotation_margin(300), 60);
        assert_eq!(rotation_margin(900), 180);
        assert_eq!(rotation_margin(120), 30);
        assert_eq!(rotation_margin(40), 20);
        assert_eq!(rotation_margin(1), 0);
    }

    #[test]
    fn ttl_must_be_between_one_second_and_fifteen_minutes() {
        assert!(Signer::new(master()).with_ttl(Duration::ZERO).is_err());
        assert!(Signer::new(master())
            .with_ttl(Duration::from_millis(999))
            .is_err());
        assert!(Signer::new(master())
            .with_ttl(Duration::from_secs(901))
            .is_err());
        let signer = Signer::new(master())
            .with_ttl(Duration::from_secs(900))
            .unwrap();
        let proof = verify(
            &signer.sign_at("GET", "/", b"", NOW).unwrap(),
            "GET",
            "/",
            b"",
            NOW,
        );
        assert_eq!(proof.exp, NOW + 900);
    }

    #[test]
    fn changing_settings_drops_the_old_binding() {
        let signer = Signer::new(master());
        signer.sign_at("GET", "/", b"", NOW).unwrap();
        let signer = signer.with_purpose("other").unwrap();
        let header = signer.sign_at("GET", "/", b"", NOW).unwrap();
        assert_eq!(verify(&header, "GET", "/", b"", NOW).pur.as_str(), "other");
    }

    #[test]
    fn invalid_purpose_is_refused() {
        for bad in ["has space", "a@b", &"p".repeat(65)] {
            let err = Signer::new(master()).with_purpose(bad).unwrap_err();
            assert!(matches!(err, SignError::InvalidPurpose(_)), "{bad}");
        }
    }

    #[test]
    fn methods_must_be_http_tokens() {
        let signer = Signer::new(master());
        for good in ["GET", "PATCH", "M-SEARCH", "get"] {
            assert!(signer.sign_at(good, "/", b"", NOW).is_ok(), "{good}");
        }
        for bad in ["", "GE T", "GET\n", "GÉT", "GET/"] {
            let err = signer.sign_at(bad, "/", b"", NOW).unwrap_err();
            assert!(matches!(err, SignError::InvalidMethod(_)), "{bad:?}");
        }
    }

    #[test]
    fn targets_must_be_origin_form() {
        let signer = Signer::new(master());
        for good in ["/", "//x", "/a?", "/a?b=c&d", "/a/../b", "/%7e"] {
            assert!(signer.sign_at("GET", good, b"", NOW).is_ok(), "{good}");
        }
        for bad in [
            "",
            "*",
            "user",
            "http://example.com/",
            "example.com:443",
            "/a b",
            "/a#frag",
            "/é",
            "/a\r\n",
        ] {
            let err = signer.sign_at("GET", bad, b"", NOW).unwrap_err();
            assert!(matches!(err, SignError::InvalidTarget(_)), "{bad:?}");
        }
    }

    #[test]
    fn a_bad_pem_is_refused_without_echoing_it() {
        let err = Signer::from_pem("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n").unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"));
    }

    #[test]
    fn pem_file_round_trips_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let pem = signet_core::signing_key_to_pem(&master()).unwrap();
        std::fs::write(&path, pem.as_bytes()).unwrap();
        let signer = Signer::from_pem_file(&path).unwrap();
        assert_eq!(
            signer.master_public_key_hex(),
            public_key_hex(&master().verifying_key())
        );

        let missing = Signer::from_pem_file(dir.path().join("nope.pem")).unwrap_err();
        assert!(missing.to_string().contains("nope.pem"), "{missing}");

        std::fs::write(&path, "not a key").unwrap();
        let garbage = Signer::from_pem_file(&path).unwrap_err();
        assert!(garbage.to_string().contains("k.pem"), "{garbage}");
    }

    #[test]
    fn debug_output_shows_no_private_key() {
        let signer = Signer::new(master());
        let debug = format!("{signer:?}");
        assert!(debug.contains(&signer.master_public_key_hex()));
        assert!(!debug.contains(&hex_of(&master().to_bytes())));
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
