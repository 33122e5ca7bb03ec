//! The properties the `fuzz/` targets of signet-core assert, one function
//! per target. The fuzz crate includes this file (`#[path]`), and
//! `fuzz_corpus/mod.rs` replays each target's committed corpus through the
//! same function, so `cargo test` on stable checks every corpus input.
//!
//! Each function panics (the fuzzer's "crash") exactly when a property
//! fails; it never panics on input the property allows.

use signet_core::{
    canonical_request, Binding, BodyDigest, ContentDigest, ContentDigestError, Limits, ProofHeader,
    Purpose, RequestParts, SigningKey, Verifier, VerifyError, MAX_CONTENT_DIGEST_LEN,
};

/// Reads structured values off the front of fuzz input; past the end every
/// read yields zeros or empty, so any input decodes.
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// A cursor over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data }
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next `N` bytes, zero-padded.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.byte();
        }
        out
    }

    /// A length byte, then up to that many bytes.
    pub fn bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte()).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Target `proof_header`: the parser never panics, a parsed header
/// re-serialises to a header that parses to the same value, and where the
/// input is already canonical (the eight fields in the spec's order, no
/// unknown keys) re-serialising gives back the input byte for byte.
pub fn proof_header(data: &[u8]) {
    let mut unknown = 0usize;
    let Ok(header) = ProofHeader::parse_with(data, |_, _| unknown += 1) else {
        return;
    };
    let text = header.to_string();
    assert_eq!(
        ProofHeader::parse(text.as_bytes()).as_ref(),
        Ok(&header),
        "format then parse changed the header"
    );
    let keys: Vec<&[u8]> = data
        .split(|&c| c == b';')
        .skip(1)
        .map(|element| element.split(|&c| c == b'=').next().unwrap_or_default())
        .collect();
    let canonical_order: [&[u8]; 8] = [b"mk", b"ek", b"exp", b"pur", b"b", b"ts", b"n", b"s"];
    if unknown == 0 && keys == canonical_order {
        assert_eq!(
            text.as_bytes(),
            data,
            "a canonical header did not re-serialise to itself"
        );
    }
}

/// Target `canonical_request`: building never panics, and the canonical
/// request of a newline-free method and target reads back as exactly its
/// six lines — prefix, method, target, decimal `ts`, base64url nonce and
/// body digest — so two different requests never share one (the
/// signature covers exactly these parts).
pub fn canonical_request_target(data: &[u8]) {
    let mut input = Cursor::new(data);
    let ts = u64::from_le_bytes(input.array());
    let n: [u8; 16] = input.array();
    let method = String::from_utf8_lossy(input.bytes()).into_owned();
    let target = String::from_utf8_lossy(input.bytes()).into_owned();
    let body = input.rest();
    let request = RequestParts {
        method: &method,
        target: &target,
        body_digest: BodyDigest::of(body),
    };
    let canonical = canonical_request(&request, ts, &n);
    // A reused, dirty buffer gives the same bytes.
    let mut reused = b"left over from an earlier request\n".to_vec();
    signet_core::request::write_canonical(&mut reused, &request, ts, &n);
    assert_eq!(reused, canonical, "write_canonical depends on the buffer");

    if method.contains('\n') || target.contains('\n') {
        return;
    }
    let text = std::str::from_utf8(&canonical).unwrap_or_else(|_| panic!("not UTF-8"));
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.len(), 6, "{text:?}");
    assert_eq!(lines[0], "signet-request-v1");
    assert_eq!(lines[1], method);
    assert_eq!(lines[2], target);
    assert_eq!(lines[3], ts.to_string());
    assert_eq!(
        signet_core::base64url::decode_array::<16>(lines[4]),
        Some(n),
        "nonce line"
    );
    assert_eq!(
        signet_core::base64url::decode_array::<32>(lines[5]),
        Some(BodyDigest::of(body).0),
        "digest line"
    );
}

/// The clock of the `verify` target: near the spec vectors' time.
const BASE_NOW: u64 = 1_700_000_000;

/// Target `verify`: the whole verification stage (parse, steps 3–6, steps
/// 8–9) on a proof built inside the target from fuzz-chosen keys, times,
/// purpose, nonce, method, target and body, then mutated by the fuzzer.
///
/// * The unmutated proof gets exactly the verdict steps 4–6 call for:
///   accepted inside the limits, the right refusal outside them.
/// * After the mutations (flip, insert or delete bytes of the header, the
///   method, the target, the body, or move `now`), the proof is accepted
///   only if the mutated header still parses to the very same proof, the
///   method, target and body are unchanged and `now` is still inside the
///   limits: no signed byte can change unnoticed, including when the
///   binding is already in the verifier's cache.
///
/// Input starting with `0xff` is instead taken as it comes: two bytes of
/// `now`, then header, method, target and body separated by newlines,
/// verified against the spec vectors' master key. Whatever it holds,
/// verification never panics and gives the same verdict with a warm
/// binding cache as without one.
pub fn verify(data: &[u8]) {
    if let Some((0xff, rest)) = data.split_first() {
        return verify_arbitrary(rest);
    }
    let mut input = Cursor::new(data);
    let [master_seed, ephemeral_seed] = input.array();
    let now = BASE_NOW + u64::from(u16::from_le_bytes(input.array()));
    let exp_offset = i64::from(i16::from_le_bytes(input.array()) % 1024);
    let ts_offset = i64::from(input.byte() as i8);
    let purpose: String = input
        .bytes()
        .iter()
        .take(64)
        .map(|&b| {
            const CHARSET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/-";
            char::from(CHARSET[usize::from(b) % CHARSET.len()])
        })
        .collect();
    let nonce: [u8; 16] = input.array();
    let method = String::from_utf8_lossy(input.bytes()).into_owned();
    let target = String::from_utf8_lossy(input.bytes()).into_owned();
    let body = input.bytes().to_vec();

    let master = SigningKey::from_bytes(&[master_seed; 32]);
    let ephemeral = SigningKey::from_bytes(&[ephemeral_seed ^ 0x5a; 32]);
    let exp = now.saturating_add_signed(exp_offset);
    let ts = now.saturating_add_signed(ts_offset);
    let Ok(purpose) = Purpose::new(&purpose) else {
        panic!("the purpose charset is the spec's");
    };
    let binding = Binding::sign(&master, &ephemeral.verifying_key(), exp, purpose);
    let request = RequestParts {
        method: &method,
        target: &target,
        body_digest: BodyDigest::of(&body),
    };
    let proof = binding.sign_request(&ephemeral, &request, ts, nonce);
    let header = proof.to_string();

    let limits = Limits::default();
    let verifier = Verifier::new([master.verifying_key()], limits);
    let expected = if now > exp {
        Err(VerifyError::BindingExpired)
    } else if exp - now > limits.max_binding_ttl {
        Err(VerifyError::BindingTtlTooLong)
    } else if ts.abs_diff(now) > limits.clock_skew {
        Err(VerifyError::ClockSkew)
    } else {
        Ok(())
    };
    let verdict = run_verification(&verifier, header.as_bytes(), &request, now);
    assert_eq!(verdict, expected.map_err(Some), "the valid proof's verdict");

    // The mutations: (what, where, value) triples.
    let mut header = header.into_bytes();
    let mut method = method.clone().into_bytes();
    let mut target = target.clone().into_bytes();
    let mut body = body;
    let mut mutated_now = now;
    let mutations = input.rest();
    if mutations.is_empty() {
        return;
    }
    for step in mutations.chunks(4) {
        let mut step = Cursor::new(step);
        let what = step.byte();
        let at = usize::from(u16::from_le_bytes(step.array()));
        let value = step.byte();
        let field = match what % 5 {
            0 => &mut header,
            1 => &mut method,
            2 => &mut target,
            3 => &mut body,
            _ => {
                mutated_now = mutated_now.wrapping_add(u64::from(value)).wrapping_sub(128);
                continue;
            }
        };
        mutate(field, what / 5, at, value);
    }
    let (Ok(method_text), Ok(target_text)) =
        (std::str::from_utf8(&method), std::str::from_utf8(&target))
    else {
        // Over HTTP the method and target are always text.
        return;
    };
    let mutated_request = RequestParts {
        method: method_text,
        target: target_text,
        body_digest: BodyDigest::of(&body),
    };
    // The same verifier: its binding cache already holds the valid binding.
    let verdict = run_verification(&verifier, &header, &mutated_request, mutated_now);
    let uncached = Verifier::new([master.verifying_key()], limits).with_binding_cache_capacity(0);
    assert_eq!(
        verdict,
        run_verification(&uncached, &header, &mutated_request, mutated_now),
        "the binding cache changed the verdict"
    );
    if verdict.is_ok() {
        assert_eq!(
            ProofHeader::parse(&header).as_ref(),
            Ok(&proof),
            "a header that means another proof was accepted"
        );
        assert_eq!(method_text, request.method, "a changed method was accepted");
        assert_eq!(target_text, request.target, "a changed target was accepted");
        assert_eq!(
            mutated_request.body_digest, request.body_digest,
            "a changed body was accepted"
        );
        assert!(
            mutated_now <= exp
                && exp - mutated_now <= limits.max_binding_ttl
                && ts.abs_diff(mutated_now) <= limits.clock_skew,
            "accepted outside the time limits"
        );
    }
}

/// The master key of the spec vectors (RFC 8032 §7.1 test 1).
const VECTOR_MASTER_SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];

/// The `0xff` mode of [`verify`]: arbitrary header, method, target, body.
fn verify_arbitrary(data: &[u8]) {
    let mut input = Cursor::new(data);
    let now = BASE_NOW + u64::from(u16::from_le_bytes(input.array()));
    let mut parts = input.rest().splitn(4, |&c| c == b'\n');
    let mut next = || parts.next().unwrap_or_default();
    let (header, method, target, body) = (next(), next(), next(), next());
    let method = String::from_utf8_lossy(method);
    let target = String::from_utf8_lossy(target);
    let request = RequestParts {
        method: &method,
        target: &target,
        body_digest: BodyDigest::of(body),
    };
    let master = SigningKey::from_bytes(&VECTOR_MASTER_SEED).verifying_key();
    let limits = Limits::default();
    let verifier = Verifier::new([master], limits);
    let cold = run_verification(&verifier, header, &request, now);
    let warm = run_verification(&verifier, header, &request, now);
    let uncached = Verifier::new([master], limits).with_binding_cache_capacity(0);
    assert_eq!(cold, warm, "a second verification changed the verdict");
    assert_eq!(
        cold,
        run_verification(&uncached, header, &request, now),
        "the binding cache changed the verdict"
    );
}

/// Parse, check, verify: `Err(None)` for a header that does not parse.
fn run_verification(
    verifier: &Verifier,
    header: &[u8],
    request: &RequestParts<'_>,
    now: u64,
) -> Result<(), Option<VerifyError>> {
    let proof = ProofHeader::parse(header).map_err(|_| None)?;
    verifier
        .check(&proof, now)
        .and_then(|checked| checked.verify(request))
        .map(|_| ())
        .map_err(Some)
}

/// Flips, inserts or deletes one byte of `field` (`kind` picks which).
fn mutate(field: &mut Vec<u8>, kind: u8, at: usize, value: u8) {
    match kind % 3 {
        0 if !field.is_empty() => {
            let at = at % field.len();
            field[at] ^= value.max(1);
        }
        1 => {
            let at = at % (field.len() + 1);
            field.insert(at, value);
        }
        _ if !field.is_empty() => {
            let at = at % field.len();
            field.remove(at);
        }
        _ => field.push(value),
    }
}

/// Target `content_digest`: the input, split at newlines, is a request's
/// `Content-Digest` field lines. Parsing never panics; several lines are
/// always invalid; a declared digest is written, in its canonical form,
/// in the one line, and formatting it parses back to it; and adding a
/// valid member (`x`, a Boolean) to a value that parsed changes nothing,
/// while adding a `sha-256` member to a value without one declares it.
pub fn content_digest(data: &[u8]) {
    let lines: Vec<&[u8]> = data.split(|&c| c == b'\n').collect();
    let result = ContentDigest::parse(lines.iter().copied());
    if lines.len() > 1 {
        assert_eq!(result, Err(ContentDigestError::SeveralFieldLines));
        return;
    }
    let line = lines[0];
    let Ok(parsed) = result else {
        return;
    };
    if let ContentDigest::Declared(digest) = parsed {
        let value = digest.to_content_digest();
        assert!(
            line.windows(value.len()).any(|w| w == value.as_bytes()),
            "the declared digest is not written canonically in the value"
        );
        assert_eq!(
            ContentDigest::parse([value.as_bytes()]),
            Ok(parsed),
            "format then parse changed the digest"
        );
    }
    let blank = line.iter().all(|&c| c == b' ');
    let with_member = if blank {
        b"x".to_vec()
    } else {
        [line, b", x".as_slice()].concat()
    };
    if with_member.len() <= MAX_CONTENT_DIGEST_LEN {
        assert_eq!(
            ContentDigest::parse([with_member.as_slice()]),
            Ok(parsed),
            "an ignored member changed the result"
        );
    }
    if parsed == ContentDigest::Absent {
        let digest = BodyDigest::of(line);
        let sha256 = digest.to_content_digest();
        let with_sha256 = if blank {
            sha256.into_bytes()
        } else {
            [line, b", ".as_slice(), sha256.as_bytes()].concat()
        };
        if with_sha256.len() <= MAX_CONTENT_DIGEST_LEN {
            assert_eq!(
                ContentDigest::parse([with_sha256.as_slice()]),
                Ok(ContentDigest::Declared(digest)),
                "a sha-256 member added to a value without one is not declared"
            );
        }
    }
}
